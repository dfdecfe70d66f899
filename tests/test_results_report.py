"""The chapters' report module, checked against formulas written out, scipy and myst-nb's own
reading of glued values."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from icd_lib.results import RunRecord
from icd_lib.results import report
from icd_lib.results.report import (ABOVE, BELOW, NOT_RESOLVED, claim_status, compare, glue_name, versus, comparison_frame, comparison_table,
                                    detectable, experiment_frame, glue_comparison, glued_verdicts, half_width,
                                    holm, holm_adjusted, term_share, timing_frame, verdict_word)
from icd_lib.results.summary import experiment_rows

T_975 = {2: 4.3026527, 9: 2.2621572}  # Student's t quantiles, from tables
T_80_9 = 0.8834039


def record(method, seed, top1, wall=60.0, epochs=2, command="python -m icd_lib plan book --run --index 3",
           weights=None, terms=None, train_loss=1.0):
    history = [{"epoch": e + 1, "terms": terms or {"ce": 1.0}, "train_loss": train_loss} for e in range(epochs)]
    return RunRecord(name=f"{method}-{seed}", role="student", method=method, model="resnet8", teacher="resnet20",
                     seed=seed, config={"weights": weights or {"ce": 1.0}}, history=history, best_top1=top1,
                     best_top5=99.0, best_epoch=epochs, last_top1=top1, last_top5=99.0, wall_time_s=wall,
                     device="cpu (1 threads, x86_64)", command=command,
                     spec={"weights": {}, "options": {}})


@pytest.mark.parametrize("low, high, word", [(0.1, 2.0, ABOVE), (-2.0, -0.1, BELOW), (-0.5, 0.5, NOT_RESOLVED),
                                             (0.0, 1.0, NOT_RESOLVED), (math.nan, math.nan, NOT_RESOLVED)])
def test_verdict_word_follows_the_side_of_zero(low, high, word):
    assert verdict_word(low, high) == word


def test_half_width_and_detectable_difference_written_out():
    assert half_width(0.3, 3) == pytest.approx(T_975[2] * 0.3 / math.sqrt(3))
    assert half_width(0.3, 10) == pytest.approx(T_975[9] * 0.3 / math.sqrt(10))
    assert detectable(0.3, 10) == pytest.approx((T_975[9] + T_80_9) * 0.3 / math.sqrt(10))
    assert math.isnan(half_width(0.3, 1)) and math.isnan(detectable(0.3, 1))


def test_compare_is_the_paired_t_test_of_scipy():
    icd = {0: 88.0, 1: 87.2, 2: 88.9, 3: 88.1}
    kd = {0: 87.5, 1: 87.0, 2: 88.0, 3: 87.2}
    c = compare("a_icd_minus_kd", "ICD minus KD", icd, kd)
    diffs = [icd[s] - kd[s] for s in icd]
    mean, sd = sum(diffs) / 4, stats.tstd(diffs)
    assert c.paired and c.n == 4 and c.difference == pytest.approx(mean) and c.sd == pytest.approx(sd)
    assert c.p == pytest.approx(stats.ttest_rel(list(icd.values()), list(kd.values())).pvalue)
    assert c.resolvable == pytest.approx(stats.t.ppf(0.975, 3) * sd / 2)
    assert c.resolvable == pytest.approx(half_width(sd, 4))
    assert c.verdict == (ABOVE if c.p < 0.05 else NOT_RESOLVED) == ABOVE


def test_compare_without_common_seeds_is_welch():
    c = compare("x", "x", {0: 1.0, 1: 3.0}, {5: 0.0, 6: 0.0, 7: 3.0})
    assert not c.paired and math.isnan(c.sd)
    assert c.p == pytest.approx(stats.ttest_ind([1, 3], [0, 0, 3], equal_var=False).pvalue)


def test_holm_adjusted_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> 0.06 (monotone)
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = holm_adjusted([0.01, math.nan, 0.02])  # NaN: no p-value, still one of the m = 3 stated
    assert adjusted[0] == pytest.approx(0.03) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_holm_verdicts_can_withdraw_an_unadjusted_one():
    seeds = range(10)
    base = {s: 80.0 + 0.3 * ((s * 7) % 5) for s in seeds}
    strong = compare("strong", "strong", {s: base[s] + 2 + 0.1 * (s % 3) for s in seeds}, base)
    weak = compare("weak", "weak", {s: base[s] + 0.3 + 0.4 * (s % 2) - 0.2 for s in seeds}, base)
    null = compare("null", "null", {s: base[s] + (0.5 if s % 2 else -0.5) for s in seeds}, base)
    family = holm([strong, weak, null])
    assert [c.family for c in family] == [3, 3, 3]
    assert family[0].holm_verdict == ABOVE and family[2].holm_verdict == NOT_RESOLVED
    for c in family:
        assert c.p_holm >= c.p
        assert (c.holm_verdict != NOT_RESOLVED) == (c.p_holm < 0.05)
    assert weak.p < 0.05 and weak.verdict == ABOVE  # resolved alone ...
    assert family[1].p_holm == pytest.approx(min(1, 2 * weak.p))  # ... second smallest of three: x2


def glued_outputs(monkeypatch, comparisons):
    """What ``glue_comparison`` stores in a notebook, captured from myst-nb's display call."""
    import myst_nb.ext.glue as glue_module
    from nbformat.v4 import new_output

    outputs = []  # new_output validates each against the notebook format, as a kernel's output is
    monkeypatch.setattr(glue_module, "ipy_display", lambda data, raw, metadata: outputs.append(
        new_output("display_data", data=data, metadata=metadata)))
    for c in comparisons:
        glue_comparison(c)
    return {"cells": [{"cell_type": "code", "outputs": outputs, "source": ""}]}


