"""Comparison of RTL outputs with the golden model and the mismatch report.

Used both inside the cocotb testbench (to fail the simulation) and by :func:`run_rtl` (to hand the
mismatches back as data), so the two always agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_RECORDS", "Mismatch", "compare_traces", "format_report"]

#: at most this many mismatch records are kept; the total count is always exact
MAX_RECORDS = 1000


@dataclass(frozen=True)
class Mismatch:
    """One disagreement between the RTL and the golden model.

    ``signal`` is ``"spike"`` (recurrent neuron ``index``), ``"readout"`` (readout ``index``),
    ``"protocol"`` (a stream-protocol violation, explained in ``detail``; ``index`` is the
    offending payload index or -1), or, for a learning core's weight dump after an update, the
    matrix (``"w_in"``, ``"w_rec"``, ``"w_out"``, ``"wbar_in"``, ...) with ``index`` the
    postsynaptic and ``pre`` the presynaptic neuron and ``detail`` saying when it was read
    (``"after the update"``, or ``"after the load"`` with ``step = -1``: a load through
    ``i_weights`` before the sample).  Spikes are 0/1.
    """

    sample: int
    step: int
    signal: str
    index: int
    expected: int
    actual: int
    detail: str = ""
    pre: int = -1

    def __str__(self) -> str:
        if self.signal == "protocol":
            return f"sample {self.sample} step {self.step}: protocol error: {self.detail}"
        if self.pre >= 0:
            where = (
                f"sample {self.sample} step {self.step}"
                if self.step >= 0
                else f"before sample {self.sample}"
            )
            return (
                f"{where} {self.signal}[{self.index}, {self.pre}] "
                f"{self.detail or 'after the update'}: expected {self.expected}, "
                f"actual {self.actual}"
            )
        what = f"neuron {self.index} spike" if self.signal == "spike" else f"readout {self.index}"
        return (
            f"sample {self.sample} step {self.step} {what}: "
            f"expected {self.expected}, actual {self.actual}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_traces(
    expected_spikes: np.ndarray,
    expected_readout: np.ndarray,
    actual_spikes: np.ndarray,
    actual_readout: np.ndarray,
    limit: int = MAX_RECORDS,
) -> tuple[list[Mismatch], int]:
    """Compare every spike ``(B, T, n_rec)`` and readout ``(B, T, n_out)`` value.

    Returns the first ``limit`` mismatches in (sample, step, spikes before readout, index) order
    and the total number of mismatching values.
    """
    es, as_ = np.asarray(expected_spikes, bool), np.asarray(actual_spikes, bool)
    eo, ao = np.asarray(expected_readout, np.int64), np.asarray(actual_readout, np.int64)
    if es.shape != as_.shape or eo.shape != ao.shape:
        raise ValueError(
            f"trace shapes differ: spikes {es.shape} vs {as_.shape}, "
            f"readout {eo.shape} vs {ao.shape}"
        )
    spike_bad = np.argwhere(es != as_)
    readout_bad = np.argwhere(eo != ao)
    total = len(spike_bad) + len(readout_bad)
    keyed = [(int(b), int(t), 0, int(i)) for b, t, i in spike_bad[:limit]]
    keyed += [(int(b), int(t), 1, int(k)) for b, t, k in readout_bad[:limit]]
    keyed.sort()
    records = []
    for b, t, kind, i in keyed[:limit]:
        if kind == 0:
            records.append(Mismatch(b, t, "spike", i, int(es[b, t, i]), int(as_[b, t, i])))
        else:
            records.append(Mismatch(b, t, "readout", i, int(eo[b, t, i]), int(ao[b, t, i])))
    return records, total


def format_report(mismatches: list[Mismatch], total: int, limit: int = 20) -> str:
    """A readable report: the total count and the first ``limit`` mismatches, one per line."""
    if total == 0:
        return "RTL matches the golden model: 0 mismatches"
    lines = [f"RTL differs from the golden model: {total} mismatch(es)"]
    shown = mismatches[:limit]
    lines += [f"  {m}" for m in shown]
    if total > len(shown):
        lines.append(f"  ... and {total - len(shown)} more")
    return "\n".join(lines)
