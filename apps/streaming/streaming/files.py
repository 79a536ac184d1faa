"""Small file-system helpers shared by the log, the groups and the aggregation store."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DataDirLocked", "fsync_dir", "hold_lock", "write_atomically"]


class DataDirLocked(RuntimeError):
    """Another process already owns this data directory."""


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (files created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, fsync: bool) -> None:
    """Replace `path` with `data` so that a reader, or a restart after a crash, sees either
    the old content or the new one, never a mix. With `fsync`, the new content is durable
    when this returns."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        if fsync:
            os.fsync(file.fileno())
    os.replace(temporary, path)
    if fsync:
        fsync_dir(path.parent)


@contextlib.contextmanager
def hold_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block, or raise
    DataDirLocked at once if another process holds it. The kernel drops the lock when the
    process dies, so a crash never leaves a stale lock behind."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirLocked(
                f"{path.parent} is in use by another streaming process (it holds "
                f"{path.name}); one process owns a data directory, so give this one "
                "its own DATA_DIR") from None
        yield
    finally:
        os.close(fd)
