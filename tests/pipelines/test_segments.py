"""Several devices for one video (`pipelines.segments`, `vsr upscale --devices`), tested with CPU workers.

The clip: 64×48, 24 frames at 30 fps, a keyframe every 8 frames, AAC audio. At 30 fps the mp4 time base is
1/15360 and the cut at frame 8 is 266.67 ms, so the segment's edit list (in milliseconds) moves it: the join must
put it back. Outputs are judged against a single-device run of the same options, with ffprobe and ffmpeg.
"""

from __future__ import annotations

import logging
import subprocess
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import clip_pts, make_clip, truncate
from tests.processes import run_vsr
from vsr.errors import ModelError, OptionError, OutputError
from vsr.fsutil import lock_temporary
from vsr.pipelines.encode import partial_path
from vsr.pipelines.segments import (
    _frames_missed,
    join_segments,
    parse_devices,
    plan_segments,
    plan_video,
    upscale_video_in_segments,
)
from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, upscale_video

pytestmark = media.requires_ffmpeg

GOP = 8
FRAMES = 24
FPS = 30
KEYFRAMES_EVERY_8 = {"g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0"}  # no scene-cut keyframes


def make_gop_clip(path: Path, *, frames: int = FRAMES, fps: int = FPS, vfr: bool = False,
                  options: dict[str, str] = KEYFRAMES_EVERY_8) -> Path:
    return make_clip(path, frames=frames, fps=fps, vfr=vfr, audio="aac", options=options)


def keyframe_pts(path: Path) -> list[int]:
    """The pts of the video packets ffprobe flags as keyframes, sorted."""
    found = media.ffprobe(path, "-select_streams", "v:0", "-show_entries", "packet=pts,flags")["packets"]
    return sorted(int(packet["pts"]) for packet in found if "K" in packet["flags"])


def video_dts(path: Path) -> list[int]:
    """The video packets' dts in file order, as ffprobe reads them."""
    found = media.ffprobe(path, "-select_streams", "v:0", "-show_entries", "packet=dts")["packets"]
    return [int(packet["dts"]) for packet in found]


def decoded_framemd5(path: Path) -> list[str]:
    """ffmpeg's checksum of every decoded video frame, with its pts (the checksum lines, header left out)."""
    result = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5",
                             "-"], check=True, capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if not line.startswith("#")]


def leftovers(folder: Path, *keep: Path) -> list[str]:
    """Files and folders in `folder` other than `keep`: temporary segments, partial outputs."""
    return sorted(path.name for path in folder.iterdir() if path not in keep)


# --- planning --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("frames", [24, 30, 61])
def test_planned_segments_cover_every_frame_once_start_at_keyframes_and_are_balanced(count, frames):
    frame_pts = [10 * i + 5 for i in range(frames)]  # any increasing pts
    keyframes = set(frame_pts[::GOP])
    runs = plan_segments(frame_pts, keyframes, count)
    assert runs[0][0] == 0 and runs[-1][1] == frames
    assert all(end == next_start for (_, end), (next_start, _) in pairwise(runs))  # contiguous, no overlap
    assert all(start < end for start, end in runs)
    assert all(frame_pts[start] in keyframes for start, _ in runs[1:])
    assert len(runs) <= count
    assert len(runs) == min(count, len(keyframes))  # every device gets a segment when there are keyframes enough
    even = frames / len(runs)
    assert all(abs((end - start) - even) <= GOP for start, end in runs)


def test_a_count_past_the_frames_is_planned_at_once():
    """--segment-seconds 1e-9 asked for 6e9 segments, and the plan looped over each (helper-63)."""
    assert plan_segments(list(range(40)), set(range(0, 40, 10)), 6 * 10**9) == [(0, 10), (10, 20), (20, 30), (30, 40)]


def test_sparse_keyframes_are_not_spent_on_tiny_segments():
    frame_pts = list(range(24))
    # Keyframes only at 16 and 17: three devices cannot be balanced; two segments, not a 1-frame one.
    assert plan_segments(frame_pts, {0, 16, 17}, 3) == [(0, 16), (16, 24)]


def test_a_single_keyframe_makes_a_single_segment():
    frame_pts = list(range(0, 300, 10))
    assert plan_segments(frame_pts, {0}, 4) == [(0, 30)]
    assert plan_segments(frame_pts, set(), 4) == [(0, 30)]  # the first frame need not be a keyframe


