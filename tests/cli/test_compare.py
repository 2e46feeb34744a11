"""`vsr compare` on real videos: frames paired by time, halves where they belong, windows, and errors.

The clips' frames differ from their neighbours (a gradient that shifts and a square that moves and flips from black
to white), so a frame paired with the wrong one shows at once.
"""

import os
import signal
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from tests.cli.test_upscale_video import vsr
from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import GRAY_STEP, make_clip, make_gray_steps_clip, make_letterboxed_clip, remove_gif_delays
from tests.processes import HANG_SECONDS, VSR, wait_until
from vsr.compare import CompareOptions, compare_videos
from vsr.errors import OptionError

pytestmark = media.requires_ffmpeg


def frames_of(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)]


def nearest(picture, candidates):
    """The index of the candidate closest to `picture` (mean absolute difference)."""
    return int(np.argmin([np.abs(picture - candidate).mean() for candidate in candidates]))


@pytest.fixture(scope="module")
def upscaled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    source = make_clip(folder / "clip.mp4", frames=20, size=(64, 48), audio="aac")
    result = folder / "clip.x4.mp4"
    vsr("upscale", source, "-o", result, "-m", "bicubic", "--codec", "x264-lossless")
    return source, result


def test_split_shows_each_upscaled_frame_beside_its_own_source_frame(upscaled, tmp_path):
    source, result = upscaled
    clip = tmp_path / "compare.mp4"
    assert vsr("compare", source, result, "-o", clip).stdout.strip() == f"wrote {clip}"
    shown, made = frames_of(clip), frames_of(result)
    assert len(shown) == len(made) == 20
    assert shown[0].shape == made[0].shape == (192, 256, 3)
    for index, frame in enumerate(shown):
        window = made[max(index - 1, 0):index + 2]
        offset = max(index - 1, 0)
        # Right half: the upscaled frame itself (through libx264 at CRF 16); left: the same source frame, bicubic
        # by swscale instead of by vsr. The labels' corners are left out.
        assert offset + nearest(frame[40:, 136:], [m[40:, 136:] for m in window]) == index
        assert offset + nearest(frame[40:, :120], [m[40:, :120] for m in window]) == index
        # Through CRF 16 and 4:2:0 these frames measured 1.4 to 2.0 levels off (2.004 once: 2 was too tight).
        assert np.abs(frame[40:, 136:] - made[index][40:, 136:]).mean() < 2.5
    divider, beside = shown[5][40:, 127:129].mean(), shown[5][40:, 120:126].mean()  # white at 70 %, 2 pixels wide
    assert divider > 170 and divider > beside + 30, (divider, beside)
    audio = media.ffprobe_streams_of(clip, "a")
    assert len(audio) == 1 and abs(float(audio[0]["duration"]) - 0.8) < 0.05


def test_a_preview_is_paired_with_the_source_from_its_offset(upscaled, tmp_path):
    source, _ = upscaled
    preview = tmp_path / "preview.mp4"
    vsr("upscale", source, "-o", preview, "-m", "bicubic", "--codec", "x264-lossless", "--start", "0.4", "--end", "0.6")
    clip = tmp_path / "compare.mp4"
    vsr("compare", source, preview, "-o", clip, "--offset", "0.4", "--mode", "side-by-side", "--label", "")
    shown, whole = frames_of(clip), frames_of(upscaled[1])
    assert len(shown) == 5 and shown[0].shape == (192, 512, 3)
    for index, frame in enumerate(shown):  # frames 10 to 14 of the source's 20 (25 fps), on both sides
        assert nearest(frame[:, :256], whole) == 10 + index
        assert nearest(frame[:, 256:], whole) == 10 + index


