"""Payloads and shapes passed between the core's components (the core's own ports are in
:mod:`neurofptt.hdl.ports`).

The row pipeline moves one row of ``lanes`` neurons per cycle (:mod:`neurofptt.hdl.rows`):
stage 0 issues a :class:`RowOp` for a row and addresses its weight word, stage 1 registers the
word (a block RAM's output goes into flip-flops before any logic: its clock-to-output delay
alone is half a 100 MHz cycle) and reads the row, stage 2 (:data:`ACC_WRITE`) modifies and
writes it back, and ``UPDATE`` writes back in stage :data:`UPDATE_WRITE`.  The layouts here are
what passes from stage to stage and from the inference datapath to the learning unit.  A "tap"
is a stream whose sink is always ready (``always_ready``): a value that passes by on the
cycles its ``valid`` is high.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, ShapeLike, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from neurofptt.hdl.ports import index_bits
from neurofptt.quant.config import HardwareConfig, lane_rows

__all__ = [
    "ACC_WRITE",
    "MATRIX_CODES",
    "UPDATE_WRITE",
    "RowOp",
    "addr_width",
    "connect_taps",
    "decoded",
    "learning_control",
    "neuron_layout",
    "readout_neuron_layout",
    "readout_tap_layout",
    "row_op_layout",
    "row_shape",
    "spike_entry_layout",
    "tap",
    "update_row_layout",
    "weight_word_layout",
]


#: the stage of the row pipeline that writes an accumulated (or cleared) row back
ACC_WRITE = 2
#: the stage that writes an updated row back (the membrane update takes stages 2 and 3, the
#: threshold stage 4)
UPDATE_WRITE = 4

#: sweep (and dump) order of the weight matrices, and the ``matrix`` code on ``o_weights``
MATRIX_CODES = {"out": 0, "in": 1, "rec": 2}


class RowOp(enum.Enum, shape=3):
    """Operation carried by the row pipeline (one row per cycle): stage 0 addresses the weights,
    stage 1 reads the row, stage :data:`ACC_WRITE` adds and writes back; ``UPDATE`` writes back
    in stage :data:`UPDATE_WRITE`."""

    NONE = 0
    ACC_IN = 1  #: state[r].acc[l] += w_in[r*P+l, i] << w_in_shift
    ACC_REC = 2  #: state[r].acc[l] += w_rec[r*P+l, i] << w_rec_shift
    UPDATE = 3  #: leak, reset, add the partial sum, saturate, threshold
    ACC_OUT = 4  #: readout[s].acc[l] += w_out[s*P+l, j] << w_out_shift
    CLEAR = 5  #: zero state[r] and readout[r]


def decoded(
    m: Module, op: wiring.PureInterface, name: str, *ops: RowOp, below: int | None = None
) -> Signal:
    """A register that says, a cycle after the row pipeline's tap ``op``, that it held one of
    ``ops`` (for a row ``< below``): the operation is decoded before the register, so what it
    enables (the write of a whole row, hundreds of flip-flops on a wide core) hangs off one
    flip-flop rather than off the decoder."""
    flag = Signal(name=name)
    hit = op.valid & Cat(*(op.p.op == o for o in ops)).any()
    if below is not None:
        hit = hit & (op.p.row < below)
    m.d.sync += flag.eq(hit)
    return flag


def tap(payload: ShapeLike) -> stream.Signature:
    """A stream that is never stalled: ``payload`` passes by on the cycles ``valid`` is high."""
    return stream.Signature(payload, always_ready=True)


def connect_taps(m: Module, source: wiring.PureInterface, *sinks: wiring.PureInterface) -> None:
    """Connect one tap to several sinks (``wiring.connect`` takes one sink per stream: each
    sink's constant ``ready`` counts as a driver)."""
    for sink in sinks:
        wiring.connect(m, source, sink)


def addr_width(depth: int) -> int:
    """Address bits of a memory of ``depth`` words, as ``amaranth.lib.memory`` sizes them."""
    return ceil_log2(depth)


def row_shape(cfg: HardwareConfig) -> ShapeLike:
    """A row index of either the recurrent rows ``R`` or the readout rows ``Ro`` (or a row of
    ``CLEAR``, which runs to ``max(R, Ro)``)."""
    lanes = cfg.lanes
    return range(max(lane_rows(cfg.n_rec, lanes), lane_rows(cfg.n_out, lanes), 2))


def row_op_layout(cfg: HardwareConfig) -> data.StructLayout:
    """One issued row: the operation and the row it applies to."""
    return data.StructLayout({"op": RowOp, "row": row_shape(cfg)})


def weight_word_layout(cfg: HardwareConfig) -> data.ArrayLayout:
    """One weight memory word: ``lanes`` signed weights, lane 0 in the low bits."""
    return data.ArrayLayout(signed(cfg.weight_bits), cfg.lanes)


def neuron_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A recurrent neuron in the ``state`` memory: partial sum, membrane, last spike."""
    return data.StructLayout({"acc": signed(cfg.acc_bits), "v": signed(cfg.membrane_bits), "z": 1})


def readout_neuron_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A readout in the ``readout`` memory: partial sum and value."""
    return data.StructLayout({"acc": signed(cfg.acc_bits), "o": signed(cfg.membrane_bits)})


def spike_entry_layout(cfg: HardwareConfig) -> data.StructLayout:
    """An entry of the spike list: a row with at least one spike and its spiking lanes."""
    rows = lane_rows(cfg.n_rec, cfg.lanes)
    return data.StructLayout({"row": unsigned(index_bits(rows)), "mask": cfg.lanes})


def update_row_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A row leaving ``UPDATE`` (stage :data:`UPDATE_WRITE`): its new membranes and spikes and
    its previous spikes ``z(t-1)``."""
    lanes = cfg.lanes
    return data.StructLayout(
        {
            "row": row_shape(cfg),
            "v": data.ArrayLayout(signed(cfg.membrane_bits), lanes),
            "z": lanes,
            "z_prev": lanes,
        }
    )


def readout_tap_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A readout value as it is sent on ``o_readout``, with its row and lane in the
    ``readout`` memory (readout ``k`` is lane ``k % lanes`` of row ``k // lanes``)."""
    lanes = cfg.lanes
    return data.StructLayout(
        {
            "index": range(max(cfg.n_out, 2)),
            "row": unsigned(index_bits(lane_rows(cfg.n_out, lanes))),
            "lane": range(max(lanes, 2)),
            "value": signed(cfg.membrane_bits),
        }
    )


def learning_control() -> wiring.Signature:
    """The learning unit as the sequencer sees it: ``start`` an update (after the readouts of a
    ``STEP`` that asked for one, ``due``) or a weight ``dump``, each over at ``done``; ``idle``
    while the core waits for events (a weight load may run); ``loading`` while a load has
    started and not ended (the core then takes no event)."""
    return wiring.Signature(
        {
            "start": Out(1),
            "dump": Out(1),
            "idle": Out(1),
            "done": In(1),
            "due": In(1),
            "loading": In(1),
        }
    )
