"""The built-in views job (Flink's role): views per content per minute, in tumbling
one-minute windows by event time, read from the views topic through the log.

Each batch reads up to `batch_records` records from every partition with records left,
applies the late rule of windows.py against the watermark the batch started with, then
commits, in one SQLite transaction, the window changes, the offsets after the batch and
the new watermark (aggregation_store.py). Window counts are therefore exactly-once: a
restart resumes from the offsets committed with the state, so no record is counted twice
or skipped. The offsets are then also committed as consumer group `<topic>-aggregator`,
which makes the job's lag visible like any consumer's; the store's copy is the one the
job resumes from.

A view event is a record whose value is a JSON object {content_id, user_id?, ts?}; `ts`
is ISO 8601 (UTC unless it says otherwise) or Unix time in seconds (milliseconds if
above 2e10, pydantic's rule); without `ts` the record's timestamp is the event time.
Anything else is skipped and counted as invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import ValidationError

from streaming.aggregation_store import AggregationStore, JobCheckpoint
from streaming.broker import Broker
from streaming.log import TopicExistsError, UnknownTopicError
from streaming.records import Record
from streaming.schemas import ViewEvent, to_ms
from streaming.windows import PartitionProgress, WindowChanges, next_watermark

__all__ = ["ViewsJob", "parse_view"]

logger = logging.getLogger(__name__)


def parse_view(record: Record) -> tuple[str, int] | None:
    """(content id, event time in ms) of a view record, or None if it is not one."""
    try:
        event = ViewEvent.model_validate_json(record.value)
    except ValidationError:
        return None
    return event.content_id, record.timestamp_ms if event.ts is None else to_ms(event.ts)


class ViewsJob:
    """Consumes `topic` into `store`. `start` (blocking) loads the checkpoint and notes the
    end offsets to catch up to; `caught_up` turns true once the job has read up to them
    (readiness waits for it); `run` processes batches until told to stop."""

    def __init__(self, broker: Broker, store: AggregationStore, *, topic: str,
                 partitions: int, allowed_lateness_ms: int, retention_ms: int,
                 batch_records: int = 500) -> None:
        self.broker = broker
        self.store = store
        self.topic = topic
        self.partitions = partitions
        self.allowed_lateness_ms = allowed_lateness_ms
        self.retention_ms = retention_ms
        self.batch_records = batch_records
        self.group = f"{topic}-aggregator"
        self.watermark_ms: int | None = None
        self.caught_up = False
        self._next: dict[int, int] = {}
        self._max_event: dict[int, int | None] = {}
        self._targets: dict[int, int] = {}

    def start(self) -> None:
        """Create the topic if it is missing, resume from the stored checkpoint, and note
        how far the log reaches now: the job is caught up once it has read that far."""
        with contextlib.suppress(TopicExistsError):
            self.broker.log.create_topic(self.topic, self.partitions)
        topic = self.broker.log.topic(self.topic)
        checkpoint = self.store.checkpoint()
        self.watermark_ms = checkpoint.watermark_ms
        for number, partition in enumerate(topic.partitions):
            stored = checkpoint.next_offsets.get(number, partition.start_offset)
            if stored > partition.end_offset:
                logger.warning(
                    "views job: partition %d ends at %d but the job had read up to %d; the "
                    "log lost its tail (FSYNC_POLICY=never?); its counts stay", number,
                    partition.end_offset, stored)
            self._next[number] = min(max(stored, partition.start_offset), partition.end_offset)
            self._max_event[number] = checkpoint.max_event_ms.get(number)
            self._targets[number] = partition.end_offset
        self._check_caught_up()
        backlog = sum(self._targets[n] - self._next[n] for n in self._targets)
        logger.info("views job on %s: resuming with %d record(s) to catch up on", self.topic,
                    backlog)

    def has_backlog(self) -> bool:
        try:
            partitions = self.broker.log.topic(self.topic).partitions
        except UnknownTopicError:
            return False
        return any(self._next.get(n, 0) < p.end_offset for n, p in enumerate(partitions))

    def run_batch(self) -> int:
        """Read, aggregate and commit one batch; return how many records it read.
        Blocking; call it from a worker thread. On an error nothing is committed and the
        job's position is unchanged, so the next batch reads the same records again."""
        changes = WindowChanges(self.watermark_ms)
        next_offsets = dict(self._next)
        max_event = dict(self._max_event)
        progress: dict[int, PartitionProgress] = {}
        read = invalid = 0
        for number in sorted(next_offsets):
            result = self.broker.fetch(self.topic, number, next_offsets[number],
                                       self.batch_records)
            for record in result.records:
                view = parse_view(record)
                if view is None:
                    invalid += 1
                    continue
                content_id, event_ms = view
                changes.observe(content_id, event_ms)
                seen = max_event[number]
                max_event[number] = event_ms if seen is None else max(seen, event_ms)
            next_offsets[number] = result.next_offset
            progress[number] = PartitionProgress(max_event[number],
                                                 result.next_offset >= result.end_offset)
            read += len(result.records)
        if not read:
            return 0
        watermark = next_watermark(self.watermark_ms, progress, self.allowed_lateness_ms)
        expire = None if watermark is None else watermark - self.retention_ms
        self.store.commit_batch(changes, JobCheckpoint(next_offsets, max_event, watermark),
                                expire)
        self._next, self._max_event, self.watermark_ms = next_offsets, max_event, watermark
        metrics = self.broker.metrics
        metrics.late_events(self.topic, changes.late_total)
        metrics.invalid_events(self.topic, invalid)
        if watermark is not None:
            metrics.watermark_at(self.topic, watermark)
        try:
            self.broker.commit(self.group, self.topic, next_offsets, internal=True)
        except Exception:  # the store holds the real position; this copy is for show
            logger.exception("views job: mirroring offsets to group %s failed", self.group)
        self._check_caught_up()
        return read

    async def run(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Process batches until `stop` is set; finish the batch under way first, so the
        store is never closed under it. A failing batch is logged and retried."""
        while not stop.is_set():
            pause = poll_seconds
            try:
                read = await asyncio.to_thread(self.run_batch) if self.has_backlog() else 0
            except Exception:
                logger.exception("views job: batch failed; retrying in 1 s")
                read, pause = 0, 1.0
            if not read:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

    def _check_caught_up(self) -> None:
        if not self.caught_up and all(self._next[n] >= t for n, t in self._targets.items()):
            self.caught_up = True
            logger.info("views job on %s caught up", self.topic)
