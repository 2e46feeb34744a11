"""`vsr eval`: how close each model comes to the original, on your own footage.

Frames (sampled evenly from videos, as training does) and images are the ground truth. Each is cropped to a multiple
of the model's scale, downscaled with MATLAB's bicubic and rounded to 8 bits, as the field's benchmarks make their
inputs (and as `vsr train` validates), then upscaled by the model through the same engine as `vsr upscale` and
compared with the original: PSNR and SSIM on BT.601 luma (Y) and on RGB, the border of `scale` pixels left out,
averaged over the images. Bicubic upscaling of the same input is the baseline each model is measured against.

Videos are upscaled frame by frame, so a model can score well on every frame and still flicker: the texture it
invents changes from one frame to the next where the picture does not. Each frame sampled from a video is therefore
also upscaled with the frame after it, and the temporal error (tErr-Y) says how far the change between the two
upscaled frames is from the change between the originals (training.metrics.temporal_error).

These metrics reward faithfulness, not the look of detail: GAN models (realesrgan-*) trade PSNR for texture and
can score below bicubic while looking sharper, and models trained on real degradations (blur, noise, compression)
are not at their best on clean bicubic input. The numbers compare models on the same frames; they do not rank them
for the eye.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vsr import api, fsutil
from vsr.errors import InputError, OptionError
from vsr.models import zoo
from vsr.pipelines.engine import Engine
from vsr.training.data import HRImage, collect_images, one_colour
from vsr.training.degrade import downscale, mod_crop, quantize_8bit
from vsr.training.evaluate import validate
from vsr.training.metrics import smallest_scored_side, temporal_error

log = logging.getLogger(__name__)


@dataclass
class ModelScore:
    """One model's means over the images (or the bicubic baseline's, `baseline=True`)."""

    model: str
    scale: int
    images: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    seconds_per_image: float  # the engine's time alone, input already in memory, after one untimed call
    precision: str
    baseline: bool = False
    # Mean |upscaled frame-to-frame change − the original's| on Y, levels of 255, over each video frame and the one
    # after it (training.metrics.temporal_error); None where only still images were scored.
    temporal_error_y: float | None = None


def evaluate(
    sources: Sequence[str | Path],
    models: Sequence[str] = (zoo.DEFAULT_MODEL,),
    *,
    options: api.UpscaleOptions = api.UpscaleOptions(),
    frames_per_video: int = 8,
) -> tuple[list[ModelScore], list[HRImage]]:
    """Each model of `models` (and bicubic at each of their scales, first) scored on the images and video frames of
    `sources`; `options` says how to run them (device, precision, tiling). Returns the scores and the images."""
    if isinstance(frames_per_video, bool) or not isinstance(frames_per_video, int) or frames_per_video < 1:
        raise OptionError(f"--frames must be a whole number, 1 or more, not {frames_per_video!r}")
    images = _with_a_picture(collect_images(sources, frames_per_video=frames_per_video, min_difference=0,
                                            with_following=True))
    engines = [api.make_engine(api.UpscaleOptions(**{**asdict(options), "model": name})) for name in models]
    for scale in {engine.spec.scale for engine in engines}:
        smallest = smallest_scored_side(scale)
        for image in images:
            height, width = image.pixels.shape[-2:]
            if min(height - height % scale, width - width % scale) < smallest:
                raise InputError(f"{image.name}: {width}×{height} pixels are too few to score at ×{scale}: it takes "
                                 f"{smallest}×{smallest} or more")
    scores: list[ModelScore] = []
    for scale in dict.fromkeys(engine.spec.scale for engine in engines):
        # `-m bicubic` is the baseline itself (its row was shown twice, once as the baseline), with the options given
        # (--tile); bicubic runs in fp32 whatever --precision says, as the baseline does.
        asked = [engine for engine, name in zip(engines, models)
                 if name == "bicubic" and options.strength == 1 and engine.spec.scale == scale]
        bicubic = asked[0] if asked else Engine(zoo.load("bicubic", scale=scale), device=options.device,
                                                precision="fp32")
        scores.append(_score(bicubic, "bicubic", images, baseline=True))
        scores += [_score(engine, name if options.strength == 1 else f"{name} (strength {options.strength:g})", images)
                   for engine, name in zip(engines, models) if engine.spec.scale == scale and engine is not bicubic]
    for score in scores:
        if math.isnan(score.psnr_y):
            log.warning("%s: its outputs hold NaN (not a number), so its scores are none: are its weights broken, or "
                        "trained into divergence?", score.model)
    return scores, images


def _with_a_picture(images: list[HRImage]) -> list[HRImage]:
    """`images` less those of one colour throughout (training.data.one_colour), each named in a warning."""
    kept = []
    for image in images:
        if one_colour(image.pixels):
            log.warning("%s: one colour throughout, so nothing to upscale: left out of the scores", image.name)
        else:
            kept.append(image)
    if not kept:
        raise InputError("every image and frame to score is one colour throughout: there is nothing to upscale")
    return kept


def _score(engine: Engine, name: str, images: list[HRImage], baseline: bool = False) -> ModelScore:
    """`engine`'s means over `images`, measured as `vsr train` validates (training.evaluate.validate), and its
    temporal error over the video frames that come with their following frame."""
    scale = engine.spec.scale
    seconds, upscaled = 0.0, 0
    # Each image's output in 8 bits, as scored, where the temporal error needs it (a video frame with a following
    # one); None for the rest, so that scoring many large photos holds none of their outputs.
    outputs: list[torch.Tensor | None] = []

    def timed_upscale(lr: torch.Tensor) -> torch.Tensor:
        nonlocal seconds, upscaled
        started = time.perf_counter()
        sr = engine.upscale(lr)
        seconds += time.perf_counter() - started
        upscaled += 1
        return sr

    def upscale_and_keep(lr: torch.Tensor) -> torch.Tensor:
        sr = timed_upscale(lr)
        kept = images[len(outputs)].following is not None  # (validate upscales the images in their order)
        outputs.append(sr.clamp(0, 1).mul(255).round().to(torch.uint8) if kept else None)
        return sr

    pairs = [_lr_hr_pair(image.pixels, scale) for image in images]
    engine.upscale(pairs[0]["lr"][None])  # untimed: a first call also sets up kernels (and on a GPU, graphs)
    means = validate(upscale_and_keep, pairs, scale)
    temporal_errors = []
    for image, pair, sr in zip(images, pairs, outputs):
        if image.following is not None:
            following = _lr_hr_pair(image.following, scale)
            sr_next = quantize_8bit(timed_upscale(following["lr"][None]))
            temporal_errors.append(float(temporal_error(sr.float() / 255, sr_next, pair["hr"][None],
                                                        following["hr"][None], scale)[0]))
    return ModelScore(model=name, scale=scale, images=len(images), seconds_per_image=seconds / upscaled,
                      precision=engine.precision, baseline=baseline,
                      temporal_error_y=sum(temporal_errors) / len(temporal_errors) if temporal_errors else None,
                      **means)


def _lr_hr_pair(pixels: torch.Tensor, scale: int) -> dict[str, torch.Tensor]:
    """The field's benchmark pair: HR cropped to a multiple of `scale`, LR its MATLAB bicubic downscale in 8 bits."""
    hr = mod_crop(pixels, scale).float() / 255
    return {"lr": downscale(hr[None], scale, quantize=True)[0], "hr": hr}


