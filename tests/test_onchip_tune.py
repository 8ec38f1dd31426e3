"""Tuning the host's rate (``--tune``): the grid around the derived offset, learned in parallel
processes, the best on the validation split, and the run going on from it exactly as a run
started at that offset; a run resumed after some epochs learns what it would have learned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cue_core import cue_core

from neurofptt.cli import main
from neurofptt.errors import ConfigError
from neurofptt.flow import onchip_train
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.onchip import initial_network
from neurofptt.flow.onchip_train import Split, halving_period, learn, train_onchip
from neurofptt.flow.onchip_tune import grid_offsets, tune_offset
from neurofptt.flow.stages import load_flow_task
from neurofptt.onchip import random_network
from neurofptt.quant import QuantizedNetwork
from neurofptt.quant.config import LearningConfig
from neurofptt.tasks.cue import load_cue_task

torch.set_num_threads(1)

HW = cue_core(16, LearningConfig(supervised_steps=5))

CONFIG = """
[hardware]
n_in = 12
n_rec = 16
n_out = 2
leak_shift = 4
out_leak_shift = 2
w_in_shift = 3
w_rec_shift = 2
w_out_shift = 2
lanes = 2
[hardware.learning]
supervised_steps = 5
[train]
epochs = 4
[flow]
task = "cue"
"""


def small_task():
    return load_cue_task(n_train=30, n_test=20, n_val=10, seed=0)


def start(mode: str = "eprop") -> QuantizedNetwork:
    hw = HW.replace(learning=LearningConfig(supervised_steps=5, mode=mode))
    return random_network(hw, seed=1, spread=16)


def weights(net: QuantizedNetwork) -> list[np.ndarray]:
    return [net.w_in, net.w_rec, net.w_out]


def test_the_grid_lowers_the_rate_only() -> None:
    assert grid_offsets(4) == [2, 3, 4, 5, 6]
    assert grid_offsets(1) == [0, 1, 2, 3]
    assert grid_offsets(0, span=1) == [0, 1]


def test_a_resumed_run_learns_what_the_whole_run_learns() -> None:
    """Two epochs, then two more from there: the records and every weight equal four epochs
    learned at once; going on from epochs of another schedule is refused."""
    task = small_task()
    fptt = start("fptt")
    whole = train_onchip(fptt, task, epochs=4, seed=2, shift_offset=1, halve_every=2)
    split = Split.of(task, 0.1, 2)
    first = learn(fptt, split, 2, seed=2, shift_offset=1, halve_every=2)
    resumed = train_onchip(
        fptt, task, epochs=4, seed=2, shift_offset=1, halve_every=2, resume=first
    )
    assert resumed.epochs == whole.epochs and resumed.picked_epoch == whole.picked_epoch
    for a, b in zip(weights(resumed.net), weights(whole.net), strict=True):
        assert np.array_equal(a, b)
    assert resumed.test_accuracy == whole.test_accuracy
    with pytest.raises(ConfigError, match="cannot go on from 2 epochs"):
        train_onchip(fptt, task, epochs=4, seed=2, shift_offset=2, resume=first)
    with pytest.raises(ConfigError, match="cannot go on from 2 epochs"):
        train_onchip(fptt, task, epochs=1, seed=2, shift_offset=1, halve_every=2, resume=first)


def test_tuning_keeps_the_best_point_and_never_scores_the_test_split(monkeypatch) -> None:
    """Each point is scored on the validation split only; the chosen one has the best validation
    accuracy (ties: nearest the derived offset, then the lower rate)."""
    task = small_task()
    x_test = task.test.numpy_spikes()
    real = onchip_train.golden_run
    on_test = []

    def counting(net, x):
        on_test.append(np.shape(x) == x_test.shape and np.array_equal(x, x_test))
        return real(net, x)

    monkeypatch.setattr(onchip_train, "golden_run", counting)
    split = Split.of(task, 0.1, 0)
    tuned = tune_offset(start(), split, 1, epochs=2, seed=0, halve_every=0, workers=1)
    assert not any(on_test) and len(on_test) == 2 * 2 * 4  # train and val, 2 epochs, 4 points
    assert [point["error_shift_offset"] for point in tuned.grid] == [0, 1, 2, 3]
    best = max(point["val_accuracy"] for point in tuned.grid)
    chosen = [p for p in tuned.grid if p["error_shift_offset"] == tuned.offset][0]
    assert chosen["val_accuracy"] == best == tuned.run.val_accuracy
    tied = [p["error_shift_offset"] for p in tuned.grid if p["val_accuracy"] == best]
    assert tuned.offset == min(tied, key=lambda offset: (abs(offset - 1), -offset))
    assert all(len(point["val_history"]) == 2 for point in tuned.grid)


def test_train_tune_records_the_grid_and_goes_on_from_the_best(tmp_path: Path) -> None:
    """``train --engine golden --tune``: the grid learned in worker processes, each point's
    validation accuracy in ``train_onchip.json``, and the run at the chosen offset equal to an
    untuned run started there (the tuning's epochs are not learned twice)."""
    config = tmp_path / "cue.toml"
    config.write_text(CONFIG)
    base = ["train", "--engine", "golden", "--rule", "eprop", "--config", str(config)]
    assert main([*base, "--no-progress", "--tune", "--out", str(tmp_path / "tuned")]) == 0
    record = json.loads((tmp_path / "tuned" / "train_onchip.json").read_text())
    derived = record["rate"]["derived_offset"]
    grid = record["tune"]["grid"]
    assert record["tune"]["epochs"] == 3
    assert [point["error_shift_offset"] for point in grid] == grid_offsets(derived)
    assert all(0 <= point["val_accuracy"] <= 1 for point in grid)
    chosen = [p for p in grid if p["error_shift_offset"] == record["error_shift_offset"]][0]
    assert chosen["val_accuracy"] == max(point["val_accuracy"] for point in grid)
    history = record["history"]
    assert [r["val_accuracy"] for r in history[:3]] == chosen["val_history"]
    assert len(history) == 4
    # the same run without tuning, started at the chosen offset
    cfg = FlowConfig.load(config)
    plain = train_onchip(
        initial_network(cfg, "eprop"),
        load_flow_task(cfg),
        "eprop",
        epochs=4,
        seed=0,
        shift_offset=record["error_shift_offset"],
        halve_every=halving_period(4, cfg.train.onchip_halvings),
    )
    assert plain.epochs == history
    learned = QuantizedNetwork.load(tmp_path / "tuned" / "quantized.npz")
    for a, b in zip(weights(learned), weights(plain.net), strict=True):
        assert np.array_equal(a, b)


def test_flow_tune_goes_with_on_chip_learning(tmp_path: Path, capsys) -> None:
    config = tmp_path / "cue.toml"
    config.write_text(CONFIG)
    args = ["--config", str(config), "--out", str(tmp_path / "x"), "--tune", "--no-progress"]
    assert main(["flow", *args]) == 2
    assert "--tune goes with --learning" in capsys.readouterr().err
