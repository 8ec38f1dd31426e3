"""The interface every learning rule implements.

A rule owns how one batch of sequences turns into parameter updates: BPTT makes one update after
the whole sequence, FPTT one per step (or per chunk of ``period`` steps).  The trainer only calls
:meth:`Rule.train_batch`, :meth:`Rule.end_epoch` and the state-dict pair, so adding a rule never
touches the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from neurofptt.learning.objectives import check_target
from neurofptt.models.base import RecurrentModel, check_sequence
from neurofptt.tasks.base import check_targets


@dataclass
class BatchResult:
    """What the trainer logs for one batch: mean loss and the last step's output."""

    loss: float
    logits: torch.Tensor


class Rule:
    """Base class of learning rules; subclasses set ``name`` and implement ``train_batch``.

    ``target`` is the task's kind of target (:mod:`neurofptt.learning.objectives`): rules score
    each step with ``step_loss`` so they train classifiers and regressors alike.
    """

    name: ClassVar[str] = ""

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

    def check_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Clear errors for inputs or targets that do not fit the model and the target kind."""
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

    def _clip_and_step(self) -> None:
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}
