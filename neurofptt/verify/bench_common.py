"""What a cocotb testbench reads from its environment: the run that
:mod:`neurofptt.verify.runner` (or ``sim/Makefile``) set up for it.

The simulator starts the testbench in a separate process, so the run travels in environment
variables: ``NEUROFPTT_STIMULUS`` (an ``.npz`` with the hardware ``config``, the input
``spikes`` ``(B, T, n_in)`` and what the bench needs besides), ``NEUROFPTT_RESULTS`` (where the
bench writes what it collected), ``NEUROFPTT_BACKPRESSURE`` (``1``: stall every stream at
random) and ``NEUROFPTT_SEED`` (the seed of those stalls).  This module holds no cocotb test,
so importing it registers nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofptt.quant.config import HardwareConfig
from neurofptt.verify.streams import Stalls, random_stalls

__all__ = ["BenchRun"]


@dataclass(frozen=True)
class BenchRun:
    """One run as the environment describes it; ``arrays`` holds every array of the stimulus
    file, ``config`` and ``spikes`` decoded."""

    config: HardwareConfig
    spikes: np.ndarray  # (B, T, n_in) bool
    arrays: dict[str, np.ndarray]
    results: Path
    backpressure: bool
    seed: int

    @classmethod
    def from_environment(cls) -> BenchRun:
        """The run of the ``NEUROFPTT_*`` variables."""
        with np.load(os.environ["NEUROFPTT_STIMULUS"], allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return cls(
            config=HardwareConfig.from_dict(json.loads(str(arrays["config"]))),
            spikes=arrays["spikes"].astype(bool),
            arrays=arrays,
            results=Path(os.environ["NEUROFPTT_RESULTS"]),
            backpressure=os.environ.get("NEUROFPTT_BACKPRESSURE", "0") == "1",
            seed=int(os.environ.get("NEUROFPTT_SEED", "0")),
        )

    def stalls(self) -> dict[str, Stalls]:
        """Random stalls on every stream under backpressure, none otherwise."""
        return random_stalls(self.seed) if self.backpressure else {}
