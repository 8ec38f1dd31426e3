"""cocotb testbench: drive the generated core through its real ports and check it bit for bit.

The test reads a stimulus file (``.npz``, path in ``NEUROFPTT_STIMULUS``) holding the input spikes
``(B, T, n_in)``, the golden spikes and readout values and the hardware config.  For every sample
it sends ``CLEAR``, then per step one ``SPIKE`` event per active input followed by ``STEP``, and
collects every ``o_spike`` event and ``o_readout`` value (:mod:`neurofptt.verify.streams`, the
driver and monitors of the Amaranth-simulator tests too).  It writes what the core produced to
``NEUROFPTT_RESULTS`` (``.npz``) and fails if any spike or readout value differs from the golden
model, or if a stream rule is broken (spikes not ascending, wrong readout index or ``last`` flag,
``valid`` dropped or payload changed before ``ready``).

``NEUROFPTT_BACKPRESSURE=1`` makes both output consumers drop ``ready`` at random and inserts
random idle cycles between input events; ``NEUROFPTT_SEED`` seeds that randomness.

This module is imported by the simulator (``COCOTB_TEST_MODULES``); run it through
:func:`neurofptt.verify.run_rtl` or ``neurofptt verify``.
"""

from __future__ import annotations

from typing import Any

import cocotb

from neurofptt.verify.bench_common import BenchRun
from neurofptt.verify.streams import StreamBench, cycle_budget, frame_inference, run_cocotb


@cocotb.test()
async def test_core_vs_golden(dut: Any) -> None:
    """Every spike and readout value of every step equals the golden model."""
    run = BenchRun.from_environment()
    cfg = run.config
    batch, steps, _ = run.spikes.shape
    bench = StreamBench(cfg, batch, steps, run.stalls())
    items = frame_inference(cfg, run.spikes)
    budget = cycle_budget(cfg, batch, steps, stalled=run.backpressure)
    complete, cycles = await run_cocotb(dut, bench.benches(items), budget)
    run.finish(dut, bench, complete, cycles)
