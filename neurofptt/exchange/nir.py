"""NIR export and import: our recurrent LIF network to and from other neuromorphic tools.

NIR (the Neuromorphic Intermediate Representation, package ``nir``) describes a network as a
graph of continuous-time nodes; snntorch, Norse, Rockpool, Sinabs and Lava read and write it.
The network the hardware runs is, in NIR terms::

    Input(n_in) -> Linear(W_in) -> [LIF <-> Linear(W_rec)] -> Linear(W_out) -> LI -> Output(n_out)

with the recurrent layer exported as a subgraph (``Input -> LIF -> Output`` plus the loop
``LIF -> W_rec -> LIF``), the form snntorch uses for ``RLeaky``.

Time step.  NIR's neurons are ODEs, ``tau dv/dt = (v_leak - v) + r I``; a discrete-time tool
steps them with forward Euler at some ``dt``, which the graph does not carry.  We use snntorch's
convention, ``dt = 1e-4`` s (:data:`DEFAULT_DT`, also written into the graph's metadata as
``"dt"``): one Euler step is ``v <- (1 - dt/tau) v + (r dt/tau) I``, so our decay ``beta`` is
``tau = dt / (1 - beta)`` and our unit input gain is ``r = tau / dt``.  A spiking neuron fires
when ``v > v_threshold`` and is then set to ``v_reset``; with ``v_reset = 0`` the next step starts
from zero and receives its full input, which is exactly our delayed reset to zero.  Edges that
close a loop carry the previous step's value, so the LIF receives ``W_rec z(t-1)``, as ours does.

Reset by subtraction.  NIR's LIF has no reset by subtraction.  A network with
``reset = "subtract"`` is exported with ``v_reset = 0`` and ``reset = "subtract"`` in the LIF's
and the graph's metadata: neurofptt reads it back exactly, another tool simulates a reset to zero
(the export record says so).  snntorch's own export also writes ``v_reset = 0`` for its default
reset by subtraction, without a note, so :func:`from_nir` takes a ``reset`` argument.

Import.  :func:`from_nir` maps a graph of that shape onto a :class:`~neurofptt.models.SpikingRNN`
and a :class:`~neurofptt.quant.HardwareConfig`, exactly where the float model can, and says what
it could not keep exactly: a decay becomes the nearest shift leak ``1 - 2**-leak_shift`` (the
error is in the result's :class:`NirMapping`); per-neuron input gains ``r dt / tau`` and
thresholds are folded into the incoming weights (scaling a neuron's membrane by
``theta_hw / theta_j`` leaves its spikes unchanged), so every neuron fires at the hardware's one
threshold.  What has no counterpart on the chip (convolutions, delays, biases, a second hidden
layer, a synaptic current, per-neuron decays in a layer that shares one leak shift) is refused
with a :class:`~neurofptt.errors.ConfigError` that names the node.

The ``nir`` package is optional: it is imported inside the functions that need it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from neurofptt import __version__
from neurofptt.errors import CheckpointError, ConfigError, ToolMissingError
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.stages import CHECKPOINT, QUANTIZED, load_trained
from neurofptt.io import atomic_write_bytes, write_json
from neurofptt.learning.objectives import readout_accuracy
from neurofptt.learning.trainer import evaluate
from neurofptt.models.spiking import RecurrentLIF, SpikingRNN
from neurofptt.quant.config import RESET_RULES, HardwareConfig
from neurofptt.quant.golden import golden_run
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.quant.quantizer import quantize
from neurofptt.tasks import load_task
from neurofptt.tasks.base import CLASS_TARGETS

if TYPE_CHECKING:
    import nir

#: snntorch's Euler step in seconds: the ``dt`` the export assumes and the import's default
DEFAULT_DT = 1e-4
#: the file :func:`export_nir` writes
NIR_FILE = "network.nir"
#: the record :func:`export_nir` writes next to it
EXPORT_RECORD = "export_nir.json"
#: the record :func:`quantize_nir` writes (the name :func:`~neurofptt.flow.stages.stage_quantize`
#: uses, so the later stages and the report read it the same way)
QUANTIZE_RECORD = "quantize.json"

#: relative tolerance of parameters that must agree (uniform decays, ``alpha = 0``, unit gains):
#: graphs are often stored in float32, whose rounding of ``tau`` and ``r`` is about 1e-7
TOLERANCE = 1e-6

_INSTALL_HINT = "install it with pip install 'neurofptt[nir]' (tested with nir 1.0.8)"

# why a node type has no counterpart on the chip (one line each, after "NIR node 'x' is ...")
_REFUSED = {
    "Conv1d": "a convolution; the hardware has dense all-to-all weight matrices only",
    "Conv2d": "a convolution; the hardware has dense all-to-all weight matrices only",
    "SumPool2d": "pooling; the hardware takes a flat vector of input spikes and does not pool",
    "AvgPool2d": "pooling; the hardware takes a flat vector of input spikes and does not pool",
    "Delay": "a synaptic delay; the hardware has none (every spike acts on the next step)",
    "Flatten": "a Flatten of a multi-dimensional input; the hardware takes a flat vector of spikes",
    "IF": "an integrate-and-fire neuron without leak; the hardware's neurons leak (give a LIF)",
    "I": "an integrator without leak; the hardware's readout is a leaky integrator (give an LI)",
    "Threshold": "a bare threshold; the hardware's spikes come from LIF neurons",
    "Scale": "an elementwise scale; fold it into the weights of the neighbouring Linear node",
    "NIRGraph": "a subgraph without exactly one Input and one Output node",
}
Edges = list[tuple[str, str]]
_SHAPE = "input -> Linear -> recurrent LIF -> Linear -> LI readout -> output"


def _nir() -> Any:
    """The ``nir`` package, or a :class:`ToolMissingError` saying how to install it."""
    try:
        import nir
    except ImportError as exc:
        raise ToolMissingError(
            f"the NIR exchange needs the 'nir' package; {_INSTALL_HINT}"
        ) from exc
    return nir


# -- the mapping record ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LeakMapping:
    """A graph's decay per step and the shift leak that replaces it on the chip.

    ``error`` is ``beta_hardware - beta``; ``tau_steps`` is the time constant in steps,
    ``1 / (1 - beta)``, whose hardware value is ``2**leak_shift``.
    """

    node: str
    beta: float
    leak_shift: int
    beta_hardware: float
    error: float
    tau_steps: float
    tau_steps_hardware: float

    @classmethod
    def of(cls, node: str, beta: float, max_shift: int) -> LeakMapping:
        shift = nearest_leak_shift(beta, max_shift)
        hw = 1.0 - 2.0**-shift
        return cls(
            node=node,
            beta=beta,
            leak_shift=shift,
            beta_hardware=hw,
            error=hw - beta,
            tau_steps=math.inf if beta >= 1.0 else 1.0 / (1.0 - beta),
            tau_steps_hardware=float(2**shift),
        )


@dataclass(frozen=True)
class NirMapping:
    """How a NIR graph became our network: which node plays which part, the Euler step and where
    it came from, the leak mappings (with their errors), the reset rule and where it came from,
    the graph's thresholds and the factors folded into the weights, and notes on what is read
    differently from the graph (``notes``)."""

    dt: float
    dt_source: str
    nodes: dict[str, str | None]
    leak: LeakMapping
    out_leak: LeakMapping
    reset: str
    reset_source: str
    threshold_graph: tuple[float, float]
    threshold_hardware: float
    input_scale: tuple[float, float]
    readout_scale: tuple[float, float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the stage records)."""
        data = asdict(self)
        for key in ("threshold_graph", "input_scale", "readout_scale"):
            data[key] = list(data[key])
        return data


