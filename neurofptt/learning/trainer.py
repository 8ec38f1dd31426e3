"""The training loop: epochs, progress bar, evaluation, atomic checkpoints and exact resume.

A checkpoint holds everything needed to continue as if never interrupted: model, optimizer and
rule state, the epoch counter, the history and the shuffling generator's state.  It is written to a
temporary file and renamed, so a crash never leaves a half-written checkpoint, and it is read with
``torch.load(..., weights_only=True)`` (no pickled code is ever executed).
"""

from __future__ import annotations

import dataclasses
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from neurofptt.errors import CheckpointError, ConfigError, TrainingDiverged
from neurofptt.io import (
    append_jsonl,
    atomic_write_bytes,
    check_field_types,
    from_table,
    write_jsonl,
)
from neurofptt.learning.averaging import WeightAverage
from neurofptt.learning.base import Rule, RuleOptions
from neurofptt.learning.bptt import BPTTOptions
from neurofptt.learning.distributed import (
    barrier,
    check_in_step,
    check_rule,
    is_main,
    shard,
    sum_over_ranks,
)
from neurofptt.learning.distributed import (
    start as start_processes,
)
from neurofptt.learning.eprop import EPropOptions
from neurofptt.learning.fobptt import FOBPTTOptions
from neurofptt.learning.fpp import FPPOptions
from neurofptt.learning.fptt import FPTTOptions
from neurofptt.learning.objectives import higher_is_better, metric_name, metric_sum
from neurofptt.learning.registry import RULE_OPTIONS, RULES, check_combination
from neurofptt.learning.rtrl import RTRLOptions
from neurofptt.learning.tbptt import TBPTTOptions
from neurofptt.models.base import RecurrentModel, check_sequence
from neurofptt.quant.fake import FakeQuantize, set_weight_quantization
from neurofptt.tasks import SequenceDataset, TaskData
from neurofptt.tasks.base import with_validation

