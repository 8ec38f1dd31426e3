"""How the host driver reaches a board: a byte pipe with a break.

:class:`Transport` is all that :class:`~neurofptt.board.Board` needs, so the same driver talks
to a real board through a serial port (:class:`SerialTransport`, pyserial) and to the simulated
board's UART pins (:class:`neurofptt.board.sim.UartPins`).
"""

from __future__ import annotations

from typing import Protocol

from neurofptt.errors import NeurofpttError, ToolMissingError

try:
    import serial
except ImportError:  # the `board` extra is not installed; SerialTransport says so
    serial = None

__all__ = ["BREAK_SECONDS", "BoardError", "LinkError", "SerialTransport", "Transport"]

#: how long a break holds the line low: many frames at any standard rate
BREAK_SECONDS = 0.05


class BoardError(NeurofpttError):
    """The board did not answer, answered what the protocol does not allow, or was built for
    another network."""


class LinkError(BoardError):
    """A byte was corrupted or lost on the link: a response failed its CRC or broke the
    command map, or the board refused a command whose CRC did not match.  The board carried out
    the commands before and possibly some after; :meth:`~neurofptt.board.Board.reset` and load
    the network again.  ``records``: what the response held before the fault."""

    def __init__(self, message: str, records: list | None = None) -> None:
        super().__init__(message)
        self.records = records or []


class Transport(Protocol):
    """A full-duplex byte pipe to the board's UART."""

    def write(self, data: bytes) -> None:
        """Send ``data``."""
        ...

    def read(self, n: int) -> bytes:
        """Exactly the next ``n`` received bytes; :class:`BoardError` if they do not come in
        time."""
        ...

    def send_break(self) -> None:
        """Hold the line low for longer than a frame (the board resets), then drop whatever
        was received before."""
        ...

    def close(self) -> None:
        """Release the port."""
        ...


class SerialTransport:
    """A serial port (``/dev/ttyUSB0``, ``COM3``, ...) at ``baud``, 8N1, no flow control;
    ``timeout`` is how long a read waits for the board before it gives up."""

    def __init__(self, port: str, baud: int, timeout: float = 2.0) -> None:
        if serial is None:
            raise ToolMissingError(
                "pyserial is not installed; install the board extra with "
                "`pip install 'neurofptt[board]'` (in a source checkout: `pip install -e .[board]`)"
            )
        try:
            self.port = serial.Serial(port, baud, timeout=timeout, write_timeout=timeout)
        except serial.SerialException as exc:
            raise BoardError(f"cannot open {port}: {exc}") from exc
        self.timeout = timeout

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) < n:
            raise BoardError(
                f"the board sent {len(data)} of {n} bytes within {self.timeout:g} s on "
                f"{self.port.port}; check that the bitstream is loaded and the baud rate is "
                f"the one it was built for ({self.port.baudrate} here)"
            )
        return data

    def send_break(self) -> None:
        self.port.send_break(BREAK_SECONDS)
        self.port.reset_input_buffer()

    def close(self) -> None:
        self.port.close()
