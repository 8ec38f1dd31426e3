"""The learning core against the golden model of on-chip learning, bit for bit.

Every case draws a small random configuration (both modes, both feedbacks, both readout errors,
``W_bar`` absolute and as a narrow difference, 1-3 lanes, learning rates fast enough that weights
saturate), random weights, inputs and labels, runs several samples with learning, and after every
update reads back every weight and every ``W_bar`` through the ``o_weights`` port.  Spikes and
readouts of every step and the learned state after every update must equal
:mod:`neurofptt.quant.onchip`.

The Amaranth-simulator check is fast and covers the cases quickly; the cocotb check runs the
generated Verilog under Icarus through the real ports.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.sim import Simulator

from neurofptt.errors import ConfigError
from neurofptt.hdl import (
    READ_WEIGHTS,
    EventKind,
    LifCore,
    cycles_per_step,
    cycles_per_update,
    learn_event_layout,
)
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import LearningConfig
from neurofptt.quant.onchip import learning_cycles_per_update
from neurofptt.verify import run_rtl_learning
from neurofptt.verify.learning import (
    compare_snapshot,
    decode_dump,
    golden_learning_run,
)

needs_icarus = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog is not installed (apt-get install iverilog)",
)


@dataclass(frozen=True)
class Case:
    name: str
    net: QuantizedNetwork
    spikes: np.ndarray  # (B, T, n_in)
    labels: np.ndarray  # (B,)


def random_case(seed: int, batch: int = 3) -> Case:
    """A small random learning configuration with fast learning rates (weights saturate)."""
    rng = np.random.default_rng(seed)
    while True:
        mode = ["eprop", "fptt"][seed % 2]
        error = ["target", "hinge"][(seed // 4) % 2]  # not drawn: the other draws stay the same
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
    name = f"{mode}-{lc.feedback}-{store}-{error}-{cfg.lanes}lanes-{seed}"
    return Case(name, net, spikes, labels)


def _payload(cfg: HardwareConfig, **fields: int) -> int:
    layout = learn_event_layout(cfg)
    return sum(int(value) << layout[name].offset for name, value in fields.items())


def simulate(case: Case):
    """Drive the case through LifCore in the Amaranth simulator; return spikes, readout, the
    decoded dumps (one per update) and the cycles from each update step's first event to the
    cycle its READ is accepted."""
    net, x, labels = case.net, case.spikes, case.labels
    cfg = net.config
    trace = golden_learning_run(net, x, labels)
    dut = LifCore(net)
    batch, steps, _ = x.shape
    out_spikes = np.zeros((batch, steps, cfg.n_rec), bool)
    out_readout = np.zeros((batch, steps, cfg.n_out), np.int64)
    dumps: list[list] = []
    cycle = [0]
    first, read_at = {}, {}

    async def clock_counter(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def send(ctx, raw: int) -> None:
        ctx.set(dut.i_event.valid, 1)
        ctx.set(dut.i_event.payload.as_value(), raw)
        await ctx.tick().until(dut.i_event.ready)
        ctx.set(dut.i_event.valid, 0)

    async def driver(ctx):
        for b in range(batch):
            await send(ctx, _payload(cfg, kind=EventKind.CLEAR.value))
            for t in range(steps):
                for i in np.flatnonzero(x[b, t]):
                    await send(ctx, _payload(cfg, kind=EventKind.SPIKE.value, index=i))
                    first.setdefault((b, t), cycle[0])
                await send(
                    ctx,
                    _payload(
                        cfg,
                        kind=EventKind.STEP.value,
                        learn=trace.learn[b, t],
                        label=labels[b],
                        shift=trace.shift[b, t],
                    ),
                )
                first.setdefault((b, t), cycle[0])
                if trace.learn[b, t]:
                    await send(ctx, _payload(cfg, kind=READ_WEIGHTS))
                    read_at[(b, t)] = cycle[0]

    async def spike_monitor(ctx):
        ctx.set(dut.o_spike.ready, 1)
        for b in range(batch):
            for t in range(steps):
                while True:
                    _, _, payload, valid = await ctx.tick().sample(dut.o_spike.p, dut.o_spike.valid)
                    if not valid:
                        continue
                    if payload.kind == EventKind.STEP:
                        break
                    out_spikes[b, t, int(payload.index)] = True

    async def readout_monitor(ctx):
        ctx.set(dut.o_readout.ready, 1)
        for b in range(batch):
            for t in range(steps):
                k = 0
                while k < cfg.n_out:
                    _, _, payload, valid = await ctx.tick().sample(
                        dut.o_readout.p, dut.o_readout.valid
                    )
                    if valid:
                        out_readout[b, t, int(payload.index)] = int(payload.value)
                        k += 1

    async def dump_monitor(ctx):
        ctx.set(dut.o_weights.ready, 1)
        fptt = cfg.learning.mode == "fptt"
        for _ in range(int(trace.learn.sum())):
            words = []
            while True:
                _, _, payload, valid = await ctx.tick().sample(dut.o_weights.p, dut.o_weights.valid)
                if not valid:
                    continue
                w = [int(v) for v in payload.w]
                wbar = [int(v) for v in payload.wbar] if fptt else []
                words.append((int(payload.matrix), w, wbar))
                if payload.last:
                    break
            dumps.append(decode_dump(net, words))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(clock_counter, background=True)
    for bench in (driver, spike_monitor, readout_monitor, dump_monitor):
        sim.add_testbench(bench)
    sim.run()
    cycles = {key: read_at[key] - first[key] for key in read_at}
    return trace, out_spikes, out_readout, dumps, cycles


def _expected_update_cycles(case: Case, spikes: np.ndarray, b: int, t: int) -> int:
    """Cycles of the inference step (its closed form) plus those of the update."""
    cfg = case.net.config
    new = spikes[b].sum(axis=1)
    prev = int(new[t - 1]) if t > 0 else 0
    step = cycles_per_step(cfg, int(case.spikes[b, t].sum()), prev, int(new[t]))
    return step + cycles_per_update(cfg)


#: seeds cycle through (eprop, fptt) x (symmetric, random), and in blocks of four through the
#: (target, hinge) errors; lanes, W_bar storage and the learning constants are drawn
SIM_SEEDS = list(range(12))
COCOTB_SEEDS = [20, 21, 22, 23, 24, 25, 26, 27]
COCOTB_BATCH = 6


def test_cases_cover_the_modes() -> None:
    """Both modes, both feedbacks, both W_bar stores and 1-3 lanes, and saturating weights."""
    cases = [random_case(seed) for seed in SIM_SEEDS + COCOTB_SEEDS]
    kinds = {(c.net.config.learning.mode, c.net.config.learning.feedback) for c in cases}
    assert kinds == {(m, f) for m in ("eprop", "fptt") for f in ("symmetric", "random")}
    for seeds in (SIM_SEEDS, COCOTB_SEEDS):
        hinge = {
            (lc.mode, lc.feedback)
            for lc in (random_case(seed).net.config.learning for seed in seeds)
            if lc.error == "hinge"
        }
        assert hinge == {(m, f) for m in ("eprop", "fptt") for f in ("symmetric", "random")}
    fptt = [c.net.config.learning for c in cases if c.net.config.learning.mode == "fptt"]
    assert {lc.wbar_store for lc in fptt} == {"absolute", "difference"}
    assert {c.net.config.lanes for c in cases} == {1, 2, 3}
    saturated = 0
    for case in cases[:6]:
        cfg = case.net.config
        for snap in golden_learning_run(case.net, case.spikes, case.labels).snapshots:
            for w in snap.weights.values():
                saturated += int(((w == cfg.w_min) | (w == cfg.w_max)).sum())
    assert saturated > 100


def test_cocotb_campaign_size() -> None:
    """The cocotb run alone compares at least 10,000 synaptic updates."""
    total = 0
    for seed in COCOTB_SEEDS:
        case = random_case(seed, COCOTB_BATCH)
        total += golden_learning_run(case.net, case.spikes, case.labels).synaptic_updates
    assert total >= 10_000


@pytest.mark.parametrize("seed", SIM_SEEDS)
def test_learning_core_matches_golden(seed: int) -> None:
    """Amaranth simulator: spikes, readouts, every weight and W_bar after every update, and
    the cycles of every update step (closed form of the step plus ``cycles_per_update``)."""
    case = random_case(seed)
    trace, spikes, readout, dumps, cycles = simulate(case)
    np.testing.assert_array_equal(spikes, trace.spikes)
    np.testing.assert_array_equal(readout, trace.readout)
    assert len(dumps) == len(trace.snapshots) > 0
    for snapshot, dump in zip(trace.snapshots, dumps, strict=True):
        records, total = compare_snapshot(snapshot, dump)
        assert total == 0, f"{case.name}: " + "; ".join(str(r) for r in records)
    cfg = case.net.config
    assert cycles_per_update(cfg) == learning_cycles_per_update(cfg) + 1
    for (b, t), measured in cycles.items():
        assert measured == _expected_update_cycles(case, trace.spikes, b, t)


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("seed", COCOTB_SEEDS)
def test_rtl_learning_matches_golden(seed: int, tmp_path) -> None:
    """Generated Verilog under Icarus + cocotb, through the real ports (one case with random
    backpressure on every output stream, which also stalls the weight dump)."""
    case = random_case(seed, COCOTB_BATCH)
    backpressure = seed == COCOTB_SEEDS[-1]
    result = run_rtl_learning(
        case.net, case.spikes, case.labels, tmp_path, backpressure=backpressure, seed=seed
    )
    assert result.complete
    assert result.n_mismatches == 0, f"{case.name}:\n{result.report()}"
    assert result.updates == len(result.golden.snapshots) > 0
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


def test_learning_needs_the_config_lanes() -> None:
    case = random_case(0)
    with pytest.raises(ConfigError, match="lanes"):
        LifCore(case.net, lanes=case.net.config.lanes + 1)
