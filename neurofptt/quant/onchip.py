"""On-chip learning in the golden model: fixed-point e-prop and FPTT, bit for bit.

The learning datapath of the core matches this module exactly, so every operation is one the
hardware can do cheaply: integer adds, constant shifts, a few small multipliers, saturation
(never wrap-around), no division but the softmax error's one per readout (done bit-serially),
and a fixed processing order with every random bit accounted for.  All integers below are in
the units of :mod:`neurofptt.quant.config`; ``sat_b`` clamps to the signed ``b``-bit range,
``usat_b`` to ``[0, 2**b - 1]``, ``>>`` floors.

Per step ``t`` (``t = 1..T`` within a sample), after the inference step of
:func:`~neurofptt.quant.golden.golden_step` has produced ``v_j``, ``z_j(t)`` and ``o_k``:

1. Presynaptic traces (per neuron, unsigned ``trace_bits``; a spike adds
   ``1 << trace_frac_bits``, i.e. the trace is in units of ``2**-trace_frac_bits`` spikes)::

       xbar_i = usat( xbar_i - (xbar_i >> leak_shift)     + x_i(t)   << trace_frac_bits )
       zbar_i = usat( zbar_i - (zbar_i >> leak_shift)     + z_i(t-1) << trace_frac_bits )
       obar_j = usat( obar_j - (obar_j >> out_leak_shift) + z_j(t)   << trace_frac_bits )

   ``xbar``/``zbar`` filter the presynaptic input of ``W_in``/``W_rec`` with the membrane leak
   (the LIF eligibility ``eps^v``), ``obar`` filters the input of ``W_out`` with the readout
   leak (the exact readout gradient).

2. If an update is due (:func:`step_schedule`): the error, learning signal and pseudo-derivative,
   once per neuron, all from the values *before* any weight changes::

       d_k     = o_k - target * [k == label]                         (membrane_bits + 1, exact)
       e_k     = d_k >> b_t                                           error = "target"
       e_k     = (d_k if (d_k < 0) == (k == label) else 0) >> b_t     error = "hinge"
       e_k     = softmax_error(o, label, target, softmax_shift)_k >> b_t   error = "softmax"
       L_j     = sat_signal( (sum_k B_jk e_k) >> signal_shift )       B = W_out^T or random
       psi_j   = max(0, 2**w - |v_j - threshold|) >> (w - psi_bits)   w = psi_width_shift
       delta_j = sat_signal( (L_j psi_j) >> psi_bits )

   The hinge error is ``min(d_k, 0)`` for the label (pushed up only while below ``target``) and
   ``max(d_k, 0)`` for the others (pushed down only while above 0): the same subtraction, then
   its sign bit compared with the label match selects ``d_k`` or 0.

   The softmax error is ``target`` times the gradient of the softmax cross-entropy, ``p_k -
   [k == label]``, for a base-2 softmax of the readouts (:func:`softmax_error`): unlike the
   hinge it keeps pushing every class by how likely the network finds it, which over a full
   run lets e-prop learn the digits from scratch to the float rule's accuracy.

   The three shifts ``>> b_t``, ``>> signal_shift`` and ``>> psi_bits`` floor with
   ``rounding = "floor"`` and round to nearest (ties up, ``(x + 2**(s-1)) >> s``) with
   ``"nearest"``.  ``b_t`` is applied clamped to ``membrane_bits``, the largest value the
   ``STEP`` field carries (with floor the clamp changes nothing: the error is its sign by then).

   ``psi`` is a quantised triangle with peak ``2**psi_bits`` at the threshold and half-width
   ``2**w`` LSBs (Bellec et al.'s ``max(0, 1 - |v - theta| / width)``).  A triangle rather than a
   boxcar: it costs one subtractor, an absolute value and a shift per neuron (the per-neuron
   multiplier ``L psi`` runs once per neuron, not per synapse), and it weights credit by
   closeness to the threshold as the float surrogates do, where a boxcar gives every neuron in
   the window the same credit and none outside it.

3. The factorised gradient, per synapse, formed when the synapse is visited (nothing per synapse
   is stored for e-prop)::

       G_in[j,i] = delta_j xbar_i     G_rec[j,i] = delta_j zbar_i     G_out[k,j] = e_k obar_j

   e-prop:  ``W <- sat_w( W + sround(-G, s) )`` with ``s = lr_shift_<matrix>`` and ``sround`` the
   LFSR-driven stochastic rounding of :mod:`neurofptt.quant.lfsr`, i.e. ``W -= eta G`` with
   ``eta = 2**-s`` weight LSBs per gradient unit.

   FPTT (slide form, Kag & Saligrama; ``a = eta * alpha = 2**-A``, ``A = alpha_shift``): with
   ``Gp`` the previous update's gradient, recomputed from the stored per-neuron factors of that
   update (``delta``, ``e`` and the three traces), and ``Wbar`` the running mean::

       W_new    = sat_w( W + sround( -2 G + Gp - ((W - Wbar) << (s + 1 - A)), s + 1 ) )
       Wbar_new = sround( ((Wbar + W_new) << s) - (G << A), s + 1 )

   which is ``W - eta (g_t + alpha (W - Wbar) - g_{t-1} / 2)`` and
   ``Wbar/2 + W_new/2 - g_t / (2 alpha)`` in weight LSBs with ``g = G``.  ``Wbar`` is stored
   saturated to ``wbar_bits``: as itself (``wbar_store = "absolute"``) or as ``W_new - Wbar_new``
   (``"difference"``, which can be narrower than the weights; ``Wbar`` is then read back as
   ``W - D``).  The previous factors are overwritten with this update's.  ``Wbar`` starts at
   ``W`` and ``Gp`` at 0 when learning starts; both persist across samples (only the neuron
   state and the traces are reset per sample).

Order and randomness.  Lane ``l`` of ``lanes`` owns the postsynaptic neurons ``j = l mod lanes``
(the inference layout of ``docs/hardware.md``).  An update visits the weight memories in three
sweeps, one word (one synapse per lane) per cycle, in address order
``pre * rows(n_post) + post // lanes``: first ``W_out`` (``pre = j``, ``post = k``; this sweep
also accumulates ``L_j`` from the words it reads, so symmetric feedback sees the old
``W_out``), then ``W_in``, then ``W_rec``.  Every lane draws one 16-bit value per word slot in
e-prop mode and two in FPTT mode (first for ``W``, second for ``Wbar``), whether or not its lane
holds a real synapse in that word (padding lanes past ``n_rec``/``n_out`` draw too).  With
learning on, ``lanes`` therefore changes the random stream and thus the learned weights; with
learning off it changes nothing.

Terminal prediction.  With ``beta_ramp`` the error at step ``t`` is scaled by
``beta_t = 2**-b_t``, the largest power of two not above ``t / T`` (``b_t`` the smallest ``b``
with ``t << b >= T``, a priority encoder on the step counter).  The auxiliary divergence term of
float FPTT needs a stored class distribution per step; the hardware drops it (equivalently,
``Q`` is the network's own prediction), so at non-final steps it learns the label with weight
``beta_t`` and nothing else.

What the factorisation drops.  Float e-prop (:mod:`neurofptt.learning.eprop`) filters each
synapse's eligibility ``psi_j zbar_i`` with the readout leak ``kappa`` before multiplying by
``L_j``; that filter is per synapse and is dropped here (as in ReckOn), so the rules coincide when
the readout has no memory (``out_leak_shift = 0``).  With ``reset = "zero"`` the float trace
decays per synapse with ``beta (1 - z_j)``; the hardware keeps the presynaptic trace only.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.quant.config import LEARNING_MODES, LFSR_BITS, HardwareConfig, LearningConfig
from neurofptt.quant.fixedpoint import leak, saturate
from neurofptt.quant.golden import (
    GoldenState,
    check_spike_input,
    golden_run,
    golden_step,
    predict,
)
from neurofptt.quant.lfsr import lane_seeds, lfsr_draw, stochastic_round
from neurofptt.quant.network import QuantizedNetwork

if TYPE_CHECKING:
    from neurofptt.tasks.base import TaskData

MATRICES = ("in", "rec", "out")
SWEEP_ORDER = ("out", "in", "rec")  # the order of the update sweeps (and of the random draws)


def _rows(n: int, lanes: int) -> int:
    return -(-n // lanes)


def _synapses(cfg: HardwareConfig) -> int:
    return cfg.n_rec * (cfg.n_in + cfg.n_rec + cfg.n_out)


def _usat(x: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(x, 0, (1 << bits) - 1)


@dataclass(frozen=True)
class Factors:
    """The per-neuron factors of one update; ``gradient`` forms any synapse's ``G`` from them."""

    delta: np.ndarray  # (n_rec,) L_j psi_j, signal_bits
    error: np.ndarray  # (n_out,) e_k, membrane_bits + 1
    x_trace: np.ndarray  # (n_in,)
    z_trace: np.ndarray  # (n_rec,)
    out_trace: np.ndarray  # (n_rec,)

    @classmethod
    def zeros(cls, cfg: HardwareConfig) -> Factors:
        z = np.zeros
        return cls(
            z(cfg.n_rec, np.int64),
            z(cfg.n_out, np.int64),
            z(cfg.n_in, np.int64),
            z(cfg.n_rec, np.int64),
            z(cfg.n_rec, np.int64),
        )

    def gradient(self, matrix: str) -> np.ndarray:
        """``G`` of ``"in"``, ``"rec"`` or ``"out"`` in the ``(n_post, n_pre)`` orientation."""
        post, pre = {
            "in": (self.delta, self.x_trace),
            "rec": (self.delta, self.z_trace),
            "out": (self.error, self.out_trace),
        }[matrix]
        return np.outer(post, pre)


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


