"""``report.md`` and ``metrics.json`` show what the network does: the golden model's confusion
matrix on the test set and labelled spike rasters of a correctly and an incorrectly classified
sample.  The run folder is a float network trained for one epoch and quantized, with the RTL and
synthesis records written by hand (the report only reads them), built once for the module."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofptt.flow import report
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.report import RASTER_PNG, write_report
from neurofptt.flow.stages import load_flow_task, stage_generate, stage_quantize, stage_train
from neurofptt.io import read_json, write_json
from neurofptt.quant import QuantizedNetwork, golden_run
from neurofptt.tasks.base import SequenceDataset, TaskData

torch.set_num_threads(1)

SMALL = """
[hardware]
n_in = 32
n_rec = 16
n_out = 10

[train]
epochs = 1
batch_size = 64
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    (out / "small.toml").write_text(SMALL)
    cfg = FlowConfig.load(out / "small.toml")
    stage_train(cfg, out, progress=False)
    stage_quantize(out)
    stage_generate(out)
    write_json(
        out / "verify.json",
        {
            "golden_accuracy_on_rtl_samples": 0.5,
            "rtl_accuracy": 0.5,
            "rtl_samples": 2,
            "rtl_neuron_steps": 2 * 8 * (16 + 10),
            "rtl_mismatches": 0,
            "rtl_steps": 8,
            "cycles_per_step": 40.0,
            "seconds": 1.0,
            "simulator": "verilator",
            "rtl_bench": "harness",
        },
    )
    write_json(out / "synth.json", {"fpga": None, "reason": "not run in this test"})
    write_report(out)
    return out


@pytest.fixture
def copy(run_folder: Path, tmp_path: Path) -> Path:
    """A copy of the run folder that a test may rewrite (its records still name the module
    folder's checkpoint and network, which nothing here changes)."""
    return Path(shutil.copytree(run_folder, tmp_path / "run"))


