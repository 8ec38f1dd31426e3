"""The stages of the flow, each usable on its own with the files of the previous stage.

``train`` -> ``checkpoint.pt``; ``quantize`` -> ``quantized.npz`` (+ float and golden accuracy);
``generate`` -> ``rtl/`` (Verilog, memory files); ``verify`` -> ``cocotb/`` (RTL run on held-out
samples; for a learning core also ``verify --learn`` -> ``cocotb_learning/``, the learning
datapath on training samples); ``synth`` -> ``fpga.json``; ``report`` -> ``report.md``,
``metrics.json`` and plots.
Every stage writes a small JSON record into the output folder; the report collects them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from neurofptt.errors import CheckpointError, ConfigError, ToolMissingError, VerificationError
from neurofptt.flow.config import FlowConfig
from neurofptt.hdl import cycles_per_update, generate_verilog
from neurofptt.hdl.cost import learning_cycles_per_update
from neurofptt.hdl.synth import (
    DEFAULT_LUT_MAPPER,
    DEFAULT_ROUTER,
    fpga_tools_available,
    synthesize,
)
from neurofptt.io import write_json
from neurofptt.learning.distributed import is_main, world_size
from neurofptt.learning.objectives import readout_accuracy
from neurofptt.learning.registry import build_model as registry_build_model
from neurofptt.learning.trainer import (
    config_differences,
    evaluate,
    fit,
    load_checkpoint,
    picked_epoch,
    picked_weights,
)
from neurofptt.models.base import RecurrentModel
from neurofptt.quant.fake import add_weight_quantization
from neurofptt.quant.golden import golden_run
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.quant.quantizer import quantize
from neurofptt.tasks import TASKS, TaskData, is_data_path, load_task
from neurofptt.tasks.base import CLASS_TARGETS
from neurofptt.verify import run_rtl, run_rtl_learning

CHECKPOINT = "checkpoint.pt"
QUANTIZED = "quantized.npz"
RTL_DIR = "rtl"
CORE_NAME = "neurofptt_core"


def build_model(cfg: FlowConfig) -> RecurrentModel:
    """The model of a flow config: the hardware's LIF network, or another model of the same width
    (``train.model``, ``train.layers``), which trains and evaluates but cannot be quantized."""
    torch.manual_seed(cfg.train.seed)
    hw, train = cfg.hardware, cfg.train
    hidden: int | list[int] = hw.n_rec if train.layers == 1 else [hw.n_rec] * train.layers
    if train.model not in ("lif", "alif"):
        return registry_build_model(train.model, hw.n_in, hidden, hw.n_out)
    model = registry_build_model(
        train.model,
        hw.n_in,
        hidden,
        hw.n_out,
        beta=hw.beta,
        out_beta=hw.out_beta,
        threshold=hw.threshold_float,
        reset=hw.reset,
        surrogate_name=train.surrogate,
        slope=train.slope,
        input_gain=train.input_gain,
    )
    if train.model == "lif" and train.layers == 1 and train.qat_epochs > 0:
        add_weight_quantization(model, hw)  # the network the hardware runs: train for its weights
    return model


def load_float_task(cfg: FlowConfig) -> TaskData:
    """The flow's task (a built-in one or a data file, ``flow.task``), refused unless it has the
    config's inputs and outputs: what the float network (:func:`build_model`) trains on, whatever
    its targets (class labels, or a regression's real values)."""
    task = load_task(cfg.flow.task)
    data_file = is_data_path(cfg.flow.task) and cfg.flow.task not in TASKS
    if task.train.n_in != cfg.hardware.n_in:
        raise ConfigError(
            f"task {task.name!r} has {task.train.n_in} input channels but hardware.n_in = "
            f"{cfg.hardware.n_in}; set hardware.n_in = {task.train.n_in}"
            + (
                " (or pool the file to fewer channels: neurofptt data convert --channels)"
                if data_file
                else ""
            )
        )
    if task.n_out != cfg.hardware.n_out:
        outputs = "classes" if task.target in CLASS_TARGETS else "outputs"
        raise ConfigError(
            f"task {task.name!r} has {task.n_out} {outputs} but hardware.n_out = "
            f"{cfg.hardware.n_out}; set hardware.n_out = {task.n_out}"
        )
    return task


def check_hardware_target(task: TaskData) -> None:
    """Refuse a task whose targets the hardware cannot be scored on: it classifies (class labels,
    one per sequence, or per step with ``-1`` where a step has no target), so a regression task
    stops before the stages that go to hardware; its float network trains all the same."""
    if task.target not in CLASS_TARGETS:
        raise ConfigError(
            f"task {task.name!r} has {task.target!r} targets, which the hardware cannot run (it "
            "classifies: labels per sequence or per step); train its float network with "
            "'neurofptt train' (--engine float, the default)"
        )


def load_flow_task(cfg: FlowConfig) -> TaskData:
    """The flow's task (:func:`load_float_task`), refused unless the hardware can run it as well
    (:func:`check_hardware_target`): what quantization, the golden model, the RTL and on-chip
    learning take."""
    task = load_float_task(cfg)
    check_hardware_target(task)
    return task


def float_config(cfg: FlowConfig, task: TaskData) -> FlowConfig:
    """The config the float network of ``task`` trains with: ``cfg`` itself, but without
    quantization-aware training (``train.qat_epochs = 0``) for a task the hardware cannot run.
    Those epochs train for the weights the hardware will hold, and only they may be picked; a
    regression network never goes to the hardware, so they would only round its weights and
    narrow the epochs the validation split picks from.  The checkpoint records the config as
    trained, so loading and resuming rebuild the same network."""
    if task.target in CLASS_TARGETS or cfg.train.qat_epochs == 0:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, qat_epochs=0))


