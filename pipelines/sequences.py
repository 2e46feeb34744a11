"""Image sequences: a video's frames as numbered image files, named as FFmpeg's image2 names them.

    vsr upscale movie.mp4 -o frames/%06d.png        # frames/000001.png, ... (16-bit PNG from a 10-bit video)
    vsr upscale 'render/f%04d.png' --fps 24         # render/f0101.x4.png, ... (the input's numbers kept)
    vsr upscale 'render/f%04d.png' --fps 24 -o render.mp4

Reading: `open_sequence` opens the files a pattern names with FFmpeg's image2 demuxer, as one video stream at a
frame rate given by the user (25 by default, as FFmpeg's), so a sequence goes through the same decoder, engine and
writers as a video (`probe.open_input` sends every pattern here). Its frames must be numbered without gaps: a
missing frame would silently shorten the video and shift every frame after it.

Writing: `ImageSequenceWriter` takes the place of `encode.VideoWriter` in `upscale.upscale_video`: the constructor
arguments that apply, `write(batch)`, `close()`, `abort()`. Each frame is written whole under its final name (a
temporary file renamed), so a run cut short leaves complete frames and no partial one. The frames are shown as the
video shows them: turned upright by the stream's rotation. What a sequence cannot hold (frame times, audio, the
pixel aspect ratio) is said once each in a warning.

Resuming: while a sequence is being written, a hidden file beside its frames (`.NAME.vsr-run.json`, e.g.
`frames/.%06d.png.vsr-run.json`) says what is being made (`upscale.run_record`: the source as it is now and the
settings that shape the frames); it is removed once the last frame is written. Run the same command after a crash,
Ctrl-C or `kill -9` and the frames already written, from the first one on, are kept and not upscaled again: the
decoder skips them and the run goes on from the first one missing. Other settings or a changed source are refused
as existing frames are (`--overwrite` starts over).

Several devices (`vsr upscale --devices`, pipelines/segments.py): the run prepares the folder (`start_sequence`) and
each worker writes whole segments of the video into it, each with a writer given its segment's first frame
(`first_index`), numbered as one run numbers them; a segment resumes from its own first missing frame.
"""

from __future__ import annotations

import json
import logging
import os
import re
from fractions import Fraction
from pathlib import Path

import av
import torch

from vsr.errors import InputError, OptionError, OutputError
from vsr.fsutil import check_name_length, check_not_an_input, hidden_sibling, lock_temporary, write_bytes_atomic
from vsr.pipelines import images
from vsr.pipelines.frames import FrameBatch, VideoStreamInfo
from vsr.pipelines.image_metadata import PNG_SIGNATURE
from vsr.pipelines.probe import ONE_FILE

log = logging.getLogger(__name__)

DEFAULT_RATE = Fraction(25)  # frames per second of a sequence read without --fps, as FFmpeg's image2 assumes
# What a sequence may be read from: the still images vsr reads, and DPX, film scans' format.
READ_SUFFIXES = (*images.READ_SUFFIXES, ".dpx")

# printf's integer conversion as FFmpeg's image2 takes it: %d, or %0Nd for N digits with leading zeros.
_NUMBER = re.compile(r"%(0\d+)?d")
FIRST_NUMBER = 1  # FFmpeg's image2 muxer starts at 1 too
# The suffixes of the video files vsr reads and writes, the one list of them: a name ending so is one file, whatever
# % it has (`is_sequence`); `vsr batch` takes such files for videos, `vsr train` (less GIF and APNG) too. Containers
# first, then raw streams (encode.STREAM_TIMED_SUFFIXES), then the animated pictures FFmpeg plays as videos.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg",
                  ".mpeg", ".vob", ".flv", ".wmv", ".asf", ".ogv", ".mxf", ".nut", ".y4m", ".ivf",
                  ".h264", ".264", ".avc", ".hevc", ".265", ".h265", ".m2v", ".mpv",
                  ".gif", ".apng")


def is_sequence(path: str | Path) -> bool:
    """Whether `path` names an image sequence: a file name with one %d or %0Nd in it, e.g. frames/%06d.png. Not a
    video's name: "100%done.mp4" was read as a sequence ("not a sequence of images vsr reads"), and -o "50%done.mkv"
    refused as one ("unsupported image type"); FFmpeg too numbers files only for its image2 format."""
    name = Path(path).name
    return Path(name).suffix.lower() not in VIDEO_SUFFIXES and len(_NUMBER.findall(name.replace("%%", ""))) == 1


