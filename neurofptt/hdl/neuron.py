"""The recurrent neurons: their ``state`` memory and the LIF update of one row per cycle.

:class:`NeuronUpdate` is the membrane arithmetic of :func:`~neurofptt.quant.golden.golden_step`
for one row of ``lanes`` neurons; :class:`NeuronRows` owns the ``state`` memory and applies the
row pipeline's operations to it (accumulate, clear, update).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import leak, saturate
from neurofptt.hdl.layouts import (
    RowOp,
    neuron_layout,
    row_op_layout,
    row_shape,
    tap,
    update_row_layout,
    weight_word_layout,
)
from neurofptt.quant.config import HardwareConfig, lane_rows

__all__ = ["NeuronRows", "NeuronUpdate", "update_in_layout"]


def update_in_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A row entering ``UPDATE``: its index and its neurons as the ``state`` memory holds them."""
    return data.StructLayout(
        {"row": row_shape(cfg), "state": data.ArrayLayout(neuron_layout(cfg), cfg.lanes)}
    )


class NeuronUpdate(wiring.Component):
    """The LIF update of one row, in two pipeline stages.

    Stage 1 (``row_in``): per lane ``v = sat(leak(v) - z * threshold + acc)`` (``reset =
    "subtract"``) or ``sat((0 if z else leak(v)) + acc)`` (``"zero"``), registered.  Stage 2
    (``row_out``, the cycle after): ``z = v > threshold``; the padding lanes of the last row
    (neurons ``>= n_rec``) never spike.  One stage for all of it would be the core's longest
    path.  The operands are isolated: the datapath sees the row only while ``row_in.valid``, so
    it does not toggle while the pipeline accumulates.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "row_in": In(tap(update_in_layout(cfg))),
                "row_out": Out(tap(update_row_layout(cfg))),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.cfg
        lanes, mb = cfg.lanes, cfg.membrane_bits
        rows = lane_rows(cfg.n_rec, lanes)
        state = Signal(data.ArrayLayout(neuron_layout(cfg), lanes), name="update_in")
        with m.If(self.row_in.valid):
            m.d.comb += state.eq(self.row_in.p.state)
        valid = Signal()
        row = Signal(row_shape(cfg))
        v = [Signal(signed(mb), name=f"s2_v_{lane}") for lane in range(lanes)]
        z_prev = Signal(lanes)
        m.d.sync += [
            valid.eq(self.row_in.valid),
            row.eq(self.row_in.p.row),
            z_prev.eq(Cat(*(state[lane].z for lane in range(lanes)))),
        ]
        for lane in range(lanes):
            n = state[lane]
            leaked = leak(n.v, cfg.leak_shift)
            if cfg.reset == "subtract":
                base = leaked - Mux(n.z, cfg.threshold, 0)
            else:
                base = Mux(n.z, 0, leaked)
            m.d.sync += v[lane].eq(saturate(m, base + n.acc, mb, f"v_new_{lane}"))
        z = Signal(lanes)
        for lane in range(lanes):
            spikes = v[lane] > cfg.threshold
            if (rows - 1) * lanes + lane >= cfg.n_rec:  # a padding lane of the last row
                spikes = spikes & (row != rows - 1)
            m.d.comb += z[lane].eq(spikes)
        out = self.row_out
        m.d.comb += [
            out.valid.eq(valid),
            out.p.row.eq(row),
            out.p.z.eq(z),
            out.p.z_prev.eq(z_prev),
            *(out.p.v[lane].eq(v[lane]) for lane in range(lanes)),
        ]
        return m


class NeuronRows(wiring.Component):
    """The ``state`` memory (``R`` rows of ``lanes`` neurons ``{acc, v, z}``) and what the row
    pipeline does to it.

    ``read`` is the row stage 0 addresses; ``op`` is stage 1 (the row read is valid):
    ``ACC_IN`` / ``ACC_REC`` add the weight word ``w_in`` / ``w_rec`` read with it, shifted,
    to the partial sums; ``CLEAR`` zeroes the row (rows ``>= R`` of a longer ``CLEAR`` sweep do
    not exist here); ``UPDATE`` passes the row to :class:`NeuronUpdate`, whose stage 2 writes
    the new membranes and spikes back with a zero partial sum and leaves on ``update``.  The
    read port is transparent, so a row written in stage 1 or 2 can be read again at once.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "read": In(row_shape(cfg)),
                "op": In(tap(row_op_layout(cfg))),
                "w_in": In(weight_word_layout(cfg)),
                "w_rec": In(weight_word_layout(cfg)),
                "update": Out(tap(update_row_layout(cfg))),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.cfg
        lanes = cfg.lanes
        rows = lane_rows(cfg.n_rec, lanes)
        m.submodules.state = state = Memory(
            shape=data.ArrayLayout(neuron_layout(cfg), lanes), depth=rows, init=[]
        )
        wr = state.write_port()
        rd = state.read_port(transparent_for=(wr,))
        m.submodules.update = update = NeuronUpdate(cfg)
        op = self.op
        m.d.comb += [
            rd.addr.eq(self.read),
            update.row_in.valid.eq(op.valid & (op.p.op == RowOp.UPDATE)),
            update.row_in.p.row.eq(op.p.row),
            update.row_in.p.state.eq(rd.data),
        ]
        wiring.connect(m, update.row_out, wiring.flipped(self.update))

        m.d.comb += wr.addr.eq(op.p.row)
        with m.If(op.valid), m.Switch(op.p.op):
            with m.Case(RowOp.ACC_IN, RowOp.ACC_REC):
                m.d.comb += wr.en.eq(1)
                for lane in range(lanes):
                    old, new = rd.data[lane], wr.data[lane]
                    term = Mux(
                        op.p.op == RowOp.ACC_IN,
                        self.w_in[lane] << cfg.w_in_shift,
                        self.w_rec[lane] << cfg.w_rec_shift,
                    )
                    m.d.comb += [new.acc.eq(old.acc + term), new.v.eq(old.v), new.z.eq(old.z)]
            with m.Case(RowOp.CLEAR):  # the data stays 0
                m.d.comb += wr.en.eq(op.p.row < rows)
        done = update.row_out
        with m.If(done.valid):  # stage 2 (stage 1 holds UPDATE or nothing meanwhile)
            m.d.comb += [wr.en.eq(1), wr.addr.eq(done.p.row)]
            for lane in range(lanes):  # acc stays 0
                m.d.comb += [wr.data[lane].v.eq(done.p.v[lane]), wr.data[lane].z.eq(done.p.z[lane])]
        return m
