"""Black bars (pipelines/crop.py): found in frames spread over a video, or given as FFmpeg's crop."""

import dataclasses

import av
import numpy as np
import pytest
import torch

from tests.pipelines import media_fixtures as media
from tests.pipelines.clips import frame_pattern, make_letterboxed_clip
from vsr.errors import OptionError
from vsr.pipelines.crop import Crop, cropped, detect_bars, parse_crop, resolve_crop
from vsr.pipelines.frames import FrameBatch
from vsr.pipelines.probe import probe


def test_crop_values():
    assert parse_crop("off") is None and parse_crop(None) is None
    assert parse_crop("AUTO") == "auto" and parse_crop(" 1920:800:0:140 ") == "1920:800:0:140"
    assert parse_crop("640:360") == "640:360" and parse_crop("crop=1920:800:0:140") == "1920:800:0:140"
    for bad in ("sometimes", "1920x800", "1920:800:0", "-1:5:0:0", "1:2:3:4:5", ""):
        with pytest.raises(OptionError, match="--crop takes auto, off, or WIDTH:HEIGHT:X:Y"):
            parse_crop(bad)


def test_a_given_crop_is_checked_against_the_frame(tmp_path):
    info = media.video_info(make_letterboxed_clip(tmp_path / "clip.mkv", frames=2))  # 64×48
    assert resolve_crop("64:28:0:10", tmp_path / "clip.mkv", info) == Crop(64, 28, 0, 10)
    assert resolve_crop("32:20", tmp_path / "clip.mkv", info) == Crop(32, 20, 16, 14)  # centered, as FFmpeg's
    assert resolve_crop("64:48:0:0", tmp_path / "clip.mkv", info) is None  # the whole frame: nothing cut
    assert resolve_crop("OFF", tmp_path / "clip.mkv", info) is None  # (API callers' words too)
    for value in ("64:28:1:10", "65:48", "0:10:0:0"):
        with pytest.raises(OptionError, match=f"clip.mkv: --crop {value} does not fit in its 64x48 frames"):
            resolve_crop(value, tmp_path / "clip.mkv", info)


@pytest.mark.parametrize("bars", [(10, 10, 0, 0), (0, 0, 12, 12), (6, 8, 4, 2)],
                         ids=["letterbox", "pillarbox", "all sides"])
def test_bars_are_found_exactly(tmp_path, bars):
    clip = make_letterboxed_clip(tmp_path / "clip.mkv", bars=bars)
    top, bottom, left, right = bars
    assert detect_bars(clip, media.video_info(clip)) == Crop(64, 28, left, top)


def test_odd_bars_leave_the_odd_line_in_the_picture(tmp_path):
    clip = make_letterboxed_clip(tmp_path / "clip.mkv", bars=(11, 9, 3, 0))
    assert detect_bars(clip, media.video_info(clip)) == Crop(65, 30, 2, 10)  # bars of 10, 8 and 2: even


def test_a_fade_from_black_and_a_subtitle_in_a_bar(tmp_path):
    faded = make_letterboxed_clip(tmp_path / "fade.mkv", black_until=12)  # the first half black: the rest decides
    assert detect_bars(faded, media.video_info(faded)) == Crop(64, 28, 0, 10)
    captioned = make_letterboxed_clip(tmp_path / "sub.mkv", caption_from=12)  # a subtitle line in the bottom bar
    assert detect_bars(captioned, media.video_info(captioned)) == Crop(64, 34, 0, 10)  # keeps it, and the top bar goes
    black = make_letterboxed_clip(tmp_path / "black.mkv", black_until=24)
    assert detect_bars(black, media.video_info(black)) is None
    whole = make_letterboxed_clip(tmp_path / "whole.mkv", bars=(0, 0, 0, 0))
    assert resolve_crop("auto", whole, media.video_info(whole)) is None


def test_a_video_with_alpha_is_left_whole_and_says_so(tmp_path, caplog):
    clip = make_letterboxed_clip(tmp_path / "clip.mkv")
    info = dataclasses.replace(media.video_info(clip), alpha=True)
    assert resolve_crop("auto", clip, info) is None
    assert "clip.mkv: --crop auto leaves a video with alpha whole; --crop WIDTH:HEIGHT:X:Y crops it" in caplog.text


def test_an_image_sequences_bars_are_found_in_its_files(tmp_path):
    clip = make_letterboxed_clip(tmp_path / "clip.mkv", bars=(4, 4, 8, 8), frames=6)
    (tmp_path / "frames").mkdir()
    media.ffmpeg("-i", clip, tmp_path / "frames" / "%03d.png")
    from vsr.pipelines.decode import open_decoder

    pattern = tmp_path / "frames" / "%03d.png"
    with open_decoder(pattern) as decoder:
        assert detect_bars(pattern, decoder.info) == Crop(64, 28, 8, 4)


def test_cropped_batches_keep_their_times_and_captions():
    frames = torch.from_numpy(np.stack([frame_pattern(index, (16, 12)) for index in range(3)])).permute(0, 3, 1, 2)
    batch = FrameBatch(frames, [0, 5, 9], captions={5: b"cc"})
    (out,) = cropped([batch], Crop(8, 4, 2, 6))
    assert out.pts == [0, 5, 9] and out.captions == {5: b"cc"}
    assert torch.equal(out.frames, frames[:, :, 6:10, 2:10])
    assert list(cropped([batch], None)) == [batch]


def test_frames_read_back_from_the_clip_are_its_pictures(tmp_path):
    """The judge of the tests above: the clip's frames are the picture inside black bars, as written."""
    clip = make_letterboxed_clip(tmp_path / "clip.mkv", bars=(6, 8, 4, 2), frames=2)
    with av.open(str(clip)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.array_equal(rgb[6:34, 4:68], frame_pattern(0, (64, 28)))
    assert not rgb[:6].any() and not rgb[34:].any() and not rgb[:, :4].any() and not rgb[:, 68:].any()


def test_bars_in_any_file_the_video_is_in(tmp_path):
    """Behind an audio stream, as a raw stream that cannot seek, with one keyframe after a black opening (in MP4 and
    MPEG-TS), under noise: the same bars."""
    clip = make_letterboxed_clip(tmp_path / "clip.mkv", frames=50, black_until=20)
    variants = {
        "audio first.mkv": ["-f", "lavfi", "-i", "sine=duration=2", "-i", clip, "-map", "0:a", "-map", "1:v",
                            "-c:v", "copy", "-c:a", "libopus"],
        "raw.h264": ["-i", clip, "-c:v", "libx264", "-qp", "0", "-f", "h264"],
        "one keyframe.mp4": ["-i", clip, "-c:v", "libx264", "-qp", "0", "-g", "1000", "-sc_threshold", "0"],
        # MPEG-TS seeks to any packet: with no keyframe after one, a sample decodes to nothing.
        "one keyframe.ts": ["-i", clip, "-c:v", "libx264", "-qp", "0", "-g", "1000", "-sc_threshold", "0"],
        "noisy.mkv": ["-i", clip, "-vf", "noise=alls=8:allf=t", "-c:v", "ffv1"],
    }
    for name, arguments in variants.items():
        media.ffmpeg(*arguments, tmp_path / name)
        info = probe(tmp_path / name).video  # as `vsr upscale` and `vsr probe` see the file
        assert detect_bars(tmp_path / name, info) == Crop(64, 28, 0, 10), name
