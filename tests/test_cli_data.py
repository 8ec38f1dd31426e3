"""Bring your own data and your own network, through the command line: a recording in the SHD
HDF5 layout converted to a data file, the whole flow and the on-chip learning flow on it (RTL
checked), and the flow's network out to NIR and back in, verified on the same data; a file
labelled per step in a recall window through the flow, on-chip learning and the RTL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from simulators import needs_icarus

from neurofptt.cli import main
from neurofptt.quant.golden import golden_run
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.tasks.cue import cue_sequences

h5py = pytest.importorskip("h5py", reason="h5py (pip install 'neurofptt[data]')")
pytest.importorskip("nir", reason="nir (pip install 'neurofptt[nir]')")

# a small core, so the flow and the RTL run in seconds; n_in and n_out come from the data
SMALL = """
[hardware]
n_rec = 16
lanes = 2

[train]
seed = 1
"""


def write_shd(path: Path, n: int, seed: int) -> None:
    """A recording in the Spiking Heidelberg Digits layout (ragged ``spikes/times`` in seconds and
    ``spikes/units`` among 700, ``labels``): class 0 fires in the lower units early, class 1 in
    the upper units late, with background spikes everywhere."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    times, units = [], []
    for label in labels:
        lo, early = (0, 0.0) if label == 0 else (350, 0.1)
        k = 60
        t = np.concatenate([early + rng.uniform(0, 0.1, k), rng.uniform(0, 0.2, 10)])
        u = np.concatenate([lo + rng.integers(0, 350, k), rng.integers(0, 700, 10)])
        order = np.argsort(t)
        times.append(t[order].astype(np.float16))
        units.append(u[order].astype(np.uint16))
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            t[i], u[i] = times[i], units[i]
        f.create_dataset("labels", data=labels.astype(np.uint8))


