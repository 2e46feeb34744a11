"""The codec `vsr upscale` writes when none is named: libx264 for 8-bit video, libx265 (HEVC Main 10) for video deeper
than 8 bits or HDR, where the container is one players take HEVC in, as H.264 High 10 plays hardly anywhere.

Real encodes of tiny clips made by the ffmpeg command, judged by ffprobe; the bicubic baseline keeps them fast.
"""

import functools
import logging

import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.test_encode import MASTERING, ffprobe_hdr10
from tests.pipelines.test_encoder_options import x264_settings
from tests.processes import run_vsr
from vsr.pipelines.upscale import CODEC_LOG, VideoOptions, UpscaleOptions, upscale_video

vsr = functools.partial(run_vsr, check=True)
CHOSEN = "written as 10-bit HEVC with libx265"  # the info line said where "auto" chose HEVC


def video_stream(path):
    return media.ffprobe_streams_of(path, "v:0")[0]


def codec_profile_pix_fmt(path):
    stream = video_stream(path)
    return stream["codec_name"], stream.get("profile"), stream["pix_fmt"]


def lavfi_source(frames: int = 4, rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={rate}", "-frames:v", str(frames)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """An HDR10 movie (10-bit PQ HEVC with a mastering display and light levels), a 10-bit H.264 MP4 (High 10) and an
    8-bit H.264 MP4, each 4 frames of 64×48."""
    folder = tmp_path_factory.mktemp("sources")
    made = {"hdr10": folder / "hdr10.mkv", "deep": folder / "deep.mp4", "sdr": folder / "sdr.mp4"}
    media.ffmpeg(*lavfi_source(), "-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-x265-params",
                 f"log-level=error:master-display={MASTERING}:max-cll=1000,400", "-color_primaries", "bt2020",
                 "-color_trc", "smpte2084", "-colorspace", "bt2020nc", made["hdr10"])
    media.make_10bit_clip(made["deep"], frames=4)
    media.ffmpeg(*lavfi_source(), "-pix_fmt", "yuv420p", "-c:v", "libx264", made["sdr"])
    return made


def test_an_hdr10_movie_becomes_hevc_main_10_with_its_tags_and_mastering_display(clips, tmp_path):
    source = tmp_path / "movie.mkv"
    source.write_bytes(clips["hdr10"].read_bytes())
    result = vsr("upscale", source, "-m", "bicubic")
    output = tmp_path / "movie.x4.mkv"
    assert codec_profile_pix_fmt(output) == ("hevc", "Main 10", "yuv420p10le")
    stream = video_stream(output)
    assert (stream["color_primaries"], stream["color_transfer"], stream["color_space"]) == (
        "bt2020", "smpte2084", "bt2020nc")
    expected = ffprobe_hdr10(source)
    assert expected["max_luminance"] == 1000 and expected["max_content"] == 1000  # (the source has them to keep)
    assert ffprobe_hdr10(output) == expected
    said = [line for line in result.stderr.splitlines() if CHOSEN in line]
    assert said == [f"vsr: INFO: {source}: a 10-bit HDR (PQ) video: {CHOSEN}, which TVs, phones and browsers play "
                    "(H.264 High 10 hardly any); --codec libx264 writes H.264"]
    assert media.playback_errors(output) == ""


def test_10_bit_h264_becomes_hevc_tagged_hvc1_and_8_bit_stays_h264_unless_a_codec_is_named(clips, tmp_path):
    result = vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / "deep.mp4")
    assert codec_profile_pix_fmt(tmp_path / "deep.mp4") == ("hevc", "Main 10", "yuv420p10le")
    assert video_stream(tmp_path / "deep.mp4")["codec_tag_string"] == "hvc1"  # (Apple's players refuse hev1)
    assert "a 10-bit video: " + CHOSEN in result.stderr
    result = vsr("upscale", clips["sdr"], "-m", "bicubic", "-o", tmp_path / "sdr.mp4")
    assert codec_profile_pix_fmt(tmp_path / "sdr.mp4") == ("h264", "High", "yuv420p")
    assert "INFO" not in result.stderr
    result = vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / "named.mp4", "--codec", "libx264")
    assert codec_profile_pix_fmt(tmp_path / "named.mp4") == ("h264", "High 10", "yuv420p10le")
    assert "INFO" not in result.stderr
    result = vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / "quiet.mp4", "-q")
    assert result.stderr == ""


@pytest.mark.parametrize("output, options, expected", [
    ("out.mov", [], ("hevc", "Main 10", "yuv420p10le")),
    ("out.ts", [], ("hevc", "Main 10", "yuv420p10le")),
    ("out.webm", [], ("vp9", "Profile 0", "yuv420p")),  # (WebM holds no HEVC; this libvpx writes 8 bits only)
    ("out.avi", [], ("h264", "High 10", "yuv420p10le")),  # (AVI takes no HEVC from FFmpeg)
    ("out.mkv", ["--pix-fmt", "yuv420p"], ("h264", "High", "yuv420p")),  # 8 bits asked for: H.264 plays
    ("out.mkv", ["--pix-fmt", "yuv444p10le"], ("hevc", "Rext", "yuv444p10le")),
])
def test_each_container_and_pix_fmt_gets_its_codec(clips, tmp_path, output, options, expected):
    vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / output, *options)
    assert codec_profile_pix_fmt(tmp_path / output) == expected


def test_8_bit_hlg_becomes_8_bit_hevc_and_12_bit_is_written_as_main_10(tmp_path):
    hlg, deeper = tmp_path / "hlg.mp4", tmp_path / "deeper.mkv"
    media.ffmpeg(*lavfi_source(), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-color_primaries", "bt2020", "-color_trc",
                 "arib-std-b67", "-colorspace", "bt2020nc", hlg)
    media.ffmpeg(*lavfi_source(), "-pix_fmt", "yuv420p12le", "-c:v", "ffv1", deeper)
    result = vsr("upscale", hlg, "-m", "bicubic", "-o", tmp_path / "hlg.x4.mp4")
    assert codec_profile_pix_fmt(tmp_path / "hlg.x4.mp4") == ("hevc", "Main", "yuv420p")
    assert video_stream(tmp_path / "hlg.x4.mp4")["color_transfer"] == "arib-std-b67"
    assert "an HDR (HLG) video: written as 8-bit HEVC with libx265" in result.stderr
    result = vsr("upscale", deeper, "-m", "bicubic", "-o", tmp_path / "deeper.x4.mkv")
    assert codec_profile_pix_fmt(tmp_path / "deeper.x4.mkv") == ("hevc", "Main 10", "yuv420p10le")  # (not Main 12)
    assert "a 12-bit video: " + CHOSEN in result.stderr


def test_segments_on_two_workers_are_all_hevc_and_the_choice_is_said_once(tmp_path):
    source = tmp_path / "long.mp4"
    media.ffmpeg(*lavfi_source(frames=12), "-pix_fmt", "yuv420p10le", "-c:v", "libx264", "-g", "4", source)
    result = vsr("upscale", source, "-m", "bicubic", "--outscale", "2", "--devices", "cpu,cpu",
                 "--segment-seconds", "0.2")
    output = tmp_path / "long.x2.mp4"
    assert codec_profile_pix_fmt(output) == ("hevc", "Main 10", "yuv420p10le")
    assert media.video_times(output) == media.video_times(source)
    assert media.playback_errors(output) == ""  # (a segment of another codec would not decode in the joined stream)
    assert result.stderr.count(CHOSEN) == 1


def test_batch_jobs_take_the_default_by_their_source_and_a_named_codec_from_defaults(clips, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("deep", "sdr"):
        (folder / f"{name}.mp4").write_bytes(clips[name].read_bytes())
    result = vsr("batch", folder, tmp_path / "out", "-m", "bicubic", "--workers", "2")  # (the line from a worker)
    assert codec_profile_pix_fmt(tmp_path / "out" / "deep.x4.mp4") == ("hevc", "Main 10", "yuv420p10le")
    assert codec_profile_pix_fmt(tmp_path / "out" / "sdr.x4.mp4") == ("h264", "High", "yuv420p")
    assert result.stderr.count(CHOSEN) == 1
    (tmp_path / "jobs.toml").write_text('output_dir = "named"\n[defaults]\nmodel = "bicubic"\ncodec = "libx264"\n'
                                        '[[job]]\ninput = "in/deep.mp4"\n'
                                        '[[job]]\ninput = "in/sdr.mp4"\ncodec = "auto"\npix-fmt = "yuv420p12le"\n')
    vsr("batch", "--jobs", tmp_path / "jobs.toml")
    assert codec_profile_pix_fmt(tmp_path / "named" / "in" / "deep.x4.mp4") == ("h264", "High 10", "yuv420p10le")
    # (a pix_fmt deeper than 8 bits is HEVC's, which takes 12 bits where x264 refused them; Main 12 is "Rext")
    assert codec_profile_pix_fmt(tmp_path / "named" / "in" / "sdr.x4.mp4") == ("hevc", "Rext", "yuv420p12le")


def test_the_python_api_logs_the_choice_on_its_own_logger(clips, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=CODEC_LOG)
    upscale_video(clips["deep"], tmp_path / "out.mkv", options=UpscaleOptions(model="bicubic", outscale=2),
                  video=VideoOptions())
    assert codec_profile_pix_fmt(tmp_path / "out.mkv") == ("hevc", "Main 10", "yuv420p10le")
    assert [record.name for record in caplog.records if CHOSEN in record.getMessage()] == [CODEC_LOG]


X264_CHOSEN = "x264 settings given"  # the info line said where settings only x264 takes picked it over HEVC


@pytest.mark.parametrize("option, written", [
    ("tune=film", "deblock=1:-1:-1"),  # (a tune of x264's that x265 lacks; what it sets: the default is 1:0:0)
    ("x264-params=aq-mode=3", "aq=3:"),  # (an option x265 lacks)
    ("profile=high10", "deblock=1:0:0"),  # (a profile name of x264's alone)
])
def test_settings_only_x264_takes_write_h264_under_auto_whatever_the_depth(clips, tmp_path, option, written):
    """Users who type x264's settings want x264: a 10-bit source's "auto" took libx265, which refused them, so a
    batch over a folder of both depths failed on its 10-bit videos."""
    result = vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / "deep.mp4", "--encoder-option", option)
    assert codec_profile_pix_fmt(tmp_path / "deep.mp4") == ("h264", "High 10", "yuv420p10le")
    assert written in x264_settings(tmp_path / "deep.mp4")
    said = [line for line in result.stderr.splitlines() if "INFO" in line]
    assert said == [f"vsr: INFO: {clips['deep']}: a 10-bit video: {X264_CHOSEN} ({option}): written as H.264 High 10 "
                    "with libx264, which few TVs, phones and browsers play (without them, HEVC)"]
    result = vsr("upscale", clips["sdr"], "-m", "bicubic", "-o", tmp_path / "sdr.mp4", "--encoder-option", option)
    assert codec_profile_pix_fmt(tmp_path / "sdr.mp4")[0] == "h264" and "INFO" not in result.stderr
    assert written in x264_settings(tmp_path / "sdr.mp4")


def test_an_8_bit_hlg_video_with_x264_settings_is_8_bit_h264_and_keeps_its_tags(tmp_path):
    hlg = tmp_path / "hlg.mp4"
    media.ffmpeg(*lavfi_source(), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-color_primaries", "bt2020", "-color_trc",
                 "arib-std-b67", "-colorspace", "bt2020nc", hlg)
    result = vsr("upscale", hlg, "-m", "bicubic", "-o", tmp_path / "out.mkv", "--encoder-option", "tune=film",
                 "--encoder-option", "crf=20")
    assert codec_profile_pix_fmt(tmp_path / "out.mkv") == ("h264", "High", "yuv420p")
    stream = video_stream(tmp_path / "out.mkv")
    assert (stream["color_primaries"], stream["color_transfer"]) == ("bt2020", "arib-std-b67")
    assert f"{hlg}: an HDR (HLG) video: {X264_CHOSEN} (tune=film, crf=20): written as 8-bit H.264 with libx264 " \
           "(without them, HEVC)" in result.stderr


def test_settings_both_encoders_take_keep_hevc_and_settings_neither_takes_keep_the_hint(clips, tmp_path):
    vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / "grain.mp4", "--encoder-option", "tune=grain")
    assert codec_profile_pix_fmt(tmp_path / "grain.mp4") == ("hevc", "Main 10", "yuv420p10le")
    hint = '(codec "auto" picked libx265 for this video; --codec libx264 writes H.264)'
    # (-q hides the info line that names the codec: the error alone says why libx265, which the user did not name)
    result = run_vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / "typo.mp4", "-q",
                     "--encoder-option", "tune=flim")  # (a typo: neither encoder has it)
    assert result.returncode == 2 and not (tmp_path / "typo.mp4").exists()
    assert result.stderr.startswith("vsr: error: codec 'libx265' rejected its settings") and hint in result.stderr
    long = tmp_path / "long.mp4"  # in segments, the workers open the encoder
    media.ffmpeg(*lavfi_source(frames=12), "-pix_fmt", "yuv420p10le", "-c:v", "libx264", "-g", "4", long)
    result = run_vsr("upscale", long, "-m", "bicubic", "--outscale", "2", "--segment-seconds", "0.2", "-q",
                     "--encoder-option", "x264-params=bfrmaes=2", "-o", tmp_path / "long.mkv")  # (x264 refuses it)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "codec 'libx265' has no option(s) x264-params " + hint in result.stderr
    result = run_vsr("upscale", clips["deep"], "-m", "bicubic", "-o", tmp_path / "named.mp4", "-q", "--codec",
                     "libx265", "--encoder-option", "tune=film")  # (named: nothing to add, nothing chosen)
    assert result.returncode == 2 and "auto" not in result.stderr and not (tmp_path / "named.mp4").exists()


def test_settings_only_x265_takes_write_hevc_under_auto_for_an_8_bit_source(clips, tmp_path):
    result = vsr("upscale", clips["sdr"], "-m", "bicubic", "-o", tmp_path / "sdr.mkv", "--encoder-option",
                 "x265-params=aq-mode=3")
    assert codec_profile_pix_fmt(tmp_path / "sdr.mkv") == ("hevc", "Main", "yuv420p")
    assert [line for line in result.stderr.splitlines() if "INFO" in line] == [
        f"vsr: INFO: {clips['sdr']}: x265 settings given (x265-params=aq-mode=3): written as 8-bit HEVC with libx265 "
        "(without them, H.264)"]
    result = run_vsr("upscale", clips["sdr"], "-m", "bicubic", "-o", tmp_path / "sdr.avi", "--encoder-option",
                     "x265-params=aq-mode=3")  # (AVI takes no HEVC from FFmpeg: x264's refusal stands)
    assert result.returncode == 2 and not (tmp_path / "sdr.avi").exists()
    assert result.stderr == "vsr: error: codec 'libx264' has no option(s) x265-params\n"


def test_segments_and_a_batch_over_both_depths_take_the_encoder_the_settings_are_for(clips, tmp_path):
    long = tmp_path / "long.mp4"
    media.ffmpeg(*lavfi_source(frames=12), "-pix_fmt", "yuv420p10le", "-c:v", "libx264", "-g", "4", long)
    result = vsr("upscale", long, "-m", "bicubic", "--outscale", "2", "--devices", "cpu,cpu", "--segment-seconds",
                 "0.2", "--encoder-option", "tune=film")
    output = tmp_path / "long.x2.mp4"
    assert codec_profile_pix_fmt(output) == ("h264", "High 10", "yuv420p10le")
    assert media.playback_errors(output) == "" and media.video_times(output) == media.video_times(long)
    assert result.stderr.count(X264_CHOSEN) == 1
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("deep", "sdr"):
        (folder / clips[name].name).write_bytes(clips[name].read_bytes())
    result = vsr("batch", folder, tmp_path / "out", "-m", "bicubic", "--workers", "2", "--encoder-option",
                 "tune=film")
    assert "2 done (of 2)" in result.stdout
    assert codec_profile_pix_fmt(tmp_path / "out" / "deep.x4.mp4") == ("h264", "High 10", "yuv420p10le")
    assert codec_profile_pix_fmt(tmp_path / "out" / "sdr.x4.mp4") == ("h264", "High", "yuv420p")
    assert result.stderr.count(X264_CHOSEN) == 1


def test_the_python_api_and_bench_name_the_encoder_that_wrote_the_video(clips, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=CODEC_LOG)
    result = upscale_video(clips["deep"], tmp_path / "film.mkv", options=UpscaleOptions(model="bicubic", outscale=2),
                           video=VideoOptions(encoder_options={"tune": "film"}))
    assert codec_profile_pix_fmt(result.output) == ("h264", "High 10", "yuv420p10le")
    assert (result.encoder, result.pix_fmt) == ("libx264", "yuv420p10le")
    assert [record.name for record in caplog.records if X264_CHOSEN in record.getMessage()] == [CODEC_LOG]
    for name, encoder, pix_fmt in (("deep", "libx265", "yuv420p10le"), ("sdr", "libx264", "yuv420p")):
        report = vsr("bench", clips[name], "-m", "bicubic", "--frames", "2").stdout
        assert f"encoder: {encoder}\n" in report and f"pix_fmt: {pix_fmt}\n" in report, report
