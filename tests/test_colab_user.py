"""A Colab user, simulated: icd_lib installed the way a chapter's install cell does it, into an
environment that already has torch, then a Part II chapter's reading of the records, run from an
empty working directory with no checkout in sight.

The environment is a new virtual environment that sees this one's packages (torch among them)
the way Colab's Python sees its preinstalled ones; pip installs ``icd_lib`` from this
repository's commit with the dependency resolution the install cell uses, offline
(``--no-index``), so anything it wanted to download or replace would fail. The records are
fetched through ``ICD_BOOK_REPO=file://<this checkout>``.
"""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

import icd_lib

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = """
from icd_lib.experiments.records import comparison_records
from icd_lib.results.source import records_folder
from icd_lib.runtime import check_runtime

print(check_runtime())
OUT = records_folder()
group = comparison_records("A", "book", OUT)
print(group.status(width=None))
for record in group.records:
    print(f"{record.name}: last-epoch top-1 {record.last_top1:.2f}%")
"""


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
def test_a_colab_user_sees_the_books_numbers_and_keeps_their_torch(tmp_path):
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
    env.update(ICD_BOOK_REPO=ROOT.as_uri(), ICD_PROFILE="book", XDG_CACHE_HOME=str(tmp_path / "cache"),
               OMP_WAIT_POLICY="PASSIVE")
    ran = subprocess.run([str(python), "-c", CHAPTER], cwd=content, capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("no GPU: cpu (") or ran.stdout.startswith("GPU: ")
    shown = dict(line.split(": last-epoch top-1 ") for line in ran.stdout.splitlines() if "top-1" in line)
    assert "all" in ran.stdout and "runs recorded" in ran.stdout, ran.stdout
    kd = [f"book-kd-resnet8-from-resnet20-seed{seed}" for seed in range(3)]
    assert set(kd) <= set(shown)
    for name, value in shown.items():
        recorded = json.loads((ROOT / "results" / f"{name}.json").read_text())["last_top1"]
        assert value == f"{recorded:.2f}%", name
    fetched = tmp_path / "cache" / "icd_lib" / "book" / commit
    assert (fetched / "checkpoints" / "book-teacher-resnet20-seed0" / "best.pt").is_file()
    assert not any(content.iterdir())  # nothing written into the working directory
