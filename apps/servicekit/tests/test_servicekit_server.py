"""Graceful shutdown of a real uvicorn process: drain, stop accepting, finish, clean up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
DEADLINE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Service:
    process: subprocess.Popen[str]
    url: str
    release: Path
    log: list[dict[str, object]]

    def messages(self) -> list[str]:
        return [str(entry["message"]) for entry in list(self.log)]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "HOST": "127.0.0.1",
           "PORT": str(port), "DRAIN_SECONDS": "3", "SHUTDOWN_TIMEOUT_SECONDS": "20",
           "APP_VERSION": "9.9.9", "RELEASE_FILE": str(tmp_path / "release")}
    process = subprocess.Popen([sys.executable, str(HERE / "slow_service.py")], env=env,
                               stderr=subprocess.PIPE, text=True)
    log: list[dict[str, object]] = []

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(json.loads(line))  # a line that is not JSON fails the test here

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    service = Service(process, f"http://127.0.0.1:{port}", tmp_path / "release", log)
    try:
        wait_for(lambda: answers(service.url + "/readyz") == 200, "readiness")
        yield service
    finally:
        service.release.touch()
        if process.poll() is None:
            process.kill()
        process.wait(DEADLINE_SECONDS)
        reader.join(DEADLINE_SECONDS)


def answers(url: str) -> int | None:
    """The status `url` answers with, or None if no connection can be made."""
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.TransportError:
        return None


def test_sigterm_drains_then_finishes_the_in_flight_request_then_shuts_down(
    service: Service,
) -> None:
    slow: dict[str, int] = {}
    caller = threading.Thread(target=lambda: slow.update(
        status=httpx.get(service.url + "/slow", timeout=DEADLINE_SECONDS).status_code))
    caller.start()
    wait_for(lambda: httpx.get(service.url + "/entered").json()["entered"], "/slow entered")

    service.process.send_signal(signal.SIGTERM)

    # Still serving, but no longer ready: Kubernetes takes the pod out of the endpoints.
    wait_for(lambda: answers(service.url + "/readyz") == 503, "readiness to turn false")
    # After DRAIN_SECONDS the listener closes while /slow is still in flight.
    wait_for(lambda: answers(service.url + "/healthz") is None, "new connections refused")
    assert caller.is_alive() and service.process.poll() is None

    service.release.touch()
    caller.join(DEADLINE_SECONDS)
    assert slow == {"status": 200}
    assert service.process.wait(DEADLINE_SECONDS) == 0
    messages = service.messages()
    assert messages.index("drain hook ran") < messages.index("slow request finished")
    assert messages.index("slow request finished") < messages.index("lifespan shutdown")


def test_every_log_line_is_json_carrying_app_and_version(service: Service) -> None:
    httpx.get(service.url + "/version", headers={"X-Request-ID": "req-log"})
    service.process.send_signal(signal.SIGTERM)
    service.process.wait(DEADLINE_SECONDS)
    access = [e for e in service.log if e.get("request_id") == "req-log"]
    assert [(e["app"], e["version"], e["route"], e["status"]) for e in access] == [
        ("slow", "9.9.9", "/version", 200)]
    assert all(e["app"] == "slow" for e in service.log)
