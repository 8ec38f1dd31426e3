"""Seconds per training epoch against torch's thread count: the measurement behind the default
of :func:`neurofptt.learning.threads.choose_threads`.

Each (network, rule, threads) point runs in a fresh Python process, because a process's thread
pools are sized once (OpenMP reads ``OMP_NUM_THREADS`` at start-up, the inter-op pool cannot be
resized) and one point's warm caches must not favour the next.  A point with ``threads =
"default"`` starts without ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and never sets a count, so it
measures what torch does on its own; a numbered point starts with both variables set to the count
and calls :func:`~neurofptt.learning.threads.set_threads`, as a training command does.

Inside the process the built-in ``digits`` task (the demo's: 1437 training sequences of 8 steps,
32 channels, 10 classes) is trained by a LIF network of the given width at the given batch size:
one warm-up batch, then ``epochs`` epochs in seeded order, each timed on its own.
``seconds_per_epoch`` is their median (the machine may be shared; the median ignores one epoch
that another process slowed down), ``epoch_seconds`` lists them all.  Only training is timed, not
evaluation: it is where the threads differ.  The record also gives the machine's conditions (the
cores this process may use, the load average before and after), since on shared cores a thread
that is not scheduled stalls every parallel region.

Shared cores are the case that matters most and the hardest to reproduce, so ``busy`` starts that
many processes that only spin (one core's worth of load each) for the whole run and stops them at
the end: ``busy = cores`` measures a machine whose every core another job wants.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.distributed import barrier, shard
from neurofptt.learning.registry import build_model, check_combination
from neurofptt.learning.threads import (
    PARALLEL_WORK,
    THREAD_ENV,
    available_cores,
    set_threads,
    step_work,
)
from neurofptt.learning.trainer import TrainConfig, make_rule
from neurofptt.tasks import load_task

#: (hidden, batch): the demo network and a larger one
DEFAULT_NETWORKS = ((128, 16), (512, 64))
DEFAULT_RULES = ("fptt", "bptt")
#: thread settings: counts, and "default" (torch's own choice)
DEFAULT_THREADS = ("1", "2", "default")
TASK = "digits"


def time_epochs(
    rule: str, hidden: int, batch: int, epochs: int, seed: int = 0, samples: int | None = None
) -> tuple[dict[str, Any], list[float]]:
    """Train a LIF network of ``hidden`` neurons with ``rule`` on the digits task (its first
    ``samples`` training sequences, all by default) at ``batch``: one warm-up batch, then
    ``epochs`` epochs in seeded order; returns the record's network fields and each epoch's
    seconds.

    Under ``torchrun`` each process takes its share of every batch
    (:func:`~neurofptt.learning.distributed.shard`), as ``neurofptt train`` does, and the
    processes start every epoch together (a barrier) and end it together (the barrier after its
    last update), so an epoch's time is the whole group's; one process trains every sample."""
    torch.manual_seed(seed)
    task = load_task(TASK)
    data = task.train
    n = len(data) if samples is None else min(samples, len(data))
    cfg = replace(TrainConfig(), rule=rule, model="lif", batch_size=batch, lr=1e-3)
    engine = make_rule(cfg, build_model("lif", data.n_in, hidden, task.n_out))
    generator = torch.Generator().manual_seed(seed)

    def train(indices: torch.Tensor) -> None:
        idx, engine.counted = shard(indices)
        engine.train_batch(data.x[idx], data.y[idx])

    train(torch.arange(min(batch, n)))  # warm-up: allocations, thread start-up
    times = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        barrier()
        start = time.perf_counter()
        for first in range(0, n, batch):
            train(order[first : first + batch])
        barrier()
        times.append(time.perf_counter() - start)
    record = {
        "rule": rule,
        "task": TASK,
        "n_in": data.n_in,
        "hidden": hidden,
        "n_out": task.n_out,
        "batch": batch,
        "steps": data.steps,
        "samples": n,
        "weights": sum(p.numel() for p in engine.model.parameters()),
    }
    return record, times


def measure(
    rule: str, hidden: int, batch: int, threads: int | None, epochs: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Time ``epochs`` training epochs of a LIF network on the digits task in this process, with
    ``threads`` torch threads (``None``: torch's default, left untouched)."""
    if threads is not None:
        set_threads(threads)
    record, times = time_epochs(rule, hidden, batch, epochs, seed)
    return {
        **record,
        "work": step_work(batch, hidden),
        "threads_setting": "default" if threads is None else threads,
        "threads": torch.get_num_threads(),
        "seconds_per_epoch": statistics.median(times),
        "epoch_seconds": times,
    }


