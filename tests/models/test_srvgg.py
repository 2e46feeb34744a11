"""SRVGGNetCompact: output shapes, activations, and the nearest-neighbour residual."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from vsr.models.srvgg import SRVGGNetCompact


@pytest.mark.parametrize("upscale", [1, 2, 3, 4])
@pytest.mark.parametrize("act_type", ["prelu", "relu", "leakyrelu"])
def test_output_shape(upscale, act_type):
    model = SRVGGNetCompact(num_feat=4, num_conv=2, upscale=upscale, act_type=act_type).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 7, 9))
    assert out.shape == (2, 3, 7 * upscale, 9 * upscale)


def test_gray_model_shape():
    model = SRVGGNetCompact(num_in_ch=1, num_out_ch=1, num_feat=4, num_conv=1, upscale=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 5, 6)).shape == (1, 1, 10, 12)


def test_layer_layout_follows_real_esrgan():
    model = SRVGGNetCompact(num_feat=8, num_conv=3, upscale=4, act_type="prelu")
    # body.0 first conv, odd indices activations, body.{2*num_conv+2} the last conv.
    assert len(model.body) == 2 * 3 + 3
    assert isinstance(model.body[1], nn.PReLU) and model.body[1].weight.shape == (8,)
    assert model.body[8].out_channels == 3 * 4 * 4


def test_output_is_nearest_upsample_when_last_conv_is_zero():
    torch.manual_seed(0)
    model = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=3).eval()
    last = model.body[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        out = model(x)
    assert torch.equal(out, F.interpolate(x, scale_factor=3, mode="nearest"))
    # ... and differs from it once the last conv has weights.
    nn.init.normal_(last.weight)
    with torch.no_grad():
        assert not torch.equal(model(x), out)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="act_type"):
        SRVGGNetCompact(act_type="gelu")
