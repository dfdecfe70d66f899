"""The book's structure: table of contents, Colab badges and install cells, stored outputs.

The repository URL and branch live once, in _config.yml; everything that links to the
repository (badges, install cells, the README) must agree with them.
"""
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
OWNER_REPO = REPO_URL.removeprefix("https://github.com/")


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def chapter_paths():
    return [ROOT / f"{name}.ipynb" for name in toc_files() if (ROOT / f"{name}.ipynb").exists()]


def load(path):
    return json.loads(path.read_text())


def source(cell):
    return "".join(cell["source"])


def test_every_toc_entry_exists():
    for name in toc_files():
        matches = [p for p in (ROOT / f"{name}.ipynb", ROOT / f"{name}.md") if p.exists()]
        assert matches, f"_toc.yml lists {name!r} but neither {name}.ipynb nor {name}.md exists"


def test_every_notebook_in_book_is_in_the_toc():
    listed = {ROOT / f"{name}.ipynb" for name in toc_files()}
    for path in (ROOT / "book").glob("*.ipynb"):
        assert path in listed, f"{path.name} is not in _toc.yml (only_build_toc_files would drop it)"


def test_config_has_colab_launch_button_and_branch():
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert BRANCH == "main"
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["only_build_toc_files"] is True


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.name)
def test_chapter_starts_with_colab_badge_for_itself(path):
    first = load(path)["cells"][0]
    assert first["cell_type"] == "markdown"
    expected = f"https://colab.research.google.com/github/{OWNER_REPO}/blob/{BRANCH}/book/{path.name}"
    links = re.findall(r"\]\((https://colab\.research\.google\.com/github/[^)]+)\)", source(first))
    assert links == [expected], f"{path.name}: Colab badge should link to {expected}, found {links}"


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.name)
def test_install_cell_installs_from_repository_only_in_colab(path):
    cells = load(path)["cells"]
    install = next(c for c in cells if c["cell_type"] == "code")
    text = source(install)
    assert 'if "google.colab" in sys.modules:' in text
    urls = re.findall(r"git\+(https://[^\s@\"]+)@([\w.-]+)", text)
    assert urls == [(REPO_URL, BRANCH)], f"{path.name}: install cell should install {REPO_URL}@{BRANCH}"
    pip_lines = [line for line in text.splitlines() if "pip install" in line]
    assert pip_lines and not any(re.search(r"\btorch|--upgrade|\s-U\b", line) for line in pip_lines), (
        f"{path.name}: the install cell must not install or upgrade torch"
    )


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.name)
def test_knobs_live_in_one_parameters_cell(path):
    tagged = [c for c in load(path)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters'"
    assert "PROFILE_NAME" in source(tagged[0])


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.name)
def test_stored_outputs_are_fresh_and_error_free(path):
    code = [c for c in load(path)["cells"] if c["cell_type"] == "code" and source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: cells were not executed top to bottom in one fresh run (execution counts {counts}); "
        "re-run `make notebooks`"
    )
    errors = [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: stored outputs hold errors"


def test_readme_links_agree_with_config():
    readme = (ROOT / "README.md").read_text()
    for url in re.findall(r"https://(?:colab\.research\.google\.com/)?github(?:\.com)?/[^\s)\"]+", readme):
        assert OWNER_REPO in url, f"README link {url} does not point at {REPO_URL}"


MAX_COLUMNS = 88  # what a code cell or a printed output shows without scrolling (tests/test_browser.py)
RICH_MIMES = ("image/", "text/html", "text/markdown", "text/latex", "application/vnd.jupyter.widget-view+json")
HIDDEN_OUTPUT_TAGS = {"remove-output", "remove-cell", "remove_output", "remove_cell"}


def shown_text_outputs(cell):
    """The text a reader sees printed under a code cell: streams, and text/plain where nothing richer is shown."""
    if HIDDEN_OUTPUT_TAGS & set(cell.get("metadata", {}).get("tags", [])):
        return
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            yield output["name"], "".join(output["text"])
        elif "data" in output and not any(m.startswith(RICH_MIMES) for m in output["data"]):
            yield output["output_type"], "".join(output["data"].get("text/plain", ""))


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.name)
def test_code_and_printed_lines_fit_the_page(path):
    too_long = []
    for number, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        texts = [("source", source(cell))] + list(shown_text_outputs(cell))
        for kind, text in texts:
            # A progress bar redraws its line with carriage returns: the reader sees the last state.
            lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
            too_long += [f"cell {number} {kind}: {len(line)} columns: {line[:60]}..."
                         for line in lines if len(line) > MAX_COLUMNS]
    assert not too_long, (
        f"{path.name}: lines longer than {MAX_COLUMNS} columns are cut off in the rendered book:\n"
        + "\n".join(too_long)
    )
