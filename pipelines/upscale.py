"""Upscaling one file, start to finish: options, model and engine, output naming and checks, then the image path or
the streaming video pipeline (decoder → engine → encoder).

`vsr upscale`, `vsr batch` (and its Ray tasks) and `vsr bench` all go through here; vsr/api.py re-exports it as
the public API.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from vsr.errors import Cancelled, EncoderSettingsError, InputError, ModelError, OptionError, OutputError
from vsr.fsutil import check_output
from vsr.hardware import check_memory
from vsr.models import zoo
from vsr.models.interpolate import interpolated_model
from vsr.models.spec import LoadedModel
from vsr.pipelines import images
from vsr.pipelines.engine import (DEFAULT_TILE_OVERLAP, Engine, check_names, check_numbers, check_sizing, scale_label,
                                  upscale_with_alpha)
from vsr.pipelines.runner import StageTimes

if TYPE_CHECKING:
    import numpy as np

    from vsr.pipelines.dedup import Repeats
    from vsr.pipelines.frames import VideoStreamInfo
    from vsr.pipelines.segments import SegmentPlan

log = logging.getLogger("vsr")

IMAGE_SUFFIXES = images.READ_SUFFIXES
KEEP_FIELDS = "--deinterlace off"  # what keeps an interlaced video's fields, said as "auto" deinterlaces one
# The containers that keep a video's alpha, and the codec that "auto" picks there for a video with alpha.
ALPHA_CODECS = {".mkv": "libvpx-vp9", ".webm": "libvpx-vp9", ".mov": "prores"}
# The transfers of HDR video, FFmpeg's names → ours: PQ (HDR10, Dolby Vision, HDR10+) and HLG (broadcasts, phones).
HDR_TRANSFERS = {"smpte2084": "PQ", "arib-std-b67": "HLG"}
# The encoders codec "auto" picks between by the source's depth, each the other's where only it takes the encoder
# settings given (`codec_taking_settings`).
X26X_ALTERNATIVES = {"libx264": "libx265", "libx265": "libx264"}
# Where `say_codec_chosen` says the codec "auto" picked, an info line that the command line shows.
CODEC_LOG = "vsr.codec"
codec_log = logging.getLogger(CODEC_LOG)


FPS_RANGE = (Fraction(1, 1000), 1000)  # an image sequence's frame rate, as --fps gives it


def _finite(value: numbers.Real) -> bool:
    return isinstance(value, Fraction) or math.isfinite(value)  # (isfinite of a Fraction of 1e400 overflowed)


def _plain_numbers(options) -> None:
    """Turns numpy's and other libraries' numbers in `options` into Python's int and float, which the checks
    expect and JSON records take (a np.int64 batch size was refused; Fractions are kept: an fps is one)."""
    for name, value in vars(options).items():
        if isinstance(value, bool) or type(value) in (int, float, Fraction):
            continue
        if isinstance(value, numbers.Integral):
            object.__setattr__(options, name, int(value))
        elif isinstance(value, numbers.Real):
            object.__setattr__(options, name, float(value))
DEFAULT_SEGMENT_SECONDS = 300.0  # see VideoOptions.segment_seconds
# Options added after batch journals and segment folders were first written, with their defaults: records leave them
# out while at the default, so that what an earlier vsr recorded still matches.
LATER_DEFAULTS = {"deinterlace": "auto", "width": None, "height": None, "encoder_options": {}, "fps": None,
                  "decoder": "auto", "dedup": 0.0, "crop": None, "strength": 1.0}


@dataclass(frozen=True)
class UpscaleOptions:
    """How to upscale, for images and videos alike."""

    model: str = zoo.DEFAULT_MODEL  # a zoo name or a checkpoint path
    outscale: float | None = None  # final factor; None = the model's own scale
    width: int | None = None  # or a final size: the width and/or height shown (see Engine.output_size)
    height: int | None = None
    batch_size: int = 4  # frames (or tiles) per forward pass (on the CPU at most: Engine._frames_per_pass)
    tile: int = 0  # max tile side in input pixels; 0 = whole frames
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: str = "auto"  # auto, fp32, fp16, bf16
    blend: str | None = None  # a second model of the same architecture (ESRGAN's network interpolation)...
    alpha: float = 0.8  # ...weighted (1 - alpha)·model + alpha·blend
    cuda_graphs: str = "auto"  # auto (on for CUDA), on, off: see pipelines/graphs.py
    compile: bool = False  # torch.compile the network (one compilation per frame size)
    strength: float = 1.0  # the model's share of the output; the rest is the input scaled with Lanczos

    def __post_init__(self):
        _plain_numbers(self)

    def validate(self) -> None:
        """One line for a value out of its range, before any model is loaded (not whether this machine has the
        device: the engine says that)."""
        check_sizing(self.outscale, self.width, self.height)
        check_numbers(tile=self.tile, tile_overlap=self.tile_overlap, batch_size=self.batch_size,
                      strength=self.strength)
        check_names(device=self.device, precision=self.precision)


def denoise_blend(model: str, strength: float, blend: str | None = None) -> tuple[str, float]:
    """Real-ESRGAN's denoise strength for realesr-general-x4v3 as a `blend` and `alpha` for UpscaleOptions.

    1 is the model as released (it removes noise, and grain with it), 0 its weak-denoising twin
    realesr-general-wdn-x4v3; in between, the two networks interpolated parameter by parameter, as Real-ESRGAN's
    `-dn` does (weights strength and 1 - strength).
    """
    if model != "realesr-general-x4v3":
        raise OptionError(f"--denoise-strength works with -m realesr-general-x4v3 (it blends in "
                          f"realesr-general-wdn-x4v3), not with {model}")
    if blend is not None:
        raise OptionError("--denoise-strength is a --blend of its own: give one or the other")
    if not 0 <= strength <= 1:
        raise OptionError(f"--denoise-strength must be between 0 and 1, not {strength}")
    return "realesr-general-wdn-x4v3", 1 - strength


def load_model(name_or_path: str, *, progress: bool = True) -> LoadedModel:
    """A zoo name (see `vsr models`) or a checkpoint file (.pth, .safetensors) → a ready network."""
    return zoo.load(name_or_path, progress=progress)


def make_engine(options: UpscaleOptions, *, progress: bool = True) -> Engine:
    """The engine checks every option (one line per bad value) once the model is known."""
    model = load_model(options.model, progress=progress)
    if options.blend is not None:
        model = interpolated_model(model, load_model(options.blend, progress=progress), options.alpha)
    if (model.spec.in_channels, model.spec.out_channels) != (3, 3):  # (it failed on the first frame, in other words)
        kind = {1: "gray", 4: "RGBA"}.get(model.spec.in_channels, f"{model.spec.in_channels}-channel")
        raise ModelError(f"{options.model}: a {kind} model ({model.spec.in_channels} in, {model.spec.out_channels} "
                         "out of the 3 channels of RGB); vsr upscales RGB pictures, alpha through the same model")
    return Engine(
        model,
        device=options.device,
        precision=options.precision,
        tile=options.tile,
        tile_overlap=options.tile_overlap,
        batch_size=options.batch_size,
        outscale=options.outscale,
        width=options.width,
        height=options.height,
        cuda_graphs=options.cuda_graphs,
        compile=options.compile,
        strength=options.strength,
    )


def make_image_engine(options: UpscaleOptions) -> Engine:
    """`make_engine` for still images: without CUDA graphs unless asked for, since an image is one shape seen once
    (capturing a graph, three warm-up runs with the frame padded to a full batch, would cost more than it saves)."""
    return make_engine(replace(options, cuda_graphs="off" if options.cuda_graphs == "auto" else options.cuda_graphs))


def video_codec(codec: str, suffix: str, alpha: bool = False, deep_or_hdr: bool = False) -> str:
    """The encoder `codec` names. "auto": for a video with alpha, the codec that keeps it in a file ending in
    `suffix` (ALPHA_CODECS); VP9 in WebM, which holds no H.264 (as ffmpeg picks for `-o x.webm`); libx265 for a
    video written deeper than 8 bits or HDR (`deep_or_hdr`, see `is_deep_or_hdr`) in a container players take HEVC
    in (`encode.plays_hevc`: .mp4, .mov, .mkv, .ts), as HandBrake keeps HDR only in HEVC or AV1: its H.264 would be
    High 10, which hardly any hardware decoder plays (TVs, phones, Apple's devices, browsers); else libx264. Encoder
    settings that only the other of libx264 and libx265 takes pick that one (`codec_taking_settings`)."""
    from vsr.pipelines.encode import plays_hevc

    if codec != "auto":
        return codec
    if alpha and suffix.lower() in ALPHA_CODECS:
        return ALPHA_CODECS[suffix.lower()]
    if suffix.lower() == ".webm":
        return "libvpx-vp9"
    if deep_or_hdr and plays_hevc(suffix):
        return "libx265"
    return "libx264"


def is_deep_or_hdr(info: VideoStreamInfo, pix_fmt: str | None = None) -> bool:
    """Whether a video of `info` is written deeper than 8 bits or as HDR (PQ or HLG, HDR_TRANSFERS), which codec
    "auto" writes as HEVC (`video_codec`). A `pix_fmt` given decides by its own depth: 8 bits asked for stay H.264,
    of an HDR source too (players take 8-bit H.264; it is High 10 they lack)."""
    if pix_fmt is not None:
        return pix_fmt_bits(pix_fmt) > 8
    return info.bit_depth > 8 or info.color.transfer in HDR_TRANSFERS


def pix_fmt_bits(pix_fmt: str) -> int:
    """The bits per component of `pix_fmt`; 0 for a name FFmpeg does not know (the writer says that one)."""
    import av

    try:
        return max(component.bits for component in av.VideoFormat(pix_fmt).components)
    except ValueError:
        return 0


def encoder_choice(video: VideoOptions, suffix: str, info: VideoStreamInfo) -> tuple[str, str | None]:
    """The codec and pix_fmt (None: the writer's, by the source's depth) that `video` writes a video of `info` with
    into a file ending in `suffix`: "auto" resolved (`video_codec`, then `codec_taking_settings`), and the HEVC it
    picks for a source deeper than 10 bits written as Main 10 (yuv420p10le), the deepest profile players decode
    (x265 would write Main 12)."""
    codec = video_codec(video.codec, suffix, info.alpha, is_deep_or_hdr(info, video.pix_fmt))
    codec = codec_taking_settings(video, suffix, info, codec)
    if video.codec == "auto" and codec == "libx265" and video.pix_fmt is None and info.bit_depth > 10:
        return codec, "yuv420p10le"
    return codec, video.pix_fmt


def codec_taking_settings(video: VideoOptions, suffix: str, info: VideoStreamInfo, codec: str) -> str:
    """`codec`, the libx264 or libx265 that codec "auto" picked by the source's depth (`video_codec`), or the other
    one where only that one takes the encoder settings given: x264's (tune=film, x264-params, profile=high10) for a
    10-bit or HDR source, x265's (x265-params) for an 8-bit one, in a container that takes HEVC (`plays_hevc`).
    Users who type an encoder's settings want that encoder, and a batch over a folder of both depths failed on one
    of them. The encoders themselves are asked (`takes_settings`): which names and values each takes is theirs."""
    from vsr.pipelines.encode import plays_hevc, takes_settings

    other = X26X_ALTERNATIVES.get(codec)
    if video.codec != "auto" or not video.encoder_options or other is None or not plays_hevc(suffix):
        return codec
    # The pix_fmt the writer gives either encoder: 4:2:0 at the source's depth, 10 bits at most (Main 10, High 10).
    pix_fmt = video.pix_fmt or ("yuv420p" if info.bit_depth <= 8 else "yuv420p10le")
    settings = (video.crf, video.preset, tuple(sorted(video.encoder_options.items())), pix_fmt)
    if takes_settings(codec, *settings) or not takes_settings(other, *settings):
        return codec  # (settings neither takes: the writer says why, `auto_codec_named` how to name a codec)
    return other


def say_codec_chosen(source: Path, suffix: str, video: VideoOptions, info: VideoStreamInfo, codec: str,
                     pix_fmt: str | None) -> None:
    """One info line where codec "auto" chose an encoder other than H.264's, or other than the one the video's depth
    would take, and why: HEVC for a video deeper than 8 bits or HDR (`video_codec`), or the encoder that the settings
    given are for (`codec_taking_settings`); the output's file ends in `suffix`. The command line shows it
    (CODEC_LOG)."""
    if video.codec != "auto" or codec not in X26X_ALTERNATIVES:
        return
    by_depth = video_codec(video.codec, suffix, info.alpha, is_deep_or_hdr(info, video.pix_fmt))
    what = [f"{info.bit_depth}-bit"] if info.bit_depth > 8 else []
    if info.color.transfer in HDR_TRANSFERS:
        what.append(f"HDR ({HDR_TRANSFERS[info.color.transfer]})")
    video_is = f"{'a' if info.bit_depth > 8 else 'an'} {' '.join(what)} video" if what else f"--pix-fmt {pix_fmt}"
    depth = pix_fmt_bits(pix_fmt) if pix_fmt is not None else min(info.bit_depth, 10)  # (x264: 10 at most)
    settings = ", ".join(f"{key}={value}" for key, value in video.encoder_options.items())
    if codec == by_depth == "libx265":
        plays = "which TVs, phones and browsers play (H.264 High 10 hardly any)" if depth <= 10 else \
            "as --pix-fmt asks (few players decode HEVC deeper than 10 bits)"
        codec_log.info("%s: %s: written as %d-bit HEVC with libx265, %s; --codec libx264 writes H.264", source,
                       video_is, depth, plays)
    elif codec == "libx264" and by_depth == "libx265":
        written = "H.264 High 10 with libx264, which few TVs, phones and browsers play" if depth > 8 else \
            "8-bit H.264 with libx264"
        codec_log.info("%s: %s: x264 settings given (%s): written as %s (without them, HEVC)", source, video_is,
                       settings, written)
    elif codec == "libx265" and by_depth == "libx264":
        codec_log.info("%s: x265 settings given (%s): written as %d-bit HEVC with libx265 (without them, H.264)",
                       source, settings, depth)


@contextlib.contextmanager
def auto_codec_named(video: VideoOptions, codec: str):
    """Where codec "auto" picked libx265 (`video_codec`) and the encoder refuses settings given for it, which libx264
    refuses too (else "auto" picks libx264: `codec_taking_settings`), e.g. `x264-params=bfrmaes=2`: the error says
    that libx265 was vsr's choice, and how to get H.264 (the info line that says so is not shown with -q, nor in the
    Python API)."""
    try:
        yield
    except EncoderSettingsError as error:
        if video.codec != "auto" or codec != "libx265":
            raise
        raise EncoderSettingsError(f"{error} (codec \"auto\" picked libx265 for this video; --codec libx264 writes "
                                   "H.264)") from error


def output_label(options: UpscaleOptions, model_scale: float) -> str:
    """The tag in the default output's name (`scale_label`) for a model of `model_scale`, before any engine exists."""
    scale = options.outscale if options.outscale is not None else model_scale
    return scale_label(scale, options.width, options.height)


