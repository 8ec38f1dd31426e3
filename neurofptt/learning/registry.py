"""Names of the models and rules, and which rule can train which model.

The CLI and config files refer to models and rules by these names; an unsupported pair fails
before anything is built, with a message that lists what is supported.  The rule table is derived
from the rule classes (each names itself, its options and its models), so a rule's name, options
and supported models cannot drift apart from its code.
"""

from __future__ import annotations

from collections.abc import Callable

from neurofptt.errors import ConfigError
from neurofptt.learning.base import Rule, RuleOptions
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

RULE_CLASSES: tuple[type[Rule], ...] = (BPTT, TBPTT, FPTT, FOBPTT, EProp, FPP, RTRL)


def _rule_table(classes: tuple[type[Rule], ...]) -> dict[str, type[Rule]]:
    """Rules by their own ``name``; two rules with one name, options naming another rule's table
    or a rule naming a model that does not exist fail at import rather than silently shadowing,
    misreporting or never matching."""
    table: dict[str, type[Rule]] = {}
    for cls in classes:
        if not cls.name or cls.name in table:
            raise TypeError(f"rule class {cls.__name__} has an empty or repeated name")
        if cls.Options.table != f"train.{cls.name}":
            raise TypeError(f"{cls.Options.__name__}.table must be 'train.{cls.name}'")
        unknown = sorted(set(cls.models or ()) - set(MODELS))
        if unknown:
            raise TypeError(f"rule {cls.name!r} lists unknown models {unknown}")
        table[cls.name] = cls
    return table


RULES: dict[str, type[Rule]] = _rule_table(RULE_CLASSES)

#: the models each rule trains: those it lists, or every model for a rule that needs only the
#: cell protocol
SUPPORTED_MODELS: dict[str, tuple[str, ...]] = {
    name: cls.models or tuple(MODELS) for name, cls in RULES.items()
}

#: each rule's options dataclass, the ``[train.<rule>]`` table of a config file
RULE_OPTIONS: dict[str, type[RuleOptions]] = {name: cls.Options for name, cls in RULES.items()}


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
