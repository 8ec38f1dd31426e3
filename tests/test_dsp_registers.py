"""Product registers moved into ECP5 multipliers' output registers, on small Yosys netlists.

The netlists are written by hand in the form Yosys's ``write_json`` gives after ``synth_ecp5``
(checked against the 32-128-10 e-prop core's): a MULT18X18D with no parameters set, each product
bit a net of its own, and TRELLIS_FF cells whose always-on enable is the parameter ``CEMUX = "1 "``
(the trailing space marks a string) and whose absent reset is ``LSR`` tied to ``"0"``.  The real
Yosys and nextpnr run is in ``tests/test_synth.py``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from neurofptt.hdl.dsp_registers import pack_output_registers

CLK, OTHER_CLK, RST = 2, 3, 4
PLAIN = {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET"}


def _ff(d: int, q: int, clk: int = CLK, **changes: Any) -> dict[str, Any]:
    params = {**PLAIN, **changes.pop("parameters", {})}
    connections = {"CLK": [clk], "DI": [d], "LSR": ["0"], "Q": [q], **changes}
    directions = {"CLK": "input", "DI": "input", "LSR": "input", "Q": "output"}
    directions.update(dict.fromkeys(changes, "input"))
    return {"type": "TRELLIS_FF", "parameters": params, "port_directions": directions,
            "connections": connections}  # fmt: skip


def _netlist(ffs: dict[str, dict[str, Any]], **mult_params: str) -> dict[str, Any]:
    """A multiplier ``m`` whose product bits ``P0..P2`` are nets 10..12 (``P3`` unused), the
    given flip-flops, and a LUT reading net 20 (the registered product's bit 0)."""
    mult = {
        "type": "MULT18X18D",
        "parameters": dict(mult_params),
        "port_directions": {"A0": "input", "B0": "input", **{f"P{i}": "output" for i in range(4)}},
        "connections": {"A0": [5], "B0": [6], "P0": [10], "P1": [11], "P2": [12], "P3": [13]},
    }
    lut = {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
           "connections": {"A": [20], "Z": [30]}}  # fmt: skip
    ports = {"clk": {"direction": "input", "bits": [CLK]}, "y": {"direction": "output",
             "bits": [30]}}  # fmt: skip
    return {"modules": {"top": {"ports": ports, "cells": {"m": mult, "lut": lut, **ffs}}}}


def _registers(**changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Plain flip-flops from product bits 10..12 to nets 20..22, ``changes`` per name."""
    return {f"r{i}": _ff(10 + i, 20 + i, **changes.get(f"r{i}", {})) for i in range(3)}


def test_a_products_registers_become_the_output_register() -> None:
    netlist = _netlist(_registers())
    assert pack_output_registers(netlist, "top") == 3
    cells = netlist["modules"]["top"]["cells"]
    assert set(cells) == {"m", "lut"}  # the flip-flops are gone
    mult = cells["m"]
    # the block drives the registers' outputs; its clock is theirs, enable 1, reset 0
    assert [mult["connections"][f"P{i}"] for i in range(4)] == [[20], [21], [22], [13]]
    assert mult["connections"]["CLK0"] == [CLK]
    assert mult["connections"]["CE0"] == ["1"] and mult["connections"]["RST0"] == ["0"]
    assert mult["parameters"]["REG_OUTPUT_CLK"] == "CLK0"
    assert mult["parameters"]["REG_OUTPUT_CE"] == "CE0"
    assert mult["parameters"]["REG_OUTPUT_RST"] == "RST0"
    assert mult["port_directions"]["CLK0"] == "input"
    assert cells["lut"]["connections"]["A"] == [20]  # what read the register reads the block
    assert pack_output_registers(netlist, "top") == 0  # registered already


@pytest.mark.parametrize(
    ("why", "changes"),
    [
        ("a reset", {"r1": {"LSR": [RST]}}),
        ("an enable", {"r2": {"CE": [7], "parameters": {"CEMUX": "CE"}}}),
        ("a set after configuration", {"r0": {"parameters": {"REGSET": "SET"}}}),
        ("the falling edge", {"r0": {"parameters": {"CLKMUX": "INV"}}}),
    ],
)
def test_a_register_that_is_more_than_a_register_stays(why: str, changes: dict) -> None:
    netlist = _netlist(_registers(**changes))
    before = copy.deepcopy(netlist)
    assert pack_output_registers(netlist, "top") == 0, why
    assert netlist == before


def test_a_product_bit_read_elsewhere_keeps_every_register() -> None:
    netlist = _netlist(_registers())
    netlist["modules"]["top"]["cells"]["lut"]["connections"]["A"] = [11]  # P1 read by a LUT
    before = copy.deepcopy(netlist)
    assert pack_output_registers(netlist, "top") == 0
    assert netlist == before


def test_a_product_bit_on_a_port_keeps_every_register() -> None:
    netlist = _netlist(_registers())
    netlist["modules"]["top"]["ports"]["p"] = {"direction": "output", "bits": [12]}
    assert pack_output_registers(netlist, "top") == 0


def test_registers_on_two_clocks_stay() -> None:
    registers = _registers()
    registers["r2"] = _ff(12, 22, clk=OTHER_CLK)
    netlist = _netlist(registers)
    assert pack_output_registers(netlist, "top") == 0


def test_a_pipelined_multiplier_stays() -> None:
    netlist = _netlist(_registers(), REG_PIPELINE_CLK="CLK0")
    assert pack_output_registers(netlist, "top") == 0


def test_a_multiplier_with_no_registered_product_stays() -> None:
    netlist = _netlist({})
    assert pack_output_registers(netlist, "top") == 0
    assert netlist["modules"]["top"]["cells"]["m"]["parameters"] == {}
