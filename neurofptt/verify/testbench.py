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

import json
from typing import Any

import cocotb
import numpy as np

from neurofptt.hdl.ports import event_layout
from neurofptt.verify.bench_common import BenchRun
from neurofptt.verify.compare import compare_traces, format_report
from neurofptt.verify.streams import StreamBench, cycle_budget, frame_run, run_cocotb


@cocotb.test()
async def test_core_vs_golden(dut: Any) -> None:
    """Every spike and readout value of every step equals the golden model."""
    run = BenchRun.from_environment()
    cfg = run.config
    batch, steps, _ = run.spikes.shape
    bench = StreamBench(cfg, batch, steps, run.stalls())
    # a learning core's wider event payload keeps kind and index where this layout puts them;
    # its learn, label and shift fields stay 0: inference only
    items = frame_run(event_layout(cfg.n_in), run.spikes)
    budget = cycle_budget(cfg, batch, steps, stalled=run.backpressure)
    complete, cycles = await run_cocotb(dut, bench.benches(items), budget)
    if not complete:
        b, t = divmod(bench.steps_done, steps)
        bench.protocol(
            b,
            t,
            "timeout: the core stopped producing outputs "
            f"after {bench.steps_done} of {batch * steps} steps",
        )

    expected_spikes = run.arrays["expected_spikes"].astype(bool)
    expected_readout = run.arrays["expected_readout"].astype(np.int64)
    records, total = compare_traces(expected_spikes, expected_readout, bench.spikes, bench.readout)
    np.savez(
        run.results,
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
