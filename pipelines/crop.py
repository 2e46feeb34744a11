"""Black bars: found (`--crop auto`) or given (`--crop W:H:X:Y`), and cut off before the model.

A film wider than its frame is stored with black bars above and below it (letterbox: a 2.39:1 film in 1920×1080
is 1920×804 of picture), a 4:3 show in a 16:9 broadcast with bars at its sides (pillarbox). Upscaled whole, the bars
cost the model as much as the picture (a quarter of the work for a 2.39:1 film) and come out as black as they went
in. `--crop` cuts them off first, as HandBrake crops by default: the output is the picture alone, upscaled.

Finding them (`detect_bars`) looks at SAMPLES frames spread over the whole video (an opening of black titles or a
fade says nothing about the bars) and keeps every row and column in which any of them has pixels brighter than BLACK
(more than the odd one of noise): a line of burned-in subtitles in a bar keeps that bar, and frames wholly black are
skipped. The bars are rounded down to even sizes, so that the picture keeps 4:2:0's pairs of pixels. A video with
alpha is left whole (its transparent margins are part of the picture).

Crops are in the frame as stored (the width and height ffprobe gives), before any rotation is applied for display;
the syntax is that of FFmpeg's crop filter (`W:H:X:Y`, or `W:H` centered; `crop=W:H:X:Y` as `ffmpeg -vf cropdetect`
prints it), though odd sizes and places are taken as given, where FFmpeg evens them for 4:2:0.
"""

from __future__ import annotations

import itertools
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
FORWARD = 250  # frames decoded at most after a seek to reach a sample's time
SPACING = 25  # frames between samples where the video cannot seek
BLACK = 32  # of 255, in the brightest of R, G and B: a bar's pixels are darker...
NOISE = 256  # ...but for one in this many of a line's pixels (and at least one), which may be noise
_CROP = re.compile(r"(\d+):(\d+)(?::(\d+):(\d+))?", re.ASCII)


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
    text = str(value).strip().lower().removeprefix("crop=")  # (as `ffmpeg -vf cropdetect` prints it)
    if value is None or text == "off":
        return None
    if text == "auto" or _CROP.fullmatch(text):
        return text
    raise OptionError(f"{option} takes auto, off, or WIDTH:HEIGHT:X:Y as FFmpeg's crop filter (1920:800:0:140); "
                      f"not {value!r}")


def resolve_crop(value: str | None, source: Path, info: VideoStreamInfo) -> Crop | None:
    """The crop that `value` (see `parse_crop`) asks of `source`: None where nothing is cut off."""
    value = parse_crop(value)
    if value is None:
        return None
    if value == "auto":
        if info.alpha:  # (black is no bar where the picture may be transparent)
            log.warning("%s: --crop auto leaves a video with alpha whole; --crop WIDTH:HEIGHT:X:Y crops it", source)
            return None
        crop = detect_bars(source, info)
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
        rows |= bright.sum(axis=1) > max(1, info.width // NOISE)
        columns |= bright.sum(axis=0) > max(1, info.height // NOISE)
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
    """Up to `samples` frames spread over the video as H×W×3 uint8 RGB; from a stream that cannot seek, says
    nothing of its length, or whose seeks find few frames, frames SPACING apart from the start; from an image
    sequence, files."""
    from vsr.pipelines.sequences import existing_frames, is_sequence

    if is_sequence(source):
        files = [path for _, path in sorted(existing_frames(source).items())]
        for path in sorted({files[len(files) * (2 * index + 1) // (2 * samples)] for index in range(samples)}):
            with av.open(str(path)) as container:
                yield next(container.decode(video=0)).to_ndarray(format="rgb24")
        return
    try:
        with av.open(str(source)) as container:
            stream = container.streams[info.index]
            duration = info.duration or (container.duration or 0) / av.time_base
            times = [(stream.start_time or 0) + int(duration * (2 * index + 1) / (2 * samples) / stream.time_base)
                     for index in range(samples)] if duration else []
            seeks, found = bool(times), 0
            for time in times:
                try:
                    container.seek(time, stream=stream, backward=True)  # to the keyframe at or before `time`
                except (av.FFmpegError, OSError):  # (a raw stream)
                    seeks = False
                    break
                for rgb in _frame_at(container.decode(stream), time):
                    found += 1
                    yield rgb
        # MPEG-TS and program streams seek to any packet, not to a keyframe: with no keyframe after it, a sample
        # decodes to nothing. Where most did, the frames from the start are looked at too.
        if seeks and found >= len(times) // 2:
            return
        with av.open(str(source)) as container:
            stream = container.streams[info.index]
            for index, frame in enumerate(itertools.islice(container.decode(stream), samples * SPACING)):
                if index % SPACING == 0:
                    yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as error:
        raise InputError(f"{source}: cannot look for black bars ({error})") from error


def _frame_at(frames: Iterator[av.VideoFrame], time: int) -> Iterator[np.ndarray]:
    """The first of `frames` (decoded from a keyframe on) at or after pts `time`, or the FORWARD-th: a video with
    few keyframes would otherwise give the same keyframe, perhaps a black opening, for every sample."""
    for count, frame in enumerate(frames):
        if frame.pts is None or frame.pts >= time or count >= FORWARD:
            yield frame.to_ndarray(format="rgb24")
            return


def cropped(batches: Iterable[FrameBatch], crop: Crop | None) -> Iterator[FrameBatch]:
    """`batches` with only `crop` of each frame (None: as they are)."""
    for batch in batches:
        if crop is not None:
            frames = batch.frames[..., crop.y:crop.y + crop.height, crop.x:crop.x + crop.width]
            batch = replace(batch, frames=frames)
        yield batch
