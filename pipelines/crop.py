"""Black bars: found (`--crop auto`) or given (`--crop W:H:X:Y`), and cut off before the model.

A film wider than its frame is stored with black bars above and below it (letterbox: a 2.39:1 film in 1920×1080
is 1920×804 of picture), a 4:3 show in a 16:9 broadcast with bars at its sides (pillarbox). Upscaled whole, the bars
cost the model as much as the picture (a quarter of the work for a 2.39:1 film) and come out as black as they went
in. `--crop` cuts them off first, as HandBrake crops by default: the output is the picture alone, upscaled.

Finding them (`detect_bars`) looks at SAMPLES frames spread over the whole video (an opening of black titles or a
fade says nothing about the bars) and keeps every row and column in which any of them has a pixel brighter than
BLACK: a line of burned-in subtitles in a bar keeps that bar, and frames wholly black are skipped. The bars are
rounded down to even sizes, so that the picture keeps 4:2:0's pairs of pixels. A video with alpha is left whole
(its transparent margins are part of the picture).

Crops are in the frame as stored (the width and height ffprobe gives), before any rotation is applied for display;
the syntax is that of FFmpeg's crop filter (`W:H:X:Y`, or `W:H` centered), which is also what `ffmpeg -vf cropdetect`
prints.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from vsr.errors import InputError, OptionError

from .frames import FrameBatch, VideoStreamInfo

log = logging.getLogger("vsr")

SAMPLES = 12  # frames looked at for bars, spread over the video
BLACK = 32  # of 255, in the brightest of R, G and B: a bar's pixels are darker (its noise included)
_CROP = re.compile(r"(\d+):(\d+)(?::(\d+):(\d+))?")


@dataclass(frozen=True)
class Crop:
    """The part of each frame that is kept: `width`×`height` pixels from (`x`, `y`), in the frame as stored."""

    width: int
    height: int
    x: int
    y: int

    def __str__(self) -> str:
        return f"{self.width}:{self.height}:{self.x}:{self.y}"

    def of(self, info: VideoStreamInfo) -> VideoStreamInfo:
        """The stream as the model sees it: cropped."""
        return replace(info, width=self.width, height=self.height)


def parse_crop(value: str | None, option: str = "--crop") -> str | None:
    """--crop's "off" (None), "auto" or "W:H:X:Y" / "W:H" as FFmpeg's crop filter takes them (checked against a
    video's size by `resolve_crop`)."""
    text = str(value).strip().lower()
    if value is None or text == "off":
        return None
    if text == "auto" or _CROP.fullmatch(text):
        return text
    raise OptionError(f"{option} takes auto, off, or WIDTH:HEIGHT:X:Y as FFmpeg's crop filter (1920:800:0:140); "
                      f"not {value!r}")


def resolve_crop(value: str | None, source: Path, info: VideoStreamInfo) -> Crop | None:
    """The crop that `value` (`parse_crop`) asks of `source`: None where nothing is cut off."""
    if value is None:
        return None
    if value == "auto":
        crop = None if info.alpha else detect_bars(source, info)
        if crop is not None:
            log.warning("%s: black bars cut off: %dx%d of %dx%d kept (--crop %s; --crop off keeps them)", source,
                        crop.width, crop.height, info.width, info.height, crop)
        return crop
    width, height, x, y = _CROP.fullmatch(value).groups()
    width, height = int(width), int(height)
    crop = Crop(width, height, (info.width - width) // 2 if x is None else int(x),
                (info.height - height) // 2 if y is None else int(y))
    if not (0 < width and 0 < height and 0 <= crop.x <= info.width - width and 0 <= crop.y <= info.height - height):
        raise OptionError(f"{source}: --crop {value} does not fit in its {info.width}x{info.height} frames")
    return None if (width, height) == (info.width, info.height) else crop


def detect_bars(source: Path, info: VideoStreamInfo, samples: int = SAMPLES) -> Crop | None:
    """The picture inside `source`'s black bars (module doc), or None where it has none."""
    rows = np.zeros(info.height, bool)  # whether any sample has a bright pixel in the row
    columns = np.zeros(info.width, bool)
    for rgb in _sample_frames(source, info, samples):
        if rgb.shape[:2] != (info.height, info.width):  # (a stream whose size changes: judged by its first size)
            continue
        bright = rgb.max(axis=2) > BLACK
        rows |= bright.any(axis=1)
        columns |= bright.any(axis=0)
    if not rows.any():  # black throughout: nothing to go by
        return None
    top, bottom = _bars(rows)
    left, right = _bars(columns)
    if top == bottom == left == right == 0:
        return None
    return Crop(info.width - left - right, info.height - top - bottom, left, top)


def _bars(bright: np.ndarray) -> tuple[int, int]:
    """The dark lines before the first bright one and after the last, each rounded down to an even number."""
    lit = np.flatnonzero(bright)
    return int(lit[0]) // 2 * 2, (len(bright) - 1 - int(lit[-1])) // 2 * 2


def _sample_frames(source: Path, info: VideoStreamInfo, samples: int) -> Iterator[np.ndarray]:
    """Up to `samples` frames spread over the video as H×W×3 uint8 RGB: each the first frame at or after the
    keyframe before its time (what a seek gives, without decoding up to the time); for an image sequence, files."""
    from vsr.pipelines.sequences import existing_frames, is_sequence

    if is_sequence(source):
        files = [path for _, path in sorted(existing_frames(source).items())]
        for path in sorted({files[len(files) * (2 * index + 1) // (2 * samples)] for index in range(samples)}):
            with av.open(str(path)) as container:
                yield next(container.decode(video=0)).to_ndarray(format="rgb24")
        return
    try:
        with av.open(str(source)) as container:
            stream = container.streams.video[info.index]
            duration = info.duration or (container.duration or 0) / av.time_base
            start = stream.start_time or 0
            seen = set()
            for index in range(samples):
                offset = duration * (2 * index + 1) / (2 * samples)
                container.seek(start + int(offset / stream.time_base), stream=stream, backward=True)
                frame = next(container.decode(stream), None)
                if frame is not None and frame.pts not in seen:
                    seen.add(frame.pts)
                    yield frame.to_ndarray(format="rgb24")
                if not duration:  # nothing to spread over: the first frame only
                    break
    except av.FFmpegError as error:
        raise InputError(f"{source}: cannot look for black bars ({error})") from error


def cropped(batches: Iterable[FrameBatch], crop: Crop | None) -> Iterator[FrameBatch]:
    """`batches` with only `crop` of each frame (None: as they are)."""
    for batch in batches:
        if crop is not None:
            frames = batch.frames[..., crop.y:crop.y + crop.height, crop.x:crop.x + crop.width]
            batch = replace(batch, frames=frames)
        yield batch
