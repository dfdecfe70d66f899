"""Explorers: one figure redrawn as the reader moves one slider.

``explore(draw, values, name)`` returns an object that a notebook shows twice over: in Jupyter
or Colab as a live ipywidgets slider that calls ``draw`` again, and in the static book as
pre-computed frames behind a slider (matplotlib's ``to_jshtml``), which needs no kernel. Both
are in one output; the book's ``_config.yml`` renders the frames and drops the widget view.
"""
from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure
from scipy import stats

from icd_lib.plots.figures import _to_numpy
from icd_lib.plots.style import (DPI, FIGURE_WIDTH, METHOD_COLOURS, MIN_FONT_PT, OTHER_COLOURS, css_size,
                                 figure_png, measure, series_colours, smallest_text_pt)

# Frames as SVG with text kept as text: a fraction of the size of PNG frames, and sharp.
FRAME_RC = {"animation.frame_format": "svg", "svg.fonttype": "none"}
SVG_PX_PER_INCH = 96  # an SVG frame's size is in points, which a browser shows at 96 px per inch
EXTERNAL_STYLESHEET = re.compile(r"<link[^>]+href=\"https?://[^\"]+\"[^>]*>")  # to_jshtml's icon font, from a CDN


class Explorer:
    """A figure, a slider over ``values`` and the function ``draw(fig, value)`` that redraws it."""

    def __init__(self, draw: Callable[[Figure, object], None], values: Sequence, name: str,
                 value_format: str = "{:g}", height: float = 3.0):
        if not values:
            raise ValueError("an explorer needs at least one value for its slider")
        self.draw, self.values, self.name = draw, list(values), name
        self.value_format, self.height = value_format, height

    def label(self, value) -> str:
        return f"{self.name} = {self.value_format.format(value)}"

    def render(self, fig: Figure, value) -> None:
        """Clear the figure, draw ``value`` on it and title it with the slider's setting."""
        fig.clear()
        self.draw(fig, value)
        fig.suptitle(self.label(value), fontsize=10)

    def new_figure(self) -> Figure:
        return Figure(figsize=(FIGURE_WIDTH, self.height), dpi=DPI, layout="constrained")

    def frames_html(self) -> str:
        """Every value's frame behind a slider, as self-contained HTML (no kernel, no network)."""
        fig = self.new_figure()
        self.render(fig, self.values[0])
        text_pt = smallest_text_pt(fig)
        animation = FuncAnimation(fig, lambda i: self.render(fig, self.values[i]), frames=len(self.values),
                                  repeat=False)
        with matplotlib.rc_context(FRAME_RC):
            frames = EXTERNAL_STYLESHEET.sub("", animation.to_jshtml(fps=2, default_mode="once"))
        size = measure(FIGURE_WIDTH * SVG_PX_PER_INCH, self.height * SVG_PX_PER_INCH, text_pt, SVG_PX_PER_INCH)
        first, last = (html.escape(self.label(v)) for v in (self.values[0], self.values[-1]))
        return (f'<div class="icd-explorer" data-frames="{len(self.values)}" '
                f'data-width-px="{size["width_px"]}" data-height-px="{size["height_px"]}" '
                f'data-smallest-text-px="{size["smallest_text_px"]:.2f}">'
                f"<p>Move the slider: {len(self.values)} frames, {first} to {last}.</p>{frames}</div>")

    def widget(self):
        """The live explorer: an ipywidgets slider over the values above the image it redraws."""
        import ipywidgets

        fig = self.new_figure()

        def png(value) -> bytes:
            self.render(fig, value)
            return figure_png(fig)

        first = png(self.values[0])
        image = ipywidgets.Image(value=first, format="png", width=f"{css_size(first)[0]:.0f}")
        slider = ipywidgets.SelectionSlider(
            options=[(self.value_format.format(v), v) for v in self.values], value=self.values[0],
            description=self.name, continuous_update=False, layout=ipywidgets.Layout(width="95%"))
        slider.observe(lambda change: setattr(image, "value", png(change["new"])), names="value")
        return ipywidgets.VBox([slider, image])

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/html": self.frames_html(), "text/plain": f"<explorer of {self.name}>"}
        try:
            bundle.update(self.widget()._repr_mimebundle_())
        except ImportError:  # no ipywidgets: the frames are the explorer
            pass
        bundle["text/plain"] = f"<explorer of {self.name}>"
        return bundle


