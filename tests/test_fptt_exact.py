"""FPTT's local one-step gradient and fused update give the numbers of the plain implementation.

:class:`PlainFPTT` below keeps the implementation they replaced, verbatim: every chunk
differentiated by autograd, ``grad R_t`` added parameter by parameter, ``clip_grad_norm_``,
``optimizer.step()`` and the running-mean update.  Each test trains two identical networks for
several steps, one with each, and compares the weights, the running means ``W_bar``, the dual
variables / previous gradients (``memory``), the optimizer state, the reported loss and the last
logits.

With an optimizer that the fused update runs through its own ``step()`` (SGD here), everything is
equal bit for bit, in float64 and float32, for both forms, with and without clipping, for every
kind of target, surrogate and reset, and on the autograd path (other models, FPTT-K): the local
gradient is autograd's and the fused update runs the plain one's kernels on the same operands in
the same order.  Adam and AdamW run torch's fused Adam kernel instead of the optimizer's
``foreach`` kernels, which rounds differently: there the float64 numbers are compared at 1e-12
relative (:func:`test_adam_through_its_fused_kernel` says why and how close they are).
"""

from __future__ import annotations

import copy
import io

import pytest
import torch

from neurofptt.learning.adam_step import AdamStep
from neurofptt.learning.base import BatchResult, Rule
from neurofptt.learning.fptt import FPTT
from neurofptt.learning.losses import ClassPrior, auxiliary_loss
from neurofptt.learning.objectives import loss_scoring, pooled_mean, step_loss
from neurofptt.learning.onestep import LIFStepGradient, surrogate_backward
from neurofptt.models import SpikingRNN
from neurofptt.models.alif import AdaptiveSpikingRNN
from neurofptt.models.base import detach_state
from neurofptt.models.spiking import SURROGATES, StackedSpikingRNN, make_surrogate
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.fake import add_weight_quantization, set_weight_quantization

N_IN, N_REC, N_OUT, BATCH, STEPS = 6, 12, 3, 5, 7


class PlainFPTT(Rule):
    """FPTT as it was before the local gradient and the fused update (verbatim)."""

    label_weight = FPTT.label_weight

    def __init__(
        self,
        model,
        optimizer,
        *,
        alpha=0.5,
        mix=0.5,
        period=1,
        form="dual",
        clip=1.0,
        n_classes=None,
        schedule="linear",
        constant_beta=0.5,
        reset_to_mean=False,
        target="label",
    ) -> None:
        super().__init__(model, optimizer, clip, target)
        self.alpha, self.mix, self.period, self.form = alpha, mix, period, form
        self.schedule, self.constant_beta = schedule, constant_beta
        self.reset_to_mean = reset_to_mean
        self.prior = ClassPrior(n_classes or model.n_out)
        params = self.trainable()
        self._params = list(params.items())
        self.running_mean = {n: p.detach().clone() for n, p in params.items()}
        self.memory = {n: torch.zeros_like(p) for n, p in params.items()}

    def end_epoch(self) -> None:
        self.prior.end_epoch()
        if self.reset_to_mean:
            with torch.no_grad():
                for name, p in self.trainable().items():
                    p.copy_(self.running_mean[name])

    def regularizer_grad(self, name: str, param: torch.Tensor) -> torch.Tensor:
        pull = self.alpha * (param.detach() - self.running_mean[name])
        if self.form == "dual":
            return pull - self.memory[name]
        return pull - 0.5 * self.memory[name]

    @torch.no_grad()
    def _add_regularizer_grads(self) -> dict[str, torch.Tensor]:
        loss_grads = {}
        for name, p in self._params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if self.form == "slide":
                loss_grads[name] = p.grad.clone()
            p.grad.add_(self.regularizer_grad(name, p))
        return loss_grads

    @torch.no_grad()
    def _update_running_mean(self, loss_grads: dict[str, torch.Tensor]) -> None:
        a, b = self.alpha, self.mix
        for name, p in self._params:
            w_bar = self.running_mean[name]
            if self.form == "dual":
                lam = self.memory[name]
                lam.sub_(p - w_bar, alpha=a)
                w_bar.mul_(1 - b).add_(p, alpha=b).sub_(lam, alpha=b / a)
            else:
                self.memory[name] = loss_grads[name]
                w_bar.add_(p).mul_(0.5).sub_(loss_grads[name], alpha=1 / (2 * a))

    def update_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss_grads = self._add_regularizer_grads()
        self._clip_and_step()
        self._update_running_mean(loss_grads)

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        self.check_batch(x, y)
        self.model.train()
        steps = x.shape[1]
        scoring = None if self.target == "label" else loss_scoring(y, self.target, "all", steps)
        state = self.model.initial_state(x.shape[0])
        total = 0.0
        n_chunks = 0
        for start in range(0, steps, self.period):
            state = detach_state(state)
            end = min(start + self.period, steps)
            losses = []
            for t in range(start, end):
                logits, state = self.model.step(x[:, t], state)
                if scoring is not None:
                    scored = scoring.counts[t] > 0
                    losses.append(step_loss(logits, scoring.at(t), self.target) if scored else None)
            if scoring is None:
                loss = auxiliary_loss(logits, y, self.prior.table, self.label_weight(end, steps))
            else:
                loss = pooled_mean(losses, scoring.counts[start:end])
                if loss is None:
                    continue
            self.update_step(loss)
            total += float(loss.detach())
            n_chunks += 1
        if self.target == "label":
            self.prior.observe(logits, y)
        return BatchResult(loss=total / n_chunks if n_chunks else 0.0, logits=logits.detach())


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.2, foreach=True),
    "adamw-single": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.2, foreach=False),
    "adamw-fused": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.2, fused=True),
    "adam-decay": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1, foreach=True),
}