def golden(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels and golden predictions on the test set, computed here independently."""
    task = load_flow_task(FlowConfig.load(out / "small.toml"))
    net = QuantizedNetwork.load(out / "quantized.npz")
    return task.test.y.numpy(), golden_run(net, task.test.numpy_spikes()).predictions


def table(text: str) -> np.ndarray:
    """The confusion matrix of ``report.md``: the rows under ``| true \\ predicted |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| true \\ predicted"))
    n = len(lines[start].split("|")) - 5  # the class columns (plus label, total, recall)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        assert int(cells[n + 1]) == sum(int(c) for c in cells[1 : n + 1])  # the total column
        rows.append([int(c) for c in cells[1 : n + 1]])
    return np.array(rows)


SAMPLE = re.compile(r"Test sample (\d+): label (\d+), golden model predicts (\d+) \((\w+)\)\.")


def examples(text: str) -> dict[str, tuple[int, int, int, str]]:
    """Each raster subsection's sample: index, label, prediction and stated verdict."""
    found = {}
    for kind in ("correct", "incorrect"):
        heading = f"### {kind.capitalize()}ly classified"
        section = text.split(heading, 1)[1].split("###")[0].split("\n## ")[0]
        match = SAMPLE.search(section)
        if match:
            index, label, pred, verdict = match.groups()
            found[kind] = (int(index), int(label), int(pred), verdict)
    return found


def test_the_simulator_and_the_bench_are_named(run_folder: Path, copy: Path) -> None:
    text = (run_folder / "report.md").read_text()
    assert "| RTL (Verilator + cocotb) | 0.5" in text
    assert "- simulated under Verilator + cocotb, the events streamed by the Verilog run" in text
    assert json.loads((run_folder / "metrics.json").read_text())["rtl_simulator"] == "verilator"
    record = json.loads((copy / "verify.json").read_text())
    for key in ("simulator", "rtl_bench"):  # a record from before either was chosen
        del record[key]
    write_json(copy / "verify.json", record)
    write_report(copy)
    text = (copy / "report.md").read_text()
    assert "| RTL (Icarus + cocotb) | 0.5" in text
    assert "driven and watched by the cocotb bench" in text


def test_confusion_matrix_matches_the_golden_model(run_folder: Path) -> None:
    labels, predictions = golden(run_folder)
    expected = np.zeros((10, 10), np.int64)
    for y, p in zip(labels, predictions, strict=True):
        expected[y, p] += 1
    shown = table((run_folder / "report.md").read_text())
    assert shown.sum() == len(labels) == read_json(run_folder / "quantize.json")["test_samples"]
    assert np.array_equal(shown, expected)
    metrics = read_json(run_folder / "metrics.json")
    assert np.array_equal(np.array(metrics["confusion_matrix"]), expected)
    assert np.trace(expected) / len(labels) == pytest.approx(metrics["golden_accuracy"])
    assert (run_folder / "confusion_matrix.png").read_bytes().startswith(PNG)


def test_rasters_are_labelled_correct_and_incorrect(run_folder: Path) -> None:
    labels, predictions = golden(run_folder)
    assert (labels == predictions).any() and (labels != predictions).any()  # both kinds exist
    text = (run_folder / "report.md").read_text()
    shown = examples(text)
    assert set(shown) == {"correct", "incorrect"}
    for kind, (index, label, pred, verdict) in shown.items():
        assert (label, pred) == (labels[index], predictions[index])
        assert verdict == kind and (label == pred) == (kind == "correct")
        assert f"]({RASTER_PNG[kind]})" in text
        assert (run_folder / RASTER_PNG[kind]).read_bytes().startswith(PNG)
    metrics = read_json(run_folder / "metrics.json")
    assert metrics["example_samples"] == {k: v[0] for k, v in shown.items()}
    # the membrane figure names its sample and whether the golden model gets it right
    verdict = "correct" if labels[0] == predictions[0] else "incorrect"
    assert (
        f"test sample 0: label {labels[0]}, golden model predicts {predictions[0]} ({verdict})"
        in text
    )


@pytest.mark.parametrize("case", ["all correct", "none correct"])
def test_a_missing_kind_of_sample_is_stated(copy: Path, monkeypatch, case: str) -> None:
    """With the test labels set to the golden predictions (or shifted away from them) there is
    no incorrectly (correctly) classified sample: the report says so and shows no stale raster."""
    _, predictions = golden(copy)
    labels = predictions if case == "all correct" else (predictions + 1) % 10
    real = report.load_flow_task

    def relabelled(cfg: FlowConfig) -> TaskData:
        task = real(cfg)
        test = SequenceDataset(task.test.x, torch.from_numpy(np.asarray(labels, np.int64)))
        return dataclasses.replace(task, test=test)

    monkeypatch.setattr(report, "load_flow_task", relabelled)
    metrics = write_report(copy)
    text = (copy / "report.md").read_text()
    missing, present = (
        ("incorrect", "correct") if case == "all correct" else ("correct", "incorrect")
    )
    sentence = "every test sample" if case == "all correct" else "no test sample"
    assert f"The golden model classifies {sentence} correctly" in text
    assert set(examples(text)) == {present}
    assert not (copy / RASTER_PNG[missing]).exists() and (copy / RASTER_PNG[present]).exists()
    assert metrics["example_samples"][missing] is None
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == len(labels)
    assert (np.trace(matrix) == len(labels)) == (case == "all correct")


def test_validation_history_is_shown_when_recorded(copy: Path) -> None:
    """A float trainer that picks its epoch on a validation split records ``picked_epoch`` and a
    per-epoch ``val_accuracy``; the report names the epoch and plots the curve.  Records
    without them (a run without a validation split) report as before."""
    train = read_json(copy / "train.json")
    bare = {k: v for k, v in train.items() if k != "picked_epoch"}
    bare["history"] = [
        {k: v for k, v in h.items() if k != "val_accuracy"} for h in train["history"]
    ]
    write_json(copy / "train.json", bare)
    metrics = write_report(copy)
    assert "Float training kept epoch" not in (copy / "report.md").read_text()
    assert "picked_epoch" not in metrics
    first = bare["history"][0]
    train["history"] = [
        {**first, "epoch": 1, "val_accuracy": 0.25},
        {**first, "epoch": 2, "val_accuracy": 0.75},
        {**first, "epoch": 3, "val_accuracy": 0.5},
    ]
    train["picked_epoch"] = 2
    write_json(copy / "train.json", train)
    (copy / "training_curve.png").unlink()
    metrics = write_report(copy)
    text = (copy / "report.md").read_text()
    assert "Float training kept epoch **2** of 3 (validation accuracy 0.7500)" in text
    assert "the picked epoch 2" in text
    assert metrics["picked_epoch"] == 2
    assert (copy / "training_curve.png").read_bytes().startswith(PNG)
    assert json.loads((copy / "metrics.json").read_text()) == metrics


def per_step_labels(copy: Path, monkeypatch, y: np.ndarray) -> dict:
    """Write the report with the test set labelled per step by ``y`` ``(N, T)``."""
    real = report.load_flow_task

    def relabelled(cfg: FlowConfig) -> TaskData:
        task = real(cfg)
        test = SequenceDataset(task.test.x, torch.from_numpy(y))
        return dataclasses.replace(task, train=test, test=test, target="label_per_step")

    monkeypatch.setattr(report, "load_flow_task", relabelled)
    return write_report(copy)


def test_labels_in_a_recall_window_score_each_sample_over_the_window(copy, monkeypatch) -> None:
    """Labels only on the last 3 steps (``-1`` before): each sample is one classification,
    predicted by the readout summed over its window (computed here from the golden trace)."""
    task = load_flow_task(FlowConfig.load(copy / "small.toml"))
    trace = golden_run(QuantizedNetwork.load(copy / "quantized.npz"), task.test.numpy_spikes())
    labels = task.test.y.numpy()
    y = np.full(trace.readout.shape[:2], -1, np.int64)
    y[:, -3:] = labels[:, None]
    metrics = per_step_labels(copy, monkeypatch, y)
    predicted = trace.readout[:, -3:].sum(1).argmax(-1)
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (labels, predicted), 1)
    assert np.array_equal(np.array(metrics["confusion_matrix"]), expected)
    text = (copy / "report.md").read_text()
    assert np.array_equal(table(text), expected)
    for kind, (index, label, pred, _) in examples(text).items():
        assert (label, pred) == (labels[index], predicted[index]), kind


def test_labels_that_change_within_a_sample_are_scored_per_step(copy, monkeypatch) -> None:
    """Every step labelled, the class changing within each sample: each step is a unit of the
    confusion matrix, and no sample is shown as one classification."""
    task = load_flow_task(FlowConfig.load(copy / "small.toml"))
    n, steps = task.test.x.shape[:2]
    y = (np.arange(steps)[None, :] + np.arange(n)[:, None]) % 10
    metrics = per_step_labels(copy, monkeypatch, y.astype(np.int64))
    trace = golden_run(QuantizedNetwork.load(copy / "quantized.npz"), task.test.numpy_spikes())
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (y.ravel(), trace.readout.argmax(-1).ravel()), 1)
    assert np.array_equal(np.array(metrics["confusion_matrix"]), expected)
    assert expected.sum() == n * steps
    text = (copy / "report.md").read_text()
    assert f"on all {n * steps} labelled test steps" in text
    assert "no sample is one classification" in text and "### Correctly" not in text
    assert not any((copy / png).exists() for png in RASTER_PNG.values())
    assert metrics["example_samples"] == {}
