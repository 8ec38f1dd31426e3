"""The host side of a board built by ``neurofptt build``: the driver and its transports.

``Board(port)`` opens a serial port (the ``board`` extra installs pyserial), ``load`` names or
sends the network, ``run`` and ``learn`` stream samples, ``read_weights`` reads the learned
weights back.  Any object with the :class:`Transport` methods can stand in for the port; the
simulated board's UART pins are one (:mod:`neurofptt.board.sim`).
"""

from neurofptt.board.driver import Board, BoardTrace, read_response
from neurofptt.board.transport import BoardError, LinkError, SerialTransport, Transport
from neurofptt.hdl.board.protocol import DEFAULT_BAUD

__all__ = [
    "DEFAULT_BAUD",
    "Board",
    "BoardError",
    "BoardTrace",
    "LinkError",
    "SerialTransport",
    "Transport",
    "read_response",
]
