"""The on-chip learning datapath of :class:`~neurofptt.hdl.core.LifCore` (e-prop and FPTT).

Elaborated only when ``config.learning`` is set; it implements :mod:`neurofptt.quant.onchip`
bit for bit.  The unit is not a separate component because it shares the weight memories' read
ports and the control FSM with the inference datapath: :class:`LifCore` calls its hooks from the
places where the values it needs pass by, so collecting the per-neuron learning inputs costs no
extra cycles:

* ``SPIKE`` events set the step's input bit ``x_i`` (:meth:`LearningUnit.record_input`);
* the ``UPDATE`` phase hands over each row's new membranes and spikes, from which the
  pseudo-derivative ``psi_j`` is formed and ``z_j(t)`` recorded (:meth:`record_update_row`);
* the cycle after ``UPDATE_LAST`` updates all traces at once (:meth:`end_update`);
* each readout value sent on ``o_readout`` becomes the error ``e_k`` (:meth:`record_readout`).

After the readout of a ``STEP`` whose payload has ``learn`` set, the ``LEARN`` state sweeps
``W_out``, ``W_in`` and ``W_rec`` one word (``lanes`` synapses) per cycle, in the order and with
the random draws of the golden model: stage 0 addresses the weight word (and the ``W_bar`` and
random-feedback words), stage 1 forms the new word and writes it back.  The ``W_out`` sweep also
accumulates the learning signal ``L_j`` and stores ``delta_j`` after the last word of neuron
``j``, which is before the ``W_in`` sweep needs it, so the three sweeps run back to back and an
update takes :func:`~neurofptt.quant.onchip.learning_cycles_per_update` cycles plus one to drain
the pipeline.  The ``DUMP`` state streams every weight word (and ``W_bar`` word) out on
``o_weights`` so a testbench can read the learned state through the ports, and ``IDLE`` takes
the same words back on ``i_weights`` (:meth:`LearningUnit.load`), one per cycle at a load address
of its own, so a dump, or any other weight set, can be loaded without regenerating the Verilog.
The word that ends a load restarts learning as :meth:`~neurofptt.quant.onchip.LearningState.start`
does (FPTT's previous factors zero, the LFSRs at their seeds), with ``W_bar`` as loaded.

Per-neuron state (traces, ``psi``, ``delta``, ``e``, FPTT's previous factors) lives in registers:
it is ``O(n)`` against the ``O(n^2)`` per-synapse memories, and the trace update of every step
touches all of it in one cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from neurofptt.hdl.core import _packed_rows, _rows, _saturate
from neurofptt.quant.config import LFSR_BITS
from neurofptt.quant.lfsr import LEAP, TAPS, lane_seeds
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.quant.onchip import LearningState, learning_config

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


def _sround(x: Value, shift: int, r: Value) -> Value:
    """Stochastic rounding of ``x / 2**shift`` with the 16-bit draw ``r`` (see ``lfsr.py``)."""
    if shift == 0:
        return x
    if shift <= LFSR_BITS:
        return (x + r[:shift]) >> shift
    return ((x >> (shift - LFSR_BITS)) + r) >> LFSR_BITS


def _usat(m: Module, value: Value, bits: int, name: str) -> Signal:
    """``value`` (never negative here) clamped to ``[0, 2**bits - 1]``."""
    wide = Signal(value.shape(), name=f"{name}_wide")
    out = Signal(unsigned(bits), name=name)
    m.d.comb += [wide.eq(value), out.eq(Mux(wide > (1 << bits) - 1, (1 << bits) - 1, wide))]
    return out


def _write_at(m: Module, targets: Sequence[Signal | None], index: Value, value: Value) -> None:
    """``targets[index] <= value`` (sync); ``None`` entries (padding lanes) are skipped."""
    with m.Switch(index):
        for i, target in enumerate(targets):
            if target is not None:
                with m.Case(i):
                    m.d.sync += target.eq(value)


def _row_select(items: Sequence[Signal], lane: int, lanes: int, row: Value, shape) -> Value:
    """``items[row * lanes + lane]``, or 0 on a padding lane of the last row."""
    rows = _rows(len(items), lanes)
    column = [
        items[r * lanes + lane] if r * lanes + lane < len(items) else Const(0, shape)
        for r in range(rows)
    ]
    return Array(column)[row]


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
        self.R, self.Ro = R, Ro = _rows(cfg.n_rec, P), _rows(cfg.n_out, P)
        self.n_pre = {"out": cfg.n_rec, "in": cfg.n_in, "rec": cfg.n_rec}
        self.n_rows = {"out": Ro, "in": R, "rec": R}
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
                    init=_packed_rows(stored, P, lc.wbar_bits),
                )
                m.submodules[f"wbar_{name}"] = mem
                rd, wr = mem.read_port(), mem.write_port()
                self.wbar[name] = (rd, wr, data.View(wbar_row, rd.data))
        self.feedback = None
        if start.feedback is not None:  # B (n_rec, n_out) stored like W_out (n_out, n_rec)
            mem = Memory(
                shape=unsigned(P * cfg.weight_bits),
                depth=cfg.n_rec * Ro,
                init=_packed_rows(start.feedback.T, P, cfg.weight_bits),
            )
            m.submodules.feedback = mem
            rd = mem.read_port()
            self.feedback = (rd, data.View(weight_row, rd.data))

        # -- per-neuron registers ---------------------------------------------------------------
        tb, sb, eb = lc.trace_bits, lc.signal_bits, cfg.membrane_bits + 1

        def regs(n: int, shape, name: str) -> list[Signal]:
            return [Signal(shape, name=f"{name}_{i}") for i in range(n)]

        self.x_now = Signal(cfg.n_in)  # inputs that spiked in this step
        self.z_prev = Signal(cfg.n_rec)  # z(t - 1)
        self.z_now = Signal(cfg.n_rec)  # z(t), recorded during UPDATE
        self.xbar = regs(cfg.n_in, unsigned(tb), "xbar")
        self.zbar = regs(cfg.n_rec, unsigned(tb), "zbar")
        self.obar = regs(cfg.n_rec, unsigned(tb), "obar")
        self.psi = regs(cfg.n_rec, unsigned(lc.psi_bits + 1), "psi")
        self.delta = regs(cfg.n_rec, signed(sb), "delta")
        self.err = regs(cfg.n_out, signed(eb), "err")
        if self.fptt:
            self.prev = {
                "delta": regs(cfg.n_rec, signed(sb), "prev_delta"),
                "err": regs(cfg.n_out, signed(eb), "prev_err"),
                "xbar": regs(cfg.n_in, unsigned(tb), "prev_xbar"),
                "zbar": regs(cfg.n_rec, unsigned(tb), "prev_zbar"),
                "obar": regs(cfg.n_rec, unsigned(tb), "prev_obar"),
            }
        self.seeds = [int(seed) for seed in lane_seeds(lc.lfsr_seed, P)]
        self.lfsr = [
            Signal(LFSR_BITS, init=seed, name=f"lfsr_{lane}")
            for lane, seed in enumerate(self.seeds)
        ]

        # -- control registers ------------------------------------------------------------------
        self.due = Signal()  # the STEP being processed asked for an update
        self.label = Signal(range(max(cfg.n_out, 2)))
        self.shift = Signal(range(cfg.membrane_bits + 1))
        self.trace_go = Signal()
        self.depth = {name: self.n_pre[name] * self.n_rows[name] for name in MATRIX_CODES}
        depth = max(self.depth.values())
        self.mat = Signal(range(3))
        self.pre = Signal(range(max(cfg.n_in, cfg.n_rec)))
        self.row = Signal(range(max(R, Ro)))
        self.addr = Signal(range(depth))
        self.l1_valid = Signal()
        self.l1_mat = Signal.like(self.mat)
        self.l1_pre = Signal.like(self.pre)
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

        self._traces()
        self._stage1()

    # -- hooks called by the core ---------------------------------------------------------------
    def record_input(self, index: Value) -> None:
        """A ``SPIKE`` event for input ``index`` was taken."""
        self.m.d.sync += self.x_now.bit_select(index, 1).eq(1)

    def start_step(self, payload) -> None:
        """A ``STEP`` event was taken: latch whether and toward which label to learn."""
        self.m.d.sync += [
            self.due.eq(payload.learn),
            self.label.eq(payload.label),
            self.shift.eq(payload.shift),
        ]

    def clear(self) -> None:
        """A ``CLEAR`` event: a new sample starts with zero traces and no previous spikes."""
        self.m.d.sync += [self.x_now.eq(0), self.z_prev.eq(0)]
        self.m.d.sync += [t.eq(0) for t in self.xbar + self.zbar + self.obar]

    def record_update_row(self, row: Value, v_new: Sequence[Value], z_new: Value) -> None:
        """Stage 1 of ``UPDATE`` for ``row``: keep ``z_j(t)`` and ``psi_j`` of its neurons."""
        m, cfg, lc, P = self.m, self.cfg, self.lc, self.P
        w = lc.psi_width_shift
        for lane in range(P):
            distance = Signal(signed(cfg.membrane_bits + 1), name=f"psi_distance_{lane}")
            m.d.comb += distance.eq(v_new[lane] - cfg.threshold)
            magnitude = Mux(distance < 0, -distance, distance)
            triangle = (1 << w) - magnitude
            psi = Mux(triangle > 0, triangle, 0) >> (w - lc.psi_bits)
            targets = [
                self.psi[r * P + lane] if r * P + lane < cfg.n_rec else None for r in range(self.R)
            ]
            _write_at(m, targets, row, psi)
            bits = [
                self.z_now[r * P + lane] if r * P + lane < cfg.n_rec else None
                for r in range(self.R)
            ]
            _write_at(m, bits, row, z_new[lane])

    def end_update(self) -> None:
        """``UPDATE_LAST``: ``z(t)`` is complete after this cycle; update the traces next."""
        self.m.d.sync += self.trace_go.eq(1)

    def record_readout(self, k: Value, value: Value) -> None:
        """Readout ``k`` was sent with ``value``: keep the error ``e_k`` of this step (the hinge
        keeps ``value - target`` only where its sign matches ``k == label``, else 0)."""
        is_label = k == self.label
        target = Mux(is_label, self.lc.target, 0)
        error = Signal(signed(self.cfg.membrane_bits + 1), name="error")
        self.m.d.comb += error.eq(value - target)
        if self.lc.error == "hinge":
            hinged = Signal.like(error, name="error_hinge")
            self.m.d.comb += hinged.eq(Mux((error < 0) == is_label, error, 0))
            error = hinged
        _write_at(self.m, self.err, k, error >> self.shift)

    def begin(self) -> None:
        """Point the sweep / dump counters at the first word of ``W_out``."""
        self.m.d.sync += [
            self.mat.eq(0),
            self.pre.eq(0),
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
                            m.d.sync += [self.pre.eq(0), self.addr.eq(0)]
                            if code == len(MATRIX_CODES) - 1:
                                on_last()
                            else:
                                m.d.sync += self.mat.eq(code + 1)
                        with m.Else():
                            m.d.sync += [self.pre.eq(self.pre + 1), self.addr.eq(self.addr + 1)]
                    with m.Else():
                        m.d.sync += [self.row.eq(self.row + 1), self.addr.eq(self.addr + 1)]

    def issue(self, on_last: Callable[[], None]) -> None:
        """``LEARN``: issue one word per cycle; ``on_last`` runs with the last one."""
        m = self.m
        self._addresses(lambda name: 1)
        m.d.sync += [
            self.l1_valid.eq(1),
            self.l1_mat.eq(self.mat),
            self.l1_pre.eq(self.pre),
            self.l1_row.eq(self.row),
            self.l1_addr.eq(self.addr),
        ]
        self._step_counters(on_last)

    def drain(self) -> None:
        """``LEARN_LAST``: stage 1 writes the last word; this update's factors become FPTT's
        previous ones and the sweep is over."""
        m = self.m
        m.d.sync += [self.l1_valid.eq(0), self.due.eq(0)]
        if self.fptt:
            now = {
                "delta": self.delta,
                "err": self.err,
                "xbar": self.xbar,
                "zbar": self.zbar,
                "obar": self.obar,
            }
            for key, regs in now.items():
                m.d.sync += [p.eq(r) for p, r in zip(self.prev[key], regs, strict=True)]

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
        loaded state as :meth:`~neurofptt.quant.onchip.LearningState.start` has it (FPTT's
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
                    m.d.sync += [p.eq(0) for regs in self.prev.values() for p in regs]
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
    def _traces(self) -> None:
        """The cycle after ``UPDATE_LAST``: all traces leak and add this step's spikes."""
        m, cfg, lc = self.m, self.cfg, self.lc
        one = 1 << lc.trace_frac_bits
        with m.If(self.trace_go):
            m.d.sync += self.trace_go.eq(0)
            groups = (
                ("xbar", self.xbar, self.x_now, cfg.leak_shift),
                ("zbar", self.zbar, self.z_prev, cfg.leak_shift),
                ("obar", self.obar, self.z_now, cfg.out_leak_shift),
            )
            for name, traces, spikes, shift in groups:
                for i, trace in enumerate(traces):
                    new = (trace - (trace >> shift)) + Mux(spikes[i], one, 0)
                    m.d.sync += trace.eq(_usat(m, new, lc.trace_bits, f"{name}_new_{i}"))
            m.d.sync += [self.x_now.eq(0), self.z_prev.eq(self.z_now)]

    def _stage1(self) -> None:
        """Stage 1 of the sweep: form the new weight (and ``W_bar``) word and write it back."""
        m, cfg, lc, P = self.m, self.cfg, self.lc, self.P
        draws = []
        for lane in range(P):
            r0 = Signal(LFSR_BITS, name=f"draw0_{lane}")
            m.d.comb += r0.eq(_leap(self.lfsr[lane]))
            last = r0
            if self.fptt:
                last = Signal(LFSR_BITS, name=f"draw1_{lane}")
                m.d.comb += last.eq(_leap(r0))
            draws.append((r0, last))
        with m.If(self.l1_valid):
            m.d.sync += [s.eq(last) for s, (_r0, last) in zip(self.lfsr, draws, strict=True)]

        pre_of = {"out": "obar", "in": "xbar", "rec": "zbar"}
        post_of = {"out": "err", "in": "delta", "rec": "delta"}
        eb = cfg.membrane_bits + 1
        for name, code in MATRIX_CODES.items():
            _rd, wr = self.weights[name]
            selected = self.l1_valid & (self.l1_mat == code)
            post_regs = getattr(self, post_of[name])
            post_shape = signed(eb) if name == "out" else signed(lc.signal_bits)
            pre = Array(getattr(self, pre_of[name]))[self.l1_pre]
            s = lc.lr_shift(name)
            m.d.comb += [wr.addr.eq(self.l1_addr), wr.en.eq(selected)]
            if self.fptt:
                _wbar_rd, wbar_wr, wbar_word = self.wbar[name]
                m.d.comb += [wbar_wr.addr.eq(self.l1_addr), wbar_wr.en.eq(selected)]
                prev_pre = Array(self.prev[pre_of[name]])[self.l1_pre]
            for lane in range(P):
                tag = f"{name}_{lane}"
                w = self.word[name][lane]
                post = _row_select(post_regs, lane, P, self.l1_row, post_shape)
                g = Signal(signed(post_shape.width + lc.trace_bits + 1), name=f"grad_{tag}")
                m.d.comb += g.eq(post * pre)
                r0, r1 = draws[lane]
                if not self.fptt:
                    step = _sround(-g, s, r0)
                    w_new = _saturate(m, w + step, cfg.weight_bits, f"w_new_{tag}")
                    m.d.comb += wr.data.word_select(lane, cfg.weight_bits).eq(w_new)
                    continue
                prev_post = _row_select(self.prev[post_of[name]], lane, P, self.l1_row, post_shape)
                gp = Signal.like(g, name=f"grad_prev_{tag}")
                m.d.comb += gp.eq(prev_post * prev_pre)
                stored = wbar_word[lane]
                mean = stored if lc.wbar_store == "absolute" else w - stored
                pull = (w - mean) << (s + 1 - lc.alpha_shift)
                step = _sround(-2 * g + gp - pull, s + 1, r0)
                w_new = _saturate(m, w + step, cfg.weight_bits, f"w_new_{tag}")
                mean_new = _sround(((mean + w_new) << s) - (g << lc.alpha_shift), s + 1, r1)
                keep = mean_new if lc.wbar_store == "absolute" else w_new - mean_new
                kept = _saturate(m, keep, lc.wbar_bits, f"wbar_new_{tag}")
                m.d.comb += [
                    wr.data.word_select(lane, cfg.weight_bits).eq(w_new),
                    wbar_wr.data.word_select(lane, lc.wbar_bits).eq(kept),
                ]
        self._learning_signal()

    def _learning_signal(self) -> None:
        """During the ``W_out`` sweep: ``L_j = sum_k B_jk e_k`` over neuron ``j``'s words, then
        ``delta_j = sat((sat(L_j >> signal_shift) psi_j) >> psi_bits)`` after its last word."""
        m, cfg, lc, P = self.m, self.cfg, self.lc, self.P
        eb = cfg.membrane_bits + 1
        b_word = self.word["out"] if self.feedback is None else self.feedback[1]
        partial = Signal.like(self.signal_acc, name="signal_partial")
        m.d.comb += partial.eq(
            sum(
                b_word[lane] * _row_select(self.err, lane, P, self.l1_row, signed(eb))
                for lane in range(P)
            )
        )
        total = Signal.like(self.signal_acc, name="signal_total")
        m.d.comb += total.eq(self.signal_acc + partial)
        signal = _saturate(m, total >> lc.signal_shift, lc.signal_bits, "signal")
        psi = Array(self.psi)[self.l1_pre]
        delta = _saturate(m, (signal * psi) >> lc.psi_bits, lc.signal_bits, "delta_new")
        with m.If(self.l1_valid & (self.l1_mat == MATRIX_CODES["out"])):
            with m.If(self.l1_row == self.Ro - 1):
                m.d.sync += self.signal_acc.eq(0)
                _write_at(m, self.delta, self.l1_pre, delta)
            with m.Else():
                m.d.sync += self.signal_acc.eq(total)
