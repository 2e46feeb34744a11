"""What is in a media file: its streams, chapters and the video stream vsr would upscale (`vsr probe`).

    info = probe("movie.mkv")
    print(format_probe(info, work=estimate_work(info.video, scale=4, macs_per_pixel=17.93e6)))

This module also opens inputs for the decoders (`open_input`, `find_video_stream`, `describe_video`), so that
every way in turns a bad file into the same one-line `InputError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
from av.stream import Disposition

from vsr.errors import InputError
from vsr.pipelines.frames import ColorInfo, VideoStreamInfo
from vsr.pipelines.image_metadata import PNG_SIGNATURE, exif_orientation, is_animated

log = logging.getLogger(__name__)
T = TypeVar("T")

# How many video packets `probe` reads to tell constant from variable frame rate.
VFR_SAMPLE_PACKETS = 300
# Soft telecine (telecine.pulldown_rate) is looked for in the streams of these codecs, which carry repeat-field
# flags, that FFmpeg says are at these rates (NTSC's fields, two or one a frame), in their first packets.
PULLDOWN_CODECS = ("mpeg2video", "h264", "vc1")
FIELD_TIMED_RATES = {Fraction(30000, 1001), Fraction(60000, 1001)}
PULLDOWN_SAMPLE_PACKETS = 41
# Decoders of still images, whose frames carry no HDR10 metadata (PNG's, JPEG's and WebP's may carry an ICC profile).
STILL_IMAGE_DECODERS = ("png", "apng", "mjpeg", "jpegls", "webp", "tiff", "bmp", "dpx", "gif", "jpeg2000", "exr",
                        "qoi", "targa", "sgi", "pam", "ppm", "pgm", "libjxl", "jpegxl")
# A GIF frame's delay is counted in centiseconds, and browsers show one under 2 cs for 10 cs (as FFmpeg's gif demuxer
# did up to 5.1). FFmpeg 8's (PyAV's) makes a 0-cs delay 10 cs but keeps a 1-cs one, whatever its min_delay and
# default_delay options say: `browser_gif_times` lengthens those.
GIF_SHORTEST_DELAY = 2  # centiseconds
GIF_SHOWN_DELAY = 10  # centiseconds: how long browsers show a frame of a shorter delay
# A GIF frame's delay is in its Graphic Control Extension, an extension block (introducer, label, sub-blocks) before
# its image; a frame may have none (`browser_gif_times`).
GIF_EXTENSION_INTRODUCER = 0x21
GIF_GRAPHIC_CONTROL_LABEL = 0xF9
# How many frames (of a video), or files spread over an image sequence, tell whether an RGBA stream is transparent.
ALPHA_SAMPLE_FRAMES = 50
ALPHA_SAMPLE_FILES = 9

# FFmpeg's names for the AVColor* enum values (libavutil/pixfmt.h); "unspecified" is None.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
              10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
              10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
              16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
_MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
             9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c",
             14: "ictcp"}

# EXIF orientation → the display matrix FFmpeg makes of it: counterclockwise degrees, and whether the rows are flipped
# first (VideoStreamInfo.rotation and .mirrored).
_ORIENTATION_DISPLAY = {1: (0, False), 2: (180, True), 3: (180, False), 4: (0, True), 5: (270, True),
                        6: (270, False), 7: (90, True), 8: (90, False)}

# WebM keeps a VP8/VP9 video's alpha beside its color (alpha_mode 1); FFmpeg's own decoders ignore it, libvpx's
# decode both into yuva420p.
ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}
# FFmpeg's image2 demuxer reads a name holding "%d" as a numbered sequence ("50%d.png" read 501.png, and a "%" in a
# folder's name failed): this makes it read the file named. (Other demuxers leave the option alone.)
ONE_FILE = {"pattern_type": "none"}
# Demuxers of raw elementary streams (.h264, .hevc, .m2v, .m4v): no timestamps, and a frame rate of 25 assumed
# unless told; the rate the stream itself declares (H.264/HEVC timing info, MPEG's frame rate code) is the real one.
RAW_STREAM_FORMATS = {"h264", "hevc", "mpegvideo", "m4v", "vvc", "cavsvideo"}


# The dispositions a player chooses an audio or subtitle track by (an episode's default language, its forced signs),
# as `vsr probe` names them; a cover picture (attached_pic) is said of any stream.
TRACK_FLAGS = {
    Disposition.default: "default", Disposition.forced: "forced", Disposition.original: "original",
    Disposition.dub: "dub", Disposition.comment: "commentary", Disposition.hearing_impaired: "hearing impaired",
    Disposition.visual_impaired: "visual impaired", Disposition.captions: "captions",
    Disposition.descriptions: "descriptions", Disposition.lyrics: "lyrics", Disposition.karaoke: "karaoke",
}


@dataclass(frozen=True)
class StreamSummary:
    """One stream of the file, of any type."""

    index: int
    type: str  # "video", "audio", "subtitle", "attachment", "data"
    codec: str  # FFmpeg's codec name (ffprobe's codec_name), "unknown" when FFmpeg does not know it
    language: str | None = None
    title: str | None = None
    sample_rate: int | None = None  # audio only
    channels: int | None = None  # audio only
    layout: str | None = None  # audio only, e.g. "stereo", "5.1"
    timecode: str | None = None  # a QuickTime timecode track's start (data only), e.g. "01:00:00:00"
    flags: tuple[str, ...] = ()  # its dispositions as `TRACK_FLAGS` names them, e.g. ("default", "forced")
    filename: str | None = None  # an attachment's (a font's) or a cover's file name


@dataclass(frozen=True)
class Chapter:
    start: float  # seconds
    end: float
    title: str | None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format: str  # the demuxer's name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm"
    duration: float | None  # seconds
    size: int  # bytes
    video: VideoStreamInfo  # the stream vsr upscales
    streams: list[StreamSummary]
    chapters: list[Chapter] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    frame_count_estimated: bool = False  # video.frame_count is duration × average rate, not counted by the muxer
    vfr: bool | None = None  # variable frame rate, judged from the first VFR_SAMPLE_PACKETS packets
    captions: bool = False  # closed captions in the video frames (captions.carries_captions)


def not_a_file(path: Path) -> str:
    """What to say of an input that is a pipe or a device (/dev/stdin fed by a pipe, a FIFO): vsr opens its input
    several times (to probe it, plan its segments and decode it), and a pipe gives its bytes once."""
    return (f"{path}: is a pipe or a device, not a file; vsr reads its input more than once: save it to a file and "
            "give that")


def open_input(path: str | Path, frame_rate: Fraction | None = None) -> av.container.InputContainer:
    """Open `path` for reading, or raise an InputError that names the file and the problem. An image sequence's
    pattern (frames/%06d.png: `sequences.is_sequence`) opens its frames as a video at `frame_rate` (default 25)."""
    from vsr.pipelines.sequences import is_sequence, open_sequence  # which imports this module

    path = Path(path)
    if is_sequence(path):
        return open_sequence(path, frame_rate)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a video file")
    if not path.is_file():  # (a pipe's size is 0: it was said to be "empty")
        raise InputError(not_a_file(path))
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        return av.open(str(path), "r", format="apng" if _is_apng(path) else None, options=ONE_FILE)
    except PermissionError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from error
    except (av.error.FFmpegError, OSError, ValueError) as error:
        reason = _reason(error)
        raise InputError(f"{path}: not a media file FFmpeg can read, or damaged or cut short ({reason})") from error


def _is_apng(path: Path) -> bool:
    """An animated PNG. FFmpeg's probe reads the first bytes only: where a large XMP packet or ICC profile comes
    before the animation's acTL chunk, it takes the file for a still PNG (its first frame)."""
    with open(path, "rb") as file:
        return file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE and is_animated(path)


