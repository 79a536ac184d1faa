"""The stack's PostgreSQL component, driven through `shipyard up | status | down` in a home
of its own (its own server on a free port), so stopping it disturbs no other test; and the
session's server (`stack_postgres`), which every connection must give its password."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from shipyard.adapters.postgres import SUPERUSER, PostgresServer
from shipyard.domain.pipeline import StageSpec
from shipyard.settings import Settings
from shipyard.store import Store
from tests.support.stack import PROJECT, Stack, free_port

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
    password = (tmp_path / "stack" / "postgres" / "shipyard.password").read_text().strip()
    assert settings.store_url == (f"postgresql+psycopg://shipyard:{quote(password, safe='')}"
                                  f"@127.0.0.1:{port}/shipyard")
    assert password not in first.stdout + first.stderr, "the password is never printed"
    try:
        again = _shipyard(env, "up")
        assert again.returncode == 0, again.stderr
        assert "Nothing to do" in again.stdout

        status = json.loads(_shipyard(env, "status", "--json").stdout)
        (component,) = status["components"]
        assert component["healthy"] is True
        assert component["address"] == f"127.0.0.1:{port}"
        assert component["version"].split(".")[0].isdigit()
        assert status["store"] == settings.store_url.replace(quote(password, safe=""), "***")

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


# -- passwords: the session's server -------------------------------------------------------

def _session_server(stack_home: Stack) -> PostgresServer:
    return PostgresServer(stack_home.home / "stack" / "postgres",
                          int(stack_home.env["SHIPYARD_POSTGRES_PORT"]))


def _refusal(tmp_path: Path, **connection: Any) -> str:
    """Why the server refuses ``connection`` (a failure if it accepts). No password comes
    from ~/.pgpass: the pass file named does not exist."""
    try:
        psycopg.connect(dbname="postgres", connect_timeout=5,
                        passfile=str(tmp_path / "no-passfile"), **connection).close()
    except psycopg.OperationalError as err:
        return str(err)
    pytest.fail(f"PostgreSQL accepted {connection}")


def test_the_stacks_postgres_refuses_every_connection_without_its_password(
        stack_home: Stack, stack_postgres: str, tmp_path: Path) -> None:
    server = _session_server(stack_home)
    for user in (SUPERUSER, "shipyard"):
        assert "no password supplied" in _refusal(tmp_path, host="127.0.0.1",
                                                  port=server.port, user=user)
        # The Unix socket (`local` in pg_hba.conf) asks for it as well.
        assert "no password supplied" in _refusal(tmp_path, host=str(server.home),
                                                  port=server.port, user=user)
    assert "password authentication failed" in _refusal(
        tmp_path, host="127.0.0.1", port=server.port, user=SUPERUSER, password="guess")
    with server.connect() as admin:
        methods = admin.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules")
        assert [row[0] for row in methods] == ["scram-sha-256"]
        hashes = admin.execute("SELECT rolname, rolpassword FROM pg_authid "
                               "WHERE rolname IN ('postgres', 'shipyard') ORDER BY 1")
        for role, stored in hashes:
            assert str(stored).startswith("SCRAM-SHA-256$4096:"), f"{role}: a verifier only"


def test_the_store_works_with_the_password_its_private_url_carries(
        stack_home: Stack, stack_postgres: str, tmp_path: Path) -> None:
    server = _session_server(stack_home)
    password = (server.home / "shipyard.password").read_text().strip()
    assert f"shipyard:{quote(password, safe='')}@" in stack_postgres
    store = Store.open(stack_postgres)
    try:
        run = store.create_run("ci", [StageSpec("checkout")], app="discovery", trigger="test")
        assert store.get_run(run.id).app == "discovery"
    finally:
        store.close()
    # Over the socket too, given the password.
    psycopg.connect(host=str(server.home), port=server.port, user="shipyard",
                    password=password, dbname="shipyard").close()
    for secret in ("store.url", "shipyard.password", "postgres.password"):
        assert stat.S_IMODE((server.home / secret).stat().st_mode) == 0o600, secret
    assert stat.S_IMODE(server.home.stat().st_mode) == 0o700


# -- passwords: a stack made with `trust` by an older Shipyard -----------------------------

def _a_stack_made_with_trust(home: Path, port: int) -> tuple[PostgresServer, str]:
    """What `shipyard up --only postgres` made before passwords: initdb --auth=trust, the
    role without a password, the store URL without one in a file of mode 0644, directories
    of mode 0755. Returns the server (running) and that URL."""
    server = PostgresServer(home / "stack" / "postgres", port)
    server.home.mkdir(parents=True)
    server._run(["initdb", "-D", str(server.data_dir), "--auth=trust", "-U", SUPERUSER,
                 "-E", "UTF8", "--locale=C.UTF-8"], check=True)
    server.start(fast_and_unsafe=True)
    with server.connect() as admin:  # no password kept yet: trust lets us in
        admin.execute("CREATE ROLE shipyard LOGIN CREATEDB")
        for database in ("shipyard", "prefect"):
            admin.execute(f"CREATE DATABASE {database} OWNER shipyard")
    url = f"postgresql+psycopg://shipyard@127.0.0.1:{port}/shipyard"
    record = server.home / "store.url"
    record.write_text(url + "\n")
    record.chmod(0o644)
    for directory in (home, home / "stack", server.home):
        directory.chmod(0o755)
    return server, url


def test_up_moves_a_stack_made_with_trust_to_passwords_and_keeps_its_data(
        tmp_path: Path) -> None:
    port = free_port()
    env, settings = _env(tmp_path, port), _settings(tmp_path, port)
    server, old_url = _a_stack_made_with_trust(tmp_path, port)
    try:
        assert server.accepts_without_password()
        store = Store.open(old_url)
        run_id = store.create_run("ci", [StageSpec("checkout")], app="gateway",
                                  trigger="test").id
        store.close()
        record = settings.stack_database_file

        moved = _shipyard(env, "up")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "passwords required (scram-sha-256; was trust)" in moved.stdout
        assert "password of shipyard" in moved.stdout
        warned = " ".join(moved.stderr.split())
        assert f"{server.home} was mode 0755" in warned
        assert f"{record} was mode 0644" in warned

        assert not server.accepts_without_password()
        assert not server.accepts_without_password(host=str(server.home))
        assert record.read_text().strip() != old_url
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        for directory in (tmp_path, tmp_path / "stack", server.home):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        reopened = Store.open(settings.store_url)
        assert reopened.get_run(run_id).app == "gateway", "the data is kept"
        reopened.close()

        again = _shipyard(env, "up")
        assert again.returncode == 0, again.stderr
        assert "Nothing to do" in again.stdout
        assert "warning" not in again.stderr
    finally:
        server.stop()
