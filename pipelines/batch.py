"""`vsr batch`: many inputs, one journal, any number of runs until every job is done.

    jobs = discover("videos", "upscaled", options=UpscaleOptions(model="bicubic"), video=VideoOptions())
    report = run_batch(jobs, "upscaled", workers=2)
    report.ok  # every job done

Jobs come from a folder (`discover`: recursive, glob filters, the folder structure mirrored in the output folder,
outputs named as `vsr upscale` names them) or from a jobs file (`load_jobs_file`, TOML, options per job). The driver
(`run_batch`) keeps the journal (`pipelines.journal`) and hands jobs to an executor: in this process, in worker
processes (`pipelines.batch_workers`) or on a Ray cluster (`pipelines.ray_backend`). It can be killed at any moment:
the next run skips jobs that are done with their output intact, retries failed ones up to `max_attempts`, and redoes
those that were running, after removing their half-written temporary files.

Input fingerprint: size, modification time, and the sha256 of the first and last MiB. A full hash of an archive of
videos on every run would cost as much reading as the upscaling's decode; the ends of a media file hold its headers
and index (mp4 moov, mkv cues), so a re-encode, a replacement or a truncation changes them, the size catches appends
and cuts, and the modification time catches in-place edits. A touched file is redone: cautious, never stale.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

from vsr.pipelines import upscale as api
from vsr.errors import InputError, OptionError, OutputError, did_you_mean
from vsr.fsutil import temporaries_of
from vsr.models import zoo
from vsr.pipelines.batch_workers import (BatchJob, InlineExecutor, JobResult, ProcessExecutor, sha256_file,
                                         shown_level)
from vsr.pipelines.crop import parse_crop
from vsr.pipelines.dedup import parse_dedup
from vsr.pipelines.engine import tile_overlap_for
from vsr.pipelines.journal import JOURNAL_NAME, Journal, JobEntry, JobRow, JobState, same_job
from vsr.pipelines.probe import video_has_alpha
from vsr.pipelines.resume import kept_frames
from vsr.pipelines.runner import ctrl_c_held_back
from vsr.pipelines.sequences import VIDEO_SUFFIXES, is_sequence

log = logging.getLogger(__name__)

FINGERPRINT_SPAN = 1 << 20  # bytes hashed at each end of an input

# `vsr upscale`'s options as a jobs file (and the command line) names them → (which dataclass, field, types).
OPTION_FIELDS: dict[str, tuple[str, str, tuple[type, ...]]] = {
    "model": ("upscale", "model", (str,)),
    "outscale": ("upscale", "outscale", (int, float)),
    "width": ("upscale", "width", (int,)),
    "height": ("upscale", "height", (int,)),
    "batch-size": ("upscale", "batch_size", (int,)),
    "tile": ("upscale", "tile", (int,)),
    "tile-overlap": ("upscale", "tile_overlap", (int,)),
    "device": ("upscale", "device", (str,)),
    "precision": ("upscale", "precision", (str,)),
    "cuda-graphs": ("upscale", "cuda_graphs", (str,)),
    "compile": ("upscale", "compile", (bool,)),
    "strength": ("upscale", "strength", (int, float)),
    "decoder": ("video", "decoder", (str,)),
    "codec": ("video", "codec", (str,)),
    "crf": ("video", "crf", (int,)),
    "preset": ("video", "preset", (str,)),
    "encoder-options": ("video", "encoder_options", (dict,)),  # a table: {tune = "animation"}
    "pix-fmt": ("video", "pix_fmt", (str,)),
    "start": ("video", "start", (int, float, str)),  # seconds, or a time such as "1:30"
    "end": ("video", "end", (int, float, str)),
    "frames": ("video", "max_frames", (int,)),
    "segment-seconds": ("video", "segment_seconds", (int, float)),  # 0: never
    "deinterlace": ("video", "deinterlace", (str,)),
    "dedup": ("video", "dedup", (int, float, str)),  # "exact", "off" or a tolerance in levels
    "crop": ("video", "crop", (str,)),  # "auto", "off" or "W:H:X:Y"
}
_SIZE_OPTIONS = ("outscale", "width", "height")
# Options whose values are names vsr or FFmpeg give in lower case (dedup and crop are parsed apart, in any case).
_CHOICE_OPTIONS = ("device", "precision", "cuda-graphs", "decoder", "codec", "pix-fmt", "deinterlace")
# Options that say where or how fast a job runs but not what it writes: changing them does not redo done jobs.
# The decoder and the precision are speed choices whose pixels differ slightly (bf16 and fp32 by 0.87 levels of 255
# on average, `engine.resolve_precision`), and "auto" resolves them per machine: a batch begun on a CPU (PyAV, bf16)
# and moved to a GPU (DALI, fp16) keeps its done jobs. What keeps one output from mixing them is the folder of
# segments of a job cut short, which compares what "auto" chose (`resume.RESOLVED_KEYS`) and asks for it by name:
# `--precision bf16` then resumes it. Recorded as resolved here instead, every done job of such a move would be
# "asked for with other options" (exit 1), and Ray tasks resolve "auto" on machines the driver does not know.
_PLACEMENT_FIELDS = {"device", "batch_size", "decoder", "precision", "cuda_graphs", "compile", "segment_seconds"}


def build_options(values: Mapping[str, object], where: str = "option") -> tuple[api.UpscaleOptions, api.VideoOptions]:
    """Option values by `vsr upscale` name ("batch-size" or "batch_size") → validated option dataclasses."""
    fields: dict[str, dict] = {"upscale": {}, "video": {}}
    for key, value in values.items():
        name = key.replace("_", "-")
        if name not in OPTION_FIELDS:
            raise OptionError(f"{where}: unknown option {key!r}{did_you_mean(name, OPTION_FIELDS)}; expected one of "
                              f"{', '.join(OPTION_FIELDS)}")
        group, field, types = OPTION_FIELDS[name]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            expected = ("exact, off or a number of levels" if field == "dedup" else "true or false" if bool in types
                        else "a number" if float in types else "an integer" if int in types else
                        "a table such as {tune = \"animation\"}" if dict in types else "a string")
            raise OptionError(f"{where + ': ' if where != 'option' else ''}option {key!r} must be {expected}, not "
                              f"{value!r}")
        option = f"--{name}" if where == "option" else f"{where}: {key!r}"
        if field in ("start", "end"):  # the command line's --start, a jobs file's start
            fields[group][field] = api.parse_time(value, option)
        elif field == "dedup":
            fields[group][field] = parse_dedup(value, option)
        elif field == "crop":
            fields[group][field] = parse_crop(value, option)
        elif name in _CHOICE_OPTIONS:  # (in any case, as on the command line: FP32 is fp32)
            fields[group][field] = value.lower()
        else:
            fields[group][field] = float(value) if float in types else value
        if field == "encoder_options":  # numbers as FFmpeg reads them: {g = 48} is "48"
            fields[group][field] = {option: text if isinstance(text, str) else _option_text(text, where)
                                    for option, text in value.items()}
        if field == "segment_seconds" and value == 0:
            fields[group][field] = None
    overlap = tile_overlap_for(fields["upscale"].get("tile"), fields["upscale"].get("tile_overlap"))
    if overlap is not None:  # (a --tile under 144 given alone: as `vsr upscale` takes it)
        fields["upscale"]["tile_overlap"] = overlap
    options, video = api.UpscaleOptions(**fields["upscale"]), api.VideoOptions(**fields["video"])
    # The model is checked once by name (`_model_scale`); whether a device is there, by each job's engine.
    try:
        options.validate()
        video.validate()
    except OptionError as error:
        raise OptionError(f"{where}: {error}" if where != "option" else str(error)) from None
    return options, video


@functools.cache
def _model_scale(model: str) -> float:
    if model in zoo.MODELS:
        return zoo.get_entry(model).scale  # no need to load the weights for the name
    return api.load_model(model, progress=False).spec.scale


def _scale_known(model: str) -> float | None:
    """`_model_scale`, or None for a checkpoint given by URL that is not downloaded yet: what --dry-run asks for a
    model named by URL is downloaded only for a name, which --outscale gives (see `output_label`)."""
    if zoo.is_url(model) and not zoo.url_weights_path(model).is_file():
        return None
    return _model_scale(model)


def output_label(options: api.UpscaleOptions) -> str:
    """The tag `vsr upscale` would put in the output's name (movie.x4.mp4, movie.2160p.mp4)."""
    if options.outscale is not None or options.width is not None or options.height is not None:
        return api.output_label(options, model_scale=0)  # (not the model's: a URL's is not downloaded for a name)
    return api.output_label(options, _model_scale(options.model))


