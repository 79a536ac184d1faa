"""The one rollout-wait loop, driven by plain Deployment data and a clock that moves only
when the loop sleeps; and the deploy verbs over a fake connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.kube import Kube, RolloutTimedOut, poll_rollout
from shipyard.adapters.kube_client import KubeClient, KubeError
from shipyard.adapters.pod_killer import PodKiller
from shipyard.domain.pod_health import PodProblem


class FakeTime:
    """Monotonic time that moves only when slept through."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def deployment(available: int, *, desired: int = 3, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": desired},
            "status": {"observedGeneration": 1, "replicas": desired,
                       "updatedReplicas": desired, "availableReplicas": available,
                       **status}}


def reader(*states: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Reads each state in turn, then the last one for ever."""
    remaining = list(states)

    def read() -> dict[str, Any]:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]
    return read


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def test_the_wait_ends_when_kubectl_calls_the_deployment_rolled_out(clock: FakeTime):
    status, problems = poll_rollout(reader(deployment(1), deployment(2), deployment(3)),
                                    timeout_seconds=60, now=clock.monotonic,
                                    sleep=clock.sleep)
    assert status.done and "successfully rolled out" in status.message
    assert problems == []
    assert clock.slept == [0.5, 0.5]


def test_a_deployment_that_never_rolls_out_times_out_on_the_injected_clock(clock: FakeTime):
    with pytest.raises(RolloutTimedOut) as raised:
        poll_rollout(reader(deployment(1)), timeout_seconds=10, poll_seconds=2,
                     now=clock.monotonic, sleep=clock.sleep)
    assert str(raised.value) == ("deployment 'web' not rolled out after 10s: Waiting for "
                                 "deployment 'web' rollout to finish: 1 of 3 updated "
                                 "replicas are available")
    assert not raised.value.rollout.done
    assert isinstance(raised.value, KubeError)
    assert sum(clock.slept) == 12  # read at 0, 2, ..., 12 s: past the deadline, it stops


def test_a_progress_deadline_ends_the_wait_as_failed_before_the_timeout(clock: FakeTime):
    stuck = deployment(1, conditions=[{"type": "Progressing", "status": "False",
                                        "reason": "ProgressDeadlineExceeded"}])
    status, _ = poll_rollout(reader(stuck), timeout_seconds=600, now=clock.monotonic,
                             sleep=clock.sleep)
    assert status.failed and "exceeded its progress deadline" in status.message
    assert clock.slept == []


def test_a_pod_problem_that_cannot_heal_ends_the_wait_at_once(clock: FakeTime):
    crash = PodProblem("web-1", "CrashLoopBackOff", "back-off restarting")
    status, problems = poll_rollout(reader(deployment(1)), timeout_seconds=600,
                                    problems_of=lambda found: [crash],
                                    now=clock.monotonic, sleep=clock.sleep)
    assert status.failed and not status.done
    assert status.message.startswith("deployment 'web' cannot become available: ")
    assert problems == [crash]
    assert clock.slept == []


def test_pods_are_not_looked_at_once_the_deployment_rolled_out(clock: FakeTime):
    def no_pods_expected(found: Mapping[str, Any]) -> list[PodProblem]:
        raise AssertionError("the pods of a rolled-out Deployment were read")
    status, _ = poll_rollout(reader(deployment(3)), timeout_seconds=60,
                             problems_of=no_pods_expected, now=clock.monotonic,
                             sleep=clock.sleep)
    assert status.done


def test_each_status_and_problem_is_reported_once(clock: FakeTime):
    pending = PodProblem("web-1", "ContainerCreating", "pulling")
    said: list[str] = []
    poll_rollout(reader(deployment(1), deployment(1), deployment(2), deployment(3)),
                 timeout_seconds=60, problems_of=lambda found: [pending],
                 on_change=said.append, now=clock.monotonic, sleep=clock.sleep)
    assert said == [
        "Waiting for deployment 'web' rollout to finish: 1 of 3 updated replicas are "
        "available", f"  {pending}",
        "Waiting for deployment 'web' rollout to finish: 2 of 3 updated replicas are "
        "available",
        "deployment 'web' successfully rolled out"]


# -- the verbs over a fake connection ---------------------------------------------------


@dataclass(frozen=True)
class FakeClient(KubeClient):
    """Answers each REST call from a table of (method, path) -> (status, answer), and
    keeps the calls."""

    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def call(self, method: str, path: str, **options: Any) -> tuple[int, Any]:
        self.calls.append((method, path, options))
        return self.answers[method, path]


def connection(answers: dict[tuple[str, str], tuple[int, Any]]) -> FakeClient:
    return FakeClient(api=cast(Any, None), answers=answers)


DEPLOYMENT = "/apis/apps/v1/namespaces/ns/deployments/web"


def test_follow_rollout_reports_a_timeout_as_a_failed_status(clock: FakeTime):
    kube = Kube(connection({("GET", DEPLOYMENT): (200, deployment(3, desired=4)),
                            ("GET", "/api/v1/namespaces/ns/pods"): (200, {"items": []})}))
    status, problems = kube.follow_rollout("ns", "web", timeout_seconds=5,
                                           now=clock.monotonic, sleep=clock.sleep)
    assert status.failed
    assert status.message.startswith("deployment 'web' not rolled out after 5s: ")
    assert problems == []


def test_wait_for_rollout_raises_on_timeout(clock: FakeTime):
    kube = Kube(connection({("GET", DEPLOYMENT): (200, deployment(1))}))
    with pytest.raises(RolloutTimedOut):
        kube.wait_for_rollout("ns", "web", timeout_seconds=5, now=clock.monotonic,
                              sleep=clock.sleep)


def test_a_stage_that_times_out_stops_its_rollout_wait():
    client = connection({("GET", DEPLOYMENT): (200, deployment(1)),
                         ("GET", "/api/v1/namespaces/ns/pods"): (200, {"items": []})})
    kube = Kube(client)

    async def stage() -> None:
        async with asyncio.timeout(0.3):
            await run_blocking(kube.follow_rollout, "ns", "web", timeout_seconds=60,
                               poll_seconds=0.05)

    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    reads = len(client.calls)
    assert reads > 0
    time.sleep(0.3)  # six polls' worth
    assert len(client.calls) == reads, "the wait went on polling after the stage ended"


def test_a_refused_pod_listing_is_a_kube_error_with_its_status():
    kube = Kube(connection({("GET", "/api/v1/namespaces/ns/pods"):
                            (403, {"message": "pods is forbidden"})}))
    with pytest.raises(KubeError, match="listing pods 'app=web' in ns: 403 pods is "
                       "forbidden") as raised:
        kube.pods("ns", "app=web")
    assert raised.value.status == 403


@pytest.mark.parametrize(("status", "killed"), [(200, True), (404, False)])
def test_a_kill_deletes_the_pod_at_once_and_says_whether_it_was_there(status, killed):
    fake = connection({("DELETE", "/api/v1/namespaces/ns/pods/web-1"): (status, {})})
    assert PodKiller(Kube(fake)).kill("ns", "web-1") is killed
    [(_, _, options)] = fake.calls
    assert options["query"] == {"gracePeriodSeconds": "0"}
    assert options["body"]["gracePeriodSeconds"] == 0


def test_a_refused_kill_is_a_kube_error():
    fake = connection({("DELETE", "/api/v1/namespaces/ns/pods/web-1"): (403, {})})
    with pytest.raises(KubeError, match="killing pod ns/web-1: 403"):
        PodKiller(Kube(fake)).kill("ns", "web-1")


def reads_through_an_outage(outage: int, *states: dict[str, Any],
                            status: int = 0) -> Callable[[], dict[str, Any]]:
    """``outage`` reads the API server does not answer (or answers ``status``), then
    ``states`` in turn."""
    after = reader(*states)
    failures = [outage]

    def read() -> dict[str, Any]:
        if failures[0] > 0:
            failures[0] -= 1
            raise KubeError("GET /apis/apps/v1/.../web: connection refused", status)
        return after()
    return read


@pytest.mark.parametrize("status", [0, 503])
def test_an_api_server_that_does_not_answer_for_a_while_is_waited_through(
        clock: FakeTime, status: int):
    said: list[str] = []
    done, _ = poll_rollout(reads_through_an_outage(6, deployment(2), deployment(3),
                                                   status=status),
                           timeout_seconds=60, now=clock.monotonic, sleep=clock.sleep,
                           on_change=said.append)
    assert done.done
    assert said[0].startswith("the API server did not answer (GET /apis/apps/v1/.../web")
    assert said[1] == "the API server answers again after 3s"


def test_an_api_server_silent_until_the_deadline_times_the_rollout_out_naming_it(
        clock: FakeTime):
    with pytest.raises(RolloutTimedOut) as timed_out:
        poll_rollout(reads_through_an_outage(1000, deployment(3)), timeout_seconds=10,
                     now=clock.monotonic, sleep=clock.sleep)
    assert "the API server did not answer for 10s" in str(timed_out.value)


def test_a_refusal_is_not_waited_through(clock: FakeTime):
    with pytest.raises(KubeError):
        poll_rollout(reads_through_an_outage(1, deployment(3), status=403),
                     timeout_seconds=60, now=clock.monotonic, sleep=clock.sleep)
