"""One run of a sweep, in a worker process or inline: the same function serves the process pool
and the Ray Tune backend, so both record the same results."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import torch

from neurofptt.errors import NeurofpttError
from neurofptt.flow import stages as flow
from neurofptt.flow.config import FlowConfig
from neurofptt.studies.experiment import ExperimentConfig, run_experiment

#: the arguments of :func:`run_one`: kind, config, overrides, run id, run folder
Job = tuple[str, dict[str, Any], dict[str, Any], str, str]


def init_worker(threads: int) -> None:
    """Share the cores among the workers instead of every worker's torch using all of them."""
    torch.set_num_threads(threads)


def init_pool_worker(threads: int) -> None:
    """:func:`init_worker` for a process-pool worker, which also ignores SIGINT: Ctrl-C in a
    terminal reaches the whole process group, and the parent alone decides what happens (it
    records what finished and terminates the pool), so a worker must not die with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    init_worker(threads)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """A terminated worker exits through Python's shutdown, so the locks it created (the
    progress bars' among them) are released instead of reported as leaked."""
    raise SystemExit(0)


def train_run(kind: str, config: dict[str, Any], run_dir: Path) -> tuple[str, float, dict]:
    """``(metric name, final metric, result)`` of one run; resumes from its checkpoint."""
    if kind == "experiment":
        result = run_experiment(ExperimentConfig.from_dict(config), run_dir, resume=True)
        return result["metric_name"], result["metric"], result
    result = flow.stage_train(FlowConfig.from_dict(config), run_dir, resume=True, progress=False)
    return "test_accuracy", result["float_accuracy"], result


def run_one(
    kind: str, config: dict[str, Any], overrides: dict[str, Any], rid: str, run_dir: str
) -> dict[str, Any]:
    """Train one run (in a worker process or inline) and return its results record."""
    start = time.perf_counter()
    record: dict[str, Any] = {"id": rid, "overrides": overrides}
    try:
        # resume: a run killed between epochs continues from its last checkpoint
        name, value, result = train_run(kind, config, Path(run_dir))
    except NeurofpttError as exc:
        return {
            **record,
            "metric": None,
            "metric_name": None,
            "final_train_loss": None,
            "seconds": time.perf_counter() - start,
            "status": "error",
            "error": str(exc),
        }
    return {
        **record,
        "metric": value,
        "metric_name": name,
        "history": result["history"],
        "final_train_loss": result["history"][-1]["train_loss"],
        "seconds": result["seconds"],
        "status": "ok",
    }


def run_job(job: Job) -> dict[str, Any]:
    """:func:`run_one` of a job tuple (the form a process pool's ``imap`` passes)."""
    return run_one(*job)
