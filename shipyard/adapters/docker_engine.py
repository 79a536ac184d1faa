"""The Docker engine through the docker SDK: is it there, which version, images in and out,
and the containers that run untrusted code (created with the options
:mod:`shipyard.adapters.sandbox` decides, followed, waited for, discarded).

Every call names the engine it talks to (``DOCKER_HOST`` or the default socket) in its
errors, so a stack failure says which engine refused.

Every call has a deadline: the SDK's ``timeout``, which bounds each wait for the engine's
next bytes (a call's answer, or the next chunk of a build's or a push's stream). An engine
that stays silent past it is an :class:`EngineError` naming the call and the deadline, not
the HTTP library's exception. A build or a push run where its work can be abandoned
(:mod:`shipyard.adapters.blocking`) stops reading at the next chunk once it is, which
closes the connection and with it the engine's work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests
import urllib3
from docker.errors import DockerException, ImageNotFound

from shipyard.adapters.blocking import check_abandoned

__all__ = ["API_TIMEOUT_SECONDS", "BASE_IMAGE", "STREAM_IDLE_SECONDS", "ContainerExit",
           "DockerEngine", "EngineError", "default_engine_url"]

API_TIMEOUT_SECONDS = 60.0
"""How long the engine may take to answer one call (inspect, create, start, remove)."""
STREAM_IDLE_SECONDS = 1800.0
"""How long a build or a push may stay silent between two chunks of its output: a long
compile or a big layer's upload prints nothing for a while. The stage's own timeout bounds
the whole."""
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
    """The engine at ``url``; a call it does not answer within ``timeout_seconds`` fails
    (builds, pushes and waits have deadlines of their own)."""

    url: str
    timeout_seconds: float = API_TIMEOUT_SECONDS

    def _client(self, timeout: float | None = None) -> docker.DockerClient:
        seconds = timeout or self.timeout_seconds
        try:
            return docker.DockerClient(base_url=self.url, timeout=max(1, round(seconds)))
        except DockerException as err:  # it asks the engine's API version at once
            if isinstance(err.__cause__, requests.exceptions.Timeout):
                raise self._silent("its API version", seconds) from err
            raise EngineError(f"Docker engine at {self.url}: {err}") from err

    @contextlib.contextmanager
    def _answering(self, what: str, timeout: float | None = None) -> Iterator[None]:
        """Within the block, an engine that stays silent past ``timeout`` (default: the
        engine's) or cannot be reached is an :class:`EngineError` naming the engine,
        ``what`` it was asked and the deadline."""
        try:
            yield
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError,
                TimeoutError) as err:
            raise self._silent(what, timeout or self.timeout_seconds) from err
        except (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError) as err:
            raise EngineError(f"the Docker engine at {self.url} cannot be reached for "
                              f"{what}: {err}") from err

    @contextlib.contextmanager
    def _streaming(self, timeout: float) -> Iterator[docker.DockerClient]:
        """A client whose streamed answers are closed when the block ends, however it
        ends: a build or a push abandoned half-way hangs up, so the engine stops it rather
        than stream on to nobody."""
        client = self._client(timeout)
        answers: list[requests.Response] = []
        client.api.hooks["response"].append(lambda answer, *_, **__: answers.append(answer))
        try:
            yield client
        finally:
            for answer in answers:
                answer.close()
            client.close()

    def _silent(self, what: str, seconds: float) -> EngineError:
        return EngineError(f"the Docker engine at {self.url} did not answer {what} within "
                           f"{seconds:g} s; `docker info` shows whether it is stuck "
                           "(restart it) or only busy")

    def answers(self) -> bool:
        """Whether an engine answers a ping within a few seconds."""
        try:
            return bool(self._client(timeout=3).ping())
        except (EngineError, DockerException, requests.exceptions.RequestException,
                urllib3.exceptions.HTTPError, OSError):
            return False

    def version(self) -> str:
        try:
            with self._answering("its version", 10):
                return str(self._client(timeout=10).version().get("Version", "?"))
        except DockerException as err:
            raise EngineError(f"Docker engine at {self.url}: {err}") from err

    def has_image(self, reference: str) -> bool:
        try:
            with self._answering(f"whether it has {reference}"):
                self._client().images.get(reference)
        except ImageNotFound:
            return False
        except DockerException as err:
            raise EngineError(f"Docker engine at {self.url}: {err}") from err
        return True

    def image_id(self, reference: str) -> str:
        try:
            with self._answering(f"inspecting {reference}"):
                return str(self._client().images.get(reference).id)
        except DockerException as err:
            raise EngineError(f"inspecting {reference} on {self.url}: {err}") from err

    def image_size(self, reference: str) -> int:
        try:
            with self._answering(f"inspecting {reference}"):
                return int(self._client().images.get(reference).attrs.get("Size", 0))
        except DockerException as err:
            raise EngineError(f"inspecting {reference} on {self.url}: {err}") from err

    def import_rootfs(self, tarball: Path, reference: str, changes: list[str]) -> str:
        """``docker import`` a root filesystem tarball as ``reference``; returns the
        engine's answer."""
        repository, _, tag = reference.rpartition(":")
        try:
            with self._answering(f"importing {reference}", 600):
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
        build's own error is raised as :class:`EngineError`. ``nocache`` reuses no layer.
        Abandoned work stops at the next chunk and hangs up."""
        try:
            with self._answering(f"building {reference}", STREAM_IDLE_SECONDS), \
                    self._streaming(STREAM_IDLE_SECONDS) as client:
                stream = client.api.build(path=str(context), tag=reference, rm=True,
                                          forcerm=True, decode=True,
                                          labels=dict(labels or {}),
                                          buildargs=dict(buildargs or {}),
                                          network_mode="none", nocache=nocache)
                for chunk in stream:
                    check_abandoned()
                    if "error" in chunk:
                        raise EngineError(f"building {reference}: {chunk['error'].strip()}")
                    text = chunk.get("stream", "")
                    if text.strip():
                        yield text.rstrip("\n")
        except DockerException as err:
            raise EngineError(f"building {reference} on {self.url}: {err}") from err

    def push(self, reference: str) -> str:
        """Push ``reference`` (``host:port/repo:tag``) and return the manifest digest the
        registry reported. Abandoned work stops at the next chunk."""
        repository, _, tag = reference.rpartition(":")
        digest = ""
        try:
            with self._answering(f"pushing {reference}", STREAM_IDLE_SECONDS), \
                    self._streaming(STREAM_IDLE_SECONDS) as client:
                for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
                    check_abandoned()
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
            with self._answering(f"running {reference}", 300):
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
            with self._answering(f"serving {reference}"):
                # (address,) alone asks the engine for a free port on that address; the
                # SDK's type stubs know only (address, port).
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
            with self._answering(f"the address of {container_id[:12]}"):
                container = self._client().containers.get(container_id)
            return str(container.attrs["NetworkSettings"]["IPAddress"])
        except (DockerException, KeyError) as err:
            raise EngineError(f"reading the address of {container_id[:12]}: {err}") from err

    def logs(self, container_id: str) -> str:
        try:
            with self._answering(f"the logs of {container_id[:12]}"):
                output = self._client().containers.get(container_id).logs()
        except DockerException as err:
            raise EngineError(f"reading the logs of {container_id[:12]}: {err}") from err
        return bytes(output).decode(errors="replace")

    def remove(self, container_id: str, *, stop_timeout: int = 10) -> int | None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout`` s) and remove a container;
        returns its exit code, or None if it was already gone."""
        try:
            seconds = self.timeout_seconds + stop_timeout
            with self._answering(f"removing {container_id[:12]}", seconds):
                container = self._client(seconds).containers.get(container_id)
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
            with self._answering(f"creating a container of {reference}"):
                container = self._client().containers.create(reference, command, **options)
        except DockerException as err:
            raise EngineError(f"creating a container of {reference} on {self.url}: {err}"
                              ) from err
        return str(container.id)

    def start(self, container_id: str) -> None:
        try:
            with self._answering(f"starting {container_id[:12]}"):
                self._client().containers.get(container_id).start()
        except DockerException as err:
            raise EngineError(f"starting {container_id[:12]} on {self.url}: {err}") from err

    def follow_output(self, container_id: str, *, idle_seconds: float) -> Iterator[str]:
        """The container's stdout and stderr, line by line as they come, until it ends or
        is removed. ``idle_seconds`` bounds a wait for the next chunk: set it above the
        container's own time limit, since a quiet test is not a dead one."""
        try:
            with self._answering(f"the output of {container_id[:12]}", idle_seconds):
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
            with self._answering(f"the end of {container_id[:12]}", timeout + 10):
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
            with self._answering(f"killing {container_id[:12]}"):
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
            with self._answering(f"removing {container_id[:12]}"):
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
            with self._answering("the list of containers"):
                found = self._client().containers.list(
                    all=True, filters={"label": f"{label}={value}"})
        except DockerException as err:
            raise EngineError(f"listing containers on {self.url}: {err}") from err
        return [str(c.id) for c in found]
