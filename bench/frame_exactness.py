"""A frame-exactness sweep: many small sources, each upscaled by `vsr upscale`, judged by ffprobe and ffmpeg alone.

    .venv/bin/python bench/frame_exactness.py                 # the whole matrix (102 runs, 10 min on 2 busy cores)
    .venv/bin/python bench/frame_exactness.py -k mpeg2 -k vfr # only the cases whose names contain one of these
    .venv/bin/python bench/frame_exactness.py --keep DIR      # keep the sources and outputs (else a temporary folder)
    .venv/bin/python bench/frame_exactness.py --options       # the second matrix (40 runs, 4 min on 2 busy cores)

vsr promises every frame of the source, at its time, shown as long as in the source, nothing dropped or doubled, the
audio copied. Each case makes a source with the ffmpeg command line (testsrc2 with a bar that moves 5 pixels a frame,
so that no two frames of a clip are alike, and a sine tone), runs `python -m vsr upscale SRC -m bicubic --outscale 2
-o OUT` for the default output and some explicit containers, and compares, from ffprobe and ffmpeg's decoding only:
- the number of frames;
- each frame's time, from the first frame (where the file starts is the container's: MPEG-TS's muxer adds 1.4 s),
  to within one tick of the output stream's time base;
- each frame's duration: the step to the next frame, and the last frame's own duration where both files give one;
- each frame's picture: the output scaled down 2x (area) against the source frame of the same number, PSNR on luma
  above 20 dB and higher than against the frames beside it (a frame shifted, doubled or dropped fails; the right one
  scores 26-28 dB, bicubic up and area down of testsrc2's sharp edges, a neighbour about 11);
- the first audio stream: packet count, and the md5 of its decoded samples (copied, not re-encoded; or as ffmpeg's
  own stream copy into that container decodes, where it shows AAC priming an MP4 edit list hid), where its first
  sample is against the first frame, to a millisecond (Matroska's unit), and the span of its packets' times, to 2 ms
  (decoding ignores those times; players do not); in an .mp4 or .mov output, the samples its edit list shows (FFmpeg
  decodes a last packet whole: a codec's padding shown as sound there is seen only so), against the source's, to the
  edit list's millisecond.
Previews (--start/--end) are judged against the source frames of that span, counted from the first frame; runs in
segments (--devices cpu,cpu) as one run.
The second matrix (--options) judges the outputs that are no video file and the options that change frames or
times, each against what it promises, worked out here from the source's truth: a GIF's centiseconds (rounded from
the first frame, halves up; a frame under 2 cs after the one kept before left out, with a warning; the last shown
until the source's end), an APNG's exact delays (read from its fcTL chunks), image sequences out (numbered from 1,
read at the source's rate) and in (`f%04d.png --fps R`: the default output's numbers kept, a video's frames at i/R),
--frames N and --start/--end on variable-rate sources, --dedup (held drawings: a neighbour that is the same picture is
no rival), --deinterlace field (judged against the 50p the 25i was woven from: twice the frames, halfway),
--deinterlace ivtc (against the film frames, evenly at 24000/1001), --crop auto (against the picture without its
bars), --height/--width (the size; the frames scaled back to the source's), and 10-bit and HDR sources (HEVC Main 10
in .mp4, .mkv and .ts).
It is a tool, not a test: the matrix takes minutes (about 4 s a run, most of it starting Python and torch), and a
failure here is a lead to reproduce in a focused test. The table it prints says, per case, what held and what not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FPS = 25
FRAMES = 30
# A bar 6 pixels wide moving 5 pixels a frame, drawn into testsrc2 (whose own moving parts are too small at 64x48
# to tell every frame from the one before it).
MOVING_BAR = "geq=lum='if(lt(abs(X-mod(N*5\\,W)),3),235,lum(X\\,Y))':cb='cb(X\\,Y)':cr='cr(X\\,Y)'"
PSNR_MIN_DB = 20.0
SAME_PICTURE_DB = 40.0  # two source frames this close are the same picture (held), up to compression


@dataclass
class Case:
    """One source: its file name, the ffmpeg options that encode it, and the outputs to make of it."""
    name: str
    suffix: str
    video: list[str]  # codec options
    audio: list[str] = field(default_factory=lambda: ["-c:a", "aac"])  # [] for no audio
    size: str = "64x48"
    rate: str = str(FPS)
    filters: str = ""  # more filters after the bar (e.g. setpts for variable frame rate)
    pix_fmt: str = "yuv420p"
    extra: list[str] = field(default_factory=list)  # output options (e.g. -output_ts_offset)
    outputs: list[str] = field(default_factory=lambda: [""])  # "" = the default output; else a suffix
    derive: str = ""  # "editlist": the source is a stream copy of the made file from 0.3 s; "audiofirst"
    windows: list[tuple[float, float]] = field(default_factory=list)  # --start/--end previews to judge
    segments: bool = False  # also judge a run in segments on two CPU workers


def cases() -> list[Case]:
    h264_b = ["-c:v", "libx264", "-bf", "3", "-b_strategy", "2", "-g", "10"]
    return [
        Case("h264_bf3_mp4", ".mp4", h264_b, outputs=["", ".mkv", ".ts", ".avi", ".mov", ".nut", ".flv"],
             windows=[(0.3, 0.7), (0.5, 10.0)], segments=True),
        Case("h264_opengop_mkv", ".mkv", ["-c:v", "libx264", "-x264-params", "open-gop=1:keyint=10:bframes=3"],
             audio=["-c:a", "libopus"], outputs=["", ".mp4"], windows=[(0.3, 0.9)], segments=True),
        Case("h264_ts", ".ts", h264_b, outputs=["", ".mp4"], windows=[(0.3, 0.7)]),
        Case("h264_avi_bframes", ".avi", h264_b, audio=["-c:a", "libmp3lame"], outputs=["", ".mp4"],
             windows=[(0.3, 0.7)]),
        Case("h264_flv", ".flv", h264_b, outputs=["", ".mkv"]),
        Case("h264_nut", ".nut", h264_b, outputs=["", ".mp4"]),
        Case("h264_444_odd_mp4", ".mp4", ["-c:v", "libx264", "-bf", "2"], size="65x47", pix_fmt="yuv444p",
             outputs=["", ".mkv"]),
        Case("h264_10bit_mkv", ".mkv", ["-c:v", "libx264", "-bf", "2"], pix_fmt="yuv420p10le", outputs=["", ".mp4"]),
        Case("h264_ntsc_mp4", ".mp4", h264_b, rate="30000/1001", outputs=["", ".mkv", ".webm"]),
        Case("h264_film_mkv", ".mkv", h264_b, rate="24000/1001", outputs=["", ".mp4", ".avi"]),
        Case("hevc_mp4", ".mp4", ["-c:v", "libx265", "-x265-params", "bframes=3:keyint=10:log-level=error"],
             outputs=["", ".mkv", ".ts"]),
        Case("hevc_10bit_mkv", ".mkv", ["-c:v", "libx265", "-x265-params", "log-level=error"],
             pix_fmt="yuv420p10le", outputs=["", ".mp4"]),
        Case("vp9_webm", ".webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"],
             audio=["-c:a", "libopus"], outputs=["", ".webm", ".mp4"]),
        Case("h264_eac3_mkv", ".mkv", h264_b, audio=["-c:a", "eac3"], outputs=["", ".avi", ".mp4"]),
        Case("av1_svt_mkv", ".mkv", ["-c:v", "libsvtav1", "-preset", "12"], size="64x64",  # (SVT's least height)
             outputs=["", ".mp4"]),
        Case("av1_aom_mp4", ".mp4", ["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "40"], outputs=[""]),
        Case("mpeg2_ts", ".ts", ["-c:v", "mpeg2video", "-bf", "2", "-g", "12"], audio=["-c:a", "mp2"],
             outputs=["", ".mp4", ".mkv"], windows=[(0.3, 0.7)], segments=True),
        Case("mpeg2_mpg", ".mpg", ["-c:v", "mpeg2video", "-bf", "2", "-g", "12"], audio=["-c:a", "mp2"],
             outputs=["", ".mkv"], windows=[(0.3, 0.7)]),
        Case("mpeg2_mxf", ".mxf", ["-c:v", "mpeg2video", "-bf", "2", "-g", "12"], audio=["-c:a", "pcm_s16le"],
             outputs=["", ".mxf"]),
        Case("mpeg2_interlaced_ts", ".ts", ["-c:v", "mpeg2video", "-flags", "+ildct+ilme", "-top", "1", "-bf", "2"],
             audio=["-c:a", "mp2"], size="64x48", outputs=["", ".mkv"]),
        Case("h264_interlaced_mkv", ".mkv", ["-c:v", "libx264", "-flags", "+ildct+ilme", "-top", "1"],
             outputs=[""]),
        Case("mpeg4_avi_bframes", ".avi", ["-c:v", "mpeg4", "-bf", "2", "-vtag", "XVID"],
             audio=["-c:a", "libmp3lame"], outputs=["", ".mp4", ".avi"], windows=[(0.3, 0.7)]),
        Case("mpeg4_mp4", ".mp4", ["-c:v", "mpeg4", "-bf", "2"], outputs=[""]),
        Case("prores_mov", ".mov", ["-c:v", "prores_ks", "-profile:v", "2"], audio=["-c:a", "pcm_s16le"],
             pix_fmt="yuv422p10le", outputs=["", ".mov"]),
        Case("ffv1_odd_mkv", ".mkv", ["-c:v", "ffv1"], size="65x47", audio=["-c:a", "flac"], outputs=["", ".nut"]),
        Case("mjpeg_avi", ".avi", ["-c:v", "mjpeg", "-q:v", "2"], pix_fmt="yuvj420p", audio=["-c:a", "pcm_s16le"],
             outputs=[""]),
        Case("huffyuv_avi", ".avi", ["-c:v", "huffyuv"], pix_fmt="yuv422p", audio=["-c:a", "pcm_s16le"],
             outputs=[""]),
        Case("vfr_jitter_mkv", ".mkv", h264_b, extra=["-fps_mode", "passthrough", "-enc_time_base:v", "1:1000"],
             filters=",settb=1/1000,setpts='(N*40+if(eq(mod(N\\,3)\\,1)\\,13\\,0)+if(gt(N\\,20)\\,200\\,0))/1000/TB'",
             outputs=["", ".mp4", ".ts", ".avi"], windows=[(0.3, 0.7)], segments=True),
        Case("vfr_jitter_mp4", ".mp4", h264_b,
             extra=["-fps_mode", "passthrough", "-enc_time_base:v", "1:1000", "-video_track_timescale", "1000"],
             filters=",settb=1/1000,setpts='(N*40+if(eq(mod(N\\,4)\\,1)\\,17\\,0))/1000/TB'", outputs=["", ".mkv"]),
        Case("offset10_mp4", ".mp4", h264_b, extra=["-output_ts_offset", "10"], outputs=["", ".mkv", ".ts"],
             windows=[(0.3, 0.7)]),
        Case("offset10_ts", ".ts", h264_b, extra=["-output_ts_offset", "10"], outputs=["", ".mp4"]),
        Case("offset10_mkv", ".mkv", h264_b, extra=["-output_ts_offset", "10"], outputs=[""]),
        Case("editlist_mp4", ".mp4", h264_b, derive="editlist", outputs=["", ".mkv", ".ts"], windows=[(0.2, 0.5)]),
        Case("audiofirst_mp4", ".mp4", h264_b, derive="audiofirst", outputs=["", ".mkv", ".ts"]),
        Case("audiofirst_mkv", ".mkv", h264_b, derive="audiofirst", outputs=["", ".mp4"]),
        Case("rotate90_mp4", ".mp4", h264_b, extra=["-metadata:s:v", "rotate=90"], outputs=["", ".mkv", ".ts"]),
        Case("noaudio_mp4", ".mp4", h264_b, audio=[], outputs=["", ".mkv"]),
        Case("noaudio_mkv_vp9", ".mkv", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"],
             audio=[], outputs=[""]),
    ]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=kwargs.pop("text", True), **kwargs)


def make_source(case: Case, folder: Path) -> Path:
    path = folder / (case.name + case.suffix)
    made = folder / ("made-" + case.name + case.suffix) if case.derive else path
    seconds = FRAMES / FPS
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={case.size}:rate={case.rate}:duration={seconds}"]
    if case.derive == "audiofirst":  # the video starts 0.2 s after the audio (not its first frame repeated from 0)
        inputs = ["-itsoffset", "0.2"] + inputs
    if case.audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds + 0.2}"]
    filters = f"format={case.pix_fmt if 'j' not in case.pix_fmt else 'yuv420p'},{MOVING_BAR}{case.filters}"
    filters += f",format={case.pix_fmt}"
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-vf", filters, *case.video, *case.audio,
               *case.extra, *(["-fps_mode", "passthrough"] if case.derive == "audiofirst" else []), made]
    result = run(command)
    if result.returncode:
        raise RuntimeError(f"making {made.name}: {result.stderr.strip()[-400:]}")
    if case.derive == "editlist":  # a stream copy from 0.3 s: mid-GOP, so an edit list hides the frames before it
        result = run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "0.3", "-i", made, "-c", "copy", path])
        if result.returncode:
            raise RuntimeError(f"making {path.name}: {result.stderr.strip()[-400:]}")
    elif made != path:
        made.rename(path)
    return path


def ffprobe_json(path: Path, *args: str) -> dict:
    result = run(["ffprobe", "-v", "error", "-of", "json", *args, path])
    return json.loads(result.stdout or "{}")


@dataclass
class Media:
    """What ffprobe and ffmpeg say of one file."""
    video_tick: Fraction
    times: list[float]  # each video frame's time, in decoding output order
    durations: list[float | None]
    audio_start: float | None  # its first decoded frame's time (an Opus pre-skip, AAC's priming dropped)
    audio_lead: float  # how long the first audio packet starts before the stream's start (AAC priming hidden by an
    # edit list in MP4): containers without edit lists show those samples, and every other stream moves that much later
    audio_packets: int | None
    audio_md5: str | None
    frames: list[np.ndarray]  # luma, as shown (rotation applied)
    audio_span: float | None = None  # from its first packet's time to its last's: how a reader times the packets
    audio_shown: int | None = None  # its decoded samples, in MP4 and MOV only those its edit list shows
    audio_edited: bool = False  # whether an edit list said how many
    audio_rate: int | None = None
    size: tuple[int, int] = (0, 0)  # the video's width and height as stored
    codec: str = ""  # "hevc Main 10 yuv420p10le": codec, profile, pixel format


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def probe_media(path: Path, downscale: bool, size: tuple[int, int] | None = None,
                input_options: tuple[str, ...] = ()) -> Media:
    """`downscale`: the frames scaled down 2x (area); or to `size`. `input_options` go before the input (an image
    sequence's -framerate and -start_number)."""
    info = ffprobe_json(path, *input_options, "-show_format", "-show_streams")
    streams = info.get("streams", [])
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = next((s for s in streams if s["codec_type"] == "audio"), None)
    frames = ffprobe_json(path, *input_options, "-select_streams", "v:0", "-show_entries",
                          "frame=best_effort_timestamp_time,pkt_duration_time,duration_time").get("frames", [])
    times = [_float(f.get("best_effort_timestamp_time")) for f in frames]
    durations = [_float(f.get("duration_time", f.get("pkt_duration_time"))) for f in frames]
    end = (_float(video.get("start_time")) or 0.0) + (_float(video.get("duration")) or 0.0)
    if "mov" in info["format"].get("format_name", "") and durations and durations[-1] is None and times \
            and times[-1] is not None and end > times[-1]:
        # ffprobe 5.1 gives a variable-rate MP4's frames no duration (FFmpeg 8 does): its end is the stream's
        durations[-1] = end - times[-1]
    audio_packets = audio_md5 = audio_start = audio_span = audio_shown = audio_rate = None
    audio_edited = False
    audio_lead = 0.0
    if audio is not None:
        packets = ffprobe_json(path, "-select_streams", "a:0", "-show_entries", "packet=pts_time").get("packets", [])
        packet_times = [time for p in packets if (time := _float(p.get("pts_time"))) is not None]
        first_pts = _float(packets[0].get("pts_time")) if packets else None
        audio_span = packet_times[-1] - packet_times[0] if packet_times else None
        if first_pts is not None and _float(audio.get("start_time")) is not None:
            audio_lead = max(0.0, _float(audio.get("start_time")) - first_pts)
        decoded = ffprobe_json(path, "-select_streams", "a:0", "-read_intervals", "%+#40", "-show_entries",
                               "frame=best_effort_timestamp_time").get("frames", [])
        audio_start = min((_float(f.get("best_effort_timestamp_time")) for f in decoded), default=None)
        counted = ffprobe_json(path, "-select_streams", "a:0", "-count_packets", "-show_entries",
                               "stream=nb_read_packets")
        audio_packets = int(counted["streams"][0]["nb_read_packets"])
        decoded = run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-f", "md5", "-"])
        audio_md5 = decoded.stdout.strip()
        audio_rate = int(audio["sample_rate"])
        audio_shown, audio_edited = _shown_samples(path, info["format"].get("format_name", ""), audio["index"])
    scale = f"scale={size[0]}:{size[1]}:flags=area," if size else "scale=iw/2:ih/2:flags=area," if downscale else ""
    decoded = run(["ffmpeg", "-nostdin", "-v", "error", *input_options, "-i", path, "-map", "0:v:0",
                   "-fps_mode", "passthrough", "-vf", scale + "format=gray", "-f", "image2pipe", "-c:v", "pgm", "-"],
                  text=False)
    return Media(video_tick=Fraction(video["time_base"]), times=times, durations=durations,
                 audio_start=audio_start, audio_lead=audio_lead,
                 audio_packets=audio_packets, audio_md5=audio_md5, frames=_pgm_frames(decoded.stdout),
                 audio_span=audio_span, audio_shown=audio_shown, audio_rate=audio_rate,
                 audio_edited=audio_edited,
                 size=(int(video["width"]), int(video["height"])),
                 codec=" ".join(str(video.get(k, "")) for k in ("codec_name", "profile", "pix_fmt")))


def _shown_samples(path: Path, format_name: str, index: int) -> tuple[int, bool]:
    """The samples of audio stream `index` that a player shows: those ffmpeg decodes, in MP4 and MOV no more than its
    edit list's duration (which FFmpeg's demuxer says in its trace log, in the track's samples, and does not cut a
    last packet to), and whether an edit list said so."""
    pcm = run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", f"0:{index}", "-ac", "1", "-f", "s16le", "-"],
              text=False).stdout
    samples = len(pcm) // 2
    if "mov" in format_name:
        trace = run(["ffprobe", "-v", "trace", path]).stderr
        edits = re.findall(rf"Processing st: {index}, edit list \d+ - media time: -?\d+, duration: (\d+)", trace)
        if len(edits) == 1:
            return min(samples, int(edits[0])), True
    return samples, False


