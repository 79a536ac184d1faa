"""Which pushes start a pipeline: branch, tag and path patterns (see
:mod:`shipyard.domain.globs`) applied to a :class:`~shipyard.domain.webhooks.Push`.

Branch pushes are checked against the branch patterns, then the path patterns; tag pushes
against the tag patterns only (a tag names a commit, not a change). No path patterns means
any change. A push whose payload cannot list every changed file (no commits listed, or
GitHub cut the list short) is never ignored for its paths: a trigger must not be lost to a
guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shipyard.domain.globs import GlobSet
from shipyard.domain.webhooks import Push

__all__ = ["TriggerDecision", "TriggerRules", "decide"]

_SHOWN_PATHS = 5


@dataclass(frozen=True)
class TriggerRules:
    """The branches, tags and paths whose pushes start a pipeline."""

    branches: GlobSet
    tags: GlobSet
    paths: GlobSet

    @classmethod
    def of(cls, *, branches: Iterable[str] = ("main",), tags: Iterable[str] = (),
           paths: Iterable[str] = ()) -> TriggerRules:
        """Compile the patterns; :class:`~shipyard.domain.globs.InvalidPattern` if one is
        bad."""
        return cls(GlobSet.of(branches), GlobSet.of(tags), GlobSet.of(paths))


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    """Whether a push starts a pipeline, and why (told to the sender either way)."""

    accepted: bool
    reason: str


def decide(push: Push, rules: TriggerRules) -> TriggerDecision:
    """Whether ``push`` starts a pipeline under ``rules``, with the reason."""
    if push.deleted:
        return TriggerDecision(False, f"{push.kind} {push.name!r} was deleted; a deletion "
                                      "starts nothing")
    if push.kind == "other":
        return TriggerDecision(False, f"ref {push.ref!r} is neither a branch nor a tag")
    if push.kind == "tag":
        if not rules.tags.matches(push.name):
            return TriggerDecision(False, f"tag {push.name!r} matches no trigger tag pattern "
                                          f"({rules.tags.describe()})")
        return TriggerDecision(True, f"tag {push.name!r} matches the trigger tags")
    if not rules.branches.matches(push.name):
        return TriggerDecision(False, f"branch {push.name!r} matches no trigger branch "
                                      f"pattern ({rules.branches.describe()})")
    paths = push.changed_paths
    if rules.paths and paths is not None and not any(rules.paths.matches(p) for p in paths):
        return TriggerDecision(False, "no changed file matches the trigger paths "
                                      f"({rules.paths.describe()}); changed: {_some(paths)}")
    return TriggerDecision(True, f"branch {push.name!r} matches the trigger branches"
                           + (" and paths" if rules.paths else ""))


def _some(paths: frozenset[str]) -> str:
    if not paths:
        return "nothing"
    shown = sorted(paths)[:_SHOWN_PATHS]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")
