"""Time as an injected dependency.

Nothing in Shipyard calls ``datetime.now()`` directly where a decision depends on it: the
caller passes a :data:`Clock`, so tests can fix or fast-forward time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "FrozenClock", "system_clock"]

Clock = Callable[[], datetime]
"""A zero-argument callable returning an aware UTC datetime."""


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
