"""cocotb testbench of the learning core: samples with learning, every weight read back after
every update, all compared with :mod:`neurofptt.onchip` bit for bit.

The stimulus file (``NEUROFPTT_STIMULUS``, ``.npz``) holds the config, the initial weights, the
input spikes ``(B, T, n_in)``, one label per sample and, optionally, a weight set to load
(``load_before`` >= 0, ``load_w_*`` and for FPTT ``load_wbar_*``).  The bench computes the golden
run itself (:func:`~neurofptt.verify.learning.golden_learning_run`), then per sample sends
``CLEAR``, per step the input ``SPIKE`` events and a ``STEP`` carrying ``learn``, ``label`` and
``shift`` from the schedule, and after every ``STEP`` with ``learn`` a ``READ`` event (kind 3),
which the core accepts once the update is done and answers with every weight word on
``o_weights``.  Before sample ``load_before`` it feeds the loaded weight set to ``i_weights``,
its first word offered together with the sample's ``CLEAR``, and sends a ``READ`` at once, which
the core must hold off until the last word.  It compares the spikes and readouts of every step
and every weight and ``W_bar`` after the load and after every update, checks the stream rules,
and writes the records, the cycle counts and the number of synapses compared to
``NEUROFPTT_RESULTS``.  ``NEUROFPTT_BACKPRESSURE=1`` stalls the output streams and pauses the
load at random (seed ``NEUROFPTT_SEED``).

Run it through :func:`neurofptt.verify.run_rtl_learning`.
"""

from __future__ import annotations

import json

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from neurofptt.hdl.ports import READ_WEIGHTS, learn_event_layout, weight_dump_layout
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.verify.bench_common import (
    CLEAR,
    SPIKE,
    STEP,
    Sink,
    StepBench,
    handshake,
    pack,
    run_within,
    start_core,
    to_signed,
)
from neurofptt.verify.compare import Mismatch, compare_traces, format_report
from neurofptt.verify.learning import (
    WeightLoad,
    compare_snapshot,
    decode_dump,
    encode_word,
    golden_learning_run,
    load_words,
)


