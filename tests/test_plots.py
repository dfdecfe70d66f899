"""The figure functions draw exactly the numbers they are given and reject malformed input."""
from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from icd_lib.plots import (  # noqa: E402
    METHOD_COLOURS,
    method_colour,
    plot_causal_graph,
    plot_curves,
    plot_distributions,
    plot_dots,
    plot_heatmaps,
    plot_icd_diagram,
    plot_image_grid,
    plot_learning_curves,
)
from icd_lib.plots.experiments import plot_differences, plot_seed_sweep  # noqa: E402
from icd_lib.plots.explorers import (  # noqa: E402
    explore,
    matching_explorer,
    resolving_power,
    seeds_explorer,
    soft_targets_explorer,
    style_explorer,
)
from icd_lib.plots.style import COLUMN_PX, DPI, figure_output  # noqa: E402

T_975_DF2 = 4.302652729911275  # the 97.5% quantile of Student's t with 2 degrees of freedom (tables)


def bar_heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def images_of(fig: Figure) -> list[np.ndarray]:
    return [np.asarray(artist.get_array()) for ax in fig.axes for artist in ax.get_children()
            if isinstance(artist, AxesImage)]


def test_figures_are_detached_from_pyplot():
    before = plt.get_fignums()
    fig = plot_dots({"a": 1.0}, value_label="y")
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


def test_dots_show_each_seed_the_mean_and_its_interval_in_method_colours():
    fig = plot_dots({"teacher": [90.0, 92.0, 94.0], "icd+kd": 85.25}, value_label="accuracy (%)")
    ax = fig.axes[0]
    dots = [np.asarray(c.get_offsets()) for c in ax.collections]
    assert len(dots) == 1 and sorted(dots[0][:, 0]) == [90.0, 92.0, 94.0]
    assert to_hex(ax.collections[0].get_facecolor()[0]) == METHOD_COLOURS["teacher"]
    lines = {to_hex(line.get_color()): line for line in ax.get_lines()}
    half = T_975_DF2 * 2.0 / np.sqrt(3)  # sd of (90, 92, 94) is 2
    interval = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
    np.testing.assert_allclose(interval[0].get_xdata(), [92.0 - half, 92.0 + half])
    means = [line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() == "|"]
    assert means == pytest.approx([92.0, 85.25])
    assert METHOD_COLOURS["icd+kd"] in lines
    assert [t.get_text() for t in ax.texts] == ["92.0", "85.2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["teacher", "icd+kd"]
    assert ax.get_xlabel().startswith("accuracy (%)")


def test_dots_reject_empty_and_non_numeric_values():
    with pytest.raises(ValueError, match="empty"):
        plot_dots({}, value_label="y")
    with pytest.raises(TypeError, match="numeric"):
        plot_dots({"a": "high"}, value_label="y")
    with pytest.raises(ValueError, match="non-empty"):
        plot_dots({"a": []}, value_label="y")


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
    b = np.array([[1.0, 0.5], [0.5, 5.0]])
    fig = plot_heatmaps({"A": a, "B": torch.tensor(b)}, xlabel="teacher j", ylabel="student i", annotate=True)
    shown = images_of(fig)
    np.testing.assert_array_equal(shown[0], a)
    np.testing.assert_array_equal(shown[1], b)
    for ax in fig.axes[:2]:
        image = next(c for c in ax.get_children() if isinstance(c, AxesImage))
        assert image.get_clim() == (0.0, 5.0)
        assert image.get_cmap().name == "viridis"
    assert [fig.axes[0].get_title(), fig.axes[1].get_title()] == ["A", "B"]
    assert len(fig.axes[0].texts) == 4 and fig.axes[0].texts[3].get_text() == "3.00"


def test_signed_heatmaps_use_a_diverging_map_centred_at_zero():
    fig = plot_heatmaps({"A": np.array([[-1.0, 0.5], [2.0, 3.0]])}, cmap="magma")
    image = next(c for c in fig.axes[0].get_children() if isinstance(c, AxesImage))
    assert image.get_clim() == (-3.0, 3.0)
    assert image.get_cmap().name == "RdBu_r"
    white = np.asarray(image.get_cmap()(0.5)[:3])
    assert np.all(white > 0.9)  # 0 is the map's pale middle


def test_heatmaps_label_both_axes_with_the_tick_labels():
    names = ["T-shirt/top", "Trouser", "Pullover"]
    fig = plot_heatmaps({"A": np.eye(3), "B": np.ones((3, 3))}, tick_labels=names)
    for k, ax in enumerate(fig.axes[:2]):
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        assert list(ax.get_xticks()) == [0, 1, 2] and list(ax.get_yticks()) == [0, 1, 2]
        assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names
    assert not any(t.get_text() for t in fig.axes[1].get_yticklabels())  # a row shares the first panel's labels
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


def test_learning_curves_are_small_multiples_of_runs_and_their_mean():
    runs = np.array([[50.0, 60.0, 70.0], [54.0, 62.0, 74.0]])
    fig = plot_learning_curves({"student": runs, "kd": [40.0, 80.0]}, title="curves")
    student, kd = fig.axes[:2]
    assert student.get_title() == "student (2 runs)" and kd.get_title() == "kd (1 run)"
    own = [line for line in student.get_lines() if to_hex(line.get_color()) == METHOD_COLOURS["student"]]
    assert sorted(tuple(line.get_ydata()) for line in own) == [(50.0, 60.0, 70.0), (52.0, 61.0, 72.0),
                                                                (54.0, 62.0, 74.0)]
    np.testing.assert_array_equal(own[0].get_xdata(), [1, 2, 3])
    grey = [line for line in student.get_lines() if line not in own]
    assert [tuple(line.get_ydata()) for line in grey] == [(40.0, 80.0)]  # the other name's mean, for reference
    assert any(to_hex(line.get_color()) == METHOD_COLOURS["kd"] for line in kd.get_lines())
    assert student.get_shared_y_axes().joined(student, kd)
    assert "curves" in fig._suptitle.get_text()


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


def test_a_method_has_one_colour_whatever_its_label_says():
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS) == 23
    for label in ("kd", "KD", "KD (mean)", "kd (n=3)", "kd (n=10)"):
        assert method_colour(label) == METHOD_COLOURS["kd"], label
    assert method_colour("plain student (mean)") == METHOD_COLOURS["student"]
    assert method_colour("ICD+KD (n=3)") == METHOD_COLOURS["icd+kd"]  # not ICD's, not KD's
    assert method_colour("dkd+ls") == METHOD_COLOURS["dkd+ls"] != method_colour("dkd")
    assert method_colour("T = 4") is None and method_colour("kdx") is None


