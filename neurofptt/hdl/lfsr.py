"""The LFSR bank of the learning unit: one 16-bit Galois LFSR per lane, as
:mod:`neurofptt.quant.lfsr` specifies them, one or two draws per lane and cycle."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.quant.config import LFSR_BITS, HardwareConfig, learning_config
from neurofptt.quant.lfsr import LEAP, TAPS, advance, lane_seeds

__all__ = ["LfsrBank", "draws_per_word", "jump", "jump_columns"]


def jump_columns(steps: int) -> list[int]:
    """Column ``b`` of the 16x16 XOR matrix of ``steps`` single steps: the state they lead to
    from ``1 << b``.

    The Galois step ``s >> 1 ^ (s & 1) * TAPS`` is linear over GF(2), so any number of steps
    is one matrix product, i.e. one XOR tree per output bit and one clock.
    """
    columns = []
    for bit in range(LFSR_BITS):
        s = 1 << bit
        for _ in range(steps):
            s = (s >> 1) ^ (TAPS if s & 1 else 0)
        columns.append(s)
    return columns


def jump(state: Value, steps: int) -> Value:
    """The LFSR state ``steps`` single steps after ``state``."""
    columns = jump_columns(steps)
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

    ``draws[lane]`` are the lane's next :func:`draws_per_word` draws (``LEAP`` single steps
    on, then ``LEAP`` more), held in registers: the bank keeps the draws themselves rather than
    the state they come from, so the XOR trees lie between two registers and a draw reaches
    the rounding adders straight from a flip-flop.  ``step`` moves every draw on by the steps
    of one word (``draws_per_word * LEAP``), ``reseed`` back to its value from the seed (it
    wins over ``step``).
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
        n = draws_per_word(self.cfg)
        for lane, seed in enumerate(self.seeds):
            for u in range(n):
                start = int(advance(seed, LEAP * (u + 1)))
                draw = Signal(LFSR_BITS, init=start, name=f"draw{u}_{lane}")
                m.d.comb += self.draws[lane][u].eq(draw)
                with m.If(self.reseed):
                    m.d.sync += draw.eq(start)
                with m.Elif(self.step):
                    m.d.sync += draw.eq(jump(draw, LEAP * n))
        return m
