"""The learning core against the golden model of on-chip learning, bit for bit.

Every case draws a small random configuration (both modes, both feedbacks, the three readout errors,
``W_bar`` absolute and as a narrow difference, 1-3 lanes, learning rates fast enough that weights
saturate), random weights, inputs and labels, runs several samples with learning, and after every
update reads back every weight and every ``W_bar`` through the ``o_weights`` port.  Spikes and
readouts of every step and the learned state after every update must equal
:mod:`neurofptt.onchip`.  Some cases load a second random weight set (and ``W_bar``
words, extremes included) through ``i_weights`` after the first sample, read it back, and learn
on from it: the golden model restarts from :func:`~neurofptt.verify.learning.loaded_state`.

The Amaranth-simulator check is fast and covers the cases quickly; the cocotb check runs the
generated Verilog under Icarus through the real ports, and three of its cases under Verilator too
(``VERILATOR_SEEDS``: both modes with a load, the three errors, both ``W_bar`` stores, both
roundings, 1 to 3 lanes, one case under backpressure).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
from simulators import needs_icarus, needs_verilator

from neurofptt.errors import ConfigError
from neurofptt.hdl import (
    READ_WEIGHTS,
    LifCore,
    cycles_per_clear,
    cycles_per_dump,
    cycles_per_load,
    cycles_per_step,
    cycles_per_update,
    design_description,
    learn_event_layout,
    weight_dump_layout,
)
from neurofptt.hdl.blocks import SlicedMemory
from neurofptt.hdl.cost import learning_cycles_per_update
from neurofptt.onchip import LearningState
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import LearningConfig
from neurofptt.verify import run_rtl_learning
from neurofptt.verify.learning import (
    Snapshot,
    WeightLoad,
    compare_snapshot,
    decode_dump,
    golden_learning_run,
    load_words,
    loaded_state,
)
from neurofptt.verify.streams import (
    Load,
    Stalls,
    StreamBench,
    cycle_budget,
    encode_word,
    frame_run,
    pack,
    run_amaranth,
)
from neurofptt.verify.testbench_learning import DumpCheck

ERRORS = ("target", "hinge", "softmax")


@dataclass(frozen=True)
class Case:
    name: str
    net: QuantizedNetwork
    spikes: np.ndarray  # (B, T, n_in)
    labels: np.ndarray  # (B,)
    load: WeightLoad | None = None


def _extremes(rng: np.random.Generator, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Uniform in ``[lo, hi]`` with a quarter of the values at ``lo`` or ``hi`` (both always)."""
    x = rng.integers(lo, hi + 1, size=shape)
    x = np.where(rng.random(shape) < 0.25, rng.choice([lo, hi], size=shape), x)
    x.flat[0], x.flat[-1] = lo, hi
    return x


def random_load(net: QuantizedNetwork, seed: int, before: int) -> WeightLoad:
    """A weight set to load before sample ``before``, unlike ``net``'s: every matrix and, for
    FPTT, every stored ``W_bar`` word drawn over the whole format, extremes included."""
    cfg = net.config
    lc = cfg.learning
    rng = np.random.default_rng([seed, 1])  # its own stream: the case's draws stay the same
    weights = [
        _extremes(rng, w.shape, cfg.w_min, cfg.w_max) for w in (net.w_in, net.w_rec, net.w_out)
    ]
    wbar = {}
    if lc.mode == "fptt":
        top = 1 << (lc.wbar_bits - 1)
        wbar = {
            m: _extremes(rng, w.shape, -top, top - 1)
            for m, w in zip(("in", "rec", "out"), weights, strict=True)
        }
    return WeightLoad(before, QuantizedNetwork(cfg, *weights), wbar)


