"""VideoWriter on real clips, judged by ffprobe / ffmpeg and by decoding the output with PyAV."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.pipelines import media_fixtures as media
from vsr.errors import OptionError, OutputError
from vsr.pipelines.colour import SWSCALE_RGB16_WHITE, rgb_to_yuv
from vsr.pipelines.encode import CODECS, YUV_PLANAR_FORMATS, VideoWriter, choose_pix_fmt, partial_path
from vsr.pipelines.frames import ColorInfo, FrameBatch
from vsr.pipelines.probe import Hdr10Metadata, read_hdr10
from vsr.pipelines.segments import upscale_video_in_segments
from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, upscale_video

pytestmark = media.requires_ffmpeg


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mp4": media.make_aac_mp4(folder / "aac.mp4"),
        "vfr_mp4": media.make_vfr_clip(folder / "vfr.mp4"),
        "vfr_mkv": media.make_vfr_clip(folder / "vfr.mkv"),
        "10bit": media.make_10bit_clip(folder / "deep.mkv"),
        "chart": media.make_color_chart(folder / "chart.mp4"),
        "rotated": media.make_rotated_clip(folder / "rotated.mp4"),
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_frames_keep_their_count_times_and_the_requested_size(clips, tmp_path):
    source = clips["mp4"]
    before = sha256(source)
    output = media.write_upscaled(source, tmp_path / "out.mp4", scale=4)
    assert sha256(source) == before  # the source is only read
    stream = media.ffprobe_streams_of(output, "v:0")[0]
    source_stream = media.ffprobe_streams_of(source, "v:0")[0]
    assert (stream["width"], stream["height"]) == (4 * 64, 4 * 48)
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert media.video_pts(output) == media.video_pts(source)  # same frames, same times, same units
    assert stream["time_base"] == source_stream["time_base"]
    assert stream["avg_frame_rate"] == source_stream["avg_frame_rate"] == "25/1"
    assert not partial_path(output).exists()


@pytest.mark.parametrize("source_name, suffix", [("vfr_mp4", ".mp4"), ("vfr_mp4", ".mkv"), ("vfr_mkv", ".mp4")])
def test_variable_frame_rate_survives(clips, tmp_path, source_name, suffix):
    source = clips[source_name]
    output = media.write_upscaled(source, tmp_path / f"out{suffix}")
    times = media.video_times(output)
    assert times == media.video_times(source)
    durations = {b - a for a, b in zip(times, times[1:])}
    assert len(durations) > 2  # really variable: 20, 40, 80, 120 ms


@pytest.mark.parametrize("codec", ["libx264", "x264-lossless"])
def test_a_raw_h264_output_declares_the_sources_frame_rate(clips, tmp_path, codec):
    """A raw stream has no container to time its frames: readers take the rate the H.264 stream declares, which
    x264 writes from the encoder's time base (1/12800 s for this MP4: 12800 fps) unless told the rate is constant."""
    output = media.write_upscaled(clips["mp4"], tmp_path / "out.h264", codec=codec)
    assert media.ffprobe_streams_of(output, "v:0")[0]["r_frame_rate"] == "25/1"
    remuxed = tmp_path / "remuxed.mp4"  # what a user does next: its frames 40 ms apart, not 78 µs
    media.ffmpeg("-i", output, "-c", "copy", remuxed)
    times = media.video_times(remuxed)
    assert [b - a for a, b in zip(times, times[1:])] == [Fraction(1, 25)] * 9


def test_a_variable_rate_source_keeps_its_times_and_a_raw_output_declares_its_average_rate(clips, tmp_path):
    source = clips["vfr_mkv"]
    output = media.write_upscaled(source, tmp_path / "out.h264")
    declared = Fraction(media.ffprobe_streams_of(output, "v:0")[0]["r_frame_rate"])
    assert declared == media.video_info(source).average_rate  # not the source's 1000 ticks a second
    assert media.video_times(media.write_upscaled(source, tmp_path / "out.mkv")) == media.video_times(source)


def test_10bit_source_gives_10bit_output(clips, tmp_path):
    source = clips["10bit"]
    output = media.write_upscaled(source, tmp_path / "out.mkv", deep=True)
    stream = media.ffprobe_streams_of(output, "v:0")[0]
    assert stream["pix_fmt"] == "yuv420p10le"
    assert stream["color_space"] == "bt709" and stream["color_range"] == "tv"
    assert media.video_pts(output) == media.video_pts(source)


def test_10bit_path_keeps_more_than_8_bits(clips, tmp_path):
    """Float frames go through 16-bit RGB: a (near) lossless 10-bit encode returns them within a 10-bit level."""
    source = clips["10bit"]
    output = media.write_upscaled(source, tmp_path / "out.mkv", deep=True, pix_fmt="yuv444p10le", options={"qp": "0"})
    fed = np.concatenate([b.frames.permute(0, 2, 3, 1).numpy() for b in media.decoded_batches(source, deep=True)])
    decoded, _ = media.decode_rgb(output, deep=True)
    error_in_10bit_levels = np.abs(np.stack(decoded) / SWSCALE_RGB16_WHITE - fed).mean() * 1023
    assert error_in_10bit_levels < 0.5  # 8-bit storage would give about 1 level of rounding (4 for truncation)


@pytest.mark.parametrize("codec, suffix", [("x264-lossless", ".mp4"), ("ffv1", ".mkv")])
def test_lossless_codecs_store_the_rgb_frames_exactly(clips, tmp_path, codec, suffix):
    source = clips["chart"]
    output = media.write_upscaled(source, tmp_path / f"out{suffix}", codec=codec)
    fed = np.concatenate([b.frames.permute(0, 2, 3, 1).numpy() for b in media.decoded_batches(source)])
    decoded, _ = media.decode_rgb(output)
    np.testing.assert_array_equal(np.stack(decoded), fed)


