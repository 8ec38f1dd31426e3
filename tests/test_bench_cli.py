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


def test_bench_golden_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "golden.json"
    args = ["bench", "golden", "--networks", "3-5-2,4-6-3", "--batch", "2", "--T", "4"]
    assert main([*args, "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["net"] for r in result["records"]] == ["3-5-2", "4-6-3"]
    for r in result["records"]:
        assert (r["batch"], r["T"], r["threads"], r["kernel"]) == (2, 4, 1, "float32")
        assert r["golden_seconds"] > 0 and r["float_seconds"] > 0
        assert r["ratio"] == r["golden_seconds"] / r["float_seconds"]
    assert "load_average" in result["conditions"]
    assert "golden ms" in capsys.readouterr().err


def test_bench_golden_rejects_bad_networks(capsys) -> None:
    assert main(["bench", "golden", "--networks", "32-128"]) == 2
    assert "N_IN-N_REC-N_OUT" in capsys.readouterr().err
