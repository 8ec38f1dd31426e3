"""Data-parallel training: ``torchrun --nproc-per-node=2 -m neurofptt train`` gives the weights
one process gives on the same batches (each batch split between the ranks, every update's
gradient combined into the whole batch's before it is used), to float rounding; commands that
cannot run across processes are refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofptt.cli import main
from neurofptt.errors import VerificationError
from neurofptt.learning.distributed import check_in_step, combine_gradients, shard, sum_over_ranks

TORCHRUN = Path(sys.executable).with_name("torchrun")
CONFIG = """
[hardware]
n_rec = 12

[train]
epochs = 2
qat_epochs = 0
batch_size = 16
rule = "{rule}"
"""
LAUNCH_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def data_file(folder: Path, *, per_step: bool) -> Path:
    """72 training samples (so the last batch of 16 is split 4/4, and a batch's halves differ
    in size when the count is odd: 72 = 4 * 16 + 8), two classes told apart by which channel
    group fires more; per-step files label only the last 3 steps."""
    gen = np.random.default_rng(0)
    n, steps, channels = 90, 10, 6
    rates = np.where(gen.integers(0, 2, (n, 1, 1)) == 0, [0.5, 0.5, 0.5, 0.1, 0.1, 0.1], 0.3)
    x = (gen.random((n, steps, channels)) < rates).astype(np.uint8)
    labels = (x[:, :, :3].sum((1, 2)) > x[:, :, 3:].sum((1, 2))).astype(np.int64)
    y = labels
    if per_step:
        y = np.full((n, steps), -1, np.int64)
        y[:, -3:] = labels[:, None]
    path = folder / ("steps.npz" if per_step else "labels.npz")
    np.savez(path, x_train=x[:72], y_train=y[:72], x_test=x[72:], y_test=y[72:])
    return path


def train(folder: Path, rule: str, data: Path, processes: int) -> dict[str, torch.Tensor]:
    config = folder / "config.toml"
    config.write_text(CONFIG.format(rule=rule))
    out = folder / f"run{processes}"
    args = ["train", "--config", str(config), "--data", str(data), "--out", str(out)]
    if processes == 1:
        command = [sys.executable, "-m", "neurofptt", *args, "--no-progress"]
    else:
        command = [str(TORCHRUN), f"--nproc-per-node={processes}", "--standalone", "-m"]
        command += ["neurofptt", *args, "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env=LAUNCH_ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "train.json").read_text())
    assert record["processes"] == processes
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    found = {k: v for k, v in saved["model"].items() if k.endswith("weight")}
    for kind in ("running_mean", "memory"):  # FPTT's W_bar and lam
        found.update({f"{kind} {k}": v for k, v in saved["rule"].get(kind, {}).items()})
    return found


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed with torch")
@pytest.mark.parametrize(
    ("rule", "per_step"),
    [("bptt", True), ("eprop", False), ("fptt", False), ("fptt", True)],
    ids=["bptt-per-step", "eprop", "fptt", "fptt-per-step"],
)
def test_two_processes_train_the_weights_of_one(tmp_path: Path, rule: str, per_step: bool):
    data = data_file(tmp_path, per_step=per_step)
    one = train(tmp_path, rule, data, 1)
    two = train(tmp_path, rule, data, 2)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=2e-5, msg=name)
    assert any(name.startswith("running_mean") for name in one) == (rule == "fptt")


def test_other_commands_are_refused_under_torchrun(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["flow", "--out", str(tmp_path / "f")]) == 2
    assert "torchrun runs `neurofptt train`" in capsys.readouterr().err


def test_one_process_is_the_identity() -> None:
    """Without torchrun the helpers neither communicate nor change anything."""
    indices = torch.arange(7)
    mine, counted = shard(indices)
    assert torch.equal(mine, indices) and counted
    assert sum_over_ranks(1.5, 2) == (1.5, 2.0)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert combine_gradients([p], units=5, scored=1) and torch.equal(p.grad, torch.full((3,), 2.0))
    assert not combine_gradients([p], units=5, scored=0)


def _perturbed_rank(rank: int, store: str, result: str) -> None:
    """Rank 1 of two holds a different tensor; :func:`check_in_step` must say so there."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2
    )
    value = torch.ones(3) + (rank == 1)
    try:
        check_in_step({"w": value})
        outcome = "in step"
    except VerificationError as exc:
        outcome = str(exc)
    finally:
        torch.distributed.destroy_process_group()
    Path(f"{result}.{rank}").write_text(outcome)


def test_ranks_out_of_step_are_caught(tmp_path: Path) -> None:
    result = tmp_path / "result"
    torch.multiprocessing.spawn(
        _perturbed_rank, args=(str(tmp_path / "store"), str(result)), nprocs=2, join=True
    )
    assert Path(f"{result}.0").read_text() == "in step"
    assert "rank 1 holds another w than rank 0" in Path(f"{result}.1").read_text()


RANK_SCRIPT = """
import glob, os, sys, torch
from neurofptt.learning.distributed import start, stop
assert "torch._dynamo" not in sys.modules  # else the test would pass whatever start does
start(torch.device("cpu"))
torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])  # imports torch._dynamo
stop()
threads = sorted(open(p).read().strip() for p in glob.glob("/proc/self/task/*/comm"))
with open(sys.argv[1] + "." + os.environ["RANK"], "w") as out:  # a shared stdout interleaves
    out.write(" ".join(threads))
"""


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed with torch")
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through /proc")
def test_leaving_the_group_ends_its_threads(tmp_path: Path) -> None:
    """After :func:`stop` no gloo thread is left, though the first optimizer imported
    ``torch._dynamo`` after the group was made: a rank that exits with them running while its
    peer still works is aborted (signal 6)."""
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    threads = tmp_path / "threads"
    command = [str(TORCHRUN), "--nproc-per-node=2", "--standalone", str(script), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=LAUNCH_ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lists = [Path(f"{threads}.{rank}").read_text() for rank in (0, 1)]
    assert all("python" in names and "gloo" not in names for names in lists), lists
