"""Bring-your-own-data: the .npz data file, its checks, the converters (SHD HDF5, CSV event
lists, event npz), data_info, from_arrays, register_task and data files as flow tasks."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.flow.config import FlowConfig, FlowSettings
from neurofptt.flow.stages import load_flow_task
from neurofptt.tasks import (
    TASKS,
    TaskData,
    convert,
    convert_command,
    data_info,
    format_info,
    from_arrays,
    info_command,
    load_data_file,
    load_task,
    pool_spikes,
    read_data_file,
    register_task,
    write_data_file,
)
from neurofptt.tasks.base import check_targets, validation_indices
from neurofptt.tasks.convert import time_steps

try:  # the data extra; only the SHD converter needs it
    import h5py
except ImportError:  # pragma: no cover - the dev set-up installs it
    h5py = None
needs_h5py = pytest.mark.skipif(h5py is None, reason="h5py (pip install 'neurofptt[data]')")

# -- fixtures in the exact layouts --------------------------------------------------------------


def spikes(seed: int, shape: tuple[int, ...], p: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.uint8)


def dense_file(path: Path, **extra: np.ndarray) -> Path:
    """A small dense file: 6 train, 2 val, 3 test samples of 5 steps x 4 channels, 3 classes."""
    arrays = {
        "x_train": spikes(0, (6, 5, 4)),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_val": spikes(1, (2, 5, 4)).astype(bool),
        "y_val": np.array([1, 0]),
        "x_test": spikes(2, (3, 5, 4)),
        "y_test": np.array([2, 2, 0]),
        **extra,
    }
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


EVENTS = np.array(
    [[0, 0, 1], [0, 3, 2], [0, 3, 2], [2, 4, 0], [1, 1, 1]]  # a repeated row is one spike
)
EVENTS_DENSE = np.zeros((3, 5, 3), dtype=bool)
EVENTS_DENSE[0, 0, 1] = EVENTS_DENSE[0, 3, 2] = EVENTS_DENSE[2, 4, 0] = EVENTS_DENSE[1, 1, 1] = True


def event_file(path: Path, **extra) -> Path:
    arrays = {
        "events_train": EVENTS,
        "y_train": np.array([1, 0, 1]),
        "events_test": np.array([[0, 2, 2]], dtype=np.int32),
        "y_test": np.array([0]),
        "n_steps": np.int64(5),
        "n_channels": np.int64(3),
        **extra,
    }
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def shd_file(path: Path, times: list, units: list, labels: list, extra: bool = True) -> Path:
    """The SHD/SSC layout: ragged float16 times and uint16 units (vlen datasets), labels and an
    ``extra`` group that the converter ignores."""
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (ti, ui) in enumerate(zip(times, units, strict=True)):
            t[i] = np.asarray(ti, dtype=np.float16)
            u[i] = np.asarray(ui, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))
        if extra:
            f.create_dataset("extra/speaker", data=np.arange(len(labels), dtype=np.uint8))
            f.create_dataset("extra/meta_info/gender", data=np.zeros(3, dtype=np.uint8))
    return path


def random_shd(seed: int, n: int) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    times, units = [], []
    for _ in range(n):
        k = int(rng.integers(0, 40))
        times.append(np.sort(rng.random(k) * 0.1))
        units.append(rng.integers(0, 700, k))
    return times, units, [int(v) for v in rng.integers(0, 4, n)]


def loop_bin(times, units, n_steps: int, dt: float, channels: int, n_units: int = 700):
    """The direct definition: a spike at t in unit u sets bin floor(t / dt) of channel
    u * channels // n_units (float16 times as the file stores them)."""
    x = np.zeros((len(times), n_steps, channels), dtype=bool)
    for i, (ts, us) in enumerate(zip(times, units, strict=True)):
        for t, u in zip(ts, us, strict=True):
            step = math.floor(float(np.float16(t)) / dt + 1e-6)
            if step < n_steps:
                x[i, step, int(u) * channels // n_units] = True
    return x


def loop_pool(x: np.ndarray, factor: int, channels: int) -> np.ndarray:
    n, t, c = x.shape
    out = np.zeros((n, -(-t // factor), channels), dtype=bool)
    for i in range(n):
        for s in range(t):
            for u in range(c):
                if x[i, s, u]:
                    out[i, s // factor, u * channels // c] = True
    return out


# -- the file format ----------------------------------------------------------------------------


def test_dense_file_loads_as_a_task(tmp_path: Path) -> None:
    path = dense_file(tmp_path / "d.npz")
    task = load_task(str(path))
    raw = np.load(path)
    assert isinstance(task, TaskData) and task.name == str(path)
    assert (task.target, task.n_out) == ("label", 3)
    assert task.train.x.dtype == torch.float32 and task.train.y.dtype == torch.int64
    assert np.array_equal(task.train.x.numpy(), raw["x_train"])
    assert np.array_equal(task.val.x.numpy(), raw["x_val"])
    assert np.array_equal(task.test.y.numpy(), raw["y_test"])


def test_events_equal_the_hand_built_dense_array(tmp_path: Path) -> None:
    data = read_data_file(event_file(tmp_path / "e.npz"))
    assert data.layout == "events" and (data.n_steps, data.n_channels) == (5, 3)
    assert np.array_equal(data.dense("train"), EVENTS_DENSE)
    assert data.spike_count("train") == 4  # the repeated row counts once
    assert np.array_equal(data.events("train"), np.argwhere(EVENTS_DENSE))
    task = load_data_file(tmp_path / "e.npz")
    assert np.array_equal(task.train.x.numpy(), EVENTS_DENSE.astype(np.float32))


@pytest.mark.parametrize("events", [False, True])
def test_write_data_file_round_trips_both_layouts(tmp_path: Path, events: bool) -> None:
    data = read_data_file(dense_file(tmp_path / "d.npz", n_classes=np.int64(5)))
    write_data_file(tmp_path / "out.npz", data, events=events)
    back = read_data_file(tmp_path / "out.npz")
    assert back.layout == ("events" if events else "dense")
    assert (back.n_out, back.n_classes) == (5, 5)
    for split in ("train", "val", "test"):
        assert np.array_equal(back.dense(split), data.dense(split))
        assert np.array_equal(back.splits[split].y, data.splits[split].y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "out.npz"]  # no temp file


def test_per_step_labels_with_no_target_steps(tmp_path: Path) -> None:
    y = np.full((4, 5), -1)
    y[:, 2] = [0, 1, 2, 1]
    y[0, 4] = 3
    path = tmp_path / "p.npz"
    np.savez(
        path,
        x_train=spikes(3, (4, 5, 2)),
        y_train=y,
        x_test=spikes(4, (1, 5, 2)),
        y_test=np.zeros((1, 5), dtype=np.int64),
    )
    task = load_data_file(path)
    assert (task.target, task.n_out) == ("label_per_step", 4)
    info = data_info(path)
    assert info["splits"]["train"]["label_coverage"] == 5 / 20
    assert info["splits"]["train"]["label_counts"] == [1, 2, 1, 1]
    assert info["splits"]["test"]["label_coverage"] == 1.0
    # a training batch may hold steps without a target: the losses skip them
    check_targets(task.train.x, task.train.y, task.target, task.n_out)


def test_regression_targets(tmp_path: Path) -> None:
    path = tmp_path / "r.npz"
    y = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    np.savez(
        path, x_train=spikes(0, (3, 5, 1)), y_train=y, x_test=spikes(1, (2, 5, 1)), y_test=y[:2]
    )
    task = load_data_file(path)
    assert (task.target, task.n_out) == ("regression", 2)
    info = data_info(path)["splits"]["train"]
    assert np.allclose(info["target_mean"], y.mean(axis=(0, 1)), atol=1e-6)


def test_a_file_without_test_split_is_summarised_but_not_trained(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, x_train=spikes(0, (4, 3, 2)), y_train=np.array([0, 1, 0, 1]))
    info = data_info(path)
    assert not info["has_test"] and "no test split" in format_info(info)
    with pytest.raises(ConfigError, match="no test split.*--test-fraction"):
        load_data_file(path)


def _bad(tmp_path: Path, name: str, value: object) -> Path:
    path = tmp_path / "bad.npz"
    if name == "text":
        path.write_text("sample,time,channel\n0,1,2\n")
    elif name == "npy":
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(3))
    elif name == "missing":
        pass
    elif name == "events":
        event_file(path, **value)
    else:
        dense_file(path, **value)
    return path


T, C = 5, 4


def per_step(steps: int = T, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step labels (class 1 everywhere, class 0 at step 0) for every split, then ``arrays``."""
    y = {
        f"y_{s}": np.ones((n, steps), np.int64) for s, n in (("train", 6), ("val", 2), ("test", 3))
    }
    for v in y.values():
        v[:, 0] = 0
    return {**y, **arrays}


BAD_FILES = {
    # case: (layout, changed arrays, error, what the message says)
    "x-2d": ("dense", {"x_train": np.zeros((6, 5))}, ShapeError, "x_train has shape"),
    "x-not-binary": (
        "dense",
        {"x_test": np.full((3, T, C), 2, np.uint8)},
        ShapeError,
        "x_test holds 2",
    ),
    "x-fraction": ("dense", {"x_train": np.full((6, T, C), 0.5)}, ShapeError, "must be 0 or 1"),
    "x-empty": (
        "dense",
        {"x_val": np.zeros((0, T, C), np.uint8), "y_val": np.zeros(0, np.int64)},
        ShapeError,
        "x_val has shape",
    ),
    "x-lengths": (
        "dense",
        {"y_train": np.array([0, 1, 2, 0, 1])},
        ShapeError,
        "x_train holds 6 samples",
    ),
    "x-channels": (
        "dense",
        {"x_test": np.zeros((3, T, 3), np.uint8)},
        ShapeError,
        "same steps and channels",
    ),
    "label-minus-one": ("dense", {"y_val": np.array([0, -1])}, ShapeError, "y_val holds label -1"),
    "label-below-minus-one": (
        "dense",
        per_step(y_train=np.full((6, T), -2)),
        ShapeError,
        "y_train holds label -2",
    ),
    "label-n-classes": (
        "dense",
        {"y_train": np.array([0, 1, 2, 0, 1, 3]), "n_classes": np.int64(3)},
        ShapeError,
        "n_classes = 3",
    ),
    "label-float": (
        "dense",
        {"y_train": np.array([0.0, 1, 2, 0, 1, 2])},
        ShapeError,
        "y_train is float64",
    ),
    "label-one-class": (
        "dense",
        {
            "y_train": np.zeros(6, np.int64),
            "y_val": np.zeros(2, np.int64),
            "y_test": np.zeros(3, np.int64),
        },
        ShapeError,
        "only class 0",
    ),
    "steps-length": ("dense", per_step(4), ShapeError, "y_train has 4 steps"),
    "steps-none-labelled": (
        "dense",
        per_step(y_train=np.full((6, T), -1)),
        ShapeError,
        "no labelled step",
    ),
    "kinds-differ": (
        "dense",
        {"y_test": np.zeros((3, T), np.int64)},
        ShapeError,
        "targets of the same kind",
    ),
    "regression-nan": (
        "dense",
        {
            "y_test": np.full((3, T, 1), np.nan),
            "y_train": np.zeros((6, T, 1)),
            "y_val": np.zeros((2, T, 1)),
        },
        ShapeError,
        "y_test holds nan",
    ),
    "missing-y": ("dense", {"y_train": None}, ConfigError, "has x_train but no y_train"),
    "missing-y-test": ("dense", {"y_test": None}, ConfigError, "has x_test but no y_test"),
    "missing-x": ("dense", {"x_train": None}, ConfigError, "no training inputs"),
    "unknown-array": ("dense", {"x_tset": np.zeros(1)}, ConfigError, "unknown array(s) ['x_tset']"),
    "mixed-layouts": ("dense", {"events_test": EVENTS}, ConfigError, "mixes dense"),
    "dense-n-steps": ("dense", {"n_steps": np.int64(5)}, ConfigError, "drop n_steps"),
    "n-classes-float": (
        "dense",
        {"n_classes": np.float64(3)},
        ShapeError,
        "n_classes must be one integer",
    ),
    "pickled": (
        "dense",
        {"meta_note": np.array([{"a": 1}], dtype=object)},
        ShapeError,
        "Python objects",
    ),
    "event-time": (
        "events",
        {"events_train": np.array([[0, 5, 0]])},
        ShapeError,
        "time step 5, beyond n_steps",
    ),
    "event-channel": (
        "events",
        {"events_train": np.array([[0, 1, 3]])},
        ShapeError,
        "channel 3, beyond",
    ),
    "event-sample": (
        "events",
        {"events_train": np.array([[3, 1, 0]])},
        ShapeError,
        "sample 3, beyond the 3",
    ),
    "event-negative-time": (
        "events",
        {"events_train": np.array([[0, -1, 0]])},
        ShapeError,
        "time step -1",
    ),
    "event-negative-sample": (
        "events",
        {"events_train": np.array([[-2, 1, 0]])},
        ShapeError,
        "sample -2",
    ),
    "event-shape": (
        "events",
        {"events_train": np.zeros((2, 2), np.int64)},
        ShapeError,
        "events_train has shape",
    ),
    "event-float": (
        "events",
        {"events_train": np.array([[0.0, 1, 0]])},
        ShapeError,
        "events_train has dtype",
    ),
    "event-no-n-steps": ("events", {"n_steps": None}, ConfigError, "need the scalar n_steps"),
    "event-zero-channels": (
        "events",
        {"n_channels": np.int64(0)},
        ShapeError,
        "n_channels = 0 must be at least 1",
    ),
    "event-empty-split": (
        "events",
        {"y_test": np.zeros(0, np.int64), "events_test": np.zeros((0, 3), np.int64)},
        ShapeError,
        "y_test is empty",
    ),
    "not-npz": ("text", None, ConfigError, "not an .npz data file"),
    "npy": ("npy", None, ConfigError, "single .npy array"),
    "no-file": ("missing", None, ConfigError, "does not exist"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_give_one_clear_line(tmp_path: Path, case: str) -> None:
    layout, arrays, error, message = BAD_FILES[case]
    path = _bad(tmp_path, layout, arrays)
    with pytest.raises(error) as info:
        load_data_file(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_from_arrays_checks_like_a_file() -> None:
    x, y = spikes(0, (4, 3, 2)), np.array([0, 1, 1, 0])
    task = from_arrays(x, y, x_test=x[:2], y_test=y[:2], name="mine")
    assert (task.name, task.n_out, task.val) == ("mine", 2, None)
    assert torch.equal(task.train.x, torch.from_numpy(x.astype(np.float32)))
    with pytest.raises(ShapeError, match=r"from_arrays\('mine'\): x_train holds 3"):
        from_arrays(x * 3, y, x_test=x, y_test=y, name="mine")
    with pytest.raises(ConfigError, match="no test split"):
        from_arrays(x, y)


# -- converters ---------------------------------------------------------------------------------


@needs_h5py
def test_shd_conversion_equals_the_direct_loop(tmp_path: Path) -> None:
    times, units, labels = random_shd(0, 7)
    times[3], units[3] = np.zeros(0), np.zeros(0)  # a silent sample, as ragged arrays allow
    src = shd_file(tmp_path / "shd_train.h5", times, units, labels)
    test = shd_file(tmp_path / "shd_test.h5", *random_shd(1, 3), extra=False)
    record = convert_command(src, tmp_path / "shd.npz", dt=0.004, channels=70, test=test)
    data = read_data_file(tmp_path / "shd.npz")
    steps = data.n_steps
    last = max(math.floor(float(np.float16(t)) / 0.004 + 1e-6) for ts in times for t in ts)
    assert steps >= last + 1 and data.n_channels == 70
    assert np.array_equal(data.dense("train"), loop_bin(times, units, steps, 0.004, 70))
    assert np.array_equal(data.splits["train"].y, labels)
    assert record["format"] == "shd" and record["splits"] == {"train": 7, "test": 3}
    assert record["spikes"] == sum(data.spike_count(s) for s in ("train", "test"))
    assert record["source_spikes"] == record["spikes"] + record["spikes_merged"]
    assert data_info(tmp_path / "shd.npz")["meta"] == {
        "meta_source": "shd_train.h5",
        "meta_dt": 0.004,
    }


@needs_h5py
def test_shd_cut_and_bin_factor(tmp_path: Path) -> None:
    times, units, labels = random_shd(2, 5)
    src = shd_file(tmp_path / "s.h5", times, units, labels)
    cut = convert(src, dt=0.002, max_time=0.05, test=src)  # 25 steps
    assert cut.n_steps == 25
    assert np.array_equal(cut.dense("train"), loop_bin(times, units, 25, 0.002, 700))
    pooled = convert(src, dt=0.002, n_steps=25, bin_factor=4, channels=7, test=src)
    assert (pooled.n_steps, pooled.n_channels) == (7, 7)
    assert np.array_equal(pooled.dense("test"), loop_pool(cut.dense("test"), 4, 7))
    assert float(pooled.meta["meta_dt"]) == pytest.approx(0.008)


def test_time_steps_are_robust_to_float_rounding() -> None:
    assert time_steps(np.array([0.003, 0.0029999, 0.0, 0.0105]), 0.001).tolist() == [3, 2, 0, 10]


SHD_BAD = [
    ("labels", "no dataset 'labels'"),
    ("unit", "unit 700 (entry 0), beyond n_units = 700"),
    ("length", "sample 0 has 2 spike times but 1 units"),
    ("time", "times are seconds >= 0"),
    ("count", "spikes/times holds 2 samples"),
]


@needs_h5py
@pytest.mark.parametrize(("case", "message"), SHD_BAD, ids=[c for c, _ in SHD_BAD])
def test_bad_shd_files(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (2,), dtype=h5py.vlen_dtype(np.float32))
        u = f.create_dataset("spikes/units", (2,), dtype=h5py.vlen_dtype(np.int32))
        t[0], u[0] = np.array([0.1, 0.2]), np.array([700 if case == "unit" else 1, 2])
        t[1], u[1] = np.array([-0.1 if case == "time" else 0.1]), np.array([3])
        if case == "length":
            u[0] = np.array([1])
        if case != "labels":
            f.create_dataset("labels", data=np.array([0, 1, 1] if case == "count" else [0, 1]))
    with pytest.raises((ConfigError, ShapeError)) as info:
        convert_command(path, tmp_path / "o.npz", dt=0.01, test_fraction=0.5)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "o.npz").exists()


@needs_h5py
def test_not_an_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(b"nothing here")
    with pytest.raises(ConfigError, match="not an HDF5 file"):
        convert(path, dt=0.01)


def test_csv_with_label_column_and_times_in_seconds(tmp_path: Path) -> None:
    src = tmp_path / "ev.csv"
    src.write_text(
        "# recorded on the bench\nsample,time,channel,label\n"
        "0,0.0,1,2\n0,0.0031,2,2\n1,0.002,0,1\n1,0.0025,0,1\n2,0.0,3,0\n"
    )
    data = convert(src, dt=0.001, test=src)
    x = np.zeros((3, 4, 4), dtype=bool)
    x[0, 0, 1] = x[0, 3, 2] = x[1, 2, 0] = x[2, 0, 3] = True
    assert np.array_equal(data.dense("train"), x) and data.splits["train"].y.tolist() == [2, 1, 0]
    assert "meta_dt" in data.meta


def test_csv_in_steps_with_a_labels_file_keeps_silent_samples(tmp_path: Path) -> None:
    src, labels = tmp_path / "ev.txt", tmp_path / "labels.txt"
    src.write_text("sample time channel extra\n0 1 0 9\n2 0 1 9\n")
    labels.write_text("1\n0\n1\n0\n")
    out = tmp_path / "ev.npz"
    convert_command(src, out, labels=labels, test=src, test_labels=labels, n_steps=3)
    data = read_data_file(out)
    x = np.zeros((4, 3, 2), dtype=bool)
    x[0, 1, 0] = x[2, 0, 1] = True
    assert np.array_equal(data.dense("train"), x)
    assert data_info(out)["splits"]["train"]["silent_samples"] == 2


CSV_BAD = [
    ("sample,time\n0,1\n", {}, "does not name the column(s) ['channel']"),
    ("sample,time,channel,label\n0,1,0,1\n0,2,0,2\n", {}, "sample 0 has rows with labels"),
    ("sample,time,channel,label\n0,1.5,0,1\n", {}, "times without dt are whole steps"),
    ("sample,time,channel,label\n1,1,0,1\n", {}, "sample 0 has no row"),
    ("sample,time,channel,label\n0,1,-1,1\n", {}, "channel -1"),
    ("sample,time,channel,label\n0,1,0,x\n", {}, "every row after the header"),
    ("sample,time,channel\n0,1,0\n", {}, "no 'label' column"),
    ("sample,time,channel,label\n0,1,5,1\n", {"n_units": 4}, "beyond n_units = 4"),
]


@pytest.mark.parametrize(("text", "options", "message"), CSV_BAD)
def test_bad_csv_files(tmp_path: Path, text: str, options: dict, message: str) -> None:
    src = tmp_path / "e.csv"
    src.write_text(text)
    with pytest.raises((ConfigError, ShapeError)) as info:
        convert(src, test=src, **options)
    assert message in str(info.value) and str(src) in str(info.value)


def test_event_npz_converts_to_dense_and_pools(tmp_path: Path) -> None:
    src = event_file(tmp_path / "e.npz")
    convert_command(src, tmp_path / "d.npz", fmt="auto")
    dense = np.load(tmp_path / "d.npz")
    assert dense["x_train"].dtype == np.uint8 and "events_train" not in dense.files
    assert np.array_equal(dense["x_train"], EVENTS_DENSE)
    record = convert_command(src, tmp_path / "p.npz", bin_factor=2, channels=2)
    pooled = read_data_file(tmp_path / "p.npz")
    assert np.array_equal(pooled.dense("train"), loop_pool(EVENTS_DENSE, 2, 2))
    assert (record["n_steps"], record["n_channels"]) == (3, 2)


def test_test_fraction_holds_out_a_fixed_seeded_split(tmp_path: Path) -> None:
    src = tmp_path / "e.csv"
    rows = "".join(f"{s},{s % 3},{s % 2},{s % 2}\n" for s in range(10))
    src.write_text("sample,time,channel,label\n" + rows)
    a = convert_command(src, tmp_path / "a.npz", test_fraction=0.3, seed=4)
    convert_command(src, tmp_path / "b.npz", test_fraction=0.3, seed=4)
    assert a["splits"] == {"train": 7, "test": 3}
    fa, fb = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert np.array_equal(fa["x_test"], fb["x_test"])
    whole = np.concatenate([fa["x_train"], fa["x_test"]])
    assert sorted(map(bytes, whole)) == sorted(map(bytes, loop_bin_steps(10)))
    with pytest.raises(ConfigError, match="no test split"):
        convert_command(src, tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="must end in .npz"):
        convert_command(src, tmp_path / "c.bin", test_fraction=0.3)


def loop_bin_steps(n: int) -> np.ndarray:
    x = np.zeros((n, 3, 2), dtype=np.uint8)
    for s in range(n):
        x[s, s % 3, s % 2] = 1
    return x


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(np.bool_, hnp.array_shapes(min_dims=3, max_dims=3, max_side=7)),
    factor=st.integers(1, 4),
    data=st.data(),
)
def test_pooling_is_the_or_of_a_loop_and_never_adds_spikes(x, factor, data) -> None:
    channels = data.draw(st.integers(1, x.shape[2]))
    pooled = pool_spikes(x, bin_factor=factor, channels=channels)
    assert np.array_equal(pooled, loop_pool(x, factor, channels))
    assert pooled.sum() <= x.sum()
    assert pooled.any() == x.any()


@settings(max_examples=30, deadline=None)
@given(x=hnp.arrays(np.bool_, (3, 6, 5)), factor=st.integers(1, 3), channels=st.integers(1, 5))
def test_event_conversion_pools_like_the_dense_helper(x, factor, channels) -> None:
    events = np.argwhere(x)
    arrays = {
        "events_train": events,
        "y_train": np.array([0, 1, 0]),
        "n_steps": np.int64(6),
        "n_channels": np.int64(5),
    }
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "e.npz"
        np.savez(src, **arrays)
        data = convert(src, bin_factor=factor, channels=channels, test_fraction=0.34)
        whole = np.concatenate([data.dense("train"), data.dense("test")])
        order = np.concatenate(validation_indices(3, 0.34, 0))
        assert np.array_equal(whole, pool_spikes(x, bin_factor=factor, channels=channels)[order])


# -- data info ----------------------------------------------------------------------------------


def test_data_info_numbers_by_hand(tmp_path: Path) -> None:
    info = info_command(event_file(tmp_path / "e.npz", n_classes=np.int64(3)))
    assert (info["layout"], info["target"], info["n_out"]) == ("events", "label", 3)
    train = info["splits"]["train"]
    # 4 distinct spikes in 3 samples of 5 x 3 bins, every sample has one
    assert train["spikes"] == 4 and train["silent_samples"] == 0
    assert train["spike_rate"] == 4 / 45 and train["spikes_per_sample"] == 4 / 3
    assert train["label_counts"] == [1, 2, 0]
    assert "label_coverage" not in train
    test = info["splits"]["test"]
    assert (test["samples"], test["spikes"], test["label_counts"]) == (1, 1, [1, 0, 0])
    text = format_info(info)
    assert "events layout, 5 steps x 3 channels" in text and "labels [1, 2, 0]" in text


# -- tasks: registry, load_task and flow configs ------------------------------------------------


def test_register_task(tmp_path: Path) -> None:
    path = dense_file(tmp_path / "d.npz")
    register_task("mine", lambda: load_data_file(path))
    try:
        assert load_task("mine").n_out == 3
        assert FlowSettings(task="mine").task == "mine"
        with pytest.raises(ConfigError, match="exists already"):
            register_task("mine", lambda: None)
        register_task("mine", lambda: load_data_file(path), replace=True)
    finally:
        TASKS.pop("mine", None)
    with pytest.raises(ConfigError, match="not ending in .npz"):
        register_task("x.npz", lambda: None)
    with pytest.raises(ConfigError, match="must be callable"):
        register_task("other", 3)


def test_load_task_names_files_and_unknown_names(tmp_path: Path) -> None:
    path = dense_file(tmp_path / "d.npz")
    with pytest.raises(ConfigError, match="takes no options"):
        load_task(str(path), seed=1)
    with pytest.raises(ConfigError, match="path of a .npz data file"):
        load_task("no-such-task")
    with pytest.raises(ConfigError, match="path of a .npz data file"):
        FlowSettings(task="no-such-task")
    assert FlowSettings(task=str(tmp_path / "later.npz")).task.endswith("later.npz")
    with pytest.raises(ConfigError, match="does not exist"):
        load_task(str(tmp_path / "later.npz"))


def test_flow_config_with_a_data_file(tmp_path: Path) -> None:
    path = dense_file(tmp_path / "d.npz")
    toml = tmp_path / "flow.toml"
    toml.write_text(f'[hardware]\nn_in = 4\nn_out = 3\n\n[flow]\ntask = "{path}"\n')
    cfg = FlowConfig.load(toml)
    assert cfg.flow.task == str(path)
    task = load_flow_task(cfg)
    assert (task.train.n_in, task.n_out, len(task.test)) == (4, 3, 3)
    toml.write_text(f'[hardware]\nn_in = 8\nn_out = 3\n\n[flow]\ntask = "{path}"\n')
    with pytest.raises(ConfigError, match="set hardware.n_in = 4.*--channels"):
        load_flow_task(FlowConfig.load(toml))
