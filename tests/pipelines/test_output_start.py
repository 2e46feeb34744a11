"""Outputs start at the file's start, as ffmpeg's do without -copyts: a recording far into its clock (MPEG-TS from a
DVB/IPTV capture: anywhere in a 26.5-hour clock) gives streams that start at 0, not hours late. Judged by ffprobe
against `ffmpeg -i source -c copy` of the same file, in one run, in segments, and in segments resumed."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import make_pgs_subtitles
from tests.pipelines.test_resume import Interrupt
from tests.pipelines.test_segments import decoded_framemd5
from vsr.pipelines.segments import upscale_video_in_segments
from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, upscale_video

pytestmark = media.requires_ffmpeg

FAR = 30000  # seconds into the clock (8.3 hours): the MPEG-TS muxer starts the streams about 1.4 s after it
MILLISECOND = Fraction(1, 1000)  # Matroska's unit, and that of an MP4's edit list, which starts a stream later
OPTIONS = UpscaleOptions(model="bicubic", device="cpu")


def recording(path: Path, *, audio_delay: float = 0, subtitles: bool = False) -> Path:
    """2 s of H.264 at 25 fps (a keyframe every 10 frames) with MP2 audio (`audio_delay` s after the video) and
    DVB subtitles (`subtitles`), in MPEG-TS far into its clock."""
    cues = ["-i", make_pgs_subtitles(path.with_suffix(".sup"), [(0.5, 1.0), (1.2, 1.8)])] if subtitles else []
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=2", "-itsoffset", str(audio_delay),
                 "-f", "lavfi", "-i", f"sine=duration={2 - audio_delay}", *cues, "-map", "0", "-map", "1",
                 *(["-map", "2", "-c:s", "dvbsub"] if subtitles else []), "-c:v", "libx264", "-g", "10",
                 "-c:a", "mp2", "-output_ts_offset", str(FAR), path)
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    """The recording as captured (.ts), and remuxed into Matroska with its times and two chapters, which start 1 s
    and 2 s into the clock's FAR: before the file's start (30001.389 s), and inside it."""
    folder = tmp_path_factory.mktemp("recordings")
    captured = recording(folder / "recording.ts", subtitles=True)
    chapters = folder / "chapters.ffmetadata"
    chapters.write_text(";FFMETADATA1\n" + "".join(
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={start}\nEND={end}\ntitle={title}\n"
        for title, start, end in (("One", 1000 * FAR + 1000, 1000 * FAR + 2000),
                                  ("Two", 1000 * FAR + 2000, 1000 * FAR + 3500))))
    remuxed = folder / "recording.mkv"
    media.ffmpeg("-copyts", "-i", captured, "-i", chapters, "-map", "0", "-map_chapters", "1", "-c", "copy", remuxed)
    return {"ts": captured, "mkv": remuxed}


def starts(path: Path) -> dict[str, Fraction]:
    """Each stream's start_time (by its type: one stream of each here) and the file's, as ffprobe gives them."""
    found = media.ffprobe(path, "-show_entries", "stream=codec_type,start_time:format=start_time")
    return {"file": Fraction(found["format"]["start_time"]),
            **{stream["codec_type"]: Fraction(stream["start_time"]) for stream in found["streams"]}}


def packet_hashes(path: Path, selector: str) -> list[tuple[str, str]]:
    """(size, md5) of each packet: the payload, whatever the time base."""
    rows = [line.split(",") for line in media.framemd5(path, selector).splitlines() if not line.startswith("#")]
    return [(row[4].strip(), row[5].strip()) for row in rows]


def chapters(path: Path) -> list[tuple[Fraction, Fraction, str]]:
    return [(Fraction(c["start_time"]), Fraction(c["end_time"]), c["tags"]["title"])
            for c in media.ffprobe(path, "-show_chapters")["chapters"]]


def duration(path: Path) -> Fraction:
    return Fraction(media.ffprobe(path, "-show_entries", "format=duration")["format"]["duration"])


def upscaled(source: Path, output: Path, segmented: bool, **video) -> Path:
    if segmented:
        result = upscale_video_in_segments(source, output, options=OPTIONS,
                                           video=VideoOptions(segment_seconds=0.5, **video))
        assert result.times.extra["segments"] == 4
    else:
        upscale_video(source, output, options=OPTIONS, video=VideoOptions(**video))
    return output


@pytest.mark.parametrize("segmented", [False, True], ids=["one run", "segments"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("name", ["ts", "mkv"])
def test_a_recording_far_into_its_clock_starts_at_0_as_ffmpegs_copy_does(recordings, tmp_path, name, suffix,
                                                                          segmented):
    """Every stream started 30001.4 s in (an MP4's edit list told players to show nothing for 8.3 hours); ffmpeg
    moves every stream by the file's start. The frames keep their times less that start, the audio and subtitle
    packets are the source's, and the chapters move with them."""
    source = recordings[name]
    output = upscaled(source, tmp_path / f"out{suffix}", segmented)
    copied = tmp_path / f"copied{suffix}"  # ffmpeg's own, of the streams vsr keeps (MP4 holds no DVB subtitles)
    media.ffmpeg("-i", source, "-map", "0", *(["-map", "-0:s"] if suffix == ".mp4" else []), "-c", "copy", copied)

    found, expected = starts(output), starts(copied)
    source_start = media.packet_spans(source, "a:0")[0][0]  # the file's start: its audio's (ffprobe's, in µs)
    assert source_start > FAR and abs(source_start - starts(source)["file"]) < Fraction(1, 10**6)
    assert found.keys() == expected.keys() and "audio" in found and ("subtitle" in found) == (suffix == ".mkv")
    for kind, start in found.items():  # (the video 10.9 ms after the audio, in the containers' milliseconds)
        assert abs(start - expected[kind]) <= MILLISECOND and 0 <= start < 12 * MILLISECOND, kind
    assert found["file"] == found["audio"] == 0

    frames, source_frames = media.video_times(output), media.video_times(source)
    assert len(frames) == len(source_frames) == 50
    moved = {frame - (source_frame - source_start) for frame, source_frame in zip(frames, source_frames)}
    assert len(moved) == 1 and abs(moved.pop()) < MILLISECOND  # every frame by the same, the rest is rounding
    assert abs(duration(output) - duration(copied)) <= MILLISECOND  # (an MP4's chapter track's end, to 2.111 s)
    if suffix == ".mp4":
        video = media.ffprobe_streams_of(output, "v:0")[0]
        assert abs(Fraction(video["duration"]) - 2) <= MILLISECOND  # (the frames' span, not 30003.4 s)

    assert packet_hashes(output, "0:a") == packet_hashes(source, "0:a")
    assert media.packet_spans(output, "a:0")[0][0] == 0
    if suffix == ".mkv":
        assert packet_hashes(output, "0:s") == packet_hashes(source, "0:s") != []
    # Chapters move with the streams: one that began before the file's start begins at 0, as ffmpeg's do.
    assert chapters(output) == chapters(copied)
    if name == "mkv":
        assert chapters(output) == [(0, Fraction("0.611"), "One"), (Fraction("0.611"), Fraction("2.111"), "Two")]


@pytest.mark.parametrize("segmented", [False, True], ids=["one run", "segments"])
def test_an_mp4s_video_starts_after_its_audio_to_the_tick_not_the_millisecond(recordings, tmp_path, segmented):
    """The MP4 muxer writes where a stream starts (an edit list) in its movie timescale, 1/1000 s unless told: the
    recording's video, 10.9 ms after its audio, started at 10 ms (rounded down), every frame 0.9 ms early. Told
    the video's own unit (MPEG-TS's 1/90000), every frame keeps its time to the tick."""
    source = recordings["ts"]
    output = upscaled(source, tmp_path / "out.mp4", segmented)
    source_start = media.packet_spans(source, "a:0")[0][0]
    expected = [time - source_start for time in media.video_times(source)]
    assert expected[0] % MILLISECOND != 0  # (the muxer's default would round it)
    found = media.video_times(output)
    assert len(found) == len(expected) == 50
    assert max(abs(time - want) for time, want in zip(found, expected)) <= Fraction(1, 90000)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_that_starts_after_the_video_keeps_its_delay(tmp_path, suffix):
    source = recording(tmp_path / "late.ts", audio_delay=0.3)
    source_starts = starts(source)
    assert source_starts["file"] == source_starts["video"] > FAR
    output = upscaled(source, tmp_path / f"out{suffix}", segmented=False)
    found = starts(output)
    assert found["video"] == found["file"] == 0
    delay = source_starts["audio"] - source_starts["video"]  # 0.289 s: the TS muxer's audio offset, less the 0.3
    assert abs(found["audio"] - delay) <= MILLISECOND and delay > Fraction("0.28")
    assert media.video_times(output) == [time - source_starts["video"] for time in media.video_times(source)]
    assert packet_hashes(output, "0:a") == packet_hashes(source, "0:a")


def test_segments_of_a_recording_far_into_its_clock_resumed_make_the_file_of_one_run(tmp_path):
    """Segments keep the source's times in their files, and the join moves them: stopped after one segment and run
    again, the output is one run's (lossless: the same frames), from 0."""
    source = recording(tmp_path / "recording.ts")
    single = upscale_video(source, tmp_path / "single.mkv", options=OPTIONS, video=VideoOptions(codec="ffv1"))
    lossless = VideoOptions(codec="ffv1", segment_seconds=0.5)
    output = tmp_path / "resumed.mkv"
    with pytest.raises(KeyboardInterrupt):
        upscale_video_in_segments(source, output, options=OPTIONS, video=lossless, on_segment=Interrupt(after=1))
    assert not output.exists()
    again = Interrupt()
    result = upscale_video_in_segments(source, output, options=OPTIONS, video=lossless, on_segment=again)
    assert again.seen == [1, 2, 3] and result.times.extra["resumed"] == 1
    assert starts(output) == starts(single.output) and starts(output)["file"] == 0
    assert media.video_times(output) == media.video_times(single.output)
    assert media.packet_spans(output, "a:0") == media.packet_spans(single.output, "a:0")
    assert decoded_framemd5(output) == decoded_framemd5(single.output)
    assert packet_hashes(output, "0:a") == packet_hashes(source, "0:a")
