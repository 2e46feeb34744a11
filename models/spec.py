"""What a loaded model is: the network plus a small description of it.

Loading any supported checkpoint (`models.checkpoint.load_model`) or zoo name (`models.zoo.load`) returns a
`LoadedModel`. Everything downstream (the engine, the CLI, `vsr models`) reads the description instead of poking at
the network, so a new architecture only has to fill in a `ModelSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """The facts about a network that callers need, independent of its weights.

    `hyperparameters` uses the constructor's own argument names (BasicSR's: num_feat, num_block, num_grow_ch, ...),
    so `ARCHITECTURES[spec.architecture](**spec.hyperparameters)` rebuilds the network.
    """

    architecture: str  # "RRDBNet", "SRVGGNetCompact", "Resample"
    scale: int  # output size / input size
    in_channels: int = 3
    out_channels: int = 3
    hyperparameters: dict = field(default_factory=dict)
    size_multiple: int = 1  # input height and width must be a multiple of this (pixel-unshuffle)
    supports_half: bool = True  # fp16 is known to be safe (ESRGAN-family models can overflow: see engine guard)
    supports_bfloat16: bool = True


@dataclass
class LoadedModel:
    """A network ready for inference (eval mode, on the CPU) and its description."""

    module: nn.Module
    spec: ModelSpec
    name: str = ""  # zoo name, or the file's name
    source: str = ""  # where the weights came from: a path, a URL, "package:..." or "" for baselines

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _conv_outputs(module: nn.Module, spec: ModelSpec, side: int) -> list[tuple[nn.Conv2d, torch.Size]]:
    """Each convolution that runs on a 1×C×side×side input, with its output's shape, in the order they ran."""
    runs = []
    hooks = [layer.register_forward_hook(lambda layer, inputs, output: runs.append((layer, output.shape)))
             for layer in module.modules() if isinstance(layer, nn.Conv2d)]
    try:
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        with torch.inference_mode():
            module(torch.zeros(1, spec.in_channels, side, side, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return runs


def _probe_side(spec: ModelSpec, side: int) -> int:
    return max(side, spec.size_multiple) // spec.size_multiple * spec.size_multiple


def macs_per_input_pixel(module: nn.Module, spec: ModelSpec, side: int = 16) -> float:
    """Multiply-adds the network spends per input pixel, counted from its convolutions on a small input.

    Counts what actually runs (pixel-unshuffle, upsampling and all), so it holds for any architecture made of
    convolutions; elementwise work is left out. The full RRDBNet ×4 gives 17.93 M (FIELD-NOTES).
    """
    side = _probe_side(spec, side)
    total = sum(shape.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
                for layer, shape in _conv_outputs(module, spec, side))
    return total / (side * side)


def largest_activation_per_input_pixel(module: nn.Module, spec: ModelSpec, side: int = 16) -> float:
    """The most values one convolution outputs per input pixel: the full RRDBNet ×4 gives 1024 (64 channels at 16×
    the pixels, after its last upsampling), animevideov3 64 (it upsamples only in its final pixel shuffle). With that
    convolution's input and one more such tensor alive, it bounds the memory of a forward pass (see the engine)."""
    side = _probe_side(spec, side)
    return max((shape.numel() for _, shape in _conv_outputs(module, spec, side)), default=0) / (side * side)
