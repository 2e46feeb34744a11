"""`vsr eval` through the command line: the bicubic baseline against scikit-image, models, video frames, errors."""

import json
import os
import shutil
import stat
import threading

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import make_clip
from tests.pipelines.test_alpha import make_alpha_clip
from tests.processes import run_vsr as vsr
from vsr.models.checkpoint import save_model
from vsr.models.detect import build, spec_for
from vsr.models.resample import imresize
from vsr.pipelines.images import Image, read_image, write_image

SAMPLE = "samples/bbb_frame.png"


def _y(rgb):
    """BT.601 luma of H×W×3 values in [0, 1], on [16, 235] (computed here, not by vsr)."""
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def test_the_baseline_is_what_scikit_image_measures_and_a_random_network_scores_far_below_it(tmp_path):
    crop = read_image(SAMPLE)
    crop.rgb = crop.rgb[:, 30:80, 90:156].contiguous()  # 66×50: cropped to 64×48 for ×4
    source = tmp_path / "crop.png"
    write_image(source, crop)
    spec = spec_for("RRDBNet", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4})
    torch.manual_seed(0)
    random_net, _ = save_model(build(spec), spec, tmp_path / "random.pth")
    result = vsr("eval", source, "-m", "bicubic", "-m", random_net, "--json", tmp_path / "scores.json", check=True)
    record = json.loads((tmp_path / "scores.json").read_text())
    assert record["images"] == ["crop.png"]
    baseline, random = record["scores"]  # (-m bicubic is the baseline: its row was shown twice)
    assert (baseline["model"], baseline["baseline"], random["model"], random["baseline"]) == (
        "bicubic", True, str(random_net), False)

    # The same measurement made here: 8-bit LR from MATLAB's bicubic, bicubic back up, 4 border pixels left out.
    hr = read_image(source).rgb[:, :48, :64][None]
    hr = (hr * 255).round() / 255
    lr = (imresize(hr.double(), 1 / 4, "bicubic").clamp(0, 1) * 255).round() / 255
    sr = (imresize(lr, 4, "bicubic").clamp(0, 1) * 255).round() / 255
    hr_pixels, sr_pixels = (image[0].permute(1, 2, 0).numpy()[4:-4, 4:-4] for image in (hr, sr))
    expected_psnr = peak_signal_noise_ratio(_y(hr_pixels), _y(sr_pixels), data_range=255)
    expected_ssim = structural_similarity(_y(hr_pixels), _y(sr_pixels), gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=255)
    assert 20 < expected_psnr < 40
    # The engine resizes in fp32, this test in fp64: 1e-7 dB apart here.
    assert baseline["psnr_y"] == pytest.approx(expected_psnr, abs=1e-5)
    assert baseline["ssim_y"] == pytest.approx(expected_ssim, abs=1e-6)
    assert random["psnr_y"] < baseline["psnr_y"] - 5  # untrained weights are far from the picture
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1 image (66×50), each downscaled")
    # How the images' scores are averaged: papers' PSNR is the mean of the images' PSNRs (helper-92).
    assert lines[2] == ("each score the mean of the images' own (each video frame one image), not the PSNR of their "
                        "mean MSE")
    table = lines[lines.index("") + 1:]
    assert [line.split()[:2] for line in table[1:]] == [["bicubic", "(baseline)"], [str(random_net), "x4"]]


def test_frames_are_sampled_evenly_from_videos(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=10, size=(64, 48))  # 0.4 s at 25 fps
    write_image(tmp_path / "still.png", Image(rgb=torch.rand(3, 24, 32), alpha=None, bit_depth=8, gray=False))
    vsr("eval", clip, tmp_path / "still.png", "-m", "bicubic", "--frames", "2", "--json", tmp_path / "s.json",
        check=True)
    record = json.loads((tmp_path / "s.json").read_text())
    # 2 frames of a 0.4 s clip: the first at or after the middle of each half (0.1 s and 0.3 s), 25 fps.
    assert record["images"] == ["clip.mp4@0.120s", "clip.mp4@0.320s", "still.png"]
    assert all(score["images"] == 3 for score in record["scores"])
    vsr("eval", clip, "-m", "bicubic", "--frames", "10", "--json", tmp_path / "all.json", check=True)
    assert json.loads((tmp_path / "all.json").read_text())["images"] == [f"clip.mp4@{0.04 * n:.3f}s" for n in range(10)]


