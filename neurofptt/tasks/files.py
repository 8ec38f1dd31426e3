"""Bring your own data: the ``.npz`` data-set file, its checks, its loader and its summary.

A data file is a plain NumPy ``.npz`` archive, so any pipeline can write one with
``numpy.savez`` and no code of ours; ``docs/data.md`` is the user's description of the arrays.
In short, each split ``s`` of ``train`` (required), ``val`` and ``test`` is stored either dense,

* ``x_s``: ``(N, T, C)`` spikes, 0/1 (``uint8`` or ``bool``),

or, for long sparse recordings, as events,

* ``events_s``: ``(M, 3)`` integer rows ``(sample, time step, channel)`` with the file-wide
  scalars ``n_steps`` (``T``) and ``n_channels`` (``C``); a repeated row is one spike,

together with its targets ``y_s``, whose shape says what the task is (``TaskData.target``):

* ``(N,)`` integers: one class per sequence (``"label"``);
* ``(N, T)`` integers: one class per step, ``-1`` meaning "no target at this step"
  (``"label_per_step"``);
* ``(N, T, K)`` floats: ``K`` real targets per step (``"regression"``).

An optional scalar ``n_classes`` fixes the number of classes (else it is the largest label
plus one), and arrays whose names start with ``meta_`` (the converters write ``meta_dt``, the
seconds per step, and ``meta_source``) are carried along and otherwise ignored.  Any other name
is refused: a misspelt ``x_tset`` silently ignored would train without a test split.

Every check names the file, the array and the fix in one line, because a bad data file is
found at load time by someone who did not write it; :func:`spike_data` runs the same checks on
arrays that never were a file (:func:`from_arrays`) and on what the converters produce.

A task needs a test split, and :func:`load_data_file` refuses a file without one instead of
holding out samples on its own: the test split is scored once, at the end, and must be the same
for every stage and every run, which a split fixed in the file guarantees and a hold-out drawn
at load time would only promise (``neurofptt data convert --test-fraction`` fixes one into the
file).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurofptt.errors import ConfigError, ShapeError
from neurofptt.io import atomic_write_bytes
from neurofptt.tasks.base import SequenceDataset, TaskData

SPLITS = ("train", "val", "test")
META_PREFIX = "meta_"
SCALARS = ("n_steps", "n_channels", "n_classes")
KNOWN = frozenset([f"{kind}_{s}" for kind in ("x", "events", "y") for s in SPLITS] + list(SCALARS))
FORMAT_HINT = "see docs/data.md"


@dataclass(frozen=True)
class Split:
    """One split's targets ``y`` and its spikes: dense ``x`` ``(N, T, C)`` bool, or ``events``
    ``(M, 3)`` int64 rows ``(sample, step, channel)``; exactly one of the two is set."""

    y: np.ndarray
    x: np.ndarray | None = None
    events: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class SpikeData:
    """A checked data file in memory (build it with :func:`spike_data`, which checks).

    ``source`` names where the arrays came from (a path, or ``"from_arrays"``) for messages;
    ``n_classes`` is the file's explicit class count, if it has one.
    """

    splits: Mapping[str, Split]
    n_steps: int
    n_channels: int
    target: str
    n_out: int
    n_classes: int | None = None
    source: str = "arrays"
    meta: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def layout(self) -> str:
        """``"events"`` or ``"dense"``: how the splits are held (all of them the same way)."""
        return "events" if self.splits["train"].events is not None else "dense"

    def dense(self, split: str) -> np.ndarray:
        """The split's spikes as a ``(N, T, C)`` bool array."""
        part = self.splits[split]
        if part.x is not None:
            return part.x
        x = np.zeros((len(part), self.n_steps, self.n_channels), dtype=bool)
        ev = part.events
        x[ev[:, 0], ev[:, 1], ev[:, 2]] = True
        return x

    def events(self, split: str) -> np.ndarray:
        """The split's spikes as sorted, distinct ``(sample, step, channel)`` int64 rows."""
        part = self.splits[split]
        if part.x is not None:
            return np.argwhere(part.x).astype(np.int64)
        return unique_events(part.events, self.n_steps, self.n_channels)

    def spike_count(self, split: str) -> int:
        """Spikes in the split (repeated event rows count once: a spike is a 1 in a bin)."""
        part = self.splits[split]
        if part.x is not None:
            return int(np.count_nonzero(part.x))
        return int(len(self.events(split)))


