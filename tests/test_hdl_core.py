"""Fast Amaranth-simulator check of LifCore against the golden model on tiny configurations."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.sim import Simulator

from neurofptt.errors import ConfigError
from neurofptt.hdl import (
    EventKind,
    LifCore,
    cycles_per_clear,
    cycles_per_step,
    cycles_per_update,
    event_layout,
    generate_verilog,
    learn_event_layout,
    readout_layout,
    render_verilog,
)
from neurofptt.hdl.ports import READ_WEIGHTS, index_bits
from neurofptt.onchip import LearningState
from neurofptt.quant import HardwareConfig, QuantizedNetwork, golden_run
from neurofptt.quant.config import LearningConfig
from neurofptt.verify.learning import (
    WeightLoad,
    compare_snapshot,
    decode_dump,
    golden_learning_run,
    step_commands,
)
from neurofptt.verify.streams import (
    AmaranthPorts,
    Event,
    StreamBench,
    cycle_budget,
    frame_run,
    frame_sample,
    pack,
    random_stalls,
    run_amaranth,
    unpack,
)


def _random_net(cfg: HardwareConfig, rng: np.random.Generator) -> QuantizedNetwork:
    def w(shape):
        return rng.integers(cfg.w_min, cfg.w_max + 1, size=shape)

    return QuantizedNetwork(
        cfg, w((cfg.n_rec, cfg.n_in)), w((cfg.n_rec, cfg.n_rec)), w((cfg.n_out, cfg.n_rec))
    )


def run_events(
    net: QuantizedNetwork,
    items: list[Event],
    shape: tuple[int, int],
    backpressure: bool = False,
    seed: int = 0,
) -> StreamBench:
    """Drive the events ``items`` of ``shape = (samples, steps)`` through LifCore and collect
    what it sends; every stream rule must hold (ascending spikes, readout indices and ``last``,
    ``valid`` and payload held until ``ready``)."""
    cfg = net.config
    batch, steps = shape
    bench = StreamBench(cfg, batch, steps, random_stalls(seed) if backpressure else None)
    complete, _ = run_amaranth(
        LifCore(net), bench.benches(items), cycle_budget(cfg, batch, steps, stalled=backpressure)
    )
    assert complete, "the core hung"
    assert bench.errors == [], "\n".join(str(e) for e in bench.errors)
    return bench


def simulate(
    net: QuantizedNetwork,
    spikes: np.ndarray,
    backpressure: bool = False,
    seed: int = 0,
) -> StreamBench:
    """Drive ``spikes`` (B, T, n_in) through LifCore; return the bench with what it collected.

    Before each ``CLEAR`` two ``SPIKE`` events start a step that is never ended: the partial
    sums it leaves behind, ``CLEAR`` must wipe."""
    cfg = net.config
    batch, steps, _ = spikes.shape
    rng = random.Random(seed)
    abandoned = [[rng.randrange(cfg.n_in) for _ in range(2)] for _ in range(batch)]
    items = frame_run(event_layout(cfg.n_in), spikes, abandoned=abandoned)
    bench = run_events(net, items, (batch, steps), backpressure, seed)
    return bench


def expected_cycles(
    cfg: HardwareConfig,
    spikes: np.ndarray,
    golden_spikes: np.ndarray,
    ignored: int | np.ndarray = 0,
    repeated: int | np.ndarray = 0,
) -> np.ndarray:
    """``cycles_per_step`` of every step (B, T) of a run from ``CLEAR``: ``spikes`` the inputs,
    ``golden_spikes`` the recurrent spikes, ``ignored`` the dropped events of each step and
    ``repeated`` the repeated ``SPIKE`` events among them."""
    new = golden_spikes.sum(axis=2)
    prev = np.concatenate([np.zeros((new.shape[0], 1), np.int64), new[:, :-1]], axis=1)
    count = np.vectorize(lambda e, p, s, i, r: cycles_per_step(cfg, e, p, s, i, r))
    ignored, repeated = (np.broadcast_to(n, new.shape) for n in (ignored, repeated))
    return count(spikes.sum(axis=2), prev, new, ignored, repeated)


CONFIGS = [
    HardwareConfig(
        n_in=3, n_rec=5, n_out=2, weight_bits=6, membrane_bits=8, frac_bits=4,
        leak_shift=2, out_leak_shift=1, threshold=20, reset="subtract", w_in_shift=2,
    ),
    HardwareConfig(
        n_in=1, n_rec=1, n_out=1, weight_bits=4, membrane_bits=6, frac_bits=2,
        leak_shift=0, out_leak_shift=0, threshold=3, reset="zero", w_rec_shift=1,
    ),
    HardwareConfig(
        n_in=4, n_rec=3, n_out=4, weight_bits=8, membrane_bits=7, frac_bits=3,
        leak_shift=6, out_leak_shift=2, threshold=10, reset="zero", w_out_shift=1,
    ),
]  # fmt: skip
# the leak's extremes: CONFIGS[1] keeps no memory (leak_shift = 0), CONFIGS[2] decays the
# slowest a membrane can (leak_shift = membrane_bits - 1)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.n_in}-{c.n_rec}-{c.n_out}-{c.reset}")
@pytest.mark.parametrize(
    ("lanes", "backpressure"), [(1, False), (1, True), (2, False), (3, True), (4, False)]
)
def test_core_matches_golden(cfg: HardwareConfig, lanes: int, backpressure: bool) -> None:
    rng = np.random.default_rng(1234)
    cfg = cfg.replace(lanes=lanes)
    net = _random_net(cfg, rng)
    spikes = (rng.random((2, 6, cfg.n_in)) < 0.6).astype(np.uint8)
    spikes[0, 2] = 1  # an all-spike step
    spikes[1, 1] = 0  # a silent step
    golden = golden_run(net, spikes)
    bench = simulate(net, spikes, backpressure, seed=7)
    np.testing.assert_array_equal(bench.spikes, golden.spikes)
    np.testing.assert_array_equal(bench.readout, golden.readout)
    if not backpressure:
        expected = expected_cycles(cfg, spikes, golden.spikes)
        np.testing.assert_array_equal(bench.step_cycles, expected)
        # the next step's first event is taken on the cycle the formula ends on
        np.testing.assert_array_equal(bench.step_spacing, expected[:, :-1])


# -- events the core drops --------------------------------------------------------------------


def test_repeated_spike_does_not_wrap_the_partial_sum() -> None:
    """Three ``SPIKE 0`` in one step, each worth ``-32768 << 3``: three times the input weight
    would wrap the partial sum, sized for one, to a positive value and fire the neuron.  The
    repeats are dropped, so the membrane saturates at its minimum, as in the golden model of
    the one input spike, and nothing fires."""
    cfg = HardwareConfig(
        n_in=1, n_rec=1, n_out=1, weight_bits=16, membrane_bits=4, frac_bits=0, threshold=3,
        leak_shift=1, out_leak_shift=1, w_in_shift=3, lanes=1,
    )  # fmt: skip
    net = QuantizedNetwork(cfg, np.array([[-32768]]), np.array([[100]]), np.array([[100]]))
    spikes = np.array([[[1], [0], [1]]], np.uint8)
    golden = golden_run(net, spikes)
    assert golden.membrane[0, 0, 0] == cfg.v_min and not golden.spikes.any()
    assert 3 * (cfg.w_min << cfg.w_in_shift) < -(1 << (cfg.acc_bits - 1))  # would wrap
    layout = event_layout(cfg.n_in)
    spike, step = (pack(layout, kind=kind, index=0) for kind in (EventKind.SPIKE, EventKind.STEP))
    items = [Event(pack(layout, kind=EventKind.CLEAR), 0)]
    items += [Event(spike, 0, 0)] * 3 + [Event(step, 0, 0), Event(step, 0, 1)]
    items += [Event(spike, 0, 2), Event(step, 0, 2)]
    bench = run_events(net, items, (1, 3))
    np.testing.assert_array_equal(bench.spikes, golden.spikes)
    np.testing.assert_array_equal(bench.readout, golden.readout)
    np.testing.assert_array_equal(
        bench.step_cycles, expected_cycles(cfg, spikes, golden.spikes, [[2, 0, 0]], [[2, 0, 0]])
    )


def with_dropped_events(
    cfg: HardwareConfig, spikes: np.ndarray, rng: random.Random
) -> tuple[list[Event], np.ndarray, np.ndarray]:
    """The events of ``spikes`` (B, T, n_in) with events the core must drop mixed into every
    step: repeats of the step's ``SPIKE`` events, ``SPIKE`` events of indices ``>= n_in`` (where
    the index field has room for them) and events of kind 3.  Returns the events, the number
    dropped per step and the repeats among them (both (B, T))."""
    layout = event_layout(cfg.n_in)
    top = (1 << index_bits(cfg.n_in)) - 1
    batch, steps, _ = spikes.shape
    dropped = np.zeros((batch, steps), np.int64)
    repeated = np.zeros((batch, steps), np.int64)
    items = []
    for b in range(batch):
        items.append(Event(pack(layout, kind=EventKind.CLEAR), b))
        for t in range(steps):
            inputs = [int(i) for i in np.flatnonzero(spikes[b, t])]
            words = [pack(layout, kind=EventKind.SPIKE, index=i) for i in inputs]
            repeats = rng.choices(inputs, k=3) if inputs else []
            extra = [pack(layout, kind=EventKind.SPIKE, index=i) for i in repeats]
            extra += [pack(layout, kind=3, index=rng.randrange(top + 1))]
            if top >= cfg.n_in:
                index = rng.randrange(cfg.n_in, top + 1)
                extra.append(pack(layout, kind=EventKind.SPIKE, index=index))
            words += extra
            rng.shuffle(words)  # a repeat may come first; one of the copies counts
            dropped[b, t], repeated[b, t] = len(extra), len(repeats)
            items += [Event(w, b, t) for w in words]
            items.append(Event(pack(layout, kind=EventKind.STEP), b, t))
    return items, dropped, repeated


@pytest.mark.parametrize(
    ("cfg", "lanes", "backpressure"),
    [(CONFIGS[0], 1, False), (CONFIGS[0], 3, True), (CONFIGS[2], 2, False)],
    ids=["3-5-2-1lane", "3-5-2-3lanes-backpressure", "4-3-4-2lanes"],
)
def test_dropped_events_match_golden_on_the_input_set(
    cfg: HardwareConfig, lanes: int, backpressure: bool
) -> None:
    """A random stream with repeated ``SPIKE`` events, out-of-range indices and events of kind 3
    gives the golden model's spikes and readouts of the input without them (each input once
    per step), and each dropped event costs one cycle, a repeat with ``R > 1`` two."""
    rng = np.random.default_rng(99 + lanes)
    cfg = cfg.replace(lanes=lanes)
    net = _random_net(cfg, rng)
    spikes = (rng.random((3, 6, cfg.n_in)) < 0.5).astype(np.uint8)
    spikes[0, 1] = 1
    items, dropped, repeated = with_dropped_events(cfg, spikes, random.Random(lanes))
    golden = golden_run(net, spikes)
    bench = run_events(net, items, spikes.shape[:2], backpressure, seed=5)
    np.testing.assert_array_equal(bench.spikes, golden.spikes)
    np.testing.assert_array_equal(bench.readout, golden.readout)
    if not backpressure:
        expected = expected_cycles(cfg, spikes, golden.spikes, dropped, repeated)
        np.testing.assert_array_equal(bench.step_cycles, expected)


# -- reset --------------------------------------------------------------------------------------


class ResetHarness(Elaboratable):
    """The core in a clock domain whose reset the testbench drives: the Verilog's ``rst``.
    The core's ports are the harness's too, so the stream benches find them by name."""

    def __init__(self, net: QuantizedNetwork) -> None:
        self.core = LifCore(net)
        self.domain = ClockDomain("sync")
        for name in self.core.signature.members:
            setattr(self, name, getattr(self.core, name))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.domains.sync = self.domain
        m.submodules.core = self.core
        return m


@dataclass
class CutRun:
    """What one sample sent before ``rst`` cut it: the input and the output groups, each a
    list of values (spike indices, readout values) and whether its last one came."""

    x: np.ndarray
    first_event: int = 0  # the cycle after the reset at which the first event was taken
    events_taken: int = 0
    spikes: list = field(default_factory=lambda: [([], False)])
    readout: list = field(default_factory=lambda: [([], False)])

    def add(self, groups: list, value: int | None, last: bool) -> None:
        if value is not None:
            groups[-1][0].append(value)
        if last:
            groups[-1] = (groups[-1][0], True)
            groups.append(([], False))


async def run_until_cut(ctx, harness: ResetHarness, run: CutRun, cut: int, pace) -> None:
    """Offer ``run.x`` (no ``CLEAR``) and collect the outputs for ``cut`` cycles, consumers
    stalling at random, then assert ``rst`` for one cycle.  Nothing may leave the core before
    it has taken an event of this sample."""
    core = harness.core
    cfg = core.config
    layout = event_layout(cfg.n_in)
    words = []
    for x in run.x:
        words += [pack(layout, kind=EventKind.SPIKE, index=int(i)) for i in np.flatnonzero(x)]
        words.append(pack(layout, kind=EventKind.STEP))
    signals = [
        value
        for stream in (core.i_event, core.o_spike, core.o_readout)
        for value in (stream.valid, stream.ready, stream.payload.as_value())
    ]
    for cycle in range(1, cut + 2):
        reset = cycle == cut + 1  # the cut: whatever transfers at this edge still counts
        ctx.set(harness.domain.rst, reset)
        offer = run.events_taken < len(words) and not reset
        ctx.set(core.i_event.valid, offer)
        if offer:
            ctx.set(core.i_event.payload.as_value(), words[run.events_taken])
        ctx.set(core.o_spike.ready, pace.random() < 0.7)
        ctx.set(core.o_readout.ready, pace.random() < 0.7)
        _, _, *values = await ctx.tick().sample(*signals)
        event_valid, event_ready, _, spike_valid, spike_ready, spike, valid, ready, value = values
        if event_valid and event_ready:
            run.first_event = run.first_event or cycle
            run.events_taken += 1
        if spike_valid and spike_ready:
            assert run.events_taken, "a spike event before the sample's first event"
            spike = unpack(event_layout(cfg.n_rec), spike)
            is_step = spike["kind"] == EventKind.STEP.value
            run.add(run.spikes, None if is_step else spike["index"], is_step)
        if valid and ready:
            assert run.events_taken, "a readout value before the sample's first event"
            value = unpack(readout_layout(cfg), value)
            assert value["index"] == len(run.readout[-1][0])
            run.add(run.readout, value["value"], bool(value["last"]))
    ctx.set(harness.domain.rst, 0)


def test_reset_is_a_clear_at_any_cycle() -> None:
    """``rst`` at every cycle of a sample (mid-step, mid-update, mid-output under random
    stalls): the core sends no rest of a group it had started, takes its first event
    ``cycles_per_clear`` edges after the reset, and the next sample, sent without ``CLEAR``, gives
    the golden model's values from the zero state in every step it completes."""
    cfg = CONFIGS[0].replace(lanes=2)
    rng = np.random.default_rng(21)
    net = _random_net(cfg, rng)
    steps = 3
    harness = ResetHarness(net)
    pace = random.Random(3)
    # a sample at its slowest: the cuts reach past the end of most samples
    span = cycles_per_clear(cfg) + steps * cycles_per_step(cfg, cfg.n_in, cfg.n_rec, cfg.n_rec)
    runs = [CutRun((rng.random((steps, cfg.n_in)) < 0.6).astype(np.uint8)) for _ in range(span)]

    async def bench(ctx):
        for cut, run in enumerate(runs, start=1):
            await run_until_cut(ctx, harness, run, cut, pace)

    sim = Simulator(harness)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    cut_in = cut_spikes = cut_readout = whole = 0
    for run in runs:
        assert run.first_event in (0, cycles_per_clear(cfg))
        golden = golden_run(net, run.x[None])
        for t, (values, complete) in enumerate(run.spikes):
            expected = list(np.flatnonzero(golden.spikes[0, t])) if t < steps else []
            assert values == expected[: len(values)] and (not complete or values == expected)
            cut_spikes += bool(values) and not complete
        for t, (values, complete) in enumerate(run.readout):
            expected = list(golden.readout[0, t]) if t < steps else []
            assert values == expected[: len(values)] and (not complete or values == expected)
            cut_readout += bool(values) and not complete
        cut_in += run.events_taken > 0 and run.spikes[-1] == ([], False) and len(run.spikes) == 1
        whole += len(run.readout) == steps + 1
    assert cut_in and cut_spikes and cut_readout and whole, "every kind of cut must occur"


