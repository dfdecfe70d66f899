"""Bad input as a hostile user tries it: every value is checked before anything is written, and
nothing the command line writes can leave --out."""
from __future__ import annotations

import os

import pytest

from icd_lib.cli import main


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, dirs, fs in os.walk(folder) for f in fs + dirs)


@pytest.mark.parametrize("method, assignment, accepted", [
    ("kd", "kd.standardize=no", "true or false"),  # bool("no") would be True
    ("kd", "kd.standardize=1", "true or false"),
    ("kd", "kd.temperature=true", "a finite number"),  # True would be T = 1
    ("kd", "kd.temperature=abc", "a finite number"),
    ("kd", "kd.temperature=inf", "a finite number"),
    ("icd+kd", "icd.alpha=nan", "a finite number"),
    ("kd", "kd=inf", "a finite number"),
    ("kd", "kd=-inf", "a finite number"),
    ("kd", "kd=1_000", "a finite number"),
    ("crd", "crd.num_negatives=1.5", "a whole number"),
    ("crd", "crd.num_negatives=1e3", "a whole number"),
    ("icd", "icd.learn_scale=yes", "true or false"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_option_value_and_form(capsys, tmp_path, method, assignment,
                                                                            accepted):
    code, err = run_main(capsys, "distill", "--profile", "smoke", "--method", method, "--set", assignment,
                         "--out", str(tmp_path / "out"))
    key, _, value = assignment.partition("=")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{key}={value!r}" in err and accepted in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


HOSTILE_VALUES = ["x/../../../ESCAPED", "../ESCAPED", "/tmp/ESCAPED", "a\\b", "..", "a\0b", "9" * 300,
                  "0." + "0" * 250 + "1"]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("key", ["kd.standardize", "kd.temperature", "kd", "crd.num_negatives"])
def test_no_value_reaches_a_path_outside_out(capsys, tmp_path, key, value):
    out = tmp_path / "deep" / "out"
    method = "crd" if key.startswith("crd") else "kd"
    code, err = run_main(capsys, "distill", "--profile", "smoke", "--method", method, "--set", f"{key}={value}",
                         "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert files_under(tmp_path) == []  # nothing inside --out, nothing beside or above it


@pytest.mark.parametrize("argv", [["--seed", str(2**64)], ["--seed", "1.5"], ["--seed", "-1"]])
def test_a_bad_seed_is_refused_before_anything_is_written(capsys, tmp_path, argv):
    code, err = run_main(capsys, "distill", "--profile", "smoke", "--method", "kd", *argv, "--out", str(tmp_path / "o"))
    assert code == 2 and "seed" in err.strip().splitlines()[-1] and "Traceback" not in err  # argparse: usage, error
    assert files_under(tmp_path) == []


def teacher_on_disk(out, history_in_checkpoint: list[dict], run_name: str | None = None):
    """A complete smoke teacher run under ``out`` whose record has one history and whose last.pt
    (a real resnet8) may have another; returns the student spec that distils from it."""
    from icd_lib.experiments import runs
    from icd_lib.experiments.spec import make_spec
    from icd_lib.results import RunRecord, save_record
    from icd_lib.train.checkpoint import save_checkpoint

    student = make_spec("smoke", "kd")
    teacher = student.teacher_spec()
    history = [{"epoch": 1, "train_loss": 1.25, "test_top1": 61.5, "test_top5": 95.0}]
    save_record(RunRecord(name=teacher.name, role="teacher", method="student", model=teacher.model, teacher=None,
                          seed=0, config={}, history=history, best_top1=61.5, best_top5=95.0, best_epoch=1,
                          last_top1=61.5, last_top5=95.0, wall_time_s=1.0, device="cpu", spec=teacher.identity(),
                          evaluation={"probe": {}}), runs.results_dir(out))
    model = runs.new_model(teacher.model, teacher.dataset, 0)
    save_checkpoint({"config": {"model": teacher.model, "run_name": run_name or teacher.name}, "epoch": 1,
                     "model": model.state_dict(), "history": history_in_checkpoint, "best_top1": 61.5,
                     "best_epoch": 1, "best_model": model.state_dict(), "run_info": {"dataset": teacher.dataset}},
                    runs.checkpoint_dir(out, teacher.name) / "last.pt")
    return student


def test_a_teacher_folder_holding_another_models_checkpoint_is_refused(tmp_path):
    from icd_lib.experiments import runs
    from icd_lib.train.checkpoint import CheckpointError

    own = [{"epoch": 1, "train_loss": 1.25, "test_top1": 61.5, "test_top5": 95.0}]
    student = teacher_on_disk(tmp_path / "own", own)
    assert runs.load_teacher(student.teacher_spec(), tmp_path / "own").top1 == 61.5  # its own checkpoint: accepted
    other = [{"epoch": 1, "train_loss": 0.75, "test_top1": 70.25, "test_top5": 97.0}]  # same architecture, other run
    for out, (history, name) in {"other": (other, None), "renamed": (own, "smoke-teacher-resnet8-seed1")}.items():
        student = teacher_on_disk(tmp_path / out, history, name)
        teacher = student.teacher_spec()
        folder = runs.checkpoint_dir(tmp_path / out, teacher.name)
        with pytest.raises(CheckpointError, match=f"{folder / 'last.pt'} is not the checkpoint of teacher run "
                                                  f"{teacher.name} .*delete {folder} and .*{teacher.name}.json"):
            runs.load_teacher(teacher, tmp_path / out)


def test_distilling_from_a_foreign_teacher_checkpoint_is_one_line(capsys, tmp_path):
    other = [{"epoch": 1, "train_loss": 0.75, "test_top1": 70.25, "test_top5": 97.0}]
    teacher_on_disk(tmp_path, other)
    code, err = run_main(capsys, "distill", "--profile", "smoke", "--method", "kd", "--out", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is not the checkpoint of teacher run" in err
    assert not (tmp_path / "checkpoints" / "smoke-kd-resnet8-from-resnet8-seed0").exists()


def test_a_record_with_an_impossible_accuracy_is_not_printed_by_sweep(capsys, tmp_path):
    from icd_lib.experiments.spec import make_spec
    from icd_lib.results import RunRecord, save_record

    spec = make_spec("smoke", "student")
    save_record(RunRecord(name=spec.name, role="student", method="student", model=spec.model, teacher=None, seed=0,
                          config={}, history=[{"epoch": 1}], best_top1=1e6, best_top5=95.0, best_epoch=1,
                          last_top1=1e6, last_top5=95.0, wall_time_s=1.0, device="cpu", spec=spec.identity(),
                          evaluation={"probe": {}}), tmp_path / "results")
    code, err = run_main(capsys, "sweep", "--profile", "smoke", "--method", "student", "--seeds", "0",
                         "--out", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "best_top1 is a percentage" in err


def truncated_checkpoint(path):
    import torch

    torch.save({"x": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])


NOT_CHECKPOINTS = {
    "text": lambda path: path.write_text("hello world"),
    "empty": lambda path: path.write_bytes(b""),
    "truncated": truncated_checkpoint,
    "plain pickle": lambda path: path.write_bytes(__import__("pickle").dumps({"a": object}, protocol=4)),
}


@pytest.mark.parametrize("kind", NOT_CHECKPOINTS)
def test_a_file_that_is_not_a_checkpoint_is_one_line_without_torchs_advice(capsys, tmp_path, kind):
    path = tmp_path / "model.pt"
    NOT_CHECKPOINTS[kind](path)
    code, err = run_main(capsys, "evaluate", "--profile", "smoke", "--checkpoint", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot read checkpoint {path}" in err and "delete it" in err and "weights_only" not in err


def test_a_killed_record_write_leaves_no_temporary_once_the_run_starts_again(tmp_path, monkeypatch):
    from icd_lib.experiments import runs
    from icd_lib.experiments.spec import make_spec

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    spec = make_spec("smoke", "student")
    results = tmp_path / "results"
    results.mkdir()
    partial = results / f".{spec.name}.json.k1ll3d.tmp"  # what atomic_write leaves when killed
    partial.write_text('{"name": "')
    others = [results / ".smoke-kd-resnet8-from-resnet8-seed0.json.x.tmp", results / "notes.tmp"]
    for other in others:
        other.write_text("another run's write, or not ours")
    monkeypatch.setattr(runs, "load_train_set", stop)  # stop once the run holds its lock
    with pytest.raises(Stop):
        runs.execute(spec, runs.RunOptions(tmp_path, progress=False))
    assert not partial.exists() and all(other.exists() for other in others)


def test_a_run_that_fails_before_writing_anything_leaves_no_folder_behind(tmp_path, monkeypatch):
    from icd_lib.experiments import runs
    from icd_lib.experiments.lock import RunLock
    from icd_lib.experiments.spec import make_spec

    def invalid(*args, **kwargs):
        raise ValueError("kd: temperature must be > 0, got 0")  # what a term's own check raises at the start

    monkeypatch.setattr(runs, "load_train_set", invalid)
    spec = make_spec("smoke", "student")
    with pytest.raises(ValueError, match="temperature"):
        runs.execute(spec, runs.RunOptions(tmp_path / "out", progress=False))
    assert files_under(tmp_path) == []  # no out/, results/, checkpoints/ or run folder with a lock
    (tmp_path / "mine" / "results").mkdir(parents=True)
    with pytest.raises(ValueError, match="temperature"):
        runs.execute(spec, runs.RunOptions(tmp_path / "mine", progress=False))
    assert files_under(tmp_path / "mine") == ["results"]  # what was there before stays
    with RunLock(runs.checkpoint_dir(tmp_path / "mine", spec.name)):
        pass  # a lock released without an error keeps its folder (the run's checkpoints live there)
    assert (runs.checkpoint_dir(tmp_path / "mine", spec.name) / ".lock").is_file()


def test_a_process_that_opened_a_lock_file_its_failed_holder_removed_reports_the_run_busy(tmp_path, monkeypatch):
    """The race that removing a lock file opens: B opens .lock, A fails and removes it, B locks the
    removed file. B must not think it holds the run (C could lock a new .lock meanwhile)."""
    import builtins

    from icd_lib.experiments import lock
    from icd_lib.experiments.lock import RunBusy, RunLock

    folder = tmp_path / "checkpoints" / "run"
    first = RunLock(folder)
    first.__enter__()

    def open_then_holder_fails(path, mode):
        handle = builtins.open(path, mode)  # B has the file open ...
        first.__exit__(ValueError, ValueError("failed"), None)  # ... when A fails and removes it
        return handle

    monkeypatch.setattr(lock, "open", open_then_holder_fails, raising=False)
    with pytest.raises(RunBusy, match="run was just released by a run that failed; start it again"):
        RunLock(folder).__enter__()
    assert not folder.exists()
