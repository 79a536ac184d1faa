"""How states, times and durations read on the pages: pure functions the templates use.

Every state has an icon and a word beside its colour, so colour is never the only signal
(WCAG 1.4.1); the browser script uses the same table (passed to it as JSON).
"""

from __future__ import annotations

import difflib
from datetime import datetime

from shipyard.domain.states import State
from shipyard.store.records import ReleaseRecord

__all__ = ["STATE_BADGES", "badge", "diff_line_class", "duration_text", "manifest_diff",
           "pace", "since_text"]

STATE_BADGES: dict[str, tuple[str, str]] = {
    State.QUEUED.value: ("◷", "Queued"),
    State.RUNNING.value: ("▶", "Running"),
    State.WAITING.value: ("‖", "Waiting"),
    State.SUCCEEDED.value: ("✔", "Succeeded"),
    State.FAILED.value: ("✘", "Failed"),
    State.CANCELLED.value: ("⊘", "Cancelled"),
    State.SKIPPED.value: ("⏭", "Skipped"),
    State.ROLLED_BACK.value: ("↺", "Rolled back"),
}


def badge(state: State | str) -> tuple[str, str]:
    """(icon, label) of a state."""
    return STATE_BADGES[str(state)]


def duration_text(seconds: float | None) -> str:
    """``"850 ms"``, ``"42 s"``, ``"3 m 05 s"``, ``"2 h 07 m"``; ``""`` for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def pace(seconds: float | None, typical: float | None) -> str:
    """How a duration compares with the typical one: ``"typical"``, ``"slow"`` (more than
    1.5 times) or ``"fast"`` (less than half); ``""`` when either is unknown."""
    if seconds is None or not typical:
        return ""
    ratio = seconds / typical
    if ratio > 1.5:
        return "slow"
    if ratio < 0.5:
        return "fast"
    return "typical"


def since_text(at: datetime | None, now: datetime) -> str:
    """``"just now"``, ``"5 min ago"``, ``"3 h ago"``, ``"4 days ago"``."""
    if at is None:
        return ""
    seconds = (now - at).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400 * 2:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def manifest_diff(left: ReleaseRecord, right: ReleaseRecord) -> list[str]:
    """The unified diff of two releases' recorded manifests (empty when the same)."""
    return list(difflib.unified_diff(
        left.manifests.splitlines(), right.manifests.splitlines(),
        fromfile=f"#{left.id} {left.environment} {left.version}",
        tofile=f"#{right.id} {right.environment} {right.version}", lineterm=""))


def diff_line_class(line: str) -> str:
    """The CSS class of a unified-diff line: file, add, del, hunk or none."""
    if line.startswith(("+++", "---")):
        return "file"
    return {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")
