"""`vsr compare`: a clip that shows the source scaled the plain way beside the upscaled video, frame for frame.

    vsr upscale movie.mp4                       # → movie.x4.mp4
    vsr compare movie.mp4 movie.x4.mp4          # → movie.x4.compare.mp4: left half bicubic, right half upscaled

The clip is made by the ffmpeg command (through ffmpeg-python), the right tool for a filter graph like this one and
for nothing essential: `vsr upscale` never needs it. The plain scaling (bicubic, lanczos or nearest) works on the
source's frames as vsr decodes them for `vsr upscale` (RGB by the source's own matrix; an interlaced source
deinterlaced with bwdif, as by default; turned upright, as ffmpeg turns the upscaled video), so it shows the same
colors as the upscaled video; a source whose upscale has 4/5 of its frame rate (`vsr upscale
--deinterlace ivtc`, inverse telecine) gets FFmpeg's fieldmatch, bwdif and decimate (which may drop another frame
than vsr's where the cadence breaks), and one whose upscale has twice its rate (`--deinterlace field`) bwdif's frame
for each field (from its YUV planes, as ffmpeg reads it), the two halves then paired by number. Both halves are
converted to the upscaled video's matrix, in limited range, and the clip is tagged with its colors (an untagged
video's taken as players take it, by its size), so that it shows as the two videos do.

Frames are paired by time, as vsr times both videos (a GIF's as browsers show it, `probe.demux_timed`; ffmpeg's
command line, FFmpeg 5.1 here, timed GIFs otherwise): vsr decodes the source as `vsr upscale` does and sends ffmpeg,
beside each upscaled frame in the window, the source frame shown at its time (timed from the source's first frame
at `offset` or after: 0 for a whole run, the `--start` of a preview), to within the rounding of the upscaled
video's container (Matroska keeps milliseconds: a 29.97 fps MP4's 33.367 ms comes back as 33). The clip keeps the
upscaled video's frame times, in its ticks. Both videos are decoded from their start up to the window (exact, unlike
a seek; seconds for a clip, minutes for a film).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vsr.errors import OptionError, OutputError, VsrError
from vsr.fsutil import check_output, fsync_folder

log = logging.getLogger(__name__)

MODES = ("split", "side-by-side")
# What ffmpeg says of a disk or folder that refuses its output.
_DISK_REASONS = ("No space left on device", "File too large", "Read-only file system", "Permission denied")
BASELINES = {"bicubic": "bicubic", "lanczos": "lanczos", "nearest": "neighbor"}  # our name → swscale's flag
# A stream's matrix (FFmpeg's name, as probed) → the scale filter's name for it.
_SCALE_MATRICES = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470", "fcc": "fcc",
                   "smpte240m": "smpte240m", "bt2020nc": "bt2020"}
# Seconds past any video's end (31,700 years). ffmpeg's filters hold times as 64-bit microseconds, which end at
# 9.2e12 s: a later --end was its error ("Numerical result out of range"), and is the same as no --end.
_NEVER = 1e12


@dataclass(frozen=True)
class CompareOptions:
    mode: str = "split"  # split: left half plain, right half upscaled, one frame wide; side-by-side: both whole
    baseline: str = "bicubic"
    offset: float = 0.0  # where the upscaled video begins in the source, seconds
    start: float | None = None  # the window to show, in the upscaled video's seconds
    end: float | None = None
    label: str | None = None  # the upscaled side's label; None: its file name; "" for no labels
    crf: int = 16  # libx264: hardly distinguishable from the frames compared
    crop: str | None = None  # the source's part that was upscaled: `vsr upscale --crop`'s value (pipelines.crop)

    def validate(self) -> None:
        for option, value in (("--offset", self.offset), ("--start", self.start), ("--end", self.end)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise OptionError(f"{option} must be a number of seconds, not {value!r}")
        if not all(math.isfinite(value) for value in (self.offset, self.start or 0, self.end or 0)):
            raise OptionError("--offset, --start and --end are seconds: finite numbers")
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise OptionError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not isinstance(self.baseline, str) or self.baseline not in BASELINES:
            raise OptionError(f"--baseline must be one of {', '.join(BASELINES)}, not {self.baseline!r}")
        if self.offset < 0 or (self.start is not None and self.start < 0):
            raise OptionError("--offset and --start are 0 or more seconds")
        if self.end is not None and self.end <= (self.start or 0):
            raise OptionError(f"--end ({self.end}) must be after --start ({self.start or 0})")
        if isinstance(self.crf, bool) or not isinstance(self.crf, numbers.Integral) or not 0 <= self.crf <= 51:
            raise OptionError(f"--crf must be a whole number from 0 to 51 (libx264's), not {self.crf!r}")
        if self.label is not None and not isinstance(self.label, str):
            raise OptionError(f"--label must be text, not {self.label!r}")
        from vsr.pipelines.crop import parse_crop

        parse_crop(self.crop)


def default_compare_path(upscaled: Path) -> Path:
    """movie.x4.mkv → movie.x4.compare.mp4, beside it."""
    return upscaled.with_name(f"{upscaled.stem}.compare.mp4")


def compare_videos(source: str | Path, upscaled: str | Path, output: str | Path | None = None, *,
                   options: CompareOptions = CompareOptions(), overwrite: bool = False) -> Path:
    """Write the comparison clip of `source` and `upscaled` (see the module doc); returns its path."""
    from vsr.pipelines.crop import resolve_crop
    from vsr.pipelines.encode import container_holds, partial_path
    from vsr.pipelines.probe import probe
    from vsr.pipelines.sequences import is_sequence
    from vsr.pipelines.upscale import as_path, check_input, is_image

    if not isinstance(options, CompareOptions):
        raise OptionError(f"options must be a CompareOptions, not {type(options).__name__}")
    options.validate()
    source, upscaled = as_path(source), as_path(upscaled, "upscaled")
    if output is not None:
        as_path(output, "output")  # (checked only: a final "/" in the text names a folder)
        if not str(output).strip():  # (an unset variable in a script: Path("") is ".")
            raise OptionError("-o is empty: name the clip (.mp4, .mkv or .mov), or a folder to write it in (or "
                              "leave -o out to write it beside UPSCALED)")
    for path in (source, upscaled):
        check_input(path)
        if is_image(path):
            raise OptionError(f"{path}: vsr compare shows videos; for an image, view the two files side by side")
        if is_sequence(path):
            raise OptionError(f"{path}: vsr compare takes video files; make one of the sequence first, e.g. "
                              f"ffmpeg -framerate 25 -start_number FIRST -i '{path}' -c:v ffv1 sequence.mkv")
    if source.resolve() == upscaled.resolve():
        raise OptionError(f"{source}: given as both SOURCE and UPSCALED; vsr compare SOURCE UPSCALED shows a video "
                          "beside its upscale")
    if output is None:
        output = default_compare_path(upscaled)
    elif Path(output).is_dir() or str(output).endswith(("/", os.sep)):  # a folder: the clip's usual name in it
        output = Path(output) / default_compare_path(upscaled).name
    else:
        output = Path(output)
    if not container_holds(output.suffix, "libx264"):
        raise OptionError(f"{output}: the clip is H.264 video; name it .mp4, .mkv or .mov")
    if output.resolve() == source.resolve():
        raise OutputError(f"{output}: the output would replace the source; choose another name with -o")
    check_output(output, upscaled, overwrite)
    ffmpeg = _ffmpeg_python()
    source_video, upscaled_info = probe(source).video, probe(upscaled)
    has_audio = any(stream.type == "audio" for stream in upscaled_info.streams)
    crop = resolve_crop(options.crop, source, source_video)
    if crop is not None and source_video.rotation:
        raise OptionError(f"{source}: vsr compare cannot crop a rotated video yet; compare the whole frames")
    _check_pairing(source, crop.of(source_video) if crop else source_video, upscaled, upscaled_info.video, options)

    label = upscaled.stem if options.label is None else options.label
    temporary = partial_path(output)
    try:
        try:
            _run(ffmpeg, source, upscaled, temporary, options, source_video, upscaled_info.video, has_audio, label,
                 crop)
        except VsrError as error:
            if not label or "font" not in str(error).lower():
                raise
            log.warning("ffmpeg has no font to write the labels with; the clip has none")
            _run(ffmpeg, source, upscaled, temporary, options, source_video, upscaled_info.video, has_audio, "",
                 crop)
        try:
            probe(temporary)
        except VsrError:  # where a duration was unknown, the window can still miss every frame
            paired = f" or of {source} at --offset {options.offset:g}" if options.offset else ""
            raise OptionError(f"no video frame of {upscaled}{paired} in the window asked for") from None
        temporary.replace(output)
    except BaseException:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:  # (a read-only folder, where it was never made: the first error is the one to say)
            pass
        raise
    fsync_folder(output.parent)
    return output


def _check_pairing(source: Path, source_video, upscaled: Path, upscaled_video, options: CompareOptions) -> None:
    """One line where the window holds no frame; a warning where UPSCALED does not look made from SOURCE (frames
    would be paired with the wrong ones, or the clip cut short)."""
    start = options.start or 0
    for path, video, begin in ((upscaled, upscaled_video, start), (source, source_video, options.offset + start)):
        duration = _duration(path, video) if begin else None
        if begin >= _NEVER or (duration and begin >= duration):  # (a duration can be unknown)
            lasts = f"; it lasts {duration:.3f} s" if duration else ""
            raise OptionError(f"{path}: no video frame from {begin:g} s{lasts}")
    source_size, upscaled_size = _shown_size(source_video), _shown_size(upscaled_video)
    if source_size[0] * source_size[1] > upscaled_size[0] * upscaled_size[1]:
        log.warning("%s is smaller than %s: is it the upscaled one? (vsr compare SOURCE UPSCALED)", upscaled, source)
    elif abs(_display_aspect(source_video) / _display_aspect(upscaled_video) - 1) > 0.02:
        log.warning("%s (%d×%d) and %s (%d×%d) have different shapes: was one made from the other? (--crop gives "
                    "the part of the source that `vsr upscale --crop` kept)", source, *source_size, upscaled,
                    *upscaled_size)
    if source_video.duration and upscaled_video.duration:
        remaining = source_video.duration - options.offset
        if options.end is None and upscaled_video.duration > remaining + 0.5:
            log.warning("%s lasts %.3f s, %s %.3f s from --offset %g: frames are paired by time; is the offset "
                        "right?", upscaled, upscaled_video.duration, source, remaining, options.offset)
        elif options.end is None and options.offset == 0 and upscaled_video.duration < remaining - 0.5:
            # (With an offset, a shorter UPSCALED is a preview given its --start: its --end made it short.)
            log.warning("%s lasts %.3f s, %s %.3f s: frames are paired by time, so a preview needs --offset (its "
                        "--start)", upscaled, upscaled_video.duration, source, remaining)


def _duration(path: Path, video) -> float | None:
    """How long `video` (a stream of `path`) lasts, in seconds: as probed, or for a raw stream (whose packets have no
    times, and whose duration is not known) its frames at its rate. (The upscaled frames are shown over the source's
    where it has none in the window: an empty window of the source has to be known before.)"""
    from vsr.pipelines.probe import shown_packets

    if video.duration or not video.average_rate:
        return video.duration
    return float(shown_packets(path, video.index) / video.average_rate)


def _run(ffmpeg, source: Path, upscaled: Path, temporary: Path, options: CompareOptions, source_video,
         upscaled_video, has_audio: bool, label: str, crop=None) -> None:
    width, height = _shown_size(upscaled_video)
    remade = _remade_frames(source_video, upscaled_video)
    if remade:
        plain = _remade_source(ffmpeg, source, source_video, upscaled_video, options, remade)
    else:  # vsr's frames of the source, each at the time of the upscaled frame it is shown beside (_paired_frames)
        upscaled_pts = _presentation_pts(upscaled, upscaled_video)
        first = _first_paired(upscaled_pts, upscaled_video.time_base, options)
        # ffmpeg times an input from its first frame (the first sent is the upscaled frame `first`'s), and reads the
        # times in ticks of its own (NUT's 1/64000 s): each frame is put half the shortest step before the upscaled
        # frame's time, so that a tick's rounding cannot put it after it, where the frame before it would be taken.
        steps = [later - earlier for earlier, later in zip(upscaled_pts[first:], upscaled_pts[first + 1:])]
        first_time = (upscaled_pts[first] - upscaled_pts[0]) * upscaled_video.time_base
        earlier = min(steps, default=1) * upscaled_video.time_base / 2
        plain = ffmpeg.input("pipe:", format="nut")["0"].filter("settb", "AVTB").filter(
            "setpts", f"PTS-STARTPTS+{float(first_time - earlier)!r}/TB")
    if crop is not None:  # (exact: the planes of a 4:2:0 frame are cropped at odd offsets too)
        plain = plain.filter("crop", crop.width, crop.height, crop.x, crop.y, exact=1)
    if not remade:  # (vsr decodes frames as stored; ffmpeg turns the upscaled video upright)
        plain = _upright(plain, source_video.rotation)
    # Scaled to the upscaled frames' size, the pixels take their aspect too: else the clip would declare the source's
    # shape stretched over the new size, and players would distort both halves. (Turned upright, a pixel's width and
    # height trade places.)
    pixel_aspect = Fraction(upscaled_video.sample_aspect_ratio or 1)
    colors = _colors(upscaled_video)
    plain = plain.filter("scale", width, height, flags=BASELINES[options.baseline],
                         **_conversion(source_video if remade else None, colors[0])).filter(
        "setsar", str(1 / pixel_aspect if upscaled_video.rotation in (90, 270) else pixel_aspect))
    plain = plain.filter("tpad", stop=-1, stop_mode="clone")  # (see below)
    upscaled_input = ffmpeg.input(str(upscaled))
    sharp = _window(_from_offset(upscaled_input[str(upscaled_video.index)], 0.0), options)
    if remade:
        sharp = sharp.filter("settb", str(1 / upscaled_video.average_rate)).filter("setpts", "N")
    sharp = sharp.filter("scale", "iw", "ih", **_conversion(upscaled_video, colors[0]))
    # The upscaled frames make the clip, one frame each at its time; the overlay puts beside each the latest source
    # frame at that time or before it (FFmpeg's framesync): the one vsr sent with that time. (hstack showed a frame
    # at every time of either side: where the times were rounded, to Matroska's milliseconds say, each frame twice.)
    # The clip ends with the upscaled video's last frame: the source's last one is held for ever (tpad) where it ends
    # sooner, since framesync ends at the time of the first side's last frame.
    if options.mode == "split":
        left = width // 4 * 2  # even, for 4:2:0
        joined = ffmpeg.overlay(sharp, plain.crop(0, 0, left, height), x=0, y=0, eval="init", shortest=1)
        joined = joined.drawbox(left - 1, 0, 2, height, color="white@0.7", thickness="fill")
        label_x = (8, f"{left}+8")
    else:
        canvas = sharp.filter("pad", 2 * width, height, width, 0)  # the upscaled frame on the right
        joined = ffmpeg.overlay(canvas, plain, x=0, y=0, eval="init", shortest=1)
        label_x = (8, f"{width}+8")
    joined = joined.filter("setpts", "PTS-STARTPTS")  # (the window's first frame at 0)
    if label:
        for x, text in zip(label_x, (options.baseline, label)):
            joined = joined.drawtext(text=_safe_label(text), x=x, y=8, fontsize=max(12, height // 24),
                                     fontcolor="white", box=1, boxcolor="black@0.5", boxborderw=4)
    joined = joined.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2").filter("format", "yuv420p")
    streams = [joined]
    if has_audio:  # the upscaled video's first audio track, cut to the same window of the video's times
        streams.append(_audio_window(upscaled_input["a:0"], _first_frame_time(upscaled, upscaled_video), options))
    # Timed in the upscaled video's ticks: by default ffmpeg times the clip in ticks of the frame rate it guesses,
    # which put a variable-rate video's frames 20 ms apart on ticks of 1/39 s, two of them on one where they were
    # closer than a tick.
    command = ffmpeg.output(*streams, str(temporary), vcodec="libx264", crf=options.crf, preset="medium",
                            acodec="aac", audio_bitrate="192k", fps_mode="passthrough", movflags="+faststart",
                            colorspace=colors[0], color_primaries=colors[1], color_trc=colors[2], color_range="tv",
                            **{"enc_time_base:v": str(upscaled_video.time_base)})
    arguments = command.compile(cmd=_ffmpeg_command(), overwrite_output=True)
    process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL if remade else subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    said: list[bytes] = []  # (read as ffmpeg writes it: a full pipe would stop it while vsr sends it frames)
    reader = threading.Thread(target=lambda: said.append(process.stderr.read()), daemon=True)
    reader.start()
    try:
        if not remade:
            paired = _paired_frames(source, source_video, upscaled_pts[first:], upscaled_pts[0], upscaled_video,
                                    options)
            sent = _send_frames(process.stdin, paired, upscaled_video.time_base)
        process.wait()
        reader.join()
    except BaseException:  # SIGTERM (Ctrl-C reaches ffmpeg too): ffmpeg went on, and could make the file after
        process.kill()     # its removal
        process.wait()
        raise
    if process.returncode:
        lines = [line for line in b"".join(said).decode(errors="replace").splitlines() if line.strip()]
        disk = next((reason for line in lines for reason in _DISK_REASONS if reason in line), None)
        if process.returncode == -signal.SIGXFSZ:  # (a file-size limit: ffmpeg, unlike Python, dies of it unsaid)
            disk = "File too large"
        if disk is not None:  # ("Conversion failed!" comes last, and says nothing of why)
            raise OutputError(f"{temporary.parent}: cannot write the comparison there ({disk})") from None
        raise VsrError(f"ffmpeg could not make the comparison: {lines[-1] if lines else 'no message'}") from None
    if not remade and not sent:  # (ffmpeg stopped reading, yet says nothing wrong)
        raise VsrError("ffmpeg could not make the comparison: it stopped reading the source's frames")


def _remade_source(ffmpeg, source: Path, source_video, upscaled_video, options: CompareOptions, remade: str):
    """The source's frames as ffmpeg reads them, remade as `--deinterlace REMADE` made the upscaled video's, then
    paired by number: the same times on both sides, but rounded to other ticks (bwdif's are half the source's)."""
    plain = ffmpeg.input(str(source))[str(source_video.index)]  # the stream vsr upscales, not a cover picture
    if remade == "ivtc":
        from vsr.pipelines.telecine import stream_field_order

        order = stream_field_order(source)
        plain = plain.filter("fieldmatch", order=order).filter(
            "bwdif", mode="send_frame", parity=order, deint="interlaced").filter("decimate")
    else:
        plain = plain.filter("bwdif", mode="send_field", deint="all")
    plain = _window(_from_offset(plain, options.offset), options)
    return plain.filter("settb", str(1 / upscaled_video.average_rate)).filter("setpts", "N")


def _first_paired(upscaled_pts: list[int], time_base: Fraction, options: CompareOptions) -> int:
    """The index of the first upscaled frame to pair: the last at --start or before it (ffmpeg's trim, which keeps
    the frames from --start, counts in other units than vsr)."""
    start = Fraction(options.start or 0)
    return max((index for index, pts in enumerate(upscaled_pts) if (pts - upscaled_pts[0]) * time_base <= start),
               default=0)


def _paired_frames(source: Path, source_video, upscaled_pts: list[int], upscaled_start: int, upscaled_video,
                   options: CompareOptions):
    """(RGB frame, pts) for each upscaled frame of `upscaled_pts` up to --end: the source frame shown at that
    frame's time, as vsr times both videos (a GIF's as browsers show it, `probe.demux_timed`) and decodes the
    source for `vsr upscale` (an interlaced one deinterlaced as by default), and the upscaled frame's pts from
    `upscaled_start` (its first frame's). The source is timed from its first frame at --offset or after (where a
    preview starts, as `vsr upscale --start` picks it). Its last frame is held past its end."""
    import torch

    from vsr.pipelines.decode import PyAVDecoder

    end = Fraction(options.end) if options.end is not None and options.end < _NEVER else None
    slack = _pairing_slack(upscaled_video)
    with PyAVDecoder(source, device=torch.device("cpu"), start=options.offset or None,
                     deinterlace="interlaced" if source_video.interlaced else None) as decoder:
        source_frames = iter(decoder)
        shown = next(source_frames, None)
        if shown is None:
            raise OptionError(f"{source}: no video frame from {options.offset:g} s")
        source_start, upcoming = shown[1], next(source_frames, None)
        for pts in upscaled_pts:
            time = (pts - upscaled_start) * upscaled_video.time_base
            if end is not None and time > end:
                break
            while upcoming is not None and (upcoming[1] - source_start) * decoder.info.time_base <= time + slack:
                shown, upcoming = upcoming, next(source_frames, None)
            yield shown[0], pts - upscaled_start


def _presentation_pts(path: Path, video) -> list[int]:
    """The pts of each frame of `video` (a stream of `path`) as vsr reads them, in presentation order; a raw
    stream's (its packets have no times) at its rate."""
    from vsr.pipelines.decode._pyav import presentation_pts
    from vsr.pipelines.probe import open_input, shown_packets

    with open_input(path) as container:
        stream = container.streams[video.index]
        pts = presentation_pts(container, stream)
        if pts is None:
            step = max(round(1 / ((video.average_rate or 25) * video.time_base)), 1)
            pts = [index * step for index in range(shown_packets(str(path), video.index))]
    return pts