def _decoded_samples(media: Media) -> int | None:
    """How many samples ffmpeg decodes `media`'s audio to, where known (not past an MP4 edit list, which it ignores)."""
    return None if media.audio_edited else media.audio_shown


def _pgm_frames(data: bytes) -> list[np.ndarray]:
    frames, offset = [], 0
    while offset < len(data):
        fields, position = [], offset
        while len(fields) < 4:  # magic, width, height, maximum, each after white space
            while data[position:position + 1].isspace():
                position += 1
            end = position
            while not data[end:end + 1].isspace():
                end += 1
            fields.append(data[position:end])
            position = end
        position += 1
        width, height = int(fields[1]), int(fields[2])
        frames.append(np.frombuffer(data, np.uint8, width * height, position).reshape(height, width))
        offset = position + width * height
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return -1.0
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if error == 0 else 10 * math.log10(255 ** 2 / error)


def judge(source: Media, output: Media, window: tuple[float, float] | None = None,
          audio_reference_md5: str | None = None, skipped_audio: bool = False) -> tuple[list[str], list[str]]:
    """What is wrong with `output` as vsr's upscale of `source` (of `window` of it), and notes on what is right only
    as ffmpeg makes it: short lines, none if right. `audio_reference_md5`: the decoded audio of ffmpeg's own stream
    copy of the source's audio into the output's container (AAC's priming is decoded where no edit list hides it)."""
    problems, notes = [], []
    source_times, source_frames, source_durations = source.times, source.frames, source.durations
    if window is not None:  # the frames of [start, end) counted from the video's first frame; the preview's first 0
        first = min(t for t in source.times if t is not None)
        kept = [i for i, t in enumerate(source.times) if t is not None and window[0] <= t - first < window[1] - 1e-9]
        source_times = [source.times[i] for i in kept]
        source_frames = [source.frames[i] for i in kept if i < len(source.frames)]
        source_durations = [source.durations[i] for i in kept]
    if len(output.times) != len(source_times):
        problems.append(f"frames {len(output.times)} != {len(source_times)}")
    tick = float(output.video_tick) + 1e-6
    # Times from the first video frame: where the file starts is the container's business (MPEG-TS's muxer adds
    # its own delay); where the audio starts against the video is judged below.
    origin = min((t for t in source_times if t is not None), default=0.0)
    output_origin = min((t for t in output.times if t is not None), default=0.0)
    errors = []
    untimed = sum(1 for s in source_times if s is None)
    if untimed:  # (ffprobe 5.1 times no frame decoded after the last packet of an AVI with B-frames)
        notes.append(f"{untimed} source frame(s) without a time, not judged by time")
    for i, (s, o) in enumerate(zip(source_times, output.times)):
        if s is None:
            continue
        if o is None or abs((o - output_origin) - (s - origin)) > tick:
            errors.append((i, None if s is None else round(s - origin, 4),
                           None if o is None else round(o - output_origin, 4)))
    if errors:
        problems.append(f"times off at {len(errors)} frames, first (i, src, out) {errors[:3]}")
    steps_source = np.diff([t for t in source_times if t is not None])
    steps_output = np.diff([t for t in output.times if t is not None])
    if len(steps_source) == len(steps_output) and len(steps_source):
        bad = np.flatnonzero(np.abs(steps_source - steps_output) > 2 * tick)
        if len(bad):
            problems.append(f"steps off at {len(bad)}, first {bad[0]}: {steps_source[bad[0]]:.4f} "
                            f"-> {steps_output[bad[0]]:.4f}")
    last_source, last_output = (source_durations or [None])[-1], (output.durations or [None])[-1]
    # (a duration stored in a coarser tick, Matroska's milliseconds, may be rounded there: 41 ms for 1001/24000 s)
    duration_tick = tick + float(source.video_tick)
    if window is None and last_source and last_output and abs(last_source - last_output) > duration_tick:
        problems.append(f"last duration {last_output:.4f} != {last_source:.4f}")
    if window is None and last_source and not last_output:  # (MPEG-TS and AVI store none: the player guesses)
        notes.append(f"the container stores no last frame duration (source {last_source:.4f})")
    content = []
    for i, frame in enumerate(output.frames):
        # A neighbour that is the same picture (a drawing held, --dedup) is no rival: any of them is right
        rivals = [j for j in (i - 1, i + 1) if 0 <= j < len(source_frames) and i < len(source_frames)
                  and psnr(source_frames[i], source_frames[j]) < SAME_PICTURE_DB]
        scores = {j: psnr(frame, source_frames[j]) for j in (i, *rivals) if 0 <= j < len(source_frames)}
        if i not in scores or scores[i] < PSNR_MIN_DB or max(scores, key=scores.get) != i:
            content.append((i, {j: round(v, 1) for j, v in scores.items()}))
    if len(output.frames) != len(output.times):
        problems.append(f"decoded {len(output.frames)} frames, ffprobe {len(output.times)}")
    if content:
        problems.append(f"pictures wrong at {len(content)} frames, first {content[:2]}")
    if window is None and source.audio_packets is not None and output.audio_packets is None and skipped_audio:
        notes.append("audio left out with a warning: the container cannot hold it")
    elif window is None and source.audio_packets is not None:
        if output.audio_packets != source.audio_packets:
            problems.append(f"audio packets {output.audio_packets} != {source.audio_packets}")
        # (ffmpeg's copy, cut to the output's length: the output is to lose no sound at its end)
        primed = (source.audio_shown or 0) + round(source.audio_lead * (source.audio_rate or 0))
        if output.audio_md5 != source.audio_md5:
            if output.audio_md5 == audio_reference_md5 and (output.audio_shown or 0) >= primed:
                notes.append("audio decodes as ffmpeg's stream copy into this container does, not as the source")
            else:
                problems.append("audio samples differ")
        if output.audio_edited and None not in (source.audio_shown, output.audio_shown) and not \
                0 <= output.audio_shown - source.audio_shown < output.audio_rate / 1000:  # (rounded up to its ms)
            problems.append(f"audio shows {output.audio_shown} samples, source {source.audio_shown}")
        if None not in (source.audio_span, output.audio_span) and abs(source.audio_span - output.audio_span) > 0.002:
            # (the samples decode alike whatever the packets' times: an AVI's E-AC-3 read back a quarter as long)
            problems.append(f"audio packets span {output.audio_span:.3f} s, source {source.audio_span:.3f}")
        lead_source = source.audio_start - origin  # the audio's first decoded sample against the first frame
        if output.audio_start is None:
            problems.append("audio missing")
            return problems, notes
        lead_output = output.audio_start - output_origin
        sync = max(tick, 0.0011)  # (Matroska's and MP4 edit lists' milliseconds)
        if abs(lead_source - lead_output) > sync and source.audio_lead > 0 and output.audio_lead == 0 and abs(
                lead_source - source.audio_lead - lead_output) <= sync:
            notes.append(f"video {source.audio_lead * 1000:.1f} ms after the audio's first samples, as in ffmpeg's "
                         "copy: the container shows the AAC priming the source's MP4 edit list hid")
        elif abs(lead_source - lead_output) > sync:
            problems.append(f"audio starts {lead_output:+.4f} s from the video, source {lead_source:+.4f}")
    return problems, notes


