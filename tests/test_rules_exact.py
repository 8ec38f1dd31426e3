"""Exactness of the T-BPTT, FO-BPTT and RTRL rules, and a short learning run for each.

* RTRL's forward-accumulated gradient equals the BPTT (autograd) gradient;
* T-BPTT with a window covering the sequence *is* BPTT, and with a shorter window equals the
  truncated computation written out step by step;
* the fractional optimizer at order 1 is its base optimizer bit for bit, and its factor is the
  documented formula;
* the BPTT gradient of a tanh RNN with losses at several steps equals the hand-written delta
  recursion and central differences;
* each rule drives the loss of a small memory task far below chance.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofptt.errors import CheckpointError, ConfigError
from neurofptt.learning.bptt import BPTT
from neurofptt.learning.fobptt import FOBPTT, FractionalOptimizer, fractional_factor
from neurofptt.learning.rtrl import RTRL, rtrl_gradients, sensitivity_entries
from neurofptt.learning.tbptt import TBPTT, step_weights, update_points
from neurofptt.models import SpikingRNN
from neurofptt.models.conventional import GatedRNN
from neurofptt.tasks.synthetic import which_fired_first

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """The networks are tiny: one thread is faster and timings do not depend on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(kind: str, n_in: int = 3, hidden: int = 4, n_out: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "lif":
        return SpikingRNN(n_in, hidden, n_out, input_gain=3.0)
    return GatedRNN(kind, n_in, hidden, n_out)


def make_batch(kind: str, batch: int = 3, steps: int = 7, n_in: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    if kind == "lif":
        x = (torch.rand(batch, steps, n_in, generator=gen) < 0.4).float()
    else:
        x = torch.randn(batch, steps, n_in, generator=gen)
    y = torch.randint(0, 2, (batch,), generator=gen)
    return x, y


def autograd_gradients(model, x, y, loss_steps: str) -> dict[str, torch.Tensor]:
    """BPTT reference: ``sum_t w_t CE(o_t, y)`` through the full unrolled graph."""
    outputs, _ = model(x)
    weights = step_weights(x.shape[1], loss_steps)
    loss = sum(w * F.cross_entropy(outputs[:, t], y) for t, w in enumerate(weights) if w)
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return dict(zip(names, grads, strict=True))


def params_of(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def assert_same_params(a, b) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), f"{name} differs: max {float((p - q).abs().max()):.3e}"


# --------------------------------------------------------------------------------------------
# (1) RTRL = BPTT
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("loss_steps", ["last", "all"])
def test_rtrl_equals_bptt_conventional(kind: str, loss_steps: str) -> None:
    model = make_model(kind).to(F64)
    x, y = make_batch(kind)
    x = x.to(F64)
    rtrl = rtrl_gradients(model, x, y, loss_steps)
    ref = autograd_gradients(model, x, y, loss_steps)
    for name, g in ref.items():
        assert g.abs().max() > 0
        torch.testing.assert_close(rtrl[name], g, rtol=1e-9, atol=1e-12, msg=name)


def test_rtrl_autograd_jacobians_equal_functorch_ones() -> None:
    """Both ways of getting the per-step Jacobians give the exact gradient."""
    model = make_model("lstm").to(F64)
    x, y = make_batch("lstm")
    x = x.to(F64)
    via_func = rtrl_gradients(model, x, y, "all", jacobian="func")
    via_autograd = rtrl_gradients(model, x, y, "all", jacobian="autograd")
    for name, g in via_func.items():
        torch.testing.assert_close(via_autograd[name], g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss_steps", ["last", "all"])
def test_rtrl_equals_bptt_lif(loss_steps: str) -> None:
    """LIF: exact on the readout, float32-level agreement on paths through the spikes.

    snntorch's spike function returns float32 spikes (the model casts them back to float64), so in
    BPTT the gradient arriving at the spike is rounded to float32 (relative error ~6e-8) before
    the surrogate derivative is applied.  RTRL seeds its Jacobian rows with exact ones, so its
    result is the more precise of the two; they differ at float32 resolution, not more.  The
    readout weights' gradient never passes backwards through a spike and agrees to float64
    precision.
    """
    model = make_model("lif").to(F64)
    x, y = make_batch("lif", steps=8)
    x = x.to(F64)
    outputs, _ = model(x)
    spikes, state = 0.0, model.initial_state(x.shape[0])
    for t in range(x.shape[1]):
        _, state = model.step(x[:, t], state)
        spikes += float(state[1].detach().sum())
    assert spikes > 0, "the test needs spikes to exercise the surrogate path"
    rtrl = rtrl_gradients(model, x, y, loss_steps)
    ref = autograd_gradients(model, x, y, loss_steps)
    for name, g in ref.items():
        assert g.abs().max() > 0, name
        through_spikes = not name.startswith("readout.")
        rtol = 1e-6 if through_spikes else 1e-9
        scale = float(g.abs().max())
        torch.testing.assert_close(rtrl[name], g, rtol=rtol, atol=rtol * scale, msg=name)


def test_rtrl_rule_update_equals_bptt_update() -> None:
    a = make_model("rnn").to(F64)
    b = copy.deepcopy(a)
    x, y = make_batch("rnn")
    x = x.to(F64)
    res_a = RTRL(a, torch.optim.SGD(a.parameters(), lr=0.5), clip=1.0).train_batch(x, y)
    res_b = BPTT(b, torch.optim.SGD(b.parameters(), lr=0.5), clip=1.0).train_batch(x, y)
    assert res_a.loss == pytest.approx(res_b.loss, rel=1e-12)
    torch.testing.assert_close(res_a.logits, res_b.logits, rtol=1e-12, atol=1e-14)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_rtrl_refuses_large_networks() -> None:
    n_state, n_params = sensitivity_entries(make_model("rnn", hidden=40))
    assert n_state * n_params > 20_000
    model = make_model("rnn", hidden=40)
    with pytest.raises(ConfigError, match="RTRL carries dstate/dtheta"):
        RTRL(model, torch.optim.SGD(model.parameters(), lr=0.1))
    x, y = make_batch("rnn")
    with pytest.raises(ConfigError, match="entries per sample"):
        rtrl_gradients(model, x, y)
    with pytest.raises(ConfigError, match="loss_steps"):
        rtrl_gradients(make_model("rnn"), x, y, "middle")


# --------------------------------------------------------------------------------------------
# (2) T-BPTT
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "lif"])
def test_tbptt_full_window_is_bptt_bit_for_bit(kind: str) -> None:
    a = make_model(kind)
    b = copy.deepcopy(a)
    ra = TBPTT(a, torch.optim.Adam(a.parameters(), lr=1e-2), n=7, interval=7, clip=1.0)
    rb = BPTT(b, torch.optim.Adam(b.parameters(), lr=1e-2), clip=1.0)
    for seed in range(3):
        x, y = make_batch(kind, steps=7, seed=seed)
        res_a, res_b = ra.train_batch(x, y), rb.train_batch(x, y)
        assert res_a.loss == res_b.loss
        assert torch.equal(res_a.logits, res_b.logits)
        assert_same_params(a, b)


def test_tbptt_full_window_all_steps_is_bptt_of_mean_loss() -> None:
    a = make_model("gru").to(F64)
    b = copy.deepcopy(a)
    x, y = make_batch("gru", steps=6)
    x = x.to(F64)
    rule = TBPTT(a, torch.optim.SGD(a.parameters(), lr=0.3), n=50, interval=50, loss_steps="all")
    rule.clip = 0.0
    rule.train_batch(x, y)
    grads = autograd_gradients(b, x, y, "all")
    with torch.no_grad():
        for name, p in b.named_parameters():
            p -= 0.3 * grads[name]
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def _sgd(model, loss: torch.Tensor, lr: float) -> None:
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads, strict=True):
            p -= lr * g


