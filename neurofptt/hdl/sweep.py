"""The walk of an update sweep and of a weight dump over the three weight memories.

Both visit every weight word once, matrix by matrix in :data:`~neurofptt.hdl.layouts.MATRIX_CODES`
order (``W_out``, ``W_in``, ``W_rec``, the order of the golden model's random draws) and each in
address order: presynaptic index ``pre``, then row ``row`` (address ``pre * rows + row``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.layouts import MATRIX_CODES
from neurofptt.hdl.traces import inputs_per_word
from neurofptt.quant.config import HardwareConfig, lane_rows

__all__ = ["SweepCounter", "matrix_shapes", "position_layout"]


def matrix_shapes(cfg: HardwareConfig) -> dict[str, tuple[int, int, int]]:
    """Per matrix name: presynaptic neurons, rows per presynaptic neuron, and presynaptic
    traces per word of its trace table (``obar`` and ``zbar`` by neuron row, ``xbar`` by
    :func:`~neurofptt.hdl.traces.inputs_per_word`)."""
    lanes = cfg.lanes
    rows, out_rows = lane_rows(cfg.n_rec, lanes), lane_rows(cfg.n_out, lanes)
    return {
        "out": (cfg.n_rec, out_rows, lanes),
        "in": (cfg.n_in, rows, inputs_per_word(cfg)),
        "rec": (cfg.n_rec, rows, lanes),
    }


def position_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A word of the walk: its matrix ``mat``, presynaptic index ``pre`` (and where its trace
    sits: ``word = pre // per_word``, ``slot = pre % per_word``), ``row`` and address."""
    shapes = matrix_shapes(cfg)
    rows = lane_rows(cfg.n_rec, cfg.lanes)
    depth = max(n_pre * n_rows for n_pre, n_rows, _ in shapes.values())
    return data.StructLayout(
        {
            "mat": range(len(MATRIX_CODES)),
            "pre": range(max(cfg.n_in, cfg.n_rec)),
            "word": range(rows),
            "slot": range(max(cfg.lanes, inputs_per_word(cfg), 2)),
            "row": range(max(rows, lane_rows(cfg.n_out, cfg.lanes))),
            "addr": range(depth),
        }
    )


class SweepCounter(wiring.Component):
    """The position of the walk: ``at`` is the current word and ``last`` says it is the final
    one (the last ``W_rec`` word); ``advance`` moves to the next word (after the final one back
    to the first), ``restart`` to the first (it wins over ``advance``)."""

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "restart": In(1),
                "advance": In(1),
                "at": Out(position_layout(cfg)),
                "last": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        at = self.at
        nxt = Signal(position_layout(self.cfg), name="next")
        position = Signal(position_layout(self.cfg), name="position")
        m.d.sync += position.eq(nxt)
        m.d.comb += at.eq(position)
        n_pre, n_rows, _ = matrix_shapes(self.cfg)["rec"]
        m.d.comb += self.last.eq(
            (at.mat == MATRIX_CODES["rec"]) & (at.row == n_rows - 1) & (at.pre == n_pre - 1)
        )
        m.d.comb += nxt.eq(at)
        with m.If(self.restart):
            m.d.comb += nxt.eq(0)
        with m.Elif(self.advance), m.Switch(at.mat):
            for name, (n_pre, n_rows, per_word) in matrix_shapes(self.cfg).items():
                code = MATRIX_CODES[name]
                with m.Case(code):
                    self._advance(m, nxt, code, n_pre, n_rows, per_word)
        return m

    def _advance(
        self, m: Module, nxt: Signal, code: int, n_pre: int, n_rows: int, per_word: int
    ) -> None:
        """``nxt``, the position after ``at`` in matrix ``code``."""
        at = self.at
        with m.If(at.row == n_rows - 1):
            m.d.comb += nxt.row.eq(0)
            with m.If(at.pre == n_pre - 1):
                m.d.comb += [nxt.pre.eq(0), nxt.word.eq(0), nxt.slot.eq(0), nxt.addr.eq(0)]
                m.d.comb += nxt.mat.eq(code + 1 if code < len(MATRIX_CODES) - 1 else 0)
            with m.Else():
                m.d.comb += [nxt.pre.eq(at.pre + 1), nxt.addr.eq(at.addr + 1)]
                with m.If(at.slot == per_word - 1):
                    m.d.comb += [nxt.slot.eq(0), nxt.word.eq(at.word + 1)]
                with m.Else():
                    m.d.comb += nxt.slot.eq(at.slot + 1)
        with m.Else():
            m.d.comb += [nxt.row.eq(at.row + 1), nxt.addr.eq(at.addr + 1)]
