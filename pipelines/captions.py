"""Closed captions that travel inside the video frames: CEA-608/708 as ATSC A/53 `cc_data` (US broadcast, DVDs'
line 21, camcorders).

FFmpeg's decoders hand them over as each frame's side data, and its encoders write them again only from their input
frames' side data, which PyAV cannot attach to a new frame. So the decoder keeps each frame's `cc_data`
(`frame_captions`, carried in `FrameBatch.captions` by pts) and the writer puts it back into the encoded access unit
of the same frame as the SEI message encoders write for it (`with_captions`): user data registered by ITU-T T.35,
ATSC's "GA94" identifier, user data type 3, the cc_data. AV1 carries the same T.35 message in a metadata OBU. Other
codecs have no place for it.

    cc_data = frame_captions(frame)                       # bytes (3 per caption packet), or None
    data = with_captions(bytes(packet), cc_data, "h264")  # the access unit with an SEI before its first slice
                                                          # ("hevc" too; "av1": a metadata OBU before its frames)
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import av

from vsr.errors import InputError
from vsr.pipelines.probe import find_video_stream, open_input

# The encoders whose output carries captions, by the syntax of their packets: H.264/HEVC NAL units in Annex B form
# (start codes), AV1 OBUs with their sizes (the low-overhead format).
CAPTION_SYNTAX = {"libx264": "h264", "libx264rgb": "h264", "h264_nvenc": "h264", "libx265": "hevc",
                  "hevc_nvenc": "hevc", "libsvtav1": "av1", "av1_nvenc": "av1"}
_T35_GA94 = b"\xb5\x00\x31GA94\x03"  # United States, ATSC; "GA94"; user_data_type_code 3: cc_data
_MOST_PER_MESSAGE = 31  # cc_count has 5 bits
_START_CODE = re.compile(b"\x00\x00\x01")
SAMPLE_FRAMES = 24  # frames `carries_captions` decodes: broadcasts and DVDs carry some in every frame or two
# The decoders whose frames may carry A/53 captions. Only their frames' side data is read: PyAV 18 crashes (at the
# frame's garbage collection) once the side data of a frame that holds an ICC profile has been read, as PNG and JPEG
# frames with a profile do.
CAPTION_DECODERS = ("mpeg2video", "mpeg1video", "h264", "hevc", "av1", "libdav1d", "libaom-av1", "vvc")


def frame_captions(frame: av.VideoFrame) -> bytes | None:
    """The A/53 cc_data a decoded frame carries, or None (called for every frame: only that side data is copied).
    Only for frames of CAPTION_DECODERS."""
    try:
        side_data = frame.side_data.get(av.sidedata.sidedata.Type.A53_CC)
    except ValueError:  # a side data type PyAV does not know (see probe.frame_side_data)
        return None
    return bytes(side_data) if side_data is not None and side_data.buffer_size >= 3 else None



def carries_captions(path: str | Path) -> bool:
    """Whether `path`'s video carries closed captions in the SAMPLE_FRAMES frames from its start or from the middle
    (a recording may start with a leader without any), decoded by PyAV. False for a file that cannot be read: the
    decoder that follows says why. Remembered per file for the process (a decoder opens once a segment)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return False
    return _carries_captions(path.absolute(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _carries_captions(path: Path, size: int, mtime_ns: int) -> bool:
    try:
        with open_input(path) as container:
            stream = find_video_stream(container, path)
            if stream.codec_context.name not in CAPTION_DECODERS:
                return False
            for middle in (False, True):
                if middle:
                    if not container.duration:
                        break
                    container.seek(container.duration // 2)  # in AV_TIME_BASE units, to the keyframe before
                for number, frame in enumerate(container.decode(stream)):
                    if frame_captions(frame) is not None:
                        return True
                    if number + 1 == SAMPLE_FRAMES:
                        break
    except (InputError, av.FFmpegError, OSError):
        pass
    return False


def with_captions(data: bytes, cc_data: bytes, syntax: str) -> bytes:
    """An H.264 or HEVC access unit in Annex B form (`syntax` "h264" or "hevc") with `cc_data` in SEI messages
    just before its first slice, after the parameter sets and other SEI, where encoders put them; an AV1 temporal
    unit (`syntax` "av1") with it in a metadata OBU before its first frame."""
    if syntax == "av1":
        return _av1_with_captions(data, cc_data)
    slice_types = range(1, 6) if syntax == "h264" else range(0, 32)
    for match in _START_CODE.finditer(data):
        header = data[match.end()] if match.end() < len(data) else None
        nal_type = None if header is None else header & 0x1F if syntax == "h264" else (header >> 1) & 0x3F
        if nal_type in slice_types:
            start = match.start() - 1 if match.start() > 0 and data[match.start() - 1] == 0 else match.start()
            return data[:start] + caption_sei(cc_data, syntax) + data[start:]
    return data


def caption_sei(cc_data: bytes, syntax: str) -> bytes:
    """SEI NAL units (Annex B, with start codes) holding `cc_data`."""
    header = b"\x06" if syntax == "h264" else b"\x4e\x01"  # H.264 type 6; HEVC prefix SEI, type 39, layer 0
    units = b""
    for body in _t35_messages(cc_data):
        message = _sei_number(4) + _sei_number(len(body)) + body  # payload type 4: registered user data
        units += b"\x00\x00\x00\x01" + header + _escaped(message + b"\x80")  # with the RBSP stop bit
    return units


def _t35_messages(cc_data: bytes) -> list[bytes]:
    """The T.35 messages holding `cc_data`, 31 caption packets each at most (cc_count has 5 bits)."""
    packets = [cc_data[i:i + 3] for i in range(0, len(cc_data) - 2, 3)]
    chunks = [packets[i:i + _MOST_PER_MESSAGE] for i in range(0, len(packets), _MOST_PER_MESSAGE)]
    # process_cc_data_flag and cc_count, em_data 0xff, the packets, marker bits 0xff
    return [_T35_GA94 + bytes([0x40 | len(chunk), 0xFF]) + b"".join(chunk) + b"\xff" for chunk in chunks]


def _av1_with_captions(data: bytes, cc_data: bytes) -> bytes:
    position = 0
    while position < len(data):  # each OBU: a header byte (type in bits 3-6), an extension byte if flagged, a size
        obu_type, has_extension = (data[position] >> 3) & 0xF, (data[position] >> 2) & 1
        size, size_bytes = _leb128_value(data, position + 1 + has_extension)
        if obu_type in (3, 6):  # a frame header, a frame
            obus = b"".join(_av1_metadata_obu(body) for body in _t35_messages(cc_data))
            return data[:position] + obus + data[position:]
        position += 1 + has_extension + size_bytes + size
    return data


def _av1_metadata_obu(t35_message: bytes) -> bytes:
    """A metadata OBU (type 5, with a size field) of metadata type ITU-T T.35 (4)."""
    payload = _leb128(4) + t35_message + b"\x80"  # the trailing bits
    return bytes([5 << 3 | 0x02]) + _leb128(len(payload)) + payload


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _leb128_value(data: bytes, position: int) -> tuple[int, int]:
    """The unsigned LEB128 number at `position` and how many bytes it takes."""
    value = 0
    for count in range(8):
        byte = data[position + count]
        value |= (byte & 0x7F) << (7 * count)
        if not byte & 0x80:
            return value, count + 1
    raise ValueError("an AV1 OBU size longer than 8 bytes")


def _sei_number(value: int) -> bytes:
    """An SEI payload type or size: 0xff for each 255, then the rest."""
    return b"\xff" * (value // 255) + bytes([value % 255])


def _escaped(payload: bytes) -> bytes:
    """The payload with emulation prevention: a 0x03 after two zero bytes that a byte of 0 to 3 follows, so that no
    start code appears inside a NAL unit."""
    out, zeros = bytearray(), 0
    for byte in payload:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