def reference_audio_md5(source: Path, suffix: str, folder: Path, samples: int | None = None) -> str | None:
    """The decoded audio of ffmpeg's own stream copy of the source's first audio stream into a `suffix` file; its
    first `samples` (as many as the output decodes to: ffmpeg's copy plays an MP4's end padding in .mkv, vsr's
    does not; None: all of them)."""
    copy = folder / f"audio-reference{suffix}"
    made = run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", source, "-map", "0:a:0", "-c", "copy", copy])
    if made.returncode:
        return None
    cut = ["-af", f"atrim=end_sample={samples}"] if samples else []
    decoded = run(["ffmpeg", "-nostdin", "-v", "error", "-i", copy, "-map", "0:a:0", *cut, "-f", "md5", "-"])
    return decoded.stdout.strip()


def upscale(source: Path, output: Path | None, *options: str, pattern: str = ".x2.*") -> tuple[Path | None, str]:
    """vsr's upscale of `source` into `output` (a folder: the default output in it, found by `pattern` after the
    source's stem; None: the default output beside the source), the file written and vsr's warnings."""
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    sized = any(option in ("--width", "--height") for option in options)  # (a size instead of a factor)
    command = [sys.executable, "-m", "vsr", "upscale", source, "-m", "bicubic", *([] if sized else ["--outscale", "2"]),
               "--overwrite", *options]
    if output is not None:
        command += ["-o", f"{output}/" if output.is_dir() else output]
    result = run(command, env=environment)
    message = (result.stderr.strip() or result.stdout.strip()).splitlines()
    warnings = [line for line in message if "warning" in line.lower()]
    if result.returncode:
        return None, (message[-1] if message else f"exit {result.returncode}")
    written = output if output is not None else source.parent
    if output is not None and output.is_dir():  # the default output, named by vsr
        matches = sorted(output.glob(source.stem + pattern))
        written = matches[0] if matches else output
    return written, "; ".join(warnings)


