"""What is this state dict? Key families, architecture detection and building, answered in one place.

`canonical_state_dict` renames the older ESRGAN key families to BasicSR's names; `detect` reads the architecture and
its hyperparameters from key names and weight shapes (as spandrel does), walking an explicit ordered table; `build`
constructs the network that a `ModelSpec` describes. This is the only module that knows checkpoint key names.

What shapes cannot tell, and what is assumed instead (a file saved by vsr carries its hyperparameters in its
safetensors metadata, which `checkpoint.load_model` uses to settle these cases):
- RRDBNet: conv_first sees `num_in_ch · u²` channels, u being the pixel-unshuffle factor (×4 → 1, ×2 → 2, ×1 → 4).
  Input and output channels are assumed equal whenever that explains the shape: 16·out → ×1, 4·out → ×2,
  anything else → ×4 with num_in_ch = conv_first's input channels. So 3 → ×4 RGB, 12 → ×2 RGB, 48 → ×1 RGB,
  1 → ×4 gray, 4 with a gray output → ×2 gray. A ×4 model with 4·out (or 16·out) input channels reads as ×2 (×1).
- SRVGGNetCompact: the last conv has `num_out_ch · upscale²` outputs; num_out_ch is taken as the first of
  (num_in_ch, 3, 4, 1) that leaves a square. PReLU has weights (1-D `body.{odd}.weight`) and is recognised;
  ReLU and LeakyReLU have none and cannot be told apart, so such a file is assumed to use ReLU.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from vsr.errors import ModelError
from vsr.models.rrdbnet import RRDBNet
from vsr.models.spec import ModelSpec
from vsr.models.srvgg import SRVGGNetCompact

logger = logging.getLogger(__name__)

ARCHITECTURES: dict[str, type[nn.Module]] = {"RRDBNet": RRDBNet, "SRVGGNetCompact": SRVGGNetCompact}

# ---------------------------------------------------------------------------------------------------------------
# Key families
# ---------------------------------------------------------------------------------------------------------------

# Added to every key by DataParallel/DistributedDataParallel ("module.") and torch.compile ("_orig_mod."), and by
# old ESRGAN forks ("netG.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "netG.")
# A GAN's training checkpoint (a Lightning module's state_dict, BasicSR-style net_g/net_d) holds both networks, the
# generator's keys under one of these: the generator is the model.
_GENERATOR_PREFIXES = ("generator.", "net_g.", "netG.")

# ESRGAN 2019 (xinntao/ESRGAN RRDBNet_arch.py, also BSRGAN/RealSR) → BasicSR. Applied to whole dotted components.
_RENAMES_2019 = {
    "RRDB_trunk": "body",
    "trunk_conv": "conv_body",
    "upconv1": "conv_up1",
    "upconv2": "conv_up2",
    "HRconv": "conv_hr",
}
_RDB_2019 = re.compile(r"^body\.(\d+)\.RDB([123])\.(conv[1-5]\.(?:weight|bias))$")

# ESRGAN 2018 (the original sequential model): model.0 conv, model.1 the shortcut block around the trunk, then
# [upsample, conv, lrelu] per ×2 stage, the HR conv, lrelu and the last conv. Only the ×4 layout (two stages)
# matches vsr's RRDBNet, so only these top-level indices are renamed.
_TOP_2018 = {"0": "conv_first", "3": "conv_up1", "6": "conv_up2", "8": "conv_hr", "10": "conv_last"}
_RDB_2018 = re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.(conv[1-5])\.0\.(weight|bias)$")
_TRUNK_2018 = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_TOP_KEY_2018 = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def canonical_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Return the state dict with BasicSR's names.

    Keeps only a generator's keys where a GAN's checkpoint holds its discriminator too (or its keys alone, under
    `generator.`), strips wrapper prefixes (`module.`, `_orig_mod.`, stacked in any order) and renames the ESRGAN
    2018 and 2019 key families. BasicSR names, and keys of no known family, pass unchanged (the same tensors, no
    copies)."""
    stripped = True
    while stripped:  # (wrappers stack: torch.compile of a DDP model is _orig_mod.module., a GAN's netG.module.)
        stripped = False
        for prefix in _GENERATOR_PREFIXES:  # the generator's keys, beside a discriminator's or alone
            generator = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
            if generator:
                state_dict, stripped = generator, True
                break
        for prefix in _WRAPPER_PREFIXES:
            if state_dict and all(key.startswith(prefix) for key in state_dict):
                state_dict, stripped = {key[len(prefix):]: value for key, value in state_dict.items()}, True
    if "model.0.weight" in state_dict and "model.1.sub.0.RDB1.conv1.0.weight" in state_dict:
        return _rename_2018(state_dict)
    if "RRDB_trunk.0.RDB1.conv1.weight" in state_dict:
        return {_rename_2019(key): value for key, value in state_dict.items()}
    return dict(state_dict)


