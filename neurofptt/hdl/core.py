"""The recurrent LIF core as an Amaranth component.

:class:`LifCore` implements one time step of :mod:`neurofptt.quant.golden` bit for bit, for any
valid :class:`~neurofptt.quant.config.HardwareConfig`.  It is time-multiplexed and event-driven:
one synaptic operation per clock cycle, and only the synapses of inputs and neurons that spiked are
visited, so the cycles of a step scale with the activity (see :func:`cycles_per_step`).

Streams (``amaranth.lib.stream``; a transfer happens on a cycle with ``valid & ready``)::

    i_event    In   {kind: EventKind, index: n_in index}      address events in
    o_spike    Out  {kind: EventKind, index: n_rec index}     recurrent spikes out
    o_readout  Out  {index: n_out index, value: signed, last}  readout values out

A step is zero or more ``SPIKE`` events (inputs that spiked, any order, each index at most once)
followed by one ``STEP``.  After the ``STEP`` the core emits the step's recurrent spikes on
``o_spike`` as ``SPIKE`` events in ascending neuron order followed by one ``STEP`` (the input
format, so cores can be chained), and the ``n_out`` readout values on ``o_readout`` (``index``
0..n_out-1, ``last`` on the final one).  ``CLEAR`` zeroes membranes, previous spikes, partial sums
and readouts (start of a new sample).  Both output streams hold ``valid`` and the payload until
``ready``.

Storage (all ``amaranth.lib.memory.Memory`` with synchronous read ports):

* ``w_in``  depth ``n_in * n_rec``,  word ``w_in[j, i]``  at address ``i * n_rec + j``
* ``w_rec`` depth ``n_rec * n_rec``, word ``w_rec[j, i]`` at address ``i * n_rec + j``
* ``w_out`` depth ``n_rec * n_out``, word ``w_out[k, j]`` at address ``j * n_out + k``
* ``state`` depth ``n_rec``: ``{acc, v, z}`` per neuron (partial sum, membrane, last spike)
* ``readout`` depth ``n_out``: ``{acc, o}`` per readout neuron
* ``spikes`` depth ``n_rec``: indices of the neurons that spiked in the last step, ascending

Every weight memory is organised by presynaptic index, so the fan-out of one event is a run of
consecutive addresses.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.network import QuantizedNetwork

__all__ = [
    "EventKind",
    "LifCore",
    "core_signature",
    "cycles_per_clear",
    "cycles_per_step",
    "event_layout",
    "memory_images",
    "readout_layout",
]


class EventKind(enum.Enum, shape=2):
    """Kind of an address event on ``i_event`` / ``o_spike``."""

    SPIKE = 0  #: the neuron or input ``index`` spiked in this step
    STEP = 1  #: end of the step's events: run the neuron update
    CLEAR = 2  #: zero all state: the start of a new sample


class _Op(enum.Enum, shape=3):
    """Operation carried by the two-stage read/modify/write pipeline."""

    NONE = 0
    ACC_IN = 1  # state[j].acc += w_in[j, i] << w_in_shift
    ACC_REC = 2  # state[j].acc += w_rec[j, i] << w_rec_shift
    UPDATE = 3  # leak, reset, add the partial sum, saturate, threshold
    ACC_OUT = 4  # readout[k].acc += w_out[k, j] << w_out_shift
    CLEAR = 5  # zero state[j] and readout[j]


def event_layout(n: int) -> data.StructLayout:
    """Payload of an address event into ``n`` inputs (``kind`` in bits 0-1, ``index`` above)."""
    return data.StructLayout({"kind": EventKind, "index": unsigned(_index_bits(n))})


def readout_layout(config: HardwareConfig) -> data.StructLayout:
    """Payload of a readout value (``index`` in the low bits, then ``value``, then ``last``)."""
    return data.StructLayout(
        {
            "index": unsigned(_index_bits(config.n_out)),
            "value": signed(config.membrane_bits),
            "last": 1,
        }
    )


def core_signature(config: HardwareConfig) -> wiring.Signature:
    """The port signature of :class:`LifCore` for ``config`` (without ``clk`` and ``rst``)."""
    return wiring.Signature(
        {
            "i_event": In(stream.Signature(event_layout(config.n_in))),
            "o_spike": Out(stream.Signature(event_layout(config.n_rec))),
            "o_readout": Out(stream.Signature(readout_layout(config))),
            "busy": Out(1),
        }
    )


def _index_bits(n: int) -> int:
    """Width of an index into ``n`` items; the same rule as ``HardwareConfig.index_bits``."""
    return max(1, (n - 1).bit_length())


def cycles_per_step(
    config: HardwareConfig, n_input_events: int, n_prev_spikes: int, n_new_spikes: int
) -> int:
    """Clock cycles of one step when events arrive back to back and both outputs are ready.

    Counted from the cycle that accepts the step's first event (a ``SPIKE`` or the ``STEP``) to
    the cycle in which the core can accept the next step's first event::

        n_rec * (n_input_events + n_prev_spikes + 1) + n_out * (n_new_spikes + 1) + 3

    ``n_prev_spikes`` are the recurrent spikes of the previous step (0 after ``CLEAR``) and
    ``n_new_spikes`` those of this step.
    """
    cfg = config
    for name, value, hi in (
        ("n_input_events", n_input_events, cfg.n_in),
        ("n_prev_spikes", n_prev_spikes, cfg.n_rec),
        ("n_new_spikes", n_new_spikes, cfg.n_rec),
    ):
        if not 0 <= value <= hi:
            raise ValueError(f"{name} = {value} must be between 0 and {hi}")
    return (
        cfg.n_rec * (n_input_events + n_prev_spikes + 1) + cfg.n_out * (n_new_spikes + 1) + 3
    )


def cycles_per_clear(config: HardwareConfig) -> int:
    """Clock cycles of a ``CLEAR`` event: ``max(n_rec, n_out) + 1``."""
    return max(config.n_rec, config.n_out) + 1


def memory_images(net: QuantizedNetwork) -> dict[str, list[int]]:
    """The initial contents of the three weight memories, in RTL address order (signed ints)."""
    return {
        # address i * n_rec + j holds w_in[j, i]: row i of the transpose is input i's fan-out
        "w_in": np.asarray(net.w_in).T.reshape(-1).tolist(),
        "w_rec": np.asarray(net.w_rec).T.reshape(-1).tolist(),
        # address j * n_out + k holds w_out[k, j]
        "w_out": np.asarray(net.w_out).T.reshape(-1).tolist(),
    }


def _saturate(value, bits: int):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


def _leak(value, shift: int):
    """``v - (v >> shift)`` with an arithmetic (flooring) shift; ``value`` must be signed."""
    return value - (value >> shift)


class LifCore(wiring.Component):
    """A recurrent LIF layer with a leaky-integrator readout, built from a quantized network.

    Ports: ``i_event`` (in), ``o_spike`` (out), ``o_readout`` (out) streams as described in the
    module documentation, and ``busy`` (out), high while an event is being processed or outputs
    are pending.
    """

    def __init__(self, net: QuantizedNetwork) -> None:
        if not isinstance(net, QuantizedNetwork):
            raise TypeError(f"LifCore needs a QuantizedNetwork, got {type(net).__name__}")
        self.net = net
        self.config = net.config
        super().__init__(core_signature(net.config))

    def elaborate(self, platform) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.config
        n_in, n_rec, n_out = cfg.n_in, cfg.n_rec, cfg.n_out
        mb = cfg.membrane_bits
        images = memory_images(self.net)

        # -- memories --------------------------------------------------------------------------
        def weight_memory(name: str, depth: int):
            mem = Memory(shape=signed(cfg.weight_bits), depth=depth, init=images[name])
            m.submodules[name] = mem
            return mem.read_port()

        w_in_rd = weight_memory("w_in", n_in * n_rec)
        w_rec_rd = weight_memory("w_rec", n_rec * n_rec)
        w_out_rd = weight_memory("w_out", n_rec * n_out)

        state_layout = data.StructLayout(
            {"acc": signed(cfg.acc_bits), "v": signed(mb), "z": unsigned(1)}
        )
        m.submodules.state = state = Memory(shape=state_layout, depth=n_rec, init=[])
        st_wr = state.write_port()
        st_rd = state.read_port(transparent_for=(st_wr,))

        out_layout = data.StructLayout({"acc": signed(cfg.acc_bits), "o": signed(mb)})
        m.submodules.readout = readout = Memory(shape=out_layout, depth=n_out, init=[])
        ro_wr = readout.write_port()
        ro_rd = readout.read_port(transparent_for=(ro_wr,))

        m.submodules.spikes = spikes = Memory(
            shape=unsigned(_index_bits(n_rec)), depth=n_rec, init=[]
        )
        sp_wr = spikes.write_port()
        sp_rd = spikes.read_port(transparent_for=(sp_wr,))  # REC and OUT phases
        sp_em = spikes.read_port()  # spike emitter

        # -- registers -------------------------------------------------------------------------
        j = Signal(range(max(n_rec, n_out, 2)))  # position inside a fan-out run / sweep
        waddr = Signal(range(max(n_in * n_rec, n_rec * n_rec, n_rec * n_out) + 1))
        p = Signal(range(n_rec + 1))  # spike-list entries started in REC / OUT
        n_prev = Signal(range(n_rec + 1))  # spikes of the last completed step
        n_new = Signal(range(n_rec + 1))  # spikes found so far in UPDATE

        s0_valid = Signal()
        s0_op = Signal(_Op)
        s0_j = Signal.like(j)
        s1_valid = Signal()
        s1_op = Signal(_Op)
        s1_j = Signal.like(j)
        m.d.sync += [s1_valid.eq(s0_valid), s1_op.eq(s0_op), s1_j.eq(s0_j)]
        m.d.comb += [st_rd.addr.eq(s0_j), ro_rd.addr.eq(s0_j), sp_rd.addr.eq(p)]

        # -- stage 1: read data is valid, modify and write back ---------------------------------
        st = st_rd.data
        w_in_term = w_in_rd.data << cfg.w_in_shift
        w_rec_term = w_rec_rd.data << cfg.w_rec_shift
        w_out_term = w_out_rd.data << cfg.w_out_shift

        leaked = _leak(st.v, cfg.leak_shift)
        if cfg.reset == "subtract":
            base = leaked - Mux(st.z, cfg.threshold, 0)
        else:
            base = Mux(st.z, 0, leaked)
        v_new = Signal(signed(mb))
        z_new = Signal()
        m.d.comb += [v_new.eq(_saturate(base + st.acc, mb)), z_new.eq(v_new > cfg.threshold)]

        ro = ro_rd.data
        o_new = Signal(signed(mb))
        m.d.comb += o_new.eq(_saturate(_leak(ro.o, cfg.out_leak_shift) + ro.acc, mb))

        n_new_next = Signal.like(n_new)
        m.d.comb += [st_wr.addr.eq(s1_j), ro_wr.addr.eq(s1_j), n_new_next.eq(n_new)]
        with m.If(s1_valid):
            with m.Switch(s1_op):
                with m.Case(_Op.ACC_IN, _Op.ACC_REC):
                    term = Mux(s1_op == _Op.ACC_IN, w_in_term, w_rec_term)
                    m.d.comb += [
                        st_wr.en.eq(1),
                        st_wr.data.acc.eq(st.acc + term),
                        st_wr.data.v.eq(st.v),
                        st_wr.data.z.eq(st.z),
                    ]
                with m.Case(_Op.UPDATE):
                    m.d.comb += [
                        st_wr.en.eq(1),
                        st_wr.data.acc.eq(0),
                        st_wr.data.v.eq(v_new),
                        st_wr.data.z.eq(z_new),
                    ]
                    with m.If(z_new):
                        m.d.comb += [
                            sp_wr.en.eq(1),
                            sp_wr.addr.eq(n_new),
                            sp_wr.data.eq(s1_j),
                            n_new_next.eq(n_new + 1),
                        ]
                with m.Case(_Op.ACC_OUT):
                    m.d.comb += [
                        ro_wr.en.eq(1),
                        ro_wr.data.acc.eq(ro.acc + w_out_term),
                        ro_wr.data.o.eq(ro.o),
                    ]
                with m.Case(_Op.CLEAR):
                    # data stays 0: zero the words that exist at this index
                    m.d.comb += [st_wr.en.eq(s1_j < n_rec), ro_wr.en.eq(s1_j < n_out)]
        m.d.sync += n_new.eq(n_new_next)

        # -- spike emitter: streams the spike list of the last update, then a STEP --------------
        e_busy = Signal()
        e_count = Signal.like(n_prev)
        e_ptr = Signal.like(n_prev)
        e_step_issued = Signal()
        e_valid = Signal()
        e_kind = Signal(EventKind)
        e_start = Signal()
        e_advance = Signal()
        m.d.comb += [
            e_advance.eq(~e_valid | self.o_spike.ready),
            sp_em.addr.eq(e_ptr),
            sp_em.en.eq(e_advance),
            self.o_spike.valid.eq(e_valid),
            self.o_spike.p.kind.eq(e_kind),
            self.o_spike.p.index.eq(Mux(e_kind == EventKind.SPIKE, sp_em.data, 0)),
        ]
        with m.If(e_start):
            m.d.sync += [
                e_busy.eq(1),
                e_count.eq(n_new_next),
                e_ptr.eq(0),
                e_step_issued.eq(0),
                e_valid.eq(0),
            ]
        with m.Elif(e_busy & e_advance):
            with m.If(e_ptr != e_count):
                m.d.sync += [e_valid.eq(1), e_kind.eq(EventKind.SPIKE), e_ptr.eq(e_ptr + 1)]
            with m.Elif(~e_step_issued):
                m.d.sync += [e_valid.eq(1), e_kind.eq(EventKind.STEP), e_step_issued.eq(1)]
            with m.Else():  # the STEP has been transferred
                m.d.sync += [e_valid.eq(0), e_busy.eq(0)]

        # -- readout stream: stage "read" (ro_k) and stage "offer" (ro_valid, ro_kk) --------------
        ro_k = Signal(range(n_out + 1))
        ro_kk = Signal(range(max(n_out, 2)))
        ro_valid = Signal()
        ro_advance = Signal()
        m.d.comb += [
            ro_advance.eq(~ro_valid | self.o_readout.ready),
            self.o_readout.valid.eq(ro_valid),
            self.o_readout.p.index.eq(ro_kk),
            self.o_readout.p.value.eq(o_new),
            self.o_readout.p.last.eq(ro_kk == n_out - 1),
        ]

        # -- control FSM: stage 0 issues one read per cycle -----------------------------------
        def issue(op, index):
            m.d.comb += [s0_valid.eq(1), s0_op.eq(op), s0_j.eq(index)]

        def fan_out_run(op, weight_port, run_length, next_state):
            """Visit the fan-out run of every spike-list entry: ``n_prev * run_length`` cycles."""
            issue(op, j)
            with m.If(j == 0):  # start of a run: its base address comes from the spike list
                start = sp_rd.data * run_length
                m.d.comb += [weight_port.addr.eq(start), sp_rd.addr.eq(p + 1)]
                m.d.sync += [waddr.eq(start + 1), p.eq(p + 1)]
            with m.Else():
                m.d.comb += weight_port.addr.eq(waddr)
                m.d.sync += waddr.eq(waddr + 1)
            with m.If(j == run_length - 1):
                m.d.sync += j.eq(0)
                started = p + 1 if run_length == 1 else p
                with m.If(started == n_prev):
                    m.d.sync += p.eq(0)
                    next_state()
            with m.Else():
                m.d.sync += j.eq(j + 1)

        idx = self.i_event.p.index
        with m.FSM(init="IDLE") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i_event.ready.eq(1)
                with m.If(self.i_event.valid):
                    with m.Switch(self.i_event.p.kind):
                        with m.Case(EventKind.SPIKE):
                            # an index >= n_in (possible unless n_in is a power of two) is ignored
                            with m.If(idx < n_in):
                                issue(_Op.ACC_IN, 0)
                                m.d.comb += w_in_rd.addr.eq(idx * n_rec)
                                if n_rec > 1:
                                    m.d.sync += [waddr.eq(idx * n_rec + 1), j.eq(1)]
                                    m.next = "ACC_IN"
                        with m.Case(EventKind.STEP):
                            m.d.sync += [j.eq(0), p.eq(0), n_new.eq(0)]
                            with m.If(n_prev != 0):
                                m.next = "REC"
                            with m.Else():
                                m.next = "UPDATE"
                        with m.Case(EventKind.CLEAR):
                            m.d.sync += [j.eq(0), n_prev.eq(0)]
                            m.next = "CLEAR"

            with m.State("ACC_IN"):
                issue(_Op.ACC_IN, j)
                m.d.comb += w_in_rd.addr.eq(waddr)
                m.d.sync += waddr.eq(waddr + 1)
                with m.If(j == n_rec - 1):
                    m.d.sync += j.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += j.eq(j + 1)

            with m.State("REC"):

                def to_update():
                    m.next = "UPDATE"

                fan_out_run(_Op.ACC_REC, w_rec_rd, n_rec, to_update)

            with m.State("UPDATE"):
                # the spike list is about to be overwritten: wait until the emitter has sent it
                with m.If(~e_busy):
                    issue(_Op.UPDATE, j)
                    with m.If(j == n_rec - 1):
                        m.d.sync += j.eq(0)
                        m.next = "UPDATE_LAST"
                    with m.Else():
                        m.d.sync += j.eq(j + 1)

            with m.State("UPDATE_LAST"):
                # stage 1 handles the last neuron; the spike count is final at the end of the cycle
                m.d.comb += e_start.eq(1)
                m.d.sync += [n_prev.eq(n_new_next), ro_k.eq(0), ro_valid.eq(0)]
                with m.If(n_new_next != 0):
                    m.next = "OUT"
                with m.Else():
                    m.next = "READOUT"

            with m.State("OUT"):

                def to_readout():
                    m.next = "READOUT"

                fan_out_run(_Op.ACC_OUT, w_out_rd, n_out, to_readout)

            with m.State("READOUT"):
                m.d.comb += [ro_rd.addr.eq(ro_k), ro_rd.en.eq(ro_advance)]
                with m.If(ro_valid & self.o_readout.ready):  # write back what was just sent
                    m.d.comb += [
                        ro_wr.en.eq(1),
                        ro_wr.addr.eq(ro_kk),
                        ro_wr.data.acc.eq(0),
                        ro_wr.data.o.eq(o_new),
                    ]
                with m.If(ro_advance):
                    with m.If(ro_k != n_out):
                        m.d.sync += [ro_valid.eq(1), ro_kk.eq(ro_k), ro_k.eq(ro_k + 1)]
                    with m.Else():
                        m.d.sync += ro_valid.eq(0)
                        m.next = "IDLE"

            with m.State("CLEAR"):
                sweep = max(n_rec, n_out)
                issue(_Op.CLEAR, j)
                with m.If(j == sweep - 1):
                    m.d.sync += j.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += j.eq(j + 1)

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | e_busy | s1_valid)
        return m
