"""Image sequences in and out: frames/%04d.png read as a video at --fps, and a video written as numbered images.

Frames are judged against independent decodes: the ffmpeg command line (which turns rotated video upright itself),
the same upscale written losslessly as x264 RGB, and each image upscaled on its own by `vsr upscale IMAGE`.
"""

import json
import logging
import re
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.test_alpha import make_alpha_clip, rgba_frames
from tests.pipelines.clips import make_clip
from tests.pipelines.test_resume import Interrupt
from tests.pipelines.test_segments import decoded_framemd5, make_gop_clip
from tests.processes import VSR, kill_when, run_vsr
from vsr import api
from vsr.errors import InputError, OptionError, OutputError
from vsr.pipelines.sequences import READ_SUFFIXES, VIDEO_SUFFIXES, existing_frames, frame_path, is_sequence, run_file
from vsr.pipelines.upscale import run_record

pytestmark = media.requires_ffmpeg

BICUBIC_X2 = api.UpscaleOptions(model="bicubic", outscale=2)


def pixels(path, pix_fmt="rgb24") -> np.ndarray:
    """Every frame of `path` (a video, an image, or an image sequence's pattern) as decoded by the ffmpeg command
    line: N×H×W×C."""
    stream = media.ffprobe_streams_of(path, "v:0")[0]
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo",
               "-pix_fmt", pix_fmt, "-"]
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    channels = {"rgb24": 3, "rgba": 4, "rgb48le": 3}[pix_fmt]
    dtype = np.uint16 if pix_fmt == "rgb48le" else np.uint8
    turned = any(abs(int(s.get("rotation", 0))) in (90, 270) for s in stream.get("side_data_list", []))
    height, width = (stream["width"], stream["height"]) if turned else (stream["height"], stream["width"])
    return np.frombuffer(raw, dtype).reshape(-1, height, width, channels)


def make_png_sequence(folder, *, frames=6, first=1, pix_fmt="rgb24"):
    """Frames `first`, `first` + 1, ... as folder/f%04d.png; an alpha `pix_fmt` gets a ramp of transparency."""
    folder.mkdir(exist_ok=True)
    transparent = pix_fmt.startswith(("rgba", "ya"))
    ramp = ",format=gbrap16le,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='X*1000'" if transparent else ""
    media.ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=25{ramp}", "-frames:v", frames, "-pix_fmt", pix_fmt,
                 "-start_number", first, folder / "f%04d.png")
    return folder / "f%04d.png"


def test_patterns_name_their_frames():
    assert is_sequence("frames/%06d.png") and is_sequence("shot_%d.exr") and is_sequence("100%%_%03d.png")
    assert not is_sequence("movie.mp4") and not is_sequence("100%.png") and not is_sequence("a%d_%d.png")
    assert not is_sequence("%05d/frame.png")  # a folder's name is not numbered
    assert frame_path(media.Path("out/f%04d.png"), 12).name == "f0012.png"
    assert frame_path(media.Path("100%%_%d.png"), 7).name == "100%_7.png"


def test_every_video_suffix_vsr_knows_is_in_the_one_list_and_names_one_file():
    """Each module kept its own list of video suffixes, and `is_sequence` took "in%d.y4m" or "out%d.mxf" for a
    sequence's pattern: the lists that name videos are parts of sequences.VIDEO_SUFFIXES."""
    from vsr.pipelines import encode
    from vsr.training import data

    known = {*encode.STREAM_TIMED_SUFFIXES, *encode.FRAME_COUNTED_SUFFIXES, *encode.DISPLAY_MATRIX_SUFFIXES,
             *data.VIDEO_SUFFIXES, ".y4m", ".mxf", ".wmv", ".asf", ".nut"}
    assert known <= set(VIDEO_SUFFIXES) and not {".gif", ".apng"} & set(data.VIDEO_SUFFIXES)
    assert not set(VIDEO_SUFFIXES) & {*READ_SUFFIXES, *api.IMAGE_SUFFIXES}
    assert not any(is_sequence(f"take%03d{suffix}") or is_sequence(f"take%03d{suffix.upper()}")
                   for suffix in VIDEO_SUFFIXES)


def test_only_the_files_of_the_pattern_are_its_frames(tmp_path):
    names = ("f0001.png", "f0002.png", "f12345.png", "f001.png", "f1.png", "f0003.x2.png", "g0004.png", "f0005.jpg")
    for name in names:
        (tmp_path / name).touch()
    assert sorted(existing_frames(tmp_path / "f%04d.png")) == [1, 2, 12345]  # %04d: four digits or more
    assert sorted(existing_frames(tmp_path / "f%d.png")) == [1, 12345]  # %d: no leading zeros
    (tmp_path / "f.png").touch()  # no number at all
    assert sorted(existing_frames(tmp_path / "f%d.png")) == [1, 12345]


