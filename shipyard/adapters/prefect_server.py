"""Running a local Prefect server and a process worker as background processes.

Each process is started detached (its own session, so it outlives the command that started
it), logs to a file and leaves a pid file under ``home``; ``start`` is idempotent (a server
that answers is reused) and ``stop`` ends the whole process group. The tests' harness and
``shipyard demo`` use the same code.

The server's API asks every request for an auth string (Prefect's
``PREFECT_SERVER_API_AUTH_STRING``; a client sends ``PREFECT_API_AUTH_STRING`` as HTTP Basic
credentials, and is answered 401 without them). Only ``GET /api/health`` and ``/api/ready``
stay open. The string is made once, kept in ``<home>/api-auth-string`` (mode 0600), and
goes to every Prefect process Shipyard starts through :meth:`PrefectServer.env`: the worker
and the flow processes it starts, ``prefect deploy``, and the CLI and the UI in-process.
So a process on this machine that cannot read Shipyard's home cannot start, cancel or
resume a flow run.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.secret_files import read_or_create_secret

__all__ = ["AUTH_STRING_FILE", "PrefectServer", "PrefectWorker", "ProcessError",
           "basic_auth_header", "prefect_env"]

AUTH_STRING_FILE = "api-auth-string"

SERVER_START_TIMEOUT_SECONDS = 90


class ProcessError(RuntimeError):
    """A background process did not start or stop; the message points at its log."""


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """The environment every Prefect process of this stack shares: its own home, the
    server's URL, no telemetry (the machine is offline)."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "DO_NOT_TRACK": "1",
    }


@dataclass(frozen=True, slots=True)
class PrefectServer:
    """A Prefect API server on 127.0.0.1:``port``; its database is ``database_url``
    (``postgresql+asyncpg://...``) or, without one, a SQLite file under ``home``."""

    home: Path
    port: int = 4200
    database_url: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def _process(self) -> BackgroundProcess:
        return BackgroundProcess("prefect-server", self.home)

    @property
    def log_file(self) -> Path:
        return self._process.log_file

    def log_tail(self) -> str:
        return self._process.log_tail()

    @property
    def auth_string_file(self) -> Path:
        return self.home / AUTH_STRING_FILE

    def auth_string(self) -> str:
        """The API's auth string, made the first time it is asked for (mode 0600). Raises
        :class:`~shipyard.adapters.secret_files.PrivateFileError` when the file is open to
        others or empty, naming the fix."""
        return read_or_create_secret(self.auth_string_file,
                                     lambda: f"shipyard:{secrets.token_urlsafe(32)}",
                                     what="the Prefect API's auth string")

    def env(self) -> dict[str, str]:
        """The environment of a Prefect client of this server: its URL and auth string."""
        return {**prefect_env(self.home, self.api_url),
                "PREFECT_API_AUTH_STRING": self.auth_string()}

    def server_env(self) -> dict[str, str]:
        """What the server process alone needs on top of :meth:`env`: the auth string it
        asks for, and its database."""
        env = {**self.env(), "PREFECT_SERVER_API_AUTH_STRING": self.auth_string()}
        if self.database_url is not None:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        return env

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def guarded(self) -> bool:
        """Whether the server refuses a request without the auth string (401) and takes one
        with it: what a server this class started does."""
        if not self.auth_string_file.exists():  # asking changes nothing: no string, no
            return False                         # server started with it
        probe = f"{self.api_url}/admin/version"
        try:
            without = httpx.get(probe, timeout=5).status_code
            with_it = httpx.get(probe, timeout=5,
                                headers=basic_auth_header(self.auth_string())).status_code
        except httpx.HTTPError:
            return False
        return without == 401 and with_it == 200

    def start(self, *, timeout_seconds: float = SERVER_START_TIMEOUT_SECONDS) -> bool:
        """Start the server unless ours answers already, started with this database and
        auth string; wait until it is healthy. Returns True if it was started now.

        Ours started otherwise (another database, no or another auth string: started by an
        older Shipyard) is restarted. Raises :class:`ProcessError` when a server this class
        did not start answers on the port without asking for the auth string: the stack
        would run with its API open to every local process."""
        self._legacy_database_file.unlink(missing_ok=True)  # could hold a database password
        if self.healthy():
            if self._process.pid() is None:
                if self.guarded():
                    return False
                raise ProcessError(
                    f"a Prefect server Shipyard did not start answers on port {self.port} "
                    "and does not ask for Shipyard's auth string: stop it, or give Shipyard "
                    "another port with SHIPYARD_PREFECT_PORT")
            if self._fingerprint_in_use() == self._fingerprint():
                return False
            # Ours, but on another database (the stack's PostgreSQL came or went) or from
            # before the API asked for an auth string.
            self._process.stop()
        if self._process.pid() is None:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            env = {**os.environ, **self.server_env()}
            self._fingerprint_file.write_text(self._fingerprint())
            self._process.spawn(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                 "--port", str(self.port)], env=env, cwd=self.home)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            if self._process.pid() is None:
                raise ProcessError(f"the Prefect server exited; see {self.log_file}")
            time.sleep(0.25)
        raise ProcessError(f"the Prefect server did not answer within {timeout_seconds:.0f}s; "
                           f"see {self.log_file}")

    def stop(self) -> bool:
        return self._process.stop()

    @property
    def _fingerprint_file(self) -> Path:
        return self.home / "prefect-server.fingerprint"

    @property
    def _legacy_database_file(self) -> Path:
        return self.home / "prefect-server.database"

    def _fingerprint(self) -> str:
        """What the running server was started with: a digest, never the secrets."""
        return _digest(self.database_url or "sqlite", self.auth_string())

    def _fingerprint_in_use(self) -> str | None:
        try:
            return self._fingerprint_file.read_text()
        except FileNotFoundError:
            return None