def test_video_frames_are_scored_for_flicker_with_the_frame_after_each(tmp_path):
    """A still video changes nothing from frame to frame, and neither does its bicubic upscale: no temporal error; a
    moving one has some. Images alone have no such score (tests/training/test_metrics.py checks the formula)."""
    still = make_clip(tmp_path / "still.mp4", frames=10, size=(64, 48), color_chart=True)
    moving = make_clip(tmp_path / "moving.mp4", frames=10, size=(64, 48))
    result = vsr("eval", still, moving, "-m", "bicubic", "--frames", "2", "--json", tmp_path / "s.json", check=True)
    scores = json.loads((tmp_path / "s.json").read_text())["scores"]
    assert scores[0]["temporal_error_y"] > 0  # the moving clip's pairs
    assert "tErr-Y: how far the change from each video frame to the next (4 pairs)" in result.stdout
    vsr("eval", still, "-m", "bicubic", "--frames", "2", "--json", tmp_path / "still.json", check=True)
    assert [score["temporal_error_y"] for score in json.loads((tmp_path / "still.json").read_text())["scores"]] == [
        0.0]
    result = vsr("eval", SAMPLE, "-m", "bicubic", "--json", tmp_path / "image.json", check=True)
    assert json.loads((tmp_path / "image.json").read_text())["scores"][0]["temporal_error_y"] is None
    assert "tErr" not in result.stdout


def test_an_image_sequence_is_sampled_like_a_video_and_its_frames_named_by_file(tmp_path):
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "10", "-start_number", "101",
                 tmp_path / "f%04d.png")  # 0.4 s at 25 fps, the default rate of a sequence
    vsr("eval", tmp_path / "f%04d.png", "-m", "bicubic", "--frames", "2", "--json", tmp_path / "s.json", check=True)
    assert json.loads((tmp_path / "s.json").read_text())["images"] == ["f0104.png", "f0109.png"]


def test_tiff_bmp_a_video_with_alpha_and_a_short_sequence_are_scored(tmp_path):
    """Every image vsr reads (a folder's TIFF and BMP were left out), a video's picture without its alpha, and a
    sequence of fewer frames than asked for, named by its files."""
    (tmp_path / "photos").mkdir()
    for suffix in ("tiff", "bmp", "png"):
        media.ffmpeg("-i", SAMPLE, tmp_path / "photos" / f"frame.{suffix}")
    make_alpha_clip(tmp_path / "alpha.mov", frames=3, codec_args=("-c:v", "qtrle"))
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "2", tmp_path / "f%03d.png")
    vsr("eval", tmp_path / "photos", tmp_path / "alpha.mov", tmp_path / "f%03d.png", "-m", "bicubic", "--frames",
        "3", "--json", tmp_path / "s.json", check=True)
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["images"] == ["frame.bmp", "frame.png", "frame.tiff", "alpha.mov@0.000s", "alpha.mov@0.040s",
                                "alpha.mov@0.080s", "f001.png", "f002.png"]
    baseline = record["scores"][0]
    assert baseline["images"] == 8 and 20 < baseline["psnr_y"] < 50


def test_bad_sources_and_options_are_one_line_before_any_scoring(tmp_path):
    write_image(tmp_path / "tiny.png", Image(rgb=torch.rand(3, 18, 20), alpha=None, bit_depth=8, gray=False))
    (tmp_path / "folder").mkdir()
    shutil.copy(SAMPLE, tmp_path / "still.png")
    cases = [
        ([tmp_path / "nothing.mp4"], f"{tmp_path / 'nothing.mp4'}: no such file or folder"),
        ([tmp_path / "tiny.png"], "tiny.png: 20×18 pixels are too few to score at ×4: it takes 20×20 or more"),
        ([tmp_path / "still.png", "--json", tmp_path / "still.png"],
         f"{tmp_path / 'still.png'}: the report would replace an input; give --json another file name"),
        ([SAMPLE, "--json", tmp_path / "still.png"],
         f"{tmp_path / 'still.png'}: exists and is not a .json file; give --json another file name"),
        ([SAMPLE, "--frames", "0"], "--frames must be a whole number, 1 or more, not 0"),
        ([SAMPLE, "--json", tmp_path / "folder"], f"{tmp_path / 'folder'}: is a folder; give --json a file name"),
        ([SAMPLE, "--strength", "2"], "--strength must be a number from 0 to 1, not 2.0"),
        ([SAMPLE, "--tile", "64", "--tile-overlap", "128"],
         "--tile 64 is too small for --tile-overlap 128: use a --tile of at least 144 pixels or a smaller "
         "--tile-overlap"),
    ]
    for arguments, message in cases:
        result = vsr("eval", *arguments, "-m", "bicubic")
        assert result.returncode in (2, 4) and result.stderr.strip().splitlines() == [f"vsr: error: {message}"]
    assert (tmp_path / "still.png").read_bytes() == open(SAMPLE, "rb").read()


def test_a_strength_below_one_is_scored_as_such(tmp_path):
    """Half bicubic (the model here), half Lanczos: the label says so, and the score differs from either."""
    result = vsr("eval", SAMPLE, "-m", "bicubic", "--strength", "0.5", "--json", tmp_path / "s.json", check=True)
    baseline, mixed = json.loads((tmp_path / "s.json").read_text())["scores"]
    assert mixed["model"] == "bicubic (strength 0.5)" and mixed["psnr_y"] != baseline["psnr_y"]
    assert "bicubic (strength 0.5)" in result.stdout


