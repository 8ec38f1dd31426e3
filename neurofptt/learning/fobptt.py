"""Fractional-order BPTT (FO-BPTT): BPTT gradients, fractional-order gradient descent.

The FO-BPTT paper (Abirami & Azariya) replaces the gradient in ``theta_{k+1} = theta_k - eta g`` by
a fractional derivative of order ``alpha`` but gives no discrete formula.  This module uses the
common first-term truncation of the Caputo derivative with the previous iterate as lower terminal
(as in e.g. Pu et al. 2015 and Wang et al. 2017), element-wise per weight:

    D^alpha L(theta_k) ~= dL/dtheta(theta_k) * (|theta_k - theta_{k-1}| + eps)^(1 - alpha)
                                               / Gamma(2 - alpha)

Why this form: the fractional power rule

    D^alpha (theta - c)^n = n! (theta - c)^(n - alpha) / Gamma(n + 1 - alpha),

applied term by term to the Taylor series of ``L``, has the first-order term
``L'(theta) (theta - c)^(1-alpha) / Gamma(2-alpha)``.  For ``0 < alpha < 1`` it is the leading
term of the Caputo derivative with lower terminal ``c`` (the seed's Eq. 1 has the Caputo form);
the literature continues the same expression to ``1 < alpha < 2``.  Taking ``c`` to be the
previous iterate (with ``|.|`` so the power is real) makes the factor a function of the last step
length only, so it costs one copy of the weights.  The factor is positive, so the scaled gradient
keeps the sign of the gradient; at ``alpha = 1`` it is ``(.)^0 / Gamma(1) = 1`` exactly and the
method *is* the base optimizer, bit for bit.  For small steps (``|dtheta| + eps`` well below 1)
``alpha < 1`` shrinks the gradient and ``alpha > 1`` enlarges it.  ``eps > 0`` keeps the factor
finite when a weight did not move (``0^(1-alpha)`` is infinite for ``alpha > 1``) and bounds it:

    alpha > 1:  factor <= eps^(1-alpha) / Gamma(2-alpha)      (e.g. 4.59 at alpha 1.25, eps 1e-3)
    alpha < 1:  factor >= eps^(1-alpha) / Gamma(2-alpha)      (e.g. 0.196 at alpha 0.75, eps 1e-3)

First step: there is no ``theta_{-1}``; it is taken to be ``theta_0``, so ``|dtheta| = 0`` and the
first factor is exactly ``eps^(1-alpha) / Gamma(2-alpha)`` for every weight (a damped first step for
``alpha < 1``, an amplified one for ``alpha > 1``).  Scale-invariant bases such as Adam take
essentially their usual first step: Adam's first update ``lr g / (|g| + eps_adam)`` does not change
when ``g`` is multiplied by a constant, up to Adam's own ``eps``.

:class:`FractionalOptimizer` applies the factor to the gradients and then calls *any* torch
optimizer's ``step``: the base optimizer's own terms (momentum, Adam moments, weight decay) act on
the scaled gradient as they would on a plain one.  It wraps an optimizer instance, so the rules'
``(model, optimizer)`` interface, the trainer's learning-rate schedule (``param_groups`` are shared
with the base) and its checkpoints work unchanged.  In :class:`FOBPTT` the gradient is clipped
(``clip``) before the factor is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from neurofptt.errors import CheckpointError, ConfigError
from neurofptt.learning.base import RuleOptions
from neurofptt.learning.bptt import BPTT
from neurofptt.models.base import RecurrentModel


@dataclass(frozen=True)
class FOBPTTOptions(RuleOptions):
    """The ``[train.fobptt]`` table: the fractional order ``alpha`` (1.25, the best order on the
    FO-BPTT paper's time-series task, its Table 4) and the floor ``eps``."""

    table = "train.fobptt"

    alpha: float = 1.25
    eps: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_order(self.alpha, self.eps)


def check_order(alpha: float, eps: float) -> tuple[float, float]:
    """Validate the fractional order and the floor; returns them as floats."""
    try:
        alpha_f, eps_f = float(alpha), float(eps)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"fractional order alpha and eps must be numbers, got {alpha!r} and {eps!r}"
        ) from exc
    if not (0.0 < alpha_f < 2.0):
        raise ConfigError(
            f"fractional order alpha must lie in the open interval (0, 2), got {alpha!r}; "
            "alpha = 1 is the ordinary gradient, Gamma(2 - alpha) is undefined at alpha >= 2"
        )
    if not (eps_f > 0.0 and math.isfinite(eps_f)):
        raise ConfigError(
            f"fractional eps must be a positive finite number, got {eps!r}; it keeps "
            "(|theta_k - theta_(k-1)| + eps)^(1 - alpha) finite when a weight did not move"
        )
    return alpha_f, eps_f


