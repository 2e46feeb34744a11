"""The batch journal: one SQLite file in the output folder that remembers every job of `vsr batch`.

    journal = Journal.open(out_dir / JOURNAL_NAME)
    plan = journal.sync(entries, max_attempts=3)   # which jobs to run, which are done, which gave up
    if journal.claim(entry):                       # atomically: queued → running, owned by this process
                                                   # (False if another batch changed its options meanwhile)
        ...
        journal.finish(name, ok=True, checksum=..., seconds=..., warnings=[...])

A job is keyed by its output path relative to the output folder. Its row holds the state (queued, running, done,
failed), the attempts so far, the last error, timings, the input's fingerprint and the output's sha256; the table
`warnings` holds what its last finished attempt warned of (a damaged or cut input), which `--status` shows.

Crash safety: every change is one transaction in WAL mode, so a process killed at any moment leaves the rows as the
last commit had them. A row that says `running` names its owner (host, boot id, pid and the pid's start time); the
next run takes the row over when that process is gone (the pid's start time guards against a reused pid). WAL needs
every process that opens the file to be on one host: run drivers on one machine at a time (Ray tasks never touch the
journal; the driver writes for them). An owner on another host is therefore taken to be gone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from vsr.errors import InputError, OutputError
from vsr.fsutil import file_state
from vsr.pipelines.resume import changed_settings, kept_segments

JOURNAL_NAME = ".vsr-journal.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name        TEXT PRIMARY KEY,   -- output path, relative to the output folder
    source      TEXT NOT NULL,      -- input path
    kind        TEXT NOT NULL,      -- video or image
    options     TEXT NOT NULL,      -- JSON of the options that shape the output
    state       TEXT NOT NULL,      -- queued, running, done, failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,               -- the last failure's one-line reason
    fingerprint TEXT NOT NULL,      -- of the input, see pipelines.batch.fingerprint
    checksum    TEXT,               -- sha256 of the output, when done
    owner       TEXT,               -- the process running it: host/boot id/pid/pid start time
    queued_at   REAL,
    started_at  REAL,
    finished_at REAL,
    seconds     REAL,               -- wall time of the last attempt
    frames      INTEGER
)
"""

# What a done job's output file was (size, modification time) when its checksum last matched: a later run checks it
# by these and hashes it again only where they changed (hashing every done output each run took hours for a library
# of films). A table of its own, added to a journal of an earlier vsr without changing its jobs.
_CHECKED_SCHEMA = """
CREATE TABLE IF NOT EXISTS checked (
    name     TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    checksum TEXT NOT NULL
)
"""


# What stood at a job's output when it was last claimed (inode, size, mtime; NULLs: nothing): a file there that
# differs is the job's own rename into place, one that does not is the user's (`Journal.changed_since_claim`). File
# times cannot say it: the kernel stamps files by a clock a tick behind time.time(). A table of its own, as `checked`.
_CLAIMED_SCHEMA = """
CREATE TABLE IF NOT EXISTS claimed (
    name     TEXT PRIMARY KEY,
    ino      INTEGER,
    size     INTEGER,
    mtime_ns INTEGER
)
"""


