"""MATLAB-compatible bicubic downscaling: against values MATLAB printed, and against MATLAB's formula by hand."""

import math
from fractions import Fraction

import pytest
import torch

from vsr.errors import OptionError
from vsr.models.resample import imresize, resize
from vsr.training.degrade import CONTEXT, downscale, mod_crop, quantize_8bit

RAMP_4X4 = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)  # MATLAB: reshape(0:15, 4, 4).'


# ---- values printed by MATLAB ----


def test_matlab_bicubic_antialiased_4x4_to_3x3():
    """imresize(reshape(0:15,4,4).', [3 3]) (bicubic, antialiased): bicubic-pytorch checks its port against MATLAB
    R2019b's output and prints it in core.py. Its [1, 0] entry, 6.1505, is a typo there: the ramp is separable,
    so out[1, 0] = out[0, 0] + 4·(1.5 - out[0, 0]/5) = 6.1501, and out[1, 0] + out[1, 2] must be 15."""
    matlab = torch.tensor(
        [[0.7506, 2.1004, 3.4503], [math.nan, 7.5000, 8.8499], [11.5497, 12.8996, 14.2494]], dtype=torch.float64
    )
    ours = resize(RAMP_4X4, (3, 3), "bicubic")[0, 0]
    known = ~matlab.isnan()
    torch.testing.assert_close(ours[known], matlab[known], atol=1e-4, rtol=0)  # MATLAB printed 4 decimals
    assert ours[1, 0].item() == pytest.approx(15 - 8.8499, abs=1e-4)