def learning_config(cfg: HardwareConfig) -> LearningConfig:
    """``cfg.learning``, or a :class:`ConfigError` saying how to enable learning."""
    if cfg.learning is None:
        raise ConfigError(
            "this hardware config has no learning section; add a [hardware.learning] table "
            "(or pass HardwareConfig(learning=LearningConfig(...))) to learn on chip"
        )
    return cfg.learning


def beta_shift(t: int, steps: int) -> int:
    """``b_t``: the smallest ``b`` with ``t << b >= steps``, so ``2**-b_t <= t / steps`` is the
    largest power of two not above it (``t`` counts from 1)."""
    b = 0
    while (t << b) < steps:
        b += 1
    return b


def step_schedule(lc: LearningConfig, steps: int) -> list[int | None]:
    """Per step ``t = 1..steps``: ``None`` (no update) or the error shift ``b_t`` of the update.

    A step is supervised if it is one of the last ``supervised_steps`` (all if 0); an update
    happens on a supervised step that is a multiple of ``update_period`` or the last step.
    """
    first = 1 if lc.supervised_steps == 0 else max(1, steps - lc.supervised_steps + 1)
    out: list[int | None] = []
    for t in range(1, steps + 1):
        due = t >= first and (t % lc.update_period == 0 or t == steps)
        out.append((beta_shift(t, steps) if lc.beta_ramp else 0) if due else None)
    return out


