"""Glob patterns over slash-separated names (branches, tags, paths), as GitHub Actions'
``on.push`` filters read them.

* ``*`` matches any characters except ``/``; ``**`` matches any characters, ``/`` too;
  ``?`` matches one character except ``/``; ``[abc]``, ``[a-z]`` and ``[!abc]`` match one
  character of (or not of) a set;
* a pattern starting with ``!`` excludes what it matches. Patterns are read in order and
  the last one that matches a name decides, so ``["release/**", "!release/old-*"]`` takes
  every release branch but the old ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["GlobSet", "InvalidPattern"]


class InvalidPattern(ValueError):
    """A glob pattern that cannot be read; the message names it and says why."""


@dataclass(frozen=True)
class GlobSet:
    """An ordered list of glob patterns, ``!`` for exclusions; the last match decides."""

    patterns: tuple[str, ...]
    _compiled: tuple[tuple[bool, re.Pattern[str]], ...] = field(repr=False, compare=False)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> GlobSet:
        """Compile ``patterns``; raise :class:`InvalidPattern` naming the first bad one."""
        given = tuple(patterns)
        return cls(given, tuple(_compile(p) for p in given))

    def matches(self, name: str) -> bool:
        """True when the last pattern that matches ``name`` includes it (so an empty set
        matches nothing)."""
        return self.verdict(name) is True

    def verdict(self, name: str) -> bool | None:
        """What the last pattern that matches ``name`` says: True to include, False to
        exclude; None when no pattern matches (so callers can weigh several sets)."""
        decision: bool | None = None
        for include, regex in self._compiled:
            if regex.fullmatch(name):
                decision = include
        return decision

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def describe(self) -> str:
        """The patterns for a message: ``main, release/*`` or ``none set``."""
        return ", ".join(self.patterns) if self.patterns else "none set"


def _compile(pattern: str) -> tuple[bool, re.Pattern[str]]:
    if not isinstance(pattern, str):
        raise InvalidPattern(f"pattern {pattern!r} must be a string")
    include = not pattern.startswith("!")
    body = pattern if include else pattern[1:]
    if not body or body.strip() != body:
        raise InvalidPattern(f"pattern {pattern!r} is empty or has leading or trailing "
                             "spaces")
    parts: list[str] = []
    i = 0
    while i < len(body):
        if body.startswith("**", i):
            parts.append(".*")
            i += 2
        elif body[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif body[i] == "?":
            parts.append("[^/]")
            i += 1
        elif body[i] == "[":
            negate = body.startswith("[!", i)
            first = i + (2 if negate else 1)
            end = body.find("]", first + 1)  # a ']' first in the set is a member
            if end < 0:
                raise InvalidPattern(f"pattern {pattern!r} opens '[' and never closes it")
            members = re.sub(r"([\\^\[])", r"\\\1", body[first:end])
            parts.append(f"[{'^' if negate else ''}{members}]")
            i = end + 1
        else:
            parts.append(re.escape(body[i]))
            i += 1
    try:
        return include, re.compile("".join(parts))
    except re.error as err:  # e.g. a reversed range, [z-a]
        raise InvalidPattern(f"pattern {pattern!r} is not a valid glob: {err.msg}") from err
