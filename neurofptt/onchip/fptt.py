"""On-chip FPTT in the slide form (Kag & Saligrama), with the running mean ``W_bar`` per synapse.

With ``a = eta * alpha = 2**-A`` (``A = alpha_shift``), ``eta = 2**-s`` (``s = lr_shift_<matrix>``),
``G`` this update's factorised gradient and ``Gp`` the previous update's, recomputed from the
stored per-neuron factors of that update::

    W_new    = sat_w( W + sround( -2 G + Gp - ((W - Wbar) << (s + 1 - A)), s + 1 ) )
    Wbar_new = sround( ((Wbar + W_new) << s) - (G << A), s + 1 )

which is ``W - eta (g_t + alpha (W - Wbar) - g_{t-1} / 2)`` and
``Wbar/2 + W_new/2 - g_t / (2 alpha)`` in weight LSBs with ``g = G``: the float slide-form step
of :class:`neurofptt.learning.fptt.FPTT` (``form = "slide"``) with learning rate ``eta`` and
``alpha = 2**(s - A)``, taken as one plain gradient step on ``l_t + R_t``.  In float units
(a weight code is worth ``c_m`` float, one unit of ``G`` is ``k_m`` units of the float loss
gradient) that is plain SGD at ``lr = 2**-s c_m / k_m`` with ``alpha = 2**(s - A) k_m / c_m``,
so ``lr * alpha = 2**-A`` whatever the units.  The section "On-chip FPTT and float FPTT side by
side" of docs/learning.md gives ``c_m`` and ``k_m``, maps every constant of the two rules and
says how to choose ``alpha_shift`` from a float ``alpha``; tests/test_onchip_fptt_float.py checks
this update against :class:`~neurofptt.learning.fptt.FPTT` itself to within the rounding (1 LSB
for ``W``, 1.5 for ``Wbar``).  ``Wbar`` is stored saturated to ``wbar_bits``: as itself
(``wbar_store = "absolute"``) or as ``W_new - Wbar_new`` (``"difference"``).
"""

from __future__ import annotations

import numpy as np

from neurofptt.quant.fixedpoint import saturate
from neurofptt.quant.lfsr import stochastic_round

#: random draws per synapse of one update: the first for ``W``, the second for ``W_bar``
DRAWS = 2


def fptt_update(
    w: np.ndarray,
    mean: np.ndarray,
    g: np.ndarray,
    g_prev: np.ndarray,
    lr_shift: int,
    alpha_shift: int,
    draws: list[np.ndarray],
    weight_bits: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(W_new, Wbar_new)`` of one matrix; ``mean`` is ``W_bar`` as the memory reads it back."""
    s = lr_shift
    pull = (w - mean) << (s + 1 - alpha_shift)
    step = stochastic_round(-2 * g + g_prev - pull, s + 1, draws[0])
    w_new = saturate(w + step, weight_bits)
    mean_new = stochastic_round(((mean + w_new) << s) - (g << alpha_shift), s + 1, draws[1])
    return w_new, mean_new
