"""The board's command map: what the host sends over the UART and what the board answers.

Both ends read it from here, the gateware (:mod:`neurofptt.hdl.board.decoder` and
:mod:`~neurofptt.hdl.board.encoder`) and the host driver (:mod:`neurofptt.board`), so they cannot
disagree on a byte.  ``docs/boards.md`` is the specification; in short:

* A command is an opcode byte, a fixed number of argument bytes (which depend on the core's
  sizes, :class:`Framing`) and a CRC-8 of those bytes (:mod:`neurofptt.hdl.board.crc`);
  numbers are little-endian, signed ones in two's complement.  The board carries out a command
  only once its CRC is found right; a command that fails it is discarded and answered with an
  error record.
* Every command gets exactly one response, in the order sent: zero or more *records* (a tag byte
  and a fixed number of bytes), the command's own opcode byte, which ends it, and a CRC-8 of
  the response's bytes.  Record tags are lower-case letters and opcodes upper-case, so the end
  is never mistaken for a record.  An error record (:class:`Fault`) ends its response instead.
* The board buffers :attr:`BoardInfo.rx_buffer` received bytes.  A host that keeps the bytes of
  its unanswered commands within that never loses one (:mod:`neurofptt.board` does).
* A break on the line (the host holding it low for a frame or longer) resets everything but the
  weight memories and the receiver; the host then sends ``INFO`` to start again.

The ``INFO`` record identifies the bitstream: the core's sizes, its learning mode, the size of
the receive buffer and CRC-32s of the hardware configuration and of the weights it was built
with, so a host can refuse to talk to a board built for another network.
"""

from __future__ import annotations

import enum
import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from neurofptt.hdl.board.crc import crc8
from neurofptt.hdl.ports import index_bits, weight_dump_layout
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.network import QuantizedNetwork

__all__ = [
    "DEFAULT_BAUD",
    "ERROR_BYTES",
    "INFO_BYTES",
    "MAX_COUNT",
    "PROTOCOL_VERSION",
    "STEP_LEARN_BIT",
    "BoardInfo",
    "Fault",
    "Framing",
    "Opcode",
    "Tag",
    "config_crc",
    "frame",
    "info_record",
    "learning_mode",
    "weights_crc",
]

#: what ``INFO`` reports as the protocol version; a host refuses another (version 1 had no CRC)
PROTOCOL_VERSION = 2
#: the baud rate of a board unless its build names another (every USB-serial bridge has it)
DEFAULT_BAUD = 115_200
#: the most items (input spikes, weight words) one ``SPIKES`` or ``LOAD`` command carries
MAX_COUNT = 255
#: the learning modes by their ``INFO`` code
MODES = ("inference", "eprop", "fptt")


class Opcode(enum.IntEnum):
    """The first byte of a command; the response ends with the same byte."""

    INFO = ord("I")  #: identify the bitstream (an ``INFO`` record)
    CLEAR = ord("C")  #: ``CLEAR`` event: start of a sample
    SPIKES = ord("S")  #: count, then that many input indices: one ``SPIKE`` event each
    STEP = ord("T")  #: flags, shift, label: a ``STEP`` event; spikes and readouts come back
    LOAD = ord("L")  #: count, then that many weight words (learning cores)
    READ = ord("R")  #: ``READ_WEIGHTS``: every weight word comes back (learning cores)


class Tag(enum.IntEnum):
    """The first byte of a record in a response."""

    INFO = ord("i")  #: the ``INFO`` record
    SPIKE = ord("s")  #: a recurrent spike: the neuron's index
    READOUT = ord("o")  #: a readout value, in readout order
    WORD = ord("w")  #: a weight word (the ``o_weights`` payload)
    ERROR = ord("!")  #: the opcode received and a :class:`Fault`; the response ends there


class Fault(enum.IntEnum):
    """Why the board refused a command: the last byte of an error record."""

    OPCODE = 1  #: an unknown opcode; only its byte was read
    CHECKSUM = 2  #: the command's CRC did not match its bytes; the whole command was discarded
    LENGTH = 3  #: the command (its count corrupted) cannot fit the receive buffer, now dropped


#: the bit of ``STEP``'s flags byte that asks a learning core for an update after the step
STEP_LEARN_BIT = 0

# magic, version, mode, n_in, n_rec, n_out, lanes, weight_bits, membrane_bits, wbar_bits,
# receive buffer, config CRC, weights CRC, status
_INFO = struct.Struct("<2sBBHHHBBBBHIIB")
#: bytes of the ``INFO`` record after its tag
INFO_BYTES = _INFO.size
_MAGIC = b"NF"


