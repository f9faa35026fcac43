"""Layers that change how a conv is parameterised; each one can ``fold()`` into a plain conv."""
from .dirac import DiracConv1d, DiracConv2d, DiracConv3d, dirac_kernel

__all__ = ["DiracConv1d", "DiracConv2d", "DiracConv3d", "dirac_kernel"]
