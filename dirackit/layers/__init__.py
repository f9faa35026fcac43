"""Layers that change how a conv is parameterised; each one can ``fold()`` into a plain conv."""
from .dbb import (BNAndPad, DiverseBranchBlock, DiverseBranchConv2d, IdentityBasedConv1x1, OnlineDiverseBranchBlock,
                  add_branches, avg_pool_kernel, bn_scale_shift, branch_shares, concat_kernels, fuse_bn,
                  merge_1x1_kxk, pad_to)
from .dgconv import ChannelPermutation, DGConv2d, gate_mask
from .dirac import DiracConv1d, DiracConv2d, DiracConv3d, dirac_kernel, dirac_weights

__all__ = ["DiracConv1d", "DiracConv2d", "DiracConv3d", "dirac_kernel", "DGConv2d", "ChannelPermutation", "gate_mask",
           "DiverseBranchBlock", "OnlineDiverseBranchBlock", "DiverseBranchConv2d", "BNAndPad", "IdentityBasedConv1x1",
           "bn_scale_shift", "branch_shares", "fuse_bn", "add_branches", "merge_1x1_kxk", "concat_kernels",
           "avg_pool_kernel", "pad_to", "dirac_weights"]
