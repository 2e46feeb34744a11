"""Stream passthrough on real files: audio, subtitles, attachments, chapters and tags, judged by ffmpeg / ffprobe."""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from tests.pipelines import media_fixtures as media
from vsr.pipelines.passthrough import Passthrough, opus_packet_samples

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


def test_the_videos_own_tags_are_kept_and_those_of_its_old_encoding_are_not(tmp_path):
    """Only the language, title, handler and timecode of the video were kept: a user's COMMENT was lost, and a 3D
    video's stereo_mode, which says how players show it (helper-91). mkvmerge's statistics (BPS-eng) and the
    encoder describe the source's encoding, not the output's."""
    source = tmp_path / "sbs.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x24:rate=25:duration=0.2", "-c:v", "libx264",
                 "-metadata:s:v", "stereo_mode=left_right", "-metadata:s:v", "COMMENT=left eye first",
                 "-metadata:s:v", "title=Holiday", "-metadata:s:v", "BPS-eng=12345",
                 "-metadata:s:v", "NUMBER_OF_FRAMES-eng=5", source)
    output = media.write_upscaled(source, tmp_path / "out.mkv")
    stream = media.ffprobe_streams_of(output, "v:0")[0]
    tags = {key.upper(): value for key, value in stream["tags"].items()}
    assert tags["COMMENT"] == "left eye first" and tags["TITLE"] == "Holiday" and tags["STEREO_MODE"] == "left_right"
    assert "BPS-ENG" not in tags and "NUMBER_OF_FRAMES-ENG" not in tags and "Lavc59" not in tags.get("ENCODER", "")
    assert [side["type"] for side in stream["side_data_list"]] == ["side by side"]


def test_mkvmerges_statistics_of_copied_streams_are_kept_whole_and_left_out_of_a_preview(tmp_path):
    """mkvmerge writes each track's packet count, bytes and bit rate as tags. They hold for a whole copy (its packets
    are the source's) but not for a preview's part of a track, where MediaInfo showed the episode's numbers."""
    source = tmp_path / "stats.mkv"
    statistics = ["-metadata:s:a", "NUMBER_OF_FRAMES-jpn=75", "-metadata:s:a", "BPS-jpn=32000",
                  "-metadata:s:a", "_STATISTICS_TAGS-jpn=BPS NUMBER_OF_FRAMES",
                  "-metadata:s:s", "NUMBER_OF_FRAMES=2", "-metadata:s:s", "NUMBER_OF_BYTES=10"]
    media.ffmpeg("-i", media.make_rich_mkv(tmp_path / "rich.mkv", frames=75), "-map", "0", "-c", "copy",
                 *statistics, source)

    def tags(path: Path) -> list[dict[str, str]]:
        return [{key.upper(): value for key, value in stream["tags"].items() if key.upper() != "DURATION"}
                for stream in media.ffprobe_streams(path) if stream["codec_type"] in ("audio", "subtitle")]

    whole = media.write_upscaled(source, tmp_path / "whole.mkv")
    preview = media.write_upscaled(source, tmp_path / "preview.mkv", window=WINDOW, trim=True)
    assert tags(whole) == tags(source)
    assert tags(source)[0]["NUMBER_OF_FRAMES-JPN"] == "75" and tags(source)[1]["NUMBER_OF_BYTES"] == "10"
    kept = [{key: value for key, value in stream.items() if key != "ENCODER"} for stream in tags(preview)]
    assert kept == [{"LANGUAGE": "fra", "TITLE": "French audio"}, {"LANGUAGE": "eng"}]  # (the encoder is still so)


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


def test_track_titles_name_the_tracks_of_an_mp4(rich, tmp_path):
    """MP4 keeps a track's name as its handler's name, and FFmpeg writes a track's title nowhere: an episode's titled
    audio and video came out of .mkv as "SoundHandler" and "VideoHandler" (helper-140)."""
    source = tmp_path / "titled.mkv"
    media.ffmpeg("-i", rich, "-map", "0", "-c", "copy", "-metadata:s:v", "title=Episode 1", source)
    output = media.write_upscaled(source, tmp_path / "out.mp4")
    names = [stream["tags"].get("handler_name") for stream in media.ffprobe_streams(output)]
    assert names == ["Episode 1", "French audio", "SubtitleHandler"]  # (the last: the chapters' own text track)
    assert packet_hashes(media.framemd5(output, "0:a")) == packet_hashes(media.framemd5(source, "0:a"))


def test_an_mxf_output_takes_h264_and_keeps_its_pcm_audio(tmp_path, caplog):
    """MXF's muxer wants one video stream, the first, and fails its trailer where no packet was written: the probes
    that ask a muxer what it holds took those for refusals, and every .mxf output was "codec 'libx264' cannot be
    stored in a mxf file", its PCM audio "mxf files cannot hold pcm_s16le audio"."""
    from vsr.pipelines.encode import check_container_holds

    source = tmp_path / "broadcast.mxf"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.4", "-f", "lavfi", "-i",
                 "sine=sample_rate=48000:duration=0.4", "-c:v", "mpeg2video", "-c:a", "pcm_s16le", source)
    output = tmp_path / "out.mxf"
    check_container_holds(output, "libx264")  # (no OptionError)
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
        media.write_upscaled(source, output)
    assert "cannot hold" not in caplog.text
    assert by_type(output)["video"][0]["codec_name"] == "h264" and len(media.video_pts(output)) == 10
    assert packet_hashes(media.framemd5(output, "0:a")) == packet_hashes(media.framemd5(source, "0:a")) != []


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


