import matplotlib

matplotlib.use("Agg")

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
    assert [t.get_text() for t in err.get_legend().get_texts()][0] == "wrn-16-4 train"


def test_a_one_epoch_run_is_visible():
    """The Train button's short runs: one point per line, which a line without markers would not draw."""
    fig = dk.viz.plot_curves(fake_run("wrn-16-2", 1))
    for ax in fig.axes:
        assert all(line.get_marker() == "." and len(line.get_xdata()) == 1 for line in ax.lines)
        assert ax.get_xlim() == (0.5, 1.5) and [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]


def test_plot_curves_reads_load_runs_frames(tmp_path):
    for name, epochs in (("a", 2), ("b", 3)):
        run = RunLog.create(tmp_path / name, {"model": {"name": name}})
        for row in fake_run(name, epochs).rows:
            run.append(row)
    fig = dk.viz.plot_curves(dk.load_runs(tmp_path))
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [2, 2, 3, 3]


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