def default_output_path(source: Path, label: str, codec: str | None = None, alpha: bool = False) -> Path:
    """movie.mp4 → movie.x4.mp4 (`label`: see `scale_label`), next to the input. A video whose container cannot hold
    `codec` (H.264 in .webm, a codec named for a .gif), or cannot keep its alpha with codec "auto", or is one of
    STREAM_TIMED_SUFFIXES (raw streams; DVD program streams, whose few frame times H.264's large frames leave to
    guesses, and few players take H.264 there) gets .mkv, which holds every codec and every stream the source can
    pass on. A GIF or APNG with codec "auto" gives a GIF or APNG (`animation`: users upscale stickers and reaction
    GIFs to post them again). `codec` None: an image. An image sequence (frames/f%04d.png) gives one beside it
    (f%04d.x4.png)."""
    from vsr.pipelines.animation import is_animation
    from vsr.pipelines.encode import STREAM_TIMED_SUFFIXES, container_holds
    from vsr.pipelines.sequences import is_sequence

    suffix = source.suffix
    if is_sequence(source):
        codec = None  # written as images, in the input's format where vsr writes it
    elif codec == "auto" and is_animation(source):
        pass  # a GIF or APNG gives one of its kind back, transparency and loops kept (pipelines/animation.py)
    elif codec == "auto" and alpha and suffix.lower() not in ALPHA_CODECS:
        suffix = ".mkv"
    elif codec is not None:
        # (Where the name is ours to choose, "auto" stays H.264, quicker to encode than the VP9 a .webm would take.)
        codec = "libx264" if codec == "auto" and not alpha else video_codec(codec, suffix, alpha)
        if suffix.lower() in STREAM_TIMED_SUFFIXES or not container_holds(suffix, codec):
            suffix = ".mkv"
    if codec is None and suffix.lower() not in images.WRITE_SUFFIXES:  # TIFF, BMP: read, not written; PNG keeps them
        suffix = ".png"
    return source.with_name(f"{source.stem}.{label}{suffix}")


