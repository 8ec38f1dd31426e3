"""The core's streams, driven and watched once for every simulator: payload encoding, the
framing of samples into events, seeded random stalls, the ``i_event`` / ``i_weights`` driver
and the ``o_spike`` / ``o_readout`` / ``o_weights`` monitors.

The Amaranth-simulator tests and the cocotb testbenches check the same protocol, so they run
the same code: the driver and the monitors talk to the core only through :class:`Ports`, a
handful of calls on its top-level ports by their Verilog names (``i_event__valid``, ``busy``,
...), which :class:`AmaranthPorts` (an ``amaranth.sim`` testbench context) and
:class:`CocotbPorts` (cocotb handles of the generated Verilog) provide.  A stream rule checked
in one simulator is therefore checked in the other, and a fix to a monitor reaches both.

Every payload is packed and unpacked with the layouts of :mod:`neurofptt.hdl.ports` (field
offsets and shapes, event kinds from :class:`~neurofptt.hdl.ports.EventKind` and
:data:`~neurofptt.hdl.ports.READ_WEIGHTS`), so a bench cannot disagree with the RTL on where a
field sits.

Timing model, the same in both simulators: :meth:`Ports.tick` returns at a rising clock edge
with the values the core saw at that edge (so ``valid and ready`` there is a transfer), and
:meth:`Ports.set` takes effect for the next edge.  :meth:`Ports.cycle` numbers the edges, so
differences of cycles count clock cycles.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import cocotb
import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data
from amaranth.sim import Simulator
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from cocotb.types import LogicArray
from cocotb.utils import get_sim_time

from neurofptt.hdl.cost import (
    READOUT_END,
    cycles_per_clear,
    cycles_per_dump,
    cycles_per_load,
    cycles_per_step,
    cycles_per_update,
)
from neurofptt.hdl.ports import (
    READ_WEIGHTS,
    EventKind,
    event_layout,
    learn_event_layout,
    readout_layout,
    weight_dump_layout,
)
from neurofptt.quant.config import HardwareConfig
from neurofptt.verify.compare import Mismatch
from neurofptt.verify.learning import Word, sent_labels

__all__ = [
    "AMARANTH_PERIOD",
    "CLOCK_NS",
    "STALL_RATES",
    "AmaranthPorts",
    "Bench",
    "Checker",
    "CocotbPorts",
    "Event",
    "Load",
    "Ports",
    "Stalls",
    "StreamBench",
    "cycle_budget",
    "decode_word",
    "encode_word",
    "field_reader",
    "frame_inference",
    "frame_run",
    "frame_sample",
    "pack",
    "random_stalls",
    "run_amaranth",
    "run_cocotb",
    "unpack",
    "unpack_many",
]

#: clock period of the cocotb runs (ns); the Verilog has no timescale of its own
CLOCK_NS = 10
#: clock period of the Amaranth-simulator runs (s)
AMARANTH_PERIOD = 1e-6
#: per stream: the chance of a stall (an idle gap before an input word, ``ready`` low at an
#: output edge) and the longest gap in cycles; what ``backpressure`` means in every bench
STALL_RATES: dict[str, tuple[float, int]] = {
    "i_event": (0.2, 3),
    "i_weights": (0.3, 3),
    "o_spike": (0.5, 1),
    "o_readout": (0.5, 1),
    "o_weights": (0.5, 1),
}


# -- payloads ---------------------------------------------------------------------------------


def _width(shape: Any) -> int:
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


def _encode(shape: Any, value: Any, name: str) -> int:
    if isinstance(shape, data.ArrayLayout):
        values = list(value)
        if len(values) != shape.length:
            raise ValueError(f"{name} needs {shape.length} elements, not {len(values)}")
        step = _width(shape.elem_shape)
        return sum(
            _encode(shape.elem_shape, v, f"{name}[{i}]") << (i * step) for i, v in enumerate(values)
        )
    if isinstance(shape, data.StructLayout):
        return pack(shape, **value)
    value = int(value.value if isinstance(value, Enum) else value)  # EventKind: its number
    s = Shape.cast(shape)
    lo, hi = (
        (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed else (0, (1 << s.width) - 1)
    )
    if not lo <= value <= hi:
        raise ValueError(f"{name} = {value} does not fit the field's shape {s}")
    return value & ((1 << s.width) - 1)


def _decode(shape: Any, bits: int) -> Any:
    if isinstance(shape, data.ArrayLayout):
        step = _width(shape.elem_shape)
        return [
            _decode(shape.elem_shape, (bits >> (i * step)) & ((1 << step) - 1))
            for i in range(shape.length)
        ]
    if isinstance(shape, data.StructLayout):
        return unpack(shape, bits)
    s = Shape.cast(shape)
    return bits - (1 << s.width) if s.signed and bits >> (s.width - 1) else bits


def pack(layout: data.StructLayout, **fields: Any) -> int:
    """The raw payload of ``layout`` with ``fields`` set and the others 0: each value placed at
    the offset the core's layout gives, signed values in two's complement, arrays lane 0
    lowest, an :class:`~neurofptt.hdl.ports.EventKind` as its number.  A value that does not
    fit its field raises :class:`ValueError` instead of spilling into the next field."""
    raw = 0
    for name, value in fields.items():
        field = layout[name]
        raw |= _encode(field.shape, value, name) << field.offset
    return raw


def unpack(layout: data.StructLayout, raw: int) -> dict[str, Any]:
    """Every field of the raw payload ``raw`` of ``layout``: signed fields as negative numbers
    where their top bit is set, arrays as lists (lane 0 first), nested layouts as dicts and
    enum fields (``kind``) as plain numbers, since ``READ_WEIGHTS`` is not an ``EventKind``."""
    return {
        name: _decode(field.shape, (raw >> field.offset) & ((1 << _width(field.shape)) - 1))
        for name, field in layout
    }


def field_reader(layout: data.StructLayout, *names: str) -> Callable[[int], tuple[int, ...]]:
    """A reader of the scalar fields ``names`` of raw payloads of ``layout``, returning their
    values in that order as :func:`unpack` decodes them.  Offsets and masks are looked up
    once, which is what a monitor that reads every word of a long run needs."""
    fields = []
    for name in names:
        shape = Shape.cast(layout[name].shape)
        wrap = 1 << shape.width if shape.signed else 0
        fields.append((layout[name].offset, (1 << shape.width) - 1, wrap, wrap >> 1))

    def read(raw: int) -> tuple[int, ...]:
        values = []
        for offset, mask, wrap, top in fields:
            value = raw >> offset & mask
            values.append(value - wrap if wrap and value >= top else value)
        return tuple(values)

    return read


def unpack_many(layout: data.StructLayout, raws: Sequence[int]) -> dict[str, Any]:
    """Every field of many raw payloads of ``layout`` at once, as :func:`unpack` reads one:
    a scalar field as an ``(n,)`` ``int64`` array, an array field as ``(n, length)``, a nested
    layout as a dict; signed fields negative where their top bit is set.  The payloads become
    one bit matrix and every field is read out of it by numpy, so a weight dump of thousands of
    words costs a few array operations instead of a Python call per field and word (fields
    up to 63 bits)."""
    size = -(-layout.size // 8)
    packed = b"".join(raw.to_bytes(size, "little") for raw in raws)
    flat = np.frombuffer(packed, np.uint8).reshape(len(raws), size)
    bits = np.unpackbits(flat, axis=1, bitorder="little").astype(np.int64)
    return _fields_of_bits(layout, bits)


def _fields_of_bits(shape: Any, bits: np.ndarray) -> Any:
    """The values of ``shape`` in the bit matrix ``bits`` ``(n, width...)`` (bit 0 first)."""
    if isinstance(shape, data.StructLayout):
        return {
            name: _fields_of_bits(
                field.shape, bits[:, field.offset : field.offset + _width(field.shape)]
            )
            for name, field in shape
        }
    if isinstance(shape, data.ArrayLayout):
        step = _width(shape.elem_shape)
        return np.stack(
            [
                _fields_of_bits(shape.elem_shape, bits[:, i * step : (i + 1) * step])
                for i in range(shape.length)
            ],
            axis=1,
        )
    s = Shape.cast(shape)
    values = bits[:, : s.width] @ (np.int64(1) << np.arange(s.width, dtype=np.int64))
    return values - (bits[:, s.width - 1] << s.width) if s.signed else values


def encode_word(layout: data.StructLayout, word: Word, last: bool) -> int:
    """The raw ``i_weights`` / ``o_weights`` payload (``layout`` is
    :func:`~neurofptt.hdl.ports.weight_dump_layout`) of ``word`` (matrix code, weights per
    lane, ``W_bar`` per lane or empty) with ``last``."""
    matrix, w, wbar = word
    fields: dict[str, Any] = {"matrix": matrix, "w": w, "last": int(last)}
    if wbar:
        fields["wbar"] = wbar
    return pack(layout, **fields)


def decode_word(layout: data.StructLayout, raw: int) -> tuple[Word, bool]:
    """The word and the ``last`` flag of a raw ``o_weights`` payload (the inverse of
    :func:`encode_word`; ``W_bar`` is empty unless the core is FPTT)."""
    fields = unpack(layout, raw)
    return (fields["matrix"], fields["w"], fields.get("wbar", [])), bool(fields["last"])


# -- framing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One raw ``i_event`` payload and where it belongs: ``step`` is -1 for a ``CLEAR`` and for
    events before it; ``read`` marks a ``READ_WEIGHTS``, whose acceptance the driver records
    (the core holds it off until a pending update is done)."""

    word: int
    sample: int
    step: int = -1
    read: bool = False


