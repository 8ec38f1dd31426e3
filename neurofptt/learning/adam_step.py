"""Torch's Adam/AdamW update over flat buffers, by its fused kernel.

Per-step FPTT calls the optimizer once per time step, so what one call costs besides the
arithmetic is paid ``T`` times per sequence.  ``torch.optim.Adam.step`` (``foreach`` or not)
regroups the parameters, checks its state and options, runs eight kernels per parameter, each a
pass over the parameter's memory, and allocates the denominator ``sqrt(v)`` afresh at every
call; on the CPU a fresh weight-sized allocation (1 MiB at 512 neurons) comes back as new pages
and costs about as much as the arithmetic.

:class:`AdamStep` runs torch's own fused Adam/AdamW kernel (``torch._fused_adam_`` /
``torch._fused_adamw_``, what ``Adam(fused=True)`` runs), once per flat buffer
(:mod:`~neurofptt.learning.flat`): the moments ``exp_avg`` and ``exp_avg_sq`` in the optimizer's
state become views into one buffer per dtype and device, as the parameters and their gradients
are, and the kernel makes one pass over all of them.  On the 2-core machine of the performance
page it takes a quarter (128 neurons) to a third (512) of the time of the same eight kernels run
once each over the flat buffers.  It computes the same update as the optimizer's ``foreach``
kernels; fusing the operations rounds some of them differently, by about one unit in the last
place per step (measured: 3e-17 relative in float64, 3e-8 in float32, after 20 steps), which
``tests/test_fptt_exact.py`` bounds.

The learning rate, betas, eps and weight decay are read from the optimizer's param group and the
step counts and moments from its state at every call, so learning-rate schedules, ``state_dict``
and checkpoints behave as with ``optimizer.step()``; a state loaded from a checkpoint is copied
into the buffers at the next step.  Where it does not cover the optimizer's settings (AMSGrad,
maximize, capturable, differentiable, tensor hyper-parameters, step hooks, a parameter without
state yet, parameters at different step counts) :meth:`AdamStep.covers` says so and the caller
runs ``optimizer.step()`` instead.
"""

from __future__ import annotations

import torch
from torch.optim import optimizer as torch_optimizer

from neurofptt.learning.flat import Flat

#: options of an Adam param group under which its step is the plain fused kernel
_PLAIN = {"amsgrad": False, "maximize": False, "capturable": False, "differentiable": False}
_MOMENTS = ("exp_avg", "exp_avg_sq")
#: devices with torch's fused Adam kernel
_FUSED_DEVICES = ("cpu", "cuda")
#: the step-count increment: adding a tensor costs less than adding a number, as torch's own
#: optimizers do for CPU step counts
_ONE = torch.tensor(1.0)


class AdamStep:
    """The Adam/AdamW update of an optimizer whose single param group holds ``params``, on the
    flat buffers of ``groups`` (lists of indices into ``params``, one per buffer)."""

    def __init__(
        self,
        optimizer: torch.optim.Adam,
        params: list[torch.nn.Parameter],
        groups: list[list[int]],
    ) -> None:
        self.optimizer = optimizer
        self.params = params
        self.groups = groups
        self.moments = {
            key: [Flat([params[i] for i in members]) for members in groups] for key in _MOMENTS
        }
        # (parameter, state key, its view) for every moment
        self._links = [
            (params[i], key, view)
            for key, flats in self.moments.items()
            for flat, members in zip(flats, groups, strict=True)
            for i, view in zip(members, flat.views, strict=True)
        ]

    @classmethod
    def for_optimizer(
        cls,
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        groups: list[list[int]],
    ) -> AdamStep | None:
        """The step for ``optimizer`` if it is Adam or AdamW with one param group whose
        trainable parameters are ``params``, on a device with the fused kernel; ``None`` for
        any other optimizer."""
        if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
            return None
        if any(p.device.type not in _FUSED_DEVICES for p in params):
            return None
        if len(optimizer.param_groups) != 1:
            return None
        grouped = [p for p in optimizer.param_groups[0]["params"] if p.requires_grad]
        if sorted(map(id, grouped)) != sorted(map(id, params)):
            return None
        return cls(optimizer, params, groups)

    def covers(self) -> bool:
        """Whether :meth:`step` now equals ``optimizer.step()`` (checked at every call: a group's
        options and the state can change between steps)."""
        # read at every call: loading a state dict replaces the group and the state
        group, state = self.optimizer.param_groups[0], self.optimizer.state
        if any(group[key] != value for key, value in _PLAIN.items()):
            return False
        if any(torch.is_tensor(group[key]) for key in ("lr", "weight_decay", "eps")):
            return False
        if any(torch.is_tensor(beta) for beta in group["betas"]):
            return False
        hooks = (  # the optimizer's step would run them; the kernel call does not
            self.optimizer._optimizer_step_pre_hooks,
            self.optimizer._optimizer_step_post_hooks,
            torch_optimizer._global_optimizer_pre_hooks,
            torch_optimizer._global_optimizer_post_hooks,
        )
        if any(hooks) or not all(p in state and not torch.is_complex(p) for p in self.params):
            return False
        return len({float(state[p]["step"]) for p in self.params}) == 1

    def _adopt_moments(self) -> None:
        """Make the optimizer's moments our views, copying in any that are other tensors (a
        freshly initialized or loaded state)."""
        state = self.optimizer.state
        for param, key, view in self._links:
            entry = state[param]
            if entry[key] is not view:
                view.copy_(entry[key])
                entry[key] = view

    @torch.no_grad()
    def step(self, weights: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """One update of the flat ``weights`` (one buffer per group) with the flat ``grads``
        (left unchanged), by torch's fused kernel (see the module docstring)."""
        self._adopt_moments()
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        state = self.optimizer.state
        for members, param, grad, exp_avg, exp_avg_sq in zip(
            self.groups, weights, grads, *self.moments.values(), strict=True
        ):
            steps = [state[self.params[i]]["step"] for i in members]
            # the kernel reads the first's count; counts on a device take a plain number
            if steps[0].device.type == "cpu":
                torch._foreach_add_(steps, _ONE, alpha=1.0)
            else:
                torch._foreach_add_(steps, 1.0)
            kernel(
                [param],
                [grad],
                [exp_avg.buffer],
                [exp_avg_sq.buffer],
                [],
                steps[:1],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                amsgrad=False,
                maximize=False,
            )
