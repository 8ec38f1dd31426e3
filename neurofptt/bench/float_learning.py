"""The score of float training over seeds, per task and rule, at the defaults (the leak derived
from the task) and with ``--tune``: ``neurofptt bench float-learning`` prints JSON.

Each point is what ``neurofptt train --task TASK --rule RULE`` does with a config that sets only
``train.epochs`` and ``train.seed`` (the seed draws the weights and orders the samples), and for
a regression task the loss at every step of a rule that scores only the last by default
(:func:`rule_table`, recorded as ``rule_options``): the task's inputs, outputs and leak come
from the task (:meth:`~neurofptt.flow.config.FlowConfig.from_dict`), the epoch with the best
validation score is picked, and the test score is that epoch's, scored once; with ``tune`` the
run is ``neurofptt train --tune``'s (:mod:`neurofptt.flow.tune`).  The score is the task's
metric (:func:`~neurofptt.learning.objectives.metric_name`): ``test_accuracy``/``val_accuracy``
for a task of class labels, ``test_mse``/``val_mse`` (lower is better) for a regression task; a
record names it (``metric``).  ``samples`` > 0 draws the task with that many training samples
(its ``n_train``; the validation and test splits keep their sizes) into a data file first, as
``neurofptt data make --set n_train=N`` does, so that long tasks fit a budget.  A data file holds
spikes, so a task of real-valued inputs (``adding``, ``tsfd``) is measured at its own size: the
flow names a built-in task without options.

A run whose loss becomes NaN or infinite (:class:`~neurofptt.errors.TrainingDiverged`) is a
result, not an error that ends the bench: its record says in which epoch it diverged
(``diverged``), has no picked epoch, history or swing, and scores what a network that learned
nothing scores (:func:`learned_nothing`), so the seeds' mean and worst count it.

Besides the picked epoch's scores a record gives ``swing``: the largest change of the validation
score from one epoch to the next after epoch :data:`SETTLED` (a run that settles changes
little; one that jumps between solutions is not stable however good its best epoch).  The
summary (:func:`~neurofptt.bench.learning.summarize`'s mean, standard deviation and worst seed
per task, rule and tuning) adds the largest swing of the seeds and the mean derived leak.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import fields
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from neurofptt.bench.learning import summarize
from neurofptt.bench.threads import conditions
from neurofptt.errors import ConfigError, TrainingDiverged
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.stages import load_float_task, stage_train
from neurofptt.flow.tune import tune_and_train
from neurofptt.learning.objectives import metric_name
from neurofptt.learning.registry import RULE_OPTIONS
from neurofptt.tasks import load_task, make_command
from neurofptt.tasks.base import TaskData

#: the rules measured by default: the offline reference and the two online rules
RULES = ("bptt", "fptt", "eprop")
#: epochs after which a run should have settled (the swing is measured from here on)
SETTLED = 5


def swing(history: list[dict[str, Any]], key: str, after: int = SETTLED) -> float:
    """The largest change of ``key`` (the validation score: ``val_accuracy``, ``val_mse``)
    between consecutive epochs after epoch ``after`` (0 for a run too short to have one)."""
    scores = [record[key] for record in history[after - 1 :]] if after > 0 else []
    return max((abs(b - a) for a, b in pairwise(scores)), default=0.0)


def task_source(task: str, samples: int, folder: Path) -> str:
    """The task to train on: ``task`` itself, or (``samples`` > 0) a data file of it with that
    many training samples written into ``folder``; a task that no data file can hold (real-valued
    inputs) is refused, with the fix."""
    if not samples:
        return task
    path = folder / f"{task}-{samples}.npz"
    if not path.is_file():
        try:
            make_command(task, path, [f"n_train={samples}"])
        except ConfigError as exc:
            raise ConfigError(
                f"--samples draws each task with that many training samples into a data file, "
                f"which failed for {task!r} ({exc}); measure it at its own size, without "
                "--samples"
            ) from exc
    return str(path)


def rule_table(rule: str, source: str) -> dict[str, Any]:
    """The ``[train]`` entries of a point beyond its epochs, seed and rule: none (the rule's
    defaults), but for a regression task the loss at every step (``loss_steps = "all"``) of a
    rule that has the option (e-prop, RTRL), since a target at every step takes no other
    (:func:`~neurofptt.learning.objectives.check_loss_steps_for`) and ``"last"``, the default,
    is a classifier's."""
    options = RULE_OPTIONS.get(rule)
    takes_steps = options is not None and "loss_steps" in {f.name for f in fields(options)}
    if takes_steps and load_task(source).target == "regression":
        return {rule: {"loss_steps": "all"}}
    return {}


def learned_nothing(task: TaskData) -> float:
    """The test score of a network that learned nothing from ``task``'s training split: for
    class labels the accuracy of always answering the most frequent training label (over the
    labelled steps of per-step labels), for real-valued targets the mean squared error of
    always answering the training targets' mean."""
    train, test = task.train.y.numpy(), task.test.y.numpy()
    if task.target == "regression":
        return float(np.mean((test - train.mean()) ** 2))
    labels = train[train >= 0].astype(np.int64)
    common = int(np.bincount(labels).argmax())
    return float(np.mean(test[test >= 0] == common))


