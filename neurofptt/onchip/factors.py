"""The per-neuron factors of one on-chip update: the error, the learning signal, the
pseudo-derivative and ``delta`` (step 2 of :mod:`neurofptt.onchip`), and the step schedule.

Everything here is computed once per neuron per update; the per-synapse gradient is formed from
these factors when the synapse is visited (:meth:`Factors.gradient`), so nothing per synapse is
stored for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from neurofptt.errors import ShapeError
from neurofptt.quant.config import HardwareConfig, LearningConfig, learning_config
from neurofptt.quant.fixedpoint import saturate
from neurofptt.quant.golden import GoldenState
from neurofptt.quant.network import QuantizedNetwork

if TYPE_CHECKING:
    from neurofptt.onchip.state import LearningState


@dataclass(frozen=True)
class Factors:
    """The per-neuron factors of one update; ``gradient`` forms any synapse's ``G`` from them."""

    delta: np.ndarray  # (n_rec,) L_j psi_j, signal_bits
    error: np.ndarray  # (n_out,) e_k, membrane_bits + 1
    x_trace: np.ndarray  # (n_in,)
    z_trace: np.ndarray  # (n_rec,)
    out_trace: np.ndarray  # (n_rec,)

    @classmethod
    def zeros(cls, cfg: HardwareConfig) -> Factors:
        z = np.zeros
        return cls(
            z(cfg.n_rec, np.int64),
            z(cfg.n_out, np.int64),
            z(cfg.n_in, np.int64),
            z(cfg.n_rec, np.int64),
            z(cfg.n_rec, np.int64),
        )

    def gradient(self, matrix: str) -> np.ndarray:
        """``G`` of ``"in"``, ``"rec"`` or ``"out"`` in the ``(n_post, n_pre)`` orientation."""
        post, pre = {
            "in": (self.delta, self.x_trace),
            "rec": (self.delta, self.z_trace),
            "out": (self.error, self.out_trace),
        }[matrix]
        return np.outer(post, pre)


def beta_shift(t: int, steps: int) -> int:
    """``b_t``: the smallest ``b`` with ``t << b >= steps``, so ``2**-b_t <= t / steps`` is the
    largest power of two not above it (``t`` counts from 1)."""
    b = 0
    while (t << b) < steps:
        b += 1
    return b


def step_schedule(
    lc: LearningConfig, steps: int, labels: np.ndarray | None = None
) -> list[int | None]:
    """Per step ``t = 1..steps``: ``None`` (no update) or the error shift ``b_t`` of the update.

    One label per sequence (``labels`` is ``None``): a step is supervised if it is one of the
    last ``supervised_steps`` (all if 0); an update happens on a supervised step that is a
    multiple of ``update_period`` or the last step.

    Per-step ``labels`` (``-1``: no target at that step): an update happens exactly at the
    labelled steps, with ``b_t = 0``.  The labels say where the targets are, so
    ``supervised_steps`` and ``update_period`` do not apply; nor does ``beta_ramp``, which
    discounts the early steps of a sequence whose label they cannot know yet, while a step's
    own label is known at that step (float FPTT weighs per-step labels the same way).
    """
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (steps,) or not np.issubdtype(labels.dtype, np.integer):
            raise ShapeError(
                f"per-step labels must be integers, one per step, shape ({steps},); got "
                f"{labels.dtype} {labels.shape}"
            )
        if (labels < -1).any():
            raise ShapeError(f"per-step label {labels.min()} is neither a class nor -1 (no target)")
        return [0 if label >= 0 else None for label in labels.tolist()]
    first = 1 if lc.supervised_steps == 0 else max(1, steps - lc.supervised_steps + 1)
    out: list[int | None] = []
    for t in range(1, steps + 1):
        due = t >= first and (t % lc.update_period == 0 or t == steps)
        out.append((beta_shift(t, steps) if lc.beta_ramp else 0) if due else None)
    return out


#: Fraction bits of the base-2 softmax's unnormalised probabilities (the largest is ``2**12``).
SOFTMAX_BITS = 12


def softmax_error(o: np.ndarray, label: int, scale: int, shift: int) -> np.ndarray:
    """``scale * (p_k - [k == label])`` for a base-2 softmax ``p`` of the readouts ``o``,
    in the hardware's integer arithmetic (before the error shift ``b_t``).

    With ``d_k = max(o) - o_k = (i_k << shift) + f_k`` (``0 <= f_k < 2**shift``), the
    unnormalised probability is ``q_k = (2**B - ((f_k << B) >> (shift + 1))) >> i_k`` with
    ``B = SOFTMAX_BITS`` (0 once ``i_k >= B``): ``2**(-d_k / 2**shift)`` in ``B`` fraction bits,
    the fractional power taken as the chord ``2**-f ~ 1 - f/2`` (Mitchell), at most 6 % high.  So
    ``2**shift`` membrane LSBs halve a probability (a natural-log temperature of
    ``2**shift / ln 2``).  Then ``e_k = (q_k * scale) // sum(q) - scale * [k == label]``: one
    division per readout, which the core does bit-serially.  The largest readout has
    ``q = 2**B``, so the sum is at least that and every quotient is at most ``scale``.
    """
    d = o.max() - o
    whole, frac = d >> shift, d & ((1 << shift) - 1)
    mantissa = (1 << SOFTMAX_BITS) - ((frac << SOFTMAX_BITS) >> (shift + 1))
    q = np.where(whole >= SOFTMAX_BITS, 0, mantissa >> np.minimum(whole, SOFTMAX_BITS))
    error = (q * scale) // q.sum()
    error[label] -= scale
    return error


def quotient_bits(target: int) -> int:
    """Bits of the softmax error's quotient ``q_k * target // sum(q)``, at most ``target``."""
    return max(1, target.bit_length())


def shift_nearest(x: np.ndarray, shift: int) -> np.ndarray:
    """``x / 2**shift`` rounded to nearest, ties up: ``(x + 2**(shift-1)) >> shift`` (the RTL
    forms the same value as ``(((x << 1) >> shift) + 1) >> 1``, which needs no case for
    ``shift = 0``)."""
    return (x + ((1 << shift) >> 1)) >> shift


def update_factors(
    net: QuantizedNetwork, state: LearningState, neurons: GoldenState, label: int, shift: int
) -> Factors:
    """Error, learning signal, pseudo-derivative and ``delta`` of one update (step 2)."""
    cfg = net.config
    lc = learning_config(cfg)
    o, v = neurons.o[0], neurons.v[0]
    target = np.zeros(cfg.n_out, np.int64)
    target[label] = lc.target
    error = o - target
    if lc.error == "hinge":
        is_label = np.arange(cfg.n_out) == label
        error = np.where((error < 0) == is_label, error, 0)
    elif lc.error == "softmax":
        error = softmax_error(o, label, lc.target, lc.softmax_shift)
    shift_right = shift_nearest if lc.rounding == "nearest" else np.right_shift
    error = shift_right(error, min(shift, cfg.membrane_bits))
    feedback = net.w_out.T if state.feedback is None else state.feedback
    signal = saturate(shift_right(feedback @ error, lc.signal_shift), lc.signal_bits)
    w = lc.psi_width_shift
    psi = np.maximum(0, (1 << w) - np.abs(v - cfg.threshold)) >> (w - lc.psi_bits)
    delta = saturate(shift_right(signal * psi, lc.psi_bits), lc.signal_bits)
    return Factors(delta, error, state.x_trace, state.z_trace, state.out_trace)