def test_a_video_becomes_numbered_frames_equal_to_the_same_upscale_written_losslessly(tmp_path, caplog):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=7)
    result = api.upscale_video(source, tmp_path / "frames" / "%04d.png", options=BICUBIC_X2)  # the folder is made
    assert (result.frames, result.width, result.height) == (7, 128, 96)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{n:04d}.png" for n in range(1, 8)]
    reference = api.upscale_video(source, tmp_path / "reference.mkv", options=BICUBIC_X2,
                                  video=api.VideoOptions(codec="x264-lossless"))
    assert np.array_equal(pixels(tmp_path / "frames" / "%04d.png"), pixels(reference.output))
    assert "an image sequence holds pictures only: 1 other stream(s) (audio) are not written" in caplog.text


def test_a_10bit_video_gives_16bit_pngs_and_8bit_jpegs_with_a_warning(tmp_path, caplog):
    source = media.make_10bit_clip(tmp_path / "deep.mkv", frames=3)
    api.upscale_video(source, tmp_path / "%02d.png", options=BICUBIC_X2)
    assert media.ffprobe_streams_of(tmp_path / "01.png", "v:0")[0]["pix_fmt"] == "rgb48be"
    deep = pixels(tmp_path / "%02d.png", "rgb48le")
    assert len(np.unique(deep % 257)) > 1  # more than 8 bits of information: not 8-bit values scaled up
    api.upscale_video(source, tmp_path / "%02d.jpg", options=BICUBIC_X2)
    assert len(existing_frames(tmp_path / "%02d.jpg")) == 3
    assert "has 10 bits per component and .jpg files 8: .png keeps 16" in caplog.text


@pytest.mark.parametrize("rotation", [90, 270])
def test_frames_of_a_rotated_video_are_upright_as_players_show_them(tmp_path, rotation):
    source = tmp_path / "phone.mp4"
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:, :16] = 255  # a white band down the stored left edge: where it ends up tells the turn
    stored[:12, :, 0] = 255  # and a red one along the top, against a mirror image
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.set_display_rotation(rotation)
        for index in range(2):
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    api.upscale_video(source, tmp_path / "%d.png", options=BICUBIC_X2)
    shown = pixels(source)[0]  # ffmpeg turns it by the display matrix
    assert shown.shape == (64, 48, 3)
    ours = pixels(tmp_path / "%d.png")[0][::2, ::2].astype(int)
    assert np.abs(ours - shown).mean() < 8
    assert np.abs(ours - shown[::-1, ::-1]).mean() > 60  # the other way round would be far off


def test_alpha_is_kept_in_png_and_flattened_onto_white_in_jpeg_with_one_warning(tmp_path, caplog):
    source = make_alpha_clip(tmp_path / "alpha.webm", frames=4)
    api.upscale_video(source, tmp_path / "%02d.png", options=BICUBIC_X2)
    reference = api.upscale_video(source, tmp_path / "reference.mkv", options=BICUBIC_X2,
                                  video=api.VideoOptions(codec="ffv1"))  # keeps exactly the alpha the model made
    frames = pixels(tmp_path / "%02d.png", "rgba")
    assert media.ffprobe_streams_of(tmp_path / "01.png", "v:0")[0]["pix_fmt"] == "rgba"
    assert np.array_equal(frames[..., 3], rgba_frames(reference.output)[..., 3])
    assert (frames[..., 3] < 255).any()
    with caplog.at_level(logging.WARNING):
        api.upscale_video(source, tmp_path / "%02d.jpg", options=BICUBIC_X2)
    assert caplog.text.count("flattened onto white") == 1
    flat = pixels(tmp_path / "%02d.jpg").astype(int)
    alpha = frames[..., 3:] / 255
    expected = frames[..., :3] * alpha + 255 * (1 - alpha)
    assert np.abs(flat - expected).mean() < 4  # JPEG's own loss aside


def test_existing_frames_are_refused_before_any_work_and_overwrite_removes_stale_ones(tmp_path):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=6)
    pattern = tmp_path / "%03d.png"
    api.upscale_video(source, pattern, options=BICUBIC_X2)
    before = {path: path.stat().st_mtime_ns for path in existing_frames(pattern).values()}
    with pytest.raises(OutputError, match=r"6 frame\(s\) of this sequence already exist \(001.png, ...\); use "
                                          r"--overwrite"):
        api.upscale_video(source, pattern, options=BICUBIC_X2)
    assert {path: path.stat().st_mtime_ns for path in existing_frames(pattern).values()} == before
    api.upscale_video(source, pattern, options=BICUBIC_X2, video=api.VideoOptions(max_frames=4), overwrite=True)
    assert sorted(existing_frames(pattern)) == [1, 2, 3, 4]  # not 5 and 6 of the earlier, longer run


