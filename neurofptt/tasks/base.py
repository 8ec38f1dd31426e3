"""The containers every task returns: a sequence data set and a task with its kind of target.

A task's ``target`` says what ``y`` holds and therefore which loss and metric apply
(:mod:`neurofptt.learning.objectives`):

``"label"``
    one class per sequence, ``y`` is ``(N,)`` int64; read at the last step (digits, S-MNIST, IMDB).
``"label_per_step"``
    one class per step, ``y`` is ``(N, T)`` int64 (Cycleworld's next-observation prediction, and
    the per-step labels of a data file, :mod:`neurofptt.tasks.files`).  A label of ``-1`` marks a
    step without a target (a recording labelled only where an event happens, a recall window):
    the losses, the metrics and on-chip learning use only the labelled steps.
``"regression"``
    one real vector per step, ``y`` is ``(N, T, n_out)`` float32 (TSFD's next value), scored by
    the mean squared error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from neurofptt.errors import ConfigError, ShapeError

TARGETS = ("label", "label_per_step", "regression")
#: The target kinds the hardware learns and is scored on: class labels.
CLASS_TARGETS = ("label", "label_per_step")


@dataclass(frozen=True)
class SequenceDataset:
    """Input sequences ``x`` of shape ``(N, T, n_in)`` (float32) and their targets ``y``."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_in(self) -> int:
        return int(self.x.shape[2])

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])

    def numpy_spikes(self) -> np.ndarray:
        """The inputs as a boolean array, for the golden model and the RTL (binary inputs only)."""
        if not bool(((self.x == 0) | (self.x == 1)).all()):
            raise ShapeError(
                "this data set's inputs are not binary spikes; the hardware flow needs a "
                "spike-encoded task such as 'digits'"
            )
        return self.x.numpy().astype(bool)


@dataclass(frozen=True)
class TaskData:
    """A train/test pair, the output size and the kind of target (see the module docstring).

    ``val`` is a validation split of the task's own, if it has one; trainers pick their reported
    epoch on it, and hold out part of ``train`` instead when it is ``None``
    (:func:`with_validation`).
    """

    name: str
    train: SequenceDataset
    test: SequenceDataset
    n_out: int
    target: str = "label"
    val: SequenceDataset | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target kind {self.target!r}; choose one of {TARGETS}")
        for split in (self.train, self.test, self.val):
            if split is not None:
                check_targets(split.x, split.y, self.target, self.n_out)


def validation_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices (sorted) of the ``n`` training samples kept for training and of those held out
    for validation: a seeded random ``fraction`` of them (rounded, at least one), the same for
    the same ``seed``.

    The permutation comes from the first child of ``SeedSequence(seed)``, not from the stream
    that shuffles the batches, so changing the fraction does not change the batch order's seed.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {fraction}")
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise ConfigError(f"val_fraction = {fraction} of {n} training samples leaves none to train")
    order = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def with_validation(task: TaskData, fraction: float, seed: int) -> TaskData:
    """``task`` with a validation split: its own if it has one, else a seeded ``fraction`` of its
    training samples moved out of ``train`` (:func:`validation_indices`); ``fraction = 0`` and no
    split of its own leave it without one.

    Choosing the reported epoch (or anything else) on the test set makes the test score an
    optimistic pick; choosing it on samples the network never trained on keeps the test set for
    the one final score.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1) (0: no validation), got {fraction}")
    if task.val is not None or fraction == 0:
        return task
    keep, held = (torch.from_numpy(i) for i in validation_indices(len(task.train), fraction, seed))
    data = task.train
    return dataclasses.replace(
        task,
        train=SequenceDataset(data.x[keep], data.y[keep]),
        val=SequenceDataset(data.x[held], data.y[held]),
    )


def check_targets(x: torch.Tensor, y: torch.Tensor, target: str, n_out: int) -> None:
    """Raise :class:`ShapeError` unless ``y`` has the shape ``target`` requires for inputs ``x``.

    Per-step labels of ``-1`` (no target at that step) pass: the losses and metrics score only
    the labelled steps (:mod:`neurofptt.learning.objectives`).
    """
    n, steps = int(x.shape[0]), int(x.shape[1])
    expected = {
        "label": ((n,), False),
        "label_per_step": ((n, steps), False),
        "regression": ((n, steps, n_out), True),
    }[target]
    shape, floating = expected
    if tuple(y.shape) != shape or y.is_floating_point() != floating:
        kind = "float" if floating else "integer"
        raise ShapeError(
            f"{target!r} targets must be a {kind} tensor of shape {shape}, got "
            f"{y.dtype} {tuple(y.shape)}"
        )