def test_a_clip_is_cut_at_its_keyframes(tmp_path):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    keyframes = keyframe_pts(clip)
    all_pts = sorted(media.ffprobe_frame_pts(clip))
    assert keyframes == all_pts[::GOP]  # the fixture is what the tests assume

    plan = plan_video(clip, 3)
    assert [segment.frames for segment in plan.segments] == [all_pts[0:8], all_pts[8:16], all_pts[16:24]]
    assert [(s.start_pts, s.end_pts) for s in plan.segments] == [(None, all_pts[8]), (all_pts[8], all_pts[16]),
                                                                  (all_pts[16], None)]
    assert plan.seconds(all_pts[8]) == Fraction(8, FPS)


def test_a_preview_window_is_planned_within_its_frames(tmp_path):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    all_pts = sorted(media.ffprobe_frame_pts(clip))
    plan = plan_video(clip, 2, VideoOptions(start=0.1, max_frames=18))  # frames 3 to 20
    assert [pts for segment in plan.segments for pts in segment.frames] == all_pts[3:21]
    assert plan.segments[0].start_pts == all_pts[3]
    assert plan.segments[1].start_pts in (all_pts[8], all_pts[16])
    assert plan.segments[-1].end_pts == all_pts[21]  # stops before the 19th frame


def test_a_preview_cut_just_before_a_keyframe_is_not_given_a_segment_of_two_frames(tmp_path):
    """x264 gave a 2-frame segment no B-frame delay: its decoding times collided with the next segment's, which the
    join moved on by a tick each, and the MP4's video track lasted other than one run's (helper-43: 2 frames short)."""
    assert plan_segments(list(range(20)), {2, 17}, 3) == [(0, 20)]  # (2 and 3 frames: too short to cut off)
    clip = tmp_path / "bf.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30000/1001", "-f", "lavfi", "-i", "sine",
                 "-frames:v", "90", "-c:v", "libx264", "-bf", "3", "-g", "15", "-c:a", "aac", "-shortest", clip)
    options, window = UpscaleOptions(model="bicubic", outscale=2), dict(start=0.4, max_frames=20)  # frames 12 to 31
    single = upscale_video(clip, tmp_path / "single.mp4", options=options, video=VideoOptions(**window))
    split = upscale_video_in_segments(clip, tmp_path / "split.mp4", options=options,
                                      video=VideoOptions(**window, segment_seconds=0.2))
    durations = [media.ffprobe_streams_of(path, "v:0")[0]["duration"] for path in (single.output, split.output)]
    assert durations[0] == durations[1]


def test_a_frames_preview_on_one_device_reads_the_packets_once_and_ends_as_a_plan_of_its_own(tmp_path,
                                                                                            monkeypatch):
    """The segments' plan read every packet, then upscale_video read them all again for where --frames stops (a
    second or more on a long film): it is handed the plan. A subtitle cue running past the window ends
    where the window does, as when upscale_video plans by itself."""
    from vsr.pipelines import segments

    clip = make_clip(tmp_path / "clip.mkv", frames=30, subtitles=True)
    reads = []

    def read_video_packets(*args, **kwargs):  # (the real one, counted)
        reads.append(args)
        return real_read(*args, **kwargs)

    real_read = segments.read_video_packets
    monkeypatch.setattr(segments, "read_video_packets", read_video_packets)
    options, video = UpscaleOptions(model="bicubic", outscale=2), VideoOptions(start=0.2, max_frames=5)
    planned = upscale_video_in_segments(clip, tmp_path / "planned.mkv", options=options, video=video)
    assert len(reads) == 1
    alone = upscale_video(clip, tmp_path / "alone.mkv", options=options, video=video)
    assert len(reads) == 2
    for selector in ("0:v", "0:s"):
        assert media.framemd5(planned.output, selector) == media.framemd5(alone.output, selector)
    assert media.ffprobe(planned.output, "-show_entries", "format=duration") == \
        media.ffprobe(alone.output, "-show_entries", "format=duration")


def test_devices_are_cuda_numbers_as_for_batch_or_cpu_workers():
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    with pytest.raises(OptionError, match="not both"):
        parse_devices("0,cpu")
    with pytest.raises(OptionError, match="--devices"):
        parse_devices("gpu0")


# --- end to end with two CPU workers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def x264_runs(tmp_path_factory, tiny_rrdbnet_checkpoint):
    """The clip upscaled by one device and by two CPU workers, libx264 in .mp4."""
    folder = tmp_path_factory.mktemp("x264")
    clip = make_gop_clip(folder / "clip.mp4")
    options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=4, device="cpu")
    single = upscale_video(clip, folder / "single.mp4", options=options)
    multi = upscale_video_in_segments(clip, folder / "multi.mp4", devices="cpu,cpu", options=options)
    return clip, single, multi


