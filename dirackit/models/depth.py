"""The depth rules of the CIFAR families: a depth names how many blocks each of the three stages holds.

A basic-block net (WRN, DiracNet, plain) has depth 6n+4: three stages of n blocks of two 3x3 convs,
plus four layers outside the blocks as Zagoruyko & Komodakis count them (WRN-28-10: n = 4). A
bottleneck net (pre-activation ResNet, ResNeXt) has depth 9n+2: three stages of n blocks of three
convs, plus the stem conv and the classifier (ResNeXt-29: n = 3; pre-activation ResNet-164: n = 18).
"""
from __future__ import annotations

__all__ = ["basic_blocks", "bottleneck_blocks"]


def basic_blocks(depth: int, family: str) -> int:
    """n of a depth 6n+4 (n >= 1); anything else raises one line naming ``family`` and valid depths."""
    return _blocks(depth, 6, 4, family, "10, 16, 22, 28, 34, 40, 100, ...")


def bottleneck_blocks(depth: int, family: str) -> int:
    """n of a depth 9n+2 (n >= 1), e.g. 29 (ResNeXt) or 164 (pre-activation ResNet)."""
    return _blocks(depth, 9, 2, family, "11, 20, 29, ..., 164")


def _blocks(depth: int, per_block: int, extra: int, family: str, examples: str) -> int:
    if depth < per_block + extra or (depth - extra) % per_block:
        raise ValueError(f"{family} depth must be {per_block}n+{extra} with n >= 1 ({examples}), got {depth}")
    return (depth - extra) // per_block
