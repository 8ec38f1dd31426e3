"""Backpropagation through time: the whole sequence, one backward pass, one update.

Memory grows linearly with the sequence length (every step's activations are kept for the
backward pass); this is the baseline the online rules are compared with.  The sequence loss is
the last step's for a label task and the mean over all steps for per-step targets; per-step
labels with unlabelled steps (``-1``) average over their labelled pairs (sample, step) only
(:mod:`neurofptt.learning.objectives`), and a batch without any labelled step makes no update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurofptt.learning.base import BatchResult, Rule, RuleOptions
from neurofptt.learning.objectives import loss_scoring, pooled_mean, scored_units, step_loss


@dataclass(frozen=True)
class BPTTOptions(RuleOptions):
    """BPTT has no options of its own (an empty ``[train.bptt]`` table); it trains every model."""

    table = "train.bptt"


class BPTT(Rule):
    """The sequence loss (see the module docstring), gradient through all steps."""

    name = "bptt"
    Options = BPTTOptions

    def sequence_loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The loss BPTT descends (module docstring); ``None`` when no step has a target."""
        if self.target == "label":
            return step_loss(outputs[:, -1], y, self.target)
        scoring = loss_scoring(y, self.target, "all", outputs.shape[1])
        losses = [
            step_loss(outputs[:, t], scoring.at(t), self.target) if n else None
            for t, n in enumerate(scoring.counts)
        ]
        return pooled_mean(losses, scoring.counts)

    def train_batch(self, x, y) -> BatchResult:
        self.check_batch(x, y)
        self.model.train()
        outputs, _ = self.model(x)
        logits = outputs[:, -1]
        loss = self.sequence_loss(outputs, y)
        self.optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        # a batch without a target makes no step (as T-BPTT skips a chunk without loss)
        units = scored_units(y, self.target, "all", outputs.shape[1])
        self._clip_and_step(units, units)
        return BatchResult(
            loss=0.0 if loss is None else float(loss.detach()), logits=logits.detach()
        )
