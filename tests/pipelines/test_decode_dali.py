"""The DALI decoder on real tiny VP9 clips (DALI's CPU decoder), judged by PyAVDecoder and ffprobe.

Colors: on these clips (BT.601, limited and full range) DALI's CPU frames were identical to PyAVDecoder's, 0 levels
apart (DALI 2.4, PyAV 18.1: both convert with swscale's exact path); CPU_BOUND allows one level for other swscale
builds. On BT.709 clips DALI's CPU frames were up to 30 levels off (DALI converts with BT.601 whatever the stream
declares), so those go to PyAV. The GPU path converts YCbCr on the device with `yuv_to_rgb`: on the CPU, from PyAV's own
4:4:4 upsampling, it lands within 2 levels of PyAVDecoder (YUV_BOUND), and as much when DALI's GPU upsampling is
emulated; the GPU tests (run by bench/device_check.py where DALI is installed) allow GPU_BOUND.
"""

from __future__ import annotations

import importlib.util
import logging

import av
import numpy as np
import pytest
import torch

from tests.pipelines.clips import BAD_INPUTS, make_clip, truncate
from tests.pipelines.media_fixtures import ffprobe_frame_pts
from vsr.errors import InputError
from vsr.pipelines.colour import yuv_to_rgb
from vsr.pipelines.decode import DaliDecoder, PyAVDecoder, open_decoder, rgb_matrix
from vsr.pipelines.decode._dali import SEQUENCE_FRAMES
from vsr.pipelines.colour import EXACT_CONVERSION

HAVE_DALI = importlib.util.find_spec("nvidia.dali") is not None
needs_dali = pytest.mark.skipif(not HAVE_DALI, reason="DALI is not installed (the gpu extra)")
needs_cuda_and_dali = pytest.mark.skipif(
    not (torch.cuda.is_available() and HAVE_DALI), reason="needs a CUDA device and DALI"
)

CPU_BOUND = 1  # measured 0
YUV_BOUND = 2  # measured 2
GPU_BOUND = 3  # 2 with DALI's GPU upsampling emulated on the CPU; not yet measured on a GPU

VP9 = dict(codec="libvpx-vp9", options={"g": "4"})  # a keyframe every 4 frames, so that seeking has somewhere to land


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dali")
    return {
        "cfr.webm": make_clip(folder / "cfr.webm", frames=12, **VP9),
        "cfr.mkv": make_clip(folder / "cfr.mkv", frames=10, audio="opus", **VP9),
        "vfr.webm": make_clip(folder / "vfr.webm", frames=12, vfr=True, **VP9),
        "full-range.webm": make_clip(folder / "full-range.webm", frames=4, color=("bt601", "pc"), **VP9),
        "bt709.webm": make_clip(folder / "bt709.webm", frames=4, color=("bt709", "tv"), **VP9),
        "h264.mp4": make_clip(folder / "h264.mp4", frames=10),
    }


def decode_all(path, backend, batch_size=5, **options):
    with open_decoder(path, backend=backend, **options) as decoder:
        batches = list(decoder.batches(batch_size))
        kind, info = type(decoder), decoder.info
    frames = torch.cat([batch.frames for batch in batches]) if batches else None
    return frames, [pts for batch in batches for pts in batch.pts], kind, info, [len(batch) for batch in batches]


def max_difference(a, b):
    return (a.int() - b.int()).abs().max().item()


@needs_dali
@pytest.mark.parametrize("name", ["cfr.webm", "cfr.mkv", "vfr.webm", "full-range.webm"])
def test_dali_gives_pyavs_frames_at_pyavs_times(clips, name):
    reference, reference_pts, _, reference_info, _ = decode_all(clips[name], "pyav")
    frames, pts, kind, info, _ = decode_all(clips[name], "dali")
    assert kind is DaliDecoder
    assert pts == reference_pts == ffprobe_frame_pts(clips[name])  # variable frame rate included
    assert info == reference_info
    assert frames.shape == reference.shape and frames.dtype == torch.uint8 and frames.device.type == "cpu"
    assert frames.is_contiguous(memory_format=torch.channels_last)
    assert max_difference(frames, reference) <= CPU_BOUND


