"""Diverse Branch Block: each of the six transforms against a direct computation, the fold of
both blocks for K in {1, 3, 5}, both strides, dense, grouped and depthwise, and the online variant."""
import copy
import itertools
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dirackit as dk
from dirackit.folding import FoldError
from dirackit.layers import (BNAndPad, DiverseBranchBlock, DiverseBranchConv2d, IdentityBasedConv1x1,
                             OnlineDiverseBranchBlock, add_branches, avg_pool_kernel, concat_kernels, fuse_bn,
                             merge_1x1_kxk, pad_to, branch_shares)

BLOCKS = (DiverseBranchBlock, OnlineDiverseBranchBlock)
# (in, out, groups): dense, grouped, depthwise, and groups == in < out (grouped branches; DBB issue #38)
CONFIGS = {"dense": (4, 6, 1), "grouped": (4, 8, 2), "depthwise": (4, 4, 4), "multiplier": (4, 8, 4)}


def randomize(block: nn.Module, randomize_bn, seed: int = 0) -> nn.Module:
    """Random BN statistics, and identity-based residuals and branch scales moved off their init
    (at init they are 0 and 1, which would hide a misplaced identity or scale)."""
    randomize_bn(block, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, IdentityBasedConv1x1):
                m.weight.add_(0.3 * torch.randn(m.weight.shape, generator=g))
            if isinstance(m, DiverseBranchConv2d):
                for p in (m.weight_mid, m.scale_kxk, m.scale_1x1, m.scale_avg, m.scale_1x1_kxk):
                    if p is not None:
                        p.add_(0.3 * torch.randn(p.shape, generator=g))
    return block


def random_bn(channels: int, randomize_bn, seed: int = 0) -> nn.BatchNorm2d:
    return randomize_bn(nn.BatchNorm2d(channels), seed).eval()


# ----- each transform against a direct computation -----------------------------------------------

@pytest.mark.parametrize("groups", [1, 2])
def test_transform_I_fuse_bn_is_the_conv_then_eval_bn(groups, randomize_bn):
    torch.manual_seed(0)
    x, kernel, bn = torch.randn(2, 4, 7, 7), torch.randn(6, 4 // groups, 3, 3), random_bn(6, randomize_bn)
    weight, bias = fuse_bn(kernel, bn)
    torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1, groups=groups),
                               bn(F.conv2d(x, kernel, padding=1, groups=groups)))


def test_transform_II_add_branches_sums_the_outputs():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7)
    branches = [(torch.randn(6, 4, 3, 3), torch.randn(6)) for _ in range(3)]
    weight, bias = add_branches(branches)
    torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1), sum(F.conv2d(x, w, b, padding=1) for w, b in branches))


@pytest.mark.parametrize("K, stride, groups, internal", [(3, 1, 1, 4), (3, 2, 2, 6), (5, 1, 2, 4), (1, 2, 1, 4),
                                                         (3, 2, 4, 8)])
def test_transform_III_merge_1x1_kxk_is_both_convs_on_the_zero_padded_input(K, stride, groups, internal):
    torch.manual_seed(0)
    p = K // 2
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    first = torch.randn(internal, 4 // groups, 1, 1, dtype=torch.float64), torch.randn(internal, dtype=torch.float64)
    second = torch.randn(8, internal // groups, K, K, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    weight, bias = merge_1x1_kxk(first, second, groups)
    # the 1x1 sees the padded input, so the KxK reads b1 at the border
    direct = F.conv2d(F.conv2d(F.pad(x, [p] * 4), *first, groups=groups), *second, stride=stride, groups=groups)
    torch.testing.assert_close(F.conv2d(x, weight, bias, stride, p, groups=groups), direct)
    if p and groups == 1:  # zero-padding between the two convs instead is not the same function
        wrong = F.conv2d(F.conv2d(x, *first), *second, stride=stride, padding=p)
        assert not torch.allclose(wrong, direct)


def test_transform_IV_concat_kernels_concatenates_outputs_and_builds_groups():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7)
    parts = [(torch.randn(c, 4, 3, 3), torch.randn(c)) for c in (2, 5)]
    weight, bias = concat_kernels([w for w, _ in parts], [b for _, b in parts])
    torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1),
                               torch.cat([F.conv2d(x, w, b, padding=1) for w, b in parts], dim=1))
    # a grouped conv: group j's dense conv reads input slice j; the kernels concatenate
    groups = [(torch.randn(3, 2, 3, 3), torch.randn(3)) for _ in range(2)]
    weight, bias = concat_kernels([w for w, _ in groups], [b for _, b in groups])
    per_group = [F.conv2d(x[:, 2 * j:2 * j + 2], w, b, padding=1) for j, (w, b) in enumerate(groups)]
    torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1, groups=2), torch.cat(per_group, dim=1))


