"""Which repositories a webhook may build: ``SHIPYARD_REPOSITORIES``, an ordered list of
globs (see :mod:`shipyard.domain.globs`; ``!`` excludes, the last match decides).

A pattern is one of two kinds:

* a repository name, ``owner/name`` (``acme/shop``, ``acme/*``, ``!acme/secret``),
  compared without regard to case with the push's ``repository.full_name``;
* a clone URL (it has ``://``, starts with ``/``, or is scp-like ``user@host:...``):
  ``https://github.com/acme/*``, ``git@github.com:acme/*``, ``file:///srv/git/**``,
  compared with the clone URL without its credentials, with and without ``.git``.

A name only counts when the clone URL names the same repository: a payload saying
``full_name: acme/shop`` with a clone URL of ``https://github.com/evil/shop.git`` is
held to the URL patterns alone. Otherwise an allowed name would let a delivery fetch
any code at all. (GitHub always sends the two in agreement; a ``file://`` URL never
agrees, so local repositories are allowed by URL patterns.)

No patterns allow nothing: Shipyard builds only what the operator named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from shipyard.domain.clone_urls import CloneUrl
from shipyard.domain.globs import GlobSet, InvalidPattern

__all__ = ["NOT_ALLOWED", "RepositoryAllowList"]

NOT_ALLOWED = "repository not allowed"
"""What an ignored delivery for another repository is answered."""

_SCP_PATTERN = re.compile(r"[^/]*@[^/]*:")

PatternKind = Literal["name", "url"]


@dataclass(frozen=True)
class RepositoryAllowList:
    """The repositories whose pushes may start a pipeline."""

    patterns: tuple[str, ...]
    _rules: tuple[tuple[PatternKind, GlobSet], ...] = field(repr=False, compare=False)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> RepositoryAllowList:
        """Compile ``patterns``; :class:`InvalidPattern` names the first bad one."""
        given = tuple(patterns)
        return cls(given, tuple(_rule(p) for p in given))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def allows(self, full_name: str | None, url: CloneUrl) -> bool:
        """Whether the last pattern matching the repository (by name, when the URL names
        it too, or by URL) includes it. Pure."""
        name = full_name.casefold() if full_name else None
        if name is not None and url.repository_path != name:
            name = None
        urls = {url.shown, url.shown.removesuffix(".git")}
        decision = False
        for kind, glob in self._rules:
            subjects: Iterable[str] = urls if kind == "url" else ([name] if name else [])
            for subject in subjects:
                verdict = glob.verdict(subject)
                if verdict is not None:
                    decision = verdict
                    break
        return decision

    def refusal(self, full_name: str | None, url: CloneUrl) -> str:
        """Why :meth:`allows` said no, and what to set: for the ignored delivery's record,
        its answer and the log (credentials are never in it)."""
        who = f"{full_name} ({url.shown})" if full_name else url.shown
        if not self.patterns:
            return (f"{NOT_ALLOWED}: SHIPYARD_REPOSITORIES is not set, so no repository is "
                    f"built; set it to globs such as 'acme/*' to build {who}")
        return (f"{NOT_ALLOWED}: {who} matches no pattern of SHIPYARD_REPOSITORIES; add it "
                "there to build it")

    def describe(self) -> str:
        """The patterns for a message: ``acme/*, !acme/old`` or ``none set``."""
        return ", ".join(self.patterns) if self.patterns else "none set"


def _rule(pattern: str) -> tuple[PatternKind, GlobSet]:
    if not isinstance(pattern, str):
        raise InvalidPattern(f"pattern {pattern!r} must be a string")
    body = pattern.removeprefix("!")
    if "://" in body or body.startswith("/") or _SCP_PATTERN.match(body):
        return "url", GlobSet.of([pattern])
    if "/" not in body:
        raise InvalidPattern(f"pattern {pattern!r} names no owner: write 'owner/name' "
                             "('acme/shop', 'acme/*', '*/*') or a clone URL")
    return "name", GlobSet.of([pattern.casefold()])
