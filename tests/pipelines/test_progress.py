"""What a user sees while vsr works (pipelines/progress.py): the progress of the whole work, a resumed run's counted
from what an earlier run made; readable lines in a log file; warnings, worker processes' too, written above the bar.

Off a terminal (pytest's captured stderr) progress is a line per update here, `LOG_SECONDS` set to 0."""

from __future__ import annotations

import logging
import os
import re
import subprocess

import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import corrupt_middle, make_clip
from tests.pipelines.test_batch import write_image
from tests.pipelines.test_resume import LOSSLESS, Interrupt
from tests.pipelines.test_segments import make_gop_clip
from tests.processes import VSR, kill_when
from vsr import api
from vsr.pipelines import batch, progress
from vsr.pipelines.sequences import existing_frames
from vsr.pipelines.segments import upscale_video_in_segments

pytestmark = media.requires_ffmpeg

# tqdm's rate: frames a second, or seconds a frame under a frame a second (a loaded machine, slow workers)
RATE = r"(?:\?|[\d.]+)(?:frame/s|s/frame)"
LINE = re.compile(rf"vsr: (\d+)/(\d+) frames \(\d+%\) in [\d:]+, {RATE}, [\d:?]+ left")


def progress_lines(stderr: str) -> list[tuple[int, int]]:
    """(done, total) of each progress line of a log file's `stderr`."""
    assert "\r" not in stderr  # (a terminal's bar, redrawn in place)
    return [(int(match[1]), int(match[2])) for match in map(LINE.fullmatch, stderr.splitlines()) if match]


@pytest.fixture
def every_update_a_line(monkeypatch):
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)


def test_a_resumed_segmented_run_shows_the_whole_video_with_the_kept_segments_done(
        tmp_path, tiny_rrdbnet_checkpoint, every_update_a_line, capfd):
    """24 frames in 3 segments of 8, the first kept: 8/24 to 24/24 (the bar counted 0/16, the segments left)."""
    clip = make_gop_clip(tmp_path / "clip.mp4")
    options = api.UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=4, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        upscale_video_in_segments(clip, tmp_path / "out.mkv", options=options, video=LOSSLESS,
                                  on_segment=Interrupt(after=1))
    capfd.readouterr()
    upscale_video_in_segments(clip, tmp_path / "out.mkv", options=options, video=LOSSLESS, progress=True)
    lines = progress_lines(capfd.readouterr().err)
    assert lines[0] == (8, 24) and lines[-1] == (24, 24)
    assert {total for _, total in lines} == {24}


def test_a_resumed_image_sequence_starts_at_the_frames_kept(tmp_path, tiny_rrdbnet_checkpoint, every_update_a_line,
                                                            capfd):
    """Counted as done after the bar began, the frames kept were counted as made by this run: its rate and time left
    were those of frames skipped (seen: 799 frames/s, 0:00 left, for a run of some seconds)."""
    source = make_clip(tmp_path / "clip.mp4", frames=40, size=(64, 48))
    pattern = tmp_path / "frames" / "%04d.png"
    command = ["upscale", source, "-o", pattern, "-m", tiny_rrdbnet_checkpoint, "-b", "1", "--precision", "fp32"]
    kill_when(list(map(str, [*VSR, *command])), lambda: len(existing_frames(pattern)) >= 3, "3 frames were written")
    kept = len(existing_frames(pattern))
    options = api.UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=1, precision="fp32", device="cpu")
    capfd.readouterr()
    api.upscale_video(source, pattern, options=options, progress=True)
    lines = progress_lines(capfd.readouterr().err)
    assert lines[0] == (kept, 40) and lines[-1] == (40, 40)


def test_a_short_run_off_a_terminal_writes_no_progress_line(tmp_path, tiny_rrdbnet_checkpoint, capfd):
    """Lines come every LOG_SECONDS (60): none for work that takes less."""
    clip = make_clip(tmp_path / "clip.mp4", frames=8)
    options = api.UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), device="cpu")
    api.upscale_video(clip, tmp_path / "out.mkv", options=options, progress=True)
    assert capfd.readouterr().err == ""