def test_two_workers_give_the_frames_and_times_of_one_device(x264_runs):
    clip, single, multi = x264_runs
    assert multi.frames == single.frames == FRAMES
    assert (multi.width, multi.height) == (single.width, single.height) == (256, 192)
    assert multi.times.extra["segments"] == 2
    assert media.ffprobe_frame_pts(multi.output) == media.ffprobe_frame_pts(single.output)
    assert media.video_times(multi.output) == media.video_times(clip)
    assert [(s["codec_type"], s["codec_name"]) for s in media.ffprobe_streams(multi.output)] == [
        ("video", "h264"), ("audio", "aac")]
    assert media.playback_errors(multi.output) == ""
    dts = video_dts(multi.output)
    assert all(a < b for a, b in pairwise(dts))


def test_two_workers_copy_the_audio_packets_untouched(x264_runs):
    clip, _, multi = x264_runs
    assert media.framemd5(multi.output, "0:a") == media.framemd5(clip, "0:a")


def test_each_segment_starts_with_a_keyframe_of_its_own(x264_runs):
    _, _, multi = x264_runs
    all_pts = sorted(media.ffprobe_frame_pts(multi.output))
    # The second worker's encoder starts at the cut (frame 8 or 16): an encoder boundary, the only difference.
    assert set(keyframe_pts(multi.output)) & {all_pts[8], all_pts[16]}


def test_two_workers_leave_no_temporary_files(x264_runs):
    clip, single, multi = x264_runs
    assert leftovers(clip.parent, clip, single.output, multi.output) == []


def test_a_lossless_codec_gives_identical_frames_on_two_workers(tmp_path, tiny_rrdbnet_checkpoint):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=4, device="cpu")
    video = VideoOptions(codec="ffv1")
    single = upscale_video(clip, tmp_path / "single.mkv", options=options, video=video)
    multi = upscale_video_in_segments(clip, tmp_path / "multi.mkv", devices="cpu,cpu", options=options, video=video)
    frames = decoded_framemd5(multi.output)
    assert len(frames) == FRAMES
    assert frames == decoded_framemd5(single.output)  # pixels and times
    assert media.framemd5(multi.output, "0:a") == media.framemd5(single.output, "0:a")


def test_a_preview_on_two_workers_matches_one_device(tmp_path, tiny_rrdbnet_checkpoint):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=4, device="cpu")
    video = VideoOptions(codec="x264-lossless", start=0.1, end=0.7)  # frames 3 to 20
    single = upscale_video(clip, tmp_path / "single.mp4", options=options, video=video)
    multi = upscale_video_in_segments(clip, tmp_path / "multi.mp4", devices="cpu,cpu", options=options, video=video)
    assert multi.times.extra["segments"] == 2
    frames = decoded_framemd5(multi.output)
    assert len(frames) == 18
    assert frames == decoded_framemd5(single.output)
    assert media.ffprobe_frame_pts(multi.output)[0] == 0  # a preview starts at 0, as on one device
    assert media.framemd5(multi.output, "0:a") == media.framemd5(single.output, "0:a")


def test_segments_of_an_interlaced_broadcast_recording_give_the_frames_of_one_run(tmp_path, caplog):
    # MPEG-2 in MPEG-TS, interlaced, with B-frames: the TS demuxer seeks by decoding time, to any packet (a segment
    # once lost the frames up to the next keyframe), and bwdif makes each frame from its neighbours (a segment's first
    # frame once lacked the one before it).
    clip = tmp_path / "recording.ts"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=50", "-frames:v", "24", "-vf",
                 "tinterlace=interleave_top,setfield=tff", "-c:v", "mpeg2video", "-q:v", "2", "-g", "6", "-bf", "2",
                 "-flags", "+ildct+ilme", "-top", "1", clip)
    options = UpscaleOptions(model="bicubic", device="cpu")
    video = VideoOptions(codec="ffv1")
    single = upscale_video(clip, tmp_path / "single.mkv", options=options, video=video)
    segmented = upscale_video_in_segments(clip, tmp_path / "segmented.mkv", options=options,
                                          video=VideoOptions(codec="ffv1", segment_seconds=0.25))
    assert segmented.times.extra["segments"] == 4
    frames = decoded_framemd5(segmented.output)
    assert len(frames) == 24
    assert frames == decoded_framemd5(single.output)
    assert "did not come out of the decoder" not in caplog.text
    # Once a video, not once a segment; and once a call: the run in one piece before said it too.
    assert sum("interlaced video: deinterlacing it" in text for text in segmented.warnings) == 1
    assert caplog.text.count("interlaced video: deinterlacing it") == 2


