"""e-prop checked against autograd references written from the model equations.

The central reference is the "stop_z" network: the same LIF/ALIF forward pass, differentiated by
autograd through time, but with the previous spikes ``z_{t-1}`` detached where they enter the
recurrent input and the reset (the membrane leak, the adaptation and the readout keep their
gradient).  Those are exactly the paths e-prop ignores, so its hand-written gradients must equal
the reference to rounding (float64).  With ``W_rec = 0`` the ignored paths vanish and e-prop must
equal full BPTT.

The references use their own spike function: Heaviside forward and snntorch's ``fast_sigmoid``
derivative ``1 / (slope |u| + 1)^2`` backward, in the input's dtype.  snntorch's function returns
float32 spikes, so the model's own autograd rounds each gradient through a spike to float32; the
reference is tied to the real model with a tolerance that allows for that rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurofptt.errors import ConfigError
from neurofptt.learning.eprop import (
    EligibilityTracer,
    EProp,
    eprop_gradients,
    loss_weights,
    random_feedback,
)
from neurofptt.models.alif import AdaptiveSpikingRNN
from neurofptt.models.conventional import GatedRNN
from neurofptt.models.spiking import SpikingRNN
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.fake import WEIGHTS, add_weight_quantization, set_weight_quantization

SLOPE = 5.0
W_IN, W_REC, W_OUT = "rec.fc_in.weight", "rec.fc_rec.weight", "readout.fc_out.weight"
SPIKING = ("lif", "alif")


class Spike(torch.autograd.Function):
    """Heaviside forward; snntorch's fast_sigmoid derivative backward, kept in the input dtype."""

    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (u,) = ctx.saved_tensors
        return grad / (SLOPE * u.abs() + 1.0) ** 2


def make_net(
    kind: str,
    *,
    seed: int = 0,
    reset: str = "subtract",
    n_in: int = 4,
    n_rec: int = 6,
    n_out: int = 3,
    rec_scale: float = 0.8,
    dtype: torch.dtype = torch.float64,
    beta_a: float = 0.3,
) -> SpikingRNN | AdaptiveSpikingRNN:
    torch.manual_seed(seed)
    common = dict(beta=0.8, out_beta=0.7, threshold=1.0, reset=reset, slope=SLOPE, input_gain=4.0)
    if kind == "lif":
        model = SpikingRNN(n_in, n_rec, n_out, **common)
    else:
        model = AdaptiveSpikingRNN(n_in, n_rec, n_out, beta_a=beta_a, rho=0.9, **common)
    model = model.to(dtype)
    with torch.no_grad():
        model.rec.fc_rec.weight.normal_(0.0, rec_scale)
    return model


def make_batch(seed: int = 0, batch: int = 3, steps: int = 15, n_in: int = 4, n_out: int = 3):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, steps, n_in, generator=gen) < 0.5).double()
    y = torch.randint(0, n_out, (batch,), generator=gen)
    return x, y


def constants(model):
    rec = model.rec
    if isinstance(model, AdaptiveSpikingRNN):
        return rec.beta, rec.threshold, rec.beta_a, rec.rho, rec.reset
    return rec.lif.beta, rec.lif.threshold, 0.0, 0.0, model.hparams["reset"]


def reference_run(model, x, *, stop_z: bool):
    """Autograd forward pass from the equations; returns outputs, spikes, (v, A) per step."""
    beta, theta, beta_a, rho, reset = constants(model)
    kappa = model.readout.li.beta
    batch = x.shape[0]
    v = torch.zeros(batch, model.n_rec, dtype=x.dtype)
    z, a = v.clone(), v.clone()
    o = torch.zeros(batch, model.n_out, dtype=x.dtype)
    outputs, spikes, potentials = [], [], []
    for t in range(x.shape[1]):
        z_rec = z.detach() if stop_z else z
        current = F.linear(x[:, t], model.rec.fc_in.weight) + F.linear(
            z_rec, model.rec.fc_rec.weight
        )
        r = z.detach()  # the reset never carries gradient (snntorch convention)
        if reset == "subtract":
            v = beta * v + current - r * theta
        else:
            v = beta * ((1 - r) * v) + current
        a = rho * a + z
        thr = theta + beta_a * a
        z = Spike.apply(v - thr)
        o = kappa * o + F.linear(z, model.readout.fc_out.weight)
        outputs.append(o)
        spikes.append(z)
        potentials.append((v, thr))
    return outputs, spikes, potentials


