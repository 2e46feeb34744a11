"""The streaming runner: decode, upscale and encode at the same time, joined by bounded queues.

    decoder thread ──FrameBatch──▶ [queue] ──▶ engine (this thread) ──▶ [queue] ──FrameBatch──▶ encoder thread

Queues hold at most `queue_size` batches, so memory does not grow with the length of the video and the slowest
stage sets the pace. An error in any stage stops the others and is raised here; the caller's writer then removes its
temporary file, so nothing half-written is left under the final name.

On a CUDA device each stage queues its GPU work on a CUDA stream of its own (`_StageStreams`). On one stream shared by
the three threads, every wait for a stage's own work (the encoder's copy of its planes to the host, the engine's
NaN check, a decoder's copy from pageable memory) would also wait for whatever the other stages had queued before it.
A batch handed to the next stage carries an event recorded after the work that made it; the next stage's stream waits
for that event (on the GPU, not in Python) and marks the tensors as used on it, so that the caching allocator does not
hand their memory out again too early. `VSR_CUDA_STREAMS=0` runs every stage on the default stream instead (for the
device check's comparison).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch

from .frames import FrameBatch

log = logging.getLogger(__name__)

_END = object()  # sentinel: the producer has no more batches


@dataclass
class StageTimes:
    """Seconds each stage spent working (not waiting), for the summary and for `vsr bench`."""

    decode: float = 0.0
    model: float = 0.0
    encode: float = 0.0
    wall: float = 0.0
    frames: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0


class _Stopped(Exception):
    """Raised inside a stage when another stage failed and everyone must stop."""


class _Pipe:
    """A bounded queue whose put/get give up when the run is stopping, so no thread blocks forever."""

    def __init__(self, size: int, stop: threading.Event):
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.stop = stop

    def put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self):
        while not self.stop.is_set():
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped


class _StageStreams:
    """One CUDA stream per stage on `device`, and the events that order a batch's work across them."""

    def __init__(self, device: torch.device):
        self.device = device
        self.streams = {stage: torch.cuda.Stream(device) for stage in ("decode", "model", "encode")}

    @staticmethod
    def for_device(device: torch.device | None) -> _StageStreams | None:
        if device is None or device.type != "cuda" or os.environ.get("VSR_CUDA_STREAMS", "1") == "0":
            return None
        return _StageStreams(device)

    @contextlib.contextmanager
    def on(self, stage: str):
        """Make `stage`'s stream the current one of the calling thread (PyTorch's current stream is per thread), and
        its device the current device while it is.

        The stream alone made its device current on the way in, but on the way out `torch.cuda.stream` sets the
        device the thread had before back with cudaSetDevice, which creates that device's primary context: a new
        thread's device is cuda:0, so a run on cuda:1 (and each `--devices` worker) left a context of some hundreds
        of MB on GPU 0. `torch.cuda.device` gives the device back only where it has a context already."""
        with torch.cuda.device(self.device), torch.cuda.stream(self.streams[stage]):
            yield

    @staticmethod
    def handed_on(batch: FrameBatch) -> tuple[FrameBatch, torch.cuda.Event]:
        """The batch with an event recorded after the work queued so far on this thread's stream."""
        event = torch.cuda.Event()
        event.record()
        return batch, event

    @staticmethod
    def received(item: tuple[FrameBatch, torch.cuda.Event]) -> FrameBatch:
        batch, ready = item
        stream = torch.cuda.current_stream()
        stream.wait_event(ready)
        if batch.frames.is_cuda:
            batch.frames.record_stream(stream)
        return batch


@contextlib.contextmanager
def ctrl_c_held_back():
    """Hold a Ctrl-C (or the SIGTERM that `vsr` raises as one, vsr.errors.Terminated) back until the block is over,
    then raise it as usual.

    Thread.start() waits for the new thread to run, and a KeyboardInterrupt raised in that wait leaves a stage
    running that nobody stops: the caller then closes the decoder's container under it, and the process crashes at
    exit (seen: SIGSEGV in about 1 run in 4 with Ctrl-C right after the output was created). Signals reach Python in
    the main thread only; elsewhere there is nothing to hold back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    held = {number: handler for number, handler in held.items() if callable(handler)}  # (others raise nothing)
    received: list[int] = []
    for number in held:
        signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
    if received:
        held[received[0]](received[0], None)  # raises: Python's KeyboardInterrupt, or vsr's Terminated


def _join(threads: list[threading.Thread]) -> None:
    """Wait for the stages to finish their current batch and see the stop flag. No timeout: the caller closes the
    encoder's container next, and it must not do so while a thread is still inside it."""
    for thread in threads:
        if thread.ident is not None:  # started
            thread.join()


