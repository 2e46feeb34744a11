"""PSNR and SSIM against scikit-image on the same arrays, the Y channel, border cropping, identical images.

What makes scikit-image's numbers comparable (both are then the same float64 computation, up to rounding):
- Y: this test converts RGB to BT.601 luma itself (Y = 16 + 65.481R + 128.553G + 24.966B, R,G,B in [0,1]) and crops
  the border by slicing; scikit-image then sees exactly the arrays ours works on. RGB: the images ×1 on [0, 255].
- PSNR: `peak_signal_noise_ratio(hr, sr, data_range=255)` (the MSE over all pixels and channels).
- SSIM: `structural_similarity(hr, sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)` — an 11×11 window (2·round(3.5σ)+1), C1 = (0.01·255)², C2 = (0.03·255)², population
  covariances, and the mean over the map with 5 pixels cut on each side (its 'reflect' filtering then matches our
  'valid' filtering exactly); `channel_axis=-1` for RGB, which averages the channels.
Tolerance: 1e-12 absolute on SSIM and on PSNR (in dB); the differences seen are ~1e-15 (summation order).
"""

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vsr.errors import InputError, OptionError
from vsr.training.metrics import (calculate_psnr, calculate_ssim, gaussian_window, psnr, rgb_to_y, ssim,
                                  temporal_error)

TOLERANCE = 1e-12  # measured: ~1e-15 on SSIM, 0 on PSNR


def _y(rgb_uint8):
    rgb = rgb_uint8.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def _skimage_ssim(hr, sr, **kwargs):
    return structural_similarity(
        hr, sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, **kwargs
    )


@pytest.fixture(scope="module")
def pair():
    """A 60×52 crop of scikit-image's astronaut (public domain) and a degraded copy: blurred, noisy, shifted."""
    rng = np.random.default_rng(0)
    hr = data.astronaut()[100:160, 180:232]
    blurred = (hr[:-1].astype(np.float64) + hr[1:]) / 2
    blurred = np.concatenate([blurred, hr[-1:]], axis=0)
    sr = np.clip(blurred + rng.normal(0, 6, hr.shape), 0, 255).round().astype(np.uint8)
    return hr, sr


@pytest.mark.parametrize("crop_border", [0, 4])
def test_y_channel_matches_scikit_image(pair, crop_border):
    hr, sr = pair
    c = crop_border
    y_hr, y_sr = _y(hr), _y(sr)
    if c:
        y_hr, y_sr = y_hr[c:-c, c:-c], y_sr[c:-c, c:-c]
    expected_psnr = peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
    expected_ssim = _skimage_ssim(y_hr, y_sr)
    assert 20 < expected_psnr < 40 and 0.3 < expected_ssim < 0.95  # a realistic, non-trivial pair
    assert calculate_psnr(sr, hr, crop_border=c) == pytest.approx(expected_psnr, abs=TOLERANCE)
    assert calculate_ssim(sr, hr, crop_border=c) == pytest.approx(expected_ssim, abs=TOLERANCE)


@pytest.mark.parametrize("crop_border", [0, 4])
def test_rgb_matches_scikit_image(pair, crop_border):
    hr, sr = pair
    c = crop_border
    hr_c, sr_c = (hr[c:-c, c:-c], sr[c:-c, c:-c]) if c else (hr, sr)
    expected_psnr = peak_signal_noise_ratio(hr_c, sr_c, data_range=255)
    expected_ssim = _skimage_ssim(hr_c.astype(np.float64), sr_c.astype(np.float64), channel_axis=-1)
    assert calculate_psnr(sr, hr, crop_border=c, y_channel=False) == pytest.approx(expected_psnr, abs=TOLERANCE)
    assert calculate_ssim(sr, hr, crop_border=c, y_channel=False) == pytest.approx(expected_ssim, abs=TOLERANCE)


def test_batches_give_one_value_per_image(pair):
    hr, sr = pair
    to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1).float() / 255
    sr_batch = torch.stack([to_tensor(sr), to_tensor(hr)])
    hr_batch = torch.stack([to_tensor(hr), to_tensor(hr)])
    psnrs, ssims = psnr(sr_batch, hr_batch, crop_border=4), ssim(sr_batch, hr_batch, crop_border=4)
    assert psnrs.shape == ssims.shape == (2,) and psnrs.dtype == torch.float64
    # float32 [0,1] inputs hold k/255 to ~1e-8, so they agree with the uint8 path to far better than reporting needs
    assert psnrs[0].item() == pytest.approx(calculate_psnr(sr, hr, crop_border=4), abs=1e-5)
    assert ssims[0].item() == pytest.approx(calculate_ssim(sr, hr, crop_border=4), abs=1e-7)
    assert psnrs[1].item() == float("inf") and ssims[1].item() == pytest.approx(1.0, abs=1e-12)


