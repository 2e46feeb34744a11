"""Stream passthrough: every stream but the upscaled video is copied from the source, packet for packet.

`Passthrough(source, output, video_index=...)` opens the source a second time (for demuxing only), adds each
audio, subtitle, data and attachment stream to `output` with `add_stream_from_template`, and copies what
describes the file: container metadata, chapters, per-stream metadata (language, title, handler) and dispositions
(default, forced, ...). The encoder then calls `mux_until(seconds)` before each video frame, so that packets are
written interleaved with the video as the file grows (memory stays flat whatever the length), and `mux_rest()` at
the end. Attachments (fonts in .mkv) live in the header and have no packets.

Previews (`trim=True`): the output holds only a window of the source, as `ffmpeg -ss A -to B -i source -c copy`
would. `start_at(A)` seeks the source near A (a long file is not demuxed from its start) and makes A the output's
time 0: packets that end before A are dropped, the others are shifted by A (in each stream's time base) and
otherwise copied bit for bit. A packet that straddles A (or ends at it, for the decoder's sake):
- audio, in a container that stores negative times (MP4, MOV: an edit list tells players to skip the part before
  0): kept, starting before 0, as ffmpeg's stream copy does;
- audio, in one that does not (Matroska, WebM): dropped, so the audio starts up to one packet (~20 ms) late. Kept,
  it would make the muxer shift every stream, the video included, away from 0;
- a subtitle cue: cut to start at 0 (its text does not hold its times); a bitmap cue (PGS), which has no duration
  and shows until the next one, is moved to 0 where it is the last before the start. An ASS cue's override tags time
  its effects from its start or over its duration (a fade, a move, karaoke): where the window cuts it, at either end,
  its text is rewritten so that they go on where they were (`ass_effects`).
`end_at(B)` writes the packets that start before B, drops the rest, and sets the chapters that overlap [A, B),
shifted and clipped (set at the end, which the Matroska and MP4 muxers allow, because B is only known then).

A whole output starts at the file's start, as ffmpeg's does without -copyts: the file's start is the earliest start
time of the streams kept (the upscaled video's and the copied ones', as the demuxer gives them: the first packet's
presentation time, an AAC encoder's priming left out), `origin` the source time that becomes the output's 0: the
file's start, or 0 where that is not after 0 (see `origin`). A recording far into its clock (MPEG-TS: anywhere in 26.5
hours) then starts at 0, not with hours that players wait through, its streams as far apart as in the source; the
chapters move with them. The packets are moved as a preview's, by `start_at(origin)`; `keep_source_times` (segment
files, which the join moves) keeps every time as it is.

Times are otherwise copied as they are, but for a decoding time that would not come after its stream's last one in
the output's time base (which muxers refuse): it moves to just after it, as ffmpeg does (`_keep_increasing`); and for
an audio stream's first packet where it starts the codec's priming (Opus's pre-skip) as a coarse time base rounds it:
Matroska counts milliseconds, so Opus's 312 samples (6.5 ms) start at -7 ms there. Where the output counts samples
(MP4), that start is written exactly (-312): the MP4 edit list skips as many samples as the first packet starts before
0, and rescaled, it skipped 336, 24 samples of the sound (`_priming_start`). An MP4 or MOV track ends where its last
packet does (the muxer writes the edit list's duration from that end), and nothing else there marks the samples a
codec padded its last frame with: Matroska's DiscardPadding (Opus's 648 samples after a 2-s sine were played as
sound), or the end of an MP4 source's own edit list. The last packet is shortened by them, and the packets' times
chained on their samples where Matroska's milliseconds round them (`_exact_duration`, `_contiguous_start`); the edit
list counts the movie's milliseconds (FFmpeg's default time scale), so the end is rounded up to one. The other way, an
MP4 source's padding is marked on its last packet as Matroska's demuxer marks it, for Matroska's muxer to write
(`_mark_last_frames_padding`); its priming, which Matroska's muxer writes only from a codec delay PyAV cannot set, is
played before the first frame there (the video moved as much later), as in ffmpeg's own stream copy.

A stream the output container cannot hold (SRT or PGS subtitles in .mp4, attachments outside Matroska, data
streams in .mkv, ...) is skipped with one warning naming it; the file is still written. Nothing is converted:
turning SRT into mov_text would re-encode the text and drop its styling, so the warning suggests .mkv instead.
Whether a stream fits is asked of FFmpeg itself by writing a header holding that stream alone, in memory, except
where a muxer takes a stream without a word and loses it (MPEG-TS stores subtitles other than DVB's, attachments
and covers as private data; QuickTime .mov leaves covers out): those are refused by rule. A cover picture (a
video stream with the attached_pic disposition, from .mp4 or a Matroska image attachment) goes into Matroska as an
attachment, as Matroska keeps covers.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
from av.container import OutputContainer
from av.packet import PacketSideData, packet_sidedata_type_from_literal
from av.stream import Discard, Disposition, Stream

from vsr.pipelines.ass_effects import continue_effects
from vsr.pipelines.probe import TimelineWatch, open_input

logger = logging.getLogger(__name__)

COPIED_TYPES = ("audio", "subtitle", "data", "attachment")  # and cover pictures (video, attached_pic)
MPEGTS_SUBTITLES = ("dvb_subtitle", "dvb_teletext")  # what the MPEG-TS muxer writes as subtitles
# The audio codecs the MPEG-TS muxer has a stream type for; it writes any other (FLAC, ALAC, PCM) as private data.
MPEGTS_AUDIO = ("mp1", "mp2", "mp3", "aac", "aac_latm", "ac3", "eac3", "dts", "truehd", "opus", "s302m")
# Container tags the muxer writes itself, or that describe the source's muxer rather than the content.
_MUXER_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands"}
# Video stream tags that describe the source's encoding, not its pictures, and no longer hold once the video is
# re-encoded: Matroska's statistics (mkvmerge's also with a language suffix, "BPS-eng"), the encoder, QuickTime's
# vendor. The writer says the output's rotation and alpha itself. Every other tag is kept (language, title, handler,
# a user's COMMENT or DESCRIPTION, Matroska's stereo_mode of a 3D video). A "timecode" tag makes the MOV/MP4 muxers
# write a timecode track of their own (see `_is_timecode_track`).
# Matroska's statistics tags (mkvmerge writes them to every track) count a track's packets, bytes and time: true of a
# whole copy, not of a preview's part of the track (MediaInfo showed a 1-s preview's audio with the episode's frames).
_STATISTICS_TAGS = {"bps", "duration", "number_of_frames", "number_of_bytes", "_statistics_tags",
                    "_statistics_writing_app", "_statistics_writing_date_utc"}
_ENCODING_TAGS = _STATISTICS_TAGS | {"encoder", "encoder_options", "vendor_id", "rotate", "alpha_mode"}
# How far before a preview's start the source is sought: the demuxer lands on a keyframe at or before the time
# asked, and audio packets (tens of ms) or subtitle cues (seconds) that overlap the start may lie before it.
_SEEK_MARGIN = 10
# With subtitles, further: a cue stays on screen as long as it is read (a sign, a song's lyrics). A cue begun earlier
# still is lost, as `ffmpeg -ss` loses any that began before the keyframe it lands on.
_SUBTITLE_SEEK_MARGIN = 60
# Opus counts its samples at 48 kHz whatever its input's rate was (RFC 6716 section 2). The duration of each frame of a
# packet by its configuration (RFC 6716 section 3.1, table 2): SILK's 10, 20, 40 and 60 ms at three bandwidths
# (configurations 0-11), hybrid's 10 and 20 ms at two (12-15), CELT's 2.5, 5, 10 and 20 ms at four (16-31).
OPUS_RATE = 48000
_OPUS_FRAME_SAMPLES = [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4
_AVFMT_TS_NEGATIVE = 0x40000  # libavformat/avformat.h: the format stores negative timestamps
# FFmpeg's muxers of the QuickTime family (one muxer, these names), which take the "movflags" option.
MOV_MUXERS = ("mov", "mp4", "ipod", "3gp", "3g2", "ismv", "f4v", "psp")
_AVFMT_TS_NONSTRICT = 0x20000  # libavformat/avformat.h: the format takes equal decoding times (Matroska, FLV)
# A channel count without an order ("2 channels") → FFmpeg's default layout for it (av_channel_layout_default),
# which players assume for such a stream anyway.
_UNORDERED_LAYOUTS = {"1 channels": "mono", "2 channels": "stereo", "3 channels": "2.1", "4 channels": "4.0",
                      "5 channels": "5.0", "6 channels": "5.1", "7 channels": "6.1", "8 channels": "7.1"}


class Passthrough:
    """Copies the source's non-video streams, metadata and chapters into `output`; see the module doc.

    Create it after the output's video stream is added and before the header is written (the first mux).
    With `copy_streams=False` only metadata and chapters are copied. With `trim=True`, call `start_at` before the
    first `mux_until` and `end_at` instead of `mux_rest`; else `start_at(origin)` where `origin` is not 0.
    """

    def __init__(self, source: Path, output: OutputContainer, *, video_index: int, copy_streams: bool = True,
                 trim: bool = False, trim_end: Fraction | None = None, keep_source_times: bool = False):
        self.source = source
        self._input = open_input(source)  # an image sequence's pattern too
        self._output = output
        self._video_index = video_index
        self.copied: dict[int, Stream] = {}  # source stream index → output stream
        self.skipped: dict[int, str] = {}  # source stream index → why
        self.packets_written = 0
        self.packets_dropped = 0  # trim: read but outside the window
        self._pending: av.Packet | None = None
        self._trim = trim
        self._start: Fraction | None = None  # trim: the source time that becomes the output's 0
        self._end = trim_end  # trim: the source time the window ends at, where known before its frames (--end)
        self._negative_times = bool(output.format.flags & _AVFMT_TS_NEGATIVE)
        self._equal_times = bool(output.format.flags & _AVFMT_TS_NONSTRICT)
        self._timecode: str | None = None  # the source's timecode track starts at this, e.g. "01:00:00:00"
        self._last_dts: dict[int, int] = {}  # output stream index → its last packet's dts, in its time base
        self._priming: dict[int, Fraction] = {}  # output audio stream index → its codec's priming, in seconds
        # MP4/MOV: output audio stream index → where its last packet ended (its time base; None before the first);
        # an MP4/MOV source's audio stream index → where its edit list ends (its time base; see `_next_packet`)
        self._audio_ends: dict[int, int | None] = {}
        self._edit_list_ends: dict[int, int] = {}
        self._showing: dict[int, av.Packet] = {}  # trim: source subtitle stream → its bitmap cue shown at the start
        self._read_covers = False  # whether covers' pictures were read from `_input`, which then opens afresh

        # (a preview starts later than the source: its first frame's timecode is not the source's, see
        # copy_video_tags; the MOV muxer would write a timecode track from the container's tag too)
        dropped = _MUXER_TAGS | ({"timecode"} if trim else set())
        tags = {k: v for k, v in self._input.metadata.items() if k.lower() not in dropped}
        output.metadata.update(tags)
        if output.format.name in MOV_MUXERS and any(key.lower().startswith("com.") for key in tags):
            # QuickTime's keys (com.apple.quicktime.make, .model, .location.ISO6709: a phone's camera, place and
            # date) are written only as "mdta" metadata, which the muxer writes only when asked to.
            flags = output.options.get("movflags", "")
            output.options["movflags"] = f"{flags}+use_metadata_tags"
        self._chapters = self._input.chapters()
        for stream in self._input.streams:
            if stream.index == video_index:
                continue
            if _is_timecode_track(stream):
                self._timecode = stream.metadata["timecode"]
                continue
            if _is_chapter_track(self._input, stream):  # the chapters are copied as chapters (the muxer's own track)
                continue
            if copy_streams and (stream.type in COPIED_TYPES or stream.disposition & Disposition.attached_pic):
                self._add(stream)
            elif copy_streams:
                self._skip(stream, f"{stream.type} streams other than the upscaled video are not copied")
        if self._read_covers:  # the packets are copied from the start of the file: from an open not yet read
            self._input.close()
            self._input = open_input(source)
        packet_streams = [s for s in self._input.streams  # attachments (covers made ones too) have no packets
                          if s.index in self.copied and self.copied[s.index].type != "attachment"]
        for stream in self._input.streams:  # the demuxer then skips their data instead of reading it
            if stream not in packet_streams:
                stream.discard = Discard.all
        self._packet_streams = packet_streams
        self._packets: Iterator[av.Packet] = iter(self._input.demux(packet_streams)) if packet_streams else iter(())
        self._timelines = {stream.index: TimelineWatch(source, stream) for stream in packet_streams}
        video = self._input.streams[video_index]
        self._video_tags, self._video_disposition = dict(video.metadata), video.disposition  # (copy_video_tags)
        start = _earliest_start([video, *packet_streams])
        # Where a whole output starts: the file's start, where that is after 0. A start before 0 stays (origin 0):
        # there the source's own 0 is where showing begins, and what lies before it is decoded, not shown (an MP4
        # edit list over B-frames' delay, or over the frames an edit cut off; a Matroska file's frames before 0).
        # ffmpeg moves such a file later by its start, which would show the whole video that much later than the
        # source does; kept, every frame keeps its time, as vsr always did. (An MPEG-TS whose clock wraps in its
        # first minute also begins before 0, and shows it: it keeps its times too, as before.)
        after_0 = start is not None and start > 0 and not keep_source_times
        self.origin = start if after_0 else Fraction(0)
        if not trim:  # (set before the header, where Matroska writes them: a preview's are set at its end)
            output.set_chapters(self._chapters if not self.origin else _chapters_within(self._chapters, self.origin))
        if not packet_streams:
            # Nothing to demux (a segment's file; a source of video and attachments alone): closed at once, since
            # FFmpeg holds three copies of a file's attachments (fonts: tens of MB) for as long as it is open.
            self._input.close()

    def _add(self, stream: Stream) -> None:
        if stream.disposition & Disposition.attached_pic and self._output.format.name == "matroska":
            self._add_cover_attachment(stream)
            return
        reason = _refusal(self._output.format.name, stream)
        if reason is not None:
            self._skip(stream, reason)
            return
        if _codec_name(stream) == "ac3" and self._output.format.name == "avi":
            copy = self._ac3_for_avi(stream)
        else:
            copy = self._output.add_stream_from_template(stream)
        if stream.type == "audio" and stream.codec_context.layout.name in _UNORDERED_LAYOUTS:
            # Matroska keeps a channel count and no order; MP4 refuses an unordered layout, at the end of the file.
            copy.codec_context.layout = _UNORDERED_LAYOUTS[stream.codec_context.layout.name]
        if stream.type == "audio" and stream.codec_context.delay:  # (Opus's pre-skip, from its OpusHead)
            self._priming[copy.index] = Fraction(stream.codec_context.delay, stream.codec_context.sample_rate)
        if stream.type == "audio" and self._output.format.name in MOV_MUXERS:
            self._audio_ends[copy.index] = None
        if stream.type == "audio" and self._input.format.name.startswith("mov") and stream.start_time is not None \
                and stream.duration:
            self._edit_list_ends[stream.index] = stream.start_time + stream.duration
        copy.metadata.update({k: v for k, v in stream.metadata.items()
                              if not (self._trim and _tag_name(k) in _STATISTICS_TAGS)})
        self._name_by_title(copy)
        copy.disposition = stream.disposition
        self.copied[stream.index] = copy

    def _ac3_for_avi(self, stream: Stream) -> Stream:
        """An AC-3 stream for an AVI output, its packets copied: not from the template, whose block_align (an AVI
        source's, 3840) the AVI muxer writes as a constant sample size, and a 4-s track read back as 0.47 s.
        ffmpeg's stream copy resets it; PyAV cannot, so the stream is made as for the AC-3 encoder (which leaves it
        0), with the source's rate, layout and bit rate (its packets' own: the encoder encodes nothing)."""
        context = stream.codec_context
        copy = self._output.add_stream("ac3", rate=context.sample_rate)
        copy.codec_context.layout, copy.codec_context.bit_rate = context.layout, context.bit_rate
        copy.time_base = stream.time_base
        return copy

    def _add_cover_attachment(self, stream: Stream) -> None:
        """A cover picture goes into Matroska as an attachment, where players and FFmpeg look for it: FFmpeg reads
        such an attachment as a one-picture video stream, and its muxer would write that back as a video track."""
        # (read from the open in use, and that closed before another opens: FFmpeg holds three copies of the file's
        # attachments per open, fonts of tens of MB, and two opens besides the decoder's took 0.4 GB at once)
        self._read_covers = True
        picture = next((bytes(packet) for packet in self._input.demux(stream) if packet.size), None)
        if picture is None:
            self._skip(stream, "its picture cannot be read")
            return
        codec = _codec_name(stream)
        mimetype = stream.metadata.get("mimetype") or {"png": "image/png"}.get(codec, "image/jpeg")
        name = stream.metadata.get("filename") or f"cover.{mimetype.rsplit('/', 1)[1]}"
        attachment = self._output.add_attachment(name, mimetype, picture)
        attachment.metadata.update({k: v for k, v in stream.metadata.items() if k.lower() not in ("filename",
                                                                                                    "mimetype")})
        self.copied[stream.index] = attachment

    def _skip(self, stream: Stream, reason: str) -> None:
        self.skipped[stream.index] = reason
        logger.warning("not copying %s: %s", describe(stream), reason)

    def copy_video_tags(self, video: Stream) -> None:
        """Give the output's video stream the source video's tags (but those of its encoding) and disposition."""
        video.metadata.update({k: v for k, v in self._video_tags.items()
                               if _tag_name(k) not in _ENCODING_TAGS})
        self._name_by_title(video)
        if self._timecode is not None:
            video.metadata.setdefault("timecode", self._timecode)
        if self._trim:  # a preview starts later than the source: its first frame's timecode is not the source's
            for key in [key for key in video.metadata if key.lower() == "timecode"]:
                del video.metadata[key]
        video.disposition = self._video_disposition

    def _name_by_title(self, stream: Stream) -> None:
        """MP4 and QuickTime name a track by its handler (hdlr), which FFmpeg's muxer writes from a "handler_name"
        tag: a track's "title" it writes nowhere, and a Matroska episode's "English dub" and "Signs & songs" came out
        as "SoundHandler" and nothing. Players and media servers (VLC, Jellyfin, MediaInfo) show the handler's name
        as the track's title, and HandBrake writes titles there too."""
        title = stream.metadata.get("title")
        if title and self._output.format.name in MOV_MUXERS:
            stream.metadata["handler_name"] = title

    def start_at(self, seconds: Fraction) -> None:
        """Make `seconds` (source time) the output's 0: a preview's start (trim, see the module doc), `origin` for a
        whole output, or the start of a file whose container starts every stream at 0 (AVI); for the last two nothing
        is sought or expected before it."""
        if self._start is not None:
            raise ValueError("start_at is called once, before mux_until")
        self._start = Fraction(seconds)
        subtitles = any(stream.type == "subtitle" for stream in self._packet_streams)
        margin = _SUBTITLE_SEEK_MARGIN if subtitles else _SEEK_MARGIN
        if self._trim and self._start > margin and self._packet_streams:
            # Demuxing from 0 would only read packets to drop; backward: land at or before the time asked.
            try:
                self._input.seek(int((self._start - margin) * av.time_base), backward=True)
            except av.FFmpegError as error:  # then the packets before the start are read and dropped: slower only
                logger.info("cannot seek %s (%s); reading it from the start", self._input.name, error)
            self._packets = iter(self._input.demux(self._packet_streams))
            self._pending = None

    def next_time(self) -> Fraction | None:
        """When the next packet to copy is due (source seconds, as `mux_until` judges it); None when there is none or
        it has no time."""
        packet = self._peek()
        time = None if packet is None else packet.dts if packet.dts is not None else packet.pts
        return None if time is None else time * packet.time_base

    def mux_until(self, seconds: float) -> None:
        """Write every passthrough packet that starts (decoding time, source seconds) at or before `seconds`."""
        while (packet := self._peek()) is not None and _seconds(packet) <= seconds:
            self._pending = None
            self._mux(packet)

    def mux_rest(self) -> None:
        """Write the remaining packets (streams that outlast the video)."""
        self.mux_until(float("inf"))

    def end_at(self, seconds: Fraction) -> None:
        """Trim: write the packets that start before `seconds` (source time), drop the rest, and set the chapters
        that overlap the window."""
        if self._start is None:  # no video frame was written: the window is empty
            return
        while (packet := self._peek()) is not None and _seconds(packet) < seconds:
            self._pending = None
            self._mux(packet)
        for showing in self._showing.values():  # bitmap cues on screen over the whole window
            self._write(showing)
        self._showing.clear()
        self._output.set_chapters(_chapters_within(self._chapters, self._start, Fraction(seconds)))

    def _peek(self) -> av.Packet | None:
        if self._pending is None:
            self._pending = self._next_packet()
        return self._pending

    def _mux(self, packet: av.Packet) -> None:
        is_cover = packet.stream.disposition & Disposition.attached_pic  # no time: belongs to the whole file
        if self._start is not None and packet.pts is not None and not is_cover:
            source_start, source_duration = packet.pts, packet.duration  # (`_shift` moves a packet and cuts a cue)
            if not self._shift(packet):
                self.packets_dropped += 1
                return
            if _codec_name(packet.stream) in ("ass", "ssa"):
                packet = self._with_effects_continued(packet, source_start, source_duration)
            showing = self._showing.pop(packet.stream.index, None)
            if showing is not None and packet.pts > 0:  # the bitmap cue on screen at the start, until this one
                self._write(showing)
        self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        packet.stream = output = self.copied[packet.stream.index]
        self._output.start_encoding()  # (writes the header once: each output stream's time base is then its own)
        self._keep_increasing(packet, output)
        self._output.mux(packet)
        self.packets_written += 1

    def _keep_increasing(self, packet: av.Packet, output: Stream) -> None:
        """Muxers refuse a packet whose decoding time, in their time base, is not after the stream's last one: a
        whole run would fail at its end. TrueHD's 0.83 ms packets repeat Matroska's millisecond times, and AC-3's
        collide in AVI's ticks of a frame. As ffmpeg does, such a time moves to just after the last one (the data,
        and the order, stay as they are). A time equal to the last stays where the muxer takes it (Matroska's, and
        every muxer's for subtitles): moved, each would push every later packet on, the audio a fifth late by the
        end of a TrueHD track."""
        if packet.dts is None:
            return
        source, target = packet.time_base, output.time_base
        dts = _rescaled(packet.dts, source, target)
        pts = _rescaled(packet.pts, source, target) if packet.pts is not None else None
        last = self._last_dts.get(output.index)
        if last is None and output.index in self._priming and packet.pts == packet.dts:  # the stream's first packet
            dts = pts = _priming_start(packet.dts, source, target, self._priming[output.index])
        elif self._audio_ends.get(output.index) is not None and packet.pts == packet.dts:
            dts = pts = _contiguous_start(packet.dts, source, target, self._audio_ends[output.index])
        equal_allowed = self._equal_times or output.type in ("subtitle", "data")  # (libavformat/mux.c)
        least = None if last is None else last if equal_allowed else last + 1
        if least is not None and dts < least:
            dts = least
            pts = max(pts, dts) if pts is not None else None
        duration = _rescaled(packet.duration, source, target) if packet.duration else packet.duration
        if output.index in self._audio_ends and duration:
            duration = self._exact_duration(packet, output, duration)
        packet.dts, packet.pts, packet.time_base, packet.duration = dts, pts, target, duration
        self._last_dts[output.index] = dts
        if output.index in self._audio_ends:
            self._audio_ends[output.index] = dts + duration if duration else None

    def _exact_duration(self, packet: av.Packet, output: Stream, duration: int) -> int:
        """An audio packet's duration in `output` (MP4, MOV), whose muxer ends the track (its edit list) where its
        last packet ends: `duration` (the packet's, rescaled), but
        - a codec's frame (AAC's 1024 samples, MP3's 1152) where `duration` is that as the source rounds it
          (Matroska's 21 ms for AAC's 21.33), so that the packets' times chain on their samples (`_contiguous_start`);
        - less the samples the packet holds past the sound, which MP4 keeps no mark of: Matroska's DiscardPadding,
          which FFmpeg's demuxer gives as the packet's skip_samples side data (Opus and MP3 pad their last frame;
          648 and 815 samples after a 2-s sine were played as sound), or past the end of an MP4 source's own edit
          list, which the demuxer does not cut its last packet to (`_next_packet`)."""
        source, target = packet.time_base, output.time_base
        rate = output.codec_context.sample_rate
        frame = _nearest(Fraction(output.codec_context.frame_size, rate) / target)
        if frame and _rescaled(frame, target, source) == packet.duration:
            duration = frame
        padding = _nearest(Fraction(_end_padding(packet), rate) / target)
        decoded = max(duration, frame)  # (the padding is the frame's: an MP4 source's duration may leave it out)
        return min(duration, decoded - padding) if 0 < padding < decoded else duration

    def _shift(self, packet: av.Packet) -> bool:
        """Move a packet to the trimmed timeline; False when it is dropped (see the module doc)."""
        offset = round(self._start / packet.time_base)
        duration = packet.duration or 0
        if packet.stream.type == "subtitle" and not duration and packet.pts < offset:
            # A bitmap cue (PGS) has no duration: it shows until the next one. The last before the start is held,
            # to show from 0 (`_mux`, `end_at`).
            packet.pts = packet.dts = 0
            self._showing[packet.stream.index] = packet
            return False
        if packet.pts + duration < offset:  # ends before the start (one ending at it primes decoders such as AAC's)
            return False
        packet.pts -= offset
        if packet.dts is not None:
            packet.dts -= offset
        if packet.stream.type == "subtitle" and self._end is not None and duration:
            # A cue shown past the window's end (a sign on screen for a minute) ends with it: the file lasted as long.
            room = round((self._end - self._start) / packet.time_base) - packet.pts
            if 0 < room < duration:
                packet.duration = duration = room
        if packet.pts < 0 and packet.stream.type == "subtitle":  # a cue shown since before the start
            packet.duration = duration + packet.pts
            packet.pts = packet.dts = 0
            return packet.duration > 0
        return packet.pts >= 0 or self._negative_times

    def _with_effects_continued(self, packet: av.Packet, source_start: int, source_duration: int) -> av.Packet:
        """An ASS cue that the window cut (at its start, or at its end), as a packet whose text times its effects
        from where the cue now starts, as long as it was (`continue_effects`); any other cue as it is."""
        cut = packet.pts + round(self._start / packet.time_base) - source_start  # (time base units)
        if not source_duration or (cut == 0 and packet.duration == source_duration):
            return packet
        milliseconds = packet.time_base * 1000
        text = continue_effects(bytes(packet), _nearest(cut * milliseconds), _nearest(source_duration * milliseconds))
        if text == bytes(packet):
            return packet
        rewritten = av.Packet(text)
        rewritten.stream, rewritten.time_base = packet.stream, packet.time_base
        rewritten.pts, rewritten.dts, rewritten.duration = packet.pts, packet.dts, packet.duration
        rewritten.is_keyframe = packet.is_keyframe
        return rewritten

    def _next_packet(self) -> av.Packet | None:
        for packet in self._packets:
            if packet.size == 0:  # the demuxer's flush packets carry nothing
                continue
            self._timelines[packet.stream.index].check(packet)
            end = self._edit_list_ends.get(packet.stream.index)
            if end is not None and packet.duration and packet.pts is not None and \
                    packet.pts < end <= packet.pts + packet.duration:
                self._mark_last_frames_padding(packet, end)
            return packet
        return None

    def _mark_last_frames_padding(self, packet: av.Packet, end: int) -> None:
        """An MP4 or MOV source's last audio packet (it reaches `end`, where the track's edit list ends), whose
        frame holds the codec's padding past that end, which the packet does not show: FFmpeg's demuxer does not cut
        it to the edit list (MP3's 815 samples after a 2-s sine), and its duration, where the encoder shortened it,
        is not what it decodes to (AAC's last 1024 samples stored as 768). It is given the mark a Matroska source's
        packet has (skip_samples side data), which Matroska's muxer writes as DiscardPadding and `_exact_duration`
        cuts in MP4. An Opus packet has no fixed size: it says its own in its first byte (`opus_packet_samples`);
        stored short, Opus's 648 samples of padding were played in Matroska."""
        context = packet.stream.codec_context
        if _codec_name(packet.stream) == "opus":
            frame = _nearest(Fraction(opus_packet_samples(bytes(packet)), OPUS_RATE) / packet.time_base)
        else:
            frame = _nearest(Fraction(context.frame_size, context.sample_rate) / packet.time_base)  # (0: not fixed)
        padding = (packet.pts + max(packet.duration, frame) - end) * packet.time_base
        if padding > 0:
            _mark_end_padding(packet, _nearest(padding * context.sample_rate))

    def close(self) -> None:
        self._input.close()