LR_SCHEDULES = ("constant", "cosine")
#: the torch device types float training runs on
DEVICE_TYPES = ("cpu", "cuda", "mps")
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run: the ``[train]`` table of a config file.

    The settings every rule shares are fields of their own.  Each rule's own options are its
    ``[train.<rule>]`` table (``[train.fptt] alpha = 0.5``): a field named after the rule holding
    the options dataclass the rule declares (:data:`~neurofptt.learning.registry.RULE_OPTIONS`),
    so a rule's defaults live next to its code only.  Every rule's table is kept, not only the
    chosen rule's, so one base config serves a sweep over rules.
    """

    rule: str = "fptt"
    model: str = "lif"
    layers: int = 1
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.2
    clip: float = 1.0
    lr_schedule: str = "cosine"
    qat_epochs: int = 5  # last epochs trained with the hardware's quantized weights (0: none)
    seed: int = 0
    surrogate: str = "fast_sigmoid"
    slope: float = 5.0
    input_gain: float = 2.0
    #: the network scored, picked and reported is the moving average of the weights after each
    #: batch over about this many epochs (0: the weights themselves;
    #: :mod:`neurofptt.learning.averaging`)
    average_epochs: float = 0.5
    #: golden engine (on-chip learning): halve the rate this many times over the run, evenly
    #: (0: never; :func:`neurofptt.flow.onchip_train.halving_period`), as the float run's cosine
    #: decays: a 30-epoch run halves every 8 epochs and ends at an eighth of its first rate
    onchip_halvings: int = 3
    #: golden engine from a trained network (--init): every update's error shift is raised by
    #: this much (rates 2**-N of learning from scratch), by alpha_shift - 1 more for FPTT
    #: (:func:`neurofptt.flow.onchip.finetune_offset`)
    onchip_finetune_shift: int = 5
    #: learning flow: rate of the float reference that learns like the chip (batch 1, plain SGD)
    online_lr: float = 0.1
    #: where the float model trains: "cpu", "cuda" (or "cuda:N") or "mps"
    #: (:func:`training_device`); where it runs, not what it computes, so a run may resume on
    #: another device
    device: str = "cpu"
    # the rules' own options, one [train.<rule>] table each; __post_init__ checks that every
    # registered rule has its field here
    bptt: BPTTOptions = field(default_factory=BPTTOptions)
    tbptt: TBPTTOptions = field(default_factory=TBPTTOptions)
    fptt: FPTTOptions = field(default_factory=FPTTOptions)
    fobptt: FOBPTTOptions = field(default_factory=FOBPTTOptions)
    eprop: EPropOptions = field(default_factory=EPropOptions)
    fpp: FPPOptions = field(default_factory=FPPOptions)
    rtrl: RTRLOptions = field(default_factory=RTRLOptions)

    def __post_init__(self) -> None:
        check_field_types(self, "train")
        for name, options in RULE_OPTIONS.items():
            value = getattr(self, name, None)
            if not isinstance(value, options):
                raise ConfigError(
                    f"train.{name} must be the rule's options ({options.__name__}, a "
                    f"[train.{name}] table in a config file), got {value!r}"
                )
        check_combination(self.rule, self.model)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; choose one of {sorted(OPTIMIZERS)}"
            )
        for name in ("qat_epochs", "onchip_halvings", "onchip_finetune_shift"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"unknown lr_schedule {self.lr_schedule!r}; choose one of {LR_SCHEDULES}"
            )
        for name in ("lr", "online_lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"train.{name} must be a positive number, got {value}")
        if not (self.average_epochs >= 0 and math.isfinite(self.average_epochs)):
            raise ConfigError(
                f"train.average_epochs must be a number >= 0 (0: no average), "
                f"got {self.average_epochs}"
            )
        training_device(self.device)

    @property
    def rule_options(self) -> RuleOptions:
        """The chosen rule's options (its ``[train.<rule>]`` table)."""
        return getattr(self, self.rule)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """A config from its ``[train]`` table, with each rule's options from its own
        ``[train.<rule>]`` table; an option of the earlier flat layout (``fptt_alpha``) fails
        with what to rename it to."""
        options = from_table(cls, data, "train", renamed=RENAMED_OPTIONS)
        for name, rule_options in RULE_OPTIONS.items():
            if name in options:
                table = from_table(rule_options, options[name], f"train.{name}")
                options[name] = rule_options(**table)
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        """The ``[train]`` table with every rule's options as a nested table; reads back with
        :meth:`from_dict`."""
        return dataclasses.asdict(self)


#: each option of the flat layout before ``[train.<rule>]`` tables (``fptt_alpha``) and what
#: replaced it, so a config file or checkpoint of that layout says what to rename
RENAMED_OPTIONS: dict[str, str] = {
    f"{rule}_{option.name}": f"[train.{rule}] {option.name}"
    for rule, options in RULE_OPTIONS.items()
    for option in dataclasses.fields(options)
}


