"""Plots of data, runs and models. Imports matplotlib on use, never at ``import dirackit``.

Every plot returns a ``NotebookFigure``: a bare matplotlib Figure (no pyplot state) that shows
itself as an image in a notebook.
"""
from .compare import plot_accuracy_vs_deployed_cost, plot_fold_speed
from .curves import LiveCurves, plot_curves
from .dbb import (plot_branch_kernels, plot_branch_shares, plot_deploy_agreement, plot_kernel_skeleton,
                  plot_share_history)
from .dgconv import plot_accuracy_vs_cost, plot_complexity, plot_gate_masks, plot_group_history, plot_masked_weight
from .dirac import dirac_heatmap, plot_dirac_evolution, plot_dirac_params, plot_folded_filters, plot_signal_profile
from .figure import NotebookFigure
from .images import image_grid
from .interactive import bokeh_curves, show_bokeh
from .tables import rounded
from .wrn import plot_paper_configs

__all__ = ["NotebookFigure", "LiveCurves", "plot_curves", "image_grid", "plot_dirac_params", "dirac_heatmap",
           "plot_dirac_evolution", "plot_folded_filters", "plot_signal_profile", "plot_gate_masks",
           "plot_masked_weight", "plot_group_history", "plot_complexity", "plot_accuracy_vs_cost",
           "plot_branch_kernels", "plot_branch_shares", "plot_share_history", "plot_kernel_skeleton",
           "plot_deploy_agreement", "plot_paper_configs", "bokeh_curves", "show_bokeh", "plot_fold_speed", "rounded",
           "plot_accuracy_vs_deployed_cost"]
