"""Reproductions of the seed papers' experiments: settings, budgets, paper numbers, results.

Each reproduction is a sweep (:mod:`neurofptt.studies.sweep`) of experiments
(:mod:`neurofptt.studies.experiment`):
a base config with the paper's settings, the compared methods as variants, a grid (models, orders
``alpha``) and seeds.  So it runs in a process pool, writes one JSON line per finished run and,
started again on the same folder, skips the runs already done.

Three budgets:

``full``
    the paper's settings where the paper gives them (and our documented choice where it does not);
    it runs, but takes far longer than the others (``docs/results.md`` gives the wall times).
``default``
    a documented reduced budget (fewer samples, epochs or hidden units); ``docs/results.md``
    reports these numbers and their wall times.
``quick``
    a smoke run of a minute or less (used by the tests); its numbers mean nothing.

:func:`summarise` turns the run records into ``results.json``: one object per method, model and
``alpha`` with the metric's mean, standard deviation, worst seed and seed count, the budget and the
paper's number where the paper prints one.  Each run's metric is validation-selected: the test
score of the epoch with the best score on a held-out share of the training samples
(``experiment.val_fraction``, 0.1 by default) or on the task's own validation split, scored once
(:func:`~neurofptt.studies.experiment.run_experiment`), never the best test score over epochs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofptt.errors import ConfigError
from neurofptt.io import atomic_write_bytes
from neurofptt.studies.sweep import (
    Sweep,
    apply_overrides,
    format_table,
    make_sweep,
    mean_std,
    run_sweep,
    selected_epoch,
)

BUDGETS = ("quick", "default", "full")
RESULTS = "results.json"

# Settings every reproduction shares: the papers use plain Adam-type optimizers without weight
# decay or schedules and score the trained weights themselves (no moving average), and these
# networks are not for the hardware (no quantization-aware epochs).
_COMMON_TRAIN = {
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "qat_epochs": 0,
    "average_epochs": 0.0,
}


@dataclass(frozen=True)
class Method:
    """One compared method: its label in tables and plots and its training overrides."""

    label: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Budget:
    """Overrides of the base (dotted keys), the number of seeds, and grid values to keep."""

    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: int = 3
    grid: dict[str, list[Any]] = field(default_factory=dict)
    methods: tuple[str, ...] = ()  # labels to run; empty: all


@dataclass(frozen=True)
class Reproduction:
    name: str
    source: str  # which seed and which table or figure
    base: dict[str, Any]  # the full budget's experiment config
    methods: tuple[Method, ...]
    grid: dict[str, list[Any]]
    budgets: dict[str, Budget]
    # the paper's numbers: (method label, grid values in grid-key order) -> value
    paper: dict[tuple[str, tuple[Any, ...]], float]
    plot: str  # "alpha": metric against the grid's alpha per model; "epochs": learning curves

    def sweep(self, budget: str) -> Sweep:
        """The sweep of one budget (see the module docstring)."""
        if budget not in BUDGETS:
            raise ConfigError(f"unknown budget {budget!r}; choose one of {BUDGETS}")
        spec = self.budgets.get(budget, Budget())
        base = apply_overrides(self.base, spec.overrides)
        grid = {**self.grid, **spec.grid, "train.seed": list(range(spec.seeds))}
        methods = [m for m in self.methods if not spec.methods or m.label in spec.methods]
        return make_sweep(
            base,
            grid,
            variants=[m.overrides for m in methods],
            name=f"{self.name} ({budget})",
        )

    def label_of(self, overrides: dict[str, Any]) -> str:
        for method in self.methods:
            if all(overrides.get(k) == v for k, v in method.overrides.items()):
                return method.label
        raise ConfigError(f"run {overrides} matches no method of {self.name}")


def _experiment(task: str, hidden: int, task_options: dict, train: dict) -> dict[str, Any]:
    return {
        "experiment": {"task": task, "hidden": hidden},
        "task": task_options,
        "train": {**_COMMON_TRAIN, **train},
    }


ALPHAS = [0.5, 0.75, 1.0, 1.25, 1.5]
#: the grid key of the fractional order, and its column in ``results.json``
ALPHA_KEY = "train.fobptt.alpha"
ALPHA = ALPHA_KEY.partition(".")[2]
# seed 000, Table 4 (TSFD MSE against alpha; alpha = 1 is its "standard BPTT")
_TSFD_TABLE4 = {
    "rnn": [0.038, 0.035, 0.045, 0.034, 0.036],
    "lstm": [0.033, 0.031, 0.038, 0.030, 0.032],
    "gru": [0.034, 0.032, 0.039, 0.030, 0.033],
}

TSFD_FOBPTT = Reproduction(
    name="tsfd-fobptt",
    source="seed 000 (FO-BPTT), Tables 2 and 4: TSFD next-value MSE against the order alpha",
    base=_experiment(
        "tsfd",
        32,  # the seed gives no hidden size
        {"n_sequences": 10_000, "length": 100},
        {"rule": "fobptt", "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 50},
    ),
    methods=(Method("FO-BPTT", {"train.rule": "fobptt"}),),
    grid={"train.model": ["rnn", "lstm", "gru"], ALPHA_KEY: ALPHAS},
    budgets={
        "default": Budget({"task.n_sequences": 2000, "train.epochs": 10}),
        "quick": Budget(
            {"task.n_sequences": 96, "task.length": 20, "train.epochs": 2},
            seeds=1,
            grid={"train.model": ["rnn", "gru"], ALPHA_KEY: [0.5, 1.0, 1.5]},
        ),
    },
    paper={
        ("FO-BPTT", (model, alpha)): value
        for model, values in _TSFD_TABLE4.items()
        for alpha, value in zip(ALPHAS, values, strict=True)
    },
    plot="alpha",
)

_CYCLEWORLD_METHODS = (
    *(Method(f"{n}-BPTT", {"train.rule": "tbptt", "train.tbptt.n": n}) for n in (1, 2, 3, 6)),
    *(Method(f"FPP n={n}", {"train.rule": "fpp", "train.fpp.updates": n}) for n in (1, 6)),
)

CYCLEWORLD_FPP = Reproduction(
    name="cycleworld-fpp",
    source="seed 002 (FPP), Figure 1: 6-Cycleworld, FPP against T-BPTT at the same truncation",
    base=_experiment(
        "cycleworld",
        4,
        # 1,000 windows of 60 steps, 5 epochs: the paper's 300,000 steps of experience
        {"p": 6, "n_train": 1000, "n_test": 200, "steps": 60},
        {
            "model": "rnn",
            "optimizer": "adagrad",
            "lr": 0.1,
            "batch_size": 1,
            "epochs": 5,
            "tbptt": {"loss_steps": "all"},
            "fpp": {"loss_steps": "all", "buffer_size": 1000},
        },
    ),
    methods=_CYCLEWORLD_METHODS,
    grid={},
    budgets={
        # 16 windows side by side: the same 300,000 steps of experience in fewer sequential steps
        "default": Budget({"task.n_train": 500, "train.batch_size": 16, "train.epochs": 10}),
        "quick": Budget(
            {"task.n_train": 64, "task.n_test": 12, "train.batch_size": 16, "train.epochs": 2},
            seeds=1,
            methods=("1-BPTT", "6-BPTT", "FPP n=1"),
        ),
    },
    paper={},  # the seed shows curves only
    plot="epochs",
)

_SMNIST_FPP_METHODS = (
    Method("BPTT", {"train.rule": "bptt"}),
    *(Method(f"{n}-BPTT", {"train.rule": "tbptt", "train.tbptt.n": n}) for n in (10, 15)),
    *(Method(f"FPP n={n}", {"train.rule": "fpp", "train.fpp.updates": n}) for n in (10, 15)),
)

SMNIST_FPP = Reproduction(
    name="smnist-fpp",
    source="seed 002 (FPP), Figure 2: sequential MNIST, FPP against T-BPTT at n = T = 10, 15",
    base=_experiment(
        "smnist",
        128,
        # the seed feeds 20 pixels per step, which does not divide 784; 16 is the nearest divisor
        {"pixels_per_step": 16},
        {
            "model": "lstm",
            "optimizer": "adam",
            "lr": 1e-3,
            "batch_size": 64,
            "epochs": 5,  # ~5,000 updates at batch 64 (the seed: "5000 total steps")
            "tbptt": {"loss_steps": "last"},
            "fpp": {"loss_steps": "last", "buffer_size": 1000},
        },
    ),
    methods=_SMNIST_FPP_METHODS,
    grid={},
    budgets={
        "default": Budget({"task.train_limit": 2000, "task.test_limit": 1000, "train.epochs": 3}),
        "quick": Budget(
            {
                "task.train_limit": 64,
                "task.test_limit": 32,
                "task.pixels_per_step": 28,
                "experiment.hidden": 16,
                "train.epochs": 1,
                "train.batch_size": 32,
            },
            seeds=1,
            methods=("10-BPTT", "FPP n=10"),
        ),
    },
    # read from the seed's figure (approximate): FPP n = 10 about 80 %, 10-BPTT about 60 %
    paper={("FPP n=10", ()): 0.80, ("10-BPTT", ()): 0.60},
    plot="epochs",
)


def _mnist_fptt(name: str, permute: bool, bptt: float, fptt: float) -> Reproduction:
    task = "psmnist" if permute else "smnist"
    return Reproduction(
        name=name,
        source=f"seed 003 (FPTT slides), results table: {task.upper()} accuracy, BPTT vs FPTT",
        base=_experiment(
            task,
            128,
            {},
            {
                "model": "lstm",
                "optimizer": "adam",
                "lr": 1e-3,
                "batch_size": 64,
                "epochs": 50,
                # the paper's rate per update, whatever the updates per sequence
                "fptt": {"alpha": 0.5, "reference_updates": 0},
            },
        ),
        methods=(
            Method("BPTT", {"train.rule": "bptt"}),
            # FPTT-K with K = 14 chunks of 56 pixels, the slides' own example (14 x 56 = 784)
            Method("FPTT-14", {"train.rule": "fptt", "train.fptt.period": 56}),
        ),
        grid={},
        budgets={
            "default": Budget(
                {
                    "experiment.hidden": 64,
                    "task.train_limit": 3000,
                    "task.test_limit": 1000,
                    "train.epochs": 5,
                }
            ),
            "quick": Budget(
                {
                    "experiment.hidden": 16,
                    "task.train_limit": 64,
                    "task.test_limit": 32,
                    "train.epochs": 1,
                    "train.batch_size": 32,
                },
                seeds=1,
            ),
        },
        paper={("BPTT", ()): bptt, ("FPTT-14", ()): fptt},
        plot="epochs",
    )


REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r
    for r in (
        TSFD_FOBPTT,
        CYCLEWORLD_FPP,
        SMNIST_FPP,
        _mnist_fptt("smnist-fptt", False, 0.9771, 0.9867),
        _mnist_fptt("psmnist-fptt", True, 0.8891, 0.9475),
    )
}


def get_reproduction(name: str) -> Reproduction:
    if name not in REPRODUCTIONS:
        raise ConfigError(f"unknown reproduction {name!r}; available: {sorted(REPRODUCTIONS)}")
    return REPRODUCTIONS[name]


# -- results -----------------------------------------------------------------------------------
#: the sizes of a run that ``results.json``'s budget states, from the run's ``experiment.json``
_SIZES = ("train_samples", "val_samples", "val_split", "test_samples", "steps")


def _budget_of(sweep: Sweep, out_dir: Path, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the runs cost and how their epoch was selected: epochs, batch, width, task options,
    the validation share, and the sizes actually used (training, validation and test samples,
    where the validation samples came from, steps).  A run recorded before validation existed
    has no ``val_samples`` or ``val_split``: ``None``."""
    base = sweep.runs[0].config.to_dict()
    sizes: dict[str, Any] = {}
    for r in records:
        path = out_dir / "runs" / r["id"] / "experiment.json"
        if path.is_file():
            data = json.loads(path.read_text())
            sizes = {k: data.get(k) for k in _SIZES}
            break
    return {
        "epochs": base["train"]["epochs"],
        "batch_size": base["train"]["batch_size"],
        "hidden": base["experiment"]["hidden"],
        "val_fraction": base["experiment"]["val_fraction"],
        "task_options": base["task"],
        **sizes,
    }


