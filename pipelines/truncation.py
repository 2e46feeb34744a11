"""Whether a media file is cut short, read from its container's own sizes (`cut_short`).

The time a file declares is no judge: Matroska's DURATION tag is the last frame's end, and a download cut inside a
group of pictures keeps that last (P-)frame while the B-frames decoded after it are lost (72 of 75 frames decoded,
the last at the time the tag says). The containers' structures say how long they are:
- Matroska/WebM: the Segment's size (and those of the top-level elements after it);
- MP4/QuickTime: the sizes of the top-level boxes (a fragmented MP4's moof/mdat pairs too);
- AVI: the size of each RIFF chunk (an OpenDML file's AVIX chunks too);
- MPEG-TS: a whole number of 188-byte packets (192 in Blu-ray's M2TS): a cut between two packets goes unseen.
A muxer that could not go back to write a size (a pipe, a live stream) leaves it unknown: nothing is judged then.
Only the headers are read (a few reads at the top-level elements' offsets), never the media.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TS_PACKET = 188  # an MPEG transport stream packet; M2TS puts a 4-byte time code before each
M2TS_PACKET = 192
TS_SYNC = 0x47
# The boxes that start an ISO BMFF file (MP4, MOV, 3GP, M4V, HEIF...), read at byte 4.
ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid", b"styp", b"sidx"}
MATROSKA_ID = b"\x1a\x45\xdf\xa3"  # the EBML header, the first element of a Matroska or WebM file


@dataclass(frozen=True)
class CutShort:
    """A file that ends before its container says it does."""

    size: int  # bytes in the file
    declared: int  # bytes its container says it holds (MPEG-TS: up to the end of the packet it ends in)
    container: str  # "Matroska", "MP4/QuickTime", "AVI", "MPEG-TS"

    def __str__(self) -> str:
        missing = self.declared - self.size
        if self.container == "MPEG-TS":
            return f"it ends inside an {self.container} packet ({missing} bytes of it missing)"
        # (at least: a fragmented MP4's later fragments, an OpenDML AVI's later chunks, are not declared before)
        return (f"it holds {_amount(self.size)} where its {self.container} headers declare at least "
                f"{_amount(self.declared)} ({_amount(missing)} missing)")


def cut_short(path: str | Path) -> CutShort | None:
    """How `path` is cut short, where its container's sizes say it is; None where they say it is whole, or say
    nothing (an unknown size, a container without sizes, a file this cannot read)."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(12)
            if head.startswith(MATROSKA_ID):
                return _beyond(_ends(file, size, _ebml_elements), size, "Matroska")
            if head[4:8] in ISO_FIRST_BOXES:
                return _beyond(_ends(file, size, _iso_boxes), size, "MP4/QuickTime")
            if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
                return _beyond(_ends(file, size, _riff_chunks), size, "AVI")
            packet = _ts_packet(file)
            if packet and size % packet:
                return CutShort(size, size + packet - size % packet, "MPEG-TS")
    except OSError:
        pass
    return None


def _beyond(end: int | None, size: int, container: str) -> CutShort | None:
    return CutShort(size, end, container) if end is not None and end > size else None


def _ends(file, size: int, elements) -> int | None:
    """Where the last top-level element that `elements` walks to ends (past `size` where the file is cut short);
    None where a size is unknown or a header cannot be read."""
    end = None
    for end in elements(file, size):
        if end is None or end > size:
            return end
    return end


def _ebml_elements(file, size: int) -> Iterator[int | None]:
    """The end of each top-level EBML element (the EBML header, then the Segment, and any after it)."""
    offset = 0
    while offset < size:
        file.seek(offset)
        header = file.read(16)
        id_length = _vint_length(header[0]) if header else 0
        if not id_length or len(header) < id_length + 1:
            yield None
            return
        length = _vint_length(header[id_length])
        if not length or len(header) < id_length + length:
            yield None
            return
        data = bytearray(header[id_length : id_length + length])
        data[0] &= 0xFF >> length  # (the length marker bit is not part of the value)
        value = int.from_bytes(data, "big")
        if value == (1 << (7 * length)) - 1:  # all ones: "unknown size", a live stream's
            yield None
            return
        offset += id_length + length + value
        yield offset


def _vint_length(first: int) -> int:
    """The length of an EBML variable-size integer from its first byte (0: not one)."""
    for length in range(1, 9):
        if first & (0x80 >> (length - 1)):
            return length
    return 0


def _iso_boxes(file, size: int) -> Iterator[int | None]:
    """The end of each top-level ISO BMFF box."""
    offset = 0
    while offset < size:
        file.seek(offset)
        header = file.read(16)
        if len(header) < 8 or not header[4:8].isascii():
            yield None
            return
        box_size = struct.unpack(">I", header[:4])[0]
        if box_size == 1 and len(header) == 16:  # a 64-bit size follows the type
            box_size = struct.unpack(">Q", header[8:16])[0]
        if box_size == 0 or box_size < 8:  # 0: "to the end of the file", as a live writer leaves its last mdat
            yield None
            return
        offset += box_size
        yield offset


def _riff_chunks(file, size: int) -> Iterator[int | None]:
    """The end of each top-level RIFF chunk ("RIFF" AVI, then an OpenDML file's "RIFF" AVIX chunks)."""
    offset = 0
    while offset < size:
        file.seek(offset)
        header = file.read(8)
        if len(header) < 8 or header[:4] != b"RIFF":
            yield None
            return
        chunk_size = struct.unpack("<I", header[4:])[0]
        if chunk_size in (0, 0xFFFFFFFF):  # never written back (a pipe)
            yield None
            return
        offset += 8 + chunk_size + chunk_size % 2  # (chunks are padded to an even size)
        yield offset


def _ts_packet(file) -> int | None:
    """The packet size of an MPEG transport stream (188, or 192 for M2TS), from the sync bytes of its first
    packets; None for other files."""
    file.seek(0)
    start = file.read(4 * M2TS_PACKET + 4)
    for packet, first in ((TS_PACKET, 0), (M2TS_PACKET, 4)):
        if len(start) >= first + 3 * packet + 1 and all(start[first + i * packet] == TS_SYNC for i in range(4)):
            return packet
    return None


def _amount(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB" if size >= 1e4 else f"{size} bytes"
