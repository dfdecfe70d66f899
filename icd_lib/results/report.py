"""What a part II chapter says about its records: comparisons with verdicts, a Holm correction,
glued numbers, rendered tables, and timing and loss-term tables.

A chapter's finding is a ``Comparison`` (``compare``: a paired difference with its t interval,
its p-value and the smallest difference its seeds can resolve), a family of them corrected with
``holm``, glued into the prose with ``glue_comparison`` and shown with ``comparison_table``.
The verdict words follow the interval alone (``verdict_word``); each glued verdict carries its
interval (or its Holm-adjusted p-value) in the same output, so a test can check that the word
still fits the numbers after the records change.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from icd_lib.results.records import RunRecord
from icd_lib.results.summary import difference_interval

ABOVE, BELOW, NOT_RESOLVED = "resolved, above", "resolved, below", "not resolved"
VERDICTS = (ABOVE, BELOW, NOT_RESOLVED)
SHADES = {ABOVE: "background-color: #d8ecd3", BELOW: "background-color: #f6d5d0", NOT_RESOLVED: ""}
REPORTED_COLUMN = "reported by the paper (%)"
GLUE_PREFIX = "application/papermill.record/"  # myst-nb's prefix for values glued without display
EVIDENCE_MIME = "application/vnd.icd-lib.verdict+json"  # a glued verdict's numbers, a JSON string


def verdict_word(low: float, high: float) -> str:
    """"resolved, above" when the interval [low, high] lies above 0, "resolved, below" when it lies
    below, else "not resolved" (it contains 0, or a bound is NaN)."""
    if low > 0:
        return ABOVE
    if high < 0:
        return BELOW
    return NOT_RESOLVED


def half_width(sd: float, n: int, confidence: float = 0.95) -> float:
    """The half-width of a paired t interval over ``n`` seeds whose differences have sample sd
    ``sd``: the smallest mean difference these seeds resolve (NaN for fewer than two)."""
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))


def detectable(sd: float, n: int, confidence: float = 0.95, power: float = 0.8) -> float:
    """The minimum detectable difference of a paired t test over ``n`` seeds: the true mean
    difference that its interval excludes 0 for with probability ``power`` (the usual
    approximation (t_{1-a/2} + t_power) * sd / sqrt(n), with n - 1 degrees of freedom)."""
    if n < 2:
        return math.nan
    t = stats.t.ppf(0.5 + confidence / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(t * sd / math.sqrt(n))


@dataclass(frozen=True)
class Comparison:
    """One difference ("A minus B") over seeds, with everything a chapter says about it.

    ``name`` is the stable key its numbers are glued under; ``sd`` the sample sd of the per-seed
    differences (paired) or NaN (Welch); ``p`` the two-sided p-value of the same t test as the
    interval; ``p_holm`` and ``family`` are set by ``holm``."""

    name: str
    title: str
    difference: float
    low: float
    high: float
    n: int
    paired: bool
    sd: float
    p: float
    confidence: float = 0.95
    p_holm: float | None = None
    family: int | None = None
    alpha: float | None = None

    @property
    def verdict(self) -> str:
        return verdict_word(self.low, self.high)

    @property
    def resolvable(self) -> float:
        """The interval's half-width: the smallest difference these seeds resolve."""
        return (self.high - self.low) / 2

    @property
    def holm_verdict(self) -> str | None:
        """The verdict under Holm's correction (None before ``holm``)."""
        if self.p_holm is None:
            return None
        if math.isnan(self.p_holm) or self.p_holm >= self.alpha:
            return NOT_RESOLVED
        return ABOVE if self.difference > 0 else BELOW