def frame_path(pattern: Path, number: int) -> Path:
    """The file of frame `number`: frames/%06d.png, 12 → frames/000012.png ("%%" is a literal %)."""
    return pattern.with_name(pattern.name % number)


def _frame_name(pattern: Path) -> str:
    """A regular expression for the file names of `pattern`'s frames, the number as its group."""
    before, digits, after = _NUMBER.split(pattern.name.replace("%%", "\0"), maxsplit=1)
    width = int(digits) if digits else 1  # %06d takes 6 digits or more, %d one or more
    return re.escape(before).replace("\0", "%") + rf"(\d{{{width},}})" + re.escape(after).replace("\0", "%")


def existing_frames(pattern: Path) -> dict[int, Path]:
    """The files in `pattern`'s folder that it names, by frame number."""
    if not pattern.parent.is_dir():
        return {}
    name = re.compile(_frame_name(pattern) + r"\Z")
    found = {}
    for path in pattern.parent.iterdir():
        match = name.match(path.name)
        if match and frame_path(pattern, int(match[1])).name == path.name:
            found[int(match[1])] = path
    return found


def _remove_unfinished_frames(pattern: Path) -> None:
    """The temporaries (`fsutil.temporary_sibling`) of frames whose writing a kill -9 cut short."""
    unfinished = re.compile(r"\." + _frame_name(pattern) + r"\.[0-9a-f]{8}\.part\Z")
    for path in pattern.parent.iterdir():
        if unfinished.match(path.name):
            path.unlink(missing_ok=True)


def _check_pattern(pattern: Path) -> None:
    """One line where a sequence's name has a % that is not its frame number (which printf would refuse)."""
    try:
        pattern.name % 1
    except (TypeError, ValueError):
        raise OptionError(f"{pattern}: a sequence's name has one frame number (%d, %04d); write any other % as %%") \
            from None


def first_frame(pattern: Path) -> int:
    """The number of the first frame of the sequence `pattern`, which must be complete: one line (InputError) where
    no file matches, where a frame between the first and the last is missing, or where a file is empty."""
    _check_pattern(pattern)
    if pattern.suffix.lower() not in READ_SUFFIXES:
        raise InputError(f"{pattern}: not a sequence of images vsr reads ({', '.join(READ_SUFFIXES)})")
    found = existing_frames(pattern)
    numbers = sorted(found)
    if not numbers:
        raise InputError(f"{pattern}: no file matches (frame 1 would be {frame_path(pattern, 1)})")
    empty = [found[number] for number in numbers if found[number].stat().st_size == 0]
    if empty:  # (FFmpeg's image2 demuxer ends the video there, without an error)
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise InputError(f"{empty[0]}: the file is empty{more}; a sequence is read without gaps")
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"{pattern}: frame {missing[0]}{more} missing between frames {numbers[0]} and "
                         f"{numbers[-1]} ({frame_path(pattern, missing[0]).name}); a sequence is read without gaps")
    return numbers[0]


def open_sequence(pattern: str | Path, frame_rate: Fraction | None = None) -> av.container.InputContainer:
    """The frames `pattern` names as one video stream at `frame_rate` (DEFAULT_RATE when None): pts 0, 1, 2, ... in
    a time base of 1/frame_rate, from the first frame found (`first_frame`)."""
    pattern = Path(pattern)
    first = first_frame(pattern)
    options = {"framerate": str(frame_rate or DEFAULT_RATE), "start_number": str(first)}
    # (FFmpeg expands the whole name: a "%" in a folder's name is written "%%")
    escaped = Path(str(pattern.parent).replace("%", "%%")) / pattern.name
    try:
        return av.open(str(escaped), "r", format="image2", options=options)
    except (av.FFmpegError, OSError) as error:
        raise InputError(f"{pattern}: cannot be read as an image sequence ({error})") from error


def run_file(pattern: Path) -> Path:
    """The hidden file that says what the sequence `pattern` being written is (see the module doc)."""
    return hidden_sibling(pattern, pattern.name, ".vsr-run.json")