def objective(outputs, spikes, y, loss_steps, reg_rate=0.0, target_rate=0.0):
    weights = loss_weights(loss_steps, len(outputs))
    loss = sum(w * F.cross_entropy(o, y) for w, o in zip(weights, outputs, strict=True) if w > 0)
    if reg_rate > 0:
        rate = torch.stack(spikes).mean(dim=(0, 1))
        loss = loss + 0.5 * reg_rate * (rate - target_rate).pow(2).sum()
    return loss


def reference_gradients(model, x, y, *, stop_z, loss_steps="last", reg_rate=0.0, target_rate=0.0):
    outputs, spikes, _ = reference_run(model, x, stop_z=stop_z)
    loss = objective(outputs, spikes, y, loss_steps, reg_rate, target_rate)
    params = dict(model.named_parameters())
    names = [W_IN, W_REC, W_OUT]
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    return dict(zip(names, grads, strict=True))


def model_bptt_gradients(model, x, y, loss_steps="last"):
    outputs, _ = model(x)
    loss = objective(list(outputs.unbind(1)), None, y, loss_steps)
    params = dict(model.named_parameters())
    names = list(params)
    return dict(zip(names, torch.autograd.grad(loss, list(params.values())), strict=True))


def assert_grads_close(got, want, rtol=1e-10):
    assert set(got) == set(want)
    for name in want:
        scale = float(want[name].abs().max())
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=rtol * scale, msg=name)


def relative_gap(a, b):
    return float((a - b).abs().max() / b.abs().max())


# -- (1) e-prop == autograd with z stopped in the recurrent input and reset ------------------------
@pytest.mark.parametrize("kind", SPIKING)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("loss_steps", ["all", "last", 4])
def test_eprop_equals_stop_z_autograd(kind, reset, loss_steps):
    model = make_net(kind, seed=1, reset=reset)
    x, y = make_batch(seed=2)
    _, spikes, _ = reference_run(model, x, stop_z=True)
    rate = float(torch.stack(spikes).detach().mean())
    assert 0.05 < rate < 0.8, "the check is only meaningful when neurons spike"
    got = eprop_gradients(model, x, y, loss_steps=loss_steps)
    assert_grads_close(got, reference_gradients(model, x, y, stop_z=True, loss_steps=loss_steps))
    # not vacuous: with recurrent weights e-prop is an approximation of BPTT
    full = reference_gradients(model, x, y, stop_z=False, loss_steps=loss_steps)
    assert relative_gap(got[W_IN], full[W_IN]) > 1e-3


@pytest.mark.parametrize("kind", SPIKING)
def test_rate_regulariser_equals_stop_z_autograd(kind):
    model = make_net(kind, seed=3)
    x, y = make_batch(seed=4)
    got = eprop_gradients(model, x, y, reg_rate=0.7, target_rate=0.05)
    want = reference_gradients(model, x, y, stop_z=True, reg_rate=0.7, target_rate=0.05)
    assert_grads_close(got, want)
    plain = eprop_gradients(model, x, y)
    assert relative_gap(got[W_IN], plain[W_IN]) > 1e-3


def test_reference_forward_is_the_model_and_its_autograd():
    """Ties the hand-written references to the real models: identical forward values, and full
    BPTT equal to the models' own autograd up to snntorch's float32 spike gradients."""
    for kind in SPIKING:
        model = make_net(kind, seed=5)
        x, y = make_batch(seed=6)
        outputs, _ = model(x)
        ref_outputs, _, _ = reference_run(model, x, stop_z=False)
        assert torch.equal(outputs, torch.stack(ref_outputs, dim=1))
        bptt = model_bptt_gradients(model, x, y)
        ref = reference_gradients(model, x, y, stop_z=False)
        assert_grads_close({k: bptt[k] for k in ref}, ref, rtol=1e-5)


# -- (2) no recurrence: e-prop == full BPTT --------------------------------------------------------
@pytest.mark.parametrize("kind", SPIKING)
@pytest.mark.parametrize("loss_steps", ["all", "last"])
def test_without_recurrence_eprop_equals_bptt(kind, loss_steps):
    model = make_net(kind, seed=7, rec_scale=0.0)
    x, y = make_batch(seed=8)
    got = eprop_gradients(model, x, y, loss_steps=loss_steps)
    assert_grads_close(got, reference_gradients(model, x, y, stop_z=False, loss_steps=loss_steps))
    bptt = model_bptt_gradients(model, x, y, loss_steps)
    assert_grads_close(got, {k: bptt[k] for k in got}, rtol=1e-5)