def test_a_sequence_killed_midway_resumes_from_its_first_missing_frame(tmp_path, tiny_rrdbnet_checkpoint):
    source = make_clip(tmp_path / "clip.mp4", frames=40, size=(64, 48))
    pattern = tmp_path / "frames" / "%04d.png"
    command = ["upscale", source, "-o", pattern, "-m", tiny_rrdbnet_checkpoint, "-b", "1", "--precision", "fp32"]
    kill_when(list(map(str, [*VSR, *command])), lambda: len(existing_frames(pattern)) >= 3, "3 frames were written")
    kept = existing_frames(pattern)
    assert 3 <= len(kept) < 40 and sorted(kept) == list(range(1, len(kept) + 1)) and run_file(pattern).exists()
    written = {number: path.stat().st_mtime_ns for number, path in kept.items()}

    for other_settings in (["--outscale", "2"], ["--decoder", "decord"]):  # (decord's colors are not PyAV's)
        other = run_vsr(*command, *other_settings)  # the frames are not theirs to go on with
        assert other.returncode == 4
        assert other.stderr.strip().splitlines() == [
            f"vsr: error: {pattern}: {len(kept)} frame(s) of this sequence already exist (0001.png, ...) (begun by a "
            "run from another source or with other settings); use --overwrite to replace them"]

    (tmp_path / "frames" / f".{len(kept) + 1:04d}.png.0123abcd.part").write_bytes(b"a frame cut short by kill -9")
    done = run_vsr(*command, "--segment-seconds", "0")  # how videos are cut means nothing to frames
    assert done.returncode == 0, done.stderr
    assert f"resuming: {len(kept)} frames were written by an earlier run" in done.stderr
    assert f"wrote {pattern}: {40 - len(kept)} frames at 256x192" in done.stdout
    assert f"; {len(kept)} earlier frames kept)" in done.stdout
    assert {number: path.stat().st_mtime_ns for number, path in existing_frames(pattern).items()
            if number in written} == written  # kept, not upscaled again
    assert sorted(existing_frames(pattern)) == list(range(1, 41)) and not run_file(pattern).exists()
    one_run = run_vsr(*command[:3], tmp_path / "one" / "%04d.png", *command[4:])
    assert one_run.returncode == 0, one_run.stderr
    assert np.array_equal(pixels(pattern), pixels(tmp_path / "one" / "%04d.png"))
    assert sorted(path.name for path in (tmp_path / "frames").iterdir()) == [f"{n:04d}.png" for n in range(1, 41)]
    # (the unfinished frame's temporary, left by a kill, is gone too)


def test_a_sequence_whose_every_frame_an_earlier_run_wrote_says_so(tmp_path):
    """Killed after its last frame, before its run file went: the rerun said "0 frames ... (0.00 fps; busy time
    decode 100%"."""
    source = make_clip(tmp_path / "clip.mp4", frames=4, size=(64, 48))
    pattern = tmp_path / "frames" / "%04d.png"
    assert run_vsr("upscale", source, "-o", pattern, "-m", "bicubic").returncode == 0
    record = run_record(source, api.UpscaleOptions(model="bicubic"), api.VideoOptions(), frames=True)
    run_file(pattern).write_text(json.dumps(record))
    done = run_vsr("upscale", source, "-o", pattern, "-m", "bicubic")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"wrote {re.escape(str(pattern))}: 0 frames at 256x192 in [0-9.]+ s \(4 earlier frames "
                        r"kept\)", done.stdout.strip())


def test_a_killed_overwrite_leaves_no_earlier_frames_for_its_resume_to_keep(tmp_path, tiny_rrdbnet_checkpoint):
    """The earlier run's frames go when an --overwrite run starts: a resume of it (the same command without
    --overwrite) kept them as its own, frames of other settings."""
    source = make_clip(tmp_path / "clip.mp4", frames=40, size=(64, 48))
    pattern = tmp_path / "frames" / "%04d.png"
    assert run_vsr("upscale", source, "-o", pattern, "-m", "bicubic").returncode == 0
    command = ["upscale", source, "-o", pattern, "-m", tiny_rrdbnet_checkpoint, "-b", "1", "--precision", "fp32"]
    kill_when(list(map(str, [*VSR, *command, "--overwrite"])),
              lambda: run_file(pattern).exists() and len(existing_frames(pattern)) >= 3, "3 frames were written")
    assert 3 <= len(existing_frames(pattern)) < 40
    assert run_vsr(*command).returncode == 0
    assert run_vsr(*command[:3], tmp_path / "one" / "%04d.png", *command[4:]).returncode == 0
    assert np.array_equal(pixels(pattern), pixels(tmp_path / "one" / "%04d.png"))