def resumes(pattern: Path, record: dict | None) -> bool:
    """Whether the frames of `pattern` on disk are an unfinished run of the same source and settings (`record`)."""
    try:
        return record is not None and json.loads(run_file(pattern).read_text()) == json.loads(json.dumps(record))
    except (OSError, ValueError):
        return False


def check_sequence_output(pattern: Path, source: Path, overwrite: bool, record: dict | None = None) -> None:
    """One line for each way writing the sequence `pattern` (made from `source`) would go wrong, before any work
    starts. Existing frames are refused, unless `overwrite`, or unless they are an unfinished run making the same
    (`record`), which resumes; never one that is a file of another input of the run (`vsr upscale 'f%04d.png'
    'f%04d.x4.png' --overwrite`, run again, replaced the second input's frames before reading them)."""
    _check_pattern(pattern)
    images.check_writable(pattern)
    check_name_length(frame_path(pattern, FIRST_NUMBER))  # (else said as the first frame was written, once upscaled)
    found = existing_frames(pattern)
    for number in sorted(found):
        check_not_an_input(found[number], pattern, source)
    if found and not overwrite and not resumes(pattern, record):
        first = found[min(found)]
        begun = " (begun by a run from another source or with other settings)" if run_file(pattern).exists() else ""
        raise OutputError(f"{pattern}: {len(found)} frame(s) of this sequence already exist ({first.name}, ...)"
                          f"{begun}; use --overwrite to replace them")
    if not pattern.parent.exists() and not pattern.parent.parent.is_dir():
        raise OutputError(f"{pattern.parent.parent}: output folder does not exist")
    if pattern.parent.exists() and not pattern.parent.is_dir():
        raise OutputError(f"{pattern.parent}: not a folder")


def _gray_and_profile(pattern: Path, pix_fmt: str) -> tuple[bool, bytes | None]:
    """Whether a sequence is gray (its stream, which takes its first file's format, and every one of its files: a
    color file written gray would lose its color), and its first file's ICC profile."""
    from vsr.pipelines.image_metadata import icc_profile

    files = [path for _, path in sorted(existing_frames(pattern).items())]
    with open(files[0], "rb") as file:
        profile = icc_profile(file.read())
    return images.is_gray(av.VideoFormat(pix_fmt)) and all(map(_stored_gray, files)), profile


def _stored_gray(path: Path) -> bool:
    """Whether an image file stores gray pixels: a PNG's header says (its first 26 bytes); other files are opened."""
    with open(path, "rb") as file:
        head = file.read(26)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return head[25] in (0, 4)  # color type: gray, gray and alpha
    try:
        with av.open(str(path), options=ONE_FILE) as container:
            return images.is_gray(av.VideoFormat(container.streams.video[0].codec_context.pix_fmt))
    except (av.FFmpegError, OSError, IndexError):
        return False


def _flattens(info: VideoStreamInfo, suffix: str) -> bool:
    """Whether frames with alpha go into files without (JPEG): flattened onto white, as images.encode_image does."""
    return info.alpha and suffix in (".jpg", ".jpeg")


def _bit_depth(info: VideoStreamInfo, suffix: str) -> int:
    """The bits per component of the frame files: 16 in PNG from a video of more than 8, else 8."""
    return 16 if info.bit_depth > 8 and suffix == ".png" else 8


def start_sequence(pattern: Path, *, source: Path, source_info: VideoStreamInfo, overwrite: bool = False,
                   copy_streams: bool = True, record: dict | None = None) -> SequenceLock:
    """What comes before the first frame of the sequence `pattern` is written: the lock that keeps a second run out
    (`SequenceLock`, to be released when the run ends), the checks (`check_sequence_output`), a warning for each
    thing of `source` that image files cannot hold (`source_info`: the upscaled frames'), the earlier frames gone if
    `overwrite` (now, not as each is replaced: a run cut short must not take them as its own), the folder made, a
    killed run's unfinished frames removed, and the run file written (`record`, see resumes)."""
    lock = SequenceLock(pattern) if pattern.parent.is_dir() else None  # (before anything is removed)
    try:
        check_sequence_output(pattern, source, overwrite, record)
        _warn_about_what_is_lost(pattern, source, source_info, copy_streams)
        try:
            if overwrite:
                for path in existing_frames(pattern).values():
                    path.unlink()
            pattern.parent.mkdir(exist_ok=True)
            lock = lock or SequenceLock(pattern)
            _remove_unfinished_frames(pattern)
            if record is not None:
                write_bytes_atomic(run_file(pattern), (json.dumps(record, indent=1) + "\n").encode())
        except OSError as error:
            raise OutputError(f"{pattern.parent}: cannot write there ({error.strerror or error})") from None
    except BaseException:
        if lock is not None:
            lock.release(remove=False)
        raise
    return lock


