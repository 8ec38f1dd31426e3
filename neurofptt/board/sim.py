"""The board in simulation: the board top's Verilog under cocotb, driven through its UART pins
by the host driver itself.

:class:`UartPins` is a :class:`~neurofptt.board.transport.Transport` whose bytes are 8N1 frames
on the top's ``rx`` pin and whose reads come from frames on its ``tx`` pin, so the same
:class:`~neurofptt.board.Board` code that talks to a serial port runs a session against the
simulated board.  The driver is blocking code; it runs in a thread beside the simulator
(cocotb's ``bridge``), and each transport call waits on the simulation (``resume``).

:func:`simulate_board` builds the board top for one network, lets the driver load a network,
run samples and, with labels, learn them sample by sample, reading every weight back after each,
and returns what the driver got; the caller compares it with the golden model.  It can flip a
bit of one byte the host sends, as noise on the line would: the board then refuses the command,
the driver raises :class:`~neurofptt.board.transport.LinkError`, and the session recovers as a
host should, with a reset and the whole session again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, Event, FallingEdge, SimTimeoutError, with_timeout

from neurofptt.board.driver import Board, BoardTrace
from neurofptt.board.transport import BoardError, LinkError
from neurofptt.hdl.board.protocol import BoardInfo
from neurofptt.hdl.board.top import BOARD_TOP, RX_BUFFER, render_board_verilog
from neurofptt.io import atomic_write_bytes
from neurofptt.onchip import MATRICES
from neurofptt.quant.golden import check_spike_input
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.verify.bench_common import BenchRun
from neurofptt.verify.runner import require_simulator, simulate_testbench
from neurofptt.verify.streams import CLOCK_NS

__all__ = ["SIM_DIVISOR", "BoardSimResult", "UartPins", "simulate_board"]

#: clock cycles per bit of the simulated link: the fewest the receiver takes, so that a byte
#: costs 40 cycles and a session stays short
SIM_DIVISOR = 4
#: the cocotb test module of a board session
SESSION_MODULE = "neurofptt.board.sim"


class UartPins:
    """The host end of the simulated board's UART: frames of ``divisor`` clock cycles per bit
    on ``dut.rx``, frames read from ``dut.tx``; a read that waits ``timeout_cycles`` without a
    byte raises :class:`BoardError`.  ``flip`` ``(n, bit)``: bit ``bit`` of the ``n``-th byte
    sent (from 0) is inverted on the line.  Its methods are called from a ``bridge`` thread."""

    def __init__(
        self,
        dut: Any,
        divisor: int,
        timeout_cycles: int = 200_000,
        flip: tuple[int, int] | None = None,
    ) -> None:
        self.dut = dut
        self.divisor = divisor
        self.timeout_cycles = timeout_cycles
        self.flip = flip
        self.sent = 0  # bytes sent so far
        self.received = bytearray()
        self.arrived = Event()
        self.framing_errors = 0

    async def start(self) -> None:
        """Idle the line, start the clock, reset for two cycles and start listening on
        ``tx``."""
        dut = self.dut
        dut.rx.value = 1
        dut.rst.value = 1
        Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start(start_high=False)
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        cocotb.start_soon(self._listen())

    async def _listen(self) -> None:
        clk, tx, d = self.dut.clk, self.dut.tx, self.divisor
        while True:
            await FallingEdge(tx)
            await ClockCycles(clk, d // 2)
            byte = 0
            for bit in range(8):
                await ClockCycles(clk, d)
                byte |= (int(tx.value) & 1) << bit
            await ClockCycles(clk, d)
            if int(tx.value) != 1:
                self.framing_errors += 1
                continue
            self.received.append(byte)
            self.arrived.set()

    async def _send(self, data: bytes) -> None:
        clk, rx = self.dut.clk, self.dut.rx
        for byte in data:
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                rx.value = bit
                await ClockCycles(clk, self.divisor)

    async def _receive(self, n: int) -> bytes:
        while len(self.received) < n:
            self.arrived.clear()
            try:
                await with_timeout(self.arrived.wait(), self.timeout_cycles * CLOCK_NS, "ns")
            except SimTimeoutError:
                raise BoardError(
                    f"the simulated board sent {len(self.received)} of {n} bytes within "
                    f"{self.timeout_cycles} cycles"
                ) from None
        data = bytes(self.received[:n])
        del self.received[:n]
        return data

    async def _break(self) -> None:
        clk, rx = self.dut.clk, self.dut.rx
        rx.value = 0
        await ClockCycles(clk, 20 * self.divisor)
        rx.value = 1
        await ClockCycles(clk, 12 * self.divisor)  # a frame the board may have been sending
        self.received.clear()

    def write(self, data: bytes) -> None:
        line = bytearray(data)
        if self.flip is not None and 0 <= self.flip[0] - self.sent < len(data):
            line[self.flip[0] - self.sent] ^= 1 << self.flip[1]
        self.sent += len(data)
        resume(self._send)(bytes(line))

    def read(self, n: int) -> bytes:
        return resume(self._receive)(n)

    def send_break(self) -> None:
        resume(self._break)()

    def close(self) -> None:
        """Nothing to release."""


def _session(pins: UartPins, run: BenchRun) -> dict[str, np.ndarray]:
    """What the driver does in a session (blocking, in the bridge thread): load the network of
    the stimulus, run its samples, or learn them one by one reading the weights back after
    each; returns the arrays of the results file.  After a :class:`LinkError` the board is
    reset and the session starts again, once; ``link_error`` keeps the error."""
    board = Board(pins)
    try:
        out = _attempt(board, run)
    except LinkError as exc:
        board.reset()
        out = _attempt(board, run)
        out["link_error"] = np.array(str(exc))
    board.close()
    return out


def _attempt(board: Board, run: BenchRun) -> dict[str, np.ndarray]:
    """One pass of :func:`_session` on a board just reset."""
    a = run.arrays
    net = QuantizedNetwork(run.config, a["load_w_in"], a["load_w_rec"], a["load_w_out"])
    board.load(net)
    out: dict[str, Any] = {}
    if "labels" not in a:
        trace = board.run(run.spikes)
    else:
        traces, weights = [], {m: [] for m in MATRICES}
        for b in range(run.spikes.shape[0]):
            traces.append(board.learn(run.spikes[b : b + 1], a["labels"][b : b + 1]))
            learned, wbar = board.read_weights()
            for m in MATRICES:
                weights[m].append(learned.matrix(m))
                if wbar:
                    out.setdefault(f"wbar_{m}", []).append(wbar[m])
        trace = BoardTrace(
            np.concatenate([t.spikes for t in traces]), np.concatenate([t.readout for t in traces])
        )
        out.update({f"w_{m}": np.stack(w) for m, w in weights.items()})
        out.update({k: np.stack(v) for k, v in out.items() if k.startswith("wbar_")})
    info = board.refresh_info()
    out.update(spikes=trace.spikes, readout=trace.readout)
    out["info"] = np.array(json.dumps(dataclasses.asdict(info)))
    return out


@cocotb.test()
async def test_board_session(dut: Any) -> None:
    """The driver's session against the board top, through its UART pins only."""
    run = BenchRun.from_environment()
    flip = tuple(int(v) for v in run.arrays["flip"]) if "flip" in run.arrays else None
    pins = UartPins(dut, int(run.arrays["divisor"]), flip=flip)
    await pins.start()
    try:
        results = await bridge(_session)(pins, run)
    except BoardError as exc:
        results = {"error": np.array(str(exc))}
    results["framing_errors"] = np.int64(pins.framing_errors)
    np.savez(run.results, **results)
    assert "error" not in results, str(results["error"])


