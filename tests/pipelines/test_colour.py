"""rgb_to_yuv against swscale (what the encoder's CPU path uses), against the formulas, and CUDA against the CPU."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vsr.pipelines.colour import MATRICES, SWSCALE_RGB16_WHITE, rgb_to_yuv

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# The matrices the encoder converts with: FFmpeg's tag names → swscale's names.
SWSCALE_MATRICES = {"bt709": "itu709", "bt470bg": "itu601", "smpte170m": "smpte170m", "smpte240m": "smpte240m",
                    "fcc": "fcc", "bt2020nc": "bt2020"}
# pix_fmt → (bit depth, chroma subsampling)
FORMATS = {"yuv420p": (8, "420"), "yuv422p": (8, "422"), "yuv444p": (8, "444"), "yuv420p10le": (10, "420"),
           "yuv444p10le": (10, "444")}


def swscale(rgb: np.ndarray, pix_fmt: str, matrix: str, full_range: bool) -> list[np.ndarray]:
    """H×W×3 RGB (uint8, or uint16 as rgb48le) converted by swscale with the flags the encoder uses (PyAV's
    default, SWS_BILINEAR), as int planes."""
    import av  # here, not at the top: the CUDA test below needs only torch, and GPU machines may lack PyAV

    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24" if rgb.dtype == np.uint8 else "rgb48le")
    converted = frame.reformat(format=pix_fmt, dst_colorspace=SWSCALE_MATRICES[matrix],
                               dst_color_range="JPEG" if full_range else "MPEG")
    dtype = np.uint8 if FORMATS[pix_fmt][0] == 8 else np.uint16
    return [np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width].astype(int)
            for plane in converted.planes]


def ours(rgb: np.ndarray, pix_fmt: str, matrix: str, full_range: bool, **options) -> list[np.ndarray]:
    frames = torch.from_numpy(rgb.astype(np.int32) if rgb.dtype == np.uint16 else rgb).permute(2, 0, 1)[None]
    if rgb.dtype == np.uint16:
        frames = frames.to(torch.uint16)
    bit_depth, chroma = FORMATS[pix_fmt]
    return [plane[0].numpy().astype(int) for plane in rgb_to_yuv(frames, matrix, full_range, bit_depth, chroma,
                                                                     **options)]


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """Random 8-bit RGB (every level, sharp edges) and a natural photo (scikit-image's astronaut, public domain)."""
    data = pytest.importorskip("skimage.data")
    random = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return {"random": random, "astronaut": data.astronaut()}


@pytest.mark.parametrize("full_range", [False, True], ids=["tv", "pc"])
@pytest.mark.parametrize("matrix", SWSCALE_MATRICES)
@pytest.mark.parametrize("pix_fmt", FORMATS)
def test_8bit_rgb_is_within_one_level_of_swscale(images, pix_fmt, matrix, full_range):
    """Measured: at most 1 level on every plane. 0.7-3% of limited-range Y samples and up to 7% of 4:2:0 chroma
    differ (swscale's 15-bit coefficients and its vertical filter's rounding); in full range about half of the
    chroma samples, swscale's chroma sitting half a level low (pipelines/colour.py)."""
    for name, rgb in images.items():
        for plane, theirs, mine in zip("YUV", swscale(rgb, pix_fmt, matrix, full_range),
                                       ours(rgb, pix_fmt, matrix, full_range)):
            assert mine.shape == theirs.shape
            assert np.abs(mine - theirs).max() <= 1, f"{name}, plane {plane}"
            assert np.mean(mine == theirs) > 0.3, f"{name}, plane {plane}"  # the same values, not just close


@pytest.mark.parametrize("full_range", [False, True], ids=["tv", "pc"])
@pytest.mark.parametrize("matrix", ["bt709", "bt2020nc"])
@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv444p10le"])
@pytest.mark.parametrize("as_float", [False, True], ids=["uint16", "float"])
def test_16bit_rgb_in_swscale_scale_is_within_one_level_of_swscale(images, pix_fmt, matrix, full_range, as_float):
    """What the encoder does with deep frames: rgb16_white=SWSCALE_RGB16_WHITE matches swscale's rgb48le input."""
    for name, rgb8 in images.items():
        rgb = rgb8.astype(np.uint16) * 257 + np.random.default_rng(1).integers(0, 257, rgb8.shape, dtype=np.uint16)
        frames = torch.from_numpy(rgb.astype(np.int32)).permute(2, 0, 1)[None]
        frames = frames / 65535 if as_float else frames.to(torch.uint16)
        bit_depth, chroma = FORMATS[pix_fmt]
        planes = rgb_to_yuv(frames, matrix, full_range, bit_depth, chroma, rgb16_white=SWSCALE_RGB16_WHITE)
        for plane, theirs, mine in zip("YUV", swscale(rgb, pix_fmt, matrix, full_range), planes):
            assert np.abs(mine[0].numpy().astype(int) - theirs).max() <= 1, f"{name}, plane {plane}"


def test_swscale_scales_16bit_rgb_as_255_times_256():
    """Why `rgb16_white` exists: swscale's 10-bit white from 16-bit RGB white is 943, not 940; rgb_to_yuv gives
    940 by default and 943 in swscale's scale."""
    white = np.full((2, 2, 3), 65535, np.uint16)
    assert swscale(white, "yuv444p10le", "bt709", False)[0][0, 0] == 943
    assert ours(white, "yuv444p10le", "bt709", False)[0][0, 0] == 940
    assert ours(white, "yuv444p10le", "bt709", False, rgb16_white=SWSCALE_RGB16_WHITE)[0][0, 0] == 943


@pytest.mark.parametrize("row", [0, 1, 3, 7])
def test_chroma_is_sited_and_filtered_as_swscale_does(row):
    """A red row (and a red column) on grey: each 4:2:0 chroma sample is centred, the mean of 2 columns and
    [1, 3, 3, 1]/8 of rows 2k−1 … 2k+2 with the edges repeated, as swscale: the same samples move, by the same
    amounts within a level (swscale's filter rounds less accurately)."""
    grey = np.full((8, 8, 3), 128, np.uint8)
    grey_planes = ours(grey, "yuv420p", "bt709", False)
    red_row, red_column = grey.copy(), grey.copy()
    red_row[row, :, 0] = 255
    red_column[:, row, 0] = 255
    for rgb in (red_row, red_column):
        planes = zip(swscale(rgb, "yuv420p", "bt709", False), ours(rgb, "yuv420p", "bt709", False), grey_planes)
        for theirs, mine, background in planes:
            np.testing.assert_array_equal(mine != background, theirs != background)
            assert np.abs(mine - theirs).max() <= 1
    # The taps themselves: row 3 sits in chroma row 1 (weight 3/8) and chroma row 2 (weight 1/8).
    v = ours(red_row, "yuv420p", "bt709", False)[2][:, 0] - 128
    if row == 3:
        assert v.tolist() == [0, 21, 7, 0]  # 56 for a whole red chroma sample: 21 ≈ 56·3/8, 7 = 56/8


@pytest.mark.parametrize("rgb, matrix, full_range, bit_depth, expected", [
    ((255, 255, 255), "bt709", False, 10, (940, 512, 512)),
    ((0, 0, 0), "bt709", False, 10, (64, 512, 512)),
    ((255, 255, 255), "bt709", True, 10, (1023, 512, 512)),
    ((255, 0, 0), "bt709", False, 8, (63, 102, 240)),
    ((255, 0, 0), "bt470bg", False, 8, (81, 90, 240)),  # the classic BT.601 red
    ((0, 0, 255), "bt709", True, 8, (18, 255, 116)),  # Cb 255.5, clipped
    ((128, 128, 128), "bt2020nc", False, 12, (2015, 2048, 2048)),  # (16 + 219·128/255)·16 = 2014.87
    ((128, 128, 128), "smpte240m", True, 10, (514, 512, 512)),  # 1023·128/255 = 513.51
])
def test_known_values(rgb, matrix, full_range, bit_depth, expected):
    frames = torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    planes = rgb_to_yuv(frames, matrix, full_range, bit_depth, "420")
    assert tuple(int(plane[0, 0, 0]) for plane in planes) == expected


def reference(rgb: np.ndarray, white: float, matrix: str, full_range: bool, bit_depth: int, chroma: str):
    """The formulas of pipelines/colour.py in float64 numpy, unrounded: Y, Cb, Cr in output levels."""
    kr, kb = MATRICES[matrix]
    r, g, b = np.moveaxis(rgb.astype(np.float64) / white, -1, 0)
    luma = kr * r + (1 - kr - kb) * g + kb * b
    if chroma != "444":  # the mean of column pairs
        r, g, b = ((c[:, 0::2] + c[:, 1::2]) / 2 for c in (r, g, b))
    if chroma == "420":  # [1, 3, 3, 1]/8 over rows 2k−1 … 2k+2, edges repeated
        r, g, b = ((p[0:-2:2] + 3 * p[1:-1:2] + 3 * p[2::2] + p[3::2]) / 8
                   for p in (np.pad(c, ((1, 1), (0, 0)), mode="edge") for c in (r, g, b)))
    chroma_luma = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - chroma_luma) / (2 * (1 - kb)), (r - chroma_luma) / (2 * (1 - kr))
    if full_range:
        top = 2**bit_depth - 1
        return luma * top, cb * top + 2 ** (bit_depth - 1), cr * top + 2 ** (bit_depth - 1)
    unit = 2 ** (bit_depth - 8)
    return (16 + 219 * luma) * unit, (128 + 224 * cb) * unit, (128 + 224 * cr) * unit


