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

from neurofptt.hdl.arith import registered_product, saturate, shift_right, tree_stages, tree_sum
from neurofptt.hdl.layouts import tap, weight_word_layout
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config

__all__ = ["LearningSignal", "signal_latency", "signal_word_layout", "trace_slot_layout"]


def signal_latency(cfg: HardwareConfig) -> int:
    """Cycles from a ``W_out`` word entering :class:`LearningSignal` to the ``delta_j`` it
    completes: two registers for the products (as they leave the multipliers, and in front of
    the adder tree), one each for the adder tree's levels (one per two), the running sum,
    ``L_j``, ``L_j psi_j`` and ``delta_j``, which leaves from the last.

    ``delta_j`` has a register of its own so that its rounding carry chain and saturation are
    not in one cycle with the route into the ``delta`` table's write port (the demo's FPTT
    core's longest path before)."""
    return 6 + tree_stages(cfg.lanes)


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
    """``L_j`` and ``delta_j`` over the ``W_out`` sweep, a pipeline of one multiplier or at
    most two adders per cycle.

    ``word`` comes from registers (``valid`` only for ``W_out`` words).  Its ``lanes`` products
    ``B_jk e_k`` are registered twice (:func:`~neurofptt.hdl.arith.registered_product`); an
    adder tree sums them (:func:`tree_sum`, a register every two levels); the running sum takes
    the word's sum, and after ``j``'s last word ``sat(L_j >> signal_shift)`` is registered with
    ``psi_j``, then ``L_j psi_j``, then ``delta_j = sat((L_j psi_j) >> psi_bits)``, which leaves
    on ``delta`` :attr:`latency` cycles after the word, with the word and slot of ``j`` in the
    ``delta`` table.  ``restart`` (before a sweep) zeroes the running sum.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        delta = data.StructLayout({"at": trace_slot_layout(cfg), "value": signed(lc.signal_bits)})
        #: cycles from a word to its delta
        self.latency = signal_latency(cfg)
        super().__init__(
            {"word": In(tap(signal_word_layout(cfg))), "restart": In(1), "delta": Out(tap(delta))}
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, lc = self.cfg, learning_config(self.cfg)
        lanes, eb = cfg.lanes, cfg.membrane_bits + 1
        word = self.word.p
        products = [  # data beside the carried valid flag: no reset, off the reset's net
            registered_product(m, word.b[lane], word.e[lane], f"signal_product_{lane}")
            for lane in range(lanes)
        ]
        word_sum, stages = tree_sum(m, products, "signal_tree")
        # what travels with the word to the running sum: valid, last, where and psi
        carried = data.StructLayout(
            {"valid": 1, "last": 1, "at": trace_slot_layout(cfg), "psi": unsigned(lc.psi_bits + 1)}
        )
        along = Signal(carried, name="signal_word")
        m.d.comb += [
            along.valid.eq(self.word.valid),
            along.last.eq(word.last),
            along.at.eq(word.at),
            along.psi.eq(word.psi),
        ]
        for stage in range(2 + stages):
            later = Signal(carried, name=f"signal_word_{stage + 1}")
            m.d.sync += later.eq(along)
            along = later
        acc = Signal(signed(cfg.weight_bits + eb + max(1, cfg.n_out.bit_length()) + 1))
        total = Signal.like(acc, name="signal_total")
        total_valid = Signal()
        at_total = Signal(trace_slot_layout(cfg))
        psi_total = Signal.like(along.psi, name="psi_total")
        m.d.sync += total_valid.eq(0)
        with m.If(along.valid):
            with m.If(along.last):
                m.d.sync += [
                    acc.eq(0),
                    total.eq(acc + word_sum),
                    total_valid.eq(1),
                    at_total.eq(along.at),
                    psi_total.eq(along.psi),
                ]
            with m.Else():
                m.d.sync += acc.eq(acc + word_sum)
        with m.If(self.restart):
            m.d.sync += acc.eq(0)
        nearest = lc.rounding == "nearest"
        signal = saturate(m, shift_right(total, lc.signal_shift, nearest), lc.signal_bits, "signal")
        signal_valid, product_valid = Signal(), Signal()
        at_signal, at_product = Signal(trace_slot_layout(cfg)), Signal(trace_slot_layout(cfg))
        signal3 = Signal.like(signal, name="signal_s3")
        psi3 = Signal.like(psi_total, name="psi_s3")
        # a data register without reset: synth moves it into the multiplier's output register
        product = Signal(
            signed(lc.signal_bits + lc.psi_bits + 2), name="signal_psi", reset_less=True
        )
        m.d.sync += [
            signal_valid.eq(total_valid),
            at_signal.eq(at_total),
            signal3.eq(signal),
            psi3.eq(psi_total),
            product_valid.eq(signal_valid),
            at_product.eq(at_signal),
            product.eq(signal3 * psi3),
        ]
        delta = saturate(m, shift_right(product, lc.psi_bits, nearest), lc.signal_bits, "delta_new")
        m.d.sync += [
            self.delta.valid.eq(product_valid),
            self.delta.p.at.eq(at_product),
            self.delta.p.value.eq(delta),
        ]
        return m
