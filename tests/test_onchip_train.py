"""The host's loop of on-chip learning: a seeded validation split held out from learning, the
epoch picked on it (with its network and learning state), the test set scored once, and one
``metrics.jsonl`` line per epoch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cue_core import cue_core

from neurofptt.errors import ConfigError
from neurofptt.flow import onchip_train
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.onchip import from_scratch, onchip_core, onchip_hardware, stage_train_onchip
from neurofptt.flow.onchip_rates import derive_rate, readout_rate_shift
from neurofptt.flow.onchip_train import METRICS_LOG, train_onchip
from neurofptt.onchip import random_network
from neurofptt.quant import QuantizedNetwork, golden_run
from neurofptt.quant.config import HardwareConfig, LearningConfig
from neurofptt.tasks import load_task
from neurofptt.tasks.base import TaskData, validation_indices, with_validation
from neurofptt.tasks.cue import load_cue_task

torch.set_num_threads(1)

CUE_HW = cue_core(learning=LearningConfig(supervised_steps=5, lr_shift_rec=22))


def small_task() -> TaskData:
    """A task without a validation split of its own, so the trainer holds one out."""
    return load_cue_task(n_train=60, n_test=30, n_val=0, seed=0)


def start() -> QuantizedNetwork:
    return random_network(CUE_HW, seed=3, spread=16)


def test_holds_out_the_float_trainers_validation_split() -> None:
    """The samples held out are those ``with_validation`` moves out of ``train`` for the float
    trainer with the same seed and fraction, so both pick their epochs on the same samples."""
    task = small_task()
    for seed, fraction in ((0, 0.1), (3, 0.25)):
        history = train_onchip(start(), task, epochs=1, seed=seed, val_fraction=fraction)
        split = with_validation(task, fraction, seed)
        assert np.array_equal(history.val_indices, validation_indices(60, fraction, seed)[1])
        assert history.val_samples == len(split.val) and history.train_samples == len(split.train)
    with pytest.raises(ConfigError, match="val_fraction must be in"):
        train_onchip(start(), task, epochs=1, val_fraction=0.0)


def test_held_out_samples_are_never_learned(monkeypatch) -> None:
    """Every sample ``run_sample`` learns is one of the training samples outside the split,
    each once per epoch; the split is the same for the same seed and another for another."""
    task = small_task()
    rows = task.train.numpy_spikes()
    learned: list[bytes] = []
    real = onchip_train.run_sample

    def spy(net, state, x, label, **kw):
        learned.append(np.asarray(x).tobytes())
        return real(net, state, x, label, **kw)

    monkeypatch.setattr(onchip_train, "run_sample", spy)
    history = train_onchip(start(), task, epochs=2, seed=1)
    held = history.val_indices
    assert held is not None and len(held) == history.val_samples == 6
    assert history.train_samples == 54
    kept = [rows[n].tobytes() for n in range(len(rows)) if n not in set(held)]
    assert sorted(learned) == sorted(kept * 2)
    assert not {rows[n].tobytes() for n in held} & set(learned)
    assert np.array_equal(train_onchip(start(), task, epochs=1, seed=1).val_indices, held)
    assert not np.array_equal(train_onchip(start(), task, epochs=1, seed=2).val_indices, held)


def test_picks_the_epoch_of_best_validation_accuracy(monkeypatch) -> None:
    """The kept network and learning state are those at the end of the first epoch with the
    highest validation accuracy, not the last; the test accuracy is that network's."""
    task = load_cue_task(seed=0)
    after_epoch, last = [], {}
    real = onchip_train.run_sample

    def spy(net, state, x, label, **kw):
        last["net"], last["state"], readout = real(net, state, x, label, **kw)
        return last["net"], last["state"], readout

    monkeypatch.setattr(onchip_train, "run_sample", spy)
    history = train_onchip(
        start(), task, "eprop", epochs=5, seed=0, progress=lambda r: after_epoch.append(dict(last))
    )
    val = [r["val_accuracy"] for r in history.epochs]
    assert history.picked_epoch == 1 + int(np.argmax(val))
    # so that the check tells the kept network from the last one
    assert history.picked_epoch < 5, "this seed should peak before the last epoch"
    kept = after_epoch[history.picked_epoch - 1]
    for m in ("w_in", "w_rec", "w_out"):
        assert np.array_equal(getattr(history.net, m), getattr(kept["net"], m))
    assert history.state is kept["state"]
    assert history.state.updates == history.epochs[history.picked_epoch - 1]["updates"]
    test = golden_run(history.net, task.test.numpy_spikes()).predictions == task.test.y.numpy()
    assert history.test_accuracy == float(np.mean(test))
    # the online figure is scored while learning; the others with learning off, after the epoch
    assert all(
        {"online_train_accuracy", "train_accuracy", "val_accuracy"} <= set(r)
        and "test_accuracy" not in r
        for r in history.epochs
    )