def describe(stream: Stream) -> str:
    """E.g. "subtitle stream #2 (subrip, eng, 'English')" (FFmpeg's codec names, as ffprobe gives them)."""
    codec = stream.metadata.get("filename") if stream.type == "attachment" else _codec_name(stream)
    details = [codec or "no codec"]
    if stream.language:
        details.append(stream.language)
    if stream.metadata.get("title"):
        details.append(repr(stream.metadata["title"]))
    return f"{stream.type} stream #{stream.index} ({', '.join(details)})"


def _rescaled(value: int, source: Fraction, target: Fraction) -> int:
    """A time in `source` units in `target` units, rounded to the nearest, halves away from 0: as the muxer's
    av_packet_rescale_ts would, so that a packet nothing moves is stored as it would have been."""
    return _nearest(value * source / target)


def _nearest(exact: Fraction) -> int:
    """`exact` rounded to the nearest integer, halves away from 0 (FFmpeg's AV_ROUND_NEAR_INF)."""
    return math.floor(exact + Fraction(1, 2)) if exact >= 0 else -math.floor(-exact + Fraction(1, 2))


def _priming_start(time: int, source: Fraction, target: Fraction, priming: Fraction) -> int:
    """An audio stream's first packet time `time` (`source` units) in `target` units: where it is the start of the
    codec's priming (`priming` seconds before 0) as `source` rounds it, that start exactly (see the module doc); else
    as rescaled. Where `source` holds the start exactly (AAC's 1024 samples in MP4), both are the same."""
    if time == _nearest(-priming / source):
        return _nearest(-priming / target)
    return _rescaled(time, source, target)


