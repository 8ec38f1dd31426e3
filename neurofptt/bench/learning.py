"""Accuracy of on-chip learning at the host's derived rate, over seeds, per task
and rule, with and without tuning: ``python -m neurofptt.bench.learning`` prints JSON.

Each point learns a task in the golden model from the fan-in random start
(:func:`~neurofptt.onchip.fan_in_spreads`; ``seed`` draws the weights and orders the samples)
with the default learning constants, at the error shift offset derived from the task
(:func:`~neurofptt.flow.onchip_rates.derive_rate`, no per-task tuning) or, with ``tune``, the
best of the grid around it (:mod:`neurofptt.flow.onchip_tune`); the rate halves
``train.onchip_halvings`` times over the run, and the epoch with the best validation accuracy is
kept, as ``neurofptt train --engine golden`` does.  ``test_accuracy`` is that epoch's.  The
summary gives, per task, rule and tuning, the mean, the standard deviation and the worst of the
seeds' test accuracies.  ``samples`` shrinks the training split of the generated tasks (their
validation and test splits keep their sizes) so that long tasks fit a budget.  ``offset`` learns
at that error shift offset instead of the derived one (0: the chip's rates as they are, what the
host sent before the rate was derived), for comparison.  ``gain`` starts from
:func:`~neurofptt.onchip.fan_in_spreads` at that gain instead of its default, for comparison.
``--start float`` learns from the float network instead, as the learning flow does: the rule
trained in float for as many epochs, quantized, then adapted on chip at the lower rates for a
trained start (:func:`from_float`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from neurofptt.bench.threads import conditions
from neurofptt.errors import ConfigError
from neurofptt.flow.config import VAL_FRACTION, FlowConfig
from neurofptt.flow.onchip import learn_from_float, onchip_core
from neurofptt.flow.onchip_rates import DerivedRate
from neurofptt.flow.onchip_train import halving_period, train_onchip
from neurofptt.flow.onchip_tune import learn_at_task_rate
from neurofptt.flow.stages import QUANTIZED
from neurofptt.learning.objectives import higher_is_better, metric_name
from neurofptt.learning.threads import set_threads
from neurofptt.learning.trainer import TrainConfig
from neurofptt.onchip import fan_in_spreads, random_network
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.tasks import load_task
from neurofptt.tasks.base import TaskData

#: the core of each task: the default hardware with the task's inputs and classes; the leaks come
#: from the task's label layout (:func:`~neurofptt.flow.config.task_leak`) as on-chip learning
#: from scratch takes them in ``flow`` and ``train``
#: (:func:`~neurofptt.flow.onchip.onchip_core`)
TASK_HARDWARE: dict[str, dict[str, int]] = {
    "digits": {},
    "digits-image": {},
    "cue-accumulation-short": {"n_in": 40, "n_out": 2},
    "cue-accumulation": {"n_in": 40, "n_out": 2},
}
RULES = ("eprop", "fptt")
#: where a point's on-chip learning starts: the fan-in random network, or the float one
STARTS = ("scratch", "float")


def task_core(task: str, rule: str, data: TaskData) -> tuple[HardwareConfig, DerivedRate]:
    """The core :data:`TASK_HARDWARE` gives ``task`` for learning ``data`` (the task's samples
    a point learns) from scratch with the default learning constants of ``rule``, and the
    host's rate derived from ``data``, as ``neurofptt train --engine golden`` builds them."""
    cfg = FlowConfig.from_dict({"hardware": TASK_HARDWARE[task], "flow": {"task": task}})
    return onchip_core(cfg, rule, scratch=True, task=data)


