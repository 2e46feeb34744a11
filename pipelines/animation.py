"""Animated GIF and APNG output: upscaled frames in, one animation file out (`-o clip.gif`, `-o clip.apng`).

    with AnimationWriter(out, source=src, source_info=info, width=w, height=h) as writer:
        for batch in batches:
            writer.write(batch)

A GIF holds at most 256 colors a picture. The palette is made as FFmpeg's best recipe makes it: `palettegen` over
the whole clip, then `paletteuse` maps every frame to it (one global palette, so colors do not jump from frame to
frame). Every frame is needed before the first can be mapped, so the writing takes two passes: as frames come, they
feed palettegen (a histogram, whatever the length) and go, losslessly (FFV1), into a hidden file beside the output;
once the last has come, they are read back from it, mapped and encoded. Memory stays flat; the disk holds the
frames once more for as long as the run lasts. An APNG (PNG frames, 8 bits, lossless) takes the same way, which lets
the last frame's delay be known when the file is opened (FFmpeg's muxers take it as an option, `final_delay`).

Times: a GIF counts each frame's delay in centiseconds. Each frame's time from the first is rounded to the nearest
one (half up, as FFmpeg's muxer rounds), so that the rounding never adds up; the last frame lasts until the video's
end (`encode.last_frame_seconds`, as VideoWriter's). Browsers show a delay under 2 cs as 10 cs, so a frame that would
come less than 2 cs after the one before it (a 60 fps video's every third frame) is left out, with a warning: the
others keep their times. A GIF source is read as browsers show it: FFmpeg 8 (PyAV's) makes its 0-cs delays 10 cs but
keeps its 1-cs ones (FFmpeg 5.1 made them 10), and gives a frame without a Graphic Control Extension the delay
before it (browsers show it 10 cs): vsr times both 10 cs as it reads them (`probe.demux_timed`), so that such a
frame keeps its place in the output. APNG keeps each delay as a fraction of seconds, exactly.

Loops: the source's count is kept (`plays`): a GIF's NETSCAPE2.0 block (none: played once; 0: for ever; n: n more
times), an APNG's acTL; any other source loops for ever, as GIFs are expected to.

Transparency: a source with alpha (`VideoStreamInfo.alpha`) keeps it. GIF's is all or nothing: a pixel whose
upscaled alpha is under half (128 of 255) is transparent (paletteuse's threshold), the others opaque; APNG keeps the
alpha as it is.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from vsr.errors import OptionError, OutputError
from vsr.fsutil import AppearedMeanwhile, check_output, fsync_folder, hidden_sibling, lock_temporary, rename_into_place
from vsr.pipelines import images
from vsr.pipelines.encode import last_frame_seconds, partial_path
from vsr.pipelines.frames import FrameBatch, VideoStreamInfo
from vsr.pipelines.image_metadata import PNG_SIGNATURE

log = logging.getLogger(__name__)

# The animation formats written, by suffix: FFmpeg's encoder (and muxer) for each.
ANIMATION_ENCODERS = {".gif": "gif", ".apng": "apng"}
# The palette, chosen by measuring (README, "GIF and APNG"): statistics of the whole frames (stats_mode=full; "diff",
# of the pixels that changed only, was a little further from the frames), and ordered (Bayer) dithering at scale 3:
# its pattern is fixed to the pixel, so what stands still stays still, where error diffusion (FFmpeg's default,
# sierra2_4a, and floyd_steinberg) makes still areas crawl from frame to frame, 2.4 to 3.4 levels on average, and
# the file 25 to 38 % larger (the GIF encoder re-sends every changed pixel). No dithering bands gradients.
PALETTEGEN = "stats_mode=full"
PALETTEUSE = "dither=bayer:bayer_scale=3"
ALPHA_THRESHOLD = 128  # a GIF pixel whose alpha is under this is transparent (paletteuse's default)
LARGEST_GIF_SIDE = 65535  # GIF's sides are 16 bits
SHORTEST_DELAY = 2  # centiseconds: browsers show a shorter delay as 10 cs
LONGEST_DELAY = 65535  # centiseconds: GIF's delays are 16 bits (655 s)


def is_animation(path: str | os.PathLike) -> bool:
    """Whether `path` names an animation file vsr writes (.gif, .apng)."""
    return Path(path).suffix.lower() in ANIMATION_ENCODERS


def check_animation_codec(output: Path, codec: str) -> None:
    """One line, before any work, for a codec named for an animation output: a GIF holds GIF's own 256-color
    pictures and an APNG PNG's."""
    suffix = output.suffix.lower()
    if codec not in ("auto", ANIMATION_ENCODERS[suffix]):
        holds = "256-color GIF pictures" if suffix == ".gif" else "PNG pictures (8-bit RGB or RGBA, lossless)"
        raise OptionError(f"--codec {codec}: a {suffix} file holds {holds} only; leave --codec out, or name the "
                          f"output .mkv (or .mp4) for {codec}")


