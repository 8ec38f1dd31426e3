"""cocotb testbench: drive the generated core through its real ports and check it bit for bit.

The test reads a stimulus file (``.npz``, path in ``NEUROFPTT_STIMULUS``) holding the input spikes
``(B, T, n_in)``, the golden spikes and readout values and the hardware config.  For every sample
it sends ``CLEAR``, then per step one ``SPIKE`` event per active input followed by ``STEP``, and
collects every ``o_spike`` event and ``o_readout`` value.  It writes what the core produced to
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

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from neurofptt.hdl.ports import event_layout
from neurofptt.verify.bench_common import (
    CLEAR,
    SPIKE,
    STEP,
    StepBench,
    cycle,
    pack,
    run_within,
    start_core,
)
from neurofptt.verify.compare import Mismatch, compare_traces, format_report


class _Bench(StepBench):
    def __init__(self, dut):
        super().__init__(dut)
        # a learning core's wider event payload keeps kind and index where this layout puts
        # them; its learn, label and shift fields stay 0: inference only
        self.event = event_layout(self.cfg.n_in)

    def read_stimulus(self, data) -> None:
        self.exp_spikes = data["expected_spikes"].astype(bool)
        self.exp_readout = data["expected_readout"].astype(np.int64)

    async def drive(self) -> None:
        """Per sample ``CLEAR``, then per step a ``SPIKE`` per active input and ``STEP``, with
        random idle cycles before events under backpressure."""
        for b in range(self.batch):
            events = [(pack(self.event, kind=CLEAR), -1)]
            for t in range(self.steps):
                events += [
                    (pack(self.event, kind=SPIKE, index=int(i)), t)
                    for i in np.flatnonzero(self.x[b, t])
                ]
                events.append((pack(self.event, kind=STEP), t))
            for word, t in events:
                if self.backpressure and self.rng.random() < 0.15:
                    self.dut.i_event__valid.value = 0
                    await ClockCycles(self.dut.clk, self.rng.randint(1, 4))
                await self.send(word)
                self.started(b, t)
        self.dut.i_event__valid.value = 0

    def cycle_budget(self) -> int:
        """Generous upper bound on the cycles the whole run may take."""
        cfg = self.cfg
        n_events = int(self.x.sum())
        n_spikes = int(self.exp_spikes.sum())
        per_step = cfg.n_rec + cfg.n_out + 4
        total = (
            cfg.n_rec * (n_events + n_spikes)
            + cfg.n_out * n_spikes
            + self.batch * self.steps * per_step
            + self.batch * (max(cfg.n_rec, cfg.n_out) + 1)
        )
        factor = 8 if self.backpressure else 2
        return factor * total + 1000


@cocotb.test()
async def test_core_vs_golden(dut) -> None:
    """Every spike and readout value of every step equals the golden model."""
    bench = _Bench(dut)
    start = await start_core(dut)
    complete = await run_within(
        [bench.drive(), bench.collect_spikes(), bench.collect_readout()], bench.cycle_budget()
    )
    if not complete:
        b, t = divmod(bench.steps_done, bench.steps)
        bench.errors.append(
            Mismatch(b, t, "protocol", -1, -1, -1,
                     "timeout: the core stopped producing outputs "
                     f"after {bench.steps_done} of {bench.batch * bench.steps} steps")
        )  # fmt: skip
    cycles = cycle() - start

    records, total = compare_traces(
        bench.exp_spikes, bench.exp_readout, bench.spikes, bench.readout
    )
    np.savez(
        bench.results,
        spikes=bench.spikes,
        readout=bench.readout,
        step_cycles=np.where(bench.step_end >= 0, bench.step_end - bench.step_start + 1, -1),
        cycles=np.int64(cycles),
        complete=np.bool_(complete),
        protocol=np.array(json.dumps([e.to_dict() for e in bench.errors])),
    )
    report = format_report(bench.errors + records, total + len(bench.errors))
    dut._log.info("%d steps, %d cycles; %s", bench.steps_done, cycles, report.splitlines()[0])
    assert total + len(bench.errors) == 0, report
