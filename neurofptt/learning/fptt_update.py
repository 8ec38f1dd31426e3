"""FPTT's per-step parameter work, fused over flat buffers.

Each FPTT update adds ``grad R_t`` to the loss gradients, clips them, takes an optimizer step and
moves ``W_bar`` and ``lam`` (dual form) or ``g`` (slide form), see :mod:`neurofptt.learning.fptt`.
Written per parameter that is some sixty small kernel calls, several of which allocate a
weight-sized temporary; per-step FPTT pays them at every time step, and on the 128-neuron
network their dispatch costs more than their arithmetic.

:class:`FPTTUpdate` keeps every tensor the update reads (the parameters themselves, their
gradients, ``W_bar``, ``lam``/``g``, a scratch buffer and Adam's moments,
:mod:`~neurofptt.learning.adam_step`) as views into one contiguous buffer per kind
(:mod:`~neurofptt.learning.flat`) and applies each operation once to the whole buffer: about
twenty-five calls per step, none of which allocates.  The operations, their operands and their
order are those of the separate steps (the regulariser, ``clip_grad_norm_``,
``optimizer.step()``, the running mean), and elementwise results do not depend on the layout,
so the numbers are theirs bit for bit (``tests/test_fptt_exact.py`` keeps the separate steps
and compares).

The buffers take over the parameters' storage (``p.data`` becomes a view) and their ``.grad``.
The gradients are taken through :meth:`FPTTUpdate.zero_grads` or :meth:`FPTTUpdate.grads`, which
first check the links (a pointer or identity comparison per tensor) and take back, with its
values, whatever was replaced meanwhile: a model moved to another dtype, a gradient set to
``None``, an entry of ``running_mean`` or ``memory`` set to a tensor of one's own; Adam's step
does the same for an optimizer state loaded from a checkpoint.
"""

from __future__ import annotations

import torch

from neurofptt.learning.adam_step import AdamStep
from neurofptt.learning.flat import Flat, group_by_kind


