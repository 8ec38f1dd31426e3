"""One step's loss gradient of the recurrent LIF network from a detached state, without autograd.

Per-step FPTT detaches the state before every step, so a step's loss depends on the weights only
through that step's products (:class:`~neurofptt.models.spiking.SpikingRNN`)::

    I = W_in x + W_rec z_prev,   v = beta v_prev + I - reset,   z = H(v - theta)
    o = beta_out o_prev + W_out z

and its gradient is one outer product per weight matrix::

    g_o = dl/do,   g_v = (g_o W_out) * sigma'(v - theta)
    dl/dW_out = g_o^T z,   dl/dW_in = g_v^T x,   dl/dW_rec = g_v^T z_prev

where ``sigma'`` is the model's own surrogate derivative.  Computing these few products directly
costs a fraction of what recording the step's graph and running the autograd engine over it costs,
and it needs nothing the forward step does not already return: the membrane ``v`` and the spikes
``z`` are the new state, ``z_prev`` the old one.

The numbers are autograd's, bit for bit, in float32 and float64: every product is the call
autograd makes (``g^T @ input``), ``dl/do`` comes from the loss's own backward kernels
(:class:`AuxiliaryLoss`, :func:`step_loss_and_grad`), and the surrogate derivative is the
snntorch function's own ``backward``.  snntorch's surrogates emit float32 spikes, so autograd
rounds the gradient that reaches a spike to float32 even in a float64 model; this does the same
(:data:`SPIKE_DTYPE`).

The forward step itself (:func:`lif_step`) runs the model's operations without its modules:
``snntorch.Leaky`` stores its state in module attributes (a buffer registration per assignment,
several per call) and computes a reset and spikes for the readout that its
``reset_mechanism="none"`` never uses, which on the 512-neuron network costs more processor time
than the step's products.  The step takes the same operations on the same operands (the linear
maps, the leak ``beta.clamp(0, 1)``, the reset of the previous membrane, the model's spike
function), so its state and logits are the model's bit for bit.

:meth:`LIFStepGradient.for_model` says where the form applies: the single-layer LIF network with
one of snntorch's surrogates and its plain or fake-quantized weights (the quantizer's gradient
is straight-through).  Every other model (ALIF, stacks, gated RNNs, a surrogate of one's own)
and chunks of several steps keep the autograd path.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from snntorch import Leaky, surrogate
from torch.nn.utils import parametrize

from neurofptt.learning.objectives import NO_TARGET
from neurofptt.models.base import RecurrentModel, State
from neurofptt.models.spiking import LeakyReadout, RecurrentLIF, SpikingRNN
from neurofptt.quant.fake import FakeQuantize

#: dtype of snntorch's spikes (``(u > 0).float()``), hence of the gradient that reaches them
SPIKE_DTYPE = torch.float32

#: snntorch's surrogate factories (:data:`~neurofptt.models.spiking.SURROGATES` makes its spike
#: functions with them): each one's autograd function, and the name of the slope in the
#: factory's closure and in the function's ``backward``
SURROGATE_FACTORIES: dict[Callable, tuple[type[torch.autograd.Function], str]] = {
    surrogate.fast_sigmoid: (surrogate.FastSigmoid, "slope"),
    surrogate.atan: (surrogate.ATan, "alpha"),
    surrogate.sigmoid: (surrogate.Sigmoid, "slope"),
}

#: ``snntorch.Leaky``'s state functions (chosen from its reset mechanism when it is built):
#: whether the previous step's reset is subtracted from (``"subtract"``) or multiplies
#: (``"zero"``) the membrane; ``"none"`` ignores it
_LEAKY_RESETS = {
    Leaky._base_sub: "subtract",
    Leaky._base_zero: "zero",
    Leaky._base_int: "none",
}

#: ``reduction="mean"`` in the loss kernels' integer encoding
_MEAN = 1


def surrogate_backward(spike_fn: Callable) -> tuple[Callable, dict[str, float]] | None:
    """The snntorch ``backward`` and slope behind a spike function made by one of snntorch's
    factories (recognised by the factory's code, the slope read from its closure); ``None`` for
    any other function, e.g. a surrogate of one's own, whose derivative only autograd knows."""
    code = getattr(spike_fn, "__code__", None)
    for factory, (function, slope_name) in SURROGATE_FACTORIES.items():
        if code is factory().__code__:
            cells = [cell.cell_contents for cell in spike_fn.__closure__ or ()]
            return function.backward, {
                slope_name: dict(zip(code.co_freevars, cells, strict=True))[slope_name]
            }
    return None


def _cross_entropy_grad(
    log_probs: torch.Tensor, y: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.cross_entropy`` with hard labels from its log-softmax, and its gradient."""
    loss, total_weight = torch.ops.aten.nll_loss_forward(log_probs, y, None, _MEAN, ignore_index)
    seed = torch.ones((), dtype=log_probs.dtype, device=log_probs.device)
    grad = torch.ops.aten.nll_loss_backward(
        seed, log_probs, y, None, _MEAN, ignore_index, total_weight
    )
    return loss, grad


class AuxiliaryLoss:
    """:func:`~neurofptt.learning.losses.auxiliary_loss` of one batch and its gradient with
    respect to the logits, as autograd would give them.

    The one-hot labels and the class-table rows ``Q[y]`` are the same at every step of a batch,
    so they are formed once, here; each step only mixes them with its label weight ``beta_t``.
    (Differentiating ``auxiliary_loss`` itself with autograd gives the same numbers at about six
    times the cost per step, which per-step FPTT pays at every step.)
    """

    def __init__(
        self, y: torch.Tensor, prior: torch.Tensor, n_classes: int, dtype: torch.dtype
    ) -> None:
        self.y = y
        self.onehot = F.one_hot(y, n_classes).to(dtype)
        self.prior_rows = prior[y].to(dtype)

    def __call__(self, logits: torch.Tensor, beta_t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss at label weight ``beta_t`` and its gradient: a soft-target cross-entropy,
        whose gradient with respect to the log-probabilities is ``target * (-1 / B)``, or plain
        cross-entropy at ``beta_t = 1``."""
        log_probs = torch.log_softmax(logits, dim=1)
        if beta_t >= 1.0:
            loss, grad_log_probs = _cross_entropy_grad(log_probs, self.y, -100)
        else:
            mixed = beta_t * self.onehot + (1.0 - beta_t) * self.prior_rows
            loss = -(log_probs * mixed).sum() / logits.shape[0]
            grad_log_probs = mixed * (-1.0 / logits.shape[0])
        grad = torch._log_softmax_backward_data(grad_log_probs, log_probs, 1, logits.dtype)
        return loss, grad


def step_loss_and_grad(
    output: torch.Tensor, y_t: torch.Tensor, target: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~neurofptt.learning.objectives.step_loss` for per-step targets (cross-entropy over
    the samples with a label, or mean squared error) and its gradient with respect to
    ``output``, by the backward kernels autograd calls for these losses.

    Not :func:`~neurofptt.learning.objectives.step_loss_and_grad`: that one writes the gradient
    in closed form (``(softmax - onehot) / n``), which rounds differently from autograd's
    kernels, and the local step must give autograd's numbers bit for bit."""
    if target == "regression":
        seed = torch.ones((), dtype=output.dtype, device=output.device)
        return F.mse_loss(output, y_t), torch.ops.aten.mse_loss_backward(seed, output, y_t, _MEAN)
    log_probs = torch.log_softmax(output, dim=1)
    loss, grad_log_probs = _cross_entropy_grad(log_probs, y_t, NO_TARGET)
    return loss, torch._log_softmax_backward_data(grad_log_probs, log_probs, 1, output.dtype)


def _reset_of(neuron: Leaky) -> str | None:
    """The reset a ``snntorch.Leaky`` applies (from the state function it was built with)."""
    return _LEAKY_RESETS.get(getattr(neuron.state_function, "__func__", None))


def _plain_leaky(neuron: torch.nn.Module) -> bool:
    """Whether ``neuron`` is a ``snntorch.Leaky`` whose step :func:`lif_step` reproduces: its
    state passed in and out (not kept in the module), not quantized, one of its own resets."""
    return (
        type(neuron) is Leaky
        and not neuron.init_hidden
        and not neuron.state_quant
        and _reset_of(neuron) is not None
    )


def steps_locally(model: RecurrentModel) -> bool:
    """Whether :func:`lif_step` is ``model.step``: the single-layer LIF network on snntorch's
    ``Leaky`` neurons with their default delayed reset, state passed in and out, no inhibition,
    no state quantization, a readout without reset and linear maps without bias."""
    if not (
        type(model) is SpikingRNN
        and type(model.rec) is RecurrentLIF
        and type(model.readout) is LeakyReadout
    ):
        return False
    lif, li = model.rec.lif, model.readout.li
    layers = (model.rec.fc_in, model.rec.fc_rec, model.readout.fc_out)
    return (
        _plain_leaky(lif)
        and not lif.inhibition
        and lif.reset_delay
        and _plain_leaky(li)
        and _reset_of(li) == "none"
        and all(layer.bias is None for layer in layers)
    )


def lif_step(model: SpikingRNN, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """``model.step(x, state)`` (where :func:`steps_locally`), the same operations on the same
    operands, without the modules (see the module docstring): the logits and the new state
    ``(mem, spk, out)``."""
    rec, readout = model.rec, model.readout
    lif, li = rec.lif, readout.li
    mem, spk, out = state
    current = F.linear(x, rec.fc_in.weight) + F.linear(spk, rec.fc_rec.weight)
    reset = lif.spike_grad(mem - lif.threshold)  # Leaky.mem_reset
    mode = _reset_of(lif)
    if mode == "zero":
        mem = (1 - reset) * mem
    mem = lif.beta.clamp(0, 1) * mem + current
    if mode == "subtract":
        mem = mem - reset * lif.threshold
    spk = lif.spike_grad(mem - lif.threshold) * lif.graded_spikes_factor  # Leaky.fire
    spk = spk.to(current.dtype)  # RecurrentLIF.step
    out = li.beta.clamp(0, 1) * out + F.linear(spk, readout.fc_out.weight)
    return out, (mem, spk, out)


def _trainable_weight(layer: torch.nn.Linear) -> torch.nn.Parameter | None:
    """The parameter the optimizer updates for a linear map's weight: the weight itself, or the
    float shadow of a fake-quantized one (``None`` for any other parametrization)."""
    if not parametrize.is_parametrized(layer, "weight"):
        return layer.weight
    chain = layer.parametrizations.weight
    if not all(isinstance(p, FakeQuantize) for p in chain):
        return None
    return chain.original


class LIFStepGradient:
    """The local one-step gradient of a :class:`~neurofptt.models.spiking.SpikingRNN`."""

    def __init__(
        self, model: SpikingRNN, source: list[int], backward: Callable, slope: dict[str, float]
    ) -> None:
        self.model = model
        self.source = source  # for each of the caller's parameters: 0 W_in, 1 W_rec, 2 W_out
        self._surrogate_backward = backward
        self._surrogate_args = slope

    @classmethod
    def for_model(
        cls, model: RecurrentModel, params: list[torch.nn.Parameter]
    ) -> LIFStepGradient | None:
        """The local form for ``model`` if it applies (see the module docstring), else ``None``.

        ``params`` are the trainable parameters in the order the caller keeps their gradients;
        they must be exactly the three weight matrices.
        """
        if not steps_locally(model):
            return None
        spike = surrogate_backward(model.rec.lif.spike_grad)
        if spike is None:
            return None
        layers = (model.rec.fc_in, model.rec.fc_rec, model.readout.fc_out)
        weights = [_trainable_weight(layer) for layer in layers]
        ids = [id(w) for w in weights]
        if any(w is None for w in weights) or sorted(ids) != sorted(id(p) for p in params):
            return None
        return cls(model, [ids.index(id(p)) for p in params], *spike)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The model's step, by :func:`lif_step`."""
        return lif_step(self.model, x, state)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's logits."""
        return self.model.readout.fc_out.weight.dtype

    def __call__(
        self,
        x: torch.Tensor,
        state: State,
        new_state: State,
        grad_logits: torch.Tensor,
        out: list[torch.Tensor],
    ) -> None:
        """Write into ``out`` (the caller's parameter order) the gradients of a loss whose
        gradient with respect to the step's logits is ``grad_logits``; the step went from
        ``state`` to ``new_state`` on input ``x``.  Writing into kept buffers spares the
        allocation of a weight-sized tensor per matrix and step."""
        rec, readout = self.model.rec, self.model.readout
        v, z = new_state[0], new_state[1]
        z_prev = state[1]
        # the weight the forward used (a fake-quantized one is quantized): its transpose carries
        # the gradient back to the spikes
        grad_z = grad_logits.mm(readout.fc_out.weight).to(SPIKE_DTYPE)
        ctx = SimpleNamespace(saved_tensors=(v - rec.lif.threshold,), **self._surrogate_args)
        grad_v, _ = self._surrogate_backward(ctx, grad_z)
        factors = ((grad_v, x), (grad_v, z_prev), (grad_logits, z))
        for source, buffer in zip(self.source, out, strict=True):
            grad_out, inputs = factors[source]
            torch.mm(grad_out.t(), inputs, out=buffer)