# What a job's last finished attempt warned of (a damaged or cut source, frames lost: `progress.warnings_kept`),
# which `vsr batch --status` shows in its row: a job done with damage was recorded plainly done, its one warning line
# long scrolled away. `finished_at` is the jobs row's of that attempt: a row finished since by an earlier vsr (which
# knows no such table) does not show the warnings of an attempt before. A table of its own, as `checked`: a journal
# stays one that an earlier vsr opens (a column more in jobs is "not a vsr batch journal" to it).
_WARNINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS warnings (
    name        TEXT PRIMARY KEY,
    finished_at REAL NOT NULL,
    count       INTEGER NOT NULL,  -- how many (a damaged film warns at every packet)
    messages    TEXT NOT NULL      -- JSON list of the first of them, as said
)
"""


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class JobEntry:
    """What the journal needs to know about a job before it runs."""

    name: str
    source: str
    kind: str
    options: dict
    fingerprint: str
    overwrite: bool = False  # may replace an output made from another input (see `Journal.sync`)
    model_scale: float | None = None  # of the model `options` name, where known (`_as_now` takes earlier rows so)


@dataclass(frozen=True)
class JobRow:
    """One row of the journal, as stored."""

    name: str
    source: str
    kind: str
    state: JobState
    attempts: int
    error: str | None
    fingerprint: str
    checksum: str | None
    owner: str | None
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    frames: int | None
    options: dict
    warnings: tuple[str, ...] = ()  # what its last finished attempt warned of: the first ones (`_WARNINGS_SCHEMA`)
    warning_count: int = 0  # how many


@dataclass
class SyncPlan:
    """What `Journal.sync` decided for the jobs it was given (names)."""

    to_run: list[str]
    done: list[str]
    gave_up: list[str]  # failed max_attempts times: left failed
    busy: list[str]  # running in another live process
    taken_over: list[str]  # were running in a process that is gone
    new: list[str]  # not in the journal before
    redone: list[str] = field(default_factory=list)  # done, but the output is missing or changed (`batch._sync`)
    changed: list[str] = field(default_factory=list)  # known, but its input or options are not what they were
    what_changed: dict[str, str] = field(default_factory=dict)  # of those: "its input changed", "its options ..."
    other_source: list[str] = field(default_factory=list)  # its output was made from another input: left alone
    # Done, and asked for with other options (its input the same): its output is kept as it is, the job left done,
    # unless the entry may overwrite (what_changed says why). A batch run again with an option forgotten remade
    # every done job, hours of them, without asking. So too a job not done whose earlier run, cut short, kept
    # segments (`segments_kept`): each attempt with the other options failed on them until the job gave up.
    other_options: list[str] = field(default_factory=list)
    segments_kept: dict[str, int] = field(default_factory=dict)  # of those, not done: the segments kept of each


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); "" where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # the command name may hold spaces: split after its ")"


def process_owner(pid: int) -> str:
    """A process of this machine, as the owner column names it: host/boot id/pid/start time."""
    return "/".join([socket.gethostname(), _boot_id(), str(pid), _process_start(pid)])


def current_owner() -> str:
    return process_owner(os.getpid())


def owner_is_alive(owner: str | None) -> bool:
    """Whether the process named by an owner column still runs (see the module doc for other hosts)."""
    if not owner:
        return False
    try:
        host, boot_id, pid_text, start = owner.split("/")
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or boot_id != _boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return start in ("", _process_start(pid))


# SQLite's errors of the disk or the folder, not of the file (its name for them, `sqlite_errorname`, starts so).
_DISK_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")


@contextlib.contextmanager
def _unreadable_as_error(path: Path):
    """SQLite's errors on the journal at `path` as one line: a disk that is full or a folder that is read-only as
    such (the journal is fine: "move it away" would throw the batch's record out), anything else (another file in
    its place, a damaged one) as no journal."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        if (getattr(error, "sqlite_errorname", "") or "").startswith(_DISK_ERRORS) and not path.is_dir():
            raise OutputError(f"{path}: cannot read or write the batch journal ({error}): is the disk full or the "
                              "folder read-only? It is kept: run the same command again once it can be written") \
                from None
        raise OutputError(f"{path}: not a vsr batch journal, or damaged ({error}); move it away to start the batch's "
                          "record over") from None


