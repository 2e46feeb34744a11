"""Tiny real media for encoder and passthrough tests, made and judged with the ffmpeg / ffprobe command line.

The command line is an independent maker and judge: it builds what PyAV cannot easily (Opus + SRT + a font
attachment + chapters + tags in one .mkv) and reads the outputs back without going through vsr's code. Clips are
64×48 with 10 frames at 25 fps unless said otherwise, so every test stays fast.

    path = make_rich_mkv(tmp_path / "rich.mkv")
    info = video_info(path)                     # a VideoStreamInfo built from ffprobe
    batches = decoded_batches(path, scale=2)    # RGB FrameBatches, 2× nearest-upscaled, as an engine would give
    write_upscaled(path, tmp_path / "out.mkv")  # those batches through a VideoWriter
    write_upscaled(path, out, window=(1.0, 2.0), trim=True)  # a preview: only the frames of [1 s, 2 s)
    ffprobe(path), ffprobe_frame_pts(path), video_pts(path), framemd5(path, "a:0")  # judges for any test
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vsr.pipelines.colour import SWSCALE_RGB16_WHITE
from vsr.pipelines.encode import VideoWriter
from vsr.pipelines.frames import ColorInfo, FrameBatch, VideoStreamInfo

requires_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="the ffmpeg and ffprobe command line tools judge these tests (apt-get install ffmpeg)",
)

# Tests that make an output's temporary file a link to /dev/full (writes fail with ENOSPC) run in one pytest-xdist
# worker: the writer locks its temporary, so two at once saw /dev/full locked by each other ("another vsr run is
# writing it"). That of the Ray tests (test_ray_batch.py), one of which does so too.
DEV_FULL = pytest.mark.xdist_group("ray")

ATTACHMENT_NAME = "font.ttf"
ATTACHMENT_MIMETYPE = "application/x-truetype-font"
ATTACHMENT_BYTES = bytes(range(256)) * 2  # not a real font: the muxer copies bytes, it does not parse them
SUBTITLES = "1\n00:00:00,000 --> 00:00:00,200\nHello\n\n2\n00:00:00,200 --> 00:00:00,400\nWorld\n"
CHAPTERS = (("One", 0, 200), ("Two", 200, 400))  # title, start ms, end ms
# For previews of [1 s, 2 s) of a 3 s clip: cues and chapters before, across, inside and after the window.
PREVIEW_SUBTITLES = (
    "1\n00:00:00,500 --> 00:00:01,200\nBefore and into\n\n2\n00:00:01,300 --> 00:00:01,600\nInside\n\n"
    "3\n00:00:01,800 --> 00:00:02,400\nInto and after\n\n4\n00:00:02,500 --> 00:00:02,900\nAfter\n"
)
PREVIEW_CHAPTERS = (("Intro", 0, 800), ("Middle", 800, 1500), ("End", 1500, 3000))
CONTAINER_TAGS = {"title": "vsr fixture", "COMMENT": "made for the encoder tests"}
# Frame durations (ms) of the variable-frame-rate clip, cycled.
VFR_STEPS_MS = (40, 40, 80, 20, 120)

_BT709_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


def _video_source(frames: int, size: tuple[int, int], pattern: str = "testsrc2") -> list[str]:
    width, height = size
    return ["-f", "lavfi", "-i", f"{pattern}=size={width}x{height}:rate=25:duration={frames / 25}"]


def _audio_source(frames: int) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={frames / 25}"]


def make_rich_mkv(path: Path, *, frames: int = 10, size: tuple[int, int] = (64, 48), subtitles: str = SUBTITLES,
                  chapters: tuple[tuple[str, int, int], ...] = CHAPTERS) -> Path:
    """H.264 (BT.709) + Opus (French, titled) + SRT (English, forced) + a font attachment + chapters + tags."""
    srt = path.with_name(path.stem + ".srt")
    srt.write_text(subtitles)
    font = path.with_name(ATTACHMENT_NAME)
    font.write_bytes(ATTACHMENT_BYTES)
    ffmetadata = path.with_name(path.stem + ".ffmetadata")
    ffmetadata.write_text(";FFMETADATA1\n" + "".join(
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={start}\nEND={end}\ntitle={title}\n" for title, start, end in chapters
    ))
    tags = [arg for key, value in CONTAINER_TAGS.items() for arg in ("-metadata", f"{key}={value}")]
    ffmpeg(
        *_video_source(frames, size), *_audio_source(frames), "-i", srt, "-i", ffmetadata,
        "-map", "0:v", "-map", "1:a", "-map", "2:s", "-map_chapters", "3",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", *_BT709_TAGS,
        "-c:a", "libopus", "-b:a", "32k", "-c:s", "srt",
        "-attach", font, "-metadata:s:t:0", f"mimetype={ATTACHMENT_MIMETYPE}",
        *tags, "-metadata:s:a:0", "language=fra", "-metadata:s:a:0", "title=French audio",
        "-metadata:s:s:0", "language=eng", "-disposition:s:0", "forced",
        path,
    )
    return path


def make_aac_mp4(path: Path, *, frames: int = 10, size: tuple[int, int] = (64, 48)) -> Path:
    """H.264 (BT.709) + AAC (language set) in .mp4."""
    ffmpeg(*_video_source(frames, size), *_audio_source(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p",
           *_BT709_TAGS, "-c:a", "aac", "-b:a", "64k", "-metadata:s:a:0", "language=deu", path)
    return path


def make_cover_mp4(path: Path, *, frames: int = 10, size: tuple[int, int] = (64, 48)) -> Path:
    """H.264 + a PNG cover picture (a second video stream with the attached_pic disposition), as music videos
    and downloads often have."""
    ffmpeg(*_video_source(frames, size), "-f", "lavfi", "-i", "color=red:size=32x32", "-map", "0", "-map", "1",
           "-frames:v:1", "1", "-c:v:0", "libx264", "-pix_fmt", "yuv420p", "-c:v:1", "png",
           "-disposition:v:1", "attached_pic", path)
    return path


def make_vfr_clip(path: Path, *, frames: int = 10, size: tuple[int, int] = (64, 48), gop: int = 250) -> Path:
    """H.264 whose frame durations cycle through VFR_STEPS_MS (.mp4 or .mkv), a keyframe every `gop` frames."""
    starts = np.concatenate([[0], np.cumsum([VFR_STEPS_MS[i % len(VFR_STEPS_MS)] for i in range(frames - 1)])])
    expression = "+".join(f"eq(N\\,{n})*{ms / 1000}" for n, ms in enumerate(starts))  # "\\," escapes the filter graph
    # settb: a 1 ms time base before setpts, and the encoder keeps it, so that no frame time is rounded.
    ffmpeg(*_video_source(frames, size), "-vf", f"settb=1/1000,setpts=({expression})/TB",
           "-fps_mode", "passthrough", "-enc_time_base", "1:1000",
           "-c:v", "libx264", "-g", str(gop), "-pix_fmt", "yuv420p", "-video_track_timescale", "1000", path)
    return path


def make_telecined_clip(path: Path, film: Path, *, film_frames: int = 40, size: tuple[int, int] = (128, 96),
                        gop: int = 15) -> Path:
    """Film at 24000/1001 fps (testsrc2, every frame different; lossless FFV1 into `film`: the truth) telecined by
    3:2 pulldown (FFmpeg's `telecine=pattern=23`) into 30000/1001 interlaced H.264 (lossless, top field first, a
    keyframe every `gop` frames and nowhere else), with AAC audio, as NTSC DVDs of films are made."""
    width, height = size
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=24000/1001", "-frames:v", str(film_frames),
           "-c:v", "ffv1", "-pix_fmt", "yuv420p", film)
    seconds = film_frames * 1001 / 24000
    ffmpeg("-i", film, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-vf", "telecine=pattern=23", "-c:v", "libx264", "-qp", "0", "-g", str(gop), "-sc_threshold", "0",
           "-flags", "+ildct+ilme", "-x264opts", "tff=1", "-c:a", "aac", "-b:a", "64k", path)
    return path


def make_soft_telecined_clip(path: Path, *, film_frames: int = 24, size: tuple[int, int] = (128, 96)) -> Path:
    """Film at 24000/1001 fps (testsrc2) coded as MPEG-2 progressive frames, soft-telecined as NTSC DVDs of films
    are: the stream says 30000/1001 fps and each picture's flags say which field comes first and whether it is shown
    again (top first repeated, bottom first, bottom first repeated, top first: 3, 2, 3, 2 fields), set in the
    bitstream as DGPulldown sets them (FFmpeg's encoder has no such option). Muxed into `path` (.mkv as MakeMKV keeps
    it, .vob, ...) by ffmpeg -c copy, whose parser times the frames by their fields: 50 and 33 ms apart in turn."""
    coded = path.with_name(path.stem + ".film.m2v")
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size[0]}x{size[1]}:rate=24000/1001", "-frames:v", str(film_frames),
           "-c:v", "mpeg2video", "-bf", "0", "-q:v", "2", coded)
    stream, pictures, at = bytearray(coded.read_bytes()), 0, 0
    while (at := stream.find(b"\x00\x00\x01", at)) >= 0:
        code, extension = stream[at + 3], stream[at + 4] >> 4 if at + 4 < len(stream) else None
        if code == 0xB3:  # sequence header: frame_rate_code 4, 30000/1001
            stream[at + 7] = stream[at + 7] & 0xF0 | 4
        elif code == 0xB5 and extension == 1:  # sequence extension: progressive_sequence 0 (fields may repeat)
            stream[at + 5] &= ~0x08
        elif code == 0xB5 and extension == 8:  # picture coding extension: top_field_first, repeat_first_field
            top_first, repeat = ((1, 1), (0, 0), (0, 1), (1, 0))[pictures % 4]
            stream[at + 7] = stream[at + 7] & ~0x82 | top_first << 7 | repeat << 1
            stream[at + 8] |= 0x80  # progressive_frame: the two fields are one moment
            pictures += 1
        at += 4
    coded.write_bytes(stream)
    ffmpeg("-fflags", "+genpts", "-i", coded, "-c", "copy", path)
    coded.unlink()
    return path


def make_10bit_clip(path: Path, *, frames: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    """H.264 High 10, yuv420p10le, BT.709."""
    ffmpeg(*_video_source(frames, size), "-c:v", "libx264", "-pix_fmt", "yuv420p10le", *_BT709_TAGS, path)
    return path


def make_color_chart(path: Path, *, frames: int = 4, size: tuple[int, int] = (64, 48)) -> Path:
    """SMPTE HD color bars, 8-bit BT.709 (tagged), nearly lossless (qp 0, 4:4:4) so the colors are the bars'."""
    ffmpeg(*_video_source(frames, size, "smptehdbars"), "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p",
           *_BT709_TAGS, path)
    return path


