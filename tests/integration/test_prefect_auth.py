"""A Prefect server started before its API asked for an auth string (by an older Shipyard)
is restarted with one: a real server on SQLite in a temporary home, no worker."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import httpx
import pytest

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.prefect_server import PrefectServer, prefect_env
from tests.support.stack import free_port

pytestmark = pytest.mark.integration


def start_as_an_older_shipyard_did(server: PrefectServer) -> int:
    """Start ``server`` without an auth string, noting its database in plain text as
    Shipyard did before; return its pid once it answers."""
    server.home.mkdir(parents=True)
    (server.home / "prefect-server.database").write_text("sqlite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(prefect_env(server.home, server.api_url), PREFECT_UI_ENABLED="false")
    process = BackgroundProcess("prefect-server", server.home)
    pid = process.spawn([sys.executable, "-m", "prefect", "server", "start", "--host",
                         "127.0.0.1", "--port", str(server.port)], env=env, cwd=server.home)
    deadline = time.monotonic() + 120
    while not server.healthy():
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.25)
    return pid


def test_a_server_started_without_the_auth_string_is_restarted_with_it(tmp_path: Path):
    server = PrefectServer(tmp_path / "prefect", free_port())
    old_pid = start_as_an_older_shipyard_did(server)
    flow_runs = f"{server.api_url}/flow_runs/filter"
    try:
        assert httpx.post(flow_runs, json={}, timeout=30).status_code == 200  # open to all
        assert not server.guarded()

        assert server.start() is True  # what `shipyard up` does

        assert server.guarded()
        assert httpx.post(flow_runs, json={}, timeout=30).status_code == 401
        assert BackgroundProcess("prefect-server", server.home).pid() not in (None, old_pid)
        assert stat.S_IMODE(server.auth_string_file.stat().st_mode) == 0o600
        assert not (server.home / "prefect-server.database").exists()
        assert server.start() is False  # and then it is left alone
    finally:
        server.stop()
