"""Segmented runs resume: the segments a run finished are kept beside the output until it is joined
(`pipelines.resume`), and the same call upscales only the others. On one CPU device, in this process.

The clip is test_segments.py's: 24 frames at 30 fps with a keyframe every 8; segments of 0.25 s cut it into 3.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from vsr.models.checkpoint import save_model
from vsr.models.detect import spec_for
from vsr.models.rrdbnet import RRDBNet
from vsr.pipelines.engine import resolve_precision
from vsr.pipelines.resume import SegmentFolder, remove_stale_folder, segment_folder_path
from vsr.pipelines.segments import _plan_record, plan_video, upscale_video_in_segments
from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, load_model, upscale_video

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import truncate
from tests.pipelines.test_segments import decoded_framemd5, leftovers, make_gop_clip
from tests.processes import VSR, kill_when, run_vsr
from vsr.errors import OptionError, OutputError

pytestmark = media.requires_ffmpeg

LOSSLESS = VideoOptions(codec="ffv1", segment_seconds=0.25)


class Interrupt:
    """An `on_segment` that stops the run (as Ctrl-C would) once `after` segments are kept, counting all it sees."""

    def __init__(self, after: int | None = None):
        self.after = after
        self.seen: list[int] = []

    def __call__(self, result) -> None:
        self.seen.append(result.index)
        if self.after is not None and len(self.seen) == self.after:
            raise KeyboardInterrupt


@pytest.fixture
def run(tmp_path, tiny_rrdbnet_checkpoint):
    clip = make_gop_clip(tmp_path / "clip.mp4")
    options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=4, device="cpu")

    def upscale(output_name: str = "out.mkv", on_segment=None, options=options, video=LOSSLESS):
        return upscale_video_in_segments(clip, tmp_path / output_name, options=options, video=video,
                                         on_segment=on_segment)

    return clip, options, upscale


def test_a_run_cut_short_resumes_with_the_segments_it_kept(run, tmp_path, caplog):
    clip, options, upscale = run
    output = tmp_path / "out.mkv"
    folder = segment_folder_path(output)
    first = Interrupt(after=1)
    with caplog.at_level(logging.INFO), pytest.raises(KeyboardInterrupt):
        upscale(on_segment=first)
    assert not output.exists()
    kept = sorted(path.name for path in folder.glob("segment-*"))
    assert kept == ["segment-0000.json", "segment-0000.mp4"]
    assert f"1 of 3 segments are kept in {folder}; the same command resumes from there" in caplog.text

    second = Interrupt()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = upscale(on_segment=second)
    assert "resuming: 1 of 3 segments were upscaled by an earlier run" in caplog.text
    assert second.seen == [1, 2]  # only the missing ones
    assert result.frames == 24 and result.times.extra == {"segments": 3, "resumed": 1, "devices": ["cpu"],
                                                          "repeated_frames": 0}
    assert not folder.exists()

    # The same frames, times and audio as one uninterrupted run on one device.
    single = upscale_video(clip, tmp_path / "single.mkv", options=options, video=LOSSLESS)
    assert decoded_framemd5(output) == decoded_framemd5(single.output)
    assert media.framemd5(output, "0:a") == media.framemd5(single.output, "0:a")
    assert leftovers(tmp_path, clip, output, single.output) == []


def test_a_file_put_at_the_output_while_segments_ran_stays_and_the_segments_are_kept(run, tmp_path, caplog):
    """The join's own check said "already exists" and the run, taking the new file for its output in place, threw
    every segment away (helper-80)."""
    _, _, upscale = run
    output = tmp_path / "out.mkv"

    def a_file_appears(result):
        output.write_bytes(b"the user's own, put there while the run worked")

    with caplog.at_level(logging.INFO), pytest.raises(OutputError, match="already exists, written while this run"):
        upscale(on_segment=a_file_appears)
    assert output.read_bytes() == b"the user's own, put there while the run worked"
    assert "3 of 3 segments are kept" in caplog.text
    output.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        upscale()
    assert "resuming: 3 of 3 segments were upscaled by an earlier run" in caplog.text


def test_a_kept_segment_is_not_touched_again(run, tmp_path):
    _, _, upscale = run
    output = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=2))
    kept = segment_folder_path(output) / "segment-0001.mp4"
    inode, mtime = kept.stat().st_ino, kept.stat().st_mtime_ns
    third = Interrupt(after=1)  # the one missing segment, then stop before the join
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=third)
    assert third.seen == [2]
    assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (inode, mtime)
    upscale()  # everything kept: only the join is left
    assert output.exists() and not segment_folder_path(output).exists()


def test_other_settings_keep_the_segments_and_are_refused_until_overwrite(run, tmp_path, caplog):
    """They were removed without asking: a forgotten option threw hours of a long video away."""
    _, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1))
    folder = segment_folder_path(tmp_path / "out.mkv")
    kept = (folder / "segment-0000.mp4").read_bytes()
    other = VideoOptions(codec="ffv1", segment_seconds=0.25, start=0.0, end=0.8)
    with pytest.raises(OutputError) as raised:
        upscale(video=other)
    assert str(raised.value) == (
        f"{folder}: 1 segment(s) kept there were made for other settings (--end 0.8, was not given; --start 0.0, was "
        "not given): run as they were made to resume them, or with --overwrite to remove them and start over")
    assert (folder / "segment-0000.mp4").read_bytes() == kept and not (tmp_path / "out.mkv").exists()
    again = Interrupt()
    with caplog.at_level(logging.INFO):
        upscale_video_in_segments(run[0], tmp_path / "out.mkv", options=options, video=other, on_segment=again,
                                  overwrite=True)
    assert ("made for other settings (--end 0.8, was not given; --start 0.0, was not given): the 1 segment(s) kept "
            "there are removed; starting over") in [
        record.getMessage().split(": ", 1)[1] for record in caplog.records if record.levelno == logging.WARNING]
    assert again.seen == [0, 1, 2]


def test_a_checkpoint_rewritten_in_place_starts_the_segments_over(run, tmp_path):
    """The same path, other weights (a training run went on): the kept segments are another model's frames."""
    clip, options, upscale = run
    model = tmp_path / "model.pth"
    model.write_bytes(Path(options.model).read_bytes())
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1), options=dataclasses.replace(options, model=str(model)))
    torch.manual_seed(1)
    other = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4)
    save_model(other, spec_for("RRDBNet", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}), model)
    with pytest.raises(OutputError, match="were made for the checkpoint as it was before it changed: run as they"):
        upscale(options=dataclasses.replace(options, model=str(model)))
    again = Interrupt()
    retrained = dataclasses.replace(options, model=str(model))
    result = upscale_video_in_segments(clip, tmp_path / "out.mkv", options=retrained, video=LOSSLESS,
                                       on_segment=again, overwrite=True)
    assert again.seen == [0, 1, 2]
    clean = upscale_video(clip, tmp_path / "clean.mkv", options=dataclasses.replace(options, model=str(model)),
                          video=LOSSLESS)
    assert decoded_framemd5(result.output) == decoded_framemd5(clean.output)


