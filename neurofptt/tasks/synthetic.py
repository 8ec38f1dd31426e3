"""Small synthetic memory tasks, generated on the fly (used to check that rules learn)."""

from __future__ import annotations

import torch


def which_fired_first(
    n: int, generator: torch.Generator, steps: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two input channels each fire once; the label is the channel that fired first.

    The first spike comes at step 4-6 and the second 1-3 steps later; the answer is read at the
    last step (``steps >= 10``), so the network must keep the order for up to 5 steps.  Chance
    cross-entropy is ln 2.  Returns ``x`` of shape ``(n, steps, 2)`` and labels ``(n,)``.
    """
    if steps < 10:
        raise ValueError(f"which_fired_first needs at least 10 steps, got {steps}")
    x = torch.zeros(n, steps, 2)
    y = torch.randint(0, 2, (n,), generator=generator)
    first = torch.randint(4, 7, (n,), generator=generator)
    second = first + torch.randint(1, 4, (n,), generator=generator)
    rows = torch.arange(n)
    x[rows, first, y] = 1.0
    x[rows, second, 1 - y] = 1.0
    return x, y
