"""Consumer groups over the log: commits are validated and durable, and a group fetch
reads from the committed offsets across partitions."""

import json
from pathlib import Path

import pytest
from servicekit.metrics import ServiceMetrics
from streaming.broker import Broker, ReservedGroupError
from streaming.groups import GroupOffsets
from streaming.log import BadPartitionError, Log, OffsetOutOfRange
from streaming.metrics import StreamingMetrics


def open_broker(root: Path) -> Broker:
    log = Log(root, segment_bytes=1 << 20, index_interval_bytes=4096, fsync=True)
    log.recover()
    groups = GroupOffsets(root, fsync=True)
    groups.recover()
    metrics = StreamingMetrics(ServiceMetrics("streaming", "test"), log, groups)
    return Broker(log, groups, metrics, fetch_max_bytes=1 << 20,
                  reserved_groups={"views-aggregator"})


@pytest.fixture
def broker(tmp_path: Path) -> Broker:
    broker = open_broker(tmp_path)
    broker.log.create_topic("t", 3)
    return broker


def produce(broker: Broker, key: str, count: int) -> int:
    """Produce `count` records with `key`; return their partition."""
    appended = broker.produce("t", [(key, json.dumps(n).encode(), None) for n in range(count)])
    return appended[0].partition


def test_a_commit_survives_a_restart(tmp_path: Path, broker: Broker) -> None:
    partition = produce(broker, "a", 3)
    broker.commit("g", "t", {partition: 2})
    broker.log.close()
    reopened = open_broker(tmp_path)
    assert reopened.groups.committed("g", "t") == {partition: 2}


def test_a_commit_keeps_the_groups_other_partitions(broker: Broker) -> None:
    produce(broker, "a", 3)
    produce(broker, "b", 3)
    broker.commit("g", "t", {0: 0, 1: 0, 2: 0})
    broker.commit("g", "t", {1: 0})
    assert set(broker.groups.committed("g", "t")) == {0, 1, 2}


def test_a_commit_past_the_end_is_refused_with_the_valid_range(broker: Broker) -> None:
    partition = produce(broker, "a", 3)
    with pytest.raises(OffsetOutOfRange, match="0 to 2"):
        broker.commit("g", "t", {partition: 4})
    assert broker.groups.committed("g", "t") == {}


def test_a_commit_to_a_missing_partition_is_refused(broker: Broker) -> None:
    with pytest.raises(BadPartitionError, match="partitions 0 to 2"):
        broker.commit("g", "t", {3: 0})


def test_the_views_jobs_group_cannot_be_moved_by_clients(broker: Broker) -> None:
    with pytest.raises(ReservedGroupError):
        broker.commit("views-aggregator", "t", {0: 0})


def test_positions_show_lag_per_partition_and_none_where_nothing_is_committed(
        broker: Broker) -> None:
    partition = produce(broker, "a", 5)
    broker.commit("g", "t", {partition: 2})
    positions = {p.partition: p for p in broker.positions("g", "t")}
    assert positions[partition].lag == 3
    assert all(p.committed is None and p.lag is None
               for n, p in positions.items() if n != partition)


def test_a_group_fetch_reads_from_the_committed_offsets(broker: Broker) -> None:
    partition = produce(broker, "a", 5)
    broker.commit("g", "t", {partition: 3})
    fetched = broker.fetch_for_group("g", "t", 10)
    assert [(p, r.offset) for p, r in fetched.records] == [(partition, 3), (partition, 4)]
    assert fetched.positions == {partition: 5}
    assert not fetched.committed


def test_a_group_fetch_does_not_move_the_group_unless_asked(broker: Broker) -> None:
    produce(broker, "a", 2)
    assert len(broker.fetch_for_group("g", "t", 10).records) == 2
    assert len(broker.fetch_for_group("g", "t", 10, commit=True).records) == 2
    assert broker.fetch_for_group("g", "t", 10).records == []


def test_a_group_fetch_starts_with_the_next_partition_each_time(broker: Broker) -> None:
    for key in ("a", "b", "c", "d", "e", "f"):
        produce(broker, key, 5)
    firsts = [broker.fetch_for_group("g", "t", 1).records[0][0] for _ in range(3)]
    assert sorted(firsts) == [0, 1, 2]
