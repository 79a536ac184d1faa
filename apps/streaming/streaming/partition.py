"""One partition of a topic: an ordered, append-only sequence of records in segment files.

Appends take the partition's lock, so concurrent producers never interleave inside a
partition and offsets are handed out without gaps; the records of one append are written
(and, with FSYNC_POLICY=always, fsynced) before the lock is released and before they
become visible to readers. Reads take no lock: they see the records published when they
started.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streaming.records import Record
from streaming.segment import CorruptLogError, Segment, segment_bases

__all__ = ["NewRecord", "OffsetOutOfRange", "PartitionLog", "ReadResult"]


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to append; the partition gives it its offset."""

    timestamp_ms: int
    key: str | None
    value: bytes


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: list[Record]
    next_offset: int
    start_offset: int
    end_offset: int


class OffsetOutOfRange(LookupError):
    """The offset asked for is outside [start_offset, end_offset]."""

    def __init__(self, offset: int, start_offset: int, end_offset: int) -> None:
        super().__init__(f"offset {offset} is out of range: this partition holds offsets "
                         f"{start_offset} to {end_offset - 1}; read from {start_offset} to "
                         f"{end_offset} (the end: the next offset to be written)")
        self.offset = offset
        self.start_offset = start_offset
        self.end_offset = end_offset


class PartitionLog:
    """The segments of one partition directory; the last one is active."""

    def __init__(self, directory: Path, segments: list[Segment], *, segment_bytes: int,
                 index_interval_bytes: int, fsync: bool) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.index_interval_bytes = index_interval_bytes
        self.fsync = fsync
        # Replaced, never mutated, so a reader's snapshot stays valid while a roll happens.
        self._segments = tuple(segments)
        self._lock = threading.Lock()

    @classmethod
    def create(cls, directory: Path, *, segment_bytes: int, index_interval_bytes: int,
               fsync: bool) -> PartitionLog:
        directory.mkdir()
        first = Segment.create(directory, 0, index_interval_bytes=index_interval_bytes,
                               fsync=fsync)
        return cls(directory, [first], segment_bytes=segment_bytes,
                   index_interval_bytes=index_interval_bytes, fsync=fsync)

    @classmethod
    def recover(cls, directory: Path, *, segment_bytes: int, index_interval_bytes: int,
                fsync: bool) -> PartitionLog:
        """Open the segments found in `directory` (see Segment.recover)."""
        bases = segment_bases(directory)
        if not bases:
            segments = [Segment.create(directory, 0, index_interval_bytes=index_interval_bytes,
                                       fsync=fsync)]
        else:
            segments = []
            for number, base in enumerate(bases):
                segment = Segment.recover(directory, base, active=number == len(bases) - 1,
                                          index_interval_bytes=index_interval_bytes,
                                          fsync=fsync)
                if segments and segments[-1].next_offset != base:
                    segment.close()
                    raise _gap(directory, segments[-1], base)
                segments.append(segment)
        return cls(directory, segments, segment_bytes=segment_bytes,
                   index_interval_bytes=index_interval_bytes, fsync=fsync)

    @property
    def start_offset(self) -> int:
        return self._segments[0].base_offset

    @property
    def end_offset(self) -> int:
        """The offset the next record will get; records below it are readable."""
        return self._segments[-1].next_offset

    def append(self, records: Sequence[NewRecord]) -> int:
        """Append `records` in order; return the offset of the first. Durable on return
        with fsync; raises OSError (nothing appended) if the write fails."""
        if not records:
            raise ValueError("append at least one record")
        with self._lock:
            active = self._segments[-1]
            if active.size >= self.segment_bytes:
                active = self._roll(active)
            first = active.next_offset
            active.append([Record(first + i, r.timestamp_ms, r.key, r.value)
                           for i, r in enumerate(records)], fsync=self.fsync)
            return first

    def read(self, offset: int, max_records: int, max_bytes: int) -> ReadResult:
        """Up to `max_records` records from `offset` on, stopping before `max_bytes` of
        frames are exceeded (but always at least one record, if there is one). Raises
        OffsetOutOfRange unless start_offset <= offset <= end_offset."""
        segments = self._segments
        end = segments[-1].next_offset
        start = segments[0].base_offset
        if not start <= offset <= end:
            raise OffsetOutOfRange(offset, start, end)
        records: list[Record] = []
        taken_bytes = 0
        number = bisect.bisect_right([s.base_offset for s in segments], offset) - 1
        next_offset = offset
        while number < len(segments) and next_offset < end and len(records) < max_records:
            segment = segments[number]
            limit = segment.size
            position = segment.position_of(next_offset)
            while position < limit and len(records) < max_records and next_offset < end:
                frames, position = segment.read_frames(position, limit)
                if not frames:
                    break
                for frame in frames:
                    record = frame.record
                    if record.offset < next_offset:
                        continue
                    if (record.offset >= end or len(records) >= max_records
                            or (records and taken_bytes + frame.size > max_bytes)):
                        return ReadResult(records, next_offset, start, end)
                    records.append(record)
                    taken_bytes += frame.size
                    next_offset = record.offset + 1
            number += 1
        return ReadResult(records, next_offset, start, end)

    def close(self) -> None:
        with self._lock:
            for segment in self._segments:
                segment.close()

    def _roll(self, active: Segment) -> Segment:
        active.seal(fsync=self.fsync)
        fresh = Segment.create(self.directory, active.next_offset,
                               index_interval_bytes=self.index_interval_bytes, fsync=self.fsync)
        self._segments = (*self._segments, fresh)
        return fresh


def _gap(directory: Path, previous: Segment, base: int) -> CorruptLogError:
    return CorruptLogError(
        f"{directory}: segment {previous.base_offset:020d} ends at offset "
        f"{previous.next_offset} but the next one starts at {base}")