def make_rotated_clip(path: Path, *, rotation: int = 90, frames: int = 6, size: tuple[int, int] = (64, 48),
                      gop: int = 250) -> Path:
    """A clip whose display matrix says "rotate by `rotation` degrees" (ffmpeg 5.1's command line cannot set
    one, so PyAV writes it), a keyframe every `gop` frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": str(gop), "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.set_display_rotation(rotation)
        for index in range(frames):
            image = np.full((size[1], size[0], 3), index * 20, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def ffprobe(path: str | Path, *args: str) -> dict:
    """ffprobe's JSON for `args`; with none, the format, streams and chapters: an independent judge of vsr's output."""
    args = args or ("-show_format", "-show_streams", "-show_chapters")
    result = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args, str(path)], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def ffprobe_frame_pts(path: str | Path) -> list[int]:
    """The pts of every decoded frame of the first video stream, in decoding output order, as ffprobe reports them."""
    frames = ffprobe(path, "-select_streams", "v:0", "-show_entries", "frame=pts")["frames"]
    return [frame["pts"] for frame in frames if "pts" in frame]


def ffprobe_streams(path: Path) -> list[dict]:
    return ffprobe(path, "-show_streams")["streams"]


def video_pts(path: Path) -> list[int]:
    """The first video stream's packet pts, sorted (presentation order), in its own time base."""
    packets = ffprobe(path, "-select_streams", "v:0", "-show_entries", "packet=pts")["packets"]
    return sorted(int(p["pts"]) for p in packets)


