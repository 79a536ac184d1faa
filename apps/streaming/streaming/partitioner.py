"""Which partition a record goes to: Kafka's default rule, so keys land where a Kafka
producer would put them.

A keyed record goes to `toPositive(murmur2(utf8(key))) % partitions`, the hash of Kafka's
DefaultPartitioner: stable across processes, restarts and languages (Python's `hash()` is
salted per process, so it could never serve). Records without a key are spread round-robin
by the topic (see `RoundRobin`).
"""

from __future__ import annotations

import itertools
import threading

__all__ = ["RoundRobin", "murmur2", "partition_for_key"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2`: the 32-bit MurmurHash2 of `data` as a signed Java int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: str, partitions: int) -> int:
    """The partition of `key` among `partitions`, as Kafka's producer computes it."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


class RoundRobin:
    """Thread-safe: each call to `next_partition` gives the next partition in turn."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def next_partition(self) -> int:
        with self._lock:
            return next(self._counter) % self.partitions
