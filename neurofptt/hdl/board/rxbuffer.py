"""The receive buffer: a ring of bytes in block RAM that its reader can read twice.

A command is executed only once its checksum has been found right, so the command decoder
reads each command twice: once to check it, once to carry it out.  A FIFO forgets what it has
delivered; this buffer keeps every byte from the *start* pointer on until the reader
**commits**, and its *read* pointer, which runs ahead of the start, can be **rewound** to it.
Bytes arrive from the UART receiver, which cannot wait: a byte that finds the buffer holding
``depth`` bytes from the start is lost, and ``overrun`` says so for that cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RewindBuffer"]


class RewindBuffer(wiring.Component):
    """``depth`` bytes (a power of two) from ``i_byte`` to ``o_byte``.

    ``rewind``: the next byte offered is again the one at the start pointer (the first byte not
    committed).  ``commit``: everything up to the read pointer, including a byte taken in the
    same cycle, is released.  ``full``: the buffer holds ``depth`` bytes since its start.

    The memory's read port is synchronous, so the byte offered in a cycle was addressed in the
    cycle before; a byte written in that cycle is not in it yet, hence ``o_byte`` is valid only
    for a byte written at least two cycles before (``written`` lags the write pointer by one).
    """

    def __init__(self, depth: int) -> None:
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"the receive buffer's depth must be a power of two, not {depth}")
        self.depth = depth
        super().__init__(
            {
                "i_byte": In(stream.Signature(8, always_ready=True)),
                "o_byte": Out(stream.Signature(8)),
                "rewind": In(1),
                "commit": In(1),
                "full": Out(1),
                "overrun": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        depth = self.depth
        bits = depth.bit_length()  # one more than an address: tells full from empty
        m.submodules.mem = mem = memory.Memory(shape=8, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        start = Signal(bits)  # the first byte not committed
        read = Signal(bits)  # the byte offered on o_byte
        write = Signal(bits)  # where the next byte received goes
        written = Signal(bits)  # write, a cycle late: the bytes the read port can see
        after = Signal(bits)  # the read pointer of the next cycle

        # depth bytes since the start: the same address, a lap apart (no subtraction, no carry)
        m.d.comb += self.full.eq((write[:-1] == start[:-1]) & (write[-1] != start[-1]))
        take = self.o_byte.valid & self.o_byte.ready
        m.d.comb += [
            self.o_byte.valid.eq(read != written),
            self.o_byte.payload.eq(rd.data),
            after.eq(read + take),
        ]
        with m.If(self.rewind):
            m.d.comb += after.eq(start)
        m.d.comb += rd.addr.eq(after)
        m.d.sync += [read.eq(after), written.eq(write)]
        with m.If(self.commit):
            m.d.sync += start.eq(after)

        store = self.i_byte.valid & ~self.full
        m.d.comb += [
            wr.addr.eq(write),
            wr.data.eq(self.i_byte.payload),
            wr.en.eq(store),
            self.overrun.eq(self.i_byte.valid & self.full),
        ]
        with m.If(store):
            m.d.sync += write.eq(write + 1)
        return m
