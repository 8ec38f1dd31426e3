"""Forward Propagation Through Time (Kag & Saligrama, ICML 2021).

The sequence is cut into chunks of ``period`` steps (``period = 1``: one update per step; FPTT-K
uses ``period = T / K``).  For each chunk ``t`` the model does one forward pass from the detached
state, and the weights take one optimizer step on ``l_t(W) + R_t(W)``, where ``R_t`` pulls them
toward the running mean ``W_bar`` and corrects for the previous step's gradient.  Memory is that of
one chunk, independent of the sequence length.

Two forms of ``R_t`` are implemented; their gradients are added analytically (no extra graph):

``form="dual"`` (default; the official code's form, one pass per step)::

    grad R_t   = alpha (W - W_bar_t) - lam_t
    lam_{t+1}  = lam_t - alpha (W_{t+1} - W_bar_t)
    W_bar_{t+1} = (1 - b) W_bar_t + b W_{t+1} - (b / alpha) lam_{t+1}          (b = ``mix``)

``lam`` accumulates the dual variable; if each step's problem were solved exactly it would equal
``grad l_t(W_{t+1})``, and with ``b = 1/2`` the ``W_bar`` recursion equals the paper's.

``form="slide"`` (the paper's regulariser
``R_t = alpha/2 ||W - W_bar_t - g_{t-1}/(2 alpha)||^2``)::

    grad R_t    = alpha (W - W_bar_t) - g_{t-1} / 2
    W_bar_{t+1} = 1/2 (W_bar_t + W_{t+1}) - g_t / (2 alpha)

where ``g_t`` is the loss gradient of chunk ``t``.  The paper evaluates ``g_t`` at ``W_{t+1}``,
which costs a second forward/backward pass; this implementation uses the gradient at ``W_t`` it
already has (one pass per step).  Both start from ``W_bar = W``, ``lam = g = 0``, so the first
update is a plain gradient step.

Terminal prediction uses the auxiliary loss of :mod:`neurofptt.learning.losses` with label
weight ``beta_t = (t + 1) / T`` for the chunk ending at step ``t`` (0-based; ``schedule="linear"``),
a constant weight (``"constant"``) or the label alone (``"none"``), see
:meth:`FPTT.label_weight`.  At the end of an epoch the weights can be replaced by the running mean
(``reset_to_mean``), as the reference code does.  Tasks with a target at every step
(:mod:`neurofptt.learning.objectives`) need no auxiliary loss: a chunk's loss is the mean of its
steps' losses.

Per-step labels with unlabelled steps (``-1``): a chunk's loss is the mean over its labelled
pairs (sample, step) (:func:`~neurofptt.learning.objectives.pooled_mean`); a step without a
target contributes nothing, and a chunk without any labelled step makes no update at all (no
optimizer step, and neither ``W_bar`` nor ``lam``/``g`` move), as on chip, where only a step
with a target updates.  ``beta_t`` does not apply to per-step labels: a labelled step's label is
that step's own target, known when the step is scored, so it has weight 1 (``beta_t = 1``), and
the auxiliary term, which stands in for a label the step cannot know yet, has no place; nor does
the class prior ``Q`` learn from them.  A task whose samples are labelled only at their end is
a terminal task: stored as one label per sample (``"label"``) it gets the auxiliary loss and
its ``beta_t`` ramp at every step.

The rate per update.  Every chunk is an optimizer step, so a sequence of ``T`` steps moves the
weights ``T / period`` times, where BPTT moves them once per batch: with Adam, whose steps are
about ``lr`` long whatever the gradient's size, a long sequence moves the weights ``T`` times as
far as a short one, and the weights at the end of an epoch follow its last few sequences
(validation accuracy on ``cue-accumulation-short``, 225 steps, jumped by up to 0.3 from one
epoch to the next at the rate the digits learn well with).  So ``train.lr`` is the rate per
update of a sequence of :data:`REFERENCE_UPDATES` updates (the 8-step digits, where it was
chosen), and a longer one takes ``lr * reference_updates / updates`` per update, so that every
sequence moves the weights about as far (``[train.fptt] reference_updates``; 0: ``lr`` per
update whatever the length).  Adam's decoupled weight decay scales with it.

Per-step FPTT pays its per-update costs ``T`` times per sequence, so two parts of the update are
written for speed, with the numbers of the plain form (``tests/test_fptt_exact.py``): on the LIF
network a step's gradient is computed without the autograd engine
(:mod:`~neurofptt.learning.onestep`; other models and FPTT-K differentiate each chunk with
autograd), and the regulariser, clipping, the optimizer step and the running-mean update run
fused over flat buffers (:mod:`~neurofptt.learning.fptt_update`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.base import BatchResult, Rule, RuleOptions
from neurofptt.learning.distributed import combine, world_size
from neurofptt.learning.fptt_update import FPTTUpdate, regularizer_grad
from neurofptt.learning.losses import ClassPrior, auxiliary_loss
from neurofptt.learning.objectives import (
    NO_TARGET,
    Scoring,
    loss_scoring,
    pooled_mean,
    step_loss,
    whole_samples,
)
from neurofptt.learning.onestep import AuxiliaryLoss, LIFStepGradient, step_loss_and_grad
from neurofptt.models.base import RecurrentModel, State, detach_state

FORMS = ("dual", "slide")
SCHEDULES = ("linear", "constant", "none")
#: how per-step labels with gaps train (:meth:`FPTT.sequence_labels`)
GAP_LABELS = ("sample", "steps")
#: the updates per sequence at which ``train.lr`` is the rate per update (the digits' 8 steps)
REFERENCE_UPDATES = 8


@dataclass(frozen=True)
class FPTTOptions(RuleOptions):
    """The ``[train.fptt]`` table (see the module docstring for each symbol).

    ``alpha``: the pull toward the running mean; ``mix``: the running-mean factor ``b``;
    ``period``: steps per update (1: every step, ``T / K`` for FPTT-K); ``form``: ``"dual"`` or
    ``"slide"``; ``reset_to_mean``: replace the weights by the running mean after each epoch;
    ``schedule``/``constant_beta``: the label weight of the auxiliary loss
    (:meth:`FPTT.label_weight`); ``gap_labels``: how per-step labels with gaps train
    (:meth:`FPTT.sequence_labels`): ``"sample"`` or ``"steps"``; ``reference_updates``: the
    updates per sequence at which ``train.lr`` is the rate per update (module docstring,
    :meth:`FPTT.rate_scale`; 0: always).
    """

    table = "train.fptt"

    alpha: float = 0.5
    mix: float = 0.5
    period: int = 1
    form: str = "dual"
    reset_to_mean: bool = False
    schedule: str = "linear"
    constant_beta: float = 0.5
    gap_labels: str = "sample"
    reference_updates: int = REFERENCE_UPDATES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reference_updates < 0:
            raise ConfigError(
                f"FPTT reference_updates must be >= 0 (0: no scaling), got {self.reference_updates}"
            )
        if self.gap_labels not in GAP_LABELS:
            raise ConfigError(
                f"FPTT gap_labels {self.gap_labels!r} is unknown; use one of {GAP_LABELS}"
            )
        if self.alpha <= 0:
            raise ConfigError(f"FPTT alpha must be positive, got {self.alpha}")
        if not 0 < self.mix <= 1:
            raise ConfigError(
                f"FPTT mix (the running-mean factor) must be in (0, 1], got {self.mix}"
            )
        if self.period < 1:
            raise ConfigError(f"FPTT period must be >= 1 step, got {self.period}")
        if self.form not in FORMS:
            raise ConfigError(f"FPTT form {self.form!r} is unknown; use one of {FORMS}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"FPTT schedule {self.schedule!r} is unknown; use one of {SCHEDULES}")
        if not 0 <= self.constant_beta <= 1:
            raise ConfigError(f"FPTT constant_beta must be in [0, 1], got {self.constant_beta}")


class FPTT(Rule):
    """FPTT on any model: it needs only the cell protocol (one step at a time)."""

    name = "fptt"
    Options = FPTTOptions

    def __init__(
        self,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        *,
        alpha: float = FPTTOptions.alpha,
        mix: float = FPTTOptions.mix,
        period: int = FPTTOptions.period,
        form: str = FPTTOptions.form,
        clip: float = 1.0,
        n_classes: int | None = None,
        schedule: str = FPTTOptions.schedule,
        constant_beta: float = FPTTOptions.constant_beta,
        gap_labels: str = FPTTOptions.gap_labels,
        reset_to_mean: bool = FPTTOptions.reset_to_mean,
        reference_updates: int = FPTTOptions.reference_updates,
        target: str = "label",
    ) -> None:
        super().__init__(model, optimizer, clip, target)
        FPTTOptions(  # the one place the options are checked
            alpha=alpha,
            mix=mix,
            period=period,
            form=form,
            reset_to_mean=reset_to_mean,
            schedule=schedule,
            constant_beta=constant_beta,
            gap_labels=gap_labels,
            reference_updates=reference_updates,
        )
        self.reference_updates = reference_updates
        self.alpha, self.mix, self.period, self.form = alpha, mix, period, form
        self.schedule, self.constant_beta = schedule, constant_beta
        self.gap_labels = gap_labels
        self.reset_to_mean = reset_to_mean
        params = self.trainable()
        self.prior = ClassPrior(n_classes or model.n_out, next(iter(params.values())).device)
        self._params = list(params.items())
        #: the fused per-step update, which holds ``W_bar`` and ``lam``/``g``
        self.update = FPTTUpdate(self._params, optimizer)

    @property
    def one_step(self) -> LIFStepGradient | None:
        """The step's gradient without the autograd engine (:mod:`~neurofptt.learning.onestep`)
        for per-step updates of the LIF network; ``None``: every chunk is differentiated by
        autograd (other models, a surrogate of one's own, chunks of several steps).  Decided
        for each batch from the model as it is then."""
        if self.period != 1:
            return None
        return LIFStepGradient.for_model(self.model, [p for _, p in self._params])

    @property
    def running_mean(self) -> dict[str, torch.Tensor]:
        """``W_bar`` of each trainable parameter, by name."""
        return self.update.running_mean

    @property
    def memory(self) -> dict[str, torch.Tensor]:
        """``lam`` (dual form) or the previous chunk's loss gradient (slide form), by name."""
        return self.update.memory

    # -- the regulariser --------------------------------------------------------------------
    def regularizer_grad(self, name: str, param: torch.Tensor) -> torch.Tensor:
        """Analytic gradient of ``R_t`` at the current weights."""
        w_bar, memory = self.running_mean[name], self.memory[name]
        return regularizer_grad(param.detach(), w_bar, memory, self.alpha, self.form)

    def regularizer(self) -> torch.Tensor:
        """Value of ``R_t`` (up to a constant), differentiable; used by tests and diagnostics."""
        params = self.trainable()
        total = torch.zeros((), device=next(iter(params.values())).device)
        for name, p in params.items():
            diff = p - self.running_mean[name]
            if self.form == "dual":
                total = total + 0.5 * self.alpha * diff.pow(2).sum() - (p * self.memory[name]).sum()
            else:
                centre = diff - self.memory[name] / (2 * self.alpha)
                total = total + 0.5 * self.alpha * centre.pow(2).sum()
        return total

    # -- the update -------------------------------------------------------------------------
    def _apply_update(self, units: float = 1.0, scored: float = 1.0) -> None:
        """One FPTT update from the loss gradients in ``.grad`` (:class:`FPTTUpdate`), a mean
        over ``units``; in a data-parallel run first combined into the whole batch's, and made
        only where the whole batch scored something
        (:func:`~neurofptt.learning.distributed.combine`), so that ``W_bar`` and ``lam``/``g``
        move alike on every rank."""
        if combine([flat.buffer for flat in self.update.grad_buffers], units, scored):
            self.update.apply(alpha=self.alpha, mix=self.mix, form=self.form, clip=self.clip)

    def update_step(self, loss: torch.Tensor | None, units: float = 1.0) -> None:
        """One FPTT update on ``loss`` (the chunk's loss over ``units``, a graph over the
        current weights); ``None``: this shard scores nothing, which only a data-parallel run
        takes part in with zero gradients."""
        self.update.zero_grads()
        if loss is not None:
            loss.backward()
        scored = units if loss is not None else 0
        self._apply_update(scored, scored)

    def label_weight(self, end: int, steps: int) -> float:
        """``beta_t`` of the chunk ending after step ``end`` (1-based) of ``steps``.

        ``"linear"``: ``end / steps``; ``"constant"``: ``constant_beta`` except 1 on the last
        chunk (the decision step always sees the label alone); ``"none"``: 1 (plain cross-entropy
        at every chunk).
        """
        if self.schedule == "linear":
            return end / steps
        if self.schedule == "constant":
            return 1.0 if end == steps else self.constant_beta
        return 1.0

    def rate_scale(self, steps: int) -> float:
        """The factor on ``train.lr`` for the updates of a sequence of ``steps`` steps:
        ``reference_updates / updates`` once a sequence makes more updates than
        ``reference_updates`` (1 below that, and with ``reference_updates = 0``)."""
        updates = -(-steps // self.period)
        if self.reference_updates == 0 or updates <= self.reference_updates:
            return 1.0
        return self.reference_updates / updates

    def sequence_labels(self, y: torch.Tensor) -> torch.Tensor | None:
        """The class of each sample, where a batch of per-step labels trains as one label per
        sample (``gap_labels = "sample"``): every sample's labelled steps carry one class, with
        unlabelled steps among them (a recall window, a label known only at the end); ``None``
        otherwise.

        FPTT learns from each step's own loss with the state before it detached, so a loss that
        exists only in a recall window cannot reach the cue that decided it: on such tasks the
        per-step losses alone leave the network where it started (or worse).  FPTT's answer for
        a sequence's label is the auxiliary loss at every step, the label weighted by
        ``beta_t`` and the class prior standing in for what a step cannot know yet
        (:func:`~neurofptt.learning.losses.auxiliary_loss`); that is what these samples get.
        Scoring is unchanged: accuracy is still over the labelled steps."""
        if self.target != "label_per_step" or self.gap_labels != "sample":
            return None
        if not bool(whole_samples(y).all()):
            return None
        return torch.where(y != NO_TARGET, y, NO_TARGET).max(dim=1).values

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        """One batch at the rate per update of its length (:meth:`rate_scale`); the groups'
        rates are the trainer's again afterwards."""
        scale = self.rate_scale(x.shape[1])
        rates = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * scale
        try:
            return self._train_batch(x, y)
        finally:
            for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
                group["lr"] = rate

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        self.check_batch(x, y)
        self.model.train()
        steps = x.shape[1]
        sequence = self.sequence_labels(y)
        if sequence is not None:
            y = sequence
        per_sample = self.target == "label" or sequence is not None
        scoring = None if per_sample else loss_scoring(y, self.target, "all", steps)
        one_step = self.one_step
        labels = None
        if one_step is not None and scoring is None:
            labels = AuxiliaryLoss(y, self.prior.table, self.model.n_out, one_step.dtype)
        state = self.model.initial_state(x.shape[0])
        # summed in float64 on the device, as a Python float would, without waiting on it
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        n_chunks = 0
        for start in range(0, steps, self.period):
            end = min(start + self.period, steps)
            if one_step is None:
                loss, logits, state = self._graph_chunk(x, y, scoring, state, start, end)
            else:
                loss, logits, state = self._local_step(one_step, x, labels, scoring, state, start)
            if loss is not None:
                total += loss.detach()  # a tensor: the loop never waits for the device
                n_chunks += 1
        if per_sample and self.counted:
            self.prior.observe(logits, y)
        return BatchResult(
            loss=float(total) / n_chunks if n_chunks else 0.0, logits=logits.detach()
        )

    def _graph_chunk(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        scoring: Scoring | None,
        state: State,
        start: int,
        end: int,
    ) -> tuple[torch.Tensor | None, torch.Tensor, State]:
        """Steps ``start..end-1`` from the detached ``state`` and their update, differentiated
        by autograd; returns the chunk's loss (``None``: no target, no update), the last
        logits and the state."""
        state = detach_state(state)
        losses = []
        for t in range(start, end):
            logits, state = self.model.step(x[:, t], state)
            if scoring is not None:  # per-step targets: the step's loss, if it has one
                scored = scoring.counts[t] > 0
                losses.append(step_loss(logits, scoring.at(t), self.target) if scored else None)
        if scoring is None:
            loss = auxiliary_loss(logits, y, self.prior.table, self.label_weight(end, x.shape[1]))
        else:
            loss = pooled_mean(losses, scoring.counts[start:end])
        # no target in this chunk: nothing to learn, no update (unless another rank has one)
        if loss is not None or world_size() > 1:
            units = len(y) if scoring is None else sum(scoring.counts[start:end])
            self.update_step(loss, units)
        return loss, logits, state

    @torch.no_grad()
    def _local_step(
        self,
        one_step: LIFStepGradient,
        x: torch.Tensor,
        labels: AuxiliaryLoss | None,
        scoring: Scoring | None,
        state: State,
        t: int,
    ) -> tuple[torch.Tensor | None, torch.Tensor, State]:
        """:meth:`_graph_chunk` for the one step ``t`` with the local gradient ``one_step``
        (:attr:`one_step`): the same loss, gradient and update without a graph.  ``labels``
        is the batch's auxiliary loss (label tasks), ``scoring`` its per-step targets."""
        logits, new_state = one_step.step(x[:, t], state)
        if labels is not None:
            loss, grad_logits = labels(logits, self.label_weight(t + 1, x.shape[1]))
            units = x.shape[0]
        elif scoring is not None and scoring.counts[t] > 0:
            loss, grad_logits = step_loss_and_grad(logits, scoring.at(t), self.target)
            units = scoring.counts[t]
        elif world_size() > 1:  # nothing here, but another rank may update: take part
            self.update.zero_grads()
            self._apply_update(0.0, 0)
            return None, logits, new_state
        else:
            return None, logits, new_state
        one_step(x[:, t], state, new_state, grad_logits, self.update.grads())
        self._apply_update(units, units)
        return loss, logits, new_state

    def end_epoch(self) -> None:
        self.prior.end_epoch()
        if self.reset_to_mean:
            with torch.no_grad():
                for name, p in self.trainable().items():
                    p.copy_(self.running_mean[name])

    def state_dict(self) -> dict[str, Any]:
        return {
            "running_mean": self.running_mean,
            "memory": self.memory,
            "prior": self.prior.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # copied into the update's buffers: never views into the loaded dict
        self.update.load(state["running_mean"], state["memory"])
        self.prior.load_state_dict(state["prior"])
