"""The topics of a data directory: creating them, finding them after a restart, and
routing appended records to partitions.

Layout under DATA_DIR/topics: one directory per topic holding `topic.json`
({"partitions": N}) and one directory per partition (`0`, `1`, ...) of segment files. A
topic is assembled in a hidden directory and renamed into place, so after a crash it
either exists whole or not at all.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streaming.files import fsync_dir, write_atomically
from streaming.partition import NewRecord, OffsetOutOfRange, PartitionLog, ReadResult
from streaming.partitioner import RoundRobin, partition_for_key

__all__ = [
    "NAME_PATTERN",
    "Appended",
    "BadPartitionError",
    "Log",
    "NewRecord",
    "OffsetOutOfRange",
    "ReadResult",
    "Topic",
    "TopicExistsError",
    "UnknownTopicError",
    "is_valid_name",
]

logger = logging.getLogger(__name__)

# Kafka's rule for topic names, less "." and ".." (they start with a letter or digit):
# safe as a directory name, in a URL and as a metric label.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,126}$"
_NAME = re.compile(NAME_PATTERN)
_CREATING = ".creating-"


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


class UnknownTopicError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"topic {name!r} does not exist; create it with POST /topics")
        self.name = name


class TopicExistsError(ValueError):
    def __init__(self, topic: Topic) -> None:
        super().__init__(f"topic {topic.name!r} already exists with "
                         f"{len(topic.partitions)} partition(s)")
        self.topic = topic


class BadPartitionError(ValueError):
    def __init__(self, topic: Topic, partition: int) -> None:
        super().__init__(f"partition {partition} does not exist: topic {topic.name!r} has "
                         f"partitions 0 to {len(topic.partitions) - 1}")


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an appended record went."""

    partition: int
    offset: int
    timestamp_ms: int


class Topic:
    def __init__(self, name: str, partitions: Sequence[PartitionLog]) -> None:
        self.name = name
        self.partitions = tuple(partitions)
        self._round_robin = RoundRobin(len(self.partitions))

    def partition(self, number: int) -> PartitionLog:
        """Partition `number`; BadPartitionError if the topic has none such."""
        if not 0 <= number < len(self.partitions):
            raise BadPartitionError(self, number)
        return self.partitions[number]

    def partition_for(self, key: str | None) -> int:
        """Kafka's default: the key's murmur2 hash, or round-robin without a key."""
        if key is None:
            return self._round_robin.next_partition()
        return partition_for_key(key, len(self.partitions))


class Log:
    """Every topic of one data directory. Thread-safe; the process must be its only user
    (the caller holds the data directory's lock)."""

    def __init__(self, root: Path, *, segment_bytes: int, index_interval_bytes: int,
                 fsync: bool, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.segment_bytes = segment_bytes
        self.index_interval_bytes = index_interval_bytes
        self.fsync = fsync
        self.clock = clock
        self.recovered = False
        self._topics: dict[str, Topic] = {}
        self._lock = threading.Lock()

    @property
    def _topics_dir(self) -> Path:
        return self.root / "topics"

    def recover(self) -> None:
        """Open every topic on disk: check each partition's segments, cut a torn last
        write, load or rebuild indexes. Blocking; call it from a worker thread."""
        self._topics_dir.mkdir(parents=True, exist_ok=True)
        for directory in sorted(self._topics_dir.iterdir()):
            if directory.name.startswith(_CREATING):
                logger.info("removing %s, a topic whose creation a crash interrupted",
                            directory)
                shutil.rmtree(directory)
                continue
            if directory.is_dir():
                topic = self._recover_topic(directory)
                self._topics[topic.name] = topic
        self.recovered = True
        logger.info("log recovered: %d topic(s) in %s", len(self._topics), self.root)

    def _recover_topic(self, directory: Path) -> Topic:
        meta = json.loads((directory / "topic.json").read_text())
        count = int(meta["partitions"])
        partitions = [
            PartitionLog.recover(directory / str(number), segment_bytes=self.segment_bytes,
                                 index_interval_bytes=self.index_interval_bytes,
                                 fsync=self.fsync)
            for number in range(count)
        ]
        return Topic(directory.name, partitions)

    def create_topic(self, name: str, partitions: int) -> Topic:
        """Create `name` with `partitions` empty partitions, durably. Raises
        TopicExistsError if it exists, ValueError for an invalid name or count."""
        if not is_valid_name(name):
            raise ValueError(f"topic name {name!r} must match {NAME_PATTERN}")
        if partitions < 1:
            raise ValueError(f"a topic needs at least 1 partition, not {partitions}")
        with self._lock:
            existing = self._topics.get(name)
            if existing is not None:
                raise TopicExistsError(existing)
            staging = self._topics_dir / f"{_CREATING}{name}-{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            logs = [PartitionLog.create(staging / str(number), segment_bytes=self.segment_bytes,
                                        index_interval_bytes=self.index_interval_bytes,
                                        fsync=self.fsync)
                    for number in range(partitions)]
            for log in logs:
                log.close()
            write_atomically(staging / "topic.json",
                             json.dumps({"partitions": partitions}).encode(), fsync=self.fsync)
            final = self._topics_dir / name
            staging.rename(final)
            if self.fsync:
                fsync_dir(self._topics_dir)
            topic = self._recover_topic(final)
            self._topics[name] = topic
        logger.info("created topic %s with %d partition(s)", name, partitions)
        return topic

    def topic(self, name: str) -> Topic:
        try:
            return self._topics[name]
        except KeyError:
            raise UnknownTopicError(name) from None

    def topics(self) -> list[Topic]:
        """Every topic, sorted by name. Takes no lock (a metrics scrape calls it on the
        event loop, and creating a topic holds the lock through its fsyncs): copying a
        dict is atomic."""
        topics = dict(self._topics)
        return [topics[name] for name in sorted(topics)]

    def append(self, topic_name: str,
               records: Sequence[tuple[str | None, bytes, int | None]]) -> list[Appended]:
        """Append (key, value JSON bytes, timestamp in ms or None for now) records; answer
        where each went, in the order given. Records of one partition keep their order and
        are appended together; partitions are written one after another, so if a write
        fails, the partitions before it keep their records (a producer retrying may then
        write some twice: delivery to the log is at least once)."""
        topic = self.topic(topic_name)
        now_ms = int(self.clock() * 1000)
        placed: list[tuple[int, NewRecord]] = []
        by_partition: dict[int, list[NewRecord]] = {}
        for key, value, timestamp_ms in records:
            record = NewRecord(now_ms if timestamp_ms is None else timestamp_ms, key, value)
            number = topic.partition_for(key)
            placed.append((number, record))
            by_partition.setdefault(number, []).append(record)
        next_offsets = {number: topic.partitions[number].append(batch)
                        for number, batch in sorted(by_partition.items())}
        answer = []
        for number, record in placed:
            answer.append(Appended(number, next_offsets[number], record.timestamp_ms))
            next_offsets[number] += 1
        return answer

    def read(self, topic_name: str, partition: int, offset: int, max_records: int,
             max_bytes: int) -> ReadResult:
        """See PartitionLog.read; raises UnknownTopicError, BadPartitionError or
        OffsetOutOfRange."""
        return self.topic(topic_name).partition(partition).read(offset, max_records, max_bytes)

    def close(self) -> None:
        with self._lock:
            for topic in self._topics.values():
                for partition in topic.partitions:
                    partition.close()
            self._topics.clear()
