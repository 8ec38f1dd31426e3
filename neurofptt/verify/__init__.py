"""RTL verification: cocotb + Icarus Verilog runs of the generated core against the golden model."""

from neurofptt.verify.compare import Mismatch, compare_traces, format_report
from neurofptt.verify.runner import (
    LearningRtlResult,
    RtlResult,
    require_icarus,
    run_rtl,
    run_rtl_learning,
)

__all__ = [
    "LearningRtlResult",
    "Mismatch",
    "RtlResult",
    "compare_traces",
    "format_report",
    "require_icarus",
    "run_rtl",
    "run_rtl_learning",
]
