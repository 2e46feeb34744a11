"""`vsr upscale` on real videos, end to end, judged by ffprobe and ffmpeg (independent of PyAV).

The bicubic baseline or a tiny random RRDBNet keep these fast; what they check (streams, frames, times, colors,
files on disk) does not depend on the model.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.test_alpha import make_alpha_clip
from tests.pipelines.clips import BAD_INPUTS, CHART_COLORS, make_clip
from tests.processes import HANG_SECONDS, VSR, run_vsr, wait_until
from vsr.errors import OptionError
from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, upscale_video

vsr = functools.partial(run_vsr, check=True)


def stream_summary(path):
    return [(s["codec_type"], s["codec_name"]) for s in media.ffprobe_streams(path)]


def video_stream(path):
    return media.ffprobe_streams_of(path, "v:0")[0]


def test_mp4_with_aac_comes_back_4x_with_same_frames_times_and_audio(tmp_path):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=12)
    result = vsr("upscale", source, "-m", "bicubic")
    output = tmp_path / "clip.x4.mp4"  # the default name, next to the input
    assert f"wrote {output}: 12 frames at 256x192" in result.stdout
    assert " fps in fp32; " in result.stdout  # a baseline stays exact, whatever the CPU (see resolve_precision)
    video = video_stream(output)
    assert (video["width"], video["height"]) == (64 * 4, 48 * 4)
    assert media.video_times(output) == media.video_times(source)
    assert media.framemd5(output, "0:a") == media.framemd5(source, "0:a")
    assert stream_summary(output) == stream_summary(source)


def test_mkv_keeps_opus_subtitles_attachment_chapters_and_tags(tmp_path):
    source = media.make_rich_mkv(tmp_path / "rich.mkv")
    output = tmp_path / "out.mkv"
    vsr("upscale", source, "-o", output, "-m", "bicubic", "--outscale", "2")
    assert stream_summary(output) == stream_summary(source)
    for selector in ("0:a", "0:s"):
        assert media.framemd5(output, selector) == media.framemd5(source, selector)
    attachment = media.ffprobe_streams_of(output, "t")[0]
    assert attachment["tags"]["filename"] == media.ATTACHMENT_NAME
    chapters = media.ffprobe(output, "-show_chapters")["chapters"]
    assert [c["tags"]["title"] for c in chapters] == [title for title, _, _ in media.CHAPTERS]
    tags = media.ffprobe(output, "-show_format")["format"]["tags"]
    assert all(tags.get(key.upper(), tags.get(key)) == value for key, value in media.CONTAINER_TAGS.items())
    assert (video_stream(output)["width"], video_stream(output)["height"]) == (128, 96)


def _upscale_peak_rss(source: Path, output: Path, *options: str) -> int:
    """The peak resident memory, in bytes, of `vsr upscale source -o output *options` run as a process of its own
    (not forked from the test's server, whose pages it would share): the getrusage of a wrapper's only child (of
    the largest of its processes, workers included)."""
    code = ("import resource, subprocess, sys\n"
            "subprocess.run([sys.executable, '-m', 'vsr', 'upscale', *sys.argv[1:]], check=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n")
    result = subprocess.run([sys.executable, "-c", code, source, "-m", "bicubic", "-o", output, *options],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def first_attachment(path: Path, dumped: Path) -> bytes:
    """The bytes of the first attachment of `path`, as the ffmpeg command dumps it into `dumped`."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-dump_attachment:t:0", str(dumped), "-i", str(path), "-f",
                    "null", "-"], check=True)
    return dumped.read_bytes()