def compare(name: str, title: str, values: Mapping[int, float], baseline: Mapping[int, float],
            confidence: float = 0.95) -> Comparison:
    """``values`` minus ``baseline`` ({seed: value} each) as a ``Comparison``: the interval of
    ``summary.difference_interval`` (paired over the common seeds when there are two or more,
    else Welch's), with the p-value of the same t test."""
    d = difference_interval(dict(values), dict(baseline), confidence)
    common = sorted(set(values) & set(baseline))
    sd, p = math.nan, math.nan
    if d["paired"]:
        diffs = np.array([values[s] - baseline[s] for s in common])
        sd = float(diffs.std(ddof=1))
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue) if sd > 0 else (0.0 if diffs.mean() != 0 else 1.0)
    elif len(values) >= 2 and len(baseline) >= 2:
        p = float(stats.ttest_ind(list(values.values()), list(baseline.values()), equal_var=False).pvalue)
    return Comparison(name, title, float(d["difference"]), float(d["low"]), float(d["high"]), d["n"], d["paired"],
                      sd, p, confidence)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given, for a family of
    ``len(p_values)`` comparisons. A NaN p-value (too few seeds) stays NaN but still counts in the
    family's size: the family is what was stated, not what happened to have records."""
    p = np.asarray(p_values, dtype=float)
    known = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(known[np.argsort(p[known], kind="stable")]):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def holm(comparisons: Sequence[Comparison], alpha: float = 0.05) -> list[Comparison]:
    """The ``comparisons`` as one family under Holm's correction at level ``alpha``: each with
    ``p_holm``, ``family`` (the family's size, ``len(comparisons)``) and ``alpha`` set."""
    adjusted = holm_adjusted([c.p for c in comparisons])
    return [replace(c, p_holm=p, family=len(comparisons), alpha=alpha) for c, p in zip(comparisons, adjusted)]


def number(value: float, digits: int = 2, sign: bool = True) -> str:
    """A number as prose shows it: signed by default, "n/a" for NaN."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def interval_words(c: Comparison, unit: str = "points") -> str:
    """"+0.37 points (95% interval -0.68 to +1.43, 10 seeds)"."""
    if math.isnan(c.low):
        return f"{number(c.difference)} {unit} ({c.n} seed{'s' if c.n != 1 else ''}: too few for an interval)"
    kind = "" if c.paired else " unpaired (Welch)"
    return (f"{number(c.difference)} {unit} ({c.confidence:.0%}{kind} interval {number(c.low)} to "
            f"{number(c.high)}, {c.n} seeds)")


class GluedVerdict:
    """A verdict word as glue stores it: its text is the word; beside it, under ``EVIDENCE_MIME``
    as a JSON string, the numbers it follows (``rule`` "interval": ``low``, ``high``; ``rule``
    "holm": ``difference``, ``p_holm``, ``alpha``)."""

    def __init__(self, word: str, **evidence):
        self.word, self.evidence = word, {k: _json_number(v) for k, v in evidence.items()}

    def __repr__(self) -> str:
        return repr(self.word)  # quoted, as glue's text role expects a string's repr

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": repr(self.word), EVIDENCE_MIME: json.dumps({"verdict": self.word, **self.evidence})}


def _json_number(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def glue(name: str, value) -> None:
    """myst-nb's ``glue`` without display; nothing where myst-nb is not installed (e.g. Colab,
    where only the rendered book pastes glued values)."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=False)


def glue_comparison(c: Comparison, unit: str = "points") -> None:
    """Glue a comparison's words under ``c.name``: ``<name>`` (``interval_words``), ``_diff``,
    ``_low``, ``_high``, ``_n``, ``_resolvable``, ``_verdict``; after ``holm`` also ``_p``,
    ``_p_holm`` and ``_holm_verdict``. Paste them with ``{glue:text}`name_diff```."""
    glue(c.name, interval_words(c, unit))
    for key, text in (("diff", number(c.difference)), ("low", number(c.low)), ("high", number(c.high)),
                      ("n", str(c.n)), ("resolvable", number(c.resolvable, sign=False))):
        glue(f"{c.name}_{key}", text)
    glue(f"{c.name}_verdict", GluedVerdict(c.verdict, rule="interval", low=c.low, high=c.high))
    if c.p_holm is not None:
        glue(f"{c.name}_p", f"{c.p:.3f}")
        glue(f"{c.name}_p_holm", f"{c.p_holm:.3f}")
        glue(f"{c.name}_holm_verdict", GluedVerdict(c.holm_verdict, rule="holm", difference=c.difference,
                                                   p_holm=c.p_holm, alpha=c.alpha))