def _send_frames(pipe, frames, time_base: Fraction) -> int:
    """Write `frames` ((RGB frame, pts in `time_base`)) to `pipe` as NUT raw video; the frames written. Stops where
    the reader stopped reading (ffmpeg failed: its own message says why)."""
    import av

    sent = 0
    try:
        # Written by FFmpeg's pipe protocol, not through a Python file: PyAV drops an exception raised in its
        # writing callback, and SIGTERM's (vsr.errors.Terminated) was lost there.
        with av.open(f"pipe:{pipe.fileno()}", "w", format="nut") as container:
            stream = None
            for picture, pts in frames:
                picture = picture.permute(1, 2, 0).numpy()  # (channels last, as the decoder stores them)
                channels = picture.shape[2]
                if picture.dtype != np.uint8:  # float32 in [0, 1]: a deeper source, kept 16 bits deep
                    picture = (picture * 65535).round().astype(np.uint16)
                    pixel_format = "rgba64le" if channels == 4 else "rgb48le"
                else:
                    pixel_format = "rgba" if channels == 4 else "rgb24"
                if stream is None:
                    stream = container.add_stream("rawvideo")
                    stream.width, stream.height, stream.pix_fmt = picture.shape[1], picture.shape[0], pixel_format
                    stream.time_base = stream.codec_context.time_base = time_base
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format=pixel_format)
                frame.pts, frame.time_base = pts, time_base
                for packet in stream.encode(frame):
                    container.mux(packet)
                sent += 1
    except (OSError, av.error.FFmpegError) as error:  # (EPIPE)
        log.debug("ffmpeg stopped reading the source's frames (%s)", error)
    finally:
        pipe.close()
    return sent


