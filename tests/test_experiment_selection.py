"""Experiments report validation-selected numbers: the test score of the epoch with the best
validation score, scored once; a task's own validation split is used where it has one, and
``val_fraction = 0`` reports the last epoch (no selection).

The validation scores are scripted (``evaluate`` is replaced for every split but the test set),
so which epoch is picked does not depend on how training happens to go.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neurofptt.cli import main
from neurofptt.errors import ConfigError
from neurofptt.flow.config import FlowSettings
from neurofptt.learning import trainer
from neurofptt.learning.trainer import load_checkpoint, picked_weights
from neurofptt.studies import experiment
from neurofptt.studies.experiment import (
    CHECKPOINT,
    RECORD,
    ExperimentConfig,
    ExperimentSettings,
    build_experiment_model,
    run_experiment,
)
from neurofptt.studies.sweep import load_sweep, selected_epoch, summary_table
from neurofptt.tasks import TaskData

REAL_EVALUATE = trainer.evaluate
TRAIN = {
    "rule": "bptt",
    "model": "gru",
    "optimizer": "adam",
    "lr": 1e-2,
    "epochs": 3,
    "batch_size": 16,
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "qat_epochs": 0,
}
#: regression: the lowest validation MSE is best
TSFD = {"experiment": {"task": "tsfd", "hidden": 8}, "task": {"n_sequences": 60, "length": 10}}
#: a label task: the highest validation accuracy is best; ``n_val = 0``: no split of its own
CUE = {
    "experiment": {"task": "cue", "hidden": 8},
    "task": {"n_train": 48, "n_test": 24, "n_val": 0, "delay": 2},
}


def config(base: dict[str, Any], **experiment_options: Any) -> ExperimentConfig:
    tables = {**base, "experiment": {**base["experiment"], **experiment_options}, "train": TRAIN}
    return ExperimentConfig.from_dict(tables)


class Scripted:
    """``evaluate`` with scripted validation scores: the test set is scored for real (and
    counted), every other split returns the next score, and the weights it was asked to score
    are kept, so the test can check which epoch's network the reported number belongs to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
        self.script = list(scores)
        self.tests: list[float] = []
        self.validated: list[int] = []  # the size of the split each validation scored
        self.weights: list[dict[str, torch.Tensor]] = []
        self.task: TaskData | None = None
        real_load = experiment.load_task

        def load_task(name: str, **options: Any) -> TaskData:
            self.task = real_load(name, **options)
            return self.task

        monkeypatch.setattr(experiment, "load_task", load_task)
        monkeypatch.setattr(trainer, "evaluate", self.evaluate)

    def evaluate(self, model, data, target="label", batch_size=256) -> float:
        assert self.task is not None
        if data is self.task.test:
            self.tests.append(REAL_EVALUATE(model, data, target, batch_size))
            return self.tests[-1]
        self.validated.append(len(data))
        self.weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return self.script.pop(0)


@pytest.mark.parametrize(
    ("base", "scores", "picked", "metric"),
    [
        (TSFD, [0.3, 0.1, 0.2], 2, "mse"),  # lowest MSE; picking the highest would give 1
        (CUE, [0.75, 0.5, 0.625], 1, "accuracy"),  # highest accuracy; the lowest would give 2
    ],
)
def test_metric_is_the_test_score_of_the_best_validation_epoch(
    tmp_path: Path, monkeypatch, base: dict, scores: list[float], picked: int, metric: str
) -> None:
    scripted = Scripted(monkeypatch, scores)
    cfg = config(base)
    record = run_experiment(cfg, tmp_path)
    assert scripted.task is not None
    assert len(scripted.tests) == 1, "the test set is scored once, for the picked epoch"
    assert record["picked_epoch"] == picked and record[f"val_{metric}"] == scores[picked - 1]
    assert record["metric_name"] == f"test_{metric}"
    assert record["metric"] == record[f"test_{metric}"] == scripted.tests[0]
    # the number belongs to the picked epoch's network: score those weights again
    model = build_experiment_model(cfg, scripted.task)
    model.load_state_dict(scripted.weights[picked - 1])
    assert record["metric"] == pytest.approx(
        REAL_EVALUATE(model, scripted.task.test, scripted.task.target)
    )
    saved = load_checkpoint(tmp_path / CHECKPOINT)
    for key, value in scripted.weights[picked - 1].items():
        assert torch.equal(picked_weights(saved)[key], value), key
    # the per-epoch records: a validation score every epoch, a test score for the picked one
    assert [h[f"val_{metric}"] for h in record["history"]] == scores
    assert [h[f"test_{metric}"] is not None for h in record["history"]] == [
        epoch == picked for epoch in (1, 2, 3)
    ]
    n_train = len(scripted.task.train)
    assert record["val_split"] == "held out" and record["val_samples"] == round(0.1 * n_train)
    assert record["train_samples"] + record["val_samples"] == n_train
    assert scripted.validated == [record["val_samples"]] * 3
    assert "best_metric" not in record
    assert json.loads((tmp_path / RECORD).read_text()) == json.loads(json.dumps(record))


