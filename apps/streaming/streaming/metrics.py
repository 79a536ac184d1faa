"""Streaming's own series, beside servicekit's request metrics on the same registry:

- `streaming_records_produced_total{topic,version}` and
  `streaming_records_consumed_total{topic,version}` (records answered to readers,
  the views job included);
- `streaming_log_end_offset{topic,partition,version}`: the next offset to be written;
- `streaming_consumer_lag{group,topic,partition,version}`: end offset minus the group's
  committed offset, for every partition a group has committed;
- `streaming_late_events_total{topic,version}`: events that arrived after their window
  was final; `streaming_invalid_view_events_total{topic,version}`: records the views
  job could not read as a view;
- `streaming_aggregation_watermark_seconds{topic,version}`.

Offsets and lag are read from the log and the groups at scrape time, so they can never
drift from them, and a topic or group that appears at run time gets its series at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from servicekit.metrics import ServiceMetrics

from streaming.groups import GroupOffsets
from streaming.log import Log

__all__ = ["StreamingMetrics"]


class StreamingMetrics:
    def __init__(self, metrics: ServiceMetrics, log: Log, groups: GroupOffsets) -> None:
        self.version = metrics.version
        self.produced: Counter = metrics.counter(
            "records_produced", "Records appended to the log, by topic.", ["topic"])
        self.consumed: Counter = metrics.counter(
            "records_consumed", "Records read from the log, by topic.", ["topic"])
        self.late: Counter = metrics.counter(
            "late_events", "View events that arrived after their window was final.",
            ["topic"])
        self.invalid: Counter = metrics.counter(
            "invalid_view_events", "Records of the views topic that are not view events.",
            ["topic"])
        self.watermark: Gauge = metrics.gauge(
            "aggregation_watermark_seconds",
            "The views job's watermark (Unix time): windows ending before it are final.",
            ["topic"])
        metrics.registry.register(_OffsetsCollector(metrics.prefix, self.version, log, groups))

    def watch_topic(self, topic: str) -> None:
        """Materialise the zero series of the views topic so rate() works from the start."""
        for counter in (self.produced, self.consumed, self.late, self.invalid):
            counter.labels(topic=topic, version=self.version)

    def records_produced(self, topic: str, count: int) -> None:
        self.produced.labels(topic=topic, version=self.version).inc(count)

    def records_consumed(self, topic: str, count: int) -> None:
        if count:
            self.consumed.labels(topic=topic, version=self.version).inc(count)

    def late_events(self, topic: str, count: int) -> None:
        if count:
            self.late.labels(topic=topic, version=self.version).inc(count)

    def invalid_events(self, topic: str, count: int) -> None:
        if count:
            self.invalid.labels(topic=topic, version=self.version).inc(count)

    def watermark_at(self, topic: str, watermark_ms: int) -> None:
        self.watermark.labels(topic=topic, version=self.version).set(watermark_ms / 1000)


class _OffsetsCollector(Collector):
    """Log end offsets and consumer lag, computed from memory at each scrape (no I/O)."""

    def __init__(self, prefix: str, version: str, log: Log, groups: GroupOffsets) -> None:
        self.prefix = prefix
        self.version = version
        self.log = log
        self.groups = groups

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ends = GaugeMetricFamily(f"{self.prefix}_log_end_offset",
                                 "The offset the next record of a partition will get.",
                                 labels=["topic", "partition", "version"])
        end_offsets: dict[tuple[str, int], int] = {}
        for topic in self.log.topics():
            for number, partition in enumerate(topic.partitions):
                end_offsets[topic.name, number] = partition.end_offset
                ends.add_metric([topic.name, str(number), self.version], partition.end_offset)
        yield ends
        lag = GaugeMetricFamily(f"{self.prefix}_consumer_lag",
                                "Records of a partition a consumer group has not committed.",
                                labels=["group", "topic", "partition", "version"])
        for group, offsets in sorted(self.groups.snapshot().items()):
            for topic_name, partitions in sorted(offsets.items()):
                for number, committed in sorted(partitions.items()):
                    end = end_offsets.get((topic_name, number))
                    if end is not None:
                        lag.add_metric([group, topic_name, str(number), self.version],
                                       max(end - committed, 0))
        yield lag
