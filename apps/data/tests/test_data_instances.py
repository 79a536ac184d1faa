"""Several instances: two of the service on one SQLite file (as local runs share
./data.db), another writer holding the lock, and an instance registering itself in
discovery."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from servicekit.testing import running_server

Serve = Callable[..., AbstractContextManager[str]]


def test_two_instances_on_one_sqlite_file_both_serve_each_others_writes(
        serve: Serve, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with serve(url) as first, serve(url) as second, httpx.Client(timeout=10) as client:
        def write(base_url: str, n: int) -> int:
            body = {"user_id": "shared", "content_id": f"title-{n}"}
            return client.post(f"{base_url}/activities", json=body).status_code

        # Concurrent writers on both instances: WAL and the busy timeout serialise them.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(write, [first, second] * 20, range(40)))
        assert statuses == [201] * 40
        for base_url in (first, second):
            page = client.get(f"{base_url}/users/shared/activities", params={"limit": 100})
            assert len(page.json()["activities"]) == 40


def test_an_instance_registers_itself_in_discovery_as_data(serve: Serve,
                                                            tmp_path: Path) -> None:
    registered: list[dict[str, Any]] = []
    arrived = threading.Event()
    discovery = FastAPI()

    @discovery.post("/eureka/apps/{app_name}", status_code=201)
    async def register(app_name: str, request: Request) -> dict[str, float]:
        registered.append({"app": app_name, **(await request.json())})
        arrived.set()
        return {"lease_seconds": 30}

    with running_server(discovery) as discovery_url, \
            serve(f"sqlite:///{tmp_path / 'data.db'}", discovery_url=discovery_url):
        assert arrived.wait(10), "no registration arrived"
    [registration] = registered
    assert (registration["app"], registration["instance_id"], registration["host"]) == (
        "data", "test-instance", "10.1.2.3")
    assert registration["status"] == "UP"


def test_writes_answer_503_while_another_writer_holds_the_lock_past_the_timeout(
        serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with serve(f"sqlite:///{path}", DB_TIMEOUT_SECONDS="0.2") as base_url, \
            httpx.Client(base_url=base_url, timeout=10) as client:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process's long write transaction
            written = client.post("/activities", json={"user_id": "u", "content_id": "c"})
            read = client.get("/users/u/activities")
        finally:
            other.close()
        assert (written.status_code, written.headers["retry-after"]) == (503, "1")
        assert written.json()["detail"] == "the database is unavailable; retry shortly"
        assert read.status_code == 200, "in WAL mode readers do not wait for the writer"
        assert client.post("/activities", json={"user_id": "u", "content_id": "c"}
                           ).status_code == 201
