"""Reading and writing the toolkit's files, and turning config tables into dataclasses.

Every file the toolkit writes goes through :func:`atomic_write_bytes`, so an interrupted run leaves
either the old file or the complete new one, never half of it.  Config tables (from TOML files or
saved records) become dataclasses through :func:`from_table`, the one place that rejects unknown
keys and wrong types with a message naming the option.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from neurofptt.errors import ConfigError

T = TypeVar("T")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either the old file or the complete new one.

    A failure (no permission, disk full, a file where a folder should be) raises an
    :class:`OSError` naming ``path`` itself, not the temporary file beside it, so that the message
    the CLI prints points at the file the user asked for.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _naming(exc, path) from exc
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` as an error about ``path`` (same errno, hence the same subclass), unless it already
    names ``path`` or one of its folders (a folder that could not be made is the real culprit)."""
    if exc.filename is not None and Path(exc.filename) in (path, *path.parents):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    atomic_write_bytes(Path(path), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    """The JSON content of ``path``, or ``None`` when there is no such file."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it, so a reader sees every finished record at once.

    The line is written with one call, so a signal (Ctrl-C) never leaves half of it; a process
    killed outright may, and :func:`write_jsonl` rewrites such a file from the records that
    count.
    """
    path = Path(path)
    try:
        with path.open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise _naming(exc, path) from exc


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` (atomically) by one JSON line per record, as :func:`append_jsonl` writes
    them: a resumed run restarts its log from the records its checkpoint holds, so the log never
    repeats an epoch nor keeps one the checkpoint lost."""
    text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
    atomic_write_bytes(Path(path), text.encode())


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing or malformed file into a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing .toml file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


_ACCEPTS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
    "str": ((str,), "a string"),
}


def check_field_types(instance: Any, table: str) -> None:
    """Raise :class:`ConfigError` for a field whose value does not have its annotated type.

    A wrong type in a config file (``epochs = "3"``, ``batch_size = 16.5``) must fail when the
    config is built, with the option's name, not later inside training as a ``TypeError``.
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


def from_table(
    cls: type[T],
    data: Any,
    table: str,
    *,
    renamed: dict[str, str] | None = None,
    extra: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Check a config table against the fields of dataclass ``cls`` and return its options.

    ``renamed`` maps option names of earlier layouts to what replaced them, so an old file fails
    with a message saying what to rename; ``extra`` names keys the caller handles itself (nested
    tables).  The caller builds the dataclass from the returned dict (after converting nested
    tables), so each class keeps its own checks in ``__post_init__``.
    """
    data = check_table(data, table)
    known = {f.name for f in dataclasses.fields(cls)} | set(extra)  # type: ignore[arg-type]
    renamed = renamed or {}
    moved = sorted(k for k in data if k in renamed and k not in known)
    if moved:
        hints = "; ".join(f"{table}.{k} is now {renamed[k]}" for k in moved)
        raise ConfigError(f"{hints}: rename it in the config file")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {table} option(s) {unknown}; valid options are {sorted(known)}")
    return dict(data)
