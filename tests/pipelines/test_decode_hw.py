"""Hardware decoding without DALI: PyAV with NVDEC, decord on the GPU, and how both fall back where there is no GPU.

The fallbacks run here, on machines without a GPU; the `gpu` tests run on a lent GPU (bench/device_check.py).
"""

from __future__ import annotations

import importlib.util
import logging

import av
import pytest
import torch

from tests.pipelines.clips import make_clip
from tests.pipelines.test_captions import captions_by_time, make_captioned_clip
from vsr import api
from vsr.pipelines.decode import DaliDecoder, DecordDecoder, PyAVDecoder, open_decoder
from vsr.pipelines.decode._decord import open_reader
from vsr.pipelines.decode._pyav import open_for_decoding

HAVE_DECORD = importlib.util.find_spec("decord") is not None
needs_decord = pytest.mark.skipif(not HAVE_DECORD, reason="decord is not installed")
no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a machine without a GPU")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hw")
    size = (256, 144)  # above NVDEC's smallest frames (128×128 for some codecs), so that the GPU tests use it
    return {
        "h264.mp4": make_clip(folder / "h264.mp4", frames=10, size=size, options={"bf": "2"}),
        "vfr.mkv": make_clip(folder / "vfr.mkv", frames=12, size=size, vfr=True, color=("bt709", "tv")),
        "vp9.webm": make_clip(folder / "vp9.webm", frames=8, size=size, codec="libvpx-vp9"),
        # HEVC Main 10: NVDEC gives P010 frames.
        "hevc10.mkv": make_clip(folder / "hevc10.mkv", frames=6, size=size, codec="libx265", pix_fmt="yuv420p10le",
                                color=("bt709", "tv"), options={"x265-params": "log-level=error"}),
        # What NVDEC cannot decode: decoded in software, its planes converted on the GPU.
        "ffv1.mkv": make_clip(folder / "ffv1.mkv", frames=4, size=size, codec="ffv1", color=("bt709", "tv")),
        "h264-10.mkv": make_clip(folder / "h264-10.mkv", frames=4, size=size, pix_fmt="yuv420p10le"),
        # Rows of 200 and 100 samples: FFmpeg pads its planes' rows, which reach the GPU through pinned memory.
        "ffv1-200.mkv": make_clip(folder / "ffv1-200.mkv", frames=4, size=(200, 120), codec="ffv1"),
    }


def decoded_planes(container, stream):
    """Each frame's pts and its raw YUV planes, as the decoder left them."""
    return [(frame.pts, frame.to_ndarray(format="yuv420p")) for frame in container.decode(stream)]


def decode_all(path, backend, device="cpu", **options):
    with open_decoder(path, backend=backend, device=device, **options) as decoder:
        batches = list(decoder.batches(4))
        kind, info = type(decoder), decoder.info
        nvdec = getattr(decoder, "nvdec", None)
    frames = torch.cat([batch.frames for batch in batches])
    return frames, [pts for batch in batches for pts in batch.pts], kind, info, nvdec


@no_gpu_here
@pytest.mark.parametrize("name", ["h264.mp4", "vfr.mkv"])
def test_asking_for_nvdec_without_a_gpu_decodes_the_same_in_software(clips, name, caplog):
    path = clips[name]
    with caplog.at_level(logging.INFO, logger="vsr.pipelines.decode"):
        container, stream, info = open_for_decoding(path, nvdec_device=0)
    assert "NVDEC is not available on cuda:0" in caplog.text and "decoding in software" in caplog.text
    with container:
        assert not stream.codec_context.is_hwaccel
        frames = decoded_planes(container, stream)
    with open_decoder(path, backend="pyav") as software:
        assert info == software.info
    with av.open(str(path)) as plain:
        reference = decoded_planes(plain, plain.streams.video[0])
    assert [pts for pts, _ in frames] == [pts for pts, _ in reference]
    assert all((a == b).all() for (_, a), (_, b) in zip(frames, reference, strict=True))


def test_nvdec_is_named_only_where_it_decoded_frames():
    """PyAV attaches NVDEC whenever the GPU's CUDA context can be had, and FFmpeg falls back to software for what NVDEC
    cannot decode: the run's summary (and the device check's table) said NVDEC for frames it never decoded."""
    from types import SimpleNamespace

    from vsr.pipelines.upscale import decoder_name

    assert decoder_name(SimpleNamespace(backend="pyav", nvdec=True, nvdec_frames=0)) == "pyav"
    assert decoder_name(SimpleNamespace(backend="pyav", nvdec=True, nvdec_frames=3)) == "pyav (NVDEC)"
    assert decoder_name(SimpleNamespace(backend="dali")) == "dali"


def test_without_a_cuda_device_pyav_does_not_ask_for_nvdec(clips, caplog):
    with caplog.at_level(logging.INFO, logger="vsr.pipelines.decode"):
        _, _, kind, _, nvdec = decode_all(clips["h264.mp4"], "pyav")
    assert kind is PyAVDecoder and nvdec is False
    assert "NVDEC" not in caplog.text


