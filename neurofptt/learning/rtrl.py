"""Real-time recurrent learning (Williams & Zipser 1989): the exact gradient, computed forward.

For a model in the cell protocol write one step as ``(o_t, s_t) = F(x_t, s_{t-1}; theta)``, with
``s`` the flattened state (``N`` numbers per sample) and ``theta`` the ``P`` trainable parameters.
RTRL carries the sensitivity ``M_t = ds_t/dtheta`` (``N x P`` per sample) forward in time:

    M_0 = 0                                      (the initial state does not depend on theta)
    M_t = (dF_s/ds) M_{t-1} + dF_s/dtheta
    dL/dtheta = sum_t w_t (dCE_t/do_t) [ (dF_o/ds) M_{t-1} + dF_o/dtheta ]

where the Jacobians are evaluated at ``(x_t, s_{t-1}, theta)`` and ``w_t`` are the per-step loss
weights of :func:`neurofptt.learning.tbptt.step_weights` (``"last"``: cross-entropy at the last step
only; ``"all"``: the mean over steps; per-step labels with unlabelled steps: the scored samples'
share ``n_t / N``, :func:`~neurofptt.learning.objectives.loss_scoring`).  By the chain rule this
is the same sum of products of the same local Jacobians as BPTT, accumulated in the opposite
order, so it equals the BPTT gradient up to rounding, yet needs no stored history: memory is
``O(N P)`` per sample, independent of ``T``, and the cost per step ``O(N^2 P)``.  That is why it
is only for tiny networks; models whose sensitivity has more than ``max_sensitivity`` entries
(default 20,000) are refused.

The local Jacobians are computed generically from the model's ``step``:

* ``jacobian="func"``: ``torch.func.vmap(torch.func.jacrev(step))`` over the batch with
  ``torch.func.functional_call`` (fast; needs every ``autograd.Function`` in the step to support
  functorch transforms);
* ``jacobian="autograd"``: per sample, one reverse-mode pass per output row with
  ``torch.autograd.grad`` (works with any differentiable step, e.g. snntorch's surrogate spike
  functions, which do not support functorch);
* ``jacobian="auto"`` (default): ``"func"``, falling back to ``"autograd"`` when the first step
  cannot be transformed.

Samples are assumed independent inside ``step`` (no batch statistics), which holds for every model
in :mod:`neurofptt.models`.  The gradient is accumulated online and applied as one update per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from neurofptt.errors import ConfigError
from neurofptt.learning.base import BatchResult, Rule, RuleOptions
from neurofptt.learning.objectives import (
    check_loss_steps_for,
    has_target,
    loss_scoring,
    step_loss,
)
from neurofptt.learning.tbptt import check_loss_steps
from neurofptt.models.base import RecurrentModel, State, check_sequence

JACOBIANS = ("auto", "func", "autograd")


@dataclass(frozen=True)
class RTRLOptions(RuleOptions):
    """The ``[train.rtrl]`` table: which steps carry a loss (``"last"`` or ``"all"``), the
    largest sensitivity (state numbers times parameters) the rule agrees to carry, and how each
    step's Jacobians are formed (see the module docstring)."""

    table = "train.rtrl"

    loss_steps: str = "last"
    max_sensitivity: int = 20_000
    jacobian: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_loss_steps(self.loss_steps)
        check_jacobian(self.jacobian)
        if self.max_sensitivity < 1:
            raise ConfigError(
                f"RTRL max_sensitivity must be at least 1 entry, got {self.max_sensitivity}"
            )


