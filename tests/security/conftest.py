"""One real ``shipyard ui`` (uvicorn, SQLite store) for the security tests of this package,
with an admin, a deployer and a viewer and their API tokens, a webhook secret, and one
extra allowed Host name. Accounts, sessions and runs are made in the store from this
process, as the CLI or a flow makes them: every change the server sees comes from
another process, through the store.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from shipyard.domain.access import Role
from shipyard.store import Accounts, Store
from shipyard.store.models import Base
from tests.support.stack import free_port
from tests.support.webhooks import Ui, UiFailed, serve_ui

PASSWORD = "a long enough password"
WEBHOOK_SECRET = "security tests' webhook secret"
EXTRA_HOST = "ci.example.test"
BOOKKEEPING = {("api_tokens", "last_used_at")}
"""Columns a refused request may still touch: a token's last use is noted before its role
is checked (at most once a minute)."""


@dataclass
class Site:
    """A running ui, its store, and who may use it."""

    ui: Ui
    store: Store
    home: Path
    tokens: dict[str, str]
    env: dict[str, str]
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.ui.url

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.store)

    def request(self, method: str, path: str, *, token: str | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.url + path, headers=sent | (headers or {}),
                             timeout=30, **kwargs)

    def user(self, name: str, role: Role = Role.DEPLOYER) -> str:
        """A new user with ``role``, named ``name`` plus a unique suffix."""
        unique = f"{name}{time.monotonic_ns() % 10_000_000}"
        self.accounts.add_user(unique, PASSWORD, role)
        return unique

    def token(self, owner: str, role: Role = Role.DEPLOYER) -> tuple[str, int]:
        token, record = self.accounts.create_token("security test", owner=owner, role=role)
        return token, record.id

    def browser(self) -> httpx.Client:
        """A client keeping cookies, as a browser does; closed at the end."""
        client = httpx.Client(base_url=self.url, timeout=30)
        self.clients.append(client)
        return client

    def signed_in(self, name: str, password: str = PASSWORD) -> httpx.Client:
        """A browser signed in through the login form."""
        client = self.browser()
        answer = client.post("/login", data={"username": name, "password": password,
                                             "csrf_token": csrf_of(client), "next": "/runs"})
        assert answer.status_code == 303, answer.text
        return client

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (but :data:`BOOKKEEPING`), to show nothing changed."""
        rows = {}
        with self.store.engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                columns = [c.name for c in table.columns
                           if (table.name, c.name) not in BOOKKEEPING]
                listed = ", ".join(f'"{c}"' for c in columns)
                rows[table.name] = sorted(
                    tuple(map(repr, r)) for r in connection.execute(
                        text(f'SELECT {listed} FROM "{table.name}"')))  # noqa: S608
        return rows


def csrf_of(client: httpx.Client) -> str:
    """The CSRF token of ``client``'s cookie, as the login form shows it."""
    page = client.get("/login").text
    return page.split('name="csrf_token" value="')[1].split('"')[0]


def ui_env(home: Path, store_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``shipyard ui`` on ``store_url``; its Prefect is a closed port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_DATABASE_URL=store_url,
               PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
               SHIPYARD_HAND_OVER_INTERVAL_SECONDS="60", **extra)
    return env


@contextlib.contextmanager
def running_site(tmp_path_factory: pytest.TempPathFactory, name: str,
                 **extra_env: str) -> Iterator[Site]:
    home = tmp_path_factory.mktemp(name)
    store_url = f"sqlite:///{home / 'shipyard.db'}"
    store = Store.open(store_url)
    accounts = Accounts(store)
    tokens = {}
    for user, role in (("alice", Role.ADMIN), ("dave", Role.DEPLOYER), ("vera", Role.VIEWER)):
        accounts.add_user(user, PASSWORD, role)
        tokens[role.value] = accounts.create_token(f"{user}'s", owner=user, role=role)[0]
    env = ui_env(home, store_url, **extra_env)
    site = None
    try:
        with serve_ui(env, home) as ui:
            site = Site(ui, store, home, tokens, env)
            yield site
    except UiFailed as err:
        pytest.fail(str(err))
    finally:
        for client in site.clients if site else []:
            client.close()
        store.close()


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The ui most security tests share: default settings, a webhook secret, and
    ``ci.example.test`` allowed as a Host."""
    with running_site(tmp_path_factory, "security-ui", SHIPYARD_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      SHIPYARD_UI_ALLOWED_HOSTS=EXTRA_HOST) as running:
        yield running
