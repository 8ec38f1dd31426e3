"""Tasks: offline data sets as input sequences with labels or per-step targets.

A task is a name in :data:`TASKS` (the built-in ones, and those added with
:func:`register_task`) or a path to a data file (:mod:`neurofptt.tasks.files`), so a config's
``task = "recordings/shd.npz"`` trains on the user's own data.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

from neurofptt.errors import ConfigError
from neurofptt.tasks.accumulation import load_cue_accumulation, load_cue_accumulation_short
from neurofptt.tasks.adding import load_adding
from neurofptt.tasks.base import TARGETS, SequenceDataset, TaskData
from neurofptt.tasks.convert import convert, convert_command, info_command, pool_spikes
from neurofptt.tasks.cue import load_cue_task
from neurofptt.tasks.cycleworld import load_cycleworld
from neurofptt.tasks.digits import (
    image_encode,
    load_digits_image,
    load_digits_task,
    threshold_encode,
)
from neurofptt.tasks.files import (
    SpikeData,
    data_info,
    format_info,
    from_arrays,
    load_data_file,
    read_data_file,
    write_data_file,
)
from neurofptt.tasks.imdb import load_imdb
from neurofptt.tasks.make import loader_options, write_task_file
from neurofptt.tasks.mnist import load_psmnist, load_smnist
from neurofptt.tasks.tsfd import load_tsfd
from neurofptt.tasks.xor import load_delayed_xor

TASKS = {
    "digits": load_digits_task,
    "digits-image": load_digits_image,
    "cue": load_cue_task,
    "tsfd": load_tsfd,
    "cycleworld": load_cycleworld,
    "smnist": load_smnist,
    "psmnist": load_psmnist,
    "imdb": load_imdb,
    "cue-accumulation": load_cue_accumulation,
    "cue-accumulation-short": load_cue_accumulation_short,
    "delayed-xor": load_delayed_xor,
    "adding": load_adding,
}


def is_data_path(name: str) -> bool:
    """Whether a task name is a data file's path: it ends in ``.npz`` or names a file.

    A name ending in ``.npz`` counts even when the file is missing, so that a config naming it
    still loads (the file may live on another machine) and loading the task says it is missing.
    """
    if name.lower().endswith(".npz"):
        return True
    try:
        return Path(name).is_file()
    except (OSError, ValueError):  # a name no file system accepts is no file
        return False


def check_task_name(name: str) -> None:
    """Raise a :class:`ConfigError` listing the built-in tasks unless ``name`` is one of them
    or a data file's path (:func:`is_data_path`)."""
    if name not in TASKS and not is_data_path(name):
        raise ConfigError(
            f"unknown task {name!r}; available tasks: {sorted(TASKS)}, or the path of a .npz "
            "data file (docs/data.md)"
        )


def load_task(name: str, **kwargs) -> TaskData:
    """Load a task by name or from a data file's path; unknown names list the available ones."""
    check_task_name(name)
    if name in TASKS:
        return TASKS[name](**kwargs)
    if kwargs:
        raise ConfigError(
            f"task {name!r} is a data file, which takes no options (got {sorted(kwargs)})"
        )
    return load_data_file(name)


def make_command(
    name: str, out: str | Path, options: Sequence[str] = (), *, events: bool = False
) -> dict:
    """``neurofptt data make``: draw the built-in task ``name`` with its loader's ``options``
    (``NAME=VALUE`` strings, :func:`~neurofptt.tasks.make.loader_options`) and write it to the
    data file ``out``; returns :func:`~neurofptt.tasks.make.write_task_file`'s record with the
    ``options`` given."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; available tasks: {sorted(TASKS)}")
    chosen = loader_options(name, TASKS[name], options)
    record = write_task_file(load_task(name, **chosen), out, events=events)
    return {**record, "options": chosen}


def register_task(name: str, loader: Callable[..., TaskData], *, replace: bool = False) -> None:
    """Add ``loader`` to :data:`TASKS` under ``name``, so ``load_task(name)`` and a config's
    ``flow.task = name`` use it (in this process: register before loading the config).

    Replacing a task needs ``replace=True``, so a plug-in cannot silently change what
    ``"digits"`` means; a name ending in ``.npz`` would read as a file and is refused.
    """
    if not isinstance(name, str) or not name or name.lower().endswith(".npz"):
        raise ConfigError(f"a task name is a non-empty string not ending in .npz, got {name!r}")
    if not callable(loader):
        raise ConfigError(f"the loader of task {name!r} must be callable, got {loader!r}")
    if name in TASKS and not replace:
        raise ConfigError(f"task {name!r} exists already; pass replace=True to replace it")
    TASKS[name] = loader


__all__ = [
    "TARGETS",
    "TASKS",
    "SequenceDataset",
    "SpikeData",
    "TaskData",
    "convert",
    "convert_command",
    "data_info",
    "format_info",
    "image_encode",
    "from_arrays",
    "info_command",
    "check_task_name",
    "is_data_path",
    "load_adding",
    "load_cue_accumulation",
    "load_cue_accumulation_short",
    "load_data_file",
    "load_cycleworld",
    "load_delayed_xor",
    "load_digits_image",
    "load_digits_task",
    "load_imdb",
    "load_psmnist",
    "load_smnist",
    "load_task",
    "load_tsfd",
    "make_command",
    "pool_spikes",
    "read_data_file",
    "register_task",
    "threshold_encode",
    "write_data_file",
    "write_task_file",
]
