"""The world the data tests run in: databases (a SQLite file in tmp_path, and a fresh
PostgreSQL database per test module when SHIPYARD_TEST_POSTGRES_URL names a server) and
the data service served by a real uvicorn on a free loopback port."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import httpx
import pytest
from data.api import create_app
from data.config import Settings
from servicekit.testing import config_for_tests, running_server
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

VERSION = "2.0.1"
POSTGRES_VARIABLE = "SHIPYARD_TEST_POSTGRES_URL"
# Nothing listens on the discard port: registration fails fast, in the background.
NO_DISCOVERY = "http://127.0.0.1:9"

Serve = Callable[..., AbstractContextManager[str]]


def postgres_server(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL server: the one SHIPYARD_TEST_POSTGRES_URL names, else the Shipyard
    stack's (the `stack_postgres` fixture of the checkout's tests/support, present when
    pytest runs from the checkout). Skipped without either, except in CI."""
    base_url = os.environ.get(POSTGRES_VARIABLE)
    if base_url:
        return base_url
    try:
        return str(request.getfixturevalue("stack_postgres"))
    except pytest.FixtureLookupError:
        message = (f"PostgreSQL variant: set {POSTGRES_VARIABLE} to postgresql+psycopg://"
                   "user@host:port/db (a role that may CREATE DATABASE)")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI must run it: {message}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty PostgreSQL database for this test module, dropped afterwards."""
    base_url = postgres_server(request)
    base = make_url(base_url).set(drivername="postgresql+psycopg")
    name = f"data_t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a database that is empty when the module starts. Its tests share it,
    and therefore each write under users of their own (see `user`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'data.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
def user() -> str:
    """A user id no other test writes under."""
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def serve() -> Serve:
    """`with serve(database_url, **variables) as base_url:` runs the data service with
    these settings, and waits until it is ready unless `ready=False`."""

    @contextmanager
    def serving(database_url: str, *, ready: bool = True, discovery_url: str = NO_DISCOVERY,
                **variables: str) -> Iterator[str]:
        env = {"DATABASE_URL": database_url, **variables}
        app = create_app(config_for_tests(APP_VERSION=VERSION, DISCOVERY_URL=discovery_url),
                         settings=Settings.from_env(env))
        with running_server(app) as base_url:
            if ready:
                _wait_until_ready(base_url)
            yield base_url

    return serving


@pytest.fixture(scope="module")
def data_url(serve: Serve, database_url: str) -> Iterator[str]:
    """The data service on `database_url`, ready, shared by the module's tests."""
    with serve(database_url) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def wait_until_ready() -> Callable[[str], None]:
    """`wait_until_ready(base_url)`: poll /readyz until 200; fail after 10 s."""
    return _wait_until_ready


def _wait_until_ready(base_url: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while (answer := httpx.get(f"{base_url}/readyz")).status_code != 200:
        assert time.monotonic() < deadline, f"not ready within {seconds} s: {answer.text}"
        time.sleep(0.05)