@dataclass
class BoardSimResult:
    """What the driver got from the simulated board: ``trace`` (every step's spikes and
    readouts), with labels the weights read back after each sample (``weights[m]``
    ``(B, n_post, n_pre)``, and for FPTT ``wbar[m]``), and the board's ``info`` at the end of
    the session (its status bits: a byte lost or a bad frame during the session).  With a bit
    flipped on the line, ``link_error`` is the driver's :class:`LinkError` of the first
    attempt, and the rest is what the second attempt got after a reset."""

    trace: BoardTrace
    weights: dict[str, np.ndarray]
    wbar: dict[str, np.ndarray]
    info: BoardInfo
    work_dir: Path
    link_error: str | None = None


def simulate_board(
    built: QuantizedNetwork,
    spikes: np.ndarray,
    work_dir: str | Path,
    *,
    net: QuantizedNetwork | None = None,
    labels: np.ndarray | None = None,
    divisor: int = SIM_DIVISOR,
    rx_buffer: int = RX_BUFFER,
    flip: tuple[int, int] | None = None,
) -> BoardSimResult:
    """Simulate the board built for ``built`` under Icarus + cocotb while the driver loads
    ``net`` (default ``built``) and runs ``spikes`` ``(B, T, n_in)``, or, with ``labels``,
    learns them one sample at a time and reads the weights back after each.  ``flip``
    ``(n, bit)`` inverts a bit of the ``n``-th byte the host sends (:class:`UartPins`).  A
    session in which the driver failed raises its :class:`BoardError` (with the simulator's
    log); a simulation that ended without results,
    :class:`~neurofptt.errors.VerificationError`."""
    tool_env = require_simulator("icarus")
    net = built if net is None else net
    work_dir = Path(work_dir).resolve()
    rtl = work_dir / "rtl" / f"{BOARD_TOP}.v"
    rtl.parent.mkdir(parents=True, exist_ok=True)
    text = render_board_verilog(built, divisor, rx_buffer).encode()
    if not rtl.is_file() or rtl.read_bytes() != text:
        atomic_write_bytes(rtl, text)
    stimulus = {
        "config": np.array(json.dumps(built.config.to_dict())),
        "spikes": check_spike_input(spikes, built.config.n_in).astype(np.uint8),
        "divisor": np.int64(divisor),
        **{f"load_w_{m}": net.matrix(m) for m in MATRICES},
    }
    if labels is not None:
        stimulus["labels"] = np.asarray(labels, np.int64)
    if flip is not None:
        stimulus["flip"] = np.array(flip, np.int64)
    results, _ = simulate_testbench(
        rtl, BOARD_TOP, work_dir, SESSION_MODULE, stimulus, False, 0, "icarus", tool_env
    )
    with np.load(results, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if "error" in arrays:
        raise BoardError(f"{arrays['error']}; log {work_dir / 'sim.log'}")
    return BoardSimResult(
        trace=BoardTrace(arrays["spikes"].astype(bool), arrays["readout"].astype(np.int64)),
        weights={m: arrays[f"w_{m}"] for m in MATRICES if f"w_{m}" in arrays},
        wbar={m: arrays[f"wbar_{m}"] for m in MATRICES if f"wbar_{m}" in arrays},
        info=BoardInfo(**json.loads(str(arrays["info"]))),
        work_dir=work_dir,
        link_error=str(arrays["link_error"]) if "link_error" in arrays else None,
    )
