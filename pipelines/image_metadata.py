"""What an image file says about its pixels beyond the pixels: the EXIF Orientation and the ICC color profile.

Read and written by hand, in the files' own chunk layouts (JPEG segments, PNG chunks, WebP's RIFF chunks): FFmpeg
shows an orientation only as a rotation (mirrored orientations look like plain ones), and PyAV gives no way to hand
an ICC profile to FFmpeg's image encoders. The format is told by the first bytes, not by the file's name.

    orientation = exif_orientation(data)          # 1 to 8 (1: as stored)
    animated = is_animated(data)                  # APNG, animated WebP
    profile = icc_profile(data)                    # the ICC profile's bytes, or None
    data = with_icc_profile(encoded, profile)      # the same file with the profile in it
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_ICC = b"ICC_PROFILE\x00"  # an APP2 segment's tag, then its number and the count of segments (from 1)
JPEG_ICC_CHUNK = 65519  # a segment holds 65535 bytes with its length: 2 + 14 of header, the rest profile


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1 to 8; 1 where there is none) of a JPEG, PNG or WebP file's first bytes.

    The EXIF block is a TIFF file: a byte order mark, the first directory's offset, then 12-byte entries.
    """
    start = data.find(b"Exif\x00\x00")  # JPEG's APP1 segment, some WebP files
    if start >= 0:
        start += 6
    else:  # PNG's eXIf and WebP's EXIF chunks hold the TIFF block alone
        for chunk in (b"eXIf", b"EXIF"):
            if (found := data.find(chunk)) >= 0:
                start = found + 8 if chunk == b"EXIF" else found + 4
                break
    tiff = data[start:] if start >= 0 else b""
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        (directory,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, directory)
        for index in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, directory + 2 + 12 * index)
            if tag == 0x0112 and kind == 3:  # Orientation, a SHORT stored in the entry itself
                (orientation,) = struct.unpack_from(order + "H", value)
                return orientation if 1 <= orientation <= 8 else 1
    except struct.error:  # a cut or malformed block: shown as stored
        pass
    return 1


def is_animated(data: bytes) -> bool:
    """Whether a PNG (an acTL chunk before the pixels: APNG) or WebP (an ANIM chunk) file holds an animation."""
    if data.startswith(PNG_SIGNATURE):
        for kind, _, _ in _png_chunks(data):
            if kind in (b"acTL", b"IDAT"):
                return kind == b"acTL"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return any(kind == b"ANIM" for kind, _, _ in _riff_chunks(data))
    return False


def icc_profile(data: bytes) -> bytes | None:
    """The ICC profile embedded in a JPEG (APP2 segments), PNG (iCCP) or WebP (ICCP) file, or None."""
    try:
        if data.startswith(b"\xff\xd8"):
            parts = {}
            for marker, body in _jpeg_segments(data):
                if marker == 0xE2 and body.startswith(JPEG_ICC):
                    parts[body[len(JPEG_ICC)]] = body[len(JPEG_ICC) + 2:]
            return b"".join(parts[number] for number in sorted(parts)) or None
        if data.startswith(PNG_SIGNATURE):
            for kind, body, _ in _png_chunks(data):
                if kind == b"iCCP":  # a name, its NUL, the compression method (0: zlib), the profile
                    return zlib.decompress(body[body.index(b"\x00") + 2:])
            return None
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            for kind, body, _ in _riff_chunks(data):
                if kind == b"ICCP":
                    return body
    except (ValueError, IndexError, KeyError, zlib.error, struct.error):  # a damaged profile: none
        return None
    return None


def with_icc_profile(data: bytes, profile: bytes | None) -> bytes:
    """An encoded JPEG, PNG or WebP file with `profile` embedded (unchanged when `profile` is None)."""
    if not profile:
        return data
    if data.startswith(b"\xff\xd8"):
        return _jpeg_with_icc(data, profile)
    if data.startswith(PNG_SIGNATURE):
        return _png_with_icc(data, profile)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_with_icc(data, profile)
    raise ValueError("not a JPEG, PNG or WebP file")


def _jpeg_segments(data: bytes):
    """(marker, body) of each segment before the image data (start of scan)."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            return
        (length,) = struct.unpack_from(">H", data, position + 2)
        yield marker, data[position + 4:position + 2 + length]
        position += 2 + length


def _jpeg_with_icc(data: bytes, profile: bytes) -> bytes:
    chunks = [profile[i:i + JPEG_ICC_CHUNK] for i in range(0, len(profile), JPEG_ICC_CHUNK)]
    segments = b"".join(
        b"\xff\xe2" + struct.pack(">H", 2 + len(JPEG_ICC) + 2 + len(chunk)) + JPEG_ICC
        + bytes([number, len(chunks)]) + chunk
        for number, chunk in enumerate(chunks, 1)
    )
    position = 2  # after SOI, and after the JFIF APP0 segment, which must come first
    if data[2:4] == b"\xff\xe0":
        position += 2 + struct.unpack_from(">H", data, 4)[0]
    return data[:position] + segments + data[position:]


def _png_chunks(data: bytes):
    """(type, body, end offset) of each chunk."""
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        yield kind, data[position + 8:position + 8 + length], position + 12 + length
        position += 12 + length


def _png_with_icc(data: bytes, profile: bytes) -> bytes:
    body = b"ICC profile\x00\x00" + zlib.compress(profile)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    kept, previous = [data[:len(PNG_SIGNATURE)]], len(PNG_SIGNATURE)
    for kind, _, end in _png_chunks(data):
        if kind not in (b"sRGB", b"iCCP"):  # the spec allows one or the other: the profile says more
            kept.append(data[previous:end])
        if kind == b"IHDR":
            kept.append(chunk)  # right after the header, before the palette and the pixels
        previous = end
    return b"".join(kept)


def _riff_chunks(data: bytes):
    """(fourcc, body, end offset) of each chunk inside a RIFF/WEBP file."""
    position = 12
    while position + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, position)
        yield kind, data[position + 8:position + 8 + length], position + 8 + length + (length & 1)
        position += 8 + length + (length & 1)


def _webp_with_icc(data: bytes, profile: bytes) -> bytes:
    """WebP holds a profile only in its extended layout: a VP8X chunk (with the ICC flag) first, then ICCP."""
    chunks = [(kind, body) for kind, body, _ in _riff_chunks(data) if kind != b"ICCP"]
    if chunks[0][0] != b"VP8X":  # a simple file (VP8 or VP8L alone): the extended header needs the canvas size
        width, height = _webp_size(chunks[0][0], chunks[0][1])
        chunks.insert(0, (b"VP8X", b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")))
    flags = chunks[0][1][0] | 0x20  # ICC profile present
    chunks[0] = (b"VP8X", bytes([flags]) + chunks[0][1][1:])
    chunks.insert(1, (b"ICCP", profile))
    body = b"WEBP" + b"".join(
        kind + struct.pack("<I", len(chunk)) + chunk + (b"\x00" if len(chunk) & 1 else b"") for kind, chunk in chunks
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_size(kind: bytes, body: bytes) -> tuple[int, int]:
    if kind == b"VP8L":  # a signature byte, then 14 bits of width - 1 and 14 of height - 1
        (bits,) = struct.unpack_from("<I", body, 1)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":  # a 3-byte frame tag, the start code, then 14-bit width and height
        width, height = struct.unpack_from("<HH", body, 6)
        return width & 0x3FFF, height & 0x3FFF
    raise ValueError(f"unknown WebP chunk {kind!r}")
