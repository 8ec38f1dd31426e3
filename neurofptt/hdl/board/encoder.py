"""The response encoder: the core's outputs in, the bytes of the responses out.

It works through the decoder's jobs one at a time.  Each response is a run of records, a tag
byte and the bytes of one value, read straight from the output stream that offers the value:
the core holds a payload until it is taken, so the encoder picks its bytes one by one and takes
the payload with its last byte, and needs no buffer.  The end of every response is the opcode
it answers.

A ``STEP`` response forwards the step's spikes (``o_spike`` until its ``STEP`` event), then the
``n_out`` readout values; the spikes come first because the core's spike sender runs on its own
while the readout stream waits.  On a learning core the response then waits until the core is
idle again (its ``i_weights`` is ready exactly then), so that the update of the step is done
when the host reads the end.  Not ``busy``: a load that the decoder started behind the step
keeps the core busy until its last word, which may be in a later command.  A ``READ``
response forwards ``o_weights`` up to the word with ``last``.

Every response, an error record's too, ends with a CRC-8 of its bytes, which the encoder
computes as they go out (:func:`~neurofptt.hdl.board.crc.crc8_next`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.board.crc import crc8_next
from neurofptt.hdl.board.decoder import job_layout
from neurofptt.hdl.board.protocol import ERROR_BYTES, INFO_BYTES, Framing, Opcode, Tag
from neurofptt.hdl.ports import EventKind, event_layout, readout_layout, weight_dump_layout
from neurofptt.quant.config import HardwareConfig

__all__ = ["ResponseEncoder"]


class ResponseEncoder(wiring.Component):
    """Sends the response of each ``i_job`` on ``o_byte``, reading the core's ``i_spike``,
    ``i_readout`` and (learning cores) ``i_weights`` streams and, on a learning core, ``idle``
    (the core's ``i_weights.ready``).

    ``info`` is the constant part of the ``INFO`` record (:func:`~neurofptt.hdl.board.protocol.
    info_record` without its last byte); ``status``, its last byte, is read when it is sent.
    """

    def __init__(self, config: HardwareConfig, info: bytes) -> None:
        if len(info) != INFO_BYTES - 1:
            raise ValueError(f"info must be the first {INFO_BYTES - 1} bytes of the record")
        self.config = config
        self.framing = Framing.of(config)
        self.info = info
        members = {
            "i_job": In(stream.Signature(job_layout())),
            "i_spike": In(stream.Signature(event_layout(config.n_rec))),
            "i_readout": In(stream.Signature(readout_layout(config))),
            "status": In(8),
            "o_byte": Out(stream.Signature(8)),
        }
        if config.learning is not None:
            members["i_weights"] = In(stream.Signature(weight_dump_layout(config)))
            members["idle"] = In(1)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        framing = self.framing
        out = self.o_byte
        op = Signal(8)
        refused = Signal(8 + 2)  # of an error record: the opcode and the fault
        error = Cat(Const(Tag.ERROR, 8), refused[:8], refused[8:], Const(0, 6))
        crc = Signal(8)  # of the response's bytes so far
        longest = max(INFO_BYTES, framing.rec_index, framing.value, framing.word)
        sent = Signal(range(longest + 1))  # bytes of the current record already sent
        constant = Const(int.from_bytes(self.info, "little"), 8 * len(self.info))
        info = Cat(Const(Tag.INFO, 8), constant, self.status)

        def record(source: stream.Interface, tag: Tag, value: Value, nbytes: int) -> Signal:
            """Offer the record of ``source``'s payload (tag, then ``value`` in ``nbytes``
            bytes, sign-extended if it is signed) and take the payload with its last byte;
            returns the transfer."""
            wide = Signal(8 * nbytes, name=f"{tag.name.lower()}_bytes")
            m.d.comb += [
                wide.eq(value),
                out.valid.eq(source.valid),
                out.payload.eq(Cat(Const(tag, 8), wide).word_select(sent, 8)),
            ]
            taken = Signal(name=f"{tag.name.lower()}_taken")
            with m.If(out.valid & out.ready):
                m.d.sync += sent.eq(sent + 1)
                with m.If(sent == nbytes):
                    m.d.sync += sent.eq(0)
                    m.d.comb += [source.ready.eq(1), taken.eq(1)]
            return taken

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i_job.ready.eq(1)
                job = self.i_job.p
                with m.If(self.i_job.valid):
                    m.d.sync += [
                        op.eq(job.op),
                        refused.eq(Cat(job.arg, job.fault)),
                        sent.eq(0),
                        crc.eq(0),
                    ]
                    with m.Switch(self.i_job.p.op):
                        with m.Case(Opcode.INFO):
                            m.next = "INFO"
                        with m.Case(Opcode.STEP):
                            m.next = "SPIKES"
                        if self.config.learning is not None:
                            with m.Case(Opcode.READ):
                                m.next = "WORDS"
                        with m.Case(Tag.ERROR):
                            m.next = "ERROR"
                        with m.Default():
                            m.next = "END"
            with m.State("INFO"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(info.word_select(sent, 8))]
                with m.If(out.ready):
                    m.d.sync += sent.eq(sent + 1)
                    with m.If(sent == INFO_BYTES):
                        m.next = "END"
            with m.State("SPIKES"):
                spike = self.i_spike
                with m.If(spike.p.kind == EventKind.STEP):
                    m.d.comb += spike.ready.eq(spike.valid)
                    with m.If(spike.valid):
                        m.next = "READOUTS"
                with m.Else():
                    record(spike, Tag.SPIKE, spike.p.index, framing.rec_index)
            with m.State("READOUTS"):
                readout = self.i_readout
                taken = record(readout, Tag.READOUT, readout.p.value, framing.value)
                with m.If(taken & readout.p.last):
                    m.next = "END" if self.config.learning is None else "SETTLE"
            if self.config.learning is not None:
                with m.State("SETTLE"), m.If(self.idle):
                    m.next = "END"
                with m.State("WORDS"):
                    words = self.i_weights
                    taken = record(words, Tag.WORD, words.payload.as_value(), framing.word)
                    with m.If(taken & words.p.last):
                        m.next = "END"
            with m.State("ERROR"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(error.word_select(sent, 8))]
                with m.If(out.ready):
                    m.d.sync += sent.eq(sent + 1)
                    with m.If(sent == ERROR_BYTES):
                        m.next = "CRC"
            with m.State("END"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(op)]
                with m.If(out.ready):
                    m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(crc)]
                with m.If(out.ready):
                    m.next = "IDLE"
        with m.If(out.valid & out.ready & ~fsm.ongoing("CRC")):
            m.d.sync += crc.eq(crc8_next(crc, out.payload))
        return m
