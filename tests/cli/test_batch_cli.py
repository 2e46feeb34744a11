"""`vsr batch` end to end: killed with SIGKILL and run again, a corrupt file among real clips, images, jobs files.

Each test runs the real command in a subprocess on tiny real clips; outputs are judged by ffprobe.
"""

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
import torch
from vsr.pipelines import images
from vsr.pipelines.encode import partial_path
from vsr.errors import InputError, OutputError
from vsr.pipelines.journal import JOURNAL_NAME, read_journal

from tests.pipelines.clips import make_clip, truncate
from tests.pipelines.media_fixtures import ffprobe_frame_pts
from tests.pipelines.test_batch import damaged_inputs
from tests.processes import HANG_SECONDS, VSR, kill_when, wait_until
from tests.processes import run_vsr as vsr


def snapshot(folder: Path) -> dict:
    """Content hash, modification time and inode of every file under `folder` (journal files left out)."""
    return {
        path.relative_to(folder).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns,
                                              path.stat().st_ino)
        for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(JOURNAL_NAME)
    }


def journal_rows(out_dir: Path) -> dict:
    """name → (state, attempts), read the way a monitor would: read-only, while the batch may be writing."""
    uri = f"{(out_dir / JOURNAL_NAME).as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as connection:
        return {name: (state, attempts) for name, state, attempts in
                connection.execute("SELECT name, state, attempts FROM jobs")}


def frame_count(path: Path) -> int:
    return len(ffprobe_frame_pts(path))


def test_killed_in_the_middle_of_a_job_and_run_again_finishes_every_job_once(tmp_path, tiny_rrdbnet_checkpoint):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for i in range(4):
        make_clip(source / f"clip{i}.mp4", frames=24, size=(96, 64))
    inputs = snapshot(source)
    command = ["batch", source, out, "-m", tiny_rrdbnet_checkpoint, "--preset", "ultrafast", "-q"]
    second = partial_path(out / "clip1.x4.mp4")
    # Kill everything at once when the first job is done and the second is writing its output.
    kill_when(list(map(str, [*VSR, *command])), lambda: second.exists() and (out / JOURNAL_NAME).exists()
              and journal_rows(out).get("clip1.x4.mp4", (None,))[0] == "running", "the second job started")
    assert journal_rows(out) == {"clip0.x4.mp4": ("done", 1), "clip1.x4.mp4": ("running", 1),
                                 "clip2.x4.mp4": ("queued", 0), "clip3.x4.mp4": ("queued", 0)}
    assert second.exists() and not (out / "clip1.x4.mp4").exists()  # the killed job left only its partial file
    status = next(line for line in vsr("batch", "--status", out).stdout.splitlines() if "clip1.x4.mp4" in line)
    assert status.startswith("running") and status.endswith("its process is gone: the next run makes it again")
    first_output = snapshot(out)["clip0.x4.mp4"]

    rerun = vsr(*command)
    assert rerun.returncode == 0, rerun.stderr
    assert journal_rows(out) == {"clip0.x4.mp4": ("done", 1), "clip1.x4.mp4": ("done", 2),
                                 "clip2.x4.mp4": ("done", 1), "clip3.x4.mp4": ("done", 1)}
    outputs = snapshot(out)
    assert sorted(outputs) == ["clip0.x4.mp4", "clip1.x4.mp4", "clip2.x4.mp4", "clip3.x4.mp4"]  # no stray files
    assert outputs["clip0.x4.mp4"] == first_output  # not redone: same bytes, modification time and inode
    for i in range(4):
        assert frame_count(out / f"clip{i}.x4.mp4") == frame_count(source / f"clip{i}.mp4") == 24
    assert snapshot(source) == inputs


