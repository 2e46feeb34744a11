"""`vsr upscale` on still images and `vsr models`, through the real command line."""

import functools
import http.server
import struct
import subprocess
import threading
import zlib

import numpy as np
import pytest
import torch

from vsr.pipelines.images import Image, read_image, write_image

from tests.pipelines import media_fixtures as media
from tests.processes import run_vsr as vsr

SAMPLE = "samples/bbb_frame.png"


@pytest.mark.slow
def test_default_model_upscales_a_real_photo_crop(tmp_path):
    crop = read_image(SAMPLE)
    crop.rgb = crop.rgb[:, 40:64, 100:132].contiguous()  # 32×24: the full model stays quick on 2 cores
    source = tmp_path / "crop.png"
    write_image(source, crop)
    result = vsr("upscale", source, "-o", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    out = read_image(tmp_path / "out.png")
    assert out.rgb.shape == (3, 96, 128)
    # A real model, not a resize: it differs from bicubic, yet keeps the picture (low-frequency content).
    bicubic = tmp_path / "bicubic.png"
    assert vsr("upscale", source, "-o", bicubic, "-m", "bicubic").returncode == 0
    reference = read_image(bicubic).rgb
    difference = (out.rgb - reference).abs()
    assert difference.mean() > 1 / 255
    pooled = torch.nn.functional.avg_pool2d((out.rgb - reference)[None], 8)
    assert pooled.abs().mean() < 8 / 255


@pytest.mark.parametrize("bit_depth, gray, alpha", [(8, False, True), (16, False, False), (8, True, False)])
def test_rgba_16_bit_and_gray_pngs_keep_their_kind(tmp_path, bit_depth, gray, alpha):
    generator = torch.Generator().manual_seed(0)
    rgb = torch.rand(1 if gray else 3, 12, 10, generator=generator).expand(3, -1, -1).contiguous()
    image = Image(rgb=rgb, alpha=torch.rand(1, 12, 10, generator=generator) if alpha else None,
                  bit_depth=bit_depth, gray=gray)
    source = tmp_path / "in.png"
    write_image(source, image)
    result = vsr("upscale", source, "-m", "bicubic", "--outscale", "2")
    assert result.returncode == 0, result.stderr
    out = read_image(tmp_path / "in.x2.png")
    assert out.rgb.shape == (3, 24, 20)
    assert (out.bit_depth, out.gray, out.alpha is not None) == (bit_depth, gray, alpha)
    if bit_depth == 16:
        levels = np.unique(np.round(out.rgb.numpy() * 65535) % 257)
        assert len(levels) > 1, "16-bit values collapsed onto 8-bit ones"


def test_unknown_model_is_one_line_listing_the_known_ones(tmp_path):
    result = vsr("upscale", SAMPLE, "-o", tmp_path / "out.png", "-m", "no-such-model")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("vsr: error: unknown model 'no-such-model'") and "realesrgan-x4plus" in line
    assert not (tmp_path / "out.png").exists()


def test_models_lists_the_zoo_with_cache_state():
    result = vsr("models")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.strip()}
    assert rows["realesrgan-x4plus"][1:4] == ["RRDBNet", "x4", "16,697,987"]
    assert rows["realesr-animevideov3-x2"][2] == "x2"
    assert rows["bicubic"][4] == "-"
    assert "default: realesrgan-x4plus" in result.stdout


@pytest.fixture
def general_v3_pair(tmp_path, monkeypatch):
    """Random stand-ins for realesr-general-x4v3 and its weak-denoising twin, in a cache of their own (the `vsr`
    command inherits VSR_HOME): the blend is what is tested, not the released weights."""
    from vsr.models.checkpoint import save_model
    from vsr.models.detect import build, spec_for
    from vsr.models.zoo import MODELS

    home = tmp_path / "home"
    monkeypatch.setenv("VSR_HOME", str(home))
    for seed, name in enumerate(("realesr-general-x4v3", "realesr-general-wdn-x4v3")):
        torch.manual_seed(seed)
        spec = spec_for("SRVGGNetCompact", MODELS[name].hyperparameters)
        save_model(build(spec), spec, home / "weights" / MODELS[name].filename)
    source = tmp_path / "crop.png"
    crop = read_image(SAMPLE)
    crop.rgb = crop.rgb[:, 40:64, 100:132].contiguous()
    write_image(source, crop)
    return source