def run(*args: str) -> int:
    return main([*args, "--no-progress"] if args[0] in ("flow", "train") else list(args))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The SHD-layout recording converted: 10 ms steps, 700 units pooled to 8 channels, a
    seeded quarter held out as the test split."""
    folder = tmp_path_factory.mktemp("data")
    write_shd(folder / "train.h5", 96, seed=0)
    out = folder / "shd.npz"
    args = ["data", "convert", str(folder / "train.h5"), "--out", str(out), "--dt", "0.01"]
    assert main([*args, "--channels", "8", "--test-fraction", "0.25"]) == 0
    return out


def test_data_info_summarises_the_converted_file(data: Path, capsys) -> None:
    assert main(["data", "info", str(data)]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert (info["n_channels"], info["n_out"], info["target"]) == (8, 2, "label")
    assert info["splits"]["train"]["samples"] + info["splits"]["test"]["samples"] == 96
    assert str(data) in captured.err


@pytest.mark.slow
@needs_icarus
def test_flow_runs_on_a_data_file_and_goes_to_nir_and_back(data: Path, tmp_path: Path) -> None:
    """``flow --data``: float training, the golden model, the RTL with 0 mismatches and
    synthesis on the file's task; its network exported to NIR and quantized back from it holds
    the same integers, and ``verify --data`` checks that core on the file's samples."""
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "flow"
    assert (
        run("flow", "--data", str(data), "--quick", "--config", str(config), "--out", str(out)) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == str(data)
    assert metrics["rtl_mismatches"] == 0 and metrics["rtl_samples"] == 16
    assert metrics["float_accuracy"] > 0.8 and metrics["golden_accuracy"] > 0.8  # chance 0.5
    assert "fpga" in metrics

    assert main(["export", "--format", "nir", "--out", str(out)]) == 0
    back = tmp_path / "back"
    args = ["quantize", "--nir", str(out / "network.nir"), "--out", str(back)]
    assert main([*args, "--config", str(config), "--data", str(data)]) == 0
    mine, theirs = (
        QuantizedNetwork.load(out / "quantized.npz"),
        QuantizedNetwork.load(back / "quantized.npz"),
    )
    for name in ("w_in", "w_rec", "w_out"):
        assert np.array_equal(getattr(mine, name), getattr(theirs, name)), name
    assert json.loads((back / "quantize.json").read_text())["golden_accuracy"] == pytest.approx(
        metrics["golden_accuracy"]
    )
    assert main(["generate", "--out", str(back)]) == 0
    assert main(["verify", "--out", str(back), "--data", str(data), "--samples", "8"]) == 0


@pytest.mark.slow
@needs_icarus
def test_learning_flow_learns_a_data_file_on_chip(data: Path, tmp_path: Path) -> None:
    """``flow --learning eprop --data``: the file's task learned in float, on chip in the
    golden model, and in the RTL with every weight read back after every update."""
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "learn"
    args = ["flow", "--learning", "eprop", "--data", str(data), "--quick", "--config"]
    assert run(*args, str(config), "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rtl_weight_mismatches"] == 0 and metrics["rtl_synaptic_updates"] > 0
    assert metrics["onchip_accuracy"] > 0.6  # chance 0.5


def test_a_data_file_the_config_contradicts_is_one_line(data: Path, tmp_path: Path, capsys):
    config = tmp_path / "wrong.toml"
    config.write_text("[hardware]\nn_in = 5\n")
    assert run("train", "--data", str(data), "--config", str(config), "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_in" in err[0] and "8" in err[0]


RECALL = 5  # the labelled steps at the end of each sample of the recall-window file


@pytest.fixture(scope="module")
def recall(tmp_path_factory) -> Path:
    """A delayed-cue recording labelled per step: ``-1`` during the cue and the delay, the cued
    class over the last RECALL steps (the recall window)."""

    def part(n: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        d = cue_sequences(n, gen, channels=4, cue_steps=5, delay=10, recall_steps=RECALL)
        y = np.full(d.x.shape[:2], -1, np.int64)
        y[:, -RECALL:] = d.y.numpy()[:, None]
        return d.x.numpy().astype(np.uint8), y

    gen = torch.Generator().manual_seed(0)
    (x_train, y_train), (x_test, y_test) = part(160, gen), part(48, gen)
    path = tmp_path_factory.mktemp("recall") / "recall.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.mark.slow
@needs_icarus
def test_flow_scores_a_recall_window_over_the_window(recall: Path, tmp_path: Path) -> None:
    """``flow --data`` on per-step labels with gaps: trained, quantized and run in the RTL with 0
    mismatches; the golden accuracy is that of the readout summed over each sample's window,
    recomputed here from the golden model."""
    config = tmp_path / "bptt.toml"
    config.write_text(SMALL + 'rule = "bptt"\n')
    out = tmp_path / "flow"
    assert (
        run("flow", "--data", str(recall), "--quick", "--config", str(config), "--out", str(out))
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rtl_mismatches"] == 0 and metrics["rtl_samples"] == 16
    data = np.load(recall)
    trace = golden_run(QuantizedNetwork.load(out / "quantized.npz"), data["x_test"])
    predicted = trace.readout[:, -RECALL:].sum(1).argmax(-1)
    labels = data["y_test"][:, -1]
    assert metrics["golden_accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert metrics["rtl_accuracy"] == pytest.approx(np.mean(predicted[:16] == labels[:16]))
    assert metrics["float_accuracy"] > 0.7 and metrics["golden_accuracy"] > 0.7  # chance 0.5
    assert np.array(metrics["confusion_matrix"]).sum() == len(labels)


@pytest.mark.slow
@needs_icarus
def test_on_chip_learning_learns_a_recall_window(recall: Path, tmp_path: Path) -> None:
    """``train --engine golden`` learns the recall-window file on chip (the error exists only in
    the window), and ``verify --learn`` checks every weight after every update in the RTL."""
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "onchip"
    args = ["train", "--engine", "golden", "--rule", "eprop", "--data", str(recall)]
    assert run(*args, "--config", str(config), "--out", str(out)) == 0
    record = json.loads((out / "train_onchip.json").read_text())
    assert record["onchip_accuracy"] > 0.8  # chance 0.5
    args = ["verify", "--learn", "--out", str(out), "--data", str(recall), "--samples", "4"]
    assert main(args) == 0
    learned = json.loads((out / "verify_learning.json").read_text())
    assert learned["rtl_mismatches"] == 0 and learned["rtl_synaptic_updates"] > 0
