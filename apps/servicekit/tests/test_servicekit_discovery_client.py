"""The discovery client's logic with plain data and a scripted transport.

The same client against a real discovery server is tested in apps/discovery/tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from servicekit.discovery_client import (
    DiscoveryClient,
    Instance,
    Outcome,
    Registrar,
    Registration,
    RegistryCache,
    discovery_lifespan,
    replica_urls,
)
from servicekit.testing import config_for_tests

ORDERS = Registration("orders", "orders-1", "10.0.0.1", 8080, {"version": "1.0"})


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], Any]:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"{host}: Name or service not known")
        return table[host]

    return resolve


def instance_json(instance_id: str, status: str = "UP", app: str = "orders") -> dict[str, Any]:
    return {"app": app, "instance_id": instance_id, "host": "10.0.0.1", "port": 8080,
            "status": status, "metadata": {}}


def change(version: int, action: str, instance_id: str) -> dict[str, Any]:
    return {"version": version, "action": action, "instance": instance_json(instance_id)}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# Fan-out targets

def test_a_headless_service_name_becomes_one_url_per_pod() -> None:
    table = {"discovery": ["10.0.0.5", "10.0.0.6"]}
    urls = run(replica_urls(["http://discovery:8761"], resolver(table)))
    assert urls == ["http://10.0.0.5:8761", "http://10.0.0.6:8761"]


def test_ip_literals_and_https_urls_are_kept_as_given() -> None:
    given = ["http://10.0.0.9:8761", "https://discovery.example:443"]
    assert run(replica_urls(given, resolver({}))) == given


def test_ipv6_addresses_are_bracketed() -> None:
    urls = run(replica_urls(["http://discovery:8761"], resolver({"discovery": ["fd00::5"]})))
    assert urls == ["http://[fd00::5]:8761"]


def test_a_name_that_does_not_resolve_is_skipped() -> None:
    table = {"b": ["10.0.0.7"]}
    assert run(replica_urls(["http://a:1", "http://b:1"], resolver(table))) == [
        "http://10.0.0.7:1"]


# Registrar

class Replicas:
    """A scripted set of discovery replicas keyed by host: each knows some instances."""

    def __init__(self, *hosts: str, down: tuple[str, ...] = ()) -> None:
        self.known: dict[str, set[str]] = {host: set() for host in hosts}
        self.down = down
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append((host, request.method, request.url.path))
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        instance_id = request.url.path.rsplit("/", 1)[-1]
        known = self.known[host]
        if request.method == "POST":
            known.add(json.loads(request.content)["instance_id"])
            return httpx.Response(201, json={"lease_seconds": 30})
        if instance_id not in known:
            return httpx.Response(404, json={"detail": "re-register"})
        if request.method == "DELETE":
            known.discard(instance_id)
            return httpx.Response(204)
        return httpx.Response(200, json={"lease_seconds": 30})


def registrar(replicas: Replicas, client: httpx.AsyncClient) -> Registrar:
    return Registrar(client, ["http://discovery:8761"], ORDERS,
                     resolver({"discovery": list(replicas.known)}))


def with_client(replicas: Replicas, act: Callable[[httpx.AsyncClient], Any]) -> Any:
    async def scenario() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(replicas)) as client:
            return await act(client)

    return run(scenario())


def test_registration_reaches_every_replica() -> None:
    replicas = Replicas("10.0.0.5", "10.0.0.6")
    outcomes = with_client(replicas, lambda c: registrar(replicas, c).register_all())
    assert set(outcomes.values()) == {Outcome.REGISTERED}
    assert replicas.known == {"10.0.0.5": {"orders-1"}, "10.0.0.6": {"orders-1"}}


def test_a_replica_that_forgot_us_is_registered_again_on_heartbeat() -> None:
    replicas = Replicas("10.0.0.5", "10.0.0.6")
    replicas.known["10.0.0.5"].add("orders-1")
    outcomes = with_client(replicas, lambda c: registrar(replicas, c).heartbeat_all())
    assert outcomes == {"http://10.0.0.5:8761": Outcome.RENEWED,
                        "http://10.0.0.6:8761": Outcome.REREGISTERED}
    assert "orders-1" in replicas.known["10.0.0.6"]


def test_an_unreachable_replica_fails_alone() -> None:
    replicas = Replicas("10.0.0.5", "10.0.0.6", down=("10.0.0.5",))
    outcomes = with_client(replicas, lambda c: registrar(replicas, c).register_all())
    assert outcomes == {"http://10.0.0.5:8761": Outcome.FAILED,
                        "http://10.0.0.6:8761": Outcome.REGISTERED}


def test_deregistering_where_unknown_is_not_a_failure() -> None:
    replicas = Replicas("10.0.0.5")
    outcomes = with_client(replicas, lambda c: registrar(replicas, c).deregister_all())
    assert outcomes == {"http://10.0.0.5:8761": Outcome.UNKNOWN}


def test_the_registration_body_says_up_with_the_metadata() -> None:
    assert ORDERS.body() == {"instance_id": "orders-1", "host": "10.0.0.1", "port": 8080,
                             "status": "UP", "metadata": {"version": "1.0"}}


def test_leaving_deregisters_once() -> None:
    replicas = Replicas("10.0.0.5")

    async def leave_twice(client: httpx.AsyncClient) -> None:
        discovery = DiscoveryClient(registrar(replicas, client), None, heartbeat_seconds=10,
                                    refresh_seconds=5)
        await discovery.leave()
        await discovery.leave()

    with_client(replicas, leave_twice)
    assert [call[1] for call in replicas.calls] == ["DELETE"]


# The registry cache, fed plain data

def snapshot(epoch: str, version: int, *instances: dict[str, Any]) -> dict[str, Any]:
    apps: dict[str, list[dict[str, Any]]] = {}
    for instance in instances:
        apps.setdefault(instance["app"], []).append(instance)
    return {"epoch": epoch, "version": version, "apps": apps}


def delta(epoch: str, version: int, *changes: dict[str, Any],
          full: bool = False) -> dict[str, Any]:
    return {"epoch": epoch, "version": version, "full_refresh_required": full,
            "changes": list(changes)}


@pytest.fixture
def cache() -> RegistryCache:
    cache = RegistryCache(httpx.AsyncClient(), ["http://discovery:8761"])
    cache.apply_snapshot(snapshot("e1", 2, instance_json("orders-1"), instance_json("orders-2")))
    return cache


def ids(instances: list[Instance]) -> list[str]:
    return [i.instance_id for i in instances]


def test_only_up_instances_are_offered() -> None:
    cache = RegistryCache(httpx.AsyncClient(), [])
    cache.apply_snapshot(snapshot("e1", 2, instance_json("orders-2"),
                                  instance_json("orders-1", status="DOWN")))
    assert ids(cache.instances("orders")) == ["orders-2"]


def test_an_unknown_app_has_no_instances(cache: RegistryCache) -> None:
    assert cache.instances("billing") == []


def test_the_apps_are_those_with_an_up_instance_sorted() -> None:
    cache = RegistryCache(httpx.AsyncClient(), [])
    cache.apply_snapshot(snapshot("e1", 3, instance_json("s-1", app="stock"),
                                  instance_json("b-1", status="DOWN", app="billing"),
                                  instance_json("o-1", app="orders")))
    assert cache.apps() == ["orders", "stock"]


def test_an_app_whose_last_instance_left_is_no_longer_listed(cache: RegistryCache) -> None:
    cache.apply_delta(delta("e1", 4, change(3, "DELETED", "orders-1"),
                            change(4, "DELETED", "orders-2")))
    assert cache.apps() == []


def test_the_client_lists_the_apps_of_its_cache(cache: RegistryCache) -> None:
    client = DiscoveryClient(None, cache, heartbeat_seconds=1, refresh_seconds=1)
    assert client.apps() == ["orders"]


def test_a_delta_adds_and_removes_instances(cache: RegistryCache) -> None:
    assert cache.apply_delta(delta("e1", 4, change(3, "ADDED", "orders-3"),
                                   change(4, "DELETED", "orders-1")))
    assert (ids(cache.instances("orders")), cache.version) == (["orders-2", "orders-3"], 4)


def test_a_delta_can_mark_an_instance_down(cache: RegistryCache) -> None:
    down = {**change(3, "MODIFIED", "orders-1"), "instance": instance_json("orders-1", "DOWN")}
    cache.apply_delta(delta("e1", 3, down))
    assert ids(cache.instances("orders")) == ["orders-2"]


@pytest.mark.parametrize("answer", [
    delta("e1", 3, change(3, "ADDED", "orders-3"), full=True),  # the replica says so
    delta("e2", 3, change(3, "ADDED", "orders-3")),  # another replica, or a restarted one
    delta("e1", 4, change(4, "ADDED", "orders-3")),  # version 3 went missing
], ids=["full_refresh_required", "other_epoch", "gap"])
def test_a_delta_that_does_not_continue_ours_is_refused_untouched(
    cache: RegistryCache, answer: dict[str, Any]
) -> None:
    assert not cache.apply_delta(answer)
    assert (ids(cache.instances("orders")), cache.version) == (["orders-1", "orders-2"], 2)


# The registry cache, refreshing over a scripted transport

class Registry:
    """One scripted replica: answers full fetches and deltas from a fixed script."""

    def __init__(self, full: dict[str, Any], delta: dict[str, Any] | None = None,
                 up: bool = True) -> None:
        self.full, self.delta, self.up = full, delta, up
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path.endswith("/delta"):
            return httpx.Response(200, json=self.delta)
        return httpx.Response(200, json=self.full)


def refresh_twice(replica: Registry, between: Callable[[], None] = lambda: None,
                  clock: Callable[[], float] = lambda: 0.0) -> tuple[RegistryCache, bool]:
    async def scenario() -> tuple[RegistryCache, bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(replica)) as client:
            cache = RegistryCache(client, ["http://10.0.0.5:8761"], clock=clock)
            await cache.refresh()
            between()
            return cache, await cache.refresh()

    result: tuple[RegistryCache, bool] = run(scenario())
    return result


def test_the_first_refresh_fetches_everything_and_later_ones_ask_for_deltas() -> None:
    replica = Registry(snapshot("e1", 1, instance_json("orders-1")),
                       delta("e1", 2, change(2, "ADDED", "orders-2")))
    cache, _ = refresh_twice(replica)
    assert replica.paths == ["/eureka/apps", "/eureka/apps/delta"]
    assert ids(cache.instances("orders")) == ["orders-1", "orders-2"]


def test_a_refused_delta_falls_back_to_a_full_fetch() -> None:
    replica = Registry(snapshot("e1", 1, instance_json("orders-1")), delta("e1", 1, full=True))
    refresh_twice(replica)
    assert replica.paths == ["/eureka/apps", "/eureka/apps/delta", "/eureka/apps"]


def test_when_discovery_is_down_the_stale_cache_still_answers_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    replica = Registry(snapshot("e1", 1, instance_json("orders-1")))
    now = [100.0]

    def outage() -> None:
        replica.up = False
        now[0] = 112.0

    with caplog.at_level(logging.WARNING, logger="servicekit.discovery"):
        cache, refreshed = refresh_twice(replica, outage, clock=lambda: now[0])
    assert not refreshed and ids(cache.instances("orders")) == ["orders-1"]
    assert "serving the cached registry (last refreshed 12.0 s ago)" in caplog.text


def test_discovery_lifespan_refuses_to_start_without_discovery_url() -> None:
    with pytest.raises(ValueError, match="DISCOVERY_URL is not set"):
        discovery_lifespan(config_for_tests())


def test_instances_from_a_client_that_does_not_watch_is_an_error() -> None:
    client = DiscoveryClient(None, None, heartbeat_seconds=1, refresh_seconds=1)
    with pytest.raises(RuntimeError, match="watch=False"):
        client.instances("orders")
    with pytest.raises(RuntimeError, match="watch=False"):
        client.apps()