def is_folder(output: str | Path | None) -> bool:
    """Whether `output` names an existing folder, which the output goes into under its default name (as `cp` takes
    one): `-o out/`."""
    # (os.path.isdir: Path.is_dir raised "File name too long" for a name over 255 bytes, before check_output said it)
    return output is not None and os.path.isdir(output)


def _names_a_missing_folder(output: str | Path | None) -> bool:
    return isinstance(output, str) and output.endswith(("/", os.sep)) and not is_folder(output)


def place_output(output: str | Path | None, default: Path) -> Path:
    """Where to write: `output` as given, or `default` (`default_output_path`, beside the source) where none is
    given, or `default`'s name inside `output` where it is a folder."""
    if output is None:
        # An input named through /dev or /proc (/dev/stdin given a file with <, /dev/fd/3): its folder is the
        # system's, and the output went there (as root, /dev/stdin.x4.mkv; else a refusal to write in /dev).
        folder = default.parent.resolve()
        if folder == Path("/dev") or folder.is_relative_to("/proc"):
            raise OutputError(f"{default}: an input read through {default.parent} has no folder of its own to "
                              "write beside; name the output with -o")
        return default
    if _names_a_missing_folder(output):
        raise OutputError(f"{output}: no such folder (the command line makes it; from Python, make it first)")
    return Path(output) / default.name if is_folder(output) else Path(output)


def check_output_early(source: Path, output: str | Path | None, options: UpscaleOptions, codec: str | None,
                       overwrite: bool) -> None:
    """`check_output` before the model loads (seconds), where the output's name is known without it
    (`planned_output`). Running the same command twice said "already exists" only after loading the model."""
    planned = planned_output(source, output, options, codec)
    if planned is not None:
        check_output(planned, source, overwrite)


def planned_output(source: Path, output: str | Path | None, options: UpscaleOptions, codec: str | None
                   ) -> Path | None:
    """Where `source`'s output goes, where that is known before the model loads: named by -o, or by a zoo model's
    scale (None for a checkpoint, whose scale is known once it is loaded, and for image sequences, which resume).
    `codec` None: an image. May open the source (a video with alpha is named otherwise with codec "auto")."""
    from vsr.pipelines.sequences import check_number_in_file_name, is_sequence

    options.validate()  # (a bad option is said before an output that exists, as it was)
    if output is not None:
        check_number_in_file_name(Path(output))  # (before "output folder does not exist", which it would be)
    if is_sequence(source) or (output is not None and is_sequence(Path(output))):
        return None
    if output is not None and not is_folder(output):  # a file named (place_output refuses a missing folder/)
        return place_output(output, source)
    entry = zoo.MODELS.get(options.model)
    if entry is None:
        return None
    label = output_label(options, entry.scale)
    alpha = False
    if default_output_path(source, label, codec) != default_output_path(source, label, codec, alpha=True):
        from vsr.pipelines.probe import probe  # (codec "auto": a video with alpha goes into .mkv)

        alpha = probe(source).video.alpha
    return place_output(output, default_output_path(source, label, codec, alpha))


def check_animation_early(output: str | Path | None, codec: str) -> None:
    """One line before the model loads where --codec names a codec that an animation output (-o x.gif) cannot hold."""
    from vsr.pipelines.animation import check_animation_codec, is_animation

    if output is not None and not is_folder(output) and is_animation(output):
        check_animation_codec(Path(output), codec)