@dataclass(frozen=True)
class Load:
    """A weight load before sample ``sample``: the raw ``i_weights`` words, offered back to back
    (pauses only under ``i_weights`` stalls), and a ``READ_WEIGHTS`` event offered as soon as the
    first word is taken, which the core must hold off until the load has ended.  With ``clear``,
    that ``CLEAR`` event is offered together with the first word and both must be taken at the
    same edge."""

    words: tuple[int, ...]
    sample: int
    read: int
    clear: int | None = None

    @classmethod
    def of(cls, cfg: HardwareConfig, words: Sequence[Word], sample: int, with_clear: bool) -> Load:
        """The load of ``words`` (``last`` on the final one) on a learning core of ``cfg``."""
        layout, dump = learn_event_layout(cfg), weight_dump_layout(cfg)
        raws = tuple(encode_word(dump, w, i == len(words) - 1) for i, w in enumerate(words))
        clear = pack(layout, kind=EventKind.CLEAR) if with_clear else None
        return cls(raws, sample, pack(layout, kind=READ_WEIGHTS), clear)


def frame_sample(
    layout: data.StructLayout,
    x: np.ndarray,
    sample: int,
    *,
    clear: bool = True,
    abandoned: Sequence[int] = (),
    learn: np.ndarray | None = None,
    label: int | np.ndarray = 0,
    shift: np.ndarray | None = None,
) -> list[Event]:
    """The ``i_event`` events of one sample ``x`` ``(T, n_in)``: ``SPIKE`` events of the inputs
    in ``abandoned`` (a partial step that the ``CLEAR`` must wipe), the ``CLEAR`` (unless
    ``clear`` is False: a :class:`Load` sent it), then per step a ``SPIKE`` per active input in
    ascending order and the ``STEP``.  With ``learn`` and ``shift`` (per step) the ``STEP``
    carries ``learn``, ``label`` and ``shift`` (``layout`` must be a learning core's) and every
    ``STEP`` with ``learn`` is followed by a ``READ_WEIGHTS``.  ``label`` is the sample's class
    (sent on every ``STEP``) or the label field of each step
    (:func:`~neurofptt.verify.learning.sent_labels`: per-step labels where the step learns)."""
    labels = np.broadcast_to(np.asarray(label, np.int64), (x.shape[0],))
    events = [Event(pack(layout, kind=EventKind.SPIKE, index=int(i)), sample) for i in abandoned]
    if clear:
        events.append(Event(pack(layout, kind=EventKind.CLEAR), sample))
    for t in range(x.shape[0]):
        events += [
            Event(pack(layout, kind=EventKind.SPIKE, index=int(i)), sample, t)
            for i in np.flatnonzero(x[t])
        ]
        if learn is None:
            events.append(Event(pack(layout, kind=EventKind.STEP), sample, t))
            continue
        step = pack(
            layout,
            kind=EventKind.STEP,
            learn=int(learn[t]),
            label=int(labels[t]),
            shift=int(shift[t]),
        )
        events.append(Event(step, sample, t))
        if learn[t]:
            events.append(Event(pack(layout, kind=READ_WEIGHTS), sample, t, read=True))
    return events


