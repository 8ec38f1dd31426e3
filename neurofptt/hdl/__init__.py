"""The accelerator: the Amaranth LIF core and its Verilog generator."""

from neurofptt.hdl.core import (
    MAX_LANES,
    EventKind,
    LifCore,
    check_lanes,
    core_signature,
    cycles_per_clear,
    cycles_per_step,
    event_layout,
    memory_images,
    readout_layout,
)
from neurofptt.hdl.generate import (
    GeneratedDesign,
    design_description,
    generate_verilog,
    render_verilog,
)

__all__ = [
    "MAX_LANES",
    "EventKind",
    "GeneratedDesign",
    "LifCore",
    "check_lanes",
    "core_signature",
    "cycles_per_clear",
    "cycles_per_step",
    "design_description",
    "event_layout",
    "generate_verilog",
    "memory_images",
    "readout_layout",
    "render_verilog",
]