@pytest.mark.parametrize("chroma", ["420", "422", "444"])
@pytest.mark.parametrize("full_range", [False, True], ids=["tv", "pc"])
@pytest.mark.parametrize("bit_depth", [8, 10, 12])
@pytest.mark.parametrize("depth_in", [8, 16])
def test_planes_are_the_formulas_rounded_half_up(images, chroma, full_range, bit_depth, depth_in):
    """Exact against float64: equal wherever the exact value is not within 1e-6 of a rounding boundary."""
    for (name, rgb8), matrix in itertools.product(images.items(), ["bt709", "smpte240m"]):
        # 16-bit: every 8-bit level times 257, moved off the exact multiples so the low bits matter.
        rgb = (rgb8.astype(np.int32) * 257 + 3).clip(0, 65535) if depth_in == 16 else rgb8
        white = 255 if depth_in == 8 else 65535
        frames = torch.from_numpy(rgb.astype(np.int32)).permute(2, 0, 1)[None]
        frames = frames.to(torch.uint8 if depth_in == 8 else torch.uint16)
        planes = rgb_to_yuv(frames, matrix, full_range, bit_depth, chroma)
        for plane, exact, mine in zip("YUV", reference(rgb, white, matrix, full_range, bit_depth, chroma), planes):
            rounded = np.clip(np.floor(exact + 0.5), 0, 2**bit_depth - 1)
            clear = np.abs(exact - np.floor(exact) - 0.5) > 1e-6
            mine = mine[0].numpy().astype(np.float64)
            assert mine.shape == exact.shape
            np.testing.assert_array_equal(mine[clear], rounded[clear], err_msg=f"{name} {matrix} plane {plane}")


