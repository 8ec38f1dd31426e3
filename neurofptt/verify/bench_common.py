"""What both cocotb testbenches need: the clock, stream handshakes, the spike and readout
collectors and the run under a cycle budget.

The inference core and the learning core share ``i_event``, ``o_spike`` and ``o_readout`` (the
learning core only widens the event payload), so :mod:`neurofptt.verify.testbench` and
:mod:`neurofptt.verify.testbench_learning` drive and check them with the same code: a stream rule
checked by one bench is checked by the other.  This module holds no cocotb test, so importing it
registers nothing.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Coroutine
from typing import Any

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from neurofptt.quant.config import HardwareConfig
from neurofptt.verify.compare import Mismatch

CLOCK_NS = 10
SPIKE, STEP, CLEAR = 0, 1, 2  # event kinds (``EventKind``) in bits 0-1 of every event payload


def cycle() -> int:
    """Number of the current clock period (rising edges fall mid-period)."""
    return int(get_sim_time(unit="ns") // CLOCK_NS)


def high(signal: Any) -> bool:
    """True if a 1-bit signal is 1 (X and Z count as low)."""
    return str(signal.value) == "1"


def to_signed(raw: int, bits: int) -> int:
    """The two's-complement value of the low ``bits`` of a payload field read unsigned."""
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def pack(layout: data.StructLayout, **fields: int) -> int:
    """A payload word of ``layout`` with ``fields`` set (the others 0), placed at the offsets the
    core's own layout gives, so the bench cannot disagree with the RTL on where a field sits."""
    return sum(int(v) << layout[name].offset for name, v in fields.items())


async def handshake(clk: Any, ready: Any) -> None:
    """Return at the rising edge that transfers the word offered on a stream (``valid`` set)."""
    while True:
        await RisingEdge(clk)
        if high(ready):  # sampled at this edge: the word was taken
            return
        await ReadOnly()
        if not high(ready):
            await RisingEdge(ready)


async def start_core(dut: Any) -> int:
    """Hold every input of the core idle (a learning core's ``i_weights`` too, so an inference
    run never sees a load), start the clock, reset for two cycles; returns the first cycle
    after reset."""
    dut.i_event__valid.value = 0
    dut.i_event__payload.value = 0
    dut.o_spike__ready.value = 0
    dut.o_readout__ready.value = 0
    if hasattr(dut, "i_weights__valid"):
        dut.i_weights__valid.value = 0
        dut.i_weights__payload.value = 0
        dut.o_weights__ready.value = 0
    dut.rst.value = 1
    # impl="gpi": the clock toggles in cocotb's C layer, with no Python call per edge
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start(start_high=False)
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    return cycle()


