"""Files cut short, said so from their containers' own sizes (pipelines/truncation.py), judged against whole files."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from tests.pipelines.media_fixtures import ffmpeg, ffprobe
from tests.processes import run_vsr
from vsr.pipelines.decode import open_decoder
from vsr.pipelines.truncation import cut_short

H264_B_FRAMES = ("-c:v", "libx264", "-bf", "2", "-g", "25")
CONTAINERS = {  # a name's suffix → how ffmpeg writes it: 3 s at 25 fps, a keyframe a second
    "mkv": H264_B_FRAMES,
    "webm": ("-c:v", "libvpx-vp9", "-g", "25"),
    "mp4": (*H264_B_FRAMES, "-movflags", "+faststart"),  # (its index at the end: cut, it does not open at all)
    "mov": (*H264_B_FRAMES, "-movflags", "+faststart"),
    "frag.mp4": (*H264_B_FRAMES, "-movflags", "frag_keyframe+empty_moov"),
    "avi": ("-c:v", "mpeg4", "-bf", "2", "-g", "25"),
    "ts": H264_B_FRAMES,
}
SAMPLES = Path(__file__).parents[2] / "samples"


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole")
    made = {}
    for suffix, codec_args in CONTAINERS.items():
        made[suffix] = folder / f"whole.{suffix}"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=3", *codec_args, made[suffix])
    return made


def video_packets(path: Path) -> list[dict]:
    """The video packets in the file's order: pts, position and size."""
    return ffprobe(path, "-select_streams", "v:0", "-show_entries", "packet=pts,pos,size,flags")["packets"]


def cut_at(path: Path, dest: Path, where: str) -> Path:
    """A copy of `path` cut `where`: "mid-GOP" a few bytes after the last packet shown after the one that follows it
    (a P-frame whose B-frames come after it in the file: they are lost, the frame shown last is not; without
    B-frames, or times to tell them by, the third last), "mid-packet" in the middle of the middle packet, "after a
    keyframe" one byte after the last keyframe's packet."""
    packets = video_packets(path)
    if where == "mid-GOP":
        pts = [int(packet.get("pts", -1)) for packet in packets]
        index = max([i for i in range(len(pts) - 1) if pts[i] > pts[i + 1] >= 0] or [len(pts) - 3])
        at = int(packets[index]["pos"]) + int(packets[index]["size"]) + 6  # (Matroska drops a block cut at its end)
    elif where == "mid-packet":
        middle = packets[len(packets) // 2]
        at = int(middle["pos"]) + int(middle["size"]) // 2
    else:
        last_key = [packet for packet in packets if "K" in packet["flags"]][-1]
        at = int(last_key["pos"]) + int(last_key["size"]) + 1
    dest.write_bytes(path.read_bytes()[:at])
    return dest


def decode(path: Path, backend: str = "pyav") -> list[int]:
    with open_decoder(path, backend=backend) as decoder:
        return [pts for batch in decoder.batches(8) for pts in batch.pts]


@pytest.mark.parametrize("where", ["mid-GOP", "mid-packet", "after a keyframe"])
@pytest.mark.parametrize("suffix", list(CONTAINERS))
def test_a_file_cut_short_says_so_in_one_line(whole, tmp_path, suffix, where, caplog):
    cut = cut_at(whole[suffix], tmp_path / f"cut.{suffix}", where)
    with caplog.at_level(logging.WARNING):
        pts = decode(cut)
    assert 0 < len(pts) < 75
    said = [record.getMessage() for record in caplog.records if "cut short" in record.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{cut}: cut short: ")
    if suffix == "ts":  # (no sizes: only a cut inside a packet shows)
        assert "ends inside an MPEG-TS packet" in said[0]
    else:
        missing = cut_short(cut).declared - cut.stat().st_size
        assert missing > 0 and f"({missing} bytes missing)" in said[0] and f"{len(pts)} " in said[0]


def test_a_matroska_file_cut_inside_a_gop_that_keeps_its_last_frame_says_so(whole, tmp_path, caplog):
    """Its last P-frame kept, the B-frames decoded after it lost: the frames reached the DURATION tag, and nothing
    was said of the 2 frames lost."""
    cut = cut_at(whole["mkv"], tmp_path / "cut.mkv", "mid-GOP")
    with caplog.at_level(logging.WARNING):
        pts = decode(cut)
    whole_pts = decode(whole["mkv"])
    assert len(pts) < len(whole_pts) == 75 and pts[-1] == whole_pts[-1]
    assert f"{cut}: cut short: it holds {cut.stat().st_size} bytes where its Matroska headers declare at least " \
        f"{whole['mkv'].stat().st_size} bytes" in caplog.text


def test_whole_files_are_not_said_to_be_cut_short(whole, tmp_path, caplog):
    """Every container whole, and files whose sizes are unknown (written to a pipe) or over-long (a tail after the
    last element), and the samples."""
    piped = tmp_path / "piped.mkv"
    ffmpeg("-i", whole["mkv"], "-c", "copy", "-f", "matroska", "-live", "1", piped)
    padded = tmp_path / "padded.ts"
    padded.write_bytes(whole["ts"].read_bytes() + bytes(188))  # (a whole packet more: not inside one)
    files = [*whole.values(), piped, padded, *sorted(SAMPLES.glob("*.mp4"))]
    assert [file for file in files if cut_short(file) is not None] == []
    with caplog.at_level(logging.WARNING):
        for file in files:
            decode(file)
    assert "cut short" not in caplog.text


@pytest.mark.skipif(importlib.util.find_spec("decord") is None, reason="decord is not installed")
def test_the_command_says_only_its_own_line_of_a_file_cut_short(whole, tmp_path):
    """decord's own FFmpeg printed "[matroska,webm @ 0x…] Read error" lines beside vsr's; a file cut short is left
    to PyAV, whose log vsr keeps. Upscaled in segments, the run says it too (each segment decodes a window)."""
    cut = cut_at(whole["mkv"], tmp_path / "cut.mkv", "mid-packet")
    for options in (["--decoder", "decord"], ["--segment-seconds", "1"]):
        result = run_vsr("upscale", cut, "-m", "bicubic", "-o", tmp_path / "out.mkv", "--overwrite", *options,
                         check=True)
        assert "[matroska" not in result.stderr and "Read error" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if f"{cut}: cut short: it holds" in line]
        assert len(lines) == 1, result.stderr
