"""FPP: exact losses, updates and refresh; edge cases; buffer; checkpoints; learning."""

from __future__ import annotations

import io
import math

import pytest
import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.fpp import FPP, ReplayBuffer
from neurofptt.models.conventional import GatedRNN
from neurofptt.models.spiking import SpikingRNN


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_rnn(seed: int = 0) -> GatedRNN:
    torch.manual_seed(seed)
    return GatedRNN("rnn", 2, 3, 2).double()


def known_transitions(rule: FPP) -> None:
    """Three transitions of one stream: t = 0, 1 (with successors) and the labelled last step."""
    g = torch.Generator().manual_seed(5)
    s_prev = (torch.randn(3, 3, generator=g, dtype=torch.float64),)
    s_next = (torch.randn(3, 3, generator=g, dtype=torch.float64),)
    obs = torch.randn(3, 2, generator=g, dtype=torch.float64)
    obs_next = torch.randn(3, 2, generator=g, dtype=torch.float64)
    ids = rule.buffer.push(
        s_prev,
        obs,
        obs_next,
        s_next,
        torch.tensor([1, 0, 1]),
        torch.tensor([0.0, 1.0, 1.0]),
        torch.tensor([True, True, False]),
        torch.tensor([-1, 0, 1]),
    )
    assert ids.tolist() == [0, 1, 2]