#: characters of a failed benchmark process's error output that its error keeps
ERROR_TAIL = 8000


def run_json(cmd: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    """Run ``cmd`` (a fresh process) and return the JSON record on the last line of its output;
    a failure is a :class:`~neurofptt.errors.ConfigError` naming ``what`` failed, with the end
    of its error output (long enough to hold a failed rank's own report above ``torchrun``'s)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise ConfigError(f"{what} failed:\n{proc.stderr.strip()[-ERROR_TAIL:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def thread_env(threads: int | None) -> dict[str, str]:
    """This process's environment for a child with ``threads`` threads (``None``: without the
    thread variables, torch's own choice); OpenMP reads them as it starts."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    if threads is not None:
        env.update(dict.fromkeys(THREAD_ENV, str(threads)))
    return env


def run_isolated(
    rule: str, hidden: int, batch: int, threads: int | None, epochs: int
) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter, its environment set for ``threads``."""
    setting = "default" if threads is None else str(threads)
    cmd = [sys.executable, "-m", "neurofptt.bench.threads", "--one", rule, str(hidden)]
    cmd += [str(batch), setting, str(epochs)]
    what = f"thread benchmark of {rule!r} with {hidden} hidden, batch {batch}, {setting} threads"
    return run_json(cmd, thread_env(threads), what)


def parse_threads(values: list[str]) -> list[int | None]:
    """``["1", "2", "default"]`` -> ``[1, 2, None]``."""
    settings: list[int | None] = []
    for value in values:
        if value == "default":
            settings.append(None)
            continue
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"thread settings are counts >= 1 or 'default', got {value!r}")
        settings.append(n)
    return settings


def conditions() -> dict[str, Any]:
    """What the timings depend on besides the code: the machine and how busy it is."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads()
        if not any(k in os.environ for k in THREAD_ENV)
        else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "parallel_work": PARALLEL_WORK,
    }


@contextlib.contextmanager
def spinning(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` processes that keep a core busy each, for the duration of the block."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def bench_threads(
    networks: list[tuple[int, int]],
    rules: list[str],
    threads: list[int | None],
    epochs: int = 2,
    busy: int = 0,
) -> dict[str, Any]:
    """Every (network, rule, threads) point in a fresh process, with ``busy`` spinning processes
    beside them; returns the machine's conditions (before and after) and the records, each with
    ``speedup`` (seconds at the first thread setting over its own) and ``parallel`` (whether
    the default policy may give the network more than one thread: ``work >= PARALLEL_WORK``)."""
    for rule in rules:
        check_combination(rule, "lif")
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if busy < 0:
        raise ConfigError(f"busy must be >= 0, got {busy}")
    before = conditions()
    records = []
    with spinning(busy):
        for hidden, batch in networks:
            for rule in rules:
                points = [run_isolated(rule, hidden, batch, n, epochs) for n in threads]
                base = points[0]["seconds_per_epoch"]
                for point in points:
                    point["speedup"] = base / point["seconds_per_epoch"]
                    point["parallel"] = point["work"] >= PARALLEL_WORK
                records.extend(points)
    after = conditions()["load_average"]
    return {
        "conditions": {**before, "busy_processes": busy, "load_average_after": after},
        "records": records,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'rule':<6} {'hidden':>6} {'batch':>5} {'threads':>9} {'s/epoch':>9} {'speedup':>8}"]
    for r in result["records"]:
        setting = f"{r['threads_setting']}" + (
            f" ({r['threads']})" if r["threads_setting"] == "default" else ""
        )
        lines.append(
            f"{r['rule']:<6} {r['hidden']:>6} {r['batch']:>5} {setting:>9} "
            f"{r['seconds_per_epoch']:>9.3f} {r['speedup']:>8.2f}"
        )
    return "\n".join(lines)


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=5, required=True)
    args = parser.parse_args()
    rule, hidden, batch, setting, epochs = args.one
    threads = None if setting == "default" else int(setting)
    print(json.dumps(measure(rule, int(hidden), int(batch), threads, int(epochs))))


if __name__ == "__main__":
    _main()
