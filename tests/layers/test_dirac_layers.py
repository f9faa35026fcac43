import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dirackit.layers import DiracConv1d, DiracConv2d, DiracConv3d, dirac_kernel, dirac_weights

DIMS = [(DiracConv1d, nn.Conv1d, (2, 6, 17)), (DiracConv2d, nn.Conv2d, (2, 6, 9, 13)),
        (DiracConv3d, nn.Conv3d, (2, 6, 5, 7, 9))]


def identity_like(layer):
    with torch.no_grad():
        layer.alpha.fill_(1.0)
        layer.beta.zero_()
    return layer


@pytest.mark.parametrize("cls, _, shape", DIMS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_alpha_one_beta_zero_is_exactly_the_identity(cls, _, shape, k):
    torch.manual_seed(0)
    layer = identity_like(cls(6, 6, k, padding=k // 2, bias=False))
    x = torch.randn(shape)
    assert torch.equal(layer(x), x)


def test_identity_with_a_non_square_kernel_and_dilation():
    layer = identity_like(DiracConv2d(4, 4, (3, 5), padding=(2, 4), dilation=2, bias=False))
    x = torch.randn(1, 4, 6, 11)
    assert torch.equal(layer(x), x)


def test_more_outputs_than_inputs_copies_the_first_channels_and_zeros_the_rest():
    layer = identity_like(DiracConv2d(3, 5, 3, padding=1, bias=False))
    x = torch.randn(2, 3, 8, 8)
    y = layer(x)
    assert torch.equal(y[:, :3], x) and torch.equal(y[:, 3:], torch.zeros_like(y[:, 3:]))


def test_fewer_outputs_than_inputs_drops_the_extra_inputs():
    layer = identity_like(DiracConv2d(5, 2, 3, padding=1, bias=False))
    x = torch.randn(2, 5, 8, 8)
    assert torch.equal(layer(x), x[:, :2])


def test_identity_holds_within_each_group():
    layer = identity_like(DiracConv2d(4, 8, 3, padding=1, groups=2, bias=False))
    x = torch.randn(1, 4, 6, 6)
    y = layer(x)
    assert torch.equal(y[:, [0, 1, 4, 5]], x)
    assert not y[:, [2, 3, 6, 7]].any()


def test_stride_subsamples_the_identity_term():
    layer = identity_like(DiracConv2d(3, 3, 3, stride=2, padding=1, bias=False))
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(layer(x), x[:, :, ::2, ::2])


def test_init_is_alpha_one_beta_point_one_and_delta_is_the_centre_tap():
    layer = DiracConv2d(4, 6, 3)
    assert torch.equal(layer.alpha, torch.ones(6)) and torch.allclose(layer.beta, torch.full((6,), 0.1))
    delta = dirac_kernel((6, 4, 3, 3))
    assert delta.sum() == 4 and all(delta[j, j, 1, 1] == 1 for j in range(4))


def test_effective_weight_is_alpha_delta_plus_beta_times_the_filter_normalised_weight():
    torch.manual_seed(0)
    layer = DiracConv2d(4, 4, 3, padding=1)
    with torch.no_grad():
        layer.alpha.uniform_(-1, 2)
        layer.beta.uniform_(-1, 1)
    w = layer.weight.detach()
    expected = torch.zeros_like(w)
    for o in range(4):
        expected[o] = layer.beta[o] * w[o] / w[o].norm()
        expected[o, o, 1, 1] += layer.alpha[o]
    torch.testing.assert_close(layer.effective_weight(), expected)
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(layer(x), F.conv2d(x, expected, layer.bias, padding=1))


def test_the_scale_of_each_filter_does_not_change_the_output():
    torch.manual_seed(0)
    layer = DiracConv2d(4, 4, 3, padding=1)
    x = torch.randn(2, 4, 7, 7)
    before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(torch.tensor([0.01, 3.0, 50.0, 1.0]).view(-1, 1, 1, 1))
    torch.testing.assert_close(layer(x), before)


def test_gradients_reach_alpha_beta_and_are_orthogonal_to_each_filter():
    torch.manual_seed(0)
    layer = DiracConv2d(4, 6, 3, padding=1)
    layer(torch.randn(2, 4, 7, 7)).square().sum().backward()
    assert layer.beta.grad.abs().min() > 0 and layer.alpha.grad[:4].abs().min() > 0
    assert not layer.alpha.grad[4:].any()  # outputs 4 and 5 have no input to copy: alpha is unused
    radial = (layer.weight.grad * layer.weight).flatten(1).sum(1)  # W / ||W|| is scale-invariant
    assert radial.abs().max() < 1e-4 * layer.weight.grad.abs().max()


@pytest.mark.parametrize("cls, plain, shape", DIMS)
def test_fold_returns_a_plain_conv_with_the_same_output(cls, plain, shape):
    torch.manual_seed(0)
    layer = cls(6, 4, 3, stride=2, padding=2, dilation=2, groups=2, bias=True, padding_mode="reflect")
    with torch.no_grad():
        layer.alpha.uniform_(0.5, 1.5)
        layer.beta.uniform_(-0.5, 0.5)
        layer.bias.uniform_(-1, 1)
    folded = layer.fold()
    assert type(folded) is plain and folded.groups == 2 and folded.padding_mode == "reflect"
    x = torch.randn(shape)
    torch.testing.assert_close(folded(x), layer(x), rtol=1e-5, atol=1e-6)


def test_takes_nn_conv_arguments_and_dtypes():
    args = dict(in_channels=4, out_channels=8, kernel_size=3, stride=1, padding="same", dilation=1,
                groups=2, bias=False, padding_mode="zeros", dtype=torch.float64)
    layer, reference = DiracConv2d(**args), nn.Conv2d(**args)
    assert layer.weight.shape == reference.weight.shape and layer.delta.dtype == torch.float64
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    assert layer(x).shape == reference(x).shape


def test_state_dict_holds_weight_alpha_beta_but_not_the_constant_delta():
    layer = DiracConv2d(4, 4, 3, bias=False)
    assert set(layer.state_dict()) == {"weight", "alpha", "beta"}
    copy = DiracConv2d(4, 4, 3, bias=False)
    copy.load_state_dict(layer.state_dict())
    x = torch.randn(1, 4, 6, 6)
    assert torch.equal(copy(x), layer(x))


def distinct(layers, seed=0):
    """Every layer its own random alpha and beta, so a layer given another one's weight shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            layer.alpha.copy_(torch.rand(layer.out_channels, generator=g) + 0.5)
            layer.beta.copy_(torch.rand(layer.out_channels, generator=g) - 0.5)
    return layers


def test_dirac_weights_are_each_layers_effective_weight_with_its_gradients():
    torch.manual_seed(0)
    # shape groups as in a DiracNet stage (a first layer widening 4 -> 8, then 8 -> 8), interleaved; a
    # grouped conv whose W has the 4 -> 8 layer's shape but another delta; other dims and a kernel size
    layers = distinct([DiracConv2d(4, 4, 3), DiracConv2d(4, 8, 3), DiracConv2d(8, 8, 3), DiracConv2d(4, 4, 3),
                       DiracConv2d(8, 8, 3, groups=2), DiracConv2d(8, 8, 3), DiracConv1d(4, 4, 3),
                       DiracConv2d(4, 4, 3), DiracConv2d(4, 4, 1), DiracConv3d(4, 4, 3), DiracConv1d(4, 4, 3)])
    assert layers[1].weight.shape == layers[4].weight.shape and not torch.equal(layers[1].delta, layers[4].delta)
    fused = dirac_weights(layers)
    assert len(fused) == len(layers)
    targets = [torch.randn_like(w) for w in fused]

    def grads(weights):
        loss = sum((w * t).sum() for w, t in zip(weights, targets))
        return torch.autograd.grad(loss, [p for m in layers for p in (m.weight, m.alpha, m.beta)])

    per_layer = [m.effective_weight() for m in layers]
    for w, expected in zip(fused, per_layer):
        torch.testing.assert_close(w, expected, rtol=0, atol=1e-6)
    for g, expected in zip(grads(fused), grads(per_layer)):
        torch.testing.assert_close(g, expected, rtol=1e-6, atol=1e-6)
    assert dirac_weights([]) == []


def test_a_precomputed_weight_replaces_the_effective_one_and_hooks_still_fire():
    torch.manual_seed(0)
    layer, other = distinct([DiracConv2d(4, 4, 3, padding=1), DiracConv2d(4, 4, 3, padding=1)])
    seen = []
    layer.register_forward_hook(lambda m, inputs, output: seen.append((len(inputs), output)))
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(layer(x, weight=other.effective_weight()), other(x))
    assert torch.equal(layer(x, weight=None), layer(x))
    assert len(seen) == 3 and seen[0][0] == 1 and torch.equal(seen[0][1], other(x))