@pytest.mark.parametrize("container", ["program.mpg", "wraps.ts"])
def test_segments_of_recordings_with_awkward_clocks_give_the_frames_of_one_run(tmp_path, container):
    """A program stream's times after a seek were off (segments lost frames, others came at times no frame has); an
    MPEG-TS whose clock wraps 0.7 s after it starts begins before 0, and the MP4 muxer moved the frames of a segment
    before 0 (by 2 ms to 0.4 s, or all to 0), which the join took for another segment's file, run after run (helpers
    61, 64 and 72): such a video is not cut."""
    clip = tmp_path / container
    codec = ["-c:v", "mpeg2video", "-bf", "2", "-g", "12"] if container.endswith(".mpg") else \
        ["-c:v", "libx264", "-g", "10", "-output_ts_offset", "95441.6"]
    media.ffmpeg("-f", "lavfi", "-i", "color=black:s=64x48:r=25:d=2,format=gray,geq=lum='N*4'", "-pix_fmt",
                 "yuv420p", *codec, clip)
    options = UpscaleOptions(model="bicubic", device="cpu")
    single = upscale_video(clip, tmp_path / "single.mkv", options=options, video=VideoOptions(codec="ffv1"))
    segmented = upscale_video_in_segments(clip, tmp_path / "segmented.mkv", options=options,
                                          video=VideoOptions(codec="ffv1", segment_seconds=0.5))
    assert (segmented.times.extra.get("segments", 1) > 1) == container.endswith(".mpg")
    frames = decoded_framemd5(segmented.output)
    assert len(frames) == 50 and frames == decoded_framemd5(single.output)


def test_a_segment_whose_frames_came_at_other_times_says_so():
    """It said "upscaled 7 frames where its packets promised 7" (helper-64)."""
    assert _frames_missed([0, 3600, 7200], [0, 3600, 5400]) == "1 of its 3 frames came at times none of its packets has"
    assert _frames_missed([0, 3600], [0, 3600, 7200]) == "upscaled 2 frames where its packets promised 3"


def test_frames_that_share_a_time_are_planned_once(tmp_path):
    # Frames 20 to 29 land 0.1 s apart from 5.8 s, frames 30 to 49 0.01 s apart from 12.3 s: in Matroska's
    # milliseconds some share a time. The decoders keep one frame per time, and a segment once began and ended at one.
    clip = tmp_path / "shared.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2", "-vf",
                 "setpts='if(lt(N,20),N*0.04,if(lt(N,30),5+N*0.1,12+N*0.01))/TB'", "-fps_mode", "passthrough",
                 "-c:v", "libx264", "-g", "10", clip)
    options = UpscaleOptions(model="bicubic", device="cpu")
    single = upscale_video(clip, tmp_path / "single.mkv", options=options, video=VideoOptions(codec="ffv1"))
    segmented = upscale_video_in_segments(clip, tmp_path / "segmented.mkv", options=options,
                                          video=VideoOptions(codec="ffv1", segment_seconds=1))
    assert decoded_framemd5(segmented.output) == decoded_framemd5(single.output)
    assert leftovers(tmp_path, clip, single.output, segmented.output) == []


def test_a_clip_with_one_keyframe_runs_on_one_device(tmp_path, tiny_rrdbnet_checkpoint, caplog):
    clip = make_gop_clip(tmp_path / "clip.mp4", frames=12, options={"g": "100", "sc_threshold": "0"})
    assert len(keyframe_pts(clip)) == 1
    options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=4)
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.segments"):  # (the command line shows it)
        result = upscale_video_in_segments(clip, tmp_path / "out.mp4", devices="cpu,cpu", options=options)
    assert "no keyframe to cut the video at, so one segment: upscaling it on cpu alone" in caplog.text
    assert result.frames == 12
    assert media.video_times(result.output) == media.video_times(clip)
    short = make_gop_clip(tmp_path / "short.mp4", frames=6, options={"g": "2"})  # keyframes, but 4-frame segments
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.segments"):
        upscale_video_in_segments(short, tmp_path / "short-out.mp4", devices="cpu,cpu", options=options)
    assert "6 frames are too few to cut (segments take 4 or more), so one segment" in caplog.text  # (not "no keyframe")
    raw = tmp_path / "camera.h264"  # (no times to plan with: it was upscaled on one device without a word)
    media.ffmpeg("-i", clip, "-c", "copy", raw)
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.segments"):
        result = upscale_video_in_segments(raw, tmp_path / "raw-out.mkv", devices="cpu,cpu", options=options)
    assert "its packets carry no times (a raw stream) to cut it at, so one segment: upscaling it on cpu" in caplog.text
    assert result.frames == 12


# --- failures ----------------------------------------------------------------------------------------------------


