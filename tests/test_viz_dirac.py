import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from torch import nn  # noqa: E402

import dirackit as dk  # noqa: E402
from dirackit.layers import DiracConv2d  # noqa: E402
from dirackit.runlog import RunLog  # noqa: E402


@pytest.fixture
def diracnet():
    """diracnet-16-1 (12 Dirac convs, widths 16/32/64) with alpha[d][c] = d + c / (C - 1), beta = 0.5."""
    torch.manual_seed(0)
    model = dk.build_model("diracnet-16-1")
    with torch.no_grad():
        for d, (_, conv) in enumerate(model.dirac_convs(), start=1):
            conv.alpha.copy_(d + torch.linspace(0, 1, conv.out_channels))
            conv.beta.fill_(0.5)
    return model


def dirac_run(ratios: list[list[float]], **columns) -> RunLog:
    rows = [{"epoch": e, "dirac_ratio": r, **columns} for e, r in enumerate(ratios, start=1)]
    return RunLog(None, {"model": {"name": "diracnet-10-1"}}, rows)


def test_plot_dirac_params_draws_per_layer_statistics_and_group_boundaries(diracnet):
    fig = dk.viz.plot_dirac_params(diracnet)
    ax_alpha, ax_beta, ax_ratio = fig.axes
    mean, *boundaries = ax_alpha.lines
    assert list(mean.get_xdata()) == list(range(1, 13))
    assert np.allclose(mean.get_ydata(), np.arange(1, 13) + 0.5)
    band = ax_alpha.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(1) and band.max() == pytest.approx(13)
    assert np.allclose(ax_beta.lines[0].get_ydata(), 0.5)
    assert ax_ratio.get_yscale() == "log"
    assert list(ax_ratio.lines[0].get_ydata()) == pytest.approx(diracnet.log_state()["dirac_ratio"], rel=1e-4)
    for ax in fig.axes:
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert [line.get_xdata()[0] for line in dashed] == [4.5, 8.5]


def test_the_initial_values_are_drawn_beside_the_trained_ones(diracnet):
    fresh = dk.build_model("diracnet-16-1")  # alpha 1, beta 0.1 everywhere
    fig = dk.viz.plot_dirac_params(diracnet, initial=fresh)
    ax_alpha, ax_beta, ax_ratio = fig.axes
    dotted = lambda ax: [line for line in ax.lines if line.get_linestyle() == ":"]
    assert np.allclose(dotted(ax_alpha)[0].get_ydata(), 1) and np.allclose(dotted(ax_beta)[0].get_ydata(), 0.1)
    assert np.allclose(dotted(ax_ratio)[0].get_ydata(), 10, rtol=1e-5)
    assert "at initialisation" in [t.get_text() for t in fig.legends[0].get_texts()]  # below all three panels
    with pytest.raises(ValueError, match="not the same network"):
        dk.viz.plot_dirac_params(diracnet, initial=dk.build_model("diracnet-10-1"))


def test_dirac_movement_measures_how_far_a_and_b_moved(diracnet):
    from dirackit.diagnostics import dirac_movement
    moved = dirac_movement(dk.build_model("diracnet-16-1"), diracnet)
    assert list(moved.depth) == list(range(1, 13))
    assert np.allclose(moved.alpha_initial, 1) and np.allclose(moved.alpha_trained, np.arange(1, 13) + 0.5)
    assert np.allclose(moved.alpha_change, np.arange(1, 13) - 0.5)  # mean |(d + c/(C-1)) - 1| / 1
    assert np.allclose(moved.beta_change, 4.0)  # 0.1 -> 0.5
    unchanged = dirac_movement(diracnet, diracnet)
    assert (unchanged[["alpha_change", "beta_change"]] == 0).all().all()
    with pytest.raises(ValueError, match="no Dirac convs"):
        dirac_movement(dk.build_model("plain-16-1"), dk.build_model("plain-16-1"))


def test_plain_nets_have_no_dirac_parameters_to_plot():
    with pytest.raises(ValueError, match="only DiracNets"):
        dk.viz.plot_dirac_params(dk.build_model("plain-16-1"))
    with pytest.raises(ValueError, match="no Dirac convs"):
        dk.viz.dirac_heatmap(dk.build_model("wrn-10-1"))


def test_dirac_heatmap_pads_narrow_layers_with_nan(diracnet):
    fig = dk.viz.dirac_heatmap(diracnet)
    assert len(fig.axes) == 4  # two maps, then two colorbars
    alpha = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    assert alpha.shape == (64, 12)
    assert np.allclose(alpha[:16, 0], 1 + np.linspace(0, 1, 16)) and np.isnan(alpha[16:, 0]).all()
    assert np.isnan(alpha[32:, 4:8]).all() and not np.isnan(alpha[:, 8:]).any()
    beta = np.ma.filled(fig.axes[1].images[0].get_array(), np.nan)
    assert np.allclose(beta[:, 8:], 0.5)