def test_a_sequence_from_start_killed_midway_keeps_its_frames(tmp_path, tiny_rrdbnet_checkpoint):
    """Read from --start, a sequence's frames keep their numbers from there: the resume counted from its first file
    and kept nothing."""
    pattern = make_png_sequence(tmp_path / "render", frames=30, first=50)
    output = tmp_path / "out" / "%d.png"
    command = ["upscale", pattern, "--start", "0.4", "-o", output, "-m", tiny_rrdbnet_checkpoint, "-b", "1",
               "--precision", "fp32"]  # 25 fps: from the 11th file, f0060.png
    kill_when(list(map(str, [*VSR, *command])), lambda: len(existing_frames(output)) >= 3, "3 frames were written")
    kept = len(existing_frames(output))
    assert min(existing_frames(output)) == 60 and kept < 20
    done = run_vsr(*command)
    assert f"resuming: {kept} frames were written by an earlier run" in done.stderr
    assert sorted(existing_frames(output)) == list(range(60, 80))


def test_a_sequence_into_a_video_runs_in_resumable_segments_and_on_several_workers(tmp_path):
    """Planned from the file names (1.25 s at 24 fps: 5 segments of 0.25 s), cut short after 2, resumed; and split
    over two worker processes. Both equal one run, frame for frame and time for time."""
    pattern = make_png_sequence(tmp_path / "render", frames=30, first=101)
    video = api.VideoOptions(fps=Fraction(24), codec="ffv1", segment_seconds=0.25)
    one_run = api.upscale_video(pattern, tmp_path / "one.mkv", options=BICUBIC_X2, video=video)
    with pytest.raises(KeyboardInterrupt):
        api.upscale_video_in_segments(pattern, tmp_path / "cut.mkv", options=BICUBIC_X2, video=video,
                                      on_segment=Interrupt(after=2))
    resumed = api.upscale_video_in_segments(pattern, tmp_path / "cut.mkv", options=BICUBIC_X2, video=video)
    assert resumed.times.extra["segments"] == 5 and resumed.times.extra["resumed"] == 2
    workers = run_vsr("upscale", pattern, "--fps", "24", "-o", tmp_path / "two.mkv", "-m", "bicubic", "--outscale",
                      "2", "--codec", "ffv1", "--devices", "cpu,cpu")
    assert workers.returncode == 0, workers.stderr
    expected = decoded_framemd5(one_run.output)
    assert len(expected) == 30 and decoded_framemd5(tmp_path / "cut.mkv") == expected
    assert decoded_framemd5(tmp_path / "two.mkv") == expected


def test_two_workers_write_the_frames_of_one_run_and_a_killed_run_resumes_from_each_segment(
        tmp_path, tiny_rrdbnet_checkpoint):
    """--devices cpu,cpu into a sequence: each worker writes its segments' frames, numbered as one run numbers them.
    Killed with its workers, the same command keeps every frame written and upscales only the missing ones."""
    source = make_gop_clip(tmp_path / "clip.mp4")  # 24 frames, a keyframe every 8: segments of 8
    pattern = tmp_path / "frames" / "%04d.png"
    command = ["upscale", source, "-o", pattern, "-m", tiny_rrdbnet_checkpoint, "-b", "1", "--precision", "fp32"]
    kill_when(list(map(str, [*VSR, *command, "--devices", "cpu,cpu"])), lambda: len(existing_frames(pattern)) >= 3,
              "3 frames were written")
    kept = {number: path.stat().st_mtime_ns for number, path in existing_frames(pattern).items()}
    assert 3 <= len(kept) < 24 and run_file(pattern).exists()

    done = run_vsr(*command, "--devices", "cpu,cpu")
    assert done.returncode == 0, done.stderr
    assert f"resuming: {len(kept)} of 24 frames were written by an earlier run" in done.stderr
    assert f"wrote {pattern}: {24 - len(kept)} frames at 256x192" in done.stdout
    assert {number: path.stat().st_mtime_ns for number, path in existing_frames(pattern).items()
            if number in kept} == kept  # not upscaled again
    assert sorted(path.name for path in pattern.parent.iterdir()) == [f"{n:04d}.png" for n in range(1, 25)]
    one_run = run_vsr(*command[:3], tmp_path / "one" / "%04d.png", *command[4:])
    assert one_run.returncode == 0, one_run.stderr
    assert np.array_equal(pixels(pattern), pixels(tmp_path / "one" / "%04d.png"))


def test_a_sequence_from_a_sequence_on_two_workers_keeps_its_numbers(tmp_path):
    pattern = make_png_sequence(tmp_path / "render", frames=9, first=101)
    result = run_vsr("upscale", pattern, "-m", "bicubic", "--outscale", "2", "--devices", "cpu,cpu")
    assert result.returncode == 0, result.stderr
    assert "wrote " + str(tmp_path / "render" / "f%04d.x2.png") + ": 9 frames at 128x96" in result.stdout
    one_run = api.upscale_video(pattern, tmp_path / "one" / "%d.png", options=BICUBIC_X2)
    written = existing_frames(tmp_path / "render" / "f%04d.x2.png")
    assert sorted(written) == list(range(101, 110))
    assert all(path.read_bytes() == frame_path(one_run.output, number).read_bytes() for number, path in written.items())


