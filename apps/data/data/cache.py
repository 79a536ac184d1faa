"""An in-process read-through cache with a TTL and a bound on entries (LRU), partitioned
by user so that a write drops everything cached for that user at once.

It plays EVCache's part in front of the store, with one difference that matters: it is
local to the process. A write invalidates the cache of the replica that served it, and
every other replica may serve what it cached before the write for up to the TTL. EVCache
closes that gap by replicating invalidations across zones; here the TTL bounds it (see
README.md, "Cache consistency").

Pure logic: no I/O, time comes from an injected clock, events go to a listener.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

__all__ = ["CacheListener", "EvictionReason", "ReadThroughCache"]

V = TypeVar("V")
Clock = Callable[[], float]
EvictionReason = Literal["capacity", "expired", "invalidated"]
EVICTION_REASONS: tuple[EvictionReason, ...] = ("capacity", "expired", "invalidated")


class CacheListener(Protocol):
    def hit(self) -> None: ...

    def miss(self) -> None: ...

    def evicted(self, reason: EvictionReason, count: int) -> None: ...


class _Silent:
    def hit(self) -> None:
        pass

    def miss(self) -> None:
        pass

    def evicted(self, reason: EvictionReason, count: int) -> None:
        pass


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    expires_at: float


class ReadThroughCache(Generic[V]):
    """Values keyed by (user_id, key), each kept `ttl_seconds` after it was loaded, at most
    `max_entries` in all (the least recently used go first). A TTL of 0 caches nothing.

    Values are shared between callers, so they must be immutable. Thread-safe: loads run
    outside the lock, so a slow database read never blocks hits.
    """

    def __init__(self, ttl_seconds: float, max_entries: int, *, clock: Clock = time.monotonic,
                 listener: CacheListener | None = None) -> None:
        if ttl_seconds < 0 or max_entries < 1:
            raise ValueError("ttl_seconds must be >= 0 and max_entries >= 1")
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._listener = listener or _Silent()
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, Hashable], _Entry[V]] = OrderedDict()
        self._keys_of_user: dict[str, set[Hashable]] = {}
        # Loads in flight, per user. invalidate() forgets a user's, so a load that read the
        # database before a write cannot store its stale answer after the invalidation.
        self._loading: dict[str, set[object]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get_or_load(self, user_id: str, key: Hashable, load: Callable[[], V]) -> V:
        """The cached value of (user_id, key) if fresh, else `load()`, cached unless the
        user was invalidated while it ran. Exceptions from `load` propagate uncached."""
        with self._lock:
            entry = self._entries.get((user_id, key))
            if entry is not None and entry.expires_at > self._clock():
                self._entries.move_to_end((user_id, key))
                self._listener.hit()
                return entry.value
            if entry is not None:
                self._remove(user_id, key)
                self._listener.evicted("expired", 1)
            self._listener.miss()
            ticket = object()
            self._loading.setdefault(user_id, set()).add(ticket)
        try:
            value = load()
        except BaseException:
            with self._lock:
                self._forget_ticket(user_id, ticket)
            raise
        with self._lock:
            if self._forget_ticket(user_id, ticket) and self.ttl_seconds > 0:
                self._store(user_id, key, value)
        return value

    def invalidate(self, user_id: str) -> None:
        """Drop everything cached for `user_id`, and whatever loads for it are in flight.
        Call it after the write has committed."""
        with self._lock:
            self._loading.pop(user_id, None)
            keys = self._keys_of_user.pop(user_id, set())
            for key in keys:
                del self._entries[(user_id, key)]
        if keys:
            self._listener.evicted("invalidated", len(keys))

    def _store(self, user_id: str, key: Hashable, value: V) -> None:
        self._entries[(user_id, key)] = _Entry(value, self._clock() + self.ttl_seconds)
        self._entries.move_to_end((user_id, key))
        self._keys_of_user.setdefault(user_id, set()).add(key)
        evicted = 0
        while len(self._entries) > self.max_entries:
            (old_user, old_key), _ = self._entries.popitem(last=False)
            self._forget_key(old_user, old_key)
            evicted += 1
        if evicted:
            self._listener.evicted("capacity", evicted)

    def _remove(self, user_id: str, key: Hashable) -> None:
        del self._entries[(user_id, key)]
        self._forget_key(user_id, key)

    def _forget_key(self, user_id: str, key: Hashable) -> None:
        keys = self._keys_of_user[user_id]
        keys.discard(key)
        if not keys:
            del self._keys_of_user[user_id]

    def _forget_ticket(self, user_id: str, ticket: object) -> bool:
        """True if the ticket was still valid (its user not invalidated since)."""
        tickets = self._loading.get(user_id)
        if tickets is None or ticket not in tickets:
            return False
        tickets.discard(ticket)
        if not tickets:
            del self._loading[user_id]
        return True
