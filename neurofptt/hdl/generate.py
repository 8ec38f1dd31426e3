"""Verilog generation: a quantized network in, a self-contained RTL design directory out.

``generate_verilog`` writes::

    <name>.v      the core, weights embedded as memory initialisers (plain Verilog-2005)
    w_in.mem      weight memory images, $readmemh format: one two's-complement hex word per
    w_rec.mem     line, in RTL address order (see neurofptt.hdl.core for the address maps)
    w_out.mem
    design.json   configuration, ports, payload bit fields, memories and the cycle formula

The output is deterministic: the same network and name give byte-identical files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import wiring

from neurofptt.errors import ConfigError
from neurofptt.hdl.blocks import WRITE_LATENCY
from neurofptt.hdl.core import LifCore
from neurofptt.hdl.learning import sweep_timing
from neurofptt.hdl.ports import (
    READ_WEIGHTS,
    EventKind,
    core_signature,
    event_layout,
    learn_event_layout,
    readout_layout,
    weight_dump_layout,
)
from neurofptt.hdl.rows import memory_images
from neurofptt.io import atomic_write_bytes
from neurofptt.onchip.factors import quotient_bits
from neurofptt.quant.config import lane_rows
from neurofptt.quant.network import QuantizedNetwork

__all__ = [
    "GeneratedDesign",
    "add_time_zero_kick",
    "design_description",
    "generate_verilog",
    "render_verilog",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CYCLES_PER_STEP = (
    "R * (n_input_events + n_prev_spikes + 1) + Ro * n_new_spikes + n_out + 12 + n_ignored_events"
    " + (R > 1) * n_repeated_spikes"
)
CYCLES_PER_CLEAR = "max(R, Ro) + 1"

_PORT_MEANING = {
    "clk": "clock, rising edge",
    "rst": "synchronous reset, active high: as a CLEAR (rows zeroed, outputs in progress "
    "dropped); busy for max(R, Ro) cycles after it, weights kept",
    "i_event__payload": "input address event {index, kind}",
    "i_event__valid": "input event valid",
    "i_event__ready": "core accepts an input event this cycle",
    "o_spike__payload": "recurrent spike event {index, kind}",
    "o_spike__valid": "spike event valid (held until ready)",
    "o_spike__ready": "consumer accepts the spike event",
    "o_readout__payload": "readout value {last, value, index}",
    "o_readout__valid": "readout value valid (held until ready)",
    "o_readout__ready": "consumer accepts the readout value",
    "busy": "an event is in progress or outputs are pending",
    "o_weights__payload": "learning core: weight word {last, wbar, w, matrix} of a READ dump",
    "o_weights__valid": "weight word valid (held until ready)",
    "o_weights__ready": "consumer accepts the weight word",
    "i_weights__payload": "learning core: weight word {last, wbar, w, matrix} to load, in the "
    "dump's order (matrix is not read)",
    "i_weights__valid": "weight word to load valid",
    "i_weights__ready": "core writes the weight word this cycle (high while idle)",
}
#: the weight words a load takes, a dump sends and an update sweeps
WEIGHT_WORDS = "n_rec * Ro + (n_in + n_rec) * R"
#: what the softmax error's two passes add (``Q``: the quotient bits, in ``design.json``)
CYCLES_OF_SOFTMAX = "n_out * (Q + 6) + 4"


@dataclass(frozen=True)
class GeneratedDesign:
    """Paths of the files written by :func:`generate_verilog`."""

    name: str
    out_dir: Path
    verilog: Path
    w_in_mem: Path
    w_rec_mem: Path
    w_out_mem: Path
    design_json: Path

    @property
    def files(self) -> list[Path]:
        return [self.verilog, self.w_in_mem, self.w_rec_mem, self.w_out_mem, self.design_json]


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"module name {name!r} is not a Verilog identifier; use letters, digits and "
            "underscores, starting with a letter"
        )


# Yosys makes every `always @*` block sensitive to a dummy register declared as `reg d = 0;` so
# that the block runs once at time zero.  That relies on Verilog-2005 semantics, where the
# initialiser is an event.  Under IEEE 1800 (iverilog -g2012, which cocotb uses, and other
# SystemVerilog simulators) initialisers are applied before any process starts, so blocks that
# depend only on registers that keep their initial value (such as `i_event__ready` in the idle
# state) would stay X.  A simulation-only `initial #0` assignment gives the blocks that event.
_ALWAYS_TRIGGER = re.compile(
    r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +=\s*0;\n", re.M
)
_TIME_ZERO_KICK = (
    "`ifndef SYNTHESIS\n"
    "{indent}// wake every always @* block at time zero (also under SystemVerilog semantics)\n"
    "{indent}initial #0 {name} = 1'h1;\n"
    "`endif\n"
)


def add_time_zero_kick(text: str) -> str:
    """Return ``text`` (Verilog from Amaranth's backend) with a simulation-only time-zero wake-up.

    Every ``always @*`` block that the backend guards with a dummy ``reg ... = 0`` trigger gets an
    ``initial #0`` assignment to that trigger inside `` `ifndef SYNTHESIS``, so event-driven
    simulators (Icarus, Verilator's timing mode) evaluate the block once at time zero; synthesis
    sees the text unchanged.  Any top that wraps the core (the board top, too) needs the same
    treatment, hence a public helper.
    """

    def insert(match: re.Match) -> str:
        return match.group(0) + _TIME_ZERO_KICK.format(
            indent=match.group(1), name=match.group(2) + " "
        )

    return _ALWAYS_TRIGGER.sub(insert, text)


def render_verilog(net: QuantizedNetwork, name: str = "neurofptt_core") -> str:
    """Return the Verilog text of the core for ``net`` (top module ``name``)."""
    _check_name(name)
    core = LifCore(net)
    return add_time_zero_kick(verilog.convert(core, name=name, emit_src=False))


def port_list(net: QuantizedNetwork) -> list[dict[str, Any]]:
    """The top-level ports of the generated module: name, direction, width, meaning."""
    ports = [
        {"name": "clk", "direction": "input", "width": 1},
        {"name": "rst", "direction": "input", "width": 1},
    ]
    for path, member in core_signature(net.config).members.flatten():
        if member.is_signature:
            continue
        name = "__".join(str(part) for part in path)
        direction = "input" if member.flow == wiring.In else "output"
        ports.append(
            {"name": name, "direction": direction, "width": Shape.cast(member.shape).width}
        )
    for port in ports:
        port["meaning"] = _PORT_MEANING.get(port["name"], "")
    return ports


def _fields(layout) -> list[dict[str, Any]]:
    return [{"name": name, "lsb": field.offset, "width": field.width} for name, field in layout]


def design_description(net: QuantizedNetwork, name: str = "neurofptt_core") -> dict[str, Any]:
    """The content of ``design.json``."""
    cfg = net.config
    lanes = cfg.lanes
    rows, out_rows = lane_rows(cfg.n_rec, lanes), lane_rows(cfg.n_out, lanes)
    wb = cfg.weight_bits
    neuron_bits = cfg.acc_bits + cfg.membrane_bits + 1
    readout_bits = cfg.acc_bits + cfg.membrane_bits
    description = {
        "name": name,
        "lanes": lanes,
        "config": cfg.to_dict(),
        "ports": port_list(net),
        "payloads": {
            "i_event": _fields(event_layout(cfg.n_in)),
            "o_spike": _fields(event_layout(cfg.n_rec)),
            "o_readout": _fields(readout_layout(cfg)),
        },
        "event_kinds": {kind.name: kind.value for kind in EventKind},
        "memories": {
            "w_in": {
                "depth": cfg.n_in * rows,
                "width": lanes * wb,
                "file": "w_in.mem",
                "word": "address i * R + r, lane l (bits l*wb..) = w_in[r * lanes + l, i]",
            },
            "w_rec": {
                "depth": cfg.n_rec * rows,
                "width": lanes * wb,
                "file": "w_rec.mem",
                "word": "address i * R + r, lane l = w_rec[r * lanes + l, i]",
            },
            "w_out": {
                "depth": cfg.n_rec * out_rows,
                "width": lanes * wb,
                "file": "w_out.mem",
                "word": "address j * Ro + s, lane l = w_out[s * lanes + l, j]",
            },
            "state": {
                "depth": rows,
                "width": lanes * neuron_bits,
                "word": "per lane {acc, v, z} from the least significant bit",
            },
            "readout": {
                "depth": out_rows,
                "width": lanes * readout_bits,
                "word": "per lane {acc, o} from the least significant bit",
            },
            "spikes": {
                "depth": rows,
                "width": max(1, (rows - 1).bit_length()) + lanes,
                "word": "{row, mask}: rows with spikes in the last step, ascending",
            },
        },
        "rows": rows,
        "out_rows": out_rows,
        "acc_bits": cfg.acc_bits,
        "cycles_per_step": CYCLES_PER_STEP,
        "cycles_per_clear": CYCLES_PER_CLEAR,
    }
    if cfg.learning is not None:
        timing = sweep_timing(cfg)
        description["payloads"]["i_event"] = _fields(learn_event_layout(cfg))
        description["payloads"]["o_weights"] = _fields(weight_dump_layout(cfg))
        description["payloads"]["i_weights"] = _fields(weight_dump_layout(cfg))
        description["event_kinds"]["READ_WEIGHTS"] = READ_WEIGHTS
        description["learning"] = {
            "dump_order": "W_out, W_in, W_rec; each in address order, as the weight memories",
            "load_order": "as dump_order; last (or the final W_rec word) ends the load, which "
            "zeroes FPTT's previous factors and resets the LFSRs to their seeds",
            # the words, the idle cycles between W_out and W_in, the pipeline's drain and the
            # cycles that register the request and address the first word
            "cycles_per_update": f"{WEIGHT_WORDS} + {timing.gap + timing.drain + 1}",
            # a word a cycle, and the cycle that writes the last
            "cycles_per_load": f"{WEIGHT_WORDS} + {WRITE_LATENCY}",
        }
        if cfg.learning.error == "softmax":
            description["learning"]["cycles_per_update"] += f" + {CYCLES_OF_SOFTMAX}"
            description["learning"]["Q"] = quotient_bits(cfg.learning.target)
    return description


def mem_text(values: list[int], bits: int) -> str:
    """``$readmemh`` text: one word of ``bits`` bits per line (negative values in two's
    complement)."""
    digits = (bits + 3) // 4
    mask = (1 << bits) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def generate_verilog(
    net: QuantizedNetwork,
    out_dir: str | Path,
    name: str = "neurofptt_core",
) -> GeneratedDesign:
    """Write the Verilog, the weight memory images and ``design.json`` into ``out_dir``.

    Files whose content is unchanged are not rewritten, so their modification times (and an
    Icarus build that depends on them) stay valid.
    """
    _check_name(name)
    lanes = net.config.lanes
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = net.config
    design = GeneratedDesign(
        name=name,
        out_dir=out_dir,
        verilog=out_dir / f"{name}.v",
        w_in_mem=out_dir / "w_in.mem",
        w_rec_mem=out_dir / "w_rec.mem",
        w_out_mem=out_dir / "w_out.mem",
        design_json=out_dir / "design.json",
    )
    _write_if_changed(design.verilog, render_verilog(net, name))
    images = memory_images(net)
    for key, path in (
        ("w_in", design.w_in_mem),
        ("w_rec", design.w_rec_mem),
        ("w_out", design.w_out_mem),
    ):
        _write_if_changed(path, mem_text(images[key], lanes * cfg.weight_bits))
    text = json.dumps(design_description(net, name), indent=2) + "\n"
    _write_if_changed(design.design_json, text)
    return design


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write_bytes(path, data)