def media_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in api.IMAGE_SUFFIXES:
        return "image" if api.is_image(path) else "video"  # an animated PNG
    return "video" if suffix in VIDEO_SUFFIXES else None


def _selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """A glob matches the path relative to the input folder (`*` crosses folders) or the file's name. Smart case, as
    fd and ripgrep: a pattern without capitals matches any case (*.mp4 takes a camera's CLIP0001.MP4), one with
    capitals matches exactly."""
    def matches(pattern: str) -> bool:
        path = relative.lower() if pattern == pattern.lower() else relative
        return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)

    return (not include or any(map(matches, include))) and not any(map(matches, exclude))


def _job(source: Path, relative: Path, out_dir: Path, options, video, overwrite: bool, output: Path | None = None,
         label: str | None = None):
    kind = media_kind(source) or "video"
    if output is None:
        codec = video.codec if kind == "video" else None
        alpha = codec == "auto" and video_has_alpha(source)  # named as `vsr upscale` names it (opens the file)
        output = out_dir / api.default_output_path(relative, output_label(options), codec, alpha)
    name = output.relative_to(out_dir).as_posix()
    return BatchJob(name=name, label=label or relative.as_posix(), source=source.absolute(), output=output.absolute(),
                    kind=kind, options=options, video=video, overwrite=overwrite)


