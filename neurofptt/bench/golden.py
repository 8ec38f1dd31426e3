"""Time of the golden model against float inference of the same network.

Each network is measured in a fresh Python process, started with the thread count in the
variables that torch's OpenMP and MKL and numpy's OpenBLAS read at start-up (a process's BLAS
thread pool is sized once), and with :func:`~neurofptt.learning.threads.set_threads` for torch:
both models then run with the same threads.  Inside the process a random network of the given
sizes (weights at :func:`~neurofptt.onchip.fan_in_spreads`, so the neurons spike) runs one batch
of random input spikes (rate ``RATE``) in two ways:

- ``golden``: :func:`~neurofptt.quant.golden.golden_run`, its products in the kernels
  :mod:`neurofptt.quant.exact` chooses (``kernel``, the widest of the three);
- ``float``: the float LIF model trainers evaluate (:class:`~neurofptt.models.SpikingRNN`,
  holding the same weights), called on the whole sequence under ``torch.no_grad()``;

and, for comparison, ``int64``: the golden model with integer products.  One warm-up run of each
(which also converts the weights for the float kernels, once per network), then ``repeats``
rounds that time each once, interleaved so that a slower spell of a shared machine hits all of
them alike; every time reported is the median of its rounds.  ``ratio`` is golden over float.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neurofptt.bench.threads import conditions
from neurofptt.errors import ConfigError
from neurofptt.learning.threads import THREAD_ENV, set_threads
from neurofptt.models import SpikingRNN
from neurofptt.onchip import fan_in_spreads, random_network
from neurofptt.quant import HardwareConfig, golden_run
from neurofptt.quant.quantizer import dequantize_into

#: (n_in, n_rec, n_out): the demo network and a larger one
DEFAULT_NETWORKS = ((32, 128, 10), (256, 256, 16))
#: the thread variables a measurement starts with: torch's (OpenMP, MKL) and numpy's BLAS
BLAS_ENV = (*THREAD_ENV, "OPENBLAS_NUM_THREADS")
#: input spike probability per channel and step
RATE = 0.2


def network_name(sizes: tuple[int, int, int]) -> str:
    """``32-128-10`` for ``(n_in, n_rec, n_out)``."""
    return "-".join(str(n) for n in sizes)


def parse_networks(spec: str) -> list[tuple[int, int, int]]:
    """``"32-128-10,256-256-16"`` -> ``[(32, 128, 10), (256, 256, 16)]``."""
    networks = []
    for item in spec.split(","):
        try:
            sizes = tuple(int(n) for n in item.split("-"))
        except ValueError:
            sizes = ()
        if len(sizes) != 3 or min(sizes) < 1:
            raise ConfigError(
                f"networks are comma-separated N_IN-N_REC-N_OUT sizes, got {item!r} in {spec!r}"
            )
        networks.append(sizes)
    return networks  # type: ignore[return-value]


def measure(
    sizes: tuple[int, int, int], batch: int, steps: int, repeats: int, threads: int, seed: int = 0
) -> dict[str, Any]:
    """Time the golden, float and integer-product runs of one network in this process."""
    set_threads(threads)
    n_in, n_rec, n_out = sizes
    cfg = HardwareConfig(n_in=n_in, n_rec=n_rec, n_out=n_out)
    net = random_network(cfg, seed, fan_in_spreads(cfg))
    model = SpikingRNN.from_config(cfg)
    dequantize_into(model, net)
    x = np.random.default_rng(seed).random((batch, steps, n_in)) < RATE
    x_float = torch.from_numpy(x.astype(np.float32))

    def float_run() -> None:
        with torch.no_grad():
            model(x_float)

    runs: dict[str, Callable[[], object]] = {
        "golden": lambda: golden_run(net, x),
        "float": float_run,
        "int64": lambda: golden_run(net, x, kernel="int64"),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats + 1):  # the first round warms up and is not kept
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(t[1:]) for name, t in times.items()}
    return {
        "net": network_name(sizes),
        "batch": batch,
        "T": steps,
        "golden_seconds": seconds["golden"],
        "float_seconds": seconds["float"],
        "ratio": seconds["golden"] / seconds["float"],
        "kernel": net.products.kernel,
        "int64_seconds": seconds["int64"],
        "golden_synops_per_s": batch * steps * cfg.synapses / seconds["golden"],
        "spike_rate": float(golden_run(net, x).spikes.mean()),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def run_isolated(
    sizes: tuple[int, int, int], batch: int, steps: int, repeats: int, threads: int
) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter whose thread pools start with ``threads``."""
    env = {**os.environ, **dict.fromkeys(BLAS_ENV, str(threads))}
    cmd = [sys.executable, "-m", "neurofptt.bench.golden", "--one", network_name(sizes)]
    cmd += [str(batch), str(steps), str(repeats), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise ConfigError(
            f"golden benchmark of {network_name(sizes)} failed:\n{proc.stderr.strip()[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_golden(
    networks: list[tuple[int, int, int]],
    batch: int = 64,
    steps: int = 32,
    repeats: int = 5,
    threads: int = 1,
) -> dict[str, Any]:
    """Every network in a fresh process; returns the machine's conditions and the records."""
    for name, value in (("batch", batch), ("T", steps), ("repeats", repeats), ("threads", threads)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    before = conditions()
    records = [run_isolated(sizes, batch, steps, repeats, threads) for sizes in networks]
    after = conditions()["load_average"]
    return {"conditions": {**before, "load_average_after": after}, "records": records}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{'net':<12} {'batch':>5} {'T':>5} {'kernel':>8} {'golden ms':>10} {'float ms':>10} "
        f"{'ratio':>6} {'int64 ms':>10}"
    ]
    for r in result["records"]:
        lines.append(
            f"{r['net']:<12} {r['batch']:>5} {r['T']:>5} {r['kernel']:>8} "
            f"{r['golden_seconds'] * 1e3:>10.2f} {r['float_seconds'] * 1e3:>10.2f} "
            f"{r['ratio']:>6.2f} {r['int64_seconds'] * 1e3:>10.2f}"
        )
    return "\n".join(lines)


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=5, required=True)
    args = parser.parse_args()
    net, batch, steps, repeats, threads = args.one
    (sizes,) = parse_networks(net)
    print(json.dumps(measure(sizes, int(batch), int(steps), int(repeats), int(threads))))


if __name__ == "__main__":
    _main()
