"""The one status vocabulary of runs and stages, and the table that governs it.

Every change of state of a pipeline run or a stage run goes through :func:`transition`, which
consults :data:`ALLOWED_TRANSITIONS`. Like Prefect's orchestration rules, the table is the
whole policy: a move it does not list is refused with an error naming both states and the
moves that *are* allowed, so a caller never has to guess why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shipyard.domain.clock import Clock

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL_STATES",
    "State",
    "Transition",
    "TransitionForbidden",
    "allowed_targets",
    "transition",
]


class State(StrEnum):
    """Where a run or a stage is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # paused for a manual judgment
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    ROLLED_BACK = "rolled_back"

    @property
    def is_terminal(self) -> bool:
        """True when nothing but a rollback can follow."""
        return self in TERMINAL_STATES


ALLOWED_TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED, State.SKIPPED}),
    State.RUNNING: frozenset(
        {State.WAITING, State.SUCCEEDED, State.FAILED, State.CANCELLED, State.ROLLED_BACK}
    ),
    # A judgment is answered (back to running), rejected or timed out (failed), or the
    # whole run is cancelled while it waits.
    State.WAITING: frozenset({State.RUNNING, State.FAILED, State.CANCELLED}),
    # A deploy that succeeded can later be undone by a coordinated rollback; a failed one
    # is rolled back as part of its own failure handling.
    State.SUCCEEDED: frozenset({State.ROLLED_BACK}),
    State.FAILED: frozenset({State.ROLLED_BACK}),
    State.CANCELLED: frozenset(),
    State.SKIPPED: frozenset(),
    State.ROLLED_BACK: frozenset(),
}

TERMINAL_STATES: frozenset[State] = frozenset(
    {State.SUCCEEDED, State.FAILED, State.CANCELLED, State.SKIPPED, State.ROLLED_BACK}
)

# Reasons are short machine-readable codes, as in Kubernetes and Tekton conditions
# ("TestsFailed", "CanaryFailed"); the message carries the human explanation.
_REASON = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")


class TransitionForbidden(ValueError):
    """A state change that the transition table does not allow."""

    def __init__(self, subject: str, current: State, target: State) -> None:
        allowed = ", ".join(sorted(allowed_targets(current))) or "nothing (it is final)"
        super().__init__(
            f"{subject} cannot go from {current.value} to {target.value}; "
            f"from {current.value} it may go to: {allowed}"
        )
        self.subject = subject
        self.current = current
        self.target = target


@dataclass(frozen=True, slots=True)
class Transition:
    """One accepted change of state, with why and when."""

    from_state: State
    to_state: State
    reason: str
    message: str
    at: datetime


def allowed_targets(current: State) -> frozenset[State]:
    """The states that ``current`` may move to."""
    return ALLOWED_TRANSITIONS[current]


def transition(
    current: State,
    target: State,
    *,
    reason: str,
    message: str,
    clock: Clock,
    subject: str = "stage",
) -> Transition:
    """Return the transition from ``current`` to ``target``, or raise.

    ``reason`` must be a CamelCase code such as ``TestsFailed``; ``message`` is free text
    for people. ``subject`` only names the thing in error messages ("run 3f2a…",
    "stage build"). Raises :class:`TransitionForbidden` when the table forbids the move and
    :class:`ValueError` for a malformed reason; in both cases nothing has happened.
    """
    if not _REASON.fullmatch(reason):
        raise ValueError(
            f"transition reason {reason!r} must be a CamelCase code such as 'TestsFailed' "
            "(a capital letter, then letters and digits, at most 64)"
        )
    if target not in ALLOWED_TRANSITIONS[current]:
        raise TransitionForbidden(subject, current, target)
    return Transition(from_state=current, to_state=target, reason=reason, message=message,
                      at=clock())
