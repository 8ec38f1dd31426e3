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
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from neurofptt.quant.config import HardwareConfig
from neurofptt.verify.compare import Mismatch, compare_traces, format_report

CLOCK_NS = 10
_SPIKE, _STEP, _CLEAR = 0, 1, 2


def _cycle() -> int:
    """Number of the current clock period (rising edges fall mid-period)."""
    return int(get_sim_time(unit="ns") // CLOCK_NS)


def _high(signal) -> bool:
    """True if a 1-bit signal is 1 (X and Z count as low)."""
    return str(signal.value) == "1"


def _to_signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw >> (bits - 1) else raw


class _Sink:
    """Consumer side of an output stream; checks that valid and payload hold until ready."""

    def __init__(self, dut, name: str, backpressure: bool, rng: random.Random, errors: list):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name = name
        self.backpressure = backpressure
        self.rng = rng
        self.errors = errors
        self.stalled: int | None = None  # payload offered but not taken at the last edge
        self.where = (0, 0)  # (sample, step) being collected, for error reports
        self.ready.value = 0 if backpressure else 1

    async def take(self) -> tuple[int, int]:
        """Wait for the next transfer; return (payload, cycle of the transfer)."""
        while True:
            await RisingEdge(self.clk)
            valid = _high(self.valid)
            word = self.payload.value.to_unsigned() if valid else None
            if self.stalled is not None and word != self.stalled:
                b, t = self.where
                self.errors.append(
                    Mismatch(b, t, "protocol", -1, -1, -1,
                             f"{self.name}: valid dropped or payload changed before ready "
                             f"(cycle {_cycle()})")
                )  # fmt: skip
            transferred = valid and _high(self.ready)
            self.stalled = word if valid and not transferred else None
            if self.backpressure:
                self.ready.value = int(self.rng.random() < 0.5)
            if transferred:
                return word, _cycle()
            await ReadOnly()
            if not _high(self.valid):
                await RisingEdge(self.valid)


class _Bench:
    def __init__(self, dut, stimulus: str, backpressure: bool, seed: int):
        self.dut = dut
        with np.load(stimulus, allow_pickle=False) as data:
            self.cfg = HardwareConfig.from_dict(json.loads(str(data["config"])))
            self.x = data["spikes"].astype(bool)
            self.exp_spikes = data["expected_spikes"].astype(bool)
            self.exp_readout = data["expected_readout"].astype(np.int64)
        self.batch, self.steps, _ = self.x.shape
        self.backpressure = backpressure
        self.rng = random.Random(seed)
        cfg = self.cfg
        self.spikes = np.zeros((self.batch, self.steps, cfg.n_rec), bool)
        self.readout = np.zeros((self.batch, self.steps, cfg.n_out), np.int64)
        self.step_start = np.full((self.batch, self.steps), -1, np.int64)
        self.step_end = np.full((self.batch, self.steps), -1, np.int64)
        self.errors: list[Mismatch] = []
        self.steps_done = 0

    # -- input ---------------------------------------------------------------------------------
    async def drive(self) -> None:
        dut, clk = self.dut, self.dut.clk
        valid, ready, payload = dut.i_event__valid, dut.i_event__ready, dut.i_event__payload
        for b in range(self.batch):
            events = [(_CLEAR, 0, -1)]
            for t in range(self.steps):
                events += [(_SPIKE, int(i), t) for i in np.flatnonzero(self.x[b, t])]
                events.append((_STEP, 0, t))
            for kind, index, t in events:
                if self.backpressure and self.rng.random() < 0.15:
                    valid.value = 0
                    await ClockCycles(clk, self.rng.randint(1, 4))
                payload.value = kind | (index << 2)
                valid.value = 1
                while True:
                    await RisingEdge(clk)
                    if _high(ready):  # sampled at this edge: the event was taken
                        break
                    await ReadOnly()
                    if not _high(ready):
                        await RisingEdge(ready)
                if t >= 0 and self.step_start[b, t] < 0:
                    self.step_start[b, t] = _cycle()
        valid.value = 0

    # -- outputs -------------------------------------------------------------------------------
    async def collect_spikes(self) -> None:
        sink = _Sink(self.dut, "o_spike", self.backpressure, self.rng, self.errors)
        n_rec = self.cfg.n_rec
        for b in range(self.batch):
            for t in range(self.steps):
                sink.where = (b, t)
                last = -1
                while True:
                    word, _ = await sink.take()
                    kind, index = word & 3, word >> 2
                    if kind == _STEP:
                        break
                    if kind != _SPIKE or index >= n_rec:
                        self._protocol(b, t, index, f"o_spike event kind {kind} index {index}")
                        continue
                    if index <= last:
                        self._protocol(
                            b, t, index, f"o_spike index {index} after {last}: not ascending"
                        )
                    last = index
                    self.spikes[b, t, index] = True

    async def collect_readout(self) -> None:
        sink = _Sink(self.dut, "o_readout", self.backpressure, self.rng, self.errors)
        cfg = self.cfg
        ib, mb = cfg.index_bits(cfg.n_out), cfg.membrane_bits
        for b in range(self.batch):
            for t in range(self.steps):
                sink.where = (b, t)
                for k in range(cfg.n_out):
                    word, cycle = await sink.take()
                    index = word & ((1 << ib) - 1)
                    value = _to_signed((word >> ib) & ((1 << mb) - 1), mb)
                    last = (word >> (ib + mb)) & 1
                    if index != k:
                        self._protocol(b, t, index, f"o_readout index {index}, expected {k}")
                    if last != (k == cfg.n_out - 1):
                        self._protocol(b, t, index, f"o_readout last={last} on index {k}")
                    self.readout[b, t, k] = value
                self.step_end[b, t] = cycle
                self.steps_done += 1

    def _protocol(self, b: int, t: int, index: int, detail: str) -> None:
        self.errors.append(Mismatch(b, t, "protocol", index, -1, -1, detail))

    def cycle_budget(self) -> int:
        """Generous upper bound on the cycles the whole run may take."""
        cfg = self.cfg
        n_events = int(self.x.sum())
        n_spikes = int(self.exp_spikes.sum())
        per_step = cfg.n_rec + cfg.n_out + 3
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
    stimulus = os.environ["NEUROFPTT_STIMULUS"]
    results = os.environ["NEUROFPTT_RESULTS"]
    backpressure = os.environ.get("NEUROFPTT_BACKPRESSURE", "0") == "1"
    seed = int(os.environ.get("NEUROFPTT_SEED", "0"))
    bench = _Bench(dut, stimulus, backpressure, seed)

    dut.i_event__valid.value = 0
    dut.i_event__payload.value = 0
    dut.o_spike__ready.value = 0
    dut.o_readout__ready.value = 0
    dut.rst.value = 1
    # impl="gpi": the clock toggles in cocotb's C layer, with no Python call per edge
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start(start_high=False)
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    start = _cycle()

    driver = cocotb.start_soon(bench.drive())
    spikes = cocotb.start_soon(bench.collect_spikes())
    readout = cocotb.start_soon(bench.collect_readout())

    async def finished() -> None:
        await driver
        await spikes
        await readout

    complete = True
    try:
        await with_timeout(finished(), bench.cycle_budget() * CLOCK_NS, "ns")
    except SimTimeoutError:
        complete = False
        for task in (driver, spikes, readout):
            task.cancel()
        b, t = divmod(bench.steps_done, bench.steps)
        bench.errors.append(
            Mismatch(b, t, "protocol", -1, -1, -1,
                     "timeout: the core stopped producing outputs "
                     f"after {bench.steps_done} of {bench.batch * bench.steps} steps")
        )  # fmt: skip
    cycles = _cycle() - start

    records, total = compare_traces(
        bench.exp_spikes, bench.exp_readout, bench.spikes, bench.readout
    )
    np.savez(
        results,
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
