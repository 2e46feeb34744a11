"""Edges of the command line: an empty -o, choice values in any case, a --tile given without --tile-overlap, and a
standard output that cannot be written."""

import functools
import importlib.metadata
import os
import subprocess

import PIL.Image
import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import make_clip
from tests.processes import VSR, run_vsr

vsr = functools.partial(run_vsr, check=True)

pytestmark = media.requires_ffmpeg


@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "clip.mp4", frames=2)


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_output_name_is_one_line_and_writes_nothing(tmp_path, clip, monkeypatch, empty):
    """Path("") is ".": the output went into the working folder under its default name (an unset variable)."""
    monkeypatch.chdir(tmp_path)
    result = vsr("upscale", clip, "-m", "bicubic", "-o", empty, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vsr: error: -o is empty: name the output file, or a folder with a final / (or leave -o out to write beside "
        "the input)"]
    assert [path.name for path in tmp_path.iterdir()] == ["clip.mp4"]


@pytest.mark.parametrize("name, said", [("out.xyz", "its extension '.xyz'"),
                                         ("out", "its name, which has no extension")])
def test_an_output_named_for_no_format_is_one_line_saying_what_to_name_it(tmp_path, clip, name, said):
    """It said only "cannot tell the container format of out.xyz from its extension"."""
    result = vsr("upscale", clip, "-m", "bicubic", "-o", tmp_path / name, check=False)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        f"vsr: error: {tmp_path / name}: cannot tell the container format from {said}; name it .mkv, .mp4, .mov or "
        ".webm"]
    assert [path.name for path in tmp_path.iterdir()] == ["clip.mp4"]


def test_an_image_output_without_extension_is_one_line_saying_what_to_name_it(tmp_path):
    """It said "unsupported image type ''; expected one of .png, ..." (a video's said what to name it)."""
    PIL.Image.new("RGB", (8, 6)).save(tmp_path / "still.png")
    still = tmp_path / "still.png"
    result = vsr("upscale", still, "-m", "bicubic", "-o", tmp_path / "out", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"vsr: error: {tmp_path / 'out'}: cannot tell the image type from its name, which has no extension; name it "
        ".png, .jpg, .jpeg or .webp"]
    assert [path.name for path in tmp_path.iterdir()] == ["still.png"]


@pytest.mark.parametrize("choices", [
    ["--device", "CPU", "--precision", "FP32", "--cuda-graphs", "Off", "--decoder", "PyAV", "--deinterlace", "OFF",
     "--dedup", "EXACT", "--crop", "OFF", "--codec", "LIBX264", "--pix-fmt", "YUV420P"],
    ["--devices", "CPU,CPU"],
])
def test_choice_values_of_upscale_are_taken_in_any_case(tmp_path, clip, choices):
    """--device CPU was taken and --precision FP32 refused: every choice is now taken as typer's case_sensitive=False
    would take it."""
    result = vsr("upscale", clip, "-m", "bicubic", "-o", tmp_path / "out.mp4", *choices, check=False)
    assert result.returncode == 0, result.stderr
    assert len(media.video_pts(tmp_path / "out.mp4")) == 2


def test_choice_values_of_batch_bench_and_eval_are_taken_in_any_case(tmp_path, clip):
    vsr("batch", tmp_path, tmp_path / "out", "-m", "bicubic", "--precision", "FP32", "--decoder", "PYAV",
        "--codec", "LIBX264", "-q")
    assert (tmp_path / "out" / "clip.x4.mp4").is_file()
    upper = ["--device", "CPU", "--precision", "FP32"]
    vsr("bench", clip, "-m", "bicubic", "--frames", "2", "--decoder", "PYAV", *upper)
    vsr("eval", clip, "-m", "bicubic", "--frames", "2", *upper)


@pytest.mark.parametrize("command", [["upscale", "-o", "out.mp4"], ["eval", "--frames", "2"]])
def test_a_tile_alone_gets_an_overlap_that_fits_it(tmp_path, clip, monkeypatch, command):
    """--tile 16 was refused for the default overlap of 128, which the user never asked for."""
    monkeypatch.chdir(tmp_path)
    name, *rest = command
    result = vsr(name, clip, "-m", "bicubic", "--tile", "16", *rest, check=False)
    assert result.returncode == 0, result.stderr
    if name == "upscale":
        assert media.ffprobe_streams_of(tmp_path / "out.mp4", "v")[0]["width"] == 256