#: Fraction bits of the base-2 softmax's unnormalised probabilities (the largest is ``2**12``).
SOFTMAX_BITS = 12


def softmax_error(o: np.ndarray, label: int, scale: int, shift: int) -> np.ndarray:
    """``scale * (p_k - [k == label])`` for a base-2 softmax ``p`` of the readouts ``o``,
    in the hardware's integer arithmetic (before the error shift ``b_t``).

    With ``d_k = max(o) - o_k = (i_k << shift) + f_k`` (``0 <= f_k < 2**shift``), the
    unnormalised probability is ``q_k = (2**B - ((f_k << B) >> (shift + 1))) >> i_k`` with
    ``B = SOFTMAX_BITS`` (0 once ``i_k >= B``): ``2**(-d_k / 2**shift)`` in ``B`` fraction bits,
    the fractional power taken as the chord ``2**-f ~ 1 - f/2`` (Mitchell), at most 6 % high.  So
    ``2**shift`` membrane LSBs halve a probability (a natural-log temperature of
    ``2**shift / ln 2``).  Then ``e_k = (q_k * scale) // sum(q) - scale * [k == label]``: one
    division per readout, which the core does bit-serially.  The largest readout has
    ``q = 2**B``, so the sum is at least that and every quotient is at most ``scale``.
    """
    d = o.max() - o
    whole, frac = d >> shift, d & ((1 << shift) - 1)
    mantissa = (1 << SOFTMAX_BITS) - ((frac << SOFTMAX_BITS) >> (shift + 1))
    q = np.where(whole >= SOFTMAX_BITS, 0, mantissa >> np.minimum(whole, SOFTMAX_BITS))
    error = (q * scale) // q.sum()
    error[label] -= scale
    return error


def quotient_bits(target: int) -> int:
    """Bits of the softmax error's quotient ``q_k * target // sum(q)``, at most ``target``."""
    return max(1, target.bit_length())


