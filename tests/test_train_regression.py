"""A regression task (``adding``: real values in, a running sum out every step) trains its float
network with ``neurofptt train`` and is scored by its MSE; the stages that go to hardware, which
classifies, refuse it, ``neurofptt flow`` before it trains anything."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch

from neurofptt.bench.float_learning import summarize_float, swing
from neurofptt.cli import main
from neurofptt.flow import onchip
from neurofptt.flow import run as flow_run
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.stages import CHECKPOINT, load_trained
from neurofptt.flow.tune import tune_and_train
from neurofptt.learning.trainer import load_checkpoint
from neurofptt.quant.fake import FakeQuantize
from neurofptt.tasks import TASKS
from neurofptt.tasks.adding import load_adding

torch.set_num_threads(1)

#: a small network and one full batch, so that an epoch of the whole task takes about a second
TINY = '[hardware]\nn_rec = 8\n\n[train]\nepochs = 1\nbatch_size = 1000\nrule = "bptt"\n'


def test_train_fits_a_regression_task_and_records_its_mse(tmp_path: Path, capsys) -> None:
    config, out = tmp_path / "tiny.toml", tmp_path / "run"
    config.write_text(TINY)
    args = ["--task", "adding", "--config", str(config), "--out", str(out)]
    assert main(["train", *args, "--threads", "1", "--no-progress"]) == 0
    record = json.loads((out / "train.json").read_text())
    assert (record["task"], record["target"], record["metric"]) == ("adding", "regression", "mse")
    # the metric under its own name: no MSE under an accuracy's name
    assert not any("accuracy" in key for key in record)
    assert record["float_mse"] == record["test_mse"] > 0 and math.isfinite(record["test_mse"])
    (epoch,) = record["history"]
    assert record["picked_epoch"] == 1 and record["val_mse"] == epoch["val_mse"] > 0
    assert record["val_split"] == "task" and record["train_samples"] == 1000
    # the leaks come from the task as for a label task (every step carries a target)
    assert record["derived"]["leak"]["leak_shift"] == 6
    # no quantization-aware epochs: the network never goes to the hardware (float_config); the
    # checkpoint records the config as trained, so it rebuilds the same float network
    assert load_checkpoint(out / CHECKPOINT)["meta"]["flow"]["train"]["qat_epochs"] == 0
    model, cfg = load_trained(out / CHECKPOINT)
    assert (cfg.hardware.n_in, cfg.hardware.n_out) == (2, 1)
    assert not any(isinstance(m, FakeQuantize) for m in model.modules())
    capsys.readouterr()
    # quantizing it, the first stage that goes to hardware, is refused with the fix
    assert main(["quantize", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: task 'adding' has 'regression' targets")
    assert "'neurofptt train'" in line
    assert not (out / "quantized.npz").exists()


@pytest.mark.parametrize(
    ("module", "options"),
    [(flow_run, []), (onchip, ["--learning", "eprop"])],
    ids=["flow", "learning"],
)
def test_the_flows_refuse_a_regression_task_before_training(
    module, options: list[str], tmp_path: Path, capsys, monkeypatch
) -> None:
    def must_not_train(*args, **kwargs) -> dict:
        raise AssertionError("the flow trained a task the hardware cannot run")

    monkeypatch.setattr(module, "stage_train", must_not_train)
    config, out = tmp_path / "flow.toml", tmp_path / "flow"
    config.write_text('[flow]\ntask = "adding"\n')
    argv = ["flow", *options, "--config", str(config), "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: task 'adding' has 'regression' targets")
    assert "hardware" in line and "'neurofptt train'" in line
    assert not out.exists()  # refused before anything was written


def test_tune_picks_the_point_of_the_lowest_validation_mse(tmp_path: Path, monkeypatch) -> None:
    # a short adding problem, so the grid's seven points take seconds
    small = functools.partial(load_adding, n_train=64, n_test=32, n_val=32, steps=20)
    monkeypatch.setitem(TASKS, "adding", small)
    train = {"epochs": 4, "batch_size": 32, "rule": "bptt"}
    cfg = FlowConfig.from_dict(
        {"hardware": {"n_rec": 8}, "flow": {"task": "adding"}, "train": train}
    )
    record = tune_and_train(cfg, tmp_path / "run", progress=False, workers=1)
    tune, grid = record["tune"], record["tune"]["grid"]
    assert record["metric"] == "mse" and tune["metric"] == "val_mse" and len(grid) == 7
    best = min(grid, key=lambda point: point["best"])
    assert (tune["lr"], tune["leak_shift"]) == (best["lr"], best["leak_shift"])
    assert all(point["best"] == min(point["val_history"]) for point in grid)


def test_the_summary_of_a_regression_task_reports_the_highest_mse_as_the_worst_seed() -> None:
    def record(task: str, target: str, seed: int, score: float) -> dict:
        metric = "mse" if target == "regression" else "accuracy"
        return {
            "task": task,
            "target": target,
            "metric": metric,
            "rule": "fptt",
            "seed": seed,
            "tuned": False,
            "forced_offset": None,
            "error_shift_offset": None,
            f"test_{metric}": score,
            "swing": 0.01,
            "tune": None,
            "hardware": {"leak_shift": 6},
            "picked_epoch": 2,
        }

    records = [
        record("adding", "regression", seed, mse) for seed, mse in enumerate((0.1, 0.3, 0.2))
    ]
    records += [record("digits", "label", seed, acc) for seed, acc in enumerate((0.9, 0.7, 0.8))]
    adding, digits = summarize_float(records)
    assert adding["metric"] == "mse" and adding["test_mse"] == [0.1, 0.3, 0.2]
    assert adding["worst"] == 0.3 and adding["mean"] == pytest.approx(0.2)
    assert digits["metric"] == "accuracy" and digits["worst"] == 0.7


def test_the_swing_follows_the_tasks_validation_metric() -> None:
    history = [{"val_mse": v} for v in (0.5, 0.3, 0.2, 0.15, 0.12, 0.10, 0.14, 0.13)]
    assert swing(history, "val_mse") == pytest.approx(0.04)  # epochs 5..8: .12, .10, .14, .13


def test_the_bench_refuses_a_sample_count_for_a_task_no_data_file_holds(
    tmp_path: Path, capsys
) -> None:
    args = ["bench", "float-learning", "--tasks", "adding", "--samples", "10", "--seeds", "1"]
    assert main([*args, "--epochs", "1", "--runs", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "real-valued inputs" in line and "without --samples" in line
