"""Figure functions for the book: each returns a matplotlib Figure (see ``figures``)."""
from icd_lib.plots.figures import (
    PALETTE,
    plot_bars,
    plot_curves,
    plot_distributions,
    plot_heatmaps,
    plot_image_grid,
)

__all__ = ["PALETTE", "plot_bars", "plot_curves", "plot_distributions", "plot_heatmaps", "plot_image_grid"]