@pytest.mark.parametrize("signal_number, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_with_two_workers_leaves_no_temporary_file(tmp_path, tiny_rrdbnet_checkpoint, signal_number, code):
    """The driver kills a worker still busy a second after Ctrl-C: its job's hidden partial output stayed in OUT_DIR
    (as large as what it had written) until a next run, if any. SIGTERM to the whole group (`timeout`, systemd's
    stop) ends the workers at once, and the driver left the files of workers it found dead (helper-83)."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for i in range(2):
        make_clip(source / f"clip{i}.mp4", frames=150, size=(96, 64))
    command = [*VSR, "batch", source, out, "-m", tiny_rrdbnet_checkpoint, "--workers", "2", "--preset", "ultrafast"]
    process = subprocess.Popen(list(map(str, command)), start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_until(lambda: any(out.glob(".*.partial.mp4")), "a partial output", process)
    os.killpg(process.pid, signal_number)  # as a terminal's Ctrl-C: the whole group
    assert process.wait(timeout=HANG_SECONDS) == code
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(".") and "journal" not in path.name) == []


def test_a_long_video_killed_midway_resumes_from_its_segments(tmp_path, tiny_rrdbnet_checkpoint):
    """One long job (here: longer than --segment-seconds 0.25) killed after some of its segments: the rerun
    upscales only the others, and the output has every frame once."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "long.mp4", frames=96, options={"g": "8", "keyint_min": "8", "sc_threshold": "0"})
    command = ["batch", source, out, "-m", tiny_rrdbnet_checkpoint, "--segment-seconds", "0.25", "-b", "1"]
    segments = out / ".long.x4.mp4.segments"
    kill_when(list(map(str, [*VSR, *command])), lambda: any(segments.glob("segment-*.json")), "a segment was kept")
    kept = len(list(segments.glob("segment-*.json")))
    assert 1 <= kept < 12 and not (out / "long.x4.mp4").exists()

    rerun = vsr(*command)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {kept} of 12 segments were upscaled by an earlier run" in rerun.stderr
    assert journal_rows(out) == {"long.x4.mp4": ("done", 2)}
    assert sorted(snapshot(out)) == ["long.x4.mp4"]  # the segments folder is gone
    assert ffprobe_frame_pts(out / "long.x4.mp4") == ffprobe_frame_pts(source / "long.mp4")


def test_a_corrupt_file_among_real_clips_fails_alone_and_the_status_shows_why(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "b").mkdir(parents=True)
    make_clip(source / "a.mp4", frames=4)
    make_clip(source / "b" / "c.mkv", frames=4)
    truncate(make_clip(tmp_path / "whole.mp4", frames=20), source / "b" / "broken.mp4")
    inputs = snapshot(source)

    result = vsr("batch", source, out, "-m", "bicubic", "-s", "2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reason = next(line for line in result.stderr.splitlines() if "broken.mp4: failed:" in line)
    assert "broken.mp4" in reason.split("failed:", 1)[1]  # the reason names the file
    assert "batch: 2 done, 1 failed (of 3)" in result.stdout
    assert frame_count(out / "a.x2.mp4") == 4 and frame_count(out / "b" / "c.x2.mkv") == 4
    assert not (out / "b" / "broken.x2.mp4").exists()

    status = vsr("batch", "--status", out)
    assert status.returncode == 1
    line = next(line for line in status.stdout.splitlines() if "b/broken.x2.mp4" in line)
    assert line.split()[:2] == ["failed", "1"] and reason.split("failed: ", 1)[1] in line
    assert "2 done, 1 failed (of 3)" in status.stdout
    assert snapshot(source) == inputs
    # The broken file removed, no batch will run its job again: the journal still lists it, and no longer waits for it.
    (source / "b" / "broken.mp4").unlink()
    status = vsr("batch", "--status", out)
    assert status.returncode == 0
    line = next(line for line in status.stdout.splitlines() if "b/broken.x2.mp4" in line)
    assert "its input is gone; " in line


def test_damaged_sources_are_named_in_the_summary_and_their_warnings_in_the_status_even_with_quiet(tmp_path):
    """A source upscaled with damage was recorded plainly "done", its one warning line scrolled away overnight."""
    source = damaged_inputs(tmp_path / "in")
    result = vsr("batch", source, tmp_path / "out", "-m", "bicubic", "-s", "2")
    assert result.returncode == 0, result.stderr
    assert re.search(r"batch: 3 done \(of 3\) in [\d.]+ s, \d+ frames upscaled at [\d.]+ fps; 2 with warnings: "
                     r"cut\.x2\.mkv, damaged\.x2\.mp4 \(vsr batch --status says of what\); journal", result.stdout), \
        result.stdout
    assert re.search(r"cut\.mkv: done in [0-9.]+ s, 19 frames, 1 warning → cut\.x2\.mkv", result.stderr)
    # -q says nothing, and keeps them all the same: in this process, and in worker processes.
    for out, workers in ((tmp_path / "out", []), (tmp_path / "quiet", []), (tmp_path / "quiet2", ["-j", "2"])):
        if out.name.startswith("quiet"):
            quiet = vsr("batch", source, out, "-m", "bicubic", "-s", "2", "-q", *workers)
            assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
        status = vsr("batch", "--status", out)
        assert status.returncode == 0
        lines = {line.split()[4]: line for line in status.stdout.splitlines()[1:-1]}
        assert lines["clean.x2.mp4"].endswith("clean.x2.mp4")
        assert re.search(r"^done .* cut\.x2\.mkv +1 warning: cut short: it holds \d+ bytes where ", lines["cut.x2.mkv"])
        assert re.search(r" damaged\.x2\.mp4 +\d+ warnings: decoding error near ", lines["damaged.x2.mp4"])
    # Every warning kept, under its job's output (the table's row shows the first, cut at NOTE_WIDTH)
    every = vsr("batch", "--status", tmp_path / "out", "--warnings")
    assert every.returncode == 0
    jobs = re.split(r"^(\S+): (\d+) warnings?$", every.stdout.rstrip("\n"), flags=re.M)
    assert jobs[0] == "" and jobs[1::3] == ["cut.x2.mkv", "damaged.x2.mp4"]
    for count, said in zip(jobs[2::3], jobs[3::3]):
        said = said.strip("\n").split("\n")
        assert len(said) == int(count) and all(line.startswith("  ") for line in said)
    assert jobs[3].strip().startswith("cut short: it holds ") and str(source) not in every.stdout
    assert int(jobs[5]) > 1 and jobs[6].strip("\n").startswith("  decoding error near ")  # (the table's first)
    alone = vsr("batch", "--warnings", tmp_path / "out")
    assert alone.returncode != 0 and alone.stderr.strip().splitlines() == [
        "vsr: error: --warnings is a view of the journal: vsr batch --status OUT_DIR --warnings"]


def test_images_keep_their_folders_and_quiet_prints_nothing(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "x" / "y").mkdir(parents=True)
    picture = images.Image(rgb=torch.rand(3, 10, 14, generator=torch.Generator().manual_seed(0)))
    images.write_image(source / "x" / "p.png", picture)
    images.write_image(source / "x" / "y" / "q.jpg", picture)
    make_clip(source / "x" / "y" / "v.webm", frames=3, codec="libvpx-vp9")
    (source / "x" / "readme.txt").write_text("ignored")

    result = vsr("batch", source, out, "-m", "bicubic", "--exclude", "*.webm", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert sorted(snapshot(out)) == ["x/p.x4.png", "x/y/q.x4.jpg"]
    assert images.read_image(out / "x" / "p.x4.png").rgb.shape == (3, 40, 56)
    assert images.read_image(out / "x" / "y" / "q.x4.jpg").rgb.shape == (3, 40, 56)
    assert vsr("batch", "--status", out).returncode == 0


def test_a_jobs_file_with_its_own_output_folder(tmp_path):
    make_clip(tmp_path / "a.mp4", frames=4)
    make_clip(tmp_path / "b.mp4", frames=4)
    (tmp_path / "jobs.toml").write_text(
        'output_dir = "out"\n[defaults]\nmodel = "bicubic"\n'
        '[[job]]\ninput = "a.mp4"\n'
        '[[job]]\ninput = "b.mp4"\noutscale = 1\nframes = 2\n'
    )
    result = vsr("batch", "--jobs", tmp_path / "jobs.toml", "-s", "2")  # -s beats [defaults], not a job's own
    assert result.returncode == 0, result.stderr
    assert frame_count(tmp_path / "out" / "a.x2.mp4") == 4
    assert frame_count(tmp_path / "out" / "b.x1.mp4") == 2


def test_usage_errors_are_one_line(tmp_path):
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", frames=2)
    cases = [
        (["batch", tmp_path / "in"], "give IN_DIR and OUT_DIR"),
        (["batch", "--status", tmp_path / "nothing"], "no batch journal here"),
        (["batch", tmp_path / "in", tmp_path / "out", "--include", "*.mkv"], "no videos or images found"),
        (["batch", tmp_path / "in", tmp_path / "out", "--codec", "h999"], "unknown codec 'h999'"),
    ]
    if not torch.cuda.is_available():
        cases.append((["batch", tmp_path / "in", tmp_path / "out", "--devices", "0,1"], "CUDA is not available"))
    for args, message in cases:
        result = vsr(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_two_batches_at_once_on_one_folder_share_the_jobs(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for i in range(4):
        make_clip(source / f"clip{i}.mp4", frames=6)
    command = [*VSR, "batch", source, out, "-m", "bicubic", "-s", "2", "--preset", "ultrafast"]
    first, second = (subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(2))
    for process in (first, second):
        process.communicate(timeout=600)
        assert process.returncode in (0, 1)  # 1: the other batch was still running a job when this one ended
    # Each job was claimed by exactly one of them: done once, on its first attempt.
    assert journal_rows(out) == {f"clip{i}.x2.mp4": ("done", 1) for i in range(4)}
    assert sorted(snapshot(out)) == [f"clip{i}.x2.mp4" for i in range(4)]
    assert all(frame_count(out / f"clip{i}.x2.mp4") == 6 for i in range(4))


def test_a_dry_run_lists_the_jobs_and_what_a_run_would_do(tmp_path):
    source = tmp_path / "in"
    (source / "clips").mkdir(parents=True)
    make_clip(source / "clips" / "a.mp4", frames=3)
    images.write_image(source / "b.png", images.Image(rgb=torch.rand(3, 8, 8)))
    out = tmp_path / "out"
    result = vsr("batch", source, out, "-m", "bicubic", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "new  b.png → b.x4.png", "new  clips/a.mp4 → clips/a.x4.mp4",
        f"2 of 2 jobs to run in {out}; nothing was run or written (--dry-run)"]
    assert not out.exists()


def test_a_dry_run_does_not_count_done_jobs_kept_from_other_options_as_to_run(tmp_path):
    """A done job asked for with other options is kept, not run: the dry run said "1 of 1 jobs to run" of it."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "a.mp4", frames=3)
    vsr("batch", source, out, "-m", "bicubic", "-s", "2", "-q")
    result = vsr("batch", source, out, "-m", "lanczos", "-s", "2", "--dry-run")
    assert result.stdout.splitlines() == [
        "kept: its options changed (--model lanczos, was bicubic) (--overwrite makes it again)  a.mp4 → a.x2.mp4",
        f"0 of 1 jobs to run in {out}; nothing was run or written (--dry-run)"]


def test_options_of_other_commands_or_settings_are_one_line(tmp_path):
    """Options that were silently ignored: --task-cpus without --ray, --workers with it, vsr bench's --frames 0."""
    (tmp_path / "in").mkdir()
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "--task-cpus", "2")
    assert result.returncode == 2 and "--task-cpus sets the CPUs of each Ray task: give --ray too" in result.stderr
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "--workers", "3", "--ray", "auto")
    assert result.returncode == 2 and "--workers starts processes here; with --ray the cluster" in result.stderr
    make_clip(tmp_path / "in" / "a.mp4", frames=2)
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "--ray", "lcoal")  # (made the folder and a journal)
    assert result.returncode == 2 and "--ray lcoal: give local (a cluster started here), auto" in result.stderr
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "--ray", "local", "--task-cpus", "nan")  # (traceback)
    assert result.returncode == 2 and result.stderr.strip() == "vsr: error: --task-cpus must be a number more than " \
        "0, not nan"
    assert not (tmp_path / "out").exists()
    # As many worker processes as jobs at most: -j 10**20 was an OverflowError making their list.
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "-m", "bicubic", "-j", str(10**20))
    assert result.returncode == 0, result.stderr
    result = vsr("bench", "samples/bbb_sample.mp4", "--frames", "0", "-m", "bicubic")
    assert result.returncode == 2 and result.stderr.strip() == "vsr: error: --frames must be 1 or more, not 0"