def glued_verdicts(notebook: dict) -> list[dict]:
    """Every ``GluedVerdict`` stored in a notebook's outputs (a dict from ``json.load``), as
    {"name", "text", and its evidence's fields}."""
    found = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            data = {k.removeprefix(GLUE_PREFIX): v for k, v in output.get("data", {}).items()}
            if name and EVIDENCE_MIME in data:
                found.append({"name": name, "text": data.get("text/plain", ""), **json.loads(data[EVIDENCE_MIME])})
    return found


def _interval_cell(c: Comparison) -> str:
    return "too few seeds" if math.isnan(c.low) else f"{number(c.low)} to {number(c.high)}"


def comparison_frame(comparisons: Sequence[Comparison], unit: str = "points") -> pd.DataFrame:
    """One row per comparison: seeds, difference, interval, smallest resolvable difference,
    verdict, and (after ``holm``) the adjusted p-value and the verdict under it."""
    rows = []
    for c in comparisons:
        row = {"comparison": c.title, "seeds (n)": c.n, f"difference ({unit})": number(c.difference),
               f"{c.confidence:.0%} interval ({unit})": _interval_cell(c),
               f"smallest resolvable ({unit})": number(c.resolvable, sign=False), "verdict": c.verdict}
        if c.p_holm is not None:
            row["p"] = number(c.p, 3, sign=False)
            row[f"Holm p (family of {c.family})"] = number(c.p_holm, 3, sign=False)
            row["verdict under Holm"] = c.holm_verdict
        rows.append(row)
    return pd.DataFrame(rows).set_index("comparison")


def shaded(frame: pd.DataFrame, verdict_columns: Iterable[str] = ("verdict", "verdict under Holm")):
    """``frame`` as a Styler: each row shaded green where its first verdict column says
    "resolved, above", red where "resolved, below"; a named index becomes the first column, so
    the header is one line."""
    columns = [c for c in verdict_columns if c in frame.columns]
    table = frame.reset_index() if frame.index.name else frame

    def shade(row):
        verdict = next((row[c] for c in columns if isinstance(row[c], str)), NOT_RESOLVED)
        return [SHADES.get(verdict, "")] * len(row)

    styler = table.style.apply(shade, axis=1) if columns else table.style
    return styler.hide(axis="index").set_table_styles([{"selector": "th", "props": "text-align: left"}])


def comparison_table(comparisons: Sequence[Comparison], unit: str = "points"):
    """``comparison_frame`` rendered: rows resolved above 0 shaded green, below 0 red."""
    return shaded(comparison_frame(comparisons, unit))


def versus(rows: Sequence[dict], baseline: str = "kd", metric: str = "last_top1", key: str = "",
           alpha: float = 0.05) -> dict[str, Comparison]:
    """Every experiment of ``summary.experiment_rows`` minus the one labelled ``baseline``, as
    one Holm family: {label: Comparison}, glue names ``<key>_<label>`` made safe (``glue_name``)."""
    base = next((r for r in rows if r["label"] == baseline), None)
    if base is None:
        raise ValueError(f"no experiment labelled {baseline!r} among {[r['label'] for r in rows]}")
    others = [r for r in rows if r is not base]
    family = holm([compare(glue_name(key, r["label"]), f"{r['label']} minus {baseline}", r["values"][metric],
                           base["values"][metric]) for r in others], alpha)
    return {r["label"]: c for r, c in zip(others, family)}


