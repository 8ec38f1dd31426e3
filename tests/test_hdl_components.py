"""Each component of the inference core on its own, in the Amaranth simulator, against the
golden model's arithmetic (:func:`~neurofptt.quant.golden.golden_step`) on seeded random cases:
the LIF update of a row, the ``state`` and ``readout`` rows under the row pipeline, the spike
list with its cursor and emitter, and the sequencer's schedule of rows."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from kept_registers import is_kept

from neurofptt.hdl.blocks import WRITE_LATENCY, SlicedMemory, slice_width
from neurofptt.hdl.layouts import UPDATE_WRITE, RowOp
from neurofptt.hdl.neuron import NeuronRows, NeuronUpdate
from neurofptt.hdl.ports import EventKind, event_layout
from neurofptt.hdl.readout import ReadoutRows
from neurofptt.hdl.rows import lane_words
from neurofptt.hdl.sequencer import InputSet, Sequencer
from neurofptt.hdl.spikes import SpikeCursor, SpikeEmitter, SpikeList
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import lane_rows
from neurofptt.quant.golden import GoldenState, golden_step
from neurofptt.verify.streams import pack

#: cycles from a row entering NeuronUpdate (stage 2) to its leaving (stage UPDATE_WRITE)
UPDATE_LATENCY = UPDATE_WRITE - 2

CONFIGS = [
    HardwareConfig(
        n_in=3, n_rec=5, n_out=2, weight_bits=6, membrane_bits=8, frac_bits=4,
        leak_shift=2, out_leak_shift=1, threshold=20, reset="subtract", w_in_shift=2,
    ),
    HardwareConfig(
        n_in=4, n_rec=7, n_out=3, weight_bits=8, membrane_bits=7, frac_bits=3,
        leak_shift=1, out_leak_shift=2, threshold=10, reset="zero", w_rec_shift=3,
        w_out_shift=4,
    ),
    HardwareConfig(
        n_in=1, n_rec=1, n_out=1, weight_bits=4, membrane_bits=6, frac_bits=2,
        leak_shift=0, out_leak_shift=0, threshold=3, reset="zero", w_in_shift=5,
    ),
]  # fmt: skip
CASES = [(cfg, lanes) for cfg in CONFIGS for lanes in (1, 2, 3)]


def case_id(case) -> str:
    cfg, lanes = case
    return f"{cfg.n_in}-{cfg.n_rec}-{cfg.n_out}-{cfg.reset}-{lanes}lanes"


def run(dut, *benches, background=()) -> None:
    """Simulate ``dut`` with a 1 MHz clock until every bench has returned."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in background:
        sim.add_testbench(bench, background=True)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def random_net(cfg: HardwareConfig, rng: np.random.Generator) -> QuantizedNetwork:
    def w(shape):
        return rng.integers(cfg.w_min, cfg.w_max + 1, size=shape)

    return QuantizedNetwork(
        cfg, w((cfg.n_rec, cfg.n_in)), w((cfg.n_rec, cfg.n_rec)), w((cfg.n_out, cfg.n_rec))
    )


def extremes(rng: np.random.Generator, shape, lo: int, hi: int) -> np.ndarray:
    """Uniform in ``[lo, hi]``, a quarter of the values at ``lo`` or ``hi``."""
    x = rng.integers(lo, hi + 1, size=shape)
    return np.where(rng.random(shape) < 0.25, rng.choice([lo, hi], size=shape), x)


def rows_of(values: np.ndarray, lanes: int, fill: int = 0) -> np.ndarray:
    """``values`` (n,) in rows of ``lanes``: lane ``l`` of row ``r`` holds ``r * lanes + l``."""
    rows = lane_rows(len(values), lanes)
    out = np.full(rows * lanes, fill, np.int64)
    out[: len(values)] = values
    return out.reshape(rows, lanes)


