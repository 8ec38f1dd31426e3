"""The hardware configuration: the single source of truth for every number format.

The quantizer, the golden model, the Amaranth generator and the cocotb testbenches all read the
same :class:`HardwareConfig`, so a format can never be written down twice.

Units.  The membrane potential ``v`` of a recurrent neuron and the value ``o`` of a readout neuron
are signed ``membrane_bits``-bit integers whose least significant bit is worth ``2**-frac_bits``
(a Q(membrane_bits - frac_bits).frac_bits number).  A weight is a signed ``weight_bits``-bit integer
``w``; it adds ``w << shift`` membrane LSBs, where ``shift`` is the per-matrix power-of-two scale
(``w_in_shift``, ``w_rec_shift``, ``w_out_shift``).  The threshold is given in membrane LSBs.

Lanes.  ``lanes`` is the only field that changes no arithmetic: it is how many postsynaptic
neurons the generated core updates per clock cycle (area against cycles per step).

Leak.  A leak is a shift, not a multiplier: ``v - (v >> leak_shift)`` with an arithmetic (flooring)
shift, i.e. a decay factor ``beta = 1 - 2**-leak_shift``.  A shift costs no DSP block, and the
float model trains with exactly that ``beta``.

Learning.  ``learning`` is ``None`` for an inference-only core (the default; such a config
serialises exactly as before the field existed).  Otherwise it is a :class:`LearningConfig`, the
formats and constants of on-chip e-prop or FPTT (:mod:`neurofptt.onchip`), read from a
``[hardware.learning]`` TOML table.  Every constant there is a shift or a small integer, because
the learning datapath has no divider and few multipliers.

Defaults.  The dataclass defaults are the demo's settings (the flow's default core and the
learning constants it uses), so a setting has one default: a config file, the flow and a
``HardwareConfig()`` built in code all start from the same values.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from neurofptt.errors import ConfigError
from neurofptt.io import check_field_types, from_table

RESET_RULES = ("subtract", "zero")
LEARNING_MODES = ("eprop", "fptt")
FEEDBACKS = ("symmetric", "random")
WBAR_STORES = ("absolute", "difference")
LEARNING_ERRORS = ("target", "hinge", "softmax")
ROUNDINGS = ("floor", "nearest")
LFSR_BITS = 16  # width of the learning LFSRs (neurofptt.quant.lfsr); seeds are nonzero values of it

# Inclusive limits checked on construction.  They keep the generated hardware a sane size and
# every intermediate sum inside the golden model's 64-bit integers: at most 3 * 4096 terms of
# 2**(15 + 31) plus the membrane terms need 61 bits (see ``acc_bits``; tested at the extremes).
#: the allowed range of ``lanes`` (parallel postsynaptic neurons per clock cycle)
LANES_LIMIT = (1, 64)

_LIMITS = {
    "n_in": (1, 4096),
    "n_rec": (1, 4096),
    "n_out": (1, 1024),
    "weight_bits": (2, 16),
    "membrane_bits": (4, 32),
    "lanes": LANES_LIMIT,
}


# Inclusive limits of the learning fields that do not depend on the inference formats.  With the
# inference limits they keep every product and shifted sum of the update below 2**62 in the
# golden model's int64 arithmetic (the largest: a 33-bit error times a 16-bit trace << 12).
LEARNING_LIMITS = {
    "feedback_seed": (0, 2**32 - 1),
    "trace_bits": (2, 16),
    "signal_bits": (2, 24),
    "signal_shift": (0, 40),
    "psi_bits": (0, 8),
    "supervised_steps": (0, 1 << 20),
    "update_period": (1, 1 << 20),
    "lr_shift_in": (0, 24),
    "lr_shift_rec": (0, 24),
    "lr_shift_out": (0, 24),
    "alpha_shift": (1, 12),
    "softmax_shift": (0, 16),
    "wbar_bits": (2, 24),
    "lfsr_seed": (1, (1 << LFSR_BITS) - 1),
}


@dataclass(frozen=True)
class LearningConfig:
    """Formats and constants of on-chip learning (see :mod:`neurofptt.onchip` for the
    equations each field enters).

    ``mode``: ``"eprop"`` or ``"fptt"`` (slide form).  ``feedback``: ``B = W_out^T``
    (``"symmetric"``) or a fixed random matrix in weight format drawn from ``feedback_seed``.
    Traces are unsigned ``trace_bits``-bit values where a spike adds ``1 << trace_frac_bits``.
    The learning signal and the per-neuron factor ``L psi`` are signed ``signal_bits`` wide, after
    ``signal_shift``.  The pseudo-derivative is a triangle of half-width ``2**psi_width_shift``
    membrane LSBs around the threshold with peak ``2**psi_bits``.  The label readout's target is
    ``target`` membrane LSBs (the others 0) on the last ``supervised_steps`` steps (0: every
    step), scaled by ``beta_t = 2**-b_t`` when ``beta_ramp``.  ``error`` picks how the readout
    error is formed from ``d_k = o_k - target * [k == label]``: ``"target"`` regresses every
    readout onto that target (``e_k = d_k``); ``"hinge"`` pushes the label readout up only while
    it is below ``target`` and every other readout down only while it is above 0
    (``e_k = d_k`` if ``d_k < 0`` equals ``k == label``, else 0, i.e. ``min(d_k, 0)`` for the
    label and ``max(d_k, 0)`` for the others); ``"softmax"`` is the gradient of the softmax
    cross-entropy, ``e_k = target * (p_k - [k == label])``, with ``p`` a base-2 softmax of the
    readouts at ``2**softmax_shift`` membrane LSBs per halving
    (:func:`~neurofptt.onchip.softmax_error` gives the exact integer arithmetic).  The
    hinge's margin of the others is 0 rather than ``-target`` because then the hinge reuses the
    same subtraction and needs only its sign bit, an XNOR with the label match and a mux; a
    readout already on the right side of its margin (as a cross-entropy-trained network's are,
    far below 0 for the wrong classes) gets no error.  ``rounding`` is how the
    three shifts that form the factors (``e_k`` by ``b_t``, ``L_j`` by ``signal_shift``,
    ``delta_j`` by ``psi_bits``) round: ``"floor"`` (toward minus infinity, a plain arithmetic
    shift, half an LSB of downward bias per shift) or ``"nearest"`` (half up,
    ``(x + 2**(s-1)) >> s``: an adder, or for the variable ``b_t`` the last bit shifted out as a
    carry-in; unbiased but for ties).  The bias matters once errors are small: with ``"floor"``
    ``delta_j`` is -1 for every neuron near threshold whatever the sign of its exact value.
    Updates happen on
    supervised steps that are a multiple of ``update_period`` or the last step.  A weight moves by
    the gradient times ``2**-lr_shift_*`` weight LSBs, stochastically rounded with per-lane LFSRs
    seeded from ``lfsr_seed``.  FPTT: ``eta * alpha = 2**-alpha_shift``; the running mean is
    stored in ``wbar_bits`` bits, as ``W_bar`` itself (``"absolute"``) or as ``W - W_bar``
    (``"difference"``), saturating.

    The defaults are the flow's learning constants, chosen on the default digits task
    (``docs/hardware.md`` section 9): the softmax error at ``target = 512`` and ``2**8`` LSBs per
    halving (the gradient of the float rule's cross-entropy; over a full run it learns the
    digits from scratch better than the hinge, while the target error pulls the other classes'
    readouts up toward 0 and erases the margins), one update per sample on its last step, a
    pseudo-derivative ``2**10`` LSBs (four thresholds) wide on each side (credit for every neuron
    the error could move, not only those near threshold), all three rates ``2**-15`` (with that
    wider triangle the fastest start that still settles once ``train.onchip_halvings`` have
    lowered it) and round-to-nearest factors, so that the host can lower the rate through the
    error shift without the floor's bias (a trained network is adapted that way, see
    :func:`neurofptt.flow.onchip.stage_train_onchip`).
    """

    mode: str = "eprop"
    feedback: str = "symmetric"
    feedback_seed: int = 1
    trace_bits: int = 12
    trace_frac_bits: int = 8
    signal_bits: int = 16
    signal_shift: int = 8
    psi_width_shift: int = 10
    psi_bits: int = 4
    target: int = 512
    error: str = "softmax"
    softmax_shift: int = 8
    rounding: str = "nearest"
    supervised_steps: int = 1
    beta_ramp: bool = False
    update_period: int = 1
    lr_shift_in: int = 15
    lr_shift_rec: int = 15
    lr_shift_out: int = 15
    alpha_shift: int = 4
    wbar_bits: int = 10
    wbar_store: str = "absolute"
    lfsr_seed: int = 0xACE1

    def __post_init__(self) -> None:
        check_field_types(self, "hardware.learning")
        choices = {
            "mode": LEARNING_MODES,
            "feedback": FEEDBACKS,
            "wbar_store": WBAR_STORES,
            "error": LEARNING_ERRORS,
            "rounding": ROUNDINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"hardware.learning.{name} = {getattr(self, name)!r} is not valid; "
                    f"use one of {allowed}"
                )
        for name, (lo, hi) in LEARNING_LIMITS.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ConfigError(
                    f"hardware.learning.{name} = {value} is out of range; it must be between "
                    f"{lo} and {hi}"
                )
        if not 0 <= self.trace_frac_bits <= self.trace_bits - 1:
            raise ConfigError(
                f"hardware.learning.trace_frac_bits = {self.trace_frac_bits} must be between 0 "
                f"and trace_bits - 1 = {self.trace_bits - 1} so one spike fits in the trace"
            )
        if not self.psi_bits <= self.psi_width_shift:
            raise ConfigError(
                f"hardware.learning.psi_bits = {self.psi_bits} must not exceed psi_width_shift "
                f"= {self.psi_width_shift} (the triangle is scaled down by a right shift)"
            )
        for name in ("lr_shift_in", "lr_shift_rec", "lr_shift_out"):
            if self.mode == "fptt" and self.alpha_shift > getattr(self, name) + 1:
                raise ConfigError(
                    f"hardware.learning.alpha_shift = {self.alpha_shift} must be at most "
                    f"{name} + 1 = {getattr(self, name) + 1}: the FPTT pull eta*alpha = "
                    "2**-alpha_shift shares the update's rounding and must not be finer than it"
                )

    def lr_shift(self, matrix: str) -> int:
        """Learning-rate shift of ``"in"``, ``"rec"`` or ``"out"``."""
        return {"in": self.lr_shift_in, "rec": self.lr_shift_rec, "out": self.lr_shift_out}[matrix]

    @classmethod
    def from_dict(cls, data: Any) -> LearningConfig:
        """A config from a ``[hardware.learning]`` table; what it leaves out takes the defaults."""
        return cls(**from_table(cls, data, "hardware.learning"))


@dataclass(frozen=True)
class HardwareConfig:
    """Sizes and number formats of one recurrent LIF core with a leaky-integrator readout."""

    n_in: int = 32
    n_rec: int = 128
    n_out: int = 10
    weight_bits: int = 8
    membrane_bits: int = 16
    frac_bits: int = 8
    leak_shift: int = 2
    out_leak_shift: int = 3
    threshold: int = 256
    reset: str = "subtract"
    w_in_shift: int = 0
    w_rec_shift: int = 0
    w_out_shift: int = 0
    lanes: int = 4
    learning: LearningConfig | None = None

    def __post_init__(self) -> None:
        check_field_types(self, "hardware")
        for name, (lo, hi) in _LIMITS.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ConfigError(
                    f"hardware.{name} = {value} is out of range; it must be between {lo} and {hi}"
                )
        mb = self.membrane_bits
        if not 0 <= self.frac_bits <= mb - 2:
            raise ConfigError(
                f"hardware.frac_bits = {self.frac_bits} must be between 0 and membrane_bits - 2 "
                f"= {mb - 2} so the membrane can hold at least +-1.0"
            )
        for name in ("leak_shift", "out_leak_shift"):
            value = getattr(self, name)
            if not 0 <= value <= mb - 1:
                raise ConfigError(
                    f"hardware.{name} = {value} must be between 0 (no memory) and "
                    f"membrane_bits - 1 = {mb - 1}"
                )
        if not 1 <= self.threshold <= self.v_max - 1:
            raise ConfigError(
                f"hardware.threshold = {self.threshold} must be positive and below the largest "
                f"membrane value {self.v_max} (membrane_bits = {mb}); raise membrane_bits or "
                "lower the threshold"
            )
        if self.reset not in RESET_RULES:
            raise ConfigError(
                f"hardware.reset = {self.reset!r} is not a reset rule; use one of {RESET_RULES}"
            )
        for name in ("w_in_shift", "w_rec_shift", "w_out_shift"):
            value = getattr(self, name)
            if not 0 <= value <= mb - 1:
                raise ConfigError(
                    f"hardware.{name} = {value} must be between 0 and membrane_bits - 1 = {mb - 1}"
                )
        self._check_learning()

    def _check_learning(self) -> None:
        """Checks of the learning fields that depend on the inference formats."""
        lc = self.learning
        if lc is None:
            return
        if not isinstance(lc, LearningConfig):
            raise ConfigError(
                f"hardware.learning must be a LearningConfig or absent, got {type(lc).__name__}; "
                "use HardwareConfig.from_dict for a dict"
            )
        mb = self.membrane_bits
        if not 0 <= lc.target <= self.v_max:
            raise ConfigError(
                f"hardware.learning.target = {lc.target} must be between 0 and the largest "
                f"readout value {self.v_max}; lower it or raise membrane_bits"
            )
        if lc.psi_width_shift > mb - 1:
            raise ConfigError(
                f"hardware.learning.psi_width_shift = {lc.psi_width_shift} must be at most "
                f"membrane_bits - 1 = {mb - 1}"
            )
        if lc.wbar_store == "absolute" and lc.wbar_bits < self.weight_bits:
            raise ConfigError(
                f"hardware.learning.wbar_bits = {lc.wbar_bits} is narrower than weight_bits = "
                f"{self.weight_bits}; widen it or set wbar_store = 'difference' to store W - W_bar"
            )

    # -- derived ranges -----------------------------------------------------------------------
    @property
    def v_min(self) -> int:
        """Most negative membrane / readout value (saturation bound)."""
        return -(1 << (self.membrane_bits - 1))

    @property
    def v_max(self) -> int:
        """Most positive membrane / readout value (saturation bound)."""
        return (1 << (self.membrane_bits - 1)) - 1

    @property
    def w_min(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def w_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def beta(self) -> float:
        """Decay factor of the recurrent membrane that the shift leak implements."""
        return 1.0 - 2.0**-self.leak_shift

    @property
    def out_beta(self) -> float:
        """Decay factor of the readout."""
        return 1.0 - 2.0**-self.out_leak_shift

    @property
    def lsb(self) -> float:
        """Value of one membrane LSB in float units."""
        return 2.0**-self.frac_bits

    @property
    def threshold_float(self) -> float:
        return self.threshold * self.lsb

    @property
    def acc_bits(self) -> int:
        """Signed width that holds every intermediate sum of one neuron update without overflow.

        The update adds the leaked membrane, the reset term and all synaptic contributions before
        the single saturation, so the accumulator must hold the worst case of all of them.
        """
        worst = (
            2 * (1 << (self.membrane_bits - 1))  # leaked membrane plus threshold reset
            + self.n_in * (1 << (self.weight_bits - 1 + self.w_in_shift))
            + self.n_rec * (1 << (self.weight_bits - 1 + self.w_rec_shift))
            + self.n_rec * (1 << (self.weight_bits - 1 + self.w_out_shift))
        )
        return worst.bit_length() + 1

    def index_bits(self, n: int) -> int:
        """Width of an index into ``n`` items (at least 1 bit)."""
        return max(1, math.ceil(math.log2(n)))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/TOML-able) of every field, so a saved config reads back the same
        whatever the defaults of the version reading it; ``learning`` appears only when set, so
        an inference-only config serialises as it always has."""
        data = dataclasses.asdict(self)
        if data["learning"] is None:
            del data["learning"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> HardwareConfig:
        """A config from a ``[hardware]`` table (with an optional ``[hardware.learning]``);
        what it leaves out takes the defaults."""
        options = from_table(cls, data, "hardware")
        if options.get("learning") is not None:
            options["learning"] = LearningConfig.from_dict(options["learning"])
        return cls(**options)

    @property
    def synapses(self) -> int:
        """Synapses of the three weight matrices: ``n_rec * (n_in + n_rec + n_out)``."""
        return self.n_rec * (self.n_in + self.n_rec + self.n_out)

    def replace(self, **changes: Any) -> HardwareConfig:
        return dataclasses.replace(self, **changes)


def learning_config(cfg: HardwareConfig) -> LearningConfig:
    """``cfg.learning``, or a :class:`ConfigError` saying how to enable learning."""
    if cfg.learning is None:
        raise ConfigError(
            "this hardware config has no learning section; add a [hardware.learning] table "
            "(or pass HardwareConfig(learning=LearningConfig(...))) to learn on chip"
        )
    return cfg.learning


def lane_rows(n: int, lanes: int) -> int:
    """Rows of ``n`` neurons spread over ``lanes`` lanes: ``ceil(n / lanes)``.  Lane ``l`` holds
    neurons ``l, l + lanes, ...``, so neuron ``j`` sits in row ``j // lanes``."""
    return -(-n // lanes)
