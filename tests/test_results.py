"""Run records: save/load round trip, filtering, and aggregation over seeds against numpy by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from icd_lib.results import RunRecord, aggregate, load_record, load_records, provenance, record_path, save_record


def make_record(name: str, method: str, seed: int, best: float, last: float, teacher: str | None = "resnet20") -> RunRecord:
    return RunRecord(
        name=name, role="student", method=method, student="resnet8", teacher=teacher, seed=seed, config={"seed": seed},
        history=[{"epoch": 1, "test_top1": last}], best_top1=best, best_top5=99.0, best_epoch=1,
        last_top1=last, last_top5=98.0, wall_time_s=1.5, device="cpu", profile="book",
    )


def test_save_and_load_round_trip(tmp_path):
    record = make_record("kd-0", "kd", 0, 80.0, 79.5)
    path = save_record(record, tmp_path / "results")
    assert path == record_path(tmp_path / "results", "kd-0") and path.is_file()
    assert load_record(path) == record
    assert not list((tmp_path / "results").glob("*.tmp"))  # the atomic write left no temporary file


def test_a_record_holds_every_provenance_field(tmp_path):
    """The training loop builds its record with ``**provenance()``: every key must be a field."""
    info = provenance()
    assert {"versions", "git_commit", "git_dirty", "command", "created"} <= set(info)
    record = RunRecord(**{**make_record("p", "kd", 0, 80.0, 79.0).to_dict(), **info})
    assert load_record(save_record(record, tmp_path)) == record
    assert record.git_dirty in (True, False, None) and record.versions["torch"]


def test_load_records_filters_by_field(tmp_path):
    for i, (method, seed) in enumerate([("kd", 0), ("kd", 1), ("icd", 0)]):
        save_record(make_record(f"r{i}", method, seed, 80.0 + i, 79.0), tmp_path)
    assert [r.name for r in load_records(tmp_path)] == ["r0", "r1", "r2"]
    assert [r.name for r in load_records(tmp_path, method="kd")] == ["r0", "r1"]
    assert [r.name for r in load_records(tmp_path, method="kd", seed=1)] == ["r1"]
    with pytest.raises(TypeError, match="unknown record fields"):
        load_records(tmp_path, colour="red")
    with pytest.raises(FileNotFoundError, match="sweep"):
        load_records(tmp_path / "nowhere")


def test_broken_record_is_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="lacks fields"):
        load_record(tmp_path / "bad.json")


def test_aggregate_mean_and_std_over_seeds():
    kd_best, icd_best = [80.1, 79.3, 80.9], [81.0, 82.5]
    records = [make_record(f"kd{s}", "kd", s, b, b - 1) for s, b in enumerate(kd_best)]
    records += [make_record(f"icd{s}", "icd", s, b, b - 0.5) for s, b in enumerate(icd_best)]
    records.append(make_record("plain", "student", 0, 77.0, 76.0, teacher=None))
    rows = aggregate(records)
    assert [(r["method"], r["teacher"], r["n"], r["seeds"]) for r in rows] == [
        ("kd", "resnet20", 3, [0, 1, 2]), ("icd", "resnet20", 2, [0, 1]), ("student", None, 1, [0])
    ]
    kd = rows[0]
    assert kd["best_top1_mean"] == pytest.approx(sum(kd_best) / 3)
    by_hand = math.sqrt(sum((b - sum(kd_best) / 3) ** 2 for b in kd_best) / 2)  # sample std, ddof = 1
    assert kd["best_top1_std"] == pytest.approx(by_hand)
    assert kd["last_top1_mean"] == pytest.approx(np.mean(kd_best) - 1)
    assert rows[1]["best_top1_std"] == pytest.approx(abs(icd_best[0] - icd_best[1]) / math.sqrt(2))
    assert math.isnan(rows[2]["best_top1_std"])
    by_method = aggregate(records, by=("method",), metrics=("best_top5",))
    assert set(by_method[0]) == {"method", "n", "seeds", "best_top5_mean", "best_top5_std"}
