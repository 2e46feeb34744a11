"""Training data: photo folders, frames sampled from real clips, exact and reproducible patch pairs, validation."""

import logging
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from tests.pipelines.clips import corrupt_middle, make_clip
from vsr.errors import InputError, OptionError
from vsr.pipelines.decode import open_decoder
from vsr.pipelines.images import Image, write_image
from vsr.training.data import (
    HRImage,
    PatchDataset,
    ValidationSet,
    collect_images,
    expand_sources,
    list_photos,
    load_photo,
    sample_video_frames,
    split_photos,
)
from vsr.training.degrade import CONTEXT, downscale, mod_crop


def _random_image(name: str, height: int, width: int, seed: int) -> HRImage:
    """Smooth shapes plus noise: every patch is unique, so a patch can be found again in its image."""
    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    smooth = torch.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)])
    noise = torch.randint(0, 64, (3, height, width), generator=generator)
    return HRImage(name, (smooth * 0.75 + noise).clamp(0, 255).to(torch.uint8))


@pytest.fixture
def pool():
    return [_random_image("a.png", 50, 66, 1), _random_image("b.png", 64, 40, 2)]


TRANSFORMS = [(h, v, t) for t in (False, True) for h in (False, True) for v in (False, True)]


def _augmented(x, hflip, vflip, transpose):
    """The dataset's augmentation order, written out again: horizontal flip, vertical flip, transpose."""
    x = x.flip(-1) if hflip else x
    x = x.flip(-2) if vflip else x
    return x.transpose(-2, -1) if transpose else x


def _locate(hr: torch.Tensor, images: list[torch.Tensor], scale: int, transforms=TRANSFORMS):
    """(image index, top, left, augmentation) of an HR patch: searched over the LR grid and the 8 flips/turns."""
    size = hr.shape[-1]
    found = []
    for index, image in enumerate(images):
        pixels = image.float() / 255
        for top in range(0, pixels.shape[-2] - size + 1, scale):
            for left in range(0, pixels.shape[-1] - size + 1, scale):
                source = pixels[:, top : top + size, left : left + size]
                found += [(index, top, left, t) for t in transforms if torch.equal(_augmented(source, *t), hr)]
    assert len(found) == 1, found
    return found[0]


# ---- patches ----


def test_same_seed_and_index_give_the_same_patch(pool):
    first = PatchDataset(pool, patch_size=16, scale=4, seed=7)
    again = PatchDataset(pool, patch_size=16, scale=4, seed=7)
    for index in (0, 5, 11):
        assert torch.equal(first[index]["hr"], again[index]["hr"])
        assert torch.equal(first[index]["lr"], again[index]["lr"])
    hrs = [first[i]["hr"] for i in range(len(first))]
    assert len({tuple(h.flatten()[:64].tolist()) for h in hrs}) == len(hrs)  # different indices, different patches
    other_seed = PatchDataset(pool, patch_size=16, scale=4, seed=8)
    assert not torch.equal(other_seed[0]["hr"], first[0]["hr"])
    first.set_epoch(1)
    assert not torch.equal(first[0]["hr"], again[0]["hr"])
    first.set_epoch(0)
    assert torch.equal(first[0]["hr"], again[0]["hr"])


