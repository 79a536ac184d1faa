"""The deploy verbs the cd stages use on one environment's namespace: apply, read, list,
scale and delete the app kinds, read pods and events, and wait for a Deployment to roll
out as ``kubectl rollout status`` does.

Objects come back as plain mappings (the API's JSON), so ``shipyard.domain`` can judge them
without knowing the client's model classes. Every failure is a
:class:`~shipyard.adapters.kube_client.KubeError`.

The waits sleep with :func:`~shipyard.adapters.blocking.pause`: run where a stage's timeout
abandons them (:func:`~shipyard.adapters.blocking.run_blocking`), a wait ends at its next
pause instead of polling on in a thread nobody awaits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.adapters.blocking import pause
from shipyard.adapters.kube_client import KubeClient, KubeError, object_path, refused
from shipyard.domain.clock import Monotonic, Sleep
from shipyard.domain.pod_health import PodProblem, pod_problems
from shipyard.domain.rollout import RolloutStatus, deployment_rollout_status

__all__ = ["FIELD_MANAGER", "SCALER", "Kube", "RolloutTimedOut", "poll_rollout"]

FIELD_MANAGER = "shipyard"
"""The field manager of every server-side apply: Shipyard owns what it applies."""
SCALER = "shipyard-scaler"
"""Scaling goes through its own manager, so the next apply of a record takes replicas back."""


def _ignore(line: str) -> None:
    """Reports nowhere."""


class RolloutTimedOut(KubeError):
    """A Deployment neither rolled out nor failed in time; ``rollout`` is kubectl's last
    word on it and ``problems`` what its pods had then."""

    def __init__(self, message: str, rollout: RolloutStatus,
                 problems: list[PodProblem]) -> None:
        super().__init__(message)
        self.rollout = rollout
        self.problems = problems


def poll_rollout(read: Callable[[], Mapping[str, Any]], *, timeout_seconds: float,
                 problems_of: Callable[[Mapping[str, Any]], list[PodProblem]] | None = None,
                 on_change: Callable[[str], None] = _ignore, poll_seconds: float = 0.5,
                 now: Monotonic = time.monotonic,
                 sleep: Sleep = pause) -> tuple[RolloutStatus, list[PodProblem]]:
    """Read the Deployment (``read``) every ``poll_seconds`` until kubectl's rules call it
    rolled out or failed, and return that status with its pods' problems.

    Each new status message and pod problem goes to ``on_change`` once. Given
    ``problems_of``, the pods of a Deployment not yet rolled out are looked at too, and a
    problem that cannot heal by itself (a missing image, a crash loop) ends the wait at
    once with a failed status naming it. Raises :class:`RolloutTimedOut` when neither
    happens within ``timeout_seconds`` on the clock ``now``.
    """
    deadline = now() + timeout_seconds
    said: set[str] = set()

    def say(line: str) -> None:
        if line not in said:
            said.add(line)
            on_change(line)

    unanswered_since: float | None = None
    while True:
        try:
            deployment = read()
            status = deployment_rollout_status(deployment)
            problems: list[PodProblem] = []
            if problems_of is not None and not status.done:
                problems = problems_of(deployment)
        except KubeError as err:
            if not _unavailable(err):
                raise
            # The API server restarting (or overloaded) is not the rollout failing: the
            # Deployment goes on without it. Keep asking until the deadline.
            if unanswered_since is None:
                unanswered_since = now()
                say(f"the API server did not answer ({err}); still waiting")
            if now() > deadline:
                raise RolloutTimedOut(
                    f"the API server did not answer for {now() - unanswered_since:.0f}s, "
                    f"until the rollout's {timeout_seconds:.0f}s were up: {err}",
                    RolloutStatus(False, False, str(err)), []) from err
            sleep(poll_seconds)
            continue
        if unanswered_since is not None:
            say(f"the API server answers again after {now() - unanswered_since:.0f}s")
            unanswered_since = None
        name = deployment.get("metadata", {}).get("name", "?")
        say(status.message)
        for problem in problems:
            say(f"  {problem}")
        if status.done or status.failed:
            return status, problems
        fatal = [p for p in problems if p.fatal]
        if fatal:
            return RolloutStatus(False, True, f"deployment {name!r} cannot become "
                                 f"available: {fatal[0]}"), problems
        if now() > deadline:
            raise RolloutTimedOut(f"deployment {name!r} not rolled out after "
                                  f"{timeout_seconds:.0f}s: {status.message}", status,
                                  problems)
        sleep(poll_seconds)


def _unavailable(err: KubeError) -> bool:
    """No answer at all, or the server's own "try again" (429, 5xx): not a refusal."""
    return err.status == 0 or err.status == 429 or err.status >= 500


