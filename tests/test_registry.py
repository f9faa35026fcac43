import pytest
import torch

import dirackit as dk
from dirackit.registry import register


@pytest.mark.parametrize("name", dk.list_models())
def test_every_example_builds_runs_and_matches_its_card(name):
    model = dk.build_model(name)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    expected = dk.model_card(name).params.get(name)
    if expected is not None:
        assert dk.count_params(model) == expected


def test_cards_hold_the_papers_counts():
    # exact counts of the WRN layout; the paper rounds them to 36.5M and 8.9M (arXiv:1605.07146, results table)
    assert dk.count_params(dk.build_model("wrn-28-10")) == 36_479_194
    assert dk.count_params(dk.build_model("wrn-40-4")) == 8_949_210
    assert dk.count_params(dk.build_model("wrn-28-10", num_classes=100)) == 36_536_884


def test_wrn_28_10_macs():
    # by hand: each conv costs output positions x out channels x in channels x taps
    def conv(positions, c_in, c_out, taps=9):
        return positions * c_in * c_out * taps

    def stage(positions, c_in, width, blocks=4):  # (28 - 4) / 6 = 4 blocks; the first one reshapes
        return (conv(positions, c_in, width) + conv(positions, width, width) + conv(positions, c_in, width, 1)
                + (blocks - 1) * 2 * conv(positions, width, width))

    by_hand = (conv(32 * 32, 3, 16) + stage(32 * 32, 16, 160) + stage(16 * 16, 160, 320) + stage(8 * 8, 320, 640)
               + 640 * 10)
    assert by_hand == 5_243_328_768  # 5.24 G
    assert dk.count_macs(dk.build_model("wrn-28-10")) == by_hand


def test_build_spec_remembers_how_to_rebuild():
    model = dk.build_model("wrn-16-4", num_classes=100, dropout=0.3)
    assert model.build_spec == {"name": "wrn-16-4", "num_classes": 100, "options": {"dropout": 0.3}}


@pytest.mark.parametrize("name, message", [
    ("wrn-27-10", r"6n\+4"), ("wrn-4-1", r"6n\+4"), ("wrn-16-0", "positive"),
    ("preresnet-100", r"9n\+2"), ("resnet-50", "unknown model"), ("wrn-16", "unknown model"),
])
def test_bad_names_say_what_is_wrong(name, message):
    with pytest.raises(ValueError, match=message):
        dk.build_model(name)


def test_misspelt_option_raises():
    with pytest.raises(TypeError, match="dropuot"):
        dk.build_model("wrn-16-4", dropuot=0.3)
    with pytest.raises(ValueError, match="dropout"):
        dk.build_model("wrn-16-4", dropout=1.5)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="twice"):
        register("wrn-{depth}-{width}", paper="", recipe="wrn", examples=())(lambda **kw: None)


def test_paper_recipe_is_the_family_card_recipe_shortened_with_its_milestones():
    assert dk.paper_recipe("wrn-16-4") == dk.recipes.WRN
    short = dk.paper_recipe("diracnet-34-1", epochs=6, seed=2)
    assert short == dk.recipes.DIRACNET.replace(epochs=6, seed=2) and short.milestones == (2, 4, 5)
    assert dk.paper_recipe("g-resnext-11-8x4d").schedule == "step" and dk.paper_recipe("vgg16-dbb").schedule == "cosine"