def _written(method):
    """A Journal method that writes, its SQLite errors (a full disk) as one line (`_unreadable_as_error`)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _unreadable_as_error(self.path):
            return method(self, *args, **kwargs)
    return wrapper


@functools.cache
def _journal_columns() -> frozenset[str]:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute(_SCHEMA)
        return frozenset(column[1] for column in connection.execute("PRAGMA table_info(jobs)"))
    finally:
        connection.close()


def _check_journal(connection: sqlite3.Connection) -> None:
    """An sqlite3.DatabaseError (said as "not a vsr batch journal", `_unreadable_as_error`) unless `connection` holds
    a journal: checked before anything is written, so that another program's database is left as it was. An empty
    file is none: vsr makes its journals whole (`_create`). (user_version 0: an earlier vsr killed between making
    the table and numbering it.)"""
    columns = {column[1] for column in connection.execute("PRAGMA table_info(jobs)")}
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if not columns:
        raise sqlite3.DatabaseError("it has no jobs table")
    if columns != _journal_columns() or version not in (0, SCHEMA_VERSION):
        raise sqlite3.DatabaseError(f"its jobs table has the columns {', '.join(sorted(columns))} (version "
                                    f"{version}), not those of vsr's journal (version {SCHEMA_VERSION})")


def _create(path: Path) -> None:
    """A new journal at `path`, made under a temporary name and linked into place: a batch starting beside this one
    never finds a half-made (empty) file there, which it would take for no journal."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.new")
    try:  # the batch's first write: a folder that takes no file is said as such, not as SQLite's "unable to open"
        temporary.touch()
    except OSError as error:
        raise OutputError(f"{path.parent}: cannot write into the output folder ({error.strerror or error})") from None
    try:
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        finally:
            connection.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another batch made it meanwhile: that one is the journal
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(temporary, path)
    finally:
        for leftover in (temporary, Path(f"{temporary}-journal")):  # (-journal: where a full disk stopped it)
            leftover.unlink(missing_ok=True)


def _checked(connection: sqlite3.Connection) -> sqlite3.Connection:
    """`connection`, once `_check_journal` passed; closed if not."""
    try:
        _check_journal(connection)
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def _has_wal_files(path: Path) -> bool:
    return any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))


