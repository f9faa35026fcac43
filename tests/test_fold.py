import copy

import pytest
import torch
from torch import nn

import dirackit as dk
from dirackit.folding import FoldError, fold_chain, unfolded_parts


@pytest.mark.parametrize("name", ["wrn-10-1", "wrn-16-2", "wrn-22-1", "preresnet-11"])
def test_fold_matches_with_random_bn_statistics(name, randomize_bn):
    torch.manual_seed(0)
    model = randomize_bn(dk.build_model(name, dropout=0.3) if name.startswith("wrn") else dk.build_model(name))
    error = dk.check_fold(model, torch.randn(4, 3, 32, 32))
    assert error <= 1e-5


def test_fold_merges_the_bn_after_each_first_conv_and_leaves_the_original_alone(randomize_bn):
    model = randomize_bn(dk.build_model("wrn-16-2")).train()
    before = copy.deepcopy(model.state_dict())
    folded = dk.fold(model)
    bns = lambda m: sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    blocks = sum(len(s) for s in model.stages)
    assert bns(model) - bns(folded) == blocks  # one BN (BN2 after conv1) folded per block
    merged = sum(s.branch[1].num_features for stage in model.stages for s in stage)
    assert dk.count_params(folded) == dk.count_params(model) - merged  # gamma, beta -> one trainable bias
    assert unfolded_parts(folded) == []
    assert not folded.training and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_check_fold_catches_a_wrong_fold(monkeypatch, randomize_bn):
    model = randomize_bn(dk.build_model("wrn-10-1"))

    def bad_fuse(*args):  # forgets the BN shift
        weight, bias = torch.nn.utils.fusion.fuse_conv_bn_weights(*args)
        return weight, torch.nn.Parameter(torch.zeros_like(bias))

    monkeypatch.setattr("dirackit.folding.fuse_conv_bn_weights", bad_fuse)
    with pytest.raises(FoldError, match="differs"):
        dk.check_fold(model, torch.randn(2, 3, 32, 32))


def test_layers_with_a_fold_method_are_replaced():
    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

        def fold(self):
            return nn.Identity()

    with pytest.raises(FoldError, match="differs"):
        dk.check_fold(nn.Sequential(nn.Linear(3, 3), Doubler()), torch.randn(2, 3))


def test_fold_chain_merges_bn_drops_identities_and_repeated_relus(randomize_bn):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Identity(), nn.ReLU(),
              nn.MaxPool2d(2), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.Flatten()]
    reference = randomize_bn(nn.Sequential(*layers)).eval()
    chain = fold_chain(reference)
    assert [type(m) for m in chain] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.Flatten]
    assert not chain.training
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(chain(x), reference(x))
    assert chain[0] is not layers[0] and layers[0].bias is None  # the given layers are not modified
