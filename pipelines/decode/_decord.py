"""decord: a faster CPU decoder than PyAV (see FIELD-NOTES), trusted for pixels only.

decord's frame counts and timestamps are not reliable on every file, so the timestamps come from a PyAV demux of the
same stream (packet pts sorted into presentation order), and decord is used only when its frame count equals that
packet count. Where decord cannot be trusted (more than 8 bits, rotation, several video streams, no timestamps,
MPEG-TS/PS, AVI and ASF files, open GOPs, frames sharing a time, untagged HD) `Unsuitable` says why and `open_decoder`
uses PyAV instead. If decord fails in the middle of a file (a damaged packet), PyAV takes over from the first frame
decord could not deliver.

Colors: decord converts to RGB inside its own FFmpeg with swscale's fast path. On the CPU it honours the stream's
matrix and range (on the GPU its kernel knows BT.601 limited range only: other videos go to PyAV), but flat colors
land up to 3 levels from the exact values and chroma is not interpolated (each chroma sample covers its 2×2 pixels),
where the PyAV backend is within 1 level and interpolates chroma.

On a CUDA device decord is asked to decode with NVDEC (`decord.gpu(index)`). The PyPI wheel is built without CUDA
and refuses ("CUDA not enabled"): decord then decodes on the CPU, with a warning. decord's NVDEC frames come back
through host memory (`asnumpy`) like its CPU frames: a CUDA build of decord is rare enough that keeping its frames on
the GPU is not worth a second code path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from vsr.pipelines.decode._base import Decoder, Selection, log, rgb_matrix
from vsr.pipelines.decode._pyav import PyAVDecoder, Unsuitable, cuda_index, presentation_pts
from vsr.pipelines.probe import describe_video, first_frame_pts, open_input
from vsr.pipelines.truncation import cut_short

# Frames asked from decord at a time (decord returns them as one array).
CHUNK_FRAMES = 8
# Containers in which decord's frames came from the wrong place although its frame count was right (MPEG-TS: a GOP
# later; program streams, AVI and ASF with B-frames, from --start: shifted), checked against PyAV frame by frame.
_UNTRUSTED_CONTAINERS = {"mpegts", "mpeg", "avi", "asf"}


class DecordDecoder(Decoder):
    backend = "decord"

    def __init__(
        self,
        path: Path,
        *,
        device: torch.device,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
    ):
        try:
            import decord
        except ImportError as error:
            raise Unsuitable("decord is not installed (pip install decord)") from error
        info, _ = describe_video(path)
        with open_input(path) as container:
            stream = container.streams[info.index]
            first_pts = first_frame_pts(container, stream)
            if info.bit_depth > 8:
                raise Unsuitable(f"the video is {info.bit_depth}-bit and decord decodes 8 bits only")
            if info.alpha:
                raise Unsuitable("the video has an alpha channel, which decord does not decode")
            if info.rotation:
                raise Unsuitable("the video carries a rotation, which decord applies to the frames")
            if device.type == "cuda" and (rgb_matrix(info) not in ("itu601", "smpte170m")
                                          or info.color.range == "pc"):
                # (decord's src/improc/improc.cu: one constant BT.601 matrix, Y from 16; its CPU path is swscale's)
                raise Unsuitable(f"decord's GPU conversion is BT.601 limited range only, and the video is "
                                 f"{info.color.matrix or 'BT.601'} {'full' if info.color.range == 'pc' else 'limited'}"
                                 " range")
            if info.color.matrix is None and rgb_matrix(info) == "itu709":
                # (swscale, in decord's FFmpeg, takes BT.601 for a stream that declares no matrix)
                raise Unsuitable("the video declares no color matrix, and decord would take BT.601 where players "
                                 "take BT.709 at its size")
            if len(container.streams.video) > 1:
                raise Unsuitable("the file has several video streams and decord may pick another one")
            if _UNTRUSTED_CONTAINERS.intersection(container.format.name.split(",")):
                raise Unsuitable(f"decord finds the wrong frames in {container.format.long_name} files (its seeking "
                                 "and indexing lose their place there)")
            leading: list[int] = []
            try:
                pts = presentation_pts(container, stream, leading)
            except av.error.FFmpegError as error:
                raise Unsuitable(f"the file cannot be read to its end ({error})") from error
        if cut_short(path) is not None:  # (its own FFmpeg would print its errors at the cut; PyAV's log is vsr's)
            raise Unsuitable("the file is cut short, and PyAV decodes damaged files")
        if pts is None:
            raise Unsuitable("the video packets carry no timestamps")
        if len(set(pts)) < len(pts):  # (PyAV drops such frames, which no muxer takes, and says so)
            raise Unsuitable("some frames share their time with another frame")
        if leading:
            raise Unsuitable("the video has open GOPs (frames shown before the keyframe they follow), whose frames "
                             "decord gives from the wrong place when it seeks")
        try:
            reader = open_reader(path, device)
        except decord.DECORDError as error:
            raise Unsuitable(f"decord cannot open it ({_first_line(error)})") from error
        if len(reader) != len(pts):
            raise Unsuitable(f"decord counts {len(reader)} frames where the container has {len(pts)}")
        super().__init__(path, info, device, Selection.from_seconds(info, first_pts, start, end, max_frames))
        self._decord_error = decord.DECORDError
        self._first_pts = first_pts
        self._reader = reader
        self._pts = pts
        selected = [i for i, p in enumerate(pts) if not (self.selection.is_before(p) or self.selection.is_after(p))]
        self._indices = selected[: self.selection.max_frames]

    def _frames(self) -> Iterator[tuple[np.ndarray, int]]:
        for first in range(0, len(self._indices), CHUNK_FRAMES):
            chunk = self._indices[first : first + CHUNK_FRAMES]
            try:
                arrays = self._reader.get_batch(chunk).asnumpy()
            except self._decord_error as error:
                log.warning(
                    "%s: decord failed at %s; PyAV decodes the rest (%s)",
                    self.path, self._clock(self._pts[chunk[0]]), str(error).splitlines()[-1][:200],
                )
                yield from self._rest_with_pyav(self._pts[chunk[0]])
                return
            for index, array in zip(chunk, arrays):
                yield array, self._pts[index]
        if self.selection.is_everything:
            self._warn_if_cut_short(self._first_pts, self._pts[-1])

    def _rest_with_pyav(self, start_pts: int) -> Iterator[tuple[np.ndarray, int]]:
        with PyAVDecoder(self.path, device=torch.device("cpu")) as rest:
            rest.selection = Selection(start_pts=start_pts, end_pts=self.selection.end_pts)
            yield from rest._frames()

    def close(self) -> None:
        self._reader = None  # decord frees its decoder with the reader


def open_reader(path: Path, device: torch.device):
    """A decord VideoReader for `path`: on the GPU of a CUDA `device` where decord can decode there, else on the CPU.

    decord builds without CUDA (the PyPI wheel) refuse a GPU context when the reader is made, not when the context
    is; then the reader is made on the CPU, with one warning. Raises decord.DECORDError where decord cannot open it.
    """
    import decord

    if device.type == "cuda":
        index = cuda_index(device)
        try:
            return decord.VideoReader(str(path), ctx=decord.gpu(index), num_threads=0)
        except decord.DECORDError as error:
            log.warning("%s: decord cannot decode on cuda:%d, decoding on the CPU (%s)", path, index, _reason(error))
    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)


def _reason(error: Exception) -> str:
    # decord's messages start with a timestamp and a source location: "[07:34:29] .../video_reader.cc:167: CUDA ..."
    return _first_line(error).rsplit(": ", 1)[-1]


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [""])[0]
