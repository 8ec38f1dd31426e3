"""Bad input must give a clear, specific error (never a traceback from deep inside)."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurofptt.cli import main
from neurofptt.errors import CheckpointError, ConfigError, ShapeError
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.onchip import initial_network
from neurofptt.learning.eprop import EProp, EPropOptions
from neurofptt.learning.fobptt import FOBPTT
from neurofptt.learning.fptt import FPTTOptions
from neurofptt.learning.registry import (
    MODELS,
    RULE_CLASSES,
    RULE_OPTIONS,
    RULES,
    SUPPORTED_MODELS,
    build_model,
)
from neurofptt.learning.trainer import TrainConfig, config_differences, fit, make_rule
from neurofptt.models import GatedRNN, SpikingRNN
from neurofptt.quant import HardwareConfig, QuantizedNetwork, golden_run
from neurofptt.quant.config import LearningConfig
from neurofptt.tasks import load_task
from neurofptt.tasks.base import SequenceDataset, TaskData

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_rec": 0}, r"hardware\.n_rec = 0 is out of range"),
        ({"n_in": 0}, r"hardware\.n_in = 0"),
        ({"weight_bits": 40}, r"hardware\.weight_bits = 40 is out of range.*between 2 and 16"),
        ({"threshold": -5}, r"hardware\.threshold = -5 must be positive"),
        ({"threshold": 1 << 20}, r"raise membrane_bits or lower the threshold"),
        ({"reset": "hard"}, r"hardware\.reset = 'hard' is not a reset rule"),
        ({"frac_bits": 15}, r"frac_bits = 15 must be between 0 and membrane_bits - 2"),
        ({"leak_shift": 16}, r"leak_shift = 16"),
        ({"n_in": 2.5}, r"must be an integer"),
    ],
)
def test_invalid_hardware_config(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        HardwareConfig(**changes)


def test_invalid_config_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[hardware]\nn_rec = 0\n")
    with pytest.raises(ConfigError, match="n_rec = 0"):
        FlowConfig.load(bad)
    bad.write_text("[hardware]\nneurons = 5\n")
    with pytest.raises(ConfigError, match=r"unknown hardware option\(s\) \['neurons'\]"):
        FlowConfig.load(bad)
    bad.write_text("[train]\nrule = 'magic'\n")
    with pytest.raises(ConfigError, match="unknown rule 'magic'; available rules"):
        FlowConfig.load(bad)
    bad.write_text("[hardware\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        FlowConfig.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        FlowConfig.load(tmp_path / "missing.toml")


def test_weights_outside_format() -> None:
    cfg = HardwareConfig(n_in=2, n_rec=3, n_out=2, weight_bits=4)
    ok = np.zeros((3, 2), int)
    with pytest.raises(ConfigError, match=r"w_rec\[1, 2\] = 9 does not fit in 4-bit"):
        QuantizedNetwork(cfg, ok, np.array([[0, 0, 0], [0, 0, 9], [0, 0, 0]]), np.zeros((2, 3)))
    with pytest.raises(ConfigError, match=r"w_out has shape \(3, 3\) but the config"):
        QuantizedNetwork(cfg, ok, np.zeros((3, 3), int), np.zeros((3, 3), int))


def test_golden_rejects_bad_input() -> None:
    cfg = HardwareConfig(n_in=2, n_rec=3, n_out=2)
    net = QuantizedNetwork(cfg, np.zeros((3, 2)), np.zeros((3, 3)), np.zeros((2, 3)))
    with pytest.raises(ShapeError, match=r"expected \(batch, steps, n_in=2\)"):
        golden_run(net, np.zeros((4, 5, 3)))
    with pytest.raises(ShapeError, match="NaN"):
        golden_run(net, np.full((1, 2, 2), np.nan))
    with pytest.raises(ShapeError, match="binary"):
        golden_run(net, np.full((1, 2, 2), 0.5))


def test_model_rejects_bad_input() -> None:
    model = SpikingRNN(4, 5, 3)
    with pytest.raises(ShapeError, match=r"expected \(batch, steps, n_in=4\)"):
        model(torch.zeros(2, 3, 5))
    x = torch.zeros(2, 3, 4)
    x[0, 1, 2] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        model(x)


def test_largest_config_fits_64_bit_golden_arithmetic() -> None:
    cfg = HardwareConfig(
        n_in=4096,
        n_rec=4096,
        n_out=1024,
        weight_bits=16,
        membrane_bits=32,
        threshold=1,
        w_in_shift=31,
        w_rec_shift=31,
        w_out_shift=31,
    )
    assert cfg.acc_bits <= 63


@pytest.mark.parametrize(
    "text, message",
    [
        ('[train]\nepochs = "3"\n', r"train\.epochs must be an integer, got '3'"),
        ("[train]\nbatch_size = 16.5\n", r"train\.batch_size must be an integer, got 16\.5"),
        ('[train]\noptimizer = ["adam"]\n', r"train\.optimizer must be a string"),
        ("[train]\nlr = true\n", r"train\.lr must be a number, got True"),
        ("[train]\nonline_lr = 0\n", r"train\.online_lr must be a positive number, got 0"),
        ("[train]\nonline_lr = nan\n", r"train\.online_lr must be a positive number, got nan"),
        (
            "[train]\nonchip_finetune_shift = -1\n",
            r"train\.onchip_finetune_shift must be >= 0, got -1",
        ),
        ('[flow]\nrtl_samples = "all"\n', r"flow\.rtl_samples must be an integer"),
        ('[flow]\nfpga_pnr = "no"\n', r"flow\.fpga_pnr must be true or false"),
        ("hardware = 3\n", r"\[hardware\] must be a table of options, got 3"),
        ('[hardware]\nn_rec = "64"\n', r"hardware\.n_rec must be an integer"),
    ],
)
def test_wrong_types_in_config_file(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        FlowConfig.load(path)


# -- the [train] table and the rules' own [train.<rule>] tables ----------------------------------

#: every rule option of the flat [train] layout before [train.<rule>] tables, and its new place
OLD_FLAT_KEYS = {
    "fptt_alpha": ("fptt", "alpha"),
    "fptt_mix": ("fptt", "mix"),
    "fptt_period": ("fptt", "period"),
    "fptt_form": ("fptt", "form"),
    "fptt_reset_to_mean": ("fptt", "reset_to_mean"),
    "fptt_schedule": ("fptt", "schedule"),
    "fptt_constant_beta": ("fptt", "constant_beta"),
    "tbptt_n": ("tbptt", "n"),
    "tbptt_interval": ("tbptt", "interval"),
    "tbptt_loss_steps": ("tbptt", "loss_steps"),
    "fobptt_alpha": ("fobptt", "alpha"),
    "fobptt_eps": ("fobptt", "eps"),
    "rtrl_loss_steps": ("rtrl", "loss_steps"),
    "eprop_feedback": ("eprop", "feedback"),
    "eprop_feedback_seed": ("eprop", "feedback_seed"),
    "eprop_loss_steps": ("eprop", "loss_steps"),
    "eprop_online": ("eprop", "online"),
    "eprop_reg_rate": ("eprop", "reg_rate"),
    "eprop_target_rate": ("eprop", "target_rate"),
    "fpp_buffer_size": ("fpp", "buffer_size"),
    "fpp_updates": ("fpp", "updates"),
    "fpp_replay_batch": ("fpp", "replay_batch"),
    "fpp_state_weight": ("fpp", "state_weight"),
    "fpp_refresh_random": ("fpp", "refresh_random"),
    "fpp_propagate": ("fpp", "propagate"),
    "fpp_loss_steps": ("fpp", "loss_steps"),
    "fpp_seed": ("fpp", "seed"),
}


@pytest.mark.parametrize("old", sorted(OLD_FLAT_KEYS))
def test_flat_rule_option_says_what_to_rename(tmp_path, old: str) -> None:
    rule, option = OLD_FLAT_KEYS[old]
    default = getattr(TrainConfig(), rule)
    value = getattr(default, option)
    path = tmp_path / "old.toml"
    path.write_text(f"[train]\n{old} = {json.dumps(value)}\n")
    with pytest.raises(ConfigError, match=rf"train\.{old} is now \[train\.{rule}\] {option}\b"):
        FlowConfig.load(path)
    # the same value in its new place is accepted
    path.write_text(f"[train.{rule}]\n{option} = {json.dumps(value)}\n")
    assert getattr(getattr(FlowConfig.load(path).train, rule), option) == value


@pytest.mark.parametrize(
    "text, message",
    [
        ('[train.fptt]\nalpha = "0.5"\n', r"train\.fptt\.alpha must be a number, got '0\.5'"),
        ("[train.tbptt]\nn = 2.5\n", r"train\.tbptt\.n must be an integer, got 2\.5"),
        ('[train.fpp]\npropagate = "yes"\n', r"train\.fpp\.propagate must be true or false"),
        (
            "[train.fptt]\nbeta = 0.5\n",
            r"unknown train\.fptt option\(s\) \['beta'\]; valid options are \['alpha', ",
        ),
        ("[train]\nfptt = 3\n", r"\[train\.fptt\] must be a table of options, got 3"),
        ("[train.eprop]\nloss_steps = 0\n", r"loss_steps must be 'last', 'all' or a positive"),
        ("[train.eprop]\nloss_steps = 2.5\n", r"loss_steps must be 'last', 'all' or a positive"),
        ("[train]\nnope = 1\n", r"unknown train option\(s\) \['nope'\]; valid options are"),
        ("[model]\nwidth = 1\n", r"unknown config option\(s\) \['model'\]"),
        ("[flow]\nsteps = 1\n", r"unknown flow option\(s\) \['steps'\]; valid options are"),
    ],
)
def test_bad_rule_tables(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        FlowConfig.load(path)


def test_train_config_round_trips_with_rule_tables() -> None:
    cfg = TrainConfig.from_dict(
        {
            "rule": "eprop",
            "epochs": 3,
            "eprop": {"loss_steps": 4, "feedback": "random"},
            "fptt": {"alpha": 0.1, "period": 7},
        }
    )
    assert cfg.rule_options == EPropOptions(loss_steps=4, feedback="random")
    assert cfg.fptt == FPTTOptions(alpha=0.1, period=7)
    data = cfg.to_dict()
    assert data["fptt"]["alpha"] == 0.1 and "fptt_alpha" not in data
    assert TrainConfig.from_dict(data) == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(data))) == cfg


def test_rules_own_their_options_and_models() -> None:
    """The registry is derived from the rule classes, every rule's options dataclass is a table
    of TrainConfig, and a rule's constructor defaults are its options' defaults (one place)."""
    assert RULE_CLASSES and all(RULES[cls.name] is cls for cls in RULE_CLASSES)
    assert set(RULES) == set(RULE_OPTIONS) == set(SUPPORTED_MODELS)
    defaults = TrainConfig()
    for name, cls in RULES.items():
        assert RULE_OPTIONS[name] is cls.Options and cls.Options.table == f"train.{name}"
        assert SUPPORTED_MODELS[name] == (cls.models or tuple(MODELS))
        assert getattr(defaults, name) == cls.Options()
        signature = inspect.signature(cls.__init__).parameters
        for option in dataclasses.fields(cls.Options):
            expected = cls.Options().rule_kwargs()[option.name]
            default = signature[option.name].default
            # FO-BPTT takes None to mean its options' defaults (it may wrap a given optimizer)
            assert default == expected or (cls is FOBPTT and default is None), (name, option)


def test_every_rule_is_built_with_its_options() -> None:
    model = build_model("rnn", 2, 4, 2)
    for name in ("fptt", "tbptt", "fobptt", "fpp", "rtrl"):
        cfg = TrainConfig(rule=name, model="rnn")
        assert isinstance(make_rule(cfg, model), RULES[name])
    cfg = TrainConfig.from_dict(
        {"rule": "fpp", "model": "rnn", "fpp": {"updates": 3, "replay_batch": 5}}
    )
    rule = make_rule(cfg, model)
    assert (rule.updates, rule.replay_batch) == (3, 5)
    rule = make_rule(TrainConfig(rule="fpp", model="rnn"), model)
    assert rule.replay_batch is None  # 0 in a config: the training batch size
    rule = make_rule(TrainConfig.from_dict({"rule": "tbptt", "tbptt": {"n": 6}}), model)
    assert (rule.n, rule.interval) == (6, 6)  # interval 0: the window n


def test_eprop_scores_the_last_n_steps_given_in_its_table() -> None:
    """``[train.eprop] loss_steps = 3``: the objective is the mean cross-entropy of the last
    three steps."""
    torch.manual_seed(0)
    model = SpikingRNN(3, 6, 2, input_gain=3.0)
    cfg = TrainConfig.from_dict(
        {"rule": "eprop", "optimizer": "sgd", "weight_decay": 0.0, "eprop": {"loss_steps": 3}}
    )
    rule = make_rule(cfg, model)
    assert isinstance(rule, EProp) and rule.loss_steps == 3
    x = (torch.rand(4, 7, 3) < 0.4).float()
    y = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        outputs, _ = model(x)
    expected = sum(F.cross_entropy(outputs[:, t], y) for t in (4, 5, 6)) / 3
    assert rule.train_batch(x, y).loss == pytest.approx(float(expected), rel=1e-5)


def old_flat_train() -> dict:
    """A [train] table as saved in the flat layout before [train.<rule>] tables."""
    data = {k: v for k, v in TrainConfig().to_dict().items() if k not in RULE_OPTIONS}
    for old, (rule, option) in OLD_FLAT_KEYS.items():
        data[old] = getattr(getattr(TrainConfig(), rule), option)
    return data


def test_checkpoint_of_the_flat_layout_is_refused_clearly(tmp_path) -> None:
    saved = {"train": old_flat_train()}
    current = {"train": TrainConfig().to_dict()}
    (line,) = config_differences(saved, current)
    assert "flat layout of earlier versions" in line and "cannot be resumed" in line
    assert "eprop_feedback is now [train.eprop] feedback" in line
    # and through the trainer: resuming such a checkpoint fails with that message, no traceback
    torch.manual_seed(0)
    steps = torch.arange(6.0)
    x = torch.sin(steps[None, :, None] + torch.arange(8.0)[:, None, None])
    task = TaskData("sine", SequenceDataset(x, x), SequenceDataset(x, x), 1, "regression")
    cfg = TrainConfig(rule="bptt", model="gru", epochs=1, batch_size=8, qat_epochs=0)
    checkpoint = tmp_path / "ck.pt"
    fit(GatedRNN("gru", 1, 3, 1), task, cfg, checkpoint, progress=False)
    payload = torch.load(checkpoint, weights_only=True)
    payload["meta"]["train"] = old_flat_train()
    torch.save(payload, checkpoint)
    with pytest.raises(CheckpointError, match="flat layout of earlier versions"):
        fit(GatedRNN("gru", 1, 3, 1), task, cfg, checkpoint, resume=True, progress=False)


def test_one_default_per_setting(tmp_path) -> None:
    """The dataclass defaults are the demo's: a flow config, a config file that leaves options
    out and a config built in code all start from the same values."""
    assert FlowConfig().hardware == HardwareConfig()
    assert HardwareConfig() == HardwareConfig(n_in=32, n_rec=128, n_out=10, lanes=4)
    path = tmp_path / "c.toml"
    path.write_text("[hardware]\nn_rec = 64\n[hardware.learning]\nmode = 'fptt'\n")
    hardware = FlowConfig.load(path).hardware
    assert hardware == HardwareConfig(n_rec=64, learning=LearningConfig(mode="fptt"))
    learning = hardware.learning
    assert (hardware.lanes, learning.error, learning.rounding, learning.lr_shift_rec) == (
        4,
        "softmax",
        "nearest",
        15,
    )
    # without a [hardware.learning] table on-chip learning uses the same defaults
    assert initial_network(FlowConfig(), "eprop").config.learning == LearningConfig()


def test_the_network_takes_its_sizes_from_the_task_unless_the_config_sets_them(tmp_path) -> None:
    """``--task``, ``--data`` and ``[flow] task`` size the network's inputs and classes alike;
    a size the config sets stays (and is checked against the task when it is loaded)."""
    cue = load_task("cue")
    sizes = (cue.train.n_in, cue.n_out)
    cfg = FlowConfig.load(None, task="cue")
    assert (cfg.hardware.n_in, cfg.hardware.n_out) == sizes and cfg.flow.task == "cue"
    from_table = FlowConfig.from_dict({"flow": {"task": "cue"}, "hardware": {"n_rec": 8}})
    assert (from_table.hardware.n_in, from_table.hardware.n_out, from_table.hardware.n_rec) == (
        *sizes,
        8,
    )
    kept = FlowConfig.from_dict({"flow": {"task": "cue"}, "hardware": {"n_in": 5}})
    assert (kept.hardware.n_in, kept.hardware.n_out) == (5, cue.n_out)
    path = tmp_path / "d.npz"
    x = np.zeros((4, 3, 7), np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(4) % 3, x_test=x, y_test=np.arange(4) % 3)
    data = FlowConfig.load(None, task=path)
    assert (data.hardware.n_in, data.hardware.n_out) == (7, 3)


def test_data_and_task_together_are_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--task", "cue", "--data", "x.npz", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give one of them" in err[0]
