"""``neurofptt bench float-learning``: float training over seeds at the leak derived from the
task, one tiny point through the command line, the swing and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neurofptt.bench import float_learning
from neurofptt.bench.float_learning import learned_nothing, summarize_float, swing
from neurofptt.cli import main
from neurofptt.errors import TrainingDiverged
from neurofptt.tasks.base import SequenceDataset, TaskData

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


def test_a_diverged_run_is_a_result_that_learned_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A seed whose loss becomes NaN (BPTT on 2,250-step cue accumulation) does not end the
    bench: its record says in which epoch it diverged and scores the most frequent training
    label's share of the test split, which the seeds' mean and worst count; the others are
    measured as ever."""
    real = float_learning.stage_train

    def train(cfg, run_dir, **kw):  # noqa: ANN001, ANN202 - stage_train's signature
        if cfg.train.seed == 1:
            raise TrainingDiverged("training diverged (loss nan) in epoch 2; ...", 2)
        return real(cfg, run_dir, **kw)

    monkeypatch.setattr(float_learning, "stage_train", train)
    out = tmp_path / "bench.json"
    args = ["bench", "float-learning", "--tasks", "delayed-xor", "--rules", "bptt"]
    args += ["--seeds", "2", "--epochs", "1", "--samples", "16", "--json", str(out)]
    assert main(args) == 0
    assert "seed 1: leak 6, diverged in epoch 2" in capsys.readouterr().err
    finished, diverged = json.loads(out.read_text())["records"]
    assert finished["diverged"] is None and len(finished["history"]) == 1
    assert diverged["diverged"] == 2 and diverged["picked_epoch"] is None
    assert diverged["history"] == [] and diverged["swing"] is None
    (row,) = json.loads(out.read_text())["summary"]
    scores = [finished["test_accuracy"], diverged["test_accuracy"]]
    assert row["diverged"] == [1] and row["mean"] == pytest.approx(sum(scores) / 2)
    assert row["swing"] == finished["swing"]


def test_learning_nothing_scores_the_most_frequent_label_or_the_mean() -> None:
    """The baseline of a diverged run: the most frequent training label's share of the test
    labels (labelled steps only for per-step labels), or the MSE of the training mean."""

    def task(train: list, test: list, target: str = "label") -> TaskData:
        def split(y: list) -> SequenceDataset:
            y = torch.tensor(y, dtype=torch.float32 if target == "regression" else torch.long)
            steps = y.shape[1] if y.ndim > 1 else 3
            return SequenceDataset(x=torch.zeros(len(y), steps, 2), y=y)

        n_out = 1 if target == "regression" else 3
        return TaskData("t", split(train), split(test), n_out=n_out, target=target)

    assert learned_nothing(task([0, 2, 2], [2, 1, 2, 0])) == 0.5
    per_step = task([[-1, 0], [-1, 1], [-1, 1]], [[-1, 1], [-1, 0]], "label_per_step")
    assert learned_nothing(per_step) == 0.5
    regression = task([[[1.0], [3.0]], [[1.0], [3.0]]], [[[2.0], [4.0]]], "regression")
    assert learned_nothing(regression) == pytest.approx((0.0 + 4.0) / 2)
