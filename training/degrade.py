"""Degradations that make LR training inputs from HR images: MATLAB's bicubic `imresize`, as the field uses it.

ESRGAN, EDSR, RCAN and the benchmark sets (Set5, Set14, BSD100, Urban100, DIV2K's "bicubic" LR) made their LR
images with MATLAB's `imresize(hr, 1/scale, 'bicubic')`: Keys' cubic with a = -0.5, widened by `scale` when
shrinking (antialiasing), samples at (i + 0.5) · scale - 0.5, symmetric borders (... 1 0 | 0 1 ...), output size
ceil(H / scale). `vsr.models.resample.imresize` computes exactly that (its tests compare it with a per-pixel loop
and with PIL; tests/training/test_degrade.py with values MATLAB printed). Not OpenCV's or PyTorch's bicubic
(a = -0.75, no antialiasing): a model trained on those LR images loses ~0.5-1 dB on the benchmarks.

The field's LR images are PNGs, i.e. rounded to 8 bits; `quantize=True` rounds to 1/255 the same way, so a model
sees the input it will meet. This is BasicSR's `imresize` (matlab_functions.py), in float: MATLAB run on a uint8
image also rounds and clips the image between the two axes (imresizemex keeps the class). On natural pictures that
moves 11-15 % of the LR values by one level (the sample frame at ×2, ×3, ×4; PSNR of bicubic back up within 0.002
dB); at saturated sharp edges, whose overshoot past 0 and 255 MATLAB clips after the first axis, by up to 11 levels
(a black-and-white drawing: 5-9 % of the values, bicubic's PSNR 0.015-0.03 dB higher here than from MATLAB's LR).
"""

from __future__ import annotations

import torch

from vsr.errors import OptionError
from vsr.models.resample import imresize

# How far bicubic downscaling reads around an LR pixel, in LR pixels on each side: the widened kernel reaches
# 2 · scale HR pixels from the LR pixel's center. A crop downscaled with this much HR context around it gives, in
# its interior, exactly the LR pixels of the whole image (no mirrored border where the crop was cut).
CONTEXT = 2


def downscale(hr: torch.Tensor, scale: int, *, quantize: bool = False) -> torch.Tensor:
    """MATLAB's `imresize(hr, 1/scale, 'bicubic')` of float N×C×H×W in [0, 1]: N×C×ceil(H/scale)×ceil(W/scale).

    H and W should be multiples of `scale` (see `mod_crop`) for LR pixel i to cover HR pixels [i·s, (i+1)·s).
    Values are not clamped (bicubic overshoots at edges) unless `quantize`, which rounds to the nearest 1/255 in
    [0, 1] as saving the LR image as an 8-bit PNG would.
    """
    check_scale(scale)
    if hr.ndim != 4 or not hr.is_floating_point():
        raise ValueError(f"expected a float N×C×H×W tensor, got {tuple(hr.shape)} {hr.dtype}")
    lr = imresize(hr, 1 / scale, "bicubic")
    return quantize_8bit(lr) if quantize else lr


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round float values to the nearest of the 256 levels k/255, clamped to [0, 1] (as uint8 saturates)."""
    return x.clamp(0, 1).mul(255).round().div(255)


def mod_crop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right of a …×H×W image to multiples of `scale` (BasicSR's name), so H/scale is exact."""
    check_scale(scale)
    height, width = image.shape[-2:]
    if height < scale or width < scale:
        raise ValueError(f"a {height}×{width} image is smaller than the scale {scale}")
    return image[..., : height - height % scale, : width - width % scale]


def check_scale(scale: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise OptionError(f"scale={scale!r}: expected a whole number, 1 or more (2, 3 and 4 are usual)")