def test_a_cover_picture_goes_into_matroska_as_an_attachment(tmp_path):
    # FFmpeg reads a Matroska cover attachment as a one-picture video stream; copied as a stream, the muxer would
    # write it back as a second video track. From .mp4 (a covr picture) and from .mkv (an attachment) alike.
    from_mp4 = media.make_cover_mp4(tmp_path / "cover.mp4")
    from_mkv = tmp_path / "cover.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(from_mp4), "-map", "0:v:0", "-c", "copy", "-attach",
                    str(_png(tmp_path / "front.png")), "-metadata:s:t", "mimetype=image/png", "-metadata:s:t",
                    "title=Front cover", str(from_mkv)], check=True)
    for source, name in ((from_mp4, "cover.png"), (from_mkv, "front.png")):
        output = media.write_upscaled(source, tmp_path / f"out-{source.suffix[1:]}.mkv")
        video = by_type(output)["video"]
        assert [s["disposition"]["attached_pic"] for s in video] == [0, 1]
        assert video[1]["tags"]["filename"] == name and video[1]["tags"]["mimetype"] == "image/png"
        assert video[1]["tags"].get("title") == ("Front cover" if source is from_mkv else None)  # (was dropped)
        assert media.framemd5(output, "0:v:1") == media.framemd5(source, "0:v:1")
        assert media.video_times(output) == media.video_times(source)


def _png(path):
    media.ffmpeg("-f", "lavfi", "-i", "color=blue:size=16x16", "-frames:v", "1", path)
    return path


def test_streams_a_muxer_would_lose_without_a_word_are_skipped_with_a_warning(rich, tmp_path, caplog):
    # MPEG-TS writes what it has no stream type for as private data ("bin_data" when read back); .mov leaves cover
    # pictures out. Both without an error, so the header test alone cannot tell.
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
        output = media.write_upscaled(rich, tmp_path / "out.ts")
        media.write_upscaled(media.make_cover_mp4(tmp_path / "cover.mp4"), tmp_path / "out.mov")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "subtitle stream #2" in warnings[0] and "MPEG-TS files cannot hold subrip subtitles" in warnings[0]
    assert "attachment stream #3" in warnings[1] and "MPEG-TS files cannot hold attachments" in warnings[1]
    assert "video stream #1" in warnings[2] and "leave cover pictures out" in warnings[2]
    assert sorted(by_type(output)) == ["audio", "video"]


@pytest.mark.parametrize("suffix", [".mov", ".mp4", ".mkv"])
def test_a_timecode_track_is_rewritten_with_the_same_start(tmp_path, suffix):
    source = tmp_path / "timecode.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i",
                    "sine=r=48000", "-t", "0.4", "-timecode", "01:02:03:04", "-c:a", "aac", str(source)], check=True)
    assert [s["codec_tag_string"] for s in by_type(source)["data"]] == ["tmcd"]
    output = media.write_upscaled(source, tmp_path / f"out{suffix}")  # copying the tmcd track failed at the trailer
    streams = by_type(output)
    video_tags = {key.lower(): value for key, value in streams["video"][0]["tags"].items()}  # Matroska: TIMECODE
    assert video_tags["timecode"] == "01:02:03:04"
    if suffix != ".mkv":  # Matroska has no timecode track, only the tag
        assert [(s["codec_tag_string"], s["tags"]["timecode"]) for s in streams["data"]] == [("tmcd", "01:02:03:04")]
    assert len(media.video_pts(output)) == len(media.video_pts(source)) == 10
    # A preview starts later than the source, so the source's first timecode would be wrong for it.
    preview = media.write_upscaled(source, tmp_path / f"preview{suffix}", window=(0.2, 0.4), trim=True)
    preview_tags = {key.lower() for key in by_type(preview)["video"][0].get("tags", {})}
    assert "timecode" not in preview_tags and "data" not in by_type(preview)


@pytest.mark.parametrize("remux_args", [["-c", "copy"], ["-c", "copy", "-metadata:s:v", "timecode=", "-metadata",
                                                         "timecode=01:02:03:04"]],
                         ids=["a Matroska TIMECODE tag", "a container tag"])
def test_a_previews_timecode_is_not_the_sources(tmp_path, remux_args):
    """The MOV muxer wrote a timecode track from an upper-case video tag or from the container's tag: the
    source's first timecode, for a preview that starts later (helper-51)."""
    source = tmp_path / "timecode.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "0.4",
                    "-timecode", "01:02:03:04", str(source)], check=True)
    remuxed = tmp_path / "timecode.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-map", "0:v", *remux_args, str(remuxed)], check=True)
    preview = media.write_upscaled(remuxed, tmp_path / "preview.mov", window=(0.2, 0.4), trim=True)
    found = media.ffprobe(preview, "-show_streams", "-show_format")
    tags = [key.lower() for stream in found["streams"] for key in stream.get("tags", {})]
    assert "timecode" not in tags + [key.lower() for key in found["format"].get("tags", {})]
    assert [stream["codec_type"] for stream in found["streams"]] == ["video"]


@pytest.mark.parametrize("suffix", [".mov", ".mp4"])
def test_a_phones_quicktime_metadata_is_kept(tmp_path, suffix):
    """Make, model, place and date of a phone's video are QuickTime "mdta" keys, which the MOV/MP4 muxer wrote
    only when asked to: lost even from .mov to .mov (helper-51)."""
    keys = {"com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 12",
            "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
            "com.apple.quicktime.creationdate": "2021-05-01T12:00:00+0200"}
    source = tmp_path / "phone.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "0.2",
                    "-movflags", "use_metadata_tags", *(f for key, value in keys.items() for f in ("-metadata",
                                                                                                 f"{key}={value}")),
                    str(source)], check=True)
    output = media.write_upscaled(source, tmp_path / f"out{suffix}")
    tags = media.ffprobe(output, "-show_format")["format"]["tags"]
    assert {key: tags.get(key) for key in keys} == keys


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