def test_test_set_is_scored_once(monkeypatch) -> None:
    """Scoring the test set every epoch invites picking on it; it is run once, at the end."""
    task = small_task()
    x_test = task.test.numpy_spikes()
    calls = {"test": 0, "other": 0}
    real = onchip_train.golden_run

    def counting(net, x):
        on_test = np.shape(x) == x_test.shape and np.array_equal(x, x_test)
        calls["test" if on_test else "other"] += 1
        return real(net, x)

    monkeypatch.setattr(onchip_train, "golden_run", counting)
    train_onchip(start(), task, epochs=3, seed=0)
    assert calls == {"test": 1, "other": 3 * 2}  # train and validation after every epoch


def test_metrics_jsonl_has_a_line_per_epoch(tmp_path: Path) -> None:
    task = small_task()
    seen: list[int] = []

    def lines_so_far(record: dict) -> None:
        seen.append(len((tmp_path / METRICS_LOG).read_text().splitlines()))

    history = train_onchip(start(), task, epochs=3, seed=0, run_dir=tmp_path, progress=lines_so_far)
    lines = [json.loads(line) for line in (tmp_path / METRICS_LOG).read_text().splitlines()]
    assert lines == history.epochs and seen == [1, 2, 3]  # written as each epoch ends
    # a new run in the same folder starts the file afresh
    train_onchip(start(), task, epochs=2, seed=0, run_dir=tmp_path)
    assert len((tmp_path / METRICS_LOG).read_text().splitlines()) == 2


def test_uses_the_tasks_own_validation_split() -> None:
    task = small_task()
    extra = load_cue_task(n_train=10, n_test=1, seed=7).train
    with_val = dataclasses.replace(task, val=extra)
    history = train_onchip(start(), with_val, epochs=1, seed=0)
    assert history.val_indices is None
    assert (history.train_samples, history.val_samples) == (60, 10)


def test_stage_record_and_log(tmp_path: Path) -> None:
    """``train --engine golden`` writes the picked epoch, its validation accuracy and the test
    accuracy of its network, and a ``metrics.jsonl`` line per epoch."""
    cfg = FlowConfig.from_dict(
        {
            "hardware": {
                **CUE_HW.replace(learning=None).to_dict(),
                "learning": {"rounding": "nearest"},
            },
            "train": {"epochs": 2},
            "flow": {"task": "cue"},
        }
    )
    record = stage_train_onchip(cfg, tmp_path, "eprop", progress=False)
    saved = json.loads((tmp_path / "train_onchip.json").read_text())
    assert saved["picked_epoch"] == record["picked_epoch"] in (1, 2)
    picked = saved["history"][saved["picked_epoch"] - 1]
    assert saved["val_accuracy"] == picked["val_accuracy"]
    assert saved["updates"] == picked["updates"]
    # the cue task brings its own validation split: every training sample is learned
    assert (saved["train_samples"], saved["val_samples"]) == (200, 50)
    assert 0 <= saved["onchip_accuracy"] <= 1
    assert len((tmp_path / METRICS_LOG).read_text().splitlines()) == 2