def check_option_types(options: object, *video: object, overwrite: object = False) -> None:
    """One line where the API is given something else than an UpscaleOptions (and, where `video` is given, a
    VideoOptions): a dict of them failed deep inside with an AttributeError; an `overwrite` of "no" replaced."""
    if not isinstance(overwrite, bool):
        raise OptionError(f"overwrite must be True or False, not {overwrite!r}")
    if not isinstance(options, UpscaleOptions):
        raise OptionError(f"options must be an UpscaleOptions, not {type(options).__name__}")
    if video and not isinstance(video[0], VideoOptions):
        raise OptionError(f"video must be a VideoOptions, not {type(video[0]).__name__}")
    for option, value in (("model", options.model), ("blend", options.blend)):
        if (value is not None or option == "model") and not isinstance(value, str):
            raise OptionError(f"{option} must be a zoo name or a checkpoint path, as text; not {value!r}")
    if isinstance(options.alpha, bool) or not isinstance(options.alpha, numbers.Real):
        raise OptionError(f"alpha must be a number from 0 to 1, not {options.alpha!r}")


def as_path(value: object, what: str = "source") -> Path:
    """`value` (text or a path) as a Path; one line for anything else (pathlib's TypeError named no argument)."""
    if not isinstance(value, (str, os.PathLike)):
        raise OptionError(f"{what} must be a path (text or a Path), not {value!r}")
    return Path(value)


def check_input(path: Path) -> None:
    from vsr.pipelines.sequences import first_frame, is_sequence

    if is_sequence(path) and not path.exists():  # (a file may well be named 100%d.png)
        first_frame(path)
        return
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if not path.is_file():
        from vsr.pipelines.probe import not_a_file

        raise InputError(not_a_file(path))


def is_image(path: Path) -> bool:
    """A still image by its name; an animated PNG is a video (FFmpeg decodes its frames as one)."""
    from vsr.pipelines.image_metadata import is_animated
    from vsr.pipelines.sequences import is_sequence

    if path.suffix.lower() not in IMAGE_SUFFIXES or (is_sequence(path) and not path.exists()):
        return False
    return not (path.suffix.lower() == ".png" and path.is_file() and is_animated(path))


def upscale_image(
    source: str | Path,
    output: str | Path | None = None,
    *,
    options: UpscaleOptions = UpscaleOptions(),
    overwrite: bool = False,
    engine: Engine | None = None,
) -> Path:
    """Upscale one image file (png, jpg, webp, tiff, bmp; RGB, gray or RGBA; 16-bit stays 16-bit in PNG). Returns
    the output path."""
    from vsr.pipelines.sequences import is_sequence

    check_option_types(options, overwrite=overwrite)
    source = as_path(source)
    if output is not None:
        as_path(output, "output")  # (checked only: a final "/" in the text names a folder)
    check_input(source)
    if is_sequence(source) and not source.exists():
        raise OptionError(f"{source}: an image sequence; upscale_video upscales it (as vsr upscale does)")
    # (A file whose own name has a %d in it, as a batch names its output after it, is no sequence.)
    if output is not None and is_sequence(output) and not is_sequence(source):
        raise OptionError(f"{output}: an image sequence is made from a video or a sequence, and {source} is one image")
    if output is not None and not is_folder(output) and not _names_a_missing_folder(output):
        images.check_writable(Path(output))  # before the model runs
    if engine is None:
        check_output_early(source, output, options, None, overwrite)
    engine = engine or make_image_engine(options)
    output = place_output(output, default_output_path(source, engine.label))
    check_output(output, source, overwrite)

    def check_size(in_w: int, in_h: int, channels: int, sample_bytes: int) -> None:
        # Before the image is decoded (16000×16000 took 19 s to be refused after it), from its header's size.
        out_h, out_w = engine.output_size(in_h, in_w)
        images.check_fits(output, out_w, out_h)
        model_w, model_h = in_w * engine.spec.scale, in_h * engine.spec.scale
        # (a model's output larger than the size asked for is resized to it: only a smaller model scale helps there)
        first = f" (by the model to {model_w}x{model_h} first)" if model_w * model_h > out_w * out_h else ""
        check_memory(image_memory(engine, in_w, in_h, channels, sample_bytes),
                     f"{source}: a {in_w}x{in_h} image upscaled to {out_w}x{out_h}{first}",
                     "use a smaller --outscale, --width or --height" + (", or a model of a smaller scale" if first
                                                                        else ""))

    image = images.read_image(source, check_size)
    images.write_image(output, images.upscale_image(engine, image), overwrite=overwrite)
    return output


def upscale_array(picture: np.ndarray, *, options: UpscaleOptions = UpscaleOptions(),
                  engine: Engine | None = None) -> np.ndarray:
    """A picture held in memory, upscaled as `upscale_image` upscales a file: a numpy array of H×W×3 (RGB), H×W×4
    (RGBA, alpha through the model too) or H×W (gray), of uint8, uint16 or floats in [0, 1]. Returns an array of the
    same kind at the new size. `engine`: one made by `make_engine`, to reuse its loaded model. (A PIL image:
    `numpy.asarray(image)` in, `PIL.Image.fromarray(result)` out; torch tensors of N×3×H×W: `engine.upscale`.)"""
    import numpy as np
    import torch

    check_option_types(options)
    if not isinstance(picture, np.ndarray):
        hint = " (a PIL image: numpy.asarray(image))" if hasattr(picture, "getbands") else ""
        raise InputError(f"a picture is a numpy array, not {type(picture).__name__}{hint}")
    planes = picture[:, :, None] if picture.ndim == 2 else picture
    if planes.ndim != 3 or (planes.shape[2] not in (3, 4) and picture.ndim != 2) or 0 in planes.shape:
        raise InputError(f"a picture is an array of H×W×3 (RGB), H×W×4 (RGBA) or H×W (gray), not of shape "
                         f"{picture.shape}")
    if picture.dtype not in (np.uint8, np.uint16) and picture.dtype.kind != "f":
        raise InputError(f"a picture's values are uint8, uint16 or floats in [0, 1], not {picture.dtype}")
    engine = engine or make_image_engine(options)
    height, width, channels = planes.shape
    check_memory(image_memory(engine, width, height, max(channels, 3), min(picture.dtype.itemsize, 2)),
                 f"a {width}x{height} picture", "use a smaller --outscale, --width or --height")
    top = np.iinfo(picture.dtype).max if picture.dtype.kind == "u" else 1
    values = torch.from_numpy(np.ascontiguousarray(planes, np.float32)).permute(2, 0, 1) / top
    image = images.Image(rgb=values[:3].expand(3, -1, -1), alpha=values[3:] if channels == 4 else None,
                         gray=channels == 1)
    upscaled = images.upscale_image(engine, image)
    out = upscaled.rgb[:1] if channels == 1 else upscaled.rgb
    if upscaled.alpha is not None:
        out = torch.cat([out, upscaled.alpha])
    result = out.clamp(0, 1).permute(1, 2, 0).numpy()
    if top != 1:
        result = np.rint(result * top)  # (rounded to nearest, as a PNG is written: `images._quantize`)
    result = result.astype(picture.dtype)
    return result[:, :, 0] if picture.ndim == 2 else result


