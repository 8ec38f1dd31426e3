"""On-chip FPTT is float slide-form FPTT: the golden update against :class:`FPTT` itself.

The chip's update (:mod:`neurofptt.onchip.fptt`) is, in weight LSBs with ``eta = 2**-s`` and
``alpha = 2**(s - A)`` (``s = lr_shift_<matrix>``, ``A = alpha_shift``)::

    W_new    = W - eta (G + alpha (W - Wbar) - Gp / 2)          rounded stochastically
    Wbar_new = (Wbar + W_new) / 2 - G / (2 alpha)               rounded stochastically

A weight code of matrix ``m`` is worth ``c_m = 2**(shift_m - frac_bits)`` float units (the
quantizer's per-matrix scale) and one unit of the chip's gradient ``G_m`` is ``k_m`` units of the
float loss gradient (:func:`gradient_scale`: the error, trace and signal formats).  Substituting
``W = W_f / c_m`` and ``G = g_f / k_m`` turns the chip's step into the float slide-form step of
:class:`~neurofptt.learning.fptt.FPTT` with plain SGD, no clipping and::

    lr_m = 2**-s c_m / k_m,     alpha_m = 2**(s - A) k_m / c_m,     lr_m alpha_m = 2**-A.

The float rule is started from the chip's state (weights, ``W_bar``, previous gradient) and the
two are compared one update at a time.  The first tests hand it the chip's own gradient through
the linear loss ``sum(W_f * k_m G)``, whose gradient is exactly ``k_m G``: that pins ``lr_m`` and
``alpha_m`` (``k_m`` cancels there, whatever its value).  The last lets the rule take the gradient
of its own MSE loss on a network without membrane or readout memory, where that gradient is the
chip's factorised one: that pins ``k_m``.  The bounds, in weight LSBs: stochastic rounding lands
within 1 of the exact value, so ``|W_chip - W_float| < 1``; ``W_bar`` is rounded once more after
averaging with ``W_new``, so ``|Wbar_chip - Wbar_float| < 1 + 1/2``.  docs/learning.md, "On-chip
FPTT and float FPTT side by side", states the mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from neurofptt.learning.fptt import FPTT
from neurofptt.learning.objectives import step_loss
from neurofptt.models import SpikingRNN
from neurofptt.onchip import MATRICES, LearningState, learning_step, random_network, step_schedule
from neurofptt.quant import HardwareConfig, QuantizedNetwork
from neurofptt.quant.config import LearningConfig
from neurofptt.quant.quantizer import dequantize_into

NAMES = {"in": "rec.fc_in.weight", "rec": "rec.fc_rec.weight", "out": "readout.fc_out.weight"}
WEIGHT_SHIFTS = {"in": "w_in_shift", "rec": "w_rec_shift", "out": "w_out_shift"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The networks are tiny: one thread is faster and timings do not depend on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the mapping --------------------------------------------------------------------------------


def weight_scale(cfg: HardwareConfig, matrix: str) -> float:
    """``c_m``: float value of one weight LSB of ``matrix`` (the quantizer's scale)."""
    return 2.0 ** (getattr(cfg, WEIGHT_SHIFTS[matrix]) - cfg.frac_bits)


def gradient_scale(cfg: HardwareConfig, matrix: str, loss_scale: float) -> float:
    """``k_m``: float loss gradient per unit of the chip's ``G_m``.

    The float loss is ``loss_scale / 2 * ||o - y||^2`` (``y`` the target in float units), whose
    output gradient ``loss_scale (o - y)`` is the chip's ``"target"`` error ``e`` (membrane LSBs,
    ``2**-frac_bits``) times ``loss_scale``.  Traces count ``2**-trace_frac_bits`` spikes.  The
    learning signal ``L = (W_out^T e) >> signal_shift`` carries ``W_out`` in its own LSBs
    (``c_out``), and ``delta = (L psi) >> psi_bits`` with ``psi``'s peak ``2**psi_bits`` standing
    for the float triangle's 1, so ``psi_bits`` cancels.
    """
    lc = cfg.learning
    per_error_trace = loss_scale * 2.0 ** (-cfg.frac_bits - lc.trace_frac_bits)
    if matrix == "out":
        return per_error_trace
    return per_error_trace * weight_scale(cfg, "out") * 2.0**lc.signal_shift


def float_constants(cfg: HardwareConfig, matrix: str, loss_scale: float) -> tuple[float, float]:
    """``(lr_m, alpha_m)`` of the float slide-form FPTT that takes the chip's step."""
    lc = cfg.learning
    s = lc.lr_shift(matrix)
    ratio = weight_scale(cfg, matrix) / gradient_scale(cfg, matrix, loss_scale)
    return 2.0**-s * ratio, 2.0 ** (s - lc.alpha_shift) / ratio


# -- runs of the chip ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    """One on-chip update: the inputs of :func:`learning_step` and what it returned."""

    net: QuantizedNetwork
    state: LearningState
    x: np.ndarray
    label: int
    shift: int
    new_net: QuantizedNetwork
    new_state: LearningState

    def redo(self, lfsr: np.ndarray) -> tuple[QuantizedNetwork, LearningState]:
        """The same update with other LFSR states (other random draws)."""
        state = dataclasses.replace(self.state, lfsr=lfsr)
        return learning_step(self.net, state, self.x, self.label, self.shift)


def chip_updates(
    cfg: HardwareConfig, seed: int, spread: tuple[int, int, int], samples: int, steps: int
) -> list[Update]:
    """Every update of ``samples`` random samples learned on chip one after another (``W_bar``
    and the previous gradient persist across samples, the neurons and traces do not)."""
    lc = cfg.learning
    net = random_network(cfg, seed, spread)
    state = LearningState.start(net)
    rng = np.random.default_rng(seed)
    updates = []
    for sample in range(samples):
        x = rng.random((steps, cfg.n_in)) < 0.6
        label = sample % cfg.n_out
        state = state.new_sample(net)
        for x_t, shift in zip(x, step_schedule(lc, steps), strict=True):
            net0, state0 = net, state
            net, state = learning_step(net, state, x_t, label, shift)
            if shift is not None:
                updates.append(Update(net0, state0, x_t, label, shift, net, state))
    return updates


def float_model(net: QuantizedNetwork) -> SpikingRNN:
    """The float model of ``net``'s config holding the exact values of its integer weights."""
    model = SpikingRNN.from_config(net.config).double()
    dequantize_into(model, net)
    return model


def load_chip_state(rule: FPTT, update: Update, matrix: str, loss_scale: float) -> None:
    """Start the float rule's ``W_bar`` and previous gradient from the chip's, in float units."""
    cfg = update.net.config
    name = NAMES[matrix]
    mean = update.state.running_mean(update.net, matrix) * weight_scale(cfg, matrix)
    previous = update.state.previous.gradient(matrix) * gradient_scale(cfg, matrix, loss_scale)
    rule.running_mean[name] = torch.from_numpy(mean.astype(np.float64))
    rule.memory[name] = torch.from_numpy(previous.astype(np.float64))


def float_step_on_chip_gradient(update: Update, matrix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(W_new, W_bar_new)`` in weight LSBs of one float FPTT update of ``matrix`` from the chip's
    state, driven by the chip's own gradient ``G`` (in float units ``k_m G``)."""
    cfg = update.net.config
    model = float_model(update.net)
    params = dict(model.named_parameters())
    for name, p in params.items():
        p.requires_grad_(name == NAMES[matrix])
    weight = params[NAMES[matrix]]
    c = weight_scale(cfg, matrix)
    np.testing.assert_array_equal(weight.detach().numpy(), update.net.matrix(matrix) * c)
    lr, alpha = float_constants(cfg, matrix, 1.0)
    rule = FPTT(model, torch.optim.SGD([weight], lr=lr), alpha=alpha, form="slide", clip=0.0)
    load_chip_state(rule, update, matrix, 1.0)
    g = update.new_state.previous.gradient(matrix) * gradient_scale(cfg, matrix, 1.0)
    rule.update_step((weight * torch.from_numpy(g.astype(np.float64))).sum())
    return weight.detach().numpy() / c, rule.running_mean[NAMES[matrix]].numpy() / c


# -- the step on the chip's own gradient --------------------------------------------------------

BASE = HardwareConfig(
    n_in=3,
    n_rec=4,
    n_out=2,
    weight_bits=16,
    membrane_bits=24,
    frac_bits=8,
    threshold=256,
    reset="subtract",
    leak_shift=2,
    out_leak_shift=1,
    w_in_shift=1,
    w_rec_shift=0,
    w_out_shift=2,
    lanes=1,
    learning=LearningConfig(  # every field that enters the update set here, not left to defaults
        mode="fptt",
        feedback="symmetric",
        trace_bits=12,
        trace_frac_bits=4,
        signal_bits=24,
        signal_shift=4,
        psi_width_shift=8,
        psi_bits=6,
        target=512,
        error="target",
        rounding="nearest",
        supervised_steps=0,
        beta_ramp=False,
        update_period=2,
        lr_shift_in=11,
        lr_shift_rec=11,
        lr_shift_out=11,
        alpha_shift=4,
        wbar_bits=24,
        wbar_store="absolute",
        lfsr_seed=0xACE1,
    ),
)
SPREAD = (250, 120, 150)
SEED = 4


def _config(shifts: tuple[int, int, int], alpha_shift: int, store: str) -> HardwareConfig:
    s_in, s_rec, s_out = shifts
    lc = dataclasses.replace(
        BASE.learning,
        lr_shift_in=s_in,
        lr_shift_rec=s_rec,
        lr_shift_out=s_out,
        alpha_shift=alpha_shift,
        wbar_store=store,
    )
    return BASE.replace(learning=lc)


@pytest.mark.parametrize(
    "shifts, alpha_shift, store",
    [
        ((11, 11, 11), 1, "absolute"),
        ((11, 11, 11), 6, "absolute"),
        ((11, 11, 11), 12, "absolute"),  # alpha_shift at its limit s + 1: alpha = 1/2
        ((13, 10, 7), 5, "absolute"),  # per-matrix rates: per-matrix float lr and alpha
        ((13, 10, 7), 8, "difference"),
    ],
)
def test_chip_update_is_the_float_slide_step(
    shifts: tuple[int, int, int], alpha_shift: int, store: str
) -> None:
    """Every update of two samples (3 each, persistent ``W_bar`` and ``Gp``): the chip's
    ``(W, W_bar)`` against :class:`FPTT` (``form="slide"``, SGD at ``lr_m``, ``alpha_m``, no
    clipping) started from the chip's state and driven by the chip's gradient.  Both sides see the
    same ``G``, ``Gp``, ``W`` and ``W_bar`` exactly (powers of two in float64), so the only
    difference is the chip's rounding: ``|dW| < 1`` and ``|dWbar| < 1.5`` LSB, and ``W_bar`` lies
    within 1 LSB of the float running mean of the chip's own ``W_new``.  The test bites: the
    term ``G / (2 alpha)`` reaches well over 2 LSBs (so ``alpha`` off by 2 would break the
    ``W_bar`` bound), and the pull ``alpha (W - W_bar)`` and ``Gp`` are nonzero after the
    first update."""
    cfg = _config(shifts, alpha_shift, store)
    updates = chip_updates(cfg, seed=SEED, spread=SPREAD, samples=2, steps=6)
    assert len(updates) == 6
    largest = {"step": 0.0, "mean_term": 0.0, "gap": 0, "previous": 0}
    for update in updates:
        for m in MATRICES:
            alpha = 2.0 ** (cfg.learning.lr_shift(m) - alpha_shift)
            w, w_new = update.net.matrix(m), update.new_net.matrix(m)
            mean = update.state.running_mean(update.net, m)
            mean_new = update.new_state.running_mean(update.new_net, m)
            g = update.new_state.previous.gradient(m)
            assert np.abs(w_new).max() < cfg.w_max, "no saturation in this test"
            w_float, mean_float = float_step_on_chip_gradient(update, m)
            assert np.abs(w_new - w_float).max() < 1.0, m
            assert np.abs(mean_new - mean_float).max() < 1.5, m
            assert np.abs(mean_new - ((mean + w_new) / 2 - g / (2 * alpha))).max() < 1.0, m
            largest["step"] = max(largest["step"], float(np.abs(w_float - w).max()))
            largest["mean_term"] = max(largest["mean_term"], float(np.abs(g).max() / (2 * alpha)))
            largest["gap"] = max(largest["gap"], int(np.abs(w - mean).max()))
            previous = update.state.previous.gradient(m)
            largest["previous"] = max(largest["previous"], int(np.abs(previous).max()))
    assert largest["step"] > 8 and largest["mean_term"] > 8, largest
    assert largest["gap"] > 0 and largest["previous"] > 0, largest


def test_stochastic_rounding_is_unbiased() -> None:
    """The same update redone with 1000 consecutive blocks of the LFSR stream: the mean chip
    ``W_new`` and ``W_bar_new`` equal the float step to within 0.1 LSB per synapse.  A rounding
    error of ``W`` lies in ``(-1, 1)`` with standard deviation at most 1/2, and ``W_bar``'s is its
    own rounding plus half of ``W``'s (at most ``sqrt(1/4 + 1/16) < 0.56``), so over 1000 draws
    an unbiased rounding leaves means with standard deviations below 0.018: 0.1 is over 5 of
    those, while a rounding that floored would be off by the discarded fraction, here above
    0.3 LSB for some synapse."""
    cfg = _config((11, 11, 11), 6, "absolute")
    update = chip_updates(cfg, seed=SEED, spread=SPREAD, samples=2, steps=6)[-1]
    float_steps = {m: float_step_on_chip_gradient(update, m) for m in MATRICES}
    draws = 1000
    total_w = {m: np.zeros(update.net.matrix(m).shape) for m in MATRICES}
    total_mean = {m: np.zeros(update.net.matrix(m).shape) for m in MATRICES}
    lfsr = update.state.lfsr
    for _ in range(draws):
        net, state = update.redo(lfsr)
        lfsr = state.lfsr
        for m in MATRICES:
            total_w[m] += net.matrix(m)
            total_mean[m] += state.running_mean(net, m)
    fractions = []
    for m in MATRICES:
        w_float, mean_float = float_steps[m]
        assert np.abs(total_w[m] / draws - w_float).max() < 0.1, m
        assert np.abs(total_mean[m] / draws - mean_float).max() < 0.1, m
        fractions.append(np.abs(w_float - np.rint(w_float)).ravel())
    assert np.concatenate(fractions).max() > 0.3, "some steps must fall between the LSBs"


# -- the step on the float model's own MSE gradient ---------------------------------------------


class Triangle(torch.autograd.Function):
    """The chip's pseudo-derivative in float: Heaviside forward, ``max(0, 1 - |u| / width)``
    backward (``u = v - theta``), in the input's dtype so spikes stay float64."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, width: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.width = width
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * (1 - u.abs() / ctx.width).clamp(min=0), None


# No memory in the membrane or the readout (leak shifts 0): then float FPTT's one-step gradient
# from the detached state is e-prop's factorised gradient (xbar = x_t, zbar = z_{t-1},
# obar = z_t), so the float rule can compute its own.  signal_shift 0 and psi_bits =
# psi_width_shift leave one rounding in the chip's gradient: delta to the nearest integer.
# Rates that make lr_m equal for the three matrices, so one FPTT instance is the chip: with
# loss_scale 1, lr_in / lr_out = 2**(w_in_shift - 2 w_out_shift - signal_shift + frac_bits
# - s_in + s_out) = 2**(1 - 4 - 0 + 8 - 5) = 1, and likewise for W_rec with s_rec = s_out + 4.
MEMORYLESS = BASE.replace(
    leak_shift=0,
    out_leak_shift=0,
    learning=dataclasses.replace(
        BASE.learning,
        trace_bits=8,
        trace_frac_bits=2,
        signal_shift=0,
        psi_width_shift=8,
        psi_bits=8,
        update_period=1,
    ),
)


@pytest.mark.parametrize("s_out, alpha_shift", [(8, 2), (8, 9), (6, 4)])
def test_chip_update_is_float_fptt_on_its_mse_loss(s_out: int, alpha_shift: int) -> None:
    """One FPTT instance over the whole float model (SGD at the common ``lr``, ``alpha``, the
    triangle surrogate, ``target = "regression"``) takes its own MSE gradient on each chunk
    from the chip's state, as :meth:`FPTT.train_batch` does with ``fptt_period = 1``.  The
    MSE is averaged over the ``n_out = 2`` readouts, so ``loss_scale = 2 / n_out = 1``.

    The float forward pass equals the chip's (exact float64 sums of powers of two).  The float
    gradient is ``k_m G`` up to the rounding of ``delta`` (at most 1/2), so ``|G - g / k| <=
    2**(trace_frac_bits - 1)`` for ``W_in``/``W_rec`` (0 for ``W_out``), and the bounds widen
    by what that moves: ``eta`` times it for ``W``, half the ``W`` bound plus ``1 / (2 alpha)``
    times it for ``W_bar``."""
    lc = dataclasses.replace(
        MEMORYLESS.learning,
        lr_shift_in=s_out + 5,
        lr_shift_rec=s_out + 4,
        lr_shift_out=s_out,
        alpha_shift=alpha_shift,
    )
    cfg = MEMORYLESS.replace(learning=lc)
    constants = {float_constants(cfg, m, 1.0) for m in MATRICES}
    assert len(constants) == 1, "one lr and one alpha for all three matrices"
    ((lr, alpha),) = constants
    assert lr * alpha == 2.0**-alpha_shift
    grad_error = {"in": 2.0 ** (lc.trace_frac_bits - 1), "rec": 2.0 ** (lc.trace_frac_bits - 1)}
    lsb = cfg.lsb
    updates = chip_updates(cfg, seed=5, spread=SPREAD, samples=2, steps=5)
    assert len(updates) == 10
    moved = 0.0
    for update in updates:
        model = float_model(update.net)
        model.rec.lif.spike_grad = lambda u: Triangle.apply(u, 2.0**lc.psi_width_shift * lsb)
        params = dict(model.named_parameters())
        rule = FPTT(
            model,
            torch.optim.SGD(model.parameters(), lr=lr),
            alpha=alpha,
            form="slide",
            clip=0.0,
            target="regression",
        )
        for m in MATRICES:
            load_chip_state(rule, update, m, 1.0)
        neurons = update.state.neurons
        state = tuple(
            torch.from_numpy(a.astype(np.float64))
            for a in (neurons.v * lsb, neurons.z, neurons.o * lsb)
        )
        x_t = torch.from_numpy(update.x.astype(np.float64))[None]
        logits, new_state = model.step(x_t, state)
        new = update.new_state.neurons
        np.testing.assert_array_equal(new_state[1].detach().numpy(), new.z.astype(np.float64))
        np.testing.assert_array_equal(logits.detach().numpy(), new.o * lsb)
        y = torch.zeros(1, cfg.n_out, dtype=torch.float64)
        y[0, update.label] = lc.target * lsb
        rule.update_step(step_loss(logits, y, "regression"))
        for m in MATRICES:
            name, c, k = NAMES[m], weight_scale(cfg, m), gradient_scale(cfg, m, 1.0)
            eta, chip_alpha = 2.0 ** -lc.lr_shift(m), 2.0 ** (lc.lr_shift(m) - alpha_shift)
            g_chip = update.new_state.previous.gradient(m)
            g_float = rule.memory[name].numpy() / k  # the slide form keeps this chunk's gradient
            assert np.abs(g_chip - g_float).max() <= grad_error.get(m, 0.0), m
            w_bound = 1.0 + eta * grad_error.get(m, 0.0)
            mean_bound = 1.0 + w_bound / 2 + grad_error.get(m, 0.0) / (2 * chip_alpha)
            w_float = params[name].detach().numpy() / c
            mean_float = rule.running_mean[name].numpy() / c
            new_net = update.new_net
            assert np.abs(new_net.matrix(m) - w_float).max() < w_bound, m
            assert np.abs(update.new_state.running_mean(new_net, m) - mean_float).max() < (
                mean_bound
            ), m
            moved = max(moved, float(np.abs(w_float - update.net.matrix(m)).max()))
    assert moved > 8, "the updates must dwarf the rounding for the test to bite"