def test_a_ray_cluster_that_cannot_start_is_one_line(tmp_path):
    """ray.init's failures other than a connection's (a temporary folder that is a file here; a raylet that does
    not register within Ray's 30 s on a loaded machine, a plain Exception) escaped as tracebacks."""
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", frames=2)
    (tmp_path / "not-a-folder").write_text("")
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "-m", "bicubic", "--ray", "local",
                 env={"RAY_TMPDIR": str(tmp_path / "not-a-folder")})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("vsr: error: --ray local: cannot start a Ray cluster "
                                                           "here ([Errno 20] Not a directory")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("cluster", [[], ["--ray", "local"]], ids=["processes", "ray"])
def test_sigterm_hands_the_running_job_back_as_ctrl_c_does(tmp_path, tiny_rrdbnet_checkpoint, cluster):
    """SIGTERM (job schedulers, docker stop) ended the batch without a word: its job stayed "running", the attempt
    counted, and its partial file stayed until the next run. (With Ray, ray.init's own handler exited with 15.)"""
    import signal

    from vsr.pipelines.journal import read_journal

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "long.mp4", frames=300, size=(64, 48))
    process = subprocess.Popen([*VSR, "batch", str(source), str(out), "-m", str(tiny_rrdbnet_checkpoint), "-b", "1",
                                "--segment-seconds", "0", *cluster], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    def running() -> bool:
        try:
            return any(row.state.value == "running" for row in read_journal(out))
        except (InputError, OutputError):  # (not there yet, or its table not yet made)
            return False

    try:
        wait_until(running, "a job running", process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=HANG_SECONDS)
    finally:
        if process.poll() is None:  # (a failed test leaves no batch, nor Ray cluster, at work beside the next tests)
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    assert "vsr: interrupted; finished jobs are kept" in stderr and "Traceback" not in stderr
    (row,) = read_journal(out)
    assert (row.state.value, row.attempts) == ("queued", 0)
    assert not partial_path(out / "long.x4.mp4").exists()


def test_a_ray_cluster_that_goes_away_stops_the_batch_with_its_jobs_kept(tmp_path, tiny_rrdbnet_checkpoint):
    """Its raylet killed, every job left failed at once ("Ray task failed"), each using up an attempt: three outages
    and they gave up, for no fault of theirs."""
    import os
    import signal

    from vsr.pipelines.journal import read_journal

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for name in ("a", "b", "c"):
        make_clip(source / f"{name}.mp4", frames=100, size=(64, 48), options={"g": "5"})
    process = subprocess.Popen([*VSR, "batch", str(source), str(out), "-m", str(tiny_rrdbnet_checkpoint), "-b", "1",
                                "--ray", "local", "--segment-seconds", "0.4"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        # Killed once a segment is done, its cluster at work, however long that takes: the first segment came 9.5 s
        # after the start on a quiet machine, 233 s after it at a load of 14 (the wait of 120 s it had went by).
        wait_until(lambda: any(out.glob(".*.segments/segment-*.json")), "a segment done", process)
        raylets = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and _parent_and_name(
            entry) == (process.pid, "raylet")]
        assert raylets, "no raylet of the batch's own cluster"
        for pid in raylets:
            os.kill(pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=HANG_SECONDS)
    finally:
        if process.poll() is None:  # (a failed test leaves no batch and Ray cluster at work beside the next tests)
            process.kill()
            process.wait()
    assert process.returncode == 1 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("vsr: error: the Ray cluster is gone (")
    assert stderr.strip().endswith("the jobs not done are kept: run the same command again once it is back")
    rows = read_journal(out)
    assert {row.state.value for row in rows} <= {"done", "queued"} and any(row.state.value == "queued" for row in rows)
    assert all(row.attempts == (1 if row.state.value == "done" else 0) for row in rows)


def _parent_and_name(entry: Path) -> tuple[int, str] | None:
    """A process's parent pid and name, from /proc (None where it is gone meanwhile)."""
    try:
        name, rest = entry.joinpath("stat").read_text().split(" (", 1)[1].rsplit(") ", 1)
        return int(rest.split()[1]), name
    except (OSError, ValueError, IndexError):
        return None


def test_a_journal_on_a_full_disk_is_one_line_that_does_not_call_it_damaged(tmp_path):
    """SQLite's "database or disk is full" was a traceback, and its "disk I/O error" on opening was called a damaged
    journal, to be moved away (the batch's record thrown out). The file-size limit fills the disk here."""
    import resource

    source = tmp_path / "in"
    source.mkdir()
    for i in range(6):  # (SQLite's -shm file takes 32 KiB: the journal's writes fill the rest after a few jobs)
        images.write_image(source / f"a{i}.png", images.Image(rgb=torch.rand(3, 12, 20), alpha=None, bit_depth=8,
                                                                  gray=False))
    for limit, out in ((4 << 10, tmp_path / "new"), (32 << 10, tmp_path / "at work")):  # making it, using it
        command = [*VSR, "batch", str(source), str(out), "-m", "bicubic"]
        full = subprocess.run(command, capture_output=True, text=True, preexec_fn=lambda: resource.setrlimit(
            resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)))
        assert full.returncode == 4 and "Traceback" not in full.stderr, full.stderr
        assert full.stderr.strip().splitlines()[-1] == (
            f"vsr: error: {out / JOURNAL_NAME}: cannot read or write the batch journal (disk I/O error): is the disk "
            "full or the folder read-only? It is kept: run the same command again once it can be written")
        assert not [path for path in out.iterdir() if ".new" in path.name]  # (where `_create` made it)
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert [row.state.value for row in read_journal(out)] == ["done"] * 6


def test_an_output_folder_that_cannot_be_written_is_one_line_about_the_folder(tmp_path):
    """A batch into an existing read-only folder was a traceback on a read-only mount (removing the journal's
    temporary file that could not be made), and elsewhere said that a journal was kept, the disk perhaps full: there
    was no journal. /proc takes no file, even from root; the mount is made where the tests may make one."""
    source = tmp_path / "in"
    source.mkdir()
    make_clip(source / "clip.mp4", frames=2)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    cases = [([*VSR, "batch", source, "/proc", "-m", "bicubic"], "/proc", "No such file or directory")]
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0:
        cases.append((["unshare", "--mount", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', read_only,
                       *VSR, "batch", source, read_only, "-m", "bicubic"], read_only, "Read-only file system"))
    for command, folder, reason in cases:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stderr.strip().splitlines()) == (
            OutputError.exit_code, [f"vsr: error: {folder}: cannot write into the output folder ({reason})"])
    assert list(read_only.iterdir()) == []


