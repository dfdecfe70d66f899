"""The command line: help a newcomer can follow, clear errors instead of tracebacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from icd_lib.cli import main
from icd_lib.experiments.spec import make_spec
from icd_lib.results import RunRecord, save_record

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


@pytest.mark.parametrize("command", ["train-teacher", "distill", "evaluate", "sweep", "plan"])
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
        (["distill", "--device", "foo"], "unknown device 'foo'; use cpu, cuda or cuda:N"),
        (["plan", "book"], "one of the arguments --status --run --list --index --reevaluate is required"),
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


def complete_record(spec, last_top1: float) -> RunRecord:
    return RunRecord(name=spec.name, role="student", method=spec.method, model=spec.model, teacher=spec.teacher,
                     seed=spec.seed, config={}, history=[{"epoch": 1}], best_top1=last_top1, best_top5=95.0,
                     best_epoch=1, last_top1=last_top1, last_top5=95.0, wall_time_s=1.0, device="cpu",
                     spec=spec.identity(), evaluation={"probe": {}})


def test_sweep_prints_the_table_of_recorded_runs(capsys, tmp_path):
    for seed, top1 in ((0, 60.0), (1, 64.0)):
        save_record(complete_record(make_spec("smoke", "kd", seed=seed), top1), tmp_path / "results")
    assert main(["sweep", "--profile", "smoke", "--method", "kd", "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("kd"))
    assert row.split()[:4] == ["kd", "resnet8", "resnet8", "2"]
    assert "62.00 +- 2.83" in row  # mean of 60 and 64; sample std = 4 / sqrt(2)


def test_set_changes_the_recipe_and_names_the_valid_keys(capsys, tmp_path):
    spec = make_spec("smoke", "icd+kd", options={"icd.alpha": 0.1}, weights={"kd": 0.5})
    save_record(complete_record(spec, 55.0), tmp_path / "results")
    code = main(["distill", "--profile", "smoke", "--method", "icd+kd", "--set", "icd.alpha=0.1", "--set", "kd=0.5",
                 "--out", str(tmp_path)])
    assert code == 0 and spec.name in capsys.readouterr().out  # read back, not trained
    code, _, err = run_main(capsys, "distill", "--profile", "smoke", "--set", "icd.beta=1", "--out", str(tmp_path))
    assert code == 2 and "term 'icd' has no option 'beta'; its options: feat_dim" in err and "Traceback" not in err
    code, _, err = run_main(capsys, "distill", "--profile", "smoke", "--method", "kd", "--set", "icd=1")
    assert code == 2 and "its terms: ce, kd" in err


@pytest.mark.parametrize("argv, environment, message", [
    (["distill"], {"ICD_PROFILE": "foo"}, "unknown profile 'foo' (set by argument or $ICD_PROFILE); valid profiles"),
    (["plan", "nope", "--status"], {}, "unknown plan 'nope'; valid plans: book, paper, smoke"),
    (["plan", "smoke", "--index", "999"], {}, "plan smoke has 24 runs (indices 0 to 23), not 999"),
])
def test_expected_failures_are_one_line_and_exit_2(capsys, monkeypatch, tmp_path, argv, environment, message):
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    code, _, err = run_main(capsys, *argv, "--out", str(tmp_path))
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_corrupt_record_during_a_sweep_is_a_message_and_debug_shows_the_traceback(capsys, tmp_path):
    spec = make_spec("smoke", "kd")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / f"{spec.name}.json").write_text("{ not json")
    argv = ["sweep", "--profile", "smoke", "--method", "kd", "--seeds", "0", "--out", str(tmp_path)]
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and "is not a valid run record" in err and "delete it and rerun" in err
    with pytest.raises(ValueError, match="is not a valid run record"):
        main([*argv, "--debug"])


def test_cuda_on_a_machine_without_a_gpu_is_refused(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_main(capsys, "distill", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err and "Runtime > Change runtime type" in err and "--device cpu" in err


@pytest.mark.parametrize("argv", [["distill", "--profile", "paper", "--method", "kd"],
                                  ["train-teacher", "--profile", "paper"],
                                  ["plan", "paper", "--run", "--group", "table-1"]])
def test_the_paper_recipe_on_a_cpu_is_refused_with_the_colab_instruction(capsys, monkeypatch, tmp_path, argv):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ICD_ALLOW_CPU", raising=False)
    code, _, err = run_main(capsys, *argv, "--out", str(tmp_path / "out"))
    assert code == 2 and "meant for a GPU" in err and "Runtime > Change runtime type" in err, err
    assert "ICD_ALLOW_CPU=1" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_training_command_names_its_runtime_first(capsys, tmp_path):
    spec = make_spec("smoke", "kd")
    save_record(complete_record(spec, 55.0), tmp_path / "results")
    assert main(["distill", "--profile", "smoke", "--method", "kd", "--out", str(tmp_path)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("runtime: ") and ("GPU" in first)  # "GPU: <name>" or "no GPU: cpu (...)"


def test_the_readme_states_every_exit_code_the_command_line_uses():
    import re

    from icd_lib.cli.main import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_RUNS_FAILED
    from icd_lib.experiments.lock import EXIT_BUSY

    section = (REPO / "README.md").read_text().split("### Errors and exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert documented == {0, EXIT_RUNS_FAILED, EXIT_FAILURE, EXIT_BUSY, EXIT_INTERRUPTED}


def test_ctrl_c_during_plan_run_is_one_line_and_exit_130(capsys, monkeypatch, tmp_path):
    from icd_lib.experiments import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_plan", interrupted)
    code, _, err = run_main(capsys, "plan", "smoke", "--run", "--out", str(tmp_path))
    assert code == 130 and len(err.strip().splitlines()) == 1 and "interrupted; run the same command again" in err
    with pytest.raises(KeyboardInterrupt):
        main(["plan", "smoke", "--run", "--out", str(tmp_path), "--debug"])