def _contiguous_start(time: int, source: Fraction, target: Fraction, end: int) -> int:
    """An audio packet's time `time` (`source` units) in `target` units: where the last packet ended (`end`, `target`
    units), where `time` is that as `source` rounds it (the stream has no gap there); else as rescaled. Matroska's
    milliseconds put Opus's 20-ms packets up to 0.5 ms off their samples, and an MP4 track's end with its last
    packet's; chained, each starts on its sample, as in a source that counts samples."""
    return end if _rescaled(end, target, source) == time else _rescaled(time, source, target)


def opus_packet_samples(packet: bytes) -> int:
    """How many samples (at 48 kHz) an Opus packet decodes to, read from its TOC byte (RFC 6716 section 3.1): its
    configuration (the top 5 bits) gives the duration of each frame, its code (the low 2 bits) their number: one,
    two (codes 1 and 2), or as many as the low 6 bits of the next byte say (code 3). 0 for a packet too short."""
    if not packet:
        return 0
    code = packet[0] & 0b11
    if code == 3 and len(packet) < 2:
        return 0
    frames = 1 if code == 0 else 2 if code in (1, 2) else packet[1] & 0b111111
    return _OPUS_FRAME_SAMPLES[packet[0] >> 3] * frames


def _end_padding(packet: av.Packet) -> int:
    """The samples at the end of `packet` that its decoder drops (its skip_samples side data: 32-bit little-endian
    counts of samples to skip at the start and at the end, then a reason for each), 0 where it has none."""
    if not packet.has_sidedata("skip_samples"):
        return 0
    return int.from_bytes(bytes(packet.get_sidedata("skip_samples"))[4:8], "little")