def regularizer_grad(
    weights: torch.Tensor,
    w_bar: torch.Tensor,
    memory: torch.Tensor,
    alpha: float,
    form: str,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``grad R_t = alpha (W - W_bar) - lam`` (dual form) or ``... - g_{t-1} / 2`` (slide form),
    written into ``out`` if given.  Halving is exact, so the slide form rounds as
    ``pull - g / 2`` does."""
    pull = torch.sub(weights, w_bar, out=out).mul_(alpha)
    return pull.sub_(memory, alpha=1.0 if form == "dual" else 0.5)


class FPTTUpdate:
    """The fused update of ``named`` parameters (name, parameter) with ``optimizer``.

    ``running_mean`` and ``memory`` map each name to its ``W_bar`` and ``lam``/``g``, views
    into the buffers (they start at the weights and at zero).
    """

    def __init__(
        self, named: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer
    ) -> None:
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.optimizer = optimizer
        self.groups = group_by_kind(self.params)
        with torch.no_grad():
            self._link(
                [p.detach() for p in self.params], [torch.zeros_like(p) for p in self.params]
            )

    def _flats(self, values: list[torch.Tensor] | None = None) -> list[Flat]:
        """One buffer per group, holding ``values`` (zeros by default)."""
        params = self.params
        return [
            Flat(
                [params[i] for i in members],
                None if values is None else [values[i] for i in members],
            )
            for members in self.groups
        ]

    def _views(self, flats: list[Flat]) -> list[torch.Tensor]:
        """The views of ``flats`` in the parameters' order."""
        views = {
            i: view
            for flat, members in zip(flats, self.groups, strict=True)
            for i, view in zip(members, flat.views, strict=True)
        }
        return [views[i] for i in range(len(self.params))]

    def _link(self, w_bar: list[torch.Tensor], memory: list[torch.Tensor]) -> None:
        """Build every buffer from the parameters' values and gradients and the given ``W_bar``
        and ``lam``/``g``, and hand the parameters their views."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.weights = self._flats([p.detach() for p in self.params])
        self.grad_buffers = self._flats(grads)
        self.w_bar = self._flats(w_bar)
        self.memory_buffers = self._flats(memory)
        self.scratch = self._flats()
        self.kept: list[Flat] | None = None  # slide form: the step's loss gradients
        self.weight_views = self._views(self.weights)
        self.grad_views = self._views(self.grad_buffers)
        for p, weight, grad in zip(self.params, self.weight_views, self.grad_views, strict=True):
            p.data = weight
            p.grad = grad
        self.w_bar_views = self._views(self.w_bar)
        self.memory_views = self._views(self.memory_buffers)
        self.running_mean = dict(zip(self.names, self.w_bar_views, strict=True))
        self.memory = dict(zip(self.names, self.memory_views, strict=True))
        self.adam = AdamStep.for_optimizer(self.optimizer, self.params, self.groups)

    def _relink(self) -> None:
        """Take back what was replaced since the last update (see the module docstring)."""
        moved = any(
            p.data_ptr() != view.data_ptr()
            for p, view in zip(self.params, self.weight_views, strict=True)
        )
        if moved:
            named = list(zip(self.names, self.params, strict=True))
            with torch.no_grad():
                self._link(
                    [self.running_mean[n].to(p) for n, p in named],
                    [self.memory[n].to(p) for n, p in named],
                )
            return
        for p, view in zip(self.params, self.grad_views, strict=True):
            if p.grad is not view:
                with torch.no_grad():
                    view.copy_(p.grad) if p.grad is not None else view.zero_()
                p.grad = view
        tables = ((self.running_mean, self.w_bar_views), (self.memory, self.memory_views))
        for table, views in tables:  # an entry set from outside (a state of one's own)
            for name, view in zip(self.names, views, strict=True):
                if table[name] is not view:
                    with torch.no_grad():
                        view.copy_(table[name])
                    table[name] = view

    def grads(self) -> list[torch.Tensor]:
        """The parameters' ``.grad``, views to write the step's loss gradients into."""
        self._relink()
        return self.grad_views

    def zero_grads(self) -> None:
        """Zero every ``.grad``, for ``backward()`` to accumulate the loss gradients into."""
        self._relink()
        for flat in self.grad_buffers:
            flat.buffer.zero_()

    def load(self, running_mean: dict[str, torch.Tensor], memory: dict[str, torch.Tensor]) -> None:
        """Copy a saved ``W_bar`` and ``lam``/``g`` into the buffers."""
        with torch.no_grad():
            for name in self.names:
                self.running_mean[name].copy_(running_mean[name])
                self.memory[name].copy_(memory[name])

    @torch.no_grad()
    def apply(self, *, alpha: float, mix: float, form: str, clip: float) -> None:
        """One FPTT update from the loss gradients in ``.grad`` (taken with :meth:`grads` or
        :meth:`zero_grads`; a ``.grad`` replaced since, e.g. by one combined over the ranks of
        a data-parallel run, is taken in), which are left holding the clipped total gradient,
        as an optimizer step leaves them; see the module docstring."""
        self._relink()
        slide = form == "slide"
        if slide and self.kept is None:
            self.kept = self._flats()
        elif not slide:
            self.kept = None
        for k, grad in enumerate(self.grad_buffers):
            if self.kept is not None:
                self.kept[k].buffer.copy_(grad.buffer)
            reg = regularizer_grad(
                self.weights[k].buffer,
                self.w_bar[k].buffer,
                self.memory_buffers[k].buffer,
                alpha,
                form,
                out=self.scratch[k].buffer,
            )
            grad.buffer.add_(reg)
        if clip > 0:  # clip_grad_norm_'s operations
            total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.grad_views)))
            coef = torch.clamp(clip / (total_norm + 1e-6), max=1.0)
            if coef < 1.0:  # a factor of 1 leaves every gradient as it is
                for grad in self.grad_buffers:
                    grad.buffer.mul_(coef)
        if self.adam is not None and self.adam.covers():
            self.adam.step([f.buffer for f in self.weights], [f.buffer for f in self.grad_buffers])
        else:
            self.optimizer.step()
        self._move_means(alpha, mix, slide)

    def _move_means(self, alpha: float, mix: float, slide: bool) -> None:
        """``W_bar`` and ``lam`` (dual) or ``g`` (slide) after the optimizer step."""
        for k, members in enumerate(self.groups):
            weights, w_bar = self.weights[k].buffer, self.w_bar[k].buffer
            if slide:
                assert self.kept is not None
                self.memory_buffers[k], self.kept[k] = self.kept[k], self.memory_buffers[k]
                for i, view in zip(members, self.memory_buffers[k].views, strict=True):
                    self.memory[self.names[i]] = self.memory_views[i] = view
                grad = self.memory_buffers[k].buffer
                w_bar.add_(weights).mul_(0.5).sub_(grad, alpha=1 / (2 * alpha))
            else:
                lam = self.memory_buffers[k].buffer
                # lam_{t+1} = lam_t - a (W_{t+1} - W_bar_t)
                lam.sub_(torch.sub(weights, w_bar, out=self.scratch[k].buffer), alpha=alpha)
                w_bar.mul_(1 - mix).add_(weights, alpha=mix).sub_(lam, alpha=mix / alpha)
