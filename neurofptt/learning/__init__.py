"""Learning rules behind one interface, and the training loop."""

from neurofptt.learning.base import BatchResult, Rule
from neurofptt.learning.bptt import BPTT
from neurofptt.learning.fptt import FPTT
from neurofptt.learning.registry import MODELS, RULES, build_model, check_combination
from neurofptt.learning.trainer import TrainConfig, evaluate, fit, load_checkpoint, make_rule

__all__ = [
    "BPTT",
    "FPTT",
    "MODELS",
    "RULES",
    "BatchResult",
    "Rule",
    "TrainConfig",
    "build_model",
    "check_combination",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_rule",
]
