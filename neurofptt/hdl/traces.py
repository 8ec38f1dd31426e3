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
from neurofptt.hdl.layouts import row_shape, tap
from neurofptt.quant.config import HardwareConfig, lane_rows, learning_config

__all__ = ["TraceUpdate", "inputs_per_word", "neuron_trace_layout", "trace_row_layout"]


def neuron_trace_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A recurrent neuron's traces: ``zbar`` (of its spikes, as ``W_rec``'s presynaptic
    trace) and ``obar`` (as ``W_out``'s)."""
    tb = learning_config(cfg).trace_bits
    return data.StructLayout({"zbar": unsigned(tb), "obar": unsigned(tb)})


def inputs_per_word(cfg: HardwareConfig) -> int:
    """``K``: input traces per word of the ``input_traces`` table, so that its words fit in the
    ``R`` rows of ``UPDATE``."""
    return lane_rows(cfg.n_in, lane_rows(cfg.n_rec, cfg.lanes))


def trace_row_layout(cfg: HardwareConfig) -> data.StructLayout:
    """A row leaving ``UPDATE``, as the trace update needs it: its index, its traces ``old``
    and input traces ``x_old`` as the tables hold them, its previous spikes ``z_prev``, new
    spikes ``z`` and new membranes ``v``, and the step's input bits ``x`` of the word."""
    lc = learning_config(cfg)
    lanes, k, tb = cfg.lanes, inputs_per_word(cfg), lc.trace_bits
    return data.StructLayout(
        {
            "row": row_shape(cfg),
            "old": data.ArrayLayout(neuron_trace_layout(cfg), lanes),
            "x_old": data.ArrayLayout(unsigned(tb), k),
            "z_prev": lanes,
            "z": lanes,
            "x": k,
            "v": data.ArrayLayout(signed(cfg.membrane_bits), lanes),
        }
    )


class TraceUpdate(wiring.Component):
    """The new traces and ``psi`` of one row, a row per cycle, one carry chain per cycle.

    In: ``row``, a row leaving ``UPDATE`` (:func:`trace_row_layout`).  The leaked traces and
    the membrane's distance from the threshold are registered; on the next cycle the new
    traces leave on ``traces`` (``new``, ``x_new``) and the distance's magnitude is registered;
    on the one after ``psi`` leaves on ``psi`` (``psi_bits + 1`` bits: the peak
    ``2**psi_bits`` included), each with the row's index.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        lc = learning_config(cfg)
        lanes, k, tb = cfg.lanes, inputs_per_word(cfg), lc.trace_bits
        traces = data.StructLayout(
            {
                "row": row_shape(cfg),
                "new": data.ArrayLayout(neuron_trace_layout(cfg), lanes),
                "x_new": data.ArrayLayout(unsigned(tb), k),
            }
        )
        psi = data.StructLayout(
            {"row": row_shape(cfg), "psi": data.ArrayLayout(unsigned(lc.psi_bits + 1), lanes)}
        )
        super().__init__(
            {
                "row": In(tap(trace_row_layout(cfg))),
                "traces": Out(tap(traces)),
                "psi": Out(tap(psi)),
            }
        )

    def _leaked(self, m: Module, trace: Value, shift: int, spike: Value, name: str) -> Value:
        """``usat(leak(trace) + spike << trace_frac_bits)``: the leak registered, the spike
        added on the next cycle."""
        lc = learning_config(self.cfg)
        leaked = Signal(unsigned(lc.trace_bits), name=f"{name}_leaked")
        spiked = Signal(name=f"{name}_spike")
        m.d.sync += [leaked.eq(trace - (trace >> shift)), spiked.eq(spike)]
        return usat(m, leaked + Mux(spiked, 1 << lc.trace_frac_bits, 0), lc.trace_bits, name)

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg, lc = self.cfg, learning_config(self.cfg)
        row, traces, psi = self.row.p, self.traces, self.psi
        m.d.sync += [
            traces.valid.eq(self.row.valid),
            traces.p.row.eq(row.row),
            psi.valid.eq(traces.valid),
            psi.p.row.eq(traces.p.row),
        ]
        for lane in range(cfg.lanes):
            old, new = row.old[lane], traces.p.new[lane]
            zbar = self._leaked(m, old.zbar, cfg.leak_shift, row.z_prev[lane], f"zbar_new_{lane}")
            obar = self._leaked(m, old.obar, cfg.out_leak_shift, row.z[lane], f"obar_new_{lane}")
            m.d.comb += [new.zbar.eq(zbar), new.obar.eq(obar)]
        for k in range(inputs_per_word(cfg)):
            xbar = self._leaked(m, row.x_old[k], cfg.leak_shift, row.x[k], f"xbar_new_{k}")
            m.d.comb += traces.p.x_new[k].eq(xbar)
        w = lc.psi_width_shift
        for lane in range(cfg.lanes):
            # data beside psi's valid flag: no reset, which keeps them off the reset's net
            distance = Signal(
                signed(cfg.membrane_bits + 1), name=f"psi_distance_{lane}", reset_less=True
            )
            magnitude = Signal(
                unsigned(cfg.membrane_bits + 1), name=f"psi_magnitude_{lane}", reset_less=True
            )
            m.d.sync += [
                distance.eq(row.v[lane] - cfg.threshold),
                magnitude.eq(Mux(distance < 0, -distance, distance)),
            ]
            triangle = (1 << w) - magnitude
            m.d.comb += psi.p.psi[lane].eq(Mux(triangle > 0, triangle, 0) >> (w - lc.psi_bits))
        return m
