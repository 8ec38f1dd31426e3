"""Golden reference and comparison for the learning core: what every step and every weight
dump must contain.

Both testbenches of the learning core (the Amaranth-simulator test and the cocotb testbench
under Icarus or Verilator) drive the same protocol (see ``docs/hardware.md``, section 9, "Ports
and protocol for learning") and compare against the same :class:`LearningTrace`, so they cannot
disagree about what is expected.  A run may load a new weight set through ``i_weights`` between two
samples (:class:`WeightLoad`); the golden run then continues from :func:`loaded_state`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from neurofptt.errors import ShapeError
from neurofptt.hdl.rows import lane_words
from neurofptt.onchip import (
    MATRICES,
    SWEEP_ORDER,
    LearningState,
    learning_config,
    learning_step,
    step_schedule,
)
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.golden import check_spike_input
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.verify.compare import Mismatch

__all__ = [
    "LearningTrace",
    "Snapshot",
    "WeightLoad",
    "compare_snapshot",
    "decode_dump",
    "dump_matrices",
    "golden_learning_run",
    "load_words",
    "loaded_state",
    "sent_labels",
    "step_commands",
]

#: a weight-stream word as the benches handle it: (matrix code, weights per lane, W_bar per lane)
#: (:func:`~neurofptt.verify.streams.encode_word` packs it into a payload)
Word = tuple[int, list[int], list[int]]


@dataclass(frozen=True)
class Snapshot:
    """The learned state right after the update of step ``step`` of sample ``sample``, or, with
    ``after = "load"`` and ``step = -1``, right after a load before sample ``sample``:
    ``weights[m]`` in ``(n_post, n_pre)`` orientation and, for FPTT, ``wbar[m]`` as stored
    (``W_bar`` or ``W - W_bar``), each in the narrowest integer type of its format."""

    sample: int
    step: int
    weights: dict[str, np.ndarray]
    wbar: dict[str, np.ndarray]
    after: str = "update"


@dataclass(frozen=True)
class WeightLoad:
    """A weight set loaded through ``i_weights`` before sample ``before`` (then read back):
    ``net``'s weights and, for FPTT, the stored ``W_bar`` words ``wbar[m]`` (``W_bar`` or
    ``W - W_bar``, as :attr:`Snapshot.wbar`; empty for e-prop)."""

    before: int
    net: QuantizedNetwork
    wbar: dict[str, np.ndarray]


@dataclass(frozen=True)
class LearningTrace:
    """Golden outputs of a learning run: spikes ``(B, T, n_rec)``, readout ``(B, T, n_out)``,
    the per-step command (``learn`` flag and error shift) and one snapshot per update."""

    spikes: np.ndarray
    readout: np.ndarray
    learn: np.ndarray  # (B, T) bool
    shift: np.ndarray  # (B, T) the shift field sent with the STEP
    snapshots: list[Snapshot]

    @property
    def updates(self) -> int:
        """Weight updates (snapshots after an update, not after a load)."""
        return sum(s.after == "update" for s in self.snapshots)

    @property
    def synaptic_updates(self) -> int:
        """Synapses written by all updates together (each compared after its update)."""
        return sum(
            sum(w.size for w in s.weights.values()) for s in self.snapshots if s.after == "update"
        )


def step_commands(
    net: QuantizedNetwork, steps: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``learn`` flags and ``shift`` fields of the ``steps`` STEP events of one sample.

    The schedule is :func:`~neurofptt.onchip.step_schedule` (with per-step ``labels``, ``-1``
    for no target: learn exactly at the labelled steps); the shift is sent clamped to
    ``membrane_bits``, the largest shift the core and the golden model apply (they clamp a
    larger one to it), so the field never needs more than its ``bit_length(membrane_bits)``
    bits.
    """
    schedule = step_schedule(learning_config(net.config), steps, labels)
    learn = np.array([s is not None for s in schedule], bool)
    shift = np.array([min(s or 0, net.config.membrane_bits) for s in schedule], np.int64)
    return learn, shift


def sent_labels(labels: np.ndarray, learn: np.ndarray) -> np.ndarray:
    """The ``label`` field of every STEP ``(B, T)``: a sequence label ``(B,)`` on every step of
    its sample (as the benches always sent it); per-step labels ``(B, T)`` only where the step
    learns, 0 elsewhere (the field is unsigned and the core reads it only with ``learn``)."""
    labels = np.asarray(labels, np.int64)
    if labels.ndim == 1:
        return np.repeat(labels[:, None], learn.shape[1], axis=1)
    return np.where(learn, labels, 0)


