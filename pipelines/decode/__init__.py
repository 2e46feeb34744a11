"""Video decoders: frames of one video stream, in presentation order, each with its own timestamp.

    from vsr.pipelines.decode import open_decoder

    with open_decoder("movie.mp4", start=10.0, end=20.0) as decoder:
        print(decoder.info.width, decoder.info.height, decoder.info.time_base, decoder.device)
        for batch in decoder.batches(8):
            batch.frames  # N×3×H×W RGB on decoder.device: uint8 (8-bit sources) or float32 in [0, 1] (deeper);
                          # N×4×H×W RGBA where decoder.info.alpha
            batch.pts     # each frame's pts, in decoder.info.time_base

The interface every backend keeps (`Decoder`):
- `info: VideoStreamInfo` (geometry, pixel format, bit depth, color, time base, rotation: see frames.py) and
  `device: torch.device`, where the frames are. Both are known as soon as the decoder is open.
- `batches(batch_size)` yields `FrameBatch`es once, in presentation order. The frames are stored channels-last.
  A stream with alpha (`info.alpha`) gives RGBA, decoded by PyAV in software (the other backends and NVDEC fall
  back to it). Colors: YUV is converted with the stream's own matrix and range (BT.601 when it declares none, as FFmpeg
  does; `rgb_matrix` says which), frames are not rotated (`info.rotation` says how to show them).
- Timestamps are the stream's own: a frame the decoder cannot produce is missing (with a warning naming its
  time), never replaced, so the frames after it keep their times. Variable frame rate stays variable.
- `close()`, or use the decoder as a context manager; iterating over it gives single (3×H×W frame, pts) pairs.
- Opening a bad input (missing, a directory, empty, not a media file, no video stream, unknown codec) raises
  `InputError` with one line naming the file and the problem.

Deinterlacing (`deinterlace`): "off" gives the frames as they are; "auto" deinterlaces a stream that says it is
interlaced, and "on" every frame, with FFmpeg's bwdif, one frame out per frame in, each keeping its pts (PyAV alone
does it: another backend asked for falls back to PyAV, in software, with a warning). Upscaling the two fields of an
interlaced frame together magnifies the comb of their lines four times over. The warning that an interlaced stream
is deinterlaced names what keeps its fields (`keep_fields_with`) where the caller's command has it: `vsr upscale` has
--deinterlace off, `vsr train` and `vsr eval` nothing; where the command has it, the warning also says when the
stream looks telecined, naming "ivtc". "ivtc": inverse telecine, the film frames of a 3:2 pulldown put back, 4 of
every 5 frames, retimed evenly (pipelines/telecine.py). "field": double rate, a frame for each field, each at its
field's time (bwdif's send_field, pipelines/fields.py). Both by PyAV alone, as for bwdif. An image sequence has no
fields: "ivtc" and "field" leave its frames as they are, with a warning.

Selecting frames: `start`/`end` in seconds from the stream's first frame keep the frames whose time is in
[start, end); `max_frames` stops after that many (previews). Backends seek to the keyframe before `start`.

Backends (`BACKENDS`):
- "pyav": the reference, always available; software decoding of everything FFmpeg knows, any bit depth. On a CUDA
  device it decodes with NVDEC where it can (PyAV's hwaccel): the frames stay in GPU memory and are converted to RGB
  there; in software where it cannot (no GPU, a codec NVDEC lacks).
- "decord": faster on the CPU for 8-bit video; pixels from decord, timestamps from a PyAV demux. A file decord
  cannot be trusted with falls back to "pyav" with a warning. Its RGB is less exact than PyAV's (up to 3 levels
  on flat colors, chroma not interpolated; see _decord.py). On a CUDA device it asks decord for NVDEC, which the
  PyPI wheel lacks (it then decodes on the CPU, with a warning).
- "dali": NVIDIA DALI. On a CUDA device NVDEC decodes straight into GPU memory and the frames are converted to RGB
  there (no copy through the host); on the CPU DALI's own decoder handles VP8/VP9/MJPEG with the BT.601 matrix.
  Where DALI is not installed or cannot decode the file faithfully on the chosen device (a codec it lacks there,
  10-bit, a matrix its CPU decoder ignores, AV1 on Hopper, a file it cannot open) the video is decoded with PyAV,
  after one warning that says why: asking for DALI never fails a job that PyAV can do. See _dali.py.
- "auto": on a CUDA device, DALI where it is installed and suits the file, else PyAV (with NVDEC where it can). On
  the CPU, PyAV: decord is faster than PyAV's exact conversion (about 480-690 vs 325-440 fps at 640x360 on 2 cores)
  but its colors are off by up to 3 levels, DALI's CPU decoder handles few codecs, and on the CPU decoding is never
  the bottleneck (the model is, by two orders of magnitude), so exact colors win.
DALI's and NVDEC's frames are produced on `device`. The others are decoded into host memory; for a CUDA device PyAV
copies the YUV planes of planar formats to the GPU and converts them there, and other pictures are converted on the
CPU and copied batch by batch. Copies to a GPU go through pinned memory without blocking the decoder thread.
"""