def basic_auth_header(auth_string: str) -> dict[str, str]:
    """The header Prefect's client sends with ``PREFECT_API_AUTH_STRING``: the whole string,
    base64-encoded, as Basic credentials (the server compares it whole)."""
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PrefectWorker:
    """A worker of ``worker_type`` (Shipyard's ``shipyard-warm`` or Prefect's ``process``)
    for ``pool``, polling it every ``query_seconds`` (Prefect's default is 10 s, which puts
    up to 10 s between a trigger and its run; the warm worker also hears of new runs on
    Prefect's events websocket, so its poll is only the safety net)."""

    server: PrefectServer
    pool: str
    project_dir: Path
    extra_env: tuple[tuple[str, str], ...] = ()
    worker_type: str = "process"
    query_seconds: float = 1.0

    @property
    def _process(self) -> BackgroundProcess:
        return BackgroundProcess(f"prefect-worker-{self.pool}", self.server.home)

    @property
    def log_file(self) -> Path:
        return self._process.log_file

    def running(self) -> bool:
        return self._process.pid() is not None

    def start(self) -> bool:
        """Start the worker unless ours runs already with this configuration (a worker
        started with another store, project or auth string is restarted). Returns True if
        it was started now."""
        # A digest: the store URL and the auth string are secrets.
        configuration = _digest(self.pool, str(self.project_dir), repr(sorted(self.extra_env)),
                                self.server.auth_string(), self.worker_type,
                                f"{self.query_seconds:g}")
        if self.running():
            if self._configuration_file.exists() and \
                    self._configuration_file.read_text() == configuration:
                return False
            self.stop()
        self.server.home.mkdir(parents=True, exist_ok=True)
        self._configuration_file.write_text(configuration)
        env = {**os.environ, **self.server.env(), **dict(self.extra_env),
               "PREFECT_WORKER_QUERY_SECONDS": f"{self.query_seconds:g}",
               "SHIPYARD_PROJECT_DIR": str(self.project_dir)}
        self._process.spawn(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.pool,
             "--type", self.worker_type], env=env, cwd=self.project_dir)
        return True

    def stop(self) -> bool:
        return self._process.stop(terms=2)

    @property
    def _configuration_file(self) -> Path:
        return self.server.home / f"prefect-worker-{self.pool}.configuration"
