"""The real services integration tests run against, started once per session.

``stack_postgres`` is the stack's PostgreSQL (``shipyard up --only postgres``, on a free
port, data in a temporary home); ``prefect_stack`` adds what ``shipyard up`` brings up for
Prefect (a server on that PostgreSQL, the deployments of prefect.yaml, a process worker) by
running that very command, and ``shipyard down`` at the end. ``source_repo`` is a real git
repository holding this checkout's apps, with a good commit on ``main`` and a broken one on
``broken``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from git import Actor, Repo
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shipyard.adapters.kube_bootstrap import KubeBootstrap
from shipyard.adapters.kube_identity import identity_dir
from shipyard.adapters.prefect_server import AUTH_STRING_FILE
from shipyard.domain.environment_access import SYSTEM
from shipyard.settings import Settings
from tests.support.stack import (
    PIP_CACHE,
    PROJECT,
    SHIPYARD,
    STACK_CACHE,
    WHEELHOUSE,
    Stack,
)

STALE_AFTER = timedelta(hours=3)
_TEST_NAMESPACE = re.compile(r"^t[0-9a-f]{6}-[a-z]+$")  # environments and `system`


def _delete_stale_test_namespaces(admin: KubeBootstrap) -> None:
    """Namespaces of test sessions that never ended (a killed run) hold pods that would
    crowd the one real node out: delete those older than any session lasts. A session
    running beside this one is younger and left alone."""
    now = datetime.now(UTC)
    for name, created in admin.namespaces().items():
        if _TEST_NAMESPACE.fullmatch(name) and created and now - created > STALE_AFTER:
            admin.delete_namespace(name)


@pytest.fixture(scope="session")
def session_environments(stack_home: Stack, real_cluster: Path) -> Path:
    """The session's environments (its namespace prefix plus staging and prod) and their
    identities, made by the product's own `shipyard up --only kubernetes` in the session's
    home: with SHIPYARD_KUBECONFIG naming the running cluster's admin kubeconfig, it starts
    and restarts nothing (no process, flag or fingerprint of the shared cluster changes)
    and only applies the environments and writes the identities. Yields where they are;
    the cd flows deploy with them, the board reads with the viewer."""
    made = stack_home.shipyard("up", "--only", "kubernetes", timeout=300)
    if made.returncode != 0:
        pytest.fail(f"`shipyard up --only kubernetes` failed:\n{made.stdout}\n{made.stderr}")
    assert "no local cluster started" in made.stdout, made.stdout
    return identity_dir(stack_home.home)


@pytest.fixture(scope="session")
def prefect_stack(stack_home: Stack, stack_postgres: str,
                  delivery_stack: dict[str, str], real_cluster: Path,
                  session_environments: Path) -> Iterator[Stack]:
    """Prefect on the stack's PostgreSQL, with the Docker engine and the registry the ci
    pipeline builds and pushes with, and the cluster the cd pipelines deploy to (as the
    session's environments' identities)."""
    stack = stack_home
    started = stack.shipyard("up", "--only", "postgres", "--only", "prefect", timeout=300)
    if started.returncode != 0:
        log = stack.home / "prefect" / "prefect-server.log"
        tail = log.read_text()[-3000:] if log.exists() else "(no server log)"
        pytest.fail(f"`shipyard up` failed:\n{started.stdout}\n{started.stderr}\n{tail}")
    _delete_stale_test_namespaces(KubeBootstrap.from_kubeconfig(real_cluster))
    saved = os.environ.get("SHIPYARD_HOME")
    os.environ["SHIPYARD_PIP_CACHE"] = PIP_CACHE
    os.environ["SHIPYARD_WHEELHOUSE"] = WHEELHOUSE
    # In-process flows and Prefect clients in the tests reach the same server and store.
    # Prefect reads its settings once at import, so the URL and the auth string the API
    # asks for go in through its context.
    os.environ["SHIPYARD_HOME"] = str(stack.home)
    auth_string = (stack.home / "prefect" / AUTH_STRING_FILE).read_text().strip()
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url,
                                         PREFECT_API_AUTH_STRING: auth_string}):
            yield stack
    finally:
        if saved is None:
            os.environ.pop("SHIPYARD_HOME", None)
        else:
            os.environ["SHIPYARD_HOME"] = saved
        stack.shipyard("down", "--only", "prefect", timeout=120)
        # What the pipelines deployed holds pods that would crowd the one real node out.
        delete_environments(KubeBootstrap.from_kubeconfig(real_cluster),
                            stack.env["SHIPYARD_NAMESPACE_PREFIX"])


@dataclass(frozen=True)
class SourceRepo:
    path: Path
    good: str  # sha of main
    broken: str  # sha of branch "broken": one failing discovery test


@pytest.fixture(scope="session")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> SourceRepo:
    path = tmp_path_factory.mktemp("source-repo")
    shutil.copytree(PROJECT / "apps", path / "apps",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    repo = Repo.init(path, initial_branch="main")
    author = Actor("Ada Tester", "ada@example.com")
    repo.index.add([str(p.relative_to(path)) for p in (path / "apps").rglob("*") if p.is_file()])
    good = repo.index.commit("Add the apps", author=author, committer=author)
    repo.create_head("broken")
    repo.heads["broken"].checkout()
    failing = path / "apps" / "discovery" / "tests" / "test_deliberately_broken.py"
    failing.write_text("def test_this_commit_is_broken():\n    assert 1 + 1 == 3\n")
    repo.index.add([str(failing.relative_to(path))])
    broken = repo.index.commit("Break a discovery test", author=author, committer=author)
    repo.heads["main"].checkout()
    return SourceRepo(path, good.hexsha, broken.hexsha)


# -- databases for the store tests --------------------------------------------------------

def postgres_base_url(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL server for the store tests: SHIPYARD_TEST_POSTGRES_URL, else the
    stack's (started on first use)."""
    return os.environ.get("SHIPYARD_TEST_POSTGRES_URL") or str(
        request.getfixturevalue("stack_postgres"))


