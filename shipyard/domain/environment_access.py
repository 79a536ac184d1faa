"""Who may do what in Shipyard's environments: the namespaces, ServiceAccounts, Roles and
RoleBindings the bootstrap (``shipyard up``) applies, as plain data.

Each environment is a namespace (``<prefix><environment>``) that enforces the
``restricted`` Pod Security Standard. Deploys into it use a ServiceAccount of its own,
``deploy-<environment>``, bound there to the Role ``shipyard-deploy``: exactly the verbs
and kinds the cd stages use (see :func:`deploy_rules`), in that namespace only. The
environments board uses one read-only ServiceAccount, ``viewer``, bound in every
environment to ``shipyard-view`` (get, list and watch of what it reads).

The ServiceAccounts live in a namespace of their own, ``<prefix>system``, where nothing
runs: a workload in an environment cannot name them (a pod may only use an account of its
own namespace), so no app, whatever its templates say, runs with the right to deploy.
Every object is namespaced: two installations with different prefixes share nothing, and
deleting an installation's namespaces removes all of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.domain.labels import MANAGED_BY, MANAGED_BY_LABEL

__all__ = ["DEPLOYABLE_KINDS", "DEPLOY_ROLE", "ENFORCE_LABEL", "ENVIRONMENT_LABEL",
           "POD_SECURITY_LABELS", "SYSTEM", "VIEW_ROLE", "VIEW_RULES", "EnvironmentAccess",
           "InvalidEnvironment", "deploy_rules", "validate_environments"]

SYSTEM = "system"
"""The name after the prefix of the namespace holding Shipyard's identities; no
environment may take it."""
DEPLOY_ROLE = "shipyard-deploy"
VIEW_ROLE = "shipyard-view"
VIEWER = "viewer"
ENVIRONMENT_LABEL = "shipyard.dev/environment"
_MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
"""Pods that do not meet the restricted standard are refused (enforce), logged in the
audit log (audit) and reported to whoever applies a workload that would make them (warn)."""

DEPLOYABLE_KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "ConfigMap"): ("", "configmaps"),
    ("v1", "Service"): ("", "services"),
    ("apps/v1", "Deployment"): ("apps", "deployments"),
}
"""(apiVersion, kind) -> (API group, resource): what an app's templates may render. These
are the kinds the stages know how to roll out, switch, roll back and remove; anything else
is refused at bake, and the deploy identity could not apply it anyway."""

_APPLY = ["get", "list", "create", "patch", "delete"]


def deploy_rules(namespace: str) -> list[dict[str, Any]]:
    """The deploy identity's rules in ``namespace``, each with the stage that needs it."""
    by_group: dict[str, list[str]] = {}
    for group, resource in DEPLOYABLE_KINDS.values():
        by_group.setdefault(group, []).append(resource)
    rules: list[dict[str, Any]] = [
        # bake: server-side dry run; deploy: server-side apply (patch, and create when the
        # object is new); scale-down and rollback: list by label, read, prune (delete).
        {"apiGroups": [group], "resources": sorted(resources), "verbs": _APPLY}
        for group, resources in sorted(by_group.items())
    ]
    rules += [
        # scale-down, the red/black give-up and the chaos gate scale through the
        # subresource (its own field manager, so the next apply takes replicas back).
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
        # the rollout wait lists the Deployment's pods and their events; the chaos gate
        # lists its targets and kills them.
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        # the canary scrapes each pod's /metrics through the API server's pod proxy.
        {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
        # bake checks that its environment's namespace exists and enforces the standard.
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [namespace],
         "verbs": ["get"]},
    ]
    return rules


VIEW_RULES: list[dict[str, Any]] = [
    # The environments board: an app's Deployments by label, its Service by name.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
]

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class InvalidEnvironment(ValueError):
    """An environment list that cannot be made into namespaces."""


def validate_environments(prefix: str, environments: Sequence[str]) -> tuple[str, ...]:
    """``environments`` as a tuple, or :class:`InvalidEnvironment` naming what is wrong:
    each a DNS label that, after ``prefix``, is a namespace name (63 characters at most),
    none twice, none ``system``, at least one."""
    if not environments:
        raise InvalidEnvironment("at least one environment is needed (e.g. staging,prod)")
    seen: set[str] = set()
    for name in environments:
        if not _NAME.fullmatch(name):
            raise InvalidEnvironment(f"{name!r} is not a valid environment name: lower-case "
                                     "letters, digits and '-', starting and ending with a "
                                     "letter or digit")
        if name == SYSTEM:
            raise InvalidEnvironment(f"{SYSTEM!r} is the namespace of Shipyard's own "
                                     "identities; name the environment otherwise")
        if len(prefix + name) > 63:
            raise InvalidEnvironment(f"namespace {prefix + name!r} is longer than 63 "
                                     "characters; shorten the environment or the prefix")
        if name in seen:
            raise InvalidEnvironment(f"{name!r} is listed twice")
        seen.add(name)
    return tuple(environments)


@dataclass(frozen=True, slots=True)
class EnvironmentAccess:
    """The environments of one installation (its namespace prefix) and who may touch
    them."""

    prefix: str
    environments: tuple[str, ...]

    def __post_init__(self) -> None:
        validate_environments(self.prefix, self.environments)

    @property
    def system_namespace(self) -> str:
        """Where the ServiceAccounts live."""
        return f"{self.prefix}{SYSTEM}"

    def namespace(self, environment: str) -> str:
        return f"{self.prefix}{environment}"

    @staticmethod
    def deployer(environment: str) -> str:
        """The deploy ServiceAccount of ``environment``."""
        return f"deploy-{environment}"

    @property
    def viewer(self) -> str:
        """The read-only ServiceAccount."""
        return VIEWER

    def manifests(self) -> list[dict[str, Any]]:
        """Every object the bootstrap applies, in an order that can be applied (namespaces
        first)."""
        system = self.system_namespace
        objects = [_namespace(system, {})]
        objects += [_namespace(self.namespace(env), {ENVIRONMENT_LABEL: env})
                    for env in self.environments]
        objects += [_service_account(self.deployer(env), system) for env in self.environments]
        objects.append(_service_account(self.viewer, system))
        for env in self.environments:
            namespace = self.namespace(env)
            objects += [
                _role(DEPLOY_ROLE, namespace, deploy_rules(namespace)),
                _binding(DEPLOY_ROLE, namespace, self.deployer(env), system),
                _role(VIEW_ROLE, namespace, VIEW_RULES),
                _binding(VIEW_ROLE, namespace, self.viewer, system),
            ]
        return objects


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name,
                         "labels": {**_MANAGED, **labels, **POD_SECURITY_LABELS}}}


def _service_account(name: str, namespace: str) -> dict[str, Any]:
    # Its tokens come from the TokenRequest API only: nothing mounts it.
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(_MANAGED)},
            "automountServiceAccountToken": False}


def _role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(_MANAGED)},
            "rules": rules}


def _binding(role: str, namespace: str, account: str, account_namespace: str
             ) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": namespace, "labels": dict(_MANAGED)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account,
                          "namespace": account_namespace}]}
