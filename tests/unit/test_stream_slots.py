"""Live-update streams counted per identity and in all; who counts as one identity."""

from __future__ import annotations

import pytest

from shipyard.domain.stream_slots import StreamSlots, TooManyStreams, stream_identity


def test_an_identity_may_hold_its_limit_and_the_next_stream_is_refused_naming_it() -> None:
    slots = StreamSlots(per_identity=3)
    for _ in range(3):
        slots.take("user:vera")
    with pytest.raises(TooManyStreams) as refused:
        slots.take("user:vera")
    assert (refused.value.scope, refused.value.limit) == ("identity", 3)
    assert "SHIPYARD_UI_STREAMS_PER_IDENTITY=3" in str(refused.value)
    assert "close other tabs or streams" in str(refused.value)
    assert (slots.held("user:vera"), len(slots)) == (3, 3)  # the refusal took nothing


def test_a_closed_stream_frees_its_slot_at_once() -> None:
    slots = StreamSlots(per_identity=2)
    first = slots.take("user:vera")
    slots.take("user:vera")
    slots.give_back(first)
    slots.take("user:vera")
    assert slots.held("user:vera") == 2


def test_a_close_noticed_twice_frees_one_slot_not_two() -> None:
    slots = StreamSlots(per_identity=2)
    first = slots.take("user:vera")
    slots.take("user:vera")
    slots.give_back(first)
    slots.give_back(first)
    assert slots.held("user:vera") == 1
    slots.take("user:vera")
    with pytest.raises(TooManyStreams):
        slots.take("user:vera")


def test_identities_are_counted_apart() -> None:
    slots = StreamSlots(per_identity=1)
    slots.take("user:vera")
    slots.take("user:dave")
    with pytest.raises(TooManyStreams):
        slots.take("user:vera")


def test_the_process_holds_at_most_its_total_whoever_asks() -> None:
    slots = StreamSlots(per_identity=2, total=3)
    for identity in ("a", "b", "c"):
        slots.take(identity)
    with pytest.raises(TooManyStreams) as refused:
        slots.take("d")
    assert (refused.value.scope, refused.value.limit) == ("total", 3)
    assert "try again in a while" in str(refused.value)


def test_an_identity_holding_nothing_is_forgotten() -> None:
    slots = StreamSlots(per_identity=2)
    slot = slots.take("address:192.0.2.7")
    slots.give_back(slot)
    assert (len(slots), slots._held) == (0, {})


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        StreamSlots(per_identity=0)
    with pytest.raises(ValueError, match="at least 1"):
        StreamSlots(per_identity=1, total=0)


def test_a_user_counts_once_over_all_sessions_a_token_on_its_own() -> None:
    assert stream_identity("session", "vera", "session:aaa", "192.0.2.7") == "user:vera"
    assert stream_identity("session", "vera", "session:bbb", "198.51.100.1") == "user:vera"
    assert stream_identity("token", "vera", "token:ccc", "192.0.2.7") == \
        "token:vera:token:ccc"
    assert stream_identity("token", "vera", "token:ddd", "192.0.2.7") != \
        stream_identity("token", "vera", "token:ccc", "192.0.2.7")


def test_anonymous_viewers_count_by_address_an_ipv6_host_by_its_64() -> None:
    assert stream_identity("anonymous", "anonymous", None, "192.0.2.7") == \
        "address:192.0.2.7"
    assert stream_identity("anonymous", "anonymous", None, "2001:db8::1") == \
        stream_identity("anonymous", "anonymous", None, "2001:db8::ffff") == \
        "address:2001:db8::/64"
    assert stream_identity("anonymous", "anonymous", None, None) == "address:unknown"
