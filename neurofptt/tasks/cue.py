"""A delayed-cue task: remember which of two cues was shown, answer after a silent delay.

This is the smallest version of the delayed cue-accumulation task ReckOn learns on chip: the
answer is only asked for after the evidence is gone, so a learning rule has to credit input that
arrived many steps before the error.  It is spike-encoded (binary inputs), so the golden model and
the RTL run it directly.

Layout of one sequence of ``cue_steps + delay + recall_steps`` steps and
``2 * channels + channels`` inputs: during the cue window each of the ``channels`` inputs of the
cued class fires with probability ``rate`` per step (the other class's inputs stay silent); then
nothing fires for ``delay`` steps; in the recall window the last ``channels`` inputs fire with
probability ``rate``, the same for both classes, to give the network drive when it must answer.
The label (0 or 1) is read at the last step; chance is 50 %.
"""

from __future__ import annotations

import torch

from neurofptt.tasks.base import SequenceDataset, TaskData


def cue_sequences(
    n: int,
    generator: torch.Generator,
    *,
    channels: int = 4,
    cue_steps: int = 5,
    delay: int = 10,
    recall_steps: int = 5,
    rate: float = 0.5,
) -> SequenceDataset:
    """``n`` random sequences of the delayed-cue task (see the module docstring)."""
    if min(channels, cue_steps, recall_steps) < 1 or delay < 0 or not 0 < rate <= 1:
        raise ValueError(
            "the cue task needs channels, cue_steps, recall_steps >= 1, delay >= 0 and "
            f"0 < rate <= 1; got {channels}, {cue_steps}, {recall_steps}, {delay}, {rate}"
        )
    steps = cue_steps + delay + recall_steps
    y = torch.randint(0, 2, (n,), generator=generator)
    fire = torch.rand(n, steps, channels, generator=generator) < rate
    x = torch.zeros(n, steps, 3 * channels)
    for label in (0, 1):
        rows = y == label
        cols = slice(label * channels, (label + 1) * channels)
        x[rows, :cue_steps, cols] = fire[rows, :cue_steps].float()
    x[:, steps - recall_steps :, 2 * channels :] = fire[:, steps - recall_steps :].float()
    return SequenceDataset(x=x, y=y)


def load_cue_task(
    n_train: int = 200,
    n_test: int = 100,
    n_val: int = 50,
    *,
    seed: int = 0,
    channels: int = 4,
    cue_steps: int = 5,
    delay: int = 10,
    recall_steps: int = 5,
    rate: float = 0.5,
) -> TaskData:
    """Train, test and validation sets of the delayed-cue task, reproducible from ``seed``.

    The task is generated, so it brings a validation split of its own (drawn after the test
    set, so the train and test sets do not depend on ``n_val``) instead of costing the trainers
    a share of the training samples; ``n_val = 0`` leaves it out."""
    gen = torch.Generator().manual_seed(seed)
    options = {
        "channels": channels,
        "cue_steps": cue_steps,
        "delay": delay,
        "recall_steps": recall_steps,
        "rate": rate,
    }
    return TaskData(
        name="cue",
        train=cue_sequences(n_train, gen, **options),
        test=cue_sequences(n_test, gen, **options),
        val=cue_sequences(n_val, gen, **options) if n_val else None,
        n_out=2,
        target="label",
    )