def _upright(stream, rotation: int):
    """`stream` turned upright as ffmpeg turns a video whose display matrix turns it `rotation` degrees
    counterclockwise (probe's `rotation`)."""
    if rotation == 90:
        return stream.filter("transpose", "cclock")
    if rotation == 270:
        return stream.filter("transpose", "clock")
    if rotation == 180:
        return stream.filter("hflip").filter("vflip")
    return stream


def _remade_frames(source_video, upscaled_video) -> str | None:
    """The --deinterlace that made the upscaled video's frames of other frames than the source's, as its frame rate
    says: "ivtc" (inverse telecine, 4/5 of the source's), "field" (twice it), or None."""
    from vsr.pipelines.fields import FIELDS
    from vsr.pipelines.telecine import FILM_SHARE

    if not (source_video.average_rate and upscaled_video.average_rate):
        return None
    for option, share in (("ivtc", FILM_SHARE), ("field", FIELDS)):
        if abs(upscaled_video.average_rate / (source_video.average_rate * share) - 1) < 0.005:
            return option
    return None


def _colors(video) -> tuple[str, str, str]:
    """The clip's matrix, primaries and transfer (FFmpeg's names): the upscaled `video`'s, an untagged one's those
    players assume for its size. (Untagged, the clip's colors were each player's guess: ffmpeg's BT.601 shows an
    HD upscale's red 18 levels off.)"""
    from vsr.pipelines.colour import untagged_matrix

    guess = untagged_matrix(video.height)
    matrix = video.color.matrix if video.color.matrix in _SCALE_MATRICES else guess
    return matrix, video.color.primaries or guess, video.color.transfer or guess


