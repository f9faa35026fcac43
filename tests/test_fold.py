import copy
import inspect

import pytest
import torch
from torch import nn

import dirackit as dk
from dirackit.folding import FoldError, fold_chain, unfolded_parts


# Test-size overrides, applied where a family's builder takes them (as torchvision's model tests
# shrink registry models): narrower DBB and ResNeXt nets, and dropout, which folding must pass over.
TEST_OPTIONS = {"base_channels": 8, "dropout": 0.3}


def _small_instances() -> dict[str, dict]:
    """One model per registered family: its smallest example name, with the test options it takes."""
    families: dict[str, list[str]] = {}
    for name in dk.list_models():
        families.setdefault(dk.model_card(name).pattern, []).append(name)
    small = {}
    for names in families.values():
        card = dk.model_card(names[0])
        name = min(names, key=lambda n: sum(card.parse(n).values()))
        takes = inspect.signature(card.builder).parameters
        small[name] = {k: v for k, v in TEST_OPTIONS.items() if k in takes}
    return small


SMALL = _small_instances()


def test_every_family_is_tested():
    assert {dk.model_card(n).pattern for n in SMALL} == {dk.model_card(n).pattern for n in dk.list_models()}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fold_keeps_the_function_shrinks_the_model_and_leaves_it_untouched(name, randomize_bn):
    torch.manual_seed(0)
    model = randomize_bn(dk.build_model(name, **SMALL[name])).train()
    before = copy.deepcopy(model.state_dict())
    assert dk.check_fold(model, torch.randn(2, 3, 32, 32)) <= 1e-5  # and nothing foldable is left
    folded = dk.fold(model)
    assert not folded.training and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert dk.count_params(folded) < dk.count_params(model)  # at least the merged BN scales are gone
    bns = lambda m: sum(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules())
    assert bns(folded) < bns(model)  # pre-activation BNs stay: no conv before them to merge into


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
