"""The pool of HR training pictures: in memory while it fits, else in one raw file on disk, read through np.memmap.

    pool = gather_pool(training_images(config, files), budget=memory_budget(), folder=out_dir / "pool", key=key)
    dataset = PatchDataset(pool.images, ...)    # a list of HRImage, or a DiskPool: the same patches either way

The field's ESRGAN set, DF2K (3450 photos of about 2040×1400), is 30 GB of uint8 pixels: more than a 24 GB machine,
and under torchrun every process held its own copy. So the pictures are gathered one at a time: while their total
stays within `budget` (half the memory available, `memory_budget`) they are kept in memory, as before; past it, those
held and every one after go to OUT_DIR/pool/pixels.u8, 3·H·W bytes each one after another (C×H×W, as the tensors),
and OUT_DIR/pool/index.json says where each starts. A patch reads its ~P+2·CONTEXT·scale rows of three planes; the
OS page cache keeps what fits, and DataLoader workers and the processes of one node share its pages. Nothing is
decoded twice: a resume finds the pool of the same data and reads it as it is, and stage gan started from stage
psnr's model takes over the pool that stage kept at its end (trainer.py, `_take_over_pool`).

Why one raw file rather than BasicSR's pre-cut sub-images or LMDB: patches stay cut from the whole picture (any
position on the LR grid, real surroundings for the LR's context), so the disk pool gives exactly the patches of the
in-memory one for the same (seed, epoch, index); and a raw file needs nothing but numpy to read.

The index is written last (atomically): a pool without one, or with another `key`, is no pool and is built again.
`key` digests the training files (path, size, modification and change times), the settings that choose the
pictures and this format: a file replaced, added or removed, or a frames_per_video changed, builds a new pool.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import vsr
from vsr.errors import OutputError
from vsr.fsutil import write_bytes_atomic
from vsr.hardware import available_memory, in_bytes
from vsr.training.data import HRImage
from vsr.training.logs import counted

log = logging.getLogger(__name__)

POOL_DIR = "pool"  # in the run's folder
PIXELS_FILE = "pixels.u8"
INDEX_FILE = "index.json"
FORMAT = 1  # of pixels.u8 and index.json: a pool of another format is built again
MEMORY_SHARE = 0.5  # of the memory available that the pool may take in memory (the rest: networks, batches, workers)


def memory_budget(processes_here: int = 1) -> float:
    """Bytes the in-memory pool may take: MEMORY_SHARE of what this machine has available, shared by the
    `processes_here` that would each hold a copy; infinite where the system does not say."""
    available = available_memory()
    return float("inf") if available is None else MEMORY_SHARE * available / processes_here


class PixelDigest:
    """A digest of training pictures, their names, sizes and pixels in order (the run's `data_pixels`): a photo
    replaced by another of its size changes it."""

    def __init__(self):
        self._sha = hashlib.sha256()

    def add(self, name: str, pixels: torch.Tensor) -> None:
        self._sha.update(f"{name}\0{tuple(pixels.shape)}\0".encode())
        self._sha.update(pixels.contiguous().numpy())

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def sources_key(files: Sequence[Path], settings: dict) -> str:
    """What the pool of `files` depends on, digested: each file's path, size and times (a change time moves when a
    file is replaced, even by a copy that keeps its modification time), `settings`, the format and vsr's version."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "vsr": vsr.__version__, **settings}).encode())
    for path in files:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0".encode())
        except OSError:  # (unreadable: it is left out with a warning, and stays so while it is)
            digest.update(f"{path}\0-\0".encode())
    return digest.hexdigest()


class DiskPool(Sequence):
    """The pictures of a pool folder as HRImage whose pixels are views of pixels.u8 (mapped copy-on-write: nothing
    is ever written to it, and the pages stay those of the page cache). Pickled (a spawned worker) without its
    mapping, which it opens again where it is used."""

    def __init__(self, folder: Path, index: dict):
        self.folder, self.index = folder, index
        self.names: list[str] = index["names"]
        self.shapes: list[tuple[int, int, int]] = [tuple(shape) for shape in index["shapes"]]
        self.offsets: list[int] = index["offsets"]
        self.nbytes: int = index["nbytes"]
        self.digest: str = index["digest"]
        self._map = None

    @classmethod
    def open(cls, folder: Path, key: str | None = None) -> DiskPool | None:
        """The pool in `folder`, or None where there is none whole (no index, a pixel file of another size) or it
        was built for another key."""
        try:
            index = json.loads((folder / INDEX_FILE).read_text())
            size = (folder / PIXELS_FILE).stat().st_size
        except (OSError, ValueError):
            return None
        if not isinstance(index, dict) or index.get("format") != FORMAT or size != index.get("nbytes"):
            return None
        if key is not None and index.get("key") != key:
            return None
        return cls(folder, index)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, which: int) -> HRImage:
        if self._map is None:
            self._map = np.memmap(self.folder / PIXELS_FILE, np.uint8, mode="c")
        channels, height, width = self.shapes[which]
        start = self.offsets[which]
        pixels = self._map[start : start + channels * height * width].reshape(channels, height, width)
        return HRImage(self.names[which], torch.from_numpy(pixels))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}


