"""The skip markers for the tests that need an RTL simulator: a test runs when the simulator
passes the same check the product makes before it builds a testbench
(:func:`neurofptt.verify.runner.require_simulator`), and is skipped with that check's message,
which names what is missing and how to install it, when it does not."""

from __future__ import annotations

import pytest

from neurofptt.errors import ToolMissingError
from neurofptt.verify.runner import require_simulator


def simulator_missing(name: str) -> str:
    """Why simulator ``name`` (``"icarus"`` or ``"verilator"``) cannot run the testbenches
    here: :func:`require_simulator`'s :class:`ToolMissingError` message, "" when it can."""
    try:
        require_simulator(name)
    except ToolMissingError as exc:
        return str(exc)
    return ""


_ICARUS = simulator_missing("icarus")
_VERILATOR = simulator_missing("verilator")

needs_icarus = pytest.mark.skipif(bool(_ICARUS), reason=f"Icarus Verilog is not usable: {_ICARUS}")
needs_verilator = pytest.mark.skipif(
    bool(_VERILATOR), reason=f"Verilator is not usable: {_VERILATOR}"
)
