"""Tiny real video clips for tests, made with PyAV (no ffmpeg command line needed).

    from tests.pipelines.clips import make_clip
    path = make_clip(tmp_path / "a.mp4", frames=8, audio="aac", subtitles=True)

The container is chosen from the file name (.mp4, .mkv, .mov, .webm, ...). Every frame is different
(`frame_pattern`: smooth gradients plus a moving square, so decoders can be compared pixel by pixel), or, with
`color_chart=True`, the same chart of saturated colors (`CHART_COLORS`) for color-conversion checks.
Frame `i` is given `clip_pts(frames, fps, vfr)[0][i]` in the time base `clip_pts(...)[1]` (1/fps, or 1/1000 for
VFR); the muxer may rescale it, so compare against what the file says (ffprobe is a good independent judge).

Also here: `make_held_clip` (drawings held for several frames, as animation is), `make_letterboxed_clip` (black bars),
`make_gray_steps_clip` (each frame its own gray, at the times given), `make_audio_only`, `corrupt_middle`, `truncate`
(damaged copies), `remove_gif_delays` (a GIF's frames without their delay blocks) and `BAD_INPUTS` (files every
reader must refuse).
The judges (`ffprobe`, `ffprobe_frame_pts`, ...) are in media_fixtures.py.
"""

from __future__ import annotations

import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Frame durations of a variable-frame-rate clip, cycled.
VFR_STEPS_MS = (40, 40, 80, 20, 120)

# Levels between the frames of `make_gray_steps_clip` (30 frames fit in 8 bits).
GRAY_STEP = 8

# The drawing each frame of `make_held_clip` shows (drawn on threes, mostly), and the first frame of each drawing.
HELD = (0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4)
DRAWN = (0, 3, 6, 8, 11)

# 8 bars, left to right: red, green, blue, yellow, cyan, magenta, mid gray, orange.
CHART_COLORS = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (128, 128, 128),
    (200, 100, 50),
)