def find_video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    """The video stream that is a real video (not cover art), which FFmpeg can decode: the one marked default where
    several are and one is (as a player shows it), else the first."""
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        found = ", ".join(f"{s.type} {_codec_name(s)}" for s in container.streams) or "none"
        raise InputError(f"{path}: has no video stream (streams: {found})")
    defaults = [s for s in videos if s.disposition & av.stream.Disposition.default]
    stream = defaults[0] if len(videos) > 1 and len(defaults) == 1 else videos[0]
    if stream.codec_context is None:
        raise InputError(f"{path}: video stream #{stream.index} uses a codec FFmpeg does not know")
    if not stream.codec_context.pix_fmt or not stream.codec_context.width:
        raise InputError(f"{path}: video stream #{stream.index} ({stream.codec_context.name}) has no decodable frames")
    return stream


def demux_timed(container: av.container.InputContainer, stream: av.stream.Stream) -> Iterator[av.Packet]:
    """`container.demux(stream)`, a GIF's packets timed as browsers show them (`browser_gif_times`), an AVI's or ASF's
    with B-frames as FFmpeg shows their frames (`shown_in_decoding_order`): where vsr reads a video's times. A GIF
    must be read from its first packet (no seek before), as each time counts the delays lengthened before it."""
    packets = container.demux(stream)
    if container.format.name == "gif":
        return browser_gif_times(packets)
    if timed_in_decoding_order(container, stream):
        return shown_in_decoding_order(packets, _reordering(container, stream).packets)
    return packets


# Containers that keep one time per packet, in decoding order (AVI: the packets' order; ASF: their send times):
# behind B-frames a packet's "pts" is not the time of the frame it holds.
DECODE_ORDER_FORMATS = ("avi", "asf")


def timed_in_decoding_order(container: av.container.InputContainer, stream: av.stream.Stream) -> bool:
    """Whether `stream`'s frames are reordered (B-frames) in a container that times packets in decoding order."""
    return container.format.name in DECODE_ORDER_FORMATS and stream.type == "video" \
        and bool(stream.codec_context.has_b_frames)


def shown_in_decoding_order(packets: Iterable[av.Packet], delay: int) -> Iterator[av.Packet]:
    """Packets timed in decoding order, each given the decoding time of the packet `delay` packets after it: the
    times of the frames the decoder gives out as it is sent them, `delay` packets late (its reordering delay), which
    is when ffmpeg and ffplay show them. Counted in packets, not in ticks: an AVI's empty entries (XviD's first two,
    its encoder's delay: the first packets at 0 then 3) take ticks and no packet, and a delay of 3 ticks timed every
    frame after the first two ticks late. FFmpeg 8's demuxer guesses a pts one packet after the decoding time
    whatever the delay (for H.264 with B-pyramids, 2 packets: the frames came a frame early against the audio and
    the --start counted from the first). The last `delay` packets, whose frames come out when the decoder is
    flushed, are given the steps after the last time. The decoder (`PresentationOrder`'s restamp) gives each frame
    the smallest of these not yet given. The packets come out in their order, each once its time is known."""
    held: deque[av.Packet] = deque()  # packets read and not yet given out, in their order
    waiting: deque[av.Packet] = deque()  # the timed ones among them, without their time yet
    last_dts, step = None, 1
    read_error = None
    try:
        for packet in packets:
            held.append(packet)
            if packet.dts is not None and packet.size:
                if last_dts is not None and packet.dts > last_dts:
                    step = packet.dts - last_dts
                last_dts = packet.dts
                waiting.append(packet)
                if len(waiting) > delay:
                    waiting.popleft().pts = packet.dts
            while held and not (waiting and held[0] is waiting[0]):
                yield held.popleft()
    except av.FFmpegError as error:  # (a read error ends the packets: those held are still decoded, as at the end)
        read_error = error
    for number, packet in enumerate(waiting, 1):
        packet.pts = last_dts + number * step
    yield from held
    if read_error is not None:
        raise read_error


def first_frame_pts(container: av.container.InputContainer, stream: av.stream.Stream) -> int:
    """The pts of `stream`'s first frame, from which --start and --end count: the stream's start, but for frames
    timed in decoding order (`timed_in_decoding_order`), the decoding time of the packet it comes out with."""
    start = stream.start_time or 0
    return start + _reordering(container, stream).ticks if timed_in_decoding_order(container, stream) else start


@dataclass(frozen=True)
class _Reordering:
    """How late a decoder gives out the first frame: after how many packets more than the first, and how many ticks
    of the stream's time base after the first packet's decoding time."""

    packets: int
    ticks: int


