import copy
import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import dirackit as dk
from dirackit.folding import unfolded_parts
from dirackit.layers import DiracConv2d
from dirackit.train import param_groups

CARD = dk.model_card("diracnet-34-2").params


@pytest.mark.parametrize("name", sorted(CARD))
def test_parameter_counts_match_the_paper_layout(name):
    # these reproduce every parameter label of the DiracNets paper's Figure 1 and Table 2 (arXiv:1706.00388)
    assert dk.count_params(dk.build_model(name)) == CARD[name]


@pytest.mark.parametrize("name, count", [("diracnet-34-2", 1_865_988), ("diracnet-28-10", 36_507_780)])
def test_parameter_counts_with_a_cifar100_head(name, count):
    assert dk.count_params(dk.build_model(name, num_classes=100)) == count


def test_plain_net_is_the_same_network_without_alpha_and_beta():
    dirac, plain = dk.build_model("diracnet-34-2"), dk.build_model("plain-34-2")
    alphas_and_betas = 2 * sum(m.out_channels for _, m in dirac.dirac_convs())
    assert dk.count_params(dirac) - dk.count_params(plain) == alphas_and_betas
    assert not any(isinstance(m, DiracConv2d) for m in plain.modules())
    assert [type(m) for m in plain.modules() if not isinstance(m, nn.Conv2d)] == \
        [type(m) for m in dirac.modules() if not isinstance(m, nn.Conv2d)]


def test_layout_groups_widths_and_pooling():
    model = dk.build_model("diracnet-34-2")  # n = 5: 10 blocks per group
    convs = [m for _, m in model.dirac_convs()]
    assert len(convs) == 30
    assert [c.out_channels for c in convs[::10]] == [32, 64, 128]
    assert [(c.in_channels, c.out_channels) for c in convs if c.in_channels != c.out_channels] == [(32, 64), (64, 128)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name, message", [("diracnet-33-1", "6n\\+4"), ("diracnet-4-1", "6n\\+4"),
                                           ("plain-34-0", "width"), ("diracnet-34-0", "width")])
def test_bad_depth_or_width_is_a_clear_error(name, message):
    with pytest.raises(ValueError, match=message):
        dk.build_model(name)


def test_no_weight_decay_lists_exactly_alpha_beta_and_batchnorm():
    model = dk.build_model("diracnet-16-1")
    exempt = model.no_weight_decay()
    expected = {n for n, p in model.named_parameters() if n.endswith((".alpha", ".beta")) or ".bn." in n}
    assert exempt == expected and len(exempt) == 2 * 12 + 2 * 13  # 12 Dirac convs, 13 BNs
    # even under a recipe that decays every parameter, these stay exempt
    decay, no_decay = param_groups(model, dk.recipes.FAST)
    assert {id(p) for p in no_decay["params"]} == {id(p) for n, p in model.named_parameters() if n in exempt}
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0


def test_log_state_summarises_alpha_and_beta_per_layer():
    model = dk.build_model("diracnet-10-1")
    with torch.no_grad():
        for i, (_, conv) in enumerate(model.dirac_convs()):
            conv.alpha.copy_(torch.linspace(0, 2 * (i + 1), conv.out_channels))  # mean i + 1
            conv.beta.fill_(-0.5 * (i + 1))
    state = model.log_state()
    assert state["dirac_alpha"] == pytest.approx([1, 2, 3, 4, 5, 6])
    assert state["dirac_beta"] == pytest.approx([-0.5 * i for i in range(1, 7)])
    conv = model.dirac_convs()[2][1]
    assert state["dirac_ratio"][2] == pytest.approx((conv.alpha.abs() / conv.beta.abs()).median().item(), rel=1e-4)
    json.dumps(state)
    assert dk.build_model("plain-10-1").log_state() == {}


def test_fit_logs_alpha_and_beta_every_epoch(tiny_data):
    torch.manual_seed(0)
    model = dk.build_model("diracnet-10-1", num_classes=4)
    run = dk.fit(model, tiny_data, dk.recipes.DIRACNET.replace(epochs=2, batch_size=16), progress=False,
                 device="cpu")
    frame = run.frame()
    assert len(frame) == 2 and all(len(v) == 6 for v in frame["dirac_alpha"])
    assert frame["dirac_alpha"].iloc[-1] == pytest.approx(
        [c.alpha.mean().item() for _, c in model.dirac_convs()], rel=1e-4)
    assert frame["dirac_beta"].iloc[0] != frame["dirac_beta"].iloc[1]  # they train


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, conv in model.dirac_convs():
            conv.alpha.copy_(torch.rand(conv.out_channels, generator=g) + 0.5)
            conv.beta.copy_(torch.rand(conv.out_channels, generator=g) - 0.5)
    return model


@pytest.mark.parametrize("name", ["diracnet-10-1", "diracnet-16-2", "diracnet-22-3", "plain-16-1"])
def test_fold_matches_at_init_and_with_random_statistics(name, randomize_bn):
    torch.manual_seed(0)
    model = dk.build_model(name)
    x = torch.randn(4, 3, 32, 32)
    assert dk.check_fold(model, x) <= 1e-5
    assert dk.check_fold(perturb(randomize_bn(model)) if name.startswith("dirac") else randomize_bn(model),
                         x) <= 1e-5


