"""The benchmark and rule selection through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from neurofptt.cli import main


def test_bench_rules_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "rules",
            "--rules",
            "bptt,fptt",
            "--T",
            "8,32",
            "--hidden",
            "8",
            "--batch",
            "2",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "b.png"),
        ]
    )
    assert code == 0
    records = json.loads(out.read_text())
    assert [(r["rule"], r["T"]) for r in records] == [
        ("bptt", 8),
        ("bptt", 32),
        ("fptt", 8),
        ("fptt", 32),
    ]
    for r in records:
        assert {"rule", "model", "T", "peak_bytes", "seconds_per_seq"} <= set(r)
        assert r["model"] == "lif" and r["peak_bytes"] >= 0 and r["seconds_per_seq"] > 0
    assert "peak MiB" in capsys.readouterr().err
    assert (tmp_path / "b.png").stat().st_size > 0


def test_bench_rejects_bad_lengths(capsys) -> None:
    assert main(["bench", "rules", "--T", "8,abc"]) == 2
    assert "--T must be comma-separated integers" in capsys.readouterr().err


def test_unsupported_rule_model_pair_lists_supported(tmp_path: Path, capsys) -> None:
    assert main(["train", "--rule", "eprop", "--model", "lstm", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "rule 'eprop' cannot train model 'lstm'" in err and "eprop: lif/alif/rnn" in err
