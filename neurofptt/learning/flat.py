"""Several tensors as views into one contiguous buffer, so that one kernel covers all of them.

An elementwise update of every parameter costs one kernel call per parameter; with the
parameters, and every per-parameter tensor an update reads, laid out one after the other in one
buffer each, it costs one call in all.  torch's elementwise kernels compute every element alike
wherever it lies, so the numbers are those of the per-parameter calls, bit for bit
(``tests/test_fptt_exact.py``).  (Not so a kernel that rounds its vectorized body and its
scalar tail differently, such as torch's fused Adam: there the layout decides which elements
fall in the tail, see :mod:`~neurofptt.learning.adam_step`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Flat:
    """A contiguous buffer and, in order, a view of it shaped like each of ``like``.

    ``values`` (default zeros) are copied in, one tensor per view.
    """

    def __init__(
        self, like: Sequence[torch.Tensor], values: Sequence[torch.Tensor] | None = None
    ) -> None:
        sizes = [t.numel() for t in like]
        first = like[0]
        self.buffer = torch.zeros(sum(sizes), dtype=first.dtype, device=first.device)
        self.views = [
            chunk.view(t.shape) for chunk, t in zip(self.buffer.split(sizes), like, strict=True)
        ]
        if values is not None:
            for view, value in zip(self.views, values, strict=True):
                view.copy_(value)


def group_by_kind(tensors: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by dtype and device (one flat buffer each), in order."""
    groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    return list(groups.values())
