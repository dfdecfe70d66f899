"""Every stored figure of every chapter is legible in the book's content column.

For each image output (and each explorer's frames) of each chapter in ``_toc.yml``: the width
it is shown at (its CSS width from the output's metadata, or its pixel width, capped by the
column), its aspect ratio, and the size its smallest text has there, from the font size the
figure recorded when it was shown (``icd_lib.plots.style``). A figure fails under 9 px text or
over 3:1; a figure shown without those measurements fails too (re-execute the chapter with
``icd_lib.plots`` imported). The column width is measured in Chromium by
``tests/test_browser_explorers.py``.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from icd_lib.plots.style import COLUMN_PX, DPI, MAX_ASPECT, METADATA_KEY, MIN_TEXT_PX

ROOT = Path(__file__).resolve().parents[1]
EXPLORER = re.compile(r'<div class="icd-explorer"([^>]*)>')
HIDDEN = {"remove-output", "remove-cell", "remove_output", "remove_cell"}


def chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    return [ROOT / f"{name}.ipynb" for name in names if (ROOT / f"{name}.ipynb").is_file()]


def png_size(data: str) -> tuple[int, int]:
    """(width, height) in pixels of a base64 PNG, from its IHDR chunk."""
    head = base64.b64decode(data[:64])
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def shown_figures(path: Path):
    """(where, measurements) of every figure a reader sees in the chapter."""
    notebook = json.loads(path.read_text())
    for number, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code" or HIDDEN & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for k, output in enumerate(cell.get("outputs", [])):
            data, metadata = output.get("data", {}), output.get("metadata", {})
            where = f"{path.stem} cell {number} output {k}"
            html = "".join(data.get("text/html", ""))
            if "image/png" in data:
                yield where, png_measurements("".join(data["image/png"]), metadata.get("image/png", {}))
            elif EXPLORER.search(html):
                yield where, explorer_measurements(html)
            elif any(mime.startswith("image/") for mime in data):
                yield where, {"error": f"an image as {sorted(data)}: only PNG figures carry their measurements"}


def png_measurements(data: str, metadata: dict) -> dict:
    """Shown width (px), aspect, smallest text (px) and sharpness of a stored PNG figure."""
    width, height = png_size(data)
    css_width = float(metadata.get("width", width))
    measured = {"kind": "png", "pixels_per_css_px": width / css_width}
    recorded = metadata.get(METADATA_KEY)
    if recorded is None:
        return {**measured, "error": f"{width}x{height} px PNG without measurements: re-execute the chapter"}
    shown = min(css_width, COLUMN_PX)
    text_px = recorded["smallest_text_pt"] * DPI / 72 * shown / css_width
    return {**measured, "shown_width": shown, "aspect": width / height, "text_px": text_px}


def explorer_measurements(html: str) -> dict:
    """Shown width (px), aspect and smallest text (px) of an explorer's frames."""
    attributes = dict(re.findall(r'data-([\w-]+)="([^"]*)"', EXPLORER.search(html).group(1)))
    width, height = float(attributes["width-px"]), float(attributes["height-px"])
    shown = min(width, COLUMN_PX)
    text_px = float(attributes["smallest-text-px"]) * shown / width
    return {"kind": "explorer", "shown_width": shown, "aspect": width / height, "text_px": text_px}


FIGURES = [(where, measured) for path in chapters() for where, measured in shown_figures(path)]


def test_the_book_has_figures_to_check():
    assert len(FIGURES) > 20
    assert sum("error" not in m for _, m in FIGURES) > 10


@pytest.mark.parametrize("where, measured", FIGURES, ids=[where for where, _ in FIGURES])
def test_figure_is_legible_at_the_column_width(where, measured):
    assert "error" not in measured, f"{where}: {measured.get('error')}"
    assert measured["aspect"] <= MAX_ASPECT, f"{where}: {measured['aspect']:.2f}:1 is wider than {MAX_ASPECT:g}:1"
    assert measured["text_px"] >= MIN_TEXT_PX, (
        f"{where}: smallest text {measured['text_px']:.1f} px at {measured['shown_width']:.0f} px wide "
        f"(under {MIN_TEXT_PX:g} px)")


PNGS = [(where, measured) for where, measured in FIGURES if measured.get("kind") == "png"]


@pytest.mark.parametrize("where, measured", PNGS, ids=[where for where, _ in PNGS])
def test_png_figures_are_sharp_on_high_density_screens(where, measured):
    assert measured["pixels_per_css_px"] >= 1.9, (
        f"{where}: {measured['pixels_per_css_px']:.2f} image pixels per CSS pixel (blurred on a 2x screen)")