@dataclass
class Pool:
    """The training pictures gathered: `images` in memory (a list) or on disk (a DiskPool), and their digest."""

    images: Sequence[HRImage]
    digest: str
    nbytes: int

    @property
    def on_disk(self) -> bool:
        return isinstance(self.images, DiskPool)


def gather_pool(images: Iterable[HRImage], *, budget: float, folder: Path, key: str) -> Pool:
    """The pictures of `images` (each read once), in memory while their total stays within `budget` bytes, else all
    in a DiskPool in `folder` (made; what it held before is replaced). A full disk is an OutputError naming the file,
    and leaves no pool behind; so does any stop while it is written."""
    held: list[HRImage] = []
    digest, total, writer = PixelDigest(), 0, None
    try:
        for image in images:
            digest.add(image.name, image.pixels)
            total += image.pixels.numel()
            if writer is None and total > budget:
                if budget > 0:  # (0: the caller said why)
                    log.info("the training pictures pass %s, %.0f%% of the memory available: the pool goes to "
                             "disk, %s (--set pool=memory keeps it in memory)", in_bytes(int(budget)),
                             MEMORY_SHARE * 100, folder)
                writer = _PoolWriter(folder)
                for earlier in held:
                    writer.add(earlier)
                held = []
            if writer is None:
                held.append(image)
            else:
                writer.add(image)
        if writer is None:
            return Pool(held, digest.hexdigest(), total)
        pool = writer.finish(key, digest.hexdigest())
    except BaseException:
        if writer is not None:
            writer.close()
            remove_pool(folder)
        raise
    log.info("training pool on disk: %s, %s in %s, written in %.0f s", counted(len(pool), "picture"),
             in_bytes(pool.nbytes), folder / PIXELS_FILE, writer.seconds())
    return Pool(pool, pool.digest, pool.nbytes)


class _PoolWriter:
    """Writes pictures one after another into folder/pixels.u8; `finish` writes the index that makes it a pool."""

    def __init__(self, folder: Path):
        self.folder, self.started = folder, time.monotonic()
        self.names, self.shapes, self.offsets, self.nbytes = [], [], [], 0
        remove_pool(folder)
        self.path = folder / PIXELS_FILE
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed in finish, or with the pool when it fails
        except OSError as error:
            raise self._cannot_write(error) from None

    def add(self, image: HRImage) -> None:
        pixels = image.pixels.contiguous().numpy()
        try:
            self.file.write(memoryview(pixels).cast("B"))
        except OSError as error:
            raise self._cannot_write(error) from None
        self.names.append(image.name)
        self.shapes.append(list(pixels.shape))
        self.offsets.append(self.nbytes)
        self.nbytes += pixels.size

    def finish(self, key: str, digest: str) -> DiskPool:
        index = {"format": FORMAT, "key": key, "digest": digest, "nbytes": self.nbytes, "names": self.names,
                 "shapes": self.shapes, "offsets": self.offsets}
        try:
            file, self.file = self.file, None
            file.close()
            write_bytes_atomic(self.folder / INDEX_FILE, json.dumps(index).encode())
        except OSError as error:
            raise self._cannot_write(error) from None
        return DiskPool(self.folder, index)

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        file, self.file = getattr(self, "file", None), None
        if file is not None:
            try:
                file.close()
            except OSError:  # (the disk full again, flushing what was buffered: the error said is the first)
                pass

    def _cannot_write(self, error: OSError) -> OutputError:
        self.close()
        return OutputError(f"{self.path}: cannot write the training pool ({error.strerror or error}; is the disk "
                           "full? it takes 3 bytes per pixel of the training pictures: free space, or --set "
                           "pool=memory to hold them in memory)")


def remove_pool(folder: Path) -> None:
    """Remove the pool in `folder` (the folder too, where nothing else is in it)."""
    for name in (INDEX_FILE, PIXELS_FILE):  # (the index first: a pool half removed is no pool)
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass

