import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import dirackit as dk  # noqa: E402
from dirackit.runlog import RunLog  # noqa: E402


def fake_run(name: str, epochs: int) -> RunLog:
    rows = [{"epoch": e, "train_loss": 2 / e, "test_loss": 2.2 / e, "train_acc": 0.1 * e, "test_acc": 0.09 * e}
            for e in range(1, epochs + 1)]
    return RunLog(None, {"model": {"name": name}}, rows)


def test_plot_curves_draws_train_and_test_of_every_run():
    fig = dk.viz.plot_curves([fake_run("wrn-16-4", 3), fake_run("wrn-40-1", 5)])
    loss, err = fig.axes
    assert len(loss.lines) == len(err.lines) == 4
    assert list(err.lines[1].get_ydata()) == [100 * (1 - 0.09 * e) for e in (1, 2, 3)]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["wrn-16-4", "wrn-40-1", "train", "test"]


def test_a_one_epoch_run_is_visible():
    """The Train button's short runs: one point per line, which a line without markers would not draw."""
    fig = dk.viz.plot_curves(fake_run("wrn-16-2", 1))
    for ax in fig.axes:
        assert all(line.get_marker() == "." and len(line.get_xdata()) == 1 for line in ax.lines)
        assert ax.get_xlim() == (0.5, 1.5) and [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]


def write_run(folder, name: str, epochs: int) -> RunLog:
    run = RunLog.create(folder, {"model": {"name": name}})
    for row in fake_run(name, epochs).rows:
        run.append(row)
    return run


def legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_plot_curves_reads_load_runs_frames(tmp_path):
    for name, epochs in (("a", 2), ("b", 3)):
        write_run(tmp_path / name, name, epochs)
    fig = dk.viz.plot_curves(dk.load_runs(tmp_path))
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [2, 2, 3, 3]


def test_labels_are_model_names_with_a_short_suffix_only_where_two_runs_share_one(tmp_path):
    write_run(tmp_path / "05_compare" / "trained" / "diracnet-10-2", "diracnet-10-2", 2)
    write_run(tmp_path / "02_diracnets" / "diracnet-10-2", "diracnet-10-2", 2)
    write_run(tmp_path / "05_compare" / "trained" / "plain-10-2", "plain-10-2", 2)
    labels = legend_labels(dk.viz.plot_curves(dk.load_runs(tmp_path)))[:3]
    assert sorted(labels) == ["diracnet-10-2 (02_diracnets)", "diracnet-10-2 (05_compare/trained)", "plain-10-2"]
    from dirackit.viz.curves import run_labels
    assert run_labels(["a", "b"], ["/x/runs/a", "/x/runs/b"]) == ["a", "b"]
    assert run_labels(["a", "a"], ["runs/seed0/a", "runs/seed1/a"]) == ["a (seed0)", "a (seed1)"]
    assert run_labels(["a", "a"], [None, None]) == ["a #1", "a #2"]
    bokeh = dk.viz.bokeh_curves(dk.load_runs(tmp_path))
    shown = {item.label.value for fig in bokeh.children for item in fig.legend[0].items}
    assert shown == set(labels)


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_sit_outside_every_axes():
    figures = [dk.viz.plot_curves([fake_run(f"wrn-{d}-1", 4) for d in (10, 16, 22, 28, 40)]),
               dk.viz.plot_paper_configs({"WRN-16-2": 691_674}),
               dk.viz.plot_complexity({"a": RunLog(None, {}, [{"epoch": e, "zeta_ratio": 1.5 / e} for e in (1, 2)])})]
    for fig in figures:
        fig.draw_without_rendering()
        legend = fig.legends[0].get_window_extent()
        assert not any(overlaps(legend, ax.get_window_extent()) for ax in fig.axes), fig.axes[0].get_title()
        assert all(ax.get_legend() is None for ax in fig.axes)


def visible_tick_labels(axis):
    low, high = sorted(axis.get_view_interval())
    return [t for t, value in zip(axis.get_ticklabels(), axis.get_ticklocs())
            if t.get_text() and low <= value <= high]


