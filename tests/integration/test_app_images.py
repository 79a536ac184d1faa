"""Every app's image builds from its Dockerfile on the local engine, hermetically (the build
has no network: wheels come from the context), and the container it makes serves: health,
readiness, version, metrics; and it stops cleanly on SIGTERM."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from shipyard.adapters.app_image import (
    build_app_image,
    local_packages,
    prepare_build_context,
)
from shipyard.adapters.docker_engine import DockerEngine, default_engine_url

from .conftest import PROJECT, STACK_CACHE

pytestmark = pytest.mark.integration

APPS = sorted(p.parent for p in (PROJECT / "apps").glob("*/app.yaml"))
PIP_CACHE = Path(STACK_CACHE) / "pip-cache"


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


@pytest.mark.parametrize("app_dir", [a for a in APPS if (a / "Dockerfile").exists()],
                         ids=lambda p: p.name)
def test_the_image_builds_offline_and_serves(app_dir: Path, delivery_stack: dict[str, str],
                                             tmp_path: Path) -> None:
    lines: list[str] = []
    context = prepare_build_context(app_dir, tmp_path / "context",
                                    packages=local_packages(PROJECT / "apps"),
                                    pip_cache=PIP_CACHE, on_line=lines.append)
    assert not (context / "tests").exists(), "tests stay out of the image"
    assert list((context / "wheels").glob("*.whl")), "the wheels are in the context"

    engine = DockerEngine(default_engine_url())
    version = f"9.9.{uuid.uuid4().int % 1000}"
    reference = f"shipyard-test/{app_dir.name}:{version}"
    built = build_app_image(engine, context, reference, version=version,
                            labels={"dev.shipyard.commit": "0" * 40}, on_line=lines.append)
    assert built.size_bytes > 0

    port = int(yaml.safe_load((app_dir / "app.yaml").read_text())["port"])
    container, host_port = engine.serve(reference, port, environment={"DRAIN_SECONDS": "0.2"})
    try:
        base = f"http://127.0.0.1:{host_port}"
        wait_for(f"{base}/healthz")
        wait_for(f"{base}/readyz")
        assert httpx.get(f"{base}/version").json()["version"] == version
        metrics = httpx.get(f"{base}/metrics").text
        assert f'version="{version}"' in metrics
        assert "_http_requests_total{" in metrics
        user = engine.run(reference, ["id", "-u"]).strip()
        assert user != "0", "the app runs as an ordinary user"
    finally:
        exit_code = engine.remove(container, stop_timeout=20)
    assert exit_code == 0, "a SIGTERM ends the app cleanly"
