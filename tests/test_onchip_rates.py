"""The host's rate derived from the task: the drive of one sample's updates against the digits'
(:mod:`neurofptt.flow.onchip_rates`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurofptt.flow.onchip_rates import (
    HIDDEN_RATES,
    REFERENCE_DRIVE,
    REFERENCE_SHIFT,
    derive_rate,
    hidden_rate_shift,
    with_hidden_rates,
)
from neurofptt.onchip import trace_step
from neurofptt.quant.config import HardwareConfig, LearningConfig
from neurofptt.tasks import load_task

torch.set_num_threads(1)

CUE_HW = HardwareConfig(n_in=40, n_out=2, leak_shift=7, learning=LearningConfig())


def test_the_digits_on_the_default_core_are_the_reference() -> None:
    """The default rates were chosen on the digits: there the host adds nothing."""
    digits = load_task("digits")
    hw = HardwareConfig(learning=LearningConfig())
    rate = derive_rate(hw, digits.train.numpy_spikes(), digits.train.y.numpy())
    assert rate.drive == pytest.approx(REFERENCE_DRIVE, rel=0.01)
    assert rate.updates_per_sample == 1.0 and rate.derived_offset == 0
    assert REFERENCE_SHIFT == 15


def test_a_long_recall_window_lowers_the_rate() -> None:
    """Fifteen labelled steps on traces through a leak of 2**-7: the drive is about 2**4 times
    the digits', so the host raises the error shift by 4."""
    task = load_task("cue-accumulation-short", n_train=40, n_test=1, n_val=1)
    rate = derive_rate(CUE_HW, task.train.numpy_spikes(), task.train.y.numpy())
    assert rate.updates_per_sample == 15.0
    assert rate.derived_offset == 4
    assert rate.drive == pytest.approx(15 * rate.drive_per_update)


def test_the_drive_is_the_traces_times_the_spikes_at_the_update_steps() -> None:
    """By hand on two samples with per-step labels: the chip's traces at each labelled step
    times that step's input spikes; unlabelled steps add nothing."""
    rng = np.random.default_rng(0)
    hw = HardwareConfig(n_in=5, n_out=2, leak_shift=3, learning=LearningConfig())
    x = (rng.random((2, 12, 5)) < 0.4).astype(np.uint8)
    y = np.full((2, 12), -1)
    y[0, [3, 7, 11]] = 1
    y[1, [11]] = 0
    total = []
    for n in range(2):
        trace, drive = np.zeros(5, np.int64), 0.0
        for t in range(12):
            trace = trace_step(trace, x[n, t].astype(np.int64), 3, hw.learning)
            if y[n, t] >= 0:
                drive += float(trace @ x[n, t]) / 2**8
        total.append(drive)
    rate = derive_rate(hw, x, y)
    assert rate.drive == pytest.approx(np.mean(total))
    assert rate.updates_per_sample == 2.0


def test_the_schedule_and_the_chips_rates_enter() -> None:
    """One label per sequence: ``supervised_steps`` updates (``update_period`` thins them, the
    terminal ramp weighs them by ``2**-b_t``); a core whose rates are already lower needs less
    offset, and the offset never goes below 0."""
    digits = load_task("digits")
    x, y = digits.train.numpy_spikes(), digits.train.y.numpy()

    def rate(**changes):
        hw = HardwareConfig(learning=dataclasses.replace(LearningConfig(), **changes))
        return derive_rate(hw, x, y)

    one = rate().drive
    assert rate(supervised_steps=4).updates_per_sample == 4.0
    assert rate(supervised_steps=4, update_period=2).updates_per_sample == 2.0
    ramp = rate(supervised_steps=0, beta_ramp=True)
    assert ramp.updates_per_sample == 8.0 and ramp.drive < 8 * one
    many = rate(supervised_steps=8)
    assert many.derived_offset == round(np.log2(many.drive / REFERENCE_DRIVE))
    slower = rate(supervised_steps=8, lr_shift_in=17, lr_shift_rec=17, lr_shift_out=17)
    assert slower.derived_offset == many.derived_offset - 2
    assert rate(lr_shift_in=18, lr_shift_rec=18, lr_shift_out=18).derived_offset == 0


@pytest.mark.parametrize(
    ("updates", "offset", "shift"),
    [(1.0, 0, 0), (15.0, 4, 0), (150.0, 4, 3), (150.0, 9, 0), (0.5, 0, 0), (1000.0, 2, 8)],
)
def test_the_hidden_rates_fall_with_the_count_of_updates(updates, offset, shift) -> None:
    """``round(log2(updates))`` less the drive's offset, at least 0."""
    assert hidden_rate_shift(updates, offset) == shift


def test_the_same_trial_at_full_resolution_lowers_the_hidden_rates() -> None:
    """The binned and the full-resolution cue trial have the same drive (a tenth of the input
    spikes per step, ten times the updates), so the same offset; the full trial's 150 updates
    lower the recurrent and readout rates by the difference, the binned one's 15 do not."""
    binned = load_task("cue-accumulation-short", n_train=40)
    full = load_task("cue-accumulation", n_train=40)
    rates = [
        derive_rate(
            dataclasses.replace(CUE_HW, leak_shift=leak),
            task.train.numpy_spikes(),
            task.train.y.numpy(),
        )
        for task, leak in ((binned, 7), (full, 10))
    ]
    assert [r.updates_per_sample for r in rates] == [15.0, 150.0]
    assert rates[0].derived_offset == rates[1].derived_offset == 4
    assert [r.hidden_shift for r in rates] == [0, 3]
    lowered = with_hidden_rates(LearningConfig(lr_shift_out=23), 3, HIDDEN_RATES)
    assert (lowered.lr_shift_in, lowered.lr_shift_rec, lowered.lr_shift_out) == (15, 18, 24)
