"""A training run on disk: `state.pt` to continue exactly, and the exported generator to use.

`OUT_DIR/state.pt` holds everything the next iteration depends on (nanoGPT's checkpoint, plus what a GAN adds):
    config        the run's TrainConfig as plain values
    iteration     iterations completed
    generator, ema, discriminator            state dicts (discriminator: stage gan only)
    optimizer_g, optimizer_d, scheduler_g, scheduler_d, scaler
    rng           torch, CUDA, numpy and Python `random` states
It is written under a temporary name and renamed over the old one, so a crash while saving leaves the previous
state intact. It holds only tensors and plain containers, so it loads with `torch.load(weights_only=True)`.

The data need no state of their own: patch i of epoch e is a function of (seed, e, i) (see data.py), and the
iteration number says which epoch and batch come next.

The generator's EMA is exported with `models.checkpoint.save_model`: `X.pth` ({"params_ema": ...}) and
`X.safetensors`, which `vsr upscale --model X.pth`, BasicSR, Real-ESRGAN and spandrel load.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsr.errors import InputError, OutputError
from vsr.fsutil import fsync_folder, temporary_sibling
from vsr.models.checkpoint import RUN_MODEL_NAME, RUN_STATE_FILE, save_model
from vsr.models.detect import spec_for
from vsr.models.spec import ModelSpec
from vsr.pipelines.runner import ctrl_c_held_back
from vsr.training.config import TrainConfig

log = logging.getLogger(__name__)

STATE_FILE = RUN_STATE_FILE  # "state.pt"
MODEL_NAME = RUN_MODEL_NAME  # "model": OUT_DIR/model.pth + model.safetensors, the final EMA generator
SNAPSHOTS_DIR = "models"  # OUT_DIR/models/iter_0005000.pth ...: the EMA generator at each save


def generator_spec(config: TrainConfig) -> ModelSpec:
    return spec_for("RRDBNet", {
        "scale": config.scale, "num_feat": config.num_feat, "num_block": config.num_block,
        "num_grow_ch": config.num_grow_ch,
    })


def export_generator(module: nn.Module, config: TrainConfig, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write `path`.pth and `path`.safetensors (the weights of `module`, normally the EMA generator)."""
    return save_model(module, generator_spec(config), path)


def rng_state() -> dict:
    """Every global random state, as tensors and plain values (loadable with weights_only=True)."""
    _kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(out_dir: str | os.PathLike, state: dict) -> Path:
    """Write OUT_DIR/state.pt atomically (temporary file, fsync, rename); return its path.

    Streamed to the file rather than through `fsutil.write_bytes_atomic`: a full ESRGAN GAN state is ~0.5 GB."""
    out_dir = Path(out_dir)
    final = out_dir / STATE_FILE
    temporary = temporary_sibling(final)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # A Ctrl-C or SIGTERM raised inside torch.save, from the Python write its C++ writer calls, came out as its
        # RuntimeError "unexpected pos", said as a full disk (exit 4): held back until the state is written.
        with ctrl_c_held_back():
            with open(temporary, "wb") as file:
                torch.save(state, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, final)
    except (OSError, RuntimeError) as error:  # (torch.save says a full disk with RuntimeError "unexpected pos")
        if isinstance(error, OSError) and error.strerror:
            reason = error.strerror
        elif "unexpected pos" in str(error):  # (torch's words: "[enforce fail at inline_container.cc:672] . ...")
            reason = "the file came out shorter than written"
        else:
            reason = str(error).strip().split("\n")[0]
        raise OutputError(f"{final}: cannot write the training state ({reason}; is the disk full?)") from error
    finally:
        temporary.unlink(missing_ok=True)
    fsync_folder(out_dir)
    log.debug("saved %s at iteration %d", final, state["iteration"])
    return final


def saved_iteration(out_dir: str | os.PathLike) -> int | None:
    """The iteration OUT_DIR/state.pt holds (where a resume starts), or None where there is no readable state. Mapped,
    not read: a GAN's state is 0.5 GB, and this is its one number."""
    try:
        state = torch.load(Path(out_dir) / STATE_FILE, map_location="cpu", weights_only=True, mmap=True)
        return int(state["iteration"])
    except Exception:  # (torch.load raises many types for bad files; none is a state to resume from)
        return None


def load_state(out_dir: str | os.PathLike) -> dict:
    """Read OUT_DIR/state.pt (or a state file given directly) onto the CPU."""
    path = Path(out_dir)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise InputError(f"{path}: no training state to resume from (expected a run folder holding {STATE_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for bad files
        raise InputError(f"{path}: not a readable training state ({type(error).__name__})") from error
    if not isinstance(state, dict) or not {"config", "iteration", "generator", "ema"} <= state.keys():
        raise InputError(f"{path}: not a vsr training state (expected config, iteration, generator, ema)")
    return state
