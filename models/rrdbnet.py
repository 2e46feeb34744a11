"""RRDBNet, the generator of ESRGAN (Wang et al., 2018), exactly as BasicSR and Real-ESRGAN define it.

The parameter names (`conv_first`, `body.N.rdbK.convM`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`,
`conv_last`) are BasicSR's, so released weights load one to one. Scales 2 and 1 are done as Real-ESRGAN does them:
the input is pixel-unshuffled first (×2 → 12 channels, ×1 → 48), and the ×4 body then restores the size, which is
why inputs must be padded to a multiple of 2 (scale 2) or 4 (scale 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# The residual scaling inside each dense block and each RRDB (ESRGAN, section 3.1).
RESIDUAL_SCALE = 0.2


def _init_small(modules: list[nn.Module], scale: float = 0.1) -> None:
    """ESRGAN's initialisation: Kaiming-normal weights scaled down (×0.1), zero biases; stabilises deep RRDB stacks."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                # kaiming_normal_ (fan_in, gain sqrt(2)) times `scale`, drawn in one step.
                fan_in = layer.weight[0].numel()
                nn.init.normal_(layer.weight, 0.0, scale * math.sqrt(2.0 / fan_in))
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs; each sees the block input and every earlier output."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        _init_small([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside one scaled residual connection."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """ESRGAN's generator. Maps N×C×H×W in [0, 1] to N×C×(scale·H)×(scale·W).

    nf=64, nb=23, gc=32, ×4 (RealESRGAN_x4plus, ESRGAN) has 16,697,987 parameters.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, not {scale}")
        self.scale = scale
        # Scales 2 and 1 fold space into channels so that the ×4 body ends at the requested size.
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
