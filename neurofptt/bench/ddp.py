"""Training samples per second of one process against ``N`` data-parallel processes.

Data parallelism (``torchrun --nproc-per-node=N -m neurofptt train``,
:mod:`neurofptt.learning.distributed`) splits every batch between the processes and combines each
update's gradient over them in one all-reduce: per batch for BPTT, per time step for FPTT and for
e-prop's online form.  What it gains is the share of a step that grows with the batch (the
forward products, the gradients' products); what it pays is the all-reduce and everything each
process repeats whole (the optimizer step, FPTT's regulariser and running mean over the weights).
So it can only pay where a shard's compute dominates those: a wide network and a large batch.

Each point runs in fresh processes: one process by itself, then ``N`` started by
``torchrun --standalone``, each with one torch thread (so that ``N`` processes want ``N`` cores
and nothing else competes for them).  Every process trains the LIF network on the built-in
``digits`` task (:func:`neurofptt.bench.threads.time_epochs`: the same sharding as ``neurofptt
train``, one warm-up batch, then ``epochs`` timed epochs whose ends are synchronised), and rank 0
reports.  ``samples_per_second`` is the epoch's samples over the median epoch time (training
only: evaluation and checkpoints are left out, they are not what the processes share), and
``speedup`` the ``N`` processes' samples per second over the one process's.  A group also
times one all-reduce of as many values as the network has weights (``allreduce_seconds``): a
per-step rule pays it at every time step, so it tells when a shard's work can outweigh it.  The
result records the cores this process may use and the load average before and after: ``N``
processes gain only where ``N`` cores are free for them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from neurofptt.bench.threads import conditions, run_json, thread_env, time_epochs
from neurofptt.errors import ConfigError
from neurofptt.learning.distributed import PARALLEL_RULES, is_main, start, stop, world_size
from neurofptt.learning.registry import check_combination
from neurofptt.learning.threads import set_threads

DEFAULT_RULES = PARALLEL_RULES
#: a network and batch where a shard's products outweigh what each process repeats whole
DEFAULT_HIDDEN = 512
DEFAULT_BATCH = 512
#: torch threads of every process (see the module docstring)
THREADS = 1


#: all-reduces timed by :func:`allreduce_seconds` (after as many untimed ones)
PROBES = 20


def allreduce_seconds(numel: int) -> float:
    """The median time of one all-reduce of ``numel`` float32 values in this group: what a
    per-step rule pays at every time step to combine a gradient of all the weights (with the
    two counts :func:`~neurofptt.learning.distributed.combine` sends beside it).  Every rank
    calls it together; the median leaves out the odd wait for a descheduled process."""
    buffer = torch.zeros(numel + 2)
    times = []
    for probe in range(2 * PROBES):
        begin = time.perf_counter()
        dist.all_reduce(buffer)
        if probe >= PROBES:
            times.append(time.perf_counter() - begin)
    return statistics.median(times)


def measure(
    rule: str, hidden: int, batch: int, epochs: int, samples: int | None, seed: int = 0
) -> dict[str, Any]:
    """Time ``epochs`` epochs in this process, one of a ``torchrun`` group or by itself; in a
    group also one all-reduce of the weights' size (:func:`allreduce_seconds`)."""
    set_threads(THREADS)
    start(torch.device("cpu"))  # joins the group torchrun describes; alone: nothing
    try:
        record, times = time_epochs(rule, hidden, batch, epochs, seed, samples)
        processes = world_size()
        if processes > 1:
            record["allreduce_seconds"] = allreduce_seconds(record["weights"])
    finally:
        stop()
    seconds = statistics.median(times)
    return {
        **record,
        "processes": processes,
        "threads": torch.get_num_threads(),
        "seconds_per_epoch": seconds,
        "epoch_seconds": times,
        "samples_per_second": record["samples"] / seconds,
    }


def launcher(processes: int) -> list[str]:
    """The command that starts ``processes`` training processes: this interpreter, or
    ``torchrun --standalone`` beside it (the one of its environment) for several."""
    if processes == 1:
        return [sys.executable]
    torchrun = Path(sys.executable).with_name("torchrun")
    found = str(torchrun) if torchrun.exists() else shutil.which("torchrun")
    if found is None:
        raise ConfigError("bench ddp needs torchrun (pip install 'neurofptt[dist]')")
    return [found, "--standalone", f"--nproc-per-node={processes}"]


def run_isolated(
    rule: str, processes: int, hidden: int, batch: int, epochs: int, samples: int | None
) -> dict[str, Any]:
    """:func:`measure` in ``processes`` fresh processes; returns rank 0's record."""
    cmd = [*launcher(processes), "-m", "neurofptt.bench.ddp", "--one", rule, str(hidden)]
    cmd += [str(batch), str(epochs), str(samples or 0)]
    what = f"data-parallel benchmark of {rule!r} with {processes} process(es)"
    return run_json(cmd, thread_env(THREADS), what)


def bench_ddp(
    rules: list[str],
    processes: int = 2,
    hidden: int = DEFAULT_HIDDEN,
    batch: int = DEFAULT_BATCH,
    epochs: int = 3,
    samples: int | None = None,
) -> dict[str, Any]:
    """Each rule by one process, then by ``processes`` (see the module docstring); returns the
    machine's conditions (before and after) and the records, the data-parallel ones with
    ``speedup`` over the one process of the same rule."""
    for rule in rules:
        check_combination(rule, "lif")
        if rule not in PARALLEL_RULES:
            raise ConfigError(
                f"bench ddp measures the data-parallel rules {PARALLEL_RULES}, not {rule!r}"
            )
    if processes < 2:
        raise ConfigError(f"--processes must be >= 2, got {processes}")
    if epochs < 1 or hidden < 1 or batch < processes or (samples is not None and samples < 1):
        raise ConfigError(
            "bench ddp needs epochs >= 1, hidden >= 1, a batch of at least one sample per "
            f"process and samples >= 1 (got {epochs}, {hidden}, {batch}, {samples})"
        )
    before = conditions()
    records = []
    for rule in rules:
        one = run_isolated(rule, 1, hidden, batch, epochs, samples)
        many = run_isolated(rule, processes, hidden, batch, epochs, samples)
        many["speedup"] = many["samples_per_second"] / one["samples_per_second"]
        records += [one, many]
    after = conditions()["load_average"]
    return {"conditions": {**before, "load_average_after": after}, "records": records}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{'rule':<6} {'processes':>9} {'s/epoch':>9} {'samples/s':>10} {'speedup':>8} "
        f"{'allreduce ms':>12}"
    ]
    for r in result["records"]:
        speedup = f"{r['speedup']:>8.2f}" if "speedup" in r else f"{'':>8}"
        probe = f"{1e3 * r['allreduce_seconds']:>12.2f}" if "allreduce_seconds" in r else ""
        lines.append(
            f"{r['rule']:<6} {r['processes']:>9} {r['seconds_per_epoch']:>9.3f} "
            f"{r['samples_per_second']:>10.1f} {speedup} {probe}".rstrip()
        )
    return "\n".join(lines)


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=5, required=True)
    args = parser.parse_args()
    rule, hidden, batch, epochs, samples = args.one
    record = measure(rule, int(hidden), int(batch), int(epochs), int(samples) or None)
    if is_main():
        print(json.dumps(record))


if __name__ == "__main__":
    _main()
