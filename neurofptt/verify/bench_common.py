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
from typing import Any

import numpy as np

from neurofptt.quant.config import HardwareConfig
from neurofptt.verify.compare import compare_traces, format_report
from neurofptt.verify.streams import Stalls, StreamBench, random_stalls

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

    def finish(self, dut: Any, bench: StreamBench, complete: bool, cycles: int) -> None:
        """Compare what an inference run's ``bench`` collected with the golden spikes and
        readouts of the stimulus, write the results file and fail the cocotb test on any
        mismatch, broken stream rule or timeout."""
        if not complete:
            b, t = divmod(bench.steps_done, max(bench.steps, 1))
            bench.protocol(
                b,
                t,
                "timeout: the core stopped producing outputs "
                f"after {bench.steps_done} of {bench.batch * bench.steps} steps",
            )
        expected_spikes = self.arrays["expected_spikes"].astype(bool)
        expected_readout = self.arrays["expected_readout"].astype(np.int64)
        records, total = compare_traces(
            expected_spikes, expected_readout, bench.spikes, bench.readout
        )
        np.savez(
            self.results,
            spikes=bench.spikes,
            readout=bench.readout,
            step_cycles=bench.step_cycles,
            cycles=np.int64(cycles),
            complete=np.bool_(complete),
            protocol=np.array(json.dumps([e.to_dict() for e in bench.errors])),
        )
        report = format_report(bench.errors + records, total + len(bench.errors))
        dut._log.info("%d steps, %d cycles; %s", bench.steps_done, cycles, report.splitlines()[0])
        assert total + len(bench.errors) == 0, report
