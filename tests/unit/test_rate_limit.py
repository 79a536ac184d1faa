"""A token bucket per source address, with bounded memory; time is passed in."""

from __future__ import annotations

import pytest

from shipyard.domain.client_address import client_key
from shipyard.domain.rate_limit import TokenBuckets, retry_after


def test_a_burst_goes_through_then_the_next_call_waits_for_a_token() -> None:
    buckets = TokenBuckets(rate_per_second=2, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("a", 0.25) == pytest.approx(0.25)  # a refused call costs nothing
    assert buckets.take("a", 0.5) == 0
    assert buckets.take("a", 0.5) == pytest.approx(0.5)


def test_sources_are_counted_apart() -> None:
    buckets = TokenBuckets(rate_per_second=1, burst=1)
    assert buckets.take("a", 0) == 0
    assert buckets.take("a", 0) > 0
    assert buckets.take("b", 0) == 0


def test_a_bucket_refills_only_up_to_its_burst() -> None:
    buckets = TokenBuckets(rate_per_second=10, burst=2)
    buckets.take("a", 0)
    buckets.take("b", 0)  # keeps a full "a" from being forgotten at once
    assert [buckets.take("a", 1000) for _ in range(3)][2] > 0


def test_full_buckets_are_forgotten_so_idle_sources_cost_no_memory() -> None:
    buckets = TokenBuckets(rate_per_second=1, burst=5)
    for n in range(100):
        buckets.take(f"10.0.0.{n}", 0)
    assert len(buckets) == 100
    buckets.take("10.0.1.1", 10)  # five seconds refill every earlier bucket
    assert len(buckets) == 1


def test_memory_is_bounded_by_forgetting_the_least_recently_seen() -> None:
    buckets = TokenBuckets(rate_per_second=0.001, burst=1, max_sources=3)
    for n in range(10):
        buckets.take(f"s{n}", n)
    assert len(buckets) == 3
    assert buckets.take("s9", 10) > 0  # the recent ones are still counted
    assert buckets.take("s0", 10) == 0  # a forgotten one starts full, no worse


def test_a_limit_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError, match="rate above 0"):
        TokenBuckets(rate_per_second=0, burst=1)


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (1.0, 1), (1.2, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: int) -> None:
    assert retry_after(wait) == header


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("unix-socket", "unix-socket"),
    (None, "unknown"),
])
def test_an_ipv6_source_is_counted_by_its_64_and_others_as_they_are(
        address: str | None, key: str) -> None:
    assert client_key(address) == key