def test_a_window_of_the_upscaled_video(upscaled, tmp_path):
    source, result = upscaled
    clip = tmp_path / "window.mp4"
    vsr("compare", source, result, "-o", clip, "--start", "0.2", "--end", "0.4")
    shown, made = frames_of(clip), frames_of(result)
    assert len(shown) == 5
    assert [nearest(frame[40:, 136:], [m[40:, 136:] for m in made]) for frame in shown] == [5, 6, 7, 8, 9]
    assert media.ffprobe_frame_pts(clip)[0] == 0


@pytest.mark.parametrize("end", ["9999999999999", "100000000000000000000"])
def test_an_end_past_any_video_shows_it_to_its_end(upscaled, tmp_path, end):
    """ffmpeg's filters hold times as 64-bit microseconds, up to 9.2e12 s: a later --end was its error."""
    source, result = upscaled
    clip = tmp_path / "window.mp4"
    vsr("compare", source, result, "-o", clip, "--start", "0.2", "--end", end)
    assert len(frames_of(clip)) == 15


def test_mode_and_baseline_are_taken_in_any_case(upscaled, tmp_path):
    """(As every choice of vsr's: --device CPU was taken, --mode SPLIT refused.)"""
    source, result = upscaled
    clip = tmp_path / "compare.mp4"
    vsr("compare", source, result, "-o", clip, "--mode", "Side-By-Side", "--baseline", "NEAREST", "--start", "0.6")
    assert [frame.shape for frame in frames_of(clip)] == [(192, 512, 3)] * 5


def test_a_window_given_as_numpy_or_fraction_seconds_from_python(upscaled, tmp_path):
    """Written into the audio filter as its repr ("PTS-np.float64(0.2)/TB"): ffmpeg refused it (helper-53)."""
    source, result = upscaled
    for start in (np.float64(0.2), Fraction(1, 5)):
        clip = compare_videos(source, result, tmp_path / "window.mp4", overwrite=True,
                              options=CompareOptions(start=start, end=Fraction(2, 5)))
        assert len(frames_of(clip)) == 5


def test_the_default_name_and_a_video_without_audio(tmp_path):
    source = make_clip(tmp_path / "silent.mp4", frames=4)
    result = tmp_path / "silent.x4.mp4"
    vsr("upscale", source, "-m", "bicubic")
    vsr("compare", source, result, "--baseline", "nearest")
    clip = tmp_path / "silent.x4.compare.mp4"
    assert [stream["codec_type"] for stream in media.ffprobe_streams(clip)] == ["video"]
    assert len(frames_of(clip)) == 4


