"""MATLAB-style resampling: against a per-pixel loop, against PIL, and the properties training relies on."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from vsr.models import resample
from vsr.models.resample import KERNELS, Resample, imresize, resize, weight_matrix


def _naive_kernel(name: str, x: float) -> float:
    """The kernels as MATLAB's imresize.m writes them, one scalar at a time."""
    ax = abs(x)
    if name == "bicubic":
        if ax <= 1:
            return 1.5 * ax**3 - 2.5 * ax**2 + 1
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2 if ax <= 2 else 0.0
    if name == "lanczos":
        if ax >= 3:
            return 0.0
        if x == 0:
            return 1.0
        return 3 * math.sin(math.pi * x) * math.sin(math.pi * x / 3) / (math.pi**2 * x**2)
    if name == "bilinear":
        return max(0.0, 1 - ax)
    if name == "box":
        return 1.0 if -0.5 <= x < 0.5 else 0.0
    raise AssertionError(name)


def _naive_imresize(image: np.ndarray, out_h: int, out_w: int, kernel: str, scale_h: float, scale_w: float):
    """Every output pixel as a 2-D weighted sum over the input, borders mirrored: no matrices, no separability."""
    in_h, in_w = image.shape
    support = {"bicubic": 2, "lanczos": 3, "bilinear": 1, "box": 0.5}[kernel]

    def mirror(i: int, n: int) -> int:
        i %= 2 * n
        return i if i < n else 2 * n - 1 - i

    def taps(center: float, scale: float):
        stretch = min(scale, 1.0)  # antialiasing: the kernel is widened by 1/scale when shrinking
        reach = support / stretch
        first, last = math.floor(center - reach) - 1, math.ceil(center + reach) + 1
        return [(p, stretch * _naive_kernel(kernel, stretch * (center - p))) for p in range(first, last + 1)]

    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        rows = taps((i + 0.5) / scale_h - 0.5, scale_h)
        for j in range(out_w):
            cols = taps((j + 0.5) / scale_w - 0.5, scale_w)
            total = weight_sum = 0.0
            for p, wp in rows:
                for q, wq in cols:
                    total += wp * wq * image[mirror(p, in_h), mirror(q, in_w)]
                    weight_sum += wp * wq
            out[i, j] = total / weight_sum
    return out


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("scale", [0.5, 1 / 3, 1.7, 3.0])
def test_imresize_matches_per_pixel_loop(kernel, scale):
    image = np.random.default_rng(1).random((7, 9))
    out = imresize(torch.from_numpy(image)[None, None], scale, kernel)[0, 0].numpy()
    expected_shape = (math.ceil(7 * scale - 1e-9), math.ceil(9 * scale - 1e-9))
    assert out.shape == expected_shape
    naive = _naive_imresize(image, *expected_shape, kernel, scale, scale)
    np.testing.assert_allclose(out, naive, atol=1e-12)


def test_resize_to_size_matches_per_pixel_loop():
    image = np.random.default_rng(2).random((10, 12))
    out = resize(torch.from_numpy(image)[None, None], (4, 17), "bicubic")[0, 0].numpy()
    naive = _naive_imresize(image, 4, 17, "bicubic", 4 / 10, 17 / 12)
    np.testing.assert_allclose(out, naive, atol=1e-12)


@pytest.mark.parametrize("kernel, pil_name", [("bicubic", "BICUBIC"), ("lanczos", "LANCZOS"), ("bilinear", "BILINEAR")])
@pytest.mark.parametrize("size", [(17, 23), (90, 110)])
def test_resize_matches_pil_away_from_borders(kernel, pil_name, size):
    """PIL (installed with scikit-image) uses the same kernels and sample positions; only its borders differ."""
    from PIL import Image as pil
    image = np.random.default_rng(3).random((40, 50)).astype(np.float32)
    ours = resize(torch.from_numpy(image).double()[None, None], size, kernel)[0, 0].numpy()
    theirs = np.asarray(pil.fromarray(image, mode="F").resize((size[1], size[0]), getattr(pil.Resampling, pil_name)))
    margin = 8  # more than the widest kernel reaches (lanczos ×3 support, stretched 40/17 ≈ 2.4)
    np.testing.assert_allclose(ours[margin:-margin, margin:-margin], theirs[margin:-margin, margin:-margin], atol=1e-5)


def test_output_size_is_matlab_ceil():
    x = torch.rand(1, 1, 30, 31)
    assert imresize(x, 0.1).shape[-2:] == (3, 4)
    assert imresize(x, 0.25).shape[-2:] == (8, 8)
    assert imresize(x, 1 / 3).shape[-2:] == (10, 11)
    assert imresize(x, 4).shape[-2:] == (120, 124)


def test_downscaled_linear_ramp_stays_linear_inside():
    ramp = torch.arange(40, dtype=torch.float64).expand(1, 1, 5, 40)
    out = imresize(ramp, 0.5)[0, 0, 0]
    # Output pixel i covers input pixels 2i and 2i+1: a symmetric kernel reproduces their mean, 2i + 0.5.
    interior = torch.arange(3, 17)
    torch.testing.assert_close(out[interior], 2.0 * interior.double() + 0.5, atol=1e-12, rtol=0)


