"""Sweeps: grid expansion, parallel runs, resuming after a kill, torn lines, bad sweep files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from neurofptt.errors import ConfigError
from neurofptt.flow import stages as flow
from neurofptt.studies.sweep import (
    RESULTS,
    load_sweep,
    read_results,
    run_sweep,
    selected_epoch,
    summary_table,
)

BASE = """
[base.hardware]
n_rec = 8
[base.train]
rule = "bptt"
epochs = {epochs}
batch_size = {batch_size}
qat_epochs = 0
"""


def write_sweep(tmp_path: Path, grid: str, *, epochs: int = 1, batch_size: int = 128) -> Path:
    path = tmp_path / "sweep.toml"
    text = BASE.format(epochs=epochs, batch_size=batch_size) + "[grid]\n" + textwrap.dedent(grid)
    path.write_text(text)
    return path


def result_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]


GRID_2X2 = """
"train.model" = ["rnn", "gru"]
"train.seed" = [0, 1]
"""


def test_grid_runs_in_parallel_and_in_order(tmp_path: Path) -> None:
    sweep = load_sweep(write_sweep(tmp_path, GRID_2X2))
    out = tmp_path / "out"
    records = run_sweep(sweep, out, workers=2, progress=False)
    assert [r["overrides"] for r in records] == [
        {"train.model": "rnn", "train.seed": 0},
        {"train.model": "rnn", "train.seed": 1},
        {"train.model": "gru", "train.seed": 0},
        {"train.model": "gru", "train.seed": 1},
    ]
    assert [r["id"] for r in records] == [run.id for run in sweep.runs]
    assert all(r["status"] == "ok" and 0.0 <= r["metric"] <= 1.0 for r in records)
    lines = result_lines(out)
    assert len(lines) == 4 and {r["id"] for r in lines} == {r["id"] for r in records}
    for r in records:
        train = json.loads((out / "runs" / r["id"] / "train.json").read_text())
        # flow runs report the test accuracy of the epoch picked on flow.val_fraction
        assert r["metric"] == train["test_accuracy"] and train["val_split"] == "held out"
        assert selected_epoch(r) == (train["picked_epoch"], train["val_accuracy"])
    table = summary_table(records, sweep.keys)
    for text in ("train.model", "rnn", "gru", "ok", "mean ± std", records[0]["id"]):
        assert text in table
    for text in ("val_accuracy", "picked epoch", "picked on the validation split"):
        assert text in table


def test_rerun_skips_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = load_sweep(write_sweep(tmp_path, GRID_2X2))
    out = tmp_path / "out"
    first = run_sweep(sweep, out, workers=1, progress=False)
    before = (out / RESULTS).read_bytes()

    def must_not_train(*args: object, **kwargs: object) -> dict:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(flow, "stage_train", must_not_train)
    assert run_sweep(sweep, out, workers=1, progress=False) == first
    assert run_sweep(sweep, out, workers=2, progress=False) == first  # no pool, no training
    assert (out / RESULTS).read_bytes() == before


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path: Path) -> None:
    # runs of about half a second, so the kill lands while a later run is still training
    path = write_sweep(tmp_path, '"train.model" = ["rnn"]\n"train.seed" = [0, 1, 2]\n', epochs=3,
                       batch_size=8)  # fmt: skip
    out = tmp_path / "out"
    code = (
        "from neurofptt.studies.sweep import load_sweep, run_sweep; "
        f"run_sweep(load_sweep({str(path)!r}), {str(out)!r}, workers=1, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    results = out / RESULTS
    deadline = time.monotonic() + 60
    try:
        while not (results.is_file() and results.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, "the sweep ended before writing a result"
            assert time.monotonic() < deadline, "no result within 60 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = result_lines(out)
    assert 1 <= len(before) < 3, "the kill came too late to test resuming"
    finished = {r["id"]: (out / "runs" / r["id"] / "train.json").stat().st_mtime_ns for r in before}

    records = run_sweep(load_sweep(path), out, workers=1, progress=False)
    lines = result_lines(out)
    ids = [r["id"] for r in lines]
    assert len(lines) == 3 and sorted(ids) == sorted(set(ids))
    assert lines[: len(before)] == before
    for rid, mtime in finished.items():
        assert ids.count(rid) == 1
        assert (out / "runs" / rid / "train.json").stat().st_mtime_ns == mtime  # not retrained
    assert [r["overrides"]["train.seed"] for r in records] == [0, 1, 2]
    assert all(r["status"] == "ok" for r in records)


def test_torn_last_line_is_ignored_and_rewritten(tmp_path: Path) -> None:
    sweep = load_sweep(write_sweep(tmp_path, '"train.model" = ["rnn", "gru"]\n'))
    out = tmp_path / "out"
    run_sweep(sweep, out, workers=1, progress=False)
    data = (out / RESULTS).read_bytes()
    first, second = data.splitlines(keepends=True)
    (out / RESULTS).write_bytes(first + second[: len(second) // 2])  # killed mid-write
    done, valid = read_results(out / RESULTS)
    assert list(done) == [json.loads(first)["id"]] and valid == len(first)

    records = run_sweep(sweep, out, workers=1, progress=False)
    lines = result_lines(out)  # every line parses: the torn part was dropped, not appended to
    assert [r["id"] for r in lines] == [r["id"] for r in records]
    assert lines[0] == json.loads(first)


def test_broken_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    (tmp_path / RESULTS).write_text('not json\n{"id": "abc"}\n')
    with pytest.raises(ConfigError, match="line 1"):
        read_results(tmp_path / RESULTS)


def test_error_runs_are_recorded(tmp_path: Path) -> None:
    # the task has 10 classes; n_out = 5 builds but fails when the task is loaded
    sweep = load_sweep(write_sweep(tmp_path, '"hardware.n_out" = [5]\n'))
    (record,) = run_sweep(sweep, tmp_path / "out", workers=1, progress=False)
    assert record["status"] == "error" and "n_out" in record["error"]
    assert "error" in summary_table([record], sweep.keys)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ('"train.nope" = [1]', "train.nope"),
        ('"model.width" = [1]', "model.width"),
        ('"seed" = [1]', "'seed'"),
        ('"train.seed" = []', "train.seed.*empty"),
        ('"train.seed" = 3', "train.seed.*list"),
        ('"train.epochs" = [1, "three"]', "train.epochs"),
        ('"train.model" = ["rnn", "nonesuch"]', "nonesuch"),
        ('"train.seed" = [1, 1]', "train.seed.*twice"),
        ('"train.fptt_alpha" = [0.5]', r"'train\.fptt_alpha' is now 'train\.fptt\.alpha'"),
        ('"train.fptt.beta" = [0.5]', r"train has no option 'fptt\.beta'"),
        ('"train.fptt.alpha" = [0.5, -1.0]', "FPTT alpha must be positive"),
    ],
)
def test_bad_grid_is_a_config_error(tmp_path: Path, grid: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(write_sweep(tmp_path, grid))


def test_bad_tables_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[sweeps]\nname = "x"\n')
    with pytest.raises(ConfigError, match="sweeps"):
        load_sweep(path)
    path.write_text("[sweep]\nthreads = 2\n")
    with pytest.raises(ConfigError, match="threads"):
        load_sweep(path)
    path.write_text("[sweep]\nworkers = 0\n")
    with pytest.raises(ConfigError, match="workers"):
        load_sweep(path)
    path.write_text("[base.train]\nepochs = 0\n")
    with pytest.raises(ConfigError, match="base.*epochs"):
        load_sweep(path)


def test_other_base_in_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_sweep(load_sweep(write_sweep(tmp_path, '"train.model" = ["gru"]\n')), out, workers=1,
              progress=False)  # fmt: skip
    other = load_sweep(write_sweep(tmp_path, '"train.model" = ["gru"]\n', epochs=2))
    with pytest.raises(ConfigError, match="other \\[base\\]"):
        run_sweep(other, out, workers=1, progress=False)


EXPERIMENT = """
[sweep]
name = "alpha study"
[base.experiment]
task = "tsfd"
hidden = 8
[base.task]
n_sequences = 40
length = 12
[base.train]
rule = "fobptt"
optimizer = "adam"
lr = 0.01
epochs = 1
batch_size = 16
weight_decay = 0.0
qat_epochs = 0
[grid]
"train.fobptt.alpha" = [0.75, 1.25]
"train.model" = ["rnn", "lstm", "gru"]
"train.seed" = [0, 1]
"""


def test_experiment_sweep_over_alpha_model_and_seed(tmp_path: Path) -> None:
    """The issue's example grid (alpha x model x seed) on a regression task: MSE per run, the
    test MSE of the epoch picked on the held-out validation samples."""
    path = tmp_path / "alpha.toml"
    path.write_text(EXPERIMENT.replace("epochs = 1", "epochs = 2"))
    sweep = load_sweep(path)
    assert sweep.kind == "experiment" and len(sweep.runs) == 12
    out = tmp_path / "out"
    records = run_sweep(sweep, out, workers=2, progress=False)
    assert all(r["status"] == "ok" and r["metric_name"] == "test_mse" for r in records)
    assert all(0.0 < r["metric"] < 10.0 for r in records)
    for r in records:
        run = json.loads((out / "runs" / r["id"] / "experiment.json").read_text())
        assert run["val_split"] == "held out" and run["val_samples"] == 3  # 10 % of 32
        assert selected_epoch(r) == (run["picked_epoch"], run["val_mse"])
        vals = [h["val_mse"] for h in run["history"]]
        assert run["picked_epoch"] == 1 + vals.index(min(vals))
        assert r["metric"] == run["metric"] == run["history"][run["picked_epoch"] - 1]["test_mse"]
    table = summary_table(records, sweep.keys)
    assert "test_mse (mean ± std)" in table and "val_mse" in table
    assert len(table.split("over train.seed:")[1].strip().splitlines()) == 2 + 6


def test_variants_times_grid(tmp_path: Path) -> None:
    path = tmp_path / "variants.toml"
    path.write_text(
        EXPERIMENT.split("[grid]")[0]
        + '[grid]\n"train.seed" = [0, 1]\n'
        + '[[variants]]\n"train.rule" = "bptt"\n'
        + '[[variants]]\ntrain.rule = "tbptt"\ntrain.tbptt.n = 4\ntrain.tbptt.loss_steps = "all"\n'
    )
    sweep = load_sweep(path)
    assert [run.overrides for run in sweep.runs] == [
        {"train.rule": "bptt", "train.seed": 0},
        {"train.rule": "bptt", "train.seed": 1},
        {
            "train.rule": "tbptt",
            "train.tbptt.n": 4,
            "train.tbptt.loss_steps": "all",
            "train.seed": 0,
        },
        {
            "train.rule": "tbptt",
            "train.tbptt.n": 4,
            "train.tbptt.loss_steps": "all",
            "train.seed": 1,
        },
    ]
    assert sweep.keys == ["train.rule", "train.tbptt.n", "train.tbptt.loss_steps", "train.seed"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[variants]]\n"train.seed" = 3\n', "both in a variant and in the grid"),
        ('[[variants]]\n"train.rule" = "bptt"\n[[variants]]\n"train.rule" = "bptt"\n', "identical"),
        ('[[variants]]\n"task.nonsense" = 1\n', "has no option"),
    ],
)
def test_bad_variants_are_config_errors(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(EXPERIMENT.split("[grid]")[0] + '[grid]\n"train.seed" = [0]\n' + extra)
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)


def test_shipped_sweep_files_are_valid() -> None:
    files = sorted(Path(__file__).parents[1].joinpath("sweeps").glob("*.toml"))
    assert files
    for path in files:
        sweep = load_sweep(path)
        assert sweep.runs and sweep.kind == "experiment"
