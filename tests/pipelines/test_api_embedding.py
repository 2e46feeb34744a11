"""The Python API as an application embeds it (a desktop app, a web service upscaling uploads): progress for its own
UI, a cancel from another thread, pictures held in memory, one loaded model for many calls, and each call's
warnings told to that call."""

import threading

import numpy as np
import PIL.Image
import pytest

import vsr
from tests.pipelines.clips import make_clip, make_interlaced_clip
from tests.pipelines.media_fixtures import ffprobe_frame_pts
from tests.pipelines.test_resume import LOSSLESS
from tests.pipelines.test_segments import make_gop_clip
from vsr.errors import Cancelled, InputError, OptionError

BICUBIC = vsr.UpscaleOptions(model="bicubic", batch_size=2)
INTERLACED_WARNING = "interlaced video: deinterlacing it"


@pytest.fixture(scope="module")
def engine():
    return vsr.make_engine(BICUBIC)


def test_progress_is_told_after_each_batch_with_the_total(tmp_path, engine):
    clip = make_clip(tmp_path / "clip.mp4", frames=7)
    told = []
    result = vsr.upscale_video(clip, tmp_path / "out.mp4", engine=engine, video=vsr.VideoOptions(dedup=None),
                               on_progress=lambda done, total: told.append((done, total)))
    assert told == [(2, 7), (4, 7), (6, 7), (7, 7)]
    assert len(ffprobe_frame_pts(result.output)) == 7


def test_a_cancel_from_another_thread_stops_the_run_and_leaves_no_file(tmp_path, engine):
    clip = make_clip(tmp_path / "clip.mp4", frames=40)
    cancel = threading.Event()
    told = []

    def on_progress(done: int, total: int | None) -> None:
        told.append(done)
        if len(told) == 1:  # the application's UI thread presses "cancel" (and the pipeline waits till it has)
            canceller = threading.Thread(target=cancel.set)
            canceller.start()
            canceller.join()

    with pytest.raises(Cancelled, match="clip.mp4: cancelled"):
        vsr.upscale_video(clip, tmp_path / "out.mp4", engine=engine, video=vsr.VideoOptions(dedup=None),
                          on_progress=on_progress, cancel=cancel)
    assert told[-1] < 40
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]  # (no partial file either)


def test_an_error_in_the_progress_function_stops_the_run_as_any_error(tmp_path, engine):
    clip = make_clip(tmp_path / "clip.mp4", frames=6)

    def on_progress(done: int, total: int | None) -> None:
        raise ValueError("the window was closed")

    with pytest.raises(ValueError, match="the window was closed"):
        vsr.upscale_video(clip, tmp_path / "out.mp4", engine=engine, on_progress=on_progress)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_video_in_segments_tells_the_progress_of_the_whole_video(tmp_path, engine):
    """24 frames in 3 segments of 8: a run stopped by its progress function in the second keeps the first, and the
    run that resumes from it tells its frames as done."""
    clip, output = make_gop_clip(tmp_path / "clip.mp4"), tmp_path / "out.mkv"
    told = []

    def stop_in_the_second_segment(done: int, total: int | None) -> None:
        told.append((done, total))
        if done > 8:
            raise ValueError("the window was closed")

    with pytest.raises(ValueError, match="the window was closed"):
        vsr.upscale_video_in_segments(clip, output, options=BICUBIC, video=LOSSLESS, engine=engine,
                                      on_progress=stop_in_the_second_segment)
    assert told[:4] == [(2, 24), (4, 24), (6, 24), (8, 24)] and not output.exists()
    told.clear()
    result = vsr.upscale_video_in_segments(clip, output, options=BICUBIC, video=LOSSLESS, engine=engine,
                                           on_progress=lambda done, total: told.append((done, total)))
    assert result.times.extra["resumed"] == 1
    assert told[0] == (10, 24) and told[-1] == (24, 24)
    assert len(ffprobe_frame_pts(output)) == 24


def test_a_cancel_of_a_video_in_segments_keeps_the_segments_done_for_the_same_call(tmp_path, engine):
    clip, output = make_gop_clip(tmp_path / "clip.mp4"), tmp_path / "out.mkv"
    cancel = threading.Event()

    def cancel_in_the_second_segment(done: int, total: int | None) -> None:
        if done > 8:
            canceller = threading.Thread(target=cancel.set)
            canceller.start()
            canceller.join()

    with pytest.raises(Cancelled, match="clip.mp4: cancelled"):
        vsr.upscale_video_in_segments(clip, output, options=BICUBIC, video=LOSSLESS, engine=engine,
                                      on_progress=cancel_in_the_second_segment, cancel=cancel)
    assert not output.exists()
    result = vsr.upscale_video_in_segments(clip, output, options=BICUBIC, video=LOSSLESS, engine=engine)
    assert result.times.extra["resumed"] == 1 and len(ffprobe_frame_pts(output)) == 24


