"""The fused CPU inference form of RRDBNet computes the reference forward: tiny networks at every scale, both memory
formats, and the parameters of the network it was built from left as they were."""

import pytest
import torch

from vsr.models.rrdbnet import RRDBNet
from vsr.models.rrdbnet_fused import FusedRRDBNet, fuse_rrdbnet
from vsr.models.srvgg import SRVGGNetCompact


def tiny(scale: int) -> RRDBNet:
    torch.manual_seed(scale)
    model = RRDBNet(scale=scale, num_feat=8, num_block=2, num_grow_ch=4).eval()
    # ESRGAN's initialisation makes the dense blocks nearly the identity (and zero biases): weights that keep the
    # activations' size (std 1/sqrt(fan-in)) and non-zero biases make every conv and bias count.
    with torch.no_grad():
        for conv in model.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.normal_(0, conv.weight[0].numel() ** -0.5)
                conv.bias.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_fused_equals_the_reference_forward_in_fp32(scale, memory_format):
    model = tiny(scale)
    fused = fuse_rrdbnet(model).to(memory_format=memory_format)
    frames = torch.rand(2, 3, 12, 16).contiguous(memory_format=memory_format)
    with torch.inference_mode():
        expected = model(frames)
        out = fused(frames)
    assert out.shape == expected.shape == (2, 3, 12 * scale, 16 * scale)
    assert expected.abs().mean() > 0.1  # a picture worth comparing, not a near-zero output
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_fused_in_bf16_is_as_close_to_fp32_as_the_reference_in_bf16():
    model = tiny(4)
    frames = torch.rand(1, 3, 16, 16)
    fused = fuse_rrdbnet(model).to(torch.bfloat16)  # scaled in fp32, then rounded once
    with torch.inference_mode():
        fp32 = model(frames)
        fused = fused(frames.bfloat16()).float()
        reference = model.to(torch.bfloat16)(frames.bfloat16()).float()
    reference_error = (reference - fp32).abs().mean()
    assert 0 < (fused - fp32).abs().mean() < 1.25 * reference_error


def test_the_network_it_is_built_from_is_left_untouched():
    model = tiny(4)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    fused = fuse_rrdbnet(model)
    assert isinstance(fused, FusedRRDBNet)
    assert all(torch.equal(model.state_dict()[name], value) for name, value in before.items())
    # its own dense blocks' last convolutions carry the residual scale
    torch.testing.assert_close(fused.net.body[0].rdb1.conv5.weight, 0.2 * model.body[0].rdb1.conv5.weight)


def test_other_networks_are_not_fused():
    assert fuse_rrdbnet(SRVGGNetCompact(num_feat=4, num_conv=2, upscale=2)) is None


def test_a_fused_op_that_computes_something_else_leaves_the_reference_network(monkeypatch):
    """The op is private to torch: where a version of it computes otherwise than the unfused steps (here: no
    activation), no fused form is made, and the engine keeps the reference network."""
    from vsr.models import rrdbnet_fused

    monkeypatch.setattr(rrdbnet_fused, "_conv", lambda x, conv, leaky_slope=None: conv(x))
    rrdbnet_fused._fused_op_works.cache_clear()
    try:
        assert fuse_rrdbnet(tiny(4)) is None
    finally:
        monkeypatch.undo()
        rrdbnet_fused._fused_op_works.cache_clear()
    assert fuse_rrdbnet(tiny(4)) is not None
