"""Figure functions used by the book's chapters.

Each function takes plain numbers (tensors, arrays or mappings of them), draws one figure and
returns it as a ``matplotlib.figure.Figure`` detached from pyplot's global state: a notebook
shows it as the cell's last expression, a test inspects its artists, and nothing leaks between
calls. The functions compute nothing: the chapters compute the numbers (that is what they
teach) and hand them over. Every figure follows ``icd_lib.plots.style``: the book's theme, one
colour per method, ``FIGURE_WIDTH`` wide and no wider than ``MAX_ASPECT``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from scipy import stats

from icd_lib.plots.style import FIGURE_WIDTH, MAX_ASPECT, MIN_FONT_PT, series_colours

HIGHLIGHT = "#009E73"  # what a diagram points the reader to
NODE_RADIUS = 0.32  # of a causal graph's circles, in units of the node positions


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


def _new_figure(ncols: int = 1, nrows: int = 1, width: float = FIGURE_WIDTH, height: float = 3.3, **kwargs):
    """A figure with a grid of axes, closed in pyplot so that only the caller holds it."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)
    plt.close(fig)
    return fig, axes


def _title_and_layout(fig: Figure, ax, title: str | None) -> Figure:
    """The axes' title, if any; then a tight layout."""
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _finish(fig: Figure, ax, xlabel: str, ylabel: str, title: str | None) -> Figure:
    """Axis labels, the legend and the title; then a tight layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _title_and_layout(fig, ax, title)


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The mean of a sample and the half-width of its t confidence interval (0 for one value)."""
    if values.size < 2:
        return float(values.mean()), 0.0
    half = stats.t.ppf((1 + level) / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


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

    fig, axes = _new_figure(height=3.0)
    ax = axes[0, 0]
    positions = np.arange(k)
    width = 0.8 / len(arrays)
    for j, ((label, values), colour) in enumerate(zip(arrays.items(), series_colours(list(arrays)))):
        offset = (j - (len(arrays) - 1) / 2) * width
        ax.bar(positions + offset, values, width=width, label=label, color=colour)
    ax.set_xticks(positions, names, rotation=30, ha="right", rotation_mode="anchor")
    ax.grid(axis="x", visible=False)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_dots(
    values: Mapping[str, float | Sequence[float]],
    value_label: str,
    title: str | None = None,
    value_format: str = "{:.1f}",
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """One row per name: each value (one per seed) as a dot, their mean as a bar, its 95% interval as a line.

    values: name -> a number, or a sequence of numbers (runs with different seeds); each name in
    its method's colour. The mean is written at the right of its row with ``value_format``;
    ``value_range`` fixes the value axis (it need not include 0: no bar length is read).
    """
    if not values:
        raise ValueError("values is empty: give at least one name -> number")
    names = list(values)
    samples = [np.atleast_1d(_to_numpy(values[name], f"values[{name!r}]")) for name in names]
    for name, sample in zip(names, samples):
        if sample.ndim != 1 or sample.size == 0:
            raise ValueError(f"values[{name!r}] must be a number or a flat, non-empty list of numbers")

    fig, axes = _new_figure(height=max(2.6, 0.3 * len(names) + 1.2))
    ax = axes[0, 0]
    rows = np.arange(len(names))[::-1]
    jitter = np.random.default_rng(0)
    for row, sample, colour in zip(rows, samples, series_colours(names)):
        mean, half = mean_interval(sample)
        if sample.size > 1:
            ax.plot([mean - half, mean + half], [row, row], color=colour, linewidth=1.2, alpha=0.8, zorder=2)
            ax.scatter(sample, row + jitter.uniform(-0.15, 0.15, sample.size), color=colour, s=20,
                       alpha=0.85, edgecolors="white", linewidths=0.5, zorder=3)
        ax.plot(mean, row, marker="|", markersize=14, markeredgewidth=2.5, color=colour, zorder=4)
        ax.annotate(value_format.format(mean), (1.01, row), xycoords=("axes fraction", "data"),
                    va="center", fontsize=8)
    ax.set_yticks(rows, names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.grid(axis="y", visible=False)
    if value_range is not None:
        ax.set_xlim(*value_range)
    ax.set_xlabel(f"{value_label}\ndots: seeds; bar: mean; line: its 95% interval")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _blocks(rows: int, cols: int) -> int:
    """How many blocks of columns, stacked, keep a rows x cols grid of square cells within ``MAX_ASPECT``."""
    blocks = 1
    while math.ceil(cols / blocks) + 0.6 > MAX_ASPECT * 0.9 * (rows * blocks + 0.3) and blocks < cols:
        blocks += 1
    return blocks


def _hide_spare_axes(axes, used: int) -> None:
    """Turn off every axes of the grid after the first ``used``."""
    for ax in axes.flat[used:]:
        ax.axis("off")


def _image_grid_array(images, row_labels, col_labels, value_range) -> np.ndarray:
    """Check the (rows, cols, c, h, w) images and their labels; rescale ``value_range`` to [0, 1], clipped."""
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
    return np.clip((grid - low) / (high - low), 0.0, 1.0)


def _show_image(ax, image: np.ndarray) -> None:
    """One (c, h, w) image in [0, 1] in a frame without ticks; grey when c = 1."""
    image = image.transpose(1, 2, 0)
    if image.shape[2] == 1:
        ax.imshow(image[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image)
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def plot_image_grid(
    images,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Figure:
    """A rows x cols grid of images.

    images: (rows, cols, c, h, w) with c = 1 (grey) or 3 (RGB), values in ``value_range``
    (values outside are clipped). Row and column labels are written on the left and on top. A
    grid too wide for ``MAX_ASPECT`` is cut into blocks of columns stacked below each other.
    """
    grid = _image_grid_array(images, row_labels, col_labels, value_range)
    rows, cols = grid.shape[:2]
    blocks = _blocks(rows, cols)
    per_block = math.ceil(cols / blocks)
    margin = 1.0 if row_labels else 0.2
    cell = min(1.4, (FIGURE_WIDTH - margin) / per_block)
    fig, axes = _new_figure(per_block, rows * blocks, width=cell * per_block + margin,
                            height=(cell + (0.3 if col_labels else 0.05)) * rows * blocks + (0.4 if title else 0.1))
    _hide_spare_axes(axes, 0)
    for r in range(rows):
        for c in range(cols):
            ax = axes[(c // per_block) * rows + r, c % per_block]
            _show_image(ax, grid[r, c])
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c], fontsize=8.5)
            if c % per_block == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class _ColourScale:
    """A colour map and the values at its two ends, shared by the panels of a figure."""

    cmap: str
    low: float
    high: float

    def text_colour(self, value: float) -> str:
        """White on the map's dark colours, black on its light ones."""
        if self.cmap == "RdBu_r":
            dark = abs(value) > 0.6 * self.high
        else:
            dark = value < (self.low + self.high) / 2
        return "white" if dark else "black"


def _heatmap_arrays(matrices: Mapping[str, object], tick_labels) -> dict[str, np.ndarray]:
    """The matrices as 2-D arrays, each (len, len) when ``tick_labels`` are given."""
    if not matrices:
        raise ValueError("matrices is empty: give at least one name -> 2-D array")
    arrays = {name: _to_numpy(m, f"matrices[{name!r}]") for name, m in matrices.items()}
    for name, array in arrays.items():
        if array.ndim != 2:
            raise ValueError(f"matrices[{name!r}] must be 2-D, got shape {array.shape}")
        if tick_labels is not None and array.shape != (len(tick_labels),) * 2:
            raise ValueError(f"tick_labels has {len(tick_labels)} labels but matrices[{name!r}] is "
                             f"{array.shape[0]} x {array.shape[1]}; give one label per row and column")
    return arrays


def _colour_scale(arrays: Mapping[str, np.ndarray], cmap: str, value_range: tuple) -> _ColourScale:
    """The scale over all matrices, with either end fixed by ``value_range``; a signed one is "RdBu_r" centred at 0."""
    low, high = value_range
    low = min(a.min() for a in arrays.values()) if low is None else low
    high = max(a.max() for a in arrays.values()) if high is None else high
    if low < 0 < high:
        return _ColourScale("RdBu_r", -max(-low, high), max(-low, high))
    return _ColourScale(cmap, low, high)


def _label_heatmap(ax, name: str, xlabel: str, ylabel: str, tick_labels, first_in_row: bool) -> None:
    """A panel's title and axis labels; y labels and tick labels only on the first panel of a row."""
    ax.set_title(name)
    ax.set_xlabel(xlabel)
    if first_in_row:
        ax.set_ylabel(ylabel)
    if tick_labels is not None:
        ticks = range(len(tick_labels))
        ax.set_xticks(ticks, tick_labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=MIN_FONT_PT)
        ax.set_yticks(ticks, tick_labels if first_in_row else [], fontsize=MIN_FONT_PT)


def _write_entries(ax, array: np.ndarray, scale: _ColourScale) -> None:
    """Each entry of the matrix written on its cell, in a colour that reads on the cell's."""
    for (r, c), value in np.ndenumerate(array):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=MIN_FONT_PT, color=scale.text_colour(value))


def plot_heatmaps(
    matrices: Mapping[str, object],
    xlabel: str = "",
    ylabel: str = "",
    colorbar_label: str = "",
    cmap: str = "viridis",
    annotate: bool = False,
    tick_labels: Sequence[str] | None = None,
    value_range: tuple[float | None, float | None] = (None, None),
) -> Figure:
    """Matrices on one shared colour scale, each titled by its name, at most three (two with
    ``tick_labels``) to a row.

    matrices: name -> (rows, cols) array. The colour scale spans all matrices; ``value_range``
    (low, high) fixes either end (None: the matrices' own). Signed matrices (entries on
    both sides of 0) always get the diverging map "RdBu_r" centred at 0; ``cmap`` colours the
    others. ``annotate`` writes each entry (for small matrices). ``tick_labels`` (class names,
    say) label both axes, so each matrix must be (len, len); the x labels are turned 45 degrees.
    """
    arrays = _heatmap_arrays(matrices, tick_labels)
    scale = _colour_scale(arrays, cmap, value_range)
    columns = min(len(arrays), 2 if tick_labels is not None else 3)
    rows = math.ceil(len(arrays) / columns)
    panel = (FIGURE_WIDTH - 1.0) / columns
    fig, axes = _new_figure(columns, rows, height=rows * (panel + (0.9 if tick_labels is not None else 0.3)),
                            layout="constrained")
    _hide_spare_axes(axes, len(arrays))
    for k, (ax, (name, array)) in enumerate(zip(axes.flat, arrays.items())):
        image = ax.imshow(array, cmap=scale.cmap, vmin=scale.low, vmax=scale.high)
        ax.grid(False)
        _label_heatmap(ax, name, xlabel, ylabel, tick_labels, k % columns == 0)
        if annotate:
            _write_entries(ax, array, scale)
    fig.colorbar(image, ax=list(axes.flat), label=colorbar_label, shrink=0.85)
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
    """Line plot of several curves over one shared x axis, each method in its colour.

    x: (m,) positions; curves: name -> (m,) values.
    """
    x = _to_numpy(x, "x")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D list of positions, got shape {x.shape}")
    if not curves:
        raise ValueError("curves is empty: give at least one name -> values")
    fig, axes = _new_figure(height=3.0)
    ax = axes[0, 0]
    for (name, values), colour in zip(curves.items(), series_colours(list(curves))):
        y = _to_numpy(values, f"curves[{name!r}]")
        if y.shape != x.shape:
            raise ValueError(f"curves[{name!r}] has shape {y.shape}, but x has shape {x.shape}")
        ax.plot(x, y, marker="o", markersize=3, label=name, color=colour)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, xlabel, ylabel, title)


def _run_arrays(runs: Mapping[str, object]) -> dict[str, np.ndarray]:
    """name -> (runs, epochs) array; a 1-D sequence is one run."""
    if not runs:
        raise ValueError("runs is empty: give at least one name -> (runs, epochs) values")
    arrays = {}
    for name, values in runs.items():
        array = _to_numpy(values, f"runs[{name!r}]")
        array = array[None] if array.ndim == 1 else array
        if array.ndim != 2 or array.size == 0:
            raise ValueError(f"runs[{name!r}] must be (runs, epochs) values, got shape {array.shape}")
        arrays[name] = array
    return arrays


def _draw_runs(ax, name: str, array: np.ndarray, colour, means: Mapping[str, tuple]) -> None:
    """One panel: the other names' means dotted grey, this name's runs thin, their mean thick, a title."""
    for other, (epochs, mean) in means.items():
        if other != name:
            ax.plot(epochs, mean, color="#AAAAAA", linewidth=1, linestyle=":", zorder=1)
    epochs, mean = means[name]
    for run in array:
        ax.plot(epochs, run, color=colour, linewidth=0.8, alpha=0.45, zorder=2)
    ax.plot(epochs, mean, color=colour, linewidth=2, zorder=3)
    count = array.shape[0]
    ax.set_title(f"{name} ({count} run{'s' if count > 1 else ''})", color=colour)
    ax.xaxis.get_major_locator().set_params(integer=True)


def plot_learning_curves(
    runs: Mapping[str, object],
    xlabel: str = "epoch",
    ylabel: str = "test top-1 accuracy (%)",
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Per-epoch curves as small multiples: one panel per name, three to a row, on a shared y axis.

    runs: name -> (runs, epochs) values, e.g. the test top-1 of every epoch of each seed's run
    (a 1-D sequence is one run). Each panel draws its runs as thin lines and their mean as a thick
    one, in the name's colour, over the other names' means as dotted grey lines. Names may have
    different numbers of epochs; epochs count from 1. Each panel's title says how many runs it has.
    """
    arrays = _run_arrays(runs)
    columns = min(3, len(arrays))
    rows = math.ceil(len(arrays) / columns)
    fig, axes = _new_figure(columns, rows, height=rows * (2.0 if columns > 1 else 3.0) + 0.5,
                            sharex=True, sharey=True)
    means = {name: (np.arange(1, a.shape[1] + 1), a.mean(axis=0)) for name, a in arrays.items()}
    _hide_spare_axes(axes, len(arrays))
    for k, (ax, (name, array), colour) in enumerate(zip(axes.flat, arrays.items(), series_colours(list(arrays)))):
        _draw_runs(ax, name, array, colour, means)
        if k % columns == 0:
            ax.set_ylabel(ylabel if rows == 1 else "")
        if k >= len(arrays) - columns:
            ax.set_xlabel(xlabel)
            ax.xaxis.set_tick_params(labelbottom=True)
    if rows > 1:
        fig.supylabel(ylabel, fontsize=9)
    if ylim is not None:
        axes[0, 0].set_ylim(*ylim)
    if title:
        fig.suptitle(f"{title}\nthin: each run; thick: their mean; dotted: the other panels' means")
    fig.tight_layout()
    return fig


def _check_graph(nodes: Mapping, edges: Sequence, observed: Sequence[str], notes: Mapping | None) -> None:
    """Raise unless the graph has nodes and its edges, observed nodes and notes name only those."""
    if not nodes:
        raise ValueError("nodes is empty: give at least one label -> (x, y)")
    unknown = sorted({name for edge in edges for name in edge} - set(nodes))
    unknown += sorted(set(observed) - set(nodes)) + sorted(set(notes or {}) - set(nodes))
    if unknown:
        raise ValueError(f"edges, observed or notes name nodes that do not exist: {unknown}")
    for edge in edges:
        if len(edge) != 2 or edge[0] == edge[1]:
            raise ValueError(f"an edge must be a (cause, effect) pair of two different nodes, got {edge!r}")


def _graph_size(xs: np.ndarray, ys: np.ndarray, has_notes: bool) -> tuple[float, float]:
    """Width and height in inches for nodes at xs, ys: at most 1.3 inches per unit, within the column."""
    unit = min(1.3, FIGURE_WIDTH / (np.ptp(xs) + 1.6))  # inches per unit of the node positions
    width = max(3.0, unit * (np.ptp(xs) + 1.6))
    height = max(width / (0.9 * MAX_ASPECT), unit * (np.ptp(ys) + 1.4) + (0.3 if has_notes else 0.0))
    return width, height


def _draw_node(ax, name: str, position, observed: bool, note: str | None) -> None:
    """A node's circle (filled if observed, dashed if latent), its label and the note under it."""
    x, y = position
    ax.add_patch(Circle((x, y), NODE_RADIUS, facecolor="#D9E8F5" if observed else "white",
                        edgecolor="#4C4C4C", linewidth=1.6, linestyle="-" if observed else "--",
                        zorder=2, gid=f"node:{name}"))
    ax.text(x, y, name, ha="center", va="center", fontsize=13, zorder=3)
    if note is not None:
        ax.text(x, y - NODE_RADIUS - 0.12, note, ha="center", va="top", fontsize=9, color="#333333")


def _draw_edge(ax, cause: str, effect: str, positions: Mapping[str, np.ndarray]) -> None:
    """An arrow from the cause's circle to the effect's."""
    shrink = NODE_RADIUS * 72 * 1.3
    ax.add_patch(FancyArrowPatch(positions[cause], positions[effect], arrowstyle="-|>", mutation_scale=16,
                                 shrinkA=shrink, shrinkB=shrink, linewidth=1.5,
                                 color="#333333", zorder=1, gid=f"edge:{cause}->{effect}"))


def _frame_graph(ax, xs: np.ndarray, ys: np.ndarray, has_notes: bool, legend: bool) -> None:
    """Limits around the nodes at equal scale, no axes; the filled/dashed legend at the bottom right."""
    bottom = ys.min() - 1.0 - (0.5 if has_notes else 0.0)
    if legend:
        ax.text(xs.max() + 0.8, bottom, "filled: observed; dashed: latent", ha="right", va="bottom",
                fontsize=MIN_FONT_PT, color="#555555", gid="text:legend")
    ax.set_xlim(xs.min() - 0.8, xs.max() + 0.8)
    ax.set_ylim(bottom, ys.max() + 0.7)
    ax.set_aspect("equal")
    ax.axis("off")


def plot_causal_graph(
    nodes: Mapping[str, tuple[float, float]],
    edges: Sequence[tuple[str, str]],
    observed: Sequence[str] = (),
    notes: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """A directed acyclic graph: one circle per node at its (x, y) position, one arrow per edge.

    nodes: label -> position (labels may be mathtext, e.g. ``"$Y_t$"``); edges: (cause, effect)
    pairs of labels. ``observed`` nodes are filled, the others (latent) drawn with a dashed
    outline. ``notes``: label -> a short text written under the node.
    """
    _check_graph(nodes, edges, observed, notes)
    notes = notes or {}
    positions = {name: np.asarray(xy, dtype=float) for name, xy in nodes.items()}
    xs = np.array([p[0] for p in positions.values()])
    ys = np.array([p[1] for p in positions.values()])
    width, height = _graph_size(xs, ys, bool(notes))
    fig, axes = _new_figure(width=width, height=height)
    ax = axes[0, 0]
    for name, position in positions.items():
        _draw_node(ax, name, position, name in observed, notes.get(name))
    for cause, effect in edges:
        _draw_edge(ax, cause, effect, positions)
    _frame_graph(ax, xs, ys, bool(notes), legend=bool(observed) and set(observed) != set(nodes))
    return _title_and_layout(fig, ax, title)


def _icd_matrices(similarity, row_softmax, column_softmax) -> dict[str, np.ndarray]:
    """S, P and Q as arrays, after checking they are square matrices of one size n >= 2."""
    matrices = {"S": _to_numpy(similarity, "similarity"), "P": _to_numpy(row_softmax, "row_softmax"),
                "Q": _to_numpy(column_softmax, "column_softmax")}
    shapes = {array.shape for array in matrices.values()}
    n = matrices["S"].shape[0] if matrices["S"].ndim == 2 else 0
    if shapes != {(n, n)} or n < 2:
        raise ValueError(f"similarity, row_softmax and column_softmax must be square (n, n) matrices "
                         f"of one size n >= 2, got shapes {[a.shape for a in matrices.values()]}")
    return matrices


def _box(ax, corner: tuple[float, float], size: tuple[float, float], text: str, colour: str, gid: str) -> None:
    """A rounded box with its lower left at ``corner``, (width, height) ``size``, and centred text."""
    (x, y), (w, h) = corner, size
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.1,rounding_size=0.3",
                                facecolor=colour, edgecolor="#555555", linewidth=1.0, gid=gid))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A plain arrow from start to end."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "color": "#333333", "linewidth": 1.2, "shrinkA": 2, "shrinkB": 2})


def _matrix(ax, array: np.ndarray, corner: tuple[float, float], size: float, cmap: str,
            limits: tuple[float, float]) -> float:
    """The matrix as a framed size x size square with its lower left at ``corner``; returns a cell's side."""
    (x, y), (low, high) = corner, limits
    ax.imshow(array, cmap=cmap, extent=(x, x + size, y, y + size), origin="upper", vmin=low, vmax=high,
              interpolation="nearest")
    ax.add_patch(Rectangle((x, y), size, size, fill=False, edgecolor="#333333", linewidth=0.8))
    return size / array.shape[0]


def _draw_pipeline(ax, similarity: np.ndarray) -> None:
    """Top row: the batch through both networks and their heads to the similarity matrix S."""
    _box(ax, (0.2, 11.4), (3.2, 2.4), "a batch of\n$n$ images\n$x_1, \\dots, x_n$", "#F2F2F2", "box:batch")
    _box(ax, (4.4, 14.0), (4.2, 2.4), "teacher $f^T$\n(frozen)", "#FBE3C4", "box:teacher")
    _box(ax, (4.4, 9.0), (4.2, 2.4), "student $f^S$\n(trained)", "#D9E8F5", "box:student")
    _box(ax, (9.6, 14.0), (5.0, 2.4), "head $W_t$, then\n$\\ell_2$-normalise:\n$z^T_j$ (128-d)",
         "#FBE3C4", "box:head_t")
    _box(ax, (9.6, 9.0), (5.0, 2.4), "head $W_s$, then\n$\\ell_2$-normalise:\n$z^S_i$ (128-d)",
         "#D9E8F5", "box:head_s")
    for start, end in (((3.4, 13.2), (4.4, 15.0)), ((3.4, 12.0), (4.4, 10.2)),
                       ((8.6, 15.2), (9.6, 15.2)), ((8.6, 10.2), (9.6, 10.2))):
        _arrow(ax, start, end)
    limit = float(np.abs(similarity).max())
    _matrix(ax, similarity, (16.6, 10.4), 4.2, "RdBu_r", (-limit, limit))
    ax.text(18.7, 14.8, "$S_{ij} = z^S_i \\cdot z^T_j$,\nlogits $L = sS + b$", ha="center", va="bottom", fontsize=9)
    ax.text(18.7, 10.2, "row $i$: student,\ncolumn $j$: teacher", ha="center", va="top", fontsize=8.5,
            color="#333333")
    _arrow(ax, (14.6, 15.2), (16.5, 13.6))
    _arrow(ax, (14.6, 10.2), (16.5, 11.2))


def _draw_softmaxes(ax, row_softmax: np.ndarray, column_softmax: np.ndarray) -> None:
    """Bottom row: P with the diagonal the contrastive term reads outlined, and Q."""
    x, y, size = 0.4, 2.6, 4.0
    cell = _matrix(ax, row_softmax, (x, y), size, "magma", (0.0, float(row_softmax.max())))
    for k in range(row_softmax.shape[0]):
        ax.add_patch(Rectangle((x + k * cell, y + size - (k + 1) * cell), cell, cell, fill=False,
                               edgecolor=HIGHLIGHT, linewidth=1.4, gid=f"diagonal:{k}"))
    _matrix(ax, column_softmax, (11.6, y), size, "magma", (0.0, float(column_softmax.max())))


def _draw_terms(ax) -> None:
    """What P and Q are, the two terms read from them, arrows from S to them, and the total loss."""
    ax.text(4.8, 4.6, "$P$: softmax of each row\n(student $i$ picks teacher $j$)\n\n"
            "contrastive term (eq. 9):\n$\\frac{1}{n}\\sum_i -\\log P_{ii}$, the\noutlined diagonal",
            ha="left", va="center", fontsize=8.5, gid="text:contrast")
    ax.text(16.0, 4.6, "$Q$: softmax of each column,\ntransposed (teacher $i$\npicks student $j$)\n\n"
            "invariance term (eq. 11):\n$\\frac{1}{n}\\sum_i \\mathrm{KL}(Q_i \\,\\|\\, P_i)$",
            ha="left", va="center", fontsize=8.5, gid="text:invariance")
    _arrow(ax, (17.6, 8.6), (2.4, 6.8))
    _arrow(ax, (18.4, 8.6), (13.6, 6.8))
    ax.text(11.2, 1.4, "$L_{ICD} = L_{contrast} + \\alpha\\, L_{invariance}$", ha="center", va="center",
            fontsize=10, gid="text:total",
            bbox={"boxstyle": "round,pad=0.35", "facecolor": "#EAF4EA", "edgecolor": HIGHLIGHT})


def plot_icd_diagram(similarity, row_softmax, column_softmax, title: str | None = None) -> Figure:
    """The ICD loss as a diagram: both networks, their projection heads, the n x n similarity
    matrix of a batch, its row and column softmaxes P and Q, and the two terms read from them.

    similarity: (n, n) cosine similarities S[i, j] between student embedding i and teacher
    embedding j; row_softmax: P = softmax of each row of s*S + b (student i picks teacher j);
    column_softmax: Q = softmax of each column, transposed (teacher i picks student j). The three
    matrices are drawn as given (the chapter computes them); the diagonal of P, which the
    contrastive term reads, is outlined. Top row: images to similarities; bottom row: P, Q and
    the terms.
    """
    matrices = _icd_matrices(similarity, row_softmax, column_softmax)
    fig, axes = _new_figure(height=FIGURE_WIDTH * 16.8 / 22.4)  # 0.3 inches per unit below
    ax = axes[0, 0]
    ax.set_xlim(0, 22.4)
    ax.set_ylim(0, 16.8)
    ax.set_aspect("equal")
    ax.axis("off")
    _draw_pipeline(ax, matrices["S"])
    _draw_softmaxes(ax, matrices["P"], matrices["Q"])
    _draw_terms(ax)
    return _title_and_layout(fig, ax, title)
