"""`vsr bench`: model-only and end-to-end throughput on the same clip, in one run, as ratios.

Model-only is the engine alone on frames already decoded into its device's memory; end-to-end is `upscale_video` on
the same frames with the same engine (decode, upscale and encode running concurrently). Their ratio is the
pipeline's overhead; on a machine where the model dominates it should be a few percent at most. The model-only pass is
repeated until it has run MODEL_SECONDS (one pass of a fast model over a short clip took milliseconds, and the ratio
changed sign between runs on a shared machine).
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from vsr import api
from vsr.errors import OptionError
from vsr import fsutil

MODEL_SECONDS = 1.0


@dataclass
class BenchResult:
    clip: str
    model: str
    device: str
    decoder: str  # the one that ran: "pyav", "decord", "dali", "pyav (NVDEC)" (after any fallback)
    # The encoder and pixel format the end-to-end run wrote (codec "auto" picks by the clip: a 10-bit one's is
    # libx265, yuv420p10le, slower to encode than libx264: README, "Video")
    encoder: str
    pix_fmt: str
    precision: str
    threads: int
    frames: int
    input_size: str
    output_size: str
    model_only_fps: float
    end_to_end_fps: float
    overhead_percent: float  # end-to-end time over model-only time, minus one
    decode_busy_s: float
    model_busy_s: float
    encode_busy_s: float
    peak_rss_mb: float

    def to_text(self) -> str:
        return "\n".join(f"{key:>18}: {value}" for key, value in asdict(self).items())


def bench(
    clip: str | Path,
    *,
    options: api.UpscaleOptions = api.UpscaleOptions(),
    video: api.VideoOptions = api.VideoOptions(),
    max_frames: int | None = None,
) -> BenchResult:
    from vsr.pipelines.decode import open_decoder
    from vsr.pipelines.upscale import upscale_frames, video_output_size

    clip = Path(clip)
    api.check_input(clip)
    if api.is_image(clip):
        raise OptionError(f"{clip}: vsr bench measures videos; give it a clip")
    engine = api.make_engine(options)
    video = replace(video, max_frames=max_frames, dedup=None)  # every frame through the model, as model-only
    # Onto the engine's device, as `upscale_video` decodes them (NVDEC where it can): frames in host memory would
    # time the model with its copies to and from the GPU, which the pipeline's frames never make.
    with open_decoder(clip, backend=video.decoder, device=engine.device, max_frames=max_frames) as decoder:
        info = decoder.info
        batches = list(decoder.batches(options.batch_size))
    frames = sum(len(batch) for batch in batches)

    with tempfile.TemporaryDirectory(prefix="vsr-bench-") as folder:
        # Named as `vsr upscale` would name it: .mkv where the clip's container cannot hold the codec (.webm); a GIF's
        # is a GIF, its palette and all.
        output = Path(folder) / api.default_output_path(clip, engine.label, video.codec).name
        # As `vsr upscale` runs the model: to the size it writes, alpha (where the clip has it) upscaled too.
        size = video_output_size(engine, info, clip, output, video)[:2]
        # Warm-up, once for each batch size the clip gives (a last, smaller batch too): the first run of a shape
        # builds or picks its kernels (oneDNN's, cuDNN's autotuning), which is no part of the model's speed.
        for frames_in_batch in {len(batch): batch.frames for batch in batches}.values():
            upscale_frames(engine, frames_in_batch, info.alpha, size)
        passes, start = 0, time.perf_counter()
        while passes == 0 or time.perf_counter() - start < MODEL_SECONDS:
            for batch in batches:
                upscale_frames(engine, batch.frames, info.alpha, size)
            if engine.device.type == "cuda":
                torch.cuda.synchronize(engine.device)  # (the clock reads the work done, not the work queued)
            passes += 1
        model_seconds = (time.perf_counter() - start) / passes  # one pass
        result = api.upscale_video(clip, output, video=video, engine=engine)
    times = result.times
    return BenchResult(
        clip=str(clip),
        model=options.model,
        device=str(engine.device),
        decoder=result.decoder,
        encoder=result.encoder,
        pix_fmt=result.pix_fmt,
        precision=engine.precision,
        threads=torch.get_num_threads(),
        frames=frames,
        input_size=f"{info.width}x{info.height}",
        output_size=f"{result.width}x{result.height}",
        model_only_fps=round(frames / model_seconds, 3),
        end_to_end_fps=round(times.frames / times.wall, 3),
        overhead_percent=round(100 * (times.wall / model_seconds - 1), 1),
        decode_busy_s=round(times.decode, 3),
        model_busy_s=round(times.model, 3),
        encode_busy_s=round(times.encode, 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def write_json(result: BenchResult, path: str | Path) -> None:
    fsutil.write_json(Path(path), asdict(result))