def test_a_failing_worker_gives_one_line_and_leaves_nothing(tmp_path, tiny_rrdbnet_checkpoint):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    output = tmp_path / "out.mp4"
    options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=0)  # the engines refuse it
    with pytest.raises(OptionError, match="--batch-size must be an integer >= 1, not 0") as raised:
        upscale_video_in_segments(clip, output, devices="cpu,cpu", options=options)
    assert "\n" not in str(raised.value)
    assert leftovers(tmp_path, clip) == []


def test_a_bad_model_fails_before_any_worker_starts(tmp_path):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    with pytest.raises(ModelError):
        upscale_video_in_segments(clip, tmp_path / "out.mp4", devices="cpu,cpu",
                                 options=UpscaleOptions(model=str(tmp_path / "missing.pth")))
    assert leftovers(tmp_path, clip) == []


def write_segments(source: Path, folder: Path, cuts: list[int]) -> list[tuple[Path, list[int]]]:
    """`source` cut at frame numbers `cuts`, each part 2× nearest-upscaled into its own video-only .mp4 with the
    source's pts, as a worker writes it; returns (file, pts of its frames) for each."""
    times = media.video_times(source)
    bounds = [0, *cuts, len(times)]
    parts = []
    for number, (first, end) in enumerate(pairwise(bounds)):
        window = (float(times[first]), float(times[end]) if end < len(times) else float("inf"))
        path = media.write_upscaled(source, folder / f"segment-{number}.mp4", window=window, copy_streams=False)
        parts.append((path, media.decode_rgb(source, window=window)[1]))
    return parts


def test_joining_moves_decoding_times_that_would_go_back_at_a_variable_rate_cut(tmp_path, caplog):
    # Frame durations cycle 40, 40, 80, 20, 120 ms: at frame 9 the two frames after the cut last longer than the
    # three before it, so the second encoder's first dts (its pts minus the B-frame delay) reaches back past the
    # first encoder's last dts.
    clip = make_gop_clip(tmp_path / "clip.mp4", frames=20, vfr=True, options={"g": "9", "sc_threshold": "0"})
    pts, _ = clip_pts(20, 25, vfr=True)
    assert pts[11] - pts[9] > pts[9] - pts[6]
    parts = write_segments(clip, tmp_path, cuts=[9])
    output = tmp_path / "joined.mp4"
    with caplog.at_level(logging.INFO, logger="vsr.pipelines.segments"):
        join_segments(output, source=clip, info=media.video_info(clip), parts=parts)
    assert "moved forward" in caplog.text
    assert media.video_times(output) == media.video_times(clip)
    dts = video_dts(output)
    assert all(a < b for a, b in pairwise(dts))
    assert media.playback_errors(output) == ""
    assert media.framemd5(output, "0:a") == media.framemd5(clip, "0:a")


def test_joining_a_damaged_segment_fails_and_leaves_nothing(tmp_path):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    folder = tmp_path / "segments"
    folder.mkdir()
    parts = write_segments(clip, folder, cuts=[8])
    truncate(parts[1][0], parts[1][0])  # an mp4 cut short has lost its index
    output = tmp_path / "joined.mp4"
    with pytest.raises(OutputError, match="segment 2 of 2") as raised:
        join_segments(output, source=clip, info=media.video_info(clip), parts=parts)
    assert "\n" not in str(raised.value)
    assert leftovers(tmp_path, clip, folder) == []


def test_joining_into_an_output_another_run_is_writing_is_one_line_and_leaves_its_file(tmp_path):
    """The join emptied the temporary file a run of one device held locked, renamed it over that run's output,
    and that run went on writing into the renamed file."""
    clip = make_gop_clip(tmp_path / "clip.mp4")
    folder = tmp_path / "segments"
    folder.mkdir()
    parts = write_segments(clip, folder, cuts=[8])
    output = tmp_path / "joined.mp4"
    with lock_temporary(partial_path(output), output) as held:
        held.write("another run's frames")
        held.flush()
        with pytest.raises(OutputError, match=f"{output}: another vsr run is writing it"):
            join_segments(output, source=clip, info=media.video_info(clip), parts=parts)
        assert partial_path(output).read_text() == "another run's frames"
    assert not output.exists()