def lif(dtype: torch.dtype, **kwargs) -> SpikingRNN:
    torch.manual_seed(3)
    return SpikingRNN(N_IN, N_REC, N_OUT, input_gain=3.0, **kwargs).to(dtype)


def batch(dtype: torch.dtype, target: str = "label", steps: int = STEPS):
    """Random input spikes and targets of each kind; per-step labels leave steps unlabelled."""
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(BATCH, steps, N_IN, generator=g) < 0.4).to(dtype)
    if target == "label":
        return x, torch.randint(0, N_OUT, (BATCH,), generator=g)
    if target == "regression":
        return x, torch.randn(BATCH, steps, N_OUT, generator=g, dtype=dtype)
    y = torch.randint(0, N_OUT, (BATCH, steps), generator=g)
    y[torch.rand(BATCH, steps, generator=g) < 0.4] = -1
    y[:, 2] = -1  # a step without any target: no update there
    return x, y


def run_pair(model, *, optimizer="sgd", plain_optimizer=None, epochs=2, target="label", **kw):
    """Train a copy of ``model`` with each implementation (the plain one with
    ``plain_optimizer``, by default the same as the fused one); return both rules and their
    batch results."""
    x, y = batch(next(model.parameters()).dtype, target)
    rules, results = [], []
    for cls, name in ((FPTT, optimizer), (PlainFPTT, plain_optimizer or optimizer)):
        net = copy.deepcopy(model)
        rule = cls(net, OPTIMIZERS[name](net.parameters()), target=target, **kw)
        out = []
        for _ in range(epochs):  # the second epoch's auxiliary loss uses a learned class table
            out.append(rule.train_batch(x, y))
            rule.end_epoch()
        rules.append(rule)
        results.append(out)
    return rules, results


def differences(rules, results) -> dict[str, float]:
    """The largest relative difference (``max |a - b| / max |b|``) of each compared quantity."""
    fused, plain = rules
    pairs = []
    for (name, p), (_, q) in zip(fused._params, plain._params, strict=True):
        pairs += [
            (f"weights {name}", p, q),
            (f"W_bar {name}", fused.running_mean[name], plain.running_mean[name]),
            (f"memory {name}", fused.memory[name], plain.memory[name]),
        ]
        state, ref = fused.optimizer.state[p], plain.optimizer.state[q]
        assert state.keys() == ref.keys()
        pairs += [(f"{key} {name}", state[key], ref[key]) for key in state]
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        pairs += [
            (f"loss {i}", torch.tensor(a.loss), torch.tensor(b.loss)),
            (f"logits {i}", a.logits, b.logits),
        ]
    out = {}
    for label, a, b in pairs:
        a, b = a.detach().double(), b.detach().double()
        scale = float(b.abs().max())
        out[label] = float((a - b).abs().max()) / scale if scale else float((a - b).abs().max())
    return out


def assert_same(rules, results) -> None:
    """Bit for bit: every difference is zero."""
    assert {k: v for k, v in differences(rules, results).items() if v} == {}


