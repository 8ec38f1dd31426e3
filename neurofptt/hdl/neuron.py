"""The recurrent neurons: their ``state`` memory and the LIF update of one row per cycle.

:class:`NeuronUpdate` is the membrane arithmetic of :func:`~neurofptt.quant.golden.golden_step`
for one row of ``lanes`` neurons; :class:`NeuronRows` owns the ``state`` memory and applies the
row pipeline's operations to it (accumulate, clear, update).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import leak, saturate
from neurofptt.hdl.layouts import (
    RowOp,
    decoded,
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
    """The LIF update of one row, in three pipeline stages (2 to 4 of the row pipeline).

    Stage 2 (``row_in``): per lane the two operands of the new membrane, registered: the
    leaked membrane ``leak(v)`` and the drive ``acc - z * threshold`` (``reset = "subtract"``),
    or ``0 if z else leak(v)`` and ``acc`` (``"zero"``); beside them ``threshold - drive``.
    Stage 3: their sum, saturated to the membrane, and the spike ``z = leak(v) > threshold -
    drive``, registered.  Stage 4 (``row_out``): the row leaves, the padding lanes of the last
    row (neurons ``>= n_rec``) masked, so they never spike.  The sum is exact before the one
    saturation, so splitting it changes no bit, and the spike is the golden model's ``v >
    threshold`` (a sum past either end saturates to a membrane on the same side of the
    threshold, ``1 <= threshold < v_max``); each stage has one carry chain (stage 3 also the
    saturation's few LUT levels), so that the update is not the core's longest path, and
    the row leaves from registers into the state memory, the spike list and the traces.
    The state memory's spikes come from registers of their own (``z_state``, both copies
    marked ``keep``): from the shared ones, Yosys computed the memory's write data from LUTs
    it shares with the spike list's write enable and count, and the 256-256-16 e-prop core's
    longest path ran from the spike registers through the spike list's logic, 24 rows away,
    into the state.
    The operands are isolated: the datapath sees the row only while ``row_in.valid``, so it
    does not toggle while the pipeline accumulates.

    Only the valid flags are reset.  The row, its operands, membranes and spikes mean something
    only beside them, so their registers have no reset and stay off the reset's net, which
    reaches every reset flip-flop of the core (section 4 of the spec, "Reset").
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "row_in": In(tap(update_in_layout(cfg))),
                "row_out": Out(tap(update_row_layout(cfg))),
                "z_state": Out(cfg.lanes),
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
        # stage 3: the operands
        valid3, valid4 = Signal(), Signal()
        # data, meaningful only beside the valid flags: no reset (see the class docstring)
        row3, row4 = (Signal(row_shape(cfg), reset_less=True) for _ in range(2))
        z_prev3, z_prev4 = (Signal(lanes, reset_less=True) for _ in range(2))
        m.d.sync += [
            valid3.eq(self.row_in.valid),
            row3.eq(self.row_in.p.row),
            z_prev3.eq(Cat(*(state[lane].z for lane in range(lanes)))),
            valid4.eq(valid3),
            row4.eq(row3),
            z_prev4.eq(z_prev3),
        ]
        v = [Signal(signed(mb), name=f"s4_v_{lane}", reset_less=True) for lane in range(lanes)]
        # two copies, both kept: Yosys merges equal flip-flops unless both carry ``keep``
        spiked = Signal(lanes, name="s4_z", reset_less=True, attrs={"keep": 1})
        spiked_state = Signal(lanes, name="s4_z_state", reset_less=True, attrs={"keep": 1})
        for lane in range(lanes):
            n = state[lane]
            leaked = leak(n.v, cfg.leak_shift)
            if cfg.reset == "subtract":
                base = leaked
                drive = n.acc - Mux(n.z, cfg.threshold, 0)
                margin = Mux(n.z, 2 * cfg.threshold, cfg.threshold) - n.acc
            else:
                base, drive, margin = Mux(n.z, 0, leaked), n.acc, cfg.threshold - n.acc
            base3 = Signal(base.shape(), name=f"s3_base_{lane}", reset_less=True)
            drive3 = Signal(drive.shape(), name=f"s3_drive_{lane}", reset_less=True)
            margin3 = Signal(margin.shape(), name=f"s3_margin_{lane}", reset_less=True)
            m.d.sync += [base3.eq(base), drive3.eq(drive), margin3.eq(margin)]
            # stage 4: the new membrane and its spike
            m.d.sync += [
                v[lane].eq(saturate(m, base3 + drive3, mb, f"v_new_{lane}")),
                spiked[lane].eq(base3 > margin3),
                spiked_state[lane].eq(base3 > margin3),
            ]
        # the lanes that hold a neuron in this row: a padding lane of the last row never spikes
        live = Cat(
            (row4 != rows - 1) if (rows - 1) * lanes + lane >= cfg.n_rec else Const(1)
            for lane in range(lanes)
        )
        z = Signal(lanes)
        m.d.comb += [z.eq(spiked & live), self.z_state.eq(spiked_state & live)]
        out = self.row_out
        m.d.comb += [
            out.valid.eq(valid4),
            out.p.row.eq(row4),
            out.p.z.eq(z),
            out.p.z_prev.eq(z_prev4),
            *(out.p.v[lane].eq(v[lane]) for lane in range(lanes)),
        ]
        return m


