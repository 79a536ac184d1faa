"""The bundled apps as local processes for development, wired through discovery.

Each instance is ``python -m <app>`` from the checkout's ``apps/<app>`` (with
``apps/servicekit`` on the path), listening on 127.0.0.1 only, registered with every local
discovery instance. Instances start in dependency order (discovery first) and each must
answer its readiness probe before the next starts; a failure stops everything started and
shows the failing instance's log. Every app's instances share one working directory under
``$SHIPYARD_HOME/apps/<app>`` (data's SQLite file, streaming's log); each instance has its
own pid file and log there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.probe import http_ok
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.pipeline import PipelineGraph, StageSpec

__all__ = ["LocalApps", "LocalAppsFailed", "LocalInstance", "instance_counts"]

READY_TIMEOUT_SECONDS = 60
SHARED_PACKAGE = "servicekit"


class LocalAppsFailed(RuntimeError):
    """An instance did not become ready; the message ends with its log's last lines."""


@dataclass(frozen=True, slots=True)
class LocalInstance:
    app: str
    index: int
    port: int
    process: BackgroundProcess

    @property
    def name(self) -> str:
        return f"{self.app}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process.running()


@dataclass
class LocalApps:
    """The apps of ``apps_dir`` (descriptors given), ``instances`` of each (default 1),
    with state under ``home``. ``free_ports`` picks free ports instead of the descriptors'
    (the first instance) and their neighbours (the others)."""

    apps_dir: Path
    descriptors: Mapping[str, AppDescriptor]
    home: Path
    instances: Mapping[str, int]
    free_ports: bool = False
    version: str = "local"

    def plan(self) -> list[LocalInstance]:
        """The instances in start order, with the ports recorded by a previous start."""
        planned = []
        for app in self._start_order():
            for index in range(self._count(app)):
                process = BackgroundProcess(f"{app}-{index}", self.home / app)
                planned.append(LocalInstance(app, index, self._port(app, index, process),
                                             process))
        return planned

    def start(self, on_ready: Callable[[LocalInstance], None]) -> list[LocalInstance]:
        """Start every instance not already running, in order, each ready before the next;
        raise :class:`LocalAppsFailed` (after stopping what this call started)."""
        planned = self.plan()
        discovery = ",".join(i.url for i in planned if i.app == "discovery")
        started: list[LocalInstance] = []
        for instance in planned:
            if not instance.running():
                self._spawn(instance, discovery)
                started.append(instance)
            try:
                self._wait_ready(instance)
            except LocalAppsFailed:
                for done in reversed(started):
                    done.process.stop()
                raise
            on_ready(instance)
        return planned

    def stop(self) -> list[tuple[LocalInstance, bool]]:
        """Stop every instance, dependents first (SIGTERM: each drains and deregisters)."""
        return [(i, i.process.stop(grace_seconds=30)) for i in reversed(self.plan())]

    # -- internals ------------------------------------------------------------------------

    def _start_order(self) -> list[str]:
        names = sorted(self.descriptors)
        graph = PipelineGraph.of(
            StageSpec(name, tuple(d for d in self.descriptors[name].depends_on if d in names))
            for name in names)
        return list(graph.order)

    def _count(self, app: str) -> int:
        """As asked (default 1), or as many as a previous start left pid files for."""
        recorded = len(list((self.home / app).glob(f"{app}-*.pid")))
        return max(self.instances.get(app, 1), recorded)

    def _port(self, app: str, index: int, process: BackgroundProcess) -> int:
        port_file = process.home / f"{app}-{index}.port"
        if process.running() and port_file.exists():
            return int(port_file.read_text())
        if self.free_ports:
            return _free_port()
        return self.descriptors[app].port + 1000 * index

    def _spawn(self, instance: LocalInstance, discovery: str) -> None:
        app_dir = self.apps_dir / instance.app
        home = instance.process.home
        home.mkdir(parents=True, exist_ok=True)
        (home / f"{instance.name}.port").write_text(str(instance.port))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(app_dir), str(self.apps_dir / SHARED_PACKAGE)]),
            "HOST": "127.0.0.1", "PORT": str(instance.port), "APP_VERSION": self.version,
            "INSTANCE_ID": instance.name, "ADVERTISE_HOST": "127.0.0.1",
            "DISCOVERY_URL": discovery, "DISCOVERY_HEARTBEAT_SECONDS": "2",
            "DISCOVERY_REFRESH_SECONDS": "1", "DRAIN_SECONDS": "0.5",
        }
        instance.process.spawn([sys.executable, "-m", instance.app], env=env, cwd=home)

    def _wait_ready(self, instance: LocalInstance) -> None:
        readiness = self.descriptors[instance.app].readiness_path
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not http_ok(instance.url + readiness):
            if not instance.running() or time.monotonic() > deadline:
                why = "exited" if not instance.running() else (
                    f"was not ready within {READY_TIMEOUT_SECONDS} s")
                raise LocalAppsFailed(
                    f"{instance.name} {why} (log {instance.process.log_file}):\n"
                    + instance.process.log_tail())
            time.sleep(0.1)


def instance_counts(specs: Iterable[str], apps: Iterable[str]) -> dict[str, int]:
    """Parse ``APP=N`` items (``--instances data=2``); raise ValueError naming the bad one."""
    known = set(apps)
    counts: dict[str, int] = {}
    for spec in specs:
        app, _, count = spec.partition("=")
        if app not in known:
            raise ValueError(f"--instances {spec!r}: no app {app!r}; choose from "
                             f"{', '.join(sorted(known))}")
        if not count.isdigit() or not 1 <= int(count) <= 5:
            raise ValueError(f"--instances {spec!r}: give a count from 1 to 5, as APP=N")
        counts[app] = int(count)
    return counts


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
