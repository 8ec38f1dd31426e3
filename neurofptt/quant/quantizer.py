"""Float model -> integer weights in the formats of a :class:`HardwareConfig`.

Each weight matrix gets its own power-of-two scale: the smallest left shift ``s >= 0`` for which
the largest weight still fits in ``weight_bits`` bits, so the available bits cover the matrix's
actual range.  A weight ``w`` becomes ``round(w * 2**(frac_bits - s))`` and contributes
``code << s`` membrane LSBs, i.e. ``code * 2**(s - frac_bits)`` in float units.

The float model must implement the same dynamics as the config (same sizes, the leak factors the
shifts give, the same threshold and reset rule); otherwise the integer model would run a different
network, so that is an error rather than a silent approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils import parametrize

from neurofptt.errors import CheckpointError
from neurofptt.models.spiking import RecurrentLIF, SpikingRNN
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.fake import shift_for_peak
from neurofptt.quant.fixedpoint import round_to_grid
from neurofptt.quant.network import QuantizedNetwork

MATRICES = {
    "w_in": ("rec.fc_in", "w_in_shift"),
    "w_rec": ("rec.fc_rec", "w_rec_shift"),
    "w_out": ("readout.fc_out", "w_out_shift"),
}


@dataclass(frozen=True)
class QuantizationReport:
    """Per matrix: chosen shift, weights clamped, largest absolute rounding error (float units)."""

    shifts: dict[str, int]
    clipped: dict[str, int]
    max_error: dict[str, float]


def choose_shift(weights: np.ndarray, cfg: HardwareConfig) -> int:
    """Smallest left shift that lets the largest weight fit ``weight_bits`` after rounding."""
    return shift_for_peak(float(np.max(np.abs(weights))) if weights.size else 0.0, cfg)


def check_matches(model: torch.nn.Module, cfg: HardwareConfig) -> None:
    """Raise :class:`CheckpointError` if the float model does not run the config's network."""
    if not isinstance(model, SpikingRNN) or model.layer_cls is not RecurrentLIF:
        raise CheckpointError(
            f"only the recurrent LIF model ('lif') maps to the hardware; this checkpoint holds a "
            f"{type(model).__name__}. Train with train.model = 'lif' to quantize"
        )
    sizes = {"n_in": model.n_in, "n_rec": model.n_rec, "n_out": model.n_out}
    for name, value in sizes.items():
        if value != getattr(cfg, name):
            raise CheckpointError(
                f"the model has {name} = {value} but the hardware config says "
                f"{getattr(cfg, name)}; use the config the model was trained with"
            )
    hp = model.hparams
    expected = {
        "beta": cfg.beta,
        "out_beta": cfg.out_beta,
        "threshold": cfg.threshold_float,
        "reset": cfg.reset,
    }
    for name, value in expected.items():
        if hp[name] != value:
            raise CheckpointError(
                f"the model was trained with {name} = {hp[name]} but the hardware config implies "
                f"{value}; use the config the model was trained with"
            )


def quantize(
    model: torch.nn.Module, cfg: HardwareConfig, *, auto_shift: bool = True
) -> tuple[QuantizedNetwork, QuantizationReport]:
    """Quantize a :class:`~neurofptt.models.SpikingRNN` to the formats of ``cfg``.

    With ``auto_shift`` the per-matrix shifts are chosen from the weights (and written into the
    returned network's config); otherwise the config's shifts are used and weights that do not
    fit are clamped (counted in the report).
    """
    check_matches(model, cfg)
    float_weights = {}
    with torch.no_grad():
        for key, (path, _) in MATRICES.items():
            # the weight the model computes with (quantized already after quantization-aware
            # training, in which case rounding it again changes nothing)
            w = model.get_submodule(path).weight.double().cpu().numpy()
            if not np.all(np.isfinite(w)):
                raise CheckpointError(f"the model's {path} weights contain NaN or inf; retrain")
            float_weights[key] = w
    if auto_shift:
        cfg = cfg.replace(
            **{field: choose_shift(float_weights[key], cfg) for key, (_, field) in MATRICES.items()}
        )
    codes, shifts, clipped, errors = {}, {}, {}, {}
    for key, (_, field) in MATRICES.items():
        shift = getattr(cfg, field)
        lsb_exponent = shift - cfg.frac_bits
        code, n_clipped = round_to_grid(float_weights[key], lsb_exponent, cfg.weight_bits)
        codes[key] = code
        shifts[key] = shift
        clipped[key] = n_clipped
        errors[key] = float(np.max(np.abs(np.ldexp(code, lsb_exponent) - float_weights[key])))
    return QuantizedNetwork(cfg, **codes), QuantizationReport(shifts, clipped, errors)


def dequantize_into(model: torch.nn.Module, net: QuantizedNetwork) -> None:
    """Overwrite the float model's weights with the exact values of the integer weights."""
    cfg = net.config
    with torch.no_grad():
        for key, (path, field) in MATRICES.items():
            value = np.ldexp(
                getattr(net, key).astype(np.float64), getattr(cfg, field) - cfg.frac_bits
            )
            layer = model.get_submodule(path)
            if parametrize.is_parametrized(layer, "weight"):
                target = layer.parametrizations.weight.original
            else:
                target = layer.weight
            target.copy_(torch.from_numpy(value).to(target.dtype))
