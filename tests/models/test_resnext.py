import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dirackit as dk
from dirackit.folding import unfolded_parts
from dirackit.layers import DGConv2d
from dirackit.models.resnext import FoldedBottleneck
from dirackit.train import param_groups


def test_parameter_counts_of_the_cifar_template():
    # the ResNeXt paper's CIFAR template (Xie et al. 2017, arXiv:1611.05431); its CIFAR table lists 34.4M for 8x64d
    assert dk.count_params(dk.build_model("resnext-29-32x4d")) == 4_775_754
    assert dk.count_params(dk.build_model("resnext-29-8x64d")) == 34_426_698
    g = dk.build_model("g-resnext-29-32x4d")
    gates = sum(m.gates.numel() for _, m in g.dg_convs())
    assert gates == 3 * (7 + 8 + 9)
    assert dk.count_params(g) - gates == 13_775_178  # dense training-time 3x3 weights


def test_structure_depth_and_widths():
    model = dk.build_model("g-resnext-38-8x4d")  # 4 blocks per stage
    widths = [m.in_channels for _, m in model.dg_convs()]
    assert widths == [32] * 4 + [64] * 4 + [128] * 4
    assert [m.stride for _, m in model.dg_convs()][::4] == [(1, 1), (2, 2), (2, 2)]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    fixed = dk.build_model("resnext-29-8x4d")
    assert [m.groups for m in fixed.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)][1:] == [8] * 9


@pytest.mark.parametrize("name, message", [
    ("resnext-30-8x4d", "9n\\+2"),
    ("resnext-2-8x4d", "9n\\+2"),
    ("resnext-29-0x4d", ">= 1"),
    ("g-resnext-29-3x4d", "power of two"),
])
def test_impossible_configurations_raise(name, message):
    with pytest.raises(ValueError, match=message):
        dk.build_model(name)


def test_budget_groups_must_be_reachable():
    with pytest.raises(ValueError, match=r"budget_groups must be in \[1, 32\]"):
        dk.build_model("g-resnext-11-8x4d", budget_groups=64)
    model = dk.build_model("g-resnext-11-8x4d", budget_groups=4)
    assert model.budget() == (32 ** 2 + 64 ** 2 + 128 ** 2) / 4


def test_loss_is_ce_under_budget_and_scaled_over_it():
    model = dk.build_model("g-resnext-11-8x4d")  # budget: 8 groups per layer
    logits, y = torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    ce = F.cross_entropy(logits, y)
    for _, m in model.dg_convs():
        m.set_gates("1" * m.gates.numel())  # dense: zeta = sum C^2 = 8 o
    torch.testing.assert_close(model.loss(logits, y), ce * 8 ** 0.02)
    for _, m in model.dg_convs():
        m.set_gates("0" * m.gates.numel())  # depthwise: under budget
    torch.testing.assert_close(model.loss(logits, y), ce)


def test_budget_term_reaches_the_gates_through_the_ste():
    # Over budget, loss = CE * r^a with r = zeta / o, so for a gate of layer l:
    # dL/dg = dCE/dg * r^a + CE * a * r^a * ln2 * zeta_l / zeta. Under budget (b = 1) only dCE/dg is left.
    torch.manual_seed(0)
    model = dk.build_model("g-resnext-11-8x4d").eval()
    for _, m in model.dg_convs():
        m.set_gates("1" * (m.gates.numel() - 1) + "0")
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])

    def gate_grads(budget_groups):
        model.zero_grad()
        model.budget_groups = budget_groups
        model.loss(model(x), y).backward()
        return [m.gates.grad.clone() for _, m in model.dg_convs()]

    plain = gate_grads(1)
    with_budget = gate_grads(8)
    ce = F.cross_entropy(model(x), y).detach()
    zeta = model.complexity().detach()
    r, a = zeta / model.budget(), model.budget_exponent
    assert r > 1
    for (_, m), g0, g1 in zip(model.dg_convs(), plain, with_budget):
        expected = g0 * r ** a + ce * a * r ** a * math.log(2) * m.complexity().detach() / zeta
        torch.testing.assert_close(g1, expected, rtol=1e-4, atol=1e-8)


def test_gates_get_no_weight_decay_and_are_logged():
    model = dk.build_model("g-resnext-11-8x4d")
    names = {n for n, _ in model.named_parameters() if n.endswith("gates")}
    assert model.no_weight_decay() == names and len(names) == 3
    groups = param_groups(model, dk.recipes.RESNEXT)
    no_decay = [g for g in groups if g["weight_decay"] == 0]
    assert {id(p) for g in no_decay for p in g["params"]} >= {id(m.gates) for _, m in model.dg_convs()}
    for (_, m), pattern in zip(model.dg_convs(), ["10100", "000000", "1111111"]):
        m.set_gates(pattern)
    state = model.log_state()
    assert state["dg_gates"] == ["10100", "000000", "1111111"]
    assert state["dg_groups"] == [8, 64, 1]
    zeta = 2 ** 7 + 2 ** 6 + 2 ** 14
    assert state["zeta_ratio"] == pytest.approx(zeta / model.budget(), rel=1e-4)
    assert dk.build_model("resnext-11-8x4d").log_state() == {}