@pytest.mark.parametrize("K, stride, padding, groups", [(3, 1, 1, 1), (3, 2, 1, 2), (5, 2, 0, 6), (5, 1, 2, 6),
                                                        (1, 2, 0, 3)])
def test_transform_V_avg_pool_kernel_is_average_pooling(K, stride, padding, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    kernel = avg_pool_kernel(6, K, groups, dtype=torch.float64)
    assert kernel.shape == (6, 6 // groups, K, K)
    pooled = F.avg_pool2d(x, K, stride, padding, count_include_pad=True)
    torch.testing.assert_close(F.conv2d(x, kernel, stride=stride, padding=padding, groups=groups), pooled)
    if padding:  # transform V averages over the padded zeros too: a pool that ignores them is not this conv
        assert not torch.allclose(F.avg_pool2d(x, K, stride, padding, count_include_pad=False), pooled)


@pytest.mark.parametrize("shape, size", [((1, 1), 3), ((1, 1), 5), ((3, 3), 5), ((1, 3), 3), ((5, 1), 5), ((1, 3), 5)])
def test_transform_VI_pad_to_centres_a_smaller_kernel(shape, size):
    torch.manual_seed(0)
    x, kernel = torch.randn(2, 3, 8, 8), torch.randn(4, 3, *shape)
    p = size // 2
    small = F.conv2d(x, kernel, padding=(p - (size - shape[0]) // 2, p - (size - shape[1]) // 2))
    torch.testing.assert_close(F.conv2d(x, pad_to(kernel, size), padding=p), small)


@pytest.mark.parametrize("shape, size", [((2, 2), 3), ((5, 5), 3), ((1, 2), 5)])
def test_pad_to_refuses_kernels_it_cannot_centre(shape, size):
    with pytest.raises(ValueError, match="cannot centre"):
        pad_to(torch.zeros(1, 1, *shape), size)


# ----- the modules -------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", [1, 2])
def test_bn_and_pad_is_the_bn_of_a_conv_on_the_zero_padded_input(padding, randomize_bn):
    torch.manual_seed(0)
    x, conv = torch.randn(2, 3, 6, 6), nn.Conv2d(3, 5, 1, bias=False)
    layer = BNAndPad(5, padding)
    randomize_bn(layer).eval()
    torch.testing.assert_close(layer(conv(x)), layer.bn(conv(F.pad(x, [padding] * 4))))
    # training mode: the interior is the batch-normalised input, the border keeps the eval-mode value
    layer.train()
    out, reference = layer(conv(x)), copy.deepcopy(layer.bn)(conv(x))
    torch.testing.assert_close(out[:, :, padding:-padding, padding:-padding], reference)
    torch.testing.assert_close(out[:, :, 0, 0], layer.eval()(conv(x))[:, :, 0, 0])


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_identity_based_conv1x1_starts_as_the_identity(groups):
    conv = IdentityBasedConv1x1(6, groups)
    x = torch.randn(2, 6, 5, 5)
    assert torch.count_nonzero(conv.weight) == 0
    torch.testing.assert_close(conv(x), x)
    with torch.no_grad():
        conv.weight.normal_()
    torch.testing.assert_close(conv(x), x + F.conv2d(x, conv.weight, groups=groups))


def test_branches_follow_the_paper():
    dense = DiverseBranchBlock(8, 16, 3, stride=2)
    assert dense.internal_channels == 8 and not dense.depthwise
    assert isinstance(dense.branch_1x1_kxk.conv1, IdentityBasedConv1x1) and dense.branch_1x1 is not None
    assert dense.branch_avg.pool.padding == 0 and dense.branch_avg.pad.padding == 1
    assert dense.branch_1x1_kxk.conv2.padding == (0, 0) and dense.branch_1x1_kxk.conv2.stride == (2, 2)
    depthwise = DiverseBranchBlock(8, 8, 5, groups=8)
    assert depthwise.depthwise and depthwise.internal_channels == 16 and depthwise.branch_1x1 is None
    assert type(depthwise.branch_1x1_kxk.conv1) is nn.Conv2d and depthwise.branch_1x1_kxk.conv1.groups == 8
    assert list(depthwise.branch_avg.children())[0].padding == 2  # pool pads itself, no 1x1 before it
    multiplier = DiverseBranchBlock(4, 8, 3, groups=4)  # groups == in < out: grouped branches, not depthwise
    assert not multiplier.depthwise and multiplier.branch_1x1 is not None
    assert multiplier(torch.randn(1, 4, 6, 6)).shape == (1, 8, 6, 6)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("K, stride", list(itertools.product((1, 3, 5), (1, 2))))
def test_fold_is_one_conv_with_the_same_output(block, config, K, stride, randomize_bn):
    torch.manual_seed(K + stride)
    in_channels, out_channels, groups = CONFIGS[config]
    model = randomize(block(in_channels, out_channels, K, stride, groups=groups), randomize_bn, seed=K + stride)
    x = torch.randn(2, in_channels, 9, 9)  # odd size: stride 2 must align at both ends
    assert dk.check_fold(model, x) <= 1e-5  # relative error, fp32
    folded = model.fold()
    assert type(folded) is nn.Conv2d and not folded.training and folded.bias is not None
    assert (folded.kernel_size, folded.stride, folded.padding, folded.groups) == ((K, K), (stride, stride),
                                                                                   (K // 2, K // 2), groups)
    assert dk.check_fold(model.double(), x.double(), tol=1e-12) <= 1e-12  # fp64: only rounding is left


@pytest.mark.parametrize("config", ["dense", "depthwise"])
def test_a_missing_bn_and_pad_is_caught_only_with_random_bn_statistics(config, randomize_bn):
    # The bug of DBB issue #9: zero-padding the BN output between the 1x1 and the KxK/pool.
    in_channels, out_channels, groups = CONFIGS[config]
    torch.manual_seed(0)
    model = DiverseBranchBlock(in_channels, out_channels, 3, groups=groups)
    for branch in (model.branch_avg, model.branch_1x1_kxk):
        if hasattr(branch, "pad"):
            branch.pad = nn.Sequential(OrderedDict(bn=branch.pad.bn, zero=nn.ZeroPad2d(1)))
    x = torch.randn(2, in_channels, 8, 8)
    assert dk.check_fold(model, x) <= 1e-5  # fresh BNs output 0 for a zero input: the bug is invisible
    randomize_bn(model)
    with pytest.raises(FoldError, match="differs"):
        dk.check_fold(model, x)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("config", ["dense", "depthwise"])
def test_equivalent_kernel_bias_is_differentiable(block, config, randomize_bn):
    torch.manual_seed(0)
    in_channels, out_channels, groups = CONFIGS[config]
    model = randomize(block(in_channels, out_channels, 3, groups=groups), randomize_bn).double()
    weight, bias = model.equivalent_kernel_bias()
    (weight * torch.randn_like(weight)).sum().add((bias * torch.randn_like(bias)).sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # and it is the true gradient (finite differences in fp64)
    names, values = zip(*[(f"block.{n}", p.detach().clone().requires_grad_()) for n, p in model.named_parameters()])
    kernel_bias = lambda *params: torch.func.functional_call(KernelOf(model), dict(zip(names, params)), ())  # noqa: E731
    assert torch.autograd.gradcheck(kernel_bias, values, eps=1e-6, atol=1e-6)


class KernelOf(nn.Module):
    """``block.equivalent_kernel_bias()`` as a forward pass, so ``functional_call`` can swap parameters."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self):
        return self.block.equivalent_kernel_bias()


@pytest.mark.parametrize("block", BLOCKS, ids=lambda c: c.__name__)
def test_fold_leaves_the_block_untouched(block, randomize_bn):
    model = randomize(block(4, 6, 3, stride=2), randomize_bn)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = model.fold()
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        folded.weight.zero_()  # the fold owns its tensors
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert folded.weight.grad_fn is None and folded.weight.requires_grad


@pytest.mark.parametrize("block", BLOCKS, ids=lambda c: c.__name__)
def test_nonlinearity_follows_the_sum_and_the_fold(block, randomize_bn):
    model = randomize(block(4, 6, 3, nonlinearity=nn.ReLU()), randomize_bn)
    x = torch.randn(2, 4, 6, 6)
    assert dk.check_fold(model, x) <= 1e-5
    folded = model.fold()
    assert [type(m) for m in folded] == [nn.Conv2d, nn.ReLU]
    assert model.eval()(x).min() == 0


@pytest.mark.parametrize("block", BLOCKS + (DiverseBranchConv2d,), ids=lambda c: c.__name__)
@pytest.mark.parametrize("args, message", [
    ((4, 4, 4), "odd int kernel_size"),
    ((4, 4, 0), "odd int kernel_size"),
    ((4, 4, (3, 3)), "odd int kernel_size"),
    ((4, 4, 3, 1, 0), r"padding = kernel_size // 2 = 1"),
    ((4, 4, 5, 2, 1), r"padding = kernel_size // 2 = 2"),
    ((4, 4, 3, 3), "stride 1 or 2"),
    ((6, 8, 3, 1, 1, 4), "divisible by groups"),
    ((4, 6, 3, 1, 1, 4), "divisible by groups"),
    ((0, 4, 3), "positive channels"),
    ((4, 4, 3, 1, 1, 0), "positive channels"),
])
def test_impossible_arguments_raise_with_the_fix(block, args, message):
    with pytest.raises(ValueError, match=message):
        block(*args)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("config", CONFIGS)
def test_branch_kernels_add_up_to_the_fold_and_shares_to_one(block, config, randomize_bn):
    in_channels, out_channels, groups = CONFIGS[config]
    model = randomize(block(in_channels, out_channels, 3, groups=groups), randomize_bn).eval()
    kernels = model.branch_kernels()
    assert set(kernels) == ({"kxk", "1x1-avg", "1x1-kxk"} | (set() if config == "depthwise" else {"1x1"}))
    for got, want in zip(add_branches(kernels.values()), model.equivalent_kernel_bias()):
        torch.testing.assert_close(got, want)
    shares = branch_shares(model)
    assert shares.keys() == kernels.keys() and sum(shares.values()) == pytest.approx(1)
    norms = {name: w.norm().item() for name, (w, _) in kernels.items()}
    assert max(shares, key=shares.get) == max(norms, key=norms.get)


# ----- the online variant ------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("stride", [1, 2])
def test_online_kernel_is_its_branches_run_one_by_one(config, stride, randomize_bn):
    torch.manual_seed(stride)
    in_channels, out_channels, g = CONFIGS[config]
    conv = randomize(DiverseBranchConv2d(in_channels, out_channels, 3, stride, groups=g), randomize_bn)
    x = torch.randn(2, in_channels, 9, 9, dtype=torch.float64)
    conv = conv.double()
    scaled = lambda a, y: a.view(1, -1, 1, 1) * y  # noqa: E731
    mid = conv.weight_mid + (conv.identity if conv.identity is not None else 0)
    out = scaled(conv.scale_kxk, F.conv2d(x, conv.weight, stride=stride, padding=1, groups=g))
    out = out + scaled(conv.scale_1x1_kxk, F.conv2d(F.conv2d(x, mid, groups=g), conv.weight_kxk2, stride=stride,
                                                    padding=1, groups=g))
    if conv.depthwise:
        out = out + scaled(conv.scale_avg, F.avg_pool2d(x, 3, stride, 1))
    else:
        out = out + scaled(conv.scale_1x1, F.conv2d(x, conv.weight_1x1, stride=stride, groups=g))
        out = out + scaled(conv.scale_avg, F.avg_pool2d(F.conv2d(x, conv.weight_avg, groups=g), 3, stride, 1))
    torch.testing.assert_close(conv(x), out)
    # the 1x1-AVG shortcut in branch_kernels is transform V followed by III
    before_pool = conv.weight_avg if conv.weight_avg is not None else torch.ones(out_channels, 1, 1, 1).double()
    zeros = torch.zeros(out_channels, dtype=torch.float64)
    merged, _ = merge_1x1_kxk((before_pool, zeros), (avg_pool_kernel(out_channels, 3, g, dtype=torch.float64), zeros), g)
    torch.testing.assert_close(conv.branch_kernels()["1x1-avg"], conv.scale_avg.view(-1, 1, 1, 1) * merged)


def test_online_block_costs_one_conv_and_one_bn():
    online, full = OnlineDiverseBranchBlock(16, 32, 3), DiverseBranchBlock(16, 32, 3)
    plain = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    size = (1, 16, 32, 32)
    assert dk.count_macs(online, size) == dk.count_macs(plain, size)
    assert dk.count_macs(full, size) > 2 * dk.count_macs(plain, size)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in online.modules()) == 1
    assert sum(isinstance(m, nn.BatchNorm2d) for m in full.modules()) == 6
    # same trainable branch kernels as the DBB: only the BN parameters differ (4 scales + 1 BN vs 6 BNs)
    bn_params = lambda m: sum(p.numel() for n, p in m.named_parameters() if "bn" in n or "scale" in n)  # noqa: E731
    assert dk.count_params(online) - bn_params(online) == dk.count_params(full) - bn_params(full)
