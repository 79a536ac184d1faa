"""Time as an injected dependency.

Nothing in Shipyard calls ``datetime.now()`` directly where a decision depends on it: the
caller passes a :data:`Clock`, so tests can fix or fast-forward time instead of sleeping.
Deadlines are kept on a :data:`Monotonic` clock (``time.monotonic`` in production), which a
wall clock set back or forward cannot move, and polling loops wait with an injected
:data:`Sleep`, so a test's fake clock can move when the loop sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "FrozenClock", "Monotonic", "Sleep", "system_clock"]

Clock = Callable[[], datetime]
"""A zero-argument callable returning an aware UTC datetime."""

Monotonic = Callable[[], float]
"""Seconds since an arbitrary start, never going back (``time.monotonic``)."""

Sleep = Callable[[float], None]
"""Waits the given seconds (``time.sleep``)."""


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to; for tests and for replaying history."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime (pass tzinfo=UTC)")
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move time forward by ``seconds`` and return the new now."""
        self._now += timedelta(seconds=seconds)
        return self._now
