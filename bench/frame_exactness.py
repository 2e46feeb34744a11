"""A frame-exactness sweep: many small sources, each upscaled by `vsr upscale`, judged by ffprobe and ffmpeg alone.

    .venv/bin/python bench/frame_exactness.py                 # the whole matrix (99 runs, 10 min on 2 busy cores)
    .venv/bin/python bench/frame_exactness.py -k mpeg2 -k vfr # only the cases whose names contain one of these
    .venv/bin/python bench/frame_exactness.py --keep DIR      # keep the sources and outputs (else a temporary folder)

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
  own stream copy into that container decodes, where it shows AAC priming an MP4 edit list hid), and where its first
  sample is against the first frame, to a millisecond (Matroska's unit).
Previews (--start/--end) are judged against the source frames of that span, counted from the first frame; runs in
segments (--devices cpu,cpu) as one run.
It is a tool, not a test: the matrix takes minutes (about 4 s a run, most of it starting Python and torch), and a
failure here is a lead to reproduce in a focused test. The table it prints says, per case, what held and what not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FPS = 25
FRAMES = 30
# A bar 6 pixels wide moving 5 pixels a frame, drawn into testsrc2 (whose own moving parts are too small at 64x48
# to tell every frame from the one before it).
MOVING_BAR = "geq=lum='if(lt(abs(X-mod(N*5\\,W)),3),235,lum(X\\,Y))':cb='cb(X\\,Y)':cr='cr(X\\,Y)'"
PSNR_MIN_DB = 20.0


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


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def probe_media(path: Path, downscale: bool) -> Media:
    info = ffprobe_json(path, "-show_format", "-show_streams")
    streams = info.get("streams", [])
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = next((s for s in streams if s["codec_type"] == "audio"), None)
    frames = ffprobe_json(path, "-select_streams", "v:0", "-show_entries",
                          "frame=best_effort_timestamp_time,pkt_duration_time,duration_time").get("frames", [])
    times = [_float(f.get("best_effort_timestamp_time")) for f in frames]
    durations = [_float(f.get("duration_time", f.get("pkt_duration_time"))) for f in frames]
    end = (_float(video.get("start_time")) or 0.0) + (_float(video.get("duration")) or 0.0)
    if "mov" in info["format"].get("format_name", "") and durations and durations[-1] is None and times \
            and times[-1] is not None and end > times[-1]:
        # ffprobe 5.1 gives a variable-rate MP4's frames no duration (FFmpeg 8 does): its end is the stream's
        durations[-1] = end - times[-1]
    audio_packets = audio_md5 = audio_start = None
    audio_lead = 0.0
    if audio is not None:
        first = ffprobe_json(path, "-select_streams", "a:0", "-read_intervals", "%+#1", "-show_entries",
                             "packet=pts_time").get("packets", [{}])
        first_pts = _float(first[0].get("pts_time")) if first else None
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
    scale = "scale=iw/2:ih/2:flags=area," if downscale else ""
    decoded = run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
                   "-vf", scale + "format=gray", "-f", "image2pipe", "-c:v", "pgm", "-"], text=False)
    return Media(video_tick=Fraction(video["time_base"]), times=times, durations=durations,
                 audio_start=audio_start, audio_lead=audio_lead,
                 audio_packets=audio_packets, audio_md5=audio_md5, frames=_pgm_frames(decoded.stdout))


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
        scores = {j: psnr(frame, source_frames[j]) for j in (i - 1, i, i + 1) if 0 <= j < len(source_frames)}
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
        if output.audio_md5 != source.audio_md5:
            if output.audio_md5 == audio_reference_md5:
                notes.append("audio decodes as ffmpeg's stream copy into this container does, not as the source")
            else:
                problems.append("audio samples differ")
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


def reference_audio_md5(source: Path, suffix: str, folder: Path) -> str | None:
    """The decoded audio of ffmpeg's own stream copy of the source's first audio stream into a `suffix` file."""
    copy = folder / f"audio-reference{suffix}"
    made = run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", source, "-map", "0:a:0", "-c", "copy", copy])
    if made.returncode:
        return None
    return run(["ffmpeg", "-nostdin", "-v", "error", "-i", copy, "-map", "0:a:0", "-f", "md5", "-"]).stdout.strip()


def upscale(source: Path, output: Path, *options: str) -> tuple[Path | None, str]:
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    result = run([sys.executable, "-m", "vsr", "upscale", source, "-m", "bicubic", "--outscale", "2",
                  "--overwrite", "-o", f"{output}/" if output.is_dir() else output, *options], env=environment)
    message = (result.stderr.strip() or result.stdout.strip()).splitlines()
    warnings = [line for line in message if "warning" in line.lower()]
    if result.returncode:
        return None, (message[-1] if message else f"exit {result.returncode}")
    written = output
    if output.is_dir():  # the default output, named by vsr
        matches = sorted(output.glob(source.stem + ".x2.*"))
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
            reference = reference_audio_md5(source, written.suffix, folder) if truth.audio_md5 else None
            problems, notes = judge(truth, probe_media(written, downscale=True), window, reference,
                                    skipped_audio="not copying audio" in note)
        except Exception as error:  # noqa: BLE001
            problems, notes = [f"judging failed: {error!r}"], []
        rows.append((case.name, f"{label} -> {written.suffix}", problems, "; ".join(notes + [note] if note else notes)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", default=[], help="only cases whose name contains this (repeatable)")
    parser.add_argument("--keep", type=Path, help="make and keep the files in this folder")
    parser.add_argument("--jobs", type=int, default=2, help="cases at once")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    arguments = parser.parse_args()
    chosen = [c for c in cases() if not arguments.k or any(k in c.name for k in arguments.k)]
    folder = arguments.keep or Path(tempfile.mkdtemp(prefix="vsr-frame-exactness-"))
    rows = []
    try:
        with concurrent.futures.ThreadPoolExecutor(arguments.jobs) as pool:
            futures = []
            for case in chosen:
                case_folder = folder / case.name
                case_folder.mkdir(parents=True, exist_ok=True)
                futures.append(pool.submit(run_case, case, case_folder))
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
