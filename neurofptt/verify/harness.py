"""A Verilog harness that streams a whole inference run through the core inside the simulator.

The cocotb bench of :mod:`neurofptt.verify.streams` wakes Python at every transfer on the
core's three streams, which sets the pace under Verilator (``docs/performance.md``).  Without
backpressure nothing has to be decided per cycle, so the run can move into Verilog:
:func:`harness_verilog` writes a top module around the core that owns the clock and the reset,
reads the ``i_event`` words from a text file (one hexadecimal word per line, written by
:func:`write_events`) and offers them back to back, keeps both outputs ready, and writes every
transfer with its cycle to a capture file.  It raises ``done`` once every event is taken and
every step's spikes and readouts are out, or when the cycle budget runs out.

Python then replays the capture through the same per-word checks as the live benches
(:meth:`~neurofptt.verify.streams.StreamBench.spike_checker`,
:meth:`~neurofptt.verify.streams.StreamBench.readout_checker`,
:meth:`~neurofptt.verify.streams.StreamBench.taken`), so both benches fill a
:class:`~neurofptt.verify.streams.StreamBench` the same way and report the same errors.

The harness depends on the configuration only through the ports' payload widths and the core's
module name; file names, counts and the budget are plusargs, so a rebuilt design is only needed
when the core changes.

Capture lines are ``TAG CYCLE PAYLOAD`` in decimal: tag 0 an ``i_event`` word taken, 1 an
``o_spike`` event, 2 an ``o_readout`` value, 3 the end (payload 1 if the budget ran out).
Cycles count the clock edges after reset, the first at which the core is out of reset being 1,
as :meth:`~neurofptt.verify.streams.CocotbPorts.cycle` counts them from the end of its reset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape

from neurofptt.hdl.ports import EventKind, core_signature, event_layout
from neurofptt.quant.config import HardwareConfig
from neurofptt.verify.streams import CLOCK_NS, Checker, Event, StreamBench

__all__ = [
    "HARNESS_TOP",
    "Capture",
    "event_table",
    "events_of",
    "harness_plusargs",
    "harness_verilog",
    "read_capture",
    "replay",
    "write_events",
]

#: the harness's module name (the simulation's top level)
HARNESS_TOP = "neurofptt_harness"

_EVENT, _SPIKE, _READOUT, _END = range(4)


def _payload_width(cfg: HardwareConfig, port: str) -> int:
    return Shape.cast(core_signature(cfg).members[port].signature.members["payload"].shape).width


def harness_verilog(cfg: HardwareConfig, core: str) -> str:
    """The Verilog of the harness around the core module ``core`` built for ``cfg``.

    The harness counts the steps whose spikes are out by the ``STEP`` events on ``o_spike``,
    reading ``kind`` where :func:`~neurofptt.hdl.ports.event_layout` puts it.  A learning
    core's weight streams stay idle: its ``i_weights`` never offers a word and ``o_weights`` is
    always ready."""
    kind = event_layout(cfg.n_rec)["kind"]
    kind_bits = f"[{kind.offset + kind.width - 1}:{kind.offset}]"
    event_w = _payload_width(cfg, "i_event")
    spike_w = _payload_width(cfg, "o_spike")
    readout_w = _payload_width(cfg, "o_readout")
    weights = ""
    if cfg.learning is not None:
        dump_w = _payload_width(cfg, "o_weights")
        weights = (
            f"    .i_weights__valid(1'b0), .i_weights__payload({dump_w}'d0),\n"
            "    .i_weights__ready(),\n"
            "    .o_weights__valid(), .o_weights__payload(), .o_weights__ready(1'b1),\n"
        )
    half = CLOCK_NS // 2
    step = f"{kind.width}'d{EventKind.STEP.value}"
    return f"""// The run harness of neurofptt.verify.harness around `{core}`: events from a file,
