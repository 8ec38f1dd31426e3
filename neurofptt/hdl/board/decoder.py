"""The command decoder: bytes from the host in, the core's events and weight words out.

It reads one command at a time from the receive buffer and turns it into what the core's ports
take (``docs/hardware.md``): ``CLEAR``, one ``SPIKE`` event per input index of ``SPIKES``,
``STEP`` with its ``learn``, ``label`` and ``shift`` fields, ``READ_WEIGHTS``, and the words of
``LOAD`` on ``i_weights``.  When the core has taken a command's last event or word it hands
the response encoder a *job* (which response to send) and goes on with the next command, so
the encoder answers commands in the order they came while the decoder feeds the core the next
one.

Every command ends with a CRC-8 of its bytes, and nothing of a command reaches the core before
that CRC is found right: the decoder reads each command twice from the receive buffer
(:class:`~neurofptt.hdl.board.rxbuffer.RewindBuffer`), first to compute its CRC, then, after
rewinding, to carry it out, and only then releases its bytes.  Both passes run through the same
states; in the first, an event or word is skipped instead of offered.  A refused command
becomes an error job naming its opcode and the :class:`~neurofptt.hdl.board.protocol.Fault`:
an unknown opcode (only its byte is consumed), a CRC that does not match (the whole command is
dropped), or a count that makes the command longer than the buffer (what the buffer holds is
dropped, since the command could never be complete).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.board.crc import crc8_next
from neurofptt.hdl.board.protocol import STEP_LEARN_BIT, Fault, Framing, Opcode, Tag
from neurofptt.hdl.ports import (
    READ_WEIGHTS,
    EventKind,
    event_layout,
    learn_event_layout,
    weight_dump_layout,
)
from neurofptt.quant.config import HardwareConfig

__all__ = ["CommandDecoder", "job_layout"]


def job_layout() -> data.StructLayout:
    """A response to send: ``op``, the opcode it answers (or :attr:`Tag.ERROR`), and for an
    error ``arg``, the opcode refused, and ``fault``, why (:class:`Fault`)."""
    return data.StructLayout({"op": 8, "arg": 8, "fault": 2})


class CommandDecoder(wiring.Component):
    """Decodes host commands from ``i_byte`` into ``o_event`` (the core's ``i_event``),
    ``o_weights`` (a learning core's ``i_weights``) and ``o_job`` (the response encoder's
    work).  ``LOAD`` and ``READ`` are unknown opcodes on an inference core.

    ``i_byte`` comes from a :class:`~neurofptt.hdl.board.rxbuffer.RewindBuffer`, which the
    decoder drives through ``rewind``, ``commit`` and reads ``full`` of."""

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config
        self.framing = Framing.of(config)
        learning = config.learning is not None
        events = learn_event_layout(config) if learning else event_layout(config.n_in)
        members = {
            "i_byte": In(stream.Signature(8)),
            "full": In(1),
            "rewind": Out(1),
            "commit": Out(1),
            "o_event": Out(stream.Signature(events)),
            "o_job": Out(stream.Signature(job_layout())),
        }
        if learning:
            members["o_weights"] = Out(stream.Signature(weight_dump_layout(config)))
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, framing = self.config, self.framing
        learning = cfg.learning is not None
        byte, event, job = self.i_byte, self.o_event, self.o_job
        op = Signal(8)
        count = Signal(8)  # items of SPIKES or LOAD still to come
        args = Signal(8 * max(framing.in_index, framing.step_args, framing.word))
        got = Signal(range(args.shape().width // 8))  # argument bytes received
        last_arg = Signal.like(got)  # the index of the command's last argument byte
        checked = Signal()  # the second pass: the CRC was right, the command is carried out
        crc = Signal(8)  # of the command's bytes so far; zero between commands
        # the first pass waits for a byte that cannot come: the command is longer than the buffer
        stuck = ~checked & self.full & ~byte.valid
        m.d.comb += last_arg.eq(framing.step_args - 1)
        with m.If(op == Opcode.SPIKES):
            m.d.comb += last_arg.eq(framing.in_index - 1)
        if learning:
            with m.If(op == Opcode.LOAD):
                m.d.comb += last_arg.eq(framing.word - 1)
        with m.If(byte.valid & byte.ready):
            m.d.sync += crc.eq(crc8_next(crc, byte.payload))

        def refuse(fault: Fault) -> None:
            """Release the bytes read so far and send an error record instead."""
            m.d.comb += self.commit.eq(1)
            m.d.sync += job.p.fault.eq(fault)
            m.next = "REFUSE"

        m.d.comb += job.p.op.eq(op)
        with m.FSM():
            with m.State("OPCODE"):
                m.d.comb += byte.ready.eq(1)
                with m.If(byte.valid):
                    m.d.sync += [op.eq(byte.payload), got.eq(0)]
                    with m.Switch(byte.payload):
                        with m.Case(Opcode.INFO):
                            m.next = "CHECKSUM"
                        with m.Case(Opcode.CLEAR):
                            m.next = "EVENT"
                        with m.Case(Opcode.SPIKES):
                            m.next = "COUNT"
                        with m.Case(Opcode.STEP):
                            m.next = "ARGS"
                        if learning:
                            with m.Case(Opcode.LOAD):
                                m.next = "COUNT"
                            with m.Case(Opcode.READ):
                                m.next = "EVENT"
                        with m.Default():
                            refuse(Fault.OPCODE)
            with m.State("COUNT"):
                m.d.comb += byte.ready.eq(1)
                with m.If(byte.valid):
                    m.d.sync += count.eq(byte.payload)
                    with m.If(byte.payload == 0):
                        m.next = "CHECKSUM"
                    with m.Else():
                        m.next = "ARGS"
                with m.Elif(stuck):
                    refuse(Fault.LENGTH)
            with m.State("ARGS"):
                m.d.comb += byte.ready.eq(1)
                with m.If(byte.valid):
                    m.d.sync += [args.word_select(got, 8).eq(byte.payload), got.eq(got + 1)]
                    with m.If(got == last_arg):
                        m.next = "EVENT"
                        if learning:
                            with m.If(op == Opcode.LOAD):
                                m.next = "WORD"
                with m.Elif(stuck):
                    refuse(Fault.LENGTH)
            with m.State("EVENT"):
                m.d.comb += event.valid.eq(checked)
                self._event(m, op, args)
                with m.If(event.ready | ~checked):
                    self._next_item(m, op, count, got)
            if learning:
                with m.State("WORD"):
                    words = self.o_weights
                    m.d.comb += [words.valid.eq(checked), words.payload.eq(args)]
                    with m.If(words.ready | ~checked):
                        self._next_item(m, op, count, got)
            with m.State("CHECKSUM"):
                m.d.comb += byte.ready.eq(1)
                with m.If(byte.valid & checked):  # carried out: release the command
                    m.d.comb += self.commit.eq(1)
                    m.d.sync += checked.eq(0)
                    m.next = "JOB"
                with m.Elif(byte.valid & (byte.payload == crc)):  # right: again, for real
                    m.d.comb += self.rewind.eq(1)
                    m.d.sync += [checked.eq(1), crc.eq(0)]
                    m.next = "OPCODE"
                with m.Elif(byte.valid):
                    refuse(Fault.CHECKSUM)
                with m.Elif(stuck):
                    refuse(Fault.LENGTH)
            with m.State("REFUSE"):
                m.d.sync += [job.p.arg.eq(op), op.eq(Tag.ERROR)]
                m.next = "JOB"
            with m.State("JOB"):
                m.d.comb += job.valid.eq(1)
                m.d.sync += crc.eq(0)
                with m.If(job.ready):
                    m.next = "OPCODE"
        return m

    def _event(self, m: Module, op: Signal, args: Signal) -> None:
        """The ``o_event`` payload of command ``op`` with arguments ``args``."""
        event = self.o_event.p
        framing = self.framing
        with m.Switch(op):
            with m.Case(Opcode.CLEAR):
                m.d.comb += event.kind.eq(EventKind.CLEAR)
            with m.Case(Opcode.SPIKES):
                m.d.comb += [event.kind.eq(EventKind.SPIKE), event.index.eq(args)]
            with m.Case(Opcode.STEP):
                m.d.comb += event.kind.eq(EventKind.STEP)
                if self.config.learning is not None:
                    m.d.comb += [
                        event.learn.eq(args[STEP_LEARN_BIT]),
                        event.shift.eq(args[8:16]),
                        event.label.eq(args[16 : 16 + 8 * framing.label]),
                    ]
            if self.config.learning is not None:
                with m.Case(Opcode.READ):
                    m.d.comb += event.kind.as_value().eq(READ_WEIGHTS)

    @staticmethod
    def _next_item(m: Module, op: Signal, count: Signal, got: Signal) -> None:
        """After an event or word is taken (or skipped): the next item of ``SPIKES`` or
        ``LOAD``, or the command's CRC."""
        m.next = "CHECKSUM"
        with m.If(((op == Opcode.SPIKES) | (op == Opcode.LOAD)) & (count != 1)):
            m.d.sync += [count.eq(count - 1), got.eq(0)]
            m.next = "ARGS"
