"""Inverse telecine (`--deinterlace ivtc`): 24000/1001 film telecined by FFmpeg into 30000/1001 interlaced H.264, and
its film frames got back, evenly timed, in one run, in segments and on two workers alike.

The film is testsrc2, whose every frame differs from the next, so a repeated or lost frame shows. Frames are
compared by their luma (BT.601 weights of the RGB decoded): the RGB of a woven H.264 frame and of the FFV1 film differ
in their chroma's siting and interpolation, which inverse telecine has nothing to do with.
"""

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from vsr.pipelines import telecine
from vsr.pipelines.decode import open_decoder
from vsr.pipelines.probe import describe_video, format_probe, probe
from vsr.pipelines.segments import plan_video
from vsr.pipelines.upscale import VideoOptions

from tests.pipelines import media_fixtures as media
from tests.processes import run_vsr

pytestmark = media.requires_ffmpeg

FILM_FRAMES = 40  # 50 telecined frames, 10 cycles
SOURCE_STEP = 1001  # the telecined clip's frame step, in its time base of 1/30000 s
LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The telecined clip (with audio), the film it was made of, and a 25i clip woven from 50p (true interlaced)."""
    folder = tmp_path_factory.mktemp("telecine")
    film = folder / "film.mkv"
    telecined = media.make_telecined_clip(folder / "telecined.mp4", film, film_frames=FILM_FRAMES)
    fifty = folder / "50p.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=50", "-frames:v", "48", "-c:v", "ffv1",
                 "-pix_fmt", "yuv420p", fifty)
    interlaced = folder / "25i.mp4"
    media.ffmpeg("-i", fifty, "-vf", "tinterlace=interleave_top,setfield=tff", "-c:v", "libx264", "-qp", "0",
                 "-flags", "+ildct+ilme", "-x264opts", "tff=1", interlaced)
    return telecined, film, interlaced


def decode(path, deinterlace, **window):
    with open_decoder(path, backend="pyav", deinterlace=deinterlace, **window) as decoder:
        frames, pts = [], []
        for batch in decoder.batches(4):
            frames += list(batch.frames.permute(0, 2, 3, 1).numpy().astype(np.float64))
            pts += batch.pts
    return frames, pts, decoder.info


def luma_error(a, b):
    return np.abs(a @ LUMA - b @ LUMA).mean()


def test_the_film_frames_come_back_whole_and_evenly_timed(clips):
    telecined, film, _ = clips
    truth, _, _ = decode(film, "off")
    frames, pts, info = decode(telecined, "ivtc")
    assert len(frames) == len(truth) == FILM_FRAMES
    assert (info.average_rate, info.frame_count) == (Fraction(24000, 1001), FILM_FRAMES)
    # Each 5/4 of a source frame after the one before, to the tick (1/30000 s): 1251.25 rounded.
    assert pts[0] == 0 and all(abs(pts[i] - i * SOURCE_STEP * 5 / 4) <= 0.5 for i in range(len(pts)))
    errors = [luma_error(frame, film_frame) for frame, film_frame in zip(frames, truth)]
    # bwdif's frames, each against the film frame nearest it: half its lines made up, and 50 frames for 40.
    bwdif, _, _ = decode(telecined, "on")
    bwdif_errors = [min(luma_error(frame, film_frame) for film_frame in truth) for frame in bwdif]
    # Measured: at most 0.38 levels (RGB rounding), against 1.5 on average for bwdif.
    assert max(errors) < 0.6 and max(errors) < np.mean(bwdif_errors) / 2, (max(errors), np.mean(bwdif_errors))


def test_a_window_from_a_cycle_start_has_the_frames_of_the_whole_run(clips):
    # A segment of a resumable run starts on a keyframe that starts a cycle (frame 15 here), and must drop the frames
    # a run from the start drops, with their times.
    telecined, _, _ = clips
    everything, all_pts, _ = decode(telecined, "ivtc")
    step = Fraction(SOURCE_STEP, 30000)
    window, pts, _ = decode(telecined, "ivtc", start=15 * step, end=30 * step)
    assert pts == all_pts[12:24]
    assert all(np.array_equal(a, b) for a, b in zip(window, everything[12:24]))


def test_the_plan_cuts_segments_where_cycles_start_and_counts_film_frames(clips):
    telecined, _, _ = clips
    plan = plan_video(telecined, 3, VideoOptions(deinterlace="ivtc", segment_seconds=None))
    whole, _, _ = decode(telecined, "ivtc")
    assert [segment.start_pts for segment in plan.segments] == [None, 15 * SOURCE_STEP, 30 * SOURCE_STEP]
    assert [len(segment.frames) for segment in plan.segments] == [12, 12, 16]
    assert plan.info.average_rate == Fraction(24000, 1001)
    preview = plan_video(telecined, 1, VideoOptions(deinterlace="ivtc", start=0.5, max_frames=10))
    assert [len(segment.frames) for segment in preview.segments] == [10]


def test_film_times_and_counts():
    assert telecine.film_frame_count(50) == 40 and telecine.film_frame_count(53) == 43
    # A whole cycle: 4 frames over its 5 frames' span; one cut short keeps its frames at their times.
    assert telecine.film_pts([0, 3003, 6006, 9009, 12012, 15015, 18018]) == [0, 3754, 7508, 11261, 15015, 18018]


def assert_same_audio_in_sync(output, source):
    """The audio packets are the source's, byte for byte, and start as far from the first frame as in the source
    (to Matroska's millisecond)."""
    spans = [media.packet_spans(path, "a:0") for path in (output, source)]
    assert len(spans[0]) == len(spans[1])
    assert [md5_of(path, "0:a") for path in (output, source)] == [md5_of(source, "0:a")] * 2
    leads = [spans[index][0][0] - media.video_times(path)[0] for index, path in enumerate((output, source))]
    assert abs(leads[0] - leads[1]) <= Fraction(1, 1000), leads


def md5_of(path, selector):
    """The MD5 of the packets' bytes of the streams `selector` picks, whatever their times."""
    result = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", selector, "-c", "copy",
                             "-f", "md5", "-"], check=True, capture_output=True, text=True)
    return result.stdout


