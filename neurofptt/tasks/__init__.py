"""Tasks: offline data sets encoded as spike sequences."""

from neurofptt.errors import ConfigError
from neurofptt.tasks.digits import SpikeDataset, TaskData, load_digits_task, threshold_encode

TASKS = {"digits": load_digits_task}


def load_task(name: str, **kwargs) -> TaskData:
    """Load a task by name; unknown names list the available ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; available tasks: {sorted(TASKS)}")
    return TASKS[name](**kwargs)


__all__ = ["TASKS", "SpikeDataset", "TaskData", "load_digits_task", "load_task", "threshold_encode"]