def training_device(name: str) -> torch.device:
    """The torch device ``train.device`` names, refused in one line where this machine or this
    torch build has no such device (the default install is torch's CPU build)."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device {name!r} is not a device; use cpu, cuda or mps") from exc
    if device.type not in DEVICE_TYPES:
        raise ConfigError(f"train.device {name!r}: use one of {DEVICE_TYPES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device {name!r}: this torch has no CUDA device (torch {torch.__version__}); "
            "install a CUDA build of torch (docs/scale.md) or train on cpu"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"train.device {name!r}: there are {torch.cuda.device_count()} CUDA devices"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device {name!r}: this machine has no MPS (Apple GPU) device")
    return device


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of a (0-based) epoch; a pure function of the epoch so resuming is exact."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def make_rule(cfg: TrainConfig, model: RecurrentModel, target: str = "label") -> Rule:
    """The configured rule with its own options, on a fresh optimizer over ``model``."""
    opt_cls = OPTIMIZERS[cfg.optimizer]
    # foreach kernels: one call for all parameters, which matters for per-step rules
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return RULES[cfg.rule].from_options(
        model, optimizer, cfg.rule_options, clip=cfg.clip, target=target
    )


@torch.no_grad()
def evaluate(
    model: RecurrentModel, data: SequenceDataset, target: str = "label", batch_size: int = 256
) -> float:
    """The task's metric on ``data``: accuracy, or MSE for regression (see ``objectives``).

    Batches are weighted by the units they score (samples; the supervised units of per-step
    labels, :func:`~neurofptt.learning.objectives.supervised_predictions`), so the result
    equals the metric over the whole set.  A set without any unit scores NaN.
    """
    model.eval()
    device = next(model.parameters()).device
    total, units = 0.0, 0
    mine, counted = shard(torch.arange(len(data)))  # data-parallel: each rank scores a share
    for start in range(0, len(mine) if counted else 0, batch_size):
        idx = mine[start : start + batch_size]
        outputs, _ = model(data.x[idx].to(device))
        part, n = metric_sum(outputs, data.y[idx].to(device), target)
        total, units = total + part, units + n
    total, units = sum_over_ranks(total, units)
    return total / units if units else math.nan


@dataclass
class TrainState:
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


#: keys every neurofptt checkpoint holds (a resumable one holds the optimizer, rule and
#: generator state too)
CHECKPOINT_KEYS = frozenset({"model", "epoch", "history", "meta"})


def save_checkpoint(
    path: Path,
    model: RecurrentModel,
    rule: Rule,
    state: TrainState,
    generator: torch.Generator,
    meta: dict[str, Any],
    picked: dict[str, Any] | None = None,
    average: WeightAverage | None = None,
) -> None:
    """Write the run's state atomically: the last finished epoch's weights (``model``, to resume
    from), the moving average of the weights where the run keeps one (``average``), and the
    picked epoch's (``picked``: ``epoch``, ``score``, ``model``), which is what the run reports
    and the flow quantizes."""
    payload = {
        "model": model.state_dict(),
        "optimizer": rule.optimizer.state_dict(),
        "rule": rule.state_dict(),
        "epoch": state.epoch,
        "history": state.history,
        "generator": generator.get_state(),
        "meta": meta,
    }
    if picked is not None:
        payload["picked"] = picked
    if average is not None:
        payload["average"] = average.state_dict()
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` refused a file, in a few words and without torch's advice to load it
    with ``weights_only=False`` (which would run whatever code the file carries)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        detail = lines[0] if lines and "weights_only" not in lines[0] else ""
        return "it holds more than tensors and plain values" + (f": {detail}" if detail else "")
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines and "weights_only" not in lines[0] else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_checkpoint(
    path: str | Path, *, fix: str = "delete it or pass another with --checkpoint"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, tensors and plain values only.

    A file that is not one (random bytes, another program's pickle, a cut-off write of an older
    version) raises :class:`CheckpointError` saying so and what to do (``fix``), never torch's
    suggestion to retry with ``weights_only=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; run `neurofptt train` first")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(
            f"{path} is not a neurofptt checkpoint ({_load_failure(exc)}); {fix}"
        ) from None
    if not isinstance(saved, dict) or not set(saved) >= CHECKPOINT_KEYS:
        raise CheckpointError(
            f"{path} is not a neurofptt checkpoint (it lacks the model weights, epoch and "
            f"settings a training run saves); {fix}"
        )
    return saved


def picked_weights(saved: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights a checkpoint reports: the picked epoch's (best on validation) where
    the run had a validation split, else the last epoch's."""
    picked = saved.get("picked")
    return picked["model"] if isinstance(picked, dict) and "model" in picked else saved["model"]


def picked_epoch(saved: dict[str, Any]) -> int:
    """The epoch whose weights :func:`picked_weights` returns."""
    picked = saved.get("picked")
    return int(picked["epoch"]) if isinstance(picked, dict) else int(saved["epoch"])


#: settings of where a run executes, not of what it computes: they may change on resume
RUN_SETTINGS = frozenset({"train.device"})


