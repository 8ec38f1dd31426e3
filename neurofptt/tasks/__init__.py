"""Tasks: offline data sets as input sequences with labels or per-step targets."""

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TARGETS, SequenceDataset, TaskData
from neurofptt.tasks.cue import load_cue_task
from neurofptt.tasks.cycleworld import load_cycleworld
from neurofptt.tasks.digits import load_digits_task, threshold_encode
from neurofptt.tasks.imdb import load_imdb
from neurofptt.tasks.mnist import load_psmnist, load_smnist
from neurofptt.tasks.tsfd import load_tsfd

TASKS = {
    "digits": load_digits_task,
    "cue": load_cue_task,
    "tsfd": load_tsfd,
    "cycleworld": load_cycleworld,
    "smnist": load_smnist,
    "psmnist": load_psmnist,
    "imdb": load_imdb,
}


def load_task(name: str, **kwargs) -> TaskData:
    """Load a task by name; unknown names list the available ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; available tasks: {sorted(TASKS)}")
    return TASKS[name](**kwargs)


__all__ = [
    "TARGETS",
    "TASKS",
    "SequenceDataset",
    "TaskData",
    "load_cycleworld",
    "load_digits_task",
    "load_imdb",
    "load_psmnist",
    "load_smnist",
    "load_task",
    "load_tsfd",
    "threshold_encode",
]
