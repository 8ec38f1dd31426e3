"""The stream driver and monitors of :mod:`neurofptt.verify.streams` on their own: payloads
against Amaranth's own encoding of the port layouts, the framing of samples, stalls reproducible
from the seed, and the stream rules checked on scripted ports (no simulator), plus the
Amaranth adapter's timeout on a core that never takes an event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from neurofptt.hdl.ports import (
    READ_WEIGHTS,
    EventKind,
    core_signature,
    event_layout,
    learn_event_layout,
    readout_layout,
    weight_dump_layout,
)
from neurofptt.quant.config import HardwareConfig, LearningConfig
from neurofptt.verify.streams import (
    STALL_RATES,
    Event,
    Load,
    Stalls,
    StreamBench,
    cycle_budget,
    decode_word,
    encode_word,
    frame_run,
    frame_sample,
    pack,
    random_stalls,
    run_amaranth,
    unpack,
    unpack_many,
)

BASE = HardwareConfig(n_in=6, n_rec=9, n_out=3, weight_bits=5, lanes=2)
EPROP = BASE.replace(learning=LearningConfig(mode="eprop"))
FPTT = BASE.replace(learning=LearningConfig(mode="fptt", wbar_bits=7))


def _random_fields(layout: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Random in-range values for every field of ``layout`` (extremes included)."""
    fields = {}
    for name, field in layout:
        shape = field.shape
        if hasattr(shape, "elem_shape"):  # an array of signed lanes
            bits = shape.elem_shape.width
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            values = rng.integers(lo, hi + 1, size=shape.length)
            values[0], values[-1] = lo, hi
            fields[name] = [int(v) for v in values]
            continue
        bits = field.width
        signed = getattr(shape, "signed", False)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        fields[name] = int(rng.integers(lo, hi + 1))
    return fields


