"""Differential tests: the generated Verilog under Icarus + cocotb against the golden model.

Every case draws a random valid configuration, random weights (a share of them at the extremes
w_min / w_max) and random input spikes with fixed seeds, and checks every recurrent spike and every
readout value of every step: zero mismatches.  The stimuli include all-spike and silent steps and
formats small enough to saturate.  One case is run with random backpressure on every stream.

Every case runs under Icarus; the cases of ``VERILATOR_CASES`` run under Verilator too (each
Verilator case compiles its design and Verilator's runtime to C++, about 20 CPU-seconds, so a
subset: the default sizes on 4 lanes, the widest formats, backpressure with more lanes than
readouts, and a random draw on 8 lanes under backpressure), skipped with the reason when
Verilator is missing.  Under Verilator the cases without backpressure run in the Verilog harness
of :mod:`neurofptt.verify.harness` (``run_rtl``'s default there); the cases of
``HARNESS_CASES`` and a learning core run both ways under Icarus, and the two benches must
collect the same values and count the same cycles.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
from simulators import needs_icarus, needs_verilator

from neurofptt.errors import ConfigError, ToolMissingError
from neurofptt.hdl import cycles_per_step, generate_verilog
from neurofptt.quant import HardwareConfig, QuantizedNetwork, golden_run
from neurofptt.quant.config import LearningConfig
from neurofptt.verify import run_rtl


@dataclass(frozen=True)
class Case:
    name: str
    config: HardwareConfig
    batch: int
    steps: int
    seed: int
    lanes: int = 1
    backpressure: bool = False
    rate: float = 0.4  # input spike probability
    weight_scale: float = 1.0  # fraction of the weight range used by the uniform draws

    @property
    def neuron_steps(self) -> int:
        cfg = self.config
        return self.batch * self.steps * (cfg.n_rec + cfg.n_out)


CASES = [
    Case(
        "default-sizes",
        HardwareConfig(n_in=32, n_rec=64, n_out=10, threshold=64),
        batch=12, steps=8, seed=10, rate=0.3, weight_scale=0.35,
    ),
    Case(
        "default-sizes-4-lanes",
        HardwareConfig(n_in=32, n_rec=64, n_out=10, threshold=64),
        batch=10, steps=8, seed=11, lanes=4, rate=0.3, weight_scale=0.35,
    ),
    Case(
        "odd-sizes-subtract",
        HardwareConfig(
            n_in=7, n_rec=13, n_out=3, weight_bits=6, membrane_bits=10, frac_bits=4,
            leak_shift=3, out_leak_shift=1, threshold=40, w_in_shift=1, w_rec_shift=2,
        ),
        batch=8, steps=12, seed=12, weight_scale=0.8,
    ),
    Case(
        "saturating-zero-reset-no-memory",
        HardwareConfig(
            n_in=5, n_rec=9, n_out=4, weight_bits=8, membrane_bits=6, frac_bits=2,
            leak_shift=0, out_leak_shift=0, threshold=5, reset="zero", w_in_shift=2,
            w_out_shift=3,
        ),
        batch=8, steps=12, seed=13, lanes=2, rate=0.6,
    ),
    Case(
        "single-neuron",
        HardwareConfig(
            n_in=1, n_rec=1, n_out=1, weight_bits=2, membrane_bits=4, frac_bits=0,
            leak_shift=1, out_leak_shift=3, threshold=1, reset="zero",
        ),
        batch=10, steps=16, seed=14, rate=0.5,
    ),
    Case(
        "wide-formats-3-lanes",
        HardwareConfig(
            n_in=6, n_rec=10, n_out=5, weight_bits=16, membrane_bits=32, frac_bits=12,
            leak_shift=5, out_leak_shift=2, threshold=1 << 20, w_in_shift=8, w_rec_shift=9,
            w_out_shift=4,
        ),
        batch=6, steps=10, seed=15, lanes=3, rate=0.5,
    ),
    Case(
        "backpressure",
        HardwareConfig(
            n_in=9, n_rec=12, n_out=6, weight_bits=5, membrane_bits=8, frac_bits=3,
            leak_shift=1, out_leak_shift=2, threshold=12, reset="subtract",
        ),
        batch=8, steps=10, seed=16, backpressure=True, rate=0.5,
    ),
    Case(
        "backpressure-lanes-exceed-outputs",
        HardwareConfig(
            n_in=4, n_rec=5, n_out=2, weight_bits=7, membrane_bits=9, frac_bits=3,
            leak_shift=2, out_leak_shift=0, threshold=30, reset="zero", w_rec_shift=1,
        ),
        batch=8, steps=10, seed=17, lanes=4, backpressure=True, rate=0.6,
    ),
]  # fmt: skip


def random_config(rng: np.random.Generator) -> HardwareConfig:
    """A random valid configuration whose threshold is reachable by a few input spikes."""
    while True:
        mb = int(rng.integers(4, 33))
        wb = int(rng.integers(2, 17))
        shifts = {name: int(rng.integers(0, min(mb, 6))) for name in (
            "w_in_shift", "w_rec_shift", "w_out_shift")}  # fmt: skip
        reach = min((1 << (mb - 1)) - 2, ((1 << (wb - 1)) - 1) << shifts["w_in_shift"])
        try:
            return HardwareConfig(
                n_in=int(rng.integers(1, 20)),
                n_rec=int(rng.integers(1, 24)),
                n_out=int(rng.integers(1, 12)),
                weight_bits=wb,
                membrane_bits=mb,
                frac_bits=int(rng.integers(0, mb - 1)),
                leak_shift=int(rng.integers(0, mb)),
                out_leak_shift=int(rng.integers(0, mb)),
                threshold=int(rng.integers(1, max(2, reach + 1))),
                reset=str(rng.choice(["subtract", "zero"])),
                **shifts,
            )
        except ConfigError:
            continue


def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    return Case(
        f"random-{seed}",
        random_config(rng),
        batch=6,
        steps=10,
        seed=seed,
        lanes=int(rng.choice([1, 2, 3, 4, 8])),
        backpressure=bool(rng.random() < 0.5),
        rate=float(rng.uniform(0.2, 0.7)),
    )


CASES += [random_case(seed) for seed in (101, 102, 103, 104, 105)]

#: the cases run under Verilator as well as Icarus
VERILATOR_CASES = (
    "default-sizes-4-lanes",
    "wide-formats-3-lanes",
    "backpressure-lanes-exceed-outputs",
    "random-101",
)
#: (case, simulator): every case under Icarus (ids as before), a subset under Verilator
SIMULATED = [pytest.param(case, "icarus", id=case.name, marks=needs_icarus) for case in CASES] + [
    pytest.param(case, "verilator", id=f"{case.name}-verilator", marks=needs_verilator)
    for case in CASES
    if case.name in VERILATOR_CASES
]


#: cases run both in the harness and in the cocotb bench (under Icarus), compared value for value
HARNESS_CASES = ("odd-sizes-subtract", "single-neuron", "saturating-zero-reset-no-memory")


def random_network(cfg: HardwareConfig, rng: np.random.Generator, scale: float = 1.0):
    """Uniform weights over ``scale`` of the range, with 15 % pinned to w_min and 15 % to w_max."""

    def draw(shape):
        lo = int(np.floor(cfg.w_min * scale))
        hi = int(np.ceil(cfg.w_max * scale))
        w = rng.integers(lo, hi + 1, size=shape)
        u = rng.random(shape)
        w[u < 0.15] = cfg.w_min
        w[u > 0.85] = cfg.w_max
        return w

    return QuantizedNetwork(
        cfg,
        draw((cfg.n_rec, cfg.n_in)),
        draw((cfg.n_rec, cfg.n_rec)),
        draw((cfg.n_out, cfg.n_rec)),
    )


def random_spikes(case: Case, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli inputs plus one all-spike step and one silent step per sample."""
    x = (rng.random((case.batch, case.steps, case.config.n_in)) < case.rate).astype(np.uint8)
    for b in range(case.batch):
        on, off = rng.choice(case.steps, size=2, replace=False)
        x[b, on] = 1
        x[b, off] = 0
    return x


