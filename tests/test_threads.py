"""Torch's thread count: the default policy, ``--threads`` on the commands that train, the count
recorded in train.json and a sweep's results, and the cores shared among a sweep's workers.
Nothing here is timed: the speed of each choice is measured by ``neurofptt bench threads``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info

from neurofptt.bench.rules import measure as measure_rule
from neurofptt.bench.threads import spinning
from neurofptt.cli import main
from neurofptt.errors import ConfigError
from neurofptt.learning import threads as threads_module
from neurofptt.learning.threads import (
    PARALLEL_WORK,
    THREAD_ENV,
    available_cores,
    choose_threads,
    set_threads,
    step_work,
)
from neurofptt.studies.jobs import job_threads, job_work
from neurofptt.studies.sweep import RESULTS, load_sweep, run_sweep

SMALL = step_work(16, 128)  # the demo network
LARGE = PARALLEL_WORK * 4

TINY = """
[hardware]
n_in = 32
n_rec = 8
n_out = 10

[train]
rule = "bptt"
epochs = 1
batch_size = 128
qat_epochs = 0
"""


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """set_threads changes this process's torch and environment; put both back afterwards."""
    before = torch.get_num_threads()
    for name in THREAD_ENV:  # restored at teardown, whatever set_threads wrote meanwhile
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(before)


