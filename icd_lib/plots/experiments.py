"""Figures of the experiment chapters (part II): results over seeds with their spread.

Like ``icd_lib.plots.figures``, each function takes plain numbers, draws one figure and returns
it detached from pyplot; ``icd_lib.results.summary`` computes what they show.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from icd_lib.plots.figures import _new_figure, _to_numpy
from icd_lib.plots.style import MIN_FONT_PT, OTHER_COLOURS, method_colour, series_colours

OUTLIER_WIDTH = 4.0  # an interval this many times wider than the median interval runs off the axis


def plot_seed_sweep(
    x: Sequence[float],
    runs: Sequence[Sequence[float]],
    xlabel: str,
    ylabel: str = "last-epoch test top-1 (%)",
    logx: bool = False,
    reference: Mapping[str, float] | None = None,
    title: str | None = None,
    method: str | None = None,
) -> Figure:
    """A hyper-parameter sweep: at each ``x[i]`` the runs ``runs[i]`` (one value per seed) as dots,
    their mean as a line and mean +- sample sd as error bars, in ``method``'s colour.
    ``reference``: name -> y drawn as dashed horizontal lines in each name's method colour (for
    example the plain student and KD). With ``logx`` and an x of 0, the axis is symlog: linear
    up to the smallest positive x, so that 0 and that x stand apart; every x is a tick."""
    positions = _to_numpy(x, "x")
    if positions.ndim != 1 or len(positions) != len(runs) or not len(runs):
        raise ValueError(f"give one list of runs per x position: {len(positions)} positions, {len(runs)} lists")
    values = [_to_numpy(r, f"runs[{i}]") for i, r in enumerate(runs)]
    if any(v.ndim != 1 or v.size == 0 for v in values):
        raise ValueError("every position needs at least one run (a 1-D list of values)")
    fig, axes = _new_figure(height=3.2)
    ax = axes[0, 0]
    colour = (method_colour(method) if method else None) or OTHER_COLOURS[0]
    means = np.array([v.mean() for v in values])
    sds = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in values])
    ax.errorbar(positions, means, yerr=sds, color=colour, marker="o", capsize=3, label="mean +- sd over seeds",
                zorder=3)
    for xi, v in zip(positions, values):
        ax.scatter(np.full(v.size, xi), v, color=colour, alpha=0.4, s=14, linewidths=0, zorder=2)
    names = list(reference or {})
    for name, line_colour in zip(names, series_colours(names)):
        ax.axhline(reference[name], color=line_colour, linestyle="--", linewidth=1.2, label=name)
    if logx and (positions <= 0).any():
        smallest = float(positions[positions > 0].min())
        ax.set_xscale("symlog", linthresh=smallest, linscale=0.6)
        ax.set_xlim(positions.min() - 0.4 * smallest, 1.3 * positions.max())
    elif logx:
        ax.set_xscale("log")
    if logx:
        ax.set_xticks(positions, [f"{p:g}" for p in positions])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def axis_range(lows: np.ndarray, highs: np.ndarray) -> tuple[float, float]:
    """The x range of a forest plot: every interval but those ``OUTLIER_WIDTH`` times wider than the median, and 0."""
    widths = highs - lows
    regular = widths <= OUTLIER_WIDTH * np.median(widths)
    low, high = min(0.0, lows[regular].min()), max(0.0, highs[regular].max())
    pad = 0.08 * (high - low or 1.0)
    return low - pad, high + pad


def plot_differences(
    labels: Sequence[str],
    differences: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    xlabel: str,
    title: str | None = None,
) -> Figure:
    """A forest plot: each label's difference to a baseline with its confidence interval, and 0 marked.

    Each row is in its method's colour, its point filled where the interval excludes 0 and hollow
    where it does not; the interval is written at the right. An interval far wider than the others
    (``axis_range``) runs off the axis: it is clipped at the edge, marked with an arrow, and its
    numbers at the right say where it ends.
    """
    centre, low, high = (np.asarray(v, dtype=float) for v in (differences, lows, highs))
    if not len(labels) == len(centre) == len(low) == len(high) or not len(labels):
        raise ValueError("give one difference, low and high per label")
    known = np.isfinite(low) & np.isfinite(high)
    left, right = axis_range(low[known], high[known]) if known.any() else axis_range(centre, centre)
    fig, axes = _new_figure(height=0.3 * len(labels) + 1.3)
    ax = axes[0, 0]
    rows = np.arange(len(labels))[::-1]
    for row, label, c, lo, hi, colour in zip(rows, labels, centre, low, high, series_colours(list(labels))):
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([max(lo, left), min(hi, right)], [row, row], color=colour, linewidth=2)
            for end, edge, marker in ((lo, left, "<"), (hi, right, ">")):
                if (end < edge) if marker == "<" else (end > edge):
                    ax.plot(edge, row, marker=marker, color=colour, markersize=7, gid=f"clipped:{label}")
            text = f"{c:+.1f} [{lo:+.1f}, {hi:+.1f}]"
            excludes_zero = lo > 0 or hi < 0
        else:
            text, excludes_zero = f"{c:+.1f}", False
        if left <= c <= right:
            ax.plot(c, row, "o", color=colour, markerfacecolor=colour if excludes_zero else "white", markersize=6)
        ax.annotate(text, (1.01, row), xycoords=("axes fraction", "data"), va="center", fontsize=MIN_FONT_PT)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlim(left, right)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_yticks(rows, labels)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"{xlabel}\nfilled: the interval excludes 0; an arrow: it runs beyond the axis")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