def test_a_recipe_with_other_weights_is_a_lighter_shade_of_its_colour():
    blue = np.array(to_rgb(METHOD_COLOURS["kd"]))
    variant = np.array(to_rgb(method_colour("kd (ce=1, kd=1)")))
    mix = (variant - blue) / (1 - blue)  # the share of white in the variant, per channel
    assert np.allclose(mix, mix[0], atol=0.01) and 0.2 < mix[0] < 0.8


def test_figures_colour_each_method_the_same_in_any_order():
    forward = plot_dots({"kd": [1.0, 2.0], "crd": [1.0, 2.0]}, value_label="y")
    backward = plot_dots({"crd": [1.0, 2.0], "kd": [1.0, 2.0]}, value_label="y")
    colour = {}
    for fig in (forward, backward):
        for collection, name in zip(fig.axes[0].collections, [t.get_text() for t in fig.axes[0].get_yticklabels()]):
            colour.setdefault(name, set()).add(to_hex(collection.get_facecolor()[0]))
    assert colour == {"kd": {METHOD_COLOURS["kd"]}, "crd": {METHOD_COLOURS["crd"]}}


def test_forest_plot_clips_an_outlying_interval_and_marks_it():
    lows, highs = [-1.0, -0.5, -89.0, 0.2], [1.0, 0.6, 47.0, 1.4]
    centres = [0.0, 0.05, -21.0, 0.8]
    fig = plot_differences(["a", "b", "dkd+ls (n=3)", "icd+kd"], centres, lows, highs, xlabel="points")
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    assert -5 < left < -1.0 and 1.4 < right < 5  # the readable intervals fill the axis
    clipped = {line.get_gid() for line in ax.get_lines() if line.get_gid()}
    assert clipped == {"clipped:dkd+ls (n=3)"}
    texts = [t.get_text() for t in ax.texts]
    assert "-21.0 [-89.0, +47.0]" in texts and "+0.8 [+0.2, +1.4]" in texts
    filled = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [to_hex(line.get_markerfacecolor()) == to_hex(line.get_color()) for line in filled] == [False, False, True]


