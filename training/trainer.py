"""ESRGAN's two training stages in one readable loop (after nanoGPT's train.py).

    config = load_recipe("small_cpu_psnr", {"train_paths": "photos/", "val_holdout": 4})
    result = train(config)                      # OUT_DIR/model.pth, state.pt, train.csv, val.csv
    result = resume("runs/small_cpu_psnr")      # continues exactly where state.pt stopped

Stage psnr: the generator minimises L1. Stage gan (from a stage-1 generator): the generator minimises
perceptual + 5e-3·RaGAN + 1e-2·L1 with the discriminator frozen, then the discriminator takes one step on the
same batch with the generator's output detached (alternating updates, ESRGAN section 3). After each generator
step the EMA of its weights is updated; validation and exports use the EMA.

Under `torchrun --nproc_per_node N -m vsr.cli train ...` each process trains on its 1/N of every batch with
DistributedDataParallel (NCCL on GPUs, gloo on CPUs); rank 0 alone validates and writes files.
"""

from __future__ import annotations

import copy
import datetime
import gc
import itertools
import logging
import math
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from vsr.errors import ModelError, OptionError, OutputError, Terminated, VsrError
from vsr.fsutil import locked, temporaries_of
from vsr.hardware import cpu_computes_bf16, in_bytes
from vsr.models.checkpoint import checkpoint_of, load_model, read_state_dict
from vsr.models.discriminator import VGGStyleDiscriminator
from vsr.models.rrdbnet import RRDBNet
from vsr.models.vgg import VGGFeatureExtractor
from vsr.pipelines.images import Image, write_image
from vsr.training import checkpoints
from vsr.training.config import DISCRIMINATOR_PATCH_SIZES, TrainConfig
from vsr.training.data import HRImage, PatchDataset, ValidationSet
from vsr.training.evaluate import bicubic_upscaler, model_upscaler, sample_sheet, validate
from vsr.training.logs import RunLog, TrainingClock, counted, plot_curves, require_matplotlib
from vsr.training.losses import (GeneratorLossWeights, PerceptualLoss, l1_loss, ragan_discriminator_loss,
                                 ragan_generator_loss)
from vsr.training.dali_patches import DaliVideoPatches
from vsr.training.pool import POOL_DIR, DiskPool, Pool, memory_budget, remove_pool
from vsr.training.sources import dali_sources, pool_key, split_sources, training_pool

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"  # OUT_DIR/samples/iter_NNNNNNN.png: bicubic | model | original at each validation
LOCK_FILE = ".lock"  # in the run's folder, locked (flock) by the process that writes the run, for the whole run


@dataclass
class TrainResult:
    out_dir: Path
    iteration: int  # iterations completed
    state_path: Path
    model_path: Path | None  # OUT_DIR/model.pth, the final EMA generator (None when stopped before total_iters)
    validation: dict = field(default_factory=dict)  # the last validation's metrics


def train(config: TrainConfig, *, stop_at: int | None = None, progress: bool = False) -> TrainResult:
    """Train from scratch (or from `config.pretrained`) into `config.out_dir`, which must not hold a run yet.

    `stop_at` ends the run after that many iterations, with a checkpoint (as an interruption would). Paths are kept
    absolute in the run's state, so that it resumes from any folder."""
    if config.num_grow_ch != 32:
        log.warning("num_grow_ch=%d: vsr upscale loads the model this run exports, but spandrel's ESRGAN loader takes "
                    "every RRDBNet to grow by 32 and cannot", config.num_grow_ch)
    return _run(_absolute_paths(_pretrained_model_of_a_run(config)), None, stop_at, progress)


def _pretrained_model_of_a_run(config: TrainConfig) -> TrainConfig:
    """pretrained=RUN_FOLDER: the checkpoint that run's folder stands for, as `vsr upscale -m RUN_FOLDER` takes it
    (`checkpoint_of`: its model.pth, or while it trains its state.pt), kept in the config as that file (the run's
    state says which; `_take_over_pool` takes the pool of a finished run's model)."""
    if config.pretrained is None or not Path(config.pretrained).is_dir():
        return config
    try:
        return replace(config, pretrained=str(checkpoint_of(config.pretrained)))
    except ModelError as error:
        raise ModelError(f"pretrained={error}") from None


def _absolute_paths(config: TrainConfig) -> TrainConfig:
    """`config` with its data, model and VGG paths absolute, as its run's state keeps them: a resume given --data
    kept it relative, and the next resume from another folder found no data."""
    absolute = {key: tuple(os.path.abspath(path) for path in getattr(config, key))
                for key in ("train_paths", "val_paths")}
    absolute.update({key: os.path.abspath(getattr(config, key)) for key in ("pretrained", "vgg_weights")
                     if getattr(config, key) is not None and os.path.exists(getattr(config, key))})
    return replace(config, **absolute)


def _holds(model: Path, weights: dict) -> bool:
    """Whether the run's exported model (`model`: its .pth and .safetensors) holds `weights`."""
    for path in (model, model.with_suffix(".safetensors")):
        try:
            found = read_state_dict(path)
        except (OSError, VsrError):
            return False
        if found.keys() != weights.keys() or not all(torch.equal(found[key], weights[key].float()) for key in weights):
            return False
    return True


# What a resumed run cannot change: the networks' shapes and the stage are in the checkpoint's weights, and the
# optimiser's and scheduler's settings in their saved states (which would silently win); the seed picks every patch
# (seed, epoch, index), so a new one would break "resumed equals uninterrupted". A new run from the model
# (--set pretrained=OUT_DIR/model.pth) can change them. cosine_period can change: a longer run needs a longer period
# (see `_check_cosine_restarts` and `_follow_cosine_period`).
FIXED_ON_RESUME = ("stage", "scale", "num_feat", "num_block", "num_grow_ch", "disc_num_feat", "lr", "betas",
                   "scheduler", "milestones", "gamma", "eta_min", "seed")


