"""The real ``test:<app>`` stage on the real Docker engine runs a repository's tests in a
sandbox: a hostile suite (a copy of discovery with an attacker's test file) cannot reach
the network, the worker's environment and files, or write outside its scratch folder, and
the stage's log says what was refused; a suite past its time or memory limit is killed; a
cancelled stage leaves no container; without an engine nothing runs at all.

One test image serves the whole module (it is cached by content, so a later session on the
machine builds nothing either), and the hostile suite runs once for all its assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from shipyard.adapters.docker_engine import DockerEngine, default_engine_url
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import StageRecord, Store
from stages.runtime import RunContext, StageFailure, open_store
from stages.unit_tests import unit_tests
from tests.support.stack import PIP_CACHE, PROJECT, STACK_CACHE

pytestmark = pytest.mark.integration

# The recorded stage (the @stage wrapper: transitions, logs) without Prefect's task runner.
recorded_stage: Callable[..., Coroutine[Any, Any, Any]] = unit_tests.fn  # type: ignore[attr-defined]

CANARY = f"canary-{uuid.uuid4().hex}"
MARK = uuid.uuid4().hex[:12]
RUN_LABEL = "dev.shipyard.run"

HOSTILE_TESTS = '''\
"""An attacker's tests: each passes only if it reached what a test stage must not."""
import os
import socket
from pathlib import Path

SOURCE = Path(__file__).resolve().parent


def test_reach_the_registry_on_the_hosts_loopback():
    socket.create_connection(("127.0.0.1", 5000), timeout=2).close()


def test_reach_the_docker_bridge_gateway():
    socket.create_connection(("{gateway}", 5000), timeout=2).close()


def test_steal_the_database_url():
    print("stolen:", os.environ["SHIPYARD_DATABASE_URL"])


def test_steal_any_secret_of_the_worker():
    stolen = [value for value in os.environ.values() if "canary-" in value]
    assert stolen, f"no secret among {{sorted(os.environ)}}"


def test_read_the_kubeconfig():
    print("stolen:", Path("{kubeconfig}").read_text())


def test_talk_to_the_docker_engine():
    with socket.socket(socket.AF_UNIX) as engine:
        engine.connect("/var/run/docker.sock")


def test_write_into_the_checkout():
    (SOURCE / "pwned-{mark}").write_text("pwned")


def test_write_to_the_root():
    Path("/pwned-{mark}").write_text("pwned")


def test_write_to_etc():
    Path("/etc/pwned-{mark}").write_text("pwned")


def test_become_root():
    os.setuid(0)


def test_the_scratch_folder_is_writable(tmp_path):
    (tmp_path / "note").write_text("scratch")
    assert (tmp_path / "note").read_text() == "scratch"
