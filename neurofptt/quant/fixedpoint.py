"""Integer helpers shared by the quantizer and the golden model.

They define the three operations where fixed-point hardware silently differs from float
arithmetic: saturation (hardware clamps, it never wraps), arithmetic right shift (it floors toward
minus infinity, it does not truncate toward zero) and rounding of a real number to the integer grid.
"""

from __future__ import annotations

import numpy as np


def signed_range(bits: int) -> tuple[int, int]:
    """Smallest and largest value of a two's-complement ``bits``-bit integer."""
    if bits < 1:
        raise ValueError(f"a signed format needs at least 1 bit, got {bits}")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x: np.ndarray | int, bits: int) -> np.ndarray:
    """Clamp integers to the signed ``bits``-bit range, as the hardware's saturating adder does."""
    lo, hi = signed_range(bits)
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def shift_right(x: np.ndarray | int, shift: int) -> np.ndarray:
    """Arithmetic right shift: ``floor(x / 2**shift)``, the semantics of Amaranth's ``>>`` on a
    signed value and of Verilog's ``>>>``."""
    if shift < 0:
        raise ValueError(f"shift must be non-negative, got {shift}")
    return np.right_shift(np.asarray(x, dtype=np.int64), shift)


def leak(x: np.ndarray, shift: int) -> np.ndarray:
    """Shift leak ``x - (x >> shift)``: multiplies by ``1 - 2**-shift`` with flooring error.

    The flooring makes the decay of a negative value slightly weaker than ``beta * x`` and of a
    positive one slightly stronger; the error is below one LSB per step.
    """
    x = np.asarray(x, dtype=np.int64)
    return x - shift_right(x, shift)


def round_to_grid(x: np.ndarray, lsb_exponent: int, bits: int) -> tuple[np.ndarray, int]:
    """Round reals to the nearest multiple of ``2**lsb_exponent`` and saturate to ``bits`` bits.

    Returns the integer codes (``x ~ code * 2**lsb_exponent``) and how many values were clamped.
    Ties round to even (``numpy.rint``), which has no bias on average.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantize NaN or infinite values")
    codes = np.rint(np.ldexp(x, -lsb_exponent))
    lo, hi = signed_range(bits)
    clipped = int(np.count_nonzero((codes < lo) | (codes > hi)))
    return np.clip(codes, lo, hi).astype(np.int64), clipped


def usat(x: np.ndarray, bits: int) -> np.ndarray:
    """Clamp integers to the unsigned ``bits``-bit range ``[0, 2**bits - 1]``."""
    return np.clip(x, 0, (1 << bits) - 1)