def run_case(case: Case, folder: Path) -> list[tuple[str, str, list[str], str]]:
    """Rows of (case, run, problems, note)."""
    try:
        source = make_source(case, folder)
        truth = probe_media(source, downscale=False)
    except Exception as error:  # noqa: BLE001 - a source ffmpeg cannot make is a row, not a crash
        return [(case.name, "make", [str(error)], "")]
    rows = []
    runs: list[tuple[str, list[str], Path, tuple[float, float] | None]] = []
    for suffix in case.outputs:
        label = suffix or "default"
        output = folder / "out" / f"{case.name}.{label.strip('.')}{suffix}" if suffix else folder / "out"
        runs.append((label, [], output, None))
    # Previews and segments go into the source's container; H.264 in an MPEG program stream (.mpg) keeps the time
    # of only the first frame in each PES packet, as ffmpeg writes it, and tiny frames share packets: into .mkv.
    suffix = ".mkv" if case.suffix == ".mpg" else case.suffix
    for start, end in case.windows:
        runs.append((f"window {start:g}-{end:g}", ["--start", str(start), "--end", str(end)],
                     folder / "out" / f"{case.name}.w{start:g}{suffix}", (start, end)))
    if case.segments:
        runs.append(("segments cpu,cpu", ["--devices", "cpu,cpu", "--segment-seconds", "0.4"],
                     folder / "out" / f"{case.name}.seg{suffix}", None))
    for label, options, output, window in runs:
        (folder / "out").mkdir(exist_ok=True)
        written, note = upscale(source, output, *options)
        if written is None:
            rows.append((case.name, label, [f"vsr failed: {note}"], ""))
            continue
        try:
            output_media = probe_media(written, downscale=True)
            reference = reference_audio_md5(source, written.suffix, folder, _decoded_samples(output_media)) \
                if truth.audio_md5 else None
            problems, notes = judge(truth, output_media, window, reference, skipped_audio="not copying audio" in note)
        except Exception as error:  # noqa: BLE001
            problems, notes = [f"judging failed: {error!r}"], []
        rows.append((case.name, f"{label} -> {written.suffix}", problems, "; ".join(notes + [note] if note else notes)))
    return rows