# Previews (trim=True): only the frames of a window are written, with their source pts.

WINDOW = (1.0, 2.0)  # seconds of the 3 s preview clips
AAC_PACKET = Fraction(1024, 48000)  # seconds


@pytest.fixture(scope="module")
def preview_clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("preview")
    return {
        "mp4": media.make_aac_mp4(folder / "aac.mp4", frames=75),
        "mkv": media.make_rich_mkv(folder / "rich.mkv", frames=75, subtitles=media.PREVIEW_SUBTITLES,
                                   chapters=media.PREVIEW_CHAPTERS),
    }


def window_times(source: Path, window: tuple[float, float]) -> list[Fraction]:
    return [t for t in media.video_times(source) if window[0] <= t < window[1]]


def assert_preview(source: Path, output: Path, window: tuple[float, float], *, keeps_straddling: bool) -> None:
    """The window's frames from 0, and exactly the source audio packets that overlap it, unchanged."""
    times = window_times(source, window)
    assert len(times) == 25 and media.video_times(output) == [t - times[0] for t in times]
    start, end = times[0], times[-1] + Fraction(1, 25)
    spans = media.packet_spans(source, "a:0")
    # The first kept packet: the one that straddles (or ends at) the start where the container stores negative
    # times (mp4), else the first that starts inside the window (mkv); the last: the last that starts before the end.
    first = next(i for i, (s, e) in enumerate(spans) if (e >= start if keeps_straddling else s >= start))
    last = max(i for i, (s, e) in enumerate(spans) if s < end)
    assert 0 < first < last < len(spans) - 1  # the window really is inside the source
    kept = packet_hashes(media.framemd5(output, "0:a"))
    assert kept == packet_hashes(media.framemd5(source, "0:a"))[first:last + 1]
    assert media.playback_errors(output) == ""


def test_preview_mp4_starts_at_zero_with_the_aac_of_the_window(preview_clips, tmp_path):
    source = preview_clips["mp4"]
    output = media.write_upscaled(source, tmp_path / "out.mp4", window=WINDOW, trim=True)
    assert_preview(source, output, WINDOW, keeps_straddling=True)
    spans = media.packet_spans(output, "a:0")
    assert -AAC_PACKET < spans[0][0] < 0  # the straddling packet: before 0, cut by the edit list
    audio, video = media.ffprobe_streams_of(output, "a:0")[0], media.ffprobe_streams_of(output, "v:0")[0]
    assert float(audio["start_time"]) == float(video["start_time"]) == 0
    assert abs(Fraction(audio["duration"]) - 1) <= 2 * AAC_PACKET
    assert by_type(output)["audio"][0]["tags"]["language"] == "deu"


def test_preview_mkv_keeps_the_opus_cues_and_chapters_of_the_window(preview_clips, tmp_path):
    source = preview_clips["mkv"]
    output = media.write_upscaled(source, tmp_path / "out.mkv", window=WINDOW, trim=True)
    assert_preview(source, output, WINDOW, keeps_straddling=False)
    spans = media.packet_spans(output, "a:0")
    opus_packet = spans[0][1] - spans[0][0]
    assert 0 <= spans[0][0] < opus_packet  # Matroska cannot start before 0: the straddling packet is left out
    assert abs(spans[-1][1] - spans[0][0] - 1) <= 2 * opus_packet
    with av.open(str(output)) as container:
        stream = container.streams.subtitles[0]
        cues = [(p.pts * p.time_base, p.duration * p.time_base, bytes(p)) for p in container.demux(stream) if p.size]
    # Source cues 0.5-1.2, 1.3-1.6, 1.8-2.4, 2.5-2.9 s; the window starts at the first frame (the source's video and
    # subtitles share the same small muxing offset, so times relative to it are the SRT's).
    assert cues == [(0, Fraction("0.2"), b"Before and into"), (Fraction("0.3"), Fraction("0.3"), b"Inside"),
                    (Fraction("0.8"), Fraction("0.6"), b"Into and after")]
    start = window_times(source, WINDOW)[0]
    chapters = [(Fraction(c["start_time"]), Fraction(c["end_time"]), c["tags"]["title"])
                for c in media.ffprobe(output, "-show_chapters")["chapters"]]
    assert chapters == [(0, Fraction("1.5") - start, "Middle"), (Fraction("1.5") - start, 1, "End")]
    assert by_type(output)["attachment"][0]["tags"]["filename"] == media.ATTACHMENT_NAME


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_preview_far_into_a_long_file(tmp_path, suffix):
    """The source is sought near the start rather than read from 0, and nothing of the window is lost."""
    make = media.make_aac_mp4 if suffix == ".mp4" else media.make_rich_mkv
    source = make(tmp_path / f"long{suffix}", frames=75 * 25)
    window = (70.0, 71.0)
    output = media.write_upscaled(source, tmp_path / f"out{suffix}", window=window, trim=True)
    assert_preview(source, output, window, keeps_straddling=suffix == ".mp4")

    with av.open(str(tmp_path / "bare.mkv"), "w") as bare:
        passthrough = Passthrough(source, bare, video_index=0, trim=True)
        passthrough.start_at(Fraction(70))
        passthrough.mux_until(71.0)
        passthrough.end_at(Fraction(71))
        passthrough.close()
    spans = media.packet_spans(source, "a:0")
    assert passthrough.packets_written == sum(70 <= s < 71 for s, _ in spans)
    # Not everything before 70 s was read: only from 10 s before it, or 60 s where there are subtitles (the mkv's).
    margin = 60 if suffix == ".mkv" else 10
    assert 0 < passthrough.packets_dropped < sum(70 - margin - 5 <= s < 70 for s, _ in spans)