def worst_of(values: Sequence[float], metric_name: str) -> float:
    """The worst seed's value: the lowest accuracy or the highest MSE.  A mean over three seeds
    hides one that failed to learn; the worst says whether every seed got there."""
    return max(values) if metric_name.endswith("mse") else min(values)


def summarise(
    repro: Reproduction, sweep: Sweep, records: Sequence[dict[str, Any]], out_dir: Path
) -> dict[str, Any]:
    """The ``results.json`` object of a finished (or partly finished) reproduction: one row per
    method and grid point with ``metric_name``, ``mean`` ± ``std`` over the seeds, ``worst``
    (the worst seed), ``seeds``, ``values`` and ``picked_epochs`` (each seed's metric and the
    epoch it was selected at, in the same order), ``paper`` and ``budget``.  Every value is the
    validation-selected test metric of one run (see the module docstring)."""
    keys = list(repro.grid)
    by_method: dict[tuple[str, tuple[Any, ...]], list[dict[str, Any]]] = {}
    for r in records:
        key = (repro.label_of(r["overrides"]), tuple(r["overrides"].get(k) for k in keys))
        by_method.setdefault(key, []).append(r)
    budget = _budget_of(sweep, out_dir, records)
    rows = []
    for (label, values), group in by_method.items():
        ok = [r for r in group if r.get("status") == "ok" and r.get("metric") is not None]
        finished = [float(r["metric"]) for r in ok]
        row: dict[str, Any] = {"method": label}
        row.update({k.partition(".")[2]: v for k, v in zip(keys, values, strict=True)})
        metric_name = next((r["metric_name"] for r in group if r.get("metric_name")), None)
        mean, std = mean_std(finished) if finished else (None, None)
        row.update(
            {
                "metric_name": metric_name,
                "mean": mean,
                "std": std,
                "worst": worst_of(finished, metric_name or "") if finished else None,
                "seeds": len(finished),
                "values": finished,
                "picked_epochs": [selected_epoch(r)[0] for r in ok],
                "paper": repro.paper.get((label, values)),
                "budget": budget,
            }
        )
        rows.append(row)
    return {"name": repro.name, "source": repro.source, "results": rows}


