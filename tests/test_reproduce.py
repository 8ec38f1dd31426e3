"""Reproductions: every one runs end to end through the CLI in quick mode and resumes.

Quick mode trains a few batches, so its numbers mean nothing; what is checked is the machinery:
the runs of every method, model and alpha, ``results.json`` with one object per group (metric,
its name, budget, seed count, the paper's number), the plot, and that a second invocation on the
same folder trains nothing again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofptt.cli import main
from neurofptt.errors import ConfigError
from neurofptt.studies.reproduce import REPRODUCTIONS, get_reproduction

KEYS = {"method", "metric_name", "mean", "std", "seeds", "values", "paper", "budget"}


def reproduce(name: str, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    assert main(["reproduce", name, "--quick", "--out", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    return json.loads((out / "results.json").read_text()), captured.err


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_quick_reproduction_runs_and_resumes(name: str, tmp_path: Path, capsys) -> None:
    repro = get_reproduction(name)
    sweep = repro.sweep("quick")
    summary, err = reproduce(name, tmp_path, capsys)
    assert summary["name"] == name and summary["budget_name"] == "quick"
    assert summary["command"] == f"neurofptt reproduce {name} --quick --out {tmp_path}"
    grid_keys = [k.partition(".")[2] for k in repro.grid]
    rows = summary["results"]
    assert len(rows) * 1 == len(sweep.runs)  # quick: one seed, so one run per group
    for row in rows:
        assert set(row) == KEYS | set(grid_keys)
        assert row["seeds"] == 1 and len(row["values"]) == 1 and row["std"] == 0.0
        assert row["metric_name"] in ("test_accuracy", "test_mse")
        assert row["budget"]["epochs"] >= 1 and row["budget"]["train_samples"] > 0
        key = (row["method"], tuple(row[k] for k in grid_keys))
        assert row["paper"] == repro.paper.get(key)
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert "ours (mean ± std)" in err
    _, err = reproduce(name, tmp_path, capsys)
    assert f"{len(sweep.runs)} done, 0 to run" in err


def test_paper_numbers_are_attached_where_the_paper_prints_them() -> None:
    tsfd = get_reproduction("tsfd-fobptt")
    assert tsfd.paper[("FO-BPTT", ("rnn", 1.0))] == 0.045  # seed 000, Table 4, alpha = 1
    assert tsfd.paper[("FO-BPTT", ("gru", 1.25))] == 0.030
    assert get_reproduction("psmnist-fptt").paper[("FPTT-14", ())] == 0.9475
    full = tsfd.sweep("full")
    assert len(full.runs) == 3 * 5 * 3  # models x alphas x seeds
    assert full.runs[0].config.task == {"n_sequences": 10_000, "length": 100}
    assert full.runs[0].config.train.epochs == 50


def test_unknown_names_and_budgets_are_config_errors(capsys) -> None:
    with pytest.raises(ConfigError, match="available"):
        get_reproduction("cifar")
    with pytest.raises(ConfigError, match="unknown budget"):
        get_reproduction("tsfd-fobptt").sweep("huge")
    assert main(["reproduce", "cifar", "--quick", "--out", "/tmp/x"]) == 2
    assert "unknown reproduction 'cifar'" in capsys.readouterr().err
