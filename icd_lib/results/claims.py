"""The paper's claims as data, and how the book's records score them.

One ``Claim`` per statement of Giakoumoglou and Stathaki (arXiv:2407.11802): the words quoted,
where they stand in the paper, the chapter of the book that tests them, and the test, a paired
difference whose sign the claim predicts:

- ``Between``: one metric of two experiments of a plan group, seed by seed;
- ``RelativeImprovement``: the paper's footnote 1, computed per seed over the comparisons;
- ``PaperTables``: two methods over the teacher-student pairs of the paper's own Tables 1-2.

``scorecard`` turns the claims and the records into ``Score``s: the difference with its 95%
interval (``report.compare``), Holm's correction over every claim that has one, and a verdict
that follows the interval (``claim_verdict``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from icd_lib.config import Profile
from icd_lib.data import dataset_info
from icd_lib.eval.metrics import relative_improvement
from icd_lib.results.records import RunRecord
from icd_lib.results.report import (NOT_RESOLVED, Comparison, GluedVerdict, claim_status, compare, glue,
                                    glue_comparison, glue_name, holm, interval_words)
from icd_lib.results.reported import TABLE_1, TABLE_2
from icd_lib.results.summary import label, metric_of

SUPPORTED, NOT_SUPPORTED, CONTRADICTED, NOT_TESTED = "supported", "not supported", "contradicted", "not tested here"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, CONTRADICTED, NOT_TESTED)
# A claim of "similar performance" is supported only when the whole 95% interval lies within
# this many points of 0: seeds of one CIFAR-100 recipe differ by several tenths of a point.
SIMILAR_MARGIN = 0.5

Records = Mapping[str, Sequence[RunRecord]]  # plan group -> its complete records
METRIC_WORDS = {"last_top1": "last-epoch top-1", "probe_styled.test_top1": "probe on digits in random style",
                "logit_difference": "class-mean logit difference to the teacher",
                "style.flip_rate": "flip rate under a new style"}


@dataclass(frozen=True)
class Between:
    """``metric`` of experiment ``method`` minus that of ``baseline`` (``summary.label``s) in
    plan group ``group`` (the baseline's in ``baseline_group`` when given), paired by seed, only
    runs of the ``student`` architecture when given. The baseline "teacher" is the teacher's
    top-1 that each of the method's records carries. Values are multiplied by ``scale``."""

    group: str
    method: str
    baseline: str
    metric: str = "last_top1"
    student: str | None = None
    baseline_group: str | None = None
    scale: float = 1.0
    unit: str = "points"
    replicates: str = "seeds"

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.group, self.baseline_group or self.group)))

    def describe(self) -> str:
        pair = f", {self.student} students" if self.student else ""
        where = f"group {self.group}" + (f" (baseline from {self.baseline_group})" if self.baseline_group else "")
        return f"{self.method} minus {self.baseline}, {METRIC_WORDS.get(self.metric, self.metric)}, {where}{pair}"

    def values(self, records: Records) -> tuple[dict[int, float], dict[int, float]]:
        """({seed: method's value}, {seed: baseline's value})."""
        method = self._runs(records, self.group, self.method)
        if self.baseline == "teacher":
            return self._of(method), {r.seed: r.teacher_top1 * self.scale for r in method if r.teacher_top1 is not None}
        return self._of(method), self._of(self._runs(records, self.baseline_group or self.group, self.baseline))

    def _runs(self, records: Records, group: str, experiment: str) -> list[RunRecord]:
        return [r for r in records.get(group, ()) if label(r) == experiment
                and (self.student is None or r.model == self.student)]

    def _of(self, runs: Sequence[RunRecord]) -> dict[int, float]:
        values = {}
        for r in runs:
            try:
                values[r.seed] = metric_of(r, self.metric) * self.scale
            except KeyError:
                pass
        return values


