"""Per-step labels with ``-1`` gaps ("no target at this step") in every rule.

* the scoring: which labelled steps ``loss_steps`` scores, and step weights ``n_t / N`` that are
  exactly today's weights when every step is labelled;
* each rule family's gradient with gaps equals autograd's gradient of the masked loss (the mean
  cross-entropy over the scored pairs): BPTT, T-BPTT (full and truncated windows), RTRL, e-prop
  on a network without recurrence, FPP's target loss, and FPTT by hand on a 3-neuron network
  where an unlabelled step makes no update;
* a fully labelled batch gives exactly today's numbers: the per-step path equals the sequence
  label path bit for bit, and BPTT's loss is today's formula;
* predictions over the supervised steps, ``evaluate`` over batches with different gaps, and
  every rule training a task with gaps built by ``from_arrays``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from simulators import needs_icarus

from neurofptt.errors import ShapeError
from neurofptt.flow import onchip_train
from neurofptt.flow.onchip_train import train_onchip
from neurofptt.hdl import EventKind, LifCore, learn_event_layout
from neurofptt.learning.bptt import BPTT
from neurofptt.learning.eprop import EProp, eprop_gradients
from neurofptt.learning.fpp import FPP
from neurofptt.learning.fptt import FPTT
from neurofptt.learning.objectives import (
    loss_scoring,
    metric,
    scored_steps,
    step_loss,
    step_loss_and_grad,
    supervised_predictions,
    uniform_weights,
)
from neurofptt.learning.registry import MODELS, RULES
from neurofptt.learning.rtrl import RTRL, rtrl_gradients
from neurofptt.learning.tbptt import TBPTT
from neurofptt.learning.trainer import evaluate
from neurofptt.models.conventional import GatedRNN
from neurofptt.models.spiking import SpikingRNN
from neurofptt.onchip import (
    MATRICES,
    LearningState,
    learning_step,
    random_network,
    run_sample,
    step_schedule,
)
from neurofptt.quant import HardwareConfig, golden_run
from neurofptt.quant.config import LearningConfig
from neurofptt.tasks import from_arrays
from neurofptt.tasks.base import SequenceDataset, TaskData
from neurofptt.verify import run_rtl_learning
from neurofptt.verify.learning import compare_snapshot, decode_dump, golden_learning_run
from neurofptt.verify.streams import StreamBench, cycle_budget, frame_run, run_amaranth, unpack

F64 = torch.float64
B, T, N_IN, N_OUT = 4, 6, 3, 3

#: labels with gaps: a label known only at the end, a recall window, scattered labels of
#: several classes, and a fully labelled sample
GAPS = torch.tensor(
    [
        [-1, -1, -1, -1, -1, 2],
        [-1, 1, 1, 1, -1, -1],
        [0, -1, 2, -1, 1, -1],
        [1, 0, 2, 2, 0, 1],
    ]
)


def make_model(kind: str = "rnn", seed: int = 0, hidden: int = 4) -> GatedRNN:
    torch.manual_seed(seed)
    return GatedRNN(kind, N_IN, hidden, N_OUT).to(F64)


def make_x(seed: int = 0, batch: int = B, steps: int = T) -> torch.Tensor:
    return torch.randn(batch, steps, N_IN, generator=torch.Generator().manual_seed(seed), dtype=F64)


def last_labelled(y: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The scored mask of "the last ``k`` labelled steps of each sample", by a plain loop."""
    mask = torch.zeros_like(y, dtype=torch.bool)
    for b in range(y.shape[0]):
        for t in [t for t in range(y.shape[1]) if y[b, t] >= 0][-k:]:
            mask[b, t] = True
    return mask


