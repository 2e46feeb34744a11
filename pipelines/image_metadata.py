"""What an image file says beyond its pixels: EXIF (the Orientation, and the rest carried over) and the ICC profile.

Read and written by hand, in the files' own chunk layouts (JPEG segments, PNG chunks, WebP's RIFF chunks): FFmpeg
shows an orientation only as a rotation (mirrored orientations look like plain ones), and PyAV gives no way to hand
an ICC profile to FFmpeg's image encoders. The format is told by the first bytes, not by the file's name.

    orientation = exif_orientation(data)          # 1 to 8 (1: as stored)
    exif = exif_block(data)                       # the EXIF block's bytes, or None
    animated = is_animated(path)                  # APNG, animated WebP (a file's chunks walked)
    profile = icc_profile(data)                   # the ICC profile's bytes, or None
    data = with_icc_profile(encoded, profile)     # the same file with the profile in it
    data = with_exif(data, exif_for_output(exif, width, height))  # and the EXIF, upright, with the new size
"""

from __future__ import annotations

import os
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_ICC = b"ICC_PROFILE\x00"  # an APP2 segment's tag, then its number and the count of segments (from 1)
JPEG_ICC_CHUNK = 65519  # a segment holds 65535 bytes with its length: 2 + 14 of header, the rest profile
EXIF_HEADER = b"Exif\x00\x00"
# TIFF tags and types that EXIF blocks use here.
ORIENTATION, EXIF_DIRECTORY, PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION = 0x0112, 0x8769, 0xA002, 0xA003
ICC_PROFILE = 0x8773  # a TIFF file's own tag for its profile (InterColorProfile)
SHORT, LONG, UNDEFINED = 3, 4, 7
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")  # a TIFF file, and an EXIF block, start so