from __future__ import annotations

import importlib.util
import logging
from fractions import Fraction
from pathlib import Path

import torch

from vsr.errors import OptionError
from vsr.pipelines.captions import carries_captions
from vsr.pipelines.decode._base import Decoder, Selection, rgb_matrix
from vsr.pipelines.decode._dali import DaliDecoder
from vsr.pipelines.decode._decord import DecordDecoder
from vsr.pipelines.decode._pyav import PyAVDecoder, Unsuitable
from vsr.pipelines.probe import describe_video
from vsr.pipelines.progress import first_saying
from vsr.pipelines.sequences import is_sequence
from vsr.pipelines.telecine import telecine_evidence, telecine_note

__all__ = [
    "BACKENDS", "DaliDecoder", "Decoder", "DecordDecoder", "PyAVDecoder", "Selection", "chosen_backend", "open_decoder",
    "rgb_matrix",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "pyav", "decord", "dali")
DEINTERLACE = ("auto", "on", "off", "ivtc", "field")


def open_decoder(
    path: str | Path,
    *,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    deinterlace: str = "off",
    frame_rate: Fraction | None = None,
    keep_fields_with: str | None = None,
) -> Decoder:
    """Open the video stream of `path` for decoding (see the module docstring). `frame_rate`: that of an image
    sequence (a pattern such as frames/%06d.png, see `sequences`), which PyAV alone decodes. `keep_fields_with`: the
    option that keeps an interlaced stream's fields ("--deinterlace off"), said as "auto" deinterlaces one."""
    if backend not in BACKENDS:
        raise OptionError(f"--decoder {backend}: choose one of {', '.join(BACKENDS)}")
    if deinterlace not in DEINTERLACE:
        raise OptionError(f"--deinterlace {deinterlace}: choose one of {', '.join(DEINTERLACE)}")
    device = _device(device)
    path = Path(path)
    options = dict(device=device, start=start, end=end, max_frames=max_frames)
    if is_sequence(path):
        if backend in ("dali", "decord"):
            _warn_once(path, f"decoding the image sequence with PyAV: {backend} reads video files")
        if deinterlace in ("ivtc", "field"):
            _warn_once(path, f"--deinterlace {deinterlace}: an image sequence has no fields; its frames are taken as "
                       "they are")
        return PyAVDecoder(path, **options, deinterlace="all" if deinterlace == "on" else None, frame_rate=frame_rate)
    if deinterlace in ("ivtc", "field"):
        warn_once(path, deinterlace_warnings(backend, deinterlace, interlaced=_is_interlaced(path), path=path))
        return PyAVDecoder(path, **options, deinterlace=deinterlace)
    if deinterlace == "on" or (deinterlace == "auto" and _is_interlaced(path)):
        warn_once(path, deinterlace_warnings(backend, deinterlace, interlaced=True, keep_fields_with=keep_fields_with,
                                             path=path))
        return PyAVDecoder(path, **options, deinterlace="all" if deinterlace == "on" else "interlaced")
    tried = _tried_backend(backend, device)
    if tried in ("dali", "decord"):
        if carries_captions(path):
            message = "the frames carry closed captions (CEA-608/708), which PyAV alone reads out of them"
            if backend == "auto":
                log.info("%s: decoding with PyAV instead of DALI: %s", path, message)
            else:
                _warn_once(path, f"decoding with PyAV instead of {backend}: {message}")
            return PyAVDecoder(path, **options)
    if tried == "dali":
        try:
            return DaliDecoder(path, **options)
        except Unsuitable as reason:
            # Asked for by name, the fallback is worth a warning; chosen by "auto", it is the expected path.
            if backend == "dali":
                _warn_once(path, f"decoding with PyAV instead of DALI: {reason}")
            else:
                log.info("%s: decoding with PyAV instead of DALI: %s", path, reason)
    if tried == "decord":
        try:
            return DecordDecoder(path, **options)
        except Unsuitable as reason:
            _warn_once(path, f"decoding with PyAV instead of decord: {reason}")
    return PyAVDecoder(path, **options)


