"""Batch jobs on a Ray cluster: `vsr batch IN OUT --ray auto|ADDRESS|local`.

An image is one task (`_upscale_task`). A video is cut into keyframe-aligned segments (`pipelines.segments`; of at
most `--segment-seconds`, one for a short video), and each segment is a task of its own (`_segment_task`), so that a
long video spreads over every GPU of the cluster. A thread of the driver per running video plans it, keeps the
finished segments in the folder beside the output (`pipelines.resume`) and joins them by stream copy at the end.

Each task asks for `task_cpus` CPUs, and one GPU where the cluster has GPUs and the job's device is not "cpu". Ray
retries a task whose worker process or node dies (`max_retries`); errors of the job itself (a corrupt input) are not
retried here: they fail the job with one line, and the next run of the command retries it up to --max-attempts,
resuming from the segments kept.

The journal stays with the driver. Inputs, outputs and segments are opened by the same path on every node: the input
and output folders must be on storage that every node mounts at the same path.

A Ray worker process runs many tasks; it keeps its engine between them (`batch_workers.engine_for`), so a model is
loaded once per worker process, not once per segment.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import queue
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from vsr.errors import OptionError, OutputError, VsrError, out_of_space
from vsr.pipelines.batch_workers import (BatchJob, JobResult, engine_for, for_job, one_line, run_job,
                                         warnings_kept)
from vsr.pipelines.runner import ctrl_c_held_back

log = logging.getLogger(__name__)

try:
    import ray
except ImportError:  # the `cluster` extra is not installed; RayExecutor says so
    ray = None


def _upscale_task(job: BatchJob, threads: int) -> JobResult:
    import torch

    torch.set_num_threads(threads)
    return run_job(job)  # (with its warnings, which the driver says: see `RayExecutor.wait`)


def _segment_task(source: Path, plan, index: int, options, video, folder: Path, threads: int):
    import torch
    from vsr.pipelines.segments import upscale_segment

    torch.set_num_threads(threads)
    with warnings_kept() as kept:
        try:
            result = upscale_segment(engine_for(options), source, plan, plan.segments[index], folder, video)
        except Exception as error:
            if out_of_space(error):  # (said by its errno: Ray pickles the error to the driver without its chain)
                raise OSError(errno.ENOSPC, one_line(error)) from None
            raise
    result.warnings = kept.messages
    return result


# How a job's result says that it failed because the cluster went away, not because of the job.
CLUSTER_GONE = "the Ray cluster is gone"


def _failed(error: BaseException) -> str:
    """Why a Ray task failed, for a JobResult: CLUSTER_GONE first where this machine's Ray itself died (`ray stop`,
    the head lost), which the batch stops at rather than fail every job left (and count their attempts)."""
    gone = isinstance(error, (ray.exceptions.LocalRayletDiedError, ray.exceptions.RaySystemError))
    return f"{CLUSTER_GONE} ({one_line(error)})" if gone else f"Ray task failed: {one_line(error)}"


def _say(warnings) -> None:
    """A task's warnings, said by the driver (Ray keeps its workers' logs from the driver's terminal)."""
    for text in dict.fromkeys(warnings):
        log.warning("%s", text)


class RaySegments:
    """Upscales a video's segments as Ray tasks, for `upscale_video_in_segments(remote=...)`."""

    def __init__(self, executor: RayExecutor, name: str):
        self._executor = executor
        self._name = name

    def upscale(self, todo, source: Path, plan, options, video, folder: Path, on_frames) -> Iterator:
        """Each segment of `todo` as its task finishes (any order); the first failure is raised."""
        gpus = 1 if self._executor.cluster_gpus >= 1 and options.device != "cpu" else 0
        if gpus:  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU: inside the task it is always cuda:0
            options = dataclasses.replace(options, device="cuda")
        executor = self._executor
        tasks, workers = {}, set()
        for segment in todo:
            task = executor.segment_remote.options(
                num_cpus=executor.task_cpus, num_gpus=gpus, max_retries=executor.max_retries,
                name=f"vsr-upscale:{self._name}#{segment.index}")
            ref = task.remote(source, plan, segment.index, options, video, folder, executor.threads)
            tasks[ref] = segment
        try:
            while tasks:
                if executor.closing.is_set():
                    raise VsrError(f"{self._name}: stopped")
                ready, _ = ray.wait(list(tasks), num_returns=1, timeout=1.0)
                for ref in ready:
                    segment = tasks.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as error:  # the segment's own error (a damaged input)
                        cause = error.cause or error
                        if out_of_space(cause):  # (the batch stops there: see _segment_task)
                            raise OutputError(f"{plan.describe(segment)}: {cause.strerror}") from cause
                        raise VsrError(f"{plan.describe(segment)}: {one_line(cause)}") from None
                    except ray.exceptions.RayError as error:  # its worker or node died more than max_retries times
                        raise VsrError(f"{plan.describe(segment)}: {_failed(error)}") from None
                    _say(result.warnings)
                    on_frames(len(result.pts))
                    workers.add(result.worker)
                    yield result
            log.info("%s: %d segments upscaled by %d Ray worker processes", self._name, len(todo), len(workers))
        finally:
            for ref in tasks:
                ray.cancel(ref, force=True)