@dataclass(frozen=True)
class RelativeImprovement:
    """The paper's footnote 1 per seed: the mean over the comparisons ``groups`` (one student
    each) of (method - KD) / (KD - plain student), last-epoch top-1, in percent; against 0.
    A seed counts where every group has all three runs and KD differs from the plain student."""

    method: str
    groups: tuple[str, ...] = ("comparison-a", "comparison-b")
    unit: str = "% of KD's gain"
    replicates: str = "seeds"

    def describe(self) -> str:
        return f"footnote 1 for {self.method} per seed, over groups {', '.join(self.groups)}"

    def values(self, records: Records) -> tuple[dict[int, float], dict[int, float]]:
        tops = [{(label(r), r.seed): r.last_top1 for r in records.get(g, ())} for g in self.groups]
        seeds = sorted({seed for top in tops for _, seed in top})
        ratios = {}
        for seed in seeds:
            if not all((m, seed) in top for top in tops for m in (self.method, "kd", "student")):
                continue
            accuracies = [[top[m, seed] for top in tops] for m in (self.method, "kd", "student")]
            if all(kd != plain for kd, plain in zip(*accuracies[1:])):  # else footnote 1 is undefined
                ratios[seed] = 100 * relative_improvement(*accuracies)
        return ratios, {seed: 0.0 for seed in ratios}


@dataclass(frozen=True)
class PaperTables:
    """``method`` minus ``baseline`` as the paper reports them, paired over the teacher-student
    pairs of its Tables 1-2 where both have a number (the records are not read)."""

    method: str
    baseline: str
    groups: tuple[str, ...] = ()
    unit: str = "points"
    replicates: str = "pairs"

    def describe(self) -> str:
        return f"{self.method} minus {self.baseline} over the pairs of the paper's Tables 1-2, as reported"

    def values(self, records: Records) -> tuple[dict[int, float], dict[int, float]]:
        pairs = [(table.get(self.method, missing)[j], table.get(self.baseline, missing)[j])
                 for table in (TABLE_1, TABLE_2) for missing in [(None,) * len(table["kd"])]
                 for j in range(len(table["kd"]))]
        known = [(i, a, b) for i, (a, b) in enumerate(pairs) if a is not None and b is not None]
        return {i: a for i, a, _ in known}, {i: b for i, _, b in known}


Test = Between | RelativeImprovement | PaperTables


@dataclass(frozen=True)
class Claim:
    """A statement of the paper: ``claim`` in a few words, the ``quote`` and ``where`` it stands,
    the ``chapter`` (a notebook of book/) that tests it, and the ``test`` whose difference the
    claim predicts to be ``expected`` ("higher", "lower" or "similar"). ``scope`` "some": the
    paper claims it only in some cases, so its opposite in the book's one setting does not
    contradict it. Without a test, ``untested`` says why."""

    key: str
    claim: str
    quote: str
    where: str
    chapter: str
    test: Test | None = None
    expected: str = "higher"
    scope: str = "all"
    untested: str = ""


@dataclass(frozen=True)
class Score:
    """A claim with its comparison (None when untested) and its verdict and the reason."""

    claim: Claim
    comparison: Comparison | None
    verdict: str
    why: str


def claim_verdict(c: Comparison | None, expected: str, scope: str = "all", untested: str = "") -> tuple[str, str]:
    """(verdict, why) of a claim that ``c``'s difference is ``expected``, from its 95% interval
    and, where ``holm`` has run, its Holm-corrected decision: "supported" only when resolved in
    the claimed direction (for "similar": not resolved and within ``SIMILAR_MARGIN``);
    "contradicted" only when resolved the other way (for "similar": resolved at all)."""
    if expected not in ("higher", "lower", "similar"):
        raise ValueError(f"expected must be 'higher', 'lower' or 'similar', got {expected!r}")
    if c is None:
        return NOT_TESTED, untested
    if c.n == 0 or math.isnan(c.difference):
        return NOT_TESTED, "not tested in this profile: no seed has the runs it needs"
    if math.isnan(c.low):
        return NOT_TESTED, f"not tested in this profile: {c.n} seed{'s' if c.n != 1 else ''}, too few for an interval"
    found = c.holm_verdict or c.verdict
    holm_note = f" after Holm's correction over {c.family} claims" if c.family else ""
    if expected == "similar":
        bound = max(abs(c.low), abs(c.high))
        if found != NOT_RESOLVED:
            return CONTRADICTED, f"the two differ: resolved{holm_note}"
        if c.verdict == NOT_RESOLVED and bound <= SIMILAR_MARGIN:
            return SUPPORTED, f"not resolved, and the interval lies within ±{SIMILAR_MARGIN:g} points"
        return NOT_SUPPORTED, f"no difference resolved, but the interval allows up to {bound:.2f} points"
    status = claim_status(found, "above" if expected == "higher" else "below")
    if status == SUPPORTED:
        return SUPPORTED, f"resolved in the claimed direction{holm_note}"
    if status == CONTRADICTED:
        if scope == "some":
            return NOT_SUPPORTED, "the opposite here; the paper claims it only in some cases"
        return CONTRADICTED, f"resolved in the opposite direction{holm_note}"
    if c.verdict != NOT_RESOLVED:
        return NOT_SUPPORTED, f"the interval excludes 0, but not resolved{holm_note}"
    return NOT_SUPPORTED, "the interval contains 0"


