"""Training patches decoded by DALI (loader=dali), checked on the CPU: DALI's CPU decoder reads VP9, and for BT.601
clips its RGB equals PyAV's (tests/pipelines/test_decode_dali.py), so every patch can be found in PyAV's frames."""

import dataclasses
import importlib.util

import pytest
import torch

from tests.pipelines.clips import make_clip
from tests.training.test_trainer import tiny_config
from vsr.errors import InputError, OptionError
from vsr.pipelines.decode import open_decoder
from vsr.training.dali_patches import dali_error_reason
from vsr.training.data import dihedral
from vsr.training.degrade import downscale
from vsr.training.trainer import train

needs_dali = pytest.mark.skipif(importlib.util.find_spec("nvidia.dali") is None,
                                reason="DALI is not installed (the gpu extra)")

# What DALI 1.x raised for an H.264 video on its CPU decoder (which takes VP8, VP9 and MJPEG only).
DALI_UNSUPPORTED_CODEC = """Critical error when building pipeline:
Error in CPU operator `nvidia.dali.fn.experimental.readers.video`,
which was used in the pipeline definition with the following traceback:

  File "/work/main/training/dali_patches.py", line 74, in pipeline
    return fn.experimental.readers.video(

encountered:

Assert on "num_shards_ <= Size()" failed: The number of input samples: 0, needs to be at least equal to the \
requested number of shards: 1.
C++ context: [/opt/dali/dali/operators/reader/loader/loader.h:375]
Current pipeline object is no longer valid."""


def test_the_reason_of_a_dali_error_is_its_line_after_encountered():
    """Only DALI's header, "Critical error when building pipeline:", was kept: the reason was lost."""
    assert dali_error_reason(DALI_UNSUPPORTED_CODEC) == (
        "The number of input samples: 0, needs to be at least equal to the requested number of shards: 1.")
    assert dali_error_reason("Critical error in pipeline:\nCUDA out of memory\n") == "CUDA out of memory"
    assert dali_error_reason("") == "unknown error"


@needs_dali
def test_a_video_dali_cannot_decode_is_one_line_with_the_reason(tmp_path):
    from vsr.training.dali_patches import DaliVideoPatches

    h264 = make_clip(tmp_path / "a.mp4", frames=4, size=(64, 48))
    with pytest.raises(InputError, match=r"its CPU decoder takes VP8, VP9 and MJPEG.*: The number of input samples: 0"):
        DaliVideoPatches([h264], patch_size=32, scale=4, batch_size=2)


@pytest.fixture(scope="module")
def vp9_clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vp9")
    return [make_clip(folder / "a.webm", frames=10, size=(96, 64), codec="libvpx-vp9"),
            make_clip(folder / "b.webm", frames=10, size=(80, 72), codec="libvpx-vp9")]


def _frames(paths):
    frames = []
    for path in paths:
        with open_decoder(path, backend="pyav") as decoder:
            frames += [frame for batch in decoder.batches(16) for frame in batch.frames]
    return frames


def _found_in(hr: torch.Tensor, frames, scale: int) -> bool:
    """Whether `hr` (3×P×P in [0, 1]) is, under one of the 8 flips/turns, the crop of a frame on the LR grid."""
    size = hr.shape[-1]
    candidates = {tuple(flips): dihedral(hr, *flips) for flips in
                  [(h, v, t) for h in (False, True) for v in (False, True) for t in (False, True)]}
    for frame in frames:
        pixels = frame.float() / 255
        windows = pixels.unfold(1, size, scale).unfold(2, size, scale)  # 3×rows×cols×P×P
        for candidate in candidates.values():
            if (windows - candidate[:, None, None]).abs().amax(dim=(0, 3, 4)).min() == 0:
                return True
    return False


@needs_dali
def test_patches_are_crops_of_the_decoded_frames_and_lr_is_their_bicubic(vp9_clips):
    from vsr.training.dali_patches import DaliVideoPatches

    patches = DaliVideoPatches(vp9_clips, patch_size=32, scale=4, batch_size=6, patches_per_frame=4, seed=3)
    assert patches.frames == 20
    frames = _frames(vp9_clips)
    batches = [patches.next_batch() for _ in range(3)]
    for batch in batches:
        assert batch["hr"].shape == (6, 3, 32, 32) and batch["lr"].shape == (6, 3, 8, 8)
        for lr, hr in zip(batch["lr"], batch["hr"]):
            assert _found_in(hr, frames, scale=4)
            # Away from its edges, where the context of the whole frame matters, LR is the patch's own downscale.
            inner = downscale(hr[None], 4, quantize=True)[0][:, 2:-2, 2:-2]
            torch.testing.assert_close(lr[:, 2:-2, 2:-2], inner, rtol=0, atol=1 / 255 + 1e-6)
    assert not torch.equal(batches[0]["hr"], batches[1]["hr"])


@needs_dali
def test_training_from_dali_patches_runs_validates_and_exports(tmp_path, vp9_clips):
    config = tiny_config(tmp_path)
    config = dataclasses.replace(config, loader="dali", train_paths=tuple(str(p) for p in vp9_clips),
                                 val_paths=(str(vp9_clips[0]),), val_holdout=0, val_crop=32, frames_per_video=2)
    result = train(config)
    assert result.iteration == 4 and result.model_path.is_file()
    assert result.validation["psnr_y"] > 0


@needs_dali
def test_dali_loader_refuses_photos_and_holdouts(tmp_path, vp9_clips):
    config = tiny_config(tmp_path)  # photos in tmp_path/photos
    with pytest.raises(OptionError, match="loader=dali reads videos only"):
        train(dataclasses.replace(config, loader="dali"))
    with pytest.raises(OptionError, match="val_holdout keeps photos out"):
        train(dataclasses.replace(config, loader="dali", train_paths=(str(vp9_clips[0]),), val_holdout=1))
