"""Summaries for the chapters, checked against formulas written out, and the transcribed paper tables
checked against the paper's own headline numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from icd_lib.eval.metrics import relative_improvement
from icd_lib.results import RunRecord
from icd_lib.results.reported import PAPER_RELATIVE_IMPROVEMENT, TABLE_1, TABLE_1_PAIRS, TABLE_2, TABLE_2_PAIRS
from icd_lib.experiments.spec import RunSpec
from icd_lib.results.summary import (compare_to, difference_interval, direction, experiment_rows,
                                     interval_text, label, mean_sd, metric_of, provenance_line, verdict)

T_975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463}  # Student's t quantiles, from tables


def record(method: str, seed: int, top1: float, weights=None, probe=90.0) -> RunRecord:
    spec = {"profile": "book", "method": method, "model": "resnet8", "teacher": "resnet20", "seed": seed,
            "dataset": "fashion_mnist", "style_mode": None, "epochs": 8, "train_size": 10000,
            "weights": weights or {}, "options": {}}
    return RunRecord(name=f"{method}-{seed}", role="student", method=method, model="resnet8", teacher="resnet20",
                     seed=seed, config={}, history=[{"epoch": 1}], best_top1=top1 + 0.5, best_top5=99.0, best_epoch=1,
                     last_top1=top1, last_top5=99.0, wall_time_s=1.0, device="cpu (1 threads, x86_64)", profile="book",
                     dataset="fashion_mnist", spec=spec, evaluation={"probe": {"test_top1": probe}}, git_commit="abc1234ff")


def test_paired_interval_is_the_t_interval_of_the_per_seed_differences():
    icd, kd = {0: 88.0, 1: 87.2, 2: 88.9}, {0: 87.5, 1: 87.0, 2: 88.0}
    d = [0.5, 0.2, 0.9]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    result = difference_interval(icd, kd)
    assert result["paired"] and result["n"] == 3
    assert result["difference"] == pytest.approx(mean)
    assert result["low"] == pytest.approx(mean - T_975[2] * sd / math.sqrt(3))
    assert result["high"] == pytest.approx(mean + T_975[2] * sd / math.sqrt(3))
    assert not result["excludes_zero"]  # three seeds: t(2) = 4.30, so the interval is wide
    assert difference_interval({0: 1.5, 1: 1.6, 2: 1.55}, {0: 1.0, 1: 1.0, 2: 1.0})["excludes_zero"]


def test_welch_interval_when_the_seeds_differ():
    a, b = {0: 1.0, 1: 3.0}, {5: 0.0, 6: 0.0, 7: 3.0}
    va, vb = np.var([1, 3], ddof=1) / 2, np.var([0, 0, 3], ddof=1) / 3
    dof = (va + vb) ** 2 / (va**2 / 1 + vb**2 / 2)
    from scipy import stats

    result = difference_interval(a, b)
    assert not result["paired"] and result["difference"] == pytest.approx(1.0)
    assert result["high"] - 1.0 == pytest.approx(stats.t.ppf(0.975, dof) * math.sqrt(va + vb))
    assert not result["excludes_zero"]
    single = difference_interval({0: 1.0}, {1: 2.0})
    assert math.isnan(single["low"]) and not single["excludes_zero"]


def interval(difference, low, high, n=3, paired=True):
    return {"difference": difference, "low": low, "high": high, "paired": paired, "n": n,
            "excludes_zero": low > 0 or high < 0, "confidence": 0.95}


@pytest.mark.parametrize("low, high, expected, text", [
    (-2.0, -0.5, "lower", "consistent: lower"),
    (-2.0, -0.5, "higher", "contradicted: lower"),
    (0.5, 2.0, "higher", "consistent: higher"),
    (0.5, 2.0, "lower", "contradicted: higher"),
    (-0.5, 2.0, "lower", "not resolved: the interval contains 0"),
    (-0.5, 2.0, "similar", "consistent: no difference detected, though the interval allows up to 2.00"),
    (0.5, 2.0, "similar", "contradicted: they differ"),
])
def test_verdict_reads_the_interval_against_the_claim(low, high, expected, text):
    assert verdict(interval((low + high) / 2, low, high), expected) == text


@pytest.mark.parametrize("low, high, found", [(-2.0, -0.5, "lower"), (0.5, 2.0, "higher"),
                                              (-0.5, 2.0, None), (-2.0, 0.0, None)])
def test_direction_is_the_side_of_zero_the_interval_excludes(low, high, found):
    assert direction(interval((low + high) / 2, low, high)) == found


def test_verdict_and_text_without_an_interval():
    single = difference_interval({0: 1.0}, {1: 2.0})
    assert verdict(single, "lower") == "not resolved: too few runs for an interval"
    assert direction(single) is None
    assert interval_text(single) == "-1.00 points (n = 1: too few for an interval)"
    assert interval_text(difference_interval({}, {0: 1.0})) == "no comparison: a side has no values"
    nan = difference_interval({0: math.nan, 1: 1.0, 2: 2.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    assert interval_text(nan) == "no comparison: a value is NaN (n = 3)"
    with pytest.raises(ValueError, match="expected must be"):
        verdict(single, "better")


def test_interval_text_gives_the_numbers_and_the_kind():
    paired = difference_interval({0: 1.5, 1: 1.6, 2: 1.55}, {0: 1.0, 1: 1.0, 2: 1.0})
    # per-seed differences 0.5, 0.6, 0.55: sd 0.05, half-width 4.3027 * 0.05 / sqrt(3) = 0.124
    assert interval_text(paired) == "+0.55 points, 95% paired interval [+0.43, +0.67], n = 3"
    welch = difference_interval({0: 1.0, 1: 3.0}, {5: 0.0, 6: 0.0, 7: 3.0}, confidence=0.9)
    assert "90% unpaired (Welch) interval" in interval_text(welch)


def test_rows_pool_seeds_per_experiment_and_compare_to_kd():
    records = [record("kd", s, v) for s, v in enumerate((87.5, 87.0, 88.0))]
    records += [record("icd+kd", s, v) for s, v in enumerate((88.0, 87.2, 88.9))]
    records += [record("icd+kd", 0, 85.0, weights={"kd": 0.5})]
    rows = compare_to(experiment_rows(records, metrics=("last_top1", "probe.test_top1")), "kd")
    assert [r["label"] for r in rows] == ["kd", "icd+kd", "icd+kd (kd=0.5)"]
    icd = rows[1]
    assert icd["n"] == 3 and icd["last_top1_mean"] == pytest.approx(88.0333333)
    assert icd["last_top1_sd"] == pytest.approx(np.std([88.0, 87.2, 88.9], ddof=1))
    assert icd["vs_kd"]["difference"] == pytest.approx(0.5333333)
    assert icd["probe.test_top1_mean"] == 90.0
    assert math.isnan(rows[2]["last_top1_sd"]) and not rows[2]["vs_kd"]["paired"]
    with pytest.raises(ValueError, match="repeated seeds"):
        experiment_rows([record("kd", 0, 1.0), record("kd", 0, 2.0)])
    assert label(records[-1]) == "icd+kd (kd=0.5)"
    assert mean_sd([2.0]) == (2.0, pytest.approx(float("nan"), nan_ok=True))


def test_a_record_without_a_metric_is_left_out_of_that_metric_only():
    kd = [record("kd", s, v) for s, v in enumerate((87.0, 88.0, 86.0))]
    kd[0].evaluation["logit_difference"] = 0.25
    kd[2].evaluation["logit_difference"] = 0.75  # seed 1 has none
    old = record("student", 0, 80.0)
    old.evaluation = None  # trained, never evaluated: no evaluation metric at all
    metrics = ("last_top1", "logit_difference", "probe.test_top1")
    rows = {r["label"]: r for r in experiment_rows([*kd, old], metrics=metrics)}
    row = rows["kd"]
    assert row["n"] == 3 and row["seeds"] == [0, 1, 2]
    assert (row["last_top1_mean"], row["last_top1_sd"], row["last_top1_n"]) == (87.0, 1.0, 3)
    assert row["values"]["logit_difference"] == {0: 0.25, 2: 0.75}
    assert row["logit_difference_n"] == 2 and row["logit_difference_mean"] == 0.5
    assert row["logit_difference_sd"] == pytest.approx(math.sqrt(0.125))  # (0.25^2 + 0.25^2) / (2 - 1)
    student = rows["student"]
    assert student["n"] == 1 and student["last_top1_mean"] == 80.0 and math.isnan(student["last_top1_sd"])
    for metric in ("logit_difference", "probe.test_top1"):
        assert student[f"{metric}_n"] == 0 and student["values"][metric] == {}
        assert math.isnan(student[f"{metric}_mean"]) and math.isnan(student[f"{metric}_sd"])
    nothing = compare_to(list(rows.values()), "kd", metric="logit_difference")[1]["vs_kd"]
    assert math.isnan(nothing["difference"]) and nothing["n"] == 0 and not nothing["excludes_zero"]
    with pytest.raises(KeyError, match="logit_difference"):
        metric_of(kd[1], "logit_difference")  # the single-record accessor still refuses
    with pytest.raises(KeyError, match="teacher_top1"):
        metric_of(kd[1], "teacher_top1")  # a field that is None

def test_provenance_line_names_plan_seeds_device_and_commit():
    records = [record("kd", 0, 1.0), record("kd", 2, 1.0)]
    line = provenance_line(records, "book", "comparison-a", width=None)
    assert line == ("plan book, group comparison-a; 2 runs; profile book; dataset fashion_mnist; seeds 0, 2; "
                    "device cpu (1 threads, x86_64); trained at commit abc1234")
    assert provenance_line(records, "book", "comparison-a").splitlines() == [
        "plan book, group comparison-a; 2 runs; profile book; dataset fashion_mnist; seeds 0, 2;",
        "  device cpu (1 threads, x86_64); trained at commit abc1234"]



def test_provenance_line_wraps_at_field_boundaries_and_keeps_every_field():
    records = [record("kd", seed, 1.0) for seed in range(12)]
    for i, r in enumerate(records):
        r.git_commit = f"{i:07x}" + "ff"
        r.device = f"NVIDIA H200 node {i % 4} (141 GiB, driver 550.54)"
    records[3].git_dirty = True
    text = provenance_line(records, "paper", "table-1", width=88)
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(line) <= 88 for line in lines)
    assert all(line.startswith("  ") for line in lines[1:]) and not lines[0].startswith(" ")
    devices = [f"NVIDIA H200 node {i} (141 GiB, driver 550.54)" for i in range(4)]
    commits = ", ".join(f"{i:07x}" for i in range(12))
    fields = ["plan paper, group table-1", "12 runs", "profile book", "dataset fashion_mnist",
              "seeds 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11", f"device {devices[0]}", *devices[1:],
              f"trained at commits {commits} (with uncommitted changes)"]
    assert provenance_line(records, "paper", "table-1", width=None) == "; ".join(fields)
    assert " ".join(line.strip() for line in lines) == "; ".join(fields)
    for field in fields[:-1]:  # each fits a line, so none is broken
        assert any(field in line for line in lines)
    narrow = provenance_line(records, "paper", "table-1", width=40).splitlines()
    assert all(len(line) <= 40 for line in narrow)  # the commits field is wider: broken at its spaces
    assert " ".join(line.strip() for line in narrow) == "; ".join(fields)


def test_group_status_fits_the_page():
    from icd_lib.experiments.groups import GroupRecords

    group = GroupRecords("book", "comparison-a", [record("kd", s, 1.0) for s in range(3)], ["x"] * 69)
    lines = group.status().splitlines()
    assert lines == ["plan book, group comparison-a: 3 of 72 runs recorded;",
                     "  the rest come from `python -m icd_lib plan book --run --group comparison-a`"]
    assert group.status(width=None) == " ".join(line.strip() for line in lines)
    done = GroupRecords("book", "causal", [record("kd", 0, 1.0)], [])
    assert done.status() == "plan book, group causal: all 1 runs recorded"

def test_rows_refuse_a_metric_no_record_has_and_a_none_value():
    records = [record("kd", s, 88.0) for s in range(2)]
    with pytest.raises(KeyError, match=r"no record has the metric 'last_top01'; give a record field \(.*last_top1"):
        experiment_rows(records, metrics=("last_top01",))
    with pytest.raises(KeyError, match=r"path into the evaluation \(probe.<key>\)"):
        experiment_rows(records, metrics=("probe.test_top01",))
    records[0].evaluation["probe"]["test_top1"] = None
    with pytest.raises(KeyError, match="has no 'probe.test_top1' \\(it is None\\)"):
        metric_of(records[0], "probe.test_top1")
    assert experiment_rows(records, metrics=("probe.test_top1",))[0]["probe.test_top1_n"] == 1


def test_a_group_cut_to_one_pair_keeps_its_runs_and_plain_students():
    from dataclasses import replace as changed

    from icd_lib.experiments.groups import GroupRecords, MissingRecordsError, comparison_records

    kd, plain = record("kd", 0, 1.0), changed(record("student", 0, 1.0), teacher=None)
    other = changed(record("kd", 1, 1.0), model="vgg8", teacher="resnet50")
    missing = ["paper-kd-wrn_16_2-from-wrn_40_2-seed1", "paper-student-wrn_16_2-seed1",
               "paper-kd-vgg8-from-resnet50-seed1", "paper-kd-resnet8-from-resnet20-seed2"]
    group = GroupRecords("paper", "table-1", [kd, plain, other], missing)
    cut = group.on_pair("resnet20", "resnet8")
    assert cut.records == [kd, plain] and cut.missing == ["paper-kd-resnet8-from-resnet20-seed2"]
    assert cut.status().startswith("plan paper, group table-1 (resnet20 -> resnet8): 2 of 3 runs")
    assert cut.require() is cut
    unrecorded = GroupRecords("paper", "table-1", [], missing[:2]).on_pair("wrn_40_2", "wrn_16_2")
    with pytest.raises(MissingRecordsError, match=r"^plan paper, group table-1 \(wrn_40_2 -> wrn_16_2\) has no "
                       r"records yet: run `python -m icd_lib plan paper --run --group table-1`"):
        unrecorded.require()
    with pytest.raises(ValueError, match=r"has no runs of resnet8 distilled from resnet20x; its pairs: "
                       r"resnet20 -> resnet8, resnet50 -> vgg8, wrn_40_2 -> wrn_16_2$"):
        group.on_pair("resnet20x", "resnet8")
    paper = comparison_records("B", "paper", out="/nonexistent")
    assert paper.group == "table-2" and paper.pair == ("vgg13", "mobilenetv2") and not paper.records
    specs = [RunSpec.from_name(n) for n in paper.missing]
    assert {s.model for s in specs} == {"mobilenetv2"} and {s.teacher for s in specs} == {None, "vgg13"}
    assert comparison_records("A", "book", out="/nonexistent").group == "comparison-a"
    with pytest.raises(ValueError, match="unknown comparison 'C'"):
        comparison_records("C", "book")


@pytest.mark.parametrize("method", ["icd", "icd+kd"])
def test_the_transcribed_tables_give_the_papers_headline_relative_improvements(method):
    """Contribution 2 of the paper (20.31% and 70.24%), recomputed from Tables 1 and 2 with footnote 1."""
    accuracies = []
    for table, pairs in ((TABLE_1, TABLE_1_PAIRS), (TABLE_2, TABLE_2_PAIRS)):
        assert all(len(row) == len(pairs) for row in table.values())
        accuracies += [(m, k, v) for m, k, v in zip(table[method], table["kd"], table["student"]) if m is not None]
    method_acc, kd, vanilla = zip(*accuracies)
    assert round(relative_improvement(method_acc, kd, vanilla), 4) == PAPER_RELATIVE_IMPROVEMENT[method]
