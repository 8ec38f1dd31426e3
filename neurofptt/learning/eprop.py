"""e-prop: online gradients from eligibility traces and a broadcast learning signal.

e-prop (Bellec et al., Nat. Commun. 2020) splits the gradient of a recurrent network into a part
each synapse can compute forward in time, the *eligibility trace* ``e_ji,t`` (how weight ``W_ji``
has influenced neuron ``j`` through ``j``'s own state), and a *learning signal* ``L_j,t`` (how the
loss at step ``t`` depends on ``j``'s output), and updates with ``sum_t L_j,t e_ji,t``.  Nothing is
stored per time step, so memory does not grow with the sequence length, and the update can be
applied at every step.  All gradients here are written by hand: autograd is only used for the
pointwise surrogate derivative below, never through time.

Spiking networks (:class:`~neurofptt.models.spiking.SpikingRNN`, LIF, and
:class:`~neurofptt.models.alif.AdaptiveSpikingRNN`, ALIF; LIF is ALIF with ``beta_a = 0``)::

    v_t = beta v_{t-1} + W_in x_t + W_rec z_{t-1} - theta z_{t-1}
    a_t = rho a_{t-1} + z_{t-1},   A_t = theta + beta_a a_t,   z_t = H(v_t - A_t)
    o_t = kappa o_{t-1} + W_out z_t                                (kappa = the readout's out_beta)

    psi_j,t    = sigma'(v_j,t - A_j,t)                  the model's own surrogate derivative
    p_i,t      = x_i,t (input synapses) or z_i,t-1 (recurrent synapses)
    eps^v_ji,t = beta eps^v_ji,t-1 + p_i,t              (= zbar_i,t: one trace per presynaptic i)
    eps^a_ji,t = (rho - beta_a psi_j,t-1) eps^a_ji,t-1 + psi_j,t-1 eps^v_ji,t-1,   eps^a_ji,1 = 0
    e_ji,t     = psi_j,t (eps^v_ji,t - beta_a eps^a_ji,t)
    ebar_ji,t  = kappa ebar_ji,t-1 + e_ji,t             (the readout's filter, applied to e)
    L_j,t      = sum_k B_jk dl_t/do_k,t                 (B = W_out^T, or a fixed random matrix)
    dE/dW_ji   = sum_t L_j,t ebar_ji,t
    dE/dW_out  = sum_t dl_t/do_t zbar^out_t^T,  zbar^out_t = kappa zbar^out_{t-1} + z_t  (exact)

``psi`` is obtained by differentiating the model's surrogate spike function (the very function
``z = spike_fn(v - A)`` the forward pass calls) at ``u = v - A``, so e-prop and autograd use the
same pseudo-derivative, whatever surrogate and slope the model was built with.  With
``reset="zero"`` (``v_t = beta (1 - z_{t-1}) v_{t-1} + I_t``) the leak factor depends on the
postsynaptic neuron and ``eps^v`` becomes a per-synapse trace with decay ``beta (1 - z_j,t-1)``.

What the rule drops, and the exactness that follows: e-prop ignores every path by which a spike
influences *other* neurons' (or its own, through ``W_rec`` and the reset) future states; it keeps
the membrane leak, the adaptation (a neuron's own spikes raise its own threshold) and the readout
leak.  With ``B = W_out^T`` the gradients above therefore equal, to rounding, the autograd
gradients of the same loss computed with ``z_{t-1}`` detached in the recurrent input and in the
reset (the "stop_z_gradients" reference); with ``W_rec = 0`` they equal full BPTT, because
``snntorch`` (and the ALIF layer) already detach the reset.  Both are tested.

Self-connections: the recurrent diagonal is learned like any other synapse (its trace is the
neuron's own filtered spike train, exactly what the detached-``z`` reference gives).  With
``self_connections=False`` the diagonal of the ``W_rec`` gradient is set to zero, as in the
reference e-prop code; the diagonal weights then keep their value (zero them beforehand for a
network without autapses).

Memory: ``ebar`` (and ``eps^a`` for ALIF, ``eps^v`` for zero reset) are per synapse and per
sample, ``O(B n_rec (n_in + n_rec))``, independent of the sequence length.  For LIF with
``kappa = 0`` the update factorises into per-neuron terms ``psi_j zbar_i``; the readout filter
``ebar`` is what makes it per-synapse.

Vanilla tanh RNN (:class:`~neurofptt.models.conventional.GatedRNN` ``"rnn"``, one layer),
``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, ``o_t = W_o h_t + b_o``: the hidden state
is also what neurons send each other, so e-prop keeps only the one-step Jacobian::

    e_ji,t = (1 - h_j,t^2) p_i,t    with p = x_t (W_ih), h_{t-1} (W_hh), 1 (biases)
    dE/dW_ji = sum_t L_j,t e_ji,t,  L_t = B^T dl_t/do_t;   readout: the exact gradient

which equals autograd with ``h_{t-1}`` detached in the recurrent input (the neuron's own
self-recurrence ``W_jj`` is dropped too).

Loss for terminal classification (one label per sequence): e-prop learns at the steps that have
a learning signal.  ``loss_steps="last"`` (the default) uses ``E = CE(o_T, y)``, the objective BPTT
and the evaluation use, so comparisons isolate the gradient approximation; the filtered trace
``ebar_T`` still credits every earlier step.  ``"all"`` uses ``E = (1/T) sum_t CE(o_t, y)``, a
signal at every step, which is what makes ``online=True`` update at every step; an integer ``k``
averages the last ``k`` steps (all of them if ``k >= T``).  Cross-entropy is averaged over the
batch, so ``dl_t/do_t = w_t (softmax(o_t) - onehot(y)) / B``.  Tasks with a target at every step
use ``loss_steps="all"`` with each step's own target (cross-entropy, or MSE with
``dl_t/do_t = 2 w_t (o_t - y_t) / (B n_out)``; :mod:`neurofptt.learning.objectives`).  Per-step
labels with unlabelled steps (``-1``) have a learning signal only where ``loss_steps`` scores a
labelled step of a sample (every one, the last, or the last ``k``): there
``dl_t/do_t = w_t (softmax(o_t) - onehot(y_t)) / n_t`` with ``w_t = n_t / N``, and 0 for the
other samples, the exact gradient of the mean cross-entropy over the scored pairs
(:func:`~neurofptt.learning.objectives.loss_scoring`).

Optional firing-rate regularisation (spiking models)::

    E_reg = reg_rate / 2 * sum_j (fbar_j - target_rate)^2,   fbar_j = mean over batch, time of z_j
    dE_reg/dW_ji = reg_rate (fbar_j - target_rate) * mean_{b,t} e_ji,t

(exact under the same detached-``z`` reference).  ``target_rate`` is in spikes per step.  In
online mode, where ``fbar`` is not known until the sequence ends, step ``t`` uses the running mean
rate over steps ``1..t`` and contributes ``1/T`` of the mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.base import BatchResult, Rule, RuleOptions
from neurofptt.learning.distributed import world_size
from neurofptt.learning.objectives import (
    check_loss_steps_for,
    loss_scoring,
    scored_units,
    step_loss_and_grad,
    uniform_weights,
)
from neurofptt.learning.onestep import lif_step, steps_locally
from neurofptt.models.alif import AdaptiveSpikingRNN, RecurrentALIF
from neurofptt.models.base import RecurrentModel, State, check_sequence
from neurofptt.models.conventional import GatedRNN
from neurofptt.models.spiking import LeakyReadout, RecurrentLIF, SpikingRNN
from neurofptt.tasks.base import check_targets

FEEDBACKS = ("symmetric", "random")
SUPPORTED = (
    "SpikingRNN (LIF), AdaptiveSpikingRNN (ALIF) and single-layer GatedRNN('rnn', ...) (tanh)"
)

LossSteps = str | int


def forward_name(name: str) -> str:
    """A parameter's name as the forward reads it.  A weight under a ``torch.nn.utils.parametrize``
    parametrization keeps its trainable tensor as ``<module>.parametrizations.weight.original``;
    the fake quantization of quantization-aware training (:mod:`neurofptt.quant.fake`) passes
    the gradient straight through, so the gradient e-prop forms for the weight the forward used
    is exactly the gradient of that original, as autograd would find it."""
    return name.replace(".parametrizations.weight.original", ".weight")


@dataclass(frozen=True)
class EPropOptions(RuleOptions):
    """The ``[train.eprop]`` table (see the module docstring).

    ``feedback``: ``"symmetric"`` (``B = W_out^T``) or ``"random"`` (fixed, drawn from
    ``feedback_seed``); ``loss_steps``: ``"last"``, ``"all"`` or a number ``k`` of final steps;
    ``online``: an update at every step with a loss; ``reg_rate``/``target_rate``: the firing-rate
    regulariser (spikes per step); ``self_connections``: whether ``W_jj`` learns.
    """

    table = "train.eprop"

    feedback: str = "symmetric"
    feedback_seed: int = 0
    loss_steps: LossSteps = "last"
    online: bool = False
    reg_rate: float = 0.0
    target_rate: float = 0.01
    self_connections: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feedback not in FEEDBACKS:
            raise ConfigError(
                f"e-prop feedback {self.feedback!r} is unknown; use one of {FEEDBACKS}"
            )
        # a number of steps or a word: the type check does not read that annotation
        check_loss_steps(self.loss_steps)
        if not self.reg_rate >= 0:
            raise ConfigError(f"e-prop reg_rate must be >= 0, got {self.reg_rate}")
        if not 0 <= self.target_rate <= 1:
            raise ConfigError(
                f"e-prop target_rate is in spikes per step, in [0, 1]; got {self.target_rate}"
            )


def surrogate_derivative(
    spike_fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor
) -> torch.Tensor:
    """``psi = d spike_fn / du`` at ``u``, from the surrogate's own backward (pointwise, no graph
    through time), so e-prop's pseudo-derivative is exactly the one autograd would use."""
    with torch.enable_grad():
        leaf = u.detach().requires_grad_(True)
        out = spike_fn(leaf)
        (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out), allow_unused=True)
    if grad is None:
        raise ConfigError("the model's spike function has no surrogate gradient; e-prop needs one")
    return grad.detach().to(u.dtype)