def softmax_cycles(cfg: HardwareConfig) -> int:
    """Cycles the softmax error adds to an update in the core: ``n_out + 1`` to sum the
    ``q_k``, then per readout ``Q + 3`` (read, load, ``Q = quotient_bits(target)`` division
    steps, write); 0 for the other errors."""
    lc = learning_config(cfg)
    if lc.error != "softmax":
        return 0
    return cfg.n_out + 1 + cfg.n_out * (quotient_bits(lc.target) + 3)


def _shift_nearest(x: np.ndarray, shift: int) -> np.ndarray:
    """``x / 2**shift`` rounded to nearest, ties up: ``(x + 2**(shift-1)) >> shift`` (the RTL
    forms the same value as ``(((x << 1) >> shift) + 1) >> 1``, which needs no case for
    ``shift = 0``)."""
    return (x + ((1 << shift) >> 1)) >> shift


def _factors(
    net: QuantizedNetwork, state: LearningState, neurons: GoldenState, label: int, shift: int
) -> Factors:
    """Error, learning signal, pseudo-derivative and ``delta`` of one update (step 2)."""
    cfg = net.config
    lc = learning_config(cfg)
    o, v = neurons.o[0], neurons.v[0]
    target = np.zeros(cfg.n_out, np.int64)
    target[label] = lc.target
    error = o - target
    if lc.error == "hinge":
        is_label = np.arange(cfg.n_out) == label
        error = np.where((error < 0) == is_label, error, 0)
    elif lc.error == "softmax":
        error = softmax_error(o, label, lc.target, lc.softmax_shift)
    shift_right = _shift_nearest if lc.rounding == "nearest" else np.right_shift
    error = shift_right(error, min(shift, cfg.membrane_bits))
    feedback = net.w_out.T if state.feedback is None else state.feedback
    signal = saturate(shift_right(feedback @ error, lc.signal_shift), lc.signal_bits)
    w = lc.psi_width_shift
    psi = np.maximum(0, (1 << w) - np.abs(v - cfg.threshold)) >> (w - lc.psi_bits)
    delta = saturate(shift_right(signal * psi, lc.psi_bits), lc.signal_bits)
    return Factors(delta, error, state.x_trace, state.z_trace, state.out_trace)