def test_a_big_attachment_is_not_held_many_times_over_by_an_upscale(tmp_path):
    """Fonts of an anime release come to 100 MB and more, often with a cover picture. FFmpeg holds three copies of
    the attachments per open of the file and one in the output. vsr held 10.56 times their size at once (here:
    422 MB more than the same file without them): the header written in memory to ask the muxer whether it takes
    attachments held one, and the cover was read through an open of its own, three more. Now 7.54 (301 MB):
    the decoder's open and the passthrough's (3 + 3), the output's copy, and the muxer's while it writes the header;
    8 is asserted, between the two. One container shared by the decoder and the passthrough would save 3 more."""
    font, cover = tmp_path / "big.ttf", tmp_path / "cover.png"
    font.write_bytes(os.urandom(40_000_000))  # (random: pages of zeros could be shared)
    media.ffmpeg("-f", "lavfi", "-i", "color=blue:size=16x16", "-frames:v", "1", cover)
    plain, fonts = tmp_path / "plain.mkv", tmp_path / "fonts.mkv"
    clip = ("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1", "-pix_fmt", "yuv420p",
            "-c:a", "aac")
    media.ffmpeg(*clip, plain)
    media.ffmpeg(*clip, "-attach", font, "-metadata:s:t:0", "mimetype=application/x-truetype-font", "-attach", cover,
                 "-metadata:s:t:1", "mimetype=image/png", fonts)
    growth = _upscale_peak_rss(fonts, tmp_path / "fonts.x4.mkv") - _upscale_peak_rss(plain, tmp_path / "plain.x4.mkv")
    assert growth < 8 * 40_000_000, growth / 40_000_000
    assert first_attachment(tmp_path / "fonts.x4.mkv", tmp_path / "dumped.ttf") == font.read_bytes()
    # (FFmpeg reads an image attachment as a one-picture video stream)
    media.ffmpeg("-i", tmp_path / "fonts.x4.mkv", "-map", "0:v:1", "-c", "copy", "-f", "image2", tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes() == cover.read_bytes()


def test_a_big_attachment_is_held_once_at_a_time_by_an_upscale_in_segments(tmp_path):
    """Each segment's writer read the source (its frame rate, its last frame, its tags) through opens of its own
    while the decoder's was held, each with FFmpeg's three copies of the attachments: a segmented upscale grew by 6.9
    times the fonts' size here (6.6 on each of two workers). The writer is now made before the decoder opens, one
    open at a time: 5.1, set by the join (the passthrough's open, the output's copy and the muxer's while it writes
    the header, as in a whole-file run without the decoder's); 4.75 on each worker. 6 is asserted, between."""
    font = tmp_path / "big.ttf"
    font.write_bytes(os.urandom(40_000_000))  # (random: pages of zeros could be shared)
    plain, fonts = tmp_path / "plain.mkv", tmp_path / "fonts.mkv"
    clip = ("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1", "-pix_fmt", "yuv420p",
            "-g", "5", "-c:a", "aac")  # (a keyframe every 5 frames: 2 segments of 0.5 s)
    media.ffmpeg(*clip, plain)
    media.ffmpeg(*clip, "-attach", font, "-metadata:s:t:0", "mimetype=application/x-truetype-font", fonts)
    segmented = ("--segment-seconds", "0.4")
    growth = (_upscale_peak_rss(fonts, tmp_path / "fonts.x4.mkv", *segmented)
              - _upscale_peak_rss(plain, tmp_path / "plain.x4.mkv", *segmented))
    assert growth < 6 * 40_000_000, growth / 40_000_000
    assert first_attachment(tmp_path / "fonts.x4.mkv", tmp_path / "dumped.ttf") == font.read_bytes()
    assert media.video_times(tmp_path / "fonts.x4.mkv") == media.video_times(fonts)


@pytest.mark.parametrize(
    "make, check",
    [
        (media.make_vfr_clip, lambda source, output: media.video_times(output) == media.video_times(source)),
        (media.make_10bit_clip, lambda source, output: video_stream(output)["pix_fmt"] == "yuv420p10le"),
        (
            media.make_rotated_clip,
            lambda source, output: media.video_info(output).rotation == media.video_info(source).rotation != 0,
        ),
    ],
    ids=["vfr", "10-bit", "rotated"],
)
def test_variable_rate_deep_and_rotated_clips_survive(tmp_path, make, check):
    source = make(tmp_path / "source.mp4")
    output = tmp_path / "out.mp4"
    vsr("upscale", source, "-o", output, "-m", "bicubic")
    assert check(source, output)
    assert len(media.video_pts(output)) == len(media.video_pts(source))


def test_odd_sized_clip_through_a_tiny_rrdbnet(tmp_path, tiny_rrdbnet_checkpoint):
    source = make_clip(tmp_path / "odd.mp4", frames=6, size=(37, 23), pix_fmt="yuv444p")
    output = tmp_path / "odd.x4.mp4"
    vsr("upscale", source, "-m", tiny_rrdbnet_checkpoint, "-b", "2")
    video = video_stream(output)
    assert (video["width"], video["height"]) == (148, 92)
    assert media.video_times(output) == media.video_times(source)


def test_colors_are_unshifted_through_a_lossless_path(tmp_path):
    source = media.make_color_chart(tmp_path / "bars.mp4", size=(128, 96))
    output = tmp_path / "bars.x4.mkv"
    vsr("upscale", source, "-o", output, "-m", "bicubic", "--codec", "ffv1")
    before, after = decode_first(source), decode_first(output)
    # Compare only inside flat areas: bicubic rings at the edges between bars, which is not a color shift.
    flat = flat_mask(before)
    downsampled = after.reshape(96, 4, 128, 4, 3).mean(axis=(1, 3))
    error = np.abs(downsampled[flat] - before[flat]).mean()
    assert flat.mean() > 0.25
    assert error < 1.0, f"mean color error {error:.2f} levels"


def test_10_bit_colors_are_unshifted_end_to_end(tmp_path):
    """Bars of known colors, 10-bit 4:2:0 (lossless), through `vsr upscale` into ffv1 (10-bit RGB): the middle of each
    bar, decoded by FFmpeg alone, is its color within one 8-bit level."""
    source = make_clip(tmp_path / "bars.mkv", frames=2, size=(128, 48), pix_fmt="yuv420p10le", color_chart=True,
                       color=("bt709", "tv"), options={"qp": "0"})
    output = tmp_path / "bars.x2.mkv"
    vsr("upscale", source, "-o", output, "-m", "bicubic", "--outscale", "2", "--codec", "ffv1")
    assert video_stream(output)["pix_fmt"] == "gbrp10le"
    images, _ = media.decode_rgb(output, deep=True)  # gbrp10le → rgb48le: a repacking, white is 65535
    bar = 256 // len(CHART_COLORS)
    for index, color in enumerate(CHART_COLORS):
        middle = images[0][16:80, index * bar + 8 : (index + 1) * bar - 8] / 65535 * 255
        assert np.abs(middle - np.array(color)).max() <= 1, (index, color)


def decode_first(path):
    """First frame as float RGB, converted with the matrix the stream is tagged with (BT.709 here)."""
    images, _ = media.decode_rgb(path)
    return images[0].astype(np.float64)


def flat_mask(image, radius=2):
    """Pixels whose (2·radius+1)² neighbourhood has one color."""
    height, width, _ = image.shape
    mask = np.zeros((height, width), dtype=bool)
    for y in range(radius, height - radius):
        for x in range(radius, width - radius):
            patch = image[y - radius : y + radius + 1, x - radius : x + radius + 1]
            mask[y, x] = np.ptp(patch.reshape(-1, 3), axis=0).max() <= 1
    return mask


def test_an_rgb_source_becomes_limited_range_yuv_without_a_warning(tmp_path):
    chart = media.make_color_chart(tmp_path / "bars.mp4", size=(128, 96))
    source = tmp_path / "bars-rgb.mkv"
    media.ffmpeg("-i", chart, "-c:v", "ffv1", "-pix_fmt", "bgr0", "-color_range", "pc", source)
    output = tmp_path / "bars-rgb.x4.mkv"
    result = vsr("upscale", source, "-o", output, "-m", "bicubic", "--pix-fmt", "yuv444p", "--crf", "0")
    assert "WARNING" not in result.stderr
    (video,) = media.ffprobe_streams_of(output, "v")
    assert (video["color_range"], video["color_space"]) == ("tv", "smpte170m")  # 96 lines: what players assume
    before, after = decode_first(source), decode_first(output)
    flat = flat_mask(before)
    error = np.abs(after.reshape(96, 4, 128, 4, 3).mean(axis=(1, 3))[flat] - before[flat]).mean()
    assert error < 1.0, f"mean color error {error:.2f} levels"


@pytest.mark.parametrize("name", ["clip.webm", "raw.y4m"])  # (a GIF gives a GIF: tests/pipelines/test_animation.py)
def test_a_container_that_cannot_hold_the_codec_gives_an_mkv_by_default(tmp_path, name):
    source = tmp_path / name
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "6", source)
    result = vsr("upscale", source, "-m", "bicubic")
    output = source.with_name(f"{source.stem}.x4.mkv")
    assert result.stdout.startswith(f"wrote {output}:")
    assert media.video_times(output) == media.video_times(source)


