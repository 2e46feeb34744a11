"""`vsr upscale --crop`: black bars cut off before the model, judged against FFmpeg's own crop of the same frames."""

import functools

import av
import numpy as np
import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import make_letterboxed_clip
from tests.processes import run_vsr

vsr = functools.partial(run_vsr, check=True)


def frames_of(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("devices", [[], ["--devices", "cpu,cpu", "--segment-seconds", "0.2"]],
                         ids=["one run", "segments on two workers"])
def test_auto_crop_upscales_the_picture_inside_the_bars(tmp_path, devices):
    picture = make_letterboxed_clip(tmp_path / "picture.mkv", bars=(10, 10, 6, 6))
    source = tmp_path / "letterboxed.mkv"
    media.ffmpeg("-i", picture, "-f", "lavfi", "-i", "sine=duration=1", "-c:v", "copy", "-c:a", "libopus",
                 "-shortest", source)
    # FFmpeg's crop filter makes the reference: the same pixels, upscaled the same way.
    reference = tmp_path / "reference.mkv"
    media.ffmpeg("-i", source, "-vf", "crop=64:28:6:10", "-c:v", "ffv1", "-an", tmp_path / "cropped.mkv")
    vsr("upscale", tmp_path / "cropped.mkv", "-m", "bicubic", "--codec", "ffv1", "-o", reference)
    output = tmp_path / "out.mkv"
    result = vsr("upscale", source, "-m", "bicubic", "--codec", "ffv1", "--crop", "auto", "-o", output, *devices)
    assert result.stderr.strip().splitlines() == [  # said once, by the driver, whatever the workers
        f"vsr: WARNING: {source}: black bars cut off: 64x28 of 76x48 kept (--crop 64:28:6:10; --crop off keeps them)"]
    assert "24 frames at 256x112" in result.stdout
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(output), frames_of(reference), strict=True))
    assert media.video_pts(output) == media.video_pts(source)
    assert media.framemd5(output, "0:a") == media.framemd5(source, "0:a")


def test_a_given_crop_and_a_wrong_one(tmp_path):
    source = make_letterboxed_clip(tmp_path / "clip.mkv", frames=4)
    result = vsr("upscale", source, "-m", "bicubic", "--crop", "32:20", "--outscale", "2", "-o", tmp_path / "a.mkv")
    assert "4 frames at 64x40" in result.stdout and not result.stderr
    for value, message in [("65:20", f"{source}: --crop 65:20 does not fit in its 64x48 frames"),
                           ("wide", "--crop takes auto, off, or WIDTH:HEIGHT:X:Y as FFmpeg's crop filter "
                                    "(1920:800:0:140); not 'wide'")]:
        result = vsr("upscale", source, "-m", "bicubic", "--crop", value, "-o", tmp_path / "b.mkv", check=False)
        assert result.returncode != 0 and result.stderr.strip().splitlines() == [f"vsr: error: {message}"]
    assert not (tmp_path / "b.mkv").exists()


def test_probe_tells_of_the_bars(tmp_path):
    source = make_letterboxed_clip(tmp_path / "clip.mkv", frames=4, bars=(10, 10, 0, 0))
    result = vsr("probe", source, "-m", "bicubic")
    assert "  black bars: the picture is 64×28 at 0,10; --crop auto cuts them off (42% less work)" in result.stdout
    whole = make_letterboxed_clip(tmp_path / "whole.mkv", frames=4, bars=(0, 0, 0, 0))
    assert "black bars" not in vsr("probe", whole, "-m", "bicubic").stdout


def test_an_image_is_upscaled_whole_and_says_so(tmp_path):
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24", "-vf", "pad=32:40:0:8:black", "-frames:v", "1",
                 tmp_path / "photo.png")
    result = vsr("upscale", tmp_path / "photo.png", "-m", "bicubic", "--crop", "auto")
    assert result.stderr.strip().splitlines() == [
        f"vsr: WARNING: {tmp_path / 'photo.png'}: --crop applies to videos; an image is upscaled whole, in its own "
        "format"]
    assert f"wrote {tmp_path / 'photo.x4.png'}" in result.stdout
    assert "black bars" not in vsr("probe", tmp_path / "photo.png", "-m", "bicubic").stdout
