"""Delayed XOR: two binary cues apart in time, answer their exclusive or after a delay.

Each trial shows two bits, one after the other, each as a cue of the population of its value
(:mod:`~neurofptt.tasks.populations`: population 0 for a 0, population 1 for a 1), and asks for
``first XOR second`` in the recall window at the end::

    | cue | delay | cue | delay | recall |     steps = 2 * cue_steps + 2 * delay + recall_steps

Unlike cue accumulation, no single cue says anything about the answer (each bit alone leaves
both answers equally likely), so the network must hold the first bit through the delay and
combine it with the second non-linearly; the error again arrives only at the end.  The bits are
fair coins, independent, so both answers are equally likely and chance is 50 %.  The label is
the target of every step of the recall window and ``-1`` elsewhere (``"label_per_step"``).

The inputs are spikes, so the trained network goes to the golden model and the RTL as it is.
The defaults (8 inputs per population, 32 in all, the default hardware's ``n_in``; cues of 10
steps at rate 0.3, 40 steps of delay, a 10-step recall window, noise at 0.02; 110 steps) are
this module's choice: a short memory task on which the rules can be compared in seconds.
"""

from __future__ import annotations

import numpy as np

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TaskData
from neurofptt.tasks.generate import generated_task
from neurofptt.tasks.populations import check_populations, cue_spikes, recall_labels

N_CLASSES = 2
NAME = "delayed-xor"


def xor_steps(cue_steps: int, delay: int, recall_steps: int) -> int:
    """The steps of one trial (the layout of the module docstring)."""
    return 2 * (cue_steps + delay) + recall_steps


def load_delayed_xor(
    n_train: int = 500,
    n_test: int = 200,
    n_val: int = 100,
    *,
    seed: int = 0,
    channels: int = 8,
    cue_steps: int = 10,
    delay: int = 40,
    recall_steps: int = 10,
    rate: float = 0.3,
    noise_rate: float = 0.02,
) -> TaskData:
    """Train, test and validation trials of the delayed XOR (see the module docstring),
    reproducible from ``seed`` (:mod:`~neurofptt.tasks.generate`)."""
    check_populations(
        NAME,
        channels=channels,
        cue_steps=cue_steps,
        recall_steps=recall_steps,
        rate=rate,
        noise_rate=noise_rate,
    )
    if delay < 0:
        raise ConfigError(f"{NAME}: delay must be >= 0, got {delay}")
    steps = xor_steps(cue_steps, delay, recall_steps)
    onsets = (0, cue_steps + delay)

    def sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        bits = rng.integers(0, 2, (n, 2))
        x = cue_spikes(
            bits,
            onsets,
            rng,
            steps=steps,
            channels=channels,
            cue_steps=cue_steps,
            recall_steps=recall_steps,
            rate=rate,
            noise_rate=noise_rate,
        )
        return x, recall_labels(bits[:, 0] ^ bits[:, 1], steps, recall_steps)

    return generated_task(
        NAME,
        sample,
        n_train=n_train,
        n_test=n_test,
        n_val=n_val,
        seed=seed,
        n_out=N_CLASSES,
        target="label_per_step",
    )
