"""Reading and writing checkpoint files: `.pth`/`.pt`/`.ckpt` (torch) and `.safetensors`.

Reading never unpickles arbitrary objects: torch files go through `torch.load(weights_only=True)`, which accepts only
tensors and plain containers, so a checkpoint from the internet cannot run code. Writing produces the two forms that
the rest of the ecosystem reads: `X.pth` holding `{"params_ema": state_dict}` of plain contiguous CPU tensors
(BasicSR, Real-ESRGAN, and spandrel's restricted unpickler load it) and `X.safetensors`; the string metadata of both
(the .pth's under METADATA_KEY) records the architecture and hyperparameters, which settles what weight shapes cannot
tell (see `detect`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import warnings
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn
from vsr.models.detect import build, canonical_state_dict, detect, mismatches, spec_for
from vsr.models.spec import LoadedModel, ModelSpec

from vsr.errors import ModelError, OutputError
from vsr.fsutil import fsync_folder, temporary_sibling

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"

# Training code wraps the weights in a dict; the first of these keys found is the state dict (the keys spandrel knows).
# BasicSR keeps the EMA of the generator's weights under params_ema: it is the better model, so it is preferred.
# The key of save_model's metadata in its .pth (strings, as in its .safetensors): BasicSR, Real-ESRGAN and spandrel
# take "params_ema" and leave it.
METADATA_KEY = "vsr_metadata"
CONTAINER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net")

# What `vsr train -o RUN` writes (training/checkpoints.py takes these names): the EMA generator exported as
# RUN/model.pth and RUN/model.safetensors at the run's end, and while it trains RUN/state.pt, whose EMA generator
# `_unwrap` reads.
RUN_MODEL_NAME = "model"
RUN_STATE_FILE = "state.pt"


def _vsr_version() -> str:
    try:
        return version("vsr")
    except PackageNotFoundError:
        return "unknown"


def _first_line(error: BaseException, limit: int = 160) -> str:
    """A one-line summary of an exception from torch or safetensors (their messages span many lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def checkpoint_of(path: str | os.PathLike) -> Path:
    """`path`, or for the folder of a `vsr train` run the checkpoint it stands for: its exported model (model.pth, else
    model.safetensors), or while no model is written yet, its state.pt (the EMA generator, as the model will be).
    Wherever a checkpoint is taken (`vsr upscale -m`, --blend, `vsr interpolate`, `vsr eval`, pretrained=), a run's
    folder is taken by these rules. Another folder is one line naming the checkpoint files in it."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in (f"{RUN_MODEL_NAME}.pth", f"{RUN_MODEL_NAME}{SAFETENSORS_SUFFIX}", RUN_STATE_FILE):
        if (path / name).is_file():
            logger.info("%s: a training run's folder: %s", path,
                        f"its state, {path / name} (no model written yet)" if name == RUN_STATE_FILE
                        else f"its model, {path / name}")
            return path / name
    try:
        inside = sorted(found for found in path.iterdir()
                        if found.suffix.lower() in (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX) and found.is_file())
    except OSError:  # (an unreadable folder: the error says what it is all the same)
        inside = []
    shown = ", ".join(map(str, inside[:4])) + (", ..." if len(inside) > 4 else "")
    give = f"give a checkpoint file in it: {shown}" if inside else \
        "a model is a checkpoint file, a training run's folder, a zoo name or a URL"
    raise ModelError(f"{path}: is a folder, not a checkpoint file; {give}")


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The raw state dict and the safetensors metadata ({} for torch files)."""
    suffix = path.suffix.lower()
    if suffix not in TORCH_SUFFIXES and suffix != SAFETENSORS_SUFFIX:
        raise ModelError(
            f"{path}: unsupported checkpoint type {suffix or '(no suffix)'!r}, "
            f"expected one of {', '.join(TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,))}"
        )
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        if suffix == SAFETENSORS_SUFFIX:
            with safetensors.safe_open(str(path), framework="pt", device="cpu") as file:
                metadata = file.metadata() or {}
                return {key: file.get_tensor(key) for key in file.keys()}, metadata
        # torch.load raises a zoo of types for bad files (UnpicklingError, RuntimeError, EOFError, ...), and warns
        # of what it refuses in lines of its own (a TorchScript archive, an old pickle protocol).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelError(f"{path}: {_why_unreadable(path, error)}") from error
    metadata = loaded.get(METADATA_KEY) if isinstance(loaded, dict) else None
    return _unwrap(path, loaded), metadata if isinstance(metadata, dict) else {}


def _why_unreadable(path: Path, error: Exception) -> str:
    """What is wrong with a torch file that torch.load refused, in words (torch's own messages suggest unpickling)."""
    try:
        with open(path, "rb") as file:
            head = file.read(512)
    except OSError:
        head = b""
    if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"<":  # (after any byte-order mark)
        return "a web page (HTML), not a checkpoint: a sign-in or download page saved in its place?"
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return f"not a readable checkpoint ({_first_line(error)})"
    if head[:8] and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return (f"a safetensors file (a length, then a JSON header), named as a torch file; name it "
                f"{path.stem}.safetensors")
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return "cut short or damaged (a torch checkpoint is a zip archive, and this one does not end as one)"
    if "TorchScript" in str(error):
        return ("a TorchScript archive (a compiled model), which vsr does not load; save the model's state_dict() "
                "as .pth or .safetensors")
    if isinstance(error, pickle.UnpicklingError) and "unsupported global" in str(error).lower():
        return ("holds Python objects beyond tensors (a whole pickled model?), which vsr does not unpickle; save "
                "the model's state_dict() instead")
    if isinstance(error, pickle.UnpicklingError) or not head.startswith(b"PK\x03\x04"):
        return "not a torch checkpoint (neither the zip archive torch.save writes nor a pickle of tensors)"
    return f"not a readable checkpoint ({_first_line(error)})"


def _unwrap(path: Path, loaded: object) -> dict[str, Tensor]:
    if not isinstance(loaded, dict):
        raise ModelError(f"{path}: not a state dict (the file holds a {type(loaded).__name__})")
    if {"config", "iteration", "generator", "ema"} <= loaded.keys() and isinstance(loaded["ema"], dict):
        loaded = loaded["ema"]  # a `vsr train` run's state.pt, still training: its EMA generator, as model.pth has
    for key in CONTAINER_KEYS:
        if isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    while len(loaded) == 1 and isinstance(value := next(iter(loaded.values())), dict):
        loaded = value  # a container of another name ({"net_g": ...}), unwrapped as spandrel does
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ModelError(
                f"{path}: not a state dict (entry {key!r} holds a {type(value).__name__}, expected tensors "
                f"or a container under one of {', '.join(CONTAINER_KEYS)})"
            )
    return dict(loaded)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, unwrapped from its training container, names as stored."""
    return _read(Path(path))[0]


def _spec_from_metadata(metadata: dict[str, str]) -> ModelSpec | None:
    if "architecture" not in metadata or "hyperparameters" not in metadata:
        return None
    try:
        hyperparameters = json.loads(metadata["hyperparameters"])
        return spec_for(metadata["architecture"], dict(hyperparameters))
    except (ValueError, TypeError, ModelError):
        return None


def _build_if_fits(spec: ModelSpec, state_dict: dict[str, Tensor]) -> nn.Module | None:
    try:
        module = build(spec)
    except ModelError:
        return None
    return None if mismatches(module, state_dict) else module


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Read a checkpoint, detect its architecture and return the network ready for inference (CPU, eval mode).

    The architecture comes from the weights. safetensors metadata written by `save_model` is a cross-check: where it
    describes a network that fits the weights exactly it is used (it settles ReLU vs LeakyReLU and the unusual
    channel counts `detect` must guess); where it disagrees with the weights, the weights win.
    """
    given, path = Path(path), checkpoint_of(path)
    state_dict, metadata = _read(path)
    state_dict = canonical_state_dict(state_dict)
    try:
        spec = detect(state_dict)
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from error
    module = build(spec)
    declared = _spec_from_metadata(metadata)
    if declared is not None and declared != spec:
        declared_module = _build_if_fits(declared, state_dict)
        if declared_module is not None:
            logger.debug("%s: metadata settles what the shapes leave open: %s", path, declared.hyperparameters)
            spec, module = declared, declared_module
        else:
            logger.warning(
                "%s: metadata says %s %s but the weights are %s %s; using the weights",
                path, declared.architecture, declared.hyperparameters, spec.architecture, spec.hyperparameters,
            )  # fmt: skip
    if spec.architecture == "SRVGGNetCompact" and spec.hyperparameters["act_type"] == "relu" and declared != spec:
        logger.warning("%s: SRVGGNetCompact without activation weights, ReLU or LeakyReLU (the weights cannot tell): "
                       "taken as ReLU; a LeakyReLU model gives other pictures", path)
    problems = mismatches(module, state_dict)
    if problems:
        raise ModelError(
            f"{path}: looks like {spec.architecture} {spec.hyperparameters} but does not fit it: "
            + "; ".join(problems[:3])
        )
    module.load_state_dict(state_dict, strict=True)
    module.eval().requires_grad_(False)
    # (a run's folder is named by its own name: "psnr" for runs/psnr, rather than "model")
    return LoadedModel(module=module, spec=spec, name=given.resolve().name if given.is_dir() else path.stem,
                       source=str(path))


def _output_paths(path: Path) -> tuple[Path, Path]:
    base = path.with_suffix("") if path.suffix.lower() in (".pth", SAFETENSORS_SUFFIX) else path
    return base.with_name(base.name + ".pth"), base.with_name(base.name + SAFETENSORS_SUFFIX)


def _write_temporary(final: Path, data: bytes) -> Path:
    """Write `data` into a hidden temporary file beside `final`, flushed to disk; return its path."""
    temporary = temporary_sibling(final, "tmp")
    # 0o666, so that the umask decides the permissions, as for any new file (mkstemp's 0600 made models private).
    try:  # (the open too: a Ctrl-C as it returns left the file)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def _check_module_fits(spec: ModelSpec, state_dict: dict[str, Tensor], path: Path) -> None:
    """Refuse to write a file whose description contradicts its weights (it would load as something else)."""
    try:
        if detect(state_dict) == spec:
            return
    except ModelError:
        pass
    # Either detection guesses differently where shapes cannot tell (then `spec` still fits), or it does not fit.
    problems = mismatches(build(spec), state_dict)
    if problems:
        raise ModelError(f"{path}: the module does not match {spec.architecture}: {'; '.join(problems[:3])}")


def save_model(module: nn.Module, spec: ModelSpec, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write `X.pth` ({"params_ema": state_dict}) and `X.safetensors` (with metadata) atomically; return both paths.

    `path` may end in .pth, .safetensors or neither; missing folders are created. Both files are written under
    temporary names in the same folder and synced before either is renamed over its target, so a reader never sees
    a half-written file (each rename is atomic; the pair is not, should the second rename fail).
    Raises OutputError when the folder or files cannot be written, ModelError when `module` does not fit `spec`.
    """
    pth_path, safetensors_path = _output_paths(Path(path))
    # Plain, contiguous CPU tensors with their own storage: no views into bigger buffers, no wrapper prefixes.
    state_dict = {
        key: value.detach().to("cpu", copy=True).contiguous()
        for key, value in canonical_state_dict(module.state_dict()).items()
    }
    _check_module_fits(spec, state_dict, pth_path)
    metadata = {
        "format": "pt",
        "architecture": spec.architecture,
        "scale": str(spec.scale),
        "hyperparameters": json.dumps(spec.hyperparameters, sort_keys=True),
        "vsr_version": _vsr_version(),
    }
    pth_bytes = io.BytesIO()
    torch.save({"params_ema": state_dict, METADATA_KEY: metadata}, pth_bytes)
    contents = {pth_path: pth_bytes.getvalue(), safetensors_path: safetensors.torch.save(state_dict, metadata=metadata)}

    folder = pth_path.parent
    temporaries: dict[Path, Path] = {}
    target = pth_path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for target, data in contents.items():
            temporaries[target] = _write_temporary(target, data)
        for target, temporary in temporaries.items():
            os.replace(temporary, target)
    except OSError as error:
        raise OutputError(f"{target}: cannot write checkpoint ({_first_line(error)})") from error
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
    fsync_folder(folder)
    logger.info("saved %s and %s", pth_path, safetensors_path)
    return pth_path, safetensors_path
