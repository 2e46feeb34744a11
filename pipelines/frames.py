"""Small objects that mirror the media: what a video stream is, and a batch of its decoded frames.

Decoders produce `FrameBatch`es and describe their stream with a `VideoStreamInfo`; the engine upscales the
`frames` tensor; the encoder takes the upscaled batch with the same `pts`. Timestamps travel with the frames, in the
source stream's time base, so the output has the same frames at the same times (variable frame rate included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import torch


@dataclass(frozen=True)
class ColorInfo:
    """A stream's color description, in FFmpeg's names (None where the file says nothing)."""

    primaries: str | None = None  # "bt709", "bt2020", "smpte170m", ...
    transfer: str | None = None  # "bt709", "smpte2084", "arib-std-b67", ...
    matrix: str | None = None  # "bt709", "bt470bg", "smpte170m", "bt2020nc", ...
    range: str = "tv"  # "tv" (limited) or "pc" (full)


@dataclass(frozen=True)
class VideoStreamInfo:
    """What vsr needs to know about the video stream it upscales."""

    index: int  # stream index in the container
    codec: str  # decoder name, e.g. "h264"
    width: int  # coded frame size, before any rotation
    height: int
    pix_fmt: str  # e.g. "yuv420p", "yuv420p10le"
    bit_depth: int  # bits per component: 8, 10, 12, 16
    time_base: Fraction  # unit of `pts`
    average_rate: Fraction | None  # mean frames per second, None when unknown
    frame_count: int | None  # from the container when it says; may be an estimate
    duration: float | None  # seconds
    color: ColorInfo
    rotation: int = 0  # degrees, from the display matrix; the frames themselves are not rotated
    # Stored mirrored as well (an image sequence whose files' EXIF orientation is 2, 4, 5 or 7): FFmpeg's display
    # matrix then flips the rows before turning by `rotation`, and PyAV's `rotation` leaves the flip out. The decoder
    # flips the rows back, so the frames are stored-and-turned like any other's.
    mirrored: bool = False
    sample_aspect_ratio: Fraction | None = None
    interlaced: bool = False  # the stream says each frame holds two fields from two moments (field order tt, bb, ...)
    alpha: bool = False  # the frames have transparency (an alpha plane not fully opaque in the frames sampled)
    # FFmpeg's r_frame_rate: the lowest rate at which every frame time falls on a tick (a variable-rate stream's
    # shortest step), None when unknown. Containers with a default frame duration get it for variable-rate video.
    base_rate: Fraction | None = None
    # Soft-telecined (telecine.pulldown_rate): progressive film frames that flags tell the player to show for 3
    # fields and 2 in turn, so that they come 50 and 33 ms apart; `average_rate` and `base_rate` are then the film's
    # (24000/1001), not the 29.97 or 59.94 fps of the fields that FFmpeg says.
    soft_telecined: bool = False
    # `duration` is the stream's own end, which every frame reaches (Matroska's DURATION tag), not the container's
    # span, which another stream may make longer: a frame missing at the end is the file cut short.
    duration_is_stream_end: bool = False


@dataclass
class FrameBatch:
    """Consecutive frames in presentation order.

    `frames` is N×3×H×W RGB, N×4×H×W RGBA for a stream with alpha (`VideoStreamInfo.alpha`): uint8 for 8-bit
    sources, float32 in [0, 1] for deeper ones (so 10-bit stays 10-bit).
    `pts[i]` is frame i's presentation timestamp in the stream's time base.
    Where frames repeat the one before (pipelines/dedup.py), `frames` holds each picture once and `shows[i]` is the
    index in `frames` of the picture shown at `pts[i]`; None: picture i at `pts[i]`.
    """

    frames: torch.Tensor
    pts: list[int]
    # Closed captions (A/53 cc_data, see pipelines/captions.py) by pts, for the frames that carry some.
    captions: dict[int, bytes] = field(default_factory=dict)
    shows: list[int] | None = None

    def __len__(self) -> int:
        return len(self.pts)

    def pictures(self) -> list[int]:
        """The index in `frames` of each frame's picture, in the order of `pts`."""
        return list(range(len(self.pts))) if self.shows is None else self.shows
