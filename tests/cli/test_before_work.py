"""What `vsr upscale` and `vsr batch` say before any work: inputs that cannot be read and outputs that cannot be
written, every one at once; preview windows that reach past a video's end; files a batch leaves out.

Real tiny clips and images, the real command (forked from a server that has torch loaded), outputs judged by ffprobe.
"""

import functools
import os
import shutil
import subprocess

import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import make_clip
from tests.processes import VSR, run_vsr

vsr = functools.partial(run_vsr, check=True)


def write_png(path, color="gray"):
    media.ffmpeg("-f", "lavfi", "-i", f"color={color}:size=8x8", "-frames:v", "1", path)
    return path


def test_a_missing_input_among_several_stops_the_run_before_any_is_begun(tmp_path):
    """`vsr upscale a.mp4 missing.mp4` upscaled a.mp4 first and said the missing one at its turn."""
    clip = make_clip(tmp_path / "a.mp4", frames=3)
    still = write_png(tmp_path / "still.png")
    missing, folder = tmp_path / "missing.mp4", tmp_path / "folder"
    folder.mkdir()
    result = vsr("upscale", clip, missing, still, folder, "-m", "bicubic", "-s", "2", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"vsr: error: {missing}: no such file",
        f"vsr: error: {folder}: is a folder; `vsr batch {folder} OUT_DIR` upscales every video and image in it",
        "vsr: nothing was begun: 2 problems found before any work (said above)"]
    assert result.stdout == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.mp4", "folder", "still.png"]


def test_names_after_a_double_dash_that_look_like_options_are_said_so_and_nothing_runs(tmp_path, monkeypatch):
    """`vsr upscale -- clip.mp4 -m bicubic` took -m and bicubic for inputs and began a run of the default model."""
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    monkeypatch.chdir(tmp_path)  # (names as a user types them, relative to the folder)
    result = vsr("upscale", "--", "clip.mp4", "-m", "bicubic", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "vsr: error: -m: no such file; it looks like an option, but after -- every word is an input: give options "
        "before --",
        "vsr: error: bicubic: no such file",
        "vsr: nothing was begun: 2 problems found before any work (said above)"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]
    # One input is checked before torch loads: said the same way (it was "-s: no such file").
    result = vsr("upscale", "-m", "bicubic", "--", "-s", check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        "vsr: error: -s: no such file; it looks like an option, but after -- every word is an input: give options "
        "before --")
    # A file whose name starts with a dash is an input like any other after --.
    shutil.copy(clip, tmp_path / "-dash.mp4")
    vsr("upscale", "-m", "bicubic", "-s", "2", "--", "-dash.mp4", "clip.mp4")
    assert len(media.ffprobe_frame_pts(tmp_path / "-dash.x2.mp4")) == 3
    assert len(media.ffprobe_frame_pts(tmp_path / "clip.x2.mp4")) == 3


def test_outputs_that_cannot_be_written_as_planned_stop_several_inputs_before_any_is_begun(tmp_path):
    """An output that exists (without --overwrite) and one made from two inputs (photo.png and photo.tiff both make
    photo.x2.png) were found at their turn, after the inputs before them were upscaled."""
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    other = make_clip(tmp_path / "other.mp4", frames=3)
    (tmp_path / "other.x2.mp4").write_bytes(b"kept")
    png, tiff = write_png(tmp_path / "photo.png", "black"), write_png(tmp_path / "photo.tiff", "white")
    result = vsr("upscale", clip, other, png, tiff, "-m", "bicubic", "-s", "2", check=False)
    assert result.returncode == 4 and result.stderr.strip().splitlines() == [
        f"vsr: error: {tmp_path / 'other.x2.mp4'}: already exists (use --overwrite to replace it)",
        f"vsr: error: {tmp_path / 'photo.x2.png'}: both {png} and {tiff} would be written there; upscale {tiff} on "
        "its own, with -o naming its output",
        "vsr: nothing was begun: 2 problems found before any work (said above)"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "clip.mp4", "other.mp4", "other.x2.mp4", "photo.png", "photo.tiff"]
    assert (tmp_path / "other.x2.mp4").read_bytes() == b"kept"
    # With --overwrite the existing output is replaced, and the two inputs of one output still are not begun.
    result = vsr("upscale", clip, other, png, tiff, "-m", "bicubic", "-s", "2", "--overwrite", check=False)
    assert result.returncode == 4 and len(result.stderr.strip().splitlines()) == 2
    vsr("upscale", clip, other, png, "-m", "bicubic", "-s", "2", "--overwrite")
    assert len(media.ffprobe_frame_pts(tmp_path / "other.x2.mp4")) == 3


