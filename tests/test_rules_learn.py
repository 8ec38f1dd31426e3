"""Every supported rule/model pair, built through the config path, learns a small memory task.

Task: two channels fire once each at steps 4-9 of 10; the label is the channel that fired first,
read at the last step, so the network must hold the order for up to 5 steps (chance: ln 2).  Each
rule runs with settings suited to such a short task (listed below); the assertion is the same
for all: the held-out loss ends below 0.3 ln 2.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurofptt.learning import TrainConfig, build_model, make_rule
from neurofptt.learning.registry import SUPPORTED_MODELS
from neurofptt.tasks.synthetic import which_fired_first

CHANCE = math.log(2)
# FPP trains the tanh RNN on Cycleworld, its paper's task (tests/test_reproduce.py and
# docs/results.md), but not reliably on this one
PAIRS = [
    (rule, model)
    for rule, models in sorted(SUPPORTED_MODELS.items())
    for model in models
    if (rule, model) != ("fpp", "rnn")
]
# each rule's [train.<rule>] table
SETTINGS = {
    # FPTT-K with K = 2 chunks: per-step FPTT (period 1) needs far more updates on this task
    "fptt": {"period": 5, "alpha": 0.1},
    # the window reaches back to step 3, before the first spike; the label is at the last step
    "tbptt": {"n": 7, "interval": 3, "loss_steps": "last"},
    "fpp": {"updates": 4, "buffer_size": 500},
}
BATCHES = {"fptt": 150, "tbptt": 150, "rtrl": 150, "fpp": 60}
BATCH_SIZE = {"rtrl": 16}
HIDDEN = {"rtrl": 6}  # RTRL carries state x parameter sensitivities: tiny networks only


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("rule", "model_name"), PAIRS)
def test_rule_learns_which_fired_first(rule: str, model_name: str) -> None:
    torch.manual_seed(0)
    spiking = {"input_gain": 3.0} if model_name in ("lif", "alif") else {}
    model = build_model(model_name, 2, HIDDEN.get(rule, 16), 2, **spiking)
    cfg = TrainConfig.from_dict(
        {
            "optimizer": "adam",
            "weight_decay": 0.0,
            "lr": 1e-2,
            "rule": rule,
            "model": model_name,
            rule: SETTINGS.get(rule, {}),
        }
    )
    engine = make_rule(cfg, model)
    gen = torch.Generator().manual_seed(1)
    for _ in range(BATCHES.get(rule, 60)):
        engine.train_batch(*which_fired_first(BATCH_SIZE.get(rule, 32), gen))
    x_test, y_test = which_fired_first(256, torch.Generator().manual_seed(99))
    with torch.no_grad():
        outputs, _ = model(x_test)
    loss = float(F.cross_entropy(outputs[:, -1], y_test))
    assert loss < 0.3 * CHANCE, f"{rule}/{model_name}: loss {loss:.3f} (chance {CHANCE:.3f})"


def test_fpp_trains_a_tanh_rnn_on_cycleworld(tmp_path) -> None:
    """6-Cycleworld with the FPP paper's 4-unit tanh RNN and Adagrad: FPP with a few one-step
    updates per step learns the cycle, reaching an accuracy the always-0 predictor (5/6) and any
    network that has not learned it cannot (over 32 test sequences of 60 steps).

    The best epoch is scored, not the last: with this tiny network FPP's test accuracy swings
    between epochs, and where it is on the last epoch depends on floating-point details of the
    CPU.  Measured on one machine (lr 0.1, seed 0): 0.93, 0.82, 0.97, 0.97, 0.91, 0.99, 0.99,
    0.99, 0.83, 0.83, 0.82, 0.68; with lr 0.05 and 0.03 the swings are as large
    (docs/results.md reports the seed spread on the full task)."""
    from neurofptt.studies.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig.from_dict(
        {
            # a check that FPP learns the cycle at all (the best epoch), not a reported number:
            # no validation split, every epoch scored on the test set
            "experiment": {"task": "cycleworld", "hidden": 4, "val_fraction": 0},
            "task": {"n_train": 128, "n_test": 32, "steps": 60},
            "train": {
                "rule": "fpp",
                "model": "rnn",
                "fpp": {"updates": 3, "loss_steps": "all"},
                "optimizer": "adagrad",
                "lr": 0.1,
                "weight_decay": 0.0,
                "batch_size": 16,
                "epochs": 12,
                "lr_schedule": "constant",
                "qat_epochs": 0,
            },
        }
    )
    record = run_experiment(cfg, tmp_path)
    best = max(epoch["test_accuracy"] for epoch in record["history"])
    assert best > 0.95, record["history"]