def test_campaign_size() -> None:
    """The randomised cases together compare at least 10,000 neuron-steps."""
    assert sum(case.neuron_steps for case in CASES) >= 10_000
    assert any(case.backpressure for case in CASES)


@pytest.mark.rtl
@pytest.mark.parametrize(("case", "simulator"), SIMULATED)
def test_rtl_matches_golden(case: Case, simulator: str, tmp_path) -> None:
    rng = np.random.default_rng(case.seed)
    cfg = case.config.replace(lanes=case.lanes)
    net = random_network(cfg, rng, case.weight_scale)
    spikes = random_spikes(case, rng)
    result = run_rtl(
        net, spikes, tmp_path, backpressure=case.backpressure, seed=case.seed, simulator=simulator
    )
    assert result.complete
    assert result.n_mismatches == 0, f"case {case.name}, seed {case.seed}:\n{result.report()}"
    golden = result.golden
    np.testing.assert_array_equal(result.spikes, golden.spikes)
    np.testing.assert_array_equal(result.readout, golden.readout)
    np.testing.assert_array_equal(result.predictions, golden.predictions)
    assert result.neuron_steps == case.neuron_steps

    # the stimulus really exercises activity and saturation somewhere in the campaign
    assert golden.spikes.any() or case.config.n_rec == 1

    n_events = spikes.sum(axis=2)
    new = golden.spikes.sum(axis=2)
    prev = np.concatenate([np.zeros((case.batch, 1), np.int64), new[:, :-1]], axis=1)
    expected = np.array(
        [
            [
                cycles_per_step(cfg, int(e), int(p), int(s))
                for e, p, s in zip(n_events[b], prev[b], new[b], strict=True)
            ]
            for b in range(case.batch)
        ]
    )
    if case.backpressure:  # stalls happened and only cost time
        assert (result.step_cycles >= expected).all()
        assert result.step_cycles.sum() > expected.sum()
    else:  # the closed-form cycle count holds exactly
        np.testing.assert_array_equal(result.step_cycles, expected)


