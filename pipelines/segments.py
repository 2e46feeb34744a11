"""One video in keyframe-aligned segments, on one device or several, resumable, joined losslessly.

    result = upscale_video_in_segments("movie.mp4", devices="0,1", options=UpscaleOptions(model="..."))

What `vsr upscale` and batch jobs do for a video longer than `--segment-seconds` (300 s by default), and `vsr upscale
--devices 0,1` for any video, in the way of ffmpeg's segment + concat workflow:

1. Plan (`plan_video`, `plan_segments`): the source's video packets are demuxed once (no decoding) for their pts and
   keyframe flags. The frames are cut into segments of at most about `segment_seconds`, and at least one per device,
   balanced by frame count, each cut at a keyframe, so that a segment can be decoded from its start without the
   frames before. Segments are [start_pts, end_pts) in the stream's time base and every frame belongs to exactly
   one. A video with one segment (short, or with one keyframe) is upscaled by `upscale_video` on the first device.
2. Upscaling: on one device, segment after segment in this process with one engine; on several, one worker process
   per device (spawn, as `vsr batch --devices` starts them), each with its own engine, taking segments from a shared
   queue. Each segment becomes a video-only .mp4 with the encoder settings of a whole run, its frames keeping their
   source pts (`VideoWriter` with `trim=False`), so that its packets already carry their final times.
3. Keeping (`pipelines.resume`): the segments live in a folder beside the output until the output is joined; each
   is recorded as done once its file is complete. A run that fails, is interrupted or killed leaves the folder, and
   the same command (same source, same settings) upscales only the segments still missing.
4. Join (`join_segments`): the segments' packets are copied in order into the output (no re-encoding), with the
   source's audio, subtitles, attachments, metadata and chapters muxed once alongside (`pipelines.passthrough`).
   The output is written under a temporary name and renamed; then the folder of segments is removed.

The output has the frames of a single-device run, at the same times; only the encoder's choices differ: each
segment starts with a keyframe of its own and rate control restarts there ("encoder boundaries"). With a lossless
codec the decoded frames are identical, where the devices compute alike (the same kind of device and precision).
Previews (--start/--end/--frames) are planned within their window and start at 0, as on one device. An image
sequence output on several devices has no segment files and no join: the workers write the frame files themselves
(`_upscale_into_sequence`).

Why .mp4 for the segments, and the two timestamp repairs of the join:
- MP4 stores every packet's pts and dts exactly in the stream's own time base (so does .mov, used for ProRes,
  which MP4 does not hold; VP9 with alpha needs Matroska, used where every frame time is a whole millisecond);
  Matroska rounds times to milliseconds and gives no dts for reordered frames, NUT shifts a stream that starts
  with a negative dts. MP4 has one flaw: a segment that does not start at time 0 starts with an edit list whose
  delay is counted in milliseconds, so the whole segment can come back moved by a fraction of a millisecond. The
  join puts each segment back where its worker said its first frame was (by less than a millisecond), then checks
  every frame's time against the pts the worker encoded; a mismatch fails the run instead of writing wrong times,
  and the next run upscales that segment again.
- Each segment's encoder starts its decoding times before its first frame (B-frames: by the reorder delay). With
  the same settings every segment has the same delay, so the times increase across boundaries; where a variable
  frame rate makes a segment's first dts reach back past the previous segment's last one, it is moved forward to
  just after it, as ffmpeg does for non-monotonic dts (decoding order is unchanged and dts stays at or below pts).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import math
import multiprocessing
import os
import queue
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from vsr.models import zoo
from vsr.pipelines.frames import VideoStreamInfo
from vsr.pipelines.progress import (frames_counted, log_to_driver, progress_bar, relay_logs, said_once_per_call,
                                    warnings_kept)
from vsr.pipelines.resume import PLAN_VERSION, SegmentFolder, remove_stale_folder, segment_file
from vsr.pipelines.runner import StageTimes
from vsr.pipelines.truncation import cut_short
from vsr.pipelines.upscale import (
    KEEP_FIELDS,
    UpscaleOptions,
    VideoOptions,
    VideoResult,
    as_path,
    auto_codec_named,
    check_animation_early,
    check_cancel,
    check_input,
    check_option_types,
    check_output,
    check_output_early,
    check_progress_and_cancel,
    default_output_path,
    encoder_choice,
    is_folder,
    load_model,
    make_engine,
    output_label,
    place_output,
    run_record,
    say_codec_chosen,
    skip_frames,
    upscale_frames,
    upscale_video,
    video_output_size,
    warn_window_past_end,
)

from vsr.errors import OptionError, OutputError, VsrError, out_of_space
from vsr.fsutil import AppearedMeanwhile, file_state, fsync_folder, lock_temporary, rename_into_place

log = logging.getLogger(__name__)

_POLL_SECONDS = 1.0  # how often the driver checks that its workers are alive
# Muxers that keep H.264/HEVC as MP4 does (length-prefixed units): segments' packets go in as they are.
_LENGTH_PREFIXED_MUXERS = {"mp4", "mov", "3gp", "3g2", "ipod", "ismv", "psp", "f4v", "flv", "matroska", "webm"}


@dataclass(frozen=True)
class Segment:
    """Frames with pts in [start_pts, end_pts) (None: from the stream's start / to its end)."""

    index: int
    start_pts: int | None
    end_pts: int | None
    frames: list[int]  # the planned frames' pts, from the demuxer


@dataclass(frozen=True)
class SegmentPlan:
    """The segments of one video, in order, and what is needed to decode each one."""

    info: VideoStreamInfo
    first_pts: int  # the stream's start time: decoders count `start`/`end` seconds from it
    segments: list[Segment]
    suffix: str = ".mp4"  # the container of the segment files (`segment_suffix`)
    # The joined output is timed by the rate its video stream declares (encode.STREAM_TIMED_SUFFIXES: .h264, .mpg,
    # ...), which the segment files are not: their writers are told so.
    stream_timed: bool = False
    # The output's container keeps no display matrix (encode.DISPLAY_MATRIX_SUFFIXES): a rotated video's segments are
    # written turned upright.
    turn_upright: bool = False
    # An image sequence output (`vsr upscale --devices` into frames/%06d.png): each segment's frames are written into
    # it as numbered files, no segment file, no join.
    sequence: Path | None = None
    # Source frames of a cycle that the decoder remakes together (inverse telecine: 5), which cuts must not split.
    cycle: int = 1

    @property
    def frame_count(self) -> int:
        """The frames planned, in every segment."""
        return sum(len(segment.frames) for segment in self.segments)

    def first_index(self, segment: Segment) -> int:
        """How many planned frames come before `segment`'s first."""
        return sum(len(earlier.frames) for earlier in self.segments[:segment.index])

    def seconds(self, pts: int | None) -> Fraction | None:
        """A pts as the decoders' exact `start`/`end` (seconds from the stream's first frame)."""
        if pts is None or pts <= self.first_pts:
            return None
        return (pts - self.first_pts) * self.info.time_base

    def describe(self, segment: Segment) -> str:
        """E.g. "segment 2 of 3 (frames at 1.200-2.400 s)", for messages."""
        times = [float((pts - self.first_pts) * self.info.time_base) for pts in (segment.frames[0], segment.frames[-1])]
        return f"segment {segment.index + 1} of {len(self.segments)} (frames at {times[0]:.3f}-{times[1]:.3f} s)"


def parse_devices(text: str) -> list[str]:
    """"0,1" → ["cuda:0", "cuda:1"], checked as `vsr batch --devices` checks them; "cpu,cpu" → two CPU workers."""
    from vsr.pipelines.batch import parse_devices as parse_cuda_devices

    parts = [part.strip() for part in text.split(",")]
    if all(part == "cpu" for part in parts):
        return parts
    if "cpu" in parts:
        raise OptionError(f"--devices {text}: give CUDA device numbers (0,1) or CPU workers (cpu,cpu), not both")
    return parse_cuda_devices(text)


# The fewest frames of a segment. An encoder holds frames back for B-frames (x264: 2 by default) in a segment as long
# as that, and gives a shorter one none: its decoding times then collide with the next segment's, which the join
# pushes on by a tick each (an MP4's video track two frames short; helper-43 found it with a preview cut mid-GOP).
MIN_SEGMENT_FRAMES = 4


def plan_segments(frame_pts: Sequence[int], keyframe_pts: Collection[int], count: int) -> list[tuple[int, int]]:
    """Cut frames (pts in presentation order) into at most `count` runs of consecutive frames, as [first, end)
    indexes into `frame_pts`. Every run but the first starts at a keyframe; each cut is the keyframe nearest to
    where an even split would cut, so runs are balanced to within a keyframe interval; none is shorter than
    MIN_SEGMENT_FRAMES where the frames allow."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    count = min(count, max(1, len(frame_pts) // MIN_SEGMENT_FRAMES))  # (--segment-seconds 1e-9 asked for billions)
    keyframes = set(keyframe_pts)
    cut_points = [index for index, pts in enumerate(frame_pts) if MIN_SEGMENT_FRAMES <= index
                  and len(frame_pts) - index >= MIN_SEGMENT_FRAMES and pts in keyframes]
    starts = [0]
    for part in range(1, count):
        target = part * len(frame_pts) / count
        later = [index for index in cut_points if index >= starts[-1] + MIN_SEGMENT_FRAMES]
        if not later:
            break
        nearest = min(later, key=lambda index: abs(index - target))
        if nearest >= target + len(frame_pts) / count:
            continue  # at or past where the next cut should be: that cut takes it
        starts.append(nearest)
    ends = starts[1:] + [len(frame_pts)]
    return list(zip(starts, ends))


def _frames_missed(decoded: Sequence[int], planned: Sequence[int]) -> str:
    """What a segment's decoded frames lack against its packets' times, in words."""
    if len(decoded) != len(planned):
        return f"upscaled {len(decoded)} frames where its packets promised {len(planned)}"
    known = set(planned)
    moved = sum(value not in known for value in decoded)
    return f"{moved} of its {len(decoded)} frames came at times none of its packets has"


def read_video_packets(source: Path, frame_rate: Fraction | None = None) -> tuple[VideoStreamInfo, int, list[int],
                                                                                  set[int]]:
    """The video stream's description and start time, its frames' pts (sorted) and its keyframes' pts, read by
    demuxing (no decoding). A read error ends the list early: the last segment still runs to the end of the stream.
    An image sequence (at `frame_rate`) is read from its file names: frames 0, 1, ..., each a keyframe, since
    demuxing would read every file whole."""
    from vsr.pipelines.probe import (TimelineWatch, demux_timed, describe_video, first_frame_pts, open_input,
                                     timed_in_decoding_order)
    from vsr.pipelines.sequences import existing_frames, is_sequence

    info, _ = describe_video(source, frame_rate)
    if is_sequence(source):
        frames = list(range(len(existing_frames(source))))  # (describe_video's open checked that they have no gap)
        return info, 0, frames, set(frames)
    with open_input(source, frame_rate) as container:
        stream = container.streams[info.index]
        first_pts = first_frame_pts(container, stream)
        frames, keyframes = [], set()
        timeline = TimelineWatch(source, stream)
        try:
            for packet in demux_timed(container, stream):  # (a GIF's as browsers time it)
                timeline.check(packet)
                # As the decoders count frames: no timestamp, empty (flush) or discarded packets make no frame.
                if packet.pts is None or not packet.size or packet.is_discard:
                    continue
                frames.append(packet.pts)
                if packet.is_keyframe:
                    keyframes.add(packet.pts)
        except av.FFmpegError as error:
            log.info("%s: reading the keyframes stopped early (%s)", source, error)
        if timed_in_decoding_order(container, stream) and frames:
            # AVI and ASF time packets in decoding order, so a cut's frames are not the packets' (B-frames around a
            # cut were lost): no keyframe to cut at, one segment.
            log.info("%s: B-frames timed in decoding order (%s): not cut into segments", source,
                     container.format.name)
            keyframes = {frames[0]}
    # Frames that share a time: the decoders keep the first (a frame cannot be shown twice at once), as the plan does.
    return info, first_pts, sorted(set(frames)), keyframes


def plan_video(source: Path, count: int, video: VideoOptions = VideoOptions(segment_seconds=None)) -> SegmentPlan:
    """Segments of `source`'s video within `video`'s --start/--end/--frames window if any: `count` of them (one per
    device), or more where `video.segment_seconds` asks for segments of at most about that long."""
    from vsr.pipelines.decode import Selection
    from vsr.pipelines.sequences import is_sequence

    info, first_pts, frame_pts, keyframes = read_video_packets(source, video.fps)
    if frame_pts and frame_pts[0] < 0:
        # An MPEG-TS whose clock wraps within a minute of its start begins before 0, and the MP4 muxer of the segment
        # files moves such frames (by 2 ms to 0.4 s, or all to 0): the join refused them, run after run. Not cut.
        keyframes = set()
    selection = Selection.from_seconds(info, first_pts, video.start, video.end, video.max_frames)
    first = bisect_left(frame_pts, selection.start_pts) if selection.start_pts is not None else 0
    if video.deinterlace in ("ivtc", "field") and not is_sequence(source):
        return _plan_retimed(source, info, first_pts, frame_pts[first:], keyframes, selection, count, video)
    end = bisect_left(frame_pts, selection.end_pts) if selection.end_pts is not None else len(frame_pts)
    if selection.max_frames is not None:
        end = min(end, first + selection.max_frames)
    window = frame_pts[first:end]
    # Where the window stops: before the next frame (a --frames cut), at --end, or at the end of the stream.
    window_end = frame_pts[end] if end < len(frame_pts) and selection.max_frames is not None else selection.end_pts
    count = _segment_count(window, info, count, video)
    segments = []
    runs = plan_segments(window, keyframes, count) if window else []
    for index, (start, stop) in enumerate(runs):
        segments.append(Segment(
            index=index,
            start_pts=window[start] if index > 0 or video.is_preview else None,
            end_pts=window[stop] if stop < len(window) else window_end,
            frames=window[start:stop],
        ))
    return SegmentPlan(info=info, first_pts=first_pts, segments=segments)


def _segment_count(window: list[int], info: VideoStreamInfo, count: int, video: VideoOptions) -> int:
    """`count` segments, or more where `video.segment_seconds` asks for shorter ones than `window`'s frames make."""
    if video.segment_seconds is not None and len(window) > 1:
        seconds = (window[-1] - window[0]) * info.time_base
        count = max(count, math.ceil(seconds / Fraction(video.segment_seconds)))
    return count


def _plan_retimed(source: Path, info: VideoStreamInfo, first_pts: int, rest: list[int], keyframes: set[int],
                  selection, count: int, video: VideoOptions) -> SegmentPlan:
    """`plan_video` where the decoder makes other frames than the source's, at other times: inverse telecine (4 film
    frames of each cycle of 5 source frames, its cycles counted from the window's first frame, `rest[0]`;
    pipelines/telecine.py) or double rate (2 of each frame, pipelines/fields.py). Segments are cut only where a cycle
    starts, so that each drops the frames one run drops; each segment's `frames` are the times of the frames it makes,
    and `end_pts` bounds those. A window (--end, --frames) counts the frames made."""
    from vsr.pipelines import fields, telecine

    telecine.check_time_base(source, info, f"--deinterlace {video.deinterlace}")
    if video.deinterlace == "ivtc":
        telecine.check_not_soft_telecined(source, info)
        cycle, made, timed, described = telecine.CYCLE, telecine.CYCLE - 1, telecine.film_pts, telecine.film_info
    else:
        cycle, made, timed, described = 1, fields.FIELDS, fields.field_pts, fields.field_info
    times = timed(rest)  # (from the window's start to the end of the stream: a few µs a frame)
    kept = [pts for pts in times if not selection.is_after(pts)][:selection.max_frames]
    # The source frames that make them: whole cycles (the frames a cycle makes come out together).
    window = rest[:math.ceil(len(kept) / made) * cycle]
    window_end = selection.end_pts
    if len(kept) < len(times) and not selection.is_after(times[len(kept)]):  # (a --frames cut: before the next)
        window_end = times[len(kept)]
    cycle_starts = {pts for index, pts in enumerate(window) if index % cycle == 0 and pts in keyframes}
    segments = []
    runs = plan_segments(window, cycle_starts, _segment_count(window, info, count, video)) if window else []
    for index, (start, stop) in enumerate(runs):
        segments.append(Segment(
            index=index,
            start_pts=window[start] if index > 0 or video.is_preview else None,
            end_pts=window[stop] if stop < len(window) else window_end,
            frames=kept[start // cycle * made:stop // cycle * made if stop < len(window) else len(kept)],
        ))
    return SegmentPlan(info=described(info), first_pts=first_pts, segments=segments, cycle=cycle)


# How far MP4's edit list, counted in milliseconds, can move a segment that does not start at 0 (see the module doc).
_EDIT_LIST_ROUNDING = Fraction(1, 1000)


class DamagedSegment(OutputError):
    """A kept segment's file that cannot be read back (damaged since it was written): `path`."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@dataclass
class SegmentResult:
    """What a worker made of one segment."""

    index: int
    path: Path
    pts: list[int]  # the frames encoded, in the source's time base
    width: int
    height: int
    times: StageTimes
    worker: str = ""  # host:pid of the process that upscaled it
    precision: str = ""  # what the model ran in: "bf16", ...
    warnings: list[str] = dataclasses.field(default_factory=list)  # a Ray task's, for its driver to say


@dataclass
class _Failure:
    """A worker's error, sent to the driver: VsrErrors keep their type (and so the command's exit code)."""

    error_type: str  # a class name of vsr.errors, or "" for any other error
    message: str  # one line
    # It failed for want of room on the disk (`out_of_space`): `vsr upscale` of several inputs then begins none whose
    # output goes to that file system, as with one device. The cause of the worker's error stays in the worker.
    no_space: bool = False


def _failure(error: BaseException, context: str | None) -> _Failure:
    from vsr.pipelines.batch_workers import one_line

    text = one_line(error)
    text = f"{context}: {text}" if context else text
    return _Failure(type(error).__name__ if isinstance(error, VsrError) else "", text, out_of_space(error))


def _raise(failure: _Failure) -> None:
    from vsr import errors

    error_type = getattr(errors, failure.error_type, VsrError) if failure.error_type else VsrError
    if failure.no_space:  # (raised from a full disk's OSError, as the error in the worker was)
        raise error_type(failure.message) from OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    raise error_type(failure.message)


def upscale_segment(engine, source: Path, plan: SegmentPlan, segment: Segment, folder: Path, video: VideoOptions,
                    on_frames: Callable[[int], None] | None = None) -> SegmentResult:
    """One segment of `plan` upscaled by `engine` into its file in `folder` (what every worker does)."""
    from vsr.pipelines.crop import cropped, resolve_crop
    from vsr.pipelines.decode import deinterlace_warnings, open_decoder, said_elsewhere
    from vsr.pipelines.dedup import Repeats, distinct_pictures
    from vsr.pipelines.encode import VideoWriter
    from vsr.pipelines.frames import FrameBatch
    from vsr.pipelines.runner import run_pipeline
    from vsr.pipelines.sequences import ImageSequenceWriter

    # The driver said these once for the whole video (`upscale_video_in_segments`), not once per worker process.
    said_elsewhere(source, deinterlace_warnings(video.decoder, video.deinterlace, plan.info.interlaced, KEEP_FIELDS,
                                                  path=source))
    path = plan.sequence or segment_file(folder, segment.index, plan.suffix)
    # The writer is made before the decoder opens the source: the writer reads the source too (its frame rate, its
    # last frame, its tags), each read an open of its own, and FFmpeg holds three copies of a file's attachments (an
    # anime's fonts: tens of MB) per open, so the decoder's open held meanwhile doubled them (a worker's peak with
    # 100 MB of fonts: 0.93 GB, one open after another 0.64 GB). `plan.info` is what the decoder says of the stream:
    # the same `describe_video`, retimed as the decoder retimes it (`_plan_retimed`).
    crop = resolve_crop(video.crop, source, plan.info)  # the driver's: found once for the whole video
    height, width, output_info = video_output_size(engine, crop.of(plan.info) if crop else plan.info, source,
                                                    Path(path), video)
    if plan.sequence is not None:  # resumes from the segment's frames already written
        writer = ImageSequenceWriter(plan.sequence, source=source, source_info=output_info, width=width,
                                     height=height, first_pts=segment.frames[0], first_index=plan.first_index(segment))
    else:
        # (how long its frames show is the join's to say: `_frame_durations`, over every segment's frames)
        writer = VideoWriter(path, source=source, source_info=output_info, width=width, height=height,
                             codec=video.codec, crf=video.crf, preset=video.preset, options=video.encoder_options,
                             pix_fmt=video.pix_fmt, copy_streams=False, trim=False, stream_timed=plan.stream_timed,
                             turn_upright=plan.turn_upright, overwrite=True,  # over what a cut run left
                             device=engine.device, keep_source_times=True)  # (the join moves them)
    encoded: list[int] = []

    def upscale_batch(batch: FrameBatch) -> FrameBatch:
        frames = upscale_frames(engine, batch.frames, writer.alpha, (height, width))
        return dataclasses.replace(batch, frames=frames)

    def write(batch: FrameBatch) -> None:
        writer.write(batch)
        encoded.extend(batch.pts)

    with writer:
        decoder = open_decoder(source, backend=video.decoder, device=engine.device,
                               start=plan.seconds(segment.start_pts), end=plan.seconds(segment.end_pts),
                               deinterlace=video.deinterlace, frame_rate=video.fps, keep_fields_with=KEEP_FIELDS)
        with decoder:
            resumed = getattr(writer, "resumed", 0)
            repeats = Repeats()  # (each segment starts with a picture of its own, so resumed runs match)
            batches = skip_frames(distinct_pictures(cropped(decoder.batches(engine.batch_size), crop),
                                                     engine.batch_size, video.dedup), resumed, repeats)
            times = run_pipeline(batches, upscale_batch, write, on_frames=on_frames, device=engine.device,
                                 finish=writer.flush)
            times.extra["repeated_frames"] = repeats.frames
            times.extra["resumed_frames"] = resumed
    missing = len(set(segment.frames[resumed:]).difference(encoded))
    if missing:  # damage (the decoder named the frames), or a decoder that lost its place: said either way
        log.warning("%s: %s: %d of its %d frames did not come out of the decoder", source, plan.describe(segment),
                    missing, len(segment.frames))
    return SegmentResult(segment.index, path, encoded, writer.width, writer.height, times,
                         f"{socket.gethostname()}:{os.getpid()}", engine.precision)


def worker_main(worker: int, device: str, threads: int, log_level: int, parent: int, source: Path,
                plan: SegmentPlan, options: UpscaleOptions, video: VideoOptions, folder: Path,
                tasks: multiprocessing.Queue, results: multiprocessing.Queue, logs: multiprocessing.Queue) -> None:
    """One worker process: build the engine on `device`, then upscale the segments it takes until None; what it
    logs goes to the driver's `logs`."""
    from vsr.pipelines.batch_workers import become_worker, show_from

    become_worker(parent)
    log_to_driver(logs, log_level)
    show_from(log_level)  # (-q: its warnings made all the same, for a batch's journal)
    import torch

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)  # so that whatever uses the current device uses this worker's
    try:
        engine = make_engine(dataclasses.replace(options, device=device), progress=False)
    except Exception as error:  # reported, not raised: the driver stops every worker
        results.put(("failed", worker, _failure(error, None)))
        return
    while (index := tasks.get()) is not None:
        segment = plan.segments[index]
        try:
            result = upscale_segment(engine, source, plan, segment, folder, video,
                                      on_frames=lambda count: results.put(("frames", worker, count)))
        except Exception as error:
            results.put(("failed", worker, _failure(error, f"{plan.describe(segment)} on {device}")))
            return
        results.put(("done", worker, result))