def _draws(
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
    slots = {m: shapes[m][1] * _rows(shapes[m][0], lanes) for m in SWEEP_ORDER}
    values, lfsr = lfsr_draw(lfsr, per_slot * sum(slots.values()))
    draws, base = {}, 0
    for m in SWEEP_ORDER:
        n_post, n_pre = shapes[m]
        post = np.arange(n_post)[:, None]
        slot = base + np.arange(n_pre)[None, :] * _rows(n_post, lanes) + post // lanes
        draws[m] = [values[post % lanes, per_slot * slot + u] for u in range(per_slot)]
        base += slots[m]
    return draws, lfsr


def learning_step(
    net: QuantizedNetwork,
    state: LearningState,
    x_t: np.ndarray,
    label: int,
    shift: int | None,
) -> tuple[QuantizedNetwork, LearningState]:
    """One step of one sample: inference, traces and, if ``shift`` is not ``None``, an update
    with error shift ``b_t = shift`` toward class ``label`` (see the module docstring).

    ``x_t`` is the ``(n_in,)`` input spike vector; ``shift`` comes from :func:`step_schedule`.
    Returns the (possibly updated) network and the new state; the arguments are not modified.
    """
    cfg = net.config
    lc = learning_config(cfg)
    x = np.asarray(x_t).astype(np.int64).reshape(1, cfg.n_in)
    z_prev = state.neurons.z[0].astype(np.int64)
    neurons = golden_step(net, state.neurons, x)
    one = 1 << lc.trace_frac_bits
    state = dataclasses.replace(
        state,
        neurons=neurons,
        x_trace=_usat(leak(state.x_trace, cfg.leak_shift) + x[0] * one, lc.trace_bits),
        z_trace=_usat(leak(state.z_trace, cfg.leak_shift) + z_prev * one, lc.trace_bits),
        out_trace=_usat(
            leak(state.out_trace, cfg.out_leak_shift) + neurons.z[0].astype(np.int64) * one,
            lc.trace_bits,
        ),
    )
    if shift is None:
        return net, state
    if not 0 <= label < cfg.n_out:
        raise ShapeError(f"label {label} is not a readout index in [0, {cfg.n_out})")
    now = _factors(net, state, neurons, label, shift)
    fptt = lc.mode == "fptt"
    draws, lfsr = _draws(cfg, state.lfsr, 2 if fptt else 1)
    weights, wbar = {}, {}
    for m in MATRICES:
        w, g, s = net.matrix(m), now.gradient(m), lc.lr_shift(m)
        r = draws[m]
        if not fptt:
            weights[m] = saturate(w + stochastic_round(-g, s, r[0]), cfg.weight_bits)
            continue
        mean = state.running_mean(net, m)
        pull = (w - mean) << (s + 1 - lc.alpha_shift)
        step = stochastic_round(-2 * g + state.previous.gradient(m) - pull, s + 1, r[0])
        w_new = saturate(w + step, cfg.weight_bits)
        mean_new = stochastic_round(((mean + w_new) << s) - (g << lc.alpha_shift), s + 1, r[1])
        stored = mean_new if lc.wbar_store == "absolute" else w_new - mean_new
        wbar[m] = saturate(stored, lc.wbar_bits)
        weights[m] = w_new
    net = QuantizedNetwork(cfg, weights["in"], weights["rec"], weights["out"])
    state = dataclasses.replace(
        state,
        lfsr=lfsr,
        wbar=wbar if fptt else state.wbar,
        previous=now,
        updates=state.updates + 1,
    )
    return net, state


def run_sample(
    net: QuantizedNetwork,
    state: LearningState,
    x: np.ndarray,
    label: int,
    *,
    learn: bool = True,
    shift_offset: int = 0,
) -> tuple[QuantizedNetwork, LearningState, np.ndarray]:
    """Run one ``(T, n_in)`` spike sequence from the reset neuron state, learning toward
    ``label`` on the scheduled steps if ``learn``; returns the network, the state and the
    ``(T, n_out)`` readout.  ``shift_offset`` is added to every update's error shift ``b_t``
    (the host's learning-rate schedule: each unit halves the rate of all three matrices)."""
    x = check_spike_input(np.asarray(x)[None], net.config.n_in)[0]
    schedule = step_schedule(learning_config(net.config), len(x))
    state = state.new_sample(net)
    readout = []
    for x_t, shift in zip(x, schedule, strict=True):
        due = learn and shift is not None
        net, state = learning_step(net, state, x_t, label, shift + shift_offset if due else None)
        readout.append(state.neurons.o[0])
    return net, state, np.stack(readout)


def random_network(
    cfg: HardwareConfig, seed: int, spread: int | tuple[int, int, int]
) -> QuantizedNetwork:
    """A network with weights drawn uniformly from ``[-spread, spread]`` (clamped to the weight
    format), the starting point of learning from scratch on chip.  ``spread`` is one value for
    all three matrices or one per matrix, ``(in, rec, out)`` (see :func:`fan_in_spreads`)."""
    spreads = (spread,) * 3 if isinstance(spread, int) else spread
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, int], spread: int) -> np.ndarray:
        return saturate(rng.integers(-spread, spread + 1, shape), cfg.weight_bits)

    shapes = ((cfg.n_rec, cfg.n_in), (cfg.n_rec, cfg.n_rec), (cfg.n_out, cfg.n_rec))
    weights = (draw(shape, s) for shape, s in zip(shapes, spreads, strict=True))
    return QuantizedNetwork(cfg, *weights)


def fan_in_spreads(cfg: HardwareConfig, gain: float = 2.0) -> tuple[int, int, int]:
    """Per-matrix spreads ``(in, rec, out)`` for :func:`random_network` that put every weight in
    ``+-gain * threshold / sqrt(fan_in)`` membrane LSBs (at least 1 weight LSB, at most the
    format's range).

    The float models start from the same scale in threshold units (torch's ``1/sqrt(fan_in)``),
    so a neuron's input current has a spread of about the threshold whatever the sizes and the
    per-matrix shifts.  A spread fixed in weight LSBs does not transfer: on the default digits
    network (``n_in = 32``, shifts 0) ``+-1/8`` of the weight range left the network silent
    (spike rate 0.0002), so nothing downstream of the input weights could learn, while gain 2
    fires at 0.14-0.15 on the test digits and e-prop learns (``docs/hardware.md`` section 9).
    """
    pairs = ((cfg.n_in, cfg.w_in_shift), (cfg.n_rec, cfg.w_rec_shift), (cfg.n_rec, cfg.w_out_shift))
    w_in, w_rec, w_out = (
        int(np.clip(round(gain * cfg.threshold / np.sqrt(n) / (1 << shift)), 1, cfg.w_max))
        for n, shift in pairs
    )
    return w_in, w_rec, w_out


