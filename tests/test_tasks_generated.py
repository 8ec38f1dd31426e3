"""The generated long tasks: cue accumulation (full and binned), the delayed XOR and the adding
problem.

Layouts are checked exactly where they can be: at ``rate = 1`` and no noise every cue window is
solid, so the cue sides can be read back from the spikes and the label recomputed.  Spike rates
and class balance are checked with bounds of six standard deviations of the binomial count (a
failure by chance has a probability below 1e-8, at any seed); the seeds are fixed besides.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofptt.cli import main
from neurofptt.errors import ConfigError
from neurofptt.learning import TrainConfig, build_model
from neurofptt.learning.trainer import fit
from neurofptt.tasks import TASKS, load_data_file, load_task, make_command, read_data_file
from neurofptt.tasks.accumulation import (
    SHORT_BIN,
    accumulation_steps,
    binned_rate,
    cue_onsets,
    load_cue_accumulation,
)
from neurofptt.tasks.adding import load_adding
from neurofptt.tasks.make import loader_options, task_spike_data
from neurofptt.tasks.populations import CUE_0, CUE_1, N_POPULATIONS, NOISE, RECALL
from neurofptt.tasks.raster import plot_raster
from neurofptt.tasks.xor import load_delayed_xor, xor_steps

NEW_TASKS = ("cue-accumulation", "cue-accumulation-short", "delayed-xor", "adding")
#: a small cue-accumulation layout for exact checks
SMALL = {
    "channels": 3,
    "n_cues": 5,
    "cue_steps": 4,
    "gap_steps": 2,
    "delay": 7,
    "recall_steps": 3,
}
SIGMAS = 6.0


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores are shared; small networks gain nothing from more
    yield
    torch.set_num_threads(threads)


def populations(x: torch.Tensor, channels: int) -> np.ndarray:
    """``(N, T, 4 * channels)`` spikes as ``(N, T, 4, channels)`` booleans."""
    n, steps, _ = x.shape
    return x.numpy().astype(bool).reshape(n, steps, N_POPULATIONS, channels)


def assert_rate(spikes: np.ndarray, p: float) -> None:
    """The fraction of 1s in ``spikes`` is ``p`` within six binomial standard deviations."""
    n = spikes.size
    bound = SIGMAS * math.sqrt(p * (1 - p) / n) + 1e-12
    assert abs(spikes.mean() - p) <= bound, f"rate {spikes.mean():.5f} vs {p} (+-{bound:.5f})"


def assert_balanced(labels: np.ndarray) -> None:
    assert_rate(np.asarray(labels) == 1, 0.5)


# -- registration -------------------------------------------------------------------------------
def test_the_long_tasks_are_registered_and_load_by_name() -> None:
    assert set(NEW_TASKS) <= set(TASKS)
    sizes = {"n_train": 4, "n_test": 2, "n_val": 2}
    expected = {
        "cue-accumulation": (2250, 40, "label_per_step", 2),
        "cue-accumulation-short": (225, 40, "label_per_step", 2),
        "delayed-xor": (110, 32, "label_per_step", 2),
        "adding": (200, 2, "regression", 1),
    }
    for name, (steps, n_in, target, n_out) in expected.items():
        task = load_task(name, **sizes)
        assert task.name == name and task.target == target and task.n_out == n_out
        assert (len(task.train), len(task.test), len(task.val)) == (4, 2, 2)
        for split in (task.train, task.test, task.val):
            assert split.x.dtype == torch.float32 and tuple(split.x.shape[1:]) == (steps, n_in)


def test_the_defaults_are_the_papers_trial_and_its_binned_copy() -> None:
    assert accumulation_steps(7, 100, 50, 1050, 150) == 2250
    full = load_task("cue-accumulation", n_train=2, n_test=1, n_val=0)
    short = load_task("cue-accumulation-short", n_train=2, n_test=1, n_val=0)
    assert full.train.steps == SHORT_BIN * short.train.steps
    # the same seed draws the same cue sides, so the same labels
    assert torch.equal(full.train.y[:, -1], short.train.y[:, -1])
    assert binned_rate(0.04, 10) == pytest.approx(1 - 0.96**10)
    # pooling full-resolution noise into bins of ten keeps the binned rate
    full_noise = populations(load_cue_accumulation(n_train=100, n_test=1).train.x, 10)[
        ..., NOISE, :
    ]
    pooled = full_noise.reshape(100, 225, SHORT_BIN, 10).any(axis=2)
    assert_rate(pooled, binned_rate(0.01, SHORT_BIN))


# -- cue accumulation ---------------------------------------------------------------------------
def test_cue_accumulation_layout_and_labels_at_rate_one() -> None:
    task = load_cue_accumulation(
        n_train=300, n_test=10, n_val=0, rate=1.0, noise_rate=0.0, p_favoured=0.5, **SMALL
    )
    steps = accumulation_steps(5, 4, 2, 7, 3)
    x, y = populations(task.train.x, 3), task.train.y.numpy()
    assert x.shape == (300, steps, 4, 3) and y.shape == (300, steps)
    assert not x[..., NOISE, :].any()
    recall = np.zeros(steps, bool)
    recall[-3:] = True
    assert x[:, recall, RECALL].all() and not x[:, ~recall, RECALL].any()
    # only the recall window is labelled, with one label per trial
    assert (y[:, ~recall] == -1).all() and (y[:, recall] == y[:, -1:]).all()
    cue = np.zeros(steps, bool)
    for onset in cue_onsets(5, 4, 2):
        cue[onset : onset + 4] = True
        window = x[:, onset : onset + 4, [CUE_0, CUE_1]]  # (N, 4, 2, channels)
        # each cue lights exactly one side's population, all of it for the whole cue
        assert (window.all(axis=(1, 3)) == window.any(axis=(1, 3))).all()
        assert (window.any(axis=(1, 3)).sum(axis=1) == 1).all()
    assert not x[:, ~cue][..., [CUE_0, CUE_1], :].any()
    right = x[:, cue, CUE_1].any(axis=2).sum(axis=1) // 4
    assert np.array_equal(y[:, -1], (right > 5 - right).astype(np.int64))
    assert len(set(right.tolist())) == 6  # 0..5 right cues all occur with fair coins


def test_p_favoured_one_puts_every_cue_on_the_answers_side() -> None:
    task = load_cue_accumulation(
        n_train=50, n_test=5, rate=1.0, noise_rate=0.0, p_favoured=1.0, **SMALL
    )
    x, y = populations(task.train.x, 3), task.train.y[:, -1].numpy()
    on = np.concatenate([np.arange(o, o + 4) for o in cue_onsets(5, 4, 2)])
    assert (x[:, on, CUE_1].all(axis=(1, 2)) == (y == 1)).all()
    assert (x[:, on, CUE_0].all(axis=(1, 2)) == (y == 0)).all()


def test_cue_accumulation_classes_are_balanced() -> None:
    options = {**SMALL, "channels": 1}
    task = load_cue_accumulation(n_train=4000, n_test=4000, n_val=4000, **options)
    for split in (task.train, task.test, task.val):
        assert_balanced(split.y[:, -1].numpy())


def test_cue_accumulation_rates_are_the_configured_ones() -> None:
    """The default (paper) layout: cue populations at ``rate`` while their cue is shown and
    silent otherwise, recall at ``rate`` in its window, noise at ``noise_rate`` everywhere."""
    task = load_cue_accumulation(n_train=60, n_test=1, n_val=0)
    x = populations(task.train.x, 10)
    steps = x.shape[1]
    assert steps == 2250
    assert_rate(x[..., NOISE, :], 0.01)
    assert_rate(x[:, -150:, RECALL], 0.04)
    assert not x[:, :-150, RECALL].any()
    lit, dark = [], []
    for onset in cue_onsets(7, 100, 50):
        window = x[:, onset : onset + 100, [CUE_0, CUE_1]]  # (N, 100, 2, 10)
        side = window.any(axis=(1, 3)).argmax(axis=1)  # the side that fired (a silent cue: 0)
        rows = np.arange(len(window))
        lit.append(window[rows, :, side])
        dark.append(window[rows, :, 1 - side])
    assert_rate(np.stack(lit), 0.04)
    assert not np.stack(dark).any()


def test_generated_tasks_are_deterministic_by_seed() -> None:
    for name in NEW_TASKS:
        a = load_task(name, n_train=6, n_test=3, n_val=2, seed=5)
        b = load_task(name, n_train=6, n_test=3, n_val=2, seed=5)
        c = load_task(name, n_train=6, n_test=3, n_val=2, seed=6)
        for split in ("train", "test", "val"):
            assert torch.equal(getattr(a, split).x, getattr(b, split).x)
            assert torch.equal(getattr(a, split).y, getattr(b, split).y)
        assert not torch.equal(a.train.x, c.train.x)
        # each split has its own stream: the validation size leaves train and test alone
        d = load_task(name, n_train=6, n_test=3, n_val=9, seed=5)
        assert torch.equal(a.train.x, d.train.x) and torch.equal(a.test.y, d.test.y)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_cues": 4}, "must be odd"),
        ({"rate": 1.5}, "spike probability"),
        ({"noise_rate": -0.1}, "spike probability"),
        ({"p_favoured": 1.2}, "probability"),
        ({"channels": 0}, "channels"),
        ({"delay": -1}, "delay"),
        ({"n_test": 0}, "n_test >= 1"),
    ],
)
def test_bad_cue_accumulation_settings_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_cue_accumulation(**options)


# -- delayed XOR --------------------------------------------------------------------------------
def test_delayed_xor_layout_and_labels() -> None:
    task = load_delayed_xor(n_train=400, n_test=5, n_val=0, channels=2, rate=1.0, noise_rate=0.0)
    steps = xor_steps(10, 40, 10)
    x, y = populations(task.train.x, 2), task.train.y.numpy()
    assert x.shape[1] == steps == 110
    first = x[:, 0:10, CUE_1].all(axis=(1, 2))
    second = x[:, 50:60, CUE_1].all(axis=(1, 2))
    assert (x[:, 0:10, CUE_0].all(axis=(1, 2)) == ~first).all()
    assert not x[:, 10:50, :2].any() and not x[:, 60:, :2].any()
    assert (y[:, :100] == -1).all() and (y[:, 100:] == (first ^ second)[:, None]).all()
    assert {(a, b) for a, b in zip(first, second, strict=True)} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_delayed_xor_is_balanced_and_fires_at_its_rates() -> None:
    task = load_delayed_xor(n_train=4000, n_test=10, n_val=0)
    assert_balanced(task.train.y[:, -1].numpy())
    x = populations(task.train.x, 8)
    assert_rate(x[..., NOISE, :], 0.02)
    assert_rate(x[:, -10:, RECALL], 0.3)


# -- adding problem -----------------------------------------------------------------------------
def test_adding_marks_two_numbers_and_targets_their_running_sum() -> None:
    task = load_adding(n_train=500, n_test=5, n_val=5, steps=50)
    x, y = task.train.x.numpy(), task.train.y.numpy()
    assert x.shape == (500, 50, 2) and y.shape == (500, 50, 1) and y.dtype == np.float32
    values, marks = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert (marks[:, :25].sum(axis=1) == 1).all() and (marks[:, 25:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y[:, -1, 0], (values * marks).sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(y[..., 0], np.cumsum(values * marks, axis=1), rtol=1e-6)
    # the last step's target has the variance of the sum of two uniform numbers, 1/6
    assert y[:, -1, 0].var() == pytest.approx(1 / 6, rel=0.25)
    with pytest.raises(ConfigError, match="steps >= 2"):
        load_adding(steps=1)


# -- data files and the command line --------------------------------------------------------------
@pytest.mark.parametrize("events", [False, True])
def test_a_written_task_reads_back_identically(tmp_path: Path, events: bool) -> None:
    out = tmp_path / "cue.npz"
    record = make_command("cue-accumulation-short", out, ["n_train=12", "n_val=4"], events=events)
    assert record["options"] == {"n_train": 12, "n_val": 4}
    assert record["splits"] == {"train": 12, "val": 4, "test": 100}
    task = load_task("cue-accumulation-short", n_train=12, n_val=4)
    back = load_data_file(out)
    assert back.target == task.target and back.n_out == task.n_out
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(back, split).x, getattr(task, split).x)
        assert torch.equal(getattr(back, split).y, getattr(task, split).y)
    assert read_data_file(out).layout == ("events" if events else "dense")


def test_real_valued_tasks_are_not_written_as_spikes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="real-valued inputs"):
        task_spike_data(load_adding(n_train=2, n_test=1, n_val=0))
    with pytest.raises(ConfigError, match=r"must end in \.npz"):
        make_command("delayed-xor", tmp_path / "xor.bin")


def test_options_are_typed_by_their_defaults() -> None:
    loader = TASKS["cue-accumulation"]
    options = loader_options("c", loader, ["delay=5", "rate=1", "n_cues = 3", "name=x"])
    assert options == {"delay": 5, "rate": 1.0, "n_cues": 3, "name": "x"}
    assert isinstance(options["rate"], float)
    for pairs, match in (
        (["delay"], "not NAME=VALUE"),
        (["depth=3"], "no option 'depth'"),
        (["delay=1.5"], "not a int"),
    ):
        with pytest.raises(ConfigError, match=match):
            loader_options("c", loader, pairs)
    with pytest.raises(ConfigError, match="cannot be set from the command line"):
        loader_options("digits", TASKS["digits"], ["thresholds=2,6"])
    assert loader_options("smnist", TASKS["smnist"], ["train_limit=100"]) == {"train_limit": 100}


def test_data_make_then_info_on_the_command_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "xor.npz"
    args = ["data", "make", "delayed-xor", "--out", str(out), "--set", "n_train=40"]
    assert main([*args, "--set", "delay=5", "--events"]) == 0
    made = json.loads(capsys.readouterr().out)
    steps = xor_steps(10, 5, 10)
    assert made["n_steps"] == steps == 40 and made["layout"] == "events"
    assert main(["data", "info", str(out)]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert info["target"] == "label_per_step" and info["n_channels"] == 32
    assert info["splits"]["train"]["samples"] == 40
    assert info["splits"]["train"]["label_coverage"] == pytest.approx(10 / steps)
    assert sum(info["splits"]["train"]["label_counts"]) == 40 * 10
    assert "25.0% of steps labelled" in captured.err
    assert main(["data", "make", "adding", "--out", str(tmp_path / "a.npz")]) == 2
    assert "real-valued inputs" in capsys.readouterr().err


@pytest.mark.slow
def test_train_runs_on_the_short_task_from_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "short.toml"
    config.write_text("[hardware]\nn_in = 40\nn_out = 2\nn_rec = 16\n[train]\nepochs = 2\n")
    out = tmp_path / "run"
    args = ["train", "--config", str(config), "--task", "cue-accumulation-short"]
    assert (
        main([*args, "--rule", "bptt", "--model", "lif", "--out", str(out), "--no-progress"]) == 0
    )
    record = json.loads((out / "train.json").read_text())
    assert record["task"] == "cue-accumulation-short" and len(record["history"]) == 2
    assert record["val_split"] == "task" and 0 <= record["test_accuracy"] <= 1


def test_bptt_learns_an_easy_cue_accumulation(tmp_path: Path) -> None:
    """Three cues all on one side, a 10-step delay: a 16-neuron LIF network trained by BPTT
    answers far above chance (0.5) on the validation trials within four epochs (each of
    twelve seeds tried reached 0.96 or more)."""
    easy = {
        "channels": 4,
        "n_cues": 3,
        "cue_steps": 4,
        "gap_steps": 2,
        "delay": 10,
        "recall_steps": 4,
        "rate": 0.5,
        "noise_rate": 0.02,
        "p_favoured": 1.0,
    }
    task = load_cue_accumulation(n_train=128, n_test=64, n_val=64, seed=0, **easy)
    torch.manual_seed(0)
    model = build_model("lif", task.train.n_in, 16, 2, input_gain=3.0)
    settings = {"rule": "bptt", "model": "lif", "epochs": 4, "lr": 1e-2, "optimizer": "adam"}
    cfg = TrainConfig.from_dict({**settings, "weight_decay": 0.0, "qat_epochs": 0})
    history = fit(model, task, cfg, tmp_path / "checkpoint.pt", progress=False)
    assert history[-1]["val_accuracy"] >= 0.8, [r["val_accuracy"] for r in history]


def test_the_raster_figure_is_written(tmp_path: Path) -> None:
    task = load_cue_accumulation(n_train=1, n_test=1, n_val=0, **SMALL)
    path = tmp_path / "trial.png"
    plot_raster(task.train.x[0].numpy(), task.train.y[0].numpy(), path, groups=("a", "b", "c", "d"))
    assert path.read_bytes().startswith(b"\x89PNG")