def test_ctrl_c_as_the_join_opens_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The join made its temporary file, then read the source's end and opened the container outside the block that
    removes it: Ctrl-C there left .NAME.partial.mp4 and its lock open."""
    from vsr.pipelines import segments

    clip = make_gop_clip(tmp_path / "clip.mp4")
    folder = tmp_path / "segments"
    folder.mkdir()
    parts = write_segments(clip, folder, cuts=[8])
    real = segments._Joiner

    def then_interrupted(*args):
        real(*args).close()
        raise KeyboardInterrupt

    monkeypatch.setattr(segments, "_Joiner", then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        join_segments(tmp_path / "joined.mp4", source=clip, info=media.video_info(clip), parts=parts)
    assert leftovers(tmp_path, clip, folder) == []


def test_a_file_put_at_the_output_while_segments_were_joined_stays(tmp_path, monkeypatch):
    """Checked only before the work, it was replaced without a word (helper-79)."""
    from vsr.pipelines import segments

    clip = make_gop_clip(tmp_path / "clip.mp4")
    folder = tmp_path / "segments"
    folder.mkdir()
    parts = write_segments(clip, folder, cuts=[8])
    output = tmp_path / "joined.mp4"
    finish = segments._Joiner.finish

    def a_file_appears_meanwhile(joiner):
        output.write_bytes(b"put there while the run worked")
        finish(joiner)

    monkeypatch.setattr(segments._Joiner, "finish", a_file_appears_meanwhile)
    with pytest.raises(OutputError, match=f"{output}: already exists, written while this run worked"):
        join_segments(output, source=clip, info=media.video_info(clip), parts=parts)
    assert output.read_bytes() == b"put there while the run worked"
    assert leftovers(tmp_path, clip, folder) == ["joined.mp4"]


def test_a_rotated_video_joined_into_a_container_turned_upright_by_name_says_no_rotation(tmp_path):
    """An .f4v's segments were turned upright (its suffix is not one known to keep a display matrix), and the join
    still wrote the source's rotation: the frames were shown turned twice."""
    clip = media.make_rotated_clip(tmp_path / "clip.mp4", frames=12, gop=4)
    options = UpscaleOptions(model="bicubic", outscale=2, device="cpu")
    video = VideoOptions(segment_seconds=0.2)
    single = upscale_video(clip, tmp_path / "one.f4v", options=options, video=video)
    joined = upscale_video_in_segments(clip, tmp_path / "joined.f4v", options=options, video=video)
    for result in (single, joined):
        assert media.video_info(result.output).rotation == result.rotation == 0
        assert (result.width, result.height) == (96, 128)
    assert joined.times.extra["segments"] == 3
    assert decoded_framemd5(joined.output) == decoded_framemd5(single.output)


def test_a_window_past_the_end_is_the_one_line_of_one_device_for_remote_segments_too(tmp_path):
    """With Ray, the empty plan went on to the join: IndexError."""
    clip = make_gop_clip(tmp_path / "clip.mp4")
    with pytest.raises(OptionError, match="no video frame from 5 s"):
        upscale_video_in_segments(clip, tmp_path / "out.mp4", options=UpscaleOptions(model="bicubic", device="cpu"),
                                  video=VideoOptions(start=5.0), remote=object())  # (never called)
    assert leftovers(tmp_path, clip) == []


def test_a_frames_preview_ends_a_long_cue_with_its_last_frame_on_one_device_as_on_two(tmp_path):
    """One device kept the cue's 8.9 s in a 20-frame preview (the file lasted 9 s); the segments' join cut it."""
    cues = tmp_path / "cue.srt"
    cues.write_text("1\n00:00:00,100 --> 00:00:09,000\na long cue\n\n")
    clip = tmp_path / "clip.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2", "-i", cues, "-c:v", "libx264",
                 "-g", "5", "-c:s", "srt", clip)
    options = UpscaleOptions(model="bicubic", outscale=2, device="cpu")
    video = VideoOptions(max_frames=20, segment_seconds=0.3)
    one = upscale_video(clip, tmp_path / "one.mkv", options=options, video=video)
    two = upscale_video_in_segments(clip, tmp_path / "two.mkv", options=options, video=video)
    assert two.times.extra["segments"] > 1
    for result in (one, two):
        assert media.packet_spans(result.output, "s:0") == [(Fraction(1, 10), Fraction(8, 10))]
        assert len(media.video_pts(result.output)) == 20


def test_an_avi_with_b_frames_is_not_cut_where_its_times_are_in_decoding_order(tmp_path, caplog):
    """AVI times packets in decoding order: a cut's frames were not its packets', and 2 B-frames were lost at it
    (helper-60). One segment, all 20 frames."""
    source = tmp_path / "xvid.avi"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=2", "-c:v", "mpeg4", "-bf", "2", "-g",
                 "10", source)
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.segments"):
        result = upscale_video_in_segments(source, tmp_path / "out.avi", devices="cpu,cpu",
                                           options=UpscaleOptions(model="bicubic", outscale=2),
                                           video=VideoOptions(segment_seconds=0.3))
    assert result.frames == 20 and "so one segment: upscaling it on cpu alone" in caplog.text