class _Workers:
    """The worker processes of one run, fed from one queue of segment indexes."""

    def __init__(self, devices: list[str]):
        self.devices = devices
        self.context = multiprocessing.get_context("spawn")  # no forked CUDA or thread state
        self.tasks = self.context.Queue()
        self.results_queue = self.context.Queue()
        self.logs = self.context.Queue()  # what the workers log, for the driver to write above its bar
        self.processes: list[multiprocessing.Process] = []

    def start(self, todo: list[Segment], source: Path, plan: SegmentPlan, options: UpscaleOptions,
              video: VideoOptions, folder: Path):
        from vsr.pipelines.batch_workers import start_without_ctrl_c

        for segment in todo:
            self.tasks.put(segment.index)
        for _ in self.devices:
            self.tasks.put(None)
        # Each worker gets its share of the cores, as `vsr batch` workers do.
        threads = max(1, (os.cpu_count() or 1) // len(self.devices))
        log_level = logging.getLogger("vsr").getEffectiveLevel()
        for worker, device in enumerate(self.devices):
            process = self.context.Process(
                target=worker_main, name=f"vsr-segment-worker-{worker}", daemon=True,
                args=(worker, device, threads, log_level, os.getpid(), source, plan, options, video, folder,
                      self.tasks, self.results_queue, self.logs),
            )
            start_without_ctrl_c(process, keep=functools.partial(self.processes.append, process))

    def results(self, count: int, on_frames) -> Iterator[SegmentResult]:
        """Each of `count` segments as a worker finishes it; the first failure (or a worker that died) is raised."""
        finished = 0
        while finished < count:
            try:
                kind, worker, payload = self.results_queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                for worker, process in enumerate(self.processes):
                    if process.exitcode not in (None, 0):
                        raise VsrError(f"the worker on {self.devices[worker]} died (exit code {process.exitcode})")
                continue
            if kind == "frames":
                on_frames(payload)
            elif kind == "failed":
                _raise(payload)
            else:
                finished += 1
                yield payload

    def stop(self, finished: bool) -> None:
        """Let finished workers exit (they have taken their None); stop the others at once."""
        for process in self.processes:
            if not finished and process.is_alive():
                process.kill()
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


def upscale_video_in_segments(
    source: str | Path,
    output: str | Path | None = None,
    *,
    devices: str | Sequence[str] | None = None,
    options: UpscaleOptions = UpscaleOptions(),
    video: VideoOptions = VideoOptions(),
    overwrite: bool = False,
    progress: bool = False,
    on_segment: Callable[[SegmentResult], None] | None = None,
    engine=None,
    remote=None,
    on_progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> VideoResult:
    """`upscale_video` over keyframe-aligned segments, resumably, on one device or several; see the module doc.

    The video is cut into one segment per device, or more where it is longer than `video.segment_seconds` (None: one
    per device). Each finished segment is kept in a folder beside the output (pipelines/resume.py) until the output is
    joined: the same call after a crash or Ctrl-C upscales only the segments still missing. `devices` is "0,1" (CUDA
    devices, as for `vsr batch --devices`), "cpu,cpu", a list of torch device names, or None: `options.device`, in
    this process. With several devices each runs in a worker process of its own, so a script that calls this must
    guard its own work with `if __name__ == "__main__":` (as for any `multiprocessing` spawn). `on_segment` is called
    with each segment this call upscaled, once it is kept. `on_progress(frames done, frames in all)` and `cancel` as
    for `upscale_video`, over the whole video; an exception that `on_progress` raises, or a cancel, stops the run
    after the batch written (looked at as each is), and the segments done are kept for the same call to resume from.
    A video with one segment is upscaled by `upscale_video`.
    `engine`: with one device, an engine to use rather than a new one (batch workers keep theirs between jobs).
    `remote`: something that upscales segments elsewhere (`ray_backend.RaySegments`: a Ray task each); `devices` is
    then ignored, and even a video of one segment goes to it (this process only plans, keeps and joins).
    The result's `warnings` are those this call gave, its workers' too (each also logged on the "vsr" logger).
    `on_frames`: called with each count of frames upscaled (not those of the segments kept), as the progress bar is:
    a batch's bar counts its jobs' frames so.
    """
    check_progress_and_cancel(on_progress, cancel)
    check_cancel(cancel, source)

    def told_or_cancelled(done: int, total: int | None) -> None:
        # (told in this process of each batch written, by whichever process or Ray task made it)
        if on_progress is not None:
            on_progress(done, total)
        check_cancel(cancel, source)

    with said_once_per_call(), warnings_kept() as kept:
        result = _upscale_video_in_segments(source, output, devices=devices, options=options, video=video,
                                            overwrite=overwrite, progress=progress, on_segment=on_segment,
                                            engine=engine, remote=remote,
                                            on_progress=told_or_cancelled if cancel is not None else on_progress,
                                            on_frames=on_frames)
    result.warnings = list(kept.messages)
    return result


def _upscale_video_in_segments(source, output, *, devices, options: UpscaleOptions, video: VideoOptions,
                               overwrite: bool, progress: bool, on_segment: Callable[[SegmentResult], None] | None,
                               engine, remote, on_progress: Callable[[int, int | None], None] | None,
                               on_frames: Callable[[int], None] | None) -> VideoResult:
    from vsr.pipelines.animation import is_animation
    from vsr.pipelines.crop import resolve_crop
    from vsr.pipelines.decode import deinterlace_warnings, warn_once
    from vsr.pipelines.encode import (CODECS, DISPLAY_MATRIX_SUFFIXES, STREAM_TIMED_SUFFIXES, check_container_holds,
                                      codec_keeps_alpha, frame_time_options, has_alpha, warn_if_pixel_aspect_lost)
    from vsr.pipelines.sequences import check_sequence_options, is_sequence

    check_option_types(options, video, overwrite=overwrite)
    source = as_path(source)
    if output is not None:
        as_path(output, "output")  # (checked only: a final "/" in the text names a folder)
    check_input(source)
    video.validate()
    if devices is not None and (not isinstance(devices, (str, list, tuple))
                                or not all(isinstance(device, str) for device in devices)):
        raise OptionError(f"devices is text such as \"0,1\" or a list of device names, not {devices!r}")
    record = run_record(source, options, video, frames=True) if output is not None and is_sequence(output) else None
    check_sequence_options(source, output, video, overwrite, record)  # (a sequence output resumes by its record)
    if devices is None:
        device_list = [options.device]
    else:
        device_list = parse_devices(devices) if isinstance(devices, str) else list(devices)
    if not device_list:
        raise OptionError("--devices needs at least one device, e.g. 0,1")
    # An image sequence as the output (a sequence's default output, beside it or in a folder given, is one too).
    if is_sequence(source if output is None or is_folder(output) else output):
        # One file per frame: nothing to join; a run cut short resumes from its frames.
        if remote is not None:
            raise OptionError("an image sequence is written by this machine's devices, not by Ray tasks")
        if len(device_list) > 1:
            return _upscale_into_sequence(source, output, device_list, options, video, overwrite, progress,
                                          on_progress)
        return upscale_video(source, output, options=dataclasses.replace(options, device=device_list[0]),
                             video=video, overwrite=overwrite, progress=progress, engine=engine,
                             on_progress=on_progress, on_frames=on_frames)
    check_animation_early(output, video.codec)
    if engine is None:
        check_output_early(source, output, options, video.codec, overwrite)
    # With one device the engine is made here, once; with several (or remotely), each worker makes its own.
    if remote is not None or len(device_list) > 1:
        engine = None
    elif engine is None:
        engine = make_engine(dataclasses.replace(options, device=device_list[0]), progress=progress)
    plan = plan_video(source, len(device_list), video)
    warn_window_past_end(source, video, plan.info, plan.frame_count)
    crop = resolve_crop(video.crop, source, plan.info)  # found here once, not by each segment's worker
    video = dataclasses.replace(video, crop=str(crop) if crop is not None else None)
    if output is None or is_folder(output):
        label = engine.label if engine is not None else _output_label(options, progress)
        output = place_output(output, default_output_path(source, label, video.codec, plan.info.alpha))
    output = Path(output)
    check_output(output, source, overwrite)
    if is_animation(output):  # (a GIF's palette is made from every frame: segments would each have their own)
        if len(plan.segments) > 1 or len(device_list) > 1 or remote is not None:
            log.warning("%s: an animation (%s) is upscaled in one run on %s, not in resumable segments", source,
                        output.suffix, device_list[0] if remote is None else "this machine")
        result = upscale_video(source, output, options=dataclasses.replace(options, device=device_list[0]),
                               video=video, overwrite=overwrite, progress=progress, engine=engine, plan=plan,
                               on_progress=on_progress, on_frames=on_frames)
        remove_stale_folder(output)
        return result
    codec, pix_fmt = encoder_choice(video, output.suffix, plan.info)
    check_container_holds(output, codec)
    if options.width is None and options.height is None:  # (else the pixels are made square)
        warn_if_pixel_aspect_lost(output, codec, plan.info, source)  # (said here: the workers write .mp4 segments)
    keeps_alpha = (plan.info.alpha and codec in CODECS and codec_keeps_alpha(codec, output.suffix)
                   and (video.pix_fmt is None or has_alpha(video.pix_fmt)))
    plan = dataclasses.replace(plan, suffix=segment_suffix(codec, keeps_alpha),
                               stream_timed=output.suffix.lower() in STREAM_TIMED_SUFFIXES,
                               turn_upright=output.suffix.lower() not in DISPLAY_MATRIX_SUFFIXES)
    # Matroska counts time in milliseconds: segments of other times could not be joined at their frames' times.
    one_run = plan.suffix == ".mkv" and not _whole_milliseconds(plan)
    if one_run and (len(plan.segments) > 1 or remote is not None):
        on = f" on {device_list[0]}" if len(device_list) > 1 else ""
        log.warning("%s: a VP9 video with alpha whose frame times are not whole milliseconds is upscaled in one "
                    "run%s, not in resumable segments (ProRes or FFV1 can be)", source, on)
    if one_run or not plan.segments or (len(plan.segments) < 2 and remote is None):  # (none: said by upscale_video)
        if (len(device_list) > 1 or remote is not None) and not one_run and len(plan.segments) < 2:
            if plan.segments or not video.is_preview:  # (an empty window is upscale_video's error)
                log.warning("%s: %s, so one segment: upscaling it on %s alone", source, _why_uncut(plan),
                            "this machine" if remote is not None else device_list[0])
        single = dataclasses.replace(options, device=device_list[0])
        result = upscale_video(source, output, options=single, video=video, overwrite=overwrite, progress=progress,
                               engine=engine, plan=plan, on_progress=on_progress, on_frames=on_frames)
        remove_stale_folder(output)  # (once the output is whole: until then, a rerun as before could resume)
        return result

    # The workers write segment files: they encode with the codec and options that the output itself needs (every
    # segment with the same codec, decided here for the whole video).
    say_codec_chosen(source, output.suffix, video, plan.info, codec, pix_fmt)
    codec_errors = auto_codec_named(video, codec)  # (the settings given, refused by the HEVC that "auto" picked)
    video = dataclasses.replace(video, codec=codec, pix_fmt=pix_fmt,
                                encoder_options={**frame_time_options(output), **video.encoder_options})
    # Said here, for the whole video; each worker process would say it again (see upscale_segment).
    warn_once(source, deinterlace_warnings(video.decoder, video.deinterlace, plan.info.interlaced, KEEP_FIELDS,
                                           path=source))
    if (cut := cut_short(source)) is not None:  # (said here: each segment's decoder reads a window, not the end)
        warn_once(source, [f"cut short: {cut}"])
    started = time.perf_counter()
    resolved = _resolved_settings(source, options, video, engine, None if remote is not None else device_list,
                                  progress)
    with codec_errors, SegmentFolder(output, _plan_record(source, options, video, plan, keeps_alpha, resolved),
                                            plan.suffix, overwrite=overwrite) as folder:
        done: dict[int, object] = dict(folder.done())
        todo = [segment for segment in plan.segments if segment.index not in done]
        kept_frames = sum(len(segment.frames) for segment in plan.segments if segment.index in done)
        if done:  # said as a warning, so that the command line shows it: the output is partly an earlier run's
            log.warning("%s: resuming: %d of %d segments were upscaled by an earlier run", output, len(done),
                        len(plan.segments))
        made: list[SegmentResult] = []
        before = file_state(output)  # (a file --overwrite replaces, or none)
        try:
            # The whole video's frames, those of the segments kept counted as done before (as a sequence's are)
            with progress_bar(plan.frame_count, initial=kept_frames, shown=progress) as bar:
                for result in _upscale_segments(todo, engine, remote, device_list, source, plan, options, video,
                                                folder.path, frames_counted(bar, on_progress, on_frames)):
                    folder.record(result)
                    made.append(result)
                    if on_segment is not None:
                        on_segment(result)
            for result in made:
                segment = plan.segments[result.index]
                if result.pts != segment.frames:
                    log.warning("%s: %s: %s (see the decoder's warnings)", source, plan.describe(segment),
                                _frames_missed(result.pts, segment.frames))
            done.update((result.index, result) for result in made)
            parts = [done[segment.index] for segment in plan.segments]
            end_pts = plan.segments[-1].end_pts  # (a preview's: the first frame after it)
            if not overwrite and os.path.lexists(output):  # (checked before the work: put there since; the segments
                raise AppearedMeanwhile(output)             # are kept, not taken for the output's own)
            join_segments(output, source=source, info=plan.info, parts=[(part.path, part.pts) for part in parts],
                          copy_streams=video.copy_streams, trim=video.is_preview, overwrite=overwrite,
                          trim_end=None if end_pts is None else end_pts * plan.info.time_base,
                          turn_upright=plan.turn_upright)
        except BaseException as error:
            if isinstance(error, DamagedSegment):  # (done again by the next run, not read back by it for ever)
                folder.forget(error.path)
            kept = len(folder.done())
            if file_state(output) not in (None, before) and not isinstance(error, AppearedMeanwhile):
                folder.remove()  # stopped once the output was in place (syncing its folder): it is whole
            elif kept:
                log.warning("%s: %d of %d segments are kept in %s; the same command resumes from there", output,
                            kept, len(plan.segments), folder.path)
            else:
                folder.remove()
            raise
        folder.remove()
    times = StageTimes(
        decode=sum(r.times.decode for r in made), model=sum(r.times.model for r in made),
        encode=sum(r.times.encode for r in made), wall=time.perf_counter() - started,
        frames=sum(len(r.pts) for r in made),
        extra={"segments": len(plan.segments), "resumed": len(plan.segments) - len(made), "devices": device_list,
               "repeated_frames": sum(result.times.extra.get("repeated_frames", 0) for result in made)},
    )
    return VideoResult(output=output, frames=sum(len(part.pts) for part in parts), width=parts[0].width,
                       height=parts[0].height, times=times,
                       precision=", ".join(sorted({result.precision for result in made if result.precision})),
                       rotation=0 if plan.turn_upright else plan.info.rotation)


def _why_uncut(plan: SegmentPlan) -> str:
    """Why a plan has one segment (or none), in words."""
    if not plan.segments:
        return "its packets carry no times (a raw stream) to cut it at"
    if plan.segments[0].frames[0] < 0:
        return "its frames start before 0 (its MPEG-TS clock wraps), which segment files do not keep"
    if len(plan.segments[0].frames) < 2 * MIN_SEGMENT_FRAMES:
        return f"{len(plan.segments[0].frames)} frames are too few to cut (segments take {MIN_SEGMENT_FRAMES} or more)"
    if plan.cycle > 1:
        return f"no keyframe that starts a cycle of {plan.cycle} frames (--deinterlace ivtc cuts only there)"
    return "no keyframe to cut the video at"


def _upscale_into_sequence(source: Path, output: Path | None, devices: list[str], options: UpscaleOptions,
                           video: VideoOptions, overwrite: bool, progress: bool,
                           on_progress: Callable[[int, int | None], None] | None = None) -> VideoResult:
    """An image sequence made by a worker per device, each writing whole segments' frames into it, numbered as one
    run numbers them: no segment files and no join. Resumed as one run is, from the frames written (each segment
    from its first missing one), with the run file that `ImageSequenceWriter` keeps."""
    from vsr.pipelines.crop import resolve_crop
    from vsr.pipelines.sequences import (existing_frames, first_frame, frame_number, is_sequence, run_file,
                                         start_sequence, stopped_sequence)

    plan = plan_video(source, len(devices), video)
    warn_window_past_end(source, video, plan.info, plan.frame_count)
    if len(plan.segments) < 2:
        if plan.segments:  # (none: a preview window past the end, which upscale_video says)
            log.warning("%s: %s, so one segment: upscaling it on %s alone", source, _why_uncut(plan), devices[0])
        return upscale_video(source, output, options=dataclasses.replace(options, device=devices[0]), video=video,
                             overwrite=overwrite, progress=progress, plan=plan, on_progress=on_progress)
    record = run_record(source, options, video, frames=True)  # (as one run records it, so that either resumes)
    crop = resolve_crop(video.crop, source, plan.info)  # found here once, not by each segment's worker
    info = crop.of(plan.info) if crop is not None else plan.info
    output = Path(place_output(output, default_output_path(source, _output_label(options, progress), None,
                                                           info.alpha)))
    sized = options.width is not None or options.height is not None  # (then the frames' pixels are square)
    lock = start_sequence(output, source=source, source_info=dataclasses.replace(info, sample_aspect_ratio=None)
                          if sized else info, overwrite=overwrite, copy_streams=video.copy_streams, record=record)
    plan = dataclasses.replace(plan, sequence=output)
    video = dataclasses.replace(video, crop=str(crop) if crop is not None else None)
    first_number = first_frame(source) if is_sequence(source) else None

    def numbers(segment: Segment) -> list[int]:  # the segment's frame files, as ImageSequenceWriter numbers them
        first_index = plan.first_index(segment)
        return [frame_number(first_number, first_index + index, pts) for index, pts in enumerate(segment.frames)]

    kept = set(existing_frames(output))  # (an earlier run's of the same record: start_sequence refused others)
    todo = [segment for segment in plan.segments if not kept.issuperset(numbers(segment))]
    kept_count = sum(len(kept.intersection(numbers(segment))) for segment in plan.segments)
    total = sum(len(segment.frames) for segment in plan.segments)
    if kept_count:
        log.warning("%s: resuming: %d of %d frames were written by an earlier run", output, kept_count, total)
    started = time.perf_counter()
    made: list[SegmentResult] = []
    try:
        with progress_bar(total, initial=kept_count, shown=progress) as bar:
            made.extend(_upscale_segments(todo, None, None, devices, source, plan, options, video, output.parent,
                                          frames_counted(bar, on_progress)))
    except BaseException:
        stopped_sequence(output, len(existing_frames(output)), resumable=True)
        lock.release()
        raise
    for result in made:
        segment = plan.segments[result.index]
        written = result.times.extra["resumed_frames"] + len(result.pts)
        if written != len(segment.frames):
            log.warning("%s: %s: upscaled %d frames where its packets promised %d (see the decoder's warnings)",
                        source, plan.describe(segment), written, len(segment.frames))
    run_file(output).unlink(missing_ok=True)
    lock.release()
    frames = sum(len(result.pts) for result in made)
    if made:
        width, height = made[0].width, made[0].height
    else:  # every frame was written by an earlier run, which stopped before it could say so
        with av.open(str(min(existing_frames(output).items())[1])) as first:
            width, height = first.streams.video[0].width, first.streams.video[0].height
    log.info("wrote %s: %d frames, %dx%d", output, frames, width, height)
    times = StageTimes(
        decode=sum(r.times.decode for r in made), model=sum(r.times.model for r in made),
        encode=sum(r.times.encode for r in made), wall=time.perf_counter() - started, frames=frames,
        extra={"segments": len(plan.segments), "devices": devices, "resumed_frames": kept_count,
               "repeated_frames": sum(result.times.extra.get("repeated_frames", 0) for result in made)},
    )
    return VideoResult(output=output, frames=frames, width=width, height=height, times=times,
                       precision=", ".join(sorted({result.precision for result in made if result.precision})))


def _upscale_segments(todo: list[Segment], engine, remote, devices: list[str], source: Path, plan: SegmentPlan,
                      options: UpscaleOptions, video: VideoOptions, folder: Path, on_frames) -> Iterator[SegmentResult]:
    """The segments of `todo` upscaled, each as it is finished: by `remote`, here by `engine`, or by a worker
    process per device."""
    if not todo:
        return
    if remote is not None:
        yield from remote.upscale(todo, source, plan, options, video, folder, on_frames)
        return
    if engine is not None:
        for segment in todo:
            yield upscale_segment(engine, source, plan, segment, folder, video, on_frames)
        return
    workers = _Workers(devices[: len(todo)])
    finished = False
    with relay_logs(workers.logs):
        try:
            workers.start(todo, source, plan, options, video, folder)
            yield from workers.results(len(todo), on_frames)
            finished = True
        finally:
            workers.stop(finished)


def segment_suffix(codec: str, alpha: bool) -> str:
    """The container of the segment files for `codec` (a CODECS key or an encoder), with the video's alpha kept or
    not: .mp4 (see the module doc), but ProRes is no MP4 codec: .mov, MP4's QuickTime parent, which keeps times the
    same way; VP9's alpha lives in Matroska blocks beside its packets: .mkv."""
    from vsr.pipelines.encode import CODECS

    encoder = CODECS[codec].encoder if codec in CODECS else codec
    if encoder == "prores_ks":
        return ".mov"
    return ".mkv" if alpha and encoder == "libvpx-vp9" else ".mp4"


def _whole_milliseconds(plan: SegmentPlan) -> bool:
    """Whether every planned frame starts on a whole millisecond, as Matroska stores times."""
    return all((pts * plan.info.time_base * 1000).denominator == 1
               for segment in plan.segments for pts in segment.frames)


def _resolved_settings(source: Path, options: UpscaleOptions, video: VideoOptions, engine,
                       devices: list[str] | None, progress: bool = False) -> dict:
    """What the settings that this machine resolves come to for the segments (see `resume.PLAN_VERSION`): the
    decoder and precision that "auto" chooses on `devices` (None: Ray tasks elsewhere, unknown here; several devices
    that choose otherwise, both), and the --outscale in effect (None: the model's own scale, as `Engine` takes it).
    `engine`: this run's, on one device; else the model is loaded here for its description (downloaded once, as
    `_output_label` says)."""
    from vsr.pipelines.decode import chosen_backend
    from vsr.pipelines.engine import engine_precision, resolve_device

    spec = engine.spec if engine is not None else load_model(options.model, progress=progress).spec
    resolved = {"outscale": None if options.outscale in (None, spec.scale) else float(options.outscale)}
    if devices is not None:
        places = [engine.device] if engine is not None else [resolve_device(device) for device in devices]
        decoders = {chosen_backend(source, video.decoder, place, video.deinterlace) for place in places}
        precisions = {engine.precision} if engine is not None else {
            engine_precision(options.precision, place, spec, options.strength) for place in places}
        resolved |= {"decoder": ", ".join(sorted(decoders)), "precision": ", ".join(sorted(precisions))}
    return resolved


def _plan_record(source: Path, options: UpscaleOptions, video: VideoOptions, plan: SegmentPlan,
                 alpha: bool = False, resolved: dict | None = None) -> dict:
    """What a folder of segments is for: the run's source and settings as given (`run_record`), the cuts, and what
    the segments are encoded with as vsr resolves the settings now (`encode.effective_settings`; `video.codec`
    resolved already, `alpha`: whether they keep the video's alpha) with the zoo's weights of the models named by
    name, and what the settings this machine resolves come to (`resolved`: `_resolved_settings`, left out where
    None): see `resume.PLAN_VERSION`."""
    from vsr.pipelines.encode import effective_settings

    encoding = effective_settings(video.codec, video.crf, video.preset, video.encoder_options, video.pix_fmt,
                                  plan.info.bit_depth, alpha, source)
    weights = {name: zoo.MODELS[name].sha256 for name in (options.model, options.blend) if name in zoo.MODELS}
    record = {**run_record(source, options, video), "version": PLAN_VERSION, "encoding": encoding, "weights": weights,
              "segments": [[segment.start_pts, segment.end_pts, len(segment.frames)] for segment in plan.segments]}
    if resolved is not None:
        record["resolved"] = resolved
    return record


def _output_label(options: UpscaleOptions, progress: bool) -> str:
    """The tag that names the default output. The models are loaded here, in the driver, once: a bad model
    fails before any worker starts, and zoo weights are downloaded once (the workers find them cached)."""
    model = load_model(options.model, progress=progress)
    if options.blend is not None:
        load_model(options.blend, progress=progress)
    return output_label(options, model.spec.scale)


def join_segments(output: Path, *, source: Path, info: VideoStreamInfo, parts: Sequence[tuple[Path, Sequence[int]]],
                  copy_streams: bool = True, trim: bool = False, overwrite: bool = False,
                  trim_end: Fraction | None = None, turn_upright: bool | None = None) -> None:
    """Copy the video packets of `parts` (segment file, pts of its frames in `info.time_base`), in order, into
    `output`, with `source`'s other streams; see the module doc. `trim`: a preview, starting at 0 like
    `VideoWriter(trim=True)` makes it (`trim_end`, `turn_upright`: as VideoWriter's; the segments were written so).
    Atomic: written as `partial_path(output)`, renamed at the end."""
    from vsr.pipelines.encode import DISPLAY_MATRIX_SUFFIXES, partial_path
    from vsr.pipelines.probe import video_end

    if turn_upright is None:
        turn_upright = output.suffix.lower() not in DISPLAY_MATRIX_SUFFIXES
    if turn_upright:  # (the frames are: the output says no rotation)
        info = dataclasses.replace(info, rotation=0)

    check_output(output, source, overwrite)
    temp = partial_path(output)
    try:
        lock = lock_temporary(temp, output)  # (as VideoWriter's: a run of one device may be writing `output`)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {output}: {error.strerror or error}") from error
    joiner = None
    try:
        # How long each frame shows, as VideoWriter gives it: a segment file's packets (MP4) say steps in decoding
        # order, which B-frames give to other frames.
        frames = sorted(value for _, pts in parts for value in pts)
        durations = _frame_durations(frames, info, video_end(source, info.index), trim_end)
        joiner = _Joiner(temp, source, info, copy_streams, trim, trim_end, durations)
        for number, (path, pts) in enumerate(parts, 1):
            joiner.append(path, pts, f"segment {number} of {len(parts)}")
        joiner.finish()
        with open(temp, "rb+") as file:
            os.fsync(file.fileno())
        rename_into_place(temp, output, overwrite)
    except BaseException as error:
        if joiner is not None:
            joiner.close()
        temp.unlink(missing_ok=True)
        if isinstance(error, FileExistsError):
            raise AppearedMeanwhile(output) from None
        if isinstance(error, OSError) and not isinstance(error, VsrError):  # disk full, folder gone, ...
            raise OutputError(f"cannot write {output}: {error.strerror or error}") from error
        raise
    finally:
        lock.close()
    fsync_folder(output.parent)
    if joiner.moved_dts:
        log.info("%s: %d decoding time(s) moved forward to keep them increasing across segments", output,
                 joiner.moved_dts)


def _frame_durations(frames: Sequence[int], info: VideoStreamInfo, video_end: Fraction | None,
                     trim_end: Fraction | None) -> dict[int, Fraction]:
    """How long each frame (by its pts, in `info.time_base`) shows, as VideoWriter times it: until the next; the last
    as `encode.last_frame_seconds` says (one frame: at the average rate, else the step before it)."""
    from vsr.pipelines.encode import last_frame_seconds

    durations = {value: Fraction(following - value) for value, following in zip(frames, frames[1:])}
    if frames:
        if info.average_rate:
            one_frame = 1 / info.average_rate
        else:
            one_frame = (frames[-1] - frames[-2]) * info.time_base if len(frames) > 1 else Fraction(0)
        seconds = last_frame_seconds(frames[-1] * info.time_base, one_frame, video_end, trim_end)
        durations[frames[-1]] = seconds / info.time_base
    return durations


class _Joiner:
    """The output container while segments are appended to it."""

    def __init__(self, temp: Path, source: Path, info: VideoStreamInfo, copy_streams: bool, trim: bool,
                 trim_end: Fraction | None, durations: dict[int, Fraction]):
        self._temp, self._source, self._info, self._copy_streams, self._trim = temp, source, info, copy_streams, trim
        self._trim_end = trim_end
        self._durations = durations  # source pts → how long the frame shows, in the source's time base
        self._container: av.container.OutputContainer | None = None
        self._passthrough = None
        self._stream = None
        self._to_annex_b: av.BitStreamFilterContext | None = None
        self._extradata: bytes | None = None
        self._time_base: Fraction | None = None  # the segments' video time base
        self._output_time_base: Fraction | None = None  # the output's: the source's, or 1/rate (frame-counted)
        self._frame_counted = False  # whether the output keeps frames by count (AVI), set by _open
        self._origin: Fraction | None = None  # the source time that becomes the output's 0 (start_of_output)
        self._shift = 0  # the origin in the segments' time base
        self._last_place: int | None = None  # frame-counted: the last packet's place
        self._last_dts: int | None = None
        self._last_pts: int | None = None  # source time base
        self.moved_dts = 0

    def _open(self, template: av.video.stream.VideoStream) -> None:
        """The output's video stream is a copy of the first segment's; the passthrough streams come after it."""
        from vsr.pipelines.encode import FRAME_COUNTED_SUFFIXES, STREAM_TIMED_SUFFIXES, declared_rate, movie_timescale
        from vsr.pipelines.passthrough import MOV_MUXERS, Passthrough
        from vsr.pipelines.probe import is_variable_rate

        self._container = av.open(str(self._temp), "w")
        stream = self._container.add_stream_from_template(template, opaque=True)
        if self._container.format.name in MOV_MUXERS:  # (as the segment's own: its FourCC is the QuickTime family's)
            # Without it the QuickTime muxer tags ProRes 4444 by its codec alone, as 422 HQ ("apch").
            stream.codec_context.codec_tag = template.codec_context.codec_tag
        # The time base and declared rate a single-device run gives the stream (`_temp` has the output's suffix).
        variable = self._temp.suffix.lower() not in STREAM_TIMED_SUFFIXES and is_variable_rate(self._source,
                                                                                                self._info.index)
        rate = declared_rate(self._info, bool(variable))
        self._frame_counted = self._temp.suffix.lower() in FRAME_COUNTED_SUFFIXES
        self._output_time_base = 1 / rate if self._frame_counted else self._info.time_base
        stream.time_base = self._output_time_base
        stream.codec_context.framerate = rate
        if self._container.format.name in MOV_MUXERS:  # (where each stream starts, as precise as a single run's)
            self._container.options["movie_timescale"] = str(movie_timescale(self._output_time_base))
        if self._info.rotation:
            stream.set_display_rotation(self._info.rotation)
        self._passthrough = Passthrough(self._source, self._container, video_index=self._info.index,
                                        copy_streams=self._copy_streams, trim=self._trim, trim_end=self._trim_end)
        self._passthrough.copy_video_tags(stream)
        if {key.lower(): value for key, value in template.metadata.items()}.get("alpha_mode") == "1":
            stream.metadata["alpha_mode"] = "1"  # VP9's alpha, beside the packets: Matroska says so per track
        codec = template.codec_context.name
        if codec in ("h264", "hevc") and self._container.format.name not in _LENGTH_PREFIXED_MUXERS:
            # The MP4 muxer stored the encoder's H.264/HEVC as length-prefixed units, the parameter sets in its
            # header; other containers (AVI, ASF, MPEG program streams) carry what the encoder wrote: start codes,
            # parameter sets in the stream. (MPEG-TS's muxer would convert by itself; converted data passes it.)
            self._to_annex_b = av.BitStreamFilterContext(f"{codec}_mp4toannexb", template, stream)
        self._container.start_encoding()
        self._stream = stream

    def append(self, path: Path, pts: Sequence[int], name: str) -> None:
        from vsr.pipelines.encode import start_of_output

        if not pts:
            return  # nothing decoded in this segment (damage): nothing to copy
        try:
            segment = av.open(str(path))
        except av.FFmpegError as error:
            raise DamagedSegment(f"cannot read back {name} ({path.name}): {error}", path) from error
        with segment:
            template = segment.streams.video[0]
            extradata = bytes(template.codec_context.extradata or b"")
            if self._container is None:
                self._open(template)
                self._extradata, self._time_base = extradata, template.time_base
            elif extradata != self._extradata or template.time_base != self._time_base:
                raise OutputError(f"cannot join {name} to the others: it was encoded with other codec headers or "
                                  f"another time base; upscale on one device")
            expected = [value * self._info.time_base / self._time_base for value in pts]
            if any(value.denominator != 1 for value in expected):
                raise OutputError(f"cannot join {name}: its time base {self._time_base} cannot hold the source's "
                                  f"{self._info.time_base}; upscale on one device")
            expected = [int(value) for value in expected]
            if self._origin is None:  # the first frame
                self._origin = start_of_output(pts[0] * self._info.time_base, self._passthrough, trim=self._trim,
                                               frame_counted=self._frame_counted)
                self._shift = round(self._origin / self._time_base)
            try:
                packets = [packet for packet in segment.demux(template) if packet.size]
            except av.FFmpegError as error:
                raise DamagedSegment(f"cannot read back {name} ({path.name}): {error}", path) from error
            # Put the segment back where its first frame was encoded (see the module doc: by less than the edit
            # list's millisecond; more is another file, as a segment copied over this one), then check every frame.
            offset = expected[0] - min((packet.pts for packet in packets), default=0)
            if abs(offset * self._time_base) > _EDIT_LIST_ROUNDING or sorted(
                    packet.pts + offset for packet in packets) != expected:
                raise DamagedSegment(f"cannot join {name} ({path.name}): its frame times are not the ones it was "
                                     f"encoded with (if this comes back, upscale on one device)", path)
            for packet in packets:
                self._write(packet, offset)
        self._last_pts = pts[-1]

    def _write(self, packet: av.Packet, offset: int) -> None:
        from vsr.pipelines.encode import frame_place, mux_empty_chunk

        packet.pts += offset
        packet.dts = packet.pts if packet.dts is None else packet.dts + offset
        shown = self._durations.get(packet.pts * self._time_base / self._info.time_base)
        if shown is not None:
            packet.duration = max(round(shown * self._info.time_base / self._time_base), 1)
        if self._last_dts is not None and packet.dts <= self._last_dts:
            if self._last_dts + 1 > packet.pts:
                raise OutputError(f"cannot join the segments: the decoding times overlap at "
                                  f"{float(packet.pts * self._time_base):.3f} s; upscale on one device")
            packet.dts = self._last_dts + 1
            self.moved_dts += 1
        self._last_dts = packet.dts
        # Passthrough packets up to this one's decoding time first, so that the file is interleaved as it grows.
        self._passthrough.mux_until(float(packet.dts * self._time_base))
        if self._frame_counted:  # placed as the one-run writer places frames, by decoding time (no B-frames here)
            reorder = round((packet.pts - packet.dts) * self._time_base / self._output_time_base)
            first = self._last_place is None
            self._last_place = frame_place(packet.dts * self._time_base - self._origin, self._output_time_base,
                                           self._last_place)
            if first and self._last_place > 0:  # the video starts after the other streams
                mux_empty_chunk(self._container, self._stream)
            # (the duration too: the AVI muxer indexes empty chunks up to where the last packet ends)
            duration = round((packet.duration or 0) * self._time_base / self._output_time_base)
            times = (self._last_place + reorder, self._last_place, duration, self._output_time_base)
        else:
            times = (packet.pts - self._shift, packet.dts - self._shift, packet.duration, self._time_base)
        packet.stream = self._stream
        for converted in self._to_annex_b.filter(packet) if self._to_annex_b is not None else [packet]:
            converted.stream = self._stream
            converted.pts, converted.dts, converted.duration, converted.time_base = times  # (the filter's are its own)
            self._container.mux(converted)

    def finish(self) -> None:
        if self._container is None:
            raise OutputError(f"{self._source}: no frame could be upscaled, so there is nothing to write")
        if not self._trim:
            self._passthrough.mux_rest()
        else:  # a preview: the other streams' packets that overlap its frames, as VideoWriter(trim=True) keeps
            self._passthrough.end_at((self._last_pts + self._durations[self._last_pts]) * self._info.time_base)
        self._container.close()
        self._passthrough.close()
        self._container = None

    def close(self) -> None:
        for closable in (self._container, self._passthrough):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # already failing: the first error is the one to report
                    log.debug("error while closing %s", self._temp, exc_info=True)
