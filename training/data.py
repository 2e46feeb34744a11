"""Training data: HR images from photo folders and videos, random HR/LR patch pairs, and a validation set.

    photos = list_photos("/work/photos")
    train_paths, val_paths = split_photos(photos, validation=0.1)
    train = PatchDataset(load_photos(train_paths) + sample_video_frames("movie.mp4", 32), patch_size=128, scale=4)
    loader = DataLoader(train, batch_size=16, num_workers=2)   # batches of dict(lr=16×3×32×32, hr=16×3×128×128)
    val = ValidationSet(load_photos(val_paths), scale=4, crop=512)

The pool of HR images is held in memory as uint8, 3·H·W bytes each (the 48 Debian photos halved are 60 MP: 180 MB).
DataLoader workers started by fork share it copy-on-write (nothing is written to it); with spawn, torch moves the
tensors to shared memory once. A pool larger than memory (DF2K: 30 GB) is a `pool.DiskPool`, one raw file read through
np.memmap, which gives the same patches (`vsr train` chooses, see pool.py). LR patches are made on the fly (a 128×128
pair with its context takes ~1.5 ms on one core), so nothing but the pool is stored and any scale can be trained from
the same images.

Patches are exact: an HR patch starts on the LR grid (a multiple of `scale`), and its LR patch is cut from the
downscale of the patch plus `degrade.CONTEXT` LR pixels of surrounding HR on each side. So the LR patch equals the
same crop of the whole image's LR (what the field's pre-made LR PNGs hold), with real neighbours at its edges
rather than a mirrored border. Flips and 90° rotations are applied to HR and LR together after downscaling:
MATLAB bicubic commutes with them (symmetric kernel, symmetric sample positions, mirrored borders), so this is the
same as augmenting HR first, without a second resize.

Every patch depends only on (seed, epoch, index) through its own torch.Generator, never on global RNG state: the
same index gives the same pair in any worker process, in any order, after a resume.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from vsr.errors import InputError, OptionError
from vsr.hardware import give_back_freed_memory
from vsr.pipelines.decode import open_decoder
from vsr.pipelines.engine import bled  # (the fill of hidden colors that vsr upscale applies)
from vsr.pipelines.image_metadata import is_animated
from vsr.pipelines.images import READ_SUFFIXES, read_image
from vsr.pipelines import sequences
from vsr.pipelines.sequences import first_frame, frame_path, is_sequence
from vsr.training.degrade import CONTEXT, check_scale, downscale, mod_crop
from vsr.training.logs import counted
from vsr.training.metrics import smallest_scored_side

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = READ_SUFFIXES  # PNG, JPEG, WebP, TIFF, BMP: the images vsr reads
# The videos vsr reads, less GIF and APNG: palette or animated pictures, which vsr does not train on.
VIDEO_SUFFIXES = tuple(suffix for suffix in sequences.VIDEO_SUFFIXES if suffix not in (".gif", ".apng"))


@dataclass
class HRImage:
    """One ground-truth picture: 3×H×W uint8 RGB, and where it came from ("photo.png", "movie.mp4@12.480s").
    `following`: a video's next frame, where it was asked for (`vsr eval` measures flicker on the pair)."""

    name: str
    pixels: torch.Tensor
    following: torch.Tensor | None = None


# ---- sources ----


def files_under(folder: Path) -> list[Path]:
    """The files under `folder`, sorted by path: hidden files and folders (.thumbnails, .git, .Trash) left out, and
    folders linked in followed (a dataset is often a symlink to another disk), each real folder once (a link to a
    folder above it would loop)."""
    files, seen = [], set()
    for top, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        files += [Path(top, name) for name in names if not name.startswith(".") and os.path.isfile(Path(top, name))]
    return sorted(files)


