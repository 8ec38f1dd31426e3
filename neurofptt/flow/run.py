"""The whole flow in one call: train, quantize, generate, verify, synthesise, report."""

from __future__ import annotations

from pathlib import Path

from neurofptt.errors import ConfigError
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.report import write_report
from neurofptt.flow.stages import (
    load_flow_task,
    stage_generate,
    stage_quantize,
    stage_synth,
    stage_train,
    stage_verify,
)
from neurofptt.io import write_json


def run_flow(cfg: FlowConfig, out: Path, *, progress: bool = True, resume: bool = False) -> dict:
    """Every stage in turn into ``out``; returns the report's metrics.  What the hardware cannot
    run (another model than one LIF layer, a task without class labels:
    :func:`~neurofptt.flow.stages.load_flow_task`) is refused before anything is trained or
    written."""
    if cfg.train.model != "lif" or cfg.train.layers != 1:
        raise ConfigError(
            f"the flow maps the network to hardware, which runs one recurrent LIF layer; got "
            f"train.model = {cfg.train.model!r}, train.layers = {cfg.train.layers}. Use "
            "`neurofptt train` for other models"
        )
    task = load_flow_task(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    log = (lambda msg: print(f"[neurofptt] {msg}", flush=True)) if progress else (lambda msg: None)
    log(f"training ({cfg.train.rule}, {cfg.train.epochs} epochs) ...")
    stage_train(cfg, out, resume=resume, progress=progress, task=task)
    log("quantizing and running the golden model ...")
    q = stage_quantize(out)
    log(f"float accuracy {q['float_accuracy']:.4f}, golden accuracy {q['golden_accuracy']:.4f}")
    log("generating Verilog ...")
    stage_generate(out)
    n_rtl = cfg.flow.rtl_samples or "all"
    log(f"verifying the Verilog with cocotb on {n_rtl} test samples ...")
    v = stage_verify(
        out, samples=cfg.flow.rtl_samples, task_name=cfg.flow.task, simulator=cfg.flow.simulator
    )
    log(f"RTL accuracy {v['rtl_accuracy']:.4f}, mismatches {v['rtl_mismatches']}")
    log(f"synthesising for {cfg.flow.fpga_family} ...")
    stage_synth(out, family=cfg.flow.fpga_family, pnr=cfg.flow.fpga_pnr)
    metrics = write_report(out)
    log(f"report: {out / 'report.md'}")
    return metrics