def _reordering(container: av.container.InputContainer, stream: av.stream.Stream) -> _Reordering:
    path = path_of(container)
    stat = os.stat(path)
    return _read_reordering(path, stream.index, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_reordering(path: str, index: int, size: int, mtime_ns: int) -> _Reordering:
    """The packet the decoder gives out the first frame with, and its decoding time (the frame's `dts`), as ffmpeg
    times such frames. Read by decoding the first packets once per file as it is; none late where no frame comes
    out of them."""
    with open_input(path) as container:
        stream = container.streams[index]
        first_dts, sent = None, 0
        try:
            for packet in container.demux(stream):
                if packet.dts is None or not packet.size or sent > _MOST_REORDERED:
                    break
                first_dts = packet.dts if first_dts is None else first_dts
                sent += 1
                for frame in stream.codec_context.decode(packet):
                    if frame.dts is not None:
                        return _Reordering(sent - 1, max(frame.dts - first_dts, 0))
        except av.FFmpegError:
            pass
    return _Reordering(0, 0)


_MOST_REORDERED = 32  # packets sent before giving up on a first frame (H.264 reorders at most 16)


def browser_gif_times(packets: Iterable[av.Packet]) -> Iterator[av.Packet]:
    """A GIF's packets, from its first, with the times browsers show them at: a delay (`packet.duration`, in the
    GIF's 1/100 s) under GIF_SHORTEST_DELAY becomes GIF_SHOWN_DELAY, and so does the delay of a frame without a
    Graphic Control Extension (`_has_graphic_control`), and every later packet moves by what its delay changed (pts and
    dts). A GIF without such delays keeps its times. Changes the packets themselves, so that the frames decoded from
    them carry the new times.

    A frame without that block has no delay: Chromium's GIFImageReader and Firefox's nsGIFDecoder2 give it 0, shown
    10 cs, as FFmpeg 5.1 did. FFmpeg 8's gif parser gives it the delay of the frame before (a 50-cs slide's, after
    which every frame came 40 cs late)."""
    moved = 0  # centiseconds the delays so far were changed by (less where a frame is shown shorter)
    for packet in packets:
        if packet.pts is not None:  # (not the flush packet at the end)
            packet.pts += moved
            if packet.dts is not None:
                packet.dts += moved
            if packet.size and (packet.duration < GIF_SHORTEST_DELAY or not _has_graphic_control(memoryview(packet))):
                moved += GIF_SHOWN_DELAY - packet.duration
                packet.duration = GIF_SHOWN_DELAY
        yield packet


def _has_graphic_control(data: memoryview) -> bool:
    """Whether a GIF's packet holds a Graphic Control Extension. FFmpeg's gif parser cuts a packet per frame: the
    extension blocks before its image, then the image (the first packet starts with the file's header and global
    color table); this reads the blocks up to the image."""
    at = 0
    if bytes(data[:3]) == b"GIF":
        flags = data[10]  # (the logical screen descriptor's packed byte: whether a color table follows, its size)
        at = 13 + (3 << ((flags & 0x07) + 1) if flags & 0x80 else 0)
    while at + 1 < len(data) and data[at] == GIF_EXTENSION_INTRODUCER:
        if data[at + 1] == GIF_GRAPHIC_CONTROL_LABEL:
            return True
        at += 2
        while at < len(data) and data[at]:  # its sub-blocks, each after its size, up to an empty one
            at += data[at] + 1
        at += 1
    return False


def describe_video(path: str | Path, frame_rate: Fraction | None = None) -> tuple[VideoStreamInfo, bool]:
    """The video stream of `path` that vsr upscales (`find_video_stream`) described, and whether its frame count is
    an estimate (the container did not count frames). An image sequence's pattern is read at `frame_rate`.

    Some of it is read by decoding or demuxing the file once more (its rotation, whether its alpha is used, the
    frames an edit list hides): those opens come after this one is closed, one at a time. FFmpeg keeps a copy of
    a file's attachments per open (three: a Matroska's 100 MB of fonts took 300 MB), so opens held together
    multiply it. A file's description is remembered for the process, as the file is: a run describes its input to
    plan it, to decode it and again for each segment."""
    from vsr.pipelines.sequences import is_sequence  # which imports this module

    path = Path(path)
    if not is_sequence(path) and path.is_file():
        stat = path.stat()
        return _describe_file(path, path.absolute(), stat.st_size, stat.st_mtime_ns)
    return _describe_video(path, frame_rate)  # (open_input says what is wrong with a path that is not a file)


@functools.lru_cache(maxsize=16)
def _describe_file(path: Path, absolute: Path, size: int, mtime_ns: int) -> tuple[VideoStreamInfo, bool]:
    # (`path` as given, for messages that name it; `absolute`, so that the same name from another folder is not
    # taken for it)
    return _describe_video(path, None)


def _describe_video(path: Path, frame_rate: Fraction | None) -> tuple[VideoStreamInfo, bool]:
    with open_input(path, frame_rate) as container:
        stream = find_video_stream(container, path)
        info, estimated = _as_the_container_says(container, stream)
        opened, format_name, color_range = path_of(container), container.format.name, stream.codec_context.color_range
        # An edit list that starts after the first samples (a cut made with ffmpeg -ss … -c copy) keeps them in the
        # sample table, which FFmpeg counts: flagged discard, they are never shown (100 frames said, 67 shown).
        hides_frames = (info.frame_count and info.duration and info.average_rate and "mov" in format_name.split(",")
                        and info.frame_count > info.duration * info.average_rate + 1)
    if hides_frames:
        info = dataclasses.replace(info, frame_count=shown_packets(opened, info.index))
    if format_name == "gif":
        info = _browser_gif_span(opened, info)
    if info.codec in PULLDOWN_CODECS and {info.average_rate, info.base_rate} & FIELD_TIMED_RATES:
        info = _with_film_rate(opened, info, estimated)
    pixel_format = av.VideoFormat(info.pix_fmt)
    if not info.alpha and (pixel_format.has_palette or any(c.is_alpha for c in pixel_format.components)):
        # (a palette may have transparent entries)
        info = dataclasses.replace(info, alpha=_uses_alpha(opened, info.index))
    elif not info.alpha and format_name == "image2" and _uses_alpha(opened, info.index):
        # A sequence's stream takes its first file's format, and a title card saved as RGB may open an RGBA sequence.
        pix_fmt = "rgba64le" if pixel_format.components[0].bits > 8 else "rgba"
        info = dataclasses.replace(info, pix_fmt=pix_fmt, alpha=True,
                                   bit_depth=max(component.bits for component in av.VideoFormat(pix_fmt).components),
                                   color=dataclasses.replace(info.color, range=_color_range(color_range, pix_fmt)))
    return dataclasses.replace(info, rotation=_display_rotation(opened, info.index)), estimated


def _as_the_container_says(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[VideoStreamInfo, bool]:
    """Describe `stream` as far as the open container tells without reading on (see `describe_video` for the rest:
    the rotation is left 0, alpha is said only where the container's tags say it); also say whether its frame count
    is an estimate."""
    context = stream.codec_context
    time_base = stream.time_base or Fraction(1, 90000)
    average_rate = stream.average_rate or stream.guessed_rate or None
    # (raw DV's demuxer counts in 1/60000 s and says 60000 fps: the codec knows the rate, 25 or 30000/1001)
    if (container.format.name in RAW_STREAM_FORMATS or container.format.name == "dv") and context.framerate:
        average_rate = Fraction(context.framerate)
    # Matroska's DURATION tag and the container's span end where the stream ends, counted from 0 or from the first
    # stream's start: a video that starts later (after its audio) lasts that much less.
    # Matroska has no duration per stream but that tag: the stream's own is FFmpeg's guess, which for a stream it could
    # not time from its first packets is the whole file's (one picture, or a few slides, beside a long soundtrack:
    # "the video ends at 0.047 s but the file says it lasts 2.008 s: damaged or cut short?").
    start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
    tagged = _tag_seconds(stream.metadata.get("DURATION"))  # Matroska keeps each stream's end time in a tag
    stream_end = bool(tagged) and container.format.name.startswith("matroska")
    if tagged and (stream_end or not stream.duration):
        duration = tagged - max(start, 0.0)
    elif stream.duration:
        duration = float(stream.duration * time_base)
    elif container.duration:
        container_start = (container.start_time or 0) / av.time_base
        duration = container_start + container.duration / av.time_base - start
    else:
        duration = None
    duration = duration if duration is None or duration > 0 else None
    frame_count, estimated = stream.frames or None, False
    base_rate = stream.base_rate or None
    if container.format.name == "avi" and average_rate and base_rate and average_rate > base_rate \
            and (average_rate / base_rate).denominator == 1:
        # An AVI that counts in ticks finer than its frames (remuxed from an MP4 with B-frames: 1/50 s for 25 fps)
        # indexes an empty entry for each tick between them: FFmpeg's average counts them, the frames are fewer.
        frame_count = round(frame_count * base_rate / average_rate) if frame_count else None
        average_rate = base_rate
    if frame_count is None and duration and average_rate:
        frame_count, estimated = round(duration * average_rate), True
    pix_fmt, alpha = context.pix_fmt, False
    tags = {key.lower(): value for key, value in stream.metadata.items()}  # ffmpeg writes ALPHA_MODE when it remuxes
    if context.name in ALPHA_DECODERS and tags.get("alpha_mode") == "1":
        pix_fmt, alpha = "yuva420p" if pix_fmt == "yuv420p" else pix_fmt, True
    sample_aspect_ratio = stream.sample_aspect_ratio or None
    info = VideoStreamInfo(
        index=stream.index,
        codec=context.name,
        width=context.width,
        height=context.height,
        pix_fmt=pix_fmt,
        bit_depth=max(component.bits for component in av.VideoFormat(pix_fmt).components),
        time_base=time_base,
        average_rate=average_rate,
        frame_count=frame_count,
        duration=duration,
        color=ColorInfo(
            primaries=_PRIMARIES.get(context.color_primaries),
            transfer=_TRANSFERS.get(context.color_trc),
            matrix=_MATRICES.get(context.colorspace),
            range=_color_range(context.color_range, pix_fmt),
        ),
        mirrored=container.format.name == "image2" and _stored_mirrored(path_of(container)),
        sample_aspect_ratio=sample_aspect_ratio if sample_aspect_ratio != 1 else None,
        # AVFieldOrder: 0 unknown, 1 progressive, 2-5 the field orders. DV says nothing, and is interlaced (a
        # camcorder's SD DV; its decoder marks every frame so, with the field order).
        interlaced=context.field_order >= 2 or (context.field_order == 0 and context.name == "dvvideo"),
        alpha=alpha,
        base_rate=base_rate,
        duration_is_stream_end=stream_end,
    )
    return info, estimated


def _browser_gif_span(path: str, info: VideoStreamInfo) -> VideoStreamInfo:
    """`info` of a GIF, lasting as browsers show it (`browser_gif_times`): FFmpeg's duration is the sum of its delays,
    1-cs ones kept, and its rate the frames over that. A GIF without such delays is left as FFmpeg says."""
    last = _last_frame(path, info.index)
    if last is None or last.end is None or info.duration is None:
        return info
    shown = (last.end - last.first_pts) * last.time_base
    if float(shown) <= info.duration:  # (as a float, as `info.duration` was made: 0.49 s is not 49/100 exactly)
        return info
    average_rate = info.frame_count / shown if info.frame_count else info.average_rate
    return dataclasses.replace(info, duration=float(shown), average_rate=average_rate)


def _with_film_rate(path: str, info: VideoStreamInfo, estimated: bool) -> VideoStreamInfo:
    """`info`, with the film's rate where its first frames come in the 3:2 steps of soft telecine (see
    `telecine.pulldown_rate`): FFmpeg says the rate of the fields (29.97, or 59.94 where it counts field repeats),
    which the output declared, 25% more frames a second than it has, or 150% more."""
    from vsr.pipelines.telecine import pulldown_rate

    with open_input(path) as container:
        pts, _ = _sample_pts(container, container.streams[info.index], PULLDOWN_SAMPLE_PACKETS)
    film = pulldown_rate(pts, info.time_base)
    if film is None:
        return info
    frame_count = round(info.duration * film) if estimated and info.duration else info.frame_count
    return dataclasses.replace(info, average_rate=film, base_rate=film, frame_count=frame_count, soft_telecined=True)


def shown_packets(path: str, index: int) -> int:
    """The packets of stream `index` that hold a picture to show: not empty, not flagged discard (by an edit list).
    Read once per file as it is (a run probes its input several times)."""
    stat = os.stat(path)
    return _count_shown_packets(path, index, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _count_shown_packets(path: str, index: int, size: int, mtime_ns: int) -> int:
    with open_input(path) as container:
        stream = container.streams[index]
        return sum(1 for packet in container.demux(stream) if packet.size and not packet.is_discard)


def path_of(container: av.container.InputContainer) -> str:
    """The path `container` was opened from: an image sequence's pattern is opened with its folder's "%" written
    "%%" (`sequences.open_sequence`), as FFmpeg expands the whole name."""
    if container.format.name != "image2":
        return container.name
    folder, _, name = container.name.rpartition("/")
    return f"{folder.replace('%%', '%')}/{name}" if folder else name


def _uses_alpha(path: str, index: int) -> bool:
    """Whether a stream whose pixel format has alpha (or a palette) uses it, in its first ALPHA_SAMPLE_FRAMES frames
    (an animated sticker may start on an opaque frame), or in an image sequence's frames spread from its first to
    its last. GIF, PNG and QuickTime RLE decode to RGBA whether or not a picture has a transparent pixel; an opaque
    one is upscaled as a plain video."""
    from vsr.pipelines.sequences import existing_frames, is_sequence  # which imports this module

    if is_sequence(path):  # any frame's file can be read on its own: look across the whole sequence
        files = [file for _, file in sorted(existing_frames(Path(path)).items())]
        step = max(1, (len(files) - 1) // (ALPHA_SAMPLE_FILES - 1))
        return any(_uses_alpha(str(file), 0) for file in [*files[::step], files[-1]])
    try:
        with open_input(path) as container:
            for number, frame in enumerate(container.decode(container.streams[index])):
                if (frame.to_ndarray(format="rgba")[..., 3] < 255).any():
                    return True
                if number + 1 == ALPHA_SAMPLE_FRAMES:
                    break
    except (av.error.FFmpegError, OSError, InputError):
        pass  # the decoder says what is wrong with the file
    return False


def video_has_alpha(path: str | Path) -> bool:
    """Whether the video of `path` has alpha (`VideoStreamInfo.alpha`); False for a file it cannot tell of (the
    upscale that follows says what is wrong with it)."""
    try:
        return describe_video(path)[0].alpha
    except (InputError, av.error.FFmpegError):
        return False


class TimelineWatch:
    """Follows the decoding times of one stream's packets and raises InputError where the timeline starts over.

    Recordings joined end to end (`cat a.ts b.ts`) or a transport stream whose clock was reset have packets whose
    times go back by seconds, for good. vsr keeps every frame at its own time, so what comes after cannot be placed
    (frames would be dropped as too late, the muxer refuses packets that go back); ffmpeg's stream copy rewrites
    such times into one timeline, which the message suggests. Damage moves a time by less, or for a packet or two:
    only `sustained` packets in a row more than `RESET_SECONDS` behind the latest time count.
    """

    RESET_SECONDS = 0.5

    def __init__(self, path: str | Path, stream: av.stream.Stream, sustained: int = 3):
        self.path = Path(path)
        self.stream = stream
        self.sustained = sustained
        self.reset = self.RESET_SECONDS / (stream.time_base or Fraction(1, 90000))  # in the stream's time base
        self.latest: int | None = None
        self.behind = 0

    def check(self, packet: av.Packet) -> None:
        # Decoding times only: a packet without one (Matroska leaves it out of the first frames after a keyframe)
        # has a presentation time that B-frames put ahead, by more than RESET_SECONDS at 2 frames a second.
        time = packet.dts
        if time is None or not packet.size:
            return
        if self.latest is not None and self.latest - time > self.reset:
            self.behind += 1
            if self.behind >= self.sustained:
                base = self.stream.time_base
                fixed = self.path.with_name(f"{self.path.stem}.fixed.mkv").name
                raise InputError(
                    f"{self.path}: the times of stream #{self.stream.index} ({self.stream.type}) go back from "
                    f"{float(self.latest * base):.3f} s to {float(time * base):.3f} s (recordings joined end to "
                    f"end?), and vsr keeps every frame's time; `ffmpeg -i {self.path.name} -c copy {fixed}` "
                    f"writes a copy with one timeline")
            return
        self.behind = 0
        self.latest = time if self.latest is None else max(self.latest, time)


def probe(path: str | Path) -> MediaInfo:
    """Read what `path` holds. Raises InputError if it is not a media file with a decodable video stream."""
    from vsr.pipelines.captions import carries_captions  # which imports this module
    from vsr.pipelines.sequences import is_sequence  # which imports this module

    path = Path(path)
    info, estimated = describe_video(path)
    # (each open here follows the last one's close: see describe_video)
    with open_input(path) as container:
        if not is_sequence(path) and (container.format.name == "image2" or container.format.name.endswith("_pipe")):
            # A still image is upscaled upright by its EXIF orientation, read from the whole file
            # (images.read_image: a WebP's EXIF comes after its pixels).
            rotation, mirrored = _ORIENTATION_DISPLAY[exif_orientation(path.read_bytes())]
            info = dataclasses.replace(info, rotation=rotation, mirrored=mirrored)
        pts, complete = _sample_pts(container, container.streams[info.index])
        if estimated and complete:  # a short file without a frame count: its packets were all read, count them
            info, estimated = dataclasses.replace(info, frame_count=len(pts)), False
        estimated = estimated and container.format.name != "image2"  # a sequence's duration is its files / rate
        duration = container.duration / av.time_base if container.duration else info.duration
        if container.format.name == "gif" and info.duration:  # (1-cs delays lengthened: _browser_gif_span)
            duration = max(duration or 0.0, info.duration)
        media = MediaInfo(
            path=path,
            format=container.format.name,
            duration=duration,
            size=_bytes_in(path),
            video=info,
            streams=[_summary(stream) for stream in container.streams],
            chapters=[
                Chapter(
                    start=float(c["start"] * c["time_base"]),
                    end=float(c["end"] * c["time_base"]),
                    title=c["metadata"].get("title"),
                )
                for c in container.chapters()
            ],
            metadata=dict(container.metadata),
            frame_count_estimated=estimated,
            vfr=_is_vfr(pts),
        )
    return dataclasses.replace(media, captions=carries_captions(path))


def _bytes_in(path: Path) -> int:
    """Bytes in `path`, or in all the files of an image sequence."""
    from vsr.pipelines.sequences import existing_frames, is_sequence

    if is_sequence(path) and not path.exists():
        return sum(frame.stat().st_size for frame in existing_frames(path).values())
    return path.stat().st_size


def estimate_work(video: VideoStreamInfo, *, scale: int, macs_per_pixel: float, image: bool = False) -> str:
    """One line on what upscaling `video` (or a still `image`) costs: output size and multiply-adds (per frame and in
    all; alpha goes through the model as a second picture)."""
    per_frame = video.width * video.height * macs_per_pixel * (2 if video.alpha else 1)
    width, height = video.width * scale, video.height * scale
    if image and video.rotation in (90, 270):  # (an image is written upright: see images.read_image)
        width, height = height, width
    text = f"×{scale} → {width}×{height}"
    if (width % 2 or height % 2) and not image:  # (as `vsr upscale` writes it: see upscale.video_output_size)
        text += f" (written {width + width % 2}×{height + height % 2}: 4:2:0 video needs even sides)"
    if not macs_per_pixel:  # (bicubic, lanczos)
        return text + ", no network: resampling only"
    text += f", {_si(per_frame)}MAC{'' if image else ' per frame'}"
    if video.frame_count and not image:  # (a JPEG, read by FFmpeg's image2 format, has a frame count of 1)
        text += f", {_si(per_frame * video.frame_count)}MAC for {video.frame_count} {_frames(video.frame_count)}"
    return text


PROBE_LISTS = 100  # chapters, and tags, that `format_probe` lists
PROBE_TEXT = 200  # characters of a tag or title that it shows


def _shortened(text: str) -> str:
    """`text` on one line, and cut at PROBE_TEXT characters, saying how long it was."""
    text = " ".join(str(text).splitlines())
    return text if len(text) <= PROBE_TEXT else f"{text[:PROBE_TEXT]}... ({len(text)} characters)"


def format_probe(info: MediaInfo, work: str | None = None, image: bool = False) -> str:
    """A few lines for people: the file, each stream, chapters, tags, and `work` (see `estimate_work`) if given.
    `image`: a still image, which has no duration or frame rate (FFmpeg gives it 25 fps)."""
    video = info.video
    lines = [f"{info.path}: {info.format}, {_size(info.size)}, {'an image' if image else _clock(info.duration)}"]
    for stream in info.streams:
        line = f"  #{stream.index} {'image' if image else stream.type}: {stream.codec}"
        if stream.timecode:
            line = f"  #{stream.index} {stream.type}: timecode track, starts at {stream.timecode}"
        if stream.index == video.index:
            rate = f"{float(video.average_rate):.3f} fps" if video.average_rate else "unknown fps"
            frames = "unknown" if video.frame_count is None else str(video.frame_count)
            if info.frame_count_estimated:
                frames = f"~{frames}"
            color = video.color
            tags = [color.matrix, color.primaries, color.transfer]
            if color.matrix == "gbr" or av.VideoFormat(video.pix_fmt).is_rgb:
                # No YUV matrix: the pixels are RGB (FFmpeg tags a PNG's "gbr", which means just that).
                tags = [color.primaries, color.transfer]
                colors = "RGB, " + ("untagged" if tags == [None] * 2 else "/".join(tag or "?" for tag in tags))
            else:
                colors = "untagged" if tags == [None] * 3 else "/".join(tag or "?" for tag in tags)
            if video.soft_telecined:  # (variable too, but in a steady cadence)
                rate += " (soft-telecined film: shown 3:2 by repeat-field flags, frames 50 and 33 ms apart)"
            elif info.vfr and video.frame_count and video.duration and not info.frame_count_estimated:
                # (the rate a container declares for variable-rate video is one of its steps, often the shortest:
                # 23.976 and 29.97 fps parts were "29.970 fps")
                rate = f"variable rate, {video.frame_count / video.duration:.3f} fps on average"
            elif info.vfr:
                rate += " (variable)"
            timing = "" if image else f", {rate}, {frames} {_frames(video.frame_count)}"
            line += (f", {video.width}×{video.height}, {video.pix_fmt} ({video.bit_depth}-bit){timing}, "
                     f"color {colors} ({color.range} range)")
            if video.interlaced:
                line += ", interlaced"
            if video.alpha:
                line += ", with alpha"
            if info.captions:
                line += ", closed captions in the frames"
            if video.rotation or video.mirrored:
                line += f", {_turned(video.rotation, video.mirrored)}"
            if video.sample_aspect_ratio:
                line += f", pixel aspect {video.sample_aspect_ratio}"
        if stream.sample_rate:
            line += f", {stream.sample_rate} Hz, {stream.layout or f'{stream.channels} channels'}"
        if stream.language:
            line += f", {stream.language}"
        if stream.title:
            line += f', "{stream.title}"'
        if stream.filename:
            line += f", {_shortened(stream.filename)}"
        if stream.flags:
            line += ", " + ", ".join(stream.flags)
        lines.append(line)
    # A few lines, as promised: a file may hold thousands of chapters or tags, and a tag may be a cover picture in
    # base64 (Vorbis comments) or megabytes of text; 10 MB of tags printed 10 MB, the work estimate at its end.
    for chapter in info.chapters[:PROBE_LISTS]:
        title = _shortened(chapter.title or "")
        lines.append(f"  chapter {_clock(chapter.start)}–{_clock(chapter.end)}: {title}".rstrip(": "))
    if len(info.chapters) > PROBE_LISTS:
        lines.append(f"  ... and {len(info.chapters) - PROBE_LISTS} more chapters")
    for key, value in list(info.metadata.items())[:PROBE_LISTS]:
        lines.append(f"  {_shortened(key)}: {_shortened(value)}")
    if len(info.metadata) > PROBE_LISTS:
        lines.append(f"  ... and {len(info.metadata) - PROBE_LISTS} more tags")
    if work:
        lines.append(f"  estimated work: {work}")
    return "\n".join(lines)


def _frames(count: int | None) -> str:
    return "frame" if count == 1 else "frames"


def _turned(rotation: int, mirrored: bool) -> str:
    """How a picture is shown, in a viewer's words: its rows flipped where `mirrored`, then turned `rotation` degrees
    counterclockwise (as VideoStreamInfo says it and the decoder applies it; images.upright turns a still image the
    same from its EXIF orientation). Flipping the rows is mirroring left to right and turning half a turn."""
    if not mirrored:
        return f"rotated {rotation}°"
    turn = (rotation + 180) % 360
    return {0: "mirrored", 180: "flipped upside down"}.get(turn, f"mirrored, then rotated {turn}°")


def _display_rotation(path: str, index: int) -> int:
    # PyAV exposes the display matrix only on decoded frames, so decode the first one (counterclockwise degrees).
    try:
        with open_input(path) as container:
            for frame in container.decode(container.streams[index]):
                return frame.rotation % 360
    except (av.error.FFmpegError, InputError) as error:
        log.debug("%s: no first frame to read the rotation from (%s)", path, error)
    return 0


def _stored_mirrored(path: str) -> bool:
    """Whether an image sequence's first file, or the one image FFmpeg's image2 format opened (a JPEG, a TIFF), says
    by its EXIF orientation that it is stored mirrored."""
    from vsr.pipelines.sequences import existing_frames, is_sequence  # which imports this module

    if is_sequence(path):
        files = existing_frames(Path(path))
        if not files:
            return False
        first = files[min(files)]
    else:  # (`vsr probe photo.jpg` was a traceback: the name was read as a sequence's pattern)
        first = Path(path)
    with open(first, "rb") as file:
        return exif_orientation(file.read(1 << 20)) in (2, 4, 5, 7)


def _sample_pts(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                packets: int | None = None) -> tuple[list[int], bool]:
    """The pts of the first `packets` (VFR_SAMPLE_PACKETS) video packets, in presentation order, and whether that was
    all.

    Packets come in decoding order: where reading stops, frames shown before the last one read (B-frames) may still
    be unread. A frame's pts is never before its dts, so the pts up to the last dts read have no such gap; the
    later ones are left out (otherwise the gaps look like a variable frame rate)."""
    pts, last_dts, packets = [], None, packets or VFR_SAMPLE_PACKETS
    if container.format.name == "image2":  # an image sequence: a constant rate, and a packet is a whole file
        return pts, False
    try:
        for packet in demux_timed(container, stream):
            if packet.pts is not None and not packet.is_discard:
                pts.append(packet.pts)
                last_dts = packet.dts if packet.dts is not None else last_dts
            if len(pts) >= packets:
                break
        else:
            return sorted(pts), True
    except av.error.FFmpegError:
        pass
    return sorted(p for p in pts if last_dts is None or p <= last_dts), False


# How much of a file's end is read for its video's last frames: more than any GOP's reordering.
_END_READ_SECONDS = 10


def video_end(path: str | Path, index: int) -> Fraction | None:
    """When video stream `index`'s last frame stops being shown, in seconds: the greatest pts + duration of its
    packets (a GIF's last delay, Matroska's durations); in MP4 and QuickTime, whose packet durations are steps in
    decoding order (with B-frames another frame's pts + its duration could reach seconds past, over a pause), the
    greatest pts + the last packet's duration. None where the packets carry no duration (or no time: raw streams,
    image sequences)."""
    last = _last_frame(path, index)
    return None if last is None or last.end is None else last.end * last.time_base


def last_frame_start(path: str | Path, index: int) -> Fraction | None:
    """When video stream `index`'s last frame starts, in seconds from its first frame's start (as --start counts);
    None where its packets carry no time."""
    last = _last_frame(path, index)
    return None if last is None or last.pts is None else (last.pts - last.first_pts) * last.time_base


def video_length(path: str | Path, index: int) -> Fraction | None:
    """How long video stream `index` shows frames, in seconds from its first frame's start (as --start and --end
    count) to its last frame's end (`video_end`); None where its packets do not say."""
    last = _last_frame(path, index)
    return None if last is None or last.end is None else (last.end - last.first_pts) * last.time_base


@dataclass(frozen=True)
class _LastFrame:
    pts: int | None  # the greatest pts of the stream's packets
    end: int | None  # when the last frame stops being shown (see video_end), None where the packets do not say
    first_pts: int  # the stream's first frame's (`first_frame_pts`)
    time_base: Fraction


def _last_frame(path: str | Path, index: int) -> _LastFrame | None:
    """The last frame of video stream `index`, read from the file's end; None for an image sequence. Read once per
    file as it is (the writer, the segments and the declared rate ask)."""
    from vsr.pipelines.sequences import is_sequence  # which imports this module

    if is_sequence(Path(path)):
        return None
    stat = os.stat(path)
    return _read_last_frame(str(path), index, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_last_frame(path: str, index: int, size: int, mtime_ns: int) -> _LastFrame | None:
    with open_input(path) as container:
        stream = container.streams[index]
        if container.format.name == "image2":
            return None
        gif = container.format.name == "gif"  # (read from its start: see demux_timed)
        if not gif and container.duration and container.duration > _END_READ_SECONDS * av.time_base:
            try:
                container.seek(container.duration + (container.start_time or 0) - _END_READ_SECONDS * av.time_base,
                               backward=True)
            except av.FFmpegError:
                pass  # read from the start instead
        decoding_steps = "mov" in container.format.name.split(",")
        last_pts = last_duration = end = None
        try:
            for packet in demux_timed(container, stream):
                if packet.pts is not None and packet.size:
                    last_pts = packet.pts if last_pts is None else max(last_pts, packet.pts)
                    last_duration = packet.duration
                    if packet.duration:
                        end = max(end or 0, packet.pts + packet.duration)
        except av.FFmpegError:  # damage at the end: the frames before it still end where their packets say
            pass
        if decoding_steps:
            end = last_pts + last_duration if last_pts is not None and last_duration else None
        return _LastFrame(last_pts, end, first_frame_pts(container, stream), stream.time_base)


def is_variable_rate(path: str | Path, index: int) -> bool | None:
    """Whether video stream `index` of `path` varies its frame rate, judged as `probe` judges it (None: too few
    timestamps to tell), or holds its last frame longer than the others: a GIF's last delay, a slide show's last
    slide. (FFmpeg's average rate counts to that frame's end, none of the steps: 2.56 fps for ten frames 0.1 s
    apart, the last held 3 s, which an AVI, timed by the declared rate, played at that pace.)"""
    with open_input(path) as container:
        pts = _sample_pts(container, container.streams[index])[0]
    variable = _is_vfr(pts)
    if variable is False:
        last = _last_frame(path, index)
        step = sorted(b - a for a, b in zip(pts, pts[1:]))[(len(pts) - 1) // 2]  # (the median step, as _is_vfr's)
        variable = last is not None and last.end is not None and last.end - last.pts > step + max(1, step // 50)
    return variable


def _is_vfr(pts: list[int]) -> bool | None:
    steps = [b - a for a, b in zip(pts, pts[1:])]
    if len(steps) < 2:
        return None
    # Timestamps rounded to the time base (29.97 fps in 1/1000 gives 33 and 34) are still constant frame rate.
    return max(steps) - min(steps) > max(1, sorted(steps)[len(steps) // 2] // 50)


def _summary(stream: av.stream.Stream) -> StreamSummary:
    audio = stream.type == "audio" and stream.codec_context is not None
    return StreamSummary(
        index=stream.index,
        type=stream.type,
        codec=_codec_name(stream),
        language=stream.metadata.get("language") if stream.metadata.get("language") != "und" else None,
        title=stream.metadata.get("title"),
        sample_rate=stream.codec_context.sample_rate if audio else None,
        channels=stream.codec_context.channels if audio else None,
        layout=stream.codec_context.layout.name if audio else None,
        # (as passthrough tells a timecode track, which the output gets anew from this start)
        timecode=stream.metadata.get("timecode") if stream.type == "data" else None,
        flags=_flags(stream),
        filename=stream.metadata.get("filename"),
    )


def _flags(stream: av.stream.Stream) -> tuple[str, ...]:
    if stream.disposition & Disposition.attached_pic:
        return ("cover picture",)
    if stream.type not in ("audio", "subtitle"):  # (a video's default flag chooses only among videos: see probe)
        return ()
    return tuple(name for flag, name in TRACK_FLAGS.items() if stream.disposition & flag)


def _codec_name(stream: av.stream.Stream) -> str:
    # The codec's own name, as ffprobe prints it ("subrip"), not the decoder's ("srt"); an attachment's file type.
    if stream.codec_context is not None:
        return stream.codec_context.codec.canonical_name
    return getattr(stream, "mimetype", None) or "unknown"


def _color_range(value: int, pix_fmt: str) -> str:
    if value in (1, 2):  # AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG
        return "tv" if value == 1 else "pc"
    # Unspecified: the JPEG-range YUV formats and RGB are full range, everything else limited (as FFmpeg assumes).
    full = pix_fmt.startswith("yuvj") or pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "rgba", "bgra"))
    return "pc" if full else "tv"


def _tag_seconds(value: str | None) -> float | None:
    # "00:01:02.500000000" -> 62.5
    try:
        hours, minutes, seconds = value.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def _reason(error: Exception) -> str:
    # FFmpeg errors read "[Errno N] Invalid data found when processing input: 'path'": keep the words only.
    return getattr(error, "strerror", None) or str(error).split(":")[0]


def _si(value: float) -> str:
    for prefix, factor in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= factor:
            return f"{value / factor:.1f} {prefix}"
    return f"{value:.0f} "


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "unknown duration"
    minutes, rest = divmod(round(seconds * 1000), 60_000)  # (in ms first: 59.9996 s read 0:00:60.000)
    return f"{minutes // 60}:{minutes % 60:02d}:{rest / 1000:06.3f}"


@dataclass(frozen=True)
class Hdr10Metadata:
    """HDR10's static metadata (SMPTE ST 2086 mastering display, CTA-861.3 light levels), as decoders report it."""

    primaries: tuple[tuple[float, float], ...] | None  # CIE 1931 xy of the mastering display's red, green, blue
    white_point: tuple[float, float] | None
    luminance: tuple[float, float] | None  # (min, max) in cd/m²
    max_cll: int | None = None  # brightest pixel of the content, cd/m²
    max_fall: int | None = None  # brightest frame average, cd/m²


def decoding_errors(decode: Callable[[], T]) -> tuple[T, list[str]]:
    """`decode()`'s result, and the errors FFmpeg logged in this thread meanwhile (PyAV keeps its log quiet): a JPEG
    cut short decodes without an exception or a corrupt flag, its missing rows made up ("overread 8")."""
    with ffmpeg_log(av.logging.ERROR):
        with av.logging.Capture(local=True) as logs:
            result = decode()
    return result, [message.strip() for _, _, message in logs]


# The levels asked for by the `ffmpeg_log` blocks open now, and what was set before the first of them. FFmpeg's log
# level is one for the process, and the blocks overlap across threads (an encoder opening on the encoder thread while
# the decoder thread reads a JPEG sequence): each restoring what it found would leave the level of whichever opened
# last.
_log_lock = threading.Lock()
_log_levels: list[int] = []
_log_before: tuple[int | None, bool] = (None, True)


@contextlib.contextmanager
def ffmpeg_log(level: int):
    """FFmpeg's log heard at `level` (at least) meanwhile, every line: PyAV drops a line that repeats the last one it
    logged, however long before, so the second JPEG cut short in a process ("overread 8" again) went unreported."""
    global _log_before
    with _log_lock:
        if not _log_levels:
            _log_before = av.logging.get_level(), av.logging.get_skip_repeated()
        _log_levels.append(level)
        av.logging.set_level(max(_log_levels))  # (the most verbose: a larger number)
        av.logging.set_skip_repeated(False)
    try:
        yield
    finally:
        with _log_lock:
            _log_levels.remove(level)
            if _log_levels:
                av.logging.set_level(max(_log_levels))
            else:
                av.logging.set_level(_log_before[0])
                av.logging.set_skip_repeated(_log_before[1])


def frame_side_data(frame: av.VideoFrame) -> dict:
    """A decoded frame's side data, bytes by type; empty where PyAV cannot list it: PyAV 18 fails on any type its
    enum lacks, such as the EXIF that FFmpeg 8 attaches to JPEG frames (none of which carry captions or HDR)."""
    try:
        sides = frame.side_data
        # Iterating gives the side data up to PyAV 18.1.0, their types (a mapping's keys) from 18.1.1 on.
        found = (sides[entry] if isinstance(entry, av.sidedata.sidedata.Type) else entry for entry in sides)
        return {side.type: bytes(side) for side in found}
    except ValueError:
        return {}


def read_hdr10(path: str | Path, index: int) -> Hdr10Metadata | None:
    """The HDR10 metadata of video stream `index`, from its first frame's side data (where decoders put the SEI
    messages or container fields that carry it); None if it has none or its first frame cannot be decoded (the
    decoder then says why)."""
    with open_input(path) as container:
        if container.streams[index].codec_context.name in STILL_IMAGE_DECODERS:
            return None  # (and PyAV 18 crashes on the side data of a frame with an ICC profile: captions.py)
        try:
            frame = next(container.decode(container.streams[index]), None)
        except av.FFmpegError:
            return None
    sides = frame_side_data(frame) if frame is not None else {}
    mastering = sides.get(av.sidedata.sidedata.Type.MASTERING_DISPLAY_METADATA)
    light = sides.get(av.sidedata.sidedata.Type.CONTENT_LIGHT_LEVEL)
    if mastering is None and light is None:
        return None
    primaries = white_point = luminance = None
    if mastering is not None:
        # AVMasteringDisplayMetadata: 10 AVRationals (r, g, b primaries' x and y; white x, y; min, max luminance),
        # then has_primaries and has_luminance.
        *fractions, has_primaries, has_luminance = struct.unpack("<22i", mastering[:88])
        values = [n / d if d else 0.0 for n, d in zip(fractions[0::2], fractions[1::2])]
        if has_primaries:
            primaries = ((values[0], values[1]), (values[2], values[3]), (values[4], values[5]))
            white_point = (values[6], values[7])
        if has_luminance:
            luminance = (values[8], values[9])
    max_cll, max_fall = struct.unpack("<2I", light[:8]) if light is not None else (None, None)
    return Hdr10Metadata(primaries, white_point, luminance, max_cll, max_fall)
