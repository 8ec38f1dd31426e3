"""Tasks: offline data sets as input sequences with labels or per-step targets."""

from neurofptt.errors import ConfigError
from neurofptt.tasks.base import TARGETS, SequenceDataset, TaskData
from neurofptt.tasks.digits import load_digits_task, threshold_encode

TASKS = {"digits": load_digits_task}


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
    "load_digits_task",
    "load_task",
    "threshold_encode",
]
