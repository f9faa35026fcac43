"""The depth-versus-width explorer's numbers: what the sliders show must be the real model's."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import dirackit as dk  # noqa: E402
from dirackit import explore  # noqa: E402


@pytest.mark.parametrize("depth, width", [(10, 1), (16, 4), (22, 2)])
def test_describe_shows_the_built_models_parameters_and_macs(depth, width):
    name = explore.wrn_name(depth, width)
    info = explore.describe(name)
    model = dk.build_model(name)
    assert info["params"] == dk.count_params(model) and info["macs"] == dk.count_macs(model)
    assert info["total_mib"] == pytest.approx(info["weights_grads_momentum_mib"] + info["activations_mib"])


def test_memory_estimate_counts_state_and_each_kept_activation():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(inplace=True),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 32 * 32, 10))
    mem = explore.training_memory(model, batch_size=8)
    params = sum(p.numel() for p in model.parameters())
    assert mem["weights_grads_momentum_mib"] == pytest.approx(3 * params * 4 / 2 ** 20)
    kept = 4 * 32 * 32 + 4 * 32 * 32 + 10  # conv out, flatten out (a view, still counted), linear out
    assert mem["activations_mib"] == pytest.approx(8 * kept * 4 / 2 ** 20)
    # wider costs more activations at the same depth, in proportion to the width
    narrow, wide = (explore.describe(explore.wrn_name(16, k))["activations_mib"] for k in (1, 2))
    assert 1.8 < wide / narrow < 2.1


def test_measured_speed_is_cached():
    explore.measured_speed.cache_clear()
    first = explore.measured_speed("wrn-10-1", batch_size=4, steps=1)
    assert first > 0 and explore.measured_speed("wrn-10-1", batch_size=4, steps=1) == first
    assert explore.measured_speed.cache_info().hits == 1


@pytest.mark.parametrize("depth, width, message", [(12, 1, "6n\\+4"), (4, 1, "6n\\+4"), (16, 0, "positive")])
def test_impossible_wrn_is_refused_with_the_rule(depth, width, message):
    with pytest.raises(ValueError, match=message):
        explore.wrn_name(depth, width)


def test_paper_rows_name_registry_models_of_the_published_size():
    for row in explore.PAPER_RESULTS:
        if row["name"]:
            assert dk.count_params(dk.build_model(row["name"])) / 1e6 == pytest.approx(row["params_m"], rel=0.03)


def test_paper_plot_marks_each_chosen_network():
    fig = dk.viz.plot_paper_configs({"a": 2_000_000, "b": 9_000_000}, dataset="c100")
    ax = fig.axes[0]
    assert [line.get_xdata()[0] for line in ax.lines] == [2.0, 9.0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(explore.PAPER_RESULTS)
    with pytest.raises(ValueError, match="c10"):
        dk.viz.plot_paper_configs(dataset="svhn")


def test_bokeh_curves_draw_every_run_and_split(make_data):
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from dirackit.runlog import RunLog
    runs = [RunLog(None, {"model": {"name": name}}, [
        {"epoch": e, "train_loss": 2.0 / e, "test_loss": 2.2 / e, "train_acc": 0.1 * e, "test_acc": 0.09 * e}
        for e in (1, 2, 3)]) for name in ("wrn-16-4", "preresnet-164")]
    layout = dk.viz.bokeh_curves(runs)
    loss, error = layout.children
    assert loss.y_scale.__class__.__name__ == "LogScale"
    lines = [r for r in error.renderers]
    assert len(lines) == 4 and len(loss.renderers) == 4
    data = lines[1].data_source.data  # wrn-16-4, test split
    assert data["split"][0] == "test" and data["error"] == pytest.approx([91.0, 82.0, 73.0])
    assert {item.label["value"] for item in error.legend[0].items} == {"wrn-16-4", "preresnet-164"}
    assert error.legend[0].click_policy == "hide" and error.legend[0].title.startswith("dashed train, solid test")
    assert error.legend[0] in error.below  # under the plot, not over the curves
    assert [line.glyph.line_dash for line in lines[:2]] == [[6], []]  # bokeh's "dashed", then solid
    assert error.xaxis[0].ticker.min_interval == 1
    assert "Bokeh" in file_html(layout, INLINE, "curves")  # renders standalone, no CDN
    with pytest.raises(ValueError, match="no runs"):
        dk.viz.bokeh_curves([])


def test_try_network_trains_and_reports_the_run(make_data, tmp_path):
    recipe = dk.Recipe(epochs=2, batch_size=16, lr=0.05, precision="fp32", channels_last=False)
    row = explore.try_network("wrn-10-1", make_data(), recipe, tmp_path, dropout=0.3, device="cpu")
    run = dk.runlog.RunLog.read(tmp_path / "wrn-10-1-dropout0.3")
    assert row["test_acc"] == run.rows[-1]["test_acc"] and row["epochs"] == 2
    assert row["params"] == dk.count_params(dk.build_model("wrn-10-1", num_classes=4))
    assert run.header["model"]["options"] == {"dropout": 0.3}
    with pytest.raises(Exception, match="exists|already"):
        explore.try_network("wrn-10-1", make_data(), recipe, tmp_path, dropout=0.3, device="cpu")


def test_cost_table_counts_each_network_and_quotes_the_paper_where_it_has_a_figure():
    table = explore.cost_table(["wrn-40-1", "wrn-10-1"], batch_size=2)
    for name in ("wrn-40-1", "wrn-10-1"):
        model = dk.build_model(name)
        row = table.loc[name.upper()]
        assert row.params_m == dk.count_params(model) / 1e6 and row.macs_g == dk.count_macs(model) / 1e9
        assert row.train_img_s > 0
    assert table.loc["WRN-40-1"].paper_error_pct == 6.85  # the width/depth table's figure
    assert table.loc["WRN-10-1"].isna().paper_error_pct  # the paper trained no WRN-10-1


def test_param_breakdown_splits_a_wrn_count_by_layer_kind():
    parts = explore.param_breakdown(dk.build_model("wrn-10-2"))
    widths = (16, 32, 64, 128)  # stem, then one block per stage at 16k, 32k, 64k with k=2
    convs3 = 9 * (3 * 16 + sum(a * b + b * b for a, b in zip(widths, widths[1:])))
    assert parts["3x3 conv"] == convs3
    assert parts["1x1 conv"] == sum(a * b for a, b in zip(widths, widths[1:]))  # a shortcut where the width changes
    assert parts["BatchNorm"] == 2 * sum(a + b for a, b in zip(widths, widths[1:])) + 2 * 128  # 2 BNs a block, final BN
    assert parts["Linear"] == 128 * 10 + 10
    assert sum(parts.values()) == dk.count_params(dk.build_model("wrn-10-2"))