def _mark_end_padding(packet: av.Packet, samples: int) -> None:
    """Give `packet` skip_samples side data that drops `samples` at its end (and as many at its start as before)."""
    start = bytes(packet.get_sidedata("skip_samples"))[:4] if packet.has_sidedata("skip_samples") else bytes(4)
    side_data = PacketSideData(packet_sidedata_type_from_literal("skip_samples"), 10)
    memoryview(side_data)[:] = start + samples.to_bytes(4, "little") + bytes(2)  # (the reasons: none)
    side_data.to_packet(packet)


def _seconds(packet: av.Packet) -> float:
    """When a packet is due: its decoding time; a cover picture has no time and is due at once."""
    time = packet.dts if packet.dts is not None else packet.pts
    return float(time * packet.time_base) if time is not None else float("-inf")


def _earliest_start(streams: list[Stream]) -> Fraction | None:
    """The earliest start time of `streams` in seconds (None where none has one): each as its demuxer gives it, the
    first packet's presentation time (MPEG-TS's clock unwrapped), past the priming samples an encoder put before an
    audio stream's start (AAC in MP4: its first packet is before 0, its start is 0). A cover picture has no time."""
    starts = [stream.start_time * stream.time_base for stream in streams if stream.start_time is not None
              and stream.time_base and not stream.disposition & Disposition.attached_pic]
    return min(starts, default=None)


