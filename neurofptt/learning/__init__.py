"""Learning rules behind one interface, and the training loop."""

from neurofptt.learning.base import BatchResult, Rule
from neurofptt.learning.bptt import BPTT
from neurofptt.learning.fptt import FPTT
from neurofptt.learning.trainer import RULES, TrainConfig, evaluate, fit, load_checkpoint, make_rule

__all__ = [
    "BPTT",
    "FPTT",
    "RULES",
    "BatchResult",
    "Rule",
    "TrainConfig",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_rule",
]
