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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from neurofptt.errors import CheckpointError, ConfigError
from neurofptt.io import atomic_write_bytes, check_field_types
from neurofptt.learning.base import Rule
from neurofptt.learning.objectives import metric, metric_name
from neurofptt.learning.registry import RULES, check_combination
from neurofptt.models.base import RecurrentModel, check_sequence
from neurofptt.quant.fake import set_weight_quantization
from neurofptt.tasks import SequenceDataset, TaskData

LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (the ``[train]`` table of a config file)."""

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
    fptt_alpha: float = 0.5
    fptt_mix: float = 0.5
    fptt_period: int = 1
    fptt_form: str = "dual"
    fptt_reset_to_mean: bool = False
    fptt_schedule: str = "linear"
    fptt_constant_beta: float = 0.5
    tbptt_n: int = 10
    tbptt_interval: int = 0  # 0: same as tbptt_n
    tbptt_loss_steps: str = "last"
    fobptt_alpha: float = 1.25
    fobptt_eps: float = 1e-3
    rtrl_loss_steps: str = "last"
    eprop_feedback: str = "symmetric"
    eprop_feedback_seed: int = 0
    eprop_loss_steps: str = "last"
    eprop_online: bool = False
    eprop_reg_rate: float = 0.0
    eprop_target_rate: float = 0.01
    fpp_buffer_size: int = 1000
    fpp_updates: int = 10
    fpp_replay_batch: int = 0  # 0: the training batch size
    fpp_state_weight: float = 1.0
    fpp_refresh_random: int = 0
    fpp_propagate: bool = False
    fpp_loss_steps: str = "all"
    fpp_seed: int = 0
    surrogate: str = "fast_sigmoid"
    slope: float = 5.0
    input_gain: float = 2.0
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

    def __post_init__(self) -> None:
        check_field_types(self, "train")
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown train option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of a (0-based) epoch; a pure function of the epoch so resuming is exact."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def rule_options(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of the configured rule, from its prefixed config fields."""
    options: dict[str, dict[str, Any]] = {
        "fptt": {
            "alpha": cfg.fptt_alpha,
            "mix": cfg.fptt_mix,
            "period": cfg.fptt_period,
            "form": cfg.fptt_form,
            "reset_to_mean": cfg.fptt_reset_to_mean,
            "schedule": cfg.fptt_schedule,
            "constant_beta": cfg.fptt_constant_beta,
        },
        "tbptt": {
            "n": cfg.tbptt_n,
            "interval": cfg.tbptt_interval or None,
            "loss_steps": cfg.tbptt_loss_steps,
        },
        "fobptt": {"alpha": cfg.fobptt_alpha, "eps": cfg.fobptt_eps},
        "rtrl": {"loss_steps": cfg.rtrl_loss_steps},
        "fpp": {
            "buffer_size": cfg.fpp_buffer_size,
            "updates": cfg.fpp_updates,
            "replay_batch": cfg.fpp_replay_batch or None,
            "state_weight": cfg.fpp_state_weight,
            "refresh_random": cfg.fpp_refresh_random,
            "propagate": cfg.fpp_propagate,
            "loss_steps": cfg.fpp_loss_steps,
            "seed": cfg.fpp_seed,
        },
        "eprop": {
            "feedback": cfg.eprop_feedback,
            "feedback_seed": cfg.eprop_feedback_seed,
            "loss_steps": cfg.eprop_loss_steps,
            "online": cfg.eprop_online,
            "reg_rate": cfg.eprop_reg_rate,
            "target_rate": cfg.eprop_target_rate,
        },
    }
    return options.get(cfg.rule, {})


def make_rule(cfg: TrainConfig, model: RecurrentModel, target: str = "label") -> Rule:
    opt_cls = OPTIMIZERS[cfg.optimizer]
    # foreach kernels: one call for all parameters, which matters for per-step rules
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return RULES[cfg.rule](model, optimizer, clip=cfg.clip, target=target, **rule_options(cfg))


@torch.no_grad()
def evaluate(
    model: RecurrentModel, data: SequenceDataset, target: str = "label", batch_size: int = 256
) -> float:
    """The task's metric on ``data``: accuracy, or MSE for regression (see ``objectives``).

    Batches are weighted by their size, so the result equals the metric over the whole set.
    """
    model.eval()
    total = 0.0
    for start in range(0, len(data), batch_size):
        x = data.x[start : start + batch_size]
        outputs, _ = model(x)
        total += metric(outputs, data.y[start : start + batch_size], target) * len(x)
    return total / len(data)


