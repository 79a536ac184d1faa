"""Registry logic against a fake clock: time only moves when a test moves it."""

import sys
import threading

import pytest
from discovery.registry import Action, Registry, Status, UnknownInstanceError
from servicekit.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    return Registry(clock, lease_seconds=30)


def test_registered_instance_is_listed_under_its_app(registry: Registry) -> None:
    registry.register("orders", "orders-1", "10.0.0.1", 8080, Status.UP, {"zone": "a"})
    [instance] = registry.instances_of("orders")
    assert (instance.host, instance.port, dict(instance.metadata)) == (
        "10.0.0.1",
        8080,
        {"zone": "a"},
    )


def test_instance_survives_until_lease_ends(registry: Registry, clock: FakeClock) -> None:
    registry.register("orders", "orders-1", "10.0.0.1", 8080)
    clock.now += 30
    assert registry.evict_expired() == ()


def test_instance_is_evicted_once_lease_has_passed(registry: Registry, clock: FakeClock) -> None:
    registry.register("orders", "orders-1", "10.0.0.1", 8080)
    clock.now += 30.001
    assert [i.instance_id for i in registry.evict_expired()] == ["orders-1"]
    assert registry.instances_of("orders") == ()


def test_renewing_keeps_an_instance_past_its_first_lease(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register("orders", "orders-1", "10.0.0.1", 8080)
    clock.now += 20
    registry.renew("orders", "orders-1")
    clock.now += 20
    registry.evict_expired()
    assert registry.count() == 1


def test_renewing_an_unknown_instance_raises(registry: Registry) -> None:
    with pytest.raises(UnknownInstanceError, match="orders-9"):
        registry.renew("orders", "orders-9")


def test_cancel_removes_the_instance(registry: Registry) -> None:
    registry.register("orders", "orders-1", "10.0.0.1", 8080)
    registry.cancel("orders", "orders-1")
    assert registry.snapshot().apps == {}


def test_every_change_bumps_the_version_and_heartbeats_do_not(registry: Registry) -> None:
    registry.register("orders", "orders-1", "10.0.0.1", 8080)
    registry.register("orders", "orders-1", "10.0.0.1", 8080, Status.DOWN)
    registry.renew("orders", "orders-1")
    registry.cancel("orders", "orders-1")
    assert registry.version == 3


def test_delta_lists_only_changes_after_the_given_version(registry: Registry) -> None:
    registry.register("orders", "orders-1", "10.0.0.1", 8080)
    registry.register("orders", "orders-2", "10.0.0.2", 8080)
    registry.cancel("orders", "orders-1")
    delta = registry.delta(since=1)
    assert [(c.version, c.action, c.instance.instance_id) for c in delta.changes] == [
        (2, Action.ADDED, "orders-2"),
        (3, Action.DELETED, "orders-1"),
    ]
    assert not delta.full_refresh_required


def test_delta_asks_for_a_full_refresh_when_since_is_older_than_the_log(clock: FakeClock) -> None:
    registry = Registry(clock, max_changes=2)
    for n in range(3):
        registry.register("orders", f"orders-{n}", "10.0.0.1", 8080)
    assert registry.delta(since=0).full_refresh_required
    assert not registry.delta(since=1).full_refresh_required


def test_delta_asks_for_a_full_refresh_for_another_epoch(registry: Registry) -> None:
    assert registry.delta(since=0, epoch="from-another-replica").full_refresh_required


def test_delta_asks_for_a_full_refresh_when_since_is_ahead(registry: Registry) -> None:
    assert registry.delta(since=5).full_refresh_required


def test_concurrent_changes_are_logged_once_each_in_version_order(registry: Registry) -> None:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to provoke races

    def register_many(worker: int) -> None:
        for n in range(500):
            registry.register("orders", f"w{worker}-{n}", "10.0.0.1", 8080)

    threads = [threading.Thread(target=register_many, args=(w,)) for w in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    versions = [change.version for change in registry.delta(since=3000).changes]
    assert versions == list(range(3001, 4001))
