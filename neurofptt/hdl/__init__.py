"""The accelerator: the Amaranth LIF core and its Verilog generator."""

from neurofptt.hdl.core import (
    MAX_LANES,
    READ_WEIGHTS,
    EventKind,
    LifCore,
    check_lanes,
    core_signature,
    cycles_per_clear,
    cycles_per_load,
    cycles_per_step,
    cycles_per_update,
    event_layout,
    learn_event_layout,
    memory_images,
    readout_layout,
    weight_dump_layout,
)
from neurofptt.hdl.generate import (
    GeneratedDesign,
    design_description,
    generate_verilog,
    render_verilog,
)

__all__ = [
    "MAX_LANES",
    "READ_WEIGHTS",
    "EventKind",
    "GeneratedDesign",
    "LifCore",
    "check_lanes",
    "core_signature",
    "cycles_per_clear",
    "cycles_per_load",
    "cycles_per_step",
    "cycles_per_update",
    "design_description",
    "event_layout",
    "generate_verilog",
    "learn_event_layout",
    "memory_images",
    "readout_layout",
    "render_verilog",
    "weight_dump_layout",
]
