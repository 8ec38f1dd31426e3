"""The core's control: it takes the address events and issues the row pipeline's operations.

One row is issued per cycle (stage 0 of the row pipeline, ``issue``), with the weight word it
needs addressed in the same cycle.  A step runs through these states::

    IDLE         take events; a SPIKE issues the first of its R ACC_IN rows; any other event
                 that is not STEP or CLEAR is dropped
    ACC_IN       the other R - 1 rows of the input's fan-out, or, for a SPIKE of an input
                 already in the step, back to IDLE after one cycle, its first row dropped
    REC          the fan-out of every spike of the previous step: R ACC_REC rows each
    UPDATE       the R UPDATE rows (after the spike emitter has sent the previous list)
    UPDATE_LAST  the last row passes the update's stages (UPDATE_WRITE - 1 cycles)
    UPDATE_END   the last row is written: the spike list is final, the emitter starts
    OUT_READ     the run cursor reads the new list's first entry (OUT_READ cycles)
    OUT          the fan-out of every new spike into the readouts: Ro ACC_OUT rows each
    OUT_END      the last ACC_OUT row is written (ACC_WRITE - 1 cycles)
    READOUT      the readout stream sends the n_out values
    CLEAR        max(R, Ro) CLEAR rows, also the state ``rst`` leaves the core in

and on a learning core ``LEARN`` (an update) and ``DUMP`` (a weight dump), which wait for the
learning unit.  Each state's cycles are those of :func:`~neurofptt.hdl.cost.cycles_per_step`.

The inputs of a step form a set (:class:`InputSet`): the golden model's input is one bit per
input and step, so a second ``SPIKE`` of an input in the same step is dropped; its weights
would otherwise be added twice, past the worst case the partial sums are sized for.  Starting
in ``CLEAR`` makes ``rst`` equivalent to a ``CLEAR`` event: the registers return to their
initial values and the sweep zeroes the rows the memories still hold.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.arith import times
from neurofptt.hdl.layouts import (
    ACC_WRITE,
    UPDATE_WRITE,
    RowOp,
    addr_width,
    learning_control,
    row_op_layout,
    row_shape,
    tap,
)
from neurofptt.hdl.ports import (
    READ_WEIGHTS,
    EventKind,
    event_layout,
    index_bits,
    learn_event_layout,
)
from neurofptt.hdl.readout import readout_control
from neurofptt.hdl.spikes import cursor_signature, emitter_signature
from neurofptt.hdl.state_flags import StateFlags
from neurofptt.quant.config import HardwareConfig, lane_rows

__all__ = ["OUT_READ", "InputSet", "Sequencer", "sequencer_signature"]

#: cycles of OUT_READ: the run cursor reads the new list's first entry, then holds its spike
OUT_READ = 2


class InputSet(wiring.Component):
    """The inputs that have spiked in the current step, one bit per input.

    ``seen`` says whether input ``index`` is in the set; ``add`` puts it in, ``clear`` (a
    ``CLEAR``, or the end of the step's ``UPDATE``) empties the set.  ``bits`` is the whole set,
    bit ``i`` for input ``i``: the learning unit's input traces read it during ``UPDATE``,
    so the set lasts until the last row's traces are written.  ``n_in`` flip-flops and an
    ``n_in``-to-1 multiplexer; a learning core needs the bits for its traces anyway.

    An ``add`` is registered (the index and a flag) and lands in ``bits`` on the next cycle;
    ``seen`` also compares ``index`` with the registered add, so a repeat on that very cycle is
    still seen, and a ``clear`` on it drops the add, as it would have cleared the bit.  Decoded
    straight from the event handshake, the ``n_in`` bits' enables had been the 256-256-16
    e-prop core's longest path (the handshake through a chain of six LUTs into the enables).
    ``bits`` lags an add by that cycle; nothing reads it before the step's ``UPDATE``.

    A ``clear`` is registered too and empties ``bits`` on the next cycle, in which ``seen``
    disregards them: decoded from the event handshake straight into the reset of the ``n_in``
    flip-flops, spread over the part, it had been the 256-256-16 FPTT core's longest path.
    """

    def __init__(self, n_in: int) -> None:
        self.n_in = n_in
        super().__init__(
            {
                "index": In(index_bits(n_in)),
                "add": In(1),
                "clear": In(1),
                "seen": Out(1),
                "bits": Out(n_in),
            }
        )

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        bits = Signal(self.n_in, name="step_inputs")
        added = Signal(name="added")
        added_index = Signal.like(self.index, name="added_index")
        cleared = Signal(name="inputs_cleared")
        m.d.sync += [added.eq(self.add & ~self.clear), added_index.eq(self.index)]
        m.d.sync += cleared.eq(self.clear)
        pending = added & (added_index == self.index)
        held = bits.bit_select(self.index, 1) & ~cleared
        m.d.comb += [self.bits.eq(bits), self.seen.eq(held | pending)]
        with m.If(cleared):
            m.d.sync += bits.eq(0)
        with m.Elif(added):
            m.d.sync += bits.bit_select(added_index, 1).eq(1)
        return m


def sequencer_signature(cfg: HardwareConfig) -> wiring.Signature:
    """Ports of :class:`Sequencer`: the events in, the issued rows and weight addresses out,
    and the control of the spike list, the emitter, the readouts and (learning) the learning
    unit, which also sees every ``taken`` event and the step's set of ``inputs``."""
    rows = lane_rows(cfg.n_rec, cfg.lanes)
    out_rows = lane_rows(cfg.n_out, cfg.lanes)
    learning = cfg.learning is not None
    events = learn_event_layout(cfg) if learning else event_layout(cfg.n_in)
    members = {
        "i_event": In(stream.Signature(events)),
        "issue": Out(tap(row_op_layout(cfg))),
        "w_in_addr": Out(addr_width(cfg.n_in * rows)),
        "w_rec_addr": Out(addr_width(cfg.n_rec * rows)),
        "w_out_addr": Out(addr_width(cfg.n_rec * out_rows)),
        "run": Out(cursor_signature(cfg)),
        "spikes_restart": Out(1),
        "spike_count": In(range(rows + 1)),
        "emitter": Out(emitter_signature(cfg)),
        "readout": Out(readout_control()),
        "idle": Out(1),
        "drop": Out(1),
    }
    if learning:
        members["taken"] = Out(tap(events))
        members["learning"] = Out(learning_control())
        members["inputs"] = Out(cfg.n_in)
    return wiring.Signature(members)


class Sequencer(wiring.Component):
    """The control FSM of :class:`~neurofptt.hdl.core.LifCore` (see the module docstring).

    ``i_event`` is taken in ``IDLE`` only (on a learning core not while a weight load runs).
    The fan-out of an input ``i`` is the ``R`` words from ``i * R`` of ``w_in``; that of a spike
    of neuron ``j`` the ``R`` words from ``j * R`` of ``w_rec`` or the ``Ro`` words from
    ``j * Ro`` of ``w_out``, the spiking neurons coming from the spike list through ``run``.
    A ``SPIKE`` of an input already in the step's :class:`InputSet`, one of an index ``>= n_in``
    (possible unless ``n_in`` is a power of two) and, on an inference core, an event of kind 3
    are taken and dropped, in one cycle each; with ``R > 1`` a repeat costs a second cycle, in
    which the lookup's result drops its first row.  The FSM starts in ``CLEAR``, so after ``rst``
    the core zeroes its rows before it takes an event.
    """

    def __init__(self, cfg: HardwareConfig) -> None:
        self.cfg = cfg
        super().__init__(sequencer_signature(cfg))

    def _goto(self, m: Module, state: str) -> None:
        """Enter ``state`` with its flags (:class:`StateFlags`) and ``idle``."""
        self._states.goto(m, state)
        m.d.sync += self._idle.eq(state == "IDLE")

    def _issue(self, m: Module, op: RowOp, row) -> None:
        m.d.comb += [self.issue.valid.eq(1), self.issue.p.op.eq(op), self.issue.p.row.eq(row)]

    def _sweep(self, m: Module, j: Signal, op: RowOp, rows: int, next_state: str) -> None:
        """Issue ``op`` for rows ``j .. rows - 1``, one per cycle, then go to ``next_state``."""
        self._issue(m, op, j)
        with m.If(j == rows - 1):
            m.d.sync += j.eq(0)
            self._goto(m, next_state)
        with m.Else():
            m.d.sync += j.eq(j + 1)

    def _wait(self, m: Module, counter: Signal, cycles: int, next_state: str) -> None:
        """Stay ``cycles`` cycles in this state (``counter`` starts at 0), then ``next_state``."""
        with m.If(counter == cycles - 1):
            m.d.sync += counter.eq(0)
            self._goto(m, next_state)
        with m.Else():
            m.d.sync += counter.eq(counter + 1)

    def _fan_out(
        self,
        m: Module,
        j: Signal,
        waddr: Signal,
        op: RowOp,
        run: int,
        next_state: str,
        *,
        restart: bool,
    ) -> None:
        """One run of ``run`` rows of ``op`` per spike of the list, after the last run go to
        ``next_state`` (and with ``restart`` point the cursor at the list's start again).  The
        weight words are at ``waddr``, loaded with ``index * run`` of the next spike on a
        run's last cycle (the cursor holds the next spike from the run's second cycle on) and
        with the first spike's before the first run; a run of one row reads at the cursor's
        index itself."""
        walk = self.run
        self._issue(m, op, j)
        with m.If(j == 0):
            m.d.comb += walk.take.eq(1)
        with m.If(j == run - 1):
            m.d.sync += j.eq(0)
            if run > 1:
                m.d.sync += waddr.eq(times(walk.index, run))
            with m.If(walk.last if run == 1 else ~walk.more):
                if restart:
                    m.d.comb += walk.restart.eq(1)
                self._goto(m, next_state)
        with m.Else():
            m.d.sync += [j.eq(j + 1), waddr.eq(waddr + 1)]

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.cfg
        lanes, n_in, n_rec = cfg.lanes, cfg.n_in, cfg.n_rec
        rows, out_rows = lane_rows(n_rec, lanes), lane_rows(cfg.n_out, lanes)
        learning = cfg.learning is not None
        j = Signal(row_shape(cfg), name="j")  # the row inside a fan-out run or a sweep
        waddr = Signal(range(max(n_in * rows, n_rec * rows, n_rec * out_rows) + 1))
        n_prev = Signal(range(rows + 1))  # spike-list entries of the last completed step
        wait = Signal(range(UPDATE_WRITE), name="drain")  # cycles while the pipeline drains
        m.d.comb += self.run.count.eq(n_prev)
        # the FSM starts in CLEAR, where no flag is set
        self._states = states = StateFlags("READOUT")
        # whether events are taken (in IDLE), in a flip-flop of its own set with every
        # transition (:meth:`_goto`): decoded from the FSM's state, the handshake, and what a
        # taken event enables, would wait on the decode's route
        self._idle = idle = Signal(name="takes_events")
        m.d.comb += self.readout.run.eq(states["READOUT"])

        event = self.i_event
        idx = event.p.index
        in_start = Signal(range(n_in * rows + rows), name="start_acc_in")
        m.d.comb += in_start.eq(times(idx, rows))
        m.submodules.inputs = inputs = InputSet(n_in)
        m.d.comb += inputs.index.eq(idx)
        if learning:
            m.d.comb += self.inputs.eq(inputs.bits)
        # a SPIKE's first row is issued before the step's input set is looked up: the
        # lookup (an n_in-to-1 multiplexer) would otherwise lie in front of every register the
        # issue writes.  Its result goes into ``repeat`` alone.  A repeat is dropped on the next
        # cycle (``drop``: the row in stage 1 is discarded); with R > 1 that cycle is ACC_IN's
        # first, which issues nothing and returns to IDLE, so such a repeat costs two cycles.
        # Taking events on that cycle would put the lookup in front of ``in_run`` and the
        # handshake (``idle``), the 256-256-16 cores' longest path.
        repeat = Signal(name="repeat_q")
        m.d.sync += repeat.eq(0)
        m.d.comb += self.drop.eq(repeat)

        # the weight addresses come from registers through at most one multiplexer whose
        # select is a register: a wide core spreads each memory over dozens of block RAMs, and
        # routing the address to all of them takes most of a cycle.  In IDLE the first fan-out
        # word of whatever input is offered is read (from the event's index): whether the event
        # is taken only decides the issue.  ``in_run``, set with ``j``, is ``j != 0`` wherever
        # ``w_in`` is read (IDLE, ACC_IN), in a flip-flop of its own: decoded from the FSM (or
        # from ``repeat``), its route in front of ``w_in``'s address was the demo FPTT core's
        # longest path.
        in_run = Signal(name="in_run")
        m.d.sync += in_run.eq(0)
        m.d.comb += [
            self.w_in_addr.eq(Mux(in_run, waddr, in_start)),
            self.w_rec_addr.eq(self.run.index if rows == 1 else waddr),
            self.w_out_addr.eq(self.run.index if out_rows == 1 else waddr),
        ]

        # IDLE's work: take an event and start what it asks for.  Whether the core is idle
        # comes from a register (``idle``), so the handshake and what it enables (the input
        # set, the first ACC_IN row, a weight load's words) do not wait on the FSM's decoded
        # state; only the transitions are decoded in the FSM below.
        ready = idle & ~self.learning.loading if learning else idle
        taken = Signal(name="event_taken")
        m.d.comb += [event.ready.eq(ready), taken.eq(ready & event.valid)]
        kind = event.p.kind
        spike = Signal(name="take_spike")
        step, clear = taken & (kind == EventKind.STEP), taken & (kind == EventKind.CLEAR)
        m.d.comb += spike.eq(taken & (kind == EventKind.SPIKE) & (idx < n_in))
        dump = taken & (kind.as_value() == READ_WEIGHTS) if learning else None

        def take_events() -> None:
            """IDLE's transitions (the rest of IDLE's work is after the FSM)."""
            if rows > 1:
                with m.If(spike):
                    self._goto(m, "ACC_IN")
            with m.If(step):
                self._goto(m, "UPDATE")
                with m.If(n_prev != 0):
                    self._goto(m, "REC")
            with m.If(clear):
                self._goto(m, "CLEAR")
            if learning:
                with m.If(dump):
                    self._goto(m, "DUMP")

        with m.FSM(init="CLEAR"):
            with m.State("IDLE"):
                take_events()

            with m.State("ACC_IN"):
                with m.If(repeat):  # the SPIKE taken on the last cycle was a repeat
                    m.d.sync += j.eq(0)
                    self._goto(m, "IDLE")
                with m.Else():
                    m.d.sync += [waddr.eq(waddr + 1), in_run.eq(j != rows - 1)]
                    self._sweep(m, j, RowOp.ACC_IN, rows, "IDLE")

            with m.State("REC"):  # the cursor was restarted at the end of the last OUT
                self._fan_out(m, j, waddr, RowOp.ACC_REC, rows, "UPDATE", restart=False)

            # the spike list is about to be overwritten: wait until the emitter has sent it
            with m.State("UPDATE"), m.If(~self.emitter.busy):
                self._sweep(m, j, RowOp.UPDATE, rows, "UPDATE_LAST")

            with m.State("UPDATE_LAST"):  # the last row passes the update's stages
                self._wait(m, wait, UPDATE_WRITE - 1, "UPDATE_END")

            with m.State("UPDATE_END"):
                # the last row is written; the spike list is final at the end of the cycle
                # and the last row's input traces have read the step's inputs
                count = self.spike_count
                m.d.comb += [
                    inputs.clear.eq(1),
                    self.run.restart.eq(1),
                    self.emitter.start.eq(1),
                    self.emitter.count.eq(count),
                    self.readout.start.eq(1),
                ]
                m.d.sync += n_prev.eq(count)
                self._goto(m, "OUT_READ")

            # the cursor reads the list's first entry, then holds its first spike, whose
            # first w_out word is loaded into the address register
            with m.State("OUT_READ"):
                with m.If(wait == OUT_READ - 1):
                    m.d.sync += [wait.eq(0), waddr.eq(times(self.run.index, out_rows))]
                    with m.If(n_prev != 0):
                        self._goto(m, "OUT")
                    with m.Else():
                        self._goto(m, "OUT_END")
                with m.Else():
                    m.d.sync += wait.eq(wait + 1)

            with m.State("OUT"):  # restart: the next step's REC walks the list again
                self._fan_out(m, j, waddr, RowOp.ACC_OUT, out_rows, "OUT_END", restart=True)

            with m.State("OUT_END"):  # the last ACC_OUT row is written before READOUT reads
                self._wait(m, wait, ACC_WRITE - 1, "READOUT")

            with m.State("READOUT"), m.If(self.readout.done):
                if learning:
                    with m.If(self.learning.due):
                        m.d.comb += self.learning.start.eq(1)
                        self._goto(m, "LEARN")
                    with m.Else():
                        self._goto(m, "IDLE")
                else:
                    self._goto(m, "IDLE")

            with m.State("CLEAR"):
                self._sweep(m, j, RowOp.CLEAR, max(rows, out_rows), "IDLE")

            if learning:
                for state in ("LEARN", "DUMP"):
                    with m.State(state), m.If(self.learning.done):
                        self._goto(m, "IDLE")

        # after the FSM.  While idle, ``waddr`` is loaded with the second address of an input's
        # fan-out, or with the first of the list's first spike for a STEP, whether or not the
        # event is taken: nothing read at ``waddr`` in IDLE is used (j = 0: ``w_in`` is read at
        # the event's own address), so only a taken event's value matters, and the handshake is
        # not in front of the register
        with m.If(idle & (kind == EventKind.STEP)):
            m.d.sync += waddr.eq(times(self.run.index, rows))
        with m.Elif(idle):
            m.d.sync += waddr.eq(in_start + 1)
        with m.If(spike):
            self._issue(m, RowOp.ACC_IN, 0)
            m.d.comb += inputs.add.eq(1)
            m.d.sync += repeat.eq(inputs.seen)
            if rows > 1:  # into ACC_IN, whose first cycle drops a repeat
                m.d.sync += [j.eq(1), in_run.eq(1)]
        with m.If(step):
            m.d.comb += self.spikes_restart.eq(1)
            m.d.sync += j.eq(0)
        with m.If(clear):
            m.d.comb += inputs.clear.eq(1)
            m.d.sync += [j.eq(0), n_prev.eq(0)]
        m.d.comb += self.idle.eq(idle)
        if learning:
            m.d.comb += [
                self.learning.idle.eq(idle),
                self.learning.dump.eq(dump),
                self.taken.valid.eq(taken),
                self.taken.p.eq(event.p),
            ]
        return m