def scorecard(claims: Sequence[Claim], records: Records, alpha: float = 0.05) -> list[Score]:
    """Every claim scored against ``records``; the claims that have a test form one Holm family at
    level ``alpha`` (``report.holm``), whether or not the records give each an interval."""
    comparisons = [compare(c.key, c.claim, *c.test.values(records)) if c.test else None for c in claims]
    tested = [c for c in comparisons if c is not None]
    corrected = iter(holm(tested, alpha))
    comparisons = [next(corrected) if c is not None else None for c in comparisons]
    return [Score(claim, c, *claim_verdict(c, claim.expected, claim.scope, claim.untested))
            for claim, c in zip(claims, comparisons)]


MARKS = {SUPPORTED: "✔", NOT_SUPPORTED: "○", CONTRADICTED: "✘", NOT_TESTED: "–"}


def verdict_counts(scores: Sequence[Score]) -> dict[str, int]:
    """How many scores have each verdict, in ``VERDICTS`` order."""
    return {v: sum(s.verdict == v for s in scores) for v in VERDICTS}


def glue_scores(scores: Sequence[Score]) -> None:
    """Glue each score for the prose: the comparison's numbers (``report.glue_comparison``, under
    the claim's key), ``<key>_claim`` (the verdict, a ``GluedVerdict`` with rule "claim" carrying
    the interval, the expected direction, the scope and the Holm decision), ``<key>_why``; and
    ``<key>_result`` (``result_words``); and ``n_claims``, ``n_family`` (the claims with a test)
    and ``report.glue_name("n", verdict)`` (``n_supported`` ... ``n_not_tested_here``)."""
    for s in scores:
        c = s.comparison
        if c is not None:
            glue_comparison(c, s.claim.test.unit)
        evidence = {} if c is None else {"low": c.low, "high": c.high, "p_holm": c.p_holm, "alpha": c.alpha}
        glue(f"{s.claim.key}_claim", GluedVerdict(s.verdict, rule="claim", expected=s.claim.expected,
                                                  scope=s.claim.scope, **evidence))
        glue(f"{s.claim.key}_why", s.why)
        glue(f"{s.claim.key}_result", result_words(s))
    glue("n_claims", str(len(scores)))
    glue("n_family", str(sum(s.comparison is not None for s in scores)))
    for verdict, count in verdict_counts(scores).items():
        glue(glue_name("n", verdict), str(count))


def result_words(s: Score) -> str:
    """The score's difference in words (``report.interval_words``) counting its test's replicates
    (seeds, or the paper's pairs); "–" when untested."""
    if s.comparison is None:
        return "–"
    return interval_words(s.comparison, s.claim.test.unit).replace(" seeds)", f" {s.claim.test.replicates})")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def scorecard_markdown(scores: Sequence[Score]) -> str:
    """The scorecard as a Markdown table, one row per claim: what the paper claims (quoted, with
    where), where the book tests it (a link to the chapter's notebook), the result with its 95%
    interval, and the verdict with its reason."""
    lines = ["| | the paper claims | tested in the book | result | verdict |", "|---|---|---|---|---|"]
    for number, s in enumerate(scores, 1):
        claim = s.claim
        said = f"**{claim.claim}**: “{claim.quote}” ({claim.where})"
        chapter = f"[{claim.chapter.replace('_', ' ')}]({claim.chapter}.ipynb)"
        tested = f"{chapter}: {claim.test.describe()}" if claim.test else chapter
        result = result_words(s)
        verdict = f"{MARKS[s.verdict]} **{s.verdict}**: {s.why}"
        lines.append("| " + " | ".join(_cell(x) for x in (str(number), said, tested, result, verdict)) + " |")
    return "\n".join(lines)