def config_differences(saved: dict[str, Any], current: dict[str, Any], path: str = "") -> list[str]:
    """``"key: saved X vs current Y"`` for every leaf where two nested config dicts differ.

    A saved ``train`` table in the flat layout of earlier versions (``fptt_alpha``, ...) is one
    difference that says so, rather than a line for every option of both layouts.
    """
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        name = f"{path}{key}"
        flat = (
            sorted(set(a) & set(RENAMED_OPTIONS)) if key == "train" and isinstance(a, dict) else []
        )
        if flat:
            out.append(
                f"{name}: saved in the flat layout of earlier versions ({flat[0]}, ...), whose "
                f"rule options are now [train.<rule>] tables ({flat[0]} is now "
                f"{RENAMED_OPTIONS[flat[0]]}); a checkpoint of that layout cannot be resumed"
            )
        elif isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{name}.")
        elif a != b and name not in RUN_SETTINGS:
            out.append(f"{name}: saved {a!r} vs current {b!r}")
    return out


#: the run folder's log of finished epochs: one JSON object a line, appended as each epoch ends
METRICS_LOG = "metrics.jsonl"


class FitHistory(list[dict[str, Any]]):
    """What :func:`fit` returns: the per-epoch records (a list, as callers have always iterated)
    and the run's outcome as attributes (:meth:`summary` gives them as record keys).

    Each record (also the checkpoint's ``history`` and a line of ``metrics.jsonl``) holds
    ``epoch``; ``train_loss``; ``train_accuracy`` (label tasks: the last step's prediction while
    training); ``val_accuracy``/``val_mse`` (with a validation split); ``test_accuracy``/
    ``test_mse``: the epoch's test metric, or ``None`` where the test set was not scored (with a
    validation split, every epoch but the picked one).  The attributes:

    ``picked_epoch``
        the reported epoch: the best on the validation split, or the last without one;
    ``metric``
        ``"accuracy"`` or ``"mse"`` (:func:`~neurofptt.learning.objectives.metric_name`);
    ``test``
        the test metric of the picked epoch's network, scored once;
    ``val``
        the picked epoch's validation metric (``None`` without a validation split);
    ``train_samples``, ``val_samples``, ``val_split``
        how many samples trained and validated, and where the validation samples came from:
        ``"held out"`` (a seeded share of the training samples), ``"task"`` (the task's own
        split) or ``"none"``.
    """

    def __init__(
        self,
        epochs: list[dict[str, Any]],
        *,
        picked_epoch: int,
        metric: str,
        test: float,
        val: float | None,
        train_samples: int,
        val_samples: int,
        val_split: str,
    ) -> None:
        super().__init__(epochs)
        self.picked_epoch = picked_epoch
        self.metric = metric
        self.test = test
        self.val = val
        self.train_samples = train_samples
        self.val_samples = val_samples
        self.val_split = val_split

    def summary(self) -> dict[str, Any]:
        """The outcome as record keys: ``picked_epoch``, ``val_<metric>``, ``test_<metric>``,
        ``train_samples``, ``val_samples``, ``val_split``."""
        return {
            "picked_epoch": self.picked_epoch,
            f"val_{self.metric}": self.val,
            f"test_{self.metric}": self.test,
            "train_samples": self.train_samples,
            "val_samples": self.val_samples,
            "val_split": self.val_split,
        }


def tensors_of(state: Any, prefix: str = "rule") -> dict[str, torch.Tensor]:
    """The tensors of a (nested) state dict, by dotted path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        found: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            found.update(tensors_of(value, f"{prefix}.{key}"))
        return found
    return {}


def _detached(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of a state dict that later training steps do not change."""
    return {k: v.detach().clone() for k, v in weights.items()}


def _check_task(model: RecurrentModel, task: TaskData) -> None:
    """Refuse a task whose inputs or outputs do not fit the model before anything is written,
    rather than with a shape error from deep inside the first batch."""
    check_sequence(task.train.x[:1], model.n_in)
    if task.n_out != model.n_out:
        raise ConfigError(
            f"task {task.name!r} needs {task.n_out} outputs but the model has {model.n_out}"
        )


