"""``neurofptt train --engine golden``: on-chip learning in fixed point, end to end via the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from neurofptt.cli import main
from neurofptt.flowconfig import FlowConfig
from neurofptt.onchip_flow import DEFAULT_LEARNING, initial_network
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.onchip import random_network

CUE = """
[hardware]
n_in = 12
n_rec = 24
n_out = 2
leak_shift = 4
out_leak_shift = 2
w_in_shift = 3
w_rec_shift = 2
w_out_shift = 2
lanes = 2
[hardware.learning]
supervised_steps = 5
lr_shift_rec = 22
[train]
epochs = 4
[flow]
task = "cue"
"""


def train(tmp_path: Path, *extra: str) -> int:
    config = tmp_path / "cue.toml"
    config.write_text(CUE)
    args = ["train", "--engine", "golden", "--config", str(config), "--no-progress", *extra]
    return main(args)


@pytest.mark.parametrize("rule", ["eprop", "fptt"])
def test_golden_engine_learns_the_cue_task(tmp_path: Path, rule: str, capsys) -> None:
    out = tmp_path / rule
    assert train(tmp_path, "--rule", rule, "--out", str(out)) == 0
    record = json.loads((out / "train_onchip.json").read_text())
    assert record["rule"] == rule and record["engine"] == "golden"
    assert len(record["history"]) == 4 and record["updates"] > 0
    assert record["onchip_accuracy"] >= 0.75  # chance is 0.5
    assert record["learning_memory_overhead"] > 0 and record["learning_cycles_per_update"] > 0
    net = QuantizedNetwork.load(out / "quantized.npz")
    assert net.config.learning.mode == rule
    # continue learning from the learned network
    again = tmp_path / f"{rule}-again"
    assert (
        train(tmp_path, "--rule", rule, "--out", str(again), "--init", str(out / "quantized.npz"))
        == 0
    )
    assert json.loads((again / "train_onchip.json").read_text())["init"].endswith("quantized.npz")


def test_golden_engine_refuses_other_rules_and_foreign_networks(tmp_path: Path, capsys) -> None:
    assert train(tmp_path, "--rule", "bptt", "--out", str(tmp_path / "a")) == 2
    assert "the golden engine learns with ('eprop', 'fptt')" in capsys.readouterr().err
    other = random_network(HardwareConfig(n_in=12, n_rec=8, n_out=2), seed=0, spread=4)
    other.save(tmp_path / "other.npz")
    assert train(tmp_path, "--out", str(tmp_path / "b"), "--init", str(tmp_path / "other.npz")) == 2
    assert "quantized for another hardware config" in capsys.readouterr().err


def test_init_keeps_the_shifts_the_quantizer_chose(tmp_path: Path) -> None:
    """``quantize`` picks each matrix's shift, so a quantized network differs from its flow
    config there; learning starts from it with its own shifts and the flow's learning table."""
    config = tmp_path / "cue.toml"
    config.write_text(CUE)
    cfg = FlowConfig.load(config)
    hw = cfg.hardware.replace(learning=None, w_in_shift=1, w_rec_shift=0, w_out_shift=5)
    random_network(hw, seed=0, spread=9).save(tmp_path / "q.npz")
    net = initial_network(cfg, "fptt", tmp_path / "q.npz")
    assert (net.config.w_in_shift, net.config.w_rec_shift, net.config.w_out_shift) == (1, 0, 5)
    assert net.config.learning == dataclasses.replace(cfg.hardware.learning, mode="fptt")
    assert np.array_equal(net.w_rec, QuantizedNetwork.load(tmp_path / "q.npz").w_rec)
    # without a [hardware.learning] table the flow's tuned constants apply
    bare = dataclasses.replace(cfg, hardware=cfg.hardware.replace(learning=None))
    assert initial_network(bare, "eprop").config.learning == DEFAULT_LEARNING


@pytest.mark.parametrize("rule", ["eprop", "fptt"])
def test_learning_flow_writes_the_learning_metrics(tmp_path: Path, rule: str, capsys) -> None:
    """``flow --learning``: the rule in float, on chip in the golden model, and in the RTL with
    every weight read back after every update (0 mismatches or the command fails)."""
    config = tmp_path / "cue.toml"
    config.write_text(CUE)
    out = tmp_path / "out"
    args = ["flow", "--learning", rule, "--quick", "--config", str(config), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rule"] == rule and metrics["task"] == "cue"
    assert metrics["rtl_weight_mismatches"] == 0
    assert metrics["rtl_synaptic_updates"] >= 10_000
    assert metrics["float_accuracy"] > 0.6 and metrics["onchip_accuracy"] > 0.6  # chance 0.5
    # from the quantized float network: starts where float ended and keeps learning
    assert metrics["quantized_accuracy"] > 0.6 and metrics["onchip_finetune_accuracy"] > 0.8
    assert len(metrics["onchip_finetune_history"]) == 3
    assert (out / "onchip_finetune" / "quantized.npz").exists()
    assert 0 < metrics["learning_memory_overhead"] < 2
    measured = metrics["learning_cycles_per_update_measured"]
    assert measured == metrics["learning_cycles_per_update"]
    assert measured == metrics["learning_cycles_per_update_formula"] + 1
