"""The Ray Tune backend of :func:`neurofptt.studies.sweep.run_sweep`: the same runs as trials.

The process backend trains on one machine's cores; with Ray the same sweep file runs on a cluster
(start Ray on the machines, set ``RAY_ADDRESS`` or call ``ray.init(address=...)``, then run the
sweep as usual).  Only how runs are scheduled changes: each trial calls
:func:`neurofptt.studies.jobs.run_one` with the job the process pool would get, and the parent
appends each record to ``results.jsonl`` as its trial finishes, so run ids, the results file,
resuming and skipping finished runs are identical to the process backend.  ``workers`` is the
number of concurrent trials; each reserves the cluster's CPUs divided by ``workers`` and trains
with the thread count :func:`~neurofptt.studies.jobs.job_threads` gives for that many cores (the
nodes' cores, not the ones of the machine that starts the sweep).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from neurofptt.errors import ToolMissingError
from neurofptt.studies.jobs import Job, job_threads, run_one


def run_jobs_with_ray(
    jobs: Sequence[Job],
    out_dir: Path,
    workers: int,
    finished: Callable[[dict[str, Any]], None],
    *,
    threads: int | None = None,
) -> None:
    """Train ``jobs`` (the argument tuples of ``run_one``) as Ray Tune trials, ``workers`` at a
    time, and pass each run's record to ``finished`` as soon as its trial ends.  Each job's
    thread count is replaced by ``threads`` (``None``, 0: the default for its size and the CPUs a
    trial reserves).  Ray's own files go to ``out_dir/ray``.  A Ray started here (not one already
    running) is shut down afterwards."""
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise ToolMissingError(
            f"the ray sweep backend needs Ray Tune ({exc}): pip install 'neurofptt[dist]'"
        ) from exc
    started = not ray.is_initialized()
    if started:
        local = {} if os.environ.get("RAY_ADDRESS") else {"num_cpus": os.cpu_count() or 1}
        ray.init(**local, include_dashboard=False, log_to_driver=False)
    try:
        per_trial = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
        # a trial's reserved CPUs are its own on whichever node it runs: this machine's load
        # says nothing about them
        sized = [
            (*job[:-1], job_threads(job[0], job[1], threads, cores=per_trial, load=0.0))
            for job in jobs
        ]

        def trial(config: dict[str, Any]) -> dict[str, Any]:
            return {"record": json.dumps(run_one(*sized[config["job"]]))}  # as is, unflattened

        class Finished(tune.Callback):
            """Passes each trial's record to ``finished``, in this process."""

            def __init__(self, finished: Callable[[dict[str, Any]], None]) -> None:
                self.finished = finished

            def on_trial_result(
                self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
            ) -> None:
                self.finished(json.loads(result["record"]))

            def __getstate__(self) -> dict[str, Any]:
                return {}  # Ray saves its callbacks with its state; an open file cannot be saved

        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": per_trial}),
            param_space={"job": tune.grid_search(list(range(len(jobs))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=workers),
            run_config=tune.RunConfig(
                storage_path=str((out_dir / "ray").resolve()),
                verbose=0,
                callbacks=[Finished(finished)],
            ),
        )
        errors = tuner.fit().errors
        if errors:  # a bug, not a failed run (those are recorded): stop like the process pool
            raise errors[0]
    finally:
        if started:
            ray.shutdown()
