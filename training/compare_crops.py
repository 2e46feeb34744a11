"""Side-by-side crops: what bicubic and each trained model make of the same held-out LR crop.

    python -m vsr.training.compare_crops PHOTO -m runs/psnr/model.pth -m runs/gan/model.pth -o crops.png

Each row is one crop: the HR original, bicubic from the ×4-downscaled LR (MATLAB bicubic, as in training), then
each model's output from the same LR. Columns are labelled in the log, left to right.
"""

from __future__ import annotations

import argparse
import logging

import torch

from vsr.models.checkpoint import load_model
from vsr.models.resample import imresize
from vsr.pipelines.images import Image, read_image, write_image
from vsr.training.degrade import downscale

log = logging.getLogger(__name__)


def compare(photo: str, models: list[str], output: str, *, crop: int = 128, top: int | None = None,
            left: int | None = None) -> None:
    hr = read_image(photo).rgb[None]
    height, width = hr.shape[-2:]
    top = (height - crop) // 2 if top is None else top
    left = (width - crop) // 2 if left is None else left
    hr = hr[..., top : top + crop, left : left + crop]
    loaded = [load_model(path) for path in models]
    scale = loaded[0].spec.scale
    lr = downscale(hr, scale, quantize=True)
    columns = [hr, imresize(lr, scale).clamp(0, 1)]
    with torch.inference_mode():
        columns += [model.module(lr).clamp(0, 1) for model in loaded]
    write_image(output, Image(rgb=torch.cat(columns, dim=-1)[0]))
    log.info("wrote %s: HR | bicubic | %s", output, " | ".join(models))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("-m", "--model", action="append", required=True, help="a checkpoint (repeatable)")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--top", type=int)
    parser.add_argument("--left", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    compare(args.photo, args.model, args.output, crop=args.crop, top=args.top, left=args.left)


if __name__ == "__main__":
    main()
