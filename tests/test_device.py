"""``train.device`` / ``--device``: where the float model trains.  On CPU the setting is checked
and a run may resume on another device; where a CUDA or MPS device is present, every rule the
toolkit accelerates trains there to the weights it trains on the CPU (float tolerance)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from neurofptt.errors import ConfigError
from neurofptt.learning.trainer import TrainConfig, config_differences, fit, training_device
from neurofptt.models.spiking import SpikingRNN
from neurofptt.tasks import load_task

torch.set_num_threads(1)

ACCELERATORS = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
    pytest.param(
        "mps", marks=pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS")
    ),
]


def test_devices_this_machine_lacks_are_one_clear_error() -> None:
    assert training_device("cpu") == torch.device("cpu")
    for name in ("tpu", "cuda:x", "xla"):
        with pytest.raises(ConfigError, match=f"train.device '{name}'.*(cpu, cuda or mps|one of)"):
            TrainConfig(device=name)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="install a CUDA build"):
            TrainConfig(device="cuda")


def test_a_run_may_resume_on_another_device() -> None:
    """The device says where a run executes, not what it computes."""
    saved = {"train": TrainConfig().to_dict()}
    current = {"train": {**saved["train"], "device": "mps"}}
    assert config_differences(saved, current) == []
    current["train"]["lr"] = 1.0
    assert config_differences(saved, current) == [f"train.lr: saved {3e-3!r} vs current 1.0"]


def _train(rule: str, device: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    task = load_task("cue", n_train=48, n_test=16, n_val=16)
    model = SpikingRNN(task.train.n_in, 8, task.n_out)
    cfg = dataclasses.replace(
        TrainConfig(rule=rule, epochs=2, qat_epochs=0, batch_size=16), device=device
    )
    torch.manual_seed(0)
    model.load_state_dict(SpikingRNN(task.train.n_in, 8, task.n_out).state_dict())
    fit(model, task, cfg, tmp_path / device / "ckpt.pt", progress=False)
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k.endswith("weight")}


@pytest.mark.parametrize("device", ACCELERATORS)
@pytest.mark.parametrize("rule", ["bptt", "eprop", "fptt"])
def test_a_rule_trains_on_an_accelerator_as_on_the_cpu(rule, device, tmp_path) -> None:
    on_cpu = _train(rule, "cpu", tmp_path)
    on_device = _train(rule, device, tmp_path)
    for name, value in on_cpu.items():
        torch.testing.assert_close(on_device[name], value, rtol=1e-3, atol=1e-4, msg=name)