@pytest.mark.parametrize("test_loss", [[2.6, 2.1, 1.8], [1.2e6, 2.4, 1.9]])  # within a decade; over six
def test_log_loss_axis_says_so_and_its_tick_labels_do_not_overlap(test_loss):
    rows = [{"epoch": e + 1, "train_loss": 2.0, "test_loss": v, "train_acc": 0.3, "test_acc": 0.3}
            for e, v in enumerate(test_loss)]
    fig = dk.viz.plot_curves(RunLog(None, {"model": {"name": "plain-52-1"}}, rows))
    fig.draw_without_rendering()
    loss = fig.axes[0]
    assert loss.get_yscale() == "log" and loss.get_ylabel() == "cross-entropy (log scale)"
    labels = visible_tick_labels(loss.yaxis)
    assert len(labels) >= 2 and all("times" not in t.get_text() for t in labels)  # no 9x10^0 labels
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda box: box.y0)
    assert all(lower.y1 <= upper.y0 for lower, upper in zip(boxes, boxes[1:]))
    assert not [t for t in loss.yaxis.get_minorticklabels() if t.get_text()]


def test_bar_labels_stay_inside_the_figure():
    import pandas as pd
    table = pd.DataFrame({"model": ["g-resnext-29-8x4d", "resnext-29-32x4d", "vgg16-dbb"],
                          "unfolded_img_s": [210.0, 180.0, 240.0], "folded_img_s": [230.0, 185.0, 1290.0]})
    fig = dk.viz.plot_fold_speed(table)
    fig.draw_without_rendering()
    figure_box = fig.bbox
    for label in fig.axes[0].get_xticklabels():
        box = label.get_window_extent()
        assert box.x0 >= figure_box.x0 and box.y0 >= figure_box.y0, label.get_text()


def test_live_curves_is_silent_outside_a_notebook():
    live = dk.viz.LiveCurves()
    live({}, fake_run("x", 2))
    assert live.handle is None


def test_image_grid_shows_the_first_images_of_each_class():
    labels = torch.tensor([0, 1, 0, 1, 1])
    images = torch.arange(5, dtype=torch.uint8)[:, None, None, None].expand(5, 32, 32, 3).contiguous()
    fig = dk.viz.image_grid(images, labels, ("a", "b"), per_class=2)
    shown = [ax.images[0].get_array()[0, 0, 0] for ax in fig.axes if ax.images]
    assert shown == [0, 2, 1, 3]


def test_every_plot_shows_itself_as_an_image_in_a_notebook():
    # IPython calls _repr_png_ when no formatter for matplotlib figures is registered (papermill runs)
    fig = dk.viz.plot_curves(RunLog(None, {}, [{"epoch": 1, "train_loss": 2.0, "test_loss": 2.1,
                                                 "train_acc": 0.3, "test_acc": 0.25}]))
    assert isinstance(fig, dk.viz.NotebookFigure)
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_every_colour_bar_says_what_its_colours_measure():
    from dirackit.layers import DGConv2d

    torch.manual_seed(0)
    frame = RunLog(None, {}, [{"epoch": e, "dg_groups": [8, 4], "zeta_ratio": 1.0} for e in (1, 2)])
    figures = [dk.viz.dirac_heatmap(dk.build_model("diracnet-10-1")),
               dk.viz.plot_folded_filters(torch.randn(4, 4, 3, 3)),
               dk.viz.plot_masked_weight(DGConv2d(8, 8, 3)),
               dk.viz.plot_group_history(frame)]
    bars = [ax for fig in figures for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 8 and all(ax.get_ylabel() for ax in bars), [ax.get_ylabel() for ax in bars]


def test_tables_are_rounded_to_what_their_numbers_support():
    import pandas as pd
    table = pd.DataFrame({"model": ["a", "b"], "params": [298922, 135898], "test_acc": [0.10612, 0.2764],
                          "folded_img_s": [832.36667, 92.0954], "fold_error": [7.04e-07, 1.2189e-07]})
    shown = dk.viz.rounded(table)
    assert shown["folded_img_s"].tolist() == ["832", "92.1"] and shown["test_acc"].tolist() == ["0.106", "0.276"]
    assert shown["fold_error"].tolist() == ["7.0e-07", "1.2e-07"] and shown["params"].tolist() == [298922, 135898]
    assert table["folded_img_s"][0] == 832.36667  # the frame itself keeps full precision
    for text in (shown.to_string(), shown.to_html()):
        assert "832.3" not in text and "7.04e-07" not in text and "e-07</td>" in shown.to_html()
    from dirackit.viz.tables import significant
    assert [significant(v, 3) for v in (2290.4, 1.1, 0.0, float("nan"), -0.0123456)] == \
        ["2290", "1.10", "0", "", "-0.0123"]
