r"""ASS cues cut by a preview: their effects' times rewritten so that each effect goes on where it was.

A preview (`--start`) shows a cue that was on screen before its start from 0, shortened (passthrough's `_shift`), and
one shown past its end ends with it. ASS override tags time their effects from the cue's own start, or over its whole
duration: `\fad(in,out)` fades in from the start and out before the end, `\fade(a1,a2,a3,t1,t2,t3,t4)`, `\move(x1,y1,
x2,y2[,t1,t2])` and `\t([t1,t2,][accel,]tags)` count milliseconds from the start (`\move` without times, or with both
≤ 0, moves over the whole cue; `\t` with t2 = 0 animates to its end), and karaoke's `\k`, `\kf` (`\K`) and `\ko` say
each syllable's length in centiseconds, the first sung at the start. Left as they are, a cut cue's effects replay
from their start at the preview's 0: a sign that had slid in slides in again, a line fades in again (fansubs put
`\fad` on nearly every line).

`continue_effects` rewrites a cut cue's text (the packet data, as FFmpeg's Matroska demuxer gives it and its muxer
takes it: "ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text"): every time moves earlier by the part cut
off, the spans the cue's duration set are written out from the source's duration (a preview's end shortens a cue
too), and so
- a `\fad` becomes the `\fade` it stands for (from 255 to 0 to 255), its times moved;
- a `\move` that had finished becomes `\pos(x2,y2)`, where it stopped; one not finished keeps moving from where it
  was, its times moved (earlier than 0 where it had begun);
- a `\t` keeps its tags and acceleration, with times moved: one that had finished keeps t2 below 0 (0 would mean "to
  the end" again), so that it stays finished;
- karaoke: the syllables already sung are made 0 long and the one being sung shortened by the part sung, so that
  each later one starts when it did (lengths in tenths of a centisecond where the cut needs them: libass reads them).
  A `\kf` syllable being filled at the cut fills from its start over what is left of it; two syllables or more
  made 0 long are one run for libass (VSFilter's rule for `\k0`), which moves their edges' anti-aliasing a little
  (seen: 36 pixels off by up to 32 of 255). Karaoke that is not so simple (`\kt`, two karaoke tags with no text
  between them, a tag without its number) is left as it is, and so replays from its start, as before (logged).
Times are read as libass reads them (ass_parse.c: integers, commas splitting the arguments up to a backslash, a
missing closing parenthesis allowed; the first `\move` or `\pos` and the first `\fad` or `\fade` count), which mpv,
VLC and FFmpeg's `subtitles` filter render with. Everything else in the text stays byte for byte, and a cue that
holds none of these tags is returned as it was. The Effect field's scrolling (Banner, Scroll up/down), timed from the
cue's start too, is left as it is.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_LEADING_INTEGER = re.compile(r"[ \t]*[+-]?\d+")  # what libass's argtoi32 (strtoll) reads
_LEADING_NUMBER = re.compile(r"[ \t]*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # what its argtod (strtod) reads
_KARAOKE_LENGTH = re.compile(r"\d+(\.\d+)?")
_MAX_ARGUMENTS = 8  # libass keeps 7 arguments and one more, to tell a tag with too many


@dataclass
class _Tag:
    """One override tag of a block: `text[start:end]`, from its backslash to past its closing parenthesis."""
    start: int
    end: int
    name: str
    arguments: list[str]  # the parenthesized ones, split as libass splits them, empty ones left out
    tags_argument: bool  # the last argument holds override tags (`\t`'s)


def continue_effects(event: bytes, cut: int, duration: int) -> bytes:
    """`event` (an ASS packet's data) as shown from `cut` milliseconds after its start in the source, where it was
    `duration` milliseconds long; see the module doc."""
    fields = event.split(b",", 8)
    if len(fields) < 9:  # (not Matroska's form: left alone)
        return event
    text = fields[8].decode("utf-8", errors="surrogateescape")
    retimed = _retimed(text, cut, duration)
    if retimed == text:
        return event
    return b",".join([*fields[:8], retimed.encode("utf-8", errors="surrogateescape")])


def _retimed(text: str, cut: int, duration: int) -> str:
    """The Text field `text` of a cue cut `cut` ms after its start, of `duration` ms in the source; see the module
    doc."""
    edits: list[tuple[_Tag, str]] = []  # (a tag, what replaces it)
    karaoke: list[tuple[_Tag, str, int | None]] = []  # (a karaoke tag, its name, its length in ms: None, not simple)
    text_since_karaoke = True
    position = 0
    while position < len(text):  # as libass's parse_events walks it
        close = text.find("}", position) if text[position] == "{" else -1
        if close < 0:  # a character (an escape such as \N or \{ is two)
            escaped = text[position] == "\\" and text[position + 1:position + 2] in ("N", "n", "h", "{", "}")
            position += 2 if escaped else 1
            text_since_karaoke = True
            continue
        for tag in _tags(text, position + 1, close):
            replacement = _retimed_tag(tag, cut, duration)
            if replacement is not None:
                edits.append((tag, replacement))
            elif tag.name[:1] in ("k", "K"):
                name = "kt" if tag.name.startswith("kt") else "kf" if tag.name.startswith("kf") else \
                    "ko" if tag.name.startswith("ko") else tag.name[0]
                length = tag.name[len(name):].strip(" \t")
                simple = name != "kt" and not tag.arguments and _KARAOKE_LENGTH.fullmatch(length) and \
                    text_since_karaoke
                karaoke.append((tag, name, int(float(length) * 10) if simple else None))  # (libass: cs × 10, cut)
                text_since_karaoke = False
        position = close + 1
    if karaoke and cut > 0:
        if all(length is not None for _, _, length in karaoke):
            edits += _karaoke_sung(karaoke, cut)
        else:
            logger.info("an ASS cue's karaoke, cut %d ms after its start, replays from its start: %r", cut, text)
    for tag, replacement in sorted(edits, key=lambda edit: edit[0].start, reverse=True):
        text = text[:tag.start] + replacement + text[tag.end:]
    return text


def _tags(text: str, start: int, end: int) -> list[_Tag]:
    """The override tags of the block `text[start:end]`, read as libass's ass_parse_tags reads them."""
    tags = []
    position = start
    while position < end:
        backslash = text.find("\\", position, end)
        if backslash < 0:
            break
        name_start = backslash + 1
        while name_start < end and text[name_start] in " \t":
            name_start += 1
        name_end = name_start
        while name_end < end and text[name_end] not in "(\\":
            name_end += 1
        position = name_end
        if name_end == name_start:
            continue
        arguments, tags_argument = [], False
        if position < end and text[position] == "(":
            position += 1
            while True:
                while position < end and text[position] in " \t":
                    position += 1
                argument_end = position
                while argument_end < end and text[argument_end] not in ",\\)":
                    argument_end += 1
                if argument_end < end and text[argument_end] == "\\":  # the rest, to the first ')', is one
                    tags_argument = True
                    argument_end = text.find(")", argument_end, end)
                    argument_end = end if argument_end < 0 else argument_end
                argument = text[position:argument_end].rstrip(" \t")
                if argument and len(arguments) < _MAX_ARGUMENTS:
                    arguments.append(argument)
                if argument_end < end and text[argument_end] == ",":
                    position = argument_end + 1
                    continue
                position = argument_end + 1 if argument_end < end else end  # (past the ')', which may be missing)
                break
        tags.append(_Tag(backslash, position, text[name_start:name_end], arguments, tags_argument))
    return tags


def _retimed_tag(tag: _Tag, cut: int, duration: int) -> str | None:
    """What replaces a timed tag (`\\move`, `\\fad`/`\\fade`, `\\t`) in a cue cut `cut` ms after its start, of
    `duration` ms in the source; None for other tags and for those libass would not use (a wrong argument count).
    Tag names match as libass matches them: by their start, in its order (no tag before these starts so)."""
    arguments = tag.arguments
    if tag.name.startswith("move") and len(arguments) in (4, 6):
        start, end = sorted(map(_integer, arguments[4:])) if len(arguments) == 6 else (0, 0)
        if start <= 0 and end <= 0:  # over the whole cue
            start, end = 0, duration
        start, end = start - cut, end - cut
        x1, y1, x2, y2 = arguments[:4]
        if start < 0 and end <= 0:  # finished before the cut: where it stopped
            return f"\\pos({x2},{y2})"
        if end == 0:  # (start = end = 0, a jump at 0; both ≤ 0 would mean the whole cue)
            end = 1
        return f"\\move({x1},{y1},{x2},{y2},{start},{end})"
    if tag.name.startswith("fad") and len(arguments) in (2, 7):
        if len(arguments) == 2:
            alphas, times = ["255", "0", "255"], [-1, _integer(arguments[0]), _integer(arguments[1]), -1]
        else:
            alphas, times = arguments[:3], [_integer(argument) for argument in arguments[3:]]
        if times[0] == -1 and times[3] == -1:  # \fad's form: in from the start, out before the end
            times = [0, times[1], duration - times[2], duration]
        times = [time - cut for time in times]
        if times[0] == -1 and times[3] == -1:  # (that form again: the same alpha from 0 on, all of it past)
            times[3] = -2
        return f"\\fade({','.join(alphas)},{','.join(map(str, times))})"
    if tag.name.startswith("t") and tag.tags_argument and 1 <= len(arguments) <= 4:
        *timing, tags = arguments
        if len(timing) == 3:
            start, end, acceleration = _integer(timing[0]), _integer(timing[1]), timing[2]
        elif len(timing) == 2:  # (libass reads these two as numbers, cut to integers)
            start, end, acceleration = int(_number(timing[0])), int(_number(timing[1])), "1"
        else:
            start, end, acceleration = 0, 0, timing[0] if timing else "1"
        if end == 0:  # to the end of the cue
            end = duration
        start, end = start - cut, end - cut
        if end == 0:  # finished at the cut: stays finished (0 would mean "to the end")
            end = -1
        return f"\\{tag.name}({start},{end},{acceleration},{tags})"
    return None


def _karaoke_sung(karaoke: list[tuple[_Tag, str, int | None]], cut: int) -> list[tuple[_Tag, str]]:
    """The karaoke tags of a cue cut `cut` ms after its start, rewritten: each syllable sung by then 0 long, the one
    being sung shortened by the part sung; the later ones then start when they did."""
    edits = []
    sung = cut
    for tag, name, length in karaoke:
        left = max(length - sung, 0)
        sung -= length - left
        if left != length:  # in centiseconds, with tenths where needed (libass reads them as numbers)
            edits.append((tag, f"\\{name}{left // 10}" + (f".{left % 10}" if left % 10 else "")))
    return edits


def _integer(argument: str) -> int:
    """An argument as libass's argtoi32 reads it: the integer it starts with, 0 where none."""
    match = _LEADING_INTEGER.match(argument)
    return int(match.group()) if match else 0


def _number(argument: str) -> float:
    """An argument as libass's argtod reads it: the number it starts with, 0 where none."""
    match = _LEADING_NUMBER.match(argument)
    return float(match.group()) if match else 0.0
