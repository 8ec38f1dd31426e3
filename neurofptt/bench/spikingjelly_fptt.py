"""SpikingJelly's FPTT (``fptt_online_training``) on a comparable network, for the benchmark only.

SpikingJelly is not a dependency of neurofptt.  Where it is installed
(``pip install --no-deps spikingjelly loguru tqdm tensorboard``), ``neurofptt bench rules`` can
add ``spikingjelly-fptt`` so both FPTT implementations are timed in the same run.

The network has the sizes and products of ours: input and recurrent ``Linear`` maps (no bias)
into SpikingJelly's ``LIFNode``, the previous spikes kept as a SpikingJelly memory, and a linear
readout; single-step mode, cross-entropy at every step.  ``LIFNode`` returns its spikes as a view,
which ``fptt_online_training``'s in-place detach rejects, so the stored spikes are a copy (this is
also why SpikingJelly's ``LinearRecurrentContainer`` cannot be used).  SpikingJelly's FPTT does
two forward and two backward passes per step, the second to evaluate the gradient at the updated
weights.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from neurofptt.errors import ToolMissingError


def _import():
    try:
        from spikingjelly.activation_based import base, functional, neuron
        from spikingjelly.activation_based.learning import online_learning
    except ImportError as exc:
        raise ToolMissingError(
            "SpikingJelly is not installed (it is only needed for the 'spikingjelly-fptt' "
            "benchmark); install it with `pip install --no-deps spikingjelly loguru tqdm "
            f"tensorboard`: {exc}"
        ) from exc
    return base, functional, neuron, online_learning


def _recurrent_lif(n_in: int, hidden: int, n_out: int) -> nn.Module:
    base, _, neuron, _ = _import()

    class RecurrentLIF(base.MemoryModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc_in = nn.Linear(n_in, hidden, bias=False)
            self.fc_rec = nn.Linear(hidden, hidden, bias=False)
            self.node = neuron.LIFNode()
            self.readout = nn.Linear(hidden, n_out, bias=False)
            self.register_memory("spikes", None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            current = self.fc_in(x)
            if self.spikes is not None:
                current = current + self.fc_rec(self.spikes)
            spikes = self.node(current)
            self.spikes = spikes.clone()  # a view cannot be detached in place
            return self.readout(spikes)

    return RecurrentLIF()


def train_one_batch(x_seq: torch.Tensor, y: torch.Tensor, hidden: int, n_out: int) -> float:
    """Train one batch ``x_seq`` (T, B, n_in: SpikingJelly puts time first) with SpikingJelly's
    FPTT; returns the seconds taken."""
    _, functional, _, online_learning = _import()
    model = _recurrent_lif(x_seq.shape[2], hidden, n_out)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    w_ra = online_learning.fptt_online_training_init_w_ra(optimizer)
    target_seq = y.expand(x_seq.shape[0], -1)
    loss = nn.CrossEntropyLoss()
    functional.reset_net(model)
    start = time.perf_counter()
    online_learning.fptt_online_training(model, optimizer, x_seq, target_seq, loss, 0.5, w_ra)
    return time.perf_counter() - start
