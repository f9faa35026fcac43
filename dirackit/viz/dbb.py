"""What the branches of a Diverse Branch Block learned, and that the deployed conv is the same function.

Every branch of a DBB is, in eval mode, a KxK conv (``branch_kernels()``); the folded conv is their
sum. The plots show those kernels side by side, each branch's share of the sum per layer (from a
model or, over training, from the run log a ``-dbb`` network writes), where the folded kernels put
their weight in the window against a plainly trained net, and the outputs of the training-time
block against the deployed conv.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..diagnostics import kernel_skeleton
from ..layers import DiverseBranchBlock, OnlineDiverseBranchBlock
from ..models.dbb_nets import BranchStats
from ..runlog import RunLog
from .figure import NotebookFigure, legend_outside

__all__ = ["plot_branch_kernels", "plot_branch_shares", "plot_share_history", "plot_kernel_skeleton",
           "plot_deploy_agreement"]

BRANCH_LABELS = {"kxk": "KxK", "1x1": "1x1", "1x1-avg": "1x1-AVG", "1x1-kxk": "1x1-KxK"}


@torch.no_grad()
def plot_branch_kernels(block: DiverseBranchBlock | OnlineDiverseBranchBlock, filters: int = 4,
                        fig: Figure | None = None) -> Figure:
    """Each branch's equivalent KxK kernel and their sum, the folded kernel, for the first
    ``filters`` output channels (each on the input channel where its folded kernel is largest).

    One colour scale per row, centred on 0, with its bar: a kernel weight is what one unit of the
    block's input at that tap adds to the output (BN scales folded in), so the branches of one
    filter compare directly.
    """
    if not isinstance(block, (DiverseBranchBlock, OnlineDiverseBranchBlock)):
        raise TypeError(f"expected a DiverseBranchBlock or OnlineDiverseBranchBlock (e.g. "
                        f"model.dbb_blocks()[0][1]), got {type(block).__name__}")
    kernels = {BRANCH_LABELS[n]: w.float().cpu() for n, (w, _) in block.branch_kernels().items()}
    kernels["sum = folded"] = sum(kernels.values())
    folded = kernels["sum = folded"]
    rows = min(filters, folded.shape[0])
    fig = fig or NotebookFigure(figsize=(1.9 * len(kernels) + 1.6, 1.9 * rows + 0.6))
    fig.clear()
    fig.set_layout_engine("constrained")  # room for one colour bar per row
    axes = np.atleast_2d(fig.subplots(rows, len(kernels), squeeze=False))
    for row in range(rows):
        source = int(folded[row].flatten(1).norm(dim=1).argmax())
        limit = max(k[row, source].abs().max().item() for k in kernels.values()) or 1.0
        for ax, (title, kernel) in zip(axes[row], kernels.items()):
            image = ax.imshow(kernel[row, source].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit,
                              interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(f"out {row}, in {source}", fontsize=8)
        bar = fig.colorbar(image, ax=axes[row].tolist(), fraction=0.04)
        bar.set_label("weight (output per\nunit input)", fontsize=8)
    fig.suptitle("branch kernels of one block (eval mode); red > 0 > blue")
    return fig


def _share_columns(frame) -> dict[str, str]:
    columns = {label: f"dbb_share_{name.replace('-', '_')}" for name, label in BRANCH_LABELS.items()}
    if any(c not in frame for c in columns.values()):
        raise ValueError("the run log has no dbb_share_* columns: it is not from a -dbb or -odbb network "
                         "(their log_state() writes each branch's share every epoch)")
    return columns


def plot_branch_shares(source: BranchStats | RunLog | Mapping[str, list[float]], fig: Figure | None = None) -> Figure:
    """Each branch's share of every layer's folded kernel (``branch_shares``), stacked, per layer.

    ``source``: a branched model, a run log (its last epoch), or a ``log_state()`` dict.
    """
    if isinstance(source, BranchStats):
        state = source.log_state()
    elif isinstance(source, RunLog):
        frame = source.frame()
        state = {column: frame[column].iloc[-1] for column in _share_columns(frame).values()}
    else:
        state = dict(source)
    if not state:
        raise ValueError("no branched layers: this is a plain network (build e.g. vgg16-dbb)")
    columns = {label: f"dbb_share_{name.replace('-', '_')}" for name, label in BRANCH_LABELS.items()}
    layers = len(state[columns["KxK"]])
    fig = fig or NotebookFigure(figsize=(max(5.0, 0.45 * layers + 3.5), 3.6))
    fig.clear()
    ax = fig.subplots()
    bottom = np.zeros(layers)
    for i, (label, column) in enumerate(columns.items()):
        share = np.asarray(state[column], dtype=float)
        ax.bar(np.arange(1, layers + 1), share, bottom=bottom, color=f"C{i}", label=label)
        bottom += share
    ax.set(xlabel="branched layer (input to output)", ylabel="share of the folded kernel's norm", ylim=(0, 1),
           title="what each branch contributes")
    ax.set_xticks(range(1, layers + 1))
    legend_outside(fig, ax)
    return fig


def plot_share_history(run: RunLog | "object", fig: Figure | None = None) -> Figure:
    """Each branch's share, averaged over the layers, against epoch (from the run log)."""
    frame = run.frame() if isinstance(run, RunLog) else run
    fig = fig or NotebookFigure(figsize=(6, 3.6))
    fig.clear()
    ax = fig.subplots()
    for i, (label, column) in enumerate(_share_columns(frame).items()):
        ax.plot(frame["epoch"], [np.mean(v) for v in frame[column]], marker="o", color=f"C{i}", label=label)
    ax.set(xlabel="epoch", ylabel="mean share over layers", title="branch shares during training")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_outside(fig, ax)
    return fig