def fractional_factor(delta: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    """``(|delta| + eps)^(1 - alpha) / Gamma(2 - alpha)``, element-wise, in ``delta``'s dtype."""
    return delta.abs().add_(eps).pow_(1.0 - alpha).div_(math.gamma(2.0 - alpha))


class FractionalOptimizer(torch.optim.Optimizer):
    """Fractional-order gradient descent of order ``alpha`` on top of a torch optimizer.

    ``FractionalOptimizer(torch.optim.Adam(params, lr=1e-3), alpha=1.25)`` wraps an existing
    optimizer; :meth:`build` constructs the base from its class.  Each :meth:`step` multiplies every
    gradient in place by :func:`fractional_factor` of ``theta_k - theta_{k-1}`` (the previous step's
    change, zero on the first step), records ``theta_k``, then calls the base optimizer's ``step``.
    ``param_groups`` is the base optimizer's own list, so setting ``group["lr"]`` (or attaching an
    LR scheduler) acts on the base.  ``state_dict`` holds the base's state, ``alpha``, ``eps`` and
    the previous weights, so a resumed run continues exactly.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        alpha: float = FOBPTTOptions.alpha,
        eps: float = FOBPTTOptions.eps,
    ) -> None:
        if isinstance(optimizer, FractionalOptimizer):
            raise ConfigError("the optimizer is already fractional; wrap the base optimizer once")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"FractionalOptimizer wraps a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.alpha, self.eps = check_order(alpha, eps)
        self.base = optimizer
        self._linked = False
        # Optimizer.__init__ sets up the hook machinery; the groups are the base's own dicts.
        super().__init__(optimizer.param_groups, dict(optimizer.defaults))
        self.param_groups = optimizer.param_groups
        self._linked = True

    @classmethod
    def build(
        cls,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        alpha: float = FOBPTTOptions.alpha,
        eps: float = FOBPTTOptions.eps,
        **base_kwargs: Any,
    ) -> FractionalOptimizer:
        """``base(params, **base_kwargs)`` wrapped: ``build(model.parameters(), Adam, lr=1e-3)``."""
        check_order(alpha, eps)
        return cls(base(params, **base_kwargs), alpha=alpha, eps=eps)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not self._linked:  # called by Optimizer.__init__ on the base's groups
            super().add_param_group(param_group)
            return
        self.base.add_param_group(param_group)
        self.param_groups = self.base.param_groups

    @torch.no_grad()
    def scale_gradients(self) -> None:
        """Multiply each gradient by the fractional factor and record ``theta_k``."""
        for p in self._params():
            state = self.state[p]
            previous = state.get("previous")
            if p.grad is not None:
                if p.grad.is_sparse:
                    raise ConfigError("FractionalOptimizer does not support sparse gradients")
                delta = torch.zeros_like(p) if previous is None else p.detach() - previous
                p.grad.mul_(fractional_factor(delta, self.alpha, self.eps))
            if previous is None:
                state["previous"] = p.detach().clone()
            else:
                previous.copy_(p.detach())

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Evaluate ``closure`` (if any), scale the gradients, then take the base step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.scale_gradients()
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        previous = {
            i: self.state[p]["previous"].clone()
            for i, p in enumerate(self._params())
            if "previous" in self.state[p]
        }
        return {
            "base": self.base.state_dict(),
            "alpha": self.alpha,
            "eps": self.eps,
            "previous": previous,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        missing = {"base", "alpha", "eps", "previous"} - set(state_dict)
        if missing:
            raise CheckpointError(
                f"optimizer state lacks {sorted(missing)}: it was not saved by a "
                "FractionalOptimizer (was the checkpoint trained with another rule?)"
            )
        self.alpha, self.eps = check_order(state_dict["alpha"], state_dict["eps"])
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups
        params = self._params()
        self.state.clear()
        for i, value in state_dict["previous"].items():
            index = int(i)
            if not 0 <= index < len(params) or value.shape != params[index].shape:
                raise CheckpointError(
                    f"fractional optimizer state entry {i} does not match the model's parameters"
                )
            self.state[params[index]]["previous"] = value.detach().to(params[index]).clone()

    def __repr__(self) -> str:
        return f"FractionalOptimizer(alpha={self.alpha}, eps={self.eps}, base={self.base!r})"


class FOBPTT(BPTT):
    """BPTT gradients (cross-entropy at the last step, clipped) + :class:`FractionalOptimizer`.

    ``optimizer`` is the base optimizer; it is wrapped with order ``alpha`` and floor ``eps``.  A
    :class:`FractionalOptimizer` may be passed instead, in which case ``alpha`` and ``eps`` must be
    left unset.  At ``alpha = 1`` the rule is :class:`~neurofptt.learning.bptt.BPTT` bit for bit.
    The fractional state travels in ``optimizer.state_dict()``, which the trainer checkpoints.
    """

    name = "fobptt"
    Options = FOBPTTOptions

    def __init__(
        self,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        *,
        alpha: float | None = None,
        eps: float | None = None,
        clip: float = 1.0,
        target: str = "label",
    ) -> None:
        if isinstance(optimizer, FractionalOptimizer):
            if alpha is not None or eps is not None:
                raise ConfigError(
                    "FOBPTT got a FractionalOptimizer and alpha/eps; set the order in one place"
                )
        else:
            optimizer = FractionalOptimizer(
                optimizer,
                alpha=FOBPTTOptions.alpha if alpha is None else alpha,
                eps=FOBPTTOptions.eps if eps is None else eps,
            )
        super().__init__(model, optimizer, clip, target)