def run_pipeline(
    batches: Iterable[FrameBatch],
    upscale: Callable[[FrameBatch], FrameBatch],
    write: Callable[[FrameBatch], None],
    *,
    queue_size: int = 2,
    on_frames: Callable[[int], None] | None = None,
    device: torch.device | None = None,
    finish: Callable[[], None] | None = None,
) -> StageTimes:
    """Run decode → upscale → write concurrently until `batches` is exhausted; return the time spent per stage.

    `upscale` runs on the calling thread (a CUDA context and CUDA graphs stay on one thread); `batches` is iterated
    on a decoder thread and `write` is called on an encoder thread, both in order, then `finish` (the encoder's
    flush: x264 holds 40 to 70 frames, whose encoding belongs in the times). `device`: where the batches' frames
    are (a CUDA device: a stream per stage, see the module doc).
    """
    stop = threading.Event()
    decoded = _Pipe(queue_size, stop)
    upscaled = _Pipe(queue_size, stop)
    errors: list[BaseException] = []
    times = StageTimes()
    streams = _StageStreams.for_device(device)

    def on(stage: str):
        return streams.on(stage) if streams is not None else contextlib.nullcontext()

    def hand_on(batch: FrameBatch):
        return streams.handed_on(batch) if streams is not None else batch

    def receive(item) -> FrameBatch:
        return streams.received(item) if streams is not None else item

    def decode_stage() -> None:
        try:
            with on("decode"):
                iterator: Iterator[FrameBatch] = iter(batches)
                while True:
                    start = time.perf_counter()
                    batch = next(iterator, None)
                    times.decode += time.perf_counter() - start
                    if batch is None:
                        break
                    decoded.put(hand_on(batch))
            decoded.put(_END)
        except _Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            errors.append(error)
            stop.set()

    def encode_stage() -> None:
        try:
            with on("encode"):
                while (item := upscaled.get()) is not _END:
                    batch = receive(item)
                    start = time.perf_counter()
                    write(batch)
                    times.encode += time.perf_counter() - start
                    times.frames += len(batch)
                    if on_frames is not None:
                        on_frames(len(batch))
                if finish is not None:
                    start = time.perf_counter()
                    finish()
                    times.encode += time.perf_counter() - start
        except _Stopped:
            pass
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
            stop.set()

    # Each stage in a copy of the caller's context: what it set holds in them too (the job whose warnings a batch
    # keeps, `progress.warnings_kept`; a thread starts in an empty context).
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(decode_stage,), name="vsr-decode", daemon=True),
        threading.Thread(target=contextvars.copy_context().run, args=(encode_stage,), name="vsr-encode", daemon=True),
    ]
    wall_start = time.perf_counter()
    try:
        with ctrl_c_held_back():
            for thread in threads:
                thread.start()
        with on("model"):
            while (item := decoded.get()) is not _END:
                batch = receive(item)
                start = time.perf_counter()
                result = upscale(batch)
                times.model += time.perf_counter() - start
                upscaled.put(hand_on(result))
        upscaled.put(_END)
        threads[1].join()
    except _Stopped:
        pass
    except BaseException:
        # Ctrl-C or an engine error: stop the other stages, then let the caller clean up.
        stop.set()
        _join(threads)
        raise
    stop.set()
    _join(threads)
    times.wall = time.perf_counter() - wall_start
    if errors:
        try:
            raise errors[0]
        finally:
            # (the traceback holds this frame, and this frame the list: a cycle that kept the writer, its encoder's
            # threads and the last frames alive after a failure, 290 MB a 1080p video, until the garbage collector
            # came by)
            errors.clear()
    return times
