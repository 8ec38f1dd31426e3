"""The readouts: their ``readout`` memory, the ``OUT`` accumulation and the ``o_readout``
stream."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import leak, onehot, saturate
from neurofptt.hdl.layouts import (
    RowOp,
    decoded,
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
    are final), ``run`` while the readouts may be sent, ``done`` in the cycle after the last
    one has been sent."""
    return wiring.Signature({"start": Out(1), "run": Out(1), "done": In(1)})


class ReadoutRows(wiring.Component):
    """The ``readout`` memory (``Ro`` rows of ``lanes`` readouts ``{acc, o}``), what the row
    pipeline does to it, and the readout stream.

    ``op`` is stage 1 of the row pipeline, as for :class:`~neurofptt.hdl.neuron.NeuronRows`:
    the ``w_out`` word read for it is registered and the row read; in stage 2 ``ACC_OUT`` adds
    the word, shifted, to the partial sums, ``CLEAR`` zeroes the row (rows ``>= Ro`` do not
    exist here).  While ``control.run`` (which starts once the last ``ACC_OUT`` row is
    written), the readouts leave in index order through three stages: readout ``k``'s row is
    read; its lane is selected and leaked; ``o_k = sat(leak(o_k) + acc_k)`` is registered and
    offered on ``o_readout`` (held until ``ready``; the stages stall with it) and, in the first
    cycle it is offered, written back into its lane alone with a zero partial sum; ``sent``
    shows each one as it goes.  The write-back waits for no ``ready``: written as the value
    left, it put the stream's handshake, from the consumer's ``ready`` pin, in front of the
    LUT-RAM's write port (a placed demo FPTT core's longest path).  Each readout lane is read
    before it is written, so the other lanes of a row being written never matter.  A stall
    reads the held readout's row again rather than disabling the read port: a LUT-RAM read
    port with an enable needs a data register and a bypass of the write port in front of it.

    The value ``o_k`` that is leaked is read through a second port, without a register, and
    the one lane selected is registered: the lanes of a wide core's readouts lie next to the
    ``w_out`` slices that feed them, across the die, so the lane multiplexer is a cycle's
    route by itself and must not share it with the leak's carry chain (on the 256-256-16
    e-prop core the path from the lane register through the multiplexer and the leak set the
    clock).  ``o`` is written only by the stream itself, into another readout's lane, so the
    unregistered read never misses a write; the partial sum, which the last ``ACC_OUT`` row
    writes in the stream's first cycle, comes from the transparent port.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
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
        wr = readout.write_port(granularity=1)
        rd = readout.read_port(transparent_for=(wr,))
        accumulate = decoded(m, self.op, "readout_acc_s2", RowOp.ACC_OUT)
        clear = decoded(m, self.op, "readout_clear_s2", RowOp.CLEAR, below=out_rows)
        row = Signal(row_shape(cfg), name="readout_row_s2")
        w_out = Signal(weight_word_layout(cfg), name="w_out_s2")
        m.d.sync += [row.eq(self.op.p.row), w_out.eq(self.w_out)]
        m.d.comb += [rd.addr.eq(self.op.p.row), wr.addr.eq(row)]
        with m.If(accumulate):
            m.d.comb += wr.en.eq(-1)
            for lane in range(lanes):
                old, new = rd.data[lane], wr.data[lane]
                m.d.comb += [
                    new.acc.eq(old.acc + (w_out[lane] << cfg.w_out_shift)),
                    new.o.eq(old.o),
                ]
        with m.Elif(clear):  # the data stays 0
            m.d.comb += wr.en.eq(-1)
        self._stream(m, rd, readout.read_port(domain="comb"), wr)
        return m

    def _stream(self, m: Module, rd, rd_o, wr) -> None:
        """The readout stream: a read stage (``k``, ``row``, ``lane``), a leak stage and the
        offer stage (``valid``, ``kk``), which all advance together when the offer is free;
        ``rd_o`` is the read port of ``o``, without a register."""
        cfg = self.cfg
        lanes, n_out = cfg.lanes, cfg.n_out
        out_rows = lane_rows(n_out, lanes)
        lane_shape = range(max(lanes, 2))
        k = Signal(range(n_out + 1), name="ro_k")
        row = Signal(range(out_rows + 1), name="ro_row")
        lane = Signal(lane_shape, name="ro_lane")
        # the stage whose row has been read, the leak stage and the offer stage
        read = data.StructLayout(
            {"valid": 1, "k": range(max(n_out, 2)), "row": index_bits(out_rows), "lane": lane_shape}
        )
        s1 = Signal(read, name="ro_s1")
        s2 = Signal(read, name="ro_s2")
        o_read = Signal(signed(cfg.membrane_bits), name="ro_o")
        leaked = Signal(signed(cfg.membrane_bits + 1), name="ro_leaked")
        acc = Signal(signed(cfg.acc_bits), name="ro_acc")
        valid = Signal(name="ro_valid")
        fresh = Signal(name="ro_fresh")  # the offer's first cycle: write the value back
        kk = Signal.like(s2.k, name="ro_kk")
        kk_row = Signal.like(s2.row, name="ro_kk_row")
        kk_lane = Signal(lane_shape, name="ro_kk_lane")
        value = Signal(signed(cfg.membrane_bits), name="ro_value")
        advance = Signal()
        out, control = self.o_readout, self.control
        sel = rd.data[s1.lane] if lanes > 1 else rd.data[0]
        m.d.comb += rd_o.addr.eq(row)
        o_new = saturate(m, leaked + acc, cfg.membrane_bits, "o_new")
        m.d.comb += [
            advance.eq(~valid | out.ready),
            out.valid.eq(valid),
            out.p.index.eq(kk),
            out.p.value.eq(value),
            out.p.last.eq(kk == n_out - 1),
            self.sent.p.index.eq(kk),
            self.sent.p.row.eq(kk_row),
            self.sent.p.lane.eq(kk_lane),
            self.sent.p.value.eq(value),
        ]
        with m.If(control.start):
            m.d.sync += [k.eq(0), row.eq(0), lane.eq(0), valid.eq(0), s1.valid.eq(0)]
            m.d.sync += s2.valid.eq(0)
        m.d.sync += fresh.eq(0)
        # write back what is offered, into its lane; ``fresh`` is set only under ``run`` and
        # holds ``run`` on (``valid`` is set with it, so ``done`` is not), so the write port's
        # address and enable select on this register alone (with ``run`` in front of them,
        # a placed demo FPTT core's longest path ran from the sequencer's state flip-flop)
        with m.If(fresh):
            m.d.comb += [
                wr.en.eq(onehot(kk_lane, lanes) if lanes > 1 else 1),
                wr.addr.eq(kk_row),
            ]
            m.d.comb += [wr.data[i].o.eq(value) for i in range(lanes)]  # acc = 0
        with m.If(control.run):  # a stall reads the held readout's row again
            m.d.comb += rd.addr.eq(Mux(advance, row, s1.row))
            m.d.comb += self.sent.valid.eq(valid & out.ready)
            with m.If(advance):
                m.d.sync += [
                    fresh.eq(s2.valid),
                    s1.valid.eq(k != n_out),
                    s1.k.eq(k),
                    s1.row.eq(row),
                    s1.lane.eq(lane),
                    o_read.eq((rd_o.data[lane] if lanes > 1 else rd_o.data[0]).o),
                    s2.eq(s1),
                    leaked.eq(leak(o_read, cfg.out_leak_shift)),
                    acc.eq(sel.acc),
                    valid.eq(s2.valid),
                    kk.eq(s2.k),
                    kk_row.eq(s2.row),
                    kk_lane.eq(s2.lane),
                    value.eq(o_new),
                ]
                with m.If(k != n_out):
                    m.d.sync += k.eq(k + 1)
                    next_row_lane(m, row, lane, lanes)
        # done once the last readout has left, decoded from registers alone: decoded with the
        # stream's ``ready`` in the cycle the last value leaves, it ran on through the
        # sequencer's transition into its flip-flops (the 256-256-16 e-prop core's longest
        # path); it costs one cycle a step (``READOUT_END``)
        m.d.comb += control.done.eq(control.run & (k == n_out) & ~s1.valid & ~s2.valid & ~valid)
