"""Fast Amaranth-simulator check of LifCore against the golden model on tiny configurations."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from neurofptt.hdl import EventKind, LifCore, cycles_per_step
from neurofptt.quant import HardwareConfig, QuantizedNetwork, golden_run


def _random_net(cfg: HardwareConfig, rng: np.random.Generator) -> QuantizedNetwork:
    def w(shape):
        return rng.integers(cfg.w_min, cfg.w_max + 1, size=shape)

    return QuantizedNetwork(
        cfg, w((cfg.n_rec, cfg.n_in)), w((cfg.n_rec, cfg.n_rec)), w((cfg.n_out, cfg.n_rec))
    )


def simulate(
    net: QuantizedNetwork,
    spikes: np.ndarray,
    backpressure: bool = False,
    seed: int = 0,
    lanes: int = 1,
):
    """Drive ``spikes`` (B, T, n_in) through LifCore; return spikes, readout, per-step cycles."""
    cfg = net.config
    dut = LifCore(net, lanes)
    batch, steps, _ = spikes.shape
    rng = random.Random(seed)
    out_spikes = np.zeros((batch, steps, cfg.n_rec), bool)
    out_readout = np.zeros((batch, steps, cfg.n_out), np.int64)
    order_ok = []
    cycle = [0]
    first_accept = {}
    last_readout = {}

    async def clock_counter(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def driver(ctx):
        for b in range(batch):
            events = [(EventKind.CLEAR, 0)]
            for t in range(steps):
                events += [(EventKind.SPIKE, int(i)) for i in np.flatnonzero(spikes[b, t])]
                events.append((EventKind.STEP, 0))
            step = -1
            for kind, index in events:
                if backpressure and rng.random() < 0.2:
                    await ctx.tick().repeat(rng.randint(1, 3))
                ctx.set(dut.i_event.valid, 1)
                ctx.set(dut.i_event.p, {"kind": kind, "index": index})
                await ctx.tick().until(dut.i_event.ready)
                ctx.set(dut.i_event.valid, 0)
                if kind != EventKind.CLEAR and (b, step + 1) not in first_accept:
                    first_accept[(b, step + 1)] = cycle[0]
                if kind == EventKind.STEP:
                    step += 1

    async def spike_monitor(ctx):
        for b in range(batch):
            for t in range(steps):
                seen = []
                while True:
                    if backpressure:
                        ctx.set(dut.o_spike.ready, rng.random() < 0.5)
                    else:
                        ctx.set(dut.o_spike.ready, 1)
                    _, _, payload, valid, ready = await ctx.tick().sample(
                        dut.o_spike.p, dut.o_spike.valid, dut.o_spike.ready
                    )
                    if not (valid and ready):
                        continue
                    if payload.kind == EventKind.STEP:
                        break
                    seen.append(int(payload.index))
                order_ok.append(seen == sorted(set(seen)))
                out_spikes[b, t, seen] = True
        ctx.set(dut.o_spike.ready, 0)

    async def readout_monitor(ctx):
        for b in range(batch):
            for t in range(steps):
                k = 0
                while k < cfg.n_out:
                    if backpressure:
                        ctx.set(dut.o_readout.ready, rng.random() < 0.5)
                    else:
                        ctx.set(dut.o_readout.ready, 1)
                    _, _, payload, valid, ready = await ctx.tick().sample(
                        dut.o_readout.p, dut.o_readout.valid, dut.o_readout.ready
                    )
                    if not (valid and ready):
                        continue
                    assert int(payload.index) == k
                    assert bool(payload.last) == (k == cfg.n_out - 1)
                    out_readout[b, t, k] = int(payload.value)
                    k += 1
                last_readout[(b, t)] = cycle[0]
        ctx.set(dut.o_readout.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(clock_counter, background=True)
    sim.add_testbench(driver)
    sim.add_testbench(spike_monitor)
    sim.add_testbench(readout_monitor)
    sim.run()
    assert all(order_ok), "spikes must come in ascending neuron order"
    step_cycles = np.zeros((batch, steps), np.int64)
    for (b, t), end in last_readout.items():
        step_cycles[b, t] = end - first_accept[(b, t)] + 1
    return out_spikes, out_readout, step_cycles


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
        leak_shift=1, out_leak_shift=2, threshold=10, reset="zero", w_out_shift=1,
    ),
]  # fmt: skip


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.n_in}-{c.n_rec}-{c.n_out}-{c.reset}")
@pytest.mark.parametrize(
    ("lanes", "backpressure"), [(1, False), (1, True), (2, False), (3, True), (4, False)]
)
def test_core_matches_golden(cfg: HardwareConfig, lanes: int, backpressure: bool) -> None:
    rng = np.random.default_rng(1234)
    net = _random_net(cfg, rng)
    spikes = (rng.random((2, 6, cfg.n_in)) < 0.6).astype(np.uint8)
    spikes[0, 2] = 1  # an all-spike step
    spikes[1, 1] = 0  # a silent step
    golden = golden_run(net, spikes)
    got_spikes, got_readout, step_cycles = simulate(net, spikes, backpressure, seed=7, lanes=lanes)
    np.testing.assert_array_equal(got_spikes, golden.spikes)
    np.testing.assert_array_equal(got_readout, golden.readout)
    if not backpressure:
        n_events = spikes.sum(axis=2)
        prev = np.concatenate(
            [np.zeros((2, 1), np.int64), golden.spikes.sum(axis=2)[:, :-1]], axis=1
        )
        new = golden.spikes.sum(axis=2)
        expected = np.vectorize(lambda e, p, s: cycles_per_step(cfg, e, p, s, lanes))(
            n_events, prev, new
        )
        np.testing.assert_array_equal(step_cycles, expected)