# -- train ----------------------------------------------------------------------------------------
def stage_train(
    cfg: FlowConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    task: TaskData | None = None,
) -> dict:
    """Train the flow's float network into ``out`` (``checkpoint.pt``, ``metrics.jsonl``,
    ``train.json``); returns the ``train.json`` record.  ``task``: the flow's task if the
    caller has loaded it already (the flow, which checks it for the hardware first:
    :func:`load_flow_task`), else it is loaded here with :func:`load_float_task`, so a
    regression task trains too (with :func:`float_config`).

    ``flow.val_fraction`` of the training samples (seeded by ``train.seed``) are held out to pick
    the reported epoch (:func:`~neurofptt.learning.trainer.fit`); the checkpoint keeps that epoch's
    weights, which :func:`stage_quantize` quantizes.  The record holds ``task``, ``target`` (the
    task's kind of target), ``metric`` (``"accuracy"``, or ``"mse"`` for a regression task:
    :func:`~neurofptt.learning.objectives.metric_name`), ``rule``, ``history`` (the per-epoch
    records), ``picked_epoch``, ``val_<metric>`` (the picked epoch's), ``test_<metric>`` (the
    picked epoch's, scored once) and ``float_<metric>`` (the same number under the name the
    sweeps and reports read: ``float_accuracy``, or ``float_mse``), ``train_samples``,
    ``val_samples``, ``val_split``, ``val_fraction``, ``seconds``, ``threads`` (torch's thread
    count, set by the caller: :mod:`neurofptt.learning.threads`), ``processes`` (the
    data-parallel ranks, :mod:`neurofptt.learning.distributed`; only rank 0 writes),
    ``checkpoint`` and ``derived`` (the hardware settings taken from the task, with the rule and
    the numbers that gave them: :attr:`~neurofptt.flow.config.FlowConfig.derived`).
    """
    out.mkdir(parents=True, exist_ok=True)
    if task is None:
        task = load_float_task(cfg)
    cfg = float_config(cfg, task)
    model = build_model(cfg)
    start = time.perf_counter()
    history = fit(
        model,
        task,
        cfg.train,
        out / CHECKPOINT,
        resume=resume,
        progress=progress,
        meta={"flow": cfg.to_dict()},
        val_fraction=cfg.flow.val_fraction,
    )
    record = {
        "task": task.name,
        "target": task.target,
        "metric": history.metric,
        "rule": cfg.train.rule,
        "history": list(history),
        **history.summary(),
        f"float_{history.metric}": history.test,
        "val_fraction": cfg.flow.val_fraction,
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),  # what the seconds were measured with
        "processes": world_size(),  # data-parallel ranks (torchrun), each with those threads
        "checkpoint": str(out / CHECKPOINT),
        "derived": cfg.derived,
    }
    if is_main():
        write_json(out / "train.json", record)
    return record