def test_a_png_sequence_becomes_a_video_at_the_frame_rate_asked_for(tmp_path):
    pattern = make_png_sequence(tmp_path / "render", frames=5, first=101)
    output = tmp_path / "render.mp4"  # (Matroska would round the times to milliseconds)
    api.upscale_video(pattern, output, options=BICUBIC_X2,
                      video=api.VideoOptions(fps=Fraction(24000, 1001), codec="x264-lossless"))
    stream = media.ffprobe_streams_of(output, "v:0")[0]
    assert stream["r_frame_rate"] == "24000/1001"
    assert media.video_times(output) == [Fraction(1001, 24000) * n for n in range(5)]
    for number, frame in zip(range(101, 106), pixels(output)):  # each frame as `vsr upscale IMAGE` makes it
        still = api.upscale_image(frame_path(pattern, number), tmp_path / f"still{number}.png", options=BICUBIC_X2)
        assert np.abs(frame.astype(int) - pixels(still)[0]).max() <= 1


def test_a_sequence_gives_a_sequence_beside_it_keeping_its_numbers_depth_and_alpha(tmp_path):
    pattern = make_png_sequence(tmp_path / "render", frames=3, first=7, pix_fmt="rgba64be")
    result = run_vsr("upscale", pattern, "-m", "bicubic", "--outscale", "2")
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'render' / 'f%04d.x2.png'}: 3 frames at 128x96" in result.stdout
    assert sorted(existing_frames(tmp_path / "render" / "f%04d.x2.png")) == [7, 8, 9]
    assert media.ffprobe_streams_of(tmp_path / "render" / "f0007.x2.png", "v:0")[0]["pix_fmt"] == "rgba64be"


def test_a_gap_in_the_sequence_is_one_line_and_nothing_is_written(tmp_path):
    pattern = make_png_sequence(tmp_path / "render", frames=5)
    frame_path(pattern, 3).unlink()
    result = run_vsr("upscale", pattern, "-m", "bicubic", "-o", tmp_path / "out.mp4")
    assert result.returncode != 0
    assert result.stderr.strip() == (f"vsr: error: {pattern}: frame 3 missing between frames 1 and 5 (f0003.png); "
                                     f"a sequence is read without gaps")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["render"]
    with pytest.raises(InputError, match="no file matches"):
        api.check_input(tmp_path / "render" / "g%04d.png")


@pytest.mark.parametrize("damage", ["empty", "cut short"])
def test_a_damaged_file_in_the_sequence_is_one_line_naming_it_and_no_video_is_written(tmp_path, damage):
    """FFmpeg's image2 demuxer ends the video at an empty file, and a damaged frame is concealed in a video: each
    frame after it would take the wrong number (a gap in a sequence output, a shorter video), with exit code 0."""
    pattern = make_png_sequence(tmp_path / "render", frames=8)
    damaged = frame_path(pattern, 4)
    damaged.write_bytes(b"" if damage == "empty" else damaged.read_bytes()[:100])
    result = run_vsr("upscale", pattern, "-m", "bicubic", "-o", tmp_path / "out.mp4")
    reason = "the file is empty" if damage == "empty" else "cannot be decoded, damaged or cut short"
    assert result.returncode == InputError.exit_code
    assert result.stderr.strip() == f"vsr: error: {damaged}: {reason}; a sequence is read without gaps"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["render"]


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    """/proc takes no new folder, even from root (as CI runs), as a read-only mount would not."""
    pattern = make_png_sequence(tmp_path / "render", frames=2)
    result = run_vsr("upscale", pattern, "-m", "bicubic", "-o", "/proc/vsr-frames/%04d.png")
    assert result.returncode == OutputError.exit_code
    assert result.stderr.strip().splitlines() == ["vsr: error: /proc/vsr-frames: cannot write there (No such file or "
                                                  "directory)"]