# --- the command line --------------------------------------------------------------------------------------------


def test_vsr_upscale_with_devices(tmp_path, tiny_rrdbnet_checkpoint):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    output = tmp_path / "out.mp4"
    result = run_vsr("upscale", clip, "--devices", "cpu,cpu", "--model", tiny_rrdbnet_checkpoint, "-o", output)
    assert result.returncode == 0, result.stderr
    assert f"wrote {output}: {FRAMES} frames at 256x192" in result.stdout
    assert media.video_times(output) == media.video_times(clip)
    assert media.framemd5(output, "0:a") == media.framemd5(clip, "0:a")
    assert leftovers(tmp_path, clip, output) == []


def test_vsr_upscale_devices_errors_are_one_line(tmp_path, tiny_rrdbnet_checkpoint):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    result = run_vsr("upscale", clip, "--devices", "cpu,0", "--model", tiny_rrdbnet_checkpoint,
                     "-o", tmp_path / "out.mp4")
    assert result.returncode == OptionError.exit_code
    assert result.stderr.strip().count("\n") == 0 and "--devices cpu,0" in result.stderr


def packet_times(path: Path) -> list[str]:
    """The video packets' decoding times by ffprobe: what AVI and ASF keep of a frame's time."""
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=dts_time",
                             "-of", "csv=p=0", str(path)], check=True, capture_output=True, text=True)
    return result.stdout.split()


@pytest.mark.parametrize("name, codec_args", [
    ("home.avi", ("-c:v", "mpeg4", "-c:a", "libmp3lame")),
    ("old.wmv", ("-c:v", "wmv2", "-c:a", "wmav2")),
    ("dvd.mpg", ("-c:v", "mpeg2video", "-c:a", "mp2")),
], ids=["avi", "wmv", "mpg"])
def test_h264_joined_into_avi_asf_and_program_streams_plays_with_the_frames_of_one_run(tmp_path, name, codec_args):
    """The MP4 segments' H.264 (length-prefixed units) becomes what these containers carry (start codes, parameter
    sets in the stream); AVI and ASF, which keep one time per packet, get no B-frames, so frames keep their times."""
    source = tmp_path / name
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=12", "-f", "lavfi", "-i", "sine=duration=2",
                 "-frames:v", "16", "-g", "4", *codec_args, "-shortest", source)  # (segments of MIN_SEGMENT_FRAMES)
    options = UpscaleOptions(model="bicubic", outscale=2)
    lossless = {"qp": "0"}  # H.264 that decodes to the same frames from one run or from segments
    single = upscale_video(source, tmp_path / f"single{source.suffix}", options=options,
                           video=VideoOptions(encoder_options=lossless))
    split = upscale_video_in_segments(source, tmp_path / f"split{source.suffix}", options=options,
                                      video=VideoOptions(encoder_options=lossless, segment_seconds=0.2))
    assert split.times.extra["segments"] == 4
    assert media.playback_errors(split.output) == ""
    assert len(decoded_framemd5(split.output)) == 16
    assert decoded_framemd5(split.output) == decoded_framemd5(single.output)
    assert media.playback_errors(single.output) == ""
    if source.suffix != ".mpg":  # a program stream keeps a time only where a PES packet starts
        assert packet_times(split.output) == packet_times(single.output) == packet_times(source)


def test_mxf_output_gets_no_b_frames_so_its_frames_keep_their_times(tmp_path):
    """FFmpeg's MXF muxer writes each packet's decoding time as its presentation time: behind B-frames, the frames'
    times came out shuffled (ffmpeg 5.1 dropped one re-encoding such a file)."""
    source = make_clip(tmp_path / "clip.mp4", frames=12)  # 25 fps
    output = tmp_path / "out.mxf"
    upscale_video(source, output, options=UpscaleOptions(model="bicubic", outscale=2),
                  video=VideoOptions(encoder_options={"x264-params": "b-adapt=0"}))  # B-frames wherever allowed
    frames = media.ffprobe(output, "-select_streams", "v:0", "-show_entries", "frame=pts_time,pict_type")["frames"]
    assert [Fraction(frame["pts_time"]) for frame in frames] == [Fraction(n, 25) for n in range(12)]
    assert "B" not in {frame["pict_type"] for frame in frames}
    assert media.playback_errors(output) == ""


def shown_times(path: Path) -> list[Fraction]:
    """The decoded frames' times as players take them (best effort: AVI's frames have no time of their own)."""
    found = media.ffprobe(path, "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time")
    return [Fraction(frame["best_effort_timestamp_time"]) for frame in found["frames"]]


