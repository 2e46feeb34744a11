"""Atomic file writes, shared by every layer: a reader sees the whole new file or the old one, never a part; and the
checks an output name must pass before anything is written.

It imports nothing from vsr but vsr/errors.py, so models/, pipelines/ and training/ may all use it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import secrets
import stat
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

from vsr.errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: no flock; two runs on one output there are the user's to avoid
    fcntl = None


# The outputs that `vsr upscale` of several inputs wrote so far, and their inputs, while it runs (`run_of_several`;
# None elsewhere): inputs whose outputs share a name (photo.png and photo.tiff both make photo.x4.png) must not
# replace each other's, --overwrite or not.
written_this_run: dict[Path, Path] | None = None
# The files of that command's inputs by (device, inode), a sequence's each frame, with the input each belongs to: an
# output must not replace one of them. `vsr upscale *.mp4 --overwrite`, run again, took a.x4.mp4 for an input and
# replaced it with a.mp4's output.
inputs_this_run: dict[tuple[int, int], Path] | None = None


@contextlib.contextmanager
def run_of_several(input_files: dict[tuple[int, int], Path]) -> Iterator[None]:
    """`written_this_run` and `inputs_this_run` (`input_files`) for as long as one command runs, and None again after
    it: kept, they made a later command in the same process (a Python caller's) refuse the first's outputs."""
    global written_this_run, inputs_this_run
    written_this_run, inputs_this_run = {}, input_files
    try:
        yield
    finally:
        written_this_run = inputs_this_run = None


def check_not_an_input(path: Path, output: Path, source: Path) -> None:
    """One line where `path` (`output`, made from `source`, or one of its frames) is a file of another input of this
    run (`inputs_this_run`), which it would replace."""
    if not inputs_this_run:  # (one input: nothing to stat, for each frame of a long sequence)
        return
    try:
        found = path.stat()  # (followed through links)
    except OSError:
        return
    owner = inputs_this_run.get((found.st_dev, found.st_ino))
    if owner is None:
        return
    try:
        itself = os.path.samefile(owner, path)
    except OSError:  # (a sequence's pattern names no file)
        itself = False
    what = "is also one of this run's inputs" if itself else f"is a frame of {owner}, one of this run's inputs"
    which = f"{output}:" if path == output else f"{output}: {path.name}"
    raise OutputError(f"{which} {what}; leave it out of them, or upscale {source} on its own")


def check_output(output: Path, source: Path, overwrite: bool) -> None:
    """One line for each way writing `output` (made from `source`) would go wrong, before any work starts."""
    check_name_length(output)
    if output.resolve() == source.resolve():
        raise OutputError(f"{output}: the output would replace the input; choose another name with -o")
    if written_this_run is not None and output.resolve() in written_this_run:
        raise OutputError(f"{output}: was made from {written_this_run[output.resolve()]} in this run; upscale "
                          f"{source} on its own, with -o naming its output")
    check_not_an_input(output, output, source)
    # The output is renamed into place, which --overwrite let replace a device or a pipe (as root, -o /dev/null took
    # the system's /dev/null) and wrote a video into a folder of the output's name, or an image nowhere, after the
    # work. Followed through links: one to /dev/null, or /dev/stdout itself, is refused too.
    try:
        found = output.stat()
    except OSError:  # (none there, or a link to nothing: replaced as a file is)
        found = None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise OutputError(f"{output}: is a folder; --overwrite replaces files only: name the output file with -o")
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise OutputError(f"{output}: is a device or a pipe, not a file; vsr writes a file and puts it in place: "
                          "name a file with -o")
    if os.path.lexists(output) and not overwrite:  # (a link to nothing too: the output would replace it)
        raise OutputError(f"{output}: already exists (use --overwrite to replace it)")
    if not output.parent.is_dir():
        raise OutputError(f"{output.parent}: output folder does not exist")


def check_name_length(path: Path) -> None:
    """One line where `path`'s file name is longer than its folder's file system takes (255 bytes on most): a name
    made from a long input's (movie.mp4 → movie.x4.mp4) failed only when written, an image's once upscaled, a batch
    job's as an OSError ("[Errno 36] File name too long")."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # (a folder not made yet; Windows has no pathconf)
        limit = 255
    size = len(os.fsencode(path.name))
    if size > limit:
        raise OutputError(f"{path}: the name is {size} bytes, more than the {limit} a file name may have there; "
                          "give the output a shorter name (-o)")


def hidden_sibling(path: Path, base: str, tail: str) -> Path:
    """The hidden file `.{base}{tail}` beside `path` (`base`: its name or stem); where that name would pass the 255
    bytes of a file name, a hash of `path`'s name stands in for `base` (a name of 250 bytes is a valid output)."""
    name = f".{base}{tail}"
    if len(os.fsencode(name)) > 255:
        name = f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]}{tail}"
    return path.with_name(name)


def temporary_sibling(path: Path, tag: str = "part") -> Path:
    """A hidden, unique name in `path`'s folder (same file system, so the final rename is atomic)."""
    return hidden_sibling(path, path.name, f".{secrets.token_hex(4)}.{tag}")


