"""The cell protocol shared by every model and every learning rule.

A model is stepped one time step at a time with an explicit state (a tuple of tensors).  Rules
that need the whole sequence (BPTT) loop over ``step``; online rules (FPTT) detach the state
between updates with :func:`detach_state`.  Any ``nn.Module`` with these two methods can be
trained by any rule.
"""

from __future__ import annotations

import torch
from torch import nn

from neurofptt.errors import ShapeError

State = tuple[torch.Tensor, ...]


def detach_state(state: State) -> State:
    """Cut the autograd graph at a state: the next update sees it as a constant."""
    return tuple(s.detach() for s in state)


class RecurrentModel(nn.Module):
    """Base class: subclasses implement :meth:`initial_state` and :meth:`step`."""

    n_in: int
    n_out: int

    def initial_state(self, batch: int) -> State:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Run a ``(B, T, n_in)`` sequence; returns the ``(B, T, n_out)`` outputs and the state."""
        check_sequence(x, self.n_in)
        if state is None:
            state = self.initial_state(x.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            outputs.append(y)
        return torch.stack(outputs, dim=1), state


def check_sequence(x: torch.Tensor, n_in: int) -> None:
    """Raise a clear :class:`ShapeError` for input that is not a finite ``(B, T, n_in)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"expected a torch.Tensor input, got {type(x).__name__}")
    if x.ndim != 3 or x.shape[2] != n_in:
        raise ShapeError(f"input has shape {tuple(x.shape)}; expected (batch, steps, n_in={n_in})")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ShapeError(f"input has shape {tuple(x.shape)}; batch and steps must be non-empty")
    # a reduction, not an elementwise mask: validation must not cost memory proportional to T
    if x.is_floating_point() and not all(torch.isfinite(v) for v in torch.aminmax(x)):
        raise ShapeError("input contains NaN or infinite values; clean or re-encode the data")
