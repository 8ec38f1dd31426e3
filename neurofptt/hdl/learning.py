"""The on-chip learning unit of :class:`~neurofptt.hdl.core.LifCore` (e-prop and FPTT).

Elaborated only when ``config.learning`` is set; it implements :mod:`neurofptt.onchip` bit for
bit.  It listens to the inference datapath where the values it needs pass by, so collecting the
per-neuron learning inputs and updating the traces costs no extra cycles:

* ``event``: a ``STEP`` latches whether and toward which label to learn;
* ``inputs``: the step's input bits ``x_i``, the sequencer's set of the inputs that spiked
  (:class:`~neurofptt.hdl.sequencer.InputSet`, emptied by ``CLEAR`` and after ``UPDATE``);
* ``rows`` (stage 1 of the row pipeline): ``CLEAR`` zeroes the trace rows as it zeroes the
  state rows;
* ``updating`` (the row entering stage 3 of ``UPDATE``): the trace tables are read at it, for
  its stage 4;
* ``update`` (stage 4 of ``UPDATE``, ``P`` neurons): :class:`~neurofptt.hdl.traces.TraceUpdate`
  leaks and adds the row's traces ``zbar`` (with ``z(t-1)``) and ``obar`` (with ``z(t)``), and
  the input traces ``xbar`` of the same row address, with the step's input bits, over two
  cycles; the new membranes form ``psi_j`` over three;
* ``readout``: each readout sent becomes the error ``e_k``
  (:class:`~neurofptt.hdl.error.ReadoutError`, with the softmax error's passes before the
  sweep).

After the readout of a ``STEP`` whose payload has ``learn`` set (``control.start``), the
``SWEEP`` state runs over ``W_out``, ``W_in`` and ``W_rec`` one word (``lanes`` synapses) per
cycle (:class:`~neurofptt.hdl.sweep.SweepCounter`), in the order and with the random draws of
the golden model: stage 0 addresses the weight word (and the ``W_bar`` and random-feedback
words), ``FETCH`` registers those words as they leave their block RAMs and addresses the
per-neuron memories, ``READ`` registers the words again and each matrix's factors, ``SELECT``
the operands of the word's matrix, and from ``LANE`` on one
:class:`~neurofptt.hdl.weight_update.WeightUpdateLane` per lane forms the new weight word and
FPTT's new ``W_bar`` word, a carry chain per stage, with draws from the
:class:`~neurofptt.hdl.lfsr.LfsrBank` (:func:`sweep_timing` has the stages).  The ``W_out``
sweep also forms ``delta_j`` (:class:`~neurofptt.hdl.learning_signal.LearningSignal`); ``gap``
idle cycles between the ``W_out`` and ``W_in`` sweeps let the last one arrive before ``W_in``
reads it, and ``DRAIN`` waits for the last word to leave the pipeline, so an update takes
:func:`~neurofptt.hdl.cost.learning_cycles_per_update` cycles plus one.  The requests of the
sequencer (an update, a dump) are registered before they act.  ``control.dump``
streams every weight word (and ``W_bar`` word) out on ``o_weights`` (two cycles a word, the
memories read at the sweep's position: :meth:`LearningUnit._dump`), so a testbench can read
the learned state through the ports, and while the core is idle
:class:`~neurofptt.hdl.weight_load.WeightLoad` takes the same words back on ``i_weights``.  The
word that ends a load restarts learning as :meth:`~neurofptt.onchip.LearningState.start` does
(FPTT's previous factors zero, the LFSRs at their seeds), with ``W_bar`` as loaded.

Per-neuron state lives in memories with a synchronous read port, like the weights, so it maps to
RAM and is read through no wide multiplexer (``P`` lanes, ``R = ceil(n_rec / P)``,
``Ro = ceil(n_out / P)``, ``K = ceil(n_in / R)``)::

    neuron   depth R,   per lane {zbar, obar}        row r, lane l: neuron r*P + l
    psi      depth R,   per lane psi                 row r, lane l: neuron r*P + l
    xbar     depth ceil(n_in / K), K traces a word   word q, slot k: input q*K + k
    error    depth Ro,  per lane e                   row s, lane l: readout s*P + l
                                                     (softmax: o_k until its passes)
    delta    depth R,   per lane delta               row r, lane l: neuron r*P + l

``xbar`` packs ``K`` inputs a word so that its words fit in the ``R`` rows of ``UPDATE``.  A
sweep reads the presynaptic trace of its ``pre`` (one value for all lanes: word ``pre // P``
or ``pre // K``, then a slot multiplexer) and the postsynaptic ``e`` or ``delta`` row of its
``row`` (one value per lane).  FPTT keeps the previous update's factors in five more memories
of the same layouts, written as the sweep passes: a trace once the last word of its ``pre`` has
read it, the ``e`` and ``delta`` rows during the last ``pre`` of ``W_out`` and ``W_rec``.  A
load cannot zero them in one cycle, so a flag says whether they hold an update at all
(``Gp = 0`` until the first update after reset or a load).  What stays in registers: the LFSRs,
the sweep counters, the readout being written to ``error`` and the softmax error's maximum, sum
and divider (the step's input bits are the sequencer's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import onehot, pick
from neurofptt.hdl.blocks import WRITE_LATENCY, SlicedMemory
from neurofptt.hdl.error import ReadoutError
from neurofptt.hdl.layouts import (
    MATRIX_CODES,
    RowOp,
    addr_width,
    learning_control,
    readout_tap_layout,
    row_op_layout,
    row_shape,
    tap,
    update_row_layout,
    weight_word_layout,
)
from neurofptt.hdl.learning_signal import LearningSignal, signal_latency
from neurofptt.hdl.lfsr import LfsrBank
from neurofptt.hdl.ports import EventKind, learn_event_layout, weight_dump_layout
from neurofptt.hdl.rows import packed_rows
from neurofptt.hdl.state_flags import StateFlags
from neurofptt.hdl.sweep import SweepCounter, matrix_shapes, position_layout
from neurofptt.hdl.traces import TraceUpdate, inputs_per_word, neuron_trace_layout
from neurofptt.hdl.weight_load import WeightLoad
from neurofptt.hdl.weight_update import WeightUpdateLane, lane_cycles
from neurofptt.onchip.state import LearningState
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config
from neurofptt.quant.network import QuantizedNetwork

__all__ = [
    "MATRIX_CODES",
    "LearningUnit",
    "SweepTiming",
    "learning_signature",
    "sweep_timing",
    "weight_depths",
]

#: the sweep's stages: 0 addresses the weight, W_bar and feedback memories; FETCH registers
#: their words and addresses the per-neuron tables; READ registers the words again and each
#: matrix's factors; SELECT the operands of the word's matrix; LANE hands them to the lanes
#: and the learning signal
FETCH, READ, SELECT, LANE = 1, 2, 3, 4


@dataclass(frozen=True)
class SweepTiming:
    """The sweep's pipeline in cycles: ``gap`` idle cycles between the ``W_out`` and ``W_in``
    sweeps (the last ``delta_j`` is written in stage ``gap + 1 + FETCH``, the cycle ``W_in``
    reads its first row), and ``drain``, the last stage (the last word's weight, or FPTT's
    ``W_bar``, written :data:`~neurofptt.hdl.blocks.WRITE_LATENCY` cycles after the lane's
    output), the cycles ``DRAIN`` waits after the last word."""

    gap: int
    drain: int


def sweep_timing(cfg: HardwareConfig) -> SweepTiming:
    """The :class:`SweepTiming` of ``cfg``'s learning core."""
    cycles = lane_cycles(cfg)
    last = cycles.wbar if learning_config(cfg).mode == "fptt" else cycles.w
    return SweepTiming(
        gap=LANE - FETCH + signal_latency(cfg) - 1, drain=LANE + last + WRITE_LATENCY
    )