def test_next_time_is_the_first_packets_and_start_at_is_called_once(aac, tmp_path):
    with av.open(str(aac)) as source:
        first = next(packet for packet in source.demux(source.streams.audio[0]) if packet.size)
        first_time = first.dts * first.time_base
    with av.open(str(tmp_path / "out.mkv"), "w") as output:
        passthrough = Passthrough(aac, output, video_index=0)
        assert passthrough.next_time() == first_time
        passthrough.start_at(first_time)
        with pytest.raises(ValueError, match="called once"):
            passthrough.start_at(Fraction(1))
        passthrough.close()


def _with_audio(path: Path, *audio: tuple[str, ...]) -> Path:
    """A 2-second clip with one audio track per entry of `audio` (each: an lavfi source's ffmpeg options, then codec
    options)."""
    inputs, maps = [], ["-map", "0:v"]
    for number, (source, *codec) in enumerate(audio, 1):
        inputs += ["-f", "lavfi", "-i", source]
        maps += ["-map", f"{number}:a", *(option.replace("{n}", str(number - 1)) for option in codec)]
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2", *inputs, *maps, "-c:v", "libx264",
                 path)
    return path


@pytest.mark.parametrize("name, output, audio", [
    # TrueHD's 0.83 ms packets repeat Matroska's millisecond times.
    ("truehd.mkv", "out.ts", [("anoisesrc=d=2:r=48000", "-c:a:{n}", "truehd", "-strict", "-2", "-ac", "2")]),
    # AC-3's packets collide in AVI's ticks of a frame, beside AAC.
    ("two.mkv", "out.avi", [("sine=f=440:d=2", "-c:a:{n}", "aac"), ("sine=f=880:d=2", "-c:a:{n}", "ac3")]),
    # Matroska keeps no channel order, which MP4 refuses at the end of the file.
    ("pcm.mkv", "out.mp4", [("anoisesrc=d=2:r=48000", "-c:a:{n}", "pcm_s16le", "-ac", "2")]),
    # 5 and 6 channels without an order: FFmpeg's default layouts for them are "5.0" and "5.1" (a traceback).
    ("pcm51.mkv", "out.mkv", [("anoisesrc=d=2:r=48000", "-c:a:{n}", "pcm_s16le", "-ac", "6"),
                              ("anoisesrc=d=2:r=48000", "-c:a:{n}", "pcm_s16le", "-ac", "5")]),
], ids=["truehd into ts", "ac3 beside aac into avi", "unordered pcm into mp4", "unordered 5.1 and 5.0 pcm"])
def test_audio_that_its_muxer_refused_at_the_end_is_copied_packet_for_packet(tmp_path, name, output, audio):
    """Each of these failed the whole run, after the video was upscaled."""
    source = _with_audio(tmp_path / name, *audio)
    written = media.write_upscaled(source, tmp_path / output)
    for index in range(len(audio)):
        assert packet_hashes(media.framemd5(written, f"0:a:{index}")) == packet_hashes(
            media.framemd5(source, f"0:a:{index}"))
    assert media.playback_errors(written) == ""


def test_repeated_times_keep_their_place_in_matroska(tmp_path):
    """TrueHD's 0.83 ms packets repeat Matroska's millisecond times, as typeset subtitle lines starting together
    do: each moved a millisecond on pushed every later packet on (the audio 0.4 s late after 2 s)."""
    cues = tmp_path / "signs.srt"
    cues.write_text("".join(f"{n}\n00:00:01,000 --> 00:00:01,500\nsign {n}\n\n" for n in range(1, 6)))
    source = tmp_path / "truehd.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2", "-f", "lavfi", "-i",
                 "anoisesrc=d=2:r=48000", "-i", cues, "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264",
                 "-c:a", "truehd", "-strict", "-2", "-ac", "2", "-c:s", "srt", source)
    written = media.write_upscaled(source, tmp_path / "out.mkv")
    for selector in ("a:0", "s:0"):
        assert media.packet_spans(written, selector) == media.packet_spans(source, selector)
    assert media.packet_spans(written, "s:0")[-1][0] == 1


def test_audio_mpeg_ts_has_no_stream_type_for_and_attachments_in_webm_are_skipped_with_a_warning(tmp_path, caplog):
    """MPEG-TS writes FLAC as private data ("bin_data"); the WebM muxer leaves attachments out. Neither says so."""
    source = _with_audio(tmp_path / "flac.mkv", ("anoisesrc=d=2:r=48000", "-c:a:{n}", "flac"))
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
        written = media.write_upscaled(source, tmp_path / "out.ts")
    assert sorted(by_type(written)) == ["video"]
    assert "audio stream #1 (flac): MPEG-TS files cannot hold flac audio; Matroska (.mkv) holds them" in caplog.text
    fonts = tmp_path / "fonts.mkv"
    (tmp_path / "font.ttf").write_bytes(b"a font's bytes: carried as they are")
    media.ffmpeg("-i", source, "-attach", tmp_path / "font.ttf", "-metadata:s:t",
                 "mimetype=application/x-truetype-font", "-map", "0:v", "-c", "copy", fonts)
    media.write_upscaled(fonts, tmp_path / "out.webm", codec="libvpx-vp9")
    assert "WebM files cannot hold attachments; Matroska (.mkv) holds them" in caplog.text
    # Audio WebM refuses is named with where it goes too, as Matroska's own muxer answers (it said nothing more)
    aac = _with_audio(tmp_path / "aac.mkv", ("sine=d=2", "-c:a:{n}", "aac"))
    media.write_upscaled(aac, tmp_path / "aac.webm", codec="libvpx-vp9")
    assert "audio stream #1 (aac): webm files cannot hold aac audio; Matroska (.mkv) holds them" in caplog.text