LEARNING_CORE = HardwareConfig(
    n_in=4, n_rec=6, n_out=3, weight_bits=5, membrane_bits=9, frac_bits=2, leak_shift=2,
    out_leak_shift=1, threshold=16, w_in_shift=2, w_rec_shift=1, lanes=2,
    learning=LearningConfig(
        trace_bits=8, trace_frac_bits=2, signal_bits=8, signal_shift=2, psi_width_shift=5,
        psi_bits=2, target=40, error="target", supervised_steps=2, lr_shift_in=4,
        lr_shift_rec=4, lr_shift_out=4, alpha_shift=2, wbar_bits=7,
    ),
)  # fmt: skip


async def drive_words(ctx, harness: ResetHarness, words: list[int]) -> None:
    """Offer the ``i_event`` payloads ``words`` back to back with every output ready."""
    core = harness.core
    for name in ("o_spike", "o_readout", "o_weights"):
        ctx.set(getattr(core, name).ready, 1)
    for word in words:
        ctx.set(core.i_event.valid, 1)
        ctx.set(core.i_event.payload.as_value(), word)
        await ctx.tick().until(core.i_event.ready)
    ctx.set(core.i_event.valid, 0)


def _learning_case(
    mode: str, seed: int, *, samples: int, steps: int
) -> tuple[QuantizedNetwork, np.ndarray, np.ndarray]:
    """``LEARNING_CORE`` under ``mode`` with random weights, random input spikes ``(samples,
    steps, n_in)`` and a random label per sample."""
    cfg = LEARNING_CORE.replace(learning=replace(LEARNING_CORE.learning, mode=mode))
    rng = np.random.default_rng(seed)
    net = _random_net(cfg, rng)
    x = (rng.random((samples, steps, cfg.n_in)) < 0.6).astype(np.uint8)
    return net, x, rng.integers(0, cfg.n_out, samples)


