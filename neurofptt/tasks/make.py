"""A built-in task written to a data file, so other tools (and other machines) get the very samples.

``neurofptt data make TASK --out FILE.npz --set NAME=VALUE ...`` draws a task with the loader's
options and writes its splits as a data file (:mod:`~neurofptt.tasks.files`, ``docs/data.md``):
the file then trains, quantizes and verifies like any recording, and ``neurofptt data info``
summarises it.  Only spike-encoded tasks fit the format, which carries spikes; a task with
real-valued inputs (TSFD, the adding problem) is refused with the reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TaskData
from neurofptt.tasks.files import SpikeData, spike_data, write_data_file

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def option_value(text: str, default: object) -> object:
    """``text`` as the type of the option's ``default`` (``int``, ``float``, ``bool``, ``str``);
    an option whose default is ``None`` (or that has none) takes an integer, a number or else
    the text.  Other options (a tuple of thresholds) are not set from text: :class:`TypeError`."""
    if isinstance(default, bool):
        if text.lower() not in BOOLEANS:
            raise ValueError(f"expected one of {sorted(BOOLEANS)}")
        return BOOLEANS[text.lower()]
    if isinstance(default, int | float | str):
        return type(default)(text)
    if default is not None and default is not inspect.Parameter.empty:
        raise TypeError(f"its default {default!r} is not a number or a word")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def loader_options(task: str, loader: Callable[..., TaskData], pairs: Sequence[str]) -> dict:
    """The keyword options ``NAME=VALUE`` of ``pairs`` for ``loader``, each converted to the type
    of its default; an unknown name or a value of the wrong type is refused with the valid ones."""
    parameters = inspect.signature(loader).parameters
    options: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"option {pair!r} of task {task!r} is not NAME=VALUE")
        if name not in parameters:
            raise ConfigError(
                f"task {task!r} has no option {name!r}; its options: {', '.join(parameters)}"
            )
        default = parameters[name].default
        try:
            options[name] = option_value(text.strip(), default)
        except ValueError as exc:
            raise ConfigError(
                f"option {name} = {text!r} of task {task!r}: not a {type(default).__name__} ({exc})"
            ) from exc
        except TypeError as exc:
            raise ConfigError(
                f"option {name} of task {task!r} cannot be set from the command line ({exc}); "
                "load the task in Python with load_task"
            ) from exc
    return options


def task_spike_data(task: TaskData) -> SpikeData:
    """``task``'s splits as a checked :class:`~neurofptt.tasks.files.SpikeData` (class tasks
    store their class count, so a class absent from the samples still counts)."""
    for split in (task.train, task.test, task.val):
        if split is not None and not bool(((split.x == 0) | (split.x == 1)).all()):
            raise ConfigError(
                f"task {task.name!r} has real-valued inputs, and a data file holds spikes (0 or "
                "1); train it by name instead (neurofptt train --task)"
            )
    splits = {"train": task.train, "test": task.test, "val": task.val}
    arrays: dict[str, object] = {}
    for name, split in splits.items():
        if split is not None:
            arrays[f"x_{name}"] = split.x.numpy()
            arrays[f"y_{name}"] = split.y.numpy()
    if task.target != "regression":
        arrays["n_classes"] = task.n_out
    return spike_data(arrays, f"task {task.name!r}")


def write_task_file(task: TaskData, out: str | Path, *, events: bool = False) -> dict:
    """Write ``task`` to the data file ``out`` (dense, or with ``events`` the event layout);
    returns a record of the file: ``task``, ``out``, ``layout``, ``n_steps``, ``n_channels``,
    ``target``, ``n_out`` and ``splits`` (samples each)."""
    if Path(out).suffix.lower() != ".npz":
        raise ConfigError(f"output {out} must end in .npz (tasks and configs recognise data by it)")
    data = task_spike_data(task)
    write_data_file(out, data, events=events)
    return {
        "task": task.name,
        "out": str(out),
        "layout": "events" if events else "dense",
        "n_steps": data.n_steps,
        "n_channels": data.n_channels,
        "target": data.target,
        "n_out": data.n_out,
        "splits": {name: len(part) for name, part in data.splits.items()},
    }
