"""Wire format: pydantic models for request validation and response documentation.

Timestamps of records are integers, milliseconds since the Unix epoch (Kafka's
convention); window bounds and the watermark are ISO 8601 UTC date-times.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from streaming.broker import GroupPosition
from streaming.log import NAME_PATTERN, Appended, Topic
from streaming.records import Record

__all__ = [
    "CommitRequest",
    "CommitResponse",
    "FetchResponse",
    "GroupFetchResponse",
    "GroupOffsetsResponse",
    "PartitionOffset",
    "ProduceRequest",
    "ProduceResponse",
    "TopicOut",
    "TopicRequest",
    "TopicsOut",
    "ViewEvent",
    "ViewsResponse",
    "WindowOut",
    "from_ms",
    "to_ms",
]

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Offset = Annotated[int, Field(strict=True, ge=0)]


class TopicRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    # None: DEFAULT_PARTITIONS; the upper bound is MAX_PARTITIONS, checked by the route.
    partitions: Annotated[int | None, Field(strict=True, ge=1)] = None


class PartitionOut(BaseModel):
    partition: int
    start_offset: int
    end_offset: int


class TopicOut(BaseModel):
    name: str
    partitions: list[PartitionOut]

    @classmethod
    def of(cls, topic: Topic) -> TopicOut:
        return cls(name=topic.name, partitions=[
            PartitionOut(partition=n, start_offset=p.start_offset, end_offset=p.end_offset)
            for n, p in enumerate(topic.partitions)])


class TopicsOut(BaseModel):
    topics: list[TopicOut]


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Annotated[str | None, Field(max_length=1024)] = None
    value: JsonValue
    timestamp: Offset | None = None  # ms since the epoch; None: when it is appended

    def value_bytes(self) -> bytes:
        return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False).encode()


class ProduceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # At least one; the upper bound is MAX_BATCH_RECORDS, checked by the route.
    records: Annotated[list[RecordIn], Field(min_length=1)]


class Produced(BaseModel):
    partition: int
    offset: int
    timestamp: int

    @classmethod
    def of(cls, appended: Appended) -> Produced:
        return cls(partition=appended.partition, offset=appended.offset,
                   timestamp=appended.timestamp_ms)


class ProduceResponse(BaseModel):
    topic: str
    offsets: list[Produced]


class RecordOut(BaseModel):
    partition: int
    offset: int
    timestamp: int
    key: str | None
    value: JsonValue

    @classmethod
    def of(cls, partition: int, record: Record) -> RecordOut:
        return cls(partition=partition, offset=record.offset, timestamp=record.timestamp_ms,
                   key=record.key, value=json.loads(record.value))


class FetchResponse(BaseModel):
    topic: str
    partition: int
    records: list[RecordOut]
    next_offset: int
    start_offset: int
    end_offset: int


class PartitionOffset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition: Offset
    offset: Offset


class CommitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: Name
    offsets: Annotated[list[PartitionOffset], Field(min_length=1)]


class CommitResponse(BaseModel):
    group: str
    topic: str
    offsets: list[PartitionOffset]


class GroupOffsetOut(BaseModel):
    topic: str
    partition: int
    committed: int | None
    end_offset: int
    lag: int | None

    @classmethod
    def of(cls, position: GroupPosition) -> GroupOffsetOut:
        return cls(topic=position.topic, partition=position.partition,
                   committed=position.committed, end_offset=position.end_offset,
                   lag=position.lag)


class GroupOffsetsResponse(BaseModel):
    group: str
    offsets: list[GroupOffsetOut]


class GroupFetchResponse(BaseModel):
    group: str
    topic: str
    records: list[RecordOut]
    # Per partition read: the offset to commit to move past the records answered.
    positions: list[PartitionOffset]
    committed: bool


class ViewEvent(BaseModel):
    """The value of a record of the views topic (see aggregator.py)."""

    content_id: Annotated[str, Field(min_length=1, max_length=256)]
    user_id: str | int | None = None
    ts: datetime | None = None


class WindowOut(BaseModel):
    content_id: str
    window_start: datetime
    window_end: datetime
    count: int
    late: int
    final: bool


class ViewsResponse(BaseModel):
    topic: str
    window_seconds: int
    allowed_lateness_seconds: float
    watermark: datetime | None
    windows: list[WindowOut]


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a date-time without a zone is read as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
