"""The folder of a segmented run, kept until the output is whole, so that a run cut short resumes.

    .movie.x4.mp4.segments/          beside the output
        plan.json                    what is being made: source (path, size, mtime), settings, segments
        lock                         held (flock) by the run that works in the folder
        segment-0000.mp4             a finished segment (written under a temporary name, then renamed; .mov for
                                     ProRes, .mkv for VP9 with alpha: `segments.segment_suffix`)...
        segment-0000.json            ...and its record (frames' pts, size), written last: the segment counts as done

A run that finds the folder with the same plan (same source file, same settings in effect, same cuts) keeps the
segments that have a record and upscales only the others. A folder of another plan that holds finished segments is
refused with one line naming what changed, and left as it is: hours of work are not thrown away for an option
forgotten on the command line; the command they were made with resumes them, and --overwrite starts over (as an
existing output needs it to be replaced). One that holds none, or whose plan cannot be read, is started over. The
folder is removed once the output is joined; a run that fails or is interrupted leaves it, and says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path

from vsr.errors import OutputError
from vsr.fsutil import hidden_sibling, locked, write_bytes_atomic

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
# The layout of plan.json. 2: it also records what the segments are encoded with as vsr resolved the settings
# ("encoding": crf, preset, encoder options, pix_fmt, the codec's defaults filled in) and the zoo's weights of a model
# named by name ("weights"). Plans without a version recorded the settings as given (crf None: the default then).
# Later plans of version 2 also record what the settings that vsr resolves on the machine that runs it came to
# ("resolved": the decoder and precision that "auto" chose, the --outscale in effect, None for the model's own scale;
# the decoder and precision left out where Ray tasks make the segments elsewhere). Where one of two plans lacks one,
# that setting is compared as given, as before: a plan without them still resumes as it did.
PLAN_VERSION = 2
RESOLVED_KEYS = ("decoder", "precision", "outscale")
ENCODING_KEYS = ("crf", "preset", "encoder_options", "pix_fmt")  # (recorded as given in "settings" too)
# What a folder of segments holds: the lock, the plan, segments and their records, and those being written.
_OWN_ENTRY = re.compile(r"lock|plan\.json|segment-\d{4}\.\w+|\.(plan\.json|segment-\d{4})\..*")


def segment_folder_path(output: Path) -> Path:
    return hidden_sibling(output, output.name, ".segments")


def kept_segments(output: Path) -> int:
    """The finished segments that the folder of segments of `output` keeps for a plan (0: none, or no folder): what a
    run with other settings refuses to throw away (`SegmentFolder`)."""
    folder = segment_folder_path(output)
    if not (folder / PLAN_FILE).is_file():  # (segments of no plan are of no known run: started over, not refused)
        return 0
    return len(list(folder.glob("segment-*.json")))


def kept_frames(output: Path) -> int:
    """The frames of the finished segments kept for `output` (`kept_segments`), as their records say: what a run
    that resumes them has done before it starts (a batch's bar starts there). 0 where none can be read."""
    folder = segment_folder_path(output)
    if not (folder / PLAN_FILE).is_file():
        return 0
    frames = 0
    for record_file in folder.glob("segment-*.json"):
        try:
            frames += len(json.loads(record_file.read_text())["pts"])
        except (OSError, ValueError, KeyError, TypeError):  # (`SegmentFolder.done` says so, and redoes it)
            continue
    return frames


def segment_file(folder: Path, index: int, suffix: str = ".mp4") -> Path:
    return folder / f"segment-{index:04d}{suffix}"


def remove_stale_folder(output: Path) -> None:
    """Remove the folder of segments that an earlier run cut short left for `output`, where this run makes the
    output in one go (it is short now, or --segment-seconds 0): the segments are no use to it, and the folder would
    stay beside the output for good. Left alone while another run holds its lock."""
    folder = segment_folder_path(output)
    try:
        # Without a plan: a folder whose removal was cut short, holding segments and only names of vsr's own (not one
        # that another run has just made, empty or with its lock alone, and is about to lock).
        entries = os.listdir(folder)
    except OSError:  # (no folder)
        return
    if not ((folder / PLAN_FILE).is_file() or (all(map(_OWN_ENTRY.fullmatch, entries))
                                                and any(entry.startswith("segment-") for entry in entries))):
        return
    try:
        with locked(folder / "lock", busy="held by a live run"):
            kept = len(list(folder.glob("segment-*.json")))
            shutil.rmtree(folder)
    except OSError:  # (locked by a live run: OutputError; or not ours to remove)
        return
    if kept:
        log.warning("%s: removed %d segment(s) an earlier run kept, of no use to this one (it makes the output in "
                    "one go)", folder, kept)


def _shown(value) -> str:
    if value is None:
        return "not given"
    if isinstance(value, dict) and "file" in value:  # (a checkpoint, recorded as the file it is)
        return str(value["file"])
    return value if isinstance(value, str) else json.dumps(value)


def changed_settings(before: dict, after: dict) -> str:
    """The settings that differ between two records of them, as options (`--crf 20, was not given`): said where
    earlier work is thrown away for them, so that an option changed by mistake can be put back in time."""
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            now, was = _shown(after.get(key)), _shown(before.get(key))
            changes.append(f"--{key.replace('_', '-')} {now}, " + ("its file changed since" if now == was else
                                                                   f"was {was}"))
    return "; ".join(changes)


def _effective(plan: dict, resolved: Collection[str] = ()) -> dict:
    """A plan's settings with what its segments are encoded with in place of the settings given (no --crf and
    `--crf 23` are the same where 23 is the codec's default), and so for the `resolved` settings (--precision auto
    and bf16 are the same where auto chose bf16)."""
    settings = plan.get("settings", {})
    if "encoding" in plan:
        settings = {**{key: value for key, value in settings.items() if key not in ENCODING_KEYS}, **plan["encoding"]}
    return {**settings, **{key: plan["resolved"][key] for key in resolved}}


def _resolved_in_both(before: dict, after: dict) -> list[str]:
    """The settings that both plans record as resolved (see PLAN_VERSION), compared so; the others as given."""
    return [key for key in RESOLVED_KEYS if key in before.get("resolved", {}) and key in after.get("resolved", {})]


def _upgraded(before: dict, after: dict, first_kept: Path | None) -> dict:
    """`before`, a plan of an earlier vsr (no version: its settings as given, None for a default), with what its
    segments were encoded with, where it gave the encoder the same settings as `after` (the --crf aside): vsr's
    encoder defaults are the same now but for x265's CRF (20, then 23), and x264 and x265 write the CRF they used
    into the stream, so a kept segment (`first_kept`) says it (`encode.encoded_crf`). Why not redo every such
    folder: it holds a run cut short, often hours of work, which an unchanged default keeps; a changed one is named
    as a change (--crf 23, was 20), so that `--crf 20` resumes it and nothing is mixed. Other settings given are
    compared as given, as the vsr that wrote the plan did."""
    from vsr.pipelines.encode import encoded_crf

    given, now = before.get("settings", {}), after.get("settings", {})
    if "version" in before or "encoding" not in after or any(
            given.get(key) != now.get(key) for key in ("codec", *ENCODING_KEYS) if key != "crf"):
        return before
    encoding = dict(after["encoding"])
    crf = given.get("crf")
    if crf is None and encoding["crf"] is not None and first_kept is not None:
        crf = encoded_crf(first_kept)  # (None: not written, as by a bit rate: the default, as now)
    if crf is not None and encoding["crf"] is not None:
        encoding["crf"] = f"{float(crf):g}"  # (as `effective_settings` writes it: "20")
    return {**before, "version": PLAN_VERSION, "encoding": encoding, "weights": after.get("weights")}


def _as_made(before: dict, after: dict) -> str:
    """The options that name what "auto" chose where the segments of `before` were made and chooses otherwise for
    `after` (`--precision fp32`), which resume them; "" where there are none, or one of them chose several (devices
    that chose otherwise)."""
    resolved = _resolved_in_both(before, after)
    options = [f"--{key} {before['resolved'][key]}" for key in resolved if key != "outscale"
               and before["settings"].get(key) == after["settings"].get(key)
               and after["settings"].get(key) in (None, "auto")
               and before["resolved"][key] != after["resolved"][key]]
    return "" if any("," in option for option in options) else " ".join(options)


def _besides_settings(plan: dict) -> dict:
    """A plan without the settings given and resolved (compared by `_plan_change` as settings): its cuts, ..."""
    return {key: value for key, value in plan.items() if key not in ("settings", "resolved")}


def _plan_change(before: dict, after: dict) -> str:
    """Why a folder made for the plan `before` is no use to `after`, in a few words that follow "made for"; ""
    where it is of use."""
    reasons = []
    if [before.get(key) for key in ("source", "size", "mtime_ns")] != [after[key] for key in ("source", "size",
                                                                                               "mtime_ns")]:
        reasons.append("another source (or this one before it changed)")
    resolved = _resolved_in_both(before, after)
    settings = changed_settings(_effective(before, resolved), _effective(after, resolved))
    if settings:
        reasons.append(f"other settings ({settings})")
    # A setting given alike and resolved otherwise: "auto" chose otherwise on the machine that made them (a CPU's
    # PyAV and bf16, a GPU's DALI and fp16), and the segments still to make would not match the kept ones.
    chosen = [f"--{key} {after['settings'].get(key) or 'auto'}" for key in resolved if key != "outscale"
              and before["settings"].get(key) == after["settings"].get(key)
              and before["resolved"][key] != after["resolved"][key]]
    if chosen:
        reasons.append(f"what {', '.join(chosen)} chose on the machine that made them")
    # A setting given alike (or not at all) and encoded otherwise: vsr's default for it changed in between.
    defaults = [key for key in ENCODING_KEYS if before.get("settings", {}).get(key) == after["settings"].get(key)
                and before.get("encoding", {}).get(key) != after.get("encoding", {}).get(key)]
    if "encoding" in before and defaults:
        reasons.append(f"vsr's earlier defaults for {', '.join('--' + key.replace('_', '-') for key in defaults)}")
    # The same models named, other weights: a checkpoint rewritten in place, or another vsr's zoo.
    same_names = all(_effective(before).get(key) == _effective(after).get(key) for key in ("model", "blend"))
    if same_names and before.get("model_files") != after.get("model_files"):
        reasons.append("the checkpoint as it was before it changed")
    if same_names and before.get("weights") != after.get("weights"):
        reasons.append("other weights under the model's name (another vsr's zoo)")
    if not reasons and _besides_settings(before) != _besides_settings(after):
        reasons.append("other cuts of the video")  # (the settings given may differ in form only: --crf 23)
    return "; ".join(reasons)


class KeptSegmentsRefused(OutputError):
    """The segments kept for an output were made for another plan (other settings, or what "auto" chose on another
    machine), and this run would mix its own with them: refused, the segments kept. Not the job's failure but the
    run's settings: a batch does not count it as one of the job's attempts (`batch_workers.JobResult`)."""


@dataclasses.dataclass(frozen=True)
class SegmentRecord:
    """A finished segment: its file and what the worker encoded into it."""

    index: int
    path: Path
    pts: list[int]  # the frames encoded, in the source's time base
    width: int
    height: int


class SegmentFolder:
    """The segments of one output, on disk. Use as a context manager: the lock is held inside."""

    def __init__(self, output: Path, plan: dict, suffix: str = ".mp4", overwrite: bool = False):
        """`plan`: what the segments are for (see the module doc); `suffix`: their files' container; `overwrite`:
        segments kept for another plan are removed, not refused."""
        self.output = output
        self.overwrite = overwrite
        self.path = segment_folder_path(output)
        self.suffix = suffix
        self.plan = json.loads(json.dumps(plan, default=str))  # as it reads back from plan.json (paths as text)
        self._lock_file = None

    def __enter__(self) -> SegmentFolder:
        try:
            self._open()
        except OutputError:
            raise
        except OSError as error:
            raise OutputError(f"{error.filename or self.path}: cannot write the record of the segments "
                              f"({error.strerror or error})") from error
        return self

    def __exit__(self, *exc_info) -> None:
        self._unlock()

    def _open(self) -> None:
        plan_file = self.path / PLAN_FILE
        if self.path.exists():
            # A run killed between making the folder and writing its plan, or while removing the folder (rmtree
            # goes in the folder's order), can leave no plan and only names of vsr's own.
            if not plan_file.is_file() and not all(map(_OWN_ENTRY.fullmatch, os.listdir(self.path))):
                raise OutputError(f"{self.path} exists and is not vsr's folder of segments; move it away")
            self._lock()
            try:
                before = json.loads(plan_file.read_text())
            except (OSError, ValueError):
                before = None
            if isinstance(before, dict):
                done = self.done()
                change = _plan_change(_upgraded(before, self.plan, done[min(done)].path if done else None), self.plan)
            else:
                change = "a plan that cannot be read"
            if not change:
                if before != self.plan:  # (an earlier vsr's plan, or settings given in another form: recorded anew)
                    write_bytes_atomic(plan_file, json.dumps(self.plan, indent=1).encode())
                return
            kept = len(list(self.path.glob("segment-*.json")))
            # (segments of no plan, or a damaged one, are of no known run: a removal cut short leaves them so)
            if kept and not self.overwrite and isinstance(before, dict):
                self._unlock()
                as_made = _as_made(before, self.plan)
                raise KeptSegmentsRefused(
                    f"{self.path}: {kept} segment(s) kept there were made for {change}: run as they were made"
                    f"{f' ({as_made})' if as_made else ''} to resume them, or with --overwrite to remove them and "
                    "start over")
            if kept:  # (a warning where work is thrown away: the command line shows it, and what changed)
                log.warning("%s: made for %s: the %d segment(s) kept there are removed; starting over", self.path,
                            change, kept)
            else:
                log.info("%s: made for %s, and holds no finished segment; starting over", self.path, change)
            self._unlock()
            shutil.rmtree(self.path)
        self.path.mkdir()
        self._lock()  # (refused: another run took the folder as it was made, and it is that run's)
        try:
            write_bytes_atomic(plan_file, json.dumps(self.plan, indent=1).encode())
        except BaseException:  # (a full disk, Ctrl-C: the folder made here holds nothing to keep)
            self._unlock()
            shutil.rmtree(self.path, ignore_errors=True)
            raise

    def _lock(self) -> None:
        self._lock_file = locked(self.path / "lock", busy=f"{self.output}: another vsr run is writing it (its segments "
                                                         f"in {self.path} are locked)")

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def done(self) -> dict[int, SegmentRecord]:
        """The segments finished by earlier runs: a record, and the file it describes."""
        found = {}
        for record_file in sorted(self.path.glob("segment-*.json")):
            try:
                record = json.loads(record_file.read_text())
                index = record["index"]
                record = SegmentRecord(index=index, path=segment_file(self.path, index, self.suffix),
                                       pts=record["pts"], width=record["width"], height=record["height"])
            except (OSError, ValueError, KeyError, TypeError):
                log.info("%s: unreadable; that segment is done again", record_file)
                continue
            if record.path.is_file():
                found[record.index] = record
        return found

    def forget(self, path: Path) -> None:
        """A kept segment's file (`path`) and its record removed: the next run upscales that segment again."""
        log.warning("%s: removed, as it cannot be read back as it was written; the next run upscales that segment "
                    "again", path)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def record(self, record: SegmentRecord) -> None:
        """Mark a segment done (its file is complete and renamed into place already)."""
        data = {"index": record.index, "pts": record.pts, "width": record.width, "height": record.height}
        path = self.path / f"segment-{record.index:04d}.json"
        try:
            write_bytes_atomic(path, json.dumps(data).encode())
        except OSError as error:  # (a full disk: the segments kept so far resume once there is room)
            raise OutputError(f"cannot write {path}: {error.strerror or error}") from None

    def remove(self) -> None:
        from vsr.pipelines.runner import ctrl_c_held_back

        self._unlock()
        with ctrl_c_held_back():  # (rmtree goes in the folder's order: stopped half way, it left segments, no plan)
            shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            log.warning("could not remove the folder of segments %s", self.path)