def test_onchip_run_records_the_leaks_it_took_from_the_task(tmp_path: Path) -> None:
    """A hardware table without leaks learns from scratch with the membrane leak derived from
    the task and the readout's default leak (:func:`from_scratch`) at the rate of that leak,
    and ``train_onchip.json`` says so (the cue task's span gives other shifts than the
    core's)."""
    hardware = {
        k: v
        for k, v in CUE_HW.replace(learning=None).to_dict().items()
        if k not in ("leak_shift", "out_leak_shift")
    }
    cfg = FlowConfig.from_dict(
        {"hardware": hardware, "train": {"epochs": 1}, "flow": {"task": "cue"}}
    )
    leak = cfg.derived["leak"]
    assert (leak["leak_shift"], leak["out_leak_shift"]) != (
        CUE_HW.leak_shift,
        CUE_HW.out_leak_shift,
    )
    assert (leak["leak_shift"], leak["out_leak_shift"]) == (
        cfg.hardware.leak_shift,
        cfg.hardware.out_leak_shift,
    )
    assert leak["out_leak_shift"] != HardwareConfig.out_leak_shift
    stage_train_onchip(cfg, tmp_path, "eprop", progress=False)
    saved = json.loads((tmp_path / "train_onchip.json").read_text())
    assert saved["derived"] == cfg.derived and saved["derived"]["leak"] == leak
    learned = QuantizedNetwork.load(tmp_path / "quantized.npz").config
    used = (learned.leak_shift, learned.out_leak_shift)
    assert used == (leak["leak_shift"], HardwareConfig.out_leak_shift)
    assert saved["leaks"] == {"leak_shift": used[0], "out_leak_shift": used[1]}
    rate = readout_rate_shift(HardwareConfig.out_leak_shift)
    assert learned.learning.lr_shift_out == saved["learning"]["lr_shift_out"] == rate


def test_a_readout_leak_the_config_sets_stays_from_scratch() -> None:
    hw = CUE_HW.replace(out_leak_shift=9)
    assert from_scratch(hw, {}) == hw
    assert from_scratch(hw, {"leak_shift": 5}) == hw
    assert from_scratch(hw, {"out_leak_shift": 9}).out_leak_shift == HardwareConfig.out_leak_shift


@pytest.mark.parametrize(
    ("leak", "shift"), [(0, 15), (3, 15), (4, 16), (8, 20), (9, 21), (12, 24), (15, 24)]
)
def test_the_readout_rate_falls_as_its_leak_lengthens(leak: int, shift: int) -> None:
    """One shift of the readout's rate per shift of its leak beyond the digits' core's, within
    the core's range; a shorter leak keeps the default rate."""
    assert readout_rate_shift(leak) == shift


def test_the_readout_rate_counts_from_the_base_it_is_given() -> None:
    assert [readout_rate_shift(leak, base=10) for leak in (2, 8, 15, 30)] == [10, 15, 22, 24]


def test_the_readout_rate_follows_the_leak_unless_the_config_sets_it() -> None:
    """A readout leak the config sets longer than the default lowers the readout's rate: in a
    learning table that leaves ``lr_shift_out`` out at once (so the generated core has it too),
    and in the core on-chip learning builds where there is no table; a table that sets it
    keeps it, and so does a readout leak no longer than the default."""
    task = {"task": "cue-accumulation-short"}
    hardware = {"n_in": 40, "n_out": 2, "leak_shift": 7, "out_leak_shift": 8}
    bare = FlowConfig.from_dict({"hardware": hardware, "flow": task})
    assert bare.hardware.learning is None and bare.derived["readout_rate"]["lr_shift_out"] == 20
    for scratch in (True, False):  # the leak is the config's, so from scratch keeps it
        hw = onchip_hardware(bare, "fptt", scratch=scratch)
        assert hw.out_leak_shift == 8
        assert hw.learning == LearningConfig(mode="fptt", lr_shift_out=20)
    table = {**hardware, "learning": {"mode": "eprop", "lr_shift_in": 17}}
    cfg = FlowConfig.from_dict({"hardware": table, "flow": task})
    assert cfg.hardware.learning == LearningConfig(mode="eprop", lr_shift_in=17, lr_shift_out=20)
    assert onchip_hardware(cfg, "fptt", scratch=True).learning.lr_shift_out == 20
    table["learning"]["lr_shift_out"] = 12
    cfg = FlowConfig.from_dict({"hardware": table, "flow": task})
    assert cfg.hardware.learning.lr_shift_out == 12 and "readout_rate" not in cfg.derived
    assert onchip_hardware(cfg, "eprop", scratch=True).learning.lr_shift_out == 12
    short = {**hardware, "out_leak_shift": 2}
    cfg = FlowConfig.from_dict({"hardware": short, "flow": task})
    assert "readout_rate" not in cfg.derived
    assert onchip_hardware(cfg, "eprop", scratch=True).learning == LearningConfig()


