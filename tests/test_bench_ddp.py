"""``neurofptt bench ddp``: one process against two data-parallel ones started by torchrun, at a
tiny size; the record's fields and their arithmetic, not the timings."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from neurofptt.bench.ddp import launcher
from neurofptt.cli import main


@pytest.mark.skipif(not Path(launcher(2)[0]).is_file(), reason="torchrun is not installed")
def test_bench_ddp_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ddp.json"
    args = ["bench", "ddp", "--rules", "fptt", "--processes", "2", "--hidden", "6"]
    assert (
        main([*args, "--batch", "8", "--samples", "20", "--epochs", "2", "--json", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    conditions = result["conditions"]
    assert conditions["available_cores"] >= 1
    assert len(conditions["load_average"]) == len(conditions["load_average_after"]) == 3
    one, two = result["records"]
    assert [(r["rule"], r["processes"]) for r in (one, two)] == [("fptt", 1), ("fptt", 2)]
    for r in (one, two):
        assert (r["hidden"], r["batch"], r["samples"], r["threads"]) == (6, 8, 20, 1)
        assert r["task"] == "digits" and r["steps"] == 8
        assert len(r["epoch_seconds"]) == 2
        assert r["seconds_per_epoch"] == statistics.median(r["epoch_seconds"])
        assert r["samples_per_second"] == 20 / r["seconds_per_epoch"]
    assert "speedup" not in one
    # the synapses from the 32 inputs, between the 6 neurons and to the 10 readouts
    assert one["weights"] == two["weights"] == 6 * 32 + 6 * 6 + 10 * 6
    assert "allreduce_seconds" not in one and two["allreduce_seconds"] > 0
    assert two["speedup"] == two["samples_per_second"] / one["samples_per_second"]
    assert "samples/s" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rules", "tbptt"], "data-parallel rules"),
        (["--processes", "1"], "--processes must be >= 2"),
        (["--batch", "1"], "at least one sample per process"),
    ],
)
def test_bench_ddp_rejects_bad_input(extra: list[str], message: str, capsys) -> None:
    assert main(["bench", "ddp", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