@contextmanager
def fresh_postgres_database(base_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``base_url``, dropped afterwards."""
    base = make_url(base_url)
    name = f"shipyard_t_{uuid.uuid4().hex[:16]}"
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


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a file in ``tmp_path``, or a fresh PostgreSQL one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shipyard.db'}"
    else:
        with fresh_postgres_database(postgres_base_url(request)) as url:
            yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_store_url(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """As ``store_url``, shared by one module's tests (for a server started once per
    module, such as ``shipyard ui``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'shipyard.db'}"
    else:
        with fresh_postgres_database(postgres_base_url(request)) as url:
            yield url


# -- the delivery stack: Docker engine, registry, base image --------------------------------

DELIVERY_COMPONENTS = ("docker", "registry", "base-image")


@pytest.fixture(scope="session")
def delivery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The Docker engine, the registry and the base image, brought up with `shipyard up`
    (reused when they already run). Their data lives in SHIPYARD_STACK_HOME, by default a
    cache outside the clone, so the base image is built once per machine. What this
    session started, it stops at the end."""
    home = tmp_path_factory.mktemp("stack-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(SHIPYARD_HOME=str(home), COLUMNS="200",
               SHIPYARD_STACK_HOME=os.environ.get("SHIPYARD_STACK_HOME", STACK_CACHE))
    only = [arg for name in DELIVERY_COMPONENTS for arg in ("--only", name)]

    def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                              text=True, timeout=1800, check=False)

    before = json.loads(shipyard("status", "--json", *only).stdout or "{}")
    was_up = {c["name"] for c in before.get("components", []) if c["healthy"]}
    started = shipyard("up", *only)
    if started.returncode != 0:
        pytest.fail(f"`shipyard up` failed:\n{started.stdout}\n{started.stderr}")
    yield env
    for name in DELIVERY_COMPONENTS:
        if name not in was_up and name != "base-image":
            shipyard("down", "--only", name)


# -- the local Kubernetes cluster ------------------------------------------------------------


def _cluster(tmp_path_factory: pytest.TempPathFactory, nodes: str,
             session: Stack) -> Iterator[Path]:
    home = tmp_path_factory.mktemp(f"cluster-home-{nodes}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHIPYARD_") and k != "KUBECONFIG"}
    stack_home = os.environ.get("SHIPYARD_STACK_HOME", STACK_CACHE)
    # `up` makes the environments of its namespace prefix too: the session's, never the
    # default one another user of the shared cluster may deploy to.
    prefix = session.env["SHIPYARD_NAMESPACE_PREFIX"]
    env.update(SHIPYARD_HOME=str(home), COLUMNS="200", SHIPYARD_STACK_HOME=stack_home,
               SHIPYARD_NAMESPACE_PREFIX=prefix)

    def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                              text=True, timeout=3600, check=False)

    status = shipyard("status", "--json", "--only", "kubernetes")
    was_up = status.returncode == 0
    # A cluster that runs with the nodes asked for is used as it is. `up` from another
    # checkout or interpreter than the one that started it would see the cluster DNS
    # server's fingerprint (its command and code) changed and restart it under every
    # other session sharing the cluster.
    detail = "".join(c.get("detail", "") for c in
                     json.loads(status.stdout or "{}").get("components", []))
    if not (was_up and (nodes == "kwok" or "nodes: real" in detail)):
        started = shipyard("up", "--only", "k8s-binaries", "--only", "kubernetes",
                           "--nodes", nodes)
        if started.returncode != 0:
            pytest.fail(f"`shipyard up` failed:\n{started.stdout}\n{started.stderr}")
    admin = Path(stack_home) / "cluster" / "admin.kubeconfig"
    yield admin
    delete_environments(KubeBootstrap.from_kubeconfig(admin), prefix)
    if not was_up:
        shipyard("down", "--only", "kubernetes")


def delete_environments(admin: KubeBootstrap, prefix: str) -> None:
    """Delete the namespaces `shipyard up` made for ``prefix``: the environments (with
    whatever a test deployed there) and the identities' namespace."""
    for name in (*Settings().environments, SYSTEM):
        admin.delete_namespace(prefix + name)


