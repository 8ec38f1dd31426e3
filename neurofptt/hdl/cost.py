"""The cost model of the core: clock cycles of every operation and bits of every memory.

One module holds every formula, so the docs, the flow's reports and the testbenches that check
the RTL's cycle counts read the same numbers.  ``R = ceil(n_rec / lanes)`` and
``Ro = ceil(n_out / lanes)`` are the rows of recurrent neurons and readouts
(:func:`~neurofptt.quant.config.lane_rows`).
"""

from __future__ import annotations

from neurofptt.errors import ConfigError
from neurofptt.hdl.blocks import WRITE_LATENCY
from neurofptt.hdl.learning import sweep_timing
from neurofptt.onchip.factors import quotient_bits
from neurofptt.quant.config import (
    LEARNING_MODES,
    LFSR_BITS,
    HardwareConfig,
    lane_rows,
    learning_config,
)

__all__ = [
    "READOUT_END",
    "cycles_per_clear",
    "cycles_per_dump",
    "cycles_per_load",
    "cycles_per_step",
    "cycles_per_update",
    "inference_memory_bits",
    "learning_cycles_per_update",
    "learning_memory_bits",
    "learning_memory_overhead",
    "softmax_cycles",
    "weight_words",
]


#: cycles of a step after its last readout value has left: ``READOUT`` ends on the next cycle,
#: from registers alone (the stream's ``ready`` in front of the sequencer's transition was the
#: 256-256-16 e-prop core's longest path)
READOUT_END = 1


def cycles_per_step(
    config: HardwareConfig,
    n_input_events: int,
    n_prev_spikes: int,
    n_new_spikes: int,
    n_ignored_events: int = 0,
    n_repeated_spikes: int = 0,
) -> int:
    """Clock cycles of one step when events arrive back to back and both outputs are ready.

    Counted from the cycle that accepts the step's first event (a ``SPIKE`` or the ``STEP``) to
    the cycle in which the core can accept the next step's first event.  With
    ``R = ceil(n_rec / lanes)`` and ``Ro = ceil(n_out / lanes)``::

        R * (n_input_events + n_prev_spikes + 1) + Ro * n_new_spikes + n_out + 12
          + n_ignored_events + (R > 1) * n_repeated_spikes

    ``n_input_events`` are the inputs that spiked (each counted once), ``n_prev_spikes`` the
    recurrent spikes of the previous step (0 after ``CLEAR``) and ``n_new_spikes`` those of
    this step.  ``n_ignored_events`` are the events the core takes and drops, one cycle each: a
    repeated ``SPIKE`` of an input in the step, a ``SPIKE`` of an index ``>= n_in`` and, on an
    inference core, an event of kind 3.  ``n_repeated_spikes`` of them are repeats, which cost a
    second cycle when ``R > 1``: the first ``ACC_IN`` cycle, in which the step's input set's
    lookup drops the repeat's first row (looked up on the cycle the event is taken, the result
    would lie in front of the handshake).  The constant 12 is the ``STEP``'s cycle in ``IDLE``,
    the row pipeline's drain (``UPDATE_LAST``, ``UPDATE_END``, ``OUT_READ``, ``OUT_END``), the
    readout stages beyond one per value and :data:`READOUT_END` (``docs/hardware.md`` section
    5).
    """
    cfg = config
    lanes = cfg.lanes
    for name, value, hi in (
        ("n_input_events", n_input_events, cfg.n_in),
        ("n_prev_spikes", n_prev_spikes, cfg.n_rec),
        ("n_new_spikes", n_new_spikes, cfg.n_rec),
    ):
        if not 0 <= value <= hi:
            raise ValueError(f"{name} = {value} must be between 0 and {hi}")
    if not 0 <= n_repeated_spikes <= n_ignored_events:
        raise ValueError(
            f"n_ignored_events = {n_ignored_events} and n_repeated_spikes = {n_repeated_spikes}"
            " must satisfy 0 <= n_repeated_spikes <= n_ignored_events"
        )
    rows, out_rows = lane_rows(cfg.n_rec, lanes), lane_rows(cfg.n_out, lanes)
    events = rows * (n_input_events + n_prev_spikes + 1) + n_ignored_events
    events += n_repeated_spikes if rows > 1 else 0
    return events + out_rows * n_new_spikes + cfg.n_out + 11 + READOUT_END


def cycles_per_update(config: HardwareConfig) -> int:
    """Extra clock cycles of a step that ends with a weight update (learning cores only).

    One word (``lanes`` synapses) per cycle through ``W_out``, ``W_in`` and ``W_rec``, the
    idle cycles between ``W_out`` and ``W_in`` and the pipeline's drain,
    :func:`learning_cycles_per_update`, plus one cycle for the last word's first stage."""
    return learning_cycles_per_update(config) + 1


def cycles_per_load(config: HardwareConfig) -> int:
    """Clock cycles of a weight load on ``i_weights`` (learning cores only) when the words
    arrive back to back and no event is taken with the first one: one per word and one while
    the last is written, counted like :func:`cycles_per_step` from the cycle that takes the
    first word to the cycle in which the core can take the next event (two after the last
    word: the load registers each word, the memories register their write ports).

    The words are those of a dump, one per address of ``W_out``, ``W_in`` and ``W_rec``:
    ``n_rec * Ro + (n_in + n_rec) * R``, the words an update sweeps
    (:func:`weight_words`)."""
    return weight_words(config) + WRITE_LATENCY