def warn_about_encoder_options(output: Path, source: Path, crf: int | None, preset: str | None,
                               encoder_options: dict[str, str], pix_fmt: str | None) -> None:
    """A warning where a video encoder's settings are given for an animation output, which has no use for them (as
    for a video with alpha, whose codec is not the one they were meant for: a batch's settings apply to every job)."""
    given = [name for name, value in (("--crf", crf), ("--preset", preset), ("--pix-fmt", pix_fmt),
                                      ("--encoder-option", encoder_options or None)) if value is not None]
    if given:
        log.warning("%s: %s set%s a video encoder, and a %s file is written without one: left out", source,
                    ", ".join(given), "s" if len(given) == 1 else "", output.suffix.lower())


def source_plays(path: str | os.PathLike) -> int:
    """How many times `path` plays, 0 for ever: a GIF's NETSCAPE2.0 loop count (none: once; 0: for ever; n: n more
    times, n + 1 in all) or an APNG's acTL num_plays; any other file (a video) plays for ever, as GIFs do."""
    try:
        with open(path, "rb") as file:
            head = file.read(13)
            if head[:6] in (b"GIF87a", b"GIF89a"):
                return _gif_plays(file, head)
            if head.startswith(PNG_SIGNATURE):
                return _apng_plays(file)
    except (OSError, struct.error, ValueError):
        log.debug("%s: its loop count was not read", path, exc_info=True)
    return 0


def _gif_plays(file, head: bytes) -> int:
    """The plays of a GIF whose first 13 bytes (header and logical screen) are `head`, read from `file` after them:
    its blocks are walked to the NETSCAPE2.0 (or ANIMEXTS1.0) application extension, or to the end."""
    if head[10] & 0x80:  # a global color table: 3 × 2^(n+1) bytes
        file.seek(3 << ((head[10] & 7) + 1), os.SEEK_CUR)
    while kind := file.read(1):
        if kind == b"\x3b":  # the trailer
            break
        if kind == b"\x2c":  # an image: its descriptor, a local color table, the LZW code size, then sub-blocks
            descriptor = file.read(9)
            if descriptor[8] & 0x80:
                file.seek(3 << ((descriptor[8] & 7) + 1), os.SEEK_CUR)
            file.seek(1, os.SEEK_CUR)
            _skip_sub_blocks(file)
        elif kind == b"\x21":  # an extension: its label, then sub-blocks
            label = file.read(1)
            first = _sub_block(file)
            if label == b"\xff" and first in (b"NETSCAPE2.0", b"ANIMEXTS1.0"):
                data = _sub_block(file)
                if len(data) == 3 and data[0] == 1:
                    loops = struct.unpack("<H", data[1:])[0]
                    return 0 if loops == 0 else loops + 1
            if first:
                _skip_sub_blocks(file)
        else:
            break  # (not a block: a damaged file, read no further)
    return 1