class ImportedNetwork(NamedTuple):
    """What :func:`from_nir` returns: the float model (its weights folded from the graph), the
    hardware config it runs on (sizes, leak shifts and reset from the graph; number formats and
    threshold from the ``hardware`` argument) and the :class:`NirMapping`."""

    model: SpikingRNN
    hardware: HardwareConfig
    mapping: NirMapping


def nearest_leak_shift(beta: float, max_shift: int) -> int:
    """The shift ``s`` in ``0..max_shift`` whose leak ``1 - 2**-s`` is nearest to ``beta``
    (the smaller shift on a tie)."""
    return min(range(max_shift + 1), key=lambda s: (abs(1.0 - 2.0**-s - beta), s))


# -- export ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Exported:
    """The float parameters of a network, whatever it came from."""

    w_in: np.ndarray
    w_rec: np.ndarray
    w_out: np.ndarray
    beta: float
    out_beta: float
    threshold: float
    reset: str
    source: str


def _parameters(model: SpikingRNN | QuantizedNetwork) -> _Exported:
    if isinstance(model, QuantizedNetwork):
        cfg = model.config

        def value(codes: np.ndarray, shift: int) -> np.ndarray:
            # the exact float value of each integer weight: code << shift membrane LSBs
            return np.ldexp(codes.astype(np.float64), shift - cfg.frac_bits)

        return _Exported(
            w_in=value(model.w_in, cfg.w_in_shift),
            w_rec=value(model.w_rec, cfg.w_rec_shift),
            w_out=value(model.w_out, cfg.w_out_shift),
            beta=cfg.beta,
            out_beta=cfg.out_beta,
            threshold=cfg.threshold_float,
            reset=cfg.reset,
            source="quantized",
        )
    if not isinstance(model, SpikingRNN) or model.layer_cls is not RecurrentLIF:
        raise ConfigError(
            f"only the recurrent LIF network ('lif', one layer) exports to NIR; got a "
            f"{type(model).__name__}"
        )
    with torch.no_grad():
        weights = {
            key: model.get_submodule(path).weight.detach().double().cpu().numpy()
            for key, path in (("in", "rec.fc_in"), ("rec", "rec.fc_rec"), ("out", "readout.fc_out"))
        }
    hp = model.hparams
    return _Exported(
        w_in=weights["in"],
        w_rec=weights["rec"],
        w_out=weights["out"],
        beta=float(hp["beta"]),
        out_beta=float(hp["out_beta"]),
        threshold=float(hp["threshold"]),
        reset=str(hp["reset"]),
        source="float",
    )