@dataclass
class FitRun:
    """One call of :func:`fit`: what every epoch reads (the model, the task with its validation
    split, the rule and the shuffling generator) and the bookkeeping that outlives an epoch (the
    finished epochs and the picked one), which the checkpoint saves and ``resume`` restores."""

    model: RecurrentModel
    task: TaskData
    cfg: TrainConfig
    rule: Rule
    generator: torch.Generator
    checkpoint: Path
    meta: dict[str, Any]
    val_split: str
    progress: bool
    state: TrainState = field(default_factory=TrainState)
    picked: dict[str, Any] | None = None
    average: WeightAverage | None = None

    @property
    def metric(self) -> str:
        return metric_name(self.task.target)

    @property
    def val_key(self) -> str:
        return f"val_{self.metric}"

    @property
    def test_key(self) -> str:
        return f"test_{self.metric}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def scored(self) -> RecurrentModel:
        """The network an epoch is scored with and keeps: the weights' moving average where the
        run has one (``train.average_epochs``), else the trained weights themselves."""
        return self.average.model if self.average is not None else self.model

    @property
    def log(self) -> Path:
        return self.checkpoint.with_name(METRICS_LOG)

    @property
    def quantizes(self) -> bool:
        """Whether the last ``qat_epochs`` train for the hardware's quantized weights: only
        models built with fake quantization have the switch."""
        return self.cfg.qat_epochs > 0 and any(
            isinstance(m, FakeQuantize) for m in self.model.modules()
        )

    def resume(self) -> None:
        """Continue from the checkpoint, which must have been trained with the same settings:
        anything else would silently mix two runs."""
        saved = load_checkpoint(self.checkpoint, fix="delete it to train afresh")
        differences = config_differences(saved.get("meta", {}), self.meta)
        if differences:
            raise CheckpointError(
                f"cannot resume from {self.checkpoint}: it was trained with other settings "
                f"({'; '.join(differences)}); resume with the same config or start afresh"
            )
        try:
            self.model.load_state_dict(saved["model"])
            self.rule.optimizer.load_state_dict(saved["optimizer"])
            self.rule.load_state_dict(saved["rule"])
            self.generator.set_state(saved["generator"])
            self.state = TrainState(epoch=saved["epoch"], history=list(saved["history"]))
            self.picked = saved.get("picked")
            if self.average is not None and self.state.epoch:
                self.average.load_state_dict(saved["average"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"{self.checkpoint} does not fit this model and rule: {exc}"
            ) from exc

    def hardware_weights(self, epoch: int) -> bool:
        """Whether a (0-based) epoch trains for the hardware's quantized weights: the last
        ``qat_epochs``, so that the network the flow quantizes has learned to live with them."""
        return epoch >= self.cfg.epochs - self.cfg.qat_epochs

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one (0-based) epoch on the training samples in a fresh seeded order; returns
        its record so far: ``epoch``, ``train_loss`` and, for label tasks, ``train_accuracy``."""
        cfg, task, rule = self.cfg, self.task, self.rule
        for group in rule.optimizer.param_groups:
            group["lr"] = epoch_lr(cfg, epoch)
        set_weight_quantization(self.model, self.hardware_weights(epoch))
        set_weight_quantization(self.scored, self.hardware_weights(epoch))
        n = len(task.train)
        order = torch.randperm(n, generator=self.generator)
        bar = tqdm(
            range(0, n, cfg.batch_size),
            desc=f"{cfg.rule} epoch {epoch + 1}/{cfg.epochs}",
            disable=None if self.progress else True,  # None: off unless stderr is a terminal
            leave=False,
            unit="batch",
        )
        loss_sum, correct = 0.0, 0
        for start in bar:
            idx, counted = shard(order[start : start + cfg.batch_size])  # one process: all
            x, y = task.train.x[idx].to(self.device), task.train.y[idx].to(self.device)
            rule.counted = counted
            result = rule.train_batch(x, y)
            if not math.isfinite(result.loss):
                raise TrainingDiverged(
                    f"training diverged (loss {result.loss}) in epoch {epoch + 1}; "
                    "lower train.lr or raise train.clip",
                    epoch + 1,
                )
            if self.average is not None:
                self.average.update(self.model)
            if counted:
                loss_sum += result.loss * len(idx)
                if task.target == "label":  # the last step's output is the prediction
                    correct += int((result.logits.argmax(-1) == y).sum())
            bar.set_postfix(loss=f"{result.loss:.3f}")
        rule.end_epoch()
        check_in_step({**self.model.state_dict(), **tensors_of(rule.state_dict())})
        loss_sum, correct = sum_over_ranks(loss_sum, correct)
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / n}
        if task.target == "label":
            record["train_accuracy"] = correct / n
        return record

    def score(self, epoch: int, record: dict[str, Any]) -> None:
        """Score the epoch's network (:attr:`scored`) into its record: on the validation split,
        keeping its weights if it is the best pickable epoch so far, or on the test set without
        a split, where the last epoch's averaged weights are the ones kept."""
        task, net = self.task, self.scored
        if task.val is None:
            record[self.test_key] = evaluate(net, task.test, task.target)
            if self.average is not None:
                weights = _detached(net.state_dict())
                self.picked = {"epoch": epoch + 1, "score": None, "model": weights}
            return
        score = evaluate(net, task.val, task.target)
        record[self.val_key], record[self.test_key] = score, None
        if self.quantizes and not self.hardware_weights(epoch):
            return  # the flow quantizes the picked weights: only epochs trained for them count
        best = self.picked["score"] if self.picked is not None else None
        higher = higher_is_better(task.target)
        if best is None or (score > best if higher else score < best):
            weights = _detached(net.state_dict())
            self.picked = {"epoch": epoch + 1, "score": score, "model": weights}

    def finish_epoch(self, record: dict[str, Any]) -> None:
        """Keep the epoch: the checkpoint first (atomically), then its ``metrics.jsonl`` line, so
        that a script following the log only ever sees epochs the checkpoint holds."""
        self.state.history.append(record)
        self.state.epoch = record["epoch"]
        if not is_main():  # one writer: the ranks hold the same state
            return
        save_checkpoint(
            self.checkpoint,
            self.model,
            self.rule,
            self.state,
            self.generator,
            self.meta,
            self.picked,
            self.average,
        )
        append_jsonl(self.log, record)
        if self.progress:
            scored = self.val_key if self.task.val is not None else self.test_key
            tqdm.write(
                f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  "
                f"{scored.replace('_', ' ')} {record[scored]:.4f}",
                file=sys.stderr,
            )

    def train_until(self, epochs: int) -> None:
        """Train, score and keep each epoch from the last finished one up to ``epochs`` (at most
        the config's); the run's schedule is the config's whatever ``epochs`` is, so the first
        epochs of a run are those of the whole run."""
        for epoch in range(self.state.epoch, min(epochs, self.cfg.epochs)):
            record = self.train_epoch(epoch)
            self.score(epoch, record)
            self.finish_epoch(record)
        barrier()  # the last checkpoint is on disk before any rank returns

    def outcome(self) -> FitHistory:
        """The records and the reported epoch: the picked one, with its weights loaded into the
        model and the test set scored once for it, or the last one without a validation split
        (its averaged weights loaded where the run averages)."""
        history = [dict(record) for record in self.state.history]
        task, name = self.task, self.metric
        if task.val is None:
            picked_at, test, val = self.state.epoch, history[-1][self.test_key], None
            if self.picked is not None:
                self.model.load_state_dict(self.picked["model"])
        else:
            if self.picked is None:  # a finished checkpoint without a pick: its last epoch
                last = history[-1].get(self.val_key)
                weights = self.scored.state_dict()
                self.picked = {"epoch": self.state.epoch, "score": last, "model": weights}
            self.model.load_state_dict(self.picked["model"])
            picked_at, val = int(self.picked["epoch"]), self.picked["score"]
            test = evaluate(self.model, task.test, task.target)
            history[picked_at - 1][self.test_key] = test
            if self.progress:
                tqdm.write(
                    f"picked epoch {picked_at} (val {name} {val:.4f}): test {name} {test:.4f}",
                    file=sys.stderr,
                )
        return FitHistory(
            history,
            picked_epoch=picked_at,
            metric=name,
            test=test,
            val=val,
            train_samples=len(task.train),
            val_samples=0 if task.val is None else len(task.val),
            val_split=self.val_split,
        )


def start_run(
    model: RecurrentModel,
    task: TaskData,
    cfg: TrainConfig,
    checkpoint: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    val_fraction: float = 0.0,
) -> FitRun:
    """The run :func:`fit` trains (the arguments are its), set up and, with ``resume`` and a
    checkpoint, continued to where that left off, but not yet trained: a caller that wants
    only the first epochs of a run (:mod:`neurofptt.flow.tune`) trains them with
    :meth:`FitRun.train_until` and reads their records from ``state.history``, without
    scoring the test set."""
    _check_task(model, task)
    # before the rule, whose state follows the weights; torchrun's ranks join their group here
    model.to(start_processes(training_device(cfg.device)))
    check_rule(cfg.rule)
    val_split = "task" if task.val is not None else "held out" if val_fraction else "none"
    task = with_validation(task, val_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = -(-len(task.train) // cfg.batch_size)
    run = FitRun(
        model=model,
        task=task,
        cfg=cfg,
        rule=make_rule(cfg, model, task.target),
        generator=torch.Generator().manual_seed(cfg.seed),
        checkpoint=Path(checkpoint),
        meta=dict(meta or {}, train=cfg.to_dict()),
        val_split=val_split,
        progress=progress and is_main(),
        average=WeightAverage.for_run(model, cfg.average_epochs, batches),
    )
    if val_fraction:
        run.meta["val_fraction"] = val_fraction
    if resume and run.checkpoint.is_file():
        run.resume()
    if is_main():
        write_jsonl(run.log, run.state.history)
    return run


def fit(
    model: RecurrentModel,
    task: TaskData,
    cfg: TrainConfig,
    checkpoint: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    val_fraction: float = 0.0,
) -> FitHistory:
    """Train ``model`` on ``task``; returns the per-epoch records and the picked epoch.

    **Picking the reported epoch.**  With a validation split (the task's own ``val``, else a
    seeded ``val_fraction`` of the training samples held out from training,
    :func:`~neurofptt.tasks.base.with_validation`), every epoch is scored on it and the epoch with
    the best validation metric (highest accuracy, lowest MSE; the first of equals) is picked.  Its
    weights are kept in the checkpoint (``picked``) and loaded into ``model`` at the end, and the
    test set is scored once, for it: choosing the epoch on the test set would make the test
    score an optimistic pick.  Only epochs trained for the hardware's quantized weights (the last
    ``qat_epochs``, on a model with fake quantization) can be picked, since the flow quantizes
    the picked weights.  Without a validation split (``val_fraction = 0`` and none of the task's
    own) nothing is picked: the test set is scored every epoch and the last epoch is reported,
    as before validation existed.

    **The network of an epoch.**  What an epoch is scored with, and what the pick keeps, is the
    moving average of the weights after each batch over ``train.average_epochs`` epochs
    (:mod:`~neurofptt.learning.averaging`; 0: the trained weights themselves).  The rule trains
    on its own weights, never on the average.

    **Per-epoch records** (the list, the checkpoint's ``history`` and ``metrics.jsonl``) and the
    outcome are described by the returned :class:`FitHistory`.

    **Files.**  After every epoch the checkpoint is written atomically and the epoch's record is
    appended (flushed) to ``metrics.jsonl`` beside it, so a script can follow the run.  With
    ``resume=True`` and an existing checkpoint the run continues from its last finished epoch
    and ends exactly where an uninterrupted run would; ``metrics.jsonl`` restarts from the
    checkpoint's records, so it never repeats an epoch.
    """
    run = start_run(
        model,
        task,
        cfg,
        checkpoint,
        resume=resume,
        progress=progress,
        meta=meta,
        val_fraction=val_fraction,
    )
    run.train_until(cfg.epochs)
    return run.outcome()