# -- the LIF update of a row ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_neuron_update_matches_golden_step(case) -> None:
    """Random membranes (extremes included), previous spikes and inputs: the row update gives
    golden_step's membranes and spikes, saturating both ways, and padding lanes never spike."""
    cfg, lanes = case
    cfg = cfg.replace(lanes=lanes)
    rng = np.random.default_rng(lanes)
    net = random_net(cfg, rng)
    batch = 12
    lo, hi = -(1 << (cfg.membrane_bits - 1)), (1 << (cfg.membrane_bits - 1)) - 1
    state = GoldenState(
        v=extremes(rng, (batch, cfg.n_rec), lo, hi),
        z=rng.random((batch, cfg.n_rec)) < 0.5,
        o=np.zeros((batch, cfg.n_out), np.int64),
    )
    x = rng.random((batch, cfg.n_in)) < 0.7
    z_prev = state.z.astype(np.int64)
    current = ((x.astype(np.int64) @ net.w_in.T) << cfg.w_in_shift) + (
        (z_prev @ net.w_rec.T) << cfg.w_rec_shift
    )
    golden = golden_step(net, state, x)
    saturated = (golden.v == lo) | (golden.v == hi)
    assert saturated.any(), "the cases must reach the saturation"
    dut = NeuronUpdate(cfg)
    rows = lane_rows(cfg.n_rec, lanes)
    got_v = np.zeros((batch, rows * lanes), np.int64)
    got_z = np.zeros((batch, rows * lanes), bool)

    async def bench(ctx):
        items = []  # (b, r, lanes in, z_prev) of every row, then the pipeline's drain
        for b in range(batch):
            # padding lanes: a membrane above the threshold must still not spike
            acc, v = rows_of(current[b], lanes), rows_of(state.v[b], lanes, fill=hi)
            z = rows_of(state.z[b].astype(np.int64), lanes)
            for r in range(rows):
                lanes_in = [
                    {"acc": int(acc[r, ln]), "v": int(v[r, ln]), "z": int(z[r, ln])}
                    for ln in range(lanes)
                ]
                items.append((b, r, lanes_in, sum(int(z[r, ln]) << ln for ln in range(lanes))))
        seen = []  # each cycle: (row_out valid, row_out payload)
        for item in items + [None] * UPDATE_LATENCY:
            ctx.set(dut.row_in.valid, item is not None)
            if item is not None:
                ctx.set(dut.row_in.p, {"row": item[1], "state": item[2]})
            _, _, valid, out = await ctx.tick().sample(dut.row_out.valid, dut.row_out.p)
            seen.append((valid, out))
        n = len(items)
        assert [valid for valid, _ in seen] == [0] * UPDATE_LATENCY + [1] * n
        for (b, r, _, z_prev), (_, out) in zip(items, seen[UPDATE_LATENCY:], strict=True):
            assert out.row == r and out.z_prev == z_prev
            for ln in range(lanes):
                got_v[b, r * lanes + ln] = out.v[ln]
                got_z[b, r * lanes + ln] = (out.z >> ln) & 1

    run(dut, bench)
    np.testing.assert_array_equal(got_v[:, : cfg.n_rec], golden.v)
    np.testing.assert_array_equal(got_z[:, : cfg.n_rec], golden.z)
    assert not got_z[:, cfg.n_rec :].any()


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_leak_extremes(reset: str) -> None:
    """Without a spike to reset and with no input, ``leak_shift = 0`` leaves nothing of any
    membrane (no memory), and ``leak_shift = membrane_bits - 1`` keeps every membrane ``>= 0``
    and raises every negative one by one LSB (the slowest decay there is)."""
    base = CONFIGS[0].replace(reset=reset, membrane_bits=6, frac_bits=2, threshold=30)
    values = list(range(base.v_min, base.v_max + 1))
    expected = {0: [0] * len(values), 5: [v if v >= 0 else v + 1 for v in values]}
    got = {}
    for shift in expected:
        dut = NeuronUpdate(base.replace(leak_shift=shift, lanes=1))
        got[shift] = []

        async def bench(ctx, dut=dut, out=got[shift]):
            for v in values:
                ctx.set(dut.row_in.valid, 1)
                ctx.set(dut.row_in.p, {"row": 0, "state": [{"acc": 0, "v": v, "z": 0}]})
                await ctx.tick().repeat(UPDATE_LATENCY)
                out.append(ctx.get(dut.row_out.p.v[0]))

        run(dut, bench)
    assert got == expected


