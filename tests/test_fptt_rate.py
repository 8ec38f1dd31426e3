"""FPTT's rate per update: ``train.lr`` for a sequence of up to ``reference_updates`` updates,
``lr * reference_updates / updates`` for a longer one, the trainer's rate kept afterwards."""

from __future__ import annotations

import pytest
import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.fptt import FPTT, FPTTOptions
from neurofptt.models import SpikingRNN


def run(steps: int, lr: float, reference: int, period: int = 1) -> tuple[SpikingRNN, float]:
    """One batch of ``steps`` steps with plain SGD; the weights after it and the group's rate."""
    torch.manual_seed(0)
    model = SpikingRNN(3, 5, 2, input_gain=2.0).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    rule = FPTT(model, optimizer, reference_updates=reference, period=period)
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(4, steps, 3, generator=generator) < 0.5).double()
    rule.train_batch(x, torch.tensor([0, 1, 1, 0]))
    return model, optimizer.param_groups[0]["lr"]


def weights(model: SpikingRNN) -> list[torch.Tensor]:
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize(("steps", "period", "scale"), [(16, 1, 0.5), (24, 2, 8 / 12)])
def test_a_long_sequence_takes_the_rate_per_update_of_the_reference(
    steps: int, period: int, scale: float
) -> None:
    scaled, rate = run(steps, 0.1, reference=8, period=period)
    plain, _ = run(steps, 0.1 * scale, reference=0, period=period)
    assert rate == 0.1  # the trainer's rate is back for the next batch
    for a, b in zip(weights(scaled), weights(plain), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_a_sequence_within_the_reference_keeps_the_rate() -> None:
    scaled, _ = run(8, 0.1, reference=8)
    plain, _ = run(8, 0.1, reference=0)
    for a, b in zip(weights(scaled), weights(plain), strict=True):
        assert torch.equal(a, b)
    moved, _ = run(8, 0.05, reference=0)
    assert not all(torch.equal(a, b) for a, b in zip(weights(moved), weights(plain), strict=True))


def test_a_negative_reference_is_refused() -> None:
    with pytest.raises(ConfigError, match="reference_updates"):
        FPTTOptions(reference_updates=-1)
