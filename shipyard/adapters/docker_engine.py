"""The Docker engine through the docker SDK: is it there, which version, images in and out,
and the containers that run untrusted code (created with the options
:mod:`shipyard.adapters.sandbox` decides, followed, waited for, discarded).

Every call names the engine it talks to (``DOCKER_HOST`` or the default socket) in its
errors, so a stack failure says which engine refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound

__all__ = ["BASE_IMAGE", "ContainerExit", "DockerEngine", "EngineError", "default_engine_url"]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
BASE_IMAGE = "shipyard/python-base:bookworm"
"""Debian bookworm with CPython 3.11, made by :mod:`shipyard.stack.base_image`: every app
image, test image and sandbox starts from it (no registry can be pulled from here)."""


class EngineError(RuntimeError):
    """The engine is unreachable or refused; the message names the engine."""


@dataclass(frozen=True, slots=True)
class ContainerExit:
    """How a container ended: its exit code (None if the engine lost it) and whether the
    kernel killed it for passing its memory limit."""

    exit_code: int | None
    oom_killed: bool


def default_engine_url() -> str:
    """``DOCKER_HOST`` if set, else the standard socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


@dataclass
class DockerEngine:
    url: str

    def _client(self, timeout: float = 60) -> docker.DockerClient:
        try:
            return docker.DockerClient(base_url=self.url, timeout=int(timeout))
        except DockerException as err:
            raise EngineError(f"Docker engine at {self.url}: {err}") from err

    def answers(self) -> bool:
        """Whether an engine answers a ping within a few seconds."""
        try:
            return bool(self._client(timeout=3).ping())
        except (EngineError, DockerException, OSError):
            return False

    def version(self) -> str:
        try:
            return str(self._client(timeout=10).version().get("Version", "?"))
        except DockerException as err:
            raise EngineError(f"Docker engine at {self.url}: {err}") from err

    def has_image(self, reference: str) -> bool:
        try:
            self._client().images.get(reference)
        except ImageNotFound:
            return False
        except DockerException as err:
            raise EngineError(f"Docker engine at {self.url}: {err}") from err
        return True

    def image_id(self, reference: str) -> str:
        try:
            return str(self._client().images.get(reference).id)
        except DockerException as err:
            raise EngineError(f"inspecting {reference} on {self.url}: {err}") from err

    def image_size(self, reference: str) -> int:
        return int(self._client().images.get(reference).attrs.get("Size", 0))

    def import_rootfs(self, tarball: Path, reference: str, changes: list[str]) -> str:
        """``docker import`` a root filesystem tarball as ``reference``; returns the
        engine's answer."""
        repository, _, tag = reference.rpartition(":")
        try:
            client = self._client(timeout=600)
            # From a file, not a stream: the SDK streams with chunked encoding, which
            # dockerd 20.10 rejects ("invalid byte in chunk length").
            result = client.api.import_image_from_file(
                str(tarball), repository=repository, tag=tag, changes=changes)
        except DockerException as err:
            raise EngineError(f"importing {reference} into {self.url}: {err}") from err
        return str(result)

    def build(self, context: Path, reference: str, *, labels: Mapping[str, str] | None = None,
              buildargs: Mapping[str, str] | None = None,
              nocache: bool = False) -> Iterator[str]:
        """Build ``context`` as ``reference``, yielding the build's output lines; the
        build's own error is raised as :class:`EngineError`. ``nocache`` reuses no layer."""
        client = self._client(timeout=1800)
        try:
            stream = client.api.build(path=str(context), tag=reference, rm=True,
                                      forcerm=True, decode=True, labels=dict(labels or {}),
                                      buildargs=dict(buildargs or {}), network_mode="none",
                                      nocache=nocache)
            for chunk in stream:
                if "error" in chunk:
                    raise EngineError(f"building {reference}: {chunk['error'].strip()}")
                text = chunk.get("stream", "")
                if text.strip():
                    yield text.rstrip("\n")
        except DockerException as err:
            raise EngineError(f"building {reference} on {self.url}: {err}") from err

    def push(self, reference: str) -> str:
        """Push ``reference`` (``host:port/repo:tag``) and return the manifest digest the
        registry reported."""
        repository, _, tag = reference.rpartition(":")
        digest = ""
        try:
            for chunk in self._client(timeout=1800).api.push(repository, tag=tag, stream=True,
                                                             decode=True):
                if "error" in chunk:
                    raise EngineError(f"pushing {reference}: {chunk['error']}")
                aux: Any = chunk.get("aux") or {}
                digest = str(aux.get("Digest", digest))
        except DockerException as err:
            raise EngineError(f"pushing {reference} from {self.url}: {err}") from err
        if not digest:
            raise EngineError(f"pushing {reference}: the registry reported no digest")
        return digest

    def run(self, reference: str, command: list[str]) -> str:
        """Run ``command`` in a throw-away container of ``reference``, without network;
        returns its output."""
        try:
            output = self._client(timeout=300).containers.run(
                reference, command, remove=True, network_mode="none")
        except DockerException as err:
            raise EngineError(f"running {reference} on {self.url}: {err}") from err
        return bytes(output).decode(errors="replace")

    def serve(self, reference: str, port: int, *,
              environment: Mapping[str, str] | None = None) -> tuple[str, int]:
        """Start a container of ``reference`` in the background with its ``port`` published
        on a free port of 127.0.0.1 (never beyond loopback); returns (container id, host
        port). :meth:`remove` ends it."""
        try:
            # (address,) alone asks the engine for a free port on that address; the SDK's
            # type stubs know only (address, port).
            containers: Any = self._client().containers
            container = containers.run(reference, detach=True,
                                       environment=dict(environment or {}),
                                       ports={f"{port}/tcp": ("127.0.0.1",)})
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"]
            return str(container.id), int(bindings[0]["HostPort"])
        except (DockerException, KeyError, IndexError, TypeError) as err:
            raise EngineError(f"serving {reference} on {self.url}: {err}") from err

    def address(self, container_id: str) -> str:
        """The container's address on the engine's bridge network (reachable from other
        containers and from this host)."""
        try:
            container = self._client().containers.get(container_id)
            return str(container.attrs["NetworkSettings"]["IPAddress"])
        except (DockerException, KeyError) as err:
            raise EngineError(f"reading the address of {container_id[:12]}: {err}") from err

    def logs(self, container_id: str) -> str:
        try:
            output = self._client().containers.get(container_id).logs()
        except DockerException as err:
            raise EngineError(f"reading the logs of {container_id[:12]}: {err}") from err
        return bytes(output).decode(errors="replace")

    def remove(self, container_id: str, *, stop_timeout: int = 10) -> int | None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout`` s) and remove a container;
        returns its exit code, or None if it was already gone."""
        try:
            container = self._client().containers.get(container_id)
            container.stop(timeout=stop_timeout)
            code = container.wait(timeout=stop_timeout + 30).get("StatusCode")
            container.remove(force=True)
        except docker.errors.NotFound:
            return None
        except DockerException as err:
            raise EngineError(f"removing {container_id[:12]} on {self.url}: {err}") from err
        return int(code) if code is not None else None

    def create_container(self, reference: str, command: list[str],
                         options: Mapping[str, Any]) -> str:
        """Create (not start) a container of ``reference`` running ``command``, with the
        SDK's ``containers.create`` keyword ``options``; returns its id."""
        try:
            container = self._client().containers.create(reference, command, **options)
        except DockerException as err:
            raise EngineError(f"creating a container of {reference} on {self.url}: {err}"
                              ) from err
        return str(container.id)

    def start(self, container_id: str) -> None:
        try:
            self._client().containers.get(container_id).start()
        except DockerException as err:
            raise EngineError(f"starting {container_id[:12]} on {self.url}: {err}") from err

    def follow_output(self, container_id: str, *, idle_seconds: float) -> Iterator[str]:
        """The container's stdout and stderr, line by line as they come, until it ends or
        is removed. ``idle_seconds`` bounds a wait for the next chunk: set it above the
        container's own time limit, since a quiet test is not a dead one."""
        try:
            container = self._client(timeout=idle_seconds).containers.get(container_id)
            partial = b""
            for chunk in container.logs(stream=True, follow=True):
                partial += bytes(chunk)
                *lines, partial = partial.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if partial:
                yield partial.decode(errors="replace")
        except docker.errors.NotFound:
            return
        except DockerException as err:
            raise EngineError(f"following {container_id[:12]} on {self.url}: {err}") from err

    def wait_exit(self, container_id: str, *, timeout: float) -> ContainerExit:
        """Wait (at most ``timeout`` s) for the container to end; how it ended."""
        try:
            container = self._client(timeout=timeout + 10).containers.get(container_id)
            code = container.wait(timeout=timeout).get("StatusCode")
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled", False))
        except docker.errors.NotFound:
            return ContainerExit(None, False)
        except DockerException as err:
            raise EngineError(f"waiting for {container_id[:12]} on {self.url}: {err}") from err
        return ContainerExit(int(code) if code is not None else None, oom)

    def kill(self, container_id: str) -> None:
        """SIGKILL the container's processes; nothing if it has already ended or is gone."""
        try:
            self._client().containers.get(container_id).kill()
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as err:
            if err.status_code == 409:  # not running: it ended on its own meanwhile
                return
            raise EngineError(f"killing {container_id[:12]} on {self.url}: {err}") from err
        except DockerException as err:
            raise EngineError(f"killing {container_id[:12]} on {self.url}: {err}") from err

    def discard(self, container_id: str) -> None:
        """Remove the container at once, killing it if it runs; nothing if it is gone."""
        try:
            self._client().containers.get(container_id).remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as err:
            if err.status_code == 409 and "already in progress" in str(err):
                return
            raise EngineError(f"removing {container_id[:12]} on {self.url}: {err}") from err
        except DockerException as err:
            raise EngineError(f"removing {container_id[:12]} on {self.url}: {err}") from err

    def containers_labelled(self, label: str, value: str) -> list[str]:
        """Ids of the containers, running or not, whose ``label`` is ``value``."""
        try:
            found = self._client().containers.list(all=True,
                                                   filters={"label": f"{label}={value}"})
        except DockerException as err:
            raise EngineError(f"listing containers on {self.url}: {err}") from err
        return [str(c.id) for c in found]
