"""Per-step losses and metrics for the three kinds of target a task can have.

Every rule scores the output ``o_t`` of a step against the step's target with :func:`step_loss`,
so the same rule trains a terminal classifier, a per-step classifier and a regressor:

* ``"label"``: ``y`` is ``(B,)``; each step's target is the sequence's label (rules weight the
  steps, e.g. only the last one); cross-entropy; metric: accuracy of the last step's arg-max.
* ``"label_per_step"``: ``y`` is ``(B, T)``; step ``t`` is scored against ``y[:, t]``;
  cross-entropy; metric: accuracy over the supervised units (:func:`supervised_predictions`).
  A label of ``-1`` (:data:`NO_TARGET`) marks a step without a target.
* ``"regression"``: ``y`` is ``(B, T, n_out)``; mean squared error (mean over batch and outputs);
  metric: MSE over every step.

Steps without a target
----------------------
Per-step labels may leave steps unlabelled (a recall window, a label known only at the end).
The loss and its gradient exist only where a target exists, and every labelled pair (sample,
step) that the loss scores counts equally: the sequence loss of a batch is the mean of
``CE(o_bt, y_bt)`` over its scored pairs.  Rules form it from per-step losses, so
:func:`step_loss` is the mean over a step's scored samples (``ignore_index = -1``) and the step
weights are ``w_t = n_t / N`` (``n_t`` scored samples at step ``t``, ``N`` in the batch;
:func:`loss_scoring`).  A batch without any scored pair makes no update.

Which labelled steps a rule's ``loss_steps`` scores (:func:`scored_steps`), per sample:
``"all"`` every labelled step, ``"last"`` the sample's last labelled step, a number ``k`` (e-prop)
its last ``k`` labelled steps.  With every step labelled these are the last step, all steps and
the last ``k`` steps, the weights are ``1``, ``1 / T`` and ``1 / k`` exactly as before, and every
loss and gradient is bit for bit the one of a fully labelled task.  Regression targets cover
every step, so a regression task's loss must cover all steps (``loss_steps = "all"``);
:func:`check_loss_steps_for` refuses anything else with the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TARGETS

#: the per-step label of a step without a target
NO_TARGET = -1


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ConfigError(f"unknown target kind {target!r}; choose one of {TARGETS}")
    return target


def step_target(y: torch.Tensor, t: int, target: str) -> torch.Tensor:
    """The part of ``y`` that scores step ``t``."""
    return y if target == "label" else y[:, t]


def step_loss(output: torch.Tensor, y_t: torch.Tensor, target: str) -> torch.Tensor:
    """Batch-mean loss of one step's output against that step's target (see the module doc).

    Per-step labels average over the samples with a target at this step (``-1`` is ignored);
    a step without any is a zero that keeps the graph, so a caller never sees a NaN from an
    empty mean.
    """
    if target == "regression":
        return F.mse_loss(output, y_t)
    if target == "label_per_step" and not bool((y_t != NO_TARGET).any()):
        return output.sum() * 0.0
    return F.cross_entropy(output, y_t, ignore_index=NO_TARGET)


def per_sample_loss(output: torch.Tensor, y_t: torch.Tensor, target: str) -> torch.Tensor:
    """``(B,)`` losses of one step; their mean over the samples with a target is
    :func:`step_loss` (a sample without a target at this step has loss 0)."""
    if target == "regression":
        return (output - y_t).pow(2).reshape(output.shape[0], -1).mean(dim=1)
    return F.cross_entropy(output, y_t, reduction="none", ignore_index=NO_TARGET)


def step_loss_and_grad(
    output: torch.Tensor, y_t: torch.Tensor, target: str, weight: float, count: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight * step_loss`` (a detached scalar tensor, so that a loop over steps never waits
    for the device) and its gradient with respect to ``output`` (no autograd).

    Cross-entropy: ``(softmax(o) - onehot(y)) / n`` on the ``n`` samples with a target at this
    step, 0 on the others (``n = B`` when every sample has one); MSE: ``2 (o - y) / (B n_out)``.
    ``count`` is ``n`` where the caller knows it (from its :class:`Scoring`), else it is counted
    here.
    """
    loss = weight * step_loss(output, y_t, target).detach()
    if target == "regression":
        return loss, weight * (2.0 * (output - y_t) / output.numel())
    grad = F.softmax(output, dim=-1)
    labelled = y_t != NO_TARGET
    if count is None:
        count = output.shape[0] if target == "label" else int(labelled.sum())
    if count == output.shape[0]:  # every sample labelled: the unmasked operations, bit for bit
        grad[torch.arange(output.shape[0], device=output.device), y_t] -= 1.0
        return loss, weight * (grad / output.shape[0])
    rows = torch.nonzero(labelled).squeeze(1)
    grad[rows, y_t[rows]] -= 1.0
    grad[~labelled] = 0.0
    return loss, weight * (grad / max(count, 1))