@needs_dali
@pytest.mark.parametrize("batch_size", [1, 3, SEQUENCE_FRAMES, 20])
def test_batches_are_cut_from_dalis_sequences_in_order(clips, batch_size):
    reference, reference_pts, _, _, _ = decode_all(clips["vfr.webm"], "pyav")
    frames, pts, _, _, sizes = decode_all(clips["vfr.webm"], "dali", batch_size=batch_size)
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1) and 0 < sizes[-1] <= batch_size and sum(sizes) == 12
    assert pts == reference_pts and max_difference(frames, reference) <= CPU_BOUND


@needs_dali
@pytest.mark.parametrize(
    "selection",
    [dict(start=0.2, end=0.36), dict(max_frames=3), dict(start=0.16, max_frames=5), dict(start=0.44), dict(start=9)],
)
def test_start_end_and_max_frames_select_what_pyav_selects(clips, selection):
    path = clips["cfr.webm"]  # 25 fps, 12 frames, keyframes at frames 0, 4, 8
    reference, reference_pts, _, _, _ = decode_all(path, "pyav", **selection)
    frames, pts, kind, _, _ = decode_all(path, "dali", **selection)
    assert kind is DaliDecoder
    assert pts == reference_pts
    if reference_pts:  # the pixels after DALI's seek are the frames at those times
        assert max_difference(frames, reference) <= CPU_BOUND
    else:
        assert frames is None


@needs_dali
@pytest.mark.parametrize(("name", "why"), [("h264.mp4", "h264"), ("bt709.webm", "BT.601 only")])
def test_what_dalis_cpu_decoder_cannot_do_goes_to_pyav_with_one_warning(clips, name, why, caplog):
    with caplog.at_level(logging.WARNING):
        frames, pts, kind, _, _ = decode_all(clips[name], "dali")
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{clips[name]}: decoding with PyAV instead of DALI: ") and why in warnings[0]
    assert kind is PyAVDecoder
    reference, reference_pts, _, _, _ = decode_all(clips[name], "pyav")
    assert pts == reference_pts and torch.equal(frames, reference)


@needs_dali
def test_auto_on_the_cpu_keeps_pyav(clips):
    _, _, kind, _, _ = decode_all(clips["cfr.webm"], "auto")
    assert kind is PyAVDecoder


@needs_dali
def test_a_file_cut_short_is_left_to_pyav_and_said_so(clips, tmp_path, caplog):
    """DALI's own FFmpeg prints what it meets at the cut beside vsr's line; PyAV decodes damaged files (and names
    the frames it loses), its log vsr's to keep."""
    source = make_clip(tmp_path / "whole.webm", frames=80, size=(160, 96), **VP9)  # 3.2 s: cut, clearly short
    cut = truncate(source, tmp_path / "cut.webm", keep=0.4)
    reference, reference_pts, _, _, _ = decode_all(cut, "pyav")
    with caplog.at_level(logging.WARNING):
        frames, pts, kind, _, _ = decode_all(cut, "dali")
    assert kind is PyAVDecoder and 5 < len(pts) < 40
    assert pts == reference_pts and torch.equal(frames, reference)
    assert "decoding with PyAV instead of DALI: the file is cut short" in caplog.text
    assert f"{cut}: cut short: it holds" in caplog.text


def break_frame(path, dest, index):
    """Copy `path` to `dest` with the first byte of video frame `index` zeroed: VP9 refuses that frame's header."""
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as container:
        payloads = [bytes(packet) for packet in container.demux(video=0) if packet.size]
    data[data.index(payloads[index])] = 0
    dest.write_bytes(bytes(data))
    return dest


