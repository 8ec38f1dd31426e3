"""The host's rate of on-chip learning, derived from the task: one error shift offset that makes
one sample's updates the same size on every task.

The chip's rates (``lr_shift_*``, ``2**-15`` by default) were chosen on the 8-step digits, where
a sample makes one update.  What one sample does to the network is the sum of its updates, and
that sum grows with the task: with the updates per sample (the labelled steps of per-step
labels, or ``supervised_steps / update_period``), and with the presynaptic traces each update
multiplies, whose size is set by the fan-in, the input rates and the leak (an input that fires
at rate ``r`` through a leak of ``2**-k`` saturates near ``r * 2**k`` spikes, so long leaks and
long sequences make large traces).  A cue-accumulation trial of 225 steps makes fifteen updates
on traces many times those of a digit, and at the digits' rates both rules collapse to one class.

The measure is the *drive*: how much one sample's updates change a neuron's input current in a
step, in units of the rate and of ``delta_j``.  An update changes ``W_in[j, i]`` by ``delta_j
xbar_i`` times the rate, so the next step's current into neuron ``j`` by ``delta_j sum_i xbar_i
x_i``; summed over the sample's updates (each weighted by its ``beta_t`` when ``beta_ramp``)
and averaged over the training samples::

    drive = mean over samples of  sum over update steps t of  2**-b_t  sum_i xbar_i(t) x_i(t)

with ``xbar`` the chip's own integer traces in spikes (:func:`~neurofptt.onchip.trace_step`)
and ``x`` the input spikes.  The host raises the error shift by the power of two that brings
the drive back to that of the digits under the default configuration (:data:`REFERENCE_DRIVE`),
counted from the fastest of the chip's rates::

    offset = max(0, round(log2(drive / REFERENCE_DRIVE)) + REFERENCE_SHIFT - min(lr_shift_*))

A core whose rates are already lower needs less; the error shift cannot raise a rate, so a task
with less drive than the digits learns at the chip's rates.  Only the input traces enter: the
recurrent and readout traces depend on the network being learned, not on the data, and the
fan-in start (:func:`~neurofptt.onchip.fan_in_spreads`) scales every neuron's input to the
threshold whatever the sizes, so the hidden activity starts alike on every task.  What the rule
gives on the digits and the cue-accumulation tasks, and the grids that check it, are in
``docs/results-learning.md``; ``docs/learning.md`` explains the choice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurofptt.onchip import MATRICES, step_schedule, trace_step
from neurofptt.quant.config import (
    LEARNING_LIMITS,
    HardwareConfig,
    LearningConfig,
    learning_config,
)

#: the drive of the default digits task on the default hardware (one update per sample, 32
#: inputs, leak ``2**-2``), where the chip's default rates were chosen
REFERENCE_DRIVE = 23.3
#: the rate shift the defaults were chosen with at :data:`REFERENCE_DRIVE`
REFERENCE_SHIFT = min(LearningConfig().lr_shift(m) for m in MATRICES)


@dataclass(frozen=True)
class DerivedRate:
    """The task's measures and the error shift offset derived from them (module docstring)."""

    updates_per_sample: float
    drive_per_update: float
    drive: float
    reference_drive: float
    derived_offset: int
    #: the shifts by which the recurrent and readout rates of the core fall below the input's
    #: (:func:`hidden_rate_shift`)
    hidden_shift: int = 0

    def record(self) -> dict[str, float]:
        """The fields, for ``train_onchip.json``."""
        return asdict(self)


def update_weights(lc: LearningConfig, y: np.ndarray, steps: int) -> np.ndarray:
    """``(N, steps)``: ``2**-b_t`` at each sample's update steps (:func:`step_schedule`), 0
    elsewhere; ``y`` holds a label per sample or per step."""
    if y.ndim == 1:
        schedules = [step_schedule(lc, steps)] * len(y)
    else:
        schedules = [step_schedule(lc, steps, labels) for labels in y]
    return np.array(
        [[0.0 if b is None else 2.0**-b for b in schedule] for schedule in schedules]
    ).reshape(len(y), steps)


def derive_rate(cfg: HardwareConfig, x: np.ndarray, y: np.ndarray) -> DerivedRate:
    """The drive of the training samples ``x`` ``(N, T, n_in)`` with labels ``y`` on the core
    ``cfg``, and the error shift offset that brings it to the reference (module docstring)."""
    lc = learning_config(cfg)
    n, steps, n_in = x.shape
    weights = update_weights(lc, y, steps)
    trace = np.zeros((n, n_in), np.int64)
    drive = np.zeros(n)
    for t in range(steps):
        spikes = x[:, t].astype(np.int64)
        trace = trace_step(trace, spikes, cfg.leak_shift, lc)
        drive += weights[:, t] * (trace * spikes).sum(axis=1)
    drive_per_sample = float(drive.mean()) / (1 << lc.trace_frac_bits)
    updates = float(weights.astype(bool).sum(axis=1).mean())
    fastest = min(lc.lr_shift(m) for m in MATRICES)
    ratio = math.log2(max(drive_per_sample, 1e-12) / REFERENCE_DRIVE)
    offset = max(0, math.floor(ratio + 0.5) + REFERENCE_SHIFT - fastest)
    return DerivedRate(
        updates_per_sample=updates,
        drive_per_update=drive_per_sample / updates if updates else 0.0,
        drive=drive_per_sample,
        reference_drive=REFERENCE_DRIVE,
        derived_offset=offset,
        hidden_shift=hidden_rate_shift(updates, offset),
    )