def test_an_output_name_near_the_longest_a_file_system_takes_is_written(tmp_path):
    """Names of 247 to 255 bytes are valid, but their hidden temporary (.NAME.partial.EXT), segment folder or image
    temporary passed 255 bytes: "File name too long", naming the temporary, or a traceback after the video was made."""
    source = tmp_path / "clip.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "6", "-g", "2", source)
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", tmp_path / "still.png")
    long = "a" * 246
    for arguments in ([source, "-o", tmp_path / f"{long}.mp4"],
                      [source, "-o", tmp_path / f"{long}.mkv", "--segment-seconds", "0.2"],
                      [tmp_path / "still.png", "-o", tmp_path / f"{long}.png"]):
        result = vsr("upscale", *arguments, "-m", "bicubic", check=False)
        assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["clip.mp4", "still.png", f"{long}.mp4", f"{long}.mkv", f"{long}.png"])


def test_a_container_asked_for_that_cannot_hold_the_codec_is_one_line(tmp_path):
    source = tmp_path / "raw.y4m"  # the Y4M muxer takes raw video only, and says so only when the header is written
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "2", source)
    result = vsr("upscale", source, "-m", "bicubic", "-o", tmp_path / "out.y4m", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vsr: error: codec 'libx264' cannot be stored in a yuv4mpegpipe file (out.y4m); use .mkv"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw.y4m"]