def unique_events(events: np.ndarray, n_steps: int, n_channels: int) -> np.ndarray:
    """``events`` without repeated rows, sorted by sample, step and channel (the order of
    ``np.argwhere`` on the dense array), so both layouts give the same event list."""
    if len(events) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    ev = np.asarray(events, dtype=np.int64)
    flat = np.unique((ev[:, 0] * n_steps + ev[:, 1]) * n_channels + ev[:, 2])
    sample, rest = np.divmod(flat, n_steps * n_channels)
    step, channel = np.divmod(rest, n_channels)
    return np.stack([sample, step, channel], axis=1)


# -- checks -----------------------------------------------------------------------------------
def spike_data(arrays: Mapping[str, object], source: str) -> SpikeData:
    """Check the arrays of a data file (see the module docstring) and return them as
    :class:`SpikeData`; ``source`` (a path, or a word such as ``"from_arrays"``) starts every
    message.  Raises :class:`ConfigError` for missing or unknown arrays and :class:`ShapeError`
    for arrays of the wrong shape, type or content, each in one line with the fix."""
    arrays = {k: v for k, v in arrays.items() if v is not None}
    meta = {k: np.asarray(v) for k, v in arrays.items() if k.startswith(META_PREFIX)}
    unknown = sorted(k for k in arrays if k not in KNOWN and not k.startswith(META_PREFIX))
    if unknown:
        raise ConfigError(
            f"{source}: unknown array(s) {unknown}; a data file holds x_<split> or "
            f"events_<split>, y_<split> (split: train, val, test), n_steps, n_channels, "
            f"n_classes and meta_* arrays ({FORMAT_HINT})"
        )
    dense = [k for k in arrays if k.startswith("x_")]
    sparse = [k for k in arrays if k.startswith("events_")]
    if dense and sparse:
        raise ConfigError(
            f"{source}: mixes dense ({sorted(dense)}) and event ({sorted(sparse)}) arrays; store "
            "every split the same way"
        )
    layout = "events" if sparse else "dense"
    kind = "events" if sparse else "x"
    if f"{kind}_train" not in arrays:
        raise ConfigError(
            f"{source}: no training inputs; a data file needs x_train (dense spikes) or "
            f"events_train with n_steps and n_channels ({FORMAT_HINT})"
        )
    for split in SPLITS:
        has_x, has_y = f"{kind}_{split}" in arrays, f"y_{split}" in arrays
        if has_x != has_y:
            there, missing = (
                (f"{kind}_{split}", f"y_{split}") if has_x else (f"y_{split}", f"{kind}_{split}")
            )
            raise ConfigError(
                f"{source}: has {there} but no {missing}; every split needs its inputs and "
                "its targets"
            )
    present = [s for s in SPLITS if f"y_{s}" in arrays]
    n_classes = _scalar(arrays, "n_classes", source, minimum=2)
    if layout == "dense":
        for name in ("n_steps", "n_channels"):
            if name in arrays:
                raise ConfigError(
                    f"{source}: {name} describes events_* arrays, but this file stores dense "
                    f"x_* arrays, whose shape gives it; drop {name}"
                )
        xs = {s: _dense_spikes(arrays[f"x_{s}"], f"x_{s}", source) for s in present}
        n_steps, n_channels = xs["train"].shape[1:]
        for s in present:
            if xs[s].shape[1:] != (n_steps, n_channels):
                raise ShapeError(
                    f"{source}: x_{s} has {xs[s].shape[1]} steps and {xs[s].shape[2]} channels "
                    f"but x_train has {n_steps} and {n_channels}; every split needs the same "
                    "steps and channels (pad or cut them)"
                )
    else:
        for name in ("n_steps", "n_channels"):
            if name not in arrays:
                raise ConfigError(
                    f"{source}: events_* arrays need the scalar {name}; add it (the "
                    f"{'steps per sample' if name == 'n_steps' else 'input channels'})"
                )
        n_steps = _scalar(arrays, "n_steps", source, minimum=1)
        n_channels = _scalar(arrays, "n_channels", source, minimum=1)
    ys = {s: _targets(arrays[f"y_{s}"], f"y_{s}", source) for s in present}
    target = ys["train"][0]
    splits: dict[str, Split] = {}
    for s in present:
        split_target, y = ys[s]
        if split_target != target:
            raise ShapeError(
                f"{source}: y_{s} holds {split_target!r} targets but y_train holds {target!r} "
                f"ones; every split needs targets of the same kind ({FORMAT_HINT})"
            )
        n = int(y.shape[0])
        if n == 0:
            raise ShapeError(
                f"{source}: y_{s} is empty; a split needs at least one sample (leave the "
                "split out instead)"
            )
        if layout == "dense":
            x = xs[s]
            if x.shape[0] != n:
                raise ShapeError(
                    f"{source}: x_{s} holds {x.shape[0]} samples but y_{s} holds {n}; give "
                    "every sample its target"
                )
            part = Split(y=y, x=x)
        else:
            ev = _events(arrays[f"events_{s}"], f"events_{s}", source, n, n_steps, n_channels)
            part = Split(y=y, events=ev)
        if target != "label" and y.shape[1] != n_steps:
            raise ShapeError(
                f"{source}: y_{s} has {y.shape[1]} steps but the inputs have {n_steps}; "
                "per-step targets need one entry per input step"
            )
        splits[s] = part
    n_out = _check_values(splits, target, n_classes, source)
    return SpikeData(
        splits=splits,
        n_steps=int(n_steps),
        n_channels=int(n_channels),
        target=target,
        n_out=n_out,
        n_classes=n_classes,
        source=source,
        meta=meta,
    )


