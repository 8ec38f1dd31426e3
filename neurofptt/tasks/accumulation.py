"""Cue accumulation: count left and right cues over seconds, answer after a long delay.

The evidence-accumulation task of the e-prop paper (Bellec et al. 2020, Fig. 3; after the
navigation task of Morcos & Harvey 2016): a trial shows ``n_cues`` cues, each on the left or the
right, then stays silent for a long delay, then asks which side had more cues.  The network has
to add up evidence that arrives in pieces and keep the count through the delay, and the only
error comes at the end, more than a thousand steps after the first cue; this is what makes it a
test of a learning rule's credit assignment over time rather than of its short memory.

Layout of one trial (inputs: :mod:`~neurofptt.tasks.populations`, ``4 * channels`` of them)::

    | cue | gap | cue | gap | ... | cue | gap |      delay      | recall |
      cue k starts at k * (cue_steps + gap_steps)

    steps = n_cues * (cue_steps + gap_steps) + delay + recall_steps

During cue ``k`` the population of its side fires at ``rate``; the recall population fires at
``rate`` in the last ``recall_steps`` steps and the noise population at ``noise_rate`` all the
time.  Each trial draws a favoured side (left or right, equally likely) and puts each cue on it
with probability ``p_favoured``, independently (``0.5``: every cue a fair coin; ``1``: every cue
on one side).  The label is the side with more cues (0: left, 1: right); ``n_cues`` is odd, so
there is no tie.  Both sides are equally likely, so chance is 50 %.  The label is the target of
every step of the recall window and of no other step (``-1``; ``TaskData.target`` is
``"label_per_step"``).

The defaults of ``cue-accumulation`` are the paper's trial at 1 ms per step: 7 cues of 100 ms
each followed by 50 ms of silence, 1,050 ms of delay and a 150 ms recall window (2,250 steps),
10 inputs per population (40 in all), cues and recall at 40 Hz, noise at 10 Hz.  The favoured
side's probability is this module's choice (0.7: the favoured side has more cues in 87 % of
the trials, and about a third of the trials are decided 4 to 3).  ``cue-accumulation-short``
is the same trial in bins of 10 steps (225 steps): the durations divided by 10, and a bin fires
when any of its 10 steps would have (:func:`binned_rate`), so it is the full task pooled, for
quick runs.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TaskData
from neurofptt.tasks.generate import generated_task
from neurofptt.tasks.populations import check_populations, cue_spikes, recall_labels

N_CLASSES = 2
#: the paper's trial at 1 ms per step: the defaults of ``cue-accumulation``
CUE_STEPS, GAP_STEPS, DELAY, RECALL_STEPS = 100, 50, 1050, 150
#: 40 Hz cues and recall, 10 Hz noise, at 1 ms per step
RATE, NOISE_RATE = 0.04, 0.01
#: steps per bin of ``cue-accumulation-short``
SHORT_BIN = 10


def binned_rate(rate: float, factor: int) -> float:
    """The probability that a bin of ``factor`` steps holds a spike when each step has one with
    probability ``rate``: pooling a spike train into bins (OR) keeps this rate."""
    return 1.0 - (1.0 - rate) ** factor


def cue_onsets(n_cues: int, cue_steps: int, gap_steps: int) -> np.ndarray:
    """The first step of each cue."""
    return np.arange(n_cues) * (cue_steps + gap_steps)


def accumulation_steps(
    n_cues: int, cue_steps: int, gap_steps: int, delay: int, recall_steps: int
) -> int:
    """The steps of one trial (the layout of the module docstring)."""
    return n_cues * (cue_steps + gap_steps) + delay + recall_steps


def load_cue_accumulation(
    n_train: int = 200,
    n_test: int = 100,
    n_val: int = 50,
    *,
    seed: int = 0,
    channels: int = 10,
    n_cues: int = 7,
    cue_steps: int = CUE_STEPS,
    gap_steps: int = GAP_STEPS,
    delay: int = DELAY,
    recall_steps: int = RECALL_STEPS,
    rate: float = RATE,
    noise_rate: float = NOISE_RATE,
    p_favoured: float = 0.7,
    name: str = "cue-accumulation",
) -> TaskData:
    """Train, test and validation trials of cue accumulation (see the module docstring),
    reproducible from ``seed`` (:mod:`~neurofptt.tasks.generate`); ``name`` names the task in
    records."""
    check_populations(
        name,
        channels=channels,
        cue_steps=cue_steps,
        recall_steps=recall_steps,
        rate=rate,
        noise_rate=noise_rate,
    )
    if n_cues < 1 or n_cues % 2 == 0:
        raise ConfigError(
            f"{name}: n_cues = {n_cues}; it must be odd (1, 3, 5, ...), so one side always has "
            "more cues"
        )
    if gap_steps < 0 or delay < 0:
        raise ConfigError(f"{name}: gap_steps and delay must be >= 0, got {gap_steps}, {delay}")
    if not 0 <= p_favoured <= 1:
        raise ConfigError(f"{name}: p_favoured = {p_favoured} is a probability, in [0, 1]")
    steps = accumulation_steps(n_cues, cue_steps, gap_steps, delay, recall_steps)
    onsets = cue_onsets(n_cues, cue_steps, gap_steps)

    def sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        favoured = rng.integers(0, 2, n)
        on_favoured = rng.random((n, n_cues)) < p_favoured
        sides = np.where(on_favoured, favoured[:, None], 1 - favoured[:, None])
        right_wins = 2 * sides.sum(axis=1) > n_cues
        x = cue_spikes(
            sides,
            onsets,
            rng,
            steps=steps,
            channels=channels,
            cue_steps=cue_steps,
            recall_steps=recall_steps,
            rate=rate,
            noise_rate=noise_rate,
        )
        return x, recall_labels(right_wins.astype(np.int64), steps, recall_steps)

    return generated_task(
        name,
        sample,
        n_train=n_train,
        n_test=n_test,
        n_val=n_val,
        seed=seed,
        n_out=N_CLASSES,
        target="label_per_step",
    )


load_cue_accumulation_short = partial(
    load_cue_accumulation,
    cue_steps=CUE_STEPS // SHORT_BIN,
    gap_steps=GAP_STEPS // SHORT_BIN,
    delay=DELAY // SHORT_BIN,
    recall_steps=RECALL_STEPS // SHORT_BIN,
    rate=binned_rate(RATE, SHORT_BIN),
    noise_rate=binned_rate(NOISE_RATE, SHORT_BIN),
    name="cue-accumulation-short",
)
"""``cue-accumulation-short``: :func:`load_cue_accumulation` with the paper's trial in bins of
:data:`SHORT_BIN` steps (225 steps) as its defaults, for quick runs; it takes the same options."""
