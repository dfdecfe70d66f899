"""Figure functions for the book: each returns a matplotlib Figure (see ``figures``)."""
from icd_lib.plots.figures import (
    PALETTE,
    plot_bars,
    plot_causal_graph,
    plot_curves,
    plot_distributions,
    plot_heatmaps,
    plot_icd_diagram,
    plot_image_grid,
    plot_learning_curves,
)

__all__ = ["PALETTE", "plot_bars", "plot_causal_graph", "plot_curves", "plot_distributions", "plot_heatmaps",
           "plot_icd_diagram", "plot_image_grid", "plot_learning_curves"]