// every transfer and its cycle to a capture file.  Plusargs: +events=PATH +capture=PATH
// +steps=N (steps whose spikes end in STEP) +readouts=N (readout values) +budget=CYCLES.
module {HARNESS_TOP}(output reg done);
  reg clk = 1'b0;
  reg rst = 1'b1;
  always #{half} clk = ~clk;

  reg [8*4096-1:0] events_path, capture_path;
  integer events_fd, capture_fd, status;
  reg [63:0] steps, readouts, budget, cycle, steps_out, readouts_out;
  reg [{event_w - 1}:0] word, next_word;
  reg offer;

  wire event_ready, spike_valid, readout_valid, busy;
  wire [{spike_w - 1}:0] spike;
  wire [{readout_w - 1}:0] readout;

  {core} core (
    .clk(clk), .rst(rst),
    .i_event__valid(offer), .i_event__payload(word), .i_event__ready(event_ready),
    .o_spike__valid(spike_valid), .o_spike__payload(spike), .o_spike__ready(1'b1),
    .o_readout__valid(readout_valid), .o_readout__payload(readout), .o_readout__ready(1'b1),
{weights}    .busy(busy)
  );

  initial begin
    done = 1'b0;
    if (!$value$plusargs("events=%s", events_path) || !$value$plusargs("capture=%s", capture_path)
        || !$value$plusargs("steps=%d", steps) || !$value$plusargs("readouts=%d", readouts)
        || !$value$plusargs("budget=%d", budget)) begin
      $display("{HARNESS_TOP}: needs +events= +capture= +steps= +readouts= +budget=");
      $finish;
    end
    events_fd = $fopen(events_path, "r");
    capture_fd = $fopen(capture_path, "w");
    if (events_fd == 0 || capture_fd == 0) begin
      $display("{HARNESS_TOP}: cannot open the events or the capture file");
      $finish;
    end
    status = $fscanf(events_fd, "%h", word);
    offer = status == 1;
    repeat (2) @(posedge clk);
    rst <= 1'b0;
  end

  always @(posedge clk) begin
    if (rst) begin
      cycle <= 1;
      steps_out <= 0;
      readouts_out <= 0;
    end else if (!done) begin
      cycle <= cycle + 1;
      if (offer && event_ready) begin
        $fwrite(capture_fd, "{_EVENT} %0d %0d\\n", cycle, word);
        status = $fscanf(events_fd, "%h", next_word);
        offer <= status == 1;
        word <= next_word;
      end
      if (spike_valid) begin
        $fwrite(capture_fd, "{_SPIKE} %0d %0d\\n", cycle, spike);
        if (spike{kind_bits} == {step}) steps_out <= steps_out + 1;
      end
      if (readout_valid) begin
        $fwrite(capture_fd, "{_READOUT} %0d %0d\\n", cycle, readout);
        readouts_out <= readouts_out + 1;
      end
      if ((!offer && steps_out >= steps && readouts_out >= readouts) || cycle >= budget) begin
        $fwrite(capture_fd, "{_END} %0d %0d\\n", cycle, cycle >= budget);
        $fclose(capture_fd);
        done <= 1'b1;
      end
    end
  end
endmodule
"""


def write_events(events: Iterable[Event], path: Path) -> None:
    """The ``i_event`` words of ``events`` as the harness reads them, one hexadecimal word per
    line."""
    path.write_text("".join(f"{event.word:x}\n" for event in events))


def event_table(events: Sequence[Event]) -> np.ndarray:
    """``events`` as an ``(n, 3)`` array of word, sample and step, for the stimulus file: the
    testbench replays the capture against the events the harness was given, not a framing of
    its own."""
    return np.array([(e.word, e.sample, e.step) for e in events], np.int64).reshape(-1, 3)


def events_of(table: np.ndarray) -> list[Event]:
    """The events of an :func:`event_table`."""
    return [Event(word, sample, step) for word, sample, step in table.tolist()]


def harness_plusargs(
    events: Path, capture: Path, steps: int, readouts: int, budget: int
) -> list[str]:
    """The plusargs of a harness run: the events file, the capture file to write, the steps
    and readout values to wait for and the cycle budget."""
    return [
        f"+events={events}",
        f"+capture={capture}",
        f"+steps={steps}",
        f"+readouts={readouts}",
        f"+budget={budget}",
    ]


@dataclass(frozen=True)
class Capture:
    """A harness run's transfers: ``(cycle, payload)`` rows ``(n, 2)`` of each stream in the
    order they happened; ``end`` the cycle the harness stopped at and ``timed_out`` whether it
    stopped at the budget (``end`` -1 if it never stopped: the simulation ended early)."""

    events: np.ndarray
    spikes: np.ndarray
    readout: np.ndarray
    end: int
    timed_out: bool


def read_capture(path: Path) -> Capture:
    """Parse a capture file; a payload with X or Z bits (which Icarus prints as ``x`` or
    ``z``; Verilator has none) reads as -1, which the checks report."""
    tokens = path.read_text().split()
    try:
        rows = np.array(tokens, np.int64)
    except ValueError:
        rows = np.array([int(tok) if tok.lstrip("-").isdigit() else -1 for tok in tokens])
    rows = rows[: len(rows) - len(rows) % 3].reshape(-1, 3)
    ends = rows[rows[:, 0] == _END]

    def stream(tag: int) -> np.ndarray:
        return rows[rows[:, 0] == tag, 1:]

    return Capture(
        events=stream(_EVENT),
        spikes=stream(_SPIKE),
        readout=stream(_READOUT),
        end=int(ends[0, 1]) if len(ends) else -1,
        timed_out=bool(ends[0, 2]) if len(ends) else False,
    )


def _feed(bench: StreamBench, name: str, checker: Checker, words: np.ndarray) -> None:
    """Send ``(payload, cycle)`` of every row of ``words`` to ``checker``; transfers after it
    has all the run's are reported (a live bench stops watching there)."""
    rows = words.tolist()
    where, used = (0, 0), 0
    try:
        where = next(checker)
        for cycle, payload in rows:
            used += 1
            where = checker.send((bench.defined(name, where, payload), cycle))
    except StopIteration:
        if used < len(rows):
            extra = len(rows) - used
            bench.protocol(*where, f"{name}: {extra} transfers after the run's last step")


def replay(bench: StreamBench, events: Sequence[Event], capture: Capture) -> tuple[bool, int]:
    """Fill ``bench`` from ``capture`` as its live monitors would have from the same run
    (``events`` the words in the order the harness offered them); returns whether the run
    completed and its cycles, from the end of the reset to its last transfer, as
    :func:`~neurofptt.verify.streams.run_cocotb` counts them."""
    for event, (cycle, _) in zip(events, capture.events.tolist(), strict=False):
        bench.taken(event, cycle)
    _feed(bench, "o_spike", bench.spike_checker(), capture.spikes)
    _feed(bench, "o_readout", bench.readout_checker(), capture.readout)
    complete = (
        capture.end >= 0
        and not capture.timed_out
        and len(capture.events) == len(events)
        and bench.steps_done == bench.batch * bench.steps
    )
    if not complete:
        return False, max(capture.end, 0)
    streams = (capture.events, capture.spikes, capture.readout)
    return True, int(max((rows[-1, 0] for rows in streams if len(rows)), default=0))
