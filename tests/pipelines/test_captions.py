"""Closed captions inside the video frames (CEA-608 in ATSC A/53 SEI messages) come out in the upscaled video.

The source's SEI messages are written here byte by byte; FFmpeg's own H.264/HEVC decoders then read the captions
back out of vsr's output (as frame side data), so vsr is not its own judge.
"""

import logging
import subprocess

import av
import numpy as np
import pytest

from tests.pipelines import media_fixtures as media
from vsr import api
from vsr.pipelines.captions import with_captions

pytestmark = media.requires_ffmpeg

BICUBIC_X2 = api.UpscaleOptions(model="bicubic", outscale=2)
FRAMES = 12


def cc_data(index: int) -> bytes:
    """Two CEA-608 field-1 packets per frame: a control code and two letters that differ from frame to frame (one
    with bytes that need emulation prevention, 0x00 0x00 0x01, on every third frame)."""
    letters = bytes([0xC1 + index % 20, 0xC2 + index % 20]) if index % 3 else b"\x00\x00"
    return b"\xfc\x94\x20" + b"\xfc" + letters + (b"\x01\x00\x00" if index % 3 == 0 else b"")


def sei(data: bytes) -> bytes:
    """An H.264 SEI NAL unit as broadcast encoders write it: T.35 user data, United States, ATSC, GA94, cc_data."""
    body = bytes.fromhex("b5003147413934 03") + bytes([0x40 | len(data) // 3, 0xFF]) + data + b"\xff"
    payload = bytes([4, len(body)]) + body + b"\x80"
    escaped = payload.replace(b"\x00\x00\x01", b"\x00\x00\x03\x01").replace(b"\x00\x00\x00", b"\x00\x00\x03\x00")
    return b"\x00\x00\x00\x01\x06" + escaped


def make_captioned_clip(path, *, frames=FRAMES, gop=4, captioned_from=0):
    """H.264 (with B-frames, so that frames are encoded out of order) whose frames from `captioned_from` on carry
    `cc_data(index)`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": str(gop), "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames + 1):
            frame = None
            if index < frames:
                picture = np.full((48, 64, 3), (index * 20) % 256, np.uint8)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = index
            for packet in stream.encode(frame):
                if packet.pts < captioned_from:
                    container.mux(packet)
                    continue
                data = bytes(packet)
                first_slice = next(i for i in range(len(data) - 3)
                                   if data[i:i + 3] == b"\x00\x00\x01" and data[i + 3] & 0x1F in (1, 5))
                first_slice -= data[first_slice - 1] == 0
                captioned = av.Packet(data[:first_slice] + sei(cc_data(packet.pts)) + data[first_slice:])
                captioned.stream, captioned.time_base = packet.stream, packet.time_base
                captioned.pts, captioned.dts, captioned.is_keyframe = packet.pts, packet.dts, packet.is_keyframe
                container.mux(captioned)
    return path


def captions_by_time(path) -> dict:
    """Each frame's cc_data as FFmpeg's decoder exports it, by the frame's time in seconds."""
    found = {}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            side_data = frame.side_data.get(av.sidedata.sidedata.Type.A53_CC)
            found[frame.time] = bytes(side_data) if side_data is not None else None
    return found


def caption_stream(path) -> bytes:
    """The CEA-608 stream the ffmpeg command line extracts from the video (its lavfi `movie` source's subcc output):
    a second reader, independent of PyAV's FFmpeg."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"movie={path}[out0+subcc]", "-map", "0:s",
               "-c", "copy", "-f", "data", "-"]
    return subprocess.run(command, check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = make_captioned_clip(tmp_path_factory.mktemp("cc") / "broadcast.mp4")
    assert list(captions_by_time(path).values()) == [cc_data(index) for index in range(FRAMES)]
    return path


@pytest.mark.parametrize("codec, suffix", [("libx264", ".mp4"), ("libx265", ".mkv"), ("x264-lossless", ".ts"),
                                          ("libsvtav1", ".mkv")])
def test_each_frame_keeps_its_captions(source, tmp_path, codec, suffix):
    output = api.upscale_video(source, tmp_path / f"out{suffix}", options=BICUBIC_X2,
                               video=api.VideoOptions(codec=codec)).output
    assert list(captions_by_time(output).values()) == list(captions_by_time(source).values())
    if codec != "libsvtav1":  # (the ffmpeg 5.1 here decodes AV1 with a dav1d that misses frames shown again)
        assert caption_stream(output) == caption_stream(source) != b""


def test_a_preview_and_a_video_in_segments_keep_the_captions_of_their_frames(source, tmp_path):
    preview = api.upscale_video(source, tmp_path / "preview.mp4", options=BICUBIC_X2,
                                video=api.VideoOptions(start=0.2, max_frames=5)).output
    assert list(captions_by_time(preview).values()) == [cc_data(index) for index in range(5, 10)]
    joined = api.upscale_video_in_segments(source, tmp_path / "joined.mp4", options=BICUBIC_X2,
                                           video=api.VideoOptions(segment_seconds=0.16))
    assert joined.times.extra["segments"] == 3
    assert list(captions_by_time(joined.output).values()) == [cc_data(index) for index in range(FRAMES)]


def test_probe_says_a_video_carries_captions(source, tmp_path):
    from vsr.pipelines.probe import format_probe, probe

    assert probe(source).captions and ", closed captions in the frames" in format_probe(probe(source))
    assert not probe(media.make_aac_mp4(tmp_path / "plain.mp4")).captions


def test_a_codec_without_a_place_for_captions_says_it_drops_them_once(source, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        output = api.upscale_video(source, tmp_path / "out.webm", options=BICUBIC_X2,
                                   video=api.VideoOptions(codec="libvpx-vp9")).output
        api.upscale_video(source, tmp_path / "%02d.png", options=BICUBIC_X2)
    assert caplog.text.count("closed captions in its frames (CEA-608/708), which codec libvpx-vp9 has no place") == 1
    assert caplog.text.count("which image files have no place for") == 1
    assert media.ffprobe_streams_of(output, "v:0")[0]["codec_name"] == "vp9"


def test_more_caption_packets_than_one_message_holds_go_into_several(tmp_path):
    many = b"".join(b"\xfc" + bytes([0xC1 + i % 26, 0x80]) for i in range(40))  # one message holds 31
    path = tmp_path / "many.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        for packet in stream.encode(frame) + stream.encode(None):
            captioned = av.Packet(with_captions(bytes(packet), many, "h264"))
            captioned.stream, captioned.time_base = packet.stream, packet.time_base
            captioned.pts, captioned.dts, captioned.is_keyframe = packet.pts, packet.dts, packet.is_keyframe
            container.mux(captioned)
    assert list(captions_by_time(path).values()) == [many]  # FFmpeg joins the messages of a frame


def test_captions_go_before_the_first_slice_of_an_access_unit():
    parameter_sets = b"\x00\x00\x00\x01\x67\x64" + b"\x00\x00\x00\x01\x68\xee"  # SPS, PPS
    slices = b"\x00\x00\x00\x01\x65\x88\x84" + b"\x00\x00\x01\x41\x9a"  # an IDR slice, another slice
    captioned = with_captions(parameter_sets + slices, b"\xfc\x94\x20", "h264")
    assert captioned.startswith(parameter_sets) and captioned.endswith(slices)
    assert captioned[len(parameter_sets):-len(slices)] == sei(b"\xfc\x94\x20")
    hevc = b"\x00\x00\x00\x01\x40\x01" + b"\x00\x00\x00\x01\x26\x01\xaf"  # VPS, an IDR_W_RADL slice
    assert with_captions(hevc, b"\xfc\x94\x20", "hevc")[6:12] == b"\x00\x00\x00\x01\x4e\x01"  # prefix SEI


def test_decord_which_cannot_read_captions_leaves_such_a_video_to_pyav(source, tmp_path, caplog):
    output = api.upscale_video(source, tmp_path / "out.mp4", options=BICUBIC_X2,
                               video=api.VideoOptions(decoder="decord")).output
    assert caption_stream(output) == caption_stream(source)
    assert "decoding with PyAV instead of decord: the frames carry closed captions" in caplog.text


def test_captions_that_start_after_a_leader_are_found(tmp_path):
    from vsr.pipelines.captions import carries_captions

    path = make_captioned_clip(tmp_path / "leader.mp4", frames=80, captioned_from=40)
    assert carries_captions(path)
    assert not carries_captions(media.make_aac_mp4(tmp_path / "plain.mp4", frames=80))


def test_field_by_field_the_captions_go_with_the_first_field_and_ivtc_says_it_leaves_them_out(source, tmp_path,
                                                                                               caplog):
    fields = api.upscale_video(source, tmp_path / "fields.mp4", options=BICUBIC_X2,
                               video=api.VideoOptions(deinterlace="field")).output
    # (said once, not once a field: a 608 decoder would show every letter twice)
    assert list(captions_by_time(fields).values()) == [data for index in range(FRAMES) for data in (cc_data(index),
                                                                                                    None)]
    assert caption_stream(fields) == caption_stream(source)
    film = api.upscale_video(source, tmp_path / "film.mp4", options=BICUBIC_X2,
                             video=api.VideoOptions(deinterlace="ivtc")).output
    assert set(captions_by_time(film).values()) == {None}
    assert "--deinterlace ivtc: the closed captions in the frames are left out" in caplog.text
