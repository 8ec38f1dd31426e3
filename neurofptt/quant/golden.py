"""The golden model: numpy integer arithmetic that steps the network exactly as the hardware does.

One time step, for every recurrent neuron ``j`` and readout ``k`` (all integers, see
:mod:`neurofptt.quant.config` for the units)::

    I_j   = sum_i w_in[j,i] x_i(t) << w_in_shift  +  sum_i w_rec[j,i] z_i(t-1) << w_rec_shift
    v_j   = sat( v_j - (v_j >> leak_shift) - z_j(t-1) * threshold + I_j )      # reset="subtract"
    v_j   = sat( (0 if z_j(t-1) else v_j - (v_j >> leak_shift)) + I_j )           # reset="zero"
    z_j(t) = v_j > threshold
    o_k   = sat( o_k - (o_k >> out_leak_shift) + sum_j w_out[k,j] z_j(t) << w_out_shift )

The sum is formed exactly (the hardware accumulator is ``config.acc_bits`` wide) and saturated
once.  The reset of a spike is applied on the following step, after the leak, which is the order
``snntorch.Leaky`` uses (its default ``reset_delay=True``), so the float model and this model share
one definition.  The predicted class is the arg-max of the readout at the last step (lowest index
on ties).

The three sums over synapses are products of 0/1 spikes with integer weight matrices.  They run
through float BLAS wherever that is exact (:mod:`neurofptt.quant.exact` derives the bound from
the config), so the model runs at the speed of float inference and still computes exactly the
integers above; the rest of the step is integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofptt.errors import ShapeError
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.exact import SpikeProducts
from neurofptt.quant.fixedpoint import leak, saturate
from neurofptt.quant.network import QuantizedNetwork


@dataclass
class GoldenState:
    """Explicit state of a batch of networks: membranes, last spikes, readout values."""

    v: np.ndarray  # (B, n_rec) int64
    z: np.ndarray  # (B, n_rec) bool
    o: np.ndarray  # (B, n_out) int64

    @classmethod
    def zeros(cls, net: QuantizedNetwork, batch: int) -> GoldenState:
        cfg = net.config
        return cls(
            v=np.zeros((batch, cfg.n_rec), np.int64),
            z=np.zeros((batch, cfg.n_rec), bool),
            o=np.zeros((batch, cfg.n_out), np.int64),
        )


@dataclass
class GoldenTrace:
    """Every value the hardware produces, for every step: ``(B, T, ...)`` arrays."""

    spikes: np.ndarray  # (B, T, n_rec) bool
    membrane: np.ndarray  # (B, T, n_rec) int64
    readout: np.ndarray  # (B, T, n_out) int64

    @property
    def predictions(self) -> np.ndarray:
        return predict(self.readout)


def predict(readout: np.ndarray) -> np.ndarray:
    """Class decision from a ``(B, T, n_out)`` readout trace: arg-max at the last step."""
    return np.argmax(readout[:, -1, :], axis=-1)


def golden_step(net: QuantizedNetwork, state: GoldenState, x: np.ndarray) -> GoldenState:
    """Advance a batch by one step with 0/1 input spikes ``x`` of shape ``(B, n_in)``."""
    products = net.products
    return _advance(net.config, products, state, products.input(x))


def _advance(
    cfg: HardwareConfig, products: SpikeProducts, state: GoldenState, input_sum: np.ndarray
) -> GoldenState:
    """One step from the input product ``sum_i w_in[j,i] x_i(t)`` (before its shift): the
    step's arithmetic, shared by :func:`golden_step` and :func:`golden_run` (which forms every
    step's input product at once, as it does not depend on the state)."""
    z_prev = state.z.astype(np.int64)
    recurrent = products.recurrent(state.z)
    current = (input_sum << cfg.w_in_shift) + (recurrent << cfg.w_rec_shift)
    leaked = leak(state.v, cfg.leak_shift)
    if cfg.reset == "subtract":
        base = leaked - z_prev * cfg.threshold
    else:
        base = np.where(state.z, 0, leaked)
    v = saturate(base + current, cfg.membrane_bits)
    z = v > cfg.threshold
    drive = products.readout(z) << cfg.w_out_shift
    o = saturate(leak(state.o, cfg.out_leak_shift) + drive, cfg.membrane_bits)
    return GoldenState(v=v, z=z, o=o)


def check_spike_input(x: np.ndarray, n_in: int) -> np.ndarray:
    """Validate a ``(B, T, n_in)`` spike tensor and return it as ``bool``."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != n_in:
        raise ShapeError(f"spike input has shape {x.shape}; expected (batch, steps, n_in={n_in})")
    if x.shape[1] == 0:
        raise ShapeError("spike input has 0 time steps; give at least one step")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ShapeError("spike input contains NaN or infinite values")
    if not np.all((x == 0) | (x == 1)):
        raise ShapeError("spike input must be binary (0/1); encode analog data to spikes first")
    return x.astype(bool)


def golden_run(net: QuantizedNetwork, x: np.ndarray, kernel: str | None = None) -> GoldenTrace:
    """Run a batch of spike sequences ``(B, T, n_in)`` from the reset state; record every step.

    ``kernel`` forces the product kernel (:mod:`neurofptt.quant.exact`; e.g. ``"int64"``, the
    integer products); by default each product takes the narrowest exact one.  Every kernel
    gives the same trace.
    """
    cfg = net.config
    x = check_spike_input(x, cfg.n_in)
    batch, steps, _ = x.shape
    if kernel is None:
        products = net.products
    else:
        products = SpikeProducts.build(cfg, net.w_in, net.w_rec, net.w_out, kernel)
    input_sums = products.input(x)
    state = GoldenState.zeros(net, batch)
    spikes, membrane, readout = [], [], []
    for t in range(steps):
        state = _advance(cfg, products, state, input_sums[:, t])
        spikes.append(state.z)
        membrane.append(state.v)
        readout.append(state.o)
    return GoldenTrace(
        spikes=np.stack(spikes, axis=1),
        membrane=np.stack(membrane, axis=1),
        readout=np.stack(readout, axis=1),
    )
