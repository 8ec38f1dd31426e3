"""The accelerator: Amaranth components of the LIF core and its learning unit, their ports and
lane layout, the cost model (cycles and memory bits), the Verilog writer and FPGA synthesis.

:class:`LifCore` composes small ``wiring.Component``s, one concern each, so that each can be
simulated against its golden twin on its own: the sequencer, the neuron and readout rows, the
spike list with its cursors and emitter (:mod:`~neurofptt.hdl.core`), and on a learning core
the :class:`~neurofptt.hdl.learning.LearningUnit`, itself built from the LFSR bank, the
weight-update lanes, the readout and softmax errors, the trace update, the learning signal, the
sweep counter and the weight load."""

from neurofptt.hdl.core import LifCore
from neurofptt.hdl.cost import (
    cycles_per_clear,
    cycles_per_dump,
    cycles_per_load,
    cycles_per_step,
    cycles_per_update,
    learning_cycles_per_update,
    learning_memory_bits,
    learning_memory_overhead,
    weight_words,
)
from neurofptt.hdl.generate import (
    GeneratedDesign,
    design_description,
    generate_verilog,
    render_verilog,
)
from neurofptt.hdl.ports import (
    MAX_LANES,
    READ_WEIGHTS,
    EventKind,
    core_signature,
    event_layout,
    learn_event_layout,
    readout_layout,
    weight_dump_layout,
)
from neurofptt.hdl.rows import lane_words, memory_images

__all__ = [
    "MAX_LANES",
    "READ_WEIGHTS",
    "EventKind",
    "GeneratedDesign",
    "LifCore",
    "core_signature",
    "cycles_per_clear",
    "cycles_per_dump",
    "cycles_per_load",
    "cycles_per_step",
    "cycles_per_update",
    "design_description",
    "event_layout",
    "generate_verilog",
    "lane_words",
    "learn_event_layout",
    "learning_cycles_per_update",
    "learning_memory_bits",
    "learning_memory_overhead",
    "memory_images",
    "readout_layout",
    "render_verilog",
    "weight_dump_layout",
    "weight_words",
]
