"""The world the HTTP tests run in: a real streaming server (uvicorn, real files in a
temporary DATA_DIR) and a fake discovery that records who registered."""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from servicekit.testing import config_for_tests, running_server
from streaming.api import create_app
from streaming.config import Settings

VERSION = "1.0.0"


@dataclass
class FakeDiscovery:
    url: str
    registrations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture(scope="session")
def discovery() -> Iterator[FakeDiscovery]:
    app = FastAPI()
    seen: list[tuple[str, dict[str, Any]]] = []

    @app.post("/eureka/apps/{name}", status_code=201)
    async def register(name: str, request: Request) -> dict[str, str]:
        seen.append((name, await request.json()))
        return {}

    @app.put("/eureka/apps/{name}/{instance}")
    @app.delete("/eureka/apps/{name}/{instance}")
    async def renew_or_cancel(name: str, instance: str) -> dict[str, str]:
        return {}

    with running_server(app) as url:
        yield FakeDiscovery(url, seen)


@dataclass
class Streaming:
    """A running server and a client for it."""

    url: str
    http: httpx.Client
    data_dir: Path
    app: FastAPI

    def create_topic(self, name: str, partitions: int) -> None:
        response = self.http.post("/topics", json={"name": name, "partitions": partitions})
        assert response.status_code == 201, response.text

    def produce(self, topic: str, *records: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.http.post(f"/topics/{topic}/records", json={"records": list(records)})
        assert response.status_code == 200, response.text
        return list(response.json()["offsets"])

    def read(self, topic: str, partition: int, offset: int = 0,
             max_records: int = 1000) -> list[dict[str, Any]]:
        response = self.http.get(f"/topics/{topic}/partitions/{partition}/records",
                                 params={"offset": offset, "max": max_records})
        assert response.status_code == 200, response.text
        return list(response.json()["records"])

    def wait_until_aggregated(self, timeout: float = 5.0) -> None:
        """Until the views job has read every record of the views topic."""
        wait_for(lambda: all(
            p["lag"] == 0 for p in self.http.get(
                "/groups/views-aggregator/offsets", params={"topic": "views"}).json()["offsets"]
        ), timeout)

    def metric(self, name: str, **labels: str) -> float | None:
        wanted = {**labels, "version": VERSION}
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith(name + "{"):
                series, value = line.rsplit(" ", 1)
                pairs = dict(item.split("=", 1) for item in series[len(name) + 1:-1].split(","))
                if {k: v.strip('"') for k, v in pairs.items()} == wanted:
                    return float(value)
        return None


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


ServeStreaming = Callable[..., contextlib.AbstractContextManager[Streaming]]


@contextlib.contextmanager
def serving(data_dir: Path, discovery: FakeDiscovery, **env: str) -> Iterator[Streaming]:
    settings = Settings.from_env({"DATA_DIR": str(data_dir), "AGGREGATION_POLL_SECONDS": "0.02",
                                  **env})
    app = create_app(config_for_tests(APP_VERSION=VERSION, DISCOVERY_URL=discovery.url),
                     settings=settings)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Streaming(url, http, data_dir, app)


@pytest.fixture
def serve(tmp_path: Path, discovery: FakeDiscovery) -> ServeStreaming:
    """serve(**env) runs a server of its own on this test's DATA_DIR; call it again to
    restart on the same directory."""
    return functools.partial(serving, tmp_path / "data", discovery)


@pytest.fixture(scope="session")
def streaming(tmp_path_factory: pytest.TempPathFactory,
              discovery: FakeDiscovery) -> Iterator[Streaming]:
    """One server for the tests that only need their own topics (see `new_topic`):
    starting a server per test would cost a third of a second each."""
    with serving(tmp_path_factory.mktemp("shared") / "data", discovery) as server:
        yield server


@pytest.fixture
def new_topic(streaming: Streaming) -> Callable[[int], str]:
    """new_topic(partitions) creates a topic no other test uses and returns its name."""

    def create(partitions: int) -> str:
        name = f"topic-{next(_TOPICS)}"
        streaming.create_topic(name, partitions)
        return name

    return create


_TOPICS = itertools.count()
