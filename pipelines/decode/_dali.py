"""DALI: NVDEC decoding into GPU memory, or DALI's own decoder on the CPU (`fn.experimental.readers.video`).

What DALI is trusted with, and what it is not (measured with DALI 2.4 and PyAV 18.1):
- Frames: DALI returns sequences of SEQUENCE_FRAMES frames with each frame's number in the stream (frames in
  presentation order). The frames wanted are given as a range of frame numbers (a `file_list` in "frames" format),
  so DALI seeks to the keyframe before the first one and stops after the last (its prefetching then decodes a
  sequence or two from the start of the range again, unused). The last sequence is padded (`pad_mode="constant"`,
  frame number -1) and the padding dropped: with `pad_mode="none"` DALI silently drops an incomplete last sequence.
- Timestamps: each frame's pts is the container's (a PyAV demux, packet pts sorted, as PyAVDecoder gives them), looked
  up by DALI's frame number. DALI's own timestamps (seconds from the first frame, from its own index) are checked
  against them; where they disagree, or DALI fails in the middle of the file, PyAV decodes the rest with a warning.
  DALI's CPU decoder stops with an error at a frame it refuses (PyAV then takes over), but DALI numbers frames as
  they come out of its decoder, so a decoder that silently lost a frame would shift the times of the frames after
  it: damaged files are better decoded with PyAV.
- Colors: DALI converts YUV to RGB with the BT.601 matrix whatever the stream declares (its CPU decoder through
  swscale's exact path, honouring the range: identical to PyAVDecoder, 0 levels, for BT.601 streams of either range;
  up to 30 levels off for BT.709). On the CPU, DALI therefore takes BT.601 streams only. On the GPU, DALI is asked for
  YCbCr (chroma upsampled bilinearly, no matrix applied) and `yuv_to_rgb` converts with the stream's own matrix and
  range on the device: within 2 levels of PyAVDecoder when DALI's upsampling is emulated on the CPU. (DALI 2.4's CPU
  decoder cannot give YCbCr: swscale fails with "bad dst image pointers".)
- Codecs: on the CPU VP8, VP9 and MJPEG (DALI refuses H.264/HEVC there); on the GPU also H.264, HEVC, MPEG-4 and
  AV1, except AV1 on Hopper (H100/H200), whose NVDEC lacks it. 8-bit only; 4:2:0 only on the GPU (NVDEC's NV12).

`DaliDecoder` raises `Unsuitable` where DALI cannot decode the file faithfully here; `open_decoder` then uses PyAV.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from vsr.pipelines.colour import yuv_to_rgb
from vsr.pipelines.decode._base import Decoder, Selection, log, rgb_matrix
from vsr.pipelines.decode._pyav import PyAVDecoder, Unsuitable, cuda_index, presentation_pts
from vsr.pipelines.frames import FrameBatch, VideoStreamInfo
from vsr.pipelines.probe import describe_video, first_frame_pts, open_input
from vsr.pipelines.truncation import cut_short

# Frames DALI decodes per pipeline run; batches of other sizes are cut from (or joined across) these sequences.
SEQUENCE_FRAMES = 8

# FFmpeg's codec names (ffprobe's codec_name) that DALI's readers decode, by where.
CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
GPU_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "mjpeg", "mpeg4", "av1"})


class DaliDecoder(Decoder):
    """Decodes with DALI: with NVDEC into the memory of a CUDA `device`, or with DALI's CPU decoder (module docstring).

    Frames reach torch through DLPack, without a copy through host memory; on the GPU they are converted to RGB there.
    """

    backend = "dali"

    def __init__(
        self,
        path: Path,
        *,
        device: torch.device,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
    ):
        info, _ = describe_video(path)
        with open_input(path) as container:
            stream = container.streams[info.index]
            first_pts = first_frame_pts(container, stream)
            codec = stream.codec_context.codec.canonical_name
            _check_stream(info, codec, device, several_videos=len(container.streams.video) > 1)
            try:
                pts = presentation_pts(container, stream)
            except av.error.FFmpegError as error:
                raise Unsuitable(f"the file cannot be read to its end ({error})") from error
        if cut_short(path) is not None:  # (its own FFmpeg would print its errors at the cut; PyAV's log is vsr's)
            raise Unsuitable("the file is cut short, and PyAV decodes damaged files")
        if pts is None:
            raise Unsuitable("the video packets carry no timestamps")
        if not pts:
            raise Unsuitable("the container holds no video packets")
        if pts[0] < 0:
            raise Unsuitable("the video has frames before time 0, which DALI skips")
        try:
            from nvidia.dali import fn, pipeline_def, types
        except ImportError as error:
            raise Unsuitable("DALI is not installed (pip install nvidia-dali-cuda130)") from error
        super().__init__(path, info, device, Selection.from_seconds(info, first_pts, start, end, max_frames))
        self._first_pts = first_pts
        self._pts = pts
        selected = [i for i, p in enumerate(pts) if not (self.selection.is_before(p) or self.selection.is_after(p))]
        self._numbers = selected[: self.selection.max_frames]  # consecutive frame numbers, in DALI's numbering
        self._folder: tempfile.TemporaryDirectory | None = None
        self._pipeline = None
        if not self._numbers:
            return
        # DALI reads a file list with whitespace-separated fields: a link with a plain name stands for `path`. DALI
        # reopens the file by that name while decoding, so both live until `close`.
        self._folder = tempfile.TemporaryDirectory(prefix="vsr-dali-")
        folder = Path(self._folder.name)
        link = folder / ("video" + path.suffix.lower() if path.suffix[1:].isalnum() else "video")
        link.symlink_to(path.resolve())
        file_list = folder / "files.txt"
        file_list.write_text(f"{link} 0 {self._numbers[0]} {self._numbers[-1] + 1}\n")
        on_gpu = device.type == "cuda"

        @pipeline_def(
            batch_size=1,
            num_threads=min(4, os.cpu_count() or 1),
            device_id=cuda_index(device),  # None: a CPU-only pipeline
        )
        def pipeline():
            return tuple(
                fn.experimental.readers.video(
                    device="gpu" if on_gpu else "cpu",
                    name="reader",
                    file_list=str(file_list),
                    file_list_format="frames",
                    file_list_include_end=False,
                    sequence_length=SEQUENCE_FRAMES,
                    pad_mode="constant",
                    enable_frame_num="sequence",
                    enable_timestamps=True,
                    image_type=types.YCbCr if on_gpu else types.RGB,
                )
            )

        try:
            self._pipeline = pipeline()
            self._pipeline.build()
            runs = self._pipeline.reader_meta("reader")["epoch_size"]
        except RuntimeError as error:
            self.close()
            raise Unsuitable(f"DALI cannot open it ({_dali_reason(error)})") from error
        if runs != math.ceil(len(self._numbers) / SEQUENCE_FRAMES):
            self.close()
            raise Unsuitable(f"DALI finds {runs} sequences of frames where the container has {len(self._numbers)}")

    def _batches(self, batch_size: int) -> Iterator[FrameBatch]:
        # Frames wait here as N×H×W×3 until a batch is full, then go out as N×3×H×W (channels-last).
        pending: list[torch.Tensor] = []
        pending_pts: list[int] = []
        for frames, pts in self._sequences():
            pending.append(frames)
            pending_pts += pts
            while len(pending_pts) >= batch_size:
                joined = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield FrameBatch(frames=joined[:batch_size].permute(0, 3, 1, 2), pts=pending_pts[:batch_size])
                pending, pending_pts = [joined[batch_size:]], pending_pts[batch_size:]
        if pending_pts:
            yield FrameBatch(frames=torch.cat(pending).permute(0, 3, 1, 2), pts=pending_pts)

    def _sequences(self) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """The selected frames as N×H×W×3 uint8 tensors on `device`, with their pts."""
        delivered = 0
        while delivered < len(self._numbers):
            try:
                video, _, numbers, seconds = self._pipeline.run()  # the label a file list gives each file: unused
            except RuntimeError as error:
                log.warning(
                    "%s: DALI failed at %s; PyAV decodes the rest (%s)",
                    self.path, self._clock(self._pts[self._numbers[delivered]]), _dali_reason(error),
                )
                yield from self._rest_with_pyav(delivered)
                return
            numbers = np.asarray(numbers.as_cpu()[0])
            seconds = np.asarray(seconds.as_cpu()[0])
            real = numbers >= 0  # the padding of the last sequence is numbered -1
            numbers, seconds = numbers[real].tolist(), seconds[real]
            disagreement = self._disagreement(numbers, seconds, delivered)
            if disagreement:
                log.warning("%s: %s; PyAV decodes the rest", self.path, disagreement)
                yield from self._rest_with_pyav(delivered)
                return
            frames = torch.from_dlpack(video[0])  # DALI's buffer, on DALI's device: no copy
            frames = frames[torch.from_numpy(real).to(frames.device)]  # a copy: DALI frees its buffer next run
            if frames.device.type == "cuda":
                # The copy reads DALI's buffer on this thread's stream, and DALI frees it in the order of its own
                # stream once the next run returns: waited for here, so that a copy held up cannot read memory DALI
                # already decodes into (cheap: the decoder's stream holds the copy and nothing else).
                torch.cuda.current_stream(frames.device).synchronize()
            if frames.device.type == "cuda":
                frames = yuv_to_rgb(frames, rgb_matrix(self.info), self.info.color.range == "pc")
            yield frames.to(self.device), [self._pts[n] for n in numbers]
            delivered += len(numbers)
        if self.selection.is_everything:
            self._warn_if_cut_short(self._first_pts, self._pts[-1])

    def _disagreement(self, numbers: list[int], seconds: np.ndarray, delivered: int) -> str | None:
        """Why DALI's frames, coming after `delivered` frames, cannot be given the container's times (None: they
        can)."""
        due = self._numbers[delivered : delivered + max(len(numbers), 1)]
        if numbers != due:
            return f"DALI gave frames {numbers[:3]}... where frames {due[:3]}... were due"
        time_base = float(self.info.time_base)
        for number, time in zip(numbers, seconds, strict=True):
            container_time = (self._pts[number] - self._pts[0]) * time_base
            if abs(time - container_time) > time_base / 2:
                return f"DALI dates the frame at {self._clock(self._pts[number])} at {time:.6f} s"
        return None

    def _rest_with_pyav(self, delivered: int) -> Iterator[tuple[torch.Tensor, list[int]]]:
        rest = self._numbers[delivered:]
        with PyAVDecoder(self.path, device=torch.device("cpu")) as pyav:
            pyav.selection = Selection(start_pts=self._pts[rest[0]], end_pts=self._pts[rest[-1]] + 1)
            for picture, pts in pyav._frames():
                yield torch.as_tensor(picture)[None].to(self.device), [pts]

    def close(self) -> None:
        self._pipeline = None  # DALI frees its decoder and buffers with the pipeline
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def _check_stream(info: VideoStreamInfo, codec: str, device: torch.device, *, several_videos: bool) -> None:
    """Raise Unsuitable where DALI cannot decode this stream faithfully on `device`."""
    if several_videos:
        raise Unsuitable("the file has several video streams and DALI may pick another one")
    if info.alpha:
        raise Unsuitable("the video has an alpha channel, which DALI does not decode")
    if info.bit_depth != 8 or not info.pix_fmt.startswith("yuv"):
        raise Unsuitable(f"the video is {info.pix_fmt} and DALI decodes 8-bit YUV only")
    if device.type == "cuda":
        if codec not in GPU_CODECS:
            raise Unsuitable(f"DALI's GPU decoder cannot decode {codec}")
        if codec == "av1" and torch.cuda.get_device_capability(device)[0] == 9:
            raise Unsuitable("NVDEC on Hopper GPUs (H100, H200) cannot decode AV1")
        if info.pix_fmt not in ("yuv420p", "yuvj420p"):
            raise Unsuitable(f"the video is {info.pix_fmt} and DALI's GPU decoder takes 4:2:0 only")
    else:
        if codec not in CPU_CODECS:
            raise Unsuitable(f"DALI's CPU decoder handles {', '.join(sorted(CPU_CODECS))} only, not {codec}")
        if (matrix := rgb_matrix(info)) not in ("itu601", "smpte170m"):
            raise Unsuitable(f"DALI's CPU decoder converts with BT.601 only and the video is {matrix}")


def _dali_reason(error: Exception) -> str:
    # DALI's errors run over many lines: the pipeline's traceback, then what went wrong after "encountered:".
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    after = lines[lines.index("encountered:") + 1 :] if "encountered:" in lines else lines
    return (after or ["unknown error"])[0][:200]
