"""Resumable hyper-parameter sweeps: one TOML file, the product of a grid, one training per point.

A sweep file has a ``[base]`` config (the settings every run shares), a ``[grid]`` of dotted keys
(``"train.fobptt.alpha" = [0.5, 1.0]``: a rule's option is ``train.<rule>.<option>``, as its
``[train.<rule>]`` table) whose product is the set of runs, and an optional
``[sweep]`` table (``name``, ``workers``, ``backend``).  Settings that change together (a rule and
its own options) go in ``[[variants]]`` tables instead: the runs are every variant times every grid
point.
A base with an ``[base.experiment]`` table is an
experiment (:mod:`neurofptt.studies.experiment`: any task and model, trained with
:func:`~neurofptt.studies.experiment.run_experiment`); otherwise it is a hardware flow config,
trained with :func:`neurofptt.flow.stages.stage_train`.  Every run trains into
``OUT/runs/<id>/`` and appends one JSON line (its ``metric`` and ``metric_name``) to
``OUT/results.jsonl``.  A run's ``metric`` is the test score of the epoch picked on a validation
split (``flow.val_fraction`` or ``experiment.val_fraction`` of the training samples, or the task's
own split), scored once; :func:`selected_epoch` reads the picked epoch back from its history.

Sweeps get interrupted (a laptop sleeps, a job hits its wall time), so the results file is the
sweep's memory: a run's id is a hash of its overrides, a run whose id is already in the file is not
trained again, and only the parent process writes the file, one fsynced line per finished run, so
a kill loses at most the runs in flight.  A run killed between epochs continues from its last
checkpoint.  Runs train in local processes or, with ``backend = "ray"``, as Ray Tune trials
(:mod:`neurofptt.sweep_ray`), possibly on a cluster; the results file is the same.  Every expanded
config is built before anything trains, so a typo in the last grid value fails in a second, not
after an hour of training.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurofptt.errors import ConfigError
from neurofptt.flow.config import FlowConfig, FlowSettings
from neurofptt.io import atomic_write_bytes, load_toml
from neurofptt.learning.registry import RULE_OPTIONS
from neurofptt.learning.threads import available_cores, check_threads
from neurofptt.learning.trainer import TrainConfig
from neurofptt.quant.config import HardwareConfig
from neurofptt.studies.experiment import ExperimentConfig, ExperimentSettings
from neurofptt.studies.jobs import init_pool_worker, job_threads, run_job, run_one
from neurofptt.studies.ray_backend import run_jobs_with_ray

RESULTS = "results.jsonl"
MANIFEST = "sweep.json"
RUNS_DIR = "runs"

_TABLES = ("sweep", "base", "grid", "variants")
_SWEEP_KEYS = ("name", "workers", "backend")
BACKENDS = ("process", "ray")
# the [train] options a grid may set: the shared ones, and each rule's as "<rule>.<option>"
_TRAIN_FIELDS = frozenset(
    f.name for f in dataclasses.fields(TrainConfig) if f.name not in RULE_OPTIONS
) | frozenset(
    f"{rule}.{option.name}"
    for rule, options in RULE_OPTIONS.items()
    for option in dataclasses.fields(options)
)
# grid keys of the flat layout before [train.<rule>] tables, and what replaced each
_RENAMED_KEYS = {
    f"train.{rule}_{option.name}": f"train.{rule}.{option.name}"
    for rule, options in RULE_OPTIONS.items()
    for option in dataclasses.fields(options)
}
# The tables and options a grid may set, per kind of sweep; None: any option (the task loader's
# options are checked when each run's config is built).
_FIELDS: dict[str, dict[str, frozenset[str] | None]] = {
    "flow": {
        "hardware": frozenset(HardwareConfig().to_dict()),
        "train": _TRAIN_FIELDS,
        "flow": frozenset(f.name for f in dataclasses.fields(FlowSettings)),
    },
    "experiment": {
        "experiment": frozenset(f.name for f in dataclasses.fields(ExperimentSettings)),
        "task": None,
        "train": _TRAIN_FIELDS,
    },
}
_CONFIGS = {"flow": FlowConfig, "experiment": ExperimentConfig}


@dataclass(frozen=True)
class SweepRun:
    """One point of the grid: its overrides (dotted key -> value), id and built config."""

    id: str
    overrides: dict[str, Any]
    config: FlowConfig | ExperimentConfig


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file; ``runs`` is the expanded grid in its deterministic order."""

    name: str
    kind: str  # "flow" or "experiment"
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    variants: tuple[dict[str, Any], ...]
    workers: int | None
    backend: str | None
    runs: tuple[SweepRun, ...]

    @property
    def keys(self) -> list[str]:
        """The variants' and the grid's dotted keys, in file order (the columns of
        :func:`summary_table`)."""
        keys = [k for variant in self.variants for k in variant]
        return list(dict.fromkeys([*keys, *self.grid]))


