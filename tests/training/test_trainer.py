"""The training loop on tiny networks and tiny photos: both stages run, EMA, schedules, exports, config errors.

The helpers `write_photos` and `tiny_config` are shared with test_resume.py, test_ddp.py and the CLI tests.
"""

import dataclasses
import logging
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from vsr.errors import InputError, ModelError, OptionError, OutputError
from vsr.models.checkpoint import load_model, read_state_dict
from vsr.models.resample import imresize
from vsr.models.rrdbnet import RRDBNet
from vsr.pipelines.images import Image, read_image, write_image
from vsr.training.checkpoints import export_generator, load_state
from vsr.training.config import RECIPES_DIR, TrainConfig, load_recipe, parse_overrides
from vsr.training.degrade import downscale, quantize_8bit
from vsr.training.logs import read_csv, require_matplotlib
from vsr.training.trainer import EpochBatches, ema_update, resume, train

TINY_RECIPE = """\
# A network and patches small enough for tests on two shared CPU cores.
stage = "psnr"
patch_size = 32
batch_size = 2
num_workers = 0
num_feat = 8
num_block = 1
num_grow_ch = 32  # spandrel's fixed growth channels
disc_num_feat = 8
perceptual_layer = "conv1_2"  # VGG19's first block: the gan stage stays cheap
total_iters = 4
val_every = 2
save_every = 2
log_every = 1
val_holdout = 1
val_crop = 64
device = "cpu"
"""


def write_photos(folder: Path, count: int = 4, size: int = 64, seed: int = 0) -> Path:
    """`count` smooth random RGB PNGs (noise upsampled: some structure for a network to learn)."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for index in range(count):
        coarse = torch.rand(1, 3, size // 8, size // 8, generator=generator)
        fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)[0]
        write_image(folder / f"photo{index}.png", Image(rgb=fine))
    return folder


def tiny_config(tmp_path: Path, **changes) -> TrainConfig:
    """The tiny recipe on photos in tmp_path/photos (written once), running into tmp_path/run."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    photos = tmp_path / "photos"
    if not photos.is_dir():
        write_photos(photos, size=160 if changes.get("patch_size", 32) > 32 else 64)
    config = load_recipe(recipe, {"train_paths": [str(photos)], "out_dir": str(tmp_path / "run")})
    return dataclasses.replace(config, **changes)


def test_ema_update_is_decay_times_old_plus_the_rest_times_new():
    torch.manual_seed(0)
    ema, model = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    old = {key: value.clone() for key, value in ema.state_dict().items()}
    ema_update(ema, model, 0.9)
    for key, value in ema.state_dict().items():
        torch.testing.assert_close(value, 0.9 * old[key] + 0.1 * model.state_dict()[key], rtol=0, atol=1e-7)


def test_training_updates_the_ema_after_each_generator_step(tmp_path):
    config = tiny_config(tmp_path, total_iters=1, ema_decay=0.9, val_holdout=0)
    train(config)
    state = load_state(config.out_dir)
    torch.manual_seed(config.seed)  # the trainer seeds before building the generator: the same initial weights
    initial = RRDBNet(num_feat=8, num_block=1, num_grow_ch=32).state_dict()
    for key, value in state["ema"].items():
        expected = 0.9 * initial[key] + 0.1 * state["generator"][key]
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-7)
    assert any(not torch.equal(initial[key], state["generator"][key]) for key in initial)


def test_bf16_on_the_cpu_trains_under_autocast_with_fp32_weights(tmp_path):
    """bf16 mixed precision on the CPU: the losses of the same run differ from fp32's (autocast is on) by little, and
    the weights, optimizer state and export stay fp32."""
    losses = {}
    for precision in ("fp32", "bf16"):
        config = tiny_config(tmp_path, precision=precision, total_iters=3, val_holdout=0,
                             out_dir=str(tmp_path / precision))
        train(config)
        losses[precision] = [row["l_pix"] for row in read_csv(tmp_path / precision / "train.csv")]
        state = load_state(config.out_dir)
        assert {value.dtype for value in [*state["generator"].values(), *state["ema"].values()]} == {torch.float32}
    assert losses["fp32"] != losses["bf16"]
    assert all(abs(a - b) < 0.05 * a for a, b in zip(losses["fp32"], losses["bf16"])), losses


