"""The whole board top under Icarus and cocotb, driven only through its UART pins by the host
driver (:class:`neurofptt.board.Board`): an inference core runs samples, a learning core is
sent new weights, runs samples and learns, and every spike, readout and read-back weight equals
the golden model; a bit flipped on the line is refused, and after a reset the session ends as
it would have."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from simulators import needs_icarus

from neurofptt.board import BoardError
from neurofptt.board.sim import simulate_board
from neurofptt.onchip import random_network
from neurofptt.quant.config import HardwareConfig, LearningConfig
from neurofptt.quant.golden import golden_run
from neurofptt.verify.learning import golden_learning_run

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.slow,
    needs_icarus,
]

INFERENCE = HardwareConfig(
    n_in=5, n_rec=6, n_out=3, weight_bits=6, membrane_bits=10, frac_bits=4, leak_shift=2,
    out_leak_shift=1, threshold=24, w_in_shift=2, w_rec_shift=1, w_out_shift=2, lanes=2,
)  # fmt: skip
EPROP = INFERENCE.replace(
    n_rec=5,
    lanes=3,
    learning=LearningConfig(mode="eprop", error="target", supervised_steps=2, lr_shift_in=6,
                            lr_shift_rec=6, lr_shift_out=6, target=64, psi_width_shift=5,
                            psi_bits=3, trace_bits=8, trace_frac_bits=4, signal_bits=10,
                            signal_shift=2),
)  # fmt: skip


def test_inference_board_matches_golden(tmp_path) -> None:
    net = random_network(INFERENCE, seed=11, spread=24)
    rng = np.random.default_rng(0)
    x = rng.random((3, 6, INFERENCE.n_in)) < 0.4
    x[1, 3] = True
    # a 16-byte receive buffer: the driver waits for answers before every few commands
    result = simulate_board(net, x, tmp_path, rx_buffer=16)
    golden = golden_run(net, x)
    np.testing.assert_array_equal(result.trace.spikes, golden.spikes)
    np.testing.assert_array_equal(result.trace.readout, golden.readout)
    assert golden.spikes.any() and golden.readout.any()
    assert result.info.mode == "inference" and result.info.status == 0
    assert result.info.rx_buffer == 16


FPTT = EPROP.replace(
    learning=dataclasses.replace(EPROP.learning, mode="fptt", alpha_shift=3,
                                 wbar_store="difference", wbar_bits=4)
)  # fmt: skip


@pytest.mark.parametrize("cfg", [EPROP, FPTT], ids=["eprop", "fptt"])
def test_learning_board_loads_learns_and_reads_back(cfg: HardwareConfig, tmp_path) -> None:
    built = random_network(cfg, seed=2, spread=20)
    net = random_network(cfg, seed=3, spread=28)
    rng = np.random.default_rng(1)
    x = rng.random((3, 5, cfg.n_in)) < 0.5
    labels = np.array([0, 2, 1])
    # a 32-byte receive buffer: the load goes in LOAD commands of a few words
    result = simulate_board(built, x, tmp_path, net=net, labels=labels, rx_buffer=32)
    golden = golden_learning_run(net, x, labels)
    np.testing.assert_array_equal(result.trace.spikes, golden.spikes)
    np.testing.assert_array_equal(result.trace.readout, golden.readout)
    last = {s.sample: s for s in golden.snapshots}  # each sample's last update
    assert sorted(last) == [0, 1, 2]
    for b, snapshot in last.items():
        for m, w in snapshot.weights.items():
            np.testing.assert_array_equal(result.weights[m][b], w, err_msg=f"sample {b} w_{m}")
        for m, w in snapshot.wbar.items():
            np.testing.assert_array_equal(result.wbar[m][b], w, err_msg=f"sample {b} wbar_{m}")
    assert any((last[2].weights[m] != net.matrix(m)).any() for m in last[2].weights)
    assert len(result.wbar) == (3 if cfg is FPTT else 0)
    assert result.info.mode == cfg.learning.mode and result.info.status == 0


def test_board_refuses_another_network(tmp_path) -> None:
    built = random_network(INFERENCE, seed=11, spread=24)
    other = random_network(INFERENCE, seed=12, spread=24)
    with pytest.raises(BoardError, match="holds other weights"):
        simulate_board(built, np.zeros((1, 1, INFERENCE.n_in)), tmp_path, net=other)


def test_flipped_bit_on_the_line_is_refused(tmp_path) -> None:
    net = random_network(INFERENCE, seed=11, spread=24)
    rng = np.random.default_rng(0)
    x = rng.random((2, 4, INFERENCE.n_in)) < 0.4
    x[0, 0, :2] = True
    # the host sends INFO (2 bytes), CLEAR (2), then step 0's SPIKES: opcode, count, index 0
    result = simulate_board(net, x, tmp_path, flip=(6, 1))
    assert "refused a command (opcode 0x53, answering SPIKES)" in result.link_error
    assert "CRC did not match" in result.link_error
    golden = golden_run(net, x)
    np.testing.assert_array_equal(result.trace.spikes, golden.spikes)
    np.testing.assert_array_equal(result.trace.readout, golden.readout)
    assert result.info.status == 0
