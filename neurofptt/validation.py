"""Type checks for the configuration dataclasses (values usually come from a TOML file).

A wrong type in a config file (``epochs = "3"``, ``batch_size = 16.5``) must fail when the config
is built, with the option's name, not later inside training as a ``TypeError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from neurofptt.errors import ConfigError

_ACCEPTS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
    "str": ((str,), "a string"),
}


def check_field_types(instance: Any, table: str) -> None:
    """Raise :class:`ConfigError` for a field whose value does not have its annotated type.

    ``bool`` is not accepted where a number is expected (``True`` is an ``int`` in Python).
    """
    for field in dataclasses.fields(instance):
        if str(field.type) not in _ACCEPTS:
            continue
        accepted, description = _ACCEPTS[str(field.type)]
        value = getattr(instance, field.name)
        if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
            raise ConfigError(f"{table}.{field.name} must be {description}, got {value!r}")


def check_table(data: Any, table: str) -> dict[str, Any]:
    """A config table must be a TOML table (a dict)."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{table}] must be a table of options, got {data!r}")
    return data
