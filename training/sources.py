"""Which pictures a training run learns from and which it is judged on, read from its config.

`train_paths` and `val_paths` list image files, videos and folders of either. With no `val_paths`, `val_holdout`
photos of `train_paths` are kept out of training for validation, chosen by a hash of their names (the same files
on every machine and every run, see `data.split_photos`); videos are never split, all their frames train.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from vsr.errors import InputError, OptionError
from vsr.hardware import in_bytes
from vsr.training.config import DISCRIMINATOR_PATCH_SIZES, TrainConfig
from vsr.training.data import (IMAGE_SUFFIXES, HRImage, collect_images, expand_sources, is_photo, load_photo,
                               read_images, split_photos)
from vsr.training.logs import counted
from vsr.training.pool import DiskPool, Pool, gather_pool, remove_pool, sources_key

log = logging.getLogger(__name__)


def dali_sources(config: TrainConfig) -> tuple[list[Path], list[HRImage]]:
    """(training videos, validation images) for loader=dali, which reads the videos itself."""
    files = training_files(config)
    photos = [path.name for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    if photos or not files:
        raise OptionError(f"loader=dali reads videos only; train_paths hold photos ({', '.join(photos[:3])}...) or "
                          "nothing: use loader=memory for photos")
    if config.val_paths:  # (they take the place of val_holdout, as with loader=memory)
        return files, validation_images(config)
    if config.val_holdout:
        raise OptionError("loader=dali: val_holdout keeps photos out, and there are none; give val_paths instead")
    log.warning("no validation images (set val_paths): training without PSNR/SSIM checks")
    return files, []


def training_files(config: TrainConfig) -> list[Path]:
    """The files of `config.train_paths`, less those `val_paths` names too: a holdout/ folder inside the --data
    folder was trained on, and validation then scored what training saw, unsaid."""
    files = expand_sources(config.train_paths)
    if not config.val_paths:
        return files
    validation = {path.resolve() for path in expand_sources(config.val_paths)}
    shared = [path for path in files if path.resolve() in validation]
    if not shared:
        return files
    log.warning("%s %s among the training data too: left out of training, so that validation scores what training "
                "did not see: %s%s", counted(len(shared), "validation file"), "is" if len(shared) == 1 else "are",
                ", ".join(path.name for path in shared[:5]), ", ..." if len(shared) > 5 else "")
    if len(shared) == len(files):
        raise InputError("every training file is a validation file too (--data and --val name the same files): "
                         "give validation files that are not training data")
    return [path for path in files if path not in shared]


def validation_images(config: TrainConfig) -> list[HRImage]:
    """The images of `config.val_paths`, for either loader: a file that cannot be read is left out with a warning
    naming it (as a training file is), an InputError only where none can be."""
    frames_per_video = config.frames_per_video if config.val_frames_per_video is None else \
        config.val_frames_per_video
    return collect_images(expand_sources(config.val_paths), frames_per_video=frames_per_video, skip_unreadable=True)


def load_images(config: TrainConfig, held_before: Sequence[str] = ()) -> tuple[list[HRImage], list[HRImage]]:
    """(training images, validation images) as uint8 HR pictures in memory (video frames sampled). `held_before`:
    the photos a run held out before it was resumed, held out again first (see `split_photos`)."""
    files, validation = split_sources(config, held_before)
    return list(training_images(config, files)), validation


def split_sources(config: TrainConfig, held_before: Sequence[str] = ()) -> tuple[list[Path], list[HRImage]]:
    """(the training files, the validation images): `val_paths`' images, or `val_holdout` photos of the training
    data, read now; the training files are read by `training_images`."""
    if not config.train_paths:
        raise OptionError("train_paths is empty: give the training data (--data PATH: images, videos or folders)")
    files = training_files(config)
    # (An image sequence or an animated PNG is a video's frames: never split into training and validation, as videos
    # are not.)
    photos = [path for path in files if is_photo(path)]
    videos = [path for path in files if path not in photos]
    validation: list[HRImage] = []
    if config.val_paths:
        validation = validation_images(config)
    elif config.val_holdout:
        # A photo that cannot be read is no validation photo: the next one (by name hash) is held out in its place.
        if videos and not photos:
            raise OptionError(
                f"val_holdout={config.val_holdout}: the training data hold videos and no photos, and videos are "
                "never held out (a video's frames look alike: those held out would score what training saw); give "
                "validation videos or photos with --val (val_paths), or --set val_holdout=0"
            )
        while True:
            if config.val_holdout >= len(photos):
                raise OptionError(
                    f"val_holdout={config.val_holdout}: the training data hold {counted(len(photos), 'photo')}"
                    f"{' that can be read' if len(photos) < len(files) - len(videos) else ''}; hold out fewer (or "
                    "give val_paths)"
                )
            training, held_out = split_photos(photos, config.val_holdout / len(photos), held_before=held_before)
            validation, unreadable = [], []
            for path in held_out:
                try:
                    validation.append(load_photo(path))
                except InputError as error:
                    log.warning("%s: left out", error)
                    unreadable.append(path)
            if not unreadable:
                break
            photos = [path for path in photos if path not in unreadable]
        photos = training
        log.info("validation photos held out: %s", ", ".join(path.name for path in held_out))
    else:
        log.warning("no validation images (set val_paths or val_holdout): training without PSNR/SSIM checks")
    return photos + videos, validation


def training_images(config: TrainConfig, files: Sequence[Path]) -> Iterator[HRImage]:
    """The training images of `files`, one file read at a time (video frames sampled). A folder of what users have
    holds a broken file or a thumbnail: each is left out with a warning naming it, not the end of a run that would
    learn from the thousands of others."""
    patch = config.patch_size
    small: list[tuple[str, int, int]] = []  # (name, width, height): said once at the end, not kept in memory
    kept = 0
    for image in read_images(files, frames_per_video=config.frames_per_video, skip_unreadable=True):
        height, width = image.pixels.shape[-2:]
        if min(height, width) < patch:
            small.append((image.name, width, height))
            continue
        kept += 1
        yield image
    if small:
        sizes = ", ".join(f"{name} ({width}×{height})" for name, width, height in small[:5])
        log.warning("%s smaller than the %d×%d patch left out of training: %s%s",
                    counted(len(small), "image or frame", "images or frames"), patch,
                    patch, sizes, ", ..." if len(small) > 5 else "")
        if not kept:  # (said with what to do: "lower patch_size" left a user guessing a value, or one the gan
            # stage's discriminator does not take)
            name, width, height = max(small, key=lambda found: min(found[1:]))
            said = (f"every training image is smaller than the {patch}×{patch} patch (the largest: {name}, "
                    f"{width}×{height})")
            fitting = min(width, height) // 4 * 4  # (patch sizes are multiples of 4)
            if config.stage == "gan":
                sizes = " or ".join(map(str, DISCRIMINATOR_PATCH_SIZES))
                said += f"; the gan stage's discriminator takes {sizes} patches: train it on larger pictures"
            elif fitting:
                said += f"; a patch it holds: --set patch_size={fitting}"
            else:
                said += "; train on larger pictures"
            raise InputError(said)


def training_pool(config: TrainConfig, files: Sequence[Path], folder: Path, budget: float) -> Pool:
    """The pictures of the training `files`, in memory or on disk in `folder` (see pool.py): the pool already there
    where it was built from these files with these settings (a resume: nothing is decoded again), else read now."""
    key = pool_key(config, files)
    if config.pool != "memory":
        found = DiskPool.open(folder, key)
        if found is not None:
            log.info("training pool: %s, %s on disk in %s, built from these files before",
                     counted(len(found), "picture"), in_bytes(found.nbytes), folder)
            return Pool(found, found.digest, found.nbytes)
    if folder.exists():  # (built from other files, or cut short, or pool=memory now)
        log.info("%s: an earlier training pool, not of these files%s: removed", folder,
                 " (or pool=memory now)" if config.pool == "memory" else "")
        remove_pool(folder)
    return gather_pool(training_images(config, files), budget=budget, folder=folder, key=key)


def pool_key(config: TrainConfig, files: Sequence[Path]) -> str:
    """The key of the pool of the training `files` under `config` (pool.sources_key): what the pictures depend on,
    the files and the settings that choose them (the patch size leaves smaller pictures out)."""
    return sources_key(files, {"frames_per_video": config.frames_per_video, "patch_size": config.patch_size})