def run_with_reset(harness: ResetHarness, before, items, places, steps: int) -> StreamBench:
    """Run the testbench ``before``, assert ``rst`` for one cycle, then send ``items`` (one
    sample of ``steps`` steps) while a bench collects its spikes and readouts and a dump at
    each of ``places``; returns the bench, checked for stream errors."""
    bench = StreamBench(harness.core.config, 1, steps)
    reset_done = [False]

    async def before_and_reset(ctx) -> None:
        await before(ctx)
        ctx.set(harness.domain.rst, 1)
        await ctx.tick()
        ctx.set(harness.domain.rst, 0)
        reset_done[0] = True
        await bench.drive(AmaranthPorts(ctx, harness), items)

    def after_reset(collect):
        async def run(ctx) -> None:
            while not reset_done[0]:
                await ctx.tick()
            await collect(AmaranthPorts(ctx, harness))

        return run

    sim = Simulator(harness)
    sim.add_clock(1e-6)
    sim.add_testbench(before_and_reset)
    sim.add_testbench(after_reset(bench.collect_spikes))
    sim.add_testbench(after_reset(bench.collect_readout))
    sim.add_testbench(after_reset(lambda ports: bench.collect_dumps(ports, places)))
    sim.run()
    assert bench.errors == [], "\n".join(str(e) for e in bench.errors)
    return bench


