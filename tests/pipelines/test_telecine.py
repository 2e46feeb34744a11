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
    stream = media.ffprobe_streams_of(clip, "v:0")[0]
    # (bwdif's 50 frames beside the 40 film frames: framesync showed 77 or 97, frames of one side twice)
    assert (int(stream["nb_frames"]), stream["avg_frame_rate"]) == (FILM_FRAMES, "24000/1001")


def test_other_decoders_and_image_sequences_say_what_ivtc_does_there(clips, tmp_path, caplog):
    from vsr.pipelines.decode import deinterlace_warnings

    assert deinterlace_warnings("decord", "ivtc", interlaced=False) == [
        "decoding with PyAV instead of decord, which cannot deinterlace"]
    media.ffmpeg("-i", clips[0], "-frames:v", "3", tmp_path / "f%03d.png")
    frames, pts, info = decode(tmp_path / "f%03d.png", "ivtc")
    assert len(frames) == 3 and pts == [0, 1, 2]  # taken as they are
    assert "--deinterlace ivtc: an image sequence has no fields; its frames are taken as they are" in caplog.text
