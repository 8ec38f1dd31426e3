"""The presynaptic traces and the pseudo-derivative of one row, as ``UPDATE`` passes it (steps 1
and 2 of :mod:`neurofptt.onchip`)::

    xbar_i = usat( xbar_i - (xbar_i >> leak_shift)     + x_i(t)   << trace_frac_bits )
    zbar_i = usat( zbar_i - (zbar_i >> leak_shift)     + z_i(t-1) << trace_frac_bits )
    obar_j = usat( obar_j - (obar_j >> out_leak_shift) + z_j(t)   << trace_frac_bits )
    psi_j  = max(0, 2**w - |v_j - threshold|) >> (w - psi_bits)       w = psi_width_shift

Row ``r`` of ``UPDATE`` carries neurons ``r * lanes ..`` and, in the same cycle, the input
traces of word ``r`` of the ``input_traces`` table (``K = ceil(n_in / R)`` inputs a word), so
the traces cost no cycles of their own.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import usat
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config

__all__ = ["TraceUpdate", "inputs_per_word", "neuron_trace_layout"]


def neuron_trace_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A recurrent neuron's traces: ``zbar`` (of its spikes, as ``W_rec``'s presynaptic
    trace) and ``obar`` (as ``W_out``'s)."""
    tb = learning_config(cfg).trace_bits
    return data.StructLayout({"zbar": unsigned(tb), "obar": unsigned(tb)})


def inputs_per_word(cfg: HardwareConfig) -> int:
    """``K``: input traces per word of the ``input_traces`` table, so that its words fit in the
    ``R`` rows of ``UPDATE``."""
    return lane_rows(cfg.n_in, lane_rows(cfg.n_rec, cfg.lanes))


class TraceUpdate(wiring.Component):
    """The new traces and ``psi`` of one row (combinational).

    In: the row's traces ``old`` and input traces ``x_old`` as the tables hold them, its
    previous spikes ``z_prev``, new spikes ``z`` and new membranes ``v``, and the step's input
    bits ``x`` of the word.  Out: ``new``, ``x_new`` and ``psi`` (``psi_bits + 1`` bits: the
    peak ``2**psi_bits`` included).
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        lanes, k, tb = cfg.lanes, inputs_per_word(cfg), lc.trace_bits
        traces = data.ArrayLayout(neuron_trace_layout(cfg), lanes)
        super().__init__(
            {
                "old": In(traces),
                "x_old": In(data.ArrayLayout(unsigned(tb), k)),
                "z_prev": In(lanes),
                "z": In(lanes),
                "x": In(k),
                "v": In(data.ArrayLayout(signed(cfg.membrane_bits), lanes)),
                "new": Out(traces),
                "x_new": Out(data.ArrayLayout(unsigned(tb), k)),
                "psi": Out(data.ArrayLayout(unsigned(lc.psi_bits + 1), lanes)),
            }
        )

    def _leaked(self, m: Module, trace: Value, shift: int, spike: Value, name: str) -> Signal:
        lc = learning_config(self.cfg)
        new = (trace - (trace >> shift)) + Mux(spike, 1 << lc.trace_frac_bits, 0)
        return usat(m, new, lc.trace_bits, name)

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, lc = self.cfg, learning_config(self.cfg)
        for lane in range(cfg.lanes):
            old, new = self.old[lane], self.new[lane]
            zbar = self._leaked(m, old.zbar, cfg.leak_shift, self.z_prev[lane], f"zbar_new_{lane}")
            obar = self._leaked(m, old.obar, cfg.out_leak_shift, self.z[lane], f"obar_new_{lane}")
            m.d.comb += [new.zbar.eq(zbar), new.obar.eq(obar)]
        for k in range(inputs_per_word(cfg)):
            xbar = self._leaked(m, self.x_old[k], cfg.leak_shift, self.x[k], f"xbar_new_{k}")
            m.d.comb += self.x_new[k].eq(xbar)
        w = lc.psi_width_shift
        for lane in range(cfg.lanes):
            distance = Signal(signed(cfg.membrane_bits + 1), name=f"psi_distance_{lane}")
            m.d.comb += distance.eq(self.v[lane] - cfg.threshold)
            magnitude = Mux(distance < 0, -distance, distance)
            triangle = (1 << w) - magnitude
            m.d.comb += self.psi[lane].eq(Mux(triangle > 0, triangle, 0) >> (w - lc.psi_bits))
        return m