def masked_loss(outputs: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference objective: mean cross-entropy over the scored pairs (sample, step)."""
    return F.cross_entropy(outputs[mask], y[mask])


def autograd_gradients(model, x, y, mask) -> dict[str, torch.Tensor]:
    outputs, _ = model(x)
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(masked_loss(outputs, y, mask), list(params.values()))
    return dict(zip(params, grads, strict=True))


def assert_close(got: dict, want: dict, rtol: float = 1e-10) -> None:
    assert set(got) == set(want)
    for name, g in want.items():
        scale = float(g.abs().max())
        torch.testing.assert_close(got[name], g, rtol=rtol, atol=rtol * scale, msg=name)


def sgd_rule(cls, model, lr=0.1, **kw):
    return cls(model, torch.optim.SGD(model.parameters(), lr=lr), clip=0.0, **kw)


# -- the scoring ---------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_steps, k", [("all", None), ("last", 1), (2, 2)])
def test_scored_steps_pick_each_samples_labelled_steps(loss_steps, k):
    labelled = GAPS >= 0
    want = labelled if k is None else last_labelled(GAPS, k)
    assert torch.equal(scored_steps(labelled, loss_steps), want)
    scoring = loss_scoring(GAPS, "label_per_step", loss_steps, T)
    assert scoring.counts == want.sum(0).tolist()
    assert scoring.weights == [n / int(want.sum()) for n in scoring.counts]
    assert torch.equal(scoring.targets >= 0, want)
    assert torch.equal(scoring.targets[want], GAPS[want])


@pytest.mark.parametrize("loss_steps", ["all", "last", 1, 3, 9])
def test_fully_labelled_weights_are_todays_exactly(loss_steps):
    for steps in (1, 7, 49, 100):
        y = torch.zeros(5, steps, dtype=torch.long)
        scoring = loss_scoring(y, "label_per_step", loss_steps, steps)
        assert scoring.weights == uniform_weights(steps, loss_steps)  # ==, not approx
        scored = torch.tensor(scoring.weights) > 0
        assert torch.equal(scoring.targets >= 0, scored.expand(5, steps))


def test_step_loss_and_its_gradient_skip_unlabelled_samples():
    out = torch.randn(4, N_OUT, dtype=F64, requires_grad=True)
    y_t = torch.tensor([2, -1, 0, -1])
    loss = step_loss(out, y_t, "label_per_step")
    want = F.cross_entropy(out[[0, 2]], y_t[[0, 2]])
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-14)
    (grad,) = torch.autograd.grad(0.3 * loss, out)
    value, got = step_loss_and_grad(out.detach(), y_t, "label_per_step", 0.3)
    assert value == pytest.approx(0.3 * float(want.detach()), rel=1e-14)
    torch.testing.assert_close(got, grad, rtol=1e-12, atol=1e-15)
    assert not got[[1, 3]].any()
    empty = step_loss(out, torch.full((4,), -1), "label_per_step")
    assert float(empty.detach()) == 0.0 and empty.requires_grad  # no NaN from an empty mean


# -- gradients with gaps equal autograd of the masked loss ---------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_bptt_gradient_is_the_masked_loss_gradient(kind):
    model = make_model(kind)
    x = make_x()
    rule = sgd_rule(BPTT, model, target="label_per_step")
    outputs, _ = model(x)
    loss = rule.sequence_loss(outputs, GAPS)
    torch.testing.assert_close(loss, masked_loss(outputs, GAPS, GAPS >= 0), rtol=1e-13, atol=0)
    params = dict(model.named_parameters())
    got = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    assert_close(got, autograd_gradients(model, x, GAPS, GAPS >= 0))


@pytest.mark.parametrize("loss_steps", ["all", "last"])
def test_full_window_tbptt_is_one_step_on_the_masked_loss(loss_steps):
    a = make_model("gru")
    b = copy.deepcopy(a)
    x = make_x(1)
    mask = GAPS >= 0 if loss_steps == "all" else last_labelled(GAPS)
    want = autograd_gradients(b, x, GAPS, mask)
    rule = sgd_rule(TBPTT, a, lr=0.5, n=T, loss_steps=loss_steps, target="label_per_step")
    result = rule.train_batch(x, GAPS)
    with torch.no_grad():
        want_loss = float(masked_loss(b(x)[0], GAPS, mask))
    assert result.loss == pytest.approx(want_loss, rel=1e-12)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q - 0.5 * want[name], rtol=1e-12, atol=1e-14, msg=name)


def test_truncated_tbptt_chunks_descend_their_masked_losses():
    """n = k = 2: each chunk descends the mean over its own scored pairs, from the detached
    state; the chunk of steps 4-5 holds labels only in sample 3 and sample 2 at step 4."""
    a = make_model("rnn")
    b = copy.deepcopy(a)
    x, lr = make_x(2), 0.3
    rule = sgd_rule(TBPTT, a, lr=lr, n=2, loss_steps="all", target="label_per_step")
    rule.train_batch(x, GAPS)
    state = b.initial_state(B)
    for start in range(0, T, 2):
        state = tuple(s.detach() for s in state)
        outputs = []
        for t in range(start, start + 2):
            out, state = b.step(x[:, t], state)
            outputs.append(out)
        chunk_y = GAPS[:, start : start + 2]
        loss = masked_loss(torch.stack(outputs, 1), chunk_y, chunk_y >= 0)
        grads = torch.autograd.grad(loss, list(b.parameters()))
        with torch.no_grad():
            for p, g in zip(b.parameters(), grads, strict=True):
                p -= lr * g
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss_steps", ["all", "last"])
def test_rtrl_equals_autograd_of_the_masked_loss(loss_steps):
    model = make_model("lstm", hidden=3)
    x = make_x(3)
    mask = GAPS >= 0 if loss_steps == "all" else last_labelled(GAPS)
    got = rtrl_gradients(model, x, GAPS, loss_steps, target="label_per_step")
    assert_close(got, autograd_gradients(model, x, GAPS, mask), rtol=1e-9)


@pytest.mark.parametrize("loss_steps, k", [("all", None), ("last", 1), (2, 2)])
def test_eprop_without_recurrence_is_the_exact_masked_gradient(loss_steps, k):
    """With ``W_hh = 0`` no state depends on the recurrent weights' past, so e-prop's one-step
    truncation drops nothing: its gradient is the exact one of the masked loss."""
    model = make_model("rnn", seed=4)
    with torch.no_grad():
        model.cells[0].weight_hh.zero_()
    x = make_x(4)
    mask = GAPS >= 0 if k is None else last_labelled(GAPS, k)
    got = eprop_gradients(model, x, GAPS, loss_steps=loss_steps, target="label_per_step")
    assert_close(got, autograd_gradients(model, x, GAPS, mask))


def test_spiking_eprop_without_recurrence_is_the_masked_bptt_gradient():
    torch.manual_seed(5)
    model = SpikingRNN(N_IN, 5, N_OUT, beta=0.8, out_beta=0.7, input_gain=4.0).to(F64)
    with torch.no_grad():
        model.rec.fc_rec.weight.zero_()
    x = (make_x(5) > 0).to(F64)
    got = eprop_gradients(model, x, GAPS, loss_steps="all", target="label_per_step")
    want = autograd_gradients(model, x, GAPS, GAPS >= 0)
    # snntorch's surrogate rounds the gradient through a spike to float32
    assert_close(got, {n: want[n] for n in got}, rtol=1e-5)


def test_online_eprop_updates_only_on_steps_with_a_target():
    model = make_model("rnn")
    x = make_x(6)
    y = GAPS.clone()
    y[:, 3] = -1  # step 3 now has no target in any sample
    rule = sgd_rule(EProp, model, loss_steps="all", online=True, target="label_per_step")
    steps = []
    rule.optimizer.step = lambda *a, **k: steps.append(1)  # count the updates only
    rule.train_batch(x, y)
    assert len(steps) == int((y >= 0).any(0).sum()) == T - 1


def test_fpp_target_loss_is_the_mean_over_labelled_transitions():
    model = make_model("gru")
    rule = sgd_rule(FPP, model, updates=0, loss_steps="all", target="label_per_step")
    x = make_x(7)
    rule.train_batch(x, GAPS)
    n = B * T
    slots = torch.arange(n)
    labels, weights = rule.buffer.label[:n], rule.buffer.weight[:n]
    # pushed step by step, batch rows in order
    assert torch.equal(labels.reshape(T, B).T, GAPS)
    assert torch.equal(weights.reshape(T, B).T > 0, GAPS >= 0)
    _, target_loss = rule.losses(slots)
    buf = rule.buffer
    out, _ = model.step(buf.obs[slots], tuple(s[slots] for s in buf.s_prev))
    keep = labels >= 0
    want = F.cross_entropy(out[keep], labels[keep])
    torch.testing.assert_close(target_loss, want, rtol=1e-12, atol=0)


# -- FPTT by hand: an unlabelled step is no loss term and no update ------------------------------
W_IH = np.array([[0.9, -0.4], [0.3, 0.8], [-0.6, 0.5]])
W_HH = np.array([[0.2, -0.5, 0.1], [0.4, 0.1, -0.3], [-0.2, 0.6, 0.3]])
B_IH, B_HH = np.array([0.1, -0.2, 0.05]), np.array([0.0, 0.1, -0.1])
W_O, B_O = np.array([[0.7, -0.4, 0.3], [-0.2, 0.8, 0.5]]), np.array([0.05, -0.05])
X3 = np.array([[[1.0, -0.5], [0.2, 0.7], [-0.3, 0.9]], [[0.4, 0.4], [-1.0, 0.3], [0.6, -0.2]]])
Y3 = torch.tensor([[1, -1, 0], [-1, -1, 1]])  # step 1 has no target at all
LR, ALPHA = 0.2, 0.5


def three_neuron_rnn() -> GatedRNN:
    model = GatedRNN("rnn", 2, 3, 2).to(F64)
    values = (W_IH, W_HH, B_IH, B_HH, W_O, B_O)
    with torch.no_grad():
        for p, v in zip(model.parameters(), values, strict=True):
            p.copy_(torch.from_numpy(v))
    return model


def hand_forward(w, h_prev, x):
    w_ih, w_hh, b_ih, b_hh, w_o, b_o = w
    h = np.tanh(x @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh)
    return h, h @ w_o.T + b_o


def hand_step(w, h_prev, x, y):
    """One tanh step from a detached state; the masked mean cross-entropy's gradients."""
    h, o = hand_forward(w, h_prev, x)
    p = np.exp(o - o.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    mask = (y >= 0).astype(float)[:, None]
    g_o = mask * (p - np.eye(2)[np.maximum(y, 0)]) / mask.sum()
    g_a = (g_o @ w[4]) * (1 - h**2)
    grads = (g_a.T @ x, g_a.T @ h_prev, g_a.sum(0), g_a.sum(0), g_o.T @ h, g_o.sum(0))
    return grads, h


def test_fptt_unlabelled_step_is_no_loss_term_by_hand():
    """Dual form, one update per step: step 0 and step 2 update, step 1 (no target in any
    sample) only carries the state: no optimizer step, ``W_bar`` and ``lam`` stay."""
    model = three_neuron_rnn()
    rule = sgd_rule(FPTT, model, lr=LR, alpha=ALPHA, mix=0.5, period=1, target="label_per_step")
    rule.train_batch(torch.from_numpy(X3), Y3)
    y = Y3.numpy()
    w0 = (W_IH, W_HH, B_IH, B_HH, W_O, B_O)
    g1, h = hand_step(w0, np.zeros((2, 3)), X3[:, 0], y[:, 0])
    w1 = tuple(w - LR * g for w, g in zip(w0, g1, strict=True))  # regulariser 0 at W_bar = W
    lam1 = tuple(-ALPHA * (a - b) for a, b in zip(w1, w0, strict=True))
    bar1 = tuple(0.5 * b + 0.5 * a - m / (2 * ALPHA) for a, b, m in zip(w1, w0, lam1, strict=True))
    h, _ = hand_forward(w1, h, X3[:, 1])  # step 1: the state moves on, nothing else does
    g2, _ = hand_step(w1, h, X3[:, 2], y[:, 2])
    reg = tuple(ALPHA * (a - b) - m for a, b, m in zip(w1, bar1, lam1, strict=True))
    w2 = tuple(w - LR * (g + r) for w, g, r in zip(w1, g2, reg, strict=True))
    lam2 = tuple(m - ALPHA * (a - b) for m, a, b in zip(lam1, w2, bar1, strict=True))
    bar2 = tuple(
        0.5 * b + 0.5 * a - m / (2 * ALPHA) for a, b, m in zip(w2, bar1, lam2, strict=True)
    )
    assert np.abs(g2[1]).max() > 1e-3, "the example must exercise the recurrent gradient"
    for i, (name, p) in enumerate(model.named_parameters()):
        np.testing.assert_allclose(p.detach().numpy(), w2[i], rtol=0, atol=1e-13, err_msg=name)
        np.testing.assert_allclose(rule.running_mean[name].numpy(), bar2[i], rtol=0, atol=1e-13)
        np.testing.assert_allclose(rule.memory[name].numpy(), lam2[i], rtol=0, atol=1e-13)


# -- fully labelled: today's numbers -------------------------------------------------------------
def run_rule(cls, kind, target, y, **kw):
    """A rule of ``cls`` on a fresh seeded model after two batches: parameters and losses."""
    model = make_model(kind, seed=8)
    rule = cls(model, torch.optim.Adam(model.parameters(), lr=1e-2), target=target, **kw)
    losses = [rule.train_batch(make_x(s), y).loss for s in (9, 10)]
    return [p.detach().clone() for p in model.parameters()], losses


SAME_AS_LABEL = [
    (TBPTT, "gru", dict(n=3, loss_steps="all")),
    (TBPTT, "rnn", dict(n=4, interval=2, loss_steps="last")),
    (RTRL, "rnn", dict(loss_steps="all")),
    (RTRL, "gru", dict(loss_steps="last")),
    (EProp, "rnn", dict(loss_steps="all")),
    (EProp, "rnn", dict(loss_steps=2, online=True)),
    (EProp, "rnn", dict(loss_steps="last")),
    (FPP, "gru", dict(loss_steps="all", updates=2)),
    (FPP, "rnn", dict(loss_steps="last", updates=1)),
]


@pytest.mark.parametrize("cls, kind, kw", SAME_AS_LABEL)
def test_fully_labelled_per_step_path_equals_the_sequence_label_path(cls, kind, kw):
    """Per-step labels that repeat a sequence's label at every step take the masked path, the
    sequence label takes the path untouched by masks: bit for bit the same run."""
    label = torch.tensor([2, 0, 1, 1])
    want = run_rule(cls, kind, "label", label, **kw)
    got = run_rule(cls, kind, "label_per_step", label[:, None].expand(B, T).contiguous(), **kw)
    assert got[1] == want[1]
    for p, q in zip(got[0], want[0], strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("cls", [BPTT, FPTT])
def test_fully_labelled_bptt_and_fptt_keep_todays_loss(cls):
    """Today's per-step loss: the plain mean over the steps of each step's batch mean."""
    y = torch.randint(0, N_OUT, (B, T), generator=torch.Generator().manual_seed(1))
    a = make_model("lstm")
    b = copy.deepcopy(a)
    x = make_x(11)
    kw = {"period": T} if cls is FPTT else {}
    rule = cls(a, torch.optim.Adam(a.parameters(), lr=1e-2), target="label_per_step", **kw)
    result = rule.train_batch(x, y)
    outputs, _ = b(x)
    loss = sum(F.cross_entropy(outputs[:, t], y[:, t]) for t in range(T)) / T
    opt = torch.optim.Adam(b.parameters(), lr=1e-2)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
    opt.step()
    assert result.loss == float(loss.detach())
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


# -- predictions over the supervised steps and evaluation ----------------------------------------
def test_predictions_are_taken_over_the_supervised_steps():
    outputs = torch.zeros(B, T, N_OUT)
    outputs[0, 5] = torch.tensor([0.0, 1.0, 3.0])  # label at the end: read there (class 2)
    outputs[0, :5] = torch.tensor([9.0, 0.0, 0.0])  # unlabelled steps do not vote
    outputs[1, 1:4] = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 1.5, 0.0]])
    outputs[2, :, 2] = 1.0  # scattered labels of several classes: each step is a unit
    outputs[3, :, 0] = 1.0  # fully labelled: each step is a unit, as before
    predicted, true = supervised_predictions(outputs, GAPS)
    # sample 0: one unit; sample 1: one unit, summed window (2, 3, 0) -> class 1; then steps
    assert true.tolist() == [2, 1, 0, 2, 1, 1, 0, 2, 2, 0, 1]
    assert predicted.tolist() == [2, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0]
    assert metric(outputs, GAPS, "label_per_step") == pytest.approx(5 / 11)
    full = torch.randint(0, N_OUT, (B, T), generator=torch.Generator().manual_seed(2))
    today = float((outputs.argmax(-1) == full).float().mean())
    assert metric(outputs, full, "label_per_step") == today