def test_patch_shapes_types_and_default_length(pool):
    dataset = PatchDataset(pool, patch_size=16, scale=4)
    item = dataset[3]
    assert item["hr"].shape == (3, 16, 16) and item["lr"].shape == (3, 4, 4)
    assert item["hr"].dtype == item["lr"].dtype == torch.float32
    assert item["hr"].is_contiguous() and item["lr"].is_contiguous()
    assert 0 <= item["lr"].min() and item["lr"].max() <= 1
    assert len(dataset) == math.ceil((48 * 64 + 64 * 40) / 16**2)  # the pool's area (mod-cropped) once
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_lr_is_the_crop_of_the_whole_images_lr(pool):
    """Without augmentation, each LR patch equals the matching crop of the whole (mod-cropped) image's LR."""
    scale = 4
    exact = PatchDataset(pool, patch_size=16, scale=scale, augment=False, quantize=False, length=20)
    rounded = PatchDataset(pool, patch_size=16, scale=scale, augment=False, quantize=True, length=20)
    images = [mod_crop(image.pixels, scale) for image in pool]
    whole_lr = [downscale(image.double()[None] / 255, scale)[0] for image in images]
    seen_edges = 0
    for index in range(len(exact)):
        item = exact[index]
        which, top, left, _ = _locate(item["hr"], images, scale, transforms=[(False, False, False)])
        expected = whole_lr[which][:, top // scale : top // scale + 4, left // scale : left // scale + 4]
        torch.testing.assert_close(item["lr"].double(), expected, atol=1e-6, rtol=0)  # float32 vs float64 sums
        # Quantized: the same pixels rounded to 8 bits (a level may flip where a value sits right at a half).
        assert torch.equal(rounded[index]["hr"], item["hr"])
        levels = (expected.clamp(0, 1) * 255).round() / 255
        assert (rounded[index]["lr"].double() - levels).abs().max() <= 1 / 255 + 1e-6
        assert (rounded[index]["lr"].double() == levels.float().double()).float().mean() > 0.95
        height, width = images[which].shape[-2:]
        seen_edges += top == 0 or left == 0 or top + 16 == height or left + 16 == width
    assert seen_edges  # some patches touched the image border, where the mirrored padding must agree


def test_augmented_pairs_stay_aligned(pool):
    """After flips and 90° turns, LR is still the downscale of HR (inside, away from the patch's cut edges)."""
    scale = 4
    dataset = PatchDataset(pool, patch_size=24, scale=scale, quantize=False, length=40)
    images = [mod_crop(image.pixels, scale) for image in pool]
    transforms = set()
    for index in range(len(dataset)):
        item = dataset[index]
        expected = downscale(item["hr"].double()[None], scale)[0]
        inside = (slice(None), slice(CONTEXT, -CONTEXT), slice(CONTEXT, -CONTEXT))
        torch.testing.assert_close(item["lr"].double()[inside], expected[inside], atol=1e-5, rtol=0)
        if index < 16:
            transforms.add(_locate(item["hr"], images, scale)[3])
    assert len(transforms) >= 5  # all 8 are equally likely: 16 draws show most of them


def test_dataloader_workers_give_the_same_batches(pool):
    dataset = PatchDataset(pool, patch_size=16, scale=4, length=12, seed=3)
    single = list(DataLoader(dataset, batch_size=4, num_workers=0))
    workers = list(DataLoader(dataset, batch_size=4, num_workers=2))
    assert len(single) == len(workers) == 3
    for one, other in zip(single, workers):
        assert torch.equal(one["hr"], other["hr"]) and torch.equal(one["lr"], other["lr"])
        assert one["hr"].shape == (4, 3, 16, 16)


def test_large_images_give_proportionally_more_patches():
    small, large = _random_image("s", 16, 16, 3), _random_image("l", 32, 32, 4)  # 1 and 5×5 patch positions
    dataset = PatchDataset([small, large], patch_size=16, scale=4, augment=False, length=130)
    from_small = sum(torch.equal(dataset[i]["hr"], small.pixels.float() / 255) for i in range(len(dataset)))
    assert 0 < from_small < 20  # expected 130 / 26 = 5; picking images uniformly would give 65


def test_bad_pools_and_options_are_refused(pool):
    with pytest.raises(InputError, match="tiny.png: 20×12 is smaller than the 16×16 patch"):
        PatchDataset([_random_image("tiny.png", 12, 20, 0)], patch_size=16, scale=4)
    with pytest.raises(InputError, match="no training images"):
        PatchDataset([], patch_size=16)
    with pytest.raises(OptionError, match="patch_size=18"):
        PatchDataset(pool, patch_size=18, scale=4)
    with pytest.raises(OptionError, match="seed=-1"):
        PatchDataset(pool, patch_size=16, scale=4, seed=-1)


# ---- videos ----


def test_video_frames_are_spread_across_the_clip(tmp_path):
    clip = make_clip(tmp_path / "walk.mp4", frames=20, size=(64, 48), fps=25)
    frames = sample_video_frames(clip, 4, min_difference=0)
    # 0.8 s in 4 stretches: the first frame at or after 0.1, 0.3, 0.5, 0.7 s, i.e. frames 3, 8, 13, 18.
    assert [frame.name for frame in frames] == ["walk.mp4@0.120s", "walk.mp4@0.320s", "walk.mp4@0.520s",
                                                "walk.mp4@0.720s"]
    with open_decoder(clip) as decoder:
        everything = [frame for frame, _ in decoder]
    for frame, index in zip(frames, (3, 8, 13, 18)):
        assert frame.pixels.dtype == torch.uint8 and frame.pixels.shape == (3, 48, 64)
        assert torch.equal(frame.pixels, everything[index].contiguous())


def test_validation_videos_are_sampled_by_val_frames_per_video_else_as_training_videos(tmp_path):
    """frames_per_video (16) set the validation videos' frames too, and a validation on a CPU took minutes: fewer can
    be asked for, the training pictures left as they were."""
    from vsr.training.config import TrainConfig
    from vsr.training.sources import pool_key, validation_images

    clip = make_clip(tmp_path / "val.mp4", frames=20, size=(64, 48), fps=25)
    config = TrainConfig(train_paths=(str(clip),), val_paths=(str(clip),), frames_per_video=4)
    assert len(validation_images(config)) == 4
    fewer = config.replace({"val_frames_per_video": "2"})
    # 0.8 s in 2 stretches: the first frame at or after 0.2 and 0.6 s
    assert [image.name for image in validation_images(fewer)] == ["val.mp4@0.200s", "val.mp4@0.600s"]
    assert pool_key(fewer, [clip]) == pool_key(config, [clip])
    with pytest.raises(OptionError, match="val_frames_per_video"):
        config.replace({"val_frames_per_video": "0"})


def test_each_frame_can_come_with_the_next_one(tmp_path):
    """For the temporal error of `vsr eval`: the frame shown after each sample, on every path that samples."""
    from vsr.training.data import _frames_evenly

    clip = make_clip(tmp_path / "walk.mp4", frames=20, size=(64, 48), fps=25)
    with open_decoder(clip) as decoder:
        everything = [frame.contiguous() for frame, _ in decoder]

    def position(frame):
        return None if frame is None else next(i for i, known in enumerate(everything) if torch.equal(known, frame))

    def indices(images):
        return [(position(image.pixels), position(image.following)) for image in images]

    assert all(image.following is None for image in sample_video_frames(clip, 4, min_difference=0))
    assert indices(sample_video_frames(clip, 4, min_difference=0, with_following=True)) == [
        (3, 4), (8, 9), (13, 14), (18, 19)]  # by their times
    assert indices(sample_video_frames(clip, 25, min_difference=0, with_following=True)) == [
        *((n, n + 1) for n in range(19)), (19, None)]  # every frame: the last has none after it
    assert indices(_frames_evenly(clip, "pyav", 4, with_following=True)) == [(0, 1), (4, 5), (12, 13), (16, 17)]


def test_repeated_frames_are_skipped(tmp_path):
    still = make_clip(tmp_path / "still.mp4", frames=20, color_chart=True)  # the same picture 20 times
    assert len(sample_video_frames(still, 4)) == 1
    assert len(sample_video_frames(still, 4, min_difference=0)) == 4
    moving = make_clip(tmp_path / "moving.mp4", frames=20, size=(64, 48))
    assert len(sample_video_frames(moving, 4)) == 4
    assert len(sample_video_frames(moving, 4, min_difference=0.5)) == 1  # a huge threshold: all look alike


def test_more_samples_than_frames_never_repeat_a_frame(tmp_path):
    clip = make_clip(tmp_path / "short.mp4", frames=5)
    # As many samples as frames or more: every frame once (the middles of 12 stretches would never reach frame 0),
    # at once however many are asked for (`vsr eval --frames 10**20` ran for ever, helper-63).
    for count in (12, 10**20):
        frames = sample_video_frames(clip, count, min_difference=0)
        assert [frame.name for frame in frames] == [f"short.mp4@{t:.3f}s" for t in (0, 0.04, 0.08, 0.12, 0.16)]


def test_streams_without_duration_are_sampled_in_one_pass(tmp_path):
    from vsr.training.data import _frames_evenly

    clip = make_clip(tmp_path / "clip.mp4", frames=20)
    names = [image.name for image in _frames_evenly(clip, "pyav", 4)]
    assert names == ["clip.mp4@0.000s", "clip.mp4@0.160s", "clip.mp4@0.480s", "clip.mp4@0.640s"]


def test_bad_video_arguments(tmp_path):
    with pytest.raises(InputError):
        sample_video_frames(tmp_path / "missing.mp4", 4)
    with pytest.raises(OptionError, match="frames_per_video=0"):
        sample_video_frames(tmp_path / "missing.mp4", 0)


# ---- photos ----


def _write(path, pixels: torch.Tensor):
    write_image(path, Image(rgb=pixels.float() / 255))
    return path


def test_list_and_load_photos(tmp_path):
    pixels = _random_image("x", 20, 30, 5).pixels
    _write(tmp_path / "b.png", pixels)
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "a.jpg", pixels)
    _write(tmp_path / "c.webp", pixels)
    _write(tmp_path / ".hidden.png", pixels)
    (tmp_path / "notes.txt").write_text("not an image")
    found = list_photos(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b.png", "c.webp", "sub/a.jpg"]
    photo = load_photo(tmp_path / "b.png")
    assert photo.name == "b.png" and torch.equal(photo.pixels, pixels)  # PNG: exact
    jpeg = load_photo(tmp_path / "sub" / "a.jpg").pixels
    assert jpeg.dtype == torch.uint8 and (jpeg.float() - pixels.float()).abs().mean() < 12
    with pytest.raises(InputError, match="no images"):
        list_photos(_empty(tmp_path))
    with pytest.raises(InputError, match="not a folder"):
        list_photos(tmp_path / "b.png")


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_collect_images_from_folders_photos_and_videos(tmp_path):
    _write(tmp_path / "photo.png", _random_image("x", 20, 30, 6).pixels)
    make_clip(tmp_path / "clip.mkv", frames=10, size=(32, 24))
    images = collect_images([tmp_path], frames_per_video=3)
    # 0.4 s in 3 stretches: the first frame at or after 0.067, 0.2 and 0.333 s.
    assert [image.name for image in images] == ["clip.mkv@0.080s", "clip.mkv@0.200s", "clip.mkv@0.360s",
                                                "photo.png"]
    assert [image.name for image in collect_images([tmp_path / "photo.png"])] == ["photo.png"]


def test_split_photos_is_deterministic_and_keeps_named_files(tmp_path):
    paths = [tmp_path / f"photo{i:02d}.png" for i in range(20)]
    train, val = split_photos(paths, 0.2)
    assert len(val) == 4 and len(train) == 16 and not set(train) & set(val)
    assert train == [p for p in paths if p not in val]  # order kept
    _, shuffled_val = split_photos(list(reversed(paths)), 0.2)
    assert sorted(shuffled_val) == sorted(val)  # independent of the order...
    elsewhere = [tmp_path / "other" / p.name for p in paths]
    assert [p.name for p in split_photos(elsewhere, 0.2)[1]] == [p.name for p in val]  # ...and of the folder
    assert len(split_photos(paths[:3], 0.01)[1]) == 1  # at least one
    assert split_photos(paths, 0) == (paths, [])
    train, val = split_photos(paths, ["photo03", "photo07.png"])
    assert val == [paths[3], paths[7]] and len(train) == 18
    with pytest.raises(OptionError, match="'nope'"):
        split_photos(paths, ["nope"])
    with pytest.raises(OptionError, match="validation=1"):
        split_photos(paths, 1)
    with pytest.raises(OptionError, match="would hold out all of the 1 file; "):
        split_photos(paths[:1], 0.5)


# ---- validation ----


def test_validation_set_is_deterministic_and_cropped_to_the_scale(pool):
    odd = _random_image("odd.png", 51, 70, 9)
    whole = ValidationSet([odd, *pool], scale=4)
    again = ValidationSet([odd, *pool], scale=4)
    assert len(whole) == 3
    for index in range(3):
        assert all(torch.equal(whole[index][key], again[index][key]) for key in ("lr", "hr"))
    item = whole[0]
    assert item["name"] == "odd.png" and item["hr"].shape == (3, 48, 68) and item["lr"].shape == (3, 12, 17)
    torch.testing.assert_close(item["hr"], odd.pixels[:, :48, :68].float() / 255)
    torch.testing.assert_close(item["lr"], downscale(item["hr"][None], 4, quantize=True)[0])
    cropped = ValidationSet([odd], scale=4, crop=30)[0]
    assert cropped["hr"].shape == (3, 28, 28) and cropped["lr"].shape == (3, 7, 7)
    torch.testing.assert_close(cropped["hr"], odd.pixels[:, 10:38, 20:48].float() / 255)  # centred 30×30, mod 4
    with pytest.raises(OptionError, match="crop=2"):
        ValidationSet([odd], scale=4, crop=2)



def test_a_validation_image_of_one_colour_is_left_out(pool, caplog):
    """A black frame sampled from a --val video comes back exactly from bicubic: PSNR +inf, and the baseline's mean
    in val.csv was inf (helper-92)."""
    from vsr.training.evaluate import bicubic_upscaler, validate

    black = HRImage("clip.mp4@0.000s", torch.zeros(3, 48, 64, dtype=torch.uint8))
    with caplog.at_level("WARNING"):
        val_set = ValidationSet([black, *pool], scale=4)
    assert val_set.names == ["a.png", "b.png"]
    assert "clip.mp4@0.000s: one colour throughout, so nothing to upscale: left out of validation" in caplog.text
    assert all(math.isfinite(value) for value in validate(bicubic_upscaler(4), val_set, 4).values())
    grey = HRImage("card.png", torch.full((3, 48, 64), 128, dtype=torch.uint8))
    with pytest.raises(InputError, match="every validation image is one colour throughout"):
        ValidationSet([black, grey], scale=4)


# ---- fetch_photos: attribution from the packages' copyright files ----

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lomiri-wallpapers

Files: *
Copyright: 2018, Someone
License: Expat

Files: 16.04/Bridge_by_Sander_Klootwijk.jpg
Copyright: 2018. Sander Klootwijk
License: CC-BY-SA-4.0

Files: nature/Aqua.jpg
       nature/LadyBird.jpg
Copyright: 2008, Charles Barbin
           2008, Hylke Bons
License: GPL-2+
 On Debian systems, see /usr/share/common-licenses/GPL-2.

Files: graphics/*
Copyright: 2012, Giacomo Barazzetti
License: CC-BY-SA-3.0
"""


def test_attribution_comes_from_the_matching_copyright_paragraph():
    from vsr.training.fetch_photos import PHOTOS, Photo, copyright_for, held_out, output_name, parse_copyright

    stanzas = parse_copyright(COPYRIGHT)
    assert len(stanzas) == 5 and stanzas[3]["Copyright"] == "2008, Charles Barbin\n2008, Hylke Bons"
    assert copyright_for(stanzas, "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg") == (
        "2018. Sander Klootwijk", "CC-BY-SA-4.0")
    assert copyright_for(stanzas, "usr/share/backgrounds/mate/nature/LadyBird.jpg") == (
        "2008, Charles Barbin; 2008, Hylke Bons", "GPL-2+")
    assert copyright_for(stanzas, "usr/share/graphics/logo.png") == ("2012, Giacomo Barazzetti", "CC-BY-SA-3.0")
    assert copyright_for(stanzas, "usr/share/backgrounds/other.jpg") == ("2018, Someone", "Expat")  # Files: *
    assert copyright_for(stanzas[:1][1:], "x.jpg")[0].startswith("see the package")
    # The 48 photos have distinct names; validation.txt names those val_holdout=6 holds out, README's run's six (it
    # named six others, "suggested", which nothing used).
    outputs = {output_name(package, file) for package, (_, files) in PHOTOS.items() for file in files}
    assert len(outputs) == 48
    photos = [Photo(name, "", "", "", (0, 0), (0, 0), "", "") for name in sorted(outputs)]
    assert sorted(held_out(photos)) == [
        "lxqt-after-the-rain.png", "lxqt-appleflower.png", "lxqt-this-is-not-windows.png", "mate-Blinds.png",
        "mate-YellowFlower.png", "plasma-ColdRipple.png"]
    assert output_name("plasma-workspace-wallpapers", "usr/share/wallpapers/Path/contents/images/2560x1600.jpg") == (
        "plasma-Path.png")


def test_an_image_sequence_is_a_video_never_held_out_for_validation(tmp_path):
    """A sequence's pattern was counted as one photo, and held out it failed as "no such file"."""
    from vsr.training.config import TrainConfig
    from vsr.training.sources import load_images
    from tests.training.test_trainer import write_photos

    photos = write_photos(tmp_path / "photos", count=3)
    frames = write_photos(tmp_path / "render", count=5, seed=1)
    for index, frame in enumerate(sorted(frames.iterdir())):
        frame.rename(frames / f"f{index + 1:04d}.png")
    paths = (str(frames / "f%04d.png"), *(str(p) for p in sorted(photos.iterdir())))
    for holdout in (1, 2):
        training, validation = load_images(TrainConfig(train_paths=paths, val_holdout=holdout, frames_per_video=5,
                                                       patch_size=16))
        assert (len(training), len(validation)) == (3 - holdout + 5, holdout)
    with pytest.raises(OptionError, match="val_holdout=3: the training data hold 3 photos"):
        load_images(TrainConfig(train_paths=paths, val_holdout=3))


def test_val_paths_take_the_place_of_val_holdout_with_the_dali_loader(tmp_path, caplog):
    """The small_cpu_* recipes set val_holdout=4: with loader=dali, --val was refused ("give val_paths instead")."""
    from vsr.training.config import TrainConfig
    from vsr.training.sources import dali_sources
    from tests.training.test_trainer import write_photos

    video = make_clip(tmp_path / "a.mp4", frames=4, size=(64, 48))
    photos = write_photos(tmp_path / "val", count=2)
    videos, validation = dali_sources(TrainConfig(loader="dali", train_paths=(str(video),), val_holdout=4,
                                                  val_paths=(str(photos),)))
    assert videos == [video] and sorted(image.name for image in validation) == ["photo0.png", "photo1.png"]
    # A broken or empty validation file is left out with a warning, as loader=memory leaves it out (it ended the run).
    (photos / "empty.png").write_bytes(b"")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    videos, validation = dali_sources(TrainConfig(loader="dali", train_paths=(str(video),), val_paths=(str(photos),)))
    assert sorted(image.name for image in validation) == ["photo0.png", "photo1.png"]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    for name in ("empty.png: not a readable image", "broken.jpg: "):
        assert any(name in message and message.endswith(": left out") for message in warnings), name
    (photos / "photo0.png").unlink()
    (photos / "photo1.png").unlink()
    with pytest.raises(InputError, match=r"no file could be read: .*\(and 1 more file left out\)"):
        dali_sources(TrainConfig(loader="dali", train_paths=(str(video),), val_paths=(str(photos),)))
    with pytest.raises(OptionError, match="val_holdout keeps photos out, and there are none; give val_paths"):
        dali_sources(TrainConfig(loader="dali", train_paths=(str(video),), val_holdout=4))


def test_a_training_runs_folder_inside_the_data_is_not_data(tmp_path):
    """A run written under its --data folder (-o photos/run) fed its curves.png back to the next run as a photo
    (helper-81)."""
    data = tmp_path / "photos"
    run = data / "run"
    (run / "models").mkdir(parents=True)
    for path in (data / "a.png", run / "curves.png", run / "models" / "iter_0000001.png"):
        write_image(path, Image(rgb=torch.rand(3, 8, 8)))
    (run / "train.csv").write_text("iteration\n1\n")
    assert expand_sources([data]) == [data / "a.png"]


def test_hidden_folders_are_left_out_and_linked_folders_followed(tmp_path):
    """A photo in .thumbnails/ was trained on (only hidden files were skipped), and a dataset linked into the data
    folder (data/div2k -> /mnt/div2k) was skipped without a word: rglob does not follow links to folders."""
    elsewhere, data = tmp_path / "elsewhere", tmp_path / "data"
    for path in (elsewhere / "b.png", data / "a.png", data / ".thumbnails" / "a.png", data / "sub" / ".c.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, Image(rgb=torch.rand(3, 8, 8)))
    (data / "linked").symlink_to(elsewhere)
    (data / "sub" / "up").symlink_to(data)  # a loop: each real folder is read once
    (data / "gone.png").symlink_to(tmp_path / "missing.png")
    expected = [data / "a.png", data / "linked" / "b.png"]
    assert expand_sources([data]) == expected
    assert list_photos(data) == expected


def test_an_interlaced_video_is_sampled_deinterlaced(tmp_path):
    """Training took the frames of an interlaced video as they were stored, two fields woven together: the model
    learnt their comb (vsr upscale deinterlaces such a stream by default)."""
    from tests.pipelines.clips import make_interlaced_clip

    clip = make_interlaced_clip(tmp_path / "25i.mp4", frames=8, size=(64, 48))
    with open_decoder(clip, deinterlace="auto") as decoder:
        deinterlaced = {f"25i.mp4@{float(pts * decoder.info.time_base):.3f}s": frame for frame, pts in decoder}
    for count in (8, 3):  # every frame (one pass), and frames at chosen times (a seek each)
        sampled = sample_video_frames(clip, count, min_difference=0)
        assert len(sampled) == count
        for image in sampled:
            assert torch.equal(image.pixels, deinterlaced[image.name]), image.name


def test_colors_hidden_under_transparent_pixels_are_not_trained_on(tmp_path):
    """Alpha was dropped with the colors under it kept: a stray red that an encoder left under the transparent half
    of a picture was trained on, with a hard edge along the transparency (vsr upscale fills such colors from the
    visible ones around them before the model sees them)."""
    import av
    from vsr.pipelines.images import read_image

    rgb = torch.zeros(3, 32, 48)
    rgb[1] = torch.linspace(0, 1, 48)  # a visible green ramp on the left...
    rgb[0, :, 24:], rgb[1, :, 24:] = 1, 0  # ...and red where nothing shows
    alpha = torch.ones(1, 32, 48)
    alpha[:, :, 24:] = 0
    photo = tmp_path / "sprite.png"
    write_image(photo, Image(rgb=rgb, alpha=alpha))
    assert read_image(photo).rgb[0, :, 24:].min() == 1  # (the file does hide red there)
    video = tmp_path / "sprite.mkv"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "bgra"
        rgba = torch.cat([rgb, alpha]).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        for _ in range(2):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format="bgra")))
        out.mux(stream.encode())
    for image in (load_photo(photo), sample_video_frames(video, 1)[0]):
        hidden, visible = image.pixels[:, :, 24:], image.pixels[:, :, :24]
        assert hidden[0].max() == 0, image.name  # no red anywhere: the visible colors carried on
        assert 0 < hidden[1].min() and hidden[1].max() <= visible[1].max(), image.name  # the ramp's greens
        assert torch.equal(visible[1, 0], rgb[1, 0, :24].mul(255).round().to(torch.uint8)), image.name


def test_a_video_cut_short_gives_the_frames_it_holds_and_one_with_none_is_one_line(tmp_path):
    """A download cut short keeps its header, which still says 2 s: every time sampled across those 2 s came after its
    last frame, so it gave no frame and no word (a run on it alone said "no training images")."""
    from tests.pipelines.media_fixtures import ffmpeg

    whole = tmp_path / "whole.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2", "-g", "5", "-movflags", "+faststart", whole)
    data = whole.read_bytes()
    pictures = data.index(b"mdat") + 4  # the header, then the frames
    (tmp_path / "cut.mp4").write_bytes(data[: pictures + (len(data) - pictures) // 4])
    (tmp_path / "header.mp4").write_bytes(data[:pictures])
    frames = sample_video_frames(tmp_path / "cut.mp4", 4, min_difference=0)
    assert len(frames) == 4 and all(float(image.name.split("@")[1][:-1]) < 1 for image in frames)
    with pytest.raises(InputError, match=r"header\.mp4: .*no (decodable frames|frame of it could be decoded)"):
        sample_video_frames(tmp_path / "header.mp4", 4)


def test_files_that_cannot_be_read_or_are_too_small_are_left_out_of_training_with_a_warning(tmp_path, caplog):
    """One empty, broken or cut-short file, or one thumbnail smaller than the patch, among a folder's photos ended
    the whole run (fix it, start again, meet the next); a JPEG cut short was trained on, its missing half filled with
    one color by FFmpeg."""
    from vsr.training.config import TrainConfig
    from vsr.training.sources import load_images

    data = tmp_path / "data"
    data.mkdir()
    _write(data / "good.png", _random_image("x", 40, 48, 1).pixels)
    _write(data / "held.png", _random_image("x", 40, 48, 2).pixels)
    _write(data / "thumb.png", _random_image("x", 16, 24, 3).pixels)
    cut = _write(data / "cut.jpg", _random_image("x", 64, 64, 4).pixels)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (data / "empty.png").write_bytes(b"")
    (data / "notes.mp4").write_text("not a video")
    config = TrainConfig(train_paths=(str(data),), val_paths=(str(data / "held.png"), str(data / "empty.png")),
                         patch_size=32)
    training, validation = load_images(config)
    assert [image.name for image in training] == ["good.png"]  # (held.png validates: it is not trained on)
    assert [image.name for image in validation] == ["held.png"]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    for name in ("cut.jpg: damaged or cut short", "empty.png: not a readable image", "notes.mp4"):
        assert any(name in message and message.endswith(": left out") for message in warnings), name
    assert any("1 image or frame smaller than the 32×32 patch left out of training: thumb.png (24×16)" in message
               for message in warnings)
    with pytest.raises(InputError, match=r"no file could be read: .*cut\.jpg: damaged .* \(and 2 more files left out"):
        load_images(TrainConfig(train_paths=tuple(str(data / name) for name in ("cut.jpg", "empty.png", "notes.mp4"))))
    # What to do is said: a patch the largest holds, or (stage gan, whose discriminator takes 128 or 256) larger ones.
    with pytest.raises(InputError, match=r"every training image is smaller than the 64×64 patch \(the largest: "
                                         r"good\.png, 48×40\); a patch it holds: --set patch_size=40$"):
        load_images(TrainConfig(train_paths=(str(data / "good.png"),), patch_size=64))
    with pytest.raises(InputError, match="discriminator takes 128 or 256 patches: train it on larger pictures$"):
        load_images(TrainConfig(stage="gan", train_paths=(str(data / "good.png"),), patch_size=128))
    with pytest.raises(InputError, match=r"cut\.jpg: damaged or cut short"):  # vsr eval: scores no made-up pixels
        collect_images([data])


def test_validation_files_under_the_training_folder_are_left_out_of_training(tmp_path, caplog):
    """--data footage/ --val footage/holdout/: the held-out clip was trained on too, and validation scored what
    training saw (helper-147)."""
    from vsr.training.config import TrainConfig
    from vsr.training.sources import load_images

    data = tmp_path / "footage"
    (data / "holdout").mkdir(parents=True)
    for index, name in enumerate(("a.png", "b.png", "holdout/held.png")):
        _write(data / name, _random_image(name, 40, 48, index).pixels)
    config = TrainConfig(train_paths=(str(data),), val_paths=(str(data / "holdout"),), patch_size=32)
    training, validation = load_images(config)
    assert sorted(image.name for image in training) == ["a.png", "b.png"]
    assert [image.name for image in validation] == ["held.png"]
    assert "1 validation file is among the training data too: left out of training" in caplog.text
    with pytest.raises(InputError, match="every training file is a validation file too"):
        load_images(TrainConfig(train_paths=(str(data / "holdout"),), val_paths=(str(data),), patch_size=32))


def test_an_animated_png_is_sampled_as_a_video(tmp_path):
    """An animated PNG among the photos was "not an image (FFmpeg reads it as 'apng')" (vsr upscale takes it as a
    video); as a photo it could also be held out for validation."""
    from PIL import Image as PILImage
    from vsr.training.config import TrainConfig
    from vsr.training.sources import load_images

    frames = [PILImage.fromarray(_random_image("x", 32, 40, seed).pixels.permute(1, 2, 0).numpy()) for seed in (1, 2)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:], duration=100)
    for index in range(2):
        _write(tmp_path / f"photo{index}.png", _random_image("x", 32, 40, 3 + index).pixels)
    training, validation = load_images(TrainConfig(train_paths=(str(tmp_path),), val_holdout=1, patch_size=16))
    assert [image.name for image in training][1:] == ["anim.png@0.000s", "anim.png@0.100s"]  # (photos come first)
    assert [image.name for image in validation + training[:1]] in (["photo0.png", "photo1.png"],
                                                                   ["photo1.png", "photo0.png"])
    assert torch.equal(training[2].pixels, _random_image("x", 32, 40, 2).pixels)


def test_a_validation_image_too_small_to_score_is_left_out(pool, caplog):
    """A 20×16 image among the --val photos passed the checks of the data and ended the run at its first validation,
    with a line that did not name it ("images of 8×12 (after cropping 4) are smaller than the 11×11 SSIM window")."""
    from vsr.training.evaluate import bicubic_upscaler, validate

    small = _random_image("small.png", 16, 20, 3)
    with caplog.at_level("WARNING"):
        val_set = ValidationSet([small, *pool], scale=4, crop=512)
    assert val_set.names == ["a.png", "b.png"]
    assert "small.png: 20×16 pixels are too few to score at ×4 (it takes 20×20 or more)" in caplog.text
    assert all(math.isfinite(value) for value in validate(bicubic_upscaler(4), val_set, 4).values())
    assert ValidationSet([_random_image("edge.png", 20, 21, 4)], scale=4).names == ["edge.png"]  # 20×20: enough
    with pytest.raises(InputError, match="every validation image is one colour throughout or too small"):
        ValidationSet([small], scale=4)


def test_a_photo_held_out_for_validation_that_cannot_be_read_gives_its_place_to_the_next(tmp_path, caplog):
    """val_holdout=1 picked the photo whose name hashes lowest, an empty file: the run stopped with "no file could be
    read" while three good photos were there."""
    from vsr.training.config import TrainConfig
    from vsr.training.sources import load_images

    (tmp_path / "new26.png").write_bytes(b"")  # (its name hashes below the others')
    for index in range(3):
        _write(tmp_path / f"photo{index}.png", _random_image("x", 32, 40, index).pixels)
    training, validation = load_images(TrainConfig(train_paths=(str(tmp_path),), val_holdout=1, patch_size=16))
    assert [image.name for image in validation] == ["photo0.png"]  # (the next lowest)
    assert [image.name for image in training] == ["photo1.png", "photo2.png"]
    assert "new26.png: not a readable image" in caplog.text
    with pytest.raises(OptionError, match="val_holdout=3: the training data hold 3 photos that can be read"):
        load_images(TrainConfig(train_paths=(str(tmp_path),), val_holdout=3, patch_size=16))


def test_files_left_out_by_their_names_are_said(tmp_path, caplog):
    """A folder's GIFs, .apng files and files without a suffix were passed over without a word (and a folder of
    them only was "no images or videos in it")."""
    caplog.set_level("INFO", logger="vsr.training")
    _write(tmp_path / "a.png", _random_image("x", 8, 8, 1).pixels)
    for name in ("b.gif", "IMG_0001", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert expand_sources([tmp_path]) == [tmp_path / "a.png"]
    assert f"{tmp_path}: 3 files that are no image or video by name left out: IMG_0001, b.gif, notes.txt" in (
        caplog.text)
    (tmp_path / "a.png").unlink()
    with pytest.raises(InputError, match=r"no images or videos in it \(3 other files, such as IMG_0001\)"):
        expand_sources([tmp_path])
    # One is one file ("1 files that are no image or video"): counts agree with their nouns.
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "IMG_0001").unlink()
    with pytest.raises(InputError, match=r"no images or videos in it \(1 other file, such as b\.gif\)$"):
        expand_sources([tmp_path])
    assert f"{tmp_path}: 1 file that is no image or video by name left out: b.gif" in caplog.text


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS (Linux)")
def test_reading_the_pool_keeps_little_more_than_its_pixels_resident(tmp_path):
    """FFmpeg's decoding threads free into glibc arenas of their own, which kept it: 200 1024×768 PNGs (450 MB of
    pixels) left 0.3 to 1.8 GB more resident than before reading, so a pool let take half the memory available went
    past all of it. Measured in a process of its own."""
    generator = torch.Generator().manual_seed(0)
    for index in range(40):
        noise = torch.randint(0, 256, (3, 768, 1024), dtype=torch.uint8, generator=generator)
        write_image(tmp_path / f"{index:02d}.png", Image(noise))
    code = (
        "import sys; from pathlib import Path; from vsr.training.data import read_images\n"
        "def rss(): return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) * 1024\n"
        "before = rss(); images = list(read_images(sorted(Path(sys.argv[1]).glob('*.png'))))\n"
        "print(rss() - before, sum(image.pixels.numel() for image in images))\n")
    result = subprocess.run([sys.executable, "-c", code, tmp_path], capture_output=True, text=True, timeout=120)
    grown, pixels = map(int, result.stdout.split())
    assert pixels == 40 * 3 * 768 * 1024 and grown < 1.5 * pixels  # (2 to 4.6 before)


def test_videos_alone_with_val_holdout_say_that_videos_are_never_held_out(tmp_path):
    """The recipes' val_holdout=4 on videos alone said "the training data hold 0 photos", and nothing of --val."""
    from vsr.training.config import TrainConfig
    from vsr.training.sources import load_images

    video = make_clip(tmp_path / "clip.mp4", frames=8, size=(64, 48))
    with pytest.raises(OptionError) as refused:
        load_images(TrainConfig(train_paths=(str(video),), val_holdout=4))
    assert str(refused.value) == (
        "val_holdout=4: the training data hold videos and no photos, and videos are never held out (a video's frames "
        "look alike: those held out would score what training saw); give validation videos or photos with --val "
        "(val_paths), or --set val_holdout=0")


def test_a_damaged_videos_decoding_warnings_are_said_once(tmp_path, caplog):
    """Sampling opens the video once per sampled time, from the keyframe before it: a damaged stretch was warned
    about by two or three of them ("decoding error near 1.400 s" three times, 13 lines for 4)."""
    clip = make_clip(tmp_path / "whole.mp4", frames=60, size=(128, 96))
    damaged = corrupt_middle(clip, tmp_path / "damaged.mp4", length=400)
    caplog.set_level("WARNING", logger="vsr")
    assert len(sample_video_frames(damaged, 8)) == 8
    said = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("decoding error near" in line for line in said), said
    assert len(said) == len(set(said)), said