def image_memory(engine: Engine, width: int, height: int, channels: int, sample_bytes: int) -> int:
    """Bytes an image of `width` × `height` (and `channels`, 3 or 4, of `sample_bytes` each in its file) takes at
    the peak of its upscaling with `engine`, beside the network's own working memory (which the engine fits to its
    budget): the source as floats throughout; then the model's output as floats (at the model's scale) and, where
    the final size differs, its Lanczos resize (`resize` works in bands), and where `--strength` mixes, the source
    resized and the mix; then the output as floats, as the integers written, in their frame and in the file.
    Alpha goes through the model as a second, gray picture (`upscale_with_alpha`): twice the color's floats, then
    the four planes put together. Measured (bicubic, 2-core EPYC, less the 0.3 GB the process itself takes):
    3840×2160 ×4 2.9 GB (this says 2.9), 7680×4320 ×4 sized ×2 8.3 GB (8.4), 2000×2000 RGBA ×4 3.2 GB (3.3)."""
    out_h, out_w = engine.output_size(height, width)
    model_h, model_w = height * engine.spec.scale, width * engine.spec.scale
    source, output = height * width, out_h * out_w
    model = 0 if engine.strength == 0 else model_h * model_w  # (0: no model, the source resized)
    resized = 0 if model and (out_h, out_w) == (model_h, model_w) else output
    mixed = 2 * output if 0 < engine.strength < 1 else 0
    if channels == 4:  # (the source as RGB and alpha, together, color bled under the transparent pixels, then as
        # two pictures for the model; after it, the alpha's mean, the opaque plane and the four planes together)
        upscaling = 4 * (17 * source + 6 * (model + resized + mixed) + 6 * output)
    else:
        upscaling = 4 * 3 * (source + model + resized + mixed)
    writing = 4 * channels * (source + output) + 3 * channels * sample_bytes * output
    return max(upscaling, writing)


# FFmpeg's time syntax: seconds ("90", "90.5") or [HH:]MM:SS[.m...] ("1:30", "01:02:03.250").
_TIME = re.compile(r"(?:(?:(?P<hours>\d+):)?(?P<minutes>\d+):)?(?P<seconds>\d+(?:\.\d*)?|\.\d+)")


def parse_time(text: str | float | int, option: str = "--start") -> float:
    """Seconds from a number or from text such as "90.5", "1:30" or "1:02:03.25", for --start and --end."""
    if isinstance(text, (int, float)) and not isinstance(text, bool) and math.isfinite(text):
        return float(text)
    match = _TIME.fullmatch(str(text).strip())
    clock = match is not None and match["minutes"] is not None
    if match is None or (clock and (float(match["seconds"]) >= 60 or (match["hours"] and int(match["minutes"]) >= 60))):
        raise OptionError(f"{option} takes seconds or a time such as 1:30 or 1:02:03.5; not {text!r}")
    return int(match["hours"] or 0) * 3600 + int(match["minutes"] or 0) * 60 + float(match["seconds"])


def clock(seconds: float) -> str:
    """Seconds as `parse_time` reads them back, for messages: 8 → "0:08", 60 → "1:00", 3723.25 → "1:02:03.25"."""
    minutes, milliseconds = divmod(round(seconds * 1000), 60_000)  # (in ms first: 59.9996 s is 1:00, not 0:60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours}:{minutes:02d}:" if hours else f"{minutes}:"
    text += f"{milliseconds // 1000:02d}"
    return text + f".{milliseconds % 1000:03d}".rstrip("0") if milliseconds % 1000 else text


def warn_window_past_end(source: Path, video: VideoOptions, info: VideoStreamInfo, frames: int | None) -> None:
    """A warning where a preview's window reaches past the video's end, which cuts it there (the run wrote the whole
    video without a word): an --end after the last frame's end, or --frames more than the window holds up to the end
    (`frames`: how many it holds, where known). A --start past the end is an error (no frame), said elsewhere. Said
    once per video (`warn_once`): a video in segments is planned and opened more than once."""
    from vsr.pipelines.decode import warn_once
    from vsr.pipelines.probe import video_length

    length = video_length(source, info.index)
    length = float(length) if length is not None else info.duration
    if length is not None and (video.start or 0) >= length or frames == 0:
        return  # no frame in the window: upscale_video's error
    messages = []
    # (a millisecond's leeway: containers round the last frame's end to their clock; --end counts milliseconds too)
    end_past = video.end is not None and length is not None and video.end > length + 0.001
    if end_past:
        messages.append(f"--end {clock(video.end)} is past the video's end ({clock(length)}): upscaling to its end")
    if frames is not None and video.max_frames is not None and frames < video.max_frames and (
            video.end is None or end_past):  # (not where an --end inside the video stops the window first)
        since = f" from --start {clock(video.start)}" if video.start else ""
        messages.append(f"--frames {video.max_frames} is more than the video has{since} ({frames} "
                        f"frame{'s' if frames != 1 else ''}): upscaling {f'those {frames}' if frames != 1 else 'it'}")
    warn_once(source, messages)