def explore(draw: Callable[[Figure, object], None], values: Sequence, name: str, value_format: str = "{:g}",
            height: float = 3.0) -> Explorer:
    """An explorer of ``draw(fig, value)`` over ``values``, its slider called ``name``.

    ``draw`` gets a cleared figure ``FIGURE_WIDTH`` x ``height`` inches and one of the values, and
    adds its axes (``fig.subplots(...)``); the explorer titles each frame ``name = value``.
    """
    return Explorer(draw, values, name, value_format, height)


def soft_targets_explorer(probabilities, class_names) -> Explorer:
    """KD's temperature: the soft targets ``probabilities[T]`` (one (K,) vector per T) on a log axis,
    next to the mass on the classes other than the top one at every T (the current T marked)."""
    temperatures = sorted(probabilities)
    arrays = {t: _to_numpy(probabilities[t], f"probabilities[{t}]") for t in temperatures}
    top = int(arrays[temperatures[0]].argmax())
    others = [1 - arrays[t][top] for t in temperatures]
    colour = METHOD_COLOURS["kd"]

    def draw(fig, temperature):
        bars, mass = fig.subplots(1, 2, width_ratios=(2.2, 1))
        bars.bar(range(len(class_names)), arrays[temperature], color=colour)
        bars.step(range(len(class_names)), arrays[temperatures[0]], where="mid", color="#555555", linewidth=1,
                  label=f"T = {temperatures[0]:g}")
        bars.set_yscale("log")
        bars.set_ylim(1e-5, 1.5)
        bars.set_xticks(range(len(class_names)), class_names, rotation=40, ha="right", rotation_mode="anchor")
        bars.set_ylabel("soft target $p_k(T)$ (log axis)")
        bars.legend(loc="lower right")
        mass.plot(temperatures, others, color="#555555", marker="o", markersize=3)
        mass.plot(temperature, others[temperatures.index(temperature)], "o", color=colour, markersize=8)
        mass.set_xscale("log")
        mass.set_ylim(0, 1)
        mass.set_xlabel("temperature T")
        mass.set_ylabel(f"mass off {class_names[top]!r}")

    return explore(draw, temperatures, "T", height=3.0)


def matching_explorer(matrices, scales, terms) -> Explorer:
    """ICD's matching distributions under the logit scale: ``matrices[s] = (P, Q)`` at each scale s
    on the slider, beside one small panel per loss term, ``terms[term] = {curve: values over
    scales}`` (a curve per batch size, say), with the slider's s marked."""
    shown = sorted(matrices)
    pairs = {s: tuple(_to_numpy(m, f"matrices[{s}]") for m in matrices[s]) for s in shown}
    grid = _to_numpy(scales, "scales")
    panels = {term: {name: _to_numpy(v, f"terms[{term!r}][{name!r}]") for name, v in curves.items()}
              for term, curves in terms.items()}

    def draw(fig, scale):
        layout = fig.add_gridspec(len(panels), 3, width_ratios=(1, 1, 1.2))
        p_ax, q_ax = fig.add_subplot(layout[:, 0]), fig.add_subplot(layout[:, 1])
        for ax, matrix, name in ((p_ax, pairs[scale][0], "P (rows sum to 1)"), (q_ax, pairs[scale][1], "Q")):
            image = ax.imshow(matrix, cmap="magma", vmin=0, vmax=1)
            ax.set_title(name)
            ax.set_xlabel("j")
            ax.grid(False)
        p_ax.set_ylabel("i")
        fig.colorbar(image, ax=[p_ax, q_ax], shrink=0.8, label="probability")
        for row, (term, curves) in enumerate(panels.items()):
            ax = fig.add_subplot(layout[row, 2])
            for (name, values), colour in zip(curves.items(), series_colours(list(curves))):
                ax.plot(grid, values, color=colour, label=name)
            ax.axvline(scale, color="black", linewidth=1)
            ax.set_xscale("log")
            ax.set_ylabel(term)
            if row == 0:
                ax.legend(fontsize=MIN_FONT_PT)
        ax.set_xlabel("logit scale s")

    return explore(draw, shown, "s", height=2.9)


