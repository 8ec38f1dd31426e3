"""Converters from recorded spikes to the data file of :mod:`neurofptt.tasks.files`.

Three sources are read:

``shd``
    the HDF5 layout of the Spiking Heidelberg Digits and Spiking Speech Commands:
    ``spikes/times`` (seconds) and ``spikes/units`` (unit indices), one ragged array per sample,
    and ``labels``; anything else (``extra/...``) is ignored.  Needs ``h5py`` (the ``data``
    extra).
``csv``
    a text list of events, one per row, under a header naming the columns ``sample``, ``time``,
    ``channel`` and optionally ``label`` (comma-, tab- or space-separated; other columns are
    ignored); ``time`` is in steps, or in seconds when ``dt`` is given.  Labels come from the
    ``label`` column or from a separate file with one label per line (which can also name
    samples that have no event at all).
``events``
    our own ``.npz`` file, in either layout (an event file becomes a dense one).

Every source becomes ``(sample, step, unit)`` events first; then the steps are cut to
``n_steps``, pooled by ``bin_factor`` and the units pooled to ``channels``, and all three
poolings are an OR: a bin holds a spike if any spike fell into it, because the networks see
spikes, not counts.  A spike at time ``t`` falls into step ``floor(t / dt)`` (with a tolerance of
``BIN_TOLERANCE`` steps, so that ``0.003 s`` at ``dt = 0.001 s`` is step 3 and not 2 by float
rounding); unit ``u`` of ``n_units`` goes to channel ``u * channels // n_units``, which maps
neighbouring units to the same channel and, when ``channels`` divides ``n_units``, is plain
integer division by ``n_units / channels``.

The output splits are fixed here, once: a ``test`` (and ``val``) source converted with the same
settings, or a seeded ``test_fraction`` of the training samples held out into the file, so every
stage and run scores the same test samples (see :mod:`neurofptt.tasks.files`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofptt.errors import ConfigError, ShapeError, ToolMissingError
from neurofptt.tasks.base import validation_indices
from neurofptt.tasks.files import (
    META_PREFIX,
    SpikeData,
    Split,
    data_info,
    read_data_file,
    spike_data,
    unique_events,
    write_data_file,
)

#: a spike within this fraction of a step before a bin boundary counts in the next bin
BIN_TOLERANCE = 1e-6
#: the units of the cochlea model behind SHD and SSC
SHD_UNITS = 700
FORMATS = ("auto", "shd", "csv", "events")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class EventList:
    """One split of a source before cutting and pooling: ``events`` are ``(sample, step, unit)``
    int64 rows (steps not yet cut), ``y`` the targets, ``n_units`` the source's unit count and
    ``n_steps`` its step count where the source has one (an ``.npz`` file)."""

    events: np.ndarray
    y: np.ndarray
    n_units: int
    n_steps: int | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


def time_steps(times: np.ndarray, dt: float) -> np.ndarray:
    """The step of each spike time (seconds) at ``dt`` seconds per step (see the module doc)."""
    return np.floor(np.asarray(times, dtype=np.float64) / dt + BIN_TOLERANCE).astype(np.int64)


def pool_channel(units: np.ndarray, n_units: int, channels: int) -> np.ndarray:
    """The channel each of ``n_units`` units pools into when they become ``channels``."""
    return np.asarray(units, dtype=np.int64) * channels // n_units


def pool_spikes(x: np.ndarray, *, bin_factor: int = 1, channels: int | None = None) -> np.ndarray:
    """Dense ``(N, T, C)`` spikes pooled to ``(N, ceil(T / bin_factor), channels)`` bool: each
    output bin is the OR of its ``bin_factor`` steps and of the units that pool into its channel
    (:func:`pool_channel`), so the number of spikes never grows."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ShapeError(f"pool_spikes takes (samples, steps, channels) spikes, got {x.shape}")
    n, steps, units = x.shape
    channels = _check_pooling(bin_factor, channels, units)
    out = np.zeros((n, math.ceil(steps / bin_factor), channels), dtype=bool)
    ev = np.argwhere(x != 0)
    out[ev[:, 0], ev[:, 1] // bin_factor, pool_channel(ev[:, 2], units, channels)] = True
    return out


def _check_pooling(bin_factor: int, channels: int | None, n_units: int) -> int:
    if not isinstance(bin_factor, int) or bin_factor < 1:
        raise ConfigError(f"bin_factor must be a whole number >= 1, got {bin_factor!r}")
    if channels is None:
        return n_units
    if not isinstance(channels, int) or not 1 <= channels <= n_units:
        raise ConfigError(
            f"channels = {channels!r} must be a whole number from 1 to the source's {n_units} "
            "units (pooling only merges units)"
        )
    return channels


def _check_dt(dt: float | None, needed: bool, fmt: str) -> None:
    if dt is None:
        if needed:
            raise ConfigError(f"the {fmt} format has spike times in seconds; pass dt (s per step)")
        return
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds per step, got {dt!r}")


def _exists(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such file" if not p.exists() else f"{path} is not a file")
    return p


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- readers ----------------------------------------------------------------------------------
def read_shd(path: str | Path, *, dt: float, n_units: int = SHD_UNITS) -> EventList:
    """The spikes and labels of an SHD/SSC-layout HDF5 file, binned at ``dt`` seconds."""
    _check_dt(dt, True, "shd")
    p = _exists(path)
    try:
        import h5py
    except ImportError as exc:  # optional dependency: only this converter needs it
        raise ToolMissingError(
            "reading HDF5 files needs h5py; install it with pip install 'neurofptt[data]'"
        ) from exc
    layout = "the shd format reads spikes/times, spikes/units and labels (the SHD/SSC layout)"
    try:
        fh = h5py.File(p, "r")
    except OSError as exc:
        raise ConfigError(f"{path}: not an HDF5 file ({_reason(exc)}); {layout}") from exc
    with fh:
        arrays = {}
        for key in ("spikes/times", "spikes/units", "labels"):
            try:
                node = fh[key]
            except (KeyError, TypeError) as exc:
                raise ConfigError(f"{path}: no dataset {key!r}; {layout}") from exc
            if not isinstance(node, h5py.Dataset):
                raise ConfigError(f"{path}: {key!r} is not a dataset; {layout}")
            arrays[key] = node[()]
    times = [np.asarray(t, dtype=np.float64).ravel() for t in arrays["spikes/times"]]
    units = [np.asarray(u).ravel() for u in arrays["spikes/units"]]
    labels = np.asarray(arrays["labels"])
    if labels.ndim != 1:
        raise ShapeError(f"{path}: labels has shape {labels.shape}; it needs one label per sample")
    if not len(times) == len(units) == len(labels):
        raise ShapeError(
            f"{path}: spikes/times holds {len(times)} samples, spikes/units {len(units)} and "
            f"labels {labels.shape}; each needs one entry per sample"
        )
    lengths = np.array([len(t) for t in times], dtype=np.int64)
    for i, (t, u) in enumerate(zip(times, units, strict=True)):
        if len(t) != len(u):
            raise ShapeError(
                f"{path}: sample {i} has {len(t)} spike times but {len(u)} units; each spike "
                "needs its time and its unit"
            )
    t = np.concatenate(times) if times else np.zeros(0)
    u = np.concatenate(units) if units else np.zeros(0)
    if not np.isfinite(t).all() or (t < 0).any():
        bad = int(np.flatnonzero(~np.isfinite(t) | (t < 0))[0])
        sample = int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
        raise ShapeError(
            f"{path}: spikes/times of sample {sample} holds {t[bad]}; times are seconds >= 0"
        )
    u = _whole(u, f"{path}: spikes/units", "unit indices are whole numbers")
    _in_range(u, n_units, f"{path}: spikes/units", "unit", f"n_units = {n_units}")
    y = _whole(labels, f"{path}: labels", "labels are class indices 0, 1, ...")
    _in_range(y, None, f"{path}: labels", "label", "")
    sample = np.repeat(np.arange(len(times), dtype=np.int64), lengths)
    events = np.stack([sample, time_steps(t, dt), u], axis=1)
    return EventList(events=events, y=y, n_units=n_units)


def _whole(values: np.ndarray, what: str, rule: str) -> np.ndarray:
    """``values`` as int64, refusing non-finite or fractional entries."""
    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.integer):
        return v.astype(np.int64)
    if not np.issubdtype(v.dtype, np.number):
        raise ShapeError(f"{what} has dtype {v.dtype}; {rule}")
    bad = ~np.isfinite(v) | (v != np.round(v))
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ShapeError(f"{what} holds {v.ravel()[i]} (entry {i}); {rule}")
    return v.astype(np.int64)


def _in_range(values: np.ndarray, limit: int | None, what: str, name: str, bound: str) -> None:
    flat = values.ravel()
    negative = np.flatnonzero(flat < 0)
    if len(negative):
        i = int(negative[0])
        raise ShapeError(f"{what} holds {name} {int(flat[i])} (entry {i}); it must be >= 0")
    if limit is not None:
        beyond = np.flatnonzero(flat >= limit)
        if len(beyond):
            i = int(beyond[0])
            raise ShapeError(
                f"{what} holds {name} {int(flat[i])} (entry {i}), beyond {bound}; pass the "
                f"source's unit count as n_units"
            )


def read_csv(
    path: str | Path,
    *,
    dt: float | None = None,
    labels: str | Path | None = None,
    n_units: int | None = None,
) -> EventList:
    """The events of a text event list (see the module doc); ``dt`` reads ``time`` as seconds,
    ``labels`` names a file of one label per sample (line ``i``: sample ``i``)."""
    _check_dt(dt, False, "csv")
    p = _exists(path)
    header_row, header = _header(p)
    delimiter = "," if "," in header else ("\t" if "\t" in header else None)
    names = [c.strip().lower() for c in header.split(delimiter)]
    missing = [c for c in ("sample", "time", "channel") if c not in names]
    if missing:
        raise ConfigError(
            f"{path}: the first line {header.strip()!r} does not name the column(s) {missing}; "
            "an event list starts with a header such as 'sample,time,channel,label'"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty list warns; it is refused below
            table = np.loadtxt(
                p, delimiter=delimiter, skiprows=header_row + 1, comments="#", ndmin=2
            )
    except ValueError as exc:
        raise ShapeError(
            f"{path}: {_reason(exc)}; every row after the header holds numbers for {names}"
        ) from exc
    if table.size == 0:
        table = np.zeros((0, len(names)))
    col = {name: table[:, i] for i, name in enumerate(names)}
    sample = _whole(col["sample"], f"{path}: column 'sample'", "samples are whole numbers")
    channel = _whole(col["channel"], f"{path}: column 'channel'", "channels are whole numbers")
    if dt is None:
        steps = _whole(
            col["time"],
            f"{path}: column 'time'",
            "times without dt are whole steps; pass dt (seconds per step) if they are seconds",
        )
    else:
        times = col["time"]
        if not np.isfinite(times).all():
            i = int(np.flatnonzero(~np.isfinite(times))[0])
            raise ShapeError(f"{path}: column 'time' holds {times[i]} (row {i})")
        steps = time_steps(times, dt)
    for name, values in (("sample", sample), ("time", steps), ("channel", channel)):
        _in_range(values, None, f"{path}: column {name!r}", name, "")
    if n_units is None:
        n_units = int(channel.max()) + 1 if len(channel) else 1
    _in_range(channel, n_units, f"{path}: column 'channel'", "channel", f"n_units = {n_units}")
    y = _csv_labels(path, col, sample, labels)
    events = np.stack([sample, steps, channel], axis=1)
    return EventList(events=events, y=y, n_units=n_units)


def _header(p: Path) -> tuple[int, str]:
    with open(p, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            if line.strip() and not line.lstrip().startswith("#"):
                return i, line.rstrip("\r\n")
    raise ShapeError(f"{p}: empty event list; it needs a header and one row per spike")


def _csv_labels(
    path: str | Path,
    col: Mapping[str, np.ndarray],
    sample: np.ndarray,
    labels: str | Path | None,
) -> np.ndarray:
    if labels is not None and "label" in col:
        raise ConfigError(
            f"{path}: has a 'label' column and a labels file was given too; use one of them"
        )
    if labels is not None:
        lp = _exists(labels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = np.loadtxt(lp, comments="#", ndmin=1)
        except ValueError as exc:
            raise ShapeError(f"{labels}: {_reason(exc)}; it holds one label per line") from exc
        if raw.ndim != 1:
            raise ShapeError(f"{labels}: holds {raw.shape[1]} columns; give one label per line")
        y = _whole(raw, f"{labels}", "labels are class indices 0, 1, ...")
        _in_range(y, None, f"{labels}", "label", "")
        beyond = np.flatnonzero(sample >= len(y))
        if len(beyond):
            raise ShapeError(
                f"{path}: row {int(beyond[0])} has sample {int(sample[beyond[0]])} but {labels} "
                f"labels only {len(y)} samples; give every sample a label"
            )
        return y
    if "label" not in col:
        raise ConfigError(
            f"{path}: no 'label' column; add one, or give a labels file with one label per sample"
        )
    label = _whole(col["label"], f"{path}: column 'label'", "labels are class indices 0, 1, ...")
    _in_range(label, None, f"{path}: column 'label'", "label", "")
    n = int(sample.max()) + 1 if len(sample) else 0
    y = np.full(n, -1, dtype=np.int64)
    y[sample] = label
    clash = np.flatnonzero(y[sample] != label)
    if len(clash):
        s = int(sample[clash[0]])
        raise ShapeError(
            f"{path}: sample {s} has rows with labels {int(label[clash[0]])} and {int(y[s])}; a "
            "sample has one label"
        )
    silent = np.flatnonzero(y < 0)
    if len(silent):
        raise ShapeError(
            f"{path}: sample {int(silent[0])} has no row, hence no label; give the labels in a "
            "separate file (one per line) to keep samples without spikes"
        )
    return y


def read_npz_splits(path: str | Path) -> tuple[SpikeData, dict[str, EventList]]:
    """Our own data file as event lists per split, with the file itself for its metadata."""
    data = read_data_file(path)
    lists = {
        s: EventList(data.events(s), p.y, data.n_channels, data.n_steps)
        for s, p in data.splits.items()
    }
    return data, lists


def detect_format(path: str | Path) -> str:
    """``shd``, ``csv`` or ``events`` from the file's first bytes, else from its suffix."""
    p = _exists(path)
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head.startswith(HDF5_MAGIC) or p.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        return "shd"
    if head.startswith(b"PK") or p.suffix.lower() == ".npz":
        return "events"
    if p.suffix.lower() in (".csv", ".txt", ".tsv", ".dat"):
        return "csv"
    raise ConfigError(
        f"{path}: cannot tell its format from its contents or name; pass the format "
        f"(one of {FORMATS[1:]})"
    )


# -- conversion -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvertOptions:
    """How ``neurofptt data convert`` reads, cuts, pools and splits a recording (see
    :func:`convert_command` for each option)."""

    fmt: str = "auto"
    dt: float | None = None
    channels: int | None = None
    bin_factor: int = 1
    labels: str | Path | None = None
    n_steps: int | None = None
    max_time: float | None = None
    n_units: int | None = None
    test: str | Path | None = None
    test_labels: str | Path | None = None
    val: str | Path | None = None
    val_labels: str | Path | None = None
    test_fraction: float = 0.0
    seed: int = 0


def convert(src: str | Path, options: ConvertOptions | None = None, **changes: Any) -> SpikeData:
    """``src`` (and the optional ``test``/``val`` sources, read the same way) as checked
    :class:`SpikeData` in the event layout, with ``options`` (default :class:`ConvertOptions`)
    and any of its fields changed by keyword (``convert(src, dt=0.001)``)."""
    return _convert(src, dataclasses.replace(options or ConvertOptions(), **changes))[0]


def _convert(src: str | Path, o: ConvertOptions) -> tuple[SpikeData, dict]:
    fmt = o.fmt
    if fmt == "npz":
        fmt = "events"
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is not one of {FORMATS}")
    fmt = detect_format(src) if fmt == "auto" else fmt
    if not 0 <= o.test_fraction < 1:
        raise ConfigError(f"test_fraction = {o.test_fraction} must be in [0, 1) (0: none)")
    if o.test is not None and o.test_fraction > 0:
        raise ConfigError("give a test source or a test_fraction, not both")
    _check_pooling(o.bin_factor, 1, 1)
    meta: dict[str, np.ndarray] = {}
    n_classes = None
    if fmt == "events":
        if o.test is not None or o.val is not None:
            raise ConfigError(f"{src}: an .npz source carries its own splits; drop test and val")
        if (
            o.dt is not None
            or o.max_time is not None
            or o.n_units is not None
            or o.labels is not None
        ):
            raise ConfigError(
                f"{src}: an .npz source is already binned and labelled; dt, max_time, n_units "
                "and labels do not apply (use n_steps, bin_factor and channels)"
            )
        data, lists = read_npz_splits(src)
        meta = {k: v for k, v in data.meta.items()}
        n_classes = data.n_classes
        source_dt = meta.get(f"{META_PREFIX}dt")
    else:
        _check_dt(o.dt, fmt == "shd", fmt)

        def read(path: str | Path, labels_path: str | Path | None) -> EventList:
            if fmt == "shd":
                if labels_path is not None:
                    raise ConfigError(f"{path}: an HDF5 source has its labels; drop labels")
                return read_shd(
                    path, dt=o.dt, n_units=SHD_UNITS if o.n_units is None else o.n_units
                )
            return read_csv(path, dt=o.dt, labels=labels_path, n_units=o.n_units)

        lists = {"train": read(src, o.labels)}
        for split, path, lab in (("val", o.val, o.val_labels), ("test", o.test, o.test_labels)):
            if path is not None:
                lists[split] = read(path, lab)
        meta[f"{META_PREFIX}source"] = np.str_(Path(src).name)
        source_dt = None if o.dt is None else np.float64(o.dt)
    units = max(e.n_units for e in lists.values())  # csv: the widest split's channels
    channels = _check_pooling(o.bin_factor, o.channels, units)
    steps = _source_steps(lists, o.n_steps, o.max_time, o.dt, src)
    if o.test_fraction > 0:
        if "test" in lists:
            raise ConfigError(f"{src}: already has a test split; drop test_fraction")
        lists = _hold_out(lists, o.test_fraction, o.seed, src)
    out: dict[str, object] = {}
    stats = {"source_spikes": 0, "spikes_beyond_n_steps": 0}
    for split, el in lists.items():
        ev = el.events
        keep = ev[:, 1] < steps
        stats["source_spikes"] += len(ev)
        stats["spikes_beyond_n_steps"] += int((~keep).sum())
        ev = ev[keep]
        pooled = np.stack(
            [ev[:, 0], ev[:, 1] // o.bin_factor, pool_channel(ev[:, 2], units, channels)], axis=1
        )
        out[f"events_{split}"] = pooled
        out[f"y_{split}"] = _step_targets(el, steps, o.bin_factor, src, split)
    out_steps = math.ceil(steps / o.bin_factor)
    out.update(n_steps=np.int64(out_steps), n_channels=np.int64(channels))
    out["n_classes"] = None if n_classes is None else np.int64(n_classes)
    if source_dt is not None:
        meta[f"{META_PREFIX}dt"] = np.float64(float(source_dt) * o.bin_factor)
    out.update(meta)
    data = spike_data(out, str(src))
    # the checks passed on the raw rows; keep each spike once (the OR of the poolings)
    data = SpikeData(
        splits={
            s: Split(y=p.y, events=unique_events(p.events, out_steps, channels))
            for s, p in data.splits.items()
        },
        n_steps=data.n_steps,
        n_channels=data.n_channels,
        target=data.target,
        n_out=data.n_out,
        n_classes=data.n_classes,
        source=data.source,
        meta=data.meta,
    )
    spikes = sum(data.spike_count(s) for s in data.splits)
    stats["spikes"] = spikes
    stats["spikes_merged"] = stats["source_spikes"] - stats["spikes_beyond_n_steps"] - spikes
    record = {
        "source": str(src),
        "format": fmt,
        "dt": None if source_dt is None else float(source_dt) * o.bin_factor,
        "bin_factor": o.bin_factor,
        "source_units": units,
        "n_steps": data.n_steps,
        "n_channels": data.n_channels,
        "target": data.target,
        "n_out": data.n_out,
        "splits": {s: len(p) for s, p in data.splits.items()},
        **stats,
    }
    return data, record


def _source_steps(
    lists: Mapping[str, EventList],
    n_steps: int | None,
    max_time: float | None,
    dt: float | None,
    src: str | Path,
) -> int:
    """The steps kept before pooling: ``n_steps``, ``max_time / dt`` rounded up, the source's
    own step count, or else one past the last spike of any split (so all splits agree)."""
    if n_steps is not None and max_time is not None:
        raise ConfigError("give n_steps or max_time, not both")
    if max_time is not None:
        if dt is None:
            raise ConfigError("max_time (seconds) needs dt; or cut with n_steps")
        if not (isinstance(max_time, int | float) and math.isfinite(max_time) and max_time > 0):
            raise ConfigError(f"max_time must be a positive number of seconds, got {max_time!r}")
        return max(1, math.ceil(max_time / dt - BIN_TOLERANCE))
    if n_steps is not None:
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ConfigError(f"n_steps must be a whole number >= 1, got {n_steps!r}")
        return n_steps
    own = {e.n_steps for e in lists.values()} - {None}
    if own:
        return max(own)
    last = [int(e.events[:, 1].max()) for e in lists.values() if len(e.events)]
    if not last:
        raise ConfigError(f"{src}: holds no spike, so no length; pass n_steps")
    return max(last) + 1


def _step_targets(el: EventList, steps: int, bin_factor: int, src: str | Path, split: str):
    """The split's targets cut to ``steps``; per-step targets cannot be pooled over time."""
    y = el.y
    if y.ndim == 1:
        return y
    if bin_factor > 1:
        raise ConfigError(
            f"{src}: y_{split} has a target per step, which bin_factor {bin_factor} would have to "
            "merge; pool time only for sequence labels"
        )
    if steps > y.shape[1]:
        raise ConfigError(
            f"{src}: n_steps = {steps} is longer than its {y.shape[1]} per-step targets; "
            "per-step targets can be cut, not extended"
        )
    return y[:, :steps]


def _hold_out(
    lists: Mapping[str, EventList], fraction: float, seed: int, src: str | Path
) -> dict[str, EventList]:
    """``train`` split into train and test: the seeded permutation of the trainers'
    validation hold-out (:func:`~neurofptt.tasks.base.validation_indices`)."""
    train = lists["train"]
    n = len(train)
    if n - max(1, round(n * fraction)) < 1:
        raise ConfigError(f"{src}: test_fraction = {fraction} of {n} samples leaves none to train")
    keep, held = validation_indices(n, fraction, seed)
    return {**lists, "train": _take(train, keep), "test": _take(train, held)}


def _take(el: EventList, idx: np.ndarray) -> EventList:
    """The samples ``idx`` of ``el``, renumbered from 0 in that order."""
    new = np.full(len(el), -1, dtype=np.int64)
    new[idx] = np.arange(len(idx))
    ev = el.events[new[el.events[:, 0]] >= 0].copy()
    ev[:, 0] = new[ev[:, 0]]
    return EventList(events=ev, y=el.y[idx], n_units=el.n_units, n_steps=el.n_steps)


# -- the command line's functions -------------------------------------------------------------
def convert_command(
    src: str | Path,
    out: str | Path,
    options: ConvertOptions | None = None,
    *,
    events: bool = False,
    **changes: Any,
) -> dict:
    """``neurofptt data convert``: convert ``src`` and write the data file ``out`` (``.npz``,
    dense, or with ``events`` the event layout); returns the record of what was done.

    The options are :class:`ConvertOptions` (``options``, any field changed by keyword).
    ``fmt`` is ``"auto"`` (from the file's first bytes or its suffix), ``"shd"``, ``"csv"`` or
    ``"events"`` (our ``.npz``); ``dt`` is seconds per step (needed for ``shd``; for ``csv`` it
    means the times are seconds); ``channels`` pools the ``n_units`` source units (SHD: 700; CSV:
    the largest channel + 1; ``.npz``: its ``n_channels``) to that many; ``bin_factor`` pools
    steps; ``n_steps`` or ``max_time`` (seconds) cut the recordings (default: up to the last
    spike); ``labels`` is a CSV source's labels file.  The test split comes from ``test`` (a
    second source, with ``test_labels`` for a CSV), from the source itself (an ``.npz`` that has
    one) or from a seeded ``test_fraction`` of the training samples; ``val`` adds a validation
    split the same way.  Without a test split nothing is written: a file the stages would refuse
    is no use.

    The record holds ``source``, ``format``, ``out``, ``layout``, ``dt`` (seconds per output
    step, or ``None``), ``bin_factor``, ``source_units``, ``n_steps``, ``n_channels``, ``target``,
    ``n_out``, ``splits`` (samples each), ``source_spikes`` (rows read), ``spikes_beyond_n_steps``
    (cut off), ``spikes_merged`` (fell into a bin that already had one) and ``spikes`` (written).
    """
    if Path(out).suffix.lower() != ".npz":
        raise ConfigError(f"output {out} must end in .npz (tasks and configs recognise data by it)")
    opts = dataclasses.replace(options or ConvertOptions(), **changes)
    fmt = detect_format(src) if opts.fmt == "auto" else opts.fmt
    if opts.test is None and opts.test_fraction == 0 and fmt in ("shd", "csv"):
        raise ConfigError(
            f"{src}: no test split; give a test source (--test FILE) or hold out a fraction of "
            "the training samples (--test-fraction F)"
        )
    data, record = _convert(src, opts)
    if "test" not in data.splits:
        raise ConfigError(
            f"{src}: no test split; give a test source (--test FILE) or hold out a fraction of "
            "the training samples (--test-fraction F)"
        )
    write_data_file(out, data, events=events)
    return {**record, "out": str(out), "layout": "events" if events else "dense"}


def info_command(path: str | Path) -> dict:
    """``neurofptt data info``: :func:`~neurofptt.tasks.files.data_info` of the file (print it
    with :func:`~neurofptt.tasks.files.format_info`)."""
    return data_info(path)
