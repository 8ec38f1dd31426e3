"""The Verilog kept in ``hdl/`` is exactly what the generator gives for its quantized model.

``hdl/quantized.npz`` is the demo network (default configuration, trained with FPTT);
``hdl/rtl/`` holds the Verilog, the memory files and ``design.json`` generated from it.  If the
generator changes, this test fails until ``make hdl`` regenerates the reference.
"""

from __future__ import annotations

from pathlib import Path

from neurofptt.flow.stages import CORE_NAME
from neurofptt.hdl import generate_verilog
from neurofptt.quant import HardwareConfig, QuantizedNetwork

HDL = Path(__file__).resolve().parents[1] / "hdl"


def test_reference_uses_the_default_configuration() -> None:
    net = QuantizedNetwork.load(HDL / "quantized.npz")
    shifts = {k: getattr(net.config, k) for k in ("w_in_shift", "w_rec_shift", "w_out_shift")}
    assert net.config == HardwareConfig().replace(**shifts)


def test_regenerating_the_reference_gives_the_same_files(tmp_path: Path) -> None:
    net = QuantizedNetwork.load(HDL / "quantized.npz")
    design = generate_verilog(net, tmp_path, name=CORE_NAME)
    reference = sorted(p.name for p in (HDL / "rtl").iterdir())
    assert sorted(p.name for p in design.files) == reference
    for path in design.files:
        expected = (HDL / "rtl" / path.name).read_text()
        assert path.read_text() == expected, f"{path.name} differs; run `make hdl`"