def _scalar(arrays: Mapping[str, object], name: str, source: str, minimum: int) -> int | None:
    if name not in arrays:
        return None
    a = np.asarray(arrays[name])
    if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ShapeError(
            f"{source}: {name} must be one integer, got {a.dtype} of shape {a.shape}; store it "
            f"as e.g. {name}=np.int64(...)"
        )
    value = int(a.reshape(()))
    if value < minimum:
        raise ShapeError(f"{source}: {name} = {value} must be at least {minimum}")
    return value


def _dense_spikes(value: object, name: str, source: str) -> np.ndarray:
    x = np.asarray(value)
    if x.ndim != 3:
        raise ShapeError(
            f"{source}: {name} has shape {x.shape}; dense spikes must be (samples, steps, "
            "channels), a 3-d array (add a channel axis with x[..., None] for one channel)"
        )
    if 0 in x.shape:
        raise ShapeError(
            f"{source}: {name} has shape {x.shape}; a split needs at least one sample, step and "
            "channel"
        )
    if x.dtype == bool:
        return x
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ShapeError(f"{source}: {name} has dtype {x.dtype}; spikes must be uint8 or bool 0/1")
    bad = (x != 0) & (x != 1)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ShapeError(
            f"{source}: {name} holds {x[where].item()} at {where}; spikes must be 0 or 1 (binarise "
            "them, e.g. (x > 0).astype(np.uint8), or encode analog values as spikes first)"
        )
    return x.astype(bool)


