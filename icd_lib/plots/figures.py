"""Figure functions used by the book's chapters.

Each function takes plain numbers (tensors, arrays or mappings of them), draws one figure and
returns it as a ``matplotlib.figure.Figure`` detached from pyplot's global state: a notebook
shows it as the cell's last expression, a test inspects its artists, and nothing leaks between
calls. The functions compute nothing: the chapters compute the numbers (that is what they
teach) and hand them over.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

# Colour-blind-safe (Okabe-Ito) colours, cycled through by every figure.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _to_numpy(values, what: str) -> np.ndarray:
    """A float64 NumPy copy of a tensor, array or sequence; ``what`` names it in errors."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} must be numeric (a tensor, array or list of numbers): {error}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values; check the computation that produced it")
    return array


def _new_figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 3.6, **kwargs):
    """A figure with a grid of axes, closed in pyplot so that only the caller holds it."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)
    plt.close(fig)
    return fig, axes


def plot_distributions(
    distributions: Mapping[str, object],
    category_names: Sequence[str] | None = None,
    ylabel: str = "probability",
    title: str | None = None,
) -> Figure:
    """Grouped bars: one group per category, one bar per distribution.

    distributions: name -> (k,) values over the same k categories, e.g. softmax(z / T) of one
    image's logits for several temperatures T (the soft targets of KD).
    """
    if not distributions:
        raise ValueError("distributions is empty: give at least one name -> (k,) values")
    arrays = {name: _to_numpy(d, f"distributions[{name!r}]") for name, d in distributions.items()}
    sizes = {array.shape for array in arrays.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"every distribution must be 1-D and of the same length, got shapes {sorted(sizes)}")
    k = next(iter(sizes))[0]
    names = list(category_names) if category_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"got {len(names)} category names for distributions over {k} categories")

    fig, axes = _new_figure(width=max(6.0, 0.6 * k + 1.5))
    ax = axes[0, 0]
    positions = np.arange(k)
    width = 0.8 / len(arrays)
    for j, (label, values) in enumerate(arrays.items()):
        offset = (j - (len(arrays) - 1) / 2) * width
        ax.bar(positions + offset, values, width=width, label=label, color=PALETTE[j % len(PALETTE)])
    ax.set_xticks(positions, names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_bars(
    values: Mapping[str, float | Sequence[float]],
    ylabel: str,
    title: str | None = None,
    value_format: str = "{:.1f}",
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """One bar per name at the mean of its values, each value (e.g. one per seed) as a dot.

    values: name -> a number, or a sequence of numbers (runs with different seeds).
    The mean is written above each bar with ``value_format``.
    """
    if not values:
        raise ValueError("values is empty: give at least one name -> number")
    names = list(values)
    samples = [np.atleast_1d(_to_numpy(values[name], f"values[{name!r}]")) for name in names]
    for name, sample in zip(names, samples):
        if sample.ndim != 1 or sample.size == 0:
            raise ValueError(f"values[{name!r}] must be a number or a flat, non-empty list of numbers")
    means = np.array([sample.mean() for sample in samples])

    fig, axes = _new_figure(width=max(4.0, 1.1 * len(names) + 1.5))
    ax = axes[0, 0]
    positions = np.arange(len(names))
    ax.bar(positions, means, color=[PALETTE[i % len(PALETTE)] for i in positions], width=0.6)
    for position, sample, mean in zip(positions, samples, means):
        if sample.size > 1:
            ax.scatter(np.full(sample.size, position), sample, color="black", s=12, zorder=3)
        ax.annotate(
            value_format.format(mean),
            (position, max(mean, sample.max())),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
        )
    ax.set_xticks(positions, names)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:
        ax.margins(y=0.15)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_image_grid(
    images,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Figure:
    """A rows x cols grid of images.

    images: (rows, cols, c, h, w) with c = 1 (grey) or 3 (RGB), values in ``value_range``
    (values outside are clipped). Row and column labels are written on the left and on top.
    """
    grid = _to_numpy(images, "images")
    if grid.ndim != 5 or grid.shape[2] not in (1, 3):
        raise ValueError(
            f"images must have shape (rows, cols, channels, height, width) with 1 or 3 channels, got {grid.shape}"
        )
    rows, cols = grid.shape[:2]
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"got {len(col_labels)} column labels for {cols} columns")
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    grid = np.clip((grid - low) / (high - low), 0.0, 1.0)

    fig, axes = _new_figure(cols, rows, width=1.3 * cols + 0.8, height=1.3 * rows + 0.5)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            image = grid[r, c].transpose(1, 2, 0)
            if image.shape[2] == 1:
                ax.imshow(image[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_heatmaps(
    matrices: Mapping[str, object],
    xlabel: str = "",
    ylabel: str = "",
    colorbar_label: str = "",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = False,
) -> Figure:
    """Matrices side by side on one shared colour scale, each titled by its name.

    matrices: name -> (rows, cols) array. The colour scale spans all matrices unless ``vmin``
    and ``vmax`` are given; ``annotate`` writes each entry (for small matrices).
    """
    if not matrices:
        raise ValueError("matrices is empty: give at least one name -> 2-D array")
    arrays = {name: _to_numpy(m, f"matrices[{name!r}]") for name, m in matrices.items()}
    for name, array in arrays.items():
        if array.ndim != 2:
            raise ValueError(f"matrices[{name!r}] must be 2-D, got shape {array.shape}")
    low = min(a.min() for a in arrays.values()) if vmin is None else vmin
    high = max(a.max() for a in arrays.values()) if vmax is None else vmax

    fig, axes = _new_figure(len(arrays), width=3.3 * len(arrays) + 1.0, height=3.4, layout="constrained")
    image = None
    for ax, (name, array) in zip(axes[0], arrays.items()):
        image = ax.imshow(array, cmap=cmap, vmin=low, vmax=high)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if annotate:
            middle = (low + high) / 2
            for (r, c), value in np.ndenumerate(array):
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < middle else "black")
    fig.colorbar(image, ax=list(axes[0]), label=colorbar_label, shrink=0.85)
    return fig


def plot_curves(
    x,
    curves: Mapping[str, object],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
) -> Figure:
    """Line plot of several curves over one shared x axis.

    x: (m,) positions; curves: name -> (m,) values.
    """
    x = _to_numpy(x, "x")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D list of positions, got shape {x.shape}")
    if not curves:
        raise ValueError("curves is empty: give at least one name -> values")
    fig, axes = _new_figure()
    ax = axes[0, 0]
    for k, (name, values) in enumerate(curves.items()):
        y = _to_numpy(values, f"curves[{name!r}]")
        if y.shape != x.shape:
            raise ValueError(f"curves[{name!r}] has shape {y.shape}, but x has shape {x.shape}")
        ax.plot(x, y, marker="o", markersize=3, label=name, color=PALETTE[k % len(PALETTE)])
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