def loaded_state(net: QuantizedNetwork, wbar: dict[str, np.ndarray]) -> LearningState:
    """The learning state right after ``net``'s weights and, for FPTT, the stored ``W_bar``
    words ``wbar`` were loaded through ``i_weights``.

    A load restarts learning, so this is :meth:`LearningState.start` (previous factors ``Gp``
    zero, every LFSR at its seed) with ``W_bar`` taken from the words instead of set to ``W``:
    loading a dump restores the running mean exactly.
    """
    state = LearningState.start(net)
    lc = learning_config(net.config)
    if lc.mode != "fptt":
        if wbar:
            raise ValueError("an e-prop core has no W_bar memory; load no W_bar words")
        return state
    lo, hi = -(1 << (lc.wbar_bits - 1)), (1 << (lc.wbar_bits - 1)) - 1
    loaded = {}
    for m in MATRICES:
        words = np.asarray(wbar[m], np.int64)
        if words.shape != state.wbar[m].shape or words.min() < lo or words.max() > hi:
            raise ValueError(
                f"W_bar of {m!r} must be a {state.wbar[m].shape} array of signed "
                f"{lc.wbar_bits}-bit values"
            )
        loaded[m] = words.copy()
    return dataclasses.replace(state, wbar=loaded)


def golden_learning_run(
    net: QuantizedNetwork,
    spikes: np.ndarray,
    labels: np.ndarray,
    load: WeightLoad | None = None,
) -> LearningTrace:
    """Run the golden model on ``spikes`` ``(B, T, n_in)`` with one label per sample ``(B,)``
    or per-step labels ``(B, T)`` (``-1``: no target at that step), learning on the scheduled
    steps, exactly as the core sees it (one ``LearningState`` for the run).

    With ``load``, the weights of ``load.net`` (and its ``W_bar`` words) replace the learned
    state before sample ``load.before``; the readback that follows is a snapshot with
    ``after = "load"``, and learning continues from :func:`loaded_state`.
    """
    cfg = net.config
    x = check_spike_input(spikes, cfg.n_in)
    batch, steps, _ = x.shape
    labels = np.asarray(labels, np.int64)
    if labels.shape not in ((batch,), (batch, steps)):
        raise ShapeError(
            f"labels must be one per sample {(batch,)} or one per step {(batch, steps)}; got "
            f"{labels.shape}"
        )
    per_step = labels.ndim == 2
    commands = [step_commands(net, steps, labels[b] if per_step else None) for b in range(batch)]
    learn = np.stack([c[0] for c in commands])
    state = LearningState.start(net)
    out_spikes = np.zeros((batch, steps, cfg.n_rec), bool)
    out_readout = np.zeros((batch, steps, cfg.n_out), np.int64)
    snapshots = []
    for b in range(batch):
        if load is not None and b == load.before:
            net, state = _load(cfg, load, snapshots, b)
        state = state.new_sample(net)
        schedule = step_schedule(learning_config(cfg), steps, labels[b] if per_step else None)
        for t in range(steps):
            label = int(labels[b, t] if per_step else labels[b])
            net, state = learning_step(net, state, x[b, t], label, schedule[t])
            out_spikes[b, t] = state.neurons.z[0]
            out_readout[b, t] = state.neurons.o[0]
            if learn[b, t]:
                snapshots.append(Snapshot(b, t, *_stored(net, state.wbar)))
    shift = np.stack([c[1] for c in commands])
    return LearningTrace(out_spikes, out_readout, learn, shift, snapshots)


def _load(
    cfg: HardwareConfig, load: WeightLoad, snapshots: list[Snapshot], sample: int
) -> tuple[QuantizedNetwork, LearningState]:
    """Apply ``load`` before ``sample``: its network and learning state, and the snapshot of
    the readback that follows it."""
    if load.net.config != cfg:
        raise ValueError("the loaded network must have the run's hardware config")
    net, state = load.net, loaded_state(load.net, load.wbar)
    snapshots.append(Snapshot(sample, -1, *_stored(net, state.wbar), "load"))
    return net, state