@needs_dali
def test_where_dali_fails_mid_file_pyav_decodes_the_rest(tmp_path, caplog):
    source = make_clip(tmp_path / "whole.webm", frames=24, **VP9)
    damaged = break_frame(source, tmp_path / "damaged.webm", index=10)  # in DALI's second sequence (frames 8-15)
    with caplog.at_level(logging.WARNING):
        frames, pts, kind, _, _ = decode_all(damaged, "dali")
    assert kind is DaliDecoder
    assert f"{damaged}: DALI failed at 0.320 s (pts 320); PyAV decodes the rest" in caplog.text
    assert "at 0.400 s (pts 400)" in caplog.text  # PyAV names the frame it lost
    source_pts = ffprobe_frame_pts(source)
    assert 20 <= len(pts) < 24 and pts == sorted(pts) and set(pts) <= set(source_pts)
    assert pts[:10] == source_pts[:10] and pts[-10:] == source_pts[-10:]  # only frames near the damage are lost
    clean, clean_pts, _, _, _ = decode_all(source, "pyav")
    assert max_difference(frames[:8], clean[:8]) <= CPU_BOUND  # DALI's frames, before the sequence that failed
    # PyAV's frames after the damage, from the next keyframe (frame 12) on, are the clean file's frames.
    assert max_difference(frames[pts.index(480) :], clean[clean_pts.index(480) :]) <= CPU_BOUND


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_input_error(tmp_path, case):
    path = BAD_INPUTS[case](tmp_path)
    with pytest.raises(InputError) as error:
        open_decoder(path, backend="dali")
    message = str(error.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("color", [None, ("bt709", "tv"), ("bt601", "pc"), ("bt2020nc", "tv"), ("bt709", "pc")])
def test_yuv_to_rgb_converts_like_pyav(tmp_path, color):
    path = make_clip(tmp_path / "clip.webm", frames=3, size=(96, 64), color=color, codec="libvpx-vp9")
    reference, _, _, info, _ = decode_all(path, "pyav")
    with av.open(str(path)) as container:  # 4:4:4 YUV, upsampled by swscale as DALI's reader upsamples chroma
        planes = [frame.reformat(format="yuv444p", interpolation=EXACT_CONVERSION).to_ndarray()
                  for frame in container.decode(video=0)]
    yuv = torch.from_numpy(np.stack(planes)).permute(0, 2, 3, 1)  # N×3×H×W planes → N×H×W×3
    rgb = yuv_to_rgb(yuv, rgb_matrix(info), info.color.range == "pc").permute(0, 3, 1, 2)
    assert max_difference(rgb, reference) <= YUV_BOUND
    # The check can tell matrices apart: BT.709 read as BT.601 is many levels off.
    if color == ("bt709", "tv"):
        as_601 = yuv_to_rgb(yuv, "itu601", False).permute(0, 3, 1, 2)
        assert max_difference(as_601, reference) > 10


# ---- on a CUDA device (bench/device_check.py runs these where DALI is installed) ------------------------------------


@pytest.mark.gpu
@needs_cuda_and_dali
@pytest.mark.parametrize("codec", ["libvpx-vp9", "libx264"])
@pytest.mark.parametrize("color", [None, ("bt709", "tv")])
def test_dali_on_the_gpu_gives_pyavs_frames_on_that_device(tmp_path, codec, color, caplog):
    # 256×144: above NVDEC's smallest frames (128×128 for some codecs).
    path = make_clip(tmp_path / "clip.mkv", frames=12, size=(256, 144), vfr=True, codec=codec, color=color)
    reference, reference_pts, _, reference_info, _ = decode_all(path, "pyav")
    with caplog.at_level(logging.WARNING):
        frames, pts, kind, info, _ = decode_all(path, "dali", device="cuda:0")
    assert not [record for record in caplog.records if record.name.startswith("vsr")]  # PyAV did not take over
    assert kind is DaliDecoder and info == reference_info
    assert frames.device == torch.device("cuda", 0) and frames.dtype == torch.uint8
    assert pts == reference_pts
    assert max_difference(frames.cpu(), reference) <= GPU_BOUND
    frames, pts, _, _, _ = decode_all(path, "dali", device="cuda:0", start=0.2, max_frames=4)
    reference, reference_pts, _, _, _ = decode_all(path, "pyav", start=0.2, max_frames=4)
    assert pts == reference_pts and max_difference(frames.cpu(), reference) <= GPU_BOUND


@pytest.mark.gpu
@needs_cuda_and_dali
def test_auto_on_a_gpu_decodes_with_dali(tmp_path):
    path = make_clip(tmp_path / "clip.mp4", frames=4, size=(256, 144))
    _, _, kind, _, _ = decode_all(path, "auto", device="cuda")
    assert kind is DaliDecoder