def list_photos(folder: str | os.PathLike) -> list[Path]:
    """The image files under `folder` (IMAGE_SUFFIXES; see `files_under`), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    photos = [path for path in files_under(folder) if path.suffix.lower() in IMAGE_SUFFIXES]
    if not photos:
        raise InputError(f"{folder}: no images in it (expected {', '.join(IMAGE_SUFFIXES)} files)")
    return photos


def load_photo(path: str | os.PathLike) -> HRImage:
    """Read an image as uint8 RGB: 16-bit images are rounded to 8 bits, gray becomes 3 channels, alpha is dropped
    (the colors under fully transparent pixels replaced first, see `_to_uint8`). A damaged image (a JPEG cut short,
    whose missing rows FFmpeg fills with one color) is an InputError: it is no ground truth."""
    image = read_image(path, refuse_damaged=True)
    pixels = image.rgb if image.alpha is None else torch.cat([image.rgb, image.alpha])
    return HRImage(name=Path(path).name, pixels=_to_uint8(pixels))


def load_photos(paths: Sequence[str | os.PathLike]) -> list[HRImage]:
    return [load_photo(path) for path in paths]


def split_photos(
    paths: Sequence[str | os.PathLike], validation: float | Sequence[str] = 0.1, *, held_before: Sequence[str] = ()
) -> tuple[list[Path], list[Path]]:
    """Split `paths` into (training, validation), the same way on every machine and every run.

    `validation` is a fraction (at least one file when above 0) or the names of the files to hold out (file names
    or stems). A fraction holds out the files whose names hash lowest (SHA-256), so the choice does not depend on
    the folder, the order, or which other files are there; those named in `held_before` (file names) first: a
    resumed run keeps validating on the photos it never trained on, whatever files were added.
    """
    held_before = set(held_before)
    paths = [Path(p) for p in paths]
    if isinstance(validation, (int, float)) and not isinstance(validation, bool):
        if not 0 <= validation < 1:
            raise OptionError(f"validation={validation}: expected a fraction from 0 to below 1, or file names")
        count = max(1, round(validation * len(paths))) if validation > 0 else 0
        if count >= len(paths):
            raise OptionError(f"validation={validation} would hold out all of the {counted(len(paths), 'file')}; add "
                              "more or hold fewer")
        ranked = sorted(paths, key=lambda p: (p.name not in held_before, hashlib.sha256(p.name.encode()).hexdigest(),
                                              str(p)))
        held = set(ranked[:count])
    else:
        names = [validation] if isinstance(validation, str) else list(validation)
        held = set()
        for name in names:
            matches = [p for p in paths if name in (p.name, p.stem)]
            if not matches:
                raise OptionError(f"validation file {name!r} is not among the {counted(len(paths), 'training file')}")
            held.update(matches)
    return [p for p in paths if p not in held], [p for p in paths if p in held]


def sample_video_frames(
    path: str | os.PathLike,
    frames_per_video: int = 16,
    *,
    min_difference: float = 0.01,
    backend: str = "auto",
    with_following: bool = False,
) -> list[HRImage]:
    """Up to `frames_per_video` frames spread evenly across a video: the first frame at or after the middle of
    each of `frames_per_video` equal stretches of time. A stream that says it is interlaced is deinterlaced, as
    `vsr upscale` does by default: its woven fields would teach a model their comb, and score its output against it.

    A frame whose 32×32 gray thumbnail differs from an already kept one by less than `min_difference` (mean
    absolute difference, in [0, 1]) is skipped: repeated frames, and the same static shot met again, add nothing
    but weight. 0 keeps everything. Frames deeper than 8 bits are rounded to 8. `with_following`: each frame comes
    with the one decoded after it (`HRImage.following`; None for the last frame).
    """
    if isinstance(frames_per_video, bool) or not isinstance(frames_per_video, int) or frames_per_video < 1:
        raise OptionError(f"frames_per_video={frames_per_video!r}: expected a whole number, 1 or more")
    if not min_difference >= 0:
        raise OptionError(f"min_difference={min_difference}: expected 0 or more")
    path = Path(path)
    with _each_decoder_warning_once():
        candidates = _sampled_frames(path, frames_per_video, backend, with_following)
    if not candidates:  # (it was left out without a word: a run of one such video said "no training images")
        raise InputError(f"{path}: no frame of it could be decoded (cut short or damaged?)")
    kept: list[HRImage] = []
    thumbnails: list[torch.Tensor] = []
    for candidate in candidates:
        small = _thumbnail(candidate.pixels)
        if any((small - other).abs().mean().item() < min_difference for other in thumbnails):
            continue
        thumbnails.append(small)
        kept.append(candidate)
    log.info("%s: kept %d of %s", path, len(kept), counted(len(candidates), "sampled frame"))
    return kept


def _sampled_frames(path: Path, frames_per_video: int, backend: str, with_following: bool) -> list[HRImage]:
    """The candidate frames of `sample_video_frames`, before near-duplicates are skipped."""
    with open_decoder(path, backend=backend, deinterlace="auto") as decoder:
        info = decoder.info
    if info.frame_count and info.frame_count <= frames_per_video:
        # Every frame (the middles would skip the first).
        candidates = _frames_evenly(path, backend, frames_per_video, with_following)
    elif info.duration:
        # Rounded to the microsecond: 0.4 · 1.5 / 3 is 0.20000000000000004, which would skip the frame at 0.2 s.
        times = [round(info.duration * (k + 0.5) / frames_per_video, 6) for k in range(frames_per_video)]
        candidates, missed = _frames_at_times(path, backend, times, with_following)
        # Times are a stretch apart, more than a frame: one may come after the last frame, two only where the frames
        # end before the header's duration (a download cut short): the frames held are then sampled in one pass (the
        # decoder warns that fewer frames could be decoded than the index lists).
        if missed > 1:
            candidates = _frames_evenly(path, backend, frames_per_video, with_following)
    else:
        candidates = _frames_evenly(path, backend, frames_per_video, with_following)
    return candidates


@contextmanager
def _each_decoder_warning_once():
    """The decoders' warnings said once each while one video is sampled: it is opened once per sampled time, and each
    decoder starts at the keyframe before its time, so a damaged stretch was decoded, and warned about, by two or
    three of them ("decoding error near 1.400 s" three times for one file)."""
    said: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in said:
            return False
        said.add(message)
        return True

    decoders_log = logging.getLogger("vsr.pipelines.decode")  # (every decoder's: pipelines/decode/_base.py)
    decoders_log.addFilter(first_time)
    try:
        yield
    finally:
        decoders_log.removeFilter(first_time)


def expand_sources(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """The image and video files named by `sources` (folders searched recursively, see `files_under`)."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            # A training run's folder inside (-o under --data) holds its curves.png, which the next run took for a
            # photo: a folder with a run's state.pt or train.csv is not data.
            every = files_under(source)
            runs = {path.parent for path in every if path.name in ("state.pt", "train.csv")}
            found = [path for path in every if path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
                     and not runs.intersection(path.parents)]
            others = [path for path in every if path.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES
                      and not runs.intersection(path.parents)]
            if others:  # (a GIF, an .apng, a file without a suffix: said, so that none is missed unawares)
                log.info("%s: %s that %s no image or video by name left out: %s%s", source,
                         counted(len(others), "file"), "is" if len(others) == 1 else "are",
                         ", ".join(path.name for path in others[:5]), ", ..." if len(others) > 5 else "")
            if not found:
                other_files = f" ({counted(len(others), 'other file')}, such as {others[0].name})" if others else ""
                raise InputError(f"{source}: no images or videos in it{other_files}")
            files += found
        elif source.is_file() or is_sequence(source):
            files.append(source)
        else:
            raise InputError(f"{source}: no such file or folder")
    return files