def test_yuv_conversion_uses_the_source_matrix_and_tags_it(clips, tmp_path):
    """A color chart through 4:4:4 x264 at qp 0: only the RGB→YUV→RGB rounding is left, if the output is
    converted and tagged with the source's BT.709; read back as BT.601, the colors shift."""
    source = clips["chart"]
    output = media.write_upscaled(source, tmp_path / "out.mkv", pix_fmt="yuv444p", options={"qp": "0"})
    stream = media.ffprobe_streams_of(output, "v:0")[0]
    assert (stream["color_space"], stream["color_primaries"], stream["color_transfer"], stream["color_range"]) == (
        "bt709", "bt709", "bt709", "tv")
    fed = np.concatenate([b.frames.permute(0, 2, 3, 1).numpy() for b in media.decoded_batches(source)]).astype(int)
    decoded, _ = media.decode_rgb(output)  # with the matrix the output is tagged with
    assert np.abs(np.stack(decoded) - fed).mean() < 1.0
    with av.open(str(output)) as container:
        as_bt601 = [f.reformat(format="rgb24", src_colorspace="itu601", src_color_range=1).to_ndarray()
                    for f in container.decode(video=0)]
    assert np.abs(np.stack(as_bt601) - fed).mean() > 2.0


def planes(path: Path) -> tuple[int, list[np.ndarray]]:
    """The first frame's range (1 limited, 2 full) and its planes' samples, each plane's padding left out."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
        return frame.color_range, [np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width]
                                   for plane in frame.planes]


@pytest.mark.parametrize("pix_fmt, neutral", [(None, 128), ("yuv420p10le", 512)])
def test_full_range_output_keeps_gray_neutral(tmp_path, pix_fmt, neutral):
    """swscale (FFmpeg 8) puts full-range chroma a level low (127, 511): the frames go through rgb_to_yuv."""
    source = tmp_path / "gray.avi"  # MJPEG: full range, as cameras write it
    media.ffmpeg("-f", "lavfi", "-i", "color=gray:size=32x32:rate=25", "-frames:v", "2", "-pix_fmt", "yuvj420p",
                 "-c:v", "mjpeg", "-q:v", "1", source)
    assert [np.unique(plane).tolist() for plane in planes(source)[1][1:]] == [[128], [128]]
    output = upscale_video(source, tmp_path / "out.mkv", options=UpscaleOptions(model="bicubic", outscale=2),
                           video=VideoOptions(pix_fmt=pix_fmt)).output
    color_range, (_, cb, cr) = planes(output)
    assert color_range == 2 and np.unique(cb).tolist() == np.unique(cr).tolist() == [neutral]


def test_prores_from_a_full_range_source_is_limited_range_and_keeps_its_colour(tmp_path):
    """ProRes has no full-range flag and its decoders read limited range: full-range samples came out 20 levels
    light (0xE6 as 0xFA)."""
    source = tmp_path / "light.avi"
    media.ffmpeg("-f", "lavfi", "-i", "color=0xE6E6E6:size=32x32:rate=25", "-frames:v", "2", "-pix_fmt", "yuvj420p",
                 "-c:v", "mjpeg", "-q:v", "1", source)
    output = upscale_video(source, tmp_path / "out.mov", options=UpscaleOptions(model="bicubic", outscale=2),
                           video=VideoOptions(codec="prores")).output
    assert planes(output)[0] == 1  # limited
    with av.open(str(source)) as before, av.open(str(output)) as after:
        shown = [next(video.decode(video=0)).to_ndarray(format="rgb24").astype(int) for video in (before, after)]
    assert abs(shown[1].mean() - shown[0].mean()) < 1.5


def test_gray_output_is_full_range_and_says_so(tmp_path):
    source = tmp_path / "dark.mp4"  # limited range: Y 43 is 31 of 255 in full range
    media.ffmpeg("-f", "lavfi", "-i", "color=0x202020:size=32x32:rate=25", "-frames:v", "2", "-pix_fmt", "yuv420p",
                 "-c:v", "libx264", "-qp", "0", source)
    assert np.unique(planes(source)[1][0]).tolist() == [43]
    output = upscale_video(source, tmp_path / "out.mkv", options=UpscaleOptions(model="bicubic", outscale=2),
                           video=VideoOptions(pix_fmt="gray")).output
    color_range, (luma, *_) = planes(output)
    assert color_range == 2 and np.unique(luma).tolist() == [31]


@pytest.mark.parametrize("tags, size", [(["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"],
                                         "32x32"), ([], "1280x720")], ids=["bt709", "untagged-hd"])
def test_gray_output_is_the_sources_own_luma_whatever_its_matrix(tmp_path, tags, size):
    """swscale weighs RGB by BT.601 when making gray, whatever the matrix: a BT.709 red came out 11 levels light; an
    untagged HD stream, decoded as BT.601 and weighed as BT.709 (its size's guess), 15 levels dark."""
    source = tmp_path / "red.mp4"
    media.ffmpeg("-f", "lavfi", "-i", f"color=0xC83C28:size={size}:rate=25", "-frames:v", "1", "-pix_fmt", "yuv420p",
                 "-c:v", "libx264", "-qp", "0", *tags, source)
    (luma_limited,) = np.unique(planes(source)[1][0]).tolist()
    output = upscale_video(source, tmp_path / "out.mkv", options=UpscaleOptions(model="bicubic", outscale=1),
                           video=VideoOptions(pix_fmt="gray", codec="ffv1")).output
    (luma,) = np.unique(planes(output)[1][0]).tolist()
    assert abs(luma - (luma_limited - 16) * 255 / 219) <= 1


@pytest.mark.parametrize("size, matrix", [("64x48", "bt601"), ("1280x720", "bt709")], ids=["sd", "hd"])
def test_an_untagged_videos_colors_are_read_as_players_show_them_and_kept(tmp_path, size, matrix):
    """Decoded as BT.601 whatever the size (FFmpeg's guess), an untagged HD video was written as BT.709 (the
    players' guess, which the output is tagged with): its red's Y/Cb/Cr 73/115/202 became 60/123/203 (helper-62)."""
    source = tmp_path / "red.mp4"
    media.ffmpeg("-f", "lavfi", "-i", f"color=0xC81E28:size={size}:rate=25,format=rgb24", "-frames:v", "1",
                 "-vf", f"scale=out_color_matrix={matrix}:out_range=tv", "-pix_fmt", "yuv444p", "-c:v", "libx264",
                 "-qp", "0", source)
    assert media.ffprobe_streams_of(source, "v:0")[0].get("color_space", "unknown") == "unknown"
    original = [np.unique(plane).tolist() for plane in planes(source)[1]]
    output = upscale_video(source, tmp_path / "out.mkv", options=UpscaleOptions(model="bicubic", outscale=1),
                           video=VideoOptions(codec="ffv1", pix_fmt="yuv444p")).output
    for (value,), plane in zip(original, planes(output)[1]):
        assert np.abs(plane.astype(int) - value).max() <= 1


@pytest.mark.parametrize("height, expected", [(48, "smpte170m"), (720, "bt709")])
def test_untagged_source_is_tagged_with_what_players_would_assume(clips, tmp_path, height, expected):
    source = clips["mp4"]
    info = replace(media.video_info(source), height=height, color=ColorInfo())
    with VideoWriter(tmp_path / "out.mkv", source=source, source_info=info, width=64, height=48) as writer:
        writer.write(media.decoded_batches(source, scale=1)[0])
    stream = media.ffprobe_streams_of(tmp_path / "out.mkv", "v:0")[0]
    assert (stream["color_space"], stream["color_primaries"], stream["color_range"]) == (expected, expected, "tv")


def test_rotation_is_kept(clips, tmp_path):
    source = clips["rotated"]
    assert media.video_info(source).rotation == 90
    for suffix in (".mp4", ".mkv"):
        output = media.write_upscaled(source, tmp_path / f"out{suffix}")
        assert media.video_info(output).rotation == 90


def test_a_pixel_aspect_the_output_cannot_keep_is_warned_about(tmp_path, caplog):
    """Matroska, AVI and NUT store no pixel aspect that PyAV can set: only H.264 and HEVC carry it in their headers."""
    source = tmp_path / "dvd.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=72x48:rate=25", "-frames:v", "3", "-vf", "setsar=32/27",
                 "-pix_fmt", "yuv420p", source)
    options = UpscaleOptions(model="bicubic", outscale=2)
    kept = {}
    for name, codec in (("ffv1.mkv", "ffv1"), ("x264.mkv", "libx264"), ("ffv1.mp4", "ffv1")):
        caplog.clear()
        upscale_video(source, tmp_path / name, options=options, video=VideoOptions(codec=codec))
        stream = media.ffprobe_streams_of(tmp_path / name, "v:0")[0]
        kept[name] = (stream.get("sample_aspect_ratio") == "32:27", "its pixels are not square" in caplog.text)
    assert kept == {"ffv1.mkv": (False, True), "x264.mkv": (True, False), "ffv1.mp4": (True, False)}


