"""One step of on-chip learning (inference, traces, and an update when one is due) and one sample.

The update itself is the rule's: :func:`neurofptt.onchip.eprop.eprop_update` or
:func:`neurofptt.onchip.fptt.fptt_update`, chosen by ``hardware.learning.mode``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from neurofptt.errors import ShapeError
from neurofptt.onchip.eprop import DRAWS as eprop_draws
from neurofptt.onchip.eprop import eprop_update
from neurofptt.onchip.factors import step_schedule, update_factors
from neurofptt.onchip.fptt import DRAWS as fptt_draws
from neurofptt.onchip.fptt import fptt_update
from neurofptt.onchip.state import MATRICES, LearningState, update_draws
from neurofptt.quant.config import LearningConfig, learning_config
from neurofptt.quant.fixedpoint import leak, saturate, usat
from neurofptt.quant.golden import check_spike_input, golden_step
from neurofptt.quant.network import QuantizedNetwork


def trace_step(
    trace: np.ndarray, spikes: np.ndarray, leak_shift: int, lc: LearningConfig
) -> np.ndarray:
    """One step of presynaptic traces: the leak, then a spike adds ``1 << trace_frac_bits``,
    saturating to ``trace_bits`` (step 1 of :mod:`neurofptt.onchip`)."""
    return usat(leak(trace, leak_shift) + spikes * (1 << lc.trace_frac_bits), lc.trace_bits)


def learning_step(
    net: QuantizedNetwork,
    state: LearningState,
    x_t: np.ndarray,
    label: int,
    shift: int | None,
) -> tuple[QuantizedNetwork, LearningState]:
    """One step of one sample: inference, traces and, if ``shift`` is not ``None``, an update
    with error shift ``b_t = shift`` toward class ``label`` (see the module docstring).

    ``x_t`` is the ``(n_in,)`` input spike vector; ``shift`` comes from :func:`step_schedule`.
    Returns the (possibly updated) network and the new state; the arguments are not modified.
    """
    cfg = net.config
    lc = learning_config(cfg)
    x = np.asarray(x_t).astype(np.int64).reshape(1, cfg.n_in)
    z_prev = state.neurons.z[0].astype(np.int64)
    neurons = golden_step(net, state.neurons, x)
    z_now = neurons.z[0].astype(np.int64)
    state = dataclasses.replace(
        state,
        neurons=neurons,
        x_trace=trace_step(state.x_trace, x[0], cfg.leak_shift, lc),
        z_trace=trace_step(state.z_trace, z_prev, cfg.leak_shift, lc),
        out_trace=trace_step(state.out_trace, z_now, cfg.out_leak_shift, lc),
    )
    if shift is None:
        return net, state
    if not 0 <= label < cfg.n_out:
        raise ShapeError(f"label {label} is not a readout index in [0, {cfg.n_out})")
    now = update_factors(net, state, neurons, label, shift)
    fptt = lc.mode == "fptt"
    draws, lfsr = update_draws(cfg, state.lfsr, fptt_draws if fptt else eprop_draws)
    weights, wbar = {}, {}
    for m in MATRICES:
        w, g, s = net.matrix(m), now.gradient(m), lc.lr_shift(m)
        if not fptt:
            weights[m] = eprop_update(w, g, s, draws[m], cfg.weight_bits)
            continue
        weights[m], mean_new = fptt_update(
            w,
            state.running_mean(net, m),
            g,
            state.previous.gradient(m),
            s,
            lc.alpha_shift,
            draws[m],
            cfg.weight_bits,
        )
        stored = mean_new if lc.wbar_store == "absolute" else weights[m] - mean_new
        wbar[m] = saturate(stored, lc.wbar_bits)
    net = QuantizedNetwork(cfg, weights["in"], weights["rec"], weights["out"])
    state = dataclasses.replace(
        state,
        lfsr=lfsr,
        wbar=wbar if fptt else state.wbar,
        previous=now,
        updates=state.updates + 1,
    )
    return net, state


def run_sample(
    net: QuantizedNetwork,
    state: LearningState,
    x: np.ndarray,
    label: int | np.ndarray,
    *,
    learn: bool = True,
    shift_offset: int = 0,
) -> tuple[QuantizedNetwork, LearningState, np.ndarray]:
    """Run one ``(T, n_in)`` spike sequence from the reset neuron state, learning on the
    scheduled steps if ``learn``; returns the network, the state and the ``(T, n_out)``
    readout.  ``shift_offset`` is added to every update's error shift ``b_t`` (the host's
    learning-rate schedule: each unit halves the rate of all three matrices).

    ``label`` is the sequence's class (updates on the :func:`step_schedule` of the learning
    config) or a ``(T,)`` array of per-step labels, ``-1`` where a step has no target: then
    only the labelled steps update, each toward its own label (the host sends ``learn = 1``
    and the label only there).
    """
    x = check_spike_input(np.asarray(x)[None], net.config.n_in)[0]
    per_step = None if np.ndim(label) == 0 else np.asarray(label, np.int64)
    schedule = step_schedule(learning_config(net.config), len(x), per_step)
    labels = [int(label)] * len(x) if per_step is None else per_step.tolist()
    state = state.new_sample(net)
    readout = []
    for x_t, label_t, shift in zip(x, labels, schedule, strict=True):
        due = learn and shift is not None
        net, state = learning_step(net, state, x_t, label_t, shift + shift_offset if due else None)
        readout.append(state.neurons.o[0])
    return net, state, np.stack(readout)
