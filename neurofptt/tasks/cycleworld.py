"""p-Cycleworld: predict the next bit of an observation that is 1 once every ``p`` steps.

The environment (FPP paper, after Tanner & Sutton's cycle world) is a ring of ``p`` states; the
observation is 1 in the ring's step ``p`` and 0 in the others, and the learner predicts the next
observation bit.  As a stream indexed from 0 the observation is ``o[k] = 1 if k % p == p - 1``.
Always predicting 0 is right on ``p - 1`` of every ``p`` steps, 83 % for ``p = 6``, so only
accuracy above ``(p - 1) / p`` shows that the network learned to count.

The paper trains on one continuing stream (300,000 steps for ``p = 6``) and updates online while
the network's state is carried from step to step.  The trainer here learns from batches of
sequences that each start from the zero state, so the stream is cut into windows: sequence ``i``
starts at a phase ``r_i`` drawn uniformly from ``{0, ..., p - 1}`` and holds
``x[i, t] = o[r_i + t]`` with target ``y[i, t] = o[r_i + t + 1]`` for ``t < steps``.  The phases
come from ``numpy.random.default_rng(seed)``: the ``n_train`` training phases first, then the
``n_test`` test ones.  Two differences from the online setting follow:

* A fresh window does not reveal its phase until its first 1 arrives (at most ``p`` steps in), so
  even a perfect learner may miss the first 1 of a window; windows much longer than ``p`` (the
  default is 10 cycles) make this a small effect.
* There are only ``p`` distinct windows, so the test split measures the same thing as the
  training split; it exists so the task has the usual train/test interface.

When ``steps`` is a multiple of ``p`` every window holds exactly ``steps / p`` ones among its
targets, and the always-0 predictor scores exactly ``(p - 1) / p`` on either split.
"""

from __future__ import annotations

import numpy as np
import torch

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import SequenceDataset, TaskData

N_CLASSES = 2


def cycleworld_observations(phases: np.ndarray, steps: int, p: int) -> np.ndarray:
    """Int64 ``(N, steps + 1)``: ``o[r + t]`` for ``t = 0 .. steps`` and each phase ``r``."""
    k = np.asarray(phases, dtype=np.int64)[:, None] + np.arange(steps + 1)
    return (k % p == p - 1).astype(np.int64)


def load_cycleworld(
    p: int = 6, n_train: int = 1000, n_test: int = 200, steps: int = 60, seed: int = 0
) -> TaskData:
    """Windows of the p-Cycleworld stream with per-step next-observation targets (see above)."""
    if p < 2:
        raise ConfigError(f"Cycleworld needs a cycle of p >= 2 steps, got p={p}")
    if n_train < 1 or n_test < 1 or steps < 1:
        raise ConfigError(
            f"Cycleworld needs n_train, n_test and steps >= 1, got {n_train}, {n_test}, {steps}"
        )
    rng = np.random.default_rng(seed)
    train_phases = rng.integers(0, p, n_train)
    test_phases = rng.integers(0, p, n_test)

    def windows(phases: np.ndarray) -> SequenceDataset:
        obs = cycleworld_observations(phases, steps, p)
        x = torch.from_numpy(obs[:, :-1, None].astype(np.float32))
        y = torch.from_numpy(np.ascontiguousarray(obs[:, 1:]))
        return SequenceDataset(x=x, y=y)

    return TaskData(
        "cycleworld",
        windows(train_phases),
        windows(test_phases),
        n_out=N_CLASSES,
        target="label_per_step",
    )
