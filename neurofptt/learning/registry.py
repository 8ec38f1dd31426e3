"""Names of the models and rules, and which rule can train which model.

The CLI and config files refer to models and rules by these names; an unsupported pair fails
before anything is built, with a message that lists what is supported.
"""

from __future__ import annotations

from collections.abc import Callable

from neurofptt.errors import ConfigError
from neurofptt.learning.base import Rule
from neurofptt.learning.bptt import BPTT
from neurofptt.learning.fptt import FPTT
from neurofptt.models.base import RecurrentModel
from neurofptt.models.conventional import GatedRNN
from neurofptt.models.spiking import SpikingRNN

MODELS: dict[str, Callable[..., RecurrentModel]] = {
    "lif": lambda n_in, hidden, n_out, **kw: SpikingRNN(n_in, hidden, n_out, **kw),
    "rnn": lambda n_in, hidden, n_out, **kw: GatedRNN("rnn", n_in, hidden, n_out),
    "lstm": lambda n_in, hidden, n_out, **kw: GatedRNN("lstm", n_in, hidden, n_out),
    "gru": lambda n_in, hidden, n_out, **kw: GatedRNN("gru", n_in, hidden, n_out),
}

RULES: dict[str, type[Rule]] = {"bptt": BPTT, "fptt": FPTT}

# Rules that only need the cell protocol train every model; the others list their models.
SUPPORTED_MODELS: dict[str, tuple[str, ...]] = {
    "bptt": tuple(MODELS),
    "fptt": tuple(MODELS),
}


def check_combination(rule: str, model: str) -> None:
    if rule not in RULES:
        raise ConfigError(f"unknown rule {rule!r}; available rules: {sorted(RULES)}")
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; available models: {sorted(MODELS)}")
    if model not in SUPPORTED_MODELS[rule]:
        pairs = ", ".join(f"{r}: {'/'.join(m)}" for r, m in sorted(SUPPORTED_MODELS.items()))
        raise ConfigError(
            f"rule {rule!r} cannot train model {model!r}; supported combinations are {pairs}"
        )


def build_model(name: str, n_in: int, hidden: int, n_out: int, **kwargs) -> RecurrentModel:
    """A model by name; ``kwargs`` go to spiking models (beta, threshold, surrogate, ...)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available models: {sorted(MODELS)}")
    return MODELS[name](n_in, hidden, n_out, **kwargs)