@pytest.mark.parametrize("mode", ["eprop", "fptt"])
def test_reset_restarts_learning_as_after_a_load(mode: str) -> None:
    """A learning core that has learned a sample and is reset in the middle of the next one
    keeps the learned weights and ``W_bar``, and learns the sample after, sent without
    ``CLEAR``, as the golden model does from those weights loaded (traces zero, LFSRs at their
    seeds, no previous factors): every spike and readout, every weight and ``W_bar`` after
    every update."""
    net, x, labels = _learning_case(mode, 8, samples=3, steps=5)
    cfg = net.config
    first = golden_learning_run(net, x[:1], labels[:1])
    kept = first.snapshots[-1]
    learned = QuantizedNetwork(cfg, *(kept.weights[m] for m in ("in", "rec", "out")))
    after = golden_learning_run(net, x[2:], labels[2:], WeightLoad(0, learned, kept.wbar))
    updates = [snap for snap in after.snapshots if snap.after == "update"]
    assert updates and any((snap.weights["rec"] != learned.w_rec).any() for snap in updates)

    layout = learn_event_layout(cfg)
    words = [e.word for e in frame_run(
        layout, x[:1], labels=labels[:1], learn=first.learn, shift=first.shift
    )]  # fmt: skip
    cut = frame_sample(layout, x[1], 1, learn=np.zeros(5, bool), shift=np.zeros(5, np.int64))
    cut = [e.word for e in cut if e.step < 1] + [e.word for e in cut if e.step == 1][:-1]
    items = frame_sample(
        layout, x[2], 0, clear=False, learn=after.learn[0], label=labels[2], shift=after.shift[0]
    )
    harness = ResetHarness(net)

    async def before(ctx) -> None:
        await drive_words(ctx, harness, words)
        await ctx.tick().until(~harness.core.busy)
        await drive_words(ctx, harness, cut)
        await ctx.tick().repeat(2)  # in the fan-out of the last input

    places = [(snap.sample, snap.step) for snap in updates]
    bench = run_with_reset(harness, before, items, places, x.shape[1])
    np.testing.assert_array_equal(bench.spikes, after.spikes)
    np.testing.assert_array_equal(bench.readout, after.readout)
    assert len(bench.dumps) == len(updates)
    for snap, dump in zip(updates, bench.dumps, strict=True):
        records, total = compare_snapshot(snap, decode_dump(net, dump))
        assert total == 0, "; ".join(str(r) for r in records)


