"""Property tests of the fixed-point helpers that define the hardware arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from neurofptt.quant.fixedpoint import leak, round_to_grid, saturate, shift_right, signed_range

bits = st.integers(min_value=2, max_value=32)
wide = st.integers(min_value=-(2**40), max_value=2**40)


@given(wide, bits)
def test_saturate_clamps_and_is_identity_inside(x: int, b: int) -> None:
    lo, hi = signed_range(b)
    y = int(saturate(x, b))
    assert lo <= y <= hi
    if lo <= x <= hi:
        assert y == x
    elif x < lo:
        assert y == lo
    else:
        assert y == hi


@given(wide, st.integers(min_value=0, max_value=31))
def test_shift_right_is_floor_division(x: int, s: int) -> None:
    assert int(shift_right(x, s)) == math.floor(x / 2**s) == x // 2**s


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.integers(min_value=0, max_value=31))
def test_leak_error_below_one_lsb_and_never_grows(x: int, s: int) -> None:
    y = int(leak(x, s))
    exact = Fraction(x) * (1 - Fraction(1, 2**s))  # exact: floats lose the LSB at 2**27
    # flooring the subtracted part can only leave the result up to 1 LSB above the exact decay
    assert exact <= y < exact + 1
    # the leaked value never moves away from zero
    assert abs(y) <= abs(x)


@given(
    st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=1, max_size=20),
    st.integers(min_value=-12, max_value=4),
    st.integers(min_value=2, max_value=16),
)
def test_round_to_grid_within_half_lsb_or_saturated(values, exponent: int, b: int) -> None:
    x = np.array(values)
    codes, clipped = round_to_grid(x, exponent, b)
    lo, hi = signed_range(b)
    assert codes.dtype == np.int64
    assert np.all((codes >= lo) & (codes <= hi))
    step = 2.0**exponent
    inside = (x >= (lo - 0.5) * step) & (x <= (hi + 0.5) * step)
    err = np.abs(codes * step - x)
    assert np.all(err[inside] <= step / 2 + 1e-12)
    assert np.all((codes[~inside] == lo) | (codes[~inside] == hi))
    assert clipped >= int(np.count_nonzero(~inside))


def test_round_to_grid_rejects_nan() -> None:
    import pytest

    with pytest.raises(ValueError, match="NaN"):
        round_to_grid(np.array([0.5, np.nan]), -4, 8)