@pytest.mark.parametrize("suffix, devices", [(".avi", None), (".ts", None), (".avi", "cpu,cpu")])
def test_a_container_without_a_display_matrix_gets_upright_frames(tmp_path, suffix, devices):
    """AVI, MPEG-TS and the like drop the rotation: the frames are turned upright, as ffmpeg writes them (they played
    sideways). Two workers' segments are turned too."""
    from tests.pipelines.test_sequences import pixels
    from vsr.pipelines.segments import upscale_video_in_segments

    source = tmp_path / "phone.mp4"
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:, :16] = 255  # a white band down the stored left edge: where it ends up tells the turn
    stored[:12, :, 0] = 255  # and a red one along the top, against a mirror image
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"qp": "0", "g": "4"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.set_display_rotation(90)
        for index in range(8):
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    output = tmp_path / f"out{suffix}"
    result = upscale_video_in_segments(source, output, devices=devices, options=UpscaleOptions(model="bicubic",
                                                                                                 outscale=2))
    stream = media.ffprobe_streams_of(output, "v:0")[0]
    assert (result.width, result.height) == (stream["width"], stream["height"]) == (96, 128)
    assert not any("rotation" in side_data for side_data in stream.get("side_data_list", []))
    shown = pixels(source)[0].astype(int)  # ffmpeg turns it by the display matrix
    assert shown.shape == (64, 48, 3)
    for frame in pixels(output):
        ours = frame[::2, ::2].astype(int)
        assert np.abs(ours - shown).mean() < 8
        assert np.abs(ours - shown[::-1, ::-1]).mean() > 60  # the other way round would be far off


@pytest.mark.parametrize("codec, suffix, expected", [
    ("libx265", ".mkv", "hevc"), ("libsvtav1", ".mp4", "av1"), ("libvpx-vp9", ".webm", "vp9"),
])
def test_other_codecs(clips, tmp_path, codec, suffix, expected):
    output = media.write_upscaled(clips["vfr_mp4"], tmp_path / f"out{suffix}", codec=codec)
    assert media.ffprobe_streams_of(output, "v:0")[0]["codec_name"] == expected
    assert media.video_times(output) == media.video_times(clips["vfr_mp4"])


MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"  # BT.2020 primaries, D65, 1000 nits


@pytest.fixture(scope="module")
def hdr10(tmp_path_factory) -> Path:
    """A 10-bit PQ HEVC clip with a mastering display and light levels, as UHD discs and streams carry them."""
    path = tmp_path_factory.mktemp("hdr") / "hdr10.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "4", "-pix_fmt", "yuv420p10le",
                 "-c:v", "libx265", "-x265-params", f"log-level=error:master-display={MASTERING}:max-cll=1000,400",
                 "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", path)
    return path


def ffprobe_hdr10(path: Path) -> dict:
    """The first frame's mastering display and light levels, as ffprobe reads them, as floats."""
    frames = media.ffprobe(path, "-show_frames", "-read_intervals", "%+#1", "-show_entries", "frame=side_data_list")
    found = {}
    for side in frames["frames"][0].get("side_data_list", []):
        for key, value in side.items():
            if key != "side_data_type":
                found[key] = float(Fraction(value)) if isinstance(value, str) else float(value)
    return found


@pytest.mark.parametrize("codec, tolerance", [("libx265", 0), ("libsvtav1", 2e-4)])  # AV1 stores 16.16 fixed point
def test_hdr10_metadata_is_written_again(hdr10, tmp_path, codec, tolerance):
    expected = ffprobe_hdr10(hdr10)
    assert expected["max_luminance"] == 1000 and expected["max_content"] == 1000 and expected["red_x"] == 0.68
    output = media.write_upscaled(hdr10, tmp_path / "out.mkv", codec=codec)
    got = ffprobe_hdr10(output)
    assert got.keys() == expected.keys()
    assert all(abs(got[key] - expected[key]) <= tolerance for key in expected), (got, expected)


def test_prores_frames_carry_the_primaries_and_transfer_too(hdr10, tmp_path):
    """ProRes writes the colour tags into every frame, from the frames' own (a re-encode by ffmpeg reads those): PQ
    and BT.2020 there, not "unknown"."""
    output = media.write_upscaled(hdr10, tmp_path / "out.mov", codec="prores")
    frame = media.ffprobe(output, "-show_frames", "-read_intervals", "%+#1", "-select_streams", "v:0")["frames"][0]
    assert (frame["color_space"], frame["color_primaries"], frame["color_transfer"]) == (
        "bt2020nc", "bt2020", "smpte2084")


