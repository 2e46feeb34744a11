"""The training pool on disk (pool.py): the same patches as in memory, written only past the memory budget, reused
only for the same files, and a full disk said in one line; handed from stage psnr to stage gan, and kept, with a
word, by a run that fails."""

import dataclasses
import json
import os

import pytest
import torch
from torch.utils.data import DataLoader

from vsr.errors import ModelError
from vsr.training.checkpoints import load_state
from vsr.training.config import TrainConfig
from vsr.training.data import PatchDataset, load_photo
from vsr.training.pool import INDEX_FILE, PIXELS_FILE, DiskPool, PixelDigest, gather_pool
from vsr.training.sources import split_sources, training_pool
from vsr.training.trainer import resume, train
from tests.training.test_data import _random_image
from tests.training.test_resume import _assert_states_equal, _losses
from tests.training.test_trainer import tiny_config, write_photos


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


def test_the_gan_stage_takes_over_the_pool_the_psnr_stage_kept_and_trains_as_from_its_own(tmp_path, caplog):
    """The recipe's two stages decoded the dataset twice and wrote it twice: stage gan, started from stage psnr's model
    on the same data and patch size, moves the pool psnr kept into its own folder (the same file: its inode and time),
    trains on the same patches as a run that reads the pictures again, and removes the pool at its end."""
    caplog.set_level("INFO", logger="vsr.training")
    psnr = tiny_config(tmp_path, patch_size=128, total_iters=1, val_holdout=0, pool="disk",
                       out_dir=str(tmp_path / "psnr"))
    stage1 = train(psnr)
    kept = tmp_path / "psnr" / "pool"
    assert f"kept the training pool {kept} (0.3 MB) for the gan stage" in caplog.text
    written = os.stat(kept / PIXELS_FILE)

    caplog.clear()
    gan = dataclasses.replace(psnr, stage="gan", pool="auto", allow_random_vgg=True, total_iters=2, save_every=100,
                              pretrained=str(stage1.model_path), out_dir=str(tmp_path / "gan"))
    train(gan, stop_at=1)
    pool = tmp_path / "gan" / "pool"
    moved = os.stat(pool / PIXELS_FILE)
    assert (moved.st_ino, moved.st_mtime_ns) == (written.st_ino, written.st_mtime_ns) and not kept.exists()
    assert f"taken over from {tmp_path / 'psnr'}" in caplog.text
    assert "training pool on disk: 4 pictures" not in caplog.text  # (said where one is written)
    taken_over = load_state(tmp_path / "gan")

    caplog.clear()  # the same stage, its pictures read again (stage psnr's pool is gone now): the same patches
    train(dataclasses.replace(gan, pool="disk", out_dir=str(tmp_path / "again")), stop_at=1)
    assert "training pool on disk: 4 pictures" in caplog.text and "taken over" not in caplog.text
    assert _losses(tmp_path / "gan") == _losses(tmp_path / "again") and len(_losses(tmp_path / "again")) == 1
    read_again = load_state(tmp_path / "again")
    _assert_states_equal(read_again, taken_over)
    assert taken_over["data_pixels"] == read_again["data_pixels"]

    caplog.clear()
    resume(gan.out_dir)  # (the pool is its own now: read as it is, and removed at the end of this stage, the last)
    assert "built from these files before" in caplog.text and f"removed the training pool {pool}" in caplog.text
    assert not pool.exists()


def test_a_pool_of_other_data_or_another_patch_size_or_of_a_run_training_is_not_taken_over(tmp_path, caplog):
    """(Any run started from a run's model.pth takes over its pool of the same key: stage psnr here, the cheaper.)"""
    caplog.set_level("INFO", logger="vsr.training")
    first = tiny_config(tmp_path, patch_size=128, total_iters=1, val_holdout=0, pool="disk",
                        out_dir=str(tmp_path / "first"))
    model = train(first).model_path
    kept = tmp_path / "first" / "pool"
    index = (kept / INDEX_FILE).read_text()
    second = dataclasses.replace(first, pretrained=str(model), pool="auto")
    # Another patch size (the first run's pool left out pictures smaller than its own), other files (a photo held out).
    for number, changes in enumerate([{"patch_size": 64}, {"val_holdout": 1}]):
        train(dataclasses.replace(second, out_dir=str(tmp_path / f"other{number}"), **changes))
        assert (kept / INDEX_FILE).read_text() == index and "taken over" not in caplog.text
    # The first run resumed, training: its pool stays its own.
    from vsr.fsutil import locked

    with locked(tmp_path / "first" / ".lock", "busy"):
        train(dataclasses.replace(second, out_dir=str(tmp_path / "while")))
    assert f"{kept}: not taken over, its run is training" in caplog.text
    assert (kept / INDEX_FILE).read_text() == index


def test_a_run_that_fails_before_its_first_checkpoint_keeps_its_pool_and_says_so(tmp_path, caplog):
    """A run that stopped after writing its pool, before a checkpoint, left gigabytes without a word: the error says
    the pool is kept, how large, and for what; a run in another folder builds its own, one in the same folder reads
    it."""
    caplog.set_level("INFO", logger="vsr.training")
    config = tiny_config(tmp_path, total_iters=2, log_every=2, save_every=100, lr=1e30, ema_decay=0, val_holdout=0,
                         pool="disk")
    run, pool = tmp_path / "run", tmp_path / "run" / "pool"
    with pytest.raises(ModelError, match="training diverged at iteration 2: .*no checkpoint was saved") as raised:
        train(config)
    assert raised.value.__notes__ == [
        f"its training pool {pool} (0.0 MB) is kept for a new run in {run} on the same data, which reads it instead "
        f"of decoding the pictures again (rm -r {pool} frees it)"]
    written = os.stat(pool / PIXELS_FILE)
    assert written.st_size == 4 * 3 * 64 * 64 and not (run / "state.pt").exists()

    caplog.clear()
    other = train(dataclasses.replace(config, lr=1e-4, out_dir=str(tmp_path / "other")))
    assert other.model_path is not None and "training pool on disk: 4 pictures" in caplog.text
    assert os.stat(pool / PIXELS_FILE).st_mtime_ns == written.st_mtime_ns  # (not inherited, not touched)
    caplog.clear()
    again = train(dataclasses.replace(config, lr=1e-4))
    assert again.model_path is not None and "built from these files before" in caplog.text
    assert _losses(run) == _losses(tmp_path / "other")
    assert not pool.exists()  # (removed at the end: stage psnr with patches no discriminator takes)
