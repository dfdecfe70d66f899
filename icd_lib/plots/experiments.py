"""Figures of the experiment chapters (part II): results over seeds with their spread.

Like ``icd_lib.plots.figures``, each function takes plain numbers, draws one figure and returns
it detached from pyplot; ``icd_lib.results.summary`` computes what they show.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from icd_lib.plots.figures import PALETTE, _new_figure, _to_numpy


def plot_seed_sweep(
    x: Sequence[float],
    runs: Sequence[Sequence[float]],
    xlabel: str,
    ylabel: str = "last-epoch test top-1 (%)",
    logx: bool = False,
    reference: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """A hyper-parameter sweep: at each ``x[i]`` the runs ``runs[i]`` (one value per seed) as dots,
    their mean as a line and mean +- sample sd as error bars. ``reference``: name -> y drawn as
    dashed horizontal lines (for example the plain student and KD)."""
    positions = _to_numpy(x, "x")
    if positions.ndim != 1 or len(positions) != len(runs) or not len(runs):
        raise ValueError(f"give one list of runs per x position: {len(positions)} positions, {len(runs)} lists")
    values = [_to_numpy(r, f"runs[{i}]") for i, r in enumerate(runs)]
    if any(v.ndim != 1 or v.size == 0 for v in values):
        raise ValueError("every position needs at least one run (a 1-D list of values)")
    fig, axes = _new_figure()
    ax = axes[0, 0]
    means = np.array([v.mean() for v in values])
    sds = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in values])
    ax.errorbar(positions, means, yerr=sds, color=PALETTE[0], marker="o", capsize=3, label="mean +- sd over seeds")
    for xi, v in zip(positions, values):
        ax.scatter(np.full(v.size, xi), v, color=PALETTE[0], alpha=0.35, s=14, linewidths=0)
    for k, (name, y) in enumerate((reference or {}).items()):
        ax.axhline(y, color=PALETTE[(k + 1) % len(PALETTE)], linestyle="--", linewidth=1, label=name)
    if logx and (positions <= 0).any():  # a zero (alpha = 0) on a log axis: linear up to the smallest positive x
        ax.set_xscale("symlog", linthresh=float(positions[positions > 0].min()))
    elif logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_differences(
    labels: Sequence[str],
    differences: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    xlabel: str,
    title: str | None = None,
) -> Figure:
    """A forest plot: each label's difference to a baseline with its confidence interval, and 0 marked.

    Intervals that exclude 0 are drawn in the first palette colour, the others in grey.
    """
    centre, low, high = (np.asarray(v, dtype=float) for v in (differences, lows, highs))
    if not len(labels) == len(centre) == len(low) == len(high) or not len(labels):
        raise ValueError("give one difference, low and high per label")
    fig, axes = _new_figure(height=0.32 * len(labels) + 1.2)
    ax = axes[0, 0]
    rows = np.arange(len(labels))[::-1]
    for row, c, lo, hi in zip(rows, centre, low, high):
        known = np.isfinite(lo) and np.isfinite(hi)
        colour = PALETTE[0] if known and (lo > 0 or hi < 0) else "grey"
        if known:
            ax.plot([lo, hi], [row, row], color=colour, linewidth=2)
        ax.plot(c, row, "o", color=colour)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(rows, labels)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
