"""Still images in and out through PyAV, and their upscaling through the engine.

PyAV rather than Pillow: Pillow reads 16-bit RGB PNGs as 8-bit, and PyAV is already the video dependency. PNG pixels
are copied byte for byte between numpy and the frame's plane (no swscale conversion), so 8- and 16-bit, gray, gray
with alpha, RGB and RGBA survive a round trip exactly. JPEG is written by FFmpeg's mjpeg encoder (full-range BT.601
YCbCr, as JFIF specifies), WebP by libwebp (which converts RGB to YUV itself). TIFF and BMP are read too (and
written as PNG by default, see pipelines/upscale.py).

An EXIF Orientation (phone photos are stored sideways and say how to turn them) is applied when reading, as image
viewers do, and the output is written upright without it: vsr writes no EXIF, so keeping the pixels sideways would
show the output turned. An ICC color profile (Display P3, Adobe RGB photos) is written into the output as it came
(pipelines/image_metadata.py): the pixels keep their values, so they need the same profile to show the same colors.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from vsr.pipelines.colour import EXACT_CONVERSION, planes_to_rgb
from vsr.pipelines.engine import Engine, upscale_with_alpha
from vsr.pipelines.probe import ONE_FILE, decoding_errors

from vsr.errors import InputError, OptionError, OutputError
from vsr.fsutil import AppearedMeanwhile, write_bytes_atomic
from vsr.hardware import check_memory
from vsr.pipelines.image_metadata import (
    exif_block,
    exif_for_output,
    exif_orientation,
    icc_profile,
    is_animated,
    tiff_pages,
    with_exif,
    with_icc_profile,
)

logger = logging.getLogger(__name__)

READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
WRITE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Packed single-plane formats that numpy reads and writes directly: pix_fmt → (channels, numpy dtype).
PACKED_FORMATS = {
    "gray": (1, np.dtype("u1")),
    "ya8": (2, np.dtype("u1")),
    "rgb24": (3, np.dtype("u1")),
    "rgba": (4, np.dtype("u1")),
    "gray16be": (1, np.dtype(">u2")),
    "ya16be": (2, np.dtype(">u2")),
    "rgb48be": (3, np.dtype(">u2")),
    "rgba64be": (4, np.dtype(">u2")),
}
# (16-bit, gray, alpha) → the packed format holding exactly that; also the PNG encoder's pix_fmt.
PNG_FORMATS = {
    (False, True, False): "gray",
    (False, True, True): "ya8",
    (False, False, False): "rgb24",
    (False, False, True): "rgba",
    (True, True, False): "gray16be",
    (True, True, True): "ya16be",
    (True, False, False): "rgb48be",
    (True, False, True): "rgba64be",
}


@dataclass
class Image:
    """An image as the engine sees it. A gray image keeps three equal channels in `rgb` and is written as gray PNG
    (FFmpeg's JPEG and WebP encoders write color)."""

    rgb: torch.Tensor  # 3×H×W float32 in [0, 1]
    alpha: torch.Tensor | None = None  # 1×H×W float32 in [0, 1]
    bit_depth: int = 8  # of the source: 8 or 16; PNGs are written at this depth
    gray: bool = False
    icc_profile: bytes | None = None  # the source's color profile, written into the output as it is
    exif: bytes | None = None  # the source's EXIF block, written into the output upright and with the new size

    @property
    def height(self) -> int:
        return self.rgb.shape[-2]

    @property
    def width(self) -> int:
        return self.rgb.shape[-1]


def _is_still_image_container(name: str) -> bool:
    # FFmpeg demuxes single image files as "<codec>_pipe" (probed by content) or "image2" (chosen by extension).
    return name == "image2" or name.endswith("_pipe")


def _plane_array(frame: av.VideoFrame) -> np.ndarray:
    """H×W×C array of a packed frame (see PACKED_FORMATS), rows cut out of the padded plane."""
    channels, dtype = PACKED_FORMATS[frame.format.name]
    plane = frame.planes[0]
    row_bytes = frame.width * channels * dtype.itemsize
    raw = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)[:, :row_bytes]
    return raw.copy().view(dtype).reshape(frame.height, frame.width, channels)


