"""Decoders on real tiny clips, judged by ffprobe and by each other."""

from __future__ import annotations

import importlib.util
import logging
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from tests.pipelines.clips import BAD_INPUTS, CHART_COLORS, corrupt_middle, make_clip, truncate
from tests.pipelines.media_fixtures import ffmpeg, ffprobe, ffprobe_frame_pts
from vsr.errors import InputError, OptionError
from vsr.pipelines.decode import BACKENDS, DecordDecoder, PyAVDecoder, _pyav, open_decoder
from vsr.pipelines.decode._pyav import from_keyframe

HAVE_DECORD = importlib.util.find_spec("decord") is not None  # optional: the cpu-decode extra
needs_decord = pytest.mark.skipif(not HAVE_DECORD, reason="decord is not installed")
PYAV_AND_DECORD = ["pyav", pytest.param("decord", marks=needs_decord)]

SMALL_GOP = {"x264-params": "keyint=6:min-keyint=6"}  # several keyframes, so that seeking has somewhere to land


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decode")
    return {
        "cfr.mp4": make_clip(folder / "cfr.mp4", frames=24, options=SMALL_GOP),
        "vfr.mp4": make_clip(folder / "vfr.mp4", frames=16, vfr=True),
        "vfr.mkv": make_clip(folder / "vfr.mkv", frames=16, vfr=True, audio="opus"),
        "10bit.mkv": make_clip(folder / "10bit.mkv", frames=4, pix_fmt="yuv420p10le"),
        # qp=0 is lossless for x264: the YUV planes are exactly what the chart converted to.
        "chart709.mp4": make_clip(
            folder / "chart709.mp4", frames=2, color_chart=True, color=("bt709", "tv"), options={"qp": "0"}
        ),
        "rotated.mp4": make_clip(folder / "rotated.mp4", frames=4, rotation=90),
        "long.mp4": make_clip(folder / "long.mp4", frames=100, size=(160, 96), options=SMALL_GOP),
        # Broadcast recordings: B-frames, and (open GOPs) frames shown before their keyframe that refer to the
        # group before it. MPEG-TS seeks by decoding time, to any packet, keyframe or not.
        "open_gop.ts": make_clip(folder / "open_gop.ts", frames=24,
                                 options={"x264-params": "keyint=6:min-keyint=6:bframes=3:open-gop=1"}),
        "mpeg2.ts": make_clip(folder / "mpeg2.ts", frames=24, codec="mpeg2video", options={"g": "6", "bf": "2"}),
    }


def decode_all(path, backend, **options):
    with open_decoder(path, backend=backend, **options) as decoder:
        batches = list(decoder.batches(5))
        kind = type(decoder)
    frames = torch.cat([batch.frames for batch in batches]) if batches else None
    return frames, [pts for batch in batches for pts in batch.pts], kind


@pytest.mark.parametrize("backend", PYAV_AND_DECORD)
@pytest.mark.parametrize("name", ["cfr.mp4", "vfr.mp4", "vfr.mkv"])
def test_every_frame_at_the_time_ffprobe_reports(clips, name, backend):
    frames, pts, kind = decode_all(clips[name], backend)
    assert kind is {"pyav": PyAVDecoder, "decord": DecordDecoder}[backend]
    assert pts == ffprobe_frame_pts(clips[name])
    assert frames.shape == (len(pts), 3, 48, 64) and frames.dtype == torch.uint8


@needs_decord
@pytest.mark.parametrize("name", ["cfr.mp4", "vfr.mkv"])
def test_decord_gives_the_same_frames_as_pyav(clips, name):
    reference, reference_pts, _ = decode_all(clips[name], "pyav")
    frames, pts, kind = decode_all(clips[name], "decord")
    assert kind is DecordDecoder
    assert pts == reference_pts
    # Not bit-identical: decord converts to RGB with swscale's fast path (up to 3 levels off, chroma not
    # interpolated), PyAV with the exact one. Each frame is still much closer to PyAV's frame at its own pts than
    # to the frames beside it.
    distance = (frames.float()[:, None] - reference.float()[None]).abs().mean(dim=(2, 3, 4))
    assert (distance.diagonal() < 4).all()
    assert torch.equal(distance.argmin(dim=1), torch.arange(len(pts)))


