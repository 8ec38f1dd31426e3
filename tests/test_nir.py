"""NIR exchange: export of our network, import of graphs made elsewhere, refusals.

The export is checked against NIR's own semantics by a small simulator written here, independent
of :mod:`neurofptt.exchange.nir`: forward-Euler steps of each node's ODE at the graph's ``dt``,
edges that close a loop carrying the previous step's value.  The import is checked on a network
trained with snntorch and exported by snntorch's own ``export_to_nir``: the imported float model
must reproduce it, the golden model must keep its accuracy, and the RTL must match the golden
model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
from simulators import needs_icarus

from neurofptt.cli import main
from neurofptt.errors import CheckpointError, ConfigError
from neurofptt.exchange import (
    DEFAULT_DT,
    EXPORT_RECORD,
    NIR_FILE,
    export_nir,
    from_nir,
    nearest_leak_shift,
    quantize_nir,
    to_nir,
    write_nir,
)
from neurofptt.flow.config import FlowConfig
from neurofptt.flow.stages import QUANTIZED, stage_generate, stage_train, stage_verify
from neurofptt.models.spiking import SpikingRNN
from neurofptt.quant import HardwareConfig, QuantizedNetwork, golden_run
from neurofptt.quant.quantizer import dequantize_into, quantize
from neurofptt.tasks import load_task

nir = pytest.importorskip(
    "nir", reason="the NIR exchange needs the optional 'nir' package: pip install 'neurofptt[nir]'"
)

torch.set_num_threads(1)


# -- an independent simulator of NIR's semantics --------------------------------------------------
def _flat(graph, prefix=""):
    """Nodes and edges with subgraphs opened; a subgraph's Input/Output become identity nodes."""
    nodes, edges = {}, []
    for name, node in graph.nodes.items():
        key = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flat(node, f"{key}/")
            nodes.update(sub_nodes)
            edges += sub_edges
        else:
            nodes[key] = node

    def end(name, cls):
        node = graph.nodes[name]
        if isinstance(node, nir.NIRGraph):
            (inner,) = [k for k, n in node.nodes.items() if isinstance(n, cls)]
            return f"{prefix}{name}/{inner}"
        return f"{prefix}{name}"

    edges += [(end(a, nir.Output), end(b, nir.Input)) for a, b in graph.edges]
    return nodes, edges