def test_from_scratch_the_readout_rate_is_that_of_the_default_leak() -> None:
    """The task's readout leak (8 on the short cue task) asks for a lower readout rate, but
    learning from scratch returns to the default leak, and with it to the default rate; a
    trained network keeps the task's leak and takes the lower rate."""
    cfg = FlowConfig.from_dict(
        {"hardware": {"n_in": 40, "n_out": 2}, "flow": {"task": "cue-accumulation-short"}}
    )
    assert cfg.hardware.out_leak_shift == 8 and cfg.derived["readout_rate"]["lr_shift_out"] == 20
    scratch = onchip_hardware(cfg, "eprop", scratch=True)
    assert scratch.out_leak_shift == HardwareConfig.out_leak_shift
    assert scratch.learning == LearningConfig(mode="eprop")
    trained = onchip_hardware(cfg, "eprop", scratch=False)
    assert (trained.out_leak_shift, trained.learning.lr_shift_out) == (8, 20)


def test_train_accuracy_is_the_network_after_the_epoch() -> None:
    """``train_accuracy`` scores the learned samples with the network at the end of the epoch,
    learning off (``online_train_accuracy`` is the figure scored while learning)."""
    task = small_task()
    history = train_onchip(start(), task, "eprop", epochs=1, seed=0)
    held = set(history.val_indices.tolist())
    learned = [n for n in range(len(task.train.y)) if n not in held]
    x, y = task.train.numpy_spikes()[learned], task.train.y.numpy()[learned]
    after = float(np.mean(golden_run(history.net, x).predictions == y))
    assert history.epochs[0]["train_accuracy"] == after


def test_the_recurrent_and_readout_rates_follow_the_count_of_updates() -> None:
    """Full-resolution cue accumulation (150 labelled steps) learns from scratch with the
    recurrent and readout rates three shifts below the input's; a file that sets one keeps it;
    the binned trial and the digits keep the defaults."""
    hardware = {"n_in": 40, "n_out": 2}
    full = FlowConfig.from_dict({"hardware": hardware, "flow": {"task": "cue-accumulation"}})
    lc = onchip_hardware(full, "eprop", scratch=True).learning
    assert (lc.lr_shift_in, lc.lr_shift_rec, lc.lr_shift_out) == (15, 18, 18)
    table = {**hardware, "learning": {"lr_shift_rec": 16}}
    fixed = FlowConfig.from_dict({"hardware": table, "flow": {"task": "cue-accumulation"}})
    assert fixed.set_learning == {"lr_shift_rec"}
    lc = onchip_hardware(fixed, "fptt", scratch=True).learning
    assert (lc.lr_shift_rec, lc.lr_shift_out) == (16, 18)
    binned = FlowConfig.from_dict(
        {"hardware": hardware, "flow": {"task": "cue-accumulation-short"}}
    )
    assert onchip_hardware(binned, "eprop", scratch=True).learning == LearningConfig()
    digits = FlowConfig.from_dict({})
    assert onchip_hardware(digits, "fptt", scratch=True).learning == LearningConfig(mode="fptt")


def test_the_rate_is_derived_on_the_core_before_its_hidden_rates_are_lowered() -> None:
    """The error shift offset counts from the fastest of the chip's rates.  With ``lr_shift_in``
    set above the others, lowering the recurrent and readout rates for full-resolution cue
    accumulation makes the input's the fastest; a derivation on the lowered core would then
    take three shifts off the offset and undo the lowering.  The rate goes with the core, derived
    once before the lowering."""
    table = {"n_in": 40, "n_out": 2, "learning": {"lr_shift_in": 20}}
    cfg = FlowConfig.from_dict({"hardware": table, "flow": {"task": "cue-accumulation"}})
    hw, rate = onchip_core(cfg, "eprop", scratch=True)
    assert (hw.learning.lr_shift_in, hw.learning.lr_shift_rec, hw.learning.lr_shift_out) == (
        20,
        15 + rate.hidden_shift,
        15 + rate.hidden_shift,
    )
    task = load_task("cue-accumulation")
    x, y = task.train.numpy_spikes(), task.train.y.numpy()
    before = hw.replace(learning=dataclasses.replace(hw.learning, lr_shift_rec=15, lr_shift_out=15))
    assert rate == derive_rate(before, x, y)
    assert rate.hidden_shift == 3 and rate.derived_offset == 4
    assert derive_rate(hw, x, y).derived_offset == 1
