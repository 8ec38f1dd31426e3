"""IMDB movie-review sentiment (positive / negative) from a local copy of the reviews.

The FO-BPTT paper's "Sentiment Analysis Dataset" is 50,000 movie reviews labelled positive or
negative, 10 to 500 words each; it does not name the corpus or its vocabulary, and the size
matches the IMDB review set (Maas et al., 2011).  Nothing is downloaded: ``path`` names one of

* the ``aclImdb`` directory as distributed (``train/{pos,neg}/*.txt`` and
  ``test/{pos,neg}/*.txt``; ``train/unsup`` is ignored), or a directory that contains it;
  the split is the distributed 25,000 / 25,000 one;
* a CSV file with the columns ``review`` and ``sentiment`` (``positive`` / ``negative``), such as
  the 50,000-row "IMDB Dataset.csv"; the split is fixed and stratified (scikit-learn's
  ``train_test_split(test_size=test_fraction, stratify=labels, random_state=0)``; the default
  ``test_fraction = 0.5`` mirrors the 25,000 / 25,000 split).

Labels are 1 for positive and 0 for negative.  Text becomes tokens by :func:`tokenize`
(lowercase, ``<br />`` removed, word tokens of letters and digits with inner apostrophes kept, so
"Don't" is ``don't``).  The vocabulary is built from the training reviews only (those kept
after ``train_limit``): the ``vocab_size`` most frequent words, ties broken alphabetically, get
ids ``2 .. vocab_size + 1``; id 0 is padding and id 1 every other word.

Each review becomes ``length`` steps: the last ``length`` tokens are kept and shorter reviews are
padded at the front.  The label is read at the last step, so the review's ending, where reviews
usually sum up, sits next to the readout instead of behind a run of padding.  The defaults
(``length = 200``, ``vocab_size = 10,000``) are common IMDB settings, not the paper's; pass
``length = 500`` to cover the paper's longest reviews.

The models take a real vector per step, so token ids are mapped through a fixed random embedding
table: ``numpy.random.default_rng(seed).standard_normal((vocab_size + 2, embedding_dim))`` as
float32, with row 0 (padding) set to 0 so padded steps feed no input.  Rows are drawn in order,
so a word's vector depends only on ``seed``, ``embedding_dim`` and its id.  The table is not
trained: the network's input weights learn to read it, which keeps every task a plain float
sequence for every model and rule; a learned embedding would start from the token ids that
:func:`encode` returns.  Memory: ``x`` takes ``N * length * embedding_dim * 4`` bytes, 0.64 GB
for 25,000 reviews at the defaults.

Each split is put in a seeded order (``numpy.random.default_rng(seed + 1)``: a permutation of the
training reviews, then one of the test reviews) before ``train_limit`` / ``test_limit`` keep its
first k reviews, so a reduced budget still mixes both labels.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import SequenceDataset, TaskData

N_CLASSES = 2
PAD, UNKNOWN = 0, 1
LAYOUTS = (
    "an aclImdb directory with train/{pos,neg}/*.txt and test/{pos,neg}/*.txt (or a directory "
    "containing aclImdb/), or a CSV file with the columns 'review' and 'sentiment' "
    "(positive/negative)"
)
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_SENTIMENTS = {"negative": 0, "positive": 1}

Reviews = tuple[list[str], np.ndarray]


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens of a review, with its ``<br />`` line breaks removed."""
    return _WORD.findall(_LINE_BREAK.sub(" ", text).lower())


def _read_acl(root: Path) -> tuple[Reviews, Reviews]:
    def split(name: str) -> Reviews:
        texts: list[str] = []
        labels: list[int] = []
        for sentiment, label in (("neg", 0), ("pos", 1)):
            for file in sorted((root / name / sentiment).glob("*.txt")):
                texts.append(file.read_text(encoding="utf-8", errors="replace"))
                labels.append(label)
        if not texts:
            raise ConfigError(f"{root / name} holds no reviews in pos/*.txt or neg/*.txt")
        return texts, np.asarray(labels, dtype=np.int64)

    return split("train"), split("test")


