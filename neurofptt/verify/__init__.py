"""RTL verification: cocotb + Icarus Verilog runs of the generated core against the golden model."""

from neurofptt.verify.compare import Mismatch, compare_traces, format_report
from neurofptt.verify.runner import RtlResult, require_icarus, run_rtl

__all__ = [
    "Mismatch",
    "RtlResult",
    "compare_traces",
    "format_report",
    "require_icarus",
    "run_rtl",
]
