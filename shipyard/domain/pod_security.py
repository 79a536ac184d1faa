"""Holding rendered objects to the ``restricted`` Pod Security Standard before they are
applied: pure, over the objects as plain data.

Shipyard's environment namespaces enforce ``restricted`` at admission, but admission judges
*pods*: a Deployment asking for a privileged pod is stored all the same (with a warning),
and the rollout then waits until its deadline while the ReplicaSet's pods are refused. So
bake judges every pod template itself, and refuses the bake naming the object, the field
and the fix. The rules are the standard's (Kubernetes' ``pod-security-admission``, profile
``restricted``, version ``latest``), with one stricter: no capability may be added at all
(the standard allows ``NET_BIND_SERVICE``; an app that wants a low port can listen above
1023 behind its Service instead).

Paths are written as the API writes them, from the object's root:
``spec.template.spec.containers[0].securityContext.privileged``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PodSecurityViolation", "pod_security_violations", "pod_spec_path"]

# Where each kind keeps its pod spec.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_POD_METADATA: dict[str, tuple[str, ...]] = {
    "Pod": ("metadata",),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "metadata"),
}

_ALLOWED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                              "persistentVolumeClaim", "projected", "secret"})
_SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                            "container_engine_t"})
_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_STANDARD = "the namespace enforces the restricted Pod Security Standard"


@dataclass(frozen=True, slots=True)
class PodSecurityViolation:
    """One field of one object that the restricted standard refuses."""

    object: str
    """``Kind/name``."""
    path: str
    """The field, from the object's root."""
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.object} {self.path}: {self.problem}; {self.fix}"


def pod_spec_path(kind: str) -> tuple[str, ...] | None:
    """Where an object of ``kind`` keeps its pod spec (None: it has no pods)."""
    return _POD_SPEC_PATHS.get(kind)


def pod_security_violations(objects: Iterable[Mapping[str, Any]]
                            ) -> list[PodSecurityViolation]:
    """Every field of ``objects`` that the restricted Pod Security Standard (with no added
    capabilities) refuses, in the objects' order; empty when all may run."""
    found: list[PodSecurityViolation] = []
    for obj in objects:
        path = pod_spec_path(str(obj.get("kind")))
        if path is None:
            continue
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        spec = _dig(obj, path)
        metadata_path = _POD_METADATA.get(str(obj.get("kind")), (*path[:-1], "metadata"))
        found += [PodSecurityViolation(name, where, problem, fix) for where, problem, fix in
                  _judge_pod(spec, ".".join(path), _dig(obj, metadata_path),
                             ".".join(metadata_path))]
    return found


Finding = tuple[str, str, str]
"""(path, problem, fix)"""


def _judge_pod(spec: Mapping[str, Any], at: str, metadata: Mapping[str, Any],
               metadata_at: str) -> Iterator[Finding]:
    for field, what in (("hostNetwork", "the host's network"),
                        ("hostPID", "the host's processes"), ("hostIPC", "the host's IPC")):
        if spec.get(field) is True:
            yield (f"{at}.{field}", f"is true: the pod would share {what}",
                   f"remove {field} ({_STANDARD})")
    for index, volume in enumerate(spec.get("volumes") or []):
        yield from _judge_volume(volume, f"{at}.volumes[{index}]")
    pod_context = spec.get("securityContext") or {}
    context_at = f"{at}.securityContext"
    yield from _judge_identity(pod_context, context_at)
    yield from _judge_confinement(pod_context, context_at)
    for index, sysctl in enumerate(pod_context.get("sysctls") or []):
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            yield (f"{context_at}.sysctls[{index}].name",
                   f"{sysctl.get('name')!r} is not a namespaced, safe sysctl",
                   f"remove it; the safe ones are {', '.join(sorted(_SAFE_SYSCTLS))}")
    for key, value in sorted((metadata.get("annotations") or {}).items()):
        if key.startswith(_APPARMOR_ANNOTATION) and value not in ("runtime/default", "") \
                and not str(value).startswith("localhost/"):
            yield (f"{metadata_at}.annotations[{key}]", f"is {value!r}: AppArmor off",
                   "remove the annotation (the runtime's default profile applies)")
    containers = [(f"{at}.{kind}[{index}]", container)
                  for kind in _CONTAINER_LISTS
                  for index, container in enumerate(spec.get(kind) or [])]
    for where, container in containers:
        yield from _judge_container(container, where)
    yield from _required_everywhere(pod_context, context_at, containers)


def _judge_volume(volume: Mapping[str, Any], at: str) -> Iterator[Finding]:
    for source in sorted(set(volume) - {"name"}):
        if source == "hostPath":
            yield (f"{at}.hostPath", "mounts a directory of the host",
                   f"use an emptyDir, a configMap or a persistentVolumeClaim ({_STANDARD})")
        elif source not in _ALLOWED_VOLUMES:
            yield (f"{at}.{source}", f"a {source} volume is not allowed",
                   f"use one of {', '.join(sorted(_ALLOWED_VOLUMES))} ({_STANDARD})")