def frame_run(
    layout: data.StructLayout,
    x: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    learn: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    loads: Mapping[int, Load] | None = None,
    abandoned: Sequence[Sequence[int]] | None = None,
) -> list[Event | Load]:
    """Every sample of ``x`` ``(B, T, n_in)`` framed by :func:`frame_sample` (``labels`` per
    sample ``(B,)`` or per step ``(B, T)`` with ``-1`` for no target, ``learn`` and ``shift``
    ``(B, T)``, ``abandoned`` input indices per sample), with ``loads[b]`` before sample ``b``;
    a load that sends the ``CLEAR`` replaces the sample's."""
    loads = loads or {}
    sent = None
    if labels is not None and learn is not None:
        sent = sent_labels(labels, learn)
    items: list[Event | Load] = []
    for b in range(x.shape[0]):
        load = loads.get(b)
        if load is not None:
            items.append(load)
        items += frame_sample(
            layout,
            x[b],
            b,
            clear=load is None or load.clear is None,
            abandoned=abandoned[b] if abandoned is not None else (),
            learn=None if learn is None else learn[b],
            label=0 if sent is None else sent[b],
            shift=None if shift is None else shift[b],
        )
    return items


def frame_inference(cfg: HardwareConfig, x: np.ndarray) -> list[Event]:
    """The ``i_event`` events of an inference run of ``x`` ``(B, T, n_in)`` on a core of
    ``cfg`` (:func:`frame_run`).  A learning core's wider payload keeps ``kind`` and ``index``
    where :func:`~neurofptt.hdl.ports.event_layout` puts them, and its ``learn``, ``label``
    and ``shift`` fields stay 0: it only infers."""
    return [item for item in frame_run(event_layout(cfg.n_in), x) if isinstance(item, Event)]