def test_glued_verdicts_carry_their_interval_and_paste_as_the_word(monkeypatch):
    from myst_nb.core.variables import format_plain_text

    c = holm([compare("a_diff", "A minus B", {0: 2.0, 1: 2.2, 2: 2.4}, {0: 1.0, 1: 1.0, 2: 1.1})])[0]
    notebook = glued_outputs(monkeypatch, [c])
    names = [o["metadata"]["scrapbook"]["name"] for o in notebook["cells"][0]["outputs"]]
    assert {"a_diff", "a_diff_diff", "a_diff_low", "a_diff_high", "a_diff_n", "a_diff_verdict",
            "a_diff_resolvable", "a_diff_p_holm", "a_diff_holm_verdict"} <= set(names)
    verdicts = {v["name"]: v for v in glued_verdicts(notebook)}
    interval = verdicts["a_diff_verdict"]
    assert interval["rule"] == "interval" and interval["low"] == pytest.approx(c.low)
    assert format_plain_text(interval["text"], "") == c.verdict == ABOVE  # how {glue:text} pastes it
    assert verdicts["a_diff_holm_verdict"]["p_holm"] == pytest.approx(c.p_holm)
    texts = {o["metadata"]["scrapbook"]["name"]: o["data"]["application/papermill.record/text/plain"]
             for o in notebook["cells"][0]["outputs"]}
    assert format_plain_text(texts["a_diff_diff"], "") == f"{c.difference:+.2f}"  # the sign survives pasting
    assert format_plain_text(texts["a_diff_n"], "") == "3"


def test_comparison_table_shades_resolved_rows_and_names_units():
    up = compare("up", "up", {0: 2.0, 1: 2.2, 2: 2.4}, {0: 1.0, 1: 1.0, 2: 1.1})
    flat = compare("flat", "flat", {0: 1.0, 1: 2.0, 2: 0.0}, {0: 1.0, 1: 1.0, 2: 1.0})
    frame = comparison_frame(holm([up, flat]))
    assert list(frame.index) == ["up", "flat"]
    assert frame.loc["up", "verdict"] == ABOVE and frame.loc["flat", "verdict"] == NOT_RESOLVED
    assert frame.loc["up", "seeds (n)"] == 3 and "difference (points)" in frame.columns
    assert "Holm p (family of 2)" in frame.columns
    html = comparison_table([up, flat]).to_html()
    shade = report.SHADES[ABOVE].split(": ")[1]
    rule = next(block for block in html.split("}") if shade in block)  # the cells that carry the shade
    assert rule.count("_row0_") == 1 + len(comparison_frame([up]).columns) and "_row1_" not in rule
    assert "<th" in html and ">comparison</th>" in html and html.count("index_name") == 0  # one header line


