"""The VGG-style discriminator of SRGAN and ESRGAN, exactly as BasicSR's `VGGStyleDiscriminator`.

Pairs of convs (3×3 stride 1, then 4×4 stride 2 halving the size) widen 64 → 128 → 256 → 512 → 512 while a 128×128
patch shrinks to 4×4; batch norm follows every conv but the first; LeakyReLU 0.2 throughout; then
Linear(512·4·4, 100) → LeakyReLU → Linear(100, 1) gives one raw score C(x) per image (no sigmoid: the relativistic
losses take logits). A 256 input adds a sixth pair (`conv5_0`, `conv5_1`), as in BasicSR.

The parameter names (`conv0_0`, `conv0_1`, `bn0_1`, ..., `conv4_1`, `bn4_1`, `linear1`, `linear2`) are BasicSR's, so
its discriminator checkpoints (`net_d`, `{"params": ...}`) load one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from vsr.errors import InputError, OptionError

INPUT_SIZES = (128, 256)


class VGGStyleDiscriminator(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128):
        super().__init__()
        if input_size not in INPUT_SIZES:
            raise OptionError(f"discriminator input_size {input_size} is not supported, expected one of {INPUT_SIZES}")
        self.input_size = input_size
        # Output channels of each pair; the spatial size halves after each.
        widths = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8]
        if input_size == 256:
            widths.append(num_feat * 8)
        self.num_stages = len(widths)

        in_channels = num_in_ch
        for stage, width in enumerate(widths):
            # The very first conv has a bias and no batch norm; every other conv is followed by batch norm.
            first = stage == 0
            setattr(self, f"conv{stage}_0", nn.Conv2d(in_channels, width, 3, 1, 1, bias=first))
            if not first:
                setattr(self, f"bn{stage}_0", nn.BatchNorm2d(width, affine=True))
            setattr(self, f"conv{stage}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
            setattr(self, f"bn{stage}_1", nn.BatchNorm2d(width, affine=True))
            in_channels = width

        self.linear1 = nn.Linear(num_feat * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×S×S images (S = input_size) → N×1 raw scores."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise InputError(
                f"discriminator input is {x.shape[-2]}×{x.shape[-1]}, expected {self.input_size}×{self.input_size} "
                "(the HR patch size must equal the discriminator's input_size)"
            )
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for stage in range(1, self.num_stages):
            feat = self.lrelu(getattr(self, f"bn{stage}_0")(getattr(self, f"conv{stage}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{stage}_1")(getattr(self, f"conv{stage}_1")(feat)))
        feat = feat.flatten(1)  # N × (512·4·4)
        feat = self.lrelu(self.linear1(feat))
        return self.linear2(feat)
