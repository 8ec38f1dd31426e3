"""Fixed-point formats, the hardware configuration, the quantizer and the golden model."""

from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.golden import GoldenState, GoldenTrace, golden_run, golden_step, predict
from neurofptt.quant.network import QuantizedNetwork

__all__ = [
    "GoldenState",
    "GoldenTrace",
    "HardwareConfig",
    "QuantizedNetwork",
    "golden_run",
    "golden_step",
    "predict",
]