def plot_kernel_skeleton(models: Mapping[str, torch.nn.Module], kernel_size: int = 3,
                         fig: Figure | None = None) -> Figure:
    """The kernel skeleton of each model (``diagnostics.kernel_skeleton``): mean |weight| per
    window position of its folded KxK convs, each layer normalised to a maximum of 1, averaged."""
    skeletons = {name: kernel_skeleton(model, kernel_size).mean(0) for name, model in models.items()}
    fig = fig or NotebookFigure(figsize=(3.2 * len(skeletons) + 0.8, 3.3))
    fig.clear()
    axes = np.atleast_1d(fig.subplots(1, len(skeletons)))
    for ax, (name, skeleton) in zip(axes, skeletons.items()):
        image = ax.imshow(skeleton.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        for (r, c), value in np.ndenumerate(skeleton.numpy()):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8, color="w" if value < 0.6 else "k")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(name, fontsize=10)
    fig.colorbar(image, ax=list(axes), fraction=0.046, label="mean |w| as a fraction of its layer's max")
    fig.suptitle("kernel skeleton of the folded convs")
    return fig


def plot_deploy_agreement(reference: torch.Tensor, deployed: torch.Tensor, fig: Figure | None = None) -> Figure:
    """Outputs of the training-time model (eval mode) against the deployed one: every point on the
    identity line, with the largest deviation in the title."""
    reference, deployed = reference.detach().float().cpu().flatten(), deployed.detach().float().cpu().flatten()
    if reference.shape != deployed.shape:
        raise ValueError(f"the two outputs differ in size: {reference.numel()} against {deployed.numel()} values")
    error = ((deployed - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()
    fig = fig or NotebookFigure(figsize=(4.2, 4.2))
    fig.clear()
    ax = fig.subplots()
    ax.scatter(reference.numpy(), deployed.numpy(), s=4, alpha=0.5)
    low, high = min(reference.min(), deployed.min()).item(), max(reference.max(), deployed.max()).item()
    ax.plot([low, high], [low, high], color="k", linewidth=1, linestyle="--", label="identity")
    ax.set(xlabel="training-time model (eval mode)", ylabel="deployed (folded) model",
           title=f"max|Δ| / max|ref| = {error:.1e}")
    legend_outside(fig, ax, where="below")
    return fig
