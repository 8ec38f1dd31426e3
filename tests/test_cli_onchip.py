"""``neurofptt train --engine golden``: on-chip learning in fixed point, end to end via the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from neurofptt.cli import main
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.onchip import finetune_offset, initial_network
from neurofptt.flow.stages import LEARNING_VERIFY_SAMPLES
from neurofptt.onchip import random_network
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import LearningConfig

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
rounding = "nearest"
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
    again_record = json.loads((again / "train_onchip.json").read_text())
    assert again_record["init"].endswith("quantized.npz")
    # from a trained network the host lowers the rates (train.onchip_finetune_shift, default 5,
    # plus alpha_shift - 1, default 3, for FPTT)
    # on top, four epochs halve the rate three times (train.onchip_halvings): every epoch
    offset = {"eprop": 5, "fptt": 8}[rule]
    halvings = [0, 1, 2, 3]
    assert [r["error_shift_offset"] for r in again_record["history"]] == [
        offset + k for k in halvings
    ]
    assert [r["error_shift_offset"] for r in record["history"]] == halvings


def test_golden_engine_halves_the_rate_on_schedule(tmp_path: Path) -> None:
    config = tmp_path / "cue.toml"
    config.write_text(CUE.replace("epochs = 4", "epochs = 2\nonchip_halvings = 1"))
    out = tmp_path / "out"
    args = ["train", "--engine", "golden", "--config", str(config), "--no-progress"]
    assert main([*args, "--rule", "eprop", "--out", str(out)]) == 0
    history = json.loads((out / "train_onchip.json").read_text())["history"]
    assert [record["error_shift_offset"] for record in history] == [0, 1]


def test_finetune_offset_follows_the_running_mean_gain() -> None:
    """FPTT's running mean steps 2**(alpha_shift - 1) times e-prop's, so adapting a trained
    network with it lowers the rate by alpha_shift - 1 more; e-prop takes the configured shift."""
    cfg = FlowConfig()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, onchip_finetune_shift=2))
    learning = LearningConfig(alpha_shift=6)
    assert finetune_offset(cfg, dataclasses.replace(learning, mode="eprop")) == 2
    assert finetune_offset(cfg, dataclasses.replace(learning, mode="fptt")) == 2 + 5


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
    # the table sets lr_shift_rec; the readout's rate, which it leaves out, follows the task's
    # five updates a sample (two shifts beyond the drive's offset 0: hidden_rate_shift)
    learning = dataclasses.replace(cfg.hardware.learning, mode="fptt", lr_shift_out=17)
    assert net.config.learning == learning
    assert np.array_equal(net.w_rec, QuantizedNetwork.load(tmp_path / "q.npz").w_rec)
    # without a [hardware.learning] table the default (tuned) constants apply
    bare = dataclasses.replace(cfg, hardware=cfg.hardware.replace(learning=None))
    assert initial_network(bare, "eprop").config.learning == LearningConfig()


@pytest.mark.parametrize("rule", ["eprop", "fptt"])
def test_learning_flow_writes_the_learning_metrics(tmp_path: Path, rule: str, capsys) -> None:
    """``flow --learning``: the rule in float, on chip in the golden model, and in the RTL with
    every weight read back after every update (0 mismatches or the command fails).

    The fine-tune's floor needs a float start that has learned the task, which the quick budget's
    three epochs give at the rate per update FPTT takes on sequences of any length
    (``reference_updates = 0``); at the default, which lowers it on sequences longer than the
    digits, the same three epochs leave FPTT about 0.1 lower on this task (both reach 1.0 in
    fifteen epochs)."""
    config = tmp_path / "cue.toml"
    config.write_text(CUE + "[train.fptt]\nreference_updates = 0\n")
    out = tmp_path / "out"
    args = ["flow", "--learning", rule, "--quick", "--config", str(config), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rule"] == rule and metrics["task"] == "cue"
    assert metrics["rtl_weight_mismatches"] == 0
    # Icarus checks whole samples of at least eight updates: two samples of five here
    assert metrics["rtl_synaptic_updates"] == 2 * 5 * (12 * 24 + 24 * 24 + 24 * 2)
    assert metrics["float_accuracy"] > 0.6 and metrics["onchip_accuracy"] > 0.6  # chance 0.5
    # the float rule learned like the chip: one sample per update, plain SGD
    online = json.loads((out / "float_online" / "train.json").read_text())
    assert metrics["float_online_accuracy"] == online["float_accuracy"] > 0.6
    assert len(metrics["float_online_history"]) == 3
    # from the quantized float network: starts where float ended and keeps learning
    assert metrics["quantized_accuracy"] > 0.6 and metrics["onchip_finetune_accuracy"] > 0.8
    assert len(metrics["onchip_finetune_history"]) == 3
    assert (out / "onchip_finetune" / "quantized.npz").exists()
    assert 0 < metrics["learning_memory_overhead"] < 2
    measured = metrics["learning_cycles_per_update_measured"]
    assert measured == metrics["learning_cycles_per_update"]
    assert measured == metrics["learning_cycles_per_update_formula"] + 1


def test_verify_learn_checks_the_learning_datapath(tmp_path: Path, capsys) -> None:
    """``verify --learn`` on a model learned on chip: the learning core learns on the first
    training samples, every weight and ``W_bar`` read back after every update (0 mismatches);
    plain ``verify`` runs the same model's core as an inference core (``learn = 0``).  Two
    samples keep the test short (the default is checked in the mismatch test)."""
    config = tmp_path / "cue.toml"
    config.write_text(CUE.replace("epochs = 4", "epochs = 1"))
    out = tmp_path / "out"
    args = ["train", "--engine", "golden", "--rule", "fptt", "--config", str(config)]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    model = str(out / "quantized.npz")
    capsys.readouterr()
    verify = ["verify", "--model", model, "--task", "cue", "--samples", "2", "--out", str(out)]
    assert main([*verify, "--learn"]) == 0
    record = json.loads((out / "verify_learning.json").read_text())
    assert json.loads(capsys.readouterr().out) == record
    assert record["task"] == "cue" and record["rule"] == "fptt"
    assert record["rtl_mismatches"] == 0 and record["rtl_complete"]
    assert record["mismatch_report"] == "" and record["first_mismatches"] == []
    assert record["rtl_learning_samples"] == 2
    assert record["rtl_updates"] == 2 * 5  # supervised_steps = 5, an update on each
    assert record["rtl_synaptic_updates"] == 10 * (12 * 24 + 24 * 24 + 24 * 2)
    # FPTT reads W_bar back too: twice the values of the weights
    assert record["rtl_values_compared"] == 2 * record["rtl_synaptic_updates"]
    measured = record["learning_cycles_per_update_measured"]
    assert measured == record["learning_cycles_per_update"]
    assert measured == record["learning_cycles_per_update_formula"] + 1
    assert record["seconds"] > 0
    # inference on the learning core: the extra event fields are 0, i_weights is idle
    assert main(verify) == 0
    inference = json.loads((out / "verify.json").read_text())
    assert inference["rtl_mismatches"] == 0 and inference["rtl_samples"] == 2


def test_verify_learn_refuses_what_cannot_learn(tmp_path: Path, capsys) -> None:
    """A model without a learning section, a task of another size, a negative sample count and
    an explicit Verilog file are each one clear error line (exit 2), before any simulation."""
    plain = tmp_path / "plain.npz"
    random_network(HardwareConfig(n_in=12, n_rec=24, n_out=2), seed=0, spread=4).save(plain)
    verify = ["verify", "--learn", "--task", "cue", "--out", str(tmp_path)]
    assert main([*verify, "--model", str(plain)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {plain} has no learning section (hardware.learning)")
    assert "neurofptt train --engine golden" in err and "[hardware.learning]" in err
    learning = tmp_path / "learning.npz"
    hw = HardwareConfig(n_in=12, n_rec=24, n_out=2, lanes=1, learning=LearningConfig())
    random_network(hw, seed=0, spread=4).save(learning)
    assert main([*verify[:-4], "--model", str(learning), "--out", str(tmp_path)]) == 2
    assert "task 'digits' has 32 inputs and 10 classes" in capsys.readouterr().err
    assert main([*verify, "--model", str(learning), "--samples", "-1"]) == 2
    assert "samples must be >= 0 (0 = the whole training set)" in capsys.readouterr().err
    assert main([*verify, "--model", str(learning), "--verilog", str(tmp_path / "x.v")]) == 2
    assert "--verilog cannot go with --learn" in capsys.readouterr().err
    assert not (tmp_path / "verify_learning.json").exists()


def test_verify_learn_fails_on_a_mismatch(tmp_path: Path, capsys, monkeypatch) -> None:
    """A mismatch of the learning RTL fails the command with the report, after writing
    ``verify_learning.json`` (the simulation is replaced by a result holding mismatches)."""
    from neurofptt.flow import stages
    from neurofptt.verify import LearningRtlResult, Mismatch
    from neurofptt.verify.learning import golden_learning_run

    hw = HardwareConfig(n_in=12, n_rec=24, n_out=2, lanes=1, learning=LearningConfig())
    random_network(hw, seed=0, spread=4).save(tmp_path / "learning.npz")
    bad = [Mismatch(0, 19, "w_rec", 3, 5, 6, pre=7), Mismatch(1, 19, "w_out", 1, -2, 0, pre=4)]

    def fake_run(net, spikes, labels, work_dir, simulator="icarus") -> LearningRtlResult:
        return LearningRtlResult(
            mismatches=bad,
            n_mismatches=25,
            updates=2,
            synaptic_updates=2 * 912,
            compared=2 * 912,
            update_cycles=np.array([457, 457]),
            golden=golden_learning_run(net, spikes, labels),
            work_dir=Path(work_dir),
            log_file=Path(work_dir) / "sim.log",
        )

    monkeypatch.setattr(stages, "run_rtl_learning", fake_run)
    model = str(tmp_path / "learning.npz")
    args = ["verify", "--learn", "--model", model, "--task", "cue", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: RTL differs from the golden model: 25 mismatch(es)")
    assert "sample 0 step 19 w_rec[3, 7] after the update: expected 5, actual 6" in err
    assert "... and 23 more" in err and "verify_learning.json" in err
    record = json.loads((tmp_path / "verify_learning.json").read_text())
    assert record["rtl_mismatches"] == 25
    assert record["rtl_learning_samples"] == LEARNING_VERIFY_SAMPLES == 8  # the default
    assert record["first_mismatches"][1]["signal"] == "w_out"
