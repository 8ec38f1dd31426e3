"""Fast Amaranth-simulator check of LifCore against the golden model on tiny configurations."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from neurofptt.errors import ConfigError
from neurofptt.hdl import (
    LifCore,
    cycles_per_step,
    event_layout,
    generate_verilog,
    render_verilog,
)
from neurofptt.quant import HardwareConfig, QuantizedNetwork, golden_run
from neurofptt.verify.streams import (
    StreamBench,
    cycle_budget,
    frame_run,
    random_stalls,
    run_amaranth,
)


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drive ``spikes`` (B, T, n_in) through LifCore; return spikes, readout, per-step cycles.

    Every stream rule must hold (ascending spikes, readout indices and ``last``, ``valid`` and
    payload held until ``ready``).  Before each ``CLEAR`` two ``SPIKE`` events start a step
    that is never ended: the partial sums it leaves behind, ``CLEAR`` must wipe."""
    cfg = net.config
    batch, steps, _ = spikes.shape
    rng = random.Random(seed)
    abandoned = [[rng.randrange(cfg.n_in) for _ in range(2)] for _ in range(batch)]
    items = frame_run(event_layout(cfg.n_in), spikes, abandoned=abandoned)
    bench = StreamBench(cfg, batch, steps, random_stalls(seed) if backpressure else None)
    complete, _ = run_amaranth(
        LifCore(net), bench.benches(items), cycle_budget(cfg, batch, steps, stalled=backpressure)
    )
    assert complete, "the core hung"
    assert bench.errors == [], "\n".join(str(e) for e in bench.errors)
    return bench.spikes, bench.readout, bench.step_cycles


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
    cfg = cfg.replace(lanes=lanes)
    net = _random_net(cfg, rng)
    spikes = (rng.random((2, 6, cfg.n_in)) < 0.6).astype(np.uint8)
    spikes[0, 2] = 1  # an all-spike step
    spikes[1, 1] = 0  # a silent step
    golden = golden_run(net, spikes)
    got_spikes, got_readout, step_cycles = simulate(net, spikes, backpressure, seed=7)
    np.testing.assert_array_equal(got_spikes, golden.spikes)
    np.testing.assert_array_equal(got_readout, golden.readout)
    if not backpressure:
        n_events = spikes.sum(axis=2)
        prev = np.concatenate(
            [np.zeros((2, 1), np.int64), golden.spikes.sum(axis=2)[:, :-1]], axis=1
        )
        new = golden.spikes.sum(axis=2)
        expected = np.vectorize(lambda e, p, s: cycles_per_step(cfg, e, p, s))(n_events, prev, new)
        np.testing.assert_array_equal(step_cycles, expected)


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
    assert cycles_per_step(CONFIGS[0].replace(lanes=2), 2, 1, 3) == 3 * (2 + 1 + 1) + 1 * 3 + 2 + 4