@dataclass(frozen=True)
class VideoOptions:
    """How to decode and encode a video."""

    decoder: str = "auto"  # auto, pyav, decord, dali
    # A key of encode.CODECS, or auto: libx264; libx265 for 10-bit and HDR video; for alpha a codec that keeps it
    codec: str = "auto"  # (see video_codec; settings only the other encoder takes pick it: encoder_choice)
    crf: int | None = None  # None: the codec's default in pipelines.encode
    preset: str | None = None
    # More encoder options by FFmpeg's names, e.g. {"tune": "animation"}, {"b": "8M"} (a bit rate instead of the crf)
    encoder_options: dict[str, str] = field(default_factory=dict)
    pix_fmt: str | None = None  # None: keep the source's bit depth
    start: float | None = None  # seconds
    end: float | None = None  # seconds
    max_frames: int | None = None
    copy_streams: bool = True  # audio, subtitles, attachments, chapters, metadata
    deinterlace: str = "auto"  # auto (the streams that say they are interlaced), on, off; see pipelines/decode
    fps: Fraction | None = None  # frames per second of an image sequence input (None: 25, as FFmpeg); see sequences
    # Videos longer than this are upscaled in resumable segments by `segments.upscale_video_in_segments` (what
    # `vsr upscale` and batch jobs call); None: never. `upscale_video` itself never cuts.
    segment_seconds: float | None = DEFAULT_SEGMENT_SECONDS
    # Frames that repeat the last one upscaled reuse its picture (pipelines/dedup.py): None: off; 0: frames equal in
    # every value; more: a tolerance in levels of 255, for held drawings that compression has left a little noisy.
    dedup: float | None = 0.0
    crop: str | None = None  # "auto" (black bars found) or FFmpeg's "W:H:X:Y" / "W:H": see pipelines/crop.py

    def __post_init__(self):
        _plain_numbers(self)

    @property
    def is_preview(self) -> bool:
        return self.start is not None or self.end is not None or self.max_frames is not None

    def describe_window(self) -> str:
        """The preview window in words, e.g. "from 5 s to 7.5 s", for messages."""
        window = f"from {self.start or 0:g} s" + (f" to {self.end:g} s" if self.end is not None else "")
        return window + (f" (at most {self.max_frames} frames)" if self.max_frames is not None else "")

    def validate(self) -> None:
        for option, value, kinds in (("--start", self.start, numbers.Real), ("--end", self.end, numbers.Real),
                                     ("--frames", self.max_frames, numbers.Integral),
                                     ("--crf", self.crf, numbers.Integral), ("--fps", self.fps, numbers.Real),
                                     ("--segment-seconds", self.segment_seconds, numbers.Real)):
            # (from Python: a "0:30", 2.5 frames or inf seconds failed deep inside, or, for 2.5 frames, not at all)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)
                                      or not _finite(value)):
                raise OptionError(f"{option} must be a {'whole ' if kinds is numbers.Integral else ''}number, not "
                                  f"{value!r}")
        for option, value in (("--codec", self.codec), ("--decoder", self.decoder), ("--deinterlace", self.deinterlace),
                              ("--preset", self.preset), ("--pix-fmt", self.pix_fmt), ("--crop", self.crop)):
            if value is not None and not isinstance(value, str):
                raise OptionError(f"{option} must be text, not {value!r}")
        if not isinstance(self.copy_streams, bool):  # ("no" is true)
            raise OptionError(f"copy_streams must be True or False, not {self.copy_streams!r}")
        if not isinstance(self.encoder_options, dict):
            raise OptionError(f"encoder options are a dict of names and text values, such as {{'tune': "
                              f"'animation'}}; not {self.encoder_options!r}")
        if self.start is not None and self.start < 0:
            raise OptionError(f"--start must be 0 or more seconds, not {self.start}")
        if self.end is not None and self.end <= (self.start or 0):  # (--end 0 alone was "end=0.0: ...")
            raise OptionError(f"--end ({float(self.end):g}) must be after --start ({float(self.start or 0):g})")
        if self.max_frames is not None and self.max_frames < 1:
            raise OptionError(f"--frames must be at least 1, not {self.max_frames}")
        from vsr.pipelines.decode import DEINTERLACE

        if self.deinterlace not in DEINTERLACE:
            raise OptionError(f"--deinterlace must be one of {', '.join(DEINTERLACE)}, not {self.deinterlace!r}")
        for key, value in self.encoder_options.items():
            if not (isinstance(key, str) and key and isinstance(value, str)):
                raise OptionError(f"encoder options are names and text values, such as tune=animation; "
                                  f"not {key!r}: {value!r}")
        if self.fps is not None and not FPS_RANGE[0] <= self.fps <= FPS_RANGE[1]:
            # (Matroska times in milliseconds: 1e9 fps put every frame at 0; 1e-9 fps was refused by the muxer)
            shown = f"{float(self.fps):g}" if self.fps < 10**300 else "more"
            raise OptionError(f"--fps must be from {FPS_RANGE[0]} to {FPS_RANGE[1]}, not {shown}")
        from vsr.pipelines.crop import parse_crop

        parse_crop(self.crop)
        if self.dedup is not None and (isinstance(self.dedup, bool) or not isinstance(self.dedup, (int, float))
                                       or not 0 <= self.dedup <= 255):
            raise OptionError(f"dedup is None (off), 0 (exact) or a tolerance in levels of 255 such as 4 "
                              f"(dedup.parse_dedup reads --dedup's words); not {self.dedup!r}")
        if self.segment_seconds is not None and not self.segment_seconds > 0:
            raise OptionError(f"--segment-seconds must be more than 0 (0 on the command line: never), "
                              f"not {self.segment_seconds}")


@dataclass
class VideoResult:
    """What `upscale_video` did."""

    output: Path
    frames: int
    width: int
    height: int
    times: StageTimes
    decoder: str = ""  # the decoder that ran, e.g. "pyav (NVDEC)" ("" where workers decoded)
    precision: str = ""  # what the model ran in, e.g. "bf16" ("fp32, bf16" where workers differed)
    rotation: int = 0  # the output's display rotation (its frames, `width`×`height`, are shown turned by it)
    # The encoder that wrote the video and its pixel format, e.g. "libx265", "yuv420p10le" ("" for an image sequence,
    # and where segments were joined: see the output itself)
    encoder: str = ""
    pix_fmt: str = ""
    warnings: list[str] = field(default_factory=list)  # what this call warned of (a damaged or cut source, ...)


def video_output_size(engine: Engine, info: VideoStreamInfo, source: Path, output: Path, video: VideoOptions
                      ) -> tuple[int, int, VideoStreamInfo]:
    """A video's upscaled (height, width), and the stream info its writer takes the tags from. With --width/--height
    (`Engine.output_size`) the sides are those shown (after the rotation, with the pixel aspect applied), even
    where the chroma is subsampled (4:2:0 both, 4:2:2 the width: `encode.chroma_steps`; not for an image sequence,
    RGB or 4:4:4), and the pixels square: the source's pixel aspect ratio is not copied. `source` names the video in
    a warning."""
    from vsr.pipelines.animation import is_animation
    from vsr.pipelines.encode import chroma_steps
    from vsr.pipelines.sequences import is_sequence

    if is_sequence(output) or is_animation(output):
        steps = (1, 1)
    else:
        codec, pix_fmt = encoder_choice(video, output.suffix, info)
        steps = chroma_steps(output, codec, source, info, pix_fmt)
    if info.rotation % 180 == 90:  # (some containers get the frames turned upright: their rows become columns)
        steps = (max(steps),) * 2
    height, width = engine.output_size(info.height, info.width, pixel_aspect=info.sample_aspect_ratio or 1,
                                       turned=info.rotation % 180 == 90, steps=steps)
    model_size = (info.height * engine.spec.scale, info.width * engine.spec.scale)
    if not engine.sized and engine.outscale is None and (height, width) != model_size:
        from vsr.pipelines.decode import warn_once

        needs = "4:2:0 video needs even sides" if steps == (2, 2) else "4:2:2 video needs an even width"
        warn_once(source, [f"the model makes {model_size[1]}x{model_size[0]} frames; {needs}, so they are resized "
                           f"to {width}x{height} (a 4:4:4 --pix-fmt, an image sequence output, or --crop to even "
                           "sides, keeps the model's size)"])
    return height, width, replace(info, sample_aspect_ratio=None) if engine.sized else info


def upscale_frames(engine: Engine, frames, alpha: bool, size: tuple[int, int]):
    """A batch of decoded frames upscaled to `size` (height, width) for a writer that keeps alpha (RGBA) or not
    (RGB: any alpha is dropped before the model, not computed for nothing)."""
    return upscale_with_alpha(engine, frames, size) if alpha else engine.upscale(frames[:, :3], size)


