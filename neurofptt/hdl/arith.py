"""Combinational arithmetic of the datapath in Amaranth, each the twin of a numpy helper of the
golden model (:mod:`neurofptt.quant.fixedpoint`, :mod:`neurofptt.quant.lfsr`).

Saturation is explicit (``.eq`` alone would wrap), shifts are arithmetic (flooring), and
rounding to nearest uses one extra bit so a variable shift needs no special case.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, ValueLike, signed, unsigned

from neurofptt.quant.config import LFSR_BITS

__all__ = ["leak", "onehot", "pick", "saturate", "shift_right", "sround", "usat"]


def saturate(m: Module, value: ValueLike, bits: int, name: str) -> Signal:
    """``value`` clamped to the signed ``bits``-bit range (``.eq`` alone would wrap)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    wide = Signal(value.shape(), name=f"{name}_wide")  # one adder, shared by the comparisons
    out = Signal(signed(bits), name=name)
    m.d.comb += [wide.eq(value), out.eq(Mux(wide > hi, hi, Mux(wide < lo, lo, wide)))]
    return out


def leak(value: Value, shift: int) -> Value:
    """``v - (v >> shift)`` with an arithmetic (flooring) shift; ``value`` must be signed."""
    return value - (value >> shift)


def shift_right(x: Value, shift: Value | int, nearest: bool) -> Value:
    """``x >> shift``, floored or (``nearest``) rounded to nearest with ties up.

    ``(((x << 1) >> s) + 1) >> 1`` is ``(x + 2**(s-1)) >> s`` for every ``s >= 0`` (``s = 0``
    included), so a variable shift needs no special case: one more bit and an incrementer.
    """
    if not nearest:
        return x >> shift
    return (((x << 1) >> shift) + 1) >> 1


def sround(x: Value, shift: int, r: Value) -> Value:
    """Stochastic rounding of ``x / 2**shift`` with the 16-bit draw ``r`` (see ``lfsr.py``)."""
    if shift == 0:
        return x
    if shift <= LFSR_BITS:
        return (x + r[:shift]) >> shift
    return ((x >> (shift - LFSR_BITS)) + r) >> LFSR_BITS


def usat(m: Module, value: Value, bits: int, name: str) -> Signal:
    """``value`` (never negative here) clamped to ``[0, 2**bits - 1]``."""
    wide = Signal(value.shape(), name=f"{name}_wide")
    out = Signal(unsigned(bits), name=name)
    m.d.comb += [wide.eq(value), out.eq(Mux(wide > (1 << bits) - 1, (1 << bits) - 1, wide))]
    return out


def onehot(index: Value, n: int) -> Value:
    """``n`` bits with only bit ``index`` set: the lane enables of a one-value write."""
    return Cat(*(index == i for i in range(n)))


def pick(values: Sequence[Value], index: Value) -> Value:
    """``values[index]``: one slot of a word read by presynaptic index."""
    return values[0] if len(values) == 1 else Array(values)[index]