def video_times(path: Path) -> list[Fraction]:
    """The first video stream's presentation times in seconds (comparable across time bases)."""
    time_base = Fraction(ffprobe_streams_of(path, "v:0")[0]["time_base"])
    return [pts * time_base for pts in video_pts(path)]


def ffprobe_streams_of(path: Path, selector: str) -> list[dict]:
    return ffprobe(path, "-select_streams", selector, "-show_streams")["streams"]


def framemd5(path: Path, selector: str) -> str:
    """ffmpeg's per-packet checksums of the streams `selector` picks (e.g. "0:a"), copied without decoding."""
    result = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", selector, "-c", "copy",
                             "-f", "framemd5", "-"], check=True, capture_output=True, text=True)
    return result.stdout


def decoded_frame_md5s(path: Path) -> list[str]:
    """The MD5 of each decoded frame of the first video stream, in order, as ffmpeg computes them (the pictures alone:
    not the packets' sizes, durations or the stream's extradata, which two encodings of the same frames may differ
    in)."""
    result = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "framemd5",
                             "-"], check=True, capture_output=True, text=True)
    return [line.split(",")[-1].strip() for line in result.stdout.splitlines() if not line.startswith("#")]


def packet_spans(path: Path, selector: str) -> list[tuple[Fraction, Fraction]]:
    """(start, end) in seconds of each packet of the stream `selector` picks (e.g. "a:0"), in file order."""
    found = ffprobe(path, "-select_streams", selector, "-show_entries", "stream=time_base:packet=pts,duration")
    time_base = Fraction(found["streams"][0]["time_base"])
    return [(int(p["pts"]) * time_base, (int(p["pts"]) + int(p.get("duration", 0))) * time_base)
            for p in found["packets"]]