def manual_f(p: dict[str, torch.Tensor], h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The tanh RNN written out: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    return torch.tanh(x @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"])


def params_of(model: GatedRNN) -> dict[str, torch.Tensor]:
    cell = model.cells[0]
    return {
        "w_ih": cell.weight_ih.detach().clone(),
        "b_ih": cell.bias_ih.detach().clone(),
        "w_hh": cell.weight_hh.detach().clone(),
        "b_hh": cell.bias_hh.detach().clone(),
        "w_o": model.readout.weight.detach().clone(),
        "b_o": model.readout.bias.detach().clone(),
    }


@pytest.mark.parametrize("propagate", [False, True])
def test_one_update_matches_hand_computation(propagate: bool) -> None:
    model = tiny_rnn()
    lr, lam = 0.3, 0.5
    rule = FPP(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        buffer_size=3,
        state_weight=lam,
        propagate=propagate,
        clip=0.0,
    )
    known_transitions(rule)
    buf = rule.buffer
    before = {k: v.clone() for k, v in [("s_prev", buf.s_prev[0]), ("s_next", buf.s_next[0])]}
    slots = torch.tensor([1, 2, 1])  # duplicates allowed: uniform sampling with replacement
    p = {k: v.requires_grad_() for k, v in params_of(model).items()}

    sp, o, on = before["s_prev"][slots], buf.obs[slots], buf.obs_next[slots]
    s_t = manual_f(p, sp, o)
    logits = s_t @ p["w_o"].T + p["b_o"]
    s_n = manual_f(p, s_t, on)
    h = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)  # slot 2 is a last step
    w = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    sq = ((s_n - before["s_next"][slots]) ** 2).mean(dim=1)
    exp_ls = (h * sq).sum() / h.sum()
    logp = torch.log_softmax(logits, dim=1)
    ce = -logp[torch.arange(3), buf.label[slots]]
    exp_lt = (w * ce).sum() / w.sum()
    names_w = ["w_ih", "b_ih", "w_hh", "b_hh"]
    g_w = torch.autograd.grad(lam * exp_ls + exp_lt, [p[n] for n in names_w], retain_graph=True)
    g_b = torch.autograd.grad(exp_lt, [p["w_o"], p["b_o"]])
    new = {n: (p[n] - lr * g).detach() for n, g in zip(names_w, g_w, strict=True)}
    new["w_o"], new["b_o"] = (p["w_o"] - lr * g_b[0]).detach(), (p["b_o"] - lr * g_b[1]).detach()

    res = rule.update(slots)
    assert res.state_loss == pytest.approx(float(exp_ls.detach()), rel=1e-12)
    assert res.target_loss == pytest.approx(float(exp_lt.detach()), rel=1e-12)
    got = params_of(model)
    for n in new:
        torch.testing.assert_close(got[n], new[n], rtol=1e-12, atol=1e-12)

    # refresh: the sampled transition with a successor gets f_new(f_new(s_{T-1}, o_T), o_{T+1})
    exp_next = before["s_next"].clone()
    s1 = manual_f(new, before["s_prev"][1], buf.obs[1])
    exp_next[1] = manual_f(new, s1, buf.obs_next[1])
    if propagate:
        # prose variant: the new s_T goes into the previous transition (slot 0) of the stream
        exp_next[0] = s1
    torch.testing.assert_close(buf.s_next[0], exp_next, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(buf.s_prev[0], before["s_prev"], rtol=0, atol=0)


def test_readout_gets_target_loss_gradient_only() -> None:
    """With only unlabelled transitions L_t = 0: the readout must not move, W must."""
    model = tiny_rnn()
    rule = FPP(model, torch.optim.SGD(model.parameters(), lr=0.5), buffer_size=3, clip=0.0)
    known_transitions(rule)
    before = params_of(model)
    res = rule.update(torch.tensor([0, 0]))
    assert res.target_loss == 0.0 and res.state_loss > 0.0
    after = params_of(model)
    assert torch.equal(after["w_o"], before["w_o"]) and torch.equal(after["b_o"], before["b_o"])
    assert not torch.equal(after["w_hh"], before["w_hh"])


def sequences(n: int, steps: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of two channels fired first: channel y pulses at t = 0, the other one later."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, 2, (n,), generator=g)
    later = 1 + torch.randint(0, steps - 1, (n,), generator=g)
    x = torch.zeros(n, steps, 2)
    rows = torch.arange(n)
    x[rows, 0, first] = 1.0
    x[rows, later, 1 - first] = 1.0
    return x, first


def test_zero_updates_change_nothing_but_the_buffer() -> None:
    """n = 0: weights, optimizer state and every stored entry stay; transitions are still pushed."""
    torch.manual_seed(0)
    model = GatedRNN("gru", 2, 4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    rule = FPP(model, opt, updates=0, buffer_size=100, refresh_random=3)
    x, y = sequences(4, steps=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rule.train_batch(x, y)
    assert len(rule.buffer) == 20
    first = rule.buffer.s_next[0].clone()
    rule.train_batch(x, y)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert opt.state_dict()["state"] == {}
    # FIFO: the second batch landed in slots 20..39, the first batch's entries are untouched
    torch.testing.assert_close(rule.buffer.s_next[0][:20], first[:20], rtol=0, atol=0)


def test_zero_state_weight_is_pure_target_loss() -> None:
    model = tiny_rnn()
    rule = FPP(model, torch.optim.SGD(model.parameters(), lr=0.5), buffer_size=3, clip=0.0)
    rule.state_weight = 0.0
    known_transitions(rule)
    twin = tiny_rnn()
    twin_rule = FPP(twin, torch.optim.SGD(twin.parameters(), lr=0.5), buffer_size=3, clip=0.0)
    known_transitions(twin_rule)
    twin_rule.buffer.has_next[:] = False  # no state loss at all
    rule.update(torch.tensor([1, 2]))
    twin_rule.update(torch.tensor([1, 2]))
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_buffer_is_fifo_with_capacity() -> None:
    buf = ReplayBuffer(5)
    for k in range(3):
        v = torch.full((3, 1), float(k))
        buf.push(
            (v,),
            v,
            v,
            (v,),
            torch.zeros(3, dtype=torch.long),
            v[:, 0],
            v[:, 0] > -1,
            torch.full((3,), -1),
        )
    assert len(buf) == 5 and buf.pushed == 9
    # transitions 0..8 were pushed; the 5 newest (4..8) remain, transition k in slot k % 5
    assert sorted(buf.ids.tolist()) == [4, 5, 6, 7, 8]
    assert buf.ids.tolist() == [5, 6, 7, 8, 4]
    assert buf.obs[:, 0].tolist() == [1.0, 2.0, 2.0, 2.0, 1.0]
    slots, valid = buf.slots_of(torch.tensor([3, 4, 8, -1]))
    assert valid.tolist() == [False, True, True, False] and slots[:3].tolist() == [3, 4, 3]
    big = torch.arange(7, dtype=torch.float32)[:, None]
    buf.push(
        (big,),
        big,
        big,
        (big,),
        torch.zeros(7, dtype=torch.long),
        big[:, 0],
        big[:, 0] > -1,
        torch.full((7,), -1),
    )
    assert sorted(buf.obs[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_seeded_sampling_is_reproducible() -> None:
    def run(seed: int) -> list[float]:
        torch.manual_seed(0)
        model = GatedRNN("gru", 2, 4, 2)
        rule = FPP(model, torch.optim.SGD(model.parameters(), lr=0.1), updates=2, seed=seed)
        x, y = sequences(4, steps=5)
        rule.train_batch(x, y)
        return [float(p.detach().sum()) for p in model.parameters()]

    assert run(3) == run(3)
    assert run(3) != run(4)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    buf = ReplayBuffer(10)
    v = torch.zeros(6, 1)
    buf.push((v,), v, v, (v,), v[:, 0].long(), v[:, 0], v[:, 0] > 0, torch.full((6,), -1))
    a, b = buf.sample(50, g1), buf.sample(50, g2)
    assert torch.equal(a, b) and int(a.max()) < 6


def test_state_dict_round_trip_gives_identical_updates() -> None:
    def make() -> tuple[GatedRNN, torch.optim.Optimizer, FPP]:
        torch.manual_seed(0)
        model = GatedRNN("lstm", 2, 4, 2)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        return model, opt, FPP(model, opt, updates=2, buffer_size=30, propagate=True)

    model, opt, rule = make()
    x, y = sequences(4, steps=6)
    rule.train_batch(x, y)
    blob = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "rule": rule.state_dict()}, blob
    )
    blob.seek(0)
    ckpt = torch.load(blob, weights_only=True)
    model2, opt2, rule2 = make()
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    rule2.load_state_dict(ckpt["rule"])
    x2, y2 = sequences(4, steps=6, seed=1)
    r1, r2 = rule.train_batch(x2, y2), rule2.train_batch(x2, y2)
    assert r1.loss == r2.loss
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(rule.buffer.s_next, rule2.buffer.s_next, strict=True):
        assert torch.equal(a, b)
    bad = FPP(model2, opt2, buffer_size=31)
    with pytest.raises(Exception, match="buffer_size=31"):
        bad.load_state_dict(ckpt["rule"])


def test_fpp_learns_which_channel_fired_first() -> None:
    torch.manual_seed(0)
    model = GatedRNN("gru", 2, 16, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    rule = FPP(model, opt, buffer_size=500, updates=2, loss_steps="all")
    for i in range(25):
        x, y = sequences(32, seed=100 + i)
        rule.train_batch(x, y)
    xe, ye = sequences(512, seed=7)
    with torch.no_grad():
        out, _ = model(xe)
    loss = float(torch.nn.functional.cross_entropy(out[:, -1], ye))
    assert loss < 0.25 * math.log(2)


def test_spiking_model_runs() -> None:
    torch.manual_seed(0)
    model = SpikingRNN(2, 8, 2, input_gain=3.0)
    rule = FPP(model, torch.optim.SGD(model.parameters(), lr=0.1), updates=1, buffer_size=50)
    before = [p.clone() for p in model.parameters()]
    x, y = sequences(4, steps=5)
    res = rule.train_batch(x, y)
    assert math.isfinite(res.loss) and len(rule.buffer.s_next) == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"buffer_size": 0}, "buffer_size"),
        ({"updates": -1}, "updates"),
        ({"updates": 1.5}, "updates"),
        ({"replay_batch": 0}, "replay_batch"),
        ({"state_weight": -1.0}, "state_weight"),
        ({"state_weight": float("nan")}, "state_weight"),
        ({"refresh_random": -2}, "refresh_random"),
        ({"propagate": "yes"}, "propagate"),
        ({"loss_steps": "first"}, "loss_steps"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_hyper_parameters(kwargs: dict, match: str) -> None:
    model = tiny_rnn()
    with pytest.raises(ConfigError, match=match):
        FPP(model, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def test_non_tensor_state_is_rejected() -> None:
    class Odd(GatedRNN):
        def initial_state(self, batch: int):  # type: ignore[override]
            return (torch.zeros(batch, 3, dtype=torch.long),)

    torch.manual_seed(0)
    model = Odd("rnn", 2, 3, 2)
    rule = FPP(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="Supported"):
        rule.train_batch(*sequences(2, steps=3))
