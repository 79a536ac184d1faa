"""Running a local Prefect server and a process worker as background processes.

Each process is started detached (its own session, so it outlives the command that started
it), logs to a file and leaves a pid file under ``home``; ``start`` is idempotent (a server
that answers is reused) and ``stop`` ends the whole process group. The tests' harness and
``shipyard demo`` use the same code.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shipyard.adapters.background import BackgroundProcess

__all__ = ["PrefectServer", "PrefectWorker", "ProcessError", "prefect_env"]

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

    def env(self) -> dict[str, str]:
        return prefect_env(self.home, self.api_url)

    def server_env(self) -> dict[str, str]:
        """What the server process alone needs on top of :meth:`env`: its database."""
        if self.database_url is None:
            return self.env()
        return {**self.env(), "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url}

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, *, timeout_seconds: float = SERVER_START_TIMEOUT_SECONDS) -> bool:
        """Start the server unless one answers already; wait until it is healthy.
        Returns True if it was started now."""
        if self.healthy():
            if self._process.pid() is None or self._database_in_use() == self._database():
                return False
            # Ours, but on another database (the stack's PostgreSQL came or went).
            self._process.stop()
        if self._process.pid() is None:
            env = {**os.environ, **self.server_env()}
            self.home.mkdir(parents=True, exist_ok=True)
            self._database_file.write_text(self._database())
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
    def _database_file(self) -> Path:
        return self.home / "prefect-server.database"

    def _database(self) -> str:
        # A fingerprint is kept, not the URL: the URL carries the database's password.
        return _fingerprint(self.database_url or "sqlite")

    def _database_in_use(self) -> str | None:
        try:
            return self._database_file.read_text()
        except FileNotFoundError:
            return None


@dataclass(frozen=True, slots=True)
class PrefectWorker:
    """A process worker polling ``pool`` every second (Prefect's default is 10 s, which
    puts up to 10 s between a trigger and its run)."""

    server: PrefectServer
    pool: str
    project_dir: Path
    extra_env: tuple[tuple[str, str], ...] = ()

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
        started with another store or project is restarted). Returns True if it was
        started now."""
        # Fingerprinted: the environment carries the store's URL, password included.
        configuration = _fingerprint(repr((self.pool, str(self.project_dir),
                                           sorted(self.extra_env))))
        if self.running():
            if self._configuration_file.exists() and \
                    self._configuration_file.read_text() == configuration:
                return False
            self.stop()
        self.server.home.mkdir(parents=True, exist_ok=True)
        self._configuration_file.write_text(configuration)
        env = {**os.environ, **self.server.env(), **dict(self.extra_env),
               "PREFECT_WORKER_QUERY_SECONDS": "1",
               "SHIPYARD_PROJECT_DIR": str(self.project_dir)}
        self._process.spawn(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.pool,
             "--type", "process"], env=env, cwd=self.project_dir)
        return True

    def stop(self) -> bool:
        return self._process.stop(terms=2)

    @property
    def _configuration_file(self) -> Path:
        return self.server.home / f"prefect-worker-{self.pool}.configuration"


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
