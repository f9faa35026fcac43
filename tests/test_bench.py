import math

import pytest
import torch

import dirackit as dk
from dirackit import bench
from dirackit.bench import inputs as bench_data, paths, peak, steps
from dirackit.bench.dgmask import _closed_form_mask


def test_fold_table_measures_both_forms_of_the_same_model():
    [r] = bench.fold_table(["diracnet-10-1"], batch_size=8, steps=1, repeats=1)
    assert r["unfolded_img_s"] > 0 and r["folded_img_s"] > 0
    assert r["fold_speedup"] == pytest.approx(r["folded_img_s"] / r["unfolded_img_s"])
    assert r["fold_error"] <= 1e-5
    # alpha, beta and BN gamma/beta (4 per channel) become one bias per channel
    channels = sum(c.out_channels for _, c in dk.build_model("diracnet-10-1").dirac_convs()) + 16
    assert r["params"] - r["folded_params"] == 3 * channels - 2 * 16  # the stem has no alpha/beta


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
    [r] = bench.fold_table(["g-resnext-11-8x4d"], batch_size=2, steps=1, repeats=1)
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
    for build in (lambda g: layer.mask(), _closed_form_mask):
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


def test_dirac_ops_counts_fewer_ops_with_fused_weights_and_times_both_forms():
    rows = bench.dirac_ops(["diracnet-16-1"], batch_size=2, steps=1, repeats=1)
    assert [(r["model"], r["fused"]) for r in rows] == [("diracnet-16-1", False), ("diracnet-16-1", True)]
    per_layer, fused = rows
    assert per_layer["computations"] == per_layer["dirac_convs"] == 12 and fused["computations"] == 5
    assert fused["forward"] < per_layer["forward"] and fused["backward"] < per_layer["backward"]
    assert fused["optimizer"] == per_layer["optimizer"] > 0  # the same parameters to update
    for r in rows:
        assert r["ops"] == r["forward"] + r["backward"] + r["optimizer"] and r["step_s"] > 0
    assert fused["ops_ratio"] == pytest.approx(fused["ops"] / per_layer["ops"]) and per_layer["time_ratio"] == 1