def run_id(overrides: dict[str, Any]) -> str:
    """A short stable id of a run: a hash of its sorted overrides.

    It depends only on the overrides (not on their position in the grid), so adding values to a
    grid keeps the ids, and the results, of the runs already done.
    """
    text = json.dumps(overrides, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _flatten_grid(grid: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``"train.fptt.alpha" = [...]`` and ``train.fptt.alpha = [...]`` (nested TOML tables) mean
    the same."""

    def flatten(prefix: str, table: dict[str, Any]) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for key, value in table.items():
            if isinstance(value, dict):
                flat.update(flatten(f"{prefix}{key}.", value))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    flat: dict[str, Any] = {}
    for key, value in grid.items():
        if isinstance(value, dict) and key in fields:
            flat.update(flatten(f"{key}.", value))
        else:
            flat[key] = value
    return flat


def _check_grid(grid: dict[str, Any], kind: str) -> dict[str, list[Any]]:
    fields = _FIELDS[kind]
    checked: dict[str, list[Any]] = {}
    for key, values in _flatten_grid(grid, fields).items():
        table, _, field = key.partition(".")
        if table not in fields or not field:
            raise ConfigError(
                f"grid key {key!r} must be 'table.option' with table one of {sorted(fields)}, "
                'e.g. "train.seed"'
            )
        options = fields[table]
        if key in _RENAMED_KEYS:
            raise ConfigError(
                f"grid key {key!r} is now {_RENAMED_KEYS[key]!r} (a rule's options are "
                "[train.<rule>] tables): rename it in the sweep file"
            )
        if options is not None and field not in options:
            raise ConfigError(
                f"grid key {key!r}: {table} has no option {field!r}; valid options: "
                f"{sorted(options)}"
            )
        if not isinstance(values, list):
            raise ConfigError(f"grid key {key!r} must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"grid key {key!r} has an empty list; give it at least one value")
        for value in values:
            if isinstance(value, dict | list):
                raise ConfigError(f"grid key {key!r}: values must be scalars, got {value!r}")
        # two equal values would be two runs with one id (and one line in the results)
        seen = [json.dumps(v) for v in values]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"grid key {key!r} lists a value twice: {values!r}")
        checked[key] = values
    return checked


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict with dotted-key overrides (``"train.seed": 1``,
    ``"train.fptt.alpha": 0.1``) applied; the base is not changed."""
    data = copy.deepcopy(base)
    for key, value in overrides.items():
        *tables, option = key.split(".")
        node = data
        for table in tables:
            node = node.setdefault(table, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set {key!r}: {table!r} is not a table in the base")
        node[option] = value
    return data


def _check_variants(variants: Any, kind: str, grid: dict[str, list[Any]]) -> list[dict]:
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"variants must be a list of tables, got {variants!r}")
    checked = []
    for variant in variants:
        wrapped = {k: [v] for k, v in _flatten_grid(variant, _FIELDS[kind]).items()}
        flat = {k: v[0] for k, v in _check_grid(wrapped, kind).items()}
        clash = sorted(set(flat) & set(grid))
        if clash:
            raise ConfigError(f"{clash} are set both in a variant and in the grid; use one place")
        checked.append(flat)
    if len({json.dumps(v, sort_keys=True) for v in checked}) != len(checked):
        raise ConfigError("two variants are identical; each variant must differ")
    return checked or [{}]


def _check_backend(backend: Any, what: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"{what} must be one of {list(BACKENDS)}, got {backend!r}")


def make_sweep(
    base: dict[str, Any],
    grid: dict[str, Any],
    *,
    variants: list[dict[str, Any]] | None = None,
    name: str = "sweep",
    workers: int | None = None,
    backend: str | None = None,
) -> Sweep:
    """Validate a sweep and expand its grid; every run's config is built here, so a bad value
    raises :class:`ConfigError` (naming the run's overrides) before anything is trained."""
    if not isinstance(base, dict):
        raise ConfigError(f"[base] must be a table of config options, got {base!r}")
    kind = "experiment" if "experiment" in base else "flow"
    config_cls = _CONFIGS[kind]
    try:
        config_cls.from_dict(base)
    except ConfigError as exc:
        raise ConfigError(f"[base]: {exc}") from exc
    if not isinstance(grid, dict):
        raise ConfigError(f"[grid] must be a table of lists, got {grid!r}")
    checked = _check_grid(grid, kind)
    variant_list = _check_variants(variants or [], kind, checked)
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ConfigError(f"sweep.workers must be an integer >= 1, got {workers!r}")
    if backend is not None:
        _check_backend(backend, "sweep.backend")
    if not isinstance(name, str):
        raise ConfigError(f"sweep.name must be a string, got {name!r}")
    runs = []
    for variant, values in itertools.product(variant_list, itertools.product(*checked.values())):
        overrides = {**variant, **dict(zip(checked, values, strict=True))}
        try:
            config = config_cls.from_dict(apply_overrides(base, overrides))
        except ConfigError as exc:
            shown = ", ".join(f"{k} = {v!r}" for k, v in overrides.items())
            raise ConfigError(f"grid run ({shown}): {exc}") from exc
        runs.append(SweepRun(run_id(overrides), overrides, config))
    kept = tuple(v for v in variant_list if v)
    return Sweep(name, kind, base, checked, kept, workers, backend, tuple(runs))


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (see :func:`make_sweep`)."""
    path = Path(path)
    data = load_toml(path)
    unknown = sorted(set(data) - set(_TABLES))
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {unknown}; use [sweep], [base], [grid] and [[variants]]"
        )
    settings = data.get("sweep", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: [sweep] must be a table, got {settings!r}")
    unknown = sorted(set(settings) - set(_SWEEP_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown sweep option(s) {unknown}; valid options: {list(_SWEEP_KEYS)}"
        )
    try:
        return make_sweep(
            data.get("base", {}),
            data.get("grid", {}),
            variants=data.get("variants"),
            name=settings.get("name", path.stem),
            workers=settings.get("workers"),
            backend=settings.get("backend"),
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# -- the results file -----------------------------------------------------------------------------
def read_results(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The records of a results file by id (a later line wins) and the length of its valid part.

    A kill during a write can leave a torn last line; it is ignored (its run is redone).  A broken
    line before the last one cannot come from an interrupted write, so it is an error rather than
    something to drop silently.
    """
    if not path.is_file():
        return {}, 0
    lines = path.read_bytes().split(b"\n")  # the last item is what follows the last newline
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records: dict[str, dict[str, Any]] = {}
    valid = 0
    for i, line in enumerate(lines[:-1]):
        if line.strip():
            try:
                record = json.loads(line)
                if not (isinstance(record, dict) and isinstance(record.get("id"), str)):
                    raise ValueError("not a run record")
            except ValueError as exc:
                if i == last:
                    break
                raise ConfigError(
                    f"{path}, line {i + 1} is not a run record ({exc}); fix or remove that line"
                ) from exc
            records[record["id"]] = record
        valid += len(line) + 1
    return records, valid


def _append(fh: Any, record: dict[str, Any]) -> None:
    fh.write((json.dumps(record, sort_keys=True) + "\n").encode())
    fh.flush()
    os.fsync(fh.fileno())


def _check_manifest(out_dir: Path, sweep: Sweep) -> None:
    """Ids hash only the overrides, so a results file is only reusable with the same base config;
    refuse to mix runs of two different bases in one folder."""
    manifest = out_dir / MANIFEST
    base = _CONFIGS[sweep.kind].from_dict(sweep.base).to_dict()
    if manifest.is_file():
        try:
            saved = json.loads(manifest.read_text())["base"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{manifest} is not readable ({exc}); remove it or use another output folder"
            ) from exc
        if saved != base:
            raise ConfigError(
                f"{out_dir} holds a sweep with other [base] settings ({manifest}); its results "
                "would be mixed with this one's: use another output folder"
            )
    data = {"name": sweep.name, "base": base, "grid": sweep.grid, "variants": sweep.variants}
    atomic_write_bytes(manifest, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


# -- running --------------------------------------------------------------------------------------
def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    retry_errors: bool = False,
    backend: str | None = None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Run the sweep's runs that ``out_dir/results.jsonl`` does not hold yet; return the records
    of all its runs (earlier and new) in grid order.

    ``workers`` (else ``sweep.workers``, else the cores this process may use) processes train in
    parallel; 1 trains inline in this process.  Each run trains with ``threads`` torch threads,
    or (``None``, 0) the default for its size among ``workers`` side by side
    (:func:`~neurofptt.studies.jobs.job_threads`: one thread for small networks, at most the
    cores divided by the workers), recorded as its record's ``threads``.  ``backend`` (else
    ``sweep.backend``, else ``"process"``) is
    ``"process"`` (local processes) or ``"ray"`` (Ray Tune trials, ``workers`` at a time; see
    :mod:`neurofptt.sweep_ray`); both write the same results file.  Runs recorded with
    ``status = "error"`` count as done unless ``retry_errors``.  Errors other than
    :class:`NeurofpttError` stop the sweep (runs finished so far stay recorded).
    """
    backend = backend or sweep.backend or "process"
    _check_backend(backend, "backend")
    check_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, sweep)
    results = out_dir / RESULTS
    done, valid = read_results(results)
    if results.is_file() and results.stat().st_size != valid:
        with results.open("r+b") as fh:  # drop a torn last line so the next append starts clean
            fh.truncate(valid)
            os.fsync(fh.fileno())
    pending = [
        run
        for run in sweep.runs
        if run.id not in done or (retry_errors and done[run.id].get("status") != "ok")
    ]
    n_workers = workers or sweep.workers or available_cores()
    if n_workers < 1:
        raise ConfigError(f"workers must be >= 1, got {n_workers}")
    n_workers = min(n_workers, len(pending)) or 1
    log = (lambda msg: print(f"[sweep] {msg}", file=sys.stderr, flush=True)) if progress else None
    jobs = []
    for run in pending:
        config = run.config.to_dict()
        # the Ray backend sizes the threads again, for the CPUs its trials reserve
        n_threads = job_threads(sweep.kind, config, threads, workers=n_workers)
        run_dir = str(out_dir / RUNS_DIR / run.id)
        jobs.append((sweep.kind, config, run.overrides, run.id, run_dir, n_threads))
    if log:
        counts = "/".join(str(n) for n in sorted({job[-1] for job in jobs})) or "-"
        log(
            f"{sweep.name}: {len(sweep.runs)} runs, {len(sweep.runs) - len(pending)} done, "
            f"{len(pending)} to run on {n_workers} {backend} worker(s)"
            + (f", {counts} torch thread(s) each" if backend == "process" else "")
        )
    with results.open("ab") as fh:

        def finished(record: dict[str, Any]) -> None:
            _append(fh, record)
            done[record["id"]] = record
            if log:
                shown = ", ".join(f"{k}={v}" for k, v in record["overrides"].items())
                outcome = (
                    f"{record['metric_name']} {record['metric']:.4f}"
                    if record["status"] == "ok"
                    else f"error: {record['error']}"
                )
                log(f"{record['id']} ({shown}): {outcome}, {record['seconds']:.1f} s")

        if backend == "ray" and jobs:
            run_jobs_with_ray(jobs, out_dir, n_workers, finished, threads=threads)
        elif n_workers == 1:
            for job in jobs:
                finished(run_one(*job))
        elif jobs:
            pool = multiprocessing.get_context("spawn").Pool(n_workers, init_pool_worker)
            try:
                for record in pool.imap_unordered(run_job, jobs):
                    finished(record)
                pool.close()  # every run finished: the workers leave when the queue is empty
            except BaseException:
                # on Ctrl-C the runs in progress stop at once (each resumes from its last
                # checkpoint); the workers ignore SIGINT, so they print nothing
                pool.terminate()
                raise
            finally:
                pool.join()
    return [done[run.id] for run in sweep.runs if run.id in done]


# -- summary --------------------------------------------------------------------------------------
def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(lines)


def _show(value: Any) -> str:
    return "-" if value is None else str(value)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def seed_groups(
    records: Sequence[dict[str, Any]], keys: Sequence[str]
) -> dict[tuple[Any, ...], list[float]]:
    """The finished runs' metrics grouped by their values of ``keys`` (all grid keys but the
    seed), in first-appearance order; a group whose runs all failed has an empty list."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in records:
        values = groups.setdefault(tuple(r["overrides"].get(k) for k in keys), [])
        if r.get("status") == "ok" and r.get("metric") is not None:
            values.append(float(r["metric"]))
    return groups


def selected_epoch(record: dict[str, Any]) -> tuple[int | None, float | None]:
    """The reported epoch of a results line and its validation score: ``(epoch, None)`` where
    the run had no validation split (nothing was selected, the last epoch is reported) and
    ``(None, None)`` for a run without a history (a failed one).

    The line carries the run's per-epoch history, and with a validation split the trainer
    scores the test set once, for the picked epoch, so the picked epoch is the one epoch with a
    test score (:class:`~neurofptt.learning.trainer.FitHistory`); reading it there keeps the
    results line as it is and also reads the lines of earlier runs, which had no split.
    """
    name, history = record.get("metric_name"), record.get("history")
    if not name or not history:
        return None, None
    val_key = "val_" + name.removeprefix("test_")
    if not any(val_key in h for h in history):
        return int(history[-1]["epoch"]), None
    scored = [h for h in history if h.get(name) is not None]
    if len(scored) != 1:
        return None, None
    return int(scored[0]["epoch"]), scored[0].get(val_key)


def summary_table(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    """One row per run (its grid values, selected test metric, the validation score and epoch it
    was selected by, status) and, when the grid has ``train.seed``, the mean ± standard
    deviation of the selected metric over seeds for each other combination: one seed's result on
    a small task is noise, the spread over seeds says how much.

    The reported metric is never a best-over-epochs test score: showing the validation score
    and the picked epoch beside it says how it was chosen (``-``: no validation split, the last
    epoch)."""
    keys = list(keys)
    label = next((r["metric_name"] for r in records if r.get("metric_name")), "metric")
    val_label = "val_" + label.removeprefix("test_")
    rows = []
    for r in records:
        epoch, val = selected_epoch(r)
        rows.append(
            [
                r["id"],
                *(_show(r["overrides"].get(k)) for k in keys),
                "-" if r.get("metric") is None else f"{r['metric']:.4f}",
                "-" if val is None else f"{val:.4f}",
                _show(epoch),
                r.get("status", "?"),
            ]
        )
    text = format_table(["id", *keys, label, val_label, "picked epoch", "status"], rows)
    text += (
        f"\n{label}: the test score of the epoch picked on the validation split, scored once "
        f"({val_label} '-': no validation split, the last epoch)"
    )
    if "train.seed" not in keys:
        return text
    rest = [k for k in keys if k != "train.seed"]
    grouped = []
    for group, values in seed_groups(records, rest).items():
        cell = "-" if not values else "{:.4f} ± {:.4f}".format(*mean_std(values))
        grouped.append([*map(_show, group), cell, str(len(values))])
    return (
        text
        + "\n\nover train.seed:\n"
        + format_table([*rest, f"{label} (mean ± std)", "seeds"], grouped)
    )
