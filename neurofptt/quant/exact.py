"""Exact integer matrix products through float BLAS: the product kernel of the golden model.

Why.  numpy multiplies integer matrices with a plain loop (BLAS has no integer routines), which is
an order of magnitude slower than a float BLAS product of the same size.  The golden model's
products are small integers, so a float product gives the same integers whenever no rounding can
happen; then the golden model runs at float speed and stays bit-exact.

When a float product is exact.  An IEEE float with a ``p``-bit significand (``p = 24`` for
float32, 53 for float64) represents every integer of magnitude at most ``2**p`` exactly.  Each
operation a BLAS routine performs on ``a @ w.T`` (a multiply, an add or a fused multiply-add, in
whatever blocking, summation order or number of threads) has as its exact result a partial sum
of the products ``a_i * w_ji`` of one output element (or such a product itself).  If every such
partial sum is an integer of magnitude at most ``2**p``, every operation's exact result is
representable, IEEE rounding returns it unchanged, and the float result equals the integer sum.
Every partial sum is bounded by the sum of all magnitudes::

    |partial sum| <= fan_in * max|a_i| * max|w_ji|           (:func:`product_bound`)

The bound uses the formats, not the values, so the kernel depends only on the configuration:
weights of ``weight_bits`` bits have ``|w| <= 2**(weight_bits - 1)`` (the most negative code),
and spikes are 0 or 1, so a product of spikes with a weight matrix of fan-in ``n`` is bounded by
``n * 2**(weight_bits - 1)`` (:func:`spike_bound`).  The per-matrix power-of-two shifts are applied
to the exact integer result afterwards, so they do not enter the bound.  :func:`choose_kernel`
takes float32 up to ``2**24``, float64 up to ``2**53`` and otherwise the integer product.  Within
the limits of :class:`~neurofptt.quant.config.HardwareConfig` the spike products never exceed
``4096 * 2**15 = 2**27``, so inference always runs in float32 or float64; the integer kernel
is the reference a run can be forced onto (``golden_run(..., kernel="int64")``) and the fallback
for operands wider than spikes.

Not every integer product gains.  The on-chip learning signal ``B @ e``
(:func:`~neurofptt.onchip.update_factors`) is one matrix-vector product per update with a matrix
that changes at every update (symmetric feedback is ``W_out^T``); converting the matrix would
cost more than the integer product itself, so it stays integer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofptt.errors import ConfigError
from neurofptt.quant.config import HardwareConfig

#: the kernels, narrowest first, with the largest partial-sum magnitude each computes exactly
#: (``None``: any, the integer product; int64 itself is kept from overflow by the config limits)
KERNEL_LIMITS: dict[str, int | None] = {"float32": 2**24, "float64": 2**53, "int64": None}
KERNELS = tuple(KERNEL_LIMITS)


def product_bound(fan_in: int, operand_max: int, weight_max: int) -> int:
    """Largest magnitude of any partial sum of ``a @ w.T`` with ``|a| <= operand_max`` and
    ``|w| <= weight_max`` over ``fan_in`` terms."""
    return fan_in * operand_max * weight_max


def weight_magnitude(weight_bits: int) -> int:
    """Largest magnitude of a signed ``weight_bits``-bit weight: the most negative code's."""
    return 1 << (weight_bits - 1)


def spike_bound(fan_in: int, weight_bits: int) -> int:
    """:func:`product_bound` of 0/1 spikes with ``weight_bits``-bit weights."""
    return product_bound(fan_in, 1, weight_magnitude(weight_bits))


def choose_kernel(bound: int) -> str:
    """The narrowest kernel that computes products with partial sums up to ``bound`` exactly."""
    return next(k for k, limit in KERNEL_LIMITS.items() if limit is None or bound <= limit)


@dataclass(frozen=True)
class ExactProduct:
    """``a @ w.T`` of an integer matrix ``w`` (``(fan_out, fan_in)``) with integer operands ``a``
    (``(..., fan_in)``), as ``int64``, computed in ``kernel``'s dtype.  ``matrix`` is ``w.T`` in
    that dtype, converted once so that each product pays only for converting its operand."""

    kernel: str
    matrix: np.ndarray

    @classmethod
    def build(cls, w: np.ndarray, bound: int, kernel: str | None = None) -> ExactProduct:
        """The product with ``w`` for operands whose partial sums stay within ``bound``; in the
        narrowest exact kernel, or in ``kernel`` if given (which must be exact for ``bound``)."""
        exact = choose_kernel(bound)
        kernel = exact if kernel is None else kernel
        if kernel not in KERNELS:
            raise ConfigError(f"unknown product kernel {kernel!r}; use one of {KERNELS}")
        if KERNELS.index(kernel) < KERNELS.index(exact):
            raise ConfigError(
                f"the {kernel} kernel is not exact for partial sums up to {bound}; use {exact} "
                "or wider"
            )
        return cls(kernel, np.ascontiguousarray(np.asarray(w).T, dtype=kernel))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        """``a @ w.T``; leading axes of ``a`` are flattened into one product (one BLAS call
        rather than one per row of a stack)."""
        rows = a.reshape(-1, a.shape[-1]).astype(self.matrix.dtype, copy=False)
        product = (rows @ self.matrix).astype(np.int64, copy=False)
        return product.reshape(*a.shape[:-1], product.shape[-1])


@dataclass(frozen=True)
class SpikeProducts:
    """The three spike products of a network (input, recurrent, readout), each in the narrowest
    kernel that is exact for its fan-in and the weight format."""

    input: ExactProduct
    recurrent: ExactProduct
    readout: ExactProduct

    @classmethod
    def build(
        cls,
        cfg: HardwareConfig,
        w_in: np.ndarray,
        w_rec: np.ndarray,
        w_out: np.ndarray,
        kernel: str | None = None,
    ) -> SpikeProducts:
        """The products of the weights of a network with config ``cfg``; ``kernel`` forces one
        kernel for all three (it must be exact for each)."""
        bits = cfg.weight_bits
        return cls(
            ExactProduct.build(w_in, spike_bound(cfg.n_in, bits), kernel),
            ExactProduct.build(w_rec, spike_bound(cfg.n_rec, bits), kernel),
            ExactProduct.build(w_out, spike_bound(cfg.n_rec, bits), kernel),
        )

    @property
    def kernel(self) -> str:
        """The widest of the three kernels."""
        used = (self.input.kernel, self.recurrent.kernel, self.readout.kernel)
        return max(used, key=KERNELS.index)
