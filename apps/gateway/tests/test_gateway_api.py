"""The gateway on the wire: real uvicorn servers for discovery, the gateway and "echo"
instances that register themselves with discovery through servicekit, as in a cluster.

Each test builds the world it needs; nothing waits a fixed time: every wait polls
against a deadline, and the circuit breakers' clock is moved by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from gateway.api import create_app
from gateway.breaker import BreakerPolicy
from gateway.config import GatewaySettings, parse_weights
from gateway.weights import eligible_versions
from servicekit import ServiceConfig, build_service, discovery_lifespan
from servicekit.testing import (
    FakeClock,
    config_for_tests,
    eventually,
    free_port,
    running_server,
)
from starlette.responses import JSONResponse, Response


def discovery_app(config: ServiceConfig) -> FastAPI:
    """apps/discovery's own app. Imported by name: this app is type-checked on its own,
    without discovery's sources on mypy's path (conftest.py puts them on sys.path)."""
    factory: Callable[[ServiceConfig], FastAPI] = importlib.import_module(
        "discovery.api").create_app
    return factory(config)


def seeded(seed: int) -> Callable[[], float]:
    return random.Random(seed).random  # noqa: S311 (repeatable draws, not secrets)


@dataclass
class Echo:
    """An instance of app "echo" that answers with what it received."""

    instance_id: str
    version: str
    failing: bool = False  # answer 503 to everything but /slow
    seen: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def app(self, config: ServiceConfig) -> FastAPI:
        app = build_service("echo", config, lifespans=[discovery_lifespan(config)])

        @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH",
                                                "DELETE", "OPTIONS"])
        async def echo(request: Request, path: str) -> Response:
            if path == "slow":  # hold the request until the test ends
                while not self.release.is_set():
                    await asyncio.sleep(0.01)
            body = (await request.body()).decode()
            self.seen.append({"method": request.method, "path": request.url.path,
                              "headers": dict(request.headers)})
            if self.failing:
                return JSONResponse({"detail": "unavailable"}, status_code=503)
            answer = JSONResponse({
                "instance": self.instance_id, "version": self.version,
                "method": request.method, "raw_path": request.scope["raw_path"].decode(),
                "query": request.scope["query_string"].decode(), "body": body,
                "headers": dict(request.headers)})
            if path == "cookie":
                answer.set_cookie("session", "secret-of-one-client")
            if path == "big":
                return Response(b"x" * 5000)
            return answer

        return app


class Gateway:
    def __init__(self, url: str, clock: FakeClock) -> None:
        self.url = url
        self.clock = clock
        self.http = httpx.Client(base_url=url, timeout=10, trust_env=False)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def upstreams(self, app: str = "echo") -> list[dict[str, Any]]:
        instances: list[dict[str, Any]] = self.get(f"/gateway/upstreams/{app}").json()[
            "apps"][app]
        return instances

    def wait_for(self, count: int, app: str = "echo") -> None:
        eventually(lambda: len(self.upstreams(app)) == count, f"{count} {app} instance(s)")

    def metric(self, name: str, **labels: str) -> float:
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line
                                                    for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def served_by(self, count: int, path: str = "/api/echo/") -> list[str]:
        return [self.get(path).json()["instance"] for _ in range(count)]


class World:
    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.discovery = stack.enter_context(running_server(discovery_app(config_for_tests())))
        self.echoes: list[Echo] = []

    def echo(self, instance_id: str, version: str = "1.0.0") -> Echo:
        echo = Echo(instance_id, version)
        port = free_port()
        config = config_for_tests(DISCOVERY_URL=self.discovery, PORT=str(port),
                                  ADVERTISE_HOST="127.0.0.1", INSTANCE_ID=instance_id,
                                  APP_VERSION=version)
        self.stack.enter_context(running_server(echo.app(config), port=port))
        # Registered after the server, so it runs before the server stops (the stack
        # unwinds in reverse): a held request must end for the server to exit.
        self.stack.callback(echo.release.set)
        self.echoes.append(echo)
        return echo

    def dead_instance(self, instance_id: str, app: str = "echo") -> None:
        """Registered and UP in discovery, but nothing listens at its address."""
        body = {"instance_id": instance_id, "host": "127.0.0.1", "port": free_port(),
                "status": "UP", "metadata": {"version": "1.0.0"}}
        httpx.post(f"{self.discovery}/eureka/apps/{app}", json=body).raise_for_status()

    def gateway(self, settings: GatewaySettings | None = None,
                rand: Callable[[], float] = random.random, **variables: str) -> Gateway:
        clock = FakeClock(now=0.0)
        config = config_for_tests({"DISCOVERY_URL": self.discovery,
                                   "DISCOVERY_REFRESH_SECONDS": "0.02", **variables})
        app = create_app(config, settings=settings or GatewaySettings(), breaker_clock=clock,
                         rand=rand)
        gateway = Gateway(self.stack.enter_context(running_server(app)), clock)
        self.stack.callback(gateway.http.close)
        return gateway


@pytest.fixture
def world() -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        yield World(stack)


# -- routing -------------------------------------------------------------------------------

def test_a_request_reaches_an_instance_with_method_path_query_and_body(world: World) -> None:
    world.echo("echo-1")
    gateway = world.gateway()
    gateway.wait_for(1)
    answer = gateway.request("PUT", "/api/echo/items/a%2Fb?x=1&y=%20z", content=b"payload",
                             headers={"Keep-Alive": "timeout=5", "X-Custom": "kept"})
    assert answer.status_code == 200
    seen = answer.json()
    assert (seen["method"], seen["raw_path"], seen["query"], seen["body"]) == (
        "PUT", "/items/a%2Fb", "x=1&y=%20z", "payload")
    assert seen["headers"]["x-custom"] == "kept"
    assert "keep-alive" not in seen["headers"]
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-prefix"] == "/api/echo"


def test_the_request_id_travels_to_the_instance_and_back(world: World) -> None:
    world.echo("echo-1")
    gateway = world.gateway()
    gateway.wait_for(1)
    answer = gateway.get("/api/echo/", headers={"X-Request-ID": "trace-42"})
    assert answer.json()["headers"]["x-request-id"] == "trace-42"
    assert answer.headers["x-request-id"] == "trace-42"


@pytest.mark.parametrize("balancer", ["least-outstanding", "round-robin"])
def test_requests_take_turns_across_the_instances(world: World, balancer: Any) -> None:
    world.echo("echo-1")
    world.echo("echo-2")
    gateway = world.gateway(GatewaySettings(balancer=balancer))
    gateway.wait_for(2)
    assert sorted(gateway.served_by(6)) == ["echo-1"] * 3 + ["echo-2"] * 3


def test_a_head_request_gets_the_instances_length_and_no_body(world: World) -> None:
    world.echo("echo-1")
    gateway = world.gateway()
    gateway.wait_for(1)
    head = gateway.request("HEAD", "/api/echo/big")  # GET answers 5000 bytes
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == "5000"


def test_an_app_without_instances_answers_503_naming_it(world: World) -> None:
    answer = world.gateway().get("/api/billing/invoices")
    assert answer.status_code == 503
    assert "'billing'" in answer.json()["detail"]
    assert answer.json()["app"] == "billing"


@pytest.mark.parametrize("path", ["/api/Billing_Svc/x", "/api/b%61d/x", "/api/-x/"])
def test_an_invalid_app_name_answers_400(world: World, path: str) -> None:
    answer = world.gateway().get(path)
    assert answer.status_code == 400
    assert "invalid app name" in answer.json()["detail"]


def test_it_registers_itself_but_never_routes_to_itself(world: World) -> None:
    gateway = world.gateway(INSTANCE_ID="gateway-1")
    eventually(lambda: httpx.get(f"{world.discovery}/eureka/apps/gateway").status_code == 200,
               "the gateway's registration")
    answer = gateway.get("/api/gateway/api/gateway/")
    assert answer.status_code == 400
    assert "does not route to itself" in answer.json()["detail"]


def test_a_body_over_the_limit_answers_413_without_reaching_an_instance(world: World) -> None:
    echo = world.echo("echo-1")
    gateway = world.gateway(MAX_BODY_BYTES="100")
    gateway.wait_for(1)
    assert gateway.request("POST", "/api/echo/", content=b"x" * 101).status_code == 413
    assert echo.seen == []


def test_a_cookie_one_client_received_is_never_sent_for_another(world: World) -> None:
    world.echo("echo-1")
    gateway = world.gateway()
    gateway.wait_for(1)
    assert "session" in gateway.get("/api/echo/cookie").headers["set-cookie"]
    gateway.http.cookies.clear()  # the next request comes from someone else
    assert "cookie" not in gateway.get("/api/echo/").json()["headers"]


def test_an_answer_over_the_response_limit_answers_502(world: World) -> None:
    world.echo("echo-1")
    gateway = world.gateway(GatewaySettings(max_response_bytes=1000))
    gateway.wait_for(1)
    answer = gateway.get("/api/echo/big")
    assert answer.status_code == 502
    assert "more than 1000 bytes" in answer.json()["detail"]


# -- retries, breakers, timeouts ----------------------------------------------------------

def test_a_get_to_a_dead_instance_is_retried_on_another(world: World) -> None:
    world.dead_instance("echo-0")
    world.echo("echo-1")
    gateway = world.gateway()
    gateway.wait_for(2)
    answers = [gateway.get("/api/echo/") for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert gateway.metric("gateway_upstream_retries_total", app="echo") >= 1
    assert gateway.metric("gateway_upstream_requests_total", app="echo",
                          status="connect_error") >= 1


def test_a_post_to_a_dead_instance_is_not_retried(world: World) -> None:
    world.dead_instance("echo-0")
    live = world.echo("echo-1")
    gateway = world.gateway()
    gateway.wait_for(2)
    answers = [gateway.request("POST", "/api/echo/orders", json={"n": n}) for n in range(2)]
    assert sorted(a.status_code for a in answers) == [200, 502]
    [failed] = [a.json() for a in answers if a.status_code == 502]
    assert (failed["app"], failed["instance"], failed["attempts"]) == ("echo", "echo-0", 1)
    assert [s["method"] for s in live.seen] == ["POST"]
    assert gateway.metric("gateway_upstream_retries_total", app="echo") == 0


def test_a_failing_instance_is_ejected_then_readmitted_after_a_good_probe(
        world: World) -> None:
    sick = world.echo("echo-1")
    world.echo("echo-2")
    sick.failing = True
    gateway = world.gateway(GatewaySettings(breaker=BreakerPolicy(consecutive_failures=2,
                                                                  cooldown_seconds=30)))
    gateway.wait_for(2)
    assert set(gateway.served_by(6)) == {"echo-2"}  # retried away from the 503s
    assert [u["breaker"] for u in gateway.upstreams()] == ["open", "closed"]
    assert gateway.metric("gateway_upstream_circuit_open", instance="echo-1") == 1
    assert len(sick.seen) == 2

    sick.failing = False
    gateway.clock.now += 30
    assert gateway.upstreams()[0]["breaker"] == "half_open"
    assert "echo-1" in gateway.served_by(2)  # the probe
    assert [u["breaker"] for u in gateway.upstreams()] == ["closed", "closed"]
    assert gateway.metric("gateway_upstream_circuit_open", instance="echo-1") == 0


def test_a_slow_instance_answers_504_within_the_time_budget(world: World) -> None:
    world.echo("echo-1")
    gateway = world.gateway(GatewaySettings(timeout_seconds=0.3))
    gateway.wait_for(1)
    started = time.monotonic()
    answer = gateway.get("/api/echo/slow")
    elapsed = time.monotonic() - started
    assert answer.status_code == 504
    assert "within 0.3 s" in answer.json()["detail"]
    assert 0.3 <= elapsed < 1.5
    assert gateway.metric("gateway_upstream_requests_total", status="timeout") == 1


# -- weights -------------------------------------------------------------------------------

def test_the_weighted_split_follows_each_draw(world: World) -> None:
    world.echo("echo-1", "1.0.0")
    world.echo("echo-2", "2.0.0")
    weights = parse_weights({"echo": {"1.0.0": 80, "2.0.0": 20}}, "test")
    gateway = world.gateway(GatewaySettings(weights=weights), rand=seeded(3))
    gateway.wait_for(2)
    served = [gateway.get("/api/echo/").json()["version"] for _ in range(100)]

    replay = seeded(3)
    expected = [min(eligible_versions(weights["echo"], ["1.0.0", "2.0.0"], replay))
                for _ in range(100)]
    assert served == expected
    assert 10 <= served.count("2.0.0") <= 30
    assert gateway.metric("gateway_upstream_requests_total",
                          upstream_version="2.0.0") == served.count("2.0.0")


def test_weights_from_the_routing_file_apply_when_it_changes(world: World,
                                                             tmp_path: Path) -> None:
    world.echo("echo-1", "1.0.0")
    world.echo("echo-2", "2.0.0")
    path = tmp_path / "routing.json"

    def route(weights: dict[str, int]) -> None:
        staged = tmp_path / "routing.new"
        staged.write_text(json.dumps({"weights": {"echo": weights}}))
        os.replace(staged, path)  # as a ConfigMap update swaps the file

    route({"1.0.0": 0, "2.0.0": 1})
    gateway = world.gateway(GatewaySettings(config_file=path))
    gateway.wait_for(2)
    assert set(gateway.served_by(4)) == {"echo-2"}
    route({"1.0.0": 1, "2.0.0": 0})
    assert set(gateway.served_by(4)) == {"echo-1"}
    assert gateway.get("/gateway/upstreams").json()["weights"] == {
        "echo": {"1.0.0": 1, "2.0.0": 0}}


# -- operations ----------------------------------------------------------------------------

def test_the_upstream_view_lists_instances_with_load_breaker_and_version(
        world: World) -> None:
    world.echo("echo-1", "1.0.0")
    world.echo("echo-2", "2.0.0")
    gateway = world.gateway()
    gateway.wait_for(2)
    gateway.get("/api/echo/")
    assert gateway.get("/gateway/upstreams").json() == {
        "apps": {"echo": [
            {"instance_id": "echo-1", "version": "1.0.0", "outstanding": 0, "breaker": "closed"},
            {"instance_id": "echo-2", "version": "2.0.0", "outstanding": 0, "breaker": "closed"},
        ]},
        "balancer": "least-outstanding",
        "weights": {},
    }


def test_the_upstream_view_lists_every_registered_app_asked_about_or_not(
        world: World) -> None:
    world.echo("echo-1")
    gateway = world.gateway()
    eventually(lambda: httpx.get(f"{world.discovery}/eureka/apps/gateway").status_code == 200,
               "the gateway's own registration")
    world.dead_instance("billing-1", app="billing")  # nothing ever asks for billing
    listed = eventually(lambda: gateway.get("/gateway/upstreams").json()["apps"].get("billing"),
                        "billing in the upstream view")
    assert [instance["instance_id"] for instance in listed] == ["billing-1"]
    # Registered before billing, so in this copy of the registry too; never routed to.
    assert sorted(gateway.get("/gateway/upstreams").json()["apps"]) == ["billing", "echo"]


def test_each_proxied_request_logs_its_upstream(world: World,
                                                caplog: pytest.LogCaptureFixture) -> None:
    world.echo("echo-1")
    gateway = world.gateway()
    gateway.wait_for(1)
    with caplog.at_level(logging.INFO, logger="gateway.proxy"):
        gateway.get("/api/echo/x", headers={"X-Request-ID": "log-me"})
    [record] = [r for r in caplog.records if r.name == "gateway.proxy"]
    assert (record.__dict__["upstream_app"], record.__dict__["upstream_instance"],
            record.__dict__["attempts"], record.__dict__["upstream_status"]) == (
        "echo", "echo-1", 1, "200")


def test_it_is_ready_only_once_it_has_a_copy_of_the_registry(world: World) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    app = create_app(config_for_tests(DISCOVERY_URL=nowhere), settings=GatewaySettings())
    with running_server(app) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        readiness = httpx.get(f"{url}/readyz")
        assert readiness.status_code == 503
        assert "discovery" in readiness.json()["failed"]
    gateway = world.gateway()
    eventually(lambda: httpx.get(f"{gateway.url}/readyz").status_code == 200, "readiness")
