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
    # algorithms.md 1.2 (computed from the reference definitions) and the figures
    assert dk.count_params(dk.build_model("wrn-28-10")) == 36_479_194
    assert dk.count_params(dk.build_model("wrn-40-4")) == 8_949_210
    assert dk.count_params(dk.build_model("wrn-28-10", num_classes=100)) == 36_536_884


def test_wrn_28_10_macs():
    # performance.md 2.1: a forward-hook count gives 5,243,328,768 MACs (5.24G)
    assert dk.count_macs(dk.build_model("wrn-28-10")) == 5_243_328_768


def test_macs_count_strides_and_groups():
    conv = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
    assert dk.count_macs(conv, (2, 8, 32, 32)) == 16 * 16 * 16 * (8 // 4) * 9


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