X264 = VideoOptions(codec="libx264", segment_seconds=0.25)


@pytest.mark.parametrize("change, named", [
    ({"video": dataclasses.replace(X264, crf=20)}, "--crf 20, was 18"),
    ({"video": dataclasses.replace(X264, preset="fast")}, "--preset fast, was medium"),
    ({"video": dataclasses.replace(X264, pix_fmt="yuv444p")}, "--pix-fmt yuv444p, was yuv420p"),
    ({"video": dataclasses.replace(X264, encoder_options={"tune": "film"})}, '"tune": "film"'),
    ({"video": dataclasses.replace(X264, codec="libx265")}, "--codec libx265, was libx264"),
    # x265's settings alone make codec "auto" write HEVC (upscale.encoder_choice): what it resolves to is recorded.
    ({"video": dataclasses.replace(X264, codec="auto", encoder_options={"x265-params": "aq-mode=1"})},
     "--codec libx265, was libx264"),
    ({"video": dataclasses.replace(X264, deinterlace="on")}, "--deinterlace on, was not given"),
    ({"video": dataclasses.replace(X264, crop="32:32:0:0")}, "--crop "),
    ({"video": dataclasses.replace(X264, dedup=4.0)}, "--dedup 4.0, was not given"),
    ({"options": {"model": "bicubic"}}, "--model bicubic, was "),
    ({"options": {"outscale": 2.0}}, "--outscale 2.0, was not given"),
    ({"options": {"height": 96}}, "--height 96, was not given"),
    ({"options": {"strength": 0.5}}, "--strength 0.5, was not given"),
    ({"options": {"blend": "SAME", "alpha": 0.5}}, "--blend "),
], ids=lambda value: value if isinstance(value, str) else None)
def test_each_setting_that_changes_the_segments_is_refused_by_name(run, tmp_path, change, named):
    clip, options, upscale = run
    output = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1), video=X264)
    kept = sorted(path.name for path in segment_folder_path(output).iterdir())
    changed = dataclasses.replace(options, **{key: options.model if value == "SAME" else value
                                              for key, value in change.get("options", {}).items()})
    with pytest.raises(OutputError, match=re.escape(named)):
        upscale(options=changed, video=change.get("video", X264))
    assert sorted(path.name for path in segment_folder_path(output).iterdir()) == kept