def _random_gates(model, seed):
    g = torch.Generator().manual_seed(seed)
    for _, m in model.dg_convs():
        m.set_gates(torch.randint(0, 2, (m.gates.numel(),), generator=g).tolist())


@pytest.mark.parametrize("name, seed", [("g-resnext-11-8x4d", 0), ("g-resnext-20-4x8d", 1), ("resnext-11-4x4d", 2)])
def test_fold_gives_a_plain_resnext_with_the_learned_groups(name, seed, randomize_bn):
    torch.manual_seed(seed)
    model = randomize_bn(dk.build_model(name), seed)
    _random_gates(model, seed)
    learned = [m.learned_groups for _, m in model.dg_convs()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    error = dk.check_fold(model, torch.randn(4, 3, 32, 32))
    assert error <= 1e-5
    folded = dk.fold(model)
    assert not any(isinstance(m, (DGConv2d, nn.BatchNorm2d)) for m in folded.modules())
    assert unfolded_parts(folded) == []
    blocks = [m for m in folded.modules() if isinstance(m, FoldedBottleneck)]
    if learned:
        assert [b.conv2.groups for b in blocks] == learned  # read from the converted convs
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_folded_g_resnext_with_the_fixed_groups_is_exactly_a_folded_resnext():
    g_model = dk.build_model("g-resnext-11-8x4d")
    for _, m in g_model.dg_convs():
        m.set_gates("000" + "1" * (m.gates.numel() - 3))  # 8 contiguous groups, as in resnext-11-8x4d
    folded_g, folded_fixed = dk.fold(g_model), dk.fold(dk.build_model("resnext-11-8x4d"))
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]  # noqa: E731
    assert shapes(folded_g) == shapes(folded_fixed)
    assert dk.count_macs(folded_g) == dk.count_macs(folded_fixed)
    # and the interleaved pattern with the same count folds to the same shapes too (permutation absorbed)
    for _, m in g_model.dg_convs():
        m.set_gates("1" * (m.gates.numel() - 3) + "000")
    assert shapes(dk.fold(g_model)) == shapes(folded_fixed)


def test_folding_divides_the_3x3_macs_by_the_groups():
    model = dk.build_model("g-resnext-11-8x4d")
    for (_, m), pattern in zip(model.dg_convs(), ["00011", "000111", "0001111"]):
        m.set_gates(pattern)
    dense_3x3 = sum(m.in_channels ** 2 * 9 * s for (_, m), s in zip(model.dg_convs(), [32 * 32, 16 * 16, 8 * 8]))
    saved = dense_3x3 - dense_3x3 // 8
    assert dk.count_macs(model) - dk.count_macs(dk.fold(model)) == saved


def test_set_structure_takes_the_gates_a_log_row_records():
    model = dk.build_model("g-resnext-11-8x4d")
    patterns = ["1" * len(m.gate_pattern) if i % 2 else "0" * len(m.gate_pattern)
                for i, (_, m) in enumerate(model.dg_convs())]
    model.set_structure({"dg_gates": patterns})
    assert model.log_state()["dg_gates"] == patterns
    with pytest.raises(ValueError, match="1 gate patterns for 3 DGConv layers"):
        model.set_structure({"dg_gates": patterns[:1]})


def test_group_costs_count_what_the_budget_counts_and_what_the_convs_cost():
    g_model, fixed = dk.build_model("g-resnext-11-8x4d", budget_groups=8), dk.build_model("resnext-11-8x4d")
    for (_, m), pattern in zip(g_model.dg_convs(), ["11111", "000000", "0000111"]):  # dense at 32x32, sparse after
        m.set_gates(pattern)
    learned, hand_set = g_model.group_costs(), fixed.group_costs()
    assert learned["groups"].tolist() == [1, 64, 16] and hand_set["groups"].tolist() == [8, 8, 8]
    assert learned["map"].tolist() == ["32x32", "16x16", "8x8"] == hand_set["map"].tolist()
    assert learned["connections"].sum() == g_model.complexity().item() < g_model.budget()
    assert hand_set["connections"].sum() == g_model.budget()  # b = the cardinality: the fixed net's count
    # a connection costs 9 taps x map pixels: 16x more at 32x32 than at 8x8
    assert (learned["macs"] / learned["connections"]).tolist() == [9 * 1024, 9 * 256, 9 * 64]
    # everything but the 3x3s is shared, so the folded nets' MACs differ by exactly the 3x3s' difference
    folded_g, folded_fixed = dk.fold(g_model), dk.fold(fixed)
    assert folded_g.group_costs().equals(learned)
    assert (dk.count_macs(folded_g) - dk.count_macs(folded_fixed)
            == learned["macs"].sum() - hand_set["macs"].sum() > 0)