def loss_weights(loss_steps: LossSteps, steps: int) -> list[float]:
    """Weight ``w_t`` of each step's cross-entropy in the objective ``sum_t w_t CE(o_t, y)``
    when every sample is scored at the same steps (per-step labels with unlabelled steps weigh
    by the scored samples, :func:`~neurofptt.learning.objectives.loss_scoring`)."""
    check_loss_steps(loss_steps)
    return uniform_weights(steps, loss_steps)


def check_loss_steps(loss_steps: Any) -> None:
    """Raise :class:`ConfigError` unless ``loss_steps`` is ``"last"``, ``"all"`` or an int >= 1."""
    ok = loss_steps in ("last", "all") or (
        isinstance(loss_steps, int) and not isinstance(loss_steps, bool) and loss_steps >= 1
    )
    if not ok:
        raise ConfigError(
            f"e-prop loss_steps must be 'last', 'all' or a positive number of final steps, "
            f"got {loss_steps!r}"
        )


def random_feedback(
    n_hidden: int,
    n_out: int,
    seed: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A fixed ``(n_hidden, n_out)`` feedback matrix with entries ``N(0, 1 / n_hidden)``, the
    scale of the readout weights it stands in for; the same seed always gives the same matrix."""
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(n_hidden, n_out, generator=gen, dtype=torch.float64) / n_hidden**0.5
    return b.to(dtype=dtype, device=device)


def _describe(model: torch.nn.Module) -> str:
    if isinstance(model, GatedRNN):
        return f"GatedRNN({model.kind!r}) with {len(model.sizes)} layer(s)"
    return type(model).__name__


class EligibilityTracer:
    """Runs a supported model one step at a time and keeps its e-prop eligibility traces.

    ``start(batch)`` resets the traces and returns the initial state; ``step(x_t, state)`` runs
    the model's own ``step`` (without a graph) and updates the traces; ``eligibility()`` and
    ``filtered_eligibility()`` return ``e_t`` and ``ebar_t`` per parameter; ``add_gradients``
    adds step ``t``'s contribution ``sum_b L_t ebar_t`` (and the readout's exact gradient).
    """

    def __init__(self, model: RecurrentModel, *, self_connections: bool = True) -> None:
        self.model = model
        self.self_connections = self_connections
        if isinstance(model, (SpikingRNN, AdaptiveSpikingRNN)):
            self._init_spiking(model)
        elif (
            isinstance(model, GatedRNN)
            and model.kind == "rnn"
            and len(model.cells) == 1
            and model.cells[0].nonlinearity == "tanh"
        ):
            self.kind = "rnn"
            self.n_hidden = model.sizes[0]
            cell = model.cells[0]
            self.names = {"ih": "cells.0.weight_ih", "hh": "cells.0.weight_hh"}
            if cell.bias:
                self.names.update(b_ih="cells.0.bias_ih", b_hh="cells.0.bias_hh")
            self.readout_names = {"w": "readout.weight"}
            if model.readout.bias is not None:
                self.readout_names["b"] = "readout.bias"
        else:
            raise ConfigError(f"e-prop supports {SUPPORTED}; got {_describe(model)}")
        known = set(self.names.values()) | set(self.readout_names.values())
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        extra = sorted(n for n in trainable if forward_name(n) not in known)
        if extra:
            raise ConfigError(
                f"e-prop computes gradients for {sorted(known)} only; freeze or remove the "
                f"trainable parameter(s) {extra}"
            )

    def _init_spiking(self, model: SpikingRNN | AdaptiveSpikingRNN) -> None:
        self.kind = "spiking"
        rec, readout = model.rec, model.readout
        if not isinstance(readout, LeakyReadout):
            raise ConfigError(f"e-prop supports {SUPPORTED}; the readout is not a LeakyReadout")
        if isinstance(rec, RecurrentALIF):
            self.alif = True
        elif isinstance(rec, RecurrentLIF):
            lif = rec.lif
            if not lif.reset_delay or lif.inhibition or lif.state_quant:
                raise ConfigError(
                    "e-prop supports the LIF layer with snntorch's default delayed reset, "
                    "no inhibition and no state quantization"
                )
            if float(lif.graded_spikes_factor.detach()) != 1.0:
                raise ConfigError("e-prop needs binary spikes (graded_spikes_factor = 1)")
            self.alif = False
        else:
            raise ConfigError(f"e-prop supports {SUPPORTED}; got layer {type(rec).__name__}")
        self.n_in, self.n_hidden = rec.n_in, rec.n_rec
        self.names = {"in": "rec.fc_in.weight", "rec": "rec.fc_rec.weight"}
        self.readout_names = {"w": "readout.fc_out.weight"}

    def _read_constants(self) -> None:
        """The neuron constants, read from the model's buffers (the values its forward uses)."""
        rec, readout = self.model.rec, self.model.readout
        if self.alif:
            self.spike_fn = rec.spike_fn
            self.threshold_of = rec.adaptive_threshold
            self.beta = float(rec.beta.detach())
            self.beta_a, self.rho = float(rec.beta_a.detach()), float(rec.rho.detach())
            self.reset = rec.reset
        else:
            lif = rec.lif
            self.spike_fn = lif.spike_grad
            threshold = lif.threshold.detach()
            self.threshold_of = lambda a: threshold
            self.beta = float(lif.beta.detach().clamp(0, 1))
            self.beta_a, self.rho = 0.0, 0.0
            self.reset = ("subtract", "zero", "none")[int(lif.reset_mechanism_val)]
        self.kappa = float(readout.li.beta.detach().clamp(0, 1))

    @property
    def out_weight(self) -> torch.Tensor:
        """The readout weight ``W_out`` (``(n_out, n_hidden)``), whose transpose is the
        symmetric feedback matrix."""
        if self.kind == "spiking":
            return self.model.readout.fc_out.weight
        return self.model.readout.weight

    # -- running the model ------------------------------------------------------------------
    def start(self, batch: int, *, track_rate: bool = False) -> State:
        """Reset every trace (the initial state is a constant) and return the initial state."""
        state = self.model.initial_state(batch)
        ref = self.out_weight
        self._track_rate = track_rate and self.kind == "spiking"
        self._local_step = self.kind == "spiking" and steps_locally(self.model)
        self._batch = batch
        self._steps = 0
        if self.kind == "spiking":
            self._read_constants()
            n_pre = self.n_in + self.n_hidden

            def zeros(*shape: int) -> torch.Tensor:
                return torch.zeros(*shape, dtype=ref.dtype, device=ref.device)

            per_synapse = (batch, self.n_hidden, n_pre)
            self._eps_v = zeros(*per_synapse) if self.reset == "zero" else zeros(batch, n_pre)
            self._eps_a = zeros(*per_synapse) if self.alif else None
            self._psi = zeros(batch, self.n_hidden)
            self._trace = self._full(self._eps_v)
            # e_t itself only where ebar cannot take it in as an outer product (see step)
            outer = self.reset != "zero" and not self.alif and not self._track_rate
            self._e = None if outer else zeros(*per_synapse)
            self._ebar = zeros(*per_synapse)
            self._zbar_out = zeros(batch, self.n_hidden)
            if self._track_rate:
                self._e_sum = zeros(self.n_hidden, n_pre)
                self._spike_sum = zeros(self.n_hidden)
        return state

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One model step; updates ``eps^v``, ``eps^a``, ``psi``, ``e`` and ``ebar``.  The LIF
        network's step runs without its modules (:func:`~neurofptt.learning.onestep.lif_step`,
        the same numbers)."""
        if self._local_step:
            logits, new_state = lif_step(self.model, x, state)
        else:
            logits, new_state = self.model.step(x, state)
        self._steps += 1
        if self.kind == "rnn":
            self._x, self._h_prev, self._h = x, state[0], new_state[0]
            return logits, new_state
        z_prev = state[1]
        v, z = new_state[0], new_state[1]
        a = new_state[2] if self.alif else None
        pre = torch.cat([x.to(v.dtype), z_prev], dim=1)  # p_t: (B, n_in + n_rec)
        if self.alif:
            # eps^a_t from the previous step's psi and eps^v (before eps^v moves on)
            decay_a = (self.rho - self.beta_a * self._psi).unsqueeze(2)
            self._eps_a.mul_(decay_a).add_(self._psi.unsqueeze(2) * self._full(self._eps_v))
        if self.reset == "zero":
            decay_v = (self.beta * (1 - z_prev)).unsqueeze(2)
            self._eps_v.mul_(decay_v).add_(pre.unsqueeze(1))
        else:
            self._eps_v.mul_(self.beta).add_(pre)
        self._psi = surrogate_derivative(self.spike_fn, v - self.threshold_of(a))
        trace = self._full(self._eps_v)
        if self.alif:
            trace = trace - self.beta_a * self._eps_a
        self._trace = trace
        if self._e is None:
            # LIF with the subtractive reset: e_t is an outer product per sample, psi_t times
            # the presynaptic trace, which the batched product with an inner size of one adds
            # to kappa ebar in one pass over ebar, without writing e_t out (a pass of its own
            # and a second read, over the largest arrays of the rule)
            self._ebar.baddbmm_(self._psi.unsqueeze(2), trace, beta=self.kappa)
        else:
            torch.mul(self._psi.unsqueeze(2), trace, out=self._e)
            self._ebar.mul_(self.kappa).add_(self._e)
        self._zbar_out.mul_(self.kappa).add_(z)
        if self._track_rate:
            self._e_sum.add_(self._e.sum(0))
            self._spike_sum.add_(z.sum(0))
        return logits, new_state

    def _full(self, eps_v: torch.Tensor) -> torch.Tensor:
        return eps_v if eps_v.ndim == 3 else eps_v.unsqueeze(1)

    # -- traces -----------------------------------------------------------------------------
    def eligibility(self) -> dict[str, torch.Tensor]:
        """``e_t`` at the last step, per hidden-layer parameter: ``(B, n_post, n_pre)`` for
        weights, ``(B, n_post)`` for biases."""
        if self.kind == "spiking":
            e = self._e if self._e is not None else self._psi.unsqueeze(2) * self._trace
            return self._split(e)
        d = 1 - self._h**2
        out = {
            self.names["ih"]: d.unsqueeze(2) * self._x.unsqueeze(1),
            self.names["hh"]: d.unsqueeze(2) * self._h_prev.unsqueeze(1),
        }
        if "b_ih" in self.names:
            out[self.names["b_ih"]] = d
            out[self.names["b_hh"]] = d.clone()
        return out

    def filtered_eligibility(self) -> dict[str, torch.Tensor]:
        """``ebar_t = kappa ebar_{t-1} + e_t`` (the RNN's linear readout has no filter)."""
        if self.kind == "spiking":
            return self._split(self._ebar)
        return self.eligibility()

    def _split(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            self.names["in"]: t[..., : self.n_in],
            self.names["rec"]: t[..., self.n_in :],
        }

    # -- gradients --------------------------------------------------------------------------
    def zero_gradients(self) -> dict[str, torch.Tensor]:
        params = {forward_name(n): p for n, p in self.model.named_parameters()}
        names = [*self.names.values(), *self.readout_names.values()]
        return {n: torch.zeros_like(params[n]) for n in names}

    def _mask_diagonal(self, grads: dict[str, torch.Tensor]) -> None:
        if not self.self_connections:
            key = self.names["rec"] if self.kind == "spiking" else self.names["hh"]
            grads[key].diagonal().zero_()

    def add_gradients(
        self,
        grads: dict[str, torch.Tensor],
        grad_logits: torch.Tensor,
        feedback: torch.Tensor | None = None,
    ) -> None:
        """Add step ``t``'s e-prop gradient for ``dl_t/do_t = grad_logits`` (``(B, n_out)``).

        ``feedback`` is the ``(n_hidden, n_out)`` matrix ``B``; ``None`` means ``W_out^T``.
        """
        g = grad_logits
        fb = self.out_weight.detach().T if feedback is None else feedback
        signal = g @ fb.T  # L_t: (B, n_hidden)
        part: dict[str, torch.Tensor] = {}
        if self.kind == "spiking":
            hidden = torch.einsum("bj,bji->ji", signal, self._ebar)
            part.update(self._split(hidden))
            part[self.readout_names["w"]] = g.T @ self._zbar_out
        else:
            d = signal * (1 - self._h**2)
            part[self.names["ih"]] = d.T @ self._x.to(d.dtype)
            part[self.names["hh"]] = d.T @ self._h_prev
            if "b_ih" in self.names:
                part[self.names["b_ih"]] = d.sum(0)
                part[self.names["b_hh"]] = d.sum(0)
            part[self.readout_names["w"]] = g.T @ self._h
            if "b" in self.readout_names:
                part[self.readout_names["b"]] = g.sum(0)
        self._mask_diagonal(part)
        for name, value in part.items():
            grads[name].add_(value)

    def add_rate_gradients(
        self,
        grads: dict[str, torch.Tensor],
        reg_rate: float,
        target_rate: float,
        total_steps: int,
        *,
        step_only: bool = False,
    ) -> float:
        """Add the firing-rate regulariser's gradient; returns ``E_reg`` at the current rates.

        ``step_only=False`` (end of sequence): ``reg_rate (fbar - f0)_j mean_{b,t} e_ji,t`` with
        the sequence's mean rate.  ``step_only=True`` (online): the current step's share,
        ``reg_rate (fhat_t - f0)_j sum_b e_ji,t / (B T)`` with the running rate ``fhat_t``.
        """
        if self.kind != "spiking" or not self._track_rate:
            raise ConfigError("firing-rate regularisation needs a spiking model and track_rate")
        rate = self._spike_sum / (self._batch * self._steps)
        coef = reg_rate * (rate - target_rate)
        if step_only:
            part = coef.unsqueeze(1) * self._e.sum(0) / (self._batch * total_steps)
        else:
            part = coef.unsqueeze(1) * self._e_sum / (self._batch * self._steps)
        split = self._split(part)
        self._mask_diagonal(split)
        for name, value in split.items():
            grads[name].add_(value)
        return float(0.5 * reg_rate * (rate - target_rate).pow(2).sum())


def _check_options(
    reg_rate: float, target_rate: float, loss_steps: LossSteps, target: str = "label"
) -> None:
    EPropOptions(loss_steps=loss_steps, reg_rate=reg_rate, target_rate=target_rate)  # checks
    check_loss_steps_for(loss_steps, target, "train.eprop.loss_steps")


def _offline(
    tracer: EligibilityTracer,
    x: torch.Tensor,
    y: torch.Tensor,
    feedback: torch.Tensor | None,
    loss_steps: LossSteps,
    reg_rate: float,
    target_rate: float,
    target: str,
) -> tuple[dict[str, torch.Tensor], float, torch.Tensor]:
    """Accumulate e-prop gradients over a whole sequence: ``(grads, loss, last logits)``."""
    check_sequence(x, tracer.model.n_in)
    check_targets(x, y, target, tracer.model.n_out)
    batch, steps = x.shape[0], x.shape[1]
    check_loss_steps(loss_steps)
    scoring = loss_scoring(y, target, loss_steps, steps)
    weights = scoring.weights
    regularise = reg_rate > 0
    state = tracer.start(batch, track_rate=regularise)
    grads = tracer.zero_gradients()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)  # summed as a float would be
    logits = None
    for t in range(steps):
        logits, state = tracer.step(x[:, t], state)
        if weights[t] > 0:
            value, grad_logits = step_loss_and_grad(
                logits, scoring.at(t), target, weights[t], scoring.counts[t]
            )
            loss += value
            tracer.add_gradients(grads, grad_logits, feedback)
    if regularise:
        tracer.add_rate_gradients(grads, reg_rate, target_rate, steps)
    return grads, float(loss), logits


