"""RRDBNet: the published size, output shapes at every scale, and ESRGAN's small residual initialisation."""

import math

import pytest
import torch

from vsr.models.rrdbnet import RRDB, RRDBNet, ResidualDenseBlock


def test_default_config_has_the_published_parameter_count():
    model = RRDBNet()
    assert sum(p.numel() for p in model.parameters()) == 16_697_987


@pytest.mark.parametrize(
    ("scale", "num_in_ch", "num_out_ch", "first_in"),
    [(4, 3, 3, 3), (2, 3, 3, 12), (1, 3, 3, 48), (4, 1, 1, 1), (2, 1, 1, 4), (4, 4, 3, 4)],
)
def test_output_shape_and_pixel_unshuffle(scale, num_in_ch, num_out_ch, first_in):
    torch.manual_seed(0)
    model = RRDBNet(num_in_ch, num_out_ch, scale=scale, num_feat=4, num_block=1, num_grow_ch=4).eval()
    assert model.conv_first.in_channels == first_in
    with torch.no_grad():
        out = model(torch.rand(2, num_in_ch, 8, 12))
    assert out.shape == (2, num_out_ch, 8 * scale, 12 * scale)
    assert torch.isfinite(out).all()


def test_unsupported_scale_is_refused():
    with pytest.raises(ValueError, match="scale 1, 2 or 4"):
        RRDBNet(scale=3, num_feat=4, num_block=1, num_grow_ch=4)


def test_initialisation_is_small_so_blocks_start_near_their_residual_path():
    torch.manual_seed(0)
    block = ResidualDenseBlock(num_feat=16, num_grow_ch=8)
    for conv in (block.conv1, block.conv2, block.conv3, block.conv4, block.conv5):
        fan_in = conv.weight[0].numel()
        kaiming_std = math.sqrt(2.0 / fan_in)
        assert conv.weight.std().item() == pytest.approx(0.1 * kaiming_std, rel=0.25)
        assert torch.count_nonzero(conv.bias) == 0
    x = torch.rand(1, 16, 12, 12)
    with torch.no_grad():
        dense_change = (block(x) - x).abs().mean().item()
        # An RRDB adds its scaled chain of dense blocks to its input: at initialisation that is about 1.2 x.
        rrdb = RRDB(16, 8)
        rrdb_change = (rrdb(x) - 1.2 * x).abs().mean().item()
    mean_input = x.abs().mean().item()
    assert dense_change < 0.05 * mean_input
    assert rrdb_change < 0.05 * mean_input


def test_parameter_names_are_basicsr_names():
    model = RRDBNet(num_feat=4, num_block=2, num_grow_ch=4)
    names = set(model.state_dict())
    assert {"conv_first.weight", "body.1.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight", "conv_up2.weight",
            "conv_hr.weight", "conv_last.bias"} <= names
    assert not any(name.startswith("body.2.") for name in names)
