"""Videos with an alpha channel keep it: VP9 in WebM, ProRes 4444, transparent GIFs, FFV1.

The sources are made by the ffmpeg command line (GIFs by Pillow) and the outputs read back by it, with libvpx's
decoder for VP9 (FFmpeg's own ignores the alpha WebM keeps beside the color), so vsr's decoder is not its own judge.
"""

import subprocess

import numpy as np
import pytest
import torch

from tests.pipelines.media_fixtures import ffmpeg, ffprobe_frame_pts, ffprobe_streams_of, requires_ffmpeg
from tests.pipelines.test_engine import bicubic_model, tiny_rrdbnet
from tests.processes import run_vsr
from vsr import api
from vsr.errors import OptionError
from vsr.pipelines.decode import open_decoder
from vsr.pipelines.engine import Engine, upscale_with_alpha

pytestmark = requires_ffmpeg

# Color bars whose alpha is a ramp moving across the picture, with a fully opaque band at the bottom.
MOVING_ALPHA = ("testsrc2=size=64x48:rate=25:duration={seconds},format=rgba,"
                "geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(gt(Y,40),255,mod(X*4+T*400,256))'")


def make_alpha_clip(path, *, frames=6, codec_args=("-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-g", "3")):
    ffmpeg("-f", "lavfi", "-i", MOVING_ALPHA.format(seconds=frames / 25), *codec_args, path)
    return path


def rgba_frames(path, *, deep=False) -> np.ndarray:
    """Every frame as N×H×W×4 RGBA decoded by the ffmpeg command line (uint8, or uint16 when `deep`)."""
    stream = ffprobe_streams_of(path, "v:0")[0]
    vp9 = stream["codec_name"] == "vp9"
    command = ["ffmpeg", "-nostdin", "-v", "error", *(["-c:v", "libvpx-vp9"] if vp9 else []), "-i", str(path),
               "-f", "rawvideo", "-pix_fmt", "rgba64le" if deep else "rgba", "-"]
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint16 if deep else np.uint8).reshape(-1, stream["height"], stream["width"], 4).copy()


