"""What the core holds besides the weights while it learns, and the random draws of an update."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from neurofptt.onchip.factors import Factors
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config
from neurofptt.quant.golden import GoldenState
from neurofptt.quant.lfsr import lane_seeds, lfsr_draw
from neurofptt.quant.network import QuantizedNetwork

MATRICES = ("in", "rec", "out")
SWEEP_ORDER = ("out", "in", "rec")  # the order of the update sweeps (and of the random draws)


@dataclass(frozen=True)
class LearningState:
    """Everything the core holds besides the weights while it learns.

    ``neurons`` (membranes, spikes, readouts) and the three traces are reset per sample; the LFSR
    states, the feedback matrix and FPTT's ``wbar`` and ``previous`` factors persist.  ``wbar``
    holds what the memory holds: ``W_bar`` or ``W - W_bar`` (``wbar_store``), per matrix.
    ``previous`` is FPTT's ``g_{t-1}``; in e-prop mode the hardware does not keep it, and it is
    recorded only so a testbench can compare the factors of the last update.
    """

    neurons: GoldenState
    x_trace: np.ndarray
    z_trace: np.ndarray
    out_trace: np.ndarray
    lfsr: np.ndarray  # (lanes,) current LFSR states
    feedback: np.ndarray | None  # (n_rec, n_out) random B, None for symmetric feedback
    wbar: dict[str, np.ndarray] = field(default_factory=dict)  # FPTT only
    previous: Factors | None = None  # the last update's factors
    updates: int = 0

    @classmethod
    def start(cls, net: QuantizedNetwork) -> LearningState:
        """The state when learning starts from ``net``'s weights: ``W_bar = W``, ``g_0 = 0``."""
        cfg, lc = net.config, learning_config(net.config)
        feedback = None
        if lc.feedback == "random":
            rng = np.random.default_rng(lc.feedback_seed)
            feedback = rng.integers(cfg.w_min + 1, cfg.w_max + 1, (cfg.n_rec, cfg.n_out))
        wbar, previous = {}, None
        if lc.mode == "fptt":
            for m in MATRICES:
                w = net.matrix(m)
                wbar[m] = w.copy() if lc.wbar_store == "absolute" else np.zeros_like(w)
            previous = Factors.zeros(cfg)
        return cls(
            neurons=GoldenState.zeros(net, 1),
            x_trace=np.zeros(cfg.n_in, np.int64),
            z_trace=np.zeros(cfg.n_rec, np.int64),
            out_trace=np.zeros(cfg.n_rec, np.int64),
            lfsr=lane_seeds(lc.lfsr_seed, cfg.lanes),
            feedback=feedback,
            wbar=wbar,
            previous=previous,
        )

    def new_sample(self, net: QuantizedNetwork) -> LearningState:
        """This state with the per-sample parts (neurons, traces) back at zero."""
        return dataclasses.replace(
            self,
            neurons=GoldenState.zeros(net, 1),
            x_trace=np.zeros_like(self.x_trace),
            z_trace=np.zeros_like(self.z_trace),
            out_trace=np.zeros_like(self.out_trace),
        )

    def running_mean(self, net: QuantizedNetwork, matrix: str) -> np.ndarray:
        """``W_bar`` of a matrix as the hardware reads it back."""
        stored = self.wbar[matrix]
        if learning_config(net.config).wbar_store == "absolute":
            return stored
        return net.matrix(matrix) - stored


def update_draws(
    cfg: HardwareConfig, lfsr: np.ndarray, per_slot: int
) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """Draw every random number of one update; return ``(per-matrix draws, new LFSR states)``.

    ``draws[m][u]`` has the shape of matrix ``m`` and holds the ``u``-th draw of its synapse's
    word slot in its lane's stream.
    """
    lanes = cfg.lanes
    shapes = {
        "in": (cfg.n_rec, cfg.n_in),
        "rec": (cfg.n_rec, cfg.n_rec),
        "out": (cfg.n_out, cfg.n_rec),
    }
    slots = {m: shapes[m][1] * lane_rows(shapes[m][0], lanes) for m in SWEEP_ORDER}
    values, lfsr = lfsr_draw(lfsr, per_slot * sum(slots.values()))
    draws, base = {}, 0
    for m in SWEEP_ORDER:
        n_post, n_pre = shapes[m]
        post = np.arange(n_post)[:, None]
        slot = base + np.arange(n_pre)[None, :] * lane_rows(n_post, lanes) + post // lanes
        draws[m] = [values[post % lanes, per_slot * slot + u] for u in range(per_slot)]
        base += slots[m]
    return draws, lfsr
