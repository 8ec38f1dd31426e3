"""The softmax error of a learning core (``error = "softmax"``), bit for bit as
:func:`neurofptt.onchip.softmax_error`.

The readout values of a step reach the ``error`` table one at a time, as they leave on
``o_readout``; the unit keeps their maximum on the way.  Before an update sweep it then runs
over the table twice (``start`` to ``done``)::

    SUM      n_out + 1 cycles      read o_k, add q_k ~ 2**(-(max - o_k) / 2**shift) to the sum
    DIVIDE   n_out * (Q + 3)       per k: read o_k, form q_k * target, divide it by the sum
                                   bit-serially (Q = max(1, target.bit_length()) quotient
                                   bits), write e_k = quotient - target [k == label],
                                   shifted by b_t

after which the ``error`` table holds the ``e_k`` the sweep reads
(:func:`~neurofptt.hdl.cost.softmax_cycles`).  One divider serves every readout, one
quotient bit per cycle, with no multiplier beyond ``q_k * target``: readouts are few and the
sweep over every weight word follows, so the passes are a small part of an update (141 of
5,648 cycles on the 32-128-10 digits core with 4 lanes, 29 of 488 on a 12-24-2 cue core).
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned

from neurofptt.hdl.rows import next_row_lane
from neurofptt.onchip.factors import SOFTMAX_BITS, quotient_bits
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config

__all__ = ["SoftmaxError"]


class SoftmaxError:
    """The two passes over the ``error`` table ``table`` (a per-lane table of ``Ro`` rows).

    ``store(row, lane, e)`` shifts ``e`` by the step's ``b_t`` and writes it into the table,
    as for the other errors; ``label`` is the step's label register.  The core pulses
    ``start`` as it leaves the readout of a step that updates and waits for ``done``.
    """

    def __init__(
        self,
        m: Module,
        cfg: HardwareConfig,
        table,
        label: Value,
        store: Callable[[Value, Value, Value], None],
    ) -> None:
        self.m, self.cfg, self.table, self.label, self.store = m, cfg, table, label, store
        lc = learning_config(cfg)
        self.t, self.target = lc.softmax_shift, lc.target
        self.P, n_out = cfg.lanes, cfg.n_out
        self.Q = quotient_bits(lc.target)
        self.max = Signal(signed(cfg.membrane_bits + 1), name="softmax_max")
        self.sum = Signal(
            unsigned(SOFTMAX_BITS + 1 + max(1, (n_out - 1).bit_length())), name="softmax_sum"
        )
        # the readout addressed, as index, table row and lane; and the one whose word is valid
        self.k = Signal(range(n_out + 1), name="softmax_k")
        self.row = Signal(range(max(2, lane_rows(n_out, self.P))), name="softmax_row")
        self.lane = Signal(range(max(2, self.P)), name="softmax_lane")
        self.valid_lane = Signal.like(self.lane, name="softmax_valid_lane")
        self.read = Signal(name="softmax_read")  # SUM: a word was addressed on the last cycle
        self.num = Signal(unsigned(SOFTMAX_BITS + 1 + self.Q), name="softmax_num")
        self.quot = Signal(unsigned(self.Q), name="softmax_quot")
        # the divisor aligned with the quotient bit being formed: sum << bit
        self.divisor = Signal(unsigned(len(self.sum) + self.Q - 1), name="softmax_divisor")
        self.bit = Signal(range(max(2, self.Q)), name="softmax_bit")
        self.start = Signal(name="softmax_start")
        self.done = Signal(name="softmax_done")
        self._passes()

    def track(self, first: Value, value: Value) -> None:
        """Readout ``value`` enters the table this cycle (``first``: it is readout 0)."""
        self.m.d.sync += self.max.eq(Mux(first | (value > self.max), value, self.max))

    def _next(self) -> None:
        """Address the next readout: ``k``, its row and lane advance together."""
        self.m.d.sync += self.k.eq(self.k + 1)
        next_row_lane(self.m, self.row, self.lane, self.P)

    def _q(self) -> Signal:
        """``q`` of the readout whose word was addressed on the previous cycle."""
        m, t, B = self.m, self.t, SOFTMAX_BITS
        word = self.table.rd.data
        o = word[self.valid_lane] if self.P > 1 else word[0]
        d = Signal(unsigned(self.cfg.membrane_bits + 1), name="softmax_d")
        m.d.comb += d.eq(self.max - o)
        whole = d >> t
        mantissa = (1 << B) - ((d[:t] << B) >> (t + 1)) if t else Const(1 << B)
        q = Signal(unsigned(B + 1), name="softmax_q")
        m.d.comb += q.eq(Mux(whole >= B, 0, mantissa >> whole[: (B - 1).bit_length()]))
        return q

    def _passes(self) -> None:
        m, n_out = self.m, self.cfg.n_out
        q = self._q()
        restart = [self.k.eq(0), self.row.eq(0), self.lane.eq(0)]
        with m.FSM(name="softmax"):
            with m.State("IDLE"), m.If(self.start):
                m.d.sync += [*restart, self.sum.eq(0), self.read.eq(0)]
                m.next = "SUM"
            with m.State("SUM"):
                with m.If(self.read):
                    m.d.sync += self.sum.eq(self.sum + q)
                with m.If(self.k != n_out):
                    m.d.comb += self.table.rd.addr.eq(self.row)
                    m.d.sync += [self.valid_lane.eq(self.lane), self.read.eq(1)]
                    self._next()
                with m.Else():
                    m.d.sync += restart
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.table.rd.addr.eq(self.row)
                m.d.sync += self.valid_lane.eq(self.lane)
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += [
                    self.num.eq(q * self.target),
                    self.quot.eq(0),
                    self.bit.eq(self.Q - 1),
                    self.divisor.eq(self.sum << (self.Q - 1)),
                ]
                m.next = "DIVIDE"
            with m.State("DIVIDE"):  # restoring division, one quotient bit per cycle, MSB first
                trial = Signal(signed(len(self.divisor) + 2), name="softmax_trial")
                m.d.comb += trial.eq(self.num - self.divisor)
                fits = trial >= 0
                m.d.sync += [
                    self.quot.eq(Cat(fits, self.quot[:-1]) if self.Q > 1 else fits),
                    self.divisor.eq(self.divisor >> 1),
                ]
                with m.If(fits):
                    m.d.sync += self.num.eq(trial)
                with m.If(self.bit == 0):
                    m.next = "WRITE"
                with m.Else():
                    m.d.sync += self.bit.eq(self.bit - 1)
            with m.State("WRITE"):
                error = Signal(signed(self.cfg.membrane_bits + 1), name="softmax_e")
                m.d.comb += error.eq(self.quot - Mux(self.k == self.label, self.target, 0))
                self.store(self.row, self.lane, error)
                with m.If(self.k == n_out - 1):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    self._next()
                    m.next = "READ"