# -- (3) traces equal the autograd derivatives of each neuron's own spikes -------------------------
@pytest.mark.parametrize("kind", SPIKING)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_traces_equal_autograd_local_derivatives(kind, reset):
    """``e_ji,t = dz_j,t/dW_ji`` and ``ebar_ji,t = d(sum_s kappa^(t-s) z_j,s)/dW_ji`` under the
    stop_z network, and neuron ``j``'s spikes do not depend on any other row of the weights."""
    model = make_net(kind, seed=9, reset=reset, n_in=2, n_rec=3, n_out=2)
    x, _ = make_batch(seed=10, batch=2, steps=7, n_in=2, n_out=2)
    _, spikes, _ = reference_run(model, x, stop_z=True)
    kappa = float(model.readout.li.beta)
    w_in, w_rec = model.rec.fc_in.weight, model.rec.fc_rec.weight
    tracer = EligibilityTracer(model)
    state = tracer.start(2)
    filtered = torch.zeros_like(spikes[0])
    for t in range(x.shape[1]):
        _, state = tracer.step(x[:, t], state)
        e, ebar = tracer.eligibility(), tracer.filtered_eligibility()
        filtered = kappa * filtered + spikes[t]
        for b in range(2):
            for j in range(3):
                for out, traces in ((spikes[t], e), (filtered, ebar)):
                    g_in, g_rec = torch.autograd.grad(out[b, j], [w_in, w_rec], retain_graph=True)
                    for grad, name in ((g_in, W_IN), (g_rec, W_REC)):
                        torch.testing.assert_close(
                            grad[j], traces[name][b, j], rtol=1e-12, atol=1e-14
                        )
                        others = torch.cat([grad[:j], grad[j + 1 :]])
                        assert torch.count_nonzero(others) == 0


