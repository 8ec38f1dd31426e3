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
   hinge it keeps pushing every class by how likely the network finds it, as the float rules'
   cross-entropy does (what that is worth over a full run: ``docs/results-hardware.md``).

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

Per-step labels.  A sample may carry a label per step, ``-1`` where a step has no target
(:func:`run_sample`): the host then sends ``learn = 1`` and the step's label only at the labelled
steps, so updates happen exactly there, each toward its own step's label with ``b_t = 0``
(:func:`step_schedule`); the schedule's ``supervised_steps``, ``update_period`` and
``beta_ramp`` are for one label per sequence.  The core itself is unchanged: every ``STEP``
already carries ``learn``, ``label`` and ``shift``.

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

from neurofptt.onchip.factors import (
    SOFTMAX_BITS,
    Factors,
    beta_shift,
    quotient_bits,
    softmax_error,
    step_schedule,
    update_factors,
)
from neurofptt.onchip.initial import fan_in_spreads, random_network
from neurofptt.onchip.state import MATRICES, SWEEP_ORDER, LearningState
from neurofptt.onchip.step import learning_step, run_sample, trace_step
from neurofptt.quant.config import learning_config

__all__ = [
    "MATRICES",
    "SOFTMAX_BITS",
    "SWEEP_ORDER",
    "Factors",
    "LearningState",
    "beta_shift",
    "fan_in_spreads",
    "learning_config",
    "learning_step",
    "quotient_bits",
    "random_network",
    "run_sample",
    "softmax_error",
    "step_schedule",
    "trace_step",
    "update_factors",
]
