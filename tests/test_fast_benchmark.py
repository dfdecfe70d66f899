"""The throughput benchmark's small mode runs on the CPU and reports consistent figures."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


@pytest.mark.slow
def test_small_throughput_run_reports_all_three_paths(capsys):
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--small", "--parts", "throughput", "--steps", "2", "--device", "cpu"])
    rows = {row["path"]: row for row in results["throughput"]}
    assert set(rows) == {"reference", "plain", "fast"}
    assert rows["reference"]["speedup_vs_reference"] == 1.0
    for row in rows.values():
        assert row["images_per_s"] > 0
        assert row["ms_per_step"] == pytest.approx(1000 * 64 / row["images_per_s"])
        # 240 epochs of ceil(50,000 / 64) = 782 steps
        assert row["projected_recipe_min"] == pytest.approx(row["ms_per_step"] * 782 * 240 / 60_000)
    assert "img/s" in capsys.readouterr().out