def _run_cut_update(net, x, labels, cut: int) -> tuple[dict[str, np.ndarray], StreamBench, list]:
    """Send sample ``x[0]`` up to its first ``STEP`` with ``learn``, assert ``rst`` ``cut`` edges
    after that ``STEP`` is taken, then read the weights back first thing and send sample
    ``x[1]`` without ``CLEAR``, learning and read back after every update.  Returns the
    matrices read back after the reset, the bench of the rest and its dump places."""
    cfg = net.config
    steps = x.shape[1]
    layout = learn_event_layout(cfg)
    learn, shift = step_commands(net, steps)
    t_learn = int(np.flatnonzero(learn)[0])
    events = frame_sample(layout, x[0], 0, learn=learn, label=labels[0], shift=shift)
    words = [e.word for e in events if not e.read and e.step <= t_learn]
    read = Event(pack(layout, kind=READ_WEIGHTS), 0, -1, read=True)
    items = [read] + frame_sample(
        layout, x[1], 0, clear=False, learn=learn, label=labels[1], shift=shift
    )
    places = [(0, -1)] + [(0, int(t)) for t in np.flatnonzero(learn)]
    harness = ResetHarness(net)

    async def before(ctx) -> None:
        await drive_words(ctx, harness, words)
        if cut:
            await ctx.tick().repeat(cut)

    bench = run_with_reset(harness, before, items, places, steps)
    return decode_dump(net, bench.dumps[0]), bench, places