def simulate_nir(graph, x: np.ndarray, dt: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``x`` ``(B, T, n_in)`` through ``graph``: one forward-Euler step of every node per time
    step (``v += dt/tau (v_leak - v + r I)``; a LIF fires where ``v > v_threshold`` and is set to
    ``v_reset``; a CubaLIF's current ``I += dt/tau_syn (-I + w_in S)`` is updated first).  An edge
    into a node already on the depth-first path from the input (a loop) carries the previous
    step's value.  Returns the Output node's ``(B, T, n)`` values and every node's spikes."""
    nodes, edges = _flat(graph)
    (start,) = [k for k, n in nodes.items() if isinstance(n, nir.Input) and "/" not in k]
    (stop,) = [k for k, n in nodes.items() if isinstance(n, nir.Output) and "/" not in k]
    succ = {k: [b for a, b in edges if a == k] for k in nodes}
    order, delayed, on_path, done = [], set(), set(), set()

    def visit(k):
        on_path.add(k)
        for s in succ[k]:
            if s in on_path:
                delayed.add((k, s))
            elif s not in done:
                visit(s)
        on_path.discard(k)
        done.add(k)
        order.append(k)

    visit(start)
    order.reverse()
    batch, steps, _ = x.shape
    value = {k: 0.0 for k in nodes}
    state: dict[str, dict[str, np.ndarray]] = {k: {} for k in nodes}
    outputs, spikes = [], {k: [] for k, n in nodes.items() if hasattr(n, "v_threshold")}
    for t in range(steps):
        previous = dict(value)
        for k in order:
            n = nodes[k]
            if k == start:
                value[k] = x[:, t]
                continue
            inp = sum((previous[a] if (a, k) in delayed else value[a]) for a, b in edges if b == k)
            if isinstance(n, nir.Linear):
                value[k] = inp @ np.asarray(n.weight, float).T
            elif isinstance(n, nir.Affine):
                value[k] = inp @ np.asarray(n.weight, float).T + np.asarray(n.bias, float)
            elif isinstance(n, nir.LIF | nir.LI | nir.CubaLIF | nir.CubaLI):
                s = state[k]
                current = inp
                if isinstance(n, nir.CubaLIF | nir.CubaLI):
                    s.setdefault("i", np.zeros((batch, len(n.tau_mem))))
                    s["i"] = s["i"] + dt / n.tau_syn * (-s["i"] + n.w_in * inp)
                    current, tau = s["i"], n.tau_mem
                else:
                    tau = n.tau
                v = s.get("v", np.zeros((batch, len(tau))))
                v = v + dt / tau * (n.v_leak - v + n.r * current)
                if hasattr(n, "v_threshold"):
                    z = v > n.v_threshold
                    v = np.where(z, n.v_reset, v)
                    value[k] = z.astype(float)
                    spikes[k].append(z)
                else:
                    value[k] = v
                s["v"] = v
            else:  # Input / Output / identity
                value[k] = inp
        outputs.append(value[stop])
    return np.stack(outputs, 1), {k: np.stack(v, 1) for k, v in spikes.items() if v}


# -- helpers --------------------------------------------------------------------------------------
def random_model(cfg: HardwareConfig, seed: int = 0, gain: float = 4.0) -> SpikingRNN:
    """Our float network with random weights, the input ones raised so that neurons fire."""
    torch.manual_seed(seed)
    model = SpikingRNN.from_config(cfg, input_gain=gain)
    model.eval()
    return model


def readouts(model: SpikingRNN, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out, _ = model.double()(torch.from_numpy(x.astype(np.float64)))
    model.float()
    return out.numpy()


def random_spikes(batch: int, steps: int, n_in: int, rate: float = 0.3, seed: int = 1):
    return (np.random.default_rng(seed).random((batch, steps, n_in)) < rate).astype(np.float64)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


SMALL = HardwareConfig(n_in=12, n_rec=20, n_out=5, reset="zero")


# -- (a) export -----------------------------------------------------------------------------------
def test_export_writes_a_graph_that_reads_back_and_type_checks(tmp_path: Path) -> None:
    graph = to_nir(random_model(SMALL))
    path = write_nir(tmp_path / NIR_FILE, graph)
    back = nir.read(path)
    back.infer_types()
    assert back.check_types()
    assert {k: type(n).__name__ for k, n in back.nodes.items()} == {
        "input": "Input",
        "fc_in": "Linear",
        "rec": "NIRGraph",
        "fc_out": "Linear",
        "readout": "LI",
        "output": "Output",
    }
    rec = back.nodes["rec"]
    assert isinstance(rec.nodes["lif"], nir.LIF) and isinstance(rec.nodes["w_rec"], nir.Linear)
    assert float(back.metadata["dt"]) == DEFAULT_DT
    assert np.array_equal(back.output_type["output"], [SMALL.n_out])


def test_export_reproduces_our_model_under_nir_semantics(tmp_path: Path) -> None:
    """Zero reset is NIR's own LIF reset, so the graph simulated with NIR's equations gives our
    float model's readouts, step by step."""
    model = random_model(SMALL)
    graph = nir.read(write_nir(tmp_path / NIR_FILE, to_nir(model)))
    x = random_spikes(16, 12, SMALL.n_in)
    out, spikes = simulate_nir(graph, x, float(graph.metadata["dt"]))
    rate = spikes["rec/lif"].mean()
    assert 0.05 < rate < 0.95, rate  # the recurrent layer is neither silent nor saturated
    np.testing.assert_allclose(out, readouts(model, x), rtol=1e-9, atol=1e-9)


def test_export_of_a_quantized_network_holds_the_chips_weights(tmp_path: Path) -> None:
    """The graph of a QuantizedNetwork has exactly the integer weights scaled back, and under
    NIR's semantics runs as the float model with those weights."""
    model = random_model(SMALL, seed=3)
    net, _ = quantize(model, SMALL)
    graph = to_nir(net)
    dequantize_into(model, net)
    assert np.array_equal(
        graph.nodes["fc_in"].weight, model.rec.fc_in.weight.detach().double().numpy()
    )
    assert np.array_equal(
        graph.nodes["rec"].nodes["w_rec"].weight, model.rec.fc_rec.weight.detach().double().numpy()
    )
    assert graph.metadata["weights"] == "quantized"
    x = random_spikes(8, 10, SMALL.n_in, seed=4)
    out, _ = simulate_nir(graph, x, DEFAULT_DT)
    np.testing.assert_allclose(out, readouts(model, x), rtol=1e-9, atol=1e-9)
    # and back: the same codes and formats
    imported = from_nir(graph, net.config)
    again, _ = quantize(imported.model, imported.hardware)
    assert again.config == net.config
    for key in ("w_in", "w_rec", "w_out"):
        assert np.array_equal(getattr(again, key), getattr(net, key))


def test_reset_by_subtraction_travels_in_the_metadata(tmp_path: Path) -> None:
    """NIR's LIF cannot subtract; the export says so and neurofptt reads its own note back."""
    cfg = SMALL.replace(reset="subtract")
    net, _ = quantize(random_model(cfg), cfg)
    net.save(tmp_path / QUANTIZED)
    record = export_nir(tmp_path)
    assert record["exact_in_nir"] is False and "subtract" in record["note"]
    assert json.loads((tmp_path / EXPORT_RECORD).read_text()) == record
    graph = nir.read(tmp_path / NIR_FILE)
    imported = from_nir(graph)
    assert imported.hardware.reset == "subtract"
    assert "metadata" in imported.mapping.reset_source


def test_export_nir_from_a_checkpoint(tmp_path: Path) -> None:
    base = FlowConfig()
    cfg = dataclasses.replace(
        base,
        hardware=base.hardware.replace(n_rec=16, reset="zero"),
        train=dataclasses.replace(base.train, rule="bptt", epochs=1, qat_epochs=0),
    )
    stage_train(cfg, tmp_path, progress=False)
    record = export_nir(tmp_path, tmp_path / "checkpoint.pt")
    assert record["weights"] == "float" and record["exact_in_nir"] is True
    assert (record["n_in"], record["n_rec"], record["n_out"]) == (32, 16, 10)
    graph = nir.read(tmp_path / NIR_FILE)
    assert graph.nodes["rec"].nodes["lif"].tau.shape == (16,)


def test_export_refuses_other_models() -> None:
    with pytest.raises(ConfigError) as exc:
        to_nir(torch.nn.Linear(2, 2))
    assert "Linear" in one_line(exc)


# -- (b) a network from snntorch ------------------------------------------------------------------
class SnntorchNet(torch.nn.Module):
    """Linear -> RLeaky(all_to_all) -> Linear -> Leaky (no reset: the readout), per-neuron tensor
    beta and threshold (snntorch's export needs them so), default reset by subtraction."""

    def __init__(self, n_in: int, n_rec: int, n_out: int) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, n_rec, bias=False)
        self.rlif = snn.RLeaky(
            beta=torch.full((n_rec,), 0.75),
            threshold=torch.ones(n_rec),
            linear_features=n_rec,
            all_to_all=True,
        )
        with torch.no_grad():  # the hardware has no biases
            self.rlif.recurrent.bias.zero_()
        self.rlif.recurrent.bias.requires_grad_(False)
        self.fc2 = torch.nn.Linear(n_rec, n_out, bias=False)
        self.li = snn.Leaky(
            beta=torch.full((n_out,), 0.875), threshold=torch.ones(n_out), reset_mechanism="none"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step from the reset state (what export_to_nir traces)."""
        return self.run(x[:, None])[:, -1]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_in)`` -> the readout's membrane ``(B, T, n_out)``."""
        spk, mem = self.rlif.init_rleaky()
        out = self.li.init_leaky()
        trace = []
        for t in range(x.shape[1]):
            spk, mem = self.rlif(self.fc1(x[:, t]), spk, mem)
            _, out = self.li(self.fc2(spk), out)
            trace.append(out)
        return torch.stack(trace, 1)


@pytest.fixture(scope="module")
def snntorch_digits(tmp_path_factory):
    """An snntorch network trained briefly (10 epochs of BPTT) on the digits, its test accuracy,
    and the NIR file snntorch's export_to_nir wrote for it."""
    pytest.importorskip("nirtorch", reason="snntorch's NIR export needs nirtorch")
    from snntorch.export_nir import export_to_nir

    task = load_task("digits")
    torch.manual_seed(0)
    net = SnntorchNet(32, 64, 10)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    x, y = task.train.x, task.train.y
    for _ in range(10):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            loss = torch.nn.functional.cross_entropy(net.run(x[idx])[:, -1], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        predictions = net.run(task.test.x)[:, -1].argmax(-1).numpy()
    accuracy = float(np.mean(predictions == task.test.y.numpy()))
    path = tmp_path_factory.mktemp("snntorch") / "snntorch.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, 32), ignore_dims=[0]))
    return net, task, accuracy, predictions, path


def test_snntorch_export_imports_as_the_same_float_network(snntorch_digits) -> None:
    net, task, accuracy, _, path = snntorch_digits
    imported = from_nir(nir.read(path), reset="subtract")
    m = imported.mapping
    assert m.nodes == {
        "w_in": "fc1",
        "hidden": "rlif.lif",
        "w_rec": "rlif.w_rec",
        "w_out": "fc2",
        "readout": "li",
    }
    assert (imported.hardware.leak_shift, imported.hardware.out_leak_shift) == (2, 3)
    assert abs(m.leak.error) < 1e-6 and abs(m.out_leak.error) < 1e-6  # float32 tau
    assert any("readout 'li' is a LIF" in note for note in m.notes)
    with torch.no_grad():
        ours, _ = imported.model(task.test.x)
        theirs = net.run(task.test.x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_snntorch_network_keeps_its_accuracy_on_the_golden_model(
    snntorch_digits, tmp_path: Path
) -> None:
    _, task, accuracy, predictions, path = snntorch_digits
    assert accuracy > 0.6  # it learned something, so the comparison means something
    record = quantize_nir(path, tmp_path, reset="subtract")
    assert record["task"] == "digits" and record["test_samples"] == len(task.test)
    assert record["float_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert abs(record["golden_accuracy"] - accuracy) <= 0.01
    assert sum(record["clipped_weights"].values()) == 0
    net = QuantizedNetwork.load(tmp_path / QUANTIZED)
    golden = golden_run(net, task.test.numpy_spikes()).predictions
    assert np.mean(golden == predictions) >= 0.9
    saved = json.loads((tmp_path / "quantize.json").read_text())
    assert saved["nir_mapping"]["reset"] == "subtract"
    assert saved["nir_mapping"]["leak"]["leak_shift"] == 2


def test_snntorch_graph_without_a_reset_argument_resets_to_zero(snntorch_digits) -> None:
    """snntorch writes v_reset = 0 whatever its reset; NIR reads that as reset to zero."""
    imported = from_nir(nir.read(snntorch_digits[-1]))
    assert imported.hardware.reset == "zero"
    assert any("reset='subtract'" in note for note in imported.mapping.notes)


@pytest.mark.slow
@pytest.mark.rtl
@needs_icarus
def test_snntorch_network_runs_on_the_rtl(snntorch_digits, tmp_path: Path) -> None:
    """snntorch -> NIR -> quantize -> generate -> verify: the core matches the golden model."""
    quantize_nir(snntorch_digits[-1], tmp_path, reset="subtract")
    stage_generate(tmp_path)
    record = stage_verify(tmp_path, samples=4)
    assert record["rtl_complete"] and record["rtl_mismatches"] == 0
    assert record["rtl_samples"] == 4


@pytest.mark.slow
@pytest.mark.rtl
@needs_icarus
def test_snntorch_network_through_the_command_line(snntorch_digits, tmp_path: Path) -> None:
    """The user's path with a network from snntorch and their data as a file:
    ``quantize --nir --data``, ``generate``, ``verify --data``; the golden model within a
    point of snntorch's accuracy and the core matching it."""
    _, task, accuracy, _, path = snntorch_digits
    data = tmp_path / "digits.npz"
    np.savez(
        data,
        x_train=task.train.numpy_spikes().astype(np.uint8),
        y_train=task.train.y.numpy(),
        x_test=task.test.numpy_spikes().astype(np.uint8),
        y_test=task.test.y.numpy(),
    )
    out = tmp_path / "imported"
    args = ["quantize", "--nir", str(path), "--reset", "subtract", "--data", str(data)]
    assert main([*args, "--out", str(out)]) == 0
    record = json.loads((out / "quantize.json").read_text())
    assert record["task"] == str(data) and record["test_samples"] == len(task.test)
    assert abs(record["golden_accuracy"] - accuracy) <= 0.01
    assert main(["generate", "--out", str(out)]) == 0
    assert main(["verify", "--out", str(out), "--data", str(data), "--samples", "8"]) == 0
    assert json.loads((out / "verify.json").read_text())["rtl_mismatches"] == 0


# -- (c) a graph built from NIR primitives --------------------------------------------------------
def primitives_graph(rng: np.random.Generator, *, beta: float = 0.75, flat: bool = True):
    """input -> Affine (zero bias) -> CubaLIF (tau_syn = dt, per-neuron thresholds and gains)
    with a recurrent Linear -> Linear -> LI (gain 2) -> output, flat or with the recurrent
    layer in a subgraph."""
    dt, n_in, n_rec, n_out = 1e-3, 6, 10, 3
    tau = dt / (1 - beta)
    lif = nir.CubaLIF(
        tau_syn=np.full(n_rec, dt),
        tau_mem=np.full(n_rec, tau),
        r=rng.uniform(0.5, 2.0, n_rec) * tau / dt,
        v_leak=np.zeros(n_rec),
        v_threshold=rng.uniform(0.5, 2.0, n_rec),
        v_reset=np.zeros(n_rec),
        w_in=np.full(n_rec, 1.5),
    )
    w_rec = nir.Linear(weight=rng.normal(0, 0.3, (n_rec, n_rec)))
    head = {
        "in": nir.Input(input_type=np.array([n_in])),
        "w1": nir.Affine(weight=rng.normal(0.4, 0.6, (n_rec, n_in)), bias=np.zeros(n_rec)),
    }
    tail = {
        "w2": nir.Linear(weight=rng.normal(0, 1, (n_out, n_rec))),
        "li": nir.LI(
            tau=np.full(n_out, dt / 0.125), r=np.full(n_out, 2 * 8.0), v_leak=np.zeros(n_out)
        ),
        "out": nir.Output(output_type=np.array([n_out])),
    }
    tail_edges = [("w2", "li"), ("li", "out")]
    if flat:
        nodes = {**head, "lif": lif, "rec": w_rec, **tail}
        edges = [("in", "w1"), ("w1", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "w2")]
    else:
        sub = nir.NIRGraph(
            nodes={
                "i": nir.Input(input_type=np.array([n_rec])),
                "lif": lif,
                "rec": w_rec,
                "o": nir.Output(output_type=np.array([n_rec])),
            },
            edges=[("i", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "o")],
        )
        nodes = {**head, "layer": sub, **tail}
        edges = [("in", "w1"), ("w1", "layer"), ("layer", "w2")]
    return nir.NIRGraph(nodes=nodes, edges=edges + tail_edges, metadata={"dt": dt}), dt


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "subgraph"])
def test_graph_from_primitives_imports_exactly(flat: bool, tmp_path: Path) -> None:
    """Gains, w_in and per-neuron thresholds fold into the weights: the imported float model
    gives the graph's readouts under NIR's semantics (the leaks are powers of two here)."""
    graph, dt = primitives_graph(np.random.default_rng(5), flat=flat)
    graph = nir.read(write_nir(tmp_path / "g.nir", graph))
    imported = from_nir(graph)
    m = imported.mapping
    assert m.dt == dt and m.dt_source == "graph metadata"
    assert m.reset == "zero" and imported.hardware.reset == "zero"
    assert (m.leak.error, m.out_leak.error) == (0.0, 0.0)
    assert m.readout_scale == (2.0, 2.0)
    assert any("scaled" in note for note in m.notes)  # thresholds differ per neuron
    x = random_spikes(16, 12, 6, rate=0.4, seed=6)
    out, spikes = simulate_nir(graph, x, dt)
    (layer_spikes,) = spikes.values()
    assert 0.05 < layer_spikes.mean() < 0.95
    np.testing.assert_allclose(readouts(imported.model, x), out, rtol=1e-5, atol=1e-5)


def test_decay_maps_to_the_nearest_shift_and_states_the_error() -> None:
    graph, _ = primitives_graph(np.random.default_rng(7), beta=0.8)
    imported = from_nir(graph, HardwareConfig(frac_bits=6, threshold=64, lanes=2))
    leak = imported.mapping.leak
    assert leak.leak_shift == 2 and leak.beta_hardware == 0.75
    assert leak.error == pytest.approx(-0.05) and leak.tau_steps == pytest.approx(5.0)
    hw = imported.hardware
    assert (hw.frac_bits, hw.threshold, hw.lanes) == (6, 64, 2)  # formats from the argument
    assert imported.model.hparams["threshold"] == 1.0 and imported.model.hparams["beta"] == 0.75
    assert [nearest_leak_shift(b, 15) for b in (0.0, 0.4, 0.9, 0.999)] == [0, 1, 3, 10]


def test_feedforward_hidden_layer_imports_with_zero_recurrent_weights() -> None:
    n = 4
    lif = nir.LIF(
        tau=np.full(n, 4e-4),
        r=np.full(n, 4.0),
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
        v_reset=np.zeros(n),
    )
    li = nir.LI(tau=np.full(2, 8e-4), r=np.full(2, 8.0), v_leak=np.zeros(2))
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=rng.normal(size=(n, 3))), lif, nir.Linear(weight=np.ones((2, n))), li
    )
    imported = from_nir(graph, reset="subtract")
    assert torch.count_nonzero(imported.model.rec.fc_rec.weight) == 0
    assert imported.hardware.reset == "subtract"
    assert any("W_rec = 0" in note for note in imported.mapping.notes)


def test_quantize_nir_of_a_graph_that_fits_no_task(tmp_path: Path) -> None:
    """A graph whose sizes are not the flow task's still quantizes; the record says why it has
    no accuracy, and the quantized model loads."""
    graph, _ = primitives_graph(np.random.default_rng(8))
    path = write_nir(tmp_path / "g.nir", graph)
    record = quantize_nir(path, tmp_path / "out")
    assert record["float_accuracy"] is None and record["golden_accuracy"] is None
    assert "no accuracy measured" in record["task_note"]
    net = QuantizedNetwork.load(tmp_path / "out" / QUANTIZED)
    assert (net.config.n_in, net.config.n_rec, net.config.n_out) == (6, 10, 3)
    assert record["nir_mapping"]["dt"] == 1e-3


def test_missing_or_foreign_nir_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        quantize_nir(tmp_path / "absent.nir", tmp_path)
    (tmp_path / "bad.nir").write_text("not hdf5")
    with pytest.raises(CheckpointError, match="bad.nir is not a readable NIR graph"):
        quantize_nir(tmp_path / "bad.nir", tmp_path)


# -- (d) graphs the hardware cannot run -----------------------------------------------------------
def _lif(n: int, **changes) -> nir.LIF:
    params = {
        "tau": np.full(n, 4e-4),
        "r": np.full(n, 4.0),
        "v_leak": np.zeros(n),
        "v_threshold": np.ones(n),
        "v_reset": np.zeros(n),
    }
    return nir.LIF(**{**params, **changes})


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _chain(hidden, *, w_in=None, extra=None):
    """input(3) -> w_in -> hidden (with a recurrent loop) -> w_out -> LI(2) -> output."""
    n = 4
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "w_in": w_in if w_in is not None else nir.Linear(weight=np.ones((n, 3))),
        "hidden": hidden,
        "w_rec": nir.Linear(weight=np.zeros((n, n))),
        "w_out": nir.Linear(weight=np.ones((2, n))),
        "readout": nir.LI(tau=np.full(2, 8e-4), r=np.full(2, 8.0), v_leak=np.zeros(2)),
        "output": nir.Output(output_type=np.array([2])),
    }
    edges = [
        ("input", "w_in"),
        ("w_in", "hidden"),
        ("hidden", "w_rec"),
        ("w_rec", "hidden"),
        ("hidden", "w_out"),
        ("w_out", "readout"),
        ("readout", "output"),
    ]
    return _graph(nodes, edges)


def _conv_graph():
    conv = nir.Conv2d(
        input_shape=(8, 8),
        weight=np.ones((2, 1, 3, 3)),
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=np.zeros(2),
    )
    graph = _chain(_lif(4))
    graph.nodes["conv"] = conv
    graph.edges = [("input", "conv"), ("conv", "w_in"), *graph.edges[1:]]
    return graph


def _two_layers():
    graph = _chain(_lif(4))
    graph.nodes.update(
        {
            "w_mid": nir.Linear(weight=np.ones((4, 4))),
            "hidden2": _lif(4),
            "w_rec2": nir.Linear(weight=np.zeros((4, 4))),
        }
    )
    edges = [e for e in graph.edges if e != ("hidden", "w_out")]
    graph.edges = edges + [
        ("hidden", "w_mid"),
        ("w_mid", "hidden2"),
        ("hidden2", "w_rec2"),
        ("w_rec2", "hidden2"),
        ("hidden2", "w_out"),
    ]
    return graph


def _delay_graph():
    graph = _chain(_lif(4))
    graph.nodes["delay"] = nir.Delay(delay=np.ones(4))
    graph.edges = [e for e in graph.edges if e != ("hidden", "w_out")] + [
        ("hidden", "delay"),
        ("delay", "w_out"),
    ]
    return graph


def _cuba(tau_syn: float):
    n = 4
    return nir.CubaLIF(
        tau_syn=np.full(n, tau_syn),
        tau_mem=np.full(n, 4e-4),
        r=np.full(n, 4.0),
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
    )


REFUSED = {
    "convolution": (_conv_graph, "'conv' is a convolution"),
    "two recurrent layers": (_two_layers, "'hidden2' is a second LIF layer"),
    "delay": (_delay_graph, "'delay' is a synaptic delay"),
    "synaptic current": (lambda: _chain(_cuba(5e-4)), "'hidden' is a CubaLIF with a synaptic"),
    "per-neuron decays": (
        lambda: _chain(_lif(4, tau=np.array([4e-4, 4e-4, 8e-4, 4e-4]))),
        "'hidden' has per-neuron decays",
    ),
    "bias": (
        lambda: _chain(_lif(4), w_in=nir.Affine(weight=np.ones((4, 3)), bias=np.ones(4))),
        "'w_in' is an Affine with a nonzero bias",
    ),
    "v_leak": (lambda: _chain(_lif(4, v_leak=np.ones(4))), "'hidden' has a nonzero v_leak"),
    "v_reset": (
        lambda: _chain(_lif(4, v_reset=np.full(4, -0.5))),
        "'hidden' resets to a nonzero v_reset",
    ),
    "tau below dt": (lambda: _chain(_lif(4, tau=np.full(4, 5e-5))), "shorter than the Euler"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unsupported_graphs_are_refused_in_one_line_naming_the_node(case: str) -> None:
    build, expected = REFUSED[case]
    with pytest.raises(ConfigError) as exc:
        from_nir(build())
    assert expected in one_line(exc)


def test_missing_readout_and_bad_arguments_are_refused() -> None:
    graph = _chain(_lif(4))
    graph.nodes.pop("readout")
    graph.edges = [e for e in graph.edges if "readout" not in e] + [("w_out", "output")]
    with pytest.raises(ConfigError) as exc:
        from_nir(graph)
    assert "ends after 'w_out'" in one_line(exc)
    with pytest.raises(ConfigError) as exc:
        from_nir(_chain(_lif(4)), reset="hold")
    assert "'hold'" in one_line(exc)


# -- the guide ------------------------------------------------------------------------------------
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "nir.md"


@pytest.mark.slow
@pytest.mark.rtl
@needs_icarus
def test_the_nir_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python block of docs/nir.md, in order, in an empty folder."""
    pytest.importorskip("nirtorch", reason="snntorch's NIR export needs nirtorch")
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)
    assert (tmp_path / "runs" / "nir" / NIR_FILE).is_file()


def test_snntorch_import_fails_as_the_guide_says(snntorch_digits, tmp_path: Path) -> None:
    """docs/nir.md records how snntorch's import_from_nir fails on our graph and on its own
    graph read back from a file; when this test fails, snntorch has changed: update the guide."""
    from snntorch.import_nir import import_from_nir

    ours = to_nir(random_model(SMALL))
    with pytest.raises(ValueError, match="Unknown node type .*LI'>"):
        import_from_nir(ours)
    with pytest.raises(AttributeError, match="'GraphModule' object has no attribute 'items'"):
        import_from_nir(nir.read(snntorch_digits[-1]))
