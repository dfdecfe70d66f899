"""The book's visual language: one seaborn theme, one colour per method, figures sized for the page.

Sizes are in inches at ``DPI`` = 100 CSS pixels per inch: a figure ``FIGURE_WIDTH`` wide is
shown at its own size in the book's content column (``COLUMN_PX``, measured in Chromium at a
1280 px window), so a font of ``MIN_FONT_PT`` points is ``MIN_FONT_PT * DPI / 72`` px there.
``use_book_style`` (run when ``icd_lib.plots`` is imported) sets the theme and, inside IPython,
shows every figure as a PNG at twice that resolution whose metadata carry its width in CSS pixels
and the size of its smallest text (``tests/test_figure_legibility.py`` reads them).
"""
from __future__ import annotations

import io
import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text

COLUMN_PX = 676  # the content column of the built book at a 1280 px window (jupyter-book 1, sphinx-book-theme)
DPI = 100  # CSS pixels per inch of figure: figures are designed at this scale
FIGURE_WIDTH = 6.6  # inches: 660 px, the column less a margin
MIN_FONT_PT = 7.5  # the smallest font a figure uses: 10.4 px at DPI
MIN_TEXT_PX = 9.0  # the smallest text a reader must see at the rendered width
MAX_ASPECT = 3.0  # width over height
PNG_SCALE = 2  # device pixels per CSS pixel of the stored PNG (sharp on high-density screens)
METADATA_KEY = "icd_lib"  # the key of a figure output's metadata that holds its measurements

# One colour per method, for every figure of the book. The plain student is grey, the teacher
# black; KD and the later logit methods blues and purples; CRD greens; ICD oranges.
METHOD_COLOURS = {
    "teacher": "#000000",
    "student": "#7f7f7f",
    "kd": "#0072b2",
    "kd+ls": "#56b4e9",
    "dkd": "#cc79a7",
    "dkd+ls": "#882255",
    "wsld": "#332288",
    "dist": "#aa4499",
    "crd": "#009e73",
    "crd+kd": "#005a3c",
    "icd": "#e69f00",
    "icd+kd": "#d55e00",
    "fitnet": "#44aa99",
    "at": "#999933",
    "sp": "#ddcc77",
    "cc": "#8c564b",
    "rkd": "#bcbd22",
    "pkt": "#17becf",
    "vid": "#9467bd",
    "nst": "#e377c2",
    "ab": "#7f3c8d",
    "ft": "#a6761d",
    "fsp": "#b15928",
}
ALIASES = {"plain student": "student", "plain": "student"}
# Colours for series that are not methods (loss terms, temperatures), in order.
OTHER_COLOURS = ("#3B3B98", "#C0392B", "#16A085", "#8E6C8A", "#B8860B", "#2C3E50", "#7F8C8D")
VARIANT_MIX = 0.45  # a recipe with overridden weights or options: its colour mixed this much with white

_NAMES = sorted([*METHOD_COLOURS, *ALIASES], key=len, reverse=True)
_METHOD_AT_START = re.compile(r"^(" + "|".join(re.escape(n) for n in _NAMES) + r")(?![\w+])")


def method_of(label: str) -> str | None:
    """The method a label names (``"ICD+KD (n=10)"`` -> ``"icd+kd"``), or None."""
    match = _METHOD_AT_START.match(label.strip().lower())
    return ALIASES.get(match.group(1), match.group(1)) if match else None


def is_variant(label: str) -> bool:
    """Whether a label overrides its recipe's settings: a parenthesis holds ``key=value`` other than ``n=``."""
    settings = re.findall(r"\(([^)]*)\)", label)
    return any(re.match(r"\s*(?!n\s*=)[\w.]+\s*=", item) for inside in settings for item in inside.split(","))


def method_colour(label: str) -> str | None:
    """The colour of the method a label names; a lighter shade of it for a variant; None for no method.

    ``"kd"``, ``"KD (mean)"`` and ``"kd (n=3)"`` are KD's blue; ``"kd (ce=1, kd=1)"`` (KD with
    other weights) is that blue mixed ``VARIANT_MIX`` with white.
    """
    method = method_of(label)
    if method is None:
        return None
    colour = np.array(to_rgb(METHOD_COLOURS[method]))
    return to_hex(colour + VARIANT_MIX * (1 - colour)) if is_variant(label) else METHOD_COLOURS[method]


def series_colours(labels) -> list[str]:
    """A colour per label: the method's where it names one, else the next of ``OTHER_COLOURS``."""
    others = iter(OTHER_COLOURS * (1 + len(labels) // len(OTHER_COLOURS)))
    return [method_colour(label) or next(others) for label in labels]


def smallest_text_pt(fig: Figure) -> float:
    """The font size (points) of the smallest visible, non-empty text of a figure."""
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=float("inf"))


def figure_png(fig: Figure) -> bytes:
    """The figure as a PNG at ``PNG_SCALE`` times its CSS size, cropped to its drawn content."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI * PNG_SCALE, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def measure(width_px: float, height_px: float, text_pt: float, px_per_inch: float = DPI) -> dict:
    """What a reader sees of a figure of that CSS size, drawn at ``px_per_inch``: its shown width,
    smallest text (px) and aspect."""
    shown = min(1.0, COLUMN_PX / width_px)
    return {"width_px": round(width_px), "height_px": round(height_px), "aspect": width_px / height_px,
            "smallest_text_pt": text_pt, "smallest_text_px": text_pt * px_per_inch / 72 * shown}


def css_size(png: bytes) -> tuple[float, float]:
    """The (width, height) in CSS pixels at which a PNG from ``figure_png`` is shown."""
    return int.from_bytes(png[16:20], "big") / PNG_SCALE, int.from_bytes(png[20:24], "big") / PNG_SCALE


def figure_output(fig: Figure):
    """IPython's image/png output of a figure: a 2x PNG, its CSS width and its measurements."""
    png = figure_png(fig)
    width, height = css_size(png)
    return png, {"width": round(width), METADATA_KEY: measure(width, height, smallest_text_pt(fig))}


THEME_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI * PNG_SCALE,
    "figure.figsize": (FIGURE_WIDTH, 3.3),
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
    "axes.titleweight": "normal",
    "legend.frameon": False,
}


def use_book_style() -> None:
    """Set the book's seaborn theme and, in IPython, show figures through ``figure_output``."""
    sns.set_theme(context="paper", style="whitegrid", rc=THEME_RC)
    matplotlib.rcParams.update(THEME_RC)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        plt.switch_backend(matplotlib.get_backend())  # the inline backend sets its formatters now, not later
        formatters = shell.display_formatter.formatters
        formatters["image/svg+xml"].pop(Figure, None)
        formatters["image/png"].for_type(Figure, figure_output)