def exif_block(data: bytes) -> bytes | None:
    """The EXIF block of a JPEG (an APP1 segment after "Exif\\0\\0"), PNG (eXIf) or WebP (EXIF) file's first bytes,
    or None. The block is a TIFF file of its own: a byte order mark, the first directory's offset, 12-byte entries."""
    block = b""
    try:
        if data.startswith(b"\xff\xd8"):
            block = next((body[6:] for marker, body in _jpeg_segments(data)
                          if marker == 0xE1 and body.startswith(EXIF_HEADER)), b"")
        elif data.startswith(PNG_SIGNATURE):
            block = next((body for kind, body, _ in _png_chunks(data) if kind == b"eXIf"), b"")
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            block = next((body for kind, body, _ in _riff_chunks(data) if kind == b"EXIF"), b"")
            block = block.removeprefix(EXIF_HEADER)  # some writers keep JPEG's header there
    except struct.error:
        return None
    return block if block[:4] in TIFF_MAGIC else None


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1 to 8; 1 where there is none) of a JPEG, PNG or WebP file's first bytes, or a TIFF
    file's own (its first directory holds the tag, as an EXIF block's does)."""
    block = data if data[:4] in TIFF_MAGIC else exif_block(data) or b""
    for _, tag, kind, value in _exif_entries(block):
        if tag == ORIENTATION and kind == SHORT:
            (orientation,) = struct.unpack_from(_byte_order(block) + "H", value)
            return orientation if 1 <= orientation <= 8 else 1
    return 1


def tiff_pages(data: bytes) -> int:
    """How many pages (image file directories) a TIFF file's first bytes list: 1 for other files, and where the
    chain of directories runs past them."""
    if data[:4] not in TIFF_MAGIC:
        return 1
    order, pages, seen = _byte_order(data), 0, set()
    try:
        (directory,) = struct.unpack_from(order + "I", data, 4)
        while directory and directory not in seen:
            seen.add(directory)
            pages += 1
            (count,) = struct.unpack_from(order + "H", data, directory)
            (directory,) = struct.unpack_from(order + "I", data, directory + 2 + 12 * count)
    except struct.error:
        pass
    return max(pages, 1)


def exif_for_output(block: bytes | None, width: int, height: int) -> bytes | None:
    """A source's EXIF block as it should be in the upscaled image: upright (Orientation 1, vsr turned the pixels)
    and `width`×`height` where it gives the image's size (PixelXDimension/PixelYDimension). Camera, lens, date and
    the rest are kept as they are."""
    if not block:
        return None
    block, order = bytearray(block), _byte_order(block)
    sizes = {PIXEL_X_DIMENSION: width, PIXEL_Y_DIMENSION: height}
    try:
        for entry, tag, kind, _ in _exif_entries(bytes(block)):
            if tag == ORIENTATION and kind == SHORT and struct.unpack_from(order + "H", block, entry + 8)[0] != 1:
                struct.pack_into(order + "H", block, entry + 8, 1)
                # The thumbnail (the second directory) is still stored turned: without it, no viewer shows it wrong.
                (first,) = struct.unpack_from(order + "I", block, 4)
                (count,) = struct.unpack_from(order + "H", block, first)
                struct.pack_into(order + "I", block, first + 2 + 12 * count, 0)
            elif tag in sizes and kind in (SHORT, LONG):  # the value fits in the entry: written as a LONG there
                struct.pack_into(order + "HII", block, entry + 2, LONG, 1, sizes[tag])
    except struct.error:  # a cut block: better none than one that says the wrong thing
        return None
    return bytes(block)


def _byte_order(block: bytes) -> str:
    return "<" if block[:2] == b"II" else ">"


def _exif_entries(block: bytes):
    """(offset, tag, type, 4-byte value field) of each entry of the first directory and of the Exif directory it
    points to. A cut or malformed block gives what could be read."""
    order, directories, seen = _byte_order(block), [], set()
    try:
        directories.append(struct.unpack_from(order + "I", block, 4)[0])
        while directories:
            directory = directories.pop()
            if directory in seen:
                continue
            seen.add(directory)
            (count,) = struct.unpack_from(order + "H", block, directory)
            for index in range(count):
                entry = directory + 2 + 12 * index
                tag, kind, _, value = struct.unpack_from(order + "HHI4s", block, entry)
                if tag == EXIF_DIRECTORY and kind == LONG:
                    directories.append(struct.unpack_from(order + "I", value)[0])
                yield entry, tag, kind, value
    except struct.error:
        return


def is_animated(path: str | os.PathLike) -> bool:
    """Whether a PNG (an acTL chunk before the pixels: APNG) or WebP (an ANIM chunk) file holds an animation. The
    chunks' headers are read one by one, skipping their bodies: an XMP packet or ICC profile before acTL or ANIM may
    be larger than any first bytes read."""
    with open(path, "rb") as file:
        head = file.read(12)
        if head.startswith(PNG_SIGNATURE):
            file.seek(len(PNG_SIGNATURE))
            while len(header := file.read(8)) == 8:
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"acTL", b"IDAT"):
                    return kind == b"acTL"
                file.seek(length + 4, os.SEEK_CUR)  # the body and its CRC
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            while len(header := file.read(8)) == 8:
                kind, length = struct.unpack("<4sI", header)
                if kind == b"ANIM":
                    return True
                file.seek(length + (length & 1), os.SEEK_CUR)
    return False


def icc_profile(data: bytes) -> bytes | None:
    """The ICC profile embedded in a JPEG (APP2 segments), PNG (iCCP), WebP (ICCP) or TIFF (its tag 34675) file, or
    None (also where it is cut short, or a JPEG's segment of it is missing)."""
    try:
        if data.startswith(b"\xff\xd8"):
            parts = {}
            for marker, body in _jpeg_segments(data):
                if marker == 0xE2 and body.startswith(JPEG_ICC):
                    parts[body[len(JPEG_ICC)]] = (body[len(JPEG_ICC) + 1], body[len(JPEG_ICC) + 2:])
            counts = {count for count, _ in parts.values()}
            if not parts or counts != {len(parts)} or sorted(parts) != list(range(1, len(parts) + 1)):
                return None  # (a segment missing: half a profile is no profile)
            return b"".join(parts[number][1] for number in sorted(parts))
        if data.startswith(PNG_SIGNATURE):
            for kind, body, _ in _png_chunks(data):
                if kind == b"iCCP":  # a name, its NUL, the compression method (0: zlib), the profile
                    return zlib.decompress(body[body.index(b"\x00") + 2:])
            return None
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            for kind, body, _ in _riff_chunks(data):
                if kind == b"ICCP":
                    return body
        if data[:4] in TIFF_MAGIC:
            order = _byte_order(data)
            for entry, tag, kind, value in _exif_entries(data):
                if tag == ICC_PROFILE and kind == UNDEFINED:
                    (count,) = struct.unpack_from(order + "I", data, entry + 4)
                    (offset,) = struct.unpack_from(order + "I", value)
                    return data[offset:offset + count] if count > 4 and offset + count <= len(data) else None
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


def with_exif(data: bytes, block: bytes | None) -> bytes:
    """An encoded JPEG, PNG or WebP file with the EXIF `block` in it (unchanged when `block` is None, or too big for
    the 64 KB of a JPEG segment)."""
    if not block:
        return data
    if data.startswith(b"\xff\xd8"):
        body = EXIF_HEADER + block
        if len(body) + 2 > 0xFFFF:
            return data
        return _jpeg_with_segments(data, b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body)
    if data.startswith(PNG_SIGNATURE):
        return _png_with_chunk(data, b"eXIf", block)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_with_chunk(data, b"EXIF", block, flag=0x08)
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
    return _jpeg_with_segments(data, segments)


def _jpeg_with_segments(data: bytes, segments: bytes) -> bytes:
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
    # The spec allows an sRGB chunk or a profile, not both: the profile says more.
    return _png_with_chunk(data, b"iCCP", b"ICC profile\x00\x00" + zlib.compress(profile), replaces=(b"sRGB",))


def _png_with_chunk(data: bytes, kind: bytes, body: bytes, replaces: tuple[bytes, ...] = ()) -> bytes:
    """The PNG with a `kind` chunk right after the header (before the palette and the pixels, where iCCP and eXIf
    belong), instead of any chunk of that kind or of `replaces`."""
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    kept, previous = [data[:len(PNG_SIGNATURE)]], len(PNG_SIGNATURE)
    for found, _, end in _png_chunks(data):
        if found != kind and found not in replaces:
            kept.append(data[previous:end])
        if found == b"IHDR":
            kept.append(chunk)
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
    return _webp_with_chunk(data, b"ICCP", profile, flag=0x20)


def _webp_with_chunk(data: bytes, kind: bytes, body: bytes, flag: int) -> bytes:
    """WebP holds metadata only in its extended layout: a VP8X chunk first, whose `flag` says a `kind` chunk is
    there; the profile (ICCP) comes right after it, EXIF after the image."""
    chunks = [(found, chunk) for found, chunk, _ in _riff_chunks(data) if found != kind]
    if chunks[0][0] != b"VP8X":  # a simple file (VP8 or VP8L alone): the extended header needs the canvas size
        width, height = _webp_size(chunks[0][0], chunks[0][1])
        size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", b"\x00" * 4 + size))
    chunks[0] = (b"VP8X", bytes([chunks[0][1][0] | flag]) + chunks[0][1][1:])
    chunks.insert(1 if kind == b"ICCP" else len(chunks), (kind, body))
    riff = b"WEBP" + b"".join(
        found + struct.pack("<I", len(chunk)) + chunk + (b"\x00" if len(chunk) & 1 else b"") for found, chunk in chunks
    )
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def _webp_size(kind: bytes, body: bytes) -> tuple[int, int]:
    if kind == b"VP8L":  # a signature byte, then 14 bits of width - 1 and 14 of height - 1
        (bits,) = struct.unpack_from("<I", body, 1)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":  # a 3-byte frame tag, the start code, then 14-bit width and height
        width, height = struct.unpack_from("<HH", body, 6)
        return width & 0x3FFF, height & 0x3FFF
    raise ValueError(f"unknown WebP chunk {kind!r}")