def test_the_status_after_renaming_the_input_folder_still_waits_for_its_failed_job(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    images.write_image(source / "p.png", images.Image(rgb=torch.rand(3, 8, 8)))
    (source / "broken.png").write_bytes(b"not an image")
    assert vsr("batch", source, out, "-m", "bicubic", "--max-attempts", "1", "-q").returncode == 1
    source.rename(tmp_path / "renamed")
    assert vsr("batch", tmp_path / "renamed", out, "-m", "bicubic", "--max-attempts", "1", "-q").returncode == 1
    status = vsr("batch", "--status", out)
    assert status.returncode == 1  # (0: "its input is gone", the journal still naming the old folder)
    assert "its input is gone" not in status.stdout


def test_a_journal_edited_by_hand_is_one_line(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    images.write_image(source / "p.png", images.Image(rgb=torch.rand(3, 8, 8)))
    assert vsr("batch", source, out, "-m", "bicubic", "-q").returncode == 0
    with sqlite3.connect(out / JOURNAL_NAME) as connection:
        connection.execute("UPDATE jobs SET state = 'Done'")
    connection.close()
    for args in (["--status", out], [source, out, "-m", "bicubic"]):
        result = vsr("batch", *args)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and "not a vsr batch journal, or damaged (the row of 'p.x4.png': " \
            "'Done' is not a valid JobState); move it away" in result.stderr, result.stderr


def test_a_job_killed_midway_and_run_with_other_options_keeps_its_segments_until_overwrite(tmp_path):
    """Its segments were refused by each attempt ("made for other settings ...") until the job gave up, its attempts
    spent: it is kept as a done job with other options is, without an attempt, and --overwrite starts it over."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "long.mp4", frames=96, options={"g": "8", "keyint_min": "8", "sc_threshold": "0"})
    command = ["batch", source, out, "-m", "bicubic", "-s", "2", "--segment-seconds", "0.25", "-b", "1"]
    segments = out / ".long.x2.mp4.segments"
    kill_when(list(map(str, [*VSR, *command])), lambda: any(segments.glob("segment-*.json")), "a segment was kept")
    kept = snapshot(segments)
    count = len([name for name in kept if name.endswith(".json") and name != "plan.json"])
    rows = journal_rows(out)
    # (it said "the next run takes it over", which a run with other options does not: it keeps the segments)
    status = next(line for line in vsr("batch", "--status", out).stdout.splitlines() if "long.x2.mp4" in line)
    assert status.startswith("running") and status.endswith(
        f"its process is gone; {count} segment(s) kept, which a run with its options resumes"), status

    for _ in range(2):  # (once more than an attempt: none is spent)
        rerun = vsr(*command, "--crf", "30", "--max-attempts", "1")
        assert rerun.returncode == 1
        assert (f"long.mp4: its options changed (--crf 30, was not given); the {count} segment(s) of long.x2.mp4 "
                "made so far are kept: run as they were made to resume them, or with --overwrite to start over"
                ) in rerun.stderr, rerun.stderr
        assert "failed" not in rerun.stderr and journal_rows(out) == rows and snapshot(segments) == kept
    dry = vsr(*command, "--crf", "30", "--dry-run")
    assert dry.stdout.splitlines() == [
        f"kept: its options changed (--crf 30, was not given); {count} segment(s) made so far (--overwrite starts it "
        "over)  long.mp4 → long.x2.mp4", f"0 of 1 jobs to run in {out}; nothing was run or written (--dry-run)"]
    as_made = vsr(*command, "--dry-run")  # (its row is left as it was: the options they were made with resume them)
    assert as_made.stdout.splitlines()[0] == "take over: its process is gone  long.mp4 → long.x2.mp4"

    again = vsr(*command, "--crf", "30", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "resuming" not in again.stderr and journal_rows(out) == {"long.x2.mp4": ("done", 1)}
    assert sorted(snapshot(out)) == ["long.x2.mp4"]
    assert ffprobe_frame_pts(out / "long.x2.mp4") == ffprobe_frame_pts(source / "long.mp4")


def test_a_batch_begun_where_auto_chose_another_precision_resumes_with_the_one_it_chose(tmp_path,
                                                                                      tiny_rrdbnet_checkpoint):
    """Begun on a CPU ("auto": bf16 or fp32) and continued on a GPU (fp16 or bf16): the segments kept refuse the GPU's
    choice and ask for the settings they were made with, but `--precision bf16` was an options change to the journal,
    which kept the done jobs ("its options changed", exit 1) and the cut one ("kept: ..."): stuck but for
    --overwrite. The precision is placement, as the decoder is; the folder of segments guards one output's pixels.
    Here the plan is made to say what another machine chose (the other of bf16 and fp32)."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "a.mp4", frames=3)
    make_clip(source / "long.mp4", frames=96, options={"g": "8", "keyint_min": "8", "sc_threshold": "0"})
    command = ["batch", source, out, "-m", tiny_rrdbnet_checkpoint, "--segment-seconds", "0.25", "-b", "1",
               "--preset", "ultrafast"]
    segments = out / ".long.x4.mp4.segments"
    kill_when(list(map(str, [*VSR, *command])), lambda: any(segments.glob("segment-*.json")), "a segment was kept")
    plan = json.loads((segments / "plan.json").read_text())
    elsewhere = "fp32" if plan["resolved"]["precision"] == "bf16" else "bf16"
    (segments / "plan.json").write_text(json.dumps({**plan, "resolved": {**plan["resolved"],
                                                                         "precision": elsewhere}}))
    kept = len(list(segments.glob("segment-*.json")))
    done = snapshot(out)["a.x4.mp4"]

    # ("auto" chooses otherwise here: the segments say so, and what to run). Each refusal cost an attempt: two such
    # runs after the kill gave the job up (--max-attempts 3), and the run as it was made could not resume it.
    for _ in range(2):
        refused = vsr(*command)
        assert refused.returncode == 1
        assert (f"what --precision auto chose on the machine that made them: run as they were made (--precision "
                f"{elsewhere}) to resume them") in refused.stderr, refused.stderr
        assert "long.mp4: not run (no attempt counted): " in refused.stderr
        assert len(list(segments.glob("segment-*.json"))) == kept
        assert journal_rows(out)["long.x4.mp4"] == ("failed", 1)  # (the attempt the kill cut short)

    as_made = [*command, "--precision", elsewhere]
    planned = [" ".join(line.split()) for line in vsr(*as_made, "--dry-run").stdout.splitlines()[:2]]
    assert planned == ["done a.mp4 → a.x4.mp4", "retry (attempt 2) long.mp4 → long.x4.mp4"]
    resumed = vsr(*as_made)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {kept} of 12 segments were upscaled by an earlier run" in resumed.stderr
    assert journal_rows(out) == {"a.x4.mp4": ("done", 1), "long.x4.mp4": ("done", 2)}
    assert snapshot(out)["a.x4.mp4"] == done and sorted(snapshot(out)) == ["a.x4.mp4", "long.x4.mp4"]
    assert ffprobe_frame_pts(out / "long.x4.mp4") == ffprobe_frame_pts(source / "long.mp4")
    again = vsr(*command)  # and "auto" again: every job done, none made again
    assert again.returncode == 0 and "options changed" not in again.stderr, again.stderr
