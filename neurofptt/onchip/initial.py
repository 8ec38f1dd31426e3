"""Starting networks for learning on chip from scratch."""

from __future__ import annotations

import numpy as np

from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.fixedpoint import saturate
from neurofptt.quant.network import QuantizedNetwork


def random_network(
    cfg: HardwareConfig, seed: int, spread: int | tuple[int, int, int]
) -> QuantizedNetwork:
    """A network with weights drawn uniformly from ``[-spread, spread]`` (clamped to the weight
    format), the starting point of learning from scratch on chip.  ``spread`` is one value for
    all three matrices or one per matrix, ``(in, rec, out)`` (see :func:`fan_in_spreads`)."""
    spreads = (spread,) * 3 if isinstance(spread, int) else spread
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, int], spread: int) -> np.ndarray:
        return saturate(rng.integers(-spread, spread + 1, shape), cfg.weight_bits)

    shapes = ((cfg.n_rec, cfg.n_in), (cfg.n_rec, cfg.n_rec), (cfg.n_out, cfg.n_rec))
    weights = (draw(shape, s) for shape, s in zip(shapes, spreads, strict=True))
    return QuantizedNetwork(cfg, *weights)


def fan_in_spreads(cfg: HardwareConfig, gain: float = 2.0) -> tuple[int, int, int]:
    """Per-matrix spreads ``(in, rec, out)`` for :func:`random_network` that put every weight in
    ``+-gain * threshold / sqrt(fan_in)`` membrane LSBs (at least 1 weight LSB, at most the
    format's range).

    The float models start from the same scale in threshold units (torch's ``1/sqrt(fan_in)``),
    so a neuron's input current has a spread of about the threshold whatever the sizes and the
    per-matrix shifts.  A spread fixed in weight LSBs does not transfer: a fraction of the weight
    range that suits a small network leaves a larger one far below threshold and silent, and
    then nothing downstream of the input weights can learn (the spike rates of both starts on
    the digits: ``docs/results-hardware.md``).
    """
    pairs = ((cfg.n_in, cfg.w_in_shift), (cfg.n_rec, cfg.w_rec_shift), (cfg.n_rec, cfg.w_out_shift))
    w_in, w_rec, w_out = (
        int(np.clip(round(gain * cfg.threshold / np.sqrt(n) / (1 << shift)), 1, cfg.w_max))
        for n, shift in pairs
    )
    return w_in, w_rec, w_out