@needs_decord
def test_decord_is_not_trusted_with_open_gops_nor_mpeg_ts(clips, tmp_path, caplog):
    """Its frame count was right and its frames were not: a GOP late in MPEG-TS, from the previous GOP after seeking
    into an open-GOP stream. Those files go to PyAV, with one warning each; a closed GOP with B-frames stays
    decord's."""
    open_gop, closed = tmp_path / "open_gop.mkv", tmp_path / "closed.mkv"
    for path, gop in ((open_gop, ["-x264opts", "open-gop=1"]), (closed, [])):
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "36", "-c:v", "libx264", "-bf", "3",
               "-g", "12", *gop, path)
    for path, reason in ((open_gop, "the video has open GOPs"), (clips["mpeg2.ts"], "decord finds the wrong frames in "
                                                                                    "MPEG-TS")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            frames, pts, kind = decode_all(path, "decord", start=0.44)
        assert kind is PyAVDecoder and f"decoding with PyAV instead of decord: {reason}" in caplog.text
        reference, reference_pts, _ = decode_all(path, "pyav", start=0.44)
        assert pts == reference_pts and torch.equal(frames, reference)
    frames, pts, kind = decode_all(closed, "decord", start=0.44)
    assert kind is DecordDecoder


@needs_decord
def test_decord_leaves_an_untagged_hd_video_to_pyav(tmp_path, caplog):
    """decord's swscale takes BT.601 for a stream that declares no matrix, where players (and vsr) take BT.709."""
    path = tmp_path / "untagged_hd.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=red:size=1280x720:rate=25", "-frames:v", "1", "-pix_fmt", "yuv420p", path)
    with caplog.at_level(logging.WARNING):
        _, _, kind = decode_all(path, "decord")
    assert kind is PyAVDecoder and "the video declares no color matrix" in caplog.text


@pytest.mark.parametrize("name, codec", [("program.mpg", ["mpeg2video"]), ("open.avi", ["mpeg4"])])
def test_a_window_of_a_file_that_seeks_wrong_is_the_same_frames_at_the_same_times(tmp_path, name, codec):
    """After a seek, a program stream's packets came with times half a frame or more off (FFmpeg's parser fills in
    those it lacks), and an open-GOP AVI's frames two frames early (the B-frames after its keyframe, not decoded from
    there, kept their times): previews and segments had wrong frames at times no frame has (helpers 61 and 64)."""
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "color=black:s=64x48:r=25:d=1.2,format=gray,geq=lum='N*8'", "-pix_fmt", "yuv420p",
           "-c:v", *codec, "-bf", "2", "-g", "10", path)
    frames, pts, _ = decode_all(path, "pyav")
    assert len(pts) == 30
    with av.open(str(path)) as container:
        time_base = container.streams.video[0].time_base
    origin = pts[0]  # (--start counts from the first frame)
    for start in (0.4, 0.52, 0.96):
        window, window_pts, _ = decode_all(path, "pyav", start=start, max_frames=3)
        first = next(index for index, value in enumerate(pts) if (value - origin) * time_base >= Fraction(str(start)))
        assert window_pts == pts[first:first + 3] and torch.equal(window, frames[first:first + 3])


def test_a_window_of_a_program_stream_is_decoded_from_the_keyframe_before_it(tmp_path, caplog):
    """Not seeking (above), a window of a program stream was decoded from the start of the file: every frame before
    it (the last segment of a 2-hour DVD decoded the 2 hours). Its packets are read from the start, with the times
    they have there, and decoded from the keyframe before the window on: damage in the first group of pictures (its
    sequence header lost) is not decoded, nor said, for a window after it, whose frames are those of the whole run."""
    path = tmp_path / "damaged.mpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=4", "-pix_fmt", "yuv420p", "-c:v", "mpeg2video", "-bf", "2",
           "-g", "10", path)
    data = bytearray(path.read_bytes())
    header = data.find(b"\x00\x00\x01\xb3") + 4  # the first sequence header's fields, and the keyframe's start
    data[header:header + 1000] = b"\xff" * 1000
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        frames, pts, _ = decode_all(path, "pyav")
    assert "decoding error" in caplog.text  # (the damage is there, and said where it is decoded)
    with av.open(str(path)) as container:  # (--start counts from the stream's start: its first frames are lost)
        time_base, start_time = container.streams.video[0].time_base, container.streams.video[0].start_time
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        window, window_pts, _ = decode_all(path, "pyav", start=3, max_frames=10)
    assert caplog.text == ""
    first = next(index for index, value in enumerate(pts) if (value - start_time) * time_base >= 3)
    assert window_pts == pts[first:first + 10] and torch.equal(window, frames[first:first + 10])


def test_the_packets_of_a_window_start_at_the_last_keyframe_that_reaches_it(tmp_path, monkeypatch):
    """`from_keyframe` gives a program stream's packets from the last keyframe at or before a time on; all of them
    where no keyframe is that early, and from the packets it holds back on where it would hold too many (keyframes
    not flagged): in every case the frames of that time and after can be decoded from what it gives."""
    path = tmp_path / "program.mpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=2", "-pix_fmt", "yuv420p", "-c:v", "mpeg2video", "-bf", "2",
           "-g", "10", "-sc_threshold", "1000000000", path)

    def packets():
        with av.open(str(path)) as container:
            return [packet for packet in container.demux(container.streams.video[0]) if packet.size]

    every = packets()
    keyframes = [packet.pts for packet in every if packet.is_keyframe]
    assert len(keyframes) >= 4
    for latest in (keyframes[2], keyframes[3] - 1):  # (a keyframe's own time, and a tick before the next)
        given = [packet.pts for packet in from_keyframe(packets(), latest)]
        assert given == [packet.pts for packet in every[[p.pts for p in every].index(keyframes[2]):]]
    assert [packet.pts for packet in from_keyframe(packets(), keyframes[0] - 1)] == [p.pts for p in every]
    monkeypatch.setattr(_pyav, "MOST_HELD_PACKETS", 3)  # (a group of pictures here has 10: held from the first)
    assert [packet.pts for packet in from_keyframe(packets(), keyframes[2])] == [p.pts for p in every]