@pytest.mark.parametrize("mode", ["eprop", "fptt"])
def test_reset_in_an_update_leaves_each_weight_old_or_new(mode: str) -> None:
    """``rst`` at cycles spread over a learning step and its update: every weight and ``W_bar``
    read back right after it is the one from before the update or the golden model's after it
    (cuts in the sweep leave some of each), and the next sample, sent without ``CLEAR``,
    learns as the golden model does from what the memories hold: every spike and readout,
    every weight and ``W_bar`` after every update.  The sweep's and the lanes' data registers
    have no reset, and this shows that what they hold at a reset reaches no memory and no
    output."""
    net, x, labels = _learning_case(mode, 11, samples=2, steps=4)
    cfg = net.config
    first = golden_learning_run(net, x[:1], labels[:1])
    start = LearningState.start(net)
    old = {m: net.matrix(m) for m in ("in", "rec", "out")}
    old |= {f"wbar_{m}": w for m, w in start.wbar.items()}
    new = dict(first.snapshots[0].weights)
    new |= {f"wbar_{m}": w for m, w in first.snapshots[0].wbar.items()}
    span = cycles_per_step(cfg, cfg.n_in, cfg.n_rec, cfg.n_rec) + cycles_per_update(cfg)
    kinds = set()
    for cut in range(0, span + 8, 7):
        held, bench, places = _run_cut_update(net, x, labels, cut)
        assert held.keys() == old.keys()
        for key, value in held.items():
            assert ((value == old[key]) | (value == new[key])).all(), (cut, key)
        kinds.add(tuple(any((held[k] != ref[k]).any() for k in held) for ref in (old, new)))
        learned = QuantizedNetwork(cfg, held["in"], held["rec"], held["out"])
        wbar = {m: held[f"wbar_{m}"] for m in ("in", "rec", "out")} if mode == "fptt" else {}
        after = golden_learning_run(net, x[1:], labels[1:], WeightLoad(0, learned, wbar))
        np.testing.assert_array_equal(bench.spikes, after.spikes)
        np.testing.assert_array_equal(bench.readout, after.readout)
        assert len(bench.dumps) == len(after.snapshots) == len(places)
        for snap, dump in zip(after.snapshots, bench.dumps, strict=True):
            records, total = compare_snapshot(snap, decode_dump(net, dump))
            assert total == 0, f"cut {cut}: " + "; ".join(str(r) for r in records)
    # all old (cut before the sweep), all new (after it) and both (in it)
    assert kinds == {(False, True), (True, False), (True, True)}