def test_the_same_settings_in_effect_resume(run, tmp_path):
    """Nothing that changes the segments: the codec's default named (--crf 18 for x264), "auto" that resolves to the
    codec named before, or a speed setting."""
    _, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1), video=X264)
    again = Interrupt(after=1)
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=again, video=dataclasses.replace(X264, crf=18, preset="medium"))
    assert again.seen == [1]
    last = Interrupt()
    upscale(on_segment=last, video=dataclasses.replace(X264, codec="auto"), options=dataclasses.replace(
        options, batch_size=2))
    assert last.seen == [2]


def _as_an_earlier_vsr_wrote_it(folder: Path, crf=None) -> None:
    """plan.json as vsr wrote it before it recorded the settings in effect: the settings as given, crf None for the
    codec's default."""
    plan = json.loads((folder / "plan.json").read_text())
    for key in ("version", "encoding", "weights"):
        del plan[key]
    plan["settings"]["crf"] = crf
    (folder / "plan.json").write_text(json.dumps(plan, indent=1))


def test_an_earlier_vsrs_plan_resumes_where_its_defaults_are_todays(run, tmp_path):
    _, _, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1), video=X264)
    folder = segment_folder_path(tmp_path / "out.mkv")
    _as_an_earlier_vsr_wrote_it(folder)
    again = Interrupt(after=1)
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=again, video=X264)
    assert again.seen == [1]
    assert json.loads((folder / "plan.json").read_text())["encoding"]["crf"] == "18"  # (recorded anew, in effect)


def test_an_earlier_vsrs_x265_run_at_its_default_crf_20_is_named_and_resumes_with_crf_20(run, tmp_path):
    """x265's default CRF went from 20 to 23: a run begun before and resumed after mixed the two."""
    _, _, upscale = run
    x265 = VideoOptions(codec="libx265", segment_seconds=0.25)
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1), video=dataclasses.replace(x265, crf=20))  # (20: the default then)
    folder = segment_folder_path(tmp_path / "out.mkv")
    _as_an_earlier_vsr_wrote_it(folder)
    with pytest.raises(OutputError) as raised:
        upscale(video=x265)
    assert ("made for other settings (--crf 23, was 20); vsr's earlier defaults for --crf: run as they were made"
            ) in str(raised.value)
    again = Interrupt()
    upscale(on_segment=again, video=dataclasses.replace(x265, crf=20))
    assert again.seen == [1, 2]


def test_vsr_upscale_with_a_forgotten_option_is_one_line_and_keeps_the_segments(run, tmp_path):
    clip, options, upscale = run
    output = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1))
    command = ["upscale", clip, "-o", output, "--codec", "ffv1", "--segment-seconds", "0.25"]
    refused = run_vsr(*command)  # (-m forgotten)
    assert refused.returncode == 4
    assert refused.stderr.strip().splitlines() == [
        f"vsr: error: {segment_folder_path(output)}: 1 segment(s) kept there were made for other settings (--model "
        f"realesrgan-x4plus, was {options.model}): run as they were made to resume them, or with --overwrite to "
        "remove them and start over"]
    done = run_vsr(*command, "-m", options.model)
    assert done.returncode == 0, done.stderr
    assert "1 of 3 segments from an earlier run" in done.stdout
    # (its speed is of the frames it made: "24 frames ... (X fps" read as the speed of all 24)
    said = r"wrote .*out\.mkv: 24 frames \(16 upscaled now\) at 256x192 in [\d.]+ s \([\d.]+ fps"
    assert re.search(said, done.stdout), done.stdout


