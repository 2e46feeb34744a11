"""Batch jobs as Ray tasks, on a local Ray cluster (2 CPUs) that this module starts and stops.

The driver (this process) keeps the journal; the tasks run in Ray's worker processes and return their results.
"""

import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from tests.pipelines.clips import make_clip
from tests.pipelines.media_fixtures import ffprobe_frame_pts
from tests.pipelines.test_resume import Interrupt
from tests.pipelines.test_segments import decoded_framemd5
from tests.processes import HANG_SECONDS
from vsr import api
from vsr.errors import OutputError
from vsr.pipelines import batch
from vsr.pipelines.journal import JobState, read_journal

# One cluster per test run: under pytest-xdist, every test here goes to the same worker, which starts it.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def frame_count(path: Path) -> int:
    return len(ffprobe_frame_pts(path))


def ray_task_pids(name: str) -> list[int]:
    """Ray renames a worker process "ray::TASK NAME" while it runs a task: find those running job `name` (its
    segments' tasks are named "vsr-upscale:NAME#INDEX")."""
    title, found = f"ray::vsr-upscale:{name}".encode(), []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(title):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


def test_two_clips_through_a_local_cluster(local_cluster, tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "sub").mkdir(parents=True)
    make_clip(source / "a.mp4", frames=5)
    make_clip(source / "sub" / "b.mkv", frames=3)
    jobs = batch.discover(source, out, options=api.UpscaleOptions(model="bicubic"),
                          video=api.VideoOptions(preset="ultrafast"))
    report = batch.run_batch(jobs, out, ray="auto")  # joins the cluster the fixture started
    assert report.ok and [row.name for row in report.rows] == ["a.x4.mp4", "sub/b.x4.mkv"]
    assert all(row.attempts == 1 and row.checksum for row in report.rows)
    assert frame_count(out / "a.x4.mp4") == 5 and frame_count(out / "sub" / "b.x4.mkv") == 3
    assert ray.is_initialized()  # a cluster the batch did not start is left running


def test_a_ray_worker_killed_mid_job_has_its_task_retried(local_cluster, tmp_path, tiny_rrdbnet_checkpoint):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "clip.mp4", frames=24, size=(96, 64))
    jobs = batch.discover(source, out, options=api.UpscaleOptions(model=str(tiny_rrdbnet_checkpoint)),
                          video=api.VideoOptions(preset="ultrafast"))
    reports = []
    driver = threading.Thread(target=lambda: reports.append(batch.run_batch(jobs, out, ray="auto")))
    driver.start()
    try:
        deadline = time.monotonic() + HANG_SECONDS  # (the cluster's workers start slowly on a loaded machine)
        # Kill the task's worker while it is writing its segment (a short video: one segment).
        writing = out / ".clip.x4.mp4.segments" / ".segment-0000.partial.mp4"
        while not (writing.exists() and (pids := ray_task_pids("clip.x4.mp4"))):
            assert driver.is_alive() and time.monotonic() < deadline, "the job ended before it could be killed"
            time.sleep(0.02)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    finally:
        driver.join(timeout=HANG_SECONDS)  # (Ray's retry starts a new worker process)
    (report,) = reports
    assert report.ok
    (row,) = report.rows
    assert row.state is JobState.DONE and row.attempts == 1  # Ray's retry happens within the journal's attempt
    assert frame_count(out / "clip.x4.mp4") == 24
    assert sorted(path.name for path in out.iterdir()) == [".vsr-journal.sqlite", "clip.x4.mp4"]


def test_the_tasks_warnings_are_said_by_the_driver(local_cluster, tmp_path, caplog):
    """Ray keeps its workers' logs from the driver's terminal: what a segment's writer or an image's upscale warned of
    was lost."""
    from tests.pipelines.test_alpha import make_alpha_clip

    from PIL import Image as PillowImage
    from tests.pipelines.test_images import SAMPLE_FRAME

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_alpha_clip(source / "alpha.webm", frames=6)
    PillowImage.open(SAMPLE_FRAME).convert("RGB").resize((64, 36)).save(tmp_path / "photo.jpg", quality=95)
    (source / "cut.jpg").write_bytes((tmp_path / "photo.jpg").read_bytes()[:-400])  # (damaged: warned of)
    jobs = batch.discover(source, out, options=api.UpscaleOptions(model="bicubic"),
                          video=api.VideoOptions(codec="libx264", segment_seconds=0.1))
    with caplog.at_level(logging.WARNING):
        report = batch.run_batch(jobs, out, ray="auto")
    assert report.ok
    assert "cannot store the video's alpha channel: the output is opaque" in caplog.text
    assert f"{source / 'cut.jpg'}: damaged or cut short; FFmpeg fills in what is missing" in caplog.text
    # The journal keeps them, from the image's task and from the video's segment tasks (said by its driver thread).
    rows = {row.name: row for row in read_journal(out)}
    assert any("cannot store the video's alpha channel" in text for text in rows["alpha.x4.mkv"].warnings)
    cut_jpeg = [text.split(";")[0] for text in rows["cut.x4.jpg"].warnings]
    assert cut_jpeg == [f"{source / 'cut.jpg'}: damaged or cut short"]


