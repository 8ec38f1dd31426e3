"""The host's loop of on-chip learning: samples in a seeded order, the rate schedule sent through
the error shift, and a record per epoch.  The chip's arithmetic is :mod:`neurofptt.onchip`."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.onchip import LearningState, learning_config, run_sample
from neurofptt.quant.config import LearningConfig
from neurofptt.quant.golden import golden_run, predict
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.tasks.base import TaskData


@dataclass
class OnchipHistory:
    """Result of :func:`train_onchip`: the learned network, the learning state and one record
    per epoch (``train_accuracy`` is scored online, while the sample is being learned, so it
    includes the effect of the sample's own updates on its last steps; ``test_accuracy`` uses the
    weights at the end of the epoch with learning off)."""

    net: QuantizedNetwork
    state: LearningState
    epochs: list[dict[str, float]]


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


def train_onchip(
    net: QuantizedNetwork,
    task: TaskData,
    mode: str | None = None,
    epochs: int = 5,
    *,
    seed: int = 0,
    shift_offset: int = 0,
    halve_every: int = 0,
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

    ``mode`` (``"eprop"``/``"fptt"``) overrides ``net.config.learning.mode``; a config without a
    learning section gets the default :class:`LearningConfig` of that mode.  ``progress`` is
    called with each epoch's record.
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
    net = QuantizedNetwork(cfg, net.w_in, net.w_rec, net.w_out)
    x, y = task.train.numpy_spikes(), task.train.y.numpy()
    x_test, y_test = task.test.numpy_spikes(), task.test.y.numpy()
    rng = np.random.default_rng(seed)
    state = LearningState.start(net)
    records = []
    for epoch in range(1, epochs + 1):
        offset = shift_offset + ((epoch - 1) // halve_every if halve_every else 0)
        correct = 0
        for n in rng.permutation(len(x)):
            net, state, readout = run_sample(net, state, x[n], int(y[n]), shift_offset=offset)
            correct += int(predict(readout[None])[0] == y[n])
        record = {
            "epoch": epoch,
            "error_shift_offset": offset,
            "train_accuracy": correct / len(x),
            "test_accuracy": float(np.mean(golden_run(net, x_test).predictions == y_test)),
            "updates": state.updates,
        }
        records.append(record)
        if progress is not None:
            progress(record)
    return OnchipHistory(net=net, state=state, epochs=records)
