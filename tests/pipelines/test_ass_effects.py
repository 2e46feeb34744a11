"""ASS cues cut by a preview: their effects' times rewritten as libass reads them (the rendered frames are compared
pixel for pixel in test_passthrough.py)."""

from __future__ import annotations

import pytest

from vsr.pipelines.ass_effects import continue_effects


def cut(text: str, cut_ms: int, duration_ms: int = 3000) -> str:
    """The text of a cue of `duration_ms` shown from `cut_ms` after its start, as `continue_effects` rewrites it."""
    event = "7,0,Default,Sign,0,0,0,,".encode() + text.encode()
    rewritten = continue_effects(event, cut_ms, duration_ms)
    fields = rewritten.split(b",", 8)
    assert fields[:8] == event.split(b",", 8)[:8]  # (ReadOrder, Layer, Style, Name, margins, Effect as they were)
    return fields[8].decode()


@pytest.mark.parametrize("text, expected", [
    # \fad: in from the start, out before the end: the \fade it stands for, its times moved by the 1000 ms cut.
    (r"{\fad(800,600)}Hi", r"{\fade(255,0,255,-1000,-200,1400,2000)}Hi"),
    (r"{\fade(255,0,128,0,400,1500,2500)}Hi", r"{\fade(255,0,128,-1000,-600,500,1500)}Hi"),
    (r"{\fade(255,0,255,-1,300,200,-1)}Hi", r"{\fade(255,0,255,-1000,-700,1800,2000)}Hi"),  # (-1, -1: \fad's form)
    (r"{\fade(9,9,9,999,999,999,999)}Hi", r"{\fade(9,9,9,-1,-1,-1,-2)}Hi"),  # (not \fad's form again)
    # \move over the whole cue (no times, or both ≤ 0), one under way, one finished: where it stopped.
    (r"{\move(1,2,3.5,4)}Hi", r"{\move(1,2,3.5,4,-1000,2000)}Hi"),
    (r"{\move(1,2,3,4,-5,0)}Hi", r"{\move(1,2,3,4,-1000,2000)}Hi"),
    (r"{\move(1,2,3,4,1500,500)}Hi", r"{\move(1,2,3,4,-500,500)}Hi"),  # (times swapped, as libass does)
    (r"{\move(1,2,3,4,200,900)}Hi", r"{\pos(3,4)}Hi"),
    (r"{\move(1,2,3,4,200,1000)}Hi", r"{\pos(3,4)}Hi"),
    (r"{\move(1,2,3,4,1000,1000)}Hi", r"{\move(1,2,3,4,0,1)}Hi"),  # (a jump just after 0, not the whole cue)
    # \t: to the end where t2 is 0; one finished at the cut keeps t2 below 0; tags and acceleration kept.
    (r"{\t(\frz30)}Hi", r"{\t(-1000,2000,1,\frz30)}Hi"),
    (r"{\t(2,\frz30)}Hi", r"{\t(-1000,2000,2,\frz30)}Hi"),
    (r"{\t(500,0,\frz30)}Hi", r"{\t(-500,2000,1,\frz30)}Hi"),
    (r"{\t(0,1000,0.5,\fscx200\1c&H00FF00&)}Hi", r"{\t(-1000,-1,0.5,\fscx200\1c&H00FF00&)}Hi"),
    (r"{\t(1500.7,2000,\clip(0,0,10,10))}Hi", r"{\t(500,1000,1,\clip(0,0,10,10))}Hi"),
    (r"{\t(0,500,\frz9}Hi", r"{\t(-1000,-500,1,\frz9)}Hi"),  # (a missing parenthesis, as libass allows)
    # Karaoke: syllables sung are 0 long, the one being sung shortened; \kf, \K and \ko alike.
    (r"{\k50}Ka{\K30}ra{\kf40}o{\ko60}ke", r"{\k0}Ka{\K0}ra{\kf20}o{\ko60}ke"),
    (r"{\k150}La {\k200}la", r"{\k50}La {\k200}la"),
    # Only the timed tags change: the rest of the text, other tags and blocks without a backslash stay.
    (r"{\an7\pos(1,2)\blur2}a{comment}\N{\fad(0,0)}b",
     r"{\an7\pos(1,2)\blur2}a{comment}\N{\fade(255,0,255,-1000,-1000,2000,2000)}b"),
    (r"Plain \{not a block\} text", r"Plain \{not a block\} text"),
])
def test_timed_tags_continue_where_they_were(text, expected):
    assert cut(text, 1000) == expected


def test_karaoke_cut_between_centiseconds_says_tenths():
    assert cut(r"{\k12}a{\k12}b", 125) == r"{\k0}a{\k11.5}b"


@pytest.mark.parametrize("text", [
    r"{\k50}Ka{\kt100\k30}ra",  # \kt sets when a syllable starts
    r"{\k50\k30}Ka",  # two karaoke tags with no text between them: libass's run rules
    r"{\k}Ka{\k30}ra",  # a tag without its number (libass: 1 s)
])
def test_karaoke_not_simple_is_left_as_it_is(text):
    assert cut(text, 1000) == text


def test_a_cue_cut_only_at_its_end_keeps_its_effects_where_they_were():
    """A preview's end shortens a cue too: the fade-out and a move over the whole cue follow its source duration."""
    assert cut(r"{\fad(200,300)\move(0,0,10,10)}Hi", 0, 3000) == \
        r"{\fade(255,0,255,0,200,2700,3000)\move(0,0,10,10,0,3000)}Hi"


def test_a_cue_without_timed_tags_is_returned_byte_for_byte():
    event = "3,0,Default,,0,0,0,,{\\i1}Caf\xe9\\Nnext".encode("latin-1")  # (not UTF-8: kept as it is)
    assert continue_effects(event, 1000, 3000) is event
    assert continue_effects(b"no commas", 1000, 3000) == b"no commas"
