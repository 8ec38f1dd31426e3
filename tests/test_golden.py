"""The golden model against the float model and against a hand-worked step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofptt.errors import ConfigError
from neurofptt.models import SpikingRNN
from neurofptt.quant import GoldenState, HardwareConfig, QuantizedNetwork, golden_run, golden_step
from neurofptt.quant.quantizer import dequantize_into, quantize


def test_hand_worked_step() -> None:
    cfg = HardwareConfig(
        n_in=2,
        n_rec=2,
        n_out=1,
        weight_bits=8,
        membrane_bits=8,
        frac_bits=4,
        leak_shift=1,
        out_leak_shift=2,
        threshold=16,
        reset="subtract",
        w_in_shift=1,
        w_rec_shift=0,
        w_out_shift=2,
    )
    net = QuantizedNetwork(
        cfg, np.array([[10, 3], [-7, 127]]), np.array([[0, 5], [100, 0]]), np.array([[3, -1]])
    )
    state = GoldenState(v=np.array([[-5, 20]]), z=np.array([[False, True]]), o=np.array([[-7]]))
    out = golden_step(net, state, np.array([[1, 1]]))
    # neuron 0: leak(-5) = -5 - floor(-5/2) = -2; input (10 + 3) << 1 = 26; rec 5 * z1 = 5
    #           -> -2 + 26 + 5 = 29 > 16: spikes
    # neuron 1: leak(20) = 10; reset -16; input (-7 + 127) << 1 = 240; rec 0
    #           -> 234, saturated to 127: spikes
    assert out.v.tolist() == [[29, 127]]
    assert out.z.tolist() == [[True, True]]
    # readout: leak(-7) = -7 - floor(-7/4) = -5; (3 - 1) << 2 = 8 -> 3
    assert out.o.tolist() == [[3]]


def _random_network(rng: np.random.Generator, reset: str) -> tuple[SpikingRNN, QuantizedNetwork]:
    cfg = HardwareConfig(
        n_in=12,
        n_rec=20,
        n_out=5,
        weight_bits=8,
        membrane_bits=20,
        frac_bits=8,
        leak_shift=3,
        out_leak_shift=2,
        threshold=256,
        reset=reset,
    )
    model = SpikingRNN.from_config(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(0, 0.5, p.shape)))
    net, _ = quantize(model, cfg)
    dequantize_into(model, net)  # the float model now holds exactly the integer weights
    return model, net


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("seed", range(4))
def test_golden_tracks_float_within_predicted_error(reset: str, seed: int) -> None:
    """With identical weights, the only difference is the flooring leak: its error per step is in
    [0, 1) LSB and decays by beta, so while the spikes agree the golden membrane lies in
    [float, float + 2**leak_shift) LSBs, and spikes can only differ where the float membrane is
    within that band below the threshold."""
    rng = np.random.default_rng(seed)
    model, net = _random_network(rng, reset)
    cfg = net.config
    x = rng.random((8, 30, cfg.n_in)) < 0.3
    trace = golden_run(net, x)
    assert trace.spikes.any() and not trace.spikes.all()
    assert np.all(np.abs(trace.membrane) < cfg.v_max)  # the bound assumes no saturation
    scale = 2.0**cfg.frac_bits
    bound_v, bound_o = 2.0**cfg.leak_shift, 2.0**cfg.out_leak_shift
    state = model.initial_state(x.shape[0])
    agree = np.ones(x.shape[0], bool)
    checked = 0
    with torch.no_grad():
        for t in range(x.shape[1]):
            logits, state = model.step(torch.from_numpy(x[:, t].astype(np.float64)), state)
            v_float = state[0].numpy() * scale
            o_float = logits.numpy() * scale
            err_v = trace.membrane[agree, t] - v_float[agree]
            assert np.all(err_v >= -1e-9) and np.all(err_v < bound_v)
            spikes_float = state[1].numpy().astype(bool)
            differ = spikes_float != trace.spikes[:, t]
            for b in np.flatnonzero(agree & differ.any(axis=1)):
                near = v_float[b, differ[b]]
                assert np.all((near > cfg.threshold - bound_v) & (near <= cfg.threshold))
                agree[b] = False  # the trajectories part here; nothing more to predict
            # the readout sees this step's spikes, so it is compared after the spike check
            err_o = trace.readout[agree, t] - o_float[agree]
            assert np.all(err_o >= -1e-9) and np.all(err_o < bound_o)
            checked += int(agree.sum())
    assert checked > x.shape[0] * x.shape[1] // 2  # most sample-steps were compared


def test_quantizer_chooses_smallest_shift() -> None:
    cfg = HardwareConfig(n_in=3, n_rec=4, n_out=2, weight_bits=8, frac_bits=8)
    model = SpikingRNN.from_config(cfg)
    with torch.no_grad():
        model.rec.fc_in.weight.fill_(0.1)  # 25.6 LSB: fits without shift
        model.rec.fc_rec.weight.fill_(1.2)  # 307 LSB: needs a shift of 2 (76.8 <= 127)
        model.readout.fc_out.weight.fill_(-0.5)  # -128 LSB: needs 1 (-64)
    net, report = quantize(model, cfg)
    assert report.shifts == {"w_in": 0, "w_rec": 2, "w_out": 1}
    assert (net.config.w_in_shift, net.config.w_rec_shift, net.config.w_out_shift) == (0, 2, 1)
    assert np.all(net.w_in == 26) and np.all(net.w_rec == 77) and np.all(net.w_out == -64)
    assert report.clipped == {"w_in": 0, "w_rec": 0, "w_out": 0}
    # the learning datapath's short names reach the same arrays
    assert net.matrix("rec") is net.w_rec and net.matrix("out") is net.w_out
    with pytest.raises(ConfigError, match="unknown weight matrix 'hidden'"):
        net.matrix("hidden")
