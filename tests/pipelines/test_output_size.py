"""Sizing the output by its width and/or height (`--width`, `--height`) instead of a factor: the sides a viewer sees
(rotation and pixel aspect applied), square pixels out, even sides for 4:2:0, and the names and records that follow.
Judged by ffprobe and Pillow."""

from fractions import Fraction

import pytest
import torch
from PIL import Image

from tests.pipelines import media_fixtures as media
from tests.pipelines.test_engine import bicubic_model
from tests.pipelines.test_segments import decoded_framemd5
from tests.processes import run_vsr
from vsr import api
from vsr.errors import OptionError
from vsr.pipelines import batch
from vsr.pipelines.engine import Engine, scale_label

BICUBIC = api.UpscaleOptions(model="bicubic")


def shown(path):
    """(width, height, sample aspect ratio, rotation) of a file's video stream, as ffprobe reads it."""
    stream = media.ffprobe_streams_of(path, "v:0")[0]
    rotation = media.video_info(path).rotation
    return stream["width"], stream["height"], stream.get("sample_aspect_ratio", "N/A"), rotation


@pytest.mark.parametrize(
    "asked, frame, aspect, turned, even, expected",
    [
        ((None, 2160), (1080, 1920), 1, False, True, (2160, 3840)),  # 1080p → 2160p
        ((None, 2160), (1080, 1440), 1, False, True, (2160, 2880)),  # 4:3 stays 4:3
        ((3840, 2160), (1080, 1440), 1, False, True, (2160, 2880)),  # fits inside the box, not stretched
        ((3840, 2160), (480, 720), Fraction(32, 27), False, True, (2160, 3840)),  # anamorphic DVD: 16:9 shown
        ((None, 2160), (480, 720), Fraction(8, 9), False, True, (2160, 2880)),  # 4:3 DVD
        ((1000, None), (90, 160), 1, False, True, (562, 1000)),  # 562.5 → even
        ((1000, None), (90, 160), 1, False, False, (563, 1000)),  # an image: half up
        ((None, 1280), (180, 320), 1, True, True, (720, 1280)),  # shown 180×320 upright: the stored frame turns
        ((1280, 1280), (1080, 1920), 1, False, True, (720, 1280)),  # the width decides
    ],
)
def test_output_size_is_the_shown_size_asked_for(asked, frame, aspect, turned, even, expected):
    engine = Engine(bicubic_model(4), device="cpu", width=asked[0], height=asked[1])
    assert engine.output_size(*frame, pixel_aspect=aspect, turned=turned, steps=(2, 2) if even else (1, 1)) \
        == expected


def test_an_odd_side_the_model_makes_is_evened_for_4_2_0_video(tmp_path, caplog):
    """×3 (or ×1) of an odd side is odd: 4:2:0 video gets the next even side, with a warning; images keep it."""
    engine = Engine(bicubic_model(3), device="cpu")
    assert engine.output_size(47, 127, steps=(2, 2)) == (142, 382)
    assert engine.output_size(47, 127) == (141, 381) and engine.output_size(48, 128, steps=(2, 2)) == (144, 384)
    assert engine.output_size(47, 127, steps=(1, 2)) == (141, 382)  # 4:2:2: an even width only
    source = tmp_path / "odd.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x48:rate=25", "-frames:v", "2",
                 "-vf", "format=yuv444p,crop=127:47:0:0", "-c:v", "ffv1", source)
    x3 = api.UpscaleOptions(model="realesr-animevideov3-x3")
    output = api.upscale_video(source, tmp_path / "out.mp4", options=x3)
    assert shown(output.output)[:2] == (382, 142)
    assert "the model makes 381x141 frames; 4:2:0 video needs even sides, so they are resized to 382x142" in caplog.text
    # 4:4:4 and RGB hold odd sides: the model's picture, not resampled (it was, "for 4:2:0", helper-52).
    caplog.clear()
    for name, video in (("yuv444.mp4", api.VideoOptions(pix_fmt="yuv444p")),
                        ("rgb.mkv", api.VideoOptions(codec="x264-lossless"))):
        output = api.upscale_video(source, tmp_path / name, options=x3, video=video)
        assert shown(output.output)[:2] == (381, 141)
    assert "needs even sides" not in caplog.text
    # 4:2:2 halves the columns only: its height stays odd (it was evened too, helper-62).
    output = api.upscale_video(source, tmp_path / "yuv422.mkv", options=x3, video=api.VideoOptions(pix_fmt="yuv422p"))
    assert shown(output.output)[:2] == (382, 141) and "4:2:2 video needs an even width" in caplog.text


