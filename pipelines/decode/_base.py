"""What every decoder backend shares: the `Decoder` interface, the time range to decode, batching and colors."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from vsr.errors import InputError, OptionError
from vsr.pipelines.colour import untagged_matrix
from vsr.pipelines.frames import FrameBatch, VideoStreamInfo
from vsr.pipelines.truncation import cut_short

log = logging.getLogger("vsr.pipelines.decode")

# swscale's names (PyAV `reformat(src_colorspace=...)`) for the matrices a YUV stream may declare.
_SWS_MATRIX = {
    "bt709": "itu709",
    "bt470bg": "itu601",
    "smpte170m": "smpte170m",
    "smpte240m": "smpte240m",
    "fcc": "fcc",
    "bt2020nc": "bt2020",
}
_UNTAGGED = (None, "unknown", "unspecified", "reserved")


def rgb_matrix(info: VideoStreamInfo) -> str:
    """The YUV→RGB matrix decoders use for a stream: its own, or where it declares none the one players assume for
    its size (`colour.untagged_matrix`), which the encoder tags the output with.

    Returned in swscale's names ("itu709", "itu601", "smpte170m", "smpte240m", "fcc", "bt2020"). An encoder that
    wants colors to survive the round trip converts back with the same matrix, or tags what it used.
    """
    matrix = untagged_matrix(info.height) if info.color.matrix in _UNTAGGED else info.color.matrix
    return _SWS_MATRIX.get(matrix, "itu601")  # (RGB and gray streams: none applies)


def check_matrix(path: Path, info: VideoStreamInfo) -> None:
    """InputError for YUV that no decoder here converts right: YCgCo, BT.2020 constant luminance, ICtCp... (they
    were read as BT.601, every color wrong, under a warning of the encoder's about the tags)."""
    matrix = info.color.matrix
    if matrix in _UNTAGGED or matrix in _SWS_MATRIX or matrix == "gbr":
        return
    pixel_format = av.VideoFormat(info.pix_fmt)
    if pixel_format.is_rgb or pixel_format.has_palette or len(pixel_format.components) <= 2:  # (gray: luma alone)
        return
    raise InputError(f"{path}: its colors are coded with the {matrix} matrix, which vsr cannot convert to RGB (it "
                     f"converts BT.601, BT.709, BT.2020 non-constant luminance, SMPTE 240M and FCC)")


@dataclass(frozen=True)
class Selection:
    """Which frames to decode: pts in [start_pts, end_pts), at most max_frames of them (None: no limit)."""

    start_pts: int | None = None
    end_pts: int | None = None
    max_frames: int | None = None

    @classmethod
    def from_seconds(
        cls, info: VideoStreamInfo, first_pts: int, start: float | None, end: float | None, max_frames: int | None
    ) -> Selection:
        """`start` and `end` are seconds from the stream's first frame (`first_pts`); `end` is excluded."""
        if start is not None and not start >= 0:
            raise OptionError(f"start={start}: expected a time in seconds, 0 or more")
        if end is not None and not end > (start or 0):
            raise OptionError(f"end={end}: expected a time in seconds after start ({start or 0})")
        if max_frames is not None and max_frames < 1:
            raise OptionError(f"max_frames={max_frames}: expected 1 or more")
        return cls(
            start_pts=None if not start else first_pts + math.ceil(_exact(start) / info.time_base),
            end_pts=None if end is None else first_pts + math.ceil(_exact(end) / info.time_base),
            max_frames=max_frames,
        )

    def is_before(self, pts: int) -> bool:
        return self.start_pts is not None and pts < self.start_pts

    def is_after(self, pts: int) -> bool:
        return self.end_pts is not None and pts >= self.end_pts

    @property
    def is_everything(self) -> bool:
        return self.start_pts is None and self.end_pts is None and self.max_frames is None


class Decoder:
    """Frames of one video stream, in presentation order, each with its own pts. See the package docstring.

    A backend implements `_frames()`: H×W×3 RGB pictures with their pts, in presentation order, already restricted
    to `selection`; a picture is a host array (uint8, or uint16 rgb48 for deeper sources) or a tensor converted
    already (uint8, or float32 in [0, 1]; NVDEC's on the GPU). The base class batches them, caps them at
    `selection.max_frames` and moves them to `device`. A backend that decodes whole batches on a device (DALI)
    overrides `_batches` instead. A backend that reads the frames' closed captions (PyAV) puts them in `captions`
    by pts, and the batches carry them on (`FrameBatch.captions`).
    """

    backend = ""

    def __init__(self, path: Path, info: VideoStreamInfo, device: torch.device, selection: Selection):
        check_matrix(path, info)
        self.path = path
        self.info = info
        self.device = device
        self.selection = selection
        self.captions: dict[int, bytes] = {}  # pts → cc_data of decoded frames not yet batched (captions module)
        self._started = False

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        """Decode, yielding FrameBatches of `batch_size` frames (the last one may be shorter). One pass only.

        `frames` is N×3×H×W on `self.device`, stored channels-last (the layout decoders produce; call
        `.contiguous()` if a consumer needs NCHW memory): uint8 for 8-bit sources, float32 in [0, 1] for deeper ones.
        """
        if batch_size < 1:
            raise OptionError(f"batch_size={batch_size}: expected 1 or more")
        if self._started:
            raise RuntimeError(f"{self.path}: a decoder reads its frames once; open a new one to read them again")
        self._started = True
        return self._batches(batch_size)

    def _batches(self, batch_size: int) -> Iterator[FrameBatch]:
        limit = self.selection.max_frames
        arrays: list[np.ndarray] = []
        pts: list[int] = []
        count = 0
        for array, frame_pts in self._frames():
            arrays.append(array)
            pts.append(frame_pts)
            count += 1
            if len(arrays) == batch_size or count == limit:
                yield self._batch(arrays, pts)
                arrays, pts = [], []
                if count == limit:
                    return
        if arrays:
            yield self._batch(arrays, pts)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        """Single frames (3×H×W) with their pts."""
        for batch in self.batches(1):
            yield batch.frames[0], batch.pts[0]

    def _frames(self) -> Iterator[tuple[np.ndarray, int]]:
        raise NotImplementedError

    def _batch(self, pictures: list[np.ndarray | torch.Tensor], pts: list[int]) -> FrameBatch:
        if all(isinstance(picture, np.ndarray) for picture in pictures):
            frames = _rgb_tensor(np.stack(pictures))
            if self.device.type == "cuda":
                frames = frames.pin_memory().to(self.device, non_blocking=True)
            elif self.device.type != "cpu":
                frames = frames.to(self.device)
        else:  # converted by the backend already, on the GPU (NVDEC) or on the CPU
            frames = torch.stack([_rgb_tensor(picture).to(self.device) for picture in pictures])
        captions = {frame_pts: self.captions.pop(frame_pts) for frame_pts in pts if frame_pts in self.captions}
        return FrameBatch(frames=frames.permute(0, 3, 1, 2), pts=list(pts), captions=captions)

    def close(self) -> None:
        pass

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.info
        return f"<{type(self).__name__} {self.path} {info.width}×{info.height} {info.pix_fmt} on {self.device}>"

    def _warn_if_cut_short(self, first_pts: int, last_pts: int, decoded: int | None = None,
                           listed: int | None = None) -> None:
        """Warn, in one line, where the file is cut short (its container's sizes say so: `truncation.cut_short`), or
        where the frames end well before the duration the file declares (a damaged or cut file). `decoded` frames of
        the `listed` ones an index lists, where the backend counted them."""
        info = self.info
        decoded_until = float((last_pts - first_pts) * info.time_base + 1 / info.average_rate) \
            if info.average_rate else float((last_pts - first_pts) * info.time_base)
        cut = cut_short(self.path)
        if cut is not None:
            counted = f"{decoded} of the {listed} frames its index lists" if listed else f"{decoded} frames"
            # (a cut AVI's or MPEG-TS's duration is read from what is left: no more than the frames)
            lasts = f" of the {info.duration:.3f} s it declares" if (info.duration or 0) > decoded_until else ""
            log.warning("%s: cut short: %s; %s decoded, up to %.3f s%s", self.path, cut,
                        counted if decoded is not None else "the frames", decoded_until, lasts)
            return
        if listed and decoded is not None and decoded < listed - max(2, listed // 10):
            log.warning("%s: %d of the %d frames its index lists could be decoded: damaged or cut short?", self.path,
                        decoded, listed)
            return
        if info.duration is None or not info.average_rate:
            return
        # A stream's own end (Matroska's DURATION tag) promises every frame: a frame short is one missing (half a frame
        # allowed for a variable rate's last step, and a millisecond, Matroska's unit). A container's span may be
        # another stream's, and its durations guesses: a second allowed (a cut that lost less went unsaid).
        if info.duration_is_stream_end:
            slack = float(1 / (2 * info.average_rate)) + 0.001
        else:
            slack = max(1.0, float(3 / info.average_rate))
        if decoded_until < info.duration - slack and not self._held_to_the_end(first_pts, last_pts, slack):
            log.warning(
                "%s: the video ends at %.3f s but the file says it lasts %.3f s: damaged or cut short?",
                self.path, decoded_until, info.duration,
            )

    def _held_to_the_end(self, first_pts: int, last_pts: int, slack: float) -> bool:
        """Whether the frame decoded last is the stream's last, shown until the duration said, within `slack` seconds
        (a GIF's last delay: ten frames 0.1 s apart, the last held 3 s, were said to end at 1.29 s of 3.9)."""
        from vsr.pipelines.probe import last_frame_start, video_end

        time_base, end = self.info.time_base, video_end(self.path, self.info.index)
        return last_frame_start(self.path, self.info.index) == (last_pts - first_pts) * time_base \
            and end is not None and float(end - first_pts * time_base) >= self.info.duration - slack

    def _clock(self, pts: int | None) -> str:
        """A pts as seconds, for messages."""
        return "an unknown time" if pts is None else f"{float(pts * self.info.time_base):.3f} s (pts {pts})"


def _rgb_tensor(pictures: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N×)H×W×3 RGB as a tensor: uint8 as it is, rgb48 (uint16) as float in [0, 1] keeping the extra bits."""
    if isinstance(pictures, np.ndarray):
        if pictures.dtype == np.uint16:
            pictures = pictures.astype(np.float32) / np.float32(65535)
        pictures = torch.from_numpy(pictures)
    return pictures


def _exact(seconds: float) -> Fraction:
    # Fraction(0.2) is 0.2000000000000000111; through str() it is exactly 1/5, as the user meant.
    return Fraction(str(seconds)) if isinstance(seconds, float) else Fraction(seconds)

