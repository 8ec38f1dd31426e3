"""A board around the core: a UART host link, its command decoder and response encoder, and
the builds for FPGA boards.  ``docs/boards.md`` specifies the command map byte by byte."""

from neurofptt.hdl.board.uart import UartRx, UartTx, baud_divisor

__all__ = ["UartRx", "UartTx", "baud_divisor"]
