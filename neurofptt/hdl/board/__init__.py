"""A board around the core: a UART host link, its receive buffer, command decoder and response
encoder with a CRC-8 on every command and response, and the builds for FPGA boards.
``docs/boards.md`` specifies the command map byte by byte."""

from neurofptt.hdl.board.crc import CRC8_POLY, crc8
from neurofptt.hdl.board.decoder import CommandDecoder
from neurofptt.hdl.board.encoder import ResponseEncoder
from neurofptt.hdl.board.protocol import BoardInfo, Fault, Framing, Opcode, Tag, info_record
from neurofptt.hdl.board.rxbuffer import RewindBuffer
from neurofptt.hdl.board.top import RX_BUFFER, BoardTop
from neurofptt.hdl.board.uart import UartRx, UartTx, baud_divisor

__all__ = [
    "CRC8_POLY",
    "RX_BUFFER",
    "BoardInfo",
    "BoardTop",
    "CommandDecoder",
    "Fault",
    "Framing",
    "Opcode",
    "ResponseEncoder",
    "RewindBuffer",
    "Tag",
    "UartRx",
    "UartTx",
    "baud_divisor",
    "crc8",
    "info_record",
]
