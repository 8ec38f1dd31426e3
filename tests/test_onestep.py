"""The local LIF step (:meth:`LIFStepGradient.step`) is the model's ``step``, bit for bit, and
the local form is refused for a network whose neurons it does not reproduce."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch

from neurofptt.learning.onestep import LIFStepGradient
from neurofptt.models import SpikingRNN


def model(dtype: torch.dtype, reset: str, surrogate: str = "fast_sigmoid") -> SpikingRNN:
    torch.manual_seed(0)
    return SpikingRNN(5, 9, 3, reset=reset, surrogate_name=surrogate, input_gain=3.0).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan"])
def test_local_step_is_the_models_step(dtype: torch.dtype, reset: str, surrogate: str) -> None:
    net = model(dtype, reset, surrogate)
    local = LIFStepGradient.for_model(net, list(net.parameters()))
    assert local is not None
    ours = theirs = net.initial_state(4)
    spikes = 0.0
    with torch.no_grad():
        for _ in range(30):
            x = (torch.rand(4, 5) < 0.5).to(dtype)
            logits, ours = local.step(x, ours)
            expected, theirs = net.step(x, theirs)
            assert torch.equal(logits, expected)
            assert all(
                torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(ours, theirs, strict=True)
            )
            spikes += float(ours[1].sum())
    assert 0 < spikes < 30 * 4 * 9  # resets happened, and not every neuron fired throughout


def test_local_step_is_refused_for_other_neurons() -> None:
    net = model(torch.float64, "subtract")
    params = list(net.parameters())
    net.readout.li = snn.Leaky(beta=0.9, reset_mechanism="subtract")  # a readout that resets
    assert LIFStepGradient.for_model(net, params) is None
    net = model(torch.float64, "subtract")
    net.rec.lif.init_hidden = True  # state kept in the module
    assert LIFStepGradient.for_model(net, params) is None