def _sub_block(file) -> bytes:
    """The next sub-block's data (b"" for the terminator)."""
    size = file.read(1)
    return file.read(size[0]) if size and size[0] else b""


def _skip_sub_blocks(file) -> None:
    while (size := file.read(1)) and size[0]:
        file.seek(size[0], os.SEEK_CUR)


def _apng_plays(file) -> int:
    """An APNG's num_plays (its acTL chunk's, before the pixels); 0 where there is none."""
    file.seek(len(PNG_SIGNATURE))
    while len(header := file.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"acTL":
            return struct.unpack(">II", file.read(8))[1]
        if kind == b"IDAT":
            break
        file.seek(length + 4, os.SEEK_CUR)
    return 0


def centiseconds(seconds: Fraction) -> int:
    """`seconds` (0 or more) in whole centiseconds, halves up, as FFmpeg's muxer rounds a time into the GIF's."""
    return math.floor(seconds * 100 + Fraction(1, 2))


def gif_times(times: list[Fraction], end: Fraction) -> tuple[list[int], list[int], int]:
    """For frames shown from `times` (seconds from the first frame, increasing) until `end`: the indexes of the
    frames a GIF keeps (those at least SHORTEST_DELAY cs after the one kept before: module doc), their times in
    centiseconds, and the last one's delay (at least SHORTEST_DELAY, at most LONGEST_DELAY)."""
    kept, places = [], []
    for index, time in enumerate(times):
        place = centiseconds(time)
        if not places or place - places[-1] >= SHORTEST_DELAY:
            kept.append(index)
            places.append(place)
    last_delay = min(max(centiseconds(end) - places[-1], SHORTEST_DELAY), LONGEST_DELAY) if places else 0
    return kept, places, last_delay


def gif_loop(plays: int) -> int:
    """The gif muxer's `loop` for an animation played `plays` times (0: for ever): -1 writes no loop block (once)."""
    return -1 if plays == 1 else max(plays - 1, 0)


class AnimationWriter:
    """Writes upscaled frames into an animated GIF or APNG (`output`'s suffix); see the module doc. The interface is
    VideoWriter's: a context manager whose clean exit commits the file (written under a hidden temporary name, then
    renamed) and whose exception removes everything it made."""

    def __init__(
        self,
        output: Path,
        *,
        source: Path,
        source_info: VideoStreamInfo,
        width: int,
        height: int,
        overwrite: bool = False,
        copy_streams: bool = True,
        trim_end: Fraction | None = None,
        video_end: Fraction | None = None,
    ) -> None:
        self.output = Path(output)
        self._suffix = self.output.suffix.lower()
        self.encoder = ANIMATION_ENCODERS[self._suffix]
        self._source, self._overwrite = Path(source), overwrite
        self.alpha = source_info.alpha  # write() then takes RGBA frames
        self.pix_fmt = "pal8" if self.encoder == "gif" else ("rgba" if self.alpha else "rgb24")  # of the file
        self.rotation = 0  # neither format keeps a display matrix: the frames are turned upright
        self._orientation = images.orientation_of_rotation(source_info.rotation)
        self.width, self.height = (height, width) if self._orientation in (6, 8) else (width, height)
        self._frame_size = height, width  # of the frames given to write()
        if self.encoder == "gif" and max(self.width, self.height) > LARGEST_GIF_SIDE:
            raise OptionError(f"{self.output}: {self.width}x{self.height} is too big for a GIF (at most "
                              f"{LARGEST_GIF_SIDE} pixels a side); use .apng or .mkv, or a smaller --outscale, "
                              "--width or --height")
        self.frames_written = 0
        self.frames_kept = 0  # of them, those in the file (a GIF leaves out frames under 2 cs apart: module doc)
        self._time_base = source_info.time_base
        self._one_frame = 1 / source_info.average_rate if source_info.average_rate else None
        self._video_end, self._trim_end = video_end, trim_end
        self._pts: list[int] = []  # of the frames written, in order
        self._plays = source_plays(self._source)
        self._done = self._flushed = False
        self._said_captions = False
        check_output(self.output, self._source, overwrite)
        _warn_about_what_is_lost(self.output, self._source, source_info, copy_streams)
        self._temp = partial_path(self.output)
        self._frames_file = hidden_sibling(self.output, self.output.name, ".frames.nut")
        self._store: av.container.OutputContainer | None = None
        self._palette_graph = self._use_graph = None  # palettegen's graph; paletteuse's, once the palette is made
        try:
            self._lock = lock_temporary(self._temp, self.output)
        except OutputError:  # (another run holds it: said already; an OutputError is an OSError too)
            raise
        except OSError as error:
            raise OutputError(f"cannot write {self.output}: {error.strerror or error}") from error
        with self._aborting():
            self._store = av.open(str(self._frames_file), "w", format="nut")
            stream = self._store.add_stream("ffv1", rate=25)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "bgra"
            stream.codec_context.time_base = stream.time_base = self._time_base
            stream.codec_context.options = {"level": "3", "slices": "4"}
            stream.codec_context.thread_type, stream.codec_context.thread_count = "SLICE", 0
            self._store_stream = stream
            if self.encoder == "gif":
                self._palette_graph = _palette_graph(self.width, self.height, self._time_base)

    def write(self, batch: FrameBatch) -> None:
        """Take a batch: frames N×3×H×W RGB (N×4×H×W RGBA where `alpha`; uint8, or float in [0, 1]) at
        H×W = height×width, on any device."""
        if self._done or self._flushed:
            raise ValueError(f"the writer of {self.output} is already closed")
        frames = batch.frames.detach().cpu()
        if frames.ndim != 4 or frames.shape[1] not in (3, 4) or tuple(frames.shape[2:]) != self._frame_size:
            raise ValueError(f"expected frames N×{4 if self.alpha else 3}×{self._frame_size[0]}×"
                             f"{self._frame_size[1]}, got {tuple(frames.shape)}")
        if batch.captions and not self._said_captions:
            log.warning("%s: the video carries closed captions in its frames (CEA-608/708), which a %s file has no "
                        "place for: they are not written", self._source, self._suffix)
            self._said_captions = True
        with self._aborting():
            converted: tuple[int, av.VideoFrame] | None = None  # a repeated picture is converted once
            for picture, pts in zip(batch.pictures(), batch.pts):
                if converted is None or converted[0] != picture:
                    converted = picture, av.VideoFrame.from_ndarray(self._bgra(frames[picture]), format="bgra")
                frame = converted[1]
                frame.pts, frame.time_base = pts, self._time_base
                if self._palette_graph is not None:
                    self._palette_graph[1].push(frame)
                for packet in self._store_stream.encode(frame):
                    self._store.mux(packet)
                self._pts.append(pts)
                self.frames_written += 1

    def _bgra(self, planes: torch.Tensor) -> np.ndarray:
        """One upscaled frame (C×H×W, RGB or RGBA, uint8 or float) as an upright H×W×4 BGRA array (opaque where
        the frame has no alpha)."""
        if planes.dtype != torch.uint8:
            planes = planes.float().clamp(0, 1).mul(255).round().to(torch.uint8)
        if self._orientation != 1:
            planes = images.upright(planes, self._orientation)
        height, width = planes.shape[1:]
        bgra = np.full((height, width, 4), 255, np.uint8)
        bgra[..., 2::-1] = planes[:3].permute(1, 2, 0).numpy()
        if planes.shape[0] == 4:
            bgra[..., 3] = planes[3].numpy()
        return bgra

    def flush(self) -> None:
        """The second pass (module doc): the frames read back, mapped to the palette (GIF) and encoded into the
        temporary file. After the last write."""
        if self._flushed:
            return
        with self._aborting():
            for packet in self._store_stream.encode(None):
                self._store.mux(packet)
            self._store.close()
            self._store = None
            if self._pts:
                self._encode()
        self._flushed = True

    def _encode(self) -> None:
        """The frames' times worked out (module doc), then each frame read back and written into the temporary."""
        first = self._pts[0]
        times = [(pts - first) * self._time_base for pts in self._pts]
        start = self._pts[-1] * self._time_base
        one_frame = self._one_frame if self._one_frame is not None else (
            (self._pts[-1] - self._pts[-2]) * self._time_base if len(self._pts) > 1 else Fraction(1, 10))
        end = times[-1] + last_frame_seconds(start, one_frame, self._video_end, self._trim_end)
        if self.encoder == "gif":
            kept, places, last_delay = gif_times(times, end)
            if len(kept) < len(times):
                log.warning("%s: %d of %d frames come less than %d hundredths of a second after the frame before "
                            "them, which GIF cannot show (browsers slow such frames to 0.1 s): they are left out, "
                            "the others keep their times (.apng or .mkv keep every frame)", self._source,
                            len(times) - len(kept), len(times), SHORTEST_DELAY)
            options = {"loop": str(gif_loop(self._plays)), "final_delay": str(last_delay)}
            time_base = Fraction(1, 100)
        else:
            kept, places = list(range(len(times))), [pts - first for pts in self._pts]
            last = end - times[-1]
            options = {"plays": str(self._plays), "final_delay": f"{last.numerator}/{last.denominator}"}
            time_base = self._time_base
        with av.open(str(self._temp), "w", format=self.encoder, options=options) as container:
            stream = container.add_stream(self.encoder, rate=25)  # (the rate tags nothing: frames carry times)
            stream.width, stream.height = self.width, self.height
            stream.pix_fmt = self.pix_fmt
            stream.codec_context.time_base = stream.time_base = time_base
            place_of = dict(zip(kept, places))
            self.frames_kept = len(kept)
            for index, frame in enumerate(self._read_back()):
                if index not in place_of:
                    continue
                if self.encoder == "gif":
                    frame.pts = index  # (paletteuse pairs each frame with the palette, given at 0, by its time)
                    encoded = self._mapped(frame)
                else:
                    encoded = frame.reformat(format=stream.pix_fmt)
                encoded.pts, encoded.time_base = place_of[index], time_base
                for packet in stream.encode(encoded):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)

    def _read_back(self):
        """The frames as written, from the lossless file."""
        with av.open(str(self._frames_file), "r", format="nut") as store:
            stream = store.streams.video[0]
            stream.thread_type = "SLICE"
            yield from store.decode(stream)

    def _mapped(self, frame: av.VideoFrame) -> av.VideoFrame:
        """`frame` mapped to the clip's palette (pal8), through paletteuse."""
        if self._use_graph is None:  # (the first frame: the palette is made of them all)
            _, source, graph_sink = self._palette_graph
            source.push(None)
            palette = graph_sink.pull()
            self._use_graph = _use_graph(self.width, self.height, palette)
        _, source, sink = self._use_graph
        source.push(frame)
        return sink.pull()

    def close(self) -> None:
        """Finish the file (`flush`, where not done) and rename it into place; the frames' file goes."""
        if self._done:
            return
        self.flush()
        try:
            if not self._pts:  # (no frame: nothing to write; upscale_video says why)
                raise OutputError(f"{self.output}: no frame to write")
            with open(self._temp, "rb+") as file:
                os.fsync(file.fileno())
            rename_into_place(self._temp, self.output, self._overwrite)
            fsync_folder(self.output.parent)
        except FileExistsError:
            self.abort()
            raise AppearedMeanwhile(self.output) from None
        except OSError as error:
            self.abort()
            raise OutputError(f"cannot write {self.output}: {error.strerror or error}") from error
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._frames_file.unlink(missing_ok=True)
        self._unlock()
        log.info("wrote %s: %d frames (of %d upscaled), %dx%d %s", self.output, self.frames_kept, self.frames_written,
                 self.width, self.height, self.encoder)

    def abort(self) -> None:
        """Stop, and remove the temporary files; the final name is left untouched."""
        if self._done:
            return
        self._done = True
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # already failing: the first error is the one to report
                log.debug("error while aborting %s", self.output, exc_info=True)
        for path in (self._temp, self._frames_file):
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                log.warning("could not remove the temporary file %s (%s)", path, error.strerror or error)
        self._unlock()

    def _unlock(self) -> None:
        if getattr(self, "_lock", None) is not None:
            self._lock.close()  # (releases the lock)
            self._lock = None

    @contextlib.contextmanager
    def _aborting(self):
        """Any error within removes what the writer made (`abort`); the disk's and FFmpeg's become vsr's line."""
        try:
            yield
        except (OSError, av.FFmpegError) as error:
            self.abort()
            raise self._write_error(error) from error
        except BaseException:
            self.abort()
            raise

    def _write_error(self, error: Exception) -> OutputError:
        if isinstance(error, OSError):  # the disk: full, gone, read-only (PyAV's errors of errno are OSErrors)
            return OutputError(f"cannot write {self.output}: {error.strerror or error}")
        return OutputError(f"cannot write {self.output}: {error}")

    def __enter__(self) -> AnimationWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _palette_graph(width: int, height: int, time_base: Fraction):
    """A filter graph that takes BGRA frames and, once told the end, gives the palette of them all (palettegen):
    the graph, its buffer and its buffersink (the graph kept with them: freed, it takes them along)."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="bgra", time_base=time_base)
    # (A transparent entry is kept even for an opaque clip, as FFmpeg keeps it: the GIF encoder marks the pixels
    # that did not change since the frame before with it, which makes the file smaller.)
    generator = graph.add("palettegen", PALETTEGEN)
    sink = graph.add("buffersink")
    source.link_to(generator)
    generator.link_to(sink)
    graph.configure()
    return graph, source, sink


def _use_graph(width: int, height: int, palette: av.VideoFrame):
    """A filter graph that maps BGRA frames to `palette` (paletteuse; pal8 out): the graph, its buffer and its
    buffersink."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="bgra", time_base=Fraction(1, 100))
    palette_source = graph.add_buffer(width=palette.width, height=palette.height, format=palette.format.name,
                                      time_base=Fraction(1, 100))
    mapper = graph.add("paletteuse", f"{PALETTEUSE}:alpha_threshold={ALPHA_THRESHOLD}")
    sink = graph.add("buffersink")
    source.link_to(mapper, 0, 0)
    palette_source.link_to(mapper, 0, 1)
    mapper.link_to(sink)
    graph.configure()
    palette.pts = 0
    palette_source.push(palette)
    palette_source.push(None)
    return graph, source, sink


