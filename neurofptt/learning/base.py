"""The interface every learning rule implements.

A rule owns how one batch of sequences turns into parameter updates: BPTT makes one update after
the whole sequence, FPTT one per step (or per chunk of ``period`` steps).  The trainer only calls
:meth:`Rule.train_batch`, :meth:`Rule.end_epoch` and the state-dict pair, so adding a rule never
touches the training loop.

Each rule also owns its options: a frozen dataclass (:attr:`Rule.Options`) whose defaults are the
rule's defaults, read from the rule's ``[train.<name>]`` table of a config file, and the models
it can train (:attr:`Rule.models`).  The registry and the config derive everything from these, so
a rule's defaults and its supported models are written down once, next to its code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from neurofptt.io import check_field_types
from neurofptt.learning.distributed import combine_gradients
from neurofptt.learning.objectives import check_target
from neurofptt.models.base import RecurrentModel, check_sequence
from neurofptt.tasks.base import check_targets


@dataclass
class BatchResult:
    """What the trainer logs for one batch: mean loss and the last step's output."""

    loss: float
    logits: torch.Tensor


@dataclass(frozen=True)
class RuleOptions:
    """Base of every rule's options; a subclass per rule adds the fields, whose defaults are the
    rule's defaults (the rule's constructor takes its keyword defaults from them).

    ``table`` names the config table (``"train.fptt"``), so a wrong type fails when the config is
    built, naming the option, rather than later inside training.
    """

    table: ClassVar[str] = "train"

    def __post_init__(self) -> None:
        check_field_types(self, self.table)

    def rule_kwargs(self) -> dict[str, Any]:
        """The rule constructor's keyword arguments; a rule whose constructor spells an option
        differently (``None`` where a config file, which has no null, writes 0) overrides it."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class Rule:
    """Base class of learning rules; subclasses set ``name``, ``Options`` and ``models`` and
    implement ``train_batch``.

    ``target`` is the task's kind of target (:mod:`neurofptt.learning.objectives`): rules score
    each step with ``step_loss`` so they train classifiers and regressors alike, and per-step
    labels only at their labelled steps.
    """

    name: ClassVar[str] = ""
    #: the rule's own options, the ``[train.<name>]`` table of a config file
    Options: ClassVar[type[RuleOptions]] = RuleOptions
    #: the registry's names of the models the rule trains; ``None``: every model (the rule needs
    #: only the cell protocol every model implements)
    models: ClassVar[tuple[str, ...] | None] = None
    #: whether statistics the rule gathers from the current batch count (FPTT's class prior):
    #: ``False`` on all but one rank of a data-parallel run for a batch every rank computes
    #: whole (:func:`~neurofptt.learning.distributed.shard`); the trainer sets it per batch
    counted: bool = True

    def __init__(
        self,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        clip: float = 1.0,
        target: str = "label",
    ):
        self.model = model
        self.optimizer = optimizer
        self.clip = clip
        self.target = check_target(target)

    @classmethod
    def from_options(
        cls,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        options: RuleOptions,
        *,
        clip: float = 1.0,
        target: str = "label",
    ) -> Rule:
        """The rule built from its options table (as the trainer does from a config)."""
        if not isinstance(options, cls.Options):
            raise TypeError(f"{cls.__name__} takes {cls.Options.__name__}, got {options!r}")
        return cls(model, optimizer, clip=clip, target=target, **options.rule_kwargs())

    def check_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Clear errors for inputs or targets that do not fit the model and the target kind.

        Per-step labels may hold ``-1`` (no target at that step): every rule scores only the
        labelled steps (:func:`~neurofptt.learning.objectives.loss_scoring`).
        """
        check_sequence(x, self.model.n_in)
        check_targets(x, y, self.target, self.model.n_out)

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Hook for per-epoch bookkeeping (e.g. FPTT's class prior)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state

    def _clip_and_step(self, units: float = 1.0, scored: float = 1.0) -> bool:
        """Clip the gradients and take the optimizer's step, if the batch scored anything.

        ``units`` are the units the loss averaged over and ``scored`` those of this update
        (the same, except for e-prop's updates at single steps); in a data-parallel run the
        gradients are first combined into the whole batch's
        (:func:`~neurofptt.learning.distributed.combine_gradients`), so every rank steps alike.
        Returns whether a step was taken (``scored`` over all ranks > 0)."""
        if not combine_gradients(self.trainable().values(), units, scored):
            return False
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        return True

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}