def test_mpeg_streams_store_only_mpeg_codecs_as_video_and_mxf_refusals_are_about_the_codec(tmp_path):
    """MPEG-TS and program streams take FFV1 or VP9 packets, but as data (or an "mp3" stream) that no player shows:
    refused, on one device and in segments; by default a .ts source with such a codec gives an .mkv. MXF refuses
    x265 with EPERM, which was said to be the disk's fault."""
    source = tmp_path / "clip.ts"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "4", source)
    cases = [(["--codec", "ffv1", "-o", tmp_path / "out.ts"], "codec 'ffv1' cannot be stored as video in a mpegts "
              "file (out.ts); use .mkv"),
             (["--codec", "libvpx-vp9", "-o", tmp_path / "out.mpg", "--segment-seconds", "0.1"],
              "codec 'libvpx-vp9' cannot be stored as video in a mpeg file (out.mpg); use .mkv"),
             (["--codec", "libx264", "-o", tmp_path / "out.webm", "--devices", "cpu,cpu"],  # (was a late traceback)
              "codec 'libx264' cannot be stored in a webm file (out.webm); use .mkv"),
             ([tmp_path / "clip.mp4", "--codec", "libx265", "-o", tmp_path / "out.mxf"],  # (25 fps, which MXF takes)
              "codec 'libx265' cannot be stored in a mxf file (out.mxf); use .mkv")]
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "4", tmp_path / "clip.mp4")
    for arguments, message in cases:
        input = [] if str(arguments[0]).endswith(".mp4") else [source]
        result = vsr("upscale", *input, "-m", "bicubic", *arguments, check=False)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"vsr: error: {message}"]
    with pytest.raises(OptionError, match=r"codec 'libx265' cannot be stored in a mxf file \(out.mxf: Operation not "
                                          r"permitted\); use .mkv"):  # (the writer's own check, as the API meets it)
        upscale_video(tmp_path / "clip.mp4", tmp_path / "out.mxf", options=UpscaleOptions(model="bicubic"),
                      video=VideoOptions(codec="libx265"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4", "clip.ts"]
    result = vsr("upscale", source, "-m", "bicubic", "--codec", "ffv1")
    assert result.stdout.startswith(f"wrote {tmp_path / 'clip.x4.mkv'}:")
    for arguments in ([], ["--devices", "cpu,cpu", "--segment-seconds", "0.2"]):  # "auto" is VP9 in WebM, as ffmpeg's
        vsr("upscale", source, "-m", "bicubic", "-o", tmp_path / "out.webm", "--overwrite", *arguments)
        assert media.ffprobe_streams_of(tmp_path / "out.webm", "v:0")[0]["codec_name"] == "vp9"
    sizes = {}
    for crf in (10, 63):  # given for that VP9 (it was said to be left out, "the video has alpha")
        result = vsr("upscale", source, "-m", "bicubic", "-o", tmp_path / "out.webm", "--overwrite", "--crf", crf)
        assert "alpha" not in result.stderr
        sizes[crf] = (tmp_path / "out.webm").stat().st_size
    assert sizes[63] < sizes[10]


def test_frames_too_wide_for_the_encoder_and_odd_prores_sizes_are_said_as_such(tmp_path):
    """x264 says "Generic error in an external library" of a frame wider than 16384, and vsr blamed the settings; an
    odd width in ProRes was pointed at yuv444p, which ProRes does not take."""
    source = tmp_path / "wide.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "color=gray:size=1100x6:rate=5", "-frames:v", "2", "-c:v", "ffv1", source)
    cases = [(["--width", "16386", "-o", tmp_path / "out.mkv"], "codec 'libx264' cannot encode 16386x90 frames (at "
              "most 16384 pixels a side); use a smaller --outscale, --width or --height"),
             (["--width", "101", "--codec", "prores", "-o", tmp_path / "out.mov"], "pix_fmt yuv422p10le needs an "
              "even width, not 101x1; ask for an even --width/--height, or use a 4:4:4 pix_fmt such as "
              "yuv444p10le")]
    for arguments, message in cases:
        result = vsr("upscale", source, "-m", "bicubic", *arguments, check=False)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"vsr: error: {message}"]
    # 16384×16384 has sides the encoders take, but more pixels than FFmpeg holds in a frame ("Invalid argument")
    square = tmp_path / "square.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "color=gray:size=64x64:rate=5", "-frames:v", "2", "-c:v", "ffv1", square)
    result = vsr("upscale", square, "-m", "bicubic", "--width", "16384", "--codec", "ffv1", "-o", tmp_path / "sq.mkv",
                 check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "vsr: error: codec 'ffv1' cannot encode 16384x16384 frames (more pixels than FFmpeg holds in one picture, "
        "about 268 million); use a smaller --outscale, --width or --height"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["square.mkv", "wide.mkv"]


def test_a_codec_the_container_holds_keeps_the_extension(tmp_path):
    source = tmp_path / "clip.webm"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "4", "-c:v", "libvpx-vp9", source)
    result = vsr("upscale", source, "-m", "bicubic", "--codec", "libsvtav1")
    output = tmp_path / "clip.x4.webm"
    assert result.stdout.startswith(f"wrote {output}:")
    assert [stream["codec_name"] for stream in media.ffprobe_streams_of(output, "v")] == ["av1"]


def test_existing_output_is_refused_and_left_alone(tmp_path):
    source = make_clip(tmp_path / "clip.mp4", frames=4)
    output = tmp_path / "clip.x4.mp4"
    output.write_bytes(b"precious")
    result = vsr("upscale", source, "-m", "bicubic", check=False)
    assert result.returncode != 0
    message = f"vsr: error: {output}: already exists (use --overwrite to replace it)"
    assert result.stderr.strip().splitlines() == [message]
    assert output.read_bytes() == b"precious"
    vsr("upscale", source, "-m", "bicubic", "--overwrite")
    assert len(media.video_pts(output)) == 4


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_a_nonzero_exit_and_no_output(tmp_path, case):
    folder = tmp_path / "in"
    folder.mkdir()
    source = BAD_INPUTS[case](folder)
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    result = vsr("upscale", source, "-o", out_folder / "out.mp4", "-m", "bicubic", check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsr: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert list(out_folder.iterdir()) == []
    if case == "directory":
        assert f"`vsr batch {source} OUT_DIR` upscales every video and image in it" in lines[0]
    if case == "missing":  # (told before torch is imported)
        assert lines[0] == f"vsr: error: {source}: no such file" and result.returncode == 2


def test_several_inputs_are_each_written_beside_their_own_and_a_bad_one_does_not_stop_the_others(tmp_path):
    """A bad one found by reading it; a missing one stops every input before any work (tests/cli/test_before_work)."""
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24", "-frames:v", "1", tmp_path / "still.png")
    (tmp_path / "notes.mp4").write_text("not a video")
    inputs = [tmp_path / "notes.mp4", clip, tmp_path / "still.png"]
    result = vsr("upscale", *inputs, "-m", "bicubic", "--outscale", "2", check=False)
    assert result.returncode == 2, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"vsr: error: {inputs[0]}: ")
    assert errors[1] == "vsr: 1 of 3 inputs failed (said above); the others are written"
    assert result.stdout.startswith(f"wrote {tmp_path / 'clip.x2.mp4'}: 4 frames at 128x96")
    assert result.stdout.endswith(f"wrote {tmp_path / 'still.x2.png'}\n")
    assert media.video_times(tmp_path / "clip.x2.mp4") == media.video_times(clip)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "clip.mp4", "clip.x2.mp4", "notes.mp4", "still.png", "still.x2.png"]

    # Errors that name their input are about it alone: a preview past a clip's end, --fps given for what is no
    # image sequence.
    short = make_clip(tmp_path / "short.mp4", frames=2)  # 0.08 s
    result = vsr("upscale", short, clip, tmp_path / "still.png", "-m", "bicubic", "--start", "0.1", "--overwrite",
                 check=False)
    errors = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(errors) == 3 and errors[0].startswith(f"vsr: error: {short}: no video frame")
    assert errors[1] == (f"vsr: WARNING: {tmp_path / 'still.png'}: --start applies to videos; an image is upscaled "
                         "whole, in its own format")
    assert errors[2] == "vsr: 1 of 3 inputs failed (said above); the others are written"
    result = vsr("upscale", tmp_path / "still.png", clip, "-m", "bicubic", "--fps", "24", "--overwrite", check=False)
    assert result.stderr.strip().splitlines() == [
        f"vsr: error: {tmp_path / 'still.png'}: --fps sets the frame rate of an image sequence (frames/%06d.png), not "
        "of one image",
        f"vsr: error: --fps sets the frame rate of an image sequence (frames/%06d.png); {clip} keeps its own frame "
        "times",
        "vsr: 2 of 2 inputs failed (said above)"]


@media.DEV_FULL
def test_a_full_disk_stops_several_inputs_where_it_is_found(tmp_path):
    """Each input after it was tried and failed the same way (a line each, and the decoding until the first write)."""
    clips = [make_clip(tmp_path / f"{name}.mp4", frames=3) for name in ("a", "b", "c", "d")]
    out = tmp_path / "out"
    out.mkdir()
    (out / ".b.x2.partial.mp4").symlink_to("/dev/full")  # b's temporary file: writes fail with ENOSPC
    result = vsr("upscale", *clips, "-o", out, "-m", "bicubic", "--outscale", "2", check=False)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        f"vsr: error: cannot write {out / 'b.x2.mp4'}: No space left on device",
        "vsr: 1 of 4 inputs failed (said above), 2 not begun as the disk is full; the others are written"]
    assert sorted(os.listdir(out)) == ["a.x2.mp4"]


