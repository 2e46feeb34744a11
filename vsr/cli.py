"""The `vsr` command line: parse arguments into option dataclasses and call the API in vsr.api.

Errors a user can cause (`VsrError`) are printed as one line on stderr with a non-zero exit; Ctrl-C exits 130.
Neither shows a traceback (set VSR_DEBUG=1 to see one).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from vsr.errors import VsrError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Video super-resolution with ESRGAN: upscale videos and images, train your own models.",
)
log = logging.getLogger("vsr")


def _user_errors(command):
    """Turn the errors a user can fix into one line on stderr and an exit code; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VsrError as error:
            if os.environ.get("VSR_DEBUG"):
                raise
            typer.echo(f"vsr: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("vsr: interrupted; no output was written", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.WARNING,
        format="vsr: %(levelname)s: %(message)s",
    )
    logging.getLogger("vsr").setLevel(logging.ERROR if quiet else logging.WARNING)


@app.command()
@_user_errors
def upscale(
    input: Path = typer.Argument(..., help="A video (mp4, mkv, mov, webm, ...) or an image (png, jpg, webp)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file [default: INPUT.x4.EXT next to the input]."),
    model: str = typer.Option("realesrgan-x4plus", "-m", "--model", help="Zoo name (see `vsr models`) or a checkpoint file."),
    outscale: Optional[float] = typer.Option(None, "-s", "--outscale", help="Final scale factor; the model's output is resized to it."),
    batch_size: int = typer.Option(4, "-b", "--batch-size", help="Frames (or tiles) per forward pass."),
    tile: int = typer.Option(0, "-t", "--tile", help="Largest tile side in input pixels; 0 = whole frames."),
    tile_overlap: Optional[int] = typer.Option(None, "--tile-overlap", help="Context pixels around each tile."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16 or bf16 (auto: fp32 on CPU, bf16/fp16 on GPU)."),
    decoder: str = typer.Option("auto", "--decoder", help="Video decoder: auto, pyav, decord or dali."),
    codec: str = typer.Option("libx264", "--codec", help="Video encoder: libx264, libx265, libsvtav1, libvpx-vp9, ffv1, x264-lossless, h264_nvenc, ..."),
    crf: Optional[int] = typer.Option(None, "--crf", help="Constant rate factor (quality; lower is better) [default: the codec's]."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Encoder speed preset [default: the codec's]."),
    pix_fmt: Optional[str] = typer.Option(None, "--pix-fmt", help="Output pixel format [default: the source's bit depth, 4:2:0]."),
    start: Optional[float] = typer.Option(None, "--start", help="Start time in seconds (for previews)."),
    end: Optional[float] = typer.Option(None, "--end", help="End time in seconds."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Upscale at most this many frames."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar and no summary."),
) -> None:
    """Upscale a video or an image."""
    from vsr import api

    _setup_logging(quiet)
    overrides = {} if tile_overlap is None else {"tile_overlap": tile_overlap}
    options = api.UpscaleOptions(
        model=model, outscale=outscale, batch_size=batch_size, tile=tile, device=device, precision=precision, **overrides
    )
    api.check_input(input)
    if api.is_image(input):
        written = api.upscale_image(input, output, options=options, overwrite=overwrite)
        if not quiet:
            typer.echo(f"wrote {written}")
        return
    video = api.VideoOptions(
        decoder=decoder, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, start=start, end=end, max_frames=frames
    )
    result = api.upscale_video(
        input, output, options=options, video=video, overwrite=overwrite, progress=not quiet and sys.stderr.isatty()
    )
    if not quiet:
        typer.echo(_summary(result))


def _summary(result) -> str:
    """One line: what was written, how fast, and where the time went."""
    times = result.times
    busy = times.decode + times.model + times.encode
    shares = ", ".join(
        f"{name} {100 * seconds / busy:.0f}%"
        for name, seconds in (("decode", times.decode), ("model", times.model), ("encode", times.encode))
        if busy > 0
    )
    return (
        f"wrote {result.output}: {result.frames} frames at {result.width}x{result.height} "
        f"in {times.wall:.1f} s ({times.fps:.2f} fps; busy time {shares})"
    )


@app.command()
@_user_errors
def models(
    download: Optional[str] = typer.Option(None, "--download", help="Fetch (or convert) NAME's weights into the cache."),
) -> None:
    """List the model zoo: names, architecture, scale, parameters, where the weights are and whether cached."""
    from vsr.models import zoo

    _setup_logging(False)
    if download is not None:
        path = zoo.fetch(download)
        typer.echo(f"{download}: {path}")
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
    typer.echo(f"\ndefault: {zoo.DEFAULT_MODEL}; cache: {zoo.cache_dir()}")


@app.command()
@_user_errors
def probe(
    input: Path = typer.Argument(..., help="A video file."),
    model: str = typer.Option("realesrgan-x4plus", "-m", "--model", help="Model for the work estimate."),
) -> None:
    """What vsr sees in a video: streams, frames, fps, color, duration, and the work to upscale it."""
    from vsr import api
    from vsr.models.spec import macs_per_input_pixel
    from vsr.pipelines.probe import estimate_work, format_probe
    from vsr.pipelines.probe import probe as probe_media

    _setup_logging(False)
    api.check_input(input)
    info = probe_media(input)
    loaded = api.load_model(model)
    work = estimate_work(info.video, scale=loaded.spec.scale, macs_per_pixel=macs_per_input_pixel(loaded.module, loaded.spec))
    typer.echo(format_probe(info, work=f"{loaded.name}: {work}"))


@app.command()
@_user_errors
def bench(
    input: Path = typer.Argument(..., help="A video clip, e.g. samples/bbb_sample.mp4."),
    model: str = typer.Option("realesrgan-x4plus", "-m", "--model", help="Zoo name or checkpoint file."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Use at most this many frames."),
    batch_size: int = typer.Option(4, "-b", "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    precision: str = typer.Option("auto", "--precision"),
    decoder: str = typer.Option("auto", "--decoder"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON here."),
) -> None:
    """Model-only vs end-to-end fps of `vsr upscale` on the same clip, in one run."""
    from vsr import api
    from vsr import bench as bench_module

    _setup_logging(False)
    options = api.UpscaleOptions(model=model, batch_size=batch_size, device=device, precision=precision)
    result = bench_module.bench(input, options=options, video=api.VideoOptions(decoder=decoder), max_frames=frames)
    typer.echo(result.to_text())
    if json_path is not None:
        bench_module.write_json(result, json_path)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
