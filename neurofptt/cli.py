"""``neurofptt`` command line: the whole flow and each of its stages.

Errors the toolkit raises on purpose (bad config, mismatched checkpoint, missing simulator, ...)
are printed as one ``error:`` line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neurofptt.bench.rules import bench_rules, format_table, plot_records
from neurofptt.errors import ConfigError, NeurofpttError, VerificationError
from neurofptt.flow import stages as flow
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.onchip import run_learning_flow, stage_train_onchip
from neurofptt.flow.report import write_report
from neurofptt.flow.run import run_flow
from neurofptt.flow.stages import (
    LEARNING_VERIFY_SAMPLES,
    check_learning_record,
    stage_verify_learning,
)
from neurofptt.io import write_json
from neurofptt.studies.reproduce import results_table, run_reproduction
from neurofptt.studies.sweep import load_sweep, summary_table
from neurofptt.studies.sweep import run_sweep as run_grid


def _add_common(p: argparse.ArgumentParser, *, config: bool = True, quick: bool = True) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder")
    if config:
        p.add_argument("--config", type=Path, default=None, help="flow config (.toml)")
    if config and quick:
        p.add_argument("--quick", action="store_true", help="few-minute budget")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurofptt",
        description="Train a spiking RNN online, quantize it, generate and verify its accelerator.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("flow", help="train -> quantize -> generate -> verify -> synth -> report")
    _add_common(p)
    p.add_argument(
        "--learning",
        choices=("eprop", "fptt"),
        default=None,
        help="the on-chip learning flow instead: float vs golden learning, RTL checked weights",
    )
    p.add_argument("--resume", action="store_true", help="continue training from the checkpoint")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("train", help="train the float model (writes checkpoint.pt)")
    _add_common(p)
    p.add_argument("--rule", default=None, help="learning rule (overrides train.rule)")
    p.add_argument("--model", default=None, help="model (overrides train.model)")
    p.add_argument("--task", default=None, help="task (overrides flow.task)")
    p.add_argument(
        "--engine",
        choices=("float", "golden"),
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
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("quantize", help="checkpoint -> quantized.npz, float and golden accuracy")
    _add_common(p, quick=False)
    p.add_argument("--checkpoint", type=Path, default=None)

    p = sub.add_parser("generate", help="quantized.npz -> Verilog and memory files")
    _add_common(p, config=False)
    p.add_argument("--model", type=Path, default=None, help="quantized .npz (default OUT/...)")

    p = sub.add_parser("verify", help="run the Verilog under cocotb against the golden model")
    _add_common(p, config=False)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--verilog", type=Path, default=None)
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
    p.add_argument("--task", default="digits")

    p = sub.add_parser("synth", help="FPGA synthesis report with yosys (yowasp)")
    _add_common(p, config=False)
    p.add_argument("--verilog", type=Path, default=None)
    p.add_argument("--top", default=None)
    p.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5")
    p.add_argument("--pnr", action="store_true", help="also place and route (Fmax)")

    p = sub.add_parser("bench", help="benchmarks that print JSON")
    bench = p.add_subparsers(dest="bench", required=True)
    b = bench.add_parser("rules", help="peak memory and time per sequence of rules vs T")
    b.add_argument(
        "--rules",
        default="bptt,tbptt,fptt,eprop",
        help="comma-separated rule names (also: spikingjelly-fptt, if SpikingJelly is installed)",
    )
    b.add_argument("--model", default="lif")
    b.add_argument("--T", default="64,256,1024", help="comma-separated sequence lengths")
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--hidden", type=int, default=128)
    b.add_argument("--json", type=Path, default=None, help="also write the records here")
    b.add_argument("--plot", type=Path, default=None, help="also plot them (PNG)")

    p = sub.add_parser("sweep", help="train every point of a grid of settings (resumable)")
    p.add_argument("file", type=Path, help="sweep file (.toml)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")
    p.add_argument(
        "--backend",
        choices=("process", "ray"),
        default=None,
        help="run in local processes or as Ray Tune trials (default: the file's, else process)",
    )

    p = sub.add_parser(
        "reproduce",
        help="run a seed paper's experiment (resumable); writes results.json and a plot",
        description="Reproductions: tsfd-fobptt, cycleworld-fpp, smnist-fpp, smnist-fptt, "
        "psmnist-fptt.  The default budget is the reduced one documented in docs/results.md.",
    )
    p.add_argument("name", help="which reproduction (e.g. tsfd-fobptt)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    budget.add_argument("--full", action="store_true", help="the paper's budget (hours to days)")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores)")

    p = sub.add_parser("report", help="(re)write report.md and metrics.json from OUT's records")
    _add_common(p, config=False)
    return parser


def run(args: argparse.Namespace) -> object:

    if args.command == "bench":
        return run_bench(args)
    if args.command == "sweep":
        return run_sweep(args)
    if args.command == "reproduce":
        return run_reproduce(args)
    out: Path = args.out
    if args.command in ("flow", "train", "quantize"):
        given = args.config is not None
        cfg = FlowConfig.load(args.config, quick=getattr(args, "quick", False))
    if args.command == "flow":
        if args.learning is not None:
            metrics = run_learning_flow(cfg, out, args.learning, progress=not args.no_progress)
            return {k: v for k, v in metrics.items() if k != "onchip_history"}
        return run_flow(cfg, out, progress=not args.no_progress, resume=args.resume)
    if args.command == "train":
        if args.engine == "golden":
            cfg = cfg.override(task=args.task)

            record = stage_train_onchip(
                cfg, out, args.rule or "fptt", init=args.init, progress=not args.no_progress
            )
            return {k: v for k, v in record.items() if k != "history"}
        cfg = cfg.override(rule=args.rule, model=args.model, task=args.task)
        record = flow.stage_train(cfg, out, resume=args.resume, progress=not args.no_progress)
        return {k: v for k, v in record.items() if k != "history"}
    if args.command == "quantize":
        return flow.stage_quantize(out, args.checkpoint, cfg if given else None)
    if args.command == "generate":
        return flow.stage_generate(out, args.model)
    if args.command == "verify":
        if args.learn:
            return run_verify_learning(args)
        samples = 0 if args.samples is None else args.samples
        record = flow.stage_verify(out, args.model, args.verilog, samples, args.task)
        if record["rtl_mismatches"]:
            raise VerificationError(
                f"{record['mismatch_report']}\nsee {args.out / 'cocotb'}; the RTL and the golden "
                "model must agree exactly"
            )
        return record
    if args.command == "synth":
        return flow.stage_synth(
            out, args.verilog, args.top or flow.CORE_NAME, args.family, args.pnr
        )
    if args.command == "report":
        return write_report(out)
    raise AssertionError(args.command)


def run_verify_learning(args: argparse.Namespace) -> dict:
    """``verify --learn``: the learning testbench; any mismatch fails the command (after
    ``verify_learning.json`` is written)."""

    if args.verilog is not None:
        raise ConfigError(
            "--verilog cannot go with --learn: the learning testbench generates the learning "
            "core from --model; drop --verilog"
        )
    samples = LEARNING_VERIFY_SAMPLES if args.samples is None else args.samples
    record = stage_verify_learning(args.out, args.model, samples, args.task)
    check_learning_record(record, args.out)
    return record


def run_sweep(args: argparse.Namespace) -> list[dict]:

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    sweep = load_sweep(args.file)
    records = run_grid(sweep, args.out, workers=args.workers, backend=args.backend)
    print(summary_table(records, sweep.keys), file=sys.stderr)
    return records


def run_reproduce(args: argparse.Namespace) -> dict:

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    budget = "quick" if args.quick else "full" if args.full else "default"
    summary = run_reproduction(args.name, args.out, budget=budget, workers=args.workers)
    print(results_table(summary), file=sys.stderr)
    return summary


def run_bench(args: argparse.Namespace) -> list[dict]:

    try:
        lengths = [int(t) for t in args.T.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--T must be comma-separated integers, got {args.T!r}") from exc
    records = bench_rules(
        [r.strip() for r in args.rules.split(",")], args.model, lengths, args.batch, args.hidden
    )
    print(format_table(records), file=sys.stderr)
    if args.json is not None:
        write_json(args.json, records)
    if args.plot is not None:
        plot_records(records, str(args.plot))
    return records


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except NeurofpttError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
