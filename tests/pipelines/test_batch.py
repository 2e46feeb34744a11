"""Batch jobs through the Python API: discovery, the journal across runs, failure isolation, jobs files, workers.

Real tiny clips (PyAV) and images, the bicubic baseline, outputs judged by ffprobe. The crash (kill -9) test is in
tests/cli/test_batch_cli.py, the Ray test in tests/pipelines/test_ray_batch.py.
"""

import dataclasses
import hashlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tqdm import tqdm

from tests.pipelines.clips import corrupt_middle, make_clip, truncate
from tests.pipelines.media_fixtures import DEV_FULL, ffprobe, ffprobe_frame_pts
from tests.processes import HANG_SECONDS
from vsr import api
from vsr.errors import InputError, ModelError, OptionError, OutputError
from vsr.pipelines import batch, images
from vsr.pipelines.batch_workers import InlineExecutor, JobResult
from vsr.pipelines.encode import partial_path
from vsr.pipelines.journal import (JOURNAL_NAME, NOTE_WIDTH, JobState, Journal, format_table, process_owner,
                                   read_journal, unfinished)

BICUBIC = api.UpscaleOptions(model="bicubic", outscale=2)
FAST = api.VideoOptions(preset="ultrafast")


def snapshot(folder: Path) -> dict:
    """Every file under `folder`: content hash, modification time and inode, to prove nothing was touched."""
    return {
        path.relative_to(folder).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns,
                                              path.stat().st_ino)
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def outputs(folder: Path) -> dict:
    """`snapshot` of an output folder without the journal's files."""
    return {name: state for name, state in snapshot(folder).items() if not name.startswith(JOURNAL_NAME)}


def frame_count(path: Path) -> int:
    return len(ffprobe_frame_pts(path))


def video_size(path: Path) -> tuple[int, int]:
    stream = ffprobe(path)["streams"][0]
    return stream["width"], stream["height"]


def write_image(path: Path, size=(20, 12)) -> Path:
    rng = np.random.default_rng(0)
    rgb = torch.from_numpy(rng.random((3, size[1], size[0]), dtype=np.float32))
    images.write_image(path, images.Image(rgb=rgb))
    return path


@pytest.fixture
def library(tmp_path) -> Path:
    """in/: videos and images in nested folders, plus files a batch must ignore."""
    root = tmp_path / "in"
    (root / "season1" / "extras").mkdir(parents=True)
    (root / "photos").mkdir()
    make_clip(root / "a.mp4", frames=5)
    make_clip(root / "season1" / "b.mkv", frames=4, size=(48, 32))
    make_clip(root / "season1" / "extras" / "c.mov", frames=3)
    write_image(root / "photos" / "p.png")
    write_image(root / "photos" / "q.jpg")
    (root / "notes.txt").write_text("not media")
    make_clip(root / ".hidden.mp4", frames=2)
    return root


