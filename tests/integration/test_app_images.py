"""Every app's image builds from its Dockerfile on the local engine, hermetically (the build
has no network: wheels come from the context), and the container it makes serves: health,
readiness (with discovery, itself in a container, where the app depends on it), version,
metrics; it registers with discovery, runs as an ordinary user and stops cleanly on
SIGTERM. Making the context runs nothing of the repository on the host: a local package's
build backend runs in a sandbox."""

from __future__ import annotations

import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from shipyard.adapters.app_image import (
    build_app_image,
    local_packages,
    prepare_build_context,
)
from shipyard.adapters.docker_engine import BASE_IMAGE, DockerEngine, default_engine_url
from stages.catalog import read_descriptor
from tests.support.stack import PIP_CACHE as SHARED_PIP_CACHE
from tests.support.stack import PROJECT

pytestmark = pytest.mark.integration

APPS = sorted(p.parent for p in (PROJECT / "apps").glob("*/app.yaml"))
PIP_CACHE = Path(SHARED_PIP_CACHE)
VERSION = f"9.9.{uuid.uuid4().int % 1000}"


def test_every_app_has_a_dockerfile() -> None:
    assert APPS
    assert [a.name for a in APPS if not (a / "Dockerfile").exists()] == []


def wait_for(url: str, seconds: float = 30) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {seconds} s")
        time.sleep(0.2)


class Images:
    """Builds each app's image once per module, and serves containers of them."""

    def __init__(self, engine: DockerEngine, work: Path) -> None:
        self.engine, self.work = engine, work
        self.built: dict[str, str] = {}
        self.build_output: dict[str, list[str]] = {}

    def build(self, app: str) -> str:
        if app not in self.built:
            lines = self.build_output.setdefault(app, [])
            context = prepare_build_context(PROJECT / "apps" / app, self.work / app,
                                            packages=local_packages(PROJECT / "apps"),
                                            pip_cache=PIP_CACHE, on_line=lines.append)
            assert not (context / "tests").exists(), "tests stay out of the image"
            assert "building servicekit's wheel in a sandbox (no network)" in lines
            assert list((context / "wheels").glob("*.whl")), "the wheels are in the context"
            reference = f"shipyard-test/{app}:{VERSION}"
            built = build_app_image(self.engine, context, reference, version=VERSION,
                                    labels={"dev.shipyard.commit": "0" * 40},
                                    on_line=lines.append)
            assert built.size_bytes > 0
            self.built[app] = reference
        return self.built[app]


@pytest.fixture(scope="module")
def images(delivery_stack: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    built = Images(DockerEngine(default_engine_url()), tmp_path_factory.mktemp("contexts"))
    yield built
    for reference in built.built.values():
        docker.from_env().images.remove(reference, force=True)


@pytest.fixture(scope="module")
def discovery(images: Images) -> Iterator[tuple[str, str]]:
    """A discovery container: (its URL for other containers, its URL from the host)."""
    engine = images.engine
    container, host_port = engine.serve(images.build("discovery"), 8761,
                                        environment={"DRAIN_SECONDS": "0.2"})
    try:
        wait_for(f"http://127.0.0.1:{host_port}/readyz")
        yield (f"http://{engine.address(container)}:8761", f"http://127.0.0.1:{host_port}")
    finally:
        engine.remove(container)


@pytest.mark.parametrize("app_dir", [a for a in APPS if (a / "Dockerfile").exists()],
                         ids=lambda p: p.name)
def test_the_image_builds_offline_and_serves(app_dir: Path, images: Images,
                                             discovery: tuple[str, str]) -> None:
    descriptor = read_descriptor(PROJECT, app_dir.name)
    reference = images.build(app_dir.name)
    in_network, from_host = discovery
    engine = images.engine
    container, host_port = engine.serve(reference, descriptor.port, environment={
        "DRAIN_SECONDS": "0.2", "DISCOVERY_URL": in_network,
        "DISCOVERY_HEARTBEAT_SECONDS": "1", "DISCOVERY_REFRESH_SECONDS": "1"})
    try:
        base = f"http://127.0.0.1:{host_port}"
        wait_for(base + descriptor.liveness_path)
        wait_for(base + descriptor.readiness_path)
        assert httpx.get(f"{base}/version").json()["version"] == VERSION
        metrics = httpx.get(f"{base}/metrics").text
        assert f'version="{VERSION}"' in metrics
        assert f"{descriptor.metrics_prefix}_http_requests_total{{" in metrics
        if "discovery" in descriptor.depends_on:
            registered = wait_for(f"{from_host}/eureka/apps/{app_dir.name}").json()
            assert registered["instances"], "the app registered itself with discovery"
        user = engine.run(reference, ["id", "-u"]).strip()
        assert user != "0", "the app runs as an ordinary user"
    finally:
        exit_code = engine.remove(container, stop_timeout=20)
    assert exit_code == 0, "a SIGTERM ends the app cleanly"


def test_a_build_has_no_network(images: Images, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nRUN python3 -c \"import socket; "
        "print('interfaces:', sorted(n for _, n in socket.if_nameindex()))\"\n")
    reference = f"shipyard-test/no-network:{uuid.uuid4().hex[:12]}"
    lines: list[str] = []
    try:
        build_app_image(images.engine, tmp_path, reference, labels={}, version="0",
                        on_line=lines.append, nocache=True)
    finally:
        docker.from_env().images.remove(reference, force=True)
    assert "interfaces: ['lo']" in lines


EVIL_SETUP = """\
import os, pathlib, socket
from setuptools import setup

seen = {{"uid": os.getuid(), "shipyard": sorted(k for k in os.environ if "SHIPYARD" in k)}}
try:
    pathlib.Path("{marker}").write_text("the build backend ran on the host")
    seen["marker"] = "written"
except OSError as err:
    seen["marker"] = err.strerror
try:
    socket.create_connection(("127.0.0.1", 5000), timeout=2).close()
    seen["registry"] = "reached"
except OSError as err:
    seen["registry"] = err.strerror
pathlib.Path("evilkit.py").write_text(f"SEEN = {{seen!r}}\\n")
setup()
"""


def test_a_local_packages_build_backend_runs_in_a_sandbox_not_on_the_host(
        delivery_stack: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", "postgresql://secret@db/shipyard")
    marker = tmp_path / "marker"
    apps = tmp_path / "apps"
    (apps / "evilkit").mkdir(parents=True)
    (apps / "evilkit" / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "evilkit"\nversion = "0.1"\ndependencies = []\n\n'
        '[tool.setuptools]\npy-modules = ["evilkit"]\n')
    (apps / "evilkit" / "setup.py").write_text(EVIL_SETUP.format(marker=marker))
    (apps / "evilkit" / "evilkit.py").write_text("SEEN = None\n")
    (apps / "app").mkdir()
    (apps / "app" / "requirements.txt").write_text("evilkit\n")
    try:
        context = prepare_build_context(apps / "app", tmp_path / "context",
                                        packages=local_packages(apps), pip_cache=PIP_CACHE,
                                        on_line=lambda line: None)
    finally:
        for kept in (PIP_CACHE.parent / "wheelhouse").glob("local-evilkit-*"):
            shutil.rmtree(kept)
    assert not marker.exists(), "the build backend ran on the host"
    [wheel] = (context / "wheels").glob("evilkit-*.whl")
    with zipfile.ZipFile(wheel) as built:
        seen = built.read("evilkit.py").decode()
    assert "'uid': 10001" in seen and "'shipyard': []" in seen
    assert "'marker': 'No such file or directory'" in seen
    assert "'registry': 'Connection refused'" in seen
