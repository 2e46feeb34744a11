"""Running batch jobs: one job in a worker (`run_job`), and the local executors that feed jobs to workers.

Every executor has the same small interface, which the driver in `pipelines.batch` (and the Ray backend) relies on:

    executor.capacity        how many jobs may run at once
    executor.submit(job)     start a job (only while fewer than `capacity` are running)
    executor.wait(timeout)   the JobResults that finished, possibly none
    executor.close()

`InlineExecutor` runs jobs in the driver's own process, one at a time (the default, `--workers 1`).
`ProcessExecutor` starts N worker processes (spawn: no forked CUDA or thread state), each pinned to a device or to
its share of the CPU cores. A worker loads its model once and keeps the engine for all the jobs it gets. A worker
that dies (killed, out of memory) fails its job with a one-line reason and is replaced.

Workers never touch the journal: they return results, and the driver writes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vsr.errors import VsrError, out_of_space
from vsr.pipelines.progress import log_to_driver, relay_logs, said_once_per_call, warnings_kept

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchJob:
    """One input → one output, with the options of `vsr upscale`."""

    name: str  # the output's path relative to the output folder: the journal's key
    label: str  # how the input is named in messages (its path relative to the input folder or jobs file)
    source: Path
    output: Path
    kind: str  # "video" or "image"
    options: object  # vsr.pipelines.upscale.UpscaleOptions
    video: object  # vsr.pipelines.upscale.VideoOptions (unused for images)
    overwrite: bool = False


@dataclass(frozen=True)
class JobResult:
    name: str
    ok: bool
    error: str | None = None  # one line
    checksum: str | None = None  # sha256 of the output
    seconds: float = 0.0
    frames: int | None = None
    # What the job's run warned of (a damaged or cut source, frames lost, ...): the journal keeps it, and the driver
    # of a Ray task says it (Ray keeps its workers' logs from the driver's terminal). The first WARNINGS_KEPT of them,
    # and how many there were (`progress.KeptWarnings`).
    warnings: tuple[str, ...] = ()
    warning_count: int = 0
    died: bool = False  # its process died (killed): it may have put its output in place first (`batch._record`)
    no_space: bool = False  # it failed for want of room on the disk (`out_of_space`): the batch stops, not the job
    # Refused by the segments it kept, made with other settings (`resume.KeptSegmentsRefused`: what "auto" chose on
    # another machine, a --precision changed): the run's settings failed, not the job, so no attempt is counted (the
    # job gave up after --max-attempts runs, each refused at once).
    settings_refused: bool = False


class _ShownFrom(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def show_from(level: int) -> None:
    """The console shows vsr's records of `level` and above, and vsr's warnings are still made, for the journal to
    keep (`warnings_kept`): an archive upscaled overnight with `vsr batch -q` (ERROR) kept no word of its damaged
    sources. A filter on the console's handlers, which tqdm's redirection copies (not their levels); `shown_level`
    says the level to worker processes."""
    if level <= logging.WARNING:
        return
    logging.getLogger("vsr").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ShownFrom(level))


def shown_level() -> int:
    """The least level of vsr's records that the console shows (`show_from`), for a worker process to show."""
    filters = [log_filter.level for handler in logging.getLogger().handlers for log_filter in handler.filters
               if isinstance(log_filter, _ShownFrom)]
    return max([logging.getLogger("vsr").getEffectiveLevel(), *filters])


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def one_line(error: BaseException) -> str:
    """The reason a job failed, on one line: a VsrError's message, else the exception's type and first line."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, VsrError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# The engine of this process, kept across jobs: loading a model is the slow part of a short job.
_engine_cache: dict = {}


def engine_for(options):
    from vsr.pipelines import upscale as api

    if options not in _engine_cache:
        _engine_cache.clear()  # one model in memory at a time
        _engine_cache[options] = api.make_engine(options, progress=False)
    return _engine_cache[options]


def run_job(job: BatchJob, remote=None, on_frames: Callable[[int], None] | None = None) -> JobResult:
    """Upscale one input into its output (atomically). Never raises for a bad input: the result says why.

    `remote`: for a video, where its segments are upscaled (`ray_backend.RaySegments`); else in this process.
    `on_frames`: called with each count of a video's frames upscaled, for the batch's bar (an image's one frame is
    counted by its result). The result carries what the job's run warned of (`warnings_kept`)."""
    with warnings_kept() as kept, said_once_per_call():  # (a job redone in this process warns again)
        result = _run_job(job, remote, on_frames)
    return dataclasses.replace(result, warnings=tuple(kept.messages), warning_count=kept.count)