def _judge_identity(context: Mapping[str, Any], at: str) -> Iterator[Finding]:
    if context.get("runAsNonRoot") is False:
        yield (f"{at}.runAsNonRoot", "is false: the container may run as root",
               "set runAsNonRoot: true and a runAsUser other than 0 (the apps run as 10001)")
    if context.get("runAsUser") == 0:
        yield (f"{at}.runAsUser", "is 0: the container would run as root",
               "set a non-root uid (the apps' images run as 10001)")


def _judge_confinement(context: Mapping[str, Any], at: str) -> Iterator[Finding]:
    seccomp = (context.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in _SECCOMP_TYPES:
        yield (f"{at}.seccompProfile.type", f"is {seccomp!r}: system calls unfiltered",
               "set seccompProfile: {type: RuntimeDefault}")
    selinux = context.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES:
        yield (f"{at}.seLinuxOptions.type", f"{selinux.get('type')!r} is not a container type",
               f"remove it, or use one of {', '.join(sorted(_SELINUX_TYPES - {''}))}")
    for field in ("user", "role"):
        if selinux.get(field):
            yield (f"{at}.seLinuxOptions.{field}", "may not be set", f"remove {field}")
    if (context.get("windowsOptions") or {}).get("hostProcess") is True:
        yield (f"{at}.windowsOptions.hostProcess", "is true: a process of the host",
               "remove hostProcess")
    if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
        yield (f"{at}.appArmorProfile.type", "is 'Unconfined': AppArmor off",
               "remove it, or use RuntimeDefault")


def _judge_container(container: Mapping[str, Any], at: str) -> Iterator[Finding]:
    context = container.get("securityContext") or {}
    context_at = f"{at}.securityContext"
    name = container.get("name", "?")
    if context.get("privileged") is True:
        yield (f"{context_at}.privileged",
               f"is true: container {name!r} would hold every capability and device of "
               "the node", f"remove privileged ({_STANDARD})")
    capabilities = context.get("capabilities") or {}
    if capabilities.get("add"):
        yield (f"{context_at}.capabilities.add",
               f"adds {', '.join(map(str, capabilities['add']))} to container {name!r}",
               "remove capabilities.add: Shipyard adds no capability (listen on a port "
               "above 1023 rather than add NET_BIND_SERVICE)")
    if "ALL" not in (capabilities.get("drop") or []):
        yield (f"{context_at}.capabilities.drop",
               f"does not drop ALL capabilities of container {name!r}",
               "set capabilities: {drop: [ALL]}")
    if context.get("allowPrivilegeEscalation") is not False:
        state = "is true" if context.get("allowPrivilegeEscalation") else "is not set"
        yield (f"{context_at}.allowPrivilegeEscalation",
               f"{state}: a setuid program in container {name!r} could gain privileges",
               "set allowPrivilegeEscalation: false")
    yield from _judge_identity(context, context_at)
    yield from _judge_confinement(context, context_at)
    if context.get("procMount", "Default") != "Default":
        yield (f"{context_at}.procMount", f"is {context.get('procMount')!r}",
               "remove procMount (Default masks the host's /proc)")
    for index, port in enumerate(container.get("ports") or []):
        if port.get("hostPort"):
            yield (f"{at}.ports[{index}].hostPort", f"is {port['hostPort']}: it would "
                   "listen on the node", "remove hostPort; a Service reaches the pod")


def _required_everywhere(pod: Mapping[str, Any], pod_at: str,
                         containers: list[tuple[str, Mapping[str, Any]]]
                         ) -> Iterator[Finding]:
    """runAsNonRoot and a seccomp profile must be set, on the pod or on every container."""
    if pod.get("runAsNonRoot") is None:
        for where, container in containers:
            if (container.get("securityContext") or {}).get("runAsNonRoot") is None:
                yield (f"{pod_at}.runAsNonRoot",
                       f"is not set, nor on {where.rsplit('.', 1)[-1]}: the container may "
                       "run as root", "set runAsNonRoot: true on the pod's securityContext")
                break
    if (pod.get("seccompProfile") or {}).get("type") is None:
        for where, container in containers:
            context = container.get("securityContext") or {}
            if (context.get("seccompProfile") or {}).get("type") is None:
                yield (f"{pod_at}.seccompProfile",
                       f"is not set, nor on {where.rsplit('.', 1)[-1]}: system calls "
                       "unfiltered", "set seccompProfile: {type: RuntimeDefault} on the "
                       "pod's securityContext")
                break


def _dig(obj: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    current: Any = obj
    for key in path:
        current = current.get(key) if isinstance(current, Mapping) else None
    return current if isinstance(current, Mapping) else {}
