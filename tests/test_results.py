"""Run records: save/load round trip, filtering, and aggregation over seeds against numpy by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from icd_lib.experiments.spec import RunSpec, load_run_record, make_spec
from icd_lib.results import RunRecord, aggregate, load_record, load_records, provenance, record_path, save_record


def make_record(name: str, method: str, seed: int, best: float, last: float, teacher: str | None = "resnet20",
                dataset: str = "fashion_mnist", role: str = "student") -> RunRecord:
    spec = {"profile": "book", "method": method, "model": "resnet8", "teacher": teacher, "seed": seed,
            "dataset": dataset, "style_mode": None, "epochs": 8, "train_size": 10000, "weights": {}, "options": {}}
    return RunRecord(
        name=name, role=role, method=method, model="resnet8", teacher=teacher, seed=seed, config={"seed": seed},
        history=[{"epoch": 1, "test_top1": last}], best_top1=best, best_top5=99.0, best_epoch=1,
        last_top1=last, last_top5=98.0, wall_time_s=1.5, device="cpu", profile="book", dataset=dataset, spec=spec,
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


def test_a_record_written_before_the_host_field_still_loads(tmp_path):
    old = make_record("old", "kd", 0, 80.0, 79.0).to_dict()
    del old["host"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    record = load_record(tmp_path / "old.json")
    assert record.host is None and record.last_top1 == 79.0
    host = {"cpus": 2, "threads": 1, "load_start": 2.1, "load_end": None}
    assert load_record(save_record(RunRecord(**{**old, "host": host}), tmp_path)).host == host

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
    top5 = aggregate(records, metrics=("best_top5",))
    assert {"best_top5_mean", "best_top5_std"} <= set(top5[0]) and "best_top1_mean" not in top5[0]


def test_aggregate_keeps_different_experiments_apart():
    """Runs of one recipe on other data, or a teacher, are other experiments, not more seeds."""
    records = [make_record("fm0", "student", 0, 85.0, 85.0, teacher=None),
               make_record("cs0", "student", 0, 77.0, 77.0, teacher=None, dataset="content_style"),
               make_record("fm1", "student", 1, 86.0, 86.0, teacher=None)]
    rows = aggregate(records)
    assert [(r["dataset"], r["n"], r["seeds"]) for r in rows] == [("fashion_mnist", 2, [0, 1]), ("content_style", 1, [0])]
    weighted = make_record("w0", "kd", 0, 80.0, 80.0)
    weighted.spec = {**weighted.spec, "weights": {"kd": 0.5}}
    assert len(aggregate([make_record("k0", "kd", 0, 80.0, 80.0), weighted])) == 2


def test_aggregate_refuses_repeated_seeds():
    with pytest.raises(ValueError, match="repeated seeds"):
        aggregate([make_record("a", "kd", 0, 80.0, 80.0), make_record("b", "kd", 0, 81.0, 81.0)])


@pytest.mark.parametrize("field, value, message", [
    ("best_top1", None, "best_top1 must be a finite number"),
    ("best_top1", 1e6, "best_top1 is a percentage, but the record says 1000000.0"),
    ("last_top5", 100.5, "last_top5 is a percentage"),
    ("last_top1", -1.0, "last_top1 must be a finite number >= 0"),
    ("wall_time_s", -5.0, "wall_time_s must be a finite number >= 0"),
    ("seed", -1, "seed must be a non-negative integer"),
    ("best_epoch", 2, "best_epoch must be one of the 1 epochs, got 2"),
    ("best_epoch", 0, "best_epoch must be one of the 1 epochs, got 0"),
    ("last_top1", float("nan"), "last_top1 must be a finite number"),
    ("last_top1", "79.5", "last_top1 must be a finite number"),
    ("seed", "0", "seed must be a non-negative integer"),
    ("format", 7, "record format 7"),
    ("history", [], "history must be a non-empty list"),
])
def test_malformed_records_are_refused(tmp_path, field, value, message):
    path = save_record(make_record("bad", "kd", 0, 80.0, 79.5), tmp_path)
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_record(path)


def test_a_full_disk_is_named_and_leaves_no_partial_record(tmp_path, monkeypatch):
    import errno as errno_module

    from icd_lib.results import records

    def full(*args, **kwargs):
        raise OSError(errno_module.ENOSPC, "No space left on device")

    monkeypatch.setattr(records.json, "dump", full)
    with pytest.raises(OSError, match="no space left on the device to write .*kd-0.json; free some space"):
        save_record(make_record("kd-0", "kd", 0, 80.0, 79.5), tmp_path)
    assert not list(tmp_path.iterdir())


COMMITTED = sorted((Path(__file__).resolve().parents[1] / "results").glob("*.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_every_committed_record_loads_and_is_the_run_its_file_names(path):
    record = load_run_record(path)
    spec = RunSpec.from_name(path.stem)
    assert record.name == path.stem == spec.name
    assert RunSpec.from_identity(record.spec) == spec and RunSpec.from_name(spec.name) == spec


def run_record(spec: RunSpec, last: float = 80.0) -> RunRecord:
    return RunRecord(name=spec.name, role="student", method=spec.method, model=spec.model, teacher=spec.teacher,
                     seed=spec.seed, config={}, history=[{"epoch": 1, "test_top1": last}], best_top1=last,
                     best_top5=99.0, best_epoch=1, last_top1=last, last_top5=99.0, wall_time_s=1.0, device="cpu",
                     spec=spec.identity())


def test_a_record_copied_to_another_runs_file_name_is_refused_naming_both(tmp_path):
    seed0, seed1 = make_spec("book", "kd", seed=0), make_spec("book", "kd", seed=1)
    source = save_record(run_record(seed0), tmp_path)
    copy = record_path(tmp_path, seed1.name)
    copy.write_text(source.read_text())
    with pytest.raises(ValueError, match=f"{copy} is not a valid run record .*record of run {seed0.name}, "
                                         f"not of {seed1.name}.*delete it"):
        load_record(copy)


def test_a_record_edited_into_another_run_is_refused(tmp_path):
    seed0, seed1 = make_spec("book", "kd", seed=0), make_spec("book", "kd", seed=1)
    edited = run_record(seed0)
    edited.name = seed1.name  # the name says seed 1, the spec still seed 0
    with pytest.raises(ValueError, match=f"its spec is that of run {seed0.name}, not of {seed1.name}"):
        load_run_record(save_record(edited, tmp_path))


def test_a_format_2_record_reads_with_the_trained_network_as_model(tmp_path):
    """Format 2 called the trained network ``student`` (top level, spec, config); it reads back
    under ``model`` with the same experiment as the same run written today, name unchanged."""
    spec = make_spec("book", "kd", seed=1)
    today = make_record(spec.name, "kd", 1, 80.0, 79.5)
    today.spec, today.config = spec.identity(), spec.train_config().to_dict()
    old = today.to_dict()
    old["format"] = 2
    old = {("student" if k == "model" else k): v for k, v in old.items()}
    for part in ("spec", "config"):
        old[part] = {("student" if k == "model" else k): v for k, v in old[part].items()}
    path = tmp_path / "results" / f"{spec.name}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(old))

    read = load_record(path)
    assert "student" not in json.dumps({k: read.to_dict()[k] for k in ("spec", "config")})
    assert (read.name, read.model, read.spec["model"], read.config["model"]) == (spec.name, "resnet8", "resnet8", "resnet8")
    assert read.experiment() == today.experiment()
    assert load_run_record(path).name == spec.name
