"""The softmax error of a learning core (``error = "softmax"``), bit for bit as
:func:`neurofptt.onchip.softmax_error`.

The readout values of a step reach the ``error`` table one at a time, as they leave on
``o_readout``; the component keeps their maximum on the way (``value``).  Before an update
sweep it then runs over the table twice (``start`` to ``done``)::

    SUM      n_out + 3 cycles      read o_k, form q_k ~ 2**(-(max - o_k) / 2**shift) in two
                                   registered steps (the difference, then the power of two),
                                   add it to the sum: one readout per cycle
    DIVIDE   n_out * (Q + 5) + 1   per k: read o_k, form q_k again (two cycles) and
                                   q_k * target, divide it by the sum bit-serially
                                   (Q = max(1, target.bit_length()) quotient bits), register
                                   e_k = quotient - target [k == label]; done a cycle after
                                   the last

and each ``e_k`` leaves on ``error`` on the cycle after it is registered (the last one with
``done``), to be shifted by ``b_t`` and written over ``o_k``, so that the ``error``
table then holds the ``e_k`` the sweep reads (:func:`~neurofptt.hdl.cost.softmax_cycles`).  One
divider serves every readout, one quotient bit per cycle, with no multiplier beyond
``q_k * target`` (shifts and adds of a constant): the passes take ``O(n_out * Q)`` cycles, the
sweep that follows one per weight word.  Each cycle holds one carry chain, or the power of
two's subtraction and shifter.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import times
from neurofptt.hdl.layouts import addr_width, tap
from neurofptt.hdl.rows import next_row_lane
from neurofptt.onchip.factors import SOFTMAX_BITS, quotient_bits
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config

__all__ = ["SoftmaxError", "error_table_signature", "table_write_layout"]


def error_table_signature(cfg: HardwareConfig) -> ReadPort.Signature:
    """A read port of the ``error`` table: ``Ro`` rows of ``lanes`` values of
    ``membrane_bits + 1`` bits (readout ``k`` is lane ``k % lanes`` of row ``k // lanes``)."""
    return ReadPort.Signature(
        addr_width=addr_width(lane_rows(cfg.n_out, cfg.lanes)),
        shape=data.ArrayLayout(signed(cfg.membrane_bits + 1), cfg.lanes),
    )


def table_write_layout(cfg: HardwareConfig) -> data.StructLayout:
    """One value for the ``error`` table: its row, its lane and the value."""
    return data.StructLayout(
        {
            "row": range(max(2, lane_rows(cfg.n_out, cfg.lanes))),
            "lane": range(max(2, cfg.lanes)),
            "value": signed(cfg.membrane_bits + 1),
        }
    )


class SoftmaxError(wiring.Component):
    """The two passes over the ``error`` table (see the module docstring).

    Ports: ``value`` (a readout entering the table, ``first`` for readout 0), ``label`` (the
    step's label), ``start`` / ``done`` (the passes), ``table`` (a read port of the table,
    addressed only during the passes, word 0 otherwise) and ``error`` (each ``e_k`` with its
    row and lane, before the shift ``b_t``).
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        self.t, self.target = lc.softmax_shift, lc.target
        self.Q = quotient_bits(lc.target)
        eb = cfg.membrane_bits + 1
        super().__init__(
            {
                "value": In(tap(data.StructLayout({"first": 1, "value": signed(eb)}))),
                "label": In(range(max(cfg.n_out, 2))),
                "start": In(1),
                "done": Out(1),
                "table": In(error_table_signature(cfg)),
                "error": Out(tap(table_write_layout(cfg))),
            }
        )

    def _q(self, m: Module, maximum: Signal, lane: Signal) -> Signal:
        """``q`` of the readout whose word was addressed two cycles before, in ``lane`` (a
        register of the cycle after the address): its difference from the maximum is
        registered, then ``q``."""
        t, B = self.t, SOFTMAX_BITS
        word = self.table.data
        o = word[lane] if self.cfg.lanes > 1 else word[0]
        d = Signal(unsigned(self.cfg.membrane_bits + 1), name="softmax_d")
        m.d.sync += d.eq(maximum - o)
        whole = d >> t
        mantissa = (1 << B) - ((d[:t] << B) >> (t + 1)) if t else Const(1 << B)
        q = Signal(unsigned(B + 1), name="softmax_q")
        m.d.sync += q.eq(Mux(whole >= B, 0, mantissa >> whole[: (B - 1).bit_length()]))
        return q

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, n_out, lanes, Q = self.cfg, self.cfg.n_out, self.cfg.lanes, self.Q
        maximum = Signal(signed(cfg.membrane_bits + 1), name="softmax_max")
        total = Signal(unsigned(SOFTMAX_BITS + 1 + max(1, (n_out - 1).bit_length())), name="sum")
        # the readout addressed, as index, table row and lane
        k = Signal(range(n_out + 1), name="softmax_k")
        row = Signal(range(max(2, lane_rows(n_out, lanes))), name="softmax_row")
        lane = Signal(range(max(2, lanes)), name="softmax_lane")
        valid_lane = Signal.like(lane, name="softmax_valid_lane")
        # SUM: a word was addressed one, two, three cycles ago
        read = [Signal(name=f"softmax_read_{i}") for i in range(3)]
        num = Signal(unsigned(SOFTMAX_BITS + 1 + Q), name="softmax_num")
        quot = Signal(unsigned(Q), name="softmax_quot")
        # the divisor aligned with the quotient bit being formed: sum << bit
        divisor = Signal(unsigned(len(total) + Q - 1), name="softmax_divisor")
        bit = Signal(range(max(2, Q)), name="softmax_bit")
        error = Signal(signed(cfg.membrane_bits + 1), name="softmax_e")

        value = self.value
        with m.If(value.valid):
            m.d.sync += maximum.eq(
                Mux(value.p.first | (value.p.value > maximum), value.p.value, maximum)
            )

        def advance() -> None:  # address the next readout: k, its row and lane together
            m.d.sync += k.eq(k + 1)
            next_row_lane(m, row, lane, lanes)

        q = self._q(m, maximum, valid_lane)
        restart = [k.eq(0), row.eq(0), lane.eq(0)]
        written = Signal(name="softmax_written")  # e_k was registered on the last cycle
        done = Signal(name="softmax_done")  # and it was the last one
        m.d.sync += [written.eq(0), done.eq(0)]
        m.d.comb += [
            self.error.valid.eq(written),
            self.error.p.value.eq(error),
            self.done.eq(done),
        ]
        with m.FSM(name="softmax"):
            with m.State("IDLE"), m.If(self.start):
                m.d.sync += [*restart, total.eq(0), *(r.eq(0) for r in read)]
                m.next = "SUM"
            with m.State("SUM"):
                m.d.sync += [read[1].eq(read[0]), read[2].eq(read[1]), read[0].eq(0)]
                with m.If(read[2]):
                    m.d.sync += total.eq(total + q)
                with m.If(k != n_out):
                    m.d.comb += self.table.addr.eq(row)
                    m.d.sync += [valid_lane.eq(lane), read[0].eq(1)]
                    advance()
                with m.Elif(~read[0] & ~read[1]):  # the last q is added on this cycle
                    m.d.sync += restart
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.table.addr.eq(row)
                m.d.sync += valid_lane.eq(lane)
                m.next = "DIFF"
            with m.State("DIFF"):  # the difference from the maximum is registered
                m.next = "POW"
            with m.State("POW"):  # q_k is registered
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += [
                    num.eq(times(q, self.target)),
                    quot.eq(0),
                    bit.eq(Q - 1),
                    divisor.eq(total << (Q - 1)),
                ]
                m.next = "DIVIDE"
            with m.State("DIVIDE"):  # restoring division, one quotient bit per cycle, MSB first
                trial = Signal(signed(len(divisor) + 2), name="softmax_trial")
                m.d.comb += trial.eq(num - divisor)
                fits = trial >= 0
                m.d.sync += [
                    quot.eq(Cat(fits, quot[:-1]) if Q > 1 else fits),
                    divisor.eq(divisor >> 1),
                ]
                with m.If(fits):
                    m.d.sync += num.eq(trial)
                with m.If(bit == 0):
                    m.next = "WRITE"
                with m.Else():
                    m.d.sync += bit.eq(bit - 1)
            with m.State("WRITE"):
                is_label = k == self.label
                m.d.sync += [
                    written.eq(1),
                    error.eq(quot - Mux(is_label, self.target, 0)),
                    self.error.p.row.eq(row),
                    self.error.p.lane.eq(lane),
                ]
                with m.If(k == n_out - 1):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    advance()
                    m.next = "READ"
        return m
