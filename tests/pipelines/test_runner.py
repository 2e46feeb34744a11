"""The streaming runner: order, bounded queues, and errors from any stage."""

import signal
import threading

import pytest
import torch

from vsr.pipelines.frames import FrameBatch
from vsr.pipelines import runner
from vsr.pipelines.runner import run_pipeline


def make_batches(count, produced=None):
    for i in range(count):
        if produced is not None:
            produced.append(i)
        yield FrameBatch(torch.full((1, 3, 2, 2), i, dtype=torch.uint8), [i * 10])


def double(batch):
    return FrameBatch(batch.frames * 2, batch.pts)


def test_batches_come_out_in_order_with_their_timestamps():
    written = []
    times = run_pipeline(make_batches(20), double, written.append)
    assert [b.pts for b in written] == [[i * 10] for i in range(20)]
    assert [int(b.frames[0, 0, 0, 0]) for b in written] == [2 * i for i in range(20)]
    assert times.frames == 20


def test_decoder_cannot_run_ahead_of_a_slow_encoder():
    produced, written = [], []
    release = threading.Event()
    max_ahead = []

    def slow_write(batch):
        # The first write blocks until the decoder has had every chance to run ahead.
        if not written:
            release.wait(timeout=1.0)
        max_ahead.append(len(produced) - len(written))
        written.append(batch)

    run_pipeline(make_batches(50, produced), double, slow_write, queue_size=2)
    # Two bounded queues of 2, plus one batch in each stage's hands: never the whole video.
    assert max(max_ahead) <= 2 + 2 + 3
    assert len(written) == 50


@pytest.mark.parametrize("stage", ["decode", "upscale", "write"])
def test_an_error_in_any_stage_stops_the_run_and_reaches_the_caller(stage):
    def batches():
        for i, batch in enumerate(make_batches(100)):
            if stage == "decode" and i == 5:
                raise ValueError("broken decode")
            yield batch

    def upscale(batch):
        if stage == "upscale" and batch.pts[0] == 50:
            raise ValueError("broken upscale")
        return batch

    def write(batch):
        if stage == "write" and batch.pts[0] == 50:
            raise ValueError("broken write")

    before = threading.active_count()
    with pytest.raises(ValueError, match=f"broken {stage}"):
        run_pipeline(batches(), upscale, write)
    assert threading.active_count() == before


def test_what_a_failed_stage_held_is_freed_without_the_garbage_collector():
    """The error's traceback held run_pipeline's frame, which held the list of errors, which held the error: a cycle
    that kept the writer, its encoder's threads and the last frames alive after a failure (290 MB a 1080p video;
    `vsr batch` grew to 3.6 GB over 30 failed jobs) until the garbage collector came by (helper-85)."""
    import gc
    import weakref

    class Writer:
        def write(self, batch):
            raise OSError("File too large")

    writer = Writer()
    held = weakref.ref(writer)
    gc.disable()
    try:
        try:
            run_pipeline(make_batches(3), double, writer.write)
        except OSError:
            pass
        del writer
        assert held() is None
    finally:
        gc.enable()