async def run_within(coroutines: list[Coroutine], cycles: int) -> bool:
    """Run ``coroutines`` concurrently until all end or ``cycles`` clock cycles pass; on a
    timeout cancel them and return False (the caller records it as a protocol error)."""
    tasks = [cocotb.start_soon(c) for c in coroutines]

    async def finished() -> None:
        for task in tasks:
            await task

    try:
        await with_timeout(finished(), cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        for task in tasks:
            task.cancel()
        return False
    return True


class Sink:
    """Consumer side of an output stream; checks that valid and payload hold until ready."""

    def __init__(
        self, dut: Any, name: str, backpressure: bool, rng: random.Random, errors: list[Mismatch]
    ):
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
            valid = high(self.valid)
            word = self.payload.value.to_unsigned() if valid else None
            if self.stalled is not None and word != self.stalled:
                b, t = self.where
                self.errors.append(
                    Mismatch(b, t, "protocol", -1, -1, -1,
                             f"{self.name}: valid dropped or payload changed before ready "
                             f"(cycle {cycle()})")
                )  # fmt: skip
            transferred = valid and high(self.ready)
            self.stalled = word if valid and not transferred else None
            if self.backpressure:
                self.ready.value = int(self.rng.random() < 0.5)
            if transferred:
                return word, cycle()
            await ReadOnly()
            if not high(self.valid):
                await RisingEdge(self.valid)


class StepBench:
    """The spikes and readouts of a run, collected from the ``o_spike`` and ``o_readout``
    streams with every stream rule checked.

    The run is set by the environment :func:`neurofptt.verify.runner` gives the simulator:
    ``NEUROFPTT_STIMULUS`` (an ``.npz`` with the hardware ``config`` and the input ``spikes``
    ``(B, T, n_in)``; :meth:`read_stimulus` reads a bench's other arrays from it),
    ``NEUROFPTT_RESULTS`` (where the bench writes what it collected), ``NEUROFPTT_BACKPRESSURE``
    and ``NEUROFPTT_SEED``.  ``step_start`` (set by the driver) and ``step_end`` (the cycle of a
    step's last readout value) give the cycles of each step; ``steps_done`` counts the steps
    whose readout is complete, for the timeout report.
    """

    def __init__(self, dut: Any):
        self.dut = dut
        self.results = os.environ["NEUROFPTT_RESULTS"]
        self.backpressure = os.environ.get("NEUROFPTT_BACKPRESSURE", "0") == "1"
        self.rng = random.Random(int(os.environ.get("NEUROFPTT_SEED", "0")))
        with np.load(os.environ["NEUROFPTT_STIMULUS"], allow_pickle=False) as data:
            self.cfg = HardwareConfig.from_dict(json.loads(str(data["config"])))
            self.x = data["spikes"].astype(bool)
            self.read_stimulus(data)
        cfg = self.cfg
        self.batch, self.steps, _ = self.x.shape
        self.spikes = np.zeros((self.batch, self.steps, cfg.n_rec), bool)
        self.readout = np.zeros((self.batch, self.steps, cfg.n_out), np.int64)
        self.step_start = np.full((self.batch, self.steps), -1, np.int64)
        self.step_end = np.full((self.batch, self.steps), -1, np.int64)
        self.errors: list[Mismatch] = []
        self.steps_done = 0

    def read_stimulus(self, data: Any) -> None:
        """Read what this bench needs beyond ``config`` and ``spikes`` from the stimulus file
        (an open ``.npz``)."""

    async def send(self, word: int) -> int:
        """Offer ``word`` on ``i_event`` until the core takes it; returns the cycle it did."""
        dut = self.dut
        dut.i_event__payload.value = word
        dut.i_event__valid.value = 1
        await handshake(dut.clk, dut.i_event__ready)
        return cycle()

    def started(self, b: int, t: int) -> None:
        """Note that an event of step ``t`` of sample ``b`` was taken (the first one counts)."""
        if t >= 0 and self.step_start[b, t] < 0:
            self.step_start[b, t] = cycle()

    async def collect_spikes(self) -> None:
        """Every ``o_spike`` event of every step: ``SPIKE`` events with ascending indices below
        ``n_rec``, ended by a ``STEP``."""
        sink = Sink(self.dut, "o_spike", self.backpressure, self.rng, self.errors)
        n_rec = self.cfg.n_rec
        for b in range(self.batch):
            for t in range(self.steps):
                sink.where = (b, t)
                last = -1
                while True:
                    word, _ = await sink.take()
                    kind, index = word & 3, word >> 2
                    if kind == STEP:
                        break
                    if kind != SPIKE or index >= n_rec:
                        self.protocol(b, t, f"o_spike event kind {kind} index {index}", index)
                        continue
                    if index <= last:
                        self.protocol(
                            b, t, f"o_spike index {index} after {last}: not ascending", index
                        )
                    last = index
                    self.spikes[b, t, index] = True

    async def collect_readout(self) -> None:
        """Every ``o_readout`` value of every step: indices 0 .. ``n_out - 1`` in order, ``last``
        on the final one."""
        sink = Sink(self.dut, "o_readout", self.backpressure, self.rng, self.errors)
        cfg = self.cfg
        ib, mb = cfg.index_bits(cfg.n_out), cfg.membrane_bits
        for b in range(self.batch):
            for t in range(self.steps):
                sink.where = (b, t)
                for k in range(cfg.n_out):
                    word, when = await sink.take()
                    index = word & ((1 << ib) - 1)
                    value = to_signed((word >> ib) & ((1 << mb) - 1), mb)
                    last = (word >> (ib + mb)) & 1
                    if index != k:
                        self.protocol(b, t, f"o_readout index {index}, expected {k}", index)
                    if last != (k == cfg.n_out - 1):
                        self.protocol(b, t, f"o_readout last={last} on index {k}", index)
                    self.readout[b, t, k] = value
                self.step_end[b, t] = when
                self.steps_done += 1

    def protocol(self, b: int, t: int, detail: str, index: int = -1) -> None:
        """Record a stream-rule violation at step ``t`` of sample ``b``."""
        self.errors.append(Mismatch(b, t, "protocol", index, -1, -1, detail))
