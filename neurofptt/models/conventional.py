"""Conventional recurrent networks (tanh RNN, LSTM, GRU) in the cell protocol.

Each layer is the corresponding ``torch.nn`` cell (``RNNCell``, ``LSTMCell``, ``GRUCell``), so the
arithmetic is PyTorch's own; layers can be stacked, and a linear readout of the top layer's hidden
state gives the output at every step.  The state is the flat tuple of every layer's tensors
(``h`` for RNN/GRU, ``h, c`` for LSTM), bottom layer first.
"""

from __future__ import annotations

import torch
from torch import nn

from neurofptt.errors import ConfigError
from neurofptt.models.base import RecurrentModel, State

CELLS = {
    "rnn": lambda n_in, n_h: nn.RNNCell(n_in, n_h, nonlinearity="tanh"),
    "lstm": nn.LSTMCell,
    "gru": nn.GRUCell,
}


class GatedRNN(RecurrentModel):
    """``kind`` in ``{"rnn", "lstm", "gru"}``; ``n_hidden`` is an int or one int per layer."""

    def __init__(self, kind: str, n_in: int, n_hidden: int | list[int], n_out: int) -> None:
        super().__init__()
        if kind not in CELLS:
            raise ConfigError(f"unknown recurrent cell {kind!r}; choose one of {sorted(CELLS)}")
        sizes = [n_hidden] if isinstance(n_hidden, int) else list(n_hidden)
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"hidden sizes must be positive, got {n_hidden}")
        self.kind, self.n_in, self.n_out, self.sizes = kind, n_in, n_out, sizes
        fan_in = [n_in, *sizes[:-1]]
        self.cells = nn.ModuleList(CELLS[kind](a, b) for a, b in zip(fan_in, sizes, strict=True))
        self.readout = nn.Linear(sizes[-1], n_out)

    @property
    def per_layer(self) -> int:
        return 2 if self.kind == "lstm" else 1

    def initial_state(self, batch: int) -> State:
        w = self.readout.weight
        return tuple(
            torch.zeros(batch, size, dtype=w.dtype, device=w.device)
            for size in self.sizes
            for _ in range(self.per_layer)
        )

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: list[torch.Tensor] = []
        h = x
        k = self.per_layer
        for i, cell in enumerate(self.cells):
            layer_state = state[i * k : (i + 1) * k]
            if self.kind == "lstm":
                h, c = cell(h, (layer_state[0], layer_state[1]))
                new_state += [h, c]
            else:
                h = cell(h, layer_state[0])
                new_state.append(h)
        return self.readout(h), tuple(new_state)