def _case_run(case: Case) -> tuple[QuantizedNetwork, np.ndarray]:
    rng = np.random.default_rng(case.seed)
    net = random_network(case.config.replace(lanes=case.lanes), rng, case.weight_scale)
    return net, random_spikes(case, rng)


#: an FPTT learning core, which infers here: the harness ties its weight streams off
LEARNING_CORE = Case(
    "fptt-core-infers",
    HardwareConfig(n_in=6, n_rec=9, n_out=3, learning=LearningConfig(mode="fptt")),
    batch=3, steps=6, seed=18, lanes=2, weight_scale=0.5,
)  # fmt: skip


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.name in HARNESS_CASES] + [LEARNING_CORE],
    ids=lambda case: case.name,
)
def test_harness_agrees_with_the_cocotb_bench(case: Case, tmp_path) -> None:
    net, spikes = _case_run(case)
    bench = run_rtl(net, spikes, tmp_path / "bench", harness=False)
    harness = run_rtl(net, spikes, tmp_path / "harness", harness=True)
    assert (tmp_path / "harness" / "capture.txt").is_file()
    assert not (tmp_path / "bench" / "capture.txt").exists()
    assert bench.ok and harness.ok, harness.report()
    np.testing.assert_array_equal(harness.spikes, bench.spikes)
    np.testing.assert_array_equal(harness.readout, bench.readout)
    np.testing.assert_array_equal(harness.step_cycles, bench.step_cycles)
    assert harness.cycles == bench.cycles
    assert harness.spikes.any() or case.config.n_rec == 1


