"""Plots of data, runs and models. Imports matplotlib on use, never at ``import dirackit``."""
from .curves import LiveCurves, plot_curves
from .images import image_grid

__all__ = ["LiveCurves", "plot_curves", "image_grid"]