def test_psnr_stage_trains_validates_and_exports_the_ema(tmp_path):
    config = tiny_config(tmp_path, milestones=(2,))
    result = train(config)
    assert result.iteration == 4 and result.model_path == tmp_path / "run" / "model.pth"

    rows = read_csv(tmp_path / "run" / "train.csv")
    assert [row["iteration"] for row in rows] == [1, 2, 3, 4]
    assert [row["lr"] for row in rows] == [2e-4, 2e-4, 1e-4, 1e-4]  # halved after the milestone
    assert all(math.isfinite(row["l_pix"]) and row["l_pix"] > 0 for row in rows)

    val = read_csv(tmp_path / "run" / "val.csv")
    assert [row["iteration"] for row in val] == [0, 2, 4]
    assert len({row["bicubic_psnr_y"] for row in val}) == 1  # the baseline is computed once
    assert 0 < val[0]["ssim_y"] < 1 and val[0]["psnr_y"] != val[0]["psnr_rgb"]
    assert result.validation["psnr_y"] == val[-1]["psnr_y"]

    loaded = load_model(result.model_path)
    assert loaded.spec.hyperparameters["num_feat"] == 8 and loaded.spec.scale == 4
    ema = load_state(config.out_dir)["ema"]
    for suffix in (".pth", ".safetensors"):
        exported = read_state_dict(result.model_path.with_suffix(suffix))
        assert exported.keys() == ema.keys() and all(torch.equal(exported[k], ema[k]) for k in ema)
    assert (tmp_path / "run" / "models" / "iter_0000002.pth").is_file()


def test_the_run_counts_the_validation_images_it_scores(tmp_path, caplog):
    """It counted those given: a black frame left out of the scores was counted in."""
    val = write_photos(tmp_path / "val", count=2)
    write_image(val / "black.png", Image(rgb=torch.zeros(3, 64, 64)))
    config = tiny_config(tmp_path, total_iters=1, val_holdout=0, val_paths=[str(val)])
    with caplog.at_level(logging.INFO, logger="vsr"):
        train(config)
    assert "black.png: one colour throughout" in caplog.text
    assert "2 validation images;" in caplog.text


def test_each_validation_writes_a_sample_sheet_of_bicubic_the_model_and_the_original(tmp_path):
    """Numbers alone do not show what a model makes of a user's frames: each validation writes one PNG whose rows are
    validation images as bicubic | the EMA model | the original (BasicSR writes its validation images)."""
    val = tmp_path / "val"
    val.mkdir()
    square = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    wide = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2))
    write_image(val / "a.png", Image(rgb=F.interpolate(square[None], size=(64, 64), mode="bicubic")[0].clamp(0, 1)))
    write_image(val / "b.png", Image(rgb=F.interpolate(wide[None], size=(40, 48), mode="bicubic")[0].clamp(0, 1)))
    config = tiny_config(tmp_path, total_iters=2, val_holdout=0, val_paths=[str(val)])
    train(config)
    samples = tmp_path / "run" / "samples"
    assert sorted(path.name for path in samples.iterdir()) == ["iter_0000000.png", "iter_0000002.png"]
    sheet = read_image(samples / "iter_0000002.png").rgb
    assert sheet.shape == (3, 64 + 40, 3 * 64)  # a row per image, as wide as the widest
    rows = {"a.png": sheet[:, :64], "b.png": sheet[:, 64:, :3 * 48]}
    model = load_model(tmp_path / "run" / "models" / "iter_0000002.pth").module
    for name, row in rows.items():
        original = read_image(val / name).rgb
        lr = downscale(original[None], 4, quantize=True)
        width = original.shape[-1]
        torch.testing.assert_close(row[:, :, :width], quantize_8bit(imresize(lr, 4, "bicubic"))[0], rtol=0, atol=1e-6)
        with torch.no_grad():
            torch.testing.assert_close(row[:, :, width:2 * width], quantize_8bit(model(lr))[0], rtol=0, atol=1 / 255)
        torch.testing.assert_close(row[:, :, 2 * width:], original, rtol=0, atol=1e-6)
    assert not sheet[:, 64:, 3 * 48:].any()  # the narrower row padded with black

    quiet = tiny_config(tmp_path, total_iters=1, val_holdout=0, val_paths=[str(val)], val_samples=0,
                        out_dir=str(tmp_path / "quiet"))
    train(quiet)
    assert not (tmp_path / "quiet" / "samples").exists()