def cycles_per_dump(config: HardwareConfig) -> int:
    """Clock cycles of a weight dump on ``o_weights`` (learning cores only) when the consumer
    takes every word at once: from the cycle that takes the ``READ_WEIGHTS`` to the cycle that
    takes the last word, ``2 * weight_words + 1``.

    The first word is taken three cycles after the event (the request is registered on its way
    from the sequencer to the learning unit, and the memories are read at the word's position
    before it is offered), every further word two cycles after the one before: the position
    advances when a word is taken, and the next word is offered on the cycle after, so the
    memories' read address never depends on the stream's ``ready``."""
    return 2 * weight_words(config) + 1


def cycles_per_clear(config: HardwareConfig) -> int:
    """Clock cycles of a ``CLEAR`` event: ``max(R, Ro) + 1``.  ``rst`` runs the same sweep: the
    first event after a reset is taken this many clock edges after the last one with ``rst``
    high."""
    lanes = config.lanes
    return max(lane_rows(config.n_rec, lanes), lane_rows(config.n_out, lanes)) + 1


def learning_memory_bits(cfg: HardwareConfig, mode: str | None = None) -> dict[str, int]:
    """Bits of every learning memory, by name, for ``mode`` (default: ``cfg.learning.mode``).

    Counted: the three trace arrays, the per-update buffers of ``delta`` and ``e`` (the weight
    sweeps need all of them), one LFSR per lane, the random feedback matrix when used, and for
    FPTT the running mean (per synapse) and the previous update's factors (per neuron).
    """
    lc = learning_config(cfg)
    mode = mode or lc.mode
    if mode not in LEARNING_MODES:
        raise ConfigError(f"learning mode {mode!r} is not one of {LEARNING_MODES}")
    bits = {
        "traces": (cfg.n_in + 2 * cfg.n_rec) * lc.trace_bits,
        "update buffers": cfg.n_rec * lc.signal_bits + cfg.n_out * (cfg.membrane_bits + 1),
        "lfsr": cfg.lanes * LFSR_BITS,
    }
    if lc.feedback == "random":
        bits["feedback"] = cfg.n_rec * cfg.n_out * cfg.weight_bits
    if mode == "fptt":
        bits["running mean"] = cfg.synapses * lc.wbar_bits
        bits["previous factors"] = bits["traces"] + bits["update buffers"]
    return bits


def inference_memory_bits(cfg: HardwareConfig) -> int:
    """Bits of an inference-only core's architectural state: the three weight matrices,
    membranes, last spikes and readouts (not the pipeline's partial sums)."""
    return (
        cfg.synapses * cfg.weight_bits
        + cfg.n_rec * (cfg.membrane_bits + 1)
        + cfg.n_out * cfg.membrane_bits
    )


def learning_memory_overhead(cfg: HardwareConfig, mode: str | None = None) -> float:
    """Learning-state bits over inference-only bits (ReckOn reports 0.8 % for its e-prop)."""
    return sum(learning_memory_bits(cfg, mode).values()) / inference_memory_bits(cfg)


def weight_words(cfg: HardwareConfig) -> int:
    """Words (``lanes`` synapses each) of the three weight memories: ``n_rec * Ro +
    (n_in + n_rec) * R`` with ``R = ceil(n_rec / P)``, ``Ro = ceil(n_out / P)``, ``P = lanes``;
    what an update sweeps, a dump sends and a load takes."""
    p = cfg.lanes
    return cfg.n_rec * lane_rows(cfg.n_out, p) + (cfg.n_in + cfg.n_rec) * lane_rows(cfg.n_rec, p)


def learning_cycles_per_update(cfg: HardwareConfig) -> int:
    """Cycles of one weight update: ``n_rec * Ro + (n_in + n_rec) * R + gap + drain``, with
    ``R = ceil(n_rec / P)``, ``Ro = ceil(n_out / P)``, ``P = lanes``.

    One fully pipelined read-modify-write of one weight word (``P`` synapses) per cycle, with
    the factors, traces and (FPTT) running-mean word read alongside; the ``W_out`` sweep also
    accumulates the learning signals.  ``gap`` and ``drain`` are the RTL's pipeline
    (:func:`~neurofptt.hdl.learning.sweep_timing`, ``docs/hardware.md`` section 9): ``gap``
    idle cycles between the ``W_out`` and ``W_in`` sweeps, since ``delta_j`` is formed that
    many stages after its last word's factors are read (``8 + tree_stages(P)``), the stages the
    last word still passes after its first, ``drain - 1`` (``drain`` 8 for e-prop: the weight,
    12 for FPTT: ``W_bar``), and the cycle that registers the request.  The softmax error adds its
    passes before the sweep (:func:`softmax_cycles`).  :func:`cycles_per_update` adds the
    last word's first stage.
    """
    timing = sweep_timing(cfg)
    return weight_words(cfg) + timing.gap + timing.drain + softmax_cycles(cfg)


def softmax_cycles(cfg: HardwareConfig) -> int:
    """Cycles the softmax error adds to an update in the core: ``n_out + 3`` to sum the
    ``q_k``, then per readout ``Q + 5`` (read, the difference, ``q_k``, load,
    ``Q = quotient_bits(target)`` division steps, write) and one for the last ``e_k`` to
    leave; 0 for the other errors."""
    lc = learning_config(cfg)
    if lc.error != "softmax":
        return 0
    return cfg.n_out + 4 + cfg.n_out * (quotient_bits(lc.target) + 5)
