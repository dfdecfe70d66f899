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