# The second matrix (--options): options that change the frames or their times, and the outputs that are no video
# file (GIF, APNG, image sequences). Each run is judged against what the option promises, worked out here from the
# source's truth by ffprobe and ffmpeg alone (`expect`), with the same judge.

@dataclass
class OptionRun:
    """One vsr run of an option source: its label, options, output and what the output must be."""
    label: str
    options: list[str]
    output: str = ""  # "" = the default output; a suffix (".gif"); or a sequence pattern ("%06d.png")
    expect: Callable[[Media], Media] = lambda truth: truth  # the truth as the option changes it
    window: tuple[float, float] | None = None  # a --start/--end preview, judged as the first matrix judges them
    size: tuple[int, int] | None = None  # the output's size as stored; None: twice the truth's
    codec: str = ""  # the output's "codec profile pix_fmt" must start with this
    warning: str = ""  # vsr must warn with this (a substring)
    sequence_rate: str = "25"  # an image sequence output is read at this rate
    pattern: str = ".x2.*"  # the default output's name after the source's stem


@dataclass
class OptionSource:
    """A source made by `make(folder)`, which returns the file and the truth the runs are judged against."""
    name: str
    make: Callable[[Path], tuple[Path, Media]]
    runs: list[OptionRun]


def ffmpeg(*args) -> None:
    result = run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args])
    if result.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(map(str, args))[-200:]}: {result.stderr.strip()[-400:]}")


def clip_source(case: Case) -> Callable[[Path], tuple[Path, Media]]:
    """A source of the first matrix's kind, the truth its own frames."""
    def make(folder: Path) -> tuple[Path, Media]:
        source = make_source(case, folder)
        return source, probe_media(source, downscale=False)
    return make