def upscale(source, output, *how):
    run_vsr("upscale", source, "-o", output, "-m", "bicubic", "--outscale", "2", "--codec", "ffv1",
            "--deinterlace", "ivtc", *how, check=True)
    return output


@pytest.fixture(scope="module")
def one_run(clips, tmp_path_factory):
    return upscale(clips[0], tmp_path_factory.mktemp("one-run") / "film.x2.mkv", "--segment-seconds", "0")


def test_vsr_upscale_ivtc_gives_the_film_frames_evenly_timed_with_the_audio_untouched(clips, one_run):
    telecined, _, _ = clips
    stream = media.ffprobe_streams_of(one_run, "v:0")[0]
    assert (stream["r_frame_rate"], stream["avg_frame_rate"]) == ("24000/1001", "24000/1001")
    times = media.video_times(one_run)
    assert len(times) == FILM_FRAMES
    steps = np.diff([float(time) for time in times])
    assert np.all(np.abs(steps - 1001 / 24000) <= 0.001)  # (Matroska counts milliseconds)
    assert_same_audio_in_sync(one_run, telecined)


@pytest.mark.parametrize("how", [["--segment-seconds", "0.6"], ["--devices", "cpu,cpu"]],
                         ids=["segments", "two workers"])
def test_segments_and_workers_give_the_frames_of_one_run(clips, one_run, tmp_path, how):
    telecined, _, _ = clips
    output = upscale(telecined, tmp_path / "film.x2.mkv", *how)
    assert media.decoded_frame_md5s(output) == media.decoded_frame_md5s(one_run)
    assert media.video_times(output) == media.video_times(one_run)
    assert_same_audio_in_sync(output, telecined)


def test_true_interlaced_video_is_not_said_telecined(clips):
    telecined, film, interlaced = clips
    assert telecine.telecine_note(telecined) is not None
    assert telecine.telecine_note(interlaced) is None
    assert telecine.telecine_note(film) is None


def test_a_broadcast_is_judged_from_its_middle_too_whatever_its_clock_starts_at(tmp_path):
    # MPEG-TS clocks start anywhere (a broadcast's at hours): the middle is the start's time plus half the duration.
    # 2 s of true video, then 2 s telecined; the sample from the start shows no repeated field.
    video, film = "testsrc2=size=128x96:rate=30000/1001", "testsrc2=size=128x96:rate=24000/1001"
    broadcast = tmp_path / "broadcast.ts"
    media.ffmpeg("-f", "lavfi", "-i", f"{video}:duration=2", "-f", "lavfi", "-i", f"{film}:duration=2",
                 "-filter_complex", "[1:v]telecine=pattern=23,settb=1/30000[telecined];"
                 "[0:v]settb=1/30000[video];[video][telecined]concat=n=2:v=1[out]", "-map", "[out]",
                 "-c:v", "libx264", "-qp", "0", "-g", "15", "-sc_threshold", "0", "-flags", "+ildct+ilme",
                 "-x264opts", "tff=1", "-output_ts_offset", "1000", broadcast)
    repeated, judged = telecine.telecine_evidence(broadcast)
    assert judged > telecine.SAMPLE_FRAMES and repeated > 0, (repeated, judged)


