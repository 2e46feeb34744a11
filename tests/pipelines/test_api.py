"""The Python API (`import vsr`): what a caller gets wrong is one vsr error naming it, not a TypeError from deep
inside, nor (for 2.5 frames) a run that quietly did something else."""

import re
from fractions import Fraction

import numpy as np
import PIL.Image
import pytest

import vsr
from tests.pipelines.clips import make_clip
from vsr.errors import ModelError, OptionError, OutputError


@pytest.mark.parametrize("call, message", [
    (lambda clip, out: vsr.upscale_video(clip, out, options={"model": "bicubic"}),
     "options must be an UpscaleOptions, not dict"),
    (lambda clip, out: vsr.upscale_video(clip, out, video={"crf": 20}), "video must be a VideoOptions, not dict"),
    (lambda clip, out: vsr.upscale_image(clip, out, options=vsr.VideoOptions()),
     "options must be an UpscaleOptions, not VideoOptions"),
    (lambda clip, out: vsr.upscale_video(clip, out, options=vsr.UpscaleOptions(model=None)),
     "model must be a zoo name or a checkpoint path, as text; not None"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=vsr.VideoOptions(max_frames=2.5)),
     "--frames must be a whole number, not 2.5"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=vsr.VideoOptions(start="0:30")),
     "--start must be a number, not '0:30'"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=vsr.VideoOptions(end=float("inf"))),
     "--end must be a number, not inf"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=vsr.VideoOptions(fps="24")),
     "--fps must be a number, not '24'"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=vsr.VideoOptions(encoder_options=["tune=film"])),
     "encoder options are a dict of names and text values"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=vsr.VideoOptions(codec=264)), "--codec must be text"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=None), "video must be a VideoOptions, not NoneType"),
    (lambda clip, out: vsr.upscale_video(clip, out, options=vsr.UpscaleOptions(model="bicubic", alpha=None)),
     "alpha must be a number from 0 to 1, not None"),
    (lambda clip, out: vsr.upscale_video(clip, out, video=vsr.VideoOptions(copy_streams="no")),
     "copy_streams must be True or False, not 'no'"),
    (lambda clip, out: vsr.upscale_video_in_segments(clip, out, devices=0), "devices is text such as"),
    (lambda clip, out: vsr.upscale_image(5, out), "source must be a path (text or a Path), not 5"),
    # An output (or a model) that is no path was pathlib's bare TypeError (helper-53).
    (lambda clip, out: vsr.upscale_image(clip, 5), "output must be a path (text or a Path), not 5"),
    (lambda clip, out: vsr.upscale_video(clip, 5), "output must be a path (text or a Path), not 5"),
    (lambda clip, out: vsr.upscale_video_in_segments(clip, 5), "output must be a path (text or a Path), not 5"),
    (lambda clip, out: vsr.compare_videos(clip, clip, 5), "output must be a path (text or a Path), not 5"),
    # A text "no" replaced an existing output; a list was a bare TypeError (helper-59).
    (lambda clip, out: vsr.upscale_video(clip, out, overwrite="no"), "overwrite must be True or False, not 'no'"),
    (lambda clip, out: vsr.upscale_image(clip, out, overwrite="no"), "overwrite must be True or False, not 'no'"),
    (lambda clip, out: vsr.compare_videos(clip, clip, out, options=vsr.CompareOptions(baseline=["x"])),
     "--baseline must be one of bicubic, lanczos, nearest, not .'x'."),
    (lambda clip, out: vsr.compare_videos(clip, clip, out, options={"baseline": "bicubic"}),
     "options must be a CompareOptions, not dict"),
    (lambda clip, out: vsr.compare_videos(clip, clip, out, options=vsr.CompareOptions(start="0:30")),
     "--start must be a number of seconds, not '0:30'"),
], ids=["options dict", "video dict", "swapped", "no model", "2.5 frames", "text time", "inf", "text fps",
        "options list", "codec number", "video None", "alpha None", "copy_streams text", "devices int", "source int",
        "image output int", "video output int", "segments output int", "compare output int", "overwrite text",
        "image overwrite text", "baseline list", "compare dict",
        "compare text time"])
def test_wrong_types_are_one_option_error(tmp_path, call, message):
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(clip, tmp_path / "out.mp4")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


def test_fractions_and_numpy_numbers_are_numbers():
    vsr.VideoOptions(fps=Fraction(24000, 1001), start=Fraction(1, 2), end=2.5, segment_seconds=60).validate()
    vsr.VideoOptions(crf=np.int64(20), max_frames=np.int64(5), start=np.float32(0.5)).validate()


def test_numpy_numbers_upscale_as_python_numbers(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    options = vsr.UpscaleOptions(model="bicubic", batch_size=np.int64(2), tile=np.int32(0), height=np.int64(32))
    video = vsr.VideoOptions(crf=np.int64(20), end=np.float64(0.1))
    assert type(options.batch_size) is int and type(options.height) is int and type(video.end) is float
    result = vsr.upscale_video(clip, tmp_path / "out.mp4", options=options, video=video)
    assert result.height == 32 and result.frames >= 1


def test_a_sequence_given_to_upscale_image_and_a_missing_folder_are_said_as_such(tmp_path):
    make_clip(tmp_path / "clip.mp4", frames=2)
    (tmp_path / "seq").mkdir()
    for number in (1, 2):
        (tmp_path / "seq" / f"f{number:04d}.png").write_bytes(b"x")  # (not read: said before)
    with pytest.raises(OptionError, match="an image sequence; upscale_video upscales it"):
        vsr.upscale_image(str(tmp_path / "seq" / "f%04d.png"), options=vsr.UpscaleOptions(model="bicubic"))
    with pytest.raises(OutputError, match="newdir/: no such folder"):
        vsr.upscale_video(tmp_path / "clip.mp4", f"{tmp_path}/newdir/", options=vsr.UpscaleOptions(model="bicubic"))
    # A file named as a folder: upscale_image said "unsupported image type ''"
    PIL.Image.new("RGB", (8, 6)).save(tmp_path / "still.png")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OutputError, match="a-file/: no such folder"):
        vsr.upscale_image(tmp_path / "still.png", f"{tmp_path}/a-file/", options=vsr.UpscaleOptions(model="bicubic"))


def test_a_model_that_is_no_name_or_path_is_one_model_error():
    with pytest.raises(ModelError, match="a model is a zoo name or a checkpoint's path, not 5"):
        vsr.load_model(5)


def test_an_end_at_or_before_the_start_names_the_options():
    """--end 0 alone was "end=0.0: expected a time in seconds after start (0)", once the model had loaded."""
    for video, message in ((vsr.VideoOptions(end=0), "--end (0) must be after --start (0)"),
                           (vsr.VideoOptions(start=Fraction(3, 2), end=1), "--end (1) must be after --start (1.5)")):
        with pytest.raises(OptionError, match=re.escape(message)):
            video.validate()