def bench_point(
    task: str,
    rule: str,
    seed: int,
    epochs: int,
    *,
    samples: int = 0,
    tune: bool = False,
    offset: int | None = None,
    gain: float | None = None,
    start: str = "scratch",
) -> dict[str, Any]:
    """One run (the module docstring): from scratch, or with ``start="float"`` from the float
    network (:func:`from_float`); ``samples`` > 0 sets ``n_train``."""
    check_start(start, samples=samples, offset=offset, gain=gain)
    if start == "float":
        return from_float(task, rule, seed, epochs, tune=tune)
    data = load_task(task, **({"n_train": samples} if samples else {}))
    hw, derived = task_core(task, rule, data)
    spread = fan_in_spreads(hw) if gain is None else fan_in_spreads(hw, gain)
    net = random_network(hw, seed=seed, spread=spread)
    halvings = TrainConfig().onchip_halvings
    begin = time.perf_counter()
    if offset is None:
        run = learn_at_task_rate(
            net,
            data,
            derived,
            epochs=epochs,
            seed=seed,
            halvings=halvings,
            val_fraction=VAL_FRACTION,
            tune=tune,
        )
        history, rate = run.history, run.record()
    else:
        history = train_onchip(
            net,
            data,
            epochs=epochs,
            seed=seed,
            shift_offset=offset,
            halve_every=halving_period(epochs, halvings),
            val_fraction=VAL_FRACTION,
        )
        rate = {"rate": None, "error_shift_offset": offset, "tune": None}
    return {
        **point_fields(task, rule, seed, epochs, hw, start="scratch", tuned=tune),
        "forced_offset": offset,
        "start_gain": gain,
        "train_samples": history.train_samples,
        "val_samples": history.val_samples,
        **rate,
        "picked_epoch": history.picked_epoch,
        "val_accuracy": history.epochs[history.picked_epoch - 1]["val_accuracy"],
        "test_accuracy": history.test_accuracy,
        "history": history.epochs,
        "seconds": time.perf_counter() - begin,
    }


def check_start(start: str, *, samples: int, offset: int | None, gain: float | None) -> None:
    """Refuse a start that is not one of :data:`STARTS`, and options of the random start with
    the float one, which learns the task as the flow does."""
    if start not in STARTS:
        raise ConfigError(f"the start must be one of {STARTS}, not {start!r}")
    if start == "float" and (samples or offset is not None or gain is not None):
        raise ConfigError(
            "--start float learns the task as the flow does: without --samples, --offset or --gain"
        )


def point_fields(
    task: str, rule: str, seed: int, epochs: int, hw: HardwareConfig, *, start: str, tuned: bool
) -> dict[str, Any]:
    """The fields that say what a point ran: the task, rule, seed, start and core."""
    return {
        "task": task,
        "rule": rule,
        "seed": seed,
        "start": start,
        "tuned": tuned,
        "epochs": epochs,
        "hardware": {
            **TASK_HARDWARE[task],
            "leak_shift": hw.leak_shift,
            "out_leak_shift": hw.out_leak_shift,
            "lr_shift_out": hw.learning.lr_shift_out,
        },
    }