def _run_job(job: BatchJob, remote, on_frames: Callable[[int], None] | None) -> JobResult:
    from vsr.pipelines import upscale as api

    start = time.perf_counter()
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        engine = engine_for(job.options) if remote is None else None
        if job.kind == "image":
            api.upscale_image(job.source, job.output, options=job.options, overwrite=job.overwrite, engine=engine)
            frames = 1
        else:
            from vsr.pipelines.segments import upscale_video_in_segments

            # Long videos in segments: a job cut short (killed worker, lost Ray node, Ctrl-C) resumes from them.
            result = upscale_video_in_segments(job.source, job.output, options=job.options, video=job.video,
                                               overwrite=job.overwrite, engine=engine, remote=remote,
                                               on_frames=on_frames)
            frames = result.frames
        checksum = sha256_file(job.output)
    except Exception as error:  # a job's failure must not stop the batch
        log.debug("job %s failed", job.name, exc_info=True)
        from vsr.pipelines.resume import KeptSegmentsRefused

        return JobResult(job.name, ok=False, error=one_line(error), seconds=time.perf_counter() - start,
                         no_space=out_of_space(error), settings_refused=isinstance(error, KeptSegmentsRefused))
    return JobResult(job.name, ok=True, checksum=checksum, seconds=time.perf_counter() - start, frames=frames)


class InlineExecutor:
    """Runs each job in this process when `wait` is called; one at a time. `on_frames(name, count)`: called with
    each count of frames a job upscales, as it goes (the batch's bar)."""

    capacity = 1

    def __init__(self, on_frames: Callable[[str, int], None] | None = None) -> None:
        self._job: BatchJob | None = None
        self._on_frames = on_frames

    def submit(self, job: BatchJob) -> None:
        self._job = job

    def wait(self, timeout: float) -> list[JobResult]:
        job, self._job = self._job, None
        if job is None:
            return []
        return [run_job(job, on_frames=for_job(self._on_frames, job.name))]

    def finished(self) -> list[JobResult]:
        """Results of jobs that finished while `close` stopped the others (none here: a job runs in `submit`)."""
        return []

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def for_job(on_frames: Callable[[str, int], None] | None, name: str) -> Callable[[int], None] | None:
    """An executor's `on_frames(name, count)` as the job `name`'s `run_job` calls it: with a count alone."""
    return None if on_frames is None else functools.partial(on_frames, name)


def start_without_ctrl_c(process: multiprocessing.Process, keep: Callable[[], None]) -> None:
    """Start a (spawned) worker process with SIGINT blocked, as it inherits the mask: a Ctrl-C at the terminal
    reaches the whole process group, and one that came while the worker was still importing torch, before it could
    ignore SIGINT, printed its traceback. The driver holds its own back until the worker is started and `keep` has
    put it where the caller stops its workers: raised in the middle of start(), it cut the worker's start-up data
    short (EOFError in the worker); raised before `keep`, it left a worker that nobody stopped."""
    from vsr.pipelines.runner import ctrl_c_held_back

    with ctrl_c_held_back():
        if not hasattr(signal, "pthread_sigmask"):  # (not on Windows, which has no process groups to signal)
            process.start()
        else:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        keep()


def die_with_parent(parent: int) -> None:
    """Let the kernel kill this worker when the driver dies (Linux), so that no orphan goes on writing an output
    that the next run is redoing."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the driver died before prctl
        os._exit(1)


def become_worker(parent: int) -> None:
    """What a worker process does first: die with the driver (`die_with_parent`), leave Ctrl-C to the driver, and
    give tqdm a lock of threads. Its default, made in a spawned process, is a named semaphore registered with the
    driver's resource tracker, which a killed worker never unregisters: a warning of several lines at exit."""
    import threading

    from tqdm import tqdm

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def worker_main(index: int, device: str | None, threads: int, log_level: int, parent: int,
                tasks: multiprocessing.Queue, results: multiprocessing.Queue, logs: multiprocessing.Queue,
                logger_levels: dict[str, int] | None = None) -> None:
    """The loop of one worker process: take a job, run it, send the result; None means stop. While it runs, each
    count of frames upscaled is sent ahead of the result, on the same queue (so before it), for the driver's bar.
    What it logs goes to the driver's `logs`. `logger_levels`: the levels of loggers set apart from `log_level` in
    the parent (the codec "auto" picked, which `vsr batch` shows)."""
    become_worker(parent)
    log_to_driver(logs, log_level, logger_levels)
    show_from(log_level)  # (-q: its warnings made all the same, for the journal; the driver's bar shows the rest)
    import torch

    torch.set_num_threads(threads)
    while (job := tasks.get()) is not None:
        if device is not None:
            job = dataclasses.replace(job, options=dataclasses.replace(job.options, device=device))
        results.put((index, run_job(job, on_frames=functools.partial(_put_frames, results, index))))


def _put_frames(results: multiprocessing.Queue, index: int, count: int) -> None:
    results.put((index, count))


@dataclass
class _Worker:
    process: multiprocessing.Process
    tasks: multiprocessing.Queue
    device: str | None
    job: BatchJob | None = None


