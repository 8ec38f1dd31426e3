"""The host driver: a :class:`Board` loads a quantized network, runs samples, learns from
labels and reads the weights back, speaking the command map of
:mod:`neurofptt.hdl.board.protocol` over a :class:`~neurofptt.board.transport.Transport`.

The driver keeps the board busy: it sends commands ahead of their responses, as many as the
board's receive buffer holds (the bytes of every command whose response has not come yet stay
within :attr:`~neurofptt.hdl.board.protocol.BoardInfo.rx_buffer`), and reads the responses in
order as it needs room or results.  The functions ``*_command`` build each command's bytes,
its CRC included, and :func:`read_response` parses a response and checks its CRC, so the
protocol can also be driven without a :class:`Board`.

A corrupted byte is never taken for data: a response that fails its CRC, and a command the
board refused for its CRC, raise :class:`~neurofptt.board.transport.LinkError`.  The driver
does not resend on its own, since the commands around the lost one may already have run (and a
learning core's weights moved); the caller resets the board and loads the network again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from neurofptt.board.transport import BoardError, LinkError, SerialTransport, Transport
from neurofptt.hdl.board.crc import crc8
from neurofptt.hdl.board.protocol import (
    DEFAULT_BAUD,
    ERROR_BYTES,
    INFO_BYTES,
    MAX_COUNT,
    PROTOCOL_VERSION,
    STEP_LEARN_BIT,
    BoardInfo,
    Fault,
    Framing,
    Opcode,
    Tag,
    config_crc,
    frame,
    learning_mode,
    weights_crc,
)
from neurofptt.hdl.ports import weight_dump_layout
from neurofptt.onchip import MATRICES, LearningState
from neurofptt.quant.golden import check_spike_input, predict
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.verify.learning import decode_dump, load_words, sent_labels, step_commands
from neurofptt.verify.streams import decode_word, encode_word

__all__ = [
    "Board",
    "BoardTrace",
    "Record",
    "clear_command",
    "info_command",
    "load_commands",
    "read_command",
    "read_response",
    "spikes_commands",
    "step_command",
]

#: a record of a response: its tag and its bytes
Record = tuple[Tag, bytes]


def _number(value: int, nbytes: int) -> bytes:
    return int(value).to_bytes(nbytes, "little", signed=value < 0)


#: bytes of a command besides its arguments and items: opcode, count, CRC
_OVERHEAD = 3


def info_command() -> bytes:
    """``INFO``: identify the bitstream."""
    return frame(bytes([Opcode.INFO]))


def clear_command() -> bytes:
    """``CLEAR``: zero the neurons (the start of a sample)."""
    return frame(bytes([Opcode.CLEAR]))


def spikes_commands(indices: Sequence[int], framing: Framing, per_command: int) -> list[bytes]:
    """``SPIKES`` commands for the input ``indices`` of one step, at most ``per_command`` to a
    command (none for a silent step)."""
    out = []
    for at in range(0, len(indices), per_command):
        chunk = indices[at : at + per_command]
        body = b"".join(_number(i, framing.in_index) for i in chunk)
        out.append(frame(bytes([Opcode.SPIKES, len(chunk)]) + body))
    return out


def step_command(framing: Framing, learn: bool = False, label: int = 0, shift: int = 0) -> bytes:
    """``STEP``: end of the step's input spikes; on a learning core ``learn`` asks for an
    update toward readout ``label`` with error shift ``shift`` after it."""
    flags = int(learn) << STEP_LEARN_BIT
    return frame(bytes([Opcode.STEP, flags, shift]) + _number(label, framing.label))


def load_commands(words: Sequence[int], framing: Framing, per_command: int) -> list[bytes]:
    """``LOAD`` commands carrying the raw ``i_weights`` payloads ``words``, at most
    ``per_command`` to a command."""
    out = []
    for at in range(0, len(words), per_command):
        chunk = words[at : at + per_command]
        body = b"".join(_number(w, framing.word) for w in chunk)
        out.append(frame(bytes([Opcode.LOAD, len(chunk)]) + body))
    return out


def read_command() -> bytes:
    """``READ``: send every weight word."""
    return frame(bytes([Opcode.READ]))


def read_response(
    read: Callable[[int], bytes], op: Opcode, framing: Framing | None
) -> list[Record]:
    """The records of the response to ``op``, read with ``read(n)`` up to its end byte and CRC.

    A :class:`LinkError` for a CRC that does not match, a byte that starts no record, or the
    board's refusal of a corrupted command; a :class:`BoardError` for an opcode the board does
    not know.  ``framing`` is the core's (:meth:`Framing.of`); without it only an ``INFO``
    record is understood."""
    sizes = {Tag.INFO: INFO_BYTES}
    if framing is not None:
        sizes.update(
            {Tag.SPIKE: framing.rec_index, Tag.READOUT: framing.value, Tag.WORD: framing.word}
        )
    records: list[Record] = []
    crc = 0

    def take(n: int) -> bytes:
        nonlocal crc
        data = read(n)
        crc = crc8(data, crc)
        return data

    def check_crc() -> None:
        (sent,) = read(1)
        if sent != crc:
            raise LinkError(
                f"the response to {op.name} failed its CRC (sent {sent:#04x}, computed "
                f"{crc:#04x}) after {len(records)} records: a byte was corrupted on the link; "
                "reset the board and load the network again",
                records,
            )

    while True:
        (first,) = take(1)
        if first == op:
            check_crc()
            return records
        if first == Tag.ERROR:
            code, fault = take(ERROR_BYTES)
            check_crc()
            _refused(op, code, fault)
        if first not in sizes:
            raise LinkError(
                f"unexpected byte {first:#04x} in the response to {op.name} after "
                f"{len(records)} records; the stream lost a byte: reset the board",
                records,
            )
        tag = Tag(first)
        records.append((tag, take(sizes[tag])))


def _refused(op: Opcode, code: int, fault: int) -> NoReturn:
    """Raise the error of the board's error record for the command ``op``: it refused a
    command of opcode ``code`` for ``fault``."""
    if fault == Fault.OPCODE:
        raise BoardError(
            f"the board does not know opcode {code:#04x} (answering {op.name}); the bitstream "
            "is not the one the driver expects, or the stream lost a byte: reset the board"
        )
    why = {
        Fault.CHECKSUM: "its CRC did not match: a byte was corrupted on the link",
        Fault.LENGTH: "its count made it longer than the receive buffer: a corrupted byte",
    }.get(fault, f"fault {fault}")
    raise LinkError(
        f"the board refused a command (opcode {code:#04x}, answering {op.name}) and discarded "
        f"it: {why}; reset the board and load the network again"
    )


@dataclass
class BoardTrace:
    """What the board produced for a batch of samples, shaped as the golden model's trace:
    ``spikes`` ``(B, T, n_rec)`` and ``readout`` ``(B, T, n_out)``."""

    spikes: np.ndarray
    readout: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """Arg-max of the readout at the last step, as :func:`~neurofptt.quant.golden.predict`."""
        return predict(self.readout)


class Board:
    """A board running a bitstream of ``neurofptt build``, reached through ``transport`` (or a
    serial port name, opened at ``baud``).

    Opening resets the board with a break and reads its ``INFO``; :meth:`load` then names the
    network it runs (on a learning core the weights are sent; an inference core holds the
    weights it was built with, and :meth:`load` checks that they are these).
    """

    def __init__(self, transport: Transport | str, baud: int = DEFAULT_BAUD) -> None:
        if isinstance(transport, str):
            transport = SerialTransport(transport, baud)
        self.transport = transport
        self.net: QuantizedNetwork | None = None
        self.framing: Framing | None = None
        self._pending: deque[tuple[int, Opcode, Callable[[list[Record]], None]]] = deque()
        self._in_flight = 0
        self.info = self.reset()

    # -- the connection ---------------------------------------------------------------------

    def reset(self) -> BoardInfo:
        """Reset the board (a break) and read its ``INFO``; responses still pending are lost
        and the network must be loaded again."""
        self.transport.send_break()
        self._pending.clear()
        self._in_flight = 0
        self.net = self.framing = None
        self.transport.write(info_command())
        try:
            records = read_response(self.transport.read, Opcode.INFO, None)
        except LinkError as exc:
            if exc.records:  # a board of protocol 1 sends no CRC; its INFO says so
                self._info(exc.records)
            raise
        self.info = self._info(records)
        return self.info

    def refresh_info(self) -> BoardInfo:
        """``INFO`` again, answered after every command sent before it: its status bits say
        whether the board lost a byte or saw a bad frame since it was reset."""
        records: list[Record] = []
        self._send(info_command(), Opcode.INFO, records.extend)
        self._drain()
        self.info = self._info(records)
        return self.info

    @staticmethod
    def _info(records: list[Record]) -> BoardInfo:
        """The board's ``INFO`` from the records of its response, of a version this driver
        speaks."""
        if [tag for tag, _ in records] != [Tag.INFO]:
            raise BoardError(f"the board answered INFO with {len(records)} records, not one")
        try:
            info = BoardInfo.parse(records[0][1])
        except ValueError as exc:
            raise BoardError(str(exc)) from None
        if info.version != PROTOCOL_VERSION:
            raise BoardError(
                f"the board speaks protocol {info.version}, this driver {PROTOCOL_VERSION}; "
                "rebuild the bitstream with this version of neurofptt"
            )
        return info

    def close(self) -> None:
        """Wait for every pending response, then release the transport."""
        try:
            self._drain()
        finally:
            self.transport.close()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading ----------------------------------------------------------------------------

    def load(self, net: QuantizedNetwork, wbar: dict[str, np.ndarray] | None = None) -> None:
        """Make ``net`` the network the board runs.

        The board's core must have been built for ``net.config``.  A learning core is sent
        ``net``'s weights, and for FPTT the stored ``W_bar`` words ``wbar`` (``W_bar`` or
        ``W - W_bar`` as the config stores it; default: those of the start of learning); the
        load restarts learning (``docs/hardware.md``, "Loading weights").  An inference core
        cannot load weights: ``net``'s must be the ones it was built with.
        """
        info, cfg = self.info, net.config
        if config_crc(cfg) != info.config_crc:
            raise BoardError(
                f"the board's core ({info.mode}, {info.sizes}, {info.lanes} lanes) was built for "
                f"another hardware config than this network's ({learning_mode(cfg)}, "
                f"{cfg.n_in}-{cfg.n_rec}-{cfg.n_out}, {cfg.lanes} lanes); build it for this "
                "network with `neurofptt build`"
            )
        if cfg.learning is None:
            if weights_crc(net) != info.weights_crc:
                raise BoardError(
                    "the board's inference core holds other weights than this network's and "
                    "cannot load weights; build it for this network with `neurofptt build`"
                )
            self.net, self.framing = net, Framing.of(cfg)
            return
        if wbar is None:
            wbar = LearningState.start(net).wbar
        layout = weight_dump_layout(cfg)
        words = load_words(net, wbar)
        raw = [encode_word(layout, w, i == len(words) - 1) for i, w in enumerate(words)]
        self.net, self.framing = net, Framing.of(cfg)
        per = min(MAX_COUNT, (info.rx_buffer - _OVERHEAD) // self.framing.word)
        for command in load_commands(raw, self.framing, per):
            self._send(command, Opcode.LOAD)
        self._drain()

    # -- running ----------------------------------------------------------------------------

    def run(self, spikes: np.ndarray) -> BoardTrace:
        """Run the input spikes ``(B, T, n_in)``, each sample from cleared neurons, without
        learning; returns every step's spikes and readouts."""
        return self._samples(spikes, None)

    def learn(self, spikes: np.ndarray, labels: np.ndarray) -> BoardTrace:
        """Run the samples ``(B, T, n_in)`` with their labels (one per sample ``(B,)``, or per
        step ``(B, T)`` with ``-1`` where a step has no target) and let a learning core update
        its weights on the scheduled steps, exactly as
        :func:`~neurofptt.verify.learning.golden_learning_run` does; returns every step's
        spikes and readouts (those of an update step are from before its update)."""
        net = self._loaded()
        if net.config.learning is None:
            raise BoardError("the board's core is an inference core; it cannot learn")
        return self._samples(spikes, np.asarray(labels, np.int64))

    def read_weights(self) -> tuple[QuantizedNetwork, dict[str, np.ndarray]]:
        """The weights on the board, and for FPTT the stored ``W_bar`` words by matrix
        (``"in"``, ``"rec"``, ``"out"``; empty for e-prop)."""
        net = self._loaded()
        cfg = net.config
        if cfg.learning is None:
            raise BoardError("the board's core is an inference core; it has no weight read-back")
        layout = weight_dump_layout(cfg)
        words = []

        def collect(records: list[Record]) -> None:
            for _, data in records:
                word, _ = decode_word(layout, int.from_bytes(data, "little"))
                words.append(word)

        self._send(read_command(), Opcode.READ, collect)
        self._drain()
        try:
            dump = decode_dump(net, words)
        except ValueError as exc:
            raise BoardError(f"the board's weight dump is malformed: {exc}") from None
        learned = QuantizedNetwork(cfg, dump["in"], dump["rec"], dump["out"])
        return learned, {m: dump[f"wbar_{m}"] for m in MATRICES if f"wbar_{m}" in dump}

    # -- the pipeline -----------------------------------------------------------------------

    def _loaded(self) -> QuantizedNetwork:
        if self.net is None:
            raise BoardError("no network on the board yet; call load(net) first")
        return self.net

    def _samples(self, spikes: np.ndarray, labels: np.ndarray | None) -> BoardTrace:
        net = self._loaded()
        cfg = net.config
        framing = Framing.of(cfg)
        x = check_spike_input(spikes, cfg.n_in)
        batch, steps, _ = x.shape
        trace = BoardTrace(
            np.zeros((batch, steps, cfg.n_rec), bool), np.zeros((batch, steps, cfg.n_out), np.int64)
        )
        learn = shift = label = np.zeros((batch, steps), np.int64)
        if labels is not None:
            per_step = labels.ndim == 2
            commands = [
                step_commands(net, steps, labels[b] if per_step else None) for b in range(batch)
            ]
            learn = np.stack([c[0] for c in commands])
            shift = np.stack([c[1] for c in commands])
            label = sent_labels(labels, learn)
        per = min(MAX_COUNT, (self.info.rx_buffer - _OVERHEAD) // framing.in_index)
        for b in range(batch):
            self._send(clear_command(), Opcode.CLEAR)
            for t in range(steps):
                for command in spikes_commands(np.flatnonzero(x[b, t]), framing, per):
                    self._send(command, Opcode.SPIKES)
                step = step_command(framing, bool(learn[b, t]), int(label[b, t]), int(shift[b, t]))
                self._send(step, Opcode.STEP, self._collect_step(trace, b, t, framing))
        self._drain()
        return trace

    def _collect_step(
        self, trace: BoardTrace, b: int, t: int, framing: Framing
    ) -> Callable[[list[Record]], None]:
        """The handler of step ``t`` of sample ``b``'s response: its spikes and readouts."""
        n_rec, n_out = trace.spikes.shape[2], trace.readout.shape[2]

        def collect(records: list[Record]) -> None:
            values = []
            where = f"sample {b} step {t}"
            for tag, data in records:
                if tag == Tag.SPIKE and not values and int.from_bytes(data, "little") < n_rec:
                    trace.spikes[b, t, int.from_bytes(data, "little")] = True
                elif tag == Tag.READOUT:
                    values.append(int.from_bytes(data, "little", signed=True))
                else:
                    raise BoardError(f"{where}: unexpected record {tag.name} {data.hex()}")
            if len(values) != n_out:
                raise BoardError(f"{where}: {len(values)} readout values, not {n_out}")
            trace.readout[b, t] = values

        return collect

    def _send(
        self,
        command: bytes,
        op: Opcode,
        handler: Callable[[list[Record]], None] | None = None,
    ) -> None:
        """Send ``command`` once the board's receive buffer has room for it, reading the
        oldest responses until it has; ``handler`` gets the records of its response."""
        if len(command) > self.info.rx_buffer:
            raise BoardError(f"a {len(command)}-byte command exceeds the board's receive buffer")
        while self._in_flight + len(command) > self.info.rx_buffer:
            self._complete_oldest()
        self.transport.write(command)
        self._pending.append((len(command), op, handler or self._expect_none(op)))
        self._in_flight += len(command)

    @staticmethod
    def _expect_none(op: Opcode) -> Callable[[list[Record]], None]:
        def check(records: list[Record]) -> None:
            if records:
                raise BoardError(f"the board answered {op.name} with {len(records)} records")

        return check

    def _complete_oldest(self) -> None:
        size, op, handler = self._pending.popleft()
        self._in_flight -= size
        handler(read_response(self.transport.read, op, self.framing))

    def _drain(self) -> None:
        while self._pending:
            self._complete_oldest()