def _changes(config: TrainConfig, key: str, value: object) -> bool:
    """Whether `key` = `value` changes `config` (a value that makes it invalid alone, stage=gan with the psnr stage's
    patch size, changes it too)."""
    try:
        return config.replace({key: value}) != config
    except OptionError:
        return True


def resume(out_dir: str | os.PathLike, overrides: dict | None = None, *, stop_at: int | None = None,
           progress: bool = False) -> TrainResult:
    """Continue the run in `out_dir` (or of its state.pt) from its state.pt, with its own config plus `overrides`
    (total_iters, max_minutes, val_every, ...; not FIXED_ON_RESUME)."""
    out_dir = Path(out_dir)
    if out_dir.name == checkpoints.STATE_FILE and out_dir.is_file():
        out_dir = out_dir.parent
    state = checkpoints.load_state(out_dir)
    config = TrainConfig.from_dict(state["config"], source=f"{out_dir}/{checkpoints.STATE_FILE}")
    fixed = FIXED_ON_RESUME + (("patch_size",) if config.stage == "gan" else ())  # (the discriminator's layers)
    changed = [key for key, value in (overrides or {}).items() if key in fixed and _changes(config, key, value)]
    if changed:
        raise OptionError(f"{', '.join(changed)} cannot change when resuming {out_dir} (its checkpoint holds the "
                          f"value); start a new run from its model instead: --set pretrained={out_dir}/model.pth")
    begun_with = config
    config = _absolute_paths(replace(config.replace(overrides or {}), out_dir=str(out_dir)))
    done, minutes = int(state["iteration"]), float(state.get("elapsed_s", 0.0)) / 60
    if "cosine_period" not in (overrides or {}):
        _check_cosine_restarts(begun_with, config, done)

    def finished(settings: TrainConfig) -> bool:
        return settings.total_iters <= done or (settings.max_minutes is not None and minutes >= settings.max_minutes)

    model = out_dir / f"{checkpoints.MODEL_NAME}.pth"
    # The run ended by its own settings (not only by those given now: a run stopped at iteration 41 of 60, resumed with
    # total_iters=30, was said to have "ended without writing its model", which was then written), and its model was
    # not written (a full disk, or a kill between the last state and the model: an earlier end's model stayed)
    if finished(begun_with) and finished(config) and not _holds(model, state["ema"]):
        generator = _generator(config, fresh=False)
        generator.load_state_dict(state["ema"])
        model_path, _ = checkpoints.export_generator(generator, config, out_dir / checkpoints.MODEL_NAME)
        log.warning("%s: the run had ended at iteration %d without writing its model: written now from its state",
                    model, done)
        return TrainResult(out_dir=out_dir, iteration=done, state_path=out_dir / checkpoints.STATE_FILE,
                           model_path=model_path)
    if config.total_iters <= done:
        raise OptionError(f"total_iters={config.total_iters}: {out_dir} has done {done} iterations already; resume "
                          f"with more, e.g. --set total_iters={done * 2}")
    if config.max_minutes is not None and minutes >= config.max_minutes:  # (it bounds the whole run)
        raise OptionError(f"max_minutes={config.max_minutes:g}: {out_dir} has run {minutes:.1f} minutes already; "
                          f"resume with more, e.g. --set max_minutes={max(1, math.ceil(minutes * 2))}, or none")
    return _run(config, state, stop_at, progress)


def _check_cosine_restarts(begun_with: TrainConfig, config: TrainConfig, done: int) -> None:
    """A resume that raises total_iters past the end of a cosine period the run was not going to finish restarted
    the learning rate at its full value, unsaid (lr 5e-4 again at iteration 82 of a run of one 80-iteration period
    extended to 160): refused, saying how to anneal over the longer run, or how to restart on purpose. Restarts the
    run was begun with (BasicSR's four periods over a run) are its own schedule, not refused."""
    if config.scheduler != "cosine_restarts":
        return
    period = config.cosine_period
    restart = math.ceil(max(done, begun_with.total_iters) / period) * period  # the first one it was not to reach
    if restart < config.total_iters:
        raise OptionError(f"total_iters={config.total_iters}: the learning rate would restart at lr={config.lr:g} "
                          f"after iteration {restart}, the end of a cosine period ({period}); to anneal it over the "
                          f"longer run: --set cosine_period={config.total_iters}, or to restart it on purpose: --set "
                          f"cosine_period={period}")


def _follow_cosine_period(schedulers: dict, config: TrainConfig, iteration: int, out_dir: Path) -> None:
    """A resume given another cosine_period: the rest of the run follows the learning rate a run begun with it has at
    each iteration (the loaded schedulers' states hold the old period, which would win unsaid)."""
    if config.scheduler != "cosine_restarts" or schedulers["g"].T_0 == config.cosine_period:
        return
    earlier_period, earlier_lr = schedulers["g"].T_0, schedulers["g"].get_last_lr()[0]
    for scheduler in schedulers.values():
        scheduler.T_0 = scheduler.T_i = config.cosine_period
        scheduler.step(iteration)  # (T_cur = iteration mod the period; the optimizer's lr set from it)
    log.info("%s: cosine_period %d → %d: the learning rate of iteration %d goes from %.3g to %.3g, as in a run "
             "begun with the new period", out_dir, earlier_period, config.cosine_period, iteration + 1, earlier_lr,
             schedulers["g"].get_last_lr()[0])


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·model for every parameter; buffers are copied."""
    parameters = dict(model.named_parameters())
    for name, value in ema.named_parameters():
        value.mul_(decay).add_(parameters[name].detach(), alpha=1 - decay)
    buffers = dict(model.named_buffers())
    for name, value in ema.named_buffers():
        value.copy_(buffers[name])


class EpochBatches(Sampler):
    """The batches of one epoch for one process: batch b is items [b·B, (b+1)·B) and rank r takes its 1/world.

    No shuffling is needed: PatchDataset's item i of epoch e is already a random patch drawn from (seed, e, i).
    `first` skips the batches an interrupted run has already trained on."""

    def __init__(self, batches: int, batch_size: int, first: int = 0, rank: int = 0, world_size: int = 1):
        self.batches, self.first = batches, first
        self.per_rank = batch_size // world_size
        self.offset = rank * self.per_rank
        self.batch_size = batch_size

    def __iter__(self):
        for b in range(self.first, self.batches):
            start = b * self.batch_size + self.offset
            yield list(range(start, start + self.per_rank))

    def __len__(self) -> int:
        return self.batches - self.first


def _bare(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def _setup_device(config: TrainConfig) -> tuple[torch.device, int, int, bool]:
    """(device, rank, world size, whether this call started the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise OptionError(f"device={config.device!r}: no CUDA device is available (use cpu or auto)")
    if config.device not in ("auto", "cpu") and not config.device.startswith("cuda"):
        raise OptionError(f"device={config.device!r}: expected auto, cpu, cuda or cuda:N")
    started = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
        started = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local}" if world > 1 or config.device == "auto" else config.device)
        if device.index is None:  # "cuda": the current device (set_device refuses a device without an index)
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: pick the fastest convolution once
    else:
        device = torch.device("cpu")
    return device, rank, world, started