'''

ATTACKS = ("reach_the_registry_on_the_hosts_loopback", "reach_the_docker_bridge_gateway",
           "steal_the_database_url", "steal_any_secret_of_the_worker", "read_the_kubeconfig",
           "talk_to_the_docker_engine", "write_into_the_checkout", "write_to_the_root",
           "write_to_etc", "become_root")


@dataclass(frozen=True)
class World:
    workspace: Path
    kubeconfig: Path
    engine: DockerEngine


@dataclass(frozen=True)
class Ran:
    run_id: str
    stage: StageRecord
    log: str
    seconds: float


def small_app(apps: Path, name: str, tests: str) -> None:
    """An app of one test file, with discovery's requirements and conftest."""
    (apps / name / "tests").mkdir(parents=True)
    for file in ("app.yaml", "requirements.txt", "conftest.py"):
        shutil.copy(PROJECT / "apps" / "discovery" / file, apps / name / file)
    (apps / name / "tests" / f"test_{name}.py").write_text(tests)


@pytest.fixture(scope="module")
def world(delivery_stack: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A worker environment full of secrets, and a checkout with four throwaway apps:
    hostile (discovery's registry tests and the attacker's), calm, sleepy and greedy."""
    root = tmp_path_factory.mktemp("isolation")
    kubeconfig = root / "admin.kubeconfig"
    kubeconfig.write_text(f"token: {CANARY}\n")
    apps = root / "workspace" / "apps"
    shutil.copytree(PROJECT / "apps" / "servicekit", apps / "servicekit",
                    ignore=shutil.ignore_patterns("__pycache__", ".*_cache", "tests"))
    shutil.copytree(PROJECT / "apps" / "discovery", apps / "hostile",
                    ignore=shutil.ignore_patterns("__pycache__", ".*_cache", "test_*.py"))
    shutil.copy(PROJECT / "apps" / "discovery" / "tests" / "test_discovery_registry.py",
                apps / "hostile" / "tests")
    # The engine's own address on its bridge (dockerd 20.10 names only the subnet).
    subnet = docker.from_env().networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]
    gateway = ipaddress.ip_network(subnet)[1]
    (apps / "hostile" / "tests" / "test_hostile.py").write_text(HOSTILE_TESTS.format(
        gateway=gateway, kubeconfig=kubeconfig, mark=MARK))
    small_app(apps, "calm", "def test_calm():\n    assert 1 + 1 == 2\n")
    small_app(apps, "sleepy", "import time\n\ndef test_sleep():\n    time.sleep(600)\n")
    small_app(apps, "greedy", "def test_hoard():\n    hoard = b'x' * (1 << 30)\n"
                              "    assert len(hoard)\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHIPYARD_HOME", str(root / "home"))
        patch.setenv("SHIPYARD_DATABASE_URL",
                     f"sqlite:///{root / 'home' / CANARY / 'shipyard.db'}")
        patch.setenv("SHIPYARD_KUBECONFIG", str(kubeconfig))
        patch.setenv("SHIPYARD_WEBHOOK_SECRET", CANARY)
        patch.setenv("SHIPYARD_PIP_CACHE", PIP_CACHE)
        # Shared with later sessions on this machine, as the test image is.
        patch.setenv("SHIPYARD_WHEELHOUSE", f"{STACK_CACHE}/wheelhouse")
        (root / "home" / CANARY).mkdir(parents=True)
        yield World(root / "workspace", kubeconfig, DockerEngine(default_engine_url()))
    for pwned in (Path(f"/pwned-{MARK}"), Path(f"/etc/pwned-{MARK}")):
        pwned.unlink(missing_ok=True)


def new_run(app: str) -> str:
    store: Store = open_store()
    return store.create_run("ci", [StageSpec(f"test:{app}")], trigger="test").id


def run_tests(world: World, app: str) -> Ran:
    """The real stage, recorded in the store, outside Prefect (its wrapper is the same)."""
    run_id = new_run(app)
    started = time.monotonic()
    with contextlib.suppress(StageFailure):
        asyncio.run(recorded_stage(RunContext(run_id), str(world.workspace), app,
                                  stage_ref=f"test:{app}"))
    seconds = time.monotonic() - started
    store = open_store()
    log = "".join(c.text for c in store.read_logs(run_id, f"test:{app}"))
    return Ran(run_id, store.get_run(run_id).stage(f"test:{app}"), log, seconds)


@pytest.fixture(scope="module")
def hostile(world: World) -> Ran:
    return run_tests(world, "hostile")


def test_the_hostile_suite_fails_as_tests_and_the_apps_own_tests_pass(hostile: Ran) -> None:
    assert (hostile.stage.state, hostile.stage.reason) == (State.FAILED, "TestsFailed")
    assert f"{len(ATTACKS)} failed" in hostile.stage.message
    for attack in ATTACKS:
        assert f"test_{attack}" in hostile.log
    assert "test_the_scratch_folder_is_writable" not in hostile.log.split("failed: ")[-1]
    passed = int(hostile.stage.message.split(" passed")[0].split()[-1])
    assert passed >= 2, "the registry tests and the scratch test pass"


def test_the_log_names_the_confinement(hostile: Ran) -> None:
    assert "no network, no host environment, read-only root" in hostile.log
    assert "$ pytest apps/hostile" in hostile.log


def refusal(ran: Ran, attack: str) -> str:
    """The part of pytest's report in the stage log about the failure of ``attack``."""
    header = f" test_{attack} "
    assert header in ran.log, f"no failure reported for test_{attack}"
    section = ran.log.split(header, 1)[1]
    return section.split("\n____", 1)[0].split("\nFAILED ", 1)[0]


def test_no_network_reaches_the_host_or_the_bridge(hostile: Ran) -> None:
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in refusal(
        hostile, "reach_the_registry_on_the_hosts_loopback")
    assert "OSError: [Errno 101] Network is unreachable" in refusal(
        hostile, "reach_the_docker_bridge_gateway")


def test_no_variable_of_the_worker_reaches_the_tests(hostile: Ran) -> None:
    assert "KeyError: 'SHIPYARD_DATABASE_URL'" in refusal(hostile, "steal_the_database_url")
    assert "AssertionError: no secret among ['HOME', 'HOSTNAME', 'LANG', 'PATH'" in refusal(
        hostile, "steal_any_secret_of_the_worker")
    assert CANARY not in hostile.log


def test_no_file_of_the_worker_reaches_the_tests(hostile: Ran, world: World) -> None:
    assert f"No such file or directory: '{world.kubeconfig}'" in refusal(
        hostile, "read_the_kubeconfig")
    assert "FileNotFoundError: [Errno 2] No such file or directory" in refusal(
        hostile, "talk_to_the_docker_engine")


def test_nothing_outside_the_scratch_folder_is_writable(hostile: Ran, world: World) -> None:
    for attack, path in (("write_into_the_checkout", "/workspace/apps/hostile/tests/pwned-"),
                         ("write_to_the_root", "/pwned-"), ("write_to_etc", "/etc/pwned-")):
        assert f"OSError: [Errno 30] Read-only file system: '{path}{MARK}'" in refusal(
            hostile, attack)
    assert not list(world.workspace.rglob(f"pwned-{MARK}"))
    assert not Path(f"/pwned-{MARK}").exists() and not Path(f"/etc/pwned-{MARK}").exists()


def test_the_tests_run_unprivileged(hostile: Ran) -> None:
    assert "PermissionError: [Errno 1] Operation not permitted" in refusal(hostile,
                                                                          "become_root")


def test_no_container_is_left_after_a_run(hostile: Ran, world: World) -> None:
    assert world.engine.containers_labelled(RUN_LABEL, hostile.run_id) == []


def test_a_passing_suite_succeeds_in_the_cached_image(hostile: Ran, world: World) -> None:
    calm = run_tests(world, "calm")
    assert calm.stage.state is State.SUCCEEDED, calm.log[-2000:]
    assert calm.stage.outputs["passed"] == 1
    image = calm.stage.outputs["image"]
    assert image.startswith("shipyard/test-runner:")
    assert f"test image {image} (cached)" in calm.log, "a second run builds nothing"
    assert f"test image {image} " in hostile.log, "apps of the same wheels share the image"


def test_a_suite_past_the_time_limit_is_killed(hostile: Ran, world: World,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_TEST_TIMEOUT_SECONDS", "4")
    sleepy = run_tests(world, "sleepy")
    assert (sleepy.stage.state, sleepy.stage.reason) == (State.FAILED, "TimedOut")
    assert "ran past the limit of 4 s" in sleepy.stage.message
    assert sleepy.seconds < 60
    assert world.engine.containers_labelled(RUN_LABEL, sleepy.run_id) == []


def test_a_suite_past_the_memory_limit_is_killed(hostile: Ran, world: World,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_TEST_MEMORY_MIB", "256")
    greedy = run_tests(world, "greedy")
    assert (greedy.stage.state, greedy.stage.reason) == (State.FAILED, "OutOfMemory")
    assert "more than 256 MiB" in greedy.stage.message


def test_a_cancelled_stage_removes_its_container(hostile: Ran, world: World) -> None:
    run_id = new_run("sleepy")

    async def cancel_once_running() -> list[str]:
        stage = asyncio.create_task(recorded_stage(RunContext(run_id), str(world.workspace),
                                                  "sleepy", stage_ref="test:sleepy"))
        deadline = time.monotonic() + 60
        while not world.engine.containers_labelled(RUN_LABEL, run_id):
            assert time.monotonic() < deadline and not stage.done(), "no container started"
            await asyncio.sleep(0.2)
        stage.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stage
        return world.engine.containers_labelled(RUN_LABEL, run_id)

    assert asyncio.run(cancel_once_running()) == []
    assert open_store().get_run(run_id).stage("test:sleepy").state is State.CANCELLED


def test_without_an_engine_the_stage_fails_and_runs_nothing_on_the_host(
        world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    ran = run_tests(world, "hostile")
    assert (ran.stage.state, ran.stage.reason) == (State.FAILED, "EngineUnavailable")
    assert "never on the host" in ran.stage.message
    assert "$ pytest" not in ran.log
