"""Readiness follows the database: the service starts without it, says why it is not
ready, refuses work with 503, and turns ready by itself once the database answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
from data.bootstrap import SchemaBootstrap
from fastapi import FastAPI

Serve = Callable[..., AbstractContextManager[str]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_database_it_cannot_open_makes_it_unready_until_it_can(
        serve: Serve, tmp_path: Path, wait_until_ready: Callable[[str], None]) -> None:
    folder = tmp_path / "not-mounted-yet"
    with serve(f"sqlite:///{folder / 'data.db'}", ready=False) as base_url:
        readiness = httpx.get(f"{base_url}/readyz")
        assert readiness.status_code == 503
        assert "schema is not created yet" in readiness.json()["failed"]["database"]
        write = httpx.post(f"{base_url}/activities", json={"user_id": "u", "content_id": "c"})
        assert write.status_code == 503
        assert write.headers["retry-after"] == "1"
        assert httpx.get(f"{base_url}/healthz").status_code == 200, "alive all along"

        folder.mkdir()
        wait_until_ready(base_url)
        write = httpx.post(f"{base_url}/activities", json={"user_id": "u", "content_id": "c"})
        assert write.status_code == 201


def test_a_postgresql_server_that_does_not_answer_makes_it_unready(serve: Serve) -> None:
    url = f"postgresql+psycopg://data@127.0.0.1:{closed_port()}/activity"
    with serve(url, ready=False) as base_url:
        readiness = httpx.get(f"{base_url}/readyz")
        assert readiness.status_code == 503
        assert "OperationalError" in readiness.json()["failed"]["database"]
        read = httpx.get(f"{base_url}/users/u/activities")
        assert read.status_code == 503
        assert "database is not ready" in read.json()["detail"]


class FlakyStore:
    """Stands in for ActivityStore: the schema is created at once; ping fails on demand."""

    def __init__(self) -> None:
        self.answering = True

    def ensure_schema(self) -> None:
        pass

    def ping(self) -> bool:
        if not self.answering:
            raise ConnectionError("server closed the connection unexpectedly")
        return True

    def close(self) -> None:
        pass


def test_once_started_readiness_follows_every_ping_of_the_database() -> None:
    store = FlakyStore()
    bootstrap = SchemaBootstrap(store)  # type: ignore[arg-type]
    check = bootstrap.readiness_check()

    async def probe() -> bool | Exception:
        try:
            return await check.probe()  # type: ignore[misc]
        except Exception as err:
            return err

    async def scenario() -> list[bool | Exception]:
        async with bootstrap.lifespan(FastAPI()):
            while not bootstrap.ready:
                await asyncio.sleep(0.01)
            answers = [await probe()]
            store.answering = False
            answers.append(await probe())
            store.answering = True
            answers.append(await probe())
            return answers

    up, down, back = asyncio.run(scenario())
    assert (up, back) == (True, True)
    assert isinstance(down, ConnectionError)