def _tried_backend(backend: str, device: torch.device) -> str:
    """The backend that `open_decoder` tries first for `backend` on `device`: "auto" is DALI on a CUDA device, else
    PyAV (see the module doc)."""
    if backend != "auto":
        return backend
    return "dali" if device.type == "cuda" else "pyav"


def chosen_backend(path: str | Path, backend: str, device: str | torch.device, deinterlace: str) -> str:
    """The backend that `open_decoder` decodes `path` with on `device`, as far as it is known before the file is
    opened: "auto" resolved, PyAV where it alone can (an image sequence, deinterlacing, closed captions, DALI not
    installed). What a resumed run compares, since decoders give other pixels (`resume._plan_change`). DALI and decord
    may still give way to PyAV as they open the file (a codec they lack here): for the file's own reasons, alike on
    every run on one kind of machine."""
    path = Path(path)
    if is_sequence(path) or deinterlace in ("on", "ivtc", "field") or (deinterlace == "auto" and _is_interlaced(path)):
        return "pyav"
    tried = _tried_backend(backend, _device(device))
    if tried in ("dali", "decord") and carries_captions(path):
        return "pyav"
    if tried == "dali" and not _dali_installed():
        return "pyav"
    return tried


def _dali_installed() -> bool:
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ImportError:  # (no nvidia package at all)
        return False


def deinterlace_warnings(backend: str, deinterlace: str, interlaced: bool, keep_fields_with: str | None = None,
                         path: Path | None = None) -> list[str]:
    """What opening a decoder says about deinterlacing a video (`interlaced`: whether its stream says so;
    `keep_fields_with`: the option that would not, where the command has one). Where `path` is given, a video is
    judged for telecine (`telecine.telecine_note`, a few dozen frames decoded once a process): one that "auto"
    deinterlaces with bwdif where the command has --deinterlace, and one that "ivtc" is asked of."""
    messages = []
    if deinterlace == "auto" and interlaced:
        # (vsr train and vsr eval have no such option: the message named one they refuse)
        keep = f"; {keep_fields_with} keeps the fields" if keep_fields_with else ""
        messages.append(f"interlaced video: deinterlacing it (bwdif, one frame per frame{keep})")
        note = telecine_note(path) if keep_fields_with and path is not None else None
        if note is not None:
            messages.append(f"it looks telecined from film (3:2 pulldown: {note}): --deinterlace ivtc gives back the "
                            "film's frames, 4 of every 5, whole, where bwdif makes 5 of them with one shown twice")
    if deinterlace == "ivtc" and path is not None and telecine_note(path) is None:
        repeated, judged = telecine_evidence(path)
        messages.append(f"--deinterlace ivtc: the video does not look telecined ({repeated} of {judged} frames judged "
                        "repeat a field of the frame before, where 3:2 pulldown repeats one in 2 frames of 5); one "
                        "frame of every five is dropped all the same")
    if deinterlace == "ivtc" and path is not None and carries_captions(path):
        messages.append("--deinterlace ivtc: the closed captions in the frames are left out (a fifth of the frames "
                        "go, and the caption bytes they carry with them: what was left would be garbled)")
    if deinterlace == "field" and not interlaced:
        messages.append("--deinterlace field: the video does not say it is interlaced; each frame is made two all the "
                        "same, each with half its lines filled in")
    if (messages or deinterlace in ("on", "ivtc", "field")) and backend in ("dali", "decord"):
        messages.append(f"decoding with PyAV instead of {backend}, which cannot deinterlace")
    return messages


def warn_once(path: Path, messages: list[str]) -> None:
    """Warn "path: message" for each of `messages` this call did not say yet (`said_once_per_call`)."""
    for message in messages:
        _warn_once(Path(path), message)


def said_elsewhere(path: Path, messages: list[str]) -> None:
    """Count `messages` as said about `path` (`first_saying`): a segment worker's driver said them for the video."""
    for message in messages:
        first_saying((Path(path), message))


def _warn_once(path: Path, message: str) -> None:
    """Warn "path: message" unless this call did already (`said_once_per_call`): a video in segments opens a decoder
    per segment."""
    if first_saying((path, message)):
        log.warning("%s: %s", path, message)


def _is_interlaced(path: Path) -> bool:
    return describe_video(path)[0].interlaced


def _device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise OptionError(f"device={device!r}: expected a torch device such as 'cpu' or 'cuda:0'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device={str(device)!r}: CUDA is not available here; use 'cpu'")
    return device