def test_experiment_frame_sets_the_papers_numbers_beside_ours():
    records = [record(m, s, top1) for m, values in (("kd", (88.0, 87.0, 88.5)), ("icd+kd", (90.0, 89.2, 90.4)),
                                                    ("crd", (88.1, 86.9, 88.4)))
               for s, top1 in enumerate(values)]
    rows = experiment_rows(records)
    comparisons = versus(rows, "kd", key="A")
    assert comparisons["icd+kd"].name == "a_icdpkd" and comparisons["icd+kd"].family == 2
    frame = experiment_frame(rows, comparisons, reported={"kd": 70.66, "icd+kd": 71.81})
    assert frame.loc["kd", "difference (points)"] == "baseline"
    assert frame.loc["icd+kd", "difference (points)"] == f"{(2.0 + 2.2 + 1.9) / 3:+.2f}"
    assert frame.loc["icd+kd", "verdict"] == ABOVE and frame.loc["crd", "verdict"] == NOT_RESOLVED
    assert frame.loc["icd+kd", "under Holm (family of 2)"] == comparisons["icd+kd"].holm_verdict
    assert frame.loc["icd+kd", report.REPORTED_COLUMN] == "71.81" and frame.loc["crd", report.REPORTED_COLUMN] == ""
    assert frame.loc["kd", "mean ± sd (%)"].startswith(f"{(88.0 + 87.0 + 88.5) / 3:.2f} ± ")


def test_glue_names_are_stable_and_safe():
    assert glue_name("A", "icd+kd (icd.alpha=0)") == "a_icdpkd_icd_alpha0"
    assert glue_name("", "kd (ce=1, kd=1)") == "kd_ce1_kd1"


@pytest.mark.parametrize("verdict, expected, status", [(ABOVE, "above", "supported"), (BELOW, "above", "contradicted"),
                                                       (NOT_RESOLVED, "below", "not supported (not resolved)"),
                                                       (BELOW, "below", "supported")])
def test_claim_status(verdict, expected, status):
    assert claim_status(verdict, expected) == status


def test_timing_frame_by_hand():
    runs = {"student": [record("student", 0, 80, wall=100.0), record("student", 1, 80, wall=140.0)],
            "kd": [record("kd", 0, 80, wall=180.0), record("kd", 1, 80, wall=180.0, command="python -m icd_lib distill")]}
    frame = timing_frame(runs)
    runner = "cpu (1 threads, x86_64), plan runner"
    student, kd = frame.loc["student"], frame.loc["kd"]
    kd_runner = kd[kd["run class"] == runner].iloc[0]
    assert student["per epoch (s)"] == 60.0 and student["runs"] == 2 and student["range (min)"] == "1.7-2.3"
    assert kd_runner["per epoch (s)"] == 90.0 and kd_runner["per epoch / student's"] == "1.50x"
    assert kd[kd["run class"] != runner].iloc[0]["per epoch / student's"] == ""  # no plain run in its class


def test_term_share_by_hand():
    runs = [record("cc", s, 80, weights={"ce": 1.0, "cc": 2.0}, terms={"ce": 0.5, "cc": 0.01}, train_loss=0.52)
            for s in range(2)]
    assert term_share(runs, "cc") == pytest.approx(2 * 0.01 / 0.52)
    assert term_share(runs, "ce") == pytest.approx(0.5 / 0.52)


def test_reported_relative_improvement_and_pairs_above_by_hand():
    from icd_lib.results.report import pairs_above, reported_relative_improvement

    table = {"student": (60.0, 70.0, 50.0), "kd": (62.0, 71.0, 54.0), "icd": (63.0, None, 53.0), "crd": (62.5, 72.0, 55.0)}
    value, pairs = reported_relative_improvement("icd", [table])
    assert pairs == 2 and value == pytest.approx(((63 - 62) / 2 + (53 - 54) / 4) / 2)
    assert reported_relative_improvement("ofd", [table]) == (pytest.approx(math.nan, nan_ok=True), 0)
    assert pairs_above("icd", "crd", [table]) == (1, 2)
