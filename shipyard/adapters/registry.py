"""An OCI / Docker registry's HTTP API (distribution v2): health and manifest digests."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

__all__ = ["Registry", "RegistryError"]

_MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class RegistryError(RuntimeError):
    """The registry is unreachable or does not have what was asked."""


@dataclass(frozen=True, slots=True)
class Registry:
    """A registry reached over plain HTTP at ``address`` (``127.0.0.1:5000``)."""

    address: str

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v2/", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def has_manifest(self, repository: str, digest: str) -> bool:
        """Whether the registry serves ``repository@digest``; :class:`RegistryError` when
        it cannot be asked."""
        if not _NAME.fullmatch(repository) or not _DIGEST.fullmatch(digest):
            raise ValueError(f"{repository}@{digest} is not a valid repository and digest")
        return self._head_manifest(repository, digest) is not None

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry serves for ``repository:tag`` (``sha256:…``)."""
        if not _NAME.fullmatch(repository) or not _TAG.fullmatch(tag):
            raise ValueError(f"{repository}:{tag} is not a valid repository and tag")
        response = self._head_manifest(repository, tag)
        if response is None:
            raise RegistryError(f"registry {self.address} has no {repository}:{tag}")
        digest = str(response.headers.get("Docker-Content-Digest", ""))
        if not digest.startswith("sha256:"):
            raise RegistryError(f"registry {self.address} sent no digest for "
                                f"{repository}:{tag}")
        return digest

    def _head_manifest(self, repository: str, reference: str) -> httpx.Response | None:
        """The registry's answer to HEAD of a manifest (a tag or a digest), None for 404;
        :class:`RegistryError` when it is unreachable or answers anything else."""
        try:
            response = httpx.head(f"{self.url}/v2/{repository}/manifests/{reference}",
                                  headers={"Accept": _MANIFEST_TYPES}, timeout=10)
        except httpx.HTTPError as err:
            raise RegistryError(f"registry {self.address} unreachable: {err}") from err
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(f"registry {self.address} answered {response.status_code} "
                                f"for {repository} {reference}")
        return response
