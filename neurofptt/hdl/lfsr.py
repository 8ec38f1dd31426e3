"""The LFSR bank of the learning unit: one 16-bit Galois LFSR per lane, as
:mod:`neurofptt.quant.lfsr` specifies them, one or two draws per lane and cycle."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.quant.config import LFSR_BITS, HardwareConfig, learning_config
from neurofptt.quant.lfsr import LEAP, TAPS, lane_seeds

__all__ = ["LfsrBank", "draws_per_word", "leap", "leap_columns"]


def leap_columns() -> list[int]:
    """Column ``b`` of the draw's 16x16 XOR matrix: ``LEAP`` single steps from ``1 << b``.

    The Galois step ``s >> 1 ^ (s & 1) * TAPS`` is linear over GF(2), so a draw is one matrix
    product, i.e. one XOR tree per output bit and one clock per draw.
    """
    columns = []
    for bit in range(LFSR_BITS):
        s = 1 << bit
        for _ in range(LEAP):
            s = (s >> 1) ^ (TAPS if s & 1 else 0)
        columns.append(s)
    return columns


def leap(state: Value) -> Value:
    """The LFSR state ``LEAP`` single steps after ``state`` (one draw)."""
    columns = leap_columns()
    bits = []
    for out in range(LFSR_BITS):
        taps = [state[b] for b in range(LFSR_BITS) if columns[b] >> out & 1]
        x = taps[0]
        for t in taps[1:]:
            x = x ^ t
        bits.append(x)
    return Cat(*bits)


def draws_per_word(cfg: HardwareConfig) -> int:
    """Random draws per synapse of an update: one for e-prop (the weight), two for FPTT (the
    weight, then ``W_bar``)."""
    return 2 if learning_config(cfg).mode == "fptt" else 1


class LfsrBank(wiring.Component):
    """One LFSR per lane, starting at :func:`~neurofptt.quant.lfsr.lane_seeds`.

    ``draws[lane]`` are the lane's next :func:`draws_per_word` draws (combinational from its
    state: the first ``LEAP`` steps on, the second ``LEAP`` steps further); ``step`` moves every
    lane past them, ``reseed`` back to its seed (it wins over ``step``).
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        self.seeds = [int(seed) for seed in lane_seeds(lc.lfsr_seed, cfg.lanes)]
        draw = data.ArrayLayout(unsigned(LFSR_BITS), draws_per_word(cfg))
        super().__init__(
            {
                "step": In(1),
                "reseed": In(1),
                "draws": Out(data.ArrayLayout(draw, cfg.lanes)),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        states = [
            Signal(LFSR_BITS, init=seed, name=f"lfsr_{lane}")
            for lane, seed in enumerate(self.seeds)
        ]
        for lane, state in enumerate(states):
            draws = []
            previous = state
            for u in range(draws_per_word(self.cfg)):
                draw = Signal(LFSR_BITS, name=f"draw{u}_{lane}")
                m.d.comb += [draw.eq(leap(previous)), self.draws[lane][u].eq(draw)]
                draws.append(draw)
                previous = draw
            with m.If(self.step):
                m.d.sync += state.eq(draws[-1])
            with m.If(self.reseed):
                m.d.sync += state.eq(self.seeds[lane])
        return m