def has_target(y: torch.Tensor, target: str) -> bool:
    """Whether a batch has any target at all (only per-step labels can have none); a rule
    makes no update on a batch without one, so the optimizer's state does not move on zeros."""
    return target != "label_per_step" or bool((y != NO_TARGET).any())


def check_loss_steps_for(loss_steps: object, target: str, option: str) -> None:
    """Regression targets need a loss at every step; ``option`` names the setting to change.

    Per-step labels take any ``loss_steps``: it picks among each sample's labelled steps
    (:func:`scored_steps`).
    """
    if target == "regression" and loss_steps != "all":
        raise ConfigError(
            f"a {target!r} task has a target at every step, but {option} = {loss_steps!r} "
            f"scores only some steps; set {option} = 'all'"
        )


def uniform_weights(steps: int, loss_steps: str | int) -> list[float]:
    """The step weights when every sample is scored at the same steps: ``"last"``
    ``[0, ..., 0, 1]``, ``"all"`` ``[1/T] * T``, ``k`` ``1/k`` on the last ``k`` steps (all of
    them if ``k >= T``).  Callers check ``loss_steps`` with their own message."""
    if loss_steps == "last":
        return [0.0] * (steps - 1) + [1.0]
    if loss_steps == "all":
        return [1.0 / steps] * steps
    k = min(int(loss_steps), steps)
    return [0.0] * (steps - k) + [1.0 / k] * k


def scored_steps(labelled: torch.Tensor, loss_steps: str | int) -> torch.Tensor:
    """``(B, T)`` bool: the labelled steps ``loss_steps`` scores, per sample (module doc).

    ``labelled`` marks the steps with a target.  Counting the labelled steps from the end of
    each sample picks its last ``k`` of them without a loop over samples.
    """
    if loss_steps == "all":
        return labelled
    k = 1 if loss_steps == "last" else int(loss_steps)
    from_end = labelled.flip(1).cumsum(1).flip(1)  # labelled steps at or after each step
    return labelled & (from_end <= k)


@dataclass(frozen=True)
class Scoring:
    """What a batch's loss scores: ``targets`` (``y``; per-step labels with ``-1`` wherever
    the loss does not score), ``counts[t]`` samples scored at step ``t`` and the weights
    ``w_t`` of the per-step losses, so the sequence loss is ``sum_t w_t step_loss_t``."""

    targets: torch.Tensor
    counts: list[int]
    weights: list[float]
    target: str

    def at(self, t: int) -> torch.Tensor:
        """The targets of step ``t`` (:func:`step_target`)."""
        return step_target(self.targets, t, self.target)

    @property
    def any(self) -> bool:
        """Whether the batch scores any pair (sample, step) at all."""
        return sum(self.counts) > 0


def loss_scoring(y: torch.Tensor, target: str, loss_steps: str | int, steps: int) -> Scoring:
    """The :class:`Scoring` of a batch: for per-step labels the scored pairs of
    :func:`scored_steps` with ``w_t = n_t / N``; for the other kinds every sample at the steps
    of :func:`uniform_weights` (whose values ``n_t / N`` reproduces exactly when every step is
    labelled)."""
    batch = int(y.shape[0])
    if target != "label_per_step":
        weights = uniform_weights(steps, loss_steps)
        return Scoring(y, [batch if w else 0 for w in weights], weights, target)
    scored = scored_steps(y != NO_TARGET, loss_steps)
    counts = [int(n) for n in scored.sum(0).tolist()]
    total = sum(counts)
    weights = [n / total if total else 0.0 for n in counts]
    return Scoring(torch.where(scored, y, NO_TARGET), counts, weights, target)


def scored_units(y: torch.Tensor, target: str, loss_steps: str | int, steps: int) -> int:
    """The units a batch's loss averages over: its samples, or for per-step labels the
    (sample, step) pairs :func:`loss_scoring` scores."""
    if target != "label_per_step":
        return int(y.shape[0])
    return sum(loss_scoring(y, target, loss_steps, steps).counts)