def glue_name(*parts: str) -> str:
    """A stable glue key from labels: "A", "icd+kd (icd.alpha=0)" -> "a_icdpkd_icd_alpha0"."""
    text = "_".join(p for p in parts if p).lower().replace("+", "p").replace("=", "")
    return "_".join(filter(None, "".join(ch if ch.isalnum() else "_" for ch in text).split("_")))


def experiment_frame(rows: Sequence[dict], comparisons: Mapping[str, Comparison] | None = None,
                     metric: str = "last_top1", reported: Mapping[str, float | None] | None = None,
                     reported_label: str = REPORTED_COLUMN, names: Mapping[str, str] | None = None,
                     unit: str = "%") -> pd.DataFrame:
    """One row per experiment of ``summary.experiment_rows``: seeds, mean ± sd of ``metric``;
    with ``comparisons`` (``versus``) its difference to the baseline, interval, verdict and the
    verdict under Holm; with ``reported`` (label -> number) the paper's number beside ours,
    under ``reported_label``. ``names`` renames labels for display."""
    names, table = names or {}, []
    for r in rows:
        mean, sd = r[f"{metric}_mean"], r[f"{metric}_sd"]
        row = {"experiment": names.get(r["label"], r["label"]), "seeds (n)": r[f"{metric}_n"],
               f"mean ± sd ({unit})": f"{number(mean, sign=False)} ± {number(sd, sign=False)}"}
        if comparisons is not None:
            c = comparisons.get(r["label"])
            family = next(iter(comparisons.values())).family if comparisons else 0
            baseline = "baseline" if c is None else None
            row.update({"difference (points)": baseline or number(c.difference),
                        "95% interval (points)": "" if c is None else _interval_cell(c),
                        "verdict": "" if c is None else c.verdict,
                        f"under Holm (family of {family})": "" if c is None else c.holm_verdict})
        if reported is not None:
            value = reported.get(r["label"])
            row[reported_label] = "" if value is None else f"{value:.2f}"
        table.append(row)
    return pd.DataFrame(table).set_index("experiment")


def experiment_table(rows: Sequence[dict], **kwargs):
    """``experiment_frame`` rendered and shaded by its verdict (see ``shaded``)."""
    return shaded(experiment_frame(rows, **kwargs))


def claim_status(verdict: str, expected: str) -> str:
    """What a verdict does to a claim that the difference is ``expected`` ("above" or "below"):
    "supported" (resolved on that side), "contradicted" (resolved on the other), or
    "not supported (not resolved)"."""
    if expected not in ("above", "below"):
        raise ValueError(f"expected must be 'above' or 'below', got {expected!r}")
    if verdict == NOT_RESOLVED:
        return "not supported (not resolved)"
    return "supported" if verdict == f"resolved, {expected}" else "contradicted"


def run_class(record: RunRecord) -> str:
    """What a run's wall time depends on besides its recipe: its device and threads, and whether
    the plan runner made it (one single-threaded run per core, next to other work)."""
    maker = "plan runner" if " plan " in f" {record.command or ''} " else "another command"
    return f"{record.device}, {maker}"


def load_range(records: Sequence[RunRecord]) -> str:
    """The load averages the records' ``host`` saw ("0.6-2.1 on 2 cpus, 9 of 80 records"), or
    "not recorded"."""
    hosts = [r.host for r in records if r.host]
    values = [h[k] for h in hosts for k in ("load_start", "load_end") if isinstance(h.get(k), (int, float))]
    if not values:
        return "not recorded"
    cpus = "/".join(str(c) for c in sorted({h["cpus"] for h in hosts if h.get("cpus")})) or "?"
    return f"{min(values):.1f}-{max(values):.1f} on {cpus} cpus ({len(hosts)} of {len(records)} records)"


