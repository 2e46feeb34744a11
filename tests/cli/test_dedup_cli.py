"""`vsr upscale --dedup`: frames that repeat the last one upscaled are written again from its picture, at their own
times, in one run, in segments on two workers and into image sequences; judged by ffprobe and by decoding."""

import functools

import av
import numpy as np
import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import DRAWN, HELD, make_held_clip
from tests.processes import run_vsr

vsr = functools.partial(run_vsr, check=True)


def frames_of(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_exact_repeats_are_upscaled_once_and_the_output_is_unchanged(tmp_path, tiny_rrdbnet_checkpoint):
    source = make_held_clip(tmp_path / "held.mkv")
    common = [source, "-m", tiny_rrdbnet_checkpoint, "--codec", "ffv1", "--precision", "fp32"]
    default = vsr("upscale", *common, "-o", tmp_path / "default.mkv")
    vsr("upscale", *common, "-o", tmp_path / "off.mkv", "--dedup", "off")
    assert "12 frames at 256x192" in default.stdout
    assert f"; {len(HELD) - len(DRAWN)} repeated frames not upscaled again" in default.stdout
    assert media.video_pts(tmp_path / "default.mkv") == media.video_pts(source)
    default_frames, off_frames = frames_of(tmp_path / "default.mkv"), frames_of(tmp_path / "off.mkv")
    assert all(np.array_equal(a, b) for a, b in zip(default_frames, off_frames, strict=True))


@pytest.mark.parametrize("devices", [[], ["--devices", "cpu,cpu", "--segment-seconds", "0.12"]],
                         ids=["one run", "segments on two workers"])
def test_a_tolerance_writes_the_held_drawing_again_at_each_frame_time(tmp_path, tiny_rrdbnet_checkpoint, devices):
    source = make_held_clip(tmp_path / "noisy.mkv", noise=3)
    output = tmp_path / "out.mkv"
    common = [source, "-m", tiny_rrdbnet_checkpoint, "--codec", "ffv1", *devices]
    result = vsr("upscale", *common, "-o", output, "--dedup", "4")
    frames = frames_of(output)
    assert media.video_pts(output) == media.video_pts(source) and len(frames) == len(HELD)
    # Segments start with a picture of their own: at 25 fps segments of 0.12 s start at frames 0, 3, 6, 9 (each
    # a keyframe in FFV1), and frame 9 is the middle of a drawing.
    upscaled = sorted(set(DRAWN) | ({0, 3, 6, 9} if devices else set()))
    assert f"; {len(HELD) - len(upscaled)} repeated frames not upscaled again" in result.stdout
    for index, frame in enumerate(frames):
        picture = max(first for first in upscaled if first <= index)
        assert np.array_equal(frame, frames[picture]) == (HELD[index] == HELD[picture]), index
    exact = vsr("upscale", *common, "-o", tmp_path / "exact.mkv")  # every frame differs a little: none repeats
    assert "repeated" not in exact.stdout


def test_an_image_sequence_writes_a_file_for_every_frame(tmp_path, tiny_rrdbnet_checkpoint):
    source = make_held_clip(tmp_path / "held.mkv")
    vsr("upscale", source, "-m", tiny_rrdbnet_checkpoint, "-o", tmp_path / "frames" / "%03d.png")
    files = sorted((tmp_path / "frames").glob("*.png"))
    assert [file.name for file in files] == [f"{number:03d}.png" for number in range(1, len(HELD) + 1)]
    for index, file in enumerate(files):
        first = files[max(first for first in DRAWN if first <= index)]
        assert file.read_bytes() == first.read_bytes()


def test_a_bad_dedup_value_is_one_line(tmp_path):
    source = make_held_clip(tmp_path / "held.mkv")
    result = run_vsr("upscale", source, "-m", "bicubic", "--dedup", "often")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "vsr: error: --dedup takes exact, off, or a tolerance in levels of 255 such as 4; not 'often'"]
    assert not list(tmp_path.glob("held.x4*"))