def is_photo(path: Path) -> bool:
    """Whether `path` is a still image: an image file, not a sequence's pattern, nor an animated PNG (whose frames are
    sampled as a video's, as `vsr upscale` upscales it as a video)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES or is_sequence(path):
        return False
    try:
        return path.suffix.lower() != ".png" or not is_animated(path)
    except OSError:  # (unreadable: load_photo says so)
        return True


def collect_images(
    sources: Sequence[str | os.PathLike], *, frames_per_video: int = 16, min_difference: float = 0.01,
    backend: str = "auto", with_following: bool = False, skip_unreadable: bool = False,
) -> list[HRImage]:
    """HR images from any mix of image files, videos, and folders holding either (`with_following`: see
    `sample_video_frames`). `skip_unreadable`: see `read_images`."""
    return list(read_images(expand_sources(sources), frames_per_video=frames_per_video, min_difference=min_difference,
                            backend=backend, with_following=with_following, skip_unreadable=skip_unreadable))


def read_images(
    files: Sequence[Path], *, frames_per_video: int = 16, min_difference: float = 0.01, backend: str = "auto",
    with_following: bool = False, skip_unreadable: bool = False,
) -> Iterator[HRImage]:
    """The HR images of image and video `files`, one file read at a time (a pool larger than memory is written to
    disk as it comes, see pool.py). `skip_unreadable`: a file that cannot be read (empty, broken, cut short, not
    what its name says) is left out with a warning naming it, rather than ending the whole collection; an
    InputError only where nothing could be read."""
    read = 0
    left_out: list[str] = []
    for file in files:
        try:
            if is_photo(file):
                images = [load_photo(file)]
            else:
                images = sample_video_frames(file, frames_per_video, min_difference=min_difference, backend=backend,
                                             with_following=with_following)
        except InputError as error:
            if not skip_unreadable:
                raise
            log.warning("%s: left out", error)
            left_out.append(str(error))
            continue
        read += len(images)
        give_back_freed_memory()  # (what decoding the file freed: see there)
        yield from images
    if left_out and not read:  # (the first reason in the error too: `vsr train -q` shows no warnings)
        more = f" (and {counted(len(left_out) - 1, 'more file')} left out)" if len(left_out) > 1 else ""
        raise InputError(f"no file could be read: {left_out[0]}{more}")


def _frames_at_times(path: Path, backend: str, times: list[float], with_following: bool
                     ) -> tuple[list[HRImage], int]:
    """The first frame at or after each of `times` (each once), and how many times had none after them."""
    frames, seen, missed = [], set(), 0
    for seconds in times:
        with open_decoder(path, backend=backend, start=seconds, max_frames=2 if with_following else 1,
                          deinterlace="auto") as decoder:
            batch = next(decoder.batches(2), None)
            time_base = decoder.info.time_base
        missed += batch is None
        if batch is None or batch.pts[0] in seen:  # past the last frame, or the same frame as the last time
            continue
        seen.add(batch.pts[0])
        following = _to_uint8(batch.frames[1]) if len(batch.pts) > 1 else None
        frames.append(HRImage(_frame_name(path, batch.pts[0], time_base), _to_uint8(batch.frames[0]), following))
    return frames, missed


def _frames_evenly(path: Path, backend: str, count: int, with_following: bool = False) -> list[HRImage]:
    """For streams of unknown duration: one pass, keeping every `stride`-th frame (and the frame after it, with
    `with_following`) and doubling the stride whenever 2·count frames are held (memory stays bounded), then `count`
    of them evenly."""
    held: list[HRImage] = []
    stride = 1
    with open_decoder(path, backend=backend, deinterlace="auto") as decoder:
        for index, (frame, pts) in enumerate(decoder):
            if with_following and held and held[-1].following is None and (index - 1) % stride == 0:
                held[-1].following = _to_uint8(frame)  # the frame right after the last one held
            if index % stride:
                continue
            held.append(HRImage(_frame_name(path, pts, decoder.info.time_base), _to_uint8(frame)))
            if len(held) == 2 * count:
                held, stride = held[::2], stride * 2
    if count >= len(held):  # (all of them: a count of 10**20 was a set built term by term)
        return held
    picks = sorted({int((k + 0.5) * len(held) / count) for k in range(count)})
    return [held[i] for i in picks]


def _frame_name(path: Path, pts: int, time_base) -> str:
    """A sequence's frame by its file (pts 0, 1, ... from its first file); a video's by its time."""
    if is_sequence(path):
        return frame_path(path, first_frame(path) + pts).name
    return f"{path.name}@{float(pts * time_base):.3f}s"


def _to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """3×H×W uint8: the picture of a 3×H×W or 4×H×W (RGBA) frame or image. Alpha is left out, after the colors under
    fully transparent pixels take those of the visible ones around them, as `vsr upscale` gives them to the model
    (pipelines/engine.py): what an encoder left there (black, a stray red) is no picture, and its hard edge along
    the transparency would be learnt as detail."""
    if rgb.shape[0] == 4 and bool((rgb[3:] == 0).any()):
        rgb = bled(rgb[None, :3], rgb[None, 3:])[0]
    rgb = rgb[:3]
    if rgb.dtype == torch.uint8:
        return rgb.contiguous()
    return rgb.float().clamp(0, 1).mul(255).round().to(torch.uint8).contiguous()


def _thumbnail(pixels: torch.Tensor) -> torch.Tensor:
    gray = pixels.float().mean(0, keepdim=True)[None] / 255
    return F.adaptive_avg_pool2d(gray, (32, 32))


# ---- datasets ----


class PatchDataset(Dataset):
    """Random (LR, HR) patch pairs from a pool of HR images (a list, or a `pool.DiskPool` on disk: the same pairs);
    item i is dict(lr=3×p×p, hr=3×P×P) float32 in [0, 1], P = `patch_size`, p = P / `scale`.
    LR is MATLAB bicubic, rounded to 8 bits when `quantize` (see module doc).

    Every patch position on the LR grid of every image is equally likely (so a large photo gives more patches than
    a small one); `augment` adds random horizontal and vertical flips and transposition (the 8 flips/90° turns).
    `length` is the number of items per epoch, by default enough patches to cover the pool's area once.
    Item i of epoch e is a function of (seed, e, i) alone; call `set_epoch` before iterating over a new epoch
    (with `persistent_workers=True` the workers keep the epoch they started with).
    """

    def __init__(
        self,
        images: Sequence[HRImage],
        *,
        patch_size: int = 128,
        scale: int = 4,
        length: int | None = None,
        seed: int = 0,
        augment: bool = True,
        quantize: bool = True,
    ):
        check_scale(scale)
        if not isinstance(patch_size, int) or patch_size < scale or patch_size % scale:
            raise OptionError(f"patch_size={patch_size!r}: expected a multiple of the scale ({scale})")
        _check_seed("seed", seed)
        if not images:
            raise InputError("no training images: give at least one photo or video frame")
        self.patch_size, self.scale, self.seed = patch_size, scale, seed
        self.augment, self.quantize = augment, quantize
        self.epoch = 0
        # The pool itself, not views of its pictures: a DiskPool pickles (for a spawned worker) without its pixels.
        self.images = images
        self.names = [image.name for image in images]
        self._sizes = []  # each picture's height and width, cropped to multiples of the scale
        cumulative, total, area = [], 0, 0
        lr_patch = patch_size // scale
        for image in images:
            _check_pixels(image)
            height, width = image.pixels.shape[-2:]
            if height < patch_size or width < patch_size:
                raise InputError(f"{image.name}: {width}×{height} is smaller than the {patch_size}×{patch_size} patch")
            height, width = height - height % scale, width - width % scale  # (mod_crop)
            self._sizes.append((height, width))
            rows, cols = height // scale - lr_patch + 1, width // scale - lr_patch + 1
            total += rows * cols
            cumulative.append(total)
            area += height * width
        self._cumulative = cumulative  # patch positions in images [0, k], for picking one position of them all
        if length is None:
            length = max(1, math.ceil(area / patch_size**2))
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise OptionError(f"length={length!r}: expected a whole number of patches, 1 or more")
        self.length = length

    def set_epoch(self, epoch: int) -> None:
        _check_seed("epoch", epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"patch {index} of a dataset of {self.length}")
        generator = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))
        position = int(torch.randint(self._cumulative[-1], (1,), generator=generator))
        flips = torch.rand(3, generator=generator) < 0.5
        which = bisect.bisect_right(self._cumulative, position)
        position -= self._cumulative[which - 1] if which else 0
        (height, width), scale, size = self._sizes[which], self.scale, self.patch_size
        pixels = self.images[which].pixels[:, :height, :width]
        cols = width // scale - size // scale + 1
        top, left = (position // cols) * scale, (position % cols) * scale
        lr, hr = patch_pair(pixels, top, left, size, scale, quantize=self.quantize)
        if self.augment:
            lr, hr = (dihedral(x, *flips.tolist()) for x in (lr, hr))
        return {"lr": lr.contiguous(), "hr": hr.contiguous()}


def patch_pair(pixels: torch.Tensor, top: int, left: int, size: int, scale: int, *, quantize: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The HR patch of 3×H×W uint8 `pixels` at (top, left), size×size, and its LR, downscaled with CONTEXT LR pixels
    of real surroundings (module doc). Float32 in [0, 1], on the pixels' device."""
    margin = CONTEXT * scale
    height, width = pixels.shape[-2:]
    y0, x0 = max(top - margin, 0), max(left - margin, 0)
    y1, x1 = min(top + size + margin, height), min(left + size + margin, width)
    window = pixels[:, y0:y1, x0:x1].float().div_(255)[None]
    lr = downscale(window, scale, quantize=quantize)[0]
    ly, lx, lr_size = (top - y0) // scale, (left - x0) // scale, size // scale
    hr = window[0, :, top - y0 : top - y0 + size, left - x0 : left - x0 + size]
    return lr[:, ly : ly + lr_size, lx : lx + lr_size], hr


