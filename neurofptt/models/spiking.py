"""Recurrent LIF layer and leaky-integrator readout on snntorch neurons.

The cell protocol every learning rule drives (see :class:`neurofptt.models.base.RecurrentModel`):
``initial_state(batch)`` returns a tuple of tensors, ``step(x_t, state)`` advances one time step and
returns ``(logits_t, new_state)``.  Nothing is hidden in module attributes between calls, so a rule
can detach, store or replay the state freely.

The neuron dynamics are ``snntorch.Leaky`` with its default delayed reset:
``v_t = beta * v_{t-1} + I_t - z_{t-1} * theta`` (or zero reset), ``z_t = H(v_t - theta)``, which
is exactly what the fixed-point golden model implements with ``beta = 1 - 2**-leak_shift``.
"""

from __future__ import annotations

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from neurofptt.errors import ConfigError
from neurofptt.models.base import RecurrentModel, State
from neurofptt.quant.config import HardwareConfig

SURROGATES = {
    "fast_sigmoid": lambda slope: surrogate.fast_sigmoid(slope=slope),
    "atan": lambda slope: surrogate.atan(alpha=slope),
    "sigmoid": lambda slope: surrogate.sigmoid(slope=slope),
}


def make_surrogate(name: str, slope: float):
    if name not in SURROGATES:
        raise ConfigError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}")
    return SURROGATES[name](slope)


class RecurrentLIF(nn.Module):
    """All-to-all recurrent layer of LIF neurons (no biases: the hardware has none).

    State: ``(mem, spk)``, both ``(B, n_rec)``.  ``spk`` is the previous step's spike vector; it
    drives the recurrent weights and (inside ``snntorch.Leaky``) the delayed reset.
    """

    def __init__(
        self,
        n_in: int,
        n_rec: int,
        *,
        beta: float,
        threshold: float,
        reset: str = "subtract",
        surrogate_name: str = "fast_sigmoid",
        slope: float = 5.0,
    ) -> None:
        super().__init__()
        self.n_in, self.n_rec = n_in, n_rec
        self.fc_in = nn.Linear(n_in, n_rec, bias=False)
        self.fc_rec = nn.Linear(n_rec, n_rec, bias=False)
        self.lif = snn.Leaky(
            beta=beta,
            threshold=threshold,
            spike_grad=make_surrogate(surrogate_name, slope),
            reset_mechanism=reset,
        )

    def initial_state(self, batch: int) -> State:
        w = self.fc_in.weight
        zeros = torch.zeros(batch, self.n_rec, dtype=w.dtype, device=w.device)
        return (zeros, zeros.clone())

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        mem, spk = state
        current = self.fc_in(x) + self.fc_rec(spk)
        spk, mem = self.lif(current, mem)
        spk = spk.to(current.dtype)  # snntorch emits float32 spikes whatever the model's dtype
        return spk, (mem, spk)


