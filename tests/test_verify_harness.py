"""The run harness of :mod:`neurofptt.verify.harness` without a simulator: its Verilog follows
the core's port widths, its files round-trip, and a capture replayed into a
:class:`~neurofptt.verify.streams.StreamBench` yields what the live monitors collect from the
same transfers, errors included.  The simulations of the harness are in
``test_rtl_cocotb.py``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofptt.errors import ConfigError
from neurofptt.hdl.ports import EventKind, event_layout, learn_event_layout, readout_layout
from neurofptt.quant.config import HardwareConfig, LearningConfig
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.verify import run_rtl
from neurofptt.verify.harness import (
    HARNESS_TOP,
    event_table,
    events_of,
    harness_plusargs,
    harness_verilog,
    read_capture,
    replay,
    write_events,
)
from neurofptt.verify.streams import StreamBench, field_reader, frame_inference, pack, unpack

BASE = HardwareConfig(n_in=6, n_rec=9, n_out=3, weight_bits=5, lanes=2)
FPTT = BASE.replace(learning=LearningConfig(mode="fptt", wbar_bits=7))


def _capture(path: Path, rows: list[tuple[int, int, int]]) -> Path:
    path.write_text("".join(f"{tag} {cycle} {payload}\n" for tag, cycle, payload in rows))
    return path


@settings(max_examples=200, deadline=None)
@given(raw=st.integers(0, (1 << 40) - 1), n=st.integers(1, 300), bits=st.integers(4, 24))
def test_field_reader_decodes_as_unpack_does(raw: int, n: int, bits: int) -> None:
    cfg = HardwareConfig(
        n_in=n, n_rec=n, n_out=min(n, 50), membrane_bits=bits, frac_bits=0, threshold=1
    )
    for layout in (event_layout(n), readout_layout(cfg)):
        names = [name for name, _ in layout]
        raw_bits = raw & ((1 << layout.size) - 1)
        fields = unpack(layout, raw_bits)
        assert field_reader(layout, *names)(raw_bits) == tuple(fields[n] for n in names)


@pytest.mark.parametrize("cfg", [BASE, FPTT], ids=["inference", "fptt"])
def test_harness_ports_follow_the_core(cfg: HardwareConfig) -> None:
    text = harness_verilog(cfg, "my_core")
    assert re.search(rf"^module {HARNESS_TOP}\(output reg done\);", text, re.M)
    assert "my_core core (" in text
    event_w = (learn_event_layout(cfg) if cfg.learning else event_layout(cfg.n_in)).size
    assert f"reg [{event_w - 1}:0] word, next_word;" in text
    assert f"wire [{event_layout(cfg.n_rec).size - 1}:0] spike;" in text
    assert f"wire [{readout_layout(cfg).size - 1}:0] readout;" in text
    # a learning core's weight streams are tied off: no load, dumps always taken
    assert ("i_weights__valid(1'b0)" in text) == (cfg.learning is not None)
    assert ("o_weights__ready(1'b1)" in text) == (cfg.learning is not None)
    # o_spike's kind is in the two low bits, STEP's number is what the harness counts
    assert f"spike[1:0] == 2'd{EventKind.STEP.value}" in text


def test_events_file_and_plusargs(tmp_path) -> None:
    x = np.zeros((2, 3, BASE.n_in), np.uint8)
    x[0, 1, [1, 4]] = 1
    events = frame_inference(BASE, x)
    write_events(events, tmp_path / "events.txt")
    words = [int(line, 16) for line in (tmp_path / "events.txt").read_text().split()]
    assert words == [e.word for e in events]
    assert len(words) == 2 * (1 + 3) + 2  # CLEAR and three STEPs per sample, two SPIKEs
    assert events_of(event_table(events)) == events
    assert event_table([]).shape == (0, 3) and events_of(event_table([])) == []
    args = harness_plusargs(tmp_path / "e", tmp_path / "c", 6, 18, 1000)
    assert args == [f"+events={tmp_path / 'e'}", f"+capture={tmp_path / 'c'}"] + [
        "+steps=6",
        "+readouts=18",
        "+budget=1000",
    ]


def _run_capture(cfg: HardwareConfig, x: np.ndarray, rng: np.random.Generator):
    """A plausible capture of ``x``: every event taken, random spikes, readout values in
    order, the cycles increasing; and what it should decode to."""
    events = frame_inference(cfg, x)
    spike_layout, readout_layout_ = event_layout(cfg.n_rec), readout_layout(cfg)
    batch, steps, _ = x.shape
    spikes = rng.random((batch, steps, cfg.n_rec)) < 0.3
    readout = rng.integers(cfg.v_min, cfg.v_max + 1, (batch, steps, cfg.n_out))
    rows, cycle, starts = [], 1, np.zeros((batch, steps), np.int64)
    for event in events:
        rows.append((0, cycle, event.word))
        if event.step >= 0 and starts[event.sample, event.step] == 0:
            starts[event.sample, event.step] = cycle
        cycle += 1
        if event.word & 3 != EventKind.STEP.value:
            continue
        b, t = event.sample, event.step
        for j in np.flatnonzero(spikes[b, t]):
            rows.append((1, cycle, pack(spike_layout, kind=EventKind.SPIKE, index=int(j))))
            cycle += 1
        rows.append((1, cycle, pack(spike_layout, kind=EventKind.STEP)))
        for k in range(cfg.n_out):
            last = int(k == cfg.n_out - 1)
            value = int(readout[b, t, k])
            rows.append((2, cycle, pack(readout_layout_, index=k, value=value, last=last)))
            cycle += 2
    rows.append((3, cycle, 0))
    return events, rows, spikes, readout, starts


def test_replay_fills_the_bench_as_the_monitors_do(tmp_path) -> None:
    rng = np.random.default_rng(4)
    x = (rng.random((3, 4, BASE.n_in)) < 0.4).astype(np.uint8)
    events, rows, spikes, readout, starts = _run_capture(BASE, x, rng)
    bench = StreamBench(BASE, 3, 4)
    complete, cycles = replay(bench, events, read_capture(_capture(tmp_path / "c", rows)))
    assert complete and bench.errors == []
    np.testing.assert_array_equal(bench.spikes, spikes)
    np.testing.assert_array_equal(bench.readout, readout)
    np.testing.assert_array_equal(bench.step_start, starts)
    last_readout = [r for r in rows if r[0] == 2][-1][1]
    assert cycles == last_readout
    assert bench.step_end[-1, -1] == last_readout and bench.steps_done == 12


def test_replay_reports_broken_streams(tmp_path) -> None:
    """The same stream rules as the live monitors, plus what only a capture can show."""
    rng = np.random.default_rng(5)
    x = (rng.random((1, 2, BASE.n_in)) < 0.4).astype(np.uint8)
    events, rows, *_ = _run_capture(BASE, x, rng)
    layout = event_layout(BASE.n_rec)
    first_step = next(i for i, r in enumerate(rows) if r[0] == 1)
    bad = [
        (1, 0, pack(layout, kind=EventKind.SPIKE, index=4)),
        (1, 0, pack(layout, kind=EventKind.SPIKE, index=2)),
        (1, 0, pack(layout, kind=EventKind.CLEAR)),
    ]
    broken = rows[:first_step] + bad + rows[first_step:]
    end = broken.pop()
    broken += [(1, end[1], pack(layout, kind=EventKind.SPIKE, index=0))] * 2 + [end]
    bench = StreamBench(BASE, 1, 2)
    complete, _ = replay(bench, events, read_capture(_capture(tmp_path / "c", broken)))
    assert complete
    assert [e.detail for e in bench.errors] == [
        "o_spike index 2 after 4: not ascending",
        "o_spike event kind 2 index 0",
        "o_spike: 2 transfers after the run's last step",
    ]


def test_replay_reports_undefined_payloads_and_timeouts(tmp_path) -> None:
    rng = np.random.default_rng(6)
    x = (rng.random((1, 2, BASE.n_in)) < 0.4).astype(np.uint8)
    events, rows, *_ = _run_capture(BASE, x, rng)
    text = _capture(tmp_path / "c", rows).read_text()
    # Icarus prints a payload with X bits as x
    first_readout = next(line for line in text.splitlines() if line.startswith("2 "))
    xed = text.replace(first_readout, first_readout.rsplit(" ", 1)[0] + " x", 1)
    empty = StreamBench(BASE, 1, 2)
    assert replay(empty, events, read_capture(_capture(tmp_path / "e", [])))[0] is False
    assert empty.steps_done == 0 and empty.errors == []
    (tmp_path / "x").write_text(xed)
    bench = StreamBench(BASE, 1, 2)
    complete, _ = replay(bench, events, read_capture(tmp_path / "x"))
    assert complete
    assert "o_readout: X or Z in the payload" in [e.detail for e in bench.errors]

    # the budget ran out: the end line says so
    timed_out = rows[: len(rows) // 2] + [(3, 999, 1)]
    bench = StreamBench(BASE, 1, 2)
    complete, cycles = replay(bench, events, read_capture(_capture(tmp_path / "t", timed_out)))
    assert not complete and cycles == 999
    # the simulation ended before the harness did: no end line
    bench = StreamBench(BASE, 1, 2)
    assert replay(bench, events, read_capture(_capture(tmp_path / "n", rows[:-1])))[0] is False


def test_harness_refuses_backpressure(tmp_path) -> None:
    zeros = np.zeros((2, 2), np.int64)
    net = QuantizedNetwork(HardwareConfig(n_in=2, n_rec=2, n_out=2), zeros, zeros, zeros)
    with pytest.raises(ConfigError, match="backpressure"):
        run_rtl(net, np.zeros((1, 2, 2)), tmp_path, backpressure=True, harness=True)
