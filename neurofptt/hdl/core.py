"""The recurrent LIF core as an Amaranth component, composed of the components below.

:class:`LifCore` implements one time step of :mod:`neurofptt.quant.golden` bit for bit, for any
valid :class:`~neurofptt.quant.config.HardwareConfig`.  It is time-multiplexed and event-driven:
``lanes`` postsynaptic neurons are served per clock cycle (``lanes`` synaptic operations per
cycle), and only the synapses of inputs and neurons that spiked are visited, so the cycles of a
step scale with the activity (see :func:`cycles_per_step`).

Streams (``amaranth.lib.stream``; a transfer happens on a cycle with ``valid & ready``)::

    i_event    In   {kind: EventKind, index: n_in index}      address events in
    o_spike    Out  {kind: EventKind, index: n_rec index}     recurrent spikes out
    o_readout  Out  {index: n_out index, value: signed, last}  readout values out

A step is zero or more ``SPIKE`` events (inputs that spiked, any order; a repeated index in
the same step is dropped, as are indices ``>= n_in`` and, on an inference core, events of kind
3) followed by one ``STEP``.  After the ``STEP`` the core emits the step's recurrent spikes on
``o_spike`` as ``SPIKE`` events in ascending neuron order followed by one ``STEP`` (the input
format, so cores can be chained; ``o_spike`` never carries ``CLEAR``), and the ``n_out``
readout values on ``o_readout`` (``index`` 0..n_out-1, ``last`` on the final one).  ``CLEAR``
zeroes membranes, previous spikes, partial sums and readouts (start of a new sample), and
``rst`` leaves the core as ``CLEAR`` does, dropping any output group in progress.  Both output
streams hold ``valid`` and the payload until ``ready``.

Neurons are grouped in rows of ``lanes``: neuron ``j`` is lane ``j % lanes`` of row
``j // lanes``; there are ``R = ceil(n_rec / lanes)`` recurrent rows and
``Ro = ceil(n_out / lanes)`` readout rows.  Storage (all ``amaranth.lib.memory.Memory`` with
synchronous read ports)::

    w_in     depth n_in  * R,  word i * R  + r = w_in [r*lanes + l, i]  for l in lanes
    w_rec    depth n_rec * R,  word i * R  + r = w_rec[r*lanes + l, i]
    w_out    depth n_rec * Ro, word j * Ro + s = w_out[s*lanes + l, j]
    state    depth R,  per lane {acc, v, z}: partial sum, membrane, last spike
    readout  depth Ro, per lane {acc, o}
    spikes   depth R,  {row, mask}: the rows of the last step with at least one spike, ascending

Every weight memory is organised by presynaptic index, so the fan-out of one event is a run of
consecutive addresses; lanes beyond ``n_rec`` / ``n_out`` in the last row hold zero weights.

The components and what flows between them (all one clock domain)::

    Sequencer     takes i_event; issues one row per cycle (stage 0) and addresses its
                  weight word in w_in / w_rec / w_out
    NeuronRows    state memory: stage 1 accumulates or clears; UPDATE (NeuronUpdate) writes
                  back in stage 2 and passes the row on to SpikeList (and LearningUnit)
    ReadoutRows   readout memory: ACC_OUT and CLEAR in stage 1; the o_readout stream
    SpikeList     the rows with spikes of the last UPDATE, read by two SpikeCursors: the
                  Sequencer's fan-out runs (REC, OUT) and the SpikeEmitter (o_spike)
    LearningUnit  learning cores: traces, errors, the update sweep, o_weights and i_weights

Stage 1 of the row pipeline is one register between the Sequencer's ``issue`` and the row
owners, which register the weight words read for it (:mod:`neurofptt.hdl.layouts`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring

from neurofptt.hdl.blocks import SlicedMemory
from neurofptt.hdl.layouts import connect_taps, row_op_layout, tap, weight_word_layout
from neurofptt.hdl.learning import LearningUnit
from neurofptt.hdl.neuron import NeuronRows
from neurofptt.hdl.ports import core_signature
from neurofptt.hdl.readout import ReadoutRows
from neurofptt.hdl.rows import memory_images
from neurofptt.hdl.sequencer import Sequencer
from neurofptt.hdl.spikes import SpikeCursor, SpikeEmitter, SpikeList
from neurofptt.quant.config import lane_rows
from neurofptt.quant.network import QuantizedNetwork

__all__ = ["LifCore"]


class LifCore(wiring.Component):
    """A recurrent LIF layer with a leaky-integrator readout, built from a quantized network.

    ``lanes`` postsynaptic neurons are processed per clock cycle (default 1).  Ports:
    ``i_event`` (in), ``o_spike`` (out), ``o_readout`` (out) streams as described in the module
    documentation, and ``busy`` (out), high while an event is being processed or outputs are
    pending.  A learning core (``config.learning`` set) also has ``o_weights`` (out), which
    dumps the weights on a ``READ_WEIGHTS`` event, and ``i_weights`` (in), which loads them
    while the core is idle (:mod:`neurofptt.hdl.learning`, ``docs/hardware.md`` section 9);
    ``busy`` then also covers a load that has started and not ended.
    """

    def __init__(self, net: QuantizedNetwork) -> None:
        if not isinstance(net, QuantizedNetwork):
            raise TypeError(f"LifCore needs a QuantizedNetwork, got {type(net).__name__}")
        self.lanes = net.config.lanes
        self.net = net
        self.config = net.config
        super().__init__(core_signature(net.config))

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.config
        m.submodules.sequencer = seq = Sequencer(cfg)
        learn = None
        if cfg.learning is not None:
            m.submodules.learning = learn = LearningUnit(self.net)
        words = self._weight_memories(m, seq, learn)
        m.submodules.neurons = neurons = NeuronRows(cfg)
        m.submodules.readout = readout = ReadoutRows(cfg)
        m.submodules.spikes = spikes = SpikeList(cfg)
        m.submodules.run_cursor = cursor = SpikeCursor(cfg)
        m.submodules.emitter = emitter = SpikeEmitter(cfg)

        # stage 1 of the row pipeline: the weight word of the row issued on the previous cycle
        # is there; stage 2 is in the row owners, a register on
        stage1 = tap(row_op_layout(cfg)).create(path=("stage1",))
        stage2 = Signal(name="stage2_valid")
        m.d.sync += [
            stage1.valid.eq(seq.issue.valid),
            stage1.payload.eq(seq.issue.payload),
            stage2.eq(stage1.valid),
        ]
        kept = tap(row_op_layout(cfg)).create(path=("stage1_kept",))  # a repeat's row dropped
        m.d.comb += [kept.valid.eq(stage1.valid & ~seq.drop), kept.payload.eq(stage1.payload)]
        rows = [neurons.op, readout.op] + ([learn.rows] if learn is not None else [])
        connect_taps(m, kept, *rows)
        m.d.comb += [
            neurons.w_in.eq(words["w_in"]),
            neurons.w_rec.eq(words["w_rec"]),
            readout.w_out.eq(words["w_out"]),
            spikes.restart.eq(seq.spikes_restart),
            seq.spike_count.eq(spikes.count),
        ]
        wiring.connect(m, wiring.flipped(self.i_event), seq.i_event)
        wiring.connect(m, seq.run, cursor.walk)
        wiring.connect(m, spikes.run, cursor.list)
        wiring.connect(m, spikes.emit, emitter.list)
        wiring.connect(m, seq.emitter, emitter.control)
        wiring.connect(m, seq.readout, readout.control)
        wiring.connect(m, emitter.o_spike, wiring.flipped(self.o_spike))
        wiring.connect(m, readout.o_readout, wiring.flipped(self.o_readout))

        busy = ~seq.idle | emitter.control.busy | stage1.valid | stage2
        if learn is None:
            wiring.connect(m, neurons.update, spikes.append)
        else:
            connect_taps(m, neurons.update, spikes.append, learn.update)
            wiring.connect(m, neurons.updating, learn.updating)
            wiring.connect(m, seq.taken, learn.event)
            m.d.comb += learn.inputs.eq(seq.inputs)
            wiring.connect(m, readout.sent, learn.readout)
            wiring.connect(m, seq.learning, learn.control)
            wiring.connect(m, learn.o_weights, wiring.flipped(self.o_weights))
            wiring.connect(m, wiring.flipped(self.i_weights), learn.i_weights)
            busy = busy | learn.control.loading
        m.d.comb += self.busy.eq(busy)
        return m

    def _weight_memories(
        self, m: Module, seq: Sequencer, learn: LearningUnit | None
    ) -> dict[str, data.View]:
        """The three weight memories, read at the sequencer's addresses, or at the learning
        unit's while it is active (it also writes them); returns the word each reads."""
        cfg = self.config
        lanes = cfg.lanes
        rows, out_rows = lane_rows(cfg.n_rec, lanes), lane_rows(cfg.n_out, lanes)
        images = memory_images(self.net)
        depths = {"w_in": cfg.n_in * rows, "w_rec": cfg.n_rec * rows, "w_out": cfg.n_rec * out_rows}
        words = {}
        for name, depth in depths.items():
            m.submodules[name] = mem = SlicedMemory(
                lanes * cfg.weight_bits, depth, images[name], writable=learn is not None
            )
            rd = mem.read
            addr = getattr(seq, f"{name}_addr")
            if learn is None:
                m.d.comb += rd.addr.eq(addr)
            else:
                user = getattr(learn, f"{name}_read")
                wiring.connect(m, getattr(learn, f"{name}_write"), mem.write)
                m.d.comb += [
                    rd.addr.eq(Mux(learn.active, user.addr, addr)),
                    user.data.eq(rd.data),
                ]
            words[name] = data.View(weight_word_layout(cfg), rd.data)
        return words