def test_auto_names_ivtc_for_a_telecined_stream_and_still_deinterlaces_it(clips, tmp_path):
    telecined, _, interlaced = clips
    result = run_vsr("upscale", telecined, "-o", tmp_path / "auto.mkv", "-m", "bicubic", check=True)
    assert "--deinterlace ivtc gives back the film's frames" in result.stderr
    assert len(media.video_times(tmp_path / "auto.mkv")) == 50  # bwdif: one frame per frame, as before
    result = run_vsr("upscale", interlaced, "-o", tmp_path / "25i.mkv", "-m", "bicubic", check=True)
    assert "interlaced video: deinterlacing it" in result.stderr and "ivtc" not in result.stderr


def test_a_stream_timed_in_whole_frames_is_refused_in_one_line(clips, tmp_path):
    telecined, _, _ = clips
    y4m = tmp_path / "telecined.y4m"  # (Y4M times its frames by their numbers: 1001/30000 s a tick)
    media.ffmpeg("-i", telecined, "-frames:v", "10", y4m)
    result = run_vsr("upscale", y4m, "-o", tmp_path / "out.mkv", "-m", "bicubic", "--deinterlace", "ivtc")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"vsr: error: {y4m}: its frame times count in steps of 33.4 ms, too coarse to time "
        "the frames --deinterlace ivtc makes; remux it into .mkv first (ffmpeg -i IN -c copy OUT.mkv)")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["telecined.y4m"]


def test_vsr_compare_pairs_an_ivtc_upscale_with_the_source_inverse_telecined_too(clips, one_run, tmp_path):
    pytest.importorskip("ffmpeg")
    from vsr.compare import CompareOptions, compare_videos

    telecined, _, _ = clips
    clip = compare_videos(telecined, one_run, tmp_path / "compare.mp4", options=CompareOptions(label=""))
    # (bwdif's 50 frames beside the 40 film frames: framesync showed 77 or 97, frames of one side twice); the clip
    # keeps the upscale's frame steps, which Matroska counts in milliseconds, from 0
    assert int(media.ffprobe_streams_of(clip, "v:0")[0]["nb_frames"]) == FILM_FRAMES
    compared, upscaled = media.video_times(clip), media.video_times(one_run)
    assert [time - compared[0] for time in compared] == [time - upscaled[0] for time in upscaled]


def test_other_decoders_and_image_sequences_say_what_ivtc_does_there(clips, tmp_path, caplog):
    from vsr.pipelines.decode import deinterlace_warnings

    assert deinterlace_warnings("decord", "ivtc", interlaced=False) == [
        "decoding with PyAV instead of decord, which cannot deinterlace"]
    media.ffmpeg("-i", clips[0], "-frames:v", "3", tmp_path / "f%03d.png")
    frames, pts, info = decode(tmp_path / "f%03d.png", "ivtc")
    assert len(frames) == 3 and pts == [0, 1, 2]  # taken as they are
    assert "--deinterlace ivtc: an image sequence has no fields; its frames are taken as they are" in caplog.text


# Soft telecine: the film frames whole in the stream, shown 3:2 by flags (media.make_soft_telecined_clip).
SOFT_FILM_FRAMES = 24


@pytest.fixture(scope="module")
def soft(tmp_path_factory):
    """The soft-telecined film as MakeMKV keeps it (.mkv, milliseconds) and as on the DVD (.vob, 90 kHz)."""
    folder = tmp_path_factory.mktemp("soft")
    return {suffix: media.make_soft_telecined_clip(folder / f"soft{suffix}", film_frames=SOFT_FILM_FRAMES)
            for suffix in (".mkv", ".vob")}