def needed_groups(claims: Sequence[Claim]) -> list[str]:
    """The plan groups the claims' tests read, in order of first use."""
    return list(dict.fromkeys(g for c in claims if c.test for g in c.test.groups))


def scale_of(profile: Profile) -> dict:
    """What a profile trains a student on: ``dataset``, ``classes``, ``epochs``, ``images``
    (None: the whole training set), ``teacher``, ``student``."""
    return {"dataset": profile.dataset, "classes": dataset_info(profile.dataset).num_classes,
            "epochs": profile.student_epochs, "images": profile.student_train_size,
            "teacher": profile.teacher, "student": profile.student}


def scale_words(profile: Profile) -> str:
    """"10 classes, 8 epochs, 10,000 training images" (or "the whole training set")."""
    s = scale_of(profile)
    images = "the whole training set" if s["images"] is None else f"{s['images']:,} training images"
    return f"{s['classes']} classes, {s['epochs']} epochs, {images}"


# The paper's words, as printed (arXiv:2407.11802).
ABSTRACT_KD = "Our results on CIFAR-100 and ImageNet ILSVRC-2012 show that ICD outperforms traditional KD techniques"
ENHANCE = ("a novel methodology designed to enhance KD by ensuring that the student model's representations are "
           "both discriminative and invariant with respect to the teacher's outputs")
SUPERIOR = ("Our proposed method, ICD, and its combination with KD, consistently achieve superior performance "
            "compared to other distillation objectives, including the original KD.")
CONTRIBUTION_1 = ("a novel KD framework that combines contrastive learning with an explicit invariance penalty, "
                  "ensuring consistent and robust representations between teacher and student models without the "
                  "need for a memory buffer")
CONTRIBUTION_2 = "ICD outperforms other methods, achieving a 20.31% relative improvement over the original KD."
CONTRIBUTION_2_KD = "When combined with KD, it shows a 70.24% relative improvement over the original KD."
SURPASS = ("In some cases, we show that the student model can surpass the teacher model in terms of "
           "performance")
CRD_TEXT = ("While CRD and CRD combined with KD also show competitive results, especially in some architecture "
            "configurations, ICD and ICD combined with KD frequently show higher accuracies.")
IMAGENET = ("Our approach achieves competitive results, surpassing KD and attaining state-of-the-art performance "
            "in ResNet-50 to ResNet-18 distillation.")
CORRELATION = ("ICD achieves close correlation alignment between teacher and student logits, as evidenced by the "
               "minimal differences in their correlation matrices.")
CORRELATION_CRD = "However, compared to CRD [47], our method achieves less optimal matching"
TRANSFER = ("the ICD method, both standalone and in combination with KD, significantly outperforms all other "
            "distillation methods in enhancing the transferability of learned representations")
ALPHA_LOW = "very low α values degrade performance"
ALPHA_HIGH = "increasing α beyond 1 slightly reduces performance"
BETA_HIGH = "extremely high β values cause significant degradation in performance"
BETA_LOW = "Very low values of β also lead to decreased performance."
LAMBDA_HIGH = "high values (i.e., λ = 50 and 100) lead to collapsing training."
LAMBDA_SIMILAR = "Lower values, such as 0.5 to 1.0, have similar performance."
THEOREM_1 = ("If f^T(X) is an invariant representation for Y^R, then f^S(X) is an invariant representation for "
             "all tasks in Y")