def _tidy_wal(path: Path) -> None:
    """Remove the -wal and -shm files that reading a WAL database read-only makes and cannot remove (`vsr batch
    --status`, `--dry-run`): the last writable connection to close removes them, after a checkpoint, and SQLite leaves
    them where a batch has the journal open meanwhile. Where it cannot (a read-only folder), they stay."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1)  # (never makes one)
        try:
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        pass


class Journal:
    """The jobs table of one output folder. Open it with `Journal.open`; it is a context manager."""

    def __init__(self, connection: sqlite3.Connection, path: Path, owner: str, *, tidy: bool = False):
        self.connection = connection
        self.path = path
        self.owner = owner
        self._tidy = tidy  # a read-only look that found no -wal/-shm files: remove those it made (`_tidy_wal`)

    @classmethod
    def open(cls, path: str | os.PathLike, *, readonly: bool = False) -> Journal:
        path = Path(path)
        with _unreadable_as_error(path):
            if readonly:
                tidy = not _has_wal_files(path)
                connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                                             isolation_level=None)
                _checked(connection)
                connection.row_factory = sqlite3.Row
                return cls(connection, path, current_owner(), tidy=tidy)
            if not path.exists():
                _create(path)
            connection = _checked(sqlite3.connect(path, timeout=30, isolation_level=None))  # autocommit; BEGIN
            # WAL: readers never block the writer and a crash never corrupts the file. NORMAL sync is crash-safe in
            # WAL mode; a power cut may lose the last commits, which only means re-doing those jobs.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_CHECKED_SCHEMA)
            connection.execute(_CLAIMED_SCHEMA)
            connection.execute(_WARNINGS_SCHEMA)
            connection.row_factory = sqlite3.Row
            return cls(connection, path, current_owner())

    def close(self) -> None:
        self.connection.close()
        if self._tidy:
            _tidy_wal(self.path)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @classmethod
    def in_memory_copy(cls, path: str | os.PathLike) -> Journal:
        """The journal at `path` (a new, empty one where there is none), copied into memory: what is decided on it
        (`sync`, `requeue`) changes nothing on disk. For `vsr batch --dry-run`."""
        path = Path(path)
        connection = sqlite3.connect(":memory:", isolation_level=None)
        if path.exists():
            tidy = not _has_wal_files(path)
            with _unreadable_as_error(path):
                disk = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
                try:
                    disk.backup(connection)  # a consistent copy, even while a batch writes to it
                finally:
                    disk.close()
                    if tidy:
                        _tidy_wal(path)
                _checked(connection)
        else:
            connection.execute(_SCHEMA)
        connection.execute(_CHECKED_SCHEMA)
        connection.execute(_CLAIMED_SCHEMA)
        connection.execute(_WARNINGS_SCHEMA)
        connection.row_factory = sqlite3.Row
        return cls(connection, path, current_owner())

    def _transaction(self):
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write decisions cannot interleave."""
        return _Transaction(self.connection)

    @_written
    def sync(self, entries: list[JobEntry], *, max_attempts: int) -> SyncPlan:
        """Bring the rows of `entries` up to date and decide what to run.

        New jobs are queued. A job whose input fingerprint or options changed starts afresh (attempts 0). A done job
        stays done (the caller then checks its output and `requeue`s it if damaged). A failed job is queued again
        while it has attempts left. A running job whose owner is gone is taken over (queued; the attempt it died in
        counts); one whose owner lives is left alone. A job whose output was made from another input (another path
        and another fingerprint: two input folders with one output folder) is left alone unless the entry may
        overwrite it; an input at another path with the same fingerprint is the same input (a renamed folder). A done
        job asked for with other options keeps its output and stays done (`other_options`) unless the entry may
        overwrite it; so does a job not done whose earlier run kept segments of its output (its row left as it is:
        a run with its options resumes them).
        """
        plan = SyncPlan([], [], [], [], [], [])
        now = time.time()
        with self._transaction():
            for entry in entries:
                row = self._row(entry.name)
                options = json.dumps(entry.options, sort_keys=True)
                if row is None:
                    self.connection.execute(
                        "INSERT INTO jobs (name, source, kind, options, state, fingerprint, queued_at) "
                        "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                        (entry.name, entry.source, entry.kind, options, entry.fingerprint, now),
                    )
                    plan.to_run.append(entry.name)
                    plan.new.append(entry.name)
                    continue
                if row.state is JobState.RUNNING and owner_is_alive(row.owner):
                    plan.busy.append(entry.name)  # even if its options changed: one writer per output at a time
                    continue
                other_source = row.source != entry.source and row.fingerprint != entry.fingerprint
                if other_source and row.checksum is not None and not entry.overwrite:
                    plan.other_source.append(entry.name)
                    continue
                if (row.source, row.kind) != (entry.source, entry.kind):  # (a renamed folder: `unfinished` looks)
                    self.connection.execute("UPDATE jobs SET source = ?, kind = ? WHERE name = ?",
                                            (entry.source, entry.kind, entry.name))
                changed = not same_job(row, entry)
                if changed and row.fingerprint == entry.fingerprint and not entry.overwrite:
                    output = self._output(entry.name)
                    segments = 0 if row.state is JobState.DONE else kept_segments(output)
                    if segments or (row.state is JobState.DONE and os.path.lexists(output)):
                        plan.other_options.append(entry.name)
                        plan.what_changed[entry.name] = what_changed(row, entry)
                        if segments:
                            plan.segments_kept[entry.name] = segments
                        continue
                if row.state is JobState.RUNNING:
                    plan.taken_over.append(entry.name)
                if changed:
                    # Another input or other options: a new job under the same output name. (The checksum stays:
                    # the output there is this name's own, which the new job may replace; see `owns_output`.)
                    self.connection.execute(
                        "UPDATE jobs SET source = ?, kind = ?, options = ?, fingerprint = ?, state = 'queued', "
                        "attempts = 0, error = NULL, owner = NULL, queued_at = ? WHERE name = ?",
                        (entry.source, entry.kind, options, entry.fingerprint, now, entry.name),
                    )
                    self.connection.execute("DELETE FROM warnings WHERE name = ?", (entry.name,))  # (as its error)
                    plan.to_run.append(entry.name)
                    plan.changed.append(entry.name)
                    plan.what_changed[entry.name] = what_changed(row, entry)
                elif row.state is JobState.DONE:
                    plan.done.append(entry.name)
                elif row.state is JobState.FAILED and row.attempts >= max_attempts:
                    plan.gave_up.append(entry.name)
                else:
                    self.connection.execute(
                        "UPDATE jobs SET state = 'queued', owner = NULL, queued_at = ? WHERE name = ?",
                        (now, entry.name),
                    )
                    plan.to_run.append(entry.name)
        return plan

    @_written
    def requeue(self, name: str) -> None:
        """A done job whose output is missing or damaged: run it again, its attempts counted afresh (its earlier
        ones succeeded). A damaged output keeps its checksum (`_kept_checksum`)."""
        self.connection.execute(
            f"UPDATE jobs SET state = 'queued', attempts = 0, owner = NULL, queued_at = ?, checksum = "
            f"{self._kept_checksum(name)} WHERE name = ? AND state = 'done'",
            (time.time(), name),
        )

    @_written
    def claim(self, entry: JobEntry) -> bool:
        """queued → running, owned by this process, one more attempt; False if another process got there first, or
        if another batch synced the job to its own options or input meanwhile (`same_job`: its output would be
        recorded as made with those)."""
        with self._transaction():
            row = self._row(entry.name)
            if row is None or row.state is not JobState.QUEUED or not same_job(row, entry):
                return False
            self.connection.execute(
                "UPDATE jobs SET state = 'running', owner = ?, attempts = attempts + 1, started_at = ?, "
                "finished_at = NULL WHERE name = ?",
                (self.owner, time.time(), entry.name),
            )
            self.connection.execute("INSERT OR REPLACE INTO claimed (name, ino, size, mtime_ns) VALUES (?, ?, ?, ?)",
                                    (entry.name, *(file_state(self._output(entry.name)) or (None, None, None))))
        return True

    def _output(self, name: str) -> Path:
        return self.path.parent / name

    def _kept_checksum(self, name: str) -> str:
        """SQL for the checksum a job keeps when it is not done (queued again, stopped, failed): the one of the output
        an earlier run made while a file is still there, so that it stays the batch's to replace (cleared by a redo
        that failed or stopped, every later run failed on "already exists"); NULL once none is there, so that a file
        the user puts there later is theirs."""
        return "checksum" if os.path.lexists(self._output(name)) else "NULL"

    def changed_since_claim(self, name: str) -> bool | None:
        """Whether the file at `name`'s output is not what stood there when its job was last claimed (`claimed`):
        the job renamed its output into place (or something else replaced or removed it). None where the claim
        was not recorded (by an earlier vsr)."""
        try:
            found = self.connection.execute("SELECT ino, size, mtime_ns FROM claimed WHERE name = ?",
                                            (name,)).fetchone()
        except sqlite3.OperationalError:  # (a read-only look at an earlier vsr's journal: no such table)
            return None
        if found is None:
            return None
        then = None if found[0] is None else (found[0], found[1], found[2])
        return file_state(self._output(name)) != then

    @_written
    def release(self, name: str, checksum: str | None = None) -> None:
        """running → queued without counting the attempt: this process was interrupted (Ctrl-C), not the job.
        `checksum`: of the output, where the job had put it in place (it stays the batch's own to replace)."""
        self.connection.execute(
            f"UPDATE jobs SET state = 'queued', owner = NULL, attempts = attempts - 1, checksum = COALESCE(?, "
            f"{self._kept_checksum(name)}) WHERE name = ? AND owner = ?",
            (checksum, name, self.owner),
        )

    @_written
    def finish(self, name: str, *, ok: bool, error: str | None = None, checksum: str | None = None,
               seconds: float | None = None, frames: int | None = None, warnings: Sequence[str] = (),
               warning_count: int | None = None, counted: bool = True) -> None:
        """running → done (with the output's checksum) or failed (with the reason; a checksum only where the job
        put its output in place before it failed, else the one an earlier attempt's output had: `_kept_checksum`).
        `warnings`: what the attempt warned of (the first `warning_count`, by default all), kept in place of an
        earlier attempt's (a redo without any clears them). `counted`: False where the run's settings, not the job,
        failed (the segments it kept refused them): its attempt is given back, as `release` gives it."""
        error, warnings = _text(error), [_text(text) for text in warnings]
        now = time.time()
        with self._transaction():
            finished = self.connection.execute(
                f"UPDATE jobs SET state = ?, error = ?, checksum = COALESCE(?, {self._kept_checksum(name)}), "
                "seconds = ?, frames = ?, finished_at = ?, owner = NULL, attempts = attempts - ? "
                "WHERE name = ? AND owner = ?",
                ("done" if ok else "failed", error, checksum, seconds, frames, now, 0 if counted else 1, name,
                 self.owner),
            ).rowcount
            if not finished:  # (not this process's job any more: its row, and its warnings, are another's)
                return
            if warnings:
                self.connection.execute(
                    "INSERT OR REPLACE INTO warnings (name, finished_at, count, messages) VALUES (?, ?, ?, ?)",
                    (name, now, max(warning_count or 0, len(warnings)), json.dumps(list(warnings))))
            else:
                self.connection.execute("DELETE FROM warnings WHERE name = ?", (name,))

    def _row(self, name: str) -> JobRow | None:
        with _unreadable_as_error(self.path):  # (a row edited by hand: `_to_row`)
            found = self.connection.execute(f"{self._select} WHERE jobs.name = ?", (name,)).fetchone()
            return _to_row(found) if found is not None else None

    @functools.cached_property
    def _select(self) -> str:
        """SQL that selects the jobs with the warnings of their last finished attempt (`_WARNINGS_SCHEMA`), where
        the journal has them (a read-only look at an earlier vsr's journal: none). Looked up once: every journal
        opened to write, or copied, makes the table."""
        if self.connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'warnings'").fetchone():
            return ("SELECT jobs.*, warnings.count AS warning_count, warnings.messages AS warnings FROM jobs LEFT JOIN "
                    "warnings ON warnings.name = jobs.name AND warnings.finished_at = jobs.finished_at")
        return "SELECT jobs.*, NULL AS warning_count, NULL AS warnings FROM jobs"

    def row(self, name: str) -> JobRow | None:
        return self._row(name)

    def owns_output(self, name: str) -> bool:
        """Whether a file at `name` is this journal's to replace: a job of that name put it in place (it has a
        checksum: done once, or stopped or died just after its output was renamed into place, see `batch._record`),
        or was running when its process died and the file is not the one that stood there at its claim (it may have
        finished the file; a user's file that was there stays theirs). A job that only ever failed (perhaps because
        a file of the user's was there) has no claim on it: --overwrite decides."""
        row = self._row(name)
        return row is not None and (row.checksum is not None or (
            row.state is JobState.RUNNING and self.changed_since_claim(name) is not False))

    def checked(self, name: str) -> tuple[int, int, str] | None:
        """(size, mtime_ns, checksum) of `name`'s output when its checksum last matched (`remember_checked`)."""
        try:
            found = self.connection.execute("SELECT size, mtime_ns, checksum FROM checked WHERE name = ?",
                                            (name,)).fetchone()
        except sqlite3.OperationalError:  # (a read-only look at an earlier vsr's journal: no such table)
            return None
        return None if found is None else (found[0], found[1], found[2])

    @_written
    def remember_checked(self, name: str, size: int, mtime_ns: int, checksum: str) -> None:
        self.connection.execute("INSERT OR REPLACE INTO checked (name, size, mtime_ns, checksum) VALUES (?, ?, ?, ?)",
                                (name, size, mtime_ns, checksum))

    def rows(self) -> list[JobRow]:
        with _unreadable_as_error(self.path):
            return [_to_row(found) for found in self.connection.execute(f"{self._select} ORDER BY jobs.name")]