def test_denoise_strength_blends_in_the_weak_denoising_twin_as_real_esrgan_does(general_v3_pair, tmp_path):
    source = general_v3_pair

    def upscaled(name, *options):
        result = vsr("upscale", source, "-o", tmp_path / name, "-m", "realesr-general-x4v3", *options)
        assert result.returncode == 0, result.stderr
        return read_image(tmp_path / name).rgb

    plain = upscaled("plain.png")
    # Real-ESRGAN's -dn d: weights d for realesr-general-x4v3 and 1 - d for realesr-general-wdn-x4v3.
    assert torch.equal(upscaled("dn03.png", "--denoise-strength", "0.3"),
                       upscaled("blend.png", "--blend", "realesr-general-wdn-x4v3", "--alpha", "0.7"))
    assert torch.equal(upscaled("dn1.png", "--denoise-strength", "1"), plain)
    assert not torch.equal(read_image(tmp_path / "dn03.png").rgb, plain)


def test_a_model_given_by_url_is_downloaded_once_and_reused_offline(tmp_path, monkeypatch):
    """`-m URL` over a real HTTP server on 127.0.0.1, then with the server gone (the cache alone answers)."""
    from vsr.models.checkpoint import save_model
    from vsr.models.detect import build, spec_for

    served = tmp_path / "served"
    spec = spec_for("RRDBNet", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2})
    save_model(build(spec), spec, served / "2x-Tiny.pth")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/2x-Tiny.pth"
    monkeypatch.setenv("VSR_HOME", str(tmp_path / "home"))
    source = tmp_path / "in.png"
    write_image(source, Image(rgb=torch.rand(3, 12, 10), alpha=None, bit_depth=8, gray=False))
    try:
        vsr("upscale", source, "-m", url, check=True)
    finally:
        server.shutdown()
        server.server_close()
    vsr("upscale", source, "-m", url, "-o", tmp_path / "offline.png", check=True)
    first, offline = read_image(tmp_path / "in.x2.png"), read_image(tmp_path / "offline.png")
    assert first.rgb.shape == (3, 24, 20) and torch.equal(first.rgb, offline.rgb)
    (cached,) = (tmp_path / "home" / "weights" / "url").glob("*/2x-Tiny.pth")
    assert f"{cached}  (0.1 MB) from {url}\n" in vsr("models", check=True).stdout
    assert vsr("models", "--download", url, check=True).stdout == f"{url}: {cached}\n"


@pytest.mark.parametrize("options, message", [
    (["-m", "bicubic", "--denoise-strength", "0.5"],
     "--denoise-strength works with -m realesr-general-x4v3 (it blends in realesr-general-wdn-x4v3), not with bicubic"),
    (["-m", "realesr-general-x4v3", "--denoise-strength", "1.5"],
     "--denoise-strength must be between 0 and 1, not 1.5"),
    (["-m", "realesr-general-x4v3", "--denoise-strength", "0.5", "--blend", "bicubic"],
     "--denoise-strength is a --blend of its own: give one or the other"),
])
def test_a_bad_denoise_strength_is_one_line(general_v3_pair, tmp_path, options, message):
    result = vsr("upscale", general_v3_pair, "-o", tmp_path / "out.png", *options)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"vsr: error: {message}"]
    assert not (tmp_path / "out.png").exists()


def test_an_animated_png_is_upscaled_as_a_video_and_an_animated_webp_is_one_line(tmp_path):
    from PIL import Image as PILImage

    animated_png = tmp_path / "spinner.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=32x24:r=10", "-frames:v", "3", "-f",
                    "apng", str(animated_png)], check=True)
    result = vsr("upscale", animated_png, "-m", "bicubic")
    assert result.returncode == 0, result.stderr
    assert "3 frames" in result.stdout and (tmp_path / "spinner.x4.mkv").exists()  # .png cannot hold H.264
    # 70 kB of XMP before the acTL chunk: FFmpeg's probe and vsr's first 64 kB took it for a still (one frame).
    data = animated_png.read_bytes()
    xmp = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + b" " * 70_000
    chunk = struct.pack(">I", len(xmp)) + b"iTXt" + xmp + struct.pack(">I", zlib.crc32(b"iTXt" + xmp))
    (tmp_path / "tagged.png").write_bytes(data[:33] + chunk + data[33:])  # after the signature and IHDR
    result = vsr("upscale", tmp_path / "tagged.png", "-m", "bicubic")
    assert result.returncode == 0 and "3 frames" in result.stdout, result.stderr

    frames = [PILImage.new("RGB", (16, 16), color) for color in ("red", "green", "blue")]
    for name, profile in (("spinner.webp", None), ("profiled.webp", bytes(100_000))):  # (ICCP comes before ANIM)
        animated_webp = tmp_path / name
        frames[0].save(animated_webp, save_all=True, append_images=frames[1:], duration=100, icc_profile=profile)
        result = vsr("upscale", animated_webp, "-m", "bicubic")
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"vsr: error: {animated_webp}: an animated image, which FFmpeg cannot decode; vsr reads still images, "
            "and videos (an animated PNG or GIF is upscaled as a video)"]


