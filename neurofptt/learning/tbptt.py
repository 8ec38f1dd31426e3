"""Truncated backpropagation through time, T-BPTT(n, k) (Williams & Peng 1990).

Every ``interval`` = k steps the weights take one optimizer step whose gradient flows back through
at most the last ``n`` steps (the window); the state ``n`` steps back is a constant.  The seed's
"n-BPTT" baseline is ``n = k``.  With ``n > k`` the windows of consecutive updates overlap.

Update points and losses
------------------------
For a sequence of ``T`` steps (0-based step indices) the updates happen after ``e = k, 2k, ...``
steps and after the last step ``e = T`` (a shorter final chunk when ``k`` does not divide ``T``).
The update at ``e`` owns the *new* steps ``N_e = [e - k, e)`` (the last chunk: ``[e_prev, T)``);
each step's loss belongs to exactly one update.  Per-step losses ``CE_t = CE(o_t, y)`` (batch mean;
for per-step targets the step's own target, and MSE for regression, see
:mod:`neurofptt.learning.objectives`) carry weights

* ``loss_steps="last"`` (terminal classification): ``w_{T-1} = 1``, every other ``w_t = 0``;
* ``loss_steps="all"``: ``w_t = 1 / T`` for every step,

and for per-step labels with unlabelled steps (``-1``) ``w_t = n_t / N``, with ``n_t`` the samples
scored at step ``t`` (``"all"``: every labelled step; ``"last"``: each sample's last labelled one)
and ``N`` the scored pairs of the batch, ``CE_t`` the mean over step ``t``'s scored samples
(:func:`~neurofptt.learning.objectives.loss_scoring`; with every step labelled these are the two
lists above),

and the update at ``e`` descends the weighted mean of its new steps,

    L_e(W) = sum_{t in N_e} w_t CE_t(W) / sum_{t in N_e} w_t,

with ``CE_t`` a function of ``W`` only through the window ``[max(0, e - n), e)``.  An update whose
new steps carry no weight (every update but the last one for ``"last"``, or one whose new steps
have no target) is skipped: no optimizer step, so momentum, Adam moments and weight decay are
untouched.  With ``n >= T`` and ``k >= T``
there is a single update, ``L = sum_t w_t CE_t`` with the full graph: exactly the BPTT gradient and
update (for ``"last"`` this is :class:`~neurofptt.learning.bptt.BPTT` bit for bit).

Recomputing overlapping windows
-------------------------------
The window of the update at ``e`` starts at ``s = max(0, e - n)``.  When ``n > k`` it reaches back
before the previous update, i.e. into steps that were computed with older weights.  The rule keeps
a buffer of the (detached) states after each of the last ``n`` steps and re-runs the forward pass
over the window from the stored state ``h_s`` with the *current* weights ``W_e``, so the gradient is

    dL_e/dW  for  h_e = F_W(h_{e-1}, x_{e-1}), ..., h_{s+1} = F_W(h_s, x_s),  h_s fixed,

i.e. the exact n-step truncated gradient at the current weights (not a mix of stale activations).
The states computed in this pass overwrite the buffer, so every stored state is the newest one
available; ``h_s`` itself comes from the forward pass of an earlier update (or, for ``s = 0``, is
the initial state).  The inputs of the window are slices of the batch tensor, so the extra memory
is ``n`` states plus the graph of ``n`` steps, independent of ``T``.  The forward cost is at most
``n / k`` passes over the sequence (skipped updates advance once, without a graph).  A window
shorter than the chunk (``n < k``) would leave some of the new losses without a path to the
recurrent weights at all, so ``n >= interval`` is required.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.base import BatchResult, Rule, RuleOptions
from neurofptt.learning.objectives import (
    Scoring,
    check_loss_steps_for,
    loss_scoring,
    step_loss,
    uniform_weights,
)
from neurofptt.models.base import RecurrentModel, State, detach_state

LOSS_STEPS = ("last", "all")


def check_loss_steps(loss_steps: str) -> None:
    if loss_steps not in LOSS_STEPS:
        raise ConfigError(
            f"loss_steps {loss_steps!r} is unknown; use 'last' (cross-entropy at the last step, "
            "terminal classification) or 'all' (mean cross-entropy over every step)"
        )


def step_weights(steps: int, loss_steps: str) -> list[float]:
    """The weights ``w_t`` of the per-step cross-entropies (see the module docstring).

    ``"last"``: ``[0, ..., 0, 1]``; ``"all"``: ``[1/T] * T``.  The total loss of a sequence is
    ``sum_t w_t CE(o_t, y)``; BPTT, T-BPTT and RTRL all use this definition (per-step labels
    with unlabelled steps weigh by the scored samples instead,
    :func:`~neurofptt.learning.objectives.loss_scoring`).
    """
    check_loss_steps(loss_steps)
    return uniform_weights(steps, loss_steps)


def update_points(steps: int, interval: int) -> list[int]:
    """Numbers of steps after which T-BPTT updates: ``k, 2k, ...`` below ``T``, then ``T``."""
    return [*range(interval, steps, interval), steps]


@dataclass(frozen=True)
class TBPTTOptions(RuleOptions):
    """The ``[train.tbptt]`` table: the window ``n``, the ``interval`` between updates (0: ``n``,
    the usual n-step truncation) and which steps carry a loss (``"last"`` or ``"all"``)."""

    table = "train.tbptt"

    n: int = 10
    interval: int = 0
    loss_steps: str = "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ConfigError(f"T-BPTT window n must be an integer >= 1 step, got {self.n!r}")
        if self.interval < 0:
            raise ConfigError(
                f"T-BPTT interval must be an integer >= 1 step (0: the window n), got "
                f"{self.interval!r}"
            )
        if self.interval > self.n:
            raise ConfigError(
                f"T-BPTT interval ({self.interval}) is longer than the window n ({self.n}): the "
                f"losses of the first {self.interval - self.n} new steps of each chunk would get "
                "no recurrent gradient; use interval <= n (interval = n is the usual n-step "
                "truncation)"
            )
        check_loss_steps(self.loss_steps)


class TBPTT(Rule):
    """Truncated BPTT: an update every ``interval`` steps through a window of ``n`` steps.

    ``interval`` defaults to ``n`` (``None`` or 0).  See the module docstring for the exact
    losses and for how overlapping windows (``n > interval``) are recomputed from the buffered
    state.  Every batch starts from the initial state, so the rule has no state across batches.
    """

    name = "tbptt"
    Options = TBPTTOptions

    def __init__(
        self,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        *,
        n: int = TBPTTOptions.n,
        interval: int | None = TBPTTOptions.interval,
        loss_steps: str = TBPTTOptions.loss_steps,
        clip: float = 1.0,
        target: str = "label",
    ) -> None:
        super().__init__(model, optimizer, clip, target)
        options = TBPTTOptions(n=n, interval=interval or 0, loss_steps=loss_steps)  # checks
        check_loss_steps_for(loss_steps, target, "train.tbptt.loss_steps")
        self.n, self.interval, self.loss_steps = n, options.interval or n, loss_steps

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        self.check_batch(x, y)
        self.model.train()
        steps = x.shape[1]
        check_loss_steps(self.loss_steps)
        scoring = loss_scoring(y, self.target, self.loss_steps, steps)
        weights = scoring.weights
        # states[s]: the detached state after s steps (states[0] is the initial state).
        states: dict[int, State] = {0: self.model.initial_state(x.shape[0])}
        done = 0
        weighted_loss = 0.0
        logits = None
        for end in update_points(steps, self.interval):
            new_steps = range(done, end)
            chunk_weight = sum(weights[t] for t in new_steps)
            if chunk_weight == 0.0:
                logits = self._advance(x, states, done, end)
            else:
                loss, logits = self._update(x, scoring, states, end, new_steps, chunk_weight)
                weighted_loss += loss * chunk_weight
            done = end
            for s in [s for s in states if s < end - self.n]:
                del states[s]
        assert logits is not None  # at least one chunk
        total = sum(weights)
        return BatchResult(loss=weighted_loss / total if total else 0.0, logits=logits)

    def _advance(
        self, x: torch.Tensor, states: dict[int, State], start: int, end: int
    ) -> torch.Tensor:
        """Run steps ``[start, end)`` without a graph, storing the states; the last output."""
        with torch.no_grad():
            state = states[start]
            for t in range(start, end):
                output, state = self.model.step(x[:, t], state)
                states[t + 1] = detach_state(state)
        return output

    def _update(
        self,
        x: torch.Tensor,
        scoring: Scoring,
        states: dict[int, State],
        end: int,
        new_steps: Sequence[int],
        chunk_weight: float,
    ) -> tuple[float, torch.Tensor]:
        """Forward the window ``[max(0, end - n), end)`` from its stored state; one update."""
        start = max(0, end - self.n)
        weights = scoring.weights
        state = states[start]
        total = None
        output = None
        for t in range(start, end):
            output, state = self.model.step(x[:, t], state)
            states[t + 1] = detach_state(state)
            if t >= new_steps[0] and weights[t] != 0.0:
                term = weights[t] * step_loss(output, scoring.at(t), self.target)
                total = term if total is None else total + term
        assert total is not None and output is not None
        loss = total if chunk_weight == 1.0 else total / chunk_weight
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_and_step()
        return float(loss.detach()), output.detach()
