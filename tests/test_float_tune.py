"""``neurofptt train`` on a per-step-label task: the leak derived from the task unless the config
sets it, and ``--tune`` with the float engine (a grid of rates and leaks around the defaults,
picked on the validation split, the run going on from the best point, resumable)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from neurofptt.cli import main
from neurofptt.flow.tune import LEAK_STEPS, LR_FACTORS

torch.set_num_threads(1)

#: a delayed XOR of 14 steps: noise from step 0, the recall window on steps 12 and 13, so the
#: span is 13.5 steps and the derived shifts round(log2(13.5 / 2)) = 3 and round(log2(13.5)) = 4
TASK_OPTIONS = [
    "n_train=24",
    "n_test=8",
    "n_val=8",
    "cue_steps=2",
    "delay=4",
    "recall_steps=2",
]
SMALL = "[hardware]\nn_rec = 12\n{leak}[train]\nepochs = {epochs}\nqat_epochs = 0\nbatch_size = 8\n"


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("task") / "xor.npz"
    options = [arg for option in TASK_OPTIONS for arg in ("--set", option)]
    assert main(["data", "make", "delayed-xor", "--out", str(path), *options]) == 0
    return path


def train(task: Path, folder: Path, config: str, *extra: str) -> dict:
    path = folder.with_suffix(".toml")
    path.write_text(config)
    args = ["train", "--data", str(task), "--rule", "fptt", "--config", str(path)]
    assert main([*args, "--out", str(folder), "--threads", "1", "--no-progress", *extra]) == 0
    return json.loads((folder / "train.json").read_text())


def saved_leak(folder: Path) -> int:
    saved = torch.load(folder / "checkpoint.pt", weights_only=False)
    return saved["meta"]["flow"]["hardware"]["leak_shift"]


def test_a_per_step_label_task_gets_the_derived_leak_and_a_config_overrides_it(
    task_file: Path, tmp_path: Path
) -> None:
    record = train(task_file, tmp_path / "derived", SMALL.format(leak="", epochs=1))
    leak = record["derived"]["leak"]
    assert leak["leak_shift"] == 3 and leak["span_steps"] == 13.5 and leak["tau_steps"] == 8
    assert leak["out_leak_shift"] == 4  # round(log2(13.5))
    assert saved_leak(tmp_path / "derived") == 3
    fixed = SMALL.format(leak="leak_shift = 5\nout_leak_shift = 2\n", epochs=1)
    record = train(task_file, tmp_path / "fixed", fixed)
    assert record["derived"] == {} and saved_leak(tmp_path / "fixed") == 5


def test_tune_picks_on_validation_and_goes_on_from_the_best_point(
    task_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned"
    record = train(task_file, out, SMALL.format(leak="", epochs=4), "--tune")
    tune = record["tune"]
    grid = tune["grid"]
    lrs = [point["lr"] for point in grid[: len(LR_FACTORS)]]
    assert lrs == pytest.approx([3e-3 * f for f in LR_FACTORS])
    assert [point["leak_shift"] for point in grid[len(LR_FACTORS) :]] == [3 + s for s in LEAK_STEPS]
    assert {point["lr"] for point in grid[len(LR_FACTORS) :]} == {grid_best_lr(grid[:5])}
    assert tune["epochs"] == 3 and tune["metric"] == "val_accuracy"
    best = max(point["best"] for point in grid)
    chosen = [p for p in grid if (p["lr"], p["leak_shift"]) == (tune["lr"], tune["leak_shift"])]
    assert chosen[0]["best"] == best
    # the run is the chosen point's: its epochs (validation scores) and its settings
    run = [epoch["val_accuracy"] for epoch in record["history"]]
    assert len(run) == 4 and run[:3] == chosen[0]["val_history"]
    assert saved_leak(out) == tune["leak_shift"]
    for point in grid:  # the grid never scores the test split
        lines = (Path(point["folder"]) / "metrics.jsonl").read_text().splitlines()
        assert all(json.loads(line)["test_accuracy"] is None for line in lines)
    again = train(task_file, out, SMALL.format(leak="", epochs=4), "--tune", "--resume")
    assert again["tune"] == tune and again["test_accuracy"] == record["test_accuracy"]


def grid_best_lr(points: list[dict]) -> float:
    """The rate of the best point of the rate round, ties to factor 1, then the lower rate."""
    return max(points, key=lambda p: (p["best"], -abs(math.log2(p["lr"] / 3e-3)), -p["lr"]))["lr"]
