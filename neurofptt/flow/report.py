"""``report.md``, ``metrics.json`` and the plots of a flow run, from the stages' JSON records.

Besides the records, the report runs the golden model once more on the test set, so that it can
show what the network does rather than only how often it is right: the confusion matrix (in the
report and in ``metrics.json``) and the spike rasters of one correctly and one incorrectly
classified test sample.  Figures are drawn with matplotlib's object API (no global pyplot state,
no backend switch at import) and written atomically like every other file of the toolkit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from neurofptt.errors import CheckpointError
from neurofptt.flow.stages import load_flow_task, load_trained
from neurofptt.io import atomic_write_bytes, read_json, write_json
from neurofptt.learning.objectives import class_units, readout_units, whole_samples
from neurofptt.models.base import RecurrentModel
from neurofptt.quant.golden import GoldenTrace, golden_run
from neurofptt.quant.network import QuantizedNetwork

REQUIRED_STAGES = ("train", "quantize", "generate", "verify", "synth")
TRAINING_PNG = "training_curve.png"
MEMBRANE_PNG = "membrane_traces.png"
CONFUSION_PNG = "confusion_matrix.png"
#: the raster figure of each kind of example sample
RASTER_PNG = {"correct": "raster_correct.png", "incorrect": "raster_incorrect.png"}
DPI = 110


def _read(out: Path, stage: str) -> dict[str, Any]:
    data = read_json(out / f"{stage}.json")
    if data is None:
        raise CheckpointError(
            f"{out / (stage + '.json')} is missing; run `neurofptt {stage} --out {out}` first"
        )
    return data


def collect_metrics(out: Path) -> dict[str, Any]:
    """The figures of the stage records that ``metrics.json`` carries (without the golden
    model's confusion matrix, which :func:`write_report` adds after running it)."""
    stages = {s: _read(out, s) for s in REQUIRED_STAGES}
    t, q, g, v, s = (stages[k] for k in REQUIRED_STAGES)
    metrics = {
        "task": t["task"],
        "rule": t["rule"],
        "float_accuracy": q["float_accuracy"],
        "golden_accuracy": q["golden_accuracy"],
        "golden_accuracy_on_rtl_samples": v["golden_accuracy_on_rtl_samples"],
        "rtl_accuracy": v["rtl_accuracy"],
        "rtl_samples": v["rtl_samples"],
        # records older than the choice of simulator were all Icarus's
        "rtl_simulator": v.get("simulator", "icarus"),
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
    if t.get("picked_epoch") is not None:  # float training that picks its epoch on validation
        metrics["picked_epoch"] = t["picked_epoch"]
    return metrics


@dataclass(frozen=True)
class GoldenTest:
    """The golden model's run on the whole test set: the network, the input spikes
    ``(N, T, n_in)``, the targets ``y`` (labels per sequence or per step) and the trace
    (recurrent spikes, membranes, readouts).

    ``labels`` and ``predictions`` are the scored units
    (:func:`~neurofptt.learning.objectives.readout_units`): the samples when every sample is
    one classification (a label per sequence, or per-step labels of one class with gaps,
    ``per_sample``), else the labelled steps."""

    net: QuantizedNetwork
    spikes: np.ndarray
    y: np.ndarray
    trace: GoldenTrace

    @cached_property
    def units(self) -> tuple[np.ndarray, np.ndarray]:
        return readout_units(self.trace.readout, self.y)

    @property
    def predictions(self) -> np.ndarray:
        return self.units[0]

    @property
    def labels(self) -> np.ndarray:
        return self.units[1]

    @property
    def per_sample(self) -> bool:
        """Whether the units are the samples, in order, so a sample has one label and one
        prediction to show."""
        return self.y.ndim == 1 or bool(whole_samples(torch.from_numpy(self.y)).all())

    def describe(self, index: int) -> str:
        """``test sample i: label y, golden model predicts p (correct)``: what a figure of it
        shows, so that a misclassified sample is never shown as if it were a typical one."""
        if not self.per_sample:
            return f"test sample {index} (labelled per step)"
        label, pred = int(self.labels[index]), int(self.predictions[index])
        verdict = "correct" if label == pred else "incorrect"
        return f"test sample {index}: label {label}, golden model predicts {pred} ({verdict})"

    @property
    def rule(self) -> str:
        """How a prediction is read from the readouts, for the figures."""
        if self.y.ndim == 1:
            return "arg-max at the last step"
        return "arg-max of the readouts summed over the labelled steps"


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``(n_classes, n_classes)``: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def example_samples(labels: np.ndarray, predictions: np.ndarray) -> dict[str, int | None]:
    """The first correctly and the first incorrectly classified sample (``None`` where there is
    none): the first rather than a random one, so that reruns show the same samples."""
    right = np.flatnonzero(np.asarray(labels) == np.asarray(predictions))
    wrong = np.flatnonzero(np.asarray(labels) != np.asarray(predictions))
    return {
        "correct": int(right[0]) if len(right) else None,
        "incorrect": int(wrong[0]) if len(wrong) else None,
    }


def confusion_table(matrix: np.ndarray) -> list[str]:
    """The confusion matrix as markdown lines, with each true class's total and recall."""
    n = len(matrix)
    lines = [
        "| true \\ predicted | " + " | ".join(str(k) for k in range(n)) + " | total | recall |",
        "|---" * (n + 3) + "|",
    ]
    for k, row in enumerate(matrix):
        total = int(row.sum())
        recall = f"{row[k] / total:.3f}" if total else "-"
        cells = " | ".join(f"**{int(c)}**" if j == k else str(int(c)) for j, c in enumerate(row))
        lines.append(f"| {k} | {cells} | {total} | {recall} |")
    return lines


def save_figure(fig: Figure, path: Path) -> None:
    """Render ``fig`` to PNG in memory and write it atomically, so that a reader never sees a
    half-written image."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())


def plot_training(
    history: list[dict[str, float]], path: Path, picked_epoch: int | None = None
) -> None:
    """Loss and accuracies per epoch; the validation curve and the picked epoch where the
    trainer recorded them (older records have neither, and some no per-epoch test score)."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(6, 3.5), layout="tight")
    ax1 = fig.subplots()
    ax1.plot(epochs, [h["train_loss"] for h in history], color="tab:red", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_ylabel("loss", color="tab:red")
    ax2 = ax1.twinx()
    curves = (("train_accuracy", "-", "train"), ("val_accuracy", ":", "validation"))
    curves += (("test_accuracy", "--", "test"),)
    for key, style, label in curves:
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax2.plot(xs, ys, style, color="tab:blue", label=label)
    if picked_epoch is not None:
        ax2.axvline(picked_epoch, color="k", lw=0.8, label=f"picked epoch {picked_epoch}")
    ax2.set_ylabel("accuracy", color="tab:blue")
    ax2.legend(loc="best", fontsize=8)
    save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, path: Path, units: str = "test samples") -> None:
    n = len(matrix)
    fig = Figure(figsize=(0.45 * n + 2.5, 0.45 * n + 2), layout="tight")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    high = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            color = "white" if count > high else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class (golden model)")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix, {int(matrix.sum())} {units}", fontsize=9)
    save_figure(fig, path)


def plot_raster(run: GoldenTest, index: int, path: Path) -> None:
    """Input spikes, recurrent spikes and the readouts of one test sample over time, in the
    golden model; the title says which sample, its label, the prediction and the verdict."""
    x = run.spikes[index]
    z = run.trace.spikes[index]
    readout = run.trace.readout[index] * run.net.config.lsb
    label, pred = int(run.labels[index]), int(run.predictions[index])
    steps = np.arange(1, len(x) + 1)
    fig = Figure(figsize=(7, 6.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True, height_ratios=[2, 2, 1.6])
    for ax, spikes, name in ((axes[0], x, "input channel"), (axes[1], z, "recurrent neuron")):
        t, k = np.nonzero(spikes)
        ax.scatter(t + 1, k, marker="|", s=30, color="k", linewidths=1)
        ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
        ax.set_ylabel(name)
    axes[0].set_title(f"input spikes ({int(x.sum())})", fontsize=9)
    axes[1].set_title(f"recurrent spikes ({int(z.sum())})", fontsize=9)
    for k in range(readout.shape[1]):
        if k in (label, pred):
            color, width = ("tab:green", 2.0) if k == label else ("tab:red", 2.0)
            tag = "label" if k == label else "predicted"
            axes[2].plot(steps, readout[:, k], color=color, lw=width, label=f"out{k} ({tag})")
        else:
            axes[2].plot(steps, readout[:, k], color="0.7", lw=0.8)
    axes[2].set_title(f"readouts (grey: other classes); prediction = {run.rule}")
    axes[2].title.set_fontsize(9)
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("readout")
    axes[2].legend(fontsize=7, loc="upper left")
    verdict = "correctly" if label == pred else "incorrectly"
    fig.suptitle(
        f"test sample {index}: label {label}, predicted {pred} ({verdict} classified)", fontsize=10
    )
    save_figure(fig, path)


def plot_membranes(
    model: RecurrentModel, run: GoldenTest, path: Path, index: int = 0, n_neurons: int = 4
) -> None:
    """Float membrane vs golden fixed-point membrane (and readout) of test sample ``index``,
    for the checkpoint and quantized model that the quantize stage used; the title says which
    sample, its label and both predictions, so a misclassified sample is seen as one."""
    x = torch.from_numpy(run.spikes[index : index + 1].astype(np.float32))
    state = model.initial_state(1)
    mems, outs = [], []
    with torch.no_grad():
        for step in range(x.shape[1]):
            logits, state = model.step(x[:, step], state)
            mems.append(state[0][0].numpy())
            outs.append(logits[0].numpy())
    mems, outs = np.array(mems), np.array(outs)
    trace, lsb = run.trace, run.net.config.lsb
    # the most active neurons of the golden run: their membranes cross the threshold
    active = np.argsort(-trace.spikes[index].sum(0), kind="stable")[:n_neurons]
    fig = Figure(figsize=(9, 3.8), layout="tight")
    axes = fig.subplots(1, 2)
    steps = np.arange(1, x.shape[1] + 1)
    for i, j in enumerate(active):
        c = f"C{i}"
        axes[0].plot(steps, mems[:, j], color=c, label=f"float n{j}")
        axes[0].plot(steps, trace.membrane[index, :, j] * lsb, "o--", color=c, ms=3)
    axes[0].axhline(run.net.config.threshold_float, color="k", lw=0.5)
    axes[0].set_title("recurrent membranes (line: float, dots: golden)", fontsize=9)
    y = run.y[index : index + 1]
    float_pred, true = class_units(torch.from_numpy(outs[None]), torch.from_numpy(y))
    golden_pred, _ = readout_units(trace.readout[index : index + 1], y)
    for k in sorted({*true.tolist(), *float_pred.tolist(), *golden_pred.tolist()}):
        axes[1].plot(steps, outs[:, k], label=f"float out{k}")
        axes[1].plot(steps, trace.readout[index, :, k] * lsb, "o--", ms=3, label=f"golden out{k}")
    title = (
        f"readout (label {int(true[0])}, float predicts {int(float_pred[0])})"
        if run.per_sample
        else "readout (labelled per step)"
    )
    axes[1].set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.suptitle(run.describe(index), fontsize=10)
    save_figure(fig, path)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def golden_test(quantize_record: dict[str, Any]) -> tuple[RecurrentModel, GoldenTest]:
    """The float model and the golden model's test-set run of the quantize stage's checkpoint
    and quantized network."""
    model, cfg = load_trained(Path(quantize_record["checkpoint"]))
    net = QuantizedNetwork.load(Path(quantize_record["quantized"]))
    test = load_flow_task(cfg).test
    spikes = test.numpy_spikes()
    return model, GoldenTest(net, spikes, test.y.numpy(), golden_run(net, spikes))


def raster_lines(run: GoldenTest, examples: dict[str, int | None], out: Path) -> list[str]:
    """The raster section: a figure per kind of example, or a sentence where there is none
    (a stale figure of an earlier report is removed, so the folder matches the report)."""
    lines = []
    missing = {"correct": "no test sample", "incorrect": "every test sample"}
    for kind, index in examples.items():
        path = out / RASTER_PNG[kind]
        lines += [f"### {kind.capitalize()}ly classified", ""]
        if index is None:
            path.unlink(missing_ok=True)
            lines += [
                f"The golden model classifies {missing[kind]} correctly: there is no "
                f"{kind}ly classified sample to show.",
                "",
            ]
            continue
        plot_raster(run, index, path)
        text = run.describe(index)
        lines += [
            f"{text[0].upper()}{text[1:]}.",
            "",
            f"![raster of test sample {index} ({kind})]({RASTER_PNG[kind]})",
            "",
        ]
    return lines


def _summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The title and the one-line description of the run: task, rule and network."""
    hw = metrics["hardware"]
    return [
        "# neurofptt flow report",
        "",
        f"Task **{metrics['task']}**, rule **{metrics['rule']}**, network "
        f"{hw['n_in']} inputs -> {hw['n_rec']} recurrent LIF -> {hw['n_out']} leaky readouts.",
        "",
    ]


#: how the report names each simulator of ``flow.simulator``
_SIMULATOR_NAMES = {"icarus": "Icarus", "verilator": "Verilator"}


def _accuracy_lines(metrics: dict[str, Any], quant: dict[str, Any]) -> list[str]:
    """The accuracy section: one row per model the flow carried the network through, each with
    the samples it was scored on (the RTL runs a subset, so it has its own golden row)."""
    return [
        "## Accuracy",
        "",
        "| stage | accuracy | samples |",
        "|---|---|---|",
        f"| float model (PyTorch) | {_fmt(metrics['float_accuracy'])} | {quant['test_samples']} |",
        f"| golden model (integer) | {_fmt(metrics['golden_accuracy'])} | "
        f"{quant['test_samples']} |",
        f"| golden model, RTL subset | {_fmt(metrics['golden_accuracy_on_rtl_samples'])} | "
        f"{metrics['rtl_samples']} |",
        f"| RTL ({_SIMULATOR_NAMES[metrics['rtl_simulator']]} + cocotb) | "
        f"{_fmt(metrics['rtl_accuracy'])} | {metrics['rtl_samples']} |",
        "",
    ]


def _picked_lines(train: dict[str, Any]) -> list[str]:
    """Which epoch float training kept, so that the accuracies above are read as those of the
    picked epoch rather than the last; nothing for a record without a pick."""
    picked = train.get("picked_epoch")
    if picked is None:
        return []
    val = [h["val_accuracy"] for h in train["history"] if h.get("epoch") == picked]
    at = f" (validation accuracy {_fmt(val[0])})" if val and val[0] is not None else ""
    return [
        f"Float training kept epoch **{picked}** of {len(train['history'])}{at}, picked "
        "on the validation split.",
        "",
    ]


def _confusion_lines(matrix: np.ndarray, units: str) -> list[str]:
    """The golden model's confusion matrix on the test set's ``units``, as a table and a
    figure."""
    return [
        "## Golden model on the test set",
        "",
        f"Confusion matrix of the golden (integer) model on all {int(matrix.sum())} {units}: "
        "rows are the true class, columns the predicted class (diagonal in bold).",
        "",
        *confusion_table(matrix),
        "",
        f"![confusion matrix]({CONFUSION_PNG})",
        "",
    ]


def _raster_section(run: GoldenTest, examples: dict[str, int | None], out: Path) -> list[str]:
    """The spike rasters section: its introduction and :func:`raster_lines` (a sentence instead
    where the samples change class from step to step, so none is one classification)."""
    if not run.per_sample:
        for path in RASTER_PNG.values():
            (out / path).unlink(missing_ok=True)
        return [
            "## Spike rasters",
            "",
            "The test samples are labelled per step with more than one class each, so each "
            "labelled step is scored on its own and no sample is one classification to show.",
            "",
        ]
    return [
        "## Spike rasters",
        "",
        "Input spikes, recurrent spikes and readouts over time in the golden model, for the "
        "first correctly and the first incorrectly classified test sample.",
        "",
        *raster_lines(run, examples, out),
    ]


def _verification_lines(metrics: dict[str, Any], verify: dict[str, Any]) -> list[str]:
    """How much of the RTL's output was compared with the golden model, and how much differed."""
    hw = metrics["hardware"]
    return [
        "## Bit-exact verification",
        "",
        f"- neuron-steps compared: {metrics['rtl_neuron_steps']} "
        f"({metrics['rtl_samples']} samples x {verify['rtl_steps']} steps x "
        f"({hw['n_rec']} spikes + {hw['n_out']} readout values))",
        f"- mismatches: **{metrics['rtl_mismatches']}**",
        f"- simulated under {_SIMULATOR_NAMES[metrics['rtl_simulator']]} + cocotb, "
        + (
            "the events streamed by the Verilog run harness"
            if verify.get("rtl_bench") == "harness"
            else "the ports driven and watched by the cocotb bench"
        ),
        f"- clock cycles per time step (mean): {metrics['rtl_cycles_per_step']:.1f}",
        "",
    ]


def _quantization_lines(metrics: dict[str, Any], quant: dict[str, Any]) -> list[str]:
    """The fixed-point formats and what quantizing cost (shifts, clamped weights)."""
    hw = metrics["hardware"]
    return [
        "## Quantization",
        "",
        f"- weights {hw['weight_bits']}-bit, membrane {hw['membrane_bits']}-bit "
        f"(Q{hw['membrane_bits'] - hw['frac_bits']}.{hw['frac_bits']}), "
        f"threshold {hw['threshold']},"
        f" leak shifts {hw['leak_shift']}/{hw['out_leak_shift']}, reset {hw['reset']}",
        f"- per-matrix shifts: {quant['shifts']}; clamped weights: {quant['clipped_weights']}",
        f"- mean spike rate (golden, test set): {quant['spike_rate']:.3f}",
        "",
    ]


def _fpga_lines(metrics: dict[str, Any]) -> list[str]:
    """The synthesis results, or why synthesis did not run; Fmax only where place and route
    measured it."""
    fpga = metrics["fpga"]
    if not fpga:
        summary = f"- not run: {metrics['fpga_reason']}"
    else:
        fmax = (
            f"Fmax {fpga['fmax_mhz']:.1f} MHz on {fpga.get('device')}"
            if fpga.get("fmax_mhz")
            else "Fmax not measured (place and route off: flow.fpga_pnr = true)"
        )
        summary = (
            f"- family {fpga.get('family')}: LUT {fpga.get('lut')}, FF {fpga.get('ff')}, "
            f"BRAM {fpga.get('bram')}, DSP {fpga.get('dsp')}, LUT-RAM {fpga.get('lutram')}, {fmax}"
        )
    return ["## FPGA", "", summary, ""]


def _plots_lines(metrics: dict[str, Any], run: GoldenTest, picked: int | None) -> list[str]:
    """The training curve and the membrane traces, each with what it shows."""
    return [
        "## Plots",
        "",
        "Training curve"
        + (f" (vertical line: the picked epoch {picked})" if picked is not None else "")
        + ":",
        "",
        f"![training curve]({TRAINING_PNG})",
        "",
        f"Float and golden membranes and readouts of {run.describe(0)}:",
        "",
        f"![membrane traces]({MEMBRANE_PNG})",
        "",
        f"Verilog: `{metrics['verilog']}`",
        "",
    ]


def write_report(out: Path) -> dict[str, Any]:
    """Write ``report.md``, ``metrics.json`` and the figures of the run folder ``out``."""
    out = Path(out)
    metrics = collect_metrics(out)
    train = _read(out, "train")
    quant = _read(out, "quantize")
    verify = _read(out, "verify")
    model, run = golden_test(quant)
    n_out = run.net.config.n_out
    matrix = confusion_matrix(run.labels, run.predictions, n_out)
    examples = example_samples(run.labels, run.predictions) if run.per_sample else {}
    metrics["confusion_matrix"] = matrix.tolist()
    metrics["example_samples"] = examples
    picked = train.get("picked_epoch")
    plot_training(train["history"], out / TRAINING_PNG, picked)
    units = "test samples" if run.per_sample else "labelled test steps"
    plot_confusion(matrix, out / CONFUSION_PNG, units)
    plot_membranes(model, run, out / MEMBRANE_PNG)
    write_json(out / "metrics.json", metrics)
    lines = [
        *_summary_lines(metrics),
        *_accuracy_lines(metrics, quant),
        *_picked_lines(train),
        *_confusion_lines(matrix, units),
        *_raster_section(run, examples, out),
        *_verification_lines(metrics, verify),
        *_quantization_lines(metrics, quant),
        *_fpga_lines(metrics),
        *_plots_lines(metrics, run, picked),
    ]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    return metrics
