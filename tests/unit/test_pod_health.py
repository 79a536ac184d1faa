"""Why a rollout is stuck, read from pods and their events."""

from __future__ import annotations

from shipyard.domain.pod_health import pod_problems, worst_problem


def pod(name: str, *, waiting: str | None = None, message: str = "", ready: bool = False,
        unschedulable: str | None = None, exit_code: int | None = None) -> dict:
    container: dict = {"name": "app", "restartCount": 2 if exit_code else 0, "state": {}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting, "message": message}}
    if exit_code is not None:
        container["lastState"] = {"terminated": {"exitCode": exit_code, "reason": "Error"}}
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False",
                           "reason": "Unschedulable", "message": unschedulable})
    return {"metadata": {"name": name},
            "status": {"containerStatuses": [container], "conditions": conditions}}


def test_a_ready_pod_has_no_problem():
    assert pod_problems([pod("a", ready=True)]) == []


def test_an_image_that_cannot_be_pulled_is_fatal_and_named():
    problems = pod_problems([pod("a", waiting="ImagePullBackOff",
                                 message="Back-off pulling image x")])
    assert [(p.pod, p.reason, p.fatal) for p in problems] == [("a", "ImagePullBackOff", True)]
    assert "Back-off pulling image x" in str(problems[0])


def test_a_pod_that_cannot_be_scheduled_says_why():
    problems = pod_problems([pod("a", unschedulable="0/1 nodes: Insufficient cpu")])
    assert problems[0].reason == "Unschedulable" and not problems[0].fatal
    assert "Insufficient cpu" in problems[0].message


def test_a_failing_readiness_probe_is_read_from_the_newest_warning_event():
    events = {"a": [
        {"type": "Warning", "reason": "Unhealthy", "message": "Readiness probe failed: 503"},
        {"type": "Normal", "reason": "Started", "message": "Started container"},
        {"type": "Warning", "reason": "Unhealthy", "message": "Readiness probe failed: 404"},
    ]}
    problems = pod_problems([pod("a")], events)
    assert [(p.reason, p.message) for p in problems] == [
        ("ReadinessProbeFailed", "Readiness probe failed: 404")]


def test_probe_events_of_a_ready_pod_are_old_news():
    events = {"a": [{"type": "Warning", "reason": "Unhealthy",
                     "message": "Readiness probe failed: 503"}]}
    assert pod_problems([pod("a", ready=True)], events) == []


def test_a_container_that_died_reports_its_exit_code():
    problems = pod_problems([pod("a", exit_code=3)])
    assert problems[0].reason == "Error" and "code 3" in problems[0].message


def test_the_worst_problem_puts_fatal_reasons_first():
    problems = pod_problems([pod("a", unschedulable="no nodes"),
                             pod("b", waiting="CrashLoopBackOff")])
    worst = worst_problem(problems)
    assert worst is not None and worst.pod == "b"
    assert worst_problem([]) is None
