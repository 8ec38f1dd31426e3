"""The golden model's float-BLAS products against the integer products, bit for bit: the
kernel choice at the limits of its bound, random configs, and networks at the bound's edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofptt.errors import ConfigError
from neurofptt.quant import GoldenState, HardwareConfig, QuantizedNetwork, golden_run, golden_step
from neurofptt.quant.exact import (
    ExactProduct,
    choose_kernel,
    product_bound,
    spike_bound,
)


def test_kernel_choice_at_the_limits() -> None:
    assert choose_kernel(2**24) == "float32"
    assert choose_kernel(2**24 + 1) == "float64"
    assert choose_kernel(2**53) == "float64"
    assert choose_kernel(2**53 + 1) == "int64"
    assert spike_bound(512, 16) == 2**24 and spike_bound(4096, 13) == 2**24
    # the widest spike product the config limits allow stays within float64
    assert choose_kernel(spike_bound(4096, 16)) == "float64"


def test_beyond_the_float64_bound_takes_the_integer_path() -> None:
    """Operands as wide as a readout error (32-bit membranes) with 16-bit weights over 1024 terms
    exceed 2**53: the product runs on integers and stays exact where float64 would round."""
    bound = product_bound(1024, 2**32, 2**15)
    product = ExactProduct.build(np.array([[2**15, 1]]), bound)
    assert product.kernel == "int64" and product.matrix.dtype == np.int64
    a = np.array([2**40 - 1, 1])
    assert product(a).tolist() == [(2**40 - 1) * 2**15 + 1]
    assert int(np.float64(2**40 - 1) * 2**15 + 1) != (2**40 - 1) * 2**15 + 1


def test_float32_past_its_bound_is_refused() -> None:
    """One past 2**24 a float32 sum rounds (2**24 + 1 -> 2**24), so that bound takes float64 and
    a forced float32 kernel is an error."""
    w = np.array([[2**24, 1]])
    assert np.float32(2**24) + np.float32(1) == np.float32(2**24)
    product = ExactProduct.build(w, 2**24 + 1)
    assert product.kernel == "float64" and product(np.array([1, 1])).tolist() == [2**24 + 1]
    with pytest.raises(ConfigError, match="not exact"):
        ExactProduct.build(w, 2**24 + 1, kernel="float32")
    with pytest.raises(ConfigError, match="unknown product kernel"):
        ExactProduct.build(w, 1, kernel="int32")


@pytest.mark.parametrize(
    ("fan_in", "bits", "kernel"),
    [(512, 16, "float32"), (4096, 13, "float32"), (513, 16, "float64"), (4096, 16, "float64")],
)
def test_products_at_the_bound_are_exact(fan_in: int, bits: int, kernel: str) -> None:
    """The largest fan-in and the widest weights: every weight at the most negative code with
    every spike on reaches the bound itself; random extreme codes sum to odd values near it."""
    rng = np.random.default_rng(fan_in + bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    w = np.vstack([np.full(fan_in, lo), np.full(fan_in, hi), rng.choice([lo, hi], (4, fan_in))])
    spikes = np.vstack([np.ones(fan_in, bool), rng.random((7, fan_in)) < 0.9])
    product = ExactProduct.build(w, spike_bound(fan_in, bits))
    assert product.kernel == kernel
    exact = spikes.astype(np.int64) @ w.T
    assert exact[0, 0] == -spike_bound(fan_in, bits)
    assert np.array_equal(product(spikes), exact)


@st.composite
def networks(draw: st.DrawFn) -> tuple[QuantizedNetwork, np.ndarray]:
    """A random valid config (fan-ins around the float32 bound and the largest, shifts, resets
    and membrane widths that saturate included), weights that are uniform or only the extreme
    codes, and input spikes from silent to all on."""
    mb = draw(st.integers(4, 32))
    cfg = HardwareConfig(
        n_in=draw(st.integers(1, 40) | st.sampled_from([511, 512, 513, 4096])),
        n_rec=draw(st.integers(1, 40) | st.sampled_from([512, 513])),
        n_out=draw(st.integers(1, 12)),
        weight_bits=draw(st.integers(2, 16)),
        membrane_bits=mb,
        frac_bits=draw(st.integers(0, mb - 2)),
        leak_shift=draw(st.integers(0, mb - 1)),
        out_leak_shift=draw(st.integers(0, mb - 1)),
        threshold=draw(st.integers(1, (1 << (mb - 1)) - 2)),
        reset=draw(st.sampled_from(["subtract", "zero"])),
        w_in_shift=draw(st.integers(0, mb - 1)),
        w_rec_shift=draw(st.integers(0, mb - 1)),
        w_out_shift=draw(st.integers(0, mb - 1)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    extreme = draw(st.booleans())

    def weights(shape: tuple[int, int]) -> np.ndarray:
        if extreme:
            return rng.choice([cfg.w_min, cfg.w_max], shape)
        return rng.integers(cfg.w_min, cfg.w_max + 1, shape)

    net = QuantizedNetwork(
        cfg,
        weights((cfg.n_rec, cfg.n_in)),
        weights((cfg.n_rec, cfg.n_rec)),
        weights((cfg.n_out, cfg.n_rec)),
    )
    rate = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    x = rng.random((draw(st.integers(1, 4)), draw(st.integers(1, 6)), cfg.n_in)) < rate
    return net, x


def assert_same_trace(net: QuantizedNetwork, x: np.ndarray) -> None:
    """The chosen kernels' trace equals the integer products' trace, and golden_step (which
    forms the input product per step) follows it too."""
    fast, exact = golden_run(net, x), golden_run(net, x, kernel="int64")
    for name in ("spikes", "membrane", "readout"):
        assert np.array_equal(getattr(fast, name), getattr(exact, name)), name
    state = GoldenState.zeros(net, x.shape[0])
    for t in range(x.shape[1]):
        state = golden_step(net, state, x[:, t])
        assert np.array_equal(state.v, exact.membrane[:, t])
        assert np.array_equal(state.o, exact.readout[:, t])


@settings(max_examples=80, deadline=None)
@given(networks())
def test_golden_run_matches_the_integer_products(case: tuple[QuantizedNetwork, np.ndarray]) -> None:
    assert_same_trace(*case)


@pytest.mark.parametrize(
    ("n_in", "n_rec", "kernels"),
    [
        (512, 512, ("float32", "float32", "float32")),  # every bound exactly 2**24
        (513, 513, ("float64", "float64", "float64")),  # one past it
        (4096, 8, ("float64", "float32", "float32")),  # the largest fan-in
    ],
)
def test_networks_at_the_bound_edge(n_in: int, n_rec: int, kernels: tuple[str, ...]) -> None:
    """16-bit weights: all at the most negative code (the bound itself) in the first half of the
    neurons, extreme codes at random in the rest; inputs all on, then at random."""
    cfg = HardwareConfig(n_in=n_in, n_rec=n_rec, n_out=4, weight_bits=16, membrane_bits=32)
    rng = np.random.default_rng(n_in)

    def weights(shape: tuple[int, int]) -> np.ndarray:
        w = rng.choice([cfg.w_min, cfg.w_max], shape)
        w[: shape[0] // 2] = cfg.w_min
        return w

    net = QuantizedNetwork(
        cfg, weights((n_rec, n_in)), weights((n_rec, n_rec)), weights((4, n_rec))
    )
    products = net.products
    assert (products.input.kernel, products.recurrent.kernel, products.readout.kernel) == kernels
    assert products.kernel == ("float64" if "float64" in kernels else "float32")
    assert net.products is products  # converted once per network
    x = np.concatenate([np.ones((2, 1, n_in), bool), rng.random((2, 3, n_in)) < 0.5], axis=1)
    assert_same_trace(net, x)


def test_forced_kernels_agree_on_the_demo_network() -> None:
    cfg = HardwareConfig()
    rng = np.random.default_rng(0)
    net = QuantizedNetwork(
        cfg,
        rng.integers(-40, 41, (cfg.n_rec, cfg.n_in)),
        rng.integers(-20, 21, (cfg.n_rec, cfg.n_rec)),
        rng.integers(-128, 128, (cfg.n_out, cfg.n_rec)),
    )
    assert net.products.kernel == "float32"
    x = rng.random((5, 12, cfg.n_in)) < 0.3
    traces = [golden_run(net, x, kernel=k) for k in ("float32", "float64", "int64")]
    assert traces[0].spikes.any()
    for trace in traces[1:]:
        assert np.array_equal(trace.membrane, traces[0].membrane)
        assert np.array_equal(trace.readout, traces[0].readout)
