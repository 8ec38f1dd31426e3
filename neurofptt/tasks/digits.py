"""Handwritten digits: scikit-learn's bundled 8x8 digits, read one row per step or shown whole.

No download: ``sklearn.datasets.load_digits`` ships the 1,797 images.  Each pixel (0..16) is
turned into spikes by thresholds, so the encoding is deterministic and the float model, the
golden model and the RTL all see the same spikes.  Two codings of the same images:

* ``digits`` (:func:`threshold_encode`), a sequence task: one row per step, and input channel
  ``(column, level)`` spikes when the pixel exceeds ``thresholds[level]`` (thermometer code).
  With the default four levels a row is 8 x 4 = 32 inputs and a digit 8 steps; the network must
  keep the early rows to classify at the last.
* ``digits-image`` (:func:`image_encode`), the whole image at every step: one channel per pixel
  (64), and step ``level`` carries the pixels that exceed ``thresholds[level]``, so a pixel
  spikes once per level it exceeds (a rate code in four steps by default).  This is the input of
  the 64-input on-chip-learning FPGA designs that report on these digits (Spiker-LL,
  arXiv 2605.18003: 64-20-10, 93 %), so results compare with theirs.

The train/test split is fixed (stratified, 20 % test, ``random_state=0``): 1,437 / 360 samples,
the same images in both codings.
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


def _check_images(images: np.ndarray, repeat: int) -> None:
    if images.ndim != 3:
        raise ConfigError(f"images must be (N, rows, cols), got shape {images.shape}")
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")


def threshold_encode(
    images: np.ndarray, thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, repeat: int = 1
) -> np.ndarray:
    """Encode ``(N, rows, cols)`` intensities into ``(N, rows * repeat, cols * levels)`` spikes.

    Channel ``c * levels + l`` carries column ``c`` at level ``l``.  ``repeat`` presents each row
    for that many consecutive steps (longer sequences, same information).
    """
    _check_images(images, repeat)
    levels = np.asarray(thresholds)
    spikes = images[..., None] > levels  # (N, rows, cols, levels)
    n, rows, cols, n_levels = spikes.shape
    spikes = spikes.reshape(n, rows, cols * n_levels)
    return np.repeat(spikes, repeat, axis=1)


def image_encode(
    images: np.ndarray, thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, repeat: int = 1
) -> np.ndarray:
    """Encode ``(N, rows, cols)`` intensities into ``(N, levels * repeat, rows * cols)`` spikes.

    Channel ``r * cols + c`` is pixel ``(r, c)``; step ``l`` (held for ``repeat`` steps) carries
    the pixels above ``thresholds[l]``, the levels in the order given, so a pixel's spike count
    is ``repeat`` times the number of thresholds it exceeds.
    """
    _check_images(images, repeat)
    levels = np.asarray(thresholds)
    flat = images.reshape(len(images), -1)
    spikes = flat[:, None, :] > levels[None, :, None]  # (N, levels, pixels)
    return np.repeat(spikes, repeat, axis=1)


def _digit_task(name: str, spikes: np.ndarray, labels: np.ndarray) -> TaskData:
    """``spikes`` and ``labels`` of every image as a task with the fixed split."""
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels
    )

    def subset(idx: np.ndarray) -> SequenceDataset:
        return SequenceDataset(
            x=torch.from_numpy(spikes[idx].astype(np.float32)),
            y=torch.from_numpy(labels[idx]),
        )

    return TaskData(name, subset(idx_train), subset(idx_test), n_out=N_CLASSES)


def _images() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    return digits.images.astype(np.int64), digits.target.astype(np.int64)


def load_digits_task(thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, repeat: int = 1) -> TaskData:
    """The embedded default task, row by row (:func:`threshold_encode`), with its fixed split."""
    images, labels = _images()
    return _digit_task("digits", threshold_encode(images, tuple(thresholds), repeat), labels)


def load_digits_image(
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS, repeat: int = 1
) -> TaskData:
    """The digits shown whole at every step (:func:`image_encode`), with the same split."""
    images, labels = _images()
    return _digit_task("digits-image", image_encode(images, tuple(thresholds), repeat), labels)
