"""Combinational arithmetic of the datapath in Amaranth, each the twin of a numpy helper of the
golden model (:mod:`neurofptt.quant.fixedpoint`, :mod:`neurofptt.quant.lfsr`).

Saturation is explicit (``.eq`` alone would wrap), shifts are arithmetic (flooring), and
rounding to nearest uses one extra bit so a variable shift needs no special case.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, ValueLike, signed, unsigned

from neurofptt.quant.config import LFSR_BITS

__all__ = [
    "draw_addend",
    "draw_complement",
    "leak",
    "onehot",
    "pick",
    "registered_product",
    "saturate",
    "shift_right",
    "times",
    "tree_stages",
    "tree_sum",
    "usat",
]


def saturate(m: Module, value: ValueLike, bits: int, name: str) -> Signal:
    """``value`` clamped to the signed ``bits``-bit range (``.eq`` alone would wrap).

    The value fits when the bits from ``bits - 1`` up are all equal (all 0 for an unsigned
    value): a test of a few bits in LUTs rather than two comparators, which would each be a
    carry chain behind the adder that formed ``value``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    wide = Signal(value.shape(), name=f"{name}_wide")  # one adder, shared by the test
    out = Signal(signed(bits), name=name)
    m.d.comb += wide.eq(value)
    if len(wide) < bits or (len(wide) == bits and wide.shape().signed):
        m.d.comb += out.eq(wide)
        return out
    top = wide[bits - 1 :]
    negative = wide[-1] if wide.shape().signed else Const(0)
    fits = ~top.any() | (top.all() & negative)
    m.d.comb += out.eq(Mux(fits, wide[:bits], Mux(negative, lo, hi)))
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


def draw_addend(r: Value, shift: int) -> Value:
    """What stochastic rounding of ``x / 2**shift`` adds to ``x`` before the flooring shift,
    from the 16-bit draw ``r`` (see ``lfsr.py``): ``r mod 2**shift`` for ``shift <= 16``, else
    ``r << (shift - 16)``, so that ``sround(x) = (x + draw_addend(r, shift)) >> shift`` in both
    cases (``((x >> k) + r) >> 16`` is ``(x + (r << k)) >> (16 + k)``: ``r << k`` has no bits
    below ``k``)."""
    if shift <= LFSR_BITS:
        return r[:shift]
    return r << (shift - LFSR_BITS)


def draw_complement(r: Value, shift: int) -> Value:
    """``2**shift - 1 - draw_addend(r, shift)``, the complement of the addend's bits: with it
    ``sround(-x) = -((x + draw_complement(r, shift)) >> shift)`` (``floor(-y) = -ceil(y)``), so
    a rounded negative gradient needs no negation of its own."""
    if shift <= LFSR_BITS:
        return (~r)[:shift]
    return Cat(Const((1 << (shift - LFSR_BITS)) - 1, shift - LFSR_BITS), ~r)


def times(value: Value, factor: int) -> Value:
    """``value * factor`` for a constant ``factor >= 0`` as shifted copies added up: Yosys
    would give a constant product a DSP block, whose delay lies in the path of what it
    forms (a weight address, the softmax's numerator)."""
    terms = [value << bit for bit in range(factor.bit_length()) if factor >> bit & 1]
    return sum(terms[1:], terms[0]) if terms else Const(0)


def registered_product(m: Module, a: Value, b: Value, name: str) -> Signal:
    """``a * b`` two cycles later, in data registers (no reset): ``{name}_product`` takes the
    product as it leaves the multiplier and feeds only ``{name}``, which feeds the logic
    after it.  Yosys packs no register into an ECP5 MULT18X18D; with one register, placed
    among the logic it feeds, the multiplier's 3.9 ns between two long routes was the placed
    demo FPTT core's most frequent longest path.  The first register can sit beside it."""
    landed = Signal((a * b).shape(), name=f"{name}_product", reset_less=True)
    product = Signal(landed.shape(), name=name, reset_less=True)
    m.d.sync += [landed.eq(a * b), product.eq(landed)]
    return product


def tree_stages(n: int) -> int:
    """The registers :func:`tree_sum` puts in a sum of ``n`` values: one per two of its
    ``ceil(log2 n)`` adder levels."""
    return (n - 1).bit_length() // 2


def tree_sum(m: Module, values: Sequence[Value], name: str) -> tuple[Value, int]:
    """The sum of ``values`` as a tree of adders with a register after every two levels, and
    the number of those registers (cycles): a sum of ``n`` values takes ``ceil(log2 n)``
    adder levels, and two chained adders are what one cycle at 100 MHz holds.  At most one
    level is left unregistered, for the caller's cycle (when the levels are odd)."""
    level, stages = list(values), 0
    depth = 0
    while len(level) > 1:
        level = [sum(level[i : i + 2]) for i in range(0, len(level), 2)]
        depth += 1
        if depth == 2:
            registered = []
            for i, value in enumerate(level):
                reg = Signal(value.shape(), name=f"{name}_{stages}_{i}")
                m.d.sync += reg.eq(value)
                registered.append(reg)
            level, depth, stages = registered, 0, stages + 1
    assert stages == tree_stages(len(values))
    return level[0], stages


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
