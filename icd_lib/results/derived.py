"""Quantities the part II chapters derive from run records: the weighted terms of the paper's
eq. 13, ICD's learned logit scale epoch by epoch and whether it collapsed, and the points of a
one-knob sweep.

A record's ``history`` holds, per epoch, the training-set mean of every loss term, unweighted
(``ce``, ``kd``, ``icd``, ICD's halves ``icd.contrast`` and ``icd.invariance``, and its scale
``icd.scale``); its ``config`` holds the weights the run trained with.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Iterable

from icd_lib.losses.icd import ICDLoss
from icd_lib.results.records import RunRecord

ICD_DEFAULTS = {name: p.default for name, p in inspect.signature(ICDLoss).parameters.items()
                if p.default is not inspect.Parameter.empty}
COLLAPSED_SCALE = 0.01  # healthy runs end at the clamp (10); collapsed ones below 0.002


def icd_option(record: RunRecord, name: str) -> float:
    """ICD option ``name`` (``alpha``, ``max_scale``) of the run: its override or ICDLoss's default."""
    options = (record.spec or {}).get("options", {})
    return float(options.get(f"icd.{name}", ICD_DEFAULTS[name]))


def weighted_terms(record: RunRecord, epoch: int = -1) -> dict[str, float]:
    """The terms of eq. 13 as the run weighted them, at ``epoch`` (default the last; training-set
    means): ``CE``, ``lambda KD``, ``beta contrast``, ``beta alpha invariance``."""
    weights, terms = record.config["weights"], record.history[epoch]["terms"]
    beta = weights.get("icd", 0.0)
    return {"CE": weights["ce"] * terms["ce"], "lambda KD": weights.get("kd", 0.0) * terms.get("kd", 0.0),
            "beta contrast": beta * terms["icd.contrast"],
            "beta alpha invariance": beta * icd_option(record, "alpha") * terms["icd.invariance"]}


def scale_trajectory(record: RunRecord) -> list[float]:
    """ICD's logit scale s = min(exp(tau), max_scale), the mean over each epoch's batches."""
    return [epoch["terms"]["icd.scale"] for epoch in record.history]


def is_collapsed(record: RunRecord) -> bool:
    """Whether ICD's scale ended the run below ``COLLAPSED_SCALE``: every logit of the batch is
    then nearly the same, the contrast sits at log(batch) and the term sends almost no gradient."""
    return scale_trajectory(record)[-1] < COLLAPSED_SCALE


def batches_at_initial_scale(record: RunRecord) -> float:
    """An upper bound on how many of the first epoch's batches kept the initial scale exp(1):
    the epoch's mean scale times its number of batches, over exp(init_tau)."""
    batches = math.ceil(record.train_size / record.config["batch_size"])
    return scale_trajectory(record)[0] * batches / math.exp(ICD_DEFAULTS["init_tau"])


def sweep_points(records: Iterable[RunRecord], key: str, default: float) -> dict[float, list[RunRecord]]:
    """{value: records} of the runs that move at most the weight or option ``key`` (e.g. ``icd``,
    ``icd.alpha``) off the recipe's default; runs that move nothing sit at ``default``."""
    points: dict[float, list[RunRecord]] = {}
    for record in records:
        spec = record.spec or {}
        moved = {**spec.get("weights", {}), **spec.get("options", {})}
        if set(moved) <= {key}:
            points.setdefault(float(moved.get(key, default)), []).append(record)
    return dict(sorted(points.items()))


def scaled_rows(rows: Iterable[dict], metrics: Iterable[str], factor: float) -> list[dict]:
    """Rows of ``summary.experiment_rows`` with ``metrics`` multiplied by ``factor`` (values, mean
    and sd), e.g. rates in hundredths so that every column of a table reads in points."""
    metrics, scaled = list(metrics), []
    for row in rows:
        new = {**row, "values": dict(row["values"])}
        for m in metrics:
            new["values"][m] = {seed: factor * v for seed, v in row["values"][m].items()}
            new[f"{m}_mean"], new[f"{m}_sd"] = factor * row[f"{m}_mean"], factor * row[f"{m}_sd"]
        scaled.append(new)
    return scaled