@media.DEV_FULL
def test_a_full_disk_met_by_a_segment_worker_stops_several_inputs_as_on_one_device(tmp_path):
    """With --devices, the worker's error came back as its type and message alone: not known as a full disk, the
    inputs after it were begun (and each failed the same way once decoded and upscaled)."""
    keyframes = {"g": "4", "keyint_min": "4", "sc_threshold": "0"}
    clips = [make_clip(tmp_path / f"{name}.mp4", frames=16, options=keyframes) for name in ("a", "b", "c")]
    out = tmp_path / "out"
    out.mkdir()
    # b's folder of segments, as a run cut short leaves it (its join failed), with its first segment to do again:
    # the temporary file of that segment is /dev/full, whose writes fail with ENOSPC.
    (out / ".b.x2.partial.mp4").mkdir()
    command = ["-o", out, "-m", "bicubic", "--outscale", "2", "--devices", "cpu,cpu"]
    assert vsr("upscale", clips[1], *command, check=False).returncode == 4
    (out / ".b.x2.partial.mp4").rmdir()
    segments = out / ".b.x2.mp4.segments"
    for path in segments.glob("segment-0000.*"):
        path.unlink()
    (segments / ".segment-0000.partial.mp4").symlink_to("/dev/full")
    result = vsr("upscale", *clips, *command, check=False)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-2:] == [
        f"vsr: error: segment 1 of 2 (frames at 0.000-0.280 s) on cpu: cannot write {segments / 'segment-0000.mp4'}: "
        "No space left on device",
        "vsr: 1 of 3 inputs failed (said above), 1 not begun as the disk is full; the others are written"]
    assert sorted(os.listdir(out)) == [".b.x2.mp4.segments", "a.x2.mp4"]
    assert len(media.ffprobe_frame_pts(out / "a.x2.mp4")) == 16


@media.DEV_FULL
def test_a_full_disk_leaves_the_inputs_written_onto_another_disk_to_go_on(tmp_path):
    """Without -o each output goes beside its input: a full disk under one input's folder stopped the inputs of every
    other disk as well ("not begun"), though they had room and were written before."""
    other_disk = Path("/dev/shm")  # (a tmpfs of its own where there is one)
    if not other_disk.is_dir() or other_disk.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system to write on")
    full = tmp_path / "full"
    full.mkdir()
    clips = [make_clip(full / f"{name}.mp4", frames=3) for name in ("a", "b")]
    (full / ".a.x2.partial.mp4").symlink_to("/dev/full")  # a's temporary file: writes fail with ENOSPC
    with tempfile.TemporaryDirectory(dir=other_disk) as elsewhere:
        roomy = make_clip(Path(elsewhere) / "c.mp4", frames=3)
        result = vsr("upscale", *clips, roomy, "-m", "bicubic", "--outscale", "2", check=False)
        assert result.returncode == 4
        assert result.stderr.strip().splitlines() == [
            f"vsr: error: cannot write {full / 'a.x2.mp4'}: No space left on device",
            "vsr: 1 of 3 inputs failed (said above), 1 not begun as the disk is full; the others are written"]
        assert sorted(os.listdir(full)) == ["a.mp4", "b.mp4"]  # (b not begun)
        assert len(media.ffprobe_frame_pts(Path(elsewhere) / "c.x2.mp4")) == 3


def test_an_existing_folder_as_output_takes_each_output_under_its_default_name(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24", "-frames:v", "1", tmp_path / "scan.tiff")
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24", "-frames:v", "3", "-start_number", "7",
                 tmp_path / "f%02d.png")
    out = tmp_path / "out"
    out.mkdir()
    vsr("upscale", clip, tmp_path / "scan.tiff", tmp_path / "f%02d.png", "-o", out, "-m", "bicubic")
    assert sorted(path.name for path in out.iterdir()) == [
        "clip.x4.mp4", "f07.x4.png", "f08.x4.png", "f09.x4.png", "scan.x4.png"]  # (TIFF is read, PNG written)
    assert media.video_times(out / "clip.x4.mp4") == media.video_times(clip)
    vsr("upscale", clip, "-o", out, "-m", "bicubic", "--outscale", "2", "--segment-seconds", "0.04")  # in segments
    (tmp_path / "other").mkdir()
    twin = make_clip(tmp_path / "other" / "clip.mp4", frames=2)
    result = vsr("upscale", clip, twin, "-o", out, "-m", "bicubic", "--overwrite", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"vsr: error: {clip} and {twin} would both be written into {out} under one name; write them beside their "
        "inputs, or one at a time"]
    assert media.video_times(out / "clip.x2.mp4") == media.video_times(clip)


def test_inputs_whose_outputs_share_a_name_do_not_replace_each_other_even_with_overwrite(tmp_path,
                                                                                         tiny_rrdbnet_checkpoint):
    """photo.png and photo.tiff both make photo.x4.png (TIFF is written as PNG): said before either is begun, where
    the name is known before the model loads; else (a checkpoint's scale) the second is an error of its own."""
    for color, name in (("black", "photo.png"), ("white", "photo.tiff")):
        media.ffmpeg("-f", "lavfi", "-i", f"color={color}:size=8x8", "-frames:v", "1", tmp_path / name)
    inputs = [tmp_path / "photo.png", tmp_path / "photo.tiff"]
    result = vsr("upscale", *inputs, "-m", "bicubic", "--overwrite", check=False)
    output = tmp_path / "photo.x4.png"
    assert result.returncode == 4 and result.stderr.strip().splitlines() == [
        f"vsr: error: {output}: both {inputs[0]} and {inputs[1]} would be written there; upscale {inputs[1]} on its "
        "own, with -o naming its output",
        "vsr: nothing was begun: 1 problem found before any work (said above)"]
    assert not output.exists()
    # A checkpoint (no zoo name): its scale, 4, is known once the model is loaded.
    result = vsr("upscale", *inputs, "-m", tiny_rrdbnet_checkpoint, "--overwrite", check=False)
    assert result.returncode == 4 and result.stderr.strip().splitlines() == [
        f"vsr: error: {output}: was made from {inputs[0]} in this run; upscale {inputs[1]} on its own, with -o "
        "naming its output",
        "vsr: 1 of 2 inputs failed (said above); the others are written"]
    vsr("upscale", inputs[0], "-m", tiny_rrdbnet_checkpoint, "-o", tmp_path / "alone.png")
    assert np.array_equal(np.asarray(PIL.Image.open(output)), np.asarray(PIL.Image.open(tmp_path / "alone.png")))


