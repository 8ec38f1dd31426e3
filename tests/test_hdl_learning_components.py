"""Each component of the learning unit on its own, in the Amaranth simulator, against its twin
in the golden model (:mod:`neurofptt.onchip`, :mod:`neurofptt.quant.lfsr`) on seeded random
cases and at the edges: the LFSR bank, one weight-update lane (e-prop and FPTT), the softmax
error's passes, the readout error, the trace update, the learning signal, the sweep's walk and
the weight load."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from kept_registers import is_kept

from neurofptt.errors import ConfigError
from neurofptt.hdl.cost import softmax_cycles, weight_words
from neurofptt.hdl.error import ReadoutError
from neurofptt.hdl.generate import render_verilog
from neurofptt.hdl.layouts import MATRIX_CODES
from neurofptt.hdl.learning_signal import LearningSignal
from neurofptt.hdl.lfsr import LfsrBank, draws_per_word
from neurofptt.hdl.softmax_error import SoftmaxError
from neurofptt.hdl.sweep import SweepCounter, matrix_shapes
from neurofptt.hdl.traces import TraceUpdate, inputs_per_word
from neurofptt.hdl.weight_load import WeightLoad
from neurofptt.hdl.weight_update import WeightUpdateLane, factor_bits
from neurofptt.onchip import LearningState, softmax_error
from neurofptt.onchip.eprop import eprop_update
from neurofptt.onchip.factors import update_factors
from neurofptt.onchip.fptt import fptt_update
from neurofptt.onchip.step import learning_step
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import LFSR_BITS, LearningConfig, lane_rows
from neurofptt.quant.fixedpoint import saturate
from neurofptt.quant.golden import GoldenState
from neurofptt.quant.lfsr import lane_seeds, lfsr_draw


def run(dut, *benches, clock: bool = True) -> None:
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def extremes(rng: np.random.Generator, shape, lo: int, hi: int) -> np.ndarray:
    """Uniform in ``[lo, hi]``, a quarter of the values at ``lo`` or ``hi``."""
    x = rng.integers(lo, hi + 1, size=shape)
    return np.where(rng.random(shape) < 0.25, rng.choice([lo, hi], size=shape), x)


def random_config(seed: int, **fixed) -> HardwareConfig:
    """A small learning core with random formats and constants; ``fixed`` sets learning fields
    (and ``n_in``, ``n_rec``, ``n_out``, ``lanes``, ``membrane_bits``)."""
    rng = np.random.default_rng(seed)
    hardware = {k: fixed.pop(k) for k in ("n_in", "n_rec", "n_out", "lanes", "membrane_bits")
                if k in fixed}  # fmt: skip
    while True:
        wb = int(rng.integers(3, 8))
        learning = dict(
            mode=str(rng.choice(["eprop", "fptt"])),
            feedback=str(rng.choice(["symmetric", "random"])),
            trace_bits=int(rng.integers(4, 10)),
            trace_frac_bits=int(rng.integers(0, 4)),
            signal_bits=int(rng.integers(4, 12)),
            signal_shift=int(rng.integers(0, 6)),
            psi_width_shift=int(rng.integers(3, 7)),
            psi_bits=int(rng.integers(0, 4)),
            target=int(rng.integers(0, 60)),
            error=str(rng.choice(["target", "hinge", "softmax"])),
            softmax_shift=int(rng.integers(0, 17)),
            rounding=str(rng.choice(["floor", "nearest"])),
            alpha_shift=int(rng.integers(1, 5)),
            wbar_bits=int(rng.integers(wb, wb + 4)),
            wbar_store=str(rng.choice(["absolute", "difference"])),
            lfsr_seed=int(rng.integers(1, 1 << 16)),
            **{f"lr_shift_{m}": int(rng.integers(0, 25)) for m in ("in", "rec", "out")},
        )
        learning.update(fixed)
        if learning["wbar_store"] == "difference" and "wbar_bits" not in fixed:
            learning["wbar_bits"] = int(rng.integers(2, 5))
        try:
            return HardwareConfig(
                n_in=hardware.get("n_in", int(rng.integers(2, 8))),
                n_rec=hardware.get("n_rec", int(rng.integers(3, 11))),
                n_out=hardware.get("n_out", int(rng.integers(1, 5))),
                weight_bits=wb,
                membrane_bits=hardware.get("membrane_bits", int(rng.integers(7, 11))),
                frac_bits=2,
                leak_shift=int(rng.integers(0, 4)),
                out_leak_shift=int(rng.integers(0, 3)),
                threshold=int(rng.integers(8, 30)),
                lanes=hardware.get("lanes", int(rng.integers(1, 5))),
                learning=LearningConfig(**learning),
            )
        except ConfigError:
            continue


def random_net(cfg: HardwareConfig, rng: np.random.Generator) -> QuantizedNetwork:
    def w(shape):
        return extremes(rng, shape, cfg.w_min, cfg.w_max)

    return QuantizedNetwork(
        cfg, w((cfg.n_rec, cfg.n_in)), w((cfg.n_rec, cfg.n_rec)), w((cfg.n_out, cfg.n_rec))
    )


def psi_of(cfg: HardwareConfig, v: np.ndarray) -> np.ndarray:
    """The pseudo-derivative of :func:`~neurofptt.onchip.factors.update_factors`."""
    lc = cfg.learning
    w = lc.psi_width_shift
    return np.maximum(0, (1 << w) - np.abs(v - cfg.threshold)) >> (w - lc.psi_bits)


# -- the LFSR bank -------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "lanes"), [("eprop", 1), ("eprop", 3), ("fptt", 2), ("fptt", 5)])
def test_lfsr_bank_draws_as_the_golden_lfsrs(mode: str, lanes: int) -> None:
    """From reset every lane is at its seed; each step moves it by the draws of one word
    (``lfsr_draw``), which it shows beforehand; a reseed returns it to its seed."""
    cfg = random_config(lanes, mode=mode, lanes=lanes)
    dut = LfsrBank(cfg)
    n = draws_per_word(cfg)
    seeds = lane_seeds(cfg.learning.lfsr_seed, lanes)
    pattern = random.Random(lanes)

    async def bench(ctx):
        states = seeds
        for _ in range(60):
            step, reseed = pattern.random() < 0.7, pattern.random() < 0.05
            ctx.set(dut.step, step)
            ctx.set(dut.reseed, reseed)
            values, after = lfsr_draw(states, n)
            got = ctx.get(dut.draws)
            assert [[int(got[ln][u]) for u in range(n)] for ln in range(lanes)] == values.tolist()
            await ctx.tick()
            states = seeds if reseed else (after if step else states)

    run(dut, bench)


# -- one lane of the weight update ---------------------------------------------------------------


LANE_CONFIGS = [
    dict(mode="eprop", lr_shift_in=0, lr_shift_rec=9, lr_shift_out=20),
    dict(mode="eprop", lr_shift_in=16, lr_shift_rec=16, lr_shift_out=16),
    dict(mode="fptt", wbar_store="absolute", lr_shift_in=3, lr_shift_rec=17, lr_shift_out=24),
    dict(mode="fptt", wbar_store="difference", lr_shift_in=5, lr_shift_rec=5, lr_shift_out=12),
]


@pytest.mark.parametrize("fixed", LANE_CONFIGS, ids=lambda f: "-".join(map(str, f.values())))
def test_weight_update_lane_matches_eprop_and_fptt(fixed: dict) -> None:
    """Random weights, traces, factors, stored ``W_bar`` and draws over their whole formats, a
    word per cycle, the draws on the lane's ``draw_cycle``: ``w_cycle`` cycles after its inputs
    a word's new weight is ``eprop_update`` / ``fptt_update``'s, ``wbar_cycle`` cycles after
    them FPTT's stored ``W_bar``, for every matrix's learning rate."""
    cfg = random_config(sum(map(len, map(str, fixed.values()))), lanes=1, **fixed)
    lc = cfg.learning
    fptt = lc.mode == "fptt"
    rng = np.random.default_rng(7)
    words = 400
    fb = factor_bits(cfg)
    w = extremes(rng, words, cfg.w_min, cfg.w_max)
    pre = extremes(rng, words, 0, (1 << lc.trace_bits) - 1)
    post = extremes(rng, words, -(1 << (fb - 1)), (1 << (fb - 1)) - 1)
    pre_prev = extremes(rng, words, 0, (1 << lc.trace_bits) - 1)
    post_prev = extremes(rng, words, -(1 << (fb - 1)), (1 << (fb - 1)) - 1)
    top = 1 << (lc.wbar_bits - 1)
    stored = extremes(rng, words, -top, top - 1)
    draws = rng.integers(1, 1 << LFSR_BITS, size=(words, 2))
    mats = rng.integers(0, 3, size=words)
    names = {code: name for name, code in MATRIX_CODES.items()}
    want_w, want_wbar = np.zeros(words, np.int64), np.zeros(words, np.int64)
    for i in range(words):
        s = lc.lr_shift(names[int(mats[i])])
        g = np.array([post[i] * pre[i]])
        if not fptt:
            want_w[i] = eprop_update(w[i : i + 1], g, s, [draws[i, :1]], cfg.weight_bits)[0]
            continue
        mean = stored[i] if lc.wbar_store == "absolute" else w[i] - stored[i]
        new_w, new_mean = fptt_update(
            w[i : i + 1], np.array([mean]), g, np.array([post_prev[i] * pre_prev[i]]), s,
            lc.alpha_shift, [draws[i, :1], draws[i, 1:]], cfg.weight_bits,
        )  # fmt: skip
        want_w[i] = new_w[0]
        keep = new_mean if lc.wbar_store == "absolute" else new_w - new_mean
        want_wbar[i] = saturate(keep, lc.wbar_bits)[0]
    assert {cfg.w_min, cfg.w_max} <= set(want_w.tolist()), "the weights must saturate"
    dut = WeightUpdateLane(cfg)
    got_w, got_wbar = np.zeros(words, np.int64), np.zeros(words, np.int64)

    async def bench(ctx):
        for c in range(words + dut.wbar_cycle + 1):
            if c < words:  # the inputs of word c
                ctx.set(dut.w, int(w[c]))
                ctx.set(dut.pre, int(pre[c]))
                ctx.set(dut.post, int(post[c]))
                if fptt:
                    ctx.set(dut.mat, int(mats[c]))
                    ctx.set(dut.pre_prev, int(pre_prev[c]))
                    ctx.set(dut.post_prev, int(post_prev[c]))
                    ctx.set(dut.wbar, int(stored[c]))
            if 0 <= (i := c - dut.draw_cycle) < words:  # the draws of word i
                ctx.set(dut.draws, [int(d) for d in draws[i, : draws_per_word(cfg)]])
            if 0 <= (i := c - dut.w_cycle) < words:
                got_w[i] = ctx.get(dut.w_new[int(mats[i])])
            if fptt and 0 <= (i := c - dut.wbar_cycle) < words:
                got_wbar[i] = ctx.get(dut.wbar_new[int(mats[i])])
            await ctx.tick()

    run(dut, bench)
    np.testing.assert_array_equal(got_w, want_w)
    if fptt:
        np.testing.assert_array_equal(got_wbar, want_wbar)


# -- the softmax error's passes ------------------------------------------------------------------


class SoftmaxHarness(wiring.Component):
    """The softmax error reading an ``error`` table that the testbench writes."""

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        self.softmax = SoftmaxError(cfg)
        rows = lane_rows(cfg.n_out, cfg.lanes)
        layout = data.ArrayLayout(signed(cfg.membrane_bits + 1), cfg.lanes)
        self.table = Memory(shape=layout, depth=rows, init=[])
        self.write = self.table.write_port(granularity=1)
        super().__init__({})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.softmax, m.submodules.table = self.softmax, self.table
        wiring.connect(m, self.softmax.table, self.table.read_port(transparent_for=(self.write,)))
        return m


SOFTMAX_CASES = [
    ({}, 4, 2, 0),  # random
    ({}, 3, 1, 1),
    ({"softmax_shift": 0}, 3, 2, 2),  # q_k a plain power of two
    ({"softmax_shift": 16}, 4, 3, 3),  # every q_k one chord step
    ({"target": 0}, 3, 2, 4),  # e_k = 0
    ({"target": 127}, 3, 2, 5),  # the largest target the 8-bit readouts allow
    ({}, 1, 1, 6),  # one readout: p = 1
    ({}, 1, 3, 7),  # lanes beyond the readouts
    ({}, 5, 2, 8),  # readouts over three rows
]


@pytest.mark.parametrize(("learning", "n_out", "lanes", "seed"), SOFTMAX_CASES)
def test_softmax_error_matches_golden(learning: dict, n_out: int, lanes: int, seed: int) -> None:
    """Readouts (extremes, ties and spreads beyond ``16 * 2**shift`` included) enter the table
    as the core writes them; the passes give ``softmax_error``'s ``e_k`` at each readout's row
    and lane, and ``done`` comes :func:`~neurofptt.hdl.cost.softmax_cycles` cycles after
    ``start``."""
    learning = {"error": "softmax", **learning}
    cfg = random_config(seed, n_out=n_out, lanes=lanes, membrane_bits=8, **learning)
    lc = cfg.learning
    rng = np.random.default_rng(seed)
    cases = [extremes(rng, n_out, cfg.v_min, cfg.v_max) for _ in range(6)]
    cases += [np.full(n_out, cfg.v_max), rng.integers(-3, 3, n_out)]
    labels = rng.integers(0, n_out, len(cases))
    dut = SoftmaxHarness(cfg)
    results = []

    async def bench(ctx):
        sm, wr = dut.softmax, dut.write
        for o, label in zip(cases, labels, strict=True):
            for k, value in enumerate(o):  # a readout a cycle, as the core writes them
                ctx.set(wr.addr, k // lanes)
                ctx.set(wr.en, 1 << (k % lanes))
                ctx.set(wr.data, [int(value)] * lanes)
                ctx.set(sm.value.valid, 1)
                ctx.set(sm.value.p, {"first": k == 0, "value": int(value)})
                await ctx.tick()
            ctx.set(wr.en, 0)
            ctx.set(sm.value.valid, 0)
            ctx.set(sm.label, int(label))
            ctx.set(sm.start, 1)
            await ctx.tick()
            ctx.set(sm.start, 0)
            errors, cycles, done = {}, 0, False  # done comes this many cycles after the start
            while not done:
                _, _, done, valid, e = await ctx.tick().sample(sm.done, sm.error.valid, sm.error.p)
                cycles += 1
                if valid:
                    errors[(int(e.row), int(e.lane))] = int(e.value)
            assert valid, "the last e_k leaves with done"
            results.append((o, label, errors, cycles))

    run(dut, bench)
    for o, label, errors, cycles in results:
        want = softmax_error(np.asarray(o, np.int64), int(label), lc.target, lc.softmax_shift)
        assert errors == {(k // lanes, k % lanes): int(e) for k, e in enumerate(want)}
        assert cycles == softmax_cycles(cfg)


# -- the readout error ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(9))
def test_readout_error_matches_update_factors(seed: int) -> None:
    """Readouts sent (with pauses) become ``update_factors``' ``e_k`` in the table, for the three
    errors, both roundings and every error shift."""
    error = ("target", "hinge", "softmax")[seed % 3]
    cfg = random_config(100 + seed, error=error, rounding=("floor", "nearest")[seed // 3 % 2])
    rng = np.random.default_rng(seed)
    net = random_net(cfg, rng)
    state = LearningState.start(net)
    lanes, n_out = cfg.lanes, cfg.n_out
    cases = []
    for shift in range(cfg.membrane_bits + 1):
        o = extremes(rng, n_out, cfg.v_min, cfg.v_max)
        label = int(rng.integers(0, n_out))
        neurons = GoldenState(np.zeros((1, cfg.n_rec), np.int64), np.zeros((1, cfg.n_rec), bool),
                              o[None])  # fmt: skip
        cases.append((o, label, shift, update_factors(net, state, neurons, label, shift).error))
    dut = ReadoutError(cfg)
    got = []
    pace = random.Random(seed)

    async def bench(ctx):
        for o, label, shift, _ in cases:
            ctx.set(dut.label, label)
            ctx.set(dut.shift, shift)
            for k, value in enumerate(o):
                while pace.random() < 0.3:  # the readout stream stalls
                    await ctx.tick()
                ctx.set(dut.readout.valid, 1)
                ctx.set(dut.readout.p, {"index": k, "row": k // lanes, "lane": k % lanes,
                                        "value": int(value)})  # fmt: skip
                await ctx.tick()
                ctx.set(dut.readout.valid, 0)
            await ctx.tick()  # the last error is written
            if error == "softmax":
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                await ctx.tick().until(dut.done)
                await ctx.tick()
            e = []
            for row in range(lane_rows(n_out, lanes)):
                ctx.set(dut.table.addr, row)
                await ctx.tick()
                e += [int(v) for v in ctx.get(dut.table.data)]
            ctx.set(dut.table.addr, 0)
            got.append(e[:n_out])

    run(dut, bench)
    for (_, _, _, want), e in zip(cases, got, strict=True):
        assert e == want.tolist()


# -- the trace update ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_trace_update_matches_learning_step(seed: int) -> None:
    """Random traces (saturated ones included), spikes, inputs and membranes: one row at a
    time, the new traces equal ``learning_step``'s and ``psi`` the pseudo-derivative of
    ``update_factors``; a row a cycle, the traces leave one cycle after the row and ``psi``
    two."""
    cfg = random_config(200 + seed)
    lc, lanes = cfg.learning, cfg.lanes
    rng = np.random.default_rng(seed)
    net = random_net(cfg, rng)
    top = (1 << lc.trace_bits) - 1
    state = dataclasses.replace(
        LearningState.start(net),
        neurons=GoldenState(
            v=extremes(rng, (1, cfg.n_rec), cfg.v_min, cfg.v_max),
            z=rng.random((1, cfg.n_rec)) < 0.5,
            o=np.zeros((1, cfg.n_out), np.int64),
        ),
        x_trace=extremes(rng, cfg.n_in, 0, top),
        z_trace=extremes(rng, cfg.n_rec, 0, top),
        out_trace=extremes(rng, cfg.n_rec, 0, top),
    )
    x = rng.random(cfg.n_in) < 0.5
    _, after = learning_step(net, state, x, 0, None)
    rows = lane_rows(cfg.n_rec, lanes)
    k = inputs_per_word(cfg)

    def laid(values, width):  # (n,) in words of ``width``, zero-padded
        out = np.zeros(lane_rows(len(values), width) * width, np.int64)
        out[: len(values)] = values
        return out.reshape(-1, width)

    old_z, old_o = laid(state.z_trace, lanes), laid(state.out_trace, lanes)
    z_prev, z_new = laid(state.neurons.z[0], lanes), laid(after.neurons.z[0], lanes)
    v_new = laid(after.neurons.v[0], lanes)
    x_old, x_bits = laid(state.x_trace, k), laid(x, k)
    dut = TraceUpdate(cfg)
    got = {"z": [], "o": [], "x": [], "psi": []}

    async def bench(ctx):
        into, traces, psi = dut.row.p, dut.traces, dut.psi
        for r in range(rows + 2):
            ctx.set(dut.row.valid, r < rows)
            if r < rows:
                old = zip(old_z[r], old_o[r], strict=True)
                ctx.set(into.row, r)
                ctx.set(into.old, [{"zbar": int(a), "obar": int(b)} for a, b in old])
                ctx.set(into.z_prev, sum(int(b) << ln for ln, b in enumerate(z_prev[r])))
                ctx.set(into.z, sum(int(b) << ln for ln, b in enumerate(z_new[r])))
                ctx.set(into.v, [int(v) for v in v_new[r]])
                x = (x_old[r], x_bits[r]) if r < len(x_old) else (np.zeros(k, int),) * 2
                ctx.set(into.x_old, [int(v) for v in x[0]])
                ctx.set(into.x, sum(int(b) << i for i, b in enumerate(x[1])))
            await ctx.tick()
            if ctx.get(traces.valid):
                new, row = ctx.get(traces.p.new), int(ctx.get(traces.p.row))
                assert row == r
                got["z"] += [int(new[ln].zbar) for ln in range(lanes)]
                got["o"] += [int(new[ln].obar) for ln in range(lanes)]
                if row < len(x_old):
                    got["x"] += [int(v) for v in ctx.get(traces.p.x_new)]
            if ctx.get(psi.valid):
                assert int(ctx.get(psi.p.row)) == r - 1
                got["psi"] += [int(p) for p in ctx.get(psi.p.psi)]

    run(dut, bench)
    assert got["z"][: cfg.n_rec] == after.z_trace.tolist()
    assert got["o"][: cfg.n_rec] == after.out_trace.tolist()
    assert got["x"][: cfg.n_in] == after.x_trace.tolist()
    assert got["psi"][: cfg.n_rec] == psi_of(cfg, after.neurons.v[0]).tolist()


# -- the learning signal ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_learning_signal_matches_update_factors(seed: int) -> None:
    """The ``W_out`` sweep's words (feedback ``B``, error row, ``psi_j``), with pauses: every
    ``delta_j`` equals ``update_factors``', at neuron ``j``'s word and slot."""
    error = ("target", "hinge", "softmax")[seed % 3]
    feedback = ("symmetric", "random")[seed % 2]
    cfg = random_config(
        300 + seed, n_out=3, error=error, feedback=feedback, psi_bits=3, psi_width_shift=5,
        signal_shift=seed % 3,
    )  # fmt: skip
    lanes, n_out = cfg.lanes, cfg.n_out
    rng = np.random.default_rng(seed)
    net = random_net(cfg, rng)
    state = LearningState.start(net)
    width = 1 << cfg.learning.psi_width_shift  # membranes within the triangle, and beyond
    v = cfg.threshold + rng.integers(-width - 2, width + 3, (1, cfg.n_rec))
    neurons = GoldenState(
        v=np.clip(v, cfg.v_min, cfg.v_max),
        z=np.zeros((1, cfg.n_rec), bool),
        o=extremes(rng, (1, n_out), cfg.v_min, cfg.v_max),
    )
    label, shift = int(rng.integers(0, n_out)), int(rng.integers(0, 2))
    factors = update_factors(net, state, neurons, label, shift)
    assert factors.delta.any()
    psi = psi_of(cfg, neurons.v[0])
    feedback = net.w_out.T if state.feedback is None else state.feedback
    out_rows = lane_rows(n_out, lanes)
    b = np.zeros((cfg.n_rec, out_rows * lanes), np.int64)
    b[:, :n_out] = feedback
    e = rng.integers(-5, 5, out_rows * lanes)  # the padding lanes' values meet a zero weight
    e[:n_out] = factors.error
    dut = LearningSignal(cfg)
    got = {}
    pace = random.Random(seed)

    async def bench(ctx):
        word = dut.word
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        for j in range(cfg.n_rec + 1):
            for s in range(out_rows if j < cfg.n_rec else dut.latency):
                valid = j < cfg.n_rec
                if valid:
                    ctx.set(word.p, {
                        "b": [int(v) for v in b[j, s * lanes : (s + 1) * lanes]],
                        "e": [int(v) for v in e[s * lanes : (s + 1) * lanes]],
                        "psi": int(psi[j]),
                        "at": {"word": j // lanes, "slot": j % lanes},
                        "last": s == out_rows - 1,
                    })  # fmt: skip
                ctx.set(word.valid, valid)
                _, _, delta_valid, delta = await ctx.tick().sample(dut.delta.valid, dut.delta.p)
                if delta_valid:
                    got[(int(delta.at.word), int(delta.at.slot))] = int(delta.value)
                while valid and pace.random() < 0.2:  # other words pass meanwhile
                    ctx.set(word.valid, 0)
                    _, _, delta_valid, delta = await ctx.tick().sample(dut.delta.valid, dut.delta.p)
                    if delta_valid:
                        got[(int(delta.at.word), int(delta.at.slot))] = int(delta.value)

    run(dut, bench)
    assert got == {(j // lanes, j % lanes): int(d) for j, d in enumerate(factors.delta)}


# -- the sweep's walk and the weight load --------------------------------------------------------


def walk_order(cfg: HardwareConfig) -> list[tuple[int, ...]]:
    """Every word of the three weight memories in sweep order: ``(mat, pre, word, slot, row,
    addr)``."""
    order = []
    for name, (n_pre, n_rows, per_word) in matrix_shapes(cfg).items():
        for pre in range(n_pre):
            for row in range(n_rows):
                order.append((MATRIX_CODES[name], pre, pre // per_word, pre % per_word, row,
                              pre * n_rows + row))  # fmt: skip
    return order


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
def test_sweep_counter_walks_every_word_in_order(lanes: int) -> None:
    """W_out, W_in, W_rec, each presynaptic index with its trace word and slot and each row;
    ``last`` on the final word only; then back to the first; a restart starts over."""
    cfg = random_config(lanes, n_in=7, n_rec=9, n_out=3, lanes=lanes)
    dut = SweepCounter(cfg)
    order = walk_order(cfg)
    assert len(order) == weight_words(cfg)
    pace = random.Random(lanes)
    walks = []

    async def bench(ctx):
        for stop in (len(order) // 2, None):
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            seen = []
            while True:
                at = ctx.get(dut.at)
                fields = ("mat", "pre", "word", "slot", "row", "addr")
                seen.append((*(int(getattr(at, f)) for f in fields), ctx.get(dut.last)))
                if len(seen) == stop:
                    break
                ctx.set(dut.advance, 1)
                await ctx.tick()
                ctx.set(dut.advance, 0)
                if seen[-1][-1]:
                    break
                if pace.random() < 0.2:
                    await ctx.tick()
            walks.append(seen)
        walks.append(ctx.get(dut.at.as_value()))

    run(dut, bench)
    half, full, after = walks
    assert [s[:-1] for s in half] == order[: len(half)]
    assert [s[:-1] for s in full] == order
    assert [s[-1] for s in full] == [False] * (len(order) - 1) + [True]
    assert after == 0


@pytest.mark.parametrize("mode", ["eprop", "fptt"])
def test_weight_load_addresses_the_words_in_dump_order(mode: str) -> None:
    """A load writes its words at the sweep's addresses in order; ``last`` or the final word
    ends it (``restart``, a pulse on the cycle after the final word) and the next load starts
    at ``W_out`` word 0; ``ready`` follows ``enable``; ``loading`` from the first word to the
    cycle after the last."""
    cfg = random_config(5, mode=mode, n_in=3, n_rec=5, n_out=2, lanes=2)
    order = [(mat, addr) for mat, *_, addr in walk_order(cfg)]
    dut = WeightLoad(cfg)
    pace = random.Random(mode)
    loads = [(len(order), False), (4, True), (len(order), False), (1, True)]
    results = []

    async def bench(ctx):
        words = dut.i_weights
        ctx.set(dut.enable, 0)
        ctx.set(words.valid, 1)
        _, _, ready, write = await ctx.tick().sample(words.ready, dut.write.valid)
        assert not ready and not write
        ctx.set(dut.enable, 1)
        for count, last in loads:
            writes, restarts, loading = [], [], []
            for i in range(count):
                while pace.random() < 0.3:
                    ctx.set(words.valid, 0)
                    _, _, write = await ctx.tick().sample(dut.write.valid)
                    assert not write
                ctx.set(words.valid, 1)
                ctx.set(words.p.last, last and i == count - 1)
                ctx.set(words.p.w, [i % 3 - 1] * cfg.lanes)
                _, _, write, at = await ctx.tick().sample(dut.write.valid, dut.write.p)
                assert write and list(at.word.w) == [i % 3 - 1] * cfg.lanes
                writes.append((int(at.mat), int(at.addr)))
                restarts.append(bool(ctx.get(dut.restart)))
                loading.append(ctx.get(dut.loading))
            ctx.set(words.valid, 0)
            await ctx.tick()
            assert not ctx.get(dut.restart)  # one cycle
            assert not ctx.get(dut.loading)
            results.append((count, writes, restarts, loading))

    run(dut, bench)
    for count, writes, restarts, loading in results:
        assert writes == order[:count]
        assert restarts == [False] * (count - 1) + [True]
        assert loading == [True] * count  # the last word is still written on the next cycle


def test_fptt_operand_copies_are_kept_apart() -> None:
    """The lanes' copies of the trace and factors and the previous factors' own copies of
    them are registers of one input each, and each table the sweep reads has an address
    register of its own; every one is marked ``keep``, which is what stops synthesis from
    merging them back into the one register whose routes they cut."""
    cfg = random_config(3, mode="fptt", n_in=3, n_rec=5, n_out=4, lanes=2)  # every table 2+ deep
    core = render_verilog(random_net(cfg, np.random.default_rng(0)))
    start = core.index("module \\neurofptt_core.learning (")
    text = core[start : core.index("endmodule", start)]  # names are the module's own
    names = ["keep_pre"] + [
        f"{copy}_{lane}" for copy in ("lane_pre", "lane_post", "keep_post") for lane in range(2)
    ]
    tables = ["neuron_traces", "input_traces", "psi", "delta"]
    tables += ["prev_error", "prev_delta", "prev_obar", "prev_xbar", "prev_zbar"]
    names += [f"{table}_read_addr" for table in tables]
    for name in names:
        assert is_kept(text, name), name