def test_batch_with_a_tile_alone_gets_an_overlap_that_fits_it(tmp_path, clip):
    vsr("batch", tmp_path, tmp_path / "out", "-m", "bicubic", "--tile", "16", "-q")
    assert (tmp_path / "out" / "clip.x4.mp4").is_file()


def test_an_overlap_given_that_does_not_fit_the_tile_is_still_refused(tmp_path, clip):
    result = vsr("upscale", clip, "-m", "bicubic", "--tile", "64", "--tile-overlap", "128", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vsr: error: --tile 64 is too small for --tile-overlap 128: use a --tile of at least 144 pixels or a smaller "
        "--tile-overlap"]
    assert [path.name for path in tmp_path.iterdir()] == ["clip.mp4"]


def test_help_says_how_the_overlap_follows_the_tile():
    result = vsr("upscale", "--help", env={"COLUMNS": "200"})
    words = " ".join(result.stdout.replace("│", " ").split())  # (as wrapped into the table's column)
    assert "[default: 128; for a --tile under 144, half of it]" in words


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["models"], ["--help"]])
def test_an_output_that_cannot_be_written_is_one_line(command):
    """`> /dev/full`, or a full disk under `> file`: a traceback (helper-82)."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([*VSR, *command], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 4
    assert result.stderr.splitlines() == ["vsr: error: cannot write to the standard output (No space left on device)"]


def test_version_is_the_installed_packages():
    assert vsr("--version").stdout == f"vsr {importlib.metadata.version('vsr')}\n"


def test_python_dash_m_vsr_is_the_vsr_command():
    """Where the environment's scripts are not on the PATH, `python -m vsr` is what users try: it said "No module
    named vsr.__main__"."""
    result = subprocess.run([VSR[0], "-m", "vsr", "--version"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (0, f"vsr {importlib.metadata.version('vsr')}\n")


def test_a_full_disk_where_a_library_writes_is_one_line(tmp_path):
    """tempfile tries each temporary folder by writing a file in it: with none writable (a full /tmp), `vsr bench`
    and `vsr train` (torch's optimizer imports its compiler, which asks for one) printed a 60-line traceback, exit 1
    (helper-86). The file-size limit of 0 fills every disk here."""
    import resource

    source = make_clip(tmp_path / "clip.mp4", frames=4)
    full = subprocess.run([*VSR, "bench", str(source), "-m", "bicubic", "--frames", "4"], capture_output=True,
                          text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                                           (0, resource.RLIM_INFINITY)))
    assert full.returncode == 4
    assert full.stderr.strip().splitlines() == ["vsr: error: no temporary folder can be written (is /tmp full or "
                                                "read-only?); set TMPDIR to a folder with room"]


def test_help_gives_the_crf_and_preset_vsr_uses_for_each_codec():
    """The help said "[default: the codec's]", which reads as x264's own CRF 23; vsr uses 18."""
    from vsr.pipelines.encode import CODECS

    result = vsr("upscale", "--help", env={"COLUMNS": "200"})
    words = " ".join(result.stdout.replace("│", " ").split())
    crf = ", ".join(f"{CODECS[codec].default_quality} for {codec}" for codec in ("libx264", "libx265", "libsvtav1"))
    assert f"[default: {crf}, {CODECS['libvpx-vp9'].default_quality} for libvpx-vp9]" in words
    assert CODECS["libx264"].default_speed == CODECS["libx265"].default_speed == "medium"
    assert (f"[default: medium for libx264 and libx265, {CODECS['libsvtav1'].default_speed} for libsvtav1, "
            f"{CODECS['libvpx-vp9'].default_speed} (cpu-used) for libvpx-vp9]") in words


def test_no_help_paragraph_is_broken_in_the_middle_of_a_line():
    """typer keeps the line breaks of every paragraph after a command's first, and the terminal wraps those lines
    again: `vsr train --help` printed "state.pt" / "(for --resume)," on lines of their own."""
    import inspect

    from vsr.cli import app

    for command in app.registered_commands:
        text = inspect.cleandoc(command.help or command.callback.__doc__ or "")
        later = text.split("\n\n")[1:]
        assert not [paragraph for paragraph in later if "\n" in paragraph], command.callback.__name__
