"""The core's ports: event kinds, stream payload layouts and the port signature.

These are the contract between the core, its testbenches and a host (``docs/hardware.md``
describes the protocol); nothing here builds logic.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.errors import ConfigError
from neurofptt.quant.config import LANES_LIMIT, HardwareConfig

__all__ = [
    "MAX_LANES",
    "READ_WEIGHTS",
    "EventKind",
    "check_lanes",
    "core_signature",
    "event_layout",
    "index_bits",
    "learn_event_layout",
    "readout_layout",
    "weight_dump_layout",
]

#: the most lanes a core may have (``HardwareConfig.lanes``'s limit)
MAX_LANES = LANES_LIMIT[1]


class EventKind(enum.Enum, shape=2):
    """Kind of an address event on ``i_event`` / ``o_spike``."""

    SPIKE = 0  #: the neuron or input ``index`` spiked in this step
    STEP = 1  #: end of the step's events: run the neuron update
    CLEAR = 2  #: zero all state: the start of a new sample


#: ``i_event`` kind of a learning core (``kind`` 3, unused by ``EventKind``): stream every weight
#: word out on ``o_weights``.  Not an ``EventKind`` member, so an inference-only core's Verilog and
#: ``design.json`` do not change.
READ_WEIGHTS = 3


def index_bits(n: int) -> int:
    """Width of an index into ``n`` items; the same rule as ``HardwareConfig.index_bits``."""
    return max(1, (n - 1).bit_length())


def check_lanes(lanes: int) -> int:
    """Validate the number of parallel lanes."""
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
        raise ConfigError(
            f"lanes = {lanes!r} must be an integer between 1 and {MAX_LANES} "
            "(postsynaptic neurons served per clock cycle)"
        )
    return lanes


def event_layout(n: int) -> data.StructLayout:
    """Payload of an address event into ``n`` inputs (``kind`` in bits 0-1, ``index`` above)."""
    return data.StructLayout({"kind": EventKind, "index": unsigned(index_bits(n))})


def readout_layout(config: HardwareConfig) -> data.StructLayout:
    """Payload of a readout value (``index`` in the low bits, then ``value``, then ``last``)."""
    return data.StructLayout(
        {
            "index": unsigned(index_bits(config.n_out)),
            "value": signed(config.membrane_bits),
            "last": 1,
        }
    )


def learn_event_layout(config: HardwareConfig) -> data.StructLayout:
    """``i_event`` payload of a learning core: ``kind`` and ``index`` as in
    :func:`event_layout`, then what a ``STEP`` asks for: ``learn`` (update after this step),
    ``label`` (the target readout) and ``shift`` (the error shift ``b_t``, at most
    ``membrane_bits``: a larger shift leaves only the sign, as ``membrane_bits`` does)."""
    return data.StructLayout(
        {
            "kind": EventKind,
            "index": unsigned(index_bits(config.n_in)),
            "learn": 1,
            "label": unsigned(index_bits(config.n_out)),
            "shift": unsigned(config.membrane_bits.bit_length()),
        }
    )


def weight_dump_layout(config: HardwareConfig) -> data.StructLayout:
    """``o_weights`` payload: one weight word (``lanes`` weights, lane 0 lowest), its matrix
    (0 ``W_out``, 1 ``W_in``, 2 ``W_rec``), for FPTT the stored ``W_bar`` word of the same
    address, and ``last`` on the final word."""
    lc = config.learning
    fields = {
        "matrix": unsigned(2),
        "w": data.ArrayLayout(signed(config.weight_bits), config.lanes),
    }
    if lc is not None and lc.mode == "fptt":
        fields["wbar"] = data.ArrayLayout(signed(lc.wbar_bits), config.lanes)
    fields["last"] = 1
    return data.StructLayout(fields)


def core_signature(config: HardwareConfig) -> wiring.Signature:
    """The port signature of :class:`LifCore` for ``config`` (without ``clk`` and ``rst``).

    A learning core's ``i_event`` carries :func:`learn_event_layout` and it has two more
    streams with the :func:`weight_dump_layout` payload: ``o_weights`` (the dump out) and
    ``i_weights`` (a load in, the dump's words in the dump's order)."""
    if config.learning is None:
        return wiring.Signature(
            {
                "i_event": In(stream.Signature(event_layout(config.n_in))),
                "o_spike": Out(stream.Signature(event_layout(config.n_rec))),
                "o_readout": Out(stream.Signature(readout_layout(config))),
                "busy": Out(1),
            }
        )
    return wiring.Signature(
        {
            "i_event": In(stream.Signature(learn_event_layout(config))),
            "o_spike": Out(stream.Signature(event_layout(config.n_rec))),
            "o_readout": Out(stream.Signature(readout_layout(config))),
            "o_weights": Out(stream.Signature(weight_dump_layout(config))),
            "i_weights": In(stream.Signature(weight_dump_layout(config))),
            "busy": Out(1),
        }
    )
