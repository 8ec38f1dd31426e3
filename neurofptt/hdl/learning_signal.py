"""The learning signal and ``delta`` of every recurrent neuron, formed during the ``W_out``
sweep of an update, bit for bit as :func:`~neurofptt.onchip.factors.update_factors` forms
them::

    L_j     = sat_signal( (sum_k B_jk e_k) >> signal_shift )
    delta_j = sat_signal( (L_j psi_j) >> psi_bits )

The ``W_out`` sweep visits the ``Ro`` words of every presynaptic neuron ``j`` in turn, and the
feedback ``B`` is stored in the same order (``B = W_out^T`` is the ``W_out`` word itself), so
``L_j`` is a running sum over ``j``'s words: no extra pass and no extra read.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import saturate, shift_right
from neurofptt.hdl.layouts import tap, weight_word_layout
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config

__all__ = ["LearningSignal", "signal_word_layout", "trace_slot_layout"]


def trace_slot_layout(cfg: HardwareConfig) -> data.StructLayout:
    """Where neuron ``j``'s per-neuron value sits in a table of ``R`` words of ``lanes`` slots:
    word ``j // lanes``, slot ``j % lanes``."""
    rows = lane_rows(cfg.n_rec, cfg.lanes)
    k = lane_rows(cfg.n_in, rows)
    return data.StructLayout({"word": range(rows), "slot": range(max(cfg.lanes, k, 2))})


def signal_word_layout(cfg: HardwareConfig) -> data.StructLayout:
    """One word of the ``W_out`` sweep, as the learning signal needs it: the feedback word
    ``b`` (``B_jk`` for the word's ``lanes`` readouts ``k``), the error row ``e`` (their
    ``e_k``), neuron ``j``'s ``psi_j``, where ``delta_j`` goes (``at``), and ``last`` on
    ``j``'s last word."""
    lc = learning_config(cfg)
    return data.StructLayout(
        {
            "b": weight_word_layout(cfg),
            "e": data.ArrayLayout(signed(cfg.membrane_bits + 1), cfg.lanes),
            "psi": unsigned(lc.psi_bits + 1),
            "at": trace_slot_layout(cfg),
            "last": 1,
        }
    )


class LearningSignal(wiring.Component):
    """``L_j`` and ``delta_j`` over the ``W_out`` sweep, in its stages 1 to 3.

    ``word`` is stage 1 (the reads are valid; ``valid`` only for ``W_out`` words): the
    ``lanes`` products ``B_jk e_k`` are registered; stage 2 adds them to the running sum, and
    after ``j``'s last word registers ``sat(L_j >> signal_shift)`` with ``psi_j``; stage 3
    gives ``delta_j`` on ``delta``, with the word and slot of ``j`` in the ``delta`` table.
    ``restart`` (before a sweep) zeroes the running sum.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        delta = data.StructLayout({"at": trace_slot_layout(cfg), "value": signed(lc.signal_bits)})
        super().__init__(
            {"word": In(tap(signal_word_layout(cfg))), "restart": In(1), "delta": Out(tap(delta))}
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, lc = self.cfg, learning_config(self.cfg)
        lanes, eb = cfg.lanes, cfg.membrane_bits + 1
        word = self.word.p
        products = [
            Signal(signed(cfg.weight_bits + eb), name=f"signal_product_{lane}")
            for lane in range(lanes)
        ]
        m.d.sync += [p.eq(word.b[lane] * word.e[lane]) for lane, p in enumerate(products)]
        valid2 = Signal()
        last2 = Signal()  # stage 2 has neuron j's last W_out word
        at2 = Signal(trace_slot_layout(cfg))
        psi2 = Signal(unsigned(lc.psi_bits + 1), name="psi_s2")
        m.d.sync += [
            valid2.eq(self.word.valid),
            last2.eq(word.last),
            at2.eq(word.at),
            psi2.eq(word.psi),
        ]
        acc = Signal(signed(cfg.weight_bits + eb + max(1, cfg.n_out.bit_length()) + 1))
        total = Signal.like(acc, name="signal_total")
        m.d.comb += total.eq(acc + sum(products))
        nearest = lc.rounding == "nearest"
        signal = saturate(m, shift_right(total, lc.signal_shift, nearest), lc.signal_bits, "signal")
        valid3 = Signal()
        at3 = Signal(trace_slot_layout(cfg))
        signal3 = Signal.like(signal, name="signal_s3")
        psi3 = Signal.like(psi2, name="psi_s3")
        m.d.sync += valid3.eq(0)
        with m.If(valid2):
            with m.If(last2):
                m.d.sync += [
                    acc.eq(0),
                    valid3.eq(1),
                    at3.eq(at2),
                    signal3.eq(signal),
                    psi3.eq(psi2),
                ]
            with m.Else():
                m.d.sync += acc.eq(total)
        with m.If(self.restart):
            m.d.sync += acc.eq(0)
        delta = saturate(
            m, shift_right(signal3 * psi3, lc.psi_bits, nearest), lc.signal_bits, "delta_new"
        )
        m.d.comb += [self.delta.valid.eq(valid3), self.delta.p.at.eq(at3)]
        m.d.comb += self.delta.p.value.eq(delta)
        return m