def animation_source(suffix: str, steps: tuple[int, ...] = (6, 2, 4)) -> Callable[[Path], tuple[Path, Media]]:
    """A GIF or APNG of 30 frames `steps` cs apart in turn (variable delays), the last shown 0.5 s. The APNG is
    made by ffmpeg (6, 2, 4 cs); the GIF by Pillow (ffmpeg 5.1's GIF muxer wrote those steps as 8, 1 and 3 cs). A
    step under 2 cs is shown 10 cs by browsers and by ffmpeg 5.1's demuxer, the truth here."""
    def make(folder: Path) -> tuple[Path, Media]:
        source = folder / f"animation{suffix}"
        if suffix == ".gif":
            from PIL import Image  # (the bench's only use of Pillow: vsr's venv has it)
            ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={FPS}:duration={FRAMES / FPS}",
                   "-vf", f"format=yuv420p,{MOVING_BAR}", folder / "frame%03d.png")
            frames = [Image.open(path).convert("RGB") for path in sorted(folder.glob("frame*.png"))]
            delays = [10 * steps[i % len(steps)] for i in range(len(frames) - 1)] + [500]
            frames[0].save(source, save_all=True, append_images=frames[1:], duration=delays, loop=0)
        else:
            times = "(N*4+if(eq(mod(N\\,3)\\,1)\\,2\\,0))/100/TB"
            ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={FPS}:duration={FRAMES / FPS}",
                   "-vf", f"format=yuv420p,{MOVING_BAR},settb=1/100,setpts='{times}'", "-fps_mode", "passthrough",
                   "-final_delay", "0.5", "-plays", "0", source)
        return source, probe_media(source, downscale=False)
    return make


def interlaced_source(folder: Path) -> tuple[Path, Media]:
    """25i H.264 woven from 50p (two 50p frames in each, top field first): the truth is the 50p."""
    fifty, source = folder / "50p.mkv", folder / "25i.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=50", "-frames:v", "60",
           "-vf", f"format=yuv420p,{MOVING_BAR}", "-c:v", "ffv1", fifty)
    ffmpeg("-i", fifty, "-vf", "tinterlace=interleave_top,setfield=tff", "-c:v", "libx264", "-qp", "0",
           "-flags", "+ildct+ilme", "-x264opts", "tff=1", source)
    return source, probe_media(fifty, downscale=False)


def telecined_source(folder: Path) -> tuple[Path, Media]:
    """Film at 24000/1001 telecined 3:2 into 30000/1001 interlaced H.264 with AAC, as tests/ make it: the truth is the
    film, with the telecined file's audio."""
    film, source = folder / "film.mkv", folder / "telecined.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=24000/1001", "-frames:v", "40",
           "-vf", f"format=yuv420p,{MOVING_BAR}", "-c:v", "ffv1", film)
    ffmpeg("-i", film, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={40 * 1001 / 24000}",
           "-vf", "telecine=pattern=23", "-c:v", "libx264", "-qp", "0", "-g", "15", "-sc_threshold", "0",
           "-flags", "+ildct+ilme", "-x264opts", "tff=1", "-c:a", "aac", "-b:a", "64k", source)
    audio = probe_media(source, downscale=False)
    truth = probe_media(film, downscale=False)
    return source, _with_audio_of(truth, audio)


AUDIO_FIELDS = ("audio_start", "audio_lead", "audio_packets", "audio_md5", "audio_span", "audio_shown",
                "audio_edited", "audio_rate")  # Media's of the sound


def _with_audio_of(truth: Media, audio: Media) -> Media:
    """`truth`'s pictures and times with `audio`'s sound: a source made from a truth without its audio."""
    return dataclasses.replace(truth, **{field: getattr(audio, field) for field in AUDIO_FIELDS})


def letterboxed_source(folder: Path) -> tuple[Path, Media]:
    """A 64x36 picture between black bars of 6 rows (64x48, H.264 with AAC): the truth is the picture alone."""
    picture = folder / "picture.mkv"
    make_source(Case("picture", ".mkv", ["-c:v", "ffv1"], audio=[], size="64x36"), folder)
    source = folder / "letterboxed.mp4"
    ffmpeg("-i", picture, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={FRAMES / FPS}",
           "-vf", "pad=64:48:0:6:black", "-c:v", "libx264", "-crf", "12", "-c:a", "aac", source)
    audio = probe_media(source, downscale=False)
    truth = probe_media(picture, downscale=False)
    return source, _with_audio_of(truth, audio)


SEQUENCE_FIRST = 101  # an image sequence's first number, as a render's range starts


def sequence_source(folder: Path) -> tuple[Path, Media]:
    """The 30 frames of a 25 fps clip as f0101.png ... f0130.png; the truth is the clip without its audio."""
    clip = make_source(Case("clip", ".mkv", ["-c:v", "ffv1"], audio=[]), folder)
    (folder / "seq").mkdir(exist_ok=True)
    ffmpeg("-i", clip, "-start_number", str(SEQUENCE_FIRST), folder / "seq" / "f%04d.png")
    return folder / "seq" / "f%04d.png", probe_media(clip, downscale=False)


def without_audio(truth: Media) -> Media:
    return dataclasses.replace(truth, audio_packets=None, audio_md5=None, audio_start=None)


def first_frames(count: int) -> Callable[[Media], Media]:
    """--frames N: the first N frames, the last one's duration not judged (a preview's end), no audio judged."""
    def expect(truth: Media) -> Media:
        return without_audio(dataclasses.replace(truth, times=truth.times[:count], frames=truth.frames[:count],
                                                 durations=truth.durations[:count - 1] + [None]))
    return expect


def retimed(rate: Fraction) -> Callable[[Media], Media]:
    """The frames one after another at `rate` (an image sequence's frames, in or out)."""
    def expect(truth: Media) -> Media:
        count = len(truth.frames)
        return without_audio(dataclasses.replace(truth, times=[float(i / rate) for i in range(count)],
                                                 durations=[float(1 / rate)] * count))
    return expect


def gif_rule(truth: Media) -> Media:
    """What a GIF keeps (pipelines/animation.py's rule, worked out anew): each frame's time from the first rounded to
    centiseconds, halves up; a frame less than 2 cs after the one kept before it left out; the last one shown until
    the source's end (its time plus its duration), at least 2 cs."""
    origin = truth.times[0]
    kept, places = [], []
    for index, time in enumerate(truth.times):
        place = math.floor((Fraction(time - origin).limit_denominator(1_000_000)) * 100 + Fraction(1, 2))
        if not places or place - places[-1] >= 2:
            kept.append(index)
            places.append(place)
    end = truth.times[-1] - origin + (truth.durations[-1] or 0.0)
    last = max(math.floor(Fraction(end).limit_denominator(1_000_000) * 100 + Fraction(1, 2)) - places[-1], 2)
    durations = [(b - a) / 100 for a, b in zip(places, places[1:])] + [last / 100]
    return without_audio(dataclasses.replace(truth, times=[p / 100 for p in places], durations=durations,
                                             frames=[truth.frames[i] for i in kept]))


