"""Memory and time of the learning rules against the sequence length.

Each (rule, T) point runs in a fresh Python process, so one run's memory high-water mark cannot
leak into the next.  Inside that process the data, the model and the rule are built and one
warm-up batch is trained on a short sequence; then the process's peak resident memory is read
(``ru_maxrss``), batches of length ``T`` are trained, and the growth of the peak is reported as
``peak_bytes``: the extra memory the training of a batch needed on top of everything that was
already resident.  ``seconds_per_seq`` is the wall time of the fastest of :data:`REPEATS` such
batches divided by the batch size, and ``cpu_seconds_per_seq`` the processor time this process
spent on its fastest batch (by processor time) likewise.  On a machine shared with other jobs
these can only slow a batch down, the wall time also by the time the scheduler gives the other
jobs; the processor time of a one-thread process counts its own work only, so it is the measure
to compare rules by there.  The rules take turns at each length (every rule at the
first ``T``, then every rule at the next), so that the ratios between rules at one length come
from runs made close together in time, under the same load of a shared machine.  Each record
gives the machine's one-, five- and fifteen-minute load averages as its point started and ended
(``load_average``).

Every point trains with one torch thread (recorded as ``threads``), whatever the machine: the
comparison is between rules, and one thread keeps it free of how each rule's operations happen to
split across cores (``neurofptt bench threads`` measures that on its own).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import torch

from neurofptt.bench.spikingjelly_fptt import train_one_batch
from neurofptt.errors import ConfigError
from neurofptt.learning.registry import build_model, check_combination
from neurofptt.learning.threads import THREAD_ENV, set_threads
from neurofptt.learning.trainer import TrainConfig, make_rule

DEFAULT_RULES = ("bptt", "tbptt", "fptt", "eprop")
#: torch threads of every measurement (see the module docstring)
THREADS = 1
#: timed batches per point; the fastest counts (see the module docstring)
REPEATS = 3
EXTERNAL_RULES = ("spikingjelly-fptt",)


def _peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(
    rule: str, model_name: str, steps: int, batch: int, hidden: int, n_in: int, seed: int = 0
) -> dict[str, Any]:
    """Train :data:`REPEATS` batches of ``steps``-long random spike sequences after a short
    warm-up one; runs in the calling process."""

    torch.manual_seed(seed)
    set_threads(THREADS)
    load = list(os.getloadavg())
    y = torch.randint(0, 10, (batch,))
    warm = (torch.rand(batch, 4, n_in) < 0.2).float()
    x = (torch.rand(batch, steps, n_in) < 0.2).float()
    if rule == "spikingjelly-fptt":
        train_one_batch(warm.transpose(0, 1), y, hidden, 10)
        x_seq = x.transpose(0, 1).contiguous()  # time first, copied before the measurement
        before = _peak_rss_bytes()
        seconds, cpu_seconds = [], []
        for _ in range(REPEATS):
            cpu_start = time.process_time()
            seconds.append(train_one_batch(x_seq, y, hidden, 10))
            cpu_seconds.append(time.process_time() - cpu_start)
    else:
        cfg = replace(TrainConfig(), rule=rule, model=model_name, lr=1e-3)
        engine = make_rule(cfg, build_model(model_name, n_in, hidden, 10))
        engine.train_batch(warm, y)
        before = _peak_rss_bytes()
        seconds, cpu_seconds = [], []
        for _ in range(REPEATS):
            start, cpu_start = time.perf_counter(), time.process_time()
            engine.train_batch(x, y)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
    return {
        "rule": rule,
        "model": model_name,
        "T": steps,
        "batch": batch,
        "hidden": hidden,
        "peak_bytes": max(0, _peak_rss_bytes() - before),
        "seconds_per_seq": min(seconds) / batch,
        "cpu_seconds_per_seq": min(cpu_seconds) / batch,
        "repeats": REPEATS,
        "threads": torch.get_num_threads(),
        "load_average": [load, list(os.getloadavg())],
    }


def run_isolated(
    rule: str, model_name: str, steps: int, batch: int, hidden: int, n_in: int
) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter; returns its JSON record."""
    cmd = [
        sys.executable,
        "-m",
        "neurofptt.bench.rules",
        "--one",
        rule,
        model_name,
        str(steps),
        str(batch),
        str(hidden),
        str(n_in),
    ]
    env = {**os.environ, **dict.fromkeys(THREAD_ENV, str(THREADS))}  # OpenMP starts with it
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise ConfigError(
            f"benchmark of rule {rule!r} at T={steps} failed:\n{proc.stderr.strip()[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(records: list[dict[str, Any]]) -> str:
    lines = [
        f"{'rule':<18} {'model':<6} {'T':>6} {'peak MiB':>10} {'ms/seq':>10} {'cpu ms/seq':>11}"
    ]
    for r in records:
        lines.append(
            f"{r['rule']:<18} {r['model']:<6} {r['T']:>6} {r['peak_bytes'] / 2**20:>10.1f} "
            f"{r['seconds_per_seq'] * 1e3:>10.2f} {r['cpu_seconds_per_seq'] * 1e3:>11.2f}"
        )
    return "\n".join(lines)


def plot_records(records: list[dict[str, Any]], path: str) -> None:
    """Peak memory and processor time per sequence against T, one line per rule (log-log); the
    processor time, as it is the measure to compare rules by on a shared machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    for rule in dict.fromkeys(r["rule"] for r in records):
        rows = [r for r in records if r["rule"] == rule]
        lengths = [r["T"] for r in rows]
        ax_mem.plot(lengths, [max(r["peak_bytes"], 1) / 2**20 for r in rows], "o-", label=rule)
        ax_time.plot(lengths, [r["cpu_seconds_per_seq"] * 1e3 for r in rows], "o-", label=rule)
    ax_mem.set(xscale="log", yscale="log", xlabel="T", ylabel="peak memory of one batch (MiB)")
    ax_time.set(xscale="log", yscale="log", xlabel="T", ylabel="processor ms per sequence")
    ax_mem.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_rules(
    rules: list[str],
    model_name: str,
    lengths: list[int],
    batch: int = 16,
    hidden: int = 128,
    n_in: int = 32,
) -> list[dict[str, Any]]:
    for rule in rules:
        if rule not in EXTERNAL_RULES:
            check_combination(rule, model_name)
    # the rules take turns at each length (module docstring); the records go rule by rule
    records = [
        run_isolated(rule, model_name, steps, batch, hidden, n_in)
        for steps in lengths
        for rule in rules
    ]
    return sorted(records, key=lambda r: rules.index(r["rule"]))


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=6, required=True)
    args = parser.parse_args()
    rule, model_name, steps, batch, hidden, n_in = args.one
    print(json.dumps(measure(rule, model_name, int(steps), int(batch), int(hidden), int(n_in))))


if __name__ == "__main__":
    _main()
