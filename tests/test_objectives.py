"""Per-step targets and regression: every rule scores steps with the same objective.

* the analytic loss gradient (used by e-prop) equals autograd for each kind of target;
* RTRL (exact, forward mode) equals BPTT's autograd gradient for per-step labels and regression;
* T-BPTT with a full window is BPTT, and FPTT's first update with one chunk is BPTT bit for bit;
* e-prop on a tanh RNN with regression targets equals autograd with the one-step truncation;
* FPP stores each step's own target; bad targets and loss-step settings fail with clear errors;
* the trainer reports the task's metric (MSE for regression) and learns a small regression task.
"""

from __future__ import annotations

import copy

import pytest
import torch

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.learning.bptt import BPTT
from neurofptt.learning.eprop import eprop_gradients
from neurofptt.learning.fpp import FPP
from neurofptt.learning.fptt import FPTT
from neurofptt.learning.objectives import metric, step_loss, step_loss_and_grad
from neurofptt.learning.rtrl import rtrl_gradients
from neurofptt.learning.tbptt import TBPTT
from neurofptt.learning.trainer import TrainConfig, evaluate, fit
from neurofptt.models.conventional import GatedRNN
from neurofptt.tasks.base import SequenceDataset, TaskData

F64 = torch.float64
PER_STEP = ["label_per_step", "regression"]


def make_batch(target: str, batch: int = 3, steps: int = 6, n_in: int = 2, n_out: int = 2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, n_in, generator=gen, dtype=F64)
    if target == "regression":
        y = torch.randn(batch, steps, n_out, generator=gen, dtype=F64)
    elif target == "label_per_step":
        y = torch.randint(0, n_out, (batch, steps), generator=gen)
    else:
        y = torch.randint(0, n_out, (batch,), generator=gen)
    return x, y


def make_model(kind: str = "rnn", seed: int = 0, n_in: int = 2, n_out: int = 2):
    torch.manual_seed(seed)
    return GatedRNN(kind, n_in, 4, n_out).to(F64)


def bptt_gradients(model, x, y, target):
    rule = BPTT(model, torch.optim.SGD(model.parameters(), lr=0.0), target=target)
    outputs, _ = model(x)
    loss = rule.sequence_loss(outputs, y)
    names = [n for n, _ in model.named_parameters()]
    return dict(zip(names, torch.autograd.grad(loss, list(model.parameters())), strict=True))


@pytest.mark.parametrize("target", ["label", *PER_STEP])
def test_analytic_loss_gradient_equals_autograd(target):
    x, y = make_batch(target)
    out = torch.randn(3, 2, dtype=F64, requires_grad=True)
    y_t = y if target == "label" else y[:, 2]
    loss = 0.7 * step_loss(out, y_t, target)
    (want,) = torch.autograd.grad(loss, out)
    value, grad = step_loss_and_grad(out.detach(), y_t, target, 0.7)
    assert value == pytest.approx(float(loss.detach()), rel=1e-12)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("target", PER_STEP)
