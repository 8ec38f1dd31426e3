"""cocotb testbench of the learning core: samples with learning, every weight read back after
every update, all compared with :mod:`neurofptt.onchip` bit for bit.

The stimulus file (``NEUROFPTT_STIMULUS``, ``.npz``) holds the config, the initial weights, the
input spikes ``(B, T, n_in)``, one label per sample and, optionally, a weight set to load
(``load_before`` >= 0, ``load_w_*`` and for FPTT ``load_wbar_*``).  The bench computes the golden
run itself (:func:`~neurofptt.verify.learning.golden_learning_run`), then per sample sends
``CLEAR``, per step the input ``SPIKE`` events and a ``STEP`` carrying ``learn``, ``label`` and
``shift`` from the schedule, and after every ``STEP`` with ``learn`` a ``READ_WEIGHTS`` event,
which the core accepts once the update is done and answers with every weight word on
``o_weights``.  Before sample ``load_before`` it feeds the loaded weight set to ``i_weights``,
its first word offered together with the sample's ``CLEAR``, and offers a ``READ_WEIGHTS`` from
the next edge, which the core must hold off until the last word.  It compares the spikes and
readouts of every step and every weight and ``W_bar`` after the load and after every update
(each dump decoded and compared in bulk as it ends: :class:`DumpCheck`), checks the stream
rules (:mod:`neurofptt.verify.streams`, shared with the Amaranth-simulator tests), and writes
the records, the cycle counts and the number of synapses compared to ``NEUROFPTT_RESULTS``.
``NEUROFPTT_BACKPRESSURE=1`` stalls every stream and pauses the load at random (seed
``NEUROFPTT_SEED``).

Run it through :func:`neurofptt.verify.run_rtl_learning`.
"""

from __future__ import annotations

import json
from typing import Any

import cocotb
import numpy as np

from neurofptt.hdl.ports import learn_event_layout, weight_dump_layout
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.verify.bench_common import BenchRun
from neurofptt.verify.compare import MAX_RECORDS, Mismatch, compare_traces, format_report
from neurofptt.verify.learning import (
    Snapshot,
    WeightLoad,
    compare_snapshot,
    dump_matrices,
    golden_learning_run,
    load_words,
)
from neurofptt.verify.streams import (
    Load,
    StreamBench,
    cycle_budget,
    frame_run,
    run_cocotb,
    unpack_many,
)


def stimulus_load(cfg: HardwareConfig, arrays: dict[str, np.ndarray]) -> WeightLoad | None:
    """The weight load the stimulus asks for (``load_before`` >= 0), or None."""
    before = int(arrays["load_before"])
    if before < 0:
        return None
    w = [arrays[f"load_w_{m}"] for m in ("in", "rec", "out")]
    wbar = {m: arrays[f"load_wbar_{m}"] for m in ("in", "rec", "out") if f"load_wbar_{m}" in arrays}
    return WeightLoad(before, QuantizedNetwork(cfg, *w), wbar)


@cocotb.test()
async def test_learning_core_vs_golden(dut: Any) -> None:
    """Spikes, readouts and every learned weight and ``W_bar`` equal the golden model."""
    run = BenchRun.from_environment()
    cfg, a = run.config, run.arrays
    net = QuantizedNetwork(cfg, a["w_in"], a["w_rec"], a["w_out"])
    labels = a["labels"].astype(np.int64)
    load = stimulus_load(cfg, a)
    golden = golden_learning_run(net, run.spikes, labels, load)
    batch, steps, _ = run.spikes.shape
    loads = {}
    if load is not None:  # the first word goes with the CLEAR
        loads[load.before] = Load.of(cfg, load_words(load.net, load.wbar), load.before, True)
    items = frame_run(
        learn_event_layout(cfg),
        run.spikes,
        labels=labels,
        learn=golden.learn,
        shift=golden.shift,
        loads=loads,
    )
    check = DumpCheck(net, golden.snapshots)
    bench = StreamBench(cfg, batch, steps, run.stalls(), on_dump=check)
    places = [(s.sample, s.step) for s in golden.snapshots]
    budget = cycle_budget(
        cfg, batch, steps, updates=golden.updates, loads=len(loads), stalled=run.backpressure
    )
    complete, cycles = await run_cocotb(dut, bench.benches(items, places), budget)
    if not complete:
        bench.protocol(
            -1,
            -1,
            f"timeout after {bench.steps_done} of {batch * steps} steps and "
            f"{bench.dumps_done} weight dumps",
        )

    records, total = compare_traces(golden.spikes, golden.readout, bench.spikes, bench.readout)
    records = bench.errors + check.errors + records + check.records
    total += len(bench.errors) + len(check.errors) + check.mismatches
    np.savez(
        run.results,
        spikes=bench.spikes,
        readout=bench.readout,
        step_start=bench.step_start,
        read_accept=bench.read_accept,
        compared=np.int64(check.compared),
        dumps=np.int64(bench.dumps_done),
        cycles=np.int64(cycles),
        n_mismatches=np.int64(total),
        complete=np.bool_(complete),
        records=np.array(json.dumps([r.to_dict() for r in records[:MAX_RECORDS]])),
    )
    report = format_report(records, total)
    dut._log.info("%d weight dumps; %s", bench.dumps_done, report.splitlines()[0])
    assert total == 0, report


class DumpCheck:
    """Compares each weight dump with its golden snapshot as the dump ends (the
    :class:`~neurofptt.verify.streams.StreamBench` ``on_dump`` handler): the raw payloads are
    decoded and compared in bulk and then dropped, so a whole epoch of dumps (thousands of
    words after every update) costs array operations, not a Python call per value, and no
    memory.  ``records`` (at most :data:`~neurofptt.verify.compare.MAX_RECORDS`) and
    ``mismatches`` (exact) are the weight mismatches, ``errors`` the malformed dumps,
    ``compared`` the weights and ``W_bar`` values compared."""

    def __init__(self, net: QuantizedNetwork, snapshots: list[Snapshot]):
        self.net = net
        self.snapshots = snapshots
        self.layout = weight_dump_layout(net.config)
        self.records: list[Mismatch] = []
        self.errors: list[Mismatch] = []
        self.mismatches = 0
        self.compared = 0

    def __call__(self, index: int, raws: list[int]) -> None:
        snapshot = self.snapshots[index]
        fields = unpack_many(self.layout, raws)
        try:
            actual = dump_matrices(self.net, fields["matrix"], fields["w"], fields.get("wbar"))
        except ValueError as exc:
            detail = f"o_weights: {exc}"
            self.errors.append(
                Mismatch(snapshot.sample, snapshot.step, "protocol", -1, -1, -1, detail)
            )
            actual = {}
        limit = min(20, MAX_RECORDS - len(self.records))
        records, total = compare_snapshot(snapshot, actual, limit)
        self.records += records
        self.mismatches += total
        self.compared += sum(w.size for w in snapshot.weights.values())
        self.compared += sum(w.size for w in snapshot.wbar.values())