def playback_errors(path: Path) -> str:
    """What ffprobe and a full decode (`ffmpeg -v error -i path -f null -`) complain about; "" for a clean file."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", str(path)],
                           capture_output=True, text=True)
    decode = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                            capture_output=True, text=True)
    failed = [f"{name} exited with {run.returncode}" for name, run in (("ffprobe", probe), ("ffmpeg", decode))
              if run.returncode]
    return "\n".join([*failed, probe.stderr, decode.stdout, decode.stderr]).strip()


def video_info(path: Path) -> VideoStreamInfo:
    """The first video stream described as a decoder would, read by ffprobe."""
    stream = ffprobe_streams_of(path, "v:0")[0]
    rate = Fraction(stream["avg_frame_rate"]) if stream.get("avg_frame_rate", "0/0") != "0/0" else None
    rotation = next((int(s["rotation"]) for s in stream.get("side_data_list", []) if "rotation" in s), 0)
    pix_fmt = stream["pix_fmt"]
    return VideoStreamInfo(
        index=stream["index"],
        codec=stream["codec_name"],
        width=stream["width"],
        height=stream["height"],
        pix_fmt=pix_fmt,
        bit_depth=av.VideoFormat(pix_fmt).components[0].bits,
        time_base=Fraction(stream["time_base"]),
        average_rate=rate,
        frame_count=len(video_pts(path)),
        duration=float(stream["duration"]) if "duration" in stream else None,
        color=ColorInfo(
            primaries=stream.get("color_primaries"),
            transfer=stream.get("color_transfer"),
            matrix=stream.get("color_space"),
            range=stream.get("color_range", "tv"),
        ),
        rotation=rotation,
        base_rate=Fraction(stream["r_frame_rate"]) if stream.get("r_frame_rate", "0/0") != "0/0" else None,
    )


def decode_rgb(path: Path, *, deep: bool = False,
               window: tuple[float, float] | None = None) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of the first video stream (those whose time in seconds is in [start, end) with `window`) as
    H×W×3 RGB (uint8, or uint16 when `deep`, in swscale's 16-bit scale: white is about SWSCALE_RGB16_WHITE),
    converted by swscale with the matrix and range the stream is tagged with, and the frames' pts."""
    images, pts = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if window is not None and not window[0] <= frame.pts * frame.time_base < window[1]:
                continue
            matrix = "itu709" if frame.colorspace == 1 else "itu601"  # AVCOL_SPC_BT709 == 1
            rgb = frame.reformat(format="rgb48le" if deep else "rgb24", src_colorspace=matrix,
                                 src_color_range=frame.color_range or 1)
            images.append(rgb.to_ndarray())
            pts.append(frame.pts)
    return images, pts


def decoded_batches(path: Path, *, scale: int = 2, batch_size: int = 4, deep: bool = False,
                    window: tuple[float, float] | None = None) -> list[FrameBatch]:
    """The clip (or the frames of `window`, with their source pts, as a decoder gives a preview) as the engine
    would hand it to the encoder: RGB batches upscaled `scale`× (nearest), uint8, or float in [0, 1] when `deep`."""
    images, pts = decode_rgb(path, deep=deep, window=window)
    batches = []
    for start in range(0, len(images), batch_size):
        array = np.stack(images[start:start + batch_size]).astype(np.float32 if deep else np.uint8)
        frames = torch.from_numpy(array).permute(0, 3, 1, 2)
        if deep:
            frames = (frames / SWSCALE_RGB16_WHITE).clamp(0, 1)
        frames = frames.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3).contiguous()
        batches.append(FrameBatch(frames=frames, pts=pts[start:start + batch_size]))
    return batches


def write_upscaled(source: Path, output: Path, *, scale: int = 2, deep: bool = False,
                   window: tuple[float, float] | None = None, **options) -> Path:
    """Feed the decoded (only the frames of `window`, when given), `scale`× nearest-upscaled source to a
    VideoWriter, as the engine would."""
    info = video_info(source)
    with VideoWriter(output, source=source, source_info=info, width=info.width * scale,
                     height=info.height * scale, **options) as writer:
        for batch in decoded_batches(source, scale=scale, deep=deep, window=window):
            writer.write(batch)
    return output