class SequenceLock:
    """A hidden lock file beside the frames, held (flock) by the run writing them: a second run writing the same
    sequence is one line (both wrote, removing each other's frames and temporaries, and both said they were done).
    A killed run's lock is released by the kernel, so the same command resumes."""

    def __init__(self, pattern: Path):
        self.path = hidden_sibling(pattern, pattern.name, ".vsr-lock")
        try:
            self._file = lock_temporary(self.path, pattern)
        except OutputError:  # another run holds it
            raise
        except OSError as error:  # a folder that cannot be written (was a traceback)
            raise OutputError(f"{pattern.parent}: cannot write there ({error.strerror or error})") from None

    def release(self, remove: bool = True) -> None:
        """Let the next run in; `remove`: the lock file too (the run ended, or was stopped)."""
        if self._file is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        self._file.close()
        self._file = None


def _warn_about_what_is_lost(pattern: Path, source: Path, info: VideoStreamInfo, copy_streams: bool) -> None:
    from vsr.pipelines.probe import is_variable_rate, open_input  # which opens sequences with this module

    suffix = pattern.suffix.lower()
    if _flattens(info, suffix):
        log.warning("%s: %s files hold no transparency: the frames are flattened onto white (.png and .webp "
                    "keep it)", source, suffix)
    if info.bit_depth > 8 and _bit_depth(info, suffix) == 8:
        log.warning("%s: the video has %d bits per component and %s files 8: .png keeps 16", source,
                    info.bit_depth, suffix)
    if info.sample_aspect_ratio not in (None, 0, 1):
        log.warning("%s: the video's pixels are not square (aspect %s) and image files' are: the frames look "
                    "narrower or wider than the video; --width/--height size them as shown, with square pixels",
                    source, info.sample_aspect_ratio)
    if info.color.transfer in ("smpte2084", "arib-std-b67"):
        log.warning("%s: the video is HDR (%s); the frames keep its coded values, which image viewers show as "
                    "SDR (washed out)", source, info.color.transfer)
    if is_sequence(source):
        return
    with open_input(source) as container:  # (captions are said when frames bring some: see write)
        others = [stream.type for stream in container.streams if stream.index != info.index]
    if others and copy_streams:
        log.warning("%s: an image sequence holds pictures only: %d other stream(s) (%s) are not written",
                    source, len(others), ", ".join(sorted(set(others))))
    if is_variable_rate(source, info.index):
        log.warning("%s: the video's frame times vary and an image sequence keeps none: frames are numbered one "
                    "after another", source)


def frame_number(first_file: int | None, index: int, pts: int) -> int:
    """The file number of an output frame: a video's `index`-th frame (from 0) is numbered from FIRST_NUMBER on; a
    sequence's frame (`first_file`: its source's first file number) keeps its number, `pts` from the first."""
    return FIRST_NUMBER + index if first_file is None else first_file + pts


def stopped_sequence(pattern: Path, frames: int, resumable: bool) -> None:
    """A run writing `pattern` stopped after `frames` frames: said, where there are some; else nothing to resume."""
    if frames:
        again = "; the same command resumes from there" if resumable else ""
        log.warning("%s: stopped after %d frame(s), each written whole%s", pattern, frames, again)
    else:
        run_file(pattern).unlink(missing_ok=True)