THEOREM_2 = "E[L_kd] ≤ O(1/√N + α · log M / M)"
PARAMETER_FREE = "ICD uses an efficient, parameter-free approach for flexible teacher-student alignment."


def book_claims(student: str, largest_lambda: float, cross_student: str = "mobilenetv2") -> list[Claim]:
    """The paper's claims, each with the book plan's test of it: comparison A distils into
    ``student`` (the profile's), comparison B into ``cross_student``; ``largest_lambda`` is the
    largest KD weight of the plan's ablations."""
    a = partial(Between, student=student)
    b = partial(Between, student=cross_student)
    return [*kd_claims(a, b), *ablation_claims(a, largest_lambda), *comparison_claims(a), *mechanism_claims(a)]


def kd_claims(a: Callable[..., Between], b: Callable[..., Between]) -> list[Claim]:
    """ICD and ICD+KD against KD (Tables 1-2), and the ICD term at matched weights."""
    matched = "matched-weights"
    return [
        Claim("kd_a_icd", "ICD above KD (same family, Table 1)", ABSTRACT_KD, "Abstract; Sec. 4.1, Table 1",
              "comparing_methods", a(matched, "icd", "kd")),
        Claim("kd_a_icdkd", "ICD+KD above KD (same family, Table 1)", SUPERIOR, "Sec. 4.1, Table 1; abstract",
              "comparing_methods", a(matched, "icd+kd", "kd")),
        Claim("kd_b_icd", "ICD above KD (cross family, Table 2)", SUPERIOR, "Sec. 4.1, Table 2; abstract",
              "comparing_methods", b("comparison-b", "icd", "kd")),
        Claim("kd_b_icdkd", "ICD+KD above KD (cross family, Table 2)", SUPERIOR, "Sec. 4.1, Table 2; abstract",
              "comparing_methods", b(matched, "icd+kd", "kd")),
        Claim("term_a", "the ICD term improves KD, at matched weights (A)", ENHANCE, "Abstract; eq. 13",
              "comparing_methods", a(matched, "icd+kd", "kd (ce=1, kd=1)")),
        Claim("term_b", "the ICD term improves KD, at matched weights (B)", ENHANCE, "Abstract; eq. 13",
              "comparing_methods", b(matched, "icd+kd", "kd (ce=1, kd=1)")),
    ]


def ablation_claims(a: Callable[..., Between], largest_lambda: float) -> list[Claim]:
    """Sec. 4.5's hyperparameter claims (alpha, beta, lambda)."""
    matched, abl = "matched-weights", "ablations"
    beyond = f"the book's largest lambda is {largest_lambda:g}: no run reaches 50 or 100"
    return [
        Claim("alpha_zero", "without the invariance penalty (alpha = 0), ICD+KD is worse",
              ALPHA_LOW, "Sec. 4.5, Fig. 2a; contribution 1", "ablations",
              a(matched, "icd+kd (icd.alpha=0)", "icd+kd"), expected="lower"),
        Claim("alpha_high", "alpha = 5 is worse than the default 0.5", ALPHA_HIGH, "Sec. 4.5, Fig. 2a", "ablations",
              a(abl, "icd+kd (icd.alpha=5)", "icd+kd", baseline_group="comparison-a"), expected="lower"),
        Claim("beta_high", "beta = 100 is worse than beta = 1", BETA_HIGH, "Sec. 4.5, Fig. 2b", "ablations",
              a(abl, "icd+kd (icd=100)", "icd+kd", baseline_group="comparison-a"), expected="lower"),
        Claim("beta_low", "beta = 0.1 is worse than beta = 1", BETA_LOW, "Sec. 4.5, Fig. 2b", "ablations",
              a(abl, "icd+kd (icd=0.1)", "icd+kd", baseline_group="comparison-a"), expected="lower"),
        Claim("lambda_similar", "lambda = 0.5 performs like lambda = 1", LAMBDA_SIMILAR, "Sec. 4.5, Fig. 2c",
              "ablations", a(abl, "icd+kd (kd=0.5)", "icd+kd", baseline_group="comparison-a"), expected="similar"),
        Claim("lambda_high", "lambda = 50 or 100 collapses training", LAMBDA_HIGH, "Sec. 4.5, Fig. 2c", "ablations",
              untested=beyond),
    ]