def timing_frame(runs: Mapping[str, Sequence[RunRecord]], plain: str = "student") -> pd.DataFrame:
    """Wall time per recipe (``runs``: label -> records) and run class (``run_class``): runs,
    mean and range in minutes, seconds per epoch, and the time per epoch over that of the
    ``plain`` runs of the same class (blank where the class has none)."""
    def per_epoch(rs):
        return float(np.mean([r.wall_time_s / len(r.history) for r in rs]))

    classes = sorted({run_class(r) for rs in runs.values() for r in rs})
    plain_epoch = {c: per_epoch(rs) for c in classes
                   if (rs := [r for r in runs.get(plain, []) if run_class(r) == c])}
    rows = []
    for name, records in runs.items():
        for c in classes:
            mine = [r for r in records if run_class(r) == c]
            if not mine:
                continue
            minutes = [r.wall_time_s / 60 for r in mine]
            ratio = per_epoch(mine) / plain_epoch[c] if c in plain_epoch and name != "teacher" else math.nan
            rows.append({"recipe": name, "run class": c, "runs": len(mine),
                         "mean (min)": round(float(np.mean(minutes)), 1),
                         "range (min)": f"{min(minutes):.1f}-{max(minutes):.1f}",
                         "per epoch (s)": round(per_epoch(mine), 1),
                         f"per epoch / {plain}'s": "" if math.isnan(ratio) else f"{ratio:.2f}x"})
    return pd.DataFrame(rows).set_index("recipe")


def term_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Each loss term of one recipe's runs at the last epoch: mean value over the runs
    (unweighted), the recipe's weight, the weighted value, its share of the training loss, and
    the epoch where the term's mean over the runs peaks. Diagnostics (``.scale``, ``.warmup``)
    are left out."""
    weights = records[0].config["weights"]
    names = [t for t in records[0].history[0]["terms"] if not t.endswith((".scale", ".warmup"))]
    loss = float(np.mean([r.history[-1]["train_loss"] for r in records]))
    rows = []
    for t in names:
        per_epoch = np.mean([[h["terms"][t] for h in r.history] for r in records], axis=0)
        weight = weights.get(t)
        weighted = weight * per_epoch[-1] if weight is not None else math.nan
        rows.append({"term": t, "value": float(per_epoch[-1]), "weight": "" if weight is None else f"{weight:g}",
                     "weighted": weighted, "share of the loss": weighted / loss,
                     "peak epoch": int(np.argmax(per_epoch)) + 1})
    return pd.DataFrame(rows).set_index("term")


def term_share(records: Sequence[RunRecord], term: str, epoch: int = -1) -> float:
    """The mean over ``records`` of ``term``'s weighted value as a fraction of the training
    loss at ``epoch`` (default the last)."""
    return float(np.mean([r.config["weights"][term] * r.history[epoch]["terms"][term] / r.history[epoch]["train_loss"]
                          for r in records]))


def below_median(records: Sequence[RunRecord], gap: float = 10.0) -> list[tuple[RunRecord, float]]:
    """(record, median) of the runs that end more than ``gap`` points of last-epoch top-1 below
    the median of ``records`` (one experiment's seeds)."""
    median = float(np.median([r.last_top1 for r in records]))
    return [(r, median) for r in records if median - r.last_top1 > gap]


def reported_relative_improvement(method: str, tables: Sequence[Mapping[str, Sequence]]) -> tuple[float, int]:
    """The paper's footnote 1 for ``method`` over every pair of ``tables`` (``reported.TABLE_1``
    etc.) where it has a number: (the mean relative improvement over KD, how many pairs)."""
    from icd_lib.eval.metrics import relative_improvement

    found = [(a, k, v) for table in tables for a, k, v in zip(table.get(method, ()), table["kd"], table["student"])
             if a is not None]
    return (relative_improvement(*zip(*found)), len(found)) if found else (math.nan, 0)


def pairs_above(a: str, b: str, tables: Sequence[Mapping[str, Sequence]]) -> tuple[int, int]:
    """(pairs where method ``a`` is reported above ``b``, pairs where both are reported)."""
    both = [(x, y) for table in tables for x, y in zip(table[a], table[b]) if x is not None and y is not None]
    return sum(x > y for x, y in both), len(both)
