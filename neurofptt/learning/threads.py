"""How many threads torch uses in a process that trains: chosen on purpose, once per process.

**Why not torch's default.**  torch starts one OpenMP thread per core and splits every large
enough operation across them.  The networks here are small recurrent ones trained step by step:
each time step is a handful of matrix products of ``batch × hidden`` by ``hidden × hidden``, a few
hundred thousand multiply-adds, followed by dozens of tiny element-wise operations and (for the
online rules) an optimizer step.  Splitting work that small across threads costs more in waking
and joining them than it saves, and when the cores are shared (another training run, a test
suite, a sweep's other workers) every parallel region waits for a thread the scheduler has not
run yet (docs/performance.md, "Threads", has the measurements).  Only per-step products large
enough to keep every thread busy for much longer than a hand-off gain from more threads.

**The default policy** (:func:`choose_threads`): one thread unless the per-step work
``batch × hidden²`` (:func:`step_work`) is at least :data:`PARALLEL_WORK`; from there, the cores
this process may run on (``os.sched_getaffinity``, which honours ``taskset`` and container CPU
sets where ``os.cpu_count`` does not) that other processes are not already using (the one-minute
load average), divided by the processes that train side by side (a sweep's workers), and never
fewer than one.  Both parts come from ``neurofptt bench threads`` (docs/performance.md,
"Threads"): on idle cores more threads gain little, and only for large per-step products; on
busy cores they lose much more than that.  So threads go only to networks where they paid, and
only onto cores that are idle when the run starts.  The load average lags and covers the whole
machine, so it errs towards one thread; a run that starts on idle cores and then has to share
them can still lose, which ``--threads 1`` rules out.

**An explicit count** (``--threads N``, ``requested``) is used as given, also above the cores:
the user may know better (an idle machine, an experiment on threading itself).

:func:`set_threads` applies a count to torch and to the BLAS libraries numpy has loaded (the
golden model's integer products through float BLAS, :mod:`neurofptt.quant.exact`), and writes it
to the OpenMP, MKL and OpenBLAS variables, so processes started from this one (a sweep's workers,
a benchmark's measurements) begin with it instead of one thread per core.  numpy's OpenBLAS
sizes its pool from ``OPENBLAS_NUM_THREADS`` when it is loaded, before any command has chosen a
count, so the variable alone comes too late for this process: ``threadpoolctl`` resizes the pool
that is already there; left at one thread per core, its threads wait for each other on shared
cores as torch's do, and the golden model slows down with the same results.
"""

from __future__ import annotations

import contextlib
import os

import torch
from threadpoolctl import threadpool_limits

from neurofptt.errors import ConfigError

#: per-step multiply-adds (``batch × hidden²``) from which more threads may pay: between the
#: largest measured size where they lost and the smallest where every measurement gained
#: (docs/performance.md, "Threads")
PARALLEL_WORK = 8_000_000
#: the variables OpenMP, MKL and OpenBLAS read at start-up; set for the processes this one starts
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the platform reports it (a
    ``taskset`` or a container's CPU set), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def step_work(batch: int, hidden: int) -> int:
    """Multiply-adds of one time step's recurrent product, ``batch × hidden²``: the largest
    operation of a step for these networks (the input product is ``batch × hidden × n_in``,
    no larger while ``n_in <= hidden``), hence the one whose size decides whether threads pay."""
    return max(0, batch) * max(0, hidden) ** 2


def machine_load() -> float:
    """Processes running or waiting for a core, averaged over the last minute (0 where the
    platform does not report it): how many of the cores other work is using."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def check_threads(requested: int | None, what: str = "threads") -> None:
    """A thread request is ``None`` or 0 (the derived default) or a positive count."""
    if requested is None:
        return
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ConfigError(f"{what} must be an integer >= 0 (0: the default), got {requested!r}")


def choose_threads(
    requested: int | None,
    *,
    workers: int = 1,
    work: int | None = None,
    cores: int | None = None,
    load: float | None = None,
) -> int:
    """The torch thread count of one training process.

    ``requested`` (``--threads``) is used as given when positive; ``None`` or 0 asks for the
    default: 1 unless ``work`` (:func:`step_work`; ``None``: unknown, taken as small) reaches
    :data:`PARALLEL_WORK`, then the idle cores divided by ``workers`` (the processes training
    side by side), at least 1.  The idle cores are ``cores`` (default :func:`available_cores`;
    the Ray backend passes a trial's reserved CPUs) less ``load`` (default
    :func:`machine_load`, rounded), so that a run never starts more threads than there are
    cores nobody else is using.
    """
    check_threads(requested)
    if requested:
        return requested
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if work is None or work < PARALLEL_WORK:
        return 1
    total = available_cores() if cores is None else cores
    busy = round(machine_load() if load is None else load)
    return max(1, min(total, total - busy) // workers)


def set_threads(n: int) -> int:
    """Make this process's torch and BLAS libraries use ``n`` threads, and the processes it
    starts begin with ``n`` (:data:`THREAD_ENV`); returns ``n``.

    The inter-op pool (used by ``torch.jit.fork``, not by training here) can only be sized once,
    before any parallel work; later calls leave it as it is.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"the thread count must be an integer >= 1, got {n!r}")
    torch.set_num_threads(n)
    # already set, or parallel work has started: the pool stays as it is
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(n)
    threadpool_limits(limits=n, user_api="blas")  # numpy's BLAS, loaded before the count was chosen
    for name in THREAD_ENV:
        os.environ[name] = str(n)
    return n
