"""CIFAR data: sources (archives, image folders, torchvision format, download), a decode-once uint8 cache,
deterministic subsets, and ``GpuLoader``, which keeps a split on the device and augments it there."""
from .cache import load_cifar
from .dataset import CifarData, DataError
from .loader import GpuLoader
from .sources import resolve_source

__all__ = ["CifarData", "DataError", "GpuLoader", "load_cifar", "resolve_source"]
