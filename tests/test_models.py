"""Models in the cell protocol: stacking, equivalences and rule compatibility."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from neurofptt.errors import ConfigError
from neurofptt.learning import RULES, TrainConfig, build_model, make_rule
from neurofptt.learning.registry import SUPPORTED_MODELS
from neurofptt.learning.tbptt import TBPTTOptions
from neurofptt.models import AdaptiveSpikingRNN, GatedRNN, SpikingRNN
from neurofptt.models.spiking import StackedSpikingRNN


def test_one_layer_stack_equals_spiking_rnn() -> None:
    torch.manual_seed(0)
    single = SpikingRNN(5, 7, 3, input_gain=3.0)
    stack = StackedSpikingRNN(5, [7], 3, input_gain=1.0)
    with torch.no_grad():
        stack.layers[0].fc_in.weight.copy_(single.rec.fc_in.weight)
        stack.layers[0].fc_rec.weight.copy_(single.rec.fc_rec.weight)
        stack.readout.fc_out.weight.copy_(single.readout.fc_out.weight)
    x = (torch.rand(4, 9, 5) < 0.5).float()
    a, state_a = single(x)
    b, state_b = stack(x)
    assert torch.equal(a, b)
    assert all(torch.equal(u, v) for u, v in zip(state_a, state_b, strict=True))


@pytest.mark.parametrize("name", ["lif", "alif", "rnn", "lstm", "gru"])
def test_stacked_models_step_and_backprop(name: str) -> None:
    model = build_model(name, 4, [6, 5], 3)
    x = (torch.rand(2, 7, 4) < 0.5).float()
    out, state = model(x)
    assert out.shape == (2, 7, 3)
    per_layer = {"lif": 2, "alif": 3, "rnn": 1, "gru": 1, "lstm": 2}[name]
    readout_state = 1 if name in ("lif", "alif") else 0
    assert len(state) == 2 * per_layer + readout_state
    out[:, -1].sum().backward()
    first = next(model.parameters())
    assert first.grad is not None and torch.isfinite(first.grad).all()


def test_alif_is_a_spiking_rnn_with_another_layer() -> None:
    model = build_model("alif", 4, 6, 3, beta_a=0.0)
    assert isinstance(model, AdaptiveSpikingRNN) and model.hparams["beta_a"] == 0.0
    assert isinstance(build_model("gru", 4, 6, 3), GatedRNN)


@pytest.mark.parametrize("rule", sorted(r for r in RULES if "lif" in SUPPORTED_MODELS[r]))
def test_every_rule_trains_a_two_layer_lif_or_says_why(rule: str) -> None:
    torch.manual_seed(1)
    model = build_model("lif", 4, [6, 5], 2, input_gain=3.0)
    before = [p.detach().clone() for p in model.parameters()]
    x = (torch.rand(8, 6, 4) < 0.5).float()
    y = torch.randint(0, 2, (8,))
    cfg = replace(TrainConfig(), rule=rule, lr=1e-2, tbptt=TBPTTOptions(n=3))
    try:
        engine = make_rule(cfg, model)
    except ConfigError as exc:  # e.g. e-prop: single-layer networks only
        assert "supports" in str(exc) and "StackedSpikingRNN" in str(exc)
        return
    result = engine.train_batch(x, y)
    assert torch.isfinite(torch.tensor(result.loss))
    after = list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
