"""The learning LFSRs and stochastic rounding: the bit-exact random source of on-chip updates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofptt.quant.lfsr import (
    LANE_SPACING,
    LEAP,
    PERIOD,
    advance,
    lane_seeds,
    lfsr_draw,
    lfsr_step,
    stochastic_round,
)

ALL_DRAWS = np.arange(1 << 16)  # every 16-bit value once: the exact expectation over r


def test_known_first_values() -> None:
    state, seen = 0xACE1, []
    for _ in range(4):
        state = lfsr_step(state)
        seen.append(state)
    assert seen == [0xE270, 0x7138, 0x389C, 0x1C4E]


def test_maximal_length() -> None:
    """From any seed the register visits every nonzero 16-bit state once per period."""
    states = advance(np.array([0xACE1]), np.arange(PERIOD))
    assert len(np.unique(states)) == PERIOD == (1 << 16) - 1
    assert states.min() == 1 and states.max() == 0xFFFF
    assert advance(np.array([0xACE1]), PERIOD)[0] == 0xACE1
    with pytest.raises(ValueError, match="nonzero"):
        lfsr_step(0)


def test_draws_leap_sixteen_single_steps() -> None:
    values, new = lfsr_draw(np.array([0xACE1, 0x0001]), 3)
    for lane, seed in enumerate((0xACE1, 0x0001)):
        state, expected = seed, []
        for _ in range(3):
            for _ in range(LEAP):
                state = lfsr_step(state)
            expected.append(state)
        assert values[lane].tolist() == expected
        assert new[lane] == expected[-1]
    assert values[0, 0] == 0xEB62  # first draw from 0xACE1, for a hardware testbench
    # a full period of draws is a permutation of all nonzero states (gcd(16, 65535) = 1)
    period, _ = lfsr_draw(np.array([0xACE1]), PERIOD)
    assert len(np.unique(period)) == PERIOD


def test_lane_seeds() -> None:
    seeds = lane_seeds(0xACE1, 8)
    assert seeds[0] == 0xACE1
    assert seeds[1] == advance(np.array([0xACE1]), LANE_SPACING)[0]
    assert len(set(seeds.tolist())) == 8
    assert lane_seeds(0xACE1, 3).tolist() == seeds[:3].tolist()  # independent of the lane count


@settings(max_examples=200, deadline=None)
@given(
    x=st.integers(-(1 << 40), 1 << 40),
    shift=st.integers(0, 30),
    r=st.integers(0, (1 << 16) - 1),
)
def test_stochastic_round_within_one_lsb(x: int, shift: int, r: int) -> None:
    out = int(stochastic_round(x, shift, r))
    low = x >> shift
    assert out in (low, low + 1)
    if x % (1 << shift) == 0:
        assert out == low  # exact values are never disturbed


@settings(max_examples=100, deadline=None)
@given(x=st.integers(-(1 << 40), 1 << 40), shift=st.integers(0, 30))
def test_stochastic_round_unbiased(x: int, shift: int) -> None:
    """Averaged over all 2**16 draws the result is x / 2**shift: exactly up to shift 16, and
    within 2**-16 LSB beyond (the deterministic pre-shift)."""
    mean = stochastic_round(np.full(ALL_DRAWS.shape, x), shift, ALL_DRAWS).mean()
    tolerance = 0.0 if shift <= 16 else 2.0**-16
    assert abs(mean - x / 2**shift) <= tolerance + 1e-12 * abs(x / 2**shift)


def test_lfsr_stream_unbiased() -> None:
    """With the LFSR's draws (a period has no zero) the bias stays below 2**-15 LSB."""
    draws, _ = lfsr_draw(np.array([0xACE1]), PERIOD)
    for x, shift in [(5, 3), (-5, 3), (1, 10), (-12345, 12)]:
        mean = stochastic_round(np.full(PERIOD, x), shift, draws[0]).mean()
        assert abs(mean - x / 2**shift) < 2.0**-15
