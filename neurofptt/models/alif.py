"""Recurrent adaptive LIF (ALIF) layer and network, in the cell protocol.

Adaptive neurons (Bellec et al., Nat. Commun. 2020) raise their threshold after each spike and let
it relax back with a slow time constant, which gives a spiking network a memory longer than the
membrane time constant.  The dynamics follow the LIF convention of
:class:`neurofptt.models.spiking.RecurrentLIF` (delayed reset, no biases), with one extra state
variable per neuron, the adaptation ``a``::

    I_t = W_in x_t + W_rec z_{t-1}
    v_t = beta v_{t-1} + I_t - theta z_{t-1}              (reset="subtract", by the baseline theta)
    a_t = rho a_{t-1} + z_{t-1}
    A_t = theta + beta_a a_t
    z_t = H(v_t - A_t)

``reset="zero"`` uses ``v_t = beta (1 - z_{t-1}) v_{t-1} + I_t`` and ``reset="none"`` drops the
reset term, as ``snntorch.Leaky`` does.  The adaptation is the *unscaled* form of the reference
e-prop code (a spike adds 1 to ``a``, not ``1 - rho``), so ``beta_a`` is the threshold jump that a
single spike causes on the next step; with sustained firing at ``r`` spikes per step the threshold
settles near ``theta + beta_a r / (1 - rho)``.

The spike is the model's snntorch surrogate (:func:`neurofptt.models.spiking.make_surrogate`)
applied to ``v_t - A_t``: Heaviside forward, surrogate derivative backward.  As in
``snntorch.Leaky``, the reset signal carries no gradient.  The adaptation path does carry it (a
neuron's own spikes raise its own threshold), which is what e-prop's adaptation eligibility vector
accounts for.

With ``beta_a = 0`` the layer computes, operation for operation, what ``RecurrentLIF`` computes, so
the forward pass of :class:`AdaptiveSpikingRNN` equals that of
:class:`~neurofptt.models.spiking.SpikingRNN` bit for bit (same weights, same inputs).  The
constants are stored as buffers with the dtype conversions ``snntorch.Leaky`` applies, which keeps
that equality true in float32 and float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neurofptt.errors import ConfigError
from neurofptt.models.base import State
from neurofptt.models.spiking import SpikingRNN, make_surrogate

RESETS = ("subtract", "zero", "none")


def _check_unit_interval(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be in [0, 1], got {value}")


class RecurrentALIF(nn.Module):
    """All-to-all recurrent layer of adaptive LIF neurons (no biases).

    State: ``(v, z, a)``, each ``(B, n_rec)``: membrane potential, the previous step's spikes and
    the adaptation variable.  Parameter names (``fc_in``, ``fc_rec``) are those of
    :class:`~neurofptt.models.spiking.RecurrentLIF`, so weights can be copied between the two.
    """

    def __init__(
        self,
        n_in: int,
        n_rec: int,
        *,
        beta: float,
        threshold: float,
        beta_a: float = 0.2,
        rho: float = 0.95,
        reset: str = "subtract",
        surrogate_name: str = "fast_sigmoid",
        slope: float = 5.0,
    ) -> None:
        super().__init__()
        _check_unit_interval("beta (membrane decay)", beta)
        _check_unit_interval("rho (adaptation decay)", rho)
        if not (math.isfinite(threshold) and threshold > 0):
            raise ConfigError(f"threshold must be a positive number, got {threshold}")
        if not (math.isfinite(beta_a) and beta_a >= 0):
            raise ConfigError(f"beta_a (adaptation strength) must be >= 0, got {beta_a}")
        if reset not in RESETS:
            raise ConfigError(f"unknown reset {reset!r}; choose one of {RESETS}")
        self.n_in, self.n_rec, self.reset = n_in, n_rec, reset
        self.fc_in = nn.Linear(n_in, n_rec, bias=False)
        self.fc_rec = nn.Linear(n_rec, n_rec, bias=False)
        self.spike_fn = make_surrogate(surrogate_name, slope)
        # torch.as_tensor(float) is float32, as in snntorch.Leaky; .double() converts them alike.
        self.register_buffer("beta", torch.as_tensor(beta))
        self.register_buffer("threshold", torch.as_tensor(threshold))
        self.register_buffer("beta_a", torch.as_tensor(beta_a))
        self.register_buffer("rho", torch.as_tensor(rho))

    def initial_state(self, batch: int) -> State:
        w = self.fc_in.weight
        zeros = torch.zeros(batch, self.n_rec, dtype=w.dtype, device=w.device)
        return (zeros, zeros.clone(), zeros.clone())

    def adaptive_threshold(self, a: torch.Tensor) -> torch.Tensor:
        """``A = theta + beta_a a``: the threshold the spike and its surrogate are taken against."""
        return self.threshold + self.beta_a * a

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        v, z, a = state
        current = self.fc_in(x) + self.fc_rec(z)
        reset = z.detach()
        if self.reset == "subtract":
            v = self.beta * v + current - reset * self.threshold
        elif self.reset == "zero":
            v = self.beta * ((1 - reset) * v) + current
        else:
            v = self.beta * v + current
        a = self.rho * a + z
        spk = self.spike_fn(v - self.adaptive_threshold(a))
        spk = spk.to(current.dtype)  # snntorch emits float32 spikes whatever the model's dtype
        return spk, (v, spk, a)


class AdaptiveSpikingRNN(SpikingRNN):
    """Recurrent ALIF layer followed by the leaky-integrator readout of ``SpikingRNN``.

    State: ``(v, z, a, out)``.  Constructed in the same order as ``SpikingRNN``, so the same seed
    gives the same initial weights; with ``beta_a = 0`` the two networks are identical.
    """

    layer_cls = RecurrentALIF

    def __init__(
        self, n_in: int, n_rec: int, n_out: int, *, beta_a: float = 0.2, rho: float = 0.95, **kwargs
    ) -> None:
        super().__init__(n_in, n_rec, n_out, beta_a=beta_a, rho=rho, **kwargs)