def from_float(task: str, rule: str, seed: int, epochs: int, *, tune: bool) -> dict[str, Any]:
    """On-chip learning from the float network, as the learning flow runs it
    (:func:`~neurofptt.flow.onchip.learn_from_float`): ``rule`` trained in float for ``epochs``
    epochs (seed ``seed``), quantized, then learned on chip from there for ``epochs`` epochs at
    the rates lowered for adapting.  The record adds the float network's
    test accuracy and its quantized accuracy, the start's."""
    cfg = FlowConfig.from_dict(
        {
            "hardware": TASK_HARDWARE[task],
            "flow": {"task": task},
            "train": {"seed": seed, "epochs": epochs},
        }
    )
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        start = learn_from_float(cfg, out, rule, tune=tune, progress=False)
        trained, quantized, run = start.trained, start.quantized, start.onchip
        hw = QuantizedNetwork.load(out / "onchip_finetune" / QUANTIZED).config
    return {
        **point_fields(task, rule, seed, epochs, hw, start="float", tuned=tune),
        "forced_offset": None,
        "start_gain": None,
        "float_accuracy": trained["float_accuracy"],
        "quantized_accuracy": quantized["golden_accuracy"],
        "train_samples": run["train_samples"],
        "val_samples": run["val_samples"],
        "rate": run["rate"],
        "error_shift_offset": run["error_shift_offset"],
        "tune": run["tune"],
        "picked_epoch": run["picked_epoch"],
        "val_accuracy": run["val_accuracy"],
        "test_accuracy": run["onchip_accuracy"],
        "history": run["history"],
        "seconds": time.perf_counter() - begin,
    }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task, rule, tuning and forced offset: the seeds' test scores under the task's metric
    (``metric``: ``test_accuracy``, or ``test_mse`` for a record of a regression task, whose
    ``target`` says so; the on-chip records, all of class labels, leave it out), their mean,
    standard deviation (0 for one seed) and worst (the lowest accuracy, the highest MSE:
    :func:`~neurofptt.learning.objectives.higher_is_better`)."""
    groups: dict[tuple[str, str, str, bool, int | None], list[dict[str, Any]]] = {}
    for record in records:
        start = record.get("start", "scratch")
        key = (record["task"], record["rule"], start, record["tuned"], record["forced_offset"])
        groups.setdefault(key, []).append(record)
    summary = []
    for (task, rule, start, tuned, forced), runs in groups.items():
        target = runs[0].get("target", "label")
        metric = metric_name(target)
        scores = [run[f"test_{metric}"] for run in runs]
        summary.append(
            {
                "task": task,
                "rule": rule,
                "start": start,
                "tuned": tuned,
                "forced_offset": forced,
                "seeds": [run["seed"] for run in runs],
                "metric": metric,
                f"test_{metric}": scores,
                "mean": statistics.fmean(scores),
                "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "worst": min(scores) if higher_is_better(target) else max(scores),
                "offsets": [run["error_shift_offset"] for run in runs],
            }
        )
    return summary


def format_table(summary: list[dict[str, Any]]) -> str:
    lines = [
        f"{'task':<24} {'rule':<6} {'start':<7} {'tuned':<5} {'mean':>6} {'std':>6} {'worst':>6} "
        "offsets"
    ]
    for row in summary:
        lines.append(
            f"{row['task']:<24} {row['rule']:<6} {row['start']:<7} {row['tuned']!s:<5} "
            f"{row['mean']:>6.3f} "
            f"{row['std']:>6.3f} {row['worst']:>6.3f} {row['offsets']}"
        )
    return "\n".join(lines)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits", help="comma-separated task names")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=0, help="n_train (0: the task's)")
    parser.add_argument("--tune", action="store_true", help="tune each run's offset")
    parser.add_argument(
        "--offset", type=int, default=None, help="learn at this offset, not the derived one"
    )
    parser.add_argument(
        "--gain", type=float, default=None, help="the fan-in start's gain (default: its own)"
    )
    parser.add_argument(
        "--start",
        choices=STARTS,
        default="scratch",
        help="learn from the fan-in random start, or from the float network quantized",
    )
    args = parser.parse_args(argv)
    try:
        check_start(args.start, samples=args.samples, offset=args.offset, gain=args.gain)
    except ConfigError as exc:
        parser.error(str(exc))
    set_threads(1)
    before = conditions()
    records = []
    for task in args.tasks.split(","):
        for rule in args.rules.split(","):
            for seed in range(args.seeds):
                record = bench_point(
                    task,
                    rule,
                    seed,
                    args.epochs,
                    samples=args.samples,
                    tune=args.tune,
                    offset=args.offset,
                    gain=args.gain,
                    start=args.start,
                )
                records.append(record)
                print(
                    f"{task} {rule} seed {seed}: offset {record['error_shift_offset']}, "
                    f"test {record['test_accuracy']:.3f} ({record['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    summary = summarize(records)
    print(format_table(summary), file=sys.stderr)
    after = conditions()["load_average"]
    result = {
        "conditions": {**before, "load_average_after": after},
        "arguments": vars(args),
        "summary": summary,
        "records": records,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    _main()
