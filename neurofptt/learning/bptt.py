"""Backpropagation through time: the whole sequence, one backward pass, one update.

Memory grows linearly with the sequence length (every step's activations are kept for the
backward pass); this is the baseline the online rules are compared with.
"""

from __future__ import annotations

import torch.nn.functional as F

from neurofptt.learning.base import BatchResult, Rule


class BPTT(Rule):
    """Cross-entropy on the last step's output, gradient through all steps."""

    name = "bptt"

    def train_batch(self, x, y) -> BatchResult:
        self.model.train()
        outputs, _ = self.model(x)
        logits = outputs[:, -1]
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_and_step()
        return BatchResult(loss=float(loss.detach()), logits=logits.detach())