def test_a_sequence_that_opens_on_an_rgb_file_keeps_the_transparency_of_its_later_rgba_files(tmp_path):
    """The stream takes its first file's format: an opaque title card saved as RGB hid the alpha of what follows."""
    from PIL import Image

    for number in range(1, 6):
        rgba = np.full((32, 48, 4), 255, np.uint8)
        rgba[..., 0] = 40 * number
        if number == 1:
            Image.fromarray(rgba[..., :3]).save(tmp_path / f"f{number:03d}.png")  # RGB
        else:
            rgba[:, :10, 3] = 0  # a transparent edge
            Image.fromarray(rgba).save(tmp_path / f"f{number:03d}.png")
    api.upscale_video(tmp_path / "f%03d.png", options=BICUBIC_X2)
    first, later = (np.array(Image.open(tmp_path / f"f{number:03d}.x2.png")) for number in (1, 3))
    assert first.shape == later.shape == (64, 96, 4)
    assert first[..., 3].min() == 255 and later[:, :16, 3].max() == 0 and later[:, 24:, 3].min() == 255


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_sequence_with_a_color_profile_keeps_it_and_its_grayness_as_each_image_would(tmp_path, mode):
    """PyAV 18 crashed (a segmentation fault) on frames that hold an ICC profile once their side data was read, as
    vsr read every frame's for captions. Each frame is written as `vsr upscale IMAGE` writes its file: gray stays
    gray, and the profile is kept."""
    from PIL import Image, ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for number in range(1, 5):
        pixels = np.random.default_rng(number).integers(0, 256, (32, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(tmp_path / f"f{number:03d}.png", icc_profile=profile)
    decode = ("import gc, sys; from vsr.pipelines.decode import open_decoder\n"
              "with open_decoder(sys.argv[1]) as decoder: frames = [batch for batch in decoder.batches(2)]\n"
              "del frames; gc.collect()")  # in a fresh interpreter, where the crash came every time
    crashed = subprocess.run([sys.executable, "-c", decode, str(tmp_path / "f%03d.png")], capture_output=True)
    assert crashed.returncode == 0, crashed.stderr
    result = run_vsr("upscale", tmp_path / "f%03d.png", "-m", "bicubic")
    assert result.returncode == 0, result.stderr
    result = run_vsr("upscale", tmp_path / "f%03d.png", "-m", "bicubic", "-o", tmp_path / "video.mkv")
    assert result.returncode == 0, result.stderr  # (the HDR10 metadata is looked for in the first frame)
    run_vsr("upscale", tmp_path / "f002.png", "-m", "bicubic", "-o", tmp_path / "single.png", check=True)
    frame, single = Image.open(tmp_path / "f002.x4.png"), Image.open(tmp_path / "single.png")
    assert frame.mode == single.mode == mode and frame.info["icc_profile"] == single.info["icc_profile"] == profile
    assert np.abs(np.asarray(frame, dtype=int) - np.asarray(single, dtype=int)).max() <= 1


def test_a_file_turned_otherwise_than_the_first_is_named(tmp_path, caplog):
    """A sequence's frames are turned as its first file says; a file saying otherwise was turned wrongly, silently."""
    from PIL import Image

    (tmp_path / "shots").mkdir()
    for number, orientation in enumerate([6, 6, 1, 6], 1):
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(tmp_path / "shots" / f"s{number}.jpg", exif=exif)
    api.upscale_video(tmp_path / "shots" / "s%d.jpg", tmp_path / "%d.png", options=BICUBIC_X2)
    assert caplog.text.count("stored turned otherwise than the sequence's first file") == 1
    assert f"{tmp_path / 'shots' / 's3.jpg'}: stored turned otherwise" in caplog.text


def test_a_jpeg_cut_short_in_a_sequence_is_named(tmp_path, caplog):
    """FFmpeg decodes a JPEG cut short without an error or a corrupt flag (its missing rows made up): the sequence
    was upscaled without a word."""
    (tmp_path / "shots").mkdir()
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64", "-frames:v", "4", "-q:v", "2",
                 tmp_path / "shots" / "s%d.jpg")
    api.upscale_video(tmp_path / "shots" / "s%d.jpg", tmp_path / "clean.mkv", options=BICUBIC_X2)
    assert "damaged" not in caplog.text
    cut = tmp_path / "shots" / "s3.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    api.upscale_video(tmp_path / "shots" / "s%d.jpg", tmp_path / "%d.png", options=BICUBIC_X2)
    assert f"{cut}: damaged or cut short; FFmpeg fills in what is missing (" in caplog.text
    assert caplog.text.count("damaged") == 1


def test_a_color_file_in_a_gray_sequence_keeps_its_color(tmp_path):
    """Grayness was judged on 9 files spread over the sequence: a color file between them was written gray."""
    from PIL import Image

    for number in range(1, 21):
        pixels = np.full((16, 24, 3), 90, np.uint8)
        if number == 4:
            pixels[..., 0] = 255  # red, where the other files are gray
        Image.fromarray(pixels).convert("RGB" if number == 4 else "L").save(tmp_path / f"g{number}.png")
    api.upscale_video(tmp_path / "g%d.png", options=BICUBIC_X2)
    colored = np.asarray(Image.open(tmp_path / "g4.x2.png"))
    assert colored.shape == (32, 48, 3) and tuple(colored[8, 8]) == (255, 90, 90)


@pytest.mark.parametrize("args, message", [
    (["--fps", "24"], "--fps sets the frame rate of an image sequence"),
    (["-o", "{tmp}/50%_%04d.png"], "a sequence's name has one frame number (%d, %04d); write any other % as %%"),
    (["-o", "{tmp}/a%04d/x.png"], "the frame number (%d) goes in the file name, not in a folder's"),
    (["-o", "{tmp}/x.png"], "one image; to write every frame as an image, number them: {tmp}/x%06d.png"),
    (["-o", "{tmp}/%04d.png", "--crf", "12"], "--crf sets the video encoder; an image sequence is written as "
                                              "image files"),
])
def test_what_a_sequence_cannot_do_is_one_line(tmp_path, args, message):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=3)
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = run_vsr("upscale", source, "-m", "bicubic", *args)
    assert result.returncode != 0 and result.stderr.count("\n") == 1
    assert message.format(tmp=tmp_path) in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("fps", [Fraction(0), Fraction("1e400"), Fraction("1e9"), Fraction("1e-9")])
