"""Frames that repeat the one before are not upscaled again.

Animation is drawn on twos and threes (12 or 8 drawings a second in a 24 fps video), slideshows and screen
recordings hold one picture for seconds, titles sit still: each such frame would go through the network only to give
the same picture again. `distinct_pictures` hands the engine only the frames that differ from the last one it was
given (the reference) and tells the writers, for every frame, which upscaled picture it shows (`FrameBatch.shows`).
The writers write that picture at each repeat's own time, so the output has every frame, at its time, as before.

`--dedup exact` (the default) takes a frame as a repeat when it equals the reference in every value: the network
would give it the same picture, so the output is the same, only made sooner.

Lossy compression seldom decodes a held drawing to the same values twice (x264 at CRF 23 moved 8×8 blocks of a
held, noisy drawing by up to 20 levels on average from one frame to the next). `--dedup LEVELS` allows for that: a
frame repeats the reference when no 8×8 block of any channel differs from it by more than LEVELS (of 255) on
average, since motion anywhere, however small, moves some block's average, and no channel's mean over the whole
frame has moved by more than LEVELS / 8, since a fade or a light turned up moves every block a little the same way
where noise moves them both ways. Frames are compared with the reference, not with the frame before, so a slow
change cannot creep past the tolerance one small step at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vsr.errors import OptionError

from .frames import FrameBatch

BLOCK = 8  # pixels: the side of the blocks whose average difference is compared
FADE_SHARE = 1 / 8  # of the tolerance: the most a channel's mean over the frame may move (see the module doc)
_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+", re.ASCII)


def parse_dedup(value: str | float | int | None, option: str = "--dedup") -> float | None:
    """--dedup's "off" (None: every frame upscaled), "exact" (0) or a tolerance in levels of 255 ("4")."""
    text = str(value).strip().lower()
    if value is None or text == "off":
        return None
    if text == "exact":
        return 0.0
    levels = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not 0 <= levels <= 255:
        raise OptionError(f"{option} takes exact, off, or a tolerance in levels of 255 such as 4; not {value!r}")
    return levels


@dataclass
class Repeats:
    """How many frames `distinct_pictures` found repeating the reference, for the summary."""

    frames: int = 0


def is_repeat(frame: torch.Tensor, reference: torch.Tensor, tolerance: float) -> bool:
    """Whether `frame` (C×H×W, uint8 or float in [0, 1]) shows `reference` again, within `tolerance` levels of 255
    (module doc; 0: every value equal)."""
    if tolerance == 0:
        return torch.equal(frame, reference)
    scale = 1.0 if frame.dtype == torch.uint8 else 255.0
    difference = (frame.float() - reference.float()) * scale
    if difference.mean(dim=(1, 2)).abs().max() > tolerance * FADE_SHARE:
        return False
    # Blocks at the right and bottom edges may be smaller: ceil_mode averages over the pixels they have.
    blocks = F.avg_pool2d(difference.abs()[None], BLOCK, ceil_mode=True)
    return bool(blocks.max() <= tolerance)


def distinct_pictures(batches: Iterable[FrameBatch], batch_size: int, tolerance: float | None,
                      repeats: Repeats | None = None) -> Iterator[FrameBatch]:
    """`batches` of decoded frames as batches of up to `batch_size` distinct pictures, each with the frames that
    show it (`FrameBatch.shows`); `tolerance` None passes `batches` on as they are.

    A batch is handed on once the picture after its last is found, so that the repeats of its last picture go with
    it: a batch never starts with a repeat, and a still lasting minutes waits for its end (only its times are held).
    """
    if tolerance is None:
        yield from batches
        return
    repeats = repeats if repeats is not None else Repeats()
    pictures: list[torch.Tensor] = []
    pts: list[int] = []
    shows: list[int] = []
    captions: dict[int, bytes] = {}
    for batch in batches:
        for index, frame in enumerate(batch.frames):
            if pictures and is_repeat(frame, pictures[-1], tolerance):
                repeats.frames += 1
            else:
                if len(pictures) == batch_size:
                    yield FrameBatch(torch.stack(pictures), pts, captions=captions, shows=shows)
                    pictures, pts, shows, captions = [], [], [], {}
                pictures.append(frame)
            pts.append(batch.pts[index])
            shows.append(len(pictures) - 1)
            if batch.pts[index] in batch.captions:
                captions[batch.pts[index]] = batch.captions[batch.pts[index]]
    if pictures:
        yield FrameBatch(torch.stack(pictures), pts, captions=captions, shows=shows)
