"""What a model costs: parameter and multiply-add counts, and speeds timed in turns."""
import copy

import pytest
import torch
from torch import nn

import dirackit as dk
from dirackit.metrics import timed_in_turns


def test_count_params_counts_trainable_parameters_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    model[2].requires_grad_(False)
    assert dk.count_params(model) == 3 * 4 * 9 + 4 + 2 * 4  # conv weight and bias, BN affine; no buffers


def test_count_macs_counts_strides_groups_and_linear_layers():
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
    assert dk.count_macs(conv, (2, 8, 32, 32)) == 16 * 16 * 16 * (8 // 4) * 9
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4 * 32 * 32, 10)).train()
    assert dk.count_macs(model) == 32 * 32 * 4 * 3 + 4 * 32 * 32 * 10 and model.training


def test_timed_in_turns_warms_up_then_takes_turns():
    calls = []
    best = timed_in_turns({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, steps=2, repeats=2)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 2 and set(best) == {"a", "b"}
    assert all(s >= 0 for s in best.values())


def test_inference_speed_times_every_model():
    speed = dk.inference_speed({"a": nn.Conv2d(3, 4, 3), "b": nn.Identity()}, batch_size=4, steps=2, repeats=2)
    assert set(speed) == {"a", "b"} and all(v > 0 for v in speed.values())


def test_fold_speed_times_both_forms_and_leaves_the_model_as_it_was(randomize_bn):
    torch.manual_seed(0)
    model = randomize_bn(dk.build_model("diracnet-10-1"))
    before = copy.deepcopy(model.state_dict())
    [(name, r)] = dk.fold_speed({"net": model}, batch_size=4, steps=1, repeats=1).items()
    assert name == "net" and r["unfolded_img_s"] > 0 and r["folded_img_s"] > 0
    assert r["fold_speedup"] == pytest.approx(r["folded_img_s"] / r["unfolded_img_s"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_training_speed_steps_the_optimiser_of_every_model():
    models = {"conv": nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5)),
              "linear": nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7))}
    with torch.no_grad():
        models["conv"](torch.zeros(1, 3, 32, 32))  # materialise the lazy layer
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in models.items()}
    speed = dk.training_speed(models, batch_size=4, steps=2, repeats=2)
    assert set(speed) == {"conv", "linear"} and all(v > 0 for v in speed.values())
    for name, m in models.items():
        assert m.training and all(not torch.equal(a, b) for a, b in zip(before[name], m.parameters()))
