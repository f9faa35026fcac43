"""The comparison table of notebook 05: read back from real (tiny) runs."""
import pytest

import dirackit as dk
from dirackit import compare

TINY = dk.Recipe(epochs=2, batch_size=16, lr=0.05, precision="fp32", channels_last=False)


@pytest.mark.parametrize("name, family", [("wrn-16-4", "WRN"), ("preresnet-164", "pre-act ResNet"),
                                          ("diracnet-34-2", "DiracNet"), ("plain-34-2", "plain (no skips)"),
                                          ("g-resnext-29-8x4d", "G-ResNeXt"), ("resnext-29-8x4d", "ResNeXt"),
                                          ("vgg16", "plain conv-BN"), ("resnet18-dbb", "DBB"),
                                          ("vgg16-odbb", "online DBB"), ("mystery-1", "other")])
def test_family_of_every_registered_kind(name, family):
    assert compare.family_of(name) == family


def test_summary_and_deploy_speed_of_real_runs(make_data, tmp_path):
    data = make_data()
    for name in ("diracnet-10-1", "vgg16-dbb", "g-resnext-11-8x4d"):
        options = {"base_channels": 4} if name.startswith("vgg") else {}
        dk.fit(dk.build_model(name, num_classes=4, **options), data, TINY, tmp_path / name, progress=False,
               device="cpu")
    table = compare.summarize_runs(tmp_path).set_index("model")
    assert list(table.family) == ["DiracNet", "G-ResNeXt", "DBB"]
    assert list(table.dataset) == ["4 classes"] * 3  # from each run's header, for notebook 05's filter
    run = dk.load_runs(tmp_path / "vgg16-dbb")
    assert table.test_acc["vgg16-dbb"] == run["test_acc"].iloc[-1]
    assert table.train_img_s["vgg16-dbb"] == run["images_per_s"].iloc[1]  # epoch 1 (warm-up) left out
    assert table.params["vgg16-dbb"] == dk.count_params(dk.build_model("vgg16-dbb", num_classes=4, base_channels=4))
    trained_gates = [m.gate_pattern for _, m in dk.load_run(tmp_path / "g-resnext-11-8x4d")[0].dg_convs()]
    for name in ("vgg16-dbb", "g-resnext-11-8x4d"):
        (tmp_path / name / "checkpoint.pt").unlink()  # shipped as in results/: log and provenance only
    rebuilt = dk.load_run(tmp_path / "g-resnext-11-8x4d", weights=False)[0]
    assert [m.gate_pattern for _, m in rebuilt.dg_convs()] == trained_gates  # the learned groups, from the log
    rows = compare.deploy_speed(list(table.run), batch_size=4, steps=1, repeats=1)
    assert [r["run"] for r in rows] == list(table.run) and [r["trained"] for r in rows] == [True, False, False]
    for r in rows:
        assert r["fold_error"] <= 1e-5 and r["fold_speedup"] == pytest.approx(r["folded_img_s"] / r["unfolded_img_s"])
    with pytest.raises(FileNotFoundError, match="no run folders"):
        compare.summarize_runs(tmp_path / "empty")


def test_fold_speed_plot_has_both_bars_per_run():
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd
    table = pd.DataFrame({"model": ["a", "b"], "unfolded_img_s": [100.0, 50.0], "folded_img_s": [120.0, 90.0]})
    heights = [p.get_height() for p in dk.viz.plot_fold_speed(table).axes[0].patches]
    assert heights == [100.0, 50.0, 120.0, 90.0]