def plot_results(repro: Reproduction, summary: dict, records: Sequence[dict], path: Path) -> None:
    """``alpha``: metric against alpha per model (ours with error bars, the paper's dashed);
    ``epochs``: mean validation metric per epoch and method (learning curves).

    The curves show the validation metric because that is what picks the reported epoch: the
    test set is scored only for the picked epoch.  Runs without a validation split (recorded
    before it existed, or with ``val_fraction = 0``) have a test score every epoch, which is
    drawn instead, and the axis says which."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    rows = summary["results"]
    metric = next((r["metric_name"] for r in rows if r["metric_name"]), "metric")
    if repro.plot == "alpha":
        for model in dict.fromkeys(r["model"] for r in rows):
            mine = sorted(
                (r for r in rows if r["model"] == model and r["mean"] is not None),
                key=lambda r: r[ALPHA],
            )
            line = ax.errorbar(
                [r[ALPHA] for r in mine],
                [r["mean"] for r in mine],
                yerr=[r["std"] for r in mine],
                marker="o",
                capsize=3,
                label=f"{model} (ours)",
            )
            paper = [(r[ALPHA], r["paper"]) for r in mine if r["paper"] is not None]
            if paper:
                ax.plot(
                    *zip(*paper, strict=True),
                    "--",
                    color=line[0].get_color(),
                    alpha=0.6,
                    label=f"{model} (paper)",
                )
        ax.set_xlabel("fractional order alpha (1 = BPTT)")
    else:
        curves: dict[str, list[list[float]]] = {}
        for r in records:
            if r.get("status") == "ok" and r.get("history"):
                name = r["metric_name"]
                val = "val_" + name.removeprefix("test_")
                if any(val in h for h in r["history"]):
                    name = val
                metric = name  # the axis names what was drawn
                curves.setdefault(repro.label_of(r["overrides"]), []).append(
                    [h[name] for h in r["history"]]
                )
        for label, runs in curves.items():
            length = min(len(c) for c in runs)
            mean = [sum(c[i] for c in runs) / len(runs) for i in range(length)]
            ax.plot(range(1, length + 1), mean, marker="o", label=f"{label} ({len(runs)} seeds)")
        ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(repro.name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_reproduction(
    name: str,
    out_dir: str | Path,
    *,
    budget: str = "default",
    workers: int | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) a reproduction into ``out_dir``; writes ``results.json`` and a plot.
    ``threads``: torch threads per run, as :func:`~neurofptt.studies.sweep.run_sweep` takes it."""
    repro = get_reproduction(name)
    out_dir = Path(out_dir)
    sweep = repro.sweep(budget)
    records = run_sweep(sweep, out_dir, workers=workers, progress=progress, threads=threads)
    summary = summarise(repro, sweep, records, out_dir)
    summary["budget_name"] = budget
    flag = "" if budget == "default" else f" --{budget}"
    summary["command"] = f"neurofptt reproduce {name}{flag} --out {out_dir}"
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(out_dir / RESULTS, text.encode())
    plot_results(repro, summary, records, out_dir / f"{name}.png")
    return summary