def test_evaluate_weighs_batches_by_their_supervised_units():
    model = make_model("gru").float()
    y = torch.cat([GAPS, GAPS[[3]], GAPS[[0]], torch.full((1, T), -1)])
    data = SequenceDataset(make_x(12, batch=len(y)).float(), y)
    with torch.no_grad():
        whole = metric(model(data.x)[0], y, "label_per_step")
    for batch_size in (1, 2, 3, 7):
        assert evaluate(model, data, "label_per_step", batch_size) == pytest.approx(whole)


# -- every rule trains a task with gaps ----------------------------------------------------------
def gap_task(n: int = 10, steps: int = 8, seed: int = 0):
    """Spikes, and per-step labels with gaps: each sample labelled on a random window of one
    class, two samples on scattered steps of several classes."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, steps, N_IN)) < 0.4).astype(np.uint8)
    y = np.full((n, steps), -1, np.int64)
    for i in range(n):
        start = int(rng.integers(0, steps - 1))
        y[i, start : start + int(rng.integers(1, 3))] = i % N_OUT
    y[:2, ::3] = rng.integers(0, N_OUT, (2, len(range(0, steps, 3))))
    return from_arrays(x, y, x_test=x[:4], y_test=y[:4], n_classes=N_OUT, name="gaps")


RULE_MODELS = {"eprop": "lif", "fpp": "gru", "rtrl": "rnn"}


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_trains_on_gaps_and_skips_a_batch_without_targets(name):
    task = gap_task()
    assert task.target == "label_per_step" and bool((task.train.y < 0).any())
    torch.manual_seed(0)
    model = MODELS[RULE_MODELS.get(name, "gru")](N_IN, 5, N_OUT)
    cfg = RULES[name].Options()
    rule = RULES[name].from_options(
        model, torch.optim.Adam(model.parameters(), lr=1e-2), cfg, target=task.target
    )
    before = [p.detach().clone() for p in model.parameters()]
    result = rule.train_batch(task.train.x, task.train.y)
    assert np.isfinite(result.loss) and result.loss > 0
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert 0.0 <= evaluate(model, task.test, task.target) <= 1.0
    if name == "fpp":  # FPP's replayed updates keep learning from the buffer
        return
    after = [p.detach().clone() for p in model.parameters()]
    none = rule.train_batch(task.train.x[:3], torch.full((3, task.train.steps), -1))
    assert none.loss == 0.0
    for p, q in zip(model.parameters(), after, strict=True):
        assert torch.equal(p, q)


# -- on chip: golden model, host loop, framing, learning core -----------------------------------
def gap_hardware(mode: str) -> HardwareConfig:
    """A small learning core whose rates move many weights per update."""
    lc = LearningConfig(
        mode=mode,
        target=48,
        signal_shift=2,
        trace_bits=8,
        trace_frac_bits=2,
        signal_bits=10,
        psi_width_shift=5,
        psi_bits=2,
        lr_shift_in=4,
        lr_shift_rec=4,
        lr_shift_out=3,
        alpha_shift=2,
        wbar_bits=8,
        beta_ramp=True,  # for sequence labels only: per-step labels update with b_t = 0
        supervised_steps=2,  # likewise: the labels say where to learn
        feedback="random" if mode == "fptt" else "symmetric",
    )
    return HardwareConfig(
        n_in=4,
        n_rec=6,
        n_out=3,
        weight_bits=5,
        membrane_bits=9,
        frac_bits=2,
        leak_shift=2,
        out_leak_shift=1,
        threshold=16,
        w_in_shift=2,
        w_rec_shift=1,
        w_out_shift=1,
        lanes=2,
        learning=lc,
    )


#: per-step labels of the on-chip checks: a label at the end, scattered labels of two classes,
#: every step labelled, and no target at all
CHIP_LABELS = np.array(
    [[-1, -1, -1, -1, 2, 2], [-1, 1, -1, 0, -1, -1], [0, 1, 2, 0, 1, 2], [-1] * 6]
)


def chip_spikes(batch: int = 4, steps: int = 6, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((batch, steps, 4)) < 0.5).astype(np.uint8)


def manual_sample(net, state, x, labels, shifts):
    """The loop ``run_sample`` ran before per-step labels, with the labels and shifts given."""
    state = state.new_sample(net)
    readout = []
    for x_t, label, shift in zip(x, labels, shifts, strict=True):
        net, state = learning_step(net, state, x_t, label, shift)
        readout.append(state.neurons.o[0])
    return net, state, np.stack(readout)


def assert_same_run(a, b) -> None:
    for m in MATRICES:
        assert np.array_equal(a[0].matrix(m), b[0].matrix(m))
    assert a[1].updates == b[1].updates
    assert np.array_equal(a[2], b[2])


@pytest.mark.parametrize("mode", ["eprop", "fptt"])
def test_run_sample_learns_only_at_labelled_steps_toward_their_labels(mode):
    net = random_network(gap_hardware(mode), seed=1, spread=8)
    x = chip_spikes()
    state = LearningState.start(net)
    for b, labels in enumerate(CHIP_LABELS):
        shifts = [0 if label >= 0 else None for label in labels]
        want = manual_sample(net, state, x[b], [int(v) for v in labels], shifts)
        got = run_sample(net, state, x[b], labels)
        assert_same_run(got, want)
        assert got[1].updates - state.updates == int((labels >= 0).sum())
        net, state = got[0], got[1]
    assert state.updates == int((CHIP_LABELS >= 0).sum())


@pytest.mark.parametrize("mode", ["eprop", "fptt"])
def test_an_int_label_keeps_the_sequence_schedule(mode):
    net = random_network(gap_hardware(mode), seed=2, spread=8)
    state = LearningState.start(net)
    x = chip_spikes(seed=1)[0]
    schedule = step_schedule(net.config.learning, len(x))
    assert schedule == [None, None, None, None, 1, 0]  # last two steps, beta ramp
    want = manual_sample(net, state, x, [2] * len(x), schedule)
    assert_same_run(run_sample(net, state, x, 2), want)
    assert_same_run(run_sample(net, state, x, np.int64(2)), want)


def test_per_step_schedule_and_bad_labels():
    lc = gap_hardware("eprop").learning
    assert step_schedule(lc, 4, np.array([-1, 0, -1, 2])) == [None, 0, None, 0]
    with pytest.raises(ShapeError, match="one per step"):
        step_schedule(lc, 4, np.array([0, 1]))
    with pytest.raises(ShapeError, match="neither a class nor -1"):
        step_schedule(lc, 2, np.array([-2, 0]))


def chip_task(n: int = 24, steps: int = 6) -> TaskData:
    """A task with gaps whose classes the input says: each sample's channel ``c`` fires more,
    and the class ``c`` is labelled on the last two steps (some samples on scattered steps)."""
    rng = np.random.default_rng(3)
    classes = np.arange(n) % 3
    rate = np.full((n, steps, 4), 0.15)
    rate[np.arange(n), :, classes] = 0.8
    x = (rng.random((n, steps, 4)) < rate).astype(np.uint8)
    y = np.full((n, steps), -1, np.int64)
    y[:, -2:] = classes[:, None]
    y[::5, 1] = classes[::5]
    return from_arrays(x, y, x_test=x[:9], y_test=y[:9], n_classes=3, name="chip-gaps")


def test_host_loop_learns_per_step_labels_and_scores_supervised_units(monkeypatch):
    task = chip_task()
    net = random_network(gap_hardware("eprop"), seed=4, spread=8)
    sent = []
    real = onchip_train.run_sample

    def spy(net, state, x, label, **kw):
        sent.append(np.asarray(label).copy())
        return real(net, state, x, label, **kw)

    monkeypatch.setattr(onchip_train, "run_sample", spy)
    history = train_onchip(net, task, epochs=2, seed=0, val_fraction=0.2)
    assert all(label.shape == (task.train.steps,) for label in sent)  # the labels as they are
    assert len(sent) == 2 * history.train_samples
    test = task.test
    readout = golden_run(history.net, test.numpy_spikes()).readout
    want = metric(torch.from_numpy(readout), test.y, "label_per_step")
    assert history.test_accuracy == pytest.approx(want)
    held = set(history.val_indices.tolist())
    per_epoch = sum(int((task.train.y[i] >= 0).sum()) for i in range(24) if i not in held)
    assert history.state.updates == history.picked_epoch * per_epoch  # one per labelled step
    for record in history.epochs:
        assert 0.0 <= record["online_train_accuracy"] <= 1.0


def test_framing_sends_each_steps_label_only_where_it_learns():
    net = random_network(gap_hardware("fptt"), seed=5, spread=8)
    x = chip_spikes()
    trace = golden_learning_run(net, x, CHIP_LABELS)
    assert np.array_equal(trace.learn, CHIP_LABELS >= 0)
    assert not trace.shift.any()
    assert [(s.sample, s.step) for s in trace.snapshots] == [
        tuple(int(i) for i in bt) for bt in np.argwhere(CHIP_LABELS >= 0)
    ]
    layout = learn_event_layout(net.config)
    items = frame_run(layout, x, labels=CHIP_LABELS, learn=trace.learn, shift=trace.shift)
    fields_of = [unpack(layout, e.word) for e in items]
    steps = [f for f in fields_of if f["kind"] == EventKind.STEP.value]
    fields = np.array([[s["learn"], s["label"]] for s in steps]).reshape(4, 6, 2)
    assert np.array_equal(fields[..., 0], CHIP_LABELS >= 0)
    assert np.array_equal(fields[..., 1], np.maximum(CHIP_LABELS, 0))
    seq = golden_learning_run(net, x, np.array([2, 0, 1, 1]))  # sequence labels as before
    assert np.array_equal(seq.learn, np.tile([0, 0, 0, 0, 1, 1], (4, 1)).astype(bool))


@pytest.mark.parametrize("mode", ["eprop", "fptt"])
def test_learning_core_learns_per_step_labels_bit_for_bit(mode):
    """Amaranth simulator: the core fed the STEP fields of per-step labels with gaps; spikes,
    readouts and every weight and ``W_bar`` after every update equal the golden model."""
    net = random_network(gap_hardware(mode), seed=6, spread=8)
    x = chip_spikes(seed=2)
    trace = golden_learning_run(net, x, CHIP_LABELS)
    layout = learn_event_layout(net.config)
    items = frame_run(layout, x, labels=CHIP_LABELS, learn=trace.learn, shift=trace.shift)
    bench = StreamBench(net.config, *x.shape[:2], {})
    places = [(s.sample, s.step) for s in trace.snapshots]
    budget = cycle_budget(net.config, *x.shape[:2], updates=trace.updates)
    complete, _ = run_amaranth(LifCore(net), bench.benches(items, places), budget)
    assert complete and bench.errors == []
    np.testing.assert_array_equal(bench.spikes, trace.spikes)
    np.testing.assert_array_equal(bench.readout, trace.readout)
    assert len(bench.dumps) == trace.updates == int((CHIP_LABELS >= 0).sum())
    for snapshot, dump in zip(trace.snapshots, bench.dumps, strict=True):
        records, total = compare_snapshot(snapshot, decode_dump(net, dump))
        assert total == 0, "; ".join(str(r) for r in records)


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("mode", ["eprop", "fptt"])
def test_rtl_learning_on_per_step_labels_with_gaps(mode, tmp_path):
    """Generated Verilog under Icarus + cocotb, learning on per-step labels with gaps (a label
    at the end, scattered labels, every step labelled, none): 0 mismatches."""
    net = random_network(gap_hardware(mode), seed=7, spread=8)
    result = run_rtl_learning(net, chip_spikes(seed=3), CHIP_LABELS, tmp_path)
    assert result.complete
    assert result.n_mismatches == 0, result.report()
    assert result.updates == int((CHIP_LABELS >= 0).sum())
    assert result.compared >= result.synaptic_updates > 0
