"""The float run's learning rate, and the leak it learns with, tuned on the validation split:
``neurofptt train --tune``.

The defaults (``train.lr``, the leak derived from the task: :mod:`neurofptt.tasks.memory`) are
meant to carry to any task, but a task can still learn best at a rate a factor of two or four
either side, or with a memory twice or half as long.  The grid is small and runs in two rounds:
the rate times :data:`LR_FACTORS` at the config's leak, then, when the leak was derived from the
task rather than set by the config, the derived shift minus and plus one at the best rate (a
leak the config sets is the user's choice and stays).  Each point is the first
:data:`TUNE_EPOCHS` epochs of the whole run with its settings (the same start, validation split,
sample order and rate schedule over the whole run), trained in a folder of its own under
``OUT/tune/``, the points of a round in parallel processes (one thread each).  Points are
compared on the best validation score their epochs reached (accuracy, or the MSE of a regression
task); the test split plays no part.  Equal points go to the one nearest the defaults (rate
factor 1, the derived leak), then to the lower rate and the shorter leak.

The run then goes on from the best point's last epoch: its checkpoint and ``metrics.jsonl``
become ``OUT``'s and training resumes from them, so the chosen run learns exactly what a run
started with its settings would have, and the grid's epochs are not learned twice.  Every point
keeps its checkpoint, so an interrupted tuning continues with ``--resume`` (finished points are
read, not trained again; a run already going on goes on).  ``train.json`` records the grid and the
choice under ``tune``.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from neurofptt.errors import ConfigError
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.stages import (
    CHECKPOINT,
    build_model,
    float_config,
    load_float_task,
    stage_train,
)
from neurofptt.io import write_json
from neurofptt.learning.distributed import is_main, launched
from neurofptt.learning.objectives import higher_is_better, metric_name
from neurofptt.learning.threads import available_cores, set_threads
from neurofptt.learning.trainer import METRICS_LOG, start_run

#: the rates tried: the config's times each factor
LR_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: the leak shifts tried beside a derived one, at the best rate
LEAK_STEPS = (-1, 1)
#: epochs trained at each grid point
TUNE_EPOCHS = 3
TUNE_DIR = "tune"


def point_name(lr: float, leak_shift: int) -> str:
    """The folder of a grid point under ``OUT/tune``."""
    return f"lr{lr:.3g}_leak{leak_shift}"


def point_config(cfg: FlowConfig, lr: float, leak_shift: int) -> FlowConfig:
    """``cfg`` with the point's rate and leak."""
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, lr=lr),
        hardware=cfg.hardware.replace(leak_shift=leak_shift),
    )


def _one_thread() -> None:
    """Each worker trains with one torch thread: the grid's points are the parallel work."""
    set_threads(1)


def train_point(cfg: FlowConfig, folder: Path, epochs: int) -> list[dict[str, Any]]:
    """The first ``epochs`` epochs of ``cfg``'s run in ``folder`` (continued if its checkpoint
    holds some), with the checkpoint :func:`~neurofptt.flow.stages.stage_train` would write;
    returns the epochs' records.  The test split is not scored."""
    model = build_model(cfg)
    run = start_run(
        model,
        load_float_task(cfg),
        cfg.train,
        folder / CHECKPOINT,
        resume=True,
        progress=False,
        meta={"flow": cfg.to_dict()},
        val_fraction=cfg.flow.val_fraction,
    )
    run.train_until(epochs)
    return [dict(record) for record in run.state.history[:epochs]]


def run_points(
    configs: list[FlowConfig], folders: list[Path], epochs: int, workers: int
) -> list[list[dict[str, Any]]]:
    """:func:`train_point` of every point, ``workers`` side by side in fresh processes (one:
    here, in turn)."""
    if workers == 1:
        pairs = zip(configs, folders, strict=True)
        return [train_point(cfg, folder, epochs) for cfg, folder in pairs]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_one_thread) as pool:
        return list(pool.map(train_point, configs, folders, [epochs] * len(configs)))


def best_score(history: list[dict[str, Any]], key: str, higher: bool) -> float:
    """The best validation score of a point's epochs."""
    scores = [record[key] for record in history]
    return max(scores) if higher else min(scores)