def _targets(value: object, name: str, source: str) -> tuple[str, np.ndarray]:
    y = np.asarray(value)
    if np.issubdtype(y.dtype, np.integer):
        if y.ndim == 1:
            return "label", y.astype(np.int64)
        if y.ndim == 2:
            return "label_per_step", y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating) and y.ndim == 3:
        if not np.isfinite(y).all():
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(y))[0])
            raise ShapeError(
                f"{source}: {name} holds {y[where]} at {where}; regression targets must be finite "
                "(drop or fill those samples)"
            )
        return "regression", y.astype(np.float32)
    raise ShapeError(
        f"{source}: {name} is {y.dtype} of shape {y.shape}; targets must be integer class labels "
        "(samples,) or (samples, steps) with -1 for no target, or float regression targets "
        "(samples, steps, outputs) (cast labels with y.astype(np.int64))"
    )


def _events(
    value: object, name: str, source: str, n: int, n_steps: int, n_channels: int
) -> np.ndarray:
    ev = np.asarray(value)
    if ev.ndim != 2 or ev.shape[1] != 3:
        raise ShapeError(
            f"{source}: {name} has shape {ev.shape}; events must be (events, 3) rows of "
            "(sample, time step, channel)"
        )
    if len(ev) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if not np.issubdtype(ev.dtype, np.integer):
        raise ShapeError(
            f"{source}: {name} has dtype {ev.dtype}; events are integer indices (bin times "
            "into steps first: 'neurofptt data convert' with --dt)"
        )
    ev = ev.astype(np.int64)
    split = name.split("_", 1)[1]
    limits = (
        ("sample", n, f"the {n} samples of y_{split}", f"give every sample a label in y_{split}"),
        ("time step", n_steps, f"n_steps = {n_steps}", "raise n_steps or drop those events"),
        ("channel", n_channels, f"n_channels = {n_channels}", "raise n_channels or drop them"),
    )
    for col, (what, limit, bound, fix) in enumerate(limits):
        values = ev[:, col]
        negative = np.flatnonzero(values < 0)
        if len(negative):
            row = int(negative[0])
            raise ShapeError(
                f"{source}: {name} row {row} has {what} {int(values[row])}; indices must be >= 0"
            )
        beyond = np.flatnonzero(values >= limit)
        if len(beyond):
            row = int(beyond[0])
            raise ShapeError(
                f"{source}: {name} row {row} has {what} {int(values[row])}, beyond {bound}; {fix}"
            )
    return ev


def _check_values(
    splits: Mapping[str, Split], target: str, n_classes: int | None, source: str
) -> int:
    """Check the label ranges and return the output size (classes, or regression outputs)."""
    if target == "regression":
        if n_classes is not None:
            raise ConfigError(
                f"{source}: n_classes is for class labels, but the targets are regression "
                "values; drop n_classes"
            )
        outputs = {int(p.y.shape[2]) for p in splits.values()}
        if len(outputs) != 1 or 0 in outputs:
            raise ShapeError(
                f"{source}: the regression targets have {sorted(outputs)} outputs per step "
                "across the splits; every split needs the same number, at least one"
            )
        return outputs.pop()
    lowest = -1 if target == "label_per_step" else 0
    top = -1
    for s, part in splits.items():
        y = part.y
        below = np.argwhere(y < lowest)
        if len(below):
            where = tuple(int(i) for i in below[0])
            hint = (
                "-1 (no target) is for per-step labels only"
                if target == "label"
                else "use -1 for a step without a target"
            )
            raise ShapeError(
                f"{source}: y_{s} holds label {int(y[where])} at {where}; labels are class "
                f"indices 0, 1, ... ({hint})"
            )
        if n_classes is not None and (y >= n_classes).any():
            where = tuple(int(i) for i in np.argwhere(y >= n_classes)[0])
            raise ShapeError(
                f"{source}: y_{s} holds label {int(y[where])} at {where} but n_classes = "
                f"{n_classes}; raise n_classes or fix the label"
            )
        if (y >= 0).sum() == 0 and s == "train":
            raise ShapeError(
                f"{source}: y_train has no labelled step (all -1); label at least the steps "
                "the network should learn from"
            )
        top = max(top, int(y.max()))
    n_out = n_classes if n_classes is not None else top + 1
    if n_out < 2:
        raise ShapeError(
            f"{source}: the labels name only class {top}; a classifier needs two classes at "
            "least (store n_classes if the others exist but are absent from the file)"
        )
    return n_out