def style_explorer(frames, class_names, true_class: int) -> Explorer:
    """One image re-rendered under interventions on its style: ``frames[name] = (image, predictions)``
    with image (3, h, w) in [0, 1] and predictions {model: (K,) probabilities}; each model's
    probability of the true class as a bar, its predicted class written beside it."""
    names = list(frames)

    def draw(fig, name):
        image_ax, bars = fig.subplots(1, 2, width_ratios=(1, 2.2))
        image, predictions = frames[name]
        image_ax.imshow(_to_numpy(image, "image").transpose(1, 2, 0).clip(0, 1))
        image_ax.set_axis_off()
        models = list(predictions)
        rows = np.arange(len(models))[::-1]
        for row, model, colour in zip(rows, models, series_colours(models)):
            p = _to_numpy(predictions[model], f"predictions[{model!r}]")
            bars.barh(row, p[true_class], height=0.5, color=colour)
            bars.annotate(f"says {class_names[int(p.argmax())]} ({p.max():.2f})", (1.02, row),
                          xycoords=("axes fraction", "data"), va="center", fontsize=8)
        bars.set_yticks(rows, models)
        bars.set_ylim(-0.8, len(models) - 0.2)
        bars.set_xlim(0, 1)
        bars.set_xlabel(f"probability of the true class, {class_names[true_class]!r}")

    return explore(draw, names, "style", value_format="{}", height=2.6)


def resolving_power(difference: float, sd: float, seeds: int, level: float = 0.95) -> float:
    """The chance that a two-sided t interval (``seeds`` runs per method, seed sd ``sd``) excludes 0
    when the true difference of the means is ``difference``."""
    df, spread = 2 * seeds - 2, sd * math.sqrt(2 / seeds)
    critical = stats.t.ppf((1 + level) / 2, df)
    shift = difference / spread
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_explorer(sd: float, differences=(0.25, 0.5, 1.0, 2.0), seeds=tuple(range(2, 11)),
                   level: float = 0.95) -> Explorer:
    """How many seeds resolve a difference: for n seeds per method (the slider) and seed-to-seed sd
    ``sd`` (points), the expected 95% interval of each true difference, and the chance that an
    experiment's interval excludes 0, against n."""
    seeds = list(seeds)
    colours = dict(zip(differences, OTHER_COLOURS))

    def draw(fig, n):
        intervals, power = fig.subplots(1, 2)
        half = stats.t.ppf((1 + level) / 2, 2 * n - 2) * sd * math.sqrt(2 / n)
        for row, d in enumerate(differences):
            intervals.plot([d - half, d + half], [row, row], color=colours[d], linewidth=2)
            intervals.plot(d, row, "o", color=colours[d])
            power.plot(seeds, [resolving_power(d, sd, k, level) for k in seeds], color=colours[d],
                       marker="o", markersize=3, label=f"{d:g}")
        intervals.axvline(0, color="black", linewidth=0.8)
        intervals.set_yticks(range(len(differences)), [f"{d:g}" for d in differences])
        intervals.set_ylabel("true difference (points)")
        intervals.set_xlabel(f"typical {level:.0%} interval (points)")
        power.axvline(n, color="black", linewidth=1)
        power.set_ylim(0, 1)
        power.set_xlabel("seeds per method")
        power.set_ylabel("chance it excludes 0")
        power.legend(title="difference", fontsize=MIN_FONT_PT)

    return explore(draw, seeds, "seeds per method", value_format="{}", height=2.8)