def test_float_frames_are_their_16bit_levels():
    """Float x is taken as round(x·65535), as the encoder's RGB path does (rgb48le); values outside [0, 1] clip."""
    levels = torch.randint(0, 65536, (2, 3, 16, 24), generator=torch.Generator().manual_seed(2))
    as_float = levels / 65535
    as_float[0, 0, 0, :4] = torch.tensor([-0.5, 1.5, float("-0"), 1.0])
    levels[0, 0, 0, :4] = torch.tensor([0, 65535, 0, 65535])
    for chroma in ("420", "444"):
        expected = rgb_to_yuv(levels.to(torch.uint16), "bt709", False, 10, chroma)
        for got, want in zip(rgb_to_yuv(as_float, "bt709", False, 10, chroma), expected):
            assert torch.equal(got, want)


def test_layout_and_batching_do_not_change_the_planes():
    frames = torch.randint(0, 256, (3, 3, 20, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    whole = rgb_to_yuv(frames, "bt709", False, 8, "420")
    channels_last = rgb_to_yuv(frames.to(memory_format=torch.channels_last), "bt709", False, 8, "420")
    single = rgb_to_yuv(frames[1:2], "bt709", False, 8, "420")
    assert [tuple(p.shape) for p in whole] == [(3, 20, 30), (3, 10, 15), (3, 10, 15)]
    assert whole.y.dtype == torch.uint8
    for a, b, c in zip(whole, channels_last, single):
        assert torch.equal(a, b) and torch.equal(a[1:2], c)
    assert rgb_to_yuv(frames, "bt709", False, 10, "422").u.dtype == torch.int16


def test_bad_arguments_are_value_errors():
    frames = torch.zeros((1, 3, 4, 6), dtype=torch.uint8)
    with pytest.raises(ValueError, match="unknown matrix 'bt2100'"):
        rgb_to_yuv(frames, "bt2100", False, 8, "420")
    with pytest.raises(ValueError, match="unknown chroma subsampling '411'"):
        rgb_to_yuv(frames, "bt709", False, 8, "411")
    with pytest.raises(ValueError, match="bit_depth=16"):
        rgb_to_yuv(frames, "bt709", False, 16, "420")
    with pytest.raises(ValueError, match="420 chroma needs.*not 5x4"):
        rgb_to_yuv(frames[..., :5], "bt709", False, 8, "420")
    with pytest.raises(ValueError, match="N×3×H×W"):
        rgb_to_yuv(frames[0], "bt709", False, 8, "444")
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        rgb_to_yuv(frames.to(torch.int32), "bt709", False, 8, "444")
    with pytest.raises(ValueError, match="rgb16_white=1023"):
        rgb_to_yuv(frames, "bt709", False, 8, "444", rgb16_white=1023)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
def test_cuda_planes_equal_cpu_planes_exactly(dtype):
    """Integer arithmetic: the same planes on both devices, bit for bit (float sums would round differently)."""
    generator = torch.Generator().manual_seed(4)
    frames = torch.randint(0, 256, (3, 3, 72, 128), dtype=torch.uint8, generator=generator)
    if dtype != torch.uint8:
        frames = (torch.rand((3, 3, 72, 128), generator=generator) * 1.1 - 0.05).to(dtype)
    on_gpu = frames.cuda().to(memory_format=torch.channels_last)
    for matrix, full_range, bit_depth, chroma in itertools.product(
            ["bt709", "bt470bg", "bt2020nc"], [False, True], [8, 10], ["420", "422", "444"]):
        expected = rgb_to_yuv(frames, matrix, full_range, bit_depth, chroma, rgb16_white=SWSCALE_RGB16_WHITE)
        got = rgb_to_yuv(on_gpu, matrix, full_range, bit_depth, chroma, rgb16_white=SWSCALE_RGB16_WHITE)
        for plane_gpu, plane_cpu in zip(got, expected):
            assert plane_gpu.device.type == "cuda"
            assert torch.equal(plane_gpu.cpu(), plane_cpu), (matrix, full_range, bit_depth, chroma)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("pix_fmt, dtype", [("yuv420p", torch.uint8), ("yuv420p10le", torch.float16)])
def test_video_writer_given_cuda_frames_writes_the_cpu_conversion(tmp_path, pix_fmt, dtype):
    """The encoder's GPU path (convert on the device, one pinned copy) writes the same planes as rgb_to_yuv on the
    CPU. Here rather than in test_encode.py, which needs the ffmpeg command line that GPU machines lack."""
    import av

    from tests.pipelines.clips import make_clip
    from vsr.pipelines.decode import open_decoder
    from vsr.pipelines.encode import VideoWriter
    from vsr.pipelines.frames import FrameBatch

    source = make_clip(tmp_path / "source.mp4", frames=4, color=("bt709", "tv"))
    with open_decoder(source, backend="pyav") as decoder:
        info = decoder.info
        pts = [p for batch in decoder.batches(4) for p in batch.pts]
    frames = torch.randint(0, 256, (4, 3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    frames = frames if dtype == torch.uint8 else (frames / 255).to(dtype)
    with VideoWriter(tmp_path / "out.mkv", source=source, source_info=info, width=70, height=50, pix_fmt=pix_fmt,
                     options={"qp": "0"}) as writer:
        writer.write(FrameBatch(frames=frames.cuda(), pts=pts))
    bit_depth, chroma = {"yuv420p": (8, "420"), "yuv420p10le": (10, "420")}[pix_fmt]
    expected = rgb_to_yuv(frames, "bt709", False, bit_depth, chroma, rgb16_white=SWSCALE_RGB16_WHITE)
    with av.open(str(tmp_path / "out.mkv")) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 4
    for index, frame in enumerate(decoded):
        for plane, wanted in zip(frame.planes, expected):
            stored = np.frombuffer(plane, wanted.numpy().dtype).reshape(plane.height, -1)[:, : plane.width]
            np.testing.assert_array_equal(stored, wanted[index].numpy())
