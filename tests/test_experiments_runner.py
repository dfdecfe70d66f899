"""The plan runner: status counts, two runners sharing one plan, a SIGKILL mid-run, --list and
--index, and the repository's size budget for committed records and checkpoints."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icd_lib.experiments.lock import RunLock
from icd_lib.experiments.plans import get_plan, plan_specs
from icd_lib.experiments.runner import format_status, list_commands, plan_status
from icd_lib.experiments.runs import checkpoint_dir, execute, spec_record_path
from icd_lib.experiments.spec import make_spec
from icd_lib.results import RunRecord, load_record, save_record
from icd_lib.results.records import without_machine_fields
from icd_lib.train.options import RunOptions
from conftest import copy_outputs

REPO = Path(__file__).resolve().parents[1]
SIZE_BUDGET_MB = 40  # results/README.md states it


def icd(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "icd_lib", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def fake_complete_record(spec, out: Path, wall_time_s: float) -> None:
    record = RunRecord(name=spec.name, role="student", method=spec.method, model=spec.model, teacher=spec.teacher,
                       seed=spec.seed, config={}, history=[{"epoch": 1, "test_top1": 50.0}], best_top1=50.0,
                       best_top5=90.0, best_epoch=1, last_top1=50.0, last_top5=90.0, wall_time_s=wall_time_s,
                       device="cpu", spec=spec.identity(), evaluation={"probe": {}})
    save_record(record, out / "results")


def test_status_counts_done_running_and_pending(tmp_path):
    specs = plan_specs(get_plan("smoke"))  # 2 teachers, then the groups' runs, comparison-a first
    sizes = {g.name: len(g.specs) for g in get_plan("smoke")}
    for spec in specs[:3]:
        fake_complete_record(spec, tmp_path, wall_time_s=60.0)
    unfinished = specs[3]
    trained = {"name": unfinished.name, "spec": unfinished.identity(), "evaluation": None}  # not yet evaluated: pending
    save_record(RunRecord(**{**load_record(spec_record_path(tmp_path, specs[0])).to_dict(), **trained}),
                tmp_path / "results")
    with RunLock(checkpoint_dir(tmp_path, specs[4].name)):  # another process trains it
        rows = {r.name: r for r in plan_status("smoke", tmp_path)}
    assert (rows["teachers"].done, rows["teachers"].running, rows["teachers"].pending) == (2, 0, 0)
    a = sizes["comparison-a"]
    assert (rows["comparison-a"].done, rows["comparison-a"].running, rows["comparison-a"].pending) == (1, 1, a - 2)
    assert (rows["invariance"].done, rows["invariance"].pending) == (0, sizes["invariance"])
    assert rows["teachers"].seconds_per_run == 60.0
    text = format_status("smoke", list(rows.values()), workers=2)
    left = (len(specs) - 3) * 60 / 2 / 60  # minutes: every unfinished run at the measured minute, 2 at a time
    assert f"3/{len(specs)} runs done, 1 running" in text and f"about {left:.0f} min left on 2 worker(s)" in text
    assert all(len(line) <= 88 for line in text.splitlines())
    one_line = format_status("smoke", list(rows.values()), workers=2, width=None).splitlines()
    summary = f"plan smoke: 3/{len(specs)} runs done, 1 running; about {left:.0f} min left on 2 worker(s), from the "
    assert one_line[-1] == summary + "measured time per run" and len(one_line[-1]) > 88  # so the default wraps it
    wrapped = text.splitlines()[len(one_line) - 1:]
    assert len(wrapped) == 2 and " ".join(line.strip() for line in wrapped) == one_line[-1]


def test_the_time_left_counts_each_runs_process_start_up():
    """13 quick runs left (2 s of epochs each, as records count them) on 2 workers are not "0 min":
    each worker also starts Python and imports torch first."""
    from icd_lib.experiments.runner import GroupStatus

    rows = [GroupStatus("comparison-a", done=2, running=0, pending=13, seconds_per_run=2.0)]
    left = 13 * (2.0 + 30.0) / 2  # seconds: every run left at its epochs plus 30 s of start-up, 2 at a time
    text = format_status("smoke", rows, workers=2, startup_s=30.0, width=None)
    assert f"about {left / 60:.0f} min left on 2 worker(s), from the measured time per run and 30 s of start-up" in text


def test_list_prints_one_command_per_pending_run(tmp_path):
    specs = plan_specs(get_plan("smoke"))
    fake_complete_record(specs[0], tmp_path, 1.0)
    commands = list_commands("smoke", tmp_path)
    assert len(commands) == len(specs) - 1
    assert commands[0] == f"python -m icd_lib plan smoke --index 1 --out {tmp_path}"
    only = list_commands("smoke", tmp_path, group="invariance")
    invariance = [s.name for s in next(g for g in get_plan("smoke") if g.name == "invariance").specs]
    expected = [i for i, s in enumerate(specs) if s.name in invariance or s.name == "smoke-content_style-teacher-resnet8-seed0"]
    assert [int(c.split("--index ")[1].split()[0]) for c in only] == expected  # its teacher, then its runs


@pytest.mark.slow
def test_two_runners_share_a_plan_and_train_every_run_once(trained_runs, tmp_path):
    group = ["--group", "causal"]  # two students (their teacher, trained once per session, is copied in)
    teacher = next(s.teacher_spec() for s in plan_specs(get_plan("smoke"), "causal") if s.teacher)
    copy_outputs(trained_runs(teacher), tmp_path)
    runners = [icd("plan", "smoke", "--run", *group, "--out", str(tmp_path), "--workers", "1", "--no-worktree", "--quiet")
               for _ in range(2)]
    outputs = [r.communicate(timeout=600)[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs
    students = [spec for spec in plan_specs(get_plan("smoke"), "causal") if not spec.is_teacher]
    assert len(students) == 2
    for spec in students:
        record = load_record(spec_record_path(tmp_path, spec))
        assert record.evaluation is not None and len(record.segments) == 1  # one training, never a second
        log = (tmp_path / "logs" / f"{spec.name}.log").read_text()
        assert log.count("record:") == 1, log


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_to_the_same_record(trained_runs, tmp_path):
    args = ["distill", "--profile", "smoke", "--method", "kd", "--epochs", "3", "--quiet"]
    for out in ("whole", "killed"):  # the teacher, trained once per session
        copy_outputs(trained_runs(make_spec("smoke", "teacher")), tmp_path / out)
    # the uninterrupted reference, in this process (the command line builds the same spec)
    execute(make_spec("smoke", "kd", epochs=3), RunOptions(tmp_path / "whole", progress=False))

    killed = tmp_path / "killed"
    run = icd(*args, "--out", str(killed), start_new_session=True)
    last = next(killed.glob("checkpoints/*kd*/last.pt"), None)
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        last = next(killed.glob("checkpoints/*kd*/last.pt"), None)
        if last is not None:
            break
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert last is not None, "no checkpoint appeared before the kill"
    resumed = icd(*args, "--out", str(killed))
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()

    name = "smoke-kd-resnet8-from-resnet8-seed0-e3"
    a, b = (json.loads((tmp_path / d / "results" / f"{name}.json").read_text()) for d in ("whole", "killed"))
    assert without_machine_fields(a["history"]) == without_machine_fields(b["history"])
    assert a["evaluation"] == b["evaluation"]
    assert len(b["segments"]) == 2 and b["segments"][1]["from_epoch"] >= 1


def test_committed_records_and_checkpoints_fit_the_size_budget():
    """Colab's pip install clones the repository: the results and checkpoints it carries stay small."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "results", "checkpoints"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    total = sum((REPO / path).stat().st_size for path in listed if (REPO / path).is_file())
    assert total <= SIZE_BUDGET_MB * 2**20, f"{total / 2**20:.1f} MB of records and checkpoints, budget {SIZE_BUDGET_MB} MB"
    students = {p.split("/")[1] for p in listed if p.startswith("checkpoints/") and "-teacher-" not in p}
    explored = {"book-content_style-student-resnet8-seed0", "book-content_style-icd+kd-resnet8-from-resnet20-seed0"}
    assert students <= explored, f"student checkpoints are not committed (the records hold what chapters show), " \
                                 f"except the two the style explorer runs: {sorted(students - explored)}"
    assert "results/README.md" in listed and f"{SIZE_BUDGET_MB} MB" in (REPO / "results" / "README.md").read_text()


