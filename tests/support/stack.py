"""The stack's PostgreSQL for every test that needs one (the store's, the data app's): a
pytest plugin, loaded by the root ``conftest.py``, so the apps' own tests and the
integration tests share one server per session. It is started with the product's own
``shipyard up --only postgres`` in a temporary home, on a free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard.adapters.postgres import PostgresServer
from shipyard.settings import Settings

__all__ = ["PIP_CACHE", "PROJECT", "SHIPYARD", "STACK_CACHE", "WHEELHOUSE", "Stack", "free_port",
           "in_ci", "refused_port"]

STACK_CACHE = "/var/tmp/shipyard-ci/stack"
"""What is slow to make (the base image, the cluster's binaries, pip's cache) is kept here,
outside the clone, so the next session on this machine reuses it."""
PIP_CACHE = f"{STACK_CACHE}/pip-cache"
WHEELHOUSE = f"{STACK_CACHE}/wheelhouse"
"""The wheel sets the builds and the test images gather, shared by every session, as the
pip cache is."""

PROJECT = Path(__file__).resolve().parents[2]
SHIPYARD = [sys.executable, "-m", "shipyard.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port bound but never listened on, while the block runs: a connection to
    it is refused at once, and, unlike a port that was free a moment ago, no other process
    (a Prefect server of another session, say) can start listening on it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@dataclass(frozen=True)
class Stack:
    """A running stack and the environment that reaches it."""

    home: Path
    env: dict[str, str]
    api_url: str = ""

    @property
    def store_url(self) -> str:
        """The store the stack's commands and flows record into."""
        return Settings(home=self.home, stack_home=self.home / "stack",
                        database_url=None).store_url

    def shipyard(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the ``shipyard`` CLI against this stack; never raises on a non-zero exit."""
        return self.shipyard_with(self.env, *args, timeout=timeout)

    def shipyard_with(self, env: dict[str, str], *args: str,
                      timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the CLI with another environment (e.g. another project directory)."""
        return subprocess.run(
            [*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True, text=True,
            timeout=timeout, check=False,
        )


@pytest.fixture(scope="session")
def stack_home(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """A home of its own for the session's stack, with free ports, nothing started."""
    home = tmp_path_factory.mktemp("shipyard-home")
    prefect_port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    cluster_home = os.environ.get("SHIPYARD_STACK_HOME", STACK_CACHE)
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_PREFECT_PORT=str(prefect_port),
               SHIPYARD_POSTGRES_PORT=str(free_port()), SHIPYARD_PROJECT_DIR=str(PROJECT),
               SHIPYARD_PIP_CACHE=PIP_CACHE, COLUMNS="200",
               # Wheel sets gathered once per machine, as the pip cache is.
               SHIPYARD_WHEELHOUSE=WHEELHOUSE, PREFECT_UI_ENABLED="false",
               # The cd pipelines deploy to the session's cluster (the `real_cluster`
               # fixture), into namespaces of this session only, as the identities that
               # `shipyard up --only kubernetes` makes with this admin kubeconfig (the
               # `session_environments` fixture); the flows never use it themselves.
               SHIPYARD_KUBECONFIG=f"{cluster_home}/cluster/admin.kubeconfig",
               SHIPYARD_NAMESPACE_PREFIX=f"t{uuid.uuid4().hex[:6]}-",
               SHIPYARD_WARM_SECONDS="0", SHIPYARD_ROLLOUT_TIMEOUT_SECONDS="90",
               # Analysis windows of seconds, not hours: enough points to judge on.
               SHIPYARD_CANARY_WINDOW_SECONDS="16", SHIPYARD_CANARY_INTERVAL_SECONDS="2",
               # Every canary measured through Prometheus and through the pods' scrapes
               # over the same window: both verdicts are in its report.
               SHIPYARD_CANARY_CROSS_CHECK="true",
               SHIPYARD_CHAOS_WINDOW_SECONDS="6",
               # A flow run Prefect says ended is the sweeper's after seconds, not half
               # a minute (tests/integration/test_sweeper.py waits this long).
               SHIPYARD_SWEEP_GRACE_SECONDS=str(SWEEP_GRACE_SECONDS),
               # Flows beat every 2 s, so a sweeper told to wait 8 s for a beat (the
               # fault suite's) knows a dead one from a live one.
               SHIPYARD_HEARTBEAT_SECONDS="2")
    return Stack(home, env, f"http://127.0.0.1:{prefect_port}/api")


SWEEP_GRACE_SECONDS = 2.0

POSTGRES_HOWTO = (
    "the stack's PostgreSQL needs Debian's postgresql package (root installs it), or set "
    "SHIPYARD_TEST_POSTGRES_URL to a server whose role may CREATE DATABASE"
)


@pytest.fixture(scope="session")
def stack_postgres(stack_home: Stack) -> Iterator[str]:
    """The stack's PostgreSQL, started by `shipyard up --only postgres`; yields the store
    URL on it, which carries the role's password. Skips where it cannot run, but fails in
    CI, where it must."""
    started = stack_home.shipyard("up", "--only", "postgres", timeout=900)
    if started.returncode != 0:
        message = f"`shipyard up --only postgres` failed:\n{started.stdout}\n{started.stderr}"
        if in_ci() or os.geteuid() == 0:
            pytest.fail(message)
        pytest.skip(f"{message}\n{POSTGRES_HOWTO}")
    # The tests drop their databases WITH (FORCE). An autovacuum worker busy in one belongs
    # to no role the shipyard role is a member of, and PostgreSQL refuses to end it without
    # pg_signal_backend: the drop failed now and then. (As the superuser, with the password
    # `up` keeps in the stack's postgres directory: no connection goes without one.)
    server = PostgresServer(stack_home.home / "stack" / "postgres",
                            int(stack_home.env["SHIPYARD_POSTGRES_PORT"]))
    with server.connect() as admin:
        admin.execute("GRANT pg_signal_backend TO shipyard")
    try:
        yield stack_home.store_url
    finally:
        stack_home.shipyard("down", "--only", "postgres", timeout=120)



def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")
