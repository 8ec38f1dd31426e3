"""The containers every task returns: a sequence data set and a task with its kind of target.

A task's ``target`` says what ``y`` holds and therefore which loss and metric apply
(:mod:`neurofptt.learning.objectives`):

``"label"``
    one class per sequence, ``y`` is ``(N,)`` int64; read at the last step (digits, S-MNIST, IMDB).
``"label_per_step"``
    one class per step, ``y`` is ``(N, T)`` int64 (Cycleworld's next-observation prediction).
``"regression"``
    one real vector per step, ``y`` is ``(N, T, n_out)`` float32 (TSFD's next value), scored by
    the mean squared error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurofptt.errors import ConfigError, ShapeError

TARGETS = ("label", "label_per_step", "regression")


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
    """A train/test pair, the output size and the kind of target (see the module docstring)."""

    name: str
    train: SequenceDataset
    test: SequenceDataset
    n_out: int
    target: str = "label"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target kind {self.target!r}; choose one of {TARGETS}")
        for split in (self.train, self.test):
            check_targets(split.x, split.y, self.target, self.n_out)


def check_targets(x: torch.Tensor, y: torch.Tensor, target: str, n_out: int) -> None:
    """Raise :class:`ShapeError` unless ``y`` has the shape ``target`` requires for inputs ``x``."""
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