def test_hdr10_metadata_through_x264_and_a_warning_for_ffv1(hdr10, tmp_path, caplog):
    # The ffprobe here (FFmpeg 5.1) does not read H.264's mastering display SEI; PyAV's FFmpeg does.
    output = media.write_upscaled(hdr10, tmp_path / "out.mkv", codec="libx264")
    assert read_hdr10(output, 0) == read_hdr10(hdr10, 0) == Hdr10Metadata(
        ((0.68, 0.32), (0.265, 0.69), (0.15, 0.06)), (0.3127, 0.329), (0.0001, 1000.0), 1000, 400)
    media.write_upscaled(hdr10, tmp_path / "lossless.mkv", codec="ffv1")
    assert "codec ffv1 cannot write the source's HDR10 metadata" in caplog.text
    sdr = media.write_upscaled(media.make_aac_mp4(tmp_path / "sdr.mp4"), tmp_path / "sdr.x2.mp4")
    assert read_hdr10(sdr, 0) is None


def test_existing_output_is_refused_unless_overwrite(clips, tmp_path):
    output = tmp_path / "out.mp4"
    output.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        media.write_upscaled(clips["mp4"], output)
    assert output.read_bytes() == b"precious"
    media.write_upscaled(clips["mp4"], output, overwrite=True)
    assert len(media.video_pts(output)) == len(media.video_pts(clips["mp4"]))
    link = tmp_path / "link.mp4"
    link.symlink_to(tmp_path / "nowhere.mp4")  # a link to nothing is a file of the user's too: replaced silently
    with pytest.raises(OutputError, match="link.mp4: already exists"):
        media.write_upscaled(clips["mp4"], link)
    assert link.is_symlink()


def test_an_exception_inside_the_block_leaves_no_file(clips, tmp_path):
    source = clips["mp4"]
    before = sha256(source)
    output = tmp_path / "out.mp4"
    info = media.video_info(source)
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(output, source=source, source_info=info, width=128, height=96) as writer:
            writer.write(media.decoded_batches(source)[0])
            assert partial_path(output).exists()
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    assert sha256(source) == before


def test_a_second_writer_of_one_output_is_one_line_and_a_killed_runs_temporary_is_taken_over(clips, tmp_path):
    """Two runs shared the temporary name: both muxers wrote one file, and the first rename left the other run's
    frames (or both spliced) under the name of the run that said it succeeded."""
    source, output = clips["mp4"], tmp_path / "out.mp4"
    info = media.video_info(source)
    partial_path(output).write_bytes(b"left by a run that was killed")  # (not locked: nobody writes it)
    with VideoWriter(output, source=source, source_info=info, width=128, height=96) as writer:
        writer.write(media.decoded_batches(source)[0])
        with pytest.raises(OutputError, match=f"{output}: another vsr run is writing it"):
            VideoWriter(output, source=source, source_info=info, width=128, height=96, overwrite=True)
        assert partial_path(output).exists()  # (the refused run leaves the other's file alone)
    assert media.video_pts(output) == media.video_pts(source)[: len(media.video_pts(output))]
    assert os.listdir(tmp_path) == ["out.mp4"]


@pytest.mark.parametrize("step", ["locked", "av.open"])
def test_ctrl_c_while_the_writer_opens_leaves_no_temporary_file(clips, tmp_path, monkeypatch, step):
    """Ctrl-C just after the temporary file was made, before the container was open: the CLI said "no unfinished
    file is left" and left .NAME.partial.mp4 (CI, stop 23: the Ctrl-C test signals the moment the file appears)."""
    import vsr.fsutil

    output = tmp_path / "out.mp4"
    module, name = (av, "open") if step == "av.open" else (vsr.fsutil, step)
    real = getattr(module, name)

    def then_interrupted(path, *args, **kwargs):
        made = real(path, *args, **kwargs)
        if str(path) != str(partial_path(output)):
            return made  # (the source, probed)
        made.close()  # (only the file on disk is left to clean up)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        VideoWriter(output, source=clips["mp4"], source_info=media.video_info(clips["mp4"]), width=128, height=96)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_put_at_the_output_while_the_run_worked_is_replaced_only_with_overwrite(clips, tmp_path, overwrite):
    """Checked only before the work: a file that appeared at the output name meanwhile was replaced without a word
    (helper-79; image outputs were already kept)."""
    source, output = clips["mp4"], tmp_path / "out.mp4"
    info = media.video_info(source)
    writer = VideoWriter(output, source=source, source_info=info, width=128, height=96, overwrite=overwrite)
    writer.write(media.decoded_batches(source)[0])
    output.write_bytes(b"put there while the run worked")
    if overwrite:
        writer.close()
        assert media.video_pts(output)
    else:
        with pytest.raises(OutputError, match=f"{output}: already exists, written while this run worked"):
            writer.close()
        assert output.read_bytes() == b"put there while the run worked"
    assert os.listdir(tmp_path) == ["out.mp4"]


@media.DEV_FULL
def test_disk_full_is_an_output_error_and_leaves_no_file(clips, tmp_path):
    output = tmp_path / "out.mkv"
    partial_path(output).symlink_to("/dev/full")  # every write to the temporary file fails with ENOSPC
    with pytest.raises(OutputError, match="No space left on device"):
        media.write_upscaled(clips["mp4"], output)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS], ids=["ENOLCK", "ENOSYS"])
