"""Quantization-aware training: the float model computes with exactly the hardware's weights."""

from __future__ import annotations

import numpy as np
import torch

from neurofptt.models import SpikingRNN
from neurofptt.quant import HardwareConfig, golden_run
from neurofptt.quant.fake import add_weight_quantization, set_weight_quantization
from neurofptt.quant.quantizer import quantize

CFG = HardwareConfig(n_in=6, n_rec=12, n_out=3, weight_bits=6, membrane_bits=16, frac_bits=8)


def _model() -> SpikingRNN:
    torch.manual_seed(0)
    model = SpikingRNN.from_config(CFG, input_gain=4.0).double()
    add_weight_quantization(model, CFG)
    return model


def test_disabled_parametrization_changes_nothing() -> None:
    torch.manual_seed(0)
    plain = SpikingRNN.from_config(CFG, input_gain=4.0).double()
    model = _model()
    x = (torch.rand(3, 5, CFG.n_in) < 0.5).double()
    assert torch.equal(plain(x)[0], model(x)[0])


def test_enabled_weights_are_exactly_the_quantizers() -> None:
    model = _model()
    set_weight_quantization(model, True)
    net, report = quantize(model, CFG)
    for key, path in (("w_in", "rec.fc_in"), ("w_rec", "rec.fc_rec"), ("w_out", "readout.fc_out")):
        shift = report.shifts[key]
        expected = np.ldexp(getattr(net, key).astype(np.float64), shift - CFG.frac_bits)
        got = model.get_submodule(path).weight.detach().numpy()
        np.testing.assert_array_equal(got, expected)
        assert report.max_error[key] == 0.0  # nothing left to round


def test_gradient_passes_straight_through_to_the_shadow_weights() -> None:
    model = _model()
    set_weight_quantization(model, True)
    x = (torch.rand(3, 5, CFG.n_in) < 0.5).double()
    out, _ = model(x)
    out[:, -1].sum().backward()
    shadow = model.rec.fc_in.parametrizations.weight.original
    assert shadow.grad is not None and shadow.grad.abs().sum() > 0


def test_float_and_golden_predictions_agree_after_quantization_aware_weights() -> None:
    model = _model()
    set_weight_quantization(model, True)
    net, _ = quantize(model, CFG)
    x = np.random.default_rng(0).random((64, 10, CFG.n_in)) < 0.4
    with torch.no_grad():
        out, _ = model(torch.from_numpy(x.astype(np.float64)))
    float_pred = out[:, -1].argmax(-1).numpy()
    agree = np.mean(float_pred == golden_run(net, x).predictions)
    assert agree >= 0.9  # only the flooring leak separates the two