@dataclass
class TrainState:
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def save_checkpoint(
    path: Path,
    model: RecurrentModel,
    rule: Rule,
    state: TrainState,
    generator: torch.Generator,
    meta: dict[str, Any],
) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": rule.optimizer.state_dict(),
        "rule": rule.state_dict(),
        "epoch": state.epoch,
        "history": state.history,
        "generator": generator.get_state(),
        "meta": meta,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; run `neurofptt train` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path} is not a readable neurofptt checkpoint: {exc}") from exc


def config_differences(saved: dict[str, Any], current: dict[str, Any], path: str = "") -> list[str]:
    """``"key: saved X vs current Y"`` for every leaf where two nested config dicts differ."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        name = f"{path}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: saved {a!r} vs current {b!r}")
    return out


def fit(
    model: RecurrentModel,
    task: TaskData,
    cfg: TrainConfig,
    checkpoint: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` on ``task``; returns the per-epoch history.

    With ``resume=True`` and an existing checkpoint the run continues from its last finished epoch
    and ends exactly where an uninterrupted run would.
    """
    check_sequence(task.train.x[:1], model.n_in)
    if task.n_out != model.n_out:
        raise ConfigError(
            f"task {task.name!r} needs {task.n_out} outputs but the model has {model.n_out}"
        )
    torch.manual_seed(cfg.seed)
    rule = make_rule(cfg, model, task.target)
    generator = torch.Generator().manual_seed(cfg.seed)
    state = TrainState()
    checkpoint = Path(checkpoint)
    meta = dict(meta or {}, train=cfg.to_dict())
    if resume and checkpoint.is_file():
        saved = load_checkpoint(checkpoint)
        differences = config_differences(saved.get("meta", {}), meta)
        if differences:
            raise CheckpointError(
                f"cannot resume from {checkpoint}: it was trained with other settings "
                f"({'; '.join(differences)}); resume with the same config or start afresh"
            )
        try:
            model.load_state_dict(saved["model"])
            rule.optimizer.load_state_dict(saved["optimizer"])
            rule.load_state_dict(saved["rule"])
            generator.set_state(saved["generator"])
            state = TrainState(epoch=saved["epoch"], history=list(saved["history"]))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{checkpoint} does not fit this model and rule: {exc}") from exc
    n = len(task.train)
    for epoch in range(state.epoch, cfg.epochs):
        for group in rule.optimizer.param_groups:
            group["lr"] = epoch_lr(cfg, epoch)
        # quantization-aware epochs: only models built with fake quantization have a switch
        set_weight_quantization(model, epoch >= cfg.epochs - cfg.qat_epochs)
        order = torch.randperm(n, generator=generator)
        batches = range(0, n, cfg.batch_size)
        bar = tqdm(
            batches,
            desc=f"{cfg.rule} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
            unit="batch",
        )
        loss_sum, correct = 0.0, 0
        for start in bar:
            idx = order[start : start + cfg.batch_size]
            x, y = task.train.x[idx], task.train.y[idx]
            result = rule.train_batch(x, y)
            if not math.isfinite(result.loss):
                raise ConfigError(
                    f"training diverged (loss {result.loss}) in epoch {epoch + 1}; "
                    "lower train.lr or raise train.clip"
                )
            loss_sum += result.loss * len(idx)
            if task.target == "label":  # label tasks: the last step's output is the prediction
                correct += int((result.logits.argmax(-1) == y).sum())
            bar.set_postfix(loss=f"{result.loss:.3f}")
        rule.end_epoch()
        name = metric_name(task.target)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / n}
        if task.target == "label":
            record["train_accuracy"] = correct / n
        record[f"test_{name}"] = evaluate(model, task.test, task.target)
        state.history.append(record)
        state.epoch = epoch + 1
        if progress:
            tqdm.write(
                f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  "
                f"test {name} {record[f'test_{name}']:.4f}"
            )
        save_checkpoint(checkpoint, model, rule, state, generator, meta)
    return state.history
