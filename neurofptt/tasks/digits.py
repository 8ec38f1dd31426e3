"""Sequential handwritten digits: scikit-learn's bundled 8x8 digits read one row per time step.

No download: ``sklearn.datasets.load_digits`` ships the 1,797 images.  Each pixel (0..16) is
turned into spikes by a threshold (thermometer) encoder: input channel ``(column, level)`` spikes
at the row's time step when the pixel intensity exceeds ``thresholds[level]``.  With the default
four levels a row is 8 x 4 = 32 binary inputs and a digit is 8 steps.  The encoding is
deterministic, so the float model, the golden model and the RTL all see the same spikes.

The train/test split is fixed (stratified, 20 % test, ``random_state=0``): 1,437 / 360 samples.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import SequenceDataset, TaskData

DEFAULT_THRESHOLDS = (2, 6, 10, 14)
N_CLASSES = 10


def threshold_encode(
    images: np.ndarray, thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, repeat: int = 1
) -> np.ndarray:
    """Encode ``(N, rows, cols)`` intensities into ``(N, rows * repeat, cols * levels)`` spikes.

    Channel ``c * levels + l`` carries column ``c`` at level ``l``.  ``repeat`` presents each row
    for that many consecutive steps (longer sequences, same information).
    """
    if images.ndim != 3:
        raise ConfigError(f"images must be (N, rows, cols), got shape {images.shape}")
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")
    levels = np.asarray(thresholds)
    spikes = images[..., None] > levels  # (N, rows, cols, levels)
    n, rows, cols, n_levels = spikes.shape
    spikes = spikes.reshape(n, rows, cols * n_levels)
    return np.repeat(spikes, repeat, axis=1)


def load_digits_task(thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, repeat: int = 1) -> TaskData:
    """The embedded default task with its fixed split."""
    digits = load_digits()
    images = digits.images.astype(np.int64)
    labels = digits.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels
    )
    spikes = threshold_encode(images, tuple(thresholds), repeat)

    def subset(idx: np.ndarray) -> SequenceDataset:
        return SequenceDataset(
            x=torch.from_numpy(spikes[idx].astype(np.float32)),
            y=torch.from_numpy(labels[idx]),
        )

    return TaskData("digits", subset(idx_train), subset(idx_test), n_out=N_CLASSES)