def discover(in_dir: str | os.PathLike, out_dir: str | os.PathLike, *, options: api.UpscaleOptions,
             video: api.VideoOptions, include: Sequence[str] = (), exclude: Sequence[str] = (),
             overwrite: bool = False, not_media: list[Path] | None = None) -> list[BatchJob]:
    """Every video and image under `in_dir` (recursively; hidden files and folders and `out_dir` skipped) that the
    filters keep, each mapped to the same relative folder under `out_dir`. `not_media`, where given, gets the other
    files the filters keep (notes.txt among the videos), relative to `in_dir`, for --dry-run to say why they are
    not in the plan."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if in_dir.is_file():  # (vsr upscale is the command for files; the batch's journal is for a folder's)
        raise InputError(f"{in_dir}: not a folder; vsr batch upscales the videos and images in IN_DIR, and "
                         f"`vsr upscale {in_dir} -o {out_dir}/` upscales one file")
    if not in_dir.is_dir():
        raise InputError(f"{in_dir}: not a folder")
    if not _recordable(in_dir.absolute()):
        raise InputError(f"{in_dir}: the folder's path is not UTF-8, which the journal cannot record; rename it, or "
                         "give a link to it with a UTF-8 name")
    if in_dir.resolve() == out_dir.resolve():
        raise OptionError(f"{out_dir}: the output folder must not be the input folder")
    jobs = []

    def unreadable(error: OSError) -> None:
        log.warning("%s: cannot be read (%s); skipped", error.filename, error.strerror or error)

    # (links to folders are not followed, as fd and ripgrep do)
    for root, folders, files in os.walk(in_dir, onerror=unreadable):
        try:
            folders[:] = sorted(f for f in folders
                                if not f.startswith(".") and (Path(root) / f).resolve() != out_dir.resolve())
            links = [Path(root) / f for f in folders if (Path(root) / f).is_symlink()]
            # Another batch's output folder (its journal is there): a batch whose output folder was inside its input
            # folder, run again into another one, upscaled the first one's outputs again as new inputs.
            earlier = [f for f in folders if (Path(root) / f / JOURNAL_NAME).is_file()]
        except OSError as error:  # (a path deeper than the system takes: "File name too long")
            unreadable(error)
            folders[:] = []
            continue
        for folder in earlier:
            log.warning("%s: another batch's output folder (its journal is there); skipped, so that its outputs are "
                        "not upscaled again (give it as IN_DIR to upscale them)", Path(root) / folder)
            folders.remove(folder)
        for link in links:
            log.warning("%s: a link to a folder, not followed; give its target as a batch's input folder of its own",
                        link)
        for file_name in sorted(files):
            source = Path(root) / file_name
            relative = source.relative_to(in_dir)
            if file_name.startswith("."):
                continue
            if media_kind(source) is None:
                if not_media is not None and _recordable(relative) and _selected(relative.as_posix(), include,
                                                                                  exclude):
                    not_media.append(relative)
                continue
            if not source.exists():
                log.warning("%s: a link to %s, which does not exist; skipped", source, os.readlink(source))
                continue
            if not source.is_file():  # a named pipe or a device: opening it to read waits for ever
                log.warning("%s: not a regular file; skipped", source)
                continue
            if not _recordable(relative):
                log.warning("%s: the name is not UTF-8, which the journal cannot record; skipped (rename it)", source)
                continue
            if _selected(relative.as_posix(), include, exclude):
                jobs.append(_job(source, relative, out_dir, options, video, overwrite))
    return jobs


def _recordable(path: Path) -> bool:
    """Whether the journal (SQLite's text is UTF-8) can record `path`. A name whose bytes are not UTF-8 (an old
    archive's Latin-1 names, which Python reads with surrogate escapes) stopped every run, --dry-run too, with a
    UnicodeEncodeError's traceback."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        return False
    return True


def load_jobs_file(path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                   values: Mapping[str, object] | None = None, overwrite: bool = False) -> tuple[list[BatchJob], Path]:
    """Jobs from a TOML file; returns them and the output folder (`out_dir`, else the file's `output_dir`).

        output_dir = "upscaled"           # relative to this file; the command line's OUT_DIR wins
        [defaults]                        # any `vsr upscale` option, for every job
        model = "realesr-animevideov3"    # (or a checkpoint file, relative to this file)
        [[job]]
        input = "raw/episode1.mkv"        # relative to this file
        [[job]]
        input = "raw/episode2.mkv"
        output = "ep2.mkv"                # relative to the output folder [default: as `vsr upscale` names it]
        outscale = 2

    An option's value comes from the job, else from the command line (`values`: only options given there), else
    from [defaults].
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such jobs file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a jobs file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a valid TOML jobs file ({error})") from error
    unknown = set(document) - {"output_dir", "defaults", "job"}
    if unknown:
        raise OptionError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; expected output_dir, defaults, job")
    base = path.parent
    if out_dir is None:
        if not isinstance(document.get("output_dir"), str):
            raise OptionError(f"{path}: no output folder: give OUT_DIR or set output_dir = \"FOLDER\" in the file")
        out_dir = base / document["output_dir"]
    out_dir = Path(out_dir)
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise OptionError(f"{path}: [defaults] must be a table of options, not {defaults!r}")
    defaults = _checkpoints_relative_to(base, defaults)
    build_options(defaults, f"{path} [defaults]")  # its own errors, said of it rather than of the first job
    entries = document.get("job", [])
    if not isinstance(entries, list) or not entries or not all(isinstance(entry, dict) for entry in entries):
        raise OptionError(f"{path}: no [[job]] tables; each job needs at least input = \"FILE\"")
    jobs = []
    for number, entry in enumerate(entries, 1):
        where = f"{path} job {number}"
        settings = _checkpoints_relative_to(base, {key: value for key, value in entry.items()
                                                   if key not in ("input", "output")})
        if not isinstance(entry.get("input"), str):
            raise OptionError(f"{where}: needs input = \"FILE\" (a path relative to {path.name})")
        options, video = build_options(_layered(defaults, values or {}, settings), where)
        source = base / entry["input"]
        if not _recordable(source.absolute()):  # (the file's own text is UTF-8: its folder's path is not)
            raise OptionError(f"{where}: the input's path {source.absolute()} is not UTF-8, which the journal cannot "
                              "record; move the jobs file and its inputs to a folder with a UTF-8 name")
        if source.is_dir() or Path(entry["input"]).name in ("", ".."):  # ("", ".", "/", "x/..")
            raise OptionError(f"{where}: input {entry['input']!r} names a folder; give a file, such as "
                              "\"raw/episode1.mkv\" (vsr batch IN_DIR OUT_DIR takes a folder)")
        if is_sequence(source) or (isinstance(entry.get("output"), str) and is_sequence(entry["output"])):
            raise OptionError(f"{where}: vsr batch takes files, not image sequences; use vsr upscale for those")
        inside = source.resolve().is_relative_to(base.resolve())
        relative = source.resolve().relative_to(base.resolve()) if inside else Path(source.name)
        output = _job_output(entry, out_dir, where)
        label = entry["input"]  # (as given: two inputs of one name from other folders are told apart)
        jobs.append(_job(source, relative, out_dir, options, video, overwrite, output, label))
    return jobs, out_dir


def _checkpoints_relative_to(base: Path, table: dict) -> dict:
    """A jobs file's table with its checkpoint file (`model` naming a path: a file name with a suffix, or a folder)
    taken relative to the file's folder `base`, as its inputs are: it was relative to the working folder, and the same
    file run from another folder named another checkpoint (or none, or redid every job). A name without either stays
    a name: a mistyped zoo name is said as typed."""
    model = table.get("model")
    if isinstance(model, str) and model not in zoo.MODELS and not zoo.is_url(model) \
            and (Path(model).suffix or "/" in model or model.startswith("~")):
        return {**table, "model": str(base / Path(model).expanduser())}  # (an absolute path stays as it is)
    return table


def _option_text(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(f"{where}: encoder option values are text or numbers, not {value!r}")
    return str(value)


def _layered(*tables: Mapping[str, object]) -> dict[str, object]:
    """Option tables merged, later ones winning. A later table that sizes the output (outscale, or width and/or
    height) replaces the earlier ones' sizing: a job's `height = 2160` overrides `outscale = 2` in [defaults].
    Encoder options add up: a job's {g = 48} keeps [defaults]' {tune = "animation"}."""
    merged: dict[str, object] = {}
    for table in tables:
        if any(key in _SIZE_OPTIONS for key in table):
            merged = {key: value for key, value in merged.items() if key not in _SIZE_OPTIONS}
        earlier_encoder_options = merged.get("encoder-options")
        merged |= table
        if isinstance(earlier_encoder_options, dict) and isinstance(table.get("encoder-options"), dict):
            merged["encoder-options"] = earlier_encoder_options | table["encoder-options"]  # added to, key by key
    return merged


def _job_output(entry: Mapping[str, object], out_dir: Path, where: str) -> Path | None:
    """A job's `output`: a file name or path inside the output folder (the journal names jobs by it)."""
    if "output" not in entry:
        return None
    output = entry["output"]
    if not isinstance(output, str) or not output:
        raise OptionError(f"{where}: output must be a file name such as \"ep2.mkv\", not {output!r}")
    relative = Path(output)
    if relative.is_absolute() or ".." in relative.parts:
        raise OptionError(f"{where}: output {output!r} must stay inside the output folder {out_dir}")
    if output.endswith(("/", os.sep)) or relative.name in ("", ".") or (out_dir / relative).is_dir():
        raise OptionError(f"{where}: output {output!r} names a folder; give the file's name, such as \"ep2.mkv\" "
                          "(a job without one is named after its input)")
    return out_dir / relative


def fingerprint(path: Path) -> str:
    """size:mtime_ns:sha256(first MiB + last MiB); see the module doc for why not a full hash."""
    try:
        stat = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            digest.update(file.read(FINGERPRINT_SPAN))
            if stat.st_size > FINGERPRINT_SPAN:
                file.seek(max(FINGERPRINT_SPAN, stat.st_size - FINGERPRINT_SPAN))
                digest.update(file.read())
    except OSError as error:
        return f"unreadable:{error.strerror or error}"  # the job itself then fails with a clear reason
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()}"


