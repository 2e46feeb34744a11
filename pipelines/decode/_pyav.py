"""The reference decoder: PyAV (FFmpeg's libavcodec), and what the other backends borrow from it.

On a CUDA device PyAV decodes with NVDEC (`av.codec.hwaccel.HWAccel("cuda")`, software fallback allowed, frames
downloaded to host memory and converted exactly as in software); where NVDEC cannot be had (no GPU, a codec NVDEC
lacks) it decodes in software. The other backends take their timestamps from `presentation_pts` and say with
`Unsuitable` why a file is left to PyAV.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import torch
from av.codec.hwaccel import HWAccel
from av.video.reformatter import Interpolation, VideoReformatter

from vsr.errors import InputError
from vsr.pipelines.decode._base import Decoder, Selection, log, rgb_matrix
from vsr.pipelines.frames import VideoStreamInfo
from vsr.pipelines.probe import find_video_stream, open_input, video_stream_info

# swscale's default YUV→RGB path is a fast fixed-point one: measured with PyAV 18.1 on flat BT.709 colors, 2/3 of
# them come out 2-3 levels off. Accurate rounding with full chroma interpolation is within 1 level of the exact
# equations, and costs ~10% of decoding speed at 640×360 (more for the conversion alone).
EXACT_CONVERSION = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


class Unsuitable(Exception):
    """A backend other than PyAV cannot decode this file faithfully here; the message says why, PyAV decodes it."""


class PyAVDecoder(Decoder):
    """Decodes with PyAV, converting YUV to RGB with the stream's own matrix and range.

    Damaged input is handled like ffmpeg does: concealed frames come out with a warning, decoding errors are logged
    and decoding goes on, and each packet that yields no frame is named by its time. Every frame keeps the pts the
    decoder gave it, so a lost frame never shifts the timing of the ones after it.

    On a CUDA `device` the packets are decoded by NVDEC when it can be had (`nvdec` says whether it was); the frames
    still come back through host memory and are copied to `device` batch by batch.
    """

    backend = "pyav"

    def __init__(
        self,
        path: Path,
        *,
        device: torch.device,
        start: float | None = None,
        end: float | None = None,
        max_frames: int | None = None,
    ):
        container, stream, info = open_for_decoding(path, nvdec_device=cuda_index(device))
        self.nvdec = stream.codec_context.is_hwaccel
        self._first_pts = stream.start_time or 0
        super().__init__(path, info, device, Selection.from_seconds(info, self._first_pts, start, end, max_frames))
        stream.thread_type = "AUTO"
        self._container = container
        self._stream = stream
        self._reformatter = VideoReformatter()  # one swscale context for all frames, not one per frame
        self._resized = False
        self._conversion = dict(
            format="rgb24" if info.bit_depth <= 8 else "rgb48le",
            width=info.width,
            height=info.height,
            src_colorspace=rgb_matrix(info.color),
            src_color_range="MPEG" if info.color.range == "tv" else "JPEG",
            dst_color_range="JPEG",
            interpolation=EXACT_CONVERSION,
        )
        # Streams without timestamps (raw .h264) get them from the frame rate, frame by frame.
        rate = info.average_rate or 25
        self._pts_step = max(round(1 / (rate * info.time_base)), 1)

    def _frames(self) -> Iterator[tuple[np.ndarray, int]]:
        selection = self.selection
        if selection.start_pts is not None and selection.start_pts > self._first_pts:
            # Land on the keyframe at or before start, decode forward, drop the frames before it.
            try:
                self._container.seek(selection.start_pts, stream=self._stream, backward=True)
            except av.error.FFmpegError as error:
                log.info("%s: cannot seek (%s); decoding from the start", self.path, _reason(error))
        count, last_pts = 0, None
        for frame in self._decoded():
            pts = frame.pts
            if pts is None:
                pts = self._first_pts if last_pts is None else last_pts + self._pts_step
            last_pts = pts
            if selection.is_before(pts):
                continue
            if selection.is_after(pts):
                return
            count += 1
            yield self._to_array(frame), pts
        if selection.is_everything:
            self._check_complete(count, last_pts)

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The decoder's frames, put in presentation order; damage is logged and decoding goes on."""
        order = PresentationOrder(self._report_lost)
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as error:
                log.warning("%s: reading stopped, the file is damaged or cut short (%s)", self.path, _reason(error))
                try:
                    frames = self._stream.codec_context.decode(None)  # the frames still inside the decoder
                except av.error.FFmpegError:
                    frames = []
                yield from order.push(self._checked(frames))
                break
            if packet.pts is not None and packet.size and not packet.is_discard:
                order.expect(packet.pts)
            try:
                frames = packet.decode()
            except av.error.FFmpegError as error:
                # With frame threads the error may belong to an earlier packet: `order` names the lost frames.
                log.warning(
                    "%s: decoding error near %s, going on (%s)", self.path, self._clock(packet.pts), _reason(error)
                )
                continue
            yield from order.push(self._checked(frames))
        yield from order.finish()

    def _checked(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        for frame in frames:
            if frame.is_corrupt:
                log.warning("%s: the frame at %s is damaged; errors concealed", self.path, self._clock(frame.pts))
        return frames

    def _report_lost(self, lost: list[int], why: str) -> None:
        lost = [pts for pts in lost if not self.selection.is_before(pts) and not self.selection.is_after(pts)]
        if lost:
            times = ", ".join(self._clock(pts) for pts in lost[:5]) + (", ..." if len(lost) > 5 else "")
            log.warning("%s: %d frame(s) %s, at %s", self.path, len(lost), why, times)

    def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
        if (frame.width, frame.height) != (self.info.width, self.info.height) and not self._resized:
            self._resized = True  # said once: a stream that changes size usually stays at the new one
            log.warning(
                "%s: the frame at %s is %d×%d, the stream %d×%d; scaling it to the stream's size",
                self.path, self._clock(frame.pts), frame.width, frame.height, self.info.width, self.info.height,
            )
        return self._reformatter.reformat(frame, **self._conversion).to_ndarray()

    def _check_complete(self, count: int, last_pts: int | None) -> None:
        if count == 0:
            raise InputError(f"{self.path}: no frame of video stream #{self.info.index} could be decoded")
        self._warn_if_cut_short(self._first_pts, last_pts)

    def close(self) -> None:
        self._container.close()


def open_for_decoding(
    path: Path, *, nvdec_device: int | None
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, VideoStreamInfo]:
    """Open the video stream of `path` for decoding: the container, the stream and its description.

    With `nvdec_device` (a CUDA device index) the container decodes with NVDEC on that GPU, falling back to
    software inside FFmpeg for what NVDEC cannot decode; where NVDEC cannot be opened at all (no GPU, no driver:
    `av.open` raises PermissionError) it is opened for software decoding, with one info line. The description is
    always read from a software container: with NVDEC the codec context's pixel format is "cuda", not the stream's.
    """
    container = open_input(path)
    try:
        stream = find_video_stream(container, path)
        info, _ = video_stream_info(container, stream)
    except BaseException:
        container.close()
        raise
    if nvdec_device is None:
        return container, stream, info
    nvdec = HWAccel(device_type="cuda", device=str(nvdec_device), allow_software_fallback=True)
    try:
        accelerated = av.open(str(path), "r", hwaccel=nvdec)
    except (av.error.FFmpegError, OSError) as error:
        log.info("%s: NVDEC is not available on cuda:%d (%s); decoding in software", path, nvdec_device, _reason(error))
        return container, stream, info
    container.close()
    stream = accelerated.streams[info.index]
    if stream.codec_context.is_hwaccel:
        log.debug("%s: decoding with NVDEC on cuda:%d", path, nvdec_device)
    else:
        log.info("%s: NVDEC cannot decode %s; decoding in software", path, info.codec)
    return accelerated, stream, info


def presentation_pts(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> list[int] | None:
    """Every packet's pts of `stream`, in presentation order (one per frame), or None if some packet has none.

    Reads the whole stream (demuxing only, no decoding); raises av.error.FFmpegError where the file cannot be read.
    """
    pts = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:  # the flush packet at the end; packets the decoder drops
            continue
        if packet.pts is None:
            return None
        pts.append(packet.pts)
    return sorted(pts)


class PresentationOrder:
    """Puts decoded frames in presentation order and finds the frames the decoder lost.

    A healthy decoder already returns frames in presentation order: each new frame has the smallest pts of the
    packets sent whose frame has not come out, and passes straight through. Around damage, decoders return frames
    out of order, or never return some (frame threads can drop a damaged frame without an error reaching the
    caller). Then frames are held, up to `window` of them, until the earlier ones arrive; past that, the missing
    ones are reported lost. A frame that arrives after a later one was released cannot be placed and is dropped,
    reported too, so the pts that go out only ever increase.
    """

    def __init__(self, report: Callable[[list[int], str], None], window: int = 8):
        self.report = report
        self.window = window
        self.expected: set[int] = set()  # pts of packets sent to the decoder whose frame has not come out
        self.held: list[tuple[int, int, av.VideoFrame]] = []  # a heap by pts (then arrival)
        self.arrivals = 0
        self.last_pts: int | None = None

    def expect(self, pts: int) -> None:
        self.expected.add(pts)

    def push(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        out = []
        for frame in frames:
            if frame.pts is None:  # nothing to order by (streams without timestamps)
                out.append(frame)
                continue
            self.expected.discard(frame.pts)
            if self.last_pts is not None and frame.pts <= self.last_pts:
                self.report([frame.pts], "came out of the decoder too late to be placed and are dropped")
                continue
            heapq.heappush(self.held, (frame.pts, self.arrivals, frame))
            self.arrivals += 1
            out += self._release(final=False)
        return out

    def finish(self) -> list[av.VideoFrame]:
        out = self._release(final=True)
        self.report(sorted(self.expected), "could not be decoded and are missing")
        self.expected.clear()
        return out

    def _release(self, final: bool) -> list[av.VideoFrame]:
        out = []
        while self.held:
            pts = self.held[0][0]
            earlier = sorted(p for p in self.expected if p < pts)
            if earlier and not final and len(self.held) <= self.window:
                break  # wait for them
            if earlier:
                self.report(earlier, "could not be decoded and are missing")
                self.expected.difference_update(earlier)
            out.append(heapq.heappop(self.held)[2])
            self.last_pts = pts
        return out


def cuda_index(device: torch.device) -> int | None:
    """The index of a CUDA `device` ("cuda" alone: the current one), None for other devices."""
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)