def twice_as_many(truth: Media) -> Media:
    """--deinterlace field judged against the 50p the 25i was woven from: every 50p frame, at its time."""
    return truth


def film_rate(truth: Media) -> Media:
    """--deinterlace ivtc: the film frames, evenly at 24000/1001."""
    step = 1001 / 24000
    return dataclasses.replace(truth, times=[i * step for i in range(len(truth.frames))],
                               durations=[step] * len(truth.frames))


def option_sources() -> list[OptionSource]:
    h264_b = ["-c:v", "libx264", "-bf", "3", "-b_strategy", "2", "-g", "10"]
    vfr = next(c for c in cases() if c.name == "vfr_jitter_mkv")
    vfr_mp4 = next(c for c in cases() if c.name == "vfr_jitter_mp4")
    gif_drop = "hundredths of a second"
    return [
        OptionSource("clip30_mp4", clip_source(Case("clip30_mp4", ".mp4", h264_b, rate="30")), [
            OptionRun("gif", [], ".gif", gif_rule),
            OptionRun("apng", [], ".apng", without_audio),
        ]),
        OptionSource("clip60_mp4", clip_source(Case("clip60_mp4", ".mp4", h264_b, rate="60")), [
            OptionRun("gif (1 in 3 left out)", [], ".gif", gif_rule, warning=gif_drop),
        ]),
        OptionSource("vfr_jitter_mkv", clip_source(vfr), [
            OptionRun("gif", [], ".gif", gif_rule),
            OptionRun("apng", [], ".apng", without_audio),
            OptionRun("sequence", [], "%06d.png", retimed(Fraction(25))),
            OptionRun("--frames 7", ["--frames", "7"], ".mkv", first_frames(7)),
            OptionRun("window 0.25-0.8", ["--start", "0.25", "--end", "0.8"], ".mkv", window=(0.25, 0.8)),
            OptionRun("window 0.25-0.8", ["--start", "0.25", "--end", "0.8"], ".mp4", window=(0.25, 0.8)),
        ]),
        OptionSource("vfr_jitter_mp4", clip_source(vfr_mp4), [
            OptionRun("window 0.3-0.7", ["--start", "0.3", "--end", "0.7"], ".mp4", window=(0.3, 0.7)),
            OptionRun("window 0.5-", ["--start", "0.5"], ".mkv", window=(0.5, 10.0)),
        ]),
        OptionSource("animation_gif", animation_source(".gif"), [
            OptionRun("default", [], "", pattern=".x2.gif"),
            OptionRun("apng", [], ".apng"),
            OptionRun("mkv", [], ".mkv"),
            OptionRun("window 0.1-0.5", ["--start", "0.1", "--end", "0.5"], "", window=(0.1, 0.5),
                      pattern=".x2.gif"),
        ]),
        OptionSource("animation_gif_1cs", animation_source(".gif", (8, 1, 3)), [
            OptionRun("mkv", [], ".mkv"),
            OptionRun("default", [], "", pattern=".x2.gif"),
        ]),
        OptionSource("animation_apng", animation_source(".apng"), [
            OptionRun("default", [], "", pattern=".x2.apng"),
            OptionRun("gif", [], ".gif", gif_rule),
        ]),
        OptionSource("clip25_mp4", clip_source(Case("clip25_mp4", ".mp4", h264_b)), [
            OptionRun("sequence", [], "%06d.png", retimed(Fraction(25))),
            OptionRun("--frames 7", ["--frames", "7"], "", first_frames(7)),
            OptionRun("--height 72", ["--height", "72"], "", size=(96, 72), pattern=".72p.*"),
            OptionRun("--width 100", ["--width", "100"], ".mkv", size=(100, 76)),
        ]),
        OptionSource("sequence_png", sequence_source, [
            OptionRun("--fps 24 default", ["--fps", "24"], "", retimed(Fraction(24)), sequence_rate="24"),
            OptionRun("--fps 24 mp4", ["--fps", "24"], ".mp4", retimed(Fraction(24))),
            OptionRun("--fps 24000/1001 mkv", ["--fps", "24000/1001"], ".mkv", retimed(Fraction(24000, 1001))),
        ]),
        OptionSource("held_ffv1_mkv", clip_source(Case("held_ffv1_mkv", ".mkv", ["-c:v", "ffv1"], rate="10",
                                                       filters=",fps=25", audio=["-c:a", "flac"])), [
            OptionRun("--dedup exact", ["--dedup", "exact"], ""),
        ]),
        OptionSource("held_h264_mp4", clip_source(Case("held_h264_mp4", ".mp4", h264_b, rate="10",
                                                       filters=",fps=25")), [
            OptionRun("--dedup 4", ["--dedup", "4"], ""),
            OptionRun("--dedup 4 mkv", ["--dedup", "4"], ".mkv"),
        ]),
        OptionSource("interlaced_25i", interlaced_source, [
            OptionRun("--deinterlace field", ["--deinterlace", "field"], "", twice_as_many),
            OptionRun("--deinterlace field mkv", ["--deinterlace", "field"], ".mkv", twice_as_many),
        ]),
        OptionSource("telecined_mp4", telecined_source, [
            OptionRun("--deinterlace ivtc", ["--deinterlace", "ivtc"], "", film_rate),
            OptionRun("--deinterlace ivtc mkv", ["--deinterlace", "ivtc"], ".mkv", film_rate),
        ]),
        OptionSource("letterboxed_mp4", letterboxed_source, [
            OptionRun("--crop auto", ["--crop", "auto"], ""),
        ]),
        OptionSource("h264_10bit_mp4", clip_source(Case("h264_10bit_mp4", ".mp4", h264_b, pix_fmt="yuv420p10le")), [
            OptionRun("default", [], "", codec="hevc Main 10 yuv420p10le"),
            OptionRun("mkv", [], ".mkv", codec="hevc Main 10 yuv420p10le"),
            OptionRun("ts", [], ".ts", codec="hevc Main 10 yuv420p10le"),
        ]),
        OptionSource("hevc_hdr10_mkv", clip_source(Case(
            "hevc_hdr10_mkv", ".mkv", ["-c:v", "libx265", "-x265-params", "log-level=error:bframes=3:keyint=10",
                                       "-color_primaries", "bt2020", "-color_trc", "smpte2084",
                                       "-colorspace", "bt2020nc"],
            pix_fmt="yuv420p10le")), [
            OptionRun("default", [], "", codec="hevc Main 10 yuv420p10le"),
            OptionRun("mp4", [], ".mp4", codec="hevc Main 10 yuv420p10le"),
            OptionRun("ts", [], ".ts", codec="hevc Main 10 yuv420p10le"),
        ]),
    ]


