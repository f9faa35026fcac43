"""Diverse Branch Block (Ding et al., CVPR 2021, arXiv:2103.13425) and an online variant of it.

A DBB stands in for a ``K x K conv + BN`` during training. Four branches see the same input and
their outputs are summed (the paper's Fig. 2; the authors' ``diversebranchblock.py`` in
github.com/DingXiaoH/DiverseBranchBlock):

    K x K     conv KxK (stride s, padding p = K // 2, groups g) -> BN
    1 x 1     conv 1x1 (stride s, groups g) -> BN                       (not when depthwise)
    1x1-AVG   conv 1x1 -> BN-and-pad(p) -> avg-pool KxK (stride s) -> BN
              (depthwise: avg-pool KxK with padding p -> BN)
    1x1-KxK   conv 1x1 (to D channels) -> BN-and-pad(p) -> conv KxK (stride s, groups g) -> BN

In eval mode every branch is linear, so the block is one KxK conv with bias. ``fold()`` builds it
with the paper's six transforms, one function each below: I ``fuse_bn``, II ``add_branches``,
III ``merge_1x1_kxk``, IV ``concat_kernels``, V ``avg_pool_kernel``, VI ``pad_to``.

Why BN-and-pad: transform III needs the KxK conv to see ``F1 * x + b1`` at every position it
reads, the border included. Padding the BN output with zeros breaks this whenever the BN's value
for a zero input is not zero (DiverseBranchBlock issue #9); padding it with that value keeps the
branch equal to a conv on the zero-padded block input, which is what the folded conv computes.

``OnlineDiverseBranchBlock`` keeps the branches but drops their BNs, so they collapse into one
kernel at every forward pass (the idea of OREPA, Hu et al., CVPR 2022) and train at about the cost
of one conv + BN.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .dirac import dirac_kernel

__all__ = ["DiverseBranchBlock", "OnlineDiverseBranchBlock", "DiverseBranchConv2d", "BNAndPad",
           "IdentityBasedConv1x1", "bn_scale_shift", "fuse_bn", "add_branches", "merge_1x1_kxk",
           "concat_kernels", "avg_pool_kernel", "pad_to", "branch_shares"]

Kernel = tuple[torch.Tensor, torch.Tensor]  # (weight (Co, Ci/g, K, K), bias (Co,)) of a conv with groups g


# ----- the six transforms (eval mode; all differentiable) -----------------------------------------

def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``s * x + t`` per channel: ``s = gamma / sqrt(var + eps)``, ``t = beta - mean * s``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fuse_bn(kernel: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> Kernel:
    """Transform I: a bias-free conv followed by an eval-mode BN is one conv, ``(s * F, t)``."""
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.view(-1, 1, 1, 1), shift


def add_branches(branches: Iterable[Kernel]) -> Kernel:
    """Transform II: convs of one shape on the same input, outputs summed, are one conv with the
    kernels and biases summed."""
    kernels, biases = zip(*branches)
    return sum(kernels), sum(biases)


def concat_kernels(kernels: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> Kernel:
    """Transform IV: convs whose outputs are concatenated along channels are one conv with the
    kernels and biases concatenated along the output dimension.

    A grouped conv is such a concatenation, group ``j`` reading only input group ``j``; this is how
    ``merge_1x1_kxk`` handles groups. A stacked ``(G, ...)`` tensor counts as a sequence of G.
    """
    return torch.cat(list(kernels)), torch.cat(list(biases))


def merge_1x1_kxk(first: Kernel, second: Kernel, groups: int = 1) -> Kernel:
    """Transform III: a 1x1 conv ``first`` (D, Ci/g, 1, 1) then a KxK conv ``second`` (Co, D/g, K, K),
    both with ``groups``, as one KxK conv:

        F[o, i, u, v] = sum_d F2[o, d, u, v] F1[d, i],    b[o] = b2[o] + sum_{d,u,v} F2[o, d, u, v] b1[d]

    Exact only if the KxK conv sees ``F1 * x + b1`` everywhere it reads, padding included: pad the
    1x1's input with zeros, or its output with ``b1`` (BN-and-pad). Each group merges on its own and
    the groups are concatenated (transform IV).
    """
    (k1, b1), (k2, b2) = first, second
    out_channels, per_group, kh, kw = k2.shape
    k1 = k1.reshape(groups, per_group, k1.shape[1])                     # (g, D/g, Ci/g)
    k2 = k2.reshape(groups, out_channels // groups, per_group, kh, kw)  # (g, Co/g, D/g, K, K)
    kernels = torch.einsum("godhw,gdi->goihw", k2, k1)
    biases = b2.reshape(groups, -1) + torch.einsum("godhw,gd->go", k2, b1.reshape(groups, per_group))
    return concat_kernels(kernels, biases)


def avg_pool_kernel(channels: int, kernel_size: int, groups: int = 1, *, dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Transform V: KxK average pooling of C channels as the kernel (C, C/g, K, K) of a conv with
    ``groups``: channel c averages itself, ``F[c, c mod (C/g)] = 1/K**2``, zero elsewhere (the Dirac
    kernel spread over the window). With padding, the pool must count the zeros it pads
    (``count_include_pad=True``, PyTorch's default) for the two to agree.
    """
    identity = dirac_kernel((channels, channels // groups, 1, 1), groups).to(device=device, dtype=dtype)
    return (identity / kernel_size ** 2).repeat(1, 1, kernel_size, kernel_size)  # divide in the target dtype


def pad_to(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Transform VI: a (..., kh, kw) kernel zero-padded, centred, to (..., size, size).

    The small conv is the same function when its padding is ``p - (size - k) // 2`` per axis, so
    that both slide centred windows (a 1x1 next to a KxK with padding K//2: padding 0).
    """
    kh, kw = kernel.shape[-2:]
    if kh > size or kw > size or (size - kh) % 2 or (size - kw) % 2:
        raise ValueError(f"cannot centre a {kh}x{kw} kernel in {size}x{size}: each side must be <= {size} "
                         f"and differ from it by an even number")
    dh, dw = (size - kh) // 2, (size - kw) // 2
    return F.pad(kernel, [dw, dw, dh, dh])  # F.pad lists the last dim first: width, then height


# ----- the modules ---------------------------------------------------------------------------------

class BNAndPad(nn.Module):
    """BatchNorm, then ``padding`` pixels of border set to what the BN outputs for a zero input.

    The border value ``beta - mean * gamma / sqrt(var + eps)`` uses the running statistics and no
    gradient flows through it: it is the eval-mode value (in training mode the interior uses batch
    statistics, which is harmless, since only eval mode has to match the folded conv). The BN is
    held as ``bn``, not subclassed, so a SyncBatchNorm conversion keeps the padding (issue #8).
    """

    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(x)
        if self.padding == 0:
            return out
        pad = [self.padding] * 4
        border = F.pad(torch.zeros(out.shape[-2:], dtype=torch.bool, device=out.device), pad, value=True)
        value = bn_scale_shift(self.bn)[1].detach().view(1, -1, 1, 1)
        return torch.where(border, value, F.pad(out, pad))

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class IdentityBasedConv1x1(nn.Conv2d):
    """A ``C -> C`` 1x1 conv whose kernel is ``weight + identity``, with ``weight`` starting at 0.

    The 1x1 of DBB's 1x1-KxK branch: the branch starts as a plain KxK conv, and weight decay pulls
    the kernel toward the identity rather than toward zero. With groups the identity is grouped
    (output c reads input c): the Dirac kernel of DiracNets.
    """

    def __init__(self, channels: int, groups: int = 1):
        super().__init__(channels, channels, 1, groups=groups, bias=False)
        self.register_buffer("identity", dirac_kernel(self.weight.shape, groups), persistent=False)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def kernel(self) -> torch.Tensor:
        """The effective (C, C/g, 1, 1) kernel (differentiable)."""
        return self.weight + self.identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.kernel(), None)


def _check_arguments(block: str, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                     padding: int | None, groups: int) -> int:
    """The padding to use (K // 2); a ValueError naming the fix for anything the branches cannot match."""
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{block} needs an odd int kernel_size >= 1 (its branches are centred in the KxK "
                         f"window), got {kernel_size!r}; use e.g. 3 or 5")
    if padding is not None and padding != kernel_size // 2:
        raise ValueError(f"{block} needs padding = kernel_size // 2 = {kernel_size // 2} (the 1x1 and pooling "
                         f"branches must stay centred, DBB issue #32), got {padding}; change the stride, "
                         f"not the padding, to change the output size")
    if stride not in (1, 2):
        raise ValueError(f"{block} supports stride 1 or 2 (the strides its fold is tested with), got {stride}")
    if min(in_channels, out_channels, groups) < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"{block} needs positive channels divisible by groups, got in_channels={in_channels}, "
                         f"out_channels={out_channels}, groups={groups}; pick groups dividing both")
    return kernel_size // 2


def _is_depthwise(in_channels: int, out_channels: int, groups: int) -> bool:
    """One channel per group in and out (DBB issue #38: not the reference's ``groups >= out_channels``).

    Only then do the branches change (no 1x1 branch, pooling without a 1x1, D = 2 Ci); any other
    grouping, e.g. ``groups == in_channels < out_channels``, uses the grouped 1x1 branches.
    """
    return groups > 1 and groups == in_channels == out_channels


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
             groups: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels)))


def _as_conv(kernel: Kernel, like: nn.Module, nonlinearity: nn.Module) -> nn.Module:
    """A new eval-mode ``nn.Conv2d`` with this weight and bias and the geometry of ``like``,
    followed by a copy of the nonlinearity unless that is the identity."""
    weight, bias = kernel
    conv = nn.Conv2d(like.in_channels, like.out_channels, weight.shape[-1], like.stride, like.padding,
                     groups=like.groups, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    if isinstance(nonlinearity, nn.Identity):
        return conv.eval()
    return nn.Sequential(conv, copy.deepcopy(nonlinearity)).eval()


class DiverseBranchBlock(nn.Module):
    """A ``K x K conv + BN`` pair replaced by DBB's four branches (see the module docstring).

    Any odd K with padding K//2, stride 1 or 2, any groups (depthwise when ``groups ==
    in_channels == out_channels``). The 1x1-KxK branch has ``internal_channels`` D = ``in_channels``
    (identity-based 1x1; the DBB README found wider useless), or ``2 * in_channels`` when depthwise
    (MobileNet: 72.88 vs 72.71 % with 1x). Every BN starts at gamma = 1, beta = 0, as in the paper.
    ``nonlinearity`` (e.g. ``nn.ReLU()``) is applied to the sum.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, groups: int = 1, nonlinearity: nn.Module | None = None):
        super().__init__()
        padding = _check_arguments("DiverseBranchBlock", in_channels, out_channels, kernel_size, stride,
                                   padding, groups)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.groups = stride, padding, groups
        self.depthwise = _is_depthwise(in_channels, out_channels, groups)
        self.internal_channels = internal = 2 * in_channels if self.depthwise else in_channels

        self.branch_kxk = _conv_bn(in_channels, out_channels, kernel_size, stride, padding, groups)
        self.branch_1x1 = None if self.depthwise else _conv_bn(in_channels, out_channels, 1, stride, 0, groups)
        if self.depthwise:
            self.branch_avg = nn.Sequential(OrderedDict(
                pool=nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=True),
                bn=nn.BatchNorm2d(out_channels)))
        else:
            self.branch_avg = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, 1, groups=groups, bias=False),
                pad=BNAndPad(out_channels, padding), pool=nn.AvgPool2d(kernel_size, stride),
                bn=nn.BatchNorm2d(out_channels)))
        first = (IdentityBasedConv1x1(in_channels, groups) if internal == in_channels
                 else nn.Conv2d(in_channels, internal, 1, groups=groups, bias=False))
        self.branch_1x1_kxk = nn.Sequential(OrderedDict(
            conv1=first, pad=BNAndPad(internal, padding),
            conv2=nn.Conv2d(internal, out_channels, kernel_size, stride, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_channels)))
        self.nonlinearity = nonlinearity if nonlinearity is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_kxk(x) + self.branch_avg(x) + self.branch_1x1_kxk(x)
        if self.branch_1x1 is not None:
            out = out + self.branch_1x1(x)
        return self.nonlinearity(out)

    def branch_kernels(self) -> dict[str, Kernel]:
        """Each branch as one KxK conv (weight, bias) in eval mode, by transforms I, III, V and VI."""
        K, g = self.kernel_size, self.groups
        kernels = {"kxk": fuse_bn(self.branch_kxk.conv.weight, self.branch_kxk.bn)}
        if self.branch_1x1 is not None:
            weight, bias = fuse_bn(self.branch_1x1.conv.weight, self.branch_1x1.bn)
            kernels["1x1"] = pad_to(weight, K), bias
        avg = self.branch_avg
        pool = fuse_bn(avg_pool_kernel(self.out_channels, K, g, dtype=avg.bn.weight.dtype,
                                       device=avg.bn.weight.device), avg.bn)
        kernels["1x1-avg"] = pool if self.depthwise else merge_1x1_kxk(fuse_bn(avg.conv.weight, avg.pad.bn), pool, g)
        seq = self.branch_1x1_kxk
        first = seq.conv1.kernel() if isinstance(seq.conv1, IdentityBasedConv1x1) else seq.conv1.weight
        kernels["1x1-kxk"] = merge_1x1_kxk(fuse_bn(first, seq.pad.bn), fuse_bn(seq.conv2.weight, seq.bn), g)
        return kernels

    def equivalent_kernel_bias(self) -> Kernel:
        """The (weight, bias) of the one KxK conv equal to this block in eval mode: transform II over
        ``branch_kernels``. Uses the BNs' running statistics whatever the mode, and is
        differentiable (e.g. for quantisation-aware training of the folded form)."""
        return add_branches(self.branch_kernels().values())

    def fold(self) -> nn.Module:
        """A new eval-mode ``nn.Conv2d`` with bias (same stride, padding, groups) computing this block
        in eval mode, followed by the nonlinearity if there is one. The block is not modified."""
        with torch.no_grad():
            return _as_conv(self.equivalent_kernel_bias(), self, self.nonlinearity)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, internal_channels={self.internal_channels}")


class DiverseBranchConv2d(nn.Conv2d):
    """``nn.Conv2d`` (no bias) whose kernel is DBB's four branches without their BNs, merged anew at
    every forward pass:

        kernel = a_kxk W + a_1x1 VI(W_1x1) + a_avg III(W_avg, V) + a_1x1_kxk III(W_mid, W_kxk2)

    The ``a_*`` are learnable per-output-channel scales (init 1) where the branch BNs were; ``W``
    (``weight``) is the KxK branch; ``W_mid`` is identity-based (``weight_mid`` + identity, the
    residual starting at 0) when D = Ci. Depthwise: no 1x1 branch, and the pooling branch is the
    fixed average kernel V times its scale. With no bias before a KxK, zero padding is already
    exact, so no BN-and-pad is needed. The merge costs about Co * Ci/g * D * K**2 multiply-adds per
    step, whatever the batch and image size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, groups: int = 1):
        padding = _check_arguments("DiverseBranchConv2d", in_channels, out_channels, kernel_size, stride,
                                   padding, groups)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.depthwise = _is_depthwise(in_channels, out_channels, groups)
        self.internal_channels = internal = 2 * in_channels if self.depthwise else in_channels
        per_group = in_channels // groups

        def parameter(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(shape))

        self.weight_1x1 = None if self.depthwise else parameter(out_channels, per_group, 1, 1)
        self.weight_avg = None if self.depthwise else parameter(out_channels, per_group, 1, 1)
        self.weight_mid = parameter(internal, per_group, 1, 1)
        self.weight_kxk2 = parameter(out_channels, internal // groups, kernel_size, kernel_size)
        identity = dirac_kernel(self.weight_mid.shape, groups) if internal == in_channels else None
        self.register_buffer("identity", identity, persistent=False)
        self.scale_kxk = parameter(out_channels)
        self.scale_1x1 = None if self.depthwise else parameter(out_channels)
        self.scale_avg = parameter(out_channels)
        self.scale_1x1_kxk = parameter(out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's conv init for every branch kernel, 0 for the identity-based residual, scales 1."""
        super().reset_parameters()
        if not hasattr(self, "scale_1x1_kxk"):  # called by nn.Conv2d.__init__ before the branches exist
            return
        for w in (self.weight_1x1, self.weight_avg, self.weight_mid, self.weight_kxk2):
            if w is not None:
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.Conv2d's own weight init
        if self.identity is not None:
            nn.init.zeros_(self.weight_mid)
        for s in (self.scale_kxk, self.scale_1x1, self.scale_avg, self.scale_1x1_kxk):
            if s is not None:
                nn.init.ones_(s)

    def branch_kernels(self) -> dict[str, torch.Tensor]:
        """Each branch's scaled KxK kernel (differentiable)."""
        K, g = self.kernel_size[0], self.groups
        kernels = {"kxk": self.weight}
        if self.weight_1x1 is not None:
            kernels["1x1"] = pad_to(self.weight_1x1, K)
        # V then III. V is 1/K**2 times the identity per channel, so their merge is the 1x1 kernel spread
        # evenly over the window: what merge_1x1_kxk with avg_pool_kernel gives, without the product.
        before_pool = self.weight_avg if self.weight_avg is not None else self.weight.new_ones(self.out_channels, 1, 1, 1)
        kernels["1x1-avg"] = before_pool.expand(-1, -1, K, K) / K ** 2
        mid = self.weight_mid if self.identity is None else self.weight_mid + self.identity
        zeros = self.weight.new_zeros
        kernels["1x1-kxk"] = merge_1x1_kxk((mid, zeros(self.internal_channels)),
                                           (self.weight_kxk2, zeros(self.out_channels)), g)[0]
        scales = {"kxk": self.scale_kxk, "1x1": self.scale_1x1, "1x1-avg": self.scale_avg,
                  "1x1-kxk": self.scale_1x1_kxk}
        return {name: scales[name].view(-1, 1, 1, 1) * kernel for name, kernel in kernels.items()}

    def kernel(self) -> torch.Tensor:
        """The KxK kernel this conv runs with: the sum of ``branch_kernels`` (transform II)."""
        return sum(self.branch_kernels().values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.kernel(), None)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, internal_channels={self.internal_channels}"


class OnlineDiverseBranchBlock(nn.Module):
    """A ``K x K conv + BN`` pair replaced by DBB's branches merged online: a ``DiverseBranchConv2d``
    and one BN (OREPA's linearise-then-squeeze, Hu et al., CVPR 2022, applied to the DBB).

    Same arguments, branches, internal widths and identity-based 1x1 as ``DiverseBranchBlock``, and
    the same fold (one KxK conv with bias). It differs from the paper's DBB in exactly this:

    * no BatchNorm inside the branches (the DBB ends every branch with one and has a BN-and-pad in
      the 1x1-AVG and 1x1-KxK branches); each branch ends in a learnable per-output-channel scale
      (init 1) instead, and a single BN follows the sum;
    * so in training mode the branches are a linear re-parameterisation of one KxK kernel, normalised
      once by the batch statistics of the sum, where the DBB normalises each branch (and the
      1x1 outputs inside two branches) by its own batch statistics: a different, non-linear training
      dynamic. The DBB paper's ablation (K x K + 1 x 1 with the BN moved after the addition: 69.83
      vs 70.15 % on ImageNet ResNet-18, secondary source) suggests per-branch BNs help accuracy;
    * no BN-and-pad (not needed: with no bias, zero padding is exact);
    * cost per training step: one KxK conv and one BN over the activations, plus a kernel merge
      that does not grow with the batch, instead of four convs, six BNs and two pads (activation
      memory likewise about that of one conv + BN).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, groups: int = 1, nonlinearity: nn.Module | None = None):
        super().__init__()
        self.conv = DiverseBranchConv2d(in_channels, out_channels, kernel_size, stride, padding, groups)
        self.bn = nn.BatchNorm2d(out_channels)
        self.nonlinearity = nonlinearity if nonlinearity is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinearity(self.bn(self.conv(x)))

    def branch_kernels(self) -> dict[str, Kernel]:
        """Each branch as the KxK conv it adds to the fold (eval mode): its scaled kernel times the
        BN's scale. The BN's shift belongs to no branch; it is the KxK branch's bias here, so that
        the branches still add up to ``equivalent_kernel_bias``."""
        scale, shift = bn_scale_shift(self.bn)
        kernels = {name: (scale.view(-1, 1, 1, 1) * kernel, torch.zeros_like(shift))
                   for name, kernel in self.conv.branch_kernels().items()}
        kernels["kxk"] = kernels["kxk"][0], shift
        return kernels

    def equivalent_kernel_bias(self) -> Kernel:
        """The (weight, bias) of the one KxK conv equal to this block in eval mode (differentiable)."""
        return fuse_bn(self.conv.kernel(), self.bn)

    def fold(self) -> nn.Module:
        """A new eval-mode ``nn.Conv2d`` with bias (BN merged), followed by the nonlinearity if any."""
        with torch.no_grad():
            return _as_conv(self.equivalent_kernel_bias(), self.conv, self.nonlinearity)


@torch.no_grad()
def branch_shares(block: DiverseBranchBlock | OnlineDiverseBranchBlock) -> dict[str, float]:
    """How much of the folded kernel each branch contributes: the Frobenius norm of its equivalent
    KxK kernel over the sum of all branches' norms (the shares add up to 1)."""
    norms = {name: weight.norm().item() for name, (weight, _) in block.branch_kernels().items()}
    total = sum(norms.values()) or 1.0
    return {name: norm / total for name, norm in norms.items()}
