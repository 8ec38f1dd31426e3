"""The on-chip learning unit of :class:`~neurofptt.hdl.core.LifCore` (e-prop and FPTT).

Elaborated only when ``config.learning`` is set; it implements :mod:`neurofptt.onchip` bit for
bit.  It listens to the inference datapath where the values it needs pass by, so collecting the
per-neuron learning inputs and updating the traces costs no extra cycles:

* ``event``: a ``STEP`` latches whether and toward which label to learn;
* ``inputs``: the step's input bits ``x_i``, the sequencer's set of the inputs that spiked
  (:class:`~neurofptt.hdl.sequencer.InputSet`, emptied by ``CLEAR`` and after ``UPDATE``);
* ``rows`` (stage 1 of the row pipeline): the trace tables read the row stage 1 holds, for
  stage 2 of ``UPDATE``; ``CLEAR`` zeroes the trace rows as it zeroes the state rows;
* ``update`` (stage 2 of ``UPDATE``, ``P`` neurons): :class:`~neurofptt.hdl.traces.TraceUpdate`
  leaks and adds the row's traces ``zbar`` (with ``z(t-1)``) and ``obar`` (with ``z(t)``), and
  the input traces ``xbar`` of the same row address, with the step's input bits; the new
  membranes form ``psi_j``;
* ``readout``: each readout sent becomes the error ``e_k``
  (:class:`~neurofptt.hdl.error.ReadoutError`, with the softmax error's passes before the
  sweep).

After the readout of a ``STEP`` whose payload has ``learn`` set (``control.start``), the
``SWEEP`` state runs over ``W_out``, ``W_in`` and ``W_rec`` one word (``lanes`` synapses) per
cycle (:class:`~neurofptt.hdl.sweep.SweepCounter`), in the order and with the random draws of
the golden model: stage 0 addresses the weight word (and the ``W_bar`` and random-feedback
words) and the per-neuron memories, stage 1 selects the factors, stage 2 forms the new weight
word and stage 3 FPTT's new ``W_bar`` word (one
:class:`~neurofptt.hdl.weight_update.WeightUpdateLane` per lane, draws from the
:class:`~neurofptt.hdl.lfsr.LfsrBank`).  The ``W_out`` sweep also forms ``delta_j``
(:class:`~neurofptt.hdl.learning_signal.LearningSignal`, written in stage 3); two idle cycles
between the ``W_out`` and ``W_in`` sweeps let the last one arrive before ``W_in`` reads it, and
``DRAIN`` waits for the last word to leave the pipeline, so an update takes
:func:`~neurofptt.hdl.cost.learning_cycles_per_update` cycles plus one.  ``control.dump``
streams every weight word (and ``W_bar`` word) out on ``o_weights``, so a testbench can read
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

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import onehot, pick
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
from neurofptt.hdl.learning_signal import LearningSignal
from neurofptt.hdl.lfsr import LfsrBank
from neurofptt.hdl.ports import EventKind, learn_event_layout, weight_dump_layout
from neurofptt.hdl.rows import packed_rows
from neurofptt.hdl.sweep import SweepCounter, matrix_shapes, position_layout
from neurofptt.hdl.traces import TraceUpdate, inputs_per_word, neuron_trace_layout
from neurofptt.hdl.weight_load import WeightLoad
from neurofptt.hdl.weight_update import WeightUpdateLane
from neurofptt.onchip.state import LearningState
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config
from neurofptt.quant.network import QuantizedNetwork

__all__ = ["MATRIX_CODES", "LearningUnit", "learning_signature", "weight_depths"]

#: idle cycles between the W_out and W_in sweeps: the last delta_j is written in stage 3
GAP = 2


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
    """A per-neuron memory: ``depth`` words of ``slots`` values, one read and one write port.

    ``granular`` gives the write port one enable per slot, for tables written one value at a
    time; ``transparent`` makes a read see a write of the same cycle.
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
        self.rd = mem.read_port(transparent_for=(self.wr,) if transparent else ())

    def write_one(self, m: Module, addr: Value, index: Value, value: Value) -> None:
        """Write ``value`` into slot ``index`` of word ``addr`` (comb; the caller's condition)."""
        m.d.comb += [self.wr.addr.eq(addr), self.wr.en.eq(onehot(index, self.slots))]
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
    l1_valid: Signal  # stage 1 of the sweep holds a word, at position l1
    l1: Signal
    dump_valid: Signal  # o_weights: the word offered, its matrix, the final word
    dump_mat: Signal
    dump_last: Signal
    dump_done: Signal  # the final word has been addressed


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
        #: cycles of DRAIN: the last word leaves stage 2 (e-prop) or 3 (FPTT)
        self.DRAIN = 3 if self.fptt else 2
        super().__init__(learning_signature(cfg))

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        p = self._parts(m)
        self._events(m, p)
        self._traces(m, p)
        self._control(m, p)
        self._stage1(m, p)
        self._stages_2_3(m, p)
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
                mem = Memory(shape=unsigned(P * lc.wbar_bits), depth=depth, init=init)
                m.submodules[f"wbar_{name}"] = mem
                wbar[name] = (mem.read_port(), mem.write_port())
        feedback = None
        if start.feedback is not None:
            init = packed_rows(start.feedback.T, P, cfg.weight_bits)
            mem = Memory(shape=unsigned(P * cfg.weight_bits), depth=cfg.n_rec * self.Ro, init=init)
            m.submodules.feedback = mem
            feedback = mem.read_port()
        return wbar, feedback

    def _parts(self, m: Module) -> _Parts:
        cfg = self.cfg
        tables = self._tables(m)
        wbar, feedback = self._synapse_memories(m)
        lanes = []
        for lane in range(cfg.lanes):
            m.submodules[f"lane_{lane}"] = unit = WeightUpdateLane(cfg)
            lanes.append(unit)
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
            l1_valid=Signal(name="l1_valid"),
            l1=Signal(position_layout(cfg), name="l1"),
            dump_valid=Signal(name="d_valid"),
            dump_mat=Signal(range(len(MATRIX_CODES)), name="d_mat"),
            dump_last=Signal(name="d_last"),
            dump_done=Signal(name="d_done"),
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
        """Stage 1 of the row pipeline: the trace words of its row are read (the sweep reads
        others) and ``CLEAR`` zeroes them; stage 2 of ``UPDATE`` writes the new ones, with the
        step's input bits, and ``psi``."""
        neuron, xbar, psi = (p.tables[name] for name in ("neuron", "xbar", "psi"))
        rows, update, traces = self.rows, self.update, p.traces
        m.d.comb += [neuron.rd.addr.eq(self.updating.p), xbar.rd.addr.eq(self.updating.p)]
        row = rows.p.row
        with m.If(rows.valid & (rows.p.op == RowOp.CLEAR)):  # the data stays 0
            m.d.comb += [
                neuron.wr.addr.eq(row),
                neuron.wr.en.eq(row < self.R),
                xbar.wr.addr.eq(row),
                xbar.wr.en.eq(row < self.XR),
            ]
        row = update.p.row
        inputs = Signal(self.XR * self.K, name="x_now")  # padded to whole words
        m.d.comb += inputs.eq(self.inputs)
        x = inputs.word_select(row, self.K) if self.XR > 1 else inputs
        m.d.comb += [
            traces.old.eq(neuron.rd.data),
            traces.x_old.eq(xbar.rd.data),
            traces.z_prev.eq(update.p.z_prev),
            traces.z.eq(update.p.z),
            traces.v.eq(update.p.v),
            traces.x.eq(x),
        ]
        with m.If(update.valid):
            m.d.comb += [
                neuron.wr.addr.eq(row),
                neuron.wr.en.eq(1),
                neuron.wr.data.eq(traces.new),
                xbar.wr.addr.eq(row),
                xbar.wr.en.eq(row < self.XR),
                xbar.wr.data.eq(traces.x_new),
                psi.wr.addr.eq(row),
                psi.wr.en.eq(1),
                psi.wr.data.eq(traces.psi),
            ]

    # -- the update sweep and the dump ------------------------------------------------------------
    def _control(self, m: Module, p: _Parts) -> None:
        """The unit's states: ``IDLE``, ``SOFTMAX`` (the softmax error's passes), ``SWEEP``,
        ``DRAIN`` and ``DUMP``."""
        control = self.control
        flush = Signal(range(self.DRAIN), name="flush")

        def begin() -> None:  # point the sweep / dump at the first word of W_out
            m.d.comb += [p.sweep.restart.eq(1), p.signal.restart.eq(1)]
            m.d.sync += [p.dump_done.eq(0), p.dump_valid.eq(0)]

        with m.FSM(name="learning") as fsm:
            with m.State("IDLE"):
                with m.If(control.start):
                    if p.error.softmax:  # the softmax error's passes first
                        m.d.comb += p.error.start.eq(1)
                        m.next = "SOFTMAX"
                    else:
                        begin()
                        m.next = "SWEEP"
                with m.If(control.dump):
                    begin()
                    m.next = "DUMP"
            if p.error.softmax:
                with m.State("SOFTMAX"), m.If(p.error.done):
                    begin()
                    m.next = "SWEEP"
            with m.State("SWEEP"):
                self._issue(m, p, flush)
            with m.State("DRAIN"):  # the last word passes the later stages
                m.d.sync += p.l1_valid.eq(0)
                with m.If(flush != 0):
                    m.d.sync += flush.eq(flush - 1)
                with m.Else():  # this update's factors are FPTT's previous ones now
                    m.d.sync += [p.due.eq(0), p.prev_valid.eq(1)]
                    m.d.comb += control.done.eq(1)
                    m.next = "IDLE"
            with m.State("DUMP"):
                self._dump(m, p)
        m.d.comb += self.active.eq(~fsm.ongoing("IDLE"))

    def _address(self, m: Module, p: _Parts, enable: Callable[[str], Value]) -> None:
        """Address every weight, ``W_bar`` and feedback word at the sweep's position; read
        enables per matrix from ``enable``."""
        for name in MATRIX_CODES:
            ports = [getattr(self, f"w_{name}_read")]
            if name in p.wbar:
                ports.append(p.wbar[name][0])
            if name == "out" and p.feedback is not None:
                ports.append(p.feedback)
            for port in ports:
                m.d.comb += [port.addr.eq(p.sweep.at.addr), port.en.eq(enable(name))]

    def _issue(self, m: Module, p: _Parts, flush: Signal) -> None:
        """``SWEEP``: issue one word per cycle (stage 0), with ``GAP`` idle cycles between
        ``W_out`` and ``W_in`` (the last ``delta_j`` is written in stage 3); after the last word
        ``DRAIN``."""
        at, tables = p.sweep.at, p.tables
        gap = Signal(range(GAP + 1), name="gap")
        with m.If(gap != 0):
            m.d.sync += [gap.eq(gap - 1), p.l1_valid.eq(0)]
        with m.Else():
            self._address(m, p, lambda name: 1)
            by_pre = ["neuron", "xbar", "psi"]  # the traces, psi: one word for all lanes
            by_row = ["delta"]  # the factors: one value per lane
            if self.fptt:
                by_pre += ["prev_obar", "prev_xbar", "prev_zbar"]
                by_row += ["prev_err", "prev_delta"]
            m.d.comb += [tables[name].rd.addr.eq(at.word) for name in by_pre]
            m.d.comb += [tables[name].rd.addr.eq(at.row) for name in by_row]
            m.d.comb += [p.error.table.addr.eq(at.row), p.sweep.advance.eq(1)]
            m.d.sync += [p.l1_valid.eq(1), p.l1.eq(at)]
            depth = weight_depths(self.cfg)["out"]
            with m.If((at.mat == MATRIX_CODES["out"]) & (at.addr == depth - 1)):
                m.d.sync += gap.eq(GAP)
            with m.If(p.sweep.last):
                m.d.sync += flush.eq(self.DRAIN - 1)
                m.next = "DRAIN"

    def _dump(self, m: Module, p: _Parts) -> None:
        """``DUMP``: offer every word of ``W_out``, ``W_in``, ``W_rec`` (and ``W_bar``) in
        address order on ``o_weights``; read enables follow the stream, so a stall holds the
        word."""
        at, valid = p.sweep.at, p.dump_valid
        advance = ~valid | self.o_weights.ready
        self._address(m, p, lambda name: advance & (at.mat == MATRIX_CODES[name]))
        with m.If(advance):
            with m.If(~p.dump_done):
                m.d.comb += p.sweep.advance.eq(1)
                m.d.sync += [valid.eq(1), p.dump_mat.eq(at.mat), p.dump_last.eq(p.sweep.last)]
                with m.If(p.sweep.last):
                    m.d.sync += p.dump_done.eq(1)
            with m.Else():
                m.d.sync += valid.eq(0)
                m.d.comb += self.control.done.eq(1)
                m.next = "IDLE"

    @staticmethod
    def _select(mat: Value, word_of: Callable[[str], Value]) -> Value:
        """The word of matrix ``mat``.  A Mux expression rather than a Switch: Yosys then
        writes plain assignments, where a process driving only part of a payload would not run
        at time zero under SystemVerilog rules and leave the other fields X."""
        out, into, rec = (word_of(name) for name in ("out", "in", "rec"))
        return Mux(mat == MATRIX_CODES["out"], out, Mux(mat == MATRIX_CODES["in"], into, rec))

    def _dump_stream(self, m: Module, p: _Parts) -> None:
        """Drive ``o_weights`` from the dump registers and the read ports."""
        out = self.o_weights
        m.d.comb += [
            out.valid.eq(p.dump_valid),
            out.p.matrix.eq(p.dump_mat),
            out.p.last.eq(p.dump_last),
            out.p.w.eq(self._select(p.dump_mat, lambda n: getattr(self, f"w_{n}_read").data)),
        ]
        if self.fptt:
            m.d.comb += out.p.wbar.eq(self._select(p.dump_mat, lambda n: p.wbar[n][0].data))

    # -- the sweep's datapath ---------------------------------------------------------------------
    def _operands(self, p: _Parts, factors: dict[str, Value]) -> tuple[Value, list[Value]]:
        """Stage 1: the presynaptic trace (one for all lanes) and the postsynaptic factor of
        every lane of the word being updated, from the words read of ``factors`` (``obar``,
        ``xbar``, ``zbar``: slots by ``pre``; ``err``, ``delta``: rows)."""
        l1 = p.l1
        is_out = l1.mat == MATRIX_CODES["out"]
        is_in = l1.mat == MATRIX_CODES["in"]
        pre = Mux(is_out, factors["obar"], Mux(is_in, factors["xbar"], factors["zbar"]))
        post = [Mux(is_out, factors["err"][lane], factors["delta"][lane])
                for lane in range(self.cfg.lanes)]  # fmt: skip
        return pre, post

    def _now_and_previous(self, p: _Parts) -> tuple[dict, dict]:
        """The words this update's factors read in stage 1, and FPTT's previous ones."""
        tables, slot = p.tables, p.l1.slot
        neuron = tables["neuron"].rd.data
        now = {
            "obar": slot_of(neuron, slot, "obar"),
            "xbar": slot_of(tables["xbar"].rd.data, slot),
            "zbar": slot_of(neuron, slot, "zbar"),
            "err": p.error.table.data,
            "delta": tables["delta"].rd.data,
        }
        prev = {}
        if self.fptt:
            prev = {key: slot_of(tables[f"prev_{key}"].rd.data, slot)
                    for key in ("obar", "xbar", "zbar")}  # fmt: skip
            prev.update({key: tables[f"prev_{key}"].rd.data for key in ("err", "delta")})
        return now, prev

    def _stage1(self, m: Module, p: _Parts) -> None:
        """Stage 1 of the sweep (the reads are valid): the lanes' operands, the learning
        signal's word, and FPTT's previous factors."""
        cfg, l1 = self.cfg, p.l1
        now, prev = self._now_and_previous(p)
        pre, post = self._operands(p, now)
        word = self._select(l1.mat, lambda n: getattr(self, f"w_{n}_read").data)
        w1 = data.View(weight_word_layout(cfg), word)
        for lane, unit in enumerate(p.lanes):
            m.d.comb += [unit.w.eq(w1[lane]), unit.pre.eq(pre), unit.post.eq(post[lane])]
        if self.fptt:
            self._keep_previous(m, p, now)
            prev_pre, prev_post = self._operands(p, prev)
            stored = data.View(
                data.ArrayLayout(signed(self.lc.wbar_bits), cfg.lanes),
                self._select(l1.mat, lambda n: p.wbar[n][0].data),
            )
            for lane, unit in enumerate(p.lanes):
                m.d.comb += [
                    unit.mat.eq(l1.mat),
                    unit.pre_prev.eq(Mux(p.prev_valid, prev_pre, 0)),
                    unit.post_prev.eq(prev_post[lane]),
                    unit.wbar.eq(stored[lane]),
                ]
        # the learning signal: B = W_out^T reads the W_out word itself
        feedback = self.w_out_read.data if p.feedback is None else p.feedback.data
        word = p.signal.word
        m.d.comb += [
            word.valid.eq(p.l1_valid & (l1.mat == MATRIX_CODES["out"])),
            word.p.b.eq(feedback),
            word.p.e.eq(p.error.table.data),
            word.p.psi.eq(slot_of(p.tables["psi"].rd.data, l1.slot)),
            word.p.at.word.eq(l1.word),
            word.p.at.slot.eq(l1.slot),
            word.p.last.eq(l1.row == self.Ro - 1),
        ]
        delta = p.signal.delta
        with m.If(delta.valid):
            p.tables["delta"].write_one(m, delta.p.at.word, delta.p.at.slot, delta.p.value)

    def _keep_previous(self, m: Module, p: _Parts, now: dict) -> None:
        """FPTT: this update's factors become the previous ones once the sweep has read them:
        a trace after the last word of its ``pre``, the ``e`` and ``delta`` rows during the
        last ``pre`` of ``W_out`` and ``W_rec`` (the last sweeps that read them)."""
        l1, tables = p.l1, p.tables
        trace_of = {"out": "obar", "in": "xbar", "rec": "zbar"}
        with m.If(p.l1_valid), m.Switch(l1.mat):
            for name, (n_pre, n_rows, _) in matrix_shapes(self.cfg).items():
                with m.Case(MATRIX_CODES[name]):
                    key = trace_of[name]
                    with m.If(l1.row == n_rows - 1):
                        tables[f"prev_{key}"].write_one(m, l1.word, l1.slot, now[key])
                    factor = {"out": "err", "rec": "delta"}.get(name)
                    if factor is not None:
                        keep = tables[f"prev_{factor}"].wr
                        with m.If(l1.pre == n_pre - 1):
                            m.d.comb += [
                                keep.addr.eq(l1.row),
                                keep.en.eq(1),
                                keep.data.eq(now[factor]),
                            ]

    def _stages_2_3(self, m: Module, p: _Parts) -> None:
        """Stage 2 writes the new weight words (the lanes draw), stage 3 FPTT's ``W_bar``."""
        l2_valid = Signal(name="l2_valid")
        l2_mat = Signal.like(p.l1.mat, name="l2_mat")
        l2_addr = Signal.like(p.l1.addr, name="l2_addr")
        m.d.sync += [l2_valid.eq(p.l1_valid), l2_mat.eq(p.l1.mat), l2_addr.eq(p.l1.addr)]
        m.d.comb += p.lfsr.step.eq(l2_valid)
        m.d.comb += [unit.draws.eq(p.lfsr.draws[lane]) for lane, unit in enumerate(p.lanes)]
        for name, code in MATRIX_CODES.items():
            wr = getattr(self, f"w_{name}_write")
            m.d.comb += [
                wr.addr.eq(l2_addr),
                wr.en.eq(l2_valid & (l2_mat == code)),
                wr.data.eq(Cat(*(unit.w_new[code] for unit in p.lanes))),
            ]
        if not self.fptt:
            return
        l3_valid = Signal(name="l3_valid")
        l3_mat = Signal.like(l2_mat, name="l3_mat")
        l3_addr = Signal.like(l2_addr, name="l3_addr")
        m.d.sync += [l3_valid.eq(l2_valid), l3_mat.eq(l2_mat), l3_addr.eq(l2_addr)]
        for name, code in MATRIX_CODES.items():
            wr = p.wbar[name][1]
            m.d.comb += [
                wr.addr.eq(l3_addr),
                wr.en.eq(l3_valid & (l3_mat == code)),
                wr.data.eq(Cat(*(unit.wbar_new[code] for unit in p.lanes))),
            ]

    def _load_writes(self, m: Module, p: _Parts) -> None:
        """A loaded word is written at the load's address (the sweep never runs meanwhile)."""
        write = p.load.write
        with m.If(write.valid):
            for name, code in MATRIX_CODES.items():
                ports = [(getattr(self, f"w_{name}_write"), write.p.word.w)]
                if self.fptt:
                    ports.append((p.wbar[name][1], write.p.word.wbar))
                for wr, word in ports:
                    m.d.comb += [
                        wr.addr.eq(write.p.addr),
                        wr.en.eq(write.p.mat == code),
                        wr.data.eq(word.as_value()),
                    ]