def random_case(seed: int, batch: int = 3) -> Case:
    """A small random learning configuration with fast learning rates (weights saturate); the
    seeds in ``LOAD_SEEDS`` also load a random weight set after the first sample."""
    rng = np.random.default_rng(seed)
    while True:
        mode = ["eprop", "fptt"][seed % 2]
        error = ERRORS[(seed // 4) % 3]  # not drawn: the other draws stay the same
        rounding = "nearest" if seed % 3 == 0 else "floor"  # not drawn either
        store = str(rng.choice(["absolute", "difference"]))
        wb = int(rng.integers(3, 7))
        lr = {f"lr_shift_{m}": int(rng.integers(2, 19)) for m in ("in", "rec", "out")}
        lc = LearningConfig(
            mode=mode,
            feedback=["symmetric", "random"][(seed // 2) % 2],
            feedback_seed=int(rng.integers(0, 100)),
            trace_bits=int(rng.integers(4, 10)),
            trace_frac_bits=int(rng.integers(0, 4)),
            signal_bits=int(rng.integers(4, 12)),
            signal_shift=int(rng.integers(0, 6)),
            psi_width_shift=int(rng.integers(3, 7)),
            psi_bits=int(rng.integers(0, 4)),
            target=int(rng.integers(0, 60)),
            error=error,
            softmax_shift=seed % 5,
            rounding=rounding,
            supervised_steps=int(rng.integers(0, 4)),
            beta_ramp=bool(rng.random() < 0.5),
            update_period=int(rng.integers(1, 3)),
            alpha_shift=int(rng.integers(1, 5)),
            wbar_bits=int(rng.integers(wb, wb + 4) if store == "absolute" else rng.integers(2, 5)),
            wbar_store=store,
            lfsr_seed=int(rng.integers(1, 1 << 16)),
            **lr,
        )  # fmt: skip
        try:
            cfg = HardwareConfig(
                n_in=int(rng.integers(3, 7)),
                n_rec=int(rng.integers(4, 11)),
                n_out=int(rng.integers(2, 4)),
                weight_bits=wb,
                membrane_bits=int(rng.integers(7, 11)),
                frac_bits=2,
                leak_shift=int(rng.integers(1, 4)),
                out_leak_shift=int(rng.integers(0, 3)),
                threshold=int(rng.integers(8, 30)),
                reset=str(rng.choice(["subtract", "zero"])),
                w_in_shift=int(rng.integers(1, 4)),
                w_rec_shift=int(rng.integers(0, 3)),
                w_out_shift=int(rng.integers(0, 3)),
                lanes=int(rng.integers(1, 4)),
                learning=lc,
            )
            break
        except ConfigError:
            continue

    def draw(shape: tuple[int, int]) -> np.ndarray:
        return rng.integers(cfg.w_min, cfg.w_max + 1, size=shape)

    net = QuantizedNetwork(
        cfg, draw((cfg.n_rec, cfg.n_in)), draw((cfg.n_rec, cfg.n_rec)), draw((cfg.n_out, cfg.n_rec))
    )
    steps = int(rng.integers(3, 7))
    spikes = (rng.random((batch, steps, cfg.n_in)) < rng.uniform(0.2, 0.7)).astype(np.uint8)
    labels = rng.integers(0, cfg.n_out, batch)
    name = f"{mode}-{lc.feedback}-{store}-{error}-{rounding}-{cfg.lanes}lanes-{seed}"
    if seed not in LOAD_SEEDS:
        return Case(name, net, spikes, labels)
    return Case(f"{name}-load", net, spikes, labels, random_load(net, seed, 1))


def _padded_words(case: Case, seed: int) -> list:
    """The load's words with extreme values in the padding lanes (lanes past ``n_out`` or
    ``n_rec`` in a matrix's last row), which must never reach an output or a real weight."""
    cfg = case.net.config
    rng = np.random.default_rng([seed, 2])
    words = load_words(case.load.net, case.load.wbar)
    n_post = {0: cfg.n_out, 1: cfg.n_rec, 2: cfg.n_rec}
    top = 1 << (cfg.learning.wbar_bits - 1)
    seen = dict.fromkeys(n_post, 0)  # words of each matrix so far
    for code, w, wbar in words:
        rows = -(-n_post[code] // cfg.lanes)
        seen[code] += 1
        if seen[code] % rows:  # not the last row of its presynaptic neuron
            continue
        for lane in range(n_post[code] - (rows - 1) * cfg.lanes, cfg.lanes):
            w[lane] = int(rng.choice([cfg.w_min, cfg.w_max]))
            if wbar:
                wbar[lane] = int(rng.choice([-top, top - 1]))
    return words


#: how the load of each load case is offered: together with the sample's CLEAR (``clear``)
#: and with random pauses (``gaps``); the READ that follows is offered after the first word
LOAD_SIM = {0: (False, False), 3: (True, False), 6: (False, True), 9: (True, True)}


def simulate(case: Case, seed: int):
    """Drive the case through LifCore in the Amaranth simulator; return the golden trace,
    spikes, readout, the raw words of every dump (one per update, and one after the load), the
    cycles from each update step's first event to the cycle its READ is accepted, the loaded
    words and the cycles from the load's first word to the accepted READ (None without a
    load).  Every stream rule must hold, and a load must keep ``busy`` high until its last
    word, take a CLEAR offered with its first word at the same edge and hold the READ off until
    its last word."""
    net, x, labels, load = case.net, case.spikes, case.labels, case.load
    cfg = net.config
    trace = golden_learning_run(net, x, labels, load)
    batch, steps, _ = x.shape
    loads, stalls, words = {}, {}, []
    if load is not None:
        with_clear, gaps = LOAD_SIM[seed]
        words = _padded_words(case, seed)
        loads = {load.before: Load.of(cfg, words, load.before, with_clear)}
        if gaps:
            stalls = {"i_weights": Stalls.seeded(seed, "i_weights")}
    items = frame_run(
        learn_event_layout(cfg), x, labels=labels, learn=trace.learn, shift=trace.shift, loads=loads
    )
    bench = StreamBench(cfg, batch, steps, stalls)
    places = [(s.sample, s.step) for s in trace.snapshots]
    budget = cycle_budget(cfg, batch, steps, updates=trace.updates, loads=len(loads))
    complete, _ = run_amaranth(LifCore(net), bench.benches(items, places), budget)
    assert complete and len(bench.dumps) == len(trace.snapshots), f"{case.name}: the core hung"
    assert bench.errors == [], f"{case.name}: " + "; ".join(str(e) for e in bench.errors)
    learned = np.argwhere(bench.read_accept >= 0)
    cycles = {
        (int(b), int(t)): int(bench.read_accept[b, t] - bench.step_start[b, t]) for b, t in learned
    }
    # the dumps after updates, from the READ_WEIGHTS taken to the last word taken
    ends = zip(trace.snapshots, bench.dump_end, strict=True)
    dumped = [end - bench.read_accept[s.sample, s.step] for s, end in ends if s.after == "update"]
    load_cycles = bench.load_cycles[0] if bench.load_cycles else None
    return trace, bench.spikes, bench.readout, bench.dumps, cycles, words, load_cycles, dumped


def _expected_update_cycles(case: Case, spikes: np.ndarray, b: int, t: int) -> int:
    """Cycles of the inference step (its closed form) plus those of the update."""
    cfg = case.net.config
    new = spikes[b].sum(axis=1)
    prev = int(new[t - 1]) if t > 0 else 0
    step = cycles_per_step(cfg, int(case.spikes[b, t].sum()), prev, int(new[t]))
    return step + cycles_per_update(cfg)


#: seeds cycle through (eprop, fptt) x (symmetric, random), and in blocks of four through the
#: errors; lanes, W_bar storage and the learning constants are drawn
SIM_SEEDS = list(range(12))
COCOTB_SEEDS = list(range(20, 32))
COCOTB_BATCH = 6
#: cases that load a random weight set after the first sample (both modes in both simulators,
#: one under backpressure)
LOAD_SEEDS = {*LOAD_SIM, 20, 21, 26, 27}
#: the cocotb cases run under Verilator as well as Icarus (each compiles its design to C++, so
#: not all of them): e-prop with a load (softmax error, 3 lanes), FPTT with a load (target
#: error, rounding to nearest, 2 lanes) and FPTT under backpressure (hinge error, ``W_bar`` as
#: a difference, 1 lane)
VERILATOR_SEEDS = (20, 27, 31)


def test_cases_cover_the_modes() -> None:
    """Both modes, both feedbacks, every error, both roundings, both W_bar stores and 1-3
    lanes, and saturating weights."""
    cases = [random_case(seed) for seed in SIM_SEEDS + COCOTB_SEEDS]
    kinds = {(c.net.config.learning.mode, c.net.config.learning.feedback) for c in cases}
    assert kinds == {(m, f) for m in ("eprop", "fptt") for f in ("symmetric", "random")}
    for seeds in (SIM_SEEDS, COCOTB_SEEDS):
        for error in ERRORS:
            covered = {
                (lc.mode, lc.feedback)
                for lc in (random_case(seed).net.config.learning for seed in seeds)
                if lc.error == error
            }
            assert covered == {(m, f) for m in ("eprop", "fptt") for f in ("symmetric", "random")}
        nearest = {
            lc.mode
            for lc in (random_case(seed).net.config.learning for seed in seeds)
            if lc.rounding == "nearest"
        }
        assert nearest == {"eprop", "fptt"}
    fptt = [c.net.config.learning for c in cases if c.net.config.learning.mode == "fptt"]
    assert {lc.wbar_store for lc in fptt} == {"absolute", "difference"}
    assert {c.net.config.lanes for c in cases} == {1, 2, 3}
    loads = [c for c in cases if c.load is not None]
    assert {c.net.config.learning.mode for c in loads} == {"eprop", "fptt"}
    assert {c.net.config.learning.wbar_store for c in loads if c.load.wbar} == {
        "absolute",
        "difference",
    }
    for c in loads:  # unlike the generated images, and every format's extremes
        cfg, lc = c.net.config, c.net.config.learning
        for new, old in zip(
            (c.load.net.w_in, c.load.net.w_rec, c.load.net.w_out),
            (c.net.w_in, c.net.w_rec, c.net.w_out),
            strict=True,
        ):
            assert (new != old).any() and {cfg.w_min, cfg.w_max} <= set(new.flat)
        for w in c.load.wbar.values():
            assert {-(1 << (lc.wbar_bits - 1)), (1 << (lc.wbar_bits - 1)) - 1} <= set(w.flat)
    saturated = 0
    for case in cases[:6]:
        cfg = case.net.config
        for snap in golden_learning_run(case.net, case.spikes, case.labels).snapshots:
            for w in snap.weights.values():
                saturated += int(((w == cfg.w_min) | (w == cfg.w_max)).sum())
    assert saturated > 100


def test_verilator_cases_are_representative() -> None:
    """The cocotb cases that run under Verilator too: both modes with a load, every error,
    both roundings, both ``W_bar`` stores, 1 to 3 lanes and one under backpressure."""
    cases = [random_case(seed, COCOTB_BATCH) for seed in VERILATOR_SEEDS]
    learning = [c.net.config.learning for c in cases]
    assert {c.net.config.learning.mode for c in cases if c.load is not None} == {"eprop", "fptt"}
    assert {lc.error for lc in learning} == set(ERRORS)
    assert {lc.rounding for lc in learning} == {"floor", "nearest"}
    assert {lc.wbar_store for lc in learning if lc.mode == "fptt"} == {"absolute", "difference"}
    assert {c.net.config.lanes for c in cases} == {1, 2, 3}
    assert COCOTB_SEEDS[-1] in VERILATOR_SEEDS  # the backpressure case


def test_cocotb_campaign_size() -> None:
    """The cocotb run alone compares at least 10,000 synaptic updates."""
    total = 0
    for seed in COCOTB_SEEDS:
        case = random_case(seed, COCOTB_BATCH)
        total += golden_learning_run(case.net, case.spikes, case.labels).synaptic_updates
    assert total >= 10_000


def simulate_and_compare(case: Case, seed: int):
    """:func:`simulate` ``case`` and check it against the golden model: spikes and readouts of
    every step, every weight and ``W_bar`` after every update, the cycles of every update
    step and of every dump after one; returns the golden trace, the dumps, the loaded words
    and the load's cycles."""
    trace, spikes, readout, dumps, cycles, loaded, load_cycles, dumped = simulate(case, seed)
    np.testing.assert_array_equal(spikes, trace.spikes)
    np.testing.assert_array_equal(readout, trace.readout)
    assert len(dumps) == len(trace.snapshots) > 0
    for snapshot, dump in zip(trace.snapshots, dumps, strict=True):
        records, total = compare_snapshot(snapshot, decode_dump(case.net, dump))
        assert total == 0, f"{case.name}: " + "; ".join(str(r) for r in records)
    assert len(cycles) == trace.updates > 0
    for (b, t), measured in cycles.items():
        assert measured == _expected_update_cycles(case, trace.spikes, b, t)
    assert dumped == [cycles_per_dump(case.net.config)] * trace.updates
    return trace, dumps, loaded, load_cycles


@pytest.mark.parametrize("seed", SIM_SEEDS)
def test_learning_core_matches_golden(seed: int) -> None:
    """Amaranth simulator: spikes, readouts, every weight and W_bar after every update, and
    the cycles of every update step (closed form of the step plus ``cycles_per_update``)."""
    case = random_case(seed)
    trace, dumps, loaded, load_cycles = simulate_and_compare(case, seed)
    for snapshot, dump in zip(trace.snapshots, dumps, strict=True):
        if snapshot.after == "load":  # every bit as loaded, padding lanes and codes too
            assert dump == loaded
    cfg = case.net.config
    assert cycles_per_update(cfg) == learning_cycles_per_update(cfg) + 1
    if case.load is not None:
        assert trace.updates == len(trace.snapshots) - 1
        with_clear, gaps = LOAD_SIM[seed]
        assert cycles_per_load(cfg) == len(loaded) + 1  # and the cycle that writes the last
        if not gaps:  # one word per cycle; a CLEAR taken with the first word delays the rest
            extra = cycles_per_clear(cfg) - 1 if with_clear else 0
            assert load_cycles == cycles_per_load(cfg) + extra


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("seed", "simulator"),
    [pytest.param(seed, "icarus", id=str(seed), marks=needs_icarus) for seed in COCOTB_SEEDS]
    + [
        pytest.param(seed, "verilator", id=f"{seed}-verilator", marks=needs_verilator)
        for seed in VERILATOR_SEEDS
    ],
)
def test_rtl_learning_matches_golden(seed: int, simulator: str, tmp_path) -> None:
    """Generated Verilog under Icarus (or Verilator) + cocotb, through the real ports (one case
    with random backpressure on every output stream, which also stalls the weight dump and
    pauses the load; the load cases read the loaded set back and learn on from it)."""
    case = random_case(seed, COCOTB_BATCH)
    backpressure = seed == COCOTB_SEEDS[-1]
    result = run_rtl_learning(
        case.net,
        case.spikes,
        case.labels,
        tmp_path,
        backpressure=backpressure,
        seed=seed,
        load=case.load,
        simulator=simulator,
    )
    assert result.complete
    assert result.n_mismatches == 0, f"{case.name}:\n{result.report()}"
    loads = case.load is not None
    assert result.updates == len(result.golden.snapshots) - loads > 0
    assert result.compared >= result.synaptic_updates > 0
    if not backpressure:
        np.testing.assert_array_equal(
            result.update_cycles, np.full(result.updates, cycles_per_update(case.net.config))
        )


def test_weight_mismatch_report_names_step_matrix_and_indices() -> None:
    """A wrong weight in a dump is reported with sample, step, matrix, indices and values."""
    case = random_case(1)
    snap = golden_learning_run(case.net, case.spikes, case.labels).snapshots[0]
    dump = {m: w.copy() for m, w in snap.weights.items()}
    dump.update({f"wbar_{m}": w.copy() for m, w in snap.wbar.items()})
    dump["rec"][2, 1] += 1
    dump["wbar_in"][0, 3] -= 1
    records, total = compare_snapshot(snap, dump)
    assert total == 2
    text = "\n".join(str(r) for r in records)
    want = snap.weights["rec"][2, 1]
    assert (
        f"sample {snap.sample} step {snap.step} w_rec[2, 1] after the update: expected {want}, "
        f"actual {want + 1}" in text
    )
    assert "wbar_in[0, 3]" in text
    del dump["out"]
    assert compare_snapshot(snap, dump)[1] == total + snap.weights["out"].size
    load = Snapshot(1, -1, snap.weights, snap.wbar, "load")  # the readback after a load
    dump = {**snap.weights, "in": snap.weights["in"] - 1}
    dump.update({f"wbar_{m}": w for m, w in snap.wbar.items()})
    records, _ = compare_snapshot(load, dump)
    want = snap.weights["in"][0, 0]
    assert str(records[0]) == (
        f"before sample 1 w_in[0, 0] after the load: expected {want}, actual {want - 1}"
    )


def test_dump_check_compares_raw_dumps_in_bulk() -> None:
    """The cocotb bench's check of each dump as it ends: the raw payloads of a correct dump
    (FPTT, ``W_bar`` words too) give no mismatch and count every value; a wrong bit in one
    payload is reported by matrix and indices; a dump cut short or too long is a protocol
    error."""
    case = random_case(1)
    cfg = case.net.config
    trace = golden_learning_run(case.net, case.spikes, case.labels)
    layout = weight_dump_layout(cfg)

    def raws(snapshot: Snapshot) -> list[int]:
        learned = QuantizedNetwork(cfg, *(snapshot.weights[m] for m in ("in", "rec", "out")))
        words = load_words(learned, snapshot.wbar)
        return [encode_word(layout, w, i == len(words) - 1) for i, w in enumerate(words)]

    check = DumpCheck(case.net, trace.snapshots)
    for i, snapshot in enumerate(trace.snapshots):
        check(i, raws(snapshot))
    assert check.mismatches == 0 and check.records == [] and check.errors == []
    per_update = 2 * sum(w.size for w in trace.snapshots[0].weights.values())
    assert check.compared == per_update * len(trace.snapshots)

    snapshot = trace.snapshots[-1]
    words = raws(snapshot)
    w_rec = layout["w"].offset  # lane 0 of the first W_rec word: w_rec[0, 0]
    first_rec = -(-cfg.n_out // cfg.lanes) * cfg.n_rec + -(-cfg.n_rec // cfg.lanes) * cfg.n_in
    words[first_rec] ^= 1 << w_rec
    check = DumpCheck(case.net, trace.snapshots)
    check(len(trace.snapshots) - 1, words)
    assert check.mismatches == 1 and check.errors == []
    assert str(check.records[0]).startswith(
        f"sample {snapshot.sample} step {snapshot.step} w_rec[0, 0] after the update"
    )
    for broken in (words[:-1], words + words[-1:]):
        check = DumpCheck(case.net, trace.snapshots)
        check(0, broken)
        assert check.errors and "o_weights: dump" in check.errors[0].detail


def _dump_after_loads(net: QuantizedNetwork, loads: list[list[int]]) -> list[list]:
    """Amaranth simulator: feed each list of raw ``i_weights`` words in turn, each with a READ
    offered from the edge after its first word (so the core must hold it off until the load has
    ended); return the dumps."""
    cfg = net.config
    read = pack(learn_event_layout(cfg), kind=READ_WEIGHTS)
    items = [Load(tuple(raws), 0, read) for raws in loads]
    bench = StreamBench(cfg, 0, 0)
    budget = cycle_budget(cfg, 0, 0, loads=len(loads))
    complete, _ = run_amaranth(LifCore(net), bench.benches(items, [(0, -1)] * len(loads)), budget)
    assert complete and len(bench.dumps) == len(loads), "the core hung: a READ was never taken"
    assert bench.errors == [], "; ".join(str(e) for e in bench.errors)
    return bench.dumps


def test_load_ends_on_last_or_after_the_final_word() -> None:
    """``last`` ends a load early (a prefix is loaded, the rest kept); without ``last`` the load
    ends after the final ``W_rec`` word; either way the next load starts at ``W_out`` word 0."""
    case = random_case(1)  # FPTT: the W_bar words travel with the weights
    dump = weight_dump_layout(case.net.config)
    generated = load_words(case.net, LearningState.start(case.net).wbar)
    a, b = (random_load(case.net, seed, 0) for seed in (100, 101))
    a, b = load_words(a.net, a.wbar), load_words(b.net, b.wbar)
    n_out = sum(code == 0 for code, _, _ in generated)  # matrix code 0: W_out
    dumps = _dump_after_loads(
        case.net,
        [
            [encode_word(dump, w, i == n_out - 1) for i, w in enumerate(a[:n_out])],
            [encode_word(dump, w, False) for w in b],
            [encode_word(dump, a[0], True)],
        ],
    )
    assert dumps[0] == a[:n_out] + generated[n_out:]
    assert dumps[1] == b
    assert dumps[2] == a[:1] + b[1:]


def _weight_words(cfg: HardwareConfig) -> int:
    """Words of the three weight memories, counted here independently of the code."""
    return cfg.n_rec * -(-cfg.n_out // cfg.lanes) + (cfg.n_in + cfg.n_rec) * -(
        -cfg.n_rec // cfg.lanes
    )


def _pipeline_cycles(cfg: HardwareConfig) -> int:
    """The sweep's pipeline in an update: the request registered, ``8 + tree_stages(lanes)``
    idle cycles between the ``W_out`` and ``W_in`` sweeps, and its 8 (e-prop) or 12 (FPTT)
    stages."""
    gap = 8 + (cfg.lanes - 1).bit_length() // 2
    return 1 + gap + (12 if cfg.learning.mode == "fptt" else 8)


def test_design_lists_the_weight_ports() -> None:
    """``design.json`` of a learning core lists ``i_weights`` with the dump's payload; an
    inference-only core has no such port."""
    net = random_case(1).net
    meta = design_description(net)
    ports = {port["name"]: port for port in meta["ports"]}
    assert ports["i_weights__payload"]["width"] == weight_dump_layout(net.config).size
    directions = {n: ports[f"i_weights__{n}"]["direction"] for n in ("payload", "valid", "ready")}
    assert directions == {"payload": "input", "valid": "input", "ready": "output"}
    assert all(ports[f"i_weights__{n}"]["meaning"] for n in directions)
    assert meta["payloads"]["i_weights"] == meta["payloads"]["o_weights"]
    assert meta["learning"]["cycles_per_load"] == "n_rec * Ro + (n_in + n_rec) * R + 1"
    cfg = net.config
    extra = _pipeline_cycles(cfg)
    assert meta["learning"]["cycles_per_update"] == f"n_rec * Ro + (n_in + n_rec) * R + {extra}"
    words = _weight_words(cfg)
    assert cycles_per_update(cfg) == words + extra
    # the softmax error's passes: n_out + 3 to sum, then Q + 5 per readout (Q quotient bits)
    # and one cycle for the last e_k
    softmax = random_case(8).net
    meta, cfg = design_description(softmax), softmax.config
    assert cfg.learning.error == "softmax"
    q = meta["learning"]["Q"]
    assert q == max(1, cfg.learning.target.bit_length())
    assert meta["learning"]["cycles_per_update"].endswith(" + n_out * (Q + 6) + 4")
    words = _weight_words(cfg)
    extra = _pipeline_cycles(cfg)
    assert cycles_per_update(cfg) == words + extra + cfg.n_out * (q + 6) + 4
    inference = QuantizedNetwork(net.config.replace(learning=None), net.w_in, net.w_rec, net.w_out)
    assert not any(
        p["name"].startswith("i_weights") for p in design_description(inference)["ports"]
    )


def test_loaded_state_restarts_learning() -> None:
    """A load gives ``LearningState.start``'s state (``Gp`` zero, LFSRs at their seeds) with
    ``W_bar`` from the words; words that do not fit are refused."""
    load = random_load(random_case(1).net, 5, 0)
    state = loaded_state(load.net, load.wbar)
    start = LearningState.start(load.net)
    np.testing.assert_array_equal(state.lfsr, start.lfsr)
    for name in ("delta", "error", "x_trace", "z_trace", "out_trace"):
        assert not getattr(state.previous, name).any()
    for m, w in load.wbar.items():
        np.testing.assert_array_equal(state.wbar[m], w)
    with pytest.raises(ValueError, match="W_bar of 'in'"):
        loaded_state(load.net, {**load.wbar, "in": load.wbar["in"] * 4 + 1})
    with pytest.raises(ValueError, match="no W_bar"):
        loaded_state(random_case(0).net, load.wbar)


@pytest.mark.parametrize(
    ("learning", "n_out", "lanes"),
    [
        ({"softmax_shift": 0}, 3, 2),  # q_k a plain power of two
        ({"softmax_shift": 16, "target": 0}, 3, 2),  # every q_k one chord step; e_k = 0
        ({"target": 127}, 3, 2),  # the largest target the 8-bit readouts allow
        ({}, 1, 1),  # one readout: p = 1, no error
        ({}, 1, 3),  # lanes beyond the readouts
        ({}, 5, 2),  # readouts over three rows
    ],
)
def test_softmax_error_at_the_edges(learning, n_out, lanes) -> None:
    """The softmax passes at the limits of their arithmetic and of the table layout: every
    weight after every update and the update's cycles, against the golden model."""
    base = random_case(8).net  # e-prop, symmetric feedback, softmax error
    cfg = base.config.replace(
        n_out=n_out,
        lanes=lanes,
        membrane_bits=8,
        learning=dataclasses.replace(base.config.learning, **learning),
    )
    rng = np.random.default_rng(n_out + lanes)
    w_out = rng.integers(cfg.w_min, cfg.w_max + 1, size=(n_out, cfg.n_rec))
    net = QuantizedNetwork(cfg, base.w_in, base.w_rec, w_out)
    spikes = (rng.random((3, 5, cfg.n_in)) < 0.5).astype(np.uint8)
    simulate_and_compare(Case("softmax-edge", net, spikes, rng.integers(0, n_out, 3)), 0)


@pytest.mark.parametrize("seed", [0, 1, 3, 6, 9])
def test_no_result_depends_on_a_read_in_the_cycle_of_a_write(seed: int, monkeypatch) -> None:
    """Synthesis may return anything for a weight or ``W_bar`` word read in the cycle it is
    written (``no_rw_check``): with such reads inverted, the learning core still matches the
    golden model in every spike, readout, weight, ``W_bar`` and cycle, loads included."""
    monkeypatch.setattr(SlicedMemory, "collisions", "scrambled")
    simulate_and_compare(random_case(seed), seed)