def test_a_run_cancelled_before_it_starts_loads_no_model(tmp_path):
    cancel = threading.Event()
    cancel.set()
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    with pytest.raises(Cancelled):  # (a name no zoo has: it would be a ModelError had the model been loaded)
        vsr.upscale_video(clip, options=vsr.UpscaleOptions(model="not-loaded"), cancel=cancel)
    with pytest.raises(Cancelled):
        vsr.upscale_video_in_segments(clip, options=vsr.UpscaleOptions(model="not-loaded"), cancel=cancel)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("call, message", [
    (lambda clip: vsr.upscale_video(clip, on_progress=5), "on_progress must be a function"),
    (lambda clip: vsr.upscale_video(clip, cancel=True), "cancel must be a threading.Event, not True"),
    (lambda clip: vsr.upscale_video_in_segments(clip, cancel="stop"), "cancel must be a threading.Event, not 'stop'"),
])
def test_a_progress_or_cancel_of_another_kind_is_one_option_error(tmp_path, call, message):
    with pytest.raises(OptionError, match=message):
        call(make_clip(tmp_path / "clip.mp4", frames=3))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_a_picture_in_memory_is_upscaled_as_its_file_is(tmp_path, engine, mode):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 10, len(mode)), dtype=np.uint8)
    if mode == "RGBA":
        pixels[:6, :, 3] = 255  # (opaque and see-through parts)
    pixels = pixels[:, :, 0] if mode == "L" else pixels
    PIL.Image.fromarray(pixels, mode).save(tmp_path / "picture.png")
    written = vsr.upscale_image(tmp_path / "picture.png", tmp_path / "picture.x4.png", engine=engine)

    upscaled = vsr.upscale_array(pixels, engine=engine)
    assert upscaled.dtype == np.uint8 and upscaled.shape == (48, 40, *pixels.shape[2:])
    assert np.array_equal(upscaled, np.asarray(PIL.Image.open(written)))
    as_floats = vsr.upscale_array(pixels.astype(np.float32) / 255, engine=engine)
    assert as_floats.dtype == np.float32 and np.abs(as_floats * 255 - upscaled).max() <= 0.5 + 1e-3
    deep = vsr.upscale_array(pixels.astype(np.uint16) * 257, engine=engine)
    assert deep.dtype == np.uint16 and np.abs(deep / 257 - upscaled).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("picture, message", [
    (PIL.Image.new("RGB", (4, 4)), r"a picture is a numpy array, not Image \(a PIL image: numpy.asarray\(image\)\)"),
    (np.zeros((4, 4, 2), np.uint8), r"H×W×3 \(RGB\), H×W×4 \(RGBA\) or H×W \(gray\), not of shape \(4, 4, 2\)"),
    (np.zeros((0, 4, 3), np.uint8), r"not of shape \(0, 4, 3\)"),
    (np.zeros((4, 4, 3), np.int32), "uint8, uint16 or floats in .0, 1., not int32"),
])
def test_a_picture_of_another_kind_is_one_input_error(engine, picture, message):
    with pytest.raises(InputError, match=message):
        vsr.upscale_array(picture, engine=engine)


def test_each_call_is_told_its_own_warnings(tmp_path, engine):
    """A warning was given once a process: a service that upscales upload after upload (here, one path reused) heard
    only the first upload's. Calls side by side in threads each get their own."""
    clip = make_interlaced_clip(tmp_path / "upload.mp4", frames=4, size=(32, 24))
    clean = make_clip(tmp_path / "clean.mp4", frames=4)
    first = vsr.upscale_video(clip, tmp_path / "first.mp4", engine=engine)
    again = vsr.upscale_video(clip, tmp_path / "again.mp4", engine=engine)
    assert [text for text in first.warnings if INTERLACED_WARNING in text] == [
        text for text in again.warnings if INTERLACED_WARNING in text] != []

    results = {}

    def upscale(source, name):
        results[name] = vsr.upscale_video(source, tmp_path / f"{name}.x4.mp4", engine=vsr.make_engine(BICUBIC))

    threads = [threading.Thread(target=upscale, args=(clip, "interlaced")),
               threading.Thread(target=upscale, args=(clean, "clean"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert any(INTERLACED_WARNING in text for text in results["interlaced"].warnings)
    assert results["clean"].warnings == []

    with vsr.warnings_kept() as kept:  # (an image's call returns its path: its warnings are had this way)
        PIL.Image.new("RGB", (8, 8)).save(tmp_path / "photo.jpg")
        vsr.upscale_image(tmp_path / "photo.jpg", tmp_path / "photo.x4.jpg", engine=engine)
        vsr.upscale_video(clip, tmp_path / "third.mp4", engine=engine)
    assert any(INTERLACED_WARNING in text for text in kept.messages)
