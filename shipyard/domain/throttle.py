"""Slowing down password guessing: failed sign-ins are counted per name and per source
address; too many within a window lock that name or address out for a while, longer each
time. Pure: the caller passes the time.

Counting by name protects an account from a guesser spread over many addresses; counting
by address stops one address trying a few passwords on each of many names (spraying),
which no name's count would notice. The lockouts are short and end by themselves, so an
attacker can only delay the real user, never lock them out for good.

Memory is bounded: each count is kept in a least-recently-used table of at most
``capacity`` keys, and a key with no failure and no lockout for a window (or the longest
lockout, whichever is longer) is forgotten, so a flood of made-up names or addresses
cannot grow the process.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from shipyard.domain.client_address import client_key

__all__ = ["FailureCounter", "Lockout", "SignInThrottle"]


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0
    last_seen: float = 0.0


@dataclass
class FailureCounter:
    """``max_failures`` within ``window_seconds`` lock a key for ``base_lockout_seconds``,
    doubled at each further lockout up to ``max_lockout_seconds``. Holds at most
    ``capacity`` keys: beyond that the least recently failed is forgotten."""

    max_failures: int = 5
    window_seconds: float = 900.0
    base_lockout_seconds: float = 60.0
    max_lockout_seconds: float = 3600.0
    capacity: int = 10_000
    _records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._records)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        record = self._records.get(key)
        return max(0.0, record.locked_until - now) if record else 0.0

    def failed(self, key: str, now: float) -> float:
        """Count a failure of ``key``; the lockout it starts (seconds), or 0."""
        self._evict(now)
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record  # now the most recently used
        record.last_seen = now
        record.failures = [t for t in record.failures if now - t < self.window_seconds]
        record.failures.append(now)
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)
        if len(record.failures) < self.max_failures:
            return 0.0
        lockout: float = min(self.max_lockout_seconds,
                             self.base_lockout_seconds * 2.0 ** record.lockouts)
        record.lockouts += 1
        record.failures.clear()
        record.locked_until = now + lockout
        return lockout

    def forget(self, key: str) -> None:
        self._records.pop(key, None)

    def _evict(self, now: float) -> None:
        """Forget keys quiet for a window, or for the longest lockout if that is longer
        (a guesser who waits less than that still meets a doubled lockout next time). Keys
        are in the order they last failed, so the quiet ones are at the front."""
        quiet_enough = max(self.window_seconds, self.max_lockout_seconds)
        while self._records:
            key, record = next(iter(self._records.items()))
            if now - max(record.last_seen, record.locked_until) < quiet_enough:
                return
            del self._records[key]


@dataclass(frozen=True)
class Lockout:
    """Why a sign-in is refused for now: the name or the address is locked."""

    seconds: float
    by: Literal["name", "address"]



@dataclass
class SignInThrottle:
    """Failed sign-ins counted by name (5 in 15 minutes lock it) and by source address
    (20 in 15 minutes lock it), each lockout a minute, doubling up to an hour."""

    by_name: FailureCounter = field(default_factory=FailureCounter)
    by_address: FailureCounter = field(
        default_factory=lambda: FailureCounter(max_failures=20))

    def locked(self, name: str, address: str | None, now: float) -> Lockout | None:
        """The lockout a sign-in as ``name`` from ``address`` meets now, if any (the
        longer one when both are locked)."""
        by_name = self.by_name.retry_after(name.lower(), now)
        by_address = self.by_address.retry_after(client_key(address), now)
        if not by_name and not by_address:
            return None
        return Lockout(by_name, "name") if by_name >= by_address else Lockout(
            by_address, "address")

    def failed(self, name: str, address: str | None, now: float) -> Lockout | None:
        """Count a failed sign-in; the lockout it starts, if any."""
        by_name = self.by_name.failed(name.lower(), now)
        by_address = self.by_address.failed(client_key(address), now)
        if not by_name and not by_address:
            return None
        return Lockout(by_name, "name") if by_name >= by_address else Lockout(
            by_address, "address")

    def succeeded(self, name: str) -> None:
        """A good sign-in forgets the name's failures and lockouts. The address's count
        stays: else a guesser with an account of their own could clear it at will."""
        self.by_name.forget(name.lower())
