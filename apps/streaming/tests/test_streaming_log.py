"""The log on real files: order, offsets, segments and indexes, and recovery after a
restart or a crash (a torn last write is cut off; damage elsewhere is refused)."""

import json
import threading
from pathlib import Path

import pytest
from streaming.log import Log, OffsetOutOfRange, TopicExistsError, UnknownTopicError
from streaming.records import Record, encode_record
from streaming.segment import CorruptLogError


def open_log(root: Path, *, segment_bytes: int = 1 << 20, index_interval_bytes: int = 4096,
             now: float = 1_700_000_000.0) -> Log:
    log = Log(root, segment_bytes=segment_bytes, index_interval_bytes=index_interval_bytes,
              fsync=True, clock=lambda: now)
    log.recover()
    return log


def values(n: int, key: str | None = "k") -> list[tuple[str | None, bytes, int | None]]:
    return [(key, json.dumps({"n": i}).encode(), None) for i in range(n)]


def read_all(log: Log, topic: str = "t", partition: int = 0) -> list[Record]:
    return log.read(topic, partition, 0, 100_000, 1 << 30).records


def partition_dir(root: Path, topic: str = "t", partition: int = 0) -> Path:
    return root / "topics" / topic / str(partition)


def test_records_of_one_key_are_read_back_in_order_with_contiguous_offsets(
        tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.create_topic("t", 1)
    appended = log.append("t", values(5))
    assert [a.offset for a in appended] == [0, 1, 2, 3, 4]
    assert [json.loads(r.value)["n"] for r in read_all(log)] == [0, 1, 2, 3, 4]
    assert {a.timestamp_ms for a in appended} == {1_700_000_000_000}


def test_a_record_keeps_the_timestamp_it_was_given(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.create_topic("t", 1)
    log.append("t", [("k", b"1", 42)])
    assert read_all(log)[0].timestamp_ms == 42


def test_reads_cross_segments_after_the_active_one_rolls(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=200, index_interval_bytes=64)
    log.create_topic("t", 1)
    for _ in range(10):
        log.append("t", values(3))
    directory = partition_dir(tmp_path)
    assert len(list(directory.glob("*.log"))) > 3
    assert len(list(directory.glob("*.index"))) == len(list(directory.glob("*.log"))) - 1
    records = read_all(log)
    assert [r.offset for r in records] == list(range(30))
    for offset in range(30):  # every offset is found through the sparse index
        assert log.read("t", 0, offset, 1, 1 << 20).records[0].offset == offset


def test_a_read_stops_at_max_bytes_but_answers_at_least_one_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.create_topic("t", 1)
    log.append("t", values(10))
    one_frame = len(encode_record(read_all(log)[0]))
    assert len(log.read("t", 0, 0, 100, 1).records) == 1
    assert len(log.read("t", 0, 0, 100, 3 * one_frame).records) == 3


def test_reading_at_the_end_answers_nothing_and_past_it_is_out_of_range(
        tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.create_topic("t", 1)
    log.append("t", values(2))
    assert log.read("t", 0, 2, 10, 1 << 20).records == []
    with pytest.raises(OffsetOutOfRange) as raised:
        log.read("t", 0, 3, 10, 1 << 20)
    assert (raised.value.start_offset, raised.value.end_offset) == (0, 2)


def test_everything_is_read_back_after_a_restart(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=300, index_interval_bytes=100)
    log.create_topic("t", 2)
    log.append("t", values(20, key="a") + values(20, key="b"))
    before = {p: read_all(log, partition=p) for p in (0, 1)}
    log.close()
    reopened = open_log(tmp_path, segment_bytes=300, index_interval_bytes=100)
    assert {p: read_all(reopened, partition=p) for p in (0, 1)} == before
    assert reopened.append("t", [("a", b"1", None)])[0].offset == len(
        before[reopened.topic("t").partition_for("a")])


def test_a_torn_last_write_is_cut_off_at_recovery(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.create_topic("t", 1)
    log.append("t", values(3))
    log.close()
    segment = partition_dir(tmp_path) / f"{0:020d}.log"
    whole = segment.stat().st_size
    torn = encode_record(Record(3, 0, "k", b'{"n":3}'))[:-4]
    with open(segment, "ab") as file:
        file.write(torn)
    reopened = open_log(tmp_path)
    assert segment.stat().st_size == whole
    assert [r.offset for r in read_all(reopened)] == [0, 1, 2]
    assert reopened.append("t", values(1))[0].offset == 3
    assert [r.offset for r in read_all(reopened)] == [0, 1, 2, 3]


def test_garbage_after_the_last_record_is_cut_off_at_recovery(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.create_topic("t", 1)
    log.append("t", values(2))
    log.close()
    with open(partition_dir(tmp_path) / f"{0:020d}.log", "ab") as file:
        file.write(bytes(100))  # what a crash can leave: a size extended, no data
    assert [r.offset for r in read_all(open_log(tmp_path))] == [0, 1]


def test_damage_inside_a_sealed_segment_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=100)
    log.create_topic("t", 1)
    for _ in range(5):
        log.append("t", values(2))
    log.close()
    sealed = partition_dir(tmp_path) / f"{0:020d}.log"
    data = bytearray(sealed.read_bytes())
    data[-1] ^= 0xFF
    sealed.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match=f"{0:020d}.log"):
        open_log(tmp_path, segment_bytes=100)


def test_a_damaged_index_file_is_rebuilt(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=300, index_interval_bytes=50)
    log.create_topic("t", 1)
    for _ in range(10):
        log.append("t", values(2))
    log.close()
    index = partition_dir(tmp_path) / f"{0:020d}.index"
    intact = index.read_bytes()
    index.write_bytes(intact[:-3])
    reopened = open_log(tmp_path, segment_bytes=300, index_interval_bytes=50)
    assert [r.offset for r in read_all(reopened)] == list(range(20))
    assert index.read_bytes() == intact


def test_a_topic_whose_creation_was_interrupted_is_removed(tmp_path: Path) -> None:
    (tmp_path / "topics" / ".creating-t-1234abcd" / "0").mkdir(parents=True)
    log = open_log(tmp_path)
    assert log.topics() == []
    assert not (tmp_path / "topics" / ".creating-t-1234abcd").exists()


def test_creating_an_existing_topic_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.create_topic("t", 2)
    with pytest.raises(TopicExistsError, match="2 partition"):
        log.create_topic("t", 3)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "-x", "x" * 128, "sp ace"])
def test_unsafe_topic_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        open_log(tmp_path).create_topic(name, 1)


def test_an_unknown_topic_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownTopicError, match="'nope'"):
        open_log(tmp_path).append("nope", values(1))


def test_concurrent_appends_get_distinct_contiguous_offsets_in_each_writers_order(
        tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=2000, index_interval_bytes=100)
    log.create_topic("t", 1)
    start = threading.Barrier(20)

    def produce(writer: int) -> None:
        start.wait()
        for n in range(10):
            log.append("t", [("k", json.dumps([writer, n]).encode(), None)])

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = read_all(log)
    assert [r.offset for r in records] == list(range(200))
    for writer in range(20):
        mine = [json.loads(r.value)[1] for r in records if json.loads(r.value)[0] == writer]
        assert mine == list(range(10))
