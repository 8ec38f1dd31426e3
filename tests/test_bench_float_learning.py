"""``neurofptt bench float-learning``: float training over seeds at the leak derived from the
task, one tiny point through the command line, the swing and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neurofptt.bench.float_learning import summarize_float, swing
from neurofptt.cli import main

torch.set_num_threads(1)


def test_one_point_through_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "float-learning", "--tasks", "delayed-xor", "--rules", "bptt"]
    args += ["--seeds", "1", "--epochs", "2", "--samples", "16", "--json", str(out)]
    args += ["--runs", str(tmp_path / "runs")]
    assert main(args) == 0
    result = json.loads(out.read_text())
    (record,) = result["records"]
    assert record["train_samples"] == 16 and record["val_samples"] == 100
    assert record["hardware"]["leak_shift"] == 6 == record["derived"]["leak"]["leak_shift"]
    assert record["picked_epoch"] in (1, 2) and 0 <= record["test_accuracy"] <= 1
    assert len(record["history"]) == 2 and record["tune"] is None
    (row,) = result["summary"]
    assert row["mean"] == record["test_accuracy"] and row["leak_shifts"] == [6]
    assert result["arguments"]["samples"] == 16 and "load_average_after" in result["conditions"]
    assert (tmp_path / "runs" / "delayed-xor-16.npz").is_file()


def test_a_task_that_takes_no_sample_count_is_refused(tmp_path: Path, capsys) -> None:
    args = ["bench", "float-learning", "--tasks", "digits", "--samples", "10", "--seeds", "1"]
    assert main([*args, "--epochs", "1"]) == 2
    assert "n_train" in capsys.readouterr().err


def test_the_swing_is_the_largest_epoch_to_epoch_change_after_epoch_five() -> None:
    history = [{"val_accuracy": v} for v in (0.1, 0.9, 0.2, 0.5, 0.6, 0.7, 0.5, 0.55)]
    assert swing(history, "val_accuracy") == pytest.approx(0.2)  # epochs 5..8: .6, .7, .5, .55
    assert swing(history[:5], "val_accuracy") == 0.0


def test_the_summary_adds_the_largest_swing_and_the_leaks_per_rule() -> None:
    def record(rule: str, seed: int, accuracy: float, spread: float, leak: int) -> dict:
        return {
            "task": "cue",
            "rule": rule,
            "seed": seed,
            "tuned": False,
            "forced_offset": None,
            "error_shift_offset": None,
            "test_accuracy": accuracy,
            "swing": spread,
            "tune": None,
            "hardware": {"leak_shift": leak},
            "picked_epoch": 3,
        }

    records = [record("fptt", 0, 0.9, 0.1, 7), record("fptt", 1, 0.7, 0.3, 7)]
    records.append(record("bptt", 0, 0.6, 0.05, 7))
    fptt, bptt = summarize_float(records)
    assert fptt["mean"] == pytest.approx(0.8) and fptt["worst"] == 0.7 and fptt["swing"] == 0.3
    assert fptt["leak_shifts"] == [7, 7] and "offsets" not in fptt
    assert bptt["swing"] == 0.05 and bptt["picked_epochs"] == [3]