def _conversion(video, matrix: str) -> dict[str, str]:
    """The scale filter's options that take `video`'s YUV (untagged: by its size, as players) to `matrix`, limited
    range; or, `video` None, RGB (full range, as vsr decodes it)."""
    from vsr.pipelines.colour import untagged_matrix

    if video is None:
        return {"out_color_matrix": _SCALE_MATRICES[matrix], "out_range": "tv"}
    own = video.color.matrix if video.color.matrix in _SCALE_MATRICES else untagged_matrix(video.height)
    return {"in_color_matrix": _SCALE_MATRICES[own], "out_color_matrix": _SCALE_MATRICES[matrix],
            "in_range": "pc" if video.color.range == "pc" else "tv", "out_range": "tv"}


def _from_offset(stream, offset: float):
    """`stream` from its first frame `offset` seconds or more after its first frame, timed from that frame."""
    stream = stream.filter("setpts", "PTS-STARTPTS")
    if offset:  # (floats: a numpy number or a Fraction would be written into the filter as its repr or as "1/10")
        stream = stream.filter("trim", start=float(offset)).filter("setpts", "PTS-STARTPTS")
    return stream


def _window(stream, options: CompareOptions):
    """The frames of `stream` from --start to --end."""
    window = {}
    if options.start:
        window["start"] = float(options.start)
    if options.end is not None and options.end < _NEVER:
        window["end"] = float(options.end)
    return stream.filter("trim", **window) if window else stream


