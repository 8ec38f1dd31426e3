"""Bad input must give a clear, specific error (never a traceback from deep inside)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.flow.config import FlowConfig
from neurofptt.models import SpikingRNN
from neurofptt.quant import HardwareConfig, QuantizedNetwork, golden_run


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