def test_dirac_ops_command_prints_both_forms_and_refuses_plain_nets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["dirac-ops", "--models", "plain-10-1"])
    assert exit_info.value.code == 2 and "plain-10-1 has none" in capsys.readouterr().err
    bench.main(["dirac-ops", "--models", "diracnet-10-1", "--batch-size", "2", "--steps", "1", "--repeats", "1",
                "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# python -m dirackit.bench dirac-ops") and "torch" in out[1]
    assert any(line.startswith("ops: ") and "TorchDispatchMode" in line for line in out)
    header = next(i for i, line in enumerate(out) if line.startswith("model "))
    rows = [line.split() for line in out[header + 1:]]
    assert [r[:2] for r in rows] == [["diracnet-10-1", "per"], ["diracnet-10-1", "fused"]]
    assert rows[0][-1] == "1.00x" and rows[1][-1].endswith("x")


def test_train_command_gives_the_step_time_relative_to_the_first_model(capsys):
    bench.main(["train", "--models", "plain-10-1", "diracnet-10-1", "--batch-size", "4", "--steps", "1",
                "--repeats", "1", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# python -m dirackit.bench") and "relative to plain-10-1" in out[2]
    rows = [line.split() for line in out[4:]]
    assert [r[0] for r in rows] == ["plain-10-1", "diracnet-10-1"]
    assert rows[0][-1] == "1.00x" and float(rows[1][-1].rstrip("x")) > 0


@pytest.fixture
def one_thread():
    """The reference path forks DataLoader workers; on 2 cores, one torch thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_mfu_is_six_flops_per_mac_per_image_over_the_peak():
    assert bench.training_flops(5) == 30
    assert bench.mfu(1000, 10**9, 12e12) == pytest.approx(0.5)  # 1000 img/s x 6 GFLOP = 6 TFLOP/s of 12
    assert bench.mfu(250, 2 * 10**9, 12e12) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="positive"):
        bench.mfu(1.0, 1, 0.0)


def test_matmul_peak_counts_two_flops_per_multiply_add(monkeypatch):
    calls = []

    def fake_timer(fns, steps, repeats, device):
        [fn] = fns.values()
        calls.append(fn())  # the timed call really multiplies
        return {"matmul": 0.5}

    monkeypatch.setattr(peak, "timed_in_turns", fake_timer)
    p = bench.matmul_peak("cpu", size=64, steps=4)
    assert p.flops == pytest.approx(2 * 64**3 * 4 / 0.5) and p.dtype == torch.float32 and p.size == 64
    assert calls[0].shape == (64, 64) and "float32 matmul 64x64" in p.describe()
    real = bench.matmul_peak("cpu", size=64, steps=2, repeats=1)
    assert math.isfinite(real.flops) and real.flops > 0


def test_reference_transform_normalises_and_keeps_shape_and_dtype():
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    colour = torch.tensor([51, 102, 204], dtype=torch.uint8)
    images = colour.expand(2, 32, 32, 3).clone()
    dataset = bench_data.PilCifar(images, torch.tensor([3, 7]), bench_data.reference_transform(mean, std, crop_pad=0))
    x, y = dataset[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 7
    expected = (colour.float() / 255 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(x, expected[:, None, None].expand(3, 32, 32))


def test_reference_transform_is_a_zero_padded_random_crop_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 32, 32, 3), generator=g, dtype=torch.uint8)
    dataset = bench_data.PilCifar(image, torch.tensor([0]), bench_data.reference_transform((0, 0, 0), (1, 1, 1)))
    padded = torch.nn.functional.pad(image[0].permute(2, 0, 1).float() / 255, (4, 4, 4, 4))
    candidates = [w for dy in range(9) for dx in range(9) for w in
                  (padded[:, dy:dy + 32, dx:dx + 32], padded[:, dy:dy + 32, dx:dx + 32].flip(2))]
    torch.manual_seed(1)
    for _ in range(4):
        x, _ = dataset[0]
        assert any(torch.allclose(x, c, atol=1e-6) for c in candidates)


def test_reference_loader_batches_normalised_images_in_a_new_order():
    data = bench_data.synthetic_cifar(train_images=20, test_images=2)
    batches = list(bench_data.reference_loader(data, batch_size=8, workers=0, pin_memory=False))
    assert len(batches) == 2  # drop_last: 20 images make two full batches of 8
    x, y = batches[0]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -2.5 < x.mean() < 2.5 and 0.5 < x.std() < 2  # normalised with the data's statistics
    with pytest.raises(ValueError, match="workers"):
        bench_data.reference_loader(data, batch_size=8, workers=-1, pin_memory=False)


def test_synthetic_data_has_cifar_shapes_and_its_own_statistics():
    data = bench_data.synthetic_cifar(train_images=200, test_images=10)
    assert data.train_images.shape == (200, 32, 32, 3) and data.train_images.dtype == torch.uint8
    pixels = data.train_images.float() / 255
    assert abs(pixels.mean() - data.mean[0]) < 0.02 and abs(pixels.std() - data.std[0]) < 0.02


def test_missing_cifar_falls_back_to_synthetic_data_and_says_why():
    data, about = bench_data.bench_data("/nonexistent/cifar")
    assert data.source == "synthetic" and "no CIFAR here" in about and "/nonexistent/cifar" in about
    with pytest.raises(dk.DataError):
        bench_data.bench_data("/nonexistent/cifar", fallback=False)


class _Hooked(torch.nn.Module):
    """A tiny net with a ``loss`` hook, to see that both paths train on the model's own objective."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10))
        self.losses = 0

    def forward(self, x):
        return self.net(x)

    def loss(self, logits, y):
        self.losses += 1
        return torch.nn.functional.cross_entropy(logits, y)


def test_both_steps_train_the_model_on_its_own_loss():
    data = bench_data.synthetic_cifar(train_images=16, test_images=2)
    recipe = dk.recipes.WRN
    for make in (lambda m: steps.reference_step(m, bench_data.reference_loader(data, 8, 0, False), recipe,
                                                torch.device("cpu")),
                 lambda m: steps.fast_step(m, data, recipe, 8, torch.device("cpu"))):
        model = _Hooked()
        before = [p.detach().clone() for p in model.parameters()]
        step = make(model)
        for _ in range(3):  # more steps than one epoch has batches
            step()
        assert model.losses == 3 and all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="exceeds"):
        steps.fast_step(_Hooked(), data, recipe, 32, torch.device("cpu"))


def test_cuda_graph_compile_modes_fall_back_off_cuda():
    cpu = torch.device("cpu")
    assert steps.compile_mode_for(None, cpu) == (None, None)
    assert steps.compile_mode_for("default", cpu) == ("default", None)
    assert steps.compile_mode_for("max-autotune-no-cudagraphs", cpu) == ("max-autotune-no-cudagraphs", None)
    for graphs in ("reduce-overhead", "max-autotune"):
        mode, why = steps.compile_mode_for(graphs, cpu)
        assert mode is None and "CUDA graphs" in why and graphs in why
    with pytest.raises(ValueError, match="unknown compile mode"):
        steps.compile_mode_for("fastest", cpu)


def test_timed_rounds_run_untimed_lead_in_steps_before_every_round():
    calls = {"a": 0, "b": 0}

    def step_of(name):
        def step():
            calls[name] += 1
        return step

    timed = paths._timed_rounds({"a": paths._Path(step_of("a"), 4, None, 0.0),
                                 "b": paths._Path(step_of("b"), 0, None, 0.0)}, 2, 3, torch.device("cpu"))
    assert calls == {"a": 3 * (4 + 2), "b": 3 * 2}
    assert all(seconds >= 0 and memory is None for seconds, memory in timed.values())


def test_path_speed_row_is_consistent(one_thread):
    data = bench_data.synthetic_cifar(train_images=64, test_images=2)
    fake_peak = bench.MatmulPeak(1e11, torch.float32, 64, "cpu")
    [r] = bench.path_speed(["wrn-10-1"], data, batch_size=8, fast_batch_size=16, steps=1, repeats=1, workers=0,
                           peak=fake_peak)
    assert r["model"] == "wrn-10-1" and (r["batch"], r["fast_batch"]) == (8, 16)
    assert r["macs"] == dk.count_macs(dk.build_model("wrn-10-1"))
    for key in ("ref_img_s", "fast_img_s", "unfolded_img_s", "folded_img_s", "fast_warmup_s"):
        assert math.isfinite(r[key]) and r[key] > 0
    assert r["ratio"] == pytest.approx(r["fast_img_s"] / r["ref_img_s"])
    assert r["fast_mfu"] == pytest.approx(r["fast_img_s"] * 6 * r["macs"] / 1e11)
    assert r["ref_peak_bytes"] is None and r["fast_peak_bytes"] is None  # no allocator counter on CPU
    with pytest.raises(ValueError, match="batch size"):
        bench.path_speed(["wrn-10-1"], data, batch_size=65, peak=fake_peak)


def test_paths_command_prints_both_paths_for_every_model(capsys, one_thread):
    bench.main(["paths", "--models", "wrn-10-1", "diracnet-10-1", "--batch-size", "8", "--steps", "1", "--repeats",
                "1", "--workers", "1", "--data", "/nonexistent/cifar", "--peak-size", "64", "--compile",
                "reduce-overhead", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# python -m dirackit.bench paths") and "torch" in out[1]
    assert out[2].startswith("data: synthetic") and "no CIFAR here" in out[2]
    assert any(line.startswith("skipped on cpu: --compile reduce-overhead") for line in out)
    assert any(line.startswith("fast: ") and "compile off" in line for line in out)
    assert any(line.startswith("peak: ") and "float32 matmul 64x64" in line for line in out)
    header = next(i for i, line in enumerate(out) if line.startswith("model "))
    assert "ref img/s" in out[header] and "fast MFU" in out[header] and "folded img/s" in out[header]
    rows = [line.split() for line in out[header + 1:]]
    assert [r[0] for r in rows] == ["wrn-10-1", "diracnet-10-1"]
    for r in rows:
        assert len(r) == 14 and r[2] == "8/8" and r[6] == r[7] == "n/a"
        ref, fast = (float(v.replace(",", "")) for v in r[3:5])
        assert ref > 0 and fast > 0
        ratio = float(r[5].rstrip("x"))  # the printed img/s are rounded to whole images
        assert (fast - 0.5) / (ref + 0.5) - 0.005 <= ratio <= (fast + 0.5) / (ref - 0.5) + 0.005
        assert all(float(v.rstrip("%")) > 0 for v in r[8:10]) and r[-1].endswith("x")
        assert all(float(v.replace(",", "")) > 0 for v in r[11:13])


def test_time_to_accuracy_stops_at_the_target(make_data, one_thread):
    data = make_data(num_classes=4, train_per_class=16, test_per_class=4)
    recipe = dk.recipes.FAST.replace(epochs=3, batch_size=16)
    r = bench.time_to_accuracy("wrn-10-1", data, recipe, target=0.01)
    assert r["reached"] and r["epoch"] == 1 and 0 < r["fit_seconds"] <= r["seconds"]
    r = bench.time_to_accuracy("wrn-10-1", data, recipe.replace(epochs=2), target=None)
    assert not r["reached"] and r["epoch"] == 2 and r["best_acc"] >= r["test_acc"] >= 0
    with pytest.raises(ValueError, match="target"):
        bench.time_to_accuracy("wrn-10-1", data, recipe, target=90)


def test_time_to_accuracy_command_says_when_the_target_is_missed(capsys, one_thread):
    bench.main(["time-to-accuracy", "--models", "wrn-10-1", "--synthetic", "--subset", "10", "--epochs", "1",
                "--batch-size", "20", "--target", "0.99", "--test-flip", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# python -m dirackit.bench time-to-accuracy") and "chance" in out[2]
    assert "label_smoothing=0.1, test_flip=True" in out[3]
    header = next(i for i, line in enumerate(out) if line.startswith("model "))
    row = out[header + 1].split()
    assert row[:4] == ["wrn-10-1", "99.0%", "no", "1/1"] and float(row[4]) > 0
    assert out[-1].startswith("wrn-10-1: target 99.0% not reached in 1 epochs")


def test_time_to_accuracy_needs_cifar_unless_synthetic(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["time-to-accuracy", "--data", "/nonexistent/cifar"])
    assert exit_info.value.code == 2 and "needs CIFAR" in capsys.readouterr().err