# (values (B, R), d/dstate (B, R, N), d/dtheta (B, R, P)); rows R = outputs then state.
StepJacobian = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class _Stepper(nn.Module):
    """``forward`` = the wrapped model's ``step``, so ``functional_call`` can drive it."""

    def __init__(self, model: RecurrentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.model.step(x, state)


class _StateLayout:
    """Flattens a state tuple of ``(B, ...)`` tensors to ``(B, N)`` and back."""

    def __init__(self, state: State) -> None:
        self.shapes = [tuple(s.shape[1:]) for s in state]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.dtypes = [s.dtype for s in state]
        self.size = sum(self.sizes)

    def flatten(self, state: State) -> torch.Tensor:
        return torch.cat([s.reshape(s.shape[0], -1) for s in state], dim=1)

    def unflatten(self, flat: torch.Tensor) -> State:
        parts = torch.split(flat, self.sizes, dim=1)
        return tuple(
            p.reshape(flat.shape[0], *shape).to(dtype)
            for p, shape, dtype in zip(parts, self.shapes, self.dtypes, strict=True)
        )


def check_jacobian(jacobian: str) -> None:
    if jacobian not in JACOBIANS:
        raise ConfigError(f"RTRL jacobian {jacobian!r} is unknown; use one of {JACOBIANS}")


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def sensitivity_entries(model: RecurrentModel) -> tuple[int, int]:
    """``(N, P)``: state numbers per sample and trainable parameters; RTRL stores ``N * P``."""
    n_state = _StateLayout(model.initial_state(1)).size
    n_params = sum(p.numel() for p in trainable_parameters(model).values())
    return n_state, n_params


def check_size(model: RecurrentModel, max_sensitivity: int = RTRLOptions.max_sensitivity) -> None:
    """Refuse models whose sensitivity ``dh/dtheta`` has more than ``max_sensitivity`` entries."""
    n_state, n_params = sensitivity_entries(model)
    if n_state * n_params > max_sensitivity:
        raise ConfigError(
            f"RTRL carries dstate/dtheta: {n_state} state values x {n_params} parameters = "
            f"{n_state * n_params} entries per sample, more than the limit of {max_sensitivity}; "
            "RTRL is for tiny networks: shrink the hidden layer, or use bptt/tbptt/fptt"
        )


def _func_jacobians(
    stepper: _Stepper,
    layout: _StateLayout,
    names: list[str],
    x_t: torch.Tensor,
    s: torch.Tensor,
) -> StepJacobian:
    params = {f"model.{n}": p.detach() for n, p in trainable_parameters(stepper.model).items()}

    def single(s_vec: torch.Tensor, x_vec: torch.Tensor, theta: dict[str, torch.Tensor]):
        out, new = torch.func.functional_call(
            stepper, theta, (x_vec.unsqueeze(0), layout.unflatten(s_vec.unsqueeze(0)))
        )
        rows = torch.cat([out.reshape(-1), layout.flatten(new).reshape(-1)])
        return rows, rows

    jac = torch.func.vmap(
        torch.func.jacrev(single, argnums=(0, 2), has_aux=True), in_dims=(0, 0, None)
    )
    (d_state, d_theta), values = jac(s, x_t, params)
    batch, rows = values.shape
    d_params = torch.cat([d_theta[f"model.{n}"].reshape(batch, rows, -1) for n in names], dim=2)
    return values, d_state, d_params


def _autograd_jacobians(
    model: RecurrentModel,
    layout: _StateLayout,
    names: list[str],
    x_t: torch.Tensor,
    s: torch.Tensor,
) -> StepJacobian:
    params = trainable_parameters(model)
    plist = [params[n] for n in names]
    values, d_state, d_params = [], [], []
    for b in range(s.shape[0]):
        s_b = s[b : b + 1].detach().requires_grad_(True)
        with torch.enable_grad():
            out, new = model.step(x_t[b : b + 1], layout.unflatten(s_b))
            rows = torch.cat([out.reshape(-1), layout.flatten(new).reshape(-1)])
        js, jp = [], []
        for r in range(rows.shape[0]):
            if rows.requires_grad:
                grads = torch.autograd.grad(
                    rows[r], [s_b, *plist], retain_graph=True, allow_unused=True
                )
            else:
                grads = (None,) * (1 + len(plist))
            js.append(torch.zeros_like(s_b[0]) if grads[0] is None else grads[0][0])
            jp.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1)
                        for g, p in zip(grads[1:], plist, strict=True)
                    ]
                )
            )
        values.append(rows.detach())
        d_state.append(torch.stack(js))
        d_params.append(torch.stack(jp))
    return torch.stack(values), torch.stack(d_state), torch.stack(d_params)


