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
