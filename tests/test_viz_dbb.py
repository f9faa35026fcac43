import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dirackit as dk  # noqa: E402
from dirackit.diagnostics import kernel_skeleton  # noqa: E402
from dirackit.layers import DiverseBranchBlock, OnlineDiverseBranchBlock  # noqa: E402
from dirackit.runlog import RunLog  # noqa: E402


@pytest.mark.parametrize("block", [DiverseBranchBlock, OnlineDiverseBranchBlock], ids=lambda c: c.__name__)
def test_branch_kernels_panel_sums_to_the_folded_conv(block, randomize_bn):
    torch.manual_seed(0)
    layer = randomize_bn(block(3, 5, 3)).eval()
    fig = dk.viz.plot_branch_kernels(layer, filters=2)
    axes, bars = np.array(fig.axes[:10]).reshape(2, 5), fig.axes[10:]
    assert [ax.get_title() for ax in axes[0]] == ["KxK", "1x1", "1x1-AVG", "1x1-KxK", "sum = folded"]
    assert [bar.get_ylabel() for bar in bars] == ["weight (output per\nunit input)"] * 2  # one bar per row
    folded = layer.fold().weight.detach()
    for row in range(2):
        source = int(axes[row, 0].get_ylabel().split("in ")[1])
        assert source == int(folded[row].flatten(1).norm(dim=1).argmax())
        images = [ax.images[0].get_array() for ax in axes[row]]
        np.testing.assert_allclose(sum(images[:4]), images[4], atol=1e-6)
        np.testing.assert_allclose(images[4], folded[row, source].numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="DiverseBranchBlock"):
        dk.viz.plot_branch_kernels(torch.nn.Conv2d(3, 3, 3))


def test_branch_shares_add_up_and_come_from_model_log_or_dict():
    model = dk.build_model("resnet18-dbb")
    state = model.log_state()
    layers = len(model.dbb_blocks())
    assert layers == 17 and all(len(v) == layers for v in state.values())
    assert np.allclose(np.sum([state[k] for k in state], axis=0), 1, atol=1e-4)
    run = RunLog(None, {}, [{"epoch": 1, **{k: [0.0] * layers for k in state}}, {"epoch": 2, **state}])
    for source in (model, run, state):
        fig = dk.viz.plot_branch_shares(source)
        heights = np.array([p.get_height() for p in fig.axes[0].patches]).reshape(4, layers)
        np.testing.assert_allclose(heights, [state[k] for k in state], atol=1e-12)
    with pytest.raises(ValueError, match="plain network"):
        dk.viz.plot_branch_shares(dk.build_model("vgg16"))


def test_share_history_averages_layers_per_epoch():
    rows = [{"epoch": e, "dbb_share_kxk": [s, s + 0.2], "dbb_share_1x1": [0.1, 0.1], "dbb_share_1x1_avg": [0, 0],
             "dbb_share_1x1_kxk": [0.2, 0.4]} for e, s in ((1, 0.2), (2, 0.4))]
    fig = dk.viz.plot_share_history(RunLog(None, {}, rows))
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].lines}
    np.testing.assert_allclose(lines["KxK"], [0.3, 0.5])
    np.testing.assert_allclose(lines["1x1-KxK"], [0.3, 0.3])
    with pytest.raises(ValueError, match="dbb_share"):
        dk.viz.plot_share_history(RunLog(None, {}, [{"epoch": 1, "train_loss": 1.0}]))


def test_kernel_skeleton_sees_a_centre_heavy_kernel():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 1))
    centred = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    with torch.no_grad():
        centred[0].weight.zero_()
        centred[0].weight[:, :, 1, 1] = 2.0
        centred[0].weight[:, :, 0, 0] = -1.0
    skeleton = kernel_skeleton(centred)
    assert skeleton.shape == (1, 3, 3)
    expected = torch.zeros(3, 3)
    expected[1, 1], expected[0, 0] = 1.0, 0.5
    torch.testing.assert_close(skeleton[0], expected)
    assert kernel_skeleton(plain).shape == (1, 3, 3)  # the 1x1 conv is not counted
    fig = dk.viz.plot_kernel_skeleton({"plain": plain, "centred": centred})
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), expected.numpy())
    with pytest.raises(ValueError, match="no 5x5 conv"):
        kernel_skeleton(plain, kernel_size=5)


def test_deploy_agreement_reports_the_relative_error():
    reference = torch.tensor([[1.0, -2.0], [4.0, 0.5]])
    fig = dk.viz.plot_deploy_agreement(reference, reference + torch.tensor([[0.0, 0.0], [0.04, 0.0]]))
    assert fig.axes[0].get_title() == "max|Δ| / max|ref| = 1.0e-02"
    assert fig.axes[0].collections[0].get_offsets().shape == (4, 2)
    with pytest.raises(ValueError, match="differ in size"):
        dk.viz.plot_deploy_agreement(reference, reference[0])
