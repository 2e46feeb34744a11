"""Image files through PyAV: exact PNG round trips, 16 bits kept, lossy formats readable, upscaling, errors."""

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
import torch

from vsr.errors import InputError, OptionError, OutputError
from vsr.models.resample import Resample
from vsr.models.spec import LoadedModel, ModelSpec
from vsr.pipelines.engine import Engine
from vsr.pipelines.images import Image, read_image, upscale_image, write_image

from tests.processes import run_vsr

SAMPLE_FRAME = Path(__file__).parents[2] / "samples" / "bbb_frame.png"


def on_grid(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Values a file of `bits` bits can hold exactly."""
    top = (1 << bits) - 1
    return (x * top).round() / top


def random_image(height=17, width=23, *, bits=8, alpha=False, gray=False, seed=0) -> Image:
    g = torch.Generator().manual_seed(seed)
    rgb = on_grid(torch.rand(1 if gray else 3, height, width, generator=g), bits)
    return Image(
        rgb=rgb.repeat(3, 1, 1) if gray else rgb,
        alpha=on_grid(torch.rand(1, height, width, generator=g), bits) if alpha else None,
        bit_depth=bits,
        gray=gray,
    )


def photo(size=64) -> Image:
    rgb = torch.from_numpy(skimage.data.astronaut()[100 : 100 + size, 200 : 200 + size]).permute(2, 0, 1).float() / 255
    return Image(rgb=rgb.contiguous())


def ffprobe_pix_fmt(path) -> str:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=pix_fmt", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize(
    "bits, alpha, gray, pix_fmt",
    [
        (8, False, False, "rgb24"),
        (8, True, False, "rgba"),
        (8, False, True, "gray"),
        (8, True, True, "ya8"),
        (16, False, False, "rgb48be"),
        (16, True, False, "rgba64be"),
        (16, False, True, "gray16be"),
    ],
)
def test_png_round_trip_is_exact(tmp_path, bits, alpha, gray, pix_fmt):
    image = random_image(bits=bits, alpha=alpha, gray=gray)
    path = tmp_path / "image.png"
    write_image(path, image)
    assert ffprobe_pix_fmt(path) == pix_fmt  # an independent reader agrees on what was written
    back = read_image(path)
    assert (back.bit_depth, back.gray, back.alpha is not None) == (bits, gray, alpha)
    assert back.rgb.shape == (3, 17, 23) and back.rgb.dtype == torch.float32
    assert torch.equal(back.rgb, image.rgb)
    if alpha:
        assert torch.equal(back.alpha, image.alpha)


def test_sixteen_bit_values_between_eight_bit_levels_survive(tmp_path):
    ramp = torch.linspace(0, 1, 4096).reshape(1, 64, 64).repeat(3, 1, 1)
    image = Image(rgb=on_grid(ramp, 16), bit_depth=16)
    write_image(tmp_path / "deep.png", image)
    back = read_image(tmp_path / "deep.png")
    assert back.bit_depth == 16
    assert torch.equal(back.rgb, image.rgb)
    assert len(torch.unique(back.rgb)) > 1000  # an 8-bit detour would leave at most 256 levels


def test_pngs_written_by_ffmpeg_read_correctly(tmp_path):
    """16-bit and palette PNGs from an independent writer."""
    original = photo(32)
    write_image(tmp_path / "rgb.png", original)

    def ffmpeg(source, target, pix_fmt):
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / source), "-pix_fmt", pix_fmt,
                        str(tmp_path / target)], check=True)

    ffmpeg("rgb.png", "48.png", "rgb48be")
    deep = read_image(tmp_path / "48.png")
    # swscale widens 8 to 16 bits by a shift (v·256, not v·257), so values agree to within one 8-bit level.
    assert deep.bit_depth == 16 and torch.allclose(deep.rgb, original.rgb, atol=1 / 255)
    ffmpeg("rgb.png", "palette.png", "pal8")
    ffmpeg("palette.png", "palette-as-rgb.png", "rgb24")
    palette = read_image(tmp_path / "palette.png")
    assert palette.alpha is None and palette.bit_depth == 8 and not palette.gray
    assert torch.equal(palette.rgb, read_image(tmp_path / "palette-as-rgb.png").rgb)


@pytest.mark.parametrize("suffix, options", [(".jpg", {"quality": 95, "subsampling": 2}), (".webp", {"quality": 90})])
@pytest.mark.parametrize("crop", [None, (0, 0, 161, 89)])
def test_lossy_photos_decode_as_their_reference_decoders_show_them(tmp_path, suffix, options, crop):
    """4:2:0 chroma interpolated as libjpeg and libwebp (through Pillow) do, not repeated pixel by pixel; odd sizes
    too (swscale scaled their chroma planes by ⌈W/2⌉ to W: 2.7 levels off on average, 93 at most)."""
    from PIL import Image as PillowImage

    path = tmp_path / f"photo{suffix}"
    PillowImage.open(SAMPLE_FRAME).convert("RGB").crop(crop).save(path, **options)
    ours = (read_image(path).rgb.permute(1, 2, 0).numpy() * 255).round().astype(int)
    reference = np.asarray(PillowImage.open(path).convert("RGB")).astype(int)
    assert np.abs(ours - reference).mean() < 0.5 and np.abs(ours - reference).max() <= 4  # (repeated: 1.5 and 40)


def test_an_odd_sized_lossy_webp_with_alpha_decodes_as_libwebp_shows_it(tmp_path):
    """yuva420p went through swscale, whose odd-sized chroma drifts (see the test above): the colors and the alpha."""
    from PIL import Image as PillowImage

    rgba = np.array(PillowImage.open(SAMPLE_FRAME).convert("RGBA").crop((0, 0, 161, 89)))
    rgba[:, :40, 3], rgba[:, 40:60, 3] = 0, 128
    PillowImage.fromarray(rgba).save(tmp_path / "sticker.webp", quality=90)  # lossy, with an alpha plane
    image = read_image(tmp_path / "sticker.webp")
    reference = np.asarray(PillowImage.open(tmp_path / "sticker.webp").convert("RGBA")).astype(int)
    ours = (image.rgb.permute(1, 2, 0).numpy() * 255).round().astype(int)
    shown = reference[..., 3] > 0  # (libwebp keeps no color under alpha 0)
    assert np.abs(ours - reference[..., :3])[shown].mean() < 0.5
    assert np.array_equal((image.alpha[0].numpy() * 255).round().astype(int), reference[..., 3])


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_cut_short_is_said_to_be_damaged(tmp_path, caplog, progressive):
    """FFmpeg decodes a JPEG cut in half without an error or a corrupt flag, making up its lower half (30 to 98
    levels off): upscaled silently before. An intact one is read without a word."""
    from PIL import Image as PillowImage

    path = tmp_path / "photo.jpg"
    PillowImage.open(SAMPLE_FRAME).convert("RGB").save(path, quality=95, progressive=progressive)
    read_image(path)
    assert caplog.text == ""
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    read_image(cut)
    assert f"{cut}: damaged or cut short; FFmpeg fills in what is missing (" in caplog.text


def test_a_cmyk_jpeg_reads_as_rgb_without_alpha(tmp_path, caplog):
    from PIL import Image as PilImage

    rgb = (photo(32).rgb.permute(1, 2, 0) * 255).round().byte().numpy()
    PilImage.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    image = read_image(tmp_path / "cmyk.jpg")
    assert image.alpha is None and not image.gray
    pillow = np.asarray(PilImage.open(tmp_path / "cmyk.jpg").convert("RGB"), np.float32) / 255
    assert np.abs(image.rgb.permute(1, 2, 0).numpy() - pillow).max() <= 2 / 255  # Pillow: an independent reader
    write_image(tmp_path / "out.jpg", image)
    assert "transparency" not in caplog.text


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_formats_are_readable_after_writing(tmp_path, suffix):
    image = photo()
    path = tmp_path / f"photo{suffix}"
    write_image(path, image, quality=95)
    back = read_image(path)
    assert back.rgb.shape == image.rgb.shape and back.bit_depth == 8 and back.alpha is None
    psnr = -10 * torch.log10(((back.rgb - image.rgb) ** 2).mean())
    assert psnr > 33
    small = tmp_path / f"small{suffix}"
    write_image(small, image, quality=30)
    assert small.stat().st_size < path.stat().st_size  # quality reaches the encoder


def test_webp_keeps_alpha_and_jpeg_flattens_it_onto_white(tmp_path, caplog):
    image = photo(32)
    image.alpha = torch.zeros(1, 32, 32)
    image.alpha[..., 16:] = 1.0
    write_image(tmp_path / "a.webp", image)
    webp = read_image(tmp_path / "a.webp")
    assert webp.alpha is not None and torch.equal(webp.alpha, image.alpha)  # libwebp's alpha is lossless
    write_image(tmp_path / "a.jpg", image)
    jpeg = read_image(tmp_path / "a.jpg")
    assert jpeg.alpha is None and "white" in caplog.text
    assert jpeg.rgb[:, :, :12].min() > 0.95  # the transparent half became white
    assert (jpeg.rgb[:, :, 20:] - image.rgb[:, :, 20:]).abs().mean() < 0.03


def engine_x2() -> Engine:
    return Engine(LoadedModel(Resample(2), ModelSpec("Resample", 2, supports_bfloat16=False)), device="cpu")


def test_upscaling_rgba_upscales_alpha_too():
    image = photo(16)
    image.alpha = torch.zeros(1, 16, 16)
    image.alpha[..., 8:] = 1.0
    out = upscale_image(engine_x2(), image)
    assert out.rgb.shape == (3, 32, 32) and out.alpha.shape == (1, 32, 32)
    assert out.alpha[..., :12].max() < 0.05 and out.alpha[..., 20:].min() > 0.95
    assert (out.bit_depth, out.gray) == (8, False)


def test_upscaling_gray_sixteen_bit_stays_gray_and_deep(tmp_path):
    image = random_image(16, 16, bits=16, gray=True)
    out = upscale_image(engine_x2(), image)
    assert out.gray and out.bit_depth == 16
    assert torch.equal(out.rgb[0], out.rgb[1]) and torch.equal(out.rgb[1], out.rgb[2])
    write_image(tmp_path / "up.png", out)
    assert ffprobe_pix_fmt(tmp_path / "up.png") == "gray16be"
    back = read_image(tmp_path / "up.png")
    off_8bit_grid = (back.rgb * 65535).round() % 257 != 0
    assert off_8bit_grid.float().mean() > 0.9


def test_reading_errors_name_the_path(tmp_path):
    with pytest.raises(InputError, match="missing.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        read_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n" * 20)
    with pytest.raises(InputError, match="notes.png: not"):
        read_image(text)


def test_an_image_too_big_for_the_memory_left_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    """Held whole as floats, a 16000-pixel PNG of 250 kB upscaled ×4 would take 74 GB: torch's allocator failed with
    a traceback. Here a machine with 100 MB left: 4096×3072 (227 MB as floats and integers) is refused, 1024×768 not."""
    from vsr import api

    source = tmp_path / "small.png"
    write_image(source, random_image(48, 64))
    monkeypatch.setattr("vsr.hardware.available_memory", lambda: 100_000_000)
    with pytest.raises(InputError, match=r"small.png: a 64x48 image upscaled to 4096x3072 needs about 0.3 GB of "
                                         r"memory, more than the 0.1 GB available here; use a smaller --outscale"):
        api.upscale_image(source, tmp_path / "big.png", options=api.UpscaleOptions(model="bicubic", width=4096))
    api.upscale_image(source, tmp_path / "fits.png", options=api.UpscaleOptions(model="bicubic", width=1024))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fits.png", "small.png"]
    monkeypatch.setattr("vsr.hardware.available_memory", lambda: 10_000)  # too little to read it at all
    with pytest.raises(InputError, match=r"small.png: a 64x48 image needs about 0.1 MB of memory"):
        read_image(source)
    # The model's ×4 output comes before a smaller size asked for: 0.6 MB of floats where the output takes 37 kB
    monkeypatch.setattr("vsr.hardware.available_memory", lambda: 500_000)
    with pytest.raises(InputError, match=r"small.png: a 64x48 image upscaled to 64x48 \(by the model to 256x192 "
                                         r"first\) needs about 0.7 MB of memory, more than the 0.5 MB available here; "
                                         r"use a smaller --outscale, --width or --height, or a model of a smaller "
                                         r"scale$"):
        api.upscale_image(source, tmp_path / "same.png", options=api.UpscaleOptions(model="bicubic", outscale=1))
    # Alpha goes through the model as a second picture, and the planes are put together after it: a 2000×2000 RGBA
    # PNG ×4 peaked at 3.2 GB, where 1.9 was predicted (as for 4 planes of floats)
    transparent = tmp_path / "transparent.png"
    write_image(transparent, random_image(48, 64, alpha=True))
    monkeypatch.setattr("vsr.hardware.available_memory", lambda: 2_000_000)
    api.upscale_image(source, tmp_path / "opaque.x4.png", options=api.UpscaleOptions(model="bicubic"))
    with pytest.raises(InputError, match=r"transparent.png: a 64x48 image upscaled to 256x192 needs about 2.6 MB"):
        api.upscale_image(transparent, tmp_path / "transparent.x4.png", options=api.UpscaleOptions(model="bicubic"))


def test_what_an_image_would_be_made_is_refused_before_it_is_decoded(tmp_path):
    """A PNG of 69 bytes whose header says 16000×16000 (its pixels cut off): refused for what ×4 would make of it,
    not after decoding (a whole 16000×16000 PNG took 19 s and 7 GB to be refused)."""
    import struct
    import zlib

    from vsr import api

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 16000, 16000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(100)))
                     + chunk(b"IEND", b""))
    with pytest.raises(OptionError, match="out.png: 64000x64000 is more pixels than FFmpeg holds in one picture"):
        api.upscale_image(bomb, tmp_path / "out.png", options=api.UpscaleOptions(model="bicubic"))


def test_a_picture_over_ffmpegs_size_limit_is_one_line_before_the_model_runs(tmp_path, monkeypatch):
    """FFmpeg holds no picture where 8 · (w + 128) · (h + 128) ≥ INT_MAX, whatever its format: an 8K PNG ×4
    (30720×17280) failed in PyAV after the model had run, a traceback after 48 s and 19 GB; an 8K video into a PNG
    sequence was killed by the OOM killer."""
    from vsr import api
    from vsr.pipelines.images import ffmpeg_holds

    assert ffmpeg_holds(2080767, 1) and ffmpeg_holds(16384, 16128) and ffmpeg_holds(16000, 16000)
    assert not ffmpeg_holds(2080768, 1) and not ffmpeg_holds(16384, 16129) and not ffmpeg_holds(30720, 17280)
    av.VideoFrame(2080767, 1, "gray")  # the bound is FFmpeg's own (2 MB frames)
    with pytest.raises(av.FFmpegError):
        av.VideoFrame(2080768, 1, "gray")
    source = tmp_path / "small.png"
    write_image(source, random_image(2, 2))
    monkeypatch.setattr("vsr.hardware.available_memory", lambda: 1_000_000_000)  # (said before the memory)
    options = api.UpscaleOptions(model="bicubic", width=16384, height=16384)
    with pytest.raises(OptionError, match=r"big.png: 16384x16384 is more pixels than FFmpeg holds in one picture"):
        api.upscale_image(source, tmp_path / "big.png", options=options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.png"]


def _peak_growth(script: str) -> list[float]:
    """Run `script` in a fresh Python, where `peak()` reads the process's peak resident memory in bytes; the numbers
    it prints (peak growths), as floats."""
    prelude = "import resource\ndef peak():\n    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    result = subprocess.run([sys.executable, "-c", prelude + script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return [float(value) for value in result.stdout.split()]


def test_upscaling_and_writing_a_large_image_holds_few_copies_of_it():
    """A 1000×1000 image ×4 with bicubic: 192 MB as floats. The engine's output buffer beside the model's output, the
    resize's concatenated bands, and the whole picture's float copies while it was quantized held 3.1 (upscaling) and
    2.0 (writing a PNG) times that at once; an 8K image ×4 peaked at 19.3 GB."""
    upscaling, writing = _peak_growth("""
import torch
from vsr.pipelines import images
from vsr.pipelines.upscale import UpscaleOptions, make_image_engine
engine = make_image_engine(UpscaleOptions(model="bicubic"))
images.image_file(images.upscale_image(engine, images.Image(rgb=torch.rand(3, 8, 8))), ".png")  # (warmed up)
source, output = images.Image(rgb=torch.rand(3, 1000, 1000)), images.Image(rgb=torch.rand(3, 4000, 4000))
base = peak()
images.upscale_image(engine, source)
print((peak() - base) / output.rgb.nbytes)
base = peak()
images.image_file(output, ".png")
print((peak() - base) / output.rgb.nbytes)
""")
    # Measured: 1.2 and 1.3 (the output as floats; integers, frame and file, a quarter of that each, random pixels)
    assert upscaling < 1.6 and writing < 1.6, (upscaling, writing)


def test_a_video_is_not_an_image(tmp_path):
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InputError, match="clip.mp4: not an image"):
        read_image(path)


def test_writing_errors_leave_nothing_behind(tmp_path):
    image = random_image()
    with pytest.raises(OptionError, match=r"out.gif: unsupported image type '.gif'"):
        write_image(tmp_path / "out.gif", image)
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "no" / "such" / "out.png", image)
    (tmp_path / "taken.png").mkdir()
    (tmp_path / "taken.png" / "inside").write_text("keeps the directory non-empty")
    with pytest.raises(OutputError, match="taken.png: cannot write"):
        write_image(tmp_path / "taken.png", image)
    with pytest.raises(OptionError, match="quality"):
        write_image(tmp_path / "q.jpg", image, quality=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]  # no temporary files, no partial outputs


def test_overwriting_replaces_the_file_with_normal_permissions(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old content")
    write_image(path, random_image())
    assert read_image(path).rgb.shape == (3, 17, 23)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def _photo_with_orientation(path, orientation, size=(48, 32)):
    """A picture with a white block in its stored top-left corner, saved with an EXIF Orientation by Pillow."""
    from PIL import Image as PILImage

    stored = np.zeros((size[1], size[0], 3), np.uint8)
    stored[:8, :12] = 255
    stored[-6:, -10:, 1] = 200
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    options = {"quality": 95} if path.suffix == ".jpg" else {"lossless": True} if path.suffix == ".webp" else {}
    PILImage.fromarray(stored).save(path, exif=exif.tobytes(), **options)
    return path


@pytest.mark.parametrize("suffix", [".png", ".webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_orientation_is_applied_as_image_viewers_do(tmp_path, orientation, suffix):
    from PIL import Image as PILImage, ImageOps

    path = _photo_with_orientation(tmp_path / f"photo{suffix}", orientation)
    shown = np.asarray(ImageOps.exif_transpose(PILImage.open(path)).convert("RGB"))  # Pillow, as viewers show it
    read = read_image(path).rgb
    assert torch.equal(read, torch.from_numpy(shown.astype(np.float32) / 255).permute(2, 0, 1))


def test_a_sideways_phone_jpeg_is_upscaled_upright(tmp_path):
    path = _photo_with_orientation(tmp_path / "phone.jpg", 6)  # stored turned left, shown turned right
    output = tmp_path / "phone.x2.png"
    run_vsr("upscale", path, "-m", "bicubic", "-s", "2", "-o", output, check=True)
    upscaled = read_image(output).rgb
    assert upscaled.shape == (3, 96, 64)  # 48×32 stored, 32×48 shown
    assert upscaled[:, :20, -14:].mean() > 0.9 and upscaled[:, :20, :20].mean() < 0.1  # the block now top right


@pytest.mark.parametrize("suffix", [".tiff", ".bmp"])
def test_tiff_and_bmp_are_read_as_images_and_written_as_png(tmp_path, suffix):
    image = random_image(bits=8)
    write_image(tmp_path / "reference.png", image)
    source = tmp_path / f"scan{suffix}"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "reference.png"), str(source)], check=True)
    assert torch.equal(read_image(source).rgb, image.rgb)
    run_vsr("upscale", source, "-m", "bicubic", check=True)
    assert read_image(tmp_path / "scan.x4.png").rgb.shape == (3, 68, 92)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_tiffs_own_orientation_and_profile_are_taken_as_a_jpegs_exif_ones(tmp_path, orientation):
    """TIFF keeps Orientation and its ICC profile as tags of its own first directory, not in an EXIF block."""
    from PIL import Image as PILImage, ImageOps, TiffImagePlugin

    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:8, :12] = 255
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0112] = orientation
    path = tmp_path / "scan.tiff"
    PILImage.fromarray(stored).save(path, tiffinfo=tags, icc_profile=_profile(600))
    shown = np.asarray(ImageOps.exif_transpose(PILImage.open(path)).convert("RGB"))  # as viewers show it
    image = read_image(path)
    assert torch.equal(image.rgb, torch.from_numpy(shown.astype(np.float32) / 255).permute(2, 0, 1))
    assert image.icc_profile == _profile(600)


def test_an_image_type_vsr_cannot_write_is_refused_before_the_model_runs(tmp_path):
    write_image(tmp_path / "photo.png", random_image())
    result = run_vsr("upscale", tmp_path / "photo.png", "-o", tmp_path / "photo.tiff", "-m", "no-such-model")
    assert result.returncode == 2  # an unknown model would be exit 3: the output type is checked first
    assert result.stderr.strip().splitlines() == [
        f"vsr: error: {tmp_path / 'photo.tiff'}: unsupported image type '.tiff'; expected one of .png, .jpg, .jpeg, "
        ".webp"]


def _profile(size: int) -> bytes:
    """Bytes standing in for an ICC profile: carried as they are, so any bytes show whether they arrive."""
    return bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))


@pytest.mark.parametrize("source_suffix", [".png", ".jpg", ".webp"])
@pytest.mark.parametrize("output_suffix", [".png", ".jpg", ".webp"])
@pytest.mark.parametrize("alpha", [False, True])
def test_an_icc_profile_is_carried_into_every_output_type(tmp_path, source_suffix, output_suffix, alpha):
    from PIL import Image as PILImage

    profile = _profile(3000)
    pixels = (np.random.default_rng(0).random((12, 20, 4 if alpha else 3)) * 255).astype(np.uint8)
    source = tmp_path / f"wide-gamut{source_suffix}"
    picture = PILImage.fromarray(pixels)
    (picture.convert("RGB") if source_suffix == ".jpg" else picture).save(source, icc_profile=profile)
    image = read_image(source)
    assert image.icc_profile == profile
    output = tmp_path / f"out{output_suffix}"
    write_image(output, image)
    with PILImage.open(output) as written:  # Pillow, independent of vsr's reader, sees the profile and the pixels
        assert written.info.get("icc_profile") == profile
        written.load()
        assert written.size == (20, 12)
    assert read_image(output).rgb.shape == (3, 12, 20)


def test_a_profile_larger_than_one_jpeg_segment_is_split_and_joined(tmp_path):
    profile = _profile(150_000)  # three APP2 segments of at most 65519 bytes
    image = random_image()
    image.icc_profile = profile
    write_image(tmp_path / "big.jpg", image)
    from PIL import Image as PILImage

    with PILImage.open(tmp_path / "big.jpg") as written:
        assert written.info.get("icc_profile") == profile
    assert read_image(tmp_path / "big.jpg").icc_profile == profile


@pytest.mark.parametrize("source_suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("output_suffix", [".jpg", ".png", ".webp"])
def test_exif_is_carried_upright_and_with_the_new_size(tmp_path, source_suffix, output_suffix):
    from PIL import Image as PILImage

    from vsr import api

    exif = PILImage.Exif()
    exif[0x0112] = 6  # Orientation: stored turned left
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "EOS R5", "2026:11:27 10:00:00"  # Make, Model, DateTime
    camera = exif.get_ifd(0x8769)
    camera[0x829A], camera[0xA002], camera[0xA003] = (1, 250), 20, 12  # ExposureTime, PixelX/YDimension
    source = tmp_path / f"photo{source_suffix}"
    PILImage.new("RGB", (20, 12), (200, 40, 40)).save(source, exif=exif, icc_profile=_profile(500))
    output = api.upscale_image(source, tmp_path / f"photo.x4{output_suffix}",
                               options=api.UpscaleOptions(model="bicubic"))
    with PILImage.open(output) as written:  # Pillow, independent of vsr's reader
        assert written.size == (48, 80) and written.info.get("icc_profile") == _profile(500)
        kept = written.getexif()
        assert (kept[0x010F], kept[0x0110], kept[0x0132]) == ("Canon", "EOS R5", "2026:11:27 10:00:00")
        assert kept[0x0112] == 1  # the pixels are upright now: a viewer must not turn them again
        camera = kept.get_ifd(0x8769)
        assert camera[0x829A] == (1, 250) and (camera[0xA002], camera[0xA003]) == (48, 80)


@pytest.mark.parametrize("orientation", [6, 1])
def test_the_thumbnail_of_a_turned_photo_goes_with_its_orientation(orientation):
    import struct

    from vsr.pipelines.image_metadata import exif_for_output

    # A TIFF header, the first directory at 8 (Orientation; the next directory at 26), the thumbnail's at 26.
    first = struct.pack("<H", 1) + struct.pack("<HHIH2x", 0x0112, 3, 1, orientation) + struct.pack("<I", 26)
    thumbnail = struct.pack("<H", 1) + struct.pack("<HHII", 0x0100, 4, 1, 160) + struct.pack("<I", 0)
    block = exif_for_output(b"II*\x00" + struct.pack("<I", 8) + first + thumbnail, 64, 48)
    assert struct.unpack_from("<H", block, 18) == (1,)  # Orientation 1
    assert struct.unpack_from("<I", block, 22) == (0 if orientation != 1 else 26,)  # no thumbnail, stored turned


def test_a_cut_exif_block_is_left_out():
    import struct

    from vsr.pipelines.image_metadata import exif_for_output

    # The first directory says it has 3 entries and its next-directory offset is past the end.
    first = struct.pack("<H", 3) + struct.pack("<HHIH2x", 0x0112, 3, 1, 6)
    assert exif_for_output(b"II*\x00" + struct.pack("<I", 8) + first, 64, 48) is None


def test_png_and_jpeg_outputs_say_their_pixels_are_square(tmp_path):
    """FFmpeg's encoders write the pixel aspect they are given: PNG's pHYs said 0:1 (unknown) to every reader."""
    from PIL import Image as PILImage

    for suffix in (".png", ".jpg"):
        write_image(tmp_path / f"out{suffix}", random_image())
        info = PILImage.open(tmp_path / f"out{suffix}").info
        assert info.get("aspect", info.get("jfif_density")) == (1, 1)


def test_a_lossless_webp_has_alpha_only_where_a_pixel_is_transparent(tmp_path):
    """FFmpeg decodes every lossless WebP with an alpha plane: an opaque one became an RGBA output."""
    from PIL import Image as PILImage

    pixels = np.random.default_rng(1).integers(0, 256, (30, 40, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    PILImage.fromarray(pixels[..., :3]).save(tmp_path / "opaque.webp", lossless=True)
    pixels[:5, :5, 3] = 0
    PILImage.fromarray(pixels).save(tmp_path / "cut.webp", lossless=True)
    assert read_image(tmp_path / "opaque.webp").alpha is None
    assert read_image(tmp_path / "cut.webp").alpha[0, :5, :5].max() == 0


def test_a_tiff_of_several_pages_says_only_its_first_is_upscaled(tmp_path, caplog):
    from PIL import Image as PILImage

    red, blue = PILImage.new("RGB", (40, 30), "red"), PILImage.new("RGB", (40, 30), "blue")
    red.save(tmp_path / "pages.tiff", save_all=True, append_images=[blue, blue])
    red.save(tmp_path / "page.tiff")
    assert read_image(tmp_path / "pages.tiff").rgb[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert "pages.tiff: a TIFF of 3 pages; only the first is upscaled" in caplog.text
    caplog.clear()
    read_image(tmp_path / "page.tiff")
    assert "pages" not in caplog.text


def test_an_output_written_by_another_run_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    """The name was checked before the model ran, and the rename replaced what had appeared since: two runs to one
    output both said "wrote" (helper-53)."""
    from vsr import api
    from vsr.pipelines import images

    source, output = tmp_path / "photo.png", tmp_path / "photo.x2.png"
    write_image(source, Image(rgb=torch.rand(3, 8, 8)))
    real_upscale = images.upscale_image

    def another_run_writes_first(engine, image):
        output.write_bytes(b"the other run's picture")
        return real_upscale(engine, image)

    monkeypatch.setattr(images, "upscale_image", another_run_writes_first)
    with pytest.raises(OutputError, match="photo.x2.png: already exists, written while this run worked"):
        api.upscale_image(source, output, options=api.UpscaleOptions(model="bicubic", outscale=2))
    assert output.read_bytes() == b"the other run's picture"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photo.png", "photo.x2.png"]
    api.upscale_image(source, output, options=api.UpscaleOptions(model="bicubic", outscale=2), overwrite=True)
    assert read_image(output).rgb.shape == (3, 16, 16)


def test_an_image_is_written_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    """FAT and exFAT (USB sticks, SD cards) refuse os.link: every image failed after the model ran (helper-59)."""
    from vsr import api

    def no_hard_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    source = tmp_path / "photo.png"
    write_image(source, Image(rgb=torch.rand(3, 8, 8)))
    output = api.upscale_image(source, options=api.UpscaleOptions(model="bicubic", outscale=2))
    assert read_image(output).rgb.shape == (3, 16, 16)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photo.png", "photo.x2.png"]


def test_an_image_named_with_a_percent_d_is_the_file_named(tmp_path):
    """FFmpeg's image2 took "50%d.png" for a pattern and read 501.png beside it (helper-71)."""
    named, beside = random_image(seed=1), random_image(seed=2)
    write_image(tmp_path / "50%d.png", named)
    write_image(tmp_path / "501.png", beside)
    assert torch.equal(read_image(tmp_path / "50%d.png").rgb, named.rgb)


def test_a_tiff_whose_tags_come_after_4_mb_of_pixels_is_turned_and_its_pages_counted(tmp_path, caplog):
    """libtiff writes the tags after the strips, and only the first 4 MB were read for them: a scan's Orientation
    and a second page went unseen (helper-71)."""
    import PIL.Image

    noise = np.random.default_rng(0).integers(0, 256, (1000, 1500, 3), np.uint8)
    pages = [PIL.Image.fromarray(noise), PIL.Image.fromarray(noise[:8, :8])]
    path = tmp_path / "scan.tif"
    pages[0].save(path, compression="tiff_deflate", tiffinfo={274: 6}, save_all=True, append_images=pages[1:])
    with open(path, "rb") as file:
        assert int.from_bytes(file.read(8)[4:], "little") > 4 << 20  # (the first page's tags: past 4 MB)
    image = read_image(path)
    assert tuple(image.rgb.shape) == (3, 1500, 1000)  # turned right, as viewers show Orientation 6
    assert "a TIFF of 2 pages; only the first is upscaled" in caplog.text


def test_a_jpeg_profile_missing_a_segment_is_no_profile():
    """Its segments were joined whatever was missing: a cut profile, written into the output (helper-71)."""
    from vsr.pipelines.image_metadata import JPEG_ICC, icc_profile, with_icc_profile

    profile = bytes(range(256)) * 600  # 150 kB: three APP2 segments
    jpeg = with_icc_profile(b"\xff\xd8\xff\xd9", profile)
    assert icc_profile(jpeg) == profile
    segments = [i for i in range(len(jpeg)) if jpeg.startswith(b"\xff\xe2", i) and jpeg.startswith(JPEG_ICC, i + 4)]
    second, third = segments[1:]
    assert icc_profile(jpeg[:second] + jpeg[third:]) is None