def test_a_dry_run_says_what_a_run_would_do_and_writes_nothing(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    make_clip(root / "a.mp4", frames=3)
    write_image(root / "b.png")
    (root / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out"
    jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
    assert batch.plan_batch(jobs, out) == [("a.x2.mp4", "new"), ("b.x2.png", "new"), ("broken.x2.mp4", "new")]
    assert not out.exists()
    with pytest.raises(OutputError, match="not a folder"):
        batch.plan_batch(jobs, root / "a.mp4")  # as the run would fail

    batch.run_batch(jobs, out, max_attempts=1)
    (out / "b.x2.png").unlink()
    write_image(root / "c.png")
    jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
    before = snapshot(out)
    assert batch.plan_batch(jobs, out, max_attempts=1) == [
        ("a.x2.mp4", "done"), ("b.x2.png", "redo: output missing or changed"),
        ("broken.x2.mp4", "gave up after 1 attempts"), ("c.x2.png", "new")]
    assert dict(batch.plan_batch(jobs, out, max_attempts=3))["broken.x2.mp4"] == "retry (attempt 2)"
    sharper = batch.discover(root, out, options=dataclasses.replace(BICUBIC, model="lanczos"), video=FAST)
    assert dict(batch.plan_batch(sharper, out))["a.x2.mp4"] == ("kept: its options changed (--model lanczos, was "
                                                                "bicubic) (--overwrite makes it again)")
    sharper = batch.discover(root, out, options=dataclasses.replace(BICUBIC, model="lanczos"), video=FAST,
                             overwrite=True)
    planned = dict(batch.plan_batch(sharper, out))
    assert planned["a.x2.mp4"] == "redo: its options changed (--model lanczos, was bicubic)"
    assert snapshot(out) == before  # (SQLite's -wal and -shm files too: reading made them, and they are gone)
    assert [state for _, state in batch.plan_batch(jobs, out, max_attempts=1)] == [
        "done", "redo: output missing or changed", "gave up after 1 attempts", "new"]  # and so decided the same
    write_image(out / "c.x2.png")  # in the way, and not in the journal: a new job's run would refuse to replace it
    planned = dict(batch.plan_batch(jobs, out))
    assert planned["c.x2.png"] == "new, but fails: its output exists (--overwrite replaces it)"


def test_a_done_output_is_hashed_again_only_where_its_size_or_time_changed(tmp_path, monkeypatch):
    """Every run hashed every done output whole: hours for a library of films (helper-66)."""
    root = tmp_path / "in"
    root.mkdir()
    write_image(root / "a.png")
    write_image(root / "b.png")
    out = tmp_path / "out"
    jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
    assert batch.run_batch(jobs, out).ok
    hashed = []
    monkeypatch.setattr(batch, "sha256_file", lambda path: hashed.append(path.name) or hashlib.sha256(
        path.read_bytes()).hexdigest())
    assert batch.run_batch(jobs, out).ok and hashed == []  # (as each job finished, its output's size and time)
    os.utime(out / "a.x2.png", ns=(1, 1))  # touched: hashed again, the same bytes, still done
    write_image(out / "b.x2.png", size=(8, 8))  # another picture: hashed again, and redone
    report = batch.run_batch(jobs, out)
    assert report.ok and sorted(hashed) == ["a.x2.png", "b.x2.png"]
    hashed.clear()
    assert batch.run_batch(jobs, out).ok and hashed == []


def test_a_file_of_the_users_stays_until_overwrite_however_often_the_job_is_retried(tmp_path):
    """A job that failed because a file was in its output's place has no claim on that file: its retries fail too,
    and only --overwrite replaces it. An output the batch made is its own to replace (damaged: redone)."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "p.png")
    out.mkdir()
    (out / "p.x2.png").write_bytes(b"the user's own")
    for attempt in (1, 2):
        jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
        if attempt == 2:
            assert batch.plan_batch(jobs, out) == [("p.x2.png", "retry (attempt 2), but fails: its output exists and "
                                                    "is not one this batch made (--overwrite replaces it)")]
        report = batch.run_batch(jobs, out)
        assert report.rows[0].state is JobState.FAILED and "already exists" in report.rows[0].error
        assert (out / "p.x2.png").read_bytes() == b"the user's own"
    # Its input changed: redone, and failing the same way, which --dry-run said of retries only (helper-50).
    write_image(root / "p.png", size=(24, 16))
    assert batch.plan_batch(batch.discover(root, out, options=BICUBIC, video=FAST), out) == [
        ("p.x2.png", "redo: its input changed, but fails: its output exists and is not one this batch made "
                     "(--overwrite replaces it)")]
    batch.run_batch(batch.discover(root, out, options=BICUBIC, video=FAST, overwrite=True), out)
    made = (out / "p.x2.png").read_bytes()
    assert made != b"the user's own"
    (out / "p.x2.png").write_bytes(b"damaged")
    assert batch.run_batch(batch.discover(root, out, options=BICUBIC, video=FAST), out).rows[0].state is JobState.DONE
    assert (out / "p.x2.png").read_bytes() == made


def test_an_image_whose_name_holds_a_printf_number_is_a_file_like_any_other(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "take 50%05d.png")
    report = batch.run_batch(batch.discover(root, out, options=BICUBIC, video=FAST), out)
    assert report.rows[0].state is JobState.DONE and (out / "take 50%05d.x2.png").is_file()


def test_a_name_that_is_not_utf8_is_skipped_or_one_line_not_a_traceback(tmp_path, caplog, monkeypatch):
    """One Latin-1 name in the input folder (Python reads its bytes with surrogate escapes) stopped every run, and
    --dry-run, with a UnicodeEncodeError from the journal (SQLite's text is UTF-8); so did an input folder of such a
    name, and a job's error naming an output folder of one."""
    # vsr's log lines name those files: kept out of pytest's report of the test, which pytest-xdist cannot send
    # with surrogates in it (an INTERNALERROR that stops the whole run).
    vsr_log = logging.getLogger("vsr")
    monkeypatch.setattr(vsr_log, "propagate", False)
    monkeypatch.setattr(vsr_log, "handlers", [caplog.handler])
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    latin1 = root / os.fsdecode(b"caf\xe9.png")
    try:
        write_image(latin1)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes UTF-8 names only")
    write_image(root / "plain.png")
    inputs = snapshot(root)
    jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
    assert [job.name for job in jobs] == ["plain.x2.png"]
    assert f"{latin1}: the name is not UTF-8, which the journal cannot record; skipped (rename it)" in caplog.text
    assert batch.plan_batch(jobs, out) == [("plain.x2.png", "new")]
    assert batch.run_batch(jobs, out).ok
    # The input folder's own name, found or in a jobs file's folder.
    folder = root.rename(tmp_path / os.fsdecode(b"vid\xe9os"))
    with pytest.raises(InputError, match="the folder's path is not UTF-8, which the journal cannot record"):
        batch.discover(folder, out, options=BICUBIC, video=FAST)
    (folder / "jobs.toml").write_text('[[job]]\ninput = "plain.png"\n')
    with pytest.raises(OptionError, match="job 1: the input's path .* is not UTF-8"):
        batch.load_jobs_file(folder / "jobs.toml", out)
    (folder / "jobs.toml").unlink()
    # An output folder of such a name: the error of a job names it, and is recorded.
    folder.rename(root)
    out = tmp_path / os.fsdecode(b"sorti\xe9")
    out.mkdir()
    (out / "plain.x2.png").write_bytes(b"the user's")
    report = batch.run_batch(batch.discover(root, out, options=BICUBIC, video=FAST), out, max_attempts=1)
    assert report.rows[0].state is JobState.FAILED
    assert report.rows[0].error == (f"{tmp_path}/sorti\ufffd/plain.x2.png: already exists (use --overwrite to "
                                    "replace it)")
    assert (out / "plain.x2.png").read_bytes() == b"the user's"
    assert snapshot(root) == inputs


def test_a_file_or_folder_in_the_journals_place_is_one_line(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    write_image(root / "p.png")
    for name, make in (("text", lambda path: path.write_text("not a database")), ("folder", Path.mkdir)):
        out = tmp_path / name
        out.mkdir()
        make(out / JOURNAL_NAME)
        jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
        calls = [lambda: batch.run_batch(jobs, out), lambda: batch.plan_batch(jobs, out)]
        if name == "text":
            calls.append(lambda: read_journal(out))
        for call in calls:
            with pytest.raises(OutputError, match=f"{JOURNAL_NAME}: not a vsr batch journal, or damaged"):
                call()
        assert not (out / "p.x2.png").exists()


@pytest.mark.parametrize("edit", [
    "UPDATE jobs SET state = 'Done' WHERE name = ?",
    "UPDATE jobs SET options = '{bad' WHERE name = ?",
    "UPDATE jobs SET options = '[]' WHERE name = ?",
    "UPDATE jobs SET seconds = 'abc' WHERE name = ?",
    "ALTER TABLE jobs DROP COLUMN frames",
], ids=["state", "options", "options not a table", "seconds", "a column dropped"])
def test_a_journal_edited_by_hand_is_one_line(tmp_path, edit):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "p.png")
    jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
    assert batch.run_batch(jobs, out).ok
    with sqlite3.connect(out / JOURNAL_NAME) as connection:
        connection.execute(edit, ("p.x2.png",) if "?" in edit else ())
    connection.close()
    for call in (lambda: batch.run_batch(jobs, out), lambda: batch.plan_batch(jobs, out), lambda: read_journal(out)):
        with pytest.raises(OutputError, match=f"{JOURNAL_NAME}: not a vsr batch journal, or damaged .*move it away"):
            call()


@pytest.mark.parametrize("kind", ["its own jobs table", "no jobs table", "empty"])
def test_another_database_or_an_empty_file_in_the_journals_place_is_one_line_and_left_as_it_was(tmp_path, kind):
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "p.png")
    out.mkdir()
    path = out / JOURNAL_NAME
    table = {"its own jobs table": "jobs", "no jobs table": "photos"}.get(kind)
    if table is None:
        path.write_bytes(b"")  # (a run took it for a new journal; then every done job failed on "already exists")
    else:
        with sqlite3.connect(path) as connection:
            connection.execute(f"CREATE TABLE {table} (name TEXT, x INTEGER)")
            connection.execute(f"INSERT INTO {table} VALUES ('p.x2.png', 1)")
        connection.close()
    before = snapshot(out)
    jobs = batch.discover(root, out, options=BICUBIC, video=FAST)
    for call in (lambda: batch.run_batch(jobs, out), lambda: batch.plan_batch(jobs, out), lambda: read_journal(out)):
        with pytest.raises(OutputError, match=f"{JOURNAL_NAME}: not a vsr batch journal, or damaged"):
            call()
        assert snapshot(out) == before  # not a table added, nor WAL mode, nor a version number: no -wal file either


def test_links_to_folders_and_to_nothing_are_said_and_left_out(tmp_path, caplog, monkeypatch):
    """Links to folders are not followed (as fd and ripgrep do), and a link to nothing would fail on every run; a
    named pipe or a folder too deep is skipped too."""
    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    write_image(root / "real" / "p.png")
    (root / "linked").symlink_to(root / "real")
    (root / "q.png").symlink_to(root / "real" / "p.png")
    (root / "gone.png").symlink_to(root / "nowhere.png")
    os.mkfifo(root / "pipe.mp4")  # read for its fingerprint, it held the batch for ever
    monkeypatch.chdir(root)
    for _ in range(21):  # folders past PATH_MAX (4096 bytes): a traceback, "File name too long"
        os.mkdir("d" * 200)  # (one level at a time: mkdir takes no path that long)
        os.chdir("d" * 200)
    jobs = batch.discover(root, tmp_path / "out", options=BICUBIC, video=FAST)
    assert [job.name for job in jobs] == ["q.x2.png", "real/p.x2.png"]
    assert f"{root / 'linked'}: a link to a folder, not followed" in caplog.text
    assert f"{root / 'gone.png'}: a link to {root / 'nowhere.png'}, which does not exist; skipped" in caplog.text
    assert f"{root / 'pipe.mp4'}: not a regular file; skipped" in caplog.text
    assert "File name too long); skipped" in caplog.text


def test_reading_the_journal_leaves_no_side_files_but_those_of_a_batch_that_has_it_open(tmp_path):
    """`vsr batch --status` and `--dry-run` read the journal read-only, which makes SQLite's -wal and -shm files."""
    def add_job(journal, name):
        journal.connection.execute("INSERT INTO jobs (name, source, kind, options, state, fingerprint) "
                                   "VALUES (?, 'in.png', 'image', '{}', 'queued', '')", (name,))

    def files():
        return sorted(path.name for path in tmp_path.iterdir())

    with Journal.open(tmp_path / JOURNAL_NAME) as journal:
        add_job(journal, "a.x2.png")
    assert files() == [JOURNAL_NAME]
    assert [row.name for row in read_journal(tmp_path)] == ["a.x2.png"]
    with Journal.in_memory_copy(tmp_path / JOURNAL_NAME) as copy:
        assert [row["name"] for row in copy.connection.execute("SELECT name FROM jobs")] == ["a.x2.png"]
    assert files() == [JOURNAL_NAME]
    with Journal.open(tmp_path / JOURNAL_NAME) as running:  # a batch at work: its files stay, and its rows are read
        add_job(running, "b.x2.png")
        assert [row.name for row in read_journal(tmp_path)] == ["a.x2.png", "b.x2.png"]
        assert files() == [JOURNAL_NAME, JOURNAL_NAME + "-shm", JOURNAL_NAME + "-wal"]
    assert files() == [JOURNAL_NAME]


def test_an_outscale_or_a_size_names_the_outputs_without_fetching_the_model(tmp_path):
    """The model's scale was read for the names even where --outscale sets them: `--dry-run -m URL` downloaded it."""
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "clip.mp4", frames=2)
    nowhere = "http://127.0.0.1:9/model.pth"  # (the discard port: a download fails at once)
    for options, name in ((api.UpscaleOptions(model=nowhere, outscale=2), "clip.x2.mp4"),
                          (api.UpscaleOptions(model=nowhere, height=720), "clip.720p.mp4")):
        jobs = batch.discover(tmp_path / "in", tmp_path / "out", options=options, video=FAST)
        assert [job.name for job in jobs] == [name]
        # (nor for the journal, which records an --outscale of the model's own scale as none where it is known)
        assert batch.plan_batch(jobs, tmp_path / "out") == [(name, "new")]
    with pytest.raises(ModelError, match="127.0.0.1:9"):  # (the model's own scale names it: fetched)
        batch.discover(tmp_path / "in", tmp_path / "out", options=api.UpscaleOptions(model=nowhere), video=FAST)


def test_a_webm_is_named_mkv_unless_its_codec_fits_webm(tmp_path):
    source = tmp_path / "in" / "clip.webm"
    source.parent.mkdir()
    source.write_bytes(b"")  # discovery reads names only

    def named(codec):
        video = api.VideoOptions(codec=codec)
        return [job.name for job in batch.discover(source.parent, tmp_path / "out", options=BICUBIC, video=video)]

    assert named("libx264") == ["clip.x2.mkv"]  # as `vsr upscale` names it: H.264 cannot go in .webm
    assert named("libvpx-vp9") == ["clip.x2.webm"]


def rows_by_name(out_dir: Path) -> dict:
    return {row.name: row for row in read_journal(out_dir)}


def test_discover_mirrors_folders_names_like_upscale_and_filters(library, tmp_path):
    out = tmp_path / "out"
    everything = ["a.x2.mp4", "photos/p.x2.png", "photos/q.x2.jpg", "season1/b.x2.mkv", "season1/extras/c.x2.mov"]
    jobs = batch.discover(library, out, options=BICUBIC, video=FAST)
    assert [job.name for job in jobs] == everything
    assert {job.kind for job in jobs if job.name.startswith("photos/")} == {"image"}
    assert jobs[0].output == out.absolute() / "a.x2.mp4"
    four = batch.discover(library, out, options=api.UpscaleOptions(model="bicubic"), video=FAST)
    assert four[0].name == "a.x4.mp4"  # the model's own scale, as `vsr upscale` names it

    def names(**filters):
        return [job.name for job in batch.discover(library, out, options=BICUBIC, video=FAST, **filters)]

    assert names(include=["*.mkv", "*.mov"]) == ["season1/b.x2.mkv", "season1/extras/c.x2.mov"]
    assert names(exclude=["season1/*", "q.jpg"]) == ["a.x2.mp4", "photos/p.x2.png"]
    assert names(include=["season1/*"], exclude=["*/extras/*"]) == ["season1/b.x2.mkv"]
    (library / "CLIP0001.MP4").write_bytes((library / "a.mp4").read_bytes())  # as cameras name them
    assert names(include=["*.mp4"]) == ["CLIP0001.x2.MP4", "a.x2.mp4"]  # smart case: lower case matches any
    assert names(include=["*.MP4"]) == ["CLIP0001.x2.MP4"]
    assert names(exclude=["clip*"]) == everything
    (library / "CLIP0001.MP4").unlink()
    # An output folder inside the input folder is not searched: outputs never become inputs.
    inner = library / "upscaled"
    inner.mkdir()
    make_clip(inner / "a.x2.mp4", frames=2)
    assert [job.name for job in batch.discover(library, inner, options=BICUBIC, video=FAST)] == everything
    with pytest.raises(OptionError, match="must not be the input folder"):
        batch.discover(library, library, options=BICUBIC, video=FAST)
    with pytest.raises(InputError, match="not a folder"):
        batch.discover(tmp_path / "missing", out, options=BICUBIC, video=FAST)
    # A file: the command for it is named (it said only "not a folder").
    one = make_clip(tmp_path / "one.mp4", frames=2)
    with pytest.raises(InputError, match=f"^{re.escape(str(one))}: not a folder; .* "
                                         f"`{re.escape(f'vsr upscale {one} -o {out}/')}` upscales one file$"):
        batch.discover(one, out, options=BICUBIC, video=FAST)


def test_a_batch_upscales_videos_and_images_once_and_never_touches_the_inputs(library, tmp_path):
    out = tmp_path / "out"
    before = snapshot(library)
    jobs = batch.discover(library, out, options=BICUBIC, video=FAST)
    report = batch.run_batch(jobs, out)
    assert report.ok and report.count(JobState.DONE) == 5
    for job in jobs:
        if job.kind == "video":
            assert frame_count(job.output) == frame_count(job.source)
            width, height = video_size(job.source)
            assert video_size(job.output) == (2 * width, 2 * height)
        else:
            assert images.read_image(job.output).rgb.shape == (3, 24, 40)
    rows = rows_by_name(out)
    assert all(row.attempts == 1 and row.checksum == hashlib.sha256((out / name).read_bytes()).hexdigest()
               for name, row in rows.items())
    assert snapshot(library) == before
    written = outputs(out)

    again = batch.run_batch(batch.discover(library, out, options=BICUBIC, video=FAST), out)
    assert again.ok
    assert outputs(out) == written  # same bytes, same modification times, same inodes: nothing redone
    assert {name: row.attempts for name, row in rows_by_name(out).items()} == {name: 1 for name in rows}
    assert snapshot(library) == before


def test_a_corrupt_input_fails_alone_with_its_reason_and_is_retried_up_to_the_limit(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    make_clip(source / "good1.mp4", frames=4)
    make_clip(source / "good2.mkv", frames=4)
    truncate(make_clip(tmp_path / "whole.mp4", frames=20), source / "cut.mp4")
    (source / "text.mp4").write_text("this is not a video\n" * 20)
    out = tmp_path / "out"
    jobs = batch.discover(source, out, options=BICUBIC, video=FAST)

    report = batch.run_batch(jobs, out, max_attempts=2)
    assert not report.ok
    rows = rows_by_name(out)
    assert {name: row.state for name, row in rows.items()} == {
        "cut.x2.mp4": JobState.FAILED, "good1.x2.mp4": JobState.DONE, "good2.x2.mkv": JobState.DONE,
        "text.x2.mp4": JobState.FAILED,
    }
    for name, file_name in (("cut.x2.mp4", "cut.mp4"), ("text.x2.mp4", "text.mp4")):
        assert file_name in rows[name].error and "\n" not in rows[name].error
        assert not (out / name).exists()
    done = outputs(out)

    batch.run_batch(jobs, out, max_attempts=2)  # retried once more...
    batch.run_batch(jobs, out, max_attempts=2)  # ...then given up on
    rows = rows_by_name(out)
    assert [rows[name].attempts for name in sorted(rows)] == [2, 1, 1, 2]
    assert outputs(out) == done


def damaged_inputs(folder: Path) -> Path:
    """`folder` with a clean clip, a Matroska file cut short (a download stopped halfway: 19 of 50 frames) and an MP4
    with bytes overwritten in its middle (2 of 60 frames undecodable): each damaged one is upscaled, with warnings."""
    folder.mkdir()
    make_clip(folder / "clean.mp4", frames=4)
    truncate(make_clip(folder.parent / "whole.mkv", frames=50, size=(160, 96)), folder / "cut.mkv", keep=0.5)
    corrupt_middle(make_clip(folder.parent / "whole.mp4", frames=60, size=(160, 96)), folder / "damaged.mp4",
                   length=300)
    return folder


@pytest.mark.parametrize("workers", [1, 2])
def test_what_a_damaged_inputs_run_warned_of_is_kept_and_a_clean_redo_clears_it(tmp_path, workers):
    """A source with damage was upscaled with a warning line and recorded plainly "done": once the terminal scrolled,
    nothing said which sources of an archive were damaged. In this process and in worker processes (whose warnings
    come back in their JobResult), the decoder's thread's warnings too."""
    source, out = damaged_inputs(tmp_path / "in"), tmp_path / "out"
    jobs = batch.discover(source, out, options=BICUBIC, video=FAST)
    report = batch.run_batch(jobs, out, workers=workers)
    assert report.ok  # (done: warnings are no failure)
    rows = rows_by_name(out)
    assert (rows["clean.x2.mp4"].warnings, rows["clean.x2.mp4"].warning_count) == ((), 0)
    cut = rows["cut.x2.mkv"]
    assert cut.warning_count == 1 and cut.warnings[0].startswith(f"{source / 'cut.mkv'}: cut short: it holds ")
    assert f"; {cut.frames} frames decoded" in cut.warnings[0]
    damaged = rows["damaged.x2.mp4"]
    assert damaged.warning_count == len(damaged.warnings) >= 2
    assert any("could not be decoded and are missing" in text for text in damaged.warnings)
    assert any("decoding error near" in text for text in damaged.warnings)
    assert report.warned == ["cut.x2.mkv", "damaged.x2.mp4"]
    assert "; 2 with warnings: cut.x2.mkv, damaged.x2.mp4 (vsr batch --status says of what); journal" \
        in report.summary()
    lines = {line.split()[4]: line for line in format_table(read_journal(out), out).splitlines()[1:-1]}
    assert lines["clean.x2.mp4"].endswith("clean.x2.mp4")
    assert lines["cut.x2.mkv"].split("cut.x2.mkv", 1)[1].lstrip().startswith("1 warning: cut short: it holds ")
    assert str(source) not in lines["cut.x2.mkv"]  # (the row names the job)
    assert f"  {damaged.warning_count} warnings: " in lines["damaged.x2.mp4"]
    assert max(len(line.split("  ")[-1]) for line in lines.values()) <= NOTE_WIDTH

    make_clip(source / "cut.mkv", frames=6)  # a whole copy in its place: its redo says nothing
    report = batch.run_batch(jobs, out, workers=workers)
    cut = rows_by_name(out)["cut.x2.mkv"]
    assert cut.state is JobState.DONE and cut.frames == 6 and (cut.warnings, cut.warning_count) == ((), 0)
    assert report.warned == ["damaged.x2.mp4"] and "; 1 with warnings: damaged.x2.mp4 (" in report.summary()


def test_an_earlier_vsrs_journal_takes_warnings_and_a_job_it_finished_shows_none_of_before(tmp_path):
    """The warnings are a table of their own, added to a journal of an earlier vsr (which opens it still); a job that
    an earlier vsr finished again since shows no warnings of an attempt before that."""
    source, out = damaged_inputs(tmp_path / "in"), tmp_path / "out"
    jobs = [job for job in batch.discover(source, out, options=BICUBIC, video=FAST) if job.name == "cut.x2.mkv"]
    assert batch.run_batch(jobs, out).ok
    with sqlite3.connect(out / JOURNAL_NAME) as connection:
        connection.execute("DROP TABLE warnings")  # as an earlier vsr left it
    assert rows_by_name(out)["cut.x2.mkv"].state is JobState.DONE  # read-only (--status): as it was
    (out / "cut.x2.mkv").unlink()
    assert batch.run_batch(jobs, out).ok  # redone, its warnings recorded in the table added
    assert rows_by_name(out)["cut.x2.mkv"].warning_count == 1
    with sqlite3.connect(out / JOURNAL_NAME) as connection:  # an earlier vsr redid it (writing no warnings)
        connection.execute("UPDATE jobs SET finished_at = finished_at + 1")
    assert rows_by_name(out)["cut.x2.mkv"].warning_count == 0


def test_a_damaged_or_missing_output_and_a_changed_input_are_redone(tmp_path, caplog):
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a", "b", "c"):
        make_clip(source / f"{name}.mp4", frames=3)
    out = tmp_path / "out"

    def run():
        return batch.run_batch(batch.discover(source, out, options=BICUBIC, video=FAST), out)

    assert run().ok
    (out / "a.x2.mp4").write_bytes((out / "a.x2.mp4").read_bytes()[:-10])  # damaged
    (out / "b.x2.mp4").unlink()  # missing
    make_clip(source / "c.mp4", frames=6)  # another video under the same name
    assert run().ok
    assert "c.mp4: its input changed since c.x2.mp4 was made; making it again" in caplog.text
    rows = rows_by_name(out)
    # Each counts its tries afresh (the earlier one succeeded: a later failure must not give up sooner); c: a new job.
    assert [rows[name].attempts for name in ("a.x2.mp4", "b.x2.mp4", "c.x2.mp4")] == [1, 1, 1]
    assert frame_count(out / "a.x2.mp4") == 3 and frame_count(out / "b.x2.mp4") == 3
    assert frame_count(out / "c.x2.mp4") == 6
    for name, row in rows.items():
        assert row.checksum == hashlib.sha256((out / name).read_bytes()).hexdigest()


def test_a_checkpoint_rewritten_in_place_redoes_its_jobs(tmp_path, tiny_rrdbnet_checkpoint, monkeypatch):
    """The journal records a checkpoint as the file it is, as `vsr upscale`'s segments do: the same name with other
    weights is another model, and the same file named from another folder the same one."""
    from vsr.models.checkpoint import save_model
    from vsr.models.detect import spec_for
    from vsr.models.rrdbnet import RRDBNet

    root, out, models = tmp_path / "in", tmp_path / "out", tmp_path / "models"
    root.mkdir()
    models.mkdir()
    write_image(root / "p.png")
    (models / "m.pth").write_bytes(Path(tiny_rrdbnet_checkpoint).read_bytes())

    def run(model):
        options = api.UpscaleOptions(model=model)
        return batch.run_batch(batch.discover(root, out, options=options, video=FAST), out)

    monkeypatch.chdir(models)
    assert run("m.pth").ok
    made = (out / "p.x4.png").stat().st_ino  # a job that runs again replaces its output: a new inode
    monkeypatch.chdir(tmp_path)
    assert run("models/m.pth").ok and (out / "p.x4.png").stat().st_ino == made  # the same file: done
    torch.manual_seed(1)
    hyperparameters = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    other, _ = save_model(RRDBNet(**hyperparameters), spec_for("RRDBNet", hyperparameters), tmp_path / "other")
    (models / "m.pth").write_bytes(Path(other).read_bytes())  # a training run went on
    jobs = batch.discover(root, out, options=api.UpscaleOptions(model="models/m.pth"), video=FAST)
    assert batch.plan_batch(jobs, out) == [("p.x4.png", "kept: its options changed (--model "
                                                        f"{models / 'm.pth'}, its file changed since) (--overwrite "
                                                        "makes it again)")]
    assert not run("models/m.pth").ok and (out / "p.x4.png").stat().st_ino == made
    jobs = batch.discover(root, out, options=api.UpscaleOptions(model="models/m.pth"), video=FAST, overwrite=True)
    assert batch.run_batch(jobs, out).ok and (out / "p.x4.png").stat().st_ino != made
    # A zoo name is recorded as it was, so that journals of an earlier vsr keep their done jobs.
    (job,) = batch.discover(root, out, options=BICUBIC, video=FAST)
    assert batch.journal_entry(job).options["model"] == "bicubic"


def test_a_journal_of_an_earlier_vsr_that_named_a_checkpoint_by_its_path_keeps_its_done_jobs(
        tmp_path, tiny_rrdbnet_checkpoint, monkeypatch):
    """An earlier vsr recorded `-m models/m.pth` as that text: every done job was redone (helper-72)."""
    root, out, models = tmp_path / "in", tmp_path / "out", tmp_path / "models"
    root.mkdir()
    models.mkdir()
    write_image(root / "p.png")
    (models / "m.pth").write_bytes(Path(tiny_rrdbnet_checkpoint).read_bytes())
    monkeypatch.chdir(tmp_path)
    jobs = batch.discover(root, out, options=api.UpscaleOptions(model="models/m.pth"), video=FAST)
    assert batch.run_batch(jobs, out).ok
    with sqlite3.connect(out / JOURNAL_NAME) as connection:  # as an earlier vsr wrote it
        (options,) = connection.execute("SELECT options FROM jobs").fetchone()
        connection.execute("UPDATE jobs SET options = ?", (json.dumps({**json.loads(options),
                                                                          "model": "models/m.pth"}),))
    assert batch.plan_batch(jobs, out) == [("p.x4.png", "done")]
    os.utime(models / "m.pth", ns=(time.time_ns() + 10**9,) * 2)  # changed since the job was done: made again
    assert batch.plan_batch(jobs, out) == [("p.x4.png", f"kept: its options changed (--model {models / 'm.pth'}, "
                                                        "was models/m.pth) (--overwrite makes it again)")]


@pytest.mark.parametrize("first, then", [(None, 4.0), (4.0, None)])
def test_an_outscale_of_the_models_own_scale_keeps_the_done_jobs(tmp_path, tiny_rrdbnet_checkpoint, monkeypatch,
                                                                 first, then):
    """-s 4 with a ×4 model makes what no -s makes, under the same names: it was an options change to the journal
    ("kept: its options changed (--outscale 4.0, was not given)", exit 1), though the segments took it as none. The
    model's scale is known from the checkpoint, loaded once for every job of the batch."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "p.png")
    write_image(root / "q.png")

    def jobs(outscale):
        options = api.UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), outscale=outscale)
        return batch.discover(root, out, options=options, video=FAST)

    assert batch.run_batch(jobs(first), out).ok
    made = outputs(out)
    loads = []
    load_model = batch.api.load_model
    monkeypatch.setattr(batch.api, "load_model", lambda *args, **kwargs: loads.append(args) or load_model(*args,
                                                                                                          **kwargs))
    batch._model_scale.cache_clear()
    assert batch.plan_batch(jobs(then), out) == [("p.x4.png", "done"), ("q.x4.png", "done")]
    assert len(loads) == 1
    assert batch.run_batch(jobs(then), out).ok and outputs(out) == made
    assert batch.plan_batch(jobs(2.0), out)[0] == ("p.x2.png", "new")  # (another scale: another name)
    with sqlite3.connect(out / JOURNAL_NAME) as connection:  # as an earlier vsr recorded `-s 4`
        connection.execute("UPDATE jobs SET options = json_set(options, '$.outscale', 4.0)")
    connection.close()
    assert batch.plan_batch(jobs(None), out) == batch.plan_batch(jobs(4.0), out) == [("p.x4.png", "done"),
                                                                                      ("q.x4.png", "done")]
    assert batch.run_batch(jobs(None), out).ok and outputs(out) == made


def test_the_precision_is_placement_and_an_earlier_vsrs_rows_that_recorded_it_stay_done(tmp_path, monkeypatch):
    """A batch begun on a CPU ("auto": bf16 or fp32) and run on a GPU with the precision its segments were made in
    (which they ask for) kept every done job as "its options changed (--precision bf16, was auto)", exit 1. Speed,
    as the decoder: done jobs stay done; the journal of an earlier vsr recorded it, and its jobs stay done too."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "p.png")
    make_clip(root / "a.mp4", frames=2)

    def jobs(precision):
        return batch.discover(root, out, options=dataclasses.replace(BICUBIC, precision=precision), video=FAST)

    assert batch.run_batch(jobs("auto"), out).ok
    made = outputs(out)
    assert batch.run_batch(jobs("fp32"), out).ok and outputs(out) == made
    assert "precision" not in batch.journal_entry(jobs("fp32")[0]).options
    with sqlite3.connect(out / JOURNAL_NAME) as connection:  # as an earlier vsr wrote it
        connection.execute("UPDATE jobs SET options = json_set(options, '$.precision', 'auto')")
    connection.close()
    assert batch.plan_batch(jobs("bf16"), out) == [("a.x2.mp4", "done"), ("p.x2.png", "done")]
    assert batch.run_batch(jobs("bf16"), out).ok and outputs(out) == made
    sharper = batch.discover(root, out, options=dataclasses.replace(BICUBIC, model="lanczos"), video=FAST)
    assert batch.plan_batch(sharper, out)[0] == ("a.x2.mp4", "kept: its options changed (--model lanczos, was "
                                                             "bicubic) (--overwrite makes it again)")


def test_a_job_another_batch_changed_meanwhile_is_not_made_with_the_old_options(tmp_path, caplog):
    """Two batches with other options on one folder: the second one's sync gave a queued job its options, then the
    first claimed it and made it with its own, recorded done with the second one's."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "p.png")
    out.mkdir()
    (job,) = batch.discover(root, out, options=BICUBIC, video=FAST)
    (sharper,) = batch.discover(root, out, options=dataclasses.replace(BICUBIC, model="lanczos"), video=FAST)
    entry = batch.journal_entry(job)
    with Journal.open(out / JOURNAL_NAME) as first, Journal.open(out / JOURNAL_NAME) as second:
        first.sync([entry], max_attempts=3)
        second.sync([batch.journal_entry(sharper)], max_attempts=3)  # before the first claims it
        assert batch._drive(first, InlineExecutor(), [job], {job.name: entry}, unseen_bar([job])) == [job.name]
    assert "p.png: another `vsr batch` changed it to its own options or input meanwhile; not made" in caplog.text
    assert not (out / "p.x2.png").exists()
    row = rows_by_name(out)["p.x2.png"]
    assert row.state is JobState.QUEUED and row.attempts == 0 and row.options["model"] == "lanczos"
    assert batch.run_batch([sharper], out).ok


def test_an_output_made_from_another_input_is_left_until_overwrite(tmp_path, caplog):
    """Two cameras' folders into one output folder, both with a CLIP0001: the second batch replaced the first's
    output. A renamed folder is the same input (its fingerprint), and --status then finds its failed job's input."""
    cam1, cam2, out = tmp_path / "cam1", tmp_path / "cam2", tmp_path / "out"
    cam1.mkdir()
    cam2.mkdir()
    write_image(cam1 / "CLIP0001.png")
    write_image(cam2 / "CLIP0001.png", size=(24, 16))
    (cam1 / "CLIP0002.png").write_bytes(b"not an image")

    def run(folder, overwrite=False):
        return batch.run_batch(batch.discover(folder, out, options=BICUBIC, video=FAST, overwrite=overwrite), out,
                               max_attempts=1)

    assert not run(cam1).ok  # (CLIP0002 failed)
    made = outputs(out)
    jobs = batch.discover(cam2, out, options=BICUBIC, video=FAST)
    assert batch.plan_batch(jobs, out) == [
        ("CLIP0001.x2.png", f"refused: its output was made from {cam1 / 'CLIP0001.png'} (--overwrite replaces it)")]
    report = run(cam2)
    assert not report.ok and report.skipped == ["CLIP0001.x2.png"] and report.rows == []
    assert "batch: 1 skipped (of 1)" in report.summary()
    assert (f"CLIP0001.png: CLIP0001.x2.png was made from {cam1 / 'CLIP0001.png'}, not from "
            f"{cam2 / 'CLIP0001.png'}; left as it is (--overwrite replaces it)") in caplog.text
    assert outputs(out) == made
    # The first folder, renamed: the same jobs, nothing redone, and its failed job's input is found.
    cam1.rename(tmp_path / "camera1")
    assert [row.state for row in run(tmp_path / "camera1").rows] == [JobState.DONE, JobState.FAILED]
    assert outputs(out) == made
    rows = read_journal(out)
    assert [row.name for row in unfinished(rows)] == ["CLIP0002.x2.png"]  # (--status exits 1)
    assert "its input is gone" not in format_table(rows, out)
    assert run(cam2, overwrite=True).rows[0].state is JobState.DONE
    assert outputs(out)["CLIP0001.x2.png"] != made["CLIP0001.x2.png"]


def test_an_option_added_later_leaves_earlier_jobs_done_at_its_default(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    make_clip(source / "a.mp4", frames=3)
    out = tmp_path / "out"
    (job,) = batch.discover(source, out, options=BICUBIC, video=FAST)
    assert batch.run_batch([job], out).ok
    # As an earlier vsr recorded the job: the deinterlace option did not exist yet.
    with sqlite3.connect(out / JOURNAL_NAME) as connection:
        (options,) = connection.execute("SELECT options FROM jobs").fetchone()
        assert "deinterlace" not in json.loads(options)
    written = (out / "a.x2.mp4").stat().st_ino  # a job that runs again replaces its output: a new inode
    assert batch.run_batch([job], out).ok and (out / "a.x2.mp4").stat().st_ino == written  # still done
    off = dataclasses.replace(job, video=dataclasses.replace(job.video, deinterlace="off"))
    assert not batch.run_batch([off], out).ok and (out / "a.x2.mp4").stat().st_ino == written  # kept, as made
    off = dataclasses.replace(off, overwrite=True)
    assert batch.run_batch([off], out).ok and (out / "a.x2.mp4").stat().st_ino != written  # a new job: redone


def test_a_job_left_running_by_a_dead_process_is_taken_over_and_a_live_ones_is_left(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    make_clip(source / "dead.mp4", frames=3)
    make_clip(source / "live.mp4", frames=3)
    out = tmp_path / "out"
    jobs = batch.discover(source, out, options=BICUBIC, video=FAST)
    out.mkdir()
    with Journal.open(out / JOURNAL_NAME) as journal:
        journal.sync([batch.journal_entry(job) for job in jobs], max_attempts=3)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    # (alive until killed below, however long the batch takes on a loaded machine: 60 s assumed a quiet one)
    sleeper = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({HANG_SECONDS})"])
    try:
        with sqlite3.connect(out / JOURNAL_NAME) as connection:
            for name, pid in (("dead.x2.mp4", int(gone.stdout)), ("live.x2.mp4", sleeper.pid)):
                owner = process_owner(pid)
                connection.execute("UPDATE jobs SET state = 'running', attempts = 1, owner = ? WHERE name = ?",
                                   (owner, name))
        # What a killed writer leaves: a half-written temporary file next to where the output would be.
        leftover = partial_path(out / "dead.x2.mp4")
        leftover.write_bytes(b"half a video")

        report = batch.run_batch(jobs, out)
        rows = rows_by_name(out)
        assert rows["dead.x2.mp4"].state is JobState.DONE and rows["dead.x2.mp4"].attempts == 2
        assert frame_count(out / "dead.x2.mp4") == 3 and not leftover.exists()
        assert rows["live.x2.mp4"].state is JobState.RUNNING and not (out / "live.x2.mp4").exists()
        assert not report.ok
    finally:
        sleeper.kill()
        sleeper.wait()
    assert batch.run_batch(jobs, out).ok  # its owner is gone now
    assert rows_by_name(out)["live.x2.mp4"].attempts == 2


def unseen_bar(jobs) -> batch.FramesBar:
    """The bar `batch._drive` advances, shown nowhere."""
    nothing = {job.name: 0 for job in jobs}
    return batch.FramesBar(tqdm(total=0, disable=True), len(jobs), 0, nothing, nothing)


def entries(jobs) -> dict:
    """What `batch._drive` claims each job with: its journal entry, by name."""
    return {job.name: batch.journal_entry(job) for job in jobs}


def _clips_in_a_journal(tmp_path, *names):
    """Jobs for 3-frame clips named `names`, synced into a new journal in tmp_path/out: (jobs, out)."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for name in names:
        make_clip(source / f"{name}.mp4", frames=3)
    out.mkdir()
    jobs = batch.discover(source, out, options=BICUBIC, video=FAST)
    with Journal.open(out / JOURNAL_NAME) as journal:
        journal.sync([batch.journal_entry(job) for job in jobs], max_attempts=3)
    return jobs, out


class _StoppedAsOneFinishes:
    """An executor that Ctrl-C stops while its first job is finishing, whose result comes only once `close` has
    run: a Ray video joining its segments as the stop came writes its output during close()."""

    capacity = 2

    def __init__(self):
        self.jobs, self.closed = [], False

    def submit(self, job):
        self.jobs.append(job)

    def wait(self, timeout):
        self.jobs[1].output.write_bytes(b"put in place as the stop came")  # (before its result: see _put_in_place)
        raise KeyboardInterrupt

    def close(self):
        self.closed = True

    def finished(self):
        return [JobResult(self.jobs[0].name, ok=True, checksum="0" * 64, seconds=1.0, frames=3)] if self.closed else []


def test_a_job_that_finishes_as_the_batch_stops_is_recorded_done_and_the_other_handed_back(tmp_path):
    """Handed back before it finished, the job's output then existed unrecorded: every later run refused it."""
    jobs, out = _clips_in_a_journal(tmp_path, "a", "b")
    with Journal.open(out / JOURNAL_NAME) as journal:
        with pytest.raises(KeyboardInterrupt):
            batch._drive(journal, _StoppedAsOneFinishes(), jobs, entries(jobs), unseen_bar(jobs))
    rows = rows_by_name(out)
    assert rows["a.x2.mp4"].state is JobState.DONE and rows["a.x2.mp4"].checksum == "0" * 64
    assert rows["b.x2.mp4"].state is JobState.QUEUED
    # b's output was put in place just before the stop (its journal row is written after): still the batch's own,
    # replaced by the next run, where every later run failed on "already exists".
    assert rows["b.x2.mp4"].checksum is not None
    assert batch.run_batch(jobs, out).ok
    assert frame_count(out / "b.x2.mp4") == 3


class _CtrlCAgainWhileClosing(_StoppedAsOneFinishes):
    """Ctrl-C stops the batch, and a second one comes while the workers are being stopped."""

    def wait(self, timeout):
        raise KeyboardInterrupt

    def close(self):
        os.kill(os.getpid(), signal.SIGINT)

    def finished(self):
        return []


def test_a_second_ctrl_c_while_stopping_still_hands_the_jobs_back(tmp_path):
    """It landed in the cleanup: the jobs stayed "running" and their attempts counted (helper-50)."""
    jobs, out = _clips_in_a_journal(tmp_path, "a", "b")
    with Journal.open(out / JOURNAL_NAME) as journal:
        with pytest.raises(KeyboardInterrupt):
            batch._drive(journal, _CtrlCAgainWhileClosing(), jobs, entries(jobs), unseen_bar(jobs))
    assert [(row.state, row.attempts) for row in rows_by_name(out).values()] == [(JobState.QUEUED, 0)] * 2


class _DiskFullFor(InlineExecutor):
    """Runs each job here; the temporary file of the job named `name` is /dev/full, whose writes fail with ENOSPC as
    on a full disk (put there after the batch removed leftovers, before the job runs)."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def submit(self, job):
        if job.name == self.name:
            partial_path(job.output).symlink_to("/dev/full")
        super().submit(job)


@DEV_FULL
def test_a_full_disk_stops_the_batch_and_costs_no_attempt(tmp_path):
    """Each job after it failed the same way, each using one of its attempts: three runs with a full disk and every
    job was given up on."""
    jobs, out = _clips_in_a_journal(tmp_path, "a", "b", "c")
    with Journal.open(out / JOURNAL_NAME) as journal:
        with pytest.raises(OutputError, match=r"cannot write .*b\.x2\.mp4: No space left on device; the batch "
                                              "stopped, .* run the same command again"):
            batch._drive(journal, _DiskFullFor("b.x2.mp4"), jobs, entries(jobs), unseen_bar(jobs))
    rows = rows_by_name(out)
    assert {name: (row.state, row.attempts) for name, row in rows.items()} == {
        "a.x2.mp4": (JobState.DONE, 1), "b.x2.mp4": (JobState.QUEUED, 0), "c.x2.mp4": (JobState.QUEUED, 0)}
    assert sorted(os.listdir(out)) == [JOURNAL_NAME, "a.x2.mp4"]  # (the temporary removed; c not begun)

    assert batch.run_batch(jobs, out).ok  # room again
    assert [row.attempts for row in read_journal(out)] == [1, 1, 1]
    assert frame_count(out / "b.x2.mp4") == frame_count(out / "c.x2.mp4") == 3


@pytest.mark.parametrize("moment, row", [("claim", (JobState.QUEUED, 0)), ("finish", (JobState.DONE, 1))])
def test_a_ctrl_c_as_a_job_is_claimed_or_recorded_leaves_no_job_running(tmp_path, monkeypatch, moment, row):
    """A real SIGINT just as the claim committed (before the job counted as running here), or as a result was
    recorded (after it no longer did): the row stayed "running", so the next run redid the job and counted an attempt
    (helper-83)."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    write_image(source / "a.png")
    jobs = batch.discover(source, out, options=BICUBIC, video=FAST)
    real = getattr(Journal, moment)

    def then_ctrl_c(self, *args, **kwargs):
        if moment == "finish":
            signal.raise_signal(signal.SIGINT)  # (lands as the record begins)
        done = real(self, *args, **kwargs)
        if moment == "claim":
            signal.raise_signal(signal.SIGINT)  # (lands as the claim's commit returns)
        return done

    monkeypatch.setattr(Journal, moment, then_ctrl_c)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a run in the background ignores SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            batch.run_batch(jobs, out)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert [(found.state, found.attempts) for found in rows_by_name(out).values()] == [row]


class _DiesAfterItsRename:
    """An executor whose worker is killed (as by the OOM killer) after the job renamed its output into place."""

    capacity = 1

    def __init__(self):
        self.jobs = []

    def submit(self, job):
        self.jobs.append(job)

    def wait(self, timeout):
        job = self.jobs.pop()
        job.output.write_bytes(b"complete, renamed into place")
        a_tick_before = time.time() - 0.01  # (file times come from the kernel's coarse clock: a tick behind, at times)
        os.utime(job.output, (a_tick_before, a_tick_before))
        return [JobResult(job.name, ok=False, error="the worker process died (exit code -9) while running this job",
                          died=True)]

    def close(self):
        pass

    def finished(self):
        return []


def test_a_job_whose_worker_died_after_its_rename_keeps_its_output(tmp_path):
    """Recorded failed without a claim on its output, the job failed on "already exists" on every rerun."""
    jobs, out = _clips_in_a_journal(tmp_path, "a")
    with Journal.open(out / JOURNAL_NAME) as journal:
        batch._drive(journal, _DiesAfterItsRename(), jobs, entries(jobs), unseen_bar(jobs))
    assert rows_by_name(out)["a.x2.mp4"].state is JobState.FAILED
    assert batch.run_batch(jobs, out).ok and frame_count(out / "a.x2.mp4") == 3


def _claimed_with_a_users_file(tmp_path, *names):
    """Jobs for images `names` into tmp_path/out, every one claimed (running), and a file of the user's, older than
    the batch, where the first one's output goes: (jobs, out)."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for name in names:
        write_image(source / f"{name}.png")
    out.mkdir()
    (out / f"{names[0]}.x2.png").write_bytes(b"the user's own, from before the batch")
    os.utime(out / f"{names[0]}.x2.png", (time.time() - 60, time.time() - 60))
    jobs = batch.discover(source, out, options=BICUBIC, video=FAST)
    with Journal.open(out / JOURNAL_NAME) as journal:
        journal.sync([batch.journal_entry(job) for job in jobs], max_attempts=3)
        for job in jobs:
            assert journal.claim(batch.journal_entry(job))
    return jobs, out


def _redo_stopped(jobs, out):
    """Start the redo of the one job of `jobs` (its output missing or damaged) and stop it, as a Ctrl-C does."""
    with Journal.open(out / JOURNAL_NAME) as journal:
        batch._sync(journal, entries(jobs), out, max_attempts=3)
        assert journal.claim(entries(jobs)[jobs[0].name])
        journal.release(jobs[0].name, checksum=batch._put_in_place(journal, jobs[0]))


def test_a_stopped_job_owns_only_the_output_it_had_put_in_place(tmp_path):
    """Handed back at a Ctrl-C, a job keeps as its own only a file it wrote before the stop (the checksum, taken
    then): a user's older file stays theirs, and so does one put there after the stop (helper-50: a claim judged
    later by the file's time took that one too)."""
    jobs, out = _claimed_with_a_users_file(tmp_path, "user", "made", "later")
    with Journal.open(out / JOURNAL_NAME) as journal:
        (out / "made.x2.png").write_bytes(b"put in place just before the stop")
        for job in jobs:  # (as _drive hands them back)
            journal.release(job.name, checksum=batch._put_in_place(journal, job))
        (out / "later.x2.png").write_bytes(b"the user's own, put there after the stop")
        owned = {job.name for job in jobs if journal.owns_output(job.name)}
    assert owned == {"made.x2.png"}


def test_a_job_left_running_by_a_killed_batch_owns_only_a_file_put_there_since_its_claim(tmp_path):
    """A batch killed (kill -9) while its job ran left the row running, and the next run took any file at the
    output for the job's: a user's file that stood there at the claim was replaced without --overwrite
    (helper-79)."""
    jobs, out = _claimed_with_a_users_file(tmp_path, "user", "made", "none")
    with Journal.open(out / JOURNAL_NAME) as journal:
        (out / "made.x2.png").write_bytes(b"renamed into place just before the kill")
        assert {job.name for job in jobs if journal.owns_output(job.name)} == {"made.x2.png"}
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with sqlite3.connect(out / JOURNAL_NAME) as connection:  # (killed: its rows' owner is a process that is gone)
        connection.execute("UPDATE jobs SET owner = ?", (process_owner(int(gone.stdout)),))
    rows = {row.name: row for row in batch.run_batch(jobs, out).rows}
    assert rows["user.x2.png"].state is JobState.FAILED and "already exists" in rows["user.x2.png"].error
    assert (out / "user.x2.png").read_bytes() == b"the user's own, from before the batch"
    assert rows["made.x2.png"].state is rows["none.x2.png"].state is JobState.DONE


def test_an_output_the_batch_made_stays_its_own_after_a_redo_fails_or_stops(tmp_path):
    """A failed or stopped redo cleared the journal's checksum of the output an earlier run made: every later run
    failed on "already exists" (helper-79: an input briefly unreadable, a damaged output's redo stopped)."""
    jobs, out = _clips_in_a_journal(tmp_path, "a")
    source = tmp_path / "in" / "a.mp4"
    assert batch.run_batch(jobs, out).ok
    good = source.read_bytes()
    source.write_bytes(b"not a video, while it is copied again")
    assert batch.run_batch(batch.discover(tmp_path / "in", out, options=BICUBIC, video=FAST), out).rows[0].state \
        is JobState.FAILED
    source.write_bytes(good)
    assert batch.run_batch(batch.discover(tmp_path / "in", out, options=BICUBIC, video=FAST), out).ok
    (out / "a.x2.mp4").write_bytes((out / "a.x2.mp4").read_bytes()[:1000])  # damaged
    _redo_stopped(jobs, out)
    assert batch.run_batch(jobs, out).ok and frame_count(out / "a.x2.mp4") == 3


def test_a_file_put_where_the_batch_had_lost_its_output_is_the_users(tmp_path):
    """Kept through a stopped redo of a missing output, the checksum made a file the user put there later the
    batch's to replace (helper-80)."""
    jobs, out = _clips_in_a_journal(tmp_path, "a")
    assert batch.run_batch(jobs, out).ok
    (out / "a.x2.mp4").unlink()
    _redo_stopped(jobs, out)
    (out / "a.x2.mp4").write_bytes(b"the user's own, put there since")
    (row,) = batch.run_batch(jobs, out).rows
    assert row.state is JobState.FAILED and "already exists" in row.error
    assert (out / "a.x2.mp4").read_bytes() == b"the user's own, put there since"


def test_a_job_another_batch_made_with_its_options_meanwhile_is_not_counted_done(tmp_path, monkeypatch, caplog):
    """A job the other batch was running, done with that batch's options as this one worked, counted done here:
    the run said all done and exited 0 (helper-79)."""
    jobs, out = _clips_in_a_journal(tmp_path, "a", "b")
    other = {name: dataclasses.replace(entry, options={**entry.options, "crf": 30})
             for name, entry in entries(jobs).items()}
    with Journal.open(out / JOURNAL_NAME) as journal:
        journal.sync(list(other.values()), max_attempts=3)
        assert journal.claim(other["a.x2.mp4"])  # (this process: a live owner, so a batch started now leaves it)
    drive = batch._drive

    def other_finishes_meanwhile(journal, *args):
        journal.finish("a.x2.mp4", ok=True, checksum="made with crf 30", seconds=1.0)
        return drive(journal, *args)

    monkeypatch.setattr(batch, "_drive", other_finishes_meanwhile)
    report = batch.run_batch(jobs, out)
    assert not report.ok and report.skipped == ["a.x2.mp4"] and [row.name for row in report.rows] == ["b.x2.mp4"]
    assert "a.mp4: run by another `vsr batch` with other options or input" in caplog.text


@pytest.mark.parametrize("name", ["photo.x2.png", "a" * 244 + ".png", "[x]*?.png"])
def test_a_killed_runs_image_temporaries_are_found_whatever_the_name(tmp_path, name):
    """Names of 241 to 247 bytes get hashed temporaries, which the glob for leftovers (made for a shorter tail)
    missed; glob's special characters moved the threshold too (helper-48)."""
    from vsr.fsutil import temporaries_of, temporary_sibling

    output = tmp_path / name
    left = {temporary_sibling(output) for _ in range(2)}
    for path in left:
        path.write_bytes(b"cut short")
    other = temporary_sibling(tmp_path / "other.png")
    other.write_bytes(b"another output's")
    assert set(temporaries_of(output)) == left
    batch.remove_partials(output)
    assert list(tmp_path.iterdir()) == [other]


def test_a_jobs_file_sets_options_per_job(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    make_clip(media / "one.mp4", frames=4)
    make_clip(media / "two.mp4", frames=4)
    write_image(media / "still.png")
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(
        'output_dir = "done"\n'
        '[defaults]\nmodel = "bicubic"\noutscale = 2\npreset = "ultrafast"\n'
        '[[job]]\ninput = "media/one.mp4"\n'
        '[[job]]\ninput = "media/two.mp4"\noutput = "cut/two-short.mkv"\nframes = 2\nbatch-size = 1\noutscale = 3\n'
        '[[job]]\ninput = "media/still.png"\n'
    )
    jobs, out = batch.load_jobs_file(jobs_file)
    assert out == tmp_path / "done"
    assert [job.name for job in jobs] == ["media/one.x2.mp4", "cut/two-short.mkv", "media/still.x2.png"]
    assert batch.run_batch(jobs, out).ok
    assert video_size(out / "media/one.x2.mp4") == (128, 96) and frame_count(out / "media/one.x2.mp4") == 4
    assert video_size(out / "cut/two-short.mkv") == (192, 144) and frame_count(out / "cut/two-short.mkv") == 2
    assert images.read_image(out / "media/still.x2.png").rgb.shape == (3, 24, 40)
    # Options from the command line beat [defaults], and each job's own beat both.
    jobs, _ = batch.load_jobs_file(jobs_file, tmp_path / "elsewhere", values={"outscale": 4, "frames": 1})
    assert [job.name for job in jobs] == ["media/one.x4.mp4", "cut/two-short.mkv", "media/still.x4.png"]
    assert [job.video.max_frames for job in jobs] == [1, 2, 1]


def test_an_output_that_is_an_input_is_refused_before_any_job_even_with_overwrite(tmp_path):
    """A jobs file whose job writes over another job's input: --overwrite replaced that input with the upscaled
    video (and the next run upscaled it again). The same where a folder's output lands on an input (the output
    folder above the input folder), and where the output is a link to an input."""
    media = tmp_path / "media"
    media.mkdir()
    make_clip(media / "a.mp4", frames=2)
    make_clip(media / "b.mp4", frames=3)
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('output_dir = "media"\n[defaults]\nmodel = "bicubic"\noutscale = 2\n'
                         '[[job]]\ninput = "media/b.mp4"\n[[job]]\ninput = "media/a.mp4"\noutput = "b.mp4"\n')
    before = snapshot(tmp_path)
    jobs, out = batch.load_jobs_file(jobs_file, overwrite=True)
    with pytest.raises(OptionError, match=f"media/a.mp4: its output {media / 'b.mp4'} is the input media/b.mp4"):
        batch.run_batch(jobs, out)
    with pytest.raises(OptionError, match="is the input media/b.mp4"):
        batch.plan_batch(jobs, out)
    assert snapshot(tmp_path) == before
    # in/sub/x.mp4 is written to top/sub/x.x2.mp4, where in/ is top/sub/: an input of the same batch.
    top = tmp_path / "top"
    (top / "sub" / "sub").mkdir(parents=True)
    make_clip(top / "sub" / "sub" / "x.mp4", frames=2)
    make_clip(top / "sub" / "x.x2.mp4", frames=3)
    before = snapshot(tmp_path)
    with pytest.raises(OptionError, match=r"sub/x.mp4: its output .* is the input x.x2.mp4"):
        batch.run_batch(batch.discover(top / "sub", top, options=BICUBIC, video=FAST, overwrite=True), top)
    assert snapshot(tmp_path) == before
    # A link in the output folder's place of the output, to an input.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.x2.mp4").symlink_to(media / "b.mp4")
    before = snapshot(tmp_path)
    jobs = batch.discover(media, tmp_path / "out", options=BICUBIC, video=FAST, overwrite=True)
    with pytest.raises(OptionError, match="a.mp4: its output .* is the input b.mp4"):
        batch.run_batch(jobs, tmp_path / "out")
    assert snapshot(tmp_path) == before


def test_another_batchs_output_folder_inside_the_input_folder_is_not_taken_for_inputs(tmp_path, caplog):
    """`vsr batch in in/up1`, then `vsr batch in in/up2`: the second took up1's outputs for new inputs, and made
    up2/up1/a.x2.x2.mp4 and the like (its own output folder is skipped, an earlier one was not)."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    make_clip(root / "a.mp4", frames=2)
    write_image(root / "sub" / "b.png")
    assert batch.run_batch(batch.discover(root, root / "up1", options=BICUBIC, video=FAST), root / "up1").ok
    inputs = snapshot(root)
    jobs = batch.discover(root, root / "up2", options=BICUBIC, video=FAST)
    assert [job.name for job in jobs] == ["a.x2.mp4", "sub/b.x2.png"]
    assert (f"{root / 'up1'}: another batch's output folder (its journal is there); skipped, so that its outputs are "
            "not upscaled again (give it as IN_DIR to upscale them)") in caplog.text
    assert batch.run_batch(jobs, root / "up2").ok
    assert {name: value for name, value in snapshot(root).items() if not name.startswith("up2/")} == inputs
    # Given as the input folder, it is one.
    assert [job.name for job in batch.discover(root / "up1", tmp_path / "again", options=BICUBIC, video=FAST)] == [
        "a.x2.x2.mp4", "sub/b.x2.x2.png"]


def test_a_jobs_file_in_the_current_folder_takes_absolute_inputs(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    make_clip(tmp_path / "elsewhere.mp4", frames=2)
    make_clip(tmp_path / "work" / "here.mp4", frames=2)
    (tmp_path / "work" / "jobs.toml").write_text(
        f'output_dir = "done"\n[[job]]\ninput = "{tmp_path / "elsewhere.mp4"}"\n'
        f'[[job]]\ninput = "{tmp_path / "work" / "here.mp4"}"\nmodel = "bicubic"\n')
    monkeypatch.chdir(tmp_path / "work")
    jobs, out = batch.load_jobs_file(Path("jobs.toml"))
    assert [job.name for job in jobs] == ["elsewhere.x4.mp4", "here.x4.mp4"]


def test_a_jobs_files_checkpoints_are_relative_to_it_as_its_inputs_are(tmp_path, tiny_rrdbnet_checkpoint,
                                                                         monkeypatch):
    """They were relative to the working folder: the same file run from another folder found no model, or another
    one (helper-79: every job redone)."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "m.pth").write_bytes(Path(tiny_rrdbnet_checkpoint).read_bytes())
    write_image(project / "a.png")
    write_image(project / "b.png")
    (project / "jobs.toml").write_text('output_dir = "out"\n[defaults]\nmodel = "models/m.pth"\n'
                                       '[[job]]\ninput = "a.png"\n[[job]]\ninput = "b.png"\nmodel = "bicubic"\n')
    recorded = []
    for folder in (tmp_path, project / "models"):
        monkeypatch.chdir(folder)
        jobs, _ = batch.load_jobs_file(project / "jobs.toml")
        recorded.append([batch.journal_entry(job).options["model"] for job in jobs])
    assert recorded[0] == recorded[1]
    assert recorded[0][0]["file"] == str((project / "models" / "m.pth").resolve()) and recorded[0][1] == "bicubic"


def test_a_jobs_file_takes_a_tile_alone_and_choice_values_in_any_case_as_the_command_line_does(tmp_path):
    """tile = 64 failed every job (for the default overlap of 128) and precision = "FP32" was refused, where
    `vsr upscale` takes both; a mistyped model name was said as a path beside the file (helper-80)."""
    write_image(tmp_path / "a.png")
    (tmp_path / "jobs.toml").write_text('output_dir = "out"\n[defaults]\ntile = 64\nprecision = "FP32"\n'
                                        'device = "CPU"\n[[job]]\ninput = "a.png"\nmodel = "bicubic"\n')
    (job,) = batch.load_jobs_file(tmp_path / "jobs.toml")[0]
    assert (job.options.tile, job.options.tile_overlap, job.options.precision, job.options.device) == (
        64, 32, "fp32", "cpu")
    (tmp_path / "typo.toml").write_text('output_dir = "out"\n[[job]]\ninput = "a.png"\nmodel = "realesr-animevideo3"\n')
    with pytest.raises(ModelError, match="^unknown model 'realesr-animevideo3'"):
        batch.load_jobs_file(tmp_path / "typo.toml")
    assert batch.build_options({"tile": 200})[0].tile_overlap == 128  # (room for the default: unchanged)


def test_times_are_seconds_or_ffmpegs_hours_minutes_seconds():
    for text, seconds in [("90", 90), ("90.5", 90.5), (".5", 0.5), ("1:30", 90), ("90:00", 5400),
                          ("01:02:03.25", 3723.25), (" 0:59.9 ", 59.9), (12, 12)]:
        assert api.parse_time(text) == pytest.approx(seconds), text
    for text in ["1:75", "1:60:00", "-5", "1:", "", "abc", "1.2.3", "1:2:3:4", float("nan"), float("inf")]:
        with pytest.raises(OptionError, match=f"--end takes seconds or a time such as 1:30 or 1:02:03.5; not '?{text}"):
            api.parse_time(text, "--end")
    options, video = batch.build_options({"start": "1:30", "end": 100})  # a jobs file's values, or the CLI's
    assert (video.start, video.end) == (90, 100)


def test_dedup_crop_and_strength_in_a_jobs_file():
    assert [batch.build_options({"dedup": value})[1].dedup for value in ("off", "exact", 4, 2.5, "3")] == [
        None, 0, 4, 2.5, 3]
    with pytest.raises(OptionError, match="job 2: 'dedup' takes exact, off, or a tolerance in levels of 255"):
        batch.build_options({"dedup": "often"}, "job 2")
    with pytest.raises(OptionError, match="job 2: option 'dedup' must be exact, off or a number of levels, not True"):
        batch.build_options({"dedup": True}, "job 2")
    assert [batch.build_options({"crop": value})[1].crop for value in ("off", "Auto", "640:360:0:60")] == [
        None, "auto", "640:360:0:60"]
    with pytest.raises(OptionError, match="job 2: 'crop' takes auto, off, or WIDTH:HEIGHT:X:Y"):
        batch.build_options({"crop": "640x360"}, "job 2")
    assert batch.build_options({"strength": 0.6})[0].strength == 0.6
    assert batch.build_options({"compile": True, "device": "cuda:1"})[0].compile  # (a cluster's GPU: not checked here)
    for values, message in [({"strength": 2}, "--strength must be a number from 0 to 1, not 2.0"),
                            ({"tile": -5}, "--tile must be an integer >= 0, not -5"),
                            ({"batch-size": 0}, "--batch-size must be an integer >= 1, not 0"),
                            ({"precision": "fp64"}, "unknown precision 'fp64'"),
                            ({"device": "gpu"}, "unknown device 'gpu'")]:
        with pytest.raises(OptionError, match=f"job 2: {message}"):  # before any job runs
            batch.build_options(values, "job 2")


def test_a_jobs_file_that_is_a_folder_or_names_no_folder_is_one_line(tmp_path):
    with pytest.raises(InputError, match="is a folder, not a jobs file"):
        batch.load_jobs_file(tmp_path)
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('output_dir = 5\n[[job]]\ninput = "a.mp4"\n')
    with pytest.raises(OptionError, match="no output folder"):
        batch.load_jobs_file(jobs_file)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[job]]\ninput = "a.mp4"\nmodle = "bicubic"\n', "unknown option 'modle' \\(did you mean model\\?\\)"),
        ('[[job]]\ninput = "a.mp4"\ncrf = "high"\n', "option 'crf' must be an integer, not 'high'"),
        ('[[job]]\ninput = "a.mp4"\nstart = "1:75"\n', "job 1: 'start' takes seconds or a time such as 1:30"),
        ('[[job]]\ninput = "a.mp4"\ndedup = -1\n', "job 1: 'dedup' takes exact, off, or a tolerance"),
        ('[[job]]\noutput = "a.mp4"\n', "needs input"),
        ('[defaults]\nmodel = "bicubic"\n', "no \\[\\[job\\]\\] tables"),
        ('[[job]]\ninput = "a.mp4"\n[[job]]\ninput = "a.mp4"\n', "would both be written to a.x4.mp4"),
        ('[[job]]\ninput = "../x/a.mp4"\n[[job]]\ninput = "../y/a.mp4"\n',
         "../x/a.mp4 and ../y/a.mp4 would both be written to a.x4.mp4"),
        ('[[job]]\ninput = ""\n', "job 1: input '' names a folder; give a file"),
        ('[[job]]\ninput = "."\n', "job 1: input '.' names a folder; give a file"),
        ('[[job]]\ninput = "/"\n', "job 1: input '/' names a folder; give a file"),
        ('[[job]]\ninput = "nowhere/.."\n', "job 1: input 'nowhere/..' names a folder; give a file"),
        ('[[job]]\ninput = "a.mp4"\noutput = "/elsewhere/a.mp4"\n', "must stay inside the output folder"),
        ('[[job]]\ninput = "a.mp4"\noutput = "../a.mp4"\n', "must stay inside the output folder"),
        ('[[job]]\ninput = "a.mp4"\noutput = 3\n', "output must be a file name"),
        ('[[job]]\ninput = "a.mp4"\noutput = "."\n', "output '.' names a folder; give the file's name"),
        ('[[job]]\ninput = "a.mp4"\noutput = "sub/"\n', "output 'sub/' names a folder; give the file's name"),
        ('defaults = 3\n[[job]]\ninput = "a.mp4"\n', "\\[defaults\\] must be a table"),
        ('[defaults]\nscale = 4\n[[job]]\ninput = "a.mp4"\n', "jobs.toml \\[defaults\\]: unknown option 'scale'"),
        ('job = [1]\n', "no \\[\\[job\\]\\] tables"),
        ('[[job]]\ninput = "render/f%04d.png"\n', "vsr batch takes files, not image sequences"),
        ('[[job]]\ninput = "a.mp4"\noutput = "frames/%04d.png"\n', "vsr batch takes files, not image sequences"),
        # (these failed as their jobs ran, after the model had loaded, and again at each retry)
        ('[[job]]\ninput = "a.mp4"\noutput = "a.xyz"\n', "^a.mp4: .*a.xyz: cannot tell the container format from "
                                                        "its extension '.xyz'; name it .mkv, .mp4, .mov or .webm$"),
        ('[[job]]\ninput = "p.png"\noutput = "p.mp4"\n', "^p.png: .*p.mp4: unsupported image type '.mp4'"),
        ('[[job]]\ninput = "a.mp4"\noutput = "a.gif"\ncodec = "libx264"\n',
         "^a.mp4: --codec libx264: a .gif file holds 256-color GIF pictures only"),
    ],
    ids=["unknown option", "wrong type", "bad time", "bad dedup", "no input", "no jobs", "same output twice",
         "same output from two folders", "input empty", "input dot", "input root", "input dot dot", "absolute output",
         "output outside", "output not text", "output dot", "output folder", "defaults not a table", "bad default",
         "job not a table",
         "sequence in",
         "sequence out", "video output of no format", "image output of no format", "codec named for a gif"],
)
def test_a_bad_jobs_file_is_one_option_error(tmp_path, text, message):
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(text)
    with pytest.raises(OptionError, match=message):
        jobs, out = batch.load_jobs_file(jobs_file, tmp_path / "out")
        batch.run_batch(jobs, out)
    assert not (tmp_path / "out").exists()


def test_worker_processes_share_the_jobs(library, tmp_path):
    out = tmp_path / "out"
    before = snapshot(library)
    jobs = batch.discover(library, out, options=BICUBIC, video=FAST, include=["*.mp4", "*.mkv", "*.png"])
    report = batch.run_batch(jobs, out, workers=2)
    assert report.ok and len(report.rows) == 3
    for job in jobs:
        if job.kind == "video":
            assert frame_count(job.output) == frame_count(job.source)
    assert snapshot(library) == before


def test_a_dead_worker_is_seen_while_the_others_results_come_and_its_unfinished_file_is_removed(tmp_path):
    """Seen only when no result came for a while: to the end of a batch of short jobs, at half its speed; and the
    job's partial file stayed for good once its attempts were used up (helper-57)."""
    from vsr.pipelines.batch_workers import ProcessExecutor

    source = tmp_path / "in"
    source.mkdir()
    for name in ("a", "b"):
        write_image(source / f"{name}.png")
    first, second = batch.discover(source, tmp_path / "out", options=BICUBIC, video=FAST)
    first.output.parent.mkdir()
    with ProcessExecutor(2) as executor:
        dead = executor._workers[0].process
        dead.kill()  # (as the OOM killer does)
        dead.join()
        executor.submit(first)  # (to the dead worker, the first free one)
        partial_path(first.output).write_bytes(b"half a video")
        executor.submit(second)
        results = executor.wait(timeout=HANG_SECONDS)  # (b's result: its worker starts slowly on a loaded machine)
    assert sorted((result.name, result.ok) for result in results) == [("a.x2.png", False), ("b.x2.png", True)]
    assert not partial_path(first.output).exists()


def test_a_ctrl_c_while_the_workers_start_stops_those_already_started(monkeypatch):
    """Held back until a worker had started, the Ctrl-C was raised before the executor kept it: no `with` block
    closed the executor, and its workers lived on in a Python program that caught the KeyboardInterrupt
    (helper-83)."""
    import multiprocessing.process

    from vsr.pipelines.batch_workers import ProcessExecutor

    real_start = multiprocessing.process.BaseProcess.start
    started = []

    def start_then_ctrl_c(process):
        real_start(process)
        started.append(process)
        if len(started) == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start_then_ctrl_c)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a run in the background ignores SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            ProcessExecutor(3)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert len(started) == 2 and not any(process.is_alive() for process in started)


_KILLED_AFTER_A_VIDEO = """
from pathlib import Path
from vsr import api
from vsr.pipelines import batch
from vsr.pipelines.batch_workers import ProcessExecutor

if __name__ == "__main__":
    options = api.UpscaleOptions(model="bicubic", outscale=2)
    jobs = batch.discover(Path("in"), Path("out"), options=options, video=api.VideoOptions())
    Path("out").mkdir()
    with ProcessExecutor(1) as executor:
        executor.submit(jobs[0])
        assert executor.wait(120)[0].ok
        executor._workers[0].process.kill()
"""


def test_a_worker_killed_after_a_video_leaves_no_resource_tracker_warning(tmp_path):
    """tqdm's default lock in a spawned worker is a named semaphore, which a killed worker left registered: Python
    warned of "leaked semaphore objects" in several lines after Ctrl-C or an OOM kill (helper-57)."""
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", frames=3)
    (tmp_path / "run.py").write_text(_KILLED_AFTER_A_VIDEO)
    done = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resource_tracker" not in done.stderr


def test_cuda_devices_that_are_not_there_are_an_option_error(library, tmp_path):
    jobs = batch.discover(library, tmp_path / "out", options=BICUBIC, video=FAST)
    # On a CPU-only machine any device is missing; on a GPU machine, the one after the last.
    missing = str(torch.cuda.device_count()) if torch.cuda.is_available() else "0,1"
    with pytest.raises(OptionError, match="CUDA"):
        batch.run_batch(jobs, tmp_path / "out", devices=missing)
    with pytest.raises(OptionError, match="device numbers"):
        batch.run_batch(jobs, tmp_path / "out", devices="gpu0")


def test_a_folder_named_as_a_jobs_temporary_fails_that_job_in_one_line(tmp_path):
    """Taken for a leftover of a killed run and unlinked: an IsADirectoryError traceback stopped the whole batch."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    make_clip(root / "a.mp4", frames=3)
    (out / ".a.x2.partial.mp4").mkdir(parents=True)
    report = batch.run_batch(batch.discover(root, out, options=BICUBIC, video=FAST), out)
    assert report.rows[0].state is JobState.FAILED
    assert report.rows[0].error == f"cannot write {out / 'a.x2.mp4'}: Is a directory"
    assert (out / ".a.x2.partial.mp4").is_dir()


def test_a_done_job_asked_for_with_other_options_keeps_its_output_until_overwrite(tmp_path, caplog):
    """A batch run again with an option forgotten made every done job again, without asking (hours for a library)."""
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    write_image(root / "p.png")
    assert batch.run_batch(batch.discover(root, out, options=BICUBIC, video=FAST), out).ok
    made = (out / "p.x2.png").stat().st_ino
    lanczos = dataclasses.replace(BICUBIC, model="lanczos")
    with caplog.at_level(logging.WARNING):
        report = batch.run_batch(batch.discover(root, out, options=lanczos, video=FAST), out)
    assert not report.ok and report.skipped == ["p.x2.png"] and (out / "p.x2.png").stat().st_ino == made
    assert ("p.png: its options changed (--model lanczos, was bicubic); p.x2.png is kept as it was made: run as it "
            "was made, or with --overwrite to make it again") in caplog.text
    row = rows_by_name(out)["p.x2.png"]
    assert row.state is JobState.DONE and row.options["model"] == "bicubic"  # (the journal says what was made)
    assert batch.plan_batch(batch.discover(root, out, options=BICUBIC, video=FAST), out) == [("p.x2.png", "done")]
    report = batch.run_batch(batch.discover(root, out, options=lanczos, video=FAST, overwrite=True), out)
    assert report.ok and (out / "p.x2.png").stat().st_ino != made
    assert rows_by_name(out)["p.x2.png"].options["model"] == "lanczos"


def test_the_bar_counts_each_jobs_frames_before_it_runs(tmp_path):
    """The batch's bar starts from what each input's container says, in the frames its options make: a window's
    share, --frames' cap, a frame for each field with --deinterlace field; an image is one frame."""
    from vsr.pipelines.images import Image, write_image

    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", frames=20, fps=10)
    write_image(tmp_path / "in" / "b.png", Image(rgb=torch.zeros(3, 8, 8)))
    video_job, image_job = sorted(batch.discover(tmp_path / "in", tmp_path / "out", options=BICUBIC, video=FAST),
                                  key=lambda job: job.kind != "video")
    windows = [(FAST, 20), (dataclasses.replace(FAST, start=1.0), 10),
               (dataclasses.replace(FAST, start=0.5, end=1.0), 5), (dataclasses.replace(FAST, max_frames=7), 7),
               (dataclasses.replace(FAST, deinterlace="field"), 40)]
    for video, frames in windows:
        assert batch.expected_frames(dataclasses.replace(video_job, video=video)) == frames, video
    assert batch.expected_frames(image_job) == 1
