"""The network a run scores and reports is the moving average of the weights after each batch
(``train.average_epochs``): its decay follows from the horizon in epochs, it is the exponential
moving average of exactly the trained weights, training itself does not change, and a resumed
run ends with the average an uninterrupted one ends with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.averaging import WeightAverage, ema_decay
from neurofptt.learning.trainer import (
    TrainConfig,
    fit,
    load_checkpoint,
    picked_weights,
    start_run,
)
from neurofptt.models.spiking import SpikingRNN
from neurofptt.tasks import load_task

torch.set_num_threads(1)

#: 48 training samples in batches of 16: 3 batches an epoch
TASK = {"n_train": 48, "n_test": 16, "n_val": 16}


def test_the_decay_follows_from_the_horizon_in_epochs() -> None:
    assert ema_decay(0.5, 10) == pytest.approx(0.8)
    assert ema_decay(2.0, 50) == pytest.approx(0.99)
    # a horizon of one batch or less keeps the weights themselves
    assert ema_decay(0.5, 2) == 0.0
    assert ema_decay(0.0, 1000) == 0.0
    model = SpikingRNN(3, 4, 2)
    assert WeightAverage.for_run(model, 0.5, 2) is None
    assert WeightAverage.for_run(model, 1.0, 4).decay == pytest.approx(0.75)


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_a_horizon_that_is_not_a_number_of_epochs_is_refused(value: float) -> None:
    with pytest.raises(ConfigError, match="train.average_epochs must be a number >= 0"):
        TrainConfig(average_epochs=value)


def test_the_average_is_the_exponential_moving_average_of_the_weights() -> None:
    """The first weights are copied, then ``avg = d avg + (1 - d) w`` after every batch."""
    torch.manual_seed(0)
    model = SpikingRNN(3, 4, 2).double()
    average = WeightAverage(model, 0.75)
    expected = None
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update(model)
        now = [p.detach().clone() for p in model.parameters()]
        if expected is None:
            expected = now
        else:
            expected = [0.75 * a + 0.25 * w for a, w in zip(expected, now, strict=True)]
        for got, want in zip(average.model.parameters(), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)
    assert average.updates == 5


def _task_and_model():
    task = load_task("cue", **TASK)
    torch.manual_seed(0)
    return task, SpikingRNN(task.train.n_in, 8, task.n_out)


@pytest.mark.parametrize("rule", ["bptt", "fptt"])
def test_a_run_scores_the_average_of_the_weights_its_rule_trained(rule: str, tmp_path) -> None:
    """The scored network of every epoch is the EMA (decay ``1 - 1/(0.5 * 3)``) of the weights
    after each batch, and the rule trains on its own weights: they are those of a run without
    the average, bit for bit."""
    task, model = _task_and_model()
    cfg = TrainConfig(rule=rule, epochs=2, qat_epochs=0, batch_size=16, average_epochs=1.0)
    run = start_run(model, task, cfg, tmp_path / "avg" / "ckpt.pt", progress=False)
    assert run.average is not None and run.average.decay == pytest.approx(2 / 3)
    after_batches: list[list[torch.Tensor]] = []
    train_batch = run.rule.train_batch

    def recording(x, y):
        result = train_batch(x, y)
        after_batches.append([p.detach().clone() for p in model.parameters()])
        return result

    run.rule.train_batch = recording
    run.train_until(2)
    assert len(after_batches) == 6
    expected = after_batches[0]
    for now in after_batches[1:]:
        expected = [a + (w - a) / 3 for a, w in zip(expected, now, strict=True)]
    for got, want in zip(run.scored.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)

    task, plain = _task_and_model()
    plain_cfg = dataclasses.replace(cfg, average_epochs=0.0)
    plain_run = start_run(plain, task, plain_cfg, tmp_path / "plain" / "ckpt.pt", progress=False)
    assert plain_run.average is None and plain_run.scored is plain
    plain_run.train_until(2)
    for a, b in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_reported_network_is_the_averaged_one(tmp_path: Path) -> None:
    """What the run reports and the checkpoint's pick hold is the average of the picked epoch;
    without a validation split, the last epoch's average."""
    task, model = _task_and_model()
    cfg = TrainConfig(rule="bptt", epochs=2, qat_epochs=0, batch_size=16, average_epochs=1.0)
    run = start_run(model, task, cfg, tmp_path / "ckpt.pt", progress=False)
    run.train_until(1)  # the first epoch is always picked
    assert run.picked is not None and run.picked["epoch"] == 1
    for name, value in run.scored.state_dict().items():
        assert torch.equal(run.picked["model"][name], value), name
    assert not all(torch.equal(run.picked["model"][k], v) for k, v in model.state_dict().items())
    run.train_until(2)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    run.outcome()
    saved = load_checkpoint(tmp_path / "ckpt.pt")
    for name, value in trained.items():  # the checkpoint resumes from the trained weights
        assert torch.equal(saved["model"][name], value), name
    for name, value in picked_weights(saved).items():
        assert torch.equal(model.state_dict()[name], value), name

    no_val = load_task("cue", **{**TASK, "n_val": 0})
    torch.manual_seed(0)
    model = SpikingRNN(no_val.train.n_in, 8, no_val.n_out)
    history = fit(model, no_val, cfg, tmp_path / "noval" / "ckpt.pt", progress=False)
    saved = load_checkpoint(tmp_path / "noval" / "ckpt.pt")
    assert history.picked_epoch == 2 and saved["picked"]["score"] is None
    for name, value in saved["average"]["parameters"].items():
        assert torch.equal(model.state_dict()[name], value), name
    assert not all(torch.equal(saved["model"][k], v) for k, v in model.state_dict().items())


def test_a_resumed_run_ends_with_the_uninterrupted_average(tmp_path: Path) -> None:
    cfg = TrainConfig(rule="fptt", epochs=3, qat_epochs=0, batch_size=16, average_epochs=1.0)
    task, model = _task_and_model()
    straight = fit(model, task, cfg, tmp_path / "a" / "ckpt.pt", progress=False)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    task, model = _task_and_model()
    run = start_run(model, task, cfg, tmp_path / "b" / "ckpt.pt", progress=False)
    run.train_until(1)  # the process stops after the first epoch
    task, model = _task_and_model()
    resumed = fit(model, task, cfg, tmp_path / "b" / "ckpt.pt", resume=True, progress=False)
    assert resumed.picked_epoch == straight.picked_epoch
    assert [r["val_accuracy"] for r in resumed] == [r["val_accuracy"] for r in straight]
    for name, value in expected.items():
        assert torch.equal(model.state_dict()[name], value), name
