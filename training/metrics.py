"""PSNR and SSIM as super-resolution papers report them (BasicSR's `calculate_psnr`/`calculate_ssim`, MATLAB's).

- Y channel of BT.601 YCbCr on the [0, 255] scale: Y = 16 + 65.481·R + 128.553·G + 24.966·B for RGB in [0, 1]
  (not rounded); or RGB, each channel on [0, 255].
- A border of `crop_border` pixels (the scale factor, by convention) is dropped on every side first: the borders
  of an upscaled image are the least reliable and papers leave them out.
- PSNR = 10·log10(255² / MSE), the MSE over every pixel (and channel) of an image; identical images give +inf.
- SSIM (Wang et al. 2004) with an 11×11 Gaussian window, σ = 1.5, C1 = (0.01·255)², C2 = (0.03·255)²; the local
  statistics are taken only where the whole window fits (MATLAB's 'valid' filtering: 5 more pixels lost on each side)
  and the SSIM map is averaged; for RGB, the mean of the per-channel SSIMs.
- Temporal error (for video, vsr's own): the mean absolute difference between the upscaled frames' change from one
  frame to the next and the originals', on the same scale; flicker raises it.

The torch functions work on batches, N×C×H×W in [0, 1] (C = 3 for the Y channel), compute in float64 and return
one value per image. The numpy wrappers take one H×W×3 RGB (or H×W gray) image on [0, 255], uint8 or float, as read
from a file; to report like the papers, evaluate uint8 images (round model outputs to 8 bits first).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from vsr.errors import InputError, OptionError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2

# BT.601 "studio swing" luma for RGB in [0, 1], giving Y in [16, 235] (MATLAB's rgb2ycbcr, BasicSR's bgr2ycbcr).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def rgb_to_y(images: Tensor) -> Tensor:
    """N×3×H×W RGB in [0, 1] → N×1×H×W BT.601 luma on the [0, 255] scale (16 to 235)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"expected N×3×H×W RGB images for the Y channel, got shape {tuple(images.shape)}")
    weights = torch.tensor(_Y_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True) + _Y_OFFSET


def _prepare(sr: Tensor, hr: Tensor, crop_border: int, y_channel: bool) -> tuple[Tensor, Tensor]:
    """Both batches cropped, converted (Y or RGB) and on the [0, 255] scale, in float64."""
    if sr.shape != hr.shape:
        raise InputError(f"images differ in shape: {tuple(sr.shape)} and {tuple(hr.shape)}")
    if sr.ndim != 4:
        raise InputError(f"expected N×C×H×W images, got shape {tuple(sr.shape)}")
    if crop_border < 0 or 2 * crop_border >= min(sr.shape[-2:]):
        raise OptionError(f"crop_border {crop_border} does not fit {sr.shape[-2]}×{sr.shape[-1]} images")
    if crop_border:
        sr = sr[..., crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[..., crop_border:-crop_border, crop_border:-crop_border]
    sr, hr = sr.to(torch.float64), hr.to(torch.float64)
    if y_channel:
        return rgb_to_y(sr), rgb_to_y(hr)
    return sr * 255.0, hr * 255.0


def psnr(sr: Tensor, hr: Tensor, crop_border: int = 0, y_channel: bool = True) -> Tensor:
    """PSNR in dB of each image pair (shape N), N×C×H×W in [0, 1]; +inf where the images are identical."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    mse = ((sr - hr) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse)  # mse = 0 → log10(inf) = inf


def temporal_error(sr: Tensor, sr_next: Tensor, hr: Tensor, hr_next: Tensor, crop_border: int = 0,
                   y_channel: bool = True) -> Tensor:
    """How far the upscaled video's change from one frame to the next is from the original's, per pair (shape N):
    the mean |(sr_next − sr) − (hr_next − hr)| on the [0, 255] scale, N×C×H×W in [0, 1].

    A model that upscales frame by frame invents its texture anew in every frame; where that texture changes and the
    picture does not, the video flickers, and this grows. TecoGAN's tOF and tLP compare the same changes through
    optical flow and LPIPS; plain differences need neither, and count a wrong change of any kind."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    sr_next, hr_next = _prepare(sr_next, hr_next, crop_border, y_channel)
    return ((sr_next - sr) - (hr_next - hr)).abs().mean(dim=(1, 2, 3))


def smallest_scored_side(scale: int) -> int:
    """The shortest side an image may have to be scored at ×`scale`: SSIM's window must fit inside what is left once
    a border of `scale` pixels is cut off, of the image cropped to a multiple of `scale`."""
    return -(-(2 * scale + SSIM_WINDOW) // scale) * scale


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """The normalised size×size Gaussian (MATLAB's fspecial('gaussian'), OpenCV's getGaussianKernel ⊗ itself)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return torch.outer(kernel, kernel)


def ssim(sr: Tensor, hr: Tensor, crop_border: int = 0, y_channel: bool = True) -> Tensor:
    """SSIM of each image pair (shape N), N×C×H×W in [0, 1]; the mean over channels where C > 1."""
    sr, hr = _prepare(sr, hr, crop_border, y_channel)
    height, width = sr.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise InputError(
            f"images of {height}×{width} (after cropping {crop_border}) are smaller than the "
            f"{SSIM_WINDOW}×{SSIM_WINDOW} SSIM window"
        )
    channels = sr.shape[1]
    window = gaussian_window().to(sr.device).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)

    def local_mean(x: Tensor) -> Tensor:  # 'valid': only where the whole window lies inside the image
        return F.conv2d(x, window, groups=channels)

    mu_sr, mu_hr = local_mean(sr), local_mean(hr)
    var_sr = local_mean(sr * sr) - mu_sr**2
    var_hr = local_mean(hr * hr) - mu_hr**2
    covariance = local_mean(sr * hr) - mu_sr * mu_hr
    ssim_map = ((2 * mu_sr * mu_hr + SSIM_C1) * (2 * covariance + SSIM_C2)) / (
        (mu_sr**2 + mu_hr**2 + SSIM_C1) * (var_sr + var_hr + SSIM_C2)
    )
    return ssim_map.mean(dim=(1, 2, 3))  # per channel maps are the same size: this is the mean of channel means


def _from_numpy(image: np.ndarray, name: str) -> Tensor:
    """H×W×3 or H×W on [0, 255] → 1×C×H×W float64 on [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InputError(f"{name}: expected an H×W×3 RGB or H×W gray image, got shape {image.shape}")
    return torch.from_numpy(image.astype(np.float64) / 255.0).permute(2, 0, 1).unsqueeze(0)


def _numpy_pair(img: np.ndarray, img2: np.ndarray, y_channel: bool) -> tuple[Tensor, Tensor, bool]:
    sr, hr = _from_numpy(img, "img"), _from_numpy(img2, "img2")
    return sr, hr, y_channel and sr.shape[1] == 3  # a gray image is already luma: no conversion


def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB of two H×W×3 RGB (or H×W gray) images on [0, 255], uint8 or float; inf when identical."""
    sr, hr, y_channel = _numpy_pair(img, img2, y_channel)
    return float(psnr(sr, hr, crop_border, y_channel)[0])


def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM of two H×W×3 RGB (or H×W gray) images on [0, 255], uint8 or float (mean over channels for RGB)."""
    sr, hr, y_channel = _numpy_pair(img, img2, y_channel)
    return float(ssim(sr, hr, crop_border, y_channel)[0])