def test_a_file_system_without_locks_is_written_unlocked(clips, tmp_path, monkeypatch, code):
    """flock fails where the file system has no locks: NFS without its lock daemon (ENOLCK), Lustre mounted without
    -o flock (ENOSYS). The temporary file is then written unlocked, as before the writer refused one it could not make
    (b510864); only another run's lock (EWOULDBLOCK) is refused."""
    import fcntl

    def no_locks(file, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    output = media.write_upscaled(clips["mp4"], tmp_path / "out.mkv")
    assert len(media.video_pts(output)) == len(media.video_pts(clips["mp4"]))
    assert os.listdir(tmp_path) == ["out.mkv"]


def test_missing_folder_is_an_output_error(clips, tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        media.write_upscaled(clips["mp4"], tmp_path / "missing" / "out.mp4")


def test_output_cannot_be_the_source(clips, tmp_path):
    with pytest.raises(OutputError, match="would replace the input"):
        media.write_upscaled(clips["mp4"], clips["mp4"], overwrite=True)


def test_unknown_codec_lists_the_choices(clips, tmp_path):
    with pytest.raises(OptionError, match="unknown codec 'h266'.*libx264.*ffv1"):
        media.write_upscaled(clips["mp4"], tmp_path / "out.mp4", codec="h266")


def test_codec_the_container_cannot_hold(clips, tmp_path):
    with pytest.raises(OptionError, match="libx264.*webm"):
        media.write_upscaled(clips["mp4"], tmp_path / "out.webm", codec="libx264")
    assert os.listdir(tmp_path) == []


def test_nvenc_without_a_usable_gpu_is_an_option_error(clips, tmp_path):
    try:
        media.write_upscaled(clips["mp4"], tmp_path / "out.mp4", codec="h264_nvenc")
    except OptionError as error:
        assert "NVENC" in str(error) and "\n" not in str(error)
        assert os.listdir(tmp_path) == []
    else:
        pytest.skip("this machine has a working NVENC")


def test_nvenc_encodes_on_the_engines_gpu():
    """NVENC takes the first GPU unless told: `--devices 0,1` encoded both workers' segments on GPU 0."""
    from vsr.pipelines.encode import CODECS, nvenc_on

    nvenc, x264 = CODECS["hevc_nvenc"], CODECS["libx264"]
    assert nvenc_on(torch.device("cuda:1"), nvenc, {"cq": "21"}) == {"cq": "21", "gpu": "1"}
    assert nvenc_on(torch.device("cuda:1"), nvenc, {"gpu": "0"}) == {"gpu": "0"}  # (asked for by name)
    assert nvenc_on(torch.device("cuda:1"), x264, {}) == {} and nvenc_on(torch.device("cpu"), nvenc, {}) == {}


@pytest.mark.parametrize("width, height, warned", [(8192, 4352, False), (8320, 4352, True)])
def test_a_picture_beyond_every_codec_level_is_warned_about(clips, tmp_path, caplog, width, height, warned):
    info = media.video_info(clips["mp4"])
    with VideoWriter(tmp_path / "big.mp4", source=clips["mp4"], source_info=info, width=width, height=height,
                     preset="ultrafast") as writer:
        writer.abort()  # no frames: the warning comes when the encoder opens
    assert ("more pixels than the largest level" in caplog.text) == warned
    assert f"{width}x{height}" in caplog.text or not warned


def test_bad_settings_are_option_errors(clips, tmp_path):
    with pytest.raises(OptionError, match="no option.*not_an_option"):
        media.write_upscaled(clips["mp4"], tmp_path / "a.mp4", options={"not_an_option": "1"})
    with pytest.raises(OptionError, match="--preset warp-speed: codec 'libx264' takes ultrafast, "):
        media.write_upscaled(clips["mp4"], tmp_path / "b.mp4", preset="warp-speed")
    with pytest.raises(OptionError, match="takes no crf, its quality is fixed"):
        media.write_upscaled(clips["mp4"], tmp_path / "c.mkv", codec="ffv1", crf=10)
    with pytest.raises(OptionError, match="needs an even width and height, not 195x147"):
        VideoWriter(tmp_path / "e.mp4", source=clips["mp4"], source_info=media.video_info(clips["mp4"]),
                    width=195, height=147)  # 65x49 ×3: 4:2:0 cannot hold it
    with pytest.raises(OptionError, match="cannot encode pix_fmt 'yuv420p10le'"):
        media.write_upscaled(clips["mp4"], tmp_path / "d.mp4", codec="x264-lossless", pix_fmt="yuv420p10le")
    assert os.listdir(tmp_path) == []


def test_pixel_format_follows_the_bit_depth():
    assert choose_pix_fmt("libx264", 8) == "yuv420p"
    assert choose_pix_fmt("libx265", 10) == "yuv420p10le"
    assert choose_pix_fmt("libsvtav1", 12) == "yuv420p10le"  # the deepest SVT-AV1 has
    assert choose_pix_fmt("ffv1", 10) == "gbrp10le"
    assert choose_pix_fmt("libx264", 10, "yuv444p10le") == "yuv444p10le"
    with pytest.raises(OptionError, match="use 'ffv1'"):
        choose_pix_fmt("x264-lossless", 10)
    assert set(CODECS) >= {"libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1", "x264-lossless", "h264_nvenc"}


def test_time_base_of_the_output_is_the_sources(clips, tmp_path):
    """Frames keep their own pts: the encoder does not renumber them 0, 1, 2, ..."""
    source = clips["vfr_mkv"]
    output = media.write_upscaled(source, tmp_path / "out.mkv")
    assert media.video_pts(output) == media.video_pts(source)
    assert Fraction(media.ffprobe_streams_of(output, "v:0")[0]["time_base"]) == Fraction(1, 1000)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_trim_starts_a_preview_at_zero_and_keeps_its_frame_durations(clips, tmp_path, suffix):
    """Frames 160..380 ms of the VFR clip: trim=True shifts them to start at 0, trim=False keeps the source times."""
    source, window = clips["vfr_mkv"], (0.1, 0.4)
    times = [t for t in media.video_times(source) if window[0] <= t < window[1]]
    assert times == [Fraction(n, 1000) for n in (160, 180, 300, 340, 380)]
    trimmed = media.write_upscaled(source, tmp_path / f"trimmed{suffix}", window=window, trim=True)
    assert media.video_times(trimmed) == [t - times[0] for t in times]
    assert media.playback_errors(trimmed) == ""
    kept = media.write_upscaled(source, tmp_path / f"kept{suffix}", window=window)
    assert media.video_times(kept) == times


# ---- where RGB becomes YUV: rgb_to_yuv (torch, the GPU path) or swscale ------------------------------------------


def photo_batch(source: Path, deep: bool) -> FrameBatch:
    """3 frames of 70×50 (chroma rows of 35 samples: padded lines in every VideoFrame plane): two crops of
    scikit-image's astronaut and noise; float with sub-8-bit detail when `deep`."""
    data = pytest.importorskip("skimage.data")
    photo = data.astronaut()
    images = np.stack([photo[200:250, 180:250], photo[300:350, 100:170],
                       np.random.default_rng(5).integers(0, 256, (50, 70, 3), dtype=np.uint8)])
    frames = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    if deep:
        frames = (frames.float() + torch.rand(frames.shape, generator=torch.Generator().manual_seed(6))) / 256
    return FrameBatch(frames=frames, pts=media.video_pts(source)[:3])


def decoded_planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's Y, U, V planes as stored in the file, as int arrays."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            dtype = np.uint8 if frame.format.components[0].bits == 8 else np.uint16
            frames.append([np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width].astype(int)
                           for plane in frame.planes])
    return frames


def write_batch(source: Path, output: Path, batch: FrameBatch, pix_fmt: str, yuv_converter: str) -> Path:
    """`batch` through a lossless libx264 (qp 0), so the file holds exactly the planes it was given."""
    with VideoWriter(output, source=source, source_info=media.video_info(source), width=70, height=50,
                     pix_fmt=pix_fmt, options={"qp": "0"}, yuv_converter=yuv_converter) as writer:
        writer.write(batch)
    return output


@pytest.mark.parametrize("pix_fmt, deep", [("yuv420p", False), ("yuv422p", False), ("yuv444p10le", True),
                                           ("yuv420p10le", True)])
def test_torch_conversion_writes_its_planes_and_stays_within_a_level_of_swscale(clips, tmp_path, pix_fmt, deep):
    """yuv_converter="torch": the file holds rgb_to_yuv's planes exactly (lossless x264), tagged BT.709 tv, and
    within one level of the swscale file (the bound tests/pipelines/test_colour.py measures; this comparison is what
    caught swscale's slice-thread corruption of 10-bit rows, see encode._rgb_video_frames). On the CPU "auto" is
    swscale (faster there)."""
    source = clips["chart"]  # BT.709, limited range
    batch = photo_batch(source, deep)
    torch_file = write_batch(source, tmp_path / "torch.mkv", batch, pix_fmt, "torch")
    swscale_file = write_batch(source, tmp_path / "swscale.mkv", batch, pix_fmt, "swscale")
    auto_file = write_batch(source, tmp_path / "auto.mkv", batch, pix_fmt, "auto")

    bit_depth, chroma = YUV_PLANAR_FORMATS[pix_fmt]
    expected = rgb_to_yuv(batch.frames, "bt709", False, bit_depth, chroma)
    from_torch, from_swscale = decoded_planes(torch_file), decoded_planes(swscale_file)
    assert len(from_torch) == len(from_swscale) == 3
    for index, (torch_planes, swscale_planes) in enumerate(zip(from_torch, from_swscale)):
        for plane, written, theirs, wanted in zip("YUV", torch_planes, swscale_planes, expected):
            np.testing.assert_array_equal(written, wanted[index].numpy(), err_msg=f"frame {index} plane {plane}")
            assert np.abs(written - theirs).max() <= 1, f"frame {index} plane {plane}"
    assert any((a != b).any() for t, s in zip(from_torch, from_swscale) for a, b in zip(t, s))  # two paths really
    assert all((a == b).all() for t, s in zip(decoded_planes(auto_file), from_swscale) for a, b in zip(t, s))
    stream = media.ffprobe_streams_of(torch_file, "v:0")[0]
    assert (stream["pix_fmt"], stream["color_space"], stream["color_range"]) == (pix_fmt, "bt709", "tv")
    assert media.video_times(torch_file) == media.video_times(swscale_file) == media.video_times(source)[:3]


@pytest.mark.parametrize("yuv_converter", ["swscale", "torch"])
def test_float_black_grey_and_white_become_their_10_bit_levels(clips, tmp_path, yuv_converter):
    """Float frames are exact (1.0 is white) through either converter: Y 64, 502 and 940 in 10-bit limited range,
    chroma 512. swscale is given them in its own 16-bit scale, whose white is 65280 (encode._rgb_video_frames)."""
    source = clips["chart"]
    frames = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1).expand(3, 3, 50, 70).contiguous()
    output = write_batch(source, tmp_path / "levels.mkv", FrameBatch(frames, media.video_pts(source)[:3]),
                         "yuv420p10le", yuv_converter)
    for (y, u, v), level in zip(decoded_planes(output), (64, 502, 940), strict=True):
        assert np.all(y == level) and np.all(u == 512) and np.all(v == 512), (level, np.unique(y))


