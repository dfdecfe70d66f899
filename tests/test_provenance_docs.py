"""What README.md and results/README.md say about where records came from, checked against the
records themselves: the README's table of measured runs (time, top-1) and the threads each record
ran with."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
TABLE_ROW = re.compile(r"^\|[^|]*\|\s*([\d,]+) s[^|]*\|\s*([\d.]+)%\s*\|\s*`([^`]+\.json)`\s*\|$")


def record(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def readme_rows() -> list[tuple[float, float, str]]:
    """(seconds, top-1, record file) of each row of the README's table of measured runs."""
    rows = []
    for line in (ROOT / "README.md").read_text().splitlines():
        match = TABLE_ROW.match(line.strip())
        if match:
            rows.append((float(match[1].replace(",", "")), float(match[2]), match[3]))
    return rows


def test_readme_table_of_measured_runs_is_found():
    assert len(readme_rows()) >= 3


@pytest.mark.parametrize("seconds,top1,name", readme_rows())
def test_readme_measured_runs_agree_with_their_records(seconds, top1, name):
    data = record(name)
    assert data["last_top1"] == pytest.approx(top1, abs=0.005), f"{name}: README says {top1}%"
    assert data["wall_time_s"] == pytest.approx(seconds, abs=1.0), f"{name}: README says {seconds} s"


def threads(data: dict) -> int:
    return int(re.search(r"(\d+) threads?", data["device"])[1])


def test_results_readme_names_every_record_that_ran_with_more_than_one_thread():
    """results/README.md names each plan record that did not run single-threaded."""
    text = (RESULTS / "README.md").read_text()
    for path in sorted(RESULTS.glob("book-*.json")):
        data = json.loads(path.read_text())
        if "plan" in data.get("command", "") and threads(data) != 1:
            assert f"`{path.stem}`" in text, f"{path.stem} ran with {threads(data)} threads; results/README.md does not say so"


@pytest.mark.parametrize("name,top1,commit", [
    (m[1], float(m[2]), m[3]) for m in re.finditer(
        r"`(book-[^`]+)` \(([\d.]+)%[^)]*\)[^`]*?commit\s+([0-9a-f]{7})",
        (RESULTS / "README.md").read_text())])
def test_results_readme_accuracies_and_commits_agree_with_records(name, top1, commit):
    data = record(f"{name}.json")
    assert data["last_top1"] == pytest.approx(top1, abs=0.005)
    assert data["git_commit"].startswith(commit)
