"""Secret files and private directories on disk: made private from the start, and checked.

A secret is written to a new file that ``mkstemp`` creates with mode 0600 and then renamed
over the old one, so no moment exists where it is readable by others (as a ``chmod`` after
the write would leave), whatever the umask, and a reader sees the old content or the new,
never half of it. Directories are made with mode 0700, each missing parent too.
:func:`check_private` reports what is too open, with the fix (the rule is in
:mod:`shipyard.domain.file_modes`).

Other parts of Shipyard use it for every file that holds a key, a password, a token or a
URL carrying one: :func:`write_secret` to write one, :func:`create_secret` for one made
once and kept (a generated password), and they add the path to
:func:`shipyard.adapters.private_state.private_state` so the start-time check covers it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from shipyard.domain.file_modes import PathKind, StateNotPrivate, TooOpen, mode_problems

__all__ = ["EmptySecret", "PrivateFileError", "check_private", "create_secret", "private_dir",
           "read_or_create_secret", "read_secret", "require_private", "tighten",
           "write_secret"]


class EmptySecret(ValueError):
    """A secret file exists but holds nothing (truncated, or made by hand)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path} is empty: restore it from a backup, or remove it so "
                         "Shipyard makes a new one")


class PrivateFileError(RuntimeError):
    """A secret file is unsafe or unusable; the message names it and says what to do."""


def private_dir(path: Path) -> Path:
    """Make directory ``path`` and its missing parents, each mode 0700 from the start.
    One that exists is left as it is (:func:`check_private` reports it if too open)."""
    missing = []
    walk = path
    while not walk.exists():
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            directory.mkdir(mode=0o700)
    return path


def write_secret(path: Path, text: str | bytes) -> None:
    """Make ``path`` hold ``text``, mode 0600, atomically (see the module). Its directory is
    made private when missing."""
    private_dir(path.parent)
    temporary = _new_private_file(path, text.encode() if isinstance(text, str) else text)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def create_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in ``path``; the first caller makes it with ``make()`` and writes it
    (mode 0600). Two processes racing keep one secret, the first one linked into place.
    Raises :class:`EmptySecret` for an empty file."""
    with contextlib.suppress(FileNotFoundError):
        return read_secret(path)
    private_dir(path.parent)
    secret = make()
    temporary = _new_private_file(path, (secret + "\n").encode())
    try:
        os.link(temporary, path)  # fails if it exists: never replaces a kept secret
    except FileExistsError:
        return read_secret(path)
    finally:
        temporary.unlink(missing_ok=True)
    return secret


def read_secret(path: Path) -> str:
    """The secret in ``path`` without surrounding whitespace; raises FileNotFoundError when
    it is missing and :class:`EmptySecret` when it is empty."""
    secret = path.read_text().strip()
    if not secret:
        raise EmptySecret(path)
    return secret


def read_or_create_secret(path: Path, make: Callable[[], str], *, what: str) -> str:
    """As :func:`create_secret`, for a secret Shipyard trusts on every read (a key that
    signs, an auth string): the file must belong to this user and be open to nobody else,
    or :class:`PrivateFileError` says which and how to fix it; an empty one is refused
    too. ``what`` names the secret in the messages."""
    with contextlib.suppress(FileNotFoundError):
        return _read_owned(path, what)
    try:
        create_secret(path, make)
    except EmptySecret as err:
        raise PrivateFileError(f"{path} ({what}) is empty: delete it and Shipyard makes a "
                               "new one") from err
    return _read_owned(path, what)


def _read_owned(path: Path, what: str) -> str:
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
                "else may have read it")
        text = opened.read().strip()
    if not text:
        raise PrivateFileError(
            f"{path} ({what}) is empty: delete it and Shipyard makes a new one")
    return text


def check_private(files: Iterable[Path] = (), dirs: Iterable[Path] = ()) -> list[TooOpen]:
    """What is too open among the secret ``files`` and the state ``dirs`` that exist (a
    missing one is no problem). Symbolic links are followed: what counts is who can read
    what they lead to."""
    entries: list[tuple[str, PathKind, int]] = []
    kinds: tuple[tuple[PathKind, Iterable[Path]], ...] = (("state directory", dirs),
                                                          ("secret file", files))
    for kind, paths in kinds:
        for path in paths:
            try:
                entries.append((str(path), kind, path.stat().st_mode))
            except FileNotFoundError:
                continue
    return mode_problems(entries)


def require_private(files: Iterable[Path] = (), dirs: Iterable[Path] = ()) -> None:
    """Raise :class:`~shipyard.domain.file_modes.StateNotPrivate` naming each path that is
    too open, the mode found and the fix."""
    problems = check_private(files, dirs)
    if problems:
        raise StateNotPrivate(problems)


def tighten(problems: Iterable[TooOpen]) -> None:
    """Take the group's and others' bits off each path (the owner's are kept)."""
    for problem in problems:
        os.chmod(problem.path, problem.tightened)


def _new_private_file(beside: Path, content: bytes) -> Path:
    """A new file in ``beside``'s directory holding ``content``, mode 0600 (``mkstemp``
    creates it so), flushed to disk."""
    fd, name = tempfile.mkstemp(dir=beside.parent, prefix=f".{beside.name}.", suffix=".new")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)