def test_an_mp4s_chapter_track_is_not_warned_about_its_chapters_are_kept(tmp_path, caplog):
    """FFmpeg's MP4 muxer keeps chapters in a text track, which the demuxer reads as a data stream (discarded): every
    MP4 with chapters was said to have a data stream mp4 cannot hold."""
    metadata = tmp_path / "chapters.txt"
    metadata.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=A\n"
                        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=B\n")
    source = tmp_path / "chapters.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2", "-i", metadata, "-map", "0",
                 "-map_chapters", "1", "-c:v", "libx264", source)
    assert "data" in by_type(source)
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
        output = media.write_upscaled(source, tmp_path / "out.mp4")
    assert caplog.text == ""
    chapters = media.ffprobe(output, "-show_chapters")["chapters"]
    assert [(chapter["tags"]["title"], chapter["start_time"]) for chapter in chapters] == [
        ("A", "0.000000"), ("B", "1.000000")]


def test_a_long_cue_on_screen_at_a_previews_start_is_kept(tmp_path):
    """The source was sought 10 s before the start: a Matroska cue shown from 1 to 20 s was lost at --start 12 (its
    clusters, cut by the audio, start after it). Sought 60 s before now; and cut at the preview's end."""
    from vsr import api

    (tmp_path / "cue.srt").write_text("1\n00:00:01,000 --> 00:00:20,000\nA long sign\n")
    source = tmp_path / "long.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24:rate=5:duration=25", "-f", "lavfi", "-i", "sine=d=25",
                 "-i", tmp_path / "cue.srt", "-c:v", "libx264", "-g", "5", "-c:a", "aac", "-c:s", "srt", source)
    options = api.UpscaleOptions(model="bicubic", outscale=2)
    one_run = api.upscale_video(source, tmp_path / "preview.mkv", options=options,
                                video=api.VideoOptions(start=12, end=13)).output
    joined = api.upscale_video_in_segments(source, tmp_path / "joined.mkv", options=options,
                                           video=api.VideoOptions(start=12, end=13, segment_seconds=0.4)).output
    for output in (one_run, joined):
        with av.open(str(output)) as container:
            stream = container.streams.subtitles[0]
            cues = [(p.pts * p.time_base, p.duration * p.time_base, bytes(p)) for p in container.demux(stream)
                    if p.size]
        assert cues == [(0, 1, b"A long sign")]  # ending with the preview (its 8 s made the file 8 s long)
        assert float(media.ffprobe(output, "-show_format")["format"]["duration"]) < 1.1  # (not 8)


def test_a_bitmap_cue_on_screen_at_a_previews_start_shows_from_its_first_frame(tmp_path):
    """PGS cues have no duration (each shows until the next display set): the one shown at the start was dropped
    as ended before it."""
    from tests.pipelines.clips import make_pgs_subtitles
    from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, upscale_video

    subtitles = make_pgs_subtitles(tmp_path / "cues.sup", [(0.2, 0.9), (1.0, 1.8), (2.1, 2.9)])
    source = tmp_path / "bluray.mkv"  # (ffmpeg starts the cues at 0: shown 0-0.7, 0.8-1.6, 1.9-2.7)
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=3", "-i", subtitles, "-map", "0",
                 "-map", "1", "-c:v", "libx264", "-g", "5", "-c:s", "copy", source)

    def cues(path):
        packets = media.ffprobe(path, "-select_streams", "s", "-show_entries", "packet=pts_time,size")["packets"]
        return [(round(float(packet["pts_time"]), 3), int(packet["size"])) for packet in packets]

    shown, cleared = cues(source)[0][1], cues(source)[1][1]
    for (start, end), expected in [((0.5, 1.5), [(0.0, shown), (0.2, cleared), (0.3, shown)]),
                                   ((0.9, 1.4), [(0.0, shown)])]:  # (within one cue: said at the end)
        output = tmp_path / f"preview{start}.mkv"
        upscale_video(source, output, options=UpscaleOptions(model="bicubic", outscale=1),
                      video=VideoOptions(start=start, end=end))
        assert cues(output) == expected


def test_klv_metadata_is_kept_in_mpeg_ts_and_said_to_be_skipped_where_it_would_be_lost(tmp_path, caplog):
    """KLV (drone and camera telemetry) comes in MPEG-TS. QuickTime .mov and AVI take it without a word and write
    what reads back as no codec; the warning named no codec either."""
    import numpy as np

    source = tmp_path / "drone.ts"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        data = out.add_data_stream(codec_name="klv")
        for index in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * index, np.uint8), format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
            packet = av.Packet(b"\x06\x0e\x2b\x34" + bytes([index]) * 12)  # a KLV universal key, then a value
            packet.stream, packet.time_base, packet.pts, packet.dts = data, Fraction(1, 10), index, index
            out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    kept = media.write_upscaled(source, tmp_path / "out.ts")
    assert packet_hashes(media.framemd5(kept, "0:d")) == packet_hashes(media.framemd5(source, "0:d"))
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
        for suffix in (".mov", ".avi"):
            assert "data" not in by_type(media.write_upscaled(source, tmp_path / f"out{suffix}"))
    assert "data stream #1 (klv): mov files cannot hold klv data" in caplog.text
    assert "data stream #1 (klv): avi files cannot hold klv data" in caplog.text


