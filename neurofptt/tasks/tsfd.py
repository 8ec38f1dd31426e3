"""TSFD: next-value forecasting of noisy sums of a sine and a cosine.

The FO-BPTT paper's "Time-Series Forecasting Dataset" is described only as "generated using sine
and cosine functions with added noise", 10,000 sequences of length 100, scored by the mean squared
error.  Frequencies, amplitudes, noise level and horizon are not given, so this module fixes them
and generates the data deterministically from a seed.  Sequence ``i`` is, for
``t = 0, 1, ..., length``,

    s_i[t] = a_i sin(w_i t + phi_i) + b_i cos(v_i t + psi_i) + noise * e_i[t]

with ``e_i[t] ~ N(0, 1)`` and per-sequence parameters drawn from ``numpy.random.default_rng(seed)``
in this order, each as one array of ``n_sequences`` values:

* ``a``, ``b`` ~ U(0.25, 0.5): amplitudes, so the clean signal stays inside [-1, 1];
* ``w``, ``v`` ~ U(2 pi / 50, 2 pi / 10) rad per step: periods between 10 and 50 steps, so a
  length-100 sequence holds 2 to 10 periods of each component;
* ``phi``, ``psi`` ~ U(0, 2 pi): phases;

and then the ``(n_sequences, length + 1)`` array ``e``.  The input is ``x[t] = s[t]`` and the
target the next sample ``y[t] = s[t + 1]`` (a one-step horizon), both of shape
``(N, length, 1)``.  Because the target carries fresh noise, no predictor beats an MSE of
``noise ** 2`` (0.01 at the default ``noise = 0.1``).

The split is fixed: the first ``n_sequences - round(test_fraction * n_sequences)`` sequences
train, the rest test.  The parameter arrays are drawn for all sequences at once, so changing
``n_sequences`` changes every sequence; change ``seed`` for an independent data set.
"""

from __future__ import annotations

import numpy as np
import torch

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import SequenceDataset, TaskData

AMPLITUDE_RANGE = (0.25, 0.5)
PERIOD_RANGE = (10.0, 50.0)


def generate_tsfd(n_sequences: int, length: int, noise: float, seed: int) -> np.ndarray:
    """The ``(n_sequences, length + 1)`` float64 signals ``s`` of the module docstring."""
    if n_sequences < 1 or length < 1:
        raise ConfigError(
            f"TSFD needs n_sequences >= 1 and length >= 1, got {n_sequences} and {length}"
        )
    if noise < 0:
        raise ConfigError(f"TSFD noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    size = (n_sequences, 1)
    low_w, high_w = 2 * np.pi / PERIOD_RANGE[1], 2 * np.pi / PERIOD_RANGE[0]
    a = rng.uniform(*AMPLITUDE_RANGE, size)
    b = rng.uniform(*AMPLITUDE_RANGE, size)
    w = rng.uniform(low_w, high_w, size)
    v = rng.uniform(low_w, high_w, size)
    phi = rng.uniform(0.0, 2 * np.pi, size)
    psi = rng.uniform(0.0, 2 * np.pi, size)
    e = rng.standard_normal((n_sequences, length + 1))
    t = np.arange(length + 1)
    return a * np.sin(w * t + phi) + b * np.cos(v * t + psi) + noise * e


def load_tsfd(
    n_sequences: int = 10_000,
    length: int = 100,
    noise: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> TaskData:
    """One-step forecasting of :func:`generate_tsfd`'s signals with the fixed split above."""
    n_test = round(test_fraction * n_sequences)
    if not 0 < n_test < n_sequences:
        raise ConfigError(
            f"test_fraction={test_fraction} of {n_sequences} sequences leaves an empty train or "
            "test split; use more sequences or a fraction strictly between 0 and 1"
        )
    s = torch.from_numpy(generate_tsfd(n_sequences, length, noise, seed).astype(np.float32))
    x, y = s[:, :-1, None].contiguous(), s[:, 1:, None].contiguous()
    n_train = n_sequences - n_test
    train = SequenceDataset(x=x[:n_train], y=y[:n_train])
    test = SequenceDataset(x=x[n_train:], y=y[n_train:])
    return TaskData("tsfd", train, test, n_out=1, target="regression")