def _packed_frame(array: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """The inverse of `_plane_array`: an H×W×C array of the format's dtype into a new frame."""
    height, width, _ = array.shape
    frame = av.VideoFrame(width, height, pix_fmt)
    plane = frame.planes[0]
    # Written into the frame's own plane: rows padded in numpy, then as bytes, then copied into the plane, held the
    # picture three times over (4.8 GB more for 30720×17280 RGB).
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(height, plane.line_size)
    row_bytes = array[0].nbytes
    rows[:, :row_bytes] = np.ascontiguousarray(array).view(np.uint8).reshape(height, -1)
    rows[:, row_bytes:] = 0
    return frame


def is_gray(fmt: av.VideoFormat) -> bool:
    """Whether a pixel format holds one channel of picture (gray, gray16be, ya8: gray and alpha)."""
    return not fmt.is_rgb and not fmt.has_palette and sum(not c.is_alpha for c in fmt.components) == 1


def _plane_samples(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """An 8-bit plane's samples, H×W (its rows are `line_size` bytes apart)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width].copy()


def _frame_to_image(frame: av.VideoFrame, codec: str) -> Image:
    fmt = frame.format
    components = fmt.components
    deep = max(c.bits for c in components) > 8
    # FFmpeg decodes a CMYK JPEG to RGB with an opaque alpha plane (gbrap); JPEG itself has no transparency.
    has_alpha = any(c.is_alpha for c in components) and codec != "mjpeg"
    gray = is_gray(fmt)
    if fmt.has_palette or (codec == "webp" and has_alpha):
        # A palette may carry transparency (PNG tRNS), and FFmpeg decodes every lossless WebP with an alpha plane:
        # keep alpha only where some pixel is transparent.
        has_alpha = bool((frame.to_ndarray(format="rgba")[..., 3] < 255).any())
    packed = PNG_FORMATS[(deep, gray, has_alpha)]
    if (frame.width % 2 or frame.height % 2) and _PLANAR_YUV_8.fullmatch(fmt.name):
        # swscale scales an odd-sized picture's chroma by its planes' sizes (⌈W/2⌉ to W): colors shifted by up to a
        # pixel towards the right and bottom edges (110 levels off at a color edge). JPEG and WebP site chroma centred.
        y, u, v, *rest = (torch.from_numpy(_plane_samples(plane)) for plane in frame.planes)
        full_range = fmt.name.startswith("yuvj") or frame.color_range == 2  # (AVCOL_RANGE_JPEG)
        rgb = planes_to_rgb(y, u, v, "bt470bg", full_range, 8, siting="center")  # BT.601, as swscale takes them
        planes = (rgb.mul_(255).round_().div_(255)).permute(2, 0, 1)
        alpha = rest[0][None].float() / 255 if has_alpha else None  # (a lossy WebP's, yuva420p)
        return Image(rgb=planes.contiguous(), alpha=alpha, bit_depth=8, gray=False)
    if fmt.name != packed:  # YUV (JPEG, WebP), palettes, bit streams, little-endian, ...
        frame = frame.reformat(format=packed, interpolation=EXACT_CONVERSION)
    array = torch.from_numpy(_plane_array(frame).astype(np.float32)) / (65535 if deep else 255)
    planes = array.permute(2, 0, 1)  # C×H×W
    color = planes[:1].repeat(3, 1, 1) if gray else planes[:3]
    alpha = planes[-1:].clone() if has_alpha else None
    return Image(rgb=color.contiguous(), alpha=alpha, bit_depth=16 if deep else 8, gray=gray)


def read_image(path: str | os.PathLike, check_size: Callable[[int, int, int, int], None] | None = None, *,
               refuse_damaged: bool = False) -> Image:
    """Decode a PNG, JPEG, WebP (or other single-image file FFmpeg reads) into an `Image`. `check_size(width,
    height, channels, sample_bytes)`: called before the image is decoded (what is made of it may be refused before
    the decoding's seconds) with its size as it is shown (upright), 4 channels where it may have alpha, else 3, and
    2 bytes a sample for a format of more than 8 bits, else 1. A damaged image (a JPEG cut short) is read with
    FFmpeg's made-up pixels where its own are missing, with a warning; `refuse_damaged`: an InputError instead
    (training and scoring take the pixels for the truth)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    try:
        with av.open(str(path), options=ONE_FILE) as container:
            if not _is_still_image_container(container.format.name) or not container.streams.video:
                raise InputError(f"{path}: not an image (FFmpeg reads it as {container.format.name!r})")
            context = container.streams.video[0].codec_context
            codec = context.name
            # Held as float RGB(A), twice over as it is converted: a small file may say it is 16000 pixels a side.
            width, height = context.width, context.height
            check_memory(width * height * 4 * 4 * 2, f"{path}: a {width}x{height} image")
            with open(path, "rb") as file:
                data = file.read()  # (whole: a WebP's EXIF comes after its pixels, and a TIFF's tags may)
            orientation = exif_orientation(data)

            def check(width: int, height: int, fmt: av.VideoFormat | None) -> None:
                alpha = fmt is None or fmt.has_palette or any(c.is_alpha for c in fmt.components)
                deep = fmt is None or max(c.bits for c in fmt.components) > 8
                check_size(*((height, width) if orientation in (5, 6, 7, 8) else (width, height)),
                           4 if alpha else 3, 2 if deep else 1)

            # (a format FFmpeg knows only once decoded is taken at its largest; a size it does not know, an animated
            # WebP's, is checked once decoded, if ever)
            header_size = width > 0 and height > 0
            if check_size is not None and header_size:
                check(width, height, context.format)
            frame, damage = decoding_errors(lambda: next(container.decode(video=0), None))
            if check_size is not None and not header_size and frame is not None:
                check(frame.width, frame.height, frame.format)
    except (av.FFmpegError, OSError) as error:
        if is_animated(path):  # animated WebP: FFmpeg decodes no frame of it
            raise InputError(f"{path}: an animated image, which FFmpeg cannot decode; vsr reads still images, "
                             "and videos (an animated PNG or GIF is upscaled as a video)") from error
        raise InputError(f"{path}: not a readable image ({error})") from error
    if frame is None:
        raise InputError(f"{path}: not a readable image (no picture in it)")
    if damage and refuse_damaged:
        raise InputError(f"{path}: damaged or cut short ({'; '.join(damage)}): FFmpeg would make up what is missing")
    if damage:
        logger.warning("%s: damaged or cut short; FFmpeg fills in what is missing (%s)", path, "; ".join(damage))
    image = _frame_to_image(frame, codec)
    if (pages := tiff_pages(data)) > 1:
        logger.warning("%s: a TIFF of %d pages; only the first is upscaled", path, pages)
    image.icc_profile = icc_profile(data)
    image.exif = exif_block(data)
    if orientation > 1:
        image.rgb = upright(image.rgb, orientation)
        image.alpha = None if image.alpha is None else upright(image.alpha, orientation)
    return image


def orientation_of_rotation(degrees: int) -> int:
    """The EXIF orientation whose turn shows upright a frame of a video with display rotation `degrees` (counter-
    clockwise, as the display matrix says it): 8 turns left, 6 right, 3 half a turn, 1 none; see `upright`."""
    return {90: 8, 180: 3, 270: 6}.get(degrees % 360, 1)


# The largest side each image format can hold (WebP's 14-bit sides; JPEG's 16-bit).
_PLANAR_YUV_8 = re.compile(r"yuv[aj]?4(20|22)p")  # subsampled: JPEG's and WebP's (with alpha: yuva420p)
LARGEST_SIDE_OF = {".webp": 16383, ".jpg": 65535, ".jpeg": 65535}


def ffmpeg_holds(width: int, height: int) -> bool:
    """Whether FFmpeg can hold a picture of `width` × `height` at all: av_image_check_size refuses any frame, decoded
    or to encode, where 8 · (width + 128) · (height + 128) ≥ INT_MAX, about 268 million pixels (16000×16000 fits,
    16384×16384 does not), whatever its format."""
    return 8 * (width + 128) * (height + 128) < 2**31 - 1


def check_fits(path: Path, width: int, height: int) -> None:
    """One line, before the model runs, where an image of `width` × `height` is too big for `path`'s format, or for
    FFmpeg (an 8K frame ×4, 30720×17280, failed in PyAV after the model had run: 48 s and 19 GB for a traceback)."""
    largest = LARGEST_SIDE_OF.get(path.suffix.lower())
    if largest is not None and max(width, height) > largest:
        raise OptionError(f"{path}: {width}x{height} is too big for a {path.suffix} file (at most {largest} pixels "
                          f"a side); use .png, or a smaller --outscale, --width or --height")
    if not ffmpeg_holds(width, height):
        raise OptionError(f"{path}: {width}x{height} is more pixels than FFmpeg holds in one picture (about 268 "
                          f"million, e.g. 16000x16000); use a smaller --outscale, --width or --height")


def upright(planes: torch.Tensor, orientation: int) -> torch.Tensor:
    """C×H×W planes (or N×C×H×W) stored with EXIF `orientation`, turned (and mirrored) the way viewers show them."""
    rows, columns = -2, -1
    turned = {
        2: lambda x: x.flip(columns),
        3: lambda x: x.rot90(2, (rows, columns)),
        4: lambda x: x.flip(rows),
        5: lambda x: x.transpose(rows, columns),
        6: lambda x: x.rot90(-1, (rows, columns)),  # stored turned left: turn it right
        7: lambda x: x.transpose(rows, columns).rot90(2, (rows, columns)),
        8: lambda x: x.rot90(1, (rows, columns)),
    }[orientation](planes)
    return turned.contiguous()


def _quantize(x: torch.Tensor | list[torch.Tensor], bits: int) -> np.ndarray:
    """C×H×W float in [0, 1] (or a list of such planes, taken as one: color and alpha) → H×W×C unsigned integers of
    `bits` bits, rounded to nearest.

    In bands of rows: the whole picture's float copies (clamped, then scaled; color and alpha concatenated) took 24
    bytes per pixel more than the integers, 12.7 GB for an image of 30720×17280."""
    top = (1 << bits) - 1
    parts = x if isinstance(x, list) else [x]
    channels, (height, width) = sum(part.shape[0] for part in parts), parts[0].shape[-2:]
    values = np.empty((height, width, channels), np.uint16 if bits > 8 else np.uint8)
    rows = max(1, (1 << 22) // (width * channels))  # about 16 MB of floats a band
    for start in range(0, height, rows):
        band = torch.cat([part[:, start : start + rows].detach().float().cpu() for part in parts])
        band = band.clamp_(0, 1).mul_(top).round_()
        values[start : start + rows] = band.permute(1, 2, 0).numpy()  # (whole numbers in range: cast exactly)
    return values


def _encode(codec: str, frame: av.VideoFrame, pix_fmt: str, options: dict | None = None, qscale: int = 0) -> bytes:
    """Encode one frame into the bytes of a complete image file (these encoders emit whole files as packets)."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = frame.width, frame.height, pix_fmt
    context.time_base = Fraction(1, 1)
    context.sample_aspect_ratio = Fraction(1, 1)  # square pixels: PNG's pHYs said 0:1 from FFmpeg's "unknown"
    if qscale:
        context.qmin = context.qmax = qscale  # pins mjpeg's quantiser scale
    if options:
        context.options = options
    if frame.format.name != pix_fmt:
        frame = frame.reformat(format=pix_fmt)
    frame.pts = 0
    return b"".join(bytes(packet) for packet in context.encode(frame) + context.encode(None))


def _jpeg_qscale(quality: int) -> int:
    """Map a libjpeg-style quality (1-100) to mjpeg's quantiser scale (1-31).

    libjpeg scales its base tables by (200 - 2q)/100 above 50 and 50/q below; mjpeg's qscale 10 is close to scale 1
    (measured on skimage's astronaut: quality 95 ≈ qscale 1, 90 ≈ 2, 75 ≈ 4-5 in size and PSNR).
    """
    table_scale = (200 - 2 * quality) / 100 if quality >= 50 else 50 / quality
    return min(31, max(1, round(10 * table_scale)))


def encode_image(image: Image, suffix: str, quality: int = 95) -> bytes:
    """The bytes of `image` as a .png, .jpg/.jpeg or .webp file."""
    suffix = suffix.lower()
    has_alpha = image.alpha is not None
    if suffix == ".png":
        deep = image.bit_depth > 8
        color = image.rgb.mean(0, keepdim=True) if image.gray else image.rgb
        planes = [color, image.alpha] if has_alpha else [color]
        pix_fmt = PNG_FORMATS[(deep, image.gray, has_alpha)]
        array = _quantize(planes, 16 if deep else 8)
        frame = _packed_frame(array.astype(PACKED_FORMATS[pix_fmt][1], copy=False), pix_fmt)
        return _encode("png", frame, pix_fmt)
    if suffix in (".jpg", ".jpeg"):
        rgb = image.rgb
        if has_alpha:
            # JPEG has no alpha. Flattening onto white (as ImageMagick and browsers' "save as JPEG" do) shows what a
            # viewer showed; dropping alpha would expose whatever colour transparent pixels happen to hold.
            logger.warning("JPEG cannot store transparency: flattening the image onto a white background")
            rgb = rgb * image.alpha + (1 - image.alpha)
        frame = _packed_frame(_quantize(rgb, 8), "rgb24")
        # 4:4:4: no chroma subsampling, upscaled detail is the point of the output.
        return _encode("mjpeg", frame, "yuvj444p", qscale=_jpeg_qscale(quality))
    if suffix == ".webp":
        alpha = image.alpha if has_alpha else torch.ones((1, 1, 1)).expand(1, *image.rgb.shape[-2:])
        frame = _packed_frame(_quantize([image.rgb, alpha], 8), "rgba")
        # libwebp takes BGRA, converts to YUV itself, and writes an alpha plane only when some pixel is not opaque.
        return _encode("libwebp", frame, "bgra", options={"quality": str(quality)})
    raise OptionError(f"unsupported image type {suffix!r}; expected one of {', '.join(WRITE_SUFFIXES)}")


def write_file(path: Path, data: bytes, overwrite: bool = True) -> None:
    """Write an image file's bytes whole under a temporary name, then rename it to `path` (without `overwrite`:
    where no file has appeared since the run checked)."""
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {path.parent} does not exist")
    try:
        write_bytes_atomic(path, data, replace=overwrite)
    except FileExistsError:
        raise AppearedMeanwhile(path) from None
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from error


def check_writable(path: Path) -> None:
    """One line where `path` names an image type vsr cannot write (checked before any work)."""
    if not path.suffix:  # (it said "unsupported image type ''")
        raise OptionError(f"{path}: cannot tell the image type from its name, which has no extension; name it "
                          f"{', '.join(WRITE_SUFFIXES[:-1])} or {WRITE_SUFFIXES[-1]}")
    if path.suffix.lower() not in WRITE_SUFFIXES:
        expected = ", ".join(WRITE_SUFFIXES)
        raise OptionError(f"{path}: unsupported image type {path.suffix!r}; expected one of {expected}")


def write_image(path: str | os.PathLike, image: Image, *, quality: int = 95, overwrite: bool = True) -> None:
    """Write `image` in the format its suffix names (.png keeps 16 bits; .jpg and .webp are 8-bit, lossy)."""
    path = Path(path)
    check_writable(path)
    write_file(path, image_file(image, path.suffix, quality), overwrite)


def image_file(image: Image, suffix: str, quality: int = 95) -> bytes:
    """`image` as the bytes of a file of type `suffix`, with its color profile and EXIF."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise OptionError(f"image quality must be an integer from 1 to 100, not {quality!r}")
    data = with_icc_profile(encode_image(image, suffix, quality), image.icc_profile)
    return with_exif(data, exif_for_output(image.exif, image.width, image.height))


def upscale_image(engine: Engine, image: Image) -> Image:
    """Upscale an image's color (and alpha, through the model as well: `upscale_with_alpha`) with `engine`; depth,
    grayness and alpha are kept."""
    planes = image.rgb.float() if image.alpha is None else torch.cat([image.rgb.float(), image.alpha.float()])
    out = upscale_with_alpha(engine, planes[None])[0]  # float in, float in [0, 1] out: 16-bit keeps its precision
    rgb = out[:3]
    if image.gray:
        rgb = rgb.mean(0, keepdim=True).repeat(3, 1, 1)
    alpha = out[3:] if image.alpha is not None else None
    return replace(image, rgb=rgb, alpha=alpha)  # with the source's depth, grayness, profile and EXIF