def weight_depths(cfg: HardwareConfig) -> dict[str, int]:
    """Words of each weight memory, by matrix name."""
    return {name: n_pre * n_rows for name, (n_pre, n_rows, _) in matrix_shapes(cfg).items()}


def learning_signature(cfg: HardwareConfig) -> wiring.Signature:
    """Ports of :class:`LearningUnit` (see the module docstring); ``w_<name>_read`` and
    ``w_<name>_write`` are its ports on weight memory ``w_<name>``, whose read address is the
    unit's while ``active``."""
    word = unsigned(cfg.lanes * cfg.weight_bits)
    members = {
        "event": In(tap(learn_event_layout(cfg))),
        "inputs": In(cfg.n_in),
        "rows": In(tap(row_op_layout(cfg))),
        "updating": In(tap(row_shape(cfg))),
        "update": In(tap(update_row_layout(cfg))),
        "readout": In(tap(readout_tap_layout(cfg))),
        "control": In(learning_control()),
        "active": Out(1),
        "o_weights": Out(stream.Signature(weight_dump_layout(cfg))),
        "i_weights": In(stream.Signature(weight_dump_layout(cfg))),
    }
    for name, depth in weight_depths(cfg).items():
        width = addr_width(depth)
        members[f"w_{name}_read"] = In(ReadPort.Signature(addr_width=width, shape=word))
        members[f"w_{name}_write"] = In(WritePort.Signature(addr_width=width, shape=word))
    return wiring.Signature(members)


class _Table:
    """A per-neuron memory: ``depth`` words of ``slots`` values, one write port (``granular``:
    one enable per slot, for tables written one value at a time) and one synchronous read
    port (``data``; ``transparent``: it sees a write of the same cycle).

    The read address is ``addr``, a register of the table's own, marked ``keep``, loaded with
    the sweep's position (so the table is read a cycle after the weight memories, in
    ``FETCH``), or for the traces with the row entering the update.  A port addressed by the
    sweep's position register itself becomes, in LUT-RAM, an address register that synthesis
    shares between all tables read at that position, and with the traces' select between the
    sweep and the update in front of it; that one register's route to every table, or the
    select, was a placed demo FPTT core's longest path at one placement seed or another of
    several designs.  Loaded through its own register, each table gets an address register of
    its own with nothing between it and the RAMs; loaded with the position rather than the
    position the sweep moves to, nothing of the sweep's advance (its idle gap, a dump's
    ``ready``) lies in front of it either.
    """

    def __init__(
        self,
        m: Module,
        name: str,
        shape,
        slots: int,
        depth: int,
        *,
        granular: bool = False,
        transparent: bool = False,
    ) -> None:
        mem = Memory(shape=data.ArrayLayout(shape, slots), depth=depth, init=[])
        m.submodules[name] = mem
        self.slots = slots
        self.wr = mem.write_port(granularity=1 if granular else None)
        read = mem.read_port(transparent_for=(self.wr,) if transparent else ())
        self.addr = Signal.like(read.addr, name=f"{name}_read_addr", attrs={"keep": 1})
        m.d.comb += read.addr.eq(self.addr)
        self.data = read.data

    def write_one(self, m: Module, addr: Value, index: Value, value: Value) -> None:
        """Write ``value`` into slot ``index`` of word ``addr`` (comb; the caller's condition)."""
        self.write_slots(m, addr, onehot(index, self.slots), value)

    def write_slots(self, m: Module, addr: Value, enables: Value, value: Value) -> None:
        """Write ``value`` into the slots of word ``addr`` whose bit of ``enables`` is set."""
        m.d.comb += [self.wr.addr.eq(addr), self.wr.en.eq(enables)]
        m.d.comb += [self.wr.data[i].eq(value) for i in range(self.slots)]


