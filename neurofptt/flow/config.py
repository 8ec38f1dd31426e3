"""The flow configuration: one TOML file with ``[hardware]``, ``[train]`` and ``[flow]`` tables.

Every table is optional; what a file leaves out takes the embedded defaults (the dataclass
defaults), which are the demo's settings.  ``--quick`` shrinks the budget (epochs, RTL samples,
no place-and-route) for a smoke run of the whole flow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofptt.errors import ConfigError
from neurofptt.flow.onchip_rates import readout_rate
from neurofptt.io import check_field_types, check_table, from_table, load_toml
from neurofptt.learning.trainer import TrainConfig
from neurofptt.quant.config import HardwareConfig
from neurofptt.tasks import TASKS, check_task_name, is_data_path, load_task
from neurofptt.tasks.files import data_info
from neurofptt.tasks.memory import derive_leak
from neurofptt.verify.runner import SIMULATORS

#: the share of the training samples held out to pick the reported epoch on, for the flow's
#: ``[flow]`` and the experiments' ``[experiment]`` table alike: one default, so a flow run and an
#: experiment on the same task report numbers selected the same way
VAL_FRACTION = 0.1


def check_val_fraction(value: float, table: str) -> None:
    """Refuse a ``<table>.val_fraction`` outside ``[0, 1)`` when the config is read, naming the
    setting, rather than when the task is split after the run has started."""
    if not 0 <= value < 1:
        raise ConfigError(f"{table}.val_fraction = {value} must be in [0, 1) (0: no validation)")


@dataclass(frozen=True)
class FlowSettings:
    """The ``[flow]`` table: task and verification/synthesis budget."""

    #: a task's name, or the path of a ``.npz`` data file (relative to the working directory)
    task: str = "digits"
    rtl_samples: int = 0  # 0: the whole test set
    fpga_family: str = "ecp5"
    fpga_pnr: bool = True
    #: the simulator the RTL checks run under (``icarus`` or ``verilator``): the same testbenches
    #: and verdict; Verilator takes longer to build and far less time per simulated cycle
    simulator: str = "icarus"
    #: share of the training samples held out to pick the reported epoch on (0: none, the last
    #: epoch is reported); a task with a validation split of its own uses that instead
    val_fraction: float = VAL_FRACTION

    def __post_init__(self) -> None:
        check_field_types(self, "flow")
        check_val_fraction(self.val_fraction, "flow")
        check_task_name(self.task)
        if self.rtl_samples < 0:
            raise ConfigError(
                f"flow.rtl_samples must be >= 0 (0 = the whole test set), got {self.rtl_samples}"
            )
        if self.fpga_family not in ("ecp5", "ice40"):
            raise ConfigError(f"flow.fpga_family = {self.fpga_family!r}; choose 'ecp5' or 'ice40'")
        if self.simulator not in SIMULATORS:
            raise ConfigError(
                f"flow.simulator = {self.simulator!r}; choose one of {', '.join(SIMULATORS)}"
            )


def task_sizes(task: str) -> dict[str, int]:
    """``n_in`` and ``n_out`` of a task: read from a data file's header (the arrays are not
    loaded), drawn for a built-in task (the largest, full cue accumulation, takes about half a
    second); a size a file leaves open (``n_out`` of an unreadable file) is left out, so that
    loading the task later says what is wrong."""
    if task in TASKS:
        data = load_task(task)
        sizes = {"n_in": data.train.n_in, "n_out": data.n_out}
    else:
        info = data_info(task)
        sizes = {"n_in": info["n_channels"], "n_out": info["n_out"]}
    return {k: v for k, v in sizes.items() if v is not None}


def missing_data_file(task: str) -> bool:
    """Whether ``task`` names a data file that is not here: a config may name a file on
    another machine, and only loading the task must fail on it."""
    return task not in TASKS and is_data_path(task) and not Path(task).is_file()


#: the hardware fields the task's label layout gives unless the config sets them
LEAK_FIELDS = ("leak_shift", "out_leak_shift")


def task_leak(task: str, hardware: dict[str, Any]) -> dict[str, Any] | None:
    """The membrane and readout leaks that the task's training split asks for
    (:func:`~neurofptt.tasks.memory.derive_leak`, at most ``membrane_bits - 1`` of the
    ``hardware`` table or the default), as the record of those the table leaves out
    (:data:`LEAK_FIELDS`); ``None`` when it sets both, or for a data file that is not there (a
    config may name a file on another machine; loading the task later says so)."""
    fields = tuple(name for name in LEAK_FIELDS if name not in hardware)
    if not fields or missing_data_file(task):
        return None
    data = load_task(task)
    bits = hardware.get("membrane_bits")  # a wrong type is refused when the config is built
    max_shift = (bits if isinstance(bits, int) else HardwareConfig.membrane_bits) - 1
    return derive_leak(data.train, data.target, max_shift).record(fields)


@dataclass(frozen=True)
class FlowConfig:
    """The whole flow's settings: one dataclass per table, each with the demo's defaults.

    ``derived`` records the hardware settings that came from the task rather than the file, for
    the run's records: the leaks (``leak``, :func:`task_leak`) and the readout's learning rate
    that its leak asks for (``readout_rate``,
    :func:`~neurofptt.flow.onchip_rates.readout_rate`, recorded where the file leaves
    ``lr_shift_out`` to the leak).  It is not a table of the file: the values are in
    ``hardware`` already, or, for the readout's rate where the file has no
    ``[hardware.learning]`` table (an inference core), in the core that on-chip learning builds
    (:func:`~neurofptt.flow.onchip.onchip_hardware`, which takes the rate from the readout
    leak it learns with).
    """

    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    flow: FlowSettings = field(default_factory=FlowSettings)
    derived: dict[str, Any] = field(default_factory=dict, compare=False)
    #: the ``[hardware.learning]`` options the file sets; the learning rates it leaves out may
    #: follow the task (:func:`~neurofptt.flow.onchip.onchip_hardware`)
    set_learning: frozenset[str] = field(default_factory=frozenset, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware.to_dict(),
            "train": self.train.to_dict(),
            "flow": dataclasses.asdict(self.flow),
        }

    @classmethod
    def from_dict(cls, data: Any) -> FlowConfig:
        """A config from a file's tables; a table or option it leaves out takes the defaults,
        except the network's inputs and classes, which come from the flow's task
        (:func:`task_sizes`), and the membrane and readout leaks, which the task's label layout
        gives (:func:`task_leak`), unless the hardware table sets them; a size the table sets and
        the task contradicts is refused when the task is loaded, with the fix."""
        if "derived" in check_table(data, "config"):
            raise ConfigError(
                "config: 'derived' is what a run records, not a table; set hardware.leak_shift "
                "to choose the leak"
            )
        tables = from_table(cls, data, "config")
        flow = FlowSettings(**from_table(FlowSettings, tables.get("flow", {}), "flow"))
        hardware = check_table(tables.get("hardware", {}), "hardware")
        derived: dict[str, Any] = {}
        if "n_in" not in hardware or "n_out" not in hardware:
            hardware = {**task_sizes(flow.task), **hardware}
        leak = task_leak(flow.task, hardware)
        if leak is not None:
            hardware = {**hardware, **{k: leak[k] for k in LEAK_FIELDS if k in leak}}
            derived["leak"] = leak
        learning = hardware.get("learning")
        set_learning = frozenset(learning) if isinstance(learning, dict) else frozenset()
        rate = readout_rate(hardware)
        if rate is not None:
            derived["readout_rate"] = rate
            learning = hardware.get("learning")
            if isinstance(learning, dict):
                hardware = {
                    **hardware,
                    "learning": {**learning, "lr_shift_out": rate["lr_shift_out"]},
                }
        return cls(
            hardware=HardwareConfig.from_dict(hardware),
            train=TrainConfig.from_dict(tables.get("train", {})),
            flow=flow,
            derived=derived,
            set_learning=set_learning,
        )

    @classmethod
    def load(
        cls, path: str | Path | None, *, quick: bool = False, task: str | Path | None = None
    ) -> FlowConfig:
        """The config of a TOML file (or the defaults), with ``--quick``'s budget; ``task``
        (``--task NAME`` or ``--data FILE.npz``) becomes ``flow.task``, whose inputs and
        classes the network takes unless the file sets them (:meth:`from_dict`)."""
        tables = {} if path is None else dict(load_toml(path))
        if task is not None:
            flow = check_table(tables.get("flow", {}), "flow")
            tables["flow"] = {**flow, "task": str(task)}
        cfg = cls.from_dict(tables)
        return cfg.quick() if quick else cfg

    def override(self, *, rule: str | None = None, model: str | None = None) -> FlowConfig:
        """The config with command-line choices applied (``None`` keeps the file's value)."""
        if rule is None and model is None:
            return self
        train = TrainConfig.from_dict(
            {
                **self.train.to_dict(),
                "rule": rule or self.train.rule,
                "model": model or self.train.model,
            }
        )
        return dataclasses.replace(self, train=train)

    def quick(self) -> FlowConfig:
        """A few-minute budget: fewer epochs and RTL samples, synthesis without place-and-route."""
        return dataclasses.replace(
            self,
            train=dataclasses.replace(
                self.train,
                epochs=min(self.train.epochs, 3),
                qat_epochs=min(self.train.qat_epochs, 1),
            ),
            flow=dataclasses.replace(self.flow, rtl_samples=16, fpga_pnr=False),
        )
