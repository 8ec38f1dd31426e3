"""The recurrent LIF core as an Amaranth component.

:class:`LifCore` implements one time step of :mod:`neurofptt.quant.golden` bit for bit, for any
valid :class:`~neurofptt.quant.config.HardwareConfig`.  It is time-multiplexed and event-driven:
``lanes`` postsynaptic neurons are served per clock cycle (``lanes`` synaptic operations per
cycle), and only the synapses of inputs and neurons that spiked are visited, so the cycles of a
step scale with the activity (see :func:`cycles_per_step`).

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
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory

from neurofptt.hdl.arith import leak, saturate
from neurofptt.hdl.learning import LearningUnit
from neurofptt.hdl.ports import READ_WEIGHTS, EventKind, core_signature, index_bits
from neurofptt.hdl.rows import lowest_set, memory_images, next_row_lane
from neurofptt.quant.config import lane_rows
from neurofptt.quant.network import QuantizedNetwork

__all__ = ["LifCore"]


class _Op(enum.Enum, shape=3):
    """Operation carried by the read/modify/write row pipeline (one row per cycle): stage 0
    reads, stage 1 adds and writes back; ``UPDATE`` writes back in a stage 2."""

    NONE = 0
    ACC_IN = 1  # state[r].acc[l] += w_in[r*P+l, i] << w_in_shift
    ACC_REC = 2  # state[r].acc[l] += w_rec[r*P+l, i] << w_rec_shift
    UPDATE = 3  # leak, reset, add the partial sum, saturate, threshold
    ACC_OUT = 4  # readout[s].acc[l] += w_out[s*P+l, j] << w_out_shift
    CLEAR = 5  # zero state[r] and readout[r]


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

    def elaborate(self, platform) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.config
        P = self.lanes
        n_in, n_rec, n_out = cfg.n_in, cfg.n_rec, cfg.n_out
        R, Ro = lane_rows(n_rec, P), lane_rows(n_out, P)
        mb = cfg.membrane_bits
        images = memory_images(self.net)

        # -- memories --------------------------------------------------------------------------
        weight_row = data.ArrayLayout(signed(cfg.weight_bits), P)

        learning_ports = {}

        def weight_memory(name: str, depth: int):
            mem = Memory(shape=unsigned(P * cfg.weight_bits), depth=depth, init=images[name])
            m.submodules[name] = mem
            port = mem.read_port()
            if cfg.learning is not None:  # the update sweep writes the learned words back
                learning_ports[name.removeprefix("w_")] = (port, mem.write_port())
            return port, data.View(weight_row, port.data)

        w_in_rd, w_in = weight_memory("w_in", n_in * R)
        w_rec_rd, w_rec = weight_memory("w_rec", n_rec * R)
        w_out_rd, w_out = weight_memory("w_out", n_rec * Ro)

        learn = None
        if cfg.learning is not None:
            learn = LearningUnit(m, self.net, P, learning_ports)
            learn.connect_dump(self.o_weights)

        neuron = data.StructLayout({"acc": signed(cfg.acc_bits), "v": signed(mb), "z": 1})
        m.submodules.state = state = Memory(shape=data.ArrayLayout(neuron, P), depth=R, init=[])
        st_wr = state.write_port()
        st_rd = state.read_port(transparent_for=(st_wr,))

        readout_neuron = data.StructLayout({"acc": signed(cfg.acc_bits), "o": signed(mb)})
        m.submodules.readout = readout = Memory(
            shape=data.ArrayLayout(readout_neuron, P), depth=Ro, init=[]
        )
        ro_wr = readout.write_port()
        ro_rd = readout.read_port(transparent_for=(ro_wr,))

        entry = data.StructLayout({"row": unsigned(index_bits(R)), "mask": P})
        m.submodules.spikes = spikes = Memory(shape=entry, depth=R, init=[])
        sp_wr = spikes.write_port()
        sp_rd = spikes.read_port(transparent_for=(sp_wr,))  # REC and OUT phases
        sp_em = spikes.read_port(transparent_for=(sp_wr,))  # spike emitter

        # -- registers -------------------------------------------------------------------------
        j = Signal(range(max(R, Ro, 2)))  # row inside a fan-out run or a sweep
        waddr = Signal(range(max(n_in * R, n_rec * R, n_rec * Ro) + 1))
        p = Signal(range(R + 1))  # spike-list entries taken in REC / OUT
        rem = Signal(P)  # lanes of the current entry not yet visited
        rem_row = Signal(index_bits(R))
        n_prev = Signal(range(R + 1))  # spike-list entries of the last completed step
        n_new = Signal(range(R + 1))  # entries written so far in UPDATE

        s0_valid = Signal()
        s0_op = Signal(_Op)
        s0_j = Signal.like(j)
        s1_valid = Signal()
        s1_op = Signal(_Op)
        s1_j = Signal.like(j)
        m.d.sync += [s1_valid.eq(s0_valid), s1_op.eq(s0_op), s1_j.eq(s0_j)]
        m.d.comb += [st_rd.addr.eq(s0_j), ro_rd.addr.eq(s0_j), sp_rd.addr.eq(p)]
        if learn is not None:
            learn.follow_rows(s1_j)

        # -- stage 1: read data is valid, modify and write back (UPDATE: form v into stage 2) --
        st = st_rd.data
        ro = ro_rd.data
        m.d.comb += [st_wr.addr.eq(s1_j), ro_wr.addr.eq(s1_j)]

        # operand isolation: the update datapath only sees the state row during UPDATE, so it
        # does not toggle during the accumulation phases (less switching, faster simulation)
        upd = Signal.like(st_rd.data, name="update_in")
        with m.If(s1_op == _Op.UPDATE):
            m.d.comb += upd.eq(st)
        # UPDATE is split over two stages: stage 1 forms the new membranes into registers,
        # stage 2 thresholds them, writes the row back and appends it to the spike list (one
        # stage for all of it was the core's critical path)
        s2_update = Signal()
        s2_j = Signal.like(j)
        s2_v = [Signal(signed(mb), name=f"s2_v_{lane}") for lane in range(P)]
        s2_z_prev = Signal(P)
        m.d.sync += [
            s2_update.eq(s1_valid & (s1_op == _Op.UPDATE)),
            s2_j.eq(s1_j),
            s2_z_prev.eq(Cat(*(upd[lane].z for lane in range(P)))),
        ]
        for lane in range(P):
            n = upd[lane]
            leaked = leak(n.v, cfg.leak_shift)
            if cfg.reset == "subtract":
                base = leaked - Mux(n.z, cfg.threshold, 0)
            else:
                base = Mux(n.z, 0, leaked)
            m.d.sync += s2_v[lane].eq(saturate(m, base + n.acc, mb, f"v_new_{lane}"))
        z_new = Signal(P)
        for lane in range(P):
            spikes_now = s2_v[lane] > cfg.threshold
            if (R - 1) * P + lane >= n_rec:  # a padding lane of the last row never spikes
                spikes_now = spikes_now & (s2_j != R - 1)
            m.d.comb += z_new[lane].eq(spikes_now)

        n_new_next = Signal.like(n_new)
        m.d.comb += n_new_next.eq(n_new)
        with m.If(s1_valid), m.Switch(s1_op):
            with m.Case(_Op.ACC_IN, _Op.ACC_REC):
                m.d.comb += st_wr.en.eq(1)
                for lane in range(P):
                    term = Mux(
                        s1_op == _Op.ACC_IN,
                        w_in[lane] << cfg.w_in_shift,
                        w_rec[lane] << cfg.w_rec_shift,
                    )
                    m.d.comb += [
                        st_wr.data[lane].acc.eq(st[lane].acc + term),
                        st_wr.data[lane].v.eq(st[lane].v),
                        st_wr.data[lane].z.eq(st[lane].z),
                    ]
            with m.Case(_Op.ACC_OUT):
                m.d.comb += ro_wr.en.eq(1)
                for lane in range(P):
                    m.d.comb += [
                        ro_wr.data[lane].acc.eq(ro[lane].acc + (w_out[lane] << cfg.w_out_shift)),
                        ro_wr.data[lane].o.eq(ro[lane].o),
                    ]
            with m.Case(_Op.CLEAR):
                # data stays 0: zero the rows that exist at this index
                m.d.comb += [st_wr.en.eq(s1_j < R), ro_wr.en.eq(s1_j < Ro)]
                if learn is not None:
                    learn.clear_row(s1_j)
        with m.If(s2_update):  # stage 2 of UPDATE (stage 1 holds UPDATE or nothing meanwhile)
            m.d.comb += [st_wr.en.eq(1), st_wr.addr.eq(s2_j)]
            for lane in range(P):
                m.d.comb += [
                    st_wr.data[lane].v.eq(s2_v[lane]),
                    st_wr.data[lane].z.eq(z_new[lane]),
                ]  # acc stays 0
            if learn is not None:
                learn.record_update_row(s2_j, s2_v, z_new, s2_z_prev)
            with m.If(z_new != 0):
                m.d.comb += [
                    sp_wr.en.eq(1),
                    sp_wr.addr.eq(n_new),
                    sp_wr.data.row.eq(s2_j),
                    sp_wr.data.mask.eq(z_new),
                    n_new_next.eq(n_new + 1),
                ]
        m.d.sync += n_new.eq(n_new_next)

        def take_spike(rem_mask, rem_r, list_data, name):
            """Next spiking neuron: from the current entry's remaining lanes, else a new entry.

            Returns signals (neuron index, lanes left afterwards, row, entry consumed).
            """
            fresh = Signal(name=f"{name}_fresh")
            mask = Signal(P, name=f"{name}_mask")
            row = Signal(index_bits(R), name=f"{name}_row")
            index = Signal(index_bits(n_rec), name=f"{name}_index")
            left = Signal(P, name=f"{name}_left")
            m.d.comb += [
                fresh.eq(rem_mask == 0),
                mask.eq(Mux(fresh, list_data.mask, rem_mask)),
                row.eq(Mux(fresh, list_data.row, rem_r)),
                index.eq(row * P + lowest_set(mask, P) if P > 1 else row),
                left.eq(mask & (mask - 1)),
            ]
            return index, left, row, fresh

        # -- spike emitter: streams the spike list of the last update, then a STEP --------------
        e_busy = Signal()
        e_count = Signal.like(n_prev)
        e_ptr = Signal.like(n_prev)
        e_rem = Signal(P)
        e_row = Signal(index_bits(R))
        e_step_issued = Signal()
        e_valid = Signal()
        e_kind = Signal(EventKind)
        e_index = Signal(index_bits(n_rec))
        e_start = Signal()
        e_advance = Signal()
        m.d.comb += [
            e_advance.eq(~e_valid | self.o_spike.ready),
            sp_em.addr.eq(e_ptr),
            self.o_spike.valid.eq(e_valid),
            self.o_spike.p.kind.eq(e_kind),
            self.o_spike.p.index.eq(e_index),
        ]
        emit_next = take_spike(e_rem, e_row, sp_em.data, "emit")
        with m.If(e_start):
            m.d.comb += sp_em.addr.eq(0)  # transparent: sees an entry written this cycle
            m.d.sync += [
                e_busy.eq(1),
                e_count.eq(n_new_next),
                e_ptr.eq(0),
                e_rem.eq(0),
                e_step_issued.eq(0),
                e_valid.eq(0),
            ]
        with m.Elif(e_busy & e_advance):
            with m.If((e_rem != 0) | (e_ptr != e_count)):
                index, left, row, fresh = emit_next
                m.d.sync += [
                    e_valid.eq(1),
                    e_kind.eq(EventKind.SPIKE),
                    e_index.eq(index),
                    e_rem.eq(left),
                    e_row.eq(row),
                ]
                with m.If(fresh):
                    m.d.comb += sp_em.addr.eq(e_ptr + 1)
                    m.d.sync += e_ptr.eq(e_ptr + 1)
            with m.Elif(~e_step_issued):
                m.d.sync += [
                    e_valid.eq(1),
                    e_kind.eq(EventKind.STEP),
                    e_index.eq(0),
                    e_step_issued.eq(1),
                ]
            with m.Else():  # the STEP has been transferred
                m.d.sync += [e_valid.eq(0), e_busy.eq(0)]

        # -- readout stream: "read" stage (ro_k) and "offer" stage (ro_valid, ro_kk) -------------
        ro_k = Signal(range(n_out + 1))
        ro_row = Signal(range(Ro + 1))
        ro_lane = Signal(range(max(P, 2)))
        ro_kk = Signal(range(max(n_out, 2)))
        ro_kk_row = Signal(index_bits(Ro))
        ro_kk_lane = Signal(range(max(P, 2)))
        ro_valid = Signal()
        ro_advance = Signal()
        sel = ro[ro_kk_lane] if P > 1 else ro[0]
        o_new = saturate(m, leak(sel.o, cfg.out_leak_shift) + sel.acc, mb, "o_new")
        m.d.comb += [
            ro_advance.eq(~ro_valid | self.o_readout.ready),
            self.o_readout.valid.eq(ro_valid),
            self.o_readout.p.index.eq(ro_kk),
            self.o_readout.p.value.eq(o_new),
            self.o_readout.p.last.eq(ro_kk == n_out - 1),
        ]

        # -- control FSM: stage 0 issues one row per cycle ------------------------------------
        def issue(op, row):
            m.d.comb += [s0_valid.eq(1), s0_op.eq(op), s0_j.eq(row)]

        run_next = take_spike(rem, rem_row, sp_rd.data, "run")
        rem_next = Signal.like(rem)
        p_next = Signal.like(p)
        m.d.comb += [rem_next.eq(rem), p_next.eq(p)]

        def fan_out_run(op, weight_port, run_length, on_done):
            """One run of ``run_length`` rows per spike in the list (``n_prev`` entries)."""
            issue(op, j)
            with m.If(j == 0):  # start of a run: the presynaptic neuron comes from the list
                index, left, row, fresh = run_next
                start = Signal(range(max(2, n_rec * run_length)), name=f"start_{op.name.lower()}")
                m.d.comb += [
                    start.eq(index * run_length),
                    weight_port.addr.eq(start),
                    rem_next.eq(left),
                ]
                m.d.sync += [waddr.eq(start + 1), rem.eq(left), rem_row.eq(row)]
                with m.If(fresh):
                    m.d.comb += [p_next.eq(p + 1), sp_rd.addr.eq(p + 1)]
                    m.d.sync += p.eq(p + 1)
            with m.Else():
                m.d.comb += weight_port.addr.eq(waddr)
                m.d.sync += waddr.eq(waddr + 1)
            with m.If(j == run_length - 1):
                m.d.sync += j.eq(0)
                with m.If((rem_next == 0) & (p_next == n_prev)):
                    m.d.sync += [p.eq(0), rem.eq(0)]
                    on_done()
            with m.Else():
                m.d.sync += j.eq(j + 1)

        def sweep(op, rows, next_state):
            issue(op, j)
            with m.If(j == rows - 1):
                m.d.sync += j.eq(0)
                m.next = next_state
            with m.Else():
                m.d.sync += j.eq(j + 1)

        idx = self.i_event.p.index
        in_start = Signal(range(n_in * R + R), name="start_acc_in")
        m.d.comb += in_start.eq(idx * R)
        with m.FSM(init="IDLE") as fsm:
            with m.State("IDLE"):
                taken = self.i_event.valid
                if learn is None:
                    m.d.comb += self.i_event.ready.eq(1)
                else:  # a load, once started, has the core until its last word
                    m.d.comb += self.i_event.ready.eq(~learn.loading)
                    taken = taken & ~learn.loading
                    learn.load(self.i_weights)
                with m.If(taken), m.Switch(self.i_event.p.kind):
                    # an index >= n_in (possible unless n_in is a power of two) is ignored
                    with m.Case(EventKind.SPIKE), m.If(idx < n_in):
                        if learn is not None:
                            learn.record_input(idx)
                        issue(_Op.ACC_IN, 0)
                        m.d.comb += w_in_rd.addr.eq(in_start)
                        if R > 1:
                            m.d.sync += [waddr.eq(in_start + 1), j.eq(1)]
                            m.next = "ACC_IN"
                    with m.Case(EventKind.STEP):
                        if learn is not None:
                            learn.start_step(self.i_event.p)
                        m.d.sync += [j.eq(0), p.eq(0), rem.eq(0), n_new.eq(0)]
                        with m.If(n_prev != 0):
                            m.next = "REC"
                        with m.Else():
                            m.next = "UPDATE"
                    with m.Case(EventKind.CLEAR):
                        if learn is not None:
                            learn.clear()
                        m.d.sync += [j.eq(0), n_prev.eq(0)]
                        m.next = "CLEAR"
                if learn is not None:
                    read = taken & (self.i_event.p.kind.as_value() == READ_WEIGHTS)
                    with m.If(read):
                        learn.begin()
                        m.next = "DUMP"

            with m.State("ACC_IN"):
                m.d.comb += w_in_rd.addr.eq(waddr)
                m.d.sync += waddr.eq(waddr + 1)
                sweep(_Op.ACC_IN, R, "IDLE")

            with m.State("REC"):

                def rec_done():
                    m.next = "UPDATE"

                fan_out_run(_Op.ACC_REC, w_rec_rd, R, rec_done)

            # the spike list is about to be overwritten: wait until the emitter has sent it
            with m.State("UPDATE"), m.If(~e_busy):
                sweep(_Op.UPDATE, R, "UPDATE_LAST")

            with m.State("UPDATE_LAST"):  # stage 1 forms the last row's membranes
                m.next = "UPDATE_END"

            with m.State("UPDATE_END"):
                # stage 2 writes the last row; the spike list is final at the end of the cycle
                m.d.comb += [e_start.eq(1), sp_rd.addr.eq(0)]
                if learn is not None:
                    learn.end_update()
                m.d.sync += [
                    n_prev.eq(n_new_next),
                    ro_k.eq(0),
                    ro_row.eq(0),
                    ro_lane.eq(0),
                    ro_valid.eq(0),
                ]
                with m.If(n_new_next != 0):
                    m.next = "OUT"
                with m.Else():
                    m.next = "READOUT"

            with m.State("OUT"):

                def out_done():
                    m.next = "READOUT"

                fan_out_run(_Op.ACC_OUT, w_out_rd, Ro, out_done)

            with m.State("READOUT"):
                m.d.comb += [ro_rd.addr.eq(ro_row), ro_rd.en.eq(ro_advance)]
                with m.If(ro_valid & self.o_readout.ready):  # write back what was just sent
                    m.d.comb += [ro_wr.en.eq(1), ro_wr.addr.eq(ro_kk_row)]
                    if learn is not None:
                        learn.record_readout(ro_kk, ro_kk_row, ro_kk_lane, o_new)
                    for lane in range(P):
                        mine = (ro_kk_lane == lane) if P > 1 else True
                        m.d.comb += [
                            ro_wr.data[lane].acc.eq(Mux(mine, 0, ro[lane].acc)),
                            ro_wr.data[lane].o.eq(Mux(mine, o_new, ro[lane].o)),
                        ]
                with m.If(ro_advance):
                    with m.If(ro_k != n_out):
                        m.d.sync += [
                            ro_valid.eq(1),
                            ro_kk.eq(ro_k),
                            ro_kk_row.eq(ro_row),
                            ro_kk_lane.eq(ro_lane),
                            ro_k.eq(ro_k + 1),
                        ]
                        next_row_lane(m, ro_row, ro_lane, P)
                    with m.Else():
                        m.d.sync += ro_valid.eq(0)
                        if learn is None:
                            m.next = "IDLE"
                        else:
                            with m.If(learn.due):
                                if learn.softmax is None:
                                    learn.begin()
                                    m.next = "LEARN"
                                else:  # the softmax error's passes first
                                    m.d.comb += learn.softmax.start.eq(1)
                                    m.next = "SOFTMAX"
                            with m.Else():
                                m.next = "IDLE"

            with m.State("CLEAR"):
                sweep(_Op.CLEAR, max(R, Ro), "IDLE")

            if learn is not None:

                def to_state(name: str):
                    def go() -> None:
                        m.next = name

                    return go

                if learn.softmax is not None:
                    with m.State("SOFTMAX"), m.If(learn.softmax.done):
                        learn.begin()
                        m.next = "LEARN"
                with m.State("LEARN"):
                    learn.issue(to_state("LEARN_LAST"))
                with m.State("LEARN_LAST"):
                    learn.drain(to_state("IDLE"))
                with m.State("DUMP"):
                    learn.dump(self.o_weights, to_state("IDLE"))

        busy = ~fsm.ongoing("IDLE") | e_busy | s1_valid
        if learn is not None:
            busy = busy | learn.loading
        m.d.comb += self.busy.eq(busy)
        return m