#: bytes of an error record after its tag: the opcode received, the :class:`Fault`
ERROR_BYTES = 2


def frame(body: bytes) -> bytes:
    """A command or response: ``body`` followed by its CRC-8."""
    return body + bytes([crc8(body)])


def _bytes(bits: int) -> int:
    return -(-bits // 8)


def learning_mode(config: HardwareConfig) -> str:
    """``"inference"``, ``"eprop"`` or ``"fptt"``: what the core does with ``learn``."""
    return "inference" if config.learning is None else config.learning.mode


@dataclass(frozen=True)
class Framing:
    """Byte counts of the variable-width fields for one core: input index (``SPIKES``),
    neuron index (spike records), readout index (``STEP``'s label), readout value (readout
    records) and weight word (``LOAD`` and word records; 0 on an inference core)."""

    in_index: int
    rec_index: int
    label: int
    value: int
    word: int

    @classmethod
    def of(cls, config: HardwareConfig) -> Framing:
        word = 0 if config.learning is None else _bytes(weight_dump_layout(config).size)
        return cls(
            in_index=_bytes(index_bits(config.n_in)),
            rec_index=_bytes(index_bits(config.n_rec)),
            label=_bytes(index_bits(config.n_out)),
            value=_bytes(config.membrane_bits),
            word=word,
        )

    @property
    def step_args(self) -> int:
        """Argument bytes of ``STEP``: flags, shift, label."""
        return 2 + self.label


def config_crc(config: HardwareConfig) -> int:
    """CRC-32 of the hardware configuration (every field, as ``HardwareConfig.to_dict``
    writes it, keys sorted): equal for two configs exactly when they build the same core."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())


def weights_crc(net: QuantizedNetwork) -> int:
    """CRC-32 of the three weight matrices (``w_in``, ``w_rec``, ``w_out``, row-major, each
    weight a little-endian 16-bit word)."""
    crc = 0
    for w in (net.w_in, net.w_rec, net.w_out):
        crc = zlib.crc32(np.ascontiguousarray(w, "<i2").tobytes(), crc)
    return crc


def info_record(net: QuantizedNetwork, rx_buffer: int, status: int = 0) -> bytes:
    """The ``INFO`` record (without its tag) of a board built for ``net`` with a receive
    buffer of ``rx_buffer`` bytes; ``status`` is its last byte, which the board fills in."""
    cfg = net.config
    lc = cfg.learning
    wbar_bits = lc.wbar_bits if lc is not None and lc.mode == "fptt" else 0
    return _INFO.pack(
        _MAGIC,
        PROTOCOL_VERSION,
        MODES.index(learning_mode(cfg)),
        cfg.n_in,
        cfg.n_rec,
        cfg.n_out,
        cfg.lanes,
        cfg.weight_bits,
        cfg.membrane_bits,
        wbar_bits,
        rx_buffer,
        config_crc(cfg),
        weights_crc(net),
        status,
    )


@dataclass(frozen=True)
class BoardInfo:
    """What a board says about itself in its ``INFO`` record.

    ``status`` bit 0: a received byte was lost because the receive buffer was full; bit 1: a
    frame had a bad stop bit; bit 2: a command was refused with an error record (a CRC that did
    not match, an unknown opcode).  They stay set until a break resets the board.
    """

    version: int
    mode: str
    n_in: int
    n_rec: int
    n_out: int
    lanes: int
    weight_bits: int
    membrane_bits: int
    wbar_bits: int
    rx_buffer: int
    config_crc: int
    weights_crc: int
    status: int

    #: ``status`` bits
    OVERRUN = 1
    FRAMING = 2
    REFUSED = 4

    @classmethod
    def parse(cls, record: bytes) -> BoardInfo:
        """The fields of an ``INFO`` record; :class:`ValueError` if it is not one."""
        if len(record) != INFO_BYTES:
            raise ValueError(f"an INFO record has {INFO_BYTES} bytes, not {len(record)}")
        magic, version, mode, *fields = _INFO.unpack(record)
        if magic != _MAGIC or mode >= len(MODES):
            raise ValueError(f"not a neurofptt board's INFO record: {record.hex()}")
        return cls(version, MODES[mode], *fields)

    @property
    def sizes(self) -> str:
        """``n_in-n_rec-n_out`` for messages."""
        return f"{self.n_in}-{self.n_rec}-{self.n_out}"
