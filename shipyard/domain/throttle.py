"""Slowing down password guessing: after a few failed sign-ins for one name, that name is
locked out for a while, longer each time. Pure: the caller passes the time.

Counting by name (not by address) protects an account from a guesser spread over many
addresses; the lockout is short and ends by itself, so an attacker can only delay the
real user, not lock them out for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SignInThrottle"]


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0


@dataclass
class SignInThrottle:
    """``max_failures`` within ``window_seconds`` lock a name for ``base_lockout_seconds``,
    doubled at each further lockout up to ``max_lockout_seconds``."""

    max_failures: int = 5
    window_seconds: float = 900.0
    base_lockout_seconds: float = 60.0
    max_lockout_seconds: float = 3600.0
    _records: dict[str, _Record] = field(default_factory=dict)

    def retry_after(self, name: str, now: float) -> float:
        """Seconds until ``name`` may try again; 0 when it may now."""
        record = self._records.get(name.lower())
        return max(0.0, record.locked_until - now) if record else 0.0

    def failed(self, name: str, now: float) -> float:
        """Count a failed sign-in; the lockout it starts (seconds), or 0."""
        record = self._records.setdefault(name.lower(), _Record())
        record.failures = [t for t in record.failures if now - t < self.window_seconds]
        record.failures.append(now)
        if len(record.failures) < self.max_failures:
            return 0.0
        lockout: float = min(self.max_lockout_seconds,
                             self.base_lockout_seconds * 2.0 ** record.lockouts)
        record.lockouts += 1
        record.failures.clear()
        record.locked_until = now + lockout
        return lockout

    def succeeded(self, name: str) -> None:
        """A good sign-in forgets the name's failures and lockouts."""
        self._records.pop(name.lower(), None)
