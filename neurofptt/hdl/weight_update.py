"""One lane of the update sweep: the new weight of one synapse per cycle, and for FPTT its new
``W_bar``, bit for bit as :func:`~neurofptt.onchip.eprop.eprop_update` and
:func:`~neurofptt.onchip.fptt.fptt_update` form them."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import saturate, sround
from neurofptt.hdl.layouts import MATRIX_CODES
from neurofptt.hdl.lfsr import draws_per_word
from neurofptt.quant.config import LFSR_BITS, HardwareConfig, learning_config

__all__ = ["WeightUpdateLane", "factor_bits", "gradient_shape"]


def factor_bits(cfg: HardwareConfig) -> int:
    """Width of a postsynaptic factor: ``e_k`` (``membrane_bits + 1``) or ``delta_j``
    (``signal_bits``), whichever is wider."""
    return max(cfg.membrane_bits + 1, learning_config(cfg).signal_bits)


def gradient_shape(cfg: HardwareConfig) -> signed:
    """Shape of ``G = post * pre``: a signed factor times an unsigned trace."""
    return signed(factor_bits(cfg) + learning_config(cfg).trace_bits + 1)


class WeightUpdateLane(wiring.Component):
    """The weight update of one lane, in the sweep's stages 1 to 3.

    * stage 1 (the reads are valid): the weight ``w``, the presynaptic trace ``pre`` and the
      postsynaptic factor ``post``; for FPTT also the previous update's ``pre_prev`` and
      ``post_prev`` (zero before the first update), the stored ``wbar`` and ``mat``, the
      matrix swept (its new weight goes on to stage 3).  One multiplier forms
      ``G = post * pre`` (and one more ``Gp``); all are registered.
    * stage 2: with the lane's draws ``draws`` (the LFSR bank's, one per draw of the rule),
      ``w_new[c]`` is the new weight under the learning rate of matrix code ``c``
      (:data:`~neurofptt.hdl.layouts.MATRIX_CODES`; matrices with the same rate share one
      datapath): ``sat(w + sround(-G, s))``, or for FPTT
      ``sat(w + sround(-2 G + Gp - ((w - mean) << (s + 1 - A)), s + 1))``.
    * stage 3 (FPTT): ``wbar_new[c]``, the stored form (``wbar_store``) of
      ``sround(((mean + w_new) << s) - (G << A), s + 1)`` with the second draw, saturated to
      ``wbar_bits``.

    Only the entry of the word's own matrix is meaningful; the others share its datapath or
    use another rate.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        self.fptt = lc.mode == "fptt"
        wb, tb = cfg.weight_bits, lc.trace_bits
        members = {
            "w": In(signed(wb)),
            "pre": In(unsigned(tb)),
            "post": In(signed(factor_bits(cfg))),
            "draws": In(data.ArrayLayout(unsigned(LFSR_BITS), draws_per_word(cfg))),
            "w_new": Out(data.ArrayLayout(signed(wb), len(MATRIX_CODES))),
        }
        if self.fptt:
            members["mat"] = In(range(len(MATRIX_CODES)))
            members["pre_prev"] = In(unsigned(tb))
            members["post_prev"] = In(signed(factor_bits(cfg)))
            members["wbar"] = In(signed(lc.wbar_bits))
            members["wbar_new"] = Out(data.ArrayLayout(signed(lc.wbar_bits), len(MATRIX_CODES)))
        super().__init__(members)

    def _by_matrix(self, m: Module, new: dict[int, Value], out: data.View) -> None:
        """Drive ``out[c]`` with the datapath of matrix ``c``'s rate (``new``: by shift)."""
        lc = learning_config(self.cfg)
        for name, code in MATRIX_CODES.items():
            m.d.comb += out[code].eq(new[lc.lr_shift(name)])

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, lc = self.cfg, learning_config(self.cfg)
        wb = cfg.weight_bits
        shifts = sorted({lc.lr_shift(name) for name in MATRIX_CODES})
        grad = gradient_shape(cfg)

        # -- stage 1 -> 2 -----------------------------------------------------------------------
        w2 = Signal(signed(wb), name="w_s2")
        g2 = Signal(grad, name="grad")
        m.d.sync += [w2.eq(self.w), g2.eq(self.post * self.pre)]
        if self.fptt:
            mat2 = Signal.like(self.mat, name="mat_s2")
            m.d.sync += mat2.eq(self.mat)
            gp2 = Signal(grad, name="grad_prev")
            mean_bits = max(wb, lc.wbar_bits) + 1
            diff2 = Signal(signed(mean_bits + 1), name="w_minus_mean")
            mean2 = Signal(signed(mean_bits + 1), name="mean_s2")
            m.d.sync += gp2.eq(self.post_prev * self.pre_prev)
            if lc.wbar_store == "absolute":
                m.d.sync += [diff2.eq(self.w - self.wbar), mean2.eq(self.wbar)]
            else:  # W - W_bar is what is stored
                m.d.sync += [diff2.eq(self.wbar), mean2.eq(self.w - self.wbar)]

        # -- stage 2: the new weight ------------------------------------------------------------
        r0 = self.draws[0]
        new = {}
        for s in shifts:
            if self.fptt:
                pull = diff2 << (s + 1 - lc.alpha_shift)
                step = sround(-2 * g2 + gp2 - pull, s + 1, r0)
            else:
                step = sround(-g2, s, r0)
            new[s] = saturate(m, w2 + step, wb, f"w_new_s{s}")
        self._by_matrix(m, new, self.w_new)
        if not self.fptt:
            return m

        # -- stage 3 (FPTT): the new W_bar ------------------------------------------------------
        w3 = Signal(signed(wb), name="w_new_s3")
        g3 = Signal(grad, name="grad_s3")
        mean3 = Signal.like(mean2, name="mean_s3")
        r1 = Signal(LFSR_BITS, name="draw1_s3")
        out, into, rec = (self.w_new[MATRIX_CODES[name]] for name in ("out", "in", "rec"))
        kept_w = Mux(mat2 == MATRIX_CODES["out"], out, Mux(mat2 == MATRIX_CODES["in"], into, rec))
        m.d.sync += [w3.eq(kept_w), g3.eq(g2), mean3.eq(mean2), r1.eq(self.draws[1])]
        kept = {}
        for s in shifts:
            mean_new = sround(((mean3 + w3) << s) - (g3 << lc.alpha_shift), s + 1, r1)
            keep = mean_new if lc.wbar_store == "absolute" else w3 - mean_new
            kept[s] = saturate(m, keep, lc.wbar_bits, f"wbar_new_s{s}")
        self._by_matrix(m, kept, self.wbar_new)
        return m