def _check_task_cpus(task_cpus: float) -> None:
    if not (isinstance(task_cpus, (int, float)) and 0 < task_cpus < math.inf):  # (NaN too: int() of it failed)
        raise OptionError(f"--task-cpus must be a number more than 0, not {task_cpus}")


def check_address(address: str, task_cpus: float = 1.0, seconds: float = 5.0) -> None:
    """One line where `address` is none that --ray takes, or where a cluster address (HOST:PORT, ray://HOST:PORT,
    or RAY_ADDRESS's for "auto") takes no connection (Ray itself retries for minutes, logging as it goes); or where
    `task_cpus` is not a number of CPUs more than 0."""
    _check_task_cpus(task_cpus)
    option = f"--ray {address}"
    if address == "local":
        return
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        option = f"--ray auto (RAY_ADDRESS={address})"
        if not address or address == "auto":
            return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if "/" in host or not host or not port.isdigit():
        raise OptionError(f"{option}: give local (a cluster started here), auto (the running one) or a cluster "
                          "address, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as error:
        raise OptionError(f"{option}: nothing answers there ({error.strerror or error}); is the cluster "
                          "started (ray start --head) and the address its head's?") from None


def _init(address: str, settings: dict) -> None:
    """`ray.init` for --ray `address`: "local" starts a cluster here whatever RAY_ADDRESS says; vsr's SIGTERM
    handler (a clean stop, vsr.errors.Terminated) is kept, where Ray's would exit without a word."""
    handler = signal.getsignal(signal.SIGTERM)
    named = os.environ.pop("RAY_ADDRESS", None) if address == "local" else None
    try:
        ray.init(**settings) if address == "local" else ray.init(address=address, **settings)
    finally:
        if named is not None:
            os.environ["RAY_ADDRESS"] = named
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)


