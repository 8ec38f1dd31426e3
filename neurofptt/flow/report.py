"""``report.md``, ``metrics.json`` and the plots of a flow run, from the stages' JSON records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from neurofptt.errors import CheckpointError  # noqa: E402
from neurofptt.flow.stages import load_flow_task, load_trained  # noqa: E402
from neurofptt.io import atomic_write_bytes, read_json, write_json  # noqa: E402
from neurofptt.quant.golden import golden_run  # noqa: E402
from neurofptt.quant.network import QuantizedNetwork  # noqa: E402

REQUIRED_STAGES = ("train", "quantize", "generate", "verify", "synth")


def _read(out: Path, stage: str) -> dict[str, Any]:
    data = read_json(out / f"{stage}.json")
    if data is None:
        raise CheckpointError(
            f"{out / (stage + '.json')} is missing; run `neurofptt {stage} --out {out}` first"
        )
    return data


def collect_metrics(out: Path) -> dict[str, Any]:
    stages = {s: _read(out, s) for s in REQUIRED_STAGES}
    t, q, g, v, s = (stages[k] for k in REQUIRED_STAGES)
    return {
        "task": t["task"],
        "rule": t["rule"],
        "float_accuracy": q["float_accuracy"],
        "golden_accuracy": q["golden_accuracy"],
        "golden_accuracy_on_rtl_samples": v["golden_accuracy_on_rtl_samples"],
        "rtl_accuracy": v["rtl_accuracy"],
        "rtl_samples": v["rtl_samples"],
        "rtl_neuron_steps": v["rtl_neuron_steps"],
        "rtl_mismatches": v["rtl_mismatches"],
        "rtl_cycles_per_step": v["cycles_per_step"],
        "test_samples": q["test_samples"],
        "verilog": g["verilog"],
        "fpga": s["fpga"],
        "fpga_reason": s["reason"],
        "hardware": q["hardware"],
        "train_seconds": t["seconds"],
        "verify_seconds": v["seconds"],
    }


def plot_training(history: list[dict[str, float]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], color="tab:red", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss", color="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["train_accuracy"] for h in history], color="tab:blue", label="train acc")
    ax2.plot(epochs, [h["test_accuracy"] for h in history], "--", color="tab:blue", label="test")
    ax2.set_ylabel("accuracy", color="tab:blue")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_membranes(quantize_record: dict[str, Any], path: Path, n_neurons: int = 4) -> None:
    """Float membrane vs golden fixed-point membrane (and readout) of one test sample, for the
    checkpoint and quantized model that the quantize stage used."""

    model, cfg = load_trained(Path(quantize_record["checkpoint"]))
    net = QuantizedNetwork.load(Path(quantize_record["quantized"]))
    task = load_flow_task(cfg)
    x = task.test.x[:1]
    state = model.initial_state(1)
    mems, outs = [], []
    with torch.no_grad():
        for step in range(x.shape[1]):
            logits, state = model.step(x[:, step], state)
            mems.append(state[0][0].numpy())
            outs.append(logits[0].numpy())
    mems, outs = np.array(mems), np.array(outs)
    trace = golden_run(net, task.test.numpy_spikes()[:1])
    lsb = net.config.lsb
    # the most active neurons of the golden run: their membranes cross the threshold
    active = np.argsort(-trace.spikes[0].sum(0), kind="stable")[:n_neurons]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = np.arange(1, x.shape[1] + 1)
    for i, j in enumerate(active):
        c = f"C{i}"
        axes[0].plot(steps, mems[:, j], color=c, label=f"float n{j}")
        axes[0].plot(steps, trace.membrane[0, :, j] * lsb, "o--", color=c, ms=3)
    axes[0].axhline(net.config.threshold_float, color="k", lw=0.5)
    axes[0].set_title("recurrent membranes (line: float, dots: golden)")
    label = int(task.test.y[0])
    for k in sorted({label, int(outs[-1].argmax())}):
        axes[1].plot(steps, outs[:, k], label=f"float out{k}")
        axes[1].plot(steps, trace.readout[0, :, k] * lsb, "o--", ms=3, label=f"golden out{k}")
    axes[1].set_title(f"readout (label {label})")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(out: Path) -> dict[str, Any]:

    out = Path(out)
    metrics = collect_metrics(out)
    train = _read(out, "train")
    quant = _read(out, "quantize")
    verify = _read(out, "verify")
    plot_training(train["history"], out / "training_curve.png")
    plot_membranes(quant, out / "membrane_traces.png")
    write_json(out / "metrics.json", metrics)
    hw = metrics["hardware"]
    fpga = metrics["fpga"]
    lines = [
        "# neurofptt flow report",
        "",
        f"Task **{metrics['task']}**, rule **{metrics['rule']}**, network "
        f"{hw['n_in']} inputs -> {hw['n_rec']} recurrent LIF -> {hw['n_out']} leaky readouts.",
        "",
        "## Accuracy",
        "",
        "| stage | accuracy | samples |",
        "|---|---|---|",
        f"| float model (PyTorch) | {_fmt(metrics['float_accuracy'])} | {quant['test_samples']} |",
        f"| golden model (integer) | {_fmt(metrics['golden_accuracy'])} | "
        f"{quant['test_samples']} |",
        f"| golden model, RTL subset | {_fmt(metrics['golden_accuracy_on_rtl_samples'])} | "
        f"{metrics['rtl_samples']} |",
        f"| RTL (Icarus + cocotb) | {_fmt(metrics['rtl_accuracy'])} | {metrics['rtl_samples']} |",
        "",
        "## Bit-exact verification",
        "",
        f"- neuron-steps compared: {metrics['rtl_neuron_steps']} "
        f"({metrics['rtl_samples']} samples x {verify['rtl_steps']} steps x "
        f"({hw['n_rec']} spikes + {hw['n_out']} readout values))",
        f"- mismatches: **{metrics['rtl_mismatches']}**",
        f"- clock cycles per time step (mean): {metrics['rtl_cycles_per_step']:.1f}",
        "",
        "## Quantization",
        "",
        f"- weights {hw['weight_bits']}-bit, membrane {hw['membrane_bits']}-bit "
        f"(Q{hw['membrane_bits'] - hw['frac_bits']}.{hw['frac_bits']}), "
        f"threshold {hw['threshold']},"
        f" leak shifts {hw['leak_shift']}/{hw['out_leak_shift']}, reset {hw['reset']}",
        f"- per-matrix shifts: {quant['shifts']}; clamped weights: {quant['clipped_weights']}",
        f"- mean spike rate (golden, test set): {quant['spike_rate']:.3f}",
        "",
        "## FPGA",
        "",
    ]
    if fpga:
        lines += [
            f"- family {fpga.get('family')}: LUT {fpga.get('lut')}, FF {fpga.get('ff')}, "
            f"BRAM {fpga.get('bram')}, DSP {fpga.get('dsp')}, LUT-RAM {fpga.get('lutram')}, "
            + (
                f"Fmax {fpga['fmax_mhz']:.1f} MHz on {fpga.get('device')}"
                if fpga.get("fmax_mhz")
                else "Fmax not measured (place and route off: flow.fpga_pnr = true)"
            ),
        ]
    else:
        lines += [f"- not run: {metrics['fpga_reason']}"]
    lines += [
        "",
        "## Plots",
        "",
        "![training curve](training_curve.png)",
        "",
        "![membrane traces](membrane_traces.png)",
        "",
        f"Verilog: `{metrics['verilog']}`",
        "",
    ]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    return metrics
