"""Graceful shutdown of a real uvicorn process: drain, stop accepting, finish, clean up."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servicekit.testing import ModuleProcess, eventually, module_process

HERE = Path(__file__).resolve().parent
DEADLINE_SECONDS = 20.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    eventually(condition, what, DEADLINE_SECONDS, interval=0.02)


@dataclass
class Service:
    process: ModuleProcess
    release: Path

    @property
    def url(self) -> str:
        return self.process.base_url

    def messages(self) -> list[str]:
        return [str(entry["message"]) for entry in self.process.log_entries()]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """tests/slow_service.py as `python -m slow_service`, ready."""
    release = tmp_path / "release"
    env = {"DRAIN_SECONDS": "3", "SHUTDOWN_TIMEOUT_SECONDS": "20", "APP_VERSION": "9.9.9",
           "RELEASE_FILE": str(release)}
    with module_process("slow_service", HERE, env) as process:
        try:
            yield Service(process, release)
        finally:
            release.touch()


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
    assert caller.is_alive() and service.process.popen.poll() is None

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
    log = service.process.log_entries()
    access = [e for e in log if e.get("request_id") == "req-log"]
    assert [(e["app"], e["version"], e["route"], e["status"]) for e in access] == [
        ("slow", "9.9.9", "/version", 200)]
    assert all(e["app"] == "slow" for e in log)
