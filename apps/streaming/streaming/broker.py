"""What producers and consumers can do, over the log and the consumer groups: the one
place their rules live, used by the HTTP API and by the views job alike.

A consumer group here is a set of committed offsets, not a membership: there is no
join, no heartbeat and no rebalancing. `fetch_for_group` reads from the committed
offsets and does not move them unless asked to commit, so every caller using a group's
name reads the same records until someone commits. Run one consumer per group, or give
each member its own partitions through the per-partition endpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from streaming.groups import GroupOffsets
from streaming.log import Appended, Log, OffsetOutOfRange, ReadResult
from streaming.metrics import StreamingMetrics
from streaming.records import Record

__all__ = ["Broker", "GroupFetch", "GroupPosition", "ReservedGroupError"]


class ReservedGroupError(PermissionError):
    def __init__(self, group: str) -> None:
        super().__init__(f"group {group!r} belongs to the service's views job; its offsets "
                         "are read-only here")


@dataclass(frozen=True, slots=True)
class GroupPosition:
    """One partition of a topic as a group sees it; `committed` and `lag` are None when
    the group has committed nothing there."""

    topic: str
    partition: int
    committed: int | None
    end_offset: int

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(self.end_offset - self.committed, 0)


@dataclass(frozen=True, slots=True)
class GroupFetch:
    """Records read for a group, each with its partition, and `positions`: per partition
    read, the offset after the last record answered (commit these to move on)."""

    records: list[tuple[int, Record]]
    positions: dict[int, int]
    committed: bool


class Broker:
    def __init__(self, log: Log, groups: GroupOffsets, metrics: StreamingMetrics, *,
                 fetch_max_bytes: int, reserved_groups: Collection[str] = ()) -> None:
        self.log = log
        self.groups = groups
        self.metrics = metrics
        self.fetch_max_bytes = fetch_max_bytes
        self.reserved_groups = frozenset(reserved_groups)
        self._turns: dict[tuple[str, str], int] = {}
        self._turns_lock = threading.Lock()

    def produce(self, topic: str,
                records: Sequence[tuple[str | None, bytes, int | None]]) -> list[Appended]:
        """Append records (key, value JSON, timestamp ms or None); see Log.append."""
        appended = self.log.append(topic, records)
        self.metrics.records_produced(topic, len(appended))
        return appended

    def fetch(self, topic: str, partition: int, offset: int | None,
              max_records: int) -> ReadResult:
        """Records of one partition from `offset` (None: the start); see Log.read."""
        log = self.log.topic(topic).partition(partition)
        result = log.read(log.start_offset if offset is None else offset, max_records,
                          self.fetch_max_bytes)
        self.metrics.records_consumed(topic, len(result.records))
        return result

    def commit(self, group: str, topic: str, offsets: Mapping[int, int], *,
               internal: bool = False) -> None:
        """Commit `offsets` (partition -> next offset to read) for `group`. Raises
        UnknownTopicError, BadPartitionError, OffsetOutOfRange (an offset outside the
        partition's [start, end]) or ReservedGroupError, committing nothing."""
        if group in self.reserved_groups and not internal:
            raise ReservedGroupError(group)
        known = self.log.topic(topic)
        for number, offset in offsets.items():
            partition = known.partition(number)
            if not partition.start_offset <= offset <= partition.end_offset:
                raise OffsetOutOfRange(offset, partition.start_offset, partition.end_offset)
        self.groups.commit(group, topic, offsets)

    def positions(self, group: str, topic: str | None = None) -> list[GroupPosition]:
        """Every partition of `topic` (committed or not), or, without a topic, every
        partition the group has committed; sorted by topic and partition."""
        if topic is not None:
            known = self.log.topic(topic)
            committed = self.groups.committed(group, topic)
            return [GroupPosition(topic, number, committed.get(number), p.end_offset)
                    for number, p in enumerate(known.partitions)]
        answer = []
        for name, offsets in sorted(self.groups.of_group(group).items()):
            partitions = self.log.topic(name).partitions
            answer += [GroupPosition(name, number, offset, partitions[number].end_offset)
                       for number, offset in sorted(offsets.items())
                       if number < len(partitions)]
        return answer

    def fetch_for_group(self, group: str, topic: str, max_records: int, *,
                        commit: bool = False) -> GroupFetch:
        """Up to `max_records` records of `topic` from `group`'s committed offsets (the
        start of a partition it never committed; the nearest end of the valid range if
        its offset is outside it), across partitions. Each call starts with the next
        partition in turn, so a busy partition cannot starve the others. With `commit`,
        the positions after the answered records are committed before answering (the
        records are then never answered again, even if this answer is lost)."""
        known = self.log.topic(topic)
        committed = self.groups.committed(group, topic)
        count = len(known.partitions)
        with self._turns_lock:
            first = self._turns.get((group, topic), 0) % count
            self._turns[group, topic] = first + 1
        records: list[tuple[int, Record]] = []
        positions: dict[int, int] = {}
        for step in range(count):
            if len(records) >= max_records:
                break
            number = (first + step) % count
            partition = known.partitions[number]
            offset = min(max(committed.get(number, partition.start_offset),
                             partition.start_offset), partition.end_offset)
            result = self.fetch(topic, number, offset, max_records - len(records))
            records += [(number, record) for record in result.records]
            if result.records:
                positions[number] = result.next_offset
        if commit and positions:
            self.commit(group, topic, positions)
        return GroupFetch(records, positions, commit and bool(positions))