def _read_csv(path: Path, test_fraction: float) -> tuple[Reviews, Reviews]:
    texts: list[str] = []
    labels: list[int] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"review", "sentiment"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{path} lacks the column(s) {sorted(missing)}; expected {LAYOUTS}")
        for row_number, row in enumerate(reader, start=2):
            sentiment = (row["sentiment"] or "").strip().lower()
            if sentiment not in _SENTIMENTS:
                raise ConfigError(
                    f"{path}, line {row_number}: sentiment {row['sentiment']!r} is neither "
                    "'positive' nor 'negative'"
                )
            texts.append(row["review"] or "")
            labels.append(_SENTIMENTS[sentiment])
    if not texts:
        raise ConfigError(f"{path} holds no reviews")
    y = np.asarray(labels, dtype=np.int64)
    try:
        idx_train, idx_test = train_test_split(
            np.arange(len(y)), test_size=test_fraction, random_state=0, stratify=y
        )
    except ValueError as err:
        raise ConfigError(f"cannot split the {len(y)} reviews of {path}: {err}") from err
    return (
        ([texts[i] for i in idx_train], y[idx_train]),
        ([texts[i] for i in idx_test], y[idx_test]),
    )


def read_imdb(path: str | Path, test_fraction: float = 0.5) -> tuple[Reviews, Reviews]:
    """``((train_texts, train_labels), (test_texts, test_labels))`` from either layout."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"IMDB path {path} does not exist; expected {LAYOUTS}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ConfigError(f"{path} is not a .csv file; expected {LAYOUTS}")
        return _read_csv(path, test_fraction)
    for root in (path, path / "aclImdb"):
        if all(
            (root / split / label).is_dir()
            for split in ("train", "test")
            for label in ("pos", "neg")
        ):
            return _read_acl(root)
    raise ConfigError(f"{path} has no recognised IMDB layout; expected {LAYOUTS}")


def build_vocab(token_lists: Sequence[list[str]], vocab_size: int) -> dict[str, int]:
    """Ids ``2 .. vocab_size + 1`` for the most frequent words (ties alphabetical)."""
    counts = Counter(token for tokens in token_lists for token in tokens)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:vocab_size]
    return {word: i + 2 for i, (word, _) in enumerate(ranked)}


def encode(token_lists: Sequence[list[str]], vocab: dict[str, int], length: int) -> np.ndarray:
    """``(N, length)`` int64 ids: the last ``length`` tokens, front-padded with 0."""
    ids = np.full((len(token_lists), length), PAD, dtype=np.int64)
    for i, tokens in enumerate(token_lists):
        kept = [vocab.get(token, UNKNOWN) for token in tokens[max(len(tokens) - length, 0) :]]
        ids[i, length - len(kept) :] = kept
    return ids


def embedding_table(n_rows: int, embedding_dim: int, seed: int) -> np.ndarray:
    """The fixed float32 ``(n_rows, embedding_dim)`` table, standard normal with row 0 zero."""
    table = np.random.default_rng(seed).standard_normal((n_rows, embedding_dim))
    table[PAD] = 0.0
    return table.astype(np.float32)


def load_imdb(
    path: str | Path | None = None,
    vocab_size: int = 10_000,
    length: int = 200,
    embedding_dim: int = 32,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    test_fraction: float = 0.5,
) -> TaskData:
    """IMDB sentiment as ``(N, length, embedding_dim)`` embedded token sequences (see above)."""
    if path is None:
        raise ConfigError(f"the IMDB task reads a local copy of the reviews: pass path= {LAYOUTS}")
    if vocab_size < 1 or length < 1 or embedding_dim < 1:
        raise ConfigError(
            "vocab_size, length and embedding_dim must be >= 1, got "
            f"{vocab_size}, {length}, {embedding_dim}"
        )
    for name, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and limit < 1:
            raise ConfigError(f"{name} must be >= 1 or None (all reviews), got {limit}")
    (train_texts, train_y), (test_texts, test_y) = read_imdb(path, test_fraction)
    order = np.random.default_rng(seed + 1)
    keep_train = order.permutation(len(train_y))[:train_limit]
    keep_test = order.permutation(len(test_y))[:test_limit]
    train_tokens = [tokenize(train_texts[i]) for i in keep_train]
    test_tokens = [tokenize(test_texts[i]) for i in keep_test]
    vocab = build_vocab(train_tokens, vocab_size)
    table = torch.from_numpy(embedding_table(vocab_size + 2, embedding_dim, seed))

    def split(tokens: list[list[str]], labels: np.ndarray) -> SequenceDataset:
        ids = torch.from_numpy(encode(tokens, vocab, length))
        return SequenceDataset(x=table[ids], y=torch.from_numpy(labels))

    train = split(train_tokens, train_y[keep_train])
    test = split(test_tokens, test_y[keep_test])
    return TaskData("imdb", train, test, n_out=N_CLASSES)