def test_sweep_with_zero_on_a_symlog_axis_keeps_zero_and_the_smallest_x_apart():
    x = [0.0, 0.1, 0.5, 1.0, 2.0, 5.0]
    fig = plot_seed_sweep(x, [[88.0, 88.2]] * 6, xlabel="alpha", logx=True, reference={"KD (mean)": 88.1})
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog"
    fig.canvas.draw()
    pixels = ax.transData.transform([(v, 0) for v in x])[:, 0]
    assert pixels[1] - pixels[0] > 20  # 0 and 0.1 are at least 20 px apart
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.1", "0.5", "1", "2", "5"]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert to_hex(dashed[0].get_color()) == METHOD_COLOURS["kd"]


def test_a_wide_image_grid_is_cut_into_stacked_blocks():
    images = np.random.default_rng(0).uniform(size=(2, 10, 1, 4, 4))
    fig = plot_image_grid(images, row_labels=["a", "b"], col_labels=[str(k) for k in range(10)])
    width, height = fig.get_size_inches()
    assert width / height <= 3.0
    shown = images_of(fig)
    assert len(shown) == 20
    assert any(np.allclose(image, images[1, 9, 0]) for image in shown)
    assert sorted(ax.get_title() for ax in fig.axes if ax.get_title()) == sorted(str(k) for k in range(10))


@pytest.mark.parametrize("make", [
    lambda: plot_dots({f"m{k}": [1.0, 2.0] for k in range(25)}, value_label="minutes"),
    lambda: plot_distributions({"T = 1": np.ones(10) / 10}, category_names=[f"class {k}" for k in range(10)]),
    lambda: plot_image_grid(np.zeros((1, 7, 3, 8, 8)), col_labels=[f"only factor {k}" for k in range(7)]),
    lambda: plot_heatmaps({f"M{k}": np.eye(10) for k in range(3)}, tick_labels=[f"c{k}" for k in range(10)]),
    lambda: plot_learning_curves({f"m{k}": np.ones((2, 5)) for k in range(5)}),
    lambda: plot_causal_graph({"A": (0, 0), "B": (4.8, 0)}, [("A", "B")], notes={"A": "a"}),
], ids=["dots", "distributions", "image-strip", "heatmaps", "learning-curves", "causal-graph"])
def test_figures_fit_the_column_with_legible_text(make):
    png, metadata = figure_output(make())
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert metadata["width"] == round(width / 2) <= COLUMN_PX  # a 2x PNG, shown at its own size
    assert width / height <= 3.0
    smallest = min(t.get_fontsize() for t in make().findobj(Text) if t.get_visible() and t.get_text().strip())
    assert smallest * DPI / 72 >= 9.0
    assert metadata["icd_lib"]["smallest_text_px"] == pytest.approx(smallest * DPI / 72)


def test_resolving_power_matches_simulated_experiments():
    rng = np.random.default_rng(0)
    sd, seeds, difference = 0.4, 5, 0.5
    a = rng.normal(difference, sd, size=(20000, seeds))
    b = rng.normal(0.0, sd, size=(20000, seeds))
    from scipy.stats import ttest_ind
    simulated = (ttest_ind(a, b, axis=1).pvalue < 0.05).mean()
    assert resolving_power(difference, sd, seeds) == pytest.approx(simulated, abs=0.015)
    assert resolving_power(0.0, sd, seeds) == pytest.approx(0.05, abs=1e-9)  # no difference: the test's level