def test_a_task_with_its_own_validation_split_uses_it(tmp_path: Path, monkeypatch) -> None:
    """The cue task brings ``n_val`` validation sequences: they pick the epoch, and no training
    sample is held out."""
    scripted = Scripted(monkeypatch, [0.5, 0.625, 0.5])
    tables = {**CUE, "task": {**CUE["task"], "n_val": 16}}
    record = run_experiment(config(tables, val_fraction=0.25), tmp_path)
    assert scripted.task is not None and scripted.task.val is not None
    assert record["val_split"] == "task" and record["val_samples"] == 16
    assert record["train_samples"] == len(scripted.task.train) == 48
    assert scripted.validated == [16, 16, 16]
    assert record["picked_epoch"] == 2 and record["val_accuracy"] == 0.625
    assert record["metric"] == scripted.tests[0] and len(scripted.tests) == 1


def test_val_fraction_zero_reports_the_last_epoch(tmp_path: Path, monkeypatch) -> None:
    """``val_fraction = 0`` on a task without a split of its own is *no selection*: every epoch
    is scored on the test set and the last one is reported, whatever the scores."""
    scripted = Scripted(monkeypatch, [])
    record = run_experiment(config(TSFD, val_fraction=0.0), tmp_path)
    assert scripted.validated == [] and len(scripted.tests) == 3
    assert record["picked_epoch"] == 3 and record["val_mse"] is None
    assert record["val_split"] == "none" and record["val_samples"] == 0
    assert record["metric"] == record["history"][-1]["test_mse"] == scripted.tests[-1]
    assert record["train_samples"] == len(scripted.task.train)


def test_val_fraction_is_checked_like_the_flows() -> None:
    assert ExperimentSettings().val_fraction == FlowSettings().val_fraction == 0.1
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"experiment\.val_fraction = .* must be in \[0, 1\)"):
            ExperimentSettings(val_fraction=bad)
    with pytest.raises(ConfigError, match="experiment.val_fraction must be"):
        ExperimentConfig.from_dict({"experiment": {"val_fraction": "0.1"}})
    assert (
        ExperimentConfig.from_dict({"experiment": {"val_fraction": 0}}).experiment.val_fraction == 0
    )


def test_sweep_records_and_summary_show_the_selection(tmp_path: Path) -> None:
    """An experiment sweep may grid over ``experiment.val_fraction``; its summary shows each
    run's selected test metric, the validation score and the epoch it was picked at, and for
    ``val_fraction = 0`` no validation score (the last epoch)."""
    path = tmp_path / "s.toml"
    path.write_text(
        "[base.experiment]\ntask = 'tsfd'\nhidden = 4\n"
        "[base.task]\nn_sequences = 40\nlength = 8\n"
        "[base.train]\nrule = 'bptt'\nmodel = 'rnn'\nepochs = 2\nqat_epochs = 0\n"
        "[grid]\n'experiment.val_fraction' = [0.0, 0.25]\n"
    )
    sweep = load_sweep(path)
    records = [
        {
            "id": "a",
            "overrides": {"experiment.val_fraction": 0.0},
            "metric": 0.5,
            "metric_name": "test_mse",
            "history": [{"epoch": 1, "test_mse": 0.7}, {"epoch": 2, "test_mse": 0.5}],
            "status": "ok",
        },
        {
            "id": "b",
            "overrides": {"experiment.val_fraction": 0.25},
            "metric": 0.6,
            "metric_name": "test_mse",
            "history": [
                {"epoch": 1, "val_mse": 0.4, "test_mse": 0.6},
                {"epoch": 2, "val_mse": 0.45, "test_mse": None},
            ],
            "status": "ok",
        },
        {
            "id": "c",
            "overrides": {"experiment.val_fraction": 0.5},
            "metric": None,
            "metric_name": None,
            "status": "error",
            "error": "x",
        },
    ]
    assert [selected_epoch(r) for r in records] == [(2, None), (1, 0.4), (None, None)]
    table = summary_table(records, sweep.keys).splitlines()
    assert table[0].split() == [
        "id", "experiment.val_fraction", "test_mse", "val_mse", "picked", "epoch", "status"
    ]  # fmt: skip
    assert table[2].split() == ["a", "0.0", "0.5000", "-", "2", "ok"]
    assert table[3].split() == ["b", "0.25", "0.6000", "0.4000", "1", "ok"]
    assert table[4].split() == ["c", "0.5", "-", "-", "-", "error"]
    assert "picked on the validation split" in table[5]


def test_an_experiment_on_a_data_file(tmp_path: Path) -> None:
    """``[experiment] task`` may name a data file (no ``[task]`` options then): a sweep of
    experiments trains on the file's samples, and a loader option for it is one clear error."""
    data = tmp_path / "d.npz"
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 6, 3, generator=gen) < 0.3).numpy().astype("uint8")
    y = (x[:, :, 0].sum(1) > x[:, :, 1].sum(1)).astype("int64")
    np.savez(data, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    base = f"[base.experiment]\ntask = '{data}'\nhidden = 4\n"
    train = "[base.train]\nrule = 'bptt'\nmodel = 'rnn'\nepochs = 2\nqat_epochs = 0\n"
    path = tmp_path / "s.toml"
    path.write_text(base + train + "[grid]\n'train.seed' = [0, 1]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "sweep")]) == 0
    records = [json.loads(line) for line in (tmp_path / "sweep" / "results.jsonl").open()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    for record in records:
        run = json.loads((tmp_path / "sweep" / "runs" / record["id"] / RECORD).read_text())
        assert run["task"] == str(data) and run["test_samples"] == 10
        assert run["threads"] == record["threads"] >= 1
    with pytest.raises(ConfigError, match="is a data file, which takes no"):
        ExperimentConfig.from_dict({"experiment": {"task": str(data)}, "task": {"n": 3}})