@dataclass(frozen=True)
class Kube:
    """The deploy verbs over one connection (``client``)."""

    client: KubeClient

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Kube:
        return cls(KubeClient.from_kubeconfig(path))

    def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply ``manifest`` as field manager ``shipyard``, taking over fields
        another manager set (controllers own what they apply; see the reference's SSA notes).
        With ``dry_run`` the API server validates and admits it but stores nothing.
        Returns the object as the server has (or would have) it."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        status, answer = self.client.call("PATCH", object_path(manifest), query=query,
                                          body=dict(manifest),
                                          content_type="application/apply-patch+yaml")
        if status not in (200, 201):
            what = f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
            verb = "validating" if dry_run else "applying"
            raise refused(f"{verb} {what}", status, answer)
        return dict(answer or {})

    def get(self, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """The live object ``manifest`` names, or None if there is none."""
        status, answer = self.client.call("GET", object_path(manifest))
        if status == 404:
            return None
        if status != 200:
            raise refused(f"reading {manifest.get('kind')} {manifest['metadata']['name']}",
                          status, answer)
        return dict(answer)

    def list_objects(self, api_version: str, kind: str, namespace: str,
                     selector: str = "") -> list[dict[str, Any]]:
        """Objects of one kind in ``namespace`` matching the label ``selector`` (all of
        them without one)."""
        probe = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}
        status, answer = self.client.call("GET", object_path(probe, named=False),
                                          query={"labelSelector": selector} if selector
                                          else None)
        if status == 404:
            return []
        if status != 200:
            raise refused(f"listing {kind} in {namespace}", status, answer)
        return [dict(item, apiVersion=api_version, kind=kind)
                for item in (answer or {}).get("items", [])]

    def delete(self, manifest: Mapping[str, Any]) -> bool:
        """Delete the object ``manifest`` names, its dependents in the background; False if
        it was already gone."""
        status, answer = self.client.call("DELETE", object_path(manifest),
                                          body={"propagationPolicy": "Background"})
        if status == 404:
            return False
        if status not in (200, 202):
            raise refused(f"deleting {manifest.get('kind')} {manifest['metadata']['name']}",
                          status, answer)
        return True

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource (as ``SCALER``)."""
        status, answer = self.client.call(
            "PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            query={"fieldManager": SCALER}, body={"spec": {"replicas": replicas}},
            content_type="application/merge-patch+json")
        if status != 200:
            raise refused(f"scaling deployment {namespace}/{name} to {replicas}", status,
                          answer)

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """Deployment ``name`` as it is now."""
        return self._read(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                          f"deployment {namespace}/{name}")

    def service(self, namespace: str, name: str) -> dict[str, Any]:
        """Service ``name`` as it is now."""
        return self._read(f"/api/v1/namespaces/{namespace}/services/{name}",
                          f"service {namespace}/{name}")

    def _read(self, path: str, what: str) -> dict[str, Any]:
        status, answer = self.client.call("GET", path)
        if status != 200:
            raise refused(f"reading {what}", status, answer)
        return dict(answer)

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods in ``namespace`` matching the label ``selector``."""
        status, answer = self.client.call("GET", f"/api/v1/namespaces/{namespace}/pods",
                                          query={"labelSelector": selector})
        if status != 200:
            raise refused(f"listing pods {selector!r} in {namespace}", status, answer)
        return [dict(item) for item in (answer or {}).get("items", [])]

    def events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        """Events about the object named ``involved_name`` in ``namespace``, oldest first
        (none when they cannot be read: they only explain)."""
        status, answer = self.client.call(
            "GET", f"/api/v1/namespaces/{namespace}/events",
            query={"fieldSelector": f"involvedObject.name={involved_name}"})
        if status != 200:
            return []
        items = (answer or {}).get("items", [])
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or
                                               e.get("eventTime") or ""))

    def pod_problems(self, namespace: str, deployment: Mapping[str, Any]) -> list[PodProblem]:
        """The problems of a Deployment's pods, their Warning events included."""
        match = (deployment.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        pods = self.pods(namespace, selector)
        events = {p["metadata"]["name"]: self.events(namespace, p["metadata"]["name"])
                  for p in pods if not _pod_ready(p)}
        return pod_problems(pods, events)

    def wait_for_rollout(self, namespace: str, name: str, *, timeout_seconds: float,
                         now: Monotonic = time.monotonic,
                         sleep: Sleep = pause) -> RolloutStatus:
        """Poll Deployment ``name`` until kubectl's rules call it rolled out (or failed),
        without looking at its pods; :class:`RolloutTimedOut` after ``timeout_seconds``."""
        status, _ = poll_rollout(lambda: self.deployment(namespace, name),
                                 timeout_seconds=timeout_seconds, now=now, sleep=sleep)
        return status

    def follow_rollout(self, namespace: str, name: str, *, timeout_seconds: float,
                       on_change: Callable[[str], None] = _ignore,
                       poll_seconds: float = 0.5, now: Monotonic = time.monotonic,
                       sleep: Sleep = pause) -> tuple[RolloutStatus, list[PodProblem]]:
        """Wait for Deployment ``name`` as ``kubectl rollout status`` does, reporting each
        new status message and pod problem through ``on_change``. Returns the final status
        and the pods' problems; stops early when a problem cannot heal by itself (a missing
        image, a crash loop), and returns a failed status naming it, or the timeout."""
        try:
            return poll_rollout(lambda: self.deployment(namespace, name),
                                timeout_seconds=timeout_seconds,
                                problems_of=lambda found: self.pod_problems(namespace, found),
                                on_change=on_change, poll_seconds=poll_seconds, now=now,
                                sleep=sleep)
        except RolloutTimedOut as err:
            return RolloutStatus(False, True, str(err)), err.problems

    def service_proxy_get(self, namespace: str, service: str, path: str) -> str:
        """GET ``path`` from a Service (``name`` or ``name:port``) through the API
        server's proxy."""
        return self.client.text(
            f"/api/v1/namespaces/{namespace}/services/{service}/proxy/{path.lstrip('/')}",
            timeout=10)


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
