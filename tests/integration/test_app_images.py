"""Every app's image builds from its Dockerfile on the local engine, hermetically (the build
has no network: wheels come from the context), and the container it makes serves: health,
readiness (with discovery, itself in a container, where the app depends on it), version,
metrics; it registers with discovery, runs as an ordinary user and stops cleanly on
SIGTERM."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.adapters.app_image import (
    build_app_image,
    local_packages,
    prepare_build_context,
)
from shipyard.adapters.docker_engine import DockerEngine, default_engine_url
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
           tmp_path_factory: pytest.TempPathFactory) -> Images:
    return Images(DockerEngine(default_engine_url()), tmp_path_factory.mktemp("contexts"))


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
