"""A grid of dataset images, a few per class, to see what the network is asked to learn."""
from __future__ import annotations

import torch
from matplotlib.figure import Figure

from .figure import NotebookFigure

__all__ = ["image_grid"]


def image_grid(images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], per_class: int = 8) -> Figure:
    """The first ``per_class`` images of every class (uint8, N x 32 x 32 x 3), one row per class."""
    fig = NotebookFigure(figsize=(per_class * 0.8, len(classes) * 0.85))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for c, name in enumerate(classes):
        picks = torch.nonzero(labels == c).flatten()[:per_class]
        for j, ax in enumerate(axes[c]):
            ax.set_axis_off()
            if j < len(picks):
                ax.imshow(images[picks[j]].numpy())
        axes[c][0].text(-4, 16, name, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(left=0.15, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig
