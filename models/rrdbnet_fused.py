"""RRDBNet for inference on the CPU: the same network, each convolution fused with the step that follows it.

On a CPU with AMX in bf16, RealESRGAN_x4plus spent nearly half of a pass (160×90) outside its convolutions, in passes
over memory: the dense blocks' concatenations (20 %), a LeakyReLU after 4 of each block's 5 convolutions (6 %), the
residual's scale and add after the fifth (5 %), and more of the same after the upsampling convolutions. oneDNN can
apply the activations and adds inside the convolution as it writes its output (post-ops): PyTorch exposes that as
`torch.ops.mkldnn._convolution_pointwise`, the op its own compiler (torch.compile on the CPU) emits for these fusions.
Each dense block's fifth convolution is scaled by the residual scale (0.2) beforehand, in fp32 before any rounding to
bf16, so that "conv5(...) * 0.2 + x" is one convolution with an add.

Measured on a 2-core Xeon (AMX, 2 threads, channels_last, one frame per pass), x4plus model only against the
reference forward: 1.16× at 160×90 and 1.33× at 320×180 in bf16; in fp32 no gain (0.97×), so the engine uses this
form in bf16 only. Tried without a gain worth the code (README "Measured"): splitting each dense convolution's weight
by input (no concatenation, but the partial sums move as many bytes), one channel buffer per block (oneDNN copies a
channel slice of an NHWC tensor before reading it, as the concatenation does), `torch.cat(out=...)` into reused
buffers, and NCHW for the dense blocks.

The op is private to PyTorch: `fuse_rrdbnet` returns None where this torch lacks it or it computes something else
(tried once on a few pixels), and callers keep the reference network. It has no autograd: this form is for
inference only (training uses `RRDBNet`).
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.nn import functional as F

from vsr.models.rrdbnet import RESIDUAL_SCALE, RRDBNet, ResidualDenseBlock

_PAD_STRIDE_DILATION = ([1, 1], [1, 1], [1, 1])  # every RRDBNet convolution: 3×3, padding 1, stride 1


@functools.cache
def _fused_op_works() -> bool:
    """Whether this torch has oneDNN's fused convolution (a CPU build with oneDNN) and it computes, as called here,
    what the unfused steps compute: tried once on a few pixels, since a private op may change with torch."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, 1, 1)
    x, residual = (torch.randn(1, 4, 5, 6, generator=generator) for _ in range(2))
    try:
        with torch.no_grad():
            activated, added = _conv(x, conv, 0.2), _conv_add(x, conv, residual)
            return (torch.allclose(activated, F.leaky_relu(conv(x), 0.2), atol=1e-5)
                    and torch.allclose(added, conv(x) + residual, atol=1e-5))
    except (AttributeError, RuntimeError, TypeError):
        return False


def _conv(x: torch.Tensor, conv: nn.Conv2d, leaky_slope: float | None = None) -> torch.Tensor:
    """conv(x), followed by LeakyReLU(leaky_slope) inside the same kernel where a slope is given."""
    attr, scalars = ("none", []) if leaky_slope is None else ("leaky_relu", [leaky_slope])
    return torch.ops.mkldnn._convolution_pointwise(
        x, conv.weight, conv.bias, *_PAD_STRIDE_DILATION, 1, attr, scalars, ""
    )


def _conv_add(x: torch.Tensor, conv: nn.Conv2d, residual: torch.Tensor) -> torch.Tensor:
    """conv(x) + residual, the add done inside the convolution's kernel (in its fp32 accumulator)."""
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, conv.weight, conv.bias, *_PAD_STRIDE_DILATION, 1, "add", 1.0, None, [], None
    )


class FusedRRDBNet(nn.Module):
    """An RRDBNet computed with fused convolutions; outputs equal the reference forward's within rounding.

    Takes `model` over: each dense block's `conv5` is scaled by RESIDUAL_SCALE in place (`fuse_rrdbnet` gives it a
    copy). Move it to a dtype (bf16) after building it, so that the scaled weights are rounded once.
    """

    def __init__(self, model: RRDBNet):
        super().__init__()
        self.net = model
        self.slope = self.net.lrelu.negative_slope
        with torch.no_grad():
            for block in self.net.modules():
                if isinstance(block, ResidualDenseBlock):
                    block.conv5.weight.mul_(RESIDUAL_SCALE)
                    block.conv5.bias.mul_(RESIDUAL_SCALE)

    def _dense_block(self, block: ResidualDenseBlock, x: torch.Tensor) -> torch.Tensor:
        x1 = _conv(x, block.conv1, self.slope)
        x2 = _conv(torch.cat((x, x1), 1), block.conv2, self.slope)
        x3 = _conv(torch.cat((x, x1, x2), 1), block.conv3, self.slope)
        x4 = _conv(torch.cat((x, x1, x2, x3), 1), block.conv4, self.slope)
        return _conv_add(torch.cat((x, x1, x2, x3, x4), 1), block.conv5, x)  # conv5 × 0.2 + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if net.unshuffle > 1:
            x = F.pixel_unshuffle(x, net.unshuffle)
        feat = _conv(x, net.conv_first)
        body = feat
        for rrdb in net.body:
            out = body
            for block in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3):
                out = self._dense_block(block, out)
            body = torch.add(body, out, alpha=RESIDUAL_SCALE)  # out × 0.2 + x in one pass
        feat = _conv_add(body, net.conv_body, feat)
        feat = _conv(F.interpolate(feat, scale_factor=2, mode="nearest"), net.conv_up1, self.slope)
        feat = _conv(F.interpolate(feat, scale_factor=2, mode="nearest"), net.conv_up2, self.slope)
        return _conv(_conv(feat, net.conv_hr, self.slope), net.conv_last)


def fuse_rrdbnet(model: nn.Module) -> FusedRRDBNet | None:
    """The fused inference form of an RRDBNet (a copy; `model` is left as it is), or None where `model` is another
    network or this torch has no fused convolution op."""
    if not isinstance(model, RRDBNet) or not _fused_op_works():
        return None
    return FusedRRDBNet(copy.deepcopy(model))
