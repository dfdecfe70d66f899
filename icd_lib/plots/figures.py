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


def _finish(fig: Figure, ax, xlabel: str, ylabel: str, title: str | None) -> Figure:
    """Axis labels, a light grid, the legend and the title; then a tight layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


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
    tick_labels: Sequence[str] | None = None,
) -> Figure:
    """Matrices side by side on one shared colour scale, each titled by its name.

    matrices: name -> (rows, cols) array. The colour scale spans all matrices unless ``vmin``
    and ``vmax`` are given; ``annotate`` writes each entry (for small matrices). ``tick_labels``
    (class names, say) label both axes of every matrix, so each must be (len, len); the x labels
    are turned 45 degrees so that neighbours do not overlap.
    """
    if not matrices:
        raise ValueError("matrices is empty: give at least one name -> 2-D array")
    arrays = {name: _to_numpy(m, f"matrices[{name!r}]") for name, m in matrices.items()}
    for name, array in arrays.items():
        if array.ndim != 2:
            raise ValueError(f"matrices[{name!r}] must be 2-D, got shape {array.shape}")
        if tick_labels is not None and array.shape != (len(tick_labels),) * 2:
            raise ValueError(f"tick_labels has {len(tick_labels)} labels but matrices[{name!r}] is "
                             f"{array.shape[0]} x {array.shape[1]}; give one label per row and column")
    low = min(a.min() for a in arrays.values()) if vmin is None else vmin
    high = max(a.max() for a in arrays.values()) if vmax is None else vmax

    fig, axes = _new_figure(len(arrays), width=3.3 * len(arrays) + 1.0, height=3.4, layout="constrained")
    image = None
    for ax, (name, array) in zip(axes[0], arrays.items()):
        image = ax.imshow(array, cmap=cmap, vmin=low, vmax=high)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if tick_labels is not None:
            ticks = range(len(tick_labels))
            ax.set_xticks(ticks, tick_labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=7)
            ax.set_yticks(ticks, tick_labels, fontsize=7)
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
    return _finish(fig, ax, xlabel, ylabel, title)


def plot_learning_curves(
    runs: Mapping[str, object],
    xlabel: str = "epoch",
    ylabel: str = "test top-1 accuracy (%)",
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Per-epoch curves, one colour per name: the mean over runs as a line, their range as a band.

    runs: name -> (runs, epochs) values, e.g. the test top-1 of every epoch of each seed's run
    (a 1-D sequence is one run). Names may have different numbers of epochs; epochs count from 1.
    The legend says how many runs each curve averages.
    """
    if not runs:
        raise ValueError("runs is empty: give at least one name -> (runs, epochs) values")
    fig, axes = _new_figure()
    ax = axes[0, 0]
    for k, (name, values) in enumerate(runs.items()):
        array = _to_numpy(values, f"runs[{name!r}]")
        array = array[None] if array.ndim == 1 else array
        if array.ndim != 2 or array.size == 0:
            raise ValueError(f"runs[{name!r}] must be (runs, epochs) values, got shape {array.shape}")
        epochs = np.arange(1, array.shape[1] + 1)
        colour = PALETTE[k % len(PALETTE)]
        count = array.shape[0]
        label = f"{name} ({count} run{'s' if count > 1 else ''})"
        ax.plot(epochs, array.mean(axis=0), marker="o", markersize=3, color=colour, label=label)
        if count > 1:
            ax.fill_between(epochs, array.min(axis=0), array.max(axis=0), color=colour, alpha=0.2, linewidth=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _finish(fig, ax, xlabel, ylabel, title)


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
    if not nodes:
        raise ValueError("nodes is empty: give at least one label -> (x, y)")
    unknown = sorted({name for edge in edges for name in edge} - set(nodes))
    unknown += sorted(set(observed) - set(nodes)) + sorted(set(notes or {}) - set(nodes))
    if unknown:
        raise ValueError(f"edges, observed or notes name nodes that do not exist: {unknown}")
    for edge in edges:
        if len(edge) != 2 or edge[0] == edge[1]:
            raise ValueError(f"an edge must be a (cause, effect) pair of two different nodes, got {edge!r}")
    positions = {name: np.asarray(xy, dtype=float) for name, xy in nodes.items()}
    xs = np.array([p[0] for p in positions.values()])
    ys = np.array([p[1] for p in positions.values()])
    radius = 0.32
    width = max(3.0, 1.3 * (np.ptp(xs) + 1.6))
    height = max(1.6, 1.3 * (np.ptp(ys) + 1.4) + (0.3 if notes else 0.0))
    fig, axes = _new_figure(width=width, height=height)
    ax = axes[0, 0]
    from matplotlib.patches import Circle, FancyArrowPatch

    for name, (x, y) in positions.items():
        is_observed = name in observed
        ax.add_patch(Circle((x, y), radius, facecolor="#D9E8F5" if is_observed else "white",
                            edgecolor=PALETTE[0], linewidth=1.6, linestyle="-" if is_observed else "--",
                            zorder=2, gid=f"node:{name}"))
        ax.text(x, y, name, ha="center", va="center", fontsize=13, zorder=3)
        if notes and name in notes:
            ax.text(x, y - radius - 0.12, notes[name], ha="center", va="top", fontsize=9, color="#333333")
    for cause, effect in edges:
        ax.add_patch(FancyArrowPatch(positions[cause], positions[effect], arrowstyle="-|>", mutation_scale=16,
                                     shrinkA=radius * 72 * 1.3, shrinkB=radius * 72 * 1.3, linewidth=1.5,
                                     color="#333333", zorder=1, gid=f"edge:{cause}->{effect}"))
    bottom = ys.min() - 0.7 - (0.5 if notes else 0.0)
    if observed and set(observed) != set(nodes):
        ax.text(xs.max() + 0.8, bottom, "filled: observed; dashed: latent", ha="right", va="bottom",
                fontsize=8, color="#555555", gid="text:legend")
    ax.set_xlim(xs.min() - 0.8, xs.max() + 0.8)
    ax.set_ylim(bottom, ys.max() + 0.7)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_icd_diagram(similarity, row_softmax, column_softmax, title: str | None = None) -> Figure:
    """The ICD loss as a diagram: both networks, their projection heads, the n x n similarity
    matrix of a batch, its row and column softmaxes P and Q, and the two terms read from them.

    similarity: (n, n) cosine similarities S[i, j] between student embedding i and teacher
    embedding j; row_softmax: P = softmax of each row of s*S + b (student i picks teacher j);
    column_softmax: Q = softmax of each column, transposed (teacher i picks student j). The three
    matrices are drawn as given (the chapter computes them); the diagonal of P, which the
    contrastive term reads, is outlined.
    """
    from matplotlib.patches import FancyBboxPatch, Rectangle

    matrices = {"S": _to_numpy(similarity, "similarity"), "P": _to_numpy(row_softmax, "row_softmax"),
                "Q": _to_numpy(column_softmax, "column_softmax")}
    shapes = {array.shape for array in matrices.values()}
    n = matrices["S"].shape[0] if matrices["S"].ndim == 2 else 0
    if shapes != {(n, n)} or n < 2:
        raise ValueError(f"similarity, row_softmax and column_softmax must be square (n, n) matrices "
                         f"of one size n >= 2, got shapes {[a.shape for a in matrices.values()]}")

    fig, axes = _new_figure(width=10.5, height=4.5)
    ax = axes[0, 0]
    ax.set_xlim(0, 22.6)
    ax.set_ylim(0, 9.4)
    ax.set_aspect("equal")
    ax.axis("off")

    def box(x, y, w, h, text, colour, gid):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.08,rounding_size=0.25",
                                    facecolor=colour, edgecolor="#555555", linewidth=1.0, gid=gid))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(start, end, text=None):
        ax.annotate("", xy=end, xytext=start,
                    arrowprops={"arrowstyle": "-|>", "color": "#333333", "linewidth": 1.2, "shrinkA": 2, "shrinkB": 2})
        if text:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.18, text, ha="center", va="bottom",
                    fontsize=8, color="#333333")

    def matrix(array, x, y, size, cmap, caption, below=None):
        ax.imshow(array, cmap=cmap, extent=(x, x + size, y, y + size), origin="upper",
                  vmin=array.min(), vmax=array.max(), interpolation="nearest")
        ax.add_patch(Rectangle((x, y), size, size, fill=False, edgecolor="#333333", linewidth=0.8))
        ax.text(x + size / 2, y + size + 0.15, caption, ha="center", va="bottom", fontsize=8.5)
        if below:
            ax.text(x + size / 2, y - 0.15, below, ha="center", va="top", fontsize=8, color="#333333")
        return size / n

    # Inputs, networks and heads; the teacher path on top, the student path below.
    box(0.2, 3.8, 1.8, 1.8, "a batch of\n$n$ images\n$x_1,\\dots,x_n$", "#F2F2F2", "box:batch")
    box(2.9, 6.4, 2.6, 1.6, "teacher $f^T$\n(frozen)", "#FBE3C4", "box:teacher")
    box(2.9, 1.4, 2.6, 1.6, "student $f^S$\n(trained)", "#D9E8F5", "box:student")
    box(6.4, 6.4, 2.8, 1.6, "head $W_t$, then\n$\\ell_2$-normalise:\n$z^T_j$ (128-d)", "#FBE3C4", "box:head_t")
    box(6.4, 1.4, 2.8, 1.6, "head $W_s$, then\n$\\ell_2$-normalise:\n$z^S_i$ (128-d)", "#D9E8F5", "box:head_s")
    arrow((2.0, 5.1), (2.9, 7.2))
    arrow((2.0, 4.3), (2.9, 2.2))
    arrow((5.5, 7.2), (6.4, 7.2), "$f^T(x)$")
    arrow((5.5, 2.2), (6.4, 2.2), "$f^S(x)$")
    # The similarity matrix of the batch: row i is student i, column j teacher j.
    matrix(matrices["S"], 10.4, 3.3, 2.8, "RdBu_r", "$S_{ij} = z^S_i \\cdot z^T_j$\nlogits $L = sS + b$",
           below="row $i$: student,\ncolumn $j$: teacher")
    arrow((9.2, 7.0), (10.35, 6.05))
    arrow((9.2, 2.4), (10.3, 3.4))
    # Row and column softmaxes.
    cell = matrix(matrices["P"], 14.6, 5.5, 2.3, "magma", "$P$: softmax of each row\n(student $i$ picks teacher $j$)")
    for k in range(n):
        ax.add_patch(Rectangle((14.6 + k * cell, 5.5 + 2.3 - (k + 1) * cell), cell, cell, fill=False,
                               edgecolor=PALETTE[2], linewidth=1.2, gid=f"diagonal:{k}"))
    matrix(matrices["Q"], 14.6, 1.1, 2.3, "magma", "$Q$: softmax of each\ncolumn, transposed",
           below="(teacher $i$ picks student $j$)")
    arrow((13.2, 5.3), (14.5, 6.4))
    arrow((13.2, 4.0), (14.5, 2.6))
    # The two terms and their sum.
    ax.text(17.5, 6.65, "contrastive term (eq. 9):\n$\\frac{1}{n}\\sum_i -\\log P_{ii}$,\nthe outlined diagonal",
            ha="left", va="center", fontsize=8.5, gid="text:contrast")
    ax.text(17.5, 4.2, "invariance term (eq. 11):\n$\\frac{1}{n}\\sum_i \\mathrm{KL}(Q_i \\,\\|\\, P_i)$,\n"
            "row $i$ of $Q$ against\nrow $i$ of $P$", ha="left", va="center", fontsize=8.5, gid="text:invariance")
    ax.text(17.5, 1.5, "$L_{ICD} = L_{contrast}$\n$\\quad + \\alpha\\, L_{invariance}$",
            ha="left", va="center", fontsize=9.5, gid="text:total",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "#EAF4EA", "edgecolor": PALETTE[2]})
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