LAYOUTS = {
    "event": lambda: event_layout(BASE.n_in),
    "spike": lambda: event_layout(BASE.n_rec),
    "readout": lambda: readout_layout(BASE),
    "learn-event": lambda: learn_event_layout(EPROP),
    "dump-eprop": lambda: weight_dump_layout(EPROP),
    "dump-fptt": lambda: weight_dump_layout(FPTT),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_pack_agrees_with_amaranth_and_unpack_inverts_it(name: str) -> None:
    layout = LAYOUTS[name]()
    rng = np.random.default_rng(len(name))
    for _ in range(50):
        fields = _random_fields(layout, rng)
        raw = pack(layout, **fields)
        assert unpack(layout, raw) == fields
        assert 0 <= raw < 1 << layout.size
        if fields.get("kind") == READ_WEIGHTS:
            continue  # not an EventKind member: Amaranth's const refuses it
        if "kind" in fields:
            fields["kind"] = EventKind(fields["kind"])
        assert raw == layout.const(fields).as_bits()


@pytest.mark.parametrize("name", LAYOUTS)
def test_unpack_many_reads_what_unpack_reads(name: str) -> None:
    """The bulk decoder of weight dumps gives every field of every payload as :func:`unpack`
    does, extremes and signs included (the dump check relies on it for every weight)."""
    layout = LAYOUTS[name]()
    rng = np.random.default_rng(len(name) + 1)
    raws = [pack(layout, **_random_fields(layout, rng)) for _ in range(64)]
    fields = unpack_many(layout, raws)
    for i, raw in enumerate(raws):
        one = unpack(layout, raw)
        assert {k: np.asarray(v[i]).tolist() for k, v in fields.items()} == one
    assert all(len(v) == 64 and v.dtype == np.int64 for v in fields.values())
    assert {k: v.shape[0] for k, v in unpack_many(layout, []).items()} == dict.fromkeys(fields, 0)


def test_pack_refuses_what_does_not_fit() -> None:
    event = event_layout(BASE.n_in)
    assert pack(event, kind=EventKind.STEP) == pack(event, kind=1) == 1 << event["kind"].offset
    learn = learn_event_layout(EPROP)
    assert unpack(learn, pack(learn, kind=READ_WEIGHTS))["kind"] == READ_WEIGHTS
    with pytest.raises(ValueError, match="index"):
        pack(event, index=1 << event["index"].width)
    with pytest.raises(ValueError, match="value"):
        pack(readout_layout(BASE), value=1 << (BASE.membrane_bits - 1))
    with pytest.raises(ValueError, match="2 elements"):
        pack(weight_dump_layout(EPROP), w=[0, 0, 0])
    with pytest.raises(KeyError):
        pack(event, learn=1)  # an inference core's event has no learn field


@pytest.mark.parametrize("cfg", [EPROP, FPTT], ids=["eprop", "fptt"])
def test_weight_words_round_trip(cfg: HardwareConfig) -> None:
    layout = weight_dump_layout(cfg)
    wbar = [-64, 63] if cfg.learning.mode == "fptt" else []
    for word, last in (((2, [-16, 15], wbar), True), ((0, [3, -1], wbar), False)):
        assert decode_word(layout, encode_word(layout, word, last)) == (word, last)


def _kinds(layout: Any, events: list[Event]) -> list[tuple[int, int]]:
    return [(unpack(layout, e.word)["kind"], unpack(layout, e.word)["index"]) for e in events]


def test_frame_sample_of_an_inference_core() -> None:
    layout = event_layout(4)
    x = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
    events = frame_sample(layout, x, 5, abandoned=[3, 2])
    spike, step, clear = EventKind.SPIKE.value, EventKind.STEP.value, EventKind.CLEAR.value
    assert _kinds(layout, events) == [
        (spike, 3), (spike, 2), (clear, 0),
        (spike, 1), (spike, 3), (step, 0),
        (step, 0),
        (spike, 0), (step, 0),
    ]  # fmt: skip
    assert [e.step for e in events] == [-1, -1, -1, 0, 0, 0, 1, 2, 2]
    assert {e.sample for e in events} == {5} and not any(e.read for e in events)
    assert _kinds(layout, frame_sample(layout, x, 0, clear=False))[0] == (spike, 1)


def test_frame_run_of_a_learning_core_with_a_load() -> None:
    layout = learn_event_layout(EPROP)
    x = np.zeros((2, 3, EPROP.n_in), bool)
    x[1, 2, 4] = True
    learn = np.array([[False, True, True]] * 2)
    shift = np.array([[0, 3, 9]] * 2)
    load = Load.of(EPROP, [(0, [1, 2], [])] * 3, 1, with_clear=True)
    items = frame_run(layout, x, labels=np.array([2, 1]), learn=learn, shift=shift, loads={1: load})
    assert items.count(load) == 1
    at = items.index(load)
    first, second = items[:at], items[at + 1 :]
    kinds = [unpack(layout, e.word)["kind"] for e in first]
    step, read = EventKind.STEP.value, READ_WEIGHTS
    assert kinds == [EventKind.CLEAR.value, step, step, read, step, read]
    steps = [unpack(layout, e.word) for e in first]
    steps = [s for s in steps if s["kind"] == step]
    assert [(s["learn"], s["label"], s["shift"]) for s in steps] == [
        (0, 2, 0),
        (1, 2, 3),
        (1, 2, 9),
    ]
    assert [(e.step, e.read) for e in first if e.read] == [(1, True), (2, True)]
    # the load sends the second sample's CLEAR with its first word
    assert EventKind.CLEAR.value not in [unpack(layout, e.word)["kind"] for e in second]
    assert unpack(layout, load.clear)["kind"] == EventKind.CLEAR.value
    assert unpack(layout, load.read)["kind"] == READ_WEIGHTS
    assert [decode_word(weight_dump_layout(EPROP), w)[1] for w in load.words] == [0, 0, 1]


def test_stalls_are_reproducible_from_the_seed() -> None:
    def pattern(seed: int, stream: str) -> list:
        stalls = Stalls.seeded(seed, stream)
        return [stalls.gap() for _ in range(300)] + [stalls.ready() for _ in range(300)]

    assert pattern(7, "i_event") == pattern(7, "i_event")
    assert pattern(7, "i_event") != pattern(8, "i_event")
    assert pattern(7, "o_spike") != pattern(7, "o_readout")  # each stream its own draws
    gaps = pattern(7, "i_event")[:300]
    rate, longest = STALL_RATES["i_event"]
    assert 0.5 * rate < np.mean([g > 0 for g in gaps]) < 1.5 * rate
    assert max(gaps) == longest
    assert set(random_stalls(3)) == set(STALL_RATES)


class ScriptedPorts:
    """:class:`~neurofptt.verify.streams.Ports` without a simulator: ``model(edge, inputs)``
    gives the core's outputs at each edge from the inputs driven before it; every edge's
    inputs are kept in ``history``."""

    def __init__(self, model: Callable[[int, dict[str, int]], dict[str, int]]):
        self.model = model
        self.inputs: dict[str, int] = {}
        self.edges = 0
        self.history: list[dict[str, int]] = []

    async def tick(self, *names: str) -> tuple[int, ...]:
        self.edges += 1
        seen = dict(self.inputs)
        self.history.append(seen)
        values = {**seen, **self.model(self.edges, seen)}
        return tuple(values.get(n, 0) for n in names)

    def set(self, name: str, value: int) -> None:
        self.inputs[name] = int(value)

    async def idle_until(self, name: str) -> None:
        pass

    def cycle(self) -> int:
        return self.edges


def _run(coroutine: Any) -> None:
    """Run a coroutine that never suspends on anything but the scripted ports."""
    with pytest.raises(StopIteration):
        coroutine.send(None)


def test_driver_stalls_follow_the_seed_and_cycles_are_recorded() -> None:
    layout = event_layout(BASE.n_in)
    x = (np.random.default_rng(0).random((2, 4, BASE.n_in)) < 0.5).astype(bool)
    items = frame_run(layout, x)

    def valid_wave(seed: int | None) -> tuple[list[int], StreamBench]:
        stalls = {"i_event": Stalls.seeded(seed, "i_event")} if seed is not None else {}
        bench = StreamBench(BASE, 2, 4, stalls)
        ports = ScriptedPorts(lambda edge, inputs: {"i_event__ready": edge % 3 != 0})
        _run(bench.drive(ports, items))
        taken = [
            h["i_event__payload"]
            for h, edge in zip(ports.history, range(1, len(ports.history) + 1), strict=True)
            if h.get("i_event__valid") and edge % 3 != 0
        ]
        assert taken == [e.word for e in items]  # every event once, in order
        return [h.get("i_event__valid", 0) for h in ports.history], bench

    steady, bench = valid_wave(None)
    assert all(steady)
    assert (bench.step_start > 0).all() and (np.diff(bench.step_start.ravel()) > 0).all()
    assert valid_wave(5)[0] == valid_wave(5)[0]
    assert valid_wave(5)[0] != valid_wave(6)[0]
    assert 0 in valid_wave(5)[0]


def test_monitors_collect_and_check_the_readout_stream() -> None:
    cfg = BASE
    layout = readout_layout(cfg)
    values = [[(b * 10 + k) * (-1) ** k for k in range(cfg.n_out)] for b in range(2)]
    words = [
        pack(layout, index=k, value=v, last=int(k == cfg.n_out - 1))
        for row in values
        for k, v in enumerate(row)
    ]

    def producer(hold: bool) -> Callable[[int, dict[str, int]], dict[str, int]]:
        at = [0]

        def model(edge: int, inputs: dict[str, int]) -> dict[str, int]:
            i = at[0]
            if i >= len(words):
                return {"o_readout__valid": 0}
            # a broken producer changes its payload at every edge until it is taken
            word = words[i] if hold or edge % 2 else words[i] ^ (1 << layout["value"].offset)
            if inputs.get("o_readout__ready"):
                at[0] += 1
            return {"o_readout__valid": 1, "o_readout__payload": word}

        return model

    bench = StreamBench(cfg, 2, 1, {"o_readout": Stalls.seeded(1, "o_readout")})
    _run(bench.collect_readout(ScriptedPorts(producer(hold=True))))
    assert bench.errors == []
    np.testing.assert_array_equal(bench.readout[:, 0], values)
    assert bench.steps_done == 2 and (bench.step_end > 0).all()

    broken = StreamBench(cfg, 2, 1, {"o_readout": Stalls.seeded(1, "o_readout")})
    _run(broken.collect_readout(ScriptedPorts(producer(hold=False))))
    assert any("payload changed before ready" in e.detail for e in broken.errors)

    wrong = [pack(layout, index=1, value=0, last=0)] * cfg.n_out
    bench = StreamBench(cfg, 1, 1)
    ports = ScriptedPorts(
        lambda edge, _: {"o_readout__valid": 1, "o_readout__payload": wrong[edge - 1]}
    )
    _run(bench.collect_readout(ports))
    details = " | ".join(e.detail for e in bench.errors)
    assert "o_readout index 1, expected 0" in details and "last=0 on index 2" in details


def test_spike_monitor_checks_order_and_range() -> None:
    layout = event_layout(BASE.n_rec)
    spike, step = EventKind.SPIKE, EventKind.STEP
    script = [(spike, 4), (spike, 2), (spike, 9), (EventKind.CLEAR, 0), (step, 0)]
    words = [pack(layout, kind=k, index=i) for k, i in script]
    bench = StreamBench(BASE, 1, 1)
    ports = ScriptedPorts(
        lambda edge, _: {"o_spike__valid": 1, "o_spike__payload": words[edge - 1]}
    )
    _run(bench.collect_spikes(ports))
    details = [e.detail for e in bench.errors]
    assert details == [
        "o_spike index 2 after 4: not ascending",
        "o_spike event kind 0 index 9",
        "o_spike event kind 2 index 0",
    ]
    assert np.flatnonzero(bench.spikes[0, 0]).tolist() == [2, 4]


def test_dump_monitor_hands_raw_dumps_to_its_handler() -> None:
    """A weight dump ends at the word with ``last``: without a handler its words are decoded
    into ``dumps``, with one the handler gets the raw payloads of each dump and its number."""
    layout = weight_dump_layout(FPTT)
    dumps = [[(0, [1, -2], [3, -4]), (1, [5, 6], [-64, 63])], [(2, [-16, 15], [0, 0])]]
    raws = [
        encode_word(layout, word, i == len(dump) - 1)
        for dump in dumps
        for i, word in enumerate(dump)
    ]

    def core(edge: int, _: dict[str, int]) -> dict[str, int]:
        valid = 2 <= edge < 2 + len(raws)  # one word per edge, after an idle edge
        return {
            "o_weights__valid": int(valid),
            "o_weights__payload": raws[edge - 2] if valid else 0,
        }

    bench = StreamBench(FPTT, 0, 0)
    _run(bench.collect_dumps(ScriptedPorts(core), [(0, 1), (0, 2)]))
    assert bench.dumps == dumps and bench.dumps_done == 2 and bench.errors == []
    handed: list[tuple[int, list[int]]] = []
    bench = StreamBench(FPTT, 0, 0, on_dump=lambda i, words: handed.append((i, words)))
    _run(bench.collect_dumps(ScriptedPorts(core), [(0, 1), (0, 2)]))
    assert handed == [(0, raws[:2]), (1, raws[2:])] and bench.dumps == []
    assert bench.dumps_done == 2


def _load_model(words: int, read_after: int, busy_until: int, clear_late: bool = False):
    """A core that takes one weight word per edge from edge 1, the CLEAR at edge 1 (or 2),
    the READ from edge ``read_after`` on and says busy until edge ``busy_until``."""
    taken = [0]

    def model(edge: int, inputs: dict[str, int]) -> dict[str, int]:
        word_ready = taken[0] < words
        if word_ready and inputs.get("i_weights__valid"):
            taken[0] += 1
        event_ready = edge >= read_after or edge == (2 if clear_late else 1)
        return {
            "i_weights__ready": int(word_ready),
            "i_event__ready": int(event_ready),
            "busy": int(edge < busy_until),
        }

    return model


def test_a_load_must_hold_the_read_and_stay_busy() -> None:
    load = Load.of(EPROP, [(0, [1, 2], [])] * 4, 1, with_clear=True)
    bench = StreamBench(EPROP, 2, 1)
    _run(bench.drive(ScriptedPorts(_load_model(4, 4, 4)), [load]))
    assert bench.errors == [] and bench.load_cycles == [3]

    early = StreamBench(EPROP, 2, 1)
    _run(early.drive(ScriptedPorts(_load_model(4, 3, 4)), [load]))
    assert [e.detail for e in early.errors] == ["READ_WEIGHTS taken after 3 of 4 load words"]

    idle = StreamBench(EPROP, 2, 1)
    _run(idle.drive(ScriptedPorts(_load_model(4, 4, 3)), [load]))
    assert [e.detail for e in idle.errors] == ["busy low during the load (cycle 3)"]

    late = StreamBench(EPROP, 2, 1)
    _run(late.drive(ScriptedPorts(_load_model(4, 5, 5, clear_late=True)), [load]))
    assert "not taken with it" in late.errors[0].detail


class StuckCore(wiring.Component):
    """The core's ports, never ready, never valid."""

    def __init__(self, cfg: HardwareConfig):
        super().__init__(core_signature(cfg))

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)  # a clock domain for the simulator's clock
        return m


def test_a_hung_core_ends_the_amaranth_run_at_the_budget() -> None:
    cfg = BASE
    bench = StreamBench(cfg, 1, 2)
    items = frame_run(event_layout(cfg.n_in), np.ones((1, 2, cfg.n_in), bool))
    budget = cycle_budget(cfg, 1, 2)
    complete, cycles = run_amaranth(StuckCore(cfg), bench.benches(items), 300)
    assert not complete and cycles == 300 < budget
    assert bench.steps_done == 0 and (bench.step_start < 0).all()
