"""The video encoder: upscaled RGB frames in, a finished file out, every other stream copied alongside.

    with VideoWriter(out, source=src, source_info=info, width=4 * info.width, height=4 * info.height) as writer:
        for batch in batches:
            writer.write(batch)

The file is written under a temporary name in the output's folder (`partial_path`) and renamed when `close()`
succeeds; an exception inside the `with` block removes it and leaves the final name untouched.

What the output keeps from the source:
- times: the encoder's time base is the source stream's and each frame keeps its pts, less the file's start, so the
  frame count, the timestamps (variable frame rate included) and the duration match; the source's average rate is
  kept for players (AVI, which keeps no times, counts frame intervals from the file's start instead:
  FRAME_COUNTED_SUFFIXES). The file's start (the earliest start of the video and the streams copied: `Passthrough`'s
  `origin`) becomes the output's 0 for every stream, as ffmpeg does without -copyts: a recording far into its clock
  (MPEG-TS) starts at 0, its audio as far from its video as in the source; a source that starts at 0 (or before,
  through an MP4 edit list) keeps every time. A segment file keeps its source times (`keep_source_times`): the join
  moves them;
- bit depth: 8-bit sources give 8-bit output, deeper ones 10-bit where the encoder can store it (`pix_fmt` or
  `bit_depth` override);
- color: RGB→YUV uses the source's matrix and range, and the output is tagged with the source's primaries,
  transfer, matrix and range. Where the source says nothing, they are guessed by the source's size as players
  do (720 lines or more: BT.709, else BT.601 / SMPTE 170M) and written explicitly, so that the bigger output
  is not guessed differently;
- rotation (display matrix), sample aspect ratio, container and stream metadata, chapters, and (see
  `pipelines.passthrough`) every audio, subtitle and attachment stream.

Previews (`trim=True`, for `--start/--end/--frames`): the frames written are a window of the source, still with
their source pts. The output then starts at 0 at the first frame written, as `ffmpeg -ss A -to B -i source` with
stream copy would: video pts are shifted by the first frame's, and the other streams keep only the packets (and
chapters) that overlap [first frame, end of the last frame), shifted by the same time. The end is known at
`close()` only, so packets are still written as the frames arrive; `trim_end` (source seconds, where `--end` says it
before the frames) cuts a subtitle cue shown past it.

How long each frame is shown: the encoders give their packets no duration, and a muxer takes the declared rate's
for the last one, which loses a GIF's last delay or a phone video's last frame (a declared 90000 fps: 1 tick).
Each packet is held until its frame's successor is written and given the time between them; the last frame lasts
until `video_end` (source seconds: `probe.video_end`, the source's, or a segment's next frame; where unknown, one
frame at the average rate) or the preview's `trim_end`, whichever comes first.

Where RGB becomes YUV (`yuv_converter`): "auto" converts frames that are on a GPU there, with
`pipelines.colour.rgb_to_yuv`, for the planar YUV formats it produces (`YUV_PLANAR_FORMATS`: yuv420p/422p/444p at
8, 10 and 12 bits); the planes reach the host in one pinned copy per batch, and the CPU only encodes (H100/H200 have
no NVENC). Frames on the CPU are converted by swscale (PyAV `reformat`), about 10 times faster there than torch
(8 frames of 1280×720 to 8-bit 4:2:0 on 2 shared cores: 45-135 ms against 0.7-0.9 s), in one thread (see
`_rgb_video_frames`), except to full range, where swscale is a level off (`_converts_in_torch`). "torch" uses
rgb_to_yuv on any device, "swscale" always copies the frames to the CPU. The two agree within one level
(tests/pipelines/test_colour.py). RGB formats always go through swscale (a repacking); gray ones through rgb_to_yuv,
whose luma weighs RGB by the source's matrix (swscale's by BT.601 whatever it is told), full range and tagged so.
The encoder itself runs with FFmpeg's automatic threading: all cores, frame threads as the ffmpeg command line.

Codecs (`CODECS`): libx264 (CRF 18, preset medium: visually transparent, the usual choice for upscales), libx265
(CRF 23, medium: as good as x264's CRF 18 by PSNR and SSIM, measured on upscaled 10-bit frames; codec "auto" writes
10-bit and HDR video with it, see `upscale.video_codec`), libsvtav1 (CRF 30, preset 8), libvpx-vp9 (CRF 31,
cpu-used 4), NVENC (h264/hevc/av1_nvenc, CQ 19/21/28, preset p5; needs an NVIDIA GPU with NVENC, which H100/H200
lack), and two truly lossless ones that store the RGB frames exactly: "ffv1" (RGB at the source's bit depth; .mkv)
and "x264-lossless" (libx264rgb, qp 0, 8-bit RGB). A lossless YUV 4:2:0 file would still lose chroma, hence RGB for
these two. "prores" (prores_ks) is ProRes 422 HQ, or 4444 with alpha.

Alpha: for a source with alpha (`VideoStreamInfo.alpha`) the codecs that keep it (`CodecSpec.alpha`: libvpx-vp9,
ffv1, prores) encode a pixel format with an alpha plane, and `write` takes RGBA frames (`alpha`); the others write
an opaque video, with a warning. RGBA always goes through swscale, which carries alpha over by its bit depth.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import ColorRange
from vsr.pipelines import images
from vsr.pipelines.captions import CAPTION_SYNTAX, with_captions
from vsr.pipelines.colour import SWSCALE_RGB16_WHITE, rgb_to_yuv, untagged_matrix
from vsr.pipelines.frames import FrameBatch, VideoStreamInfo
from vsr.pipelines.passthrough import MOV_MUXERS, Passthrough
from vsr.pipelines.probe import Hdr10Metadata, ffmpeg_log, is_variable_rate, read_hdr10
from vsr.pipelines.progress import first_saying

from vsr.errors import EncoderSettingsError, OptionError, OutputError
from vsr.fsutil import AppearedMeanwhile, check_output, fsync_folder, hidden_sibling, lock_temporary, rename_into_place

logger = logging.getLogger(__name__)
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration when an encoder opens otherwise: errors only


@dataclass(frozen=True)
class CodecSpec:
    """How vsr drives one encoder. `crf` sets `quality_option`, `preset` sets `speed_option`."""

    encoder: str  # FFmpeg encoder name
    quality_option: str | None  # None: fixed quality (lossless)
    default_quality: int | None
    speed_option: str | None
    default_speed: str | None
    lossless_rgb: bool = False  # stores the RGB frames exactly
    options: dict[str, str] = field(default_factory=dict)  # fixed options, overridable by the caller
    needs_gpu: bool = False
    alpha: bool = False  # keeps a video's alpha channel (`choose_pix_fmt`)


CODECS: dict[str, CodecSpec] = {
    "libx264": CodecSpec("libx264", "crf", 18, "preset", "medium"),
    # CRF 23: x264's 18 in quality (README, "Video"); at 20, files were 1.2-1.5 times x264's, 2-3 dB better in PSNR.
    "libx265": CodecSpec("libx265", "crf", 23, "preset", "medium", options={"x265-params": "log-level=error"}),
    "libsvtav1": CodecSpec("libsvtav1", "crf", 30, "preset", "8"),
    # libvpx needs bit rate 0 for constant quality; row-mt uses the cores.
    "libvpx-vp9": CodecSpec("libvpx-vp9", "crf", 31, "cpu-used", "4", options={"b": "0", "row-mt": "1"}, alpha=True),
    "ffv1": CodecSpec("ffv1", None, None, None, None, lossless_rgb=True, options={"level": "3"}, alpha=True),
    # ProRes for editing: 422 HQ, or 4444 with alpha (prores_ks picks the profile by the pixel format); .mov or .mkv.
    "prores": CodecSpec("prores_ks", None, None, None, None, options={"vendor": "apl0"}, alpha=True),
    "x264-lossless": CodecSpec("libx264rgb", None, None, "preset", "medium", lossless_rgb=True, options={"qp": "0"}),
    "h264_nvenc": CodecSpec("h264_nvenc", "cq", 19, "preset", "p5", options={"rc": "vbr", "b": "0"}, needs_gpu=True),
    "hevc_nvenc": CodecSpec("hevc_nvenc", "cq", 21, "preset", "p5", options={"rc": "vbr", "b": "0"}, needs_gpu=True),
    "av1_nvenc": CodecSpec("av1_nvenc", "cq", 28, "preset", "p5", options={"rc": "vbr", "b": "0"}, needs_gpu=True),
}

# The --crf each quality option takes (libx264 clamped 52 and more to 51 without a word; the others refused them
# with a log line of their own).
# (SVT-AV1 and NVENC take 0 for "automatic": FFmpeg sets a quality only from 1.)
_QUALITY_RANGES = {"libx264": (0, 51), "libx265": (0, 51), "libsvtav1": (1, 63), "libvpx-vp9": (0, 63),
                   "h264_nvenc": (1, 51), "hevc_nvenc": (1, 51), "av1_nvenc": (1, 63)}

# The --preset each encoder takes: x264 and x265 a name (in any case) or its number, 0 (ultrafast) to 9 (placebo);
# SVT-AV1 and libvpx a number, higher is faster. Another failed as the encoder opened, "rejected its settings {...}:
# Invalid argument", x264 printing a line of its own before it. (NVENC's, p1 to p7 and older names, are its own.)
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")
_PRESET_NAMES = {"libx264": _X26X_PRESETS, "libx264rgb": _X26X_PRESETS, "libx265": _X26X_PRESETS}
_PRESET_RANGES = {"libsvtav1": (-1, 13), "libvpx-vp9": (-8, 8)}

# Pixel formats tried for a wanted bit depth, best first; the first one the encoder supports wins.
_YUV_FORMATS = {8: ["yuv420p"], 10: ["yuv420p10le", "p010le", "yuv422p10le"], 12: ["yuv420p12le"], 16: ["yuv420p16le"]}
_RGB_FORMATS = {8: ["gbrp", "rgb24", "bgr0"], 10: ["gbrp10le"], 12: ["gbrp12le"], 16: ["gbrp16le"]}
# The same with alpha, for the codecs that keep it (CodecSpec.alpha).
_YUVA_FORMATS = {8: ["yuva420p"], 10: ["yuva420p10le", "yuva444p10le"], 12: ["yuva444p12le"], 16: ["yuva420p16le"]}
_RGBA_FORMATS = {8: ["gbrap", "bgra"], 10: ["gbrap10le"], 12: ["gbrap12le"], 16: ["gbrap16le"]}

# FFmpeg's names → (AVColorSpace value for the stream tag, swscale matrix name for the conversion).
_MATRICES = {
    "bt709": (1, "itu709"),
    "fcc": (4, "fcc"),
    "bt470bg": (5, "itu601"),
    "smpte170m": (6, "smpte170m"),
    "smpte240m": (7, "smpte240m"),
    "bt2020nc": (9, "bt2020"),
}
# FFmpeg's names → AVColorPrimaries / AVColorTransferCharacteristic values (libavutil/pixfmt.h, stable ABI).
_PRIMARIES = {"bt709": 1, "bt470m": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7, "film": 8, "bt2020": 9,
              "smpte428": 10, "smpte431": 11, "smpte432": 12, "ebu3213": 22}
_TRANSFERS = {"bt709": 1, "gamma22": 4, "gamma28": 5, "smpte170m": 6, "smpte240m": 7, "linear": 8, "log100": 9,
              "log316": 10, "iec61966-2-4": 11, "bt1361e": 12, "iec61966-2-1": 13, "bt2020-10": 14,
              "bt2020-12": 15, "smpte2084": 16, "smpte428": 17, "arib-std-b67": 18}
_RANGES = {"tv": ColorRange.MPEG, "pc": ColorRange.JPEG}
# Planar YUV formats `rgb_to_yuv` produces the planes of: pix_fmt → (bit depth, chroma subsampling).
YUV_PLANAR_FORMATS = {
    "yuv420p": (8, "420"), "yuv422p": (8, "422"), "yuv444p": (8, "444"),
    "yuv420p10le": (10, "420"), "yuv422p10le": (10, "422"), "yuv444p10le": (10, "444"),
    "yuv420p12le": (12, "420"), "yuv422p12le": (12, "422"), "yuv444p12le": (12, "444"),
}
# Gray formats, by bit depth: their plane is rgb_to_yuv's luma (swscale weighs RGB as BT.601 whatever the matrix).
GRAY_FORMATS = {"gray": 8, "gray10le": 10, "gray12le": 12}
YUV_CONVERTERS = ("auto", "torch", "swscale")
# The most luma samples a picture may have at the highest level of H.264 (6.2), HEVC (6.2), VP9 (6.2) and AV1 (6.3):
# 8K. An 8K or 4K source upscaled ×4 is beyond it.
LARGEST_LEVEL_PIXELS = 35_651_584
# Outputs timed by the rate their video stream declares more than by the container: raw elementary streams keep no
# frame times at all; MPEG program streams (DVD .vob, .mpg) keep a time only where a packet of the stream starts.
# (Not .m4v: Apple's MP4 files are named so too.)
STREAM_TIMED_SUFFIXES = (".h264", ".264", ".avc", ".hevc", ".265", ".h265", ".m2v", ".mpv", ".mpg", ".mpeg", ".vob")
# Outputs that keep no frame times, only the frames' order at the declared rate: AVI indexes one chunk per frame
# interval (an empty one where no frame falls) and starts every stream at 0, so its frames are placed by their time
# from the file's start counted in frame intervals (`frame_place`). Given the source's time base instead, a 25 fps
# MP4 declared 600 fps and indexed 24 chunks per frame, and an MPEG-TS recording (starting at 1.4 s) showed its
# first frame for 1.4 s, the rest of the video late by as much against its audio.
FRAME_COUNTED_SUFFIXES = (".avi",)
# Outputs whose container keeps a display matrix (MP4, QuickTime, Matroska): a rotated video stays so, as its source.
# Others (AVI, MPEG-TS and program streams, FLV, NUT, ASF, raw streams) get frames turned upright.
DISPLAY_MATRIX_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".mkv", ".webm")
_AVCOL_SPC_RGB = 0
# How libx264, libx265 and libsvtav1 (through FFmpeg) warn of a -params entry they could not take.
_PARAMS_REFUSALS = ("Error parsing option", "Unknown option", "Invalid value for")
_RATE_CONTROL_OPTIONS = {"qp", "b", "crf", "cq"}
# x265's B-frame delay at most, in frames (2 with b-pyramid, 1 without; 0 without B-frames): an encode of no more
# frames gets decoding times x265 makes up (VideoWriter._encode).
_X265_LONGEST_B_FRAME_DELAY = 2
# FFmpeg options that vsr sets from options of its own, which say what the encoder gets.
_OPTIONS_OF_THEIR_OWN = {"pix_fmt": "--pix-fmt", "s": "--width/--height (or --outscale)"}


def _warn_once(message: str, *args) -> None:
    """A warning given once a call (`said_once_per_call`): a video in segments opens one writer per segment, with the
    same settings (the messages name the source, so each video of a batch still gets its own)."""
    text = message % args
    if first_saying(text):
        logger.warning(text)


def partial_path(output: Path) -> Path:
    """Where `output` is written until it is complete: same folder, hidden, same extension (so the muxer is the
    same), e.g. movie.x4.mp4 → .movie.x4.partial.mp4 (`hidden_sibling`: a hash for a name too long for that)."""
    return hidden_sibling(output, output.stem, f".partial{output.suffix}")


def choose_pix_fmt(codec: str, bit_depth: int, pix_fmt: str | None = None, alpha: bool = False,
                   source: Path | None = None) -> str:
    """The pixel format `codec` encodes to: `pix_fmt` if given (checked), else 4:2:0 YUV (planar RGB for the
    lossless codecs) at `bit_depth`, or the deepest the encoder supports below it (else the shallowest above it), with
    an alpha plane when `alpha` is asked for and the codec keeps it (`has_alpha` tells). `source` names the video in
    the warning about bits lost."""
    spec = _codec_spec(codec)
    supported = [f.name for f in av.Codec(spec.encoder, "w").video_formats or []]
    if pix_fmt is not None:
        if supported and pix_fmt not in supported:
            raise OptionError(f"codec {codec!r} cannot encode pix_fmt {pix_fmt!r}; it supports {', '.join(supported)}")
        return pix_fmt
    if alpha and spec.alpha:
        table = _RGBA_FORMATS if spec.lossless_rgb else _YUVA_FORMATS
    else:
        table = _RGB_FORMATS if spec.lossless_rgb else _YUV_FORMATS
    depths = sorted((d for d in table if d <= bit_depth), reverse=True) + sorted(d for d in table if d > bit_depth)
    for depth in depths:
        for name in table[depth]:
            if name in supported:
                if depth < bit_depth:
                    if spec.lossless_rgb:
                        raise OptionError(
                            f"codec {codec!r} stores at most {depth}-bit RGB, the source is {bit_depth}-bit: "
                            f"use 'ffv1' for a lossless {bit_depth}-bit file"
                        )
                    _warn_once("%scodec %s stores at most %d bits: the %d-bit source is written as %d-bit (%s)",
                               f"{source}: " if source else "", codec, depth, bit_depth, depth, name)
                return name
    raise OptionError(f"codec {codec!r} supports none of the usual pixel formats; pass pix_fmt (one of {supported})")


def codec_keeps_alpha(codec: str, suffix: str) -> bool:
    """Whether `codec` (a CODECS key) keeps a video's alpha in a file ending in `suffix`: libvpx writes VP9's alpha
    beside each packet, where only Matroska (and WebM) keep it."""
    spec = _codec_spec(codec)
    return spec.alpha and (spec.encoder != "libvpx-vp9" or suffix.lower() in (".mkv", ".webm"))


def chroma_steps(output: Path, codec: str, source: Path, source_info: VideoStreamInfo,
                 pix_fmt: str | None = None) -> tuple[int, int]:
    """The (rows, columns) a frame's height and width must be multiples of in the pixel format VideoWriter would
    write `output` in: 2 where its chroma is subsampled that way (4:2:0: both; 4:2:2: columns), else 1 (RGB, the
    lossless codecs', and 4:4:4 take any size)."""
    keeps_alpha = source_info.alpha and codec_keeps_alpha(codec, output.suffix)
    chosen = av.VideoFormat(choose_pix_fmt(codec, source_info.bit_depth, pix_fmt, alpha=keeps_alpha, source=source))
    return 2 if chosen.chroma_height(16) < 16 else 1, 2 if chosen.chroma_width(16) < 16 else 1


def last_frame_seconds(start: Fraction, one_frame: Fraction, video_end: Fraction | None,
                       trim_end: Fraction | None) -> Fraction:
    """How long a video's last frame, shown from `start` (source seconds), lasts: until the first of `video_end`
    (where unknown, `one_frame` on) and `trim_end` after it (module doc)."""
    ends = [video_end if video_end is not None else start + one_frame, trim_end]
    later = [end for end in ends if end is not None and end > start]
    return min(later) - start if later else one_frame


def has_alpha(pix_fmt: str) -> bool:
    """Whether the pixel format has an alpha plane (yuva420p, gbrap, bgra, ...)."""
    return any(component.is_alpha for component in av.VideoFormat(pix_fmt).components)


class VideoWriter:
    """Encodes upscaled frames into `output` and copies the source's other streams alongside; see the module doc.

    Use as a context manager: a clean exit commits the file, an exception aborts it. Errors a user can cause are
    `OptionError` (codec, preset, options) and `OutputError` (file exists, folder missing, disk full).
    `yuv_converter` ("auto", "torch", "swscale") says where RGB becomes YUV (module doc). `stream_timed`: whether
    the file (or the output a segment file is joined into) is timed by its stream's declared rate; None: judged by
    `output`'s suffix (STREAM_TIMED_SUFFIXES). `keep_source_times`: the frames keep their source pts, not moved to
    the file's start (a segment file, which the join moves).
    """

    def __init__(
        self,
        output: Path,
        *,
        source: Path,
        source_info: VideoStreamInfo,
        width: int,
        height: int,
        codec: str = "libx264",
        crf: int | None = None,
        preset: str | None = None,
        pix_fmt: str | None = None,
        bit_depth: int | None = None,
        options: dict[str, str] | None = None,
        overwrite: bool = False,
        copy_streams: bool = True,
        trim: bool = False,
        yuv_converter: str = "auto",
        stream_timed: bool | None = None,
        turn_upright: bool | None = None,
        device: torch.device | None = None,
        trim_end: Fraction | None = None,
        video_end: Fraction | None = None,
        keep_source_times: bool = False,
    ) -> None:
        if yuv_converter not in YUV_CONVERTERS:
            raise OptionError(f"unknown yuv_converter {yuv_converter!r}; choose one of {', '.join(YUV_CONVERTERS)}")
        self.output = Path(output)
        self._yuv_converter = yuv_converter
        self.width, self.height = width, height  # of the frames encoded
        self._frame_size = height, width  # of the frames given to write()
        # A container without a display matrix (AVI, MPEG-TS, ...) shows frames as stored: a rotated video's are
        # turned upright before encoding, as ffmpeg's autorotation writes them (`turn_upright`: None, as the
        # output's container needs; a segment file is told what the output it is joined into needs).
        if turn_upright is None:
            turn_upright = self.output.suffix.lower() not in DISPLAY_MATRIX_SUFFIXES
        self._orientation = images.orientation_of_rotation(source_info.rotation) if turn_upright else 1
        self.rotation = source_info.rotation if self._orientation == 1 else 0  # the output's display rotation
        if self._orientation in (6, 8):
            self.width, self.height = height, width
        if self._orientation != 1:
            sar = source_info.sample_aspect_ratio
            source_info = replace(source_info, rotation=0, width=self.width, height=self.height,
                                  sample_aspect_ratio=1 / sar if sar and self._orientation in (6, 8) else sar)
        self.frames_written = 0
        self._time_base = source_info.time_base
        self._trim = trim
        self._frame_duration = 1 / source_info.average_rate if source_info.average_rate else None  # seconds
        self._origin: Fraction | None = None  # the source time that becomes the output's 0 (start_of_output)
        self._last_place: int | None = None  # frame-counted outputs: the last frame's place
        self._frame_counted = self.output.suffix.lower() in FRAME_COUNTED_SUFFIXES
        self._last_pts: int | None = None
        self._last_step = 0  # pts between the last two frames: the last one's duration when the rate is unknown
        self._video_end, self._trim_end = video_end, trim_end  # (module doc: how long frames show)
        self._last_output_pts: int | None = None
        self._durations: dict[int, int] = {}  # output pts → how long that frame shows, once known
        self._held: collections.deque[av.Packet] = collections.deque()  # encoded, waiting for their duration
        self._flushed = False
        self._end_pts = 0  # where the last frame stops showing, in the output's time base (set by flush)
        self._first_dts: int | None = None
        self._first_pts: int | None = None  # the first frame's (in presentation order)
        self._temp = partial_path(self.output)
        self._lock = None  # the temporary file, open and locked while it is written (fsutil.lock_temporary)
        self._captions: dict[int, bytes] = {}  # output pts → cc_data of frames in the encoder, not yet out of it
        self._container: av.container.OutputContainer | None = None
        self._passthrough: Passthrough | None = None
        self._done = False

        spec = _codec_spec(codec)
        self._caption_syntax = CAPTION_SYNTAX.get(spec.encoder)  # None: the codec has no place for captions
        self.encoder = spec.encoder  # FFmpeg's name of the encoder that writes the video, e.g. "libx265"
        self._frames_encoded = 0  # frames given to the encoder (_encode)
        self._source, self._codec, self._overwrite = Path(source), codec, overwrite
        check_output(self.output, Path(source), overwrite)
        keeps_alpha = source_info.alpha and codec_keeps_alpha(codec, self.output.suffix)
        self.pix_fmt = choose_pix_fmt(codec, bit_depth or source_info.bit_depth, pix_fmt, alpha=keeps_alpha,
                                      source=source)
        self.alpha = has_alpha(self.pix_fmt)  # write() takes RGBA frames (RGB ones are made opaque)
        if source_info.alpha and not self.alpha:
            _warn_once("%s: codec %s%s in %s cannot store the video's alpha channel: the output is opaque "
                       "(libvpx-vp9 in .mkv or .webm, ffv1 and prores keep it)", source, codec,
                       f" as {pix_fmt}" if pix_fmt else "", self.output.suffix)
        _check_size(width, height, self.pix_fmt)
        if width * height > LARGEST_LEVEL_PIXELS and spec.quality_option is not None:
            _warn_once("%s: the output's %dx%d is more pixels than the largest level of H.264, HEVC, VP9 or AV1 "
                       "allows (8192x4352): many players and hardware decoders refuse it; --outscale or --height can "
                       "make it smaller (--height 4320 for 8K)", source, width, height)
        options = {**frame_time_options(self.output), **(options or {})}
        codec_options = nvenc_on(device, spec, _codec_options(codec, spec, crf, preset, options))
        if source_info.color.transfer == "smpte2084":  # PQ: HDR10, whose players tone-map by its static metadata
            hdr10 = read_hdr10(source, source_info.index)
            if hdr10 is not None:
                codec_options = _with_hdr10(codec, spec, codec_options, hdr10, source)
        if stream_timed is None:  # (a segment file is told what the output it is joined into is)
            stream_timed = self.output.suffix.lower() in STREAM_TIMED_SUFFIXES
        variable = bool(is_variable_rate(source, source_info.index))
        rate = declared_rate(source_info, variable and not stream_timed)
        self._output_time_base = 1 / rate if self._frame_counted else source_info.time_base
        if spec.encoder in ("libx264", "libx264rgb") and (stream_timed or not variable):
            # x264 declares a frame rate in the stream (VUI timing) from the encoder's time base, 1/12800 s for an
            # MP4 source, unless told the input is constant rate: raw .h264 then plays at 12800 fps and an MPEG-PS
            # reader fills in missing times with it. Frame times still come from the pts; x264 only spaces its
            # rate control evenly.
            codec_options["x264-params"] = ":".join(filter(None, ["force-cfr=1", codec_options.get("x264-params")]))
        self._rgb_output = av.VideoFormat(self.pix_fmt).is_rgb
        self._matrix, self._range = _conversion(source_info, source)
        if spec.encoder == "prores_ks":  # ProRes is limited range by definition: it has no field to say otherwise
            self._range = ColorRange.MPEG
        if av.VideoFormat(self.pix_fmt).name.startswith("gray"):
            self._range = ColorRange.JPEG  # gray is full range (as swscale makes it, and viewers take it): say so
        if _muxer_of(self.output) in _MPEG_STREAM_MUXERS:  # (before the file is made; other muxers refuse a codec
            check_container_holds(self.output, codec)       # themselves, with FFmpeg's reason, below)
        try:
            self._lock = lock_temporary(self._temp, self.output)
        except OutputError:  # (another run holds it; OutputError is an OSError too)
            raise
        except OSError as error:  # the folder cannot be written: the muxer's open would fail the same way, and
            # PyAV's PermissionError from it read as the muxer refusing the codec ("use .mkv", exit 2)
            raise OutputError(f"cannot write {self.output}: {error.strerror or error}") from error
        # From here on every way out removes the temporary file, Ctrl-C included (the CLI's Ctrl-C test signals the
        # moment the file appears, which is inside this constructor).
        try:
            self._container = av.open(str(self._temp), "w")
        except ValueError as error:
            self.abort()
            raise _unknown_container(self.output) from error
        except BaseException:
            self.abort()
            raise
        if self._container.format.name in MOV_MUXERS:
            self._container.options["movie_timescale"] = str(movie_timescale(self._output_time_base))
        try:
            self._stream = self._add_video_stream(codec, spec, source_info, codec_options, rate)
            self._passthrough = Passthrough(source, self._container, video_index=source_info.index,
                                            copy_streams=copy_streams, trim=trim, trim_end=trim_end,
                                            keep_source_times=keep_source_times)
            self._passthrough.copy_video_tags(self._stream)
            self._container.start_encoding()  # writes the header: the temporary file exists from here on
        except av.FFmpegError as error:
            self.abort()
            if isinstance(error, av.error.OSError):  # an errno of the disk's (ENOSPC, EIO) while writing the header
                raise OutputError(f"cannot write {self.output}: {error.strerror or error}") from error
            # The muxer refused the stream when writing the header (EINVAL; MXF says EPERM).
            raise OptionError(f"codec {codec!r} cannot be stored in a {self._container.format.name} file "
                              f"({self.output.name}: {error.strerror}); use .mkv") from error
        except OSError as error:
            self.abort()
            raise OutputError(f"cannot write {self.output}: {error.strerror or error}") from error
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, codec: str, spec: CodecSpec, info: VideoStreamInfo, options: dict[str, str],
                          rate: Fraction):
        # The rate only tags the stream and guides rate control: frame times come from their pts.
        try:
            stream = self._container.add_stream(spec.encoder, rate=rate)
        except ValueError as error:
            container = self._container.format.name
            raise OptionError(f"codec {codec!r} cannot be stored in a {container} file ({self.output.name}); "
                              f"use .mkv") from error
        ctx = stream.codec_context
        if ctx.codec.canonical_name == "hevc" and self._container.format.name in MOV_MUXERS:
            # FFmpeg tags HEVC "hev1" there, which Apple's players (QuickTime, Safari, iOS) refuse to play: "hvc1", as
            # `ffmpeg -tag:v hvc1` writes it (the parameter sets are in the stream's header, its global header).
            ctx.codec_tag = "hvc1"
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, self.pix_fmt
        ctx.time_base = self._output_time_base  # the source's: each frame keeps its pts, VFR survives
        stream.time_base = self._output_time_base  # ask the muxer for the same unit (mp4 would pick its own)
        if info.sample_aspect_ratio:
            ctx.sample_aspect_ratio = info.sample_aspect_ratio
            warn_if_pixel_aspect_lost(self.output, codec, info, self._source)
        primaries, transfer = _tags(info)
        ctx.color_primaries, ctx.color_trc = primaries, transfer
        ctx.colorspace = _AVCOL_SPC_RGB if self._rgb_output else _MATRICES[self._matrix][0]
        ctx.color_range = ColorRange.JPEG if self._rgb_output else self._range
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        ctx.thread_type = "AUTO"  # frame and slice threads, as the ffmpeg command line (PyAV's default is slices)
        ctx.thread_count = 0  # one per core
        open_encoder(ctx, codec, spec, options)
        return stream

    def write(self, batch: FrameBatch) -> None:
        """Encode a batch: frames N×3×H×W RGB (N×4×H×W RGBA where `alpha`; uint8, or float in [0, 1]) at
        H×W = height×width, on any device."""
        if self._done:
            raise ValueError(f"the writer of {self.output} is already closed")
        frames = batch.frames.detach()
        if frames.ndim == 4 and self.alpha and frames.shape[1] == 3:  # an alpha format asked for an opaque source
            opaque = torch.full_like(frames[:, :1], 255 if frames.dtype == torch.uint8 else 1)
            frames = torch.cat([frames, opaque], 1)
        channels = 4 if self.alpha else 3
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (channels, *self._frame_size):
            raise ValueError(f"expected frames N×{channels}×{self._frame_size[0]}×{self._frame_size[1]}, got "
                             f"{tuple(frames.shape)}")
        if self._orientation != 1:
            frames = images.upright(frames, self._orientation)
        if self._converts_in_torch(frames.device):
            video_frames = list(self._yuv_video_frames(frames))
        else:
            video_frames = list(self._rgb_video_frames(frames.cpu()))
        context = self._stream.codec_context
        for video_frame in video_frames:  # prores_ks writes the frames' own tags, not the stream's, into each frame
            video_frame.color_primaries, video_frame.color_trc = context.color_primaries, context.color_trc
        try:
            for picture, pts in zip(batch.pictures(), batch.pts):
                video_frame = video_frames[picture]  # a repeated picture is encoded again at each of its times
                if self._origin is None:
                    self._origin = start_of_output(pts * self._time_base, self._passthrough, trim=self._trim,
                                                   frame_counted=self._frame_counted)
                # Passthrough packets up to this frame's time first, so that the file is interleaved as it grows.
                self._passthrough.mux_until(float(pts * self._time_base))
                video_frame.pts = self._output_pts(pts)
                video_frame.time_base = self._output_time_base
                if self._last_output_pts is not None:
                    self._durations[self._last_output_pts] = video_frame.pts - self._last_output_pts
                self._last_output_pts = video_frame.pts
                if pts in batch.captions:
                    self._keep_captions(video_frame.pts, batch.captions[pts])
                self._mux(self._encode(video_frame))
                self._last_step = pts - self._last_pts if self._last_pts is not None else 0
                self._last_pts = pts
                self.frames_written += 1
        except (OSError, av.FFmpegError) as error:
            self.abort()
            raise self._write_error(error) from error

    def _output_pts(self, pts: int) -> int:
        """A frame's pts in the output's time base, from its source pts."""
        if not self._frame_counted:
            return pts - round(self._origin / self._time_base)
        self._last_place = frame_place(pts * self._time_base - self._origin, self._output_time_base, self._last_place)
        return self._last_place

    def _keep_captions(self, pts: int, cc_data: bytes) -> None:
        if self._caption_syntax is not None:
            self._captions[pts] = cc_data
        else:
            _warn_once("%s: the video carries closed captions in its frames (CEA-608/708), which codec %s has no "
                       "place for: they are not written (libx264, libx265 and libsvtav1 keep them)",
                       self._source, self._codec)

    def _encode(self, video_frame: av.VideoFrame | None) -> list[av.Packet]:
        """The encoder's packets for `video_frame` (None: the frames it still holds), with x265's decoding times put
        right where it makes them up. x265 (4.2 in PyAV 18) gives its first packets `dts = pts - delay`, the delay
        measured as the frame after its B-frame delay arrives (the third frame with b-pyramid, the second without).
        An encode of no more frames never sets it: the delay is whatever that memory held, 0 in a fresh process,
        up to ±10^18 ticks in one that has run a while. Matroska refused a dts after the pts ("pts (0) < dts (...)":
        4 of 300 two-frame upscales, two processes at once), MP4 any pair so far apart (100 of 100). So few frames
        are never reordered (x265 makes the last frame of an encode a P frame, never a B): they are decoded in
        presentation order, dts = pts, as x265 gives them without B-frames."""
        packets = self._stream.encode(video_frame)
        if video_frame is not None:
            self._frames_encoded += 1
        if self.encoder == "libx265" and self._frames_encoded <= _X265_LONGEST_B_FRAME_DELAY:
            for packet in packets:
                packet.dts = packet.pts
        return packets

    def _mux(self, packets: list[av.Packet], last: bool = False) -> None:
        """Mux encoded packets, each with the closed captions of its frame put back in (captions module) and its
        frame's duration (module doc): held until that is known; `last`: the encoder's final packets."""
        for packet in packets:
            cc_data = self._captions.pop(packet.pts, None)
            if cc_data is not None:
                captioned = av.Packet(with_captions(bytes(packet), cc_data, self._caption_syntax))
                captioned.stream, captioned.time_base = packet.stream, packet.time_base
                captioned.pts, captioned.dts, captioned.duration = packet.pts, packet.dts, packet.duration
                captioned.is_keyframe = packet.is_keyframe
                packet = captioned
            self._held.append(packet)
        while self._held:
            pts = self._held[0].pts
            duration = self._durations.pop(pts, None)
            if duration is None and not last and pts is not None and pts >= self._last_output_pts:
                break  # its frame's successor is still to come
            packet = self._held.popleft()
            if duration:
                packet.duration = duration
            if self._first_dts is None:
                self._first_dts = packet.dts
                if self._frame_counted and packet.dts:  # the video starts after the other streams
                    mux_empty_chunk(self._container, self._stream)
            if packet.pts is not None and (self._first_pts is None or packet.pts < self._first_pts):
                self._first_pts = packet.pts
            if last and not self._held and self._container.format.name in MOV_MUXERS and packet.dts is not None:
                # MP4 times its samples in decoding order from the first dts (before the first frame by the
                # B-frames' delay), the last one by the last packet's duration: with B-frames another frame's, and the
                # track ended before the last frame did (a GIF's last delay). So the samples span the frames' time.
                # (From the first frame, not from 0: a source starting at 1.48 s, as MPEG-TS do, ran 1.48 s long,
                # and past 2^31 ticks, 6.6 h of 90 kHz, the muxer refused the duration.)
                shown = self._end_pts - (self._first_pts or 0)
                packet.duration = max(packet.duration or 0, shown - (packet.dts - (self._first_dts or 0)))
            self._container.mux(packet)

    def _converts_in_torch(self, device: torch.device) -> bool:
        """Whether frames on `device` become YUV planes with `rgb_to_yuv` (else swscale converts them)."""
        if self.pix_fmt in GRAY_FORMATS:
            return True
        if self.pix_fmt not in YUV_PLANAR_FORMATS or self._yuv_converter == "swscale":
            return False
        # swscale (FFmpeg 8) puts full-range chroma a level low from 16-bit RGB and at 10 bits (neutral gray: 127,
        # 511): a green cast. Full range is rare (JPEG-style sources), so it takes the slower exact conversion.
        return self._yuv_converter == "torch" or device.type == "cuda" or self._range == ColorRange.JPEG

    def _yuv_video_frames(self, frames: torch.Tensor) -> Iterator[av.VideoFrame]:
        """The batch converted on its device, copied to the host once, one VideoFrame per frame."""
        bit_depth, chroma = YUV_PLANAR_FORMATS.get(self.pix_fmt) or (GRAY_FORMATS[self.pix_fmt], "444")
        planes = rgb_to_yuv(frames, self._matrix, self._range == ColorRange.JPEG, bit_depth, chroma)
        host_planes = _to_host(planes[:1] if self.pix_fmt in GRAY_FORMATS else planes)
        for index in range(len(frames)):
            video_frame = av.VideoFrame(self.width, self.height, self.pix_fmt)
            for destination, plane in zip(video_frame.planes, host_planes):
                _fill_plane(destination, plane[index])
            video_frame.colorspace = _MATRICES[self._matrix][0]
            video_frame.color_range = self._range
            yield video_frame

    def _rgb_video_frames(self, frames: torch.Tensor) -> Iterator[av.VideoFrame]:
        """The batch (on the CPU) as RGB(A) VideoFrames that swscale converts to the encoder's format."""
        if frames.dtype == torch.uint8:
            rgb_format, array = "rgba" if self.alpha else "rgb24", frames.permute(0, 2, 3, 1).contiguous().numpy()
        else:  # float: keep what a deep source has; 16 bits per channel on the way
            # In swscale's scale, whose 16-bit white is 65280 (colour module doc): 1.0 becomes white, Y 940 in
            # 10-bit limited range, as rgb_to_yuv makes it. Alpha is shifted to its depth: 65535 is opaque.
            white = torch.tensor([SWSCALE_RGB16_WHITE] * 3 + [65535] * self.alpha).view(1, -1, 1, 1)
            scaled = frames.float().clamp(0, 1).mul(white).round().to(torch.int32)
            rgb_format = "rgba64le" if self.alpha else "rgb48le"
            array = scaled.permute(0, 2, 3, 1).numpy().astype(np.uint16)
        # One swscale thread: with slice threads, swscale (FFmpeg 8 in PyAV 18) writes garbage into the first 8
        # pixels of the rows where slices meet when converting to 10-bit YUV (seen here: Y off by up to 366
        # levels at 3416x1920, 1366x768, 70x50), and the encoder's own threads use the cores anyway.
        for image in array:
            video_frame = av.VideoFrame.from_ndarray(image, format=rgb_format)
            if self._rgb_output:
                yield video_frame.reformat(format=self.pix_fmt, threads=1)
            else:
                yield video_frame.reformat(format=self.pix_fmt, dst_colorspace=_MATRICES[self._matrix][1],
                                           dst_color_range=self._range, threads=1)

    def flush(self) -> None:
        """Encode the frames the encoder still holds (close does, where not done before): after the last write."""
        if self._flushed:
            return
        try:
            if self._last_output_pts is not None:
                seconds = self._last_frame_seconds()
                if self._frame_counted:  # (to the place its end falls on, as the frames' own places are found)
                    end = round((self._end_time() - self._origin) / self._output_time_base)
                    self._durations[self._last_output_pts] = max(end - self._last_output_pts, 1)
                else:
                    self._durations[self._last_output_pts] = max(round(seconds / self._output_time_base), 1) \
                        if seconds else 0
                self._end_pts = self._last_output_pts + self._durations[self._last_output_pts]
            self._mux(self._encode(None), last=True)
        except (OSError, av.FFmpegError) as error:
            self.abort()
            raise self._write_error(error) from error
        self._flushed = True

    def close(self) -> None:
        """Flush the encoder, copy the remaining passthrough packets, finish the file and rename it into place."""
        if self._done:
            return
        self.flush()
        try:
            if not self._trim:
                self._passthrough.mux_rest()
            elif self._last_pts is not None:  # a preview: what overlaps its frames
                self._passthrough.end_at(self._end_time())
            self._container.close()
            self._passthrough.close()
            with open(self._temp, "rb+") as file:
                os.fsync(file.fileno())
            rename_into_place(self._temp, self.output, self._overwrite)
            fsync_folder(self.output.parent)
        except FileExistsError:
            self.abort()
            raise AppearedMeanwhile(self.output) from None
        except (OSError, av.FFmpegError) as error:
            self.abort()
            raise self._write_error(error) from error
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._unlock()
        logger.info("wrote %s: %d frames, %dx%d %s", self.output, self.frames_written, self.width, self.height,
                    self.pix_fmt)

    def _end_time(self) -> Fraction:
        """When the last frame written ends, in source seconds."""
        return self._last_pts * self._time_base + self._last_frame_seconds()

    def _last_frame_seconds(self) -> Fraction:
        """How long the last frame written shows (`last_frame_seconds`; one frame: at the average rate, else the
        interval before it)."""
        one_frame = self._frame_duration if self._frame_duration is not None else self._last_step * self._time_base
        return last_frame_seconds(self._last_pts * self._time_base, one_frame, self._video_end, self._trim_end)

    def _write_error(self, error: Exception) -> OutputError:
        if isinstance(error, OSError):  # the disk: full, gone, read-only
            return OutputError(f"cannot write {self.output}: {error.strerror or error}")
        # A packet the muxer refuses: what vsr checks first (times that go back, streams a container cannot hold)
        # says why where it can; this is the line for the rest.
        return OutputError(f"cannot write {self.output}: the muxer refused a packet ({error})")

    def abort(self) -> None:
        """Stop and remove the temporary file; the final name is left untouched."""
        if self._done:
            return
        self._done = True
        for closable in (self._container, self._passthrough):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # already failing: the first error is the one to report
                    logger.debug("error while aborting %s", self.output, exc_info=True)
        try:
            if self._temp.exists():  # (a read-only file system refuses even to remove a file that is not there)
                self._temp.unlink()
        except OSError as error:
            logger.warning("could not remove the temporary file %s (%s)", self._temp, error.strerror or error)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # (releases the lock)
            self._lock = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _to_host(planes: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """The planes as host arrays: from CUDA through pinned memory, all copies queued before one wait."""
    if planes[0].device.type != "cuda":
        return [plane.cpu().numpy() for plane in planes]
    pinned = [torch.empty(plane.shape, dtype=plane.dtype, pin_memory=True) for plane in planes]
    for host, plane in zip(pinned, planes):
        host.copy_(plane, non_blocking=True)
    torch.cuda.current_stream(planes[0].device).synchronize()
    return [host.numpy() for host in pinned]


def open_encoder(ctx: av.codec.context.CodecContext, codec: str, spec: CodecSpec, options: dict[str, str],
                 echo: bool = True) -> None:
    """Open the encoder `ctx` (`codec`, its size and pix_fmt set) with `options`: an EncoderSettingsError naming
    what it refused (its own words where it said them), an OptionError where it cannot run here at all (NVENC
    without a GPU, frames too large). `echo`: print again what x264 and x265 printed while opening (warnings)."""
    ctx.options = dict(options)
    width, height = ctx.width, ctx.height  # (a failed open leaves them 0)
    failure = None
    with _encoder_printed() as printed:
        try:
            refused = _params_refused(ctx)
        except (ValueError, av.FFmpegError) as error:  # (PermissionError among them: PyAV's is an FFmpegError)
            failure = error
    if failure is None:
        for line in printed if echo else []:  # (as they were before being caught)
            print(line, file=sys.stderr)
    elif isinstance(failure, PermissionError):
        if spec.needs_gpu:
            raise OptionError(f"codec {codec!r} needs an NVIDIA GPU with NVENC and none is usable here; "
                              f"use libx264, libx265 or libsvtav1") from failure
        raise OptionError(f"codec {codec!r} could not be opened: {failure}") from failure
    else:
        if max(width, height) > 16384:  # (x264 and the others say only "Generic error")
            raise OptionError(f"codec {codec!r} cannot encode {width}x{height} frames (at most 16384 "
                              f"pixels a side); use a smaller --outscale, --width or --height") from failure
        if not images.ffmpeg_holds(width, height):  # 16384×16384: "Invalid argument"
            raise OptionError(f"codec {codec!r} cannot encode {width}x{height} frames (more pixels than "
                              f"FFmpeg holds in one picture, about 268 million); use a smaller --outscale, "
                              f"--width or --height") from failure
        # The encoder's own words where it printed them ("invalid tune 'animaton'") or logged them, else FFmpeg's.
        said = [line.split("]: ", 1)[-1] for line in printed if "[error]" in line]
        said = said or getattr(failure, "__notes__", [])
        reason = "; ".join(said) or getattr(failure, "strerror", None) or failure
        raise EncoderSettingsError(f"codec {codec!r} rejected its settings {options}: {reason}") from failure
    unused = dict(ctx.options)  # after opening, what the encoder did not recognise
    if unused:
        raise EncoderSettingsError(f"codec {codec!r} has no option(s) {', '.join(sorted(unused))}")
    if refused:
        raise EncoderSettingsError(f"codec {codec!r} refused a setting of its -params list: {refused[0]}")


@functools.lru_cache(maxsize=64)
def takes_settings(codec: str, crf: int | None, preset: str | None, options: tuple[tuple[str, str], ...],
                   pix_fmt: str) -> bool:
    """Whether `codec` (a CODECS key) opens with these settings (`options`: the encoder options as sorted pairs) for
    `pix_fmt` frames. The encoder itself is asked, opened for small frames without a file (1-20 ms): which option
    names and values it takes (x264's tune=film and profile=high10, x265's x265-params) are its own, and change
    with its version."""
    spec = _codec_spec(codec)
    ctx = av.CodecContext.create(spec.encoder, "w")
    ctx.width = ctx.height = 64
    ctx.time_base = Fraction(1, 25)
    try:
        ctx.pix_fmt = pix_fmt
        open_encoder(ctx, codec, spec, _codec_options(codec, spec, crf, preset, dict(options)), echo=False)
    except ValueError:  # (refused: an EncoderSettingsError or OptionError; or a pix_fmt FFmpeg does not know)
        return False
    return True


# How x264 and x265 begin what they print on the standard error themselves, past FFmpeg's log.
_ENCODER_PRINTS = ("x264 [", "x265 [")
# fd 2 is the process's: two threads opening encoders at once would each restore the other's temporary file.
_STANDARD_ERROR_TAKEN = threading.Lock()


@contextlib.contextmanager
def _encoder_printed() -> Iterator[list[str]]:
    """The lines x264 and x265 print on the standard error meanwhile, kept from it. They say there why they refuse a
    tune, a profile or a preset ("x264 [error]: invalid tune 'animaton'"), a second line beside vsr's own, which said
    only FFmpeg's "Invalid argument". What others print meanwhile (another thread) is printed again at the end;
    where no temporary file can be made or there is no standard error, nothing is kept from it."""
    printed: list[str] = []
    try:
        caught = tempfile.TemporaryFile()
    except OSError:
        yield printed
        return
    with caught, _STANDARD_ERROR_TAKEN:
        sys.stderr.flush()
        try:
            standard_error = os.dup(2)
        except OSError:  # (fd 2 closed, as some daemons run)
            yield printed
            return
        os.dup2(caught.fileno(), 2)
        try:
            yield printed
        finally:
            sys.stderr.flush()
            os.dup2(standard_error, 2)
            os.close(standard_error)
            caught.seek(0)
            others = []
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if line.startswith(_ENCODER_PRINTS):
                    printed.append(line.rstrip())
                else:
                    others.append(line)  # (as written: a progress bar's "\r" too)
            sys.stderr.write("".join(others))
            sys.stderr.flush()


def _params_refused(ctx: av.codec.context.CodecContext) -> list[str]:
    """Open the encoder, and return what it said of x264-params, x265-params or svtav1-params entries it could not
    take: FFmpeg only warns ("Error parsing option 'bfrmaes = 2'", "Unknown option: x.") and encodes without them.
    FFmpeg's log is heard (from every thread) only while the encoder opens; PyAV keeps it quiet otherwise."""
    with ffmpeg_log(av.logging.WARNING), av.logging.Capture(local=False) as logs:
        try:
            ctx.open()
        except (ValueError, av.FFmpegError) as error:
            # Why, where the encoder said it in FFmpeg's log (x265: "Error setting preset/tune (null)/animaton."):
            # a note that VideoWriter's one line gives as the reason.
            for level, _, message in logs:
                if level <= av.logging.ERROR and message.strip():
                    error.add_note(message.strip())
            raise
    return [message.strip() for _, _, message in logs if message.startswith(_PARAMS_REFUSALS)]


def nvenc_on(device: torch.device | None, spec: CodecSpec, options: dict[str, str]) -> dict[str, str]:
    """`options` of an NVENC encoder on the GPU of `device` (the engine's), unless they name one: NVENC takes the
    first GPU by itself, and `--devices 0,1` encoded both workers' segments on GPU 0."""
    if not spec.needs_gpu or device is None or device.type != "cuda" or device.index is None or "gpu" in options:
        return options
    return {**options, "gpu": str(device.index)}


def _fill_plane(destination: av.video.plane.VideoPlane, plane: np.ndarray) -> None:
    """Copy an H×W plane into a VideoFrame's plane, whose rows are `line_size` bytes apart (padded)."""
    rows = np.frombuffer(destination, dtype=plane.dtype).reshape(destination.height, -1)
    rows[:, : destination.width] = plane


@functools.lru_cache(maxsize=64)  # (one entry a video: a batch of thousands would keep them all)
def declared_rate(info: VideoStreamInfo, variable: bool) -> Fraction:
    """The frame rate a video stream declares: the average, or for a `variable` one its shortest step (base_rate),
    as FFmpeg's command line declares it. Matroska takes the declared rate as every frame's default duration, and
    readers that assume it (ffmpeg's constant-rate output) drop the frames that come sooner than that."""
    return (info.base_rate if variable and info.base_rate else None) or info.average_rate or Fraction(24)


def start_of_output(first_frame: Fraction, passthrough: Passthrough, trim: bool, frame_counted: bool) -> Fraction:
    """The source time that becomes the output's 0, given the first frame's: a preview's first frame; in a
    frame-counted container the file's start (the first frame, or an earlier packet of another stream, during which
    the first frame is shown, as ffmpeg repeats it; nothing is dropped); else the file's start where it is after 0
    (`passthrough.origin`: 0 keeps every time, as a segment file does). The passthrough streams are moved to the
    same start."""
    if trim:
        start = first_frame
    elif frame_counted:
        other = passthrough.next_time()
        start = first_frame if other is None else min(first_frame, other)
        if other is not None and other - first_frame > Fraction(1, 50):
            # (the AVI muxer starts every stream at its first packet; so does ffmpeg's -c copy)
            logger.warning("%s: the other streams start %.3f s after the video, and an AVI holds no such delay: "
                           "they play that much early (.mkv or .mp4 keeps it)", passthrough.source,
                           other - first_frame)
    elif not passthrough.origin:
        return Fraction(0)  # (every packet as it is, those before 0 too: nothing is moved, nothing dropped)
    else:
        start = passthrough.origin
    passthrough.start_at(start)
    return start


def frame_place(seconds: Fraction, interval: Fraction, previous: int | None) -> int:
    """Where a frame `seconds` after the start of a frame-counted file (AVI) goes: the nearest frame interval, and
    after the previous frame's place (frames closer than an interval keep their order, a little late)."""
    place = round(seconds / interval)
    return place if previous is None else max(place, previous + 1)


def mux_empty_chunk(container: av.container.OutputContainer, stream: av.video.stream.VideoStream) -> None:
    """An empty chunk at place 0 of a frame-counted (AVI) video stream whose first frame comes at a later place (the
    audio starts first). FFmpeg's AVI muxer indexes the skipped places between two packets as empty chunks (a
    variable rate's), but none before the first packet: readers took the first frame for place 0, shown that much
    early and held that much longer (40 ms of a 25 fps B-frame AVI, 0.2 s of a video started after its audio)."""
    empty = av.Packet(b"")
    empty.stream, empty.time_base, empty.pts, empty.dts = stream, stream.time_base, 0, 0
    container.mux(empty)


def movie_timescale(time_base: Fraction) -> int:
    """The QuickTime/MP4 muxer's movie timescale for a video stream in `time_base`. The muxer writes where each
    stream starts (an edit list: a video that starts after its audio, an MPEG-TS source's AAC first by 21.333 ms) in
    that unit, 1/1000 s unless told: the video started at 21 ms, a third of a millisecond early, frames still 1/90000
    exact. A multiple of the video's own unit, and no coarser than the default."""
    return time_base.denominator * max(1, -(-1000 // time_base.denominator))


def frame_time_options(output: Path) -> dict[str, str]:
    """Encoder options that a container needs for its frames to keep their times: AVI and ASF (.wmv) store one time
    per packet, in decoding order, so frames reordered by B-frames come back without their times, and FFmpeg's MXF
    muxer writes each packet's decoding time as its presentation time; no B-frames there (a `bf` of the user's own
    still wins)."""
    return {"bf": "0"} if Path(output).suffix.lower() in (".avi", ".wmv", ".asf", ".mxf") else {}


# MPEG transport and program streams take any codec's packets, but store only these as video: the rest become data
# (or an "mp3" stream) that no player shows.
_MPEG_STREAM_VIDEO_CODECS = {"h264", "hevc", "mpeg1video", "mpeg2video"}
_MPEG_STREAM_MUXERS = {"mpegts", "mpeg", "vob", "svcd", "dvd"}


def warn_if_pixel_aspect_lost(output: Path, codec: str, info: VideoStreamInfo, source: Path) -> None:
    """A warning where `output` cannot keep the non-square pixels of `info` (the frames written): PyAV sets a
    stream's pixel aspect for the codec alone, which MP4 and QuickTime store, and H.264 and HEVC carry in their own
    headers; Matroska, AVI and NUT read it from elsewhere and store none."""
    sar = info.sample_aspect_ratio
    if not sar or sar == 1 or output.suffix.lower() in (".mp4", ".m4v", ".mov", ".3gp", ".3g2"):
        return
    if codec in CODECS and av.Codec(CODECS[codec].encoder, "w").canonical_name in ("h264", "hevc"):
        return
    _warn_once("%s: its pixels are not square (aspect %s), which %s in %s cannot say: players will show the frames "
               "narrower or wider; .mp4 or .mov keep it, libx264 and libx265 too, and --height or --width makes the "
               "pixels square", source, sar, codec, output.suffix)


def check_container_holds(output: Path, codec: str) -> None:
    """One line, before any work, where the muxer of `output` cannot store `codec` (a CODECS key) as video: refuses
    it (H.264 in .webm), or would keep it as data (VP9, AV1, FFV1, ProRes in MPEG-TS and program streams)."""
    muxer = check_container_named(output)
    # (NVENC's encoders open only on a GPU with NVENC: the writer says so where there is none)
    if codec in CODECS and not CODECS[codec].needs_gpu and not container_holds(output.suffix, codec):
        as_data = " as video" if muxer in _MPEG_STREAM_MUXERS else ""
        raise OptionError(f"codec {codec!r} cannot be stored{as_data} in a {muxer} file ({output.name}); use .mkv")


# The containers, by FFmpeg's muxer, where players take HEVC: MP4 and QuickTime (tagged hvc1 there, see
# `_add_video_stream`), Matroska and MPEG-TS. Codec "auto" writes deep and HDR video as HEVC only in these
# (`upscale.video_codec`); AVI, FLV, NUT, MPEG program streams and the rest keep H.264.
HEVC_MUXERS = ("mp4", "mov", "matroska", "mpegts")


def plays_hevc(suffix: str) -> bool:
    """Whether files ending in `suffix` are a container that players take HEVC in (HEVC_MUXERS)."""
    return _muxer_of(Path(f"probe{suffix}")) in HEVC_MUXERS


def check_container_named(output: Path) -> str:
    """FFmpeg's muxer for files named as `output`; one line where the name gives none."""
    muxer = _muxer_of(output)
    if muxer is None:
        raise _unknown_container(output)
    return muxer


def _unknown_container(output: Path) -> OutputError:
    """The error for an output whose name no muxer takes, saying what to name it (it said only what was wrong)."""
    what = f"its extension {output.suffix!r}" if output.suffix else "its name, which has no extension"
    return OutputError(f"{output}: cannot tell the container format from {what}; name it .mkv, .mp4, .mov or .webm")


def _muxer_of(output: Path) -> str | None:
    """FFmpeg's muxer for files named as `output` (None: no muxer takes that suffix)."""
    target = io.BytesIO()
    target.name = f"probe{output.suffix}"
    try:
        with av.open(target, "w") as container:
            return container.format.name
    except ValueError:
        return None


def container_holds(suffix: str, codec: str) -> bool:
    """Whether FFmpeg's muxer for files ending in `suffix` takes `codec`: False for H.264 in .webm or .y4m, anything in
    .gif, VP9 or FFV1 in MPEG-TS or program streams, and a suffix FFmpeg knows no muxer for. Asked of FFmpeg by
    writing a tiny header in memory (some muxers only refuse a codec there, not when the stream is added)."""
    target = io.BytesIO()
    target.name = f"probe{suffix}"  # PyAV picks the muxer by this name, as for a file
    try:
        container = av.open(target, "w")
    except ValueError:
        return False
    try:
        spec = _codec_spec(codec)
        stream = container.add_stream(spec.encoder, rate=25)  # (MXF takes broadcast rates only)
        stream.width, stream.height, stream.pix_fmt = 64, 64, choose_pix_fmt(codec, 8)
        stream.codec_context.options = dict(spec.options)  # x265's log level among them
        container.start_encoding()
        if (container.format.name in _MPEG_STREAM_MUXERS
                and stream.codec_context.codec.canonical_name not in _MPEG_STREAM_VIDEO_CODECS):
            return False
    except (ValueError, av.FFmpegError):
        return False
    finally:
        # (MXF's muxer fails its trailer when no packet was written: that said nothing of the codec, and every
        # .mxf output was refused, "codec 'libx264' cannot be stored in a mxf file")
        with contextlib.suppress(ValueError, av.FFmpegError):
            container.close()
    return True


def _codec_spec(codec: str) -> CodecSpec:
    if codec not in CODECS:
        animation = f" (a {codec.upper()} is written by naming the output .{codec}: -o clip.{codec})" \
            if codec in ("gif", "apng") else ""
        raise OptionError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}{animation}")
    return CODECS[codec]


def _codec_options(codec: str, spec: CodecSpec, crf: int | None, preset: str | None,
                   options: dict[str, str] | None) -> dict[str, str]:
    result = dict(spec.options)
    if crf is not None and spec.quality_option is None:
        raise OptionError(f"codec {codec!r} takes no crf, its quality is fixed (got {crf})")
    lowest, highest = _QUALITY_RANGES.get(spec.encoder, (None, None))
    if crf is not None and lowest is not None and not lowest <= crf <= highest:
        raise OptionError(f"--crf {crf}: codec {codec!r} takes {lowest} to {highest} (lower is better)")
    if preset is not None and spec.speed_option is None:
        raise OptionError(f"codec {codec!r} takes no preset (got {preset!r})")
    options = {str(k): str(v) for k, v in (options or {}).items()}
    for key, instead in _OPTIONS_OF_THEIR_OWN.items():
        if key in options:
            raise OptionError(f"encoder option {key} is vsr's {instead}")
    rate_controls = sorted(_RATE_CONTROL_OPTIONS & options.keys())
    if crf is not None and rate_controls:
        raise OptionError(f"--crf and the encoder option {rate_controls[0]} both set the quality: give one")
    if preset is not None and spec.speed_option in options:
        raise OptionError(f"--preset and the encoder option {spec.speed_option} both set the speed: give one")
    if preset is not None:
        _check_preset(codec, spec, str(preset), f"--preset {preset}")
    elif spec.speed_option in options:
        _check_preset(codec, spec, options[spec.speed_option],
                      f"encoder option {spec.speed_option}={options[spec.speed_option]}")
    # An explicit rate control in `options` (a fixed qp, a bit rate) replaces the default quality.
    if spec.quality_option is not None and (crf is not None or not rate_controls):
        result[spec.quality_option] = str(crf if crf is not None else spec.default_quality)
    if spec.speed_option is not None:
        result[spec.speed_option] = str(preset if preset is not None else spec.default_speed)
    for key, value in options.items():
        # x264-params, x265-params, svtav1-params: "k=v:k=v" lists, added to vsr's own (later ones win).
        result[key] = f"{result[key]}:{value}" if key.endswith("-params") and key in result else value
    return result


def effective_settings(codec: str, crf: int | None, preset: str | None, options: dict[str, str] | None,
                       pix_fmt: str | None, bit_depth: int, alpha: bool = False, source: Path | None = None) -> dict:
    """What `VideoWriter` encodes a video of `bit_depth` with, given these settings: the crf and preset (None: the
    codec's defaults in CODECS, now), its options (vsr's fixed ones with those given) and the pix_fmt
    (`choose_pix_fmt`). A resumable run records these rather than the settings given, so that a later vsr whose
    defaults changed (x265's CRF went from 20 to 23) cannot take the segments for its own. `source` names the video
    in the warning about bits lost, as the writer's (said once: `_warn_once`)."""
    spec = _codec_spec(codec)
    options = _codec_options(codec, spec, crf, preset, options)
    return {"crf": options.pop(spec.quality_option, None) if spec.quality_option else None,
            "preset": options.pop(spec.speed_option, None) if spec.speed_option else None,
            "encoder_options": options,
            "pix_fmt": choose_pix_fmt(codec, bit_depth, pix_fmt, alpha=alpha, source=source)}


def encoded_crf(path: Path) -> float | None:
    """The CRF that x264 or x265 wrote into the video of `path` (their version SEI: "... crf=20.0 ..."; x265 keeps
    it in the MP4's codec headers, x264 in the first frame); None where neither wrote one (another encoder, a bit
    rate). How a record of an earlier vsr, which kept no crf when the default was used, is checked."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            found = bytes(stream.codec_context.extradata or b"")
            first = next((packet for packet in container.demux(stream) if packet.size), None)
            found += bytes(first) if first is not None else b""
    except (av.FFmpegError, IndexError, OSError):
        return None
    match = re.search(rb" crf=([0-9]+(?:\.[0-9]+)?) ", found)
    return float(match[1]) if match else None


def _check_preset(codec: str, spec: CodecSpec, preset: str, given_as: str) -> None:
    """One line naming the presets the encoder takes, where it does not take `preset` (see _PRESET_NAMES)."""
    names = _PRESET_NAMES.get(spec.encoder)
    if names is not None:
        if preset.lower() in names or preset in [str(number) for number in range(len(names))]:
            return
        allowed = f"{', '.join(names)} (or their numbers, 0 to {len(names) - 1})"
    elif spec.encoder in _PRESET_RANGES:
        lowest, highest = _PRESET_RANGES[spec.encoder]
        with contextlib.suppress(ValueError):
            if lowest <= int(preset) <= highest:
                return
        allowed = f"{lowest} to {highest} (higher is faster)"
    else:
        return
    raise OptionError(f"{given_as}: codec {codec!r} takes {allowed}")


def _with_hdr10(codec: str, spec: CodecSpec, options: dict[str, str], hdr10: Hdr10Metadata,
                source: Path) -> dict[str, str]:
    """`options` plus the encoder parameters that write `hdr10` into the stream (SEI messages, AV1 metadata OBUs);
    a warning where the encoder has none."""
    if spec.encoder in ("libx264", "libx265"):
        # Chromaticities in units of 0.00002, luminance in 0.0001 cd/m², green first (x265's syntax, x264's too).
        def pair(x: float, y: float) -> str:
            return f"({round(x * 50000)},{round(y * 50000)})"

        def nits(value: float) -> int:
            return round(value * 10000)

        params, display_key, light_key = {"libx264": ("x264-params", "mastering-display", "cll"),
                                          "libx265": ("x265-params", "master-display", "max-cll")}[spec.encoder]
    elif spec.encoder == "libsvtav1":
        def pair(x: float, y: float) -> str:
            return f"({x:.5f},{y:.5f})"

        def nits(value: float) -> str:
            return f"{value:.4f}"

        params, display_key, light_key = "svtav1-params", "mastering-display", "content-light"
    else:
        _warn_once("%s: codec %s cannot write the source's HDR10 metadata (mastering display, light levels); "
                   "libx265, libx264 and libsvtav1 can", source, codec)
        return options
    settings = []
    if hdr10.primaries is not None and hdr10.luminance is not None:
        (red, green, blue), white = hdr10.primaries, hdr10.white_point
        low, high = hdr10.luminance
        settings.append(f"{display_key}=G{pair(*green)}B{pair(*blue)}R{pair(*red)}WP{pair(*white)}"
                        f"L({nits(high)},{nits(low)})")
    if hdr10.max_cll is not None:
        settings.append(f"{light_key}={hdr10.max_cll},{hdr10.max_fall}")
    result = dict(options)
    result[params] = ":".join(filter(None, [options.get(params), *settings]))
    return result


def _check_size(width: int, height: int, pix_fmt: str) -> None:
    """Subsampled chroma (4:2:0, 4:2:2) needs an even size; encoders reject the rest with a vague error."""
    pixel_format = av.VideoFormat(pix_fmt)
    if (width % 2 and pixel_format.chroma_width(2) == 1) or (height % 2 and pixel_format.chroma_height(2) == 1):
        instead = ("--codec ffv1 or prores, which keep alpha at any size" if has_alpha(pix_fmt) else
                   f"a 4:4:4 pix_fmt such as {'yuv444p10le' if pixel_format.name.endswith('10le') else 'yuv444p'}")
        sides = "width and height" if pixel_format.chroma_height(2) == 1 else "width"
        raise OptionError(f"pix_fmt {pix_fmt} needs an even {sides}, not {width}x{height}; ask for an even "
                          f"--width/--height, or use {instead}")


def _guess_by_size(info: VideoStreamInfo) -> str:
    """What players assume for an untagged stream (`colour.untagged_matrix`)."""
    return untagged_matrix(info.height)


def _conversion(info: VideoStreamInfo, source: Path) -> tuple[str, ColorRange]:
    """The matrix (a `_MATRICES` key) and range to convert RGB to YUV with."""
    source_format = av.VideoFormat(info.pix_fmt)
    if info.color.matrix == "gbr" or source_format.is_rgb or source_format.has_palette:
        # An RGB source (PNG, GIF, RGB FFV1...) has no YUV matrix or range to keep: convert it as players assume a
        # video of its size is (limited range), and say so in the tags.
        return _guess_by_size(info), ColorRange.MPEG
    matrix = info.color.matrix
    if matrix not in _MATRICES:
        guess = _guess_by_size(info)
        if matrix not in (None, "unknown", "unspecified", "reserved"):
            _warn_once("%s: source matrix %r cannot be reproduced; converting with %s", source, matrix, guess)
        matrix = guess
    return matrix, _RANGES.get(info.color.range, ColorRange.MPEG)


def _tags(info: VideoStreamInfo) -> tuple[int, int]:
    """The primaries and transfer values to tag the output with (the source's, else the size guess)."""
    guess = _guess_by_size(info)
    primaries = _PRIMARIES.get(info.color.primaries or "", _PRIMARIES[guess])
    transfer = _TRANSFERS.get(info.color.transfer or "", _TRANSFERS[guess])
    return primaries, transfer
