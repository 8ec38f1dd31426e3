"""One training experiment on any task: a task, a model width and the training settings.

The hardware flow (:mod:`neurofptt.flow`) trains the network that goes on the chip; an experiment
trains any model on any task (regression, per-step labels, long sequences) to compare learning
rules, as the reproductions and sweeps do.  Its config has three tables::

    [experiment]   task = "tsfd", hidden = 32, val_fraction = 0.1
    [task]         the task loader's options, e.g. n_sequences = 2000 (see neurofptt.tasks)
    [train]        the TrainConfig options (rule, model, layers, epochs, lr, ...)
    [train.fptt]   a rule's own options, e.g. alpha = 0.5 (one table per rule)

A run writes ``checkpoint.pt`` (atomic, resumable) and ``experiment.json`` (config, history,
the validation-selected metric) to its folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurofptt.errors import ConfigError
from neurofptt.flow.config import VAL_FRACTION, check_val_fraction
from neurofptt.io import atomic_write_bytes, check_field_types, check_table, from_table
from neurofptt.learning.registry import build_model
from neurofptt.learning.trainer import TrainConfig, fit
from neurofptt.models.base import RecurrentModel
from neurofptt.tasks import TASKS, TaskData, check_task_name, load_task

CHECKPOINT = "checkpoint.pt"
RECORD = "experiment.json"


@dataclass(frozen=True)
class ExperimentSettings:
    """The ``[experiment]`` table: which task, the width of every hidden layer, and the share of
    the training samples held out to pick the reported epoch on."""

    task: str = "tsfd"
    hidden: int = 32
    #: share of the training samples held out to pick the reported epoch on (0: none, the last
    #: epoch is reported); a task with a validation split of its own uses that instead.  The
    #: flow's ``flow.val_fraction`` has the same default and meaning
    val_fraction: float = VAL_FRACTION

    def __post_init__(self) -> None:
        check_field_types(self, "experiment")
        check_val_fraction(self.val_fraction, "experiment")
        check_task_name(self.task)
        if self.hidden < 1:
            raise ConfigError(f"experiment.hidden must be >= 1, got {self.hidden}")


def task_options(task: str) -> frozenset[str]:
    """The keyword options the task's loader accepts (the valid keys of ``[task]``); a data
    file takes none."""
    if task not in TASKS:
        return frozenset()
    return frozenset(inspect.signature(TASKS[task]).parameters)


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: ExperimentSettings = field(default_factory=ExperimentSettings)
    task: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.task) - task_options(self.experiment.task))
        if unknown and self.experiment.task not in TASKS:
            raise ConfigError(
                f"task {self.experiment.task!r} is a data file, which takes no [task] options "
                f"(got {unknown}); leave the [task] table out"
            )
        if unknown:
            raise ConfigError(
                f"task {self.experiment.task!r} has no option(s) {unknown}; valid options: "
                f"{sorted(task_options(self.experiment.task))}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": dataclasses.asdict(self.experiment),
            "task": dict(self.task),
            "train": self.train.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ExperimentConfig:
        """A config from its tables; a table or option it leaves out takes the defaults (the
        task loader's options are checked against its signature in ``__post_init__``)."""
        tables = from_table(cls, data, "experiment config")
        settings = from_table(ExperimentSettings, tables.get("experiment", {}), "experiment")
        return cls(
            experiment=ExperimentSettings(**settings),
            task=dict(check_table(tables.get("task", {}), "task")),
            train=TrainConfig.from_dict(tables.get("train", {})),
        )


def build_experiment_model(cfg: ExperimentConfig, task: TaskData) -> RecurrentModel:
    """The configured model, sized for the task's inputs and outputs."""
    torch.manual_seed(cfg.train.seed)
    layers = cfg.train.layers
    hidden: int | list[int] = (
        cfg.experiment.hidden if layers == 1 else [cfg.experiment.hidden] * layers
    )
    return build_model(cfg.train.model, task.train.n_in, hidden, task.n_out)


def run_experiment(
    cfg: ExperimentConfig, out_dir: str | Path, *, resume: bool = True, progress: bool = False
) -> dict[str, Any]:
    """Train one experiment into ``out_dir``; returns (and writes) its record.

    The reported epoch is picked on a validation split (the task's own, else a seeded
    ``experiment.val_fraction`` of the training samples held out;
    :func:`~neurofptt.learning.trainer.fit`), and the test set is scored once, for it: picking
    the epoch (or reporting the best epoch) on the test set would make the test score an
    optimistic pick, which is why no test-selected number is recorded.  With ``val_fraction =
    0`` and no split of the task's own there is no selection: the last epoch is reported.

    The record holds ``config``, ``task``, ``history`` (the per-epoch records: the validation
    metric every epoch, the test metric only for the picked one), ``metric_name``
    (``test_accuracy`` or ``test_mse``) and ``metric`` (the picked epoch's test score, which
    sweeps and reproductions report), ``picked_epoch``, ``val_accuracy``/``val_mse`` (the picked
    epoch's validation score, ``None`` without a split), ``test_accuracy``/``test_mse`` (the
    same number as ``metric``), ``val_split`` (``"held out"``, ``"task"`` or ``"none"``),
    ``train_samples``, ``val_samples``, ``test_samples``, ``steps``, ``seconds`` and ``threads``
    (torch's thread count, set by the caller: :mod:`neurofptt.learning.threads`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = load_task(cfg.experiment.task, **cfg.task)
    model = build_experiment_model(cfg, task)
    start = time.perf_counter()
    history = fit(
        model,
        task,
        cfg.train,
        out_dir / CHECKPOINT,
        resume=resume,
        progress=progress,
        meta={"experiment": cfg.to_dict()},
        val_fraction=cfg.experiment.val_fraction,
    )
    record = {
        "config": cfg.to_dict(),
        "task": task.name,
        "metric_name": f"test_{history.metric}",
        "metric": history.test,
        "history": list(history),
        **history.summary(),
        "test_samples": len(task.test),
        "steps": task.train.steps,
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),  # what the seconds were measured with
    }
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(out_dir / RECORD, text.encode())
    return record