def test_fps_must_be_a_rate_that_times_frames(fps):
    """1e400 was an OverflowError; 1e9 put every frame at 0 in Matroska, 1e-9 failed in the muxer (helper-63)."""
    with pytest.raises(OptionError, match="--fps must be from 1/1000 to 1000, not "):
        api.VideoOptions(fps=fps).validate()


def test_a_sequence_is_not_replaced_by_its_own_upscale_nor_made_from_one_image_nor_compared(tmp_path):
    pattern = make_png_sequence(tmp_path / "render", frames=2)
    before = {path.name: path.read_bytes() for path in (tmp_path / "render").iterdir()}
    (tmp_path / "link").symlink_to(tmp_path / "render")
    # The same files named another way were replaced by their upscale (as the message for existing frames advised
    # --overwrite): through "..", a link to the folder, or another pattern giving the same names (f000%d: f0001.png).
    for output in (pattern, tmp_path / "render" / ".." / "render" / "f%04d.png", tmp_path / "link" / "f%04d.png",
                   tmp_path / "render" / "f000%d.png"):
        with pytest.raises(OutputError, match="the output would replace the input"):
            api.upscale_video(pattern, output, options=BICUBIC_X2, overwrite=True)
    assert {path.name: path.read_bytes() for path in (tmp_path / "render").iterdir()} == before
    (tmp_path / "link").unlink()
    with pytest.raises(OptionError, match="an image sequence is made from a video or a sequence"):
        api.upscale_image(frame_path(pattern, 1), tmp_path / "%04d.png", options=BICUBIC_X2)
    with pytest.raises(OptionError, match="vsr compare takes video files; make one of the sequence first"):
        api.compare_videos(media.make_aac_mp4(tmp_path / "clip.mp4"), pattern)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4", "render"]


@pytest.mark.parametrize("orientation", [6, 2, 4, 5, 7])
def test_a_jpeg_sequence_with_exif_is_turned_upright_as_one_jpeg_is(tmp_path, orientation):
    """Turned (6) and mirrored (2, 4, 5, 7: PyAV's rotation leaves the flip out) as a viewer shows each file; into
    images, and into a video (a display matrix, which the ffmpeg command line applies)."""
    from PIL import Image, ImageOps

    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:16, :16] = 255  # a white block in the stored top-left corner: each orientation puts it elsewhere
    exif = Image.Exif()
    exif[0x0112] = orientation
    (tmp_path / "shots").mkdir()
    for number in (1, 2):
        Image.fromarray(stored).save(tmp_path / "shots" / f"s{number}.jpg", quality=95, exif=exif)
    api.upscale_video(tmp_path / "shots" / "s%d.jpg", tmp_path / "%d.png", options=BICUBIC_X2)
    api.upscale_video(tmp_path / "shots" / "s%d.jpg", tmp_path / "video.mkv", options=BICUBIC_X2,
                      video=api.VideoOptions(codec="ffv1"))
    still = api.upscale_image(tmp_path / "shots" / "s1.jpg", tmp_path / "still.png", options=BICUBIC_X2)
    frame, single = pixels(tmp_path / "%d.png")[0].astype(int), pixels(still)[0].astype(int)
    played = pixels(tmp_path / "video.mkv", "rgb24")[0].astype(int)
    assert frame.shape == single.shape == played.shape == ((128, 96, 3) if orientation >= 5 else (96, 128, 3))
    assert np.abs(frame - single).mean() < 3 and np.abs(played - single).mean() < 3
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "shots" / "s1.jpg")))  # as viewers show it
    assert np.argwhere(shown[..., 0] > 200).mean(0).round().tolist() == \
        np.argwhere(frame[::2, ::2, 0] > 200).mean(0).round().tolist()  # the block where a viewer shows it