def test_a_long_video_is_spread_over_the_cluster_in_segments(local_cluster, tmp_path, tiny_rrdbnet_checkpoint, caplog):
    """96 frames with a keyframe every 8, segments of 0.25 s: 12 segment tasks over the cluster's 2 CPU slots, joined
    by the driver into the frames of a run on one device."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "long.mp4", frames=96, options={"g": "8", "keyint_min": "8", "sc_threshold": "0"})
    options = api.UpscaleOptions(model=str(tiny_rrdbnet_checkpoint))
    video = api.VideoOptions(codec="ffv1", segment_seconds=0.25)
    jobs = batch.discover(source, out, options=options, video=video)
    with caplog.at_level(logging.INFO, logger="vsr.pipelines.ray_backend"):
        report = batch.run_batch(jobs, out, ray="auto")
    assert report.ok
    # (by 1 or 2 of the cluster's worker processes: which ones take tasks is Ray's timing)
    assert re.search(r"long\.x4\.mp4: 12 segments upscaled by [12] Ray worker processes", caplog.text)
    single = api.upscale_video(source / "long.mp4", tmp_path / "single.mkv", options=options, video=video)
    assert decoded_framemd5(out / "long.x4.mp4") == decoded_framemd5(single.output)
    assert sorted(path.name for path in out.iterdir()) == [".vsr-journal.sqlite", "long.x4.mp4"]


def test_a_cluster_address_where_nothing_answers_is_one_line_at_once():
    """Ray retries such an address for minutes, logging as it goes."""
    from vsr.errors import OptionError
    from vsr.pipelines.ray_backend import check_address

    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):  # (port 1: refused at once, before Ray is asked)
        with pytest.raises(OptionError, match=f"--ray {address}: nothing answers there"):
            check_address(address)
    check_address("auto")  # (Ray's own: RAY_ADDRESS or the cluster `ray start` made)
    os.environ["RAY_ADDRESS"] = "127.0.0.1:1"  # (a cluster gone since: Ray waited on it for minutes)
    try:
        with pytest.raises(OptionError, match=r"--ray auto \(RAY_ADDRESS=127.0.0.1:1\): nothing answers there"):
            check_address("auto")
    finally:
        del os.environ["RAY_ADDRESS"]
    for address in ("lcoal", "", "http://127.0.0.1:6379", "127.0.0.1:port"):  # (Ray's ValueError, a traceback)
        with pytest.raises(OptionError, match="give local .a cluster started here., auto .the running one. or a "
                                              "cluster address, HOST:PORT or ray://HOST:PORT"):
            check_address(address)


def test_more_cpus_per_task_than_any_node_has_is_one_line(local_cluster, tmp_path):
    """Ray queued such tasks for ever, as infeasible, and said so only in its own logs."""
    from vsr.errors import OptionError
    from vsr.pipelines.ray_backend import RayExecutor

    with pytest.raises(OptionError, match=r"--task-cpus 3: no node of the Ray cluster has that many CPUs \(the "
                                          r"largest has 2\)"):
        RayExecutor("auto", task_cpus=3)


def test_a_full_disk_met_by_a_segment_task_stops_the_batch_and_costs_no_attempt(local_cluster, tmp_path):
    """The task's error came back as a plain VsrError, and Ray's pickling drops an error's chain: not known as a full
    disk, the job failed and spent an attempt, and the batch went on to fail the next jobs the same way."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "long.mp4", frames=16, options={"g": "8", "keyint_min": "8", "sc_threshold": "0"})
    jobs = batch.discover(source, out, options=api.UpscaleOptions(model="bicubic", outscale=2),
                          video=api.VideoOptions(segment_seconds=0.25))
    (job,) = jobs
    out.mkdir()
    # Its segments, as a run stopped after the first leaves them; that one to do again, into /dev/full.
    with pytest.raises(KeyboardInterrupt):
        api.upscale_video_in_segments(job.source, job.output, options=job.options, video=job.video,
                                      on_segment=Interrupt(after=1))
    segments = out / ".long.x2.mp4.segments"
    for path in segments.glob("segment-0000.*"):
        path.unlink()
    (segments / ".segment-0000.partial.mp4").symlink_to("/dev/full")
    with pytest.raises(OutputError, match=r"^segment 1 of 2 .*: cannot write .*segment-0000\.mp4: No space left on "
                                          r"device; the batch stopped"):
        batch.run_batch(jobs, out, ray="auto")
    (row,) = read_journal(out)
    assert row.attempts == 0 and row.state is not JobState.DONE
