"""Which permissions keep Shipyard's secrets private, and what to say when they do not.

The rule is OpenSSH's for a private key: a secret file (a key, a kubeconfig, a password, a
URL that carries one) gives its owner alone any access, so ``0600`` or tighter; a state
directory that holds such files gives its owner alone any access, so ``0700`` or tighter.
Any bit for the group or for others is too open, read, write or execute alike: a writable
secret can be replaced, and a directory others may enter lets them list and open whatever
inside is not locked itself. Pure: the caller stats the paths and passes the modes.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["GROUP_AND_OTHERS", "REQUIRED_MODE", "PathKind", "StateNotPrivate", "TooOpen",
           "mode_problems", "too_open"]

PathKind = Literal["secret file", "state directory"]

REQUIRED_MODE: dict[PathKind, int] = {"secret file": 0o600, "state directory": 0o700}
"""What Shipyard creates, and what the fix sets."""

GROUP_AND_OTHERS = 0o077


@dataclass(frozen=True, slots=True)
class TooOpen:
    """``path`` (a ``kind``) has permission bits ``mode``, which give someone else access."""

    path: str
    kind: PathKind
    mode: int

    @property
    def required(self) -> int:
        return REQUIRED_MODE[self.kind]

    @property
    def tightened(self) -> int:
        """The mode with every group and others bit taken away (the owner's kept as is)."""
        return self.mode & ~GROUP_AND_OTHERS

    @property
    def fix(self) -> str:
        return f"chmod {self.required:o} {self.path}"

    @property
    def exposure(self) -> str:
        """Who else may do what, in words: "its group may read it and others may read it"."""
        return _exposure(self.mode, self.kind)

    @property
    def message(self) -> str:
        """The error: the path, the mode found, and the fix."""
        return (f"{self.path} is a {self.kind} with mode {self.mode:04o}: {self.exposure}; "
                f"it must be {self.required:04o} or tighter: run `{self.fix}`")

    @property
    def tightened_message(self) -> str:
        """What was done when the mode was tightened for the user."""
        said = (f"{self.path} was mode {self.mode:04o} ({self.exposure}): made it "
                f"{self.tightened:04o}")
        if self.kind == "secret file" and self.mode & 0o044:
            said += "; if anyone else can log in to this machine, treat what it holds as seen"
        return said


def too_open(path: str, kind: PathKind, mode: int) -> TooOpen | None:
    """The problem with ``path`` whose permission bits are ``mode`` (as ``stat.S_IMODE``
    gives them), or None when only its owner has access."""
    bits = stat.S_IMODE(mode)
    return TooOpen(path, kind, bits) if bits & GROUP_AND_OTHERS else None


def mode_problems(entries: Iterable[tuple[str, PathKind, int]]) -> list[TooOpen]:
    """Every entry (path, kind, mode) that is too open, in the order given."""
    return [found for path, kind, mode in entries
            if (found := too_open(path, kind, mode)) is not None]


class StateNotPrivate(Exception):
    """Secret files or state directories others can reach; the message names each, the
    mode found and the ``chmod`` that fixes it."""

    def __init__(self, problems: Iterable[TooOpen]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))


def _exposure(mode: int, kind: PathKind) -> str:
    execute = "enter" if kind == "state directory" else "execute"
    granted = []
    for who, shift in (("its group", 3), ("others", 0)):
        bits = (mode >> shift) & 0o7
        verbs = [verb for bit, verb in ((4, "read"), (2, "write"), (1, execute)) if bits & bit]
        if verbs:
            granted.append(f"{who} may {'/'.join(verbs)} it")
    return " and ".join(granted)