def test_max_minutes_ends_the_run_like_total_iters_and_a_resume_continues_the_clock(tmp_path):
    config = tiny_config(tmp_path, max_minutes=1e-6)  # 60 µs: up after the first iteration
    result = train(config)
    assert result.iteration == 1 and result.model_path == tmp_path / "run" / "model.pth"
    first = read_csv(tmp_path / "run" / "val.csv")
    assert [row["iteration"] for row in first] == [0, 1]  # validated at the stop, as at total_iters
    assert 0 <= first[0]["elapsed_s"] <= first[1]["elapsed_s"]
    spent = load_state(config.out_dir)["elapsed_s"]
    assert spent > 0

    result = resume(config.out_dir, {"max_minutes": "none"})
    assert result.iteration == 4
    val = read_csv(tmp_path / "run" / "val.csv")
    assert [row["iteration"] for row in val] == [0, 1, 2, 4]
    assert val[-1]["elapsed_s"] >= round(spent, 1)  # the time before the resume counts


def test_exported_model_loads_in_spandrel(tmp_path):
    from tests.models.test_spandrel import spandrel

    config = tiny_config(tmp_path, total_iters=1, val_holdout=0)
    result = train(config)
    descriptor = spandrel.ModelLoader().load_from_file(result.model_path)
    assert descriptor.architecture.id == "ESRGAN" and descriptor.scale == 4
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(descriptor.model.eval()(x), load_model(result.model_path).module(x), rtol=0,
                                   atol=1e-5)


def test_gan_stage_steps_both_networks_from_the_pretrained_generator(tmp_path):
    config = tiny_config(tmp_path, stage="gan", patch_size=128, allow_random_vgg=True, total_iters=2,
                         val_holdout=0)
    torch.manual_seed(1)
    pretrained, _ = export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=32), config, tmp_path / "stage1")
    config = dataclasses.replace(config, pretrained=str(pretrained))

    train(config, stop_at=1)
    after_one = load_state(config.out_dir)
    resume(config.out_dir)
    after_two = load_state(config.out_dir)

    start = read_state_dict(pretrained)
    assert all(not torch.equal(start[key], after_one["generator"][key]) for key in start if key.endswith("weight"))
    discriminator = after_one["discriminator"]
    changed = [key for key in discriminator if not torch.equal(discriminator[key], after_two["discriminator"][key])]
    assert any(key.startswith("conv") for key in changed) and any(key.startswith("linear") for key in changed)
    rows = read_csv(tmp_path / "run" / "train.csv")
    assert [row["iteration"] for row in rows] == [1, 2]
    for key in ("l_pix", "l_percep", "l_g_gan", "l_g_total", "l_d"):
        assert all(math.isfinite(row[key]) and row[key] > 0 for row in rows), key
    # The generator's total is the paper's weighted sum of its parts.
    row = rows[0]
    assert row["l_g_total"] == pytest.approx(row["l_percep"] + 5e-3 * row["l_g_gan"] + 1e-2 * row["l_pix"], rel=1e-5)