@dataclass
class OnchipHistory:
    """Result of :func:`train_onchip`: the learned network, the learning state and one record
    per epoch (``train_accuracy`` is scored online, while the sample is being learned, so it
    includes the effect of the sample's own updates on its last steps; ``test_accuracy`` uses the
    weights at the end of the epoch with learning off)."""

    net: QuantizedNetwork
    state: LearningState
    epochs: list[dict[str, float]]


def halving_period(epochs: int, halvings: int) -> int:
    """The ``halve_every`` of :func:`train_onchip` that halves the rate of a run of ``epochs``
    at most ``halvings`` times, evenly: ``ceil(epochs / (halvings + 1))`` (0, a constant rate,
    for ``halvings = 0``).

    The schedule scales with the run as the float reference's cosine does: 30 epochs halve
    every 8 (the rate ends at an eighth), 3 epochs every epoch.  A fixed period would leave a
    short run at its first rate, where learning one sample at a time is at its noisiest.
    """
    if epochs < 1 or halvings < 0:
        raise ConfigError(
            f"a halving schedule needs epochs >= 1 and halvings >= 0, got {epochs}, {halvings}"
        )
    return -(-epochs // (halvings + 1)) if halvings else 0


def train_onchip(
    net: QuantizedNetwork,
    task: TaskData,
    mode: str | None = None,
    epochs: int = 5,
    *,
    seed: int = 0,
    shift_offset: int = 0,
    halve_every: int = 0,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> OnchipHistory:
    """Learn ``task`` on chip: one sample at a time (batch 1), in a fresh random order per epoch.

    The host sets the learning rate of a run without changing the core, through the error shift
    ``b_t`` it sends with each update: ``shift_offset`` raises it throughout (each unit halves
    the rate of all three matrices; adapting a trained network wants smaller steps than learning
    from scratch), and ``halve_every`` (0: never) raises it by one more every that many epochs.
    The schedule pays off with ``rounding = "nearest"``; with ``"floor"`` the shifts' downward
    bias grows as the errors shrink (``docs/hardware.md`` section 9), and lowering the rate with
    it warns.

    ``mode`` (``"eprop"``/``"fptt"``) overrides ``net.config.learning.mode``; a config without a
    learning section gets the default :class:`LearningConfig` of that mode.  ``progress`` is
    called with each epoch's record.
    """
    cfg = net.config
    if mode is not None:
        base = cfg.learning or LearningConfig()
        cfg = cfg.replace(learning=dataclasses.replace(base, mode=mode))
    learning_config(cfg)
    if task.target != "label":
        raise ConfigError(
            f"on-chip learning supports tasks with one label per sequence; {task.name!r} has "
            f"target {task.target!r}"
        )
    if (task.train.n_in, task.n_out) != (cfg.n_in, cfg.n_out):
        raise ShapeError(
            f"task {task.name!r} has {task.train.n_in} inputs and {task.n_out} classes but the "
            f"hardware has n_in={cfg.n_in}, n_out={cfg.n_out}"
        )
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    if halve_every < 0:
        raise ConfigError(f"halve_every must be >= 0 (0: a constant rate), got {halve_every}")
    if shift_offset < 0:
        raise ConfigError(f"shift_offset must be >= 0 (it lowers the rate), got {shift_offset}")
    lowered = shift_offset > 0 or 0 < halve_every < epochs
    if cfg.learning.rounding == "floor" and lowered:
        warnings.warn(
            "the rate is lowered through the error shift while hardware.learning.rounding = "
            "'floor': the flooring shifts then bias every factor downward and learning drifts; "
            "set rounding = 'nearest' (or train.onchip_halvings = 0 for a constant rate)",
            stacklevel=2,
        )
    net = QuantizedNetwork(cfg, net.w_in, net.w_rec, net.w_out)
    x, y = task.train.numpy_spikes(), task.train.y.numpy()
    x_test, y_test = task.test.numpy_spikes(), task.test.y.numpy()
    rng = np.random.default_rng(seed)
    state = LearningState.start(net)
    records = []
    for epoch in range(1, epochs + 1):
        offset = shift_offset + ((epoch - 1) // halve_every if halve_every else 0)
        correct = 0
        for n in rng.permutation(len(x)):
            net, state, readout = run_sample(net, state, x[n], int(y[n]), shift_offset=offset)
            correct += int(predict(readout[None])[0] == y[n])
        record = {
            "epoch": epoch,
            "error_shift_offset": offset,
            "train_accuracy": correct / len(x),
            "test_accuracy": float(np.mean(golden_run(net, x_test).predictions == y_test)),
            "updates": state.updates,
        }
        records.append(record)
        if progress is not None:
            progress(record)
    return OnchipHistory(net=net, state=state, epochs=records)


def learning_memory_bits(cfg: HardwareConfig, mode: str | None = None) -> dict[str, int]:
    """Bits of every learning memory, by name, for ``mode`` (default: ``cfg.learning.mode``).

    Counted: the three trace arrays, the per-update buffers of ``delta`` and ``e`` (the weight
    sweeps need all of them), one LFSR per lane, the random feedback matrix when used, and for
    FPTT the running mean (per synapse) and the previous update's factors (per neuron).
    """
    lc = learning_config(cfg)
    mode = mode or lc.mode
    if mode not in LEARNING_MODES:
        raise ConfigError(f"learning mode {mode!r} is not one of {LEARNING_MODES}")
    bits = {
        "traces": (cfg.n_in + 2 * cfg.n_rec) * lc.trace_bits,
        "update buffers": cfg.n_rec * lc.signal_bits + cfg.n_out * (cfg.membrane_bits + 1),
        "lfsr": cfg.lanes * LFSR_BITS,
    }
    if lc.feedback == "random":
        bits["feedback"] = cfg.n_rec * cfg.n_out * cfg.weight_bits
    if mode == "fptt":
        bits["running mean"] = _synapses(cfg) * lc.wbar_bits
        bits["previous factors"] = bits["traces"] + bits["update buffers"]
    return bits


def inference_memory_bits(cfg: HardwareConfig) -> int:
    """Bits of an inference-only core's architectural state: the three weight matrices,
    membranes, last spikes and readouts (not the pipeline's partial sums)."""
    return (
        _synapses(cfg) * cfg.weight_bits
        + cfg.n_rec * (cfg.membrane_bits + 1)
        + cfg.n_out * cfg.membrane_bits
    )


def learning_memory_overhead(cfg: HardwareConfig, mode: str | None = None) -> float:
    """Learning-state bits over inference-only bits (ReckOn reports 0.8 % for its e-prop)."""
    return sum(learning_memory_bits(cfg, mode).values()) / inference_memory_bits(cfg)


def weight_words(cfg: HardwareConfig, lanes: int | None = None) -> int:
    """Words (``lanes`` synapses each) of the three weight memories: ``n_rec * Ro +
    (n_in + n_rec) * R`` with ``R = ceil(n_rec / P)``, ``Ro = ceil(n_out / P)``, ``P = lanes``;
    what an update sweeps, a dump sends and a load takes."""
    p = cfg.lanes if lanes is None else lanes
    return cfg.n_rec * _rows(cfg.n_out, p) + (cfg.n_in + cfg.n_rec) * _rows(cfg.n_rec, p)


def learning_cycles_per_update(cfg: HardwareConfig, lanes: int | None = None) -> int:
    """Cycles of one weight update: ``n_rec * Ro + (n_in + n_rec) * R + 3`` for e-prop and
    ``+ 4`` for FPTT, with ``R = ceil(n_rec / P)``, ``Ro = ceil(n_out / P)``, ``P = lanes``.

    One fully pipelined read-modify-write of one weight word (``P`` synapses) per cycle, with
    the factors, traces and (FPTT) running-mean word read alongside; the ``W_out`` sweep also
    accumulates the learning signals.  The constant is the RTL's pipeline
    (``docs/hardware.md`` section 9): two idle cycles between the ``W_out`` and ``W_in`` sweeps,
    since ``delta_j`` is formed in stage 3, and the stages after stage 1 that the last word
    still passes, one for e-prop (the weight) and two for FPTT (the weight, then ``W_bar``).
    The softmax error adds its passes before the sweep (:func:`softmax_cycles`).
    :func:`neurofptt.hdl.cycles_per_update` adds the last word's stage 1.
    """
    pipeline = 4 if learning_config(cfg).mode == "fptt" else 3
    return weight_words(cfg, lanes) + pipeline + softmax_cycles(cfg)
