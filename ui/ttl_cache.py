"""A short cache shared by the requests of one process, with one read in flight per key.

A value read for a key is reused for ``ttl_seconds`` from when its read began, so it is
never older than that. While a key is being read, whoever asks for it waits for that read
instead of starting another: a page opened in many tabs, or refreshed by each of them at
once, costs one read. A read that fails is not kept: the callers that waited for it get
its error, and the next caller reads again. ``ttl_seconds`` 0 turns the cache off: every
call reads.

Thread-safe (the UI's blocking routes run in FastAPI's thread pool). Time comes from an
injected :data:`~shipyard.domain.clock.Monotonic`, so tests move it instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from shipyard.domain.clock import Monotonic

__all__ = ["TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float


class TtlCache(Generic[K, V]):
    """Values by key for ``ttl_seconds``, each read once however many ask at once."""

    def __init__(self, ttl_seconds: float, *, clock: Monotonic = time.monotonic) -> None:
        if ttl_seconds < 0:
            raise ValueError(f"a cache's time to live is 0 (off) or more, not {ttl_seconds}")
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[K, _Entry[V]] = {}
        self._reading: dict[K, Future[V]] = {}

    def get(self, key: K, read: Callable[[], V]) -> V:
        """The value of ``key``: kept, else the one being read, else what ``read``
        returns (kept for ``ttl_seconds``). ``read``'s error is raised and not kept."""
        if self.ttl_seconds == 0:
            return read()
        with self._lock:
            now = self.clock()
            entry = self._entries.get(key)
            if entry is not None and now < entry.expires:
                return entry.value
            pending = self._reading.get(key)
            if pending is None:
                pending = self._reading[key] = Future()
                leader = True
            else:
                leader = False
        if not leader:
            return pending.result()
        try:
            value = read()
        except BaseException as err:
            with self._lock:
                del self._reading[key]
            pending.set_exception(err)
            raise
        with self._lock:
            del self._reading[key]
            self._forget_expired(self.clock())
            self._entries[key] = _Entry(value, now + self.ttl_seconds)
        pending.set_result(value)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _forget_expired(self, now: float) -> None:
        # Keys are few (a namespace and what is read of it), so a sweep at each store
        # keeps memory to what is live without a timer.
        for key in [k for k, e in self._entries.items() if now >= e.expires]:
            del self._entries[key]
