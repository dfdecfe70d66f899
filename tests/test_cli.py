"""The command line: help a newcomer can follow, clear errors instead of tracebacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from icd_lib.cli import main
from icd_lib.config import get_profile
from icd_lib.results import RunRecord, save_record
from icd_lib.train.runs import run_name

REPO = Path(__file__).resolve().parents[1]


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_python_dash_m_help_lists_commands_and_examples():
    out = subprocess.run([sys.executable, "-m", "icd_lib", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for text in ("train-teacher", "distill", "evaluate", "sweep", "examples:", "python -m icd_lib distill --profile book"):
        assert text in out.stdout


@pytest.mark.parametrize("command", ["train-teacher", "distill", "evaluate", "sweep"])
def test_every_command_has_help(capsys, command):
    code, out, _ = run_main(capsys, command, "--help")
    assert code == 0 and "--profile" in out and "examples:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["distill", "--student", "resnet9"], "unknown model 'resnet9'; valid models: wrn_40_2"),
        (["distill", "--method", "magic"], "invalid choice: 'magic'"),
        (["train-teacher", "--profile", "huge"], "invalid choice: 'huge'"),
        (["distill", "--epochs", "0"], "must be >= 1"),
        (["sweep", "--seeds", "-1"], "must be >= 0"),
        (["evaluate"], "--checkpoint"),
    ],
)
def test_bad_arguments_exit_with_a_message(capsys, argv, message):
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["train-teacher", "distill"])
def test_distributed_flag_is_documented_and_refused_outside_torchrun(capsys, monkeypatch, command):
    from icd_lib.train.distributed import TORCHRUN_VARIABLES

    code, out, _ = run_main(capsys, command, "--help")
    assert code == 0 and "--distributed" in out and "torchrun --nproc_per_node" in out
    for variable in TORCHRUN_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    code, _, err = run_main(capsys, command, "--profile", "smoke", "--distributed")
    assert code == 2 and "start this under torchrun" in err and "Traceback" not in err
    code, _, err = run_main(capsys, command, "--profile", "smoke", "--distributed", "--device", "cpu")
    assert code == 2 and "leave out --device" in err


def test_missing_checkpoint_is_a_message_not_a_traceback(capsys, tmp_path):
    code, _, err = run_main(capsys, "evaluate", "--profile", "smoke", "--checkpoint", str(tmp_path / "nope.pt"))
    assert code == 2 and "no checkpoint at" in err and "Traceback" not in err


def test_sweep_prints_the_table_of_recorded_runs(capsys, tmp_path):
    profile = get_profile("smoke")
    for seed, best in ((0, 60.0), (1, 64.0)):
        name = run_name(profile, "kd", profile.student, profile.teacher, seed)
        save_record(RunRecord(name=name, role="student", method="kd", student=profile.student, teacher=profile.teacher,
                              seed=seed, config={}, history=[], best_top1=best, best_top5=95.0, best_epoch=1,
                              last_top1=best, last_top5=95.0, wall_time_s=1.0, device="cpu"), tmp_path / "results")
    assert main(["sweep", "--profile", "smoke", "--method", "kd", "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("kd"))
    assert row.split()[:4] == ["kd", "resnet8", "resnet8", "2"]
    assert "62.00 +- 2.83" in row  # mean of 60 and 64; sample std = 4 / sqrt(2)