def test_box_downscale_by_an_integer_is_area_averaging():
    x = torch.rand(2, 3, 32, 24, dtype=torch.float64)
    torch.testing.assert_close(imresize(x, 0.25, "box"), F.avg_pool2d(x, 4), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos"])
def test_antialiasing_preserves_the_mean_and_removes_aliasing(kernel):
    checkerboard = ((torch.arange(63)[:, None] + torch.arange(63)[None, :]) % 2).double()[None, None]
    smooth = imresize(checkerboard, 1 / 3, kernel)
    # Without antialiasing, output pixel i samples input pixel 3i + 1 exactly: a coarser checkerboard of 0s and 1s.
    aliased = imresize(checkerboard, 1 / 3, kernel, antialias=False)
    assert abs(smooth.mean().item() - 0.5) < 1e-3
    assert smooth.std().item() < 0.02  # the finest pattern becomes flat gray, as a low-pass filter should make it
    assert aliased.std().item() > 0.45
    photo_like = torch.rand(1, 1, 64, 64, dtype=torch.float64)
    assert abs(imresize(photo_like, 0.25, kernel).mean() - photo_like.mean()) < 2e-3


def test_identity_at_scale_one():
    x = torch.rand(2, 3, 11, 13)
    assert torch.equal(imresize(x, 1.0), x)
    assert torch.equal(resize(x, (11, 13)), x)
    torch.testing.assert_close(weight_matrix(9, 9), torch.eye(9))


def test_rows_sum_to_one_and_constants_survive():
    for kernel in KERNELS:
        for n_in, n_out in [(5, 17), (17, 5), (64, 16), (3, 1)]:
            torch.testing.assert_close(weight_matrix(n_in, n_out, kernel).sum(1), torch.ones(n_out))
    constant = torch.full((1, 3, 9, 7), 0.3)
    torch.testing.assert_close(resize(constant, (20, 3), "lanczos"), torch.full((1, 3, 20, 3), 0.3))


def test_batched_channels_are_resized_independently():
    x = torch.rand(3, 2, 12, 10)
    batched = resize(x, (7, 15))
    for n in range(3):
        for c in range(2):
            torch.testing.assert_close(batched[n, c], resize(x[n : n + 1, c : c + 1], (7, 15))[0, 0])


def test_resample_module_upscales_like_imresize():
    module = Resample(4, "bicubic")
    x = torch.rand(2, 3, 6, 5)
    out = module(x)
    assert out.shape == (2, 3, 24, 20)
    torch.testing.assert_close(out, imresize(x, 4))
    assert "bicubic" in repr(module)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="nearest"):
        resize(torch.rand(1, 1, 4, 4), (2, 2), kernel="nearest")
    with pytest.raises(ValueError, match="scale"):
        Resample(0)
    with pytest.raises(ValueError, match="float"):
        resize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), (2, 2))


@pytest.mark.parametrize("kernel", ["bicubic", "lanczos", "bilinear"])
@pytest.mark.parametrize("in_size, out_size", [(600, 2400), (1500, 700), (1031, 1033)])
def test_a_long_axis_multiplied_in_bands_equals_the_whole_matrix(kernel, in_size, out_size):
    """Banded: each run of output pixels times only the input pixels its kernels reach (mirrored borders too)."""
    bands = resample._bands(in_size, out_size, kernel, True, None, torch.device("cpu"), torch.float64)
    assert len(bands) > 1
    x = torch.rand(1, 2, 5, in_size, dtype=torch.float64)
    whole = x @ resample.weight_matrix(in_size, out_size, kernel, device="cpu", dtype=torch.float64).T
    assert torch.allclose(resample.resize(x, (5, out_size), kernel), whole, atol=1e-12, rtol=0)


def test_a_banded_axis_keeps_only_its_bands_in_memory():
    """The bands were views of the dense matrix, and cached: the whole of it stayed in memory (helper-74)."""
    resample.weight_matrix.cache_clear()
    bands = resample._bands(5120, 2560, "lanczos", True, None, torch.device("cpu"), torch.float32)
    dense = 5120 * 2560 * 4
    held = {band[4].untyped_storage().data_ptr(): band[4].untyped_storage().nbytes() for band in bands}
    assert len(bands) == 10 and sum(held.values()) < dense / 5  # (each band: 256 rows × the ~520 inputs they reach)
    assert resample.weight_matrix.cache_info().currsize == 0


def test_resizing_a_large_picture_holds_little_beside_its_result():
    """The weight matrices were built dense in float64 before they were cut into bands (5.5 GB for a 30720 → 15360
    axis: an 8K image ×4 sized ×2), and the picture resized along one axis, in bands and concatenated, was held whole
    besides the result: 4000×4000 → 2000×2000 grew the peak by 5.5 times the result, now 2."""
    import subprocess
    import sys

    script = """
import resource, torch
from vsr.models.resample import _bands, resize
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
x = torch.rand(1, 3, 4000, 4000)
base = peak()
_bands(8000, 4000, "lanczos", True, None, torch.device("cpu"), torch.float32)
print(peak() - base)
base = peak()
y = resize(x, (2000, 2000), "lanczos")
print((peak() - base) / y.nbytes)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    bands, resized = map(float, result.stdout.split())
    assert bands < 60e6, bands  # the dense matrix in float64 alone: 256 MB; measured 23 MB
    assert resized < 3, resized  # measured 2.0; 5.5 before