def test_choose_threads_stays_within_the_cores_per_worker() -> None:
    for cores in (1, 2, 3, 8, 64):
        for workers in (1, 2, 3, 5, 100):
            for work in (None, 0, SMALL, PARALLEL_WORK - 1, PARALLEL_WORK, LARGE):
                for load in (None, 0.0, 0.6, 3.0, 500.0):
                    for requested in (None, 0):
                        n = choose_threads(
                            requested, workers=workers, work=work, cores=cores, load=load
                        )
                        assert 1 <= n <= max(1, cores // workers)


def test_small_networks_get_one_thread_large_ones_their_share() -> None:
    idle = {"cores": 16, "load": 0.0}
    assert choose_threads(None, work=SMALL, **idle) == 1
    assert choose_threads(0, work=None, **idle) == 1  # unknown size: taken as small
    assert choose_threads(None, work=PARALLEL_WORK - 1, **idle) == 1
    assert choose_threads(None, work=PARALLEL_WORK, **idle) == 16
    assert choose_threads(None, work=LARGE, workers=4, **idle) == 4
    assert choose_threads(None, work=LARGE, workers=3, **idle) == 5  # floor: never above
    assert choose_threads(None, work=LARGE, workers=32, **idle) == 1


def test_busy_cores_are_left_alone() -> None:
    """Threads only go onto cores the load average says are idle."""
    assert choose_threads(None, work=LARGE, cores=16, load=4.4) == 12
    assert choose_threads(None, work=LARGE, cores=16, load=4.4, workers=3) == 4
    assert choose_threads(None, work=LARGE, cores=2, load=1.7) == 1
    assert choose_threads(None, work=LARGE, cores=2, load=9.0) == 1


def test_an_explicit_request_is_honoured() -> None:
    for requested in (1, 2, 7, 64):
        for workers in (1, 4):
            for work in (None, SMALL, LARGE):
                got = choose_threads(requested, workers=workers, work=work, cores=2)
                assert got == requested


def test_cores_come_from_the_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 1 <= available_cores() <= (os.cpu_count() or 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert available_cores() == 6
    assert choose_threads(None, work=LARGE, workers=4, load=0.0) == 1
    assert choose_threads(None, work=LARGE, workers=2, load=0.0) == 3


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2"])
def test_bad_requests_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="threads must be an integer >= 0"):
        choose_threads(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="integer >= 1"):
        set_threads(0)
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        choose_threads(None, workers=0)


def test_set_threads_sets_torch_blas_and_the_children_environment() -> None:
    assert set_threads(1) == 1
    assert torch.get_num_threads() == 1
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas, "numpy's BLAS is loaded by now"
    assert all(pool["num_threads"] == 1 for pool in blas)
    assert all(os.environ[name] == "1" for name in THREAD_ENV)
    set_threads(2)
    assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"


def test_job_threads_sizes_each_run() -> None:
    flow = {"hardware": {"n_rec": 512}, "train": {"batch_size": 64}}
    experiment = {"experiment": {"hidden": 32}, "train": {"batch_size": 16}}
    assert job_work("flow", flow) == step_work(64, 512) >= PARALLEL_WORK
    assert job_work("experiment", experiment) == step_work(16, 32) < PARALLEL_WORK
    assert job_threads("flow", flow, None, workers=2, cores=8, load=0.0) == 4
    assert job_threads("flow", flow, None, workers=2, cores=8, load=2.2) == 3
    assert job_threads("experiment", experiment, None, workers=2, cores=8, load=0.0) == 1
    assert job_threads("experiment", experiment, 3, workers=2, cores=8) == 3


# -- the commands ---------------------------------------------------------------------------------
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.mark.parametrize(
    ("option", "expected"), [(["--threads", "2"], 2), (["--threads", "0"], 1), ([], 1)]
)
def test_train_records_its_threads(tmp_path: Path, option: list[str], expected: int) -> None:
    """``--threads N`` is used; without it the tiny network gets the default, one thread."""
    torch.set_num_threads(3)  # what the command must replace
    out = tmp_path / "out"
    args = ["train", "--config", str(tiny_config(tmp_path)), "--out", str(out), "--no-progress"]
    assert main([*args, *option]) == 0
    assert json.loads((out / "train.json").read_text())["threads"] == expected
    assert torch.get_num_threads() == expected


def test_threads_option_is_checked_and_documented(tmp_path: Path, capsys) -> None:
    config = str(tiny_config(tmp_path))
    assert main(["train", "--config", config, "--out", str(tmp_path), "--threads", "-1"]) == 2
    assert "--threads: must be an integer >= 0" in capsys.readouterr().err
    for command in ("flow", "train", "sweep", "reproduce"):
        assert main([command, "--help"]) == 0
        assert "--threads" in capsys.readouterr().out


def sweep_file(tmp_path: Path, seeds: list[int]) -> Path:
    base = TINY.replace("[hardware]", "[base.hardware]").replace("[train]", "[base.train]")
    path = tmp_path / "sweep.toml"
    path.write_text(base + f'[grid]\n"train.seed" = {seeds}\n')
    return path


def test_sweep_workers_get_the_cores_divided_by_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent sizes each run (3 cores for 2 workers: 1 each, the floor) and each worker
    trains with that count: the worker's own train.json records what its torch used."""
    monkeypatch.setattr(threads_module, "available_cores", lambda: 3)
    monkeypatch.setattr(threads_module, "machine_load", lambda: 0.0)
    monkeypatch.setattr(threads_module, "PARALLEL_WORK", 0)  # every network counts as large
    sweep = load_sweep(sweep_file(tmp_path, [0, 1]))
    records = run_sweep(sweep, tmp_path / "out", workers=2, progress=False)
    assert [r["status"] for r in records] == ["ok", "ok"]
    for r in records:
        assert r["threads"] == 3 // 2
        train = json.loads((tmp_path / "out" / "runs" / r["id"] / "train.json").read_text())
        assert train["threads"] == r["threads"]


def test_sweep_threads_request_reaches_every_run(tmp_path: Path) -> None:
    """An explicit count is what a run's torch uses (one worker: inline, in this process)."""
    sweep = load_sweep(sweep_file(tmp_path, [0]))
    records = run_sweep(sweep, tmp_path / "out", workers=1, progress=False, threads=2)
    lines = [json.loads(line) for line in (tmp_path / "out" / RESULTS).read_text().splitlines()]
    assert [r["threads"] for r in records] == [r["threads"] for r in lines] == [2]
    for r in records:
        train = json.loads((tmp_path / "out" / "runs" / r["id"] / "train.json").read_text())
        assert train["threads"] == 2


# -- the benchmarks -------------------------------------------------------------------------------
def test_bench_threads_records_each_point(tmp_path: Path, capsys) -> None:
    """One fresh process per point; the JSON names the count its torch used and the machine."""
    out = tmp_path / "threads.json"
    args = ["bench", "threads", "--networks", "8x128", "--rules", "bptt", "--threads", "1"]
    assert main([*args, "--epochs", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["conditions"]["available_cores"] == available_cores()
    (record,) = result["records"]
    assert record["threads_setting"] == record["threads"] == 1
    assert record["hidden"] == 8 and record["batch"] == 128 and record["rule"] == "bptt"
    assert record["parallel"] is False and record["speedup"] == 1.0
    assert result["conditions"]["busy_processes"] == 0
    assert record["seconds_per_epoch"] > 0 and "s/epoch" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--networks", "128"], "HIDDENxBATCH"),
        (["--networks", "0x4"], "HIDDENxBATCH"),
        (["--threads", "1,none"], "counts >= 1 or 'default'"),
    ],
)
def test_bench_threads_rejects_bad_settings(option: list[str], message: str, capsys) -> None:
    assert main(["bench", "threads", *option]) == 2
    assert message in capsys.readouterr().err


def test_spinning_processes_stop_with_the_block() -> None:
    with spinning(2) as procs:
        assert len(procs) == 2 and all(proc.poll() is None for proc in procs)
    assert all(proc.poll() is not None for proc in procs)


def test_bench_rules_trains_with_one_thread() -> None:
    """The rules are compared on one thread each, and the record says so."""
    record = measure_rule("bptt", "lif", 4, 2, 8, 4)
    assert record["threads"] == 1 == torch.get_num_threads()
