"""Synapse memories laid out for block RAM: a wide word cut into slices that each hold the
whole depth in one block RAM.

A weight memory of a wide core is deep and wide (256-256-16 with 16 lanes: ``w_in`` and
``w_rec`` are 4,096 words of 128 bits).  Left whole, Yosys maps it onto block RAMs in banks by
depth (1K x 18 each) and selects the bank the address chose with a multiplexer behind their
outputs, so a word read takes the block RAM's clock-to-output delay, the multiplexer and two
routes before its register: more than a 100 MHz cycle on an ECP5.  Cut into slices of the width
at which the whole depth fits one block RAM (4K x 4 there), every slice is one block RAM per
column of bits, the same number of block RAMs, and its output goes straight into the register.

The write port is registered at every slice (:data:`WRITE_LATENCY`): a word shown on ``write``
is written on the next cycle, from an address, an enable and data bits that belong to that slice
alone, marked ``keep`` so that Yosys does not merge the slices' equal copies
(:data:`~neurofptt.hdl.synth.KEEP_COPIES`).  Driven straight from the learning sweep, one write
address (behind the load-or-sweep multiplexer) reached the fifty-odd block RAMs of a 256-256-16
``W_bar`` memory spread over the part, 19 ns of routing: the FPTT core's longest path.  A
slice's own register can sit beside its block RAM, so the long route ends at a flip-flop, a
cycle earlier.

What a read returns in the cycle a write of the same word lands is left undefined (Yosys's
``no_rw_check``): the cores never use such a read (an update's sweep reads each word once,
several stages before it writes it back; ``DRAIN`` reads nothing it uses; while a load writes,
no event is taken but with its first word, and that word goes to ``W_out``, which the event does
not read then).  Amaranth's memories, like Verilog's, return the old word there, and an ECP5
block RAM does not promise it across its two ports, so without the attribute Yosys keeps the old
word with a delayed copy of the write port and address comparators on every slice, in front of
the block RAMs' address inputs.  ``SlicedMemory.collisions = "scrambled"`` returns the inverted
word instead, in simulation only, so that a test can show that no result depends on it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out

from neurofptt.hdl.layouts import addr_width

__all__ = ["BLOCK_DEPTHS", "WRITE_LATENCY", "SlicedMemory", "slice_width"]

#: an ECP5 block RAM (DP16KD, 18 Kbit with the parity bits): its depth at each port width
BLOCK_DEPTHS = {1: 16384, 2: 8192, 4: 4096, 9: 2048, 18: 1024, 36: 512}

#: cycles from a word on a :class:`SlicedMemory`'s write port to the cycle it is written in
WRITE_LATENCY = 1


def slice_width(depth: int) -> int:
    """The widest block RAM port at which ``depth`` words fit one block RAM (1 beyond 16K)."""
    return max((w for w, most in BLOCK_DEPTHS.items() if depth <= most), default=1)


class SlicedMemory(wiring.Component):
    """``depth`` words of ``width`` bits with initial contents ``init``, a synchronous read
    port ``read`` and (``writable``) a write port ``write`` registered at each slice (a word is
    written :data:`WRITE_LATENCY` cycles after it is shown), made of memories
    :func:`slice_width` bits wide (the last one narrower) that share the read address.

    ``collisions``: what a read returns in the cycle its word is written, ``"undefined"``
    (synthesis may return anything) or ``"scrambled"`` (the word inverted; for simulation).
    """

    collisions = "undefined"

    def __init__(self, width: int, depth: int, init: list[int], *, writable: bool) -> None:
        self.width, self.depth, self.init, self.writable = width, depth, init, writable
        self._raw = Signal(width, name="raw")  # the slices' words, before any scrambling
        ports = {"read": Out(ReadPort.Signature(addr_width=addr_width(depth), shape=width))}
        if writable:
            ports["write"] = Out(WritePort.Signature(addr_width=addr_width(depth), shape=width))
        super().__init__(ports)

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        step = slice_width(self.depth)
        scrambled = self.writable and self.collisions == "scrambled"
        for k, lo in enumerate(range(0, self.width, step)):
            bits = min(step, self.width - lo)
            if self.writable:
                # the slice's own write registers, made before its memory so that the Verilog
                # declares these kept copies as the registers (the port's signals alias them)
                keep = {"keep": 1}
                addr = Signal.like(self.write.addr, name=f"write_addr_{k}", attrs=keep)
                en = Signal(name=f"write_en_{k}", attrs=keep)
                wdata = Signal(bits, name=f"write_data_{k}")
                m.d.sync += [
                    addr.eq(self.write.addr),
                    en.eq(self.write.en),
                    wdata.eq(self.write.data[lo : lo + bits]),
                ]
                if k == 0:
                    written = (addr, en)  # the word written this cycle, in every slice
            mask = (1 << bits) - 1
            init = [(word >> lo) & mask for word in self.init]
            attrs = {"no_rw_check": 1} if self.writable else None
            m.submodules[f"slice_{k}"] = mem = Memory(
                shape=unsigned(bits), depth=self.depth, init=init, attrs=attrs
            )
            rd = mem.read_port()
            data = self._raw if scrambled else self.read.data
            m.d.comb += [
                rd.addr.eq(self.read.addr),
                rd.en.eq(self.read.en),
                data[lo : lo + bits].eq(rd.data),
            ]
            if self.writable:
                wr = mem.write_port()
                m.d.comb += [wr.addr.eq(addr), wr.en.eq(en), wr.data.eq(wdata)]
        if scrambled:  # a read in the cycle its word is written returns the word inverted
            collide = Signal(name="collide")
            m.d.comb += self.read.data.eq(Mux(collide, ~self._raw, self._raw))
            addr, en = written
            with m.If(self.read.en):
                m.d.sync += collide.eq(en & (addr == self.read.addr))
        return m
