import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dirackit as dk
from dirackit.diagnostics import signal_profile


def batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def leaf_grad_rms(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Reference by another route: swap the layer's output for a leaf and read its .grad."""
    net = copy.deepcopy(model).train()
    seen = {}
    net.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.setdefault("out", o.detach().requires_grad_()))
    F.cross_entropy(net(x), y).backward()
    out = seen["out"]
    return out.pow(2).mean().sqrt().item(), out.grad.pow(2).mean().sqrt().item()


def test_one_row_per_conv_in_forward_order_with_the_right_magnitudes():
    torch.manual_seed(0)
    model = dk.build_model("diracnet-16-1")
    x, y = batch(8)
    profile = signal_profile(model, x, y)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert list(profile.columns) == ["depth", "layer", "activation_rms", "grad_rms"]
    assert list(profile["layer"]) == convs and convs[0] == "stem.conv" and len(convs) == 13
    assert list(profile["depth"]) == list(range(1, 14))
    for row in (0, 12):
        act, grad = leaf_grad_rms(model, profile["layer"][row], x, y)
        assert profile["activation_rms"][row] == pytest.approx(act, rel=1e-5)
        assert profile["grad_rms"][row] == pytest.approx(grad, rel=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_the_callers_model_is_untouched(training):
    torch.manual_seed(0)
    model = dk.build_model("plain-16-1").train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    signal_profile(model, *batch(8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training == training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_deep_plain_net_gradient_explodes_towards_the_input_dirac_stays_flat():
    # Measured (seeds 0-2, 52 layers, width 1, batch 16 of 32x32): first/last conv grad RMS is
    # 1.0e3-1.5e3 for the plain net and 0.4-1.0 for the DiracNet; activations stay within 0.3-1.4.
    ratios = {}
    for name in ("plain-52-1", "diracnet-52-1"):
        torch.manual_seed(0)
        profile = signal_profile(dk.build_model(name), *batch(16))
        assert len(profile) == 49
        act = profile["activation_rms"]
        assert act.max() / act.min() < 10
        ratios[name] = profile["grad_rms"].iloc[0] / profile["grad_rms"].iloc[-1]
    assert ratios["plain-52-1"] > 100
    assert 0.05 < ratios["diracnet-52-1"] < 10
