"""Secrets kept in files only their owner may read: created once, checked on every read.

Shipyard keeps two of its own here: the Prefect server's API auth string
(``<home>/prefect/api-auth-string``) and the key that signs judgment answers
(``<home>/judgment-key``). :func:`read_or_create_secret` makes such a file the first time
it is needed and refuses one that others could read, or that is empty, with an error that
names the file and the fix.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["PrivateFileError", "read_or_create_secret"]


class PrivateFileError(RuntimeError):
    """A secret file is unsafe or unusable; the message names it and says what to do."""


def read_or_create_secret(path: Path, make: Callable[[], str], *, what: str) -> str:
    """The secret in ``path`` (its text, stripped); if there is no such file, one is made
    with ``make()``, mode 0600, in a directory created mode 0700.

    Two processes creating it at once keep one secret: the first complete file linked into
    place wins, and nobody ever reads a half-written one. Raises :class:`PrivateFileError`
    when the file is open to its group or others, belongs to another user, or is empty.
    """
    try:
        return _read(path, what)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp opens a new file of its own (O_EXCL), mode 0600.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    draft = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(make() + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # someone else's came first: theirs
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return _read(path, what)


def _read(path: Path, what: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, encoding="utf-8") as opened:
        info = os.fstat(opened.fileno())
        if info.st_uid != os.geteuid():
            raise PrivateFileError(
                f"{path} ({what}) belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.geteuid()}): run Shipyard as its owner, or `chown` it")
        if info.st_mode & 0o077:
            raise PrivateFileError(
                f"{path} ({what}) is mode {stat.S_IMODE(info.st_mode):04o}, readable "
                f"beyond its owner: `chmod 600 {path}`, and replace the secret if someone "
                f"else may have read it")
        text = opened.read().strip()
    if not text:
        raise PrivateFileError(
            f"{path} ({what}) is empty: delete it and Shipyard makes a new one")
    return text