# -- reading and writing ----------------------------------------------------------------------
def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file at ``path``, unchecked; one clear line if it is missing,
    not an ``.npz`` archive, truncated, or holds pickled objects."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"data file {path} does not exist")
    if p.is_dir():
        raise ConfigError(f"data file {path} is a folder; give the .npz file")
    hint = "write one with numpy.savez or 'neurofptt data convert'"
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not an .npz data file ({reason}); {hint}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ConfigError(f"{path}: a single .npy array, not an .npz data file; {hint}")
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        for name in loaded.files:
            try:
                value = loaded[name]
            except ValueError as exc:
                raise ShapeError(
                    f"{path}: array {name!r} holds Python objects, which a data file may not "
                    "(it would need pickle to read); store numeric arrays"
                ) from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ConfigError(f"{path}: array {name!r} cannot be read ({exc}); {hint}") from exc
            if not isinstance(value, np.ndarray):
                raise ConfigError(f"{path}: member {name!r} is not a NumPy array; {hint}")
            arrays[name] = value
    return arrays


def read_data_file(path: str | Path) -> SpikeData:
    """The checked contents of a data file, any split optional but ``train``."""
    return spike_data(read_arrays(path), str(path))


def data_arrays(data: SpikeData, *, events: bool = False) -> dict[str, np.ndarray]:
    """The arrays a data file of ``data`` holds: dense ``uint8`` spikes (the most portable
    0/1 dtype), or with ``events`` the event layout (``int32`` rows where the indices fit, half
    the size of ``int64``)."""
    out: dict[str, np.ndarray] = {}
    for split, part in data.splits.items():
        if events:
            ev = data.events(split)
            small = len(ev) == 0 or int(ev.max()) < np.iinfo(np.int32).max
            out[f"events_{split}"] = ev.astype(np.int32 if small else np.int64)
        else:
            out[f"x_{split}"] = data.dense(split).astype(np.uint8)
        out[f"y_{split}"] = part.y
    if events:
        out["n_steps"] = np.int64(data.n_steps)
        out["n_channels"] = np.int64(data.n_channels)
    if data.n_classes is not None:
        out["n_classes"] = np.int64(data.n_classes)
    out.update(data.meta)
    return out