def frame_pattern(index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame `index` of a test clip: H×W×3 uint8 RGB, gradients plus a square that moves each frame."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = (x * 255 // max(width - 1, 1) + index * 8) % 256
    rgb[..., 1] = y * 255 // max(height - 1, 1)
    rgb[..., 2] = 128
    side = max(min(width, height) // 4, 2)
    left = (index * 3) % max(width - side, 1)
    top = (index * 2) % max(height - side, 1)
    rgb[top : top + side, left : left + side] = (255, 255, 255) if index % 2 else (0, 0, 0)
    return rgb


def chart_pattern(size: tuple[int, int]) -> np.ndarray:
    """The color chart: `len(CHART_COLORS)` vertical bars of flat color, H×W×3 uint8 RGB."""
    width, height = size
    rgb = np.empty((height, width, 3), np.uint8)
    bar = width // len(CHART_COLORS)
    for i, color in enumerate(CHART_COLORS):
        rgb[:, i * bar : (i + 1) * bar if i < len(CHART_COLORS) - 1 else width] = color
    return rgb


def clip_pts(frames: int, fps: int, vfr: bool) -> tuple[list[int], Fraction]:
    """The pts given to each frame and their time base: 0, 1, 2... in 1/fps, or VFR_STEPS_MS cycled in 1/1000."""
    if not vfr:
        return list(range(frames)), Fraction(1, fps)
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += VFR_STEPS_MS[i % len(VFR_STEPS_MS)]
    return pts, Fraction(1, 1000)


def make_clip(
    path: str | Path,
    *,
    frames: int = 8,
    size: tuple[int, int] = (64, 48),
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    vfr: bool = False,
    audio: str | None = None,
    subtitles: bool = False,
    chapters: list[tuple[float, float, str]] | None = None,
    color_chart: bool = False,
    color: tuple[str, str] | None = None,
    rotation: int | None = None,
    metadata: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Write a tiny clip to `path` and return it.

    frames, size (width, height), fps: the video; `vfr` makes frame durations irregular (VFR_STEPS_MS).
    codec, pix_fmt, options: the video encoder and its options (e.g. pix_fmt="yuv420p10le" for 10-bit).
    audio: None, "aac" or "opus" (stereo 48 kHz sine as long as the video, language "eng").
    subtitles: add one SubRip subtitle stream (language "fre", title "French") with one line.
    chapters: (start s, end s, title) each. color: (matrix, range) to convert and tag with, e.g. ("bt709", "tv").
    rotation: display rotation in degrees, written as the stream's display matrix. metadata: container tags.
    """
    path = Path(path)
    pts, time_base = clip_pts(frames, fps, vfr)
    duration_s = float(pts[-1] * time_base) + 1 / fps if frames else 0.0
    matrix, color_range = color if color is not None else (None, None)
    with av.open(str(path), "w") as out:
        out.metadata.update(metadata or {})
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = pix_fmt
        video.codec_context.time_base = time_base
        video.options = dict(options or {})
        if matrix is not None:
            _tag_color(video.codec_context, matrix, color_range)
        if rotation is not None:
            video.set_display_rotation(rotation)
        audio_stream = _add_audio(out, audio) if audio else None
        subtitle_source = _add_subtitles(out, path.parent) if subtitles else None
        if chapters:
            out.set_chapters(
                [
                    {"id": i + 1, "start": round(start * 1000), "end": round(end * 1000),
                     "time_base": Fraction(1, 1000), "metadata": {"title": title}}
                    for i, (start, end, title) in enumerate(chapters)
                ]
            )
        for i in range(frames):
            rgb = chart_pattern(size) if color_chart else frame_pattern(i, size)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if matrix is not None:
                frame = frame.reformat(
                    format=pix_fmt, dst_colorspace=_SWS_MATRIX[matrix], dst_color_range=_SWS_RANGE[color_range]
                )
            frame.pts, frame.time_base = pts[i], time_base
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio_stream is not None:
            _write_audio(out, audio_stream, duration_s)
        if subtitle_source is not None:
            _copy_subtitles(out, subtitle_source)
    return path


# reformat() names for the (matrix, range) values this module accepts.
_SWS_MATRIX = {"bt709": "itu709", "bt601": "itu601", "smpte170m": "smpte170m", "bt2020nc": "bt2020"}
_SWS_RANGE = {"tv": "MPEG", "pc": "JPEG"}
_AVCOL_SPC = {"bt709": 1, "bt601": 5, "smpte170m": 6, "bt2020nc": 9}  # AVColorSpace
_AVCOL_PRI = {"bt709": 1, "bt601": 5, "smpte170m": 6, "bt2020nc": 9}  # AVColorPrimaries
_AVCOL_TRC = {"bt709": 1, "bt601": 6, "smpte170m": 6, "bt2020nc": 14}  # AVColorTransferCharacteristic


def _tag_color(codec_context: av.codec.context.CodecContext, matrix: str, color_range: str) -> None:
    codec_context.colorspace = _AVCOL_SPC[matrix]
    codec_context.color_primaries = _AVCOL_PRI[matrix]
    codec_context.color_trc = _AVCOL_TRC[matrix]
    codec_context.color_range = 1 if color_range == "tv" else 2  # AVCOL_RANGE_MPEG / _JPEG


def _add_audio(out: av.container.OutputContainer, codec: str) -> av.audio.stream.AudioStream:
    stream = out.add_stream(codec, rate=48000)
    stream.layout = "stereo"
    stream.metadata["language"] = "eng"
    return stream


def _write_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    rate, chunk = 48000, 960  # 20 ms: a frame size both AAC (any) and Opus accept
    total = max(int(seconds * rate) // chunk, 1) * chunk
    t = np.arange(total) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    resampler = av.AudioResampler(format=stream.format, layout="stereo", rate=rate, frame_size=stream.frame_size)
    for start in range(0, total, chunk):
        frame = av.AudioFrame.from_ndarray(np.stack([tone[start : start + chunk]] * 2), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for resampled in resampler.resample(frame):
            out.mux(stream.encode(resampled))
    for resampled in resampler.resample(None):
        out.mux(stream.encode(resampled))
    out.mux(stream.encode())


def _add_subtitles(out: av.container.OutputContainer, folder: Path) -> tuple:
    # PyAV cannot open a SubRip encoder by itself; copying the stream of a real .srt file works.
    srt = Path(tempfile.mkstemp(suffix=".srt", dir=folder)[1])
    srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nHello\n\n")
    source = av.open(str(srt))
    stream = out.add_stream_from_template(source.streams[0])
    stream.metadata.update({"language": "fre", "title": "French"})
    return source, stream, srt


def _copy_subtitles(out: av.container.OutputContainer, subtitle_source: tuple) -> None:
    source, stream, srt = subtitle_source
    with source:
        for packet in source.demux(source.streams[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    srt.unlink()


def make_held_clip(path: str | Path, noise: int = 0, codec: str = "ffv1") -> Path:
    """25 fps, frame i showing drawing HELD[i], plus, with `noise`, values up to ±noise levels that differ in every
    frame (as lossy compression leaves a held drawing). FFV1 (lossless, every frame a keyframe, where segments may
    start), or libx264 at CRF 18."""
    generator = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        if codec == "ffv1":
            stream.codec_context.gop_size = 1
        else:
            stream.options = {"crf": "18"}
        for drawing in HELD:
            rgb = frame_pattern(drawing, (64, 48)).astype(np.int16)
            rgb += generator.integers(-noise, noise + 1, rgb.shape, dtype=np.int16)
            frame = av.VideoFrame.from_ndarray(rgb.clip(0, 255).astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame.reformat(format=stream.pix_fmt)))
        out.mux(stream.encode())
    return Path(path)


def make_interlaced_clip(path: str | Path, *, frames: int = 8, size: tuple[int, int] = (128, 96)) -> Path:
    """A 25i H.264 clip, top field first, made with PyAV alone (the GPU machines have no ffmpeg command line): frame
    i weaves the even lines of `frame_pattern(2i)` with the odd lines of `frame_pattern(2i + 1)`, a 50p source's,
    coded losslessly as interlaced (its field order says so: `probe(...).video.interlaced`)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", "g": "4", "flags": "+ildct+ilme", "x264-params": "tff=1"}
        for index in range(frames):
            rgb = frame_pattern(2 * index, size)
            rgb[1::2] = frame_pattern(2 * index + 1, size)[1::2]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return Path(path)


def make_gray_steps_clip(path: str | Path, pts: list[int], time_base: Fraction, *,
                         size: tuple[int, int] = (64, 48)) -> Path:
    """H.264 whose frame `i` is flat gray, GRAY_STEP × (i + 1) levels, at `pts[i]` in `time_base` (the muxer keeps
    it, MP4 included): which frame a picture shows is told by its mean level, whatever scaled or encoded it."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = stream.time_base = time_base
        for index, frame_pts in enumerate(pts):
            gray = np.full((size[1], size[0], 3), GRAY_STEP * (index + 1), np.uint8)
            frame = av.VideoFrame.from_ndarray(gray, format="rgb24")
            frame.pts, frame.time_base = frame_pts, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return Path(path)


def make_letterboxed_clip(path: str | Path, *, frames: int = 24, picture: tuple[int, int] = (64, 28),
                          bars: tuple[int, int, int, int] = (10, 10, 0, 0), caption_from: int | None = None,
                          black_until: int = 0) -> Path:
    """FFV1 (lossless, every frame a keyframe) at 25 fps: `frame_pattern` pictures of `picture` (width, height) inside
    black bars of (top, bottom, left, right) pixels. From frame `caption_from` on, a white line (a burned-in
    subtitle) sits in the middle of the bottom bar; frames before `black_until` are black throughout (a fade)."""
    top, bottom, left, right = bars
    width, height = picture[0] + left + right, picture[1] + top + bottom
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        stream.codec_context.gop_size = 1
        for index in range(frames):
            rgb = np.zeros((height, width, 3), np.uint8)
            if index >= black_until:
                rgb[top:top + picture[1], left:left + picture[0]] = frame_pattern(index, picture)
            if caption_from is not None and index >= caption_from:
                rgb[height - bottom // 2, width // 4:width * 3 // 4] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="bgr0")))
        out.mux(stream.encode())
    return Path(path)


def make_audio_only(path: str | Path, codec: str = "aac", seconds: float = 0.2) -> Path:
    """Write a file with one audio stream and no video."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        _write_audio(out, _add_audio(out, codec), seconds)
    return path


def corrupt_middle(path: str | Path, dest: str | Path, *, length: int = 64, seed: int = 0) -> Path:
    """Copy `path` to `dest` with `length` random bytes written over the middle of the file."""
    data = bytearray(Path(path).read_bytes())
    start = len(data) // 2
    data[start : start + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    Path(dest).write_bytes(bytes(data))
    return Path(dest)


def truncate(path: str | Path, dest: str | Path, *, keep: float = 0.6) -> Path:
    """Copy the first `keep` fraction of `path` to `dest`, as an interrupted download would leave it."""
    data = Path(path).read_bytes()
    Path(dest).write_bytes(data[: int(len(data) * keep)])
    return Path(dest)


# A GIF's Graphic Control Extension, the block before a frame's image that holds its delay: introducer, label and
# size (4), then the 4 bytes and an empty sub-block.
GRAPHIC_CONTROL = b"\x21\xf9\x04"


def remove_gif_delays(path: str | Path, frames: set[int]) -> Path:
    """Rewrite `path`, a GIF with a Graphic Control Extension before each frame's image (Pillow writes one for
    each frame given a delay), without those of `frames` (their indices): such frames say no delay, as some tools
    write them."""
    path = Path(path)
    head, *controls = path.read_bytes().split(GRAPHIC_CONTROL)  # each control, with its frame up to the next
    with av.open(str(path)) as container:  # (a control's bytes found inside an image would be one too many)
        assert len(controls) == sum(1 for packet in container.demux(video=0) if packet.size)
    path.write_bytes(head + b"".join(control[5:] if index in frames else GRAPHIC_CONTROL + control
                                     for index, control in enumerate(controls)))
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


def _text(path):
    path.write_text("this is not a video\n" * 20)
    return path


def _unknown_codec(path):
    # A Matroska file whose video codec ID nobody knows.
    data = make_clip(path).read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_XXXXX/XXX/XXX")
    path.write_bytes(data)
    return path


# Inputs every reader must refuse with one InputError line: name -> function(folder) that makes it there.
BAD_INPUTS = {
    "missing": lambda folder: folder / "missing.mp4",
    "directory": lambda folder: folder,
    "empty": lambda folder: _empty(folder / "empty.mp4"),
    "text": lambda folder: _text(folder / "text.mp4"),
    "audio only": lambda folder: make_audio_only(folder / "audio.m4a"),
    "unknown codec": lambda folder: _unknown_codec(folder / "unknown.mkv"),
    # mp4 keeps its index at the end: cut short, nothing can be found.
    "truncated mp4": lambda folder: truncate(make_clip(folder / "whole.mp4", frames=20), folder / "cut.mp4"),
}


def make_pgs_subtitles(path: str | Path, cues: list[tuple[float, float]], size: tuple[int, int] = (64, 48)) -> Path:
    """A Blu-ray subtitle (PGS, .sup) file: for each (show, hide) in seconds, a 16×8 box of one color shown, then
    cleared. Bitmap cues have no duration: each display set shows until the next."""
    width, height = size

    def segment(seconds: float, kind: int, body: bytes) -> bytes:
        time = round(seconds * 90_000)
        return b"PG" + struct.pack(">IIBH", time, time, kind, len(body)) + body

    def composition(number: int, shown: bool) -> bytes:  # PCS (0x16) and WDS (0x17)
        objects = struct.pack(">HBBHH", 0, 0, 0, 8, 30) if shown else b""
        state = 0x80 if shown else 0x00  # an epoch start, or a normal case clearing the screen
        pcs = struct.pack(">HHBHBBBB", width, height, 0x10, number, state, 0, 0, int(shown)) + objects
        return pcs, struct.pack(">BBHHHH", 1, 0, 8, 30, 16, 8)

    data = b""
    for number, (show, hide) in enumerate(cues):
        pcs, wds = composition(2 * number, True)
        palette = struct.pack(">BB", 0, 0) + bytes([1, 180, 128 + 10 * number, 128 - 10 * number, 255])
        rle = (b"\x01" * 16 + b"\x00\x00") * 8  # 8 lines of 16 pixels of color 1, each ended by 00 00
        ods = struct.pack(">HBB", 0, 0, 0xC0) + struct.pack(">I", len(rle) + 4)[1:] + struct.pack(">HH", 16, 8) + rle
        data += b"".join(segment(show, kind, body) for kind, body in
                         ((0x16, pcs), (0x17, wds), (0x14, palette), (0x15, ods), (0x80, b"")))
        pcs, wds = composition(2 * number + 1, False)
        data += b"".join(segment(hide, kind, body) for kind, body in ((0x16, pcs), (0x17, wds), (0x80, b"")))
    Path(path).write_bytes(data)
    return Path(path)
