"""Data-parallel training across processes: ``torchrun --nproc-per-node=N -m neurofptt train``.

Every process (rank) builds the same model from the same seed, draws the same order of samples
and takes its share of every batch (:func:`shard`).  The rules' updates stay what they are on
one process over the whole batch, because each update's gradient is combined over the ranks
before anything uses it (:func:`combine_gradients`):

* a rule's loss is a mean over the units it scores (samples, or the labelled (sample, step)
  pairs of per-step labels), so its gradient on a shard is ``g_r = S_r / c_r`` with ``S_r`` the
  shard's summed gradient and ``c_r`` its units; the whole batch's gradient is
  ``sum_r S_r / sum_r c_r = sum_r c_r g_r / sum_r c_r``, one all-reduce of ``c_r g_r`` and
  ``c_r`` together;
* an update happens where the whole batch has something to score (``sum_r scored_r > 0``), so
  every rank takes the same decision even when its own shard has no target at that step.

The gradient is thus identical on every rank, and so are the optimizer's state, FPTT's running
mean and dual variable, and the weights: no broadcast is ever needed.  Hand-made gradients
(e-prop) are combined the same way as autograd's, which is why the rules call this module
instead of wrapping the model in ``DistributedDataParallel`` (whose hooks fire only through the
wrapper's ``forward`` and ``backward``).  The backend is gloo on CPU and NCCL on CUDA.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) nothing here communicates and
every function is the identity of one process.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist

from neurofptt.errors import ConfigError, VerificationError

#: the rules whose updates :func:`combine_gradients` makes identical to one process's
PARALLEL_RULES = ("bptt", "eprop", "fptt")


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank: the group's, or ``torchrun``'s ``RANK`` outside the group (before
    joining it, and after leaving it); 0 without ``torchrun``."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes the files (checkpoints, logs, records): rank 0."""
    return rank() == 0


def launched() -> bool:
    """Whether ``torchrun`` started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> torch.device:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``MASTER_ADDR``...), with NCCL for CUDA and gloo otherwise, and return the device
    this rank trains on: ``device``, or for CUDA the machine's ``LOCAL_RANK``-th GPU.  Without
    ``torchrun`` it joins nothing and returns ``device``.

    ``torch._dynamo`` is imported before the group is made.  Imported after it (as the first
    optimizer does), it keeps the group alive past :func:`stop`, and with it gloo's threads; a
    rank that then exits while another still runs is aborted by the C++ runtime ("terminate
    called without an active exception", signal 6).  A rank that a signal ends nonetheless
    prints the Python stack of every thread first (:mod:`faulthandler`): ``torchrun`` reports
    only the signal, and the other ranks only that they were stopped."""
    if not launched():
        return device
    faulthandler.enable()
    importlib.import_module("torch._dynamo")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_rule(rule: str) -> None:
    """Refuse a rule whose updates this module does not make identical across ranks."""
    if world_size() > 1 and rule not in PARALLEL_RULES:
        raise ConfigError(
            f"data-parallel training (torchrun) supports the rules {PARALLEL_RULES}; "
            f"{rule!r} runs in one process"
        )


def shard(indices: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """This rank's share of a batch's sample indices, every ``world_size``-th from its rank,
    and whether what it scores counts in sums over the ranks.  A batch with fewer samples than
    ranks goes whole to every rank (a rank cannot step on nothing while the others step): they
    compute the same update, and only rank 0's figures count."""
    size = world_size()
    if len(indices) < size:
        return indices, is_main()
    return indices[rank() :: size], True


#: one buffer per (dtype, device, size) that :func:`combine` sends: ``[units, scored, grads...]``
_SEND_BUFFERS: dict[tuple[torch.dtype, torch.device, int], torch.Tensor] = {}


def combine(grads: list[torch.Tensor], units: float, scored: float) -> bool:
    """Turn ``grads`` (this shard's mean over its ``units``), in place, into the whole batch's
    mean, and return whether the whole batch scored anything (``scored`` summed over the ranks,
    > 0); the caller updates only then.  One process: nothing to combine, ``scored > 0``.

    Per-step rules combine at every time step, so the buffer the ranks sum is kept between
    calls (a fresh one is new pages each time) and each gradient is scaled into it and back
    out of it in one pass."""
    if world_size() == 1:
        return scored > 0
    first = grads[0]
    size = 2 + sum(g.numel() for g in grads)
    key = (first.dtype, first.device, size)
    buffer = _SEND_BUFFERS.get(key)
    if buffer is None:
        buffer = _SEND_BUFFERS[key] = torch.empty(size, dtype=first.dtype, device=first.device)
    buffer[0], buffer[1] = units, scored
    offset = 2
    for g in grads:
        torch.mul(g.reshape(-1), units, out=buffer[offset : offset + g.numel()])
        offset += g.numel()
    dist.all_reduce(buffer)
    total_units, total_scored = float(buffer[0]), float(buffer[1])
    if total_scored <= 0:
        return False
    offset = 2
    for g in grads:
        torch.div(buffer[offset : offset + g.numel()].view_as(g), total_units, out=g)
        offset += g.numel()
    return True


def combine_gradients(params: Iterable[torch.nn.Parameter], units: float, scored: float) -> bool:
    """:func:`combine` of the parameters' ``.grad`` (a missing one is a zero gradient)."""
    params = list(params)
    if world_size() > 1:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
    return combine([p.grad for p in params], units, scored)


def sum_in_place(*tensors: torch.Tensor) -> None:
    """Each tensor summed over the ranks, in place (statistics gathered on each shard)."""
    for t in tensors if world_size() > 1 else ():
        dist.all_reduce(t)


def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """``values`` summed over the ranks (losses, correct counts, scored units), float64."""
    if world_size() == 1:
        return tuple(float(v) for v in values)
    buffer = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(buffer)
    return tuple(float(v) for v in buffer)


def check_in_step(named: dict[str, torch.Tensor]) -> None:
    """Raise unless every rank holds exactly rank 0's values of ``named`` (the weights, FPTT's
    ``W_bar`` and ``lam``/``g``, the class prior): the ranks apply the same combined updates
    to the same start, so any difference is a fault that would otherwise go unseen until the
    checkpoint (written by rank 0 alone) is used."""
    if world_size() == 1:
        return
    for name, value in sorted(named.items()):
        reference = value.detach().clone()
        dist.broadcast(reference, src=0)
        if not torch.equal(reference, value.detach()):
            raise VerificationError(
                f"data-parallel rank {rank()} holds another {name} than rank 0; the ranks must "
                "apply identical updates"
            )


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
