"""The explorers work in the static book, and the content column is as wide as the figures assume.

In headless Chromium at the 1280 px window of ``tests/test_browser.py`` (whose fixtures build and
serve the book): moving an explorer's slider shows another frame, without a kernel; and the
column a figure is shown in is ``icd_lib.plots.style.COLUMN_PX`` wide, the width the figures are
designed for and ``tests/test_figure_legibility.py`` measures against.
"""
from __future__ import annotations

import json

import pytest
from test_browser import ROOT, book_html, browser, server, toc_pages  # noqa: F401 (fixtures)

from icd_lib.plots.style import COLUMN_PX

pytestmark = [pytest.mark.browser, pytest.mark.needs("chromium")]


def pages_with_explorers() -> list[str]:
    """Pages whose stored notebook shows at least one explorer."""
    def has_explorer(page):
        path = ROOT / f"{page}.ipynb"
        return path.is_file() and 'class="icd-explorer"' in "".join(
            "".join(o.get("data", {}).get("text/html", "")) for c in json.loads(path.read_text())["cells"]
            for o in c.get("outputs", []))
    return [page for page in toc_pages() if has_explorer(page)]


MOVE_SLIDER = """
const done = arguments[arguments.length - 1];
const explorers = [...document.querySelectorAll('article .icd-explorer')];
const frame = e => e.querySelector('img').src;
const wait = () => {
  if (document.readyState !== 'complete' || explorers.some(e => !frame(e).startsWith('data:'))) {
    setTimeout(wait, 100);
    return;
  }
  done(explorers.map(e => {
    const slider = e.querySelector('input[type=range]');
    const before = frame(e);
    slider.value = slider.max;
    slider.dispatchEvent(new Event('input'));
    return {frames: Number(e.dataset.frames), max: Number(slider.max), before: before.length,
            changed: frame(e) !== before, width: e.querySelector('img').naturalWidth};
  }));
};
wait();
"""


def test_the_book_has_the_four_explorers():
    count = sum(json.dumps(json.loads((ROOT / f"{page}.ipynb").read_text())).count('class=\\"icd-explorer\\"')
                for page in pages_with_explorers())
    assert count >= 4, f"{count} explorers in {pages_with_explorers()}"


@pytest.mark.parametrize("page", pages_with_explorers())
def test_moving_an_explorers_slider_changes_its_image(page, browser, server):
    browser.get(f"{server}/{page}.html")
    moved = browser.execute_async_script(MOVE_SLIDER)
    assert moved, f"{page}: no explorer in the rendered page"
    for k, explorer in enumerate(moved):
        assert explorer["max"] == explorer["frames"] - 1 > 0, f"{page} explorer {k}: {explorer}"
        assert explorer["width"] > 0 and explorer["changed"], f"{page} explorer {k}: the slider showed no new frame"


def test_the_content_column_is_as_wide_as_the_figures_assume(browser, server):
    page = next(p for p in toc_pages() if (ROOT / f"{p}.ipynb").is_file() and p != toc_pages()[0])
    browser.get(f"{server}/{page}.html")
    width = browser.execute_script("return document.querySelector('article div.cell_output')"
                                   ".getBoundingClientRect().width;")
    assert abs(width - COLUMN_PX) <= 2, f"{page}: a cell's output is {width:.0f} px wide, COLUMN_PX is {COLUMN_PX}"