def _chapters_within(chapters: list[dict], start: Fraction, end: Fraction | None = None) -> list[dict]:
    """The chapters that overlap [start, end), clipped to it and moved so that `start` is 0 (`end` None: no end)."""
    kept = []
    for chapter in chapters:
        time_base = chapter["time_base"]
        first = max(chapter["start"] * time_base, start)
        last = chapter["end"] * time_base if end is None else min(chapter["end"] * time_base, end)
        if first < last:
            kept.append({**chapter, "start": round((first - start) / time_base),
                         "end": round((last - start) / time_base)})
    return kept


def _tag_name(key: str) -> str:
    """A stream tag's name in lower case, without the language suffix mkvmerge gives its statistics ("BPS-eng")."""
    return key.split("-")[0].lower()


def _is_timecode_track(stream: Stream) -> bool:
    """A QuickTime timecode track (tmcd): a data stream whose demuxer gives it a "timecode" tag. It is not copied: the
    MOV muxer cannot write a copy (it needs the track's frame rate, which PyAV cannot set) but writes a timecode track
    of its own from the video stream's "timecode" tag, which `copy_video_tags` sets."""
    return stream.type == "data" and "timecode" in stream.metadata


def _is_chapter_track(container: av.container.InputContainer, stream: Stream) -> bool:
    """A QuickTime chapter track (text): the MOV demuxer reads the chapters from it and discards its packets. Not
    copied: the chapters are, and the MP4/MOV muxers write them as such a track again."""
    return container.format.name.startswith("mov") and stream.type == "data" and stream.discard == Discard.all