def test_fold_matches_after_training_steps():
    torch.manual_seed(0)
    model = dk.build_model("diracnet-16-1")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        x, y = torch.randn(16, 3, 32, 32) * 2 + 0.5, torch.randint(0, 10, (16,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    bn = model.features[0][0].bn
    assert bn.running_var.sub(1).abs().max() > 0.05  # the statistics moved away from the defaults
    assert dk.check_fold(model, torch.randn(8, 3, 32, 32)) <= 1e-5


def test_fold_gives_a_flat_vgg_chain_and_leaves_the_original_alone(randomize_bn):
    model = perturb(randomize_bn(dk.build_model("diracnet-16-1"))).train()
    before = copy.deepcopy(model.state_dict())
    folded = dk.fold(model)
    allowed = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear)
    assert type(folded) is nn.Sequential and all(type(m) in allowed for m in folded)
    convs = [m for m in folded if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.bias is not None for c in convs)
    assert not any(isinstance(a, nn.ReLU) and isinstance(b, nn.ReLU) for a, b in zip(folded, folded[1:]))
    assert unfolded_parts(folded) == []
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the folded convs own their tensors: changing them does not reach the original
    with torch.no_grad():
        folded[-1].weight.zero_()
    assert model.head.fc.weight.abs().sum() > 0


def test_folded_first_block_kernel_holds_the_scaled_identity():
    model = dk.build_model("diracnet-10-1").eval()
    conv, bn = model.features[0][1].conv, model.features[0][1].bn
    folded = [m for m in dk.fold(model) if isinstance(m, nn.Conv2d)][2]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    expected = scale.view(-1, 1, 1, 1) * conv.effective_weight()
    torch.testing.assert_close(folded.weight, expected.detach())


def forward_backward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_fused_dirac_weights_give_the_same_output_and_gradients(randomize_bn, monkeypatch):
    torch.manual_seed(0)
    model = perturb(randomize_bn(dk.build_model("diracnet-16-2"))).train()  # 5 shape groups of 12 Dirac convs
    x = torch.randn(4, 3, 32, 32)
    model.fused_weights = False
    expected, expected_grads = forward_backward(copy.deepcopy(model), x)
    model.fused_weights = True
    monkeypatch.setattr(DiracConv2d, "effective_weight", lambda self: pytest.fail("not fused"))
    out, grads = forward_backward(model, x)
    assert (out - expected).norm() <= 1e-5 * expected.norm()
    assert grads.keys() == expected_grads.keys()
    for name, g in grads.items():
        assert (g - expected_grads[name]).norm() <= 1e-5 * expected_grads[name].norm(), name


def test_fused_forward_calls_every_module_so_their_hooks_fire(randomize_bn):
    assert dk.build_model("diracnet-10-1").fused_weights  # the default
    model = perturb(randomize_bn(dk.build_model("diracnet-10-1"))).eval()
    leaves = {name: m for name, m in model.named_modules() if not m._modules}  # ReLU, convs, BN, pools, fc
    calls = []
    for name, m in leaves.items():
        m.register_forward_hook(lambda m, inputs, output, name=name: calls.append((name, inputs, output)))
    x, runs = torch.randn(2, 3, 32, 32), {}
    for fused in (False, True):
        model.fused_weights = fused
        calls.clear()
        runs[fused] = model(x), list(calls)
    (expected, unfused), (out, fused) = runs[False], runs[True]
    assert [name for name, *_ in fused] == [name for name, *_ in unfused] and len(fused) == len(leaves)
    for (name, inputs, output), (*_, expected_output) in zip(fused, unfused):
        torch.testing.assert_close(output, expected_output, rtol=1e-5, atol=1e-5)
        if isinstance(leaves[name], DiracConv2d):  # the hook sees the input alone, and the conv used its own weight
            conv = leaves[name]
            assert len(inputs) == 1
            torch.testing.assert_close(output, conv._conv_forward(inputs[0], conv.effective_weight(), None))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_a_plain_net_has_nothing_to_fuse():
    torch.manual_seed(0)
    model, x = dk.build_model("plain-10-1"), torch.randn(2, 3, 32, 32)
    assert model.fused_weights and model.dirac_convs() == []
    expected, expected_grads = forward_backward(model, x)
    model.fused_weights = False
    out, grads = forward_backward(model, x)
    assert torch.equal(out, expected) and all(torch.equal(g, expected_grads[n]) for n, g in grads.items())


def test_fused_forward_steps_aside_where_it_would_change_behaviour():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = dk.build_model("diracnet-10-1").eval()
    _, block = next(model.blocks())
    fired = []
    for m in (model.features, model.features[0], block):  # calls the fused walk would skip
        handle = m.register_forward_hook(lambda *args: fired.append(1))
        model(x)
        handle.remove()
    assert fired == [1, 1, 1]

    prune.l1_unstructured(block.conv, "weight", amount=0.5)  # rewrites conv.weight in a forward pre-hook
    with torch.no_grad():
        block.conv.weight_orig.mul_(-3)  # as an optimiser step would: the pruned weight is now stale
    expected = model.fused_weights
    model.fused_weights = False
    reference = model(x)
    model.fused_weights = expected
    torch.testing.assert_close(model(x), reference)

    block.conv = nn.Conv2d(block.conv.in_channels, block.conv.out_channels, 3, padding=1, bias=False)  # surgery
    assert model(x).shape == (2, 10)
