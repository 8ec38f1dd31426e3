"""One run of a sweep, in a worker process or inline: the same function serves the process pool
and the Ray Tune backend, so both record the same results.

Every run sets its own torch thread count before it trains (:func:`run_one`): the scheduler
chooses it per run (:func:`job_threads`) from the run's size and the cores each of the runs side
by side may use, so a grid over widths gives a large network threads and a small one a single
thread, and a worker process never keeps the count of the run it trained before.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from neurofptt.errors import NeurofpttError
from neurofptt.flow import stages as flow
from neurofptt.flow.config import FlowConfig
from neurofptt.learning.threads import choose_threads, set_threads, step_work
from neurofptt.studies.experiment import ExperimentConfig, run_experiment

#: the arguments of :func:`run_one`: kind, config, overrides, run id, run folder, torch threads
Job = tuple[str, dict[str, Any], dict[str, Any], str, str, int]


def job_work(kind: str, config: dict[str, Any]) -> int:
    """Per-step work (:func:`~neurofptt.learning.threads.step_work`) of a run's config dict: the
    batch size and the width of its hidden layers (``hardware.n_rec`` of a flow config,
    ``experiment.hidden`` of an experiment)."""
    width = config["experiment"]["hidden"] if kind == "experiment" else config["hardware"]["n_rec"]
    return step_work(config["train"]["batch_size"], width)


def job_threads(
    kind: str,
    config: dict[str, Any],
    requested: int | None,
    *,
    workers: int = 1,
    cores: int | None = None,
    load: float | None = None,
) -> int:
    """The torch threads of one run among ``workers`` side by side: ``requested`` if given,
    else :func:`~neurofptt.learning.threads.choose_threads`'s default for the run's size, at
    most the idle ones of ``cores`` (default: this process's; ``load`` default: this machine's)
    divided by ``workers``."""
    work = job_work(kind, config)
    return choose_threads(requested, workers=workers, work=work, cores=cores, load=load)


def init_pool_worker() -> None:
    """A process-pool worker ignores SIGINT: Ctrl-C in a terminal reaches the whole process
    group, and the parent alone decides what happens (it records what finished and terminates
    the pool), so a worker must not die with a traceback.

    SIGTERM, the pool's terminate, keeps its default action: the worker ends at once, whichever
    of its threads the kernel hands the signal to.  A Python handler would run only in the main
    thread and only once that thread leaves the call it blocks in; a worker waiting for the task
    queue's lock, which the terminating pool takes and keeps, never leaves it, and the parent
    would wait for it forever.  So that ending this way leaves nothing behind, the progress
    bars' lock is a thread lock: tqdm's default adds a multiprocessing lock, a semaphore the
    resource tracker would report as leaked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def train_run(kind: str, config: dict[str, Any], run_dir: Path) -> tuple[str, float, dict]:
    """``(metric name, final metric, result)`` of one run; resumes from its checkpoint."""
    if kind == "experiment":
        result = run_experiment(ExperimentConfig.from_dict(config), run_dir, resume=True)
        return result["metric_name"], result["metric"], result
    result = flow.stage_train(FlowConfig.from_dict(config), run_dir, resume=True, progress=False)
    name = f"test_{result['metric']}"  # test_accuracy, or test_mse for a regression task
    return name, result[name], result


def run_one(
    kind: str,
    config: dict[str, Any],
    overrides: dict[str, Any],
    rid: str,
    run_dir: str,
    threads: int,
) -> dict[str, Any]:
    """Train one run with ``threads`` torch threads (in a worker process or inline) and return
    its results record, which names the thread count (``threads``)."""
    start = time.perf_counter()
    set_threads(threads)
    record: dict[str, Any] = {"id": rid, "overrides": overrides, "threads": threads}
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
