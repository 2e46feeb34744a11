"""Inverse telecine (`--deinterlace ivtc`): the film frames of a video made from film by 3:2 pulldown, put back.

NTSC DVDs and broadcasts of films and anime turn 23.976 film frames a second into 29.97 interlaced ones: every 4 film
frames A B C D become the 10 fields of 5 video frames, AA BB BC CD DD, two of them woven from two film frames. A
deinterlacer makes 5 frames of those 5, one of them a repeat and two with half their lines made up; inverse telecine
gives the 4 film frames back, whole.

The decoder (`PyAVDecoder`, decode/_pyav.py) does it in two steps:
1. FFmpeg's fieldmatch weaves each frame from the fields that belong together (its own, or the neighbour's field of
   the same film frame), so that AA BB BC CD DD becomes A B B C D; what it cannot match (a cut in the cadence, video
   laid over film) it leaves combed and flagged, and bwdif deinterlaces those frames alone, as FFmpeg's recipe
   `fieldmatch,bwdif=deint=interlaced,decimate` does.
2. `Decimation` drops one frame of every cycle of five: the one most like the frame before it (the repeat), as
   FFmpeg's decimate chooses. Cycles start at the first frame decoded, or at a window's first frame (a preview's
   `--start`, a segment's start): the segments of a resumable run start on the whole run's grid of cycles
   (`segments.plan_video`), so that they drop the frames one run drops. A last cycle cut short keeps all its frames,
   as decimate keeps them.

Timing: the four frames kept of a cycle are spread evenly over the cycle's time, the first at its first frame's, each
5/4 of the source's frame interval after the one before (at 29.97 fps: 41.7 ms, 23.976 fps), rounded to the stream's
time base. Kept at their source times they would judder (33, 33, 33 and 67 ms apart); retimed from the start of
the video instead, like decimate, a frame lost to damage would put every frame after it out of step with the sound.
A cycle's span is measured from its own first and last frames, so the audio stays in sync whatever the rate.

Soft telecine (`pulldown_rate`) is another thing: the film frames are whole in the stream (DVDs' MPEG-2, and
MakeMKV's copies of it), flagged to be shown for 3 fields and 2 in turn, and FFmpeg times them so, 50 and 33 ms
apart. Nothing is to be undone there: vsr keeps their times, as it keeps any variable rate, and says the film's rate
(probe.describe_video) where FFmpeg says the fields'; ivtc, which would drop a film frame in five, is refused.

Auto does not do it. A stream that says it is interlaced and looks telecined (`telecine_note`: FFmpeg's idet finds
a field repeated from the frame before in 2 frames of 5, which true interlaced video, each field its own moment,
never shows) is deinterlaced by bwdif with a warning naming `--deinterlace ivtc`: a few dozen frames cannot vouch for
a whole broadcast, which mixes film with video (studio, sports, credits), and inverse telecine on true 60i video
would drop one real frame in five.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from vsr.errors import InputError
from vsr.pipelines.frames import VideoStreamInfo

log = logging.getLogger(__name__)

CYCLE = 5  # video frames of one pulldown cycle, 4 film frames
FILM_SHARE = Fraction(CYCLE - 1, CYCLE)
# A stream whose times count coarser than this cannot place film frames 5/4 of a frame apart (AVI, Y4M: one tick a
# frame): their times would judder by a quarter of a frame.
COARSEST_TIME_BASE = Fraction(1, 1000)
# Like FFmpeg's decimate: differences are summed in blocks of 16×16 luma samples, and a frame's difference to the one
# before is that of its most changed 32×32 square (4 blocks), so that a small moving thing is not lost in a still
# picture. A cycle whose least changed frame changed more than DUPLICATE (a share of that square's full scale) has no
# repeat; where one of its frames then starts a new scene (changed more than SCENE_CHANGE of the whole picture's
# full scale), that frame is dropped, hidden by the cut.
BLOCK = 16
DUPLICATE = 0.011
SCENE_CHANGE = 0.15
# Detection (`telecine_note`): frames judged from the start and from the middle, and the share of them with one field
# repeated from the frame before above which a video is said to look telecined (2 in 5 do; true interlaced video
# and progressive video, none).
SAMPLE_FRAMES = 40
TELECINED_SHARE = 0.2
# Soft telecine (`pulldown_rate`): the film rates it shows at 29.97 (or 59.94) fps, and the fewest frame steps that
# vouch for the 3:2 cadence.
FILM_RATES = (Fraction(24000, 1001), Fraction(24))
PULLDOWN_STEPS = 8


def pulldown_rate(pts: list[int], time_base: Fraction) -> Fraction | None:
    """The film rate (24000/1001 or 24) of frames at `pts` (sorted) that come in 3:2 steps, a step of 3 fields and
    one of 2 in turn: a soft-telecined stream (see the module doc), whose film frames are whole and whose MPEG-2
    repeat-field flags make FFmpeg time them so (H.264's and VC-1's can too). None for any other timing."""
    steps = [later - earlier for earlier, later in zip(pts, pts[1:])]
    steps = steps[:len(steps) // 2 * 2]  # (whole pairs, so that they span whole film frames)
    if len(steps) < PULLDOWN_STEPS or min(steps) <= 0:
        return None
    long = [step > 1.25 * min(steps) for step in steps]
    if any(this == following for this, following in zip(long, long[1:])):
        return None  # not in turn: a constant rate, or another cadence
    shorts = [step for step, is_long in zip(steps, long) if not is_long]
    longs = [step for step, is_long in zip(steps, long) if is_long]
    # 3 fields against 2, within the rounding of the time base (Matroska's milliseconds: 50 or 51 against 33 or 34)
    if not (1.4 <= min(longs) / max(shorts) and max(longs) / min(shorts) <= 1.6):
        return None
    rate = len(steps) / ((pts[len(steps)] - pts[0]) * time_base)
    return next((film for film in FILM_RATES if abs(rate / film - 1) < 0.01), None)


def check_not_soft_telecined(path: Path, info: VideoStreamInfo) -> None:
    """InputError for --deinterlace ivtc where `info` is soft-telecined: its frames are the film's already, and one
    in five of them would be dropped."""
    if info.soft_telecined:
        raise InputError(f"{path}: soft-telecined film: its frames are the film's already "
                         f"({float(info.average_rate):.3f} fps, shown 3:2 by repeat-field flags, 50 and 33 ms apart), "
                         "and --deinterlace ivtc would drop one in five of them; leave --deinterlace out")


def film_info(info: VideoStreamInfo) -> VideoStreamInfo:
    """The description of the frames that inverse telecine makes of a stream of `info`: 4/5 of its rate and frames."""
    return replace(
        info,
        average_rate=info.average_rate * FILM_SHARE if info.average_rate else None,
        base_rate=info.base_rate * FILM_SHARE if info.base_rate else None,
        frame_count=film_frame_count(info.frame_count) if info.frame_count is not None else None,
    )


def film_frame_count(frames: int) -> int:
    """How many frames inverse telecine keeps of `frames` consecutive ones: 4 of each whole cycle, all of a last one
    cut short."""
    return frames // CYCLE * (CYCLE - 1) + frames % CYCLE


def film_pts(source_pts: list[int]) -> list[int]:
    """The times of the frames kept of frames at `source_pts` (consecutive, sorted), in cycles from the first."""
    kept = []
    for start in range(0, len(source_pts), CYCLE):
        kept += cycle_times(source_pts[start:start + CYCLE])
    return kept


def cycle_times(cycle: list[int]) -> list[int]:
    """The times of the frames kept of one cycle of frames at `cycle` (its frames' pts): spread evenly over its span,
    from its first frame's time (see the module doc)."""
    kept = len(cycle) - 1 if len(cycle) == CYCLE else len(cycle)
    if len(cycle) < 2:
        return list(cycle)
    step = Fraction(cycle[-1] - cycle[0], len(cycle) - 1) * len(cycle) / kept
    # Halves rounded up, as FFmpeg rounds (decimate's times, which `vsr compare` pairs these with, are the same then).
    return [cycle[0] + math.floor(index * step + Fraction(1, 2)) for index in range(kept)]


def check_time_base(path: Path, info: VideoStreamInfo, option: str = "--deinterlace ivtc") -> None:
    """InputError where `info`'s time base is too coarse to time the frames `option` makes (COARSEST_TIME_BASE):
    film frames 5/4 of a frame apart, or fields half a frame apart."""
    if info.time_base > COARSEST_TIME_BASE:
        raise InputError(f"{path}: its frame times count in steps of {float(info.time_base) * 1000:.3g} ms, too "
                         f"coarse to time the frames {option} makes; remux it into .mkv first "
                         "(ffmpeg -i IN -c copy OUT.mkv)")


def field_order(stream: av.video.stream.VideoStream) -> str:
    """fieldmatch's and bwdif's name for the order of `stream`'s fields: "tff", "bff", or "auto" (each frame's flag)
    where the stream does not say. The stream's word is taken over the frames': H.264 interlaced by x264 flags its
    frames interlaced without saying top first, which the filters take for bottom first (every frame mismatched)."""
    # AVFieldOrder: 2 tt, 3 bb, 4 tb (top coded first, bottom shown first), 5 bt
    return {2: "tff", 5: "tff", 3: "bff", 4: "bff"}.get(stream.codec_context.field_order, "auto")


def stream_field_order(path: str | Path) -> str:
    """`field_order` of `path`'s video stream (for the ffmpeg command line's filters)."""
    from vsr.pipelines.probe import find_video_stream, open_input

    with open_input(path) as container:
        return field_order(find_video_stream(container, path))


class _Entry(NamedTuple):
    frame: av.VideoFrame
    pts: int
    block_change: float  # from the frame before, in its most changed square (`_change`)
    picture_change: float  # over the whole picture


class Decimation:
    """Drops one frame of each cycle of five, the repeat (see the module doc), and times the rest evenly.

    `push` frames (av.VideoFrames in presentation order, with pts), then `finish`; each returns the frames kept that
    are ready, their pts set to their new times. `lead_in` gives the frame before the first cycle (a window's), which
    is not kept: the first cycle's first frame is compared with it.
    """

    def __init__(self):
        self._previous: tuple[np.ndarray, int] | None = None  # `_luma` of the frame before the next one
        self._cycle: list[_Entry] = []

    def lead_in(self, frame: av.VideoFrame) -> None:
        self._previous = _luma(frame)

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        luma = _luma(frame)
        self._cycle.append(_Entry(frame, frame.pts, *_change(self._previous, luma)))
        self._previous = luma
        return self._decimated() if len(self._cycle) == CYCLE else []

    def finish(self) -> list[av.VideoFrame]:
        return self._decimated()

    def _decimated(self) -> list[av.VideoFrame]:
        cycle, self._cycle = self._cycle, []
        times = cycle_times([entry.pts for entry in cycle])  # (from all five: the dropped frame's time counts too)
        if len(cycle) == CYCLE:
            repeat = min(range(CYCLE), key=lambda index: cycle[index].block_change)
            cuts = [index for index, entry in enumerate(cycle) if entry.picture_change > SCENE_CHANGE]
            if cycle[repeat].block_change >= DUPLICATE and cuts:
                repeat = cuts[-1]  # no repeat in this cycle: the frame that starts a new scene goes, hidden by the cut
            del cycle[repeat]
        for entry, pts in zip(cycle, times):
            entry.frame.pts = pts
        return [entry.frame for entry in cycle]


def telecine_evidence(path: str | Path) -> tuple[int, int]:
    """How many of the frames judged (from the start and the middle of `path`'s video) repeat a field of the frame
    before, by FFmpeg's idet, and how many were judged: (0, 0) for a file that cannot be read (the decoder that
    follows says why). Remembered per file for the process (a decoder opens once a segment)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return _telecine_evidence(path.absolute(), stat.st_size, stat.st_mtime_ns)


def telecine_note(path: str | Path) -> str | None:
    """Where `path`'s video looks made from film by 3:2 pulldown (see the module doc), what says so, in words, e.g.
    "20 of 80 frames judged repeat a field of the frame before"; else None."""
    repeated, judged = telecine_evidence(path)
    if judged == 0 or repeated < TELECINED_SHARE * judged:
        return None
    return f"{repeated} of {judged} frames judged repeat a field of the frame before"


@functools.lru_cache(maxsize=64)
def _telecine_evidence(path: Path, size: int, mtime_ns: int) -> tuple[int, int]:
    from vsr.pipelines.probe import find_video_stream, open_input

    repeated = judged = 0
    try:
        with open_input(path) as container:
            stream = find_video_stream(container, path)
            stream.thread_type = "AUTO"
            for middle in (False, True):
                if middle:
                    if not container.duration:
                        break
                    # (in AV_TIME_BASE units, to the keyframe before; from the start's time: an MPEG-TS clock
                    # starts anywhere, and a target before it lands on the first frame)
                    container.seek((container.start_time or 0) + container.duration // 2)
                graph = av.filter.Graph()
                source = graph.add_buffer(template=stream)
                idet = graph.add("idet")
                sink = graph.add("buffersink")
                source.link_to(idet)
                idet.link_to(sink)
                graph.configure()
                for number, frame in enumerate(container.decode(stream)):
                    if number >= SAMPLE_FRAMES:
                        break
                    graph.push(frame)
                    for judged_frame in _pulled(graph):
                        judged += 1
                        repeated += judged_frame.metadata.get("lavfi.idet.repeated.current_frame") in ("top", "bottom")
    except (av.error.FFmpegError, InputError, ValueError) as error:
        log.debug("%s: telecine not judged (%s)", path, error)
    return repeated, judged


def _pulled(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    while True:
        try:
            yield graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return


def _luma(frame: av.VideoFrame) -> tuple[np.ndarray, int]:
    """The frame's luma (its first plane for YUV and gray formats, else swscale's gray) as an int32 copy, and its
    full scale (255 for 8 bits)."""
    if frame.format.name.startswith(("yuv", "nv", "gray")):
        plane, bits = frame.planes[0], frame.format.components[0].bits
        rows = np.frombuffer(plane, dtype=np.uint16 if bits > 8 else np.uint8).reshape(plane.height, -1)
        return rows[:, : plane.width].astype(np.int32), (1 << bits) - 1
    return frame.to_ndarray(format="gray").astype(np.int32), 255


def _change(before: tuple[np.ndarray, int] | None, after: tuple[np.ndarray, int]) -> tuple[float, float]:
    """How much a picture (`_luma`) changed from the one before: in its most changed 32×32 square, and over the whole
    picture, each as a share of the full scale (1.0: black to white everywhere). Infinite where there is no frame
    before: the first frame of a video is never the repeat."""
    if before is None:
        return float("inf"), float("inf")
    (luma, full_scale), (previous, _) = after, before
    difference = np.abs(luma - previous)
    height, width = difference.shape
    rows, columns = -(-height // BLOCK), -(-width // BLOCK)
    if (rows * BLOCK, columns * BLOCK) != (height, width):  # (blocks at the edges: the rest of them counts as 0)
        difference = np.pad(difference, ((0, rows * BLOCK - height), (0, columns * BLOCK - width)))
    blocks = difference.reshape(rows, BLOCK, columns, BLOCK).sum(axis=(1, 3))
    total = int(blocks.sum())
    if rows > 1:
        blocks = blocks[1:] + blocks[:-1]
    if columns > 1:
        blocks = blocks[:, 1:] + blocks[:, :-1]
    square = min(2, rows) * min(2, columns) * BLOCK * BLOCK
    return int(blocks.max()) / (square * full_scale), total / (height * width * full_scale)
