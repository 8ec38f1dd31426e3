"""The accelerator: the Amaranth LIF core and its Verilog generator."""

from neurofptt.hdl.core import (
    EventKind,
    LifCore,
    core_signature,
    cycles_per_clear,
    cycles_per_step,
    event_layout,
    memory_images,
    readout_layout,
)
from neurofptt.hdl.generate import GeneratedDesign, generate_verilog, render_verilog

__all__ = [
    "EventKind",
    "GeneratedDesign",
    "LifCore",
    "core_signature",
    "cycles_per_clear",
    "cycles_per_step",
    "event_layout",
    "generate_verilog",
    "memory_images",
    "readout_layout",
    "render_verilog",
]