def packet_checksums(path: Path, selector: str) -> list[str]:
    """ffmpeg's checksum of each packet's data, times and side data left out."""
    return [line.split(",")[5].strip() for line in media.framemd5(path, selector).splitlines()
            if not line.startswith("#")]


@pytest.mark.parametrize("name, input_args, output_args", [
    ("phone.mp4", ["-r", "25"], ["-c:a", "aac"]),
    ("dvb.ts", ["-r", "25"], ["-c:a", "mp2"]),  # MPEG-TS: every time starts at 1.4 s
    ("dropped.mkv", ["-r", "30000/1001"], ["-c:a", "libmp3lame", "-vf", "select='not(between(n,10,14))'",
                                           "-fps_mode", "vfr"]),
    ("late.mkv", ["-r", "25"], ["-c:a", "libmp3lame", "-vf", "setpts=PTS+0.2/TB", "-fps_mode", "passthrough"]),
], ids=["mp4", "mpeg-ts", "variable rate", "video after the audio"])
def test_avi_counts_frames_at_the_declared_rate_from_the_start_of_the_file(tmp_path, name, input_args, output_args):
    """AVI keeps frames by count at its declared rate and starts every stream at 0. Upscaled into .avi, a video
    declares its own rate (not 600 fps from an MP4's time base), has one index entry per frame interval (an empty one
    where a variable-rate source skips), and frames in place against the audio, whose packets are all kept, even
    from an MPEG-TS recording that starts at 1.4 s. The first frame too: FFmpeg's AVI muxer indexes no empty entry
    before a stream's first packet, so a video that starts after its audio (by 0.2 s here) had its first frame read
    at 0, shown that much early and as much longer; an empty chunk at 0 now holds its place. Segments make the same
    file as one run."""
    source = tmp_path / name
    media.ffmpeg("-f", "lavfi", *input_args, "-i", "testsrc2=size=64x48", "-f", "lavfi", "-i", "sine=duration=1",
                 "-frames:v", "24", "-c:v", "libx264", "-g", "8", *output_args, "-shortest", source)
    stream = media.ffprobe_streams_of(source, "v:0")[0]
    rate = Fraction(stream["r_frame_rate"])
    first_audio = media.ffprobe(source, "-select_streams", "a:0", "-show_entries", "packet=dts_time")["packets"][0]
    times = shown_times(source)
    start = min(times[0], Fraction(first_audio["dts_time"]))  # an AAC encoder's delay in MP4 lies before 0
    places = [round((time - start) * rate) for time in times]
    options, lossless = UpscaleOptions(model="bicubic", outscale=2), {"qp": "0"}
    single = upscale_video(source, tmp_path / "single.avi", options=options,
                           video=VideoOptions(encoder_options=lossless))
    split = upscale_video_in_segments(source, tmp_path / "split.avi", options=options,
                                      video=VideoOptions(encoder_options=lossless, segment_seconds=0.25))
    assert split.times.extra["segments"] > 1
    for output in (single.output, split.output):
        written = media.ffprobe_streams_of(output, "v:0")[0]
        assert Fraction(written["time_base"]) == 1 / rate and Fraction(written["avg_frame_rate"]) == rate
        assert int(written["nb_frames"]) == places[-1] + 1  # index entries, empty ones included
        shown = [round(time * rate) for time in shown_times(output)]
        assert shown == places and (places[0] >= 5 or name != "late.mkv")
        assert packet_checksums(output, "0:a") == packet_checksums(source, "0:a")
        assert media.playback_errors(output) == ""
    assert decoded_framemd5(split.output) == decoded_framemd5(single.output)


def test_ctrl_c_while_the_workers_start_is_one_line(tmp_path, tiny_rrdbnet_checkpoint):
    """A terminal's Ctrl-C reaches the whole process group: a worker still importing torch printed its traceback."""
    import os
    import signal

    from tests.processes import HANG_SECONDS, VSR, wait_until

    clip = make_gop_clip(tmp_path / "clip.mp4")
    process = subprocess.Popen([*VSR, "upscale", clip, "-o", tmp_path / "out.mp4", "-m", tiny_rrdbnet_checkpoint,
                                "--devices", "cpu,cpu"], start_new_session=True, stderr=subprocess.PIPE, text=True)

    def spawned() -> bool:  # a worker of the driver has started
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and b"spawn_main" in (entry / "cmdline").read_bytes() and int(
                        (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == process.pid:
                    return True
            except (OSError, ValueError, IndexError):
                continue
        return False

    wait_until(spawned, "a worker spawned", process)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=HANG_SECONDS)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("vsr: interrupted")