def test_adts_aac_from_mpeg_ts_into_avi_says_why_it_is_skipped(tmp_path, caplog):
    """AVI takes AAC (from MP4, Matroska), but not with MPEG-TS's ADTS headers: "avi cannot hold aac" was untrue."""
    source = tmp_path / "recording.ts"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1", "-f", "lavfi", "-i", "sine=d=1",
                 "-c:v", "libx264", "-c:a", "aac", source)
    with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
        media.write_upscaled(source, tmp_path / "out.avi")
    assert "avi files take AAC without the ADTS headers it has in MPEG-TS; .mkv and .mp4 hold it" in caplog.text


def test_audio_of_more_channels_than_an_order_is_known_for_is_skipped_from_mp4_with_a_warning(tmp_path, caplog):
    """The MP4 muxer took the header, then refused every packet: the run failed after the work (helper-51)."""
    source = tmp_path / "ten.mkv"
    split = "".join(f"[a{index}]" for index in range(10))
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2", "-f", "lavfi", "-i",
                 "anoisesrc=d=2:r=48000", "-f", "lavfi", "-i", "sine=f=440:d=2", "-filter_complex",
                 f"[1:a]asplit=10{split};{split}amerge=inputs=10[ten]", "-map", "0:v", "-map", "[ten]", "-map", "2:a",
                 "-c:a:0", "pcm_s16le", "-c:a:1", "aac", "-c:v", "libx264", source)
    with caplog.at_level(logging.WARNING):
        written = media.write_upscaled(source, tmp_path / "out.mp4")
    assert "mp4 files cannot hold audio of 10 channels without an order; Matroska (.mkv) holds it" in caplog.text
    assert [stream["codec_name"] for stream in by_type(written)["audio"]] == ["aac"]
    assert media.playback_errors(written) == ""


def test_ac3_from_an_avi_into_an_avi_keeps_its_times(tmp_path):
    """The AVI demuxer's block_align (3840) went along with the stream, and the AVI muxer wrote it as a constant
    sample size: 4 s of AC-3 were timed as 0.47 s, ten packets at each time, without a word (helper-70). ffmpeg's
    stream copy resets it."""
    from vsr.pipelines.upscale import UpscaleOptions, upscale_video

    source = tmp_path / "xvid.avi"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=4", "-f", "lavfi", "-i", "sine=f=1000:d=4",
                 "-c:v", "mpeg4", "-c:a", "ac3", source)
    output = upscale_video(source, tmp_path / "out.avi", options=UpscaleOptions(model="bicubic", outscale=1)).output

    def audio_times(path):
        found = media.ffprobe(path, "-select_streams", "a", "-show_entries", "packet=pts_time")["packets"]
        return [float(packet["pts_time"]) for packet in found]

    assert audio_times(output) == audio_times(source) and audio_times(source)[-1] > 3.9


def test_audio_starting_after_the_video_is_said_to_play_early_in_an_avi(tmp_path, caplog):
    """The AVI muxer starts each stream at its first packet (ffmpeg's -c copy too): the delay was lost silently
    (helper-70: 277 ms)."""
    from vsr.pipelines.upscale import UpscaleOptions, upscale_video

    source = tmp_path / "late.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1", "-itsoffset", "0.5", "-f", "lavfi", "-i",
                 "sine=d=0.5", "-c:v", "libx264", "-c:a", "libmp3lame", source)
    with caplog.at_level(logging.WARNING):
        upscale_video(source, tmp_path / "out.avi", options=UpscaleOptions(model="bicubic", outscale=1))
    assert "the other streams start 0.4" in caplog.text and "they play that much early" in caplog.text
    caplog.clear()
    upscale_video(source, tmp_path / "out.mkv", options=UpscaleOptions(model="bicubic", outscale=1))
    assert "play that much early" not in caplog.text


def test_opus_from_matroska_into_mp4_decodes_to_the_sources_samples(rich, tmp_path):
    """Matroska counts milliseconds: Opus's 312-sample pre-skip (6.5 ms) starts at -7 ms there, and rescaled into
    MP4's samples the edit list skipped 336: 24 samples of the sound lost (bench/frame_exactness.py, helper-121)."""
    def pcm_md5(path: Path, length: int | None = None) -> tuple[int, str]:
        """The decoded samples' (first `length` bytes') size and MD5."""
        pcm = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s16le",
                              "-"], check=True, capture_output=True).stdout[:length]
        return len(pcm), hashlib.md5(pcm).hexdigest()

    output = media.write_upscaled(rich, tmp_path / "out.mp4")
    copied = tmp_path / "copied.mp4"  # ffmpeg's own stream copy, which moves the whole file 7 ms later instead
    media.ffmpeg("-i", rich, "-map", "0:a", "-c", "copy", copied)
    length, _ = source = pcm_md5(rich)
    assert length > 10_000 and pcm_md5(output, length) == source  # (FFmpeg decodes its last packet whole)
    assert pcm_md5(output) == pcm_md5(copied)


