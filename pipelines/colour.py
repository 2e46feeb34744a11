"""RGB → Y'CbCr planes in torch, on the frames' own device, as FFmpeg's planar YUV formats store them (and back).

    planes = rgb_to_yuv(frames, matrix="bt709", full_range=False, bit_depth=10, chroma="420")
    planes.y  # N×H×W int16 (yuv420p10le's Y plane), planes.u / planes.v N×H/2×W/2

On a GPU the conversion runs where the upscaled frames already are, and the CPU is left to the encoder (H100/H200
have no NVENC, so every output is encoded on the CPU); `pipelines.encode` copies the planes to the host once.
On a CPU swscale is much faster (see `pipelines.encode`), so there this module is the check, not the default path.

What is computed (ITU-T H.273 and FFmpeg's `AVColorRange` definitions; R', G', B' in [0, 1]):
    E'Y = Kr·R' + (1 − Kr − Kb)·G' + Kb·B'    E'Cb = (B' − E'Y) / (2(1 − Kb))    E'Cr = (R' − E'Y) / (2(1 − Kr))
    limited range: Y = (16 + 219·E'Y)·2^(n−8)    Cb, Cr = (128 + 224·E'C)·2^(n−8)
    full range:    Y = (2^n − 1)·E'Y             Cb, Cr = (2^n − 1)·E'C + 2^(n−1)
rounded half up (floor(x + 1/2), as swscale's fixed-point paths do by adding half a unit before the final shift)
and clipped to [0, 2^n − 1]. Subsampled chroma is filtered as swscale filters RGB input with the flags the encoder's
RGB path uses (SWS_BILINEAR, PyAV's default), measured with impulse images: each chroma sample is centred between
its luma samples (not MPEG-2's left siting), horizontally the mean of its 2 pixels, vertically (4:2:0) the
bilinear 2:1 filter [1, 3, 3, 1]/8 over rows 2k−1 … 2k+2, with the edge rows repeated. SWS_ACCURATE_RND changes
none of this; SWS_FULL_CHR_H_INP would filter horizontally with [1, 3, 3, 1]/8 too.

The arithmetic is integer (64-bit fixed point, coefficients scaled by 2^40, error below 1e-5 of a level), so that a
CUDA device and the CPU give bit-identical planes: float sums round differently on the two (summation order, fused
multiply-adds, TF32 convolutions) and would move values that sit near a rounding boundary. Float frames are first
quantised to 16 bits (round(x·65535)).

16-bit RGB: swscale (FFmpeg 8) treats 16-bit RGB as 8-bit levels ×256, so its white is 255·256 = 65280, not
65535, both ways: rgb48le white becomes 10-bit Y 943 instead of 940, and Y 940 is decoded to 65283. In vsr float
frames are exact (1.0 is white): the decoders convert deep YUV with `planes_to_rgb`, and the encoder hands float
frames to swscale as round(x·65280). `rgb16_white` says which scale uint16 and float frames are in here: 65535 (the
default, exact) or `SWSCALE_RGB16_WHITE`, to compare with swscale given rgb48le.

Against swscale (PyAV 18 / FFmpeg 8, tests/pipelines/test_colour.py), from 8-bit RGB, or 16-bit RGB with
`rgb16_white=SWSCALE_RGB16_WHITE`, every plane is within one level at 8 and 10 bits. In limited range 0.7% (8-bit)
to 3% (10-bit) of Y samples differ (swscale's coefficients are rounded to 15 bits) and up to 7% of 4:2:0 chroma (its
vertical filter does not round accurately without SWS_ACCURATE_RND). In full range swscale's chroma sits about half a
level below 2^(n−1) + (2^n − 1)·E'C, so about half of the full-range chroma samples differ by one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from av.video.reformatter import Interpolation

# How swscale converts YUV to RGB where vsr lets it (8-bit video, still images). Its default is a fast fixed-point
# path: measured with PyAV 18.1 on flat BT.709 colors, 2/3 of them come out 2-3 levels off, and chroma is not
# interpolated. Accurate rounding with full chroma interpolation is within 1 level of the exact equations, costs
# ~10% of decoding speed at 640×360, and decodes JPEG and WebP photos as libjpeg and libwebp do (a 4:2:0 JPEG of
# samples/bbb_frame.png: 2.26 levels from the original on average, Pillow 2.28, the default path 2.53).
EXACT_CONVERSION = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT

# Kr, Kb of each matrix, under both the names streams are tagged with (FFmpeg's AVColorSpace names) and swscale's
# (those `pipelines.decode.rgb_matrix` returns). Sources: ITU-R BT.709-6 table 3 item 3.2; ITU-R BT.601-7 (also
# BT.470 System B/G and SMPTE 170M); ITU-R BT.2020-2 table 4 (non-constant luminance); SMPTE ST 240:1999;
# FCC 47 CFR 73.682(a)(20)(iv). The same values are H.273 table 4, matrix_coefficients 1, 5, 6, 9, 7 and 4.
MATRICES: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "itu709": (0.2126, 0.0722),
    "bt470bg": (0.299, 0.114),
    "smpte170m": (0.299, 0.114),
    "itu601": (0.299, 0.114),
    "itu624": (0.299, 0.114),
    "bt2020nc": (0.2627, 0.0593),
    "bt2020": (0.2627, 0.0593),
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
}
CHROMA_SUBSAMPLING = ("420", "422", "444")
SWSCALE_RGB16_WHITE = 255 * 256  # swscale's white in 16-bit RGB (module doc)
BIT_DEPTHS = range(8, 15)  # FFmpeg's planar YUV formats up to 14 bits: the planes are int16

_FRACTION_BITS = 40  # headroom: 16-bit input · 16 filter taps · coefficient < 2^57, inside int64
# (rows, columns) of luma per chroma sample.
_STEPS = {"420": (2, 2), "422": (1, 2), "444": (1, 1)}


def untagged_matrix(height: int) -> str:
    """The matrix players assume for a stream that declares none (FFmpeg's name): BT.709 from 720 lines up, else
    BT.601 (SMPTE 170M). vsr decodes such a stream so and tags its output so, keeping what a player showed (FFmpeg
    takes BT.601 whatever the size: decoded so, an untagged HD video's saturated colors moved up to 18 levels)."""
    return "bt709" if height >= 720 else "smpte170m"


class YuvPlanes(NamedTuple):
    """The three planes of a batch, N×H×W each (chroma subsampled): uint8 for 8 bits, else int16 holding the n-bit
    values, the layout of FFmpeg's little-endian `yuv…p10le` / `p12le` formats on a little-endian host."""

    y: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor


def rgb_to_yuv(frames: torch.Tensor, matrix: str, full_range: bool, bit_depth: int, chroma: str, *,
               rgb16_white: int = 65535) -> YuvPlanes:
    """Convert N×3×H×W RGB (uint8, uint16, or float in [0, 1]) to planar Y'CbCr on `frames.device`.

    `matrix` is a `MATRICES` name, `bit_depth` 8 to 14, `chroma` "420", "422" or "444" (4:2:0 needs an even height
    and width, 4:2:2 an even width). See the module doc for the formulas, the chroma filter and the rounding.
    `rgb16_white` is the 16-bit level taken as white for uint16 and float frames (float x is level round(x·65535)):
    65535, or `SWSCALE_RGB16_WHITE` to convert as swscale does (see the module doc).
    """
    if matrix not in MATRICES:
        raise ValueError(f"unknown matrix {matrix!r}; expected one of {', '.join(MATRICES)}")
    if chroma not in _STEPS:
        raise ValueError(f"unknown chroma subsampling {chroma!r}; expected one of {', '.join(CHROMA_SUBSAMPLING)}")
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit_depth={bit_depth}: expected {BIT_DEPTHS.start} to {BIT_DEPTHS.stop - 1}")
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames N×3×H×W, got {tuple(frames.shape)}")
    if rgb16_white not in (65535, SWSCALE_RGB16_WHITE):
        raise ValueError(f"rgb16_white={rgb16_white}: expected 65535 or {SWSCALE_RGB16_WHITE} (swscale's)")
    count, _, height, width = frames.shape
    step_y, step_x = _STEPS[chroma]
    if height % step_y or width % step_x:
        raise ValueError(f"{chroma} chroma needs a height divisible by {step_y} and a width by {step_x}, "
                         f"not {width}x{height}")
    white = 255 if frames.dtype == torch.uint8 else rgb16_white
    taps = 16 if chroma == "420" else 2 if chroma == "422" else 1  # the chroma filter's sum, see _chroma_sums
    luma, cb, cr = _fixed_point(MATRICES[matrix], full_range, bit_depth, white, taps)

    dtype = torch.uint8 if bit_depth == 8 else torch.int16
    top = 2**bit_depth - 1
    y = torch.empty((count, height, width), dtype=dtype, device=frames.device)
    u = torch.empty((count, height // step_y, width // step_x), dtype=dtype, device=frames.device)
    v = torch.empty_like(u)
    # One frame at a time: the int64 copy of a 4× upscaled 4K frame alone is 1.4 GB.
    for index in range(count):
        rgb = _levels(frames[index])
        y[index] = _apply(luma, rgb, top)
        sums = _chroma_sums(rgb, step_y, step_x)
        u[index] = _apply(cb, sums, top)
        v[index] = _apply(cr, sums, top)
    return YuvPlanes(y, u, v)


def yuv_to_rgb(yuv: torch.Tensor, matrix: str, full_range: bool) -> torch.Tensor:
    """N×H×W×3 uint8 YUV 4:4:4 (as DALI's GPU reader gives YCbCr) → RGB uint8, on the tensor's device.

    Within 2 levels of PyAV's exact swscale path on the same YUV (tests/pipelines/test_decode_dali.py).
    """
    yuv = yuv.to(torch.float32)
    rgb = _ycbcr_to_rgb(yuv[..., 0], yuv[..., 1], yuv[..., 2], matrix, full_range, 8)
    return rgb.mul_(255).round_().to(torch.uint8)


CHROMA_SITINGS = ("left", "center")


def planes_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str, full_range: bool,
                  bit_depth: int, siting: str = "left") -> torch.Tensor:
    """Planar Y'CbCr as decoders store it → H×W×3 float32 RGB in [0, 1] (1 = white), on the planes' device.

    `y` is H×W, `u` and `v` are 4:2:0 (⌈H/2⌉×⌈W/2⌉), 4:2:2 (H×⌈W/2⌉) or 4:4:4 (H×W), integer samples of
    `bit_depth` bits (uint8, int16 or uint16, as FFmpeg's yuv4xxp, yuv4xxp10le, ... and NVDEC's NV12/P010 give them).
    Subsampled chroma is interpolated bilinearly from where its samples sit: `siting` "left" (H.264, HEVC, MPEG-2,
    MPEG-4: on the even luma columns) or "center" (between two luma columns: MJPEG, and what swscale assumes where a
    stream says nothing, as VP9, AV1 and FFV1 streams do); vertically (4:2:0) halfway between two luma rows in both.
    Measured against swscale's exact path (bilinear, full chroma interpolation, accurate rounding) on 8-bit 4:2:0
    frames with sharp chroma edges, these two sitings give the same RGB within one level for those codecs (the
    other siting is up to 44 levels off). For more than 8 bits swscale's RGB48 output is no reference: its
    full-chroma-interpolation path is wrong for 4:2:0 (mean error 55 levels of 255 on a 10-bit clip, FFmpeg 8 in
    PyAV 18.1) and its others up to 48 levels off at chroma edges, hence this function for deep sources.
    """
    if siting not in CHROMA_SITINGS:
        raise ValueError(f"unknown chroma siting {siting!r}; expected one of {', '.join(CHROMA_SITINGS)}")
    height, width = y.shape[-2:]
    cb = _upsample_chroma(u.to(torch.float32), height, width, siting)
    cr = _upsample_chroma(v.to(torch.float32), height, width, siting)
    return _ycbcr_to_rgb(y.to(torch.float32), cb, cr, matrix, full_range, bit_depth)


def _upsample_chroma(plane: torch.Tensor, height: int, width: int, siting: str) -> torch.Tensor:
    """h×w chroma → height×width, bilinearly (sitings in planes_to_rgb's doc), edges repeated."""
    if plane.shape[-1] * 2 - width in (0, 1):  # horizontally subsampled
        left = torch.cat([plane[..., :1], plane[..., :-1]], -1)
        right = torch.cat([plane[..., 1:], plane[..., -1:]], -1)
        if siting == "left":  # sample k on luma column 2k
            pair = (plane, (plane + right) / 2)
        else:  # sample k between luma columns 2k and 2k + 1
            pair = (0.75 * plane + 0.25 * left, 0.75 * plane + 0.25 * right)
        plane = torch.stack(pair, -1).flatten(-2)[..., :width]
    if plane.shape[-2] * 2 - height in (0, 1):  # vertically subsampled: sample k between rows 2k and 2k + 1
        above = torch.cat([plane[..., :1, :], plane[..., :-1, :]], -2)
        below = torch.cat([plane[..., 1:, :], plane[..., -1:, :]], -2)
        plane = torch.stack([0.75 * plane + 0.25 * above, 0.75 * plane + 0.25 * below], -2).flatten(-3, -2)
        plane = plane[..., :height, :]
    if plane.shape[-2:] != (height, width):
        raise ValueError(f"chroma planes {tuple(plane.shape[-2:])} do not fit a {width}x{height} luma plane")
    return plane


def _ycbcr_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor, matrix: str, full_range: bool,
                  bit_depth: int) -> torch.Tensor:
    """Full-resolution Y, Cb, Cr samples of `bit_depth` bits → (..., 3) float32 RGB in [0, 1]: the inverse of the
    equations in the module doc, in float (a decoder's conversion needs no bit-exactness between devices)."""
    kr, kb = MATRICES[matrix]
    kg = 1 - kr - kb
    levels, half = 2 ** (bit_depth - 8), 2 ** (bit_depth - 1)
    if full_range:  # Y in [0, 2^n − 1], Cb and Cr centred on 2^(n−1)
        top = 2**bit_depth - 1
        y, cb, cr = y / top, (cb - half) / top, (cr - half) / top
    else:  # limited range: Y in [16, 235], Cb and Cr in [16, 240], times 2^(n−8)
        y = (y - 16 * levels) / (219 * levels)
        cb, cr = (cb - half) / (224 * levels), (cr - half) / (224 * levels)
    r = y + (2 - 2 * kr) * cr
    g = y - (2 * kb * (1 - kb) / kg) * cb - (2 * kr * (1 - kr) / kg) * cr
    b = y + (2 - 2 * kb) * cb
    return torch.stack([r, g, b], -1).clamp_(0, 1)


def _levels(frame: torch.Tensor) -> torch.Tensor:
    """3×H×W as int64 levels: uint8 and uint16 as they are, float in [0, 1] as round(x·65535)."""
    if frame.dtype.is_floating_point:
        frame = frame.float().clamp(0, 1).mul(65535).round()
    elif frame.dtype not in (torch.uint8, torch.uint16):
        raise ValueError(f"frames must be uint8, uint16 or float, not {frame.dtype}")
    # Decoders give channels-last frames: make the planes contiguous for the views of _chroma_sums.
    return frame.to(torch.int64, memory_format=torch.contiguous_format)


def _chroma_sums(rgb: torch.Tensor, step_y: int, step_x: int) -> torch.Tensor:
    """3×h×w sums of the RGB each chroma sample is made of, weighted as swscale's filter (module doc): 16× the
    filtered value for 4:2:0, 2× for 4:2:2, the pixels themselves for 4:4:4."""
    if step_x == 2:
        rgb = rgb.view(3, rgb.shape[1], rgb.shape[2] // 2, 2).sum(-1)  # horizontal pairs
    if step_y == 2:
        padded = torch.cat([rgb[:, :1], rgb, rgb[:, -1:]], dim=1)  # row i of `padded` is row i − 1, edges repeated
        pairs = rgb.view(3, rgb.shape[1] // 2, 2, rgb.shape[2]).sum(2)  # rows 2k, 2k+1
        rgb = pairs.mul_(3).add_(padded[:, 0:-2:2]).add_(padded[:, 3::2])  # + rows 2k−1 and 2k+2
    return rgb


def _apply(coefficients: tuple[int, int, int, int], rgb: torch.Tensor, top: int) -> torch.Tensor:
    """(cr·R + cg·G + cb·B + offset) >> fraction bits, clipped to [0, top]: one plane, exactly on any device."""
    red, green, blue, offset = coefficients
    plane = rgb[0] * red
    plane.add_(rgb[1], alpha=green).add_(rgb[2], alpha=blue).add_(offset)
    return plane.bitwise_right_shift_(_FRACTION_BITS).clamp_(0, top)


def _fixed_point(kr_kb: tuple[float, float], full_range: bool, bit_depth: int, white: int,
                 taps: int) -> tuple[tuple[int, int, int, int], ...]:
    """(R, G, B coefficient, offset) for Y, Cb and Cr, as integers scaled by 2^_FRACTION_BITS: input levels up to
    `white` (chroma: sums of `taps` pixels) to output levels, the offset holding the +1/2 of rounding half up."""
    kr, kb = kr_kb
    kg = 1 - kr - kb
    if full_range:
        luma_gain = chroma_gain = 2**bit_depth - 1
        luma_offset, chroma_offset = 0, 2 ** (bit_depth - 1)
    else:
        unit = 2 ** (bit_depth - 8)
        luma_gain, chroma_gain = 219 * unit, 224 * unit
        luma_offset, chroma_offset = 16 * unit, 128 * unit
    luma = (kr, kg, kb)
    cb = tuple((blue - k) / (2 * (1 - kb)) for blue, k in zip((0, 0, 1), luma))
    cr = tuple((red - k) / (2 * (1 - kr)) for red, k in zip((1, 0, 0), luma))
    one = 2**_FRACTION_BITS

    def scaled(weights, gain, offset, inputs):
        return (*(round(w * gain / (white * inputs) * one) for w in weights), round((offset + 0.5) * one))

    return (scaled(luma, luma_gain, luma_offset, 1), scaled(cb, chroma_gain, chroma_offset, taps),
            scaled(cr, chroma_gain, chroma_offset, taps))