def test_labels_and_bad_sizes():
    assert [scale_label(4), scale_label(2.5), scale_label(4, height=2160), scale_label(4, width=3840),
            scale_label(4, 3840, 2160)] == ["x4", "x2.5", "2160p", "3840w", "3840x2160"]
    with pytest.raises(OptionError, match="--outscale or --width/--height, not both"):
        Engine(bicubic_model(4), device="cpu", outscale=2, height=720)
    for bad in (0, -4, 2.5, True, 70000):
        with pytest.raises(OptionError, match="--height must be a whole number of pixels"):
            Engine(bicubic_model(4), device="cpu", height=bad)


def test_a_computed_side_past_the_largest_is_one_line_and_batch_options_are_checked_before_any_job(tmp_path):
    engine = Engine(bicubic_model(4), device="cpu", height=1400)
    with pytest.raises(OptionError, match="a 100x2 frame sized as asked would be 70000x1400 .shown., over 65536"):
        engine.output_size(2, 100)
    with pytest.raises(OptionError, match="--height must be a whole number of pixels"):
        batch.build_options({"height": 0})
    (tmp_path / "a.png").write_bytes(b"")
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('output_dir = "out"\n[[job]]\ninput = "a.png"\noutscale = 3\nheight = 50\n')
    with pytest.raises(OptionError, match="jobs.toml job 1: give --outscale or --width/--height, not both"):
        batch.load_jobs_file(jobs_file)


@pytest.mark.parametrize("sizing, frame, made", [({"outscale": 0.01}, (48, 64), "0.64x0.48"),
                                                  ({"width": 1000}, (1, 5000), "1000x0.2"),
                                                  ({"height": 5}, (4000, 1), "0.001x5")])
def test_a_side_sized_to_less_than_a_pixel_is_one_line(sizing, frame, made):
    """It was made 1 pixel (2 for 4:2:0 video) without a word (helper-63)."""
    with pytest.raises(OptionError, match=f"frame sized as asked would be {made} pixels, less than one on a side"):
        Engine(bicubic_model(4), device="cpu", **sizing).output_size(*frame)
    assert Engine(bicubic_model(4), device="cpu", outscale=0.02).output_size(48, 64) == (1, 1)  # (0.96: rounds up)


def test_a_videos_outscale_rounds_to_even_sides_and_an_images_to_the_nearest(tmp_path):
    """45×35 at --outscale 2.5 is 112.5×87.5: 4:2:0 video needs even sides (as ffmpeg's scale=-2 gives them)."""
    engine = Engine(bicubic_model(4), device="cpu", outscale=2.5)
    assert engine.output_size(35, 45) == (88, 113)
    assert engine.output_size(35, 45, steps=(2, 2)) == (88, 112)
    source = tmp_path / "odd.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=48x36:rate=25", "-frames:v", "2", "-vf",
                 "format=yuv444p,crop=45:35:0:0", "-c:v", "libx264", "-pix_fmt", "yuv444p", source)
    result = api.upscale_video(source, options=api.UpscaleOptions(model="bicubic", outscale=2.5))
    assert shown(result.output)[:2] == (112, 88)


def test_engine_resizes_to_the_size_asked_for_as_outscale_does():
    """A size is the model's output resized with the same Lanczos as --outscale: a size equal to that of
    --outscale 3 gives the same pixels."""
    frames = torch.rand(2, 3, 20, 30)
    by_factor = Engine(bicubic_model(4), device="cpu", outscale=3).upscale(frames)
    by_size = Engine(bicubic_model(4), device="cpu", height=60).upscale(frames)
    assert by_size.shape == (2, 3, 60, 90)
    torch.testing.assert_close(by_size, by_factor)


def make_anamorphic_dvd(path, frames=4):
    """720×480 stored, 16:9 shown (pixel aspect 32:27), scaled down 10× here; a keyframe every 4 frames."""
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=72x48:rate=25", "-frames:v", str(frames), "-vf", "setsar=32/27",
                 "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "4", "-keyint_min", "4", "-sc_threshold", "0", path)
    assert shown(path)[2] == "32:27"
    return path


def test_an_anamorphic_dvd_comes_out_at_2160p_with_square_pixels(tmp_path):
    source = make_anamorphic_dvd(tmp_path / "dvd.mkv")
    result = api.upscale_video(source, options=api.UpscaleOptions(model="bicubic", height=216))
    assert result.output == tmp_path / "dvd.216p.mkv"
    assert shown(result.output)[:3] in [(384, 216, "1:1"), (384, 216, "N/A")]
    assert (result.width, result.height) == (384, 216)


def test_a_rotated_phone_video_is_sized_as_it_is_shown(tmp_path):
    source = media.make_rotated_clip(tmp_path / "phone.mp4", rotation=90, size=(64, 36))  # shown 36×64, upright
    output = tmp_path / "phone.hd.mp4"
    api.upscale_video(source, output, options=api.UpscaleOptions(model="bicubic", height=128))
    width, height, _, rotation = shown(output)
    assert (width, height, rotation) == (128, 72, media.video_info(source).rotation)  # shown 72×128
    # The summary says the size shown, as --height asked for it (it said the stored 128x72 alone).
    result = run_vsr("upscale", source, "-m", "bicubic", "--height", "128", "-o", tmp_path / "again.mp4")
    assert result.stdout.startswith(f"wrote {tmp_path / 'again.mp4'}: 6 frames shown at 72x128, stored at 128x72 in ")


