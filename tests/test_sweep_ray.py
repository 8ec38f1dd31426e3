"""The Ray Tune sweep backend: the same ids, records and resuming as the process backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_sweep import EXPERIMENT

from neurofptt.errors import ConfigError, ToolMissingError
from neurofptt.studies.ray_backend import run_jobs_with_ray
from neurofptt.studies.sweep import RESULTS, load_sweep, run_sweep

# the small TSFD experiment sweep of test_sweep.py, with a backend and a 4-run grid
SWEEP = (
    EXPERIMENT.split("[grid]")[0].replace('name = "alpha study"', 'backend = "{backend}"')
    + '[grid]\n"train.model" = ["rnn", "gru"]\n"train.seed" = [0, 1]\n'
)


def write_sweep(tmp_path: Path, backend: str) -> Path:
    path = tmp_path / f"{backend}.toml"
    path.write_text(SWEEP.format(backend=backend))
    return path


def trained_at(out: Path, rid: str) -> int:
    return (out / "runs" / rid / "experiment.json").stat().st_mtime_ns


def test_ray_backend_matches_process_backend_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    sweep = load_sweep(write_sweep(tmp_path, "ray"))
    assert sweep.backend == "ray"
    out = tmp_path / "ray"
    records = run_sweep(sweep, out, workers=2, progress=False)
    expected = run_sweep(sweep, tmp_path / "process", workers=1, progress=False, backend="process")
    ids = [r["id"] for r in records]
    assert ids == [r["id"] for r in expected] == [r.id for r in sweep.runs]
    assert [r["overrides"] for r in records] == [r["overrides"] for r in expected]
    for r in records:
        assert r["status"] == "ok" and r["metric_name"] == "test_mse" and r["metric"] > 0.0
        assert set(r) == set(expected[0])
    lines = (out / RESULTS).read_bytes()
    assert sorted(json.loads(line)["id"] for line in lines.splitlines()) == sorted(ids)

    # everything is done: nothing is trained again, nothing is appended
    mtimes = {r["id"]: trained_at(out, r["id"]) for r in records}
    assert run_sweep(sweep, out, workers=2, progress=False) == records
    assert (out / RESULTS).read_bytes() == lines
    assert {rid: trained_at(out, rid) for rid in mtimes} == mtimes

    # a lost line: only that run is trained again, and appended after the kept ones
    kept, lost = lines.splitlines(keepends=True)[:-1], json.loads(lines.splitlines()[-1])
    (out / RESULTS).write_bytes(b"".join(kept))
    again = run_sweep(sweep, out, workers=2, progress=False)
    assert [r["id"] for r in again] == [r["id"] for r in records]
    after = (out / RESULTS).read_bytes().splitlines(keepends=True)
    assert after[:-1] == kept and json.loads(after[-1])["id"] == lost["id"]
    for rid, mtime in mtimes.items():
        assert (trained_at(out, rid) == mtime) == (rid != lost["id"])


def test_bad_backend_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend.*'process', 'ray'.*'dask'"):
        load_sweep(write_sweep(tmp_path, "dask"))
    sweep = load_sweep(write_sweep(tmp_path, "process"))
    with pytest.raises(ConfigError, match="backend.*'dask'"):
        run_sweep(sweep, tmp_path / "out", backend="dask", progress=False)


def test_missing_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ToolMissingError, match=r"neurofptt\[dist\]"):
        run_jobs_with_ray([], tmp_path, 1, print)
