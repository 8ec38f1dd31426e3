"""The cocotb Makefile flow in ``sim/``: ``make -C sim`` builds the reference Verilog of
``hdl/rtl`` with Icarus, writes a stimulus from ``hdl/quantized.npz`` with the golden model and
runs ``sim/tb_core.py``; it must pass with zero mismatches, and its results must say so too."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[1]

needs_tools = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("iverilog", "vvp", "make")),
    reason="Icarus Verilog (apt-get install iverilog) and make are needed",
)


@pytest.mark.rtl
@needs_tools
def test_makefile_flow_matches_the_golden_model(tmp_path: Path) -> None:
    # the flow takes cocotb-config, the embedded Python and the package from this environment
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.run(
        ["make", "-C", str(ROOT / "sim"), f"OUT={tmp_path}", "SAMPLES=2", "STEPS=6", "SEED=4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "FAIL=0" in proc.stdout and "<failure" not in (tmp_path / "results.xml").read_text()

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
