"""The reference decoder: PyAV (FFmpeg's libavcodec), and what the other backends borrow from it.

On a CUDA device PyAV decodes with NVDEC (`av.codec.hwaccel.HWAccel("cuda")`, software fallback allowed). The
frames stay in GPU memory (`is_hw_owned`): their NV12/P010 planes reach torch through DLPack, without a copy, and
`colour.planes_to_rgb` converts them there. Where NVDEC cannot be had (no GPU, a codec NVDEC lacks) PyAV decodes in
software. The other backends take their timestamps from `presentation_pts` and say with `Unsuitable` why a file is
left to PyAV.

YUV → RGB in software: swscale's exact path for 8 bits (within one level of the equations), `planes_to_rgb` for
deeper planar YUV, whose RGB48 output from swscale is wrong (see colour.planes_to_rgb).
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.codec.hwaccel import HWAccel
from av.video.reformatter import VideoReformatter

from vsr.errors import InputError
from vsr.pipelines import fields, telecine
from vsr.pipelines.captions import CAPTION_DECODERS, frame_captions
from vsr.pipelines.colour import EXACT_CONVERSION, planes_to_rgb
from vsr.pipelines.decode._base import Decoder, Selection, log, rgb_matrix
from vsr.pipelines.frames import VideoStreamInfo
from vsr.pipelines.probe import (ALPHA_DECODERS, DECODE_ORDER_FORMATS, TimelineWatch, decoding_errors, demux_timed,
                                 describe_video, first_frame_pts, open_input, path_of, timed_in_decoding_order)
from vsr.pipelines.sequences import first_frame, frame_path, is_sequence

# Planar YUV deeper than 8 bits (yuv420p10le, yuv444p12le, ...): converted by `planes_to_rgb`, not by swscale.
DEEP_PLANAR_YUV = re.compile(r"yuv4(20|22|44)p(9|10|12|14|16)le")
DEEP_PLANAR_YUVA = re.compile(r"yuva4(20|22|44)p(9|10|12|16)le")  # the same with an alpha plane (ProRes 4444)
# 8-bit planar YUV: swscale converts it on the CPU; for a CUDA device its planes (half the bytes of RGB at 4:2:0) go
# to the GPU and `planes_to_rgb` converts them there, leaving the CPU to decode and encode.
PLANAR_YUV_8 = re.compile(r"yuvj?4(20|22|44)p")
# NVDEC's frame layouts that `semi_planar_rgb` converts on the GPU: Y plane, then interleaved U/V at half size; P010 and
# P016 keep the samples in the high bits of 16.
NVDEC_LAYOUTS = ("nv12", "p010le", "p016le")
# Codecs whose FFmpeg decoders say their chroma sits on the even luma columns ("left"); swscale takes the others'
# unstated siting as "center" (colour.planes_to_rgb). PyAV 18 does not show a stream's own chroma location.
LEFT_SITED_CODECS = ("h264", "hevc", "mpeg2video", "mpeg4")


class Unsuitable(Exception):
    """A backend other than PyAV cannot decode this file faithfully here; the message says why, PyAV decodes it."""


class PyAVDecoder(Decoder):
    """Decodes with PyAV, converting YUV to RGB with the stream's own matrix and range.

    Damaged input is handled like ffmpeg does: concealed frames come out with a warning, decoding errors are logged
    and decoding goes on, and each packet that yields no frame is named by its time. Every frame keeps the pts the
    decoder gave it, so a lost frame never shifts the timing of the ones after it.

    On a CUDA `device` the packets are decoded by NVDEC when it can be had (`nvdec` says whether it was), and the
    frames are converted to RGB on the GPU without leaving it.

    A stream with alpha (`info.alpha`) gives RGBA frames, decoded in software (NVDEC has no alpha), VP8/VP9 by
    libvpx (probe.ALPHA_DECODERS).

    `deinterlace`: None, or bwdif's `deint` ("interlaced": the frames flagged so, "all"): the frames go through
    FFmpeg's bwdif, decoded in software (bwdif takes no NVDEC frames). "ivtc": inverse telecine (pipelines/telecine.py),
    fieldmatch and bwdif then one frame of five dropped and the rest retimed; `info` then describes the film frames
    (4/5 of the rate and of the frames). "field": a frame for each field (pipelines/fields.py); `info` then says twice
    the rate and the frames.
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
        deinterlace: str | None = None,
        frame_rate: Fraction | None = None,
    ):
        self._nvdec_device = cuda_index(device) if deinterlace is None else None
        container, stream, info = open_for_decoding(path, nvdec_device=self._nvdec_device, frame_rate=frame_rate)
        if deinterlace in ("ivtc", "field"):
            try:
                telecine.check_time_base(path, info, f"--deinterlace {deinterlace}")
                if deinterlace == "ivtc":
                    telecine.check_not_soft_telecined(path, info)
            except BaseException:
                container.close()
                raise
        self.nvdec = stream.codec_context.is_hwaccel  # NVDEC attached: FFmpeg decodes in software what it cannot
        self.nvdec_frames = 0  # the frames NVDEC did decode (they come out in GPU memory)
        self._first_pts = first_frame_pts(container, stream)  # (where --start counts from)
        # Whether the demuxer found timestamps in the stream at all (a raw .h264 has none: every frame gets one).
        self._timed = stream.start_time is not None
        self._first_file = first_frame(path) if is_sequence(path) else None  # an image sequence's first number
        self._jpeg_files = self._first_file is not None and info.codec == "mjpeg"  # (see _decode_jpeg_file)
        self._said_turned = False  # whether a sequence's file stored turned otherwise than its first was warned of
        super().__init__(path, info, device, Selection.from_seconds(info, self._first_pts, start, end, max_frames))
        self._reads_captions = info.codec in CAPTION_DECODERS  # (decided once, not per frame)
        stream.thread_type = "AUTO"
        self._container = container
        self._stream = stream
        self._codec = _decoder_of(stream, info)
        self._discarded = 0  # packets read that the container says to leave out (an edit list's)
        self._deinterlace = deinterlace
        self._skip_to_keyframe = False
        # Where a seek would mistime the frames: the latest pts a keyframe may have to start decoding at, the packets
        # before it read from the start and left undecoded (see _reads_to_keyframe); None: every packet is decoded.
        self._decode_from: int | None = None
        # Frames timed in decoding order: the pts of the keyframe whose packet's frame and those after it are timed
        # and given out (see _keyframes_before); None: every frame.
        self._timed_from: int | None = None
        self._reformatter = VideoReformatter()  # one swscale context for all frames, not one per frame
        self._resized = False
        deep = info.bit_depth > 8
        self._conversion = dict(
            format=("rgba64le" if deep else "rgba") if info.alpha else ("rgb48le" if deep else "rgb24"),
            width=info.width,
            height=info.height,
            src_colorspace=rgb_matrix(info),
            src_color_range="MPEG" if info.color.range == "tv" else "JPEG",
            dst_color_range="JPEG",
            interpolation=EXACT_CONVERSION,
        )
        # Streams without timestamps (raw .h264) get them from the frame rate, frame by frame.
        rate = info.average_rate or 25
        self._pts_step = max(round(1 / (rate * info.time_base)), 1)
        if deinterlace == "ivtc":
            self.info = telecine.film_info(info)
            # (a fifth of the frames go, and their captions with them: 608 captions come two bytes a frame, so what
            # is left would be garbled)
            self._reads_captions = False
        elif deinterlace == "field":
            self.info = fields.field_info(info)
        # Field by field, both fields' frames carry the frame's captions: read from the first's alone (by its time,
        # the frame's own), or every caption would be said twice.
        self._first_fields: set[int] = set()

    def _frames(self) -> Iterator[tuple[np.ndarray, int]]:
        selection = self.selection
        if selection.start_pts is not None and selection.start_pts > self._first_pts and self._seeks_right():
            try:
                self._seek_before(selection.start_pts)
            except (av.error.FFmpegError, OverflowError) as error:  # (OverflowError: past int64, a --start of 1e15)
                log.info("%s: cannot seek (%s); decoding from the start", self.path, _reason(error))
                self._reopen()
        elif selection.start_pts is not None and selection.start_pts > self._first_pts and self._reads_to_keyframe():
            self._decode_from = self._latest_keyframe_pts(selection.start_pts)
            if timed_in_decoding_order(self._container, self._stream):
                self._decode_from, self._timed_from = self._keyframes_before(self._decode_from)
        count, last_pts, untimed = 0, None, 0
        frames = self._decoded() if self._deinterlace is None else self._deinterlaced(self._decoded())
        if self._deinterlace == "ivtc":
            frames = self._decimated(frames)
        for frame in frames:
            pts = frame.pts
            if pts is None and last_pts is None and self._timed:
                # Before the first frame with a time, in a stream whose frames have times: Matroska's demuxer gives
                # no time to a block timed before 0 (B-frames' delay kept, `-avoid_negative_ts disabled`, a copy cut
                # in a group of pictures). Such frames have no place before the first: given the next times, they
                # took the times of the frames after them, which the muxer refused at the end of the run. Dropped,
                # as FFmpeg's command line drops them and vsr's probe leaves them out of the count.
                untimed += 1
                continue
            if untimed and not selection.is_before(pts):  # (a window that starts later would not hold them)
                log.warning("%s: %d frame(s) before the first with a time have none (times before 0, which the "
                            "demuxer cannot give) and are dropped, as FFmpeg drops them", self.path, untimed)
            untimed = 0
            if pts is None:
                pts = self._first_pts if last_pts is None else last_pts + self._pts_step
            last_pts = pts
            if selection.is_before(pts):
                continue
            if selection.is_after(pts):
                return
            count += 1
            if self._first_file is not None and not self._said_turned and frame.rotation % 360 != self.info.rotation:
                self._said_turned = True  # (once: a sequence of camera shots may turn many)
                log.warning("%s: stored turned otherwise than the sequence's first file (its EXIF orientation); "
                            "turned as the first, as the frames of a video are (upscale it on its own to turn it as "
                            "a viewer does)", self._file_of(pts))
            first_field = self._deinterlace != "field" or pts in self._first_fields
            self._first_fields.discard(pts)
            if self._reads_captions and first_field and (cc_data := frame_captions(frame)) is not None:
                self.captions[pts] = cc_data
            pixels = self._to_pixels(frame)
            if self.info.mirrored:  # (see VideoStreamInfo.mirrored)
                pixels = pixels.flip(0) if isinstance(pixels, torch.Tensor) else np.ascontiguousarray(pixels[::-1])
            yield pixels, pts
        if selection.is_everything:
            self._check_complete(count, last_pts)

    def _seeks_right(self) -> bool:
        """Whether frames decoded after a seek come at their right times; else the window's packets are read from the
        start, and decoded from the keyframe before it (program streams, `_reads_to_keyframe`) or from the start.

        Not in MPEG program streams (DVD .vob, .mpg), whose packets mostly carry no timestamp: FFmpeg's parser fills
        them in from where it starts, and after a seek they came half a frame or more off (previews and segments
        lost frames and gave others times no frame has). Nor in AVI and ASF with B-frames, timed in decoding order
        (`PresentationOrder`): the B-frames after an open GOP's keyframe are not decoded from there, and every frame
        after them took a time two frames early. Nor in a GIF, whose times as browsers show them count from its first
        frame (`probe.demux_timed`); its only keyframe is the first anyway."""
        name = self._container.format.name
        return "mpeg" not in name.split(",") and name != "gif" \
            and not timed_in_decoding_order(self._container, self._stream)

    def _reads_to_keyframe(self) -> bool:
        """Whether a window of a file that cannot seek right (`_seeks_right`) is decoded from a keyframe before it,
        the packets before that keyframe read from the start of the file and not decoded (`from_keyframe`).

        An MPEG program stream's packets are those a reading from the start gives, with the same times (FFmpeg's
        parser fills them in as it goes): frames decoded from a keyframe on are those of a decoding from the start.
        Reading without decoding is about 25 times as fast (10 minutes of a 720x480 DVD: 0.4 s against 10 s, and 20 s
        deinterlaced). AVI and ASF with B-frames are decoded from a group of pictures earlier (`_keyframes_before`),
        for MPEG-4 Part 2 (XviD, DivX) and H.264, the codecs it was tested with (VC-1, WMV's, is decoded from the
        start: FFmpeg cannot make it to test). Not in a GIF, whose only keyframe is its first."""
        if self._container.format.name == "gif":
            return False
        return not timed_in_decoding_order(self._container, self._stream) or self.info.codec in ("mpeg4", "h264")

    def _keyframes_before(self, latest_pts: int) -> tuple[int | None, int | None]:
        """For frames timed in decoding order (AVI, ASF): the pts of the keyframe to decode from and of the keyframe
        to time frames from, the last two at or before `latest_pts`; (None, None), every packet decoded and timed,
        where there are not two.

        Their frames take the times in the order they come out of the decoder (`PresentationOrder`). Decoded from a
        keyframe, the B-frames after it in an open GOP, shown before it and made from the group before, are lost,
        and their times went to the frames after them (2 or 3 frames early, MPEG-4 and H.264 alike). Decoded from
        the keyframe before, they come out, after every frame of the packets before their keyframe: from that
        keyframe's packet on, the frames are those of a decoding from the start, in the same order, and take the
        same times, the packets' from there on. The decoder gives each frame the time of its own packet (why they
        are retimed): the frames of the group before, whose own first B-frames are lost, are left out by it
        (`_ordered`). The packets up to the window are read once more for this (no decoding): 0.13 s for 5 minutes
        of 720x480 XviD.

        Packed B-frames (DivX and XviD AVIs): a packet holds two pictures, and a placeholder packet with nothing
        coded (`PACKED_PLACEHOLDER_BYTES`) stands for the second, marked as a keyframe where it follows a keyframe's
        packet; out of the decoder its frame, a B-frame, comes before the keyframe's. Cut there, frames of other
        times came out: placeholders are no keyframes here."""
        keyframes: list[int] = []  # the last two keyframes at or before latest_pts
        smallest_keyframe = 1  # (bytes: empty packets make no frame)
        try:
            with open_input(self.path) as container:
                stream = container.streams[self.info.index]
                for packet in demux_timed(container, stream):
                    if packet.dts is not None and packet.dts > latest_pts:
                        break
                    if not packet.size:
                        continue
                    if packet.is_keyframe and not keyframes and _packs_b_frames(stream, packet):
                        smallest_keyframe = PACKED_PLACEHOLDER_BYTES + 1
                    if packet.is_keyframe and packet.size >= smallest_keyframe and packet.pts is not None \
                            and packet.pts <= latest_pts:
                        keyframes = [*keyframes[-1:], packet.pts]
        except av.error.FFmpegError:
            return None, None  # (decoded from the start, which says what is wrong)
        return (keyframes[0], keyframes[1]) if len(keyframes) == 2 else (None, None)

    def _latest_keyframe_pts(self, start_pts: int) -> int:
        """The latest pts a keyframe may have for its frames to reach `start_pts` as a decoding from the start makes
        them. Deinterlacing, the keyframe must be before `start_pts`: bwdif makes each frame from the one before it
        too, and a first frame without one is interpolated from its own field alone (up to 206 levels off,
        measured), unlike the same frame in a run from the beginning; a segment of a resumable run must equal that
        run. Inverse telecine, 3 frames before: fieldmatch weaves each frame with its neighbours' fields, bwdif then
        looks at those, and the first cycle's first frame is compared with the frame before it."""
        frames_before = {None: 0, "ivtc": 3}.get(self._deinterlace, 1)
        return start_pts - (frames_before - 1) * self._pts_step - 1 if frames_before else start_pts

    def _seek_before(self, start_pts: int) -> None:
        """Put the demuxer on a keyframe whose frames reach `start_pts`, to decode forward from it and drop the frames
        before `start_pts`.

        Containers seek by their own rules: MPEG-TS lands on any packet whose decoding time is before the target,
        often in the middle of a group of pictures whose frames cannot be decoded without the ones before (they came
        out missing). So the target steps back until the first keyframe after it is at or before `start_pts`, and
        `_decoded` skips the packets before that keyframe, whose pts is at most `_latest_keyframe_pts`.
        """
        latest = self._latest_keyframe_pts(start_pts)
        target, step = start_pts, self._pts_step
        while target > self._first_pts:
            self._container.seek(target, stream=self._stream, backward=True)
            keyframe = next((packet for packet in self._container.demux(self._stream) if packet.is_keyframe), None)
            if keyframe is not None and keyframe.pts is not None and keyframe.pts <= latest:
                self._container.seek(target, stream=self._stream, backward=True)  # back to before that keyframe
                self._skip_to_keyframe = True
                return
            target, step = start_pts - step, step * 2
        # From the first packet: a target long before it (seeking to the first pts itself can land after the first
        # keyframe in MPEG-TS, whose decoding time is earlier).
        self._container.seek(self._first_pts - 10**9, stream=self._stream, backward=True)

    def _reopen(self) -> None:
        """Open the file again: a container whose seek failed can be left anywhere (raw H.264: at its end, where
        demuxing gives nothing)."""
        self._container.close()
        self._container, self._stream, _ = open_for_decoding(self.path, nvdec_device=self._nvdec_device)
        self._stream.thread_type = "AUTO"
        self._codec = _decoder_of(self._stream, self.info)
        self._skip_to_keyframe = False
        self._discarded = 0

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The decoder's frames, put in presentation order; damage is logged and decoding goes on."""
        restamp = self._container.format.name in DECODE_ORDER_FORMATS
        recover = None if restamp or self.nvdec or self._first_file is not None or not self._seeks_right() \
            else self._recovered  # (which seeks)
        order = PresentationOrder(self._report_lost, restamp=restamp, recover=recover)
        # (the list, not `order`: order → self → order would be a cycle, freed only by the garbage collector, which
        # may first run in a process forked from this one, a DataLoader's worker, and hang in swscale's threads)
        self._shared = order.shared
        try:
            yield from self._ordered(order)
        finally:  # (a window, or a segment, stops decoding before the end: said then)
            order.report_shared()

    def _ordered(self, order: PresentationOrder) -> Iterator[av.VideoFrame]:
        timeline = TimelineWatch(self.path, self._stream)
        packets = demux_timed(self._container, self._stream)  # (a GIF's as browsers time it)
        if self._decode_from is not None:
            packets = from_keyframe(packets, self._decode_from)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as error:
                log.warning("%s: reading stopped, the file is damaged or cut short (%s)", self.path, _reason(error))
                try:
                    frames = self._codec.decode(None)  # the frames still inside the decoder
                except av.error.FFmpegError:
                    frames = []
                yield from order.push(self._checked(frames))
                break
            if self._skip_to_keyframe:  # after a seek (see _seek_before)
                if not packet.is_keyframe:
                    continue
                self._skip_to_keyframe = False
            timeline.check(packet)
            before_timed = self._timed_from is not None and packet.pts is not None and packet.pts < self._timed_from
            if packet.pts is not None and packet.size and not packet.is_discard and not before_timed:
                order.expect(packet.pts)
            elif packet.size and packet.is_discard:
                self._discarded += 1  # (an edit list's: in the index, never shown)
            try:
                frames = self._decode_jpeg_file(packet) if self._jpeg_files else self._codec.decode(packet)
            except av.error.FFmpegError as error:
                # With frame threads the error may belong to an earlier packet: `order` names the lost frames (a
                # sequence's lost file is an error, which names it).
                if self._first_file is None:
                    log.warning("%s: decoding error near %s, going on (%s)", self.path, self._clock(packet.pts),
                                _reason(error))
                continue
            if self._timed_from is not None:  # (frames of the group before, decoded for the B-frames after it)
                frames = [frame for frame in frames if frame.pts is None or frame.pts >= self._timed_from]
            yield from order.push(self._checked(frames))
        yield from order.finish()

    def _decode_jpeg_file(self, packet: av.Packet) -> list[av.VideoFrame]:
        """Decode one file of a JPEG sequence, warning where FFmpeg made up part of it (`decoding_errors`), which it
        says in this thread (MJPEG has no frame threads)."""
        frames, errors = decoding_errors(lambda: self._codec.decode(packet))
        if errors and packet.pts is not None:
            log.warning("%s: damaged or cut short; FFmpeg fills in what is missing (%s)", self._file_of(packet.pts),
                        "; ".join(errors))
        return frames

    def _deinterlaced(self, frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        """`frames` through FFmpeg's bwdif: one frame out per frame in, with its pts; the lines of the field that is
        not shown first are interpolated from the other field's neighbours in space and time. Inverse telecine:
        through fieldmatch first, and bwdif only for the frames it leaves combed (see pipelines/telecine.py)."""
        graph = av.filter.Graph()
        # The decoder's format, which for VP8/VP9 with alpha is libvpx's yuva420p, not the stream's yuv420p.
        source = graph.add_buffer(template=self._stream, format=self.info.pix_fmt)
        if self._deinterlace == "ivtc":
            order = telecine.field_order(self._stream)
            filters = [graph.add("fieldmatch", f"order={order}"),
                       graph.add("bwdif", f"mode=send_frame:parity={order}:deint=interlaced")]
        elif self._deinterlace == "field":  # (every frame: one flagged progressive would make one frame, not two)
            filters = [graph.add("bwdif", "mode=send_field:parity=auto:deint=all")]
        else:
            filters = [graph.add("bwdif", f"mode=send_frame:parity=auto:deint={self._deinterlace}")]
        sink = graph.add("buffersink")
        for before, after in zip([source, *filters], [*filters, sink]):
            before.link_to(after)
        graph.configure()

        def ready() -> Iterator[av.VideoFrame]:
            while True:
                try:
                    frame = graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    return
                if frame.pts is not None:  # bwdif halves the time base (for its send_field mode's second fields)
                    # (halves of a tick rounded up, as fields.field_pts plans them)
                    frame.pts = math.floor(frame.pts * frame.time_base / self.info.time_base + Fraction(1, 2))
                    frame.time_base = self.info.time_base
                yield frame

        for frame in frames:
            if self._deinterlace == "field" and frame.pts is not None:
                self._first_fields.add(frame.pts)
            graph.push(frame)
            yield from ready()
        graph.push(None)  # bwdif holds one frame back, to look at the one after it
        yield from ready()

    def _decimated(self, frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        """Field-matched `frames` less one of every five, the rest retimed (pipelines/telecine.py). Cycles start at
        the window's first frame; the frames before it only lead in."""
        decimation = telecine.Decimation()
        start_pts, last_pts = self.selection.start_pts, None
        for frame in frames:
            if frame.pts is None:  # (a stream without times: given the next step, as `_frames` would)
                frame.pts = self._first_pts if last_pts is None else last_pts + self._pts_step
            last_pts = frame.pts
            if start_pts is not None and frame.pts < start_pts:
                decimation.lead_in(frame)
                continue
            yield from decimation.push(frame)
        yield from decimation.finish()

    def _checked(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        for frame in frames:
            if frame.is_corrupt and not (frame.pts is not None and self.selection.is_before(frame.pts)):
                log.warning("%s: the frame at %s is damaged; errors concealed", self.path, self._clock(frame.pts))
        return frames

    def _recovered(self, lost: list[int]) -> list[av.VideoFrame]:
        """The frames of `lost` decoded again by one thread, from the keyframe before them: with frame threads, FFmpeg
        drops the frames decoded beside a damaged one (2 more of a file cut short than ffmpeg's own decoding loses).
        A frame itself damaged stays lost."""
        wanted, found = set(lost), []
        try:
            with open_input(self.path) as container:
                stream = container.streams[self.info.index]
                stream.thread_type = "NONE"
                codec = _decoder_of(stream, self.info)
                container.seek(min(lost), stream=stream, backward=True)
                for packet in container.demux(stream):
                    if packet.is_keyframe and packet.pts is not None and packet.pts > max(lost):
                        break  # (the next group of pictures: what it holds is not the lost frames')
                    try:
                        found += [frame for frame in codec.decode(packet) if frame.pts in wanted]
                    except av.error.FFmpegError:
                        continue
                found += [frame for frame in codec.decode(None) if frame.pts in wanted]
        except (av.error.FFmpegError, OSError):
            pass  # (what was found before the error still counts)
        return found

    def _report_lost(self, lost: list[int], why: str) -> None:
        lost = [pts for pts in lost if not self.selection.is_before(pts) and not self.selection.is_after(pts)]
        if lost and self._first_file is not None:
            # A video conceals damage and keeps its times; a sequence lost a file, and every frame after it would
            # take the wrong number (a gap in the output): an error, naming the file.
            more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
            raise InputError(f"{self._file_of(lost[0])}: cannot be decoded, damaged or cut short{more}; a sequence "
                             "is read without gaps")
        if lost:
            times = ", ".join(self._clock(pts) for pts in lost[:5]) + (", ..." if len(lost) > 5 else "")
            log.warning("%s: %d frame(s) %s, at %s", self.path, len(lost), why, times)

    def _file_of(self, pts: int) -> Path:
        """An image sequence's file of the frame at `pts` (0, 1, ... from its first file)."""
        return frame_path(self.path, self._first_file + pts)

    def _to_pixels(self, frame: av.VideoFrame) -> np.ndarray | torch.Tensor:
        """The frame as H×W×3 RGB (H×W×4 RGBA for a stream with alpha): uint8 for 8-bit sources, else float32 in
        [0, 1] (or uint16 rgb48/rgba64 from swscale).

        NVDEC's frames are converted where they are, on the GPU; planar YUV by `planes_to_rgb`, on the GPU for a
        CUDA device and for deeper than 8 bits on the CPU; the rest (and frames of another size than the stream's,
        scaled to it) by swscale.
        """
        if (frame.width, frame.height) != (self.info.width, self.info.height):
            if not self._resized:
                self._resized = True  # said once: a stream that changes size usually stays at the new one
                log.warning(
                    "%s: the frame at %s is %d×%d, the stream %d×%d; scaling it to the stream's size",
                    self.path, self._clock(frame.pts), frame.width, frame.height, self.info.width, self.info.height,
                )
            return self._swscale(frame)
        if self.info.alpha:
            if DEEP_PLANAR_YUVA.fullmatch(frame.format.name):
                return with_alpha_plane(planar_rgb(frame, self.info), frame)
            return self._swscale(frame)  # RGBA
        hardware = frame.sw_format  # the layout of a frame in GPU memory; None for a frame in host memory
        if hardware is not None:
            self.nvdec_frames += 1
            if hardware.name in NVDEC_LAYOUTS and frame.width % 2 == 0 and frame.height % 2 == 0:
                return semi_planar_rgb(frame, self.info)
            return self._swscale(frame)  # downloaded to host memory by swscale
        on_gpu = self.device.type == "cuda"
        # (swscale scales an odd-sized frame's chroma by its planes' sizes, ⌈W/2⌉ to W: shifted by up to a pixel
        # towards the right and bottom edges, a color edge 70 levels off there)
        odd = frame.width % 2 == 1 or frame.height % 2 == 1
        name = frame.format.name
        if DEEP_PLANAR_YUV.fullmatch(name) or ((on_gpu or odd) and PLANAR_YUV_8.fullmatch(name)):
            return planar_rgb(frame, self.info, self.device if on_gpu else None)
        return self._swscale(frame)

    def _swscale(self, frame: av.VideoFrame) -> np.ndarray:
        return self._reformatter.reformat(frame, **self._conversion).to_ndarray()

    def _check_complete(self, count: int, last_pts: int | None) -> None:
        if count == 0:
            raise InputError(f"{self.path}: no frame of video stream #{self.info.index} could be decoded")
        if self._first_file is not None and count < self.info.frame_count:  # (the demuxer stopped early)
            raise InputError(f"{self._file_of(last_pts + 1)}: cannot be read, damaged or cut short; a sequence is "
                             "read without gaps")
        # An index written before the data (MP4 with +faststart) still lists the frames a cut-off file lost; the time
        # check allows a second (durations may be the container's), which is all of a short clip.
        # Counted by the muxer (0 where the container does not say), with the frames an edit list leaves out.
        listed = self._stream.frames - self._discarded if self._stream.frames else 0
        if self._deinterlace == "ivtc":  # (as `info.frame_count` counts them)
            listed = telecine.film_frame_count(listed)
        elif self._deinterlace == "field":
            listed *= fields.FIELDS
        if self._container.format.name == "avi":  # (its index lists empty entries too: probe._as_the_container_says)
            listed = self.info.frame_count or 0
        listed -= len(self._shared)  # (their frames are shown once)
        self._warn_if_cut_short(self._first_pts, last_pts, count, max(listed, 0))

    def close(self) -> None:
        self._container.close()


def open_for_decoding(
    path: Path, *, nvdec_device: int | None, frame_rate: Fraction | None = None
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, VideoStreamInfo]:
    """Open the video stream of `path` for decoding: the container, the stream and its description.

    With `nvdec_device` (a CUDA device index) the container decodes with NVDEC on that GPU, falling back to
    software inside FFmpeg for what NVDEC cannot decode; where NVDEC cannot be opened at all (no GPU, no driver:
    `av.open` raises PermissionError) it is opened for software decoding, with one info line. The description is
    always read from a software container: with NVDEC the codec context's pixel format is "cuda", not the stream's.
    `frame_rate`: an image sequence's (`sequences`), which is never decoded by NVDEC.
    """
    info, _ = describe_video(path, frame_rate)  # (before this open: see describe_video)
    container = open_input(path, frame_rate)
    stream = container.streams[info.index]
    if nvdec_device is None or info.alpha or container.format.name == "image2":
        return container, stream, info
    # is_hw_owned: frames stay in GPU memory, in torch's CUDA context. PyAV asks FFmpeg for the device's primary
    # context, which FFmpeg refuses (ENOTSUP, "incompatible flags") once torch has made it with its own flags, as the
    # engine has by now (PyAV PR #2339): FFmpeg is given the context current in this thread instead, torch's.
    if torch.cuda.is_available():  # (without, av.open says why NVDEC is not there)
        torch.cuda.set_device(nvdec_device)
        # set_device(0) leaves no context current in a thread that has not used CUDA yet (pytorch#155668), as in the
        # decoder thread when a failed seek reopens the file: any runtime call makes the primary context current
        # there, and a query of this thread's stream is one that waits for nothing.
        torch.cuda.current_stream(nvdec_device).query()
    nvdec = HWAccel(device_type="cuda", device=str(nvdec_device), allow_software_fallback=True, is_hw_owned=True,
                    options={"primary_ctx": "0", "current_ctx": "1"})
    container.close()  # (before the next open: FFmpeg holds a copy of the file's attachments per open)
    try:
        accelerated = av.open(str(path), "r", hwaccel=nvdec)
    except (av.error.FFmpegError, OSError) as error:
        log.warning("%s: NVDEC is not available on cuda:%d (%s); decoding in software", path, nvdec_device,
                    _reason(error))
        container = open_input(path, frame_rate)
        return container, container.streams[info.index], info
    stream = accelerated.streams[info.index]
    if stream.codec_context.is_hwaccel:
        log.debug("%s: decoding with NVDEC on cuda:%d", path, nvdec_device)
    else:
        log.info("%s: NVDEC cannot decode %s; decoding in software", path, info.codec)
    return accelerated, stream, info


# The most packets `from_keyframe` holds back while it cannot tell yet whether they are to be decoded: a DVD's group
# of pictures has 12 to 18, H.264's keyframes come every 250 frames by default.
MOST_HELD_PACKETS = 1024


def from_keyframe(packets: Iterable[av.Packet], latest_pts: int) -> Iterator[av.Packet]:
    """`packets` (read from the start of the stream) from the last keyframe whose pts is at or before `latest_pts`
    on: the packets before it are read and left out, for the decoder to start at that keyframe. All of them where
    there is no such keyframe, and from the packets held back on where more than MOST_HELD_PACKETS would be held
    (a stream whose keyframes are not flagged): the frames of `latest_pts` and after are those of a decoding from the
    start either way.

    The packets since the last such keyframe are held back until one decodes after `latest_pts`: a keyframe after it
    in decoding order is shown after it too (its pts is at least its decoding time)."""
    held: list[av.Packet] | None = []  # None: no longer held back, every packet given out
    for packet in packets:
        if held is None:
            yield packet
            continue
        if packet.is_keyframe and packet.pts is not None and packet.pts <= latest_pts:
            held = [packet]  # (the frames after a later keyframe do not need the packets before it)
            continue
        held.append(packet)
        if (packet.dts is not None and packet.dts > latest_pts) or len(held) > MOST_HELD_PACKETS:
            yield from held
            held = None
    yield from held or []


# The user data DivX and XviD write where they pack B-frames ("DivX503b1393p"): FFmpeg's decoder reads it so too.
PACKED_B_FRAMES = re.compile(rb"\x00\x00\x01\xb2DivX\d+(?:Build|b)\d+p")
# The most bytes of a packed B-frame's placeholder, a picture header with nothing coded (an N-VOP: start code, type,
# time and a 0 bit; XviD's are 6 bytes): 8 while its time fields take at most 26 bits (16 bits of ticks for the
# finest clock, 10 seconds since the picture before). A coded picture is as small only with a few flat macroblocks
# (a 32×16 frame): left out with them, its window is decoded from a keyframe earlier, as exactly.
PACKED_PLACEHOLDER_BYTES = 8


def _packs_b_frames(stream: av.video.stream.VideoStream, first_keyframe: av.Packet) -> bool:
    """Whether an MPEG-4 Part 2 stream packs B-frames into the packets before them, as its extradata or first
    keyframe's packet says."""
    if stream.codec_context.name != "mpeg4":
        return False
    return any(PACKED_B_FRAMES.search(bytes(data or b"")) for data in (stream.codec_context.extradata, first_keyframe))


def _decoder_of(stream: av.video.stream.VideoStream, info: VideoStreamInfo) -> av.CodecContext:
    """The codec context that decodes `stream`: its own, or libvpx's for a VP8/VP9 stream with alpha."""
    if info.alpha and info.codec in ALPHA_DECODERS:
        return av.CodecContext.create(ALPHA_DECODERS[info.codec], "r")
    return stream.codec_context


def presentation_pts(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                     leading: list[int] | None = None) -> list[int] | None:
    """Every packet's pts of `stream`, in presentation order (one per frame), or None if some packet has none.

    Reads the whole stream (demuxing only, no decoding); raises av.error.FFmpegError where the file cannot be read.
    `leading`, where given, receives the pts of the keyframes after the first that have leading frames: frames
    decoded after the keyframe but shown before it (an open GOP's), which a decoder started at that keyframe cannot
    decode.
    """
    pts = []
    timeline = TimelineWatch(path_of(container), stream)
    keyframe = None  # the pts of the last keyframe after the first, while the packets after it are checked
    for packet in demux_timed(container, stream):
        if packet.size == 0 or packet.is_discard:  # the flush packet at the end; packets the decoder drops
            continue
        timeline.check(packet)
        if packet.pts is None:
            return None
        if leading is not None:
            if packet.is_keyframe:
                keyframe = packet.pts if pts else None
            elif keyframe is not None and packet.pts < keyframe:
                leading.append(keyframe)
                keyframe = None
        pts.append(packet.pts)
    return sorted(pts)


class PresentationOrder:
    """Puts decoded frames in presentation order and finds the frames the decoder lost.

    A healthy decoder already returns frames in presentation order: each new frame has the smallest pts of the
    packets sent whose frame has not come out, and passes straight through. Around damage, decoders return frames
    out of order, or never return some (frame threads can drop a damaged frame without an error reaching the
    caller). Then frames are held, up to `window` of them, until the earlier ones arrive; past that, the missing
    ones are asked of `recover` (decoded again) and what it cannot give is reported lost. A frame that arrives after
    a later one was released cannot be placed and is dropped, reported too, so the pts that go out only ever
    increase. Frames of a time another frame has (a muxer's mistake) are dropped, as the segments' plan leaves them
    out, and reported in one line (`report_shared`).

    `restamp`: the packets' times are in decoding order (DECODE_ORDER_FORMATS), so the frames carry the times of the
    wrong packets (behind B-frames, a later frame's first); their order is the decoder's, and each frame is given
    the smallest time not yet given, as a healthy decoder's frames have it anyway. (FFmpeg's best-effort timestamps
    come to the same.)
    """

    def __init__(self, report: Callable[[list[int], str], None], window: int = 8, restamp: bool = False,
                 recover: Callable[[list[int]], list[av.VideoFrame]] | None = None):
        self.report = report
        self.recover = recover  # frames of missing pts decoded again, where they can be (PyAVDecoder._recovered)
        self.window = window
        self.restamp = restamp
        self.expected: set[int] = set()  # pts of packets sent to the decoder whose frame has not come out
        self.held: list[tuple[int, int, av.VideoFrame]] = []  # a heap by pts (then arrival)
        self.arrivals = 0
        self.last_pts: int | None = None
        self.shared: list[int] = []  # pts of frames dropped for another frame's time
        self.tried: set[int] = set()  # missing pts that `recover` was asked for (once each)

    def expect(self, pts: int) -> None:
        self.expected.add(pts)

    def push(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        out = []
        for frame in frames:
            if frame.pts is None:  # nothing to order by (streams without timestamps)
                out.append(frame)
                continue
            if self.restamp and self.expected:
                frame.pts = min(self.expected)
            self.expected.discard(frame.pts)
            if frame.pts == self.last_pts or any(frame.pts == held[0] for held in self.held):
                self.shared.append(frame.pts)
                continue
            if self.last_pts is not None and frame.pts < self.last_pts:
                self.report([frame.pts], "came out of the decoder too late to be placed and are dropped")
                continue
            heapq.heappush(self.held, (frame.pts, self.arrivals, frame))
            self.arrivals += 1
            out += self._release(final=False)
        return out

    def finish(self) -> list[av.VideoFrame]:
        self._recover(sorted(self.expected))
        out = self._release(final=True)
        self.report(sorted(self.expected), "could not be decoded and are missing")
        self.expected.clear()
        return out

    def report_shared(self) -> None:
        """Say the frames dropped for another frame's time, in one line (once the decoding is over)."""
        self.report(self.shared, "share their time with the frame before them and are dropped (one is shown)")

    def _recover(self, missing: list[int]) -> bool:
        """Hold the frames of `missing` that `recover` finds (each pts asked for once); whether it found any."""
        missing = [pts for pts in missing if pts not in self.tried]
        if self.recover is None or not missing:
            return False
        self.tried.update(missing)
        found = [frame for frame in self.recover(missing)
                 if frame.pts in self.expected and (self.last_pts is None or frame.pts > self.last_pts)]
        for frame in found:
            self.expected.discard(frame.pts)
            heapq.heappush(self.held, (frame.pts, self.arrivals, frame))
            self.arrivals += 1
        return bool(found)

    def _release(self, final: bool) -> list[av.VideoFrame]:
        out = []
        while self.held:
            pts = self.held[0][0]
            earlier = sorted(p for p in self.expected if p < pts)
            if earlier and not final and len(self.held) <= self.window:
                break  # wait for them
            if earlier and self._recover(earlier):
                continue  # (they are held now, before the frame that was first)
            if earlier:
                self.report(earlier, "could not be decoded and are missing")
                self.expected.difference_update(earlier)
            out.append(heapq.heappop(self.held)[2])
            self.last_pts = pts
        return out


def semi_planar_rgb(frame: av.VideoFrame, info: VideoStreamInfo) -> torch.Tensor:
    """An NV12, P010 or P016 frame (as NVDEC gives them, in GPU memory; or in host memory) → H×W×3 RGB where it is.

    NVDEC writes frames on the CUDA context's default stream: the current stream (the decoder's own, see
    pipelines/runner.py) waits for it before the planes are read, and the default stream for the conversion after
    (its result is new tensors; the frame's buffer goes back to NVDEC's pool as soon as `frame` is dropped).
    """
    y, uv = plane_tensor(frame.planes[0]), plane_tensor(frame.planes[1])
    if y.is_cuda:
        torch.cuda.current_stream(y.device).wait_stream(torch.cuda.default_stream(y.device))
    if (frame.sw_format or frame.format).name != "nv12":  # P010/P016: the samples in the high bits of 16
        shift = 16 - info.bit_depth
        y, uv = y.to(torch.int32) >> shift, uv.to(torch.int32) >> shift
    rgb = _rgb(y, uv[..., 0], uv[..., 1], info)
    if y.is_cuda:
        # The buffer goes back to NVDEC's pool with `frame`, and FFmpeg copies the next picture into it on the default
        # stream, which does not wait for torch's (non-blocking) streams by itself: it waits for this conversion.
        torch.cuda.default_stream(y.device).wait_stream(torch.cuda.current_stream(y.device))
    return rgb


def planar_rgb(frame: av.VideoFrame, info: VideoStreamInfo, device: torch.device | None = None) -> torch.Tensor:
    """A planar YUV frame in host memory (yuv420p, yuv420p10le, ...) → H×W×3 RGB (see `_rgb`), converted on
    `device` (None: where the frame is) after copying its planes there."""
    y, u, v = (plane_tensor(plane) for plane in frame.planes[:3])
    if device is not None and device.type == "cuda":
        # Through pinned memory, without waiting: a plain copy would wait for all the GPU work queued before it (the
        # engine's batches), holding up this decoder thread. Into contiguous pinned memory: a plane's rows are
        # `line_size` apart (padded to 64 bytes: 854-pixel rows, 427-pixel chroma), and torch copies a strided host
        # tensor to the GPU through a contiguous temporary in pageable memory (ATen's copy_requires_temporaries),
        # synchronously: `plane.pin_memory()`, which keeps the strides, was then one more copy for nothing.
        y, u, v = (torch.empty(plane.shape, dtype=plane.dtype, pin_memory=True).copy_(plane)
                   .to(device, non_blocking=True) for plane in (y, u, v))
    elif device is not None:
        y, u, v = (plane.to(device) for plane in (y, u, v))
    return _rgb(y, u, v, info)


def with_alpha_plane(rgb: torch.Tensor, frame: av.VideoFrame) -> torch.Tensor:
    """H×W×3 float RGB and the frame's alpha plane (the last) → H×W×4 float RGBA in [0, 1]."""
    alpha = plane_tensor(frame.planes[-1]).to(torch.float32) / ((1 << frame.format.components[-1].bits) - 1)
    return torch.cat([rgb, alpha.unsqueeze(-1)], -1)


def plane_tensor(plane: av.video.plane.VideoPlane) -> torch.Tensor:
    """A view of a frame's plane (host or GPU memory) through DLPack, no copy.

    Through the plane's capsule rather than `torch.from_dlpack(plane)`: for a GPU plane torch passes its current
    stream, and PyAV (18.1) refuses any stream; `semi_planar_rgb` orders the streams itself."""
    return torch.from_dlpack(plane.__dlpack__())


def _rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, info: VideoStreamInfo) -> torch.Tensor:
    """uint8 RGB for 8-bit streams, float32 in [0, 1] for deeper ones, converted with the stream's matrix and range."""
    siting = "left" if info.codec in LEFT_SITED_CODECS else "center"
    rgb = planes_to_rgb(y, u, v, rgb_matrix(info), info.color.range == "pc", info.bit_depth, siting)
    return rgb.mul_(255).round_().to(torch.uint8) if info.bit_depth <= 8 else rgb


def cuda_index(device: torch.device) -> int | None:
    """The index of a CUDA `device` ("cuda" alone: the current one), None for other devices."""
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)

