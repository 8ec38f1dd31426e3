"""Quantization-aware training: the float model computes with the weights the hardware will hold.

Each weight matrix of the recurrent LIF network gets a ``torch.nn.utils.parametrize``
parametrization that, when enabled, replaces the weight by its quantized value
``clamp(round(w * 2**(frac_bits - s)), w_min, w_max) * 2**(s - frac_bits)`` with the per-matrix
shift ``s`` chosen exactly as the quantizer chooses it (:func:`shift_for_peak`).  The rounding
passes the gradient straight through, so the optimizer keeps updating the float "shadow" weights
(``parametrizations.weight.original``) while the loss is that of the integer network.  After such
training the quantizer reproduces the forward weights exactly, and the float and golden models
differ only by the hardware's flooring leak.

The parametrization is registered when the model is built (disabled), so checkpoints have the
same keys before and after it is switched on; its ``enabled`` flag is a buffer, so a resumed run
continues in the same mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from neurofptt.quant.config import HardwareConfig

WEIGHTS = ("rec.fc_in", "rec.fc_rec", "readout.fc_out")


def shift_for_peak(peak: float, cfg: HardwareConfig) -> int:
    """Smallest left shift ``s >= 0`` for which a weight of magnitude ``peak`` still rounds into
    ``weight_bits`` bits (capped at ``membrane_bits - 1``)."""
    limit = cfg.w_max + 0.5
    scaled = peak * 2.0**cfg.frac_bits
    if scaled < limit:
        return 0
    shift = max(0, math.ceil(math.log2(scaled / limit)))
    while scaled * 2.0**-shift >= limit:
        shift += 1
    return min(shift, cfg.membrane_bits - 1)


class FakeQuantize(nn.Module):
    """Parametrization ``w -> quantized(w)`` with a straight-through gradient (when enabled)."""

    def __init__(self, cfg: HardwareConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("enabled", torch.zeros((), dtype=torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not bool(self.enabled):
            return w
        cfg = self.cfg
        shift = shift_for_peak(float(w.detach().abs().max()), cfg)
        scale = 2.0 ** (cfg.frac_bits - shift)
        codes = torch.clamp(torch.round(w.detach() * scale), cfg.w_min, cfg.w_max)
        return w + (codes / scale - w).detach()


def add_weight_quantization(model: nn.Module, cfg: HardwareConfig) -> None:
    """Register (disabled) fake quantization on the LIF network's three weight matrices."""
    for path in WEIGHTS:
        layer = model.get_submodule(path)
        if not parametrize.is_parametrized(layer, "weight"):
            parametrize.register_parametrization(layer, "weight", FakeQuantize(cfg))


def set_weight_quantization(model: nn.Module, enabled: bool) -> bool:
    """Switch fake quantization on or off; returns whether the model has any to switch."""
    found = False
    for module in model.modules():
        if isinstance(module, FakeQuantize):
            module.enabled.fill_(enabled)
            found = True
    return found
