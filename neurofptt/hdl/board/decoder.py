"""The command decoder: bytes from the host in, the core's events and weight words out.

It reads one command at a time from the receive buffer and turns it into what the core's ports
take (``docs/hardware.md``): ``CLEAR``, one ``SPIKE`` event per input index of ``SPIKES``,
``STEP`` with its ``learn``, ``label`` and ``shift`` fields, ``READ_WEIGHTS``, and the words of
``LOAD`` on ``i_weights``.  When the core has taken a command's last event or word it hands
the response encoder a *job* (which response to send) and goes on with the next command, so
the encoder answers commands in the order they came while the decoder feeds the core the next
one.  An unknown opcode becomes an error job naming it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.board.protocol import STEP_LEARN_BIT, Framing, Opcode, Tag
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
    """A response to send: ``op``, the opcode it answers (or :attr:`Tag.ERROR`), and ``arg``,
    the unknown opcode of an error."""
    return data.StructLayout({"op": 8, "arg": 8})


class CommandDecoder(wiring.Component):
    """Decodes host commands from ``i_byte`` into ``o_event`` (the core's ``i_event``),
    ``o_weights`` (a learning core's ``i_weights``) and ``o_job`` (the response encoder's
    work).  ``LOAD`` and ``READ`` are unknown opcodes on an inference core."""

    def __init__(self, config: HardwareConfig) -> None:
        self.config = config
        self.framing = Framing.of(config)
        learning = config.learning is not None
        events = learn_event_layout(config) if learning else event_layout(config.n_in)
        members = {
            "i_byte": In(stream.Signature(8)),
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
        m.d.comb += last_arg.eq(framing.step_args - 1)
        with m.If(op == Opcode.SPIKES):
            m.d.comb += last_arg.eq(framing.in_index - 1)
        if learning:
            with m.If(op == Opcode.LOAD):
                m.d.comb += last_arg.eq(framing.word - 1)

        m.d.comb += job.p.op.eq(op)
        with m.FSM():
            with m.State("OPCODE"):
                m.d.comb += byte.ready.eq(1)
                with m.If(byte.valid):
                    m.d.sync += [op.eq(byte.payload), got.eq(0)]
                    with m.Switch(byte.payload):
                        with m.Case(Opcode.INFO):
                            m.next = "JOB"
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
                            m.d.sync += [op.eq(Tag.ERROR), job.p.arg.eq(byte.payload)]
                            m.next = "JOB"
            with m.State("COUNT"):
                m.d.comb += byte.ready.eq(1)
                with m.If(byte.valid):
                    m.d.sync += count.eq(byte.payload)
                    with m.If(byte.payload == 0):
                        m.next = "JOB"
                    with m.Else():
                        m.next = "ARGS"
            with m.State("ARGS"):
                m.d.comb += byte.ready.eq(1)
                with m.If(byte.valid):
                    m.d.sync += [args.word_select(got, 8).eq(byte.payload), got.eq(got + 1)]
                    with m.If(got == last_arg):
                        m.next = "EVENT"
                        if learning:
                            with m.If(op == Opcode.LOAD):
                                m.next = "WORD"
            with m.State("EVENT"):
                m.d.comb += event.valid.eq(1)
                self._event(m, op, args)
                with m.If(event.ready):
                    self._next_item(m, op, count, got)
            if learning:
                with m.State("WORD"):
                    words = self.o_weights
                    m.d.comb += [words.valid.eq(1), words.payload.eq(args)]
                    with m.If(words.ready):
                        self._next_item(m, op, count, got)
            with m.State("JOB"):
                m.d.comb += job.valid.eq(1)
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
        """After an event or word is taken: the next item of ``SPIKES`` or ``LOAD``, or the
        response."""
        m.next = "JOB"
        with m.If(((op == Opcode.SPIKES) | (op == Opcode.LOAD)) & (count != 1)):
            m.d.sync += [count.eq(count - 1), got.eq(0)]
            m.next = "ARGS"