def read_journal(out_dir: str | os.PathLike) -> list[JobRow]:
    """The rows of the journal of `out_dir`, for `vsr batch --status` (read-only: safe while a batch runs)."""
    path = Path(out_dir) / JOURNAL_NAME
    if not path.is_file():
        raise InputError(f"{out_dir}: no batch journal here ({JOURNAL_NAME}); `vsr batch IN_DIR {out_dir}` makes one")
    with Journal.open(path, readonly=True) as journal:
        return journal.rows()


class _Transaction:
    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.connection.execute("COMMIT" if exc_type is None else "ROLLBACK")


def same_job(row: JobRow, entry: JobEntry) -> bool:
    """Whether `row` was recorded for `entry`'s input and options (its source may have moved: a renamed folder)."""
    return row.fingerprint == entry.fingerprint and (json.dumps(_as_now(row, entry), sort_keys=True)
                                                     == json.dumps(entry.options, sort_keys=True))


def what_changed(row: JobRow, entry: JobEntry) -> str:
    """Why `row` is not `entry`'s job (`same_job`), in a few words that name the options: a batch run again with an
    option changed by mistake makes its done jobs again, and so can be stopped and run as it was."""
    reasons = ["its input changed"] if row.fingerprint != entry.fingerprint else []
    options = changed_settings(_as_now(row, entry), entry.options)
    if options:
        reasons.append(f"its options changed ({options})")
    return " and ".join(reasons)


