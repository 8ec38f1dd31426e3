"""Write the stimulus of the Makefile flow: random input spikes for a quantized network (by
default the reference network ``hdl/quantized.npz``) with the golden model's spikes and
readouts, in the format :func:`neurofptt.verify.run_rtl` writes
(:func:`~neurofptt.verify.runner.inference_stimulus`), so ``tb_core.py`` checks the Verilog
against the golden model the same way in both flows.

    python sim/make_stimulus.py --out sim/build/stimulus.npz --samples 3 --steps 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neurofptt.quant import QuantizedNetwork
from neurofptt.verify.runner import inference_stimulus

REFERENCE = Path(__file__).resolve().parents[1] / "hdl" / "quantized.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REFERENCE, help="quantized network .npz")
    parser.add_argument("--out", type=Path, required=True, help="stimulus .npz to write")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.25, help="input spike probability")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    net = QuantizedNetwork.load(args.model)
    rng = np.random.default_rng(args.seed)
    spikes = rng.random((args.samples, args.steps, net.config.n_in)) < args.rate
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **inference_stimulus(net, spikes.astype(np.uint8)))


if __name__ == "__main__":
    main()