# -- stalls -----------------------------------------------------------------------------------


@dataclass
class Stalls:
    """Random stalls of one stream: with probability ``rate`` a gap of 1 to ``longest`` idle
    cycles before an input word, or ``ready`` low at an output edge.  Each stream draws from
    its own generator, so its pattern depends only on the seed and the stream's name, not on
    how the simulator interleaves the benches."""

    rate: float
    longest: int
    rng: random.Random

    @classmethod
    def seeded(cls, seed: int, stream: str) -> Stalls:
        """The stalls of ``stream`` (a key of :data:`STALL_RATES`) for ``seed``."""
        rate, longest = STALL_RATES[stream]
        return cls(rate, longest, random.Random(f"{stream}:{int(seed)}"))

    def gap(self) -> int:
        """Idle cycles before the next input word (mostly 0)."""
        return self.rng.randint(1, self.longest) if self.rng.random() < self.rate else 0

    def ready(self) -> bool:
        """Whether an output consumer is ready at the next edge."""
        return self.rng.random() >= self.rate


def random_stalls(seed: int, streams: Iterable[str] = STALL_RATES) -> dict[str, Stalls]:
    """:class:`Stalls` for every stream in ``streams``: what backpressure means in a bench."""
    return {stream: Stalls.seeded(seed, stream) for stream in streams}


# -- the simulator-neutral port interface ------------------------------------------------------


class Ports(Protocol):
    """One simulator's access to the core's top-level ports, named as in the Verilog."""

    async def tick(self, *names: str) -> tuple[int, ...]:
        """Wait for the next rising clock edge; return the values ``names`` had at that edge
        (X or Z read as -1, which no port holds, so it is never 1 and never a payload)."""
        ...

    def set(self, name: str, value: int) -> None:
        """Drive an input port from the next edge on."""
        ...

    async def idle_until(self, name: str) -> None:
        """A hint after an edge at which 1-bit ``name`` was low: return once it may be high
        again.  A simulator that can wait on a signal skips the edges in between (no Python runs
        per edge); the caller ticks and checks either way, so returning at once is correct."""
        ...

    def cycle(self) -> int:
        """Number of the last edge; differences are clock cycles."""
        ...


#: a coroutine of a bench (the driver or a monitor), started with the simulator's ports
Bench = Callable[[Ports], Awaitable[None]]
#: a monitor's checks of one output stream, free of any simulator: it is sent each transfer as
#: ``(payload, cycle)`` and yields the ``(sample, step)`` it expects next (for reports); it
#: returns once it has every transfer of the run.  The cocotb and Amaranth benches feed it as
#: the transfers happen, :mod:`neurofptt.verify.harness` from a simulation's capture file.
Checker = Generator[tuple[int, int], tuple[int, int], None]


class AmaranthPorts:
    """:class:`Ports` of an ``amaranth.sim`` testbench: each testbench gets its own (its own
    context), and counts the edges it awaits, so the counts of all testbenches agree."""

    def __init__(self, ctx: Any, dut: Any):
        self.ctx = ctx
        self.dut = dut
        self.edges = 0
        self._values: dict[str, Any] = {}

    def _value(self, name: str) -> Any:
        if name not in self._values:
            obj = self.dut
            for part in name.split("__"):
                obj = getattr(obj, part)
            self._values[name] = obj.as_value() if isinstance(obj, data.View) else obj
        return self._values[name]

    async def tick(self, *names: str) -> tuple[int, ...]:
        _, _, *values = await self.ctx.tick().sample(*(self._value(n) for n in names))
        self.edges += 1
        return tuple(int(v) for v in values)

    def set(self, name: str, value: int) -> None:
        self.ctx.set(self._value(name), value)

    async def idle_until(self, name: str) -> None:
        """Returns at once: the Amaranth simulator runs Python every edge anyway."""

    def cycle(self) -> int:
        return self.edges


