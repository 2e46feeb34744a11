"""Double-rate deinterlacing (`--deinterlace field`): each field of an interlaced video its own frame, 25i → 50p.

An interlaced frame holds two fields taken half a frame apart (1/50 s in 25i, 1/59.94 s in 29.97i). Deinterlacing one
frame per frame (bwdif's send_frame, what "auto" and "on" do) keeps the first field's moment and makes the second's
lines up from it, so half the motion the camera saw is lost; sports and other true video move on every field. Here
FFmpeg's bwdif sends a frame for each field (its send_field mode), the other field's lines filled in from both fields'
neighbours in space and time: twice the frames, each at its field's moment. It suits true interlaced video; film
telecined to 29.97i has its own remedy (`--deinterlace ivtc`, pipelines/telecine.py), for which this would make 59.94
frames a second of 23.976 pictures.

Timing, as bwdif gives it: a frame's first field keeps its time, the second comes halfway to the next frame's (the
last frame's, halfway past its time by as far as the frame before it); halves of a tick rounded up, as FFmpeg rounds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

from vsr.pipelines.frames import VideoStreamInfo

FIELDS = 2  # frames made of each frame


def field_info(info: VideoStreamInfo) -> VideoStreamInfo:
    """The description of the frames made of the fields of a stream of `info`: twice its rate and frames."""
    return replace(
        info,
        average_rate=info.average_rate * FIELDS if info.average_rate else None,
        base_rate=info.base_rate * FIELDS if info.base_rate else None,
        frame_count=info.frame_count * FIELDS if info.frame_count is not None else None,
    )


def field_pts(source_pts: list[int]) -> list[int]:
    """The times of the frames made of frames at `source_pts` (consecutive, sorted): two for each, the first at its
    time, the second halfway to the next frame's (see the module doc)."""
    made = []
    for index, pts in enumerate(source_pts):
        if index + 1 < len(source_pts):
            after = source_pts[index + 1]
        elif index > 0:
            after = 2 * pts - source_pts[index - 1]
        else:  # (one frame: bwdif has nothing to place its second field by; half a tick on)
            after = pts + 1
        made += [pts, halfway(pts, after)]
    return made


def halfway(pts: int, after: int) -> int:
    """The tick halfway from `pts` to `after`, halves rounded up (as FFmpeg rounds a time in bwdif's half ticks)."""
    return math.floor(Fraction(pts + after, 2) + Fraction(1, 2))
