"""Tumbling event-time windows, watermarks and the late-event rule: pure functions over
plain numbers (milliseconds since the epoch), so every rule is tested with explicit times.

- A window is [start, start + size), start a multiple of the size (one minute).
- The watermark says "no event older than this is still expected": the highest event time
  seen minus the allowed lateness. It never goes back.
- A window is final once the watermark reaches its end. An event whose window is final
  is late: it is not added to the window (a final count never changes); it is counted in
  the window's `late` counter and in `late_events_total` instead. An event whose window
  is still open is counted, however out of order it arrived.

Partitions are read one batch at a time, so one partition can be read ahead of another.
While a partition still has records to read, the watermark may not pass what that
partition has shown so far (Flink takes the minimum over its inputs the same way);
otherwise catching up after a pause would make the slower partitions' events late. A
partition with nothing left to read holds nothing back (like Flink's idle sources), or an
idle partition would stop every window from closing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "WINDOW_MS",
    "PartitionProgress",
    "WindowChanges",
    "is_final",
    "is_late",
    "next_watermark",
    "window_start",
]

WINDOW_MS = 60_000

Verdict = Literal["counted", "late"]


def window_start(event_ms: int, size_ms: int = WINDOW_MS) -> int:
    """The start of the window holding `event_ms` (floor, also before 1970)."""
    return event_ms - event_ms % size_ms


def is_final(start_ms: int, watermark_ms: int | None, size_ms: int = WINDOW_MS) -> bool:
    """Whether the window starting at `start_ms` is closed: the watermark reached its end."""
    return watermark_ms is not None and start_ms + size_ms <= watermark_ms


def is_late(event_ms: int, watermark_ms: int | None, size_ms: int = WINDOW_MS) -> bool:
    """Whether an event at `event_ms` arrives after its window became final."""
    return is_final(window_start(event_ms, size_ms), watermark_ms, size_ms)


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """What the job knows of one partition after a batch: the highest event time it has
    shown (None before its first valid event) and whether anything is left to read."""

    max_event_ms: int | None
    caught_up: bool


def next_watermark(current_ms: int | None, progress: Mapping[int, PartitionProgress],
                   allowed_lateness_ms: int) -> int | None:
    """The watermark after a batch (see the module docstring); never below `current_ms`.

    The bound is the lowest max event time among partitions with records left to read,
    or the highest of all when every partition is caught up. A partition with records
    left but no event yet holds the watermark where it is.
    """
    behind = [p.max_event_ms for p in progress.values() if not p.caught_up]
    if any(seen is None for seen in behind):
        return current_ms
    seen_anywhere = [p.max_event_ms for p in progress.values() if p.max_event_ms is not None]
    if not seen_anywhere:
        return current_ms
    bound = min(m for m in behind if m is not None) if behind else max(seen_anywhere)
    candidate = bound - allowed_lateness_ms
    return candidate if current_ms is None else max(current_ms, candidate)


@dataclass
class WindowChanges:
    """The changes one batch makes to the windows: counts and late counts to add, keyed
    by (content id, window start). `observe` applies the late rule against the watermark
    the batch started with."""

    watermark_ms: int | None
    size_ms: int = WINDOW_MS
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    late: dict[tuple[str, int], int] = field(default_factory=dict)

    def observe(self, content_id: str, event_ms: int) -> Verdict:
        key = (content_id, window_start(event_ms, self.size_ms))
        if is_late(event_ms, self.watermark_ms, self.size_ms):
            self.late[key] = self.late.get(key, 0) + 1
            return "late"
        self.counts[key] = self.counts.get(key, 0) + 1
        return "counted"

    @property
    def late_total(self) -> int:
        return sum(self.late.values())

    def __bool__(self) -> bool:
        return bool(self.counts or self.late)