def test_an_output_folder_gets_the_default_name_and_an_empty_output_is_one_line(upscaled, tmp_path):
    """-o FOLDER said "FOLDER: the clip is H.264 video; name it .mp4" (`vsr upscale -o FOLDER` writes into it), and
    -o "" said it of "." (Path("") is ".")."""
    source, result = upscaled
    vsr("compare", source, result, "-o", tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["clip.x4.compare.mp4"]
    outcome = vsr("compare", source, result, "-o", "", check=False)
    assert outcome.returncode == 2
    assert outcome.stderr.strip().splitlines() == [
        "vsr: error: -o is empty: name the clip (.mp4, .mkv or .mov), or a folder to write it in (or leave -o out "
        "to write it beside UPSCALED)"]


def test_a_preview_compared_without_its_offset_is_warned_about(upscaled, tmp_path):
    source, _ = upscaled
    preview = tmp_path / "preview.mp4"
    vsr("upscale", source, "-o", preview, "-m", "bicubic", "--start", "0.4", "--end", "0.6")
    result = vsr("compare", source, preview, "-o", tmp_path / "compare.mp4")
    assert "a preview needs --offset (its --start)" in result.stderr
    vsr("upscale", source, "-o", preview, "-m", "bicubic", "--start", "0.1", "--end", "0.2", "--overwrite")
    result = vsr("compare", source, preview, "--offset", "0.1", "-o", tmp_path / "compare.mp4", "--overwrite")
    assert "WARNING" not in result.stderr  # given its offset, a preview is shorter for its --end


@pytest.mark.parametrize("options, message", [
    (dict(mode="wipe"), "--mode must be one of split, side-by-side, not 'wipe'"),
    (dict(baseline="magic"), "--baseline must be one of bicubic, lanczos, nearest, not 'magic'"),
    (dict(start=1, end=0.5), "--end (0.5) must be after --start (1)"),
    (dict(offset=float("nan")), "--offset, --start and --end are seconds: finite numbers"),
    (dict(start=5), "{result}: no video frame from 5 s; it lasts 0.800 s"),
    (dict(offset=10), "{source}: no video frame from 10 s; it lasts 0.800 s"),
    (dict(start=1e20), "{result}: no video frame from 1e+20 s; it lasts 0.800 s"),
    (dict(crop="wide"), "--crop takes auto, off, or WIDTH:HEIGHT:X:Y as FFmpeg's crop filter (1920:800:0:140); "
                        "not 'wide'"),
    (dict(crop="100:10"), "{source}: --crop 100:10 does not fit in its 64x48 frames"),
    # From Python these failed inside ffmpeg ("Conversion failed!") or as a bare TypeError (helper-53).
    (dict(crf=-5), "--crf must be a whole number from 0 to 51 (libx264's), not -5"),
    (dict(crf=True), "--crf must be a whole number from 0 to 51 (libx264's), not True"),
    (dict(label=5), "--label must be text, not 5"),
])
def test_bad_options_are_one_error_and_write_nothing(upscaled, tmp_path, options, message):
    source, result = upscaled
    with pytest.raises(OptionError) as raised:
        compare_videos(source, result, tmp_path / "c.mp4", options=CompareOptions(**options))
    assert str(raised.value) == message.format(source=source, result=result)
    assert list(tmp_path.iterdir()) == []


def test_one_file_twice_and_an_output_that_cannot_hold_h264_are_one_line(upscaled, tmp_path):
    source, result = upscaled
    with pytest.raises(OptionError, match="given as both SOURCE and UPSCALED"):
        compare_videos(result, result, tmp_path / "c.mp4")
    with pytest.raises(OptionError, match="the clip is H.264 video; name it .mp4, .mkv or .mov"):
        compare_videos(source, result, tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_left_alone_and_a_missing_input_is_one_line(upscaled, tmp_path):
    source, result = upscaled
    existing = tmp_path / "c.mp4"
    existing.write_bytes(b"keep")
    outcome = vsr("compare", source, result, "-o", existing, check=False)
    assert outcome.returncode == 4 and "already exists" in outcome.stderr
    assert existing.read_bytes() == b"keep"
    outcome = vsr("compare", tmp_path / "nothing.mp4", result, "-o", tmp_path / "d.mp4", check=False)
    assert outcome.returncode == 2
    assert outcome.stderr.strip().splitlines() == [f"vsr: error: {tmp_path / 'nothing.mp4'}: no such file"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.mp4"]


@pytest.mark.parametrize("crop", ["auto", "64:28:0:10"])
def test_a_cropped_upscale_is_compared_with_the_same_part_of_the_source_in_square_pixels(tmp_path, crop):
    """`vsr upscale --crop` kept the picture between the bars: the plain side must show that part too, not the whole
    frame squeezed into the picture's shape; and the clip's pixels are square, as the upscaled video's are."""
    source = make_letterboxed_clip(tmp_path / "film.mkv", frames=6, picture=(64, 28), bars=(10, 10, 0, 0))
    result = tmp_path / "film.x4.mkv"
    vsr("upscale", source, "-o", result, "-m", "bicubic", "--crop", crop, "--codec", "x264-lossless")
    clip = tmp_path / "compare.mp4"
    vsr("compare", source, result, "-o", clip, "--crop", crop, "--mode", "side-by-side", "--label", "")
    stream = media.ffprobe_streams_of(clip, "v:0")[0]
    assert (stream["width"], stream["height"], stream.get("sample_aspect_ratio", "1:1")) == (512, 112, "1:1")
    for frame in frames_of(clip):  # bicubic by swscale beside bicubic by vsr: the same picture
        assert np.abs(frame[:, :256] - frame[:, 256:]).mean() < 4
    squeezed = tmp_path / "squeezed.mp4"  # the whole frame, bars and all, in the picture's shape
    vsr("compare", source, result, "-o", squeezed, "--mode", "side-by-side", "--label", "")
    assert np.abs(frames_of(squeezed)[0][:, :256] - frames_of(squeezed)[0][:, 256:]).mean() > 10


def test_audio_that_starts_after_the_video_keeps_its_place(tmp_path):
    """The upscaled video's audio starts 0.5 s after its first frame: so it does in the clip, whole and from --start
    (an audio track timed from its own first sample played early)."""
    video = make_clip(tmp_path / "v.mp4", frames=20, size=(64, 48), fps=10)
    source = tmp_path / "late.mkv"
    media.ffmpeg("-i", video, "-itsoffset", "0.5", "-f", "lavfi", "-i", "sine=d=1.5", "-map", "0:v", "-map", "1:a",
                 "-c:v", "copy", "-c:a", "pcm_s16le", source)
    result = tmp_path / "late.x4.mkv"
    vsr("upscale", source, "-o", result, "-m", "bicubic")
    for window, audio_start in (([], 0.5), (["--start", "0.3"], 0.2)):
        clip = tmp_path / f"compare{len(window)}.mkv"
        vsr("compare", source, result, "-o", clip, *window)
        streams = media.ffprobe(clip, "-show_streams")["streams"]
        starts = {stream["codec_type"]: float(stream["start_time"]) for stream in streams}
        assert starts["video"] == 0 and abs(starts["audio"] - audio_start) < 0.03  # (AAC's priming: 23 ms)


def test_a_rotated_anamorphic_video_keeps_its_shape(tmp_path):
    """Stored 64×48 with pixels 4:3 wide, shown turned: 48 pixels of 4/3 high by 64 wide, a 1:2 picture. Turned
    upright by ffmpeg, the pixels are 3:4; the clip must say so, or both halves are stretched."""
    source = tmp_path / "phone.mp4"
    media.ffmpeg("-i", make_clip(tmp_path / "v.mp4", frames=4, size=(64, 48)), "-c:v", "libx264", "-vf",
                 "setsar=4/3", tmp_path / "wide.mp4")
    media.ffmpeg("-i", tmp_path / "wide.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90", source)
    result = tmp_path / "phone.x4.mp4"
    vsr("upscale", source, "-o", result, "-m", "bicubic")
    clip = tmp_path / "compare.mp4"
    vsr("compare", source, result, "-o", clip, "--mode", "side-by-side")
    stream = media.ffprobe_streams_of(clip, "v:0")[0]
    assert (stream["width"], stream["height"], stream["sample_aspect_ratio"]) == (384, 256, "3:4")


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_phone_video_is_shown_upright_on_both_sides(tmp_path, rotation):
    """vsr decodes the source's frames as stored (its display matrix says how to turn them); ffmpeg turns the
    upscaled video upright: so must the plain side be, or it shows the picture turned, squeezed into the shape."""
    source = tmp_path / "phone.mp4"
    media.ffmpeg("-i", make_clip(tmp_path / "v.mp4", frames=3, size=(64, 48)), "-c", "copy", "-metadata:s:v:0",
                 f"rotate={rotation}", source)
    result = tmp_path / "phone.x4.mp4"
    vsr("upscale", source, "-o", result, "-m", "bicubic")
    clip = tmp_path / "compare.mp4"
    vsr("compare", source, result, "-o", clip, "--mode", "side-by-side", "--label", "")
    for frame in frames_of(clip):
        half = frame.shape[1] // 2
        assert frame.shape[:2] == ((192, 512) if rotation == 180 else (256, 384))
        assert np.abs(frame[:, :half] - frame[:, half:]).mean() < 2  # (measured 1.1: bicubic twice, CRF 16)


def test_an_output_named_as_the_source_is_refused_as_such_even_without_overwrite(upscaled):
    source, result = upscaled
    before = source.read_bytes()
    outcome = vsr("compare", source, result, "-o", source, check=False)
    assert outcome.returncode == 4 and "the output would replace the source" in outcome.stderr
    assert source.read_bytes() == before
    # (as the upscaled video named as the output is: an output error, exit 4, as `vsr upscale -o INPUT` too)
    outcome = vsr("compare", source, result, "-o", result, check=False)
    assert outcome.returncode == 4 and "the output would replace the input" in outcome.stderr


@media.DEV_FULL
def test_a_full_disk_is_said_as_such(upscaled, tmp_path):
    """ffmpeg's last line, "Conversion failed!", was all it said. The clip's temporary is made to be /dev/full."""
    source, result = upscaled
    (tmp_path / ".c.partial.mp4").symlink_to("/dev/full")
    outcome = vsr("compare", source, result, "-o", tmp_path / "c.mp4", check=False)
    assert outcome.returncode == 4
    assert outcome.stderr.strip().splitlines() == [
        f"vsr: error: {tmp_path}: cannot write the comparison there (No space left on device)"]
    assert list(tmp_path.iterdir()) == []


def test_a_file_size_limit_is_said_as_such(upscaled, tmp_path):
    """ffmpeg dies of SIGXFSZ without a word (Python ignores it): the line was ffmpeg's last progress line, exit 1
    (helper-86). As systemd's LimitFSIZE and batch schedulers set it."""
    import resource

    source, result = upscaled
    limited = subprocess.run([*VSR, "compare", str(source), str(result), "-o", str(tmp_path / "c.mp4")],
                             capture_output=True, text=True, preexec_fn=lambda: resource.setrlimit(
                                 resource.RLIMIT_FSIZE, (4 << 10, resource.RLIM_INFINITY)))
    assert limited.returncode == 4
    assert limited.stderr.strip().splitlines() == [
        f"vsr: error: {tmp_path}: cannot write the comparison there (File too large)"]
    assert list(tmp_path.iterdir()) == []


def test_both_halves_show_the_colors_of_the_upscaled_video_and_the_clip_says_which(tmp_path):
    """The clip had no color tags, and a BT.601 source scaled beside a BT.709 upscale kept its own matrix's values:
    players showed one half's red off, and both halves as their guess of an untagged clip (helper-62)."""
    source, upscale = tmp_path / "sd.mp4", tmp_path / "hd.mp4"
    red = ["-f", "lavfi", "-i", "color=c=0xC81E28:size=64x48:rate=25,format=rgb24", "-frames:v", "3"]
    media.ffmpeg(*red, "-vf", "scale=out_color_matrix=bt601:out_range=tv", "-pix_fmt", "yuv444p", "-colorspace",
                 "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m", "-c:v", "libx264", "-qp", "0",
                 source)
    media.ffmpeg(*red, "-vf", "scale=256:192:out_color_matrix=bt709:out_range=tv", "-pix_fmt", "yuv444p",
                 "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-c:v", "libx264", "-qp",
                 "0", upscale)
    clip = compare_videos(source, upscale, tmp_path / "clip.mp4", options=CompareOptions(mode="side-by-side", label=""))
    stream = media.ffprobe_streams_of(clip, "v:0")[0]
    assert (stream["color_space"], stream["color_primaries"], stream["color_transfer"]) == ("bt709",) * 3
    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0))
    luma = np.frombuffer(frame.planes[0], np.uint8).reshape(frame.planes[0].height, -1)[:, :frame.width]
    left, right = np.median(luma[:, 8:120]), np.median(luma[:, 136:248])
    assert left == right == 73  # (BT.709's Y of that red; BT.601's is 86)


def test_an_offset_past_a_source_of_unknown_length_names_both_videos(tmp_path):
    """A raw .h264 source has no duration to check the offset against before the work: the message named only the
    upscaled video, whose frames were all there (helper-80). Its frames are counted now (at its rate, 10 fps): the
    upscaled frames, which make the clip, would be shown beside none."""
    source = tmp_path / "raw.h264"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "10", "-c:v", "libx264", source)
    upscaled = tmp_path / "up.mkv"
    vsr("upscale", source, "-m", "bicubic", "-o", upscaled)
    with pytest.raises(OptionError, match=f"^{source}: no video frame from 5 s; it lasts 1.000 s$"):
        compare_videos(source, upscaled, tmp_path / "clip.mp4", options=CompareOptions(offset=5))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw.h264", "up.mkv"]