# -- generator ------------------------------------------------------------------------------


def _net(cfg: HardwareConfig, seed: int = 3) -> QuantizedNetwork:
    return _random_net(cfg, np.random.default_rng(seed))


def _read_mem(path, bits: int, lanes: int) -> np.ndarray:
    words = [int(line, 16) for line in path.read_text().split()]
    out = np.zeros((len(words), lanes), np.int64)
    for a, word in enumerate(words):
        for lane in range(lanes):
            v = (word >> (lane * bits)) & ((1 << bits) - 1)
            out[a, lane] = v - (1 << bits) if v >> (bits - 1) else v
    return out


@pytest.mark.parametrize("lanes", [1, 3])
def test_generated_files(tmp_path, lanes: int) -> None:
    cfg = CONFIGS[0].replace(lanes=lanes)
    net = _net(cfg)
    design = generate_verilog(net, tmp_path, name="core_x")
    assert design.verilog.name == "core_x.v"
    text = design.verilog.read_text()
    assert "module core_x(" in text
    assert "initial #0" in text  # always @* blocks wake at time zero under SystemVerilog rules
    assert "readmem" not in text  # weights are embedded; the .mem files are for other flows

    rows, out_rows = -(-cfg.n_rec // lanes), -(-cfg.n_out // lanes)
    wb = cfg.weight_bits
    digits = (lanes * wb + 3) // 4
    for path in (design.w_in_mem, design.w_rec_mem, design.w_out_mem):
        assert all(len(line) == digits for line in path.read_text().splitlines())
    # decode the images back into the matrices: word pre * rows + r, lane l -> w[r*lanes+l, pre]
    for path, w in ((design.w_in_mem, net.w_in), (design.w_rec_mem, net.w_rec)):
        words = _read_mem(path, wb, lanes).reshape(w.shape[1], rows * lanes)
        np.testing.assert_array_equal(words[:, : cfg.n_rec].T, w)
        assert not words[:, cfg.n_rec :].any()
    words = _read_mem(design.w_out_mem, wb, lanes).reshape(cfg.n_rec, out_rows * lanes)
    np.testing.assert_array_equal(words[:, : cfg.n_out].T, net.w_out)

    meta = json.loads(design.design_json.read_text())
    assert meta["lanes"] == lanes and meta["config"] == cfg.to_dict()
    ports = {port["name"]: port for port in meta["ports"]}
    assert set(ports) == {
        "clk", "rst", "busy",
        "i_event__payload", "i_event__valid", "i_event__ready",
        "o_spike__payload", "o_spike__valid", "o_spike__ready",
        "o_readout__payload", "o_readout__valid", "o_readout__ready",
    }  # fmt: skip
    assert ports["i_event__payload"]["width"] == 2 + cfg.index_bits(cfg.n_in)
    assert ports["o_readout__payload"]["width"] == (
        cfg.index_bits(cfg.n_out) + cfg.membrane_bits + 1
    )
    assert ports["o_spike__ready"]["direction"] == "input"
    for port in ports.values():
        assert f" {port['name']};" in text or f" {port['name']} ;" in text


def test_generation_is_deterministic(tmp_path) -> None:
    net = _net(CONFIGS[2])
    first = generate_verilog(net, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in first.files}
    contents = {p: p.read_bytes() for p in first.files}
    second = generate_verilog(net, tmp_path)
    assert {p: p.read_bytes() for p in second.files} == contents
    assert {p: p.stat().st_mtime_ns for p in second.files} == stamps  # not rewritten
    assert render_verilog(net) == contents[first.verilog].decode()


def test_bad_arguments() -> None:
    net = _net(CONFIGS[1])
    with pytest.raises(ConfigError, match="lanes"):
        net.config.replace(lanes=0)
    with pytest.raises(ConfigError, match="lanes"):
        net.config.replace(lanes=65)
    with pytest.raises(ConfigError, match="Verilog identifier"):
        render_verilog(net, name="9 bad")
    with pytest.raises(ValueError, match="n_prev_spikes"):
        cycles_per_step(net.config, 0, 2, 0)
    assert cycles_per_step(CONFIGS[0].replace(lanes=2), 2, 1, 3) == 3 * (2 + 1 + 1) + 1 * 3 + 2 + 12
    with pytest.raises(ValueError, match="n_repeated_spikes"):
        cycles_per_step(net.config, 0, 0, 0, 1, 2)  # more repeats than dropped events
    # a repeat costs a second cycle only where a fan-out has more than one row
    one_row, three_rows = CONFIGS[0].replace(lanes=5), CONFIGS[0].replace(lanes=2)
    assert cycles_per_step(one_row, 1, 0, 0, 3, 2) == cycles_per_step(one_row, 1, 0, 0, 3)
    assert cycles_per_step(three_rows, 1, 0, 0, 3, 2) == cycles_per_step(three_rows, 1, 0, 0, 3) + 2
