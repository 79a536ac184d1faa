"""The views job over a real log and store: counts per content per minute, the late rule,
and exactly-once counting across restarts."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servicekit.metrics import ServiceMetrics
from streaming.aggregation_store import AggregationStore
from streaming.aggregator import ViewsJob, parse_view
from streaming.broker import Broker
from streaming.groups import GroupOffsets
from streaming.log import Log
from streaming.metrics import StreamingMetrics
from streaming.records import Record

T0 = 1_700_000_040_000  # a minute boundary
MINUTE = 60_000


class World:
    """A log, groups, store and job on one data directory, as the app wires them."""

    def __init__(self, root: Path, batch_records: int = 500) -> None:
        self.log = Log(root, segment_bytes=1 << 20, index_interval_bytes=4096, fsync=True)
        self.log.recover()
        self.groups = GroupOffsets(root, fsync=True)
        self.groups.recover()
        self.metrics = ServiceMetrics("streaming", "test")
        self.broker = Broker(self.log, self.groups,
                             StreamingMetrics(self.metrics, self.log, self.groups),
                             fetch_max_bytes=1 << 20, reserved_groups={"views-aggregator"})
        self.store = AggregationStore(root / "views.sqlite3", fsync=True)
        self.store.open()
        self.job = ViewsJob(self.broker, self.store, topic="views", partitions=2,
                            allowed_lateness_ms=30_000, retention_ms=7 * 24 * 3600_000,
                            batch_records=batch_records)
        self.job.start()

    def view(self, content_id: str, event_ms: int) -> None:
        value = json.dumps({"content_id": content_id, "ts": event_ms}).encode()
        self.broker.produce("views", [(content_id, value, None)])

    def drain(self) -> None:
        while self.job.run_batch():
            pass

    def counts(self) -> dict[tuple[str, int], tuple[int, int]]:
        return {(w.content_id, w.window_start_ms): (w.count, w.late)
                for w in self.store.windows(None, None, None, 1000)}

    def close(self) -> None:
        self.store.close()
        self.log.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_views_are_counted_per_content_per_minute(world: World) -> None:
    for content_id, at in [("a", T0), ("a", T0 + 59_000), ("b", T0 + 1), ("a", T0 + MINUTE)]:
        world.view(content_id, at)
    world.drain()
    assert world.counts() == {("a", T0): (2, 0), ("b", T0): (1, 0), ("a", T0 + MINUTE): (1, 0)}


def test_an_event_behind_the_watermark_is_late_and_leaves_the_final_count_alone(
        world: World) -> None:
    world.view("a", T0 + 10_000)
    world.drain()
    world.view("a", T0 + MINUTE + 45_000)  # watermark T0 + 75 s: [T0, T0+60 s) is final
    world.drain()
    world.view("a", T0 + 50_000)
    world.drain()
    assert world.counts()[("a", T0)] == (1, 1)
    assert world.metrics.registry.get_sample_value(
        "streaming_late_events_total", {"topic": "views", "version": "test"}) == 1


def test_an_out_of_order_event_within_the_lateness_is_counted(world: World) -> None:
    world.view("a", T0 + MINUTE + 20_000)  # watermark T0 + 50 s: [T0, T0+60 s) still open
    world.drain()
    world.view("a", T0 + 55_000)
    world.drain()
    assert world.counts()[("a", T0)] == (1, 0)


def test_a_restarted_job_resumes_without_counting_twice(tmp_path: Path) -> None:
    first = World(tmp_path)
    for n in range(10):
        first.view("a", T0 + n)
    first.drain()
    first.close()
    second = World(tmp_path)
    assert second.job.caught_up
    second.view("a", T0 + 20)
    second.drain()
    assert second.counts() == {("a", T0): (11, 0)}
    assert second.job.watermark_ms == T0 + 20 - 30_000


def test_readiness_waits_for_the_backlog_found_at_startup(tmp_path: Path) -> None:
    first = World(tmp_path, batch_records=2)
    for n in range(5):
        first.view("a", T0 + n)
    first.close()
    second = World(tmp_path, batch_records=2)
    assert not second.job.caught_up
    second.drain()
    assert second.job.caught_up
    assert second.counts() == {("a", T0): (5, 0)}


def test_records_that_are_not_views_are_skipped_and_counted(world: World) -> None:
    world.broker.produce("views", [(None, b'{"user_id": 7}', None), (None, b"[1]", None)])
    world.view("a", T0)
    world.drain()
    assert world.counts() == {("a", T0): (1, 0)}
    assert world.metrics.registry.get_sample_value(
        "streaming_invalid_view_events_total", {"topic": "views", "version": "test"}) == 2


def test_the_jobs_position_is_visible_as_its_consumer_group(world: World) -> None:
    world.view("a", T0)
    world.drain()
    assert sum(world.groups.committed("views-aggregator", "views").values()) == 1


@pytest.mark.parametrize(("ts", "expected_ms"), [
    ("2023-11-14T22:14:00Z", T0),
    ("2023-11-14T22:14:00", T0),  # no zone: UTC
    ("2023-11-14T23:14:00+01:00", T0),
    (T0 // 1000, T0),  # Unix seconds
    (T0, T0),  # Unix milliseconds
])
def test_event_time_is_read_from_ts_in_any_common_form(ts: object, expected_ms: int) -> None:
    record = Record(0, 5, None, json.dumps({"content_id": "a", "ts": ts}).encode())
    assert parse_view(record) == ("a", expected_ms)


def test_without_ts_the_records_timestamp_is_the_event_time() -> None:
    assert parse_view(Record(0, T0, None, b'{"content_id": "a"}')) == ("a", T0)


def test_t0_is_the_minute_boundary_the_tests_assume() -> None:
    assert datetime.fromtimestamp(T0 / 1000, UTC).second == 0