def test_settings_that_only_change_the_speed_keep_the_segments(run, tmp_path):
    _, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1))
    again = Interrupt()
    upscale(on_segment=again, options=UpscaleOptions(model=options.model, batch_size=2, device="cpu"))
    assert again.seen == [1, 2]


def test_a_run_that_fails_before_any_segment_leaves_nothing(run, tmp_path):
    clip, options, upscale = run
    with pytest.raises(OptionError):
        upscale(options=UpscaleOptions(model=options.model, batch_size=0))
    assert leftovers(tmp_path, clip) == []


def test_two_runs_on_one_output_do_not_mix(run, tmp_path):
    clip, options, upscale = run
    output = tmp_path / "out.mkv"
    plan = plan_video(clip, 1, LOSSLESS)
    with SegmentFolder(output, _plan_record(clip, options, LOSSLESS, plan)):  # a first run, still working
        with pytest.raises(OutputError) as raised:
            upscale()
    assert str(raised.value) == (f"{output}: another vsr run is writing it (its segments in "
                                 f"{segment_folder_path(output)} are locked)")


def test_a_folder_of_that_name_that_is_not_vsrs_is_left_alone(run, tmp_path):
    _, _, upscale = run
    stranger = segment_folder_path(tmp_path / "out.mkv")
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="is not vsr's folder of segments"):
        upscale()
    assert (stranger / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("left", [["lock"], ["lock", ".plan.json.0123abcd.part"],
                                  ["segment-0001.mp4", "segment-0002.json", ".segment-0003.partial.mp4"]])
def test_a_folder_left_without_its_plan_is_taken_over(run, tmp_path, left):
    """A kill -9 before the plan was written, or while the folder was removed (in its own order), left a folder that
    every later run refused as "not vsr's" (helper-50)."""
    _, _, upscale = run
    folder = segment_folder_path(tmp_path / "out.mkv")
    folder.mkdir()
    for name in left:
        (folder / name).touch()
    upscale()
    assert (tmp_path / "out.mkv").exists() and not folder.exists()


def test_a_run_that_finds_every_segment_kept_only_joins_and_says_so(run, tmp_path):
    clip, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=3))  # the last one: stopped before the join
    output = tmp_path / "out.mkv"
    done = run_vsr("upscale", clip, "-o", output, "-m", options.model, "--codec", "ffv1", "--segment-seconds", "0.25")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"wrote {re.escape(str(output))}: 24 frames at 256x192 in [0-9.]+ s \(3 of 3 segments from "
                        r"an earlier run\)", done.stdout.strip())  # (was "0.00 fps; busy time ;")


def test_stopped_once_its_output_is_in_place_a_run_keeps_no_segments(run, tmp_path, caplog, monkeypatch):
    """Ctrl-C while the output's folder was synced, after the rename: the run said its segments were kept and the same
    command resumed, which then failed on the finished output ("already exists"), the folder left for ever."""
    clip, options, upscale = run

    def interrupted(folder):
        raise KeyboardInterrupt

    monkeypatch.setattr("vsr.pipelines.segments.fsync_folder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        upscale()
    assert decoded_framemd5(tmp_path / "out.mkv") and not segment_folder_path(tmp_path / "out.mkv").exists()
    assert "segments are kept" not in caplog.text


@pytest.mark.parametrize("plan", ["kept", "removed"])
def test_an_output_made_in_one_go_removes_the_segments_an_earlier_run_left(run, tmp_path, caplog, plan):
    """Rerun without segments (or the video now short), the output was made, and the folder stayed beside it. A
    folder whose removal was cut short, its plan gone first, stayed even so (helper-84)."""
    _, _, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1))
    folder = segment_folder_path(tmp_path / "out.mkv")
    assert folder.exists()
    if plan == "removed":
        (folder / "plan.json").unlink()
    with caplog.at_level(logging.WARNING):
        upscale(video=VideoOptions(codec="ffv1", segment_seconds=None))
    assert not folder.exists() and (tmp_path / "out.mkv").exists()
    assert f"{folder}: removed 1 segment(s) an earlier run kept, of no use to this one" in caplog.text