# -- the state and readout rows under the row pipeline -------------------------------------------


class RowPipeline(wiring.Component):
    """The neuron and readout rows with the core's stage-1 register in front: the testbench
    issues stage 0 (``op``, ``row``) and gives the weight words, one cycle later, as the weight
    memories would."""

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        self.neurons = NeuronRows(cfg)
        self.readout = ReadoutRows(cfg)
        super().__init__({})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.neurons, m.submodules.readout = self.neurons, self.readout
        return m


async def issue_rows(ctx, dut: RowPipeline, schedule: list, updates: list) -> None:
    """Issue ``schedule`` ``(op, row, words)`` one row per cycle (stage 0), with stage 1 and
    its weight words one cycle later, and collect the rows leaving ``UPDATE``."""
    stage1 = None
    for item in [*schedule, *[None] * UPDATE_WRITE]:
        for sink in (dut.neurons.op, dut.readout.op):
            ctx.set(sink.valid, stage1 is not None)
            ctx.set(sink.p, {"op": stage1[0], "row": stage1[1]} if stage1 else {"op": 0, "row": 0})
        words = stage1[2] if stage1 else {}
        for name, port in (
            ("w_in", dut.neurons.w_in),
            ("w_rec", dut.neurons.w_rec),
            ("w_out", dut.readout.w_out),
        ):
            ctx.set(port, [int(v) for v in words.get(name, [0] * dut.cfg.lanes)])
        update = dut.neurons.update
        _, _, valid, payload = await ctx.tick().sample(update.valid, update.payload)
        if valid:
            updates.append(payload)
        stage1 = item


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rows_under_the_pipeline_match_golden(case) -> None:
    """Steps issued row by row as the sequencer does (CLEAR, ACC_IN, ACC_REC, UPDATE,
    ACC_OUT, back to back, so a row is read in the cycle it is written): the rows leaving
    UPDATE and the readouts sent (under random backpressure) equal golden_step's."""
    cfg, lanes = case
    cfg = cfg.replace(lanes=lanes)
    rng = np.random.default_rng(10 + lanes)
    net = random_net(cfg, rng)
    steps = 5
    x = rng.random((steps, cfg.n_in)) < 0.6
    x[1] = True
    rows, out_rows = lane_rows(cfg.n_rec, lanes), lane_rows(cfg.n_out, lanes)
    w_in, w_rec, w_out = (lane_words(w, lanes) for w in (net.w_in, net.w_rec, net.w_out))
    dut = RowPipeline(cfg)
    states, readouts, sent = [], [], []
    pace = random.Random(lanes)

    async def bench(ctx):
        state = GoldenState.zeros(net, 1)
        await issue_rows(ctx, dut, [(RowOp.CLEAR, r, {}) for r in range(max(rows, out_rows))], [])
        for t in range(steps):
            schedule = []
            for i in np.flatnonzero(x[t]):
                schedule += [(RowOp.ACC_IN, r, {"w_in": w_in[i * rows + r]}) for r in range(rows)]
            for j in np.flatnonzero(state.z[0]):
                schedule += [
                    (RowOp.ACC_REC, r, {"w_rec": w_rec[j * rows + r]}) for r in range(rows)
                ]
            schedule += [(RowOp.UPDATE, r, {}) for r in range(rows)]
            updates = []
            await issue_rows(ctx, dut, schedule, updates)
            state = golden_step(net, state, x[t][None])
            v = np.concatenate([[int(v) for v in u.v] for u in updates])[: cfg.n_rec]
            z = np.array([(int(u.z) >> ln) & 1 for u in updates for ln in range(lanes)])
            states.append((v, z[: cfg.n_rec], state.v[0], state.z[0]))
            spikes = np.flatnonzero(z[: cfg.n_rec])
            schedule = [(RowOp.ACC_OUT, s, {"w_out": w_out[j * out_rows + s]})
                        for j in spikes for s in range(out_rows)]  # fmt: skip
            await issue_rows(ctx, dut, schedule, [])
            ctx.set(dut.readout.control.start, 1)
            await ctx.tick()
            ctx.set(dut.readout.control.start, 0)
            ctx.set(dut.readout.control.run, 1)
            values = []
            while True:
                ctx.set(dut.readout.o_readout.ready, pace.random() < 0.6)
                out, tap = dut.readout.o_readout, dut.readout.sent
                _, _, done, valid, ready, value, sent_valid, sent_at = await ctx.tick().sample(
                    dut.readout.control.done, out.valid, out.ready, out.p, tap.valid, tap.p
                )
                if valid and ready:
                    k = len(values)
                    assert value.index == k and value.last == (k == cfg.n_out - 1)
                    values.append(value.value)
                    assert sent_valid and sent_at.value == value.value
                    sent.append(
                        (sent_at.index, sent_at.row, sent_at.lane) == (k, k // lanes, k % lanes)
                    )
                else:
                    assert not sent_valid
                if done:
                    break
            ctx.set(dut.readout.control.run, 0)
            readouts.append((values, state.o[0]))

    run(dut, bench)
    for v, z, golden_v, golden_z in states:
        np.testing.assert_array_equal(v, golden_v)
        np.testing.assert_array_equal(z, golden_z)
    for values, golden in readouts:
        np.testing.assert_array_equal(values, golden)
    assert all(sent) and len(sent) == steps * cfg.n_out


# -- the spike list, its cursor and the emitter --------------------------------------------------


class SpikeHarness(wiring.Component):
    """A spike list read by a cursor and by an emitter, as in the core."""

    def __init__(self, cfg: HardwareConfig) -> None:
        self.spikes = SpikeList(cfg)
        self.cursor = SpikeCursor(cfg)
        self.emitter = SpikeEmitter(cfg)
        super().__init__({})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.spikes, m.submodules.cursor = self.spikes, self.cursor
        m.submodules.emitter = self.emitter
        wiring.connect(m, self.spikes.run, self.cursor.list)
        wiring.connect(m, self.spikes.emit, self.emitter.list)
        return m


async def append_rows(ctx, dut: SpikeHarness, z: np.ndarray, lanes: int, *, start_emitter: bool):
    """Append the rows of ``z`` (n_rec,) as UPDATE does; with ``start_emitter`` start the
    emitter in the cycle of the last row, as the core does."""
    spikes = dut.spikes
    ctx.set(spikes.restart, 1)
    await ctx.tick()
    ctx.set(spikes.restart, 0)
    masks = rows_of(z.astype(np.int64), lanes)
    for r, mask in enumerate(masks):
        ctx.set(spikes.append.valid, 1)
        ctx.set(spikes.append.p.row, r)
        ctx.set(spikes.append.p.z, sum(int(b) << ln for ln, b in enumerate(mask)))
        if start_emitter and r == len(masks) - 1:
            ctx.set(dut.emitter.control.start, 1)
            ctx.set(dut.emitter.control.count, ctx.get(spikes.count))
        await ctx.tick()
    ctx.set(spikes.append.valid, 0)
    ctx.set(dut.emitter.control.start, 0)
    return ctx.get(spikes.count)


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
def test_cursor_walks_the_spike_list_in_order(lanes: int) -> None:
    """The cursor gives the spiking neurons in ascending order, ``more`` until the last,
    ``last`` with the last; its first spike is ``valid`` on the second cycle after a restart,
    each next one on the cycle after a take; a restart walks the list again."""
    cfg = CONFIGS[1].replace(n_rec=11, lanes=lanes)
    rng = np.random.default_rng(lanes)
    dut = SpikeHarness(cfg)
    lists = [rng.random(cfg.n_rec) < p for p in (0.3, 0.8, 0.0, 1.0)]
    walked = []
    pace = random.Random(lanes)

    async def bench(ctx):
        walk = dut.cursor.walk
        for z in lists:
            count = await append_rows(ctx, dut, z, lanes, start_emitter=False)
            assert count == int(rows_of(z, lanes).any(axis=1).sum())
            for _ in range(2):
                ctx.set(walk.count, count)
                ctx.set(walk.restart, 1)
                await ctx.tick()
                ctx.set(walk.restart, 0)
                assert not ctx.get(walk.valid)
                await ctx.tick()
                seen = []
                while ctx.get(walk.more):
                    assert ctx.get(walk.valid)
                    seen.append((ctx.get(walk.index), ctx.get(walk.last)))
                    ctx.set(walk.take, 1)
                    await ctx.tick()
                    ctx.set(walk.take, 0)
                    if pace.random() < 0.3:  # the cursor holds its place between takes
                        await ctx.tick()
                assert not ctx.get(walk.valid)
                walked.append((z, seen))

    run(dut, bench)
    for z, seen in walked:
        assert [index for index, _ in seen] == list(np.flatnonzero(z))
        assert [last for _, last in seen] == [False] * (len(seen) - 1) + [True] * bool(seen)


@pytest.mark.parametrize("lanes", [1, 3])
def test_emitter_sends_the_list_then_a_step(lanes: int) -> None:
    """Started in the cycle the last row is appended, the emitter sends every spike in
    ascending order, then one STEP, holding each event until ready; busy until the STEP."""
    cfg = CONFIGS[1].replace(n_rec=10, lanes=lanes)
    rng = np.random.default_rng(lanes)
    dut = SpikeHarness(cfg)
    lists = [rng.random(cfg.n_rec) < p for p in (0.5, 0.0, 1.0)]
    results = []
    pace = random.Random(lanes)

    async def bench(ctx):
        out = dut.emitter.o_spike
        for z in lists:
            await append_rows(ctx, dut, z, lanes, start_emitter=True)
            events, held = [], True
            offered = None
            while ctx.get(dut.emitter.control.busy):
                ctx.set(out.ready, pace.random() < 0.5)
                _, _, valid, ready, payload = await ctx.tick().sample(out.valid, out.ready, out.p)
                if offered is not None and valid:
                    held = held and payload == offered
                offered = payload if valid and not ready else None
                if valid and ready:
                    events.append((EventKind(payload.kind), int(payload.index)))
            results.append((z, events, held))

    run(dut, bench)
    for z, events, held in results:
        assert held, "an event must be held until ready"
        spikes = [(EventKind.SPIKE, int(j)) for j in np.flatnonzero(z)]
        assert events == [*spikes, (EventKind.STEP, 0)]


# -- the sequencer --------------------------------------------------------------------------------


class SequencerHarness(wiring.Component):
    """The sequencer with the spike list and the run cursor; the testbench plays the rows
    (it appends UPDATE's rows two cycles after they are issued), the emitter and the readouts."""

    def __init__(self, cfg: HardwareConfig) -> None:
        self.seq = Sequencer(cfg)
        self.spikes = SpikeList(cfg)
        self.cursor = SpikeCursor(cfg)
        super().__init__({})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.seq, m.submodules.spikes = self.seq, self.spikes
        m.submodules.cursor = self.cursor
        wiring.connect(m, self.seq.run, self.cursor.walk)
        wiring.connect(m, self.spikes.run, self.cursor.list)
        m.d.comb += [
            self.spikes.restart.eq(self.seq.spikes_restart),
            self.seq.spike_count.eq(self.spikes.count),
        ]
        return m


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_sequencer_issues_the_rows_of_a_step(lanes: int) -> None:
    """Per input spike R ACC_IN rows at ``w_in`` words ``i * R + r``; per previous spike R
    ACC_REC rows at ``w_rec`` words ``j * R + r``; R UPDATE rows; per new spike Ro ACC_OUT rows
    at ``w_out`` words ``j * Ro + s``: one row per cycle, in this order, and CLEAR's
    ``max(R, Ro)`` rows, first after the reset.  A repeated SPIKE of an input in its step, a
    SPIKE of an index ``>= n_in`` and an event of kind 3 issue nothing (the repeat's first row
    is issued and dropped on the next cycle) and take one cycle, a repeat two (R > 1 here: the
    cycle that drops its row issues nothing); a repeat in the next step counts again."""
    cfg = CONFIGS[1].replace(n_in=5, n_rec=7, n_out=4, lanes=lanes)
    rows, out_rows = lane_rows(cfg.n_rec, lanes), lane_rows(cfg.n_out, lanes)
    rng = np.random.default_rng(lanes)
    steps = 4
    x = rng.random((steps, cfg.n_in)) < 0.5
    z = rng.random((steps, cfg.n_rec)) < 0.4
    z[2] = False  # a step without spikes: no OUT, and no REC in the next
    dut = SequencerHarness(cfg)
    issued = []  # (cycle, op, row, weight address or -1)

    async def datapath(ctx):
        """Append UPDATE's rows with the step's spikes in stage 2, as NeuronRows does; play
        the emitter (never busy) and the readouts (done at once)."""
        pipe = [None]  # a row issued at one edge is set to append for the edge after next
        step, cycle = 0, 0
        ctx.set(dut.seq.readout.done, 1)
        issue, seq = dut.seq.issue, dut.seq
        addresses = [seq.w_in_addr, seq.w_rec_addr, seq.w_out_addr]
        async for _, _, drop, valid, payload, *addrs in ctx.tick().sample(
            seq.drop, issue.valid, issue.payload, *addresses
        ):
            cycle += 1
            if drop:  # the row issued on the last cycle was a repeated input's: dropped
                assert issued[-1][:3] == (cycle - 1, RowOp.ACC_IN, 0)
                issued.pop()
            appended = pipe.pop(0)
            ctx.set(dut.spikes.append.valid, appended is not None)
            if appended is not None:
                mask = rows_of(z[step].astype(np.int64), lanes)[appended]
                ctx.set(dut.spikes.append.p.row, appended)
                ctx.set(dut.spikes.append.p.z, sum(int(b) << ln for ln, b in enumerate(mask)))
                step += appended == rows - 1
            op = RowOp(payload.op) if valid else RowOp.NONE
            pipe.append(int(payload.row) if op == RowOp.UPDATE else None)
            if valid:
                addr = {RowOp.ACC_IN: addrs[0], RowOp.ACC_REC: addrs[1], RowOp.ACC_OUT: addrs[2]}
                issued.append((cycle, op, int(payload.row), int(addr.get(op, -1))))

    dropped = []  # (cycle the dropped event was taken, its cycles, cycle the next one was)
    pace = random.Random(lanes)

    async def events(ctx):
        event = dut.seq.i_event
        sends = [(EventKind.CLEAR, 0, 0)]  # (kind, index, cycles if dropped, else 0)
        for t in range(steps):
            spikes = [(EventKind.SPIKE, int(i), 0) for i in np.flatnonzero(x[t])]
            ignored = [(kind, i, 2) for kind, i, _ in pace.choices(spikes, k=3) if spikes]
            ignored += [(3, pace.randrange(8), 1), (EventKind.SPIKE, cfg.n_in + 1, 1)]
            pace.shuffle(ignored)
            sends += spikes + ignored + [(EventKind.STEP, 0, 0)]
        cycle, taken_dropped = 0, None
        for kind, index, drop in sends:
            ctx.set(event.valid, 1)
            ctx.set(event.p.as_value(), pack(event_layout(cfg.n_in), kind=kind, index=index))
            while True:
                cycle += 1
                _, _, ready = await ctx.tick().sample(event.ready)
                if ready:
                    break
            if taken_dropped is not None:
                dropped.append((*taken_dropped, cycle))
            taken_dropped = (cycle, drop) if drop else None
            ctx.set(event.valid, 0)
        await ctx.tick().repeat(3)
        await ctx.tick().until(dut.seq.idle)

    run(dut, events, background=[datapath])
    assert dropped and all(after == taken + cost for taken, cost, after in dropped)
    assert {cost for _, cost, _ in dropped} == {1, 2}
    clear = [(RowOp.CLEAR, r, -1) for r in range(max(rows, out_rows))]
    expected = clear + clear  # the reset's, then the CLEAR event's
    for t in range(steps):
        for i in np.flatnonzero(x[t]):
            expected += [(RowOp.ACC_IN, r, i * rows + r) for r in range(rows)]
        if t > 0:
            for j in np.flatnonzero(z[t - 1]):
                expected += [(RowOp.ACC_REC, r, j * rows + r) for r in range(rows)]
        expected += [(RowOp.UPDATE, r, -1) for r in range(rows)]
        for j in np.flatnonzero(z[t]):
            expected += [(RowOp.ACC_OUT, s, j * out_rows + s) for s in range(out_rows)]
    assert [row[1:] for row in issued] == expected
    # one row per cycle within a phase: a run of the same operation has no gaps (the reset's
    # CLEAR and the CLEAR event's are two runs)
    for (c0, op0, *_), (c1, op1, r1, _) in zip(issued, issued[1:], strict=False):
        if op0 == op1 and op0 in (RowOp.ACC_REC, RowOp.UPDATE, RowOp.ACC_OUT, RowOp.CLEAR):
            assert c1 == c0 + 1 or (op1 == RowOp.CLEAR and r1 == 0)


# -- the synapse memories in block-RAM slices -----------------------------------------------------


def test_slice_width_fits_the_depth_in_one_block_ram() -> None:
    """The widest ECP5 block RAM port at which the whole depth fits one 16-Kbit block RAM."""
    assert [slice_width(d) for d in (384, 512, 1024, 2048, 4096, 16384, 20000)] == [
        36, 36, 18, 9, 4, 1, 1,
    ]  # fmt: skip
    assert [slice_width(d) for d in (513, 1025, 2049, 4097)] == [18, 9, 4, 2]


@pytest.mark.parametrize(("width", "depth"), [(13, 100), (13, 4096)])
def test_sliced_memory_reads_its_init_and_what_is_written(width: int, depth: int) -> None:
    """A memory cut into slices (one for 100 words, four for 4,096 words of 13 bits) reads its
    initial words, and a word shown on the write port is written on the next cycle
    (``WRITE_LATENCY``) and read back whole by a read issued after that."""
    rng = random.Random(width + depth)
    init = [rng.randrange(1 << width) for _ in range(depth)]
    dut = SlicedMemory(width, depth, init, writable=True)
    got = []

    async def bench(ctx):
        for addr in (0, depth - 1, depth // 2):
            ctx.set(dut.read.addr, addr)
            await ctx.tick()
            got.append((init[addr], ctx.get(dut.read.data)))
        for _ in range(20):
            addr, word = rng.randrange(depth), rng.randrange(1 << width)
            ctx.set(dut.write.addr, addr)
            ctx.set(dut.write.data, word)
            ctx.set(dut.write.en, 1)
            await ctx.tick()
            ctx.set(dut.write.en, 0)
            await ctx.tick().repeat(WRITE_LATENCY)
            ctx.set(dut.read.addr, addr)
            await ctx.tick()
            got.append((word, ctx.get(dut.read.data)))

    run(dut, bench)
    assert all(want == have for want, have in got)


@pytest.mark.parametrize("collisions", ["undefined", "scrambled"])
def test_sliced_memory_collisions(collisions: str, monkeypatch) -> None:
    """A read in the cycle its word is written (the one after the word is shown): the old
    word in simulation by default (Amaranth's rule; synthesis is told it is undefined,
    ``no_rw_check``), the old word inverted with ``collisions = "scrambled"``; a read in the
    cycle the word is shown, of another word, or a cycle later is unaffected."""
    monkeypatch.setattr(SlicedMemory, "collisions", collisions)
    width, depth = 13, 100
    init = [(7 * i) % (1 << width) for i in range(depth)]
    dut = SlicedMemory(width, depth, init, writable=True)
    mask = (1 << width) - 1
    got = {}

    async def bench(ctx):
        ctx.set(dut.read.en, 1)
        ctx.set(dut.write.en, 1)
        ctx.set(dut.write.addr, 5)
        ctx.set(dut.write.data, 1234)
        ctx.set(dut.read.addr, 5)  # shown now, written on the next cycle
        await ctx.tick()
        got["shown"] = ctx.get(dut.read.data)
        ctx.set(dut.write.addr, 6)
        await ctx.tick()  # the cycle word 5 is written, and read
        got["same"] = ctx.get(dut.read.data)
        ctx.set(dut.write.en, 0)
        await ctx.tick()  # written last cycle, read now
        got["after"] = ctx.get(dut.read.data)
        ctx.set(dut.read.addr, 7)
        await ctx.tick()
        got["other"] = ctx.get(dut.read.data)

    run(dut, bench)
    old = init[5] ^ mask if collisions == "scrambled" else init[5]
    assert got == {"shown": init[5], "same": old, "after": 1234, "other": init[7]}


def test_sliced_memory_keeps_a_write_register_per_slice() -> None:
    """Each slice of a writable memory registers its own write address and enable, marked
    ``keep`` so that synthesis does not merge the copies into one flip-flop."""
    dut = SlicedMemory(13, 4096, [0] * 4096, writable=True)
    text = verilog.convert(dut, name="sliced")
    for k in range(4):
        for name in (f"write_addr_{k}", f"write_en_{k}"):
            assert is_kept(text, name), name


def test_writable_weight_memories_leave_collisions_undefined_to_synthesis() -> None:
    """The Verilog marks the slices of a writable memory ``no_rw_check`` and no others."""
    for writable in (True, False):
        dut = SlicedMemory(13, 4096, [0] * 4096, writable=writable)
        text = verilog.convert(dut, name="sliced")
        assert text.count("no_rw_check") == (4 if writable else 0)


@pytest.mark.parametrize("seed", range(4))
def test_input_set_matches_a_plain_set(seed: int) -> None:
    """Random adds, looks, clears and idle cycles back to back, an input often added or looked
    at on the cycle after its add: ``seen`` answers from every add before it, as a set of
    Python ints does, although an add lands in ``bits`` one cycle later; after an idle cycle
    ``bits`` is the set."""
    n_in = 5
    rng = random.Random(seed)
    dut = InputSet(n_in)
    wrong, looks = [], 0

    async def bench(ctx):
        nonlocal looks
        want: set[int] = set()
        for cycle in range(600):
            op = rng.choice(["add"] * 5 + ["look"] * 3 + ["clear", "idle", "idle"])
            index = rng.randrange(n_in)
            ctx.set(dut.index, index)
            ctx.set(dut.add, op == "add")
            ctx.set(dut.clear, op == "clear")
            if op in ("add", "look"):
                looks += 1
                if ctx.get(dut.seen) != (index in want):
                    wrong.append((cycle, op, index))
            await ctx.tick()
            if op == "clear":
                want = set()
            elif op == "add":
                want = want | {index}
            elif op == "idle" and ctx.get(dut.bits) != sum(1 << i for i in want):
                wrong.append((cycle, "bits"))

    run(dut, bench)
    assert not wrong and looks > 400