def load_trained(
    checkpoint: Path, config: FlowConfig | None = None
) -> tuple[RecurrentModel, FlowConfig]:
    """Rebuild the float model of a checkpoint, with the weights of its picked epoch (the best on
    validation; :func:`~neurofptt.learning.trainer.picked_weights`); a given config must match
    the one it was trained with (sizes and formats), otherwise the weights would be read into the
    wrong network.  Only ``lanes``, which changes no arithmetic, may differ: the given config's
    value is used."""
    saved = load_checkpoint(checkpoint)
    try:
        trained_cfg = FlowConfig.from_dict(saved["meta"]["flow"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{checkpoint} has no flow configuration; retrain it") from exc
    except ConfigError as exc:  # written by a version whose config layout has changed since
        raise CheckpointError(
            f"{checkpoint} was saved with a config this version cannot read ({exc}); retrain it"
        ) from exc
    if config is not None:
        lanes = config.hardware.lanes
        trained_cfg = dataclasses.replace(
            trained_cfg, hardware=trained_cfg.hardware.replace(lanes=lanes)
        )
        diffs = config_differences(trained_cfg.hardware.to_dict(), config.hardware.to_dict())
        if diffs:
            raise CheckpointError(
                f"checkpoint {checkpoint} does not match the hardware config "
                f"({'; '.join(diffs)}); pass the config it was trained with or retrain"
            )
    model = build_model(trained_cfg)
    try:
        model.load_state_dict(picked_weights(saved))
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit the model: {exc}") from exc
    model.eval()
    return model, trained_cfg


# -- quantize -------------------------------------------------------------------------------------
def stage_quantize(
    out: Path, checkpoint: Path | None = None, config: FlowConfig | None = None
) -> dict:
    checkpoint = checkpoint or out / CHECKPOINT
    model, cfg = load_trained(checkpoint, config)  # the picked epoch's weights
    epoch = picked_epoch(load_checkpoint(checkpoint))
    task = load_flow_task(cfg)
    net, report = quantize(model, cfg.hardware)
    net.save(out / QUANTIZED)
    float_acc = evaluate(model, task.test)
    trace = golden_run(net, task.test.numpy_spikes())
    golden_acc = readout_accuracy(trace.readout, task.test.y.numpy())
    record = {
        "float_accuracy": float_acc,
        "golden_accuracy": golden_acc,
        "test_samples": len(task.test),
        "shifts": report.shifts,
        "clipped_weights": report.clipped,
        "max_weight_error": report.max_error,
        "hardware": net.config.to_dict(),
        "spike_rate": float(trace.spikes.mean()),
        "quantized": str(out / QUANTIZED),
        "checkpoint": str(checkpoint),
        "picked_epoch": epoch,
    }
    write_json(out / "quantize.json", record)
    return record


# -- generate -------------------------------------------------------------------------------------
def stage_generate(out: Path, model_path: Path | None = None) -> dict:

    net = QuantizedNetwork.load(model_path or out / QUANTIZED)
    design = generate_verilog(net, out / RTL_DIR, name=CORE_NAME)
    record = {"verilog": str(design.verilog), "top": CORE_NAME, "rtl_dir": str(out / RTL_DIR)}
    write_json(out / "generate.json", record)
    return record


# -- verify ---------------------------------------------------------------------------------------
def _task_of(net: QuantizedNetwork, task_name: str) -> TaskData:
    """Load ``task_name``; the hardware must be able to run it (:func:`check_hardware_target`)
    and its inputs and classes must be the model's, else the stimulus would not fit the core's
    ports."""
    task = load_task(task_name)
    check_hardware_target(task)
    if (task.test.n_in, task.n_out) != (net.config.n_in, net.config.n_out):
        raise ConfigError(
            f"the quantized model has n_in = {net.config.n_in}, n_out = {net.config.n_out} but "
            f"task {task_name!r} has {task.test.n_in} inputs and {task.n_out} classes; "
            "verify it on its own task"
        )
    return task


def _sample_count(samples: int, available: int, split: str) -> int:
    """The number of samples to simulate: ``samples``, capped at ``available``; 0 means all."""
    if samples < 0:
        raise ConfigError(f"samples must be >= 0 (0 = the whole {split} set), got {samples}")
    return available if samples == 0 else min(samples, available)


def stage_verify(
    out: Path,
    model_path: Path | None = None,
    verilog: Path | None = None,
    samples: int = 0,
    task_name: str = "digits",
    simulator: str = "icarus",
) -> dict:
    """Run the inference testbench on the first ``samples`` test samples (0: all) under
    ``simulator`` (``flow.simulator``).  A learning core runs here as an inference core: every
    ``STEP`` carries ``learn = 0``, so its learning datapath stays idle;
    :func:`stage_verify_learning` checks that."""

    net = QuantizedNetwork.load(model_path or out / QUANTIZED)
    task = _task_of(net, task_name)
    n = _sample_count(samples, len(task.test), "test")
    spikes = task.test.numpy_spikes()[:n]
    labels = task.test.y.numpy()[:n]
    # the Verilog generated in OUT is the artefact to verify; a model given explicitly gets its
    # own Verilog generated by run_rtl
    if verilog is None and model_path is None and (out / RTL_DIR / f"{CORE_NAME}.v").is_file():
        verilog = out / RTL_DIR / f"{CORE_NAME}.v"
    start = time.perf_counter()
    result = run_rtl(net, spikes, out / "cocotb", verilog=verilog, simulator=simulator)
    summary = result.summary()
    record = {
        "simulator": simulator,
        "rtl_bench": summary["bench"],
        "rtl_samples": n,
        "rtl_steps": int(spikes.shape[1]),
        "rtl_neuron_steps": int(result.neuron_steps),
        "rtl_mismatches": int(result.n_mismatches) + (0 if result.complete else 1),
        "rtl_complete": result.complete,
        "rtl_accuracy": readout_accuracy(result.readout, labels),
        "golden_accuracy_on_rtl_samples": readout_accuracy(result.golden.readout, labels),
        "rtl_cycles": int(result.cycles),
        "cycles_per_step": summary["cycles_per_step_mean"],
        "cycles_per_step_max": summary["cycles_per_step_max"],
        "lanes": net.config.lanes,
        "mismatch_report": result.report() if not result.ok else "",
        "first_mismatches": [dataclasses.asdict(m) for m in result.mismatches[:20]],
        # the simulator's two costs: building the simulation and simulating the cycles
        "rtl_build_seconds": summary["build_seconds"],
        "rtl_sim_seconds": summary["sim_seconds"],
        "seconds": time.perf_counter() - start,
    }
    write_json(out / "verify.json", record)
    return record


#: Training samples ``verify --learn`` learns on by default, and the most the learning flow
#: verifies under Icarus.  Every update is followed by a full read-back of the weights (a dump
#: of every weight word), so the simulation costs about one dump per update; a few samples
#: already exercise every weight word, the saturation of the updates and the learning state
#: carried from sample to sample.
LEARNING_VERIFY_SAMPLES = 8


def learning_flow_samples(rtl_samples: int, simulator: str, updates_per_sample: float = 1.0) -> int:
    """The training samples the learning flow verifies in the RTL (0: all of them, a whole
    epoch of updates) for ``flow.rtl_samples`` and ``flow.simulator``: under Verilator
    ``rtl_samples`` itself; under Icarus, which simulates a learning run about 20 times slower
    and pays a weight read-back per update (``docs/performance.md`` has the times), the fewest
    whole samples of at least :data:`LEARNING_VERIFY_SAMPLES` updates: eight digits, two
    samples of five supervised steps, one trial of a task with fifteen labelled steps
    (``updates_per_sample``)."""
    if simulator == "verilator":
        return rtl_samples
    cap = max(1, math.ceil(LEARNING_VERIFY_SAMPLES / max(1.0, updates_per_sample)))
    return min(rtl_samples or cap, cap)


def stage_verify_learning(
    out: Path,
    model_path: Path | None = None,
    samples: int = LEARNING_VERIFY_SAMPLES,
    task_name: str = "digits",
    simulator: str = "icarus",
) -> dict:
    """Run the learning testbench on the first ``samples`` training samples (0: all) under
    ``simulator`` (``flow.simulator``): the core generated from the model learns on them from
    the model's weights, and every weight (and FPTT's ``W_bar``) is read back after every
    update and compared with the golden model; writes ``verify_learning.json``.  The model
    needs a learning section (``hardware.learning``)."""

    path = model_path or out / QUANTIZED
    net = QuantizedNetwork.load(path)
    if net.config.learning is None:
        raise ConfigError(
            f"{path} has no learning section (hardware.learning), so its core cannot learn; "
            "train it on chip with `neurofptt train --engine golden` (which writes one), or add "
            "a [hardware.learning] table to its flow config and quantize it again"
        )
    task = _task_of(net, task_name)
    n = _sample_count(samples, len(task.train), "training")
    start = time.perf_counter()
    rtl = run_rtl_learning(
        net,
        task.train.numpy_spikes()[:n],
        task.train.y.numpy()[:n],
        out / "cocotb_learning",
        simulator=simulator,
    )
    cfg = net.config
    record = {
        "simulator": simulator,
        "task": task.name,
        "rule": cfg.learning.mode,
        "rtl_learning_samples": n,
        "rtl_updates": rtl.updates,
        "rtl_synaptic_updates": rtl.synaptic_updates,
        "rtl_values_compared": rtl.compared,
        "rtl_mismatches": rtl.n_mismatches,  # a timeout is one (the testbench records it)
        "rtl_complete": rtl.complete,
        "mismatch_report": rtl.report() if not rtl.ok else "",
        "first_mismatches": [dataclasses.asdict(m) for m in rtl.mismatches[:20]],
        "learning_cycles_per_update": cycles_per_update(cfg),
        "learning_cycles_per_update_measured": (
            int(np.max(rtl.update_cycles)) if len(rtl.update_cycles) else None
        ),
        "learning_cycles_per_update_formula": learning_cycles_per_update(cfg),
        "rtl_cycles": rtl.cycles,
        # the two costs: the golden run and the simulator's build, and simulating the cycles
        "rtl_build_seconds": round(rtl.build_seconds, 3),
        "rtl_sim_seconds": round(rtl.sim_seconds, 3),
        "seconds": time.perf_counter() - start,
    }
    write_json(out / "verify_learning.json", record)
    return record


def check_learning_record(record: dict, out: Path) -> None:
    """Raise :class:`VerificationError` with the report if ``record`` (from
    :func:`stage_verify_learning`, run in ``out``) shows a mismatch or an unfinished run."""
    if record["rtl_mismatches"] or not record["rtl_complete"]:
        raise VerificationError(
            f"{record['mismatch_report']}\nsee {out / 'cocotb_learning'} and "
            f"{out / 'verify_learning.json'}; the learning RTL and the golden model must agree "
            "exactly"
        )


# -- synth ----------------------------------------------------------------------------------------
def stage_synth(
    out: Path,
    verilog: Path | None = None,
    top: str = CORE_NAME,
    family: str = "ecp5",
    pnr: bool = False,
    *,
    device: str | None = None,
    package: str | None = None,
    freq_mhz: float = 50.0,
    fold_weights: bool = False,
    register_ports: bool = False,
    router: str = DEFAULT_ROUTER,
    seed: int | None = None,
    lut_mapper: str = DEFAULT_LUT_MAPPER,
    required: bool = False,
) -> dict:
    """Synthesise the core for ``family``'s ``device`` and ``package`` (default the family's
    default part), and place and route it with ``pnr`` for a ``freq_mhz`` clock (an hour at
    most: a 256-neuron learning core on the ECP5-85k takes tens of minutes), with
    ``fold_weights`` and ``register_ports`` behind :func:`~neurofptt.hdl.synth.port_wrapper`,
    with nextpnr's ``router`` and placer ``seed``, and with Yosys's ``lut_mapper``; writes
    ``synth.json``.

    Without the FPGA tools the record says why (``fpga`` is ``None``): the flow goes on without
    synthesis.  With ``required`` (an explicit ``neurofptt synth``) a missing tool raises
    :class:`ToolMissingError` after the record is written, since the one thing asked for could
    not be done.
    """
    verilog = verilog or out / RTL_DIR / f"{CORE_NAME}.v"
    ok, reason = fpga_tools_available(family, place_and_route=pnr)
    if not ok:
        record = {"fpga": None, "reason": reason}
    else:
        try:
            report = synthesize(
                Path(verilog),
                top,
                family=family,
                work_dir=out / "synth",
                device=device,
                package=package,
                place_and_route=pnr,
                freq_mhz=freq_mhz,
                timeout_s=3600,
                fold_weights=fold_weights,
                register_ports=register_ports,
                router=router,
                seed=seed,
                lut_mapper=lut_mapper,
            )
            record = {"fpga": report.to_dict(), "reason": None}
        except ToolMissingError as exc:
            record = {"fpga": None, "reason": str(exc)}
    write_json(out / "synth.json", record)
    if required and record["fpga"] is None:
        raise ToolMissingError(record["reason"])
    return record


# -- the whole flow -------------------------------------------------------------------------------