@pytest.mark.parametrize("damage, message", [
    (lambda damaged: truncate(damaged, damaged), "cannot read back segment 2 of 3"),
    # Another segment's frames: the join's repair of MP4's edit-list delay moved them to this one's times.
    (lambda damaged: shutil.copyfile(damaged.with_name("segment-0000.mp4"), damaged),
     "cannot join segment 2 of 3 .segment-0001.mp4.: its frame times are not the ones it was encoded with"),
], ids=["cut short", "another segment's file"])
def test_a_kept_segment_damaged_since_is_upscaled_again_by_the_next_run(run, tmp_path, caplog, damage, message):
    """It was read back, and refused, by every run after (or, another segment's file, joined as this one)."""
    clip, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=3))
    damaged = segment_folder_path(tmp_path / "out.mkv") / "segment-0001.mp4"
    damage(damaged)
    with caplog.at_level(logging.WARNING), pytest.raises(OutputError, match=message):
        upscale()
    assert (f"{damaged}: removed, as it cannot be read back as it was written; the next run upscales that segment "
            "again") in caplog.text
    again = Interrupt()
    result = upscale(on_segment=again)
    assert again.seen == [1]
    single = upscale_video(clip, tmp_path / "single.mkv", options=options, video=LOSSLESS)
    assert decoded_framemd5(result.output) == decoded_framemd5(single.output)


def test_a_segment_record_that_cannot_be_written_is_one_line_and_the_rest_resumes(run, tmp_path):
    """A full disk (here: a folder in the record's place) at a segment's record was a traceback."""
    _, _, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1))
    blocked = segment_folder_path(tmp_path / "out.mkv") / "segment-0001.json"
    blocked.mkdir()
    with pytest.raises(OutputError, match=f"cannot write {blocked}: Is a directory"):
        upscale()
    blocked.rmdir()
    again = Interrupt()
    upscale(on_segment=again)
    assert again.seen == [1, 2] and (tmp_path / "out.mkv").exists()


def test_bad_segment_lengths_are_one_line(run):
    _, _, upscale = run
    with pytest.raises(OptionError, match=r"--segment-seconds must be more than 0 \(0 on the command line: never\)"):
        upscale(video=VideoOptions(segment_seconds=-1))


def test_vsr_upscale_killed_resumes(tmp_path, tiny_rrdbnet_checkpoint):
    """`vsr upscale` killed (SIGKILL, no chance to clean up) after its first segment: the same command finishes the
    job from the segments kept, and its output has the frames of an uninterrupted run."""
    clip = make_gop_clip(tmp_path / "clip.mp4", frames=96)  # 12 segments of 8 frames at --segment-seconds 0.25
    output = tmp_path / "out.mkv"
    command = ["upscale", clip, "-o", output, "-m", tiny_rrdbnet_checkpoint, "--segment-seconds", "0.25",
               "--codec", "ffv1", "-b", "1"]
    folder = segment_folder_path(output)
    kill_when(list(map(str, [*VSR, *command])), lambda: any(folder.glob("segment-*.json")), "a segment was kept")
    kept = len(list(folder.glob("segment-*.json")))
    assert not output.exists() and 1 <= kept < 12, kept
    done = run_vsr(*command)
    assert done.returncode == 0, done.stderr
    assert f"resuming: {kept} of 12 segments" in done.stderr
    assert f"; {kept} of 12 segments from an earlier run)" in done.stdout
    single = upscale_video(clip, tmp_path / "single.mkv", video=LOSSLESS,
                           options=UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), batch_size=1, device="cpu"))
    assert decoded_framemd5(output) == decoded_framemd5(single.output)
    assert leftovers(tmp_path, clip, output, single.output) == []