def test_matlab_bilinear_antialiased_halving():
    """imresize(M, 0.5, 'bilinear') with and without antialiasing, as MATLAB prints them (Stack Overflow 26823140):
    the antialiased triangle is twice as wide and mirrors the border."""
    torch.testing.assert_close(
        imresize(RAMP_4X4, 0.5, "bilinear")[0, 0], torch.tensor([[3.125, 4.875], [10.125, 11.875]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        imresize(RAMP_4X4, 0.5, "bilinear", antialias=False)[0, 0],
        torch.tensor([[2.5, 4.5], [10.5, 12.5]], dtype=torch.float64),
    )


def test_matlab_bicubic_halving_without_antialiasing():
    """imresize(M, 0.5, 'bicubic', 'AntiAliasing', false) as MATLAB (and Octave) print it: Keys' a = -0.5."""
    torch.testing.assert_close(
        imresize(RAMP_4X4, 0.5, "bicubic", antialias=False)[0, 0],
        torch.tensor([[2.1875, 4.3125], [10.6875, 12.8125]], dtype=torch.float64),
    )


def test_matlab_bilinear_antialiased_corner_block():
    """MATLAB Answers 650593 (R2020b): imresize(x, [2 2], 'bilinear') = [0.1094 0.7656; 0.0156 0.1094]."""
    x = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)[None, None]
    torch.testing.assert_close(
        resize(x, (2, 2), "bilinear")[0, 0], torch.tensor([[7, 49], [1, 7]], dtype=torch.float64) / 64
    )


# ---- MATLAB's formula, transcribed from imresize.m's contributions() and computed exactly ----


def _matlab_cubic(x: Fraction) -> Fraction:
    ax = abs(x)
    if ax <= 1:
        return Fraction(3, 2) * ax**3 - Fraction(5, 2) * ax**2 + 1
    if ax <= 2:
        return Fraction(-1, 2) * ax**3 + Fraction(5, 2) * ax**2 - 4 * ax + 2
    return Fraction(0)


def _matlab_contributions(in_length: int, out_length: int, scale: Fraction):
    """Weights and 1-based indices, as MATLAB computes them (u in 1-based coordinates, symmetric `aux` padding)."""
    kernel_width = 4 / scale  # antialiasing: downscaling widens the kernel by 1/scale
    rows = []
    for x in range(1, out_length + 1):
        u = x / scale + Fraction(1, 2) * (1 - 1 / scale)
        left = math.floor(u - kernel_width / 2)
        taps = [left + k for k in range(math.ceil(kernel_width) + 2)]
        weights = [scale * _matlab_cubic(scale * (u - p)) for p in taps]
        total = sum(weights)
        aux = list(range(1, in_length + 1)) + list(range(in_length, 0, -1))
        rows.append([(w / total, aux[(p - 1) % len(aux)]) for w, p in zip(weights, taps)])
    return rows


def _matlab_imresize_exact(image: list[list[Fraction]], scale: int) -> list[list[Fraction]]:
    height, width = len(image), len(image[0])
    out_h, out_w = math.ceil(height / scale), math.ceil(width / scale)
    rows = _matlab_contributions(height, out_h, Fraction(1, scale))
    cols = _matlab_contributions(width, out_w, Fraction(1, scale))
    # MATLAB resizes the dimension with the smaller scale first; with equal scales, rows (dimension 1) first.
    tall = [[sum(w * image[i - 1][j] for w, i in rows[r]) for j in range(width)] for r in range(out_h)]
    return [[sum(w * tall[r][j - 1] for w, j in cols[c]) for c in range(out_w)] for r in range(out_h)]


@pytest.mark.parametrize("scale, size", [(2, 8), (4, 16), (3, 12)])
@pytest.mark.parametrize("pattern", ["impulse", "ramp", "random"])
def test_downscale_equals_matlab_formula_exactly(scale, size, pattern):
    if pattern == "impulse":  # one bright pixel near a corner: the kernel and the mirrored border show directly
        image = [[Fraction(int((i, j) == (1, 2))) for j in range(size)] for i in range(size)]
    elif pattern == "ramp":
        image = [[Fraction(i * size + j, size * size) for j in range(size)] for i in range(size)]
    else:
        generator = torch.Generator().manual_seed(size)
        values = torch.randint(0, 256, (size, size), generator=generator)
        image = [[Fraction(int(v), 255) for v in row] for row in values]
    expected = torch.tensor([[float(v) for v in row] for row in _matlab_imresize_exact(image, scale)],
                            dtype=torch.float64)
    hr = torch.tensor([[float(v) for v in row] for row in image], dtype=torch.float64)[None, None]
    torch.testing.assert_close(downscale(hr, scale)[0, 0], expected, atol=1e-12, rtol=0)


# ---- properties ----


def test_output_size_is_exact_and_follows_matlab_otherwise():
    assert downscale(torch.rand(2, 3, 128, 96), 4).shape == (2, 3, 32, 24)
    assert downscale(torch.rand(1, 3, 30, 31), 3).shape == (1, 3, 10, 11)  # ceil, as MATLAB
    assert downscale(torch.rand(1, 1, 9, 9), 1).shape == (1, 1, 9, 9)


@pytest.mark.parametrize("quantize", [False, True])
def test_constant_image_stays_constant(quantize):
    gray = torch.full((1, 3, 40, 24), 97 / 255)
    torch.testing.assert_close(downscale(gray, 4, quantize=quantize), torch.full((1, 3, 10, 6), 97 / 255))


def test_linear_ramp_gives_the_mean_of_each_block_inside():
    ramp = torch.arange(64, dtype=torch.float64).expand(1, 1, 8, 64) / 64
    lr = downscale(ramp, 4)[0, 0, 0]
    # LR pixel i covers HR pixels 4i..4i+3; the symmetric kernel reproduces a linear function: their mean.
    inside = torch.arange(CONTEXT, 16 - CONTEXT)
    torch.testing.assert_close(lr[inside], (4 * inside.double() + 1.5) / 64, atol=1e-12, rtol=0)
    assert not torch.allclose(lr[:1], torch.tensor([1.5 / 64], dtype=torch.float64))  # mirrored at the border


def test_quantize_rounds_to_8_bit_levels_and_saturates():
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0  # a hard edge: bicubic over- and undershoots
    raw = downscale(edge, 2)
    assert raw.min() < 0 and raw.max() > 1
    quantized = downscale(edge, 2, quantize=True)
    levels = quantized * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert quantized.min() == 0 and quantized.max() == 1
    inside = (raw >= 0) & (raw <= 1)
    assert (quantized - raw)[inside].abs().max() <= 0.5 / 255 + 1e-6
    torch.testing.assert_close(quantize_8bit(torch.tensor([0.5 / 255 - 1e-4, 2.0, -1.0])),
                               torch.tensor([0.0, 1.0, 0.0]))


def test_context_covers_what_the_kernel_reads():
    """A crop downscaled with CONTEXT LR pixels of surroundings equals the whole image's LR inside."""
    image = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    whole = downscale(image, 4)
    margin = CONTEXT * 4
    crop = downscale(image[..., 16 - margin : 48 + margin, 20 - margin : 44 + margin], 4)
    torch.testing.assert_close(crop[..., CONTEXT:-CONTEXT, CONTEXT:-CONTEXT], whole[..., 4:12, 5:11], atol=1e-12,
                               rtol=0)
    short = downscale(image[..., 16 - 4 : 48 + 4, 20 - margin : 44 + margin], 4)  # one LR row of context
    inner = short[..., 1:-1, CONTEXT:-CONTEXT]
    assert not torch.allclose(inner[..., :1, :], whole[..., 4:5, 5:11], atol=1e-6)
    torch.testing.assert_close(inner[..., 1:-1, :], whole[..., 5:11, 5:11], atol=1e-12, rtol=0)


def test_mod_crop_and_bad_arguments():
    assert mod_crop(torch.zeros(3, 130, 67), 4).shape == (3, 128, 64)
    with pytest.raises(OptionError, match="scale=0"):
        downscale(torch.rand(1, 3, 8, 8), 0)
    with pytest.raises(OptionError, match="scale=2.5"):
        mod_crop(torch.zeros(3, 8, 8), 2.5)
    with pytest.raises(ValueError, match="float"):
        downscale(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 2)
