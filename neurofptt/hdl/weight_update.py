"""One lane of the update sweep: the new weight of one synapse per cycle, and for FPTT its new
``W_bar``, bit for bit as :func:`~neurofptt.onchip.eprop.eprop_update` and
:func:`~neurofptt.onchip.fptt.fptt_update` form them."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import draw_addend, draw_complement, registered_product, saturate
from neurofptt.hdl.layouts import MATRIX_CODES
from neurofptt.hdl.lfsr import draws_per_word
from neurofptt.quant.config import LFSR_BITS, HardwareConfig, learning_config

__all__ = ["LaneCycles", "WeightUpdateLane", "factor_bits", "gradient_shape", "lane_cycles"]


@dataclass(frozen=True)
class LaneCycles:
    """When a word's values meet a :class:`WeightUpdateLane`, counted from its inputs: the
    draws are read on cycle ``draw``, the new weight leaves on cycle ``w``, FPTT's new
    ``W_bar`` on cycle ``wbar``."""

    draw: int
    w: int
    wbar: int


def lane_cycles(cfg: HardwareConfig) -> LaneCycles:
    """The lane's cycles (see :class:`WeightUpdateLane`): e-prop's new weight three cycles
    after the inputs (the product, its copy, then ``y``), FPTT's four (the product, its copy,
    the sums, ``y``) and its ``W_bar`` three more (``mean + w_new``, the new mean, its stored
    form)."""
    fptt = learning_config(cfg).mode == "fptt"
    return LaneCycles(draw=2, w=4 if fptt else 3, wbar=7)


def factor_bits(cfg: HardwareConfig) -> int:
    """Width of a postsynaptic factor: ``e_k`` (``membrane_bits + 1``) or ``delta_j``
    (``signal_bits``), whichever is wider."""
    return max(cfg.membrane_bits + 1, learning_config(cfg).signal_bits)


def gradient_shape(cfg: HardwareConfig) -> signed:
    """Shape of ``G = post * pre``: a signed factor times an unsigned trace."""
    return signed(factor_bits(cfg) + learning_config(cfg).trace_bits + 1)


class WeightUpdateLane(wiring.Component):
    """The weight update of one lane, a pipeline of one carry chain per stage.

    Cycle 0 (``w``, ``pre``, ``post``; for FPTT also the previous update's ``pre_prev`` and
    ``post_prev``, zero before the first update, the stored ``wbar`` and the word's matrix
    ``mat``): every input but ``w`` and ``wbar`` comes straight from a register, so the
    multipliers of ``G = post * pre`` (and ``Gp``) have registered inputs, as a MULT18X18D's
    input registers would.  Their products are registered twice
    (:func:`~neurofptt.hdl.arith.registered_product`), and the other inputs wait a cycle with
    them.  With the lane's draws ``draws`` on cycle :attr:`draw_cycle` (the LFSR bank's, one
    per draw of the rule),
    ``w_new[c]`` on cycle :attr:`w_cycle` is the new weight under the learning rate of matrix
    code ``c`` (:data:`~neurofptt.hdl.layouts.MATRIX_CODES`; matrices with the same rate share
    one datapath), and for FPTT ``wbar_new[c]`` on cycle :attr:`wbar_cycle` the stored form
    (``wbar_store``) of the new running mean, saturated to ``wbar_bits`` (the memories register
    their write ports, :data:`~neurofptt.hdl.blocks.WRITE_LATENCY`, so the subtraction and
    saturation end at a flip-flop, not at the ``W_bar`` slices' data inputs, where they were the
    placed demo FPTT core's second most frequent longest path):

    * e-prop: ``sat(w + sround(-G, s))``, as ``sat(w - y)`` with ``y = (G + K) >> s`` and
      ``K`` the draw's complement (``arith.draw_complement``: ``sround(-G) = -y``);
    * FPTT: ``sat(w + sround(-2 G + Gp - ((w - mean) << (s + 1 - A)), s + 1))``, as
      ``sat(w - y)`` with ``y = ((2 G - Gp) + ((w - mean) << (s + 1 - A)) + K) >> (s + 1)``;
      then ``sround(((mean + w_new) << s) - (G << A), s + 1)`` with the second draw, as
      ``((mean + w_new) << s) + (R - (G << A))`` shifted, ``R`` the draw's addend.

    ``y`` is clamped to ``weight_bits + 1`` bits before the last subtraction, which changes no
    result (``sat_w(w - y) = sat_w(w - sat(y, weight_bits + 1))`` for ``w`` in range) and keeps
    the adder in front of the weight memory's write port short.  Only the entry of the word's
    own matrix is meaningful; the others share its datapath or use another rate.

    The lane holds data only, meaningful while a word passes (the sweep's stages, which the
    reset clears, say when), so its registers have no reset: the reset's net reached about
    14,000 flip-flops of the 256-256-16 FPTT core, most of them data, and was its most
    congested net.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        self.fptt = lc.mode == "fptt"
        cycles = lane_cycles(cfg)
        #: the cycle the draws are read, and those of the new weight and the new W_bar
        self.draw_cycle, self.w_cycle, self.wbar_cycle = cycles.draw, cycles.w, cycles.wbar
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

    def _shifts(self) -> list[int]:
        lc = learning_config(self.cfg)
        return sorted({lc.lr_shift(name) for name in MATRIX_CODES})

    def _later(self, m: Module, value: Value, name: str) -> Signal:
        """``value`` one cycle later, in a register without reset (see the class docstring)."""
        reg = Signal(value.shape(), name=name, reset_less=True)
        m.d.sync += reg.eq(value)
        return reg

    def _new_weights(self, m: Module, w: Signal, y: dict[int, Value]) -> dict[int, Signal]:
        """Register ``y`` (by shift) clamped to ``weight_bits + 1`` bits, and ``w`` with it;
        on the next cycle ``sat(w - y)``."""
        wb = self.cfg.weight_bits
        w_next = self._later(m, w, "w_last")
        new = {}
        for s, value in y.items():
            step = self._later(m, saturate(m, value, wb + 1, f"step_s{s}"), f"step_s{s}_reg")
            new[s] = saturate(m, w_next - step, wb, f"w_new_s{s}")
        return new

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        g2 = registered_product(m, self.post, self.pre, "grad")
        w1 = self._later(m, self.w, "w_s1")
        w2 = self._later(m, w1, "w_s2")
        r0 = self.draws[0]
        if not self.fptt:
            y = {s: (g2 + draw_complement(r0, s)) >> s for s in self._shifts()}
            self._by_matrix(m, self._new_weights(m, w2, y), self.w_new)
            return m
        self._fptt(m, g2, w1, w2, r0)
        return m

    def _fptt(self, m: Module, g2: Signal, w1: Signal, w2: Signal, r0: Value) -> None:
        """FPTT's new weight and new ``W_bar`` (``G`` in ``g2``, the weight in ``w1`` and
        ``w2``, each named for the cycle it holds the word in)."""
        cfg, lc = self.cfg, learning_config(self.cfg)
        wb, alpha = cfg.weight_bits, lc.alpha_shift
        shifts = self._shifts()
        mean_bits = max(wb, lc.wbar_bits) + 1
        gp2 = registered_product(m, self.post_prev, self.pre_prev, "grad_prev")
        # cycle 1: W - mean and the mean
        diff2 = Signal(signed(mean_bits + 1), name="w_minus_mean", reset_less=True)
        mean2 = Signal(signed(mean_bits + 1), name="mean_s2", reset_less=True)
        wbar1 = self._later(m, self.wbar, "wbar_s1")
        if lc.wbar_store == "absolute":
            m.d.sync += [diff2.eq(w1 - wbar1), mean2.eq(wbar1)]
        else:  # W - W_bar is what is stored
            m.d.sync += [diff2.eq(wbar1), mean2.eq(w1 - wbar1)]
        mat = self.mat
        for cycle in range(1, 4):
            mat = self._later(m, mat, f"mat_s{cycle}")
        # cycle 2: the three sums that meet the draws, one adder each
        r1 = self.draws[1]
        a3 = self._later(m, 2 * g2 - gp2, "twice_grad")
        b3 = {s: self._later(m, (diff2 << (s + 1 - alpha)) + draw_complement(r0, s + 1),
                             f"pull_s{s}") for s in shifts}  # fmt: skip
        q3 = {s: self._later(m, draw_addend(r1, s + 1) - (g2 << alpha), f"mean_round_s{s}")
              for s in shifts}  # fmt: skip
        w3, mean3 = self._later(m, w2, "w_s3"), self._later(m, mean2, "mean_s3")
        # cycle 3: y; cycle 4: the new weight
        y = {s: (a3 + b3[s]) >> (s + 1) for s in shifts}
        new = self._new_weights(m, w3, y)
        self._by_matrix(m, new, self.w_new)
        mat4 = self._later(m, mat, "mat_s4")
        mean4 = self._later(m, mean3, "mean_s4")
        q4 = {s: self._later(m, q3[s], f"mean_round_s{s}_s4") for s in shifts}
        out, into, rec = (self.w_new[MATRIX_CODES[name]] for name in ("out", "in", "rec"))
        kept = Mux(mat4 == MATRIX_CODES["out"], out, Mux(mat4 == MATRIX_CODES["in"], into, rec))
        # cycle 5: mean + w_new; cycle 6: the new mean; cycle 7: its stored form
        w5 = self._later(m, kept, "w_new_s5")
        q5 = {s: self._later(m, q4[s], f"mean_round_s{s}_s5") for s in shifts}
        sum6 = self._later(m, self._later(m, mean4, "mean_s5") + w5, "mean_plus_w")
        w6 = self._later(m, w5, "w_new_s6")
        q6 = {s: self._later(m, q5[s], f"mean_round_s{s}_s6") for s in shifts}
        w7 = self._later(m, w6, "w_new_s7")
        kept_mean = {}
        for s in shifts:
            mean_new = self._later(m, ((sum6 << s) + q6[s]) >> (s + 1), f"mean_new_s{s}")
            keep = mean_new if lc.wbar_store == "absolute" else w7 - mean_new
            kept_mean[s] = saturate(m, keep, lc.wbar_bits, f"wbar_new_s{s}")
        self._by_matrix(m, kept_mean, self.wbar_new)