class NeuronRows(wiring.Component):
    """The ``state`` memory (``R`` rows of ``lanes`` neurons ``{acc, v, z}``) and what the row
    pipeline does to it.

    ``op`` is stage 1, with the weight words ``w_in`` / ``w_rec`` read for it: the words are
    registered and the row is read; in stage 2 ``ACC_IN`` / ``ACC_REC`` add the word's weights,
    shifted, to the partial sums, and ``CLEAR`` zeroes the row (rows ``>= R`` of a longer
    ``CLEAR`` sweep do not exist here); the row is registered and written back in stage 3.
    ``UPDATE`` passes the row to :class:`NeuronUpdate`, whose stage 4 writes the new membranes
    and spikes back with a zero partial sum and leaves on ``update``; ``updating`` is the row
    entering the update (stage 2), two cycles before it leaves.

    The row is read through the memory's asynchronous port in stage 1 and registered, and the
    modified row is registered again before it is written in stage 3: the read, the adder and
    the write data are three cycles' paths, not one (on placed demo cores the read-modify-write,
    the row address routed to every LUT-RAM cell of the memory, through the read and the
    adder, back into the write data, was the most frequent longest path).  No cycle count
    changes.  The register after the read misses the write of the same clock edge, and the
    modified row is written a cycle later than the op after it is read, so an op one or two
    places behind another on the same row takes that row from stage 3 instead of the memory.
    Two ops on one row are at least ``R`` cycles apart (a fan-out or sweep walks the rows in
    order), so these forwards exist only where ``R <= 2``.  The write of an ``UPDATE`` (stage
    4) never meets one of stage 3, and no op reads a row an ``UPDATE`` is still writing: the
    sequencer issues nothing for three cycles after an ``UPDATE`` sweep.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "op": In(tap(row_op_layout(cfg))),
                "w_in": In(weight_word_layout(cfg)),
                "w_rec": In(weight_word_layout(cfg)),
                "updating": Out(tap(row_shape(cfg))),
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
        rd = state.read_port(domain="comb")
        m.submodules.update = update = NeuronUpdate(cfg)
        accumulate = decoded(m, self.op, "neuron_acc_s2", RowOp.ACC_IN, RowOp.ACC_REC)
        inputs = decoded(m, self.op, "neuron_in_s2", RowOp.ACC_IN)
        clear = decoded(m, self.op, "neuron_clear_s2", RowOp.CLEAR, below=rows)
        updating = decoded(m, self.op, "neuron_update_s2", RowOp.UPDATE)
        # the stages' data have no reset, their ops (decoded above) and write3 do, as in
        # NeuronUpdate
        row = Signal(row_shape(cfg), name="neuron_row_s2", reset_less=True)
        w_in = Signal(weight_word_layout(cfg), name="w_in_s2", reset_less=True)
        w_rec = Signal(weight_word_layout(cfg), name="w_rec_s2", reset_less=True)
        m.d.sync += [row.eq(self.op.p.row), w_in.eq(self.w_in), w_rec.eq(self.w_rec)]
        # stage 3: the accumulated or cleared row, written back
        layout = data.ArrayLayout(neuron_layout(cfg), lanes)
        write3 = Signal(name="neuron_write_s3")
        row3 = Signal(row_shape(cfg), name="neuron_row_s3", reset_less=True)
        data3 = Signal(layout, name="neuron_data_s3", reset_less=True)
        # stage 1 reads the row and registers it; a row stage 3 writes at the end of the cycle
        # is taken from stage 3 (two rows or fewer: an op two ahead may be on the same row)
        read2 = Signal(layout, name="neuron_read_s2", reset_less=True)
        if rows <= 2:
            ahead2 = write3 & (row3 == self.op.p.row)
            m.d.sync += read2.eq(Mux(ahead2, data3.as_value(), rd.data.as_value()))
        else:
            m.d.sync += read2.eq(rd.data)
        # stage 2: with one row the op one ahead, in stage 3, is on the same row
        read = Signal(layout, name="neuron_old_s2")
        if rows == 1:
            m.d.comb += read.eq(Mux(write3, data3.as_value(), read2.as_value()))
        else:
            m.d.comb += read.eq(read2)
        m.d.comb += [
            rd.addr.eq(self.op.p.row),
            update.row_in.valid.eq(updating),
            update.row_in.p.row.eq(row),
            update.row_in.p.state.eq(read),
        ]
        m.d.comb += [self.updating.valid.eq(updating), self.updating.p.eq(row)]
        wiring.connect(m, update.row_out, wiring.flipped(self.update))

        m.d.sync += [write3.eq(accumulate | clear), row3.eq(row)]
        with m.If(accumulate):
            for lane in range(lanes):
                old, new = read[lane], data3[lane]
                term = Mux(inputs, w_in[lane] << cfg.w_in_shift, w_rec[lane] << cfg.w_rec_shift)
                m.d.sync += [new.acc.eq(old.acc + term), new.v.eq(old.v), new.z.eq(old.z)]
        with m.Elif(clear):
            m.d.sync += data3.eq(0)
        m.d.comb += [wr.en.eq(write3), wr.addr.eq(row3), wr.data.eq(data3)]
        done = update.row_out
        with m.If(done.valid):  # stage 4 (stage 3 holds UPDATE or nothing meanwhile)
            m.d.comb += [wr.en.eq(1), wr.addr.eq(done.p.row), wr.data.eq(0)]
            for lane in range(lanes):  # acc stays 0
                m.d.comb += [
                    wr.data[lane].v.eq(done.p.v[lane]),
                    wr.data[lane].z.eq(update.z_state[lane]),
                ]
        return m
