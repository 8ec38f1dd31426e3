"""On-chip e-prop: the factorised gradient applied with stochastic rounding, nothing stored.

``W <- sat_w( W + sround(-G, s) )``: ``W -= eta G`` with ``eta = 2**-s`` weight LSBs per
gradient unit, ``s = lr_shift_<matrix>``, and ``sround`` the LFSR-driven stochastic rounding of
:mod:`neurofptt.quant.lfsr` (one draw per synapse).
"""

from __future__ import annotations

import numpy as np

from neurofptt.quant.fixedpoint import saturate
from neurofptt.quant.lfsr import stochastic_round

#: random draws per synapse of one update
DRAWS = 1


def eprop_update(
    w: np.ndarray, g: np.ndarray, lr_shift: int, draws: list[np.ndarray], weight_bits: int
) -> np.ndarray:
    """The new weights of one matrix from its gradient ``g`` (the factors' outer product)."""
    return saturate(w + stochastic_round(-g, lr_shift, draws[0]), weight_bits)
