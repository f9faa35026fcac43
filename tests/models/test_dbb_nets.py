"""The DBB paper's CIFAR networks: parameter counts by hand, where the branches go, and that every
variant folds into exactly the folded plain network."""
import pytest
import torch
from torch import nn

import dirackit as dk
from dirackit.folding import unfolded_parts
from dirackit.layers import (DiverseBranchBlock, DiverseBranchConv2d, IdentityBasedConv1x1, OnlineDiverseBranchBlock,
                             branch_shares)
from dirackit.models.dbb_nets import VGG, conv_bn

FAMILIES = ("vgg16", "resnet18")
VARIANTS = {"": None, "-dbb": DiverseBranchBlock, "-odbb": OnlineDiverseBranchBlock}

# ----- parameter counts written out by hand, one conv + BN (or its replacement) at a time ----------


def count_conv_bn(ci: int, co: int, k: int) -> int:
    return ci * co * k * k + 2 * co


def count_dbb(ci: int, co: int, k: int) -> int:
    kxk = ci * co * k * k + 2 * co
    one = ci * co + 2 * co
    avg = ci * co + 2 * co + 2 * co                      # 1x1, BN-and-pad, BN
    one_kxk = ci * ci + 2 * ci + ci * co * k * k + 2 * co  # identity-based 1x1 residual, BN-and-pad, KxK, BN
    return kxk + one + avg + one_kxk


def count_odbb(ci: int, co: int, k: int) -> int:
    kernels = ci * co * k * k + ci * co + ci * co + ci * ci + ci * co * k * k
    return kernels + 4 * co + 2 * co  # four branch scales, one BN


def count_vgg16(unit, classes: int = 10, base: int = 64) -> int:
    widths = [base * m for m in (1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 8, 8, 8)]
    head = (8 * base) ** 2 + 8 * base + 8 * base * classes + classes  # linear 8b -> 8b, ReLU, linear 8b -> classes
    return sum(unit(ci, co, 3) for ci, co in zip([3] + widths[:-1], widths)) + head


def count_resnet18(unit, classes: int = 10, base: int = 64) -> int:
    total, ci = unit(3, base, 3), base
    for co in (base, 2 * base, 4 * base, 8 * base):
        total += unit(ci, co, 3) + unit(co, co, 3) + (count_conv_bn(ci, co, 1) if ci != co else 0)
        total += unit(co, co, 3) + unit(co, co, 3)
        ci = co
    return total + 8 * base * classes + classes


@pytest.mark.parametrize("family, count", [("vgg16", count_vgg16), ("resnet18", count_resnet18)])
@pytest.mark.parametrize("suffix, unit", [("", count_conv_bn), ("-dbb", count_dbb), ("-odbb", count_odbb)])
def test_parameter_counts_match_the_hand_formula_and_the_card(family, count, suffix, unit):
    name = family + suffix
    assert dk.count_params(dk.build_model(name)) == count(unit) == dk.model_card(name).params[name]
    assert dk.count_params(dk.build_model(name, num_classes=100)) == count(unit, classes=100)
    assert dk.count_params(dk.build_model(name, base_channels=8)) == count(unit, base=8)


def test_known_plain_counts():
    # the widely quoted CIFAR ResNet-18 size; ACNet's CIFAR VGG-16 ("vc": bias-free convs + BN, head
    # 512 -> 512 -> 10), which is what the DBB paper trained
    assert dk.count_params(dk.build_model("resnet18")) == 11_173_962
    assert dk.count_params(dk.build_model("vgg16")) == 14_986_698


@pytest.mark.parametrize("family, blocks", [("vgg16", 13), ("resnet18", 17)])
@pytest.mark.parametrize("suffix", ["-dbb", "-odbb"])
def test_every_3x3_conv_bn_and_nothing_else_gets_branches(family, blocks, suffix):
    model = dk.build_model(family + suffix)
    block = VARIANTS[suffix]
    assert sum(isinstance(m, block) for m in model.modules()) == blocks
    inside = {id(m) for b in model.modules() if isinstance(b, block) for m in b.modules()}
    outside = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in inside]
    shortcuts = 3 if family == "resnet18" else 0
    assert len(outside) == shortcuts and all(m.kernel_size == (1, 1) for m in outside)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _geometry(model: nn.Module) -> list:
    """Parameter shapes in order, and every conv's geometry: what 'the same layers' means."""
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.groups, m.bias is not None)
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    return [tuple(p.shape) for p in model.parameters()] + convs


