import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import dirackit as dk
from dirackit.layers import ChannelPermutation, DGConv2d, gate_mask


def kron_mask(gates) -> torch.Tensor:
    """The paper's definition, written the slow way: U = kron_k((1 - g_k) I2 + g_k J2)."""
    u = torch.ones(1, 1, dtype=torch.float64)
    for g in gates:
        u = torch.kron(u, (1 - g) * torch.eye(2, dtype=torch.float64) + g * torch.ones(2, 2, dtype=torch.float64))
    return u


def layer(channels: int, pattern, **kwargs) -> DGConv2d:
    conv = DGConv2d(channels, channels, kwargs.pop("kernel_size", 3), padding=kwargs.pop("padding", 1), **kwargs)
    conv.set_gates(pattern)
    return conv


ALL_PATTERNS = [p for K in range(1, 5) for p in itertools.product((0, 1), repeat=K)]


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=lambda p: "".join(map(str, p)))
def test_mask_is_the_kronecker_product_and_a_grouping(pattern):
    conv = layer(2 ** len(pattern), pattern)
    U = conv.mask().double()
    assert torch.equal(U, kron_mask(pattern))
    K, on = len(pattern), sum(pattern)
    assert conv.learned_groups == 2 ** (K - on)
    assert U.sum().item() == conv.complexity().item() == 2 ** (K + on)  # zeta = nnz(U)
    # U[o, i] = 1 exactly when o and i share a group: every row has C / G ones, and the relation is an
    # equivalence (symmetric and transitive: U @ U has the same support as U).
    assert torch.equal(U, U.T) and torch.equal((U @ U > 0).double(), U)
    assert set(U.sum(1).tolist()) == {2 ** on}


def test_mask_matches_the_papers_figure():
    # gates [0, 0, 1]: four diagonal 2x2 all-ones blocks; [0, 1, 0]: two 4x4 blocks, interleaved
    U = layer(8, "001").mask()
    assert torch.equal(U, torch.block_diag(*[torch.ones(2, 2)] * 4))
    U = layer(8, "010").mask()
    checker = torch.tensor([[1.0, 0], [0, 1]]).repeat(2, 2)
    assert torch.equal(U, torch.block_diag(checker, checker))
    assert torch.equal(layer(8, "111").mask(), torch.ones(8, 8))  # dense
    assert torch.equal(layer(8, "000").mask(), torch.eye(8))  # depthwise


def test_a_gate_at_exactly_zero_is_on_and_never_half():
    conv = DGConv2d(4, 4, 1)
    with torch.no_grad():
        conv.gates.zero_()
    U = conv.mask()
    assert set(U.unique().tolist()) == {1.0} and conv.learned_groups == 1


def test_forward_is_the_masked_dense_conv():
    torch.manual_seed(0)
    conv = layer(16, "1010", stride=2, bias=True)
    x = torch.randn(2, 16, 9, 9)
    ref = F.conv2d(x, conv.weight * kron_mask([1, 0, 1, 0]).float()[:, :, None, None], conv.bias,
                   stride=2, padding=1)
    torch.testing.assert_close(conv(x), ref)


@pytest.mark.parametrize("pattern", ["0110", "1111", "0000", "1001"])
def test_straight_through_gradient_is_the_multilinear_derivative(pattern):
    # The STE passes dL/dg unchanged to g~. U is multilinear in g, so the reference gradient is autograd
    # through the Kronecker chain with g as a real 0/1 leaf.
    torch.manual_seed(1)
    conv = layer(16, pattern)
    x = torch.randn(3, 16, 6, 6)
    target = torch.randn(3, 16, 6, 6)
    F.mse_loss(conv(x), target).backward()
    g = torch.tensor([float(c) for c in pattern], dtype=torch.float64, requires_grad=True)
    ref_weight = conv.weight.detach().double() * kron_mask(g)[:, :, None, None]
    F.mse_loss(F.conv2d(x.double(), ref_weight, padding=1), target.double()).backward()
    torch.testing.assert_close(conv.gates.grad.double(), g.grad, rtol=1e-4, atol=1e-7)
    assert conv.gate_pattern == pattern  # the forward did not touch the gates


def test_complexity_gradient_is_ln2_zeta():
    conv = layer(32, "10110")
    conv.complexity().backward()
    zeta = 2 ** (5 + 3)
    torch.testing.assert_close(conv.gates.grad, torch.full((5,), math.log(2) * zeta))


def test_gates_train_and_state_round_trips():
    conv = layer(8, "101")
    opt = torch.optim.SGD([conv.gates], lr=1.0)
    conv.complexity().backward()  # pushes every gate down: all become 0 after one step
    opt.step()
    assert conv.gate_pattern == "000" and conv.learned_groups == 8
    other = DGConv2d(8, 8, 3, padding=1)
    other.load_state_dict(conv.state_dict())
    assert other.gate_pattern == "000" and "bits" not in conv.state_dict()


@pytest.mark.parametrize("bad, message", [
    (dict(in_channels=8, out_channels=16), "in_channels == out_channels"),
    (dict(in_channels=12, out_channels=12), "power-of-two"),
    (dict(in_channels=1, out_channels=1), "power-of-two"),
    (dict(in_channels=8, out_channels=8, groups=2), "learns its groups"),
])
def test_bad_shapes_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        DGConv2d(kernel_size=3, **bad)


def test_set_gates_validates():
    conv = DGConv2d(8, 8, 3)
    with pytest.raises(ValueError, match="3 gates"):
        conv.set_gates("10")
    with pytest.raises(ValueError, match="3 gates"):
        conv.set_gates([0, 2, 1])


def _check_folded(conv: DGConv2d, x: torch.Tensor) -> None:
    folded = conv.fold()
    grouped = [m for m in folded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(grouped) == 1 and not isinstance(grouped[0], DGConv2d)
    g = grouped[0]
    C, G = conv.in_channels, conv.learned_groups
    assert g.groups == G and g.weight.shape == (C, C // G, *conv.kernel_size)
    assert dk.count_macs(g, tuple(x.shape)) * G == dk.count_macs(conv, tuple(x.shape))
    with torch.no_grad():
        ref, out = conv(x), folded(x)
    assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-5


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=lambda p: "".join(map(str, p)))
def test_fold_is_a_real_grouped_conv_for_every_small_pattern(pattern):
    torch.manual_seed(2)
    conv = layer(2 ** len(pattern), pattern, stride=2, bias=True)
    _check_folded(conv, torch.randn(2, conv.in_channels, 7, 7))


@pytest.mark.parametrize("channels", [64, 128, 256])
def test_fold_on_random_patterns_of_wide_layers(channels):
    g = torch.Generator().manual_seed(channels)
    for _ in range(3):
        pattern = torch.randint(0, 2, (channels.bit_length() - 1,), generator=g).tolist()
        conv = layer(channels, pattern)
        _check_folded(conv, torch.randn(2, channels, 6, 6, generator=g))


def test_fold_adds_permutations_only_when_groups_are_interleaved():
    assert isinstance(layer(8, "011").fold(), torch.nn.Conv2d)  # zero gates first: contiguous groups
    folded = layer(8, "101").fold()
    assert isinstance(folded[0], ChannelPermutation) and folded[1].groups == 2


def test_gate_mask_function_builds_its_own_bits():
    assert torch.equal(gate_mask(torch.tensor([0.0, 1.0])), kron_mask([0, 1]).float())
