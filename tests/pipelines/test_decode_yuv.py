"""YUV → RGB in the decoder: swscale's exact path for 8 bits, `planes_to_rgb` for deeper planar YUV and for NVDEC's
NV12/P010 frames (converted on the GPU; here the same code runs on frames in host memory)."""

import subprocess

import av
import numpy as np
import pytest
import torch

from tests.pipelines.clips import CHART_COLORS, make_clip
from vsr.errors import InputError
from vsr.pipelines.colour import CHROMA_SITINGS, planes_to_rgb
from vsr.pipelines.decode import open_decoder
from vsr.pipelines.decode._pyav import PyAVDecoder, planar_rgb, semi_planar_rgb


def decoded(path):
    """The decoder's frames (N×H×W×3) and the stream's description."""
    with open_decoder(path, backend="pyav") as decoder:
        assert isinstance(decoder, PyAVDecoder)
        frames = torch.cat([batch.frames for batch in decoder.batches(8)]).permute(0, 2, 3, 1)
        return frames, decoder.info


def raw_frames(path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


@pytest.mark.parametrize("codec, pix_fmt, size, color, options", [
    ("libx264", "yuv420p", (64, 48), ("bt709", "tv"), {"qp": "0"}),
    ("libx264", "yuvj420p", (64, 48), ("bt601", "pc"), {"qp": "0"}),
    ("libx264", "yuv422p", (64, 48), ("bt709", "tv"), {"qp": "0"}),
    ("libx264", "yuv444p", (64, 48), ("bt2020nc", "tv"), {"qp": "0"}),
    ("libx265", "yuv420p", (64, 48), ("bt709", "tv"), {"x265-params": "lossless=1:log-level=error"}),
    ("mpeg4", "yuv420p", (64, 48), None, {"qscale": "1"}),
    ("libvpx-vp9", "yuv420p", (64, 48), None, {"lossless": "1"}),  # chroma siting "center" from here on
    ("mjpeg", "yuvj420p", (64, 48), None, {"q": "1"}),
    ("ffv1", "yuv420p", (64, 48), ("bt709", "tv"), {}),
])
def test_planes_to_rgb_is_within_a_level_of_swscales_exact_path(tmp_path, codec, pix_fmt, size, color, options):
    """Lossless or nearly so: chroma keeps the sharp edges of the moving square, where the siting shows."""
    clip = make_clip(tmp_path / "clip.mkv", frames=3, size=size, codec=codec, pix_fmt=pix_fmt, color=color,
                     options=options)
    reference, info = decoded(clip)  # 8 bits: swscale, bilinear with full chroma interpolation and exact rounding
    for frame, expected in zip(raw_frames(clip), reference, strict=True):
        got = planar_rgb(frame, info)
        assert got.dtype == torch.uint8 and got.shape == expected.shape
        assert (got.int() - expected.int()).abs().max() <= 1


@pytest.mark.parametrize("siting", CHROMA_SITINGS)
def test_odd_sizes_convert_as_the_crop_of_the_even_frame(siting):
    """An odd-sized frame's last chroma sample covers one luma column (row): the picture is the crop of the even
    one. (swscale stretches the chroma plane over the odd width instead, which moves every sample a little.)"""
    generator = torch.Generator().manual_seed(2)
    y = torch.randint(16, 236, (48, 64), dtype=torch.uint8, generator=generator)
    u, v = torch.randint(16, 241, (2, 24, 32), dtype=torch.uint8, generator=generator)
    even = planes_to_rgb(y, u, v, "bt709", False, 8, siting)
    odd = planes_to_rgb(y[:47, :63], u, v, "bt709", False, 8, siting)
    assert torch.equal(odd, even[:47, :63])
    with pytest.raises(ValueError, match="do not fit"):
        planes_to_rgb(y[:46, :63], u, v, "bt709", False, 8, siting)


def test_an_odd_sized_8_bit_video_decodes_as_the_crop_of_the_even_one(tmp_path):
    """853×480 is a common 16:9 width: swscale, which converted 8-bit video on the CPU, stretched its chroma (a color
    edge drifted by up to a pixel towards the right, tens of levels off there)."""
    from fractions import Fraction

    generator = torch.Generator().manual_seed(3)
    y = torch.randint(16, 236, (48, 64), dtype=torch.uint8, generator=generator).numpy()
    u, v = torch.randint(16, 241, (2, 24, 32), dtype=torch.uint8, generator=generator).numpy()
    for name, (height, width) in (("even.mkv", (48, 64)), ("odd.mkv", (47, 63))):
        with av.open(str(tmp_path / name), "w") as container:
            stream = container.add_stream("ffv1", rate=Fraction(25))  # lossless: the planes as they are
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, samples in zip(frame.planes, (y, u, v)):
                rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                rows[:, : plane.width] = samples[: plane.height, : plane.width]
            container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    even, odd = decoded(tmp_path / "even.mkv")[0], decoded(tmp_path / "odd.mkv")[0]
    assert odd.shape == (1, 47, 63, 3)
    assert (odd.int() - even[:, :47, :63].int()).abs().max() <= 1  # (swscale and planes_to_rgb: within a level)


def test_nvdec_layouts_give_the_planar_frames_colors(tmp_path):
    """NV12 (8 bits) and P010 / P016 (10 bits in the high bits of 16): the same samples, so the same RGB."""
    for pix_fmt, layouts in (("yuv420p", ["nv12"]), ("yuv420p10le", ["p010le", "p016le"])):
        clip = make_clip(tmp_path / f"{pix_fmt}.mkv", frames=2, pix_fmt=pix_fmt, color=("bt709", "tv"))
        _, info = decoded(clip)
        for frame in raw_frames(clip):
            expected = planar_rgb(frame, info)
            for layout in layouts:
                torch.testing.assert_close(semi_planar_rgb(frame.reformat(format=layout), info), expected,
                                           atol=1e-6, rtol=0)


def test_10_bit_video_decodes_to_its_true_colors(tmp_path):
    """Flat bars of known colors through a lossless 10-bit encode: each bar decodes to its color within one 8-bit
    level. (swscale's RGB48 output with full chroma interpolation, what vsr used before, was off by up to 253.)"""
    clip = make_clip(tmp_path / "chart.mkv", frames=2, size=(128, 48), pix_fmt="yuv420p10le", color_chart=True,
                     color=("bt709", "tv"), options={"qp": "0"})
    frames, info = decoded(clip)
    assert info.bit_depth == 10 and frames.dtype == torch.float32
    bar = 128 // len(CHART_COLORS)
    for index, color in enumerate(CHART_COLORS):
        middle = frames[:, 8:40, index * bar + 4 : (index + 1) * bar - 4] * 255  # away from the bar's edges
        assert (middle - torch.tensor(color, dtype=torch.float32)).abs().max() <= 1, (index, color)


@pytest.mark.parametrize("color_range, levels", [("tv", {940: 1.0, 502: 0.5, 64: 0.0}),
                                                  ("pc", {1023: 1.0, 512: 512 / 1023, 0: 0.0})])
def test_10_bit_grays_are_exact(tmp_path, color_range, levels):
    """Y with neutral chroma (512) gives gray (Y − black) / (white − black): 1.0 is white, not swscale's 16-bit
    scale (white 65283 / 65535); in full range white is 2^10 − 1."""
    clip = make_clip(tmp_path / "clip.mkv", frames=1, pix_fmt="yuv420p10le", color=("bt709", color_range))
    _, info = decoded(clip)
    frame = av.VideoFrame(16, 8, "yuv420p10le")
    for level, gray in levels.items():
        for plane, value in zip(frame.planes, (level, 512, 512)):
            plane.update(np.full(plane.buffer_size // 2, value, dtype=np.uint16).tobytes())
        torch.testing.assert_close(planar_rgb(frame, info), torch.full((8, 16, 3), gray), atol=1e-6, rtol=0)


@pytest.mark.parametrize("matrix", ["ycgco", "bt2020c"])
def test_a_matrix_no_decoder_converts_is_one_input_error(tmp_path, matrix):
    """YCgCo was read as BT.601 (green came out (106, 101, 255)), under the encoder's warning about its tags."""
    source = make_clip(tmp_path / "clip.mp4", frames=2)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c", "copy", "-colorspace", matrix,
                    str(tmp_path / "tagged.mkv")], check=True)
    with pytest.raises(InputError, match=f"tagged.mkv: its colors are coded with the {matrix} matrix, which vsr "
                                         "cannot convert to RGB"):
        open_decoder(tmp_path / "tagged.mkv", backend="pyav")