class RayExecutor:
    """Submits jobs to a Ray cluster: `address` is "local" (start one on this machine), "auto" (the running cluster
    that RAY_ADDRESS or `ray start` names) or a cluster address ("HOST:6379", "ray://HOST:10001")."""

    def __init__(self, address: str, *, task_cpus: float = 1.0, max_retries: int = 2,
                 on_frames: Callable[[str, int], None] | None = None):
        """`on_frames(name, count)`: called with the frames of each segment of a video as its task finishes (from
        the video's thread), for the batch's bar; an image is counted by its result."""
        if ray is None:
            raise OptionError("--ray needs Ray: pip install 'vsr[cluster]' (or pip install ray)")
        _check_task_cpus(task_cpus)
        self._started = not ray.is_initialized()
        if self._started:
            check_address(address, task_cpus)
            settings = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
            try:
                _init(address, settings)
            # (ConnectionError: nothing answers; ValueError: no cluster there; a plain Exception: a raylet that did
            # not register within Ray's 30 s, as on a loaded machine)
            except Exception as error:  # noqa: BLE001 - whatever ray.init raises is said in one line
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                # Clusters that `ray start` makes take a token, which Ray reads only for "auto" unless told to.
                hint = ("; if the cluster takes a token (ray start's default), set RAY_AUTH_MODE=token"
                        if address not in ("local", "auto") and "RAY_AUTH_MODE" not in os.environ else "")
                what = "cannot start a Ray cluster here" if address == "local" else "cannot connect to a Ray cluster"
                raise OptionError(f"--ray {address}: {what} ({reason}){hint}") from error
        resources = ray.cluster_resources()
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0)
        if task_cpus > largest:  # (Ray would queue every task for ever, as "infeasible", saying so nowhere)
            if self._started:
                ray.shutdown()
            raise OptionError(f"--task-cpus {task_cpus:g}: no node of the Ray cluster has that many CPUs (the "
                              f"largest has {largest:g})")
        self.cluster_gpus = resources.get("GPU", 0)
        self.task_cpus = task_cpus
        self.threads = max(1, int(task_cpus))
        self.max_retries = max_retries
        # How many jobs run at once: as many tasks as the cluster can run side by side (a video's segments share
        # its slot's GPUs with the other videos' through Ray's queue).
        by_cpu = int(resources.get("CPU", 1) // task_cpus)
        self.capacity = max(1, int(self.cluster_gpus) if self.cluster_gpus >= 1 else by_cpu)
        self._image_remote = ray.remote(_upscale_task)
        self.segment_remote = ray.remote(_segment_task)
        self._tasks: dict = {}  # ObjectRef → BatchJob (images)
        self._videos: dict[str, threading.Thread] = {}  # job name → its driver thread
        self._finished: queue.Queue = queue.Queue()  # JobResults of the video threads
        self.closing = threading.Event()
        self._on_frames = on_frames
        log.info("Ray cluster: %s; %d jobs at a time", resources, self.capacity)

    def submit(self, job: BatchJob) -> None:
        if job.kind == "video":
            thread = threading.Thread(target=self._run_video, args=(job,), name=f"vsr-ray:{job.name}", daemon=True)
            self._videos[job.name] = thread
            with ctrl_c_held_back():  # so that close() finds it started, and joins it
                thread.start()
            return
        gpus = 1 if self.cluster_gpus >= 1 and job.options.device != "cpu" else 0
        if gpus:
            job = dataclasses.replace(job, options=dataclasses.replace(job.options, device="cuda"))
        task = self._image_remote.options(num_cpus=self.task_cpus, num_gpus=gpus, max_retries=self.max_retries,
                                          name=f"vsr-upscale:{job.name}")
        self._tasks[task.remote(job, self.threads)] = job

    def _run_video(self, job: BatchJob) -> None:
        on_frames = for_job(self._on_frames, job.name)
        self._finished.put(run_job(job, remote=RaySegments(self, job.name), on_frames=on_frames))

    def wait(self, timeout: float) -> list[JobResult]:
        results = self._finished_videos()
        if self._tasks:
            ready, _ = ray.wait(list(self._tasks), num_returns=1, timeout=0 if results else timeout)
            for ref in ready:
                job = self._tasks.pop(ref)
                try:
                    results.append(ray.get(ref))
                    _say(results[-1].warnings)
                except ray.exceptions.RayError as error:  # the task's worker or node died more than max_retries times
                    results.append(JobResult(job.name, ok=False, error=_failed(error), died=True))
        elif not results and self._videos:
            try:
                results.append(self._finished.get(timeout=timeout))
            except queue.Empty:
                pass
            results += self._finished_videos()
        for result in results:
            self._videos.pop(result.name, None)
        gone = next((result for result in results if result.error and CLUSTER_GONE in result.error), None)
        if gone is not None:  # (the batch stops: its jobs not done stay queued, their attempts not counted)
            for result in results:
                if result.ok:  # (recorded by the batch as it stops: see `finished`)
                    self._finished.put(result)
            reason = gone.error[gone.error.index(CLUSTER_GONE):]
            raise VsrError(f"{reason}; the jobs not done are kept: run the same command again once it is back")
        return results

    def _finished_videos(self) -> list[JobResult]:
        results = []
        while True:
            try:
                results.append(self._finished.get_nowait())
            except queue.Empty:
                return results

    def finished(self) -> list[JobResult]:
        """Results of video jobs that finished while `close` stopped the others (one that was joining its
        segments when the stop came goes on to write its output)."""
        return self._finished_videos()

    def close(self) -> None:
        self.closing.set()  # the video threads cancel their segments' tasks and stop
        for ref in self._tasks:
            ray.cancel(ref, force=True)
        self._tasks.clear()
        for thread in self._videos.values():
            thread.join(timeout=30)
        self._videos.clear()
        if self._started:
            ray.shutdown()
            self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