def test_an_explorer_holds_one_frame_per_value_and_a_live_widget():
    drawn = []

    def draw(fig, value):
        drawn.append(value)
        fig.subplots().plot([0, 1], [0, value])

    explorer = explore(draw, [1, 2, 3], "k")
    bundle = explorer._repr_mimebundle_()
    page = bundle["text/html"]
    assert len(set(re.findall(r"frames\[(\d+)\]", page))) == 3
    assert 'class="anim-slider"' in page and "https://" not in page  # no resource from the network
    frame = re.search(r'frames\[0\] = "data:image/svg\+xml;base64,([^"]+)"', page).group(1).replace("\\\n", "")
    width_pt = float(re.search(rb'<svg[^>]*width="([\d.]+)pt"', base64.b64decode(frame)).group(1))
    assert float(re.search(r'data-width-px="(\d+)"', page).group(1)) == pytest.approx(width_pt * 96 / 72, abs=1)
    text_px = float(re.search(r'data-smallest-text-px="(\d+\.\d+)"', page).group(1))
    fig = explorer.new_figure()
    explorer.render(fig, 1)
    smallest_pt = min(t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())
    assert text_px == pytest.approx(smallest_pt * 96 / 72, abs=0.01)  # the frame's points as the browser shows them
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert {1, 2, 3} <= set(drawn)
    slider, image = explorer.widget().children
    first = image.value
    slider.value = 3  # what a reader's move does: the live figure is redrawn for the new value
    assert image.value != first and drawn[-1] == 3
    with pytest.raises(ValueError, match="at least one value"):
        explore(draw, [], "k")


def test_seeds_explorer_draws_the_expected_interval_of_each_difference():
    explorer = seeds_explorer(0.4, differences=(0.5, 2.0), seeds=(2, 5))
    fig = explorer.new_figure()
    explorer.render(fig, 5)
    intervals = fig.axes[0]
    half = 2.306004135 * 0.4 * np.sqrt(2 / 5)  # t(0.975, 8 degrees of freedom), from tables
    spans = [line.get_xdata() for line in intervals.get_lines() if len(line.get_xdata()) == 2]
    np.testing.assert_allclose(spans[0], [0.5 - half, 0.5 + half], rtol=1e-6)
    assert fig._suptitle.get_text() == "seeds per method = 5"


def test_soft_targets_explorer_shows_the_mass_off_the_top_class_at_every_temperature():
    logits = np.array([4.0, 1.0, 0.0])
    soft = {t: np.exp(logits / t) / np.exp(logits / t).sum() for t in (1.0, 4.0)}
    explorer = soft_targets_explorer(soft, ["a", "b", "c"])
    fig = explorer.new_figure()
    explorer.render(fig, 4.0)
    bars, mass = fig.axes[:2]
    np.testing.assert_allclose([p.get_height() for p in bars.patches], soft[4.0])
    curve = mass.get_lines()[0]
    np.testing.assert_allclose(curve.get_ydata(), [1 - soft[1.0][0], 1 - soft[4.0][0]])
    assert bars.get_yscale() == "log"


def test_matching_explorer_draws_the_slider_scales_matrices_and_marks_the_scale():
    p, q = np.full((3, 3), 1 / 3), np.eye(3)
    explorer = matching_explorer({2.0: (p, q), 5.0: (q, p)}, [1.0, 10.0],
                                 {"contrast": {"n = 3": [1.0, 0.5]}, "invariance": {"n = 3": [0.0, 0.1]}})
    assert explorer.values == [2.0, 5.0]
    fig = explorer.new_figure()
    explorer.render(fig, 5.0)
    shown = images_of(fig)
    np.testing.assert_array_equal(shown[0], q)
    np.testing.assert_array_equal(shown[1], p)
    term_axes = [ax for ax in fig.axes if ax.get_ylabel() in ("contrast", "invariance")]
    assert len(term_axes) == 2
    assert all(any(list(line.get_xdata()) == [5.0, 5.0] for line in ax.get_lines()) for ax in term_axes)


def test_style_explorer_shows_each_models_probability_of_the_true_class_and_its_guess():
    image = np.zeros((3, 4, 4))
    frames = {"as stored": (image, {"teacher": [0.7, 0.2, 0.1], "icd student": [0.1, 0.3, 0.6]})}
    explorer = style_explorer(frames, ["coat", "shirt", "bag"], true_class=0)
    fig = explorer.new_figure()
    explorer.render(fig, "as stored")
    bars = fig.axes[1]
    assert [p.get_width() for p in bars.patches] == pytest.approx([0.7, 0.1])
    assert [to_hex(p.get_facecolor()) for p in bars.patches] == [METHOD_COLOURS["teacher"], METHOD_COLOURS["icd"]]
    assert [t.get_text() for t in bars.texts] == ["says coat (0.70)", "says bag (0.60)"]