def pooled_mean(
    losses: Sequence[torch.Tensor | None], counts: Sequence[int]
) -> torch.Tensor | None:
    """The mean over scored pairs of step losses that are each the mean over their step's
    ``counts[t]`` scored samples: ``sum_t n_t l_t / sum_t n_t`` (``None`` if nothing is scored).

    It is formed as ``sum_t r_t l_t / K`` over the ``K`` steps with a count, ``r_t = n_t K / N``,
    and ``r_t = 1`` is not multiplied: equal counts (every step labelled) give ``sum_t l_t / K``,
    the plain mean of the step losses with the same floating-point operations.
    """
    kept = [(loss, n) for loss, n in zip(losses, counts, strict=True) if n > 0]
    if not kept:
        return None
    k, total = len(kept), sum(n for _, n in kept)
    return sum(loss if n * k == total else loss * (n * k / total) for loss, n in kept) / k


def metric_name(target: str) -> str:
    return "mse" if target == "regression" else "accuracy"


def whole_samples(y: torch.Tensor) -> torch.Tensor:
    """Which samples of per-step labels ``y`` ``(B, T)`` are one scored unit each (see
    :func:`supervised_predictions`): some step unlabelled, the labelled ones (one at least)
    carrying one class."""
    labelled = y != NO_TARGET
    low = torch.where(labelled, y, torch.iinfo(y.dtype).max).min(dim=1).values
    high = torch.where(labelled, y, NO_TARGET).max(dim=1).values
    return (low == high) & ~labelled.all(dim=1)


def supervised_predictions(
    outputs: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The predicted and the true classes of the supervised units of per-step labels ``y``
    ``(B, T)`` for outputs ``(B, T, n_out)`` (float or integer readouts).

    A sample with unlabelled steps whose labelled steps all carry one class is one unit: a
    sequence classified where it is supervised, so its prediction is the arg-max of the readout
    summed over its labelled steps (a label known only at the end reads the last steps, a
    recall window the window).  Every other labelled step is a unit of its own, predicted by
    its step's arg-max; a fully labelled sample is scored at every step, as before.  Samples
    without any labelled step have no unit.  Ties go to the lowest class.
    """
    labelled = y != NO_TARGET
    high = torch.where(labelled, y, NO_TARGET).max(dim=1).values
    whole = whole_samples(y)
    summed = torch.where(labelled[..., None], outputs, torch.zeros_like(outputs)).sum(dim=1)
    per_step = labelled & ~whole[:, None]
    predicted = torch.cat([summed[whole].argmax(-1), outputs[per_step].argmax(-1)])
    return predicted, torch.cat([high[whole], y[per_step]])


def class_units(outputs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The predicted and the true classes of the scored units of class labels ``y`` for
    outputs ``(B, T, n_out)``: one unit per sample for sequence labels ``(B,)``, predicted by
    the last step's arg-max; the supervised units of per-step labels ``(B, T)``
    (:func:`supervised_predictions`).  Every accuracy of the package, float, golden and RTL,
    is the fraction of these units predicted right, so the three are comparable."""
    if y.ndim == 1:
        return outputs[:, -1].argmax(-1), y
    return supervised_predictions(outputs, y)


def readout_units(readout: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`class_units` of integer readouts ``(B, T, n_out)`` (the golden model's, the
    RTL's) and numpy labels, as numpy arrays."""
    predicted, true = class_units(torch.from_numpy(np.asarray(readout)), torch.from_numpy(y))
    return predicted.numpy(), true.numpy()


def readout_accuracy(readout: np.ndarray, y: np.ndarray) -> float:
    """The accuracy of integer readouts on labels ``y`` over :func:`class_units`; NaN when no
    unit is labelled."""
    predicted, true = readout_units(readout, y)
    return float(np.mean(predicted == true)) if len(true) else float("nan")


def metric(outputs: torch.Tensor, y: torch.Tensor, target: str) -> float:
    """The task's score of ``(B, T, n_out)`` outputs: accuracy (higher is better) or MSE."""
    outputs = outputs.detach()
    if target == "regression":
        return float(F.mse_loss(outputs, y))
    predicted, true = class_units(outputs, y)
    return float((predicted == true).float().mean())


def metric_sum(outputs: torch.Tensor, y: torch.Tensor, target: str) -> tuple[float, int]:
    """``(sum, units)`` of :func:`metric` over a batch: summed over batches, ``sum / units`` is
    the metric of the whole set.  Per-step labels count their supervised units (their number
    varies from batch to batch with the gaps), the other kinds their samples."""
    if target == "regression":
        return metric(outputs, y, target) * len(y), len(y)
    predicted, true = class_units(outputs.detach(), y)
    return float((predicted == true).sum()), int(true.numel())


def higher_is_better(target: str) -> bool:
    return target != "regression"
