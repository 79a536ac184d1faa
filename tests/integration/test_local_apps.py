"""The four apps run together by `shipyard apps run`, driven only through the gateway:
an activity written is read back from data; events posted reach streaming and show in its
aggregation; discovery lists every instance; an instance killed is routed around; Ctrl-C
stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.support.stack import PROJECT, SHIPYARD

pytestmark = pytest.mark.integration

T = TypeVar("T")


@dataclass
class Running:
    runner: subprocess.Popen[str]
    env: dict[str, str]
    instances: list[dict[str, Any]]

    def url(self, instance: str) -> str:
        return next(str(i["url"]) for i in self.instances if i["instance"] == instance)


def eventually(check: Callable[[], T | None], seconds: float = 30, what: str = "") -> T:
    """Poll ``check`` until it returns something other than None, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def apps_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("apps-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PREFECT_"))}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_PROJECT_DIR=str(PROJECT), COLUMNS="200")
    runner = subprocess.Popen(
        [*SHIPYARD, "apps", "run", "--free-ports", "--instances", "data=2"], env=env,
        cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert runner.stdout is not None
    seen = []
    for line in runner.stdout:  # the runner prints "Try: ..." once every app is ready
        seen.append(line)
        if line.startswith("Try:"):
            break
    else:
        pytest.fail("`shipyard apps run` ended before the apps were ready:\n" + "".join(seen))
    status = subprocess.run([*SHIPYARD, "apps", "status", "--json"], env=env, cwd=PROJECT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    running = Running(runner, env, json.loads(status.stdout))
    try:
        yield running
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)
            try:
                runner.wait(60)
            except subprocess.TimeoutExpired:
                runner.kill()


def test_every_instance_is_registered_with_discovery(apps_running: Running) -> None:
    discovery = apps_running.url("discovery-0")

    def registered() -> dict[str, int] | None:
        apps = httpx.get(f"{discovery}/eureka/apps", timeout=5).json()["apps"]
        counts = {name: len(instances) for name, instances in apps.items()}
        return counts if counts == {"data": 2, "gateway": 1, "streaming": 1} else None

    eventually(registered, what="data x2, gateway and streaming registered")


def test_an_activity_written_through_the_gateway_is_read_back(apps_running: Running) -> None:
    gateway = apps_running.url("gateway-0")
    user = f"user-{uuid.uuid4().hex[:8]}"
    written = httpx.post(f"{gateway}/api/data/activities", timeout=10,
                         json={"user_id": user, "content_id": "c-42", "kind": "play"})
    assert written.status_code == 201, written.text
    request_id = written.headers.get("x-request-id")
    assert request_id, "the gateway answers with the request id"

    history = httpx.get(f"{gateway}/api/data/users/{user}/activities", timeout=10)
    assert history.status_code == 200, history.text
    [activity] = history.json()["activities"]
    assert (activity["content_id"], activity["kind"]) == ("c-42", "play")


def test_events_posted_through_the_gateway_show_in_the_aggregation(
        apps_running: Running) -> None:
    gateway = apps_running.url("gateway-0")
    content = f"c-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    records = [{"key": content, "value": {"content_id": content, "user_id": f"u{i}", "ts": now}}
               for i in range(3)]
    posted = httpx.post(f"{gateway}/api/streaming/topics/views/records",
                        json={"records": records}, timeout=10)
    assert posted.status_code == 200, posted.text
    partitions = {r["partition"] for r in posted.json()["offsets"]}
    assert len(partitions) == 1, "one key, one partition"

    def counted() -> int | None:
        windows = httpx.get(f"{gateway}/api/streaming/aggregations/views",
                            params={"content_id": content}, timeout=10).json()["windows"]
        total = sum(w["count"] for w in windows)
        return total if total == 3 else None

    assert eventually(counted, what="3 views counted") == 3


def test_a_killed_instance_is_routed_around(apps_running: Running) -> None:
    gateway = apps_running.url("gateway-0")
    [victim] = [i for i in apps_running.instances if i["instance"] == "data-1"]
    os.kill(int(victim["pid"]), signal.SIGKILL)  # no drain, no deregistration

    answers = [httpx.get(f"{gateway}/api/data/activities/recent", timeout=10).status_code
               for _ in range(20)]
    assert answers == [200] * 20


def test_ctrl_c_stops_every_instance(apps_running: Running) -> None:
    apps_running.runner.send_signal(signal.SIGINT)
    assert apps_running.runner.wait(60) == 0
    for instance in apps_running.instances:
        if instance["pid"]:
            assert not Path(f"/proc/{instance['pid']}").exists() or _zombie(instance["pid"]), \
                f"{instance['instance']} still runs"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
