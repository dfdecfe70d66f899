"""The paper's claims as data: each test's numbers against hand computations, the verdicts against
the rule written out, the claims against the book plan, and the scorecard chapter's glued verdicts
against their intervals."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from icd_lib.config import get_profile
from icd_lib.experiments.plans import ABLATION_LAMBDA, get_plan
from icd_lib.results import RunRecord
from icd_lib.results.claims import (CONTRADICTED, NOT_SUPPORTED, NOT_TESTED, SIMILAR_MARGIN, SUPPORTED, Between,
                                    Claim, PaperTables, RelativeImprovement, book_claims, claim_verdict,
                                    needed_groups, scale_words, scorecard, scorecard_markdown, verdict_counts)
from icd_lib.results.report import compare, glued_verdicts, holm
from icd_lib.results.reported import TABLE_1, TABLE_2

ROOT = Path(__file__).resolve().parents[1]


def record(method: str, seed: int, top1: float, student: str = "resnet8", weights=None, options=None,
           teacher_top1: float = 92.0, evaluation=None) -> RunRecord:
    spec = {"profile": "book", "method": method, "model": student, "teacher": "resnet20", "seed": seed,
            "dataset": "fashion_mnist", "style_mode": None, "epochs": 8, "train_size": 10000,
            "weights": weights or {}, "options": options or {}}
    return RunRecord(name=f"{method}-{student}-{seed}-{weights}-{options}", role="student", method=method,
                     model=student, teacher="resnet20", seed=seed, config={}, history=[{"epoch": 1}],
                     best_top1=top1, best_top5=99.0, best_epoch=1, last_top1=top1, last_top5=99.0, wall_time_s=1.0,
                     device="cpu", profile="book", dataset="fashion_mnist", spec=spec, teacher_top1=teacher_top1,
                     evaluation=evaluation or {})


def fake(difference, low, high, n=5, p_holm=None, family=None, alpha=0.05):
    """A comparison with the given interval (and Holm decision), as ``report.compare`` makes them."""
    from icd_lib.results.report import Comparison

    return Comparison("x", "x", difference, low, high, n, True, 1.0, math.nan, p_holm=p_holm, family=family,
                      alpha=alpha if p_holm is not None else None)


BOUNDS = (-2.0, -0.3, -0.1, 0.0, 0.1, 0.3, 2.0)


@pytest.mark.parametrize("expected", ["higher", "lower"])
@pytest.mark.parametrize("scope", ["all", "some"])
def test_a_verdict_follows_its_interval(expected, scope):
    for low, high in itertools.combinations(BOUNDS, 2):
        word, why = claim_verdict(fake((low + high) / 2, low, high), expected, scope)
        above, below = low > 0, high < 0
        claimed, opposite = (above, below) if expected == "higher" else (below, above)
        assert word in (SUPPORTED, NOT_SUPPORTED, CONTRADICTED) and why
        assert (word == SUPPORTED) == claimed, (low, high, word)
        assert (word == CONTRADICTED) == (opposite and scope == "all"), (low, high, word)


def test_holm_decides_when_it_has_run():
    # the interval excludes 0, but the corrected p-value does not pass: not supported, and it says why
    word, why = claim_verdict(fake(0.5, 0.1, 0.9, p_holm=0.2, family=12), "higher")
    assert word == NOT_SUPPORTED and "Holm" in why and "12" in why
    word, _ = claim_verdict(fake(-0.5, -0.9, -0.1, p_holm=0.2, family=12), "higher")
    assert word == NOT_SUPPORTED
    assert claim_verdict(fake(0.5, 0.1, 0.9, p_holm=0.01, family=12), "higher")[0] == SUPPORTED
    assert claim_verdict(fake(-0.5, -0.9, -0.1, p_holm=0.01, family=12), "higher")[0] == CONTRADICTED


def test_similarity_needs_a_narrow_interval():
    inside = SIMILAR_MARGIN * 0.9
    assert claim_verdict(fake(0.0, -inside, inside), "similar")[0] == SUPPORTED
    word, why = claim_verdict(fake(0.0, -1.46, 1.28), "similar")
    assert word == NOT_SUPPORTED and "1.46" in why
    assert claim_verdict(fake(1.0, 0.5, 1.5), "similar")[0] == CONTRADICTED
    with pytest.raises(ValueError, match="expected"):
        claim_verdict(fake(0.0, -1, 1), "equal")


def test_no_interval_is_not_tested():
    assert claim_verdict(None, "higher", untested="no ImageNet run") == (NOT_TESTED, "no ImageNet run")
    word, why = claim_verdict(fake(0.4, math.nan, math.nan, n=1), "higher")
    assert word == NOT_TESTED and "1 seed" in why
    assert claim_verdict(fake(math.nan, math.nan, math.nan, n=0), "lower")[0] == NOT_TESTED


def test_between_pairs_by_seed_within_one_student_and_against_the_teacher():
    runs = [record("icd+kd", s, 88.0 + s) for s in range(3)] + [record("kd", s, 87.0 + 2 * s) for s in range(3)]
    runs += [record("kd", s, 50.0, student="mobilenetv2") for s in range(3)]  # another pair, same labels
    runs += [record("kd", s, 86.0, weights={"ce": 1.0, "kd": 1.0}) for s in range(3)]
    groups = {"g": runs}
    values, base = Between("g", "icd+kd", "kd", student="resnet8").values(groups)
    assert values == {0: 88.0, 1: 89.0, 2: 90.0} and base == {0: 87.0, 1: 89.0, 2: 91.0}
    _, matched = Between("g", "icd+kd", "kd (ce=1, kd=1)", student="resnet8").values(groups)
    assert matched == {0: 86.0, 1: 86.0, 2: 86.0}
    _, teacher = Between("g", "icd+kd", "teacher", student="resnet8").values(groups)
    assert teacher == {0: 92.0, 1: 92.0, 2: 92.0}
    _, elsewhere = Between("g", "icd+kd", "kd", baseline_group="h").values({**groups, "h": [record("kd", 0, 80.0)]})
    assert elsewhere == {0: 80.0}


def test_between_reads_an_evaluation_metric_scaled_and_skips_runs_without_it():
    runs = [record("icd", 0, 88.0, evaluation={"style": {"flip_rate": 0.25}}), record("icd", 1, 88.0)]
    values, _ = Between("g", "icd", "kd", metric="style.flip_rate", scale=100.0).values({"g": runs})
    assert values == {0: 25.0}


def test_relative_improvement_is_footnote_1_per_seed():
    tops = {"a": {"icd": (80.0, 81.0), "kd": (79.0, 79.5), "student": (77.0, 78.5)},
            "b": {"icd": (70.0, 70.0), "kd": (71.0, 70.5), "student": (69.0, 69.5)}}
    groups = {g: [record(m, s, v[s]) for m, v in methods.items() for s in (0, 1)] for g, methods in tops.items()}
    ratios, zero = RelativeImprovement("icd", ("a", "b")).values(groups)
    seed0 = 100 * ((80 - 79) / (79 - 77) + (70 - 71) / (71 - 69)) / 2
    seed1 = 100 * ((81 - 79.5) / (79.5 - 78.5) + (70 - 70.5) / (70.5 - 69.5)) / 2
    assert ratios == pytest.approx({0: seed0, 1: seed1}) and zero == {0: 0.0, 1: 0.0}
    groups["b"] = [r for r in groups["b"] if not (r.seed == 1 and r.method == "student")]
    assert set(RelativeImprovement("icd", ("a", "b")).values(groups)[0]) == {0}
    groups["a"] = [r for r in groups["a"] if r.method != "student"] + [record("student", 0, 79.0)]  # KD = plain
    assert RelativeImprovement("icd", ("a", "b")).values(groups) == ({}, {})


def test_paper_tables_pair_the_reported_numbers():
    values, base = PaperTables("icd", "crd").values({})
    icd = list(TABLE_1["icd"]) + list(TABLE_2["icd"])
    crd = list(TABLE_1["crd"]) + list(TABLE_2["crd"])
    assert list(values.values()) == icd and list(base.values()) == crd
    values, base = PaperTables("fsp", "kd").values({})  # FSP has one "n/a" in Table 1 and no Table 2 row
    assert len(values) == len(base) == 6


def test_the_paper_tables_row_is_the_t_test_over_its_pairs():
    difference = np.array(TABLE_1["icd"] + TABLE_2["icd"]) - np.array(TABLE_1["crd"] + TABLE_2["crd"])
    claim = Claim("others", "ICD above CRD", "q", "w", "comparing_methods", PaperTables("icd", "crd"))
    [score] = scorecard([claim], {})
    half = stats.t.ppf(0.975, len(difference) - 1) * difference.std(ddof=1) / math.sqrt(len(difference))
    assert score.comparison.difference == pytest.approx(difference.mean())
    assert score.comparison.high == pytest.approx(difference.mean() + half)
    assert difference.mean() + half < 0 and score.verdict == CONTRADICTED  # CRD is ahead in the paper's own tables


def test_scorecard_corrects_over_the_tested_claims_only():
    rng = np.random.default_rng(0)
    runs = [record("icd", s, 88.0 + 0.3 + rng.normal(0, 0.2)) for s in range(5)]
    runs += [record("kd", s, 88.0) for s in range(5)]
    tested = Claim("t", "ICD above KD", "q", "w", "comparing_methods", Between("g", "icd", "kd"))
    untested = Claim("u", "ImageNet", "q", "w", "training_end_to_end", untested="no run")
    scores = scorecard([tested, tested, untested], {"g": runs})
    raw = compare("t", "t", *Between("g", "icd", "kd").values({"g": runs}))
    [alone] = holm([raw])
    assert scores[0].comparison.family == 2 and scores[2].comparison is None
    assert scores[0].comparison.p_holm == pytest.approx(min(1.0, 2 * alone.p))
    assert verdict_counts(scores)[NOT_TESTED] == 1 and sum(verdict_counts(scores).values()) == 3


def spec_label(spec) -> str:
    """The ``summary.label`` of a record of ``spec``."""
    from icd_lib.results.summary import label

    return label(record(spec.method, spec.seed, 0.0, spec.model, dict(spec.weights), dict(spec.options)))


def test_every_claim_reads_experiments_the_book_plan_has():
    groups = {g.name: g.specs for g in get_plan("book")}
    claims = book_claims(get_profile("book").student, max(ABLATION_LAMBDA))
    assert set(needed_groups(claims)) <= set(groups)
    for claim in claims:
        test = claim.test
        if isinstance(test, Between):
            for group, experiment in ((test.group, test.method), (test.baseline_group or test.group, test.baseline)):
                if experiment == "teacher":
                    continue
                found = {spec_label(s) for s in groups[group] if test.student in (None, s.model)}
                assert experiment in found, f"{claim.key}: group {group} has no {experiment!r}"
        elif isinstance(test, RelativeImprovement):
            for group in test.groups:
                assert {test.method, "kd", "student"} <= {spec_label(s) for s in groups[group]}
        elif test is None:
            assert claim.untested, f"{claim.key}: an untested claim must say why"
    assert len({c.key for c in claims}) == len(claims)
    assert all((ROOT / "book" / f"{c.chapter}.ipynb").is_file() for c in claims)


def test_every_quote_is_in_the_paper():
    paper = ROOT.parent / "shared" / "paper" / "000_f72572287bbf5d72.txt"
    if not paper.is_file():
        pytest.skip("the paper's text is not next to this checkout")
    text = " ".join(paper.read_text().replace("¹", "").split()).replace("parameterfree", "parameter-free")
    text = text.replace("theart", "the-art").replace("$\\lambda = 50$", "λ = 50")  # the text's line breaks and TeX
    for claim in book_claims("resnet8", max(ABLATION_LAMBDA)):
        if claim.key.startswith("theorem"):
            continue  # transcribed from the paper's mathematics
        assert " ".join(claim.quote.split()) in text, claim.key


def test_scorecard_markdown_has_one_row_per_claim_and_escapes_pipes():
    claims = [Claim("a", "a | b", "q", "Table 1", "comparing_methods", Between("g", "icd", "kd")),
              Claim("b", "b", "q", "Table 3", "training_end_to_end", untested="none")]
    lines = scorecard_markdown(scorecard(claims, {"g": []})).splitlines()
    assert len(lines) == 2 + 2 and lines[0].count("|") == lines[2].count("|") - 1 == 6
    assert "a \\| b" in lines[2] and "[comparing methods](comparing_methods.ipynb)" in lines[2]
    assert NOT_TESTED in lines[3]


def test_scale_words_follow_the_profile():
    book = get_profile("book")
    assert scale_words(book) == f"10 classes, {book.student_epochs} epochs, {book.student_train_size:,} training images"
    assert scale_words(get_profile("paper")).startswith("100 classes, 240 epochs, the whole training set")


def test_the_scorecard_chapter_verdicts_follow_their_intervals():
    notebook = json.loads((ROOT / "book" / "scorecard.ipynb").read_text())
    verdicts = [v for v in glued_verdicts(notebook) if v.get("rule") == "claim"]
    assert verdicts, "the scorecard chapter glues no claim verdict"
    for v in verdicts:
        low, high = (math.nan if v.get(k) is None else v[k] for k in ("low", "high"))
        holm_passed = v.get("p_holm") is not None and v["p_holm"] < v["alpha"]
        if v["verdict"] == SUPPORTED and v["expected"] != "similar":
            assert holm_passed and (low > 0 if v["expected"] == "higher" else high < 0), v
        if v["verdict"] == SUPPORTED and v["expected"] == "similar":
            assert low <= 0 <= high and max(-low, high) <= SIMILAR_MARGIN, v
        if v["verdict"] == CONTRADICTED:
            assert holm_passed and v["scope"] == "all", v
            if v["expected"] != "similar":
                assert high < 0 if v["expected"] == "higher" else low > 0, v