def slot_of(row: data.View, index: Value, field: str | None = None) -> Value:
    """Slot ``index`` of a table word ``row`` (its ``field``, in a table of structures)."""
    values = [row[i][field] if field else row[i] for i in range(len(row))]
    return pick(values, index)


@dataclass
class _Parts:
    """What the learning unit's methods wire together: its memories, components and registers."""

    tables: dict[str, _Table]
    wbar: dict[str, tuple[ReadPort, WritePort]]
    feedback: ReadPort | None
    error: ReadoutError
    sweep: SweepCounter
    signal: LearningSignal
    lfsr: LfsrBank
    load: WeightLoad
    traces: TraceUpdate
    lanes: list[WeightUpdateLane]
    due: Signal  # the STEP being processed asked for an update
    label: Signal
    shift: Signal
    prev_valid: Signal  # FPTT: the previous factors are an update's, not the reset's
    stages: list[Signal]  # stages[k]: the word in stage k of the sweep ({valid, at}), k >= 1
    states: StateFlags  # SWEEP in a flip-flop: it selects the error table's read address
    dump_valid: Signal  # o_weights: the word at the sweep's position is offered
    dump_last: Signal  # that word is the final one


class LearningUnit(wiring.Component):
    """The learning state, the update sweep, the weight dump and the weight load of a learning
    core (see the module docstring)."""

    def __init__(self, net: QuantizedNetwork) -> None:
        cfg = self.cfg = net.config
        lc = self.lc = learning_config(cfg)
        self.net = net
        self.fptt = lc.mode == "fptt"
        self.R, self.Ro = lane_rows(cfg.n_rec, cfg.lanes), lane_rows(cfg.n_out, cfg.lanes)
        self.K = inputs_per_word(cfg)
        self.XR = lane_rows(cfg.n_in, self.K)
        self.timing = sweep_timing(cfg)
        self.cycles = lane_cycles(cfg)
        super().__init__(learning_signature(cfg))

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        p = self._parts(m)
        self._events(m, p)
        self._traces(m, p)
        self._control(m, p)
        self._read_stage(m, p)
        self._writes(m, p)
        self._dump_stream(m, p)
        self._load_writes(m, p)
        return m

    # -- memories, components, registers ----------------------------------------------------------
    def _tables(self, m: Module) -> dict[str, _Table]:
        """The per-neuron tables (the ``error`` table is :class:`ReadoutError`'s)."""
        cfg, lc, P, R, Ro, K, XR = (
            self.cfg,
            self.lc,
            self.cfg.lanes,
            self.R,
            self.Ro,
            self.K,
            self.XR,
        )
        tb, sb, eb = lc.trace_bits, lc.signal_bits, cfg.membrane_bits + 1
        tables = {
            "neuron": _Table(m, "neuron_traces", neuron_trace_layout(cfg), P, R),
            "psi": _Table(m, "psi", unsigned(lc.psi_bits + 1), P, R),
            "xbar": _Table(m, "input_traces", unsigned(tb), K, XR),
            # transparent: the last delta of W_out is written as W_in reads its first row
            "delta": _Table(m, "delta", signed(sb), P, R, granular=True, transparent=True),
        }
        if self.fptt:  # the previous update's factors
            tables["prev_err"] = _Table(m, "prev_error", signed(eb), P, Ro)
            tables["prev_delta"] = _Table(m, "prev_delta", signed(sb), P, R)
            tables["prev_obar"] = _Table(m, "prev_obar", unsigned(tb), P, R, granular=True)
            tables["prev_xbar"] = _Table(m, "prev_xbar", unsigned(tb), K, XR, granular=True)
            tables["prev_zbar"] = _Table(m, "prev_zbar", unsigned(tb), P, R, granular=True)
        return tables

    def _synapse_memories(self, m: Module) -> tuple[dict, ReadPort | None]:
        """FPTT's ``W_bar`` memories (by matrix: read and write port) and the random feedback
        ``B`` (a read port; ``B`` (n_rec, n_out) is stored like ``W_out`` (n_out, n_rec))."""
        cfg, lc, P = self.cfg, self.lc, self.cfg.lanes
        start = LearningState.start(self.net)
        wbar = {}
        if self.fptt:
            for name, depth in weight_depths(cfg).items():
                init = packed_rows(start.wbar[name], P, lc.wbar_bits)
                m.submodules[f"wbar_{name}"] = mem = SlicedMemory(
                    P * lc.wbar_bits, depth, init, writable=True
                )
                wbar[name] = (mem.read, mem.write)
        feedback = None
        if start.feedback is not None:
            init = packed_rows(start.feedback.T, P, cfg.weight_bits)
            m.submodules.feedback = mem = SlicedMemory(
                P * cfg.weight_bits, cfg.n_rec * self.Ro, init, writable=False
            )
            feedback = mem.read
        return wbar, feedback

    def _parts(self, m: Module) -> _Parts:
        cfg = self.cfg
        tables = self._tables(m)
        wbar, feedback = self._synapse_memories(m)
        lanes = []
        for lane in range(cfg.lanes):
            m.submodules[f"lane_{lane}"] = unit = WeightUpdateLane(cfg)
            lanes.append(unit)
        staged = data.StructLayout({"valid": 1, "at": position_layout(cfg)})
        p = _Parts(
            tables=tables,
            wbar=wbar,
            feedback=feedback,
            error=ReadoutError(cfg),
            sweep=SweepCounter(cfg),
            signal=LearningSignal(cfg),
            lfsr=LfsrBank(cfg),
            load=WeightLoad(cfg),
            traces=TraceUpdate(cfg),
            lanes=lanes,
            due=Signal(name="due"),
            label=Signal(range(max(cfg.n_out, 2)), name="label"),
            shift=Signal(range(cfg.membrane_bits + 1), name="shift"),
            prev_valid=Signal(name="prev_valid"),
            stages=[
                Signal(staged, name=f"sweep_s{k}")
                for k in range(self.timing.drain - WRITE_LATENCY + 1)  # the last word's write
            ],
            states=StateFlags("SWEEP"),
            dump_valid=Signal(name="d_valid"),
            dump_last=Signal(name="d_last"),
        )
        for name in ("error", "sweep", "signal", "lfsr", "load", "traces"):
            m.submodules[name] = getattr(p, name)
        return p

    # -- what the inference datapath shows --------------------------------------------------------
    def _events(self, m: Module, p: _Parts) -> None:
        """The events taken, the readouts sent, the weight load."""
        cfg, event = self.cfg, self.event
        # a STEP says whether and toward which label to learn
        with m.If(event.valid & (event.p.kind == EventKind.STEP)):
            shift = event.p.shift
            m.d.sync += [
                p.due.eq(event.p.learn),
                p.label.eq(event.p.label),
                # the field can carry more than membrane_bits; the golden model clamps too
                p.shift.eq(Mux(shift > cfg.membrane_bits, cfg.membrane_bits, shift)),
            ]
        wiring.connect(m, wiring.flipped(self.readout), p.error.readout)
        wiring.connect(m, wiring.flipped(self.i_weights), p.load.i_weights)
        m.d.comb += [
            p.error.label.eq(p.label),
            p.error.shift.eq(p.shift),
            p.load.enable.eq(self.control.idle),
            self.control.loading.eq(p.load.loading),
            self.control.due.eq(p.due),
            p.lfsr.reseed.eq(p.load.restart),
        ]
        with m.If(p.load.restart):
            m.d.sync += p.prev_valid.eq(0)

    def _traces(self, m: Module, p: _Parts) -> None:
        """The trace words of a row are read while it is in stage 3 of ``UPDATE`` (addressed
        as it enters, ``updating``: :meth:`_sweep_reads`), and :class:`TraceUpdate` takes them
        with the row (``update``) and the step's input bits; its new traces and ``psi`` are
        written as they leave it.  ``CLEAR`` (stage 1 of the row pipeline) zeroes the
        trace words."""
        tables = p.tables
        neuron, xbar = (self._registered_write(m, tables[name]) for name in ("neuron", "xbar"))
        psi = tables["psi"]
        rows, update, traces = self.rows, self.update, p.traces
        row = rows.p.row
        with m.If(rows.valid & (rows.p.op == RowOp.CLEAR)):  # the data stays 0
            m.d.comb += [
                neuron.wr.addr.eq(row),
                neuron.wr.en.eq(row < self.R),
                xbar.wr.addr.eq(row),
                xbar.wr.en.eq(row < self.XR),
            ]
        inputs = Signal(self.XR * self.K, name="x_now")  # padded to whole words
        m.d.comb += inputs.eq(self.inputs)
        into = traces.row.p
        m.d.comb += [
            traces.row.valid.eq(update.valid),
            into.row.eq(update.p.row),
            into.old.eq(neuron.data),
            into.x_old.eq(xbar.data),
            into.z_prev.eq(update.p.z_prev),
            into.z.eq(update.p.z),
            into.v.eq(update.p.v),
            into.x.eq(inputs.word_select(update.p.row, self.K) if self.XR > 1 else inputs),
        ]
        new = traces.traces
        with m.If(new.valid):
            m.d.comb += [
                neuron.wr.addr.eq(new.p.row),
                neuron.wr.en.eq(1),
                neuron.wr.data.eq(new.p.new),
                xbar.wr.addr.eq(new.p.row),
                xbar.wr.en.eq(new.p.row < self.XR),
                xbar.wr.data.eq(new.p.x_new),
            ]
        with m.If(traces.psi.valid):
            m.d.comb += [
                psi.wr.addr.eq(traces.psi.p.row),
                psi.wr.en.eq(1),
                psi.wr.data.eq(traces.psi.p.psi),
            ]

    @staticmethod
    def _registered_write(m: Module, table: _Table) -> SimpleNamespace:
        """``table``'s ports, the write port behind registers: what is put on the returned
        ``wr`` is written a cycle later.  A trace table's write address and enable are
        selected between a ``CLEAR`` row and the trace update's row; straight into the
        LUT-RAMs, that select was a placed demo FPTT core's longest path.  No read sees the
        later write: a row's trace word is read again a step later at the earliest (the
        sweep starts after the step's readouts)."""
        port = table.wr
        wr = SimpleNamespace(
            addr=Signal.like(port.addr, name=f"{port.addr.name}_next"),
            en=Signal.like(port.en, name=f"{port.en.name}_next"),
            data=Signal(port.data.shape()),
        )
        addr = Signal.like(port.addr, name=f"{port.addr.name}_q", reset_less=True)
        data = Signal(port.data.shape(), reset_less=True)
        en = Signal.like(port.en, name=f"{port.en.name}_q")  # an enable: reset
        m.d.sync += [addr.eq(wr.addr), en.eq(wr.en), data.eq(wr.data)]
        m.d.comb += [port.addr.eq(addr), port.en.eq(en), port.data.eq(data)]
        return SimpleNamespace(data=table.data, wr=wr)

    # -- the update sweep and the dump ------------------------------------------------------------
    def _control(self, m: Module, p: _Parts) -> None:
        """The unit's states: ``IDLE``, ``SOFTMAX`` (the softmax error's passes), ``SWEEP``,
        ``DRAIN`` and ``DUMP``; and the sweep's stages, a register each that a word passes on
        (its position, ``stages[k]`` in stage ``k``)."""
        control = self.control
        flush = Signal(range(self.timing.drain), name="flush")
        m.d.sync += p.stages[FETCH].valid.eq(0)  # unless SWEEP issues a word
        for k in range(1, len(p.stages) - 1):
            m.d.sync += p.stages[k + 1].eq(p.stages[k])

        def begin() -> None:  # point the sweep / dump at the first word of W_out
            m.d.comb += [p.sweep.restart.eq(1), p.signal.restart.eq(1)]
            m.d.sync += p.dump_valid.eq(0)

        # the requests are registered: they come at the end of the sequencer's control paths
        # (the last readout sent), which would otherwise run on into every register they reset
        start, dump = Signal(name="start_q"), Signal(name="dump_q")
        m.d.sync += [start.eq(control.start), dump.eq(control.dump)]
        goto = p.states.goto
        with m.FSM(name="learning") as fsm:
            with m.State("IDLE"):
                with m.If(start):
                    if p.error.softmax:  # the softmax error's passes first
                        m.d.comb += p.error.start.eq(1)
                        goto(m, "SOFTMAX")
                    else:
                        begin()
                        goto(m, "SWEEP")
                with m.If(dump):
                    begin()
                    goto(m, "DUMP")
            if p.error.softmax:
                with m.State("SOFTMAX"), m.If(p.error.done):
                    begin()
                    goto(m, "SWEEP")
            with m.State("SWEEP"):
                self._issue(m, p, flush)
            with m.State("DRAIN"):  # the last word passes the later stages
                with m.If(flush != 0):
                    m.d.sync += flush.eq(flush - 1)
                with m.Else():  # this update's factors are FPTT's previous ones now
                    m.d.sync += [p.due.eq(0), p.prev_valid.eq(1)]
                    m.d.comb += control.done.eq(1)
                    goto(m, "IDLE")
            with m.State("DUMP"):
                self._dump(m, p)
        # not IDLE, kept in a register: it selects the weight memories' read address
        active = Signal(name="active_q")
        with m.If(fsm.ongoing("IDLE") & (start | dump)):
            m.d.sync += active.eq(1)
        with m.Elif(control.done):
            m.d.sync += active.eq(0)
        m.d.comb += self.active.eq(active)
        self._address(m, p)
        self._sweep_reads(m, p)

    def _address(self, m: Module, p: _Parts) -> None:
        """Every weight, ``W_bar`` and feedback word is read at the sweep's position, always:
        the read ports have no enable, which would be a clock enable (and for a memory of
        several block RAMs, the register of its output multiplexer) fed by the control, and the
        address comes straight from the position's register, with no multiplexer in front of
        the block RAMs spread over the part (a dump too reads at that position:
        :meth:`_dump`)."""
        for name in MATRIX_CODES:
            ports = [getattr(self, f"w_{name}_read")]
            if name in p.wbar:
                ports.append(p.wbar[name][0])
            if name == "out" and p.feedback is not None:
                ports.append(p.feedback)
            m.d.comb += [port.addr.eq(p.sweep.at.addr) for port in ports]

    def _issue(self, m: Module, p: _Parts, flush: Signal) -> None:
        """``SWEEP``: issue one word per cycle (stage 0), with ``gap`` idle cycles between
        ``W_out`` and ``W_in`` (the last ``delta_j`` is written that late); after the last word
        ``DRAIN``."""
        at, gap_cycles = p.sweep.at, self.timing.gap
        gap = Signal(range(gap_cycles + 1), name="gap")
        fetch = p.stages[FETCH]
        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        with m.Else():
            m.d.comb += p.sweep.advance.eq(1)
            m.d.sync += [fetch.valid.eq(1), fetch.at.eq(at)]
            depth = weight_depths(self.cfg)["out"]
            with m.If((at.mat == MATRIX_CODES["out"]) & (at.addr == depth - 1)):
                m.d.sync += gap.eq(gap_cycles)
            with m.If(p.sweep.last):
                m.d.sync += flush.eq(self.timing.drain - 1)
                p.states.goto(m, "DRAIN")

    def _sweep_reads(self, m: Module, p: _Parts) -> None:
        """Every table is read at the sweep's position on every cycle, whatever the state,
        through its own copy of the position, a cycle after the weight memories (:class:`_Table`;
        the traces at the row entering the update instead, while one does): the traces and
        ``psi`` (and FPTT's previous traces) by the word of presynaptic values, the factors
        (``delta``, FPTT's previous error and ``delta``) by the row.  An address that depended
        on the state would put the learning FSM in front of these LUT-RAMs' reads, on the core's
        longest path; a read outside ``SWEEP`` is unused.

        The ``error`` table idles at row 0 for the softmax error's passes: its address is a
        register loaded with the sweep's row while the ``SWEEP`` flag is set
        (:class:`~neurofptt.hdl.state_flags.StateFlags`, next to the multiplexer, where the
        decoded state had been the demo's FPTT core's longest path) and with 0 otherwise."""
        at, tables = p.sweep.at, p.tables
        error_row = Signal.like(p.error.table.addr, name="error_read_addr")
        m.d.sync += error_row.eq(Mux(p.states["SWEEP"], at.row, 0))
        m.d.comb += p.error.table.addr.eq(error_row)
        by_word = ["psi"] + (["prev_obar", "prev_xbar", "prev_zbar"] if self.fptt else [])
        by_row = ["delta"] + (["prev_err", "prev_delta"] if self.fptt else [])
        m.d.sync += [tables[name].addr.eq(at.word) for name in ["neuron", "xbar", *by_word]]
        m.d.sync += [tables[name].addr.eq(at.row) for name in by_row]
        with m.If(self.updating.valid):  # the sweep is not running: the trace update reads
            m.d.sync += [tables[name].addr.eq(self.updating.p) for name in ("neuron", "xbar")]

    def _dump(self, m: Module, p: _Parts) -> None:
        """``DUMP``: offer every word of ``W_out``, ``W_in``, ``W_rec`` (and ``W_bar``) in
        address order on ``o_weights``, two cycles a word.  The memories are read at the
        sweep's position; the word is offered from the cycle after the position was set (the
        read ports' data are then that word's, and stay so while it waits) until it is taken,
        and then the position advances.  So the read address never depends on the stream's
        ``ready``: a word offered again in the cycle after a refusal would need an address
        chosen by ``ready``, a route from the consumer to every block RAM on the part, where
        it had been the 256-256-16 FPTT core's longest path.  Whether the word is the final
        one is registered from the position (no word is offered in the cycle after it
        advances), so that the end of the dump, which the sequencer waits on, is not decoded
        from the position."""
        valid, sweep = p.dump_valid, p.sweep
        m.d.sync += p.dump_last.eq(sweep.last)
        with m.If(valid & self.o_weights.ready):
            m.d.sync += valid.eq(0)
            with m.If(p.dump_last):
                m.d.comb += self.control.done.eq(1)
                p.states.goto(m, "IDLE")
            with m.Else():
                m.d.comb += sweep.advance.eq(1)
        with m.Else():
            m.d.sync += valid.eq(1)

    @staticmethod
    def _select(mat: Value, word_of: Callable[[str], Value]) -> Value:
        """The word of matrix ``mat``.  A Mux expression rather than a Switch: Yosys then
        writes plain assignments, where a process driving only part of a payload would not run
        at time zero under SystemVerilog rules and leave the other fields X."""
        out, into, rec = (word_of(name) for name in ("out", "in", "rec"))
        return Mux(mat == MATRIX_CODES["out"], out, Mux(mat == MATRIX_CODES["in"], into, rec))

    def _dump_stream(self, m: Module, p: _Parts) -> None:
        """Drive ``o_weights`` from the dump's flag, the sweep's position and the read ports."""
        out, at = self.o_weights, p.sweep.at
        m.d.comb += [
            out.valid.eq(p.dump_valid),
            out.p.matrix.eq(at.mat),
            out.p.last.eq(p.dump_last),
            out.p.w.eq(self._select(at.mat, lambda n: getattr(self, f"w_{n}_read").data)),
        ]
        if self.fptt:
            m.d.comb += out.p.wbar.eq(self._select(at.mat, lambda n: p.wbar[n][0].data))

    # -- the sweep's datapath ---------------------------------------------------------------------
    @staticmethod
    def _operands(at: Value, factors: dict[str, Value], lanes: int) -> tuple[Value, list[Value]]:
        """The presynaptic trace (one for all lanes) and the postsynaptic factor of every lane
        of the word at ``at``, from the factors of each matrix (``obar``, ``xbar``, ``zbar``:
        one trace each; ``err``, ``delta``: rows)."""
        is_out = at.mat == MATRIX_CODES["out"]
        is_in = at.mat == MATRIX_CODES["in"]
        pre = Mux(is_out, factors["obar"], Mux(is_in, factors["xbar"], factors["zbar"]))
        post = [Mux(is_out, factors["err"][lane], factors["delta"][lane]) for lane in range(lanes)]
        return pre, post

    def _read_factors(self, m: Module, p: _Parts, slot: Value) -> tuple[dict, dict]:
        """``READ``: the factors of every matrix, registered as their words leave the tables,
        each trace taken from its word's ``slot``; FPTT's previous ones too."""
        tables = p.tables
        neuron = tables["neuron"].data
        now = {
            "obar": slot_of(neuron, slot, "obar"),
            "xbar": slot_of(tables["xbar"].data, slot),
            "zbar": slot_of(neuron, slot, "zbar"),
            "err": p.error.table.data,
            "delta": tables["delta"].data,
        }
        prev = {}
        if self.fptt:
            prev = {key: slot_of(tables[f"prev_{key}"].data, slot)
                    for key in ("obar", "xbar", "zbar")}  # fmt: skip
            prev.update({key: tables[f"prev_{key}"].data for key in ("err", "delta")})
        now = {key: self._later(m, value, f"sweep_{key}") for key, value in now.items()}
        prev = {key: self._later(m, value, f"sweep_prev_{key}") for key, value in prev.items()}
        return now, prev

    def _later(
        self, m: Module, value: Value, name: str, *, keep: bool = False, reset: bool = False
    ) -> Signal:
        """``value`` registered (``keep``: the register marked to stay apart from its equals).

        Only a register with ``reset`` (a write enable) is cleared by the reset.  The others
        hold a word's data, meaningful only while the sweep's stages (which are reset) carry
        the word: without a reset they stay off the reset's net, which reached about 14,000
        flip-flops of the 256-256-16 FPTT core and was its most congested net."""
        reg = Signal(
            value.shape(), name=name, attrs={"keep": 1} if keep else None, reset_less=not reset
        )
        m.d.sync += reg.eq(value)
        return reg

    def _copies(self, m: Module, value: Value, name: str) -> list[Signal]:
        """``value`` registered once per lane, each copy marked ``keep``: the trace every lane
        multiplies, in one register, was routed to all the lanes' multipliers spread over the
        part (the 256-256-16 FPTT core's longest path behind registered ports, and a demo FPTT
        core's); equal registers are merged unless kept
        (:data:`~neurofptt.hdl.synth.KEEP_COPIES`)."""
        return [
            self._later(m, value, f"{name}_{lane}", keep=True) for lane in range(self.cfg.lanes)
        ]

    def _fetched(self, m: Module, value: Value, name: str) -> Signal:
        """A block RAM's word read in stage 0, registered twice, in ``FETCH`` as it leaves the
        block RAM and again in ``READ``, so that it meets the tables' factors, read in
        ``FETCH``.  The first register feeds only the second: nothing but the block RAM's
        output, 5.8 ns after the clock with no output register (these tools give an ECP5 block
        RAM none), lies in front of it."""
        return self._later(m, self._later(m, value, f"fetch_{name}"), f"sweep_{name}")

    def _read_stage(self, m: Module, p: _Parts) -> None:
        """``FETCH`` and ``READ`` register every word read from a block RAM (:meth:`_fetched`),
        ``READ`` each matrix's factors as they leave their tables; ``SELECT`` registers the
        operands of the word's matrix (weights, ``W_bar``, trace, factor row); in ``LANE`` they
        meet the lanes, whose multipliers so have registered inputs, and the learning signal.
        The slot and the matrix multiplexers sit in two stages: in one, behind the position
        register that reaches every table, they had been the 256-256-16 e-prop core's longest
        path."""
        cfg, lc, read_at = self.cfg, self.lc, p.stages[READ].at
        at, lane_at = p.stages[SELECT].at, p.stages[LANE].at
        now, prev = self._read_factors(m, p, read_at.slot)
        words = {n: self._fetched(m, getattr(self, f"w_{n}_read").data, f"w_{n}")
                 for n in MATRIX_CODES}  # fmt: skip
        pre, post = self._operands(at, now, cfg.lanes)
        lane_pre = self._copies(m, pre, "lane_pre")
        lane_post = [  # kept apart from FPTT's copies for the previous factors
            self._later(m, value, f"lane_post_{lane}", keep=self.fptt)
            for lane, value in enumerate(post)
        ]
        lane_w = self._later(m, self._select(at.mat, lambda n: words[n]), "lane_w")
        lane_words = data.View(weight_word_layout(cfg), lane_w)
        for lane, unit in enumerate(p.lanes):
            m.d.comb += [
                unit.w.eq(lane_words[lane]),
                unit.pre.eq(lane_pre[lane]),
                unit.post.eq(lane_post[lane]),
            ]
        if self.fptt:
            self._keep_previous(m, p, pre, post)
            prev_pre, prev_post = self._operands(at, prev, cfg.lanes)
            lane_pre_prev = self._copies(m, Mux(p.prev_valid, prev_pre, 0), "lane_pre_prev")
            stored = {n: self._fetched(m, p.wbar[n][0].data, f"wbar_{n}") for n in MATRIX_CODES}
            lane_wbar = data.View(
                data.ArrayLayout(signed(lc.wbar_bits), cfg.lanes),
                self._later(m, self._select(at.mat, lambda n: stored[n]), "lane_wbar"),
            )
            for lane, unit in enumerate(p.lanes):
                m.d.comb += [
                    unit.mat.eq(lane_at.mat),
                    unit.pre_prev.eq(lane_pre_prev[lane]),
                    unit.post_prev.eq(self._later(m, prev_post[lane], f"lane_post_prev_{lane}")),
                    unit.wbar.eq(lane_wbar[lane]),
                ]
        # the learning signal, on W_out's words: B = W_out^T is the W_out word itself.  Its
        # operands are registers of its own, zero on other words, so that Yosys keeps them
        # apart from the lanes' equal registers (it merges registers of one input): one
        # register feeding the lanes' multipliers and the signal's, spread over the die, was
        # the demo FPTT core's longest path.
        is_out = at.mat == MATRIX_CODES["out"]
        feedback = self._later(m, Mux(is_out, words["out"], 0), "signal_b")
        if p.feedback is not None:
            feedback = self._later(m, self._fetched(m, p.feedback.data, "b"), "lane_b")
        psi = self._later(m, slot_of(p.tables["psi"].data, read_at.slot), "sweep_psi")
        word = p.signal.word
        # on W_out's words, the only ones the signal takes, each lane's factor is its e
        eb = word.p.e[0].shape().width
        signal_e = [
            self._later(m, Mux(is_out, value[:eb], 0), f"signal_e_{lane}")
            for lane, value in enumerate(post)
        ]
        m.d.comb += [
            word.valid.eq(p.stages[LANE].valid & (lane_at.mat == MATRIX_CODES["out"])),
            word.p.b.eq(feedback),
            word.p.e.eq(Cat(*signal_e)),
            word.p.psi.eq(self._later(m, psi, "lane_psi")),
            word.p.at.word.eq(lane_at.word),
            word.p.at.slot.eq(lane_at.slot),
            word.p.last.eq(lane_at.row == self.Ro - 1),
        ]
        delta = p.signal.delta
        with m.If(delta.valid):
            p.tables["delta"].write_one(m, delta.p.at.word, delta.p.at.slot, delta.p.value)

    def _keep_previous(self, m: Module, p: _Parts, pre: Value, post: list[Value]) -> None:
        """FPTT: this update's factors become the previous ones once the sweep has read them,
        written in ``LANE`` from registers of their own (``pre``: the word's trace, ``post``:
        its row of ``e`` or ``delta``, as ``SELECT`` selects them): a trace after the last word
        of its ``pre``, the ``e`` and ``delta`` rows during the last ``pre`` of ``W_out`` and
        ``W_rec`` (the last sweeps that read them).  Each trace and row is read in one sweep
        only, before it is written, so the later write is never read too early.

        The registers are kept apart from the lanes' equal ones (:meth:`_copies`): written
        from lane 0's copy of the trace, the tables pulled that copy away from the lane's
        multiplier, whose input was then a placed demo FPTT core's longest path.

        The write enables are decoded from the word's position in ``SELECT`` and registered
        with it: decoded in ``LANE``, the position register's route to all of its users (the lanes,
        the learning signal, these tables) lay in front of the tables' write ports, the demo's
        FPTT core's longest path."""
        sel, tables = p.stages[SELECT], p.tables
        at = p.stages[LANE].at
        pre = self._later(m, pre, "keep_pre", keep=True)
        post = [self._later(m, v, f"keep_post_{lane}", keep=True) for lane, v in enumerate(post)]
        trace_of = {"out": "obar", "in": "xbar", "rec": "zbar"}
        for name, (n_pre, n_rows, _) in matrix_shapes(self.cfg).items():
            here = sel.valid & (sel.at.mat == MATRIX_CODES[name])
            key = trace_of[name]
            trace = tables[f"prev_{key}"]
            last_row = here & (sel.at.row == n_rows - 1)
            enables = Mux(last_row, onehot(sel.at.slot, trace.slots), 0)
            enabled = self._later(m, enables, f"keep_{key}", reset=True)
            trace.write_slots(m, at.word, enabled, pre)
            factor = {"out": "err", "rec": "delta"}.get(name)
            if factor is not None:
                keep = tables[f"prev_{factor}"].wr
                last_pre = here & (sel.at.pre == n_pre - 1)
                m.d.comb += keep.en.eq(self._later(m, last_pre, f"keep_{factor}", reset=True))
                m.d.comb += keep.addr.eq(at.row)
                m.d.comb += [keep.data[i].eq(v) for i, v in enumerate(post)]

    def _writes(self, m: Module, p: _Parts) -> None:
        """The lanes draw in stage ``LANE + draw``; the new weight words go to the memories'
        write ports in stage ``LANE + w``, FPTT's ``W_bar`` words in stage ``LANE + wbar``, and
        are written :data:`~neurofptt.hdl.blocks.WRITE_LATENCY` cycles later."""
        draw = p.stages[LANE + self.cycles.draw]
        m.d.comb += p.lfsr.step.eq(draw.valid)
        m.d.comb += [unit.draws.eq(p.lfsr.draws[lane]) for lane, unit in enumerate(p.lanes)]
        stage = p.stages[LANE + self.cycles.w]
        for name, code in MATRIX_CODES.items():
            wr = getattr(self, f"w_{name}_write")
            m.d.comb += [
                wr.addr.eq(stage.at.addr),
                wr.en.eq(stage.valid & (stage.at.mat == code)),
                wr.data.eq(Cat(*(unit.w_new[code] for unit in p.lanes))),
            ]
        if not self.fptt:
            return
        stage = p.stages[LANE + self.cycles.wbar]
        for name, code in MATRIX_CODES.items():
            wr = p.wbar[name][1]
            m.d.comb += [
                wr.addr.eq(stage.at.addr),
                wr.en.eq(stage.valid & (stage.at.mat == code)),
                wr.data.eq(Cat(*(unit.wbar_new[code] for unit in p.lanes))),
            ]

    def _load_writes(self, m: Module, p: _Parts) -> None:
        """A loaded word goes to the write ports at the load's address on the cycle after it is
        taken, from registers, with an enable per matrix (the sweep never runs meanwhile), and
        is written on the next.  Decoded from the load's handshake, which waits on the
        sequencer's idle state, the enables had been the demo FPTT core's longest path, into
        every weight and ``W_bar`` slice.  The last word is written on the cycle after the
        load's ``restart``, while the load still counts as ``loading``: on the cycle the core
        may take its next event, and nothing that event starts reads it then."""
        write = p.load.write
        at = Signal.like(write.p, name="load_q", reset_less=True)  # data: the enables say when
        enables = {name: Signal(name=f"load_{name}_q") for name in MATRIX_CODES}
        m.d.sync += at.eq(write.p)
        m.d.sync += [
            enable.eq(write.valid & (write.p.mat == MATRIX_CODES[name]))
            for name, enable in enables.items()
        ]
        for name, enable in enables.items():
            ports = [(getattr(self, f"w_{name}_write"), at.word.w)]
            if self.fptt:
                ports.append((p.wbar[name][1], at.word.wbar))
            with m.If(enable):
                for wr, word in ports:
                    m.d.comb += [wr.addr.eq(at.addr), wr.en.eq(1), wr.data.eq(word.as_value())]