def moved(rule: FPTT, model: torch.nn.Module) -> bool:
    pairs = zip(rule.model.parameters(), model.parameters(), strict=True)
    return any(not torch.equal(p, q) for p, q in pairs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("clip", [0.0, 0.5])
@pytest.mark.parametrize("form", ["dual", "slide"])
def test_local_fused_fptt_equals_plain_fptt(form: str, clip: float, dtype: torch.dtype) -> None:
    """The local gradient and the fused update against the plain implementation, bit for bit;
    ``clip = 0.5`` clips at most steps here, 0 never."""
    model = lif(dtype)
    rules, results = run_pair(model, form=form, clip=clip)
    assert rules[0].one_step is not None and rules[0].update.adam is None
    assert moved(rules[0], model)
    assert_same(rules, results)


#: bound on the relative difference that Adam's fused kernel makes; the largest seen in these
#: tests is 1.7e-14, on the dual variable (a running sum of differences of nearly equal weights,
#: so its relative error is larger than theirs); the weights and moments differ by 1e-15 at most
ADAM_RTOL = 1e-12


@pytest.mark.parametrize("clip", [0.0, 0.5])
@pytest.mark.parametrize("form", ["dual", "slide"])
@pytest.mark.parametrize(
    "optimizer, plain",
    [
        ("adamw", "adamw"),
        ("adamw", "adamw-fused"),
        ("adamw-single", "adamw-single"),
        ("adam-decay", "adam-decay"),
    ],
)
def test_adam_through_its_fused_kernel(optimizer: str, plain: str, form: str, clip: float):
    """Adam and AdamW run torch's fused kernel on the flat buffers
    (:mod:`neurofptt.learning.adam_step`).  Its numbers cannot equal the ``foreach`` and
    single-tensor kernels' bit for bit, since fusing rounds some operations differently, nor
    even ``AdamW(fused=True)``'s per parameter, since the kernel rounds its vectorized body and
    its scalar tail differently and the layout decides which elements fall in the tail.  In
    float64 the difference stays below ``ADAM_RTOL`` relative after 14 updates (about one unit
    in the last place per step); in float32 such a difference can flip a spike, so only float64
    is compared.  Everything before the optimizer is the same bit for bit (the SGD tests)."""
    model = lif(torch.float64)
    rules, results = run_pair(
        model, optimizer=optimizer, plain_optimizer=plain, form=form, clip=clip
    )
    assert rules[0].update.adam is not None
    assert max(differences(rules, results).values()) < ADAM_RTOL


@pytest.mark.parametrize("target", ["label_per_step", "regression"])
@pytest.mark.parametrize("form", ["dual", "slide"])
def test_per_step_targets_equal_plain_fptt(form: str, target: str) -> None:
    rules, results = run_pair(lif(torch.float64), target=target, form=form, clip=0.5)
    assert_same(rules, results)


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_every_surrogate_and_reset_equals_plain_fptt(surrogate: str, reset: str) -> None:
    model = lif(torch.float64, surrogate_name=surrogate, reset=reset, slope=3.0)
    rules, results = run_pair(model, form="dual", clip=0.5)
    assert rules[0].one_step is not None
    assert_same(rules, results)


@pytest.mark.parametrize("form", ["dual", "slide"])
def test_fake_quantized_weights_equal_plain_fptt(form: str) -> None:
    """The quantizer's straight-through gradient is the local form's, with the quantized
    weight carrying the gradient back to the spikes."""
    model = lif(torch.float64)
    add_weight_quantization(model, HardwareConfig(n_in=N_IN, n_rec=N_REC, n_out=N_OUT))
    set_weight_quantization(model, True)
    rules, results = run_pair(model, form=form, clip=0.5)
    assert rules[0].one_step is not None
    assert_same(rules, results)


OTHER_MODELS = {
    "alif": lambda: AdaptiveSpikingRNN(N_IN, N_REC, N_OUT, input_gain=3.0),
    "stacked": lambda: StackedSpikingRNN(N_IN, [N_REC, 5], N_OUT, input_gain=3.0),
}


@pytest.mark.parametrize("kind", sorted(OTHER_MODELS))
@pytest.mark.parametrize("form", ["dual", "slide"])
def test_other_models_take_the_autograd_path(kind: str, form: str) -> None:
    torch.manual_seed(3)
    rules, results = run_pair(OTHER_MODELS[kind]().double(), form=form, clip=0.5)
    assert rules[0].one_step is None
    assert_same(rules, results)


@pytest.mark.parametrize("form", ["dual", "slide"])
def test_chunks_take_the_autograd_path(form: str) -> None:
    """FPTT-K (``period > 1``) needs BPTT inside a chunk: the graph, with the fused update."""
    rules, results = run_pair(lif(torch.float64), form=form, clip=0.5, period=3)
    assert rules[0].one_step is None
    assert_same(rules, results)


def test_every_surrogate_has_its_snntorch_function() -> None:
    for name in SURROGATES:
        backward = surrogate_backward(make_surrogate(name, 2.5))
        assert backward is not None and list(backward[1].values()) == [2.5]


def test_local_form_is_refused_where_it_does_not_apply() -> None:
    model = lif(torch.float64)
    params = list(model.parameters())
    assert LIFStepGradient.for_model(model, params) is not None
    assert LIFStepGradient.for_model(model, params[:2]) is None  # a frozen weight
    model.rec.lif.spike_grad = lambda u: (u > 0).float()  # a surrogate of one's own
    assert LIFStepGradient.for_model(model, params) is None
    rule = FPTT(model, OPTIMIZERS["sgd"](model.parameters()))
    assert rule.one_step is None


def test_entries_set_from_outside_are_taken_in() -> None:
    """``running_mean`` and ``memory`` entries set to tensors of one's own (a state loaded by
    hand) are what the next update starts from."""
    model = lif(torch.float64)
    rules, _ = run_pair(model, epochs=1, form="slide", clip=0.5)
    x, y = batch(torch.float64)
    for rule in rules:
        for name, p in rule._params:
            rule.running_mean[name] = torch.full_like(p, 0.25)
            rule.memory[name] = torch.full_like(p, -0.5)
    results = [[rule.train_batch(x, y)] for rule in rules]
    assert_same(rules, results)


def test_adam_step_falls_back_to_the_optimizer_where_it_does_not_cover_it() -> None:
    model = lif(torch.float64)
    params = list(model.parameters())
    amsgrad = torch.optim.AdamW(params, amsgrad=True)
    step = AdamStep.for_optimizer(amsgrad, params, [[0, 1, 2]])
    assert step is not None and not step.covers()  # and before the first step: no state
    rules, _ = run_pair(model, optimizer="adamw", form="dual", clip=0.5)
    adam = rules[0].update.adam
    assert adam is not None and adam.covers()
    handle = adam.optimizer.register_step_post_hook(lambda *args: None)
    assert not adam.covers()
    handle.remove()
    assert AdamStep.for_optimizer(torch.optim.SGD(params, lr=0.1), params, [[0, 1, 2]]) is None


@pytest.mark.parametrize("form", ["dual", "slide"])
def test_resumed_training_continues_exactly(form: str) -> None:
    """Weights, optimizer and rule state through a checkpoint (a fresh model, optimizer and
    rule load them) continue as if never interrupted: the loaded moments, ``W_bar`` and
    ``lam``/``g`` are taken into the buffers, and the loaded param group's rate is used."""
    model = lif(torch.float64)
    x, y = batch(torch.float64)

    def fresh():
        net = copy.deepcopy(model)
        return FPTT(net, OPTIMIZERS["adamw"](net.parameters()), form=form, clip=0.5)

    straight, first = fresh(), fresh()
    straight.train_batch(x, y)
    first.train_batch(x, y)
    saved = io.BytesIO()
    parts = {"model": first.model, "optimizer": first.optimizer, "rule": first}
    torch.save({key: part.state_dict() for key, part in parts.items()}, saved)
    saved.seek(0)
    loaded = torch.load(saved, weights_only=True)
    resumed = fresh()
    resumed.model.load_state_dict(loaded["model"])
    resumed.optimizer.load_state_dict(loaded["optimizer"])
    resumed.load_state_dict(loaded["rule"])
    for rule in (straight, resumed):  # a new epoch's rate, set on the loaded param group
        rule.optimizer.param_groups[0]["lr"] = 0.02
    results = [[straight.train_batch(x, y)], [resumed.train_batch(x, y)]]
    assert_same([straight, resumed], results)


def test_a_model_moved_to_another_dtype_is_taken_back() -> None:
    """``model.float()`` gives the parameters new storage: the next update moves the buffers,
    ``W_bar`` and ``lam`` to it, and training goes on in float32."""
    model = lif(torch.float64)
    rule = FPTT(model, OPTIMIZERS["adamw"](model.parameters()), clip=0.5)
    x, y = batch(torch.float64)
    rule.train_batch(x, y)
    before = {name: w.float() for name, w in rule.running_mean.items()}
    model.float()
    rule.train_batch(x.float(), y)
    update = rule.update
    for (name, p), view in zip(rule._params, update.weight_views, strict=True):
        assert p.dtype == torch.float32 and p.data_ptr() == view.data_ptr()
        assert rule.running_mean[name].dtype == torch.float32
        assert not torch.equal(rule.running_mean[name], before[name])


def test_gradients_replaced_before_the_update_are_taken_in() -> None:
    """A ``.grad`` replaced between the backward pass and the update (as combining it over the
    ranks of a data-parallel run does) is the gradient the update uses."""
    model = lif(torch.float64)
    rules = [
        cls(net, OPTIMIZERS["sgd"](net.parameters()), clip=0.5, period=2)
        for cls, net in ((FPTT, copy.deepcopy(model)), (PlainFPTT, copy.deepcopy(model)))
    ]
    for rule in rules:
        loss = sum((p * p).sum() for _, p in rule._params)
        rule.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for _, p in rule._params:
            p.grad = p.grad * 0.5  # a new tensor, as an all-reduce's result is
        if isinstance(rule, FPTT):
            rule._apply_update()
        else:
            rule._add_regularizer_grads()
            rule._clip_and_step()
            rule._update_running_mean({})
    assert_same(rules, [[], []])
