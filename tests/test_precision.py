"""Precision by device (``Recipe.precision``): the choice for simulated GPUs, the autocast and scaler
that go with it, and old recipes that said ``bf16``."""
import pytest
import torch

import dirackit as dk
from dirackit import precision
from dirackit.recipes import Recipe, saved_fields

from contextlib import nullcontext as _nothing

CUDA = torch.device("cuda")  # a device object needs no GPU; the capability is simulated below


@pytest.fixture
def capability(monkeypatch):
    """``capability((7, 5))`` makes every CUDA device report that compute capability."""
    def simulate(major_minor: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: major_minor)
    return simulate


@pytest.mark.parametrize("major_minor, expected", [
    ((6, 0), "fp16"),   # P100
    ((7, 0), "fp16"),   # V100
    ((7, 5), "fp16"),   # T4, RTX 20xx
    ((8, 0), "bf16"),   # A100
    ((8, 6), "bf16"),   # RTX 30xx, A10
    ((8, 9), "bf16"),   # L4, RTX 40xx
    ((9, 0), "bf16"),   # H100, H200
])
def test_auto_picks_bf16_from_compute_capability_8_and_fp16_with_a_scaler_below(capability, major_minor,
                                                                                 expected):
    capability(major_minor)
    assert precision.resolve_precision("auto", CUDA) == expected
    with pytest.warns(UserWarning) if expected == "fp16" and not torch.cuda.is_available() else _nothing():
        assert (precision.grad_scaler("auto", CUDA) is not None) == (expected == "fp16")
    describe = precision.describe_precision("auto", CUDA)
    assert f"compute capability {major_minor[0]}.{major_minor[1]}" in describe and "precision auto" in describe
    assert ("gradient scaler" in describe) == (expected == "fp16")


def test_auto_is_fp32_on_cpu_and_mps_and_an_explicit_choice_is_kept_everywhere(capability):
    capability((7, 5))
    for device in ("cpu", "mps"):
        assert precision.resolve_precision("auto", device) == "fp32"
    for chosen in ("bf16", "fp16", "fp32"):
        for device in ("cpu", "mps", CUDA):
            assert precision.resolve_precision(chosen, device) == chosen
    assert "no fast bf16" in precision.describe_precision("bf16", CUDA)
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("fp8", "cpu")


def test_autocast_and_scaler_follow_the_choice_on_the_cpu():
    x = torch.randn(4, 8)
    layer = torch.nn.Linear(8, 3)
    for chosen, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32),
                          ("auto", torch.float32)):
        with precision.autocast_factory(chosen, "cpu")():
            assert layer(x).dtype == dtype
        scaler = precision.grad_scaler(chosen, "cpu")
        assert (scaler is not None) == (chosen == "fp16")


def test_recipe_checks_precision_and_defaults_to_auto():
    assert Recipe().precision == "auto" and all(p.precision == "auto" for p in dk.recipes.PRESETS.values())
    with pytest.raises(ValueError, match="precision"):
        Recipe(precision="half")


def test_a_recipe_saved_with_bf16_loads_as_precision():
    old = Recipe().asdict()
    del old["precision"]
    assert Recipe.from_saved({**old, "bf16": True}).precision == "auto"
    assert Recipe.from_saved({**old, "bf16": False}).precision == "fp32"
    assert "bf16" not in saved_fields({**old, "bf16": True})
    assert Recipe.from_saved({"epochs": 3}) == Recipe(epochs=3)  # fields added since: their defaults


def test_scaler_skips_a_step_whose_gradients_overflow_and_lowers_the_scale():
    layer = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)
    before = layer.weight.detach().clone()
    loss = layer(torch.full((2, 4), 1e30)).sum()  # finite, but x scale overflows fp32: inf gradients
    assert torch.isfinite(loss)
    precision.backward_and_step(loss, optimizer, scaler)
    assert torch.equal(layer.weight, before) and scaler.get_scale() == 2.0 ** 99  # skipped, scale halved
    precision.backward_and_step(layer(torch.ones(2, 4)).sum(), optimizer, None)
    assert not torch.equal(layer.weight, before)
