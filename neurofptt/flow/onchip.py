"""On-chip learning in the flow: the golden model as a training engine, and the learning flow.

``stage_train_onchip`` learns a task the way the chip does (fixed-point e-prop or FPTT, one sample
at a time).  ``run_learning_flow`` puts the learning core through the same checks as the inference
flow: the rule in float (the reference accuracy, and again learned one sample at a time like the
chip), the rule on chip in the golden model, and the learning RTL under cocotb (a whole epoch of
the training samples under Verilator, a few under Icarus:
:func:`~neurofptt.flow.stages.learning_flow_samples`), every weight read back after every update
and compared with the golden model.  On-chip learning runs twice: from random weights (learning
from scratch, ``onchip_accuracy``) and from the float network quantized (adapting a pre-trained
network, ``onchip_finetune_accuracy``).  Its
``metrics.json`` also holds ``float_accuracy``, ``float_online_accuracy``,
``quantized_accuracy``, ``learning_memory_overhead``, ``rtl_weight_mismatches`` and
``learning_cycles_per_update``, and the host's rate of each on-chip run: the derivation from
the task (``onchip_rate``), the error shift offsets the runs started from and their tuning grids
(``--tune``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from neurofptt.errors import ConfigError
from neurofptt.flow.config import LEAK_FIELDS, FlowConfig
from neurofptt.flow.onchip_rates import (
    HIDDEN_RATES,
    DerivedRate,
    derive_rate,
    readout_rate_shift,
    with_hidden_rates,
)
from neurofptt.flow.onchip_train import learning_hardware
from neurofptt.flow.onchip_tune import learn_at_task_rate
from neurofptt.flow.stages import (
    QUANTIZED,
    check_learning_record,
    learning_flow_samples,
    load_flow_task,
    stage_quantize,
    stage_train,
    stage_verify_learning,
)
from neurofptt.hdl.cost import learning_cycles_per_update, learning_memory_overhead
from neurofptt.io import write_json
from neurofptt.onchip import fan_in_spreads, random_network
from neurofptt.quant.config import LEARNING_MODES, HardwareConfig, LearningConfig
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.tasks.base import TaskData

#: the rules the golden engine learns with: the learning core's modes
ONCHIP_RULES = LEARNING_MODES
#: what the learning flow's metrics take over from ``verify_learning.json``
RTL_KEYS = (
    "rtl_learning_samples",
    "rtl_updates",
    "rtl_synaptic_updates",
    "rtl_values_compared",
    "learning_cycles_per_update",
    "learning_cycles_per_update_measured",
    "learning_cycles_per_update_formula",
    "rtl_cycles",
    "rtl_sim_seconds",
)

SHIFTS = ("w_in_shift", "w_rec_shift", "w_out_shift")  # chosen per network by the quantizer


def from_scratch(hw: HardwareConfig, derived: dict[str, Any]) -> HardwareConfig:
    """``hw`` for on-chip learning from a random start: a readout leak the task gave
    (``out_leak_shift`` in ``derived``, :func:`~neurofptt.flow.config.task_leak`'s record)
    returns to the default; one the config sets stays.

    The readout's leak follows the task's whole span for float training, where FPTT's gradient
    from the detached state needs the readout to hold a cue's evidence until the labelled steps
    (``docs/results-float-learning.md``).  On chip the rules' traces carry that evidence instead:
    ``xbar`` and ``zbar`` filter the inputs and spikes with the membrane leak, which does follow
    the task, and both rules learned ``cue-accumulation-short`` from scratch with the default
    readout leak.  With the readout's leak from the span, and the readout's rate lowered to
    match it (:func:`with_readout_rate`), e-prop learns that task as well or better, but FPTT
    lost a seed to a slow start; the measurements are in ``docs/results-learning.md`` ("The
    readout's leak on chip")."""
    if "out_leak_shift" not in derived:
        return hw
    return hw.replace(out_leak_shift=HardwareConfig.out_leak_shift)


def with_readout_rate(hw: HardwareConfig, derived: dict[str, Any]) -> HardwareConfig:
    """``hw`` with the readout's rate that its readout leak asks for
    (:func:`~neurofptt.flow.onchip_rates.readout_rate_shift`), where the config leaves
    ``lr_shift_out`` to the leak (``readout_rate`` in ``derived``,
    :attr:`~neurofptt.flow.config.FlowConfig.derived`); the leak is the one learning runs with,
    which :func:`from_scratch` may have changed."""
    if "readout_rate" not in derived or hw.learning is None:
        return hw
    rate = readout_rate_shift(hw.out_leak_shift)
    return hw.replace(learning=dataclasses.replace(hw.learning, lr_shift_out=rate))


def onchip_core(
    cfg: FlowConfig, rule: str, *, scratch: bool, task: TaskData | None = None
) -> tuple[HardwareConfig, DerivedRate]:
    """The core on-chip learning with ``rule`` runs on, and the host's rate derived for it.

    The core: ``hardware`` with ``hardware.learning`` (or, without that table, the default
    :class:`~neurofptt.quant.config.LearningConfig`) in ``rule``'s mode, :func:`from_scratch`'s
    readout leak when learning from a random start (``scratch``), :func:`with_readout_rate`'s
    readout rate, and the recurrent and readout rates lowered by the training samples' count of
    updates where the file leaves them out
    (:func:`~neurofptt.flow.onchip_rates.hidden_rate_shift`).

    The rate (:func:`~neurofptt.flow.onchip_rates.derive_rate`) is derived once, on the core
    before that lowering, and goes with the core: its error shift offset counts from the
    fastest of the chip's rates, which the lowering can change (when ``lr_shift_in`` is set
    above the others), so a derivation on the lowered core would undo part of it.
    ``task``: the flow's task if the caller has loaded it (else it is loaded here)."""
    learning = dataclasses.replace(cfg.hardware.learning or LearningConfig(), mode=rule)
    hw = cfg.hardware.replace(learning=learning)
    if scratch:
        hw = from_scratch(hw, cfg.derived.get("leak", {}))
    hw = with_readout_rate(hw, cfg.derived)
    if task is None:
        task = load_flow_task(cfg)
    rate = derive_rate(hw, task.train.numpy_spikes(), task.train.y.numpy())
    fields = tuple(name for name in HIDDEN_RATES if name not in cfg.set_learning)
    if fields and rate.hidden_shift:
        hw = hw.replace(learning=with_hidden_rates(hw.learning, rate.hidden_shift, fields))
    return hw, rate


def onchip_hardware(
    cfg: FlowConfig, rule: str, *, scratch: bool, task: TaskData | None = None
) -> HardwareConfig:
    """The core of :func:`onchip_core`, without its rate."""
    return onchip_core(cfg, rule, scratch=scratch, task=task)[0]


def start_network(cfg: FlowConfig, hw: HardwareConfig, init: Path | None) -> QuantizedNetwork:
    """The network on-chip learning starts from, on the core ``hw`` (:func:`onchip_core`'s).

    ``init`` is a ``quantized.npz`` of the same hardware; it keeps the per-matrix weight shifts
    the quantizer chose for it.  Without it the weights are random, uniform within
    :func:`~neurofptt.onchip.fan_in_spreads` (seed ``train.seed``).
    """
    if init is None:
        return random_network(hw, seed=cfg.train.seed, spread=fan_in_spreads(hw))
    start = QuantizedNetwork.load(init)
    start_hw = start.config.replace(learning=hw.learning)
    if start_hw.replace(**{name: getattr(hw, name) for name in SHIFTS}) != hw:
        raise ConfigError(
            f"{init} was quantized for another hardware config; use the config it was made "
            "with (only hardware.learning and the weight shifts may differ)"
        )
    return QuantizedNetwork(start_hw, start.w_in, start.w_rec, start.w_out)


def check_rule(rule: str) -> None:
    """Refuse a rule the golden engine does not learn with."""
    if rule not in ONCHIP_RULES:
        raise ConfigError(f"the golden engine learns with {ONCHIP_RULES}, not {rule!r}")


def initial_network(
    cfg: FlowConfig, rule: str, init: Path | None = None, task: TaskData | None = None
) -> QuantizedNetwork:
    """:func:`start_network` on :func:`onchip_hardware`'s core (``task`` as there)."""
    check_rule(rule)
    return start_network(cfg, onchip_hardware(cfg, rule, scratch=init is None, task=task), init)


def finetune_offset(cfg: FlowConfig, learning: LearningConfig) -> int:
    """How much the host raises every update's error shift when learning starts from a trained
    network: ``train.onchip_finetune_shift``, plus ``alpha_shift - 1`` in FPTT mode.

    Steps that build a network from scratch in a few epochs knock a trained one off its
    optimum, so adapting uses rates ``2**-onchip_finetune_shift`` of those.  FPTT needs lower
    ones still: its running mean moves by ``g / (2 alpha)`` per update, ``2**(alpha_shift - 1)``
    times e-prop's step, and the weights follow it; the extra ``alpha_shift - 1`` makes FPTT's
    running-mean step the size of e-prop's weight step.  The measurements behind the choice are
    in ``docs/results-hardware.md`` ("Adapting a trained network over a full run").
    """
    extra = learning.alpha_shift - 1 if learning.mode == "fptt" else 0
    return cfg.train.onchip_finetune_shift + extra


def stage_train_onchip(
    cfg: FlowConfig,
    out: Path,
    rule: str,
    *,
    init: Path | None = None,
    tune: bool = False,
    progress: bool = True,
) -> dict:
    """Learn the task the way the chip does: the golden model's fixed-point ``rule`` (e-prop or
    FPTT), one sample at a time, for ``train.epochs`` epochs; writes the learned ``quantized.npz``
    (so ``generate``/``verify`` run on it) and ``train_onchip.json``.

    The start is ``init`` (a ``quantized.npz``, e.g. from float training and ``quantize``) or a
    random network (see :func:`initial_network`).  The learning constants are
    ``hardware.learning``, or the default :class:`~neurofptt.quant.config.LearningConfig` when
    the table is absent.  The host raises every update's error shift by the offset derived from
    the training samples (:func:`~neurofptt.flow.onchip_rates.derive_rate`: 0 on the digits),
    and from ``init`` by :func:`finetune_offset` more (rates 32 times lower for e-prop by
    default, 256 times for FPTT).  With ``tune`` the first epochs are learned at offsets around
    that one in parallel and the run goes on from the best on the validation split
    (:mod:`neurofptt.flow.onchip_tune`).  The rate halves ``train.onchip_halvings`` times over
    the run (default 3), evenly (:func:`~neurofptt.flow.onchip_train.halving_period`).
    The saved network is that of the epoch with the best validation accuracy (``picked_epoch``,
    on the task's validation split or a held-out ``flow.val_fraction`` of the training samples),
    and ``onchip_accuracy`` is its test accuracy;
    each epoch's record goes to ``metrics.jsonl`` as it finishes.  The record holds the
    derivation (``rate``), the offset the run started from (``error_shift_offset``), the
    tuning grid (``tune``, ``None`` without tuning), the hardware settings taken from the task
    (``derived``, :attr:`~neurofptt.flow.config.FlowConfig.derived`; empty from ``init``, whose
    file brings its own), the leaks the run learned with (``leaks``: from scratch the readout's
    is :func:`from_scratch`'s) and the learning config (``learning``, whose ``lr_shift_out``
    follows the readout's leak unless the config sets it: :func:`with_readout_rate`).
    """
    out.mkdir(parents=True, exist_ok=True)
    check_rule(rule)
    task = load_flow_task(cfg)
    core, rate = onchip_core(cfg, rule, scratch=init is None, task=task)
    net = start_network(cfg, core, init)
    hw = learning_hardware(net, rule, task)

    def show(record: dict[str, float]) -> None:
        if progress:
            print(
                f"epoch {record['epoch']:3d}  on-chip train {record['train_accuracy']:.3f} "
                f"(online {record['online_train_accuracy']:.3f})  "
                f"val {record['val_accuracy']:.3f}",
                flush=True,
            )

    start = time.perf_counter()
    run = learn_at_task_rate(
        net,
        task,
        rate,
        epochs=cfg.train.epochs,
        seed=cfg.train.seed,
        halvings=cfg.train.onchip_halvings,
        val_fraction=cfg.flow.val_fraction,
        extra_offset=0 if init is None else finetune_offset(cfg, hw.learning),
        tune=tune,
        run_dir=out,
        progress=show,
        log=print if progress else None,
    )
    history = run.history
    history.net.save(out / QUANTIZED)
    record = {
        "task": task.name,
        "rule": rule,
        "engine": "golden",
        "init": "random" if init is None else str(init),
        "derived": cfg.derived if init is None else {},
        "leaks": {name: getattr(net.config, name) for name in LEAK_FIELDS},
        "learning": hw.to_dict()["learning"],
        **run.record(),
        "history": history.epochs,
        "onchip_accuracy": history.test_accuracy,
        "picked_epoch": history.picked_epoch,
        "val_accuracy": history.epochs[history.picked_epoch - 1]["val_accuracy"],
        "train_samples": history.train_samples,
        "val_samples": history.val_samples,
        "updates": history.state.updates,
        "learning_memory_overhead": learning_memory_overhead(hw, rule),
        "learning_cycles_per_update": learning_cycles_per_update(hw),
        "seconds": time.perf_counter() - start,
        "model": str(out / QUANTIZED),
    }
    write_json(out / "train_onchip.json", record)
    return record


def rule_float_config(cfg: FlowConfig, rule: str) -> FlowConfig:
    """``cfg`` with its float training set to the on-chip rule's reference: ``rule`` in float on
    the chip's network (one LIF layer), with no quantization-aware epochs, since on-chip
    learning is the fixed-point version of the rule itself and starts from the float network
    quantized."""
    train = dataclasses.replace(cfg.train, rule=rule, model="lif", layers=1, qat_epochs=0)
    return dataclasses.replace(cfg, train=train)


def online_float_config(cfg: FlowConfig) -> FlowConfig:
    """``cfg`` with its float training changed to learn the way the chip does: one sample per
    update (batch size 1), plain SGD at the constant rate ``train.online_lr``, no weight decay,
    and scored on its own weights, not on their moving average (``train.average_epochs``).

    The flow's float reference trains with AdamW on batches of ``train.batch_size`` under a
    cosine schedule; the chip has no optimizer state and updates after every sample.  This run
    separates what the chip loses to fixed point (on-chip against it) from what it loses to the
    optimizer (it against the reference).  Gradient clipping (``train.clip``) stays as in the
    reference run.
    """
    train = dataclasses.replace(
        cfg.train,
        batch_size=1,
        optimizer="sgd",
        lr=cfg.train.online_lr,
        weight_decay=0.0,
        lr_schedule="constant",
        average_epochs=0.0,
    )
    return dataclasses.replace(cfg, train=train)


@dataclasses.dataclass(frozen=True)
class FromFloat:
    """The records of :func:`learn_from_float`: float training, its quantization, and on-chip
    learning from the quantized network."""

    trained: dict
    quantized: dict
    onchip: dict


def learn_from_float(
    cfg: FlowConfig,
    out: Path,
    rule: str,
    *,
    tune: bool = False,
    progress: bool = True,
    task: TaskData | None = None,
) -> FromFloat:
    """``rule`` trained in float (``out/float``, :func:`rule_float_config`), quantized there,
    and learned on chip from the quantized network (``out/onchip_finetune``) at the rates
    lowered for adapting (:func:`finetune_offset`): the path from a float network to the chip
    that the learning flow and the learning bench both measure."""
    trained = stage_train(rule_float_config(cfg, rule), out / "float", progress=progress, task=task)
    quantized = stage_quantize(out / "float")
    onchip = stage_train_onchip(
        cfg,
        out / "onchip_finetune",
        rule,
        init=out / "float" / QUANTIZED,
        tune=tune,
        progress=progress,
    )
    return FromFloat(trained, quantized, onchip)


def run_learning_flow(
    cfg: FlowConfig, out: Path, rule: str, *, tune: bool = False, progress: bool = True
) -> dict:
    """Float training with ``rule`` (``out/float``, also quantized there, and one sample at a
    time in ``out/float_online``, see :func:`online_float_config`), on-chip learning in
    the golden model from random weights (``out/onchip``) and from the quantized float network
    (``out/onchip_finetune``), and the learning RTL against the golden model
    (``out/rtl_learning``); writes and returns ``out/metrics.json``.  Raises
    :class:`VerificationError` on any RTL mismatch (after writing the metrics)."""

    task = load_flow_task(cfg)  # a task the chip cannot learn is refused before anything trains
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: print(f"[neurofptt] {msg}", flush=True)) if progress else (lambda msg: None)
    log(
        f"training the float model with {rule} ({cfg.train.epochs} epochs), then learning on "
        "chip from it ..."
    )
    start = learn_from_float(cfg, out, rule, tune=tune, progress=progress, task=task)
    trained, quantized, finetune = start.trained, start.quantized, start.onchip
    log(
        f"float accuracy {trained['float_accuracy']:.4f}, quantized "
        f"{quantized['golden_accuracy']:.4f}, on chip from it "
        f"{finetune['onchip_accuracy']:.4f}; the float rule one sample at a time ..."
    )
    online = stage_train(
        online_float_config(rule_float_config(cfg, rule)),
        out / "float_online",
        progress=progress,
        task=task,
    )
    log(
        f"float accuracy, learned like the chip {online['float_accuracy']:.4f}; "
        "learning on chip from random weights ..."
    )
    onchip = stage_train_onchip(cfg, out / "onchip", rule, tune=tune, progress=progress)
    log(f"on-chip accuracy {onchip['onchip_accuracy']:.4f}")
    updates = onchip["rate"]["updates_per_sample"]
    samples = learning_flow_samples(cfg.flow.rtl_samples, cfg.flow.simulator, updates)
    log(
        f"learning in the RTL under {cfg.flow.simulator} + cocotb on "
        f"{samples or 'all'} training samples, every weight compared after every update ..."
    )
    rtl_dir = out / "rtl_learning"
    rtl_dir.mkdir(exist_ok=True)
    net = initial_network(cfg, rule, task=task)
    net.save(rtl_dir / QUANTIZED)
    rtl = stage_verify_learning(
        rtl_dir, samples=samples, task_name=cfg.flow.task, simulator=cfg.flow.simulator
    )
    metrics = {
        "task": rtl["task"],
        "rule": rule,
        "float_accuracy": trained["float_accuracy"],
        "float_online_accuracy": online["float_accuracy"],
        "float_online_history": online["history"],
        "quantized_accuracy": quantized["golden_accuracy"],
        "onchip_accuracy": onchip["onchip_accuracy"],
        "onchip_history": onchip["history"],
        "onchip_rate": onchip["rate"],
        "onchip_error_shift_offset": onchip["error_shift_offset"],
        "onchip_tune": onchip["tune"],
        "onchip_finetune_accuracy": finetune["onchip_accuracy"],
        "onchip_finetune_history": finetune["history"],
        "onchip_finetune_error_shift_offset": finetune["error_shift_offset"],
        "onchip_finetune_tune": finetune["tune"],
        "learning": dataclasses.asdict(net.config.learning),
        "learning_memory_overhead": learning_memory_overhead(net.config, rule),
        "rtl_weight_mismatches": rtl["rtl_mismatches"],
        "rtl_simulator": rtl["simulator"],
        **{key: rtl[key] for key in RTL_KEYS},
    }
    write_json(out / "metrics.json", metrics)
    log(
        f"RTL: {rtl['rtl_synaptic_updates']} synaptic updates compared, "
        f"{rtl['rtl_mismatches']} mismatches"
    )
    check_learning_record(rtl, rtl_dir)
    return metrics
