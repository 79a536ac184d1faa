"""servicekit's discovery client against real discovery replicas served by uvicorn.

Two replicas listen on 127.0.0.1 and 127.0.0.2 at one port, as two pods behind a
headless Service would; a resolver maps the name "discovery" to both addresses.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from discovery.api import create_app
from discovery.registry import Registry
from fastapi.testclient import TestClient
from servicekit import build_service, discovery_client, discovery_lifespan, service_state
from servicekit.discovery_client import Outcome, Registrar, Registration, RegistryCache
from servicekit.testing import config_for_tests, running_server

ADDRESSES = ("127.0.0.1", "127.0.0.2")
ORDERS = Registration("orders", "orders-1", "10.0.0.1", 8080, {"version": "1.0"})


@dataclass
class Replica:
    registry: Registry
    url: str


def common_free_port() -> int:
    """A port free on every address in ADDRESSES."""
    for _ in range(20):
        with socket.socket() as first:
            first.bind((ADDRESSES[0], 0))
            port = int(first.getsockname()[1])
            try:
                with socket.socket() as second:
                    second.bind((ADDRESSES[1], port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both loopback addresses")


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    port = common_free_port()
    registries = [Registry(time.monotonic) for _ in ADDRESSES]
    config = config_for_tests()
    with running_server(create_app(config, registry=registries[0]), ADDRESSES[0], port) as a, \
            running_server(create_app(config, registry=registries[1]), ADDRESSES[1], port) as b:
        yield [Replica(registries[0], a), Replica(registries[1], b)]


def port_of(replicas: list[Replica]) -> int:
    return httpx.URL(replicas[0].url).port or 0


async def both(host: str, port: int) -> list[str]:
    assert host == "discovery"
    return list(ADDRESSES)


def registered_ids(replica: Replica, app: str = "orders") -> list[str]:
    return [i.instance_id for i in replica.registry.instances_of(app)]


def run(act: Callable[[httpx.AsyncClient], Any]) -> Any:
    async def scenario() -> Any:
        async with httpx.AsyncClient(timeout=5) as client:
            return await act(client)

    return asyncio.run(scenario())


def test_registration_reaches_both_replicas_behind_one_name(replicas: list[Replica]) -> None:
    base = f"http://discovery:{port_of(replicas)}"
    outcomes = run(lambda c: Registrar(c, [base], ORDERS, both).register_all())
    assert list(outcomes.values()) == [Outcome.REGISTERED, Outcome.REGISTERED]
    assert [registered_ids(r) for r in replicas] == [["orders-1"], ["orders-1"]]


def test_a_replica_that_lost_its_state_is_refilled_by_the_next_heartbeat(
    replicas: list[Replica],
) -> None:
    replicas[0].registry.register("orders", "orders-1", "10.0.0.1", 8080)  # only one knows
    base = f"http://discovery:{port_of(replicas)}"
    outcomes = run(lambda c: Registrar(c, [base], ORDERS, both).heartbeat_all())
    assert list(outcomes.values()) == [Outcome.RENEWED, Outcome.REREGISTERED]
    assert registered_ids(replicas[1]) == ["orders-1"]


def test_the_cache_follows_registrations_and_cancellations_through_deltas(
    replicas: list[Replica],
) -> None:
    registry = replicas[0].registry

    async def scenario(client: httpx.AsyncClient) -> list[list[str]]:
        cache = RegistryCache(client, [replicas[0].url])
        seen = []
        registry.register("orders", "orders-1", "10.0.0.1", 8080)
        await cache.refresh()
        seen.append([i.instance_id for i in cache.instances("orders")])
        registry.register("orders", "orders-2", "10.0.0.2", 8080)
        registry.cancel("orders", "orders-1")
        await cache.refresh()
        seen.append([i.instance_id for i in cache.instances("orders")])
        assert cache.version == registry.version
        return seen

    assert run(scenario) == [["orders-1"], ["orders-2"]]


def test_the_cache_refetches_everything_when_it_moves_to_another_replica(
    replicas: list[Replica],
) -> None:
    replicas[0].registry.register("orders", "orders-1", "10.0.0.1", 8080)
    replicas[1].registry.register("billing", "billing-1", "10.0.0.3", 8080)

    async def scenario(client: httpx.AsyncClient) -> tuple[list[str], list[str]]:
        cache = RegistryCache(client, [replicas[0].url])
        await cache.refresh()
        cache.base_urls = (replicas[1].url,)  # as if the first replica's pod went away
        await cache.refresh()
        return ([i.instance_id for i in cache.instances("billing")],
                [i.instance_id for i in cache.instances("orders")])

    assert run(scenario) == (["billing-1"], [])


def test_the_cache_answers_from_memory_once_discovery_is_gone() -> None:
    registry = Registry(time.monotonic)
    registry.register("orders", "orders-1", "10.0.0.1", 8080)

    async def scenario(client: httpx.AsyncClient, url: str) -> RegistryCache:
        cache = RegistryCache(client, [url])
        await cache.refresh()
        return cache

    with running_server(create_app(config_for_tests(), registry=registry)) as url:
        cache = run(lambda c: scenario(c, url))

    async def after_outage(client: httpx.AsyncClient) -> tuple[bool, list[str]]:
        cache.http = client
        return await cache.refresh(), [i.instance_id for i in cache.instances("orders")]

    assert run(after_outage) == (False, ["orders-1"])


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.01)


def test_a_service_using_the_lifespan_registers_drains_out_and_sees_others(
    replicas: list[Replica],
) -> None:
    replicas[0].registry.register("billing", "billing-1", "10.0.0.3", 8080)
    config = config_for_tests(DISCOVERY_URL=replicas[0].url, APP_VERSION="2.0.0",
                              INSTANCE_ID="orders-7", PORT="9090")
    app = build_service("orders", config, lifespans=[discovery_lifespan(config)])
    with TestClient(app) as client:
        wait_until(lambda: registered_ids(replicas[0]) == ["orders-7"], "registered")
        [me] = replicas[0].registry.instances_of("orders")
        assert (me.host, me.port, dict(me.metadata)) == ("10.1.2.3", 9090, {"version": "2.0.0"})
        assert [i.instance_id for i in discovery_client(app).instances("billing")] == [
            "billing-1"]
        assert client.portal is not None  # the app's event loop, while the client is open
        client.portal.call(service_state(app).begin_drain)  # what SIGTERM starts
        assert registered_ids(replicas[0]) == []


def test_a_service_that_stops_without_draining_still_deregisters(
    replicas: list[Replica],
) -> None:
    config = config_for_tests(DISCOVERY_URL=replicas[0].url, INSTANCE_ID="orders-8")
    app = build_service("orders", config, lifespans=[discovery_lifespan(config, watch=False)])
    with TestClient(app):
        wait_until(lambda: registered_ids(replicas[0]) == ["orders-8"], "registered")
    assert registered_ids(replicas[0]) == []