def _warn_about_what_is_lost(output: Path, source: Path, info: VideoStreamInfo, copy_streams: bool) -> None:
    """A warning for each thing of the source that an animation file cannot keep."""
    from vsr.pipelines.probe import open_input
    from vsr.pipelines.sequences import is_sequence

    suffix = output.suffix.lower()
    if info.bit_depth > 8:
        log.warning("%s: the video has %d bits per component and a %s file 8", source, info.bit_depth, suffix)
    if info.sample_aspect_ratio not in (None, 0, 1):
        log.warning("%s: the video's pixels are not square (aspect %s) and a %s file's are: the frames look "
                    "narrower or wider than the video; --width/--height size them as shown, with square pixels",
                    source, info.sample_aspect_ratio, suffix)
    if info.color.transfer in ("smpte2084", "arib-std-b67"):
        log.warning("%s: the video is HDR (%s); the frames keep its coded values, which viewers show as SDR "
                    "(washed out)", source, info.color.transfer)
    if is_sequence(source) or not copy_streams:
        return
    with open_input(source) as container:
        others = [stream.type for stream in container.streams if stream.index != info.index]
    if others:
        log.warning("%s: a %s file holds pictures only: %d other stream(s) (%s) are not written", source, suffix,
                    len(others), ", ".join(sorted(set(others))))