def _precision(config: TrainConfig, device: torch.device):
    """(autocast context factory, GradScaler). On CUDA, bf16 or fp16 autocast (fp16 also scales the losses); on the
    CPU, bf16 autocast (fp16 there trains in fp32)."""
    mixed = config.precision == "bf16" or (config.precision == "fp16" and device.type == "cuda")
    if config.precision == "fp16" and not mixed:
        log.warning("precision=fp16 is for CUDA devices; training in fp32 on the %s", device.type)
    if config.precision == "bf16" and device.type == "cpu" and not cpu_computes_bf16():
        log.warning("this CPU has no bf16 instructions: bf16 is emulated, slower than fp32 (precision=fp32)")
    dtype = torch.float16 if config.precision == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=mixed and config.precision == "fp16")
    return (lambda: torch.autocast(device.type, dtype=dtype)) if mixed else nullcontext, scaler


def _generator(config: TrainConfig, fresh: bool) -> nn.Module:
    """A new RRDBNet, with `config.pretrained`'s weights when starting a run (a resumed one has its own)."""
    generator = RRDBNet(scale=config.scale, num_feat=config.num_feat, num_block=config.num_block,
                        num_grow_ch=config.num_grow_ch)
    if config.pretrained and fresh:
        loaded = load_model(config.pretrained)
        expected = checkpoints.generator_spec(config)
        if loaded.spec.architecture != expected.architecture:  # (no setting makes one of the other)
            raise ModelError(f"{config.pretrained}: is {loaded.spec.architecture} ×{loaded.spec.scale}, and vsr train "
                             f"trains {expected.architecture} alone: start from an {expected.architecture} checkpoint "
                             "(a stage psnr run's model.pth), or from none")
        if loaded.spec != expected:
            raise ModelError(
                f"{config.pretrained}: is {loaded.spec.architecture} ×{loaded.spec.scale} "
                f"{loaded.spec.hyperparameters}, but the config trains RRDBNet ×{config.scale} "
                f"{expected.hyperparameters} (set scale, num_feat, num_block, num_grow_ch to match)"
            )
        generator.load_state_dict(loaded.module.state_dict())
    elif config.stage == "gan" and fresh:
        log.warning("stage gan without a pretrained generator: ESRGAN starts it from the stage-1 (psnr) model")
    return generator


def _run(config: TrainConfig, state: dict | None, stop_at: int | None, progress: bool) -> TrainResult:
    device, rank, world, started_group = _setup_device(config)
    try:
        # (on_exit: what the loop opens that must be closed however it ends: the run's log and its TensorBoard thread)
        with _run_folder(Path(config.out_dir), fresh=state is None, main=rank == 0), ExitStack() as on_exit:
            try:
                return _train_loop(config, state, stop_at, progress, device, rank, world, on_exit)
            except BaseException as error:  # (not a folder refused above: a pool there is another run's)
                if rank == 0:
                    _note_the_kept_pool(error, Path(config.out_dir))
                raise
    finally:
        if started_group:
            dist.destroy_process_group()


@contextmanager
def _run_folder(out_dir: Path, fresh: bool, main: bool):
    """The run's folder, made now (not after the data has loaded) and, by the main process, locked for the whole run:
    a second trainer on it (two resumes, two new runs with one out_dir) is one line instead of two runs writing one
    log. A folder this start made is removed again where the start fails before writing anything in it."""
    if fresh and (out_dir / checkpoints.STATE_FILE).exists():
        raise OutputError(f"{out_dir}: already holds a training run (resume it with --resume, or pick another out_dir)")
    # A run's model without its state (a finished run whose state.pt was removed to save space) was replaced.
    made_before = [name for name in (f"{checkpoints.MODEL_NAME}.pth", f"{checkpoints.MODEL_NAME}.safetensors",
                                     checkpoints.SNAPSHOTS_DIR) if (out_dir / name).exists()]
    if fresh and made_before:
        raise OutputError(f"{out_dir}: already holds {', '.join(made_before)} of an earlier run; pick another out_dir")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            out_dir.mkdir()
            made = True
        except FileExistsError:  # (one process alone makes it: only that one may remove it)
            if not out_dir.is_dir():
                raise
            made = False
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot make the run's folder ({error.strerror or error})") from None
    lock = _lock_run(out_dir) if main else None
    if main:  # (locked: no other trainer is writing them) a killed run's half-written states, 0.5 GB each for a GAN
        for leftover in temporaries_of(out_dir / checkpoints.STATE_FILE):
            leftover.unlink(missing_ok=True)
    try:
        yield
    except BaseException as error:
        if main and not out_dir.is_dir():  # (its cleanup below ended in a traceback, FileNotFoundError)
            if isinstance(error, Exception):  # (a log that could not be written in it: "No such file or directory")
                raise OutputError(f"{out_dir}: the run's folder was removed while it trained, and what it held with "
                                  "it: start the run again") from None
            raise
        if made and main and os.listdir(out_dir) == [LOCK_FILE]:
            try:
                (out_dir / LOCK_FILE).unlink()
                out_dir.rmdir()
            except OSError:  # (another process's file appeared meanwhile: the folder is theirs too)
                pass
        raise
    finally:
        if lock is not None:
            lock.close()