class _LearningBench(StepBench):
    def __init__(self, dut):
        super().__init__(dut)
        cfg = self.cfg
        self.golden = golden_learning_run(self.net, self.x, self.labels, self.load)
        self.event = learn_event_layout(cfg)
        self.dump_layout = weight_dump_layout(cfg)
        self.read_accept = np.full((self.batch, self.steps), -1, np.int64)
        self.records: list[Mismatch] = []
        self.weight_mismatches = 0
        self.compared = 0  # synapses (weights and W_bar values) compared
        self.dumps = 0

    def read_stimulus(self, data) -> None:
        cfg = self.cfg
        self.net = QuantizedNetwork(cfg, data["w_in"], data["w_rec"], data["w_out"])
        self.labels = data["labels"].astype(np.int64)
        self.load = None
        if int(data["load_before"]) >= 0:
            w = [data[f"load_w_{m}"] for m in ("in", "rec", "out")]
            wbar = {m: data[f"load_wbar_{m}"] for m in ("in", "rec", "out")
                    if f"load_wbar_{m}" in data}  # fmt: skip
            self.load = WeightLoad(int(data["load_before"]), QuantizedNetwork(cfg, *w), wbar)

    async def feed_weights(self) -> None:
        """Offer the load's words on ``i_weights``, ``last`` on the final one, with pauses
        between words under backpressure (never before the first, which goes with the CLEAR,
        so the READ behind the CLEAR always finds the load started)."""
        dut = self.dut
        words = load_words(self.load.net, self.load.wbar)
        for i, word in enumerate(words):
            if i and self.backpressure and self.rng.random() < 0.3:
                dut.i_weights__valid.value = 0
                await ClockCycles(dut.clk, self.rng.randint(1, 3))
            dut.i_weights__payload.value = encode_word(self.cfg, word, i == len(words) - 1)
            dut.i_weights__valid.value = 1
            await handshake(dut.clk, dut.i_weights__ready)
        dut.i_weights__valid.value = 0

    async def drive(self) -> None:
        g = self.golden
        loader = None
        for b in range(self.batch):
            events = [(pack(self.event, kind=CLEAR), -1, False)]
            if self.load is not None and b == self.load.before:
                # the first word goes with the CLEAR; the READ must wait for the last word
                loader = cocotb.start_soon(self.feed_weights())
                events.append((pack(self.event, kind=READ_WEIGHTS), -1, False))
            for t in range(self.steps):
                events += [
                    (pack(self.event, kind=SPIKE, index=int(i)), t, False)
                    for i in np.flatnonzero(self.x[b, t])
                ]
                step = pack(
                    self.event,
                    kind=STEP,
                    learn=g.learn[b, t],
                    label=self.labels[b],
                    shift=g.shift[b, t],
                )
                events.append((step, t, False))
                if g.learn[b, t]:
                    events.append((pack(self.event, kind=READ_WEIGHTS), t, True))
            for word, t, is_read in events:
                taken = await self.send(word)
                if is_read:
                    self.read_accept[b, t] = taken
                else:
                    self.started(b, t)
        self.dut.i_event__valid.value = 0
        if loader is not None:
            await loader

    async def collect_dumps(self) -> None:
        sink = Sink(self.dut, "o_weights", self.backpressure, self.rng, self.errors)
        layout, cfg = self.dump_layout, self.cfg
        fptt = "wbar" in {name for name, _ in layout}
        wb = cfg.weight_bits
        wbb = cfg.learning.wbar_bits

        def lanes(word: int, name: str, bits: int) -> list[int]:
            base = layout[name].offset
            return [
                to_signed((word >> (base + lane * bits)) & ((1 << bits) - 1), bits)
                for lane in range(cfg.lanes)
            ]

        for snapshot in self.golden.snapshots:
            sink.where = (snapshot.sample, snapshot.step)
            words = []
            while True:
                word, _ = await sink.take()
                matrix = (word >> layout["matrix"].offset) & 3
                wbar = lanes(word, "wbar", wbb) if fptt else []
                words.append((matrix, lanes(word, "w", wb), wbar))
                if (word >> layout["last"].offset) & 1:
                    break
            try:
                actual = decode_dump(self.net, words)
            except ValueError as exc:
                self.protocol(snapshot.sample, snapshot.step, f"o_weights: {exc}")
                actual = {}
            records, total = compare_snapshot(snapshot, actual)
            self.records += records
            self.weight_mismatches += total
            self.compared += sum(w.size for w in snapshot.weights.values())
            self.compared += sum(w.size for w in snapshot.wbar.values())
            self.dumps += 1

    def cycle_budget(self) -> int:
        """Generous upper bound on the cycles of the whole run."""
        cfg = self.cfg
        per_step = cfg.n_rec * (cfg.n_in + cfg.n_rec + cfg.n_out + 4) + 20
        per_update = 2 * cfg.n_rec * (cfg.n_in + cfg.n_rec + cfg.n_out) + 20
        total = self.batch * self.steps * per_step + len(self.golden.snapshots) * per_update
        return (8 if self.backpressure else 2) * total + 1000


@cocotb.test()
async def test_learning_core_vs_golden(dut) -> None:
    """Spikes, readouts and every learned weight and ``W_bar`` equal the golden model."""
    bench = _LearningBench(dut)
    await start_core(dut)
    complete = await run_within(
        [bench.drive(), bench.collect_spikes(), bench.collect_readout(), bench.collect_dumps()],
        bench.cycle_budget(),
    )
    if not complete:
        bench.protocol(
            -1,
            -1,
            f"timeout after {bench.steps_done} of {bench.batch * bench.steps} steps and "
            f"{bench.dumps} weight dumps",
        )

    g = bench.golden
    records, total = compare_traces(g.spikes, g.readout, bench.spikes, bench.readout)
    records = bench.errors + records + bench.records
    total += len(bench.errors) + bench.weight_mismatches
    np.savez(
        bench.results,
        spikes=bench.spikes,
        readout=bench.readout,
        step_start=bench.step_start,
        read_accept=bench.read_accept,
        compared=np.int64(bench.compared),
        dumps=np.int64(bench.dumps),
        n_mismatches=np.int64(total),
        complete=np.bool_(complete),
        records=np.array(json.dumps([r.to_dict() for r in records[:1000]])),
    )
    report = format_report(records, total)
    dut._log.info("%d weight dumps; %s", bench.dumps, report.splitlines()[0])
    assert total == 0, report