@pytest.mark.parametrize("family", FAMILIES)
def test_folded_variants_are_exactly_the_folded_plain_network(family):
    plain = dk.fold(dk.build_model(family))
    for suffix in ("-dbb", "-odbb"):
        folded = dk.fold(dk.build_model(family + suffix))
        assert _geometry(folded) == _geometry(plain)
        assert dk.count_params(folded) == dk.count_params(plain)
        assert dk.count_macs(folded) == dk.count_macs(plain)
        assert not any(isinstance(m, (nn.BatchNorm2d, DiverseBranchConv2d, IdentityBasedConv1x1))
                       for m in folded.modules())


@pytest.mark.parametrize("name, classes, seed", [("vgg16-dbb", 10, 0), ("resnet18-dbb", 7, 1), ("vgg16-odbb", 3, 2),
                                                 ("resnet18-odbb", 10, 3), ("resnet18", 5, 4)])
def test_fold_keeps_the_output_with_random_statistics(name, classes, seed, randomize_bn):
    torch.manual_seed(seed)
    model = randomize_bn(dk.build_model(name, num_classes=classes), seed)
    with torch.no_grad():  # move identity-based residuals and branch scales off their init
        for m in model.modules():
            if isinstance(m, IdentityBasedConv1x1):
                m.weight.normal_(0, 0.1)
            elif isinstance(m, DiverseBranchConv2d):
                for p in (m.weight_mid, m.scale_kxk, m.scale_1x1, m.scale_avg, m.scale_1x1_kxk):
                    p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 3, 32, 32)
    assert dk.check_fold(model, x) <= 1e-5
    assert unfolded_parts(dk.fold(model)) == [] and model.training


def test_folded_dbb_weights_load_into_the_folded_plain_network(randomize_bn):
    torch.manual_seed(0)
    dbb = dk.fold(randomize_bn(dk.build_model("resnet18-dbb")))
    plain = dk.fold(dk.build_model("resnet18"))
    with torch.no_grad():
        for target, source in zip(plain.parameters(), dbb.parameters()):
            target.copy_(source)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(plain(x), dbb(x), rtol=1e-5, atol=1e-5)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="variant must be 'plain', 'dbb' or 'odbb'"):
        conv_bn(3, 8, 3, variant="DBB")
    with pytest.raises(ValueError, match="variant must be"):
        VGG(variant="acb")
    with pytest.raises(ValueError, match="unknown model"):
        dk.build_model("vgg16-acb")
    with pytest.raises(ValueError, match="unknown model"):
        dk.build_model("resnet18dbb")
    with pytest.raises(TypeError, match="variant"):
        dk.build_model("vgg16", variant="dbb")  # the variant is in the name
    with pytest.raises(ValueError, match="base_channels is the first stage's width"):
        dk.build_model("vgg16-dbb", base_channels=0)
    with pytest.raises(TypeError, match="num_clases"):
        dk.build_model("resnet18-dbb", num_clases=100)


def test_conv_bn_keeps_1x1_and_large_kernels_plain():
    assert isinstance(conv_bn(8, 8, 3, variant="dbb"), DiverseBranchBlock)
    assert isinstance(conv_bn(8, 8, 5, 2, variant="odbb"), OnlineDiverseBranchBlock)
    for k in (1, 7):
        unit = conv_bn(8, 8, k, variant="dbb")
        assert isinstance(unit, nn.Sequential) and [type(m) for m in unit] == [nn.Conv2d, nn.BatchNorm2d]


@pytest.mark.parametrize("name, layers", [("vgg16-dbb", 13), ("resnet18-odbb", 17)])
def test_log_state_is_each_branch_share_per_layer(name, layers, randomize_bn):
    model = randomize_bn(dk.build_model(name))
    state = model.log_state()
    assert sorted(state) == ["dbb_share_1x1", "dbb_share_1x1_avg", "dbb_share_1x1_kxk", "dbb_share_kxk"]
    assert all(len(v) == layers for v in state.values())
    block = model.dbb_blocks()[4][1]
    assert state["dbb_share_1x1_kxk"][4] == pytest.approx(branch_shares(block)["1x1-kxk"], abs=1e-5)
    assert dk.build_model(name.split("-")[0]).log_state() == {}
