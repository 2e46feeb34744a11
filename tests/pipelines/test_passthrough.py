"""Stream passthrough on real files: audio, subtitles, attachments, chapters and tags, judged by ffmpeg / ffprobe."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

import av
import pytest

from tests.pipelines import media_fixtures as media
from vsr.pipelines.passthrough import Passthrough

pytestmark = media.requires_ffmpeg


@pytest.fixture(scope="module")
def rich(tmp_path_factory) -> Path:
    return media.make_rich_mkv(tmp_path_factory.mktemp("rich") / "rich.mkv")


@pytest.fixture(scope="module")
def aac(tmp_path_factory) -> Path:
    return media.make_aac_mp4(tmp_path_factory.mktemp("aac") / "aac.mp4")


@pytest.fixture(scope="module")
def rich_to_mkv(rich, tmp_path_factory) -> Path:
    before = hashlib.sha256(rich.read_bytes()).digest()
    output = media.write_upscaled(rich, tmp_path_factory.mktemp("out") / "out.mkv")
    assert hashlib.sha256(rich.read_bytes()).digest() == before  # the source is only read
    return output


def packet_hashes(framemd5: str) -> list[tuple[str, str]]:
    """(size, md5) of each packet: the payload, whatever time base the container counts in."""
    rows = [line.split(",") for line in framemd5.splitlines() if line and not line.startswith("#")]
    return [(row[4].strip(), row[5].strip()) for row in rows]


def by_type(path: Path) -> dict[str, list[dict]]:
    streams: dict[str, list[dict]] = {}
    for stream in media.ffprobe_streams(path):
        streams.setdefault(stream["codec_type"], []).append(stream)
    return streams


def test_mkv_audio_and_subtitles_are_bit_identical(rich, rich_to_mkv):
    assert media.framemd5(rich_to_mkv, "0:a") == media.framemd5(rich, "0:a")  # Opus
    assert media.framemd5(rich_to_mkv, "0:s") == media.framemd5(rich, "0:s")  # SRT
    assert len(packet_hashes(media.framemd5(rich, "0:a"))) > 10
    assert media.video_pts(rich_to_mkv) == media.video_pts(rich)


def test_stream_tags_and_dispositions_are_kept(rich_to_mkv):
    streams = by_type(rich_to_mkv)
    assert [s["index"] for s in streams["video"]] == [0]
    audio, subtitle = streams["audio"][0], streams["subtitle"][0]
    assert audio["tags"]["language"] == "fra" and audio["tags"]["title"] == "French audio"
    assert subtitle["tags"]["language"] == "eng"
    assert subtitle["disposition"]["forced"] == 1 and audio["disposition"]["forced"] == 0


def test_attachment_is_kept_with_its_name_type_and_bytes(rich_to_mkv, tmp_path):
    attachment = by_type(rich_to_mkv)["attachment"][0]
    assert attachment["tags"]["filename"] == media.ATTACHMENT_NAME
    assert attachment["tags"]["mimetype"] == media.ATTACHMENT_MIMETYPE
    dumped = tmp_path / "dumped.ttf"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-dump_attachment:t:0", str(dumped), "-i",
                    str(rich_to_mkv), "-f", "null", "-"], check=True)
    assert dumped.read_bytes() == media.ATTACHMENT_BYTES


def test_chapters_and_container_tags_are_kept(rich, rich_to_mkv):
    def chapters(path: Path) -> list[tuple[str, str, str]]:
        return [(c["start_time"], c["end_time"], c["tags"]["title"])
                for c in media.ffprobe(path, "-show_chapters")["chapters"]]

    assert chapters(rich_to_mkv) == chapters(rich) == [("0.000000", "0.200000", "One"), ("0.200000", "0.400000", "Two")]
    tags = media.ffprobe(rich_to_mkv, "-show_format")["format"]["tags"]
    for key, value in media.CONTAINER_TAGS.items():
        assert tags[key] == value
    assert tags["ENCODER"].startswith("Lavf")  # the muxer's own, not copied from the source


def test_mp4_aac_is_bit_identical(aac, tmp_path):
    output = media.write_upscaled(aac, tmp_path / "out.mp4")
    assert media.framemd5(output, "0:a") == media.framemd5(aac, "0:a")
    assert by_type(output)["audio"][0]["tags"]["language"] == "deu"
    assert media.video_pts(output) == media.video_pts(aac)


def test_streams_mp4_cannot_hold_are_skipped_with_one_warning_each(rich, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
        output = media.write_upscaled(rich, tmp_path / "out.mp4")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert "subtitle stream #2" in warnings[0] and "mp4" in warnings[0] and ".mkv" in warnings[0]
    assert "attachment stream #3" in warnings[1] and media.ATTACHMENT_NAME in warnings[1]
    streams = by_type(output)
    assert "subtitle" not in streams and "attachment" not in streams
    assert streams["audio"][0]["codec_name"] == "opus"
    assert packet_hashes(media.framemd5(output, "0:a")) == packet_hashes(media.framemd5(rich, "0:a"))
    assert len(media.ffprobe(output, "-show_chapters")["chapters"]) == 2
    assert media.video_times(output) == media.video_times(rich)


def test_cover_picture_is_copied(tmp_path):
    source = media.make_cover_mp4(tmp_path / "cover.mp4")
    output = media.write_upscaled(source, tmp_path / "out.mp4")
    video = by_type(output)["video"]
    assert [s["disposition"]["attached_pic"] for s in video] == [0, 1]
    assert media.framemd5(output, "0:v:1") == media.framemd5(source, "0:v:1")
    assert media.video_pts(output) == media.video_pts(source)


def test_copy_streams_false_keeps_only_the_video(rich, tmp_path):
    output = media.write_upscaled(rich, tmp_path / "out.mkv", copy_streams=False)
    assert list(by_type(output)) == ["video"]
    assert len(media.ffprobe(output, "-show_chapters")["chapters"]) == 2  # chapters and tags describe the video


def test_packets_are_written_as_the_video_advances(rich, tmp_path):
    """mux_until(t) writes exactly the packets up to t, so memory does not grow with the length of the video."""
    packets = media.ffprobe(rich, "-show_entries", "packet=stream_index,dts_time")["packets"]
    passthrough_times = [float(p["dts_time"]) for p in packets if p["stream_index"] in (1, 2)]
    with av.open(str(tmp_path / "out.mkv"), "w") as output:
        passthrough = Passthrough(rich, output, video_index=0)
        assert sorted(passthrough.copied) == [1, 2, 3] and passthrough.skipped == {}
        passthrough.mux_until(0.2)
        assert passthrough.packets_written == sum(t <= 0.2 for t in passthrough_times)
        assert 0 < passthrough.packets_written < len(passthrough_times)
        passthrough.mux_rest()
        assert passthrough.packets_written == len(passthrough_times)
        passthrough.close()
