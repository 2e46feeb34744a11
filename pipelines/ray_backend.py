"""Batch jobs as Ray tasks: `vsr batch IN OUT --ray auto|ADDRESS|local`.

Each job is one task (`_upscale_task`) with its resources: `task_cpus` CPUs, and one GPU where the cluster has GPUs
and the job's device is not "cpu". Ray retries a task whose worker process or node dies (`max_retries`); errors of the
job itself (a corrupt input) are not retried here: the task returns them as a failed JobResult, and the next run of
the command retries them up to --max-attempts.

The journal stays with the driver: tasks only read the input and write the output (atomically, so a retried task
starts from nothing), and return a JobResult that the driver records. Inputs and outputs are opened by the same path on
every node: the input and output folders must be on storage that every node mounts at the same path.

A Ray worker process runs many tasks; it keeps its engine between them (`batch_workers._engine_for`), so a model is
loaded once per worker process, not once per job.
"""

from __future__ import annotations

import dataclasses
import logging

from vsr.errors import OptionError
from vsr.pipelines.batch_workers import BatchJob, JobResult, one_line, run_job

log = logging.getLogger(__name__)

try:
    import ray
except ImportError:  # the `cluster` extra is not installed; RayExecutor says so
    ray = None


def _upscale(job: BatchJob, threads: int) -> JobResult:
    import torch

    torch.set_num_threads(threads)
    return run_job(job)


class RayExecutor:
    """Submits jobs to a Ray cluster: `address` is "local" (start one on this machine), "auto" (the running cluster
    that RAY_ADDRESS or `ray start` names) or a cluster address ("HOST:6379", "ray://HOST:10001")."""

    def __init__(self, address: str, *, task_cpus: float = 1.0, max_retries: int = 2):
        if ray is None:
            raise OptionError("--ray needs Ray: pip install 'vsr[cluster]' (or pip install ray)")
        if task_cpus <= 0:
            raise OptionError(f"--task-cpus must be more than 0, not {task_cpus}")
        self._started = not ray.is_initialized()
        if self._started:
            settings = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
            try:
                ray.init(**settings) if address == "local" else ray.init(address=address, **settings)
            except ConnectionError as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise OptionError(f"--ray {address}: cannot connect to a Ray cluster ({reason})") from error
        resources = ray.cluster_resources()
        self._cluster_gpus = resources.get("GPU", 0)
        self._task_cpus = task_cpus
        self._threads = max(1, int(task_cpus))
        self._max_retries = max_retries
        # How many jobs are marked running at once: as many tasks as the cluster can run side by side.
        by_cpu = int(resources.get("CPU", 1) // task_cpus)
        self.capacity = max(1, int(self._cluster_gpus) if self._cluster_gpus >= 1 else by_cpu)
        self._remote = ray.remote(_upscale)
        self._tasks: dict = {}  # ObjectRef → BatchJob
        log.info("Ray cluster: %s; %d jobs at a time", resources, self.capacity)

    def submit(self, job: BatchJob) -> None:
        gpus = 1 if self._cluster_gpus >= 1 and job.options.device != "cpu" else 0
        if gpus:
            # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU: inside the task it is always cuda:0.
            job = dataclasses.replace(job, options=dataclasses.replace(job.options, device="cuda"))
        task = self._remote.options(num_cpus=self._task_cpus, num_gpus=gpus, max_retries=self._max_retries,
                                            name=f"vsr-upscale:{job.name}")
        self._tasks[task.remote(job, self._threads)] = job

    def wait(self, timeout: float) -> list[JobResult]:
        if not self._tasks:
            return []
        ready, _ = ray.wait(list(self._tasks), num_returns=1, timeout=timeout)
        results = []
        for ref in ready:
            job = self._tasks.pop(ref)
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as error:  # the task's worker or node died more than max_retries times
                results.append(JobResult(job.name, ok=False, error=f"Ray task failed: {one_line(error)}"))
        return results

    def close(self) -> None:
        for ref in self._tasks:
            ray.cancel(ref, force=True)
        self._tasks.clear()
        if self._started:
            ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
