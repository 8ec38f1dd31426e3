"""``python -m neurofptt.bench.learning``: on-chip learning at the derived rate, from scratch or
from the float network, the record of one point and the summary over seeds."""

from __future__ import annotations

import json

import pytest
import torch

from neurofptt.bench import learning
from neurofptt.errors import ConfigError
from neurofptt.learning.trainer import TrainConfig

torch.set_num_threads(1)


def test_a_point_records_the_derived_rate_and_the_picked_epoch() -> None:
    record = learning.bench_point("cue-accumulation-short", "eprop", 0, 1, samples=8)
    assert record["train_samples"] == 8 and record["tuned"] is False and record["tune"] is None
    assert record["forced_offset"] is None and record["start_gain"] is None
    assert record["rate"]["derived_offset"] == record["error_shift_offset"] == 4
    # the membrane leak from the task, the readout's default and its rate (flow.onchip.from_scratch)
    assert (record["hardware"]["leak_shift"], record["hardware"]["out_leak_shift"]) == (7, 3)
    assert record["hardware"]["lr_shift_out"] == 15
    assert record["picked_epoch"] == 1 and 0 <= record["test_accuracy"] <= 1


def test_the_summary_gives_mean_spread_and_worst_per_task_rule_and_tuning() -> None:
    def record(
        rule: str, seed: int, accuracy: float, tuned: bool = False, start: str = "scratch"
    ) -> dict:
        return {
            "task": "digits",
            "rule": rule,
            "seed": seed,
            "start": start,
            "tuned": tuned,
            "forced_offset": None,
            "test_accuracy": accuracy,
            "error_shift_offset": 0,
        }

    records = [record("eprop", 0, 0.9), record("eprop", 1, 0.8), record("fptt", 0, 0.7)]
    records.append(record("eprop", 0, 0.95, tuned=True))
    records.append(record("eprop", 0, 0.91, start="float"))
    summary = learning.summarize(records)
    assert [(row["rule"], row["start"], row["tuned"]) for row in summary] == [
        ("eprop", "scratch", False),
        ("fptt", "scratch", False),
        ("eprop", "scratch", True),
        ("eprop", "float", False),
    ]
    eprop = summary[0]
    assert eprop["mean"] == pytest.approx(0.85) and eprop["worst"] == 0.8
    assert eprop["std"] == pytest.approx(0.0707, abs=1e-4) and summary[1]["std"] == 0.0
    assert "eprop" in learning.format_table(summary)


def test_main_prints_the_records_as_json(capsys) -> None:
    learning._main(
        ["--tasks", "cue-accumulation-short", "--rules", "fptt", "--seeds", "1"]
        + ["--epochs", "1", "--samples", "6"]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["summary"][0]["rule"] == "fptt" and len(result["records"]) == 1
    assert "load_average" in result["conditions"]


def test_a_forced_offset_replaces_the_derived_one() -> None:
    record = learning.bench_point("cue-accumulation-short", "fptt", 1, 1, samples=6, offset=0)
    assert record["forced_offset"] == record["error_shift_offset"] == 0
    assert record["rate"] is None and record["history"][0]["error_shift_offset"] == 0


def test_a_gain_changes_the_start_and_is_recorded(monkeypatch) -> None:
    """``--gain`` draws the start at that fan-in gain; without it the start is the default's."""
    spreads = []
    real = learning.random_network

    def spy(hw, seed, spread):
        spreads.append(spread)
        return real(hw, seed=seed, spread=spread)

    monkeypatch.setattr(learning, "random_network", spy)
    record = learning.bench_point("cue-accumulation-short", "eprop", 0, 1, samples=6, gain=1.0)
    learning.bench_point("cue-accumulation-short", "eprop", 0, 1, samples=6)
    data = learning.load_task("cue-accumulation-short", n_train=6)
    hw, _ = learning.task_core("cue-accumulation-short", "eprop", data)
    assert spreads == [learning.fan_in_spreads(hw, 1.0), learning.fan_in_spreads(hw)]
    assert spreads[0] != spreads[1] and record["start_gain"] == 1.0


def test_a_point_from_the_float_network_adapts_it_at_the_lower_rate() -> None:
    """``--start float``: the rule trained in float, quantized, then learned on chip from there
    with the error shift raised for a trained start (``flow.onchip.finetune_offset``)."""
    record = learning.bench_point("digits", "eprop", 0, 1, start="float")
    assert record["start"] == "float" and record["rate"]["derived_offset"] == 0
    assert record["error_shift_offset"] == TrainConfig().onchip_finetune_shift
    # the start is the float network quantized: a trained network, not a random one
    assert record["quantized_accuracy"] > 0.5
    assert abs(record["quantized_accuracy"] - record["float_accuracy"]) < 0.05
    assert len(record["history"]) == 1 and 0 <= record["test_accuracy"] <= 1


def test_the_float_start_refuses_the_scratch_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        learning._main(["--start", "float", "--samples", "6"])
    assert exit_info.value.code == 2
    assert "--start float" in capsys.readouterr().err
    # the same refusal for a caller of bench_point, before anything learns
    with pytest.raises(ConfigError, match="--start float"):
        learning.bench_point("digits", "eprop", 0, 1, gain=1.0, start="float")
