"""Why a rollout is not progressing: the problems of its pods, read from plain data.

kubectl's ``rollout status`` only says "1 of 3 updated replicas are available"; the reason
is in the pods' container states, their scheduling condition and their Warning events. A
deploy puts these into its log and, when it gives up, into its failure reason, so the
person reading it learns *ImagePullBackOff: image 127.0.0.1:5000/x not found* at once.

Some problems never heal by themselves (a missing image, a crash loop, a bad config
reference): :attr:`PodProblem.fatal` says so, and a deploy may stop waiting on them
instead of sitting out the progress deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FATAL_REASONS", "PodProblem", "pod_problems", "worst_problem"]

FATAL_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
"""Waiting reasons that waiting longer does not cure."""

_PRIORITY = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
             "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
             "Unschedulable", "ReadinessProbeFailed", "LivenessProbeFailed", "OOMKilled",
             "Error")


@dataclass(frozen=True, slots=True)
class PodProblem:
    """One thing wrong with one pod."""

    pod: str
    reason: str
    message: str

    @property
    def fatal(self) -> bool:
        return self.reason in FATAL_REASONS

    def __str__(self) -> str:
        return f"{self.pod}: {self.reason}: {self.message}" if self.message else \
            f"{self.pod}: {self.reason}"


def pod_problems(pods: Iterable[Mapping[str, Any]],
                 events: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
                 ) -> list[PodProblem]:
    """The problems of ``pods`` (the API's Pod JSON), each pod's Warning ``events`` (by pod
    name) included: waiting containers, unschedulable pods, failing probes and containers
    that died, in pod order. A pod that is running and ready has none."""
    found: list[PodProblem] = []
    for pod in pods:
        name = str(pod.get("metadata", {}).get("name", "?"))
        status = pod.get("status") or {}
        found.extend(_container_problems(name, status))
        found.extend(_scheduling_problems(name, status))
        if not _ready(status):
            found.extend(_probe_problems(name, (events or {}).get(name, ())))
    return _deduplicated(found)


def worst_problem(problems: Sequence[PodProblem]) -> PodProblem | None:
    """The problem that best explains a stuck rollout: fatal ones first."""
    if not problems:
        return None
    rank = {reason: index for index, reason in enumerate(_PRIORITY)}
    return min(problems, key=lambda p: rank.get(p.reason, len(rank)))


def _container_problems(pod: str, status: Mapping[str, Any]) -> Iterable[PodProblem]:
    for container in [*(status.get("initContainerStatuses") or []),
                      *(status.get("containerStatuses") or [])]:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in ("ContainerCreating", "PodInitializing"):
            yield PodProblem(pod, str(reason), _short(waiting.get("message", "")))
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated and reason != "CrashLoopBackOff" and terminated.get("exitCode"):
            yield PodProblem(pod, str(terminated.get("reason") or "Error"),
                             f"container {container.get('name')} exited with code "
                             f"{terminated.get('exitCode')} "
                             f"({container.get('restartCount', 0)} restarts)")


def _scheduling_problems(pod: str, status: Mapping[str, Any]) -> Iterable[PodProblem]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            yield PodProblem(pod, str(condition.get("reason") or "Unschedulable"),
                             _short(condition.get("message", "")))


def _probe_problems(pod: str, events: Sequence[Mapping[str, Any]]) -> Iterable[PodProblem]:
    for event in reversed(events):  # the newest says most
        if event.get("type") != "Warning" or event.get("reason") != "Unhealthy":
            continue
        message = str(event.get("message", ""))
        kind = "LivenessProbeFailed" if message.startswith("Liveness") else \
            "ReadinessProbeFailed"
        yield PodProblem(pod, kind, _short(message))
        return


def _ready(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _deduplicated(problems: list[PodProblem]) -> list[PodProblem]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for problem in problems:
        if (problem.pod, problem.reason) not in seen:
            seen.add((problem.pod, problem.reason))
            kept.append(problem)
    return kept


def _short(text: object, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