#: the core's rates that :func:`hidden_rate_shift` lowers: those whose presynaptic traces are
#: the network's own spikes
HIDDEN_RATES = ("lr_shift_rec", "lr_shift_out")


def hidden_rate_shift(updates_per_sample: float, derived_offset: int) -> int:
    """How many shifts the recurrent and readout rates need beyond the error shift offset
    ``derived_offset``: ``round(log2(updates_per_sample))`` less that offset, at least 0.

    Why.  The drive measures a sample's updates through the input traces, which thin out with
    the inputs: the same trial at ten times the time resolution has a tenth of the input spikes
    per step and ten times the updates, the same drive, and the same offset.  The recurrent and
    readout updates multiply the network's own traces (``zbar``, ``obar``), whose size per step
    does not thin out with the inputs (the fan-in start sets the hidden activity alike on every
    task), so their movement per sample grows with the count of updates alone.  Where that count
    asks for more than the drive gave (full-resolution cue accumulation: 150 labelled steps, 2**7
    against 2**4), the core's ``lr_shift_rec`` and ``lr_shift_out`` take the difference.  Where
    the drive gives as much (the binned trial's 15 updates, 2**4; a digit's one update) nothing
    changes.
    """
    count = round(math.log2(updates_per_sample)) if updates_per_sample >= 1 else 0
    return max(0, count - derived_offset)


def with_hidden_rates(lc: LearningConfig, shift: int, fields: tuple[str, ...]) -> LearningConfig:
    """``lc`` with each of ``fields`` (of :data:`HIDDEN_RATES`) lowered by ``shift``, within the
    core's range."""
    high = {name: LEARNING_LIMITS[name][1] for name in fields}
    return dataclasses.replace(
        lc, **{name: min(getattr(lc, name) + shift, high[name]) for name in fields}
    )


#: the readout leak of the core the chip's rates were chosen on (the digits' default)
REFERENCE_OUT_LEAK = HardwareConfig.out_leak_shift


def readout_rate_shift(out_leak_shift: int, base: int = LearningConfig.lr_shift_out) -> int:
    """The readout's rate shift ``lr_shift_out`` for a readout leak of ``2**-out_leak_shift``:
    ``base`` plus the shifts by which the readout integrates longer than
    :data:`REFERENCE_OUT_LEAK`'s, within the core's range.

    Why.  The readout's update is the error times ``obar``, the spikes filtered by the readout's
    own leak, and the readout's value is the same filter of ``W_out z``: a leak of ``2**-k``
    makes both about ``2**k`` times a spike's weight.  An update at a given rate then moves the
    readout ``2**k`` times further, relative to its own size, than on the reference core, and at
    the digits' rates both rules collapse to one class from scratch with a readout leak of
    ``2**-6`` or longer (``docs/results-learning.md``, "The readout's leak on chip").  Lowering
    the readout's rate by the same factor keeps the relative step.  A shorter leak than the
    reference keeps ``base``: a higher rate was never measured to help.
    """
    low, high = LEARNING_LIMITS["lr_shift_out"]
    return min(max(base + max(0, out_leak_shift - REFERENCE_OUT_LEAK), low), high)


def readout_rate(hardware: dict[str, Any]) -> dict[str, Any] | None:
    """The record of the readout rate that a ``[hardware]`` table's readout leak asks for
    (:func:`readout_rate_shift`), or ``None`` where its ``learning`` table sets
    ``lr_shift_out`` or the leak keeps the default rate."""
    learning = hardware.get("learning")
    if isinstance(learning, dict) and "lr_shift_out" in learning:
        return None
    leak = hardware.get("out_leak_shift", HardwareConfig.out_leak_shift)
    if not isinstance(leak, int) or isinstance(leak, bool):
        return None  # refused with its fix when the hardware config is built
    shift = readout_rate_shift(leak)
    if shift == LearningConfig.lr_shift_out:
        return None
    return {
        "out_leak_shift": leak,
        "reference_out_leak_shift": REFERENCE_OUT_LEAK,
        "lr_shift_out": shift,
        "rule": "lr_shift_out = 15 + max(0, out_leak_shift - 3) "
        "(neurofptt.flow.onchip_rates.readout_rate_shift)",
    }