def apng_times(path: Path) -> tuple[list[float], list[float]]:
    """Each frame's time and duration from an APNG's own fcTL chunks (delay_num/delay_den seconds, 0 as 1/100):
    ffprobe's demuxer rounds every delay to its time base, 1/100000 s, and a 30 fps clip drifts a tick in 3 frames."""
    data, at, delays = path.read_bytes(), 8, []
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if kind == b"fcTL":
            body = data[at + 8:at + 8 + length]
            numerator, denominator = int.from_bytes(body[20:22], "big"), int.from_bytes(body[22:24], "big")
            delays.append(Fraction(numerator, denominator or 100))
        at += length + 12
    times = [float(sum(delays[:i], Fraction(0))) for i in range(len(delays))]
    return times, [float(d) for d in delays]


def sequence_problems(folder: Path, pattern: str, first: int, count: int) -> list[str]:
    """What is wrong with the names of the sequence `folder/pattern` of `count` frames numbered from `first`."""
    glob = re.sub(r"%0?\d*d", "*", pattern)
    found = sorted(p.name for p in folder.glob(glob))
    wanted = [pattern % number for number in range(first, first + count)]
    if found == wanted:
        return []
    return [f"files {found[:2]}...{found[-1:]} ({len(found)}), not {wanted[:2]}...{wanted[-1:]} ({len(wanted)})"]


def run_option_source(source: OptionSource, folder: Path) -> list[tuple[str, str, list[str], str]]:
    """Rows of (source, run, problems, note)."""
    try:
        path, truth = source.make(folder)
    except Exception as error:  # noqa: BLE001 - a source ffmpeg cannot make is a row, not a crash
        return [(source.name, "make", [str(error)], "")]
    rows = []
    for number, option_run in enumerate(source.runs):
        out = folder / f"out{number}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        label = option_run.label
        sequence_in = "%" in path.name
        if option_run.output.startswith("%"):  # a sequence out
            output = out / option_run.output
        elif option_run.output:
            output = out / f"{source.name}{option_run.output}"
        else:
            output = None if sequence_in else out  # (a sequence's default output is beside it)
        written, note = upscale(path, output, *option_run.options, pattern=option_run.pattern)
        if written is None:
            rows.append((source.name, label, [f"vsr failed: {note}"], ""))
            continue
        expected = option_run.expect(truth)
        if option_run.window is not None:
            expected = without_audio(expected)
        problems: list[str] = []
        try:
            width, height = option_run.size or (2 * truth.size[0], 2 * truth.size[1])
            picture = (truth.size[0], truth.size[1])
            if "%" in str(written) or output is None:  # a sequence: its names, then read at a rate
                if output is None:
                    pattern = Path(path.name).stem + ".x2.png"  # f%04d.x2.png
                    seq_folder, first = path.parent, SEQUENCE_FIRST
                else:
                    pattern, seq_folder = option_run.output, out
                    first = SEQUENCE_FIRST if sequence_in else 1
                count = len(expected.frames) if option_run.window is None else 0
                problems += sequence_problems(seq_folder, pattern, first, count) if count else []
                written = seq_folder / pattern
                output_media = probe_media(written, downscale=False, size=picture, input_options=(
                    "-framerate", option_run.sequence_rate, "-start_number", str(first)))
            else:
                output_media = probe_media(written, downscale=False, size=picture)
                if written.suffix == ".apng":
                    times, durations = apng_times(written)
                    output_media = dataclasses.replace(output_media, times=times, durations=durations,
                                                       video_tick=Fraction(1, 100000))
            if output_media.size != (width, height):
                problems.append(f"size {output_media.size} != {(width, height)}")
            if option_run.codec and not output_media.codec.startswith(option_run.codec):
                problems.append(f"codec {output_media.codec!r}, not {option_run.codec!r}")
            if option_run.warning and option_run.warning not in note:
                problems.append(f"no warning saying {option_run.warning!r}")
            reference = reference_audio_md5(path, written.suffix, folder, _decoded_samples(output_media)) \
                if expected.audio_md5 else None
            judged, notes = judge(expected, output_media, option_run.window, reference,
                                  skipped_audio="not copying audio" in note)
            problems += judged
        except Exception as error:  # noqa: BLE001
            problems, notes = problems + [f"judging failed: {error!r}"], []
        suffix = "seq" if "%" in str(written) else written.suffix
        rows.append((source.name, f"{label} -> {suffix}", problems, "; ".join(notes + [note] if note else notes)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", default=[], help="only cases whose name contains this (repeatable)")
    parser.add_argument("--keep", type=Path, help="make and keep the files in this folder")
    parser.add_argument("--jobs", type=int, default=2, help="cases at once")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--options", action="store_true",
                        help="the second matrix: GIF, APNG and image sequences, and options that change the frames")
    arguments = parser.parse_args()
    everything = option_sources() if arguments.options else cases()
    chosen = [c for c in everything if not arguments.k or any(k in c.name for k in arguments.k)]
    run_one = run_option_source if arguments.options else run_case
    folder = arguments.keep or Path(tempfile.mkdtemp(prefix="vsr-frame-exactness-"))
    rows = []
    try:
        with concurrent.futures.ThreadPoolExecutor(arguments.jobs) as pool:
            futures = []
            for case in chosen:
                case_folder = folder / case.name
                case_folder.mkdir(parents=True, exist_ok=True)
                futures.append(pool.submit(run_one, case, case_folder))
            for future in futures:
                for row in future.result():
                    rows.append(row)
                    name, label, problems, note = row
                    status = "ok" if not problems else "WRONG: " + " | ".join(problems)
                    print(f"{name:24} {label:26} {status}" + (f"  [{note}]" if note else ""), flush=True)
    finally:
        if arguments.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    right = sum(1 for row in rows if not row[2])
    print(f"{right} of {len(rows)} runs right, over {len(chosen)} sources")
    if arguments.json:
        arguments.json.write_text(json.dumps([dict(zip(("case", "run", "problems", "note"), r)) for r in rows],
                                             indent=1))
    return 0 if right == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
