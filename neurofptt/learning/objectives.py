"""Per-step losses and metrics for the three kinds of target a task can have.

Every rule scores the output ``o_t`` of a step against the step's target with :func:`step_loss`,
so the same rule trains a terminal classifier, a per-step classifier and a regressor:

* ``"label"``: ``y`` is ``(B,)``; each step's target is the sequence's label (rules weight the
  steps, e.g. only the last one); cross-entropy; metric: accuracy of the last step's arg-max.
* ``"label_per_step"``: ``y`` is ``(B, T)``; step ``t`` is scored against ``y[:, t]``;
  cross-entropy; metric: accuracy over every step.
* ``"regression"``: ``y`` is ``(B, T, n_out)``; mean squared error (mean over batch and outputs);
  metric: MSE over every step.

For per-step targets every step carries a target, so a rule's loss must cover all steps
(``loss_steps = "all"``); :func:`check_loss_steps_for` refuses anything else with the fix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TARGETS


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ConfigError(f"unknown target kind {target!r}; choose one of {TARGETS}")
    return target


def step_target(y: torch.Tensor, t: int, target: str) -> torch.Tensor:
    """The part of ``y`` that scores step ``t``."""
    return y if target == "label" else y[:, t]


def step_loss(output: torch.Tensor, y_t: torch.Tensor, target: str) -> torch.Tensor:
    """Batch-mean loss of one step's output against that step's target (see the module doc)."""
    if target == "regression":
        return F.mse_loss(output, y_t)
    return F.cross_entropy(output, y_t)


def per_sample_loss(output: torch.Tensor, y_t: torch.Tensor, target: str) -> torch.Tensor:
    """``(B,)`` losses of one step; their mean is :func:`step_loss`."""
    if target == "regression":
        return (output - y_t).pow(2).reshape(output.shape[0], -1).mean(dim=1)
    return F.cross_entropy(output, y_t, reduction="none")


def step_loss_and_grad(
    output: torch.Tensor, y_t: torch.Tensor, target: str, weight: float
) -> tuple[float, torch.Tensor]:
    """``weight * step_loss`` and its gradient with respect to ``output`` (no autograd).

    Cross-entropy: ``(softmax(o) - onehot(y)) / B``; MSE: ``2 (o - y) / (B n_out)``.
    """
    loss = weight * float(step_loss(output, y_t, target))
    if target == "regression":
        grad = 2.0 * (output - y_t) / output.numel()
    else:
        grad = F.softmax(output, dim=-1)
        grad[torch.arange(output.shape[0]), y_t] -= 1.0
        grad = grad / output.shape[0]
    return loss, weight * grad


def check_loss_steps_for(loss_steps: object, target: str, option: str) -> None:
    """Per-step targets need a loss at every step; ``option`` names the setting to change."""
    if target != "label" and loss_steps != "all":
        raise ConfigError(
            f"a {target!r} task has a target at every step, but {option} = {loss_steps!r} "
            f"scores only some steps; set {option} = 'all'"
        )


def metric_name(target: str) -> str:
    return "mse" if target == "regression" else "accuracy"


def metric(outputs: torch.Tensor, y: torch.Tensor, target: str) -> float:
    """The task's score of ``(B, T, n_out)`` outputs: accuracy (higher is better) or MSE."""
    outputs = outputs.detach()
    if target == "label":
        return float((outputs[:, -1].argmax(-1) == y).float().mean())
    if target == "label_per_step":
        return float((outputs.argmax(-1) == y).float().mean())
    return float(F.mse_loss(outputs, y))


def higher_is_better(target: str) -> bool:
    return target != "regression"
