"""Request metrics and the access log, through a real app and at the ASGI level."""

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import Counter
from servicekit.app import build_service, service_metrics
from servicekit.logs import JsonFormatter
from servicekit.metrics import ServiceMetrics
from servicekit.telemetry import TelemetryMiddleware
from servicekit.testing import config_for_tests
from starlette.types import Message, Receive, Scope, Send


@pytest.fixture
def app() -> FastAPI:
    app = build_service("orders", config_for_tests(APP_VERSION="1.2.3", MAX_BODY_BYTES="10"))
    metrics = service_metrics(app)

    @app.get("/orders/{order_id:int}")
    def order(order_id: int) -> dict[str, object]:
        inflight = metrics.registry.get_sample_value(
            "orders_inflight_requests", {"version": "1.2.3"})
        return {"order_id": order_id, "inflight": inflight}

    @app.post("/orders")
    def place() -> dict[str, str]:
        return {}

    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def sample(app: FastAPI, name: str, **labels: str) -> float | None:
    return service_metrics(app).registry.get_sample_value(name, labels)


def test_requests_are_counted_by_route_template_status_and_version(
    app: FastAPI, client: TestClient
) -> None:
    client.get("/orders/1")
    client.get("/orders/2")
    assert sample(app, "orders_http_requests_total", method="GET", route="/orders/{order_id}",
                  status="200", version="1.2.3") == 2.0


def test_latency_is_observed_per_route_and_version(app: FastAPI, client: TestClient) -> None:
    client.get("/orders/1")
    assert sample(app, "orders_http_request_duration_seconds_count", method="GET",
                  route="/orders/{order_id}", version="1.2.3") == 1.0


def test_a_413_from_the_body_limit_is_counted_under_its_route(
    app: FastAPI, client: TestClient
) -> None:
    assert client.post("/orders", content=b"x" * 11).status_code == 413
    assert sample(app, "orders_http_requests_total", method="POST", route="/orders",
                  status="413", version="1.2.3") == 1.0


def test_unknown_paths_share_one_series(app: FastAPI, client: TestClient) -> None:
    client.get("/a")
    client.get("/b")
    assert sample(app, "orders_http_requests_total", method="GET", route="unmatched",
                  status="404", version="1.2.3") == 2.0


def test_inflight_counts_the_request_being_served_and_drops_after(
    app: FastAPI, client: TestClient
) -> None:
    assert client.get("/orders/1").json()["inflight"] == 1.0
    assert sample(app, "orders_inflight_requests", version="1.2.3") == 0.0


def test_build_info_names_the_version(app: FastAPI) -> None:
    assert sample(app, "orders_build_info", version="1.2.3") == 1.0


def test_apps_add_their_own_series_with_the_version_label(
    app: FastAPI, client: TestClient
) -> None:
    placed: Counter = service_metrics(app).counter("placed", "Orders placed.", ["kind"])
    placed.labels(kind="retail", version="1.2.3").inc()
    assert ('orders_placed_total{kind="retail",version="1.2.3"} 1.0'
            in client.get("/metrics").text)


def test_each_request_writes_one_access_log_record_with_its_fields(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="servicekit.access"):
        client.get("/orders/5", headers={"X-Request-ID": "req-9"})
    [record] = [r for r in caplog.records if r.name == "servicekit.access"]
    entry = json.loads(JsonFormatter("orders", "1.2.3").format(record))
    assert {k: entry[k] for k in ("method", "path", "route", "status", "app", "version")} == {
        "method": "GET", "path": "/orders/5", "route": "/orders/{order_id}", "status": 200,
        "app": "orders", "version": "1.2.3"}
    assert entry["duration_ms"] >= 0 and entry["client"].startswith("testclient:")


def test_the_access_log_record_carries_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The id is read from the context when the record is made, so capture the formatted line.
    formatter = JsonFormatter("orders", "1.2.3")
    formatted: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            formatted.append(formatter.format(record))

    access = logging.getLogger("servicekit.access")
    handler = Keep()
    access.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="servicekit.access"):
            client.get("/orders/5", headers={"X-Request-ID": "req-9"})
    finally:
        access.removeHandler(handler)
    assert json.loads(formatted[0])["request_id"] == "req-9"


def test_a_client_that_leaves_before_an_answer_counts_as_499_not_500() -> None:
    metrics = ServiceMetrics("orders", "1.2.3")

    async def gives_up(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the disconnect: nothing is sent

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing should be sent")

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    asyncio.run(TelemetryMiddleware(gives_up, metrics)(scope, receive, send))
    assert metrics.registry.get_sample_value("orders_http_requests_total", {
        "method": "GET", "route": "unmatched", "status": "499", "version": "1.2.3"}) == 1.0
