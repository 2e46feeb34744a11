"""Validation during training: PSNR and SSIM of a model and of bicubic on the held-out images.

The field's conventions (metrics.py): Y channel of BT.601 and RGB, `scale` pixels of border cropped, the output
rounded to 8 bits first (what a saved image would hold). Bicubic is MATLAB's, the same kernel that made the LR.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vsr.models.resample import imresize
from vsr.training.data import ValidationSet
from vsr.training.degrade import quantize_8bit
from vsr.training.metrics import psnr, ssim

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
SAMPLE_SIDE = 256  # each picture of a sample sheet shows at most this many HR pixels a side (the central part)


def bicubic_upscaler(scale: int) -> Callable[[Tensor], Tensor]:
    return lambda lr: imresize(lr, scale, "bicubic")


def model_upscaler(model: nn.Module, autocast=nullcontext) -> Callable[[Tensor], Tensor]:
    """The model's output for a whole LR image, padded to RRDBNet's input multiple and cropped back."""

    def upscale(lr: Tensor) -> Tensor:
        multiple = getattr(model, "unshuffle", 1)  # RRDBNet ×2 / ×1 pixel-unshuffle their input
        height, width = lr.shape[-2:]
        pad_h, pad_w = -height % multiple, -width % multiple
        padded = F.pad(lr, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else lr
        with autocast():
            sr = model(padded).float()
        scale = sr.shape[-1] // padded.shape[-1]
        return sr[..., : height * scale, : width * scale]

    return upscale


@torch.no_grad()
def validate(upscale: Callable[[Tensor], Tensor], val_set: ValidationSet, scale: int,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean PSNR-Y, SSIM-Y, PSNR-RGB and SSIM-RGB of `upscale` over the validation images."""
    totals = dict.fromkeys(METRICS, 0.0)
    for item in val_set:
        lr, hr = item["lr"][None].to(device), item["hr"][None].to(device)
        sr = quantize_8bit(upscale(lr))
        for channel, y_channel in (("y", True), ("rgb", False)):
            totals[f"psnr_{channel}"] += float(psnr(sr, hr, scale, y_channel)[0])
            totals[f"ssim_{channel}"] += float(ssim(sr, hr, scale, y_channel)[0])
    return {key: total / len(val_set) for key, total in totals.items()}


@torch.no_grad()
def sample_sheet(upscale: Callable[[Tensor], Tensor], val_set: ValidationSet, scale: int, count: int,
                 device: torch.device | str = "cpu") -> Tensor:
    """A picture to look at (BasicSR writes its validation images for the same reason): for `count` validation
    images spread evenly over the set (the first 4 were 4 frames of one video, alike), a row of bicubic | the model |
    the original, the central SAMPLE_SIDE pixels of each, 8-bit levels. Rows narrower than the widest are padded
    with black. 3×H×W float in [0, 1], on the CPU."""
    rows = []
    for index in sorted({k * len(val_set) // count for k in range(count)}):
        item = val_set[index]
        lr, hr = item["lr"][None].to(device), item["hr"][None].to(device)
        pictures = (quantize_8bit(imresize(lr, scale, "bicubic")), quantize_8bit(upscale(lr)), hr)
        rows.append(torch.cat([_central(picture[0].float().cpu(), SAMPLE_SIDE) for picture in pictures], dim=-1))
    width = max(row.shape[-1] for row in rows)
    return torch.cat([F.pad(row, (0, width - row.shape[-1], 0, 0)) for row in rows], dim=-2)


def _central(picture: Tensor, side: int) -> Tensor:
    """The central `side`×`side` of a …×H×W picture (all of a side that is shorter)."""
    height, width = picture.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return picture[..., top:top + side, left:left + side]
