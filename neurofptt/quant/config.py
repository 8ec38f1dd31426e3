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
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurofptt.errors import ConfigError
from neurofptt.validation import check_field_types

RESET_RULES = ("subtract", "zero")

# Inclusive limits checked on construction.  They keep the generated hardware a sane size and
# every intermediate sum inside the golden model's 64-bit integers: at most 3 * 4096 terms of
# 2**(15 + 31) plus the membrane terms need 61 bits (see ``acc_bits``; tested at the extremes).
_LIMITS = {
    "n_in": (1, 4096),
    "n_rec": (1, 4096),
    "n_out": (1, 1024),
    "weight_bits": (2, 16),
    "membrane_bits": (4, 32),
    "lanes": (1, 64),
}


@dataclass(frozen=True)
class HardwareConfig:
    """Sizes and number formats of one recurrent LIF core with a leaky-integrator readout."""

    n_in: int = 32
    n_rec: int = 64
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
    lanes: int = 1

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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown hardware option(s) {unknown}; valid options are {sorted(known)}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> HardwareConfig:
        return dataclasses.replace(self, **changes)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing or malformed file into a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing .toml file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