def test_segments_and_two_workers_give_the_size_and_pixels_of_one_run(tmp_path):
    """The size reaches the segment workers, and the joined stream keeps their square pixels."""
    source = make_anamorphic_dvd(tmp_path / "dvd.mp4", frames=8)
    options = api.UpscaleOptions(model="bicubic", width=200)
    one = api.upscale_video(source, tmp_path / "one.mkv", options=options, video=api.VideoOptions(codec="ffv1"))
    split = api.upscale_video_in_segments(source, tmp_path / "split.mkv", devices="cpu,cpu", options=options,
                                          video=api.VideoOptions(codec="ffv1", segment_seconds=0.15))
    assert split.times.extra["segments"] == 2
    assert shown(split.output)[:2] == shown(one.output)[:2] == (200, 113)  # (ffv1 stores RGB: an odd side)
    assert shown(split.output)[2] in ("1:1", "N/A")
    assert decoded_framemd5(split.output) == decoded_framemd5(one.output)


def test_images_take_a_width_and_height_box(tmp_path):
    source = tmp_path / "wide.png"
    Image.new("RGB", (64, 36), (200, 40, 90)).save(source)
    written = api.upscale_image(source, options=api.UpscaleOptions(model="bicubic", width=100, height=100))
    assert written == tmp_path / "wide.100x100.png"
    assert Image.open(written).size == (100, 56)  # 56.25: an image needs no even side


def test_a_jobs_file_size_replaces_the_defaults_factor(tmp_path):
    """[defaults] outscale = 2 and a job's height = 96: that job is sized, the others scaled; batch names them as
    `vsr upscale` does. (Both in one table is the engine's one-line error.)"""
    for name in ("a", "b"):
        Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / f"{name}.png")
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('output_dir = "out"\n[defaults]\nmodel = "bicubic"\noutscale = 2\n'
                         '[[job]]\ninput = "a.png"\n[[job]]\ninput = "b.png"\nheight = 96\n')
    jobs, out_dir = batch.load_jobs_file(jobs_file)
    assert [(job.output.name, job.options.outscale, job.options.height) for job in jobs] == [
        ("a.x2.png", 2.0, None), ("b.96p.png", None, 96)]
    report = batch.run_batch(jobs, out_dir)
    assert report.ok
    assert [Image.open(job.output).size for job in jobs] == [(128, 96), (128, 96)]


def test_journal_records_without_a_size_are_those_an_earlier_vsr_wrote(tmp_path):
    """Jobs done before --width/--height existed stay done: the new options are left out of the record while unset,
    and a size asked for is a different job."""
    source = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(source)
    plain, = batch.discover(tmp_path, tmp_path / "out", options=BICUBIC, video=api.VideoOptions())
    sized, = batch.discover(tmp_path, tmp_path / "out", options=api.UpscaleOptions(model="bicubic", height=64),
                            video=api.VideoOptions())
    assert not {"width", "height"} & set(batch.journal_entry(plain).options)
    assert batch.journal_entry(sized).options["height"] == 64


def test_the_command_line_sizes_and_refuses_both_ways_of_sizing(tmp_path):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=4, size=(64, 48))
    run = ["upscale", source, "-m", "bicubic", "-q"]
    run_vsr(*run, "--width", "96", check=True)
    assert shown(tmp_path / "clip.96w.mp4")[:2] == (96, 72)
    refused = run_vsr(*run, "--width", "96", "-s", "2")
    assert refused.returncode != 0
    assert refused.stderr.strip() == "vsr: error: give --outscale or --width/--height, not both"
    assert not (tmp_path / "clip.x2.mp4").exists()


def test_compare_pairs_an_anamorphic_source_with_its_square_pixel_upscale_without_a_warning(tmp_path, caplog):
    """Shapes are compared as shown: 72×48 at pixel aspect 32:27 is the 16:9 of 384×216."""
    source = make_anamorphic_dvd(tmp_path / "dvd.mkv")
    upscaled = api.upscale_video(source, options=api.UpscaleOptions(model="bicubic", height=216)).output
    clip = api.compare_videos(source, upscaled)
    assert "different shapes" not in caplog.text
    assert shown(clip)[:2] == (384, 216)
    squeezed = tmp_path / "squeezed.mkv"  # the same pixels tagged square: 3:2 shown, not made from the source
    media.ffmpeg("-i", source, "-c", "copy", "-aspect", "3:2", squeezed)
    api.compare_videos(squeezed, upscaled, tmp_path / "c2.mp4")
    assert "have different shapes" in caplog.text