def _stored(
    net: QuantizedNetwork, wbar: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Copies of ``net``'s weights and of the ``W_bar`` words for a :class:`Snapshot`, each in
    the narrowest integer type that holds its format: a run keeps one snapshot per update, and
    a whole epoch of the demo core (1,437 updates of 21,760 weights) then takes 31 MB instead
    of 250 (FPTT's ``W_bar`` as many again, in 16 bits)."""
    cfg = net.config
    weights = {m: net.matrix(m).astype(_narrowest(cfg.weight_bits)) for m in MATRICES}
    if not wbar:
        return weights, {}
    dtype = _narrowest(learning_config(cfg).wbar_bits)
    return weights, {m: w.astype(dtype) for m, w in wbar.items()}


def _narrowest(bits: int) -> type[np.signedinteger]:
    """The narrowest numpy integer type of signed ``bits``-bit values."""
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32


def load_words(net: QuantizedNetwork, wbar: dict[str, np.ndarray]) -> list[Word]:
    """The ``i_weights`` words that load ``net``'s weights and the stored ``W_bar`` words
    ``wbar`` (FPTT; empty for e-prop): the inverse of :func:`decode_dump`, in the dump's order,
    padding lanes zero (as a dump sends them); ``last`` belongs on the final word."""
    cfg = net.config
    lanes = cfg.lanes
    words: list[Word] = []
    for code, m in enumerate(SWEEP_ORDER):
        per_lane = [lane_words(np.asarray(net.matrix(m), np.int64), lanes)]
        if wbar:
            per_lane.append(lane_words(np.asarray(wbar[m], np.int64), lanes))
        for i in range(len(per_lane[0])):
            w = [int(v) for v in per_lane[0][i]]
            words.append((code, w, [int(v) for v in per_lane[1][i]] if wbar else []))
    return words


def decode_dump(net: QuantizedNetwork, words: list[Word]) -> dict[str, np.ndarray]:
    """Turn the ``o_weights`` words of one dump, ``(matrix, weights per lane, W_bar per lane)``
    in the order sent, into matrices (:func:`dump_matrices`)."""
    lanes = net.config.lanes
    codes = np.array([word[0] for word in words], np.int64)
    w = np.array([word[1] for word in words], np.int64).reshape(len(words), lanes)
    wbar = None
    if words and words[0][2]:
        wbar = np.array([word[2] for word in words], np.int64).reshape(len(words), lanes)
    return dump_matrices(net, codes, w, wbar)


def dump_matrices(
    net: QuantizedNetwork, matrix: np.ndarray, w: np.ndarray, wbar: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The matrices ``"in"``, ``"rec"``, ``"out"`` (and ``"wbar_<m>"`` with ``wbar``) of one
    dump given word by word: the matrix codes ``(words,)``, the weights ``(words, lanes)`` and
    the ``W_bar`` words ``(words, lanes)`` in the order sent, undoing the address map
    ``pre * rows + post // lanes`` with array operations only.  Raises :class:`ValueError`
    when the words are not one dump: a matrix's block too short or with another code, or
    words left over after ``W_rec``."""
    cfg = net.config
    lanes = cfg.lanes
    shapes = {
        "in": (cfg.n_rec, cfg.n_in),
        "rec": (cfg.n_rec, cfg.n_rec),
        "out": (cfg.n_out, cfg.n_rec),
    }
    out: dict[str, np.ndarray] = {}
    at = 0
    for code, m in enumerate(SWEEP_ORDER):
        n_post, n_pre = shapes[m]
        rows = -(-n_post // lanes)
        block = slice(at, at + n_pre * rows)
        at += n_pre * rows
        codes = matrix[block]
        if len(codes) != n_pre * rows or (codes != code).any():
            raise ValueError(f"dump of {m!r} is malformed: {len(codes)} words of {n_pre * rows}")
        for key, part in ((m, w), (f"wbar_{m}", wbar)):
            if part is not None:
                out[key] = part[block].reshape(n_pre, rows * lanes).T[:n_post]
    if len(matrix) != at:
        raise ValueError(f"dump of {len(matrix)} words where the memories hold {at}")
    return out


def compare_snapshot(
    snapshot: Snapshot, actual: dict[str, np.ndarray], limit: int = 20
) -> tuple[list[Mismatch], int]:
    """Compare every weight and ``W_bar`` of a dump with the golden snapshot; the records name
    the matrix (``w_in``, ``wbar_rec``, ...), ``[post, pre]``, expected and actual."""
    records, total = [], 0
    expected = {**snapshot.weights, **{f"wbar_{m}": w for m, w in snapshot.wbar.items()}}
    for key, want in expected.items():
        got = actual.get(key)
        name = key if key.startswith("wbar") else f"w_{key}"
        if got is None or got.shape != want.shape:
            total += want.size
            records.append(
                Mismatch(snapshot.sample, snapshot.step, "protocol", -1, -1, -1,
                         f"{name} missing or malformed in the weight dump")
            )  # fmt: skip
            continue
        bad = np.argwhere(got != want)
        total += len(bad)
        for post, pre in bad[: max(0, limit - len(records))]:
            records.append(
                Mismatch(snapshot.sample, snapshot.step, name, int(post),
                         int(want[post, pre]), int(got[post, pre]),
                         f"after the {snapshot.after}", int(pre))
            )  # fmt: skip
    return records, total