def test_rtrl_equals_bptt_for_per_step_targets(kind, target):
    model = make_model(kind)
    x, y = make_batch(target)
    got = rtrl_gradients(model, x, y, "all", target=target)
    want = bptt_gradients(model, x, y, target)
    for name, g in want.items():
        assert g.abs().max() > 0, name
        torch.testing.assert_close(got[name], g, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("target", PER_STEP)
def test_tbptt_full_window_is_bptt_for_per_step_targets(target):
    a = make_model("gru")
    b = copy.deepcopy(a)
    ra = TBPTT(a, torch.optim.SGD(a.parameters(), lr=0.1), n=6, loss_steps="all", target=target)
    rb = BPTT(b, torch.optim.SGD(b.parameters(), lr=0.1), target=target)
    x, y = make_batch(target)
    res_a, res_b = ra.train_batch(x, y), rb.train_batch(x, y)
    assert res_a.loss == pytest.approx(res_b.loss, rel=1e-12)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("target", PER_STEP)
def test_fptt_first_update_with_one_chunk_is_bptt_bit_for_bit(target):
    """W_bar = W and an empty memory make the first regulariser gradient exactly zero."""
    a = make_model("lstm")
    b = copy.deepcopy(a)
    ra = FPTT(a, torch.optim.Adam(a.parameters(), lr=1e-2), period=6, target=target)
    rb = BPTT(b, torch.optim.Adam(b.parameters(), lr=1e-2), target=target)
    x, y = make_batch(target)
    res_a, res_b = ra.train_batch(x, y), rb.train_batch(x, y)
    assert res_a.loss == res_b.loss
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_rnn_eprop_regression_equals_one_step_truncation():
    model = make_model("rnn", seed=3, n_in=2, n_out=2)
    x, y = make_batch("regression", steps=7, seed=4)
    cell = model.cells[0]
    h = torch.zeros(x.shape[0], 4, dtype=F64)
    loss = 0.0
    for t in range(x.shape[1]):
        h = cell(x[:, t], h.detach())
        loss = loss + step_loss(model.readout(h), y[:, t], "regression") / x.shape[1]
    params = dict(model.named_parameters())
    want = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    got = eprop_gradients(model, x, y, loss_steps="all", target="regression")
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-13, msg=name)


def test_fpp_buffer_holds_each_steps_target():
    model = make_model("gru")
    rule = FPP(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        loss_steps="all",
        updates=1,
        target="regression",
    )
    x, y = make_batch("regression", batch=2, steps=5)
    rule.train_batch(x, y)
    # transitions are pushed step by step, batch rows in order
    stored = rule.buffer.label[:10].reshape(5, 2, 2).transpose(0, 1)
    assert torch.equal(stored, y)


@pytest.mark.parametrize("rule_cls", [TBPTT, FPP])
def test_per_step_targets_need_every_step_in_the_loss(rule_cls):
    model = make_model()
    with pytest.raises(ConfigError, match="set train.*loss_steps = 'all'"):
        rule_cls(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loss_steps="last",
            target="regression",
        )


def test_targets_of_the_wrong_shape_are_refused():
    model = make_model()
    rule = BPTT(model, torch.optim.SGD(model.parameters(), lr=0.1), target="regression")
    x, y = make_batch("label")
    with pytest.raises(ShapeError, match="'regression' targets must be a float tensor"):
        rule.train_batch(x, y)
    with pytest.raises(ConfigError, match="unknown target kind"):
        BPTT(model, torch.optim.SGD(model.parameters(), lr=0.1), target="ranking")


def sine_task(n: int = 96, steps: int = 20) -> TaskData:
    gen = torch.Generator().manual_seed(0)
    phase = torch.rand(n, 1, generator=gen) * 6.283
    s = torch.sin(0.5 * torch.arange(steps + 1) + phase)
    x, y = s[:, :-1, None], s[:, 1:, None]
    half = n // 2
    return TaskData(
        "sine",
        SequenceDataset(x[:half], y[:half]),
        SequenceDataset(x[half:], y[half:]),
        n_out=1,
        target="regression",
    )


def test_fit_reports_mse_and_learns_next_value_regression(tmp_path):
    task = sine_task()
    torch.manual_seed(0)
    model = GatedRNN("gru", 1, 16, 1)
    before = evaluate(model, task.test, "regression")
    cfg = TrainConfig(
        rule="fobptt",
        model="gru",
        epochs=15,
        batch_size=16,
        lr=1e-2,
        weight_decay=0.0,
        lr_schedule="constant",
        qat_epochs=0,
    )
    history = fit(model, task, cfg, tmp_path / "ck.pt", progress=False)
    assert set(history[-1]) == {"epoch", "train_loss", "test_mse"}
    outputs, _ = model(task.test.x)
    assert history[-1]["test_mse"] == pytest.approx(metric(outputs, task.test.y, "regression"))
    assert history[-1]["test_mse"] < 0.1 * before