def test_torch_conversion_keeps_the_source_range_and_matrix(tmp_path):
    """A full-range BT.601 source: the planes are converted and tagged with its matrix and range."""
    source = media.make_aac_mp4(tmp_path / "source.mp4")
    color = ColorInfo(primaries="bt470bg", transfer="smpte170m", matrix="bt470bg", range="pc")
    info = replace(media.video_info(source), color=color)
    batch = photo_batch(source, deep=False)
    with VideoWriter(tmp_path / "out.mkv", source=source, source_info=info, width=70, height=50,
                     options={"qp": "0"}, yuv_converter="torch") as writer:
        writer.write(batch)
    expected = rgb_to_yuv(batch.frames, "bt470bg", True, 8, "420")
    decoded = decoded_planes(tmp_path / "out.mkv")
    assert len(decoded) == 3
    for index, planes in enumerate(decoded):
        for written, wanted in zip(planes, expected):
            np.testing.assert_array_equal(written, wanted[index].numpy())
    stream = media.ffprobe_streams_of(tmp_path / "out.mkv", "v:0")[0]
    assert (stream["color_space"], stream["color_range"]) == ("bt470bg", "pc")


def test_rgb_codecs_keep_the_rgb_path_whatever_the_converter(clips, tmp_path):
    source = clips["chart"]
    output = media.write_upscaled(source, tmp_path / "out.mkv", codec="ffv1", yuv_converter="torch")
    fed = np.concatenate([b.frames.permute(0, 2, 3, 1).numpy() for b in media.decoded_batches(source)])
    np.testing.assert_array_equal(np.stack(media.decode_rgb(output)[0]), fed)


def test_unknown_yuv_converter_is_an_option_error(clips, tmp_path):
    with pytest.raises(OptionError, match="unknown yuv_converter 'gpu'.*auto, torch, swscale"):
        media.write_upscaled(clips["mp4"], tmp_path / "out.mp4", yuv_converter="gpu")
    assert os.listdir(tmp_path) == []


