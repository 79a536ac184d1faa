"""``when`` conditions on branches: shell-style patterns, as Jenkins's ``branch`` rule."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

__all__ = ["branch_matches"]


def branch_matches(patterns: Iterable[str], branch: str | None) -> bool:
    """Whether ``branch`` (``main``, ``refs/heads/main`` or None) matches any pattern
    (``fnmatch`` rules, case-sensitive; ``*`` also matches ``/``). ``*`` matches everything,
    also no branch at all (a run of a bare commit)."""
    patterns = list(patterns)
    if "*" in patterns:
        return True
    if branch is None:
        return False
    name = branch.removeprefix("refs/heads/")
    return any(fnmatchcase(name, pattern) for pattern in patterns)