@no_gpu_here
@needs_decord
def test_decord_without_cuda_reads_on_the_cpu_with_a_warning(clips, caplog):
    path = clips["h264.mp4"]
    with caplog.at_level(logging.WARNING):
        reader = open_reader(path, torch.device("cuda", 0))  # a device can be named without CUDA being there
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "decord cannot decode on cuda:0, decoding on the CPU" in warnings[0]
    assert "CUDA not enabled" in warnings[0] and "\n" not in warnings[0]
    reference = open_reader(path, torch.device("cpu"))
    assert len(reader) == len(reference) == 10
    assert (reader.get_batch(list(range(10))).asnumpy() == reference.get_batch(list(range(10))).asnumpy()).all()


# ---- on a CUDA device (bench/device_check.py) -----------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["h264.mp4", "vfr.mkv", "vp9.webm", "hevc10.mkv"])
def test_pyav_with_nvdec_gives_the_software_frames_on_the_device(clips, name):
    reference, reference_pts, _, reference_info, _ = decode_all(clips[name], "pyav")
    frames, pts, kind, info, nvdec = decode_all(clips[name], "pyav", device="cuda:0")
    assert kind is PyAVDecoder and nvdec
    if name != "vp9.webm":  # (every NVDEC decodes H.264 and HEVC Main 10; VP9 may fall back to software)
        with open_decoder(clips[name], backend="pyav", device="cuda:0") as decoder:
            count = sum(len(batch) for batch in decoder.batches(4))
            assert decoder.nvdec_frames == count, f"NVDEC decoded {decoder.nvdec_frames} of {count} frames"
    assert frames.device == torch.device("cuda", 0) and info == reference_info
    assert pts == reference_pts
    # Decoding is bit-exact by the codecs' standards; NVDEC's NV12 is converted on the GPU by planes_to_rgb, within
    # one level of swscale's exact path that converts the software frames (tests/pipelines/test_decode_yuv.py).
    if reference.dtype == torch.uint8:
        assert (frames.cpu().int() - reference.int()).abs().max() <= 1
    else:  # 10 bits: both converted by planes_to_rgb, from the same samples
        torch.testing.assert_close(frames.cpu(), reference, atol=1e-5, rtol=0)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["ffv1.mkv", "h264-10.mkv", "ffv1-200.mkv"])
def test_software_frames_for_a_gpu_are_converted_there_like_on_the_cpu(clips, name):
    reference, reference_pts, _, _, _ = decode_all(clips[name], "pyav")
    frames, pts, kind, _, _ = decode_all(clips[name], "pyav", device="cuda:0")
    assert kind is PyAVDecoder and frames.device == torch.device("cuda", 0) and pts == reference_pts
    if reference.dtype == torch.uint8:  # swscale's exact path on the CPU, planes_to_rgb on the GPU
        assert (frames.cpu().int() - reference.int()).abs().max() <= 1
    else:
        torch.testing.assert_close(frames.cpu(), reference, atol=1e-5, rtol=0)


@pytest.mark.gpu
@needs_cuda
def test_auto_on_a_gpu_decodes_in_hardware(clips):
    frames, _, kind, _, nvdec = decode_all(clips["h264.mp4"], "auto", device="cuda")
    assert frames.device.type == "cuda"
    assert kind is DaliDecoder or (kind is PyAVDecoder and nvdec)


@pytest.mark.gpu
@needs_cuda
@needs_decord
def test_decord_on_a_gpu_gives_its_frames_on_the_device(clips, caplog):
    reference, reference_pts, _, _, _ = decode_all(clips["h264.mp4"], "decord")
    with caplog.at_level(logging.WARNING):
        frames, pts, kind, _, _ = decode_all(clips["h264.mp4"], "decord", device="cuda:0")
    assert kind is DecordDecoder and frames.device == torch.device("cuda", 0) and pts == reference_pts
    if "decord cannot decode on cuda:0" in caplog.text:  # the PyPI wheel: decoded on the CPU
        assert torch.equal(frames.cpu(), reference)
    else:  # a CUDA build of decord: its own YUV→RGB on the GPU
        assert (frames.cpu().float() - reference.float()).abs().mean() < 2


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_nvdec_frames_keep_their_captions(tmp_path):
    """(Here, not in test_captions.py, whose tests need the ffmpeg command line, which the GPU machine lacks.)"""
    source = make_captioned_clip(tmp_path / "broadcast.mp4")
    output = api.upscale_video(source, tmp_path / "out.mp4",
                               options=api.UpscaleOptions(model="bicubic", outscale=2, device="cuda")).output
    captions = list(captions_by_time(source).values())
    assert None not in captions and list(captions_by_time(output).values()) == captions