def test_an_output_ending_in_a_slash_is_a_folder_made_if_missing(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=2)
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24", "-frames:v", "1", tmp_path / "photo.png")
    vsr("upscale", clip, tmp_path / "photo.png", "-o", f"{tmp_path / 'new'}/", "-m", "bicubic")
    assert sorted(path.name for path in (tmp_path / "new").iterdir()) == ["clip.x4.mp4", "photo.x4.png"]
    vsr("upscale", clip, "-o", f"{tmp_path / 'one'}/", "-m", "bicubic")  # one input too
    assert [path.name for path in (tmp_path / "one").iterdir()] == ["clip.x4.mp4"]
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for output, message in [(tmp_path / "missing" / "new", f"{tmp_path / 'missing'}: output folder does not exist"),
                            (clip, f"{clip}: is a file, not a folder"),
                            (clip / "new", f"{clip}: is a file, not a folder"),
                            (tmp_path / "dangling", f"{tmp_path / 'dangling'}: is a file, not a folder")]:
        result = vsr("upscale", clip, "-o", f"{output}/", "-m", "bicubic", check=False)
        assert result.returncode != 0 and result.stderr.strip().splitlines() == [f"vsr: error: {message}"]
    assert not (tmp_path / "missing").exists()
    result = vsr("upscale", clip, "-o", f"{tmp_path / 'unused'}/", "-m", "no-such-model", check=False)
    assert result.returncode != 0 and not (tmp_path / "unused").exists()  # not left behind empty


@pytest.mark.parametrize("options, message, code", [
    (["-o", "out.mp4"], "out.mp4: with several inputs, -o names a folder to write them into", 2),
    (["-m", "no-such-model"], "unknown model 'no-such-model'", 3),  # holds for every input: said once, at once
    (["--alpha", "0.5"], "--alpha weighs the --blend model against -m; give --blend too", 2),  # (it was ignored)
    (["-m", "realesr-general-x4v3", "--denoise-strength", "0.5", "--alpha", "0.3"],  # (its --alpha was dropped)
     "--denoise-strength sets the weight of the model it blends in: give it or --alpha", 2),
])
def test_with_several_inputs_an_option_error_is_one_line_and_writes_nothing(tmp_path, options, message, code):
    clips = [make_clip(tmp_path / f"clip{index}.mp4", frames=2) for index in range(2)]
    result = vsr("upscale", *clips, *options, check=False)
    assert result.returncode == code
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("vsr: error: ") and message in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip0.mp4", "clip1.mp4"]


@pytest.mark.parametrize("audio, segments", [(True, []), (False, ["--segment-seconds", "0.5"])])
def test_recordings_joined_end_to_end_are_one_line_that_says_how_to_fix_them(tmp_path, audio, segments):
    # Two transport streams `cat`-ed together: the second one's times start over. Frames were dropped as too late
    # (silently, without audio) or the muxer refused the audio going back (a traceback).
    part = tmp_path / "part.ts"
    sound = ["-f", "lavfi", "-i", "sine=d=1"] if audio else []
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1", *sound,
                 "-c:v", "libx264", *(["-c:a", "aac"] if audio else []), part)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part.read_bytes() * 2)
    part.unlink()
    result = vsr("upscale", joined, "-m", "bicubic", *segments, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vsr: error: {joined}: the times of stream #0 (video) go back")
    assert lines[0].endswith("`ffmpeg -i joined.ts -c copy joined.fixed.mkv` writes a copy with one timeline")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["joined.ts"]
    # What the message suggests works: the copy has one timeline and every frame.
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(joined), "-c", "copy", str(tmp_path / "joined.fixed.mkv")],
                   check=True)
    vsr("upscale", tmp_path / "joined.fixed.mkv", "-m", "bicubic", "-o", tmp_path / "out.mkv", *segments)
    assert len(media.video_pts(tmp_path / "out.mkv")) == 50


def test_b_frames_at_two_frames_a_second_are_no_joined_recording(tmp_path):
    """Matroska gives the frames after a keyframe no decoding time, and their presentation times, B-frames ahead,
    were taken for it: at 2 fps a second ahead, so every later time seemed to go back (refused as joined)."""
    source = tmp_path / "timelapse.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=2:d=10", "-c:v", "libx264", "-bf", "3", source)
    vsr("upscale", source, "-m", "bicubic", "-o", tmp_path / "out.mkv", check=True)
    assert media.video_times(tmp_path / "out.mkv") == media.video_times(source)


def test_a_matroska_file_with_frames_before_0_is_upscaled_with_its_timed_frames(tmp_path):
    """The frames Matroska's demuxer gives no time (timed before 0) took later frames' times, and the run failed at
    its end: "the muxer refused a packet" (helper-91). ffmpeg and vsr's probe leave them out; so does the output."""
    source = tmp_path / "negative.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=0.4", "-c:v", "libx264", "-bf", "2",
                 "-avoid_negative_ts", "disabled", "-output_ts_offset", "-0.08", source)
    result = vsr("upscale", source, "-m", "bicubic", "-o", tmp_path / "out.mkv", check=True)
    assert "2 frame(s) before the first with a time have none" in result.stderr
    assert media.ffprobe_frame_pts(tmp_path / "out.mkv") == media.ffprobe_frame_pts(source)


def test_output_folder_missing_is_one_line(tmp_path):
    source = make_clip(tmp_path / "clip.mp4", frames=2)
    result = vsr("upscale", source, "-o", tmp_path / "nowhere" / "out.mp4", "-m", "bicubic", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"vsr: error: {tmp_path / 'nowhere'}: output folder does not exist"]