def test_identical_images_have_infinite_psnr_and_unit_ssim(pair):
    hr, _ = pair
    assert calculate_psnr(hr, hr.copy()) == float("inf")
    assert calculate_psnr(hr, hr.copy(), y_channel=False) == float("inf")
    assert calculate_ssim(hr, hr.copy()) == pytest.approx(1.0, abs=1e-12)


def test_psnr_by_hand():
    # Gray images 10 levels apart everywhere: MSE = 100, PSNR = 10·log10(255²/100).
    hr = np.full((12, 12), 100, np.uint8)
    assert calculate_psnr(hr + 10, hr) == pytest.approx(10 * np.log10(255**2 / 100), abs=1e-12)
    # Y of pure colours: black 16, white 235, red 16 + 65.481.
    colours = torch.tensor([[0.0, 0, 0], [1, 1, 1], [1, 0, 0]]).T.reshape(1, 3, 3, 1).double()
    assert rgb_to_y(colours).flatten().tolist() == pytest.approx([16.0, 235.0, 81.481])


def test_border_crop_leaves_the_border_out(pair):
    hr, _ = pair
    damaged = hr.copy()
    damaged[:3] = 0  # damage only the top three rows and the right two columns
    damaged[:, -2:] = 255
    assert calculate_psnr(damaged, hr, crop_border=2) < 30
    assert calculate_psnr(damaged, hr, crop_border=3) == float("inf")
    assert calculate_ssim(damaged, hr, crop_border=3) == pytest.approx(1.0, abs=1e-12)
    assert calculate_ssim(damaged, hr, crop_border=0) < 0.99  # windows near the edge see the damage


def test_temporal_error_counts_the_changes_the_original_does_not_make():
    """Texture invented the same way in both frames does not flicker, whatever it costs each frame's PSNR; texture
    invented anew does, and the error is the mean of the two textures' difference."""
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 24, 32, dtype=torch.float64) * 0.8 + 0.1
    hr_next = hr.roll(1, dims=-1)  # the picture moves one pixel
    texture, other_texture = (0.05 * torch.randn(2, 3, 24, 32, dtype=torch.float64) for _ in range(2))
    stable = temporal_error(hr + texture, hr_next + texture, hr, hr_next, y_channel=False)
    assert stable.shape == (2,) and stable.abs().max() < 1e-12
    flicker = temporal_error(hr + texture, hr_next + other_texture, hr, hr_next, y_channel=False)
    assert flicker.tolist() == pytest.approx(((other_texture - texture).abs() * 255).mean(dim=(1, 2, 3)).tolist())
    # Per frame, both are as far from the original: PSNR cannot tell them apart.
    assert psnr(hr_next + texture, hr_next).tolist() == pytest.approx(psnr(hr + texture, hr).tolist())
    # On Y, the textures' luma; a border of 3 pixels left out.
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64).view(1, 3, 1, 1)
    by_hand = ((other_texture - texture) * weights).sum(1)[:, 3:-3, 3:-3].abs().mean(dim=(1, 2))
    assert temporal_error(hr + texture, hr_next + other_texture, hr, hr_next, 3).tolist() == pytest.approx(
        by_hand.tolist())


def test_window_is_the_normalised_11x11_gaussian():
    window = gaussian_window()
    assert window.shape == (11, 11) and window.sum().item() == pytest.approx(1.0, abs=1e-15)
    assert window[5, 5] / window[5, 6] == pytest.approx(np.exp(1 / (2 * 1.5**2)))


def test_bad_inputs_are_refused(pair):
    hr, sr = pair
    with pytest.raises(InputError, match="differ in shape"):
        calculate_psnr(sr[:-1], hr)
    with pytest.raises(OptionError, match="crop_border 30"):
        calculate_psnr(sr, hr, crop_border=30)
    with pytest.raises(InputError, match="smaller than the 11×11 SSIM window"):
        calculate_ssim(sr[:14, :14], hr[:14, :14], crop_border=2)