def _as_now(row: JobRow, entry: JobEntry) -> dict:
    """`row`'s options as `batch.journal_entry` records them now, so that the done jobs of an earlier vsr stay done:
    a checkpoint it recorded by its path (now by the file) taken as the file `entry` names where that path is that
    file and the file is unchanged since the job finished; no precision (a placement now, as the decoder is); and an
    --outscale of the model's own scale (`-s 4` with a ×4 model, which makes what none makes) as none."""
    recorded, options = dict(row.options), entry.options
    for key in ("model", "blend"):
        path, now = recorded.get(key), options.get(key)
        if isinstance(path, str) and isinstance(now, dict) and os.path.realpath(path) == now.get("file") \
                and row.finished_at is not None and now.get("mtime_ns", math.inf) <= row.finished_at * 1e9:
            recorded[key] = now
    recorded.pop("precision", None)
    if recorded.get("model") == options.get("model") and recorded.get("outscale") is not None \
            and recorded.get("outscale") == entry.model_scale:
        recorded["outscale"] = None
    return recorded


_TEXT_COLUMNS = ("name", "source", "kind", "options", "state", "error", "fingerprint", "checksum", "owner",
                 "warnings")
_NUMBER_COLUMNS = ("attempts", "started_at", "finished_at", "seconds", "frames", "warning_count")


