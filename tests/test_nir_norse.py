"""A network made and exported with Norse, imported: ``tests/fixtures/norse`` holds the graph
Norse 1.1.0's ``to_nir`` wrote and Norse's own simulation of it on 64 random samples (written by
``make_norse_fixture.py`` there; Norse itself is not a dependency).

Two things about that file are Norse's, and the import must get past both: the input's type
carries the batch dimension, which NIR's type inference refuses; and each ``tau`` is written as
``dt / tau_mem_inv`` rather than ``1 / tau_mem_inv``, so the step that gives Norse's decay
``dt * tau_mem_inv`` is ``dt**2`` (1e-6 s for Norse's 1 ms).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from simulators import needs_icarus

from neurofptt.cli import main
from neurofptt.exchange import from_nir, read_nir

nir = pytest.importorskip("nir", reason="pip install 'neurofptt[nir]'")

torch.set_num_threads(1)
FIXTURE = Path(__file__).parent / "fixtures" / "norse"
GRAPH = FIXTURE / "norse_lif.nir"
NORSE_DT = 1e-3
IMPORT_DT = NORSE_DT**2  # the step Norse's tau = dt / tau_mem_inv implies


@pytest.fixture(scope="module")
def norse_run() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE / "norse_run.npz"))


def test_the_file_fails_nirs_type_check_and_reads_without_it() -> None:
    with pytest.raises(ValueError, match="[Tt]ype"):
        nir.read(GRAPH)
    graph, note = read_nir(GRAPH)
    assert "type check" in note
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Affine", "LIF", "LI"}


def test_imported_model_reproduces_norses_simulation(norse_run) -> None:
    """Readouts equal Norse's to float32 rounding, so every prediction is Norse's; each decay
    is a shift leak exactly."""
    graph, _ = read_nir(GRAPH)
    imported = from_nir(graph, dt=IMPORT_DT)
    mapping = imported.mapping.to_dict()
    assert abs(mapping["leak"]["error"]) < 1e-6 and abs(mapping["out_leak"]["error"]) < 1e-6
    assert mapping["nodes"]["w_rec"] is None  # Norse exports no recurrent cell
    x = torch.from_numpy(norse_run["x"].astype(np.float32))
    with torch.no_grad():
        readout = imported.model(x)[0].numpy()
    assert np.abs(readout - norse_run["readout"]).max() < 1e-5
    predicted = readout[:, -1].argmax(-1)
    assert np.array_equal(predicted, norse_run["readout"][:, -1].argmax(-1))


def test_a_wrong_dt_is_refused_with_the_fix(capsys, tmp_path: Path) -> None:
    """Norse's default 1 ms read as the step gives a decay beyond one per step: one line that
    asks for the graph's dt."""
    assert main(["quantize", "--nir", str(GRAPH), "--dt", "1e-3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dt" in err[0]


@pytest.mark.slow
@pytest.mark.rtl
@needs_icarus
def test_norse_network_through_the_command_line(norse_run, tmp_path: Path) -> None:
    """``quantize --nir --dt --data``, ``generate``, ``verify --data``: labelled with Norse's
    own predictions, the imported float model agrees with Norse on every sample, the golden
    model on nearly all, and the core matches the golden model."""
    data = tmp_path / "norse.npz"
    x, labels = norse_run["x"], norse_run["readout"][:, -1].argmax(-1)
    np.savez(data, x_train=x, y_train=labels, x_test=x, y_test=labels, n_classes=np.int64(3))
    out = tmp_path / "imported"
    args = ["quantize", "--nir", str(GRAPH), "--dt", str(IMPORT_DT), "--data", str(data)]
    assert main([*args, "--out", str(out)]) == 0
    record = json.loads((out / "quantize.json").read_text())
    assert record["float_accuracy"] == 1.0 and record["golden_accuracy"] >= 0.9
    assert "type check" in record["nir_read_note"]
    assert main(["generate", "--out", str(out)]) == 0
    assert main(["verify", "--out", str(out), "--data", str(data), "--samples", "8"]) == 0
    assert json.loads((out / "verify.json").read_text())["rtl_mismatches"] == 0
