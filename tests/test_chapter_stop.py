"""A chapter never looks finished when it is not: where its records are missing, its first output
says so with the command that makes them and what it costs, and no later cell runs.

The chapter test executes a real Part II chapter from its stored notebook (outputs made in the
book profile, where records exist) with its records pointed at an empty folder and the book's
records unfetchable, in the book profile (which only reads records); the shell test checks the
IPython side (later cells skipped, and resumed by a cell naming RECORDS) without a kernel.
"""
from pathlib import Path

import nbformat
import pytest

from icd_lib.config import get_profile
from icd_lib.experiments.groups import MissingRecordsError, register_chapter_stop, require_groups
from icd_lib.experiments.plans import get_plan, plan_specs
from icd_lib.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "correlations.ipynb"  # reads comparison A; stops in its setup cell


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def expected_cost() -> tuple[str, str, str]:
    """The command, the number of runs and one run's work, computed from the plan and profile."""
    runs = len(plan_specs(get_plan("book"), "comparison-a"))
    book = get_profile("book")
    work = f"{book.student_epochs} epochs on {book.student_train_size:,} fashion_mnist images"
    return "`python -m icd_lib plan book --run --group comparison-a`", f"{runs} runs", work


@pytest.fixture
def no_records(tmp_path, monkeypatch):
    empty, no_repo = tmp_path / "records", tmp_path / "no-repository"
    empty.mkdir()
    no_repo.mkdir()  # a file:// source without results/MANIFEST.tsv
    monkeypatch.setenv("ICD_PROFILE", "book")
    monkeypatch.setenv("ICD_RECORDS", str(empty))
    monkeypatch.setenv("ICD_BOOK_REPO", no_repo.as_uri())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    return empty


def test_the_message_names_the_command_and_its_cost(no_records):
    with pytest.raises(MissingRecordsError) as raised:
        require_groups(["comparison-a"], "book", no_records)
    assert isinstance(raised.value, UserError)
    command, runs, work = expected_cost()
    message = str(raised.value)
    assert command in message and runs in message and work in message
    assert "time unmeasured" in message  # an empty folder holds no record to measure from
    require_groups(["comparison-a"], "book", ROOT)  # this checkout's records: nothing raised
    require_groups(["comparison-a"], "smoke", no_records)  # the smoke profile trains: nothing raised


@pytest.mark.slow
def test_a_chapter_without_records_stops_at_its_first_output(no_records):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    stored = nbformat.read(CHAPTER, as_version=4)
    cells = code_cells(stored)
    first = next(i for i, c in enumerate(cells) if c.outputs)
    assert sum(bool(c.outputs) for c in cells[first + 1:]) > 5  # stored outputs that could look fresh

    # Run on past errors (nbconvert --allow-errors): the chapter itself must stop.
    nb = nbformat.read(CHAPTER, as_version=4)
    NotebookClient(nb, timeout=300, allow_errors=True, resources={"metadata": {"path": str(no_records)}}).execute()
    cells = code_cells(nb)
    shown = [i for i, c in enumerate(cells) if c.outputs]
    assert shown == [first], [cells[i].source[:80] for i in shown]  # one output, where the first was
    [error] = cells[first].outputs
    assert (error.output_type, error.ename) == ("error", "MissingRecordsError")
    text = "\n".join(error.traceback)
    command, runs, work = expected_cost()
    assert any(command in line for line in text.splitlines())  # named, on one line
    assert runs in error.evalue and work in error.evalue
    assert "Traceback" not in text and max(map(len, text.splitlines())) <= 88
    assert all(c.execution_count is not None for c in cells)  # they ran, and did nothing

    # The default (nbconvert --execute, Jupyter's and Colab's "Run all"): the first error stops it.
    nb = nbformat.read(CHAPTER, as_version=4)
    with pytest.raises(CellExecutionError, match="MissingRecordsError"):
        NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(no_records)}}).execute()


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_after_a_stop_later_cells_do_nothing_until_a_records_cell_succeeds(shell, capsys):
    stop = register_chapter_stop(shell)
    assert register_chapter_stop(shell) is stop  # once per shell
    shell.user_ns["MissingRecordsError"] = MissingRecordsError
    shell.run_cell("raise MissingRecordsError('outside a chapter')")  # no RECORDS: nothing skipped
    assert shell.run_cell("outside = 1").success and shell.user_ns["outside"] == 1
    capsys.readouterr()
    shell.run_cell("RECORDS = None  # the chapter's parameters cell")
    failed = shell.run_cell("before = 1\nraise MissingRecordsError('make them with `python -m icd_lib x`')")
    assert not failed.success and isinstance(failed.error_in_exec, MissingRecordsError)
    said = capsys.readouterr().out
    assert said.strip() == "MissingRecordsError: make them with `python -m icd_lib x`"
    assert shell.run_cell("later = 2\nprint('ran')").success and "later" not in shell.user_ns
    assert shell.run_cell("RECORDS = None\nraise MissingRecordsError('still none')").success is False
    assert shell.run_cell("later = 3").success and "later" not in shell.user_ns  # still stopped
    assert capsys.readouterr().out.count("ran") == 0
    assert shell.run_cell("RECORDS = '/my/records'").success  # a records cell that succeeds
    assert shell.run_cell("later = 4").success and shell.user_ns["later"] == 4
    shell.run_cell("raise ValueError('another error')")
    assert shell.run_cell("after_other = 5").success and shell.user_ns["after_other"] == 5
    assert "Traceback" in capsys.readouterr().out  # other errors keep their traceback, stop nothing


@pytest.mark.slow
@pytest.mark.needs("fashion_mnist")
def test_training_called_as_a_chapter_calls_it_shows_a_progress_bar_with_time_left(tmp_path, capsys):
    import re

    from icd_lib.experiments.runs import execute
    from icd_lib.experiments.spec import make_spec

    spec = make_spec("smoke", "student", epochs=2)
    execute(spec, tmp_path)  # as the chapters call it: no progress argument
    shown = capsys.readouterr().err
    assert re.search(r"\d+/\d+ \[\d\d:\d\d<\d\d:\d\d", shown), shown[-2000:]  # done/total [elapsed<left
    # and one bar over the run's epochs, whose time left is the run's
    assert re.search(re.escape(spec.name) + r":\s+50%.*1/2 \[\d\d:\d\d<\d\d:\d\d", shown), shown[-2000:]
