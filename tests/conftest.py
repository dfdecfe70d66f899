"""Shared test settings.

Tests use one torch thread: the tiny models and batches here gain nothing from a second thread,
and on a loaded 2-core machine two threads per process made them many times slower.

System packages. A test that needs one marks itself ``@pytest.mark.needs("fashion_mnist")``
(the Debian package ``dataset-fashion-mnist``) or ``@pytest.mark.needs("chromium")`` (Debian's
``chromium`` and ``chromium-driver``, plus selenium). Where the package is missing the test is
skipped with a reason that says which command installs it, and the run ends with one line that
sums the skips up; under CI (``CI`` set to anything but ``0``/``false``/``no``), which always
installs them (``make test`` does, see ``.ci/system-packages.sh``), it fails instead: CI never
skips what it always has.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

import pytest
import torch

from icd_lib.data import sources


def in_ci() -> bool:
    """Whether the environment variable CI says this is a CI run (CI=true, CI=1, ...)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _fashion_mnist_missing() -> str | None:
    folder = sources.debian_fashion_mnist_dir()
    missing = [name for name in sources.FASHION_MNIST_FILES if not (folder / f"{name}.gz").is_file()]
    if missing:
        return (
            f"Fashion-MNIST's Debian files are not installed ({len(missing)} of 4 missing in {folder}): "
            "run `sudo apt-get install dataset-fashion-mnist`"
        )
    return None


def _chromium_missing() -> str | None:
    missing = []
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        missing.append("chromium")
    if not shutil.which("chromedriver"):
        missing.append("chromium-driver")
    if missing:
        return f"Chromium not installed (no {' or '.join(missing)}): run `sudo apt-get install {' '.join(missing)}`"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: run `.venv/bin/pip install selenium` (or `make setup`)"
    return None


SYSTEM_NEEDS = {"fashion_mnist": _fashion_mnist_missing, "chromium": _chromium_missing}
_skipped_for: dict[str, int] = {}  # reason -> number of tests skipped for it


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "needs(*packages): system packages the test needs, from "
        f"{', '.join(SYSTEM_NEEDS)}; skipped with the install command where missing, failed under CI",
    )


def missing_system_package(*needs: str) -> str | None:
    """The reason the first missing one of ``needs`` gives, or None when all are there."""
    for need in needs:
        if need not in SYSTEM_NEEDS:
            raise ValueError(f"unknown system need {need!r}; valid: {', '.join(SYSTEM_NEEDS)}")
        reason = SYSTEM_NEEDS[need]()
        if reason:
            return reason
    return None


def pytest_collection_modifyitems(config, items):
    """Skip the ``needs`` tests whose package is missing (their own location shows in the summary);
    under CI mark them to fail instead, in ``pytest_runtest_setup``."""
    reasons: dict[tuple[str, ...], str | None] = {}
    for item in items:
        needs = tuple(need for marker in item.iter_markers("needs") for need in marker.args)
        if not needs:
            continue
        if needs not in reasons:
            reasons[needs] = missing_system_package(*needs)
        reason = reasons[needs]
        if reason is None:
            continue
        if in_ci():
            item.stash[_CI_FAILURE] = f"CI={os.environ['CI']} and CI always installs this, but {reason}"
        else:
            _skipped_for[reason] = _skipped_for.get(reason, 0) + 1
            item.add_marker(pytest.mark.skip(reason=reason))


_CI_FAILURE = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Under CI, fail a ``needs`` test whose package is missing, before any of its fixtures is set up."""
    if _CI_FAILURE in item.stash:
        pytest.fail(item.stash[_CI_FAILURE], pytrace=False)


def pytest_terminal_summary(terminalreporter):
    for reason, count in _skipped_for.items():
        terminalreporter.write_line(
            f"{count} test(s) SKIPPED because a system package is missing: {reason}", yellow=True, bold=True
        )


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """``trained_runs(spec)``: an output folder holding the complete run ``spec`` (and its
    teacher's), trained once per test session. Shared between tests: never write into it; copy
    it first (``copy_outputs``). A student's folder starts as a copy of its teacher's, so each
    teacher is trained once."""
    from icd_lib.experiments import runs

    folders = {}

    def folder(spec):
        if spec.name not in folders:
            out = tmp_path_factory.mktemp("trained")
            teacher = None if spec.is_teacher else spec.teacher_spec()
            if teacher is not None:
                copy_outputs(folder(teacher), out)
            runs.execute(spec, runs.RunOptions(out, progress=False))
            folders[spec.name] = out
        return folders[spec.name]

    return folder


def copy_outputs(source, target) -> None:
    """Copy the output folder ``source`` (checkpoints, results) into ``target``."""
    shutil.copytree(source, target, dirs_exist_ok=True)
