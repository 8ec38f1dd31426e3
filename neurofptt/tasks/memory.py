"""How long a task asks its network to remember, and the membrane and readout leaks that follow.

A leaky neuron keeps a share ``beta**t`` of an input ``t`` steps later; with the hardware's shift
leak ``beta = 1 - 2**-leak_shift`` its time constant is ``tau = 2**leak_shift`` steps.  A leak
too short for the task forgets the evidence before the label asks for it (cue accumulation with
the digits' ``tau = 4`` forgets a cue within a few steps of its 210-step delay and learns
nothing, whatever the rule); a leak far too long integrates every noise spike of the sequence
and leaves the membrane slow to follow its input.  So the leak is taken from the data:

``span``
    per training sample, how far its labelled steps lie from the first step with any input
    activity, on average: ``mean(labelled steps at or after the first activity) - first + 1``;
    the task's span is the median over the samples (so a few odd samples do not move it).  A
    ``"label"`` task's one labelled step is its last; a ``"label_per_step"`` task's are the steps
    whose label is not ``-1``; a ``"regression"`` task's are every step.  A sample without
    input activity or without a labelled step after it tells nothing and is skipped.

``leak_shift``
    ``round(log2(span / 2))``, clamped to ``[1, max_shift]``: a time constant of half the span,
    so an input at the start of the span keeps about ``e**-2`` (14 %) of its effect at the
    labels (between ``e**-2.8`` and ``e**-1.4`` after rounding to a shift), enough for the
    network to carry it, while the membrane still forgets what came before.  The rule gives the
    settings that were chosen by hand before it existed: 2 on the 8-step digits (span 8), 7 on
    ``cue-accumulation-short`` (span 218) and 10 on the full cue accumulation (span 2,175).
    The lower clamp keeps some memory (a shift of 0 has none); ``max_shift`` is the largest
    shift the membrane format allows (``membrane_bits - 1``).

``out_leak_shift``
    ``round(log2(span))``, clamped the same way: the readout, a leaky sum of the hidden spikes,
    integrates over the whole span, so a spike anywhere in it still counts at the labels.  A
    rule whose gradient does not reach back in time (FPTT's per-step updates from the detached
    state) can learn an answer that depends on early evidence only through what the state
    carries forward, and the readout's sum is the part of the state it can shape directly: on
    ``cue-accumulation-short`` float FPTT stays at chance with the readout's ``2**-3`` and
    learns the task with ``2**-8``, what the rule gives (span 218).  On the digits it gives 3,
    the earlier default.

This is a default, not a tuned constant: a config that sets ``hardware.leak_shift`` keeps its
value, and ``neurofptt train --tune`` tries the shifts next to the derived one on the
validation split (:mod:`neurofptt.learning.tune`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import SequenceDataset

#: the membrane's time constant as a share of the span: ``tau = span / 2``
SPAN_PER_TAU = 2.0
#: the shortest leak the rule gives (``beta = 1/2``; a shift of 0 keeps nothing)
MIN_SHIFT = 1


def labelled_steps(y: np.ndarray, target: str, steps: int) -> np.ndarray:
    """A boolean ``(N, steps)`` array of the steps that carry a target (module docstring)."""
    n = y.shape[0]
    if target == "label":
        mask = np.zeros((n, steps), dtype=bool)
        mask[:, -1] = True
        return mask
    if target == "label_per_step":
        return y >= 0
    return np.ones((n, steps), dtype=bool)


def label_span(data: SequenceDataset, target: str) -> float | None:
    """The median over the samples of how far their labelled steps lie, on average, from their
    first input activity (module docstring), in steps; ``None`` when no sample has a labelled
    step at or after an input."""
    x = data.x.numpy()
    active = (x != 0).any(axis=2)  # (N, T)
    labelled = labelled_steps(data.y.numpy(), target, data.steps)
    first = np.where(active.any(axis=1), active.argmax(axis=1), data.steps)
    steps = np.arange(data.steps)
    after = labelled & (steps[None, :] >= first[:, None])
    counts = after.sum(axis=1)
    keep = counts > 0
    if not keep.any():
        return None
    mean_label = (after * steps[None, :]).sum(axis=1)[keep] / counts[keep]
    return float(np.median(mean_label - first[keep] + 1))


def leak_shift_for_span(span: float, max_shift: int, per_tau: float = SPAN_PER_TAU) -> int:
    """``round(log2(span / per_tau))`` clamped to ``[1, max_shift]`` (module docstring: the
    membrane's ``per_tau`` is 2, the readout's 1)."""
    if max_shift < MIN_SHIFT:
        raise ConfigError(f"max_shift = {max_shift} leaves no leak shift >= {MIN_SHIFT}")
    if not span > 0:
        raise ConfigError(f"a span is a positive number of steps, got {span}")
    shift = round(math.log2(span / per_tau))
    return min(max(shift, MIN_SHIFT), max_shift)


@dataclass(frozen=True)
class DerivedLeak:
    """The leaks the rule gives a task, with what they came from (recorded in ``train.json``)."""

    leak_shift: int
    out_leak_shift: int
    span: float | None
    max_shift: int

    def record(self, fields: tuple[str, ...] = ("leak_shift", "out_leak_shift")) -> dict[str, Any]:
        """The derivation, with the shifts of ``fields`` (those a config took from the task)
        and their time constants in steps."""
        record: dict[str, Any] = {"span_steps": self.span, "max_shift": self.max_shift}
        for name in fields:
            shift = getattr(self, name)
            record[name] = shift
            record[name.replace("leak_shift", "tau_steps")] = 2**shift
        record["rule"] = (
            "leak_shift = round(log2(span_steps / 2)), out_leak_shift = round(log2(span_steps)), "
            "in [1, max_shift] (neurofptt.tasks.memory)"
            if self.span is not None
            else "no labelled step after an input: the shortest leaks"
        )
        return record


def derive_leak(data: SequenceDataset, target: str, max_shift: int) -> DerivedLeak:
    """The membrane and readout leak shifts for a task whose training split is ``data`` (module
    docstring); a task with no labelled step after an input gets the shortest leaks."""
    span = label_span(data, target)
    if span is None:
        return DerivedLeak(MIN_SHIFT, MIN_SHIFT, None, max_shift)
    return DerivedLeak(
        leak_shift=leak_shift_for_span(span, max_shift),
        out_leak_shift=leak_shift_for_span(span, max_shift, per_tau=1.0),
        span=span,
        max_shift=max_shift,
    )