@pytest.fixture(scope="session")
def kwok_cluster(tmp_path_factory: pytest.TempPathFactory, stack_home: Stack) -> Iterator[Path]:
    """A local cluster with KWOK nodes, from `shipyard up` (reused when one runs); yields
    its admin kubeconfig. What this session started, it stops at the end."""
    yield from _cluster(tmp_path_factory, "kwok", stack_home)


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory,
                 delivery_stack: dict[str, str], stack_home: Stack) -> Iterator[Path]:
    """The local cluster with its real node (containerd and a kubelet) as well, pulling
    from the local registry, and the stack's Prometheus scraping its pods (the canaries
    read their metrics from it)."""
    cluster = _cluster(tmp_path_factory, "real", stack_home)
    admin = next(cluster)
    with _prometheus(tmp_path_factory):
        yield admin
    for _ in cluster:  # the cluster's own teardown
        pass


@contextmanager
def _prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`shipyard up --only prometheus` on the shared stack (reused when it answers); what
    this session started, it stops at the end."""
    home = tmp_path_factory.mktemp("prometheus-home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHIPYARD_") and k != "KUBECONFIG"}
    env.update(SHIPYARD_HOME=str(home), COLUMNS="200",
               SHIPYARD_STACK_HOME=os.environ.get("SHIPYARD_STACK_HOME", STACK_CACHE))

    def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SHIPYARD, *args], env=env, cwd=PROJECT, capture_output=True,
                              text=True, timeout=900, check=False)

    was_up = shipyard("status", "--only", "prometheus").returncode == 0
    started = shipyard("up", "--only", "prometheus")
    if started.returncode != 0:
        pytest.fail(f"`shipyard up --only prometheus` failed:\n{started.stdout}\n"
                    f"{started.stderr}")
    try:
        yield
    finally:
        if not was_up:
            shipyard("down", "--only", "prometheus")