class ImageSequenceWriter:
    """Writes upscaled frames as numbered image files (PNG keeps 16 bits and alpha, WebP alpha, JPEG neither)."""

    def __init__(
        self,
        pattern: str | Path,
        *,
        source: str | Path,
        source_info: VideoStreamInfo,
        width: int,
        height: int,
        overwrite: bool = False,
        copy_streams: bool = True,
        quality: int = 95,
        record: dict | None = None,
        first_pts: int = 0,
        first_index: int | None = None,
    ) -> None:
        """`record`: what the run makes (`upscale.run_record`); with it, an unfinished run of the same record
        resumes (`resumed` says how many frames it kept: the caller skips them) and a run cut short can be resumed.
        `first_pts`: the first frame's (a sequence read from --start keeps its numbers from there).
        `first_index`: this writer writes one segment of the sequence (`vsr upscale --devices`), from the video's
        frame `first_index` (counted from 0) on, in a folder that `start_sequence` prepared: it resumes from the
        segment's frames already there, and leaves the run file and the messages to the run."""
        self.output = Path(pattern)
        self.width, self.height = width, height
        self.frames_written = 0
        self._quality = quality
        suffix = self.output.suffix.lower()
        self.alpha = source_info.alpha  # write() then takes RGBA frames
        self._flatten = _flattens(source_info, suffix)
        self._bit_depth = _bit_depth(source_info, suffix)
        self._orientation = images.orientation_of_rotation(source_info.rotation)
        if self._orientation in (6, 8):  # the files are upright: their sides are the frames' turned
            self.width, self.height = height, width
        images.check_fits(self.output, self.width, self.height)
        # A sequence made from a sequence is written as `vsr upscale IMAGE` writes each of its files: gray stays gray
        # (in PNG), and the first file's color profile goes into every frame.
        self._gray, self._icc_profile = (_gray_and_profile(Path(source), source_info.pix_fmt) if is_sequence(source)
                                         else (False, None))
        # A sequence made from a sequence keeps its frame numbers (pts 0, 1, ... from its first frame); a video's
        # frames are numbered from 1.
        self._first_number = first_frame(Path(source)) if is_sequence(source) else None
        self._done = False
        self._part = first_index is not None
        self._first_index = first_index or 0
        self._source, self._said_captions = Path(source), False
        resuming = self._part or (not overwrite and resumes(self.output, record))
        self._lock = None if self._part else start_sequence(
            self.output, source=Path(source), source_info=source_info, overwrite=overwrite,
            copy_streams=copy_streams, record=record)
        # Resuming: the earlier run's frames from the first on are kept; any after a gap are written again. A file
        # put at a frame's name while this run works stays unless `overwrite` (it was replaced without a word).
        self.resumed = 0
        self._overwrite, self._earlier = overwrite, set()
        if resuming:
            first = self._number(0, first_pts)
            written = existing_frames(self.output)
            self._earlier = set(written)
            while first + self.resumed in written:
                self.resumed += 1
            if not self._part:
                log.warning("%s: resuming: %d frames were written by an earlier run", self.output, self.resumed)
        self._index = self.resumed  # of the next frame, in the video's order
        self._record = record

    def _number(self, index: int, pts: int) -> int:
        """The file number of this writer's `index`-th frame (from 0), at `pts`."""
        return frame_number(self._first_number, self._first_index + index, pts)

    def write(self, batch: FrameBatch) -> None:
        """Write a batch: frames N×3×H×W RGB (N×4×H×W RGBA where `alpha`; uint8, or float in [0, 1]) at
        H×W = height×width, on any device."""
        if self._done:
            raise ValueError(f"the writer of {self.output} is already closed")
        if batch.captions and not self._said_captions:
            log.warning("%s: the video carries closed captions in its frames (CEA-608/708), which image files have "
                        "no place for: they are not written", self._source)
            self._said_captions = True
        frames = batch.frames.detach().cpu()
        encoded = None, b""  # (picture, its file's bytes): a repeated picture is encoded once
        for picture, pts in zip(batch.pictures(), batch.pts):
            number = self._number(self._index, pts)
            try:
                if encoded[0] != picture:
                    # As float one picture at a time: the whole batch at once took 12 bytes per pixel of each frame
                    # (4.8 GB for a batch of four 8K frames).
                    planes = frames[picture]
                    planes = planes.float() / 255 if planes.dtype == torch.uint8 else planes.float()
                    encoded = picture, images.image_file(self._image(planes), self.output.suffix, self._quality)
                images.write_file(frame_path(self.output, number), encoded[1],
                                  overwrite=self._overwrite or number in self._earlier)
            except BaseException:
                self.abort()
                raise
            self.frames_written += 1
            self._index += 1

    def _image(self, planes: torch.Tensor) -> images.Image:
        """An upscaled frame (float RGB or RGBA) as the image its file holds: upright, JPEG's alpha flattened."""
        if self._orientation != 1:
            planes = images.upright(planes, self._orientation)
        rgb, alpha = planes[:3], (planes[3:4] if planes.shape[0] == 4 else None)
        if alpha is not None and self._flatten:
            rgb, alpha = rgb * alpha + (1 - alpha), None
        return images.Image(rgb=rgb, alpha=alpha, bit_depth=self._bit_depth, gray=self._gray,
                            icc_profile=self._icc_profile)

    def flush(self) -> None:
        """Nothing to flush: each frame's file is written as it comes (as VideoWriter.flush's place is)."""

    def close(self) -> None:
        """The sequence is whole: its run file goes (a segment's writer leaves that to the run)."""
        if self._done:
            return
        self._done = True
        if not self._part:
            run_file(self.output).unlink(missing_ok=True)
            self._lock.release()
            log.info("wrote %s: %d frames, %dx%d", self.output, self.frames_written, self.width, self.height)

    def abort(self) -> None:
        """Stop; the frames written so far stay, each one whole, and the same run can resume from them."""
        if not self._done and not self._part:
            stopped_sequence(self.output, self._index, self._record is not None)
            self._lock.release()
        self._done = True

    def __enter__(self) -> ImageSequenceWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def check_number_in_file_name(output: Path) -> None:
    """One line for an output whose frame number (%d) is in a folder's name (a%04d/x.png), not the file's."""
    if _NUMBER.search(output.parent.as_posix()) and not output.parent.exists():
        raise OptionError(f"{output}: the frame number (%d) goes in the file name, not in a folder's")


