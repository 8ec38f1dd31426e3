"""Generated tasks: train, test and validation splits drawn from one seed, each from its own stream.

A generated task needs no download and no file, and it brings a validation split of its own, so
the trainers pick their reported epoch on it instead of holding out training samples.  Each
split is drawn from its own child of ``numpy.random.SeedSequence(seed)`` (train, test and
validation, in that order), so a split's samples do not depend on the sizes of the others: more
validation samples leave the train and test sets as they were.  NumPy's generators give the same
numbers on every platform, so a seed names the same data everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import SequenceDataset, TaskData

#: draws ``n`` samples from a generator: inputs ``(n, T, C)`` and targets as ``TaskData`` needs
Sampler = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def split_generators(seed: int) -> tuple[np.random.Generator, ...]:
    """The independent streams of the train, test and validation splits of ``seed``."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))


def generated_task(
    name: str,
    sample: Sampler,
    *,
    n_train: int,
    n_test: int,
    n_val: int,
    seed: int,
    n_out: int,
    target: str,
) -> TaskData:
    """A task of ``n_train``, ``n_test`` and ``n_val`` samples of ``sample`` (``n_val = 0``: no
    validation split); inputs become float32 tensors, targets keep their dtype."""
    if n_train < 1 or n_test < 1 or n_val < 0:
        raise ConfigError(
            f"task {name!r} needs n_train >= 1, n_test >= 1 and n_val >= 0, got {n_train}, "
            f"{n_test} and {n_val}"
        )
    train, test, val = split_generators(seed)

    def split(n: int, rng: np.random.Generator) -> SequenceDataset:
        x, y = sample(n, rng)
        return SequenceDataset(x=torch.from_numpy(x.astype(np.float32)), y=torch.from_numpy(y))

    return TaskData(
        name=name,
        train=split(n_train, train),
        test=split(n_test, test),
        val=split(n_val, val) if n_val else None,
        n_out=n_out,
        target=target,
    )
