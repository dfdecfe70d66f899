"""What the part II chapters compute from records: a plan group's runs, means and spreads over
seeds, differences to a baseline with confidence intervals, and where the numbers came from.

Every table of the book is a query here, over the complete records of a plan group
(``icd_lib.experiments.plans.plan_records``): ``experiment_rows`` (one row per experiment, seeds pooled) -> ``compare_to`` (difference to a
baseline such as KD, with a t interval) -> ``provenance_line`` (plan, profile, seeds, device,
commits) under it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy import stats

from icd_lib.results.records import RunRecord
from icd_lib.utils import wrap_fields


def label(record: RunRecord) -> str:
    """A short name for the experiment a record belongs to: its recipe and what it overrides."""
    spec = record.spec or {}
    changes = {**spec.get("weights", {}), **spec.get("options", {})}
    extra = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changes.items())
    return f"{record.method} ({extra})" if extra else record.method


def metric_of(record: RunRecord, metric: str) -> float:
    """A record field (``last_top1``) or a dotted path into its evaluation (``probe.test_top1``).

    A KeyError when the record has no such value (a teacher's ``logit_difference``, a field that is None)."""
    if "." not in metric and hasattr(record, metric):
        if getattr(record, metric) is None:
            raise KeyError(f"record {record.name} has no {metric!r} (it is None)")
        return float(getattr(record, metric))
    value = record.evaluation
    for key in metric.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"record {record.name} has no {metric!r} (evaluation keys: {sorted(record.evaluation or {})})")
        value = value[key]
    if value is None:
        raise KeyError(f"record {record.name} has no {metric!r} (it is None)")
    return float(value)


def metric_values(records: Iterable[RunRecord], metric: str) -> dict[int, float]:
    """{seed: ``metric_of`` the record} for the records that have ``metric``; the others are left out."""
    values = {}
    for record in records:
        try:
            values[record.seed] = metric_of(record, metric)
        except KeyError:
            pass
    return values


def experiment_rows(records: Iterable[RunRecord], metrics: Sequence[str] = ("last_top1", "best_top1"),
                    key: Callable[[RunRecord], str] = label) -> list[dict]:
    """One row per experiment (``key`` of its records), in order of first appearance: ``label``,
    ``n``, ``seeds``, ``values`` (metric -> {seed: value}), and per metric ``<metric>_mean``,
    ``<metric>_sd`` (sample sd, NaN for one value) and ``<metric>_n`` (how many values).

    A record without a metric (a teacher's ``logit_difference``, ``probe_styled`` in a record older
    than it) is left out of that metric only: its row's ``n`` and ``seeds`` still count it, and a
    metric no record of the row has is NaN with ``_n`` 0. A metric that no record at all has (a
    misspelt name) and two records of one experiment with the same seed are errors."""
    records = list(records)
    for metric in metrics:
        if records and not metric_values(records, metric):
            first = records[0].to_dict()
            numbers = sorted(k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            paths = sorted(f"{k}.<key>" for k in records[0].evaluation or {})
            raise KeyError(f"no record has the metric {metric!r}; give a record field ({', '.join(numbers)}) "
                           f"or a path into the evaluation ({', '.join(paths) or 'none recorded'})")
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    rows = []
    for name, members in groups.items():
        seeds = [r.seed for r in members]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"experiment {name!r} has repeated seeds {sorted(seeds)}: {[r.name for r in members]}")
        row = {"label": name, "n": len(members), "seeds": sorted(seeds), "values": {}}
        for metric in metrics:
            values = metric_values(members, metric)
            row["values"][metric] = values
            summary = mean_sd(list(values.values())) if values else (math.nan, math.nan)
            row[f"{metric}_mean"], row[f"{metric}_sd"] = summary
            row[f"{metric}_n"] = len(values)
        rows.append(row)
    return rows


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); the sd is NaN for fewer than two values."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("no values to summarise")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def difference_interval(values: dict[int, float], baseline: dict[int, float], confidence: float = 0.95) -> dict:
    """Mean of ``values`` minus mean of ``baseline`` with a ``confidence`` t interval.

    Runs of the same seed share the student's initialisation and the data order, so with at
    least two common seeds the difference is paired over them (t on the per-seed differences);
    otherwise Welch's interval for two independent samples. Returns ``difference``, ``low``,
    ``high``, ``paired``, ``n``, ``excludes_zero`` (NaN bounds when there are too few runs, and
    a NaN difference too when either side has no value), and ``confidence``.
    """
    if not values or not baseline:
        return {"difference": math.nan, "low": math.nan, "high": math.nan, "paired": False, "n": 0,
                "excludes_zero": False, "confidence": confidence}
    common = sorted(set(values) & set(baseline))
    if len(common) >= 2:
        diffs = np.array([values[s] - baseline[s] for s in common])
        half = stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
        centre, paired, n = float(diffs.mean()), True, len(common)
    else:
        a, b = np.array(list(values.values())), np.array(list(baseline.values()))
        centre, paired, n = float(a.mean() - b.mean()), False, min(len(a), len(b))
        if len(a) < 2 or len(b) < 2:
            half = math.nan
        else:
            va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
            dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
            half = stats.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(va + vb)
    low, high = centre - half, centre + half
    return {"difference": centre, "low": low, "high": high, "paired": paired, "n": n,
            "excludes_zero": bool(low > 0 or high < 0) if not math.isnan(half) else False,
            "confidence": confidence}