def test_sigterm_stops_ffmpeg_too_and_leaves_nothing(tmp_path):
    """`kill` (docker stop) reached vsr alone: ffmpeg went on encoding after vsr had said "no unfinished file is
    left", and could make the temporary file after vsr removed it (helper-84)."""
    source = make_clip(tmp_path / "long.mp4", frames=300, size=(64, 48))
    result = tmp_path / "long.x4.mp4"
    vsr("upscale", source, "-o", result, "-m", "bicubic", "--preset", "ultrafast")
    clip = tmp_path / "clip.mp4"
    process = subprocess.Popen([*VSR, "compare", str(source), str(result), "-o", str(clip)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    temporary = tmp_path / ".clip.partial.mp4"
    wait_until(temporary.exists, "ffmpeg's temporary output", process)  # (made by ffmpeg: it is running)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=HANG_SECONDS) == 143
    # vsr waits for the ffmpeg it killed: none is left in its process group once vsr has ended. (No half second's
    # grace, as it had: a time to guess on a loaded machine, and an ffmpeg left running could end meanwhile.)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["long.mp4", "long.x4.mp4"]


# A GIF's delays, in ms as Pillow takes them: 1 cs (shown as 10 by browsers, and by vsr), 2 cs, 3 cs, and one left
# unsaid (its frame has no Graphic Control Extension: browsers show it 10 cs, and so does vsr; FFmpeg 8, PyAV's,
# gave it the delay before it, 3 cs, which timed every frame after it 7 cs sooner than browsers do).
GIF_DELAYS = (10, 20, 10, 20, 30, None)
GIF_SHOWN_CS = (10, 2, 10, 2, 3, 10)


def _gray_steps_source(folder, kind):
    """A source of 30 frames, each its own gray (make_gray_steps_clip), timed as `kind` says."""
    if kind == "ntsc":  # 29.97 fps in an MP4's 1/30000
        return make_gray_steps_clip(folder / "ntsc.mp4", [1001 * index for index in range(30)], Fraction(1, 30000))
    if kind == "ts":  # the same frames remuxed into MPEG-TS: 90 kHz, starting at 1.4 s
        source = folder / "ntsc.ts"
        media.ffmpeg("-i", _gray_steps_source(folder, "ntsc"), "-c", "copy", source)
        return source
    if kind == "film":  # 23.976 fps in Matroska's milliseconds
        return make_gray_steps_clip(folder / "film.mkv", [round(1001 * index / 24) for index in range(30)],
                                    Fraction(1, 1000))
    if kind == "gif":
        from PIL import Image

        delays = [GIF_DELAYS[index % len(GIF_DELAYS)] for index in range(30)]
        pictures = [Image.new("L", (64, 48), GRAY_STEP * (index + 1)) for index in range(30)]
        pictures[0].save(folder / "steps.gif", save_all=True, append_images=pictures[1:], loop=0,
                         duration=[delay or 0 for delay in delays])
        return remove_gif_delays(folder / "steps.gif", {index for index, delay in enumerate(delays) if delay is None})
    if kind == "vfr-mkv":  # steps of 33, 17, 50 and 67 ms in Matroska's milliseconds
        steps = np.cumsum([0] + [(33, 33, 67, 17, 50)[index % 5] for index in range(29)])
        return make_gray_steps_clip(folder / "vfr.mkv", [int(step) for step in steps], Fraction(1, 1000))
    steps = np.cumsum([0] + [(3003, 3003, 6006, 1501, 4505)[index % 5] for index in range(29)])
    return make_gray_steps_clip(folder / "vfr.mp4", [int(step) for step in steps], Fraction(1, 90000))


@pytest.mark.parametrize("kind, suffix, upscale_args, compare_args", [
    ("ntsc", ".mkv", (), ()),
    ("ts", ".mkv", (), ()),
    ("film", ".mp4", (), ()),
    ("vfr", ".mkv", (), ()),
    ("vfr-mkv", ".mp4", (), ()),
    ("gif", ".mkv", (), ()),
    ("gif", ".mp4", ("--start", "0.15"), ("--offset", "0.15")),  # a preview of a GIF, which starts at 0.18 s
    ("ntsc", ".mkv", ("--start", "0.3", "--end", "0.75"), ("--offset", "0.3")),  # a preview
    ("ntsc", ".mkv", (), ("--start", "0.2", "--end", "0.6")),  # a window of the clip
])
def test_each_upscaled_frame_is_shown_once_beside_its_source_frame_whatever_the_containers_keep_times_in(
        tmp_path, kind, suffix, upscale_args, compare_args):
    """The clip showed a frame at each time of either video: Matroska keeps milliseconds, so a 29.97 fps MP4's
    33.367 ms came back as 33 and each frame was shown twice, 58 frames for 30. The clip has the
    upscaled frames in the window, at their times, each beside the source frame it was made from. The source is
    timed as vsr times it (ffmpeg's command line times a GIF otherwise: frames were paired with the wrong ones), and
    the clip keeps the upscaled video's times (ffmpeg timed it in ticks of the rate it guessed, 1/39 s for steps of
    20 and 30 ms: times up to half a tick off, two frames on one tick where steps are shorter)."""
    source = _gray_steps_source(tmp_path, kind)
    upscaled = tmp_path / f"up{suffix}"
    vsr("upscale", source, "-o", upscaled, "-m", "bicubic", "--codec", "x264-lossless", *upscale_args)
    clip = tmp_path / "compare.mp4"
    vsr("compare", source, upscaled, "-o", clip, "--mode", "side-by-side", "--label", "", *compare_args)

    source_levels = [frame.mean() for frame in frames_of(source)]
    upscaled_times, shown_times = media.video_times(upscaled), media.video_times(clip)
    if kind == "gif" and not upscale_args:  # the upscale is timed as browsers show the GIF
        assert upscaled_times == [Fraction(sum(GIF_SHOWN_CS[step % len(GIF_SHOWN_CS)] for step in range(index)), 100)
                                  for index in range(30)]
    window = dict(zip(compare_args[::2], map(Fraction, compare_args[1::2])))
    in_window = [index for index, time in enumerate(upscaled_times)
                 if window.get("--start", 0) <= time < window.get("--end", 1000)]
    assert len(shown_times) == len(in_window) == int(media.ffprobe(
        clip, "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames")
        ["streams"][0]["nb_read_frames"])
    first = upscaled_times[in_window[0]]
    assert shown_times == [upscaled_times[index] - first for index in in_window]
    made_from = [round(source_levels.index(min(source_levels, key=lambda level: abs(level - frame.mean()))))
                 for frame in frames_of(upscaled)]
    for frame, index in zip(frames_of(clip), in_window):
        left, right = frame[:, :256].mean(), frame[:, 256:].mean()
        assert [min(range(30), key=lambda level: abs(source_levels[level] - half)) for half in (left, right)] == [
            made_from[index]] * 2, (index, left, right)
