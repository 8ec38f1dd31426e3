"""End-to-end through the CLI: the quick flow, the single stages, resume and the error paths."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurofptt.cli import main

SMALL = """
[hardware]
n_in = 32
n_rec = 16
n_out = 10

[train]
epochs = 2
batch_size = 64

[flow]
rtl_samples = 4
"""

REQUIRED_KEYS = {
    "task",
    "rule",
    "float_accuracy",
    "golden_accuracy",
    "rtl_accuracy",
    "rtl_samples",
    "rtl_neuron_steps",
    "rtl_mismatches",
    "verilog",
    "fpga",
}


@pytest.fixture(scope="module")
def quick_flow(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flow")
    assert main(["flow", "--out", str(out), "--quick", "--no-progress"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.rtl
def test_quick_flow_end_to_end(quick_flow: Path) -> None:
    metrics = json.loads((quick_flow / "metrics.json").read_text())
    assert set(metrics) >= REQUIRED_KEYS
    assert metrics["task"] == "digits" and metrics["rule"] == "fptt"
    assert metrics["rtl_mismatches"] == 0
    assert metrics["rtl_samples"] == 16
    assert metrics["rtl_neuron_steps"] == 16 * 8 * (128 + 10)
    assert metrics["rtl_accuracy"] == metrics["golden_accuracy_on_rtl_samples"]
    assert metrics["float_accuracy"] > 0.5  # three epochs are far above chance (0.1)
    assert abs(metrics["golden_accuracy"] - metrics["float_accuracy"]) <= 0.05
    assert Path(metrics["verilog"]).is_file()
    if metrics["fpga"] is None:
        assert metrics["fpga_reason"]
    else:
        assert metrics["fpga"]["lut"] > 0 and metrics["fpga"]["bram"] >= 1
    for name in (
        "report.md",
        "training_curve.png",
        "membrane_traces.png",
        "checkpoint.pt",
        "quantized.npz",
    ):
        assert (quick_flow / name).is_file(), name
    report = (quick_flow / "report.md").read_text()
    assert "mismatches: **0**" in report


@pytest.mark.slow
@pytest.mark.rtl
def test_stages_run_on_their_own(quick_flow: Path, tmp_path: Path) -> None:
    shutil.copy(quick_flow / "checkpoint.pt", tmp_path / "checkpoint.pt")
    cmd = [sys.executable, "-m", "neurofptt.cli"]
    for args in (["quantize"], ["generate"], ["verify", "--samples", "3"]):
        proc = subprocess.run(
            cmd + args + ["--out", str(tmp_path)], capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr
    verify = json.loads((tmp_path / "verify.json").read_text())
    assert verify["rtl_mismatches"] == 0 and verify["rtl_samples"] == 3
    # the same checkpoint quantizes to the same integer model
    a = (quick_flow / "quantized.npz").read_bytes()
    b = (tmp_path / "quantized.npz").read_bytes()
    assert a == b


def test_resume_after_a_crash_gives_the_same_result(tmp_path: Path, monkeypatch) -> None:
    from neurofptt.learning import trainer

    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    full, split = tmp_path / "full", tmp_path / "split"
    args = ["train", "--config", str(cfg), "--no-progress"]
    assert main([*args, "--out", str(full)]) == 0

    save = trainer.save_checkpoint

    def save_then_crash(*a, **kw):
        save(*a, **kw)
        raise KeyboardInterrupt  # the process dies right after the first epoch's checkpoint

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    assert main([*args, "--out", str(split)]) == 130
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    assert torch.load(split / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert main([*args, "--out", str(split), "--resume"]) == 0
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert a["history"] == b["history"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["picked"]["epoch"] == b["picked"]["epoch"]
    for key in a["picked"]["model"]:
        assert torch.equal(a["picked"]["model"][key], b["picked"]["model"][key]), key
    assert (
        json.loads((full / "train.json").read_text())["history"]
        == json.loads((split / "train.json").read_text())["history"]
    )
    # the per-epoch log of the interrupted run continues without repeating its first epoch
    logged = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [1, 2]


def test_checkpoint_that_does_not_match_config(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL.replace("epochs = 2", "epochs = 1"))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(SMALL.replace("n_rec = 16", "n_rec = 24"))
    capsys.readouterr()
    assert main(["quantize", "--config", str(other), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not match the hardware config" in err and "n_rec: saved 16 vs current 24" in err
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert (
        main(["quantize", "--checkpoint", str(tmp_path / "broken.pt"), "--out", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert f"{tmp_path / 'broken.pt'} is not a neurofptt checkpoint" in err
    assert "delete it or pass another with --checkpoint" in err and "weights_only" not in err


def test_bad_config_is_one_clear_line(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[hardware]\nweight_bits = 40\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: hardware.weight_bits = 40 is out of range")
    assert "Traceback" not in err


def test_verify_without_simulator(tmp_path: Path, capsys, monkeypatch) -> None:
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL.replace("epochs = 2", "epochs = 1"))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    assert main(["quantize", "--out", str(tmp_path)]) == 0
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    capsys.readouterr()
    assert main(["verify", "--out", str(tmp_path), "--samples", "2"]) == 2
    err = capsys.readouterr().err
    assert "iverilog" in err.lower() or "icarus" in err.lower()


def test_resume_with_other_settings_is_refused(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL.replace("epochs = 2", "epochs = 1"))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(SMALL.replace("epochs = 2", "epochs = 1").replace("n_rec = 16", "n_rec = 24"))
    capsys.readouterr()
    args = ["train", "--config", str(other), "--out", str(tmp_path), "--resume", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "flow.hardware.n_rec: saved 16 vs current 24" in err
    assert main([*args[:2], str(cfg), *args[3:-2], "--rule", "bptt", "--resume"]) == 2
    assert "train.rule: saved 'fptt' vs current 'bptt'" in capsys.readouterr().err


def test_flow_refuses_a_model_the_hardware_cannot_run(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "gru.toml"
    cfg.write_text("[train]\nmodel = 'gru'\n")
    assert main(["flow", "--config", str(cfg), "--out", str(tmp_path), "--quick"]) == 2
    assert "one recurrent LIF layer" in capsys.readouterr().err
