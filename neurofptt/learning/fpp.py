"""Fixed-Point Propagation, FPP (Nath, Jafferjee & White, "A Fixed-Point Formulation for RNNs").

Why
---
The seed reframes learning the state of an RNN as a fixed-point problem: find a state function
``s(h)`` of histories and a transition ``f_W`` and readout ``g_beta`` such that

    f_W(s(h), o(h')) = s(h')   for every successor h' of h,      g_beta(s(h)) = y(h).

Instead of sweeping gradients back in time (BPTT, T-BPTT), FPP keeps a replay buffer of recent
transitions and takes *one-step* gradient updates on randomly sampled transitions, refreshing the
stored states with the new weights so that useful state values spread through the buffer.  The
cost per update is two applications of ``f_W`` and a two-step backward pass, independent of how
long the dependency is.  The seed compares FPP with ``n`` updates per step against n-step T-BPTT
(``n = T``), which has the same order of computation per step.

Algorithm (seed, Algorithm 1), in this module's notation
--------------------------------------------------------
``f_W`` is the model's :meth:`step` (``(out_t, s_t) = step(o_t, s_{t-1})``; its output is
``g_beta(s_t)``, the readout of the new state).  ``beta`` are the parameters of ``model.readout``
(empty for a model without a ``readout`` module); ``W`` are all other trainable parameters.

*Forward (online), at every step t = 0 .. T-1 of a batch of sequences*, with the weights current
at that step and no graph::

    s_t = f_W(s_{t-1}, o_t),   s_{t+1} = f_W(s_t, o_{t+1})      (s_{-1} = initial state)

and the transition ``(s_{t-1}, o_t, o_{t+1}, s_{t+1}, y, w_t)`` of every sequence of the batch is
pushed into a FIFO buffer holding the ``buffer_size`` most recent transitions (the seed: "keeping
the recent N items in a buffer").  Then ``updates`` = n training updates follow (the seed's n;
``n = 0`` trains nothing).  The state ``s_t`` carried to the next step is the online one.

*Train (one update).*  Sample ``m`` = ``replay_batch`` buffer slots uniformly with replacement
(torch generator seeded with ``seed``; the seed samples one transition, ``m = 1``).  For each
sampled transition ``i``::

    s_T^i       = f_W(s_{T-1}^i, o_T^i)          y'^i = g_beta(s_T^i)
    s'_{T+1}^i  = f_W(s_T^i, o_{T+1}^i)          (graph through both applications of f_W)

    L_s = (1 / max(1, sum_i h_i)) * sum_i h_i * sum_k mean_j (s'_{T+1}^{i,k,j} - s_{T+1}^{i,k,j})^2
    L_t = (1 / max(1, sum_i w_i)) * sum_i w_i * CE(y'^i, y^i)
    L   = state_weight * L_s + L_t

where ``k`` runs over the tensors of the state tuple, ``j`` over their features, the stored
``s_{T+1}`` is a constant, ``h_i`` is 1 when the transition has a successor observation (0 for the
last step of a sequence, whose state loss is dropped) and ``w_i`` is 1 when the step carries the
sequence's label.  The gradient step uses ``dL/dW`` for ``W`` and ``dL_t/dbeta`` for ``beta`` (the
seed updates beta with the target loss only; this matters only for models whose state depends on
the readout, e.g. the leaky-integrator ``out`` of :class:`~neurofptt.models.spiking.SpikingRNN`),
gradient-norm clipping at ``clip`` (over all parameters, as every rule here), then the optimizer.

*Refresh.*  With the new weights ``W'`` (no graph)::

    s_T^i  <- f_W'(s_{T-1}^i, o_T^i),    s_{T+1}^i (stored) <- f_W'(s_T^i, o_{T+1}^i)

exactly the seed's pseudo-code ("Replace s_{T+1} by s'_{T+1} in buffer").  With
``propagate=True`` the refreshed ``s_T^i`` is additionally written into the *previous* transition
of the same sequence (time ``T-1``, whose stored next state is ``s_T``) when it is still in the
buffer: this is the seed's prose ("that value could be updated in the transition before it ... so
useful state values in later states can be propagated backwards").  Both readings are in the
seed; the pseudo-code one is the default.  Finally ``refresh_random`` extra slots, drawn uniformly,
get the same ``s_{T+1}`` refresh ("we can also update the states of a few randomly chosen
transitions"; the seed does not say how many, default 0).

Targets
-------
The seed predicts a target at every step (Cycleworld) or the label of a sequence (S-MNIST).  A
transition stores its step's target: the step's own for per-step targets (``loss_steps="all"``,
cross-entropy or MSE, :mod:`neurofptt.learning.objectives`), the sequence's label for a label task,
where ``loss_steps="last"`` gives ``w_t = 1`` only at the last step (the label is defined there
only) and ``"all"`` gives ``w_t = 1`` at every step.  Per-step labels with unlabelled steps
(``-1``) give ``w_i = 1`` to the transitions of the steps ``loss_steps`` scores for their sample
(every labelled step, or the sample's last labelled one) and ``w_i = 0`` to the others, which
keep their state loss (:func:`~neurofptt.learning.objectives.loss_scoring`).  A batch is ``B``
sequences.  Each sequence is a separate stream, so each step pushes ``B`` transitions;
``replay_batch`` defaults to ``B`` (one sampled transition per stream and update, the seed's
``m = 1`` per stream).  The last step of a sequence has no ``o_{t+1}``: its transition keeps
only the target loss (``h = 0``) and is never refreshed.  Every batch starts from the model's
initial state; the buffer persists across batches and epochs.  The reported loss is the online
forward pass's ``sum_t w'_t CE(out_t, y)`` with T-BPTT's weights (comparable to T-BPTT's loss;
:func:`~neurofptt.learning.objectives.loss_scoring`).

Defaults not fixed by the seed: ``buffer_size = 1000``, ``refresh_random = 0``.  From the seed:
``updates = 10`` (S-MNIST, n = T = 10), ``state_weight = 1`` (``L = L_s + L_t``), uniform sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurofptt.errors import CheckpointError, ConfigError, ShapeError
from neurofptt.learning.base import BatchResult, Rule, RuleOptions
from neurofptt.learning.objectives import (
    Scoring,
    check_loss_steps_for,
    loss_scoring,
    per_sample_loss,
    step_loss,
)
from neurofptt.learning.tbptt import check_loss_steps
from neurofptt.models.base import RecurrentModel, State

SUPPORTED_MODELS = (
    "GatedRNN rnn/lstm/gru (state h or h, c per layer)",
    "SpikingRNN LIF (state mem, spk, out; the state loss is on these floats)",
    "AdaptiveSpikingRNN ALIF (state v, z, a, out)",
    "any RecurrentModel whose state is a tuple of floating (batch, ...) tensors",
)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"FPP {name} must be an integer >= {low}, got {value!r}")
    return value


@dataclass
class UpdateResult:
    """The losses of one FPP update, evaluated before the gradient step."""

    state_loss: float
    target_loss: float


class ReplayBuffer:
    """FIFO ring buffer of transitions ``(s_{t-1}, o_t, o_{t+1}, s_{t+1}, y, w, h)``.

    Transition number ``k`` (counted from 0 over the buffer's life) lives in slot
    ``k % capacity``; ``ids[slot]`` is the number of the transition in it (-1: empty), so a stored
    reference ``prev_ids`` to the previous transition of the same sequence is valid exactly when
    ``ids[prev % capacity] == prev``.  Tensors are allocated on the first push.
    """

    FIELDS = ("obs", "obs_next", "label", "weight", "has_next", "ids", "prev_ids")

    def __init__(self, capacity: int) -> None:
        self.capacity = _check_int("buffer_size", capacity, 1)
        self.pushed = 0
        self.s_prev: list[torch.Tensor] = []
        self.s_next: list[torch.Tensor] = []
        self.obs = self.obs_next = self.weight = torch.empty(0)
        self.label = self.ids = self.prev_ids = torch.empty(0, dtype=torch.long)
        self.has_next = torch.empty(0, dtype=torch.bool)

    def __len__(self) -> int:
        return min(self.pushed, self.capacity)

    def _allocate(self, s_prev: State, obs: torch.Tensor, label: torch.Tensor) -> None:
        n, dev = self.capacity, obs.device
        self.s_prev = [torch.zeros(n, *s.shape[1:], dtype=s.dtype, device=dev) for s in s_prev]
        self.s_next = [torch.zeros_like(s) for s in self.s_prev]
        self.obs = torch.zeros(n, *obs.shape[1:], dtype=obs.dtype, device=dev)
        self.obs_next = torch.zeros_like(self.obs)
        self.label = torch.zeros(n, *label.shape[1:], dtype=label.dtype, device=dev)
        self.weight = torch.zeros(n, dtype=obs.dtype, device=dev)
        self.has_next = torch.zeros(n, dtype=torch.bool, device=dev)
        self.ids = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.prev_ids = torch.full((n,), -1, dtype=torch.long, device=dev)

    def push(
        self,
        s_prev: State,
        obs: torch.Tensor,
        obs_next: torch.Tensor,
        s_next: State,
        label: torch.Tensor,
        weight: torch.Tensor,
        has_next: torch.Tensor,
        prev_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Append ``B`` transitions (row ``b`` of every argument); returns their ids ``(B,)``.

        The oldest transitions are overwritten once the buffer is full.  When ``B`` exceeds the
        capacity only the last ``capacity`` rows are kept (their ids are still returned for all).
        """
        batch = obs.shape[0]
        if not self.s_prev:
            self._allocate(s_prev, obs, label)
        if len(s_prev) != len(self.s_prev) or len(s_next) != len(self.s_next):
            raise ShapeError(
                f"state has {len(s_prev)} tensors; the buffer holds states of {len(self.s_prev)} "
                "tensors; use one buffer per model"
            )
        ids = torch.arange(self.pushed, self.pushed + batch, device=obs.device)
        keep = slice(max(0, batch - self.capacity), batch)
        slots = ids[keep] % self.capacity
        for dst, src in zip(self.s_prev, s_prev, strict=True):
            dst[slots] = src[keep].detach()
        for dst, src in zip(self.s_next, s_next, strict=True):
            dst[slots] = src[keep].detach()
        self.obs[slots] = obs[keep].detach()
        self.obs_next[slots] = obs_next[keep].detach()
        self.label[slots] = label[keep]
        self.weight[slots] = weight[keep].to(self.weight.dtype)
        self.has_next[slots] = has_next[keep]
        self.ids[slots] = ids[keep]
        self.prev_ids[slots] = prev_ids[keep]
        self.pushed += batch
        return ids

    def slots_of(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots of transition ids and whether each is still in the buffer."""
        slots = ids.clamp(min=0) % self.capacity
        return slots, (ids >= 0) & (self.ids[slots] == ids)

    def sample(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """``m`` slots drawn uniformly with replacement from the filled part of the buffer."""
        if len(self) == 0:
            raise ConfigError("cannot sample from an empty FPP buffer; push transitions first")
        idx = torch.randint(len(self), (m,), generator=generator)
        return idx.to(self.ids.device)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "capacity": self.capacity,
            "pushed": self.pushed,
            "s_prev": list(self.s_prev),
            "s_next": list(self.s_next),
        }
        if self.s_prev:
            state.update({name: getattr(self, name) for name in self.FIELDS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise CheckpointError(
                f"FPP buffer in the checkpoint holds {int(state['capacity'])} transitions; this "
                f"rule was configured with buffer_size={self.capacity}; use the same buffer size"
            )
        self.pushed = int(state["pushed"])
        self.s_prev = [t.clone() for t in state["s_prev"]]
        self.s_next = [t.clone() for t in state["s_next"]]
        if self.s_prev:
            for name in self.FIELDS:
                setattr(self, name, state[name].clone())


@dataclass(frozen=True)
class FPPOptions(RuleOptions):
    """The ``[train.fpp]`` table (see the module docstring for each one).

    ``replay_batch = 0`` samples as many transitions per update as the training batch has
    sequences (a config file has no null, so 0 stands for the constructor's ``None``).
    ``loss_steps = "all"`` gives every step the sequence's label: with the label only at the last
    step (``"last"``) it reaches earlier states only through refreshed buffer entries, and FPP
    learns far more slowly.
    """

    table = "train.fpp"

    buffer_size: int = 1000
    updates: int = 10
    replay_batch: int = 0
    state_weight: float = 1.0
    refresh_random: int = 0
    propagate: bool = False
    loss_steps: str = "all"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("buffer_size", self.buffer_size, 1)
        _check_int("updates (n, sampled one-step updates per step)", self.updates, 0)
        _check_int("replay_batch (transitions per update; 0: the batch size)", self.replay_batch, 0)
        _check_int("refresh_random (extra refreshed transitions per step)", self.refresh_random, 0)
        _check_int("seed", self.seed, 0)
        if not (0.0 <= float(self.state_weight) < float("inf")):
            raise ConfigError(
                f"FPP state_weight must be finite and >= 0, got {self.state_weight!r}"
            )
        check_loss_steps(self.loss_steps)

    def rule_kwargs(self) -> dict[str, Any]:
        return {**super().rule_kwargs(), "replay_batch": self.replay_batch or None}


class FPP(Rule):
    """Fixed-Point Propagation: one-step state + target updates on replayed transitions.

    See the module docstring for the exact losses, the refresh rule and the adaptation to
    terminal classification.
    """

    name = "fpp"
    Options = FPPOptions
    # FPP runs any model whose state is a tuple of float tensors, but it has only been shown to
    # learn with gated cells and with the tanh RNN on Cycleworld (its paper's setting; on the
    # which-fired-first memory task the tanh RNN does not learn reliably): the list is what is
    # verified
    models = ("rnn", "lstm", "gru")

    def __init__(
        self,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        *,
        buffer_size: int = FPPOptions.buffer_size,
        updates: int = FPPOptions.updates,
        replay_batch: int | None = None,
        state_weight: float = FPPOptions.state_weight,
        refresh_random: int = FPPOptions.refresh_random,
        propagate: bool = FPPOptions.propagate,
        loss_steps: str = FPPOptions.loss_steps,
        seed: int = FPPOptions.seed,
        clip: float = 1.0,
        target: str = "label",
    ) -> None:
        super().__init__(model, optimizer, clip, target)
        if replay_batch is not None:  # None, not 0, asks for the batch size here
            _check_int("replay_batch (transitions per update)", replay_batch, 1)
        FPPOptions(  # the one place the options are checked
            buffer_size=buffer_size,
            updates=updates,
            replay_batch=replay_batch or 0,
            state_weight=state_weight,
            refresh_random=refresh_random,
            propagate=propagate,
            loss_steps=loss_steps,
            seed=seed,
        )
        check_loss_steps_for(loss_steps, target, "train.fpp.loss_steps")
        self.buffer = ReplayBuffer(buffer_size)
        self.updates, self.replay_batch = updates, replay_batch
        self.state_weight, self.refresh_random = float(state_weight), refresh_random
        self.propagate, self.loss_steps, self.seed = propagate, loss_steps, seed
        self.generator = torch.Generator().manual_seed(seed)
        readout = getattr(model, "readout", None)
        beta_ids = {id(p) for p in readout.parameters()} if readout is not None else set()
        params = [p for p in model.parameters() if p.requires_grad]
        self.beta_params = [p for p in params if id(p) in beta_ids]
        self.w_params = [p for p in params if id(p) not in beta_ids]
        self.last_update: UpdateResult | None = None

    # -- the forward procedure -------------------------------------------------------------
    def _check_state(self, state: State, batch: int) -> None:
        ok = isinstance(state, tuple) and all(
            isinstance(s, torch.Tensor) and s.is_floating_point() and s.shape[:1] == (batch,)
            for s in state
        )
        if not ok or not state:
            raise ConfigError(
                "FPP needs a model whose state is a non-empty tuple of floating (batch, ...) "
                f"tensors; {type(self.model).__name__} does not qualify.  Supported: "
                + "; ".join(SUPPORTED_MODELS)
            )

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        self.check_batch(x, y)
        batch, steps = x.shape[0], x.shape[1]
        self.model.train()
        check_loss_steps(self.loss_steps)
        scoring = loss_scoring(y, self.target, self.loss_steps, steps)
        report = scoring.weights
        state = self.model.initial_state(batch)
        self._check_state(state, batch)
        prev_ids = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        m = self.replay_batch or batch
        total, logits = 0.0, None
        for t in range(steps):
            with torch.no_grad():
                out, s_t = self.model.step(x[:, t], state)
                if t + 1 < steps:
                    obs_next = x[:, t + 1]
                    _, s_next = self.model.step(obs_next, s_t)
                else:
                    obs_next = torch.zeros_like(x[:, t])
                    s_next = tuple(torch.zeros_like(s) for s in s_t)
                y_t = scoring.at(t)
                if report[t] != 0.0:
                    total += report[t] * float(step_loss(out, y_t, self.target))
            prev_ids = self.buffer.push(
                state,
                x[:, t],
                obs_next,
                s_next,
                y_t,
                self._target_weights(scoring, t, batch, x.device),
                torch.full((batch,), t + 1 < steps, dtype=torch.bool, device=x.device),
                prev_ids,
            )
            for _ in range(self.updates):
                self.update(self.buffer.sample(m, self.generator))
            if self.updates > 0 and self.refresh_random > 0:
                self.refresh(self.buffer.sample(self.refresh_random, self.generator))
            state, logits = s_t, out.detach()
        assert logits is not None
        scored = sum(report)
        return BatchResult(loss=total / scored if scored else 0.0, logits=logits)

    def _target_weights(
        self, scoring: Scoring, t: int, batch: int, device: torch.device
    ) -> torch.Tensor:
        """``w_i`` of the ``batch`` transitions of step ``t``: 1 where the step's loss scores
        the sample (per-step labels: that sample's target is scored there), else 0."""
        if self.target == "label_per_step":
            return (scoring.at(t) >= 0).to(torch.float32)
        return torch.full((batch,), 1.0 if scoring.weights[t] > 0 else 0.0, device=device)

    # -- one training update -------------------------------------------------------------------
    def losses(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_s, L_t)`` of the transitions in ``slots`` with the current weights (with graph)."""
        buf = self.buffer
        s_prev = tuple(s[slots] for s in buf.s_prev)
        target = tuple(s[slots] for s in buf.s_next)
        out, s_t = self.model.step(buf.obs[slots], s_prev)
        _, s_next = self.model.step(buf.obs_next[slots], s_t)
        h = buf.has_next[slots].to(out.dtype)
        w = buf.weight[slots].to(out.dtype)
        per_row = sum(
            (a - b).pow(2).reshape(a.shape[0], -1).mean(dim=1)
            for a, b in zip(s_next, target, strict=True)
        )
        state_loss = (h * per_row).sum() / h.sum().clamp(min=1.0)
        losses = per_sample_loss(out, buf.label[slots], self.target)
        target_loss = (w * losses).sum() / w.sum().clamp(min=1.0)
        return state_loss, target_loss

    def update(self, slots: torch.Tensor) -> UpdateResult:
        """One FPP update on the given buffer slots: gradient step, then refresh (docstring)."""
        state_loss, target_loss = self.losses(slots)
        total = self.state_weight * state_loss + target_loss
        self.optimizer.zero_grad(set_to_none=True)
        grads_w = torch.autograd.grad(
            total, self.w_params, retain_graph=bool(self.beta_params), allow_unused=True
        )
        grads_b = torch.autograd.grad(target_loss, self.beta_params, allow_unused=True)
        for p, g in zip(
            self.w_params + self.beta_params, list(grads_w) + list(grads_b), strict=True
        ):
            p.grad = None if g is None else g.detach()
        self._clip_and_step()
        self.refresh(slots)
        self.last_update = UpdateResult(float(state_loss.detach()), float(target_loss.detach()))
        return self.last_update

    @torch.no_grad()
    def refresh(self, slots: torch.Tensor) -> None:
        """Recompute the stored ``s_{T+1}`` of ``slots`` with the current weights.

        ``s_T = f_W(s_{T-1}, o_T)``, ``s_{T+1} <- f_W(s_T, o_{T+1})`` for transitions with a
        successor; with ``propagate`` also ``s_{T}`` into the previous transition's next state.
        """
        buf = self.buffer
        slots = torch.unique(slots)  # duplicates would write identical values anyway
        _, s_t = self.model.step(buf.obs[slots], tuple(s[slots] for s in buf.s_prev))
        _, s_next = self.model.step(buf.obs_next[slots], s_t)
        has = buf.has_next[slots]
        own = slots[has]
        for dst, src in zip(buf.s_next, s_next, strict=True):
            dst[own] = src[has]
        if not self.propagate:
            return
        prev, valid = buf.slots_of(buf.prev_ids[slots])
        # a previous transition that was itself refreshed above keeps its own two-step refresh
        valid &= ~torch.isin(prev, own)
        if valid.any():
            for dst, src in zip(buf.s_next, s_t, strict=True):
                dst[prev[valid]] = src[valid]

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.generator.set_state(state["generator"])
