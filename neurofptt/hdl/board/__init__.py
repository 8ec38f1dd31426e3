"""A board around the core: a UART host link, its command decoder and response encoder, and
the builds for FPGA boards.  ``docs/boards.md`` specifies the command map byte by byte."""

from neurofptt.hdl.board.decoder import CommandDecoder
from neurofptt.hdl.board.encoder import ResponseEncoder
from neurofptt.hdl.board.protocol import BoardInfo, Framing, Opcode, Tag, info_record
from neurofptt.hdl.board.top import RX_BUFFER, BoardTop
from neurofptt.hdl.board.uart import UartRx, UartTx, baud_divisor

__all__ = [
    "RX_BUFFER",
    "BoardInfo",
    "BoardTop",
    "CommandDecoder",
    "Framing",
    "Opcode",
    "ResponseEncoder",
    "Tag",
    "UartRx",
    "UartTx",
    "baud_divisor",
    "info_record",
]