def test_auto_decodes_with_pyav_on_the_cpu_for_exact_colors(clips):
    for name in ("cfr.mp4", "10bit.mkv"):
        with open_decoder(clips[name]) as decoder:
            assert isinstance(decoder, PyAVDecoder)


@pytest.mark.parametrize("backend", PYAV_AND_DECORD)
def test_10_bit_video_decodes_to_float_keeping_its_extra_bits(clips, backend, caplog):
    with caplog.at_level(logging.WARNING):
        frames, pts, kind = decode_all(clips["10bit.mkv"], backend)
    assert kind is PyAVDecoder
    if backend == "decord":
        assert "10-bit" in caplog.text  # asked for decord, told why it got PyAV
    assert frames.dtype == torch.float32 and len(pts) == 4
    assert 0 <= frames.min() and frames.max() <= 1
    assert frames.unique().numel() > 256  # more levels than 8 bits have
    off_8_bit_grid = ((frames * 255 - (frames * 255).round()).abs() > 0.1).float().mean()
    assert off_8_bit_grid > 0.25


def bt709_limited_to_rgb(y, u, v):
    """The BT.709 limited-range equations, in floating point."""
    y, u, v = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    r = y + 1.5748 * v
    g = y - 0.1873 * u - 0.4681 * v
    b = y + 1.8556 * u
    return np.clip(np.stack([r, g, b], -1), 0, 255)


