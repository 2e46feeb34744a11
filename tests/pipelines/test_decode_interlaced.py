"""Interlaced video: each frame holds two fields, taken 1/50 s apart in a 25i clip. Upscaled together, the fields'
lines would comb every moving edge; `deinterlace` ("auto" by default in `vsr upscale`) runs FFmpeg's bwdif first."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from vsr.pipelines.decode import open_decoder
from vsr.pipelines.probe import probe

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import make_clip, make_interlaced_clip
from tests.processes import run_vsr

FRAMES = 8


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory):
    """A 25i clip woven from a 50p source (top field first), and that source's frames: the truth for each field."""
    folder = tmp_path_factory.mktemp("interlaced")
    source = folder / "50p.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=50", "-frames:v", str(2 * FRAMES), "-c:v", "ffv1",
                 "-pix_fmt", "yuv420p", source)
    clip = folder / "25i.mp4"
    media.ffmpeg("-i", source, "-vf", "tinterlace=interleave_top,setfield=tff", "-c:v", "libx264", "-qp", "0",
                 "-g", "4", "-flags", "+ildct+ilme", "-x264opts", "tff=1", clip)
    return clip, decode(source, "off")


def decode(path, deinterlace, device="cpu", **window):
    with open_decoder(path, backend="pyav", deinterlace=deinterlace, device=device, **window) as decoder:
        frames, pts = [], []
        for batch in decoder.batches(4):
            assert batch.frames.device.type == torch.device(device).type
            frames += list(batch.frames.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64))
            pts += batch.pts
    return frames, pts


def test_the_clip_is_interlaced_by_ffprobe_and_by_vsr(interlaced):
    clip, _ = interlaced
    assert media.ffprobe_streams_of(clip, "v")[0]["field_order"] == "tt"
    assert probe(clip).video.interlaced


def test_deinterlaced_frames_are_closer_to_the_truth_and_keep_their_times(interlaced):
    clip, (truth, _) = interlaced
    woven, woven_pts = decode(clip, "off")
    deinterlaced, pts = decode(clip, "auto")
    assert pts == woven_pts == sorted(pts) and len(pts) == FRAMES
    # The top field of frame i is the 50p frame 2i: woven, every other line is from frame 2i + 1.
    woven_error = np.mean([np.abs(woven[i] - truth[2 * i]).mean() for i in range(FRAMES)])
    error = np.mean([np.abs(deinterlaced[i] - truth[2 * i]).mean() for i in range(FRAMES)])
    # Measured: 5.5 vs 7.7 levels (bwdif interpolates half the lines, so testsrc2's fine detail keeps it above 0).
    assert error < 0.8 * woven_error, (error, woven_error)


@pytest.mark.parametrize("deinterlace, made", [("auto", 1), ("field", 2)])
def test_a_window_from_a_keyframe_is_deinterlaced_as_in_a_run_from_the_start(interlaced, deinterlace, made):
    # bwdif makes each frame from the one before it too: the decoder starts a frame early (a segment of a resumable
    # run must equal that run; its first frame came out up to 206 levels off). `made`: frames made of each frame.
    clip, _ = interlaced
    everything, all_pts = decode(clip, deinterlace)
    window, pts = decode(clip, deinterlace, start=0.16, end=0.32)  # frames 4 to 7, from the keyframe at frame 4
    assert pts == all_pts[4 * made:8 * made]
    assert all(np.array_equal(a, b) for a, b in zip(window, everything[4 * made:8 * made]))


def test_a_progressive_clip_is_left_alone_by_auto(tmp_path):
    clip = make_clip(tmp_path / "p.mp4", frames=6)
    (auto, auto_pts), (off, off_pts), (on, on_pts) = (decode(clip, mode) for mode in ("auto", "off", "on"))
    assert auto_pts == off_pts == on_pts and len(off) == 6
    assert all(np.array_equal(a, b) for a, b in zip(auto, off))
    assert not all(np.array_equal(a, b) for a, b in zip(on, off))  # "on" deinterlaces even a progressive clip


def test_decord_asked_for_an_interlaced_clip_hands_it_to_pyav(interlaced, caplog):
    pytest.importorskip("decord")
    clip, _ = interlaced
    with open_decoder(clip, backend="decord", deinterlace="auto") as decoder:
        assert decoder.backend == "pyav"
    assert "decoding with PyAV instead of decord, which cannot deinterlace" in caplog.text


@pytest.mark.parametrize("devices", [[], ["--devices", "cpu,cpu"]], ids=["one run", "two workers"])
def test_vsr_upscale_deinterlaces_by_default_and_says_so_once(interlaced, tmp_path, devices):
    clip, _ = interlaced
    output = tmp_path / "out.mkv"
    result = run_vsr("upscale", clip, "-o", output, "-m", "bicubic", *devices, check=True)
    assert result.stderr.count("interlaced video: deinterlacing it") == 1  # not once per worker
    assert (f"vsr: WARNING: {clip}: interlaced video: deinterlacing it (bwdif, one frame per frame; --deinterlace off "
            "keeps the fields)") in result.stderr.splitlines()
    assert media.video_times(output) == media.video_times(clip)
    assert media.ffprobe_streams_of(output, "v")[0].get("field_order", "progressive") == "progressive"



