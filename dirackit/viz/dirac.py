"""What a DiracNet learns: how far each layer moves from the identity, and why plain nets cannot train.

A Dirac conv computes ``alpha * x + beta * conv(x, W / ||W||)`` per output channel, so the ratio
|alpha|/|beta| says how identity-like a layer is; these plots show it across depth, across
channels, across training epochs, and in the folded kernels themselves.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from ..layers import DiracConv2d
from ..runlog import RunLog
from .figure import NotebookFigure, legend_outside, log_scale

__all__ = ["plot_dirac_params", "dirac_heatmap", "plot_dirac_evolution", "plot_folded_filters",
           "plot_signal_profile"]

_LABELS = {"dirac_alpha": "mean alpha", "dirac_beta": "mean beta", "dirac_ratio": "median |alpha| / |beta|"}


def _dirac_layers(model: nn.Module) -> list[DiracConv2d]:
    """The model's Dirac convs in registration (= depth) order; a clear error when there are none."""
    layers = [m for m in model.modules() if isinstance(m, DiracConv2d)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Dirac convs: only DiracNets (diracnet-d-k) have "
                         "alpha/beta; plain-d-k, wrn-d-k and preresnet-d use ordinary convs")
    return layers


@torch.no_grad()
def plot_dirac_params(model: nn.Module, initial: nn.Module | None = None, fig: Figure | None = None) -> Figure:
    """alpha, beta (per-layer mean, min-max band over channels) and median |alpha|/|beta| against depth.

    ``initial``: the same network before training, drawn dotted grey ("at initialisation") so that what
    training changed stands out from the initial values. Dashed lines mark group boundaries, where the
    width changes.
    """
    layers = _dirac_layers(model)
    start = None if initial is None else _dirac_layers(initial)
    if start is not None and len(start) != len(layers):
        raise ValueError(f"initial has {len(start)} Dirac convs and model {len(layers)}: not the same network")
    depth = np.arange(1, len(layers) + 1)
    fig = fig or NotebookFigure(figsize=(12, 3.6))
    fig.clear()
    ax_alpha, ax_beta, ax_ratio = fig.subplots(1, 3)
    for ax, name in ((ax_alpha, "alpha"), (ax_beta, "beta")):
        params = [getattr(m, name) for m in layers]
        ax.plot(depth, [p.mean().item() for p in params], color="C0", label="mean over channels")
        ax.fill_between(depth, [p.min().item() for p in params], [p.max().item() for p in params],
                        color="C0", alpha=0.25, label="min-max over channels")
        if start is not None:
            ax.plot(depth, [getattr(m, name).mean().item() for m in start], ":", color="0.4",
                    label="at initialisation")
        ax.set(xlabel="layer depth", ylabel=name, title=name)
    ratio_of = lambda ms: [(m.alpha.abs() / m.beta.abs().clamp_min(1e-12)).median().item() for m in ms]
    ax_ratio.plot(depth, ratio_of(layers), color="C1")
    if start is not None:  # dotted grey, as "at initialisation" in the legend
        ax_ratio.plot(depth, ratio_of(start), ":", color="0.4")
    ax_ratio.set(xlabel="layer depth", title="how identity-like each layer stays")
    log_scale(ax_ratio, "y", "median |alpha| / |beta|")
    for d, (before, after) in enumerate(zip(layers, layers[1:]), start=1):
        if after.out_channels != before.out_channels:
            for ax in (ax_alpha, ax_beta, ax_ratio):
                ax.axvline(d + 0.5, color="0.5", linestyle="--", linewidth=1)
    legend_outside(fig, ax_alpha, where="below")
    return fig


@torch.no_grad()
def dirac_heatmap(model: nn.Module, fig: Figure | None = None) -> Figure:
    """alpha and beta of every channel (y) of every Dirac conv (x); blank where a layer is narrower."""
    layers = _dirac_layers(model)
    width = max(m.out_channels for m in layers)
    fig = fig or NotebookFigure(figsize=(12, 4))
    fig.clear()
    for ax, name in zip(fig.subplots(1, 2), ("alpha", "beta")):
        grid = np.full((width, len(layers)), np.nan)
        for d, m in enumerate(layers):
            grid[:m.out_channels, d] = getattr(m, name).float().cpu().numpy()
        image = ax.imshow(grid, aspect="auto", origin="lower", interpolation="nearest",
                          extent=(0.5, len(layers) + 0.5, -0.5, width - 0.5))
        fig.colorbar(image, ax=ax, label=f"{name} (per channel, no unit)")
        ax.set(xlabel="layer depth", ylabel="output channel", title=name)
    fig.tight_layout()
    return fig