def interval_text(d: dict, unit: str = "points") -> str:
    """A ``difference_interval`` in words: "+1.20 points, 95% paired interval [+0.10, +2.30], n = 3"."""
    if d["n"] == 0:
        return "no comparison: a side has no values"
    if math.isnan(d["difference"]):
        return f"no comparison: a value is NaN (n = {d['n']})"
    if math.isnan(d["low"]):
        return f"{d['difference']:+.2f} {unit} (n = {d['n']}: too few for an interval)"
    kind = "paired" if d["paired"] else "unpaired (Welch)"
    return (f"{d['difference']:+.2f} {unit}, {d['confidence']:.0%} {kind} interval "
            f"[{d['low']:+.2f}, {d['high']:+.2f}], n = {d['n']}")


def direction(d: dict) -> str | None:
    """"lower" or "higher" when a ``difference_interval`` excludes 0 on that side, else None
    (the interval contains 0, or there are too few runs for one)."""
    if not d["excludes_zero"]:
        return None
    return "lower" if d["high"] < 0 else "higher"


def verdict(d: dict, expected: str) -> str:
    """Whether a ``difference_interval`` bears out a claim that the difference is ``expected``:
    "lower" or "higher" (the interval must exclude 0 on that side), or "similar" (it must not
    exclude 0; the text then says how large a difference the interval still allows)."""
    if expected not in ("lower", "higher", "similar"):
        raise ValueError(f"expected must be 'lower', 'higher' or 'similar', got {expected!r}")
    if math.isnan(d["low"]):
        return "not resolved: too few runs for an interval"
    if expected == "similar":
        allowed = max(abs(d["low"]), abs(d["high"]))
        return ("contradicted: they differ" if d["excludes_zero"] else
                f"consistent: no difference detected, though the interval allows up to {allowed:.2f}")
    found = direction(d)
    if found is None:
        return "not resolved: the interval contains 0"
    return f"{'consistent' if found == expected else 'contradicted'}: {found}"


def compare_to(rows: list[dict], baseline: str, metric: str = "last_top1", confidence: float = 0.95) -> list[dict]:
    """``rows`` (from ``experiment_rows``) with ``vs_<baseline>``: the ``difference_interval`` of
    each row's ``metric`` to the row labelled ``baseline``."""
    base = next((r for r in rows if r["label"] == baseline), None)
    if base is None:
        raise ValueError(f"no experiment labelled {baseline!r} among {[r['label'] for r in rows]}")
    return [{**r, f"vs_{baseline}": difference_interval(r["values"][metric], base["values"][metric], confidence)}
            for r in rows]


def provenance_line(records: Sequence[RunRecord], plan: str | None = None, group: str | None = None,
                    width: int | None = 88) -> str:
    """Where the numbers come from: plan group, profile, dataset, seeds, devices, commits.

    The fields are joined by ``"; "`` and wrapped to ``width`` columns at those boundaries
    (continuation lines indented two spaces; see ``icd_lib.utils.wrap_fields``); ``width`` None:
    one line."""
    if not records:
        return "no records yet"
    seeds = sorted({r.seed for r in records})
    devices = sorted({r.device for r in records})
    commits = sorted({(r.git_commit or "?")[:7] for r in records})
    dirty = any(r.git_dirty for r in records)
    fields = [f"plan {plan}, group {group}"] if plan else []
    fields += [f"{len(records)} runs", f"profile {', '.join(sorted({str(r.profile) for r in records}))}",
               f"dataset {', '.join(sorted({str(r.dataset) for r in records}))}", f"seeds {', '.join(map(str, seeds))}",
               f"device {devices[0]}", *devices[1:],
               f"trained at commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"
               f"{' (with uncommitted changes)' if dirty else ''}"]
    return wrap_fields(fields, width)