def results_table(summary: dict[str, Any]) -> str:
    """A plain-text table of ``results.json``: method, grid values, ours (mean ± std), the worst
    seed, the picked epochs, paper; and a line saying how the numbers were selected."""
    rows = summary["results"]
    extra = [k for k in (rows[0] if rows else {}) if k not in _ROW_KEYS]
    header = [
        "method",
        *extra,
        "ours (mean ± std)",
        "worst seed",
        "picked epochs",
        "seeds",
        "paper",
    ]
    lines = []
    for r in rows:
        ours = "-" if r["mean"] is None else f"{r['mean']:.4f} ± {r['std']:.4f}"
        worst = "-" if r["worst"] is None else f"{r['worst']:.4f}"
        picked = ", ".join("-" if e is None else str(e) for e in r["picked_epochs"]) or "-"
        paper = "-" if r["paper"] is None else f"{r['paper']:.4f}"
        grid = [str(r[k]) for k in extra]
        lines.append([r["method"], *grid, ours, worst, picked, str(r["seeds"]), paper])
    split = rows[0]["budget"].get("val_split") if rows else None
    how = (
        "the test score of the epoch picked on the validation split, scored once"
        if split not in (None, "none")
        else "the last epoch's test score (no validation split)"
    )
    return format_table(header, lines) + f"\nours: {how}"


#: the keys of a ``results.json`` row that are not grid values
_ROW_KEYS = frozenset(
    {
        "method",
        "metric_name",
        "mean",
        "std",
        "worst",
        "seeds",
        "values",
        "picked_epochs",
        "paper",
        "budget",
    }
)