def test_a_variable_rate_video_joined_from_segments_into_a_raw_stream_declares_its_average_rate(tmp_path):
    from vsr import api

    source = media.make_vfr_clip(tmp_path / "vfr.mkv", frames=30, gop=8)
    result = api.upscale_video_in_segments(source, tmp_path / "out.h264", options=api.UpscaleOptions(model="bicubic"),
                                           video=api.VideoOptions(segment_seconds=0.5))
    assert result.times.extra["segments"] > 1
    declared = Fraction(media.ffprobe_streams_of(result.output, "v:0")[0]["r_frame_rate"])
    assert declared == media.video_info(source).average_rate  # the segments (.mp4) were told of the .h264


def decoded_frame_count(path: Path) -> int:
    """Frames the ffmpeg command line decodes by default (a constant-rate output where the rate is declared)."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return sum(1 for line in result.stdout.splitlines() if not line.startswith("#"))


def test_a_variable_rate_video_in_matroska_declares_its_shortest_step_so_readers_keep_every_frame(tmp_path):
    from vsr import api

    source = media.make_vfr_clip(tmp_path / "vfr.mp4", frames=30, gop=8)  # steps of 20 to 120 ms
    one_run = media.write_upscaled(source, tmp_path / "one.mkv")
    joined = api.upscale_video_in_segments(source, tmp_path / "joined.mkv", options=api.UpscaleOptions(model="bicubic"),
                                           video=api.VideoOptions(segment_seconds=0.5))
    assert joined.times.extra["segments"] > 1
    for output in (one_run, joined.output):
        assert media.ffprobe_streams_of(output, "v:0")[0]["avg_frame_rate"] == "50/1"  # 20 ms, not the 17.6 average
        assert decoded_frame_count(output) == decoded_frame_count(source) == 30
        assert media.video_times(output) == media.video_times(source)


def _held_gif(path: Path) -> Path:
    """Three pictures shown 0.1, 0.3 and 2 s: a slide show's last one holds."""
    from PIL import Image

    pictures = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green", "blue")]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=[100, 300, 2000], loop=0)
    return path


def _phone_clip(path: Path) -> Path:
    """Variable-rate video in a 1/90000 time base that declares 90000 fps, as many phones write, the last frame
    shown 60 ms."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=90000)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 90000)
        pts = [0, 3000, 6300, 9000, 12600, 15000]
        for index, value in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 40, np.uint8), format="rgb24")
            frame.pts = value
            for packet in stream.encode(frame):
                packet.duration = 5400 if packet.pts == pts[-1] else 0  # (the encoder gives none)
                container.mux(packet)
        for packet in stream.encode(None):
            packet.duration = 5400 if packet.pts == pts[-1] else 0
            container.mux(packet)
    return path


@pytest.mark.parametrize("make, end, suffix", [
    (_held_gif, Fraction(12, 5), ".mkv"), (_held_gif, Fraction(12, 5), ".mp4"),
    (_phone_clip, Fraction(20400, 90000), ".mkv"), (_phone_clip, Fraction(20400, 90000), ".mp4"),
], ids=["gif into mkv", "gif into mp4", "phone into mkv", "phone into mp4"])
def test_the_last_frame_shows_as_long_as_in_the_source(tmp_path, make, end, suffix):
    """The muxers gave the last frame one frame at the declared rate: the GIF's 2-s hold became 0.15 s, the phone
    video's last frame 1/90000 s."""
    source = make(tmp_path / ("source.gif" if make is _held_gif else "source.mp4"))
    assert abs(float(media.ffprobe(source, "-show_entries", "format=duration")["format"]["duration"]) - end) < 0.002
    result = upscale_video(source, tmp_path / f"out{suffix}", options=UpscaleOptions(model="bicubic", outscale=2))
    found = media.ffprobe(result.output, "-show_entries", "format=duration:stream=duration")
    assert abs(float(found["format"]["duration"]) - float(end)) < 0.002
    if suffix == ".mp4":  # (the sample table too, which times the last sample by the last packet in decoding order)
        assert abs(float(found["streams"][0]["duration"]) - float(end)) < 0.002
    assert len(media.video_pts(result.output)) == (3 if make is _held_gif else 6)


@pytest.mark.parametrize("segmented", [False, True], ids=["one run", "segments"])
def test_an_mp4_of_a_recording_far_into_its_clock_is_as_long_as_its_frames(tmp_path, segmented):
    """MPEG-TS recordings start anywhere in a 26.5-hour clock: the last sample was stretched to the frames' end
    counted from 0, not from the first frame (helper-61: a TS starting at 1.48 s made an MP4 track 1.48 s too long,
    one past 2^31 ticks of 90 kHz, 6.6 h, a "muxer refused a packet" after the work, its segments too). The output
    now starts at 0, as ffmpeg's (test_output_start.py); its track still spans the frames alone."""
    source = tmp_path / "recording.ts"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2", "-c:v", "libx264", "-g", "10",
                 "-output_ts_offset", "30000", source)
    output = tmp_path / "out.mp4"
    if segmented:
        upscale_video_in_segments(source, output, options=UpscaleOptions(model="bicubic"),
                                  video=VideoOptions(segment_seconds=0.5))
    else:
        upscale_video(source, output, options=UpscaleOptions(model="bicubic"))
    found = media.ffprobe(output, "-show_entries", "stream=start_time,duration")["streams"][0]
    assert float(found["start_time"]) == 0 and abs(float(found["duration"]) - 2) < 0.002
    assert len(media.video_pts(output)) == 50


def _paused_clip(path: Path) -> Path:
    """An MP4 with B-frames whose frames pause 2 s after frame 16 (a recording paused): its packets' durations are
    steps in decoding order, so frame 16's packet, shown 0.04 s, can carry the 2-s step."""
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.8", "-vf",
                 "setpts='if(lt(N,17),N*0.04,2.64+(N-17)*0.04)/TB'", "-fps_mode", "vfr", "-c:v", "libx264", "-bf", "3",
                 "-g", "5", path)
    return path


@pytest.mark.parametrize("video", [VideoOptions(end=5.0), VideoOptions(start=0.2, end=100.0), VideoOptions()],
                         ids=["end past the end", "window past the end", "whole"])