def format_scores(scores: list[ModelScore], images: list[HRImage]) -> str:
    """The scores as a table, under lines that say what they were measured on."""
    sizes = sorted({f"{image.pixels.shape[2]}×{image.pixels.shape[1]}" for image in images})
    temporal = any(score.temporal_error_y is not None for score in scores)
    rows = [("model", "scale", "PSNR-Y", "SSIM-Y", "PSNR-RGB", "SSIM-RGB", *(("tErr-Y",) if temporal else ()),
             "s/image", "precision")]
    for score in scores:
        error = () if not temporal else ("-",) if score.temporal_error_y is None else (f"{score.temporal_error_y:.2f}",)
        rows.append((score.model + (" (baseline)" if score.baseline else ""), f"x{score.scale}",
                     f"{score.psnr_y:.2f}", f"{score.ssim_y:.4f}", f"{score.psnr_rgb:.2f}", f"{score.ssim_rgb:.4f}",
                     *error, f"{score.seconds_per_image:.3f}", score.precision))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    plural = "s" if len(images) != 1 else ""
    header = [f"{len(images)} image{plural} ({', '.join(sizes)}), each downscaled with MATLAB's bicubic, upscaled and "
              "compared with itself", "PSNR in dB; Y: BT.601 luma; a border of `scale` pixels left out",
              # Papers (BasicSR) average the images' PSNRs; the PSNR of the mean squared error is another number,
              # far from it where the images' errors differ (bicubic ×4 of the sample frame and a drawing: 21.89 dB
              # as the mean of 27.29 and 16.49, 19.16 dB from their mean MSE).
              "each score the mean of the images' own (each video frame one image), not the PSNR of their mean MSE"]
    if temporal:
        pairs = sum(image.following is not None for image in images)
        header.append(f"tErr-Y: how far the change from each video frame to the next ({pairs} pair"
                      f"{'s' if pairs != 1 else ''}) is from the original's,")
        header.append("        mean levels of 255 on Y (flicker raises it)")
    return "\n".join([*header, "", *table])


def write_json(scores: list[ModelScore], images: list[HRImage], path: str | Path) -> None:
    """The scores as JSON; a PSNR of identical images (+inf, a ×1 model that changes nothing) is null, as JSON has
    no infinity (Python's `Infinity` is refused by strict parsers)."""
    records = [{key: None if isinstance(value, float) and not math.isfinite(value) else value
                for key, value in asdict(score).items()} for score in scores]
    fsutil.write_json(Path(path), {"images": [image.name for image in images], "scores": records})