def _pairing_slack(upscaled_video) -> Fraction:
    """How far from its source frame's time an upscaled frame may be timed, in seconds: its container may keep
    times rounded to its ticks (Matroska's milliseconds: 33.367 ms becomes 33 ms, 66.733 ms 67 ms). One and a half
    ticks (the first frame's time, which both sides count from, may be rounded too), but less than half a frame, so
    that the next source frame is never taken: an AVI's tick is a frame."""
    slack = Fraction(3, 2) * upscaled_video.time_base
    if upscaled_video.average_rate:
        slack = min(slack, 1 / (2 * Fraction(upscaled_video.average_rate)))
    return slack


def _audio_window(stream, video_start: float, options: CompareOptions):
    """An audio `stream` cut to the window `_window` cuts from a video starting at `video_start` seconds: timed from
    that start (not from its own first sample), so that a track that starts later than the video still does."""
    window = {"start": float(options.start or 0)}
    if options.end is not None and options.end < _NEVER:
        window["end"] = float(options.end)
    stream = stream.filter("asetpts", f"PTS-{float(video_start)!r}/TB").filter("atrim", **window)
    return stream.filter("asetpts", f"PTS-{window['start']!r}/TB")


def _first_frame_time(path: Path, video) -> float:
    """When the video stream `video` of `path` starts, in seconds, as ffmpeg's filters see its first frame."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams[video.index]
        return float((stream.start_time or 0) * stream.time_base)


def _shown_size(video) -> tuple[int, int]:
    """The frame size as shown: ffmpeg turns a rotated video upright."""
    return (video.height, video.width) if video.rotation in (90, 270) else (video.width, video.height)


def _display_aspect(video) -> float:
    """Width over height as shown: a 720×480 DVD frame of pixel aspect 32:27 is 16:9, as a 3840×2160 one."""
    width, height = _shown_size(video)
    pixel_aspect = float(video.sample_aspect_ratio or 1)
    return width * pixel_aspect / height if video.rotation not in (90, 270) else width / (height * pixel_aspect)


def _safe_label(text: str) -> str:
    # drawtext reads % sequences, and filter graphs quote with ' and : ; keep to plain characters.
    return re.sub(r"[^\w .+×-]", "_", text)[:60]


def _ffmpeg_command() -> str:
    command = shutil.which("ffmpeg")
    if command is None:
        raise VsrError("vsr compare needs the ffmpeg command (e.g. apt-get install ffmpeg)")
    return command


def _ffmpeg_python():
    try:
        import ffmpeg
    except ImportError:
        raise VsrError("vsr compare needs ffmpeg-python: pip install 'vsr[tools]'") from None
    return ffmpeg