@pytest.mark.parametrize("signal_number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "term"])
def test_ctrl_c_stops_cleanly_and_leaves_nothing_under_the_final_name(tmp_path, tiny_rrdbnet_checkpoint,
                                                                      signal_number, code):
    """Ctrl-C, and SIGTERM (kill, job schedulers, docker stop), which Python's default ends without any cleanup."""
    source = make_clip(tmp_path / "long.mp4", frames=400, size=(64, 48))
    output = tmp_path / "long.x4.mp4"
    partial = tmp_path / ".long.x4.partial.mp4"
    # SIGINT as a terminal delivers it: a test run started in the background (`make test &`) has SIGINT ignored,
    # and an ignored signal stays ignored across exec, so Python would never raise KeyboardInterrupt.
    process = subprocess.Popen([*VSR, "upscale", str(source), "-m", str(tiny_rrdbnet_checkpoint), "-b", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONFAULTHANDLER="1"),  # a crash shows its threads' stacks
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_until(partial.exists, "the temporary output", process)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=HANG_SECONDS)
    assert process.returncode == code, stderr
    assert "vsr: interrupted; no unfinished file is left under an output's name" in stderr
    assert "Traceback" not in stderr
    assert not output.exists() and not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def peak_rss_kb(args):
    process = subprocess.Popen([*VSR, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read()
    return usage.ru_maxrss


def test_peak_memory_does_not_grow_with_the_length_of_the_video(tmp_path):
    # 4x of 320x180 is 1280x720: 11 MB per float frame, so keeping frames around would show at once.
    short = make_clip(tmp_path / "short.mp4", frames=20, size=(320, 180))
    long = make_clip(tmp_path / "long.mp4", frames=200, size=(320, 180))
    options = ["-m", "bicubic", "--preset", "ultrafast", "-q"]
    short_kb = peak_rss_kb(["upscale", short, *options])
    long_kb = peak_rss_kb(["upscale", long, *options])
    # Keeping the 180 extra output frames would add at least 180 × 2.7 MB (uint8 1280×720 RGB) = 490 MB. The
    # allocator's peaks vary between runs of the same code: the long clip measured 27 to 74 MB above the short one.
    assert long_kb < short_kb + 150_000, f"short {short_kb} kB, 10x longer {long_kb} kB"


@pytest.mark.parametrize("window", [["--frames", "5"], ["--start", "0.4", "--end", "0.6"],
                                    ["--start", "0:00.4", "--end", "00:00:00.6"]])
def test_a_preview_writes_only_its_frames_from_time_zero_with_audio_cut_to_match(tmp_path, window):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=25)  # 1 s at 25 fps
    output = tmp_path / "preview.mp4"
    vsr("upscale", source, "-o", output, "-m", "bicubic", *window)
    times = media.video_times(output)
    assert len(times) == 5 and times[0] == 0
    audio = media.ffprobe_streams_of(output, "a:0")[0]
    assert abs(float(audio["duration"]) - 0.2) < 0.05  # two AAC packets (21 ms each) of slack


def test_a_time_that_is_not_one_is_one_line_and_writes_nothing(tmp_path):
    source = make_clip(tmp_path / "clip.mp4", frames=4)
    result = vsr("upscale", source, "-m", "bicubic", "--start", "0:10", "--end", "1:75", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vsr: error: --end takes seconds or a time such as 1:30 or 1:02:03.5; not '1:75'"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("devices, start", [([], "5"), ([], "1000000000000000"), (["--segment-seconds", "0.2"], "5"),
                                           (["--devices", "cpu,cpu"], "5")])
def test_a_preview_past_the_end_is_one_line_and_writes_nothing(tmp_path, devices, start):
    """(A --start past int64 ticks was an OverflowError from the seek, helper-63.)"""
    source = make_clip(tmp_path / "clip.mp4", frames=10)  # 0.4 s
    result = vsr("upscale", source, "-m", "bicubic", "--start", start, *devices, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"vsr: error: {source}: no video frame from {float(start):g} s; the video lasts 0.400 s, its last frame "
        "starting at 0.360 s"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("kind", ["video", "image", "video -o"])
def test_an_existing_output_is_refused_before_the_model_loads(tmp_path, kind):
    """The same command run twice said "already exists" only after loading the model (8 s on this CPU). Here the
    model cannot load at all (its cache is a file), so only a check made first can say it."""
    if kind == "image":
        source, output = tmp_path / "still.png", tmp_path / "still.x4.png"
        PIL.Image.new("RGB", (8, 6)).save(source)
    else:
        source = make_clip(tmp_path / "clip.mp4", frames=2)
        output = tmp_path / ("named.mkv" if kind == "video -o" else "clip.x4.mp4")
    output.write_bytes(b"kept")
    (tmp_path / "cache").write_text("a file where the model cache would be")
    named = ["-o", output] if kind == "video -o" else []
    result = vsr("upscale", source, *named, "-m", "realesr-animevideov3", check=False,
                 env={"VSR_HOME": str(tmp_path / "cache")})
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [f"vsr: error: {output}: already exists (use --overwrite to "
                                                  "replace it)"]
    assert output.read_bytes() == b"kept"


def test_probe_describes_the_streams_and_the_work(tmp_path):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=10)
    result = vsr("probe", source, "-m", "bicubic")
    assert "video: h264, 64×48" in result.stdout
    assert "audio: aac" in result.stdout
    assert "10 frames" in result.stdout and "×4 → 256×192, no network: resampling only" in result.stdout


def test_probe_counts_a_zoo_models_work_without_its_weights(tmp_path):
    """The estimate loaded the weights: a fresh cache converted them first (13 s), a read-only one failed it all."""
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=10)
    (tmp_path / "cache").write_text("a file where the cache folder would be")
    result = vsr("probe", source, env={"VSR_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    # RRDBNet ×4 spends 17.93 M multiply-adds per input pixel (FIELD-NOTES): 64×48 pixels
    assert "realesrgan-x4plus: ×4 → 256×192, 55.1 GMAC per frame" in result.stdout
    odd = tmp_path / "odd.mp4"  # ×3 of odd sides: the size said is the one `vsr upscale` writes
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "2", "-vf", "scale=65:49",
                 "-pix_fmt", "yuv444p", odd)
    result = vsr("probe", odd, "-m", "realesr-animevideov3-x3", env={"VSR_HOME": str(tmp_path / "cache")})
    assert "×3 → 195×147 (written 196×148: 4:2:0 video needs even sides)" in result.stdout


def test_probe_of_an_image_gives_it_no_duration_or_frame_rate(tmp_path):
    """It said "25.000 fps, unknown frames" (FFmpeg's rate for an image) and an even size the image is not written
    at."""
    image = tmp_path / "odd.png"
    PIL.Image.new("RGB", (65, 49)).save(image)
    result = vsr("probe", image, "-m", "realesr-animevideov3-x3", env={"VSR_HOME": str(tmp_path / "cache")})
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{image}: png_pipe, ") and lines[0].endswith(" kB, an image")
    assert lines[1:3] == ["  #0 image: png, 65×49, rgb24 (8-bit), color RGB, untagged (pc range)",
                          "  estimated work: realesr-animevideov3-x3: ×3 → 195×147, 2.0 GMAC"]  # 607k per pixel


def test_probe_of_a_jpeg_photo_describes_it_as_an_image(tmp_path):
    """FFmpeg reads a photo's .jpg with its image2 format, as it reads sequences (only a JPEG of few details, such as
    a flat color, with its jpeg_pipe): the photo's name was taken for a sequence's pattern (a traceback), and its work
    was counted twice, "for 1 frames"."""
    image = tmp_path / "photo.jpg"
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: stored sideways, shown turned
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    PIL.Image.fromarray(noise).save(image, exif=exif)
    result = vsr("probe", image, "-m", "realesr-animevideov3", env={"VSR_HOME": str(tmp_path / "cache")})
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{image}: image2, ") and lines[0].endswith(" kB, an image")
    assert lines[1].startswith("  #0 image: mjpeg, 64×48, ") and ", rotated " in lines[1]
    # once: one picture; upright, as written (Orientation 6 turns the stored 64×48 a quarter)
    assert lines[2] == "  estimated work: realesr-animevideov3: ×4 → 192×256, 1.9 GMAC"


def test_help_shows_the_defaults_written_in_words():
    # Rich reads "[default: ...]" in a help text as markup and drops it unless escaped.
    result = vsr("upscale", "--help", env={"COLUMNS": "200"})
    words = " ".join(result.stdout.replace("│", " ").split())  # (as wrapped into the table's column)
    for text in ("[default: INPUT.x4.EXT next to the input;", "[default: 18 for libx264,", "[default: the source's bit",
                 "[default: 300; 0: never]", "[default: exact]", "[default: off]"):
        assert text in words


def test_bench_measures_a_webm_clip_and_refuses_an_image(tmp_path):
    # The end-to-end run writes where `vsr upscale` would: .mkv for a .webm clip (H.264 cannot go in .webm).
    clip = make_clip(tmp_path / "clip.webm", frames=6, codec="libvpx-vp9")
    result = vsr("bench", clip, "-m", "bicubic", "--frames", "4", "--json", tmp_path / "bench.json")
    measured = json.loads((tmp_path / "bench.json").read_text())
    assert measured["frames"] == 4 and measured["end_to_end_fps"] > 0, result.stdout
    assert measured["decoder"] == "pyav"  # (which one ran, after any fallback)
    image = tmp_path / "frame.png"
    media.ffmpeg("-f", "lavfi", "-i", "color=red:size=16x16", "-frames:v", "1", image)
    refused = vsr("bench", image, "-m", "bicubic", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [f"vsr: error: {image}: vsr bench measures videos; give it a clip"]


def test_bench_measures_a_clip_with_alpha_and_checks_its_json_path_first(tmp_path):
    """Alpha goes through the model as `vsr upscale` sends it (the RGBA frames were refused by the engine); a --json
    that cannot be written is one line before the measuring, not a traceback after it."""
    clip = make_alpha_clip(tmp_path / "alpha.webm", frames=4)
    result = vsr("bench", clip, "-m", "bicubic", "--json", tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text())["frames"] == 4, result.stdout
    (tmp_path / "folder").mkdir()
    for path, message in ((tmp_path / "folder", "is a folder; give --json a file name"),
                          (clip, "the report would replace an input; give --json another file name")):
        refused = vsr("bench", clip, "-m", "bicubic", "--json", path, check=False)
        assert refused.returncode == 4 and refused.stdout == ""
        assert refused.stderr.strip().splitlines() == [f"vsr: error: {path}: {message}"]


def test_bench_repeats_a_quick_model_only_pass_for_a_time_that_can_be_measured(tmp_path, monkeypatch):
    """One pass of a fast model over a short clip took milliseconds: the overhead ratio changed sign between runs
    on a shared machine (helper-56)."""
    from vsr import api, bench
    from vsr.pipelines import upscale

    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    calls = []
    real = upscale.upscale_frames
    monkeypatch.setattr(upscale, "upscale_frames", lambda *args: calls.append(1) or real(*args))
    monkeypatch.setattr(bench, "MODEL_SECONDS", 0.3)
    result = bench.bench(clip, options=api.UpscaleOptions(model="bicubic", batch_size=4))
    assert len(calls) > 3  # a warm-up, passes of one batch, and the end-to-end run's batch
    assert result.model_only_fps > 0 and result.frames == 4


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path):
    """Python 3.11's Path.is_dir() raises for a name over 255 bytes: a traceback from -o, -m, probe (helper-63)."""
    clip = make_clip(tmp_path / "clip.mp4", frames=2)
    long = "x" * 300
    for args in (["upscale", clip, "-m", "bicubic", "-o", tmp_path / f"{long}.mp4"], ["upscale", clip, "-m", long],
                 ["probe", tmp_path / f"{long}.mp4"]):
        result = vsr(*args, check=False)
        assert result.returncode == 2 and result.stderr.strip().endswith(
            f"{long}.mp4: the name is too long for the file system" if args[0] == "probe" or "-o" in args
            else f"{long}: the name is too long for the file system"), result.stderr


def _as_a_user(command):
    """`command` without root's power to write into any folder (the tests may run as root), so that a folder's mode
    says what it says for a user; None where that cannot be done."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command] if setpriv else None


def test_an_output_folder_that_cannot_be_written_is_one_line_about_the_folder(tmp_path):
    """A video into a read-only folder was said to be the container refusing the codec ("use .mkv", exit 2), and an
    image sequence into one was a traceback."""
    source = tmp_path / "clip.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-frames:v", "2", source)
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    cases = [(folder / "out.mp4", f"vsr: error: cannot write {folder / 'out.mp4'}: Permission denied"),
             (folder / "%04d.png", f"vsr: error: {folder}: cannot write there (Permission denied)")]
    for output, message in cases:
        command = _as_a_user([*VSR, "upscale", source, "-m", "bicubic", "-o", output])
        if command is None:
            pytest.skip("running as root without setpriv: every folder can be written")
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stderr.strip().splitlines()) == (4, [message])
    assert list(folder.iterdir()) == []
