"""Names of the models and rules, and which rule can train which model.

The CLI and config files refer to models and rules by these names; an unsupported pair fails
before anything is built, with a message that lists what is supported.
"""

from __future__ import annotations

from collections.abc import Callable

from neurofptt.errors import ConfigError
from neurofptt.learning.base import Rule
from neurofptt.learning.bptt import BPTT
from neurofptt.learning.eprop import EProp
from neurofptt.learning.fobptt import FOBPTT
from neurofptt.learning.fpp import FPP
from neurofptt.learning.fptt import FPTT
from neurofptt.learning.rtrl import RTRL
from neurofptt.learning.tbptt import TBPTT
from neurofptt.models.alif import AdaptiveSpikingRNN
from neurofptt.models.base import RecurrentModel
from neurofptt.models.conventional import GatedRNN
from neurofptt.models.spiking import SpikingRNN, StackedSpikingRNN


def _spiking(single: type[SpikingRNN]) -> Callable[..., RecurrentModel]:
    """One layer: the given network class; a list of sizes: a stack of its layer class."""

    def build(n_in: int, hidden: int | list[int], n_out: int, **kw) -> RecurrentModel:
        sizes = [hidden] if isinstance(hidden, int) else list(hidden)
        if len(sizes) == 1:
            return single(n_in, sizes[0], n_out, **kw)
        return StackedSpikingRNN(n_in, sizes, n_out, layer_cls=single.layer_cls, **kw)

    return build


MODELS: dict[str, Callable[..., RecurrentModel]] = {
    "lif": _spiking(SpikingRNN),
    "alif": _spiking(AdaptiveSpikingRNN),
    "rnn": lambda n_in, hidden, n_out, **kw: GatedRNN("rnn", n_in, hidden, n_out),
    "lstm": lambda n_in, hidden, n_out, **kw: GatedRNN("lstm", n_in, hidden, n_out),
    "gru": lambda n_in, hidden, n_out, **kw: GatedRNN("gru", n_in, hidden, n_out),
}

RULES: dict[str, type[Rule]] = {
    "bptt": BPTT,
    "tbptt": TBPTT,
    "fptt": FPTT,
    "fobptt": FOBPTT,
    "eprop": EProp,
    "fpp": FPP,
    "rtrl": RTRL,
}

# Rules that only need the cell protocol train every model; the others list their models.
SUPPORTED_MODELS: dict[str, tuple[str, ...]] = {
    "bptt": tuple(MODELS),
    "tbptt": tuple(MODELS),
    "fptt": tuple(MODELS),
    "fobptt": tuple(MODELS),
    "eprop": ("lif", "alif", "rnn"),  # hand-written traces: single-layer LIF/ALIF and tanh RNN
    # FPP runs any model whose state is a tuple of float tensors, but it has only been shown to
    # learn with gated cells and with the tanh RNN on Cycleworld (its paper's setting; on the
    # which-fired-first memory task the tanh RNN does not learn reliably); RTRL is exact for
    # every model (rtrl_gradients), but training spiking networks with it is too slow to be
    # useful: both list what is verified.
    "fpp": ("rnn", "lstm", "gru"),
    "rtrl": ("rnn", "lstm", "gru"),
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


def build_model(
    name: str, n_in: int, hidden: int | list[int], n_out: int, **kwargs
) -> RecurrentModel:
    """A model by name; ``hidden`` is one size or one per layer; ``kwargs`` go to spiking models
    (beta, threshold, surrogate, ...)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available models: {sorted(MODELS)}")
    return MODELS[name](n_in, hidden, n_out, **kwargs)
