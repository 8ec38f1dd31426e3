"""Flip-flops moved into the output registers of ECP5 multipliers, in a Yosys JSON netlist.

An ECP5 MULT18X18D has registers at its inputs and at its output, but Yosys 0.70 maps every
multiplication to a MULT18X18D with all of them off and puts the design's registers in the
fabric (it packs registers into DSP blocks only for the Nexus family, ``lattice_dsp_nexus``).
The placer then puts a product's register beside the logic it feeds, which on a wide core can
be 30 rows from the multiplier: the multiplier's 3.9 ns and two long routes make the path.  A
register that takes the whole product and nothing else is exactly the block's output register,
so :func:`pack_output_registers` moves it there, and nextpnr times the block with its output
register (its ``MULT18X18D_REGS_OUTPUT`` timing): the product's route then starts at the
block's register, and the multiply ends at it.

The Verilog, and every simulation of it, is unchanged: the netlist computes the same values on
the same clock edges.  Only a register that provably is the output register is moved, one
with a constant enable and no reset (the lanes' and the learning signal's first product
registers, :func:`~neurofptt.hdl.arith.registered_product`, and ``L_j psi_j``'s register);
a multiplier whose used outputs are not all such registers on one clock is left as it is.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["pack_output_registers"]

_MULT, _FF = "MULT18X18D", "TRELLIS_FF"
#: the parameters a fabric flip-flop has when it is a plain register: clocked on the rising
#: edge, always enabled, no set or reset, 0 after configuration (Yosys writes a string
#: parameter that looks like a bit vector with a trailing space, hence the strip)
_PLAIN_FF = {"CLKMUX": "CLK", "CEMUX": "1", "REGSET": "RESET", "GSR": "DISABLED"}
#: the output register on clock, enable and reset pins of their own, tied to 1 and 0
_OUTPUT_REGISTER = {
    "REG_OUTPUT_CLK": "CLK0",
    "REG_OUTPUT_CE": "CE0",
    "REG_OUTPUT_RST": "RST0",
    "GSR": "DISABLED",
}
_TIED = {"CE0": "1", "RST0": "0"}


def _is_product_bit(port: str) -> bool:
    return port.startswith("P") and port[1:].isdigit()


def _plain_register(cell: dict[str, Any]) -> bool:
    params = {k: str(v).strip() for k, v in cell.get("parameters", {}).items()}
    if any(params.get(k) != v for k, v in _PLAIN_FF.items()):
        return False
    return cell["connections"].get("LSR", ["0"]) == ["0"]


def _unregistered(cell: dict[str, Any]) -> bool:
    params = cell.get("parameters", {})
    return all(
        str(params.get(name, "NONE")).strip() == "NONE"
        for name in ("REG_OUTPUT_CLK", "REG_PIPELINE_CLK")
    )


def _output_registers(
    mult: dict[str, Any], cells: dict[str, dict[str, Any]], sinks: dict[int, list[tuple[str, str]]]
) -> tuple[dict[str, str], list[Any]] | None:
    """The flip-flop each product bit in use feeds (``{"P3": name, ...}``) and their clock, or
    ``None`` unless every such bit drives one plain flip-flop and nothing else, all on one
    clock."""
    registers = {}
    for port, bits in mult["connections"].items():
        if not _is_product_bit(port):
            continue
        (bit,) = bits  # a product pin is one bit
        if not isinstance(bit, int) or not sinks[bit]:
            continue
        if len(sinks[bit]) != 1:
            return None
        name, pin = sinks[bit][0]
        ff = cells.get(name)
        if pin != "DI" or ff is None or ff["type"] != _FF or not _plain_register(ff):
            return None
        registers[port] = name
    clocks = {tuple(cells[name]["connections"]["CLK"]) for name in registers.values()}
    return (registers, list(clocks.pop())) if len(clocks) == 1 else None


def pack_output_registers(netlist: dict[str, Any], top: str) -> int:
    """Move into each unregistered MULT18X18D of module ``top`` the flip-flops its product
    feeds, where every product bit in use drives one plain flip-flop (:data:`_PLAIN_FF`) and
    nothing else, all on one clock; edits ``netlist`` (Yosys's ``write_json`` form) in place
    and returns the number of flip-flops moved."""
    module = netlist["modules"][top]
    cells: dict[str, dict[str, Any]] = module["cells"]
    sinks: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for port in module.get("ports", {}).values():
        for bit in port["bits"]:
            if isinstance(bit, int):
                sinks[bit].append(("", "port"))
    for name, cell in cells.items():
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if directions.get(port) != "output":
                for bit in bits:
                    if isinstance(bit, int):
                        sinks[bit].append((name, port))

    moved = 0
    for mult in [cell for cell in cells.values() if cell["type"] == _MULT]:
        found = _output_registers(mult, cells, sinks) if _unregistered(mult) else None
        if found is None:
            continue
        registers, clock = found
        for port, name in registers.items():
            mult["connections"][port] = cells.pop(name)["connections"]["Q"]
        mult["connections"].update(CLK0=clock, **{k: [v] for k, v in _TIED.items()})
        mult.setdefault("port_directions", {}).update(dict.fromkeys(("CLK0", *_TIED), "input"))
        mult.setdefault("parameters", {}).update(_OUTPUT_REGISTER)
        moved += len(registers)
    return moved
