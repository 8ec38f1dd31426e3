"""The weight load of a learning core: ``i_weights`` words written into the weight memories
(and FPTT's ``W_bar`` memories) while the core is idle, in the order a dump sends them."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.layouts import MATRIX_CODES, tap
from neurofptt.hdl.ports import weight_dump_layout
from neurofptt.hdl.sweep import matrix_shapes
from neurofptt.quant.config import HardwareConfig

__all__ = ["WeightLoad", "load_write_layout"]


def load_write_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A word to write: its matrix, its address there and the word as it came
    (:func:`~neurofptt.hdl.ports.weight_dump_layout`)."""
    depth = max(n_pre * n_rows for n_pre, n_rows, _ in matrix_shapes(cfg).values())
    return data.StructLayout(
        {"mat": range(len(MATRIX_CODES)), "addr": range(depth), "word": weight_dump_layout(cfg)}
    )


class WeightLoad(wiring.Component):
    """Takes one ``i_weights`` word per cycle while ``enable`` (the core is idle; ``ready`` is
    ``enable`` and does not depend on ``valid``) and passes it on ``write`` with its load
    address, which runs through ``W_out``, ``W_in``, ``W_rec`` in address order.

    The load has an address of its own, so an event taken with a load's first word may start
    a sweep or a dump before the next word.  ``matrix`` is not read: the position in the stream
    already names the matrix, and the core has no way to report a disagreement.  ``last``, or
    the final ``W_rec`` address, ends the load: the address returns to ``W_out`` word 0 and
    ``restart`` pulses on the next cycle, so that learning restarts from the loaded state as
    :meth:`~neurofptt.onchip.LearningState.start` has it.  ``restart`` comes from a register:
    it resets the LFSRs spread over the lanes, and decoded from the load's address and the
    handshake it was the demo's FPTT core's longest path; nothing draws before an update's
    sweep, many cycles after the load.  ``loading`` is high from the first word to the cycle
    after the last (the one ``restart`` pulses on), in which the last word is still on its way
    into the memories, whose write ports are registered
    (:data:`~neurofptt.hdl.blocks.WRITE_LATENCY`).  It is a flip-flop of its own, set by every
    word taken and held until a cycle without a word after the last: the core's event
    handshake waits on it, and as a LUT of ``restart`` (whose route runs to the LFSRs in every
    lane) it lay on a placed demo FPTT core's longest path.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(
            {
                "i_weights": In(stream.Signature(weight_dump_layout(cfg))),
                "enable": In(1),
                "loading": Out(1),
                "restart": Out(1),
                "write": Out(tap(load_write_layout(cfg))),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        shapes = matrix_shapes(self.cfg)
        depth = {name: n_pre * n_rows for name, (n_pre, n_rows, _) in shapes.items()}
        words, write = self.i_weights, self.write
        # a word of this load has been taken, up to the cycle of restart (in which the load's
        # last word is still being written): set by a word, cleared on the cycle after restart
        busy = Signal(name="load_busy")
        mat = Signal(range(len(MATRIX_CODES)), name="load_mat")
        addr = Signal(range(max(depth.values())), name="load_addr")
        m.d.comb += [
            words.ready.eq(self.enable),
            self.loading.eq(busy),
            write.p.mat.eq(mat),
            write.p.addr.eq(addr),
            write.p.word.eq(words.p),
        ]
        m.d.sync += [self.restart.eq(0), busy.eq(busy & ~self.restart)]
        with m.If(self.enable & words.valid):
            m.d.sync += busy.eq(1)
            m.d.comb += write.valid.eq(1)
            final = (mat == MATRIX_CODES["rec"]) & (addr == depth["rec"] - 1)
            with m.If(words.p.last | final):
                m.d.sync += self.restart.eq(1)
                m.d.sync += [mat.eq(0), addr.eq(0)]
            with m.Else():
                m.d.sync += addr.eq(addr + 1)
                for name in list(MATRIX_CODES)[:-1]:  # the end of W_rec is the end of the load
                    code = MATRIX_CODES[name]
                    with m.If((mat == code) & (addr == depth[name] - 1)):
                        m.d.sync += [mat.eq(code + 1), addr.eq(0)]
        return m
