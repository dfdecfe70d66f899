"""Executing a spec: one process per run, teachers from the right dataset, checks before training."""
from __future__ import annotations

import pytest

from icd_lib.experiments import runs
from icd_lib.experiments.lock import RunBusy, RunLock, is_locked
from icd_lib.experiments.spec import make_spec
from icd_lib.train.checkpoint import CheckpointError
from conftest import copy_outputs

TEACHER = make_spec("smoke", "teacher", dataset="content_style")


def test_a_run_another_process_holds_is_refused_with_its_owner(tmp_path):
    spec = make_spec("smoke", "student")
    with RunLock(runs.checkpoint_dir(tmp_path, spec.name)):
        assert is_locked(runs.checkpoint_dir(tmp_path, spec.name))
        with pytest.raises(RunBusy, match=r"smoke-student-resnet8-seed0 is being trained by process \d+ on"):
            runs.execute(spec, runs.RunOptions(tmp_path, progress=False))
    assert not is_locked(runs.checkpoint_dir(tmp_path, spec.name))  # released with the with-block


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    (tmp_path / "results").write_text("a file where the results folder should be")
    with pytest.raises(PermissionError, match="cannot write to .*results .*choose a writable --out"):
        runs.execute(make_spec("smoke", "student"), runs.RunOptions(tmp_path, progress=False))
    assert not (tmp_path / "checkpoints").exists()  # nothing started


@pytest.mark.slow
def test_a_teacher_of_another_dataset_is_refused_and_a_deleted_best_checkpoint_comes_back(trained_runs, tmp_path):
    copy_outputs(trained_runs(TEACHER), tmp_path)
    last = runs.checkpoint_dir(tmp_path, TEACHER.name) / "last.pt"
    with pytest.raises(CheckpointError, match="trained on 'content_style', not 'fashion_mnist'"):
        runs.load_trained(last, "fashion_mnist")
    best = last.with_name("best.pt")
    best.unlink()
    runs.execute(TEACHER, runs.RunOptions(tmp_path, progress=False))  # complete: read back, and best.pt rebuilt from last.pt
    assert best.is_file()
    last.unlink()
    with pytest.raises(CheckpointError, match="is recorded but its checkpoint .* is missing: restore it"):
        runs.ensure_teacher(make_spec("smoke", "kd", dataset="content_style"), runs.RunOptions(tmp_path, progress=False))


@pytest.mark.slow
def test_an_architecture_mismatch_names_both_models(trained_runs):
    last = runs.checkpoint_dir(trained_runs(TEACHER), TEACHER.name) / "last.pt"
    with pytest.raises(CheckpointError, match="holds a 'resnet8' model, not 'resnet20'"):
        runs.load_trained(last, "content_style", "resnet20")


@pytest.mark.slow
def test_reevaluate_measures_complete_runs_again_without_training(trained_runs, tmp_path):
    import json

    from icd_lib.experiments.runner import reevaluate_plan

    spec = make_spec("smoke", "student")  # a run of the smoke plan's comparison-a
    copy_outputs(trained_runs(spec), tmp_path)
    path = runs.spec_record_path(tmp_path, spec)
    data = json.loads(path.read_text())
    full = dict(data["evaluation"])
    data["evaluation"] = {"probe": full["probe"]}  # as written before the evaluation grew
    path.write_text(json.dumps(data))
    history = data["history"]
    skipped = reevaluate_plan("smoke", tmp_path, group="comparison-a", progress=False)
    again = json.loads(path.read_text())
    assert set(again["evaluation"]) == set(full) and again["history"] == history
    assert skipped == []  # the other runs of the group are not complete here: left alone


def test_plan_records_reads_complete_records_in_plan_order_and_lists_the_rest(tmp_path):
    """Complete means: a record with its final evaluation (one without is still missing)."""
    from dataclasses import replace as copy_with

    from icd_lib.experiments.plans import get_plan, plan_records
    from icd_lib.results import RunRecord, save_record

    specs = next(g for g in get_plan("smoke") if g.name == "comparison-a").specs
    base = RunRecord(name="", role="student", method="kd", model="resnet8", teacher="resnet8", seed=0, config={},
                     history=[{"epoch": 1}], best_top1=50.0, best_top5=90.0, best_epoch=1, last_top1=50.0,
                     last_top5=90.0, wall_time_s=1.0, device="cpu", evaluation={"probe": {}})
    save_record(copy_with(base, name=specs[1].name, spec=specs[1].identity()), tmp_path / "results")
    save_record(copy_with(base, name=specs[0].name, spec=specs[0].identity(), evaluation=None), tmp_path / "results")
    found, missing = plan_records("smoke", "comparison-a", tmp_path)
    assert [r.name for r in found] == [specs[1].name]
    assert missing == [s.name for s in specs if s != specs[1]]
    with pytest.raises(ValueError, match="no group 'nope'"):
        plan_records("smoke", "nope", tmp_path)