def test_strength_zero_is_the_source_scaled_with_lanczos(tmp_path):
    image = Image(rgb=0.2 + 0.6 * torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(0)))
    write_image(tmp_path / "in.png", image)
    vsr("upscale", tmp_path / "in.png", "-m", "bicubic", "--strength", "0", "-o", tmp_path / "none.png", check=True)
    vsr("upscale", tmp_path / "in.png", "-m", "lanczos", "-o", tmp_path / "lanczos.png", check=True)
    vsr("upscale", tmp_path / "in.png", "-m", "bicubic", "-o", tmp_path / "bicubic.png", check=True)
    none, lanczos, bicubic = (read_image(tmp_path / name).rgb for name in ("none.png", "lanczos.png", "bicubic.png"))
    assert torch.equal(none, lanczos) and not torch.equal(none, bicubic)
    result = vsr("upscale", tmp_path / "in.png", "-m", "bicubic", "--strength", "1.5", "-o", tmp_path / "x.png")
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        "vsr: error: --strength must be a number from 0 to 1, not 1.5"]


def test_an_image_too_big_for_its_format_is_one_line_before_the_model_runs(tmp_path):
    """WebP holds at most 16383 pixels a side, JPEG 65535: the encoder's refusal came after the model, as a
    traceback."""
    strip = tmp_path / "strip.png"
    write_image(strip, Image(rgb=torch.rand(3, 2, 300), alpha=None, bit_depth=8, gray=False))
    for size, output in (("16384", "wide.webp"), ("65536", "wide.jpg")):
        result = vsr("upscale", strip, "-m", "bicubic", "--width", size, "-o", tmp_path / output)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"{output}: {size}x" in result.stderr and "is too big for a" in result.stderr
    clip = tmp_path / "strip.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "color=gray:size=300x2:rate=5", "-frames:v", "2", "-c:v", "ffv1", clip)
    result = vsr("upscale", clip, "-m", "bicubic", "--width", "16384", "-o", tmp_path / "frames" / "%03d.webp")
    assert result.returncode == 2 and "16384x109 is too big for a .webp file" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["strip.mkv", "strip.png"]


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path):
    """`-o new/` in a folder that takes no new entry (here /proc) was an OSError traceback."""
    result = vsr("upscale", SAMPLE, "-m", "bicubic", "-o", "/proc/vsr-test-output/")
    assert result.returncode == 4 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[0].startswith(
        "vsr: error: /proc/vsr-test-output: cannot make the output folder (")


def test_a_gray_or_rgba_model_is_refused_when_loaded(tmp_path):
    """Such checkpoints load (their channels are detected), then failed on the first picture with "expected frames
    shaped N×1×H×W", a line that did not say the model was the matter."""
    from vsr.models.checkpoint import save_model
    from vsr.models.detect import spec_for
    from vsr.models.srvgg import SRVGGNetCompact

    hyperparameters = dict(num_in_ch=1, num_out_ch=1, num_feat=4, num_conv=1, upscale=2, act_type="prelu")
    pth, _ = save_model(SRVGGNetCompact(**hyperparameters), spec_for("SRVGGNetCompact", hyperparameters),
                        tmp_path / "gray")
    write_image(tmp_path / "in.png", Image(rgb=torch.rand(3, 8, 8)))
    result = vsr("upscale", tmp_path / "in.png", "-m", pth, "-o", tmp_path / "out.png")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [f"vsr: error: {pth}: a gray model (1 in, 1 out of the 3 channels "
                                                  "of RGB); vsr upscales RGB pictures, alpha through the same model"]


def test_video_options_given_for_an_image_are_named_in_one_warning(tmp_path):
    """They were ignored without a word (--pix-fmt gray gave an RGB picture), where --crop said so (helper-52)."""
    write_image(tmp_path / "photo.png", Image(rgb=torch.rand(3, 12, 16)))
    result = vsr("upscale", tmp_path / "photo.png", "-m", "bicubic", "--pix-fmt", "gray", "--codec", "libx265",
                 "--start", "1", "--dedup", "off", "--encoder-option", "tune=grain")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"vsr: WARNING: {tmp_path / 'photo.png'}: --start, --dedup, --codec, --encoder-option, --pix-fmt apply to "
        "videos; an image is upscaled whole, in its own format"]
    assert read_image(tmp_path / "photo.x4.png").rgb.shape == (3, 48, 64)