def eprop_gradients(
    model: RecurrentModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    feedback: torch.Tensor | None = None,
    loss_steps: LossSteps = EPropOptions.loss_steps,
    reg_rate: float = EPropOptions.reg_rate,
    target_rate: float = EPropOptions.target_rate,
    self_connections: bool = EPropOptions.self_connections,
    target: str = "label",
) -> dict[str, torch.Tensor]:
    """e-prop gradients of one batch ``x (B, T, n_in)``, labels ``y (B,)``, summed over the
    sequence, by parameter name.  The model's weights and ``.grad`` are not touched.

    ``feedback`` is the ``(n_hidden, n_out)`` matrix ``B`` of the learning signal; ``None`` uses
    ``W_out^T`` (symmetric e-prop).  See the module docstring for the equations and options.
    """
    _check_options(reg_rate, target_rate, loss_steps, target)
    tracer = EligibilityTracer(model, self_connections=self_connections)
    if reg_rate > 0 and tracer.kind != "spiking":
        raise ConfigError("e-prop firing-rate regularisation (reg_rate > 0) needs a spiking model")
    grads, _, _ = _offline(tracer, x, y, feedback, loss_steps, reg_rate, target_rate, target)
    return grads


class EProp(Rule):
    """e-prop with hand-written eligibility traces (see the module docstring).

    ``online=False``: gradients are summed over the sequence and applied in one optimizer step
    per batch.  ``online=True``: an optimizer step after every time step that has a loss (or a
    rate-regulariser) term, with that step's gradient; traces carry on across the updates.
    ``feedback="random"`` draws the fixed matrix ``B`` once from ``feedback_seed``.
    The reported loss is the cross-entropy objective (without the rate regulariser).
    """

    name = "eprop"
    Options = EPropOptions
    # hand-written traces: single-layer LIF/ALIF and the tanh RNN
    models = ("lif", "alif", "rnn")

    def __init__(
        self,
        model: RecurrentModel,
        optimizer: torch.optim.Optimizer,
        *,
        feedback: str = EPropOptions.feedback,
        feedback_seed: int = EPropOptions.feedback_seed,
        loss_steps: LossSteps = EPropOptions.loss_steps,
        online: bool = EPropOptions.online,
        reg_rate: float = EPropOptions.reg_rate,
        target_rate: float = EPropOptions.target_rate,
        self_connections: bool = EPropOptions.self_connections,
        clip: float = 1.0,
        target: str = "label",
    ) -> None:
        super().__init__(model, optimizer, clip, target)
        EPropOptions(  # the one place the options are checked
            feedback=feedback,
            feedback_seed=feedback_seed,
            loss_steps=loss_steps,
            online=online,
            reg_rate=reg_rate,
            target_rate=target_rate,
            self_connections=self_connections,
        )
        check_loss_steps_for(loss_steps, target, "train.eprop.loss_steps")
        self.tracer = EligibilityTracer(model, self_connections=self_connections)
        if reg_rate > 0 and self.tracer.kind != "spiking":
            raise ConfigError(
                "e-prop firing-rate regularisation (reg_rate > 0) needs a spiking model"
            )
        self.loss_steps, self.online = loss_steps, online
        self.reg_rate, self.target_rate = reg_rate, target_rate
        self.feedback_mode = feedback
        self.feedback: torch.Tensor | None = None
        if feedback == "random":
            w = self.tracer.out_weight
            self.feedback = random_feedback(
                self.tracer.n_hidden, model.n_out, feedback_seed, dtype=w.dtype, device=w.device
            )

    def _apply(self, grads: dict[str, torch.Tensor], units: float, scored: float) -> None:
        """Set the hand-made gradients and step (:meth:`Rule._clip_and_step`: ``units`` the
        loss averaged over, ``scored`` what this update scores)."""
        self.optimizer.zero_grad(set_to_none=True)
        for name, p in self.trainable().items():
            p.grad = grads[forward_name(name)].to(p.dtype)
        self._clip_and_step(units, scored)

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> BatchResult:
        self.model.train()
        if not self.online:
            grads, loss, logits = _offline(
                self.tracer,
                x,
                y,
                self.feedback,
                self.loss_steps,
                self.reg_rate,
                self.target_rate,
                self.target,
            )
            units = scored_units(y, self.target, self.loss_steps, x.shape[1])
            # the rate regulariser alone is a reason to step, even without a target
            self._apply(grads, units or len(y), units + (self.reg_rate > 0))
            return BatchResult(loss=loss, logits=logits.detach())
        self.check_batch(x, y)
        batch, steps = x.shape[0], x.shape[1]
        check_loss_steps(self.loss_steps)
        scoring = loss_scoring(y, self.target, self.loss_steps, steps)
        weights = scoring.weights
        regularise = self.reg_rate > 0
        units = sum(scoring.counts) or batch
        parallel = world_size() > 1  # every rank takes part in every step's combination
        state = self.tracer.start(batch, track_rate=regularise)
        loss = torch.zeros((), dtype=torch.float64, device=x.device)  # summed as a float would be
        for t in range(steps):
            logits, state = self.tracer.step(x[:, t], state)
            if weights[t] == 0 and not regularise and not parallel:
                continue
            grads = self.tracer.zero_gradients()
            if weights[t] > 0:
                y_t = scoring.at(t)
                value, grad_logits = step_loss_and_grad(
                    logits, y_t, self.target, weights[t], scoring.counts[t]
                )
                loss += value
                self.tracer.add_gradients(grads, grad_logits, self.feedback)
            if regularise:
                self.tracer.add_rate_gradients(
                    grads, self.reg_rate, self.target_rate, steps, step_only=True
                )
            self._apply(grads, units, scoring.counts[t] + regularise)
        return BatchResult(loss=float(loss), logits=logits.detach())

    def state_dict(self) -> dict[str, Any]:
        return {} if self.feedback is None else {"feedback": self.feedback}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "feedback" in state:
            self.feedback = state["feedback"].clone()
