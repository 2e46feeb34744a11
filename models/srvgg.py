"""SRVGGNetCompact, Real-ESRGAN's compact model for video (realesr-animevideov3, realesr-general-x4v3).

A plain stack of 3×3 convs with PReLU at low resolution, one pixel shuffle at the end, and the nearest-neighbour
upsampled input added back, so the network only learns the residual. Names follow Real-ESRGAN: `body.0` is the
first conv, `body.1` its activation, ..., `body.{2·num_conv+2}` the last conv.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {
    "relu": lambda num_feat: nn.ReLU(inplace=True),
    "prelu": lambda num_feat: nn.PReLU(num_parameters=num_feat),
    "leakyrelu": lambda num_feat: nn.LeakyReLU(negative_slope=0.1, inplace=True),
}


class SRVGGNetCompact(nn.Module):
    """Maps N×C×H×W in [0, 1] to N×C×(upscale·H)×(upscale·W)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ):
        super().__init__()
        if act_type not in ACTIVATIONS:
            raise ValueError(f"act_type must be one of {sorted(ACTIVATIONS)}, not {act_type!r}")
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), ACTIVATIONS[act_type](num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), ACTIVATIONS[act_type](num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")
