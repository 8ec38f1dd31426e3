"""One training experiment on any task: a task, a model width and the training settings.

The hardware flow (:mod:`neurofptt.flow`) trains the network that goes on the chip; an experiment
trains any model on any task (regression, per-step labels, long sequences) to compare learning
rules, as the reproductions and sweeps do.  Its config has three tables::

    [experiment]   task = "tsfd", hidden = 32
    [task]         the task loader's options, e.g. n_sequences = 2000 (see neurofptt.tasks)
    [train]        the TrainConfig options (rule, model, layers, epochs, lr, ...)
    [train.fptt]   a rule's own options, e.g. alpha = 0.5 (one table per rule)

A run writes ``checkpoint.pt`` (atomic, resumable) and ``experiment.json`` (config, history,
final metric) to its folder.
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
from neurofptt.io import atomic_write_bytes, check_field_types, check_table, from_table
from neurofptt.learning.objectives import higher_is_better, metric_name
from neurofptt.learning.registry import build_model
from neurofptt.learning.trainer import TrainConfig, fit
from neurofptt.models.base import RecurrentModel
from neurofptt.tasks import TASKS, TaskData, load_task

CHECKPOINT = "checkpoint.pt"
RECORD = "experiment.json"


@dataclass(frozen=True)
class ExperimentSettings:
    """The ``[experiment]`` table: which task, and the width of every hidden layer."""

    task: str = "tsfd"
    hidden: int = 32

    def __post_init__(self) -> None:
        check_field_types(self, "experiment")
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; available tasks: {sorted(TASKS)}")
        if self.hidden < 1:
            raise ConfigError(f"experiment.hidden must be >= 1, got {self.hidden}")


def task_options(task: str) -> frozenset[str]:
    """The keyword options the task's loader accepts (the valid keys of ``[task]``)."""
    return frozenset(inspect.signature(TASKS[task]).parameters)


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: ExperimentSettings = field(default_factory=ExperimentSettings)
    task: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.task) - task_options(self.experiment.task))
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

    The record's ``metric`` is the last epoch's test metric (``metric_name``: ``test_accuracy`` or
    ``test_mse``) and ``best_metric`` the best epoch's; the reproductions report the last.
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
    )
    name = f"test_{metric_name(task.target)}"
    values = [h[name] for h in history]
    record = {
        "config": cfg.to_dict(),
        "task": task.name,
        "metric_name": name,
        "metric": values[-1],
        "best_metric": max(values) if higher_is_better(task.target) else min(values),
        "history": history,
        "train_samples": len(task.train),
        "test_samples": len(task.test),
        "steps": task.train.steps,
        "seconds": time.perf_counter() - start,
    }
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(out_dir / RECORD, text.encode())
    return record