def upscale_video(
    source: str | Path,
    output: str | Path | None = None,
    *,
    options: UpscaleOptions = UpscaleOptions(),
    video: VideoOptions = VideoOptions(),
    overwrite: bool = False,
    progress: bool = False,
    engine: Engine | None = None,
    plan: SegmentPlan | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> VideoResult:
    """Upscale a video: same frames at the same times, every other stream copied untouched.

    The output is written under a temporary name and renamed at the end, so an error, Ctrl-C or a cancel never
    leaves a partial file under the final name (an image sequence keeps the frames written, to resume from).
    `progress`: a tqdm bar on stderr. `engine`: one made by `make_engine` from the same `options`, to reuse its
    loaded model. `on_progress(frames_done, frames_total)` is called after each batch of frames is written, on the
    pipeline's encoder thread, with the counts the bar shows (total None where the video does not say); an
    exception it raises stops the run as an error would. `cancel`: an event that another thread may set to stop
    the run after the batch in hand; the call then raises vsr.errors.Cancelled. The result's `warnings` are those
    this call gave (each also logged on the "vsr" logger). `plan`: the segments' plan of this video and window,
    where the caller has made one (`upscale_video_in_segments`), which tells where a --frames preview ends without
    reading the video's packets again. `on_frames`: called with each count of frames upscaled (a batch's job: the
    batch's bar counts them).
    """
    from vsr.pipelines.progress import said_once_per_call, warnings_kept

    with said_once_per_call(), warnings_kept() as kept:
        result = _upscale_video(source, output, options=options, video=video, overwrite=overwrite,
                                progress=progress, engine=engine, plan=plan, on_progress=on_progress, cancel=cancel,
                                on_frames=on_frames)
    result.warnings = list(kept.messages)
    return result


def check_progress_and_cancel(on_progress: object, cancel: object) -> None:
    """One line where `on_progress` is no function or `cancel` no event (they failed deep inside, in a thread)."""
    if on_progress is not None and not callable(on_progress):
        raise OptionError(f"on_progress must be a function of (frames done, frames in all), not {on_progress!r}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise OptionError(f"cancel must be a threading.Event, not {cancel!r}")


def check_cancel(cancel: threading.Event | None, source: Path) -> None:
    """Raise Cancelled where the caller has set `cancel`."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{source}: cancelled")


def _upscale_video(source, output, *, options: UpscaleOptions, video: VideoOptions, overwrite: bool, progress: bool,
                   engine: Engine | None, plan: SegmentPlan | None,
                   on_progress: Callable[[int, int | None], None] | None,
                   cancel: threading.Event | None, on_frames: Callable[[int], None] | None) -> VideoResult:
    from vsr.pipelines.crop import cropped, resolve_crop
    from vsr.pipelines.decode import open_decoder
    from vsr.pipelines.dedup import Repeats, distinct_pictures
    from vsr.pipelines.frames import FrameBatch
    from vsr.pipelines.probe import last_frame_start
    from vsr.pipelines.progress import frames_counted, progress_bar
    from vsr.pipelines.runner import run_pipeline
    from vsr.pipelines.segments import plan_video
    from vsr.pipelines.sequences import check_sequence_options, is_sequence

    check_option_types(options, video, overwrite=overwrite)
    check_progress_and_cancel(on_progress, cancel)
    source = as_path(source)
    if output is not None:
        as_path(output, "output")  # (checked only: a final "/" in the text names a folder)
    check_input(source)
    video.validate()
    # What an image sequence output is made of, which lets it resume (a default output is known further down).
    record = run_record(source, options, video, frames=True) if output is not None and is_sequence(output) else None
    check_sequence_options(source, output, video, overwrite, record)
    check_animation_early(output, video.codec)
    if engine is None:
        check_output_early(source, output, options, video.codec, overwrite)
    check_cancel(cancel, source)
    engine = engine or make_engine(options, progress=progress)
    if plan is None and video.max_frames is not None and not is_sequence(source):
        plan = plan_video(source, 1, video)  # where a --frames window ends (`_window_end`) and how many frames it has
    # Frames are decoded onto the engine's device where a decoder can (NVDEC), so they need not cross to the host.
    decoder = open_decoder(
        source, backend=video.decoder, device=engine.device, start=video.start, end=video.end,
        max_frames=video.max_frames, deinterlace=video.deinterlace, frame_rate=video.fps,
        keep_fields_with=KEEP_FIELDS,
    )
    with decoder:
        crop = resolve_crop(video.crop, source, decoder.info)
        info = crop.of(decoder.info) if crop is not None else decoder.info
        warn_window_past_end(source, video, info, plan.frame_count if plan is not None else None)
        output = place_output(output, default_output_path(source, engine.label, video.codec, info.alpha))
        # Image files need no even sides.
        height, width, output_info = video_output_size(engine, info, source, output, video)
        total = info.frame_count if video.max_frames is None else min(video.max_frames,
                                                                      info.frame_count or video.max_frames)
        if record is None and is_sequence(output):
            record = run_record(source, options, video, frames=True)
        with _open_writer(source, output, output_info, width, height, video, overwrite, record,
                               first_pts=decoder.selection.start_pts or 0, device=engine.device,
                               trim_end=_window_end(source, video, decoder.selection, info, plan)) as writer:

            def upscale_batch(batch: FrameBatch) -> FrameBatch:
                check_cancel(cancel, source)  # (on the caller's thread, before the slow part)
                return replace(batch, frames=upscale_frames(engine, batch.frames, writer.alpha, (height, width)))

            resumed = getattr(writer, "resumed", 0)  # an image sequence's first frames, kept from an earlier run
            repeats = Repeats()
            # Frames an earlier run wrote are still compared (a picture held across the cut is upscaled again for
            # the frames after it, as one run would show it), then skipped.
            # In the engine's batches (an engine given may have its own): smaller ones would replay its CUDA graph
            # padded to its batch size, a batch of 4 at batch size 8 doing twice the work.
            batches = skip_frames(distinct_pictures(cropped(decoder.batches(engine.batch_size), crop),
                                                     engine.batch_size, video.dedup), resumed, repeats)
            # (counted as done before the bar starts: counted as made by this run, they made its rate and time
            # left those of frames only skipped, hundreds of frames a second)
            with progress_bar(total, initial=resumed, shown=progress) as bar:
                times = run_pipeline(batches, upscale_batch, writer.write, device=engine.device,
                                     on_frames=frames_counted(bar, on_progress, on_frames), finish=writer.flush)
            times.extra["repeated_frames"] = repeats.frames
            if resumed:
                times.extra["resumed_frames"] = resumed
            elif times.frames == 0:  # a preview window past the end: an empty video is not what was asked for
                lasts = f"; the video lasts {info.duration:.3f} s" if info.duration else ""
                last_start = last_frame_start(source, info.index)  # (a GIF's last frame may hold for seconds)
                if info.duration and last_start is not None:  # a window inside the last frame's span starts no frame
                    lasts += f", its last frame starting at {float(last_start):.3f} s"
                raise OptionError(f"{source}: no video frame {video.describe_window()}{lasts}")
            if plan is None:  # (the frames of an image sequence's --frames window, counted as they were decoded, and
                # those an earlier run wrote: a resumed run said nothing)
                warn_window_past_end(source, video, info, resumed + times.frames)
    return VideoResult(output=output, frames=times.frames, width=writer.width, height=writer.height, times=times,
                       decoder=decoder_name(decoder), precision=engine.precision,
                       rotation=getattr(writer, "rotation", 0), encoder=getattr(writer, "encoder", ""),
                       pix_fmt=getattr(writer, "pix_fmt", ""))


def decoder_name(decoder) -> str:
    """The decoder that ran, for summaries and `vsr bench`: "pyav (NVDEC)" only where NVDEC decoded frames. PyAV's
    NVDEC is attached to the stream whenever the GPU's CUDA context can be had, and FFmpeg decodes in software what
    NVDEC then cannot (a codec, a profile or a size it lacks, no NVDEC library in the driver)."""
    return decoder.backend + (" (NVDEC)" if getattr(decoder, "nvdec_frames", 0) else "")


def _window_end(source: Path, video: VideoOptions, selection, info: VideoStreamInfo,
                plan: SegmentPlan | None = None) -> Fraction | None:
    """Where a preview ends, in source seconds, for the writer's `trim_end` (a cue shown past it ends with it, and so
    does its last frame): at --end, or where --frames stops first, at the next frame's start, as the segments' plan
    finds it (`plan`: reading the video's packets takes a second or more of a long film's)."""
    from vsr.pipelines.sequences import is_sequence

    end = None if selection.end_pts is None else selection.end_pts * info.time_base
    if video.max_frames is None or plan is None or is_sequence(source):
        return end
    end_pts = plan.segments[-1].end_pts if plan.segments else None
    return end if end_pts is None else end_pts * plan.info.time_base


def run_record(source: Path, options: UpscaleOptions, video: VideoOptions, frames: bool = False) -> dict:
    """What a resumable run makes (segments, or with `frames` an image sequence's frames): the source as it is now,
    and the settings that shape the output's frames. Settings that only change the speed (device, batch size, CUDA
    graphs, compile) may change between runs; the decoder may not (decord's colors are not PyAV's), and how a video
    would be cut into segments means nothing to frames written one by one."""
    from vsr.pipelines.sequences import existing_frames, is_sequence

    files = list(existing_frames(source).values()) if is_sequence(source) else [source]
    stats = [file.stat() for file in files]
    speed_only = {"device", "batch_size", "cuda_graphs", "compile", "copy_streams"}
    if frames:
        speed_only.add("segment_seconds")
    settings = {**asdict(options), **asdict(video)}
    record = {
        "source": str(Path(source).resolve()), "size": sum(stat.st_size for stat in stats),
        "mtime_ns": max((stat.st_mtime_ns for stat in stats), default=0),
        "settings": {key: str(value) if isinstance(value, Fraction) else value  # (JSON has no fractions)
                     for key, value in sorted(settings.items())
                     if key not in speed_only and (key not in LATER_DEFAULTS or value != LATER_DEFAULTS[key])},
    }
    # A checkpoint file is recorded as the source is, so that one rewritten in place (a training run going on) or
    # named by the same relative path elsewhere is not taken for the model that made the earlier frames.
    model_files = {}
    for name in (options.model, options.blend):
        if name is not None and name not in zoo.MODELS and not zoo.is_url(name) and Path(name).is_file():
            stat = Path(name).stat()
            model_files[name] = [str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns]
    if model_files:  # (left out otherwise, so that records of earlier versions still match)
        record["model_files"] = model_files
    return record


def skip_frames(batches, count: int, repeats: Repeats):
    """`batches` without their first `count` frames (those an earlier run wrote), and the pictures only they show;
    `repeats` counts the frames left that show a picture already upscaled (a batch's frames, less its pictures)."""
    for batch in batches:
        if count >= len(batch.pts):
            count -= len(batch.pts)
            continue
        if count:
            shows = batch.pictures()[count:]
            batch = replace(batch, frames=batch.frames[shows[0]:], pts=batch.pts[count:],
                            shows=[picture - shows[0] for picture in shows])
            count = 0
        repeats.frames += len(batch.pts) - len(batch.frames)
        yield batch


def _open_writer(source: Path, output: Path, info: VideoStreamInfo, width: int, height: int, video: VideoOptions,
                 overwrite: bool, record: dict | None = None, first_pts: int = 0, device=None, trim_end=None):
    """The writer of `output`: a VideoWriter, or an ImageSequenceWriter for a name like frames/%06d.png (`record`:
    what the run makes, which lets a sequence resume, see `run_record`; `first_pts`: of the first frame to write;
    `device`: the engine's; `trim_end`: a preview's end in source seconds, where known before its frames)."""
    from vsr.pipelines.animation import (AnimationWriter, check_animation_codec, is_animation,
                                         warn_about_encoder_options)
    from vsr.pipelines.encode import VideoWriter
    from vsr.pipelines.probe import video_end
    from vsr.pipelines.sequences import ImageSequenceWriter, is_sequence

    if is_sequence(output):
        return ImageSequenceWriter(output, source=source, source_info=info, width=width, height=height,
                                   overwrite=overwrite, copy_streams=video.copy_streams, record=record,
                                   first_pts=first_pts)
    check_output(output, source, overwrite)
    if is_animation(output):
        check_animation_codec(output, video.codec)
        warn_about_encoder_options(output, source, video.crf, video.preset, video.encoder_options, video.pix_fmt)
        return AnimationWriter(output, source=source, source_info=info, width=width, height=height,
                               overwrite=overwrite, copy_streams=video.copy_streams,
                               trim_end=trim_end if video.is_preview else None, video_end=video_end(source, info.index))
    (codec, pix_fmt), crf, preset = encoder_choice(video, output.suffix, info), video.crf, video.preset
    say_codec_chosen(source, output.suffix, video, info, codec, pix_fmt)
    encoder_options = video.encoder_options
    # (--crf, --preset and the options were given for the codec named, or for "auto"'s H.264 or HEVC: not alpha's)
    without_alpha = encoder_choice(video, ".mkv", replace(info, alpha=False))[0]
    if info.alpha and codec != without_alpha and (crf is not None or preset is not None or encoder_options):
        log.warning("%s: the video has alpha, so it is written with %s, at that codec's own quality and speed: "
                    "--crf, --preset and --encoder-option are left to a codec named with --codec (libx264 "
                    "drops the alpha)", source, codec)
        crf = preset = None
        encoder_options = {}
    with auto_codec_named(video, codec):  # (x264's settings refused by the HEVC "auto" picked)
        return VideoWriter(
            output,
            source=source,
            source_info=info,
            width=width,
            height=height,
            codec=codec,
            crf=crf,
            preset=preset,
            options=encoder_options,
            pix_fmt=pix_fmt,
            overwrite=overwrite,
            copy_streams=video.copy_streams,
            # A preview starts at 0 like `ffmpeg -ss`, with the other streams cut to the same window.
            trim=video.is_preview,
            trim_end=trim_end if video.is_preview else None,
            # The last frame shows until the window's end (trim_end) or as long as it does in the source, where the
            # window reaches the end (a GIF's last delay).
            video_end=video_end(source, info.index),
            device=device,  # (an NVENC encoder's GPU)
        )