def run_amaranth(dut: Any, benches: Sequence[Bench], cycles: int) -> tuple[bool, int]:
    """Simulate ``dut`` with ``benches`` as testbenches until all end or ``cycles`` clock
    cycles pass; returns whether they all ended and the cycles simulated.  A core that hangs
    ends the run at the budget instead of hanging the test."""
    sim = Simulator(dut)
    sim.add_clock(AMARANTH_PERIOD)
    edges = [0]

    async def clock(ctx: Any) -> None:
        async for _ in ctx.tick():
            edges[0] += 1

    def testbench(bench: Bench) -> Callable[[Any], Awaitable[None]]:
        async def run(ctx: Any) -> None:
            await bench(AmaranthPorts(ctx, dut))

        return run

    sim.add_testbench(clock, background=True)
    for bench in benches:
        sim.add_testbench(testbench(bench))
    while sim.advance():
        if edges[0] >= cycles:
            return False, edges[0]
    return True, edges[0]


def _read(handle: Any) -> int:
    value = handle.value
    try:
        return value.to_unsigned() if isinstance(value, LogicArray) else int(value)
    except ValueError:  # X or Z bits
        return -1


class CocotbPorts:
    """:class:`Ports` of the generated Verilog under cocotb: one for all benches of a run (the
    handles are global); edges are numbered by simulation time."""

    def __init__(self, dut: Any):
        self.dut = dut
        self._handles: dict[str, Any] = {}
        # one trigger for every edge: a weight dump awaits it once per word
        self._edge = RisingEdge(dut.clk)

    def _handle(self, name: str) -> Any:
        if name not in self._handles:
            self._handles[name] = getattr(self.dut, name)
        return self._handles[name]

    async def tick(self, *names: str) -> tuple[int, ...]:
        # read right after the edge, before the core's registers update: what the edge sampled
        await self._edge
        return tuple([_read(self._handle(n)) for n in names])

    def set(self, name: str, value: int) -> None:
        self._handle(name).value = value

    async def idle_until(self, name: str) -> None:
        handle = self._handle(name)
        await ReadOnly()  # the value after the edge's updates
        if _read(handle) != 1:
            await RisingEdge(handle)

    def cycle(self) -> int:
        return int(get_sim_time(unit="ns") // CLOCK_NS)

    async def start(self) -> None:
        """Hold every input idle (a learning core's ``i_weights`` too, so an inference run never
        sees a load), start the clock and reset for two cycles."""
        dut = self.dut
        inputs = ["i_event__valid", "i_event__payload", "o_spike__ready", "o_readout__ready"]
        if hasattr(dut, "i_weights__valid"):
            inputs += ["i_weights__valid", "i_weights__payload", "o_weights__ready"]
        for name in inputs:
            self.set(name, 0)
        dut.rst.value = 1
        # impl="gpi": the clock toggles in cocotb's C layer, with no Python call per edge
        Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start(start_high=False)
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0


async def run_cocotb(dut: Any, benches: Sequence[Bench], cycles: int) -> tuple[bool, int]:
    """Start and reset the core (:meth:`CocotbPorts.start`), then run ``benches`` concurrently
    until all end or ``cycles`` clock cycles pass (then they are cancelled); returns whether they
    all ended and the cycles from the end of the reset."""
    ports = CocotbPorts(dut)
    await ports.start()
    start = ports.cycle()
    tasks = [cocotb.start_soon(bench(ports)) for bench in benches]

    async def finished() -> None:
        for task in tasks:
            await task

    try:
        await with_timeout(finished(), cycles * CLOCK_NS, "ns")
    except SimTimeoutError:
        for task in tasks:
            task.cancel()
        return False, ports.cycle() - start
    return True, ports.cycle() - start


def cycle_budget(
    cfg: HardwareConfig,
    samples: int,
    steps: int,
    *,
    updates: int = 0,
    loads: int = 0,
    stalled: bool = False,
) -> int:
    """A generous bound on the cycles of a run of ``samples`` samples of ``steps`` steps with
    ``updates`` weight updates and ``loads`` weight loads, each read back whole: every step
    at its slowest (all inputs, all neurons spiking), from :mod:`neurofptt.hdl.cost`, with room
    for stalls; a run past it has hung."""
    total = samples * (
        cycles_per_clear(cfg) + steps * cycles_per_step(cfg, cfg.n_in, cfg.n_rec, cfg.n_rec)
    )
    if updates:
        total += updates * (cycles_per_update(cfg) + cycles_per_dump(cfg))
    total += loads * (cycles_per_load(cfg) + cycles_per_dump(cfg))
    return (8 if stalled else 2) * total + 1000


# -- the driver and the monitors --------------------------------------------------------------


class _Sink:
    """Consumer side of an output stream; checks that ``valid`` and the payload hold until
    ``ready`` and draws ``ready`` from the stream's stalls (always ready without them).

    ``ready`` is the sink's own output, so it keeps the value it drove rather than reading it
    back: a weight dump moves one word per cycle, and every port read per edge costs the
    cocotb benches time on the longest runs."""

    def __init__(self, ports: Ports, name: str, bench: StreamBench):
        self.ports = ports
        self.name = name
        self.bench = bench
        self.stalls = bench.stalls.get(name)
        self.signals = (f"{name}__valid", f"{name}__payload")
        self.ready_name = f"{name}__ready"
        self.ready = 0 if self.stalls else 1  # what the core sees at the next edge
        self.stalled: int | None = None  # payload offered but not taken at the last edge
        self.where = (0, 0)  # (sample, step) being collected, for error reports
        ports.set(self.ready_name, self.ready)

    async def take(self) -> int:
        """Wait for the next transfer and return its payload (``ports.cycle()`` is then the
        transfer's cycle)."""
        while True:
            valid, payload = await self.ports.tick(*self.signals)
            word = payload if valid == 1 else None
            if self.stalled is not None and word != self.stalled:
                self.bench.protocol(
                    *self.where,
                    f"{self.name}: valid dropped or payload changed before ready "
                    f"(cycle {self.ports.cycle()})",
                )
            transferred = valid == 1 and self.ready == 1
            self.stalled = word if valid == 1 and not transferred else None
            if self.stalls:
                self.ready = int(self.stalls.ready())
                self.ports.set(self.ready_name, self.ready)
            if transferred:
                return self.bench.defined(self.name, self.where, payload)
            await self.ports.idle_until(self.signals[0])

    async def feed(self, checker: Checker) -> None:
        """Hand every transfer, with its cycle, to ``checker`` until it has all it expects."""
        with contextlib.suppress(StopIteration):
            self.where = next(checker)
            while True:
                self.where = checker.send((await self.take(), self.ports.cycle()))


class StreamBench:
    """The driver and the monitors of one run, and what they observed.

    ``spikes`` ``(B, T, n_rec)`` and ``readout`` ``(B, T, n_out)`` as collected; ``step_start``
    (the cycle the step's first event was taken), ``step_end`` (the cycle of its last readout
    value) and ``read_accept`` (the cycle a ``READ_WEIGHTS`` after the step was taken), -1 where
    none; ``dumps`` the words of every weight dump in order, unless ``on_dump`` takes them:
    it is called with each dump's number (from 0) and raw ``o_weights`` payloads as the dump
    ends, so that a long run checks every dump in bulk (:func:`unpack_many`) and keeps none;
    ``dumps_done`` counts them either way, and ``dump_end`` holds the cycle each dump's last
    word was taken; ``load_cycles`` per load the cycles from its first word to its accepted
    ``READ_WEIGHTS``; ``errors`` every broken stream rule; ``steps_done`` the steps whose
    readout is complete.  ``stalls`` maps stream names to their
    :class:`Stalls`; a stream without is never stalled.
    """

    def __init__(
        self,
        cfg: HardwareConfig,
        batch: int,
        steps: int,
        stalls: Mapping[str, Stalls] | None = None,
        on_dump: Callable[[int, list[int]], None] | None = None,
    ):
        self.cfg = cfg
        self.batch, self.steps = batch, steps
        self.stalls = dict(stalls or {})
        self.spikes = np.zeros((batch, steps, cfg.n_rec), bool)
        self.readout = np.zeros((batch, steps, cfg.n_out), np.int64)
        self.step_start = np.full((batch, steps), -1, np.int64)
        self.step_end = np.full((batch, steps), -1, np.int64)
        self.read_accept = np.full((batch, steps), -1, np.int64)
        self.dumps: list[list[Word]] = []
        self.on_dump = on_dump
        self.dumps_done = 0
        self.dump_end: list[int] = []
        self.load_cycles: list[int] = []
        self.errors: list[Mismatch] = []
        self.steps_done = 0

    @property
    def step_cycles(self) -> np.ndarray:
        """``(B, T)`` cycles of each step, its first event taken to its last readout value (both
        counted) and the :data:`~neurofptt.hdl.cost.READOUT_END` cycles after it, up to the
        cycle that can take the next event, as :func:`~neurofptt.hdl.cycles_per_step` counts
        them; :attr:`step_spacing` measures that last part where a step follows.  -1 for steps
        not completed."""
        done = (self.step_end >= 0) & (self.step_start >= 0)
        return np.where(done, self.step_end - self.step_start + 1 + READOUT_END, -1)

    @property
    def step_spacing(self) -> np.ndarray:
        """``(B, T - 1)`` cycles from each step's first event taken to the next step's: with
        the events offered back to back, the step's cycles up to the one that can take the
        next event, what :func:`~neurofptt.hdl.cycles_per_step` counts and ``step_cycles``
        (which ends at the last readout value) cannot see."""
        return np.diff(self.step_start, axis=1)

    def protocol(self, b: int, t: int, detail: str, index: int = -1) -> None:
        """Record a stream-rule violation at step ``t`` of sample ``b``."""
        self.errors.append(Mismatch(b, t, "protocol", index, -1, -1, detail))

    def benches(
        self, items: Sequence[Event | Load], dumps: Sequence[tuple[int, int]] = ()
    ) -> list[Bench]:
        """The driver of ``items`` and the monitors: spikes and readouts of every step, and
        one weight dump per ``(sample, step)`` in ``dumps``."""
        benches: list[Bench] = [lambda ports: self.drive(ports, items)]
        if self.batch and self.steps:
            benches += [self.collect_spikes, self.collect_readout]
        if dumps:
            benches.append(lambda ports: self.collect_dumps(ports, dumps))
        return benches

    async def drive(self, ports: Ports, items: Iterable[Event | Load]) -> None:
        """Offer every event on ``i_event`` back to back (gaps only under ``i_event`` stalls)
        and run every :class:`Load`; record when each step's first event and each
        ``READ_WEIGHTS`` were taken."""
        stalls = self.stalls.get("i_event")
        for item in items:
            if isinstance(item, Load):
                await self._load(ports, item)
                continue
            gap = stalls.gap() if stalls else 0
            if gap:
                ports.set("i_event__valid", 0)
                for _ in range(gap):
                    await ports.tick()
            ports.set("i_event__payload", item.word)
            ports.set("i_event__valid", 1)
            while True:
                (ready,) = await ports.tick("i_event__ready")
                if ready == 1:
                    break
                await ports.idle_until("i_event__ready")
            self.taken(item, ports.cycle())
        ports.set("i_event__valid", 0)

    def taken(self, event: Event, cycle: int) -> None:
        """Record that ``event`` was taken at ``cycle``: the start of its step if it is the
        step's first, the acceptance of a ``READ_WEIGHTS``."""
        b, t = event.sample, event.step
        if t < 0:
            return
        if event.read:
            self.read_accept[b, t] = cycle
        elif self.step_start[b, t] < 0:
            self.step_start[b, t] = cycle

    async def _load(self, ports: Ports, load: Load) -> None:
        """Feed ``load``'s words on ``i_weights`` while offering its events (the ``CLEAR`` with
        the first word, the ``READ_WEIGHTS`` from the edge after), one edge at a time, and check
        that the core takes the ``CLEAR`` with the first word, says ``busy`` until the last
        word and takes the ``READ_WEIGHTS`` only then."""
        stalls = self.stalls.get("i_weights")
        words = load.words
        events = ([load.clear] if load.clear is not None else []) + [load.read]
        word_at: list[int] = []  # transfer cycles of the words
        event_at: list[int] = []  # and of the events
        not_busy: list[int] = []
        wait: int | None = None  # idle cycles before the next word
        offer_word, offer_event = True, load.clear is not None
        ports.set("i_weights__payload", words[0])
        ports.set("i_weights__valid", 1)
        if offer_event:
            ports.set("i_event__payload", events[0])
        ports.set("i_event__valid", int(offer_event))
        while len(event_at) < len(events):
            event_ready, word_ready, busy = await ports.tick(
                "i_event__ready", "i_weights__ready", "busy"
            )
            now = ports.cycle()
            if offer_word and word_ready == 1:
                word_at.append(now)
                offer_word = False
            if offer_event and event_ready == 1:
                event_at.append(now)
                offer_event = False
            if word_at and now > word_at[0] and len(word_at) < len(words) and busy != 1:
                not_busy.append(now)
            if not offer_word and word_at and len(word_at) < len(words):
                if wait is None:
                    wait = stalls.gap() if stalls else 0
                if wait == 0:
                    ports.set("i_weights__payload", words[len(word_at)])
                    offer_word, wait = True, None
                else:
                    wait -= 1
            ports.set("i_weights__valid", int(offer_word))
            if not offer_event and word_at and len(event_at) < len(events):
                ports.set("i_event__payload", events[len(event_at)])
                offer_event = True
            ports.set("i_event__valid", int(offer_event))
        ports.set("i_weights__valid", 0)
        ports.set("i_event__valid", 0)
        b = load.sample
        if load.clear is not None and event_at[0] != word_at[0]:
            self.protocol(
                b, -1, "the CLEAR offered with the first i_weights word was not taken with it"
            )
        if len(word_at) < len(words):
            self.protocol(
                b, -1, f"READ_WEIGHTS taken after {len(word_at)} of {len(words)} load words"
            )
        if not_busy:
            self.protocol(b, -1, f"busy low during the load (cycle {not_busy[0]})")
        self.load_cycles.append(event_at[-1] - word_at[0])

    def defined(self, name: str, where: tuple[int, int], payload: int) -> int:
        """``payload`` of a transfer on ``name``, or 0 and a protocol error if it had X or Z
        bits (read as -1)."""
        if payload < 0:
            self.protocol(*where, f"{name}: X or Z in the payload")
            return 0
        return payload

    async def collect_spikes(self, ports: Ports) -> None:
        """Every ``o_spike`` event of every step (:meth:`spike_checker`)."""
        await _Sink(ports, "o_spike", self).feed(self.spike_checker())

    async def collect_readout(self, ports: Ports) -> None:
        """Every ``o_readout`` value of every step (:meth:`readout_checker`)."""
        await _Sink(ports, "o_readout", self).feed(self.readout_checker())

    def spike_checker(self) -> Checker:
        """Takes every ``o_spike`` payload of every step: ``SPIKE`` events with ascending
        indices below ``n_rec``, ended by a ``STEP``."""
        read = field_reader(event_layout(self.cfg.n_rec), "kind", "index")
        n_rec = self.cfg.n_rec
        for b in range(self.batch):
            for t in range(self.steps):
                last = -1
                while True:
                    raw, _ = yield b, t
                    kind, index = read(raw)
                    if kind == EventKind.STEP.value:
                        break
                    if kind != EventKind.SPIKE.value or index >= n_rec:
                        self.protocol(b, t, f"o_spike event kind {kind} index {index}", index)
                        continue
                    if index <= last:
                        self.protocol(
                            b, t, f"o_spike index {index} after {last}: not ascending", index
                        )
                    last = index
                    self.spikes[b, t, index] = True

    def readout_checker(self) -> Checker:
        """Takes every ``o_readout`` payload of every step: indices 0 .. ``n_out - 1`` in
        order, ``last`` on the final one; the cycle of each step's last value is its end."""
        read = field_reader(readout_layout(self.cfg), "index", "value", "last")
        n_out = self.cfg.n_out
        for b in range(self.batch):
            for t in range(self.steps):
                for k in range(n_out):
                    raw, cycle = yield b, t
                    index, value, last = read(raw)
                    if index != k:
                        self.protocol(b, t, f"o_readout index {index}, expected {k}", index)
                    if last != (k == n_out - 1):
                        self.protocol(b, t, f"o_readout last={last} on index {k}", index)
                    self.readout[b, t, k] = value
                self.step_end[b, t] = cycle  # the step's last value
                self.steps_done += 1

    async def collect_dumps(self, ports: Ports, places: Sequence[tuple[int, int]]) -> None:
        """One weight dump on ``o_weights`` per ``(sample, step)`` in ``places`` (where it is
        expected, for reports): its words up to the one with ``last``, handed to ``on_dump``
        or decoded into ``dumps``.  Nothing is decoded per word: the ``last`` bit is read off
        the raw payload."""
        sink = _Sink(ports, "o_weights", self)
        layout = weight_dump_layout(self.cfg)
        last = layout["last"].offset
        for where in places:
            sink.where = where
            raws = [await sink.take()]
            while not raws[-1] >> last & 1:
                raws.append(await sink.take())
            self.dump_end.append(ports.cycle())
            if self.on_dump is None:
                self.dumps.append([decode_word(layout, raw)[0] for raw in raws])
            else:
                self.on_dump(self.dumps_done, raws)
            self.dumps_done += 1
