"""cocotb testbench of a harness run: the core streams a whole inference run inside the
simulator (:mod:`neurofptt.verify.harness`), and this test waits for it to end, then checks
the capture with the live bench's per-word checks and compares it with the golden model.

The stimulus file and the results file are those of :mod:`neurofptt.verify.testbench`
(:class:`~neurofptt.verify.bench_common.BenchRun`), the stimulus holding the events the
harness was given (``events``, :func:`~neurofptt.verify.harness.event_table`); the capture
file's path is the harness's ``+capture`` plusarg.  Used when nothing has to be decided per
cycle (no backpressure): Python then runs once at the end instead of at every transfer.

This module is imported by the simulator (``COCOTB_TEST_MODULES``); run it through
:func:`neurofptt.verify.run_rtl` or ``neurofptt verify``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cocotb
from cocotb.triggers import RisingEdge

from neurofptt.verify.bench_common import BenchRun
from neurofptt.verify.harness import events_of, read_capture, replay
from neurofptt.verify.streams import StreamBench


@cocotb.test()
async def test_core_vs_golden(dut: Any) -> None:
    """Every spike and readout value of every step equals the golden model."""
    run = BenchRun.from_environment()
    batch, steps, _ = run.spikes.shape
    await RisingEdge(dut.done)  # the harness ends every run itself, at the latest at its budget
    bench = StreamBench(run.config, batch, steps)
    capture = read_capture(Path(cocotb.plusargs["capture"]))
    complete, cycles = replay(bench, events_of(run.arrays["events"]), capture)
    run.finish(dut, bench, complete, cycles)
