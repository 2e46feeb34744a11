"""The configuration of a training run: one frozen dataclass, read once from a recipe TOML, overridable by name.

    config = load_recipe("training/recipes/small_cpu_psnr.toml", {"lr": "1e-4", "train_paths": "photos/"})
    config = dataclasses.replace(config, total_iters=100)

A recipe is a flat TOML table whose keys are the field names below (BasicSR's names where BasicSR has one).
Overrides (`vsr train RECIPE --set KEY=VALUE`) are written in TOML syntax (`lr=1e-4`, `milestones=[1000, 2000]`,
`train_paths=["a", "b"]`); a value that is not valid TOML is taken as a string (`out_dir=runs/x`). Every value is
checked once, here, against the field's type and range: a bad key or value is an OptionError naming it.
"""

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from vsr.errors import InputError, OptionError, did_you_mean
from vsr.training.metrics import SSIM_WINDOW

import tomllib

STAGES = ("psnr", "gan")
SCHEDULERS = ("step", "cosine_restarts")
LOADERS = ("memory", "dali")
POOLS = ("auto", "memory", "disk")
PRECISIONS = ("fp32", "bf16", "fp16")
DISCRIMINATOR_PATCH_SIZES = (128, 256)  # VGGStyleDiscriminator's input sizes
RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class TrainConfig:
    stage: str = "psnr"  # "psnr": L1 only; "gan": perceptual + RaGAN + L1, with a discriminator

    # Data. Sources are image files, videos, or folders holding either.
    train_paths: tuple[str, ...] = ()
    val_paths: tuple[str, ...] = ()  # held-out images or videos; empty: hold out val_holdout photos of train_paths
    val_holdout: int = 0  # photos of train_paths kept out for validation (chosen by name hash, see split_photos)
    val_crop: int | None = 512  # validate on the central crop of this size (None: whole images)
    val_samples: int = 4  # validation images (spread over them) shown at each validation in
    # OUT_DIR/samples/iter_NNNNNNN.png, a row each of bicubic | model | original (their central 256 pixels); 0: none
    frames_per_video: int = 16  # frames sampled across each video (near-duplicates skipped)
    val_frames_per_video: int | None = None  # the same for each validation video (None: frames_per_video); fewer
    # make each validation shorter, and its scores those of fewer frames (not comparable with the run's others)
    loader: str = "memory"  # "memory": PatchDataset over photos and sampled frames; "dali": patches decoded by
    # DALI straight from the videos (NVDEC on a GPU; training/dali_patches.py), videos only
    pool: str = "auto"  # where loader=memory keeps the training pictures: "memory"; "disk", one raw file in the run's
    # folder (pool/pixels.u8, 3 bytes a pixel) read through the page cache; "auto": memory while they take at most
    # half the memory available, else disk (under torchrun, disk: the processes then share one copy)
    scale: int = 4
    patch_size: int = 128  # HR patch side; the LR patch is patch_size / scale
    batch_size: int = 16  # the total over all processes (DDP splits it)
    num_workers: int = 4  # DataLoader worker processes per training process

    # Generator (RRDBNet) and discriminator (VGGStyleDiscriminator) hyperparameters.
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    disc_num_feat: int = 64

    # Optimisation: Adam for the generator and (stage gan) the discriminator.
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "step"  # "step": lr × gamma at each milestone; "cosine_restarts": cosine periods
    milestones: tuple[int, ...] = (200_000, 400_000, 600_000, 800_000)
    gamma: float = 0.5
    cosine_period: int = 250_000  # iterations per cosine period (restarts at each multiple)
    eta_min: float = 1e-7  # the cosine schedule's lowest lr
    total_iters: int = 1_000_000
    max_minutes: float | None = None  # also stop once the run has taken this long (all of it: data, training,
    # validation, and the time before a resume), validating and exporting model.pth as at total_iters
    ema_decay: float = 0.999  # EMA of the generator's weights; 0 disables it (EMA = the generator)

    # Stage-2 generator loss weights (ESRGAN): perceptual + gan · adversarial + pixel · L1.
    pixel_weight: float = 1e-2
    perceptual_weight: float = 1.0
    gan_weight: float = 5e-3
    perceptual_layer: str = "conv5_4"  # VGG19 layer, before its ReLU

    pretrained: str | None = None  # generator weights to start from (stage gan: the stage-1 model)
    vgg_weights: str | None = None  # torchvision's vgg19-dcbb9e9d.pth (default: the torch hub cache)
    allow_random_vgg: bool = False  # TESTING ONLY: random VGG19 weights (with a warning) when the file is absent

    # Bookkeeping.
    val_every: int = 5000
    save_every: int = 5000
    log_every: int = 100
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N (under torchrun: each process takes cuda:LOCAL_RANK)
    precision: str = "fp32"  # bf16 autocast (CUDA, or a CPU with bf16 instructions); fp16 on CUDA, with a GradScaler
    out_dir: str = "runs/train"
    plot: bool = False  # write curves.png (needs matplotlib: pip install 'vsr[train]')

    def __post_init__(self) -> None:
        _choice("stage", self.stage, STAGES)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("loader", self.loader, LOADERS)
        _choice("pool", self.pool, POOLS)
        _choice("precision", self.precision, PRECISIONS)
        for name in ("scale", "patch_size", "batch_size", "num_feat", "num_block", "num_grow_ch", "disc_num_feat",
                     "total_iters", "cosine_period", "val_every", "save_every", "log_every", "frames_per_video"):
            _at_least(name, getattr(self, name), 1)
        for name in ("num_workers", "val_holdout", "val_samples", "seed"):
            _at_least(name, getattr(self, name), 0)
        if self.scale not in (1, 2, 4):
            raise OptionError(f"scale={self.scale}: RRDBNet supports 1, 2 or 4")
        # The LR patch (patch_size / scale) must itself be a multiple of RRDBNet's pixel-unshuffle (4 / scale).
        if self.patch_size % 4:
            raise OptionError(f"patch_size={self.patch_size}: expected a multiple of 4")
        if self.stage == "gan" and self.patch_size not in DISCRIMINATOR_PATCH_SIZES:
            raise OptionError(
                f"patch_size={self.patch_size}: the gan stage's discriminator takes {DISCRIMINATOR_PATCH_SIZES} patches"
            )
        if self.val_frames_per_video is not None:
            _at_least("val_frames_per_video", self.val_frames_per_video, 1)
        if self.val_crop is not None:  # what is left once a border of `scale` is cut off must hold SSIM's window
            _at_least("val_crop", self.val_crop, 2 * self.scale + SSIM_WINDOW)
        if self.seed >= 2**32:  # (numpy's global generator takes a 32-bit seed; torch's a 64-bit one)
            raise OptionError(f"seed={self.seed}: expected a whole number below 2**32")
        if not str(self.out_dir).strip():  # ("" is the current folder: a run's files would land among the user's)
            raise OptionError("out_dir is empty: name the run's folder (-o runs/NAME)")
        for name in ("lr", "eta_min", "gamma", "pixel_weight", "perceptual_weight", "gan_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise OptionError(f"{name}={value:g}: expected a finite number, 0 or more")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise OptionError(f"max_minutes={self.max_minutes}: expected a number of minutes above 0")
        if not 0 <= self.ema_decay < 1:
            raise OptionError(f"ema_decay={self.ema_decay}: expected a value in [0, 1)")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise OptionError(f"betas={list(self.betas)}: expected two values in [0, 1)")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise OptionError(f"milestones={list(self.milestones)}: expected increasing iteration numbers")

    def to_dict(self) -> dict:
        """Plain values (lists for tuples): what checkpoints store and what `from_dict` reads back."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, object], source: str = "config") -> "TrainConfig":
        """A config from plain values (a parsed recipe, a checkpoint's copy); every key must be a field."""
        return cls(**{key: _coerce(key, value, source) for key, value in _known(values, source).items()})

    def replace(self, overrides: Mapping[str, object], source: str = "--set") -> "TrainConfig":
        """A copy with `overrides` applied: values as TOML text (from the command line) or Python values."""
        parsed = {key: _parse_value(value) for key, value in _known(overrides, source).items()}
        return dataclasses.replace(self, **{key: _coerce(key, value, source) for key, value in parsed.items()})


def field_names() -> list[str]:
    return [field.name for field in dataclasses.fields(TrainConfig)]


def find_recipe(recipe: str | os.PathLike) -> Path:
    """A recipe file: a path, or the name of one shipped in training/recipes (`small_cpu_psnr`)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{path.name.removesuffix('.toml')}.toml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
    raise InputError(f"{recipe}: no such recipe file{did_you_mean(path.name.removesuffix('.toml'), names)}; "
                     f"shipped recipes: {', '.join(names)}")


def load_recipe(recipe: str | os.PathLike, overrides: Mapping[str, object] | None = None) -> TrainConfig:
    """Parse a recipe TOML into a TrainConfig, then apply `overrides` (see `TrainConfig.replace`)."""
    path = find_recipe(recipe)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a valid TOML recipe ({error})") from error
    return TrainConfig.from_dict(values, source=str(path)).replace(overrides or {})


def parse_overrides(items: list[str]) -> dict[str, str]:
    """["lr=1e-4", "scale=2"] → {"lr": "1e-4", "scale": "2"} (values parsed later, by `TrainConfig.replace`)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=1e-4")
        overrides[key.strip()] = value.strip()
    return overrides


def _known(values: Mapping[str, object], source: str) -> Mapping[str, object]:
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise OptionError(f"{source}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], field_names())}, "
                          f"expected one of: {', '.join(field_names())}")
    return values


def _parse_value(value: object) -> object:
    """TOML text → its value (`1e-4`, `[1, 2]`, `true`, `"x"`); text that is not TOML stays a string."""
    if not isinstance(value, str):
        return value
    try:
        return tomllib.loads(f"value = {value}")["value"]
    except tomllib.TOMLDecodeError:
        return value


_HINTS: dict = {}


def _coerce(key: str, value: object, source: str) -> object:
    """Check `value` against the field's type; convert lists to tuples, integral floats to ints, "none" to None."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    hint = _HINTS[key]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        hint = next(arg for arg in args if arg is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        items = [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value
        if not isinstance(items, (list, tuple)):
            raise _type_error(key, value, hint, source)
        item_types = args[:1] * len(items) if args[-1] is Ellipsis else args
        if len(item_types) != len(items):
            raise _type_error(key, value, hint, source)
        try:
            return tuple(_scalar(key, item, item_type, hint, source) for item, item_type in zip(items, item_types))
        except OptionError:
            raise _type_error(key, value, hint, source) from None
    return _scalar(key, value, hint, hint, source)


def _scalar(key: str, value: object, kind: type, hint: object, source: str) -> object:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # total_iters=1e5
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise _type_error(key, value, hint, source)


def _type_error(key: str, value: object, hint: object, source: str) -> OptionError:
    expected = str(hint).replace("typing.", "") if typing.get_args(hint) else getattr(hint, "__name__", str(hint))
    return OptionError(f"{source}: {key}={value!r} is not a valid value, expected {expected}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise OptionError(f"{name}={value!r}: expected one of {', '.join(allowed)}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise OptionError(f"{name}={value}: expected {minimum} or more")
