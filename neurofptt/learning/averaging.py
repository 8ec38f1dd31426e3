"""The network a training run scores, picks and reports: an exponential moving average of the
weights after each batch (Polyak averaging), over a horizon counted in epochs.

Why.  A rule that updates at every step moves the weights ``T`` times per batch, and at the rates
that learn quickly the weights after one batch and after the next can be different networks
(on ``cue-accumulation-short`` with FPTT, in the first epochs of the cosine schedule, the
validation accuracy of consecutive batches' weights jumps by up to 0.4).  The network at an
epoch's end is then a draw from that noise, and the validation accuracy swings from one epoch
to the next even after the run has learned the task.  The mean of the recent iterates keeps
where they are heading and averages the noise away (Polyak and Juditsky, 1992); the
measurements are in ``docs/results-float-learning.md``.  Training itself is unchanged: the rule
and its optimizer go on from the weights they made, only what is scored and kept is the
average.

The horizon is in epochs, not batches, so that it means the same on a task of 10 batches and of
10,000: ``decay = 1 - 1 / (horizon * batches_per_epoch)``.  A horizon of one batch or less keeps
the weights themselves.  The average runs torch's own EMA kernel
(:func:`torch.optim.swa_utils.get_ema_multi_avg_fn`) over the parameters of a copy of the model.
:class:`~torch.optim.swa_utils.AveragedModel` itself does not fit: it copies every buffer from the
trained model after each batch, and the spiking neurons keep their membrane state in buffers
whose shape follows the last batch.  The copy's buffers are the model's constants (leaks,
thresholds) and its fake quantizers' switches, which the training loop sets for both networks.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from neurofptt.models.base import RecurrentModel


def ema_decay(horizon_epochs: float, batches_per_epoch: int) -> float:
    """The average's decay per batch for a horizon of ``horizon_epochs`` epochs of
    ``batches_per_epoch`` batches; 0 (no averaging) when the horizon spans one batch or less."""
    span = horizon_epochs * batches_per_epoch
    return 1.0 - 1.0 / span if span > 1 else 0.0


class WeightAverage:
    """The moving average of a model's weights, updated after every batch (module docstring)."""

    def __init__(self, model: RecurrentModel, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an average's decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model: RecurrentModel = copy.deepcopy(model)
        """The averaged network (a model of the trained one's class and shapes)."""
        self.model.requires_grad_(False)
        self.updates = 0
        self._average = get_ema_multi_avg_fn(decay)

    @classmethod
    def for_run(
        cls, model: RecurrentModel, horizon_epochs: float, batches_per_epoch: int
    ) -> WeightAverage | None:
        """The average of a run, or ``None`` where its horizon keeps the weights themselves."""
        decay = ema_decay(horizon_epochs, batches_per_epoch)
        return cls(model, decay) if decay > 0 else None

    @torch.no_grad()
    def update(self, model: RecurrentModel) -> None:
        """Fold the weights after a batch into the average (the first batch's are copied)."""
        mine = list(self.model.parameters())
        theirs = [p.detach() for p in model.parameters()]
        if self.updates == 0:
            torch._foreach_copy_(mine, theirs)
        else:
            self._average(mine, theirs, self.updates)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged parameters and the count of batches folded in (what resuming needs)."""
        parameters = {name: p.detach() for name, p in self.model.named_parameters()}
        return {"parameters": parameters, "updates": self.updates}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, p in self.model.named_parameters():
            p.copy_(state["parameters"][name])
        self.updates = int(state["updates"])