# -- (4) psi = 0 far from threshold gives zero eligibility -----------------------------------------
class Triangle(torch.autograd.Function):
    """Bounded-support surrogate: psi = 0.3 max(0, 1 - |u|), float32 spikes like snntorch's."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0).float()

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * 0.3 * (1 - u.abs()).clamp(min=0)


@pytest.mark.parametrize("kind", SPIKING)
def test_zero_pseudo_derivative_gives_zero_eligibility(kind):
    model = make_net(kind, seed=11)
    if kind == "lif":
        model.rec.lif.spike_grad = Triangle.apply
    else:
        model.rec.spike_fn = Triangle.apply
    with torch.no_grad():  # neuron 0 only receives inhibition: v <= 0, so |v - A| >= 1
        model.rec.fc_in.weight[0] = -model.rec.fc_in.weight[0].abs()
        model.rec.fc_rec.weight[0] = -model.rec.fc_rec.weight[0].abs()
    x, y = make_batch(seed=12)
    tracer = EligibilityTracer(model)
    state = tracer.start(x.shape[0])
    far_total = 0
    for t in range(x.shape[1]):
        _, state = tracer.step(x[:, t], state)
        v = state[0]
        thr = model.rec.adaptive_threshold(state[2]) if kind == "alif" else 1.0
        far = (v - thr).abs() >= 1.0
        far_total += int(far.sum())
        for trace in tracer.eligibility().values():
            assert torch.all(trace[far] == 0)
    assert far_total > 0
    grads = eprop_gradients(model, x, y)
    assert torch.count_nonzero(grads[W_IN][0]) == 0
    assert torch.count_nonzero(grads[W_REC][0]) == 0
    assert torch.count_nonzero(grads[W_IN][1:]) > 0
    # the surrogate swap is honoured: e-prop and the model's own autograd use the same psi
    no_rec = make_net(kind, seed=11, rec_scale=0.0)
    if kind == "lif":
        no_rec.rec.lif.spike_grad = Triangle.apply
    else:
        no_rec.rec.spike_fn = Triangle.apply
    got = eprop_gradients(no_rec, x, y)
    bptt = model_bptt_gradients(no_rec, x, y)
    assert_grads_close(got, {k: bptt[k] for k in got}, rtol=1e-5)


# -- (5) ALIF with beta_a = 0 is the LIF, traces included ------------------------------------------
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_alif_without_adaptation_is_lif(reset, dtype):
    lif = make_net("lif", seed=13, reset=reset, dtype=dtype)
    alif = make_net("alif", seed=13, reset=reset, dtype=dtype, beta_a=0.0)
    for p, q in zip(lif.parameters(), alif.parameters(), strict=True):
        assert torch.equal(p, q)  # same construction order, same seed
    x, y = make_batch(seed=14)
    x = x.to(dtype)
    out_lif, state_lif = lif(x)
    out_alif, state_alif = alif(x)
    assert torch.equal(out_lif, out_alif)
    assert torch.equal(state_lif[0], state_alif[0]) and torch.equal(state_lif[1], state_alif[1])
    bptt_lif, bptt_alif = model_bptt_gradients(lif, x, y), model_bptt_gradients(alif, x, y)
    for name in bptt_lif:
        torch.testing.assert_close(bptt_lif[name], bptt_alif[name], rtol=1e-12, atol=0)
    tracers = EligibilityTracer(lif), EligibilityTracer(alif)
    states = [tr.start(x.shape[0]) for tr in tracers]
    for t in range(x.shape[1]):
        for i, tr in enumerate(tracers):
            _, states[i] = tr.step(x[:, t], states[i])
        for name, trace in tracers[0].eligibility().items():
            assert torch.equal(trace, tracers[1].eligibility()[name])
            assert torch.equal(
                tracers[0].filtered_eligibility()[name], tracers[1].filtered_eligibility()[name]
            )
    g_lif, g_alif = eprop_gradients(lif, x, y), eprop_gradients(alif, x, y)
    for name in g_lif:
        assert torch.equal(g_lif[name], g_alif[name])


def test_alif_adaptation_raises_threshold():
    model = make_net("alif", seed=15)
    x, _ = make_batch(seed=16)
    state = model.initial_state(x.shape[0])
    for t in range(x.shape[1]):
        prev = state
        _, state = model.step(x[:, t], state)
        expected = model.rec.rho * prev[2] + prev[1]
        assert torch.equal(state[2], expected)
    assert float(state[2].detach().max()) > 0


def test_alif_rejects_bad_parameters():
    for kwargs in ({"beta_a": -0.1}, {"rho": 1.5}, {"reset": "hard"}, {"threshold": 0.0}):
        with pytest.raises(ConfigError):
            AdaptiveSpikingRNN(2, 3, 2, **kwargs)


# -- (6) the recurrent diagonal --------------------------------------------------------------------
@pytest.mark.parametrize("kind", SPIKING)
def test_recurrent_diagonal(kind):
    """Self-connections are learned by default, with the same trace as any recurrent synapse (and
    the stop_z reference agrees on the diagonal); ``self_connections=False`` zeroes exactly the
    diagonal, and with a zero diagonal it stays zero through training."""
    model = make_net(kind, seed=17)
    x, y = make_batch(seed=18)
    learned = eprop_gradients(model, x, y)
    ref = reference_gradients(model, x, y, stop_z=True)
    diag = learned[W_REC].diagonal()
    assert torch.count_nonzero(diag) > 0
    torch.testing.assert_close(diag, ref[W_REC].diagonal(), rtol=1e-10, atol=1e-14)
    masked = eprop_gradients(model, x, y, self_connections=False, reg_rate=0.5)
    assert torch.count_nonzero(masked[W_REC].diagonal()) == 0
    full = eprop_gradients(model, x, y, reg_rate=0.5)
    off = ~torch.eye(model.n_rec, dtype=torch.bool)
    assert torch.equal(masked[W_REC][off], full[W_REC][off])
    with torch.no_grad():
        model.rec.fc_rec.weight.fill_diagonal_(0.0)
    rule = EProp(model, torch.optim.Adam(model.parameters(), lr=0.05), self_connections=False)
    for _ in range(3):
        rule.train_batch(x, y)
    assert torch.count_nonzero(model.rec.fc_rec.weight.diagonal()) == 0


# -- the tanh RNN: e-prop == autograd with the one-step Jacobian truncation ------------------------
@pytest.mark.parametrize("loss_steps", ["all", "last", 3])
def test_rnn_eprop_equals_one_step_truncation(loss_steps):
    torch.manual_seed(19)
    model = GatedRNN("rnn", 4, 5, 3).double()
    x, y = make_batch(seed=20, steps=9)
    cell = model.cells[0]
    h = torch.zeros(x.shape[0], 5, dtype=torch.float64)
    weights = loss_weights(loss_steps, x.shape[1])
    loss = 0.0
    outputs, _ = model(x)
    for t in range(x.shape[1]):
        h = cell(x[:, t], h.detach())
        o = model.readout(h)
        assert torch.equal(o, outputs[:, t])
        if weights[t] > 0:
            loss = loss + weights[t] * F.cross_entropy(o, y)
    params = dict(model.named_parameters())
    want = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    got = eprop_gradients(model, x, y, loss_steps=loss_steps)
    assert_grads_close(got, want)
    full = model_bptt_gradients(model, x, y, loss_steps)
    assert relative_gap(got["cells.0.weight_ih"], full["cells.0.weight_ih"]) > 1e-3


# -- feedback, online updates, rule state ----------------------------------------------------------
def test_random_feedback():
    model = make_net("alif", seed=21)
    x, y = make_batch(seed=22)
    b = random_feedback(model.n_rec, model.n_out, seed=5, dtype=torch.float64)
    assert torch.equal(b, random_feedback(model.n_rec, model.n_out, seed=5, dtype=torch.float64))
    assert not torch.equal(b, random_feedback(model.n_rec, model.n_out, 6, dtype=torch.float64))
    sym = eprop_gradients(model, x, y)
    rnd = eprop_gradients(model, x, y, feedback=b)
    explicit = eprop_gradients(model, x, y, feedback=model.readout.fc_out.weight.detach().T)
    for name in sym:
        assert torch.equal(sym[name], explicit[name])
    assert torch.equal(sym[W_OUT], rnd[W_OUT])  # the readout always gets its exact gradient
    assert relative_gap(rnd[W_IN], sym[W_IN]) > 1e-2
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rule = EProp(model, opt, feedback="random", feedback_seed=5)
    assert torch.equal(rule.feedback, b)
    other = EProp(model, opt, feedback="random", feedback_seed=9)
    other.load_state_dict(rule.state_dict())
    assert torch.equal(other.feedback, b)
    assert EProp(model, opt).state_dict() == {}


@pytest.mark.parametrize("kind", ["lif", "alif", "rnn"])
def test_rule_offline_step_applies_eprop_gradients(kind):
    if kind == "rnn":
        torch.manual_seed(23)
        model = GatedRNN("rnn", 4, 5, 3).double()
    else:
        model = make_net(kind, seed=23)
    x, y = make_batch(seed=24)
    grads = eprop_gradients(model, x, y, loss_steps="last")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        outputs, _ = model(x)
    rule = EProp(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_steps="last", clip=0.0)
    result = rule.train_batch(x, y)
    assert result.loss == pytest.approx(float(F.cross_entropy(outputs[:, -1], y)), rel=1e-12)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - 0.1 * grads[name])


@pytest.mark.parametrize("kind", SPIKING)
def test_online_updates(kind):
    model = make_net(kind, seed=25)
    x, y = make_batch(seed=26)
    # loss only at the last step: the online rule makes one update, the offline one
    twin = make_net(kind, seed=25)
    online = EProp(
        model, torch.optim.SGD(model.parameters(), lr=0.1), loss_steps="last", online=True, clip=0
    )
    offline = EProp(twin, torch.optim.SGD(twin.parameters(), lr=0.1), loss_steps="last", clip=0)
    online.train_batch(x, y)
    offline.train_batch(x, y)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    # loss at every step (plus the online rate regulariser): one update per step
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    step = opt.step
    opt.step = lambda *a, **k: calls.append(1) or step(*a, **k)
    rule = EProp(model, opt, online=True, loss_steps="all", reg_rate=0.1, target_rate=0.05)
    before = model.rec.fc_in.weight.detach().clone()
    result = rule.train_batch(x, y)
    assert len(calls) == x.shape[1]
    assert torch.isfinite(torch.tensor(result.loss))
    assert not torch.equal(before, model.rec.fc_in.weight)


# -- (8) unsupported models and options ------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [GatedRNN("lstm", 3, 4, 2), GatedRNN("gru", 3, 4, 2), GatedRNN("rnn", 3, [4, 4], 2)],
    ids=["lstm", "gru", "stacked-rnn"],
)
def test_unsupported_models_are_rejected(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="SpikingRNN.*AdaptiveSpikingRNN.*GatedRNN"):
        EProp(model, opt)
    with pytest.raises(ConfigError, match="supports"):
        eprop_gradients(model, torch.zeros(1, 2, 3), torch.zeros(1, dtype=torch.long))


def test_bad_options_are_rejected():
    model = make_net("lif")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for kwargs in (
        {"feedback": "adaptive"},
        {"loss_steps": "first"},
        {"loss_steps": 0},
        {"reg_rate": -1.0},
        {"target_rate": 2.0},
    ):
        with pytest.raises(ConfigError):
            EProp(model, opt, **kwargs)
    rnn = GatedRNN("rnn", 4, 5, 3)
    with pytest.raises(ConfigError, match="spiking"):
        EProp(rnn, torch.optim.SGD(rnn.parameters(), lr=0.1), reg_rate=0.1)
    model.rec.lif.beta = torch.nn.Parameter(torch.tensor(0.8, dtype=torch.float64))
    with pytest.raises(ConfigError, match="rec.lif.beta"):
        EProp(model, opt)


# -- (7) e-prop learns a small task ----------------------------------------------------------------
def two_channel_task(n: int, seed: int, steps: int = 10):
    """Two input channels fire at rates 0.7 and 0.2 (or the reverse); the label is the channel
    that fired more spikes (ties broken toward channel 0)."""
    gen = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 2, (n,), generator=gen)
    rates = torch.where(label[:, None] == 0, torch.tensor([0.7, 0.2]), torch.tensor([0.2, 0.7]))
    x = (torch.rand(n, steps, 2, generator=gen) < rates[:, None, :]).float()
    counts = x.sum(1)
    return x, (counts[:, 1] > counts[:, 0]).long()


@pytest.mark.parametrize(
    ("kind", "online"), [("lif", False), ("alif", False), ("rnn", False), ("lif", True)]
)
def test_eprop_learns_two_channel_task(kind, online):
    torch.manual_seed(0)
    if kind == "rnn":
        model = GatedRNN("rnn", 2, 16, 2)
    elif kind == "lif":
        model = SpikingRNN(2, 16, 2, beta=0.9, out_beta=0.8, input_gain=3.0)
    else:
        model = AdaptiveSpikingRNN(2, 16, 2, beta=0.9, out_beta=0.8, beta_a=0.1, input_gain=3.0)
    x, y = two_channel_task(512, seed=1)
    x_test, y_test = two_channel_task(256, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02 / (10 if online else 1))
    rule = EProp(model, opt, loss_steps="all" if online else "last", online=online)
    with torch.no_grad():
        initial = float(F.cross_entropy(model(x_test)[0][:, -1], y_test))
    for _ in range(4):
        for i in range(0, len(x), 32):
            rule.train_batch(x[i : i + 32], y[i : i + 32])
    with torch.no_grad():
        logits = model(x_test)[0][:, -1]
    loss = float(F.cross_entropy(logits, y_test))
    accuracy = float((logits.argmax(-1) == y_test).float().mean())
    # chance is ln 2 = 0.69; require a loss far below it and below half the initial one
    assert loss < 0.25 and loss < 0.5 * initial, (kind, initial, loss)
    assert accuracy > 0.9, (kind, accuracy)


def test_quantization_aware_training_updates_the_shadow_weights_by_the_quantized_gradient():
    """With fake quantization on (the flow's quantization-aware epochs), e-prop's gradient is
    that of the quantized weights the forward uses, applied to the float shadow weights
    (straight through, as autograd does): the same step as on a plain network that holds the
    quantized weights."""
    model = make_net("lif", seed=27)
    hw = HardwareConfig(n_in=4, n_rec=6, n_out=3)
    add_weight_quantization(model, hw)
    assert set_weight_quantization(model, True)
    plain = make_net("lif", seed=27)
    with torch.no_grad():
        for path in WEIGHTS:
            plain.get_submodule(path).weight.copy_(model.get_submodule(path).weight)
    x, y = make_batch(seed=28)
    shadow = {p: model.get_submodule(p).parametrizations.weight.original.clone() for p in WEIGHTS}
    held = {p: plain.get_submodule(p).weight.detach().clone() for p in WEIGHTS}
    for net in (model, plain):
        EProp(
            net, torch.optim.SGD(net.parameters(), lr=0.1), loss_steps="last", clip=0
        ).train_batch(x, y)
    for path in WEIGHTS:
        moved = model.get_submodule(path).parametrizations.weight.original - shadow[path]
        expected = plain.get_submodule(path).weight - held[path]
        assert expected.abs().max() > 0
        torch.testing.assert_close(moved, expected, rtol=1e-12, atol=1e-14)
