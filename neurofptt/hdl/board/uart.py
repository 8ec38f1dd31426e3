"""The board's serial link: an 8N1 UART receiver and transmitter.

A frame is a start bit (0), eight data bits, least significant first, and a stop bit (1); the
line idles at 1.  Both ends count ``divisor`` clock cycles per bit, the board clock divided by
the baud rate (:func:`baud_divisor`), so the link needs no clock of its own.

The receiver samples each bit in its middle, half a bit after the falling edge of the start bit
and then every ``divisor`` cycles, so it tolerates a baud rate mismatch of a few percent.  A
frame whose stop bit reads 0 is not a byte: with all data bits 0 it is a *break* (the host held
the line low for a whole frame, which a serial port sends on request), otherwise a framing
error.  The board uses a break as its reset, so a host can bring it back to a known state
whatever it was doing.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from neurofptt.errors import ConfigError

__all__ = ["BAUD_TOLERANCE", "MIN_DIVISOR", "UartRx", "UartTx", "baud_divisor"]

#: the fewest clock cycles per bit: the receiver needs a middle to sample after its two-stage
#: input synchroniser
MIN_DIVISOR = 4
#: the largest relative difference between the requested baud rate and the one the divisor
#: gives; the receiver's mid-bit sampling tolerates about 5 % over a frame, shared by both ends
BAUD_TOLERANCE = 0.02


def _check_divisor(divisor: int) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ConfigError(
            f"UART divisor {divisor!r} must be an integer of at least {MIN_DIVISOR} clock cycles "
            "per bit; lower the baud rate"
        )
    return divisor


def baud_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``, rounded to the nearest; a
    :class:`ConfigError` when the rate it gives is off by more than :data:`BAUD_TOLERANCE`."""
    if baud <= 0:
        raise ConfigError(f"baud rate {baud} must be positive")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ConfigError(
            f"{baud} baud is too fast for a {clock_hz / 1e6:g} MHz clock (at least "
            f"{MIN_DIVISOR} cycles per bit); choose at most {int(clock_hz // MIN_DIVISOR)} baud"
        )
    error = abs(clock_hz / divisor - baud) / baud
    if error > BAUD_TOLERANCE:
        raise ConfigError(
            f"{baud} baud cannot be made from a {clock_hz / 1e6:g} MHz clock: the nearest divisor "
            f"{divisor} gives {clock_hz / divisor:.0f} baud ({error:.1%} off); choose another rate"
        )
    return divisor


class UartRx(wiring.Component):
    """Receives 8N1 frames on ``rx``.

    ``o_byte`` offers each received byte for one cycle (``always_ready``: a UART cannot wait,
    so a consumer that is not ready loses it).  ``framing_error`` and ``brk`` pulse for one
    cycle at the stop bit of a frame that is not a byte, ``brk`` when it was a break; after
    either the receiver waits for the line to return to 1 before it looks for a start bit, so a
    long break gives one pulse per frame time and nothing after it.
    """

    def __init__(self, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__(
            {
                "rx": In(1, init=1),
                "o_byte": Out(stream.Signature(8, always_ready=True)),
                "framing_error": Out(1),
                "brk": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        divisor = self.divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(divisor))
        bit = Signal(range(8))
        shift = Signal(8)
        m.d.comb += self.o_byte.payload.eq(shift)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"), m.If(~line):
                m.d.sync += timer.eq(divisor // 2 - 1)
                m.next = "START"
            with m.State("START"), m.If(timer == 0):
                # still low in the middle of the start bit: a frame, else a glitch
                with m.If(line):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"), m.If(timer == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], line)), bit.eq(bit + 1), timer.eq(divisor - 1)]
                with m.If(bit == 7):
                    m.next = "STOP"
            with m.State("STOP"), m.If(timer == 0):
                with m.If(line):
                    m.d.comb += self.o_byte.valid.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.brk.eq(shift == 0), self.framing_error.eq(shift != 0)]
                    m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"), m.If(line):
                m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Sends each byte taken on ``i_byte`` as an 8N1 frame on ``tx``; ``i_byte`` is ready
    whenever no frame is being sent (it does not depend on ``valid``), so bytes offered back
    to back leave with no idle time between frames."""

    def __init__(self, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__({"i_byte": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        divisor = self.divisor
        # the frame from the bit on the line: start, data, stop; ones shift in behind it
        frame = Signal(10, init=1)
        left = Signal(range(11))  # bits of the frame still to send, the current one included
        timer = Signal(range(divisor))
        m.d.comb += [self.tx.eq(frame[0]), self.i_byte.ready.eq(left == 0)]
        with m.If(self.i_byte.valid & self.i_byte.ready):
            m.d.sync += [
                frame.eq(Cat(0, self.i_byte.payload, 1)),
                left.eq(10),
                timer.eq(divisor - 1),
            ]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [frame.eq(Cat(frame[1:], 1)), left.eq(left - 1), timer.eq(divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