def _text(text: str | None) -> str | None:
    """`text` as SQLite's text holds it: UTF-8 (a path of bytes that are not UTF-8, as Python reads them, in it)."""
    return None if text is None else text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _to_row(found: sqlite3.Row) -> JobRow:
    """A row as stored → JobRow; a row edited into something else (SQLite keeps text put in a number's column) is an
    sqlite3.DatabaseError, said as a damaged journal by `_unreadable_as_error`."""
    try:
        for column in _TEXT_COLUMNS + _NUMBER_COLUMNS:
            types = str if column in _TEXT_COLUMNS else (int, float)
            if found[column] is not None and not isinstance(found[column], types):
                raise ValueError(f"{column} {found[column]!r} is not {'text' if types is str else 'a number'}")
        options = json.loads(found["options"])  # (its errors, and JobState's, are ValueErrors)
        if not isinstance(options, dict):
            raise ValueError(f"options {found['options']!r} are not a JSON object")
        warnings = json.loads(found["warnings"] or "[]")
        if not isinstance(warnings, list) or not all(isinstance(text, str) for text in warnings):
            raise ValueError(f"warnings {found['warnings']!r} are not a JSON list of text")
        return JobRow(
            name=found["name"],
            source=found["source"],
            kind=found["kind"],
            state=JobState(found["state"]),
            attempts=found["attempts"],
            error=found["error"],
            fingerprint=found["fingerprint"],
            checksum=found["checksum"],
            owner=found["owner"],
            started_at=found["started_at"],
            finished_at=found["finished_at"],
            seconds=found["seconds"],
            frames=found["frames"],
            options=options,
            warnings=tuple(warnings),
            warning_count=found["warning_count"] or 0,
        )
    except ValueError as error:
        raise sqlite3.DatabaseError(f"the row of {found['name']!r}: {error}") from None


