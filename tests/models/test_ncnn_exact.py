"""The proof that the ncnn conversion is exact: ncnn itself and the converted torch model agree on real images.

ncnn runs on the CPU in fp32 (its fp16 storage/arithmetic and Vulkan are switched off); the converted model runs in
fp64, so what is left is ncnn's own fp32 rounding: measured 1e-6 to 5e-6 (torch in fp32 adds its own, up to 1e-5 for
the 23-block x4plus). The tolerance is 2e-5, far below one 8-bit level (3.9e-3) and far below what a wrong mapping
would give (a swapped or transposed conv, a missed bias or slope: differences ≥ 1e-2).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import ncnn  # the reference runtime itself (a dev requirement)
import numpy as np
import pytest
import torch

from vsr.errors import ModelError
from vsr.models.detect import build
from vsr.models.ncnn import ResizedOutput, convert_ncnn, parse_param, read_ncnn
from vsr.models.zoo import ncnn_dir

FRAME = Path(__file__).resolve().parents[2] / "samples" / "bbb_frame.png"  # a real Big Buck Bunny frame, 256×144
TOLERANCE = 2e-5

# (package file stem, crop size, output scale, crop origin (y, x)); crops are small to keep two CPU cores free.
CASES = [
    pytest.param("REALESRGAN_ANIMAVIDEOV3_UP4X", 48, 4, (40, 100), id="animevideov3-x4"),
    pytest.param("REALESRGAN_ANIMAVIDEOV3_UP3X", 48, 3, (60, 150), id="animevideov3-x3"),
    pytest.param("REALESRGAN_ANIMAVIDEOV3_UP2X", 48, 2, (20, 40), id="animevideov3-x2"),
    pytest.param("REALESRGAN_X4PLUSANIME_UP4X", 48, 4, (40, 100), id="x4plus-anime"),
    pytest.param("REALESRGAN_X4PLUS_UP4X", 32, 4, (56, 120), id="x4plus", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """The sample frame as float32 H×W×3 in [0, 1], decoded with PyAV."""
    with av.open(str(FRAME)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return image.astype(np.float32) / 255


def _paths(stem: str) -> tuple[Path, Path]:
    return ncnn_dir() / f"{stem}.param", ncnn_dir() / f"{stem}.bin"


def _run_ncnn(stem: str, chw: np.ndarray) -> np.ndarray:
    param, weights = _paths(stem)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 2
    assert net.load_param(str(param)) == 0
    assert net.load_model(str(weights)) == 0
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(np.ascontiguousarray(chw)))
    status, out = extractor.extract("output")
    assert status == 0
    return np.array(out)


def _run_converted(stem: str, chw: np.ndarray, scale: int) -> np.ndarray:
    conversion = convert_ncnn(*_paths(stem))
    module = build(conversion.spec)
    module.load_state_dict(conversion.state_dict, strict=True)
    module = module.double()
    if conversion.output_resize is not None:
        assert conversion.output_resize.mode == "bicubic"
        assert conversion.output_resize.factor == pytest.approx(scale / conversion.spec.scale)
        module = ResizedOutput(module, scale, conversion.output_resize.mode)
    else:
        assert conversion.spec.scale == scale
    with torch.no_grad():
        return module.eval()(torch.from_numpy(chw)[None].double())[0].numpy()


@pytest.mark.parametrize(("stem", "size", "scale", "origin"), CASES)
def test_converted_model_matches_ncnn(frame, stem, size, scale, origin):
    y, x = origin
    chw = np.ascontiguousarray(frame[y : y + size, x : x + size].transpose(2, 0, 1))
    expected = _run_ncnn(stem, chw)
    actual = _run_converted(stem, chw, scale)
    assert expected.shape == actual.shape == (3, size * scale, size * scale)
    # Not a vacuous comparison: the network changes the picture well beyond the tolerance.
    nearest = np.repeat(np.repeat(chw, scale, axis=1), scale, axis=2)
    assert np.abs(expected - nearest).max() > 0.05
    assert np.abs(expected - actual).max() < TOLERANCE


def test_param_blob_names_are_data_and_output():
    for stem in ("REALESRGAN_X4PLUS_UP4X", "REALESRGAN_X4PLUSANIME_UP4X", "REALESRGAN_ANIMAVIDEOV3_UP2X"):
        layers = parse_param(_paths(stem)[0])
        assert layers[0].type == "Input" and layers[0].outputs == ["data"]
        assert layers[-1].outputs == ["output"]


def test_x4plus_conversion_reads_the_whole_bin_and_has_the_published_size():
    param, weights = _paths("REALESRGAN_X4PLUS_UP4X")
    assert weights.stat().st_size == 33_424_520
    layers = read_ncnn(param, weights)
    convs = [layer for layer in layers if layer.type == "Convolution"]
    assert len(convs) == 351 == 1 + 23 * 15 + 5
    conversion = convert_ncnn(param, weights)
    assert conversion.spec.architecture == "RRDBNet"
    assert conversion.spec.hyperparameters["num_block"] == 23
    assert conversion.output_resize is None
    assert sum(tensor.numel() for tensor in conversion.state_dict.values()) == 16_697_987
    # fp16-stored weights widen exactly: every value is representable in fp16.
    weight = conversion.state_dict["body.7.rdb2.conv3.weight"]
    assert torch.equal(weight.half().float(), weight)


def test_compact_conversion_maps_prelu_slopes():
    conversion = convert_ncnn(*_paths("REALESRGAN_ANIMAVIDEOV3_UP4X"))
    assert conversion.spec.hyperparameters == {
        "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": 4, "act_type": "prelu",
    }  # fmt: skip
    slopes = conversion.state_dict["body.1.weight"]
    assert slopes.shape == (64,) and not torch.equal(slopes, torch.full_like(slopes, 0.25))  # trained, not default
    assert sum(tensor.numel() for tensor in conversion.state_dict.values()) == 621_424


@pytest.mark.parametrize("damage", ["extra byte", "truncated"])
def test_a_bin_of_the_wrong_length_is_refused(tmp_path, damage):
    param, weights = _paths("REALESRGAN_ANIMAVIDEOV3_UP4X")
    shutil.copy(param, tmp_path / param.name)
    data = weights.read_bytes()
    (tmp_path / weights.name).write_bytes(data + b"\0" if damage == "extra byte" else data[:-4])
    with pytest.raises(ModelError, match="bytes left" if damage == "extra byte" else "truncated"):
        convert_ncnn(tmp_path / param.name, tmp_path / weights.name)


def test_a_graph_with_an_unknown_weighted_layer_is_refused(tmp_path):
    param, weights = _paths("REALESRGAN_ANIMAVIDEOV3_UP4X")
    text = param.read_text().replace("PReLU                    PRelu_3 ", "BatchNorm                PRelu_3 ")
    (tmp_path / param.name).write_text(text)
    with pytest.raises(ModelError, match="BatchNorm is not supported"):
        read_ncnn(tmp_path / param.name, weights)


def test_a_malformed_param_line_is_a_model_error(tmp_path):
    param = _paths("REALESRGAN_ANIMAVIDEOV3_UP4X")[0]
    lines = param.read_text().splitlines()
    lines[5] = "Convolution Conv_2 1 1 56 57 0=64 1=three"
    (tmp_path / "bad.param").write_text("\n".join(lines))
    with pytest.raises(ModelError, match="line 6"):
        parse_param(tmp_path / "bad.param")