class LeakyReadout(nn.Module):
    """Non-spiking leaky integrator ``o_t = beta_out * o_{t-1} + W_out z_t`` (snntorch ``Leaky``
    with ``reset_mechanism="none"``); its value is the logit vector."""

    def __init__(self, n_rec: int, n_out: int, *, beta: float) -> None:
        super().__init__()
        self.n_out = n_out
        self.fc_out = nn.Linear(n_rec, n_out, bias=False)
        self.li = snn.Leaky(beta=beta, reset_mechanism="none")

    def initial_state(self, batch: int) -> State:
        w = self.fc_out.weight
        return (torch.zeros(batch, self.n_out, dtype=w.dtype, device=w.device),)

    def step(self, z: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        (o,) = state
        _, o = self.li(self.fc_out(z), o)
        return o, (o,)


class SpikingRNN(RecurrentModel):
    """Recurrent LIF layer followed by a leaky-integrator readout: the network the hardware runs.

    State: the recurrent layer's state followed by the readout's, ``(mem, spk, out)`` here.
    Subclasses swap the recurrent layer (``layer_cls``) and pass its extra options through.
    """

    layer_cls: type[nn.Module] = RecurrentLIF

    def __init__(
        self,
        n_in: int,
        n_rec: int,
        n_out: int,
        *,
        beta: float = 0.75,
        out_beta: float = 0.875,
        threshold: float = 1.0,
        reset: str = "subtract",
        surrogate_name: str = "fast_sigmoid",
        slope: float = 5.0,
        input_gain: float = 1.0,
        **layer_options: float,
    ) -> None:
        super().__init__()
        self.n_in, self.n_rec, self.n_out = n_in, n_rec, n_out
        layer_args = {
            "beta": beta,
            "threshold": threshold,
            "reset": reset,
            "surrogate_name": surrogate_name,
            "slope": slope,
            **layer_options,
        }
        self.hparams = {"out_beta": out_beta, **layer_args}
        self.rec = self.layer_cls(n_in, n_rec, **layer_args)
        self.readout = LeakyReadout(n_rec, n_out, beta=out_beta)
        with torch.no_grad():
            self.rec.fc_in.weight.mul_(input_gain)

    @classmethod
    def from_config(cls, cfg: HardwareConfig, **kwargs) -> SpikingRNN:
        """The float model whose dynamics the hardware config implements."""
        return cls(
            cfg.n_in,
            cfg.n_rec,
            cfg.n_out,
            beta=cfg.beta,
            out_beta=cfg.out_beta,
            threshold=cfg.threshold_float,
            reset=cfg.reset,
            **kwargs,
        )

    def initial_state(self, batch: int) -> State:
        return self.rec.initial_state(batch) + self.readout.initial_state(batch)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        spk, rec_state = self.rec.step(x, state[:-1])
        logits, out_state = self.readout.step(spk, state[-1:])
        return logits, rec_state + out_state


class StackedSpikingRNN(RecurrentModel):
    """Several recurrent spiking layers in series, then the leaky-integrator readout.

    Layer ``k`` receives the spikes of layer ``k - 1`` (the input for ``k = 0``) and its own
    previous spikes.  ``layer_cls`` is :class:`RecurrentLIF` or any layer with the same
    constructor and cell protocol (e.g. ``RecurrentALIF``).  The state is every layer's state in
    order, then the readout's.  This network trains with any rule that only needs the cell
    protocol; the hardware runs the single-layer :class:`SpikingRNN`.
    """

    def __init__(
        self,
        n_in: int,
        sizes: list[int],
        n_out: int,
        *,
        layer_cls: type[nn.Module] = RecurrentLIF,
        beta: float = 0.75,
        threshold: float = 1.0,
        out_beta: float = 0.875,
        input_gain: float = 1.0,
        **layer_args: float | str,
    ) -> None:
        super().__init__()
        layer_args = {"beta": beta, "threshold": threshold, **layer_args}
        if len(sizes) < 1 or min(sizes) < 1:
            raise ConfigError(f"layer sizes must be positive, got {sizes}")
        self.n_in, self.n_out, self.sizes = n_in, n_out, list(sizes)
        fan_in = [n_in, *sizes[:-1]]
        self.layers = nn.ModuleList(
            layer_cls(a, b, **layer_args) for a, b in zip(fan_in, sizes, strict=True)
        )
        self.readout = LeakyReadout(sizes[-1], n_out, beta=out_beta)
        self._state_sizes = [len(layer.initial_state(1)) for layer in self.layers]
        with torch.no_grad():
            self.layers[0].fc_in.weight.mul_(input_gain)

    def initial_state(self, batch: int) -> State:
        state: State = ()
        for layer in self.layers:
            state += layer.initial_state(batch)
        return state + self.readout.initial_state(batch)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: State = ()
        h, start = x, 0
        for layer, size in zip(self.layers, self._state_sizes, strict=True):
            h, layer_state = layer.step(h, state[start : start + size])
            new_state += layer_state
            start += size
        logits, out_state = self.readout.step(h, state[start:])
        return logits, new_state + out_state