def _run(model, x, state, start: int, end: int):
    """Steps ``[start, end)`` from ``state``; returns the outputs and the states after each step."""
    outputs, states = [], []
    for t in range(start, end):
        out, state = model.step(x[:, t], state)
        outputs.append(out)
        states.append(state)
    return outputs, states


def _detach(state):
    return tuple(s.detach() for s in state)


def test_tbptt_short_window_last_step_is_truncated_gradient() -> None:
    """``loss_steps="last"``, n = 3 < T = 8: one update, the gradient stops 3 steps back."""
    a = make_model("lstm").to(F64)
    b = copy.deepcopy(a)
    c = copy.deepcopy(a)
    x, y = make_batch("lstm", steps=8)
    x = x.to(F64)
    TBPTT(a, torch.optim.SGD(a.parameters(), lr=0.5), n=3, interval=2, clip=0.0).train_batch(x, y)
    BPTT(c, torch.optim.SGD(c.parameters(), lr=0.5), clip=0.0).train_batch(x, y)
    # by hand: run 5 steps, cut the graph, run the last 3 with the graph, CE at the last step
    with torch.no_grad():
        _, states = _run(b, x, b.initial_state(3), 0, 5)
    outputs, _ = _run(b, x, _detach(states[-1]), 5, 8)
    _sgd(b, F.cross_entropy(outputs[-1], y), 0.5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert any(
        not torch.allclose(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_tbptt_overlapping_windows_match_hand_schedule() -> None:
    """n = 4, interval = 2, T = 7, all steps: updates after 2, 4, 6 and 7 steps.

    Written out: each update re-runs its window from the stored state with the current weights and
    descends the mean CE of the steps that are new to it; the states of that pass are the stored
    ones from then on.
    """
    a = make_model("rnn").to(F64)
    b = copy.deepcopy(a)
    c = copy.deepcopy(a)
    x, y = make_batch("rnn", steps=7)
    x = x.to(F64)
    lr = 0.4
    rule = TBPTT(a, torch.optim.SGD(a.parameters(), lr=lr), n=4, interval=2, loss_steps="all")
    rule.clip = 0.0
    result = rule.train_batch(x, y)
    assert update_points(7, 2) == [2, 4, 6, 7]

    def ce(outputs, ts, first):
        return torch.stack([F.cross_entropy(outputs[t - first], y) for t in ts]).mean()

    s0 = b.initial_state(3)
    losses = []
    # update 1 (after 2 steps): window [0, 2) with W0, loss (CE_0 + CE_1) / 2
    outs, _ = _run(b, x, s0, 0, 2)
    losses.append(ce(outs, [0, 1], 0))
    _sgd(b, losses[-1], lr)
    # update 2 (after 4): window [0, 4) from s0 with W1, loss (CE_2 + CE_3) / 2
    outs, states = _run(b, x, s0, 0, 4)
    losses.append(ce(outs, [2, 3], 0))
    h2 = _detach(states[1])  # state after 2 steps, computed with W1
    _sgd(b, losses[-1], lr)
    # update 3 (after 6): window [2, 6) from h2 with W2, loss (CE_4 + CE_5) / 2
    outs, states = _run(b, x, h2, 2, 6)
    losses.append(ce(outs, [4, 5], 2))
    h3 = _detach(states[0])  # state after 3 steps, computed with W2
    _sgd(b, losses[-1], lr)
    # update 4 (after 7, a short chunk): window [3, 7) from h3 with W3, loss CE_6
    outs, _ = _run(b, x, h3, 3, 7)
    losses.append(ce(outs, [6], 3))
    _sgd(b, losses[-1], lr)

    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    expected_loss = (2 * losses[0] + 2 * losses[1] + 2 * losses[2] + losses[3]) / 7
    assert result.loss == pytest.approx(float(expected_loss.detach()), rel=1e-12)
    # and it is not BPTT of the same loss
    grads = autograd_gradients(c, x, y, "all")
    with torch.no_grad():
        for name, p in c.named_parameters():
            p -= lr * grads[name]
    assert any(
        not torch.allclose(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_tbptt_validation() -> None:
    model = make_model("rnn")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="interval"):
        TBPTT(model, opt, n=3, interval=5)
    with pytest.raises(ConfigError, match="window n"):
        TBPTT(model, opt, n=0)
    with pytest.raises(ConfigError, match="loss_steps"):
        TBPTT(model, opt, n=3, loss_steps="every")
    assert TBPTT(model, opt, n=4).interval == 4


# --------------------------------------------------------------------------------------------
# (3) FO-BPTT
# --------------------------------------------------------------------------------------------

BASES = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "sgd_momentum": lambda p: torch.optim.SGD(
        p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3
    ),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


def _toy_loss(params: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    w, b = params
    return (torch.sin(w @ target) + b).pow(2).sum() + 0.1 * w.pow(4).sum()


@pytest.mark.parametrize("base", list(BASES))
def test_fractional_order_one_is_the_base_optimizer_bit_for_bit(base: str) -> None:
    gen = torch.Generator().manual_seed(0)
    a = [torch.randn(4, 3, generator=gen).requires_grad_(), torch.randn(4, generator=gen)]
    a[1].requires_grad_()
    b = [p.detach().clone().requires_grad_() for p in a]
    plain = BASES[base](a)
    fractional = FractionalOptimizer(BASES[base](b), alpha=1.0, eps=1e-3)
    for _ in range(6):
        target = torch.randn(3, generator=gen)
        for params, opt in ((a, plain), (b, fractional)):
            opt.zero_grad()
            _toy_loss(params, target).backward()
            opt.step()
        for p, q in zip(a, b, strict=True):
            assert torch.equal(p, q)


def test_fobptt_order_one_is_bptt_bit_for_bit() -> None:
    a = make_model("gru")
    b = copy.deepcopy(a)
    ra = FOBPTT(a, torch.optim.Adam(a.parameters(), lr=1e-2), alpha=1.0)
    rb = BPTT(b, torch.optim.Adam(b.parameters(), lr=1e-2))
    for seed in range(3):
        x, y = make_batch("gru", seed=seed)
        assert ra.train_batch(x, y).loss == rb.train_batch(x, y).loss
        assert_same_params(a, b)


def test_fractional_factor_on_a_hand_example() -> None:
    """Two SGD steps with alpha = 0.6, eps = 1e-3, computed with ``math`` by hand."""
    alpha, eps, lr = 0.6, 1e-3, 0.1
    theta0 = [0.5, -1.0, 2.0]
    g0, g1 = [1.0, -2.0, 0.0], [0.5, 0.25, -3.0]
    p = torch.tensor(theta0, dtype=F64, requires_grad=True)
    opt = FractionalOptimizer(torch.optim.SGD([p], lr=lr), alpha=alpha, eps=eps)

    gamma = math.gamma(2 - alpha)  # Gamma(1.4) = 0.88726...
    first = eps ** (1 - alpha) / gamma  # theta_{-1} = theta_0: |dtheta| = 0 everywhere
    theta1 = [t - lr * g * first for t, g in zip(theta0, g0, strict=True)]
    factors = [
        (abs(t1 - t0) + eps) ** (1 - alpha) / gamma for t0, t1 in zip(theta0, theta1, strict=True)
    ]
    theta2 = [t - lr * g * f for t, g, f in zip(theta1, g1, factors, strict=True)]

    p.grad = torch.tensor(g0, dtype=F64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor(theta1, dtype=F64), rtol=1e-15, atol=0)
    p.grad = torch.tensor(g1, dtype=F64)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor(theta2, dtype=F64), rtol=1e-15, atol=0)
    # the third weight did not move in step 1, so its step-2 factor is the first-step one
    assert factors[2] == pytest.approx(first, rel=1e-15)


@pytest.mark.parametrize("alpha", [0.3, 0.75, 1.25, 1.7, 1.99])
def test_fractional_step_follows_the_gradient_sign(alpha: float) -> None:
    gen = torch.Generator().manual_seed(3)
    p = torch.randn(50, generator=gen, dtype=F64).requires_grad_()
    opt = FractionalOptimizer(torch.optim.SGD([p], lr=0.01), alpha=alpha, eps=1e-3)
    for k in range(4):
        g = torch.randn(50, generator=gen, dtype=F64)
        if k == 2:
            g[:10] = 0.0  # those weights will not move: dtheta = 0 at the next step
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        assert torch.isfinite(p.grad).all() and torch.isfinite(p).all()
        moved = g != 0
        assert torch.equal(torch.sign(p.grad), torch.sign(g))  # the factor is positive
        assert torch.equal(torch.sign(p.detach() - before)[moved], -torch.sign(g)[moved])


@pytest.mark.parametrize("alpha", [1.5, 1.99])
def test_fractional_factor_is_finite_when_a_weight_did_not_move(alpha: float) -> None:
    """``0^(1 - alpha)`` is infinite for alpha > 1; eps keeps it at ``eps^(1-alpha)/Gamma``."""
    eps = 1e-12
    p = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    opt = FractionalOptimizer(torch.optim.SGD([p], lr=1e-12), alpha=alpha, eps=eps)
    bound = eps ** (1 - alpha) / math.gamma(2 - alpha)
    for grad in ([1.0, 0.0], [1.0, -1.0]):  # step 2: the second weight has dtheta = 0
        p.grad = torch.tensor(grad, dtype=F64)
        opt.step()
        assert torch.isfinite(p.grad).all()
        assert float(p.grad[1]) == pytest.approx(grad[1] * bound, rel=1e-12)
    assert math.isfinite(bound)


@settings(max_examples=60, deadline=None)
@given(
    alpha=st.floats(0.01, 1.99),
    delta=st.floats(-10.0, 10.0, allow_subnormal=False),
    eps=st.floats(1e-12, 1.0),
)
def test_fractional_factor_formula(alpha: float, delta: float, eps: float) -> None:
    got = float(fractional_factor(torch.tensor([delta], dtype=F64), alpha, eps)[0])
    expected = (abs(delta) + eps) ** (1 - alpha) / math.gamma(2 - alpha)
    assert math.isfinite(got) and got > 0
    assert got == pytest.approx(expected, rel=1e-12)


def test_fractional_validation() -> None:
    p = [torch.zeros(2, requires_grad=True)]
    for alpha in (0.0, 2.0, -0.5, 2.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"open interval \(0, 2\)"):
            FractionalOptimizer(torch.optim.SGD(p, lr=0.1), alpha=alpha)
    for eps in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="eps must be a positive finite number"):
            FractionalOptimizer.build(p, torch.optim.SGD, alpha=0.5, eps=eps, lr=0.1)
    with pytest.raises(ConfigError, match="must be numbers"):
        FractionalOptimizer(torch.optim.SGD(p, lr=0.1), alpha="high")
    with pytest.raises(ConfigError, match="wraps a torch.optim.Optimizer"):
        FractionalOptimizer(object())
    frac = FractionalOptimizer(torch.optim.SGD(p, lr=0.1), alpha=0.5)
    with pytest.raises(ConfigError, match="already fractional"):
        FractionalOptimizer(frac)
    model = make_model("rnn")
    wrapped = FractionalOptimizer.build(model.parameters(), torch.optim.Adam, alpha=0.5, lr=0.1)
    with pytest.raises(ConfigError, match="one place"):
        FOBPTT(model, wrapped, alpha=0.7)
    with pytest.raises(CheckpointError, match="not saved by a FractionalOptimizer"):
        wrapped.load_state_dict(torch.optim.Adam(model.parameters()).state_dict())


def test_fractional_shares_param_groups_with_the_base() -> None:
    model = make_model("rnn")
    rule = FOBPTT(model, torch.optim.Adam(model.parameters(), lr=1e-2), alpha=1.3)
    for group in rule.optimizer.param_groups:  # what the trainer's LR schedule does
        group["lr"] = 0.123
    assert [g["lr"] for g in rule.optimizer.base.param_groups] == [0.123]


def test_fractional_state_dict_resumes_exactly() -> None:
    def build(seed_model):
        model = copy.deepcopy(seed_model)
        return model, FOBPTT(model, torch.optim.Adam(model.parameters(), lr=1e-2), alpha=1.3)

    start = make_model("lstm")
    a, ra = build(start)
    batches = [make_batch("lstm", seed=s) for s in range(6)]
    for x, y in batches[:3]:
        ra.train_batch(x, y)
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "optimizer": ra.optimizer.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    b, rb = build(start)
    b.load_state_dict(saved["model"])
    rb.optimizer.load_state_dict(saved["optimizer"])
    assert rb.optimizer.param_groups is rb.optimizer.base.param_groups
    for x, y in batches[3:]:
        assert ra.train_batch(x, y).loss == rb.train_batch(x, y).loss
    assert_same_params(a, b)


# --------------------------------------------------------------------------------------------
# (4) the BPTT reference recursion (algorithms.md section 6 / section 9 item 14)
# --------------------------------------------------------------------------------------------


class TinyRNN:
    """``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)``, ``y_t = W_oh h_t + b_o`` (phi = identity),
    ``L = (1/N) sum_{t in S} ||y*_t - y_t||^2`` over the loss steps ``S`` (N = |S| * n_out)."""

    def __init__(self) -> None:
        self.model = make_model("rnn", n_in=2, hidden=3, n_out=2, seed=5).to(F64)
        gen = torch.Generator().manual_seed(6)
        self.x = torch.randn(1, 6, 2, generator=gen, dtype=F64)
        self.target = torch.randn(6, 2, generator=gen, dtype=F64)

    def loss(self, steps: list[int]) -> torch.Tensor:
        outputs, _ = self.model(self.x)
        diff = outputs[0, steps] - self.target[steps]
        return diff.pow(2).sum() / diff.numel()

    def weights(self):
        cell = self.model.cells[0]
        return (
            cell.weight_ih.detach(),
            cell.weight_hh.detach(),
            self.model.readout.weight.detach(),
        )

    def hidden(self) -> list[torch.Tensor]:
        """``[h_{-1} = 0, h_0, ..., h_{T-1}]``."""
        with torch.no_grad():
            state = self.model.initial_state(1)
            hs = [state[0][0]]
            for t in range(self.x.shape[1]):
                _, state = self.model.step(self.x[:, t], state)
                hs.append(state[0][0])
        return hs

    def output_errors(self, steps: list[int]) -> list[torch.Tensor]:
        """``e_t = dL/dy_t = (2/N)(y_t - y*_t)`` on loss steps, 0 elsewhere."""
        with torch.no_grad():
            outputs, _ = self.model(self.x)
        n = len(steps) * outputs.shape[2]
        return [
            (2.0 / n) * (outputs[0, t] - self.target[t])
            if t in steps
            else torch.zeros(2, dtype=F64)
            for t in range(self.x.shape[1])
        ]

    def delta_gradients(self, steps: list[int]) -> dict[str, torch.Tensor]:
        """The recursion ``delta_t = g_t + W_hh^T (delta_{t+1} * (1 - h_{t+1}^2))``."""
        w_xh, w_hh, w_oh = self.weights()
        hs = self.hidden()  # hs[t + 1] = h_t
        errors = self.output_errors(steps)
        steps_total = self.x.shape[1]
        grads = {
            "w_xh": torch.zeros_like(w_xh),
            "w_hh": torch.zeros_like(w_hh),
            "b_h": torch.zeros(3, dtype=F64),
            "w_oh": torch.zeros_like(w_oh),
            "b_o": torch.zeros(2, dtype=F64),
        }
        delta_next = torch.zeros(3, dtype=F64)  # delta_T = 0
        h_next = torch.zeros(3, dtype=F64)  # (multiplies delta_T only)
        for t in reversed(range(steps_total)):
            h, h_prev = hs[t + 1], hs[t]
            g = w_oh.T @ errors[t]
            delta = g + w_hh.T @ (delta_next * (1 - h_next**2))
            local = delta * (1 - h**2)
            grads["w_hh"] += torch.outer(local, h_prev)
            grads["w_xh"] += torch.outer(local, self.x[0, t])
            grads["b_h"] += local
            grads["w_oh"] += torch.outer(errors[t], h)
            grads["b_o"] += errors[t]
            delta_next, h_next = delta, h
        return grads

    def seed_formula_w_hh(self, steps: list[int], final_loss_only: bool) -> torch.Tensor:
        """The seed's generic formula for dL/dW_hh (t = T - 1)::

            sum_i dL/dy_{t-i} dy_{t-i}/dh_{t-i} (prod_{j=t-i+1}^{t} dh_j/dh_{j-1}) d+h_{t-i}/dW_hh

        With ``final_loss_only`` the error ``dL_t/dh_t`` of the final step is used for every
        ``i`` instead, which is the correct single-loss form.
        """
        w_xh, w_hh, w_oh = self.weights()
        hs = self.hidden()
        errors = self.output_errors(steps)
        last = self.x.shape[1] - 1
        grad = torch.zeros_like(w_hh)
        for i in range(last + 1):
            k = last - i
            row = w_oh.T @ errors[last if final_loss_only else k]
            for j in range(last, k, -1):  # row . dh_t/dh_{t-1} ... dh_{k+1}/dh_k
                row = (row * (1 - hs[j + 1] ** 2)) @ w_hh
            grad += torch.outer(row * (1 - hs[k + 1] ** 2), hs[k])
        return grad

    def autograd(self, steps: list[int]) -> dict[str, torch.Tensor]:
        cell = self.model.cells[0]
        params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
        params += [self.model.readout.weight, self.model.readout.bias]
        g = torch.autograd.grad(self.loss(steps), params)
        return {"w_xh": g[0], "w_hh": g[1], "b_h": g[2], "w_oh": g[4], "b_o": g[5], "b_hh": g[3]}

    def central_differences(self, steps: list[int], h: float = 1e-6) -> dict[str, torch.Tensor]:
        cell = self.model.cells[0]
        named = {
            "w_xh": cell.weight_ih,
            "w_hh": cell.weight_hh,
            "b_h": cell.bias_ih,
            "w_oh": self.model.readout.weight,
            "b_o": self.model.readout.bias,
        }
        out = {}
        with torch.no_grad():
            for name, p in named.items():
                grad = torch.zeros_like(p)
                flat, gflat = p.view(-1), grad.view(-1)
                for i in range(flat.numel()):
                    keep = float(flat[i])
                    flat[i] = keep + h
                    up = float(self.loss(steps))
                    flat[i] = keep - h
                    down = float(self.loss(steps))
                    flat[i] = keep
                    gflat[i] = (up - down) / (2 * h)
                out[name] = grad
        return out


def test_delta_recursion_matches_autograd_and_central_differences() -> None:
    net = TinyRNN()
    steps = [1, 3, 4, 5]
    by_delta = net.delta_gradients(steps)
    by_autograd = net.autograd(steps)
    by_fd = net.central_differences(steps)
    torch.testing.assert_close(by_autograd["b_hh"], by_autograd["b_h"], rtol=0, atol=0)
    for name, g in by_delta.items():
        assert g.abs().max() > 1e-3, name
        torch.testing.assert_close(g, by_autograd[name], rtol=1e-12, atol=1e-14, msg=name)
        torch.testing.assert_close(g, by_fd[name], rtol=1e-6, atol=1e-8, msg=name)


def test_seed_generic_formula_is_wrong_with_several_loss_steps() -> None:
    net = TinyRNN()
    several = [1, 3, 4, 5]
    exact = net.autograd(several)["w_hh"]
    seed = net.seed_formula_w_hh(several, final_loss_only=False)
    assert not torch.allclose(seed, exact, rtol=1e-3, atol=1e-6)
    # with one loss at the final step, the product form with dL_t/dh_t is right
    final = [5]
    exact_final = net.autograd(final)["w_hh"]
    corrected = net.seed_formula_w_hh(final, final_loss_only=True)
    torch.testing.assert_close(corrected, exact_final, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------
# (5) every rule learns a small memory task
# --------------------------------------------------------------------------------------------


def final_loss(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        outputs, _ = model(x)
    return float(F.cross_entropy(outputs[:, -1], y))


def train_on_task(rule_cls, kind: str, batches: int, lr: float, hidden: int, batch: int, **kw):
    torch.manual_seed(1)
    model = SpikingRNN(2, hidden, 2, input_gain=3.0) if kind == "lif" else None
    model = model or GatedRNN(kind, 2, hidden, 2)
    rule = rule_cls(model, torch.optim.Adam(model.parameters(), lr=lr), **kw)
    gen = torch.Generator().manual_seed(1)
    x_test, y_test = which_fired_first(256, torch.Generator().manual_seed(99))
    before = final_loss(model, x_test, y_test)
    for _ in range(batches):
        rule.train_batch(*which_fired_first(batch, gen))
    return before, final_loss(model, x_test, y_test)


CHANCE = math.log(2)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "lif"])
def test_tbptt_learns(kind: str) -> None:
    before, after = train_on_task(TBPTT, kind, 100, 1e-2, 16, 32, n=6, interval=3, loss_steps="all")
    assert before > 0.5 * CHANCE
    assert after < 0.3 * CHANCE, f"loss {after:.3f} (chance {CHANCE:.3f})"


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "lif"])
@pytest.mark.parametrize("alpha", [0.75, 1.25])
def test_fobptt_learns(kind: str, alpha: float) -> None:
    _, after = train_on_task(FOBPTT, kind, 60, 3e-2, 16, 32, alpha=alpha)
    assert after < 0.3 * CHANCE, f"loss {after:.3f} (chance {CHANCE:.3f})"


def test_rtrl_learns_tiny_rnn() -> None:
    _, after = train_on_task(RTRL, "rnn", 40, 3e-2, 6, 16)
    assert after < 0.3 * CHANCE, f"loss {after:.3f} (chance {CHANCE:.3f})"
