import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dirackit as dk  # noqa: E402
from dirackit.layers import DGConv2d  # noqa: E402
from dirackit.runlog import RunLog  # noqa: E402


def g_run(groups: list[list[int]], ratios: list[float]) -> RunLog:
    rows = [{"epoch": e, "dg_groups": g, "zeta_ratio": r} for e, (g, r) in enumerate(zip(groups, ratios), start=1)]
    return RunLog(None, {"model": {"name": "g-resnext-11-8x4d"}}, rows)


def test_gate_masks_show_the_matrix_of_each_pattern():
    fig = dk.viz.plot_gate_masks({"grouped": "001", "interleaved": "010", "dense": "11"})
    images = [ax.images[0].get_array() for ax in fig.axes]
    assert np.array_equal(images[0], np.kron(np.eye(4), np.ones((2, 2))))
    assert images[1][0].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]
    assert np.array_equal(images[2], np.ones((4, 4)))
    assert "4 groups" in fig.axes[0].get_title() and "1 group\n" not in fig.axes[2].get_title()
    with pytest.raises(ValueError, match="0/1"):
        dk.viz.plot_gate_masks(["012"])


def test_masked_weight_is_block_diagonal_in_group_order():
    torch.manual_seed(0)
    layer = DGConv2d(16, 16, 3)
    layer.set_gates("1010")  # interleaved: 4 groups of 4
    fig = dk.viz.plot_masked_weight(layer)
    mask, natural, ordered = (ax.images[0].get_array() for ax in fig.axes if ax.images)
    assert np.array_equal(mask, layer.mask().detach().numpy())
    assert np.array_equal(natural != 0, mask != 0)
    assert np.array_equal(ordered != 0, np.kron(np.eye(4), np.ones((4, 4))) != 0)
    with pytest.raises(TypeError, match="DGConv2d"):
        dk.viz.plot_masked_weight(torch.nn.Conv2d(4, 4, 3))


def test_group_history_is_layers_by_epochs():
    run = g_run([[2, 4, 8], [4, 8, 8], [8, 8, 16]], [3.0, 1.5, 0.9])
    fig = dk.viz.plot_group_history(run)
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (3, 3) and np.allclose(2 ** grid[:, 2], [8, 8, 16])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["2", "4", "8"]


def test_complexity_plot_reads_zeta_ratio_and_draws_the_budget():
    fig = dk.viz.plot_complexity({"a": g_run([[1]] * 3, [3.0, 1.5, 0.9])})
    line, budget = fig.axes[0].lines
    assert list(line.get_ydata()) == [3.0, 1.5, 0.9] and list(budget.get_ydata()) == [1, 1]


def test_plots_of_logs_name_what_is_missing():
    run = RunLog(None, {}, [{"epoch": 1, "test_acc": 0.5}])
    with pytest.raises(ValueError, match="not from a G-ResNeXt"):
        dk.viz.plot_group_history(run)


def test_accuracy_vs_cost_places_each_model():
    fig = dk.viz.plot_accuracy_vs_cost({"g": (1e6, 0.5), "fixed": (2e6, 0.45)})
    offsets = [tuple(c.get_offsets()[0]) for c in fig.axes[0].collections]
    assert offsets == [(1e6, 0.5), (2e6, 0.45)]
