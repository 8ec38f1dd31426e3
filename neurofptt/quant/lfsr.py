"""The LFSRs that drive stochastic rounding of on-chip weight updates, modelled bit for bit.

An 8-bit weight cannot absorb an update smaller than one LSB, and rounding every update to the
nearest integer would freeze learning (most updates are below half an LSB).  Stochastic rounding
moves the weight up with probability equal to the discarded fraction, so the *expected* change is
exact and small gradients still act on average.  The random bits come from linear-feedback shift
registers because an LFSR is a handful of flip-flops and XOR gates; the golden model must then
consume exactly the same bits in the same order as the hardware, which is why the generator is
specified here to the bit.

Generator.  A 16-bit Galois LFSR with feedback polynomial ``x^16 + x^14 + x^13 + x^11 + 1``
(toggle mask ``0xB400``), shifting right::

    lsb = s & 1;  s = s >> 1;  if lsb: s = s ^ 0xB400

It is maximal length: from any nonzero seed it visits all ``2**16 - 1`` nonzero states.  From
``0xACE1`` the first states are ``0xE270, 0x7138, 0x389C, 0x1C4E``.

Draws.  Consecutive states of a shift register overlap in 15 of their 16 bits, so successive
values would be strongly correlated.  Each *draw* therefore advances the register by ``LEAP = 16``
single steps (in hardware a 16x16 XOR matrix, one clock per draw) and returns the new state, so
successive draws are disjoint 16-bit blocks of the bit stream.  As ``gcd(16, 2**16 - 1) = 1`` the
draws still run through all nonzero states.

Lanes.  The core updates ``lanes`` postsynaptic neurons per cycle, so it has one LFSR per lane.
Lane ``l`` starts from the state reached after ``LANE_SPACING * l`` single steps from the
configured seed (``lane_seeds``), which spreads up to 64 lanes evenly around the cycle and does not
depend on how many lanes there are.

Stochastic rounding of ``x / 2**shift`` with a 16-bit draw ``r``::

    shift <= 16:  (x + (r mod 2**shift)) >> shift
    shift >  16:  ((x >> (shift - 16)) + r) >> 16

``>>`` is the arithmetic (flooring) shift.  The result is ``floor(x / 2**shift)`` or one more,
and for ``r`` uniform over ``[0, 2**16)`` its mean is exactly ``x / 2**shift`` when
``shift <= 16`` (for larger shifts the first, deterministic shift floors away at most
``2**-16`` LSB).  The LFSR never outputs 0, so over a full period the low ``shift`` bits are
uniform up to one missing zero in ``2**16``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from neurofptt.quant.config import LFSR_BITS

TAPS = 0xB400
PERIOD = (1 << LFSR_BITS) - 1
LEAP = 16
LANE_SPACING = 1024


def lfsr_step(state: int) -> int:
    """One single step of the Galois LFSR."""
    if not 0 < state <= PERIOD:
        raise ValueError(f"an LFSR state is a nonzero {LFSR_BITS}-bit value, got {state}")
    lsb = state & 1
    state >>= 1
    return state ^ TAPS if lsb else state


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """``sequence[p]``: the state ``p`` single steps after state 1; ``position[s]``: its inverse."""
    sequence = np.empty(PERIOD, np.int64)
    state = 1
    for p in range(PERIOD):
        sequence[p] = state
        state = lfsr_step(state)
    position = np.zeros(PERIOD + 1, np.int64)
    position[sequence] = np.arange(PERIOD)
    sequence.setflags(write=False)
    position.setflags(write=False)
    return sequence, position


def advance(states: np.ndarray, steps: int | np.ndarray) -> np.ndarray:
    """The states after ``steps`` single steps (vectorised through the period table)."""
    sequence, position = _tables()
    return sequence[(position[np.asarray(states, np.int64)] + steps) % PERIOD]


def lane_seeds(seed: int, lanes: int) -> np.ndarray:
    """Initial state of each lane's LFSR: ``seed`` advanced by ``LANE_SPACING * lane`` steps."""
    return advance(np.full(lanes, seed), LANE_SPACING * np.arange(lanes))


def lfsr_draw(states: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` draws from each lane: ``values[l, k]`` is lane ``l``'s state after
    ``LEAP * (k + 1)`` single steps.  Returns ``(values (lanes, count), new states)``."""
    states = np.asarray(states, np.int64)
    offsets = LEAP * np.arange(1, count + 1)
    values = advance(states[:, None], offsets[None, :])
    return values, advance(states, LEAP * count)


def stochastic_round(x: np.ndarray | int, shift: int, r: np.ndarray | int) -> np.ndarray:
    """Round ``x / 2**shift`` up or down at random using the 16-bit draws ``r`` (same shape)."""
    if shift < 0:
        raise ValueError(f"shift must be non-negative, got {shift}")
    x = np.asarray(x, np.int64)
    r = np.asarray(r, np.int64)
    if shift <= LFSR_BITS:
        return (x + (r & ((1 << shift) - 1))) >> shift
    return ((x >> (shift - LFSR_BITS)) + r) >> LFSR_BITS
