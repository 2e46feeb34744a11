"""Repeated frames (pipelines/dedup.py): which frames count as repeats, and how batches of distinct pictures say
which picture each frame shows."""

import pytest
import torch

from vsr.errors import OptionError
from vsr.pipelines.dedup import Repeats, distinct_pictures, is_repeat, parse_dedup
from vsr.pipelines.frames import FrameBatch


def picture(value: int, size=(3, 32, 48)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(value)
    return torch.randint(0, 200, size, generator=generator, dtype=torch.uint8)


def test_dedup_values():
    assert parse_dedup("off") is None and parse_dedup(None) is None
    assert parse_dedup("exact") == 0 and parse_dedup("EXACT") == 0
    assert parse_dedup("4") == 4 and parse_dedup(2.5) == 2.5 and parse_dedup(0) == 0
    for bad in ("sometimes", "-1", "256", "nan", "inf", "", "4_0", "１", "1e2"):
        with pytest.raises(OptionError, match="--dedup takes exact, off, or a tolerance"):
            parse_dedup(bad)


def test_the_api_takes_levels_and_says_where_words_go():
    from vsr.pipelines.upscale import VideoOptions

    VideoOptions(dedup=4).validate()
    for bad in ("exact", True, -1):
        with pytest.raises(OptionError, match="dedup is None \\(off\\), 0 \\(exact\\) or a tolerance"):
            VideoOptions(dedup=bad).validate()


def test_exact_takes_only_equal_frames():
    frame = picture(1)
    assert is_repeat(frame.clone(), frame, 0)
    changed = frame.clone()
    changed[1, 31, 47] += 1  # one value, one level
    assert not is_repeat(changed, frame, 0)


def test_a_tolerance_takes_noise_but_not_a_small_change_anywhere():
    frame = picture(1).short()
    noise = torch.randint(-6, 7, frame.shape, generator=torch.Generator().manual_seed(2))
    noisy = (frame + noise).clamp(0, 255)
    assert is_repeat(noisy.to(torch.uint8), frame.to(torch.uint8), 4)  # ±6 levels of zero-mean noise: 3 on average
    assert not is_repeat(noisy.to(torch.uint8), frame.to(torch.uint8), 2)
    # A 2×2 change of 20 levels in the last, partial block (48 = 6 × 8 wide, 34 rows: the last blocks are 2 tall):
    # averaged over the block's own 8×2 pixels it is 5 levels, over a padded 8×8 block it would hide as 1.25.
    frame = picture(1, (3, 34, 48))
    moved = frame.clone()
    moved[0, 32:34, 46:48] += 20
    assert not is_repeat(moved, frame, 4)
    assert is_repeat(moved, frame, 5)


def test_a_tolerance_does_not_freeze_a_fade():
    frame = picture(1)
    brighter = frame + 1  # every value one level up: each block moves by 1, the frame's mean too
    assert is_repeat(brighter, frame, 8)  # 1 ≤ 8 / 8
    assert not is_repeat(brighter, frame, 4)  # a fade of one level a frame is not noise at this tolerance


def test_deep_frames_are_judged_in_levels_of_255():
    frame = picture(1).float() / 255
    assert is_repeat(frame + 3 / 255 * (torch.arange(48) % 2 * 2 - 1), frame, 4)  # ±3 levels, alternating
    assert not is_repeat(frame + 3 / 255 * (torch.arange(48) % 2 * 2 - 1), frame, 2)


def batches_of(frames: list[torch.Tensor], size: int, captions: dict[int, bytes] | None = None):
    for start in range(0, len(frames), size):
        pts = list(range(start, min(start + size, len(frames))))
        yield FrameBatch(torch.stack(frames[start:start + size]), pts,
                         {p: text for p, text in (captions or {}).items() if p in pts})


def test_batches_hold_each_picture_once_and_every_frame_in_order():
    drawings = [picture(value) for value in range(5)]
    held = [0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4]  # the drawing each frame shows
    frames = [drawings[drawing].clone() for drawing in held]
    repeats = Repeats()
    out = list(distinct_pictures(batches_of(frames, 5, {4: b"cc4", 9: b"cc9"}), 2, 0, repeats))
    assert repeats.frames == len(held) - len(drawings)
    assert [len(batch.frames) for batch in out] == [2, 2, 1]  # batches of 2 pictures, decoded 5 frames at a time
    assert [p for batch in out for p in batch.pts] == list(range(len(held)))
    shown = [batch.frames[index] for batch in out for index in batch.pictures()]
    assert all(torch.equal(shown[i], drawings[held[i]]) for i in range(len(held)))
    # The repeats of a batch's last picture stay with it; each frame keeps its captions.
    assert [(batch.pts, batch.shows, batch.captions) for batch in out] == [
        ([0, 1, 2, 3, 4], [0, 0, 1, 1, 1], {4: b"cc4"}), ([5, 6, 7], [0, 1, 1], {}),
        ([8, 9, 10, 11], [0] * 4, {9: b"cc9"})]


def test_a_resumed_run_upscales_again_a_picture_held_across_the_cut():
    from vsr.pipelines.upscale import skip_frames

    drawings = [picture(value) for value in range(3)]
    held = [0, 0, 1, 1, 1, 2]
    batches = distinct_pictures(batches_of([drawings[drawing].clone() for drawing in held], 4), 2, 0)
    repeats = Repeats()
    first, second = skip_frames(batches, 3, repeats)  # frames 0-2 were written by the run cut short, in drawing 1
    assert (first.pts, first.shows, second.pts, second.shows) == ([3, 4], [0, 0], [5], [0])
    assert torch.equal(first.frames, drawings[1][None]) and torch.equal(second.frames, drawings[2][None])
    assert repeats.frames == 1  # frame 4 (frame 1 was a repeat too, of the run cut short; frame 3 is upscaled)


def test_each_frame_is_compared_with_the_last_picture_upscaled_not_the_frame_before():
    base = picture(1).short()
    frames = []
    for step in range(6):  # one 8×8 block creeping up 3 levels a frame: each frame is within 4 of the one before
        frame = base.clone()
        frame[:, :8, :8] += 3 * step
        frames.append(frame.to(torch.uint8))
    out = list(distinct_pictures(batches_of(frames, 6), 8, 4))
    assert out[0].shows == [0, 0, 1, 1, 2, 2]  # 3 ≤ 4 is a repeat, 6 is not: a new picture every second frame


def test_off_passes_the_batches_on_as_they_are():
    batches = list(batches_of([picture(1)] * 4, 2))
    assert list(distinct_pictures(iter(batches), 2, None)) == batches


# ---- on a CUDA device (bench/device_check.py) -----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_same_frames_repeat_and_are_written_as_on_the_cpu(tmp_path, tiny_rrdbnet_checkpoint):
    """H.264 decoded onto the GPU (NVDEC) is compared there, on the decoder's stream: the same frames repeat as on
    the CPU (x264 decodes many held frames exactly), and the same frames come out (fp32; within 2 levels: TF32
    convolutions and the color conversion on the GPU)."""
    import av

    from tests.pipelines.clips import HELD, make_held_clip
    from vsr.pipelines.upscale import UpscaleOptions, VideoOptions, upscale_video

    clip = make_held_clip(tmp_path / "held.mp4", noise=3, codec="libx264")
    outputs, repeated = {}, {}
    for device in ("cpu", "cuda"):
        options = UpscaleOptions(model=str(tiny_rrdbnet_checkpoint), device=device, precision="fp32", batch_size=2)
        result = upscale_video(clip, tmp_path / f"{device}.mkv", options=options,
                               video=VideoOptions(codec="ffv1", segment_seconds=None))
        repeated[device] = result.times.extra["repeated_frames"]
        with av.open(str(result.output)) as container:
            outputs[device] = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert repeated["cuda"] == repeated["cpu"] > 0 and len(outputs["cuda"]) == len(HELD)
    for on_gpu, on_cpu in zip(outputs["cuda"], outputs["cpu"], strict=True):
        assert abs(on_gpu.astype(int) - on_cpu.astype(int)).max() <= 2