def _lock_run(out_dir: Path):
    """The run's lock file, open and locked (flock) until it is closed; one line where another process holds it."""
    try:
        return locked(out_dir / LOCK_FILE, f"{out_dir}: another training process is running in this folder (it holds "
                                           f"{LOCK_FILE}); wait for it to end, or give another out_dir")
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot write in the run's folder ({error.strerror or error})") from None


def _train_loop(config, state, stop_at, progress, device, rank, world, on_exit: ExitStack) -> TrainResult:
    started = time.monotonic()
    out_dir, main = Path(config.out_dir), rank == 0
    if config.batch_size % world:
        raise OptionError(f"batch_size={config.batch_size}: must be a multiple of the {world} processes")
    if config.plot:
        require_matplotlib()  # now, not after hours of training
    gan = config.stage == "gan"
    amp, scaler = _precision(config, device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)

    # ---- networks, losses, optimisers ----
    generator = _generator(config, fresh=state is None).to(device)
    ema = copy.deepcopy(generator).requires_grad_(False).eval()
    discriminator = VGGStyleDiscriminator(num_feat=config.disc_num_feat, input_size=config.patch_size) if gan else None
    perceptual = None
    if gan:  # loading VGG19 first: a missing weights file should fail now, not after loading the data
        extractor = VGGFeatureExtractor(config.perceptual_layer, weights_path=config.vgg_weights,
                                        allow_random=config.allow_random_vgg)
        perceptual = PerceptualLoss(extractor).to(device)
        discriminator = discriminator.to(device)
    weights = GeneratorLossWeights(config.pixel_weight, config.perceptual_weight, config.gan_weight)
    # "g" and "d": the generator's and the discriminator's (BasicSR's optimizer_g, optimizer_d).
    networks = {"g": generator, **({"d": discriminator} if gan else {})}
    optimizers = {key: torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.betas)
                  for key, net in networks.items()}
    schedulers = {key: _scheduler(optimizer, config) for key, optimizer in optimizers.items()}

    iteration = 0
    earlier_seconds = float(state.get("elapsed_s", 0.0)) if state is not None else 0.0  # before the resume

    def elapsed() -> float:
        return earlier_seconds + time.monotonic() - started

    if state is not None:
        generator.load_state_dict(state["generator"])
        ema.load_state_dict(state["ema"])
        if gan:
            discriminator.load_state_dict(state["discriminator"])
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state[f"optimizer_{key}"])
            schedulers[key].load_state_dict(state[f"scheduler_{key}"])
        if scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        checkpoints.restore_rng(state["rng"])
        iteration = int(state["iteration"])
        _follow_cosine_period(schedulers, config, iteration, out_dir)
        log.info("resuming %s at iteration %d", out_dir, iteration)
        snapshot = out_dir / checkpoints.SNAPSHOTS_DIR / f"iter_{iteration:07d}"
        if main and not _holds(snapshot.with_suffix(".pth"), state["ema"]):
            # Stopped after state.pt was saved, before its snapshot was whole: no later save would write it.
            checkpoints.export_generator(ema, config, snapshot)
    if world > 1:
        generator = DistributedDataParallel(generator)
        discriminator = DistributedDataParallel(discriminator) if gan else None

    # ---- data ----
    dataset = patches = None  # loader "memory": a PatchDataset read by a DataLoader; "dali": DaliVideoPatches
    if config.loader == "dali":
        videos, val_images = dali_sources(config)
        patches = DaliVideoPatches(videos, patch_size=config.patch_size, scale=config.scale,
                                   batch_size=config.batch_size // world, device=device, seed=config.seed,
                                   shard=rank, shards=world)
        batches_per_epoch = max(1, patches.frames * patches.patches_per_frame // (config.batch_size // world))
        sources = f"{len(videos)} training videos ({patches.frames} frames, DALI)"
        training_data = f"{counted(len(videos), 'training video')} ({counted(patches.frames, 'frame')}, DALI)"
    else:
        pool, val_images = _training_pool(config, state, rank, world)
        area = sum(image.pixels.shape[-2] * image.pixels.shape[-1] for image in pool.images)
        batches_per_epoch = max(1, math.ceil(area / config.patch_size**2) // config.batch_size)
        dataset = PatchDataset(pool.images, patch_size=config.patch_size, scale=config.scale,
                               length=batches_per_epoch * config.batch_size, seed=config.seed)
        sources = f"{len(pool.images)} training images"
        training_data = counted(len(pool.images), "training image")
    val_set = ValidationSet(val_images, scale=config.scale, crop=config.val_crop) if val_images and main else None
    baseline = validate(bicubic_upscaler(config.scale), val_set, config.scale, device) if val_set else {}
    # (the validation set leaves out images of one colour or too small to score)
    log.info("%s (%s per epoch), %s; %s on %s, %s each", training_data, counted(batches_per_epoch, "batch", "batches"),
             counted(len(val_set) if val_set is not None else len(val_images), "validation image"),
             counted(world, "process", "processes"), device, counted(config.batch_size // world, "patch", "patches"))
    # (in the words states have kept since before `counted`: a resume compares them, "1 training images" included)
    data_seen = f"{sources} ({batches_per_epoch} batches per epoch)"
    # Which pictures, to the pixel: a photo replaced by another of its size changed neither count.
    pixels_seen = pool.digest if dataset is not None and main else None
    if state is not None and main and (state.get("data", data_seen) != data_seen
                                       or state.get("data_pixels", pixels_seen) != pixels_seen):
        # (a batch_size or patch_size given on resume changes the batches per epoch over the same pictures: it was
        # told as changed data)
        settings = [f"{key} {state['config'][key]} → {getattr(config, key)}" for key in ("batch_size", "patch_size")
                    if state["config"].get(key, getattr(config, key)) != getattr(config, key)]
        what = f"{', '.join(settings)} since the run began" if settings else \
            "the training data changed since the run began"
        log.warning("%s: %s (%s then, %s now%s): it goes on, but not as the run would have without the stop", out_dir,
                    what, state["data"], data_seen, "; other pictures" if state["data"] == data_seen else "")
    # The photos held out for validation (val_holdout) are held out again on resume (`split_sources`).
    held_out = [image.name for image in val_images] if dataset is not None and not config.val_paths else []

    # (closed on the way out, an error or a Ctrl-C included: it held TensorBoard's writer thread and the process's
    # thread hook, `logs._quiet_tensorboard_thread`, for the rest of a program that trains and goes on)
    run_log = on_exit.enter_context(RunLog(out_dir, config.stage, resumed_at=iteration if state else None)) \
        if main else None
    last_metrics: dict = {}

    def diverged(names: list[str]) -> ModelError:
        saved = out_dir / checkpoints.STATE_FILE
        kept = f"{saved} is the last checkpoint" if saved.is_file() else "no checkpoint was saved yet"
        return ModelError(f"training diverged at iteration {iteration}: {', '.join(names)} not finite (a learning "
                          f"rate too high?); nothing was exported, and {kept}")

    def validate_and_log() -> None:
        nonlocal last_metrics
        if val_set is None:
            return
        last_metrics = validate(model_upscaler(ema, amp), val_set, config.scale, device)
        # (finite weights can still be too large for finite outputs: such a model must not be saved or exported)
        not_a_number = [name for name, value in last_metrics.items() if math.isnan(value)]
        if not_a_number:
            raise diverged(not_a_number)
        run_log.validation({"iteration": iteration, **last_metrics, "elapsed_s": round(elapsed(), 1),
                            **{f"bicubic_{k}": v for k, v in baseline.items()}})
        log.info("iteration %d: PSNR-Y %.3f dB (bicubic %.3f), SSIM-Y %.4f (bicubic %.4f)", iteration,
                 last_metrics["psnr_y"], baseline["psnr_y"], last_metrics["ssim_y"], baseline["ssim_y"])
        if config.val_samples:
            sheet = sample_sheet(model_upscaler(ema, amp), val_set, config.scale, config.val_samples, device)
            try:
                (out_dir / SAMPLES_DIR).mkdir(exist_ok=True)
            except OSError as error:
                raise OutputError(f"{out_dir / SAMPLES_DIR}: cannot make the folder ({error.strerror or error})") \
                    from None
            write_image(out_dir / SAMPLES_DIR / f"iter_{iteration:07d}.png", Image(rgb=sheet))
        if config.plot:
            plot_curves(out_dir)

    def save() -> None:
        if main:
            checkpoints.save_state(out_dir, {
                "config": config.to_dict(), "iteration": iteration,
                "generator": _bare(generator).state_dict(), "ema": ema.state_dict(),
                **({"discriminator": _bare(discriminator).state_dict()} if gan else {}),
                **{f"optimizer_{key}": optimizer.state_dict() for key, optimizer in optimizers.items()},
                **{f"scheduler_{key}": scheduler.state_dict() for key, scheduler in schedulers.items()},
                "scaler": scaler.state_dict(), "rng": checkpoints.rng_state(), "elapsed_s": elapsed(),
                "data": data_seen, "data_pixels": pixels_seen, "val_held_out": held_out,
            })
            checkpoints.export_generator(ema, config, out_dir / checkpoints.SNAPSHOTS_DIR / f"iter_{iteration:07d}")

    if main and state is None:
        validate_and_log()  # iteration 0: where the model starts (for the curves)

    # ---- the loop ----
    end = min(config.total_iters, stop_at) if stop_at is not None else config.total_iters
    out_of_time = False  # max_minutes reached: the run ends as if at total_iters
    bar = on_exit.enter_context(_progress_bar(config.total_iters, iteration)) if progress and main else None
    # The rate and ETA are those of training iterations: the clock stands still while the model is validated.
    training_clock = TrainingClock()
    window_start, window_iterations = training_clock(), 0
    # Whether each loss has been NaN or infinite at some iteration: kept on the device (reading it would wait for the
    # GPU), and read only before the run logs, validates or saves, so that a diverged run never writes a checkpoint.
    losses_not_finite = None
    generator.train()
    if gan:
        discriminator.train()
    stopped_by = 0  # the signal that stopped the run before its end (Ctrl-C's SIGINT, SIGTERM), once it is saved
    stop_request = on_exit.enter_context(_StopRequest())
    while iteration < end:
        epoch, first = divmod(iteration, batches_per_epoch)
        if patches is not None:
            loader = itertools.islice(patches, batches_per_epoch - first)
        else:
            dataset.set_epoch(epoch)  # before the workers fork: they draw this epoch's patches
            if config.num_workers:
                # Garbage in reference cycles (PyAV's frames and their side data) is freed here, not first in a
                # forked worker, where freeing FFmpeg objects can wait for threads a fork does not copy, for ever.
                gc.collect()
            loader = DataLoader(dataset, batch_sampler=EpochBatches(batches_per_epoch, config.batch_size, first,
                                                                    rank, world),
                                num_workers=config.num_workers, pin_memory=device.type == "cuda",
                                worker_init_fn=_leave_stops_to_the_trainer if config.num_workers else None)
        for batch in loader:
            lr_patch = batch["lr"].to(device, non_blocking=True)
            hr_patch = batch["hr"].to(device, non_blocking=True)
            if gan:
                losses = _gan_step(generator, discriminator, perceptual, weights, optimizers, scaler, amp,
                                   lr_patch, hr_patch)
            else:
                losses = _psnr_step(generator, optimizers["g"], scaler, amp, lr_patch, hr_patch)
            step_not_finite = ~torch.isfinite(torch.stack([value.float() for value in losses.values()]))
            losses_not_finite = step_not_finite if losses_not_finite is None else losses_not_finite | step_not_finite
            ema_update(ema, _bare(generator), config.ema_decay)
            lr = optimizers["g"].param_groups[0]["lr"]  # the rate this iteration used
            for scheduler in schedulers.values():
                scheduler.step()
            iteration += 1
            window_iterations += 1
            if iteration < end:
                out_of_time, stopped_by = _stops_due(elapsed(), config, stop_request.signal, world, device)
                if out_of_time:  # (it wins over a stop asked for meanwhile: the run is done, its model exported)
                    end, stopped_by = iteration, 0
                    if main:
                        log.info("max_minutes=%g reached at iteration %d: validating and exporting the model",
                                 config.max_minutes, iteration)
                elif stopped_by:  # (its state saved below, as at any end)
                    end = iteration

            log_due = iteration % config.log_every == 0 or iteration == end
            validation_due = iteration % config.val_every == 0 or iteration == config.total_iters or out_of_time
            save_due = iteration % config.save_every == 0 or iteration == end  # (the end also exports the model)
            if log_due or validation_due or save_due:
                not_finite = _not_finite(losses, losses_not_finite, world)
                if not_finite:  # (every process has the same flags: all stop here, before writing anything)
                    raise diverged(not_finite)
            if log_due:
                values = _mean_over_processes(losses, world)
                now = training_clock()
                rate = window_iterations / max(now - window_start, 1e-9)
                window_start, window_iterations = now, 0
                if main:
                    row = {"iteration": iteration, "epoch": epoch, "lr": lr, **values, "it_per_s": rate,
                           "elapsed_s": round(elapsed(), 1)}
                    run_log.train(row)
                    _report(bar, row, config.total_iters)
            if bar is not None:
                bar.update(1)
            if main and validation_due:
                with training_clock.paused():
                    validate_and_log()
                if bar is not None:  # tqdm's own clock moved past it, as its unpause() does (which would leave out
                    # the iterations' time since its last refresh too)
                    bar.start_t += training_clock.last_pause
                    bar.last_print_t += training_clock.last_pause
            if save_due:
                save()
            if iteration >= end:
                break

    stop_request.close()
    if bar is not None:
        bar.close()
    if stopped_by:  # (the state of `iteration` is saved: the command line says where a resume starts)
        interruption = Terminated() if stopped_by == signal.SIGTERM else KeyboardInterrupt()
        interruption.stopped_at = iteration
        raise interruption
    state_path = out_dir / checkpoints.STATE_FILE
    model_path = None
    if main:
        if iteration == config.total_iters or out_of_time:
            model_path, _ = checkpoints.export_generator(ema, config, out_dir / checkpoints.MODEL_NAME)
            if dataset is not None and pool.on_disk:  # (a run stopped before its end keeps it, to resume from)
                _keep_or_remove_pool(config, out_dir, model_path, pool)
        if config.plot:
            plot_curves(out_dir)
    if world > 1:
        dist.barrier()
    return TrainResult(out_dir=out_dir, iteration=iteration, state_path=state_path, model_path=model_path,
                       validation=last_metrics)


def _keep_or_remove_pool(config: TrainConfig, out_dir: Path, model_path: Path, pool: Pool) -> None:
    """At the run's end: the pool on disk kept where the next stage of ESRGAN's recipe can take it over (stage psnr,
    with a patch size the gan stage's discriminator takes: the same key), else removed. A stage gan run started
    from this one's model on the same data moves it to its own folder (`_take_over_pool`) instead of decoding the
    pictures again; until then the log line says where it is, how large, and how to free it."""
    folder = out_dir / POOL_DIR
    if config.stage == "psnr" and config.patch_size in DISCRIMINATOR_PATCH_SIZES:
        log.info("kept the training pool %s (%s) for the gan stage: a run with --set pretrained=%s on the same data "
                 "and patch size takes it over; if none follows, free it: rm -r %s", folder, in_bytes(pool.nbytes),
                 model_path, folder)
        return
    remove_pool(folder)
    log.info("removed the training pool %s (%s): the run is done; a resume would write it again", folder,
             in_bytes(pool.nbytes))


def _take_over_pool(config: TrainConfig, files: list[Path], folder: Path) -> None:
    """Stage gan started from stage psnr's model (pretrained=RUN1/model.pth) on the same data and patch size: the
    pool RUN1 kept at its end is moved into this run's `folder` (one rename), rather than the dataset decoded and
    written again (DF2K: many minutes, 30 GB). It is this run's from then on: kept for its resume, removed at its
    end; RUN1 resumed would read its pictures again. Left where it is while RUN1 is training (its lock is held), or
    where it cannot be moved (another file system): this run then reads the pictures itself."""
    model_names = (f"{checkpoints.MODEL_NAME}.pth", f"{checkpoints.MODEL_NAME}.safetensors")
    if not config.pretrained or Path(config.pretrained).name not in model_names or folder.exists():
        return  # (a pool of this run's own: training_pool reads it, or replaces it where it is of other files)
    earlier = Path(config.pretrained).parent / POOL_DIR
    key = pool_key(config, files)
    if DiskPool.open(earlier, key) is None:
        return
    try:
        lock = locked(earlier.parent / LOCK_FILE, "training")
    except OutputError:
        log.info("%s: not taken over, its run is training: the pictures are read again", earlier)
        return
    except OSError as error:
        log.info("%s: not taken over (%s): the pictures are read again", earlier, error.strerror or error)
        return
    with lock:
        found = DiskPool.open(earlier, key)  # (again, under the lock: another run may have taken it meanwhile)
        if found is None:
            return
        try:
            os.rename(earlier, folder)
        except OSError as error:
            log.info("%s: cannot be moved to %s (%s): the pictures are read again", earlier, folder,
                     error.strerror or error)
            return
    log.info("training pool of %s, %s, taken over from %s (the pretrained model's run, on the same data): "
             "moved to %s, nothing decoded again", counted(len(found), "picture"), in_bytes(found.nbytes),
             earlier.parent, folder)


def _note_the_kept_pool(error: BaseException, out_dir: Path) -> None:
    """A run that stops before its end keeps its pool on disk, for its resume or a new start in its folder on the same
    data (both read it rather than decoding the pictures again). The error says so, with the pool's size (a note,
    which the command line's one line includes), so that no one gives the run up keeping gigabytes unknowingly."""
    pool = DiskPool.open(out_dir / POOL_DIR)
    if pool is None:
        return
    folder = out_dir / POOL_DIR
    if (out_dir / checkpoints.STATE_FILE).is_file():
        use = "for its resume"
    else:
        use = f"for a new run in {out_dir} on the same data, which reads it instead of decoding the pictures again"
    error.add_note(f"its training pool {folder} ({in_bytes(pool.nbytes)}) is kept {use} (rm -r {folder} frees it)")


def _leave_stops_to_the_trainer(worker_id: int) -> None:
    """In each DataLoader worker: ignore SIGTERM and SIGINT. `kill -- -PGID`, docker stop, systemd and Slurm send
    SIGTERM to every process of the run, and torch's workers die of one not sent by their parent: the trainer then
    raised "DataLoader worker (pid N) is killed by signal: Terminated" with a traceback and exit 1, instead of its
    "interrupted; continue ... --resume" and 143. The trainer stops, then shuts its workers down itself."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Alive until then, a worker whose batch the stopped trainer was fetching printed the broken connection of its
    # fd-sharing thread (multiprocessing.resource_sharer, "Traceback ... self._listener.accept()") into the trainer's
    # last lines. That thread's errors go to sys.excepthook, which in a worker nothing else reaches (torch sends the
    # dataset's own errors to the trainer): those of a connection are left unsaid.
    default = sys.excepthook

    def hook(error_type, error, traceback) -> None:
        if not issubclass(error_type, (OSError, EOFError, multiprocessing.AuthenticationError)):
            default(error_type, error, traceback)

    sys.excepthook = hook


def _training_pool(config: TrainConfig, state: dict | None, rank: int, world: int) -> tuple[Pool, list[HRImage]]:
    """(the training pictures, the validation images; none but in the main process, which alone validates).

    Under torchrun the processes of a node would each hold the pool: unless pool=memory, the main process writes it
    to disk once (or finds it there) and the others read the same file, the page cache holding one copy for all.
    The processes of another machine, where out_dir is not the same folder, read the pictures into memory."""
    if world == 1 or config.pool == "memory":
        return _read_pool(config, state, to_disk="pool=disk" if config.pool == "disk" else None)
    # Written by the main process alone, in minutes for a large pool: the others wait in a group of their own with a
    # long timeout (NCCL's own gives up after 10 minutes) for what it tells them, the pool's key or its error.
    waiting = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=1))
    try:
        if rank == 0:
            try:
                pool, val_images = _read_pool(config, state, to_disk="pool=disk" if config.pool == "disk" else
                                              f"{world} processes read one copy")
            except BaseException as error:  # (else the others waited for its pool until killed; elsewhere, a day)
                said = str(error) or f"the main process stopped ({type(error).__name__})"
                dist.broadcast_object_list([(type(error).__name__, said)], src=0, group=waiting)
                raise
            dist.broadcast_object_list([("", pool.images.index["key"])], src=0, group=waiting)
            return pool, val_images
        told: list = [None]
        dist.broadcast_object_list(told, src=0, group=waiting)
    finally:
        dist.destroy_process_group(waiting)
    error_type, said = told[0]
    if error_type:  # the main process's error (said there), raised here too, as when each process read the data
        from vsr import errors

        raised = getattr(errors, error_type, None)
        raise (raised if isinstance(raised, type) and issubclass(raised, VsrError) else VsrError)(said)
    found = DiskPool.open(Path(config.out_dir) / POOL_DIR, key=said)
    if found is not None:
        return Pool(found, found.digest, found.nbytes), []
    # Another machine's, whose out_dir this one does not see (or holds a pool of its own): its pictures read here.
    files, _ = split_sources(config, held_before=state.get("val_held_out", ()) if state else ())
    return training_pool(config, files, Path(config.out_dir) / POOL_DIR, budget=math.inf), []


def _read_pool(config: TrainConfig, state: dict | None, to_disk: str | None) -> tuple[Pool, list[HRImage]]:
    """The training pool and the validation images, read by this process: the pool on disk where `to_disk` says why,
    else in memory within its share of memory (pool=auto, see pool.py) or whatever its size (pool=memory)."""
    folder = Path(config.out_dir) / POOL_DIR
    files, val_images = split_sources(config, held_before=state.get("val_held_out", ()) if state else ())
    if config.pool != "memory":
        _take_over_pool(config, files, folder)
    if to_disk:
        budget = 0.0
        log.info("the training pool goes to disk, %s (%s)", folder, to_disk)
    else:
        budget = memory_budget() if config.pool == "auto" else math.inf
    pool = training_pool(config, files, folder, budget)
    if not pool.on_disk:
        log.info("training pool: %s, %s in memory", counted(len(pool.images), "picture"), in_bytes(pool.nbytes))
    return pool, val_images


class _StopRequest:
    """Ctrl-C or SIGTERM while the loop runs asks it to stop: the iteration under way finishes, and the run's state is
    saved as at a scheduled save (atomically: generator, EMA, discriminator, optimizers, schedulers, RNG; the
    iteration says where the data go on), then the stop goes on as it came (KeyboardInterrupt, or vsr's
    Terminated). Raised at once, it lost the work since the last save (up to save_every iterations: 250 in
    small_cpu_psnr). A second one stops at once, the state saved before kept: a save under way is finished first
    (`checkpoints.save_state` holds it back), so a state file is never half written.

    Only a signal whose handler raises is asked for so (Python's Ctrl-C, the command line's SIGTERM); signals reach
    Python in the main thread alone, so elsewhere nothing changes."""

    def __init__(self):
        self.signal = 0  # the first stop's signal number (0: none)
        self._handlers = {}  # the handlers replaced, restored by `close`

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(number)
                if callable(handler):
                    self._handlers[number] = handler
                    signal.signal(number, self._asked)
        return self

    def _asked(self, number: int, frame) -> None:
        if self.signal:  # the second: now
            self._handlers[number](number, frame)
            return
        self.signal = number
        name = "Ctrl-C" if number == signal.SIGINT else signal.Signals(number).name
        log.warning("%s: stopping once this iteration is done and saved, to resume from (%s again stops at once, "
                    "keeping the last saved state)", name, name)

    def close(self) -> None:
        for number, handler in self._handlers.items():
            signal.signal(number, handler)
        self._handlers = {}

    def __exit__(self, *error) -> None:
        self.close()


def _stops_due(seconds: float, config: TrainConfig, stop_signal: int, world: int,
               device: torch.device) -> tuple[bool, int]:
    """(whether max_minutes has passed, the signal of a stop asked for: 0 if none). Under DDP rank 0's clock decides
    for all, and a stop any process was sent stops all, so every process stops at the same iteration (one all-reduce
    an iteration)."""
    out_of_time = config.max_minutes is not None and seconds >= config.max_minutes * 60
    if world == 1:
        return out_of_time, stop_signal  # no tensor: on a GPU, .item() would wait for the device every iteration
    flags = torch.tensor([out_of_time and dist.get_rank() == 0, stop_signal], dtype=torch.int32, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    out_of_time, stop_signal = flags.tolist()
    return bool(out_of_time), stop_signal


def _psnr_step(generator, optimizer, scaler, amp, lr_patch, hr_patch) -> dict[str, torch.Tensor]:
    with amp():
        l_pix = l1_loss(generator(lr_patch).float(), hr_patch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(l_pix).backward()
    scaler.step(optimizer)
    scaler.update()
    return {"l_pix": l_pix.detach()}


def _gan_step(generator, discriminator, perceptual, weights, optimizers, scaler, amp, lr_patch, hr_patch):
    # Generator step, discriminator frozen. Its bare module is called: DDP's gradient sync belongs to D's own step.
    critic = _bare(discriminator)
    critic.requires_grad_(False)
    with amp():
        sr = generator(lr_patch).float()
        l_pix = l1_loss(sr, hr_patch)
        l_percep = perceptual(sr, hr_patch)
        real_logits = critic(hr_patch).detach()
        l_g_gan = ragan_generator_loss(real_logits, critic(sr))
        l_g_total = weights.total(l_pix, l_percep, l_g_gan)
    optimizers["g"].zero_grad(set_to_none=True)
    scaler.scale(l_g_total).backward()
    scaler.step(optimizers["g"])

    # Discriminator step on the same batch; the generator's output is detached, so no gradient reaches it.
    critic.requires_grad_(True)
    with amp():
        real_logits = discriminator(hr_patch)
        fake_logits = discriminator(sr.detach())
        l_d = ragan_discriminator_loss(real_logits, fake_logits)
    optimizers["d"].zero_grad(set_to_none=True)
    scaler.scale(l_d).backward()
    scaler.step(optimizers["d"])
    scaler.update()
    return {"l_pix": l_pix.detach(), "l_percep": l_percep.detach(), "l_g_gan": l_g_gan.detach(),
            "l_g_total": l_g_total.detach(), "l_d": l_d.detach(),
            "d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()}


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, config.cosine_period,
                                                                    eta_min=config.eta_min)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), gamma=config.gamma)


def _not_finite(losses: dict[str, torch.Tensor], losses_not_finite: torch.Tensor, world: int) -> list[str]:
    """The names of the losses that have been NaN or infinite on any process (`losses_not_finite`: a flag per loss,
    on the device). One wait for the device, and under DDP one all-reduce."""
    flags = losses_not_finite.to(torch.int32)
    if world > 1:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [name for name, flag in zip(losses, flags.tolist()) if flag]


def _mean_over_processes(losses: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """The losses as floats, averaged over the DDP processes (each saw a different part of the batch)."""
    stacked = torch.stack([value.float() for value in losses.values()])
    if world > 1:
        dist.all_reduce(stacked)
        stacked /= world
    return dict(zip(losses, stacked.tolist()))


@contextmanager
def _progress_bar(total: int, initial: int):
    """tqdm's bar, the log's lines written above it (as `vsr batch` does) and the bar closed however the run ends.
    Else a validation's line went after the bar, on its line, and a Ctrl-C's or an error's line too, below which
    tqdm drew the bar again when the process ended: the last line was a stale bar, not the one that says what next."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(), tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True) as bar:
        yield bar


def _report(bar, row: dict, total: int) -> None:
    """The progress line: tqdm's bar (it shows it/s and ETA itself) or, without one, a log line; the rate, and so
    the ETA, of training iterations alone (`TrainingClock`)."""
    losses = {key: value for key, value in row.items() if key.startswith(("l_", "d_"))}
    if bar is not None:
        bar.set_postfix({key: f"{value:.4g}" for key, value in losses.items()}, refresh=False)
        return
    eta = (total - row["iteration"]) / row["it_per_s"] if row["it_per_s"] > 0 else math.inf
    log.info("iteration %d/%d  %s  lr %.3g  %.2f it/s  ETA %s", row["iteration"], total,
             "  ".join(f"{key} {value:.4g}" for key, value in losses.items()), row["lr"], row["it_per_s"],
             f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}" if math.isfinite(eta) else "?")
