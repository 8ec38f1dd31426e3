"""The delayed-cue core the on-chip learning tests share: the cue task's 12 inputs and 2
classes, a small recurrent layer, two lanes, and shifts that keep the cue's drive in range."""

from __future__ import annotations

from neurofptt.quant import HardwareConfig
from neurofptt.quant.config import LearningConfig


def cue_core(n_rec: int = 24, learning: LearningConfig | None = None) -> HardwareConfig:
    return HardwareConfig(
        n_in=12,
        n_rec=n_rec,
        n_out=2,
        leak_shift=4,
        out_leak_shift=2,
        w_in_shift=3,
        w_rec_shift=2,
        w_out_shift=2,
        lanes=2,
        learning=learning,
    )