def test_a_full_disk_as_the_segments_start_names_their_folder(tmp_path):
    """It said "cannot write in .: File too large" (the output's folder, for -o out.mkv), not what it wrote, and
    left the folder it made, holding its lock file (helper-86)."""
    import resource
    import subprocess

    clip = make_gop_clip(tmp_path / "clip.mp4", frames=24)
    command = [*VSR, "upscale", "clip.mp4", "-o", "out.mkv", "-m", "bicubic", "--segment-seconds", "0.25"]
    full = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY)))
    assert full.returncode == 4
    assert full.stderr.strip().splitlines() == [
        "vsr: error: .out.mkv.segments: cannot write the record of the segments (File too large)"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [clip.name]  # (its folder, made then, is gone)
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [clip.name, "out.mkv"]


@pytest.mark.parametrize("left", [[], ["lock"]])
def test_a_folder_another_run_is_making_is_not_removed_as_stale(tmp_path, left):
    """A plan-less folder of vsr's own names is what a cut-short removal leaves, but one empty or holding only its
    lock is what another run has just made and is about to lock (helper-87)."""
    folder = segment_folder_path(tmp_path / "out.mkv")
    folder.mkdir()
    for name in left:
        (folder / name).touch()
    remove_stale_folder(tmp_path / "out.mkv")
    assert sorted(os.listdir(folder)) == left


def _auto_precision_here(model: str) -> str:
    """What --precision auto chooses for `model` on this machine's CPU: bf16 where it has bf16 instructions."""
    return resolve_precision("auto", torch.device("cpu"), load_model(model, progress=False).spec)


def test_the_decoder_and_precision_named_as_auto_chose_them_resume(run, tmp_path):
    """`--precision bf16` where "auto" had chosen bf16 was refused as a change (--precision bf16, was auto), and so was
    `--decoder pyav` where it had chosen PyAV: what the segments are made with is compared."""
    _, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1))
    precision = _auto_precision_here(options.model)
    again = Interrupt()
    upscale(on_segment=again, options=dataclasses.replace(options, precision=precision),
            video=dataclasses.replace(LOSSLESS, decoder="pyav"))
    assert again.seen == [1, 2]


def test_segments_made_where_auto_chose_otherwise_are_refused_by_name_and_kept(run, tmp_path):
    """A run begun on a GPU ("auto": DALI, fp16) and resumed on a CPU (PyAV, bf16 or fp32) made the rest otherwise,
    and said nothing. Its plan, as a GPU run writes it; one of an earlier vsr, without what "auto" chose, resumes."""
    _, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1))
    folder = segment_folder_path(tmp_path / "out.mkv")
    plan = json.loads((folder / "plan.json").read_text())
    (folder / "plan.json").write_text(json.dumps({**plan, "resolved": {"decoder": "dali", "precision": "fp16",
                                                                       "outscale": None}}))
    kept = sorted(path.name for path in folder.iterdir())
    with pytest.raises(OutputError) as refused:
        upscale()
    assert str(refused.value) == (
        f"{folder}: 1 segment(s) kept there were made for other settings (--decoder pyav, was dali; --precision "
        f"{_auto_precision_here(options.model)}, was fp16); what --decoder auto, --precision auto chose on the machine "
        "that made them: run as they were made (--decoder dali --precision fp16) to resume them, or with --overwrite "
        "to remove them and start over")
    assert sorted(path.name for path in folder.iterdir()) == kept and not (tmp_path / "out.mkv").exists()

    plan.pop("resolved", None)  # (an earlier vsr's plan: the settings compared as given, "auto" alike)
    (folder / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(OutputError, match=re.escape("(--precision bf16, was auto)")):
        upscale(options=dataclasses.replace(options, precision="bf16"))
    again = Interrupt()
    upscale(on_segment=again)
    assert again.seen == [1, 2]


@pytest.mark.parametrize("first, then", [(None, 4.0), (4.0, None)])
def test_an_outscale_of_the_models_own_scale_is_no_change(run, tmp_path, first, then):
    """-s 4 with a ×4 model makes what no -s makes: it was refused as a change (--outscale 4.0, was not given)."""
    clip, options, upscale = run
    with pytest.raises(KeyboardInterrupt):
        upscale(on_segment=Interrupt(after=1), options=dataclasses.replace(options, outscale=first))
    again = Interrupt()
    result = upscale(on_segment=again, options=dataclasses.replace(options, outscale=then))
    assert again.seen == [1, 2]
    single = upscale_video(clip, tmp_path / "single.mkv", options=options, video=LOSSLESS)
    assert decoded_framemd5(result.output) == decoded_framemd5(single.output)
    with pytest.raises(KeyboardInterrupt):
        upscale("two.mkv", on_segment=Interrupt(after=1), options=dataclasses.replace(options, outscale=first))
    with pytest.raises(OutputError, match=re.escape("(--outscale 2.0, was not given)")):
        upscale("two.mkv", options=dataclasses.replace(options, outscale=2.0))
