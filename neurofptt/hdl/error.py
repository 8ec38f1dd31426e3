"""The readout error of a learning core: the ``error`` table and the ``e_k`` of an update
(step 2 of :mod:`neurofptt.onchip`), bit for bit as
:func:`~neurofptt.onchip.factors.update_factors` forms them."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import onehot, shift_right
from neurofptt.hdl.layouts import readout_tap_layout, tap
from neurofptt.hdl.softmax_error import SoftmaxError, error_table_signature, table_write_layout
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config

__all__ = ["ReadoutError"]


class ReadoutError(wiring.Component):
    """The ``error`` table (``Ro`` rows of ``lanes`` values) and what writes it.

    Each readout sent (``readout``) becomes its error off the readout's path: on the next
    cycle ``d_k = o_k - target [k == label]`` is registered (for the hinge error ``d_k`` only
    where its sign matches ``k == label``, else 0), on the cycle after it is shifted by the
    step's ``b_t`` (``shift``, floored or rounded to nearest), registered and written as
    ``e_k``.  With the softmax error the value itself is written, and
    :class:`~neurofptt.hdl.softmax_error.SoftmaxError` replaces it by ``e_k`` (shifted and
    written the same way) between ``start`` and ``done``; without it there are no passes and
    ``start`` / ``done`` are unused.

    ``table`` is a read port for the update sweep (one row per cycle, addressing row 0 while it
    does not read); it is transparent: a read in the cycle its row is written sees the new
    value.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        self.softmax = lc.error == "softmax"
        super().__init__(
            {
                "readout": In(tap(readout_tap_layout(cfg))),
                "label": In(range(max(cfg.n_out, 2))),
                "shift": In(range(cfg.membrane_bits + 1)),
                "start": In(1),
                "done": Out(1),
                "table": Out(error_table_signature(cfg)),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, lc = self.cfg, learning_config(self.cfg)
        lanes, eb = cfg.lanes, cfg.membrane_bits + 1
        out_rows = lane_rows(cfg.n_out, lanes)
        m.submodules.error = table = Memory(
            shape=data.ArrayLayout(signed(eb), lanes), depth=out_rows, init=[]
        )
        wr = table.write_port(granularity=1)
        rd = table.read_port(transparent_for=(wr,))
        m.d.comb += self.table.data.eq(rd.data)

        # the readout whose error is formed and written this cycle (off the readout's path)
        go = Signal(name="err_go")
        row = Signal(range(out_rows), name="err_row")
        lane = Signal(range(max(lanes, 2)), name="err_lane")
        value = Signal(signed(eb), name="err_d")
        first = Signal(name="err_first")  # value is readout 0's
        sent = self.readout
        is_label = sent.p.index == self.label
        error = Signal(signed(eb), name="error")
        if self.softmax:
            m.d.comb += error.eq(sent.p.value)
        else:
            m.d.comb += error.eq(sent.p.value - Mux(is_label, lc.target, 0))
        if lc.error == "hinge":
            hinged = Signal.like(error, name="error_hinge")
            m.d.comb += hinged.eq(Mux((error < 0) == is_label, error, 0))
            error = hinged
        m.d.sync += go.eq(sent.valid)
        with m.If(sent.valid):
            m.d.sync += [
                row.eq(sent.p.row),
                lane.eq(sent.p.lane),
                value.eq(error),
                first.eq(sent.p.index == 0),
            ]

        # what is written, a cycle later: the shift by b_t is a barrel shifter and (rounding
        # to nearest) an incrementer, too much to share a cycle with the value's subtraction.
        # b_t is latched by the STEP, cycles before the step's first readout, and copied into
        # a register here, by the shifters: their inputs from the learning unit's register,
        # across the core, were the 256-256-16 FPTT core's longest path at one placement.
        nearest = lc.rounding == "nearest"
        shift = Signal.like(self.shift, name="err_shift")
        m.d.sync += shift.eq(self.shift)
        store = Signal(table_write_layout(cfg), name="err_store")
        stored = Signal(name="err_store_valid")
        m.d.sync += stored.eq(0)
        with m.If(go):
            shifted = value if self.softmax else shift_right(value, shift, nearest)
            m.d.sync += [stored.eq(1), store.row.eq(row), store.lane.eq(lane)]
            m.d.sync += store.value.eq(shifted)
        addr = self.table.addr
        if self.softmax:
            m.submodules.softmax = softmax = SoftmaxError(cfg)
            addr = addr | softmax.table.addr  # they never read at once: each idles at row 0
            m.d.comb += [
                softmax.label.eq(self.label),
                softmax.start.eq(self.start),
                self.done.eq(softmax.done),
                softmax.value.valid.eq(go),
                softmax.value.p.first.eq(first),
                softmax.value.p.value.eq(value),
                softmax.table.data.eq(rd.data),
            ]
            with m.If(softmax.error.valid):
                e = softmax.error.p
                m.d.sync += [stored.eq(1), store.row.eq(e.row), store.lane.eq(e.lane)]
                m.d.sync += store.value.eq(shift_right(e.value, shift, nearest))
        m.d.comb += rd.addr.eq(addr)
        with m.If(stored):
            m.d.comb += [wr.addr.eq(store.row), wr.en.eq(onehot(store.lane, lanes))]
            m.d.comb += [wr.data[i].eq(store.value) for i in range(lanes)]
        return m
