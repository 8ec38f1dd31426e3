"""The adding problem: add the two marked numbers of a long sequence.

The long-memory regression task of Hochreiter & Schmidhuber (1997, "Long short-term memory"),
in its common modern form: every step brings a number drawn uniformly from [0, 1] on input 0,
and input 1 marks two of the steps with a 1, one in the first half of the sequence and one in the
second (each position uniform in its half).  The answer is the sum of the two marked numbers, so
the first one must be held for up to the whole sequence.

The targets cover every step, as the loss of a regression task does (``TaskData.target`` is
``"regression"``, scored by the mean squared error over all steps): the target of step ``t`` is
the sum of the marked numbers seen up to ``t`` (0 before the first mark, the first number until
the second mark, their sum from then on), so the last step's target is the classic answer and
every step asks for what the marks so far add up to.  Predicting 1 (the mean of the sum) at the
last step scores an MSE of 1/6 there; the MSE of the best predictor that knows only the step
number is the mean over the steps of the target's variance,
``a/3 + b/3 + a*b/2 - (a + b)**2/4`` at a step that the first mark has passed with probability
``a`` and the second with probability ``b``.  A network that learned the task scores far below.

The inputs are real numbers, not spikes, like TSFD's: the float models take them as they are;
the hardware flow and the data file, which carry spikes, do not.
"""

from __future__ import annotations

import numpy as np

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TaskData
from neurofptt.tasks.generate import generated_task

NAME = "adding"


def adding_sequences(n: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, steps, 2)`` (number, mark) and targets ``(n, steps, 1)`` (the running sum of
    the marked numbers), float32."""
    half = steps // 2
    values = rng.random((n, steps), dtype=np.float32)
    first = rng.integers(0, half, n)
    second = rng.integers(half, steps, n)
    marks = np.zeros((n, steps), dtype=np.float32)
    rows = np.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    x = np.stack([values, marks], axis=2)
    y = np.cumsum(values * marks, axis=1, dtype=np.float32)[:, :, None]
    return x, y


def load_adding(
    n_train: int = 1000,
    n_test: int = 200,
    n_val: int = 200,
    *,
    seed: int = 0,
    steps: int = 200,
) -> TaskData:
    """Train, test and validation sequences of the adding problem (see the module docstring),
    reproducible from ``seed`` (:mod:`~neurofptt.tasks.generate`)."""
    if steps < 2:
        raise ConfigError(f"{NAME}: steps = {steps}; two marks in two halves need steps >= 2")
    return generated_task(
        NAME,
        lambda n, rng: adding_sequences(n, steps, rng),
        n_train=n_train,
        n_test=n_test,
        n_val=n_val,
        seed=seed,
        n_out=1,
        target="regression",
    )
