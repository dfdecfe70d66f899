"""A Colab user, simulated: icd_lib installed the way a chapter's install cell does it, into an
environment that already has torch, then a real Part II chapter executed by a kernel of that
environment, from an empty working directory with no checkout in sight.

The environment is a new virtual environment that sees this one's packages (torch, ipykernel
among them) the way Colab's Python sees its preinstalled ones; pip installs ``icd_lib`` from this
repository's commit with the dependency resolution the install cell uses, offline
(``--no-index``), so anything it wanted to download or replace would fail. The chapter
(``book/transfer.ipynb``, the quickest Part II chapter in the ``book`` profile) runs in a kernel
whose Python is that environment's (a kernelspec in the test's folder, found through
``JUPYTER_PATH``); its records are fetched through ``ICD_BOOK_REPO=file://<this checkout>``, and
the numbers it glues are checked against ones computed here from ``results/*.json``.
"""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import torch
from scipy import stats

import icd_lib

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "transfer.ipynb"
# The transfer chapter's family on the styled-digit probe (its glue ``tr_styled_<a>_<b>``), and
# the records of each method in comparison A (seeds 0-2), by the names the plan gives them.
PAIRS = [("kd", "student"), ("crd", "student"), ("icd", "student"), ("icd+kd", "student"),
         ("crd", "kd"), ("icd", "kd"), ("icd+kd", "kd")]
SEEDS = (0, 1, 2)


def record_name(method: str, seed: int) -> str:
    return f"book-student-resnet8-seed{seed}" if method == "student" else f"book-{method}-resnet8-from-resnet20-seed{seed}"


def expected_difference(a: str, b: str) -> str:
    """``a`` minus ``b`` on the styled-digit probe, paired over seeds with a 95% t interval,
    as the chapter words it, computed from the committed records alone."""
    def styled(method: str) -> list[float]:
        return [json.loads((ROOT / "results" / f"{record_name(method, seed)}.json").read_text())
                ["evaluation"]["probe_styled"]["test_top1"] for seed in SEEDS]

    differences = [x - y for x, y in zip(styled(a), styled(b))]
    n = len(differences)
    mean = sum(differences) / n
    sd = (sum((d - mean) ** 2 for d in differences) / (n - 1)) ** 0.5
    half = stats.t.ppf(0.975, n - 1) * sd / n ** 0.5
    return f"{mean:+.2f} points (95% interval {mean - half:+.2f} to {mean + half:+.2f}, {n} seeds)"


def glued(nb) -> dict[str, str]:
    """The chapter's glued values: name -> the plain text it shows."""
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            text = output.get("data", {}).get("application/papermill.record/text/plain")
            if name and text:
                values[name] = text.strip("'")
    return values


def write_kernelspec(folder: Path, python: Path, env: dict[str, str]) -> str:
    """A kernelspec ``colab-like`` under ``folder/kernels`` whose kernel runs ``python``."""
    spec = folder / "kernels" / "colab-like"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like Python", "language": "python", "env": env}))
    return "colab-like"


def installed_files(package: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``package``."""
    return {str(p.relative_to(package)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in package.rglob("*") if p.is_file()}


def colab_like_python(where: Path) -> Path:
    """A virtual environment whose Python also sees this one's installed packages, as Colab's sees its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "preinstalled.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    return python


@pytest.mark.slow
def test_a_colab_user_sees_the_books_numbers_and_keeps_their_torch(tmp_path, monkeypatch):
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to install from")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    torch_dirs = [Path(torch.__file__).parent, *Path(torch.__file__).parents[1].glob("torch-*.dist-info")]
    torch_before = [installed_files(folder) for folder in torch_dirs]
    python = colab_like_python(tmp_path / "env")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ICD_RECORDS", "ICD_DATA")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-cache-dir",
         "--disable-pip-version-check", f"git+{ROOT.as_uri()}@{commit}#egg=icd_lib"],
        capture_output=True, text=True, env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    assert install.stdout.splitlines()[-1].split()[2:] == [f"icd_lib-{icd_lib.__version__}"]  # nothing else
    assert [installed_files(folder) for folder in torch_dirs] == torch_before

    content = tmp_path / "content"  # Colab's empty working directory
    content.mkdir()
    where = subprocess.run([str(python), "-c", "import icd_lib; print(icd_lib.__file__)"], cwd=content,
                           capture_output=True, text=True, env=env, check=True).stdout
    assert Path(where).is_relative_to(tmp_path / "env"), where  # the installed copy, not this checkout

    from nbclient import NotebookClient

    kernel_env = dict(ICD_BOOK_REPO=ROOT.as_uri(), ICD_PROFILE="book", XDG_CACHE_HOME=str(tmp_path / "cache"),
                      OMP_WAIT_POLICY="PASSIVE")
    for name in ("PYTHONPATH", "ICD_RECORDS", "ICD_DATA", "ICD_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel = write_kernelspec(tmp_path / "jupyter", python, kernel_env)
    nb = nbformat.read(CHAPTER, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys, icd_lib; print(sys.executable, icd_lib.__file__)"))
    NotebookClient(nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(content)}}).execute()

    ran_by = nb.cells[-1].outputs[0]["text"].split()
    assert ran_by[0] == str(python) and Path(ran_by[1]).is_relative_to(tmp_path / "env"), ran_by
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "plan book, group comparison-a: all" in printed and "runs recorded" in printed, printed[:2000]
    values = glued(nb)
    for a, b in PAIRS:
        name = f"tr_styled_{a.replace('+', 'p')}_{b}"
        assert values.get(name) == expected_difference(a, b), name
    fetched = tmp_path / "cache" / "icd_lib" / "book" / commit
    assert (fetched / "checkpoints" / "book-teacher-resnet20-seed0" / "best.pt").is_file()
    assert not any(content.iterdir())  # nothing written into the working directory