def test_gan_stage_refuses_a_pretrained_model_of_another_shape(tmp_path):
    config = tiny_config(tmp_path, stage="gan", patch_size=128, allow_random_vgg=True)
    other, _ = export_generator(RRDBNet(num_feat=16, num_block=1, num_grow_ch=32),
                                dataclasses.replace(config, num_feat=16), tmp_path / "other")
    with pytest.raises(ModelError, match="num_feat"):
        train(dataclasses.replace(config, pretrained=str(other)))


def test_a_folder_holding_a_run_is_not_overwritten(tmp_path):
    config = tiny_config(tmp_path, total_iters=1, val_holdout=0)
    train(config)
    with pytest.raises(OutputError, match="--resume"):
        train(config)


def test_plot_without_matplotlib_is_an_option_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without it gives: ImportError
    with pytest.raises(OptionError, match=r"vsr\[train\]"):
        require_matplotlib()
    with pytest.raises(OptionError, match="matplotlib"):
        train(tiny_config(tmp_path, plot=True))
    assert not (tmp_path / "run" / "state.pt").exists()


@pytest.mark.parametrize("asked, current, expected", [("cuda", 1, "cuda:1"), ("cuda:2", 0, "cuda:2"),
                                                       ("auto", 1, "cuda:0")])
def test_a_cuda_device_without_a_number_is_the_current_one(monkeypatch, asked, current, expected):
    """device=cuda trains on the current GPU: torch.cuda.set_device refuses a device without an index ("Expected a
    torch.device with a specified index"), which ended every such run on a GPU before its first step. (CUDA is
    stood in for: the stand-in of set_device checks the index as torch's does before any CUDA call.)"""
    from torch.cuda._utils import _get_device_index

    from vsr.training import trainer

    chosen = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: chosen.append(_get_device_index(device)))
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        device, rank, world, started = trainer._setup_device(TrainConfig(device=asked))
    finally:  # (process-wide settings that the setup makes for CUDA)
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = flags
    assert (device, rank, world, started) == (torch.device(expected), 0, 1, False)
    assert chosen == [torch.device(expected).index]


