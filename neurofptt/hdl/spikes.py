"""The spike list of a step and its two readers.

``UPDATE`` appends every row with at least one spike to the list (:class:`SpikeList`), in
ascending row order, as ``{row, mask}``; the next step's ``REC`` phase and this step's ``OUT``
phase visit the spiking neurons through one :class:`SpikeCursor`, and :class:`SpikeEmitter`
sends them on ``o_spike`` through another.  Only rows with spikes are stored, so a quiet step
costs no cycles per row.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.layouts import addr_width, spike_entry_layout, tap, update_row_layout
from neurofptt.hdl.ports import EventKind, event_layout, index_bits
from neurofptt.hdl.rows import lowest_set
from neurofptt.quant.config import HardwareConfig, lane_rows

__all__ = [
    "SpikeCursor",
    "SpikeEmitter",
    "SpikeList",
    "cursor_signature",
    "emitter_signature",
    "list_port_signature",
]


def list_port_signature(cfg: HardwareConfig) -> ReadPort.Signature:
    """A read port of the spike list (``R`` entries)."""
    rows = lane_rows(cfg.n_rec, cfg.lanes)
    return ReadPort.Signature(addr_width=addr_width(rows), shape=spike_entry_layout(cfg))


def cursor_signature(cfg: HardwareConfig) -> wiring.Signature:
    """Walking the spike list, as its user sees it: ``restart`` goes back to entry 0 of a list
    of ``count`` entries (a register of the user's), ``take`` consumes the spike at the cursor
    (only while ``valid``); ``index`` is that spike's neuron, ``valid`` says it is there,
    ``more`` that a spike is left (at the cursor or still to be read) and ``last`` that the
    spike at the cursor is the final one."""
    rows = lane_rows(cfg.n_rec, cfg.lanes)
    return wiring.Signature(
        {
            "restart": Out(1),
            "take": Out(1),
            "count": Out(range(rows + 1)),
            "index": In(index_bits(cfg.n_rec)),
            "valid": In(1),
            "more": In(1),
            "last": In(1),
        }
    )


class SpikeCursor(wiring.Component):
    """A position in the spike list whose next spike waits in a register (the head).

    A user's address arithmetic then starts at a flip-flop: the list's read, the lowest lane
    of the entry's mask and the neuron index all lie before the head, not in front of the
    weight address the user forms from it.  The head is refilled on the edge after a take (or
    while it is empty), from the lanes of its entry not yet taken or else from the next entry,
    whose read the pointer has addressed on the cycle before; so a spike can be taken on
    every cycle.  After ``restart`` the list's first entry is read on the next cycle and its
    first spike is at the cursor on the cycle after (``valid``): a user restarts two cycles
    before it takes.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__({"walk": In(cursor_signature(cfg)), "list": In(list_port_signature(cfg))})

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.cfg
        lanes = cfg.lanes
        rows = lane_rows(cfg.n_rec, lanes)
        walk, entry = self.walk, self.list.data
        ptr = Signal(range(rows + 1), name="ptr")  # the entry the read port holds
        rem = Signal(lanes, name="rem")  # lanes of the head's entry after the head
        rem_row = Signal(index_bits(rows), name="rem_row")
        head = Signal(index_bits(cfg.n_rec), name="head")
        valid = Signal(name="head_valid")
        unread = Signal(name="unread")  # an entry is left to read
        from_rem = Signal()
        mask = Signal(lanes)
        row = Signal(index_bits(rows))
        m.d.comb += [
            unread.eq(ptr != walk.count),
            from_rem.eq(rem != 0),
            mask.eq(Mux(from_rem, rem, entry.mask)),
            row.eq(Mux(from_rem, rem_row, entry.row)),
            walk.index.eq(head),
            walk.valid.eq(valid),
            walk.more.eq(valid | unread),
            walk.last.eq(~from_rem & ~unread),
            self.list.addr.eq(ptr),
        ]
        with m.If(walk.restart):
            m.d.comb += self.list.addr.eq(0)
            m.d.sync += [ptr.eq(0), rem.eq(0), valid.eq(0)]
        with m.Elif(~valid | walk.take):
            m.d.sync += valid.eq(from_rem | unread)
            with m.If(from_rem | unread):
                m.d.sync += [
                    head.eq(row * lanes + lowest_set(mask, lanes) if lanes > 1 else row),
                    rem.eq(mask & (mask - 1)),
                    rem_row.eq(row),
                ]
            with m.If(~from_rem & unread):
                m.d.comb += self.list.addr.eq(ptr + 1)
                m.d.sync += ptr.eq(ptr + 1)
        return m


class SpikeList(wiring.Component):
    """The ``spikes`` memory (``R`` entries ``{row, mask}``) and its write side.

    A row on ``append`` with a spike is written at the next free entry; ``count`` is the
    number of entries including one written in this cycle, and ``restart`` (a ``STEP``) starts
    the next list.  ``run`` and ``emit`` are two read ports, transparent, so a reader that
    starts in the cycle of the last write sees it.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        rows = lane_rows(cfg.n_rec, cfg.lanes)
        super().__init__(
            {
                "append": In(tap(update_row_layout(cfg))),
                "restart": In(1),
                "count": Out(range(rows + 1)),
                "run": Out(list_port_signature(cfg)),
                "emit": Out(list_port_signature(cfg)),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.cfg
        rows = lane_rows(cfg.n_rec, cfg.lanes)
        m.submodules.spikes = spikes = Memory(shape=spike_entry_layout(cfg), depth=rows, init=[])
        wr = spikes.write_port()
        wiring.connect(m, wiring.flipped(self.run), spikes.read_port(transparent_for=(wr,)))
        wiring.connect(m, wiring.flipped(self.emit), spikes.read_port(transparent_for=(wr,)))
        written = Signal(range(rows + 1), name="n_new")
        m.d.comb += self.count.eq(written)
        row = self.append
        with m.If(row.valid & (row.p.z != 0)):
            m.d.comb += [
                wr.en.eq(1),
                wr.addr.eq(written),
                wr.data.row.eq(row.p.row),
                wr.data.mask.eq(row.p.z),
                self.count.eq(written + 1),
            ]
        m.d.sync += written.eq(self.count)
        with m.If(self.restart):
            m.d.sync += written.eq(0)
        return m


def emitter_signature(cfg: HardwareConfig) -> wiring.Signature:
    """Control of the spike emitter, as the sequencer sees it: ``start`` the list of ``count``
    entries; ``busy`` until its ``STEP`` has been sent."""
    rows = lane_rows(cfg.n_rec, cfg.lanes)
    return wiring.Signature({"start": Out(1), "count": Out(range(rows + 1)), "busy": In(1)})


class SpikeEmitter(wiring.Component):
    """Streams a step's spike list on ``o_spike``: one ``SPIKE`` event per spiking neuron in
    ascending order, then a ``STEP``; ``o_spike`` holds ``valid`` and the payload until
    ``ready``.  ``start`` may come in the cycle the list's last entry is written."""

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "control": In(emitter_signature(cfg)),
                "list": In(list_port_signature(cfg)),
                "o_spike": Out(stream.Signature(event_layout(cfg.n_rec))),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.cfg
        rows = lane_rows(cfg.n_rec, cfg.lanes)
        m.submodules.cursor = cursor = SpikeCursor(cfg)
        wiring.connect(m, wiring.flipped(self.list), cursor.list)
        walk, out, control = cursor.walk, self.o_spike, self.control
        busy = Signal(name="e_busy")
        count = Signal(range(rows + 1), name="e_count")
        step_sent = Signal(name="e_step_issued")
        valid = Signal(name="e_valid")
        kind = Signal(EventKind, name="e_kind")
        index = Signal(index_bits(cfg.n_rec), name="e_index")
        advance = Signal()
        m.d.comb += [
            advance.eq(~valid | out.ready),
            walk.count.eq(count),
            control.busy.eq(busy),
            out.valid.eq(valid),
            out.p.kind.eq(kind),
            out.p.index.eq(index),
        ]
        with m.If(control.start):
            m.d.comb += walk.restart.eq(1)
            m.d.sync += [busy.eq(1), count.eq(control.count), step_sent.eq(0), valid.eq(0)]
        with m.Elif(busy & advance):
            with m.If(walk.valid):
                m.d.comb += walk.take.eq(1)
                m.d.sync += [valid.eq(1), kind.eq(EventKind.SPIKE), index.eq(walk.index)]
            with m.Elif(walk.more):  # the next spike is being read
                m.d.sync += valid.eq(0)
            with m.Elif(~step_sent):
                m.d.sync += [valid.eq(1), kind.eq(EventKind.STEP), index.eq(0), step_sent.eq(1)]
            with m.Else():  # the STEP has been transferred
                m.d.sync += [valid.eq(0), busy.eq(0)]
        return m