def temporaries_of(path: Path, tag: str = "part") -> list[Path]:
    """The `temporary_sibling`s of `path` there are (a killed run's)."""
    example = temporary_sibling(path, tag).name  # (hashed or not, as theirs were: the same length)
    head = example[: -len(f".{secrets.token_hex(4)}.{tag}")]
    return list(path.parent.glob(f"{glob.escape(head)}.{'[0-9a-f]' * 8}.{glob.escape(tag)}"))


def lock_temporary(temporary: Path, output: Path):
    """The open file `temporary`, made if missing and locked (flock) for as long as it stays open: a second run
    writing `output` through the same temporary name is one line instead of two muxers in one file (each run's
    rename then left the other's frames, or both spliced). A temporary left by a killed run is not locked.
    Ctrl-C as the file is made removes it: the CLI then says that no unfinished file is left."""
    made_here = not temporary.exists()
    try:
        return locked(temporary, f"{output}: another vsr run is writing it (its temporary file {temporary.name} is "
                                 "locked)")
    except BaseException as error:
        if made_here and not isinstance(error, OSError):  # (an OSError made nothing; OutputError: another run's)
            temporary.unlink(missing_ok=True)
        raise


def locked(path: Path, busy: str):
    """The open file `path`, made if missing and locked (flock) for as long as it stays open; OutputError(`busy`)
    where another process holds it. The kernel releases the lock of a killed process, once no process forked from it
    holds the file open either: a forked child closes it at once (`_close_locks_in_child`)."""
    file = open(path, "a")  # noqa: SIM115 - held open by its user until it closes
    if fcntl is not None:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise OutputError(busy) from None
        except OSError:  # a file system without locks (NFS without its lock daemon: ENOLCK; Lustre without -o flock:
            pass           # ENOSYS): used unlocked, not refused; only another process's lock is "busy"
    _held_locks.add(file)
    return file


# The files `locked` holds in this process. A forked child (a DataLoader's worker, a multiprocessing worker) shares
# their locks; one that outlived a trainer killed with kill -9 kept its run folder locked for seconds, and a resume
# started at once was refused. Closing its copies releases nothing of the parent's.
_held_locks: weakref.WeakSet = weakref.WeakSet()


def _close_locks_in_child() -> None:
    for file in list(_held_locks):
        try:
            file.close()
        except OSError:
            pass
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_locks_in_child)


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (POSIX); best effort where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_bytes_atomic(path: Path, data: bytes, replace: bool = True) -> None:
    """Write `data` under a temporary name beside `path`, fsync, rename (`rename_into_place`). Raises OSError
    (FileExistsError: see `rename_into_place`); leaves no temporary."""
    temporary = temporary_sibling(path)
    try:
        # 0o666: the umask decides the final permissions, as for any new file.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        rename_into_place(temporary, path, replace)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def rename_into_place(temporary: Path, path: Path, replace: bool) -> None:
    """Rename the finished `temporary` to `path`. `replace=False`: a file that appeared at `path` meanwhile (put there
    while the run worked; one there before is refused before any work) stays, and FileExistsError is raised: the
    temporary is linked to `path`, which fails where the name is taken, then unlinked."""
    if replace:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links there (FAT, exFAT, some network shares): a checked rename
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temporary, path)
    else:
        temporary.unlink()


class AppearedMeanwhile(OutputError):
    """`rename_into_place` refused to replace a file put at `path` while the run worked."""

    def __init__(self, path: Path):
        super().__init__(f"{path}: already exists, written while this run worked (use --overwrite to replace it)")


def file_state(path: Path) -> tuple[int, int, int] | None:
    """What stands at `path` (inode, size, mtime): whether another file was put there since. None where none is."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def _is_stream(path: Path) -> bool:
    """Whether `path` names a pipe, a device or the standard output (/dev/stdout, /dev/fd/1): written into, never
    replaced (a report "written atomically" over /dev/stdout replaced the link, over a FIFO the pipe)."""
    if str(path) in ("/dev/stdout", "/dev/stderr") or str(path).startswith(("/dev/fd/", "/proc/self/fd/")):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_json_output(path: Path, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """One line, before any work, where a JSON report could not be written at `path` (its folder is made), or would
    replace one of the `inputs` (sources, model files) or another file that is not JSON. A pipe, a device or the
    standard output is written into (`_is_stream`)."""
    if _is_stream(path):
        return
    if any(Path(given).is_file() and path.is_file() and path.samefile(given) for given in inputs):
        raise OutputError(f"{path}: the report would replace an input; give --json another file name")
    if path.is_file() and path.suffix.lower() != ".json":
        raise OutputError(f"{path}: exists and is not a .json file; give --json another file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{path}: cannot make its folder ({error.strerror or error})") from None
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give --json a file name")


def write_json(path: Path, record: object) -> None:
    """`record` as indented JSON at `path`, atomically (a link to a file: that file, the link kept), or into a pipe, a
    device or the standard output (`_is_stream`); OutputError where it cannot be written."""
    check_json_output(path)
    text = json.dumps(record, indent=2) + "\n"
    try:
        if _is_stream(path):
            with open(path, "a") as stream:  # (append: the standard output redirected to a file keeps what came first)
                stream.write(text)
        else:
            write_bytes_atomic(path.resolve() if path.is_symlink() else path, text.encode())
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
