"""Figure functions for the book: each returns a matplotlib Figure (``figures``; the experiment
chapters' forest plots and sweeps in ``experiments``); ``explorers`` holds the sliders.

Importing the package sets the book's style once (``style.use_book_style``): the seaborn
theme, one colour per method, and figures shown sharp with their measurements in IPython.
"""
from icd_lib.plots.figures import (
    plot_causal_graph,
    plot_curves,
    plot_distributions,
    plot_dots,
    plot_heatmaps,
    plot_icd_diagram,
    plot_image_grid,
    plot_learning_curves,
)
from icd_lib.plots.style import METHOD_COLOURS, method_colour, use_book_style

use_book_style()

__all__ = ["METHOD_COLOURS", "method_colour", "plot_causal_graph", "plot_curves", "plot_distributions",
           "plot_dots", "plot_heatmaps", "plot_icd_diagram", "plot_image_grid", "plot_learning_curves",
           "use_book_style"]
