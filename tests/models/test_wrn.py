import pytest
import torch
from torch import nn

import dirackit as dk
from dirackit.models.wrn import PreActBasicBlock


def test_stage_widths_and_block_counts():
    model = dk.build_model("wrn-22-3")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 3 * 3 * 2  # stem + (22-4)/6 = 3 blocks x 2 convs in each of 3 stages
    assert [len(s) for s in model.stages] == [3, 3, 3]
    assert [s[-1].branch[-1].out_channels for s in model.stages] == [48, 96, 192]


@pytest.mark.parametrize("width, projections", [(1, 2), (2, 3)])
def test_projection_only_when_shape_changes(width, projections):
    # k = 1: stage 1 keeps 16 channels, so only stages 2 and 3 start with a projection
    model = dk.build_model(f"wrn-16-{width}")
    blocks = [b for stage in model.stages for b in stage]
    assert sum(b.shortcut is not None for b in blocks) == projections


def test_projection_reads_the_preactivated_input_identity_the_raw_one():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    block = PreActBasicBlock(16, 32, stride=2).eval()
    a = torch.relu(block.preact[0](x))
    torch.testing.assert_close(block(x), block.branch(a) + block.shortcut(a))
    same = PreActBasicBlock(16, 16).eval()
    torch.testing.assert_close(same(x), same.branch(torch.relu(same.preact[0](x))) + x)


def test_dropout_sits_between_the_convs_after_bn_relu():
    branch = dk.build_model("wrn-10-2", dropout=0.3).stages[0][0].branch
    kinds = [type(m) for m in branch]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Conv2d]
    assert branch[3].p == 0.3
    assert nn.Dropout not in [type(m) for m in dk.build_model("wrn-10-2").modules()]


def test_preresnet_164_is_the_papers_thin_deep_reference():
    model = dk.build_model("preresnet-164")
    assert [len(s) for s in model.stages] == [18, 18, 18]
    assert round(dk.count_params(model) / 1e6, 1) == 1.7  # He et al. 2016, Table: 1.7M
    assert model.fc.in_features == 256