# decord converts with swscale's fast path, a few levels less exact.
@pytest.mark.parametrize(("backend", "tolerance"), [("pyav", 1), pytest.param("decord", 3, marks=needs_decord)])
def test_bt709_chart_decodes_to_the_right_colors(clips, backend, tolerance):
    path = clips["chart709.mp4"]
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.colorspace == 1 and frame.color_range == 1  # tagged BT.709, limited range
        planes = frame.to_ndarray().astype(np.float64)  # yuv420p: Y (48 rows), then U and V (24×32 each)
        y, u, v = planes[:48], planes[48:60].reshape(24, 32), planes[60:].reshape(24, 32)
    frames, _, _ = decode_all(path, backend)
    decoded = frames[0].permute(1, 2, 0).numpy().astype(np.float64)
    bar = 64 // len(CHART_COLORS)
    for i, color in enumerate(CHART_COLORS):
        x = i * bar + bar // 2  # the middle of a flat bar, where chroma subsampling changes nothing
        expected = bt709_limited_to_rgb(y[24, x], u[12, x // 2], v[12, x // 2]).round()
        assert np.abs(decoded[24, x] - expected).max() <= tolerance, (color, decoded[24, x], expected)
        assert np.abs(decoded[24, x] - color).max() <= tolerance + 1  # and the round trip from the chart itself
    # The test can tell matrices apart: read as BT.601, saturated red is off by far more than a level.
    as_601 = frame.reformat(format="rgb24", src_colorspace="itu601", src_color_range="MPEG").to_ndarray()
    assert np.abs(as_601[24, bar // 2].astype(int) - CHART_COLORS[0]).max() > 10


@pytest.mark.parametrize("backend", PYAV_AND_DECORD)
def test_start_end_and_max_frames_select_frames_by_time(clips, backend):
    path = clips["cfr.mp4"]  # 25 fps: frame i is at i / 25 s
    everything, all_pts, _ = decode_all(path, backend)

    frames, pts, kind = decode_all(path, backend, start=0.4, end=0.72)
    assert kind.backend == backend
    assert pts == all_pts[10:18]
    assert torch.equal(frames, everything[10:18])  # the pixels after the seek are the frames at those times

    frames, pts, _ = decode_all(path, backend, max_frames=3)
    assert pts == all_pts[:3] and torch.equal(frames, everything[:3])

    frames, pts, _ = decode_all(path, backend, start=0.5, max_frames=7)
    assert pts == all_pts[13:20] and torch.equal(frames, everything[13:20])

    frames, pts, _ = decode_all(path, backend, start=0.9)
    assert pts == all_pts[23:]


@pytest.mark.parametrize("name", ["open_gop.ts", "mpeg2.ts"])
@pytest.mark.parametrize("start", [0.4, 0.48, 0.72])  # within a group of pictures; at keyframes 12 and 18
def test_a_window_of_an_mpeg_ts_has_every_frame_of_a_decode_from_the_start(clips, name, start, caplog):
    everything, all_pts, _ = decode_all(clips[name], "pyav")
    assert all_pts == ffprobe_frame_pts(clips[name])
    first = round(start * 25)
    frames, pts, _ = decode_all(clips[name], "pyav", start=start, end=start + 0.4)
    assert pts == all_pts[first:first + 10]
    assert torch.equal(frames, everything[first:first + 10])
    assert "missing" not in caplog.text and "damaged" not in caplog.text


def test_a_raw_h264_stream_without_timestamps_decodes_a_window_from_its_start(tmp_path):
    # It cannot seek, and a failed seek leaves it where demuxing gives nothing: it is opened again instead.
    raw = make_clip(tmp_path / "raw.h264", frames=24, options=SMALL_GOP)
    everything, all_pts, _ = decode_all(raw, "pyav")
    assert len(all_pts) == 24
    frames, pts, _ = decode_all(raw, "pyav", start=0.4, end=0.72)
    assert pts == all_pts[10:18]
    assert torch.equal(frames, everything[10:18])


def test_a_raw_stream_keeps_the_frame_rate_it_declares_not_the_demuxers_25(tmp_path):
    """A raw H.264 stream made at 12 fps says so in its timing info (ffprobe's r_frame_rate); FFmpeg's raw demuxer
    would time its frames at 25 fps. The upscaled video goes into .mkv, which keeps frame times."""
    from tests.pipelines import media_fixtures as media
    from vsr import api
    from vsr.pipelines.probe import probe

    raw = tmp_path / "camera.h264"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=12", "-frames:v", "6", "-c:v", "libx264", raw)
    assert media.ffprobe_streams_of(raw, "v:0")[0]["r_frame_rate"] == "12/1"
    assert probe(raw).video.average_rate == 12  # what vsr sees (and `vsr probe` says)
    result = api.upscale_video(raw, options=api.UpscaleOptions(model="bicubic", outscale=2))
    assert result.output == tmp_path / "camera.x2.mkv"
    assert media.video_times(result.output) == [Fraction(round(1000 * i / 12), 1000) for i in range(6)]


def test_a_dvd_program_stream_is_upscaled_into_mkv_with_its_times_and_sound(tmp_path):
    """MPEG-PS keeps a time only where a packet starts: H.264's large frames there leave ffmpeg guessing (one frame
    was lost in its decoding), so a .vob's default output is .mkv."""
    from tests.pipelines import media_fixtures as media
    from vsr import api

    source = tmp_path / "VTS_01_1.vob"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=duration=0.5",
                 "-frames:v", "12", "-c:v", "mpeg2video", "-c:a", "ac3", "-shortest", "-f", "vob", source)
    result = api.upscale_video(source, options=api.UpscaleOptions(model="bicubic", outscale=2),
                               video=api.VideoOptions(encoder_options={"qp": "0"}))
    assert result.output == tmp_path / "VTS_01_1.x2.mkv"
    assert media.playback_errors(result.output) == ""
    # The source's frame times as ffmpeg decodes them (its last frame has none: no packet starts with it).
    frames = media.ffprobe(source, "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp")["frames"]
    source_times = [Fraction(frame["best_effort_timestamp"], 90000) for frame in frames
                    if "best_effort_timestamp" in frame]
    times = media.video_times(result.output)
    assert len(times) == 12 and len(source_times) == 11
    # Less the file's start, the audio's (0.534 s: the muxer's offset), which becomes 0 as in ffmpeg's output.
    start = media.packet_spans(source, "a:0")[0][0]
    assert start < source_times[0] and media.packet_spans(result.output, "a:0")[0][0] == 0
    assert times[:11] == [Fraction(round((time - start) * 1000), 1000) for time in source_times]
    def audio_payloads(path):  # each AC-3 packet's checksum (the times are in each container's own unit)
        return [line.split(",")[-1] for line in media.framemd5(path, "0:a").splitlines() if not line.startswith("#")]

    assert audio_payloads(result.output) == audio_payloads(source) != []


@needs_decord
def test_batches_and_single_frames(clips):
    with open_decoder(clips["vfr.mp4"], backend="pyav") as decoder:
        assert decoder.device == torch.device("cpu")
        assert decoder.info.width == 64 and decoder.info.bit_depth == 8
        sizes = [len(batch) for batch in decoder.batches(6)]
        with pytest.raises(RuntimeError):
            decoder.batches(6)
    assert sizes == [6, 6, 4]
    with open_decoder(clips["vfr.mp4"], backend="decord") as decoder:
        single = list(decoder)
    assert [pts for _, pts in single] == ffprobe_frame_pts(clips["vfr.mp4"])
    assert single[0][0].shape == (3, 48, 64)


@pytest.mark.parametrize("backend", PYAV_AND_DECORD)
def test_rotation_is_reported_not_applied(clips, backend):
    with open_decoder(clips["rotated.mp4"], backend=backend) as decoder:
        assert isinstance(decoder, PyAVDecoder)  # decord would rotate the frames
        assert decoder.info.rotation == 90
        batch = next(decoder.batches(4))
    assert batch.frames.shape == (4, 3, 48, 64)


@pytest.mark.parametrize("backend", PYAV_AND_DECORD)
def test_corrupt_packets_are_concealed_and_timing_kept(clips, tmp_path, backend, caplog):
    source = clips["long.mp4"]
    damaged = corrupt_middle(source, tmp_path / "damaged.mp4", length=300)
    source_pts = ffprobe_frame_pts(source)
    with caplog.at_level(logging.WARNING):
        frames, pts, _ = decode_all(damaged, backend)
    assert set(pts) <= set(source_pts) and pts == sorted(pts)  # every frame at its own time
    assert len(source_pts) - 5 <= len(pts) < len(source_pts)
    missing = sorted(set(source_pts) - set(pts))
    assert any(f"pts {missing[0]}" in record.getMessage() for record in caplog.records)  # the lost frame is named
    # Away from the damage, each frame is the source's frame at the same time (decord's colors differ slightly,
    # and PyAV takes over from decord after the damage).
    clean, clean_pts, _ = decode_all(source, "pyav")
    for i in [*range(10), *range(len(pts) - 5, len(pts))]:
        assert (frames[i].float() - clean[clean_pts.index(pts[i])].float()).abs().mean() < 4


@pytest.mark.parametrize("backend", PYAV_AND_DECORD)
def test_truncated_file_decodes_what_it_can_and_warns(clips, tmp_path, backend, caplog):
    source = make_clip(tmp_path / "whole.mkv", frames=50, size=(160, 96))
    cut = truncate(source, tmp_path / "cut.mkv", keep=0.5)
    with caplog.at_level(logging.WARNING):
        _, pts, _ = decode_all(cut, backend)
    assert 10 < len(pts) < 50
    assert set(pts) <= set(ffprobe_frame_pts(source)) and pts == sorted(pts)
    assert "cut short" in caplog.text


def test_a_short_mp4_cut_after_its_index_says_how_many_frames_it_lost(tmp_path, caplog):
    """+faststart puts the index first: a download cut short still lists every frame, and the frames lost from a
    clip shorter than a second fell within the time check's allowance."""
    source = tmp_path / "whole.mp4"
    ffmpeg("-i", make_clip(tmp_path / "clip.mp4", frames=15, size=(160, 96)), "-c", "copy", "-movflags", "+faststart",
           source)
    cut = truncate(source, tmp_path / "cut.mp4", keep=0.8)
    with caplog.at_level(logging.WARNING):
        _, pts, _ = decode_all(cut, "pyav")
    assert 2 < len(pts) < 13
    assert f"cut.mp4: cut short: it holds {cut.stat().st_size} bytes where its MP4/QuickTime headers declare at " \
        f"least {source.stat().st_size} bytes" in caplog.text
    assert f"; {len(pts)} of the 15 frames its index lists decoded, up to " in caplog.text
    caplog.clear()
    decode_all(source, "pyav")
    assert "cut short" not in caplog.text


def test_a_matroska_file_cut_short_by_less_than_a_second_says_so(tmp_path, clips, caplog):
    """Matroska's DURATION tag is the video stream's own end, which every frame reaches. The time check allowed a
    second, as for a container's span (another stream's, or a guess): a download that lost its last 0.3 s went
    unsaid. Whole files, variable rate too, say nothing."""
    source = tmp_path / "whole.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2", "-c:v", "libx264", "-bf", "0", "-g", "10",
           source)
    cut = truncate(source, tmp_path / "cut.mkv", keep=0.9)
    with caplog.at_level(logging.WARNING):
        _, pts, _ = decode_all(cut, "pyav")
    assert 25 < len(pts) < 49  # (less than a second lost)
    assert "cut.mkv: cut short: " in caplog.text and " of the 2.000 s it declares" in caplog.text
    caplog.clear()
    for whole in (source, clips["vfr.mkv"], clips["10bit.mkv"]):
        decode_all(whole, "pyav")
    assert "cut short" not in caplog.text


def test_frames_a_threaded_decoder_lost_beside_damage_are_decoded_again(tmp_path):
    """FFmpeg's frame threads drop the frames decoded beside a damaged one: a download cut short gave 2 frames fewer
    than ffmpeg's own decoding, said to be undecodable (helper-55)."""
    source = tmp_path / "whole.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=2", "-c:v", "libx264", "-g", "10", "-movflags",
           "+faststart", source)
    cut = truncate(source, tmp_path / "cut.mp4", keep=0.5)
    frames, pts, _ = decode_all(cut, "pyav")
    assert pts == ffprobe_frame_pts(cut)  # (ffprobe decodes what it can, one frame at a time)
    whole, whole_pts, _ = decode_all(source, "pyav")
    assert torch.equal(frames[:-1], whole[: len(pts) - 1])  # (the last may be the damaged one, concealed)


def test_an_mp4_trimmed_by_an_edit_list_is_not_said_to_be_damaged(tmp_path, caplog):
    """`ffmpeg -ss 0.3 -c copy` keeps the GOP before the cut, which an edit list leaves out: its index lists those
    frames too (42 shown of 50 listed), and vsr called the file damaged or cut short."""
    source = tmp_path / "trimmed.mp4"
    ffmpeg("-ss", "0.3", "-i", make_clip(tmp_path / "clip.mkv", frames=50, options={"g": "12"}), "-c", "copy", source)
    with caplog.at_level(logging.WARNING):
        _, pts, _ = decode_all(source, "pyav")
    assert len(pts) == len(ffprobe_frame_pts(source)) < 50
    assert "cut short" not in caplog.text


@pytest.mark.parametrize("backend", [*PYAV_AND_DECORD, "auto"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_input_error(tmp_path, case, backend):
    path = BAD_INPUTS[case](tmp_path)
    with pytest.raises(InputError) as error:
        open_decoder(path, backend=backend)
    message = str(error.value)
    assert str(path) in message and "\n" not in message


def test_bad_options_raise_option_error(clips):
    with pytest.raises(OptionError, match="--decoder ffmpeg: choose one of auto, pyav, decord, dali"):
        open_decoder(clips["cfr.mp4"], backend="ffmpeg")
    assert "dali" in BACKENDS
    bad = [dict(start=-1), dict(start=1, end=0.5), dict(max_frames=0), dict(device="gpu!")]
    if not torch.cuda.is_available():
        bad.append(dict(device="cuda"))
    for options in bad:
        with pytest.raises(OptionError):
            open_decoder(clips["cfr.mp4"], backend="pyav", **options)
    with open_decoder(clips["cfr.mp4"], backend="pyav") as decoder, pytest.raises(OptionError):
        decoder.batches(0)


@pytest.mark.parametrize("name, codec_args", [
    ("h264.avi", ("-c:v", "libx264", "-x264-params", "b-adapt=0:bframes=2")),
    ("xvid.avi", ("-c:v", "libxvid", "-bf", "2")),  # DivX/XviD: a B-frame packed with the frame before it
    ("h264.asf", ("-c:v", "libx264", "-x264-params", "b-adapt=0:bframes=2")),
], ids=["avi", "xvid", "asf"])
def test_frames_behind_b_frames_in_avi_and_asf_come_in_the_order_they_were_made(tmp_path, name, codec_args, caplog):
    """AVI and ASF keep one time per packet, in decoding order: ordered by those times, frames behind B-frames came
    out shuffled. The decoder's order is right (players and ffmpeg show it); the times are the packets', sorted."""
    source = tmp_path / name
    # Each frame brighter than the one before (a stripe moves too, so that XviD makes B-frames).
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25,geq=lum='if(between(X,N*3,N*3+5),235,lum(X,Y)/2+N*6)'"
           ":cb='cb(X,Y)':cr='cr(X,Y)'", "-frames:v", "16", *codec_args, source)
    frames, pts, _ = decode_all(source, "pyav")
    assert len(frames) >= 14  # (XviD's last packed pair gives one frame)
    brightness = frames.float().mean(dim=(1, 2, 3)).tolist()
    assert brightness == sorted(brightness) and len(set(brightness)) == len(brightness)
    assert pts == sorted(set(pts)) and len(pts) == len(ffprobe_shown_times(source))
    assert "missing" not in caplog.text and "dropped" not in caplog.text


def ffprobe_shown_times(path) -> list[int | None]:
    """Each decoded frame's time as ffmpeg and ffplay show it (its best-effort timestamp), in output order."""
    frames = ffprobe(path, "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp")["frames"]
    return [frame.get("best_effort_timestamp") for frame in frames]


@pytest.mark.parametrize("name, codec_args", [
    ("h264.avi", ("-c:v", "libx264", "-bf", "3", "-g", "10")),  # (B-pyramid: frames come out 2 packets late)
    ("mpeg4.avi", ("-c:v", "mpeg4", "-bf", "2", "-g", "10", "-vtag", "XVID")),  # (1 packet late)
    # Packed B-frames, after 2 empty entries (the encoder's delay): the first packets at 0, then 3; a delay of 3
    # ticks timed the frames 3, 6, 7, ... where ffmpeg shows 3, 4, 5, ...
    ("xvid.avi", ("-c:v", "libxvid", "-bf", "2", "-g", "10")),
    ("h264.asf", ("-c:v", "libx264", "-bf", "3", "-g", "10")),
], ids=["h264-avi", "mpeg4-avi", "xvid-avi", "h264-asf"])
def test_frames_behind_b_frames_in_avi_and_asf_are_timed_and_windowed_as_ffmpeg_shows_them(tmp_path, name,
                                                                                          codec_args):
    """A decoder gives out each frame behind B-frames its reordering delay late, and ffmpeg and ffplay show it at
    the decoding time of the packet it comes out with: the first at 0.04 s (MPEG-4) or 0.08 s (H.264 with its
    B-pyramid), not at the stream's start (0). A --start counted from that start began a frame early, and FFmpeg 8
    guesses every pts a packet late: H.264's frames came a frame early against the audio."""
    source = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25,geq=lum='if(between(X,N*3,N*3+5),235,lum(X,Y)/2+N*6)'"
           ":cb='cb(X,Y)':cr='cr(X,Y)'", "-frames:v", "30", *codec_args, source)
    shown = ffprobe_shown_times(source)  # (None for the last frames, flushed out after the last packet)
    frames, pts, _ = decode_all(source, "pyav")
    assert len(pts) == len(shown) >= 28 and shown[0] > 0  # (XviD: 2 of the 30 frames packed with others)
    timed = [index for index, time in enumerate(shown) if time is not None]
    assert [pts[index] for index in timed] == [shown[index] for index in timed]
    with av.open(str(source)) as container:
        time_base = container.streams.video[0].time_base
    for start in (0.3, 0.52):
        window, window_pts, _ = decode_all(source, "pyav", start=start, max_frames=3)
        first = next(index for index in timed if (shown[index] - shown[0]) * time_base >= Fraction(str(start)))
        assert window_pts == pts[first:first + 3] and torch.equal(window, frames[first:first + 3])


# Groups of 10 pictures with B-frames, open (B-frames after a keyframe made from the group before: FFmpeg's MPEG-4
# and x264 with open-gop) and closed; packed B-frames (libxvid: placeholders marked as keyframes).
GROUPS = ("-g", "10", "-sc_threshold", "1000000000")
X264_GROUPS = ("-c:v", "libx264", "-bf", "3", "-g", "10", "-x264-params")
B_FRAMES_IN_DECODING_ORDER = {
    "open.avi": ("-c:v", "mpeg4", "-bf", "2", "-vtag", "XVID", *GROUPS),
    "closed.avi": ("-c:v", "mpeg4", "-bf", "2", "-vtag", "XVID", "-flags", "+cgop", *GROUPS),
    "packed.avi": ("-c:v", "libxvid", "-bf", "2", *GROUPS),
    "h264_open.avi": (*X264_GROUPS, "open-gop=1:scenecut=0"),
    "h264_closed.avi": (*X264_GROUPS, "scenecut=0"),
    "h264_open.asf": (*X264_GROUPS, "open-gop=1:scenecut=0"),
    "mpeg4_open.asf": ("-c:v", "mpeg4", "-bf", "2", *GROUPS),
}


def b_frames_clip(path, codec_args, seconds=1.6):
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=25:duration={seconds}", *codec_args, path)
    return path


@pytest.mark.parametrize("name", B_FRAMES_IN_DECODING_ORDER)
def test_windows_of_avi_and_asf_with_b_frames_are_the_frames_and_times_of_the_whole(tmp_path, name, caplog):
    """Decoded from the keyframe before the window's, whatever its group of pictures (open or closed, B-frames
    packed or not), a window is the frames of a decoding from the start, at the same times. From the window's
    keyframe, an open group's first B-frames were lost and their times went to the frames after them."""
    path = b_frames_clip(tmp_path / name, B_FRAMES_IN_DECODING_ORDER[name])
    frames, pts, _ = decode_all(path, "pyav")
    assert len(pts) >= 38
    with av.open(str(path)) as container:
        time_base = container.streams.video[0].time_base
    for first in range(11, 29):  # (every frame of two groups: the frames of the first reach the window)
        start = float((pts[first] - pts[0]) * time_base)
        window, window_pts, _ = decode_all(path, "pyav", start=start, max_frames=3)
        assert window_pts == pts[first:first + 3] and torch.equal(window, frames[first:first + 3]), start
    assert "missing" not in caplog.text


# Where a keyframe's headers start: an MPEG-4 video object layer, an H.264 IDR slice.
MPEG4_LAYER, H264_IDR_SLICE = b"\x00\x00\x01\x20", b"\x00\x00\x01\x65"


@pytest.mark.parametrize("name, headers", [("open.avi", MPEG4_LAYER), ("packed.avi", MPEG4_LAYER),
                                           ("h264_closed.avi", H264_IDR_SLICE)], ids=["mpeg4", "packed", "h264"])
def test_a_window_of_an_avi_with_b_frames_is_not_decoded_from_the_start(tmp_path, name, headers, caplog):
    """A window of an AVI or ASF with B-frames was decoded from the start of the file (for the last minute of a
    film, the whole film). Damage in the second group of pictures, not decoded for a window two groups after it, is
    not said, and the window's frames are those of the undamaged file."""
    path = b_frames_clip(tmp_path / name, B_FRAMES_IN_DECODING_ORDER[name])
    frames, pts, _ = decode_all(path, "pyav")
    with av.open(str(path)) as container:
        second_keyframe = [packet.pos for packet in container.demux(video=0) if packet.is_keyframe][1]
    data = bytearray(path.read_bytes())
    damage = data.find(headers, second_keyframe) + 4
    data[damage:damage + 6] = b"\xff" * 6
    damaged = path.with_name("damaged_" + name)
    damaged.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        decode_all(damaged, "pyav")
    assert "decoding error near" in caplog.text  # (the damage is there, and said where it is decoded)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        window, window_pts, _ = decode_all(damaged, "pyav", start=1.2, max_frames=5)
    assert caplog.text == ""
    with av.open(str(path)) as container:
        time_base = container.streams.video[0].time_base
    first = next(index for index, value in enumerate(pts) if (value - pts[0]) * time_base >= Fraction("1.2"))
    assert window_pts == pts[first:first + 5] and torch.equal(window, frames[first:first + 5])


def test_frames_timed_before_0_that_matroska_gives_no_time_are_dropped_as_ffmpeg_drops_them(tmp_path, caplog):
    """Matroska's demuxer gives no time to a block before 0 (here B-frames' delay kept). Given the next times, the
    two such frames took the times of the first frames after them, and the muxer refused the run at its end
    (helper-91)."""
    path = tmp_path / "negative.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.4", "-c:v", "libx264", "-bf", "2",
           "-avoid_negative_ts", "disabled", "-output_ts_offset", "-0.08", path)
    timed = ffprobe_frame_pts(path)
    assert len(timed) == 8 and timed[0] == 0  # of 10 frames
    with caplog.at_level(logging.WARNING):
        _, pts, _ = decode_all(path, "pyav")
    assert pts == timed
    assert "2 frame(s) before the first with a time have none" in caplog.text
    caplog.clear()
    _, pts, _ = decode_all(path, "pyav", start=0.2)  # a window after them: nothing to say
    assert 0 < len(pts) < len(timed) and pts == timed[-len(pts):]
    assert "before the first with a time" not in caplog.text