def _time_constant(beta: float, n: int, dt: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(tau, r)`` of ``n`` neurons with decay ``beta`` per Euler step ``dt`` and unit gain."""
    if not 0.0 <= beta < 1.0:
        raise ConfigError(
            f"the {what} decay beta = {beta} has no finite NIR time constant; it must be in [0, 1)"
        )
    tau = dt / (1.0 - beta)
    return np.full(n, tau), np.full(n, tau / dt)


def to_nir(model: SpikingRNN | QuantizedNetwork, *, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """The NIR graph of our float network or of a quantized one (its integer weights scaled back
    by their per-matrix shifts, so the graph holds exactly the weights the chip runs).

    Nodes: ``input``, ``fc_in`` (Linear ``W_in``), ``rec`` (a subgraph: ``input``, ``lif``,
    ``w_rec``, ``output``), ``fc_out`` (Linear ``W_out``), ``readout`` (LI), ``output``.  With
    the Euler step ``dt`` (see the module docstring): ``tau = dt / (1 - beta)``, ``r = tau / dt``,
    ``v_leak = 0``, ``v_threshold = theta``, ``v_reset = 0``.  The graph's metadata holds ``dt``,
    ``reset`` and the generator; a quantized network's leak is a flooring shift on integers, so
    the graph is its float semantics (they differ by less than one membrane LSB per step, and
    by saturation).
    """
    nir = _nir()
    p = _parameters(model)
    n_rec, n_in = p.w_in.shape
    n_out = p.w_out.shape[0]
    tau, r = _time_constant(p.beta, n_rec, dt, "recurrent")
    out_tau, out_r = _time_constant(p.out_beta, n_out, dt, "readout")
    lif = nir.LIF(
        tau=tau,
        r=r,
        v_leak=np.zeros(n_rec),
        v_threshold=np.full(n_rec, p.threshold),
        v_reset=np.zeros(n_rec),
        metadata={"reset": p.reset},
    )
    rec = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_rec])),
            "lif": lif,
            "w_rec": nir.Linear(weight=p.w_rec),
            "output": nir.Output(output_type=np.array([n_rec])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_in])),
            "fc_in": nir.Linear(weight=p.w_in),
            "rec": rec,
            "fc_out": nir.Linear(weight=p.w_out),
            "readout": nir.LI(tau=out_tau, r=out_r, v_leak=np.zeros(n_out)),
            "output": nir.Output(output_type=np.array([n_out])),
        },
        edges=[("input", "fc_in"), ("fc_in", "rec"), ("rec", "fc_out"), ("fc_out", "readout"),
               ("readout", "output")],
        metadata={
            "dt": float(dt),
            "reset": p.reset,
            "weights": p.source,
            "generator": f"neurofptt {__version__}",
        },
    )  # fmt: skip


# -- import ---------------------------------------------------------------------------------------
def _text(value: Any) -> Any:
    """A metadata value as written (h5py reads strings back as bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def _join(prefix: str, name: str) -> str:
    """A subgraph node's flat name; snntorch already prefixes them (``rlif.lif`` in ``rlif``)."""
    if not prefix or name.startswith(prefix + "."):
        return name
    return f"{prefix}.{name}"


def _flatten(graph: Any, prefix: str = "") -> tuple[dict[str, Any], Edges, set[str]]:
    """Nodes and edges with every subgraph opened up, and the names of the subgraphs' Input and
    Output nodes (pass-throughs, removed later)."""
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges: Edges = []
    passthrough: set[str] = set()
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = _join(prefix, name)
        if isinstance(node, nir.NIRGraph):
            inputs = [k for k, n in node.nodes.items() if isinstance(n, nir.Input)]
            outputs = [k for k, n in node.nodes.items() if isinstance(n, nir.Output)]
            if len(inputs) != 1 or len(outputs) != 1:
                raise ConfigError(f"NIR node {full!r} is {_REFUSED['NIRGraph']}")
            sub_nodes, sub_edges, sub_pass = _flatten(node, full)
            entry[name], exit_[name] = _join(full, inputs[0]), _join(full, outputs[0])
            passthrough |= sub_pass | {entry[name], exit_[name]}
            for key in sub_nodes:
                if key in nodes:
                    raise ConfigError(f"NIR node {key!r} appears twice once subgraphs are opened")
            nodes.update(sub_nodes)
            edges += sub_edges
        else:
            if full in nodes:
                raise ConfigError(f"NIR node {full!r} appears twice once subgraphs are opened")
            nodes[full] = node
    for a, b in graph.edges:
        edges.append((exit_.get(a, _join(prefix, a)), entry.get(b, _join(prefix, b))))
    return nodes, edges, passthrough


def _bypass(nodes: dict[str, Any], edges: Edges, names: Iterable[str]) -> Edges:
    """Remove pass-through nodes, connecting each predecessor to each successor."""
    for p in names:
        preds = [a for a, b in edges if b == p]
        succs = [b for a, b in edges if a == p]
        edges = [e for e in edges if p not in e] + [(a, s) for a in preds for s in succs]
        del nodes[p]
    return list(dict.fromkeys(edges))


def _is_identity_flatten(node: Any) -> bool:
    """A Flatten of a one-dimensional input changes nothing."""
    shape = (node.input_type or {}).get("input")
    return shape is not None and len(np.atleast_1d(shape)) == 1


@dataclass(frozen=True)
class _Layer:
    """The parameters of one neuron layer that our network keeps."""

    beta: float  # decay per Euler step, the same for every neuron
    gain: np.ndarray  # r dt / tau (times w_in for a current-based neuron), per neuron
    threshold: np.ndarray | None  # per neuron, for a spiking layer


def _param(name: str, node: Any, attr: str, n: int) -> np.ndarray:
    value = np.asarray(getattr(node, attr), dtype=np.float64)
    if value.size == 1:
        value = np.full(n, float(value.reshape(-1)[0]))
    if value.shape != (n,):
        raise ConfigError(
            f"NIR node {name!r} has {attr} of shape {value.shape} but its layer has {n} neurons"
        )
    if not np.all(np.isfinite(value)):
        raise ConfigError(f"NIR node {name!r} has a non-finite {attr}")
    return value


def _layer(name: str, node: Any, n: int, dt: float, *, spiking: bool) -> _Layer:
    """Decay, gain and threshold of a LIF/CubaLIF/LI/CubaLI node under the Euler step ``dt``;
    a :class:`ConfigError` for what the hardware cannot run."""
    kind = type(node).__name__
    if kind in ("CubaLIF", "CubaLI"):
        tau_syn = _param(name, node, "tau_syn", n)
        alpha = 1.0 - dt / tau_syn
        if np.any(np.abs(alpha) > TOLERANCE):
            worst = float(alpha[np.argmax(np.abs(alpha))])
            raise ConfigError(
                f"NIR node {name!r} is a {kind} with a synaptic current (tau_syn = "
                f"{float(tau_syn[np.argmax(np.abs(alpha))]):g} s, alpha = 1 - dt/tau_syn = "
                f"{worst:g} at dt = {dt:g} s); the hardware has no synaptic state, only "
                "tau_syn = dt (alpha = 0) maps exactly"
            )
        tau = _param(name, node, "tau_mem", n)
        w_in = _param(name, node, "w_in", n)
    else:
        tau = _param(name, node, "tau", n)
        w_in = np.ones(n)
    if np.any(tau <= 0):
        raise ConfigError(f"NIR node {name!r} has a time constant tau <= 0")
    beta = 1.0 - dt / tau
    if np.any(beta < -TOLERANCE):
        raise ConfigError(
            f"NIR node {name!r} has tau = {float(tau.min()):g} s, shorter than the Euler step "
            f"dt = {dt:g} s (a decay of {float(beta.min()):g} per step); pass the dt the graph "
            "was made with"
        )
    if float(np.ptp(beta)) > TOLERANCE:
        raise ConfigError(
            f"NIR node {name!r} has per-neuron decays from {float(beta.min()):.6g} to "
            f"{float(beta.max()):.6g} (tau from {float(tau.min()):g} to {float(tau.max()):g} s); "
            "the hardware has one leak shift per layer, so its neurons need one tau"
        )
    if np.any(_param(name, node, "v_leak", n) != 0):
        raise ConfigError(
            f"NIR node {name!r} has a nonzero v_leak (a constant drive); the hardware has no bias"
        )
    gain = _param(name, node, "r", n) * dt / tau * w_in
    gain = np.where(np.abs(gain - 1.0) <= TOLERANCE, 1.0, gain)  # float32 rounding of tau, r
    threshold = None
    if spiking:
        threshold = _param(name, node, "v_threshold", n)
        if np.any(threshold <= 0):
            raise ConfigError(
                f"NIR node {name!r} has a threshold <= 0; the hardware's threshold is positive"
            )
        if np.any(_param(name, node, "v_reset", n) != 0):
            raise ConfigError(
                f"NIR node {name!r} resets to a nonzero v_reset; the hardware resets to 0 or "
                "subtracts the threshold"
            )
    return _Layer(beta=float(np.clip(np.mean(beta), 0.0, 1.0)), gain=gain, threshold=threshold)


def _dense(name: str, node: Any, shape: tuple[int | None, int | None], role: str) -> np.ndarray:
    """The weight of a Linear/Affine node (a zero bias is allowed), checked against ``shape``
    (``None``: any size)."""
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2:
        raise ConfigError(f"NIR node {name!r} has a {weight.ndim}-D weight; {role} must be 2-D")
    if not np.all(np.isfinite(weight)):
        raise ConfigError(f"NIR node {name!r} has NaN or infinite weights")
    if type(node).__name__ == "Affine" and np.any(np.asarray(node.bias) != 0):
        raise ConfigError(
            f"NIR node {name!r} is an Affine with a nonzero bias; the hardware has no biases"
        )
    for axis, (want, got) in enumerate(zip(shape, weight.shape, strict=True)):
        if want is not None and want != got:
            side = "outputs" if axis == 0 else "inputs"
            raise ConfigError(f"NIR node {name!r} has {got} {side} where {role} needs {want}")
    return weight


def _dt(dt: float | None, graph: Any) -> tuple[float, str]:
    if dt is not None:
        source = "argument"
    elif "dt" in (graph.metadata or {}):
        dt, source = float(_text(graph.metadata["dt"])), "graph metadata"
    else:
        dt, source = DEFAULT_DT, "snntorch's default (the graph does not say)"
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"the Euler step dt = {dt} must be positive")
    return dt, source


def _reset(reset: str | None, node: Any, graph: Any) -> tuple[str, str]:
    if reset is not None:
        if reset not in RESET_RULES:
            raise ConfigError(f"reset = {reset!r} is not a reset rule; use one of {RESET_RULES}")
        return reset, "argument"
    for where, meta in (("node", node.metadata), ("graph", graph.metadata)):
        value = _text((meta or {}).get("reset"))
        if value in RESET_RULES:
            return value, f"the {where}'s metadata (written by neurofptt)"
    return "zero", "NIR's LIF semantics (v_reset = 0)"


def _structure(graph: Any) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The flat nodes, the chain of nodes from the input to the output (without them) and the
    recurrent loops (spiking node -> its W_rec node); a :class:`ConfigError` naming the node
    for any other shape."""
    nir = _nir()
    spiking = (nir.LIF, nir.CubaLIF)
    dense = (nir.Linear, nir.Affine)
    supported = (nir.Input, nir.Output, *spiking, *dense, nir.LI, nir.CubaLI)
    nodes, edges, passthrough = _flatten(graph)
    passthrough |= {
        k for k, n in nodes.items() if isinstance(n, nir.Flatten) and _is_identity_flatten(n)
    }
    for name, node in nodes.items():
        if name not in passthrough and not isinstance(node, supported):
            kind = type(node).__name__
            reason = _REFUSED.get(kind, f"a {kind}, which has no counterpart on the chip")
            raise ConfigError(f"NIR node {name!r} is {reason}")
    edges = _bypass(nodes, edges, sorted(passthrough))
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise ConfigError(f"a NIR edge ({a!r}, {b!r}) names {end!r}, which is no node")
        if a == b:
            raise ConfigError(
                f"NIR node {a!r} feeds itself; a recurrent connection needs a Linear node "
                "(W_rec) in its loop"
            )
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    succs: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succs[a].append(b)
        preds[b].append(a)
    loops: dict[str, str] = {}
    for a, b in edges:
        if (
            isinstance(nodes[a], spiking)
            and isinstance(nodes[b], dense)
            and preds[b] == [a]
            and succs[b] == [a]
        ):
            if a in loops:
                raise ConfigError(
                    f"NIR node {a!r} has two recurrent weight nodes ({loops[a]!r}, {b!r}); the "
                    "hardware has one recurrent matrix"
                )
            loops[a] = b
    in_loop = set(loops.values())
    for key in nodes:
        preds[key] = [p for p in preds[key] if p not in in_loop]
        succs[key] = [s for s in succs[key] if s not in in_loop]
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    for what, found in (("inputs", inputs), ("outputs", outputs)):
        if len(found) != 1:
            raise ConfigError(
                f"the NIR graph has {len(found)} {what} ({', '.join(map(repr, found))}); the "
                f"hardware has one: {_SHAPE}"
            )
    chain: list[str] = []
    seen = {inputs[0]}
    current = inputs[0]
    while current != outputs[0]:
        after = succs[current]
        if len(after) != 1:
            where = "leads nowhere"
            if after:
                where = f"feeds {len(after)} nodes ({', '.join(map(repr, after))})"
            raise ConfigError(
                f"NIR node {current!r} {where}; the hardware runs one chain: {_SHAPE}"
            )
        current = after[0]
        if len(preds[current]) != 1:
            raise ConfigError(
                f"NIR node {current!r} has {len(preds[current])} inputs "
                f"({', '.join(map(repr, preds[current]))}); besides a LIF layer's own recurrent "
                f"weights the hardware runs one chain: {_SHAPE}"
            )
        if current in seen:
            raise ConfigError(
                f"NIR node {current!r} closes a loop other than a LIF layer's recurrent weights; "
                f"the hardware runs {_SHAPE}"
            )
        seen.add(current)
        if current != outputs[0]:
            chain.append(current)
    stray = sorted(set(nodes) - seen - in_loop)
    if stray:
        raise ConfigError(
            f"NIR node {stray[0]!r} is not on the path from {inputs[0]!r} to {outputs[0]!r}"
        )
    return nodes, chain, loops


def _roles(nodes: dict[str, Any], chain: list[str], loops: dict[str, str]) -> dict[str, str]:
    """Name the chain's four parts (``w_in``, ``hidden``, ``w_out``, ``readout``), or refuse."""
    nir = _nir()
    spiking = (nir.LIF, nir.CubaLIF)
    dense = (nir.Linear, nir.Affine)

    def kind(i: int) -> str:
        return type(nodes[chain[i]]).__name__

    if not chain:
        raise ConfigError(f"the NIR graph connects its input straight to its output; need {_SHAPE}")
    if not isinstance(nodes[chain[0]], dense):
        raise ConfigError(
            f"NIR node {chain[0]!r} ({kind(0)}) comes first after the input; the hardware needs "
            "an input weight matrix (Linear) there"
        )
    layers = [n for n in chain[:-1] if isinstance(nodes[n], spiking)]
    if len(layers) > 1:
        raise ConfigError(
            f"NIR node {layers[1]!r} is a second LIF layer (after {layers[0]!r}); the hardware "
            "runs one recurrent LIF layer"
        )
    expected = [
        (dense, "an input weight matrix (Linear)"),
        (spiking, "the recurrent LIF layer"),
        (dense, "the readout weight matrix (Linear)"),
        ((nir.LI, nir.CubaLI, *spiking), "the leaky-integrator readout (LI)"),
    ]
    for i, (types, what) in enumerate(expected):
        if i >= len(chain):
            raise ConfigError(
                f"the NIR graph ends after {chain[-1]!r}; the hardware needs {what} next: {_SHAPE}"
            )
        if not isinstance(nodes[chain[i]], types):
            raise ConfigError(
                f"NIR node {chain[i]!r} is a {kind(i)} where the hardware needs {what}: {_SHAPE}"
            )
    if len(chain) > 4:
        raise ConfigError(
            f"NIR node {chain[4]!r} follows the readout {chain[3]!r}; the hardware's output is "
            f"the readout: {_SHAPE}"
        )
    if chain[3] in loops:
        raise ConfigError(
            f"NIR node {chain[3]!r} (the readout) has recurrent weights {loops[chain[3]]!r}; the "
            "hardware's readout has none"
        )
    return {
        "w_in": chain[0],
        "hidden": chain[1],
        "w_rec": loops.get(chain[1]),
        "w_out": chain[2],
        "readout": chain[3],
    }


def _span(values: np.ndarray) -> tuple[float, float]:
    return float(np.min(values)), float(np.max(values))


def from_nir(
    graph: nir.NIRGraph,
    hardware: HardwareConfig | None = None,
    *,
    dt: float | None = None,
    reset: str | None = None,
) -> ImportedNetwork:
    """Map a NIR graph onto our float network and the hardware config it runs on.

    The graph must be ``input -> Linear/Affine -> LIF or CubaLIF (with or without a recurrent
    Linear/Affine loop) -> Linear/Affine -> LI, CubaLI or LIF -> output``, nested in subgraphs
    or flat (snntorch's ``export_to_nir`` of ``Linear -> RLeaky(all_to_all) -> Linear -> Leaky``
    is one).  ``hardware`` gives the number formats, the threshold, ``lanes`` and any learning
    section (default: :class:`~neurofptt.quant.HardwareConfig`'s defaults); the sizes, the leak
    shifts and the reset rule come from the graph.

    ``dt``: the Euler step the graph's time constants assume; default the graph's metadata
    ``"dt"``, else :data:`DEFAULT_DT` (snntorch's).  ``reset``: ``"subtract"`` or ``"zero"``;
    default the node's or graph's metadata (our export writes it), else ``"zero"``, NIR's own
    semantics.  snntorch writes ``v_reset = 0`` whatever its reset mechanism, so pass
    ``reset="subtract"`` for an snntorch network with its default reset.

    Exact: weights, zero biases, per-neuron gains ``r dt / tau`` (times ``w_in``) and thresholds
    (folded into the incoming weights).  Nearest: each layer's decay becomes the nearest shift
    leak (see ``mapping.leak``/``mapping.out_leak`` for the error).  A final LIF is read as a
    leaky integrator without firing (snntorch exports a ``Leaky`` readout with
    ``reset_mechanism="none"`` as a LIF); ``mapping.notes`` says so.  Anything else raises a
    one-line :class:`ConfigError` naming the node.
    """
    nir = _nir()
    dt, dt_source = _dt(dt, graph)
    nodes, chain, loops = _structure(graph)
    roles = _roles(nodes, chain, loops)
    notes: list[str] = []

    w_in = _dense(roles["w_in"], nodes[roles["w_in"]], (None, None), "the input weight matrix")
    n_rec, n_in = w_in.shape
    hidden_node = nodes[roles["hidden"]]
    hidden = _layer(roles["hidden"], hidden_node, n_rec, dt, spiking=True)
    if roles["w_rec"] is None:
        w_rec = np.zeros((n_rec, n_rec))
        notes.append(f"{roles['hidden']!r} has no recurrent weights: W_rec = 0")
    else:
        w_rec = _dense(
            roles["w_rec"], nodes[roles["w_rec"]], (n_rec, n_rec), "the recurrent weight matrix"
        )
    w_out = _dense(roles["w_out"], nodes[roles["w_out"]], (None, n_rec), "the readout matrix")
    n_out = w_out.shape[0]
    readout_node = nodes[roles["readout"]]
    readout = _layer(roles["readout"], readout_node, n_out, dt, spiking=False)
    if isinstance(readout_node, (nir.LIF, nir.CubaLIF)):
        notes.append(
            f"the readout {roles['readout']!r} is a {type(readout_node).__name__}: its membrane "
            "potential is read without firing or reset (snntorch exports a Leaky readout with "
            "reset_mechanism='none' this way)"
        )

    reset, reset_source = _reset(reset, hidden_node, graph)
    if reset_source.startswith("NIR"):
        notes.append(
            "reset to zero, NIR's semantics; snntorch's export writes v_reset = 0 for its "
            "reset by subtraction too, so pass reset='subtract' for such a network"
        )
    base = hardware or HardwareConfig()
    max_shift = base.membrane_bits - 1
    leak = LeakMapping.of(roles["hidden"], hidden.beta, max_shift)
    out_leak = LeakMapping.of(roles["readout"], readout.beta, max_shift)
    cfg = base.replace(
        n_in=int(n_in),
        n_rec=int(n_rec),
        n_out=int(n_out),
        leak_shift=leak.leak_shift,
        out_leak_shift=out_leak.leak_shift,
        reset=reset,
    )
    theta = cfg.threshold_float
    membrane = theta / hidden.threshold
    membrane = np.where(np.abs(membrane - 1.0) <= TOLERANCE, 1.0, membrane)
    if np.any(membrane != 1.0):
        lo, hi = _span(membrane)
        notes.append(
            f"the membranes of {roles['hidden']!r} are scaled by {lo:.6g} to {hi:.6g} so every "
            f"neuron fires at the hardware threshold {theta:g}; its spikes are unchanged"
        )
    scale = hidden.gain * membrane  # per recurrent neuron, on its incoming weights
    model = SpikingRNN.from_config(cfg)
    with torch.no_grad():
        for path, value in (
            ("rec.fc_in", w_in * scale[:, None]),
            ("rec.fc_rec", w_rec * scale[:, None]),
            ("readout.fc_out", w_out * readout.gain[:, None]),
        ):
            weight = model.get_submodule(path).weight
            weight.copy_(torch.from_numpy(value).to(weight.dtype))
    model.eval()
    mapping = NirMapping(
        dt=dt,
        dt_source=dt_source,
        nodes=roles,
        leak=leak,
        out_leak=out_leak,
        reset=reset,
        reset_source=reset_source,
        threshold_graph=_span(hidden.threshold),
        threshold_hardware=theta,
        input_scale=_span(scale),
        readout_scale=_span(readout.gain),
        notes=notes,
    )
    return ImportedNetwork(model, cfg, mapping)


# -- files and stages -----------------------------------------------------------------------------
def read_nir(path: Path) -> tuple[nir.NIRGraph, str]:
    """``nir.read`` with the toolkit's errors, and the note of how it was read.

    A missing or unreadable file is a :class:`CheckpointError` naming it.  A graph whose
    declared types disagree (Norse 1.1's ``to_nir`` and snntorch's ``export_to_nir`` without
    ``ignore_dims`` write the batch dimension into the input's type, which NIR's type inference
    then refuses) is read again without NIR's type check, and the note says so: :func:`from_nir`
    checks every shape it uses against the weight matrices itself."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"NIR file {path} does not exist")
    errors = (OSError, KeyError, ValueError, TypeError, AssertionError)
    try:
        return nir.read(path), ""
    except ValueError as exc:
        if "type" not in str(exc).lower():
            raise CheckpointError(f"{path} is not a readable NIR graph: {exc}") from exc
        note = f"read without NIR's type check, which refuses the file's declared types ({exc})"
    except errors as exc:
        raise CheckpointError(f"{path} is not a readable NIR graph: {exc}") from exc
    try:
        return nir.read(path, type_check=False), note
    except errors as exc:
        raise CheckpointError(f"{path} is not a readable NIR graph: {exc}") from exc


def write_nir(path: Path, graph: nir.NIRGraph) -> Path:
    """``nir.write`` into memory, then an atomic write of the bytes (as every file we write)."""
    nir = _nir()
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def export_nir(
    out: Path,
    source: Path | None = None,
    config: FlowConfig | None = None,
    *,
    dt: float = DEFAULT_DT,
) -> dict:
    """Write ``OUT/network.nir`` from a quantized model (``.npz``: the weights the chip runs) or
    a checkpoint (the float model of its picked epoch, :func:`~neurofptt.flow.stages.load_trained`
    with ``config``); default ``OUT/quantized.npz`` if it exists, else ``OUT/checkpoint.pt``.

    Writes and returns the record ``export_nir.json``: ``nir`` (the file), ``source``,
    ``weights`` (``"quantized"`` or ``"float"``), the sizes, ``dt``, ``beta``, ``out_beta``,
    ``threshold``, ``reset``, ``exact_in_nir`` (false for reset by subtraction, which NIR's LIF
    cannot express; ``note`` says what other tools will simulate) and ``nir_version``.
    """
    nir = _nir()
    out = Path(out)
    if source is None:
        source = out / QUANTIZED if (out / QUANTIZED).is_file() else out / CHECKPOINT
    source = Path(source)
    if source.suffix == ".npz":
        network: SpikingRNN | QuantizedNetwork = QuantizedNetwork.load(source)
    else:
        network, _ = load_trained(source, config)
    graph = to_nir(network, dt=dt)
    path = write_nir(out / NIR_FILE, graph)
    p = _parameters(network)
    exact = p.reset == "zero"
    record = {
        "nir": str(path),
        "source": str(source),
        "weights": p.source,
        "n_in": int(p.w_in.shape[1]),
        "n_rec": int(p.w_in.shape[0]),
        "n_out": int(p.w_out.shape[0]),
        "dt": dt,
        "beta": p.beta,
        "out_beta": p.out_beta,
        "threshold": p.threshold,
        "reset": p.reset,
        "exact_in_nir": exact,
        "note": ""
        if exact
        else (
            "NIR's LIF has no reset by subtraction: the graph has v_reset = 0 and "
            "reset = 'subtract' in its metadata; neurofptt reads it back exactly, other tools "
            "simulate a reset to zero"
        ),
        "nir_version": nir.__version__,
    }
    write_json(out / EXPORT_RECORD, record)
    return record


def quantize_nir(
    nir_file: Path,
    out: Path,
    config: FlowConfig | None = None,
    *,
    dt: float | None = None,
    reset: str | None = None,
) -> dict:
    """Import a NIR graph (:func:`from_nir`, with ``config.hardware``'s number formats), quantize
    it and write ``OUT/quantized.npz``, which ``generate`` and ``verify`` then take as they take
    our own networks.

    Writes and returns ``quantize.json`` with the keys of
    :func:`~neurofptt.flow.stages.stage_quantize`'s record (``checkpoint`` and ``picked_epoch``
    are ``None``) plus ``nir`` (the file), ``nir_mapping`` (:meth:`NirMapping.to_dict`: leak
    mapping errors, reset, scales, notes), ``nir_read_note`` (:func:`read_nir`'s), ``task`` and
    ``task_note``.  The accuracies and the
    spike rate are measured on the test set of ``config.flow.task`` (default digits) when the
    graph's inputs and classes fit it, else they are ``None`` and ``task_note`` says why.
    """
    cfg = config or FlowConfig()
    nir_file = Path(nir_file)
    out = Path(out)
    graph, read_note = read_nir(nir_file)
    imported = from_nir(graph, cfg.hardware if config else None, dt=dt, reset=reset)
    net, report = quantize(imported.model, imported.hardware)
    net.save(out / QUANTIZED)
    task = load_task(cfg.flow.task)
    hw = net.config
    fits = task.target in CLASS_TARGETS and (task.test.n_in, task.n_out) == (hw.n_in, hw.n_out)
    float_acc = golden_acc = spike_rate = None
    task_note = ""
    if fits:
        float_acc = evaluate(imported.model, task.test)
        trace = golden_run(net, task.test.numpy_spikes())
        golden_acc = readout_accuracy(trace.readout, task.test.y.numpy())
        spike_rate = float(trace.spikes.mean())
    else:
        task_note = (
            f"task {task.name!r} has {task.test.n_in} inputs and {task.n_out} classes "
            f"({task.target} targets) but the graph has n_in = {hw.n_in}, n_out = {hw.n_out}; "
            "no accuracy measured"
        )
    record = {
        "float_accuracy": float_acc,
        "golden_accuracy": golden_acc,
        "test_samples": len(task.test) if fits else 0,
        "task": task.name,
        "task_note": task_note,
        "shifts": report.shifts,
        "clipped_weights": report.clipped,
        "max_weight_error": report.max_error,
        "hardware": hw.to_dict(),
        "spike_rate": spike_rate,
        "quantized": str(out / QUANTIZED),
        "checkpoint": None,
        "picked_epoch": None,
        "nir": str(nir_file),
        "nir_mapping": imported.mapping.to_dict(),
        "nir_read_note": read_note,
    }
    write_json(out / QUANTIZE_RECORD, record)
    return record
