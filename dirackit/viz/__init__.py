"""Plots of data, runs and models. Imports matplotlib on use, never at ``import dirackit``."""
from .curves import LiveCurves, plot_curves
from .dirac import dirac_heatmap, plot_dirac_evolution, plot_dirac_params, plot_folded_filters, plot_signal_profile
from .images import image_grid

__all__ = ["LiveCurves", "plot_curves", "image_grid", "plot_dirac_params", "dirac_heatmap", "plot_dirac_evolution",
           "plot_folded_filters", "plot_signal_profile"]