def test_a_sequence_output_takes_an_odd_width(tmp_path):
    source = media.make_aac_mp4(tmp_path / "clip.mp4", frames=2)
    result = api.upscale_video(source, tmp_path / "%d.png", options=api.UpscaleOptions(model="bicubic", width=101))
    assert (result.width, result.height) == (101, 76)  # 101 × 48/64 = 75.75: rounded, not made even
    assert media.ffprobe_streams_of(tmp_path / "1.png", "v:0")[0]["width"] == 101


def test_a_sequence_in_a_folder_whose_name_holds_a_percent_is_read(tmp_path):
    """FFmpeg expands the whole name: "h%/f%04d.png" could not be read (helper-71)."""
    made = make_png_sequence(tmp_path / "frames", frames=3)
    pattern = made.parent.rename(tmp_path / "100% real") / made.name  # (ffmpeg cannot write there either)
    result = api.upscale_video(pattern, tmp_path / "out.mkv", options=api.UpscaleOptions(model="bicubic"))
    assert result.frames == 3


def test_a_second_run_writing_a_sequence_another_run_writes_is_one_line(tmp_path):
    """Both wrote, one removing the other's frames (--overwrite), and both said they were done (helper-71). The lock
    is the kernel's: a killed run's is gone, and the same command resumes."""
    from vsr.pipelines.sequences import SequenceLock

    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    pattern = tmp_path / "frames" / "%04d.png"
    pattern.parent.mkdir()
    held = SequenceLock(pattern)  # as a run writing it holds it
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="another vsr run is writing it"):
            api.upscale_video(clip, pattern, options=api.UpscaleOptions(model="bicubic"), overwrite=overwrite)
    assert sorted(path.name for path in pattern.parent.iterdir()) == [".%04d.png.vsr-lock"]
    held.release()
    api.upscale_video(clip, pattern, options=api.UpscaleOptions(model="bicubic"))
    assert sorted(path.name for path in pattern.parent.iterdir()) == ["0001.png", "0002.png", "0003.png"]


def test_every_jpeg_cut_short_is_named_however_many_came_before(tmp_path, caplog):
    """PyAV drops a log line that repeats the last one it logged: the second cut JPEG in a process ("overread 8"
    again) went unreported, and this file's test of one failed where another test had logged it first."""
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64", "-frames:v", "3", "-q:v", "2",
                     tmp_path / folder / "s%d.jpg")
        cut = tmp_path / folder / "s2.jpg"
        cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
        api.upscale_video(tmp_path / folder / "s%d.jpg", tmp_path / folder / "%d.png", options=BICUBIC_X2)
        assert f"{cut}: damaged or cut short; FFmpeg fills in what is missing (" in caplog.text


def test_a_file_put_at_a_frames_name_while_the_run_worked_stays(tmp_path, monkeypatch):
    """Every frame file was written with replace on: the user's file at a later frame's name was replaced without
    --overwrite (helper-80). Frames of an earlier run after a gap are still written again (see resuming)."""
    from vsr.pipelines import images

    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    pattern = tmp_path / "frames" / "%04d.png"
    encode = images.image_file

    def a_file_appears_meanwhile(*args):
        if not frame_path(pattern, 3).exists():
            frame_path(pattern, 3).write_bytes(b"the user's own, put there while the run worked")
        return encode(*args)

    monkeypatch.setattr(images, "image_file", a_file_appears_meanwhile)
    with pytest.raises(OutputError, match="0003.png: already exists, written while this run worked"):
        api.upscale_video(clip, pattern, options=api.UpscaleOptions(model="bicubic", outscale=1))
    assert frame_path(pattern, 3).read_bytes() == b"the user's own, put there while the run worked"
    assert sorted(existing_frames(pattern)) == [1, 2, 3]


def test_frames_past_an_image_sequence_s_end_are_warned_about_in_a_resumed_run_too(tmp_path, tiny_rrdbnet_checkpoint):
    """Its frames are counted as they are decoded: a run that resumed the frames an earlier one wrote counted only
    its own, and said nothing."""
    source = make_png_sequence(tmp_path / "in", frames=40)
    pattern = tmp_path / "frames" / "%04d.png"
    command = ["upscale", source, "-o", pattern, "-m", tiny_rrdbnet_checkpoint, "-b", "1", "--frames", "100"]
    kill_when(list(map(str, [*VSR, *command])), lambda: len(existing_frames(pattern)) >= 3, "3 frames were written")
    assert 3 <= len(existing_frames(pattern)) < 40 and run_file(pattern).exists()

    done = run_vsr(*command)
    assert done.returncode == 0, done.stderr
    assert "frames were written by an earlier run" in done.stderr
    assert [line for line in done.stderr.splitlines() if "--frames" in line] == [
        f"vsr: WARNING: {source}: --frames 100 is more than the video has (40 frames): upscaling those 40"]
    assert sorted(existing_frames(pattern)) == list(range(1, 41))
