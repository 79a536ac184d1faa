"""Running untrusted code (a repository's tests, a repository's build backend) in a
confined container on the local Docker engine, never on the host.

A :class:`Confinement` says what the container may see: an image, read-only mounts (the
checkout), writable mounts (an output directory), limits. Everything else is denied by
:func:`container_options`, whatever the caller asks:

* no network at all (``network_mode="none"``: only a loopback of its own);
* no environment from the host: the container gets :data:`BASE_ENVIRONMENT` plus what the
  caller names, never the worker's (its database URL, kubeconfig, Prefect address);
* a read-only root filesystem; the only writable places are a tmpfs at ``/tmp`` (also
  ``HOME``; noexec; bounded by the memory limit, since tmpfs pages are charged to it), the
  caller's writable mounts, and the engine's own 64 MiB ``/dev/shm``;
* an ordinary uid, no capabilities, no new privileges (setuid binaries do nothing);
* CPU, memory (no swap) and process-count limits, and a wall-clock limit after which
  the container is killed (by the host, and by ``timeout`` inside it as well, so it ends
  even if the process that started it dies);
* an init process, so orphans a test leaves are reaped rather than filling the pid limit.

:class:`Sandbox` runs one such container to its end and removes it whatever happens;
:func:`run_confined` does so from async code, removing the container when the caller is
cancelled.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.adapters.blocking import on_abandon, run_blocking
from shipyard.adapters.docker_engine import DockerEngine

__all__ = ["BASE_ENVIRONMENT", "SANDBOX_USER", "Confinement", "Limits", "Sandbox",
           "SandboxExit", "SandboxOutputError", "container_options", "describe",
           "read_output_file", "run_confined", "stage_source", "writable_dir"]

SANDBOX_USER = "10001:10001"
"""Numeric, so no passwd entry is needed; the same uid the apps' images run as."""
SCRATCH = "/tmp"  # noqa: S108 (inside the container: its own tmpfs)
BASE_ENVIRONMENT: Mapping[str, str] = {
    "HOME": SCRATCH,
    "TMPDIR": SCRATCH,
    "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
# Seconds the in-container `timeout` waits beyond the host's limit: the host kills first and
# says why; the inner one only ends a container whose host process is gone.
_INNER_GRACE_SECONDS = 30
_STOP_WAIT_SECONDS = 30


class SandboxOutputError(RuntimeError):
    """A file the container wrote cannot be taken back (missing, not a regular file, too
    big)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one container may consume."""

    cpus: float
    memory_mib: int
    pids: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Confinement:
    """One confined run: ``command`` in ``image`` with only these mounts and variables."""

    image: str
    command: tuple[str, ...]
    limits: Limits
    workdir: str = SCRATCH
    read_only: Mapping[str, Path] = field(default_factory=dict)  # container path -> host
    writable: Mapping[str, Path] = field(default_factory=dict)  # container path -> host
    environment: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    user: str = SANDBOX_USER


@dataclass(frozen=True, slots=True)
class SandboxExit:
    """How a confined run ended."""

    exit_code: int | None
    timed_out: bool
    out_of_memory: bool
    seconds: float


def container_options(confinement: Confinement) -> dict[str, Any]:
    """The docker SDK's ``containers.create`` keywords for ``confinement``: the caller's
    mounts, variables and limits, and the denials of this module's contract, which no
    field of the confinement can lift."""
    limits = confinement.limits
    volumes = {str(host): {"bind": inside, "mode": "ro"}
               for inside, host in confinement.read_only.items()}
    volumes.update({str(host): {"bind": inside, "mode": "rw"}
                    for inside, host in confinement.writable.items()})
    memory = f"{limits.memory_mib}m"
    return {
        "network_mode": "none",
        "environment": {**BASE_ENVIRONMENT, **confinement.environment},
        "user": confinement.user,
        "working_dir": confinement.workdir,
        "read_only": True,
        "tmpfs": {SCRATCH: f"rw,noexec,nosuid,nodev,size={memory},mode=1777"},
        "volumes": volumes,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": limits.pids,
        "nano_cpus": int(limits.cpus * 1e9),
        "mem_limit": memory,
        "memswap_limit": memory,
        "init": True,
        "labels": {"dev.shipyard.sandbox": "true", **confinement.labels},
        "stdin_open": False,
        "tty": False,
    }


def describe(confinement: Confinement) -> str:
    """One line for a stage's log: what the container may and may not do."""
    limits = confinement.limits
    writable = ", ".join([f"{SCRATCH} (tmpfs)", *confinement.writable])
    read_only = ", ".join(confinement.read_only) or "nothing"
    return (f"sandbox {confinement.image}: no network, no host environment, read-only root; "
            f"mounted read-only: {read_only}; writable: {writable}; uid {confinement.user}, "
            f"no capabilities, no new privileges; limits {limits.cpus:g} CPU, "
            f"{limits.memory_mib} MiB, {limits.pids} processes, {limits.seconds:g} s")


class Sandbox:
    """One confined container, from creation to removal. :meth:`run` blocks; :meth:`abort`
    (from any thread) removes the container at once and makes :meth:`run` return, as
    abandoning the work that runs it does (:mod:`shipyard.adapters.blocking`)."""

    def __init__(self, engine: DockerEngine, confinement: Confinement) -> None:
        self.engine = engine
        self.confinement = confinement
        self._lock = threading.Lock()
        self._container: str | None = None
        self._aborted = False
        self._timed_out = threading.Event()

    def run(self, on_line: Callable[[str], None]) -> SandboxExit:
        """Run the container to its end, passing each output line to ``on_line``; kill it
        at the time limit; remove it whatever happens."""
        confinement = self.confinement
        limit = confinement.limits.seconds
        inner = ["timeout", "--signal=KILL", f"{int(limit) + _INNER_GRACE_SECONDS}"]
        started = time.monotonic()
        container = self.engine.create_container(
            confinement.image, [*inner, *confinement.command], container_options(confinement))
        with self._lock:
            self._container = container
            aborted = self._aborted
        timer = threading.Timer(limit, self._time_out)
        try:
            if aborted:
                raise InterruptedError("the sandbox was aborted before it started")
            with on_abandon(self.abort):
                self.engine.start(container)
                timer.start()
                for line in self.engine.follow_output(container, idle_seconds=limit + 60):
                    on_line(line)
                ended = self.engine.wait_exit(container, timeout=_STOP_WAIT_SECONDS)
        finally:
            timer.cancel()
            self.engine.discard(container)
        return SandboxExit(exit_code=ended.exit_code, timed_out=self._timed_out.is_set(),
                           out_of_memory=ended.oom_killed,
                           seconds=time.monotonic() - started)

    def abort(self) -> None:
        """Remove the container now (a cancelled stage); safe before, during and after
        :meth:`run`."""
        with self._lock:
            self._aborted = True
            container = self._container
        if container is not None:
            self.engine.discard(container)

    def _time_out(self) -> None:
        self._timed_out.set()
        with self._lock:
            container = self._container
        if container is not None:
            self.engine.kill(container)


async def run_confined(engine: DockerEngine, confinement: Confinement,
                       on_line: Callable[[str], None]) -> SandboxExit:
    """:meth:`Sandbox.run` in a worker thread; if the caller is cancelled (a stage's
    timeout, a cancelled run) the container is removed before the cancellation goes on
    (:func:`~shipyard.adapters.blocking.run_blocking` abandons the run). ``on_line`` is
    called from that thread."""
    return await run_blocking(Sandbox(engine, confinement).run, on_line)


def writable_dir(path: Path) -> Path:
    """A new, empty directory at ``path`` that the sandbox's uid may write: mode 0777, so it
    must sit inside a directory only the worker can enter (the state directory)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    path.chmod(0o777)
    return path


def read_output_file(path: Path, *, max_bytes: int) -> str:
    """The text of a file the container wrote into a writable mount. The container chose
    what sits at ``path``: a symlink (to a host file the worker could read), a fifo or a
    huge file is refused rather than followed or read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise SandboxOutputError(f"{path.name}: {err.strerror}") from err
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SandboxOutputError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise SandboxOutputError(f"{path.name} has {info.st_size} bytes, more than the "
                                     f"{max_bytes} taken back")
        return handle.read(max_bytes).decode(errors="replace")


def stage_source(source: Path, destination: Path, *,
                 ignore: Callable[[str, list[str]], set[str]] | None = None) -> Path:
    """Copy ``source`` to ``destination`` (replaced) for a read-only mount: symlinks stay
    links (resolved inside the container, never on the host), and every file and folder
    becomes readable by the sandbox's uid whatever the worker's umask made of the
    checkout."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination, symlinks=True, ignore=ignore)
    # os.walk lists a symlink to a folder among the folders but never enters it.
    for folder, _, files in os.walk(destination):
        Path(folder).chmod(0o755)
        for name in files:
            entry = Path(folder, name)
            if not entry.is_symlink():
                entry.chmod(0o755 if entry.stat().st_mode & 0o111 else 0o644)
    return destination
