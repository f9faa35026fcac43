import pytest
import torch

import dirackit as dk
from dirackit import bench


def test_fold_speed_measures_both_forms_of_the_same_model():
    [r] = bench.fold_speed(["diracnet-10-1"], batch_size=8, steps=1, repeats=1)
    assert r["unfolded_img_s"] > 0 and r["folded_img_s"] > 0
    assert r["speedup"] == pytest.approx(r["folded_img_s"] / r["unfolded_img_s"])
    assert r["fold_error"] <= 1e-5
    # alpha, beta and BN gamma/beta (4 per channel) become one bias per channel
    channels = sum(c.out_channels for _, c in dk.build_model("diracnet-10-1").dirac_convs()) + 16
    assert r["params"] - r["folded_params"] == 3 * channels - 2 * 16  # the stem has no alpha/beta


def test_inference_speed_times_every_model():
    speed = dk.inference_speed({"a": torch.nn.Conv2d(3, 4, 3), "b": torch.nn.Identity()}, batch_size=4,
                               steps=2, repeats=2)
    assert set(speed) == {"a", "b"} and all(v > 0 for v in speed.values())


def test_command_prints_provenance_and_one_row_per_model(capsys):
    bench.main(["fold", "--models", "plain-10-1", "diracnet-10-1", "--batch-size", "4", "--steps", "1",
                "--repeats", "1", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# python -m dirackit.bench") and "torch" in out[1] and "fold error" in out[2]
    rows = [line.split() for line in out[3:]]
    assert [r[0] for r in rows] == ["plain-10-1", "diracnet-10-1"]
    for r in rows:
        assert r[-2].endswith("x") and float(r[-1]) <= 1e-5
        assert int(r[1].replace(",", "")) == dk.count_params(dk.build_model(r[0]))


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["fold", "--models", "vgg-99"])
    assert exit_info.value.code == 2 and "unknown model 'vgg-99'" in capsys.readouterr().err


def test_fold_rows_report_macs_of_both_forms():
    [r] = bench.fold_speed(["g-resnext-11-8x4d"], batch_size=2, steps=1, repeats=1)
    model = dk.build_model("g-resnext-11-8x4d")
    assert r["macs"] == dk.count_macs(model) and r["folded_macs"] < r["macs"]  # random gates: some groups > 1


def test_mask_cost_times_both_constructions_and_the_layer():
    r = bench.mask_cost(16, 4, batch_size=2, steps=1, repeats=1)
    assert {"closed_form", "kronecker", "layer"} <= set(r) and all(r[k] > 0 for k in ("closed_form", "kronecker", "layer"))


@pytest.mark.parametrize("pattern", ["10110", "00000", "11111", "01001"])
def test_closed_form_equals_the_kronecker_mask_and_its_gradient(pattern):
    layer = dk.layers.DGConv2d(32, 32, 3)
    layer.set_gates(pattern)
    weights = torch.randn(32, 32)
    grads = []
    for build in (lambda g: layer.mask(), bench._closed_form_mask):
        layer.gates.grad = None
        mask = build(layer.binary_gates())
        (mask * weights).sum().backward()
        grads.append(layer.gates.grad.clone())
        assert torch.equal(mask, layer.mask())
    torch.testing.assert_close(grads[0], grads[1])


def test_dgmask_command_rejects_impossible_layers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["dgmask", "--layers", "12@8"])
    assert exit_info.value.code == 2 and "power-of-two" in capsys.readouterr().err
    bench.main(["dgmask", "--layers", "8@4", "--batch-size", "2", "--steps", "1", "--repeats", "1", "--device", "cpu"])
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[0] == "8@4" and row[-1].endswith("x")


def test_training_speed_steps_the_optimiser_of_every_model():
    models = {"conv": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5)),
              "linear": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 7))}
    with torch.no_grad():
        models["conv"](torch.zeros(1, 3, 32, 32))  # materialise the lazy layer
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in models.items()}
    speed = dk.training_speed(models, batch_size=4, steps=2, repeats=2)
    assert set(speed) == {"conv", "linear"} and all(v > 0 for v in speed.values())
    for name, m in models.items():
        assert m.training and all(not torch.equal(a, b) for a, b in zip(before[name], m.parameters()))


def test_train_command_gives_the_step_time_relative_to_the_first_model(capsys):
    bench.main(["train", "--models", "plain-10-1", "diracnet-10-1", "--batch-size", "4", "--steps", "1",
                "--repeats", "1", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# python -m dirackit.bench") and "relative to plain-10-1" in out[2]
    rows = [line.split() for line in out[4:]]
    assert [r[0] for r in rows] == ["plain-10-1", "diracnet-10-1"]
    assert rows[0][-1] == "1.00x" and float(rows[1][-1].rstrip("x")) > 0
