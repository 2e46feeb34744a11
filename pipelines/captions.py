"""Closed captions that travel inside the video frames: CEA-608/708 as ATSC A/53 `cc_data` (US broadcast, DVDs'
line 21, camcorders).

FFmpeg's decoders hand them over as each frame's side data, and its encoders write them again only from their input
frames' side data, which PyAV cannot attach to a new frame. So the decoder keeps each frame's `cc_data`
(`frame_captions`, carried in `FrameBatch.captions` by pts) and the writer puts it back into the encoded access unit
of the same frame as the SEI message encoders write for it (`with_captions`): user data registered by ITU-T T.35,
ATSC's "GA94" identifier, user data type 3, the cc_data. H.264 and HEVC carry it; other codecs have no place for it.

    cc_data = frame_captions(frame)                       # bytes (3 per caption packet), or None
    data = with_captions(bytes(packet), cc_data, "h264")  # the access unit with an SEI before its first slice
"""

from __future__ import annotations

import re
from pathlib import Path

import av

from vsr.errors import InputError
from vsr.pipelines.probe import find_video_stream, open_input

# The encoders whose output carries captions, by the NAL unit syntax they write (Annex B: start codes).
CAPTION_SYNTAX = {"libx264": "h264", "libx264rgb": "h264", "h264_nvenc": "h264", "libx265": "hevc",
                  "hevc_nvenc": "hevc"}
_T35_GA94 = b"\xb5\x00\x31GA94\x03"  # United States, ATSC; "GA94"; user_data_type_code 3: cc_data
_MOST_PER_MESSAGE = 31  # cc_count has 5 bits
_START_CODE = re.compile(b"\x00\x00\x01")
SAMPLE_FRAMES = 24  # frames `carries_captions` decodes: broadcasts and DVDs carry some in every frame or two


def frame_captions(frame: av.VideoFrame) -> bytes | None:
    """The A/53 cc_data a decoded frame carries, or None."""
    side_data = frame.side_data.get(av.sidedata.sidedata.Type.A53_CC)
    return bytes(side_data) if side_data is not None and len(bytes(side_data)) >= 3 else None


def carries_captions(path: str | Path) -> bool:
    """Whether any of the first SAMPLE_FRAMES frames of `path`'s video carries closed captions (decoded by PyAV;
    False for a file that cannot be read: the decoder that follows says why)."""
    try:
        with open_input(path) as container:
            stream = find_video_stream(container, path)
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
    just before its first slice, after the parameter sets and other SEI, where encoders put them."""
    slice_types = range(1, 6) if syntax == "h264" else range(0, 32)
    for match in _START_CODE.finditer(data):
        header = data[match.end()] if match.end() < len(data) else None
        nal_type = None if header is None else header & 0x1F if syntax == "h264" else (header >> 1) & 0x3F
        if nal_type in slice_types:
            start = match.start() - 1 if match.start() > 0 and data[match.start() - 1] == 0 else match.start()
            return data[:start] + caption_sei(cc_data, syntax) + data[start:]
    return data


def caption_sei(cc_data: bytes, syntax: str) -> bytes:
    """SEI NAL units (Annex B, with start codes) holding `cc_data`, 31 caption packets per message at most."""
    triplets = len(cc_data) // 3
    units = b""
    for first in range(0, triplets, _MOST_PER_MESSAGE):
        count = min(_MOST_PER_MESSAGE, triplets - first)
        # process_cc_data_flag, then cc_count; em_data 0xff; the packets; marker bits 0xff
        body = _T35_GA94 + bytes([0x40 | count, 0xFF]) + cc_data[3 * first:3 * (first + count)] + b"\xff"
        message = _sei_number(4) + _sei_number(len(body)) + body  # payload type 4: registered user data
        header = b"\x06" if syntax == "h264" else b"\x4e\x01"  # H.264 type 6; HEVC prefix SEI, type 39, layer 0
        units += b"\x00\x00\x00\x01" + header + _escaped(message + b"\x80")  # with the RBSP stop bit
    return units


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
