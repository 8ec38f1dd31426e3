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
from neurofptt.learning.objectives import readout_accuracy, readout_units
from neurofptt.onchip import LearningState, learning_config, run_sample
from neurofptt.quant.config import HardwareConfig, LearningConfig
from neurofptt.quant.golden import golden_run
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.tasks.base import CLASS_TARGETS, TaskData, validation_indices

#: the file of a run folder that gets one JSON line per epoch while on-chip learning runs
METRICS_LOG = "metrics.jsonl"


@dataclass(frozen=True)
class Progress:
    """A run after some epochs: one record per epoch, the network and learning state after the
    last epoch (where a longer run goes on from), and the first epoch with the best validation
    accuracy with its network and learning state (what the run keeps)."""

    records: list[dict[str, float]]
    net: QuantizedNetwork
    state: LearningState
    picked_epoch: int
    picked_net: QuantizedNetwork
    picked_state: LearningState

    @classmethod
    def first(
        cls, record: dict[str, float], net: QuantizedNetwork, state: LearningState
    ) -> Progress:
        """A run after its first epoch."""
        return cls([record], net, state, record["epoch"], net, state)

    @property
    def val_accuracy(self) -> float:
        """The validation accuracy of the picked epoch."""
        return self.records[self.picked_epoch - 1]["val_accuracy"]

    def after(
        self, record: dict[str, float], net: QuantizedNetwork, state: LearningState
    ) -> Progress:
        """This run one epoch further, the epoch's record and its network and state given."""
        better = record["val_accuracy"] > self.val_accuracy
        return Progress(
            [*self.records, record],
            net,
            state,
            record["epoch"] if better else self.picked_epoch,
            net if better else self.picked_net,
            state if better else self.picked_state,
        )


@dataclass
class OnchipHistory:
    """Result of :func:`train_onchip`: the network and learning state of the picked epoch, and
    one record per epoch.

    Each record holds ``online_train_accuracy`` (scored while each sample is being learned, so
    it includes the effect of the sample's own updates on its last steps and can look healthy
    while the network at the end of the epoch has collapsed), ``train_accuracy`` and
    ``val_accuracy`` (the network at the end of the epoch with learning off, on the samples it
    learned and on the held-out validation samples).  With per-step labels every accuracy is
    over the supervised units, as the float trainer scores them.  The test set is scored once, for
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


def _correct(readout: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """Correct predictions and scored units of readouts ``(B, T, n_out)`` against labels ``y``
    (:func:`~neurofptt.learning.objectives.readout_units`, as the float trainer scores)."""
    predicted, true = readout_units(readout, y)
    return int((predicted == true).sum()), len(true)


def _accuracy(net: QuantizedNetwork, x: np.ndarray, y: np.ndarray) -> float:
    return readout_accuracy(golden_run(net, x).readout, y)


def learning_hardware(net: QuantizedNetwork, mode: str | None, task: TaskData) -> HardwareConfig:
    """The network's hardware config with ``mode`` in its learning section, checked against the
    task: the core learns class labels (one per sequence, or per step with ``-1`` where a step
    has no target), with the task's inputs and classes."""
    cfg = net.config
    if mode is not None:
        base = cfg.learning or LearningConfig()
        cfg = cfg.replace(learning=dataclasses.replace(base, mode=mode))
    learning_config(cfg)
    if task.target not in CLASS_TARGETS:
        raise ConfigError(
            f"on-chip learning supports class labels (one per sequence or one per step); "
            f"{task.name!r} has target {task.target!r}"
        )
    if (task.train.n_in, task.n_out) != (cfg.n_in, cfg.n_out):
        raise ShapeError(
            f"task {task.name!r} has {task.train.n_in} inputs and {task.n_out} classes but the "
            f"hardware has n_in={cfg.n_in}, n_out={cfg.n_out}"
        )
    return cfg


def _check_schedule(cfg: HardwareConfig, epochs: int, shift_offset: int, halve_every: int) -> None:
    """Refuse a schedule that cannot run, and warn where lowering the rate will backfire: the
    floor rounding's downward bias grows as the shifts grow.  The warning names the caller of
    :func:`train_onchip`, the code that chose the schedule."""
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
            stacklevel=3,
        )