def bench_point(
    task: str,
    rule: str,
    seed: int,
    epochs: int,
    folder: Path,
    *,
    samples: int = 0,
    tune: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """One run (the module docstring) in ``folder``; ``workers``: the tuning's processes."""
    source = task_source(task, samples, folder)
    options = rule_table(rule, source)
    train = {"epochs": epochs, "seed": seed, "rule": rule, **options}
    cfg = FlowConfig.from_dict({"flow": {"task": source}, "train": train})
    run_dir = folder / f"{task}-{rule}-{seed}{'-tune' if tune else ''}"
    start = time.perf_counter()
    try:
        if tune:
            record = tune_and_train(cfg, run_dir, progress=False, workers=workers)
        else:
            record = stage_train(cfg, run_dir, progress=False)
    except TrainingDiverged as exc:
        record = diverged_record(load_float_task(cfg), exc.epoch)
    history, metric = record["history"], record["metric"]
    return {
        "task": task,
        "rule": rule,
        "seed": seed,
        "tuned": tune,
        "forced_offset": None,  # the keys summarize() groups by: no error shift in float
        "error_shift_offset": None,
        "epochs": epochs,
        "train_samples": record["train_samples"],
        "val_samples": record["val_samples"],
        "hardware": {
            "leak_shift": cfg.hardware.leak_shift,
            "out_leak_shift": cfg.hardware.out_leak_shift,
            "n_rec": cfg.hardware.n_rec,
        },
        "derived": cfg.derived,
        "rule_options": options.get(rule),  # what the point sets beyond the rule's defaults
        "tune": record.get("tune"),
        "picked_epoch": record["picked_epoch"],
        "target": record["target"],
        "metric": metric,
        f"val_{metric}": record[f"val_{metric}"],
        f"test_{metric}": record[f"test_{metric}"],
        "swing": swing(history, f"val_{metric}") if history else None,
        "diverged": record.get("diverged"),
        "history": history,
        "seconds": time.perf_counter() - start,
    }


def diverged_record(task: TaskData, epoch: int) -> dict[str, Any]:
    """The fields of ``stage_train``'s record that :func:`bench_point` takes, for a run that
    diverged in ``epoch``: nothing picked, the score of :func:`learned_nothing`."""
    metric = metric_name(task.target)
    return {
        "diverged": epoch,
        "history": [],
        "metric": metric,
        "target": task.target,
        "train_samples": None,
        "val_samples": None,
        "tune": None,
        "picked_epoch": None,
        f"val_{metric}": None,
        f"test_{metric}": learned_nothing(task),
    }


def point_line(record: dict[str, Any]) -> str:
    """The line the bench prints as a point ends."""
    score = record[f"test_{record['metric']}"]
    head = (
        f"{record['task']} {record['rule']} seed {record['seed']}: "
        f"leak {record['hardware']['leak_shift']}, "
    )
    if record["diverged"]:
        return (
            f"{head}diverged in epoch {record['diverged']}, test {record['metric']} {score:.3f} "
            f"(learned nothing) ({record['seconds']:.0f} s)"
        )
    return (
        f"{head}test {record['metric']} {score:.3f} (epoch {record['picked_epoch']}), "
        f"swing {record['swing']:.2f} ({record['seconds']:.0f} s)"
    )


def summarize_float(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`~neurofptt.bench.learning.summarize` with, per row, the seeds' largest swing and
    their leak shifts (the tuned one where tuning chose it)."""
    rows = summarize(records)
    for row in rows:
        runs = [
            r
            for r in records
            if (r["task"], r["rule"], r["tuned"]) == (row["task"], row["rule"], row["tuned"])
        ]
        row.pop("offsets")
        row["swing"] = max((run["swing"] for run in runs if run["swing"] is not None), default=None)
        row["diverged"] = [run["seed"] for run in runs if run.get("diverged")]
        row["leak_shifts"] = [
            run["tune"]["leak_shift"] if run["tune"] else run["hardware"]["leak_shift"]
            for run in runs
        ]
        row["picked_epochs"] = [run["picked_epoch"] for run in runs]
    return rows


def format_table(summary: list[dict[str, Any]]) -> str:
    lines = [
        f"{'task':<24} {'rule':<6} {'tuned':<5} {'metric':<8} {'mean':>7} {'std':>7} "
        f"{'worst':>7} {'swing':>7} leak, diverged seeds"
    ]
    for row in summary:
        swung = "-" if row["swing"] is None else f"{row['swing']:.4f}"
        lines.append(
            f"{row['task']:<24} {row['rule']:<6} {row['tuned']!s:<5} {row['metric']:<8} "
            f"{row['mean']:>7.4f} {row['std']:>7.4f} {row['worst']:>7.4f} {swung:>7} "
            f"{row['leak_shifts']} {row['diverged']}"
        )
    return "\n".join(lines)


def bench_float_learning(
    tasks: list[str],
    rules: list[str],
    seeds: int,
    epochs: int,
    *,
    samples: int = 0,
    tune: bool = False,
    runs: Path | None = None,
) -> dict[str, Any]:
    """Every task x rule x seed (``0 .. seeds - 1``) point, trained in turn in ``runs`` (a
    temporary folder if ``None``); returns the conditions (machine and load before and after),
    the arguments, the summary and the records."""
    before = conditions()
    arguments = {"tasks": tasks, "rules": rules, "seeds": seeds, "epochs": epochs}
    arguments |= {"samples": samples, "tune": tune}
    records = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = runs or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for task in tasks:  # every data file first: a task none can hold stops the bench now
            task_source(task, samples, folder)
        for task in tasks:
            for rule in rules:
                for seed in range(seeds):
                    record = bench_point(
                        task, rule, seed, epochs, folder, samples=samples, tune=tune
                    )
                    records.append(record)
                    print(point_line(record), file=sys.stderr, flush=True)
    summary = summarize_float(records)
    after = conditions()["load_average"]
    return {
        "conditions": {**before, "load_average_after": after},
        "arguments": arguments,
        "summary": summary,
        "records": records,
        "mean_seconds": statistics.fmean(r["seconds"] for r in records) if records else 0.0,
    }
