"""Derived quantities over records, against hand computations."""
from __future__ import annotations

import math

import pytest

from icd_lib.results import RunRecord
from icd_lib.results.derived import (batches_at_initial_scale, icd_option, is_collapsed, scale_trajectory, scaled_rows,
                                     sweep_points, weighted_terms)


def record(seed=0, weights=None, options=None, scales=(7.0, 10.0), contrast=1.0, invariance=0.2) -> RunRecord:
    config_weights = {"ce": 1.0, "kd": 1.0, "icd": 1.0, **(weights or {})}
    history = [{"epoch": i + 1, "terms": {"ce": 0.3, "kd": 0.5, "icd.contrast": contrast,
                                          "icd.invariance": invariance, "icd.scale": s}}
               for i, s in enumerate(scales)]
    spec = {"method": "icd+kd", "seed": seed, "weights": weights or {}, "options": options or {}}
    return RunRecord(name=f"r{seed}", role="student", method="icd+kd", model="resnet8", teacher="resnet20",
                     seed=seed, config={"weights": config_weights, "batch_size": 64}, history=history,
                     best_top1=88.0, best_top5=99.0, best_epoch=1, last_top1=88.0, last_top5=99.0, wall_time_s=1.0,
                     device="cpu", train_size=10000, spec=spec)


def test_weighted_terms_of_eq_13_by_hand():
    terms = weighted_terms(record(weights={"icd": 10.0, "kd": 2.0}, options={"icd.alpha": 2.0}))
    assert terms == pytest.approx({"CE": 0.3, "lambda KD": 2 * 0.5, "beta contrast": 10 * 1.0,
                                   "beta alpha invariance": 10 * 2.0 * 0.2})


def test_alpha_defaults_to_the_losss_own_default():
    assert icd_option(record(), "alpha") == 0.5
    assert weighted_terms(record())["beta alpha invariance"] == pytest.approx(0.5 * 0.2)
    assert icd_option(record(options={"icd.max_scale": 100.0}), "max_scale") == 100.0


def test_collapse_reads_the_last_epochs_scale():
    assert scale_trajectory(record(scales=(0.03, 1e-9))) == [0.03, 1e-9]
    assert is_collapsed(record(scales=(0.03, 1e-9)))
    assert not is_collapsed(record(scales=(7.0, 10.0)))


def test_batches_at_the_initial_scale_bound():
    # 10,000 images in batches of 64: 157 batches; a mean of 0.035 sums to 5.5, at most 2 batches at e
    assert batches_at_initial_scale(record(scales=(0.035, 0.0))) == pytest.approx(0.035 * 157 / math.e)


def test_sweep_points_keep_runs_that_move_only_the_key():
    runs = [record(0), record(1, weights={"icd": 10.0}), record(2, weights={"kd": 5.0}),
            record(3, weights={"icd": 10.0}, options={"icd.alpha": 0.0})]
    points = sweep_points(runs, "icd", default=1.0)
    assert list(points) == [1.0, 10.0]
    assert [r.seed for r in points[1.0]] == [0] and [r.seed for r in points[10.0]] == [1]


def test_scaled_rows_scale_values_mean_and_sd_and_leave_the_input_alone():
    rows = [{"label": "kd", "n": 2, "values": {"rate": {0: 0.25, 1: 0.5}, "top1": {0: 80.0, 1: 82.0}},
             "rate_mean": 0.375, "rate_sd": 0.17678, "top1_mean": 81.0, "top1_sd": 1.41421}]
    scaled = scaled_rows(rows, ["rate"], 100)[0]
    assert scaled["values"]["rate"] == {0: 25.0, 1: 50.0} and scaled["values"]["top1"] == {0: 80.0, 1: 82.0}
    assert scaled["rate_mean"] == pytest.approx(37.5) and scaled["rate_sd"] == pytest.approx(17.678)
    assert rows[0]["values"]["rate"] == {0: 0.25, 1: 0.5} and rows[0]["rate_mean"] == 0.375