class ValidationSet(Dataset):
    """Held-out images as dict(lr, hr, name): HR float32 3×H×W in [0, 1], cropped to multiples of `scale` (and to
    the central `crop`×`crop` when given), LR its MATLAB bicubic downscale (8-bit when `quantize`). Deterministic."""

    def __init__(self, images: Sequence[HRImage], *, scale: int = 4, crop: int | None = None, quantize: bool = True):
        check_scale(scale)
        if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < scale):
            raise OptionError(f"crop={crop!r}: expected a size in pixels of at least the scale ({scale}), or None")
        if not images:
            raise InputError("no validation images")
        self.scale = scale
        self.names, self.hr, self.lr = [], [], []
        smallest = smallest_scored_side(scale)  # (as vsr eval checks)
        for image in images:
            _check_pixels(image)
            hr = _center_crop(image.pixels, crop) if crop else image.pixels
            if min(side - side % scale for side in hr.shape[-2:]) < smallest:
                # (as a thumbnail is left out of training: a run validated on the others, not ended at its start)
                log.warning("%s: %d×%d pixels are too few to score at ×%d (it takes %d×%d or more): left out of "
                            "validation", image.name, hr.shape[-1], hr.shape[-2], scale, smallest, smallest)
                continue
            hr = mod_crop(hr, scale).contiguous()
            if one_colour(hr):
                log.warning("%s: one colour throughout, so nothing to upscale: left out of validation", image.name)
                continue
            self.names.append(image.name)
            self.hr.append(hr)  # uint8; LR computed once, float32 (8-bit levels are exact in float32)
            self.lr.append(downscale(hr.float().div(255)[None], scale, quantize=quantize)[0])
        if not self.hr:
            raise InputError("every validation image is one colour throughout or too small to score: there is "
                             "nothing to validate on (the warnings name them)")

    def __len__(self) -> int:
        return len(self.hr)

    def __getitem__(self, index: int) -> dict:
        return {"lr": self.lr[index], "hr": self.hr[index].float().div(255), "name": self.names[index]}