def tune_round(
    cfg: FlowConfig,
    points: list[tuple[float, int]],
    out: Path,
    *,
    epochs: int,
    workers: int,
    target: str,
) -> list[dict[str, Any]]:
    """Train every ``(lr, leak_shift)`` point's first ``epochs`` epochs (a task of ``target``
    targets); returns one record each: ``lr``, ``leak_shift``, ``folder``, ``val_history``
    (the validation score of each epoch) and ``best``."""
    folders = [out / TUNE_DIR / point_name(lr, leak) for lr, leak in points]
    configs = [point_config(cfg, lr, leak) for lr, leak in points]
    histories = run_points(configs, folders, epochs, min(workers, len(points)))
    key, higher = f"val_{metric_name(target)}", higher_is_better(target)
    return [
        {
            "lr": lr,
            "leak_shift": leak,
            "folder": str(folder),
            "val_history": [record[key] for record in history],
            "best": best_score(history, key, higher),
        }
        for (lr, leak), folder, history in zip(points, folders, histories, strict=True)
    ]


def choose(grid: list[dict[str, Any]], cfg: FlowConfig, higher: bool) -> dict[str, Any]:
    """The best point of ``grid`` (the module docstring's order)."""
    lr0, leak0 = cfg.train.lr, cfg.hardware.leak_shift

    def rank(point: dict[str, Any]) -> tuple[float, float, int, float, int]:
        score = point["best"] if higher else -point["best"]
        distance = abs(math.log2(point["lr"] / lr0))
        return (
            score,
            -distance,
            -abs(point["leak_shift"] - leak0),
            -point["lr"],
            -point["leak_shift"],
        )

    return max(grid, key=rank)


def tune_and_train(
    cfg: FlowConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Tune the rate (and a derived leak) over the grid, then train the whole run from the best
    point (the module docstring); returns the ``train.json`` record with ``tune``: ``epochs``,
    ``metric``, ``grid`` (every point's record) and ``lr``/``leak_shift`` chosen.  ``workers``
    processes train a round's points side by side (default: one per core)."""
    if launched():
        raise ConfigError("--tune trains its grid in processes of its own; run it without torchrun")
    task = load_float_task(cfg)
    cfg = float_config(cfg, task)  # the config stage_train resumes the chosen point with
    if cfg.flow.val_fraction == 0 and task.val is None:
        raise ConfigError(
            "--tune picks on the validation split; set a val_fraction above 0 (or give a task "
            "with a validation split)"
        )
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        shutil.rmtree(out / TUNE_DIR, ignore_errors=True)
        (out / CHECKPOINT).unlink(missing_ok=True)
    epochs = min(TUNE_EPOCHS, cfg.train.epochs)
    settings = {"epochs": epochs, "workers": workers or available_cores(), "target": task.target}
    higher = higher_is_better(task.target)
    leak = cfg.hardware.leak_shift
    grid = tune_round(cfg, [(cfg.train.lr * f, leak) for f in LR_FACTORS], out, **settings)
    best = choose(grid, cfg, higher)
    if "leak_shift" in cfg.derived.get("leak", {}):  # a default: its neighbours are tried
        limit = cfg.derived["leak"]["max_shift"]
        leaks = [leak + step for step in LEAK_STEPS if 1 <= leak + step <= limit]
        grid += tune_round(cfg, [(best["lr"], shift) for shift in leaks], out, **settings)
        best = choose(grid, cfg, higher)
    chosen = point_config(cfg, best["lr"], best["leak_shift"])
    if not (out / CHECKPOINT).is_file():  # a run already going on (--resume) goes on
        folder = Path(best["folder"])
        shutil.copyfile(folder / CHECKPOINT, out / CHECKPOINT)
        shutil.copyfile(folder / METRICS_LOG, out / METRICS_LOG)
    record = stage_train(chosen, out, resume=True, progress=progress, task=task)
    record["tune"] = {
        "epochs": epochs,
        "metric": f"val_{metric_name(task.target)}",
        "grid": grid,
        "lr": best["lr"],
        "leak_shift": best["leak_shift"],
    }
    if is_main():
        write_json(out / "train.json", record)
    return record
