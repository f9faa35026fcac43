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
        assert r["deployed_macs"] <= r["macs"] and r["deployed_params"] < table.params[r["run"].split("/")[-1]]
    with pytest.raises(FileNotFoundError, match="no run folders"):
        compare.summarize_runs(tmp_path / "empty")


def test_fold_speed_plot_has_both_bars_per_run():
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd
    table = pd.DataFrame({"model": ["a", "b"], "unfolded_img_s": [100.0, 50.0], "folded_img_s": [120.0, 90.0]})
    heights = [p.get_height() for p in dk.viz.plot_fold_speed(table).axes[0].patches]
    assert heights == [100.0, 50.0, 120.0, 90.0]


def fake_run(folder, model: str, correct, train_acc: float = 0.5, test_set: str = "same images"):
    """A finished one-epoch run folder with a given per-image correctness on the test set (no training)."""
    import numpy as np
    correct = np.asarray(correct, dtype=bool)
    header = {"model": {"name": model, "options": {}, "num_classes": 10}, "num_params": 1000,
              "data": {"classes": [f"c{i}" for i in range(10)], "train_images": 2000, "test_images": len(correct)}}
    log = dk.RunLog.create(folder / model, header)
    log.append({"epoch": 1, "train_acc": train_acc, "test_acc": float(correct.mean()), "images_per_s": 100.0})
    log.write_test_correct(1, correct, test_set)
    return log.dir


def correctness(n: int, right: int, offset: int = 0):
    """``right`` of ``n`` images correct, starting at ``offset`` (wrapping): overlap sets the disagreements."""
    import numpy as np
    return np.roll(np.arange(n) < right, offset)


def test_each_idea_meets_its_own_control_and_takes_its_verdict_from_the_runs(tmp_path):
    for model, correct in (("diracnet-52-1", correctness(1000, 300)), ("plain-52-1", correctness(1000, 130)),
                           ("vgg16-dbb", correctness(1000, 400)), ("vgg16", correctness(1000, 395, 10)),
                           ("vgg16-odbb", correctness(1000, 450)),
                           ("g-resnext-11-8x4d", correctness(1000, 200)), ("resnext-11-8x4d", correctness(1000, 350)),
                           ("wrn-10-2", correctness(1000, 500)), ("plain-10-2", correctness(1000, 100))):
        fake_run(tmp_path, model, correct)
    table = compare.summarize_runs(tmp_path)
    findings = compare.pair_findings(table)
    pairs = [f.claim.split("[")[1] for f in findings]
    assert pairs == ["diracnet-52-1 vs plain-52-1]", "g-resnext-11-8x4d vs resnext-11-8x4d]", "vgg16-dbb vs vgg16]",
                     "vgg16-odbb vs vgg16]"]  # wrn-10-2 has no pre-act ResNet here, plain-10-2 no DiracNet
    verdicts = [f.verdict for f in findings]
    assert verdicts == ["shown", "contradicted here", "within noise at this size", "shown"]
    assert all(f.paper and "CIFAR-10" in findings[0].paper for f in findings) and "McNemar" in findings[0].evidence
    assert [bool(f.note) for f in findings] == [False, True, True, False]  # why not, for noise and contradiction
    assert findings[1].note.startswith("after 1 epoch on 2,000 training images (its paper's recipe runs 300 epochs")
    assert findings[1].note.endswith("yet tests worse: in this run it generalises worse")  # both fit their training images equally (0.5)
    fake_run(tmp_path / "short", "g-resnext-11-8x4d", correctness(1000, 200), train_acc=0.3)
    fake_run(tmp_path / "short", "resnext-11-8x4d", correctness(1000, 350))
    note = compare.pair_findings(compare.summarize_runs(tmp_path / "short"))[0].note
    assert "train accuracy 30.0% vs 50.0%): it is behind in training, not only in generalisation" in note


def test_the_most_accurate_run_names_the_runs_a_test_set_this_size_cannot_tell_apart(tmp_path):
    for model, right, offset in (("wrn-10-2", 600, 0), ("vgg16", 590, 100), ("plain-10-2", 300, 0)):
        fake_run(tmp_path, model, correctness(1000, right, offset))  # vgg16 disagrees with wrn on 190 images
    table = compare.summarize_runs(tmp_path)
    assert (table.acc_low < table.test_acc).all() and (table.test_acc < table.acc_high).all()
    assert list(table.test_images) == [1000] * 3
    leader = compare.most_accurate(table)
    assert leader.model == "wrn-10-2" and [c.b for c in leader.ties] == ["vgg16"]
    assert "within noise of 1 of the 2 other runs: vgg16 59.0%" in str(leader)
    alone = compare.most_accurate(table[table.model != "vgg16"])
    assert not alone.ties and "every other run is behind it beyond noise" in str(alone)
    with pytest.raises(ValueError, match="table is empty"):
        compare.most_accurate(table.iloc[:0])


def test_deploy_cost_counts_what_inference_runs():
    dbb = dk.build_model("vgg16-dbb", num_classes=10, base_channels=4)
    plain = dk.build_model("vgg16", num_classes=10, base_channels=4)
    cost, plain_cost = compare.deploy_cost(dbb), compare.deploy_cost(plain)
    assert cost["deployed_params"] == plain_cost["deployed_params"] < dk.count_params(dbb)  # one conv per block
    assert cost["deployed_macs"] == plain_cost["deployed_macs"] == plain_cost["macs"] < cost["macs"]


def test_accuracy_against_deployed_cost_marks_what_folding_saved():
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd
    table = pd.DataFrame({"model": ["vgg16", "vgg16-dbb"], "test_acc": [0.5, 0.6], "acc_low": [0.45, 0.55],
                          "acc_high": [0.55, 0.65], "macs": [1e6, 3e6], "deployed_macs": [1e6, 1e6]})
    ax = dk.viz.plot_accuracy_vs_deployed_cost(table).axes[0]
    points = [tuple(line.get_xydata()[0]) for line in ax.lines if line.get_marker() == "o"]
    assert points == [(1e6, 0.5), (1e6, 0.6), (3e6, 0.6)]  # both deployed, and the DBB as trained (hollow)
    spans = [tuple(seg[:, 1]) for c in ax.collections for seg in c.get_segments()]  # an error bar per run
    assert spans == [pytest.approx((0.45, 0.55)), pytest.approx((0.55, 0.65))]