def plot_dirac_evolution(frame: RunLog | "object", key: str = "dirac_ratio", fig: Figure | None = None) -> Figure:
    """A logged per-layer value (``dirac_alpha``, ``dirac_beta`` or ``dirac_ratio``) against epoch,
    one line per layer, coloured by depth: which layers leave the identity, and when."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    if isinstance(frame, RunLog):
        frame = frame.frame()
    if key not in frame:
        raise ValueError(f"the run log has no column {key!r}: it is not from a DiracNet (only DiracNet "
                         "logs dirac_alpha, dirac_beta and dirac_ratio)")
    if "run" in frame and frame["run"].nunique() > 1:
        raise ValueError("the frame holds several runs; select one, e.g. frame[frame.run == name]")
    values = np.array(frame[key].tolist(), dtype=float)
    norm, cmap = Normalize(1, values.shape[1]), colormaps["viridis"]
    fig = fig or NotebookFigure(figsize=(7, 4))
    fig.clear()
    ax = fig.subplots()
    for d in range(values.shape[1]):
        ax.plot(frame["epoch"], values[:, d], color=cmap(norm(d + 1)), linewidth=1)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="layer depth (conv index, input to output)")
    ax.set(xlabel="epoch", ylabel=_LABELS.get(key, key))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if key == "dirac_ratio":
        log_scale(ax, "y")
    fig.tight_layout()
    return fig


@torch.no_grad()
def plot_folded_filters(conv: nn.Conv2d | torch.Tensor, max_channels: int = 16, fig: Figure | None = None) -> Figure:
    """The kernels of a (folded) conv as an outputs x inputs mosaic, and the centre tap as a matrix.

    A trained Dirac layer folds into a plain conv whose centre taps carry a strong diagonal (the
    alpha * identity term) over small mixed filters; a plain conv shows no such structure.
    """
    if isinstance(conv, DiracConv2d):
        weight = conv.effective_weight()
    elif isinstance(conv, nn.Conv2d):
        weight = conv.weight
    elif isinstance(conv, torch.Tensor):
        weight = conv
    else:
        raise TypeError(f"expected an nn.Conv2d or a weight tensor, got {type(conv).__name__}")
    if weight.dim() != 4:
        raise ValueError(f"expected a 4-D conv weight (out, in, kh, kw), got shape {tuple(weight.shape)}")
    weight = weight.detach().float().cpu()
    out, inp, kh, kw = weight.shape
    shown = weight[:max_channels, :max_channels]
    mosaic = np.full((shown.shape[0] * (kh + 1) - 1, shown.shape[1] * (kw + 1) - 1), np.nan)
    for o in range(shown.shape[0]):
        for i in range(shown.shape[1]):
            mosaic[o * (kh + 1):o * (kh + 1) + kh, i * (kw + 1):i * (kw + 1) + kw] = shown[o, i].numpy()
    centre = weight[:, :, kh // 2, kw // 2]
    diagonal = torch.eye(out, inp, dtype=torch.bool)
    fig = fig or NotebookFigure(figsize=(11, 5))
    fig.clear()
    ax_mosaic, ax_centre = fig.subplots(1, 2)
    for ax, data, title in ((ax_mosaic, mosaic, f"{kh}x{kw} kernels, first {shown.shape[0]} outputs x "
                                                f"{shown.shape[1]} inputs"),
                            (ax_centre, centre.numpy(), "centre tap")):
        limit = float(np.nanmax(np.abs(data))) or 1.0
        image = ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        fig.colorbar(image, ax=ax, label="weight (red > 0 > blue)")
        ax.set(xlabel="input channel", ylabel="output channel", title=title)
    ax_mosaic.set(xticks=[], yticks=[])
    off = centre[~diagonal].abs().mean().item() if (~diagonal).any() else float("nan")
    fig.suptitle(f"centre tap: mean |diagonal| {centre[diagonal].abs().mean().item():.3g} "
                 f"vs mean |off-diagonal| {off:.3g}")
    fig.tight_layout()
    return fig


def plot_signal_profile(profiles: dict[str, "object"], fig: Figure | None = None) -> Figure:
    """Activation and gradient RMS against depth (``dirackit.diagnostics.signal_profile`` frames),
    one line per label: a flat gradient trains, a geometric one does not."""
    fig = fig or NotebookFigure(figsize=(10, 3.6))
    fig.clear()
    ax_act, ax_grad = fig.subplots(1, 2)
    for label, profile in profiles.items():
        ax_act.plot(profile["depth"], profile["activation_rms"], label=label)
        ax_grad.plot(profile["depth"], profile["grad_rms"], label=label)
    ax_act.set(xlabel="conv depth", title="activations (forward)")
    ax_grad.set(xlabel="conv depth", title="loss gradients (backward)")
    for ax in (ax_act, ax_grad):
        log_scale(ax, "y", "RMS")
    legend_outside(fig, ax_grad, where="below")
    return fig