def test_epoch_batches_split_each_batch_between_processes():
    assert list(EpochBatches(3, 4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert list(EpochBatches(3, 4, first=2)) == [[8, 9, 10, 11]]
    assert list(EpochBatches(2, 4, rank=1, world_size=2)) == [[2, 3], [6, 7]]


# ---- configuration ----


def test_shipped_recipes_parse_and_hold_the_papers_numbers():
    names = sorted(path.stem for path in RECIPES_DIR.glob("*.toml"))
    assert names == ["esrgan_x4_gan", "esrgan_x4_psnr", "small_cpu_gan", "small_cpu_psnr"]
    psnr, gan = load_recipe("esrgan_x4_psnr"), load_recipe("esrgan_x4_gan")
    assert (psnr.lr, psnr.batch_size, psnr.patch_size, psnr.num_block, psnr.ema_decay) == (2e-4, 16, 128, 23, 0.999)
    assert psnr.milestones == (200_000, 400_000, 600_000, 800_000) and psnr.gamma == 0.5
    assert (gan.lr, gan.milestones, gan.pixel_weight, gan.gan_weight) == (1e-4, (50_000, 100_000, 200_000, 300_000),
                                                                         1e-2, 5e-3)
    assert gan.pretrained == str(Path(psnr.out_dir) / "model.pth")


def test_overrides_are_toml_values_checked_against_the_field_types():
    config = TrainConfig().replace(parse_overrides(
        ["lr=1e-4", "milestones=[10, 20]", "train_paths=photos/", "betas=[0.9, 0.99]", "total_iters=1e5",
         "val_crop=none", "plot=true", "stage=gan"]))
    assert (config.lr, config.milestones, config.train_paths, config.betas) == (1e-4, (10, 20), ("photos/",),
                                                                                (0.9, 0.99))
    assert (config.total_iters, config.val_crop, config.plot, config.stage) == (100_000, None, True, "gan")


@pytest.mark.parametrize("item, message", [
    ("lrr=1", "unknown key 'lrr' (did you mean lr?), expected one of: stage, train_paths"),
    ("total_iter=5", "unknown key 'total_iter' (did you mean total_iters?), expected one of: stage, train_paths"),
    ("colour=1", "unknown key 'colour', expected one of: stage, train_paths"),  # (no key near it: no guess)
    ("lr=fast", "lr='fast' is not a valid value, expected float"),
    ("betas=[0.9]", "betas=[0.9] is not a valid value"),
    ("batch_size=2.5", "batch_size=2.5"),
    ("stage=adversarial", "stage='adversarial': expected one of psnr, gan"),
    ("patch_size=30", "patch_size=30: expected a multiple of 4"),
    ("ema_decay=1", "ema_decay=1.0"),
    ("milestones=[20, 10]", "milestones=[20, 10]"),
    ("max_minutes=0", "max_minutes=0.0: expected a number of minutes above 0"),
    ("val_crop=12", "val_crop"),  # (×4: what is left of 12 inside a border of 4 cannot hold SSIM's 11×11 window)
    ("seed=100000000000000000000", "seed=100000000000000000000: expected a whole number below 2"),
    ("seed=4294967296", "seed=4294967296: expected a whole number below 2**32"),  # (numpy's seeds: a traceback)
    ("out_dir=''", "out_dir is empty: name the run's folder"),
    ("lr", "expected KEY=VALUE"),
])
def test_bad_overrides_name_the_key_and_what_is_allowed(item, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        TrainConfig().replace(parse_overrides([item]))


def test_gan_stage_needs_a_patch_the_discriminator_takes():
    with pytest.raises(OptionError, match=r"patch_size=96: the gan stage's discriminator takes \(128, 256\)"):
        TrainConfig(stage="gan", patch_size=96)


def test_unknown_recipe_lists_the_shipped_ones(tmp_path):
    with pytest.raises(InputError, match="no_such_recipe: no such recipe file; shipped recipes: .*small_cpu_psnr"):
        load_recipe("no_such_recipe")
    # A shipped name mistyped is guessed, as a model's is (the list that follows hid the one meant).
    with pytest.raises(InputError, match=r"small_cpu_psnrr: no such recipe file \(did you mean small_cpu_psnr\?\);"):
        load_recipe("small_cpu_psnrr")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = \n")
    with pytest.raises(InputError, match="not a valid TOML recipe"):
        load_recipe(bad)


def test_a_run_that_diverges_stops_with_one_line_and_exports_nothing(tmp_path):
    """A NaN model was exported and reported as a success (and upscaled to black)."""
    from vsr.errors import ModelError

    import threading

    config = tiny_config(tmp_path, total_iters=4, log_every=2, save_every=100, lr=1e30, ema_decay=0, val_holdout=0)
    hook = threading.excepthook
    with pytest.raises(ModelError, match="training diverged at iteration 2: l_pix not finite .* no checkpoint"):
        train(config)
    assert not (tmp_path / "run" / "model.pth").exists() and not (tmp_path / "run" / "state.pt").exists()
    # The run's log is closed however the run ends: it kept TensorBoard's writer thread and replaced the process's
    # thread hook, which the next run in the process then took for the process's own.
    assert threading.excepthook is hook
    assert not [thread for thread in threading.enumerate() if type(thread).__name__ == "_AsyncWriterThread"]


@pytest.mark.parametrize("changes, message", [
    ({"val_holdout": 0}, "iteration 2: l_pix not finite .*/run/state.pt is the last checkpoint"),
    # The EMA after one step of lr 1e4: its weights are finite, its outputs not.
    ({}, "iteration 1: psnr_y, ssim_y, psnr_rgb, ssim_rgb not finite .* no checkpoint"),
])
def test_a_run_diverging_between_logs_writes_nothing_after_it(tmp_path, changes, message):
    """Finiteness was checked at log points only: between two of them, NaN rows went into val.csv and NaN models
    and checkpoints were saved, the last of which the error named to resume from."""
    config = tiny_config(tmp_path, total_iters=6, log_every=100, val_every=1, save_every=1, lr=1e4, **changes)
    with pytest.raises(ModelError, match=f"training diverged at {message}"):
        train(config)
    run = tmp_path / "run"
    assert not (run / "model.pth").exists()
    assert all(math.isfinite(value) for row in read_csv(run / "val.csv") for value in row.values())
    saved = [read_state_dict(path) for path in (run / "models").glob("*.pth")]
    if (run / "state.pt").exists():
        saved += [load_state(run)[part] for part in ("generator", "ema")]
    assert all(torch.isfinite(value).all() for weights in saved for value in weights.values())


def test_a_second_trainer_on_a_run_folder_is_one_line_and_touches_nothing(tmp_path):
    """Two trainers on one folder (two resumes, or two new runs with one out_dir) both ran, writing one log."""
    from vsr.training.trainer import LOCK_FILE, _lock_run

    config = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    train(config, stop_at=1)
    run = Path(config.out_dir)
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    running = _lock_run(run)  # what the first trainer holds for as long as it runs
    try:
        with pytest.raises(OutputError, match=f"another training process is running in this folder .*{LOCK_FILE}"):
            resume(run)
        for name in ("state.pt", "models"):  # (a new run into it, started before the first saved)
            (run / name).rename(run / f"{name}.kept")
        with pytest.raises(OutputError, match="another training process is running in this folder"):
            train(config)
        for name in ("state.pt", "models"):
            (run / f"{name}.kept").rename(run / name)
    finally:
        running.close()
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before
    assert resume(run).iteration == 2  # once the first has ended


def test_a_start_that_fails_leaves_no_folder_behind(tmp_path):
    """A bad pretrained path left an empty run folder."""
    config = tiny_config(tmp_path, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ModelError, match="no such checkpoint file"):
        train(config)
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # a folder the user made stays
    with pytest.raises(ModelError, match="no such checkpoint file"):
        train(config)
    assert (tmp_path / "run").is_dir()


def test_a_process_forked_from_a_trainer_does_not_keep_its_run_locked(tmp_path):
    """A DataLoader's worker, forked, held the run folder's lock for seconds after its trainer was killed (kill -9):
    a resume started at once was "another training process is running" (helper-81)."""
    from vsr.fsutil import locked

    held = locked(tmp_path / ".lock", "busy")
    started, said = os.pipe()
    child = os.fork()
    if child == 0:  # (the worker: lives on after the trainer)
        os.write(said, b"up")
        time.sleep(30)
        os._exit(0)
    try:
        assert os.read(started, 2) == b"up"
        held.close()  # the trainer is gone
        locked(tmp_path / ".lock", "busy").close()  # a resume takes the lock at once
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(started)
        os.close(said)


def test_a_growth_spandrel_cannot_load_is_warned_about(tmp_path, caplog):
    """spandrel's ESRGAN loader takes every RRDBNet to grow by 32: its load of such a run's model failed (helper-81)."""
    train(tiny_config(tmp_path, total_iters=1, val_holdout=0, num_grow_ch=8))
    assert "num_grow_ch=8: vsr upscale loads the model this run exports, but spandrel's" in caplog.text


def test_a_loader_worker_leaves_its_broken_connections_unsaid_and_says_other_errors():
    """A worker whose batch the stopped trainer was fetching printed its fd-sharing thread's broken connection
    ("Traceback ... resource_sharer.py ... self._listener.accept()") into the trainer's last lines: seen in about one
    `make test` in three, in the stop test of tests/cli/test_train_cli.py. Here the worker's setup in a process of its
    own, and the errors that thread meets handed to sys.excepthook as it hands them."""
    import subprocess

    code = """if True:
        import sys
        from vsr.training.trainer import _leave_stops_to_the_trainer
        _leave_stops_to_the_trainer(0)
        for error in (ConnectionResetError(104, "Connection reset by peer"), EOFError(), ValueError("a real bug")):
            sys.excepthook(type(error), error, None)
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ValueError: a real bug" in result.stderr
    assert "ConnectionResetError" not in result.stderr and "EOFError" not in result.stderr


def test_the_progress_bar_leaves_log_lines_and_a_stop_on_lines_of_their_own(tmp_path, capfd, caplog, monkeypatch):
    """On a terminal a validation's log line was written after the bar, on its line ("| 20/300 [...]vsr: INFO:
    iteration 20: PSNR-Y ..."), and a Ctrl-C's line came after the unfinished bar, which tqdm drew again below it
    when the process ended: the last line was a stale bar, not the command line's "interrupted; continue ..."."""
    from vsr.training import trainer

    caplog.set_level("INFO", logger="vsr.training")
    console = logging.StreamHandler(sys.stderr)  # (the command line's: logging.basicConfig's, on the root logger)
    console.setFormatter(logging.Formatter("vsr: %(levelname)s: %(message)s"))
    steps = 0

    def ema_update_until_a_ctrl_c(*args) -> None:  # (a Ctrl-C during the third step, after iteration 2's validation)
        nonlocal steps
        steps += 1
        if steps == 3:
            raise KeyboardInterrupt
        ema_update(*args)

    monkeypatch.setattr(trainer, "ema_update", ema_update_until_a_ctrl_c)
    logging.root.addHandler(console)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(tmp_path, total_iters=4), progress=True)
    finally:
        logging.root.removeHandler(console)
    said = capfd.readouterr().err
    validations = [line for line in said.split("\n") if "PSNR-Y" in line]
    assert len(validations) == 2  # iterations 0 and 2
    assert all(line.split("\r")[-1].startswith("vsr: INFO: iteration ") for line in validations), validations
    assert "2/4" in said and said.endswith("\n")  # the bar closed: what the command line says next is a line alone


def test_the_rate_and_eta_are_those_of_training_iterations_a_validation_left_out(tmp_path, monkeypatch, caplog):
    """A validation of 90 s (16 frames a video on a CPU) made the rate after it "0.00 it/s ETA 1:06:21", in the log
    and in train.csv. Here the trainer's clock is a counter that a training step moves by 1 s and a validation by
    90 s: every rate is 1 it/s."""
    from vsr.training import trainer
    from vsr.training.evaluate import validate
    from vsr.training.logs import TrainingClock

    seconds = 0.0

    def a_step_of_one_second(*args) -> None:
        nonlocal seconds
        seconds += 1
        ema_update(*args)

    def a_validation_of_90_seconds(*args, **kwargs) -> dict:
        nonlocal seconds
        seconds += 90
        return validate(*args, **kwargs)

    monkeypatch.setattr(trainer, "TrainingClock", lambda: TrainingClock(now=lambda: seconds))
    monkeypatch.setattr(trainer, "ema_update", a_step_of_one_second)
    monkeypatch.setattr(trainer, "validate", a_validation_of_90_seconds)
    caplog.set_level("INFO", logger="vsr.training")
    train(tiny_config(tmp_path, total_iters=4))  # (validations at iterations 0, 2 and 4; a log line each iteration)
    assert [row["it_per_s"] for row in read_csv(tmp_path / "run" / "train.csv")] == [1.0, 1.0, 1.0, 1.0]
    assert seconds == 4 + 3 * 90 + 90  # (bicubic's validation too, before the first: the validations did run)
    assert re.search(r"iteration 3/4 .* 1\.00 it/s  ETA 0:00:01", caplog.text)


def test_a_pretrained_model_of_another_architecture_is_named_and_not_matched_by_settings(tmp_path):
    """An SRVGGNetCompact checkpoint was told to set "scale, num_feat, num_block, num_grow_ch to match", which no
    setting can: vsr train trains RRDBNet alone."""
    from vsr.models.checkpoint import save_model
    from vsr.models.detect import spec_for
    from vsr.models.srvgg import SRVGGNetCompact

    hyperparameters = {"num_feat": 8, "num_conv": 2, "upscale": 4}
    other, _ = save_model(SRVGGNetCompact(**hyperparameters), spec_for("SRVGGNetCompact", hyperparameters),
                          tmp_path / "compact")
    with pytest.raises(ModelError) as raised:
        train(tiny_config(tmp_path, total_iters=1, val_holdout=0, pretrained=str(other)))
    assert "is SRVGGNetCompact ×4, and vsr train trains RRDBNet" in str(raised.value)
    assert "to match" not in str(raised.value)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_is_its_model_or_while_it_trains_its_state_wherever_a_checkpoint_is_taken(tmp_path):
    """--set pretrained=RUN_FOLDER said "unsupported checkpoint type '(no suffix)'", and `vsr upscale -m RUN_FOLDER`
    and `vsr interpolate` refused it while pretrained= took it: one rule everywhere (`checkpoint_of`)."""
    from vsr.models import zoo

    unfinished = tiny_config(tmp_path, total_iters=2, val_holdout=0)
    train(unfinished, stop_at=1)  # (state.pt alone: no model written yet)
    run = Path(unfinished.out_dir)
    state_ema = load_state(run)["ema"]
    loaded = zoo.load(run)
    assert (loaded.source, loaded.name) == (str(run / "state.pt"), "run")
    assert all(torch.equal(value, state_ema[key]) for key, value in loaded.module.state_dict().items())
    # lr 0 and no EMA: the model exported after one iteration is the one started from, to the bit
    config = dataclasses.replace(unfinished, total_iters=1, lr=0.0, ema_decay=0.0, pretrained=str(run),
                                 out_dir=str(tmp_path / "second"))
    exported = read_state_dict(train(config).model_path)
    assert all(torch.equal(exported[key], state_ema[key]) for key in state_ema)

    resume(run)  # (to its end: model.pth written, and preferred to the state)
    assert zoo.load(run).source == str(run / "model.pth")
    exported = read_state_dict(train(dataclasses.replace(config, out_dir=str(tmp_path / "third"))).model_path)
    started_from = read_state_dict(run / "model.pth")
    assert all(torch.equal(exported[key], started_from[key]) for key in started_from)

    with pytest.raises(ModelError) as refused:
        train(dataclasses.replace(config, pretrained=str(tmp_path / "photos"), out_dir=str(tmp_path / "fourth")))
    assert str(refused.value) == (f"pretrained={tmp_path / 'photos'}: is a folder, not a checkpoint file; a model is "
                                  "a checkpoint file, a training run's folder, a zoo name or a URL")


def test_a_run_folder_removed_while_it_trains_is_one_line(tmp_path, monkeypatch):
    """The run ended in a traceback: FileNotFoundError where the run's folder was looked into on the way out."""
    import shutil

    from vsr.training import trainer

    config = tiny_config(tmp_path, total_iters=4, val_holdout=0)
    steps = 0

    def ema_update_then_remove_the_folder(*args) -> None:
        nonlocal steps
        steps += 1
        ema_update(*args)
        if steps == 1:
            shutil.rmtree(config.out_dir)

    monkeypatch.setattr(trainer, "ema_update", ema_update_then_remove_the_folder)
    with pytest.raises(OutputError) as failed:
        train(config)
    assert str(failed.value) == (f"{config.out_dir}: the run's folder was removed while it trained, and what it held "
                                 "with it: start the run again")