@dataclass(frozen=True)
class Split:
    """The samples a run learns (``x``, ``y``) and those it picks its epoch on (``x_val``,
    ``y_val``); ``held`` are the indices of the training samples held out for validation
    (``None``: the task's own split)."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    held: np.ndarray | None

    @classmethod
    def of(cls, task: TaskData, val_fraction: float, seed: int) -> Split:
        """The task's own validation split, else the seeded share of the training samples that
        :func:`~neurofptt.tasks.base.with_validation` holds out for the float trainer, so both
        engines pick their epochs on the same samples."""
        x_all, y_all = task.train.numpy_spikes(), task.train.y.numpy()
        if task.val is not None:
            return cls(x_all, y_all, task.val.numpy_spikes(), task.val.y.numpy(), None)
        learn, held = validation_indices(len(x_all), val_fraction, seed)
        return cls(x_all[learn], y_all[learn], x_all[held], y_all[held], held)


def _learn_epoch(
    net: QuantizedNetwork,
    state: LearningState,
    split: Split,
    order: np.ndarray,
    shift_offset: int,
) -> tuple[QuantizedNetwork, LearningState, float]:
    """Learn every training sample once, in ``order``; returns the network and learning state
    after the epoch and the accuracy scored while learning (each sample's prediction comes
    after its own updates on the supervised steps).  Per-step labels are sent as they are:
    the chip learns at the labelled steps only (:func:`~neurofptt.onchip.run_sample`)."""
    correct = units = 0
    for n in order:
        label = split.y[n] if split.y.ndim == 2 else int(split.y[n])
        net, state, readout = run_sample(net, state, split.x[n], label, shift_offset=shift_offset)
        right, scored = _correct(readout[None], split.y[n : n + 1])
        correct, units = correct + right, units + scored
    return net, state, correct / units if units else float("nan")


def _score_epoch(
    epoch: int,
    offset: int,
    online: float,
    net: QuantizedNetwork,
    state: LearningState,
    split: Split,
) -> dict[str, float]:
    """The epoch's record: the network at its end scored with learning off, on the samples it
    learned and on the validation samples, beside the accuracy scored while learning."""
    return {
        "epoch": epoch,
        "error_shift_offset": offset,
        "online_train_accuracy": online,
        "train_accuracy": _accuracy(net, split.x, split.y),
        "val_accuracy": _accuracy(net, split.x_val, split.y_val),
        "updates": state.updates,
    }


def epoch_offset(epoch: int, shift_offset: int, halve_every: int) -> int:
    """The error shift offset of ``epoch`` (from 1): ``shift_offset``, one more every
    ``halve_every`` epochs (0: never)."""
    return shift_offset + ((epoch - 1) // halve_every if halve_every else 0)


def learn(
    net: QuantizedNetwork,
    split: Split,
    epochs: int,
    *,
    seed: int,
    shift_offset: int,
    halve_every: int,
    resume: Progress | None = None,
    sink: Callable[[dict[str, float]], None] | None = None,
) -> Progress:
    """Learn up to epoch ``epochs`` from ``net`` with a fresh learning state, or go on from
    ``resume``, the first epochs of the same run (the same split, seed and schedule), from its
    last network and learning state; ``sink`` gets each new epoch's record.

    The sample order of an epoch depends only on the seed and the epoch, so a run resumed after
    ``k`` epochs learns exactly what it would have learned without stopping.  The networks and
    states a :class:`Progress` holds are never modified later, so a caller may keep them.
    """
    # the split draws from the first child of SeedSequence(seed), the sample order from another
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    progress, state = resume, LearningState.start(net)
    if resume is not None:
        net, state = resume.net, resume.state
        for _ in resume.records:
            rng.permutation(len(split.x))  # the orders of the epochs already learned
    for epoch in range(1 + (0 if resume is None else len(resume.records)), epochs + 1):
        offset = epoch_offset(epoch, shift_offset, halve_every)
        order = rng.permutation(len(split.x))
        net, state, online = _learn_epoch(net, state, split, order, offset)
        record = _score_epoch(epoch, offset, online, net, state, split)
        progress = (
            Progress.first(record, net, state)
            if progress is None
            else progress.after(record, net, state)
        )
        if sink is not None:
            sink(record)
    assert progress is not None  # epochs >= 1
    return progress


def _check_resume(resume: Progress, epochs: int, shift_offset: int, halve_every: int) -> None:
    """Refuse to go on from epochs of another schedule or from more epochs than the run has."""
    done = [record["error_shift_offset"] for record in resume.records]
    if len(done) > epochs or done != [
        epoch_offset(epoch, shift_offset, halve_every) for epoch in range(1, len(done) + 1)
    ]:
        raise ConfigError(
            f"cannot go on from {len(done)} epochs at error shift offsets {done}: the run has "
            f"{epochs} epochs from offset {shift_offset}, halving every {halve_every or 'never'}"
        )


def _epoch_sink(
    run_dir: Path | None, progress: Callable[[dict[str, float]], None] | None
) -> Callable[[dict[str, float]], None]:
    """Where each epoch's record goes: a line of ``run_dir/metrics.jsonl``, started afresh here
    so that it only ever holds this run's epochs, and ``progress``."""
    log = None if run_dir is None else Path(run_dir) / METRICS_LOG
    if log is not None:
        atomic_write_bytes(log, b"")

    def sink(record: dict[str, float]) -> None:
        if log is not None:
            append_jsonl(log, record)
        if progress is not None:
            progress(record)

    return sink


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
    resume: Progress | None = None,
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
    afresh) when ``run_dir`` is given.  ``resume`` goes on from the first epochs of this run
    (:func:`learn`; the tuning of :mod:`neurofptt.flow.onchip_tune` keeps the best point's);
    its records are passed on as if they had just been learned.
    """
    cfg = learning_hardware(net, mode, task)
    _check_schedule(cfg, epochs, shift_offset, halve_every)
    if resume is not None:
        _check_resume(resume, epochs, shift_offset, halve_every)
    split = Split.of(task, val_fraction, seed)
    sink = _epoch_sink(run_dir, progress)
    for record in [] if resume is None else resume.records:
        sink(record)
    run = learn(
        QuantizedNetwork(cfg, net.w_in, net.w_rec, net.w_out),
        split,
        epochs,
        seed=seed,
        shift_offset=shift_offset,
        halve_every=halve_every,
        resume=resume,
        sink=sink,
    )
    return OnchipHistory(
        net=run.picked_net,
        state=run.picked_state,
        epochs=run.records,
        picked_epoch=run.picked_epoch,
        test_accuracy=_accuracy(run.picked_net, task.test.numpy_spikes(), task.test.y.numpy()),
        train_samples=len(split.x),
        val_samples=len(split.x_val),
        val_indices=split.held,
    )
