"""Losses for terminal-prediction tasks (one label per sequence).

Online rules update before the sequence ends, so they need a loss at intermediate steps.  FPTT's
auxiliary loss (Kag & Saligrama 2021; Yin et al. 2023) mixes the label with a stored class
distribution ``Q``::

    l_t = beta_t * CE(y_hat_t, y) + (1 - beta_t) * H(Q[y], y_hat_t),    beta_t = t / T

where ``H(q, p) = -sum_c q_c log p_c``.  Early steps, which cannot know the class yet, are pulled
toward what the network predicted for this class before instead of being forced to the label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurofptt.learning.distributed import sum_in_place


def auxiliary_loss(
    logits: torch.Tensor, y: torch.Tensor, prior: torch.Tensor, beta_t: float
) -> torch.Tensor:
    """The terminal-prediction loss at a step with label weight ``beta_t`` in [0, 1].

    ``prior`` is the ``(n_classes, n_classes)`` table ``Q``; row ``y`` is the target distribution
    for samples of class ``y``.
    """
    if beta_t >= 1.0:
        return F.cross_entropy(logits, y)
    # beta CE(y) + (1 - beta) H(Q[y]) is one cross-entropy against the mixed target: one softmax
    onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    target = beta_t * onehot + (1.0 - beta_t) * prior[y].to(logits.dtype)
    return F.cross_entropy(logits, target)


class ClassPrior:
    """Per-class running estimate ``Q`` of the network's final-step prediction.

    During an epoch it accumulates the softmax of the last step for each sample's class; at the end
    of the epoch the table becomes the class means (classes never seen keep their old row).  It
    starts uniform, so the first epoch's auxiliary term is a plain entropy regulariser.
    """

    def __init__(self, n_classes: int, device: torch.device | str = "cpu") -> None:
        self.n_classes = n_classes
        self.table = torch.full((n_classes, n_classes), 1.0 / n_classes, device=device)
        self._sums = torch.zeros(n_classes, n_classes, device=device)
        self._counts = torch.zeros(n_classes, device=device)

    def observe(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch's last-step softmax to its classes' rows (on the network's device)."""
        probs = F.softmax(logits.detach().float(), dim=-1)
        self._sums.index_add_(0, y, probs)
        self._counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float32))

    def end_epoch(self) -> None:
        sum_in_place(self._sums, self._counts)  # every shard's samples, in a data-parallel run
        seen = self._counts > 0
        self.table[seen] = self._sums[seen] / self._counts[seen, None]
        self._sums.zero_()
        self._counts.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"table": self.table, "sums": self._sums, "counts": self._counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.table.device  # a checkpoint is read onto the CPU
        self.table = state["table"].to(device, copy=True)
        self._sums = state["sums"].to(device, copy=True)
        self._counts = state["counts"].to(device, copy=True)