class ProcessExecutor:
    """`workers` processes (one per entry of `devices` when given), fed one job at a time."""

    def __init__(self, workers: int, devices: list[str] | None = None, log_level: int = logging.WARNING,
                 logger_levels: dict[str, int] | None = None, on_frames: Callable[[str, int], None] | None = None):
        """`on_frames(name, count)`: called in `wait` with the counts of frames the workers' jobs upscaled."""
        self._context = multiprocessing.get_context("spawn")
        self._results = self._context.Queue()
        self._logs = self._context.Queue()  # what the workers log, for this process to write above its bar
        self._relay = contextlib.ExitStack()  # (closed by `close`, once the workers are gone)
        self._relay.enter_context(relay_logs(self._logs))
        self._devices = devices or [None] * workers
        self.capacity = len(self._devices)
        # Each worker gets its share of the cores, so that N workers do not each start a thread per core.
        self._threads = max(1, (os.cpu_count() or 1) // self.capacity)
        self._log_level, self._logger_levels = log_level, logger_levels  # (see worker_main)
        self._on_frames = on_frames
        self._workers: list[_Worker] = []
        try:
            for index in range(self.capacity):
                self._start(index)
        except BaseException:  # (Ctrl-C: no `with` block will close what was started)
            self.close()
            raise

    def _start(self, index: int) -> None:
        tasks = self._context.Queue()
        device = self._devices[index]
        process = self._context.Process(
            target=worker_main, name=f"vsr-batch-worker-{index}", daemon=True,
            args=(index, device, self._threads, self._log_level, os.getpid(), tasks, self._results, self._logs,
                  self._logger_levels),
        )

        def keep() -> None:  # (in place of a dead one, or the next)
            worker = _Worker(process, tasks, device)
            if index < len(self._workers):
                self._workers[index] = worker
            else:
                self._workers.append(worker)

        start_without_ctrl_c(process, keep)

    def submit(self, job: BatchJob) -> None:
        worker = next(worker for worker in self._workers if worker.job is None)
        worker.job = job
        worker.tasks.put(job)

    def wait(self, timeout: float) -> list[JobResult]:
        """The results that came within `timeout`, and a failure for each job whose worker died (looked for on
        every call: while the others' results kept coming, a dead worker went unseen to the end of the batch)."""
        # The dead are found before the results are read: a worker that sent its result and then died (its result
        # still in the pipe) was failed as dead, and its result came on the next call, for a job no longer running.
        dead = [index for index, worker in enumerate(self._workers) if not worker.process.is_alive()]
        results: list[JobResult] = []
        deadline = time.monotonic() + timeout
        try:
            while not results:  # (counts of frames do not end the wait: a result, or the time up)
                self._take(*self._results.get(timeout=max(0.0, deadline - time.monotonic())), results)
            while True:
                self._take(*self._results.get_nowait(), results)
        except queue.Empty:
            pass
        return results + self._reap(dead)

    def _take(self, index: int, sent_item: JobResult | int, results: list[JobResult]) -> None:
        """What worker `index` sent, in the order sent (a job's counts of frames before its result): its job's
        result, put in `results`, or a count of frames upscaled, passed to `on_frames`."""
        worker = self._workers[index]
        if isinstance(sent_item, JobResult):
            worker.job = None
            results.append(sent_item)
        elif self._on_frames is not None and worker.job is not None:
            self._on_frames(worker.job.name, sent_item)

    def _reap(self, dead: list[int]) -> list[JobResult]:
        """Fail the job of each worker of `dead`, remove its unfinished file (the job may not run again: its last
        attempt), and start a new worker in its place."""
        from vsr.pipelines.batch import remove_partials  # (which imports this module)

        failed = []
        for index in dead:
            worker = self._workers[index]
            if worker.job is not None:
                reason = f"the worker process died (exit code {worker.process.exitcode}) while running this job"
                failed.append(JobResult(worker.job.name, ok=False, error=reason, died=True))
                remove_partials(worker.job.output)
            log.warning("batch worker %d died (exit code %s); starting another", index, worker.process.exitcode)
            self._start(index)
        return failed

    def finished(self) -> list[JobResult]:
        """Results sent but not yet taken: jobs that finished while `close` stopped the workers."""
        results = []
        while True:
            try:
                sent_item = self._results.get(timeout=0.1)[1]
            except (queue.Empty, EOFError, OSError):  # (a worker killed while it wrote leaves the queue short)
                return results
            if isinstance(sent_item, JobResult):  # (not a count of frames: the bar is closed)
                results.append(sent_item)

    def close(self) -> None:
        from vsr.pipelines.batch import remove_partials  # (which imports this module)

        for worker in self._workers:
            if worker.process.is_alive():
                worker.tasks.put(None)
        for worker in self._workers:
            worker.process.join(timeout=30 if worker.job is None else 1)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            # Killed here, or dead already (SIGTERM to the whole process group, as `timeout` and systemd send it, ends
            # a worker at once): its unfinished file, which the next run would remove (if there is one).
            if worker.job is not None and worker.process.exitcode != 0:
                remove_partials(worker.job.output)
        self._relay.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
