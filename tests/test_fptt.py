"""FPTT's update checked against a step computed by hand (numpy) on a 3-neuron network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofptt.learning.fptt import FPTT
from neurofptt.models import SpikingRNN

BETA, OUT_BETA, THETA, SLOPE = 0.75, 0.875, 1.0, 5.0
LR, ALPHA = 0.1, 0.5

W_IN = np.array([[1.5, 0.2], [0.3, 1.2], [-0.5, 0.9]])
W_REC = np.array([[0.0, 0.4, -0.3], [0.2, 0.0, 0.5], [0.6, -0.1, 0.0]])
W_OUT = np.array([[0.7, -0.4, 0.3], [-0.2, 0.8, 0.5]])
X = np.array([[1.0, 1.0], [1.0, 0.0]])  # two steps, two inputs
LABEL = 1


def make_model() -> SpikingRNN:
    model = SpikingRNN(2, 3, 2, beta=BETA, out_beta=OUT_BETA, threshold=THETA, slope=SLOPE)
    model = model.double()
    with torch.no_grad():
        model.rec.fc_in.weight.copy_(torch.from_numpy(W_IN))
        model.rec.fc_rec.weight.copy_(torch.from_numpy(W_REC))
        model.readout.fc_out.weight.copy_(torch.from_numpy(W_OUT))
    return model


def surrogate(u: np.ndarray) -> np.ndarray:
    """snntorch fast_sigmoid derivative."""
    return 1.0 / (SLOPE * np.abs(u) + 1.0) ** 2


def softmax(o: np.ndarray) -> np.ndarray:
    e = np.exp(o - o.max())
    return e / e.sum()


def hand_step(w, v_prev, z_prev, o_prev, x, target):
    """Forward one step from a (detached) state and return the loss gradients by hand."""
    w_in, w_rec, w_out = w
    v = BETA * v_prev + w_in @ x + w_rec @ z_prev - z_prev * THETA
    z = (v > THETA).astype(float)
    o = OUT_BETA * o_prev + w_out @ z
    g_o = softmax(o) - target  # d(soft cross-entropy)/d logits
    g_v = (w_out.T @ g_o) * surrogate(v - THETA)
    grads = (np.outer(g_v, x), np.outer(g_v, z_prev), np.outer(g_o, z))
    return grads, (v, z, o)


@pytest.mark.parametrize(
    "form, schedule, beta1",
    [
        ("dual", "linear", 0.5),
        ("slide", "linear", 0.5),
        ("dual", "constant", 0.3),
        ("dual", "none", 1.0),
    ],
)
def test_two_fptt_steps_match_hand_computation(form: str, schedule: str, beta1: float) -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    rule = FPTT(
        model,
        opt,
        alpha=ALPHA,
        mix=0.5,
        period=1,
        form=form,
        clip=0.0,
        schedule=schedule,
        constant_beta=0.3,
    )
    x = torch.from_numpy(X[None])
    y = torch.tensor([LABEL])
    rule.train_batch(x, y)

    onehot = np.eye(2)[LABEL]
    uniform = np.full(2, 0.5)
    w0 = (W_IN, W_REC, W_OUT)
    # step 1: weight beta1 on the label, the rest on the (uniform) class prior
    target1 = beta1 * onehot + (1 - beta1) * uniform
    g1, state = hand_step(w0, np.zeros(3), np.zeros(3), np.zeros(2), X[0], target1)
    # the regulariser gradient is zero at W_bar = W, lambda = g_prev = 0: a plain SGD step
    w1 = tuple(w - LR * g for w, g in zip(w0, g1, strict=True))
    if form == "dual":
        lam1 = tuple(-ALPHA * (a - b) for a, b in zip(w1, w0, strict=True))
        bar1 = tuple(
            0.5 * b + 0.5 * a - lam / (2 * ALPHA) for a, b, lam in zip(w1, w0, lam1, strict=True)
        )
    else:
        bar1 = tuple(0.5 * (b + a) - g / (2 * ALPHA) for a, b, g in zip(w1, w0, g1, strict=True))
    # step 2: beta_t = 1, plain cross-entropy; state carried but detached
    g2, _ = hand_step(w1, *state, X[1], onehot)
    if form == "dual":
        reg = tuple(ALPHA * (a - b) - lam for a, b, lam in zip(w1, bar1, lam1, strict=True))
    else:
        reg = tuple(ALPHA * (a - b) - g / 2 for a, b, g in zip(w1, bar1, g1, strict=True))
    w2 = tuple(w - LR * (g + r) for w, g, r in zip(w1, g2, reg, strict=True))
    if form == "dual":
        lam2 = tuple(lam - ALPHA * (a - b) for lam, a, b in zip(lam1, w2, bar1, strict=True))
        bar2 = tuple(
            0.5 * b + 0.5 * a - lam / (2 * ALPHA) for a, b, lam in zip(w2, bar1, lam2, strict=True)
        )
        memory2 = lam2
    else:
        bar2 = tuple(0.5 * (b + a) - g / (2 * ALPHA) for a, b, g in zip(w2, bar1, g2, strict=True))
        memory2 = g2

    # snntorch's surrogate functions emit float32 spikes, so the gradient that flows back through
    # a spike is rounded to float32 (relative 6e-8) even in a float64 model; after a 0.1 learning
    # rate that is ~1e-9 on the weights.  Anything the test is meant to catch is >= 1e-4.
    tol = 1e-8
    names = ("rec.fc_in.weight", "rec.fc_rec.weight", "readout.fc_out.weight")
    params = dict(model.named_parameters())
    assert np.any(np.abs(g2[1]) > 1e-3), "the example must exercise the recurrent gradient"
    for i, name in enumerate(names):
        np.testing.assert_allclose(params[name].detach().numpy(), w2[i], rtol=0, atol=tol)
        np.testing.assert_allclose(rule.running_mean[name].numpy(), bar2[i], rtol=0, atol=tol)
        np.testing.assert_allclose(rule.memory[name].numpy(), memory2[i], rtol=0, atol=tol)


def test_regularizer_gradient_matches_autograd() -> None:
    model = make_model()
    rule = FPTT(model, torch.optim.SGD(model.parameters(), lr=LR), alpha=ALPHA, clip=0.0)
    rule.train_batch(torch.from_numpy(X[None]), torch.tensor([LABEL]))
    for form in ("dual", "slide"):
        rule.form = form
        model.zero_grad()
        rule.regularizer().backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(p.grad, rule.regularizer_grad(name, p), rtol=0, atol=1e-12)


def test_end_of_epoch_resets_to_running_mean() -> None:
    model = make_model()
    rule = FPTT(model, torch.optim.SGD(model.parameters(), lr=LR), reset_to_mean=True)
    rule.train_batch(torch.from_numpy(X[None]), torch.tensor([LABEL]))
    rule.end_epoch()
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), rule.running_mean[name])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"alpha": 0.0}, "alpha"), ({"period": 0}, "period"), ({"form": "x"}, "form")],
)
def test_invalid_hyperparameters(kwargs, message) -> None:
    model = make_model()
    with pytest.raises(ValueError, match=message):
        FPTT(model, torch.optim.SGD(model.parameters(), lr=LR), **kwargs)


def hand_chunk(w, state, xs, target):
    """BPTT by hand through the steps ``xs`` from a detached state; loss on the last step.

    snntorch's reset term is detached, so gradients flow through the leak, the recurrent weights
    and the readout's leak only.
    """
    w_in, w_rec, w_out = w
    v, z, o = state
    vs, zs, zprev = [], [], []
    for x in xs:
        zprev.append(z)
        v = BETA * v + w_in @ x + w_rec @ z - z * THETA
        z = (v > THETA).astype(float)
        o = OUT_BETA * o + w_out @ z
        vs.append(v)
        zs.append(z)
    g_o = softmax(o) - target
    grads = [np.zeros_like(W_IN), np.zeros_like(W_REC), np.zeros_like(W_OUT)]
    d_o = g_o  # dl/do_t, flowing back through the readout leak
    d_v_next = np.zeros(3)
    d_z_from_rec = np.zeros(3)
    for t in reversed(range(len(xs))):
        grads[2] += np.outer(d_o, zs[t])
        d_z = w_out.T @ d_o + d_z_from_rec
        d_v = d_z * surrogate(vs[t] - THETA) + BETA * d_v_next
        grads[0] += np.outer(d_v, xs[t])
        grads[1] += np.outer(d_v, zprev[t])
        d_z_from_rec = w_rec.T @ d_v
        d_v_next = d_v
        d_o = OUT_BETA * d_o
    return tuple(grads), (v, z, o)


def test_fptt_k_chunks_match_hand_computation() -> None:
    """FPTT-K: T = 4 steps in K = 2 chunks of 2 (``period = 2``), BPTT inside each chunk."""
    xs = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    rule = FPTT(model, opt, alpha=ALPHA, mix=0.5, period=2, form="dual", clip=0.0)
    rule.train_batch(torch.from_numpy(xs[None]), torch.tensor([LABEL]))

    onehot, uniform = np.eye(2)[LABEL], np.full(2, 0.5)
    w0 = (W_IN, W_REC, W_OUT)
    zero_state = (np.zeros(3), np.zeros(3), np.zeros(2))
    # chunk 1 ends at step 2 of 4: beta_t = 1/2
    g1, state = hand_chunk(w0, zero_state, xs[:2], 0.5 * onehot + 0.5 * uniform)
    w1 = tuple(w - LR * g for w, g in zip(w0, g1, strict=True))
    lam1 = tuple(-ALPHA * (a - b) for a, b in zip(w1, w0, strict=True))
    bar1 = tuple(0.5 * (a + b) - lam / (2 * ALPHA) for a, b, lam in zip(w1, w0, lam1, strict=True))
    # chunk 2 from the detached state with the updated weights: beta_t = 1
    g2, _ = hand_chunk(w1, state, xs[2:], onehot)
    reg = tuple(ALPHA * (a - b) - lam for a, b, lam in zip(w1, bar1, lam1, strict=True))
    w2 = tuple(w - LR * (g + r) for w, g, r in zip(w1, g2, reg, strict=True))
    lam2 = tuple(lam - ALPHA * (a - b) for lam, a, b in zip(lam1, w2, bar1, strict=True))
    bar2 = tuple(
        0.5 * (a + b) - lam / (2 * ALPHA) for a, b, lam in zip(w2, bar1, lam2, strict=True)
    )

    assert np.any(np.abs(g1[1]) > 1e-3) and np.any(np.abs(g2[1]) > 1e-3)
    params = dict(model.named_parameters())
    names = ("rec.fc_in.weight", "rec.fc_rec.weight", "readout.fc_out.weight")
    for i, name in enumerate(names):  # tolerance: see test_two_fptt_steps_match_hand_computation
        np.testing.assert_allclose(params[name].detach().numpy(), w2[i], rtol=0, atol=1e-8)
        np.testing.assert_allclose(rule.running_mean[name].numpy(), bar2[i], rtol=0, atol=1e-8)
        np.testing.assert_allclose(rule.memory[name].numpy(), lam2[i], rtol=0, atol=1e-8)


class _Weights(torch.nn.Module):
    def __init__(self, w: np.ndarray) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.from_numpy(w.copy()))


def test_dual_form_with_exact_inner_solve_satisfies_the_paper_relations() -> None:
    """With quadratic losses l_t(W) = 1/2 ||W - c_t||^2 one SGD step of size 1/(1 + alpha) solves
    each step's problem l_t + R_t exactly, so the dual form's recursions can be checked against
    the paper's closed-form relations (algorithms.md section 1.3)."""
    rng = np.random.default_rng(0)
    alpha = 0.4
    targets = rng.normal(size=(6, 3, 2))
    model = _Weights(rng.normal(size=(3, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=1.0 / (1.0 + alpha))
    rule = FPTT(model, opt, alpha=alpha, mix=0.5, form="dual", clip=0.0, n_classes=2)
    w_bar = model.w.detach().numpy().copy()
    grad_prev = np.zeros((3, 2))  # the paper starts from a zero previous gradient
    for c in targets:
        w_bar_before = w_bar
        loss = 0.5 * (model.w - torch.from_numpy(c)).pow(2).sum()
        rule.update_step(loss)
        w_new = model.w.detach().numpy()
        grad_new = w_new - c  # grad l_t at W_{t+1}
        # the dual variable is exactly the last loss gradient at the new weights
        np.testing.assert_allclose(rule.memory["w"].numpy(), grad_new, atol=1e-12)
        # the paper's stationarity relation, with coefficient 1 on the previous gradient
        relation = grad_new - grad_prev + alpha * (w_new - w_bar_before)
        np.testing.assert_allclose(relation, 0.0, atol=1e-12)
        # the paper's running-mean update, evaluated with the gradient at W_{t+1}
        w_bar = 0.5 * (w_bar_before + w_new) - grad_new / (2 * alpha)
        np.testing.assert_allclose(rule.running_mean["w"].numpy(), w_bar, atol=1e-12)
        grad_prev = grad_new


def _recall_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spikes, per-step labels only in the last 3 steps, and each sample's class."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 8, 4, generator=gen) < 0.4).float()
    classes = torch.tensor([0, 2, 1, 2])
    y = torch.full((4, 8), -1)
    y[:, -3:] = classes[:, None]
    return x, y, classes


@pytest.mark.parametrize("period", [1, 2])
def test_recall_window_labels_train_as_one_label_per_sample(period: int) -> None:
    """``gap_labels = "sample"``: a batch whose samples each carry one class in a recall window
    takes exactly the updates of the same batch labelled once per sample (auxiliary loss at
    every step, the class prior observing it); ``"steps"`` scores only the labelled steps."""
    x, y, classes = _recall_batch()
    nets = [SpikingRNN(4, 6, 3) for _ in range(3)]
    for net in nets[1:]:
        net.load_state_dict(nets[0].state_dict())
    rules = [
        FPTT(nets[0], torch.optim.SGD(nets[0].parameters(), lr=0.1), period=period,
             target="label_per_step"),
        FPTT(nets[1], torch.optim.SGD(nets[1].parameters(), lr=0.1), period=period),
        FPTT(nets[2], torch.optim.SGD(nets[2].parameters(), lr=0.1), period=period,
             target="label_per_step", gap_labels="steps"),
    ]  # fmt: skip
    for _ in range(2):
        rules[0].train_batch(x, y)
        rules[1].train_batch(x, classes)
        rules[2].train_batch(x, y)
        for rule in rules[:2]:
            rule.end_epoch()
    for (name, a), b in zip(
        nets[0].state_dict().items(), nets[1].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(rules[0].prior.table, rules[1].prior.table)
    assert not torch.equal(nets[0].rec.fc_in.weight, nets[2].rec.fc_in.weight)
    assert torch.equal(rules[2].prior.table, torch.full((3, 3), 1 / 3))  # never observed


def test_samples_whose_labels_change_train_per_step() -> None:
    """A batch with a sample labelled at every step (or with two classes) is not one label per
    sample: it trains on its labelled steps, as with ``gap_labels = "steps"``."""
    x, y, _ = _recall_batch()
    y[0] = torch.arange(8) % 3  # fully labelled, changing class
    a, b = SpikingRNN(4, 6, 3), SpikingRNN(4, 6, 3)
    b.load_state_dict(a.state_dict())
    first = FPTT(a, torch.optim.SGD(a.parameters(), lr=0.1), target="label_per_step")
    second = FPTT(
        b, torch.optim.SGD(b.parameters(), lr=0.1), target="label_per_step", gap_labels="steps"
    )
    assert first.sequence_labels(y) is None
    first.train_batch(x, y)
    second.train_batch(x, y)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