def test_a_model_that_changes_nothing_scores_null_not_infinity_in_json(tmp_path):
    """PSNR of identical images is +inf, which Python writes as Infinity: not JSON to strict parsers."""
    spec = spec_for("SRVGGNetCompact", {"num_feat": 4, "num_conv": 1, "upscale": 1, "act_type": "prelu"})
    identity = build(spec)
    torch.nn.init.zeros_(identity.body[-1].weight)
    torch.nn.init.zeros_(identity.body[-1].bias)  # the network adds nothing to its (nearest-upscaled) input
    path, _ = save_model(identity, spec, tmp_path / "identity.pth")
    vsr("eval", SAMPLE, "-m", path, "--json", tmp_path / "s.json", check=True)
    text = (tmp_path / "s.json").read_text()
    assert "Infinity" not in text and json.loads(text)["scores"][1]["psnr_y"] is None


def test_a_model_whose_outputs_are_nan_is_warned_about(tmp_path):
    """It scored nan, said nowhere why."""
    spec = spec_for("SRVGGNetCompact", {"num_feat": 4, "num_conv": 1, "upscale": 4, "act_type": "prelu"})
    broken = build(spec)
    torch.nn.init.constant_(broken.body[-1].bias, float("nan"))
    path, _ = save_model(broken, spec, tmp_path / "broken.pth")
    result = vsr("eval", SAMPLE, "-m", path, "--precision", "fp32", check=True)
    assert f"{path}: its outputs hold NaN (not a number), so its scores are none" in result.stderr


def test_tiles_with_a_smaller_overlap_are_scored_as_the_whole_frame(tmp_path):
    """--tile-overlap was missing from vsr eval, whose tile error asked for a smaller overlap."""
    whole = vsr("eval", SAMPLE, "-m", "bicubic", "--json", tmp_path / "whole.json", check=True)
    tiled = vsr("eval", SAMPLE, "-m", "bicubic", "--tile", "64", "--tile-overlap", "16", "--json",
                tmp_path / "tiled.json", check=True)
    scores = [json.loads((tmp_path / name).read_text())["scores"][0] for name in ("whole.json", "tiled.json")]
    assert abs(scores[0]["psnr_y"] - scores[1]["psnr_y"]) < 0.05, (whole.stdout, tiled.stdout)


def test_a_report_into_a_pipe_or_through_a_link_is_written_there_not_over_it(tmp_path):
    """Written atomically, the report replaced a FIFO, a link to /dev/null (and as root /dev/full, /dev/stdout) with
    a file of its own (helper-82)."""
    fifo, to_null, to_file = tmp_path / "p.json", tmp_path / "null.json", tmp_path / "link.json"
    kept = tmp_path / "kept.json"
    os.mkfifo(fifo)
    to_null.symlink_to(os.devnull)
    kept.write_text("{}")
    to_file.symlink_to(kept)
    read = {}
    reader = threading.Thread(target=lambda: read.update(text=fifo.read_text()), daemon=True)
    reader.start()
    for path in (fifo, to_null, to_file):
        vsr("eval", SAMPLE, "-m", "bicubic", "--json", path, check=True)
    reader.join(timeout=60)
    assert json.loads(read["text"])["scores"] and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert to_null.is_symlink() and to_file.is_symlink() and json.loads(kept.read_text())["scores"]


def test_a_frame_of_one_colour_is_left_out_not_scored_as_infinitely_good(tmp_path):
    """Bicubic gives a black frame back exactly: PSNR +inf. Two black frames (before a fade-in) among those sampled
    made bicubic's mean PSNR inf (null in JSON) and raised the models' by over 10 dB (helper-92)."""
    clip = tmp_path / "fade.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "color=black:size=64x48:rate=25:duration=0.2", "-f", "lavfi", "-i",
                 "testsrc2=size=64x48:rate=25:duration=0.2", "-filter_complex", "[0][1]concat=n=2:v=1:a=0",
                 "-c:v", "ffv1", clip)  # frames 0-4 black, 5-9 a picture
    result = vsr("eval", clip, "-m", "bicubic", "--frames", "4", "--json", tmp_path / "s.json", check=True)
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["images"] == ["fade.mkv@0.280s", "fade.mkv@0.360s"]
    for score in record["scores"]:  # (testsrc2 is busy at 64×48: bicubic scores 19 dB)
        assert score["psnr_y"] is not None and 15 < score["psnr_y"] < 40 and 15 < score["psnr_rgb"] < 40
    for black in ("fade.mkv@0.080s", "fade.mkv@0.160s"):
        assert f"{black}: one colour throughout, so nothing to upscale: left out of the scores" in result.stderr
    black_only = tmp_path / "black.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "color=black:size=64x48:rate=25:duration=0.2", "-c:v", "ffv1", black_only)
    result = vsr("eval", black_only, "-m", "bicubic")
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1] == (
        "vsr: error: every image and frame to score is one colour throughout: there is nothing to upscale")
