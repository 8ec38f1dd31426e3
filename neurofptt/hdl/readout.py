"""The readouts: their ``readout`` memory, the ``OUT`` accumulation and the ``o_readout``
stream."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import leak, saturate
from neurofptt.hdl.layouts import (
    RowOp,
    readout_neuron_layout,
    readout_tap_layout,
    row_op_layout,
    row_shape,
    tap,
    weight_word_layout,
)
from neurofptt.hdl.ports import index_bits, readout_layout
from neurofptt.hdl.rows import next_row_lane
from neurofptt.quant.config import HardwareConfig, lane_rows

__all__ = ["ReadoutRows", "readout_control"]


def readout_control() -> wiring.Signature:
    """Control of the readout stream, as the sequencer sees it: ``start`` (the step's spikes
    are final), ``run`` while the readouts may be sent, ``done`` in the cycle the last one
    has been sent."""
    return wiring.Signature({"start": Out(1), "run": Out(1), "done": In(1)})


class ReadoutRows(wiring.Component):
    """The ``readout`` memory (``Ro`` rows of ``lanes`` readouts ``{acc, o}``), what the row
    pipeline does to it, and the readout stream.

    ``read`` and ``op`` are stage 0 and stage 1 of the row pipeline, as for
    :class:`~neurofptt.hdl.neuron.NeuronRows`: ``ACC_OUT`` adds the ``w_out`` word read with
    the row, shifted, to the partial sums, ``CLEAR`` zeroes the row (rows ``>= Ro`` do not
    exist here).  While ``control.run``, the readouts leave in index order: readout ``k`` is
    read, sent on ``o_readout`` as ``o_k = sat(leak(o_k) + acc_k)`` (held until ``ready``)
    and, once sent, written back with a zero partial sum; ``sent`` shows each one as it goes.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "read": In(row_shape(cfg)),
                "op": In(tap(row_op_layout(cfg))),
                "w_out": In(weight_word_layout(cfg)),
                "control": In(readout_control()),
                "o_readout": Out(stream.Signature(readout_layout(cfg))),
                "sent": Out(tap(readout_tap_layout(cfg))),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.cfg
        lanes, n_out = cfg.lanes, cfg.n_out
        out_rows = lane_rows(n_out, lanes)
        m.submodules.readout = readout = Memory(
            shape=data.ArrayLayout(readout_neuron_layout(cfg), lanes), depth=out_rows, init=[]
        )
        wr = readout.write_port()
        rd = readout.read_port(transparent_for=(wr,))
        op = self.op
        m.d.comb += [rd.addr.eq(self.read), wr.addr.eq(op.p.row)]
        with m.If(op.valid), m.Switch(op.p.op):
            with m.Case(RowOp.ACC_OUT):
                m.d.comb += wr.en.eq(1)
                for lane in range(lanes):
                    old, new = rd.data[lane], wr.data[lane]
                    m.d.comb += [
                        new.acc.eq(old.acc + (self.w_out[lane] << cfg.w_out_shift)),
                        new.o.eq(old.o),
                    ]
            with m.Case(RowOp.CLEAR):  # the data stays 0
                m.d.comb += wr.en.eq(op.p.row < out_rows)

        # "read" stage (k, row, lane) and "offer" stage (valid, kk, kk_row, kk_lane)
        k = Signal(range(n_out + 1), name="ro_k")
        row = Signal(range(out_rows + 1), name="ro_row")
        lane = Signal(range(max(lanes, 2)), name="ro_lane")
        kk = Signal(range(max(n_out, 2)), name="ro_kk")
        kk_row = Signal(index_bits(out_rows), name="ro_kk_row")
        kk_lane = Signal(range(max(lanes, 2)), name="ro_kk_lane")
        valid = Signal(name="ro_valid")
        advance = Signal()
        out, control = self.o_readout, self.control
        sel = rd.data[kk_lane] if lanes > 1 else rd.data[0]
        o_new = saturate(m, leak(sel.o, cfg.out_leak_shift) + sel.acc, cfg.membrane_bits, "o_new")
        m.d.comb += [
            advance.eq(~valid | out.ready),
            out.valid.eq(valid),
            out.p.index.eq(kk),
            out.p.value.eq(o_new),
            out.p.last.eq(kk == n_out - 1),
            self.sent.p.index.eq(kk),
            self.sent.p.row.eq(kk_row),
            self.sent.p.lane.eq(kk_lane),
            self.sent.p.value.eq(o_new),
        ]
        with m.If(control.start):
            m.d.sync += [k.eq(0), row.eq(0), lane.eq(0), valid.eq(0)]
        with m.If(control.run):
            m.d.comb += [rd.addr.eq(row), rd.en.eq(advance)]
            with m.If(valid & out.ready):  # write back what was just sent
                m.d.comb += [wr.en.eq(1), wr.addr.eq(kk_row), self.sent.valid.eq(1)]
                for i in range(lanes):
                    mine = (kk_lane == i) if lanes > 1 else True
                    m.d.comb += [
                        wr.data[i].acc.eq(Mux(mine, 0, rd.data[i].acc)),
                        wr.data[i].o.eq(Mux(mine, o_new, rd.data[i].o)),
                    ]
            with m.If(advance):
                with m.If(k != n_out):
                    m.d.sync += [
                        valid.eq(1),
                        kk.eq(k),
                        kk_row.eq(row),
                        kk_lane.eq(lane),
                        k.eq(k + 1),
                    ]
                    next_row_lane(m, row, lane, lanes)
                with m.Else():
                    m.d.sync += valid.eq(0)
                    m.d.comb += control.done.eq(1)
        return m
