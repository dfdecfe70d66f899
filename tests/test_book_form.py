"""Part II chapters read as a book: the finding first, plumbing hidden, test markers as tags, and
every glued verdict word true of the interval glued with it (read from the stored outputs)."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
PART_II = ("training_end_to_end", "comparing_methods", "correlations", "ablations", "transfer", "invariance",
           "scorecard")
HIDDEN = {"hide-input", "remove-input", "remove-cell"}
MAX_VISIBLE_LINES = 15
MAX_FUNCTIONS = 2
GLUE_PREFIX = "application/papermill.record/"
EVIDENCE = "application/vnd.icd-lib.verdict+json"  # where a glued verdict keeps its numbers (a JSON string)
# a titled box: {admonition} Title (``{important} Result`` would render "Important" with "Result" as body text)
ADMONITION = re.compile(r"^(`{3,}|:{3,})\{admonition\}\s+\S")
GLUE_REFERENCE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")


def chapter(name: str) -> dict:
    return json.loads((BOOK / f"{name}.ipynb").read_text())


def source(cell: dict) -> str:
    text = cell["source"]
    return text if isinstance(text, str) else "".join(text)


def code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def glued(notebook: dict) -> dict[str, dict]:
    """{name: data} of every value glued in the stored outputs, the glue prefix removed."""
    values = {}
    for cell in code_cells(notebook):
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                values[name] = {k.removeprefix(GLUE_PREFIX): v for k, v in output.get("data", {}).items()}
    return values


def expected_word(evidence: dict) -> str:
    """The verdict an interval, or a Holm-adjusted p-value, allows, written out here."""
    if evidence["rule"] == "interval":
        low, high = evidence["low"], evidence["high"]
        if low is not None and low > 0:
            return "resolved, above"
        if high is not None and high < 0:
            return "resolved, below"
        return "not resolved"
    assert evidence["rule"] == "holm", evidence
    p, difference = evidence["p_holm"], evidence["difference"]
    if p is None or p >= evidence["alpha"]:
        return "not resolved"
    return "resolved, above" if difference > 0 else "resolved, below"


@pytest.mark.parametrize("name", PART_II)
def test_the_result_box_comes_right_after_the_title_and_badge(name):
    lines = [line for line in source(chapter(name)["cells"][0]).splitlines() if line.strip()]
    assert lines[0].startswith("# ") and "colab-badge" in lines[1], f"{name}: title, then the Colab badge"
    assert ADMONITION.match(lines[2]), f"{name}: after the badge comes a result box (an admonition), not {lines[2]!r}"


@pytest.mark.parametrize("name", PART_II)
def test_at_most_two_functions_per_chapter(name):
    defined = [m.group(1) for c in code_cells(chapter(name))
               for m in re.finditer(r"^\s*(?:async\s+)?def\s+(\w+)", source(c), re.MULTILINE)]
    assert len(defined) <= MAX_FUNCTIONS, f"{name} defines {len(defined)} functions: {defined}"


@pytest.mark.parametrize("name", PART_II)
def test_no_visible_code_cell_is_longer_than_a_screenful(name):
    long = [(i, len(source(c).rstrip().splitlines())) for i, c in enumerate(chapter(name)["cells"])
            if c["cell_type"] == "code" and not HIDDEN & set(c.get("metadata", {}).get("tags", []))
            and len(source(c).rstrip().splitlines()) > MAX_VISIBLE_LINES]
    assert not long, f"{name}: visible code cells (index, lines) over {MAX_VISIBLE_LINES} lines: {long}"


@pytest.mark.parametrize("name", PART_II)
def test_test_markers_are_tags_not_comments(name):
    marked = [i for i, c in enumerate(chapter(name)["cells"]) if "NBVAL" in source(c).upper() and c["cell_type"] == "code"]
    assert not marked, f"{name}: cells {marked} carry an NBVAL comment; use the cell tags nbval-check-output etc."


@pytest.mark.parametrize("name", PART_II)
def test_every_glue_reference_has_a_stored_value(name):
    notebook = chapter(name)
    referenced = {m.group(1) for c in notebook["cells"] if c["cell_type"] == "markdown"
                  for m in GLUE_REFERENCE.finditer(source(c))}
    assert referenced, f"{name}: its prose glues no number from the records"
    missing = sorted(referenced - set(glued(notebook)))
    assert not missing, f"{name}: glued names the stored outputs lack (re-execute the chapter): {missing}"


@pytest.mark.parametrize("name", PART_II)
def test_every_glued_verdict_agrees_with_its_interval(name):
    verdicts = {k: v for k, v in glued(chapter(name)).items()
                if EVIDENCE in v and json.loads(v[EVIDENCE])["rule"] != "claim"}  # claims: test_results_claims
    wrong = []
    for key, data in verdicts.items():
        evidence = json.loads(data[EVIDENCE])
        word = ast.literal_eval(data["text/plain"])
        if not word == evidence["verdict"] == expected_word(evidence):
            wrong.append(f"{key}: says {word!r}, its numbers allow {expected_word(evidence)!r} ({evidence})")
    assert not wrong, f"{name}: " + "; ".join(wrong)
