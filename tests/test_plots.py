"""The figure functions draw exactly the numbers they are given and reject malformed input."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from icd_lib.plots import (  # noqa: E402
    plot_bars,
    plot_causal_graph,
    plot_curves,
    plot_distributions,
    plot_heatmaps,
    plot_icd_diagram,
    plot_image_grid,
    plot_learning_curves,
)


def bar_heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def images_of(fig: Figure) -> list[np.ndarray]:
    return [np.asarray(artist.get_array()) for ax in fig.axes for artist in ax.get_children()
            if isinstance(artist, AxesImage)]


def test_figures_are_detached_from_pyplot():
    before = plt.get_fignums()
    fig = plot_bars({"a": 1.0}, ylabel="y")
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == before


def test_distributions_draw_one_bar_per_category_and_distribution():
    logits = torch.tensor([3.0, 1.0, 0.0, -1.0])
    by_hand = {}
    for temperature in (1.0, 4.0):
        weights = [np.exp(v / temperature) for v in logits.tolist()]
        by_hand[f"T = {temperature:g}"] = [w / sum(weights) for w in weights]
    fig = plot_distributions(
        {name: torch.softmax(logits / t, dim=0) for name, t in (("T = 1", 1.0), ("T = 4", 4.0))},
        category_names=["a", "b", "c", "d"],
    )
    ax = fig.axes[0]
    heights = bar_heights(ax)
    assert len(heights) == 8
    np.testing.assert_allclose(heights[:4], by_hand["T = 1"], rtol=1e-6)
    np.testing.assert_allclose(heights[4:], by_hand["T = 4"], rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["T = 1", "T = 4"]


@pytest.mark.parametrize(
    "distributions, names, message",
    [
        ({}, None, "empty"),
        ({"a": [0.5, 0.5], "b": [1.0, 0.0, 0.0]}, None, "same length"),
        ({"a": [0.5, 0.5]}, ["x"], "category names"),
        ({"a": [[0.5, 0.5]]}, None, "1-D"),
        ({"a": [float("nan"), 1.0]}, None, "NaN"),
    ],
)
def test_distributions_reject_bad_input(distributions, names, message):
    with pytest.raises(ValueError, match=message):
        plot_distributions(distributions, category_names=names)


def test_bars_are_means_with_one_dot_per_seed_and_labelled_values():
    fig = plot_bars({"teacher": [90.0, 92.0, 94.0], "student": 85.25}, ylabel="accuracy (%)")
    ax = fig.axes[0]
    assert bar_heights(ax) == pytest.approx([92.0, 85.25])
    dots = [c.get_offsets() for c in ax.collections]
    assert len(dots) == 1 and np.asarray(dots[0])[:, 1].tolist() == [90.0, 92.0, 94.0]
    assert [t.get_text() for t in ax.texts] == ["92.0", "85.2"]
    assert ax.get_ylabel() == "accuracy (%)"


def test_bars_reject_empty_and_non_numeric_values():
    with pytest.raises(ValueError, match="empty"):
        plot_bars({}, ylabel="y")
    with pytest.raises(TypeError, match="numeric"):
        plot_bars({"a": "high"}, ylabel="y")
    with pytest.raises(ValueError, match="non-empty"):
        plot_bars({"a": []}, ylabel="y")


def test_image_grid_shows_every_image_rescaled_with_labels():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1.0, 1.0, size=(2, 3, 1, 5, 5))
    fig = plot_image_grid(images, row_labels=["r0", "r1"], col_labels=["c0", "c1", "c2"], value_range=(-1.0, 1.0))
    shown = images_of(fig)
    assert len(shown) == 6
    np.testing.assert_allclose(shown[4], (images[1, 1, 0] + 1.0) / 2.0)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["c0", "c1", "c2"]
    assert fig.axes[3].get_ylabel() == "r1"


def test_image_grid_shows_rgb_images_channels_last_and_clips():
    images = np.zeros((1, 1, 3, 4, 4))
    images[0, 0, 0] = 2.0  # red channel above the range: clipped to 1
    shown = images_of(plot_image_grid(images))[0]
    assert shown.shape == (4, 4, 3)
    assert shown[..., 0].max() == 1.0 and shown[..., 1:].max() == 0.0


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [
        ((2, 1, 5, 5), {}, "rows, cols, channels"),
        ((1, 2, 2, 5, 5), {}, "1 or 3 channels"),
        ((1, 2, 1, 5, 5), {"row_labels": ["a", "b"]}, "row labels"),
        ((1, 2, 1, 5, 5), {"col_labels": ["a"]}, "column labels"),
        ((1, 2, 1, 5, 5), {"value_range": (1.0, 0.0)}, "high > low"),
    ],
)
def test_image_grid_rejects_bad_input(shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_image_grid(np.zeros(shape), **kwargs)


def test_heatmaps_share_one_colour_scale_over_all_matrices():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    b = np.array([[-1.0, 0.5], [0.5, 5.0]])
    fig = plot_heatmaps({"A": a, "B": torch.tensor(b)}, xlabel="teacher j", ylabel="student i", annotate=True)
    shown = images_of(fig)
    np.testing.assert_array_equal(shown[0], a)
    np.testing.assert_array_equal(shown[1], b)
    for ax in fig.axes[:2]:
        image = next(c for c in ax.get_children() if isinstance(c, AxesImage))
        assert image.get_clim() == (-1.0, 5.0)
    assert [fig.axes[0].get_title(), fig.axes[1].get_title()] == ["A", "B"]
    assert len(fig.axes[0].texts) == 4 and fig.axes[0].texts[3].get_text() == "3.00"


def test_heatmaps_label_both_axes_with_the_tick_labels():
    names = ["T-shirt/top", "Trouser", "Pullover"]
    fig = plot_heatmaps({"A": np.eye(3), "B": np.ones((3, 3))}, tick_labels=names)
    for ax in fig.axes[:2]:
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        assert [t.get_text() for t in ax.get_yticklabels()] == names
        assert list(ax.get_xticks()) == [0, 1, 2] and list(ax.get_yticks()) == [0, 1, 2]
        assert all(t.get_rotation() == 45 and t.get_fontsize() <= 8 for t in ax.get_xticklabels())
        assert all(t.get_rotation() == 0 and t.get_fontsize() <= 8 for t in ax.get_yticklabels())
    plain = plot_heatmaps({"A": np.eye(3)})
    assert names[0] not in {t.get_text() for t in plain.axes[0].get_xticklabels()}
    with pytest.raises(ValueError, match=r"tick_labels has 3 labels but matrices\['B'\] is 4 x 4"):
        plot_heatmaps({"A": np.eye(3), "B": np.eye(4)}, tick_labels=names)
    with pytest.raises(ValueError, match="3 labels but .* is 3 x 2"):
        plot_heatmaps({"A": np.ones((3, 2))}, tick_labels=names)

def test_heatmaps_reject_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        plot_heatmaps({"v": np.zeros(3)})
    with pytest.raises(ValueError, match="empty"):
        plot_heatmaps({})


def test_curves_plot_each_series_over_x_with_log_axes():
    x = np.array([1e3, 1e4, 1e5])
    fig = plot_curves(x, {"linear": 2 * x, "flat": np.ones(3)}, xlabel="N", ylabel="bytes", logx=True, logy=True)
    ax = fig.axes[0]
    lines = ax.get_lines()
    np.testing.assert_array_equal(lines[0].get_ydata(), 2 * x)
    np.testing.assert_array_equal(lines[1].get_xdata(), x)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["linear", "flat"]


def test_curves_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="shape"):
        plot_curves([1, 2, 3], {"a": [1, 2]}, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="empty"):
        plot_curves([1, 2, 3], {}, xlabel="x", ylabel="y")


def test_learning_curves_draw_the_mean_and_the_range_of_each_name():
    runs = np.array([[50.0, 60.0, 70.0], [54.0, 62.0, 74.0]])
    fig = plot_learning_curves({"student": runs, "teacher": [40.0, 80.0]}, title="curves")
    ax = fig.axes[0]
    lines = ax.get_lines()
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines[0].get_ydata(), [52.0, 61.0, 72.0])
    np.testing.assert_array_equal(lines[1].get_xdata(), [1, 2])
    np.testing.assert_array_equal(lines[1].get_ydata(), [40.0, 80.0])
    bands = ax.collections
    assert len(bands) == 1  # one band: a single run has no range
    vertices = bands[0].get_paths()[0].vertices
    assert vertices[:, 1].min() == 50.0 and vertices[:, 1].max() == 74.0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["student (2 runs)", "teacher (1 run)"]
    assert ax.get_xlabel() == "epoch" and ax.get_title() == "curves"


def test_learning_curves_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves({})
    with pytest.raises(ValueError, match="runs, epochs"):
        plot_learning_curves({"a": np.zeros((2, 2, 2))})
    with pytest.raises(ValueError, match="NaN"):
        plot_learning_curves({"a": [1.0, float("nan")]})


def test_causal_graph_draws_every_node_and_edge():
    nodes = {"S": (0, 0), "X": (1, 0), "C": (2, 0), "Y": (3, 0)}
    edges = [("S", "X"), ("C", "X"), ("C", "Y")]
    fig = plot_causal_graph(nodes, edges, observed=["X", "Y"], notes={"S": "style"})
    ax = fig.axes[0]
    gids = [patch.get_gid() for patch in ax.patches]
    assert sorted(g for g in gids if g.startswith("node:")) == ["node:C", "node:S", "node:X", "node:Y"]
    assert sorted(g for g in gids if g.startswith("edge:")) == ["edge:C->X", "edge:C->Y", "edge:S->X"]
    patches = {patch.get_gid(): patch for patch in ax.patches}
    assert patches["node:X"].get_linestyle() == "-" and patches["node:S"].get_linestyle() == "--"
    assert patches["node:X"].get_facecolor() != patches["node:S"].get_facecolor()
    texts = [t.get_text() for t in ax.texts]
    assert {"S", "X", "C", "Y", "style"} <= set(texts)
    assert any("latent" in text for text in texts)
    arrow = patches["edge:C->X"]
    (start, end) = arrow._posA_posB
    assert tuple(start) == (2.0, 0.0) and tuple(end) == (1.0, 0.0)  # drawn from cause to effect


def test_causal_graph_rejects_unknown_nodes_and_self_loops():
    with pytest.raises(ValueError, match="do not exist"):
        plot_causal_graph({"A": (0, 0)}, [("A", "B")])
    with pytest.raises(ValueError, match="do not exist"):
        plot_causal_graph({"A": (0, 0)}, [], observed=["B"])
    with pytest.raises(ValueError, match="two different nodes"):
        plot_causal_graph({"A": (0, 0)}, [("A", "A")])
    with pytest.raises(ValueError, match="empty"):
        plot_causal_graph({}, [])


def test_icd_diagram_draws_the_given_matrices_and_both_terms():
    n = 5
    rng = np.random.default_rng(0)
    similarity = rng.uniform(-1, 1, size=(n, n))
    logits = 4.0 * similarity
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    q = (np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)).T
    fig = plot_icd_diagram(similarity, torch.tensor(p), q)
    shown = images_of(fig)
    assert len(shown) == 3
    np.testing.assert_allclose(shown[0], similarity)
    np.testing.assert_allclose(shown[1], p)
    np.testing.assert_allclose(shown[2], q)
    ax = fig.axes[0]
    gids = [patch.get_gid() for patch in ax.patches if patch.get_gid()]
    assert {"box:teacher", "box:student", "box:head_t", "box:head_s"} <= set(gids)
    assert sum(g.startswith("diagonal:") for g in gids) == n  # the diagonal the contrastive term reads
    text = " ".join(t.get_text() for t in ax.texts)
    for needle in ("teacher", "student", "head", "contrastive term", "invariance term", "KL", "softmax of each row",
                   "softmax of each", "column"):
        assert needle in text, needle


def test_icd_diagram_rejects_mismatched_matrices():
    with pytest.raises(ValueError, match="square"):
        plot_icd_diagram(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="square"):
        plot_icd_diagram(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)))