def test_plot_dirac_evolution_draws_one_line_per_layer_coloured_by_depth(tmp_path):
    ratios = [[10.0, 9.0, 8.0], [9.0, 7.0, 5.0], [8.5, 6.0, 3.0], [8.0, 5.0, 2.0]]
    fig = dk.viz.plot_dirac_evolution(dirac_run(ratios))
    ax, colorbar = fig.axes
    assert len(ax.lines) == 3
    for d, line in enumerate(ax.lines):
        assert list(line.get_xdata()) == [1, 2, 3, 4]
        assert list(line.get_ydata()) == [row[d] for row in ratios]
    assert ax.lines[0].get_color() == colormaps["viridis"](0.0)
    assert ax.lines[-1].get_color() == colormaps["viridis"](1.0)
    assert colorbar.get_ylabel().startswith("layer depth") and ax.get_yscale() == "log"

    run = RunLog.create(tmp_path / "run", {"model": {"name": "diracnet-10-1"}})
    for row in dirac_run(ratios).rows:
        run.append(row)
    from_disk = dk.viz.plot_dirac_evolution(dk.load_runs(tmp_path)).axes[0]
    assert [list(line.get_ydata()) for line in from_disk.lines] == [list(line.get_ydata()) for line in ax.lines]


def test_plot_dirac_evolution_rejects_logs_without_dirac_state():
    plain = RunLog(None, {}, [{"epoch": 1, "train_loss": 2.0}])
    with pytest.raises(ValueError, match="not from a DiracNet"):
        dk.viz.plot_dirac_evolution(plain)
    with pytest.raises(ValueError, match="several runs"):
        two = pd.concat([dirac_run([[1.0]]).frame().assign(run=name) for name in "ab"])
        dk.viz.plot_dirac_evolution(two)


def test_plot_folded_filters_shows_kernels_and_centre_tap():
    torch.manual_seed(0)
    conv = nn.Conv2d(20, 24, 3)
    weight = conv.weight.detach()
    fig = dk.viz.plot_folded_filters(conv, max_channels=16)
    mosaic = fig.axes[0].images[0].get_array()
    centre = fig.axes[1].images[0].get_array()
    assert mosaic.shape == (16 * 4 - 1, 16 * 4 - 1)
    assert np.allclose(mosaic[4 * 5:4 * 5 + 3, 4 * 7:4 * 7 + 3], weight[5, 7].numpy())
    assert np.ma.getmaskarray(mosaic)[3, :].all()  # one-pixel gap
    clim = fig.axes[0].images[0].get_clim()
    assert clim[1] == -clim[0] > 0  # symmetric around 0
    assert np.allclose(centre, weight[:, :, 1, 1].numpy())
    taps = weight[:, :, 1, 1].abs()
    diagonal = torch.eye(24, 20, dtype=torch.bool)
    title = fig.get_suptitle()
    assert f"{taps[diagonal].mean():.3g}" in title and f"{taps[~diagonal].mean():.3g}" in title


def test_plot_folded_filters_uses_the_effective_weight_of_a_dirac_conv():
    torch.manual_seed(0)
    conv = DiracConv2d(16, 16, 3, padding=1, bias=False)
    expected = conv.effective_weight().detach()[:, :, 1, 1].numpy()
    for source in (conv, conv.fold(), conv.effective_weight().detach()):
        fig = dk.viz.plot_folded_filters(source)
        assert np.allclose(fig.axes[1].images[0].get_array(), expected)
    diagonal = float(fig.get_suptitle().split("|diagonal| ")[1].split(" ")[0])
    off = float(fig.get_suptitle().split("|off-diagonal| ")[1])
    assert diagonal > 10 * off  # alpha = 1 identity over beta = 0.1 normalised filters
    with pytest.raises(ValueError, match="4-D"):
        dk.viz.plot_folded_filters(torch.zeros(3, 3, 3))


def test_plot_signal_profile_draws_both_magnitudes_per_label():
    profiles = {label: pd.DataFrame({"depth": [1, 2, 3], "activation_rms": [1.0, 0.9, 1.1],
                                     "grad_rms": [scale ** 2, scale, 1.0]})
                for label, scale in (("plain", 100.0), ("dirac", 1.0))}
    fig = dk.viz.plot_signal_profile(profiles)
    ax_act, ax_grad = fig.axes
    assert len(ax_act.lines) == len(ax_grad.lines) == 2
    assert list(ax_grad.lines[0].get_ydata()) == [1e4, 100.0, 1.0]
    assert list(ax_act.lines[1].get_ydata()) == [1.0, 0.9, 1.1]
    assert ax_act.get_yscale() == ax_grad.get_yscale() == "log"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["plain", "dirac"]