def test_eac3_into_avi_is_skipped_with_a_warning(tmp_path, caplog):
    """The AVI muxer times E-AC-3 packets by a PCM block size: 2 s from .mkv read back as 0.5 s, without a word
    (ffmpeg's stream copy too). From an AVI (which ffmpeg wrote so), its packets were timed by the nominal bit rate,
    0.47 % fast at 44.1 kHz (8.5 ms after 2 s)."""
    source = _with_audio(tmp_path / "ddp.mkv", ("sine=d=2", "-c:a:{n}", "eac3"))
    avi = tmp_path / "ddp.avi"
    media.ffmpeg("-i", source, "-c:v", "mpeg4", "-c:a", "copy", avi)
    for made in (source, avi):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vsr.pipelines.passthrough"):
            output = media.write_upscaled(made, tmp_path / f"{made.stem}-{made.suffix[1:]}.out.avi")
        assert "audio stream #1 (eac3): avi files cannot hold eac3 audio with its times" in caplog.text
        assert "audio" not in by_type(output) and len(media.decoded_frame_md5s(output)) == 20


def shown_samples(path: Path) -> int:
    """How many samples of the first audio stream a player shows: in MP4 and QuickTime its edit list's duration
    (FFmpeg's demuxer reads it, and says it in its trace log, but decodes a last packet whole), elsewhere as many as
    ffmpeg decodes (Matroska's DiscardPadding taken off)."""
    if path.suffix not in (".mp4", ".mov"):
        pcm = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1",
                              "-f", "s16le", "-"], check=True, capture_output=True).stdout
        return len(pcm) // 2
    index = media.ffprobe_streams_of(path, "a:0")[0]["index"]
    trace = subprocess.run(["ffprobe", "-v", "trace", str(path)], check=True, capture_output=True, text=True).stderr
    edits = re.findall(rf"Processing st: {index}, edit list \d+ - media time: -?\d+, duration: (\d+)", trace)
    assert len(edits) == 1, edits  # (in the track's time scale: its sample rate)
    return int(edits[0])


@pytest.mark.parametrize("name, output, codec", [
    ("opus.mkv", "out.mp4", "libopus"),  # 648 samples of padding in the last packet: Matroska's DiscardPadding
    ("mp3.mkv", "out.mov", "libmp3lame"),  # 815
    ("mp3.mp4", "out.mp4", "libmp3lame"),  # the source's edit list ends 815 samples before its last packet does
    ("aac.mkv", "out.mp4", "aac"),  # 1024-sample packets in Matroska's milliseconds (21 ms)
])
def test_copied_audio_ends_in_mp4_where_the_sources_does(tmp_path, name, output, codec):
    """An MP4 track ends where its last packet does (the muxer writes its edit list from that end); a codec's padding
    of its last frame (in Matroska's DiscardPadding, or before the end of an MP4's own edit list) was played as sound
    in .mp4 and .mov. The edit list counts milliseconds (the movie's time scale): it ends within one of the sound."""
    source = _with_audio(tmp_path / name, ("sine=f=440:d=2:r=48000", "-c:a:{n}", codec))
    written = media.write_upscaled(source, tmp_path / output)
    assert 0 <= shown_samples(written) - shown_samples(source) < 48
    assert packet_hashes(media.framemd5(written, "0:a")) == packet_hashes(media.framemd5(source, "0:a"))


@pytest.mark.parametrize("name, codec, output, priming", [
    ("aac.mp4", "aac", "out.mkv", 1024), ("mp3.mov", "libmp3lame", "out.mkv", 1105),
    ("opus.mp4", "libopus", "out.webm", 0),  # (its pre-skip is in its header, which Matroska keeps)
])
def test_an_mp4s_end_padding_is_not_played_in_matroska(tmp_path, name, codec, output, priming):
    """AAC's encoder stores its last 1024-sample frame as 768 samples in MP4, MP3's edit list ends 815 samples
    before its last frame does, and Opus's last 960-sample packet is stored as 312: in .mkv and .webm (which mark
    them as DiscardPadding) all were played as sound. The priming, which MP4's edit list hides, is played before the
    first frame in Matroska, as in ffmpeg's own stream copy."""
    source = _with_audio(tmp_path / name, ("sine=f=440:d=2:r=48000", "-c:a:{n}", codec))
    video_codec = "libvpx-vp9" if output.endswith(".webm") else "libx264"
    written = media.write_upscaled(source, tmp_path / output, codec=video_codec)
    assert shown_samples(written) - shown_samples(source) == priming
    assert packet_hashes(media.framemd5(written, "0:a")) == packet_hashes(media.framemd5(source, "0:a"))


def test_an_opus_packets_samples_are_read_from_its_first_bytes_as_ffmpeg_decodes_them(tmp_path):
    """Each packet of libopus encodes of every frame duration, in its SILK, hybrid and CELT modes, decodes to as many
    samples as its TOC byte says: codes 0 to 3 (one frame, two of one size, two of two sizes, a counted number)."""
    seen_codes, seen_configurations = set(), set()
    for frame_duration, application, bit_rate in [("2.5", "lowdelay", "64k"), ("5", "voip", "12k"),
                                                  ("10", "audio", "24k"), ("20", "voip", "12k"),
                                                  ("40", "lowdelay", "64k"), ("60", "audio", "24k"),
                                                  ("120", "voip", "12k")]:
        encoded = tmp_path / f"{frame_duration}-{application}.mka"
        media.ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=0.5:r=48000:c=pink", "-ac", "1", "-c:a", "libopus",
                     "-frame_duration", frame_duration, "-application", application, "-b:a", bit_rate, encoded)
        decoder = av.CodecContext.create("opus", "r")  # (no header: no pre-skip taken off the first packets)
        decoder.sample_rate, decoder.layout = 48000, "mono"
        with av.open(str(encoded)) as container:
            packets = [bytes(packet) for packet in container.demux(container.streams.audio[0]) if packet.size]
        for packet in packets:
            decoded = sum(frame.samples for frame in decoder.decode(av.Packet(packet)))
            assert opus_packet_samples(packet) == decoded, (frame_duration, application, packet[:2])
            seen_codes.add(packet[0] & 3)
            seen_configurations.add(packet[0] >> 3)
    assert seen_codes == {0, 1, 2, 3}
    assert {range(0, 12), range(12, 16), range(16, 32)} == {
        mode for mode in (range(0, 12), range(12, 16), range(16, 32)) if seen_configurations & set(mode)}
    assert opus_packet_samples(b"") == 0 and opus_packet_samples(bytes([0b11111011])) == 0  # (code 3, no count)


