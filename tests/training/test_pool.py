"""The training pool on disk (pool.py): the same patches as in memory, written only past the memory budget, reused
only for the same files, and a full disk said in one line."""

import json

import pytest
import torch
from torch.utils.data import DataLoader

from vsr.training.config import TrainConfig
from vsr.training.data import PatchDataset, load_photo
from vsr.training.pool import INDEX_FILE, PIXELS_FILE, DiskPool, PixelDigest, gather_pool
from vsr.training.sources import split_sources, training_pool
from tests.training.test_data import _random_image
from tests.training.test_trainer import write_photos


@pytest.fixture
def pictures():
    """Three pictures of other sizes (one not a multiple of the scale: mod-cropped in both pools)."""
    return [_random_image("a.png", 50, 66, 1), _random_image("b.png", 64, 40, 2), _random_image("c.png", 37, 45, 3)]


def test_the_disk_pool_gives_the_same_pairs_as_the_memory_pool(tmp_path, pictures):
    on_disk = gather_pool(iter(pictures), budget=0, folder=tmp_path / "pool", key="k")
    assert on_disk.on_disk and (tmp_path / "pool" / PIXELS_FILE).stat().st_size == sum(p.pixels.numel()
                                                                                         for p in pictures)
    in_memory = PatchDataset(pictures, patch_size=16, scale=4, seed=5, length=24)
    from_disk = PatchDataset(on_disk.images, patch_size=16, scale=4, seed=5, length=24)
    for epoch in (0, 3):
        in_memory.set_epoch(epoch)
        from_disk.set_epoch(epoch)
        for index in range(len(in_memory)):
            assert torch.equal(in_memory[index]["hr"], from_disk[index]["hr"])
            assert torch.equal(in_memory[index]["lr"], from_disk[index]["lr"])
    # Worker processes (forked, or given the pool pickled without its mapping) read the same patches.
    memory_batches = list(DataLoader(in_memory, batch_size=8, num_workers=0))
    disk_batches = list(DataLoader(from_disk, batch_size=8, num_workers=2))
    assert all(torch.equal(one["lr"], other["lr"]) and torch.equal(one["hr"], other["hr"])
               for one, other in zip(memory_batches, disk_batches, strict=True))
    assert "_map" in from_disk.images.__dict__ and from_disk.images.__getstate__()["_map"] is None
    digest = PixelDigest()
    for picture in pictures:
        digest.add(picture.name, picture.pixels)
    assert on_disk.digest == digest.hexdigest()  # the run's data_pixels, either way


def test_the_pool_goes_to_disk_only_past_its_budget(tmp_path, pictures, caplog):
    caplog.set_level("INFO", logger="vsr.training")
    sizes = [picture.pixels.numel() for picture in pictures]
    held = gather_pool(iter(pictures), budget=sum(sizes), folder=tmp_path / "pool", key="k")
    assert not held.on_disk and held.images == pictures and held.nbytes == sum(sizes)
    assert not (tmp_path / "pool").exists()
    # Past the budget at the second picture: the first, held until then, is written first.
    spilled = gather_pool(iter(pictures), budget=sizes[0] + 1, folder=tmp_path / "pool", key="k")
    assert spilled.on_disk and spilled.digest == held.digest
    assert [image.name for image in spilled.images] == ["a.png", "b.png", "c.png"]
    assert all(torch.equal(image.pixels, picture.pixels) for image, picture in zip(spilled.images, pictures))
    assert "the training pictures pass 0.0 MB, 50% of the memory available: the pool goes to disk" in caplog.text


def test_a_pool_of_other_files_or_cut_short_is_not_reused(tmp_path, caplog):
    caplog.set_level("INFO", logger="vsr.training")
    photos = write_photos(tmp_path / "photos", count=3, size=64)
    config = TrainConfig(train_paths=(str(photos),), patch_size=32, pool="disk")
    files, _ = split_sources(config)
    folder = tmp_path / "run" / "pool"
    first = training_pool(config, files, folder, budget=0)
    assert first.on_disk and len(first.images) == 3
    again = training_pool(config, files, folder, budget=0)  # (a resume)
    assert again.on_disk and again.images.index == first.images.index
    assert "built from these files before" in caplog.text
    caplog.clear()
    # Another photo in one's place, of the same size: built again, from the new pixels.
    write_photos(tmp_path / "other", count=3, size=64, seed=9)
    (photos / "photo1.png").write_bytes((tmp_path / "other" / "photo1.png").read_bytes())
    changed = training_pool(config, files, folder, budget=0)
    assert "built from these files before" not in caplog.text and "an earlier training pool" in caplog.text
    assert changed.digest != first.digest
    assert torch.equal(changed.images[1].pixels, load_photo(tmp_path / "other" / "photo1.png").pixels)
    # Other settings (frames sampled per video, the patch size that leaves small pictures out): another pool.
    key = json.loads((folder / INDEX_FILE).read_text())["key"]
    assert DiskPool.open(folder, key) is not None and DiskPool.open(folder, "another key") is None
    smaller_patches = TrainConfig(train_paths=(str(photos),), patch_size=16, pool="disk")
    training_pool(smaller_patches, files, folder, budget=0)
    assert json.loads((folder / INDEX_FILE).read_text())["key"] != key
    training_pool(config, files, folder, budget=0)
    with open(folder / PIXELS_FILE, "r+b") as file:  # cut short
        file.truncate(100)
    assert DiskPool.open(folder, key) is None
    rebuilt = training_pool(config, files, folder, budget=0)
    assert rebuilt.digest == changed.digest and (folder / PIXELS_FILE).stat().st_size == 3 * 3 * 64 * 64
    # pool=memory: read into memory, and the pool on disk removed.
    held = training_pool(TrainConfig(train_paths=(str(photos),), patch_size=32, pool="memory"), files, folder,
                          budget=float("inf"))
    assert not held.on_disk and held.digest == changed.digest and not folder.exists()
