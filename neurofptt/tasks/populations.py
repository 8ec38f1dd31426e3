"""Cue and recall input populations: the spike code of the e-prop paper's evidence accumulation.

Bellec et al. (2020, "A solution to the learning dilemma for recurrent networks of spiking
neurons", Nature Communications 11:3625) feed their evidence-accumulation network from four
populations of input neurons: one lights up for a cue on the left, one for a cue on the right,
one calls for the answer at the end of the trial, and one fires at a low rate all the time as
background noise.  The tasks built on this module (:mod:`~neurofptt.tasks.accumulation`,
:mod:`~neurofptt.tasks.xor`) share that code, with inputs in this order, ``channels`` each:

====  ==========  ============================================================
0     cue 0       fires at ``rate`` while a cue of side 0 (left, or bit 0) is shown
1     cue 1       fires at ``rate`` while a cue of side 1 (right, or bit 1) is shown
2     recall      fires at ``rate`` during the last ``recall_steps`` steps
3     noise       fires at ``noise_rate`` at every step
====  ==========  ============================================================

so input ``p * channels + i`` is input ``i`` of population ``p``.  Every input at every step is
an independent coin with the stated probability (the discrete-time form of a Poisson neuron), so
spikes are binary and the golden model and the RTL run the tasks as they are.  A rate is a
probability per step: 40 Hz at 1 ms per step is ``0.04``.

The answer is asked for only in the recall window, after the evidence is gone, so a learning rule
has to credit input that arrived long before the error: the per-step labels are the answer in the
recall window and ``-1`` (no target) elsewhere (:func:`recall_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neurofptt.errors import ConfigError

N_POPULATIONS = 4
CUE_0, CUE_1, RECALL, NOISE = range(N_POPULATIONS)
#: the per-step label of a step outside the recall window
NO_TARGET = -1


def check_populations(
    task: str, *, channels: int, cue_steps: int, recall_steps: int, rate: float, noise_rate: float
) -> None:
    """Refuse population settings no sample can have, naming the task and the fix."""
    if min(channels, cue_steps, recall_steps) < 1:
        raise ConfigError(
            f"{task} needs channels, cue_steps and recall_steps >= 1, got {channels}, "
            f"{cue_steps} and {recall_steps}"
        )
    for name, value in (("rate", rate), ("noise_rate", noise_rate)):
        if not 0 <= value <= 1:
            raise ConfigError(
                f"{task}: {name} = {value} is a spike probability per step, so it must be in "
                "[0, 1] (40 Hz at 1 ms per step is 0.04)"
            )


def cue_spikes(
    sides: np.ndarray,
    onsets: Sequence[int],
    rng: np.random.Generator,
    *,
    steps: int,
    channels: int,
    cue_steps: int,
    recall_steps: int,
    rate: float,
    noise_rate: float,
) -> np.ndarray:
    """Boolean spikes ``(N, steps, 4 * channels)`` of ``N`` trials whose cue ``k`` (shown from
    step ``onsets[k]`` for ``cue_steps`` steps) is on side ``sides[n, k]`` (0 or 1), with the
    recall window at the end and background noise throughout (the module docstring)."""
    n = len(sides)
    x = np.zeros((n, steps, N_POPULATIONS, channels), dtype=bool)
    x[:, :, NOISE] = rng.random((n, steps, channels), dtype=np.float32) < noise_rate
    recall = rng.random((n, recall_steps, channels), dtype=np.float32) < rate
    x[:, steps - recall_steps :, RECALL] = recall
    cues = rng.random((n, len(onsets), cue_steps, channels), dtype=np.float32) < rate
    rows = np.arange(n)
    for k, onset in enumerate(onsets):
        # the row and side indices pick one population per trial: shape (N, cue_steps, channels)
        x[rows, onset : onset + cue_steps, sides[:, k]] = cues[:, k]
    return x.reshape(n, steps, N_POPULATIONS * channels)


def recall_labels(labels: np.ndarray, steps: int, recall_steps: int) -> np.ndarray:
    """Per-step int64 labels ``(N, steps)``: each trial's label in the last ``recall_steps``
    steps, :data:`NO_TARGET` before them."""
    y = np.full((len(labels), steps), NO_TARGET, dtype=np.int64)
    y[:, steps - recall_steps :] = np.asarray(labels, dtype=np.int64)[:, None]
    return y