def _rename_2019(key: str) -> str:
    head, _, rest = key.partition(".")
    key = f"{_RENAMES_2019.get(head, head)}.{rest}" if rest else key
    match = _RDB_2019.match(key)
    return f"body.{match[1]}.rdb{match[2]}.{match[3]}" if match else key


def _rename_2018(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    top_indices = {match[1] for key in state_dict if (match := _TOP_KEY_2018.match(key))}
    if top_indices != set(_TOP_2018):
        # A ×2 or ×8 original ESRGAN has one or three upsampling stages: leave it for detect() to report.
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        if match := _RDB_2018.match(key):
            key = f"body.{match[1]}.rdb{match[2]}.{match[3]}.{match[4]}"
        elif match := _TRUNK_2018.match(key):
            key = f"conv_body.{match[2]}"  # the only sub-layer of the trunk without RDBs is the trunk conv
        elif match := _TOP_KEY_2018.match(key):
            key = f"{_TOP_2018[match[1]]}.{match[2]}"
        renamed[key] = value
    return renamed


# ---------------------------------------------------------------------------------------------------------------
# Architectures: hyperparameters from shapes, and the spec that follows from hyperparameters
# ---------------------------------------------------------------------------------------------------------------


def _highest_index(state_dict: dict[str, Tensor], prefix: str) -> int:
    """The highest i such that some key starts with `{prefix}.{i}.`."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return max(int(match[1]) for key in state_dict if (match := pattern.match(key)))


def _rrdbnet_hyperparameters(state_dict: dict[str, Tensor]) -> dict:
    first_in = state_dict["conv_first.weight"].shape[1]
    num_out_ch = state_dict["conv_last.weight"].shape[0]
    if first_in == 16 * num_out_ch:
        scale, num_in_ch = 1, num_out_ch
    elif first_in == 4 * num_out_ch:
        scale, num_in_ch = 2, num_out_ch
    else:
        scale, num_in_ch = 4, first_in
    return {
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "scale": scale,
        "num_feat": state_dict["conv_first.weight"].shape[0],
        "num_block": _highest_index(state_dict, "body") + 1,
        "num_grow_ch": state_dict["body.0.rdb1.conv1.weight"].shape[0],
    }


def _srvgg_hyperparameters(state_dict: dict[str, Tensor]) -> dict:
    conv_indices = sorted(
        int(match[1])
        for key, value in state_dict.items()
        if value.ndim == 4 and (match := re.match(r"^body\.(\d+)\.weight$", key))
    )
    num_in_ch = state_dict["body.0.weight"].shape[1]
    last_out = state_dict[f"body.{conv_indices[-1]}.weight"].shape[0]
    for num_out_ch in dict.fromkeys((num_in_ch, 3, 4, 1)):
        upscale = math.isqrt(last_out // num_out_ch)
        if last_out % num_out_ch == 0 and upscale * upscale * num_out_ch == last_out:
            break
    else:
        raise ModelError(
            f"SRVGGNetCompact: the last conv has {last_out} output channels, "
            f"expected num_out_ch · upscale² with num_out_ch in (1, 3, 4)"
        )
    prelu = "body.1.weight" in state_dict and state_dict["body.1.weight"].ndim == 1
    if not prelu:
        logger.info("SRVGGNetCompact without activation weights: assuming act_type='relu' (or leakyrelu, unknowable)")
    return {
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "num_feat": state_dict["body.0.weight"].shape[0],
        "num_conv": len(conv_indices) - 2,
        "upscale": upscale,
        "act_type": "prelu" if prelu else "relu",
    }


def spec_for(architecture: str, hyperparameters: dict) -> ModelSpec:
    """The `ModelSpec` of an architecture built with these constructor arguments (defaults filled in)."""
    if architecture not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {architecture!r}, expected one of {sorted(ARCHITECTURES)}")
    if architecture == "RRDBNet":
        hp = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
        hp.update(hyperparameters)
        return ModelSpec(
            architecture="RRDBNet",
            scale=hp["scale"],
            in_channels=hp["num_in_ch"],
            out_channels=hp["num_out_ch"],
            hyperparameters=hp,
            size_multiple={4: 1, 2: 2, 1: 4}.get(hp["scale"], 1),  # the pixel-unshuffle factor
            supports_half=False,  # ESRGAN's activations can exceed fp16's range: NaN or black frames
            supports_bfloat16=True,
        )
    hp = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": 4, "act_type": "prelu"}
    hp.update(hyperparameters)
    return ModelSpec(
        architecture="SRVGGNetCompact",
        scale=hp["upscale"],
        in_channels=hp["num_in_ch"],
        out_channels=hp["num_out_ch"],
        hyperparameters=hp,
        size_multiple=1,
        supports_half=True,
        supports_bfloat16=True,
    )


def build(spec: ModelSpec) -> nn.Module:
    """A freshly initialised network for `spec` (load weights into it afterwards)."""
    if spec.architecture not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {spec.architecture!r}, expected one of {sorted(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[spec.architecture](**spec.hyperparameters)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{spec.architecture}: bad hyperparameters {spec.hyperparameters} ({error})") from error


# ---------------------------------------------------------------------------------------------------------------
# Detection: the ordered table
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Family:
    architecture: str
    required_keys: tuple[str, ...]
    accepts: Callable[[dict[str, Tensor]], bool]  # a further condition beyond the required keys
    hyperparameters: Callable[[dict[str, Tensor]], dict]
    description: str  # what the error message says is expected


# Checked in order; the first family whose keys are present is the answer.
_FAMILIES = (
    _Family(
        "RRDBNet",
        ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_last.weight"),
        lambda state_dict: True,
        _rrdbnet_hyperparameters,
        "RRDBNet (conv_first, body.0.rdb1.conv1, conv_body, conv_last)",
    ),
    _Family(
        "SRVGGNetCompact",
        ("body.0.weight",),
        lambda state_dict: state_dict["body.0.weight"].ndim == 4 and all(k.startswith("body.") for k in state_dict),
        _srvgg_hyperparameters,
        "SRVGGNetCompact (body.0.weight ... body.N.weight only)",
    ),
)


def mismatches(module: nn.Module, state_dict: dict[str, Tensor]) -> list[str]:
    """How `state_dict` differs from the parameters of `module`: missing and unexpected keys, wrong shapes.

    Empty when `module.load_state_dict(state_dict, strict=True)` will succeed; the messages are short enough to
    put in one line. (Comparing against a network built on the meta device would avoid initialising weights, but the
    first meta `normal_` imports torch._dynamo: seconds of start-up for every command.)"""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    problems = []
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    if missing:
        problems.append(f"missing {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected {_some(unexpected)}")
    for key in sorted(expected.keys() & state_dict.keys()):
        if tuple(state_dict[key].shape) != expected[key]:
            problems.append(f"{key} has shape {tuple(state_dict[key].shape)}, expected {expected[key]}")
    return problems


def _some(keys: list[str], count: int = 4) -> str:
    shown = ", ".join(keys[:count])
    return f"{shown} (+{len(keys) - count} more)" if len(keys) > count else shown


def detect(state_dict: dict[str, Tensor]) -> ModelSpec:
    """The architecture and hyperparameters of a canonical (BasicSR-named) state dict, read from keys and shapes.

    Raises ModelError naming what was found and what was expected when no family matches. Whether every tensor then
    fits is for `mismatches(build(spec), state_dict)` to say (`checkpoint.load_model` does)."""
    if not state_dict:
        raise ModelError("empty state dict: no weights found")
    for family in _FAMILIES:
        if all(key in state_dict for key in family.required_keys) and family.accepts(state_dict):
            return spec_for(family.architecture, family.hyperparameters(state_dict))
    found = _some(sorted(state_dict), count=5)
    hint = ""
    if "model.0.weight" in state_dict and any(key.startswith("model.1.sub.") for key in state_dict):
        hint = " (an original ESRGAN layout other than ×4: vsr's RRDBNet has exactly two ×2 upsampling stages)"
    raise ModelError(
        f"unknown architecture{hint}: found keys {found} ({len(state_dict)} in all); expected "
        + " or ".join(family.description for family in _FAMILIES)
    )
