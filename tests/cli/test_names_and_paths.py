"""`vsr upscale` where names and paths are unusual: what stands in the output's place, names with a printf number
in them, names near the file system's limit, inputs that are pipes. Each run checks that the input is untouched."""

import functools
import hashlib
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import make_clip
from tests.processes import VSR, run_vsr

vsr = functools.partial(run_vsr, check=True)

pytestmark = media.requires_ffmpeg


def state(path):
    """What a file is: its bytes' hash and its modification time."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "clip.mp4", frames=2)


def write_png(path, size=(20, 12)):
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind", ["pipe", "link to /dev/null", "folder"])
@pytest.mark.parametrize("input_kind", ["video", "image"])
def test_overwrite_replaces_files_only_not_a_pipe_a_device_or_a_folder(tmp_path, clip, kind, input_kind):
    """The output is renamed into place: --overwrite replaced a named pipe, or (as root) -o /dev/null the system's
    /dev/null, with the upscaled file; a folder in the output's place took the video inside it, under its name again,
    and an image failed once upscaled."""
    source = clip if input_kind == "video" else write_png(tmp_path / "still.png")
    output = tmp_path / "out" / f"{source.stem}.x4{source.suffix}"
    output.parent.mkdir()
    if kind == "pipe":
        os.mkfifo(output)
    elif kind == "folder":
        output.mkdir()
    else:
        output.symlink_to("/dev/null")
    before = state(source)
    # (the folder named as -o is an existing folder, which takes the output inside it: named here by its parent)
    result = vsr("upscale", source, "-o", f"{output.parent}/", "-m", "bicubic", "--overwrite", check=False)
    what = "is a folder" if kind == "folder" else "is a device or a pipe, not a file"
    assert result.returncode == 4 and result.stderr.strip().splitlines() == [
        f"vsr: error: {output}: {what}" + ("; --overwrite replaces files only: name the output file with -o"
                                            if kind == "folder" else
                                            "; vsr writes a file and puts it in place: name a file with -o")]
    assert sorted(path.name for path in output.parent.iterdir()) == [output.name]
    assert output.is_dir() if kind == "folder" else output.is_fifo() if kind == "pipe" else output.is_symlink()
    assert kind != "folder" or not any(output.iterdir())
    assert state(source) == before


def test_a_video_whose_name_holds_a_printf_number_is_one_file_in_and_out(tmp_path):
    """"100%done.mp4" was taken for an image sequence: "not a sequence of images vsr reads", by `vsr upscale`,
    `vsr probe` and `vsr batch` alike; and -o "50%done.mkv" was refused as a sequence of .mkv images."""
    source = make_clip(tmp_path / "100%done.mp4", frames=3)
    before = state(source)
    vsr("upscale", source, "-m", "bicubic", "-s", "2")
    assert len(media.ffprobe_frame_pts(tmp_path / "100%done.x2.mp4")) == 3
    vsr("upscale", source, "-m", "bicubic", "-s", "2", "-o", tmp_path / "50%done.mkv")
    assert len(media.ffprobe_frame_pts(tmp_path / "50%done.mkv")) == 3
    assert "100%done.mp4: mov,mp4" in vsr("probe", source).stdout
    (tmp_path / "in").mkdir()
    os.link(source, tmp_path / "in" / "take 2%d.mp4")
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "-m", "bicubic", "-s", "2")
    assert "1 done (of 1)" in result.stdout and (tmp_path / "out" / "take 2%d.x2.mp4").is_file()
    assert state(source) == before
    # An image's name with a %d is still a sequence's pattern.
    result = vsr("upscale", source, "-m", "bicubic", "-s", "2", "-o", tmp_path / "f%03d.png")
    assert sorted(path.name for path in tmp_path.glob("f*.png")) == ["f001.png", "f002.png", "f003.png"]


@pytest.mark.parametrize("suffix", [".y4m", ".mxf"])
def test_a_y4m_or_mxf_video_whose_name_holds_a_printf_number_is_one_file(tmp_path, suffix):
    """`is_sequence` knew only `vsr batch`'s video suffixes: "in%d.mxf" was "not a sequence of images vsr reads",
    and -o "out%d.mxf" an "unsupported image type '.mxf'"."""
    source = tmp_path / f"in%d{suffix}"
    codec = ["-pix_fmt", "yuv420p"] if suffix == ".y4m" else ["-c:v", "mpeg2video"]
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "3",
                    *codec, str(source)], check=True)
    before = state(source)
    assert f"in%d{suffix}: " in vsr("probe", source).stdout
    default = f"in%d.x2{'.mkv' if suffix == '.y4m' else suffix}"  # (Y4M holds no H.264: .mkv; MXF does)
    vsr("upscale", source, "-m", "bicubic", "-s", "2")
    assert len(media.ffprobe_frame_pts(tmp_path / default)) == 3
    # An MXF output is one file too (not an image type).
    vsr("upscale", source, "-m", "bicubic", "-s", "2", "-o", tmp_path / "out%d.mxf")
    assert len(media.ffprobe_frame_pts(tmp_path / "out%d.mxf")) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([f"in%d{suffix}", default, "out%d.mxf"])
    assert state(source) == before


@pytest.mark.parametrize("stem", ["a" * 249, "é" * 124 + "a"], ids=["ascii", "utf-8"])
def test_an_output_name_over_the_limit_is_one_line_before_the_work(tmp_path, stem):
    """An input of 253 bytes makes an output of 255 + 1: the video said "the name is too long for the file system"
    (exit 2), the image "cannot write (File name too long)" once upscaled, a batch's job "OSError: [Errno 36] File
    name too long: ..."; a sequence's frames failed as the first was written."""
    video = make_clip(tmp_path / f"{stem}.mp4", frames=2)
    image = write_png(tmp_path / f"{stem}.png")
    before = {path: state(path) for path in (video, image)}
    for source in (video, image):
        result = vsr("upscale", source, "-m", "bicubic", "-s", "2", check=False)
        output = tmp_path / f"{stem}.x2{source.suffix}"
        assert result.returncode == 4 and result.stderr.strip().splitlines() == [
            f"vsr: error: {output}: the name is 256 bytes, more than the 255 a file name may have there; give the "
            "output a shorter name (-o)"]
    result = vsr("upscale", video, "-m", "bicubic", "-s", "2", "-o", tmp_path / f"{'s' * 246}%06d.png", check=False)
    assert result.returncode == 4 and "000001.png: the name is 256 bytes" in result.stderr
    assert sorted(tmp_path.iterdir()) == sorted(before)
    (tmp_path / "in").mkdir()
    os.link(video, tmp_path / "in" / video.name)
    result = vsr("batch", tmp_path / "in", tmp_path / "out", "-m", "bicubic", "-s", "2", check=False)
    assert result.returncode == 1 and "the name is 256 bytes" in result.stderr and "Errno" not in result.stderr
    assert [path.name for path in (tmp_path / "out").iterdir()] == [".vsr-journal.sqlite"]
    assert {path: state(path) for path in before} == before
    # A name of 255 bytes is written (its temporary's name, longer, is made short).
    longest = tmp_path / ("b" * 248 + ".x2.mp4")
    assert len(os.fsencode(longest.name)) == 255
    vsr("upscale", video, "-m", "bicubic", "-s", "2", "-o", longest)
    assert sorted(tmp_path.iterdir()) == sorted([*before, tmp_path / "in", tmp_path / "out", longest])


