"""The data service's own series, beside servicekit's request metrics on the same registry:

- `data_cache_requests_total{result="hit"|"miss",version}`
- `data_cache_entries{version}` (read at scrape time)
- `data_cache_evictions_total{reason="capacity"|"expired"|"invalidated",version}`
- `data_db_query_duration_seconds{operation,version}` (histogram; failed queries included)
"""

from __future__ import annotations

from collections.abc import Sized

from servicekit.metrics import ServiceMetrics

from data.cache import EVICTION_REASONS, EvictionReason
from data.store import OPERATIONS, Operation

__all__ = ["DB_BUCKETS", "DataMetrics"]

# 0.5 ms to 5 s: an indexed read on a warm SQLite file takes well under a millisecond, a
# PostgreSQL round trip a few; the top buckets catch lock waits and a struggling server.
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class DataMetrics:
    """A CacheListener and a QueryTimer that count into `metrics`' registry."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        version = metrics.version
        requests = metrics.counter("cache_requests", "Cache lookups by result.", ["result"])
        self._hit = requests.labels(result="hit", version=version)
        self._miss = requests.labels(result="miss", version=version)
        evictions = metrics.counter(
            "cache_evictions", "Entries dropped from the cache, by reason.", ["reason"])
        self._evictions = {reason: evictions.labels(reason=reason, version=version)
                           for reason in EVICTION_REASONS}
        self._entries = metrics.gauge(
            "cache_entries", "Entries in this replica's cache.").labels(version=version)
        duration = metrics.histogram(
            "db_query_duration_seconds", "Database calls by operation, failures included.",
            ["operation"], buckets=DB_BUCKETS)
        self._duration = {op: duration.labels(operation=op, version=version)
                          for op in OPERATIONS}

    def count_entries_of(self, cache: Sized) -> None:
        """Report len(cache) as the entries gauge, read at scrape time so it cannot drift."""
        self._entries.set_function(lambda: float(len(cache)))

    def hit(self) -> None:
        self._hit.inc()

    def miss(self) -> None:
        self._miss.inc()

    def evicted(self, reason: EvictionReason, count: int) -> None:
        self._evictions[reason].inc(count)

    def observe(self, operation: Operation, seconds: float) -> None:
        self._duration[operation].observe(seconds)