def comparison_claims(a: Callable[..., Between]) -> list[Claim]:
    """Against CRD, the headline numbers, the teacher, ImageNet."""
    matched = "matched-weights"
    return [
        Claim("crd_kd", "ICD+KD above CRD+KD", CRD_TEXT, "Sec. 4.1, Tables 1-2", "comparing_methods",
              a(matched, "icd+kd", "crd+kd"), scope="some"),
        Claim("others", "ICD above CRD (the paper's own Tables 1-2)", CONTRIBUTION_2, "Sec. 1, contribution 2",
              "comparing_methods", PaperTables("icd", "crd")),
        Claim("headline_icd", "ICD's relative improvement over KD is positive (paper: 20.31%)", CONTRIBUTION_2,
              "Sec. 1, contribution 2 and footnote 1", "comparing_methods", RelativeImprovement("icd")),
        Claim("headline_icdkd", "ICD+KD's relative improvement over KD is positive (paper: 70.24%)",
              CONTRIBUTION_2_KD, "Sec. 1, contribution 2 and footnote 1", "comparing_methods",
              RelativeImprovement("icd+kd")),
        Claim("surpass", "the ICD+KD student surpasses its teacher", SURPASS,
              "Abstract; Sec. 1, contribution 3; Sec. 4.1", "comparing_methods",
              a(matched, "icd+kd", "teacher"), scope="some"),
        Claim("imagenet", "ICD and ICD+KD above KD on ImageNet (Table 3)", IMAGENET, "Sec. 4.2, Table 3",
              "training_end_to_end", untested="no ImageNet run: neither the book plan nor the paper plan has one"),
    ]


def mechanism_claims(a: Callable[..., Between]) -> list[Claim]:
    """Transfer, class correlations, invariance, and the claims about the loss itself."""
    return [
        Claim("transfer_kd", "ICD+KD's features transfer better than KD's", TRANSFER, "Sec. 4.4, Table 4; abstract",
              "transfer", a("comparison-a", "icd+kd", "kd", metric="probe_styled.test_top1")),
        Claim("transfer_crd", "ICD+KD's features transfer better than CRD+KD's", TRANSFER, "Sec. 4.4, Table 4",
              "transfer", a("comparison-a", "icd+kd", "crd+kd", metric="probe_styled.test_top1")),
        Claim("correlation_kd", "ICD matches the teacher's class correlations more closely than KD", CORRELATION,
              "Sec. 4.3, Fig. 1", "correlations", a("comparison-a", "icd", "kd", metric="logit_difference",
                                                   unit="logit units"), expected="lower"),
        Claim("correlation_crd", "CRD matches them more closely than ICD", CORRELATION_CRD, "Sec. 4.3, Fig. 1",
              "correlations", a("comparison-a", "crd", "icd", metric="logit_difference", unit="logit units"),
              expected="lower"),
        Claim("theorem_1", "an ICD+KD student flips less under a new style than a KD student (Theorem 1's "
              "consequence)", THEOREM_1, "Sec. 3.2, Theorem 1", "invariance",
              a("invariance", "icd+kd", "kd", metric="style.flip_rate", scale=100.0, unit="points of flip rate (%)"), expected="lower"),
        Claim("theorem_2", "the ICD loss is bounded by O(1/sqrt(N) + alpha log M / M)", THEOREM_2,
              "Sec. 3.3, Theorem 2", "icd_loss",
              untested="no run varies the number of images N or the batch of negatives M; the paper gives no proof"),
        Claim("parameter_free", "ICD adds no hyperparameters; its scale and bias adapt", PARAMETER_FREE,
              "Abstract; Sec. 3.3", "icd_loss",
              untested="a property of the loss, not of the records: the bias cannot change the loss (Part I)"),
        Claim("method", "contrastive term plus invariance penalty, no memory buffer", CONTRIBUTION_1,
              "Sec. 1, contribution 1", "icd_loss",
              untested="a description of the method, built step by step in Part I; the alpha rows test the penalty"),
    ]
