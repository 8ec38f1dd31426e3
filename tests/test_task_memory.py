"""The membrane leak derived from a task's label layout (:mod:`neurofptt.tasks.memory`), on
synthetic layouts whose span is known, and on the built-in tasks whose leak was set by hand
before the rule existed."""

from __future__ import annotations

import math

import pytest
import torch

from neurofptt.errors import ConfigError
from neurofptt.flow.config import FlowConfig
from neurofptt.tasks.base import SequenceDataset
from neurofptt.tasks.memory import derive_leak, label_span, leak_shift_for_span


def per_step(starts: list[int], windows: list[tuple[int, int]], steps: int) -> SequenceDataset:
    """Samples whose input starts at ``starts[i]`` (one spike per step from there) and whose
    labels cover ``windows[i]`` (``-1`` elsewhere)."""
    x = torch.zeros(len(starts), steps, 3)
    y = torch.full((len(starts), steps), -1, dtype=torch.int64)
    for i, (start, (lo, hi)) in enumerate(zip(starts, windows, strict=True)):
        x[i, start:, i % 3] = 1.0
        y[i, lo:hi] = i % 2
    return SequenceDataset(x, y)


def test_a_label_at_the_end_spans_from_the_first_input_to_the_last_step() -> None:
    x = torch.zeros(4, 8, 2)
    x[:, 0, 0] = 1.0  # active from step 0: the span is the whole 8-step sequence
    data = SequenceDataset(x, torch.zeros(4, dtype=torch.int64))
    assert label_span(data, "label") == 8.0
    leak = derive_leak(data, "label", 15)
    assert (leak.leak_shift, leak.out_leak_shift) == (2, 3)  # tau 4 = span / 2, the readout's 8


def test_a_recall_window_spans_to_its_mean_step_from_the_first_activity() -> None:
    data = per_step([3, 3, 3], [(50, 60)] * 3, steps=60)
    # mean labelled step 54.5, first activity 3: 52.5 steps; log2(52.5 / 2) = 4.71 -> 5
    assert label_span(data, "label_per_step") == pytest.approx(52.5)
    leak = derive_leak(data, "label_per_step", 15)
    assert (leak.leak_shift, leak.out_leak_shift) == (5, 6)  # log2(52.5) = 5.71 -> 6


def test_labels_before_the_first_activity_and_odd_samples_do_not_move_the_span() -> None:
    # three samples span 31 steps (input from 10, label at 40); sample 0 is labelled also
    # before its input starts, which does not count; sample 3 (span 10) is an outlier the
    # median ignores; sample 4 has no input at all and is skipped
    data = per_step([10, 10, 10, 90, 0], [(40, 41)] * 3 + [(99, 100), (5, 6)], steps=100)
    data.y[0, :10] = 1
    data.x[4] = 0.0
    assert label_span(data, "label_per_step") == 31.0


def test_no_labelled_step_after_an_input_gives_the_shortest_leak() -> None:
    data = per_step([50, 50], [(0, 10), (0, 10)], steps=60)
    assert label_span(data, "label_per_step") is None
    leak = derive_leak(data, "label_per_step", 15)
    assert leak.leak_shift == leak.out_leak_shift == 1 and leak.record()["span_steps"] is None


def test_regression_targets_count_every_step() -> None:
    x = torch.ones(2, 20, 1)
    data = SequenceDataset(x, torch.zeros(2, 20, 1))
    assert label_span(data, "regression") == pytest.approx(9.5 + 1)


@pytest.mark.parametrize(
    ("span", "max_shift", "shift"),
    [(8, 15, 2), (218, 15, 7), (2175, 15, 10), (1, 15, 1), (3, 15, 1), (1e9, 15, 15), (300, 5, 5)],
)
def test_the_shift_is_log2_of_half_the_span_rounded_and_clamped(
    span: float, max_shift: int, shift: int
) -> None:
    assert leak_shift_for_span(span, max_shift) == shift
    if 1 < shift < max_shift:  # unclamped: the time constant is within a factor sqrt(2) of span/2
        assert abs(math.log2(2**shift / (span / 2))) <= 0.5


def test_bad_spans_and_limits_are_refused() -> None:
    with pytest.raises(ConfigError):
        leak_shift_for_span(0, 15)
    with pytest.raises(ConfigError):
        leak_shift_for_span(10, 0)


def test_the_readout_integrates_over_the_whole_span() -> None:
    assert leak_shift_for_span(218, 15, per_tau=1.0) == 8
    assert leak_shift_for_span(8, 15, per_tau=1.0) == 3


@pytest.mark.parametrize(
    ("task", "shift", "out_shift"),
    [("digits", 2, 3), ("cue-accumulation-short", 7, 8), ("delayed-xor", 6, 7)],
)
def test_a_config_without_leaks_takes_the_tasks_and_one_with_leaks_keeps_them(
    task: str, shift: int, out_shift: int
) -> None:
    cfg = FlowConfig.from_dict({"flow": {"task": task}})
    hw, leak = cfg.hardware, cfg.derived["leak"]
    assert (hw.leak_shift, hw.out_leak_shift) == (shift, out_shift)
    assert (leak["leak_shift"], leak["out_leak_shift"]) == (shift, out_shift)
    assert (leak["tau_steps"], leak["out_tau_steps"]) == (2**shift, 2**out_shift)
    one = FlowConfig.from_dict({"flow": {"task": task}, "hardware": {"leak_shift": 4}})
    assert (one.hardware.leak_shift, one.hardware.out_leak_shift) == (4, out_shift)
    assert "leak_shift" not in one.derived["leak"] and "tau_steps" not in one.derived["leak"]
    both = {"leak_shift": 4, "out_leak_shift": 1}
    fixed = FlowConfig.from_dict({"flow": {"task": task}, "hardware": both})
    assert (fixed.hardware.leak_shift, fixed.hardware.out_leak_shift) == (4, 1)
    assert fixed.derived == {}


def test_the_shift_is_clamped_to_the_membrane_format() -> None:
    cfg = FlowConfig.from_dict(
        {
            "flow": {"task": "cue-accumulation"},
            "hardware": {"membrane_bits": 8, "frac_bits": 4, "threshold": 16},
        }
    )
    assert cfg.hardware.leak_shift == 7 == cfg.derived["leak"]["max_shift"]


def test_a_derived_table_in_a_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="hardware.leak_shift"):
        FlowConfig.from_dict({"derived": {"leak": {}}})