def test_the_3_2_cadence_of_soft_telecine_is_told_from_other_timings():
    film = Fraction(24000, 1001)
    soft_90khz = [0, 4505, 7508, 12012, 15015, 19520, 22523, 27027, 30030, 34535, 37538]  # 3, 2, 3, 2 fields
    soft_ms = [50, 100, 133, 184, 217, 267, 300, 350, 384, 434, 467, 517]  # as Matroska rounds them
    assert telecine.pulldown_rate(soft_90khz, Fraction(1, 90000)) == telecine.pulldown_rate(
        soft_ms, Fraction(1, 1000)) == film
    assert telecine.pulldown_rate(soft_90khz[:7], Fraction(1, 90000)) is None  # too few steps to vouch for it
    assert telecine.pulldown_rate([3003 * index for index in range(12)], Fraction(1, 90000)) is None  # 29.97 fps
    two_then_three = [0, 4505, 9009, 12012, 16517, 21021, 24024, 28529, 33033, 36036, 40541, 45045]
    assert telecine.pulldown_rate(two_then_three, Fraction(1, 90000)) is None  # long steps not in turn
    assert telecine.pulldown_rate([0, 40, 80, 160, 180, 300, 340, 380, 460, 480, 600], Fraction(1, 1000)) is None


@pytest.mark.parametrize("suffix", [".mkv", ".vob"])
def test_soft_telecined_film_is_described_and_upscaled_at_the_film_rate_its_frames_keeping_their_times(
        soft, tmp_path, suffix):
    """FFmpeg says the rate of the fields: 29.97 fps (.mkv) or 59.94 (.vob, whose output declared 19001/317 fps in
    Matroska's milliseconds, each frame lasting 16.7 ms to a reader that takes the declared rate)."""
    source = soft[suffix]
    declared = Fraction(media.ffprobe_streams_of(source, "v:0")[0]["r_frame_rate"])
    assert declared == (Fraction(30000, 1001) if suffix == ".mkv" else Fraction(60000, 1001))
    # (The last frame's time is ffmpeg's guess, -fflags +genpts', one short step after the one before.)
    steps = np.diff([float(time) for time in media.video_times(source)])[:-1]
    assert np.allclose(steps[0::2], 0.0505, atol=0.001) and np.allclose(steps[1::2], 0.0334, atol=0.001), steps

    info = describe_video(source)[0]
    assert (info.average_rate, info.base_rate, info.soft_telecined) == (Fraction(24000, 1001),) * 2 + (True,)
    assert ("23.976 fps (soft-telecined film: shown 3:2 by repeat-field flags, frames 50 and 33 ms apart), "
            f"{SOFT_FILM_FRAMES} frames") in format_probe(probe(source))
    output = tmp_path / "soft.x2.mkv"
    run_vsr("upscale", source, "-o", output, "-m", "bicubic", "--outscale", "2", check=True)
    stream = media.ffprobe_streams_of(output, "v:0")[0]
    assert Fraction(stream["r_frame_rate"]) == Fraction(24000, 1001)
    times, output_times = media.video_times(source), media.video_times(output)
    assert len(output_times) == len(times) == SOFT_FILM_FRAMES
    assert max(abs(time - times[0] - output_time) for time, output_time in zip(times, output_times)) <= 0.0005
    # A reader that takes the declared rate (ffmpeg's constant-rate output) keeps each frame once, and no more.
    constant = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(output), "-fps_mode", "cfr", "-f",
                               "framemd5", "-"], check=True, capture_output=True, text=True).stdout
    pictures = [line.split(",")[-1] for line in constant.splitlines() if not line.startswith("#")]
    assert len(pictures) == len(set(pictures)) == SOFT_FILM_FRAMES


def test_ivtc_of_soft_telecined_film_is_refused_in_one_line(soft, tmp_path):
    """Its frames are the film's already: --deinterlace ivtc dropped one in five of them, with a warning that the
    video did not look telecined."""
    source = soft[".mkv"]
    for how in (["--segment-seconds", "0"], ["--segment-seconds", "0.5"]):
        result = run_vsr("upscale", source, "-o", tmp_path / "out.mkv", "-m", "bicubic", "--deinterlace", "ivtc",
                         *how)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            f"vsr: error: {source}: soft-telecined film: its frames are the film's already (23.976 fps, shown 3:2 "
            "by repeat-field flags, 50 and 33 ms apart), and --deinterlace ivtc would drop one in five of them; leave "
            "--deinterlace out"]
        assert list(tmp_path.iterdir()) == []