@pytest.mark.parametrize("segmented", [False, True], ids=["one run", "segments"])
def test_a_last_frame_shows_until_the_videos_end_not_past_it(tmp_path, video, segmented):
    """An --end past the video's end held its last frame until --end (helper-58: a 0.8 s clip became 5 s, or
    99.8 s); a B-frame's packet duration made a paused video's last frame last 1.92 s."""
    from vsr.pipelines.probe import video_end
    from vsr.pipelines.segments import upscale_video_in_segments

    source = _paused_clip(tmp_path / "paused.mp4")
    assert video_end(source, 0) == Fraction(276, 100)
    options = UpscaleOptions(model="bicubic", outscale=2)
    if segmented:
        result = upscale_video_in_segments(source, tmp_path / "out.mkv", options=options, devices="cpu,cpu",
                                           video=video)
        assert result.times.extra["segments"] == 2
    else:
        result = upscale_video(source, tmp_path / "out.mkv", options=options, video=video)
    duration = float(media.ffprobe(result.output, "-show_entries", "format=duration")["format"]["duration"])
    assert abs(duration - (2.76 - (video.start or 0))) < 0.002


def test_a_gifs_last_delay_in_avi_counts_to_where_the_video_ends(tmp_path):
    """AVI counts frames at the declared rate: the last delay added in seconds after the last frame's place (which
    drifts from its time) made a 2.9 s GIF 4.64 s (helper-58)."""
    source = tmp_path / "slides.gif"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-final_delay", "200", source)
    result = upscale_video(source, tmp_path / "out.avi", options=UpscaleOptions(model="bicubic", outscale=2))
    duration = float(media.ffprobe(result.output, "-show_entries", "format=duration")["format"]["duration"])
    assert abs(duration - 2.9) < 0.3  # (within one frame at the declared rate, 100/29 fps)


def test_a_gif_whose_last_frame_holds_declares_its_step_and_says_where_that_frame_starts(tmp_path, caplog):
    """Ten frames 0.1 s apart, the last held 3 s: FFmpeg's average rate counts the hold (100/39 fps). Its steps are
    even, so it was taken for constant-rate and declared at that average: the AVI played every frame 0.39 s, and a
    --start inside the hold said the last frame started at 3.51 s."""
    source = tmp_path / "held.gif"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-final_delay", "300", source)
    options = UpscaleOptions(model="bicubic", outscale=2)
    result = upscale_video(source, tmp_path / "out.avi", options=options)
    found = media.ffprobe(result.output, "-show_entries", "stream=r_frame_rate:format=duration")
    assert found["streams"][0]["r_frame_rate"] == "10/1"
    assert abs(float(found["format"]["duration"]) - 3.9) < 0.002
    times = media.ffprobe(result.output, "-show_entries", "frame=best_effort_timestamp_time")["frames"]
    assert [float(frame["best_effort_timestamp_time"]) for frame in times] == [index / 10 for index in range(10)]
    with pytest.raises(OptionError, match=r"held.gif: no video frame from 2 s; the video lasts 3.900 s, its last frame "
                                          r"starting at 0.900 s$"):
        upscale_video(source, tmp_path / "late.avi", options=options, video=VideoOptions(start=2.0))
    assert "cut short" not in caplog.text  # (the decoder took the frames to end at 1.29 s of 3.9)


def test_a_last_frame_keeps_its_length_through_matroska_and_an_end_past_sources_without_one(tmp_path):
    """helper-59: Matroska's packets carry their own frame's duration (the MP4 rule, the last packet in decoding
    order, took a B-frame's 0.1 s for a 1.5-s last frame); an image sequence or a raw stream, whose packets say no
    end, held its last frame to an --end past it (4.1 s of 5)."""
    from vsr.pipelines.probe import video_end

    options = UpscaleOptions(model="bicubic", outscale=2)
    gif = tmp_path / "slides.gif"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=3", "-final_delay", "150", gif)
    once = upscale_video(gif, tmp_path / "once.mkv", options=options)  # (x264's B-frames, in Matroska)
    assert video_end(once.output, 0) == Fraction(22, 5)
    twice = upscale_video(once.output, tmp_path / "twice.mkv", options=options)
    assert abs(float(media.ffprobe(twice.output, "-show_entries", "format=duration")["format"]["duration"]) - 4.4) \
        < 0.002
    frames = tmp_path / "frames"
    frames.mkdir()
    for number in range(1, 11):
        media.ffmpeg("-f", "lavfi", "-i", "color=gray:size=32x24", "-frames:v", "1", frames / f"f{number:03d}.png")
    raw = tmp_path / "camera.h264"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.8", "-c:v", "libx264", raw)
    for source, fps, length in ((frames / "f%03d.png", Fraction(10), 1.0), (raw, None, 0.8)):
        result = upscale_video(source, tmp_path / f"{source.parent.name}{source.suffix}.mkv", options=options,
                               video=VideoOptions(end=5.0, fps=fps))
        found = media.ffprobe(result.output, "-show_entries", "format=duration")
        assert abs(float(found["format"]["duration"]) - length) < 0.002, source


def test_hevc_in_mp4_and_quicktime_is_tagged_hvc1_as_apples_players_need(clips, tmp_path):
    """FFmpeg tagged it "hev1", which QuickTime, Safari and iOS refuse to play. "hvc1" says the parameter sets are in
    the stream's header only: no packet carries them (x265 writes them into FFmpeg's global header there)."""
    from vsr import api

    for suffix, tag in ((".mp4", "hvc1"), (".mov", "hvc1"), (".mkv", "[0][0][0][0]")):
        output = media.write_upscaled(clips["mp4"], tmp_path / f"out{suffix}", codec="libx265")
        assert media.ffprobe_streams_of(output, "v:0")[0]["codec_tag_string"] == tag
    with av.open(str(tmp_path / "out.mp4")) as container:
        for packet in container.demux(video=0):
            data, nal_types = bytes(packet), []
            while data:  # (length-prefixed NAL units)
                size = int.from_bytes(data[:4], "big")
                nal_types.append((data[4] >> 1) & 0x3F)
                data = data[4 + size:]
            assert not {32, 33, 34} & set(nal_types)  # VPS, SPS, PPS
    # Joined from segments too: the join copies the segments' tag.
    source = media.make_vfr_clip(tmp_path / "vfr.mkv", frames=30, gop=8)
    result = api.upscale_video_in_segments(source, tmp_path / "joined.mp4", options=api.UpscaleOptions(model="bicubic"),
                                           video=api.VideoOptions(codec="libx265", segment_seconds=0.5))
    assert result.times.extra["segments"] > 1
    assert media.ffprobe_streams_of(result.output, "v:0")[0]["codec_tag_string"] == "hvc1"
