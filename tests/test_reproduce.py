"""Reproductions: every one runs end to end through the CLI in quick mode and resumes.

Quick mode trains a few batches, so its numbers mean nothing; what is checked is the machinery:
the runs of every method, model and alpha, ``results.json`` with one object per group (the
validation-selected metric, its name, the worst seed, the picked epochs, budget, seed count, the
paper's number), the plot, and that a second invocation on the same folder trains nothing again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofptt.cli import main
from neurofptt.errors import ConfigError
from neurofptt.studies.reproduce import REPRODUCTIONS, get_reproduction, results_table, worst_of

KEYS = {"method", "metric_name", "mean", "std", "worst", "seeds", "values", "picked_epochs"}
KEYS |= {"paper", "budget"}


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
        # validation-selected: a held-out tenth of the training samples picks each run's epoch
        assert row["budget"]["val_fraction"] == 0.1 and row["budget"]["val_split"] == "held out"
        assert row["budget"]["val_samples"] >= 1
        assert row["worst"] == row["values"][0]
        (epoch,) = row["picked_epochs"]
        assert 1 <= epoch <= row["budget"]["epochs"]
        key = (row["method"], tuple(row[k] for k in grid_keys))
        assert row["paper"] == repro.paper.get(key)
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert "ours (mean ± std)" in err and "worst seed" in err
    assert "ours: the test score of the epoch picked on the validation split" in err
    _, err = reproduce(name, tmp_path, capsys)
    assert f"{len(sweep.runs)} done, 0 to run" in err


def test_worst_seed_is_the_lowest_accuracy_or_the_highest_mse() -> None:
    assert worst_of([0.9, 0.7, 0.8], "test_accuracy") == 0.7
    assert worst_of([0.03, 0.05, 0.04], "test_mse") == 0.05


def test_results_table_says_when_nothing_was_selected() -> None:
    """Runs without a validation split (``val_fraction = 0``, or recorded before validation
    existed) report their last epoch, and the table says so."""
    row = {
        "method": "BPTT",
        "metric_name": "test_accuracy",
        "mean": 0.5,
        "std": 0.1,
        "worst": 0.4,
        "seeds": 2,
        "values": [0.4, 0.6],
        "picked_epochs": [3, 3],
        "paper": None,
        "budget": {"val_split": "none"},
    }
    table = results_table({"results": [row]})
    line = ["BPTT", "0.5000", "±", "0.1000", "0.4000", "3,", "3", "2", "-"]
    assert table.splitlines()[2].split() == line
    assert table.endswith("ours: the last epoch's test score (no validation split)")


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