def test_a_clip_woven_by_pyav_alone_is_deinterlaced_by_auto(tmp_path):
    """The GPU test's clip (below), made without the ffmpeg command line: interlaced as far as vsr can tell, so
    "auto" deinterlaces it, and its times are a 25 fps clip's."""
    clip = make_interlaced_clip(tmp_path / "25i.mp4")
    assert probe(clip).video.interlaced
    (woven, woven_pts), (deinterlaced, pts) = decode(clip, "off"), decode(clip, "auto")
    assert pts == woven_pts and len(pts) == 8
    assert not all(np.array_equal(a, b) for a, b in zip(deinterlaced, woven))


def test_a_bad_deinterlace_value_is_one_line(tmp_path):
    clip = make_clip(tmp_path / "p.mp4", frames=2)
    result = run_vsr("upscale", clip, "-m", "bicubic", "--deinterlace", "maybe")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vsr: error: --deinterlace must be one of auto, on, off, ivtc, field, not 'maybe'"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["p.mp4"]

# ---- on a CUDA device (bench/device_check.py) -----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_interlaced_video_is_decoded_in_software_and_deinterlaced(tmp_path):
    # (a clip made by PyAV: the `interlaced` fixture needs the ffmpeg command line, which GPU machines lack)
    clip = make_interlaced_clip(tmp_path / "25i.mp4")
    reference, reference_pts = decode(clip, "auto")
    frames, pts = decode(clip, "auto", device="cuda:0")  # NVDEC's frames cannot go through bwdif
    assert pts == reference_pts
    # swscale's exact path on the CPU, planes_to_rgb on the GPU: within one level (test_decode_hw.py)
    assert max(np.abs(a - b).max() for a, b in zip(frames, reference)) <= 1


def test_vsr_eval_says_it_deinterlaces_without_naming_an_option_it_lacks(interlaced):
    """`vsr eval` (and `vsr train`, through the same sampling of video frames) said "--deinterlace off keeps the
    fields", an option neither has: asked for, it is refused as unknown."""
    clip, _ = interlaced
    result = run_vsr("eval", clip, "-m", "bicubic", "--frames", "2", check=True)
    assert (f"vsr: WARNING: {clip}: interlaced video: deinterlacing it (bwdif, one frame per frame)"
            in result.stderr.splitlines())
    assert "--deinterlace" not in result.stderr
    refused = run_vsr("eval", clip, "-m", "bicubic", "--deinterlace", "off")
    assert refused.returncode == 2 and "No such option: --deinterlace" in refused.stderr


# ---- double rate: a frame for each field (--deinterlace field) ------------------------------------------------------


def test_field_by_field_each_field_is_a_frame_at_its_own_time(interlaced):
    clip, (truth, truth_pts) = interlaced
    fields, pts = decode(clip, "field")[0:2]
    frames, frame_pts = decode(clip, "auto")
    assert len(fields) == 2 * FRAMES == len(truth)
    # 25i in a 1/12800 s time base: a frame each 512 ticks, a field each 256.
    assert pts == [256 * index for index in range(2 * FRAMES)] and pts[::2] == frame_pts
    # Each frame is nearest the 50p frame of its field's moment...
    assert [int(np.argmin([np.abs(field - true).mean() for true in truth])) for field in fields] == list(range(16))
    # ...where one frame per frame shows the first field's moment at the second's too. (Both interpolate half the
    # lines, which keeps testsrc2's fine detail above 5 levels off: measured 5.6 vs 7.0 at the second fields.)
    seconds = range(1, 2 * FRAMES, 2)
    error = np.mean([np.abs(fields[index] - truth[index]).mean() for index in seconds])
    frame_error = np.mean([np.abs(frames[index // 2] - truth[index]).mean() for index in seconds])
    assert error < 0.9 * frame_error, (error, frame_error)


def test_vsr_upscale_field_by_field_in_one_run_and_on_two_workers(interlaced, tmp_path):
    clip, _ = interlaced
    outputs = [tmp_path / "one.mkv", tmp_path / "two.mkv"]
    for output, devices in zip(outputs, ([], ["--devices", "cpu,cpu"])):
        run_vsr("upscale", clip, "-o", output, "-m", "bicubic", "--codec", "ffv1", "--deinterlace", "field", *devices,
                check=True)
    stream = media.ffprobe_streams_of(outputs[0], "v")[0]
    assert (stream["r_frame_rate"], stream["avg_frame_rate"]) == ("50/1", "50/1")
    assert media.video_times(outputs[0]) == [Fraction(index, 50) for index in range(2 * FRAMES)]
    assert media.video_times(outputs[1]) == media.video_times(outputs[0])
    assert media.decoded_frame_md5s(outputs[1]) == media.decoded_frame_md5s(outputs[0])