def one_colour(pixels: torch.Tensor) -> bool:
    """Whether C×H×W `pixels` are one colour throughout (a black frame before a fade-in, a blank card): nothing to
    upscale. Any upscaler gives such a picture back exactly or nearly (bicubic's PSNR +inf, a model's 40 dB or more),
    so scores leave it out: two black frames among 8 made bicubic's mean PSNR inf and the models' 13-14 dB higher."""
    return bool((pixels == pixels[..., :1, :1]).all())


def _item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one item (SeedSequence hashes its inputs; neighbours are unrelated)."""
    high, low = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return (int(high) << 31) ^ int(low)


def dihedral(x: torch.Tensor, hflip: bool, vflip: bool, transpose: bool) -> torch.Tensor:
    if hflip:
        x = x.flip(-1)
    if vflip:
        x = x.flip(-2)
    if transpose:
        x = x.transpose(-2, -1)
    return x


def _center_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    height, width = pixels.shape[-2:]
    crop_h, crop_w = min(size, height), min(size, width)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return pixels[..., top : top + crop_h, left : left + crop_w]


def _check_pixels(image: HRImage) -> None:
    pixels = image.pixels
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or pixels.shape[0] != 3:
        raise ValueError(f"{image.name}: expected 3×H×W uint8 pixels, got {tuple(pixels.shape)} {pixels.dtype}")


def _check_seed(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OptionError(f"{name}={value!r}: expected a whole number, 0 or more")