def test_set_on_a_plan_makes_a_variant_of_one_group(tmp_path, capsys):
    from icd_lib.cli import main
    from icd_lib.experiments.plans import plan_groups

    variant = {g.name: g for g in plan_groups("smoke", "ablations", ["kd=0.5"])}["ablations"]
    original = {g.name: g for g in get_plan("smoke")}["ablations"]
    assert all(dict(s.weights)["kd"] == 0.5 for s in variant.specs)
    assert dict(variant.specs[0].options) == dict(original.specs[0].options) == {"icd.alpha": 0.0}
    assert not {s.name for s in variant.specs} & {s.name for s in original.specs}
    commands = list_commands("smoke", tmp_path, "ablations", ["icd.alpha=0.2"])
    assert commands and all(c.endswith("--group ablations --set icd.alpha=0.2") for c in commands)
    with pytest.raises(SystemExit):
        main(["plan", "smoke", "--status", "--set", "kd=0.5", "--out", str(tmp_path)])
    assert "name it with --group" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plan", "smoke", "--status", "--group", "invariance", "--set", "kd=0.5", "--out", str(tmp_path)])
    assert "weight kd=0.5 is not a term of recipe 'student'; its terms: ce" in capsys.readouterr().err



def failing_worker(message: str, launched: list):
    """A worker command that fails at once, as a run without its dataset does: one line, exit 2
    (``@`` in ``message`` becomes the run's index)."""
    def command_of(plan, out, how, variant):
        def command(index):
            launched.append(index)
            text = message.replace("@", str(index))
            return [sys.executable, "-c", f"print({text!r}); raise SystemExit(2)"]
        return command
    return command_of


def test_the_plan_stops_when_runs_fail_for_one_shared_reason(tmp_path, monkeypatch, capsys):
    from icd_lib.experiments import runner

    launched = []
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    monkeypatch.setattr(runner, "worker_command", failing_worker("error: CIFAR-100 not found in data/", launched))
    failed = runner.run_plan("paper", RunOptions(tmp_path, progress=False), group="table-1", workers=1, use_worktree=False)
    assert len(launched) == runner.SHARED_CAUSE_RUNS
    assert len(failed) < len(plan_specs(get_plan("paper"), "table-1"))
    out = capsys.readouterr().out
    assert "the same reason" in out and "CIFAR-100 not found in data/" in out


def test_different_reasons_do_not_stop_the_plan(tmp_path, monkeypatch):
    from icd_lib.experiments import runner

    launched = []
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    monkeypatch.setattr(runner, "worker_command", failing_worker("error: run @ failed", launched))
    runner.run_plan("paper", RunOptions(tmp_path, progress=False), group="table-1", workers=1, use_worktree=False)
    assert len(launched) > runner.SHARED_CAUSE_RUNS


def test_shared_cause_needs_that_many_equal_reasons_in_a_row():
    from icd_lib.experiments.runner import shared_cause

    assert shared_cause(["a", "b", "b", "b"], runs=3) == "b"
    assert shared_cause(["b", "b", "a"], runs=3) is None
    assert shared_cause(["b", "b"], runs=3) is None
