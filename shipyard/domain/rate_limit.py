"""How often one source may call: a token bucket per source, with bounded memory. Pure:
the caller passes the time.

Each source has a bucket of ``burst`` tokens that refills at ``rate_per_second``; a call
takes one token or is told how long until one is there. A bucket left alone long enough
to be full again is the same as no bucket, so it is forgotten; beyond ``max_sources``
the least recently seen source is forgotten too. Forgetting only ever gives a source a
full bucket, so the memory bound costs at most one burst per evicted source, never a
refusal of someone who did not earn it.

IPv6 sources are counted per /64: one host usually holds a whole /64, and counting each
of its 2^64 addresses apart would let it walk past any limit.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["TokenBuckets", "retry_after"]


@dataclass(frozen=True, slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass
class TokenBuckets:
    """A token bucket per source: ``burst`` calls at once, ``rate_per_second`` after."""

    rate_per_second: float
    burst: int
    max_sources: int = 10_000
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if self.rate_per_second <= 0 or self.burst < 1 or self.max_sources < 1:
            raise ValueError("a rate limit needs a rate above 0, a burst and a memory of "
                             "at least 1")

    def take(self, source: str, now: float) -> float:
        """Take a token for ``source`` at ``now`` (seconds, any monotonic origin). Returns
        0 when the call may go ahead, else the seconds until it may."""
        self._forget_full(now)
        bucket = self._buckets.pop(source, None)
        tokens = float(self.burst) if bucket is None else self._refilled(bucket, now)
        if tokens >= 1:
            self._buckets[source] = _Bucket(tokens - 1, now)
            allowed = 0.0
        else:
            self._buckets[source] = _Bucket(tokens, now)
            allowed = (1 - tokens) / self.rate_per_second
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        elapsed = max(0.0, now - bucket.at)
        return min(float(self.burst), bucket.tokens + elapsed * self.rate_per_second)

    def _forget_full(self, now: float) -> None:
        # Least recently seen first: stop at the first bucket that is not full yet. Each
        # call forgets what it walks over, so the work is paid once per bucket.
        while self._buckets:
            source, bucket = next(iter(self._buckets.items()))
            if self._refilled(bucket, now) < self.burst:
                return
            del self._buckets[source]


def retry_after(wait: float) -> int:
    """``wait`` as HTTP's ``Retry-After`` counts it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))

