"""Whether a register in Amaranth's Verilog carries ``keep``: the mark that stops Yosys from
merging copies of one register back into one (:data:`neurofptt.hdl.synth.KEEP_COPIES`)."""

from __future__ import annotations

import re


def register_behind(text: str, name: str) -> str:
    """The Verilog name of the register that drives the signal ``name`` in ``text`` (one
    module): Amaranth may name a register after a port it feeds and keep ``name`` as an
    ``assign`` of it."""
    escaped = r"\\?" + re.escape(name) + r"\s*"
    alias = re.search(rf"assign\s+{escaped}=\s*(\\\S+|\w+)\s*;", text)
    return name if alias is None else register_behind(text, alias.group(1).lstrip("\\"))


def is_kept(text: str, name: str) -> bool:
    """Whether the register behind signal ``name`` is declared with ``(* keep *)``."""
    reg = re.escape(register_behind(text, name))
    declared = rf"\(\* keep = 32'd1 \*\)\s*(\(\*[^)]*\*\)\s*)*reg [^;]*\\?{reg}\b"
    return re.search(declared, text) is not None
