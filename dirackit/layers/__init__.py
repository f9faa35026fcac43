"""Layers that change how a conv is parameterised; each one can ``fold()`` into a plain conv."""
from .dgconv import ChannelPermutation, DGConv2d, gate_mask
from .dirac import DiracConv1d, DiracConv2d, DiracConv3d, dirac_kernel

__all__ = ["DiracConv1d", "DiracConv2d", "DiracConv3d", "dirac_kernel", "DGConv2d", "ChannelPermutation", "gate_mask"]