def journal_entry(job: BatchJob) -> JobEntry:
    options = {k: v for k, v in dataclasses.asdict(job.options).items() if k not in _PLACEMENT_FIELDS}
    if job.kind == "video":
        options |= {k: v for k, v in dataclasses.asdict(job.video).items() if k not in _PLACEMENT_FIELDS}
    # (a record with other options is a new job: leaving out the later options at their defaults keeps done jobs done)
    options = {k: v for k, v in options.items() if k not in api.LATER_DEFAULTS or v != api.LATER_DEFAULTS[k]}
    # An --outscale of the model's own scale (-s 4 with a ×4 model) makes what none makes, and names the output alike:
    # recorded as none, as the segments' plan takes it (`segments._resolved_settings`), so that a run with it and one
    # without keep each other's done jobs (the journal's `_as_now` takes rows of an earlier vsr so too).
    scale = _scale_known(job.options.model)
    if options["outscale"] is not None and options["outscale"] == scale:
        options["outscale"] = None
    # A checkpoint is recorded as the file it is (as `api.run_record` records it): one rewritten in place (a training
    # run went on) is other weights, and so is another file by the same relative name; the same file named from
    # another folder is the same. A zoo name stays a name, as earlier journals recorded it.
    for key in ("model", "blend"):
        name = options.get(key)
        if name is not None and name not in zoo.MODELS and not zoo.is_url(name) and Path(name).is_file():
            stat = Path(name).stat()
            options[key] = {"file": str(Path(name).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return JobEntry(job.name, os.path.abspath(job.source), job.kind, options, fingerprint(job.source), job.overwrite,
                    model_scale=scale)


def parse_devices(text: str) -> list[str]:
    """"0,1" → ["cuda:0", "cuda:1"], checked against the GPUs this machine has."""
    import torch

    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise OptionError(f"--devices must be CUDA device numbers such as 0,1, not {text!r}") from None
    if not torch.cuda.is_available():
        raise OptionError(f"--devices {text} asks for CUDA devices, but CUDA is not available here "
                          f"(no GPU or a CPU-only torch); leave --devices out to run on the CPU")
    count = torch.cuda.device_count()
    missing = [i for i in indices if not 0 <= i < count]
    if missing or len(set(indices)) != len(indices):
        raise OptionError(f"--devices {text}: this machine has CUDA devices 0 to {count - 1}, each usable once")
    return [f"cuda:{i}" for i in indices]


def _check_jobs(jobs: list[BatchJob]) -> None:
    """Errors that would fail every job are the command's, not the jobs'."""
    from vsr.pipelines.animation import check_animation_codec, is_animation
    from vsr.pipelines.encode import check_container_named, choose_pix_fmt
    from vsr.pipelines.images import check_writable

    seen: dict[str, BatchJob] = {}
    for job in jobs:
        if job.name in seen:
            raise OptionError(f"{seen[job.name].label} and {job.label} would both be written to {job.name}")
        seen[job.name] = job
    # An output that is an input's file (a jobs file's `output` naming another job's input, or a folder's output
    # landing on an input): --overwrite replaced that input, and the next run upscaled the upscaled file again.
    # Told apart by file (device, inode): links and other spellings of a path are the same file.
    inputs = {}
    for job in jobs:
        with contextlib.suppress(OSError):  # (a missing input fails as its job)
            found = job.source.stat()
            inputs.setdefault((found.st_dev, found.st_ino), job)
    for job in jobs:
        try:
            found = job.output.stat()
        except OSError:  # (none there yet: no input either)
            continue
        reader = inputs.get((found.st_dev, found.st_ino))
        if reader is not None:
            raise OptionError(f"{job.label}: its output {job.output} is the input {reader.label}; give the job "
                              "another output, or the batch another output folder")
    for codec, pix_fmt in {(job.video.codec, job.video.pix_fmt) for job in jobs if job.kind == "video"}:
        # An OptionError for an unknown codec or pix_fmt ("auto" writes a pix_fmt deeper than 8 bits with libx265).
        deep = pix_fmt is not None and api.pix_fmt_bits(pix_fmt) > 8
        choose_pix_fmt(api.video_codec(codec, ".mkv", deep_or_hdr=deep), 8, pix_fmt)
    # A jobs file's output named for no format (`output = "ep2.xyz"`), or a .gif named for another codec: its job
    # failed, after the model had loaded.
    for job in jobs:
        try:
            if job.kind == "video":
                check_container_named(job.output)
                if is_animation(job.output):  # (`output = "clip.gif"` with codec = "libx264")
                    check_animation_codec(job.output, job.video.codec)
            else:
                check_writable(job.output)
        except (OptionError, OutputError) as error:
            raise OptionError(f"{job.label}: {error}") from None


def remove_partials(output: Path) -> None:
    """Temporary files a killed run left for this output (videos: .NAME.partial.EXT, images: .NAME.XXXX.part)."""
    from vsr.pipelines.encode import partial_path

    for leftover in [partial_path(output), *temporaries_of(output)]:
        if leftover.is_file():  # (not a folder of that name: no run of vsr's made it, and unlink was a traceback)
            log.info("removing %s, left by an interrupted run", leftover)
            leftover.unlink()


WARNED_NAMED = 5  # of the jobs done with warnings, how many the summary names (a season's worth would fill the screen)


@dataclass
class BatchReport:
    rows: list[JobRow]  # the journal rows of the jobs of this run, in job order, less those skipped
    seconds: float
    journal: Path
    # Not run, their rows another input's or another batch's: an output made from another input (--overwrite
    # replaces it), one (or a job's segments) kept as made with other options, or a job that another batch changed
    # to its own options or input meanwhile.
    skipped: list[str] = field(default_factory=list)
    frames_made: int = 0  # frames upscaled by this run, of the jobs it finished (not those an earlier run made)

    @property
    def ok(self) -> bool:
        return all(row.state is JobState.DONE for row in self.rows) and not self.skipped

    def count(self, state: JobState) -> int:
        return sum(row.state is state for row in self.rows)

    @property
    def warned(self) -> list[str]:
        """The jobs done whose run warned (a damaged or cut input: `vsr batch --status` says of what)."""
        return [row.name for row in self.rows if row.state is JobState.DONE and row.warning_count]

    def summary(self) -> str:
        counts = [f"{self.count(state)} {state.value}" for state in JobState if self.count(state)]
        if self.skipped:
            counts.append(f"{len(self.skipped)} skipped")
        warned = ""
        if self.warned:
            more = f" and {len(self.warned) - WARNED_NAMED} more" if len(self.warned) > WARNED_NAMED else ""
            warned = (f"; {len(self.warned)} with warnings: {', '.join(self.warned[:WARNED_NAMED])}{more} "
                      "(vsr batch --status says of what)")
        # An overnight batch in hours and minutes (28800.0 s said little); the speed of this run's own work.
        elapsed = f"{self.seconds:.1f} s" if self.seconds < 60 else api.clock(round(self.seconds))
        speed = (f", {self.frames_made} frame{'s' if self.frames_made != 1 else ''} upscaled at "
                 f"{self.frames_made / self.seconds:.1f} fps" if self.frames_made and self.seconds > 0 else "")
        return (f"batch: {', '.join(counts) or 'no jobs'} (of {len(self.rows) + len(self.skipped)}) in "
                f"{elapsed}{speed}{warned}; journal {self.journal}")


def _executor(workers: int, devices: list[str] | None, ray: str | None, task_cpus: float, max_attempts: int,
              on_frames: Callable[[str, int], None]):
    if ray is not None:
        from vsr.pipelines.ray_backend import RayExecutor

        return RayExecutor(ray, task_cpus=task_cpus, max_retries=max_attempts - 1, on_frames=on_frames)
    if devices or workers > 1:
        codec_log = logging.getLogger(api.CODEC_LOG)  # (an info line that `vsr batch` shows: passed on)
        return ProcessExecutor(workers, devices, log_level=shown_level(),
                               logger_levels={codec_log.name: codec_log.getEffectiveLevel()}, on_frames=on_frames)
    return InlineExecutor(on_frames)


def expected_frames(job: BatchJob) -> int:
    """The frames `job` makes, as its input's container says, read before any is decoded: what the batch's bar
    counts until the job's result says how many it made. An image is one; a video's --frames caps it, --start and
    --end keep their share of its duration, --deinterlace field doubles it (ivtc: four in five). 0 where the input
    cannot be described (its job says why)."""
    from vsr.pipelines.probe import describe_video

    if job.kind == "image":
        return 1
    try:
        info, _ = describe_video(job.source)
    except Exception:  # noqa: BLE001 - a damaged or unreadable input: its job fails with its one line
        log.debug("%s: no frame count for the bar", job.source, exc_info=True)
        return 0
    frames = info.frame_count or 0
    video = job.video
    if (video.start is not None or video.end is not None) and info.duration and info.average_rate:
        end = info.duration if video.end is None else min(video.end, info.duration)
        frames = min(frames, max(0, round((end - (video.start or 0)) * info.average_rate)))
    # A frame for each field; inverse telecine's four film frames for every five
    frames = {"field": frames * 2, "ivtc": frames * 4 // 5}.get(video.deinterlace, frames)
    return frames if video.max_frames is None else min(frames, video.max_frames)


class FramesBar:
    """The batch's bar: the frames of its jobs (those done before, and those this run makes), advanced as each job's
    frames are upscaled in whichever process runs it (`advance`), with the jobs done beside it ("3/12 jobs"): a
    season of one-hour episodes sat at 0/12 jobs for an hour, its time left meaningless. A job counts the frames its
    container says (`expected_frames`) until its result says how many it made; one that fails leaves the bar (this
    run makes none of its frames). A Ray driver's video jobs advance it from threads of their own: a lock."""

    def __init__(self, bar, jobs: int, done_jobs: int, expected: dict[str, int], kept: dict[str, int]):
        """`bar`: a `progress_bar` of the frames of every job (`done_jobs` of the `jobs` done, their frames its
        `initial`), `expected`: the frames of each job this run makes, `kept`: of those, the frames of the segments
        an earlier run kept (counted in `initial` too)."""
        self._bar = bar
        self._jobs, self._done_jobs, self._failed_jobs = jobs, done_jobs, 0
        self._expected, self._kept = expected, kept
        self._counted = dict(kept)  # job → its frames on the bar: those kept, then those upscaled by this run
        self.frames_made = 0  # frames upscaled by this run, of the jobs done (those of kept segments left out)
        self._lock = threading.Lock()

    @property
    def postfix(self) -> str:
        failed = f", {self._failed_jobs} failed" if self._failed_jobs else ""
        return f"{self._done_jobs}/{self._jobs} jobs{failed}"

    def advance(self, name: str, count: int) -> None:
        with self._lock:
            self._counted[name] += count
            self._bar.update(count)

    def finished(self, result: JobResult) -> None:
        with self._lock:
            counted, expected = self._counted.pop(result.name), self._expected[result.name]
            # (the jobs first, so that the line the update writes counts this one)
            if result.ok:
                self._done_jobs += 1
                self._bar.set_postfix_str(self.postfix, refresh=False)
                made = expected if result.frames is None else result.frames
                self._bar.total += made - expected
                self._bar.update(made - counted)  # (the container's count was an estimate: the frames made win)
                self.frames_made += made - self._kept[result.name]
            else:
                self._failed_jobs += 1
                self._bar.set_postfix_str(self.postfix, refresh=False)
                self._bar.total -= expected
                self._bar.update(-counted)

    def left_to_another(self, name: str) -> None:
        """`name` was taken by another `vsr batch` meanwhile: not this run's work."""
        with self._lock:
            self._bar.total -= self._expected[name]
            self._bar.update(-self._counted.pop(name))
            self._jobs -= 1
            self._bar.set_postfix_str(self.postfix, refresh=False)


def run_batch(jobs: list[BatchJob], out_dir: str | os.PathLike, *, workers: int = 1, devices: str | None = None,
              ray: str | None = None, task_cpus: float = 1.0, max_attempts: int = 3,
              progress: bool = False) -> BatchReport:
    """Run every job not done yet, recording each in the journal of `out_dir`; see the module doc.

    workers: processes on this machine; devices: "0,1" for one worker per GPU; ray: "local", "auto" or a cluster
    address to run each job as a Ray task with `task_cpus` CPUs (and a GPU where the cluster has some).
    """
    from vsr.pipelines.progress import progress_bar

    if max_attempts < 1:
        raise OptionError(f"--max-attempts must be at least 1, not {max_attempts}")
    if workers < 1:
        raise OptionError(f"--workers must be at least 1, not {workers}")
    device_list = parse_devices(devices) if devices else None
    if device_list and ray is not None:
        raise OptionError("--devices is for one machine; with --ray the cluster places the GPUs")
    if ray is not None:  # (before the output folder and its journal: a typo in the address made them)
        from vsr.pipelines.ray_backend import check_address

        check_address(ray, task_cpus)
    _check_jobs(jobs)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot create the output folder ({error.strerror or error})") from error
    started = time.perf_counter()
    with Journal.open(out_dir / JOURNAL_NAME) as journal:
        owned = {job.name for job in jobs if journal.owns_output(job.name)}
        entries = {job.name: journal_entry(job) for job in jobs}
        plan = _sync(journal, entries, out_dir, max_attempts)
        labels = {job.name: job.label for job in jobs}
        for name in plan.other_source:
            log.error("%s: %s was made from %s, not from %s; left as it is (--overwrite replaces it)", labels[name],
                      name, journal.row(name).source, entries[name].source)
        for name in plan.other_options:
            if name in plan.segments_kept:
                log.error("%s: %s; the %d segment(s) of %s made so far are kept: run as they were made to resume "
                          "them, or with --overwrite to start over", labels[name], plan.what_changed[name],
                          plan.segments_kept[name], name)
            else:
                log.error("%s: %s; %s is kept as it was made: run as it was made, or with --overwrite to make it "
                          "again", labels[name], plan.what_changed[name], name)
        for name in plan.redone:
            log.warning("%s: its output %s is missing or changed since it was written; redoing it", labels[name],
                        name)
        for name in plan.taken_over:
            log.warning("%s: was running in a process that is gone; redoing it", labels[name])
        for name in plan.changed:
            if journal.row(name).checksum is not None:  # (an output made from the earlier input or options)
                log.warning("%s: %s since %s was made; making it again", labels[name], plan.what_changed[name], name)
        for name in plan.busy:
            log.warning("%s: being run by another live `vsr batch`; left to it", labels[name])
        for name in plan.gave_up:
            log.warning("%s: failed %d times; not retried (raise --max-attempts to retry)", labels[name],
                        max_attempts)
        to_run = set(plan.to_run)
        # Outputs the journal made are its own to replace; any other file there is replaced only with --overwrite.
        todo = [dataclasses.replace(job, overwrite=job.overwrite or job.name in owned)
                for job in jobs if job.name in to_run]
        skipped = plan.other_source + plan.other_options
        frames_made = 0
        if todo:
            # The bar counts the frames of the jobs done and of those to run (the others, refused, busy or given up,
            # are not this run's work): a done job's as its row says, one to run's as its container says, less those
            # of the segments it kept.
            done = [job for job in jobs if job.name in plan.done and job.name not in to_run]
            done_frames = sum(journal.row(job.name).frames or expected_frames(job) for job in done)
            expected = {job.name: expected_frames(job) for job in todo}
            kept = {job.name: kept_frames(job.output) if job.kind == "video" else 0 for job in todo}
            total = done_frames + sum(expected.values())
            with progress_bar(total, initial=done_frames + sum(kept.values()), shown=progress, leave=True,
                              postfix=f"{len(done)}/{len(done) + len(todo)} jobs") as bar:
                frames_bar = FramesBar(bar, len(done) + len(todo), len(done), expected, kept)
                # (no more worker processes than jobs: each imports torch, and -j 50 for one job took minutes)
                with _executor(min(workers, len(todo)), device_list, ray, task_cpus, max_attempts,
                               frames_bar.advance) as executor:
                    skipped += _drive(journal, executor, todo, entries, frames_bar)
            frames_made = frames_bar.frames_made
        for name in plan.busy:  # (its row is the other batch's: done, it may be with that one's options or input)
            if not same_job(journal.row(name), entries[name]):
                log.error("%s: run by another `vsr batch` with other options or input; not made as this one asks",
                          labels[name])
                skipped.append(name)
        rows = [journal.row(job.name) for job in jobs if job.name not in skipped]
    return BatchReport(rows=rows, seconds=time.perf_counter() - started, journal=out_dir / JOURNAL_NAME,
                       skipped=skipped, frames_made=frames_made)


def _sync(journal: Journal, entries: dict[str, JobEntry], out_dir: Path, max_attempts: int):
    """`Journal.sync`, then the done jobs whose output is missing or changed are queued again (`plan.redone`)."""
    plan = journal.sync(list(entries.values()), max_attempts=max_attempts)
    for name in plan.done:
        if not _intact(journal, name, out_dir / name, journal.row(name).checksum):
            journal.requeue(name)
            plan.to_run.append(name)
            plan.redone.append(name)
    return plan


def _intact(journal: Journal, name: str, output: Path, checksum: str) -> bool:
    """Whether a done job's output is still what it wrote: the same size and modification time as when its checksum
    last matched (`Journal.checked`), else its checksum again."""
    try:
        stat = output.stat()
    except OSError:
        return False
    if not S_ISREG(stat.st_mode):
        return False
    if journal.checked(name) == (stat.st_size, stat.st_mtime_ns, checksum):
        return True
    if sha256_file(output) != checksum:
        return False
    journal.remember_checked(name, stat.st_size, stat.st_mtime_ns, checksum)
    return True


def plan_batch(jobs: list[BatchJob], out_dir: str | os.PathLike, *, max_attempts: int = 3) -> list[tuple[str, str]]:
    """What `run_batch` would do with each job now, as (output name, what), writing nothing: decided by the same
    code on a copy of the journal in memory. What: "new" (or "new, but fails: its output exists ..."), "done", "redo:
    output missing or changed", "redo: its input changed" (or "its options changed (--model X, was Y)"), "retry
    (attempt N)", "take over: its process is gone", "busy: another vsr batch runs it", "gave up after N attempts",
    "refused: made from OTHER INPUT ...", "kept: its options changed (...) (--overwrite makes it again)" (a job not
    done: "...; N segment(s) made so far (--overwrite starts it over)")."""
    if max_attempts < 1:  # (as `run_batch` would say)
        raise OptionError(f"--max-attempts must be at least 1, not {max_attempts}")
    _check_jobs(jobs)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: not a folder, so not an output folder")
    outputs = {job.name: job for job in jobs}
    with Journal.in_memory_copy(out_dir / JOURNAL_NAME) as journal:
        before = {job.name: journal.row(job.name) for job in jobs}
        owned = {job.name for job in jobs if journal.owns_output(job.name)}
        plan = _sync(journal, {job.name: journal_entry(job) for job in jobs}, out_dir, max_attempts)
        said = {**dict.fromkeys(plan.done, "done"), **dict.fromkeys(plan.gave_up, f"gave up after {max_attempts} "
                                                                                  "attempts"),
                **dict.fromkeys(plan.busy, "busy: another vsr batch runs it")}
        for name in plan.other_source:
            said[name] = f"refused: its output was made from {before[name].source} (--overwrite replaces it)"
        for name in plan.other_options:
            if name in plan.segments_kept:
                said[name] = (f"kept: {plan.what_changed[name]}; {plan.segments_kept[name]} segment(s) made so far "
                              "(--overwrite starts it over)")
            else:
                said[name] = f"kept: {plan.what_changed[name]} (--overwrite makes it again)"
        for name in plan.to_run:
            row = before[name]
            fails = outputs[name].output.exists() and not outputs[name].overwrite and name not in owned
            if name in plan.new and fails:
                said[name] = "new, but fails: its output exists (--overwrite replaces it)"
            elif name in plan.new:
                said[name] = "new"
            elif name in plan.redone:
                said[name] = "redo: output missing or changed"
            elif name in plan.taken_over:
                said[name] = "take over: its process is gone"
            elif name in plan.changed:
                said[name] = f"redo: {plan.what_changed[name]}"
            else:
                said[name] = f"retry (attempt {row.attempts + 1})" if row.state is JobState.FAILED else "queued"
            if fails and name not in plan.new:  # (however often it is tried)
                said[name] += ", but fails: its output exists and is not one this batch made (--overwrite replaces it)"
    return [(job.name, said[job.name]) for job in jobs]


def _drive(journal: Journal, executor, todo: list[BatchJob], entries: dict[str, JobEntry],
           frames_bar: FramesBar) -> list[str]:
    """Keep the executor full, record each result; on an interruption, hand the running jobs back. Returns the jobs
    that another batch changed to its own options or input meanwhile (not made: their rows are that batch's). A job
    that found the disk full is handed back too, and the batch stops (OutputError) once the running jobs end."""
    pending, running, changed, no_space = deque(todo), {}, [], None
    try:
        while pending or running:
            while pending and len(running) < executor.capacity:
                job = pending.popleft()
                # A Ctrl-C as the claim committed, or between a result's pop and its record, left the job "running"
                # (redone by the next run, its attempt counted; "busy" to a caller that goes on): held back.
                with ctrl_c_held_back():
                    claimed = journal.claim(entries[job.name])
                    if claimed:
                        running[job.name] = job  # (before it is submitted: a Ctrl-C meanwhile hands it back too)
                if not claimed:
                    row = journal.row(job.name)
                    if row is not None and not same_job(row, entries[job.name]):
                        log.error("%s: another `vsr batch` changed it to its own options or input meanwhile; not "
                                  "made, left to it", job.label)
                        changed.append(job.name)
                    else:
                        log.warning("%s: started by another `vsr batch` meanwhile; left to it", job.label)
                    frames_bar.left_to_another(job.name)
                    continue
                remove_partials(job.output)
                executor.submit(job)
                log.info("%s: started (attempt %d)", job.label, journal.row(job.name).attempts)
            for result in executor.wait(timeout=1.0):
                if result.no_space:  # (every job after it would fail the same way, each spending one of its attempts)
                    with ctrl_c_held_back():
                        journal.release(result.name)
                        del running[result.name]
                    pending.clear()  # (the running ones finish)
                    no_space = no_space or result.error
                    continue
                checksum = _result_checksum(journal, running[result.name], result)  # (a whole file read: not held)
                with ctrl_c_held_back():
                    _record(journal, running[result.name], result, checksum)
                    del running[result.name]
                frames_bar.finished(result)
        if no_space:
            raise OutputError(f"{no_space}; the batch stopped, its jobs not done wait for the next run: free some "
                              "space and run the same command again")
    finally:
        with ctrl_c_held_back():  # (a second Ctrl-C here left the jobs "running", their attempts counted)
            if running:  # stopped: the executor first, so that no job can finish after it was handed back
                executor.close()
                for result in executor.finished():  # (a Ray video joining its segments as the stop came)
                    if result.ok and result.name in running:
                        _record(journal, running.pop(result.name), result, result.checksum)
            for name, job in running.items():
                journal.release(name, checksum=_put_in_place(journal, job))
    return changed


def _put_in_place(journal: Journal, job: BatchJob) -> str | None:
    """The checksum of `job`'s output where the job wrote it before it stopped or died (its rename comes before its
    result), else None. Recorded, it keeps the file the batch's own to replace: every later run failed on "already
    exists". Written means not what stood there at the claim (`Journal.changed_since_claim`), decided now: a file
    the user puts there after the stop stays theirs (one put there while the job ran, as it stopped, cannot be told
    from the job's)."""
    try:
        return sha256_file(job.output) if journal.changed_since_claim(job.name) else None
    except OSError:  # (none there)
        return None


def _result_checksum(journal: Journal, job: BatchJob, result: JobResult) -> str | None:
    """The checksum to record of `job`'s output. A job that failed of its own error did not put its output in place
    (a file there that changed meanwhile is another's: its rename refused to replace it); one whose process died may
    have, just before."""
    return result.checksum if result.ok else _put_in_place(journal, job) if result.died else None


def _record(journal: Journal, job: BatchJob, result: JobResult, checksum: str | None) -> None:
    journal.finish(result.name, ok=result.ok, error=result.error, checksum=checksum, seconds=result.seconds,
                   frames=result.frames, warnings=result.warnings, warning_count=result.warning_count,
                   counted=not result.settings_refused)
    if result.ok:
        with contextlib.suppress(OSError):  # (else the next run hashes it once)
            stat = job.output.stat()
            journal.remember_checked(result.name, stat.st_size, stat.st_mtime_ns, checksum)
        plural = "s" if result.frames != 1 else ""
        frames = f", {result.frames} frame{plural}" if job.kind == "video" else ""
        warned = f", {result.warning_count} warning{'s' if result.warning_count != 1 else ''}" \
            if result.warning_count else ""
        log.info("%s: done in %.1f s%s%s → %s", job.label, result.seconds, frames, warned, job.name)
    elif result.settings_refused:
        log.error("%s: not run (no attempt counted): %s", job.label, result.error)
    else:
        log.error("%s: failed: %s", job.label, result.error)

