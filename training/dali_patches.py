"""Training patches straight from videos with NVIDIA DALI: frames decoded by NVDEC into GPU memory, cut into
(LR, HR) pairs where they are, with no frame pool in host memory and no DataLoader workers.

    patches = DaliVideoPatches(["a.mp4", "b.mkv"], patch_size=128, scale=4, batch_size=16, device="cuda:0")
    for batch in patches:   # endless: dict(lr=16×3×32×32, hr=16×3×128×128), float32 in [0, 1], on the device
        ...

`vsr train RECIPE --data videos/ --set loader=dali` trains from it (videos only). DALI's reader picks frames at
random across the videos (shuffled through a buffer of decoded frames); each frame gives `patches_per_frame` patches
at random positions on the LR grid, made exactly as `PatchDataset` makes them (`data.patch_pair`: MATLAB bicubic
with real surroundings, 8-bit LR) and flipped and turned at random (`data.dihedral`), by torch on the frame's device.

Where DALI cannot go: its CPU decoder (a pipeline without a GPU) takes VP8, VP9 and MJPEG only, which is what the
tests use; on a GPU, NVDEC takes H.264, HEVC, VP8/9, AV1 (not on Hopper) and MJPEG. DALI's own YUV→RGB uses BT.601
whatever the stream says, so the colours of BT.709 videos are slightly off; HR and LR are off alike, which a model
learning detail does not mind much, but PatchDataset (PyAV, exact colours) is the reference. Unlike PatchDataset, the
patches depend on DALI's shuffling and are not reproduced by a resume.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from vsr.errors import InputError, OptionError
from vsr.training.data import dihedral, patch_pair

# Decoded frames DALI keeps to draw its random ones from: more mixes the videos better, each costs a frame of memory.
SHUFFLE_BUFFER = 64


class DaliVideoPatches:
    """Endless batches of random (LR, HR) patches from `videos`, decoded by DALI on `device` (module doc).

    With several processes (DDP) each takes `shard` of `shards` of the videos' frames and its own random patches.
    """

    def __init__(
        self,
        videos: Sequence[str | os.PathLike],
        *,
        patch_size: int = 128,
        scale: int = 4,
        batch_size: int = 16,
        patches_per_frame: int = 4,
        device: str | torch.device = "cpu",
        seed: int = 0,
        shard: int = 0,
        shards: int = 1,
    ):
        try:
            from nvidia.dali import fn, pipeline_def
        except ImportError as error:
            raise OptionError("loader=dali needs NVIDIA DALI: pip install 'vsr[gpu]'") from error
        if not videos:
            raise InputError("loader=dali: no videos to read patches from")
        if patch_size % scale or batch_size < 1 or patches_per_frame < 1:
            raise OptionError(f"patch_size {patch_size} must be a multiple of scale {scale}; batch_size and "
                              f"patches_per_frame at least 1")
        self.patch_size, self.scale, self.batch_size = patch_size, scale, batch_size
        self.patches_per_frame = min(patches_per_frame, batch_size)
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + shard)
        on_gpu = self.device.type == "cuda"
        device_id = (self.device.index or 0) if on_gpu else None  # None: a CPU-only pipeline
        files = [str(Path(video).resolve()) for video in videos]

        @pipeline_def(batch_size=-(-batch_size // self.patches_per_frame), num_threads=min(4, os.cpu_count() or 1),
                      device_id=device_id, seed=seed + shard)
        def pipeline():
            return fn.experimental.readers.video(
                device="gpu" if on_gpu else "cpu", filenames=files, sequence_length=1, random_shuffle=True,
                initial_fill=SHUFFLE_BUFFER, shard_id=shard, num_shards=shards, name="reader",
            )

        self._pipeline = pipeline()
        try:
            self._pipeline.build()
            self.frames = self._pipeline.reader_meta("reader")["epoch_size"]  # in this shard
        except RuntimeError as error:
            raise InputError(f"DALI cannot read the training videos (its CPU decoder takes VP8, VP9 and MJPEG; NVDEC "
                             f"H.264, HEVC, VP8/9, AV1 and MJPEG): {dali_error_reason(str(error))[:200]}") from error

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def next_batch(self) -> dict[str, torch.Tensor]:
        (sequences,) = self._pipeline.run()
        lr, hr = [], []
        for index in range(len(sequences)):
            # One frame, 1×H×W×3 uint8 in DALI's buffer (no copy); the patches below are new tensors, so DALI may
            # reuse its buffer on the next run.
            frame = torch.from_dlpack(sequences[index])[0].permute(2, 0, 1).to(self.device)
            for _ in range(min(self.patches_per_frame, self.batch_size - len(hr))):
                pair = self._random_pair(frame)
                lr.append(pair[0])
                hr.append(pair[1])
        return {"lr": torch.stack(lr).contiguous(), "hr": torch.stack(hr).contiguous()}

    def _random_pair(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = frame.shape[-2:]
        size, scale = self.patch_size, self.scale
        if height < size or width < size:
            raise InputError(f"a {width}×{height} video frame is smaller than the {size}×{size} patch")
        rows, cols = (height - size) // scale + 1, (width - size) // scale + 1
        top = int(torch.randint(rows, (1,), generator=self.generator)) * scale
        left = int(torch.randint(cols, (1,), generator=self.generator)) * scale
        flips = (torch.rand(3, generator=self.generator) < 0.5).tolist()
        lr, hr = patch_pair(frame, top, left, size, scale)
        return dihedral(lr, *flips), dihedral(hr, *flips)


def dali_error_reason(message: str) -> str:
    """The line of a DALI error that says what went wrong. DALI opens with a header ("Critical error when building
    pipeline:"), names the operator and where the pipeline defined it, then writes "encountered:" and the reason
    (an `Assert on "..." failed: ` before it dropped), then its C++ source line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "encountered:" in lines[:-1]:
        reason = lines[lines.index("encountered:") + 1]
    else:  # another layout: its first line that is not a header
        reason = next((line for line in lines if not line.endswith(":")), lines[0] if lines else "unknown error")
    return re.sub(r'^Assert on ".*?" failed: ', "", reason)