@pytest.mark.rtl
@needs_icarus
def test_saturation_is_exercised() -> None:
    """At least one case drives membranes and readouts into both saturation bounds."""
    hit = set()
    for case in CASES:
        rng = np.random.default_rng(case.seed)
        net = random_network(case.config, rng, case.weight_scale)
        trace = golden_run(net, random_spikes(case, rng))
        cfg = case.config
        for name, values in (("v", trace.membrane), ("o", trace.readout)):
            if (values == cfg.v_max).any():
                hit.add(f"{name}_max")
            if (values == cfg.v_min).any():
                hit.add(f"{name}_min")
    assert hit == {"v_max", "v_min", "o_max", "o_min"}


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("harness", [False, True], ids=["bench", "harness"])
def test_corrupted_weight_is_detected(harness: bool, tmp_path) -> None:
    """RTL built from a network with one wrong readout weight must be reported, with details,
    by either bench."""
    case = CASES[1]
    rng = np.random.default_rng(case.seed)
    net = random_network(case.config, rng, case.weight_scale)
    spikes = random_spikes(case, rng)
    golden = golden_run(net, spikes)
    b, t, j = (int(v) for v in np.argwhere(golden.spikes)[0])  # first spike of the campaign
    w_out = net.w_out.copy()
    cfg = case.config
    w_out[0, j] = cfg.w_min if w_out[0, j] > 0 else cfg.w_max
    bad = QuantizedNetwork(cfg, net.w_in, net.w_rec, w_out)
    design = generate_verilog(bad, tmp_path / "bad_rtl")

    result = run_rtl(net, spikes, tmp_path / "run", verilog=design.verilog, harness=harness)
    assert result.n_mismatches > 0
    assert not result.ok
    first = result.mismatches[0]
    assert (first.sample, first.step, first.signal, first.index) == (b, t, "readout", 0)
    assert first.expected == golden.readout[b, t, 0]
    assert first.actual != first.expected
    report = result.report()
    assert (
        f"sample {b} step {t} readout 0: expected {first.expected}, actual {first.actual}" in report
    )
    assert f"{result.n_mismatches} mismatch" in report
    # the cocotb test itself failed too
    build = "sim_build_harness" if harness else "sim_build"
    assert "failure" in (tmp_path / "run" / build / "results.xml").read_text()


def test_missing_icarus_is_reported(tmp_path, monkeypatch) -> None:
    cfg = HardwareConfig(n_in=2, n_rec=2, n_out=2)
    zeros = np.zeros((2, 2), np.int64)
    net = QuantizedNetwork(cfg, zeros, zeros, zeros)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolMissingError) as info:
        run_rtl(net, np.zeros((1, 3, 2), np.uint8), tmp_path / "run")
    message = str(info.value)
    assert "iverilog" in message and "apt-get install iverilog" in message
    assert "make test" in message
    assert os.environ["PATH"] == str(empty)


STUCK_CORE = """
module stuck_core(input clk, input rst, input [2:0] i_event__payload, input i_event__valid,
                  output i_event__ready, output [2:0] o_spike__payload, output o_spike__valid,
                  input o_spike__ready, output [5:0] o_readout__payload,
                  output o_readout__valid, input o_readout__ready, output busy);
  assign i_event__ready = 1'b0;
  assign o_spike__payload = 3'b0;
  assign o_spike__valid = 1'b0;
  assign o_readout__payload = 6'b0;
  assign o_readout__valid = 1'b0;
  assign busy = 1'b1;
endmodule
"""


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("harness", [False, True], ids=["bench", "harness"])
def test_hung_core_is_reported(harness: bool, tmp_path) -> None:
    """A core that never takes an event ends in a timeout report instead of a hang."""
    cfg = HardwareConfig(n_in=2, n_rec=2, n_out=2, membrane_bits=4, frac_bits=0, threshold=3)
    zeros = np.zeros((2, 2), np.int64)
    net = QuantizedNetwork(cfg, zeros, zeros, zeros)
    verilog = tmp_path / "stuck_core.v"
    verilog.write_text(STUCK_CORE)
    x = np.ones((1, 2, 2), np.uint8)
    result = run_rtl(net, x, tmp_path / "run", verilog=verilog, harness=harness)
    assert not result.complete and not result.ok
    assert "timeout" in result.report()