def unfinished(rows: list[JobRow]) -> list[JobRow]:
    """The jobs still to be done: not done, and their input still there (a job whose input was removed or renamed
    stays in the journal, but no batch will run it again). Sources are absolute (a journal of an earlier vsr may
    hold relative ones, which cannot be told from here: those count as still to be done)."""
    return [row for row in rows if row.state is not JobState.DONE
            and (Path(row.source).exists() or not Path(row.source).is_absolute())]


def format_table(rows: list[JobRow], out_dir: str | os.PathLike) -> str:
    """The journal of `out_dir` as `vsr batch --status` prints it: one line per job, then the counts."""
    lines = [("state", "tries", "seconds", "frames", "output", "note")]
    to_do = unfinished(rows)
    for row in rows:
        seconds = f"{row.seconds:.1f}" if row.seconds is not None else "-"
        gone = "its input is gone" if row.state is not JobState.DONE and row not in to_do else ""
        dead = _after_its_process(row, Path(out_dir)) if row in to_do and row.state is JobState.RUNNING else ""
        lines.append((row.state.value, str(row.attempts), seconds, str(row.frames or "-"), row.name,
                      "; ".join(filter(None, (gone, dead, row.error, warnings_note(row))))))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1] for line in lines]
    counts = {state: sum(row.state is state for row in rows) for state in JobState}
    text.append(", ".join(f"{count} {state.value}" for state, count in counts.items()) + f" (of {len(rows)})")
    return "\n".join(line.rstrip() for line in text)


NOTE_WIDTH = 100  # characters of a row's warnings that `format_table` shows (the rest: in the journal)


def warnings_note(row: JobRow) -> str:
    """What `row`'s last finished attempt warned of, in a few words for its line of the table: how many, and the first
    (less the input's path, which the row names; cut at NOTE_WIDTH): "2 warnings: cut short: it holds ..."."""
    if not row.warning_count:
        return ""
    first = row.warnings[0].removeprefix(f"{row.source}: ") if row.warnings else ""
    note = f"{row.warning_count} warning{'s' if row.warning_count != 1 else ''}: {first}"
    return note if len(note) <= NOTE_WIDTH else note[:NOTE_WIDTH - 3].rstrip() + "..."


def format_warnings(rows: list[JobRow]) -> str:
    """What each job's last finished attempt warned of, every line the journal keeps, as `vsr batch --status
    --warnings` prints it: the job's output, then its warnings indented (less the input's path, which is the job's),
    and how many more it said where it said more than the journal keeps (`progress.WARNINGS_KEPT`)."""
    text = []
    for row in rows:
        if not row.warning_count:
            continue
        text.append(f"{row.name}: {row.warning_count} warning{'s' if row.warning_count != 1 else ''}")
        text += [f"  {warning.removeprefix(f'{row.source}: ')}" for warning in row.warnings]
        if row.warning_count > len(row.warnings):
            text.append(f"  (and {row.warning_count - len(row.warnings)} more, not kept)")
    return "\n".join(text) if text else "no job's last run warned of anything"


def _after_its_process(row: JobRow, out_dir: Path) -> str:
    """What the next run does with a running job whose process is gone ("" while it lives), as `Journal.sync`
    decides it: its row holds the options it was started with, and the segments it kept are those options' (a run
    with others keeps them: `SyncPlan.other_options`); without any, the next run makes it again with its own."""
    if owner_is_alive(row.owner):
        return ""
    segments = kept_segments(out_dir / row.name)
    if not segments:
        return "its process is gone: the next run makes it again"
    # (in few words: a line of the table; --dry-run says what a given run does with it)
    return f"its process is gone; {segments} segment(s) kept, which a run with its options resumes"