def test_an_input_that_is_a_pipe_is_one_line_that_says_so(tmp_path, clip):
    """A named pipe (or /dev/stdin fed by one) was "the file is empty": its size is 0 until read. vsr opens its
    input several times, so it is refused, by `vsr upscale` and `vsr probe` alike, without opening it."""
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    for command in (["upscale", fifo, "-m", "bicubic"], ["probe", fifo]):
        result = vsr(*command, check=False, timeout=60)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [
            f"vsr: error: {fifo}: is a pipe or a device, not a file; vsr reads its input more than once: save it to "
            "a file and give that"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4", "pipe.mp4"]


def test_an_input_named_through_dev_gets_no_output_in_dev(tmp_path, clip):
    """`vsr upscale /dev/stdin < clip.mp4` wrote /dev/stdin.x4.mkv (as root; others were refused /dev): beside the
    input is the system's folder. Named with -o, the output is written."""
    before = state(clip)
    with open(clip, "rb") as stdin:
        result = subprocess.run([*VSR, "upscale", "/dev/stdin", "-m", "bicubic"], stdin=stdin, capture_output=True,
                                text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 4 and result.stderr.strip().splitlines() == [
        "vsr: error: /dev/stdin.x4.mkv: an input read through /dev has no folder of its own to write beside; name the "
        "output with -o"]
    assert not os.path.lexists("/dev/stdin.x4.mkv") and not os.path.lexists("/dev/.stdin.x4.partial.mkv")
    with open(clip, "rb") as stdin:
        subprocess.run([*VSR, "upscale", "/dev/stdin", "-m", "bicubic", "-s", "2", "-o", "out.mp4"], stdin=stdin,
                       capture_output=True, check=True, cwd=tmp_path, timeout=120)
    assert len(media.ffprobe_frame_pts(tmp_path / "out.mp4")) == 2 and state(clip) == before


@pytest.mark.parametrize("order", ["outputs last", "outputs first"])
def test_an_output_that_is_another_input_of_the_run_is_left_alone_even_with_overwrite(tmp_path, order):
    """`vsr upscale *.mp4 *.png --overwrite`, run a second time, took clip.x2.mp4 for an input as well, and replaced
    it with clip.mp4's output: before it was read, or after."""
    clip = make_clip(tmp_path / "clip.mp4", frames=2)
    still = write_png(tmp_path / "still.png")
    vsr("upscale", clip, still, "-m", "bicubic", "-s", "2")
    made = [tmp_path / "clip.x2.mp4", tmp_path / "still.x2.png"]
    before = {path: state(path) for path in (clip, still, *made)}
    inputs = [clip, made[0], still, made[1]] if order == "outputs last" else [*made, clip, still]
    result = vsr("upscale", *inputs, "-m", "bicubic", "-s", "2", "--overwrite", check=False)
    assert result.returncode == 4 and result.stderr.strip().splitlines() == [
        f"vsr: error: {made[0]}: is also one of this run's inputs; leave it out of them, or upscale {clip} on its own",
        f"vsr: error: {made[1]}: is also one of this run's inputs; leave it out of them, or upscale {still} on its "
        "own",
        "vsr: nothing was begun: 2 problems found before any work (said above)"]  # (said before any input's turn)
    assert {path: state(path) for path in before} == before
    assert not (tmp_path / "clip.x2.x2.mp4").exists() and not (tmp_path / "still.x2.x2.png").exists()


@pytest.mark.parametrize("other", ["sequence", "file"])
def test_a_sequence_output_whose_frames_are_another_input_of_the_run_is_refused_before_any_frame(tmp_path, other):
    """`vsr upscale 'f%04d.png' 'f%04d.x2.png' --overwrite`, run a second time, replaced the second input's frames
    with the first's output before reading them (and a file input named as one of the frames, f0002.x2.png, too):
    the run's-inputs check knew files only."""
    for number in (1, 2, 3):
        write_png(tmp_path / f"f{number:04d}.png")
    vsr("upscale", tmp_path / "f%04d.png", "-m", "bicubic", "-s", "2")
    made = sorted(tmp_path.glob("f000?.x2.png"))
    before = {path: state(path) for path in made}
    other_input = tmp_path / ("f%04d.x2.png" if other == "sequence" else "f0002.x2.png")
    for inputs in ([tmp_path / "f%04d.png", other_input], [other_input, tmp_path / "f%04d.png"]):
        result = vsr("upscale", *inputs, "-m", "bicubic", "-s", "2", "--overwrite", check=False)
        frame, what = (("f0001.x2.png", f"is a frame of {other_input}, one of")
                       if other == "sequence" else ("f0002.x2.png", "is also one of"))
        assert result.returncode == 4 and result.stderr.strip().splitlines() == [
            f"vsr: error: {tmp_path / 'f%04d.x2.png'}: {frame} {what} this run's inputs; leave it out of them, or "
            f"upscale {tmp_path / 'f%04d.png'} on its own",
            "vsr: 1 of 2 inputs failed (said above); the others are written"]
        assert {path: state(path) for path in made} == before
        assert len(list(tmp_path.glob("f*.x2.x2.png"))) == (3 if other == "sequence" else 1)


def test_a_python_caller_running_a_command_of_several_inputs_then_another_is_not_refused_the_first_s_outputs(
        tmp_path, clip):
    """The run's outputs and inputs were kept after `vsr upscale a.mp4 b.mp4` returned: the next call in the same
    process (here `upscale_video` with overwrite) was refused "was made from ... in this run"."""
    other = make_clip(tmp_path / "other.mp4", frames=2)
    script = f"""
from vsr import api
from vsr.cli import app

app(["upscale", {str(clip)!r}, {str(other)!r}, "-m", "bicubic", "-s", "2", "-q"], standalone_mode=False)
api.upscale_video({str(clip)!r}, options=api.UpscaleOptions(model="bicubic", outscale=2), overwrite=True)
print("again")
"""
    first = (tmp_path / "clip.x2.mp4")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout, result.stderr) == (0, "again\n", "")
    assert len(media.ffprobe_frame_pts(first)) == 2 and len(media.ffprobe_frame_pts(tmp_path / "other.x2.mp4")) == 2