ASS_HEADER = """[Script Info]
ScriptType: v4.00+
PlayResX: 160
PlayResY: 120

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, \
StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,DejaVu Sans,16,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,7,0,0,0,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""
# Cues on screen at a preview's start (1.3 s), with effects timed from their own start: a fade and a move over the
# whole cue (which also outlasts the preview's end, 2.5 s), a move finished before the start, transforms to the end
# and under way, karaoke half sung, a transform finished exactly at the start; and one cue inside the window.
ASS_EVENTS = "".join(f"Dialogue: 0,{start},{end},Default,,0,0,0,,{text}\n" for start, end, text in [
    ("0:00:00.50", "0:00:03.50", r"{\fad(1200,600)\move(5,5,100,40)}Sliding"),
    ("0:00:00.20", "0:00:03.00",
     r"{\move(5,60,90,60,0,500)\t(0,0,\frz30)}Moved{\t(300,1500,2,\fscx200\1c&H00FF00&)} grows"),
    ("0:00:01.00", "0:00:02.80", r"{\pos(5,90)\t(0,300,\fscy150)\k30}Ka{\k20}ra{\k40}o{\kf60}ke"),
    ("0:00:01.05", "0:00:02.20", r"{\pos(80,20)\fade(255,0,128,0,400,600,900)\k10}A{\k20}B{\k50}C"),
    ("0:00:01.60", "0:00:01.90", r"{\pos(100,100)\fad(100,100)}Inside"),
])


def rendered_subtitles(path: Path, milliseconds: int) -> bytes:
    """The RGB pixels libass (FFmpeg's subtitles filter) draws of `path`'s subtitles at `milliseconds`, on black."""
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                           "color=black:size=160x120:rate=1000:duration=0.001", "-vf",
                           f"setpts={milliseconds},subtitles={path.name}", "-frames:v", "1", "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-"], check=True, capture_output=True, cwd=path.parent).stdout


def test_ass_cues_cut_by_a_previews_start_keep_their_effects_where_they_were(tmp_path):
    """An ASS cue on screen before a preview's start was moved to 0 and shortened, its text as it was: its fade, move,
    transforms and karaoke, timed from its start, replayed from the preview's 0 (a sign that had slid in slid in
    again). Rewritten, libass draws every frame of the preview's subtitles as it draws the source's at that time."""
    from vsr import api

    (tmp_path / "cues.ass").write_text(ASS_HEADER + ASS_EVENTS)
    source = tmp_path / "signs.mkv"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=4", "-i", tmp_path / "cues.ass",
                 "-c:v", "libx264", "-g", "5", "-c:s", "copy", source)
    options = api.UpscaleOptions(model="bicubic", outscale=1)
    window = api.VideoOptions(start=1.3, end=2.5)
    one_run = api.upscale_video(source, tmp_path / "preview.mkv", options=options, video=window).output
    joined = api.upscale_video_in_segments(source, tmp_path / "joined.mkv", options=options,
                                           video=api.VideoOptions(start=1.3, end=2.5, segment_seconds=0.4)).output

    def cues(path: Path) -> list[tuple[int, int, bytes]]:
        with av.open(str(path)) as container:
            stream = container.streams.subtitles[0]
            return [(packet.pts, packet.duration, bytes(packet)) for packet in container.demux(stream) if packet.size]

    source_cues, preview_cues = cues(source), cues(one_run)
    assert cues(joined) == preview_cues
    assert [cue[:2] for cue in preview_cues] == [(0, 1200), (0, 1200), (0, 1200), (0, 900), (300, 300)]
    assert [cue[2].split(b",", 8)[8] for cue in preview_cues[:4]] == [
        rb"{\pos(90,60)\t(-1100,1700,1,\frz30)}Moved{\t(-800,400,2,\fscx200\1c&H00FF00&)} grows",
        rb"{\fade(255,0,255,-800,400,1600,2200)\move(5,5,100,40,-800,2200)}Sliding",
        rb"{\pos(5,90)\t(-300,-1,1,\fscy150)\k0}Ka{\k20}ra{\k40}o{\kf60}ke",
        rb"{\pos(80,20)\fade(255,0,128,-250,150,350,650)\k0}A{\k5}B{\k50}C"]
    assert preview_cues[4][2] == source_cues[-1][2]  # a cue inside the window stays byte for byte
    if "subtitles" not in subprocess.run(["ffmpeg", "-v", "error", "-filters"], capture_output=True,
                                         text=True).stdout:
        pytest.skip("this ffmpeg has no libass (the subtitles filter) to draw the cues with")
    for milliseconds in (1300, 1400, 1450, 1700, 1799, 2000, 2200, 2499):
        drawn = rendered_subtitles(source, milliseconds)
        assert drawn.count(0) < len(drawn)  # (some cue is drawn)
        assert rendered_subtitles(one_run, milliseconds - 1300) == drawn, milliseconds
