"""The link's checksum: CRC-8 with polynomial ``x^8 + x^2 + x + 1`` (``0x07``), initial value 0,
no reflection, no final XOR (the parameters catalogued as CRC-8/SMBUS; check value ``0xF4`` for
the ASCII bytes ``123456789``).

One bitwise definition, :func:`crc8_update`, serves both ends of the link: the host driver runs
it on integers, and :func:`crc8_next` builds the gateware from it.  The update XORs the byte
into the running value and then shifts that through the polynomial eight times, which is linear
over GF(2): each bit of the result is the XOR of the bits whose unit vectors set it, and
:func:`crc8_next` finds those bits by running :func:`crc8_update` on every unit vector and
emits that XOR network (no table, no loop in the hardware).  The polynomial divides by
``x + 1``, so every odd number of flipped bits is caught, as is every burst of up to 8 bits; any
other corruption passes with a chance of 1 in 256.
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from amaranth.hdl import Cat, Value

__all__ = ["CRC8_POLY", "crc8", "crc8_next", "crc8_update"]

#: the generator polynomial without its ``x^8`` term
CRC8_POLY = 0x07


def crc8_update(crc: int, byte: int) -> int:
    """The running CRC ``crc`` after one more ``byte`` (most significant bit first)."""
    crc ^= byte
    for _ in range(8):
        crc = ((crc << 1) ^ CRC8_POLY if crc & 0x80 else crc << 1) & 0xFF
    return crc


def crc8(data: bytes, crc: int = 0) -> int:
    """The CRC of ``data``, continuing from the running value ``crc`` (0: from the start); a
    message followed by its own CRC has CRC 0."""
    return reduce(crc8_update, data, crc)


def crc8_next(crc: Value, byte: Value) -> Value:
    """Gateware of :func:`crc8_update`: the 8-bit running value after ``byte``."""
    mixed = crc ^ byte  # as crc8_update begins; the rest is linear in this alone
    units = [crc8_update(1 << i, 0) for i in range(8)]
    taps = [[mixed[i] for i, u in enumerate(units) if u >> bit & 1] for bit in range(8)]
    return Cat(*(reduce(xor, t) for t in taps))