def bicubic_x4(frames: np.ndarray) -> np.ndarray:
    """What `-m bicubic` makes of RGBA frames, alpha through the same model as color."""
    engine = Engine(api.load_model("bicubic", progress=False), device="cpu")
    return upscale_with_alpha(engine, torch.from_numpy(frames).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def test_a_vp9_webm_with_alpha_comes_back_as_one_with_the_alpha_upscaled(tmp_path):
    source = make_alpha_clip(tmp_path / "overlay.webm")
    result = run_vsr("upscale", source, "-m", "bicubic", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    output = tmp_path / "overlay.x4.webm"
    stream = ffprobe_streams_of(output, "v:0")[0]
    assert stream["codec_name"] == "vp9" and stream["tags"]["alpha_mode"] == "1"
    assert ffprobe_frame_pts(output) == ffprobe_frame_pts(source)
    got, expected = rgba_frames(output).astype(int), bicubic_x4(rgba_frames(source)).astype(int)
    alpha_error = np.abs(got[..., 3] - expected[..., 3])
    assert alpha_error.mean() < 2 and np.percentile(alpha_error, 99) <= 12  # VP9 at CRF 31 on a moving ramp
    assert (got[:, -8:, :, 3] >= 250).all()  # the opaque band stays opaque (VP9 is lossy there too)
    assert len(np.unique(got[..., 3])) > 200  # a ramp, not a constant


def test_ffv1_keeps_exactly_the_alpha_the_model_made(tmp_path):
    source = make_alpha_clip(tmp_path / "overlay.mov", frames=3, codec_args=("-c:v", "qtrle"))  # RLE, argb
    output = tmp_path / "out.mkv"
    model = tiny_rrdbnet()
    engine = Engine(model, device="cpu")
    api.upscale_video(source, output, video=api.VideoOptions(codec="ffv1"), engine=engine)
    assert ffprobe_streams_of(output, "v:0")[0]["pix_fmt"] == "bgra"
    expected = upscale_with_alpha(engine, torch.from_numpy(rgba_frames(source)).permute(0, 3, 1, 2))
    got = torch.from_numpy(rgba_frames(output)).permute(0, 3, 1, 2)
    assert torch.equal(got, expected)
    assert got[:, 3].min() < 50  # the alpha went through the model: it is not opaque


def test_prores_4444_keeps_its_alpha_at_its_depth(tmp_path, caplog):
    source = make_alpha_clip(tmp_path / "graphics.mov", frames=3,
                             codec_args=("-c:v", "prores_ks", "-pix_fmt", "yuva444p10le"))
    with open_decoder(source) as decoder:
        assert decoder.info.alpha
        frames = next(decoder.batches(8)).frames
    assert frames.shape[1] == 4 and frames.dtype == torch.float32
    result = api.upscale_video(source, options=api.UpscaleOptions(model="bicubic"))
    assert result.output == tmp_path / "graphics.x4.mov"
    # FFmpeg decodes ProRes 4444 as 12-bit, prores_ks writes 10: said, naming the file (a batch runs many).
    assert f"{source}: codec prores stores at most 10 bits: the 12-bit source is written as 10-bit" in caplog.text
    stream = ffprobe_streams_of(result.output, "v:0")[0]
    assert stream["codec_name"] == "prores" and stream["pix_fmt"].startswith("yuva444p")
    got, source_rgba = rgba_frames(result.output, deep=True)[..., 3].astype(int), rgba_frames(source, deep=True)
    # Opaque stays as opaque as the source decodes (FFmpeg's ProRes round trip gives 65328, not 65535): alpha is
    # written at its full scale, 65535, not at color's 65280 (that measured 65030).
    assert got[:, -16:].min() >= source_rgba[:, -4:, :, 3].min() > 65000
    error = np.abs(got - bicubic_x4(source_rgba.astype(np.float32) / 65535)[..., 3] * 65535)
    assert error.mean() < 64 and np.percentile(error, 99) < 4 * 64  # within a 10-bit level on average


@pytest.mark.parametrize("transparent", [True, False])
def test_a_gif_keeps_its_transparency_and_an_opaque_gif_stays_plain(tmp_path, transparent):
    from PIL import Image

    frames = []
    for index in range(3):
        image = Image.new("RGBA", (40, 30), (0, 0, 0, 0) if transparent else (0, 90, 0, 255))
        image.paste((220, 30, 30, 255), (0, 5, 12 + 8 * index, 25))
        frames.append(image)
    source = tmp_path / "sticker.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=2)
    # (By default a GIF gives a GIF, which keeps its transparency too: tests/pipelines/test_animation.py.)
    result = api.upscale_video(source, tmp_path / "sticker.x4.mkv", options=api.UpscaleOptions(model="bicubic"))
    assert result.frames == 3
    stream = ffprobe_streams_of(result.output, "v:0")[0]
    if transparent:
        assert stream["codec_name"] == "vp9" and stream["tags"].get("alpha_mode") == "1"
        alpha = rgba_frames(result.output)[..., 3]
        assert (alpha[:, 40:80, 8:40] > 250).all() and (alpha[:, :12] < 5).all()  # the sticker, the clear margin
    else:
        assert stream["codec_name"] == "h264" and "alpha_mode" not in stream.get("tags", {})


def test_a_gif_that_starts_opaque_and_turns_transparent_keeps_its_transparency(tmp_path):
    from PIL import Image

    frames = [Image.new("RGBA", (40, 30), (0, 90, 0, 255))]  # a title card, then a sticker on a clear ground
    for index in range(3):
        image = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
        image.paste((220, 30, 30, 255), (0, 5, 12 + 8 * index, 25))
        frames.append(image)
    source = tmp_path / "sticker.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=2)
    result = api.upscale_video(source, tmp_path / "sticker.x4.mkv", options=api.UpscaleOptions(model="bicubic"))
    assert ffprobe_streams_of(result.output, "v:0")[0]["codec_name"] == "vp9"
    alpha = rgba_frames(result.output)[..., 3]
    assert (alpha[0] > 250).all() and (alpha[-1, :, 124:] < 5).all()  # right of the sticker: clear


def test_a_sequence_whose_later_frames_are_transparent_keeps_its_alpha(tmp_path):
    from PIL import Image

    opaque = np.full((30, 40, 4), 255, np.uint8)
    clear = opaque.copy()
    clear[:, 20:, 3] = 0
    for number, picture in enumerate([opaque] * 11 + [clear], start=1):
        Image.fromarray(picture, "RGBA").save(tmp_path / f"f{number:03d}.png")
    output = tmp_path / "out.mkv"
    api.upscale_video(tmp_path / "f%03d.png", output, options=api.UpscaleOptions(model="bicubic"))
    assert ffprobe_streams_of(output, "v:0")[0]["codec_name"] == "vp9"
    assert (rgba_frames(output)[-1][:, 90:, 3] < 5).all()


@pytest.mark.parametrize("codec", ["libx264", "libvpx-vp9"])  # VP9's alpha lives in Matroska only
def test_a_codec_or_container_without_alpha_says_it_drops_it(tmp_path, caplog, codec):
    source = make_alpha_clip(tmp_path / "overlay.webm", frames=3)
    output = tmp_path / "flat.mp4"
    api.upscale_video(source, output, options=api.UpscaleOptions(model="bicubic"), video=api.VideoOptions(codec=codec))
    assert f"codec {codec} in .mp4 cannot store the video's alpha channel: the output is opaque" in caplog.text
    stream = ffprobe_streams_of(output, "v:0")[0]
    assert stream["pix_fmt"] == "yuv420p" and "alpha_mode" not in stream.get("tags", {})


class StopAfterFirst:
    """An `on_segment` that stops the run (as Ctrl-C would) once one segment is kept."""

    def __call__(self, result) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("name, codec_args, codec, segment_file, tolerance", [
    ("overlay.webm", ("-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-g", "4"), "auto", "segment-0000.mkv", 2),
    ("graphics.mov", ("-c:v", "prores_ks", "-pix_fmt", "yuva444p10le"), "auto", "segment-0000.mov", 64),
    ("lossless.mkv", ("-c:v", "ffv1", "-pix_fmt", "yuva420p", "-g", "4"), "ffv1", "segment-0000.mp4", 0),
], ids=["vp9", "prores", "ffv1"])
def test_an_alpha_video_resumes_from_its_segments_with_its_alpha(tmp_path, caplog, name, codec_args, codec,
                                                                  segment_file, tolerance):
    """Alpha survives the segment files (Matroska for VP9, QuickTime for ProRes) and their join: a run cut short
    resumes and gives the frames of one uninterrupted run: exactly with FFV1; within VP9's rate control, which
    restarts at each segment; within a 10-bit level (64 of 65535) with ProRes, whose quantizers follow the float
    model's last bits (batches differ between the runs)."""
    source = make_alpha_clip(tmp_path / name, frames=16, codec_args=codec_args)  # (4 segments of 4 frames)
    options = api.UpscaleOptions(model="bicubic")
    video = api.VideoOptions(codec=codec, segment_seconds=0.1)
    output = tmp_path / f"out{source.suffix}"
    with pytest.raises(KeyboardInterrupt):
        api.upscale_video_in_segments(source, output, options=options, video=video, on_segment=StopAfterFirst())
    assert segment_file in [path.name for path in (tmp_path / f".{output.name}.segments").iterdir()]
    result = api.upscale_video_in_segments(source, output, devices="cpu,cpu", options=options, video=video)
    assert result.times.extra["resumed"] == 1 and result.times.extra["segments"] >= 4
    assert ffprobe_frame_pts(output) == ffprobe_frame_pts(source)
    single = api.upscale_video(source, tmp_path / f"single{source.suffix}", options=options,
                               video=api.VideoOptions(codec=codec))
    deep = source.suffix == ".mov"
    if deep:  # ProRes 4444's FourCC (the join's stream was tagged 422 HQ, "apch", and decoded at 10 bits: helper-59)
        assert [ffprobe_streams_of(path, "v:0")[0]["codec_tag_string"] for path in (output, single.output)] == [
            "ap4h", "ap4h"]
    got, expected = rgba_frames(output, deep=deep).astype(int), rgba_frames(single.output, deep=deep).astype(int)
    assert (got[..., 3] < got[..., 3].max() // 2).any()  # transparent pixels
    assert np.abs(got - expected).mean() <= tolerance
    if codec == "auto" and source.suffix == ".webm":  # Matroska's AlphaMode (a tag to ffprobe; in capitals where
        tags = ffprobe_streams_of(output, "v:0")[0]["tags"]  # a tag says it too, as after ffmpeg's remux)
        assert {key.lower(): value for key, value in tags.items()}["alpha_mode"] == "1"


def test_a_video_in_segments_is_warned_about_once_not_once_a_segment(tmp_path, caplog):
    source = make_alpha_clip(tmp_path / "graphics.mov", frames=12,  # (segments of at least 4 frames)
                             codec_args=("-c:v", "prores_ks", "-pix_fmt", "yuva444p10le"))
    result = api.upscale_video_in_segments(source, options=api.UpscaleOptions(model="bicubic"),
                                           video=api.VideoOptions(segment_seconds=0.05))
    assert result.times.extra["segments"] >= 3
    assert caplog.text.count("codec prores stores at most 10 bits") == 1


def test_vp9_alpha_at_times_matroska_cannot_hold_is_upscaled_in_one_run(tmp_path, caplog):
    """30 fps in QuickTime (1/15360 s units): frame times that are no whole millisecond, which .mkv segments would
    round."""
    source = tmp_path / "sticker.mov"
    ffmpeg("-f", "lavfi", "-i", MOVING_ALPHA.format(seconds=0.4).replace("rate=25", "rate=30"), "-c:v", "qtrle",
           "-g", "3", source)
    result = api.upscale_video_in_segments(source, tmp_path / "out.mkv", devices="cpu,cpu",
                                           options=api.UpscaleOptions(model="bicubic"),
                                           video=api.VideoOptions(segment_seconds=0.1))
    assert "frame times are not whole milliseconds is upscaled in one run on cpu" in caplog.text
    assert result.frames == 12
    assert ffprobe_streams_of(result.output, "v:0")[0]["tags"]["alpha_mode"] == "1"
    assert ffprobe_frame_pts(result.output) == [round(i * 1000 / 30) for i in range(12)]


@pytest.mark.parametrize("backend", ["dali", "decord"])
def test_decoders_without_alpha_leave_such_videos_to_pyav(tmp_path, caplog, backend):
    source = make_alpha_clip(tmp_path / "overlay.webm", frames=3)
    with open_decoder(source, backend=backend) as decoder:
        assert decoder.backend == "pyav"
        frames = next(decoder.batches(8)).frames
    assert frames.shape == (3, 4, 48, 64)
    assert f"decoding with PyAV instead of {'DALI' if backend == 'dali' else backend}: the video has an alpha " \
           "channel" in caplog.text
    expected = torch.from_numpy(rgba_frames(source)).permute(0, 3, 1, 2)
    assert torch.equal(frames[:, 3], expected[:, 3])  # alpha is not converted: it must be exact


def test_probe_says_so_and_counts_the_alpha_in_the_model_work(tmp_path):
    import dataclasses

    from vsr.pipelines.probe import estimate_work, format_probe, probe

    info = probe(make_alpha_clip(tmp_path / "overlay.webm", frames=3))
    assert "yuva420p (8-bit)" in format_probe(info) and ", with alpha" in format_probe(info)
    opaque = dataclasses.replace(info.video, alpha=False)
    assert "3.1 GMAC per frame" in estimate_work(opaque, scale=4, macs_per_pixel=1e6)  # 64×48 pixels
    assert "6.1 GMAC per frame" in estimate_work(info.video, scale=4, macs_per_pixel=1e6)


def test_a_palette_with_transparent_entries_is_alpha(tmp_path):
    source = tmp_path / "palette.mkv"  # PNG frames in 8-bit palette form, its entry for the left half transparent
    ffmpeg("-f", "lavfi", "-i", MOVING_ALPHA.replace("mod(X*4+T*400,256)", "if(gt(X,30),255,0)").format(seconds=0.12),
           "-vf", "split[a][b];[a]palettegen=reserve_transparent=1[p];[b][p]paletteuse=alpha_threshold=128",
           "-c:v", "png", source)
    assert ffprobe_streams_of(source, "v:0")[0]["pix_fmt"] == "pal8"
    result = api.upscale_video(source, options=api.UpscaleOptions(model="bicubic"))
    assert ffprobe_streams_of(result.output, "v:0")[0]["tags"]["alpha_mode"] == "1"
    alpha = rgba_frames(result.output)[..., 3]
    assert (alpha[:, :150, :100] < 5).all() and (alpha[:, :, 140:] > 250).all()  # (the bottom band is opaque)


def test_a_webm_remuxed_by_ffmpeg_still_has_alpha(tmp_path):
    from vsr.pipelines.probe import video_has_alpha

    source = make_alpha_clip(tmp_path / "overlay.webm", frames=3)
    ffmpeg("-i", source, "-c", "copy", tmp_path / "remuxed.webm")  # ffmpeg writes the tag as ALPHA_MODE
    assert video_has_alpha(tmp_path / "remuxed.webm")


def test_deinterlacing_a_vp9_with_alpha_keeps_the_alpha(tmp_path):
    source = make_alpha_clip(tmp_path / "overlay.webm", frames=3)
    output = tmp_path / "out.mkv"
    api.upscale_video(source, output, options=api.UpscaleOptions(model="bicubic"),
                      video=api.VideoOptions(codec="ffv1", deinterlace="on"))
    assert (rgba_frames(output)[:, :150, :, 3] < 128).any()


def test_a_batch_names_and_finds_alpha_videos_as_vsr_upscale_does(tmp_path):
    from vsr.pipelines import batch

    folder = tmp_path / "in"
    folder.mkdir()
    make_alpha_clip(folder / "overlay.webm", frames=3)
    make_alpha_clip(folder / "lossless.avi", frames=3, codec_args=("-c:v", "ffv1", "-pix_fmt", "bgra"))
    make_alpha_clip(folder / "sticker.apng", frames=3, codec_args=("-f", "apng"))
    make_alpha_clip(folder / "badge.gif", frames=3, codec_args=())
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.12", folder / "plain.webm")
    jobs = batch.discover(folder, tmp_path / "out", options=api.UpscaleOptions(model="bicubic"),
                          video=api.VideoOptions())
    # An alpha .webm stays .webm (VP9 keeps it there); .avi cannot keep it: .mkv; H.264 goes in no .webm; a GIF or
    # APNG gives one of its kind (pipelines/animation.py).
    assert sorted(job.name for job in jobs) == [
        "badge.x4.gif", "lossless.x4.mkv", "overlay.x4.webm", "plain.x4.mkv", "sticker.x4.apng"]


def test_the_default_codecs_preset_crf_and_options_do_not_break_an_alpha_video(tmp_path, caplog):
    source = make_alpha_clip(tmp_path / "overlay.webm", frames=3)
    result = api.upscale_video(source, options=api.UpscaleOptions(model="bicubic"),
                               video=api.VideoOptions(preset="ultrafast", crf=20,
                                                      encoder_options={"tune": "animation"}))
    assert "the video has alpha, so it is written with libvpx-vp9" in caplog.text
    assert ffprobe_streams_of(result.output, "v:0")[0]["tags"]["alpha_mode"] == "1"


def test_an_alpha_pix_fmt_asked_for_an_opaque_source_is_opaque(tmp_path):
    source = tmp_path / "plain.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.12", source)
    output = tmp_path / "out.mov"
    api.upscale_video(source, output, options=api.UpscaleOptions(model="bicubic"),
                      video=api.VideoOptions(codec="prores", pix_fmt="yuva444p10le"))
    assert ffprobe_streams_of(output, "v:0")[0]["pix_fmt"].startswith("yuva444p")
    assert (rgba_frames(output)[..., 3] == 255).all()


def test_an_odd_size_says_which_codecs_keep_alpha_there(tmp_path):
    source = make_alpha_clip(tmp_path / "overlay.webm", frames=3)
    with pytest.raises(OptionError, match="needs an even width and height, not 195x146; ask for an even "
                                          "--width/--height, or use --codec ffv1 or prores"):
        api.upscale_video(source, tmp_path / "odd.webm", options=api.UpscaleOptions(model="bicubic", width=195))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_the_color_hidden_under_full_transparency_does_not_show(dtype):
    """RGB and alpha are upscaled apart (as Real-ESRGAN does): the color an encoder left in see-through pixels
    spread into the visible edge beside them, red up to 131 of 255 at an edge pixel (helper-74). They now take
    the visible colors around them before the model runs."""
    frames = torch.zeros(2, 4, 16, 16, dtype=torch.uint8)
    frames[:, 1, :, :8], frames[:, 3, :, :8] = 200, 255  # opaque green on the left, see-through on the right...
    frames[0, 0, :, 8:], frames[1, 2, :, 8:] = 255, 255  # ...hiding red in one frame, blue in the other
    frames = frames if dtype == torch.uint8 else frames.float() / 255
    given = frames.clone()
    out = upscale_with_alpha(Engine(bicubic_model(4), device="cpu"), frames)
    shown = out[:, 3:] > 0
    assert bool(shown.any()) and torch.equal(out[0, :3] * shown[0], out[1, :3] * shown[1])
    assert torch.equal(frames, given)  # (the caller's frames are left as they were)