def check_sequence_options(source: Path, output: Path | None, video, overwrite: bool,
                           record: dict | None = None) -> None:
    """One line, before any work, for what an image sequence cannot do (`video`: a VideoOptions): --fps given for a
    video, which keeps its own frame times; a video encoder's option given for a sequence output; an output
    sequence whose frames exist, unless they are an unfinished run of the same `record` (`upscale.run_record`)."""
    if video.fps is not None and not is_sequence(source):
        raise OptionError(f"--fps sets the frame rate of an image sequence (frames/%06d.png); {source} keeps its "
                          f"own frame times")
    if output is None:
        return
    output = Path(output)
    check_number_in_file_name(output)
    if is_sequence(output):
        if output.absolute() == Path(source).absolute() or _writes_over(output, Path(source)):
            raise OutputError(f"{output}: the output would replace the input; choose another name with -o")
        _check_no_video_options(video)
        check_sequence_output(output, Path(source), overwrite, record)
    elif output.suffix.lower() in images.READ_SUFFIXES:
        raise OptionError(f"{output}: one image; to write every frame as an image, number them: "
                          f"{output.with_name(f'{output.stem}%06d{output.suffix}')} (an animation: .gif or .apng)")


def _writes_over(output: Path, source: Path) -> bool:
    """Whether frames of the sequence `output` would replace files of the sequence `source` named another way
    (fr/../fr/%03d.png, a link to its folder, or fr/%d.png where fr/%03d.png has 100.png...): the same files."""
    if not is_sequence(source):
        return False
    inputs = {(stat.st_dev, stat.st_ino) for stat in map(os.stat, existing_frames(source).values())}
    return any((stat.st_dev, stat.st_ino) in inputs for stat in map(os.stat, existing_frames(output).values()))


def _check_no_video_options(options) -> None:
    given = [name for name, value in (("--codec", options.codec != "auto"), ("--crf", options.crf is not None),
                                      ("--preset", options.preset is not None),
                                      ("--encoder-option", bool(options.encoder_options)),
                                      ("--pix-fmt", options.pix_fmt is not None)) if value]
    if given:
        raise OptionError(f"{given[0]} sets the video encoder; an image sequence is written as image files "
                          f"(.png keeps 16 bits, .jpg and .webp are 8-bit)")