def test_ctrl_c_while_the_stages_start_leaves_none_running(monkeypatch):
    """Ctrl-C can land while Thread.start() waits for a stage to run (the moment a user presses it after seeing the
    output appear). A stage left running then reads a container its caller is closing: a crash at exit."""
    real_start = threading.Thread.start

    def start_then_ctrl_c(thread):
        real_start(thread)
        if thread.name == "vsr-decode":
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(threading.Thread, "start", start_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored in a run started in the background
    try:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(make_batches(1000), double, lambda batch: None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("vsr-")] == []


def test_the_encoders_flush_runs_after_the_last_write_and_is_timed_as_encoding(monkeypatch):
    """x264 holds 40 to 70 frames, encoded at its flush: outside the times, the fps said was up to 2.4 times
    what a run gave."""
    clock = [0.0]
    monkeypatch.setattr(runner.time, "perf_counter", lambda: clock[0])
    written, flushed = [], []

    def flush():
        flushed.append((threading.current_thread().name, len(written)))
        clock[0] += 100.0  # (the flush is the only stage that takes time)

    times = run_pipeline(make_batches(5), double, written.append, finish=flush)
    assert flushed == [("vsr-encode", 5)]
    assert times.encode == times.wall == 100.0


def test_a_cpu_device_runs_without_streams():
    written = []
    run_pipeline(make_batches(3), double, written.append, device=torch.device("cpu"))
    assert [int(b.frames[0, 0, 0, 0]) for b in written] == [0, 2, 4]


def test_a_stage_holds_its_device_around_its_stream(monkeypatch):
    """Each stage makes its device current before its stream and gives it back after: `torch.cuda.stream` alone
    gave the thread's earlier device (cuda:0 in a new thread) back with cudaSetDevice on the way out, which creates
    cuda:0's context in a run on cuda:1. (The CUDA context managers are stood in for: this machine has no CUDA.)"""
    import contextlib

    entered = []

    def recorder(kind):
        @contextlib.contextmanager
        def manager(what):
            entered.append(f"{kind} {what} in")
            yield
            entered.append(f"{kind} {what} out")
        return manager

    monkeypatch.setattr(torch.cuda, "device", recorder("device"))
    monkeypatch.setattr(torch.cuda, "stream", recorder("stream"))
    streams = object.__new__(runner._StageStreams)
    streams.device, streams.streams = torch.device("cuda", 1), {"model": "model-stream"}
    with streams.on("model"):
        entered.append("work")
    assert entered == ["device cuda:1 in", "stream model-stream in", "work", "stream model-stream out",
                       "device cuda:1 out"]


# ---- on a CUDA device (bench/device_check.py) -----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("streams", ["1", "0"])
def test_upscaling_on_cuda_writes_the_frames_of_the_cpu(tmp_path, monkeypatch, tiny_rrdbnet_checkpoint, streams):
    """The whole pipeline on the GPU, with a stream per stage (VSR_CUDA_STREAMS=1, the default) or one stream: the
    same frames at the same times as on the CPU (fp32; within 2 levels: TF32 convolutions). Enough batches for the
    stages to overlap, so that a missing wait between streams would show as wrong or stale frames."""
    import av

    from tests.pipelines.clips import make_clip
    from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, upscale_video

    monkeypatch.setenv("VSR_CUDA_STREAMS", streams)
    clip = make_clip(tmp_path / "clip.mp4", frames=24, size=(256, 144))
    video = VideoOptions(codec="ffv1", segment_seconds=None)
    outputs = {}
    for device in ("cpu", "cuda"):
        options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), device=device, precision="fp32", batch_size=4)
        result = upscale_video(clip, tmp_path / f"{device}.mkv", options=options, video=video)
        with av.open(str(result.output)) as container:
            outputs[device] = [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    assert [pts for pts, _ in outputs["cuda"]] == [pts for pts, _ in outputs["cpu"]]
    for (_, on_gpu), (_, on_cpu) in zip(outputs["cuda"], outputs["cpu"], strict=True):
        assert abs(on_gpu.astype(int) - on_cpu.astype(int)).max() <= 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_run_on_the_second_gpu_leaves_the_first_alone():
    """The stages' threads start on cuda:0; a run on cuda:1 must not make a context there (hundreds of MB of GPU 0
    per process, one more per `--devices` worker). In a fresh process: this one has used cuda:0 already."""
    import subprocess
    import sys

    script = """
import torch
from vsr.pipelines.frames import FrameBatch
from vsr.pipelines.runner import run_pipeline
device = torch.device("cuda", 1)
torch.cuda.init()
batches = (FrameBatch(torch.full((1, 3, 4, 4), i, dtype=torch.uint8, device=device), [i]) for i in range(4))
written = []
run_pipeline(batches, lambda batch: FrameBatch(batch.frames * 2, batch.pts), written.append, device=device)
torch.cuda.synchronize(device)
assert [int(batch.frames[0, 0, 0, 0]) for batch in written] == [0, 2, 4, 6]
print(torch._C._cuda_hasPrimaryContext(0))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
