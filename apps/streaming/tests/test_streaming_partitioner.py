"""Keys land on the partition Kafka's default partitioner would choose, in every process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from streaming.partitioner import RoundRobin, murmur2, partition_for_key

APP_DIR = Path(__file__).resolve().parents[1]

# Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest).
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2.items())
def test_murmur2_matches_kafkas_test_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_the_partition_is_the_positive_hash_modulo_the_partition_count() -> None:
    assert partition_for_key("foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7


def test_a_key_maps_to_the_same_partition_in_another_process_with_another_hash_seed() -> None:
    keys = [f"user-{n}" for n in range(50)]
    here = [partition_for_key(key, 12) for key in keys]
    code = ("from streaming.partitioner import partition_for_key; "
            f"print([partition_for_key(k, 12) for k in {keys!r}])")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": "12345",
                                            "PYTHONPATH": str(APP_DIR)}).stdout
    assert there.strip() == str(here)


def test_keys_spread_over_every_partition() -> None:
    assert {partition_for_key(f"content-{n}", 8) for n in range(200)} == set(range(8))


def test_non_ascii_keys_hash_their_utf8_bytes() -> None:
    assert partition_for_key("café", 5) == (murmur2("café".encode()) & 0x7FFFFFFF) % 5


def test_round_robin_takes_each_partition_in_turn() -> None:
    turns = RoundRobin(3)
    assert [turns.next_partition() for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
