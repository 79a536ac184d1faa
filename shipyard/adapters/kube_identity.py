"""Shipyard's own identities in the cluster, as kubeconfig files under
``<home>/kube``: where each lives, how one is written and how one is opened.

An identity is a ServiceAccount token from the TokenRequest API (never a long-lived token
Secret) in a kubeconfig of its own, written mode 0600 in a directory of mode 0700. The
deploys of an environment open ``deploy-<namespace>.kubeconfig``; the environments board
opens ``viewer-<system namespace>.kubeconfig``. Opening one that is missing or whose
token has expired is an error that says to run ``shipyard up``: nothing ever falls back to
the admin kubeconfig, which only the bootstrap (:mod:`shipyard.stack.environments`) uses.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.secret_files import write_secret

__all__ = ["IdentityUnavailable", "cluster_of", "deploy_kubeconfig", "identity_dir",
           "open_identity", "server_of", "token_expiry", "viewer_kubeconfig",
           "write_identity"]

# What a kubeconfig's cluster entry may carry that a token identity keeps.
_CLUSTER_FIELDS = ("server", "certificate-authority-data", "tls-server-name",
                   "insecure-skip-tls-verify", "proxy-url")


class IdentityUnavailable(KubeError):
    """An identity that is not set up, cannot be read or has expired; the message names
    the file and the fix."""


def identity_dir(home: Path) -> Path:
    """Where the identities of the installation at ``home`` live."""
    return home / "kube"


def deploy_kubeconfig(home: Path, namespace: str) -> Path:
    """The deploy identity of the environment whose namespace is ``namespace``."""
    return identity_dir(home) / f"deploy-{namespace}.kubeconfig"


def viewer_kubeconfig(home: Path, system_namespace: str) -> Path:
    """The read-only identity of the installation whose accounts live in
    ``system_namespace``."""
    return identity_dir(home) / f"viewer-{system_namespace}.kubeconfig"


def open_identity(path: Path, *, what: str, now: datetime | None = None) -> Kube:
    """A client with the identity of the kubeconfig ``path`` (``what`` names it in
    errors: "the deploy identity of staging"). Raises :class:`IdentityUnavailable` when
    the file is missing, unreadable or its token expired."""
    if not path.exists():
        raise IdentityUnavailable(f"{what} is not set up ({path} does not exist); "
                                  "`shipyard up` creates it")
    expires = token_expiry(path)
    moment = now or datetime.now(UTC)
    if expires is not None and expires <= moment:
        raise IdentityUnavailable(f"the token of {what} ({path}) expired at "
                                  f"{expires:%Y-%m-%d %H:%M} UTC; `shipyard up` renews it")
    try:
        return Kube.from_kubeconfig(path)
    except KubeError as err:
        raise IdentityUnavailable(f"{what}: {err}; `shipyard up` writes it again") from err


def token_expiry(path: Path) -> datetime | None:
    """When the token in kubeconfig ``path`` expires (its JWT ``exp``), or None when the
    file holds no token whose expiry can be read."""
    token = _user(_load(path)).get("token")
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


def cluster_of(kubeconfig: Path) -> dict[str, Any]:
    """The cluster entry of ``kubeconfig``'s current context, standing alone: a CA given
    as a file (relative to the kubeconfig) is inlined, so identities written from it do not
    depend on where the admin's files are."""
    config = _load(kubeconfig)
    context = _current_context(config)
    name = context.get("cluster")
    entry = next((c.get("cluster") or {} for c in config.get("clusters") or []
                  if c.get("name") == name), None)
    if not entry or not entry.get("server"):
        raise KubeError(f"{kubeconfig}: the current context names no cluster with a server")
    cluster = {k: entry[k] for k in _CLUSTER_FIELDS if k in entry}
    if "certificate-authority" in entry and "certificate-authority-data" not in entry:
        ca = Path(entry["certificate-authority"])
        ca = ca if ca.is_absolute() else kubeconfig.parent / ca
        try:
            cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
        except OSError as err:
            raise KubeError(f"{kubeconfig}: cannot read its CA {ca}: {err}") from err
    return cluster


def write_identity(destination: Path, cluster: Mapping[str, Any], user: str,
                   token: str) -> None:
    """Write a kubeconfig for ``user`` with ``token`` on ``cluster`` (as
    :func:`cluster_of` gives it): mode 0600 from the start, replacing any earlier file at
    once (a reader sees the old one or the new one, never half of one)."""
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "shipyard", "cluster": dict(cluster)}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "shipyard", "context": {"cluster": "shipyard", "user": user}}],
        "current-context": "shipyard",
    }
    write_secret(destination, yaml.safe_dump(config, sort_keys=False))


def server_of(path: Path) -> str:
    """The API server address of kubeconfig ``path`` ("" when it has none)."""
    try:
        return str(cluster_of(path).get("server", ""))
    except KubeError:
        return ""


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise IdentityUnavailable(f"cannot read kubeconfig {path}: {err}") from err
    return loaded if isinstance(loaded, dict) else {}


def _current_context(config: Mapping[str, Any]) -> dict[str, Any]:
    name = config.get("current-context")
    entries = config.get("contexts") or []
    found = next((e.get("context") or {} for e in entries if e.get("name") == name), None)
    if found is None and len(entries) == 1:
        found = entries[0].get("context") or {}
    return dict(found or {})


def _user(config: Mapping[str, Any]) -> dict[str, Any]:
    user = _current_context(config).get("user")
    return dict(next((u.get("user") or {} for u in config.get("users") or []
                      if u.get("name") == user), {}))