def _refusal(container: str, stream: Stream) -> str | None:
    """Why `container` cannot hold `stream` (None when it can), found by writing a header with it alone, and for
    what some muxers take without a word and lose."""
    cover = stream.disposition & Disposition.attached_pic
    if container == "mpegts" and (stream.type == "attachment" or cover or (
            stream.type == "subtitle" and _codec_name(stream) not in MPEGTS_SUBTITLES) or (
            stream.type == "audio" and _codec_name(stream) not in MPEGTS_AUDIO)):
        # The MPEG-TS muxer stores what it has no stream type for as private data: read back, it is "bin_data".
        what = "attachments" if stream.type == "attachment" else "cover pictures" if cover else (
            f"{_codec_name(stream)} subtitles (only {' and '.join(MPEGTS_SUBTITLES)})" if stream.type == "subtitle"
            else f"{_codec_name(stream)} audio")
        return f"MPEG-TS files cannot hold {what}; Matroska (.mkv) holds them"
    if container == "webm" and stream.type == "attachment":  # the WebM muxer leaves them out of the file
        return "WebM files cannot hold attachments; Matroska (.mkv) holds them"
    if container in ("mov", "avi") and stream.type == "data" and _codec_name(stream) == "klv":
        # Both take it without a word and write what reads back as no codec (a packet short in .mov).
        return f"{container} files cannot hold klv data; MPEG-TS (.ts) holds it"
    if container == "avi" and _codec_name(stream) == "eac3":
        # The AVI muxer has no frame size for E-AC-3 (it has for AC-3) and writes a PCM block size, by which readers
        # time each packet: 1.2 s from .mkv read back as 0.3 s (mono) or 0.05 s (5.1), from .mp4 as 0.6 s (mono), in
        # FFmpeg 5.1 and 8 alike (ffmpeg's stream copy writes the same header). From an AVI, the source's block size
        # goes along as a constant sample size, timed by the nominal bit rate: right at 48 kHz, 0.47 % fast at 44.1.
        return "avi files cannot hold eac3 audio with its times (FFmpeg's muxer times it as PCM); .mkv and .mp4 hold it"
    if container == "mov" and cover:  # the QuickTime muxer leaves it out of the file
        return "QuickTime .mov files leave cover pictures out; .mp4 and .mkv hold them"
    layout = stream.codec_context.layout.name if stream.type == "audio" else ""
    if container in MOV_MUXERS and layout.endswith(" channels") and layout not in _UNORDERED_LAYOUTS:
        # More channels than FFmpeg has a default order for: the muxer takes the header, then refuses every packet
        # (the run failed at its end).
        return f"{container} files cannot hold audio of {layout} without an order; Matroska (.mkv) holds it"
    probe = av.open(io.BytesIO(), "w", format=container)
    try:
        if container == "mxf":  # (its muxer wants one video stream, the first: audio alone was "cannot hold")
            video = probe.add_stream("mpeg2video", rate=25)
            video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        if stream.type == "attachment":
            # A stand-in with the attachment's name and type: the muxers judge those, not the bytes, and a copy of
            # the bytes (a font, tens of MB), written into this header in memory, was two more copies at once.
            probe.add_attachment(stream.metadata.get("filename", "attachment"), stream.metadata.get("mimetype", ""),
                                 b"\0")
        else:
            probe.add_stream_from_template(stream)
        probe.start_encoding()
    except (ValueError, av.FFmpegError):
        if stream.type == "attachment":
            what = "attachments"
        elif stream.disposition & Disposition.attached_pic:
            what = "cover pictures in a video stream"
        elif _codec_name(stream) == "aac" and stream.container.format.name in ("mpegts", "aac"):
            # The AVI muxer takes AAC, but not with the ADTS header each packet has in MPEG-TS (FFmpeg's command
            # line rewrites it with the aac_adtstoasc filter, which PyAV cannot run before the header is written).
            return f"{container} files take AAC without the ADTS headers it has in MPEG-TS; .mkv and .mp4 hold it"
        else:  # "aac audio", "subrip subtitles", "bin_data data streams"
            kind = {"audio": "audio", "data": "data streams"}.get(stream.type, f"{stream.type}s")
            what = f"{_codec_name(stream)} {kind}"
        # Where Matroska holds it (asked as this container was), the warning says so: AAC refused by .webm too.
        hint = "; Matroska (.mkv) holds them" if container != "matroska" and _refusal("matroska", stream) is None \
            else ""
        return f"{container} files cannot hold {what}{hint}"
    finally:
        try:
            probe.close()
        except (ValueError, av.FFmpegError):
            pass
    return None


def _codec_name(stream: Stream) -> str:
    """The codec's own name (dvb_subtitle, mp3, ass), not its decoder's (dvbsub, mp3float, ssa); a data stream's
    (klv), which has no decoder; "codec-less" where FFmpeg names none."""
    if stream.codec_context is not None:
        return stream.codec_context.codec.canonical_name
    return getattr(stream, "name", None) or "codec-less"