def test_what_batch_workers_log_is_logged_by_their_driver(tmp_path, caplog):
    """Written by each worker process to the terminal, a warning went on after the driver's bar, on its line."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(folder / name, frames=4)
    past_the_end = api.VideoOptions(preset="ultrafast", max_frames=10)
    jobs = batch.discover(folder, tmp_path / "out", options=api.UpscaleOptions(model="bicubic", outscale=2),
                          video=past_the_end)
    with caplog.at_level(logging.WARNING, logger="vsr"):
        assert batch.run_batch(jobs, tmp_path / "out", workers=2).ok
    said = sorted(record.getMessage() for record in caplog.records if "--frames 10 is more" in record.getMessage())
    assert said == [f"{folder / name}: --frames 10 is more than the video has (4 frames): upscaling those 4"
                    for name in ("a.mp4", "b.mp4")]


def test_a_warning_during_the_run_is_written_above_the_bar_on_a_terminal(tmp_path, tiny_rrdbnet_checkpoint):
    """On a terminal of 100 columns: each warning starts where the bar was cleared, at the start of a line; the bar
    comes back under it. Written straight to stderr, it went on after the bar, on its line."""
    clip = corrupt_middle(make_clip(tmp_path / "clip.mkv", frames=120, size=(96, 64), codec="libx264"),
                          tmp_path / "damaged.mkv", length=2000)
    screen = _on_a_terminal([*VSR, "upscale", clip, "-o", tmp_path / "out.mkv", "-m", tiny_rrdbnet_checkpoint,
                             "-b", "2", "--device", "cpu"])
    warnings = [match.start() for match in re.finditer("vsr: WARNING: ", screen)]
    bar = re.compile(rf"{RATE}\]")
    assert warnings and bar.search(screen[:warnings[0]])  # (a warning while the bar was shown)
    for start in warnings:
        assert screen[:start].endswith(("\r", "\n")), screen[start - 150:start + 50]
    assert bar.search(screen[warnings[-1]:])


def _on_a_terminal(command: list) -> str:
    """What `command` writes to a pseudo-terminal of 30 rows and 100 columns, as it wrote it."""
    import fcntl
    import pty
    import struct
    import termios

    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(list(map(str, command)), stdin=terminal, stdout=terminal, stderr=terminal,
                               env={**os.environ, "COLUMNS": "100"})
    os.close(terminal)
    written = bytearray()
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # (EIO: the command and every process that had the terminal are gone)
            break
        if not data:
            break
        written += data
    os.close(main)
    assert process.wait(timeout=300) == 0, written.decode(errors="replace")
    return written.decode(errors="replace")



BATCH_LINE = re.compile(rf"vsr: (\d+)/(\d+) frames \(\d+%\) in [\d:]+, {RATE}, [\d:?]+ left, (\d+)/(\d+) jobs")


def batch_lines(stderr: str) -> list[tuple[int, int, int, int]]:
    """(frames done, frames, jobs done, jobs) of each progress line of a batch's log file."""
    return [(int(match[1]), int(match[2]), int(match[3]), int(match[4]))
            for match in map(BATCH_LINE.fullmatch, stderr.splitlines()) if match]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_batchs_bar_counts_its_jobs_frames_as_they_are_upscaled(tmp_path, every_update_a_line, capfd, workers):
    """Two videos of 6 and 10 frames and an image (one frame): 17 frames, counted as each is upscaled, in this
    process or in a worker's, with the jobs done beside them. The bar counted jobs: 0/3 until the first was done."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=6)
    make_clip(folder / "b.mp4", frames=10)
    write_image(folder / "c.png")
    jobs = batch.discover(folder, tmp_path / "out", options=api.UpscaleOptions(model="bicubic", outscale=2,
                                                                                batch_size=1),
                          video=api.VideoOptions(preset="ultrafast"))
    capfd.readouterr()
    report = batch.run_batch(jobs, tmp_path / "out", workers=workers, progress=True)
    assert report.ok
    lines = batch_lines(capfd.readouterr().err)
    assert lines[0] == (0, 17, 0, 3) and lines[-1] == (17, 17, 3, 3)
    assert {total for _, total, _, _ in lines} == {17}
    assert any(done > 0 for done, _, jobs_done, _ in lines if jobs_done == 0)  # (counted as the jobs ran)
    assert [done for done, *_ in lines] == sorted(done for done, *_ in lines)
    assert report.frames_made == 17 and ", 17 frames upscaled at " in report.summary()


def test_a_resumed_batchs_bar_starts_at_the_jobs_done_and_the_segments_kept(tmp_path, every_update_a_line, capfd):
    """A video done by an earlier run (6 frames) and one of 24 frames whose first segment of 8 was kept: the bar
    starts at 14 of 30, and the summary's speed counts the 16 frames this run upscaled."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=6)
    make_gop_clip(folder / "b.mp4")
    jobs = batch.discover(folder, tmp_path / "out", options=api.UpscaleOptions(model="bicubic", outscale=2),
                          video=LOSSLESS)
    assert batch.run_batch(jobs[:1], tmp_path / "out").ok
    with pytest.raises(KeyboardInterrupt):  # (as the batch's job would have kept it, cut short)
        upscale_video_in_segments(jobs[1].source, jobs[1].output, options=jobs[1].options, video=jobs[1].video,
                                  on_segment=Interrupt(after=1))
    capfd.readouterr()
    report = batch.run_batch(jobs, tmp_path / "out", progress=True)
    assert report.ok
    lines = batch_lines(capfd.readouterr().err)
    assert lines[0] == (14, 30, 1, 2) and lines[-1] == (30, 30, 2, 2)
    assert report.frames_made == 16 and ", 16 frames upscaled at " in report.summary()
