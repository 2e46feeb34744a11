"""The streaming runner: decode, upscale and encode at the same time, joined by bounded queues.

    decoder thread ──FrameBatch──▶ [queue] ──▶ engine (this thread) ──▶ [queue] ──FrameBatch──▶ encoder thread

Queues hold at most `queue_size` batches, so memory does not grow with the length of the video and the slowest
stage sets the pace. An error in any stage stops the others and is raised here; the caller's writer then removes its
temporary file, so nothing half-written is left under the final name.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

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


def _join(threads: list[threading.Thread]) -> None:
    """Wait for the stages to finish their current batch and see the stop flag. No timeout: the caller closes the
    encoder's container next, and it must not do so while a thread is still inside it."""
    for thread in threads:
        thread.join()


def run_pipeline(
    batches: Iterable[FrameBatch],
    upscale: Callable[[FrameBatch], FrameBatch],
    write: Callable[[FrameBatch], None],
    *,
    queue_size: int = 2,
    on_frames: Callable[[int], None] | None = None,
) -> StageTimes:
    """Run decode → upscale → write concurrently until `batches` is exhausted; return the time spent per stage.

    `upscale` runs on the calling thread (a CUDA context and CUDA graphs stay on one thread); `batches` is iterated
    on a decoder thread and `write` is called on an encoder thread, both in order.
    """
    stop = threading.Event()
    decoded = _Pipe(queue_size, stop)
    upscaled = _Pipe(queue_size, stop)
    errors: list[BaseException] = []
    times = StageTimes()

    def decode_stage() -> None:
        try:
            iterator: Iterator[FrameBatch] = iter(batches)
            while True:
                start = time.perf_counter()
                batch = next(iterator, None)
                times.decode += time.perf_counter() - start
                if batch is None:
                    break
                decoded.put(batch)
            decoded.put(_END)
        except _Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            errors.append(error)
            stop.set()

    def encode_stage() -> None:
        try:
            while (batch := upscaled.get()) is not _END:
                start = time.perf_counter()
                write(batch)
                times.encode += time.perf_counter() - start
                times.frames += len(batch)
                if on_frames is not None:
                    on_frames(len(batch))
        except _Stopped:
            pass
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
            stop.set()

    threads = [
        threading.Thread(target=decode_stage, name="vsr-decode", daemon=True),
        threading.Thread(target=encode_stage, name="vsr-encode", daemon=True),
    ]
    wall_start = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        while (batch := decoded.get()) is not _END:
            start = time.perf_counter()
            result = upscale(batch)
            times.model += time.perf_counter() - start
            upscaled.put(result)
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
        raise errors[0]
    return times
