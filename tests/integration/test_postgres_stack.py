"""The stack's PostgreSQL component, driven through `shipyard up | status | down` in a home
of its own (its own server on a free port), so stopping it disturbs no other test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.adapters.postgres import PostgresServer
from shipyard.domain.pipeline import StageSpec
from shipyard.settings import Settings
from shipyard.store import Store
from tests.support.stack import PROJECT, free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")),
    reason="needs Debian's postgresql package, which only root may install")


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PREFECT_"))}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_POSTGRES_PORT=str(port), COLUMNS="200")
    return env


def _shipyard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shipyard.cli", *args, "--only", "postgres"],
                          env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600,
                          check=False)


def _settings(home: Path, port: int) -> Settings:
    return Settings(home=home, stack_home=home / "stack", postgres_port=port, database_url=None)


def test_up_makes_postgres_the_store_and_down_keeps_its_data(tmp_path: Path) -> None:
    port = free_port()
    env, settings = _env(tmp_path, port), _settings(tmp_path, port)
    assert settings.store_url.startswith("sqlite:///")

    first = _shipyard(env, "up")
    assert first.returncode == 0, first.stderr
    assert f"PostgreSQL started on 127.0.0.1:{port}" in first.stdout
    assert settings.store_url == f"postgresql+psycopg://shipyard@127.0.0.1:{port}/shipyard"
    try:
        again = _shipyard(env, "up")
        assert again.returncode == 0, again.stderr
        assert "Nothing to do" in again.stdout

        status = json.loads(_shipyard(env, "status", "--json").stdout)
        (component,) = status["components"]
        assert component["healthy"] is True
        assert component["address"] == f"127.0.0.1:{port}"
        assert component["version"].split(".")[0].isdigit()
        assert status["store"] == settings.store_url

        store = Store.open(settings.store_url)
        run_id = store.create_run("ci", [StageSpec("checkout")], app="discovery",
                                  trigger="test").id
        store.close()

        down = _shipyard(env, "down")
        assert down.returncode == 0, down.stderr
        assert "postgres: stopped" in down.stdout
        assert settings.store_url.startswith("sqlite:///"), "without the stack, SQLite"
        assert _shipyard(env, "status").returncode == 1

        assert _shipyard(env, "up").returncode == 0
        reopened = Store.open(settings.store_url)
        assert reopened.get_run(run_id).app == "discovery", "data survives down and up"
        reopened.close()
    finally:
        _shipyard(env, "down", "--purge")
    assert not (tmp_path / "stack" / "postgres" / "data").exists()


def test_a_port_taken_by_something_else_is_a_clear_error_and_nothing_is_recorded(
        tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = int(squatter.getsockname()[1])
        env = _env(tmp_path, port)
        failed = _shipyard(env, "up")
    assert failed.returncode == 1
    assert "postgres" in failed.stderr
    assert "SHIPYARD_POSTGRES_PORT" in failed.stderr
    assert not _settings(tmp_path, port).stack_database_file.exists()
    server = PostgresServer(tmp_path / "stack" / "postgres", port)
    assert server.pid() is None, "nothing half-started is left running"