def rtrl_run(
    model: RecurrentModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_steps: str = RTRLOptions.loss_steps,
    max_sensitivity: int = RTRLOptions.max_sensitivity,
    jacobian: str = RTRLOptions.jacobian,
    target: str = "label",
) -> tuple[dict[str, torch.Tensor], float, torch.Tensor, str]:
    """Forward a batch with RTRL.

    Returns ``(gradients by parameter name, loss, last logits, jacobian method used)``.  The loss
    is ``sum_t w_t l_t`` (see :func:`~neurofptt.learning.tbptt.step_weights`; ``l_t`` is
    :func:`~neurofptt.learning.objectives.step_loss`); the model's weights are not changed and no
    ``.grad`` is touched.
    """
    check_sequence(x, model.n_in)
    check_loss_steps(loss_steps)
    check_loss_steps_for(loss_steps, target, "train.rtrl.loss_steps")
    check_jacobian(jacobian)
    check_size(model, max_sensitivity)
    batch, steps = x.shape[0], x.shape[1]
    scoring = loss_scoring(y, target, loss_steps, steps)
    weights = scoring.weights
    params = trainable_parameters(model)
    names = list(params)
    n_params = sum(p.numel() for p in params.values())
    state0 = model.initial_state(batch)
    layout = _StateLayout(state0)
    s = layout.flatten(state0).detach()
    dtype = s.dtype
    stepper = _Stepper(model)
    sens = torch.zeros(batch, layout.size, n_params, dtype=dtype, device=s.device)
    grad = torch.zeros(n_params, dtype=dtype, device=s.device)
    loss = 0.0
    method = jacobian
    out = s
    for t in range(steps):
        if method == "autograd":
            values, d_state, d_params = _autograd_jacobians(model, layout, names, x[:, t], s)
        else:
            try:
                values, d_state, d_params = _func_jacobians(stepper, layout, names, x[:, t], s)
            except Exception:
                if method == "func":
                    raise
                # The step cannot be transformed (e.g. an autograd.Function without functorch
                # support, like snntorch's spikes); the reverse-mode path is equally exact and
                # re-raises any genuine error of the model.
                method = "autograd"
                values, d_state, d_params = _autograd_jacobians(model, layout, names, x[:, t], s)
        n_out = values.shape[1] - layout.size
        out, s = values[:, :n_out], values[:, n_out:]
        if weights[t] != 0.0:
            o = out.detach().requires_grad_(True)
            with torch.enable_grad():
                weighted = weights[t] * step_loss(o, scoring.at(t), target)
                (err,) = torch.autograd.grad(weighted, o)
            # dCE/dtheta = err . (dF_o/ds M_{t-1} + dF_o/dtheta), summed over the batch
            d_out = torch.baddbmm(d_params[:, :n_out], d_state[:, :n_out], sens)
            grad += torch.einsum("bo,bop->p", err.to(dtype), d_out)
            loss += float(weighted.detach())
        # M_t = dF_s/ds M_{t-1} + dF_s/dtheta
        sens = torch.baddbmm(d_params[:, n_out:], d_state[:, n_out:], sens)
    grads: dict[str, torch.Tensor] = {}
    offset = 0
    for name in names:
        p = params[name]
        grads[name] = grad[offset : offset + p.numel()].reshape(p.shape).to(p.dtype).clone()
        offset += p.numel()
    return grads, loss, out, "func" if method == "auto" else method


def rtrl_gradients(
    model: RecurrentModel,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_steps: str = RTRLOptions.loss_steps,
    *,
    max_sensitivity: int = RTRLOptions.max_sensitivity,
    jacobian: str = RTRLOptions.jacobian,
    target: str = "label",
) -> dict[str, torch.Tensor]:
    """The exact gradient of ``sum_t w_t l_t`` by RTRL, keyed by parameter name."""
    grads, _, _, _ = rtrl_run(
        model,
        x,
        y,
        loss_steps=loss_steps,
        max_sensitivity=max_sensitivity,
        jacobian=jacobian,
        target=target,
    )
    return grads


class RTRL(Rule):
    """Exact online gradient by forward sensitivities; one update per batch (tiny networks only)."""

    name = "rtrl"
    Options = RTRLOptions
    # exact for every model (rtrl_gradients), but training spiking networks with it is too slow
    # to be useful: the list is what is verified
    models = ("rnn", "lstm", "gru")

    def __init__(
        self,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        *,
        loss_steps: str = RTRLOptions.loss_steps,
        clip: float = 1.0,
        max_sensitivity: int = RTRLOptions.max_sensitivity,
        jacobian: str = RTRLOptions.jacobian,
        target: str = "label",
    ) -> None:
        super().__init__(model, optimizer, clip, target)
        RTRLOptions(  # the one place the options are checked
            loss_steps=loss_steps, max_sensitivity=max_sensitivity, jacobian=jacobian
        )
        check_loss_steps_for(loss_steps, target, "train.rtrl.loss_steps")
        check_size(model, max_sensitivity)
        self.loss_steps, self.max_sensitivity, self.jacobian = loss_steps, max_sensitivity, jacobian

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        self.check_batch(x, y)
        self.model.train()
        grads, loss, logits, method = rtrl_run(
            self.model,
            x,
            y,
            loss_steps=self.loss_steps,
            max_sensitivity=self.max_sensitivity,
            jacobian=self.jacobian,
            target=self.target,
        )
        self.jacobian = method  # "auto" resolved once: later batches skip the probe
        if not has_target(y, self.target):  # nothing to learn from: no update
            return BatchResult(loss=loss, logits=logits.detach())
        params = self.trainable()
        self.optimizer.zero_grad(set_to_none=True)
        for name, g in grads.items():
            params[name].grad = g
        self._clip_and_step()
        return BatchResult(loss=loss, logits=logits.detach())