def test_outputs_into_a_folder_the_run_makes_are_not_checked_beside_their_inputs(tmp_path):
    """`-o new/` was refused for an output of the same name beside the input ("already exists"), which the run
    never writes: the outputs go into the folder it makes, where none exists yet."""
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    still = write_png(tmp_path / "still.png")
    (tmp_path / "clip.x2.mp4").write_bytes(b"kept")
    for inputs in ([clip], [clip, still]):
        folder = tmp_path / f"new{len(inputs)}"
        vsr("upscale", *inputs, "-m", "bicubic", "-s", "2", "-o", f"{folder}/")
        assert len(media.ffprobe_frame_pts(folder / "clip.x2.mp4")) == 3
    assert (tmp_path / "new2" / "still.x2.png").is_file()
    assert (tmp_path / "clip.x2.mp4").read_bytes() == b"kept"


def test_an_input_that_cannot_be_read_stops_several_inputs_before_any_is_begun(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    locked = make_clip(tmp_path / "locked.mp4", frames=3)
    locked.chmod(0)
    command = [*VSR, "upscale", str(clip), str(locked), "-m", "bicubic", "-s", "2"]
    if os.geteuid() == 0:  # (root reads any file: drop that power, as the tests may run as root)
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: every file can be read")
        command = [shutil.which("setpriv"), "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"vsr: error: {locked}: cannot be read (Permission denied)",
        "vsr: nothing was begun: 1 problem found before any work (said above)"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4", "locked.mp4"]


def test_a_file_that_is_no_video_is_still_its_own_error_and_the_others_are_upscaled(tmp_path):
    """What only reading an input finds stays that input's error, said at its turn (as the README says)."""
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    (tmp_path / "notes.mp4").write_text("not a video")
    result = vsr("upscale", tmp_path / "notes.mp4", clip, "-m", "bicubic", "-s", "2", check=False)
    errors = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(errors) == 2
    assert errors[0].startswith(f"vsr: error: {tmp_path / 'notes.mp4'}: not a media file FFmpeg can read")
    assert errors[1] == "vsr: 1 of 2 inputs failed (said above); the others are written"
    assert len(media.ffprobe_frame_pts(tmp_path / "clip.x2.mp4")) == 3


@pytest.mark.parametrize("window, warnings, frames", [
    (["--end", "1:00"], ["--end 1:00 is past the video's end (0:00.32): upscaling to its end"], 8),
    (["--frames", "50"], ["--frames 50 is more than the video has (8 frames): upscaling those 8"], 8),
    (["--start", "0.2", "--frames", "50"],
     ["--frames 50 is more than the video has from --start 0:00.2 (3 frames): upscaling those 3"], 3),
    (["--end", "90", "--frames", "9"], ["--end 1:30 is past the video's end (0:00.32): upscaling to its end",
                                        "--frames 9 is more than the video has (8 frames): upscaling those 8"], 8),
    (["--end", "0.2", "--frames", "50"], [], 5),  # (--end stops the window inside the video: as asked)
    (["--end", "0.32", "--frames", "8"], [], 8),  # (the whole video, to its end: as asked)
])
@pytest.mark.parametrize("segments", [False, True])
def test_a_preview_past_the_video_s_end_is_warned_about_and_cut_there(tmp_path, window, warnings, frames, segments):
    """`--end 1:00` on a shorter video wrote the whole video without a word (exit 0), though --start past the end is
    an error; so did --frames beyond the frames there are. In one run and in resumable segments alike."""
    clip = make_clip(tmp_path / "clip.mp4", frames=8, options={"g": "2"})  # 0.32 s at 25 fps
    cut = ["--segment-seconds", "0.08"] if segments else []
    result = vsr("upscale", clip, "-m", "bicubic", "-s", "2", *window, *cut)
    assert result.stderr.strip().splitlines() == [f"vsr: WARNING: {clip}: {warning}" for warning in warnings]
    assert len(media.ffprobe_frame_pts(tmp_path / "clip.x2.mp4")) == frames


def test_frames_past_an_image_sequence_s_end_are_warned_about(tmp_path):
    """An image sequence is not planned from its packets: its frames are counted as they are decoded."""
    for number in range(1, 4):
        write_png(tmp_path / f"f{number:02d}.png")
    result = vsr("upscale", tmp_path / "f%02d.png", "-m", "bicubic", "-s", "2", "--frames", "10")
    assert result.stderr.strip().splitlines() == [
        f"vsr: WARNING: {tmp_path / 'f%02d.png'}: --frames 10 is more than the video has (3 frames): upscaling "
        "those 3"]
    assert len(list(tmp_path.glob("f??.x2.png"))) == 3


def test_a_dry_run_lists_the_files_it_leaves_out_as_not_media_a_few_by_name(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "docs").mkdir(parents=True)
    make_clip(source / "clip.mp4", frames=2)
    (source / "notes.txt").write_text("shot list")
    for number in range(6):
        (source / "docs" / f"page{number}.md").write_text("text")
    (source / ".hidden.txt").write_text("left out without a word, as hidden files are")
    result = vsr("batch", source, out, "-m", "bicubic", "--dry-run")
    assert result.stdout.splitlines() == [
        "new                  clip.mp4 → clip.x4.mp4",
        "skipped (not media)  notes.txt",
        "skipped (not media)  docs/page0.md",
        "skipped (not media)  docs/page1.md",
        "skipped (not media)  docs/page2.md",
        "skipped (not media)  docs/page3.md",
        "skipped (not media)  and 2 more files",
        f"1 of 1 jobs to run in {out}; 7 files skipped (not media); nothing was run or written (--dry-run)"]
    # The filters choose what is listed, as they choose the jobs.
    result = vsr("batch", source, out, "-m", "bicubic", "--dry-run", "--exclude", "*.md")
    assert result.stdout.splitlines()[1:] == [
        "skipped (not media)  notes.txt",
        f"1 of 1 jobs to run in {out}; 1 file skipped (not media); nothing was run or written (--dry-run)"]
    result = vsr("batch", source, out, "-m", "bicubic", "--include", "*.txt", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"vsr: error: {source}: no videos or images found (with the --include/--exclude filters given); 1 other "
        "file, such as notes.txt"]
    assert not out.exists()


def test_a_batch_preview_of_images_says_once_that_an_image_has_no_time(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_clip(source / "clip.mp4", frames=2)
    for name in ("a.png", "b.png"):
        write_png(source / name)
    result = vsr("batch", source, out, "-m", "bicubic", "--end", "1", "--dry-run")
    assert result.stderr.strip().splitlines() == [
        "vsr: WARNING: a.png (and 1 more image): an image has no time: --start, --end and --frames make previews of "
        "videos; images are upscaled whole"]


def test_one_input_given_twice_in_other_spellings_is_upscaled_once_with_a_warning(tmp_path, monkeypatch):
    """`vsr upscale a.mp4 /abs/a.mp4` (or a link to it) was refused as two inputs that "would both be written" to
    a.x2.mp4; it is one file, upscaled once, as `cp a a dir/` copies it once. A sequence's pattern too."""
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "a.mp4", frames=3)
    os.symlink("a.mp4", tmp_path / "link.mp4")
    for number in range(1, 3):
        write_png(tmp_path / f"f{number:02d}.png")
    result = vsr("upscale", "a.mp4", tmp_path / "a.mp4", "f%02d.png", "link.mp4", tmp_path / "f%02d.png",
                 "-m", "bicubic", "-s", "2")
    assert result.stderr.strip().splitlines() == [
        f"vsr: WARNING: a.mp4 and {tmp_path / 'a.mp4'} are one input, given twice; upscaling it once",
        "vsr: WARNING: a.mp4 and link.mp4 are one input, given twice; upscaling it once",
        f"vsr: WARNING: f%02d.png and {tmp_path / 'f%02d.png'} are one input, given twice; upscaling it once"]
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["wrote a.x2.mp4", "wrote f%02d.x2.png"]
    assert len(media.ffprobe_frame_pts(tmp_path / "a.x2.mp4")) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "a.mp4", "a.x2.mp4", "f01.png", "f01.x2.png", "f02.png", "f02.x2.png", "link.mp4"]
