"""The on-chip learning datapath of :class:`~neurofptt.hdl.core.LifCore` (e-prop and FPTT).

Elaborated only when ``config.learning`` is set; it implements :mod:`neurofptt.onchip`
bit for bit.  The unit is not a separate component because it shares the weight memories' read
ports, the row pipeline of ``UPDATE`` and ``CLEAR`` and the control FSM with the inference
datapath:
:class:`LifCore` calls its hooks from the places where the values it needs pass by, so
collecting the per-neuron learning inputs and updating the traces costs no extra cycles:

* ``SPIKE`` events set the step's input bit ``x_i`` (:meth:`LearningUnit.record_input`);
* each ``UPDATE`` row (stage 2, ``P`` neurons) leaks and adds the row's traces ``zbar`` (with
  the row's previous spikes ``z(t-1)``, which its state row held) and ``obar`` (with its new
  spikes ``z(t)``), and the input traces ``xbar`` of the same row address; its registered new
  membranes form the pseudo-derivatives ``psi_j`` (:meth:`record_update_row`);
* ``CLEAR`` zeroes the trace rows as it zeroes the state rows (:meth:`clear_row`);
* each readout value sent on ``o_readout`` becomes the error ``e_k``: its difference from the
  target is registered, shifted and written on the next cycle (:meth:`record_readout`); with
  the softmax error the value itself is written, and :class:`SoftmaxError` forms the ``e_k``
  from all of them before the sweep.

After the readout of a ``STEP`` whose payload has ``learn`` set (and, with the softmax error,
its two passes over the ``error`` table), the ``LEARN`` state sweeps
``W_out``, ``W_in`` and ``W_rec`` one word (``lanes`` synapses) per cycle, in the order and with
the random draws of the golden model: stage 0 addresses the weight word (and the ``W_bar`` and
random-feedback words) and the per-neuron memories, stage 1 forms the gradients, stage 2 the new
weight word and stage 3 FPTT's new ``W_bar`` word (:meth:`LearningUnit._pipeline`). The ``W_out``
sweep also accumulates the learning signal ``L_j`` and stores ``delta_j`` (stage 3) after the last
word of neuron ``j``; two idle cycles between the ``W_out`` and ``W_in`` sweeps let the last one
arrive before ``W_in`` reads it, and ``LEARN_LAST`` waits for the last word to leave the pipeline,
so an update takes :func:`~neurofptt.onchip.learning_cycles_per_update` cycles plus one. The
``DUMP`` state streams every weight word (and ``W_bar`` word) out on ``o_weights`` so a testbench
can read the learned state through the ports, and ``IDLE`` takes the same words back on
``i_weights`` (:meth:`LearningUnit.load`), one per cycle at a load address of its own, so a dump,
or any other weight set, can be loaded without regenerating the Verilog. The word that ends a load
restarts learning as :meth:`~neurofptt.onchip.LearningState.start` does (FPTT's previous
factors zero, the LFSRs at their seeds), with ``W_bar`` as loaded.

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
(``Gp = 0`` until the first update after reset or a load).  What stays in registers: the step's
input bits ``x`` (``n_in`` bits), the LFSRs, the sweep counters, the readout being written to
``error`` and the softmax error's maximum, sum and divider.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from neurofptt.hdl.arith import onehot, pick, saturate, shift_right, sround, usat
from neurofptt.hdl.rows import packed_rows
from neurofptt.hdl.softmax_error import SoftmaxError
from neurofptt.onchip.state import LearningState
from neurofptt.quant.config import LFSR_BITS, lane_rows, learning_config
from neurofptt.quant.lfsr import LEAP, TAPS, lane_seeds
from neurofptt.quant.network import QuantizedNetwork

__all__ = ["MATRIX_CODES", "LearningUnit"]

#: sweep (and dump) order of the weight matrices, and the ``matrix`` code on ``o_weights``
MATRIX_CODES = {"out": 0, "in": 1, "rec": 2}


def _leap_columns() -> list[int]:
    """Column ``b`` of the draw's 16x16 XOR matrix: ``LEAP`` single steps from ``1 << b``.

    The Galois step ``s >> 1 ^ (s & 1) * TAPS`` is linear over GF(2), so a draw is one matrix
    product, i.e. one XOR tree per output bit and one clock per draw.
    """
    columns = []
    for bit in range(LFSR_BITS):
        s = 1 << bit
        for _ in range(LEAP):
            s = (s >> 1) ^ (TAPS if s & 1 else 0)
        columns.append(s)
    return columns


def _leap(state: Value) -> Value:
    """The LFSR state ``LEAP`` single steps after ``state`` (one draw)."""
    columns = _leap_columns()
    bits = []
    for out in range(LFSR_BITS):
        taps = [state[b] for b in range(LFSR_BITS) if columns[b] >> out & 1]
        x = taps[0]
        for t in taps[1:]:
            x = x ^ t
        bits.append(x)
    return Cat(*bits)


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

    @property
    def row(self):
        """The word read on the previous cycle, at the address given then."""
        return self.rd.data

    def slot(self, index: Value) -> Value:
        return pick([self.rd.data[i] for i in range(self.slots)], index)

    def write_one(self, m: Module, addr: Value, index: Value, value: Value) -> None:
        """Write ``value`` into slot ``index`` of word ``addr`` (comb; the caller's condition)."""
        m.d.comb += [self.wr.addr.eq(addr), self.wr.en.eq(onehot(index, self.slots))]
        m.d.comb += [self.wr.data[i].eq(value) for i in range(self.slots)]


class LearningUnit:
    """The learning state, the update sweep and the weight dump, built into ``m``.

    ``weights`` maps ``"in"``, ``"rec"``, ``"out"`` to ``(read port, write port)`` of the core's
    weight memories.  The methods named after an event are the core's hooks; ``issue``,
    ``drain`` and ``dump`` are the bodies of the ``LEARN``, ``LEARN_LAST`` and ``DUMP`` states,
    ``load`` is the part of ``IDLE`` that takes ``i_weights``.
    """

    def __init__(self, m: Module, net: QuantizedNetwork, lanes: int, weights: dict) -> None:
        self.m = m
        cfg = self.cfg = net.config
        lc = self.lc = learning_config(cfg)
        self.P = P = lanes
        self.fptt = lc.mode == "fptt"
        self.weights = weights
        self.R, self.Ro = R, Ro = lane_rows(cfg.n_rec, P), lane_rows(cfg.n_out, P)
        self.K = K = lane_rows(cfg.n_in, R)  # inputs per xbar word, so that the words fit in R rows
        self.XR = XR = lane_rows(cfg.n_in, K)
        self.n_pre = {"out": cfg.n_rec, "in": cfg.n_in, "rec": cfg.n_rec}
        self.n_rows = {"out": Ro, "in": R, "rec": R}
        self.per_word = {"out": P, "in": K, "rec": P}  # presynaptic traces per trace word
        start = LearningState.start(net)
        weight_row = data.ArrayLayout(signed(cfg.weight_bits), P)
        self.word = {name: data.View(weight_row, rd.data) for name, (rd, _wr) in weights.items()}

        # -- per-synapse memories besides the weights: W_bar (FPTT) and the random feedback --
        self.wbar: dict[str, tuple] = {}
        if self.fptt:
            wbar_row = data.ArrayLayout(signed(lc.wbar_bits), P)
            for name, stored in start.wbar.items():
                mem = Memory(
                    shape=unsigned(P * lc.wbar_bits),
                    depth=self.n_pre[name] * self.n_rows[name],
                    init=packed_rows(stored, P, lc.wbar_bits),
                )
                m.submodules[f"wbar_{name}"] = mem
                rd, wr = mem.read_port(), mem.write_port()
                self.wbar[name] = (rd, wr, data.View(wbar_row, rd.data))
        self.feedback = None
        if start.feedback is not None:  # B (n_rec, n_out) stored like W_out (n_out, n_rec)
            mem = Memory(
                shape=unsigned(P * cfg.weight_bits),
                depth=cfg.n_rec * Ro,
                init=packed_rows(start.feedback.T, P, cfg.weight_bits),
            )
            m.submodules.feedback = mem
            rd = mem.read_port()
            self.feedback = (rd, data.View(weight_row, rd.data))

        # -- per-neuron memories ------------------------------------------------------------------
        tb, sb = lc.trace_bits, lc.signal_bits
        self.eb = eb = cfg.membrane_bits + 1
        neuron = data.StructLayout({"zbar": unsigned(tb), "obar": unsigned(tb)})
        self.neuron = _Table(m, "neuron_traces", neuron, P, R)
        self.psi = _Table(m, "psi", unsigned(lc.psi_bits + 1), P, R)
        self.xbar = _Table(m, "input_traces", unsigned(tb), K, XR)
        # transparent: the last readout's e_k is written as the W_out sweep reads its first row
        self.err = _Table(m, "error", signed(eb), P, Ro, granular=True, transparent=True)
        # the readout whose error is shifted and written this cycle (off the readout's path)
        self.err_go = Signal()
        self.err_row = Signal(range(Ro))
        self.err_lane = Signal(range(max(P, 2)))
        self.err_d = Signal(signed(eb))
        self.err_first = Signal()  # err_d is readout 0's
        m.d.sync += self.err_go.eq(0)
        # transparent: the last delta of W_out is written as W_in reads its first row
        self.delta = _Table(m, "delta", signed(sb), P, R, granular=True, transparent=True)
        if self.fptt:  # the previous update's factors
            self.prev = {
                "err": _Table(m, "prev_error", signed(eb), P, Ro),
                "delta": _Table(m, "prev_delta", signed(sb), P, R),
                "obar": _Table(m, "prev_obar", unsigned(tb), P, R, granular=True),
                "xbar": _Table(m, "prev_xbar", unsigned(tb), K, XR, granular=True),
                "zbar": _Table(m, "prev_zbar", unsigned(tb), P, R, granular=True),
            }
            self.prev_valid = Signal()  # the previous factors are an update's, not reset
        self.x_now = Signal(XR * K)  # inputs that spiked in this step
        self.seeds = [int(seed) for seed in lane_seeds(lc.lfsr_seed, P)]
        self.lfsr = [
            Signal(LFSR_BITS, init=seed, name=f"lfsr_{lane}")
            for lane, seed in enumerate(self.seeds)
        ]

        # -- control registers ------------------------------------------------------------------
        #: idle cycles between the W_out and W_in sweeps, and cycles of LEARN_LAST: the last
        #: delta_j is written in stage 3, the last word leaves stage 2 (e-prop) or 3 (FPTT)
        self.GAP, self.DRAIN = 2, (3 if self.fptt else 2)
        self.gap = Signal(range(self.GAP + 1))
        self.flush = Signal(range(self.DRAIN))
        self.due = Signal()  # the STEP being processed asked for an update
        self.label = Signal(range(max(cfg.n_out, 2)))
        self.shift = Signal(range(cfg.membrane_bits + 1))
        self.depth = {name: self.n_pre[name] * self.n_rows[name] for name in MATRIX_CODES}
        depth = max(self.depth.values())
        self.mat = Signal(range(3))
        self.pre = Signal(range(max(cfg.n_in, cfg.n_rec)))
        self.pre_word = Signal(range(R))  # pre // per_word: the trace word of pre
        self.pre_slot = Signal(range(max(P, K, 2)))  # pre % per_word: its slot in the word
        self.row = Signal(range(max(R, Ro)))
        self.addr = Signal(range(depth))
        self.l1_valid = Signal()
        self.l1_mat = Signal.like(self.mat)
        self.l1_pre = Signal.like(self.pre)
        self.l1_pre_word = Signal.like(self.pre_word)
        self.l1_pre_slot = Signal.like(self.pre_slot)
        self.l1_row = Signal.like(self.row)
        self.l1_addr = Signal.like(self.addr)
        self.signal_acc = Signal(signed(cfg.weight_bits + eb + max(1, cfg.n_out.bit_length()) + 1))
        self.d_valid = Signal()
        self.d_mat = Signal.like(self.mat)
        self.d_last = Signal()
        self.d_done = Signal()
        # the load has its own address: an event taken with a load's first word (which goes to
        # W_out address 0, never read in IDLE) may start a sweep or a dump before the next word
        self.loading = Signal()  # a load has started and its last word is still to come
        self.load_mat = Signal.like(self.mat)
        self.load_addr = Signal.like(self.addr)

        self.softmax = None
        if lc.error == "softmax":
            self.softmax = SoftmaxError(m, cfg, self.err, self.label, self._store_error)
        self._write_error()
        self._pipeline()

    # -- hooks called by the core ---------------------------------------------------------------
    def follow_rows(self, row: Value) -> None:
        """Stage 1 of the core's pipeline holds ``row``: the trace memories read it, for stage 2
        of ``UPDATE`` (the sweep overrides the address in ``LEARN``)."""
        self.m.d.comb += [self.neuron.rd.addr.eq(row), self.xbar.rd.addr.eq(row)]

    def record_input(self, index: Value) -> None:
        """A ``SPIKE`` event for input ``index`` was taken."""
        self.m.d.sync += self.x_now.bit_select(index, 1).eq(1)

    def start_step(self, payload) -> None:
        """A ``STEP`` event was taken: latch whether and toward which label to learn."""
        self.m.d.sync += [
            self.due.eq(payload.learn),
            self.label.eq(payload.label),
            # the field can carry more than membrane_bits; the golden model applies the clamp too
            self.shift.eq(
                Mux(payload.shift > self.cfg.membrane_bits, self.cfg.membrane_bits, payload.shift)
            ),
        ]

    def clear(self) -> None:
        """A ``CLEAR`` event: a new sample starts with no input bits (the trace rows are zeroed
        by :meth:`clear_row`, the previous spikes with the state rows)."""
        self.m.d.sync += self.x_now.eq(0)

    def clear_row(self, row: Value) -> None:
        """Stage 1 of ``CLEAR`` for ``row`` (``0 .. max(R, Ro) - 1``): zero its trace words."""
        m = self.m
        m.d.comb += [
            self.neuron.wr.addr.eq(row),
            self.neuron.wr.en.eq(row < self.R),
            self.xbar.wr.addr.eq(row),
            self.xbar.wr.en.eq(row < self.XR),
        ]  # data stays 0

    def record_update_row(
        self, row: Value, v_new: Sequence[Value], z_new: Value, z_prev: Value
    ) -> None:
        """Stage 2 of ``UPDATE`` for ``row`` (its trace words were read in stage 1, see
        :meth:`follow_rows`): leak and add its neurons' traces (``zbar`` with ``z(t-1)``,
        ``obar`` with ``z(t)``) and those of input word ``row`` (with this step's input bits),
        and write them back; form ``psi_j`` from the registered new membranes ``v_new``."""
        m, cfg, lc, P, K = self.m, self.cfg, self.lc, self.P, self.K
        one = 1 << lc.trace_frac_bits

        def leaked(trace: Value, shift: int, spike: Value, name: str) -> Signal:
            new = (trace - (trace >> shift)) + Mux(spike, one, 0)
            return usat(m, new, lc.trace_bits, name)

        m.d.comb += [self.neuron.wr.addr.eq(row), self.neuron.wr.en.eq(1)]
        for lane in range(P):
            old, new = self.neuron.row[lane], self.neuron.wr.data[lane]
            m.d.comb += [
                new.zbar.eq(leaked(old.zbar, cfg.leak_shift, z_prev[lane], f"zbar_new_{lane}")),
                new.obar.eq(leaked(old.obar, cfg.out_leak_shift, z_new[lane], f"obar_new_{lane}")),
            ]
        x = self.x_now.word_select(row, K) if self.XR > 1 else self.x_now
        m.d.comb += [self.xbar.wr.addr.eq(row), self.xbar.wr.en.eq(row < self.XR)]
        for k in range(K):
            m.d.comb += self.xbar.wr.data[k].eq(
                leaked(self.xbar.row[k], cfg.leak_shift, x[k], f"xbar_new_{k}")
            )
        w = lc.psi_width_shift
        m.d.comb += [self.psi.wr.addr.eq(row), self.psi.wr.en.eq(1)]
        for lane, v in enumerate(v_new):
            distance = Signal(signed(cfg.membrane_bits + 1), name=f"psi_distance_{lane}")
            m.d.comb += distance.eq(v - cfg.threshold)
            magnitude = Mux(distance < 0, -distance, distance)
            triangle = (1 << w) - magnitude
            psi = Mux(triangle > 0, triangle, 0) >> (w - lc.psi_bits)
            m.d.comb += self.psi.wr.data[lane].eq(psi)

    def end_update(self) -> None:
        """``UPDATE_END``: the last row takes its input bits this cycle; clear them."""
        self.m.d.sync += self.x_now.eq(0)

    def record_readout(self, k: Value, row: Value, lane: Value, value: Value) -> None:
        """Readout ``k`` (lane ``lane`` of readout row ``row``) was sent with ``value``:
        register its difference from the target (the hinge keeps ``value - target`` only where
        its sign matches ``k == label``, else 0), or for the softmax error the value itself,
        for :meth:`_write_error`."""
        is_label = k == self.label
        error = Signal(signed(self.eb), name="error")
        if self.softmax is not None:
            self.m.d.comb += error.eq(value)
        else:
            self.m.d.comb += error.eq(value - Mux(is_label, self.lc.target, 0))
        if self.lc.error == "hinge":
            hinged = Signal.like(error, name="error_hinge")
            self.m.d.comb += hinged.eq(Mux((error < 0) == is_label, error, 0))
            error = hinged
        self.m.d.sync += [
            self.err_go.eq(1),
            self.err_row.eq(row),
            self.err_lane.eq(lane),
            self.err_d.eq(error),
            self.err_first.eq(k == 0),
        ]

    def _store_error(self, row: Value, lane: Value, error: Value) -> None:
        """Write ``error`` shifted by the step's ``b_t`` as ``e`` of (``row``, ``lane``) (the
        step's ``shift`` holds until the next ``STEP``, which comes later)."""
        rounded = shift_right(error, self.shift, self.lc.rounding == "nearest")
        self.err.write_one(self.m, row, lane, rounded)

    def _write_error(self) -> None:
        """The cycle after a readout was sent: its error is this step's ``e_k``; with the
        softmax error its value goes into the table for :class:`SoftmaxError`."""
        with self.m.If(self.err_go):
            if self.softmax is None:
                self._store_error(self.err_row, self.err_lane, self.err_d)
            else:
                self.err.write_one(self.m, self.err_row, self.err_lane, self.err_d)
                self.softmax.track(self.err_first, self.err_d)

    def begin(self) -> None:
        """Point the sweep / dump counters at the first word of ``W_out``."""
        self.m.d.sync += [
            self.mat.eq(0),
            self.pre.eq(0),
            self.pre_word.eq(0),
            self.pre_slot.eq(0),
            self.row.eq(0),
            self.addr.eq(0),
            self.signal_acc.eq(0),
            self.d_done.eq(0),
            self.d_valid.eq(0),
        ]

    # -- the LEARN and LEARN_LAST states ------------------------------------------------------
    def _addresses(self, names_ok: Callable[[str], Value]) -> None:
        """Address every memory of matrix ``mat`` with ``addr``; read enables per ``names_ok``."""
        m = self.m
        for name in MATRIX_CODES:
            rd, _wr = self.weights[name]
            ports = [rd]
            if name in self.wbar:
                ports.append(self.wbar[name][0])
            if name == "out" and self.feedback is not None:
                ports.append(self.feedback[0])
            for port in ports:
                m.d.comb += [port.addr.eq(self.addr), port.en.eq(names_ok(name))]

    def _step_counters(self, on_last: Callable[[], None]) -> None:
        """Advance ``(mat, pre, row, addr)`` by one word in address order."""
        m = self.m
        with m.Switch(self.mat):
            for name, code in MATRIX_CODES.items():
                with m.Case(code):
                    with m.If(self.row == self.n_rows[name] - 1):
                        m.d.sync += self.row.eq(0)
                        with m.If(self.pre == self.n_pre[name] - 1):
                            m.d.sync += [
                                self.pre.eq(0),
                                self.pre_word.eq(0),
                                self.pre_slot.eq(0),
                                self.addr.eq(0),
                            ]
                            if code == len(MATRIX_CODES) - 1:
                                on_last()
                            else:
                                m.d.sync += self.mat.eq(code + 1)
                        with m.Else():
                            m.d.sync += [self.pre.eq(self.pre + 1), self.addr.eq(self.addr + 1)]
                            with m.If(self.pre_slot == self.per_word[name] - 1):
                                m.d.sync += [
                                    self.pre_slot.eq(0),
                                    self.pre_word.eq(self.pre_word + 1),
                                ]
                            with m.Else():
                                m.d.sync += self.pre_slot.eq(self.pre_slot + 1)
                    with m.Else():
                        m.d.sync += [self.row.eq(self.row + 1), self.addr.eq(self.addr + 1)]

    def issue(self, on_last: Callable[[], None]) -> None:
        """``LEARN``: issue one word per cycle, with ``GAP`` idle cycles between ``W_out`` and
        ``W_in`` (the last ``delta_j`` is written in stage 3); ``on_last`` runs with the last
        word."""
        m = self.m
        with m.If(self.gap != 0):
            m.d.sync += [self.gap.eq(self.gap - 1), self.l1_valid.eq(0)]
        with m.Else():
            self._addresses(lambda name: 1)
            by_pre = [self.neuron, self.xbar, self.psi]  # the traces, psi: one word for all lanes
            by_row = [self.err, self.delta]  # the factors: one value per lane
            if self.fptt:
                by_pre += [self.prev[key] for key in ("obar", "xbar", "zbar")]
                by_row += [self.prev["err"], self.prev["delta"]]
            m.d.comb += [table.rd.addr.eq(self.pre_word) for table in by_pre]
            m.d.comb += [table.rd.addr.eq(self.row) for table in by_row]
            m.d.sync += [
                self.l1_valid.eq(1),
                self.l1_mat.eq(self.mat),
                self.l1_pre.eq(self.pre),
                self.l1_pre_word.eq(self.pre_word),
                self.l1_pre_slot.eq(self.pre_slot),
                self.l1_row.eq(self.row),
                self.l1_addr.eq(self.addr),
            ]
            last_out = (self.mat == MATRIX_CODES["out"]) & (self.addr == self.depth["out"] - 1)
            with m.If(last_out):
                m.d.sync += self.gap.eq(self.GAP)

            def last() -> None:
                m.d.sync += self.flush.eq(self.DRAIN - 1)
                on_last()

            self._step_counters(last)

    def drain(self, on_done: Callable[[], None]) -> None:
        """``LEARN_LAST``: ``DRAIN`` cycles in which the last word passes the later stages;
        then the sweep is over and this update's factors are FPTT's previous ones."""
        m = self.m
        m.d.sync += self.l1_valid.eq(0)
        with m.If(self.flush != 0):
            m.d.sync += self.flush.eq(self.flush - 1)
        with m.Else():
            m.d.sync += self.due.eq(0)
            if self.fptt:
                m.d.sync += self.prev_valid.eq(1)
            on_done()

    # -- the DUMP state ---------------------------------------------------------------------------
    def dump(self, stream, on_done: Callable[[], None]) -> None:
        """``DUMP``: offer every word of ``W_out``, ``W_in``, ``W_rec`` (and ``W_bar``) in
        address order on ``stream``; read enables follow the stream so a stall holds the word."""
        m = self.m
        advance = ~self.d_valid | stream.ready
        self._addresses(lambda name: advance & (self.mat == MATRIX_CODES[name]))
        with m.If(advance):
            with m.If(~self.d_done):
                last = (self.mat == MATRIX_CODES["rec"]) & (self.addr == self.depth["rec"] - 1)
                m.d.sync += [
                    self.d_valid.eq(1),
                    self.d_mat.eq(self.mat),
                    self.d_last.eq(last),
                ]

                def finished() -> None:
                    m.d.sync += [self.d_done.eq(1), self.mat.eq(0)]

                self._step_counters(finished)
            with m.Else():
                m.d.sync += self.d_valid.eq(0)
                on_done()

    # -- the load, in IDLE ----------------------------------------------------------------------
    def load(self, stream) -> None:
        """``IDLE``: take one ``i_weights`` word per cycle (``ready`` is high throughout, so it
        does not depend on ``valid``) and write its weight word, and ``W_bar`` word, at the load
        address, which runs through ``W_out``, ``W_in``, ``W_rec`` in address order.

        ``matrix`` is not read: the position in the stream already names the matrix, and the
        core has no way to report a disagreement.  ``last``, or the final ``W_rec`` address,
        ends the load: the address returns to ``W_out`` word 0 and learning restarts from the
        loaded state as :meth:`~neurofptt.onchip.LearningState.start` has it (FPTT's
        previous factors, ``Gp``, zero; every lane's LFSR at its seed), so a load gives the same
        learning whatever ran before it."""
        m = self.m
        m.d.comb += stream.ready.eq(1)
        with m.If(stream.valid):
            for name, code in MATRIX_CODES.items():
                ports = [(self.weights[name][1], stream.p.w)]
                if self.fptt:
                    ports.append((self.wbar[name][1], stream.p.wbar))
                for wr, word in ports:
                    m.d.comb += [
                        wr.addr.eq(self.load_addr),
                        wr.en.eq(self.load_mat == code),
                        wr.data.eq(word.as_value()),
                    ]
            final = (self.load_mat == MATRIX_CODES["rec"]) & (
                self.load_addr == self.depth["rec"] - 1
            )
            with m.If(stream.p.last | final):
                m.d.sync += [self.loading.eq(0), self.load_mat.eq(0), self.load_addr.eq(0)]
                m.d.sync += [
                    lfsr.eq(seed) for lfsr, seed in zip(self.lfsr, self.seeds, strict=True)
                ]
                if self.fptt:
                    m.d.sync += self.prev_valid.eq(0)
            with m.Else():
                m.d.sync += [self.loading.eq(1), self.load_addr.eq(self.load_addr + 1)]
                for name in list(MATRIX_CODES)[:-1]:  # the end of W_rec is the end of the load
                    code = MATRIX_CODES[name]
                    end = (self.load_mat == code) & (self.load_addr == self.depth[name] - 1)
                    with m.If(end):
                        m.d.sync += [self.load_mat.eq(code + 1), self.load_addr.eq(0)]

    def connect_dump(self, stream) -> None:
        """Drive the ``o_weights`` stream from the dump registers and the read ports."""
        m = self.m
        m.d.comb += [
            stream.valid.eq(self.d_valid),
            stream.p.matrix.eq(self.d_mat),
            stream.p.last.eq(self.d_last),
        ]

        # a Mux expression rather than a Switch: Yosys then writes plain assignments, where a
        # process driving only part of the payload would not run at time zero under
        # SystemVerilog rules and leave the other fields X
        def select(port_of: Callable[[str], Value]) -> Value:
            out, rec = port_of("out"), port_of("rec")
            return Mux(self.d_mat == MATRIX_CODES["out"], out,
                       Mux(self.d_mat == MATRIX_CODES["in"], port_of("in"), rec))  # fmt: skip

        m.d.comb += stream.p.w.eq(select(lambda name: self.weights[name][0].data))
        if self.fptt:
            m.d.comb += stream.p.wbar.eq(select(lambda name: self.wbar[name][0].data))

    # -- datapaths ----------------------------------------------------------------------------
    def _operands(self, tables: dict[str, _Table]) -> tuple[Value, list[Value]]:
        """Stage 1: the presynaptic trace (one for all lanes) and the postsynaptic factor of
        every lane of the word being updated, from ``tables`` (``obar``/``xbar``/``zbar`` and
        ``err``/``delta``, this update's or the previous one's)."""
        is_out = self.l1_mat == MATRIX_CODES["out"]
        is_in = self.l1_mat == MATRIX_CODES["in"]
        slot = self.l1_pre_slot
        pre = Mux(
            is_out,
            tables["obar"].slot(slot),
            Mux(is_in, tables["xbar"].slot(slot), tables["zbar"].slot(slot)),
        )
        post = [Mux(is_out, tables["err"].row[lane], tables["delta"].row[lane])
                for lane in range(self.P)]  # fmt: skip
        return pre, post

    def _pipeline(self) -> None:
        """The update pipeline after stage 0 (``lanes`` synapses per cycle).

        * stage 1 (the reads are valid): one multiplier per lane forms ``G`` (and one more
          ``Gp``) for whichever matrix is swept; the weight word of that matrix, and FPTT's
          ``W - W_bar`` and ``W_bar``, are registered with them; the ``W_out`` sweep
          registers the ``B e`` products of ``L_j``;
        * stage 2: the new weight word, written back (per matrix: each has its own
          learning-rate shift); ``L_j`` accumulates, and after neuron ``j``'s last word
          ``sat(L_j >> signal_shift)`` is registered with ``psi_j``;
        * stage 3: FPTT's new ``W_bar`` word, written back; ``delta_j`` is formed and written.

        The lane LFSRs draw in stage 2 (FPTT's second draw is carried to stage 3)."""
        m, cfg, lc, P = self.m, self.cfg, self.lc, self.P
        wb = cfg.weight_bits
        factor_bits = max(self.eb, lc.signal_bits)
        grad_shape = signed(factor_bits + lc.trace_bits + 1)
        weight_row = data.ArrayLayout(signed(wb), P)

        # -- stage 1 --------------------------------------------------------------------------
        now = {
            "obar": self.neuron_view("obar"),
            "xbar": self.xbar,
            "zbar": self.neuron_view("zbar"),
            "err": self.err,
            "delta": self.delta,
        }
        pre, post = self._operands(now)
        l2_valid, l2_mat, l2_addr = Signal(), Signal.like(self.mat), Signal.like(self.addr)
        m.d.sync += [
            l2_valid.eq(self.l1_valid),
            l2_mat.eq(self.l1_mat),
            l2_addr.eq(self.l1_addr),
        ]

        def select(port_of: Callable[[str], Value]) -> Value:
            out, rec = port_of("out"), port_of("rec")
            return Mux(self.l1_mat == MATRIX_CODES["out"], out,
                       Mux(self.l1_mat == MATRIX_CODES["in"], port_of("in"), rec))  # fmt: skip

        w1 = data.View(weight_row, select(lambda name: self.weights[name][0].data))
        w2 = Signal(weight_row, name="w_s2")
        m.d.sync += w2.eq(w1)
        g2 = [Signal(grad_shape, name=f"grad_{lane}") for lane in range(P)]
        m.d.sync += [g.eq(post[lane] * pre) for lane, g in enumerate(g2)]
        if self.fptt:
            self._keep_previous(now)
            prev_pre, prev_post = self._operands(self.prev)
            prev_pre = Mux(self.prev_valid, prev_pre, 0)
            gp2 = [Signal(grad_shape, name=f"grad_prev_{lane}") for lane in range(P)]
            m.d.sync += [g.eq(prev_post[lane] * prev_pre) for lane, g in enumerate(gp2)]
            stored_row = data.ArrayLayout(signed(lc.wbar_bits), P)
            stored = data.View(stored_row, select(lambda name: self.wbar[name][0].data))
            mean_bits = max(wb, lc.wbar_bits) + 1
            diff2 = [Signal(signed(mean_bits + 1), name=f"w_minus_mean_{ln}") for ln in range(P)]
            mean2 = [Signal(signed(mean_bits + 1), name=f"mean_s2_{ln}") for ln in range(P)]
            for lane in range(P):
                w, wbar = w1[lane], stored[lane]
                if lc.wbar_store == "absolute":
                    m.d.sync += [diff2[lane].eq(w - wbar), mean2[lane].eq(wbar)]
                else:  # W - W_bar is what is stored
                    m.d.sync += [diff2[lane].eq(wbar), mean2[lane].eq(w - wbar)]

        # -- stage 2: the draws, the new weights ----------------------------------------------
        draws = []
        for lane in range(P):
            r0 = Signal(LFSR_BITS, name=f"draw0_{lane}")
            m.d.comb += r0.eq(_leap(self.lfsr[lane]))
            last = r0
            if self.fptt:
                last = Signal(LFSR_BITS, name=f"draw1_{lane}")
                m.d.comb += last.eq(_leap(r0))
            draws.append((r0, last))
        with m.If(l2_valid):
            m.d.sync += [s.eq(last) for s, (_r0, last) in zip(self.lfsr, draws, strict=True)]

        def new_weights(s: int) -> list[Value]:
            """The new weight of every lane with learning-rate shift ``s``."""
            out = []
            for lane in range(P):
                w, g, r0 = w2[lane], g2[lane], draws[lane][0]
                if self.fptt:
                    pull = diff2[lane] << (s + 1 - lc.alpha_shift)
                    step = sround(-2 * g + gp2[lane] - pull, s + 1, r0)
                else:
                    step = sround(-g, s, r0)
                out.append(saturate(m, w + step, wb, f"w_new_s{s}_{lane}"))
            return out

        # matrices with the same learning-rate shift share one datapath
        by_shift = {s: new_weights(s) for s in sorted({lc.lr_shift(n) for n in MATRIX_CODES})}
        w_new = {name: by_shift[lc.lr_shift(name)] for name in MATRIX_CODES}
        for name, code in MATRIX_CODES.items():
            _rd, wr = self.weights[name]
            m.d.comb += [wr.addr.eq(l2_addr), wr.en.eq(l2_valid & (l2_mat == code))]
            m.d.comb += [wr.data.word_select(lane, wb).eq(w) for lane, w in enumerate(w_new[name])]

        # -- stage 3 (FPTT): the new W_bar ------------------------------------------------------
        if self.fptt:
            l3_valid, l3_mat, l3_addr = Signal(), Signal.like(self.mat), Signal.like(self.addr)
            m.d.sync += [l3_valid.eq(l2_valid), l3_mat.eq(l2_mat), l3_addr.eq(l2_addr)]
            w3 = [Signal(signed(wb), name=f"w_new_s3_{lane}") for lane in range(P)]
            g3 = [Signal(grad_shape, name=f"grad_s3_{lane}") for lane in range(P)]
            mean3 = [Signal.like(mean2[lane], name=f"mean_s3_{lane}") for lane in range(P)]
            r1 = [Signal(LFSR_BITS, name=f"draw1_s3_{lane}") for lane in range(P)]
            for lane in range(P):
                new = Mux(l2_mat == MATRIX_CODES["out"], w_new["out"][lane],
                          Mux(l2_mat == MATRIX_CODES["in"], w_new["in"][lane],
                              w_new["rec"][lane]))  # fmt: skip
                m.d.sync += [
                    w3[lane].eq(new),
                    g3[lane].eq(g2[lane]),
                    mean3[lane].eq(mean2[lane]),
                    r1[lane].eq(draws[lane][1]),
                ]

            def new_wbar(s: int) -> list[Value]:
                """The new stored ``W_bar`` (or ``W - W_bar``) of every lane with shift ``s``."""
                out = []
                for lane in range(P):
                    mean_new = sround(
                        ((mean3[lane] + w3[lane]) << s) - (g3[lane] << lc.alpha_shift),
                        s + 1,
                        r1[lane],
                    )
                    keep = mean_new if lc.wbar_store == "absolute" else w3[lane] - mean_new
                    out.append(saturate(m, keep, lc.wbar_bits, f"wbar_new_s{s}_{lane}"))
                return out

            wbar_by_shift = {s: new_wbar(s) for s in by_shift}
            for name, code in MATRIX_CODES.items():
                _wbar_rd, wbar_wr, _word = self.wbar[name]
                kept = wbar_by_shift[lc.lr_shift(name)]
                m.d.comb += [wbar_wr.addr.eq(l3_addr), wbar_wr.en.eq(l3_valid & (l3_mat == code))]
                m.d.comb += [
                    wbar_wr.data.word_select(lane, lc.wbar_bits).eq(k)
                    for lane, k in enumerate(kept)
                ]
        self._learning_signal(l2_valid, l2_mat)

    def neuron_view(self, field: str) -> _Field:
        """One field of the ``neuron`` table, read like a table of its own."""
        return _Field(self.neuron, field)

    def _keep_previous(self, now: dict) -> None:
        """FPTT: this update's factors become the previous ones once the sweep has read them:
        a trace after the last word of its ``pre``, the ``e`` and ``delta`` rows during the
        last ``pre`` of ``W_out`` and ``W_rec`` (the last sweeps that read them)."""
        m, prev = self.m, self.prev
        trace_of = {"out": "obar", "in": "xbar", "rec": "zbar"}
        with m.If(self.l1_valid), m.Switch(self.l1_mat):
            for name, code in MATRIX_CODES.items():
                with m.Case(code):
                    key = trace_of[name]
                    with m.If(self.l1_row == self.n_rows[name] - 1):
                        prev[key].write_one(
                            m, self.l1_pre_word, self.l1_pre_slot, now[key].slot(self.l1_pre_slot)
                        )
                    factor = {"out": "err", "rec": "delta"}.get(name)
                    if factor is not None:
                        with m.If(self.l1_pre == self.n_pre[name] - 1):
                            m.d.comb += [
                                prev[factor].wr.addr.eq(self.l1_row),
                                prev[factor].wr.en.eq(1),
                                prev[factor].wr.data.eq(now[factor].row),
                            ]

    def _learning_signal(self, l2_valid: Value, l2_mat: Value) -> None:
        """During the ``W_out`` sweep: ``L_j = sum_k B_jk e_k`` over neuron ``j``'s words (the
        products in stage 1, the sum in stage 2), then after its last word
        ``delta_j = sat((sat(L_j >> signal_shift) psi_j) >> psi_bits)`` (stage 3)."""
        m, cfg, lc, P = self.m, self.cfg, self.lc, self.P
        b_word = self.word["out"] if self.feedback is None else self.feedback[1]
        products = [
            Signal(signed(cfg.weight_bits + self.eb), name=f"signal_product_{lane}")
            for lane in range(P)
        ]
        m.d.sync += [p.eq(b_word[lane] * self.err.row[lane]) for lane, p in enumerate(products)]
        l2_last = Signal()  # stage 2 has neuron j's last W_out word
        l2_word, l2_slot = Signal.like(self.pre_word), Signal.like(self.pre_slot)
        psi2 = Signal(unsigned(lc.psi_bits + 1), name="psi_s2")
        m.d.sync += [
            l2_last.eq(self.l1_row == self.Ro - 1),
            l2_word.eq(self.l1_pre_word),
            l2_slot.eq(self.l1_pre_slot),
            psi2.eq(self.psi.slot(self.l1_pre_slot)),
        ]
        total = Signal.like(self.signal_acc, name="signal_total")
        m.d.comb += total.eq(self.signal_acc + sum(products))
        nearest = lc.rounding == "nearest"
        signal = saturate(m, shift_right(total, lc.signal_shift, nearest), lc.signal_bits, "signal")
        d3_valid = Signal()
        d3_word, d3_slot = Signal.like(l2_word), Signal.like(l2_slot)
        signal3 = Signal.like(signal, name="signal_s3")
        psi3 = Signal.like(psi2, name="psi_s3")
        m.d.sync += d3_valid.eq(0)
        with m.If(l2_valid & (l2_mat == MATRIX_CODES["out"])):
            with m.If(l2_last):
                m.d.sync += [
                    self.signal_acc.eq(0),
                    d3_valid.eq(1),
                    d3_word.eq(l2_word),
                    d3_slot.eq(l2_slot),
                    signal3.eq(signal),
                    psi3.eq(psi2),
                ]
            with m.Else():
                m.d.sync += self.signal_acc.eq(total)
        delta = saturate(
            m, shift_right(signal3 * psi3, lc.psi_bits, nearest), lc.signal_bits, "delta_new"
        )
        with m.If(d3_valid):
            self.delta.write_one(m, d3_word, d3_slot, delta)


class _Field:
    """One field of a table of structures, read like a :class:`_Table` (``slot`` only)."""

    def __init__(self, table: _Table, field: str) -> None:
        self.table, self.field = table, field

    def slot(self, index: Value) -> Value:
        row = self.table.rd.data
        return pick([row[i][self.field] for i in range(self.table.slots)], index)