def write_data_file(path: str | Path, data: SpikeData, *, events: bool = False) -> None:
    """Write ``data`` as a compressed ``.npz`` data file, atomically (a reader never sees half a
    file: the archive is built in memory, then replaces ``path`` in one step)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **data_arrays(data, events=events))
    atomic_write_bytes(Path(path), buffer.getvalue())


# -- tasks ------------------------------------------------------------------------------------
def to_task(data: SpikeData, name: str) -> TaskData:
    """``data`` as a :class:`TaskData` (float32 spikes); refuses data without a test split (see
    the module docstring for why the split must be fixed in advance)."""
    if "test" not in data.splits:
        raise ConfigError(
            f"{data.source}: no test split (x_test/events_test and y_test); the test split is "
            "scored once at the end and must be the same for every stage, so fix one in the "
            "file: 'neurofptt data convert' with --test FILE or --test-fraction F"
        )

    def dataset(split: str) -> SequenceDataset:
        x = torch.from_numpy(data.dense(split).astype(np.float32))
        return SequenceDataset(x=x, y=torch.from_numpy(np.ascontiguousarray(data.splits[split].y)))

    return TaskData(
        name=name,
        train=dataset("train"),
        test=dataset("test"),
        n_out=data.n_out,
        target=data.target,
        val=dataset("val") if "val" in data.splits else None,
    )


def load_data_file(path: str | Path) -> TaskData:
    """The task stored in a data file; its name is ``path`` as given, so records that name the
    task name the file to load again."""
    return to_task(read_data_file(path), str(path))


def from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    n_classes: int | None = None,
    name: str = "arrays",
) -> TaskData:
    """A task from arrays in memory, with the checks of a data file (the arrays are those of
    the dense layout: ``x_*`` ``(N, T, C)`` 0/1, ``y_*`` as in the module docstring)."""
    arrays = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "x_val": x_val,
        "y_val": y_val,
        "n_classes": None if n_classes is None else np.int64(n_classes),
    }
    return to_task(spike_data(arrays, f"from_arrays({name!r})"), name)


# -- summary ----------------------------------------------------------------------------------
def split_info(data: SpikeData, split: str) -> dict:
    """The numbers :func:`data_info` reports for one split (see there)."""
    part = data.splits[split]
    n = len(part)
    spikes = data.spike_count(split)
    if part.x is not None:
        active = int(part.x.any(axis=(1, 2)).sum())
    else:
        active = int(len(np.unique(part.events[:, 0]))) if len(part.events) else 0
    info: dict = {
        "samples": n,
        "spikes": spikes,
        "spike_rate": spikes / (n * data.n_steps * data.n_channels),
        "spikes_per_sample": spikes / n,
        "silent_samples": n - active,
    }
    y = part.y
    if data.target == "regression":
        info["target_mean"] = [float(v) for v in y.mean(axis=(0, 1))]
        info["target_std"] = [float(v) for v in y.std(axis=(0, 1))]
    else:
        labelled = y[y >= 0]
        info["label_counts"] = np.bincount(labelled, minlength=data.n_out).tolist()
        if data.target == "label_per_step":
            info["label_coverage"] = float(labelled.size / y.size)
    return info


def data_info(path: str | Path) -> dict:
    """A summary of a data file, for ``neurofptt data info``: the layout, ``n_steps``,
    ``n_channels``, the kind of target, ``n_out``, the ``meta_*`` values, and per split
    (``splits``) its ``samples``, ``spikes``, ``spike_rate`` (the fraction of 1s in the
    ``(N, T, C)`` array), ``spikes_per_sample``, ``silent_samples`` (no spike at all), and
    ``label_counts`` (per class; for per-step labels, steps rather than samples) with
    ``label_coverage`` (the fraction of steps that have a target) or, for regression,
    ``target_mean`` and ``target_std`` per output.

    Event files are summarised from their events, so a recording too long to hold dense still
    gets its numbers."""
    data = read_data_file(path)
    return {
        "path": str(path),
        "layout": data.layout,
        "target": data.target,
        "n_out": data.n_out,
        "n_classes": data.n_classes,
        "n_steps": data.n_steps,
        "n_channels": data.n_channels,
        "meta": {k: np.asarray(v).tolist() for k, v in data.meta.items()},
        "has_test": "test" in data.splits,
        "splits": {s: split_info(data, s) for s in data.splits},
    }


def format_info(info: Mapping) -> str:
    """:func:`data_info`'s record as the lines ``neurofptt data info`` prints."""
    lines = [
        f"{info['path']}: {info['layout']} layout, {info['n_steps']} steps x "
        f"{info['n_channels']} channels, {info['target']} targets, n_out = {info['n_out']}"
    ]
    lines += [f"  {k[len(META_PREFIX) :]}: {v}" for k, v in info["meta"].items()]
    for split, s in info["splits"].items():
        line = (
            f"  {split:5s} {s['samples']} samples, {s['spikes']} spikes "
            f"({s['spikes_per_sample']:.1f} per sample, rate {s['spike_rate']:.4f}), "
            f"{s['silent_samples']} silent"
        )
        if "label_counts" in s:
            line += f", labels {s['label_counts']}"
        if "label_coverage" in s:
            line += f", {s['label_coverage']:.1%} of steps labelled"
        if "target_mean" in s:
            mean = ", ".join(f"{v:.3g}" for v in s["target_mean"])
            std = ", ".join(f"{v:.3g}" for v in s["target_std"])
            line += f", target mean [{mean}] std [{std}]"
        lines.append(line)
    if not info["has_test"]:
        lines.append("  no test split: training on this file is refused until it has one")
    return "\n".join(lines)
