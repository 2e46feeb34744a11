"""Atomic file writes, shared by every layer: a reader sees the whole new file or the old one, never a part.

Like vsr/errors.py, this module imports nothing from vsr, so models/, pipelines/ and training/ may all use it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def temporary_sibling(path: Path, tag: str = "part") -> Path:
    """A hidden, unique name in `path`'s folder (same file system, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.{tag}")


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


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` under a temporary name beside `path`, fsync, rename. Raises OSError; leaves no temporary."""
    temporary = temporary_sibling(path)
    try:
        # 0o666: the umask decides the final permissions, as for any new file.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
