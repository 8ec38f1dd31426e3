"""States of an FSM kept in flip-flops of their own, for the logic that waits on them."""

from __future__ import annotations

from amaranth.hdl import Module, Signal

__all__ = ["StateFlags"]


class StateFlags:
    """The states the rest of a core waits on, each in a flip-flop of its own that is set on
    the clock edge the FSM enters the state and cleared on the one it leaves, so that it equals
    ``fsm.ongoing(state)`` on every cycle.  Every transition goes through :meth:`goto`; a flag
    starts at 0, so the FSM's reset state has none.

    A state decoded from the FSM's register lies two or three LUTs and a route from the FSM in
    front of whatever it enables; on a wide core those users are spread over the die (the
    sequencer's ``READOUT``: the readout memory's write and read ports; the learning unit's
    ``SWEEP``: the read addresses of the trace tables it shares with the trace update), and
    that route set the clock: a flip-flop per state can be placed next to its users."""

    def __init__(self, *states: str) -> None:
        self.flags = {state: Signal(name=f"in_{state.lower()}") for state in states}

    def goto(self, m: Module, state: str) -> None:
        """Enter ``state`` on the next clock edge (``m.next``), with the flags."""
        m.next = state
        m.d.sync += [flag.eq(name == state) for name, flag in self.flags.items()]

    def __getitem__(self, state: str) -> Signal:
        return self.flags[state]
