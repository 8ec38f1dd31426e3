"""The host's loop of on-chip learning: samples in a seeded order, the rate schedule sent through
the error shift, and a record per epoch.  The chip's arithmetic is :mod:`neurofptt.onchip`."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.io import append_jsonl, atomic_write_bytes
from neurofptt.onchip import LearningState, learning_config, run_sample
from neurofptt.quant.config import LearningConfig
from neurofptt.quant.golden import golden_run, predict
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.tasks.base import TaskData, validation_indices

#: the file of a run folder that gets one JSON line per epoch while on-chip learning runs
METRICS_LOG = "metrics.jsonl"


@dataclass
class OnchipHistory:
    """Result of :func:`train_onchip`: the network and learning state of the picked epoch, and
    one record per epoch.

    Each record holds ``online_train_accuracy`` (scored while each sample is being learned, so
    it includes the effect of the sample's own updates on its last steps and can look healthy
    while the network at the end of the epoch has collapsed), ``train_accuracy`` and
    ``val_accuracy`` (the network at the end of the epoch with learning off, on the samples it
    learned and on the held-out validation samples).  The test set is scored once, for
    ``picked_epoch`` (``test_accuracy``), so that it plays no part in choosing the epoch.
    """

    net: QuantizedNetwork
    state: LearningState
    epochs: list[dict[str, float]]
    picked_epoch: int
    test_accuracy: float
    train_samples: int
    val_samples: int
    val_indices: np.ndarray | None  # the training samples held out; None: the task's own split


def halving_period(epochs: int, halvings: int) -> int:
    """The ``halve_every`` of :func:`train_onchip` that halves the rate of a run of ``epochs``
    at most ``halvings`` times, evenly: ``ceil(epochs / (halvings + 1))`` (0, a constant rate,
    for ``halvings = 0``).

    The schedule scales with the run as the float reference's cosine does: 30 epochs halve
    every 8 (the rate ends at an eighth), 3 epochs every epoch.  A fixed period would leave a
    short run at its first rate, where learning one sample at a time is at its noisiest.
    """
    if epochs < 1 or halvings < 0:
        raise ConfigError(
            f"a halving schedule needs epochs >= 1 and halvings >= 0, got {epochs}, {halvings}"
        )
    return -(-epochs // (halvings + 1)) if halvings else 0


def _accuracy(net: QuantizedNetwork, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(golden_run(net, x).predictions == y))


def train_onchip(
    net: QuantizedNetwork,
    task: TaskData,
    mode: str | None = None,
    epochs: int = 5,
    *,
    seed: int = 0,
    shift_offset: int = 0,
    halve_every: int = 0,
    val_fraction: float = 0.1,
    run_dir: Path | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> OnchipHistory:
    """Learn ``task`` on chip: one sample at a time (batch 1), in a fresh random order per epoch.

    The host sets the learning rate of a run without changing the core, through the error shift
    ``b_t`` it sends with each update: ``shift_offset`` raises it throughout (each unit halves
    the rate of all three matrices; adapting a trained network wants smaller steps than learning
    from scratch), and ``halve_every`` (0: never) raises it by one more every that many epochs.
    The schedule pays off with ``rounding = "nearest"``; with ``"floor"`` the shifts' downward
    bias grows as the errors shrink (``docs/hardware.md`` section 9), and lowering the rate with
    it warns.

    Learning one sample at a time is noisy and a late epoch can be worse than an earlier one, so
    after every epoch the network is scored with learning off on a validation split, and the
    epoch with the best validation accuracy (the first of equals) is kept, with its learning
    state.  The split is the task's own (``task.val``) if it has one, else a seeded
    ``val_fraction`` of the training samples held out from learning, the samples
    :func:`~neurofptt.tasks.base.with_validation` holds out for the float trainer with the same
    seed (``seed`` also orders the samples).  The test set is scored once, for the kept epoch.

    ``mode`` (``"eprop"``/``"fptt"``) overrides ``net.config.learning.mode``; a config without a
    learning section gets the default :class:`LearningConfig` of that mode.  ``progress`` is
    called with each epoch's record, which is also appended to ``run_dir/metrics.jsonl`` (started
    afresh) when ``run_dir`` is given.
    """
    cfg = net.config
    if mode is not None:
        base = cfg.learning or LearningConfig()
        cfg = cfg.replace(learning=dataclasses.replace(base, mode=mode))
    learning_config(cfg)
    if task.target != "label":
        raise ConfigError(
            f"on-chip learning supports tasks with one label per sequence; {task.name!r} has "
            f"target {task.target!r}"
        )
    if (task.train.n_in, task.n_out) != (cfg.n_in, cfg.n_out):
        raise ShapeError(
            f"task {task.name!r} has {task.train.n_in} inputs and {task.n_out} classes but the "
            f"hardware has n_in={cfg.n_in}, n_out={cfg.n_out}"
        )
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    if halve_every < 0:
        raise ConfigError(f"halve_every must be >= 0 (0: a constant rate), got {halve_every}")
    if shift_offset < 0:
        raise ConfigError(f"shift_offset must be >= 0 (it lowers the rate), got {shift_offset}")
    lowered = shift_offset > 0 or 0 < halve_every < epochs
    if cfg.learning.rounding == "floor" and lowered:
        warnings.warn(
            "the rate is lowered through the error shift while hardware.learning.rounding = "
            "'floor': the flooring shifts then bias every factor downward and learning drifts; "
            "set rounding = 'nearest' (or train.onchip_halvings = 0 for a constant rate)",
            stacklevel=2,
        )
    x_all, y_all = task.train.numpy_spikes(), task.train.y.numpy()
    held = None
    if task.val is not None:
        x, y = x_all, y_all
        x_val, y_val = task.val.numpy_spikes(), task.val.y.numpy()
    else:
        learn, held = validation_indices(len(x_all), val_fraction, seed)
        x, y, x_val, y_val = x_all[learn], y_all[learn], x_all[held], y_all[held]
    net = QuantizedNetwork(cfg, net.w_in, net.w_rec, net.w_out)
    # the split draws from the first child of SeedSequence(seed), the sample order from another
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    state = LearningState.start(net)
    log = None if run_dir is None else Path(run_dir) / METRICS_LOG
    if log is not None:
        atomic_write_bytes(log, b"")
    records: list[dict[str, float]] = []
    best: tuple[float, int, QuantizedNetwork, LearningState] | None = None
    for epoch in range(1, epochs + 1):
        offset = shift_offset + ((epoch - 1) // halve_every if halve_every else 0)
        correct = 0
        for n in rng.permutation(len(x)):
            net, state, readout = run_sample(net, state, x[n], int(y[n]), shift_offset=offset)
            correct += int(predict(readout[None])[0] == y[n])
        record = {
            "epoch": epoch,
            "error_shift_offset": offset,
            "online_train_accuracy": correct / len(x),
            "train_accuracy": _accuracy(net, x, y),
            "val_accuracy": _accuracy(net, x_val, y_val),
            "updates": state.updates,
        }
        records.append(record)
        if best is None or record["val_accuracy"] > best[0]:
            best = (record["val_accuracy"], epoch, net, state)  # neither is modified later
        if log is not None:
            append_jsonl(log, record)
        if progress is not None:
            progress(record)
    assert best is not None  # epochs >= 1
    _, picked, net, state = best
    x_test, y_test = task.test.numpy_spikes(), task.test.y.numpy()
    return OnchipHistory(
        net=net,
        state=state,
        epochs=records,
        picked_epoch=picked,
        test_accuracy=_accuracy(net, x_test, y_test),
        train_samples=len(x),
        val_samples=len(x_val),
        val_indices=held,
    )