def test_stream_without_timestamps_gets_regular_ones(clips, tmp_path):
    raw = tmp_path / "raw.h264"  # an elementary stream: no container, no timestamps
    with av.open(str(clips["cfr.mp4"])) as source, av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    frames, pts, kind = decode_all(raw, "auto")
    assert kind is PyAVDecoder and len(pts) == 24
    steps = {b - a for a, b in zip(pts, pts[1:])}
    assert len(steps) == 1 and steps.pop() > 0


def test_frames_that_share_a_time_are_dropped_and_said_once(tmp_path, caplog):
    """Each was "too late to be placed", a line per frame, then "damaged or cut short?" for the count (helper-55)."""
    path = tmp_path / "pairs.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 10, np.uint8), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                packet.pts = packet.dts = packet.pts // 2 * 2  # (a muxer's mistake: frames 2k and 2k+1 at one time)
                container.mux(packet)
        for packet in stream.encode(None):
            packet.pts = packet.dts = packet.pts // 2 * 2
            container.mux(packet)
    with caplog.at_level(logging.WARNING):
        with open_decoder(path, backend="pyav") as decoder:
            pts = [p for batch in decoder.batches(8) for p in batch.pts]
    assert len(pts) == 10 and pts == sorted(set(pts))
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning.startswith(f"{path}: 10 frame(s) share their time with the frame before them and are dropped")
    caplog.clear()  # A window stops decoding before the end: said all the same (helper-59).
    with caplog.at_level(logging.WARNING):
        with open_decoder(path, backend="pyav", end=0.3) as decoder:
            assert [p for batch in decoder.batches(8) for p in batch.pts] == [0, 80, 160, 240]
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning.startswith(f"{path}: 4 frame(s) share their time with the frame before them and are dropped")
    if HAVE_DECORD:  # decord gave every frame, which the muxer refused after the work
        caplog.clear()
        with caplog.at_level(logging.INFO):
            frames, pts, kind = decode_all(path, "decord")
        assert kind is PyAVDecoder and len(pts) == 10
        assert "decoding with PyAV instead of decord: some frames share their time" in caplog.text


def test_a_decoder_is_freed_without_the_garbage_collector(clips):
    """A decoder in a reference cycle waits for the collector, which may first run in a process forked from this one
    (a DataLoader's worker): freeing its swscale context there waited for threads the fork does not have, for ever."""
    import gc
    import weakref

    gc.disable()
    try:
        with open_decoder(clips["cfr.mp4"], backend="pyav") as decoder:
            assert sum(len(batch) for batch in decoder.batches(4)) > 0
        freed = weakref.ref(decoder)
        del decoder
        assert freed() is None
    finally:
        gc.enable()
